"""Pooling and SPP: Caffe's unit-test tables (extended to non-square inputs) and an independent naive-loop oracle
written from pooling_layer.cpp's loops (shares no code with harness.reference)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.errors import HarnessError, ShapeError, UnsupportedParam
from harness.net import Layer
from support import make_layer, run

FLT_MAX = float(np.finfo(np.float32).max)


def pool_layer(params: str, tops=("y",)) -> Layer:
    top = " ".join(f'top: "{t}"' for t in tops)
    return make_layer(f'name: "p" type: "Pooling" bottom: "x" {top} pooling_param {{ {params} }}')


def pool(layer, x):
    """The reference's tops of ``layer`` computed in ``x``'s own dtype."""
    return run(layer, x, dtype=x.dtype)


def naive_pool(x, method, k, s, p, ceil=True):
    """pooling_layer.cpp Forward_cpu (and StoPoolForwardTest) with explicit loops."""
    n, c, h, w = x.shape
    rnd = math.ceil if ceil else math.floor
    ho = int(rnd((h + 2 * p[0] - k[0]) / s[0])) + 1
    wo = int(rnd((w + 2 * p[1] - k[1]) / s[1])) + 1
    if p[0] or p[1]:
        if (ho - 1) * s[0] >= h + p[0]:
            ho -= 1
        if (wo - 1) * s[1] >= w + p[1]:
            wo -= 1
    y = np.zeros((n, c, ho, wo))
    for a in range(n):
        for b in range(c):
            for i in range(ho):
                for j in range(wo):
                    hs, ws = i * s[0] - p[0], j * s[1] - p[1]
                    if method == "MAX":
                        he, we = min(hs + k[0], h), min(ws + k[1], w)
                        hs, ws = max(hs, 0), max(ws, 0)
                        best = -FLT_MAX
                        for u in range(hs, he):
                            for v in range(ws, we):
                                if x[a, b, u, v] > best:
                                    best = x[a, b, u, v]
                        y[a, b, i, j] = best
                    elif method == "AVE":
                        he, we = min(hs + k[0], h + p[0]), min(ws + k[1], w + p[1])
                        size = (he - hs) * (we - ws)
                        hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                        y[a, b, i, j] = x[a, b, hs:he, ws:we].sum() / size
                    else:  # STOCHASTIC, TEST
                        he, we = min(hs + k[0], h), min(ws + k[1], w)
                        win = x[a, b, hs:he, ws:we]
                        y[a, b, i, j] = (win * win).sum() / (np.finfo(np.float32).tiny + win.sum())
    return y


def test_caffe_forward_max_square_table_with_mask():
    """test_pooling_layer.cpp TestForwardSquare: 3x5 input, k2 s1 -> 2x4 [9 5 5 8; 9 5 5 8], mask
    [5 2 2 9; 5 12 12 9] (first maximum wins)."""
    img = np.array([[1, 2, 5, 2, 3], [9, 4, 1, 4, 8], [1, 2, 5, 2, 3]], dtype=np.float64)
    x = np.broadcast_to(img, (2, 6, 3, 5)).copy()
    top, mask = pool(pool_layer("pool: MAX kernel_size: 2", tops=("y", "m")), x)
    np.testing.assert_array_equal(top, np.broadcast_to([[9, 5, 5, 8], [9, 5, 5, 8]], (2, 6, 2, 4)))
    np.testing.assert_array_equal(mask, np.broadcast_to([[5, 2, 2, 9], [5, 12, 12, 9]], (2, 6, 2, 4)))


def test_caffe_forward_max_padded_table():
    """TestForwardMaxPadded: [1 2 4; 2 3 2; 4 2 1], k3 s2 p2 -> [1 4 4; 4 4 4; 4 4 1].  Extended by two columns
    (-9, then [-7 -5 -8]) to make the input 3x5: the first three output columns are Caffe's table, the fourth window
    covers only the last column, and padding (which would be 0) never wins against negative values."""
    img = np.array([[1, 2, 4, -9, -7], [2, 3, 2, -9, -5], [4, 2, 1, -9, -8]], dtype=np.float64)
    x = np.broadcast_to(img, (2, 6, 3, 5)).copy()
    (top,) = pool(pool_layer("pool: MAX kernel_size: 3 stride: 2 pad: 2"), x)
    np.testing.assert_array_equal(top, np.broadcast_to([[1, 4, 4, -7], [4, 4, 4, -5], [4, 4, 1, -8]], (2, 6, 3, 4)))


def test_caffe_forward_ave_const_table():
    """TestForwardAve: constant 2, k3 s1 p1 -> 8/9 at corners, 4/3 on edges, 2 inside (pads are in the divisor);
    extended to a 3x4 input."""
    x = np.full((2, 5, 3, 4), 2.0)
    (top,) = pool(pool_layer("pool: AVE kernel_size: 3 stride: 1 pad: 1"), x)
    e, f = 8 / 9, 4 / 3
    want = [[e, f, f, e], [f, 2, 2, f], [e, f, f, e]]
    np.testing.assert_allclose(top, np.broadcast_to(want, (2, 5, 3, 4)), rtol=1e-14)


def test_ave_divisor_counts_pad_but_not_ceil_overhang():
    """H=6, k3 s2 p1, CEIL: out = ceil(5/2)+1 = 4; (4-1)*2 = 6 < 6+1 keeps it.  Last window starts at 5:
    he = min(8, 7) = 7 -> pool_size rows = 2 (one real row + one pad row), not 3."""
    x = np.ones((2, 3, 6, 7))
    (top,) = pool(pool_layer("pool: AVE kernel_size: 3 stride: 2 pad: 1"), x)
    assert top.shape == (2, 3, 4, 4)
    # rows: window 0 = [-1,2): 2 real of 3; windows 1,2 = 3 of 3; window 3 = [5,7): 1 real of 2
    # cols (W=7): out = ceil(6/2)+1 = 4, windows [-1,2) 2/3, [1,4) 3/3, [3,6) 3/3, [5,8)->he=min(8,8)=8: 2 real of 3
    rows = np.array([2 / 3, 1, 1, 1 / 2])
    cols = np.array([2 / 3, 1, 1, 2 / 3])
    np.testing.assert_allclose(top[0, 0], rows[:, None] * cols[None, :], rtol=1e-14)


def test_last_window_clip_rule():
    """The clip drops a last window that would start in the padding: (out-1)*s >= H + p."""
    # H=3, k3 s2 p2: ceil((3+4-3)/2)+1 = 3; (3-1)*2 = 4 < 3+2 keeps 3 (Caffe's MaxPadded shape)
    assert pool(pool_layer("pool: MAX kernel_size: 3 stride: 2 pad: 2"), np.zeros((2, 6, 3, 5)))[0].shape[2] == 3
    # h: ceil((4+4-3)/3)+1 = 3; (3-1)*3 = 6 >= 4+2 -> 2.  w: ceil((5+2-2)/2)+1 = 4; (4-1)*2 = 6 >= 5+1 -> 3
    (top,) = pool(pool_layer("pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 3 stride_w: 2 pad_h: 2 pad_w: 1"),
                 np.zeros((7, 6, 4, 5)))
    assert top.shape == (7, 6, 2, 3)
    # no padding: no clip even when the ceil window starts past the end (k1 s3 on W=5 -> ceil(4/3)+1 = 3 windows)
    (top,) = pool(pool_layer("pool: MAX kernel_size: 1 stride: 3"), np.ones((7, 6, 4, 5)))
    assert top.shape == (7, 6, 2, 3)
    np.testing.assert_array_equal(top[..., 2], -FLT_MAX)  # window [6,7) is empty: Caffe's -FLT_MAX init stays


CASES = [
    ("MAX", (3, 3), (2, 2), (1, 1), True),
    ("MAX", (3, 2), (2, 3), (1, 0), True),
    ("MAX", (3, 3), (3, 3), (2, 2), True),
    ("MAX", (2, 2), (2, 2), (0, 0), True),
    ("MAX", (3, 3), (2, 2), (0, 0), False),
    ("AVE", (3, 3), (2, 2), (1, 1), True),
    ("AVE", (4, 4), (3, 3), (2, 2), True),
    ("AVE", (2, 3), (1, 2), (0, 1), True),
    ("AVE", (3, 3), (2, 2), (1, 1), False),
    ("AVE", (5, 3), (2, 3), (0, 0), True),
    ("STOCHASTIC", (3, 3), (2, 2), (0, 0), True),
    ("STOCHASTIC", (2, 3), (3, 2), (0, 0), False),
]


@pytest.mark.parametrize("method,k,s,p,ceil", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pooling_matches_naive_oracle(method, k, s, p, ceil, dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 9, 11))
    if method == "STOCHASTIC":
        x = np.abs(x) + 0.1  # stochastic pooling is defined on non-negative activations
    params = (f"pool: {method} kernel_h: {k[0]} kernel_w: {k[1]} stride_h: {s[0]} stride_w: {s[1]} "
              f"pad_h: {p[0]} pad_w: {p[1]} round_mode: {'CEIL' if ceil else 'FLOOR'}")
    (top,) = pool(pool_layer(params), x.astype(dtype))
    assert top.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(top, naive_pool(x, method, k, s, p, ceil), rtol=tol, atol=tol)


def test_max_padding_never_wins_and_nan_never_wins():
    x = -np.arange(1.0, 1 + 2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # all negative: a zero pad would win if counted
    x[0, 0, 0, 0] = np.nan
    (top,) = pool(pool_layer("pool: MAX kernel_size: 3 stride: 2 pad: 1"), x)
    ref = naive_pool(np.nan_to_num(x, nan=-np.inf), "MAX", (3, 3), (2, 2), (1, 1))
    np.testing.assert_array_equal(top, ref)
    assert (top < 0).all()


def test_global_pooling():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 5, 7))
    (mx,) = pool(pool_layer("pool: MAX global_pooling: true"), x)
    (av,) = pool(pool_layer("pool: AVE global_pooling: true"), x)
    np.testing.assert_array_equal(mx[:, :, 0, 0], x.max(axis=(2, 3)))
    np.testing.assert_allclose(av[:, :, 0, 0], x.mean(axis=(2, 3)), rtol=1e-14)
    assert mx.shape == av.shape == (2, 3, 1, 1)


def test_stochastic_test_formula_by_hand():
    """sum(x^2)/sum(x): window [1 2; 3 4] -> 30/10 = 3; the probability-weighted average."""
    x = np.array([[1, 2, 5], [3, 4, 6]], dtype=np.float64)
    x = np.broadcast_to(x, (4, 5, 2, 3)).copy()
    (top,) = pool(pool_layer("pool: STOCHASTIC kernel_size: 2 stride: 1"), x)
    np.testing.assert_allclose(top[:, :, 0], np.broadcast_to([30 / 10, (4 + 25 + 16 + 36) / 17], (4, 5, 2)))


def naive_spp(x, levels, method):
    n, c, h, w = x.shape
    parts = []
    for lv in range(levels):
        bins = 2 ** lv
        kh, kw = math.ceil(h / bins), math.ceil(w / bins)
        ph, pw = (kh * bins - h + 1) // 2, (kw * bins - w + 1) // 2
        y = naive_pool(x, method, (kh, kw), (kh, kw), (ph, pw))
        if levels == 1:
            return y
        parts.append(y.reshape(n, -1))
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize("levels,method", [(1, "MAX"), (3, "MAX"), (2, "AVE"), (3, "AVE")])
def test_spp_matches_naive(levels, method):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 13, 10))
    layer = make_layer(f'name: "spp" type: "SPP" bottom: "x" top: "y" '
                       f'spp_param {{ pyramid_height: {levels} pool: {method} }}')
    (y,) = run(layer, x)
    want = naive_spp(x, levels, method)
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-12)
    if levels == 3:
        assert y.shape == (2, 3 * (1 + 4 + 16))


def test_spp_level_pad_check():
    """H=2 at level 2 (4 bins): kernel 1, pad (4-2+1)//2 = 1 >= kernel -> Caffe's CHECK fails; we refuse."""
    layer = make_layer('name: "spp" type: "SPP" bottom: "x" top: "y" spp_param { pyramid_height: 3 }')
    with pytest.raises(UnsupportedParam, match=r"'spp'.*level 2"):
        run(layer, np.zeros((4, 3, 2, 9)))


