"""Concat, Slice, Split, Silence, Flatten, Reshape, Crop, Permute, Tile, ShuffleChannel."""

from __future__ import annotations

from ..errors import ShapeError, UnsupportedParam
from ..net import Layer
from ._checks import Shape, _fmt, _min_rank, _n_bottoms, _n_tops, _same, _who, canonical_axis, count
from .registry import SHAPES


def _axis_or_dim(layer: Layer, field_name: str, dim_field: str, num_axes: int) -> int:
    """Concat/Slice: ``axis`` or the legacy ``concat_dim``/``slice_dim`` (never both; the legacy one must be a valid
    non-negative axis)."""
    prm = layer.p(field_name)
    if prm.HasField("axis") and prm.HasField(dim_field):
        raise UnsupportedParam(f"{_who(layer)}: {field_name} has both axis={prm.axis} and {dim_field}="
                               f"{getattr(prm, dim_field)}; give one")
    if prm.HasField(dim_field):
        d = getattr(prm, dim_field)
        if d >= num_axes:
            raise ShapeError(f"{_who(layer)}: {field_name}.{dim_field}={d} is out of range for a {num_axes}-D blob")
        return int(d)
    return canonical_axis(layer, f"{field_name}.axis", prm.axis, num_axes)


@SHAPES.register("Concat")
def _concat_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Concat (``concat_layer.cpp``): every bottom has the same number of axes and equal sizes except on ``axis``;
    the top's ``axis`` size is the sum."""
    _n_bottoms(layer, bottoms, minimum=1)
    _n_tops(layer, exact=1)
    first = tuple(bottoms[0])
    axis = _axis_or_dim(layer, "concat_param", "concat_dim", len(first))
    total = 0
    for name, s in zip(layer.bottoms, bottoms):
        s = tuple(s)
        if len(s) != len(first) or s[:axis] + s[axis + 1:] != first[:axis] + first[axis + 1:]:
            raise ShapeError(f"{_who(layer)}: bottom {name!r} {_fmt(s)} does not match {layer.bottoms[0]!r} "
                             f"{_fmt(first)} on the axes other than the concat axis {axis}")
        total += s[axis]
    return [first[:axis] + (total,) + first[axis + 1:]]


