"""Unit tests of the diagnosis engine with NumPy-only oracles (no Keras): the "Keras output" of each case is built by
applying one classic porting bug by hand, and diagnose()/diagnose_shape() must name it first.

Every tensor has distinct sizes on every axis (N=2, C=3, H=11, W=9 ...), so transposed axes cannot hide.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from harness.caffe import load_net_text
from harness.compare import diagnose as D
from harness.compare.diagnose import _common, precision
from harness.compare.diagnose import CAUSES, Cause, diagnose, diagnose_shape
from harness.reference import REFERENCE


def _net(layers: str, shape=(2, 3, 11, 9), weights=None):
    dims = " ".join(f"dim: {d}" for d in shape)
    return load_net_text(f'name: "t"\ninput: "data"\ninput_shape {{ {dims} }}\n{layers}', weights=weights)


def _ref(layer, xs):
    return REFERENCE[layer.kind](layer, [np.asarray(x, np.float64) for x in xs], dtype=np.float64)[0]


def _with(layer, *blobs):
    return dataclasses.replace(layer, blobs=tuple(np.asarray(b, np.float64) for b in blobs))


def _top(causes):
    assert causes, "no cause"
    assert all(isinstance(c, Cause) and c.cause in CAUSES for c in causes)
    assert all(0.0 <= c.confidence <= 1.0 for c in causes)
    assert [c.confidence for c in causes] == sorted((c.confidence for c in causes), reverse=True)
    return causes[0]


RNG = np.random.default_rng(42)
X = RNG.standard_normal((2, 3, 11, 9))


@pytest.fixture(scope="module")
def conv():
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(4).astype(np.float32)
    net = _net('layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
               'convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 } }', weights={"conv1": [w, b]})
    return net.layer("conv1")


def test_every_code_is_documented():
    doc = D.__doc__
    for code in CAUSES:
        assert f"``{code}``" in doc, code
    required = {"kernel_reshaped", "kernel_flipped", "kernel_axes_swapped", "channel_order", "input_layout",
                "same_padding", "padding_offset", "pool_rounding", "pool_pad_value", "pool_avg_divisor",
                "flatten_order", "dense_reshaped", "dense_not_transposed", "bn_scale_factor", "bn_epsilon",
                "lrn_alpha_scaling", "lrn_k", "relu_slope", "missing_bias", "reduced_precision", "unknown"}
    assert required <= set(CAUSES)


@pytest.mark.parametrize("bug,expect", [
    (lambda w: w.reshape(3, 3, 3, 4).transpose(3, 2, 0, 1), "kernel_reshaped"),
    (lambda w: w[:, :, ::-1, ::-1], "kernel_flipped"),
    (lambda w: w.transpose(0, 1, 3, 2), "kernel_axes_swapped"),
    (lambda w: w[:, ::-1], "channel_order"),
])
def test_conv_weight_bugs(conv, bug, expect):
    w, b = (np.asarray(a, np.float64) for a in conv.blobs)
    ref = _ref(conv, [X])
    ker = _ref(_with(conv, bug(w), b), [X])
    top = _top(diagnose(conv, None, [X], ref, ker))
    assert top.cause == expect
    assert top.confidence > 0.99
    assert "reproduces the Keras output" in top.explanation


def test_conv_kernel_reshaped_weight_evidence(conv):
    """With the Keras layer at hand, an exact weight match is stated."""
    w, b = (np.asarray(a, np.float64) for a in conv.blobs)

    class Conv2D:  # duck-typed stand-in for keras.layers.Conv2D
        def get_weights(self):
            return [w.reshape(3, 3, 3, 4).astype(np.float32), b.astype(np.float32)]

    ker = _ref(_with(conv, w.reshape(3, 3, 3, 4).transpose(3, 2, 0, 1), b), [X])
    top = _top(diagnose(conv, Conv2D(), [X], _ref(conv, [X]), ker))
    assert top.cause == "kernel_reshaped" and "match this transformation exactly" in top.explanation
    assert top.fix == "use w.transpose(2, 3, 1, 0) to turn Caffe OIHW into Keras HWIO, not reshape"


def test_conv_missing_bias(conv):
    w, b = conv.blobs
    ker = _ref(_with(conv, w, np.zeros(4)), [X])
    top = _top(diagnose(conv, None, [X], _ref(conv, [X]), ker))
    assert top.cause == "missing_bias" and top.confidence > 0.99


def _conv_nopad(conv, x, pads):
    (pt, pb), (pl, pr) = pads
    lay = _common._with_param(conv, _common._clear_conv_pad)
    return _ref(lay, [np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))])


def test_conv_same_padding_and_offset(conv):
    # TF 'same' on odd sizes (11, 9; k3 s2) pads (1, 1) like Caffe; on even sizes (12, 10) it pads (0, 1).
    x = RNG.standard_normal((2, 3, 12, 10))
    ref = _ref(conv, [x])
    same = _conv_nopad(conv, x, ((0, 1), (0, 1)))
    assert same.shape == ref.shape
    top = _top(diagnose(conv, None, [x], ref, same))
    assert top.cause == "same_padding" and top.confidence > 0.99
    assert "ZeroPadding2D((1, 1))" in top.fix
    off = _conv_nopad(conv, x, ((2, 0), (1, 1)))
    top = _top(diagnose(conv, None, [x], ref, off))
    assert top.cause == "padding_offset" and top.confidence > 0.99
    assert "(2, 0)" in top.explanation


def test_input_layout_and_keras_fn(conv):
    ref = _ref(conv, [X])
    n, c, h, w = X.shape
    as_nhwc = X.reshape(n, h, w, c).transpose(0, 3, 1, 2)
    ker = _ref(conv, [as_nhwc])
    top = _top(diagnose(conv, None, [X], ref, ker))
    assert top.cause == "input_layout" and top.confidence > 0.99
    # keras_fn route: a Keras side that reverses channels itself is recognised by undoing it.
    calls = []

    def keras_fn(xs):
        calls.append(xs[0].shape)
        return _ref(conv, [xs[0][:, ::-1]]) + 1e-3 * np.sin(np.arange(ref.size)).reshape(ref.shape)

    ker = keras_fn([X])
    causes = diagnose(conv, None, [X], ref, ker, keras_fn=keras_fn)
    assert calls and _top(causes).cause == "channel_order"


def test_reduced_precision_formats(conv):
    ref = _ref(conv, [X])
    w, b = conv.blobs
    bf = precision._FORMATS["bfloat16"][0]
    ker = bf(_ref(_with(conv, bf(w), bf(b)), [bf(X)]))
    top = _top(diagnose(conv, None, [X], ref, ker))
    assert top.cause == "reduced_precision" and "bfloat16" in top.explanation and top.confidence > 0.5
    tf32 = precision._FORMATS["TF32"][0]
    ker = _ref(_with(conv, tf32(w), b), [tf32(X)])
    top = _top(diagnose(conv, None, [X], ref, ker))
    assert top.cause == "reduced_precision" and "TF32" in top.explanation
    assert "enable_tensor_float_32_execution(False)" in top.fix


def test_structured_small_error_is_not_reduced_precision(conv):
    """An error of fp16 size sitting in one channel is a structured bug, not rounding."""
    ref = _ref(conv, [X])
    ker = ref.copy()
    ker[:, 2] *= 1 + 5e-4
    causes = diagnose(conv, None, [X], ref, ker)
    top = _top(causes)
    assert top.cause == "unknown"
    assert "channel 2 only" in top.explanation


def test_round_bits_is_round_to_nearest_even():
    x = np.array([1.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, -2.5, 0.0, np.inf], np.float32)
    got = precision._round_bits(x, 16)  # bfloat16: 7 mantissa bits
    assert got.tolist() == [1.0, 1.0, 1.0 + 2 ** -6, -2.5, 0.0, np.inf]
    assert precision._round_bits(np.array([1 + 2 ** -11], np.float32), 13).tolist() == [1.0]  # TF32 tie -> even
    assert precision._round_bits(np.array([1 + 3 * 2 ** -11], np.float32), 13).tolist() == [1 + 2 ** -9]


@pytest.fixture(scope="module")
def pools():
    net = _net('layer { name: "pmax" type: "Pooling" bottom: "data" top: "pmax" '
               'pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }\n'
               'layer { name: "pave" type: "Pooling" bottom: "data" top: "pave" '
               'pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }\n'
               'layer { name: "pceil" type: "Pooling" bottom: "data" top: "pceil" '
               'pooling_param { pool: MAX kernel_size: 3 stride: 2 } }', shape=(2, 3, 10, 8))
    return net


def test_pool_pad_value(pools):
    lay = pools.layer("pmax")
    x = RNG.standard_normal((2, 3, 10, 8)) - 1.5  # mostly negative: zero padding wins at the borders
    ref = _ref(lay, [x])
    assert ref.shape == (2, 3, 6, 5)  # ceil: the last window overhangs by one row and column
    xp = np.pad(x, ((0, 0), (0, 0), (1, 2), (1, 2)))
    ker = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))[:, :, ::2, ::2].max(axis=(-2, -1))
    ker = ker[:, :, :ref.shape[2], :ref.shape[3]]
    top = _top(diagnose(lay, None, [x], ref, ker))
    assert top.cause == "pool_pad_value" and top.confidence > 0.99


def test_pool_avg_divisor(pools):
    lay = pools.layer("pave")
    x = RNG.standard_normal((2, 3, 10, 8))
    ref = _ref(lay, [x])
    xp = np.pad(x, ((0, 0), (0, 0), (1, 2), (1, 2)))
    m = np.pad(np.ones((10, 8)), ((1, 2), (1, 2)))
    s = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))[:, :, ::2, ::2].sum(axis=(-2, -1))
    cnt = np.lib.stride_tricks.sliding_window_view(m, (3, 3))[::2, ::2].sum(axis=(-2, -1))
    ker = (s / cnt)[:, :, :ref.shape[2], :ref.shape[3]]
    causes = diagnose(lay, None, [x], ref, ker)
    top = _top(causes)
    assert top.cause == "pool_avg_divisor" and top.confidence > 0.99
    assert "excluded" in top.explanation or "real (non-padding)" in top.explanation


def test_pool_rounding_from_shapes(pools):
    lay = pools.layer("pceil")
    x = RNG.standard_normal((2, 3, 10, 8))
    ref = _ref(lay, [x])
    assert ref.shape == (2, 3, 5, 4)  # ceil((10-3)/2)+1, ceil((8-3)/2)+1
    causes = diagnose_shape(lay, [x], ref.shape, (2, 3, 4, 3))
    assert _top(causes).cause == "pool_rounding"
    # diagnose() itself routes a shape mismatch here
    ker = np.zeros((2, 3, 4, 3))
    assert _top(diagnose(lay, None, [x], ref, ker)).cause == "pool_rounding"


def test_conv_shapes(conv):
    x = np.zeros((2, 3, 11, 9))
    ref_shape = (2, 4, 6, 5)  # (11+2-3)//2+1, (9+2-3)//2+1
    valid = (2, 4, 5, 4)  # pad dropped
    top = _top(diagnose_shape(conv, [x], ref_shape, valid))
    assert top.cause == "padding_offset" and "unpadded" in top.explanation
    x = np.zeros((2, 3, 13, 9))  # k5 s1 pad 1: Caffe gives 11 x 7, TF 'same' keeps 13 x 9
    net = _net('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
               'convolution_param { num_output: 4 kernel_size: 5 stride: 1 pad: 1 } }', shape=(2, 3, 13, 9),
               weights={"c": [np.ones((4, 3, 5, 5), np.float32), np.zeros(4, np.float32)]})
    top = _top(diagnose_shape(net.layer("c"), [x], (2, 4, 11, 7), (2, 4, 13, 9)))
    assert top.cause == "same_padding"


def test_shape_permutation_is_layout(conv):
    top = _top(diagnose_shape(conv, [X], (2, 4, 6, 5), (2, 6, 5, 4)))
    assert top.cause == "input_layout" and "(0, 2, 3, 1)" in top.fix


def test_shape_unknown(conv):
    top = _top(diagnose_shape(conv, [X], (2, 4, 6, 5), (2, 4, 17, 2)))
    assert top.cause == "unknown"


@pytest.fixture(scope="module")
def fc():
    w = (RNG.standard_normal((7, 3 * 5 * 4)) / 8).astype(np.float32)
    b = RNG.standard_normal(7).astype(np.float32)
    net = _net('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
               'inner_product_param { num_output: 7 } }', shape=(2, 3, 5, 4), weights={"fc": [w, b]})
    return net.layer("fc")


def test_inner_product_bugs(fc):
    x = RNG.standard_normal((2, 3, 5, 4))
    w, b = (np.asarray(a, np.float64) for a in fc.blobs)
    ref = _ref(fc, [x])
    hwc = x.transpose(0, 2, 3, 1).reshape(2, -1)
    ker = hwc @ w.T + b  # Flatten on NHWC, kernel rows in C,H,W order
    assert _top(diagnose(fc, None, [x], ref, ker)).cause == "flatten_order"
    ker = x.reshape(2, -1) @ w.reshape(60, 7) + b
    assert _top(diagnose(fc, None, [x], ref, ker)).cause == "dense_reshaped"
    ker = x.reshape(2, -1) @ w.T
    assert _top(diagnose(fc, None, [x], ref, ker)).cause == "missing_bias"


def test_dense_not_transposed_square():
    w = RNG.standard_normal((6, 6)).astype(np.float32)
    b = RNG.standard_normal(6).astype(np.float32)
    net = _net('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
               'inner_product_param { num_output: 6 } }', shape=(2, 6), weights={"fc": [w, b]})
    lay = net.layer("fc")
    x = RNG.standard_normal((2, 6))
    ker = x @ w.astype(np.float64) + b
    top = _top(diagnose(lay, None, [x], _ref(lay, [x]), ker))
    assert top.cause == "dense_not_transposed" and "W.T" in top.fix


def test_batchnorm_bugs():
    c = 4
    mean = RNG.standard_normal(c) * 3
    var = RNG.uniform(0.01, 0.05, c) * 3
    net = _net('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" }', shape=(2, c, 5, 3),
               weights={"bn": [mean.astype(np.float32), var.astype(np.float32), np.array([3.0], np.float32)]})
    lay = net.layer("bn")
    x = RNG.standard_normal((2, c, 5, 3))
    ref = _ref(lay, [x])
    m, v = mean / 3, var / 3
    ker = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
    assert _top(diagnose(lay, None, [x], ref, ker)).cause == "bn_scale_factor"
    ker = (x - m[None, :, None, None]) / np.sqrt(v[None, :, None, None] + 1e-3)
    top = _top(diagnose(lay, None, [x], ref, ker))
    assert top.cause == "bn_epsilon" and "epsilon=1e-05" in top.fix

    class BatchNormalization:
        epsilon = 0.01

    ker = (x - m[None, :, None, None]) / np.sqrt(v[None, :, None, None] + 0.01)
    top = _top(diagnose(lay, BatchNormalization(), [x], ref, ker))
    assert top.cause == "bn_epsilon" and "epsilon=0.01" in top.explanation


def test_lrn_bugs():
    net = _net('layer { name: "n" type: "LRN" bottom: "data" top: "n" '
               'lrn_param { local_size: 5 alpha: 0.5 beta: 0.75 k: 2 } }', shape=(2, 7, 4, 3))
    lay = net.layer("n")
    x = RNG.standard_normal((2, 7, 4, 3)) * 2
    ref = _ref(lay, [x])

    def lrn(alpha_per_elem, k, radius):
        sq = np.pad(x ** 2, ((0, 0), (radius, radius), (0, 0), (0, 0)))
        acc = sum(sq[:, i:i + 7] for i in range(2 * radius + 1))
        return x * (k + alpha_per_elem * acc) ** -0.75

    assert np.allclose(lrn(0.5 / 5, 2.0, 2), ref)
    assert _top(diagnose(lay, None, [x], ref, lrn(0.5, 2.0, 2))).cause == "lrn_alpha_scaling"
    assert _top(diagnose(lay, None, [x], ref, lrn(0.5 / 5, 1.0, 2))).cause == "lrn_k"
    assert _top(diagnose(lay, None, [x], ref, lrn(0.5 / 5, 2.0, 5))).cause == "lrn_size"


def test_relu_slope_measured():
    net = _net('layer { name: "r" type: "ReLU" bottom: "data" top: "r" relu_param { negative_slope: 0.1 } }',
               shape=(2, 3, 4, 5))
    lay = net.layer("r")
    x = RNG.standard_normal((2, 3, 4, 5))
    ref = _ref(lay, [x])
    top = _top(diagnose(lay, None, [x], ref, np.maximum(x, 0)))
    assert top.cause == "relu_slope" and "LeakyReLU(negative_slope=0.1)" in top.fix
    top = _top(diagnose(lay, None, [x], ref, np.where(x > 0, x, 0.2 * x)))
    assert top.cause == "relu_slope" and "0.2" in top.explanation


def test_chain_conv_relu_fused(conv):
    """Keras Conv2D(activation='relu') = Caffe conv + in-place ReLU: hypotheses on conv, ReLU run after."""
    net = _net('layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
               'convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 } }\n'
               'layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }',
               weights={"conv1": [np.asarray(b) for b in conv.blobs]})
    c, r = net.layer("conv1"), net.layer("relu1")
    w, b = (np.asarray(a, np.float64) for a in c.blobs)
    ref = _ref(r, [_ref(c, [X])])
    ker = _ref(r, [_ref(_with(c, w[:, :, ::-1, ::-1], b), [X])])
    top = _top(diagnose(c, None, [X], ref, ker, context={"chain": [r]}))
    assert top.cause == "kernel_flipped" and top.confidence > 0.99


def test_deconvolution_layout_and_flip():
    w = RNG.standard_normal((3, 3, 4, 4)).astype(np.float32)  # (C_in=3, C_out=3, kh, kw)
    net = _net('layer { name: "d" type: "Deconvolution" bottom: "data" top: "d" '
               'convolution_param { num_output: 3 kernel_size: 4 stride: 2 pad: 1 bias_term: false } }',
               shape=(2, 3, 5, 4), weights={"d": [w]})
    lay = net.layer("d")
    x = RNG.standard_normal((2, 3, 5, 4))
    ref = _ref(lay, [x])
    ker = _ref(_with(lay, w.transpose(1, 0, 2, 3)), [x])
    assert _top(diagnose(lay, None, [x], ref, ker)).cause == "deconv_kernel_layout"
    ker = _ref(_with(lay, w[:, :, ::-1, ::-1]), [x])
    assert _top(diagnose(lay, None, [x], ref, ker)).cause == "kernel_flipped"


def test_unknown_with_cues(conv):
    ref = _ref(conv, [X])
    ker = ref.copy()
    ker[:, :, 0, :] += 0.7  # first row only: a border
    top = _top(diagnose(conv, None, [X], ref, ker))
    assert top.cause == "unknown" and "border" in top.explanation
    top = _top(diagnose(conv, None, [X], ref, ref * 1.7))
    assert top.cause == "unknown" and "1.7 x Caffe" in top.explanation and "scale" in top.fix


def test_nan_and_identical(conv):
    ref = _ref(conv, [X])
    ker = ref.copy()
    ker[0, 0, 0, 0] = np.nan
    top = _top(diagnose(conv, None, [X], ref, ker))
    assert top.cause == "unknown" and "NaN" in top.explanation
    assert diagnose(conv, None, [X], ref, ref.copy()) == []
    assert _top(diagnose(conv, None, [X], ref, None)).cause == "unknown"


def test_cause_to_dict_round_trip():
    c = Cause("kernel_flipped", 0.75, "why", "how")
    assert c.to_dict() == {"cause": "kernel_flipped", "confidence": 0.75, "explanation": "why", "fix": "how"}
    assert re.fullmatch(r"[a-z_]+", c.cause)


def test_depthwise_kernel_reshaped():
    c, m = 3, 2
    w = RNG.standard_normal((c * m, 1, 3, 3)).astype(np.float32)
    net = _net('layer { name: "dw" type: "ConvolutionDepthwise" bottom: "data" top: "dw" '
               'convolution_param { num_output: 6 kernel_size: 3 pad: 1 group: 3 bias_term: false } }',
               weights={"dw": [w]})
    lay = net.layer("dw")
    ref = _ref(lay, [X])
    k_bug = w.reshape(3, 3, c, m)  # what Keras got; Keras computes out[c*m + j] with k_bug[:, :, c, j]
    w_equiv = k_bug.transpose(2, 3, 0, 1).reshape(c * m, 1, 3, 3)
    ker = _ref(_with(lay, w_equiv), [X])
    top = _top(diagnose(lay, None, [X], ref, ker))
    assert top.cause == "kernel_reshaped" and "transpose(2, 3, 0, 1)" in top.fix


def test_group_order():
    w = RNG.standard_normal((4, 2, 3, 3)).astype(np.float32)  # group 2: 4 inputs -> 4 outputs, 2 per group
    x = RNG.standard_normal((2, 4, 7, 5))
    net = _net('layer { name: "g" type: "Convolution" bottom: "data" top: "g" '
               'convolution_param { num_output: 4 kernel_size: 3 group: 2 bias_term: false } }', shape=(2, 4, 7, 5),
               weights={"g": [w]})
    lay = net.layer("g")
    ref = _ref(lay, [x])
    ker = np.concatenate([ref[:, 2:], ref[:, :2]], axis=1)
    top = _top(diagnose(lay, None, [x], ref, ker))
    assert top.cause == "group_order" and "output channel groups" in top.explanation
    ker = _ref(lay, [np.concatenate([x[:, 2:], x[:, :2]], axis=1)])
    top = _top(diagnose(lay, None, [x], ref, ker))
    assert top.cause == "group_order" and "input channel groups" in top.explanation


@pytest.mark.parametrize("proto,shape,bottoms", [
    ('layer { name: "e" type: "Eltwise" bottom: "data" bottom: "data" top: "e" eltwise_param { operation: PROD } }',
     (2, 3, 4, 5), 2),
    ('layer { name: "s" type: "Softmax" bottom: "data" top: "s" }', (2, 6), 1),
    ('layer { name: "c" type: "Concat" bottom: "data" bottom: "data" top: "c" }', (2, 3, 4, 5), 2),
    ('layer { name: "t" type: "TanH" bottom: "data" top: "t" }', (2, 3, 4, 5), 1),
    ('layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: MAX global_pooling: true } }',
     (2, 3, 4, 5), 1),
])
@pytest.mark.parametrize("damage", ["noise", "scale", "shape", "zeros"])
def test_never_raises_on_other_layers(proto, shape, bottoms, damage):
    """Layers without specific hypotheses still get a ranked answer (and never an exception)."""
    lay = _net(proto, shape=shape).layers[-1]
    x = RNG.standard_normal(shape)
    xs = [x] * bottoms
    ref = REFERENCE[lay.kind](lay, xs, dtype=np.float64)[0]
    ker = {"noise": lambda: ref + RNG.standard_normal(ref.shape) * 0.3,
           "scale": lambda: ref * 0.5,
           "shape": lambda: np.zeros(ref.shape[:1] + tuple(s + 1 for s in ref.shape[1:])),
           "zeros": lambda: np.zeros_like(ref)}[damage]()
    causes = diagnose(lay, None, xs, ref, ker)
    top = _top(causes)
    assert top.fix and top.explanation
    if damage == "scale":
        assert top.cause == "unknown" and "0.5 x Caffe" in top.explanation


def _bn_scale_span():
    c = 4
    mean = RNG.standard_normal(c)
    var = RNG.uniform(0.5, 2.0, c)
    gamma = RNG.uniform(0.5, 1.5, c)
    beta = RNG.standard_normal(c)
    net = _net('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data" }\n'
               'layer { name: "sc" type: "Scale" bottom: "data" top: "data" scale_param { bias_term: true } }',
               shape=(3, c, 5, 2),
               weights={"bn": [(mean * 2).astype(np.float32), (var * 2).astype(np.float32),
                               np.array([2.0], np.float32)],
                        "sc": [gamma.astype(np.float32), beta.astype(np.float32)]})
    return net.layer("bn"), net.layer("sc")


def test_bn_batch_stats():
    """BatchNormalization in training mode: the batch's statistics instead of the stored ones."""
    bn, sc = _bn_scale_span()
    x = RNG.standard_normal((3, 4, 5, 2)) + 0.5
    ref = _ref(sc, [_ref(bn, [x])])
    gamma, beta = (np.asarray(b, np.float64) for b in sc.blobs)
    r = lambda v: v.reshape(1, 4, 1, 1)  # noqa: E731
    mu = x.mean(axis=(0, 2, 3), keepdims=True)
    va = x.var(axis=(0, 2, 3), keepdims=True)
    ker = r(gamma) * (x - mu) / np.sqrt(va + 1e-5) + r(beta)
    top = _top(diagnose(bn, None, [x], ref, ker, context={"chain": [sc]}))
    assert top.cause == "bn_batch_stats" and top.confidence > 0.99


