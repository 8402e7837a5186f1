"""Upsample and Interp cases."""

from __future__ import annotations


from hypothesis import strategies as st

from ._arrays import Limits, _choice, _data, _distinct, _layer_case, _rng, _shape
from ._render import Items, LayerCase, LayerDef
from .registry import _case


@_case("Upsample")
def _upsample_case(draw, lim: Limits) -> LayerCase:
    """Nearest upsampling by ``scale`` (default 2), per-axis ``scale_h``/``scale_w``, or an output size
    ``upsample_h``/``upsample_w`` (a whole multiple of the input)."""
    rng = _rng(draw)
    shape = _shape(draw, lim, sides=((1, 5), (1, 5)))
    mode = _choice(draw, ["scale", "hw", "default", "size"])
    if mode == "scale":
        items: Items = [("scale", draw(st.integers(1, 3)))]
    elif mode in ("hw", "size"):
        sh, sw = _distinct(draw, [(1, 3), (1, 3)])
        # the fork's output-size spelling must be a whole multiple of the input (nearest upsampling)
        items = [("scale_h", sh), ("scale_w", sw)] if mode == "hw" else [("upsample_h", shape[2] * sh),
                                                                       ("upsample_w", shape[3] * sw)]
    else:
        items = []
    lay = LayerDef("up1", "Upsample", ("data",), ("up1",), [("upsample_param", items)] if items else [])
    return _layer_case("upsample_case", {"data": _data(draw, rng, shape)}, lay)


@_case("Interp")
def _interp_case(draw, lim: Limits) -> LayerCase:
    """Bilinear (align-corners) Interp to an explicit size, by zoom_factor, by shrink_factor, or shrink then zoom;
    sometimes with deeplab's cropping pads (pad_beg/pad_end <= 0)."""
    rng = _rng(draw)
    shape = _shape(draw, lim, sides=((1, lim.max_side), (1, lim.max_side)))
    mode = _choice(draw, ["size", "zoom", "shrink", "both"])
    items: Items = []
    if mode == "size":
        oh, ow = _distinct(draw, [(1, lim.max_side + 4), (1, lim.max_side + 4)], shape[:2])
        items = [("height", oh), ("width", ow)]
    if mode in ("shrink", "both"):
        items.append(("shrink_factor", draw(st.integers(1, 3))))
    if mode in ("zoom", "both"):
        items.append(("zoom_factor", draw(st.integers(1, 3))))
    if min(shape[2:]) >= 3 and draw(st.integers(0, 2)) == 0:  # deeplab's pads are <= 0: they crop the input
        items += [("pad_beg", _choice(draw, [0, -1])), ("pad_end", -1)]
    lay = LayerDef("interp1", "Interp", ("data",), ("interp1",), [("interp_param", items)])
    return _layer_case("interp_case", {"data": _data(draw, rng, shape)}, lay, mode)
