"""Hypotheses for BatchNorm (factor blob, epsilon, batch statistics, weight order) and LRN (alpha, k, size)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ...catalogue import completes
from ...net import Layer
from ...params import lrn_region
from ._common import Probe, _F64, _Hyp, _keras_attr, _run, _with_blobs, _with_param, hypotheses


def _bn_hyps(layer: Layer, xs: list[np.ndarray], keras_layer: Any) -> list[_Hyp]:
    hyps: list[_Hyp] = []
    bp = layer.p("batch_norm_param")
    if len(layer.blobs) == 3:
        mean, var, fac = (np.asarray(bb, _F64) for bb in layer.blobs)
        f = float(fac.reshape(-1)[0])
        if f != 1.0:
            lay = _with_blobs(layer, [mean, var, np.ones_like(fac)])
            scale = 0.0 if f == 0 else 1.0 / f
            hyps.append(_Hyp("bn_scale_factor",
                             f"the Keras BatchNormalization uses blobs[0] and blobs[1] as mean and variance directly, "
                             f"ignoring the moving-average factor blobs[2] = {f:g}",
                             f"divide by the factor: mean = blobs[0] * {scale:.6g}, variance = blobs[1] * {scale:.6g} "
                             f"(1 / blobs[2]; 0 when blobs[2] == 0)", lambda lay=lay: _run(lay, xs)))
    if len(layer.blobs) >= 2:
        hyps += _bn_factor_eps_hyps(layer, xs)
    caffe_global = not bp.HasField("use_global_stats") or bp.use_global_stats
    if caffe_global or len(layer.blobs) >= 3:  # the port uses the other statistics than Caffe does
        def flip(p: Any, use: bool = not caffe_global) -> None:
            p.batch_norm_param.use_global_stats = use

        lay_bs = _with_param(layer, flip)
        expl, fix = (("the Keras side normalises with the batch's own mean and variance (BatchNormalization in "
                      "training mode) instead of the stored statistics",
                      "run the model in inference mode (model(x, training=False) or model.predict) and keep "
                      "BatchNormalization layers frozen") if caffe_global else
                     ("the Keras side normalises with the stored mean and variance where Caffe "
                      "(use_global_stats: false) uses the batch's own statistics, even at TEST",
                      "normalise with the batch's mean and biased variance over N, H, W per channel (the "
                      "converter's CaffeBatchStatsNorm), not BatchNormalization in inference mode"))
        hyps.append(_Hyp("bn_batch_stats", expl, fix, lambda: _run(lay_bs, xs)))
    caffe_eps = float(bp.eps)
    keps = _keras_attr(keras_layer, ("epsilon",), ("BatchNormalization",))
    candidates = [float(keps)] if keps is not None else []
    candidates += [e for e in (1e-3,) if e not in candidates]
    for e in candidates:
        if abs(e - caffe_eps) <= 1e-12:
            continue

        def edit(p: Any, e: float = e) -> None:
            p.batch_norm_param.eps = e

        lay = _with_param(layer, edit)
        hyps.append(_Hyp("bn_epsilon",
                         f"the Keras BatchNormalization uses epsilon={e:g} where Caffe uses eps={caffe_eps:g}",
                         f"BatchNormalization(epsilon={caffe_eps:g}) (Keras defaults to 1e-3, Caffe to 1e-5)",
                         lambda lay=lay: _run(lay, xs), weight_match=keps is not None and abs(float(keps) - e) < 1e-12))
    return hyps


# what a converter adds to the moving-average factor before dividing the variance by it (caffe2onnx 2.0.1 divides
# the variance by ``blobs[2] + 1e-5``, the mean by ``blobs[2]``: a relative variance error of 1e-5 / blobs[2],
# rounding-sized per layer for a trained net's factor of ~1000, compounding down a net for a factor near 1)
_FACTOR_EPS = (1e-5,)


def _bn_factor_eps_hyps(layer: Layer, xs: list[np.ndarray]) -> list[_Hyp]:
    """``bn_scale_factor``: the variance (or mean and variance) divided by the factor plus a small epsilon."""
    mean, var = (np.asarray(bb, _F64) for bb in layer.blobs[:2])
    f = float(np.asarray(layer.blobs[2], _F64).reshape(-1)[0]) if len(layer.blobs) >= 3 else 1.0
    if f == 0:
        return []
    hyps = []
    for e in _FACTOR_EPS:
        for both in (False, True):
            m2 = mean * (f / (f + e)) if both else mean
            lay = _with_blobs(layer, [m2, var * (f / (f + e)), *layer.blobs[2:]])
            what = "mean and variance" if both else "variance"
            hyps.append(_Hyp("bn_scale_factor",
                             f"the {what} divided by the moving-average factor plus {e:g} (blobs[2] + {e:g} = "
                             f"{f + e:.7g}) instead of the factor {f:g} (caffe2onnx 2.0.1 divides the variance so): "
                             f"a relative variance error of {e / f:.1e} in this BatchNorm, below float32 rounding "
                             f"for a trained net's factor of ~1000, compounding down the net for a factor near 1",
                             f"divide the mean and the variance by blobs[2] = {f:g} exactly (mean = blobs[0] / "
                             f"blobs[2], variance = blobs[1] / blobs[2]); in a caffe2onnx ONNX file, replace the "
                             f"BatchNormalization's variance input by blobs[1] / blobs[2]",
                             lambda lay=lay: _run(lay, xs)))
    return hyps


def _lrn_hyps(layer: Layer, xs: list[np.ndarray]) -> list[_Hyp]:
    lp = layer.p("lrn_param")
    n, alpha, k = int(lp.local_size), float(lp.alpha), float(lp.k)
    hyps: list[_Hyp] = []

    def variant(code: str, expl: str, fix: str, **changes: float) -> None:
        def edit(p: Any) -> None:
            for f, v in changes.items():
                setattr(p.lrn_param, f, v)
        lay = _with_param(layer, edit)
        hyps.append(_Hyp(code, expl, fix, lambda: _run(lay, xs)))

    if n > 1:
        variant("lrn_alpha_scaling", f"the Keras LRN uses alpha={alpha:g} per element; Caffe divides it by "
                                     f"local_size={n} (alpha / n = {alpha / n:g})",
                f"pass alpha={alpha:g} / {n} = {alpha / n:g} to tf.nn.local_response_normalization", alpha=alpha * n)
        variant("lrn_alpha_scaling", f"the Keras LRN divides alpha by local_size twice (alpha / n^2)",
                f"pass alpha / n = {alpha / n:g} once", alpha=alpha / n)
        variant("lrn_size", f"the Keras LRN sums {2 * n + 1} channels (depth_radius={n}); Caffe's local_size={n} "
                            f"means depth_radius={(n - 1) // 2}",
                f"use depth_radius=(local_size - 1) // 2 = {(n - 1) // 2}", local_size=2 * n + 1,
                alpha=alpha * (2 * n + 1) / n)
    for k2 in (1.0, 2.0, 0.0):
        if abs(k2 - k) > 1e-12 and lrn_region(layer) == "ACROSS_CHANNELS":
            variant("lrn_k", f"the Keras LRN uses bias k={k2:g} where Caffe uses k={k:g}",
                    f"pass bias={k:g} (Caffe's lrn_param.k) to tf.nn.local_response_normalization", k=k2)
    return hyps


def _bn_order_hyps(span: list[Layer], xs: list[np.ndarray]) -> list[tuple[_Hyp, list[Layer]]]:
    """BatchNorm (+ Scale) recomputed with its four per-channel vectors given to Keras in another order."""
    bn = span[0]
    x = np.asarray(xs[0], _F64) if xs else None
    if len(bn.blobs) != 3 or x is None or x.ndim < 2:  # called for a BatchNorm span (diagnose/engine._SPAN_HYPS)
        return []
    c = x.shape[1]
    mean, var, fac = (np.asarray(bb, _F64).reshape(-1) for bb in bn.blobs)
    if mean.size != c or var.size != c:
        return []
    f = float(fac[0])
    sc = 0.0 if f == 0 else 1.0 / f
    mean, var = mean * sc, var * sc
    eps = float(bn.p("batch_norm_param").eps)
    gamma, beta = np.ones(c), np.zeros(c)
    tail = span[1:]
    has_scale = False
    if len(span) > 1 and completes(bn.kind, span[1].kind) and span[1].blobs and span[1].blobs[0].size == c:
        gamma = np.asarray(span[1].blobs[0], _F64).reshape(-1)
        if len(span[1].blobs) > 1:
            beta = np.asarray(span[1].blobs[1], _F64).reshape(-1)
        tail, has_scale = span[2:], True
    names = ("gamma", "beta", "mean", "variance")
    vals = (gamma, beta, mean, var)
    perms = list(itertools.permutations(range(4)))[1:] if has_scale else [(0, 1, 3, 2)]
    shape = (1, c) + (1,) * (x.ndim - 2)
    out = []
    for perm in perms:
        g, b, m, v = (vals[i].reshape(shape) for i in perm)
        if all(np.array_equal(vals[perm[j]], vals[j]) for j in range(4)):
            continue

        def predict(g=g, b=b, m=m, v=v) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                return g * (x - m) / np.sqrt(v + eps) + b

        given = ", ".join(names[i] for i in perm)
        out.append((_Hyp("bn_weight_order",
                         f"the Keras BatchNormalization got its weights in the order [{given}] where it expects "
                         "[gamma, beta, moving_mean, moving_variance]",
                         "set_weights([gamma, beta, mean, variance]) in exactly that order (Scale blobs[0], blobs[1]; "
                         "BatchNorm blobs[0] / blobs[2], blobs[1] / blobs[2])", predict), tail))
    return out


def _bn_scale_split_hyps(span: list[Layer], xs: list[np.ndarray]) -> list[tuple[_Hyp, list[Layer]]]:
    """``bn_scale_split``: one Keras BatchNormalization stands for Caffe's BatchNorm + Scale but computes only one of
    them -- the Scale's gamma/beta never loaded (ones and zeros), or the BatchNorm's statistics never loaded (mean 0,
    variance 1, only the Scale applied)."""
    if len(span) < 2 or not completes(span[0].kind, span[1].kind) or not xs:
        return []
    bn, scale, rest = span[0], span[1], span[2:]
    x = np.asarray(xs[0], _F64)
    eps = float(bn.p("batch_norm_param").eps)
    return [
        (_Hyp("bn_scale_split", "the Keras BatchNormalization normalises with Caffe's statistics but leaves out the "
                                "Scale that follows (gamma 1, beta 0: the Scale's blobs were never loaded)",
              f"load the Scale {scale.name!r} into the same BatchNormalization: set_weights([Scale blobs[0], Scale "
              f"blobs[1], mean, variance]) with center=True, scale=True", lambda: _run(bn, [x]),
              layer=scale.name), rest),
        (_Hyp("bn_scale_split", "the Keras BatchNormalization applies the Scale's gamma/beta but not Caffe's "
                                "statistics (moving mean 0, variance 1: the BatchNorm's blobs were never loaded)",
              f"load the BatchNorm {bn.name!r} statistics too: moving_mean = blobs[0] / blobs[2], moving_variance = "
              f"blobs[1] / blobs[2]", lambda: _run(scale, [x / np.sqrt(1.0 + eps)]), layer=bn.name), rest),
    ]


@hypotheses("BatchNorm")
def batchnorm_family(layer: Layer, xs: list[np.ndarray], probe: Probe) -> list[_Hyp]:
    return _bn_hyps(layer, xs, probe.keras_layer)


@hypotheses("LRN")
def lrn_family(layer: Layer, xs: list[np.ndarray], probe: Probe) -> list[_Hyp]:
    return _lrn_hyps(layer, xs)
