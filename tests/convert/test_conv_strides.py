"""Convolutions whose TensorFlow kernels misbehave: unequal strides with a single output position, dilated
deconvolution, and depthwise layers that leave ``group`` unset (all compared with the float64 reference)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.caffe import load_net_text
from harness.convert import convert
from harness.reference import forward
from harness.weights import random_weights
from support import input_layers

CASES = {
    # TF's depthwise kernel returned leftover memory here (found by the property suite).
    "dw_stride_1x3_single_column": ((1, 1, 3, 2), 'type: "ConvolutionDepthwise" convolution_param { num_output: 2 '
                                    'bias_term: false group: 1 kernel_h: 1 kernel_w: 2 stride_h: 1 stride_w: 3 }'),
    "dw_group_unset_dilated": ((2, 1, 8, 5), 'type: "ConvolutionDepthwise" convolution_param { num_output: 2 '
                               'kernel_size: 3 kernel_size: 4 stride_h: 1 stride_w: 2 pad_h: 2 pad_w: 1 dilation: 2 }'),
    "conv_stride_1x2_single_column": ((2, 1, 12, 7), 'type: "Convolution" convolution_param { num_output: 2 '
                                      'kernel_h: 5 kernel_w: 7 stride_h: 1 stride_w: 2 }'),
    "grouped_stride_2x1": ((2, 3, 8, 5), 'type: "Convolution" convolution_param { num_output: 6 group: 3 '
                           'kernel_size: 3 stride_h: 2 stride_w: 1 }'),
    "depthwise_alias_group_unset": ((2, 3, 8, 5), 'type: "DepthwiseConvolution" convolution_param { num_output: 6 '
                                    'kernel_size: 3 stride: 2 pad: 1 }'),
    "deconv_dilated": ((1, 2, 3, 4), 'type: "Deconvolution" convolution_param { num_output: 3 kernel_size: 3 '
                       'dilation: 2 }'),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_converted_convolution_matches_reference(name):
    shape, body = CASES[name]
    text = input_layers({"data": shape}) + f'layer {{ name: "c" {body} bottom: "data" top: "c" }}'
    net = random_weights(load_net_text(text), seed=1)
    x = np.random.default_rng(2).standard_normal(shape)
    want = forward(net, {"data": x})["c/c"]
    got = convert(net)(x.transpose(0, 2, 3, 1).astype(np.float32))
    got = np.asarray(got["c"] if isinstance(got, dict) else got).transpose(0, 3, 1, 2)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
