"""Shared setup checks of the shape rules: bottom/top counts, ranks, positive tops, Caffe's ``Blob::count``.

Caffe's ``CHECK`` failures become :class:`~harness.errors.ShapeError` naming the layer and the value.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import ShapeError
from ..net import Layer, who as _who
from ..params import canonical_axis  # noqa: F401  (re-exported: harness.shapes.canonical_axis)

Shape = tuple[int, ...]


def _fmt(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def count(shape: Sequence[int], start: int = 0, end: int | None = None) -> int:
    """Caffe ``Blob::count(start, end)``: the product of ``shape[start:end]`` (1 for an empty range)."""
    n = 1
    for d in list(shape)[start:end]:
        n *= int(d)
    return n


def _n_bottoms(layer: Layer, shapes: list[Shape], exact: int | None = None, minimum: int | None = None,
               maximum: int | None = None) -> None:
    n = len(shapes)
    if exact is not None and n != exact:
        raise ShapeError(f"{_who(layer)}: takes {exact} bottom blob(s), got {n} ({', '.join(layer.bottoms) or 'none'})")
    if minimum is not None and n < minimum:
        raise ShapeError(f"{_who(layer)}: takes at least {minimum} bottom blobs, got {n} "
                         f"({', '.join(layer.bottoms) or 'none'})")
    if maximum is not None and n > maximum:
        raise ShapeError(f"{_who(layer)}: takes at most {maximum} bottom blobs, got {n} ({', '.join(layer.bottoms)})")


def _n_tops(layer: Layer, exact: int | None = None, minimum: int | None = None) -> None:
    n = len(layer.tops)
    if exact is not None and n != exact:
        raise ShapeError(f"{_who(layer)}: produces {exact} top blob(s), got {n} ({', '.join(layer.tops) or 'none'})")
    if minimum is not None and n < minimum:
        raise ShapeError(f"{_who(layer)}: produces at least {minimum} top blob(s), got {n}")


def _rank(layer: Layer, shape: Shape, ndim: int, what: str = "bottom") -> None:
    if len(shape) != ndim:
        raise ShapeError(f"{_who(layer)}: {what} must have {ndim} axes (N, C, H, W), got shape {_fmt(shape)}")


def _min_rank(layer: Layer, shape: Shape, ndim: int, what: str = "bottom") -> None:
    if len(shape) < ndim:
        raise ShapeError(f"{_who(layer)}: {what} must have at least {ndim} axes, got shape {_fmt(shape)}")


def _positive_top(layer: Layer, shape: Shape, why: str = "") -> Shape:
    if any(d <= 0 for d in shape):
        raise ShapeError(f"{_who(layer)}: output shape {_fmt(shape)} has a zero or negative dimension{why}")
    return tuple(int(d) for d in shape)


def _same(layer: Layer, shapes: list[Shape]) -> list[Shape]:
    """One top per bottom, same shape (element-wise layers; Caffe allows in-place)."""
    _n_bottoms(layer, shapes, exact=1)
    _n_tops(layer, exact=1)
    return [tuple(shapes[0])]
