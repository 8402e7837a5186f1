"""Scale, Bias, InnerProduct and Embed: hand values and naive loops written from the Caffe sources' formulas."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import HarnessError, ShapeError
from harness.reference import REFERENCE
from support import make_layer


RNG = np.random.default_rng(31)
X = RNG.standard_normal((2, 3, 4, 5))


def q(a):
    """The float32 values a caffemodel would hold."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def test_scale_default_axis1_per_channel_with_bias():
    s, b = RNG.standard_normal(3), RNG.standard_normal(3)
    layer = make_layer('name: "sc" type: "Scale" bottom: "x" top: "x" scale_param { bias_term: true }', (s, b))
    (y,) = REFERENCE["Scale"](layer, [X], dtype=np.float64)
    for c in range(3):
        np.testing.assert_allclose(y[:, c], X[:, c] * q(s)[c] + q(b)[c], rtol=1e-14)


@pytest.mark.parametrize("axis,num_axes,covered", [
    (0, 2, (0, 1)), (1, 2, (1, 2)), (-1, 1, (3,)), (2, -1, (2, 3)), (1, 0, ()), (-2, 2, (2, 3)),
])
def test_scale_axis_num_axes(axis, num_axes, covered):
    shape = tuple(X.shape[i] for i in covered)
    s = RNG.standard_normal(shape)
    layer = make_layer(f'name: "sc" type: "Scale" bottom: "x" top: "y" scale_param {{ axis: {axis} '
                       f'num_axes: {num_axes} }}', (s,))
    (y,) = REFERENCE["Scale"](layer, [X], dtype=np.float64)
    want = np.empty_like(X)
    for idx in np.ndindex(*X.shape):
        want[idx] = X[idx] * q(s)[tuple(idx[i] for i in covered)]
    np.testing.assert_allclose(y, want, rtol=1e-14)


def test_scale_from_second_bottom_and_bias_blob():
    """Scale with bottom[1] of shape (3, 4) at axis 1 and bias_term: the bias (learned, blobs[0]) covers the same
    axes as bottom[1]."""
    s = RNG.standard_normal((3, 4))
    b = RNG.standard_normal((3, 4))
    layer = make_layer('name: "sc" type: "Scale" bottom: "x" bottom: "s" top: "y" scale_param { bias_term: true }',
                       (b,))
    (y,) = REFERENCE["Scale"](layer, [X, s], dtype=np.float64)
    np.testing.assert_allclose(y, X * s[None, :, :, None] + q(b)[None, :, :, None], rtol=1e-14)
    with pytest.raises(ShapeError, match=r"'sc'.*\(3, 5\)"):
        REFERENCE["Scale"](layer, [X, np.ones((3, 5))], dtype=np.float64)


def test_scale_scalar_second_bottom_ignores_axis():
    layer = make_layer('name: "sc" type: "Scale" bottom: "x" bottom: "s" top: "y" scale_param { axis: 2 }')
    (y,) = REFERENCE["Scale"](layer, [X, np.array(2.5)], dtype=np.float64)
    np.testing.assert_allclose(y, X * 2.5)


def test_bias_learned_and_second_bottom():
    b = RNG.standard_normal((4, 5))
    layer = make_layer('name: "bi" type: "Bias" bottom: "x" top: "y" bias_param { axis: 2 num_axes: 2 }', (b,))
    (y,) = REFERENCE["Bias"](layer, [X], dtype=np.float64)
    np.testing.assert_allclose(y, X + q(b)[None, None], rtol=1e-14)
    layer2 = make_layer('name: "bi" type: "Bias" bottom: "x" bottom: "b" top: "y"')
    (y2,) = REFERENCE["Bias"](layer2, [X, np.array([1.0, 2.0, 3.0])], dtype=np.float64)
    np.testing.assert_allclose(y2, X + np.array([1.0, 2.0, 3.0])[None, :, None, None])
    bad = make_layer('name: "bi" type: "Bias" bottom: "x" top: "y"', (np.ones(4),))
    with pytest.raises(ShapeError, match=r"'bi'.*\(4,\).*\(3,\)"):
        REFERENCE["Bias"](bad, [X], dtype=np.float64)