def test_bn_stored_stats_where_caffe_uses_the_batch():
    """The reverse: Caffe's use_global_stats: false normalises with the batch's statistics even at TEST; a port in
    inference mode uses the stored ones.  Same cause code, the fix names the batch-statistics layer."""
    c = 3
    mean, var = RNG.standard_normal(c), RNG.uniform(0.5, 2.0, c)
    net = _net('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "y" '
               'batch_norm_param { use_global_stats: false } }', shape=(2, c, 5, 7),
               weights={"bn": [mean.astype(np.float32), var.astype(np.float32), np.array([1.0], np.float32)]})
    bn = net.layer("bn")
    x = RNG.standard_normal((2, c, 5, 7)) * 2.0 + 0.7
    ref = _ref(bn, [x])
    mu, va = x.mean(axis=(0, 2, 3), keepdims=True), x.var(axis=(0, 2, 3), keepdims=True)
    assert np.allclose(ref, (x - mu) / np.sqrt(va + 1e-5))  # Caffe: the batch's mean and biased variance
    r = lambda v: np.asarray(v, np.float64).reshape(1, c, 1, 1)  # noqa: E731
    ker = (x - r(mean)) / np.sqrt(r(var) + 1e-5)  # the port: stored statistics
    top = _top(diagnose(bn, None, [x], ref, ker))
    assert top.cause == "bn_batch_stats" and top.confidence > 0.99
    assert "CaffeBatchStatsNorm" in top.fix


