"""``check --onnx MODEL.onnx`` (manifest ``onnx``): an ONNX model run with onnxruntime and judged layer by layer
against the Caffe reference by :mod:`.pairing`, chained.

Every intermediate value is read: the model is copied with every node output made a graph output (the graph
itself is not changed otherwise), run once on the comparison's inputs, and every floating-point output kept
(integer shape arithmetic is skipped).  A value is keyed by the name of the node that computed it (its output's
name where the node has none; ``:<i>`` after its first output), which is what the report's artefact-node column
shows and what Model Explorer's node data is keyed by.  ONNX is NCHW as Caffe is: layouts are direct (an NHWC graph
is read too).

What a converter splits over several nodes is read as the layer's one value: a bias added after a Conv / Gemm /
MatMul (and a MatMul -> Mul -> Add) is the layer's output, not the tensor before it; a Caffe Scale written as a Mul
and an Add is the Add.  Names are a hint; where they name no Caffe layer, the nodes that compute a Caffe type
(Conv: Convolution, BatchNormalization: BatchNorm, ...) are paired with that type's layers in order when the counts
and shapes agree (:func:`harness.compare.artefacts.saved_model.name_by_kind`), then by position and shape.

Bad files are refused before anything runs, as one line naming the file: missing, a folder, truncated or not an
ONNX protobuf, a model onnxruntime cannot load (an opset or operator it cannot run), inputs that differ in number
or whose shape is neither the NCHW nor the NHWC order of the prototxt's.  A model whose batch axis is fixed (1)
smaller than the comparison's is run sample by sample.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...errors import HarnessError

INSTALL_HINT = "pip install 'caffe-keras-harness[artefacts]' (or: pip install onnx onnxruntime)"
# ONNX operators computing one Caffe type (first match wins), for the structural pairing of unnamed nodes
KIND_OPS = (("Deconvolution", {"ConvTranspose"}), ("Convolution", {"Conv"}), ("InnerProduct", {"Gemm", "MatMul"}),
            ("Pooling", {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"}),
            ("BatchNorm", {"BatchNormalization"}), ("LRN", {"LRN"}), ("Softmax", {"Softmax"}),
            ("ReLU", {"Relu", "LeakyRelu"}), ("ELU", {"Elu"}), ("Sigmoid", {"Sigmoid"}), ("TanH", {"Tanh"}))
_LINEAR = {"Conv", "ConvTranspose", "Gemm", "MatMul"}  # a bias add after them is part of the layer
_WINDOWED = {"MaxPool", "AveragePool"}


@dataclass
class OnnxModel:
    """An opened ONNX model: its path, the parsed model and its nodes' keys."""

    path: str
    model: Any  # onnx.ModelProto
    inputs: list[tuple[str, tuple]]  # (name, dims: an int, or None for a free axis) of the real inputs, in order


def _modules() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise HarnessError(f"--onnx needs onnx and onnxruntime (not installed: {e}); {INSTALL_HINT}") from None
    return onnx, onnxruntime


def open_artefact(path: str | os.PathLike, options: Mapping[str, Any]) -> OnnxModel:
    """The kind seam (:mod:`.kinds`): the file read and checked, refused in one line naming it when bad."""
    p = Path(path)
    if p.is_dir():
        raise HarnessError(f"--onnx {str(p)!r} is a folder, not an .onnx file (a SavedModel? use --saved-model)")
    if not p.is_file():
        raise HarnessError(f"--onnx {str(p)!r} does not exist")
    onnx, _ = _modules()
    buf = p.read_bytes()
    try:
        model = onnx.load_model_from_string(buf)
    except Exception as e:  # noqa: BLE001 - a protobuf decode error
        raise HarnessError(f"--onnx {str(p)!r} is truncated or not an ONNX model ({len(buf)} bytes; "
                           f"{type(e).__name__}: {' '.join(str(e).split())[:160]})") from None
    if not model.graph.node:
        raise HarnessError(f"--onnx {str(p)!r} is truncated or not an ONNX model ({len(buf)} bytes; its graph has "
                           f"no node)")
    init = {t.name for t in model.graph.initializer}
    ins = [(i.name, tuple(d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim))
           for i in model.graph.input if i.name not in init]
    handle = OnnxModel(str(p), model, ins)
    _session(handle, every_output=False)  # an opset / operator onnxruntime cannot run: refused now
    return handle


