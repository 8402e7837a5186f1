"""BatchNorm, MVN and Normalize: hand-computed values and naive loops written from the Caffe sources' formulas."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import ShapeError, UnsupportedParam
from harness.reference import REFERENCE
from support import make_layer


def bn(params="", blobs=()):
    return make_layer(f'name: "bn" type: "BatchNorm" bottom: "x" top: "x" batch_norm_param {{ {params} }}', blobs)


X = np.random.default_rng(21).standard_normal((2, 3, 4, 5)) * 3 + 1


def test_batchnorm_factor_blob_divides_mean_and_variance():
    mean, var, fac = np.array([1.0, -2.0, 4.0]), np.array([4.0, 9.0, 16.0]), np.array([2.0])
    (y,) = REFERENCE["BatchNorm"](bn("eps: 0.5", (mean, var, fac)), [X], dtype=np.float64)
    for c in range(3):
        m, v = mean[c] / 2, var[c] / 2
        np.testing.assert_allclose(y[:, c], (X[:, c] - m) / np.sqrt(v + 0.5), rtol=1e-14)


def test_batchnorm_zero_factor_zeroes_the_statistics():
    """f = 0 when blob[2] == 0 (NVCaffe old format): mean = var = 0, y = x / sqrt(eps)."""
    (y,) = REFERENCE["BatchNorm"](bn("eps: 0.25", ([5.0, 6.0, 7.0], [2.0, 3.0, 4.0], [0.0])), [X], dtype=np.float64)
    np.testing.assert_allclose(y, X / 0.5, rtol=1e-14)


def test_batchnorm_default_eps_is_1e_5():
    (y,) = REFERENCE["BatchNorm"](bn("", ([0.0] * 3, [1.0] * 3, [1.0])), [X], dtype=np.float64)
    np.testing.assert_allclose(y, X / np.sqrt(1 + float(np.float32(1e-5))), rtol=1e-14)


def test_batchnorm_use_global_stats_false_uses_batch_statistics():
    """Caffe with use_global_stats: false (even at TEST): per-channel mean and biased variance over N, H, W."""
    (y,) = REFERENCE["BatchNorm"](bn("use_global_stats: false eps: 0.001", ([9.0] * 3, [9.0] * 3, [1.0])), [X],
                                  dtype=np.float64)
    for c in range(3):
        vals = X[:, c].ravel()
        mu = sum(vals) / len(vals)
        var = sum((v - mu) ** 2 for v in vals) / len(vals)
        np.testing.assert_allclose(y[:, c], (X[:, c] - mu) / np.sqrt(var + float(np.float32(0.001))), rtol=1e-12)


def test_batchnorm_2d_input_and_bad_blobs():
    x2 = X.reshape(2, 3, 20)[:, :, 0]
    (y,) = REFERENCE["BatchNorm"](bn("", ([1.0, 2.0, 3.0], [1.0] * 3, [1.0])), [x2], dtype=np.float64)
    np.testing.assert_allclose(y, (x2 - [1, 2, 3]) / np.sqrt(1 + float(np.float32(1e-5))), rtol=1e-14)
    with pytest.raises(ShapeError, match=r"'bn'.*variance.*\(3,\)"):
        REFERENCE["BatchNorm"](bn("", ([1.0] * 3, [1.0] * 4, [1.0])), [X], dtype=np.float64)
    with pytest.raises(UnsupportedParam, match=r"'bn'.*scale_bias=true"):
        REFERENCE["BatchNorm"](bn("scale_bias: true", ([0.0] * 3, [1.0] * 3, [1.0], [1.0] * 3, [0.0] * 3)), [X],
                               dtype=np.float64)


def naive_mvn(x, normalize_variance, across_channels, eps):
    n, c = x.shape[:2]
    y = np.empty_like(x)
    groups = [(a, None) for a in range(n)] if across_channels else [(a, b) for a in range(n) for b in range(c)]
    for a, b in groups:
        sl = (a,) if b is None else (a, b)
        vals = list(x[sl].ravel())
        mu = sum(vals) / len(vals)
        out = x[sl] - mu
        if normalize_variance:
            std = (sum((v - mu) ** 2 for v in vals) / len(vals)) ** 0.5
            out = out / (std + eps)
        y[sl] = out
    return y


@pytest.mark.parametrize("nv,ac", [(True, False), (True, True), (False, False), (False, True)])
def test_mvn_matches_naive(nv, ac):
    layer = make_layer('name: "mvn" type: "MVN" bottom: "x" top: "y" mvn_param { normalize_variance: %s '
                       'across_channels: %s eps: 0.5 }' % (str(nv).lower(), str(ac).lower()))
    (y,) = REFERENCE["MVN"](layer, [X], dtype=np.float64)
    np.testing.assert_allclose(y, naive_mvn(X, nv, ac, 0.5), rtol=1e-12, atol=1e-14)


def test_mvn_eps_is_added_to_the_standard_deviation():
    """Values [0, 2] (mean 1, std 1) with eps 1: Caffe gives (x-1)/(1+1) = -0.5, 0.5 (not /sqrt(1+1))."""
    x = np.zeros((4, 3, 1, 2))
    x[..., 1] = 2.0
    layer = make_layer('name: "mvn" type: "MVN" bottom: "x" top: "y" mvn_param { eps: 1 }')
    (y,) = REFERENCE["MVN"](layer, [x], dtype=np.float64)
    np.testing.assert_allclose(y[..., 0], -0.5)
    np.testing.assert_allclose(y[..., 1], 0.5)


def naive_normalize(x, scale, across_spatial, channel_shared, eps):
    n, c, h, w = x.shape
    y = np.empty_like(x)
    for a in range(n):
        if across_spatial:
            norm = (sum(v * v for v in x[a].ravel()) + eps) ** 0.5
            y[a] = x[a] / norm
        else:
            for i in range(h):
                for j in range(w):
                    norm = (eps + sum(x[a, q, i, j] ** 2 for q in range(c))) ** 0.5
                    y[a, :, i, j] = x[a, :, i, j] / norm
        for q in range(c):
            y[a, q] *= scale[0] if channel_shared else scale[q]
    return y


@pytest.mark.parametrize("across,shared", [(True, True), (False, False), (True, False), (False, True)])
def test_normalize_matches_naive(across, shared):
    scale = np.array([20.0]) if shared else np.array([2.0, 3.0, 5.0])
    layer = make_layer('name: "n" type: "Normalize" bottom: "x" top: "y" norm_param { across_spatial: %s '
                       'channel_shared: %s eps: 0.25 }' % (str(across).lower(), str(shared).lower()), (scale,))
    (y,) = REFERENCE["Normalize"](layer, [X], dtype=np.float64)
    np.testing.assert_allclose(y, naive_normalize(X, scale, across, shared, 0.25), rtol=1e-12)


def test_normalize_hand_value_and_blob_check():
    """One pixel (3, 4) over 2 channels, per-pixel norm sqrt(9+16+0) = 5, scale 10 -> (6, 8)."""
    x = np.zeros((4, 2, 3, 5))
    x[:, 0], x[:, 1] = 3.0, 4.0
    layer = make_layer('name: "n" type: "Normalize" bottom: "x" top: "y" norm_param { across_spatial: false '
                       'eps: 0 }', ([10.0],))
    (y,) = REFERENCE["Normalize"](layer, [x], dtype=np.float64)
    np.testing.assert_allclose(y[:, 0], 6.0)
    np.testing.assert_allclose(y[:, 1], 8.0)
    bad = make_layer('name: "n" type: "Normalize" bottom: "x" top: "y" norm_param { channel_shared: false }',
                     ([1.0],))
    with pytest.raises(ShapeError, match=r"'n'.*\(2,\)"):
        REFERENCE["Normalize"](bad, [x], dtype=np.float64)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=15, deadline=None)
@given(st.booleans(), st.booleans(), st.sampled_from([1e-9, 0.5]), st.integers(0, 2**16))
def test_property_mvn_vs_naive(nv, ac, eps, seed):
    x = np.random.default_rng(seed).standard_normal((2, 3, 4, 5)) * 2 - 1
    layer = make_layer('name: "mvn" type: "MVN" bottom: "x" top: "y" mvn_param { normalize_variance: %s '
                       'across_channels: %s eps: %r }' % (str(nv).lower(), str(ac).lower(), eps))
    (y,) = REFERENCE["MVN"](layer, [x], dtype=np.float64)
    np.testing.assert_allclose(y, naive_mvn(x, nv, ac, float(np.float32(eps))), rtol=1e-11, atol=1e-13)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from([0.0, 0.5, 3.0]), st.sampled_from([1e-5, 0.125]), st.booleans(), st.integers(0, 2**16))
def test_property_batchnorm_vs_formula(factor, eps, global_stats, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 4, 5))
    mean, var = rng.standard_normal(3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32)
    layer = bn(f"eps: {eps} use_global_stats: {str(global_stats).lower()}", (mean, var, [factor]))
    (y,) = REFERENCE["BatchNorm"](layer, [x], dtype=np.float64)
    e = float(np.float32(eps))
    for c in range(3):
        if global_stats:
            f = 0.0 if factor == 0 else 1.0 / factor
            mu, v = f * float(mean[c]), f * float(var[c])
        else:
            vals = x[:, c].ravel()
            mu = float(np.sum(vals)) / vals.size
            v = float(np.sum((vals - mu) ** 2)) / vals.size
        np.testing.assert_allclose(y[:, c], (x[:, c] - mu) / np.sqrt(v + e), rtol=1e-11, atol=1e-13)


@settings(max_examples=15, deadline=None)
@given(st.booleans(), st.booleans(), st.sampled_from([1e-10, 0.25]), st.integers(0, 2**16))
def test_property_normalize_vs_naive(across, shared, eps, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 4, 5))
    scale = rng.uniform(0.5, 20, 1 if shared else 3).astype(np.float32)
    layer = make_layer('name: "n" type: "Normalize" bottom: "x" top: "y" norm_param { across_spatial: %s '
                       'channel_shared: %s eps: %r }' % (str(across).lower(), str(shared).lower(), eps), (scale,))
    (y,) = REFERENCE["Normalize"](layer, [x], dtype=np.float64)
    want = naive_normalize(x, scale.astype(np.float64), across, shared, float(np.float32(eps)))
    np.testing.assert_allclose(y, want, rtol=1e-11)
