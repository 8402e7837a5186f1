"""LRN against Caffe's own ReferenceLRNForward (test_lrn_layer.cpp), re-written here as plain loops, plus
hand-computed values.  Shares no code with harness.reference."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format

from harness.errors import UnsupportedParam
from harness.net import Layer
from harness.proto import caffe_pb2
from harness.reference import REFERENCE


def lrn_layer(params: str) -> Layer:
    msg = text_format.Parse(f'name: "norm" type: "LRN" bottom: "x" top: "y" lrn_param {{ {params} }}',
                            caffe_pb2.LayerParameter())
    return Layer(msg.name, msg.type, tuple(msg.bottom), tuple(msg.top), msg, ())


def reference_lrn(x, size, alpha, beta, k, region):
    """test_lrn_layer.cpp ReferenceLRNForward (which fixes k=1; here k is a parameter of ACROSS only)."""
    n, c, h, w = x.shape
    y = np.zeros_like(x)
    for a in range(n):
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    if region == "ACROSS_CHANNELS":
                        cs = ch - (size - 1) // 2
                        ce = min(cs + size, c)
                        cs = max(cs, 0)
                        scale = k
                        for q in range(cs, ce):
                            scale += x[a, q, i, j] ** 2 * alpha / size
                    else:
                        hs = i - (size - 1) // 2
                        he = min(hs + size, h)
                        hs = max(hs, 0)
                        ws = j - (size - 1) // 2
                        we = min(ws + size, w)
                        ws = max(ws, 0)
                        scale = 1.0
                        for u in range(hs, he):
                            for v in range(ws, we):
                                scale += x[a, ch, u, v] ** 2 * alpha / (size * size)
                    y[a, ch, i, j] = x[a, ch, i, j] / scale ** beta
    return y


@pytest.mark.parametrize("size,alpha,beta,k,region", [
    (5, 1.0, 0.75, 1.0, "ACROSS_CHANNELS"),   # Caffe's TestForwardAcrossChannels defaults
    (15, 1.0, 0.75, 1.0, "ACROSS_CHANNELS"),  # TestForwardAcrossChannelsLargeRegion
    (3, 0.5, 0.625, 2.0, "ACROSS_CHANNELS"),  # values exact in float32 (the proto stores floats)
    (3, 1.0, 0.75, 1.0, "WITHIN_CHANNEL"),    # TestForwardWithinChannel
    (5, 2.0, 0.5, 7.0, "WITHIN_CHANNEL"),     # k is ignored WITHIN_CHANNEL
])
def test_lrn_matches_caffe_reference(size, alpha, beta, k, region):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 7, 3, 5))
    layer = lrn_layer(f"local_size: {size} alpha: {alpha} beta: {beta} k: {k} norm_region: {region}")
    (y,) = REFERENCE["LRN"](layer, [x], dtype=np.float64)
    want = reference_lrn(x, size, alpha, beta, k if region == "ACROSS_CHANNELS" else 1.0, region)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-14)


def test_lrn_across_hand_value():
    """One pixel, 3 channels [1, 2, 3], n=3, alpha=3, beta=1, k=2: scale_c = 2 + (3/3) * sum of squares in the
    window -> c0: 2+1+4 = 7, c1: 2+1+4+9 = 16, c2: 2+4+9 = 15; y = x / scale."""
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1) * np.ones((2, 3, 4, 5))
    (y,) = REFERENCE["LRN"](lrn_layer("local_size: 3 alpha: 3 beta: 1 k: 2"), [x], dtype=np.float64)
    np.testing.assert_allclose(y[:, :, 2, 3], np.broadcast_to([1 / 7, 2 / 16, 3 / 15], (2, 3)), rtol=1e-14)


def test_lrn_within_hand_value_divisor_is_n_squared_at_borders():
    """Constant 1, n=3, alpha=9, beta=1: at a corner 4 of the 9 window cells are real -> 1 + 9*4/9 = 5 (the divisor
    stays n^2 = 9 at borders); inside 1 + 9 = 10."""
    x = np.ones((2, 3, 4, 5))
    (y,) = REFERENCE["LRN"](lrn_layer("local_size: 3 alpha: 9 beta: 1 norm_region: WITHIN_CHANNEL"), [x],
                            dtype=np.float64)
    np.testing.assert_allclose(y[:, :, 0, 0], 1 / 5, rtol=1e-14)
    np.testing.assert_allclose(y[:, :, 0, 2], 1 / 7, rtol=1e-14)  # top edge: 6 real cells
    np.testing.assert_allclose(y[:, :, 1, 2], 1 / 10, rtol=1e-14)


def test_lrn_even_size_rejected():
    with pytest.raises(UnsupportedParam, match=r"'norm'.*local_size=4"):
        REFERENCE["LRN"](lrn_layer("local_size: 4"), [np.ones((2, 3, 4, 5))], dtype=np.float64)


def test_lrn_float32_stays_float32():
    x = np.random.default_rng(12).standard_normal((2, 7, 3, 5)).astype(np.float32)
    (y,) = REFERENCE["LRN"](lrn_layer("local_size: 5 alpha: 0.0001 beta: 0.75"), [x], dtype=np.float32)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, reference_lrn(x.astype(np.float64), 5, np.float32(1e-4), 0.75, 1.0,
                                                "ACROSS_CHANNELS"), rtol=1e-5)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=15, deadline=None)
@given(st.sampled_from([1, 3, 5, 7]), st.sampled_from([0.25, 1.0, 2.5]), st.sampled_from([0.5, 0.75, 1.25]),
       st.sampled_from([0.5, 1.0, 3.0]), st.sampled_from(["ACROSS_CHANNELS", "WITHIN_CHANNEL"]),
       st.integers(0, 2**16))
def test_property_lrn_vs_caffe_reference(size, alpha, beta, k, region, seed):
    """Parameters exactly representable in float32 (the proto stores floats)."""
    x = np.random.default_rng(seed).standard_normal((2, 6, 3, 5))
    layer = lrn_layer(f"local_size: {size} alpha: {alpha} beta: {beta} k: {k} norm_region: {region}")
    (y,) = REFERENCE["LRN"](layer, [x], dtype=np.float64)
    want = reference_lrn(x, size, alpha, beta, k if region == "ACROSS_CHANNELS" else 1.0, region)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-14)
