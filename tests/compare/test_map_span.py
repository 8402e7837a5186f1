"""``--map CAFFE=KERAS`` where the Keras layer computes a span of Caffe layers (issue 21): a port's own block class
whose call() runs conv + ReLU + pool, or a residual unit, mapped by the user to the span's last Caffe layer.  The
pair is judged as the span, with the bound propagated through every layer of it (a residual unit's two branches
both), and the layers inside count as covered by it; a bug inside the block is still caught there."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import harness
from support.nets import feed_for, make_net

CHAIN = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 6 kernel_size: 5 stride: 1 pad: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""

RESIDUAL = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "res" type: "Eltwise" bottom: "conv1" bottom: "conv2" top: "res" }
layer { name: "relu2" type: "ReLU" bottom: "res" top: "res" }
layer { name: "fc" type: "InnerProduct" bottom: "res" top: "fc" inner_product_param { num_output: 4 } }
"""


def _hwio(w: np.ndarray, bug: str | None = None) -> np.ndarray:
    if bug == "reshape":  # the classic: OIHW reshaped, not transposed
        return np.reshape(w, (w.shape[2], w.shape[3], w.shape[1], w.shape[0]))
    return np.transpose(w, (2, 3, 1, 0))


def _weight(layer, value: np.ndarray):
    v = layer.add_weight(shape=value.shape, initializer="zeros")
    v.assign(value)
    return v


class ConvReluPool(keras.layers.Layer):
    """A port's own block: one layer, one call(), three Caffe layers."""

    def __init__(self, w, b, **kw):
        super().__init__(**kw)
        self.w0, self.b0 = w, b

    def build(self, shape):
        self.k, self.bias = _weight(self, self.w0), _weight(self, self.b0)

    def call(self, x):
        y = keras.ops.relu(keras.ops.conv(x, self.k, padding="same") + self.bias)
        return keras.ops.max_pool(y, 2, 2)


class ResidualUnit(keras.layers.Layer):
    """relu(relu(conv1(x)) + conv2(relu(conv1(x)))) in one call()."""

    def __init__(self, w1, b1, w2, b2, **kw):
        super().__init__(**kw)
        self.init = (w1, b1, w2, b2)

    def build(self, shape):
        self.vars = [_weight(self, a) for a in self.init]

    def call(self, x):
        k1, b1, k2, b2 = self.vars
        a = keras.ops.relu(keras.ops.conv(x, k1, padding="same") + b1)
        return keras.ops.relu(a + keras.ops.conv(a, k2, padding="same") + b2)


def _blobs(net):
    return {lay.name: lay.blobs for lay in net.layers if lay.blobs}


def _head(x, w, b, name, chw):
    """Caffe's C-order flatten of an NHWC tensor, then the InnerProduct."""
    x = keras.layers.Flatten()(keras.layers.Permute((3, 1, 2))(x))
    dense = keras.layers.Dense(w.shape[0], name=name)
    y = dense(x)
    dense.set_weights([w.T, b])
    return y


def _chain_port(net, bug=None):
    w = _blobs(net)
    i = keras.Input((6, 10, 16), name="data")
    x = ConvReluPool(_hwio(w["conv1"][0], bug), w["conv1"][1], name="block")(i)
    x = _head(x, *w["fc"], "fc", None)
    return keras.Model(i, keras.layers.Softmax(name="prob")(x))


def _residual_port(net, bug=None):
    w = _blobs(net)
    i = keras.Input((5, 7, 3), name="data")
    x = ResidualUnit(_hwio(w["conv1"][0]), w["conv1"][1], _hwio(w["conv2"][0], bug), w["conv2"][1],
                     name="unit")(i)
    return keras.Model(i, _head(x, *w["fc"], "fc", None))


@pytest.fixture(scope="module")
def chain_net():
    return make_net(CHAIN, {"data": (2, 16, 6, 10)}, seed=1)


@pytest.fixture(scope="module")
def residual_net():
    return make_net(RESIDUAL, {"data": (2, 3, 5, 7)}, seed=2)


def _pair(report, caffe_layer):
    return next(r for r in report.to_dict()["layers"] if r["caffe_layer"] == caffe_layer)


def test_a_mapped_block_is_judged_as_its_span(chain_net):
    rep = harness.compare(chain_net, _chain_port(chain_net), feed_for(chain_net, seed=3), user_map={"pool1": "block"})
    assert rep.equivalent, rep.verdict()
    assert _pair(rep, "pool1")["segment"] == ["conv1", "relu1", "pool1"]
    d = rep.to_dict()
    assert not any(k.startswith(("conv1/", "relu1/")) for k in d["unmatched"]["caffe"]), d["unmatched"]


def test_the_span_bound_is_what_passes_it(chain_net):
    """The same pair judged with the pooling's own bound alone (no span) fails: the span's propagated bound is what
    makes the correct block pass, not a looser test."""
    from harness.compare.engine import match as M

    real = M._Pairing.user_spans
    try:
        M._Pairing.user_spans = lambda self, model: None
        rep = harness.compare(chain_net, _chain_port(chain_net), feed_for(chain_net, seed=3),
                              user_map={"pool1": "block"})
    finally:
        M._Pairing.user_spans = real
    assert not rep.equivalent and rep.first_divergence.caffe_layer == "pool1", rep.verdict()


def test_a_bug_inside_a_mapped_block_is_caught_at_the_block(chain_net):
    rep = harness.compare(chain_net, _chain_port(chain_net, bug="reshape"), feed_for(chain_net, seed=3),
                          user_map={"pool1": "block"})
    assert not rep.equivalent
    fd = rep.first_divergence
    assert fd.caffe_layer == "conv1" and fd.diagnosis[0].cause == "kernel_reshaped", rep.verdict()


def test_a_residual_unit_is_judged_through_both_branches(residual_net):
    data = feed_for(residual_net, seed=4)
    rep = harness.compare(residual_net, _residual_port(residual_net), data, user_map={"relu2": "unit"})
    assert rep.equivalent, rep.verdict()
    assert _pair(rep, "relu2")["segment"] == ["conv1", "relu1", "conv2", "res", "relu2"]
    bad = harness.compare(residual_net, _residual_port(residual_net, bug="reshape"), data, user_map={"relu2": "unit"})
    # caught at the span (its diagnosis runs linear chains only: a residual span's cause is `unknown`)
    assert not bad.equivalent and bad.first_divergence.caffe_layer in _pair(rep, "relu2")["segment"], bad.verdict()


def test_a_span_bound_adds_both_branches_of_an_eltwise(residual_net):
    """The bound of the residual sum carries conv1's bound through both of its consumers (the skip and conv2): it
    is at least the bound carried by the skip branch plus conv2's own."""
    from harness.compare.engine.match import Pair
    from harness.compare.engine.passes import open_session, reference_forward

    data = feed_for(residual_net, seed=4)
    ref = reference_forward(residual_net, data)
    s = open_session(residual_net, _residual_port(residual_net), data, ref, mapping=None, user_map={"relu2": "unit"})
    span = Pair("res/res", "res", "res", "unit", 0, "nhwc", "user", ("conv1", "relu1", "conv2", "res"))
    skip_only = Pair("res/res", "res", "res", "unit", 0, "nhwc", "user", ("conv2", "res"))
    full, _ = s.caffe.bound(span, 1.0)
    part, _ = s.caffe.bound(skip_only, 1.0)
    assert full.shape == (2, 8, 5, 7)
    assert float(np.min(full - part)) > 0.0
