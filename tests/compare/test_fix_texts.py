"""Fix texts are concrete and they fix: each test reads the numbers out of the printed fix, applies them to the port,
and re-checks -- the layer that diverged then passes (a wrong fix is worse than none)."""

from __future__ import annotations

import re

import numpy as np
import pytest

NET = """name: "fixes"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 12 dim: 10 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 5 kernel_size: 2 stride: 2 } }
"""


def _net():
    from harness.caffe import load_net_text
    from harness.weights import random_weights

    return random_weights(load_net_text(NET), 3)


def _port(net, *, pool_pad=((0, 1), (0, 1)), conv2_padding="valid"):
    """A hand port in the style of keras.applications: explicit ZeroPadding2D before a valid pooling."""
    import keras
    from keras import layers as L

    w1, b1 = (np.asarray(b, np.float32) for b in net.layer("conv1").blobs)
    w2, b2 = (np.asarray(b, np.float32) for b in net.layer("conv2").blobs)
    inp = keras.Input((12, 10, 3))
    x = L.ZeroPadding2D(1)(inp)
    c1 = L.Conv2D(4, 3, activation="relu")
    x = c1(x)
    x = L.ZeroPadding2D(pool_pad)(x)
    x = L.MaxPooling2D(3, 2)(x)
    c2 = L.Conv2D(5, 2, strides=2, padding=conv2_padding)
    x = c2(x)
    c1.set_weights([w1.transpose(2, 3, 1, 0), b1])
    c2.set_weights([w2.transpose(2, 3, 1, 0), b2])
    return keras.Model(inp, x)


def _check(net, model):
    from harness.compare import compare

    x = np.random.default_rng(5).standard_normal((2, 3, 12, 10)).astype(np.float32)
    return compare(net, model, x)


def test_the_correct_port_passes():
    assert _check(_net(), _port(_net()))


def test_resnet_style_pool_padding_fix_names_the_ceil_overhang_and_fixes_it():
    """keras.applications.ResNet50 pads (1, 1) before a valid 3x3/2 pool; Caffe's ceil mode needs ((0, 1), (0, 1)).
    The old fix said "pad (0, 0) before the pooling, symmetrically", which breaks the shape."""
    net = _net()
    rep = _check(net, _port(net, pool_pad=((1, 1), (1, 1))))
    fd = rep.first_divergence
    assert not rep and fd.caffe_layer == "pool1"
    top = fd.diagnosis[0]
    assert top.cause in ("padding_offset", "same_padding") and top.confidence > 0.9, top
    m = re.search(r"ZeroPadding2D\(\(\((\d+), (\d+)\), \((\d+), (\d+)\)\)\)", top.fix)
    assert m, top.fix
    pad = ((int(m[1]), int(m[2])), (int(m[3]), int(m[4])))
    assert pad == ((0, 1), (0, 1)) and "MaxPooling2D(pool_size=(3, 3), strides=(2, 2), padding='valid')" in top.fix
    assert _check(net, _port(net, pool_pad=pad))  # applied: the whole port is equivalent


def test_same_padding_where_caffe_pads_nothing_says_valid_not_zero_padding_of_zero():
    """Caffe conv2 (k2 s2, pad 0) on 6x5: 3x2; TF 'same' gives 3x3.  The fix must not be ZeroPadding2D((0, 0))."""
    net = _net()
    rep = _check(net, _port(net, conv2_padding="same"))
    fd = rep.first_divergence
    assert not rep and fd.caffe_layer == "conv2"
    top = fd.diagnosis[0]
    assert top.cause == "same_padding" and "ZeroPadding2D((0, 0))" not in top.fix
    assert top.fix.startswith("use padding='valid' on the convolution with no padding before it"), top.fix
    assert _check(net, _port(net, conv2_padding="valid"))


@pytest.mark.parametrize("pad,want", [((1, 1), "ZeroPadding2D((1, 1)) before the convolution"),
                                      ((0, 2), "ZeroPadding2D((0, 2)) before the convolution")])
def test_conv_padding_fix_fills_in_caffe_pads(pad, want):
    from types import SimpleNamespace

    from harness.compare.diagnose._common import conv_padding_fix

    assert want in conv_padding_fix(SimpleNamespace(pad=pad))
