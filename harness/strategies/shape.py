"""Concat, Slice, Split, Flatten, Reshape, Crop, Permute, Tile, ShuffleChannel, Silence cases."""

from __future__ import annotations


import numpy as np
from hypothesis import strategies as st

from ._arrays import Limits, _any_rank, _axis_spelling, _choice, _data, _layer_case, _pick, _rng, _shape
from ._render import Items, LayerCase, LayerDef
from .registry import _case


@_case("Concat")
def _concat_case(draw, lim: Limits) -> LayerCase:
    """2-3 bottoms that differ only along the (non-batch) concat axis; ``axis`` or legacy ``concat_dim``."""
    rng = _rng(draw)
    rank = _choice(draw, [4, 2])
    base = list(_shape(draw, lim, rank))
    axis = draw(st.integers(1, rank - 1))
    k = draw(st.integers(2, 3))
    inputs = {}
    hi = lim.max_channels if axis == 1 else lim.max_side
    for i in range(k):
        s = list(base)
        s[axis] = draw(st.integers(1, hi))
        inputs[f"in{i}"] = _data(draw, rng, tuple(s))
    items: Items
    if axis == 1 and draw(st.booleans()):
        items = [("concat_dim", 1)] if draw(st.booleans()) else []
    else:
        items = _axis_spelling(draw, axis, rank, 1)
    lay = LayerDef("concat1", "Concat", tuple(inputs), ("concat1",), [("concat_param", items)] if items else [])
    return _layer_case("concat_case", inputs, lay, f"axis={axis}")


