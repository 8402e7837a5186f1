"""Data-movement layers: Concat, Slice, Split, Flatten, Reshape, Crop, Permute, Tile, ShuffleChannel, Silence.

Pure functions take the data and Caffe's (already canonicalised) parameters keyword-only; the bindings read the
parameters with Caffe's precedence rules (legacy ``concat_dim``/``slice_dim``, ``HasField``) and validate them the way
Caffe's ``LayerSetUp``/``Reshape`` do, so a net Caffe would refuse is refused here too.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import NDArray

from ..net import Layer
from ..params import canonical_axis
from ._reject import bad_shape, expect_bottoms, unsupported
from .registry import REFERENCE


# ----------------------------------------------------------------------------------------------------------------
# Pure functions
# ----------------------------------------------------------------------------------------------------------------


def concat(xs: Sequence[NDArray], *, axis: int) -> NDArray:
    """``concat_layer.cpp``: bottoms joined along ``axis``; every other axis must agree."""
    return np.concatenate(list(xs), axis=axis)


def slice_points_to_sizes(dim: int, *, slice_points: Sequence[int], num_tops: int) -> list[int]:
    """``slice_layer.cpp`` Reshape: with ``slice_point`` (``num_tops - 1`` of them) the pieces are the gaps between
    consecutive points (0 and ``dim`` at the ends); without, ``dim`` is split into ``num_tops`` equal pieces."""
    if slice_points:
        edges = [0, *slice_points, dim]
        return [b - a for a, b in zip(edges, edges[1:])]
    return [dim // num_tops] * num_tops


def slice_(x: NDArray, *, axis: int, sizes: Sequence[int]) -> list[NDArray]:
    """``slice_layer.cpp``: consecutive pieces of ``x`` along ``axis`` with the given sizes."""
    out, start = [], 0
    for s in sizes:
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, start + s)
        out.append(np.array(x[tuple(index)], copy=True))
        start += s
    return out


def flatten(x: NDArray, *, axis: int, end_axis: int) -> NDArray:
    """``flatten_layer.cpp``: axes ``axis..end_axis`` (inclusive, canonical) merged in C order."""
    shape = x.shape[:axis] + (int(np.prod(x.shape[axis : end_axis + 1], dtype=np.int64)),) + x.shape[end_axis + 1 :]
    return x.reshape(shape).copy()


def reshape_shape(bottom_shape: Sequence[int], *, dims: Sequence[int], axis: int, num_axes: int) -> tuple[int, ...]:
    """``reshape_layer.cpp``: replace bottom axes ``[start, end)`` by ``dims``.

    ``start = axis >= 0 ? axis : ndim + axis + 1``; ``end = num_axes == -1 ? ndim : start + num_axes``.  In ``dims``,
    ``0`` copies the bottom dimension at ``start + i`` and one ``-1`` is inferred from the total count.
    Raises ValueError on a shape Caffe rejects.
    """
    ndim = len(bottom_shape)
    start = axis if axis >= 0 else ndim + axis + 1
    if not 0 <= start <= ndim:
        raise ValueError(f"axis={axis} is out of range for a {ndim}-axis bottom")
    if num_axes < -1:
        raise ValueError(f"num_axes={num_axes} must be >= -1")
    end = ndim if num_axes == -1 else start + num_axes
    if end > ndim:
        raise ValueError(f"axis={axis} + num_axes={num_axes} exceeds the bottom's {ndim} axes")
    if sum(1 for d in dims if d == -1) > 1:
        raise ValueError("at most one dim may be -1")
    new: list[int] = []
    for i, d in enumerate(dims):
        if d == 0:
            if start + i >= ndim:
                raise ValueError(f"dim {i} is 0 (copy) but the bottom has no axis {start + i}")
            new.append(int(bottom_shape[start + i]))
        elif d == -1 or d > 0:
            new.append(int(d))
        else:
            raise ValueError(f"dim {i} is {d}; dims must be -1, 0 or positive")
    shape = list(bottom_shape[:start]) + new + list(bottom_shape[end:])
    total = int(np.prod(bottom_shape, dtype=np.int64))
    if -1 in shape:
        known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
        if known == 0 or total % known:
            raise ValueError(f"cannot infer the -1 dim: {total} elements do not divide into {known}")
        shape[shape.index(-1)] = total // known
    if int(np.prod(shape, dtype=np.int64)) != total:
        raise ValueError(f"output shape {tuple(shape)} has a different count than bottom shape {tuple(bottom_shape)}")
    return tuple(shape)


def crop(x: NDArray, *, ref_shape: Sequence[int], axis: int, offsets: Sequence[int]) -> NDArray:
    """``crop_layer.cpp``: axes before ``axis`` kept; axis ``i >= axis`` becomes ``x[o_i : o_i + ref_shape[i]]``
    where ``o_i`` is the only offset (one for all), ``offsets[i - axis]`` (one per cropped axis) or 0 (none)."""
    index = []
    for i in range(x.ndim):
        if i < axis:
            index.append(slice(None))
            continue
        if len(offsets) == 0:
            o = 0
        elif len(offsets) == 1:
            o = int(offsets[0])
        else:
            o = int(offsets[i - axis])
        index.append(slice(o, o + int(ref_shape[i])))
    return np.array(x[tuple(index)], copy=True)


def permute_order(order: Sequence[int], *, ndim: int) -> tuple[int, ...]:
    """``permute_layer.cpp`` (SSD fork): the given axes (unique, ``< ndim``) then every missing axis in order."""
    full = list(order)
    full += [i for i in range(ndim) if i not in full]
    return tuple(full)


def permute(x: NDArray, *, order: Sequence[int]) -> NDArray:
    """``permute_layer.cpp`` (SSD fork): ``top.shape[i] = bottom.shape[order[i]]`` (a transpose)."""
    return np.ascontiguousarray(np.transpose(x, tuple(order)))


def tile(x: NDArray, *, axis: int, tiles: int) -> NDArray:
    """``tile_layer.cpp``: for each outer index (axes before ``axis``) the block ``x[..., axis:]`` repeats ``tiles``
    times along ``axis`` (``[b b b]``, not ``[b0 b0 b1 b1]``)."""
    reps = [1] * x.ndim
    reps[axis] = tiles
    return np.tile(x, reps)


def shuffle_channel(x: NDArray, *, group: int) -> NDArray:
    """ShuffleChannel (ShuffleNet forks, ``shuffle_channel_layer.cpp``): view channels as ``(group, C/group)``,
    transpose to ``(C/group, group)``: output channel ``j*group + i`` is input channel ``i*(C/group) + j``."""
    n, c = x.shape[:2]
    rest = x.shape[2:]
    y = x.reshape((n, group, c // group) + rest).swapaxes(1, 2)
    return np.ascontiguousarray(y).reshape(x.shape)


# ----------------------------------------------------------------------------------------------------------------
# Bindings
# ----------------------------------------------------------------------------------------------------------------


@REFERENCE.register("Concat")
def _concat(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    if not inputs:
        raise bad_shape(layer, "needs at least one bottom")
    p = layer.p("concat_param")
    ndim = inputs[0].ndim
    if p.HasField("concat_dim"):
        if p.HasField("axis"):
            raise unsupported(layer, "concat_param.concat_dim", p.concat_dim, "give either axis or concat_dim")
        axis = int(p.concat_dim)
        if axis >= ndim:
            raise bad_shape(layer, f"concat_dim={axis} is out of range for a {ndim}-axis blob")
    else:
        axis = canonical_axis(layer, "concat_param.axis", p.axis, ndim)
    for i, b in enumerate(inputs[1:], 1):
        if b.ndim != ndim or any(b.shape[k] != inputs[0].shape[k] for k in range(ndim) if k != axis):
            raise bad_shape(layer, f"bottom {i} shape {b.shape} does not match bottom 0 {inputs[0].shape} "
                            f"outside axis {axis}")
    return [concat(inputs, axis=axis)]


@REFERENCE.register("Slice")
def _slice(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    expect_bottoms(layer, inputs, 1)
    x = inputs[0]
    p = layer.p("slice_param")
    if p.HasField("slice_dim"):
        if p.HasField("axis"):
            raise unsupported(layer, "slice_param.slice_dim", p.slice_dim, "give either axis or slice_dim")
        axis = int(p.slice_dim)
        if axis >= x.ndim:
            raise bad_shape(layer, f"slice_dim={axis} is out of range for a {x.ndim}-axis blob")
    else:
        axis = canonical_axis(layer, "slice_param.axis", p.axis, x.ndim)
    n_tops = len(layer.tops)
    points = [int(v) for v in p.slice_point]
    dim = x.shape[axis]
    if points:
        if len(points) != n_tops - 1:
            raise bad_shape(layer, f"{len(points)} slice_point values need {len(points) + 1} tops, got {n_tops}")
        if any(b <= a for a, b in zip([0, *points], [*points, dim])):
            raise bad_shape(layer, f"slice_point {points} must increase strictly inside (0, {dim})")
    elif n_tops == 0 or dim % n_tops:
        raise bad_shape(layer, f"axis {axis} of size {dim} does not split equally into {n_tops} tops")
    return slice_(x, axis=axis, sizes=slice_points_to_sizes(dim, slice_points=points, num_tops=n_tops))


@REFERENCE.register("Split")
def _split(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    """``split_layer.cpp``: every top shares the bottom's data (a copy each here, so in-place layers stay apart)."""
    expect_bottoms(layer, inputs, 1)
    return [np.array(inputs[0], copy=True) for _ in layer.tops]


