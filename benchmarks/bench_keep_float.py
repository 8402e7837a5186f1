"""``convert --keep-float auto`` on the zoo's AlexNet and ResNet-50 (issue 23): full int8 at a gate it fails, the
search for the Caffe layers to keep in float32, and the cost (``.tflite`` bytes, LiteRT interpreter time measured
in the same run) against float32 and full int8.

Method: the zoo prototxt at ``--shape`` (NCHW, per net; the batch is the judged batch; ResNet-50 below 224x224 with
its pool5 written as the global pooling it is at 224), seeded random weights
(``random_weights(seed=0)``), converted by the harness, calibrated once (:class:`harness.convert.export.Calibrated`)
and searched by :func:`harness.compare.artefacts.keep_float.search` (both LiteRT paths judged per try, at most
``--max-requantize`` re-quantisations).  Two weight kinds:

* ``random``: the seeded weights; calibration on ``--representative`` seeded standard-normal inputs (seed 100),
  judged on a seeded standard-normal batch (seed 7).
* ``fitted`` (trained-like, ``--fitted``): a seeded synthetic task -- ``--classes`` prototype images (seeded normal)
  plus noise (0.5 x), each prototype its own label -- and the last InnerProduct fitted to it by ``--steps``
  full-batch gradient steps of softmax cross-entropy on the reference's features of 2 x ``--classes`` training
  samples, so the softmax is peaked, not near-uniform.  Calibration (a dataset: 16 samples of the task) and the
  judged batch (other samples of the task) both come from the task.

Prints, per net and weight kind, the keep-float report (tries, per-layer SQNR before / after, cost table) and one
timing line.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

SHAPES = {"alexnet": (4, 3, 227, 227), "resnet50": (4, 3, 224, 224)}


# ResNet-50's pool5 (AVE 7x7, stride 1) is a global pooling at 224x224; at a reduced size it is written as one so
# the net still ends in one 2048-vector (the same computation at 224)
_GLOBAL_POOL5 = {"resnet50": ("pooling_param { pool: AVE kernel_size: 7 stride: 1 }",
                              "pooling_param { pool: AVE global_pooling: true }")}


def prototxt(name: str, shape: tuple[int, ...]) -> str:
    """The zoo prototxt's text at ``shape`` (see _GLOBAL_POOL5)."""
    text = (ROOT / "fixtures" / "zoo" / f"{name}.prototxt").read_text()
    if name in _GLOBAL_POOL5 and tuple(shape[2:]) != SHAPES[name][2:]:
        old, new = _GLOBAL_POOL5[name]
        assert text.count(old) == 1, name
        text = text.replace(old, new)
    return text


def _net(name: str, shape: tuple[int, ...]):
    from harness.caffe import load_net_text
    from harness.weights import random_weights

    (blob, _), = load_net_text(prototxt(name, shape)).inputs.items()
    return random_weights(load_net_text(prototxt(name, shape), input_shapes={blob: shape}), seed=0), blob


