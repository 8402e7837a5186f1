"""Upsample (nearest) and Interp (deeplab bilinear): hand tables, loop oracles, size rules, rejections."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import harness.reference.resize  # noqa: F401 - registers the layers
from harness.errors import ShapeError, UnsupportedParam
from support import run


def test_upsample_nearest_table():
    x = np.arange(1 * 3 * 2 * 4, dtype=float).reshape(1, 3, 2, 4)
    (y,) = run('name: "u" type: "Upsample" bottom: "x" top: "y" upsample_param { scale: 2 }', x)
    assert y.shape == (1, 3, 4, 8)
    np.testing.assert_array_equal(y[0, 0], [[0, 0, 1, 1, 2, 2, 3, 3], [0, 0, 1, 1, 2, 2, 3, 3],
                                            [4, 4, 5, 5, 6, 6, 7, 7], [4, 4, 5, 5, 6, 6, 7, 7]])
    assert y[0, 2, 3, 7] == 23
    (z,) = run('name: "u" type: "Upsample" bottom: "x" top: "y" upsample_param { scale_h: 3 scale_w: 1 }', x)
    assert z.shape == (1, 3, 6, 4) and np.array_equal(z[0, 2, 5], x[0, 2, 1]) and np.array_equal(z[0, 1, 2], x[0, 1, 0])
    (w,) = run('name: "u" type: "Upsample" bottom: "x" top: "y" upsample_param { upsample_h: 4 upsample_w: 12 }', x)
    assert w.shape == (1, 3, 4, 12) and w[0, 1, 3, 11] == x[0, 1, 1, 3] and w[0, 1, 2, 8] == x[0, 1, 1, 2]


@settings(max_examples=15, deadline=None)
@given(sh=st.integers(1, 3), sw=st.integers(1, 3), seed=st.integers(0, 1000))
def test_upsample_against_loop(sh, sw, seed):
    """upsample_layer.cpp: out[n, c, h, w] = in[n, c, h / scale_h, w / scale_w] (integer division)."""
    x = np.random.default_rng(seed).normal(size=(2, 3, 4, 5))
    (y,) = run(f'name: "u" type: "Upsample" bottom: "x" top: "y" upsample_param {{ scale_h: {sh} scale_w: {sw} }}', x)
    assert y.shape == (2, 3, 4 * sh, 5 * sw)
    for h in range(4 * sh):
        for w in range(5 * sw):
            np.testing.assert_array_equal(y[:, :, h, w], x[:, :, h // sh, w // sw])


def test_interp_zoom_hand_values():
    x = np.arange(4 * 2 * 3, dtype=float).reshape(1, 4, 2, 3)  # channel c holds 6c + [[0 1 2] [3 4 5]]
    (y,) = run('name: "i" type: "Interp" bottom: "x" top: "y" interp_param { zoom_factor: 2 }', x)
    # aligned corners: 2 -> 3 rows at 0, 0.5, 1; 3 -> 5 columns at 0, 0.5, 1, 1.5, 2
    want = np.array([[0, 0.5, 1, 1.5, 2], [1.5, 2, 2.5, 3, 3.5], [3, 3.5, 4, 4.5, 5]])
    np.testing.assert_allclose(y[0, 0], want)
    np.testing.assert_allclose(y[0, 3], want + 18)


@pytest.mark.parametrize(
    "params,hw",
    [
        ("zoom_factor: 3", (13, 19)),  # 5 + 4*2, 7 + 6*2
        ("shrink_factor: 2", (3, 4)),  # (5-1)/2 + 1, (7-1)/2 + 1
        ("shrink_factor: 2 zoom_factor: 3", (7, 10)),  # shrink first: (3, 4) then 3 + 2*2, 4 + 3*2
        ("height: 4 width: 11", (4, 11)),
        ("zoom_factor: 2 pad_beg: -1 pad_end: -1", (5, 9)),  # H_eff = 3, W_eff = 5
    ],
)
def test_interp_output_sizes(params, hw):
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 7))
    (y,) = run(f'name: "i" type: "Interp" bottom: "x" top: "y" interp_param {{ {params} }}', x)
    assert y.shape == (2, 3) + hw


def bilinear_oracle(a: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """Aligned-corner bilinear written from the textbook definition (float64 positions)."""
    ih, iw = a.shape
    out = np.empty((oh, ow))
    for i in range(oh):
        for j in range(ow):
            sy = i * (ih - 1) / (oh - 1) if oh > 1 else 0.0
            sx = j * (iw - 1) / (ow - 1) if ow > 1 else 0.0
            y0, x0 = min(int(np.floor(sy)), ih - 1), min(int(np.floor(sx)), iw - 1)
            y1, x1 = min(y0 + 1, ih - 1), min(x0 + 1, iw - 1)
            fy, fx = sy - y0, sx - x0
            out[i, j] = ((1 - fy) * ((1 - fx) * a[y0, x0] + fx * a[y0, x1])
                         + fy * ((1 - fx) * a[y1, x0] + fx * a[y1, x1]))
    return out


@settings(max_examples=20, deadline=None)
@given(h=st.integers(4, 7), dw=st.integers(1, 4), oh=st.integers(1, 9), ow=st.integers(1, 9),
       pb=st.integers(-1, 0), pe=st.integers(-1, 0))
def test_interp_against_oracle(h, dw, oh, ow, pb, pe):
    w = h + dw  # (2, 3, h, w): distinct sizes on every axis, room for the crop pads
    x = np.random.default_rng(h * 31 + w).normal(size=(2, 3, h, w))
    (y,) = run(f'name: "i" type: "Interp" bottom: "x" top: "y" interp_param {{ height: {oh} width: {ow} '
               f'pad_beg: {pb} pad_end: {pe} }}', x)
    for n in range(2):
        for c in range(3):
            a = x[n, c, -pb: h + pe, -pb: w + pe]
            np.testing.assert_allclose(y[n, c], bilinear_oracle(a, oh, ow), rtol=0, atol=1e-6 * np.abs(a).max())


@pytest.mark.parametrize(
    "text,nb,err,match",
    [
        ('type: "Interp" interp_param { zoom_factor: 2 pad_beg: 1 }', 1, UnsupportedParam,
         r"Interp 'l': interp_param.pad_beg=1 is not supported \(<= 0"),
        ('type: "Interp" interp_param { height: 3 }', 1, UnsupportedParam, r"interp_param=no output size"),
        ('type: "Interp" interp_param { zoom_factor: 2 }', 2, UnsupportedParam, r"bottom=2 bottoms"),
        ('type: "Upsample" upsample_param { upsample_h: 7 upsample_w: 14 }', 1, UnsupportedParam,
         r"upsample_param.upsample_h=7 is not supported \(a whole multiple of the input size 5"),
        ('type: "Upsample" upsample_param { scale: 0 }', 1, UnsupportedParam, r"upsample_param.scale=0"),
        ('type: "Upsample" upsample_param { scale: 2 }', 2, UnsupportedParam, r"SegNet"),
        ('type: "Interp" interp_param { shrink_factor: 2 pad_beg: -5 }', 1, ShapeError, r"crop away"),
    ],
)
def test_rejections(text, nb, err, match):
    x = np.zeros((2, 3, 5, 7))
    with pytest.raises(err, match=match):
        run(f'name: "l" bottom: "x" top: "y" {text}', *([x] * nb))
