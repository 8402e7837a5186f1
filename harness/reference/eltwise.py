"""Element-wise multi-bottom layers: Eltwise (PROD, SUM with coeff, MAX) and Axpy (SENet forks)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import NDArray

from ..net import Layer
from ..params import eltwise_operation
from ._reject import bad_shape, expect_bottoms, unsupported
from .registry import REFERENCE


def eltwise_prod(xs: Sequence[NDArray]) -> NDArray:
    """``eltwise_layer.cpp`` PROD: ``top = b0 * b1 * ...`` (left to right)."""
    out = np.array(xs[0], copy=True)
    for x in xs[1:]:
        out = out * x
    return out


def eltwise_sum(xs: Sequence[NDArray], *, coeffs: Sequence[float]) -> NDArray:
    """``eltwise_layer.cpp`` SUM: ``top = sum_i coeff_i * b_i`` (coeff defaults to 1 for every bottom)."""
    t = xs[0].dtype.type
    # Caffe starts from 0 and adds coeff_i * b_i in order (``caffe_axpy``; coeff 1 is a plain add).  Starting from
    # the first term instead gives the same values (0 + y == y, and -0 becomes +0 through the next addition), in
    # one pass per bottom into one fresh array, no zeros and no products by 1.
    c0, x0 = coeffs[0], xs[0]
    if len(xs) == 1:
        out = np.add(x0 if c0 == 1 else t(c0) * x0, t(0))
        return out
    c1, x1 = coeffs[1], xs[1]
    if c0 == 1 and c1 == 1:
        out = np.add(x0, x1)
    elif c0 == 1:
        out = np.multiply(x1, t(c1))
        np.add(x0, out, out=out)
    else:
        out = np.multiply(x0, t(c0))
        np.add(out, x1 if c1 == 1 else t(c1) * x1, out=out)
    for c, x in zip(coeffs[2:], xs[2:]):
        if c == 1:
            np.add(out, x, out=out)
        else:
            np.add(out, t(c) * x, out=out)
    return out


def eltwise_max(xs: Sequence[NDArray]) -> NDArray:
    """``eltwise_layer.cpp`` MAX: ``top = max_i b_i``.

    Caffe compares with strict ``>``: ``a > b ? a : b`` for the first pair, then ``b_k > top ? b_k : top``; ties pick
    equal values, so the top's values are the plain maximum (the tie rule only decides the backward mask).
    """
    out = xs[1] if len(xs) > 1 else xs[0]
    out = np.where(xs[0] > out, xs[0], out)
    for x in xs[2:]:
        out = np.where(x > out, x, out)
    return np.array(out, copy=True)


def axpy(a: NDArray, x: NDArray, y: NDArray) -> NDArray:
    """Axpy (SENet forks, ``axpy_layer.cpp``): ``top = a * x + y`` with ``a`` of shape ``(N, C)`` or ``(N, C, 1, 1)``
    broadcast over the spatial axes of ``x``."""
    n, c = a.shape[:2]
    scale = a.reshape((n, c) + (1,) * (x.ndim - 2))
    return scale * x + y


_OPS = ("PROD", "SUM", "MAX")


@REFERENCE.register("Eltwise")
def _eltwise(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    if len(inputs) < 2:
        raise bad_shape(layer, f"needs at least 2 bottoms, got {len(inputs)}")
    for i, x in enumerate(inputs[1:], 1):
        if x.shape != inputs[0].shape:
            raise bad_shape(layer, f"bottom {i} shape {x.shape} differs from bottom 0 shape {inputs[0].shape}")
    p = layer.p("eltwise_param")
    op_name = eltwise_operation(layer)
    coeffs = list(p.coeff)
    if coeffs and op_name != "SUM":
        raise unsupported(layer, "eltwise_param.coeff", coeffs, "coefficients only apply to operation SUM")
    if op_name == "PROD":
        return [eltwise_prod(inputs)]
    if op_name == "SUM":
        if coeffs and len(coeffs) != len(inputs):
            raise bad_shape(layer, f"{len(coeffs)} coeff values for {len(inputs)} bottoms (need one per bottom)")
        return [eltwise_sum(inputs, coeffs=coeffs or [1.0] * len(inputs))]
    if op_name == "MAX":
        return [eltwise_max(inputs)]
    raise unsupported(layer, "eltwise_param.operation", op_name, _OPS)


@REFERENCE.register("Axpy")
def _axpy(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    expect_bottoms(layer, inputs, 3)
    a, x, y = inputs
    if x.shape != y.shape:
        raise bad_shape(layer, f"bottom 1 shape {x.shape} differs from bottom 2 shape {y.shape}")
    if a.ndim < 2 or a.shape[:2] != x.shape[:2] or any(d != 1 for d in a.shape[2:]):
        raise bad_shape(layer, f"bottom 0 shape {a.shape} must be (N, C) or (N, C, 1, 1) with (N, C) = {x.shape[:2]}")
    return [axpy(a, x, y)]
