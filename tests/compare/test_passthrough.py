"""Pass-through layers are compared: every Caffe record a layer computes, Dropout and Split included, is a pair when
it has a Keras counterpart (the converter's mapping, the layer's name, the Keras pass-through layer after its bottom,
or ``--map``), and an Input record when its blob is a net output.  A comparison stays NOT equivalent only when
nothing could be paired at all.  Every tensor is (N, C, H, W) = (2, 3, 5, 7)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.caffe import load_net_text
from harness.compare import compare
from harness.convert import convert
from support import net_text

SHAPE = (2, 3, 5, 7)
X = np.random.default_rng(7).standard_normal(SHAPE).astype(np.float32)


def _net(body: str):
    return load_net_text(net_text(body, {"data": SHAPE}))


DROP = 'layer { name: "d" type: "Dropout" bottom: "data" top: "d" dropout_param { dropout_ratio: 0.25 } }'
# scale_train: false: Caffe multiplies by 1 - dropout_ratio at TEST (dropout_layer.cpp), so an identity port is wrong
DROP_SCALED = ('layer { name: "d" type: "Dropout" bottom: "data" top: "d" '
               'dropout_param { dropout_ratio: 0.25 scale_train: false } }')


def _keras(make):
    import keras

    inp = keras.Input((SHAPE[2], SHAPE[3], SHAPE[1]), name="data")
    return keras.Model(inp, make(inp), name="port")


def _only(rep, key):
    assert [lr.key for lr in rep.layers] == [key]
    return rep.layers[0]


@pytest.mark.parametrize("body", [DROP, DROP_SCALED, DROP.replace('top: "d"', 'top: "data"')])
def test_converted_dropout_net_is_compared_and_equivalent(body):
    net = _net(body)
    rep = compare(net, convert(net), {"data": X})
    lr = _only(rep, net.layers[-1].keys()[0])
    assert rep.equivalent and lr.matched_by == "mapping"
    assert lr.isolated.passed and lr.chained.passed
    assert lr.isolated.max_abs <= 2 ** -24 * float(np.max(np.abs(X)))  # a copy (or one float32 product)


def test_converted_split_pairs_every_top():
    net = _net('layer { name: "s" type: "Split" bottom: "data" top: "a" top: "b" }')
    rep = compare(net, convert(net), {"data": X})
    assert rep.equivalent and [lr.key for lr in rep.layers] == ["s/a", "s/b"]
    assert all(lr.isolated.max_abs == 0.0 and lr.chained.max_abs == 0.0 for lr in rep.layers)


def test_identity_port_of_a_scaling_dropout_fails_at_that_pair():
    import keras

    port = _keras(lambda t: keras.layers.Identity(name="d")(t))
    ok = compare(_net(DROP), port, {"data": X})
    assert ok.equivalent and _only(ok, "d/d").matched_by == "name"
    bad = compare(_net(DROP_SCALED), port, {"data": X})
    lr = _only(bad, "d/d")
    assert not bad.equivalent and not lr.isolated.passed and not lr.chained.passed
    np.testing.assert_allclose(lr.isolated.max_abs, 0.25 * float(np.max(np.abs(X))), rtol=1e-6)
    assert bad.first_divergence.key == "d/d"


def test_keras_dropout_after_the_bottom_is_paired_by_position():
    import keras

    port = _keras(lambda t: keras.layers.Dropout(0.25)(t))
    ok = compare(_net(DROP), port, {"data": X})
    assert ok.equivalent and _only(ok, "d/d").matched_by == "position"
    bad = compare(_net(DROP_SCALED), port, {"data": X})
    assert not bad.equivalent and not _only(bad, "d/d").isolated.passed


def test_pair_on_the_model_input_itself():
    """A port that leaves the Dropout out: ``--map d=data`` pairs the Caffe record with the Keras input tensor; its
    isolated value is the value fed (not the reference's record), so a scaling Dropout left out fails in both
    modes."""
    port = _keras(lambda t: t)
    ok = compare(_net(DROP), port, {"data": X}, user_map=["d=data"])
    lr = _only(ok, "d/d")
    assert ok.equivalent and lr.keras_layer == "data" and lr.isolated.max_abs == 0.0
    bad = compare(_net(DROP_SCALED), port, {"data": X}, user_map=["d=data"])
    lr = _only(bad, "d/d")
    assert not bad.equivalent and not lr.isolated.passed and not lr.chained.passed
    np.testing.assert_allclose(lr.chained.max_abs, 0.25 * float(np.max(np.abs(X))), rtol=1e-6)


def test_input_only_net_pairs_its_output_and_an_extra_keras_layer_fails():
    import keras

    net = _net("")
    rep = compare(net, convert(net), {"data": X})
    assert rep.equivalent and _only(rep, "data/data").chained.max_abs == 0.0
    doubled = compare(net, _keras(lambda t: keras.layers.Rescaling(2.0, name="twice")(t)), {"data": X})
    assert not doubled.equivalent and any("twice" in m for m in doubled.output_problems)


def test_input_records_that_feed_a_layer_are_not_pairs():
    net = _net(DROP.replace('top: "d"', 'top: "data"'))  # in place: the net output is d's record, not the input's
    rep = compare(net, convert(net), {"data": X})
    assert [lr.key for lr in rep.layers] == ["d/data"]


def test_nothing_paired_is_not_equivalent():
    """A port whose layers match nothing of the net: no pair at all, never a vacuous pass."""
    import keras

    net = _net('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
               'convolution_param { num_output: 4 kernel_size: 3 } }')
    port = _keras(lambda t: keras.layers.Dense(4, name="fc")(t))
    rep = compare(net, port, {"data": X}, diagnose=False)
    assert not rep.equivalent and rep.layers == []
    assert rep.verdict().startswith("NOT EQUIVALENT") and "Unmatched Caffe: c/c" in rep.verdict()
    assert any("no Caffe layer could be matched" in n for n in rep.notes)