@_case("Slice")
def _slice_case(draw, lim: Limits) -> LayerCase:
    """2-3 tops along a non-batch axis: explicit increasing slice points or an equal split."""
    rng = _rng(draw)
    rank = _choice(draw, [4, 2])
    ntops = draw(st.integers(2, 3))
    equal = draw(st.booleans())
    axis = draw(st.integers(1, rank - 1))
    hi = lim.max_channels if axis == 1 else lim.max_side
    if equal:
        dim = ntops * draw(st.integers(1, max(1, hi // ntops)))
    else:
        dim = draw(st.integers(ntops, max(ntops, hi)))
    shape = list(_shape(draw, lim, rank))
    shape[axis] = dim
    items: Items
    if axis == 1 and draw(st.booleans()):
        items = [("slice_dim", 1)] if draw(st.booleans()) else []
    else:
        items = _axis_spelling(draw, axis, rank, 1)
    if not equal:
        pts = sorted(draw(st.lists(st.integers(1, dim - 1), min_size=ntops - 1, max_size=ntops - 1, unique=True)))
        items += [("slice_point", p) for p in pts]
    tops = tuple(f"slice1_{i}" for i in range(ntops))
    lay = LayerDef("slice1", "Slice", ("data",), tops, [("slice_param", items)] if items else [])
    return _layer_case("slice_case", {"data": _data(draw, rng, tuple(shape))}, lay, f"axis={axis}")


@_case("Split")
def _split_case(draw, lim: Limits) -> LayerCase:
    rng = _rng(draw)
    shape = _shape(draw, lim, _any_rank(draw))
    ntops = draw(st.integers(2, 3))
    lay = LayerDef("split1", "Split", ("data",), tuple(f"split1_{i}" for i in range(ntops)))
    return _layer_case("split_case", {"data": _data(draw, rng, shape)}, lay)


@_case("Flatten")
def _flatten_case(draw, lim: Limits) -> LayerCase:
    """Flatten axis..end_axis (never the batch axis), both written positive or negative."""
    rng = _rng(draw)
    shape = _shape(draw, lim)
    axis = draw(st.integers(1, 3))
    end = draw(st.integers(axis, 3))
    items: Items = _axis_spelling(draw, axis, 4, 1)
    if end != 3 or draw(st.booleans()):
        items.append(("end_axis", end - 4 if draw(st.booleans()) else end))
    lay = LayerDef("flat1", "Flatten", ("data",), ("flat1",), [("flatten_param", items)] if items else [])
    return _layer_case("flatten_case", {"data": _data(draw, rng, shape)}, lay, f"axis={axis} end_axis={end}")


def _factorizations(p: int, parts: int) -> list[tuple[int, ...]]:
    if parts == 1:
        return [(p,)]
    out = []
    for d in range(1, p + 1):
        if p % d == 0:
            out += [(d, *rest) for rest in _factorizations(p // d, parts - 1)]
    return out


@_case("Reshape")
def _reshape_case(draw, lim: Limits) -> LayerCase:
    """Reshape of a sub-range [axis, axis+num_axes) into a factorisation of its size, with 0 (copy) and -1 (infer);
    the batch axis is kept."""
    rng = _rng(draw)
    shape = _shape(draw, lim)
    axis = draw(st.integers(0, 3))
    num_axes = _choice(draw, [-1, *range(0, 4 - axis + 1)])
    end = 4 if num_axes == -1 else axis + num_axes
    sub = shape[axis:end]
    if axis == 0:  # keep the batch: the first new dim copies N
        rest = int(np.prod(sub[1:])) if len(sub) > 1 else 1
        parts = draw(st.integers(1, 3))
        new = [shape[0], *_choice(draw, _factorizations(rest, parts))]
        if len(sub) == 0:
            new = []
    else:
        p = int(np.prod(sub)) if sub else 1
        parts = draw(st.integers(1, 3))
        new = list(_choice(draw, _factorizations(p, parts)))
    dims: list[int] = list(new)
    for i, d in enumerate(new):  # 0 copies the bottom's dim at the same position
        if axis + i < 4 and axis + i < end and shape[axis + i] == d and (axis + i == 0 or draw(st.booleans())):
            dims[i] = 0
    free = [i for i, d in enumerate(dims) if d != 0]
    if free and draw(st.booleans()):
        dims[_choice(draw, free)] = -1
    items: Items = [("shape", [("dim", d) for d in dims])]
    if axis != 0 or draw(st.booleans()):
        items.append(("axis", axis))
    if num_axes != -1 or draw(st.booleans()):
        items.append(("num_axes", num_axes))
    out_shape = shape[:axis] + tuple(new) + shape[end:]
    lay = LayerDef("reshape1", "Reshape", ("data",), ("reshape1",), [("reshape_param", items)])
    return _layer_case("reshape_case", {"data": _data(draw, rng, shape)}, lay, f"-> {out_shape}")


@_case("Crop")
def _crop_case(draw, lim: Limits) -> LayerCase:
    """Crop bottom 0 to bottom 1's shape from ``axis`` on, with no, one shared, or per-axis offsets."""
    rng = _rng(draw)
    shape = _shape(draw, lim, min_side=2)
    axis = _choice(draw, [2, 1, 3])
    ref = list(shape)
    ref[1] = _pick(draw, range(1, lim.max_channels + 1), [lambda v: v != shape[1]]) if axis > 1 else shape[1]
    mode = _choice(draw, ["per_axis", "one", "none"])
    offsets = []
    for i in range(axis, 4):
        ref[i] = draw(st.integers(1, shape[i]))
    if mode == "one":
        room = min(shape[i] - ref[i] for i in range(axis, 4))
        offsets = [draw(st.integers(0, room))]
    elif mode == "per_axis":
        offsets = [draw(st.integers(0, shape[i] - ref[i])) for i in range(axis, 4)]
    items: Items = [] if axis == 2 and draw(st.booleans()) else [("axis", axis)]
    items += [("offset", o) for o in offsets]
    inputs = {"data": _data(draw, rng, shape), "ref": _data(draw, rng, tuple(ref))}
    lay = LayerDef("crop1", "Crop", ("data", "ref"), ("crop1",), [("crop_param", items)] if items else [])
    return _layer_case("crop_case", inputs, lay)


@_case("Permute")
def _permute_case(draw, lim: Limits) -> LayerCase:
    """SSD Permute keeping the batch axis first; sometimes a partial order (the rest appended, as SSD does)."""
    rng = _rng(draw)
    shape = _shape(draw, lim)
    rest = list(draw(st.permutations([1, 2, 3])))
    order = [0, *rest]
    n_written = _choice(draw, [4, 3, 2]) if rest[0] != 1 else 4
    written = order[:n_written]
    # a partial order only when the appended axes come out in increasing order (SSD appends the missing ones sorted)
    if sorted(order[n_written:]) != order[n_written:]:
        written = order
    lay = LayerDef("perm1", "Permute", ("data",), ("perm1",), [("permute_param", [("order", o) for o in written])])
    return _layer_case("permute_case", {"data": _data(draw, rng, shape)}, lay, f"order={order}")


@_case("Tile")
def _tile_case(draw, lim: Limits) -> LayerCase:
    rng = _rng(draw)
    rank = _choice(draw, [4, 2])
    shape = _shape(draw, lim, rank)
    axis = draw(st.integers(1, rank - 1))
    tiles = draw(st.integers(1, 3))
    items = _axis_spelling(draw, axis, rank, 1) + [("tiles", tiles)]
    lay = LayerDef("tile1", "Tile", ("data",), ("tile1",), [("tile_param", items)])
    return _layer_case("tile_case", {"data": _data(draw, rng, shape)}, lay, f"axis={axis} tiles={tiles}")


@_case("ShuffleChannel")
def _shuffle_case(draw, lim: Limits) -> LayerCase:
    rng = _rng(draw)
    g = draw(st.integers(1, 3))
    m = draw(st.integers(1, max(1, lim.max_channels // g)))
    if g > 1 and m == 1 and lim.max_channels // g >= 2:
        m = 2  # a shuffle that moves something
    shape = _shape(draw, lim, channels=(g * m, g * m))
    items = [("group", g)] if g != 1 or draw(st.booleans()) else []
    lay = LayerDef("shuffle1", "ShuffleChannel", ("data",), ("shuffle1",),
                   [("shuffle_channel_param", items)] if items else [])
    return _layer_case("shuffle_case", {"data": _data(draw, rng, shape)}, lay, f"group={g}")


@_case("Silence")
def _silence_case(draw, lim: Limits) -> LayerCase:
    """Silence consumes a blob and produces nothing; a second input stays a net output."""
    rng = _rng(draw)
    shape = _shape(draw, lim)
    inputs = {"data": _data(draw, rng, shape), "keep": _data(draw, rng, _shape(draw, lim, 2, batch=shape[0]))}
    lay = LayerDef("silence1", "Silence", ("data",), ())
    return _layer_case("silence_case", inputs, lay)
