"""Input: the shapes the prototxt (or ``--input-shape``) declares."""

from __future__ import annotations

from ..errors import ShapeError
from ..net import Layer
from ._checks import Shape, _fmt, _n_bottoms, _n_tops, _who
from .registry import SHAPES


@SHAPES.register("Input")
def _input(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Caffe ``InputLayer::LayerSetUp``: ``input_param.shape`` has 0, 1 (shared by every top) or one shape per top.
    Every dimension must be positive."""
    _n_bottoms(layer, bottoms, exact=0)
    _n_tops(layer, minimum=1)
    shapes = list(layer.p("input_param").shape)
    if len(shapes) not in (0, 1, len(layer.tops)):
        raise ShapeError(f"{_who(layer)}: input_param has {len(shapes)} shapes for {len(layer.tops)} tops "
                         f"(give 1 or {len(layer.tops)})")
    if not shapes:
        raise ShapeError(f"{_who(layer)}: no shape for top {layer.tops[0]!r}; give one with "
                         f"--input-shape {layer.tops[0]}=N,C,H,W")
    out = []
    for i, top in enumerate(layer.tops):
        dims = tuple(int(d) for d in shapes[0 if len(shapes) == 1 else i].dim)
        if not dims:
            raise ShapeError(f"{_who(layer)}: input shape of {top!r} is empty")
        for a, d in enumerate(dims):
            if d <= 0:
                raise ShapeError(f"{_who(layer)}: input {top!r} dim {a} = {d} in shape {_fmt(dims)} must be "
                                 f"positive")
        out.append(dims)
    return out
