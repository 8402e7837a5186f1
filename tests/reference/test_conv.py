"""Convolution, depthwise and deconvolution: Caffe's unit-test values and an independent naive-loop oracle.

The oracles below are written from Caffe's definitions (``test_convolution_layer.cpp caffe_conv``, col2im) with plain
Python loops; they share no code with harness.reference.  Every tensor has distinct sizes on every axis.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import HarnessError, ShapeError, UnsupportedParam
from harness.reference import REFERENCE, _window
from harness.reference.conv import convolution, deconvolution
from support import make_layer


def naive_conv(x, w, b, stride, pad, dil, group):
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    ho = (h + 2 * pad[0] - (dil[0] * (kh - 1) + 1)) // stride[0] + 1
    wo = (wd + 2 * pad[1] - (dil[1] * (kw - 1) + 1)) // stride[1] + 1
    y = np.zeros((n, m, ho, wo))
    mg = m // group
    for nn in range(n):
        for o in range(m):
            g = o // mg
            for oh in range(ho):
                for ow in range(wo):
                    s = 0.0 if b is None else float(b[o])
                    for ci in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                ih = oh * stride[0] - pad[0] + i * dil[0]
                                iw = ow * stride[1] - pad[1] + j * dil[1]
                                if 0 <= ih < h and 0 <= iw < wd:
                                    s += w[o, ci, i, j] * x[nn, g * cg + ci, ih, iw]
                    y[nn, o, oh, ow] = s
    return y


def naive_deconv(x, w, b, stride, pad, dil, group):
    n, c, h, wd = x.shape
    _, mg, kh, kw = w.shape
    m = mg * group
    cg = c // group
    ho = stride[0] * (h - 1) + dil[0] * (kh - 1) + 1 - 2 * pad[0]
    wo = stride[1] * (wd - 1) + dil[1] * (kw - 1) + 1 - 2 * pad[1]
    y = np.zeros((n, m, ho, wo))
    for nn in range(n):
        for ci in range(c):
            g = ci // cg
            for ih in range(h):
                for iw in range(wd):
                    for mo in range(mg):
                        for i in range(kh):
                            for j in range(kw):
                                oh = ih * stride[0] - pad[0] + i * dil[0]
                                ow = iw * stride[1] - pad[1] + j * dil[1]
                                if 0 <= oh < ho and 0 <= ow < wo:
                                    y[nn, g * mg + mo, oh, ow] += w[ci, mo, i, j] * x[nn, ci, ih, iw]
    if b is not None:
        y += np.asarray(b).reshape(1, m, 1, 1)
    return y


CONV_CASES = [
    # (C, M, kernel, stride, pad, dilation, group)
    (3, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (4, 6, (3, 2), (2, 1), (1, 0), (1, 1), 2),
    (4, 8, (3, 3), (2, 3), (1, 2), (2, 1), 4),
    (3, 5, (1, 1), (1, 1), (0, 0), (1, 1), 1),
    (3, 2, (5, 4), (3, 2), (2, 1), (1, 2), 1),
    (6, 9, (2, 3), (1, 2), (0, 1), (2, 2), 3),
]


@pytest.mark.parametrize("c,m,k,s,p,d,g", CONV_CASES)
def test_convolution_matches_naive_oracle(c, m, k, s, p, d, g):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, c, 7, 9))
    w = rng.standard_normal((m, c // g, *k))
    b = rng.standard_normal(m)
    got = convolution(x, w, b, stride=s, pad=p, dilation=d, group=g)
    np.testing.assert_allclose(got, naive_conv(x, w, b, s, p, d, g), rtol=1e-12, atol=1e-12)


DECONV_CASES = [
    (4, 3, (4, 4), (2, 2), (1, 1), (1, 1), 1),
    (4, 6, (3, 3), (2, 2), (0, 0), (1, 1), 2),
    (4, 2, (3, 2), (3, 1), (1, 0), (1, 1), 1),
    (4, 2, (3, 3), (1, 1), (1, 1), (2, 2), 1),
    (6, 9, (2, 3), (2, 3), (1, 2), (2, 1), 3),
    (4, 6, (4, 6), (2, 3), (1, 2), (1, 1), 2),  # stride divides the kernel: col2im by stride-phase blocks
]


@pytest.mark.parametrize("c,m,k,s,p,d,g", DECONV_CASES)
def test_deconvolution_matches_naive_scatter_oracle(c, m, k, s, p, d, g):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, c, 5, 7))
    w = rng.standard_normal((c, m // g, *k))
    b = rng.standard_normal(m)
    got = deconvolution(x, w, b, stride=s, pad=p, dilation=d, group=g)
    np.testing.assert_allclose(got, naive_deconv(x, w, b, s, p, d, g), rtol=1e-12, atol=1e-12)


def test_caffe_simple_deconvolution_table():
    """test_deconvolution_layer.cpp TestSimpleDeconvolution: ones in, weights 1, bias 0.1, k3 s2, 4 outputs:
    3.1 everywhere, +3 where one axis overlaps, +9 where both do."""
    layer = make_layer('name: "d" type: "Deconvolution" bottom: "x" top: "y" '
                       'convolution_param { num_output: 4 kernel_size: 3 stride: 2 }',
                       (np.ones((3, 4, 3, 3)), np.full(4, 0.1)))
    x = np.ones((2, 3, 6, 4))
    (y,) = REFERENCE["Deconvolution"](layer, [x], dtype=np.float64)
    assert y.shape == (2, 4, 13, 9)
    ho, wo = y.shape[2:]
    for h in range(ho):
        for w in range(wo):
            hov = h % 2 == 0 and 0 < h < ho - 1
            wov = w % 2 == 0 and 0 < w < wo - 1
            want = 3.1 + (9 if hov and wov else 3 if hov or wov else 0)
            np.testing.assert_allclose(y[:, :, h, w], want, rtol=0, atol=1e-6)  # bias 0.1 is stored as float32


def test_caffe_sobel_separable_equals_full():
    """test_convolution_layer.cpp TestSobelConvolution: the 3x3 Sobel (stride 2) equals 3x1 [1 2 1] (stride_h 2)
    followed by 1x3 [-1 0 1] (stride_w 2)."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (2, 3, 6, 4))
    sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
    full = make_layer('name: "f" type: "Convolution" bottom: "x" top: "y" '
                      'convolution_param { num_output: 1 kernel_size: 3 stride: 2 bias_term: false }',
                      (np.broadcast_to(sobel, (1, 3, 3, 3)),))
    (y_full,) = REFERENCE["Convolution"](full, [x], dtype=np.float64)
    col = make_layer('name: "v" type: "Convolution" bottom: "x" top: "t" convolution_param { num_output: 1 '
                     'kernel_h: 3 kernel_w: 1 stride_h: 2 stride_w: 1 bias_term: false }',
                     (np.broadcast_to(np.array([1.0, 2.0, 1.0]).reshape(1, 1, 3, 1), (1, 3, 3, 1)),))
    (t,) = REFERENCE["Convolution"](col, [x], dtype=np.float64)
    row = make_layer('name: "h" type: "Convolution" bottom: "t" top: "y" convolution_param { num_output: 1 '
                     'kernel_h: 1 kernel_w: 3 stride_h: 1 stride_w: 2 bias_term: false }',
                     (np.array([-1.0, 0.0, 1.0]).reshape(1, 1, 1, 3),))
    (y_sep,) = REFERENCE["Convolution"](row, [t], dtype=np.float64)
    assert y_full.shape == (2, 1, 2, 1)
    np.testing.assert_allclose(y_full, y_sep, rtol=1e-12, atol=1e-12)
    # and the value by hand at one position: Sobel-x of the top-left 3x3 window summed over channels
    np.testing.assert_allclose(y_full[1, 0, 1, 0], (x[1, :, 2:5, 0:3] * sobel).sum(), rtol=1e-12)