def test_pooling_errors():
    with pytest.raises(ShapeError, match="'p'.*4 axes"):
        pool(pool_layer("pool: MAX kernel_size: 2"), np.zeros((2, 3, 5)))
    with pytest.raises(ShapeError, match="'p'.*AVE.*1 top"):
        pool(pool_layer("pool: AVE kernel_size: 2", tops=("y", "m")), np.zeros((2, 3, 5, 7)))
    with pytest.raises(HarnessError, match="'p'.*pad"):
        pool(pool_layer("pool: MAX kernel_size: 2 pad: 2"), np.zeros((2, 3, 5, 7)))
    with pytest.raises(HarnessError, match="'p'.*output would be"):
        pool(pool_layer("pool: MAX kernel_size: 9 round_mode: FLOOR"), np.zeros((2, 3, 5, 7)))


@pytest.mark.parametrize("budget", [1, 3000])
def test_chunked_pooling_is_exact(monkeypatch, budget):
    """Tiny chunk budgets force batch/row/column blocks with their own padded slabs; nothing may change."""
    from harness.reference import _window

    rng = np.random.default_rng(10)
    x = rng.standard_normal((3, 2, 11, 13))
    want = {
        "MAX": naive_pool(x, "MAX", (3, 2), (2, 3), (1, 1)),
        "AVE": naive_pool(x, "AVE", (3, 3), (2, 2), (1, 2)),
        "STOCHASTIC": naive_pool(np.abs(x) + 0.1, "STOCHASTIC", (2, 3), (2, 2), (0, 0)),
    }
    monkeypatch.setattr(_window, "CHUNK_BYTES", budget)
    top, mask = pool(pool_layer("pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad: 1", tops=("y", "m")), x)
    np.testing.assert_array_equal(top, want["MAX"])
    flat = x.reshape(3, 2, -1)
    np.testing.assert_array_equal(np.take_along_axis(flat, mask.astype(np.int64).reshape(3, 2, -1), 2),
                                  top.reshape(3, 2, -1))
    (ave,) = pool(pool_layer("pool: AVE kernel_size: 3 stride: 2 pad_h: 1 pad_w: 2"), x)
    np.testing.assert_allclose(ave, want["AVE"], rtol=1e-12)
    (sto,) = pool(pool_layer("pool: STOCHASTIC kernel_h: 2 kernel_w: 3 stride: 2"), np.abs(x) + 0.1)
    np.testing.assert_allclose(sto, want["STOCHASTIC"], rtol=1e-12)


