"""Full-integer int8 LiteRT models of AlexNet and ResNet-50, judged layer by layer against the float64 Caffe
reference (issue 12): per-layer SQNR on both LiteRT paths and top-1 / top-5 agreement of the outputs; then the
same net with one layer's weights damaged before quantisation, which the gate must catch at that layer.

Method: the zoo prototxt at ``--alexnet-shape`` / ``--resnet-shape`` (NCHW; default: both at their published
224/227 sizes -- ResNet-50's fixed 7x7 AVE pool5 needs >= 193 pixels anyway), seeded random weights
(``random_weights(seed=0)``), converted by the
harness and written by ``convert --format tflite --quantize int8`` (``tflite_bytes(..., quantize="int8")``) with
``--representative`` seeded standard-normal calibration inputs (seed 100).  The evaluation batch is seeded standard
normal (seed 7, ``--batch`` samples), never the calibration data.  Each LiteRT path (``xnnpack``, ``none``) is run once
on the batch and compared by :func:`harness.compare.artefacts.pairing.compare_artefact` with the gate ``--min-sqnr``.
Damage: ``--damage LAYER`` weights multiplied element-wise by seeded uniform(-1, 1) factors before conversion.

Prints one table per net (layer, type, SQNR dB per path, pass/fail at the gate) and a summary line per run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def _net(name: str, shape: tuple[int, ...]):
    from harness.caffe import load_net
    from harness.weights import random_weights

    path = ROOT / "fixtures" / "zoo" / f"{name}.prototxt"
    (blob, _), = load_net(path).inputs.items()
    return random_weights(load_net(path, input_shapes={blob: shape}), seed=0)


def _damaged(net, layer: str):
    import dataclasses

    w = net.layer(layer).blobs[0]
    f = np.random.default_rng(1).uniform(-1, 1, w.shape).astype(w.dtype)
    return dataclasses.replace(net, layers=tuple(
        dataclasses.replace(l, blobs=(l.blobs[0] * f, *l.blobs[1:])) if l.name == layer else l for l in net.layers))


def run_one(name: str, shape, batch: int, representative: int, min_sqnr: float, damage: str | None, out_dir: Path):
    from harness.compare.artefacts.pairing import QuantGate, compare_artefact
    from harness.compare.engine.inputs import prepare_inputs
    from harness.compare.artefacts.tflite import run_tflite
    from harness.compare.engine.passes import reference_forward
    from harness.convert import convert
    from harness.convert.export import tflite_bytes

    net = _net(name, shape)
    src = _damaged(net, damage) if damage else net
    t0 = time.perf_counter()
    data = tflite_bytes(convert(src), quantize="int8", representative=representative, seed=100)
    path = out_dir / f"{name}{'_' + damage if damage else ''}_int8.tflite"
    path.write_bytes(data)
    t_conv = time.perf_counter() - t0
    eval_shape = (batch,) + tuple(shape[1:])
    (blob, _), = net.inputs.items()
    enet = net if shape[0] == batch else _resized(net, blob, eval_shape)
    x = prepare_inputs(enet, None, 7)
    t0 = time.perf_counter()
    ref = reference_forward(enet, x)
    t_ref = time.perf_counter() - t0
    reps = {}
    for d in ("xnnpack", "none"):
        t0 = time.perf_counter()
        reps[d] = (compare_artefact(enet, x, run_tflite(path, enet, x, d), gate=QuantGate(min_sqnr), ref=ref,
                                    diagnose=False), time.perf_counter() - t0)
    return reps, t_conv, t_ref, len(data)


def _resized(net, blob, shape):
    from harness.caffe import load_net
    from harness.weights import random_weights

    return random_weights(load_net(net.source, input_shapes={blob: shape}), seed=0)


def table(name: str, reps, min_sqnr: float) -> str:
    x, n = reps["xnnpack"][0], reps["none"][0]
    by_n = {lr.key: lr for lr in n.layers}
    lines = [f"| {name} layer | type | SQNR dB xnnpack | SQNR dB none | >= {min_sqnr:g} dB |", "|---|---|---|---|---|"]
    for lr in x.layers:
        o = by_n.get(lr.key)
        ok = lr.sqnr_db >= min_sqnr and (o is None or o.sqnr_db >= min_sqnr)
        lines.append(f"| {lr.caffe_layer if lr.caffe_top == lr.caffe_layer else lr.key} | {lr.layer_type} | "
                     f"{lr.sqnr_db:.1f} | {'-' if o is None else f'{o.sqnr_db:.1f}'} | {'yes' if ok else 'NO'} |")
    return "\n".join(lines)


def summary(label: str, reps, t_conv: float, t_ref: float, size: int) -> str:
    parts = []
    for d, (r, t) in reps.items():
        fd = "-"
        if r.first_divergence is not None:
            lr = next(lr for lr in r.layers if lr.key == r.first_divergence.key)
            fd = f"{r.first_divergence.caffe_layer} at {lr.sqnr_db:.1f} dB"
        worst = min(r.layers, key=lambda lr: lr.sqnr_db)
        parts.append(f"{d}: {'PASS' if r else 'FAIL'} (first under the gate: {fd}; min SQNR {worst.sqnr_db:.1f} dB at "
                     f"{worst.caffe_layer}; top-1 agreement {r.top1_agreement:.3f}, top-5 {r.top5_agreement:.3f}; "
                     f"run+compare {t:.1f} s)")
    return f"{label}: int8 file {size / 2**20:.1f} MiB, convert+calibrate {t_conv:.1f} s, reference {t_ref:.1f} s; " \
           + "; ".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alexnet-shape", default="1,3,227,227")
    ap.add_argument("--resnet-shape", default="1,3,224,224")
    ap.add_argument("--batch", type=int, default=16, help="evaluation samples (AlexNet)")
    ap.add_argument("--resnet-batch", type=int, default=8, help="evaluation samples (ResNet-50)")
    ap.add_argument("--representative", type=int, default=32)
    ap.add_argument("--min-sqnr", type=float, default=15.0)
    ap.add_argument("--nets", default="alexnet,resnet50")
    ap.add_argument("--damage", default="alexnet:conv3,resnet50:res3a_branch2b",
                    help="NET:LAYER pairs whose weights are damaged in a second run ('' for none)")
    ap.add_argument("--out", default="/tmp/bench_tflite_quant")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    shapes = {"alexnet": a.alexnet_shape, "resnet50": a.resnet_shape}
    batches = {"alexnet": a.batch, "resnet50": a.resnet_batch}
    damage = dict(p.split(":") for p in a.damage.split(",") if p)
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    for name in a.nets.split(","):
        shape = tuple(int(v) for v in shapes[name].split(","))
        reps, tc, tr, size = run_one(name, shape, batches[name], a.representative, a.min_sqnr, None, out)
        print(f"\n### {name} {'x'.join(map(str, (batches[name],) + shape[1:]))} int8\n")
        print(table(name, reps, a.min_sqnr))
        print("\n" + summary(name, reps, tc, tr, size), flush=True)
        if name in damage:
            reps, tc, tr, size = run_one(name, shape, batches[name], a.representative, a.min_sqnr, damage[name], out)
            print(summary(f"{name} with {damage[name]} damaged", reps, tc, tr, size), flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