def _ordered(x, mean, var, gamma, beta):
    """Keras BN given [beta, gamma, mean, variance]: gamma and beta swapped."""
    r = lambda v: v.reshape(1, 4, 1, 1)  # noqa: E731
    return r(beta) * (x - r(mean)) / np.sqrt(r(var) + 1e-5) + r(gamma)


def test_bn_gamma_beta_swapped():
    bn, sc = _bn_scale_span()
    x = RNG.standard_normal((3, 4, 5, 2))
    ref = _ref(sc, [_ref(bn, [x])])
    mean, var = (np.asarray(b, np.float64) / 2 for b in bn.blobs[:2])
    gamma, beta = (np.asarray(b, np.float64) for b in sc.blobs)
    top = _top(diagnose(bn, None, [x], ref, _ordered(x, mean, var, gamma, beta), context={"chain": [sc]}))
    assert top.cause == "bn_weight_order" and top.confidence > 0.99
    assert "[beta, gamma, mean, variance]" in top.explanation


def test_dropout_active():
    net = _net('layer { name: "d" type: "Dropout" bottom: "data" top: "d" dropout_param { dropout_ratio: 0.3 } }',
               shape=(2, 50, 4, 3))
    lay = net.layer("d")
    x = RNG.standard_normal((2, 50, 4, 3))
    ref = _ref(lay, [x])
    np.testing.assert_array_equal(ref, x)  # identity at TEST
    keep = RNG.random(x.shape) >= 0.3
    top = _top(diagnose(lay, None, [x], ref, np.where(keep, x / 0.7, 0.0)))
    assert top.cause == "dropout_active" and top.confidence > 0.9


