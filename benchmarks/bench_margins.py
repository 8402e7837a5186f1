"""Benchmark: the float32 bound's margins on trained-like first layers, on every backend, before and after issue 25,
and the detection floor (the smallest weight / parameter error still caught) before and after.

Cases (seeded, generated here; no data files):

* filters as trained first layers have them: smooth (Gaussian-blurred noise), mean-free (sum 0) luminance filters
  (the same pattern in B, G and R) and colour-opponent ones, scaled to trained statistics; a 3x3 64->64 layer with
  mean-free per-filter random weights on the ReLU of the first layer's output (a deeper layer, for comparison);
* inputs on Caffe's scale: photograph-like 8-bit images (a 1/f spectrum luminance with weak chroma, flat (some
  saturated) "sky" regions with +-2 levels of sensor noise, hard edges), BGR, minus the mean (104, 117, 123): values up to ~150;
* layers as the zoo has them: 7x7/2 (ResNet), 11x11/4 (AlexNet), 3x3/1 (VGG), and the 3x3 64->64.

Backends: TensorFlow (oneDNN, NHWC), torch (NCHW), JAX/XLA CPU (NCHW) and LiteRT (XNNPACK), each run on the same
float32 input and weights; the float64 reference is harness.reference's.  Ratios: ``|y32 - y64| / bound`` per
element, its largest over each (layer, backend) blob and the median of those over the images:

* ``before``: the bound of issue 19 (``6 u sqrt(K+1) (||w*x||_2 + |y|)``, no element-count factor);
* ``after``: the statistical bound now (the partial-sum term of the magnitude, the count factor);
* ``ceiling``: the rigorous float32 ceiling ``gamma_{K+3} (sum |w||x| + |b|)``.

Detection floor (TensorFlow): every weight of the layer multiplied by ``1 + d*e`` (``e`` standard normal, seeded),
and, separately, the largest weight of one filter multiplied by ``1 + d``; a BatchNorm on the first layer's output
with epsilon ``e'`` where Caffe has 1e-5.  "caught" = some element past the bound, in how many of the images.

Usage: python benchmarks/bench_margins.py [--images 20] [--backends tf torch jax litert] [--size 224]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

MEAN_BGR = (104.0, 117.0, 123.0)


# ------------------------------------------------------------------------------------------------------------ data

def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of the last two axes by FFT (periodic)."""
    h, w = a.shape[-2:]
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    g = np.exp(-2 * (math.pi * sigma) ** 2 * (fy ** 2 + fx ** 2))
    return np.real(np.fft.ifft2(np.fft.fft2(a) * g))


