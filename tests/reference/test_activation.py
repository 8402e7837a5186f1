"""Element-wise neuron layers: hand-computed tables, golden real-Caffe outputs, a scalar oracle, rejections."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import harness.reference.activation  # noqa: F401 - registers the layers
from harness.errors import ShapeError, UnsupportedParam
from harness.reference.registry import REFERENCE
from support import run

try:
    from ._layer_support import GoldenCase, rel_err
except ImportError:  # tests/ run as rootdir-relative modules
    from support import GoldenCase, rel_err


X = np.array([-3.0, -1.0, -0.5, 0.0, 0.25, 2.0, 7.0])

# (layer text, expected y for X), each value worked out by hand from the Caffe formula.
TABLE = [
    ('type: "ReLU"', [0, 0, 0, 0, 0.25, 2, 7]),
    ('type: "ReLU" relu_param { negative_slope: 0.5 }', [-1.5, -0.5, -0.25, 0, 0.25, 2, 7]),
    ('type: "ReLU6"', [0, 0, 0, 0, 0.25, 2, 6]),
    ('type: "ELU" elu_param { alpha: 2 }',
     [2 * (math.exp(-3) - 1), 2 * (math.exp(-1) - 1), 2 * (math.exp(-0.5) - 1), 0, 0.25, 2, 7]),
    ('type: "AbsVal"', [3, 1, 0.5, 0, 0.25, 2, 7]),
    ('type: "Threshold" threshold_param { threshold: 0.25 }', [0, 0, 0, 0, 0, 1, 1]),  # strict >: 0.25 -> 0
    ('type: "Clip" clip_param { min: -1 max: 2 }', [-1, -1, -0.5, 0, 0.25, 2, 2]),
    ('type: "Power" power_param { power: 2 scale: 0.5 shift: 1 }',
     [0.25, 0.25, 0.5625, 1, 1.265625, 4, 20.25]),
    ('type: "Power" power_param { power: 3 scale: 0 shift: 2 }', [8] * 7),  # scale 0: input ignored
    ('type: "Exp" exp_param { base: 2 scale: 1 shift: 1 }', [0.25, 1, 2 ** 0.5, 2, 2 ** 1.25, 8, 256]),
    ('type: "Exp"', [math.exp(v) for v in X]),
    ('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', list(X)),
    ('type: "Dropout" dropout_param { dropout_ratio: 0.25 scale_train: false }', list(0.75 * X)),
    ('type: "Swish" swish_param { beta: 2 }', [v / (1 + math.exp(-2 * v)) for v in X]),
]


@pytest.mark.parametrize("text,expected", TABLE, ids=[t for t, _ in TABLE])
def test_table(text, expected):
    (y,) = run(f'name: "l" bottom: "x" top: "y" {text}', X)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-7)


def test_log_table():
    # log_10(0.5 + 2x): x = 0.25 -> log10(1) = 0; x = 4.75 -> log10(10) = 1; x = 49.75 -> 2
    (y,) = run('name: "l" type: "Log" bottom: "x" top: "y" log_param { base: 10 scale: 2 shift: 0.5 }',
               [0.25, 4.75, 49.75])
    np.testing.assert_allclose(y, [0, 1, 2], atol=1e-6)


def test_bnll_is_stable_softplus():
    (y,) = run('name: "l" type: "BNLL" bottom: "x" top: "y"', [-800.0, -1.0, 0.0, 1.0, 800.0])
    np.testing.assert_allclose(y, [0, math.log1p(math.exp(-1)), math.log(2), 1 + math.log1p(math.exp(-1)), 800])


def test_sigmoid_tanh_values():
    (s,) = run('name: "l" type: "Sigmoid" bottom: "x" top: "y"', [-2.0, 0.0, 3.0])
    np.testing.assert_allclose(s, [1 / (1 + math.exp(2)), 0.5, 1 / (1 + math.exp(-3))])
    (t,) = run('name: "l" type: "TanH" bottom: "x" top: "y"', [-2.0, 0.0, 3.0])
    np.testing.assert_allclose(t, [math.tanh(-2), 0, math.tanh(3)])


def test_prelu_per_channel_on_distinct_axes():
    x = np.arange(2 * 3 * 5 * 7, dtype=np.float64).reshape(2, 3, 5, 7) - 100
    slopes = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    (y,) = run('name: "p" type: "PReLU" bottom: "x" top: "y"', x, blobs=(slopes,))
    # hand rule: y[n, c, h, w] = x if x > 0 else slope[c] * x
    assert y[0, 0, 0, 0] == pytest.approx(0.1 * -100)
    assert y[0, 2, 0, 0] == pytest.approx(np.float32(0.3) * (70 - 100))
    assert y[1, 1, 4, 6] == 105 + 35 + 4 * 7 + 6 - 100  # flat index 174 - 100 = 74 > 0: unchanged
    assert y[1, 0, 0, 0] == 5  # 105 - 100 > 0: the slope does not apply


def test_prelu_channel_shared_and_bad_blob():
    x = -np.ones((2, 3, 5, 7))
    (y,) = run('name: "p" type: "PReLU" bottom: "x" top: "y" prelu_param { channel_shared: true }', x,
               blobs=(np.array([0.25], np.float32),))
    assert np.all(y == -0.25)
    with pytest.raises(ShapeError, match="'p'.*slope blob has 3 values, expected 1"):
        run('name: "p" type: "PReLU" bottom: "x" top: "y" prelu_param { channel_shared: true }', x,
            blobs=(np.ones(3, np.float32),))


@settings(max_examples=20, deadline=None)
@given(
    kind=st.sampled_from(["ReLU", "ELU", "Power", "Exp", "Swish", "Clip", "BNLL", "Threshold", "Log"]),
    a=st.floats(0.1, 2.0), b=st.floats(-1.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_against_scalar_oracle(kind, a, b, seed):
    """Each layer against a per-element Python ``math`` evaluation of the Caffe formula (N=2, C=3, H=4, W=5)."""
    a32, b32 = float(np.float32(a)), float(np.float32(b))
    x = np.random.default_rng(seed).normal(size=(2, 3, 4, 5)) * 2
    texts = {
        "ReLU": (f"relu_param {{ negative_slope: {a} }}", lambda v: max(v, 0) + a32 * min(v, 0)),
        "ELU": (f"elu_param {{ alpha: {a} }}", lambda v: max(v, 0) + a32 * (math.exp(min(v, 0)) - 1)),
        "Power": (f"power_param {{ power: 2 scale: {a} shift: {b} }}", lambda v: (b32 + a32 * v) ** 2),
        "Exp": (f"exp_param {{ base: 3 scale: {a} shift: {b} }}", lambda v: 3.0 ** (b32 + a32 * v)),
        "Swish": (f"swish_param {{ beta: {a} }}", lambda v: v / (1 + math.exp(-a32 * v))),
        "Clip": (f"clip_param {{ min: {b - 1} max: {a} }}",
                 lambda v: max(float(np.float32(b - 1)), min(v, a32))),
        "BNLL": ("", lambda v: math.log(1 + math.exp(v))),
        "Threshold": (f"threshold_param {{ threshold: {b} }}", lambda v: 1.0 if v > b32 else 0.0),
        "Log": (f"log_param {{ base: 2 scale: {a} shift: 20 }}", lambda v: math.log2(20 + a32 * v)),
    }
    params, f = texts[kind]
    (y,) = run(f'name: "l" type: "{kind}" bottom: "x" top: "y" {params}', x)
    want = np.vectorize(f)(x)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)


def test_float32_dtype_is_kept():
    (y,) = run('name: "l" type: "ELU" bottom: "x" top: "y"', np.ones((2, 3)), dtype=np.float32)
    assert y.dtype == np.float32


@pytest.mark.parametrize(
    "text,err,match",
    [
        ('type: "Exp" exp_param { base: -2 }', UnsupportedParam, r"Exp 'l': exp_param.base=-2.0 is not supported"),
        ('type: "Log" log_param { base: 0 }', UnsupportedParam, r"Log 'l': log_param.base=0.0"),
        ('type: "Dropout" dropout_param { dropout_ratio: 1.5 }', UnsupportedParam, r"dropout_ratio=1.5"),
    ],
)
def test_rejections(text, err, match):
    with pytest.raises(err, match=match):
        run(f'name: "l" bottom: "x" top: "y" {text}', X)


def test_golden_activations():
    g = GoldenCase("activations")
    names = g.layer_names({"ReLU", "ReLU6", "PReLU", "ELU", "Sigmoid", "TanH", "AbsVal", "BNLL", "Power", "Exp",
                           "Log", "Threshold", "Dropout"})
    assert len(names) == 17
    for name in names:
        lay = g.layer(name)
        (y,) = REFERENCE[lay.type](lay, g.bottoms(name), dtype=np.float64)
        (want,) = g.expected(name)
        assert rel_err(y, want) <= 1e-5, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_slope0_non_finite_values_follow_caffes_formula(dtype):
    """``max(x, 0) + 0 * min(x, 0)``: NaN stays NaN, ``-inf`` gives ``0 + 0 * -inf`` = NaN, ``+inf`` stays, and a
    negative finite value gives ``0 + -0`` = +0 (not -0) -- the fast slope-0 path must keep all of these."""
    x = np.array([[np.nan, -np.inf, np.inf, -2.0, 0.0, 3.0, -1e-30]], dtype=dtype)
    with np.errstate(invalid="ignore"):
        (y,) = run('type: "ReLU"', x, dtype=dtype)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, np.array([[np.nan, np.nan, np.inf, 0.0, 0.0, 3.0, 0.0]], dtype=dtype))
    assert not np.signbit(y[0, [3, 4, 6]]).any(), y
    assert not np.shares_memory(y, x)
