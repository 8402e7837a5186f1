"""Driver of tests/backends/test_backends.py, run as ``python _drive.py PART [ARGS]`` in a fresh interpreter with
``KERAS_BACKEND`` set (Keras picks its backend once per process).  Prints one ``RESULT {json}`` line per item:
``{"item", "ok", "seconds", "detail"}``; the test asserts on them.  Never run by pytest itself (leading underscore).

PART:
* ``golden``: ``caffe-harness check`` (the CLI's ``main``, in this process: one interpreter start for all) on every
  golden real-Caffe case the converter supports, with the case's weights and inputs; exit status 0 and a JSON report
  whose every layer passed chained and isolated.
* ``extra``: ``caffe-harness check`` on nets whose answer depends on how ties are ordered (ArgMax over integer-valued
  data, DetectionOutput over tied scores: ``torch.topk`` orders ties arbitrarily), and on a net whose layer names
  hold ``/`` (Keras names with ``.``: torch refuses ``.`` in parameter names), saved and loaded through ``.keras``.
* ``zoo NAME ...``: tests/test_zoo_gate.py's gate (its reduced input sizes, seeded weights, default derived
  tolerance, mode both) on the named zoo nets.
* ``props N``: the property suite's single-layer property (tests/property/test_layers.py ``check_case``: every
  record of the converted layer against the reference, and the comparator calls it equivalent) on ``N``
  derandomized Hypothesis examples of every catalogued type.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
ROOT = TESTS.parent
GOLDEN = ROOT / "fixtures" / "golden"


def emit(item: str, ok: bool, seconds: float, detail: str = "") -> None:
    print("RESULT " + json.dumps({"item": item, "ok": bool(ok), "seconds": round(seconds, 2), "detail": detail[-3000:]}),
          flush=True)


def check_cli(item: str, argv: list[str]) -> None:
    """``caffe-harness check ARGV --json F`` in this process: exit 0 and every layer passed in both modes."""
    import contextlib
    import io

    from harness.cli import main

    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "report.json"
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                rc = main(["check", *argv, "--no-table", "--json", str(out)])
        except BaseException:
            emit(item, False, time.perf_counter() - t, traceback.format_exc())
            return
        if rc != 0 or not out.is_file():
            emit(item, False, time.perf_counter() - t, f"exit status {rc}\n{buf.getvalue()}")
            return
        rep = json.loads(out.read_text())
    bad = [f"{lay['caffe_layer']}/{lay['caffe_top']} {m}" for lay in rep["layers"] for m in ("chained", "isolated")
           if not (lay[m] or {}).get("passed")]
    worst = max([(lay[m] or {}).get("bound_ratio") or 0.0 for lay in rep["layers"] for m in ("chained", "isolated")],
                default=0.0)
    ok = rep["equivalent"] and not bad and bool(rep["layers"])
    emit(item, ok, time.perf_counter() - t, f"layers={len(rep['layers'])} worst_bound_ratio={worst:.3g} "
         f"not passed: {bad}" if bad else f"layers={len(rep['layers'])} worst_bound_ratio={worst:.3g}")


def golden() -> None:
    for d in sorted(p for p in GOLDEN.iterdir() if (p / "net.prototxt").is_file()):
        check_cli(d.name, [str(d / "net.prototxt"), "--weights", str(d / "weights.caffemodel"),
                           "--inputs", str(d / "inputs.npz")])


ARGMAX_TIES = """
name: "argmax_ties"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 7 dim: 3 dim: 4 } } }
layer { name: "top_c" type: "ArgMax" bottom: "data" top: "top_c" argmax_param { axis: 1 top_k: 4 } }
layer { name: "top_all" type: "ArgMax" bottom: "data" top: "top_all" argmax_param { top_k: 9 out_max_val: true } }
"""


SLASH_NAMES = """
name: "slash_names"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 9 dim: 11 } } }
layer { name: "inception/1x1" type: "Convolution" bottom: "data" top: "inception/1x1"
        convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "inception/relu" type: "ReLU" bottom: "inception/1x1" top: "inception/1x1" }
layer { name: "inception/3x3" type: "Convolution" bottom: "inception/1x1" top: "inception/3x3"
        convolution_param { num_output: 5 kernel_size: 3 pad: 1 } }
