"""A hand-written port that uses a model as a layer (a Sequential backbone inside a functional model) is compared
layer by layer: the nested model is inlined, so each Caffe layer pairs with the Keras layer computing it."""

from __future__ import annotations

import warnings

import keras
import numpy as np

import harness
from harness.caffe import load_net_text
from harness.compare import flatten_nested
from harness.weights import random_weights

NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 10 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def _port(net, *, bug: bool = False):
    w, b = (np.asarray(a) for a in net.layer("conv1").blobs)
    kernel = w.reshape(3, 3, 3, 4) if bug else w.transpose(2, 3, 1, 0)
    conv = keras.layers.Conv2D(4, 3, activation="relu")
    backbone = keras.Sequential([keras.Input((10, 12, 3)), conv, keras.layers.MaxPooling2D(2)], name="backbone")
    conv.set_weights([kernel, b])
    inp = keras.Input((10, 12, 3), name="data")
    x = keras.layers.Permute((3, 1, 2))(backbone(inp))  # Caffe's C, H, W flatten order
    x = keras.layers.Flatten()(x)
    dense = keras.layers.Dense(5, activation="softmax")
    out = dense(x)
    fw, fb = (np.asarray(a) for a in net.layer("fc").blobs)
    dense.set_weights([fw.T, fb])
    return keras.Model(inp, out)


def test_nested_sequential_is_inlined_with_the_same_layers():
    net = random_weights(load_net_text(NET), seed=3)
    model = _port(net)
    flat = flatten_nested(model)
    assert [type(lay).__name__ for lay in flat.layers] == [
        "InputLayer", "Conv2D", "MaxPooling2D", "Permute", "Flatten", "Dense"]
    assert flat.layers[1] is model.get_layer("backbone").layers[0]  # same objects, same weights
    x = np.random.default_rng(0).standard_normal((2, 10, 12, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(flat(x)))
    assert flatten_nested(flat) is flat


def test_nested_port_passes_and_its_bug_is_found():
    net = random_weights(load_net_text(NET), seed=3)
    x = {"data": np.random.default_rng(1).standard_normal((2, 3, 10, 12))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        good = harness.compare(net, _port(net), x)
        bad = harness.compare(net, _port(net, bug=True), x)
    assert good, good.verdict()
    covered = {name for row in good.layers for name in row.segment}  # fused ReLU / Softmax pair with conv1 / fc
    assert covered == {"conv1", "relu1", "pool1", "fc", "prob"}
    assert not bad
    assert bad.first_divergence.caffe_layer == "conv1"
    assert bad.first_divergence.diagnosis[0].cause == "kernel_reshaped"