def test_hand_computed_small_convolution():
    """1 image, 2 channels, 3x4, kernel 2x3, stride 1, no pad: values by hand."""
    x = np.arange(24, dtype=np.float64).reshape(1, 2, 3, 4)
    w = np.zeros((1, 2, 2, 3))
    w[0, 0, 0, 0] = 1.0  # picks x[c0, oh, ow]
    w[0, 1, 1, 2] = 2.0  # picks 2 * x[c1, oh+1, ow+2]
    y = convolution(x, w, np.array([0.5]))
    # y[oh, ow] = x0[oh, ow] + 2 * x1[oh+1, ow+2] + 0.5
    want = np.array([[0 + 2 * 18 + 0.5, 1 + 2 * 19 + 0.5], [4 + 2 * 22 + 0.5, 5 + 2 * 23 + 0.5]])
    np.testing.assert_array_equal(y[0, 0], want)


def test_depthwise_is_grouped_convolution_and_alias():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 7, 5))
    w = rng.standard_normal((6, 1, 3, 3))
    b = rng.standard_normal(6)
    body = 'bottom: "x" top: "y" convolution_param { num_output: 6 kernel_size: 3 pad: 1 stride: 2 }'
    want = naive_conv(x, w, b, (2, 2), (1, 1), (1, 1), 3)
    for t in ("ConvolutionDepthwise", "DepthwiseConvolution"):
        layer = make_layer(f'name: "dw" type: "{t}" ' + body, (w, b))
        (y,) = REFERENCE[t](layer, [x], dtype=np.float64)
        np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)  # weights stored as float32