layer { name: "fc/out" type: "InnerProduct" bottom: "inception/3x3" top: "fc/out" inner_product_param { num_output: 6 } }
"""


def extra() -> None:
    import numpy as np

    sys.path[:0] = [str(TESTS / "convert"), str(TESTS)]
    from test_detection_ops import SSD_HEAD

    rng = np.random.default_rng(3)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "argmax.prototxt").write_text(ARGMAX_TIES)
        np.save(d / "data.npy", rng.integers(0, 3, (2, 7, 3, 4)).astype(np.float32))  # many equal values
        check_cli("ArgMax ties", [str(d / "argmax.prototxt"), "--input", f"data={d / 'data.npy'}"])
        (d / "ssd.prototxt").write_text(SSD_HEAD)
        np.save(d / "d.npy", rng.standard_normal((2, 3, 20, 24)).astype(np.float32))
        np.save(d / "f.npy", rng.standard_normal((2, 16, 5, 6)).astype(np.float32))
        # tied scores: channel 3p + c is prior p's logit of class c; class 1's logit is 0 or 2 (background 0, class 2
        # -3: below confidence_threshold), so class 1's scores are bitwise equal wherever the logits are (the same
        # softmax arithmetic), and NMS order and keep_top_k's cut both fall on ties.  (Ties across classes would
        # not be ties: exp(2) / sum in another summation order differs in the last bit.)
        cls = np.zeros((2, 12, 5, 6), np.float32)
        cls[:, 1::3] = 2.0 * rng.integers(0, 2, (2, 4, 5, 6))
        cls[:, 2::3] = -3.0
        np.save(d / "c.npy", cls)
        check_cli("DetectionOutput ties", [str(d / "ssd.prototxt"), "--input", f"data={d / 'd.npy'}",
                                           "--input", f"feat={d / 'f.npy'}", "--input", f"cls={d / 'c.npy'}"])
        (d / "slash.prototxt").write_text(SLASH_NAMES)
        from harness.cli import main

        t = time.perf_counter()
        rc = main(["convert", str(d / "slash.prototxt"), "-o", str(d / "slash.keras")])
        if rc != 0:
            emit("'/' names convert", False, time.perf_counter() - t, f"convert exit status {rc}")
        else:
            check_cli("'/' names", [str(d / "slash.prototxt"), "--keras", str(d / "slash.keras")])


def zoo(names: list[str]) -> None:
    sys.path[:0] = [str(TESTS)]
    from test_zoo_gate import GATE_SHAPES, test_zoo_net_passes_compare_with_default_tolerance as gate

    for name in names:
        t = time.perf_counter()
        try:
            gate(name, lambda *a: None)
            emit(f"zoo {name} {GATE_SHAPES[name]}", True, time.perf_counter() - t)
        except BaseException:
            emit(f"zoo {name} {GATE_SHAPES[name]}", False, time.perf_counter() - t, traceback.format_exc())


def props(n: int) -> None:
    from hypothesis import HealthCheck, Phase, given, settings

    sys.path[:0] = [str(ROOT)]
    from harness.strategies import STRATEGIES, layer_case
    from tests.property.test_layers import check_case

    for caffe_type in sorted(STRATEGIES.types()):
        @settings(max_examples=n, derandomize=True, database=None, deadline=None,
                  phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck))
        @given(case=layer_case(caffe_type))
        def prop(case):
            check_case(case, comparator="always")

        t = time.perf_counter()
        try:
            prop()
            emit(f"property {caffe_type}", True, time.perf_counter() - t)
        except BaseException as e:  # pytest.fail raises a BaseException (Failed)
            emit(f"property {caffe_type}", False, time.perf_counter() - t, f"{type(e).__name__}: {e}")


def main(argv: list[str]) -> None:
    import keras

    want = os.environ.get("KERAS_BACKEND")
    if keras.backend.backend() != want:
        emit("backend", False, 0.0, f"Keras runs on {keras.backend.backend()!r}, KERAS_BACKEND={want!r}")
        return
    part, *args = argv
    {"golden": lambda: golden(), "extra": lambda: extra(), "zoo": lambda: zoo(args),
     "props": lambda: props(int(args[0]))}[part]()


if __name__ == "__main__":
    main(sys.argv[1:])
