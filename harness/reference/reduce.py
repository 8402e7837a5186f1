"""Reductions along axes: Softmax, Reduction (SUM, ASUM, SUMSQ, MEAN), ArgMax."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..net import Layer
from ..params import canonical_axis, reduction_operation
from ._reject import bad_shape, expect_bottoms, unsupported
from .registry import REFERENCE


def softmax(x: NDArray, *, axis: int) -> NDArray:
    """``softmax_layer.cpp``: ``top = exp(x - max_axis x) / sum_axis exp(x - max_axis x)`` along ``axis``."""
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def reduction(x: NDArray, *, operation: str, axis: int, coeff: float = 1.0) -> NDArray:
    """``reduction_layer.cpp``: every axis from ``axis`` to the end is reduced (top shape ``x.shape[:axis]``; a
    0-axis blob when ``axis == 0``), then multiplied by ``coeff``.

    SUM ``sum x``; ASUM ``sum |x|``; SUMSQ ``sum x^2``; MEAN ``sum x * (coeff / count(axis..))``.
    """
    t = x.dtype.type
    flat = x.reshape(x.shape[:axis] + (-1,))
    dim = flat.shape[-1]
    if operation in ("SUM", "MEAN"):
        out = flat.sum(axis=-1)
    elif operation == "ASUM":
        out = np.abs(flat).sum(axis=-1)
    elif operation == "SUMSQ":
        out = (flat * flat).sum(axis=-1)
    else:
        raise ValueError(f"unknown reduction operation {operation!r}")
    c = coeff / dim if operation == "MEAN" else coeff
    out = np.asarray(out, dtype=x.dtype)
    return out if c == 1 else out * t(c)


def argmax_order(rows: NDArray, *, top_k: int) -> NDArray:
    """Indices of the ``top_k`` largest values of each row (last axis), best first.

    ``argmax_layer.cpp`` ranks ``(value, index)`` pairs with ``std::partial_sort`` and ``std::greater<pair>``: larger
    value first and, among equal values, the *larger* index first.
    """
    dim = rows.shape[-1]
    rev = rows[..., ::-1]
    order = np.argsort(-rev, axis=-1, kind="stable")[..., :top_k]
    return (dim - 1) - order


def argmax(x: NDArray, *, top_k: int = 1, out_max_val: bool = False, axis: int | None = None) -> NDArray:
    """``argmax_layer.cpp``.

    With ``axis``: top shape is ``x.shape`` with ``shape[axis] = top_k``; it holds the indices (as floats), or the
    values when ``out_max_val``.  Without ``axis``: each sample is flattened (``count(1)`` values) and the top has shape
    ``(N, 1 or 2, top_k)`` padded with trailing 1s to the bottom's rank (at least 3 axes); channel 0 holds the
    indices and, with ``out_max_val``, channel 1 the values.
    """
    if axis is not None:
        moved = np.moveaxis(x, axis, -1)
        idx = argmax_order(moved, top_k=top_k)
        res = np.take_along_axis(moved, idx, axis=-1) if out_max_val else idx.astype(x.dtype)
        return np.ascontiguousarray(np.moveaxis(res, -1, axis))
    n = x.shape[0]
    rows = x.reshape(n, -1)
    idx = argmax_order(rows, top_k=top_k)
    parts = [idx.astype(x.dtype)]
    if out_max_val:
        parts.append(np.take_along_axis(rows, idx, axis=-1))
    out = np.stack(parts, axis=1)  # (N, 1|2, top_k)
    return out.reshape(out.shape + (1,) * (max(x.ndim, 3) - 3))


_REDUCTIONS = ("SUM", "ASUM", "SUMSQ", "MEAN")


@REFERENCE.register("Softmax")
def _softmax(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    expect_bottoms(layer, inputs, 1)
    x = inputs[0]
    return [softmax(x, axis=canonical_axis(layer, "softmax_param.axis", layer.p("softmax_param").axis, x.ndim))]


@REFERENCE.register("Reduction")
def _reduction(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    expect_bottoms(layer, inputs, 1)
    x = inputs[0]
    p = layer.p("reduction_param")
    op = reduction_operation(layer)
    if op not in _REDUCTIONS:
        raise unsupported(layer, "reduction_param.operation", op, _REDUCTIONS)
    axis = canonical_axis(layer, "reduction_param.axis", p.axis, x.ndim)
    return [reduction(x, operation=op, axis=axis, coeff=p.coeff)]


@REFERENCE.register("ArgMax")
def _argmax(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    expect_bottoms(layer, inputs, 1)
    x = inputs[0]
    p = layer.p("argmax_param")
    top_k = int(p.top_k)
    if top_k < 1:
        raise unsupported(layer, "argmax_param.top_k", top_k, "top_k >= 1")
    axis = canonical_axis(layer, "argmax_param.axis", p.axis, x.ndim) if p.HasField("axis") else None
    limit = x.shape[axis] if axis is not None else int(np.prod(x.shape[1:], dtype=np.int64))
    if top_k > limit:
        raise bad_shape(layer, f"argmax_param.top_k={top_k} exceeds the {limit} values it ranks")
    return [argmax(x, top_k=top_k, out_max_val=p.out_max_val, axis=axis)]
