"""Data-movement layers: hand-checked index tables, golden shape_ops/ssd_ops blobs, loop oracles, rejections."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import harness.reference.shape  # noqa: F401 - registers the layers
from harness.errors import ShapeError, UnsupportedParam
from harness.reference.registry import REFERENCE
from support import run

try:
    from ._layer_support import GoldenCase, rel_err
except ImportError:
    from support import GoldenCase, rel_err


def arange(*shape) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)


X = arange(2, 3, 5, 7)  # value = flat NCHW index: x[n,c,h,w] = 105n + 35c + 7h + w


def test_concat_channels_and_legacy_concat_dim():
    a, b = arange(2, 3, 5, 7), arange(2, 4, 5, 7) + 1000
    (y,) = run('name: "c" type: "Concat" bottom: "a" bottom: "b" top: "y"', a, b)
    assert y.shape == (2, 7, 5, 7)
    assert y[1, 2, 4, 6] == 105 + 70 + 28 + 6  # from a
    assert y[1, 3, 0, 0] == 1000 + 140  # b[1, 0, 0, 0] = 1 * 4 * 35
    (z,) = run('name: "c" type: "Concat" bottom: "a" bottom: "a" top: "y" concat_param { concat_dim: 3 }', a, a)
    assert z.shape == (2, 3, 5, 14) and z[0, 0, 0, 7] == 0 and z[0, 0, 1, 13] == 13


def test_slice_points_and_equal_split():
    s = run('name: "s" type: "Slice" bottom: "x" top: "a" top: "b" top: "c" slice_param { axis: 3 slice_point: 2 '
            'slice_point: 3 }', X)
    assert [t.shape for t in s] == [(2, 3, 5, 2), (2, 3, 5, 1), (2, 3, 5, 4)]
    assert s[1][1, 2, 3, 0] == 105 + 70 + 21 + 2
    assert s[2][0, 0, 0, 0] == 3
    e = run('name: "s" type: "Slice" bottom: "x" top: "a" top: "b" slice_param { slice_dim: 0 }', X)
    assert e[1][0, 0, 0, 0] == 105 and e[0].shape == (1, 3, 5, 7)


def test_split_copies():
    a, b = run('name: "s" type: "Split" bottom: "x" top: "a" top: "b"', X)
    assert np.array_equal(a, X) and np.array_equal(b, X)
    a[0, 0, 0, 0] = -1
    assert b[0, 0, 0, 0] == 0


def test_flatten_axis_end_axis():
    (y,) = run('name: "f" type: "Flatten" bottom: "x" top: "y" flatten_param { axis: 1 end_axis: 2 }', X)
    assert y.shape == (2, 15, 7) and y[1, 14, 6] == 209  # last element
    assert y[0, 5, 3] == 35 * 1 + 7 * 0 + 3  # (c, h) = (1, 0)
    (z,) = run('name: "f" type: "Flatten" bottom: "x" top: "y"', X)
    assert z.shape == (2, 105) and z[1, 0] == 105


@pytest.mark.parametrize(
    "params,shape",
    [
        ("shape { dim: 0 dim: -1 dim: 7 }", (2, 15, 7)),
        ("shape { dim: 1 dim: -1 } axis: 1 num_axes: 1", (2, 1, 3, 5, 7)),
        ("shape { dim: 35 } axis: -3", (2, 3, 35)),  # axis -3 on 4 axes: start = 4 - 3 + 1 = 2, to the end
        ("shape { dim: 0 dim: 0 dim: -1 }", (2, 3, 35)),
        ("shape { dim: 1 } axis: 0 num_axes: 0", (1, 2, 3, 5, 7)),
    ],
)
def test_reshape_rules(params, shape):
    (y,) = run(f'name: "r" type: "Reshape" bottom: "x" top: "y" reshape_param {{ {params} }}', X)
    assert y.shape == shape
    assert np.array_equal(y.reshape(-1), X.reshape(-1))


def test_crop_offsets():
    ref = np.zeros((2, 1, 3, 4))
    (y,) = run('name: "c" type: "Crop" bottom: "x" bottom: "r" top: "y" crop_param { axis: 2 offset: 1 }', X, ref)
    assert y.shape == (2, 3, 3, 4) and y[0, 0, 0, 0] == 7 + 1 and y[1, 2, 2, 3] == 105 + 70 + 21 + 4
    (z,) = run('name: "c" type: "Crop" bottom: "x" bottom: "r" top: "y" crop_param { axis: 1 offset: 1 '
               'offset: 2 offset: 3 }', X, ref)
    assert z.shape == (2, 1, 3, 4) and z[0, 0, 0, 0] == 35 + 14 + 3


def test_permute_appends_missing_axes():
    (y,) = run('name: "p" type: "Permute" bottom: "x" top: "y" permute_param { order: 0 order: 2 }', X)
    # order [0, 2] -> [0, 2, 1, 3]
    assert y.shape == (2, 5, 3, 7) and y[1, 4, 2, 6] == X[1, 2, 4, 6]
    (z,) = run('name: "p" type: "Permute" bottom: "x" top: "y" permute_param { order: 3 order: 1 order: 2 '
               'order: 0 }', X)
    assert z.shape == (7, 3, 5, 2) and z[6, 1, 2, 1] == X[1, 1, 2, 6]


def test_tile_repeats_the_block():
    x = arange(2, 3)
    (y,) = run('name: "t" type: "Tile" bottom: "x" top: "y" tile_param { axis: 1 tiles: 2 }', x)
    np.testing.assert_array_equal(y, [[0, 1, 2, 0, 1, 2], [3, 4, 5, 3, 4, 5]])
    (z,) = run('name: "t" type: "Tile" bottom: "x" top: "y" tile_param { axis: 0 tiles: 3 }', x)
    assert z.shape == (6, 3) and z[4, 1] == 1


def test_shuffle_channel_hand_order():
    x = np.broadcast_to(np.arange(6.0).reshape(1, 6, 1, 1), (2, 6, 3, 4))
    (y,) = run('name: "s" type: "ShuffleChannel" bottom: "x" top: "y" shuffle_channel_param { group: 2 }', x)
    # channels (0 1 2 | 3 4 5) with 2 groups -> 0 3 1 4 2 5
    np.testing.assert_array_equal(y[1, :, 2, 3], [0, 3, 1, 4, 2, 5])
    (z,) = run('name: "s" type: "ShuffleChannel" bottom: "x" top: "y" shuffle_channel_param { group: 3 }', x)
    np.testing.assert_array_equal(z[0, :, 0, 0], [0, 2, 4, 1, 3, 5])


def test_silence_has_no_tops():
    assert run('name: "s" type: "Silence" bottom: "x"', X) == []


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_permute_against_index_loop(data):
    """Permute against an explicit loop over the output index (Caffe's old_idx / new_steps walk)."""
    shape = data.draw(st.lists(st.integers(1, 4), min_size=2, max_size=4, unique=True))
    nd = len(shape)
    order = data.draw(st.permutations(range(nd)))
    given_order = order[: data.draw(st.integers(0, nd))]
    x = np.random.default_rng(0).normal(size=shape)
    text = " ".join(f"order: {o}" for o in given_order)
    (y,) = run(f'name: "p" type: "Permute" bottom: "x" top: "y" permute_param {{ {text} }}', x)
    full = list(given_order) + [i for i in range(nd) if i not in given_order]
    want = np.empty([shape[o] for o in full])
    for idx in itertools.product(*[range(d) for d in want.shape]):
        src = [0] * nd
        for j, o in enumerate(full):
            src[o] = idx[j]
        want[idx] = x[tuple(src)]
    np.testing.assert_array_equal(y, want)


@settings(max_examples=20, deadline=None)
@given(c_per=st.integers(1, 4), group=st.integers(1, 4))
def test_shuffle_channel_against_loop(c_per, group):
    c = c_per * group
    x = np.random.default_rng(c).normal(size=(c + 1, c, c + 2, c + 3))  # distinct sizes whatever c is
    (y,) = run(f'name: "s" type: "ShuffleChannel" bottom: "x" top: "y" shuffle_channel_param {{ group: {group} }}', x)
    for i in range(group):
        for j in range(c_per):
            np.testing.assert_array_equal(y[:, j * group + i], x[:, i * c_per + j])


@settings(max_examples=15, deadline=None)
@given(axis=st.integers(-4, 3), tiles=st.integers(1, 3), seed=st.integers(0, 1000))
def test_tile_against_loop(axis, tiles, seed):
    """tile_layer.cpp: for each outer index, the inner block (axes axis..end) is copied ``tiles`` times."""
    x = np.random.default_rng(seed).normal(size=(2, 3, 4, 5))
    (y,) = run(f'name: "t" type: "Tile" bottom: "x" top: "y" tile_param {{ axis: {axis} tiles: {tiles} }}', x)
    ax = axis % 4
    outer = int(np.prod(x.shape[:ax]))
    inner = x.reshape(outer, -1)
    want = np.concatenate([inner] * tiles, axis=1)
    np.testing.assert_array_equal(y.reshape(outer, -1), want)
    assert y.shape[ax] == x.shape[ax] * tiles


@pytest.mark.parametrize(
    "text,bottoms,err,match",
    [
        ('type: "Slice" bottom: "x" top: "a" top: "b" slice_param { axis: 1 }', 1, ShapeError,
         r"Slice 's'.*size 3 does not split equally into 2"),
        ('type: "Slice" bottom: "x" top: "a" top: "b" slice_param { slice_point: 5 }', 1, ShapeError,
         r"slice_point \[5\] must increase strictly"),
        ('type: "Reshape" bottom: "x" top: "y" reshape_param { shape { dim: -1 dim: -1 } }', 1, ShapeError,
         r"at most one dim may be -1"),
        ('type: "Reshape" bottom: "x" top: "y" reshape_param { shape { dim: 4 dim: -1 } }', 1, ShapeError,
         r"cannot infer"),
        ('type: "Tile" bottom: "x" top: "y" tile_param { axis: 1 }', 1, UnsupportedParam,
         r"Tile 's': tile_param.tiles=<unset>"),
        ('type: "Concat" bottom: "x" bottom: "x" top: "y" concat_param { axis: 1 concat_dim: 1 }', 2,
         UnsupportedParam, r"concat_dim=1"),
        ('type: "Crop" bottom: "x" bottom: "x" top: "y" crop_param { axis: 2 offset: 1 }', 2, ShapeError,
         r"offset 1 \+ size 5 exceeds 5"),
        ('type: "ShuffleChannel" bottom: "x" top: "y" shuffle_channel_param { group: 2 }', 1, ShapeError,
         r"group=2 must divide"),
        ('type: "Permute" bottom: "x" top: "y" permute_param { order: 1 order: 1 }', 1, ShapeError,
         r"duplicate"),
    ],
)
def test_rejections(text, bottoms, err, match):
    with pytest.raises(err, match=match):
        run(f'name: "s" {text}', *([X] * bottoms))


SHAPE_TYPES = {"Concat", "Slice", "Flatten", "Reshape", "Crop", "Tile", "Permute"}


@pytest.mark.parametrize("case", ["shape_ops", "ssd_ops"])
def test_golden(case):
    g = GoldenCase(case)
    names = g.layer_names(SHAPE_TYPES)
    assert names
    for name in names:
        lay = g.layer(name)
        got = REFERENCE[lay.type](lay, g.bottoms(name), dtype=np.float64)
        for y, want in zip(got, g.expected(name), strict=True):
            assert rel_err(y, want) == 0.0, name
