"""Converters for Caffe's shape layers: Concat, Slice, Split, Flatten, Reshape, Crop, Permute, Tile, ShuffleChannel,
Silence.

Layout contract: a 4-D Caffe blob is NHWC in Keras, other ranks keep Caffe's order.  Axis-wise ops on 4-D blobs
(Concat, Slice, Crop, Tile) translate the Caffe axis to the NHWC axis (exact: only indexing).  Ops that reorder or
regroup elements (Flatten, Reshape, Permute) work in Caffe's order: a 4-D input is transposed to NCHW first
(``<layer>__nchw``) and a 4-D result transposed back to NHWC, so every top holds Caffe's values in the contract's
layout.  Output sizes are derived here from Caffe's rules (not shared with the reference).
"""

from __future__ import annotations

import math

import keras

from ..errors import ShapeError, UnsupportedParam
from ..net import Layer
from . import custom_ops as C
from ..params import canonical_axis
from ._layout import NCHW_TO_NHWC, NHWC_TO_NCHW, caffe_shape, keras_axis, to_nchw, to_nhwc
from ._util import expect, unsupported, who
from .base import CONVERTERS, ConvertContext


@CONVERTERS.register("Concat")
def convert_concat(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """``concat_layer.cpp``: join the bottoms along ``axis`` (legacy ``concat_dim``), default 1 -> Keras
    ``Concatenate`` on the translated axis; one bottom is a copy (``Identity``)."""
    expect(layer, inputs, None, 1)
    if not inputs:
        raise ShapeError(f"{who(layer)}: expects at least 1 bottom")
    p = layer.p("concat_param")
    shapes = [caffe_shape(ctx, i, x) for i, x in enumerate(inputs)]
    ndim = len(shapes[0])
    if p.HasField("concat_dim"):
        if p.HasField("axis"):
            raise UnsupportedParam(f"{who(layer)}: concat_param sets both axis and concat_dim"
                                   " (Caffe accepts one)")
        axis = int(p.concat_dim)
    else:
        axis = p.axis
    axis = canonical_axis(layer, "concat_param.axis", axis, ndim)
    for i, s in enumerate(shapes[1:], 1):
        if len(s) != ndim or any(a != b for d, (a, b) in enumerate(zip(s, shapes[0])) if d != axis):
            raise ShapeError(f"{who(layer)}: bottom {i} shape {s} does not match bottom 0 shape {shapes[0]}"
                             f" outside axis {axis}")
    if len(inputs) == 1:
        return [keras.layers.Identity(name=layer.name)(inputs[0])]
    return [keras.layers.Concatenate(axis=keras_axis(axis, ndim), name=layer.name)(list(inputs))]


@CONVERTERS.register("Slice")
def convert_slice(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """``slice_layer.cpp``: split ``axis`` (legacy ``slice_dim``) at ``slice_point``s (one fewer than the tops), or
    into equal parts -> one ``CaffeSlice`` layer with one output per top (exact)."""
    expect(layer, inputs, 1)
    x = inputs[0]
    p = layer.p("slice_param")
    shape = caffe_shape(ctx, 0, x)
    ndim = len(shape)
    if p.HasField("slice_dim"):
        if p.HasField("axis"):
            raise UnsupportedParam(f"{who(layer)}: slice_param sets both axis and slice_dim"
                                   " (Caffe accepts one)")
        axis = int(p.slice_dim)
    else:
        axis = p.axis
    axis = canonical_axis(layer, "slice_param.axis", axis, ndim)
    dim = shape[axis]
    n = len(layer.tops)
    if n < 1:
        raise ShapeError(f"{who(layer)}: needs at least 1 top")
    points = list(p.slice_point)
    if points:
        if len(points) != n - 1:
            raise ShapeError(f"{who(layer)}: {len(points)} slice_point(s) for {n} tops"
                             f" (need {n - 1})")
        bounds = [0] + points + [dim]
        if any(b <= a for a, b in zip(bounds[:-1], bounds[1:])):
            raise ShapeError(f"{who(layer)}: slice_point {points} must be increasing within (0, {dim})")
    else:
        if dim % n:
            raise ShapeError(f"{who(layer)}: axis {axis} size {dim} is not divisible by {n} tops")
        step = dim // n
        bounds = [i * step for i in range(n + 1)]
    outs = C.CaffeSlice(axis=keras_axis(axis, ndim), bounds=bounds, name=layer.name)(x)
    return list(outs) if isinstance(outs, (list, tuple)) else [outs]


@CONVERTERS.register("Split")
def convert_split(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """``split_layer.cpp``: every top is a copy of the bottom -> ``Identity`` (one top) or ``CaffeSplit``."""
    expect(layer, inputs, 1)
    if len(layer.tops) == 1:
        return [keras.layers.Identity(name=layer.name)(inputs[0])]
    outs = C.CaffeSplit(count=len(layer.tops), name=layer.name)(inputs[0])
    return list(outs)


def _reshape_caffe_order(layer: Layer, x, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                         ctx: ConvertContext):
    """Reshape in Caffe's C order: NHWC -> NCHW first when the input is 4-D, back to NHWC when the output is 4-D.
    The last Keras layer is named after the Caffe layer."""
    steps = []
    if len(in_shape) == 4:
        steps.append("nchw")
    need_reshape = tuple(in_shape) != tuple(out_shape)
    if need_reshape or not steps:
        steps.append("reshape")
    if len(out_shape) == 4:
        steps.append("nhwc")
    names = {s: (layer.name if i == len(steps) - 1 else ctx.helper_name(layer, s)) for i, s in enumerate(steps)}
    y = x
    for s in steps:
        if s == "nchw":
            y = to_nchw(y, names[s])
        elif s == "nhwc":
            y = to_nhwc(y, names[s])
        elif out_shape[:1] == in_shape[:1] and len(out_shape) >= 1 and len(in_shape) >= 1:
            y = keras.layers.Reshape(tuple(out_shape[1:]), name=names[s])(y)
        else:
            y = C.CaffeReshape(shape=out_shape, name=names[s])(y)
    return y


@CONVERTERS.register("Flatten")
def convert_flatten(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """``flatten_layer.cpp``: axes ``axis..end_axis`` (defaults 1, -1) merge into one in C order:
    ``top = shape[:axis] + [prod(shape[axis:end+1])] + shape[end+1:]``; done in Caffe's NCHW order."""
    expect(layer, inputs, 1, 1)
    x = inputs[0]
    p = layer.p("flatten_param")
    shape = caffe_shape(ctx, 0, x)
    ndim = len(shape)
    a = canonical_axis(layer, "flatten_param.axis", p.axis, ndim)
    e = canonical_axis(layer, "flatten_param.end_axis", p.end_axis, ndim)
    if e < a:
        raise ShapeError(f"{who(layer)}: end_axis {p.end_axis} comes before axis {p.axis}")
    out = shape[:a] + (math.prod(shape[a:e + 1]),) + shape[e + 1:]
    return [_reshape_caffe_order(layer, x, shape, out, ctx)]


def reshape_output_shape(layer: Layer, shape: tuple[int, ...]) -> tuple[int, ...]:
    """``reshape_layer.cpp``: ``top = bottom[:start] + dims + bottom[end:]`` with ``start = axis`` (negative:
    ``ndim + axis + 1``), ``end = start + num_axes`` (``num_axes`` -1: to the end); a 0 dim copies
    ``bottom[start + i]``, one -1 dim is inferred from the count."""
    p = layer.p("reshape_param")
    dims = list(p.shape.dim)
    ndim = len(shape)
    start = p.axis if p.axis >= 0 else ndim + p.axis + 1
    if not 0 <= start <= ndim:
        raise ShapeError(f"{who(layer)}: reshape_param.axis={p.axis} is out of range for a {ndim}-axis"
                         " blob")
    if p.num_axes < -1:
        raise ShapeError(f"{who(layer)}: reshape_param.num_axes={p.num_axes} must be >= -1")
    end = ndim if p.num_axes == -1 else start + p.num_axes
    if end > ndim:
        raise ShapeError(f"{who(layer)}: axis {p.axis} + num_axes {p.num_axes} exceed the bottom's {ndim}"
                         " axes")
    if sum(1 for d in dims if d == -1) > 1:
        raise ShapeError(f"{who(layer)}: reshape_param.shape has more than one -1 dim")
    new = []
    for i, d in enumerate(dims):
        if d == 0:
            if start + i >= ndim:
                raise ShapeError(f"{who(layer)}: dim {i} is 0 but the bottom has no axis {start + i}")
            new.append(shape[start + i])
        elif d < -1:
            raise ShapeError(f"{who(layer)}: reshape_param.shape dim {i} = {d} is invalid")
        else:
            new.append(d)
    top = list(shape[:start]) + new + list(shape[end:])
    total = math.prod(shape)
    if -1 in top:
        known = math.prod(d for d in top if d != -1)
        if known == 0 or total % known:
            raise ShapeError(f"{who(layer)}: cannot infer the -1 dim of {dims} from bottom {shape}")
        top[top.index(-1)] = total // known
    if math.prod(top) != total:
        raise ShapeError(f"{who(layer)}: output {tuple(top)} has {math.prod(top)} elements, bottom {shape}"
                         f" has {total}")
    return tuple(top)


@CONVERTERS.register("Reshape")
def convert_reshape(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """Caffe Reshape (see :func:`reshape_output_shape`) done in Caffe's C order; a 4-D result lands NHWC. Keras
    ``Reshape`` when the batch axis is kept, ``CaffeReshape`` (full shape) when it changes."""
    expect(layer, inputs, 1, 1)
    x = inputs[0]
    shape = caffe_shape(ctx, 0, x)
    out = reshape_output_shape(layer, shape)
    return [_reshape_caffe_order(layer, x, shape, out, ctx)]


@CONVERTERS.register("Crop")
def convert_crop(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """``crop_layer.cpp``: axes ``>= axis`` (default 2) take the size of bottom 1 starting at the offset (none: 0;
    one: all axes; else one per cropped axis); earlier axes are kept -> ``CaffeCrop([bottom0, bottom1])`` on the
    translated axes (slicing: exact; the reference blob stays an input as in Caffe)."""
    expect(layer, inputs, 2, 1)
    p = layer.p("crop_param")
    s0 = caffe_shape(ctx, 0, inputs[0])
    s1 = caffe_shape(ctx, 1, inputs[1])
    ndim = len(s0)
    if len(s1) != ndim:
        raise ShapeError(f"{who(layer)}: bottoms have {ndim} and {len(s1)} axes (must match)")
    start = canonical_axis(layer, "crop_param.axis", p.axis, ndim)
    offs = list(p.offset)
    n_crop = ndim - start
    if len(offs) not in (0, 1, n_crop):
        raise ShapeError(f"{who(layer)}: {len(offs)} offsets for {n_crop} cropped axes (give 0, 1 or"
                         f" {n_crop})")
    axes, offsets = [], []
    for i in range(start, ndim):
        off = 0 if not offs else (offs[0] if len(offs) == 1 else offs[i - start])
        if s0[i] - off < s1[i]:
            raise ShapeError(f"{who(layer)}: axis {i}: offset {off} + size {s1[i]} exceeds bottom size"
                             f" {s0[i]}")
        axes.append(keras_axis(i, ndim))
        offsets.append(int(off))
    return [C.CaffeCrop(axes=axes, offsets=offsets, name=layer.name)(list(inputs))]


def _compose(*perms):
    """Index array of ``a.transpose(p1).transpose(p2)...`` == ``a.transpose(result)``."""
    out = list(range(len(perms[0])))
    for p in perms:
        out = [out[i] for i in p]
    return out


@CONVERTERS.register("Permute")
def convert_permute(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """SSD ``permute_layer.cpp``: ``top = bottom.transpose(order)`` on Caffe's axes; ``order`` lists the leading new
    axes (each once, < ndim), the unlisted axes follow in their order.  Composed with the NHWC<->NCHW transposes of
    4-D blobs into one Keras ``Permute`` (batch fixed) or ``CaffeTranspose`` (batch moves): exact."""
    expect(layer, inputs, 1, 1)
    x = inputs[0]
    shape = caffe_shape(ctx, 0, x)
    ndim = len(shape)
    order = list(layer.p("permute_param").order)
    for o in order:
        if o >= ndim:
            raise ShapeError(f"{who(layer)}: order {o} must be less than the bottom's {ndim} axes")
    if len(set(order)) != len(order):
        raise ShapeError(f"{who(layer)}: order {order} lists an axis twice")
    order = order + [i for i in range(ndim) if i not in order]
    perms = []
    if ndim == 4:
        perms.append(NHWC_TO_NCHW)
    perms.append(order)
    if ndim == 4:
        perms.append(NCHW_TO_NHWC)  # of the (4-D) result
    total = _compose(*perms)
    if total == list(range(ndim)):
        return [keras.layers.Identity(name=layer.name)(x)]
    if total[0] == 0:
        return [keras.layers.Permute(tuple(total[1:]), name=layer.name)(x)]
    return [C.CaffeTranspose(perm=total, name=layer.name)(x)]


@CONVERTERS.register("Tile")
def convert_tile(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """``tile_layer.cpp``: the blocks ``bottom[..., axis:]`` repeated ``tiles`` times along ``axis`` (= np.tile on
    that axis) -> ``CaffeTile`` on the translated axis (exact)."""
    expect(layer, inputs, 1, 1)
    p = layer.p("tile_param")
    shape = caffe_shape(ctx, 0, inputs[0])
    axis = canonical_axis(layer, "tile_param.axis", p.axis, len(shape))
    if not p.HasField("tiles") or p.tiles < 1:
        raise unsupported(layer, "tile_param.tiles", p.tiles if p.HasField("tiles") else "<unset>",
                          "a positive count is required")
    return [C.CaffeTile(axis=keras_axis(axis, len(shape)), tiles=int(p.tiles), name=layer.name)(inputs[0])]


@CONVERTERS.register("ShuffleChannel")
def convert_shuffle_channel(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """ShuffleNet ``ShuffleChannel``: view channels as ``(group, C/group)``, transpose to ``(C/group, group)``:
    ``out[c2*group + g] = in[g*(C/group) + c2]``.  NHWC: Keras ``Reshape((H, W, g, C/g))`` -> ``Permute((1, 2, 4,
    3))`` -> ``Reshape((H, W, C))`` (exact)."""
    expect(layer, inputs, 1, 1)
    x = inputs[0]
    shape = caffe_shape(ctx, 0, x)
    if len(shape) != 4:
        raise ShapeError(f"{who(layer)}: needs a 4-D bottom, got shape {shape}")
    g = int(layer.p("shuffle_channel_param").group)
    n, c, h, w = shape
    if g < 1 or c % g:
        raise ShapeError(f"{who(layer)}: shuffle_channel_param.group={g} does not divide {c}"
                         " channels")
    if g == 1:
        return [keras.layers.Identity(name=layer.name)(x)]
    y = keras.layers.Reshape((h, w, g, c // g), name=ctx.helper_name(layer, "split"))(x)
    y = keras.layers.Permute((1, 2, 4, 3), name=ctx.helper_name(layer, "swap"))(y)
    return [keras.layers.Reshape((h, w, c), name=layer.name)(y)]


@CONVERTERS.register("Silence")
def convert_silence(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """``silence_layer.cpp``: consumes its bottoms, produces no top -> nothing in Keras (no output)."""
    if layer.tops:
        raise ShapeError(f"{who(layer)}: must have no tops, has {list(layer.tops)}")
    return []
