"""Converters for Eltwise (PROD, SUM with coeff, MAX) and Axpy.

Element-wise across bottoms of one shape, so layout-free: NHWC tensors of 4-D blobs combine as they are.
"""

from __future__ import annotations

import keras
import numpy as np

from ..errors import ShapeError, UnsupportedParam
from ..net import Layer
from ..params import eltwise_operation
from . import custom_ops as C
from ._layout import caffe_shape
from ._util import expect, who
from .base import CONVERTERS, ConvertContext



@CONVERTERS.register("Eltwise")
def convert_eltwise(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """``eltwise_layer.cpp``: PROD -> Keras ``Multiply``; SUM -> ``Add`` (all coefficients 1) or ``CaffeEltwiseSum``
    (``top = sum_i coeff_i * bottom_i`` in bottom order); MAX -> ``Maximum`` (the value of Caffe's strict ``>`` is
    the maximum whichever index wins a tie). All exact up to float32 summation order."""
    expect(layer, inputs, None, 1)
    if len(inputs) < 2:
        raise ShapeError(f"{who(layer)}: expects at least 2 bottoms, got {len(inputs)}")
    p = layer.p("eltwise_param")
    op = eltwise_operation(layer)
    shapes = [caffe_shape(ctx, i, x) for i, x in enumerate(inputs)]
    for i, s in enumerate(shapes[1:], 1):
        if s != shapes[0]:
            raise ShapeError(f"{who(layer)}: bottom {i} shape {s} differs from bottom 0 shape {shapes[0]}")
    coeffs = [float(np.float32(c)) for c in p.coeff]
    if coeffs and op != "SUM":
        raise UnsupportedParam(f"{who(layer)}: eltwise_param.coeff={coeffs} is not supported with"
                               f" operation={op} (Caffe takes coefficients only for SUM)")
    if coeffs and len(coeffs) != len(inputs):
        raise ShapeError(f"{who(layer)}: {len(coeffs)} coeff values for {len(inputs)} bottoms")
    xs = list(inputs)
    if op == "PROD":
        return [keras.layers.Multiply(name=layer.name)(xs)]
    if op == "MAX":
        return [keras.layers.Maximum(name=layer.name)(xs)]
    if not coeffs or all(c == 1 for c in coeffs):
        return [keras.layers.Add(name=layer.name)(xs)]
    return [C.CaffeEltwiseSum(coeffs=coeffs, name=layer.name)(xs)]


@CONVERTERS.register("Axpy")
def convert_axpy(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """SENet Axpy: bottoms ``(a (N,C,1,1), x (N,C,H,W), y (N,C,H,W))`` -> ``a * x + y`` (``CaffeAxpy``; ``a`` is NHWC
    ``(N,1,1,C)`` and broadcasts over H, W)."""
    expect(layer, inputs, 3, 1)
    sa, sx, sy = (caffe_shape(ctx, i, t) for i, t in enumerate(inputs))
    if len(sx) != 4 or sx != sy:
        raise ShapeError(f"{who(layer)}: x {sx} and y {sy} must be equal 4-D shapes")
    if tuple(sa) != (sx[0], sx[1], 1, 1):
        raise ShapeError(f"{who(layer)}: scale bottom shape {sa} must be {(sx[0], sx[1], 1, 1)}")
    return [C.CaffeAxpy(name=layer.name)(list(inputs))]