def test_deconvolution_same_padding():
    w = RNG.standard_normal((3, 2, 4, 4)).astype(np.float32)
    net = _net('layer { name: "d" type: "Deconvolution" bottom: "data" top: "d" '
               'convolution_param { num_output: 2 kernel_size: 4 stride: 2 pad: 1 bias_term: false } }',
               shape=(2, 3, 5, 4), weights={"d": [w]})
    lay = net.layer("d")
    x = RNG.standard_normal((2, 3, 5, 4))
    ref = _ref(lay, [x])
    assert ref.shape == (2, 2, 10, 8)
    full = _ref(_common._with_param(lay, _common._clear_conv_pad), [x])  # (2, 2, 12, 10)
    top = _top(diagnose(lay, None, [x], ref, full[:, :, 2:12, 0:8]))
    assert top.cause == "padding_offset" and "(2, 0)" in top.explanation
    # Caffe k3 s2 p1 gives 2*in - 1; Conv2DTranspose(padding="same") gives 2*in
    net = _net('layer { name: "d" type: "Deconvolution" bottom: "data" top: "d" '
               'convolution_param { num_output: 2 kernel_size: 3 stride: 2 pad: 1 bias_term: false } }',
               shape=(2, 3, 5, 4), weights={"d": [w[:, :, :3, :3].copy()]})
    top = _top(diagnose_shape(net.layer("d"), [x], (2, 2, 9, 7), (2, 2, 10, 8)))
    assert top.cause == "same_padding" and "Cropping2D" in top.fix