@SHAPES.register("Slice")
def _slice_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Slice (``slice_layer.cpp``): with ``slice_point`` there must be ``tops - 1`` strictly increasing points inside
    the axis; without, the axis is split equally (``dim % tops == 0``)."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, minimum=1)
    b = tuple(bottoms[0])
    axis = _axis_or_dim(layer, "slice_param", "slice_dim", len(b))
    dim = b[axis]
    points = [int(p) for p in layer.p("slice_param").slice_point]
    ntop = len(layer.tops)
    if points:
        if len(points) != ntop - 1:
            raise ShapeError(f"{_who(layer)}: slice_point={points} gives {len(points) + 1} slices for {ntop} tops")
        prev, sizes = 0, []
        for p in points:
            if p <= prev:
                raise ShapeError(f"{_who(layer)}: slice_point={points} must be strictly increasing and positive "
                                 f"(got {p} after {prev})")
            sizes.append(p - prev)
            prev = p
        if prev >= dim:
            raise ShapeError(f"{_who(layer)}: slice_point {prev} is outside axis {axis} of size {dim} "
                             f"(bottom {_fmt(b)})")
        sizes.append(dim - prev)
    else:
        if dim % ntop:
            raise ShapeError(f"{_who(layer)}: axis {axis} of size {dim} cannot be split equally into {ntop} tops; "
                             f"give slice_point")
        sizes = [dim // ntop] * ntop
    return [b[:axis] + (s,) + b[axis + 1:] for s in sizes]


@SHAPES.register("Split")
def _split_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Split: every top is a copy of the bottom."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, minimum=1)
    return [tuple(bottoms[0])] * len(layer.tops)


@SHAPES.register("Silence")
def _silence_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Silence: consumes its bottoms, produces no top."""
    _n_bottoms(layer, bottoms, minimum=1)
    _n_tops(layer, exact=0)
    return []


@SHAPES.register("Flatten")
def _flatten_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Flatten (``flatten_layer.cpp``): axes ``axis..end_axis`` (both canonicalised, default 1..-1) merge into one:
    ``shape[:axis] + (count(axis, end_axis+1),) + shape[end_axis+1:]``."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, exact=1)
    b = tuple(bottoms[0])
    fp = layer.p("flatten_param")
    a = canonical_axis(layer, "flatten_param.axis", fp.axis, len(b))
    e = canonical_axis(layer, "flatten_param.end_axis", fp.end_axis, len(b))
    if e < a:
        raise ShapeError(f"{_who(layer)}: flatten_param.end_axis={fp.end_axis} (axis {e}) is before axis={fp.axis} "
                         f"(axis {a})")
    return [b[:a] + (count(b, a, e + 1),) + b[e + 1:]]


@SHAPES.register("Reshape")
def _reshape_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Reshape (``reshape_layer.cpp``): ``shape`` replaces ``bottom.shape[start:end]`` where
    ``start = axis`` (negative: ``axis + num_axes + 1``), ``end = start + num_axes`` (``num_axes = -1``: to the end).
    ``0`` copies the bottom dim at ``start + i``; one ``-1`` is inferred as ``count / (product of the others)``; the
    total count must not change."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, exact=1)
    b = tuple(bottoms[0])
    rp = layer.p("reshape_param")
    dims = [int(d) for d in rp.shape.dim]
    nb = len(b)
    start = rp.axis if rp.axis >= 0 else rp.axis + nb + 1
    if not 0 <= start <= nb:
        raise ShapeError(f"{_who(layer)}: reshape_param.axis={rp.axis} is out of range for {_fmt(b)}")
    if rp.num_axes < -1:
        raise ShapeError(f"{_who(layer)}: reshape_param.num_axes={rp.num_axes} must be >= -1")
    end = nb if rp.num_axes == -1 else start + rp.num_axes
    if end > nb:
        raise ShapeError(f"{_who(layer)}: reshape_param.axis={rp.axis} + num_axes={rp.num_axes} exceeds the {nb} "
                         f"axes of {_fmt(b)}")
    if dims.count(-1) > 1:
        raise ShapeError(f"{_who(layer)}: reshape_param.shape {dims} has more than one -1")
    new = []
    for i, d in enumerate(dims):
        if d == 0:
            if start + i >= nb:
                raise ShapeError(f"{_who(layer)}: reshape_param.shape {dims}: dim {i} is 0 (copy) but bottom "
                                 f"{_fmt(b)} has no axis {start + i}")
            new.append(b[start + i])
        elif d < -1:
            raise ShapeError(f"{_who(layer)}: reshape_param.shape {dims}: dim {i} = {d} is invalid (use >0, 0 copy, "
                             f"-1 infer)")
        else:
            new.append(d)
    region = count(b, start, end)
    if -1 in new:
        known = count([d for d in new if d != -1])
        if known == 0 or region % known:
            raise ShapeError(f"{_who(layer)}: reshape_param.shape {dims} cannot hold the {region} values of "
                             f"{_fmt(b[start:end])} (-1 not inferable)")
        new[new.index(-1)] = region // known
    if count(new) != region:
        raise ShapeError(f"{_who(layer)}: reshape_param.shape {dims} -> {_fmt(new)} has {count(new)} values, bottom "
                         f"{_fmt(b)} has {region} in the reshaped range")
    return [b[:start] + tuple(new) + b[end:]]


@SHAPES.register("Crop")
def _crop_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Crop (``crop_layer.cpp``): axes ``>= axis`` (default 2, canonicalised) take bottom[1]'s sizes; one offset for
    all of them or one per cropped axis; ``CHECK_GE(bottom[0].shape(i) - offset, bottom[1].shape(i))``."""
    _n_bottoms(layer, bottoms, exact=2)
    _n_tops(layer, exact=1)
    b0, b1 = tuple(bottoms[0]), tuple(bottoms[1])
    cp = layer.p("crop_param")
    axis = canonical_axis(layer, "crop_param.axis", cp.axis, len(b0))
    offsets = [int(o) for o in cp.offset]
    if len(offsets) > 1 and axis + len(offsets) != len(b0):
        raise ShapeError(f"{_who(layer)}: crop_param.offset={offsets} has {len(offsets)} values; give 1 or "
                         f"{len(b0) - axis} (one per axis from axis {axis})")
    if len(b1) != len(b0):
        raise ShapeError(f"{_who(layer)}: reference bottom {layer.bottoms[1]!r} {_fmt(b1)} must have as many axes "
                         f"as {layer.bottoms[0]!r} {_fmt(b0)}")
    out = list(b0)
    for i in range(axis, len(b0)):
        off = offsets[0] if len(offsets) == 1 else (offsets[i - axis] if offsets else 0)
        if b0[i] - off < b1[i]:
            raise ShapeError(f"{_who(layer)}: crop on axis {i} is out of bounds: offset {off} + size {b1[i]} > "
                             f"{b0[i]} (bottom {_fmt(b0)}, reference {_fmt(b1)})")
        out[i] = b1[i]
    return [tuple(out)]


def permute_order(layer: Layer, ndim: int) -> list[int]:
    """SSD ``permute_layer.cpp``: each ``order`` value is a unique axis < num_axes; axes not listed follow in their
    original order."""
    given = [int(o) for o in layer.p("permute_param").order]
    for o in given:
        if o >= ndim:
            raise ShapeError(f"{_who(layer)}: permute_param.order={given}: {o} is not an axis of a {ndim}-D blob")
    if len(set(given)) != len(given):
        raise ShapeError(f"{_who(layer)}: permute_param.order={given} has duplicates")
    return given + [a for a in range(ndim) if a not in given]


@SHAPES.register("Permute")
def _permute_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Permute: ``top.shape[i] = bottom.shape[order[i]]``."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, exact=1)
    b = tuple(bottoms[0])
    return [tuple(b[o] for o in permute_order(layer, len(b)))]


@SHAPES.register("Tile")
def _tile_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Tile (``tile_layer.cpp``): ``tiles`` required and > 0; ``top.shape[axis] = bottom.shape[axis] * tiles``."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, exact=1)
    tp = layer.p("tile_param")
    if not tp.HasField("tiles") or tp.tiles <= 0:
        raise ShapeError(f"{_who(layer)}: tile_param.tiles={tp.tiles if tp.HasField('tiles') else 'unset'} must be "
                         f"given and positive")
    b = list(bottoms[0])
    axis = canonical_axis(layer, "tile_param.axis", tp.axis, len(b))
    b[axis] *= tp.tiles
    return [tuple(b)]


@SHAPES.register("ShuffleChannel")
def _shuffle_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """ShuffleChannel: ``group`` must divide the channels; same shape."""
    out = _same(layer, bottoms)
    _min_rank(layer, bottoms[0], 2)
    g = layer.p("shuffle_channel_param").group
    c = bottoms[0][1]
    if g <= 0 or c % g:
        raise ShapeError(f"{_who(layer)}: shuffle_channel_param.group={g} does not divide the {c} channels")
    return out