def _session(h: OnnxModel, every_output: bool = True) -> Any:
    """An onnxruntime session of the model (with every node output a graph output); one line naming the file when
    onnxruntime cannot load it."""
    onnx, ort = _modules()
    model = h.model
    if every_output:
        model = onnx.ModelProto()
        model.CopyFrom(h.model)
        have = {o.name for o in model.graph.output}
        for name in (o for n in model.graph.node for o in n.output):
            if name and name not in have:
                model.graph.output.append(onnx.ValueInfoProto(name=name))
                have.add(name)
    so = ort.SessionOptions()
    so.log_severity_level = 3  # no onnxruntime log noise on the terminal
    try:
        return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception classes
        raise HarnessError(f"--onnx {h.path!r}: onnxruntime cannot load the model "
                           f"({' '.join(str(e).split())[:240]})") from None


def node_keys(model: Any) -> list[tuple[str, str, str]]:
    """``(output name, key, op type)`` of every node output: the key is the node's name (its output's name where it
    has none), ``:<i>`` after its first output, ``#<n>`` when the name repeats."""
    out, seen = [], set()
    for n in model.graph.node:
        for i, o in enumerate(o for o in n.output if o):
            key = (n.name or o) + (f":{i}" if i else "")
            if key in seen:
                key = f"{key}#{len(seen)}"
            seen.add(key)
            out.append((o, key, n.op_type))
    return out


def describe(h: OnnxModel) -> list[tuple[str, str]]:
    """``[(node key, op type)]`` in graph (execution) order."""
    return [(key, op) for _, key, op in node_keys(h.model)]


def _inner(model: Any) -> set[str]:
    """Output names that are the inside of one layer: a Conv / Gemm / MatMul output whose only reader adds a
    constant (its bias; through a constant Mul: MatMul -> Mul -> Add), and a constant Mul whose only reader adds a
    constant (a Caffe Scale as Mul + Add)."""
    consts = {t.name for t in model.graph.initializer} | \
        {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    readers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    producer = {o: n for n in model.graph.node for o in n.output}

    def const_op(name: str, ops: set[str]) -> Any:
        r = readers.get(name, [])
        return r[0] if len(r) == 1 and r[0].op_type in ops and any(i in consts for i in r[0].input) else None

    inner = set()
    for n in model.graph.node:
        if n.op_type == "Mul" and n.output and const_op(n.output[0], {"Add", "Sub"}) is not None:
            inner.add(n.output[0])  # a Mul + Add: one Caffe Scale, or the scale-and-bias of a linear layer
            src = producer.get(next((i for i in n.input if i not in consts), ""))
            if src is not None and src.op_type in _LINEAR and len(readers.get(src.output[0], [])) == 1:
                inner.add(src.output[0])
        elif n.op_type in _LINEAR and n.output and const_op(n.output[0], {"Add", "Sub"}) is not None:
            inner.add(n.output[0])  # its bias comes next
    return inner


def _feeds(net: Any, h: OnnxModel, data: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict, bool]:
    """``({onnx input: array}, {blob: onnx input}, whether the batch axis fits)``: inputs paired by name, else by
    position; a count or a shape that fits neither NCHW nor NHWC is refused naming the file."""
    names = [n for n, _ in h.inputs]
    blobs = list(net.inputs)
    if len(names) != len(blobs):
        raise HarnessError(f"--onnx {h.path!r} has {len(names)} input(s) ({', '.join(names) or 'none'}); the "
                           f"prototxt's net has {len(blobs)} ({', '.join(blobs)})")
    pairs = {b: b for b in blobs} if set(names) == set(blobs) else dict(zip(blobs, names))
    dims = dict(h.inputs)
    feeds, batch_ok = {}, True
    for blob, name in pairs.items():
        x = np.asarray(data[blob], np.float32)
        want = dims[name]
        nhwc = (x.shape[0], x.shape[2], x.shape[3], x.shape[1]) if x.ndim == 4 else None
        fits = [lay for lay, s in (("nchw", x.shape), ("nhwc", nhwc)) if s is not None and len(want) == len(s)
                and all(d is None or d == v for d, v in zip(want[1:], s[1:]))]
        if not fits:
            raise HarnessError(f"--onnx {h.path!r}: input {name!r} has shape "
                               f"{[d if d is not None else '?' for d in want]}; the prototxt's input {blob!r} is "
                               f"{list(x.shape)} (NCHW), and the model's shape is neither its NCHW nor its NHWC order")
        feeds[name] = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if fits[0] == "nhwc" else x
        batch_ok &= want[0] in (None, x.shape[0])
    return feeds, pairs, batch_ok


def _run(sess: Any, feeds: Mapping[str, np.ndarray], batch_ok: bool, path: str) -> dict[str, np.ndarray]:
    """``{output name: array}`` of one run (sample by sample when the batch axis is fixed and smaller)."""
    names = [o.name for o in sess.get_outputs()]
    n = next(iter(feeds.values())).shape[0]
    runs = []
    for part in ([feeds] if batch_ok else [{k: v[i:i + 1] for k, v in feeds.items()} for i in range(n)]):
        try:
            runs.append(dict(zip(names, sess.run(None, dict(part)))))
        except Exception as e:  # noqa: BLE001
            raise HarnessError(f"--onnx {path!r}: onnxruntime failed to run the model "
                               f"({' '.join(str(e).split())[:240]})") from None
    if len(runs) == 1:
        return runs[0]
    return {k: np.concatenate([r[k] for r in runs]) if all(np.ndim(r[k]) and np.shape(r[k])[0] == 1 for r in runs)
            else runs[0][k] for k in names}


def run_onnx(h: OnnxModel, net: Any, data: Mapping[str, np.ndarray]) -> tuple[Any, dict[str, set[str]]]:
    """One run of the model on ``data``: the :class:`~.pairing.ArtefactRun` and ``{key: {op type}}``."""
    from .pairing import ArtefactRun

    feeds, pairs, batch_ok = _feeds(net, h, data)
    raw = _run(_session(h), feeds, batch_ok, h.path)
    inner = _inner(h.model)
    values, op_types, key_of = {}, {}, {}
    for out, key, op in node_keys(h.model):
        key_of[out] = key
        v = raw.get(out)
        if out in inner or v is None or not np.issubdtype(np.asarray(v).dtype, np.floating):
            continue
        values[key] = np.asarray(v, np.float32)
        op_types[key] = {op}
    outs = [o.name for o in h.model.graph.output]
    by_blob = {b: key_of[b] for b in net.outputs if b in key_of and b in outs}
    if not by_blob and len(net.outputs) == len(outs) == 1 and outs[0] in key_of:
        by_blob = {net.outputs[0]: key_of[outs[0]]}
    run = ArtefactRun("onnx", h.path, values, list(values), {b: n for b, n in pairs.items()},
                      {b: k for b, k in by_blob.items() if k in values}, name=Path(h.path).name, op_names=False,
                      fused={k: () for k in values})  # no standard ONNX operator fuses an activation
    return run, op_types


def pooling_misfits(net: Any, h: OnnxModel, values: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]
                    ) -> dict[str, str]:
    """``{Caffe Pooling layer: node key}`` of the windowed poolings whose MaxPool / AveragePool output has another
    shape than Caffe's (rounded the other way), paired in order when their counts agree."""
    from .saved_model import windowed_pool_misfits

    pools = [k for _, k, op in node_keys(h.model) if op in _WINDOWED and k in values]
    return windowed_pool_misfits(net, pools, values, ref)