def _max_windows(x, before, out_hw, k=3, s=2, fill=-np.inf):
    pt, pl = before
    ho, wo = out_hw
    h, w = x.shape[2:]
    pb, pr = max(0, (ho - 1) * s + k - h - pt), max(0, (wo - 1) * s + k - w - pl)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=fill)
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s][:, :, :ho, :wo]
    return win.max(axis=(-2, -1))


def test_pool_same_padding_and_offset():
    net = _net('layer { name: "p" type: "Pooling" bottom: "data" top: "p" '
               'pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 round_mode: FLOOR } }', shape=(2, 3, 10, 8))
    lay = net.layer("p")
    x = RNG.standard_normal((2, 3, 10, 8))
    ref = _ref(lay, [x])
    assert ref.shape == (2, 3, 5, 4)
    np.testing.assert_allclose(_max_windows(x, (1, 1), (5, 4)), ref)  # the oracle agrees with Caffe's placement
    # MaxPooling2D(3, 2, padding="same") on 10 x 8: out 5 x 4, pad before 0 (total 1)
    top = _top(diagnose(lay, None, [x], ref, _max_windows(x, (0, 0), (5, 4))))
    assert top.cause == "same_padding" and top.confidence > 0.99
    top = _top(diagnose(lay, None, [x], ref, _max_windows(x, (2, 1), (5, 4))))
    assert top.cause == "padding_offset" and "(-2, -1)" in top.explanation