def naive_ip(x, w, b, axis, transpose):
    lead = x.shape[:axis]
    flat = x.reshape(int(np.prod(lead)), -1)
    n_out = w.shape[1] if transpose else w.shape[0]
    y = np.zeros((flat.shape[0], n_out))
    for m in range(flat.shape[0]):
        for o in range(n_out):
            acc = 0.0 if b is None else b[o]
            for k in range(flat.shape[1]):
                acc += flat[m, k] * (w[k, o] if transpose else w[o, k])
            y[m, o] = acc
    return y.reshape(*lead, n_out)


@pytest.mark.parametrize("axis,transpose,bias", [(1, False, True), (2, False, True), (1, True, False),
                                                 (-1, False, True), (3, True, True)])
def test_inner_product_matches_naive(axis, transpose, bias):
    ax = axis % 4
    k = int(np.prod(X.shape[ax:]))
    w = RNG.standard_normal((k, 6) if transpose else (6, k))
    b = RNG.standard_normal(6)
    layer = make_layer(f'name: "fc" type: "InnerProduct" bottom: "x" top: "y" inner_product_param {{ '
                       f'num_output: 6 axis: {axis} transpose: {str(transpose).lower()} '
                       f'bias_term: {str(bias).lower()} }}', (w, b) if bias else (w,))
    (y,) = REFERENCE["InnerProduct"](layer, [X], dtype=np.float64)
    np.testing.assert_allclose(y, naive_ip(X, q(w), q(b) if bias else None, ax, transpose), rtol=1e-12, atol=1e-12)


def test_inner_product_flattens_in_caffe_c_order():
    """K index = c*H*W + h*W + w: a weight row that is 1 only at (c=2, h=1, w=3) picks exactly that element."""
    w = np.zeros((1, 60))
    w[0, 2 * 20 + 1 * 5 + 3] = 1.0
    layer = make_layer('name: "fc" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 1 '
                       'bias_term: false }', (w,))
    (y,) = REFERENCE["InnerProduct"](layer, [X], dtype=np.float64)
    np.testing.assert_array_equal(y[:, 0], X[:, 2, 1, 3])
    bad = make_layer('name: "fc" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 1 '
                     'bias_term: false }', (np.zeros((1, 59)),))
    with pytest.raises(ShapeError, match=r"'fc'.*\(1, 59\).*\(1, 60\)"):
        REFERENCE["InnerProduct"](bad, [X], dtype=np.float64)


def test_embed_lookup_and_bad_indices():
    w = np.arange(12, dtype=np.float64).reshape(4, 3)  # input_dim 4, num_output 3
    b = np.array([0.5, -1.0, 2.0])
    layer = make_layer('name: "emb" type: "Embed" bottom: "x" top: "y" embed_param { num_output: 3 input_dim: 4 }',
                       (w, b))
    x = np.array([[0, 3, 1, 2, 3], [2, 2, 0, 1, 0]], dtype=np.float64)
    (y,) = REFERENCE["Embed"](layer, [x], dtype=np.float64)
    assert y.shape == (2, 5, 3)
    np.testing.assert_array_equal(y[0, 1], [9 + 0.5, 10 - 1.0, 11 + 2.0])
    np.testing.assert_array_equal(y[1, 0], [6.5, 6.0, 10.0])
    for bad in (4.0, -1.0, 1.5):
        xb = x.copy()
        xb[1, 3] = bad
        with pytest.raises(HarnessError, match=r"'emb'.*\[0, 4\)"):
            REFERENCE["Embed"](layer, [xb], dtype=np.float64)


