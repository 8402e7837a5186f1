"""Hypotheses for activations: ReLU slopes, PReLU slopes, an activation fused where Caffe has none, Dropout
left in training mode."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ...catalogue import types_with
from ...net import Layer
from ..reports.result import Cause
from ._common import Probe, _F64, _Hyp, _keras_attr, _keras_layers, _run, _with_blobs, _with_param, hypotheses


_ACT_FN: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda y: np.maximum(y, 0.0),
    "sigmoid": lambda y: 1.0 / (1.0 + np.exp(-y)),
    "tanh": np.tanh,
    "softmax": lambda y: np.exp(y - y.max(axis=1, keepdims=True)) / np.exp(y - y.max(axis=1, keepdims=True)).sum(
        axis=1, keepdims=True),  # Keras: the last (channel) axis = Caffe's axis 1
}


_CAFFE_ACTS = types_with(role="activation")


def _extra_activation_hyps(span: list[Layer], ref_out: np.ndarray, keras_layer: Any) -> list[_Hyp]:
    """``extra_layer``: the Keras layer has a fused activation (``Conv2D(..., activation="relu")``) where the Caffe
    span has none (LeNet's convolutions have no ReLU)."""
    if any(lay.kind in _CAFFE_ACTS for lay in span):
        return []
    out = []
    for k in _keras_layers(keras_layer):
        act = getattr(k, "activation", None)
        name = getattr(act, "__name__", None)
        if type(k).__name__ == "Activation" or name not in _ACT_FN:
            continue
        fn = _ACT_FN[name]
        out.append(_Hyp("extra_layer",
                        f"the Keras layer {k.name!r} applies activation={name!r}, which the Caffe net does not have "
                        f"after {span[-1].name!r}",
                        f"drop activation={name!r} from {type(k).__name__} {k.name!r} (Caffe's {span[-1].type} "
                        f"{span[-1].name!r} is not followed by an activation)",
                        lambda fn=fn: fn(np.asarray(ref_out, _F64))))
    return out


def _relu_hyps(layer: Layer, xs: list[np.ndarray], keras_out: np.ndarray, keras_layer: Any) -> list[_Hyp]:
    slope = float(layer.p("relu_param").negative_slope)
    x = np.asarray(xs[0], _F64)
    cands: list[tuple[float, str]] = []
    ks = _keras_attr(keras_layer, ("negative_slope", "alpha"), ("LeakyReLU", "ReLU"))
    if ks is not None:
        cands.append((float(ks), "the Keras layer's"))
    cands.append((0.0, "plain ReLU"))
    neg = x < -1e-6 * max(float(np.abs(x).max()), 1e-30)
    if keras_out.shape == x.shape and neg.any():
        est = float(np.median(np.asarray(keras_out, _F64)[neg] / x[neg]))
        cands.append((est, "measured"))
    hyps = []
    seen: list[float] = []
    for s, how in cands:
        if abs(s - slope) < 1e-9 or any(abs(s - t) < 1e-9 for t in seen):
            continue
        seen.append(s)

        def edit(p: Any, s: float = s) -> None:
            p.relu_param.negative_slope = s

        lay = _with_param(layer, edit)
        hyps.append(_Hyp("relu_slope", f"the Keras activation uses negative slope {s:.6g} ({how}) where Caffe's "
                                       f"negative_slope is {slope:g}",
                         f"use keras.layers.LeakyReLU(negative_slope={slope:g})" if slope else
                         "use a plain ReLU (negative_slope 0)", lambda lay=lay: _run(lay, xs)))
    return hyps


def _prelu_fix(a: np.ndarray, shared: bool, rank: int = 4) -> str:
    """Caffe's slopes as a Keras PReLU on a channels-last input of ``rank`` (4 after a conv, 2 after a Dense): its
    shared_axes and alpha shape fit that rank; numbers spelled out when few (blobs[0] otherwise)."""
    v = a.reshape(-1)
    rank = max(rank, 2)
    if shared:
        axes = ", ".join(str(i) for i in range(1, rank))
        return (f"use Caffe's one channel-shared slope {float(v[0]):.9g}: keras.layers.PReLU(shared_axes=[{axes}], "
                f"alpha_initializer=keras.initializers.Constant({float(v[0]):.9g})) "
                f"(alpha shape {(1,) * (rank - 1)})")
    vals = f"[{', '.join(f'{float(t):.9g}' for t in v)}]" if v.size <= 8 else "the PReLU's blobs[0]"
    ctor = f"shared_axes=[{', '.join(str(i) for i in range(1, rank - 1))}]" if rank > 2 else ""
    shape = (1,) * (rank - 2) + (v.size,)
    return (f"use Caffe's per-channel slopes: keras.layers.PReLU({ctor}) with alpha of shape {shape} = {vals} "
            f"(layer.set_weights([np.reshape(a, {shape})]))")


def _measured_slopes(x: np.ndarray, keras_out: np.ndarray | None) -> tuple[float | None, np.ndarray | None]:
    """(one slope over all negative inputs, one per channel) as the Keras output shows them, or None."""
    if keras_out is None or keras_out.shape != x.shape or x.ndim < 2:
        return None, None
    k = np.asarray(keras_out, _F64)
    neg = x < -1e-6 * max(float(np.abs(x).max()), 1e-30)
    if not neg.any():
        return None, None
    one = float(np.median(k[neg] / x[neg]))
    per = []
    for c in range(x.shape[1]):
        nc = neg[:, c]
        if not nc.any():
            return one, None
        per.append(float(np.median(k[:, c][nc] / x[:, c][nc])))
    return one, np.asarray(per)


def _prelu_hyps(layer: Layer, xs: list[np.ndarray], keras_out: np.ndarray | None = None) -> list[_Hyp]:
    a = np.asarray(layer.blobs[0], _F64)
    shared = bool(layer.p("prelu_param").channel_shared)
    fix = _prelu_fix(a, shared, np.ndim(xs[0]))
    caffe = (f"Caffe's channel-shared slope {float(a.reshape(-1)[0]):.6g}" if shared else
             f"Caffe's {a.size} per-channel slopes")
    hyps = [_Hyp("relu_slope", "the Keras PReLU's slopes are zero (not loaded): it acts as a plain ReLU", fix,
                 lambda: _run(_with_blobs(layer, [np.zeros_like(a)]), xs))]
    if a.size > 1:
        hyps.append(_Hyp("relu_slope", "the Keras PReLU uses the first channel's slope for every channel", fix,
                         lambda: _run(_with_blobs(layer, [np.full_like(a, a.reshape(-1)[0])]), xs)))
        hyps.append(_Hyp("channel_order", "the Keras PReLU's per-channel slopes are in reverse channel order",
                         "keep the slopes in Caffe's channel order: " + fix,
                         lambda: _run(_with_blobs(layer, [a[::-1]]), xs)))
    one, per = _measured_slopes(np.asarray(xs[0], _F64), keras_out)
    if one is not None and not np.allclose(one, a, rtol=1e-6, atol=0):
        hyps.append(_Hyp("relu_slope", f"the Keras PReLU uses one slope {one:.6g} for every channel (measured) where "
                                       f"{caffe} {'applies' if shared else 'apply'}", fix,
                         lambda: _run(_with_blobs(layer, [np.full_like(a, one)]), xs)))
    if per is not None and a.size == per.size and not np.allclose(per, a.reshape(-1), rtol=1e-6, atol=0):
        hyps.append(_Hyp("relu_slope", f"the Keras PReLU's slopes are ({', '.join(f'{v:.6g}' for v in per[:8])}"
                                       f"{', ...' if per.size > 8 else ''}) (measured per channel) where {caffe} "
                                       f"are ({', '.join(f'{v:.6g}' for v in a.reshape(-1)[:8])}"
                                       f"{', ...' if a.size > 8 else ''})", fix,
                         lambda: _run(_with_blobs(layer, [per.reshape(a.shape)]), xs)))
    return hyps


def _dropout_cause(layer: Layer, ref: np.ndarray, ker: np.ndarray) -> Cause | None:
    """Dropout ran in training mode: about ``ratio`` of the elements zeroed, the rest scaled by 1 / (1 - ratio)."""
    p = float(layer.p("dropout_param").dropout_ratio)
    nz = ref != 0
    n = int(nz.sum())
    if n < 8 or not 0 < p < 1:
        return None
    zeroed = (ker == 0) & nz
    frac = float(zeroed.sum()) / n
    keep = nz & ~zeroed
    if not keep.any() or frac == 0:
        return None
    ratio = float(np.median(ker[keep] / ref[keep]))
    spread = 0.1 + 3 * math.sqrt(p * (1 - p) / n)
    conf = 0.0
    if abs(frac - p) <= spread:
        conf = 0.6
        if abs(ratio * (1 - p) - 1) < 1e-3:
            conf = 0.97
    if conf == 0:
        return None
    return Cause("dropout_active", conf,
                 f"{frac:.0%} of the non-zero elements are zeroed (dropout_ratio {p:g}) and the rest are scaled by "
                 f"{ratio:.4g} (1 / (1 - ratio) = {1 / (1 - p):.4g}): dropout ran in training mode",
                 "run the Keras model in inference mode (model(x, training=False) / model.predict); Caffe's Dropout "
                 "is the identity in the TEST phase")


def _keras_clip(keras_layer: Any, keras_out: np.ndarray | None) -> float | None:
    """The value the Keras activation clips at: a ReLU layer's max_value, 6 for relu6, else the output's maximum
    when many elements sit exactly on it (the evidence ``caffe=244.65 keras=6``)."""
    mv = _keras_attr(keras_layer, ("max_value",), ("ReLU",))
    if mv is not None:
        return float(mv)
    for k in _keras_layers(keras_layer):
        if getattr(getattr(k, "activation", None), "__name__", "") == "relu6":
            return 6.0
    if keras_out is not None and keras_out.size:
        top = float(np.max(keras_out))
        if top > 0 and np.count_nonzero(keras_out == top) >= max(2, keras_out.size // 1000):
            return top
    return None


def _clip_hyps(layer: Layer, xs: list[np.ndarray], probe: Probe) -> list[_Hyp]:
    """``activation_clipped``: the Keras activation clips (ReLU6, ReLU(max_value=m)) where Caffe's ReLU does not."""
    m = _keras_clip(probe.keras_layer, probe.keras_out)
    if m is None:
        return []
    slope = float(layer.p("relu_param").negative_slope)
    fix = (f"use keras.layers.LeakyReLU(negative_slope={slope:g})" if slope else
           "use keras.layers.ReLU() with no max_value (activation='relu', not 'relu6')")
    return [_Hyp("activation_clipped", f"the Keras activation clips its output at {m:g} (ReLU6 / ReLU(max_value="
                                       f"{m:g})) where Caffe's ReLU does not clip", fix,
                 lambda: np.minimum(_run(layer, xs), m))]


@hypotheses("ReLU")
def relu_family(layer: Layer, xs: list[np.ndarray], probe: Probe) -> list[_Hyp]:
    return _clip_hyps(layer, xs, probe) + _relu_hyps(
        layer, xs, probe.keras_out if probe.keras_out is not None else xs[0], probe.keras_layer)


@hypotheses("ReLU6")
def relu6_family(layer: Layer, xs: list[np.ndarray], probe: Probe) -> list[_Hyp]:
    """``activation_clipped`` the other way: Caffe's ReLU6 clips at 6, the Keras activation does not."""
    x = np.asarray(xs[0], _F64)
    if not np.any(x > 6):
        return []
    return [_Hyp("activation_clipped", "the Keras activation does not clip at 6 where Caffe's ReLU6 does",
                 "use keras.layers.ReLU(max_value=6.0) (or activation='relu6')", lambda: np.maximum(x, 0.0))]


@hypotheses("PReLU")
def prelu_family(layer: Layer, xs: list[np.ndarray], probe: Probe) -> list[_Hyp]:
    return _prelu_hyps(layer, xs, probe.keras_out) if layer.blobs else []