def test_prelu_slopes():
    a = np.array([0.1, 0.25, 0.4], np.float32)
    net = _net('layer { name: "pr" type: "PReLU" bottom: "data" top: "pr" }', shape=(2, 3, 4, 5),
               weights={"pr": [a]})
    lay = net.layer("pr")
    x = RNG.standard_normal((2, 3, 4, 5))
    ref = _ref(lay, [x])
    top = _top(diagnose(lay, None, [x], ref, np.maximum(x, 0)))
    assert top.cause == "relu_slope" and "not loaded" in top.explanation
    ker = np.where(x > 0, x, a[::-1].reshape(1, 3, 1, 1) * x)
    assert _top(diagnose(lay, None, [x], ref, ker)).cause == "channel_order"


def test_location_cues_give_weak_family_causes(conv):
    ref = _ref(conv, [X])
    ker = ref.copy()
    ker[:, :, -1, :] *= 0.5  # last row only
    causes = diagnose(conv, None, [X], ref, ker)
    assert causes[0].cause == "unknown" and "border" in causes[0].explanation
    assert "padding_offset" in [c.cause for c in causes[1:]]
    net = _net('layer { name: "e" type: "ELU" bottom: "data" top: "e" }', shape=(2, 3, 4, 5))
    lay = net.layer("e")
    x = RNG.standard_normal((2, 3, 4, 5))
    ref = _ref(lay, [x])
    causes = diagnose(lay, None, [x], ref, np.where(x > 0, x, 0.5 * (np.exp(x) - 1)))
    assert causes[0].cause == "unknown" and "negative" in causes[0].explanation
    assert "relu_slope" in [c.cause for c in causes]


