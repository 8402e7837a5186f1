"""The converter side of the ports6 corpus, run as a subprocess by the converters' own venv (install_converters.sh):
it imports caffe2onnx, onnx, onnxruntime and onnx2tf, never the harness.

    python _chain_tool.py onnx JOBS.json     # caffe2onnx -> restamp IR/opset -> optional bug edit, for every job
    python _chain_tool.py tf JOBS.json       # onnx2tf -> SavedModel + float32 .tflite (optionally its -cotof check)

JOBS.json is a list of objects; ``onnx`` jobs: ``{"prototxt", "caffemodel", "onnx", "bug": null|BUG, "layer"}``;
``tf`` jobs: ``{"onnx", "out", "cotof": bool}``.  An ``onnx`` job with ``"opset": N`` stamps that opset instead
and skips the checks (a file onnxruntime cannot run, for the bad-input tests).  Each job's result (``"ok"`` or the error, plus what -cotof said) is
written back to ``JOBS.json.out``.  The ``onnx`` stage needs ``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python``:
caffe2onnx's generated ``caffe_upsample_pb2`` predates protobuf 4's C++ descriptors.

Facts met (issue 20): caffe2onnx's ``helper.make_model`` stamps the IR version and opset of the onnx it runs on
(1.19: IR 11 / opset 24 -- beyond what onnxruntime 1.23 runs, opset 23, and not what its ops mean: it writes
``Pad`` with ``pads`` and ``constant_value`` as inputs, opset 11's form, and opset-11 ``Softmax``/``Reshape``), so its
files are restamped to IR 6 / opset 11, and their stale ``value_info`` shapes (wrong after an edit that changes a
shape) are dropped and re-inferred; caffe2onnx's ``Pad`` ``constant_value`` (-inf before a MAX pooling) is a
1-element vector where ONNX says scalar: onnx2tf carries it into a ``tf.pad`` whose SavedModel then fails to run
('constant_values must be a scalar', also on onnx2tf's own TensorFlow 2.19; its .tflite runs), so it is made a
scalar; onnx2tf runs ``onnxsim`` as
a command on its input file and overwrites it (so it converts a copy), and loads a sample image from
``calibration_image_sample_data_20x128x128x3_float32.npy`` in its working directory, downloading it when absent (so
it runs in a folder where this tool writes a seeded one first: no network).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

IR_VERSION, OPSET = 6, 11
_CONVERTED: dict[tuple[str, str], bytes] = {}
SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def _node(model, layer: str, op: str):
    """The node caffe2onnx wrote for Caffe layer ``layer`` (it names nodes after the layers)."""
    for n in model.graph.node:
        if n.name == layer and n.op_type == op:
            return n
    raise SystemExit(f"no {op} node named {layer!r} in the ONNX graph "
                     f"(nodes: {[(n.name, n.op_type) for n in model.graph.node]})")


def _attr(node, name: str):
    for a in node.attribute:
        if a.name == name:
            return a
    raise SystemExit(f"node {node.name!r} has no attribute {name!r}")


def _edit(model, bug: str, layer: str) -> None:
    """Edit one deliberate bug into caffe2onnx's graph (see _nets.EDITS)."""
    import numpy as np
    from onnx import numpy_helper

    if bug == "pool_floor":
        _attr(_node(model, layer, "MaxPool"), "ceil_mode").i = 0
    elif bug == "lrn_alpha":
        n = _node(model, layer, "LRN")
        _attr(n, "alpha").f = _attr(n, "alpha").f * _attr(n, "size").i
    elif bug == "bn_eps":
        _attr(_node(model, layer, "BatchNormalization"), "epsilon").f = 1e-3
    elif bug == "conv_axes":
        wname = _node(model, layer, "Conv").input[1]
        init = next(t for t in model.graph.initializer if t.name == wname)
        w = numpy_helper.to_array(init)
        init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w.transpose(0, 1, 3, 2)), wname))
    else:
        raise SystemExit(f"unknown bug {bug!r}")


