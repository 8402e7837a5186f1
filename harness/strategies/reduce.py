"""Reduction and ArgMax cases."""

from __future__ import annotations


import numpy as np
from hypothesis import strategies as st

from ._arrays import Limits, _choice, _data, _layer_case, _rng, _shape
from ._render import Enum, Items, LayerCase, LayerDef
from .registry import _case


@_case("Reduction")
def _reduction_case(draw, lim: Limits) -> LayerCase:
    """SUM/ASUM/SUMSQ/MEAN over the tail from a non-batch axis, with coeff (axis 0 would reduce the batch away)."""
    rng = _rng(draw)
    rank = _choice(draw, [4, 2])
    shape = _shape(draw, lim, rank)
    op = _choice(draw, ["SUM", "ASUM", "SUMSQ", "MEAN"])
    axis = draw(st.integers(1, rank - 1))
    coeff = _choice(draw, [1.0, 0.5, -2.0])
    items: Items = [] if op == "SUM" and draw(st.booleans()) else [("operation", Enum(op))]
    items += [("axis", axis - rank if draw(st.booleans()) else axis)]
    if coeff != 1.0 or draw(st.booleans()):
        items.append(("coeff", coeff))
    lay = LayerDef("red1", "Reduction", ("data",), ("red1",), [("reduction_param", items)])
    return _layer_case("reduction_case", {"data": _data(draw, rng, shape)}, lay, f"{op} axis={axis}")


@_case("ArgMax")
def _argmax_case(draw, lim: Limits) -> LayerCase:
    """ArgMax with or without axis, top_k up to the axis size, out_max_val."""
    rng = _rng(draw)
    shape = _shape(draw, lim)
    use_axis = draw(st.booleans())
    items: Items = []
    if use_axis:
        axis = draw(st.integers(1, 3))
        items += [("axis", axis)]
        kmax = shape[axis]
    else:
        kmax = int(np.prod(shape[1:]))
    top_k = draw(st.integers(1, min(kmax, 4)))
    if top_k != 1 or draw(st.booleans()):
        items.append(("top_k", top_k))
    if draw(st.booleans()):
        items.append(("out_max_val", True))
    lay = LayerDef("argmax1", "ArgMax", ("data",), ("argmax1",), [("argmax_param", items)] if items else [])
    return _layer_case("argmax_case", {"data": _data(draw, rng, shape)}, lay)