def _task(shape: tuple[int, ...], classes: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of the synthetic task: prototype (seed 11) + 0.5 x noise (``seed``), label = prototype."""
    protos = np.random.default_rng(11).standard_normal((classes,) + tuple(shape[1:]))
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = protos[y] + 0.5 * rng.standard_normal((n,) + tuple(shape[1:]))
    return x.astype(np.float32), y


def _fit_last(net, blob: str, classes: int, steps: int):
    """The net with its last InnerProduct fitted to the task (see the module docstring)."""
    from harness.compare.engine.passes import reference_forward

    last = [lay for lay in net.layers if lay.kind == "InnerProduct"][-1]
    n = int(net.inputs[blob][0])
    x, y = _task(net.inputs[blob], classes, 2 * classes, seed=1)
    x, y = x[:len(x) // n * n], y[:len(x) // n * n]
    key = _bottom_key(net, last)
    feats = np.concatenate([np.asarray(reference_forward(net, {blob: x[i:i + n]})[key], np.float64).reshape(n, -1)
                            for i in range(0, len(x), n)])
    w, b = np.asarray(last.blobs[0], np.float64), np.asarray(last.blobs[1], np.float64)
    for _ in range(steps):  # softmax cross-entropy, full batch, normalised step
        z = feats @ w.T + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(len(y)), y] -= 1.0
        gw, gb = p.T @ feats / len(y), p.mean(0)
        lr = 0.5 / (np.abs(gw).max() + 1e-12) * np.abs(w).max()
        w, b = w - lr * gw, b - lr * gb * (np.abs(b).max() + 1e-3) / (np.abs(gb).max() + 1e-12)
    new = dataclasses.replace(last, blobs=(w.astype(np.float32), b.astype(np.float32)))
    return dataclasses.replace(net, layers=tuple(new if l.name == last.name else l for l in net.layers))


def _bottom_key(net, lay) -> str:
    from harness.compare.engine.evaluation import CaffeSide

    return CaffeSide(net, {}).bottom_keys[lay.name][0]


def run(name: str, args, fitted: bool) -> None:
    from harness.compare.artefacts import keep_float as kf
    from harness.compare.engine.inputs import prepare_inputs
    from harness.convert import convert
    from harness.convert.export import Calibrated, tflite_bytes

    shape = SHAPES[name] if not args.shape else tuple(int(v) for v in args.shape.split(","))
    t0 = time.perf_counter()
    net, blob = _net(name, shape)
    if fitted:
        net = _fit_last(net, blob, args.classes, args.steps)
        cal_x = _task(shape, args.classes, 16, seed=2)[0]
        rep, cal_words = {blob: cal_x}, f"16 samples of the synthetic task ({args.classes} classes)"
        data = {blob: _task(shape, args.classes, shape[0], seed=3)[0]}
        judged = f"{shape[0]} other samples of the task"
    else:
        rep, cal_words = args.representative, f"{args.representative} seeded standard-normal inputs (seed 100)"
        data, judged = prepare_inputs(net, None, 7), f"{shape[0]} seeded standard-normal inputs (seed 7)"
    model = convert(net)
    f32 = tflite_bytes(model)
    kind = "fitted last InnerProduct (trained-like)" if fitted else "seeded random weights"
    with Calibrated(model, rep, 100) as cal, tempfile.TemporaryDirectory() as d:
        t1 = time.perf_counter()
        calibrate_s, ref = t1 - t0, {}
        for gate in _gates(args):  # one calibration, one reference, a search per gate
            setup = kf.Setup(net, cal, data, gate, cal_words, judged, Path(d), f32, ref)
            ref = setup.ref
            res = kf.search(setup, args.max_requantize,
                            lambda c: print(f"  [{time.perf_counter() - t0:.0f} s] kept {list(c.keep)}: "
                                            f"{'PASS' if c.passed else 'FAIL'}", flush=True))
            t2 = time.perf_counter()
            res.invoke_s = {"float32": kf.invoke_seconds(f32, net, data),
                            "int8": kf.invoke_seconds(res.full_buf, net, data)}
            after = res.chosen_buf or res.best_buf
            if after is not res.full_buf:
                res.invoke_s["chosen"] = kf.invoke_seconds(after, net, data)
            verified = _verify(name, net, data, res, gate, Path(d))
            print(f"\n## {name} {'x'.join(map(str, shape))}, {kind}")
            print(kf.render(res))
            print(kf.verdict(res))
            print(verified)
            print(f"time: calibrate {calibrate_s:.1f} s (with conversion), search {t2 - t1:.1f} s ({len(res.tries)} "
                  f"re-quantisation(s), each judged on both LiteRT paths)", flush=True)
            t1 = time.perf_counter()


def _gates(args):
    """``--gates 20,15:0.75`` (SQNR dB[:top-1 agreement] per search), else the one of --min-sqnr and
    --min-top1-agreement."""
    from harness.compare.artefacts.pairing import QuantGate

    if not args.gates:
        return [QuantGate(args.min_sqnr, args.min_top1_agreement)]
    out = []
    for g in args.gates.split(","):
        db, _, top1 = g.partition(":")
        out.append(QuantGate(float(db), float(top1 or 0.0)))
    return out


def _verify(name, net, data, res, gate, folder: Path) -> str:
    """The chosen model written and checked afresh from the file by check --tflite's judge (both LiteRT paths)."""
    from harness.compare.artefacts import keep_float as kf
    from harness.compare.artefacts.tflite import check_tflite

    if res.chosen is None:
        return "verified: - (no set passes)"
    path = kf.write_model(res.chosen_buf, folder / "chosen.tflite")
    rep = check_tflite(net, data, path, gate=gate, diagnose=False)
    paths = ", ".join(f"{k} {'EQUIVALENT' if v['equivalent'] else 'NOT EQUIVALENT'}" for k, v in rep.delegates.items())
    return (f"verified: check_tflite of the written file: {paths}; top-1 agreement {rep.top1_agreement:.3f}\n"
            + _verify_cli(name, net, data, path, gate, folder))


def _verify_cli(name, net, data, path: Path, gate, folder: Path) -> str:
    """``caffe-harness check PROTOTXT --weights W.npz --inputs X.npz --tflite FILE`` in a fresh process: the net's
    weights (fitted ones included) and the judged batch written to files first."""
    import subprocess

    (blob, shape), = net.inputs.items()
    np.savez(folder / "w.npz", **{f"{lay.name}/{i}": np.asarray(b) for lay in net.layers
                                  for i, b in enumerate(lay.blobs)})
    np.savez(folder / "x.npz", **{b: np.asarray(v, np.float32) for b, v in data.items()})
    proto = folder / f"{name}.prototxt"
    proto.write_text(prototxt(name, shape))
    argv = [sys.executable, "-m", "harness.cli", "check", str(proto), "--input-shape",
            f"{blob}={','.join(map(str, shape))}", "--weights", str(folder / "w.npz"), "--inputs",
            str(folder / "x.npz"), "--tflite", str(path), "--min-sqnr", f"{gate.min_sqnr:g}",
            "--min-top1-agreement", f"{gate.min_top1_agreement:g}"]
    p = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    verdict = [x for x in p.stdout.splitlines() if "EQUIVALENT" in x or "top-1" in x][-3:]
    return f"verified: fresh `caffe-harness check --tflite` (exit {p.returncode}): " + " | ".join(verdict)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", default="alexnet,resnet50")
    ap.add_argument("--shape", default=None, help="N,C,H,W for every net (default: 4 samples at the zoo size)")
    ap.add_argument("--min-sqnr", type=float, default=15.0)
    ap.add_argument("--min-top1-agreement", type=float, default=0.0)
    ap.add_argument("--gates", default=None, help="SQNR[:TOP1],...: one search per gate on one calibration")
    ap.add_argument("--representative", type=int, default=16)
    ap.add_argument("--max-requantize", type=int, default=4)
    ap.add_argument("--fitted", action="store_true", help="also the trained-like weights (module docstring)")
    ap.add_argument("--only-fitted", action="store_true")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    from harness._stdio import quiet_tensorflow_import

    quiet_tensorflow_import()
    for name in args.nets.split(","):
        if not args.only_fitted:
            run(name, args, False)
        if args.fitted or args.only_fitted:
            run(name, args, True)


if __name__ == "__main__":
    main()