@REFERENCE.register("Flatten")
def _flatten(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    expect_bottoms(layer, inputs, 1)
    x = inputs[0]
    p = layer.p("flatten_param")
    axis = canonical_axis(layer, "flatten_param.axis", p.axis, x.ndim)
    end = canonical_axis(layer, "flatten_param.end_axis", p.end_axis, x.ndim)
    if end < axis:
        raise bad_shape(layer, f"end_axis={p.end_axis} comes before axis={p.axis}")
    return [flatten(x, axis=axis, end_axis=end)]


@REFERENCE.register("Reshape")
def _reshape(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    expect_bottoms(layer, inputs, 1)
    x = inputs[0]
    p = layer.p("reshape_param")
    try:
        shape = reshape_shape(x.shape, dims=list(p.shape.dim), axis=p.axis, num_axes=p.num_axes)
    except ValueError as e:
        raise bad_shape(layer, f"reshape_param: {e}") from None
    return [x.reshape(shape).copy()]


@REFERENCE.register("Crop")
def _crop(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    expect_bottoms(layer, inputs, 2)
    x, ref = inputs
    p = layer.p("crop_param")
    axis = canonical_axis(layer, "crop_param.axis", p.axis, x.ndim)
    offsets = [int(o) for o in p.offset]
    if ref.ndim != x.ndim:
        raise bad_shape(layer, f"bottom 1 has {ref.ndim} axes, bottom 0 has {x.ndim}")
    if len(offsets) not in (0, 1, x.ndim - axis):
        raise bad_shape(layer, f"{len(offsets)} offsets given; need 0, 1 or {x.ndim - axis} (one per cropped axis)")
    for i in range(axis, x.ndim):
        o = 0 if not offsets else offsets[0] if len(offsets) == 1 else offsets[i - axis]
        if o + ref.shape[i] > x.shape[i]:
            raise bad_shape(layer, f"crop on axis {i}: offset {o} + size {ref.shape[i]} exceeds {x.shape[i]}")
    return [crop(x, ref_shape=ref.shape, axis=axis, offsets=offsets)]


@REFERENCE.register("Permute")
def _permute(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    expect_bottoms(layer, inputs, 1)
    x = inputs[0]
    order = [int(o) for o in layer.p("permute_param").order]
    for o in order:
        if o >= x.ndim:
            raise bad_shape(layer, f"permute_param.order {o} must be less than the bottom's {x.ndim} axes")
    if len(set(order)) != len(order):
        raise bad_shape(layer, f"permute_param.order {order} has duplicate axes")
    return [permute(x, order=permute_order(order, ndim=x.ndim))]


@REFERENCE.register("Tile")
def _tile(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    expect_bottoms(layer, inputs, 1)
    x = inputs[0]
    p = layer.p("tile_param")
    if not p.HasField("tiles") or p.tiles < 1:
        raise unsupported(layer, "tile_param.tiles", p.tiles if p.HasField("tiles") else "<unset>", "a positive count")
    return [tile(x, axis=canonical_axis(layer, "tile_param.axis", p.axis, x.ndim), tiles=int(p.tiles))]


@REFERENCE.register("ShuffleChannel")
def _shuffle_channel(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    expect_bottoms(layer, inputs, 1)
    x = inputs[0]
    g = int(layer.p("shuffle_channel_param").group)
    if x.ndim < 2 or g < 1 or x.shape[1] % g:
        raise bad_shape(layer, f"shuffle_channel_param.group={g} must divide the {x.shape[1:2]} channels")
    return [shuffle_channel(x, group=g)]


@REFERENCE.register("Silence")
def _silence(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    """``silence_layer.cpp``: consumes its bottoms, produces no top."""
    return []