def judge(pre: Any, h: OnnxModel, options: Mapping[str, Any], **kw: Any) -> Any:
    """The kind seam (:mod:`.kinds`): run, pair (names, then the nodes' Caffe types, then position) and judge."""
    from .pairing import compare_artefact
    from .saved_model import fold_scale_into_batchnorm, name_by_kind, shape_first

    net, ref = pre.net, pre.ref()
    run, op_types = run_onnx(h, net, pre.data)
    misfits = pooling_misfits(net, h, run.values, ref)
    shapes = {k: np.shape(v) for k, v in ref.items()}
    values = fold_scale_into_batchnorm(net, name_by_kind(net, run.values, op_types, shapes, kind_ops=KIND_OPS), ref)
    renamed = dict(zip(run.values, values))  # both keep the order: old key -> new key
    run.values, run.order, run.fused = values, list(values), {k: () for k in values}
    run.outputs = {b: renamed[k] for b, k in run.outputs.items()}
    report = compare_artefact(net, pre.data, run, ref=ref, **kw)
    old = {new: k for k, new in renamed.items()}
    tensor = {key: out for out, key, _ in node_keys(h.model)}
    for names in report.nodes.values():  # Model Explorer knows a node by its name or its output tensor's
        k = old.get(names[0], names[0])
        names += [n for n in (k, tensor.get(k)) if n and n not in names]
    if kw.get("diagnose", True):  # a pooling rounded the other way: the first divergence, from the shapes
        shape_first(report, net, ref, {lay: renamed[k] for lay, k in misfits.items()}, values)
    report.backend = "onnxruntime"
    return report
