"""Reduction and ArgMax."""

from __future__ import annotations

from ..errors import ShapeError
from ..net import Layer
from ._checks import Shape, _n_bottoms, _n_tops, _who, canonical_axis, count
from .registry import SHAPES


@SHAPES.register("Reduction")
def _reduction_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Reduction (``reduction_layer.cpp``): reduces all axes from ``axis`` (canonicalised): top
    ``bottom.shape[:axis]`` (0-D for axis 0)."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, exact=1)
    b = tuple(bottoms[0])
    axis = canonical_axis(layer, "reduction_param.axis", layer.p("reduction_param").axis, len(b))
    return [b[:axis]]


@SHAPES.register("ArgMax")
def _argmax_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """ArgMax (``argmax_layer.cpp``): ``top_k >= 1``.  With ``axis``: the bottom's shape with ``shape[axis] = top_k``
    (values if out_max_val, else indices).  Without: ``max(num_axes, 3)`` axes of 1 with ``shape[0] = N``,
    ``shape[2] = top_k`` and ``shape[1] = 2`` if ``out_max_val`` (indices and values); top_k <= count(1)."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, exact=1)
    ap = layer.p("argmax_param")
    b = tuple(bottoms[0])
    k = int(ap.top_k)
    if k < 1:
        raise ShapeError(f"{_who(layer)}: argmax_param.top_k={k} must be >= 1")
    if ap.HasField("axis"):
        axis = canonical_axis(layer, "argmax_param.axis", ap.axis, len(b))
        if k > b[axis]:
            raise ShapeError(f"{_who(layer)}: argmax_param.top_k={k} exceeds axis {axis} of size {b[axis]}")
        out = list(b)
        out[axis] = k
        return [tuple(out)]
    if k > count(b, 1):
        raise ShapeError(f"{_who(layer)}: argmax_param.top_k={k} exceeds the {count(b, 1)} values per item")
    out = [1] * max(len(b), 3)
    out[0] = b[0]
    out[2] = k
    if ap.out_max_val:
        out[1] = 2
    return [tuple(out)]