def test_depthwise_group_mismatch_rejected():
    layer = make_layer('name: "dw" type: "ConvolutionDepthwise" bottom: "x" top: "y" '
                       'convolution_param { num_output: 6 kernel_size: 3 group: 2 }',
                       (np.ones((6, 1, 3, 3)), np.zeros(6)))
    with pytest.raises(UnsupportedParam, match=r"dw.*group=2.*\(3\)"):
        REFERENCE["ConvolutionDepthwise"](layer, [np.ones((2, 3, 7, 5))], dtype=np.float64)


def test_float32_stays_float32():
    layer = make_layer('name: "c" type: "Convolution" bottom: "x" top: "y" '
                       'convolution_param { num_output: 4 kernel_size: 3 }', (np.ones((4, 3, 3, 3)), np.zeros(4)))
    (y,) = REFERENCE["Convolution"](layer, [np.ones((2, 3, 7, 5), dtype=np.float32)], dtype=np.float32)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.full((2, 4, 5, 3), 27.0, dtype=np.float32))


@pytest.mark.parametrize("budget", [1, 700, 5000])
def test_chunked_im2col_and_col2im_are_exact(monkeypatch, budget):
    """Tiny chunk budgets force batch, row and column chunking; the result must not change."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 11, 13))
    w = rng.standard_normal((6, 2, 3, 5))
    wd = rng.standard_normal((4, 3, 3, 2))
    want_c = naive_conv(x, w, None, (2, 1), (1, 2), (1, 2), 2)
    want_d = naive_deconv(x[:, :, :5, :6], wd, None, (2, 3), (1, 0), (2, 1), 2)
    monkeypatch.setattr(_window, "CHUNK_BYTES", budget)
    got_c = convolution(x, w, stride=(2, 1), pad=(1, 2), dilation=(1, 2), group=2)
    got_d = deconvolution(x[:, :, :5, :6], wd, stride=(2, 3), pad=(1, 0), dilation=(2, 1), group=2)
    np.testing.assert_allclose(got_c, want_c, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("budget", [1, 900, 20000])
def test_chunked_phased_col2im_is_exact(monkeypatch, budget):
    """Deconvolution whose stride divides the kernel (FCN-style upsampling, col2im by stride-phase blocks), chunked
    over batch, rows and columns: same values as the naive scatter."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 4, 5, 6))
    w = rng.standard_normal((4, 3, 4, 6))
    want = naive_deconv(x, w, None, (2, 3), (1, 2), (1, 1), 2)
    monkeypatch.setattr(_window, "CHUNK_BYTES", budget)
    got = deconvolution(x, w, stride=(2, 3), pad=(1, 2), dilation=(1, 1), group=2)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_chunk_plan_respects_the_256MiB_ceiling():
    """A VGG-sized first layer at a huge input: every planned im2col block stays under the ceiling."""
    n, rows, cols = 3, 2001, 3001
    per_elem = (64 * 9 + 64) * 8
    total = 0
    for ns, rs, cs in _window.plan_chunks(n, rows, cols, per_elem, budget=10 << 30):
        size = (ns.stop - ns.start) * (rs.stop - rs.start) * (cs.stop - cs.start) * per_elem
        assert size <= _window.MAX_TEMP_BYTES
        total += (ns.stop - ns.start) * (rs.stop - rs.start) * (cs.stop - cs.start)
    assert total == n * rows * cols


