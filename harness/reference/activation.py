"""Element-wise neuron layers: ReLU, ReLU6, PReLU, ELU, Sigmoid, TanH, AbsVal, BNLL, Power, Exp, Log, Threshold, Clip,
Swish, Dropout.

Each is a pure function of the data (Caffe parameters keyword-only) quoting the rule of its Caffe source file, plus a
thin registered binding that reads the layer's parameters.  Parameter values are float32 in caffe.proto; they reach the
math as the exact float32 value, as in Caffe.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..net import Layer
from ._reject import bad_shape, expect_bottoms, unsupported
from .registry import REFERENCE


# ----------------------------------------------------------------------------------------------------------------
# Pure functions
# ----------------------------------------------------------------------------------------------------------------


def relu(x: NDArray, *, negative_slope: float = 0.0) -> NDArray:
    """``relu_layer.cpp``: ``top = max(bottom, 0) + negative_slope * min(bottom, 0)``.

    Slope 0 (the common case) is computed as ``x * (x > 0) + 0`` in three cheap passes into one fresh array (the
    four-pass formula with its temporaries cost 3-7x the time on big blobs), value for value what Caffe's formula
    gives: ``x > 0`` -> ``x``; a finite ``x <= 0`` -> ``+0`` (the ``+ 0`` turns ``negative * 0 = -0`` into Caffe's
    ``0 + -0 = +0``); NaN -> NaN; ``-inf`` -> ``-inf * 0`` = NaN, as Caffe's ``0 * min(-inf, 0)``.  Other slopes keep
    the literal formula.
    """
    t = x.dtype.type
    s = t(negative_slope)
    if s != 0:
        return np.maximum(x, 0) + s * np.minimum(x, 0)
    out = np.multiply(x, np.greater(x, 0), dtype=x.dtype)
    np.add(out, t(0), out=out)
    return out


def relu6(x: NDArray) -> NDArray:
    """ReLU6 (MobileNet forks, ``relu6_layer.cpp``): ``top = min(max(bottom, 0), 6)``."""
    return np.minimum(np.maximum(x, 0), x.dtype.type(6))


def prelu(x: NDArray, *, slope: NDArray) -> NDArray:
    """``prelu_layer.cpp``: ``top = max(bottom, 0) + a_c * min(bottom, 0)``, ``c`` the axis-1 index.

    ``slope`` has shape ``(C,)`` (one slope per channel) or ``(1,)`` (``channel_shared``); axes after 1 share it.
    """
    a = np.asarray(slope, dtype=x.dtype).reshape((1, -1) + (1,) * (x.ndim - 2))
    return np.maximum(x, 0) + a * np.minimum(x, 0)


def elu(x: NDArray, *, alpha: float = 1.0) -> NDArray:
    """``elu_layer.cpp``: ``top = max(x, 0) + alpha * (exp(min(x, 0)) - 1)``."""
    return np.maximum(x, 0) + x.dtype.type(alpha) * np.expm1(np.minimum(x, 0))


def sigmoid(x: NDArray) -> NDArray:
    """``sigmoid_layer.cpp``: ``top = 0.5 * tanh(0.5 * x) + 0.5`` (= 1 / (1 + exp(-x)), overflow-free)."""
    half = x.dtype.type(0.5)
    return half * np.tanh(half * x) + half


def tanh(x: NDArray) -> NDArray:
    """``tanh_layer.cpp``: ``top = tanh(x)``."""
    return np.tanh(x)


def absval(x: NDArray) -> NDArray:
    """``absval_layer.cpp``: ``top = |x|``."""
    return np.abs(x)


def bnll(x: NDArray) -> NDArray:
    """``bnll_layer.cpp`` (numerically stable softplus):
    ``top = x > 0 ? x + log(1 + exp(-x)) : log(1 + exp(x))``."""
    return np.where(x > 0, x + np.log1p(np.exp(-np.abs(x))), np.log1p(np.exp(np.minimum(x, 0))))


def power(x: NDArray, *, power: float = 1.0, scale: float = 1.0, shift: float = 0.0) -> NDArray:
    """``power_layer.cpp``: ``top = (shift + scale * x) ^ power``.

    Caffe's special case: when ``power * scale == 0`` the input is ignored and every element is
    ``power == 0 ? 1 : shift ^ power``.
    """
    t = x.dtype.type
    if power * scale == 0:
        value = t(1) if power == 0 else np.power(t(shift), t(power))
        return np.full_like(x, value)
    y = x
    if scale != 1:
        y = y * t(scale)
    if shift != 0:
        y = y + t(shift)
    if power != 1:
        y = np.power(y, t(power))
    return np.array(y, dtype=x.dtype, copy=True)


def exp(x: NDArray, *, base: float = -1.0, scale: float = 1.0, shift: float = 0.0) -> NDArray:
    """``exp_layer.cpp``: ``top = base ^ (shift + scale * x)``; ``base == -1`` means e, else ``base > 0``.

    Caffe computes ``outer * exp(inner * x)`` with ``inner = ln(base) * scale`` and ``outer = base ^ shift``.
    """
    t = x.dtype.type
    log_base = 1.0 if base == -1 else float(np.log(base))
    inner = t(log_base * scale)
    outer = t(1.0) if shift == 0 else t(np.exp(log_base * shift))
    return outer * np.exp(inner * x)


def log(x: NDArray, *, base: float = -1.0, scale: float = 1.0, shift: float = 0.0) -> NDArray:
    """``log_layer.cpp``: ``top = log_base(shift + scale * x)``; ``base == -1`` means e, else ``base > 0``.

    Caffe computes ``ln(shift + scale * x) / ln(base)``.
    """
    t = x.dtype.type
    base_scale = 1.0 if base == -1 else 1.0 / float(np.log(base))
    y = np.log(x * t(scale) + t(shift))
    return y if base_scale == 1.0 else y * t(base_scale)


def threshold(x: NDArray, *, threshold: float = 0.0) -> NDArray:
    """``threshold_layer.cpp``: ``top = bottom > threshold ? 1 : 0`` (strict)."""
    return (x > x.dtype.type(threshold)).astype(x.dtype)


def clip(x: NDArray, *, min: float, max: float) -> NDArray:  # noqa: A002 - Caffe's field names
    """``clip_layer.cpp``: ``top = max(min, min(bottom, max))``."""
    t = x.dtype.type
    return np.maximum(t(min), np.minimum(x, t(max)))


def swish(x: NDArray, *, beta: float = 1.0) -> NDArray:
    """``swish_layer.cpp``: ``top = x * sigmoid(beta * x)``."""
    return x * sigmoid(x * x.dtype.type(beta))


def dropout_test(x: NDArray, *, dropout_ratio: float = 0.5, scale_train: bool = True) -> NDArray:
    """``dropout_layer.cpp`` at TEST: a copy (BVLC scales by ``1/(1-ratio)`` while *training*).

    Forks with ``scale_train: false`` (caffe-windows) do not scale while training and instead multiply by
    ``1 - ratio`` at TEST.
    """
    if scale_train:
        return np.array(x, copy=True)
    return x * x.dtype.type(1.0 - dropout_ratio)


# ----------------------------------------------------------------------------------------------------------------
# Bindings
# ----------------------------------------------------------------------------------------------------------------


def _one(layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    expect_bottoms(layer, inputs, 1)
    return inputs[0]


@REFERENCE.register("ReLU")
def _relu(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    return [relu(_one(layer, inputs), negative_slope=layer.p("relu_param").negative_slope)]


@REFERENCE.register("ReLU6")
def _relu6(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    return [relu6(_one(layer, inputs))]


@REFERENCE.register("PReLU")
def _prelu(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    x = _one(layer, inputs)
    if x.ndim < 2:
        raise bad_shape(layer, f"bottom needs at least 2 axes, got shape {x.shape}")
    if len(layer.blobs) != 1:
        raise bad_shape(layer, f"expects 1 weight blob (the slopes), got {len(layer.blobs)}")
    shared = layer.p("prelu_param").channel_shared
    slope = np.asarray(layer.blobs[0]).reshape(-1)
    want = 1 if shared else x.shape[1]
    if slope.size != want:
        raise bad_shape(
            layer, f"slope blob has {slope.size} values, expected {want} (channel_shared={str(shared).lower()})"
        )
    return [prelu(x, slope=slope.astype(dtype))]


@REFERENCE.register("ELU")
def _elu(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    return [elu(_one(layer, inputs), alpha=layer.p("elu_param").alpha)]


@REFERENCE.register("Sigmoid")
def _sigmoid(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    return [sigmoid(_one(layer, inputs))]


@REFERENCE.register("TanH")
def _tanh(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    return [tanh(_one(layer, inputs))]


@REFERENCE.register("AbsVal")
def _absval(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    return [absval(_one(layer, inputs))]


@REFERENCE.register("BNLL")
def _bnll(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    return [bnll(_one(layer, inputs))]


@REFERENCE.register("Power")
def _power(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    p = layer.p("power_param")
    return [power(_one(layer, inputs), power=p.power, scale=p.scale, shift=p.shift)]


def _check_base(layer: Layer, field: str, base: float) -> None:
    if not (base == -1 or base > 0):
        raise unsupported(layer, field, base, "-1 for e, or a positive base")


@REFERENCE.register("Exp")
def _exp(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    p = layer.p("exp_param")
    _check_base(layer, "exp_param.base", p.base)
    return [exp(_one(layer, inputs), base=p.base, scale=p.scale, shift=p.shift)]


@REFERENCE.register("Log")
def _log(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    p = layer.p("log_param")
    _check_base(layer, "log_param.base", p.base)
    return [log(_one(layer, inputs), base=p.base, scale=p.scale, shift=p.shift)]


@REFERENCE.register("Threshold")
def _threshold(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    return [threshold(_one(layer, inputs), threshold=layer.p("threshold_param").threshold)]


@REFERENCE.register("Clip")
def _clip(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    p = layer.p("clip_param")
    for f in ("min", "max"):
        if not p.HasField(f):
            raise unsupported(layer, f"clip_param.{f}", "<unset>", "Caffe requires both min and max")
    return [clip(_one(layer, inputs), min=p.min, max=p.max)]


@REFERENCE.register("Swish")
def _swish(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    return [swish(_one(layer, inputs), beta=layer.p("swish_param").beta)]


@REFERENCE.register("Dropout")
def _dropout(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    p = layer.p("dropout_param")
    if not 0.0 <= p.dropout_ratio < 1.0:
        raise unsupported(layer, "dropout_param.dropout_ratio", p.dropout_ratio, "0 <= ratio < 1")
    return [dropout_test(_one(layer, inputs), dropout_ratio=p.dropout_ratio, scale_train=p.scale_train)]
