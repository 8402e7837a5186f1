"""Issue 21 follow-ups (corpus21 gaps): fix texts that fix, on small seeded nets.

Each bug's fix, applied literally as its text says, makes the port equivalent on a re-check."""

from __future__ import annotations

import re

import numpy as np
import pytest

from harness.caffe import load_net_text
from harness.compare import compare
from harness.weights import random_weights

N, C, H, W = 2, 3, 6, 8  # the input; conv1 (kernel 2 x 4, no pad) gives 4 x 5 x 5: a square blob to flatten


def _keras():
    import keras

    return keras


SQ_NET = f"""
name: "sq"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: {N} dim: {C} dim: {H} dim: {W} }} }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 4 kernel_h: 2 kernel_w: 4 }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param {{ num_output: 6 }} }}
"""


@pytest.fixture(scope="module")
def sq_net():
    return random_weights(load_net_text(SQ_NET), 5)


X = np.random.default_rng(1).standard_normal((N, C, H, W)).astype(np.float32)


def _sq_port(net, permute, rows, kernel=None):
    """Conv2D -> [Permute] -> Flatten -> Dense whose kernel holds Caffe's rows in NCHW axis order ``rows``."""
    keras = _keras()
    cw, cb = (np.asarray(b, np.float32) for b in net.layer("conv1").blobs)
    fw, fb = (np.asarray(b, np.float32) for b in net.layer("fc").blobs)
    inp = keras.Input((H, W, C))
    conv = keras.layers.Conv2D(4, (2, 4), name="conv1")
    x = conv(inp)
    if permute is not None:
        x = keras.layers.Permute(permute)(x)
    dense = keras.layers.Dense(6, name="fc")
    out = dense(keras.layers.Flatten()(x))
    conv.set_weights([cw.transpose(2, 3, 1, 0), cb])
    dense.set_weights([fw.reshape(6, 4, 5, 5).transpose(*rows, 0).reshape(100, 6) if kernel is None else kernel, fb])
    return keras.Model(inp, out)


def test_a_dropped_permute_on_a_square_blob_gets_fixes_relative_to_the_ports_own_flatten(sq_net):
    """W, H, C kernel rows behind a plain (H, W, C) Flatten: on a square blob the same output also reads as 'C, W, H
    against Caffe's C, H, W'; the fix must be built from the port's own Flatten order (the one its kernel says)."""
    r = compare(sq_net, _sq_port(sq_net, None, (3, 2, 1)), X)
    top = r.first_divergence.diagnosis[0]
    assert (r.first_divergence.caffe_layer, top.cause) == ("fc", "flatten_order"), r.table()
    assert "add keras.layers.Permute((2, 1, 3)) before Flatten" in top.fix, top.fix
    assert "kernel = W.reshape(6, 4, 5, 5).transpose(2, 3, 1, 0).reshape(100, 6)" in top.fix, top.fix
    # both forms, applied literally, fix
    perm = eval(re.search(r"keras\.layers\.(Permute\(\([\d, ]+\)\))", top.fix).group(1)[len("Permute("):-1])  # noqa: S307
    assert compare(sq_net, _sq_port(sq_net, perm, (3, 2, 1)), X).equivalent
    expr = re.search(r"kernel = (W[.\w(), 0-9]+?) \(", top.fix).group(1)
    kernel = eval(expr, {"W": np.asarray(sq_net.layer("fc").blobs[0], np.float32)})  # noqa: S307
    assert compare(sq_net, _sq_port(sq_net, None, (3, 2, 1), kernel=kernel), X).equivalent


def test_a_permute_to_caffes_order_with_w_h_c_rows_gets_the_permute_that_fits_the_rows(sq_net):
    # Permute((3, 1, 2)) flattens C, H, W; the kernel rows are W, H, C: the Permute must become (2, 1, 3)
    r = compare(sq_net, _sq_port(sq_net, (3, 1, 2), (3, 2, 1)), X)
    top = r.first_divergence.diagnosis[0]
    assert top.cause == "flatten_order", r.table()
    assert "make the Permute before Flatten keras.layers.Permute((2, 1, 3))" in top.fix, top.fix
    assert "transpose(1, 2, 3, 0)" in top.fix, top.fix


# ------------------------------------------------------------------------------------------------------------------
# G2: a PReLU after a Dense (rank-2 input): the fix's shared_axes and alpha shape fit the rank

DENSE_PRELU_NET = f"""
name: "dp"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: {N} dim: {C} dim: {H} dim: {W} }} }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param {{ num_output: 5 }} }}
layer {{ name: "prelu" type: "PReLU" bottom: "fc" top: "fc" }}
"""


def _dense_prelu_port(net, prelu):
    keras = _keras()
    fw, fb = (np.asarray(b, np.float32) for b in net.layer("fc").blobs)
    inp = keras.Input((H, W, C))
    dense = keras.layers.Dense(5, name="fc")
    x = dense(keras.layers.Flatten()(keras.layers.Permute((3, 1, 2))(inp)))
    out = prelu(x)
    dense.set_weights([fw.T, fb])
    return keras.Model(inp, out)


