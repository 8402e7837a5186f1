"""Converters for Softmax, Reduction and ArgMax.

Softmax keeps the rank (axis translated, Keras ``Softmax``).  Reduction and ArgMax (without ``axis``) change the rank,
so their custom layers read a 4-D input in Caffe's NCHW order (``nchw_input``) and return Caffe's layout.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from ..errors import ShapeError
from ..net import Layer
from . import custom_ops as C
from ..params import canonical_axis, reduction_operation
from ._layout import caffe_shape, keras_axis
from ._util import expect, unsupported, who
from .base import CONVERTERS, ConvertContext

_REDUCTION_OPS = ("SUM", "ASUM", "SUMSQ", "MEAN")


@CONVERTERS.register("Softmax")
def convert_softmax(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """``softmax_layer.cpp``: ``exp(x - max) / sum exp(x - max)`` along ``axis`` (default 1) -> Keras
    ``Softmax(axis)`` on the translated axis (float32 rounding only)."""
    expect(layer, inputs, 1, 1)
    shape = caffe_shape(ctx, 0, inputs[0])
    axis = canonical_axis(layer, "softmax_param.axis", layer.p("softmax_param").axis, len(shape))
    return [keras.layers.Softmax(axis=keras_axis(axis, len(shape)), name=layer.name)(inputs[0])]


@CONVERTERS.register("Reduction")
def convert_reduction(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """``reduction_layer.cpp``: reduce all axes from ``axis`` on (top shape ``bottom[:axis]``): SUM, ASUM (sum of
    |x|), SUMSQ (sum of x^2), MEAN (coeff / count); times ``coeff`` -> ``CaffeReduction``."""
    expect(layer, inputs, 1, 1)
    p = layer.p("reduction_param")
    op = reduction_operation(layer)
    if op not in _REDUCTION_OPS:
        raise unsupported(layer, "reduction_param.operation", op, "SUM, ASUM, SUMSQ, MEAN")
    shape = caffe_shape(ctx, 0, inputs[0])
    axis = canonical_axis(layer, "reduction_param.axis", p.axis, len(shape))
    # Reducing over all of C, H, W (axis <= 1) is order-free; otherwise read the 4-D input in NCHW order.
    nchw = len(shape) == 4 and axis >= 2
    coeff = np.float32(p.coeff)
    if op == "MEAN":  # Caffe: coeff_ /= count(axis..), in float
        coeff = np.float32(coeff / np.float32(math.prod(shape[axis:])))
    lay = C.CaffeReduction(op=op, axis=axis, coeff=float(coeff), nchw_input=nchw, name=layer.name)
    return [lay(inputs[0])]


@CONVERTERS.register("ArgMax")
def convert_argmax(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """``argmax_layer.cpp``: the ``top_k`` largest (ties: higher index first). With ``axis``: indices (values with
    ``out_max_val``) replace that axis. Without: per instance over ``count(1)`` elements in C order, top shape
    ``(N, 1|2, top_k)`` padded with 1s to the bottom's rank (min 3) -> ``CaffeArgMax`` (exact: selection only)."""
    expect(layer, inputs, 1, 1)
    p = layer.p("argmax_param")
    shape = caffe_shape(ctx, 0, inputs[0])
    ndim = len(shape)
    k = int(p.top_k)
    if k < 1:
        raise unsupported(layer, "argmax_param.top_k", k, ">= 1")
    if p.HasField("axis"):
        axis = canonical_axis(layer, "argmax_param.axis", p.axis, ndim)
        if k > shape[axis]:
            raise ShapeError(f"{who(layer)}: top_k {k} exceeds axis {axis} size {shape[axis]}")
        lay = C.CaffeArgMax(axis=keras_axis(axis, ndim), top_k=k, out_max_val=p.out_max_val, name=layer.name)
        return [lay(inputs[0])]
    per = 1
    for d in shape[1:]:
        per *= d
    if k > per:
        raise ShapeError(f"{who(layer)}: top_k {k} exceeds the {per} elements per instance")
    out_rank = max(ndim, 3)
    lay = C.CaffeArgMax(axis=None, top_k=k, out_max_val=p.out_max_val, nchw_input=ndim == 4, out_rank=out_rank,
                        nhwc_output=out_rank == 4, name=layer.name)
    return [lay(inputs[0])]
