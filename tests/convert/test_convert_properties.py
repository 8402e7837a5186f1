"""Converter core properties: random Convolution / Deconvolution / Pooling geometries (rectangular kernels, strides,
dilation, pad_h != pad_w, groups, depthwise multipliers, ceil != floor, stride-2 on even sizes with odd kernels,
negative inputs into MAX pooling), each converted and compared with the float64 reference.

Strategies are constructive (no filter/assume): sizes are drawn so that every tensor has distinct sizes on its axes
(N < C < H < W where it matters) and Caffe accepts the geometry.  Example counts are small; the `ci`/`thorough`
hypothesis profiles of the project may raise them.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import support.converted as K
from support import feed_for, make_net

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def conv_cases(draw, deconv: bool = False):
    group = draw(st.sampled_from([1, 2, 3]))
    cig = draw(st.integers(1, 2))
    c_in = group * cig
    cog = draw(st.integers(1, 3))
    depthwise = (not deconv) and group == c_in and group > 1
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if deconv:
        ph, pw = draw(st.integers(0, (eh - 1) // 2)), draw(st.integers(0, (ew - 1) // 2))
    else:
        ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(7, 11))
    w = draw(st.integers(h + 1, h + 4))
    n = 2 if c_in != 2 else 1
    bias = draw(st.booleans())
    params = (f"num_output: {group * cog} group: {group} kernel_h: {kh} kernel_w: {kw} stride_h: {sh} "
              f"stride_w: {sw} pad_h: {ph} pad_w: {pw} dilation: {dh} dilation: {dw} "
              f"bias_term: {'true' if bias else 'false'}")
    type_ = "Deconvolution" if deconv else draw(st.sampled_from(["Convolution", "ConvolutionDepthwise"])
                                                if depthwise else st.just("Convolution"))
    return type_, params, (n, c_in, h, w)


@st.composite
def pool_cases(draw):
    method = draw(st.sampled_from(["MAX", "AVE"]))
    if draw(st.integers(0, 7)) == 0:
        return f"pool: {method} global_pooling: true", (2, 3, draw(st.integers(5, 8)), 9)
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))
    ceil = draw(st.booleans())
    h = draw(st.integers(5, 10))
    w = draw(st.integers(h + 1, h + 5))
    params = (f"pool: {method} kernel_h: {kh} kernel_w: {kw} stride_h: {sh} stride_w: {sw} pad_h: {ph} "
              f"pad_w: {pw} round_mode: {'CEIL' if ceil else 'FLOOR'}")
    return params, (2, 3, h, w)


def _run(layer_text: str, shape, *, shift: float = 0.0, seed: int = 0):
    net = make_net(layer_text, {"data": shape}, seed=seed)
    feed = feed_for(net, seed)
    feed["data"] = feed["data"] + np.float32(shift)
    K.check_vs_reference(net, feed=feed)


@SETTINGS
@given(conv_cases())
def test_random_convolution(case):
    type_, params, shape = case
    _run(f'layer {{ name: "c" type: "{type_}" bottom: "data" top: "c" convolution_param {{ {params} }} }}', shape)


@SETTINGS
@given(conv_cases(deconv=True))
def test_random_deconvolution(case):
    type_, params, shape = case
    _run(f'layer {{ name: "d" type: "{type_}" bottom: "data" top: "d" convolution_param {{ {params} }} }}', shape)


@SETTINGS
@given(pool_cases())
def test_random_pooling_negative_inputs(case):
    params, shape = case
    _run(f'layer {{ name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param {{ {params} }} }}', shape,
         shift=-2.0)


@SETTINGS
@given(st.integers(2, 6), st.sampled_from([1, 3, 5, 7]), st.sampled_from(["ACROSS_CHANNELS", "WITHIN_CHANNEL"]),
       st.floats(0.1, 4.0), st.floats(0.3, 1.0), st.floats(0.5, 3.0))
def test_random_lrn(c, n, region, alpha, beta, k):
    _run(f'layer {{ name: "l" type: "LRN" bottom: "data" top: "l" lrn_param {{ local_size: {n} alpha: {alpha} '
         f'beta: {beta} k: {k} norm_region: {region} }} }}', (1, c, 7, 9))


def test_small_random_net():
    """A small chain of core layers (conv -> BN -> Scale -> ReLU -> ceil MAX pool -> LRN -> AVE pool -> IP)."""
    layers = """
    layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
            convolution_param { num_output: 6 kernel_h: 3 kernel_w: 5 stride: 2 pad_h: 1 pad_w: 2 } }
    layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
    layer { name: "sc1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
    layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
    layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
    layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1" lrn_param { local_size: 3 alpha: 0.1 } }
    layer { name: "dw" type: "Convolution" bottom: "norm1" top: "dw" convolution_param { num_output: 12 group: 6 kernel_size: 3 pad: 1 } }
    layer { name: "pool2" type: "Pooling" bottom: "dw" top: "pool2" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
    layer { name: "fc" type: "InnerProduct" bottom: "pool2" top: "fc" inner_product_param { num_output: 5 } }
    """
    net = make_net(layers, {"data": (2, 3, 23, 29)}, seed=5)
    K.check_vs_reference(net)
