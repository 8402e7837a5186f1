"""Spatial resizing layers of widely used forks: Upsample (nearest, YOLOv3 forks) and Interp (bilinear,
deeplab/PSPNet)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..net import Layer
from ._reject import bad_shape, expect_bottoms, unsupported
from .registry import REFERENCE


# ----------------------------------------------------------------------------------------------------------------
# Upsample
# ----------------------------------------------------------------------------------------------------------------


def upsample_nearest(x: NDArray, *, scale_h: int, scale_w: int) -> NDArray:
    """Upsample (YOLOv3 caffe forks, ``upsample_layer.cpp``): nearest neighbour by integer factors,
    ``top[n, c, h, w] = bottom[n, c, h / scale_h, w / scale_w]`` (integer division)."""
    return np.repeat(np.repeat(x, scale_h, axis=-2), scale_w, axis=-1)


def _upsample_factors(layer: Layer, h: int, w: int) -> tuple[int, int]:
    """The fork's precedence: ``upsample_h``/``upsample_w`` (output size), else ``scale_h``/``scale_w``, else
    ``scale``.  Nearest upsampling is defined only for whole factors, so an output size must be a multiple of the
    input size."""
    p = layer.p("upsample_param")
    if p.HasField("upsample_h") or p.HasField("upsample_w"):
        if not (p.HasField("upsample_h") and p.HasField("upsample_w")):
            raise unsupported(layer, "upsample_param.upsample_h/upsample_w", "only one of them",
                              "give both upsample_h and upsample_w, or scale, or scale_h and scale_w")
        out = (int(p.upsample_h), int(p.upsample_w))
        for field, o, i in (("upsample_h", out[0], h), ("upsample_w", out[1], w)):
            if o < i or o % i:
                raise unsupported(layer, f"upsample_param.{field}", o,
                                  f"a whole multiple of the input size {i} (nearest upsampling by an integer factor)")
        return out[0] // h, out[1] // w
    if p.HasField("scale_h") or p.HasField("scale_w"):
        if not (p.HasField("scale_h") and p.HasField("scale_w")) or p.HasField("scale"):
            raise unsupported(layer, "upsample_param.scale_h/scale_w", f"scale_h={p.scale_h} scale_w={p.scale_w}",
                              "give both scale_h and scale_w and no scale, or scale alone")
        factors = (int(p.scale_h), int(p.scale_w))
        names = ("scale_h", "scale_w")
    else:
        factors = (int(p.scale), int(p.scale))
        names = ("scale", "scale")
    for name, f in zip(names, factors):
        if f < 1:
            raise unsupported(layer, f"upsample_param.{name}", f, "a positive integer factor")
    return factors


@REFERENCE.register("Upsample")
def _upsample(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    if len(inputs) == 2:
        raise unsupported(layer, "bottom", "2 bottoms (SegNet max-unpooling with a pooling mask)",
                          "one bottom: nearest upsampling as the YOLOv3 forks")
    expect_bottoms(layer, inputs, 1)
    x = inputs[0]
    if x.ndim != 4:
        raise bad_shape(layer, f"expects an NCHW bottom, got shape {x.shape}")
    sh, sw = _upsample_factors(layer, x.shape[2], x.shape[3])
    return [upsample_nearest(x, scale_h=sh, scale_w=sw)]


# ----------------------------------------------------------------------------------------------------------------
# Interp
# ----------------------------------------------------------------------------------------------------------------


def interp_output_size(h_eff: int, w_eff: int, *, height: int | None, width: int | None,
                       zoom_factor: int | None, shrink_factor: int | None) -> tuple[int, int]:
    """``interp_layer.cpp`` (deeplab-public-ver2, PSPNet) Reshape; ``None`` means the field is unset.

    shrink only: ``(H_eff - 1) / s + 1``; zoom only: ``H_eff + (H_eff - 1) * (z - 1)``; else height and width
    explicitly; shrink and zoom: shrink first, then zoom.  ``H_eff = H + pad_beg + pad_end``.
    """
    if shrink_factor is not None and zoom_factor is None:
        return (h_eff - 1) // shrink_factor + 1, (w_eff - 1) // shrink_factor + 1
    if zoom_factor is not None and shrink_factor is None:
        return h_eff + (h_eff - 1) * (zoom_factor - 1), w_eff + (w_eff - 1) * (zoom_factor - 1)
    if height is not None and width is not None:
        return height, width
    if shrink_factor is not None and zoom_factor is not None:
        h, w = (h_eff - 1) // shrink_factor + 1, (w_eff - 1) // shrink_factor + 1
        return h + (h - 1) * (zoom_factor - 1), w + (w - 1) * (zoom_factor - 1)
    raise ValueError("the output size needs zoom_factor, shrink_factor, or both height and width")


def _interp_taps(n_in: int, n_out: int) -> tuple[NDArray, NDArray, NDArray]:
    """Source index, next-index step (0 or 1) and weight of the next sample for each output position, in float32
    as Caffe's ``caffe_cpu_interp2`` computes them: ``r = (n_in - 1) / (n_out - 1)`` (0 when ``n_out == 1``),
    ``src = r * i``, ``i0 = int(src)``, ``lambda = src - i0``, step 1 unless ``i0`` is the last row."""
    r = np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.float32(0)
    src = (r * np.arange(n_out, dtype=np.float32)).astype(np.float32)
    i0 = src.astype(np.int64)
    lam = (src - i0.astype(np.float32)).astype(np.float32)
    step = (i0 < n_in - 1).astype(np.int64)
    return i0, step, lam


def interp_bilinear(x: NDArray, *, out_h: int, out_w: int, pad_beg: int = 0, pad_end: int = 0) -> NDArray:
    """Interp (deeplab/PSPNet ``interp_layer.cpp`` + ``caffe_cpu_interp2``): bilinear with aligned corners over the
    cropped input ``x[..., -pad_beg : H + pad_end, -pad_beg : W + pad_end]`` (pads are <= 0: a crop).

    ``top = (1-ly)((1-lx) a[y0,x0] + lx a[y0,x0+dx]) + ly((1-lx) a[y0+dy,x0] + lx a[y0+dy,x0+dx])``.
    """
    h, w = x.shape[-2:]
    a = x[..., -pad_beg : h + pad_end, -pad_beg : w + pad_end]
    h1, w1 = a.shape[-2:]
    y0, dy, ly = _interp_taps(h1, out_h)
    x0, dx, lx = _interp_taps(w1, out_w)
    t = x.dtype
    ly = ly.astype(t)[:, None]
    lx = lx.astype(t)[None, :]
    top = a[..., y0, :]
    bot = a[..., y0 + dy, :]

    def horiz(rows: NDArray) -> NDArray:
        return (1 - lx) * rows[..., x0] + lx * rows[..., x0 + dx]

    return (1 - ly) * horiz(top) + ly * horiz(bot)


@REFERENCE.register("Interp")
def _interp(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    if len(inputs) == 2:
        raise unsupported(layer, "bottom", "2 bottoms (output size from a second blob)",
                          "one bottom with height/width, zoom_factor or shrink_factor")
    expect_bottoms(layer, inputs, 1)
    x = inputs[0]
    if x.ndim != 4:
        raise bad_shape(layer, f"expects an NCHW bottom, got shape {x.shape}")
    p = layer.p("interp_param")
    for f in ("pad_beg", "pad_end"):
        if getattr(p, f) > 0:
            raise unsupported(layer, f"interp_param.{f}", getattr(p, f), "<= 0 (the original only crops)")
    for f in ("zoom_factor", "shrink_factor"):
        if p.HasField(f) and getattr(p, f) < 1:
            raise unsupported(layer, f"interp_param.{f}", getattr(p, f), "a positive integer")
    h_eff = x.shape[2] + p.pad_beg + p.pad_end
    w_eff = x.shape[3] + p.pad_beg + p.pad_end
    if h_eff < 1 or w_eff < 1:
        raise bad_shape(layer, f"pad_beg={p.pad_beg} pad_end={p.pad_end} crop away the whole {x.shape[2:]} input")
    try:
        out_h, out_w = interp_output_size(
            h_eff, w_eff,
            height=p.height if p.HasField("height") else None,
            width=p.width if p.HasField("width") else None,
            zoom_factor=p.zoom_factor if p.HasField("zoom_factor") else None,
            shrink_factor=p.shrink_factor if p.HasField("shrink_factor") else None,
        )
    except ValueError as e:
        raise unsupported(layer, "interp_param", "no output size", str(e)) from None
    if out_h < 1 or out_w < 1:
        raise bad_shape(layer, f"output size {out_h}x{out_w} must be positive")
    return [interp_bilinear(x, out_h=out_h, out_w=out_w, pad_beg=p.pad_beg, pad_end=p.pad_end)]
