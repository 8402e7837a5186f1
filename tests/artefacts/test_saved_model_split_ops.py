"""A converter that writes each op as a layer of its own (onnx2tf: ``tf.nn.convolution`` then ``tf.math.add`` of
the bias; ``tf.linalg.matmul`` -> ``tf.math.multiply`` -> ``tf.__operators__.add`` for a Gemm) leaves the inside of
one Caffe layer as a layer scope's output: :func:`inner_scopes` names those scopes, so that the layer is paired
with the value after its bias (issue 20 item 1: the false ``missing_bias`` on every correct onnx2tf SavedModel)."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from harness.compare.artefacts.saved_model import inner_scopes, layer_scopes  # noqa: E402


def _graph():
    """model/{conv, bias, relu, mm, scale, shift, mul_var, add_var} as separate scopes, one op each."""
    g = tf.Graph()
    rng = np.random.default_rng(0)
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [2, 5, 7, 3], name="x")
        v = tf.compat.v1.placeholder(tf.float32, [4], name="v")  # not a constant: a data-dependent add
        with tf.name_scope("model"):
            with tf.name_scope("conv"):
                y = tf.nn.conv2d(x, tf.constant(rng.normal(size=(3, 3, 3, 4)), tf.float32), 1, "SAME")
            with tf.name_scope("bias"):
                y = tf.math.add(y, tf.constant(rng.normal(size=(4,)), tf.float32))
            with tf.name_scope("relu"):
                y = tf.nn.relu(y)
            with tf.name_scope("mul_var"):  # a constant multiply whose add is not constant: no Scale
                y = tf.math.multiply(y, tf.constant(2.0))
            with tf.name_scope("add_var"):
                y = tf.math.add(y, v)
            with tf.name_scope("flat"):
                z = tf.reshape(y, [2, 140])
            with tf.name_scope("mm"):
                z = tf.linalg.matmul(z, tf.constant(rng.normal(size=(140, 6)), tf.float32))
            with tf.name_scope("scale"):
                z = tf.math.multiply(z, tf.constant(0.5))
            with tf.name_scope("shift"):
                z = tf.math.add(z, tf.constant(rng.normal(size=(6,)), tf.float32))
            with tf.name_scope("out"):
                tf.nn.softmax(z)
    return g.as_graph_def()


def test_inner_scopes_are_the_ones_before_a_constant_bias_or_scale():
    gd = _graph()
    scopes = layer_scopes(gd)
    assert {"conv", "bias", "relu", "mul_var", "add_var", "mm", "scale", "shift"} <= set(scopes)
    # conv -> bias: the conv's tensor is inside the layer; mm -> scale -> shift: both before the shift are;
    # a multiply whose add reads a non-constant, and the adds themselves, are layer outputs
    assert inner_scopes(gd, scopes) == {"conv", "mm", "scale"}
