"""Converters for Upsample (YOLOv3 forks: nearest neighbour by integer factors) and Interp (deeplab/PSPNet:
bilinear, align-corners)."""

from __future__ import annotations

import keras

from ..errors import ShapeError
from ..net import Layer
from . import custom_ops as C
from ._layout import caffe_shape
from ._util import expect, unsupported, who
from .base import CONVERTERS, ConvertContext


def upsample_factors(layer: Layer, h: int, w: int) -> tuple[int, int]:
    """Output size ``upsample_h``/``upsample_w`` (both, whole multiples of the input), else ``scale_h``/``scale_w``
    (both, without ``scale``), else ``scale`` (default 2); factors are positive integers."""
    p = layer.p("upsample_param")
    if p.HasField("upsample_h") or p.HasField("upsample_w"):
        if not (p.HasField("upsample_h") and p.HasField("upsample_w")):
            raise unsupported(layer, "upsample_param.upsample_h/upsample_w", "only one of them",
                       "give both upsample_h and upsample_w, or scale, or scale_h and scale_w")
        factors = []
        for field, out, size in (("upsample_h", p.upsample_h, h), ("upsample_w", p.upsample_w, w)):
            if out < size or out % size:
                raise unsupported(layer, f"upsample_param.{field}", out,
                           f"a whole multiple of the input size {size} (nearest upsampling by an integer factor)")
            factors.append(out // size)
        return factors[0], factors[1]
    if p.HasField("scale_h") or p.HasField("scale_w"):
        if not (p.HasField("scale_h") and p.HasField("scale_w")) or p.HasField("scale"):
            raise unsupported(layer, "upsample_param.scale_h/scale_w", f"scale_h={p.scale_h} scale_w={p.scale_w}",
                       "give both scale_h and scale_w and no scale, or scale alone")
        pairs = (("scale_h", p.scale_h), ("scale_w", p.scale_w))
    else:
        pairs = (("scale", p.scale), ("scale", p.scale))
    for name, f in pairs:
        if f < 1:
            raise unsupported(layer, f"upsample_param.{name}", f, "a positive integer factor")
    return int(pairs[0][1]), int(pairs[1][1])


@CONVERTERS.register("Upsample")
def convert_upsample(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """``top[n, c, h, w] = bottom[n, c, h / s_h, w / s_w]`` -> Keras ``UpSampling2D(size, "nearest")`` (a repeat:
    exact). Two bottoms (SegNet max-unpooling) are refused."""
    if len(inputs) == 2:
        raise unsupported(layer, "bottom", "2 bottoms (SegNet max-unpooling with a pooling mask)",
                   "one bottom: nearest upsampling as the YOLOv3 forks")
    expect(layer, inputs, 1, 1)
    shape = caffe_shape(ctx, 0, inputs[0])
    if len(shape) != 4:
        raise ShapeError(f"{who(layer)}: needs a 4-D bottom, got shape {shape}")
    sh, sw = upsample_factors(layer, shape[2], shape[3])
    if (sh, sw) == (1, 1):
        return [keras.layers.Identity(name=layer.name)(inputs[0])]
    return [keras.layers.UpSampling2D(size=(sh, sw), interpolation="nearest", name=layer.name)(inputs[0])]


def interp_size(layer: Layer, h_eff: int, w_eff: int) -> tuple[int, int]:
    """deeplab ``InterpLayer::Reshape`` (HasField semantics, in this order): shrink only ``(E-1)/s + 1``; zoom only
    ``E + (E-1)(z-1)``; ``height`` and ``width``; shrink then zoom."""
    p = layer.p("interp_param")
    has = {f: p.HasField(f) for f in ("shrink_factor", "zoom_factor", "height", "width")}
    for f in ("zoom_factor", "shrink_factor"):
        if has[f] and getattr(p, f) < 1:
            raise unsupported(layer, f"interp_param.{f}", getattr(p, f), "a positive integer")
    s, z = p.shrink_factor, p.zoom_factor
    if has["shrink_factor"] and not has["zoom_factor"]:
        return (h_eff - 1) // s + 1, (w_eff - 1) // s + 1
    if has["zoom_factor"] and not has["shrink_factor"]:
        return h_eff + (h_eff - 1) * (z - 1), w_eff + (w_eff - 1) * (z - 1)
    if has["height"] and has["width"]:
        return int(p.height), int(p.width)
    if has["shrink_factor"] and has["zoom_factor"]:
        h, w = (h_eff - 1) // s + 1, (w_eff - 1) // s + 1
        return h + (h - 1) * (z - 1), w + (w - 1) * (z - 1)
    raise unsupported(layer, "interp_param", "no output size", "zoom_factor, shrink_factor, or both height and width")


@CONVERTERS.register("Interp")
def convert_interp(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """deeplab ``Interp``: crop ``-pad_beg`` / ``-pad_end`` (both <= 0) then bilinear align-corners resize
    (``caffe_cpu_interp2``) -> ``CaffeInterp`` with Caffe's float32 taps (Keras ``Resizing`` is not align-corners)."""
    if len(inputs) == 2:
        raise unsupported(layer, "bottom", "2 bottoms (output size from a second blob)",
                   "one bottom with height/width, zoom_factor or shrink_factor")
    expect(layer, inputs, 1, 1)
    shape = caffe_shape(ctx, 0, inputs[0])
    if len(shape) != 4:
        raise ShapeError(f"{who(layer)}: needs a 4-D bottom, got shape {shape}")
    p = layer.p("interp_param")
    for f in ("pad_beg", "pad_end"):
        if getattr(p, f) > 0:
            raise unsupported(layer, f"interp_param.{f}", getattr(p, f), "<= 0 (the original only crops)")
    h_eff = shape[2] + p.pad_beg + p.pad_end
    w_eff = shape[3] + p.pad_beg + p.pad_end
    if h_eff < 1 or w_eff < 1:
        raise ShapeError(f"{who(layer)}: pad_beg={p.pad_beg} pad_end={p.pad_end} crop away the whole"
                         f" {shape[2]}x{shape[3]} input")
    out_h, out_w = interp_size(layer, h_eff, w_eff)
    if out_h < 1 or out_w < 1:
        raise ShapeError(f"{who(layer)}: output size {out_h}x{out_w} must be positive")
    return [C.CaffeInterp(height=out_h, width=out_w, in_eff_h=h_eff, in_eff_w=w_eff, start=-p.pad_beg,
                          name=layer.name)(inputs[0])]