@pytest.mark.parametrize("transpose", [False, True])
def test_inner_product_blockwise_weight_cast_is_exact(monkeypatch, transpose):
    """float32 weights are cast to float64 in blocks (memory); a tiny block size must not change the result."""
    from harness.reference import affine

    w = RNG.standard_normal((60, 7) if transpose else (7, 60))
    layer = make_layer('name: "fc" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 7 '
                       f'transpose: {str(transpose).lower()} bias_term: false }}', (w,))
    monkeypatch.setattr(affine, "_CAST_BLOCK_BYTES", 60 * 8 * 2)  # two outputs per block
    (y,) = REFERENCE["InnerProduct"](layer, [X], dtype=np.float64)
    np.testing.assert_allclose(y, naive_ip(X, q(w), None, 1, transpose), rtol=1e-12, atol=1e-12)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def axis_spans(draw):
    """(axis as written, canonical axis, num_axes as written, covered axes) for a 4-axis bottom."""
    start = draw(st.integers(0, 3))
    axis = draw(st.sampled_from([start, start - 4]))
    n = draw(st.integers(-1, 4 - start))
    end = 4 if n == -1 else start + n
    return axis, start, n, tuple(range(start, end))


@settings(max_examples=25, deadline=None)
@given(axis_spans(), st.booleans(), st.integers(0, 2**16))
def test_property_scale_bias_vs_elementwise_loop(span, bias_term, seed):
    axis, start, num_axes, covered = span
    rng = np.random.default_rng(seed)
    shape = tuple(X.shape[i] for i in covered)
    s = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape).astype(np.float32)
    layer = make_layer(f'name: "sc" type: "Scale" bottom: "x" top: "y" scale_param {{ axis: {axis} '
                       f'num_axes: {num_axes} bias_term: {str(bias_term).lower()} }}', (s, b) if bias_term else (s,))
    (y,) = REFERENCE["Scale"](layer, [X], dtype=np.float64)
    blayer = make_layer(f'name: "bi" type: "Bias" bottom: "x" top: "y" bias_param {{ axis: {axis} '
                        f'num_axes: {num_axes} }}', (b,))
    (yb,) = REFERENCE["Bias"](blayer, [X], dtype=np.float64)
    want = np.empty_like(X)
    want_b = np.empty_like(X)
    for idx in np.ndindex(*X.shape):
        j = tuple(idx[i] for i in covered)
        want[idx] = X[idx] * float(s[j]) + (float(b[j]) if bias_term else 0.0)
        want_b[idx] = X[idx] + float(b[j])
    np.testing.assert_allclose(y, want, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(yb, want_b, rtol=1e-14, atol=1e-15)


@settings(max_examples=15, deadline=None)
@given(st.integers(-4, 3), st.booleans(), st.booleans(), st.integers(6, 9), st.integers(0, 2**16))
def test_property_inner_product_vs_naive(axis, transpose, bias, n_out, seed):
    rng = np.random.default_rng(seed)
    k = int(np.prod(X.shape[axis % 4:]))
    w = rng.standard_normal((k, n_out) if transpose else (n_out, k)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    layer = make_layer(f'name: "fc" type: "InnerProduct" bottom: "x" top: "y" inner_product_param {{ '
                       f'num_output: {n_out} axis: {axis} transpose: {str(transpose).lower()} '
                       f'bias_term: {str(bias).lower()} }}', (w, b) if bias else (w,))
    (y,) = REFERENCE["InnerProduct"](layer, [X], dtype=np.float64)
    want = naive_ip(X, w.astype(np.float64), b.astype(np.float64) if bias else None, axis % 4, transpose)
    np.testing.assert_allclose(y, want, rtol=1e-11, atol=1e-11)


@settings(max_examples=15, deadline=None)
@given(st.integers(10, 12), st.integers(6, 8), st.booleans(), st.integers(0, 2**16))
def test_property_embed_vs_lookup(input_dim, n_out, bias, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((input_dim, n_out)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    layer = make_layer(f'name: "emb" type: "Embed" bottom: "x" top: "y" embed_param {{ num_output: {n_out} '
                       f'input_dim: {input_dim} bias_term: {str(bias).lower()} }}', (w, b) if bias else (w,))
    x = rng.integers(0, input_dim, size=(2, 3, 5)).astype(np.float64)
    (y,) = REFERENCE["Embed"](layer, [x], dtype=np.float64)
    for idx in np.ndindex(*x.shape):
        np.testing.assert_array_equal(y[idx], w[int(x[idx])].astype(np.float64) + (b if bias else 0))
