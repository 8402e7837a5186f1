"""Eltwise and Axpy."""

from __future__ import annotations

from ..errors import ShapeError, UnsupportedParam
from ..net import Layer
from ..params import eltwise_operation
from ._checks import Shape, _fmt, _min_rank, _n_bottoms, _n_tops, _who
from .registry import SHAPES


@SHAPES.register("Eltwise")
def _eltwise_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Eltwise (``eltwise_layer.cpp``): at least 2 bottoms of identical shape; ``coeff`` only for SUM and then one per
    bottom."""
    _n_bottoms(layer, bottoms, minimum=2)
    _n_tops(layer, exact=1)
    ep = layer.p("eltwise_param")
    if len(ep.coeff) not in (0, len(bottoms)):
        raise ShapeError(f"{_who(layer)}: eltwise_param has {len(ep.coeff)} coeff values for {len(bottoms)} bottoms")
    operation = eltwise_operation(layer)
    if len(ep.coeff) and operation != "SUM":
        raise UnsupportedParam(f"{_who(layer)}: coeff is only allowed with operation=SUM (operation={operation})")
    first = tuple(bottoms[0])
    for name, s in zip(layer.bottoms, bottoms):
        if tuple(s) != first:
            raise ShapeError(f"{_who(layer)}: bottom {name!r} {_fmt(s)} does not match {layer.bottoms[0]!r} "
                             f"{_fmt(first)}")
    return [first]


@SHAPES.register("Axpy")
def _axpy_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Axpy (SENet forks): bottoms ``a (N, C[, 1, 1])``, ``x``, ``y`` with ``x.shape == y.shape`` and ``a`` matching
    x on N and C; top ``a * x + y`` has x's shape."""
    _n_bottoms(layer, bottoms, exact=3)
    _n_tops(layer, exact=1)
    a, x, y = (tuple(s) for s in bottoms)
    if tuple(x) != tuple(y):
        raise ShapeError(f"{_who(layer)}: x {layer.bottoms[1]!r} {_fmt(x)} and y {layer.bottoms[2]!r} {_fmt(y)} "
                         f"must have the same shape")
    _min_rank(layer, x, 2, "x")
    if a[:2] != x[:2] or any(d != 1 for d in a[2:]) or len(a) > len(x):
        raise ShapeError(f"{_who(layer)}: scale {layer.bottoms[0]!r} {_fmt(a)} must be (N, C, 1, 1) for x {_fmt(x)}")
    return [x]
