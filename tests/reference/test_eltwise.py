"""Eltwise (PROD, SUM with coeff, MAX) and Axpy: hand tables, golden shape_ops blobs, rejections."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import harness.reference.eltwise  # noqa: F401 - registers the layers
from harness.errors import ShapeError, UnsupportedParam
from harness.reference.registry import REFERENCE
from support import run

try:
    from ._layer_support import GoldenCase, rel_err
except ImportError:
    from support import GoldenCase, rel_err


A = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]])
B = np.array([[2.0, 2.0, -3.0], [0.5, -4.0, 5.0]])
C = np.array([[-1.0, 3.0, 1.0], [1.0, 1.0, 1.0]])


def test_sum_default_and_coeff():
    (s,) = run('name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "y"', A, B)
    np.testing.assert_array_equal(s, [[3, 0, 0], [1, 0, 4]])
    (c,) = run('name: "e" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "y" '
               'eltwise_param { operation: SUM coeff: 0.5 coeff: -2 coeff: 1 }', A, B, C)
    np.testing.assert_array_equal(c, [[-4.5, -2, 8.5], [0.25, 11, -9.5]])


def test_prod_and_max():
    (p,) = run('name: "e" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "y" '
               'eltwise_param { operation: PROD }', A, B, C)
    np.testing.assert_array_equal(p, [[-2, -12, -9], [0.25, -16, -5]])
    (m,) = run('name: "e" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "y" '
               'eltwise_param { operation: MAX }', A, B, C)
    np.testing.assert_array_equal(m, [[2, 3, 3], [1, 4, 5]])


@settings(max_examples=15, deadline=None)
@given(n_in=st.integers(2, 4), seed=st.integers(0, 1000))
def test_max_against_loop(n_in, seed):
    xs = [np.random.default_rng(seed + i).integers(-3, 3, size=(2, 3, 4, 5)).astype(float) for i in range(n_in)]
    (m,) = run('name: "e" type: "Eltwise" top: "y" ' + " ".join(f'bottom: "b{i}"' for i in range(n_in))
               + ' eltwise_param { operation: MAX }', *xs)
    want = np.empty_like(xs[0])
    for idx in np.ndindex(want.shape):
        want[idx] = max(x[idx] for x in xs)
    np.testing.assert_array_equal(m, want)


def test_axpy():
    a = np.arange(6.0).reshape(2, 3, 1, 1)
    x = np.ones((2, 3, 4, 5))
    y = np.full((2, 3, 4, 5), 10.0)
    (z,) = run('name: "ax" type: "Axpy" bottom: "a" bottom: "x" bottom: "y" top: "z"', a, x, y)
    assert z[1, 2, 3, 4] == 15 and z[0, 1, 0, 0] == 11 and z.shape == (2, 3, 4, 5)


@pytest.mark.parametrize(
    "text,xs,err,match",
    [
        ('eltwise_param { operation: SUM coeff: 1 }', (A, B), ShapeError, r"1 coeff values for 2 bottoms"),
        ('eltwise_param { operation: MAX coeff: 1 coeff: 2 }', (A, B), UnsupportedParam,
         r"Eltwise 'e': eltwise_param.coeff=\[1.0, 2.0\] is not supported "
         r"\(coefficients only apply to operation SUM\)"),
        ('', (A, B[:, :2]), ShapeError, r"bottom 1 shape \(2, 2\) differs"),
    ],
)
def test_rejections(text, xs, err, match):
    with pytest.raises(err, match=match):
        run('name: "e" type: "Eltwise" top: "y" ' + " ".join(f'bottom: "b{i}"' for i in range(len(xs))) + " "
            + text, *xs)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 1000), flat=st.booleans())
def test_axpy_against_loop(seed, flat):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(2, 3) if flat else (2, 3, 1, 1))
    x, y = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 3, 4, 5))
    (z,) = run('name: "ax" type: "Axpy" bottom: "a" bottom: "x" bottom: "y" top: "z"', a, x, y)
    for n in range(2):
        for c in range(3):
            np.testing.assert_allclose(z[n, c], a.reshape(2, 3)[n, c] * x[n, c] + y[n, c], rtol=1e-14)


def test_axpy_rejects_wrong_scale_shape():
    with pytest.raises(ShapeError, match=r"Axpy 'ax': bottom 0 shape \(2, 3, 4, 1\)"):
        run('name: "ax" type: "Axpy" bottom: "a" bottom: "x" bottom: "y" top: "z"',
            np.ones((2, 3, 4, 1)), np.ones((2, 3, 4, 5)), np.ones((2, 3, 4, 5)))


def test_golden_shape_ops():
    g = GoldenCase("shape_ops")
    names = g.layer_names({"Eltwise"})
    assert len(names) == 4
    for name in names:
        lay = g.layer(name)
        (y,) = REFERENCE[lay.type](lay, g.bottoms(name), dtype=np.float64)
        (want,) = g.expected(name)
        assert rel_err(y, want) <= 1e-5, name