def test_input_layout_on_a_pooling_first_layer(pools):
    lay = pools.layer("pceil")
    x = RNG.standard_normal((2, 3, 10, 8))
    ref = _ref(lay, [x])
    ker = _ref(lay, [x.reshape(2, 10, 8, 3).transpose(0, 3, 1, 2)])
    top = _top(diagnose(lay, None, [x], ref, ker))
    assert top.cause == "input_layout" and top.confidence > 0.99


def test_caffe_flatten_layer_order():
    net = _net('layer { name: "f" type: "Flatten" bottom: "data" top: "f" }', shape=(2, 3, 5, 4))
    lay = net.layer("f")
    x = RNG.standard_normal((2, 3, 5, 4))
    ref = _ref(lay, [x])
    np.testing.assert_array_equal(ref, x.reshape(2, -1))
    top = _top(diagnose(lay, None, [x], ref, x.transpose(0, 2, 3, 1).reshape(2, -1)))  # Keras Flatten on NHWC
    assert top.cause == "flatten_order" and "Permute((3, 1, 2))" in top.fix


def test_input_preprocessing_scale_and_mean(conv):
    x = RNG.uniform(0, 255, (2, 3, 11, 9))
    ref = _ref(conv, [x])
    top = _top(diagnose(conv, None, [x], ref, _ref(conv, [x / 255.0])))
    assert top.cause == "input_preprocessing" and "(= 1/255)" in top.explanation and top.confidence > 0.99
    mean = np.array([103.939, 116.779, 123.68]).reshape(1, 3, 1, 1)
    top = _top(diagnose(conv, None, [x], ref, _ref(conv, [x - mean])))
    assert top.cause == "input_preprocessing" and "103.939, 116.779, 123.68" in top.explanation