def test_c_integer_division_output_rule():
    """in + 2p - extent = -1 with stride 2: C's -1/2 == 0, so Caffe makes one output that reads zeros outside."""
    x = np.arange(1, 1 + 2 * 3 * 2 * 4, dtype=np.float64).reshape(2, 3, 2, 4)
    w = np.ones((5, 3, 3, 3))
    y = convolution(x, w, stride=(2, 2), pad=(0, 0))
    assert y.shape == (2, 5, 1, 1)
    np.testing.assert_allclose(y[:, :, 0, 0], np.broadcast_to(x[:, :, :2, :3].sum(axis=(1, 2, 3))[:, None], (2, 5)))


def test_errors_name_layer_and_values():
    conv = make_layer('name: "c1" type: "Convolution" bottom: "x" top: "y" '
                      'convolution_param { num_output: 4 kernel_size: 3 }', (np.ones((4, 2, 3, 3)), np.zeros(4)))
    with pytest.raises(ShapeError, match=r"'c1'.*\(4, 2, 3, 3\).*\(4, 3, 3, 3\)"):
        REFERENCE["Convolution"](conv, [np.ones((2, 3, 7, 5))], dtype=np.float64)
    with pytest.raises(UnsupportedParam, match=r"'c1'.*5-D"):
        REFERENCE["Convolution"](conv, [np.ones((2, 3, 4, 7, 5))], dtype=np.float64)
    big = make_layer('name: "c2" type: "Convolution" bottom: "x" top: "y" '
                     'convolution_param { num_output: 4 kernel_size: 9 bias_term: false }', (np.ones((4, 3, 9, 9)),))
    with pytest.raises(ShapeError, match=r"'c2'.*output would be"):
        REFERENCE["Convolution"](big, [np.ones((2, 3, 4, 5))], dtype=np.float64)
    nob = make_layer('name: "c3" type: "Convolution" bottom: "x" top: "y" '
                     'convolution_param { num_output: 4 kernel_size: 3 }')
    with pytest.raises(HarnessError, match=r"'c3'.*no weights"):
        REFERENCE["Convolution"](nob, [np.ones((2, 3, 7, 5))], dtype=np.float64)
    grp = make_layer('name: "c4" type: "Convolution" bottom: "x" top: "y" '
                     'convolution_param { num_output: 4 kernel_size: 3 group: 2 }', (np.ones((4, 1, 3, 3)),))
    with pytest.raises(ShapeError, match=r"'c4'.*channels 3.*group=2"):
        REFERENCE["Convolution"](grp, [np.ones((2, 3, 7, 5))], dtype=np.float64)


