"""Converters for Caffe's element-wise neuron layers.

Standard Keras layers where they compute Caffe's formula exactly (ReLU, LeakyReLU, PReLU, ELU, sigmoid/tanh
``Activation``, ``Rescaling``, ``Identity``); the custom layers of :mod:`harness.convert.custom_ops` elsewhere.
Element-wise layers are layout-free: the NHWC tensor of a 4-D blob goes through unchanged, except PReLU whose slope
is per Caffe channel (axis 1), i.e. the last Keras axis of a 4-D blob.
"""

from __future__ import annotations

import keras
import numpy as np

from ..errors import ShapeError
from ..net import Layer
from . import custom_ops as C
from ._util import expect, unsupported, who
from .base import CONVERTERS, ConvertContext


def _one(layer: Layer, inputs: list) -> object:
    expect(layer, inputs, 1, 1)
    return inputs[0]


def _f(v: float) -> float:
    return float(np.float32(v))


@CONVERTERS.register("ReLU")
def convert_relu(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """``max(x, 0) + negative_slope * min(x, 0)``: Keras ReLU (slope 0), LeakyReLU (slope > 0, ``max(a*x, x)`` /
    ``where``: one product, exact), or a fully shared PReLU holding the slope (slope < 0, which LeakyReLU refuses:
    ``relu(x) - a*relu(-x)``, exact)."""
    x = _one(layer, inputs)
    slope = _f(layer.p("relu_param").negative_slope)
    if slope == 0:
        return [keras.layers.ReLU(name=layer.name)(x)]
    if slope > 0:
        return [keras.layers.LeakyReLU(negative_slope=slope, name=layer.name)(x)]
    rank = len(x.shape)
    lay = keras.layers.PReLU(shared_axes=list(range(1, rank)), name=layer.name)
    y = lay(x)
    lay.set_weights([np.full((1,) * (rank - 1), slope, dtype=np.float32)])
    return [y]


@CONVERTERS.register("ReLU6")
def convert_relu6(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """``min(max(x, 0), 6)``: Keras ``ReLU(max_value=6)`` (exact)."""
    return [keras.layers.ReLU(max_value=6.0, name=layer.name)(_one(layer, inputs))]


@CONVERTERS.register("PReLU")
def convert_prelu(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """``max(x, 0) + a_c * min(x, 0)`` with ``c`` Caffe's axis 1: Keras PReLU (``relu(x) - a*relu(-x)``, exact) whose
    alpha varies only along the channel axis (last Keras axis for a 4-D blob, axis 1 otherwise); ``channel_shared``
    shares every axis. The blob holds ``C`` slopes (or 1 when shared)."""
    x = _one(layer, inputs)
    rank = len(x.shape)
    if rank < 2:
        raise ShapeError(f"{who(layer)}: the bottom must have at least 2 axes, got {rank}")
    shared = layer.p("prelu_param").channel_shared
    if not layer.blobs:
        raise ShapeError(f"{who(layer)}: no slope blob (load weights)")
    slope = np.asarray(layer.blobs[0], dtype=np.float32).reshape(-1)
    chan_axis = 3 if rank == 4 else 1
    channels = x.shape[chan_axis]
    want = 1 if shared else channels
    if slope.size != want:
        raise ShapeError(f"{who(layer)}: slope blob has {slope.size} values, expected {want}"
                         f" (channel_shared={shared})")
    if shared:
        axes = list(range(1, rank))
        alpha = slope.reshape((1,) * (rank - 1))
    else:
        axes = [a for a in range(1, rank) if a != chan_axis]
        shape = [1] * (rank - 1)
        shape[chan_axis - 1] = channels
        alpha = slope.reshape(shape)
    lay = keras.layers.PReLU(shared_axes=axes or None, name=layer.name)
    y = lay(x)
    lay.set_weights([alpha])
    return [y]


@CONVERTERS.register("ELU")
def convert_elu(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """``max(x, 0) + alpha * (exp(min(x, 0)) - 1)``: Keras ``ELU(alpha)``."""
    alpha = _f(layer.p("elu_param").alpha)
    return [keras.layers.ELU(alpha=alpha, name=layer.name)(_one(layer, inputs))]


@CONVERTERS.register("Sigmoid")
def convert_sigmoid(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """``1 / (1 + exp(-x))``: Keras ``Activation("sigmoid")`` (float32 rounding only)."""
    return [keras.layers.Activation("sigmoid", name=layer.name)(_one(layer, inputs))]


@CONVERTERS.register("TanH")
def convert_tanh(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """``tanh(x)``: Keras ``Activation("tanh")``."""
    return [keras.layers.Activation("tanh", name=layer.name)(_one(layer, inputs))]


@CONVERTERS.register("AbsVal")
def convert_absval(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    return [C.CaffeAbsVal(name=layer.name)(_one(layer, inputs))]


@CONVERTERS.register("BNLL")
def convert_bnll(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    return [C.CaffeBNLL(name=layer.name)(_one(layer, inputs))]


@CONVERTERS.register("Power")
def convert_power(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    p = layer.p("power_param")
    return [C.CaffePower(power=_f(p.power), scale=_f(p.scale), shift=_f(p.shift), name=layer.name)(
        _one(layer, inputs))]


def _check_base(layer: Layer, field: str, base: float) -> None:
    if not (base == -1 or base > 0):
        raise unsupported(layer, field, base, "-1 for e, or a positive base")


@CONVERTERS.register("Exp")
def convert_exp(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    p = layer.p("exp_param")
    _check_base(layer, "exp_param.base", p.base)
    return [C.CaffeExp(base=_f(p.base), scale=_f(p.scale), shift=_f(p.shift), name=layer.name)(
        _one(layer, inputs))]


@CONVERTERS.register("Log")
def convert_log(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    p = layer.p("log_param")
    _check_base(layer, "log_param.base", p.base)
    return [C.CaffeLog(base=_f(p.base), scale=_f(p.scale), shift=_f(p.shift), name=layer.name)(
        _one(layer, inputs))]


@CONVERTERS.register("Threshold")
def convert_threshold(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    t = _f(layer.p("threshold_param").threshold)
    return [C.CaffeThreshold(threshold=t, name=layer.name)(_one(layer, inputs))]


@CONVERTERS.register("Clip")
def convert_clip(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    p = layer.p("clip_param")
    for f in ("min", "max"):
        if not p.HasField(f):
            raise unsupported(layer, f"clip_param.{f}", "<unset>", "Caffe requires both min and max")
    return [C.CaffeClip(min=_f(p.min), max=_f(p.max), name=layer.name)(_one(layer, inputs))]


@CONVERTERS.register("Swish")
def convert_swish(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    beta = _f(layer.p("swish_param").beta)
    return [C.CaffeSwish(beta=beta, name=layer.name)(_one(layer, inputs))]


@CONVERTERS.register("Dropout")
def convert_dropout(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """TEST phase: identity (``scale_train: true``, BVLC) -> Keras ``Identity``; forks with ``scale_train: false``
    multiply by ``1 - dropout_ratio`` at test time -> Keras ``Rescaling`` (one product, exact)."""
    x = _one(layer, inputs)
    p = layer.p("dropout_param")
    ratio = p.dropout_ratio
    if not 0 <= ratio < 1:
        raise unsupported(layer, "dropout_param.dropout_ratio", ratio, "0 <= ratio < 1")
    if p.scale_train:
        return [keras.layers.Identity(name=layer.name)(x)]
    keep = _f(np.float32(1) - np.float32(ratio))
    return [keras.layers.Rescaling(scale=keep, offset=0.0, name=layer.name)(x)]