def test_input_preprocessing_through_fused_relu(conv):
    net = _net('layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
               'convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 } }\n'
               'layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }',
               weights={"conv1": [np.asarray(b) for b in conv.blobs]})
    c, r = net.layer("conv1"), net.layer("relu1")
    x = RNG.uniform(0, 1, (2, 3, 11, 9))
    ref = _ref(r, [_ref(c, [x])])
    ker = _ref(r, [_ref(c, [x * 255.0])])
    top = _top(diagnose(c, None, [x], ref, ker, context={"chain": [r], "net": net}))
    assert top.cause == "input_preprocessing" and "(= 255)" in top.explanation


def test_pool_avg_divisor_counts_the_ceil_overhang(pools):
    """ZeroPadding2D to cover Caffe's ceil overhang, then AveragePooling2D('valid'): always divides by 9."""
    lay = pools.layer("pave")
    x = RNG.standard_normal((2, 3, 10, 8))
    ref = _ref(lay, [x])
    xp = np.pad(x, ((0, 0), (0, 0), (1, 2), (1, 2)))
    ker = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))[:, :, ::2, ::2].mean(axis=(-2, -1))
    assert ker.shape == ref.shape
    top = _top(diagnose(lay, None, [x], ref, ker))
    assert top.cause == "pool_avg_divisor" and "overhang" in top.explanation


def test_group_filters_swapped_but_biases_not():
    """Conv2D(groups=2) given the filter groups in reverse order, the biases left in Caffe's order."""
    o, c, g = 6, 4, 2
    w = RNG.standard_normal((o, c // g, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(o).astype(np.float32) * 3
    conv = _net('layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
                f'convolution_param {{ num_output: {o} kernel_size: 3 group: {g} }} }}', shape=(2, c, 7, 5),
                weights={"conv": [w, b]}).layer("conv")
    x = RNG.standard_normal((2, c, 7, 5))
    perm = np.concatenate(np.split(np.arange(o), g)[::-1])
    ker = _ref(_with(conv, w[perm], b), [x])
    top = _top(diagnose(conv, None, [x], _ref(conv, [x]), ker))
    assert top.cause == "group_order" and top.confidence > 0.99 and "biases stay" in top.explanation


def test_dense_reshaped_after_an_nhwc_flatten_without_reordered_rows():
    """The fc after a 4-D blob: the port flattens NHWC and uses W.reshape(K, N) as the kernel."""
    n_out, c, h, w_ = 4, 3, 5, 2
    k = c * h * w_
    w = RNG.standard_normal((n_out, k)).astype(np.float32)
    b = RNG.standard_normal(n_out).astype(np.float32)
    ip = _net(f'layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
              f'inner_product_param {{ num_output: {n_out} }} }}', shape=(2, c, h, w_),
              weights={"fc": [w, b]}).layer("fc")
    x = RNG.standard_normal((2, c, h, w_))
    ker = x.transpose(0, 2, 3, 1).reshape(2, k) @ w.astype(np.float64).reshape(k, n_out) + b
    top = _top(diagnose(ip, None, [x], _ref(ip, [x]), ker))
    assert top.cause == "dense_reshaped" and top.confidence > 0.99
    assert f"W.reshape({n_out}, {c}, {h}, {w_}).transpose(2, 3, 1, 0).reshape({k}, {n_out})" in top.fix