def test_a_shared_prelu_after_a_dense_gets_a_writable_rank_2_fix():
    keras = _keras()
    net = random_weights(load_net_text(DENSE_PRELU_NET), 7)
    a = np.asarray(net.layer("prelu").blobs[0], np.float32)
    assert a.shape == (5,) and np.ptp(a) > 1e-3  # per-channel slopes that differ
    shared = keras.layers.PReLU(shared_axes=[1], name="prelu")
    bug = _dense_prelu_port(net, shared)
    shared.set_weights([np.full((1,), float(a.mean()) + 0.2, np.float32)])
    r = compare(net, bug, X)
    top = r.first_divergence.diagnosis[0]
    assert (r.first_divergence.caffe_layer, top.cause) == ("prelu", "relu_slope"), r.table()
    assert "keras.layers.PReLU() with alpha of shape (5,)" in top.fix, top.fix
    ctor = re.search(r"keras\.layers\.(PReLU\([^()]*\))", top.fix).group(1)
    shape = eval(re.search(r"np\.reshape\(a, (\([\d, ]+\))\)", top.fix).group(1))  # noqa: S307
    fixed = eval(f"keras.layers.{ctor}".replace("PReLU(", "PReLU(name='prelu', ", 1), {"keras": keras})  # noqa: S307
    port = _dense_prelu_port(net, fixed)
    fixed.set_weights([np.reshape(a, shape)])
    r2 = compare(net, port, X)
    assert r2.equivalent, r2.table()


# ------------------------------------------------------------------------------------------------------------------
# G8: a subclassed fully convolutional port built by a first call at one size, checked at another

FCN_NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 13 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2" convolution_param { num_output: 5 kernel_size: 1 } }
"""


def _fcn_port(net, *, kernel_bug=False):
    keras = _keras()

    class FcnPort(keras.Model):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.conv1 = keras.layers.Conv2D(4, 3, name="conv1")
            self.conv2 = keras.layers.Conv2D(5, 1, name="conv2")

        def call(self, x):
            return self.conv2(keras.ops.relu(self.conv1(x)))

    p = FcnPort(name="fcn")
    p(np.zeros((1, 12, 14, 3), np.float32))  # built at 12 x 14: its build config says (None, 12, 14, 3)
    w1, b1 = (np.asarray(a, np.float32) for a in net.layer("conv1").blobs)
    w2, b2 = (np.asarray(a, np.float32) for a in net.layer("conv2").blobs)
    p.conv1.set_weights([w1.reshape(3, 3, 3, 4) if kernel_bug else w1.transpose(2, 3, 1, 0), b1])
    p.conv2.set_weights([w2.transpose(2, 3, 1, 0), b2])
    return p


def test_a_subclassed_port_built_at_one_size_is_traced_at_the_checked_size():
    net = random_weights(load_net_text(FCN_NET), 11)
    x = {"data": np.random.default_rng(2).standard_normal((2, 3, 9, 13))}
    assert _fcn_port(net).get_build_config()["input_shape"][1:] == (12, 14, 3)
    r = compare(net, _fcn_port(net), x)
    assert r.equivalent, r.table()
    assert {lr.caffe_layer: lr.keras_layer for lr in r.layers}["conv2"] == "conv2"
    bug = compare(net, _fcn_port(net, kernel_bug=True), x)
    assert (bug.first_divergence.caffe_layer, bug.first_divergence.diagnosis[0].cause) == ("conv1", "kernel_reshaped")


# ------------------------------------------------------------------------------------------------------------------
# G10: pooling padding evidence on a fully convolutional port (Keras H, W free): from the checked input size

POOL_NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 14 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
"""


def _pool_port(net, padding):
    keras = _keras()
    inp = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(4, 3, name="conv1")
    out = keras.layers.MaxPooling2D(2, 2, padding=padding, name="pool1")(conv(inp))
    w, b = (np.asarray(a, np.float32) for a in net.layer("conv1").blobs)
    conv.set_weights([w.transpose(2, 3, 1, 0), b])
    return keras.Model(inp, out)


@pytest.mark.parametrize("padding, result", [
    ("same", "equal"),                                   # Caffe's ceil overhang is TF's trailing 'same' row/column
    ("valid", "different (Caffe [[0, 1], [0, 0]], Keras [[0, 0], [0, 0]])"),
])
def test_pool_padding_evidence_on_a_fully_convolutional_port(padding, result):
    net = random_weights(load_net_text(POOL_NET), 13)
    x = np.random.default_rng(4).standard_normal((2, 3, 9, 14)).astype(np.float32)  # conv1: 7 x 12
    r = compare(net, _pool_port(net, padding), x)
    pool = next(lr for lr in r.layers if lr.caffe_layer == "pool1")
    checks = {c["what"]: c for c in pool.params["checks"]}
    assert "padding" in checks, pool.params
    got = checks["padding"]
    text = got["result"] if got["result"] == "equal" else f"{got['result']} (Caffe {got.get('caffe')}, Keras {got.get('keras')})"
    assert text == result, got
