"""Softmax, Reduction and ArgMax: hand tables, loop oracles, golden shape_ops blobs, Caffe's tie rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import harness.reference.reduce  # noqa: F401 - registers the layers
from harness.errors import ShapeError, UnsupportedParam
from harness.reference.registry import REFERENCE
from support import run

try:
    from ._layer_support import GoldenCase, rel_err
except ImportError:
    from support import GoldenCase, rel_err


def test_softmax_hand_values_and_huge_inputs():
    x = np.array([[0.0, math.log(2), math.log(5)], [1000.0, 1000.0, 1000.0]])
    (y,) = run('name: "s" type: "Softmax" bottom: "x" top: "y"', x)
    np.testing.assert_allclose(y, [[1 / 8, 2 / 8, 5 / 8], [1 / 3, 1 / 3, 1 / 3]])


@settings(max_examples=15, deadline=None)
@given(axis=st.integers(-4, 3), seed=st.integers(0, 1000))
def test_softmax_against_loop(axis, seed):
    x = np.random.default_rng(seed).normal(size=(2, 3, 4, 5)) * 3
    (y,) = run(f'name: "s" type: "Softmax" bottom: "x" top: "y" softmax_param {{ axis: {axis} }}', x)
    ax = axis % 4
    for idx in np.ndindex(*[d for i, d in enumerate(x.shape) if i != ax]):
        sl = list(idx)
        sl.insert(ax, slice(None))
        v = [math.exp(t) for t in x[tuple(sl)]]
        np.testing.assert_allclose(y[tuple(sl)], [t / sum(v) for t in v], rtol=1e-12)


X = np.array([[[1.0, -2.0, 0.0, 1.0], [3.0, -4.0, 2.0, 0.0], [0.5, 0.5, 1.0, -1.0]],
              [[-1.0, 1.0, 2.0, 2.0], [2.0, 2.0, 0.0, -2.0], [0.0, -3.0, 1.0, 1.0]]])  # (2, 3, 4)


@pytest.mark.parametrize(
    "params,want",
    [
        ("operation: SUM axis: 1", [2.0, 5.0]),  # sums over axes 1..end per sample
        ("operation: ASUM axis: 1", [16.0, 17.0]),
        ("operation: SUMSQ axis: 2", [[6, 29, 2.5], [10, 12, 11]]),
        ("operation: MEAN axis: -1", [[0, 0.25, 0.25], [1, 0.5, -0.25]]),
        ("operation: SUM axis: 0 coeff: 2", 14.0),  # a 0-axis top: 2 * (2 + 5)
        ("operation: MEAN axis: 1 coeff: 3", [0.5, 1.25]),  # 3 * sum / 12
    ],
)
def test_reduction_table(params, want):
    (y,) = run(f'name: "r" type: "Reduction" bottom: "x" top: "y" reduction_param {{ {params} }}', X)
    assert y.shape == np.shape(want)
    np.testing.assert_allclose(y, want)


@settings(max_examples=15, deadline=None)
@given(op=st.sampled_from(["SUM", "ASUM", "SUMSQ", "MEAN"]), axis=st.integers(-4, 3), coeff=st.sampled_from([1, -0.5]),
       seed=st.integers(0, 1000))
def test_reduction_against_loop(op, axis, coeff, seed):
    x = np.random.default_rng(seed).normal(size=(2, 3, 4, 5))
    (y,) = run(f'name: "r" type: "Reduction" bottom: "x" top: "y" reduction_param {{ operation: {op} axis: {axis} '
               f'coeff: {coeff} }}', x)
    ax = axis % 4
    assert y.shape == x.shape[:ax]
    for idx in np.ndindex(*x.shape[:ax]):
        vals = list(x[idx].reshape(-1))
        f = {"SUM": lambda v: v, "MEAN": lambda v: v / len(vals), "ASUM": abs, "SUMSQ": lambda v: v * v}[op]
        assert y[idx] == pytest.approx(coeff * sum(f(v) for v in vals), rel=1e-12, abs=1e-12)


def test_argmax_axis_and_ties_pick_the_higher_index():
    x = np.array([[[3.0, 1.0, 3.0, 2.0]], [[0.0, 5.0, 5.0, -1.0]]])  # (2, 1, 4)
    (i,) = run('name: "a" type: "ArgMax" bottom: "x" top: "y" argmax_param { axis: 2 top_k: 2 }', x)
    # std::partial_sort with std::greater<pair<value, index>>: equal values -> larger index first
    np.testing.assert_array_equal(i, [[[2, 0]], [[2, 1]]])
    (v,) = run('name: "a" type: "ArgMax" bottom: "x" top: "y" argmax_param { axis: 2 top_k: 3 out_max_val: true }',
               x)
    np.testing.assert_array_equal(v, [[[3, 3, 2]], [[5, 5, 0]]])


def test_argmax_without_axis_flattens_each_sample():
    x = np.zeros((2, 3, 4, 5))
    x[0, 1, 2, 3] = 9  # flat index 20 + 10 + 3 = 33
    x[0, 2, 0, 0] = 7  # 40
    x[1, 0, 0, 1] = 4  # 1
    (y,) = run('name: "a" type: "ArgMax" bottom: "x" top: "y" argmax_param { top_k: 2 out_max_val: true }', x)
    assert y.shape == (2, 2, 2, 1)
    np.testing.assert_array_equal(y[0, :, :, 0], [[33, 40], [9, 7]])
    # sample 1: max at 1, then the zeros tie -> the largest index (59) wins
    np.testing.assert_array_equal(y[1, :, :, 0], [[1, 59], [4, 0]])
    (z,) = run('name: "a" type: "ArgMax" bottom: "x" top: "y"', x[:, :, 0, 0])  # 2-axis bottom -> (N, 1, 1)
    assert z.shape == (2, 1, 1) and z[0, 0, 0] == 2 and z[1, 0, 0] == 2  # [0, 0, 7] and [0, 0, 0] (tie: 2)


@settings(max_examples=15, deadline=None)
@given(k=st.integers(1, 3), seed=st.integers(0, 1000), with_axis=st.booleans())
def test_argmax_against_sorted_pairs(k, seed, with_axis):
    x = np.random.default_rng(seed).integers(0, 4, size=(2, 3, 4)).astype(float)  # many ties
    text = f'argmax_param {{ top_k: {k} {"axis: 1" if with_axis else ""} }}'
    (y,) = run(f'name: "a" type: "ArgMax" bottom: "x" top: "y" {text}', x)
    for n in range(2):
        if with_axis:
            for w in range(4):
                pairs = sorted(((x[n, c, w], c) for c in range(3)), reverse=True)
                assert list(y[n, :, w]) == [c for _, c in pairs[:k]]
        else:
            pairs = sorted(((v, j) for j, v in enumerate(x[n].reshape(-1))), reverse=True)
            assert list(y[n, 0]) == [j for _, j in pairs[:k]]


@pytest.mark.parametrize(
    "text,err,match",
    [
        ('type: "ArgMax" argmax_param { top_k: 7 axis: 1 }', ShapeError, r"ArgMax 'l': argmax_param.top_k=7 exceeds"),
        ('type: "Softmax" softmax_param { axis: 3 }', ShapeError, r"softmax_param.axis=3 is out of range"),
        ('type: "ArgMax" argmax_param { top_k: 0 }', UnsupportedParam, r"top_k=0"),
    ],
)
def test_rejections(text, err, match):
    with pytest.raises(err, match=match):
        run(f'name: "l" bottom: "x" top: "y" {text}', X)


def test_golden_shape_ops():
    g = GoldenCase("shape_ops")
    names = g.layer_names({"Softmax", "Reduction", "ArgMax"})
    assert len(names) == 8
    for name in names:
        lay = g.layer(name)
        (y,) = REFERENCE[lay.type](lay, g.bottoms(name), dtype=np.float64)
        (want,) = g.expected(name)
        tol = 0.0 if lay.type == "ArgMax" and "top2" not in name else 1e-5
        assert rel_err(y, want) <= tol, name