def photo(rng: np.random.Generator, size: int) -> np.ndarray:
    """(3, size, size) float32, 8-bit BGR values minus the mean: 1/f luminance, weak chroma, flat saturated regions,
    edges."""
    fy, fx = np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :]
    f = np.sqrt(fy ** 2 + fx ** 2)
    f[0, 0] = 1.0
    spec = (rng.standard_normal((4, size, size)) + 1j * rng.standard_normal((4, size, size))) / f ** 1.1
    field = np.real(np.fft.ifft2(spec))
    field /= field.std(axis=(1, 2), keepdims=True)
    lum = 120 + 55 * field[0]
    img = np.stack([lum + 12 * field[1] + 8 * field[3], lum + 6 * field[2], lum - 12 * field[1]])
    for _ in range(rng.integers(1, 4)):  # flat regions: sky, walls (some saturated)
        y0, x0 = rng.integers(0, size, 2)
        hh, ww = rng.integers(size // 8, size // 2, 2)
        flat = rng.choice([255.0, rng.uniform(0, 255)], size=(3, 1, 1))
        img[:, y0:y0 + hh, x0:x0 + ww] = flat + rng.integers(-2, 3, img[:, y0:y0 + hh, x0:x0 + ww].shape)  # noise
    img = np.clip(np.round(img), 0, 255)
    return (img - np.asarray(MEAN_BGR)[:, None, None]).astype(np.float32)


def first_filters(rng: np.random.Generator, cout: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(cout, 3, k, k) float32 smooth mean-free filters (1/3 smooth luminance blobs, 1/3 oriented edge detectors,
    1/3 colour-opponent), and a bias."""
    w = np.empty((cout, 3, k, k))
    for o in range(cout):
        pat = _blur(rng.standard_normal((k + 6, k + 6)), k / 6.0)[3:3 + k, 3:3 + k]
        if o % 3 == 1:  # an oriented edge detector: one half-plane positive, the other negative
            ang = rng.uniform(0, math.pi)
            yy, xx = np.mgrid[:k, :k] - (k - 1) / 2.0
            edge = np.sign(np.cos(ang) * yy + np.sin(ang) * xx)
            w[o] = (edge + 0.3 * pat / (pat.std() + 1e-12))[None] * rng.uniform(0.8, 1.2, (3, 1, 1))
        elif o % 3:
            w[o] = pat[None] * rng.uniform(0.7, 1.3, (3, 1, 1))
        else:
            w[o] = np.stack([pat, -0.5 * pat, -0.5 * pat])[rng.permutation(3)] + 0.2 * _blur(
                rng.standard_normal((3, k, k)), 1.0)
        w[o] -= w[o].mean()
        w[o] *= 0.03 * 147 ** 0.5 / (np.linalg.norm(w[o]) + 1e-12)  # trained ResNet conv1: |w| ~ 0.35, std ~ 0.03
    return w.astype(np.float32), rng.normal(0, 0.1, cout).astype(np.float32)


def deep_filters(rng: np.random.Generator, cin: int, cout: int) -> tuple[np.ndarray, np.ndarray]:
    w = rng.standard_normal((cout, cin, 3, 3))
    w -= w.mean(axis=(1, 2, 3), keepdims=True)
    return (w * math.sqrt(2.0 / (cin * 9))).astype(np.float32), rng.normal(0, 0.01, cout).astype(np.float32)


# ------------------------------------------------------------------------------------------------------- the layer

def conv_layer(w: np.ndarray, b: np.ndarray, stride: int, pad: int, shape: tuple[int, ...]):
    from harness.caffe import load_net_text

    cout, cin, k, _ = w.shape
    net = load_net_text(f"""
        layer {{ name: "data" type: "Input" top: "data"
                input_param {{ shape {{ dim: {shape[0]} dim: {cin} dim: {shape[2]} dim: {shape[3]} }} }} }}
        layer {{ name: "conv" type: "Convolution" bottom: "data" top: "conv"
                convolution_param {{ num_output: {cout} kernel_size: {k} stride: {stride} pad: {pad} }} }}
    """)
    from dataclasses import replace

    return replace(net.layer("conv"), blobs=(w, b))


def reference(layer, x: np.ndarray) -> np.ndarray:
    from harness.reference.registry import REFERENCE

    return REFERENCE[layer.type](layer, [x.astype(np.float64)], dtype=np.float64)[0]


def bounds(layer, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    from harness.compare.engine.tolerance import derived_bound, issue19_bound

    with issue19_bound():
        old = derived_bound(layer, [x], y).values
    new = derived_bound(layer, [x], y, ceiling=True)
    return {"before": old, "after": derived_bound(layer, [x], y).values, "ceiling": new.values}


# ------------------------------------------------------------------------------------------------------- backends

def run_tf(x, w, b, s, p):
    import tensorflow as tf

    y = tf.nn.conv2d(tf.constant(x.transpose(0, 2, 3, 1)), tf.constant(w.transpose(2, 3, 1, 0)), s,
                     [[0, 0], [p, p], [p, p], [0, 0]]) + b
    return y.numpy().transpose(0, 3, 1, 2)


def run_torch(x, w, b, s, p):
    import torch

    with torch.no_grad():
        return torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), s, p).numpy()


def run_jax(x, w, b, s, p):
    import jax

    y = jax.lax.conv_general_dilated(x, w, (s, s), [(p, p), (p, p)], dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                     precision=jax.lax.Precision.HIGHEST)
    return np.asarray(y) + b[None, :, None, None]


_LITERT: dict = {}


def run_litert(x, w, b, s, p):
    """LiteRT's default CPU path (XNNPACK); one converted model per (weights, input shape)."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    xn = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    key = (w.tobytes(), b.tobytes(), xn.shape, s, p)
    it = _LITERT.get(key)
    if it is None:
        _LITERT.clear()
        fn = tf.function(lambda t: tf.nn.conv2d(tf.pad(t, [[0, 0], [p, p], [p, p], [0, 0]]), w.transpose(2, 3, 1, 0),
                                                s, "VALID") + b, input_signature=[tf.TensorSpec(xn.shape, tf.float32)])
        conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
        it = _LITERT[key] = Interpreter(model_content=conv.convert())
        it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], xn)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).transpose(0, 3, 1, 2)


