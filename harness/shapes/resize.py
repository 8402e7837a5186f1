"""Upsample (nearest) and Interp (deeplab bilinear) output sizes."""

from __future__ import annotations

from ..errors import ShapeError, UnsupportedParam
from ..net import Layer
from ._checks import Shape, _n_bottoms, _n_tops, _positive_top, _rank, _who
from .registry import SHAPES


@SHAPES.register("Upsample")
def _upsample_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Upsample (nearest, YOLOv3-caffe): ``upsample_h``/``upsample_w`` give the output size; otherwise
    ``H * scale_h``, ``W * scale_w`` (each defaulting to ``scale``, default 2).  4-D."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, exact=1)
    (b,) = bottoms
    _rank(layer, b, 4)
    n, c, h, w = b
    up = layer.p("upsample_param")
    if up.HasField("upsample_h") or up.HasField("upsample_w"):
        if not (up.HasField("upsample_h") and up.HasField("upsample_w")):
            raise ShapeError(f"{_who(layer)}: upsample_h and upsample_w must be given together")
        oh, ow = int(up.upsample_h), int(up.upsample_w)
        if oh < h or ow < w:
            raise ShapeError(f"{_who(layer)}: upsample_h x upsample_w = {oh}x{ow} is smaller than the input {h}x{w}")
    else:
        sh = up.scale_h if up.HasField("scale_h") else up.scale
        sw = up.scale_w if up.HasField("scale_w") else up.scale
        if sh <= 0 or sw <= 0:
            raise ShapeError(f"{_who(layer)}: upsample scale {sh}x{sw} must be positive")
        oh, ow = h * sh, w * sw
    return [_positive_top(layer, (n, c, oh, ow))]


def interp_out_size(size: int, *, zoom: int | None, shrink: int | None, pad_beg: int, pad_end: int) -> int:
    """deeplab ``interp_layer.cpp``::

        size_eff = size + pad_beg + pad_end
        shrink only:  (size_eff - 1) / shrink + 1                                    (floor)
        zoom only:    size_eff + (size_eff - 1) * (zoom - 1)
        both:         s = (size_eff - 1) / shrink + 1;  s + (s - 1) * (zoom - 1)     (shrink, then zoom)
    """
    eff = size + pad_beg + pad_end
    out = eff
    if shrink is not None:
        out = (eff - 1) // shrink + 1
    if zoom is not None:
        out = out + (out - 1) * (zoom - 1)
    return out


@SHAPES.register("Interp")
def _interp_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Interp (deeplab / PSPNet, bilinear with align_corners): the output size comes from ``shrink_factor`` and/or
    ``zoom_factor`` (:func:`interp_out_size`), else from ``height`` and ``width``, else from a second bottom's H, W.
    Only non-positive ``pad_beg``/``pad_end`` (cropping) are allowed, as in deeplab."""
    _n_bottoms(layer, bottoms, minimum=1, maximum=2)
    _n_tops(layer, exact=1)
    b = bottoms[0]
    _rank(layer, b, 4)
    n, c, h, w = b
    ip = layer.p("interp_param")
    if ip.pad_beg > 0 or ip.pad_end > 0:
        raise UnsupportedParam(f"{_who(layer)}: interp_param pad_beg={ip.pad_beg}, pad_end={ip.pad_end}: only "
                               f"non-positive padding (cropping) is supported")
    he, we = h + ip.pad_beg + ip.pad_end, w + ip.pad_beg + ip.pad_end
    if he <= 0 or we <= 0:
        raise ShapeError(f"{_who(layer)}: pad_beg={ip.pad_beg}, pad_end={ip.pad_end} crop all of {h}x{w}")
    has_zoom, has_shrink = ip.HasField("zoom_factor"), ip.HasField("shrink_factor")
    if has_zoom and ip.zoom_factor < 1:
        raise ShapeError(f"{_who(layer)}: interp_param.zoom_factor={ip.zoom_factor} must be >= 1")
    if has_shrink and ip.shrink_factor < 1:
        raise ShapeError(f"{_who(layer)}: interp_param.shrink_factor={ip.shrink_factor} must be >= 1")
    if has_zoom or has_shrink:
        kw = dict(zoom=ip.zoom_factor if has_zoom else None, shrink=ip.shrink_factor if has_shrink else None,
                  pad_beg=ip.pad_beg, pad_end=ip.pad_end)
        oh, ow = interp_out_size(h, **kw), interp_out_size(w, **kw)
    elif ip.HasField("height") and ip.HasField("width"):
        oh, ow = int(ip.height), int(ip.width)
    elif len(bottoms) == 2:
        _rank(layer, bottoms[1], 4, "second bottom")
        oh, ow = bottoms[1][2], bottoms[1][3]
    else:
        raise ShapeError(f"{_who(layer)}: interp_param needs zoom_factor, shrink_factor, height and width, or a "
                         f"second bottom giving the size")
    return [_positive_top(layer, (n, c, oh, ow))]