# ---- property tests (hypothesis): random geometry against the naive oracle; sizes distinct by construction -------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def pool_cases(draw):
    method = draw(st.sampled_from(["MAX", "AVE", "STOCHASTIC"]))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    if method == "STOCHASTIC":
        p = (0, 0)
    else:
        p = (draw(st.integers(0, k[0] - 1)), draw(st.integers(0, k[1] - 1)))
    shape = (draw(st.integers(1, 2)), draw(st.integers(3, 5)), draw(st.integers(6, 9)), draw(st.integers(10, 13)))
    return method, k, s, p, draw(st.booleans()), shape, draw(st.integers(0, 2**16))


@settings(max_examples=30, deadline=None)
@given(pool_cases())
def test_property_pooling_vs_oracle(case):
    method, k, s, p, ceil, shape, seed = case
    x = np.random.default_rng(seed).standard_normal(shape)
    if method == "STOCHASTIC":
        x = np.abs(x) + 0.05
    params = (f"pool: {method} kernel_h: {k[0]} kernel_w: {k[1]} stride_h: {s[0]} stride_w: {s[1]} "
              f"pad_h: {p[0]} pad_w: {p[1]} round_mode: {'CEIL' if ceil else 'FLOOR'}")
    (top,) = pool(pool_layer(params), x)
    np.testing.assert_allclose(top, naive_pool(x, method, k, s, p, ceil), rtol=1e-12, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 4), st.sampled_from(["MAX", "AVE"]), st.integers(3, 12), st.integers(13, 21),
       st.integers(0, 2**16))
def test_property_spp_vs_oracle(levels, method, h, w, seed):
    x = np.random.default_rng(seed).standard_normal((1, 2, h, w))  # N=1, C=2 < H in [3, 12] < W in [13, 21]
    layer = make_layer(f'name: "spp" type: "SPP" bottom: "x" top: "y" spp_param {{ pyramid_height: {levels} '
                       f'pool: {method} }}')
    feasible = all(
        (math.ceil(n / 2 ** lv) * 2 ** lv - n + 1) // 2 < math.ceil(n / 2 ** lv)
        for lv in range(levels) for n in (h, w))
    if not feasible:
        with pytest.raises(UnsupportedParam, match="level"):
            run(layer, x)
        return
    (y,) = run(layer, x)
    np.testing.assert_allclose(y, naive_spp(x, levels, method), rtol=1e-12)
