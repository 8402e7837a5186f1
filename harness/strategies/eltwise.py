"""Eltwise and Axpy cases."""

from __future__ import annotations


from hypothesis import strategies as st

from ._arrays import Limits, _choice, _data, _layer_case, _rng, _shape
from ._render import Enum, Items, LayerCase, LayerDef
from .registry import _case


@_case("Eltwise")
def _eltwise_case(draw, lim: Limits) -> LayerCase:
    """PROD, SUM (with per-bottom coeff, negatives included) or MAX over 2-3 same-shape bottoms."""
    rng = _rng(draw)
    shape = _shape(draw, lim, _choice(draw, [4, 2]))
    k = draw(st.integers(2, 3))
    op = _choice(draw, ["SUM", "PROD", "MAX"])
    items: Items = [] if op == "SUM" and draw(st.booleans()) else [("operation", Enum(op))]
    if op == "SUM" and draw(st.booleans()):
        items += [("coeff", _choice(draw, [1.0, -1.0, 0.5, 2.0, -0.25])) for _ in range(k)]
    inputs = {f"in{i}": _data(draw, rng, shape) for i in range(k)}
    lay = LayerDef("elt1", "Eltwise", tuple(inputs), ("elt1",), [("eltwise_param", items)] if items else [])
    return _layer_case("eltwise_case", inputs, lay, op)


@_case("Axpy")
def _axpy_case(draw, lim: Limits) -> LayerCase:
    """SENet Axpy: a (N,C,1,1) * x + y."""
    rng = _rng(draw)
    n, c, h, w = _shape(draw, lim)
    inputs = {"a": _data(draw, rng, (n, c, 1, 1)), "x": _data(draw, rng, (n, c, h, w)),
              "y": _data(draw, rng, (n, c, h, w))}
    lay = LayerDef("axpy1", "Axpy", ("a", "x", "y"), ("axpy1",))
    return _layer_case("axpy_case", inputs, lay)
