"""More of the independent corpus: pool_rounding on a net whose pooled blob is the output (so the floor-sized port
still builds), a flatten_order fix applied literally (its kernel expression evaluated on Caffe's weights), and the
Keras layer named in the verdict for arbitrary functional names and channels_first layers."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

import _ports2 as P
import harness.caffe
import harness.weights
from harness.compare import compare

L = keras.layers

GAMMA_TEXT = """
name: "gamma"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 13 dim: 11 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
"""


def _gamma(padding):
    net = harness.weights.random_weights(harness.caffe.load_net_text(GAMMA_TEXT), seed=3)
    m = keras.Sequential([keras.Input((13, 11, 3)), L.Conv2D(4, 3, activation="relu"),
                          L.MaxPooling2D(2, 2, padding=padding)])  # 11x9 -> Caffe ceil 6x5, floor 5x4
    w, b = (np.asarray(x, np.float32) for x in net.layer("conv").blobs)
    m.layers[0].set_weights([w.transpose(2, 3, 1, 0), b])
    x = np.random.default_rng(1).standard_normal((2, 3, 13, 11)).astype(np.float32)
    return net, m, {"data": x}


def test_gamma_correct_port_equivalent():
    r = compare(*_gamma("same"))
    assert r.equivalent, r.table()


def test_pool_rounding_floor_sized_port():
    r = compare(*_gamma("valid"))
    fd = r.first_divergence
    assert fd is not None and fd.caffe_layer == "pool", r.table()
    assert fd.diagnosis[0].cause == "pool_rounding", fd.diagnosis
    assert not r.divergences
    fix = fd.diagnosis[0].fix
    assert "same" in fix or "ZeroPadding2D" in fix, fix
    r2 = compare(*_gamma("same"))  # the fix: Caffe's ceil overhang, padded at the bottom/right
    assert r2.equivalent, r2.table()


def test_flatten_order_fix_expression_applied_literally():
    cfg = {"fc1": "flatten_order"}
    model = P.alpha_model("func", cfg)
    r = compare(P.net("alpha"), model, P.inputs())
    fd = r.first_divergence
    assert (fd.caffe_layer, fd.keras_layer, fd.diagnosis[0].cause) == ("fc1", "head_a", "flatten_order")
    m = re.search(r"kernel = (W[.\w(), 0-9]+?)(?: \(|$)", fd.diagnosis[0].fix)
    assert m, fd.diagnosis[0].fix
    W, b = (np.asarray(x, np.float32) for x in P.net("alpha").layer("fc1").blobs)
    kernel = eval(m.group(1), {"W": W})  # noqa: S307 - the fix's own numpy expression, on Caffe's weights
    model.get_layer("head_a").set_weights([kernel, b])
    r2 = compare(P.net("alpha"), model, P.inputs())
    assert r2.equivalent, r2.table()


@pytest.mark.parametrize("style,keras_name", [("func", "block1_conv"), ("nchw", None), ("seq", None)])
def test_kernel_reshaped_named_in_each_style(style, keras_name):
    r = compare(P.net("alpha"), P.alpha_model(style, {"conv1": "kernel_reshaped"}), P.inputs())
    fd = r.first_divergence
    assert (fd.caffe_layer, fd.diagnosis[0].cause) == ("conv1", "kernel_reshaped"), r.table()
    assert not r.divergences, [(d.caffe_layer, d.diagnosis[0].cause) for d in r.divergences]
    if keras_name:
        assert fd.keras_layer == keras_name
    assert "transpose(2, 3, 1, 0)" in fd.diagnosis[0].fix


def test_pool_rounding_fix_gives_this_layers_padding():
    """11x9 -> 6x5 with k2 s2: the overhang is one row at the bottom and one column at the right."""
    fix = compare(*_gamma("valid")).first_divergence.diagnosis[0].fix
    assert "((0, 1), (0, 1))" in fix, fix