BACKENDS = {"tf": run_tf, "torch": run_torch, "jax": run_jax, "litert": run_litert}


# ------------------------------------------------------------------------------------------------------ measuring

CASES = [("7x7/2 3->64 (ResNet conv1)", 7, 2, 3, 64), ("11x11/4 3->96 (AlexNet conv1)", 11, 4, 0, 96),
         ("3x3/1 3->64 (VGG conv1_1)", 3, 1, 1, 64), ("3x3/1 64->64 on ReLU(conv1), centre quarter", 3, 1, 1, 64)]
DELTAS = (1e-2, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
EPSILONS = (1e-3, 1e-4, 2e-5, 1e-6)


def ratio(y32: np.ndarray, y64: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(y32.astype(np.float64) - y64) / b))


def case_inputs(name: str, rng, size: int, images: int, w1, b1):
    xs = [photo(rng, size)[None] for _ in range(images)]
    if "64->64" not in name:
        return xs
    # the deeper layer reads ReLU(7x7/2 conv1) of the same photographs (its central quarter: time)
    q = xs[0].shape[-1] // 2  # conv1 output size
    c0 = (q - q // 2) // 2
    return [np.maximum(run_tf(x, w1, b1, 2, 3), 0)[:, :, c0:c0 + q // 2, c0:c0 + q // 2].astype(np.float32)
            for x in xs]


def measure(args) -> tuple[list, list, list]:
    rng = np.random.default_rng(25)
    w1, b1 = first_filters(np.random.default_rng(7), 64, 7)
    margins, floors, bn = [], [], []
    for name, k, s, p, cout in CASES:
        w, b = (deep_filters(rng, 64, cout) if "64->64" in name else
                (w1, b1) if k == 7 else first_filters(rng, cout, k))
        xs = case_inputs(name, np.random.default_rng(100 + k), args.size, args.images, w1, b1)
        per = {(be, kind): [] for be in args.backends for kind in ("before", "after", "ceiling")}
        caught = {(kind, d, how): 0 for kind in ("before", "after", "ceiling") for d in DELTAS
                  for how in ("all", "one")}
        t0 = time.perf_counter()
        for i, x in enumerate(xs):
            layer = conv_layer(w, b, s, p, x.shape)
            y64 = reference(layer, x)
            bb = bounds(layer, x, y64)
            for be in args.backends:
                y32 = BACKENDS[be](x, w, b, s, p)
                for kind in bb:
                    per[(be, kind)].append(ratio(y32, y64, bb[kind]))
            prng = np.random.default_rng(1000 + i)
            for d in DELTAS:
                wa = (w.astype(np.float64) * (1 + d * prng.standard_normal(w.shape))).astype(np.float32)
                wo = w.copy()
                o = i % cout
                j = np.unravel_index(np.argmax(np.abs(w[o])), w[o].shape)
                wo[(o,) + j] = np.float32(w[(o,) + j] * (1 + d))
                for how, ww in (("all", wa), ("one", wo)):
                    y32 = run_tf(x, ww, b, s, p)
                    for kind in bb:
                        caught[(kind, d, how)] += ratio(y32, y64, bb[kind]) > 1
        margins.append((name, per, time.perf_counter() - t0))
        floors.append((name, caught, len(xs)))
    bn = measure_bn(args, w1, b1)
    return margins, floors, bn


def measure_bn(args, w1, b1) -> list:
    """BatchNorm (Caffe eps 1e-5) on the 7x7/2 conv1 output: a Keras epsilon e' instead, caught or not."""
    from dataclasses import replace

    from harness.caffe import load_net_text
    from harness.compare.engine.tolerance import derived_bound, issue19_bound
    from harness.reference.registry import REFERENCE

    rng = np.random.default_rng(5)
    out = []
    xs = [run_tf(photo(np.random.default_rng(200 + i), args.size)[None], w1, b1, 2, 3) for i in range(args.images)]
    var = np.var(np.concatenate(xs), axis=(0, 2, 3)) * rng.uniform(0.5, 2.0, 64)
    mean = np.mean(np.concatenate(xs), axis=(0, 2, 3))
    net = load_net_text("""
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 64 dim: 8 dim: 8 } } }
        layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" }""")
    lay = replace(net.layer("bn"), blobs=(mean.astype(np.float32), var.astype(np.float32), np.ones(1, np.float32)))
    for e in EPSILONS:
        hits = {"before": 0, "after": 0}
        for x in xs:
            y64 = REFERENCE["BatchNorm"](lay, [x.astype(np.float64)], dtype=np.float64)[0]
            inv = (1.0 / np.sqrt(var.astype(np.float32) + np.float32(e))).astype(np.float32)
            y32 = (x - mean.astype(np.float32)[None, :, None, None]) * inv[None, :, None, None]
            with issue19_bound():
                old = derived_bound(lay, [x.astype(np.float64)], y64).values
            hits["before"] += ratio(y32, y64, old) > 1
            hits["after"] += ratio(y32, y64, derived_bound(lay, [x.astype(np.float64)], y64).values) > 1
        out.append((e, hits, len(xs)))
    return out


# ------------------------------------------------------------------------------------------------------- printing

def print_tables(margins, floors, bn, args) -> None:
    print(f"## Margins: largest |y32 - y64| / bound per blob, over {args.images} photographs "
          f"({args.size}x{args.size}, batch 1); median / worst of the per-image maxima\n")
    print("| layer | backend | before (median / worst) | after (median / worst) | ceiling (median / worst) |")
    print("| --- | --- | --- | --- | --- |")
    for name, per, _ in margins:
        for be in args.backends:
            cells = []
            for kind in ("before", "after", "ceiling"):
                v = np.asarray(per[(be, kind)])
                cells.append(f"{np.median(v):.3f} / {v.max():.3f}" + (f" ({int((v > 1).sum())} > 1)"
                                                                       if (v > 1).any() else ""))
            print(f"| {name} | {be} | " + " | ".join(cells) + " |")
    print("\n## Detection floor (TensorFlow): images caught of "
          f"{args.images}, before / after (statistical bound) / ceiling alone\n")
    print("| layer | perturbation | " + " | ".join(f"d={d:g}" for d in DELTAS) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in DELTAS) + " |")
    for name, caught, n in floors:
        for how, what in (("all", "every weight x (1 + d N(0,1))"), ("one", "largest weight of one filter x (1+d)")):
            cells = [f"{caught[('before', d, how)]}/{caught[('after', d, how)]}/{caught[('ceiling', d, how)]}"
                     for d in DELTAS]
            print(f"| {name} | {what} | " + " | ".join(cells) + " |")
    print("\n## BatchNorm epsilon (Caffe 1e-5) on the 7x7/2 output: images caught, before / after\n")
    print("| Keras epsilon | caught before | caught after |")
    print("| --- | --- | --- |")
    for e, hits, n in bn:
        print(f"| {e:g} | {hits['before']}/{n} | {hits['after']}/{n} |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    args = ap.parse_args(argv)
    t = time.perf_counter()
    margins, floors, bn = measure(args)
    print_tables(margins, floors, bn, args)
    print(f"\n({time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