def _scalar_pad_values(model) -> None:
    from onnx import numpy_helper

    values = {n.input[2] for n in model.graph.node if n.op_type == "Pad" and len(n.input) > 2 and n.input[2]}
    for init in model.graph.initializer:
        if init.name in values:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).reshape(()), init.name))
    for inp in model.graph.input:  # caffe2onnx also lists every initializer as a graph input, with its shape
        if inp.name in values:
            del inp.type.tensor_type.shape.dim[:]


def _onnx_job(job: dict) -> None:
    import onnx
    from caffe2onnx.src.caffe2onnx import Caffe2Onnx
    from caffe2onnx.src.load_save_model import loadcaffemodel

    key = (job["prototxt"], job["caffemodel"])
    if key not in _CONVERTED:  # one caffe2onnx run per net: its bug cases edit a copy (zoo nets take minutes)
        with contextlib.redirect_stdout(io.StringIO()):
            graph, params = loadcaffemodel(*key)
            _CONVERTED[key] = Caffe2Onnx(graph, params, job["onnx"]).createOnnxModel().SerializeToString()
    model = onnx.ModelProto.FromString(_CONVERTED[key])
    model.ir_version = IR_VERSION
    del model.opset_import[:]
    model.opset_import.append(onnx.helper.make_opsetid("", OPSET))
    _scalar_pad_values(model)
    if job.get("opset"):  # a file stamped with an opset onnxruntime cannot run (a bad-input case): saved as is
        model.opset_import[0].version = job["opset"]
        onnx.save(model, job["onnx"])
        return
    if job.get("bug"):
        _edit(model, job["bug"], job["layer"])
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    onnx.save(model, job["onnx"])
    _run_onnxruntime(job["onnx"])


def _run_onnxruntime(path: str) -> None:
    """The restamped file must run on onnxruntime (what check --onnx will run it on)."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
            for i in sess.get_inputs()}
    sess.run(None, feed)


def _sample_image(folder: Path) -> None:
    import numpy as np

    data = np.random.default_rng(20).random((20, 128, 128, 3), dtype=np.float32)
    np.save(folder / SAMPLE, data)


def _tf_job(job: dict) -> dict:
    import onnx2tf

    out = Path(job["out"]).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _sample_image(work)
        src = work / Path(job["onnx"]).name  # onnx2tf overwrites its input file (onnxsim): convert a copy
        shutil.copyfile(job["onnx"], src)
        log = io.StringIO()
        cwd = os.getcwd()
        os.chdir(work)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                onnx2tf.convert(input_onnx_file_path=str(src), output_folder_path=str(out),
                                output_signaturedefs=True, non_verbose=not job.get("cotof"),
                                check_onnx_tf_outputs_elementwise_close_full=bool(job.get("cotof")))
        finally:
            os.chdir(cwd)
    res = {"ok": True}
    if job.get("cotof"):
        res["cotof"] = _cotof_verdict(log.getvalue())
    return res


def _cotof_verdict(log: str) -> dict:
    """What onnx2tf's -cotof printed: how many ONNX/TF output pairs it called 'Matches' and 'Unmatched'."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", log)
    matches = len(re.findall(r"\bMatches\b", text))
    unmatched = len(re.findall(r"\bUnmatched\b", text))
    skipped = len(re.findall(r"\bSkipped\b", text))
    return {"matches": matches, "unmatched": unmatched, "skipped": skipped,
            "verdict": "Matches" if matches and not unmatched else "Unmatched" if unmatched else "no verdict"}


def main(argv: list[str]) -> int:
    stage, jobs_path = argv
    jobs = json.loads(Path(jobs_path).read_text())
    results = []
    for job in jobs:
        try:
            if stage == "onnx":
                _onnx_job(job)
                results.append({"ok": True})
            else:
                results.append(_tf_job(job))
        except BaseException as e:  # noqa: BLE001 -- one job's failure is reported, the others still run
            results.append({"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()})
    Path(jobs_path + ".out").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
