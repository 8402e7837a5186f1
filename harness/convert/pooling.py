"""Pooling (MAX, AVE, STOCHASTIC at TEST, global) and SPP -> Keras, exactly.

Caffe's rules (``pooling_layer.cpp``, ``pooling_layer.cu``, ``spp_layer.cpp``), derived here for the converter:

* output size ``out = ceil((H + 2p - k) / s) + 1`` (``round_mode: CEIL``, the default) or ``floor`` (``FLOOR``);
  ``if (pad_h || pad_w)`` and ``(out - 1) * s >= H + p`` then ``out -= 1`` (checked on each axis once either pad is
  set: the last window must start inside the image or its top/left padding).
* MAX: window ``[ph*s - p, min(ph*s - p + k, H))`` clipped to ``>= 0``, max initialised to ``-FLT_MAX``, so the
  padding never wins.  -> ``CaffeConstantPad2D`` (pad top/left ``p``, bottom/right up to the last window's end)
  named ``<layer>__pad`` + ``MaxPooling2D(padding="valid")`` named ``<layer>``: exact (a max is a max).  The pad
  repeats the edge rows/columns (``value="edge"``) when every window holds a real element (always, with Caffe's
  ``pad < kernel`` and its last-window rule, unless stride > kernel leaves a window wholly in the ceil overhang):
  the copies lie in the edge's own windows, and an int8 LiteRT export keeps a usable scale; else ``-FLT_MAX``.
  Zero padding would be wrong for negative inputs; TF ``same`` pads differently.
* AVE: ``hend = min(hstart + k, H + p)``; ``pool_size = (hend - hstart) * (wend - wstart)`` taken before clipping
  to the image, so padding up to ``H + p`` is counted and the ceil overhang beyond it is not; the sum runs over the
  clipped window.  When every window's divisor is ``kh*kw`` (no overhang past ``H + p``) this is exactly
  ``ZeroPadding2D`` (``<layer>__pad``) + ``AveragePooling2D(valid)`` (sum / (kh*kw)); otherwise the custom
  ``CaffeAvePool2D`` rescales the overhanging rows/columns by ``kh*kw / pool_size`` (a float32 rounding of the
  same value, not bit-identical; well inside float32 tolerance).
* global pooling: kernel = (H, W), pad 0, stride 1 -> ``GlobalMaxPooling2D``/``GlobalAveragePooling2D(keepdims=True)``.
* STOCHASTIC (TEST phase, what the reference computes): ``sum(x^2) / (FLT_MIN + sum(x))`` over the clipped window ->
  custom ``CaffeStochasticPool2D``.
* SPP: level ``l`` pools with ``bins = 2^l``, ``kernel = stride = ceil(H / bins)``, ``pad = (kernel*bins - H + 1)
  / 2`` (CEIL rounding), flattens each level in Caffe's C, H, W order and concatenates on axis 1 (pyramid_height 1:
  the single 4-D pooling top, unflattened).  Helpers ``<layer>__l<i>_*``; the ``Concatenate`` is ``<layer>``.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from ..errors import ShapeError, UnsupportedParam
from ..net import Layer
from ..params import pool_geometry, spp_method
from ._layout import to_nchw
from ._util import one_bottom, unsupported, who
from .base import CONVERTERS, ConvertContext
from .custom_layers import CaffeAvePool2D, CaffeConstantPad2D, CaffeStochasticPool2D, caffe_ave_divisors

NEG_FLT_MAX = float(-np.finfo(np.float32).max)


def pooled_size(size: int, *, kernel: int, stride: int, pad: int, ceil: bool) -> int:
    """``(ceil|floor)((size + 2*pad - kernel) / stride) + 1`` (before the padding clip)."""
    num = size + 2 * pad - kernel
    q = math.ceil(num / stride) if ceil else math.floor(num / stride)
    return int(q) + 1


def pooled_hw(h: int, w: int, *, kernel, stride, pad, ceil: bool) -> tuple[int, int]:
    """Caffe's pooled (H, W), including ``--pooled`` when the last window would start in the bottom/right
    padding (applied on both axes as soon as either pad is non-zero)."""
    oh = pooled_size(h, kernel=kernel[0], stride=stride[0], pad=pad[0], ceil=ceil)
    ow = pooled_size(w, kernel=kernel[1], stride=stride[1], pad=pad[1], ceil=ceil)
    if pad[0] or pad[1]:
        if (oh - 1) * stride[0] >= h + pad[0]:
            oh -= 1
        if (ow - 1) * stride[1] >= w + pad[1]:
            ow -= 1
    return oh, ow


def _end_pad(size: int, out: int, *, kernel: int, stride: int, pad: int) -> int:
    """Bottom/right padding that makes a ``valid`` pool of the padded input yield exactly ``out`` windows with
    Caffe's starts: the last window ends at ``(out-1)*s - p + k``; a negative value means trailing rows no window
    reads, which ``valid`` pooling drops by itself."""
    return max(0, (out - 1) * stride + kernel - size - pad)


def _windows_hold_real(size: int, out: int, kernel: int, stride: int, pad: int) -> bool:
    """Whether every MAX window along one axis holds at least one element of the input: ``pooling_layer.cpp`` clips
    ``hstart = max(hstart, 0)``, ``hend = min(hstart + kernel_h_, height_)`` and a window with ``hstart >= hend`` keeps
    its ``-FLT_MAX`` (possible without padding when stride > kernel and ceil rounding adds a window past the end)."""
    starts = np.arange(out) * stride - pad
    return bool(np.all(np.maximum(starts, 0) < np.minimum(starts + kernel, size)))


def build_pooling(x, layer: Layer, *, name: str, helper: str, method: str, hw: tuple[int, int], kernel, stride, pad,
                  ceil: bool, global_pooling: bool = False):
    """Keras layers computing one Caffe pooling on the NHWC tensor ``x`` for the Caffe ``layer`` (a Pooling or an SPP
    level; messages name it); the last layer is named ``name``, helpers ``<helper>__pad``."""
    h, w = hw
    if global_pooling:
        if method == "MAX":
            return keras.layers.GlobalMaxPooling2D(keepdims=True, name=name)(x)
        if method == "AVE":
            return keras.layers.GlobalAveragePooling2D(keepdims=True, name=name)(x)
        kernel, stride, pad = (h, w), (1, 1), (0, 0)
    kh, kw = kernel
    oh, ow = pooled_hw(h, w, kernel=kernel, stride=stride, pad=pad, ceil=ceil)
    if oh <= 0 or ow <= 0:
        raise ShapeError(f"{who(layer)}: output {oh}x{ow} from input {h}x{w}, kernel {kh}x{kw}")
    pb = _end_pad(h, oh, kernel=kh, stride=stride[0], pad=pad[0])
    pr = _end_pad(w, ow, kernel=kw, stride=stride[1], pad=pad[1])
    padding = ((pad[0], pb), (pad[1], pr))
    any_pad = bool(pad[0] or pb or pad[1] or pr)
    if method == "MAX":
        if any_pad:
            real = _windows_hold_real(h, oh, kh, stride[0], pad[0]) and _windows_hold_real(w, ow, kw, stride[1], pad[1])
            x = CaffeConstantPad2D(padding=padding, value="edge" if real else NEG_FLT_MAX, name=f"{helper}__pad")(x)
        return keras.layers.MaxPooling2D((kh, kw), strides=stride, padding="valid", name=name)(x)
    if method == "AVE":
        dh = caffe_ave_divisors(h, kernel=kh, stride=stride[0], pad=pad[0], out=oh)
        dw = caffe_ave_divisors(w, kernel=kw, stride=stride[1], pad=pad[1], out=ow)
        if np.all(dh == kh) and np.all(dw == kw):
            if any_pad:
                x = keras.layers.ZeroPadding2D(padding, name=f"{helper}__pad")(x)
            return keras.layers.AveragePooling2D((kh, kw), strides=stride, padding="valid", name=name)(x)
        return CaffeAvePool2D(pool_size=[kh, kw], strides=list(stride), padding=padding, caffe_pad=list(pad),
                              in_hw=[h, w], name=name)(x)
    if method == "STOCHASTIC":
        if pad[0] or pad[1]:
            raise UnsupportedParam(f"{who(layer)}: padding is implemented only for MAX and AVE pooling "
                                   f"(pool=STOCHASTIC)")
        return CaffeStochasticPool2D(pool_size=[kh, kw], strides=list(stride), padding=padding, name=name)(x)
    raise unsupported(layer, "pool", method, "MAX, AVE, STOCHASTIC")


@CONVERTERS.register("Pooling")
def convert_pooling(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    one_bottom(layer, inputs)
    g = pool_geometry(layer)
    shape = ctx.bottom_shapes[0]
    if len(shape) != 4:
        raise ShapeError(f"{who(layer)}: bottom must have 4 axes (N, C, H, W), got {tuple(shape)}")
    n, c, h, w = shape
    return [build_pooling(inputs[0], layer, name=layer.name, helper=layer.name, method=g.method, hw=(h, w),
                          kernel=g.kernel, stride=g.stride, pad=g.pad, ceil=g.ceil,
                          global_pooling=g.global_pooling)]




def spp_level(h: int, w: int, level: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """``SPPLayer::GetPoolingParam``: kernel = stride = ceil(size / 2^level), pad = (kernel*bins - size + 1) / 2."""
    bins = 2 ** level
    kh, kw = math.ceil(h / bins), math.ceil(w / bins)
    return (kh, kw), ((kh * bins - h + 1) // 2, (kw * bins - w + 1) // 2)


@CONVERTERS.register("SPP")
def convert_spp(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    one_bottom(layer, inputs)
    sp = layer.p("spp_param")
    method = spp_method(layer)
    levels = int(sp.pyramid_height)
    if levels < 1:
        raise ShapeError(f"{who(layer)}: pyramid_height={levels} must be at least 1")
    shape = ctx.bottom_shapes[0]
    if len(shape) != 4:
        raise ShapeError(f"{who(layer)}: bottom must have 4 axes (N, C, H, W), got {tuple(shape)}")
    n, c, h, w = shape
    x = inputs[0]
    if levels == 1:
        kernel, pad = spp_level(h, w, 0)
        return [build_pooling(x, layer, name=layer.name, helper=layer.name, method=method, hw=(h, w), kernel=kernel,
                              stride=kernel, pad=pad, ceil=True)]
    flats = []
    for lvl in range(levels):
        kernel, pad = spp_level(h, w, lvl)
        if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
            raise ShapeError(f"{who(layer)}: pyramid level {lvl} on {h}x{w} needs pad {pad} >= kernel {kernel} "
                             f"(Caffe refuses it)")
        base = ctx.helper_name(layer, f"l{lvl}")
        p = build_pooling(x, layer, name=f"{base}_pool", helper=base, method=method, hw=(h, w), kernel=kernel,
                          stride=kernel, pad=pad, ceil=True)
        p = to_nchw(p, f"{base}_nchw")
        flats.append(keras.layers.Flatten(name=f"{base}_flatten")(p))
    return [keras.layers.Concatenate(axis=1, name=layer.name)(flats)]