def test_every_padded_slab_and_column_block_stays_within_the_chunk_budget(monkeypatch):
    """No padded copy of the whole input: each block pads only the slab it reads, and slab + columns + GEMM result
    of a block fit the chunk budget (here 64 KiB for a 1.4 MiB input)."""
    budget = 64 << 10
    monkeypatch.setattr(_window, "CHUNK_BYTES", budget)
    seen = []
    real_slab = _window.slab

    def spy(x, rows, cols, *, value=0.0, buffer=None):
        out = real_slab(x, rows, cols, value=value, buffer=buffer)
        if not np.shares_memory(out, x):
            seen.append(out.nbytes)
        return out

    monkeypatch.setattr(_window, "slab", spy)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 170, 190))
    w = rng.standard_normal((4, 3, 3, 3))
    got = convolution(x, w, stride=(1, 1), pad=(1, 1))
    assert seen and max(seen) <= budget
    np.testing.assert_allclose(got[:, :, 5:8, 9:12], naive_conv(x[:, :, 4:9, 8:13], w, None, (1, 1), (0, 0),
                                                                (1, 1), 1), rtol=1e-12)
    np.testing.assert_allclose(got[1, :, 0, 0], naive_conv(x[1:, :, :2, :2], w, None, (1, 1), (1, 1), (1, 1),
                                                           1)[0, :, 0, 0], rtol=1e-12)


# ---- property tests (hypothesis): random geometry against the naive oracles; sizes distinct by construction ------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def conv_geometries(draw):
    c = draw(st.integers(3, 6))  # N <= 2 < C <= 6 < H in [8, 10] < W in [11, 13]
    g = draw(st.sampled_from([d for d in range(1, c + 1) if c % d == 0]))
    m = g * draw(st.integers(1, 2))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    shape = (draw(st.integers(1, 2)), c, draw(st.integers(8, 10)), draw(st.integers(11, 13)))
    return shape, m, k, s, d, p, g, draw(st.integers(0, 2**16)), draw(st.booleans())


@settings(max_examples=12, deadline=None)
@given(conv_geometries())
def test_property_convolution_layer_vs_oracle(geo):
    shape, m, k, s, d, p, g, seed, bias = geo
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((m, shape[1] // g, *k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    layer = make_layer(f'name: "c" type: "Convolution" bottom: "x" top: "y" convolution_param {{ num_output: {m} '
                       f'kernel_h: {k[0]} kernel_w: {k[1]} stride_h: {s[0]} stride_w: {s[1]} pad_h: {p[0]} '
                       f'pad_w: {p[1]} dilation: {d[0]} dilation: {d[1]} group: {g} bias_term: {str(bias).lower()} }}',
                       (w, b) if bias else (w,))
    (y,) = REFERENCE["Convolution"](layer, [x], dtype=np.float64)
    want = naive_conv(x, w.astype(np.float64), b.astype(np.float64) if bias else None, s, p, d, g)
    np.testing.assert_allclose(y, want, rtol=1e-11, atol=1e-11)


@settings(max_examples=12, deadline=None)
@given(conv_geometries())
def test_property_deconvolution_layer_vs_oracle(geo):
    shape, m, k, s, d, p, g, seed, bias = geo
    shape = (shape[0], shape[1], shape[2] - 1, shape[3] - 1)  # H in [7, 9], W in [10, 12]: still distinct from C
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((shape[1], m // g, *k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    layer = make_layer(f'name: "d" type: "Deconvolution" bottom: "x" top: "y" convolution_param {{ num_output: {m} '
                       f'kernel_h: {k[0]} kernel_w: {k[1]} stride_h: {s[0]} stride_w: {s[1]} pad_h: {p[0]} '
                       f'pad_w: {p[1]} dilation: {d[0]} dilation: {d[1]} group: {g} bias_term: {str(bias).lower()} }}',
                       (w, b) if bias else (w,))
    ho = s[0] * (shape[2] - 1) + d[0] * (k[0] - 1) + 1 - 2 * p[0]
    wo = s[1] * (shape[3] - 1) + d[1] * (k[1] - 1) + 1 - 2 * p[1]
    if ho <= 0 or wo <= 0:
        with pytest.raises(ShapeError, match="output would be"):
            REFERENCE["Deconvolution"](layer, [x], dtype=np.float64)
        return
    (y,) = REFERENCE["Deconvolution"](layer, [x], dtype=np.float64)
    want = naive_deconv(x, w.astype(np.float64), b.astype(np.float64) if bias else None, s, p, d, g)
    np.testing.assert_allclose(y, want, rtol=1e-11, atol=1e-11)
