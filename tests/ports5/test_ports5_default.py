"""Issue 25, default sample: correct ports of trained-like Caffe nets on Caffe-scale photo crops are EQUIVALENT (a
false alarm is a bug), checked as a user would (``harness.compare``; the CLI runs are in the slow file), and three
sabotaged ports are NOT EQUIVALENT at the right layer, with the cause the README / issue 25 names.

The default run keeps two nets (res7's 7x7/2 stem, alex11's 11x11/4) on TensorFlow; vgg3 and the 1,000-pair run over
TensorFlow, JAX, torch and LiteRT are test_ports5_slow.py (``@pytest.mark.slow``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from _p5_corpus import failing_layers, prepare
from _p5_images import input_batch
from _p5_nets import forward, load_weights, spec
from _p5_ports import build_port

harness = pytest.importorskip("harness")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("ports5")


def _report(work, net, batch, **opts):
    d = prepare(work, net)
    w = load_weights(d / "w.npz")
    style = opts.pop("style", "named")
    model = build_port(net, w, style, **opts)
    x = input_batch(batch, spec(net)[0][1:])
    rep = harness.compare(str(d / "net.prototxt"), model, {"data": x}, weights=str(d / "w.npz"))
    return rep, json.loads(rep.to_json())


@pytest.mark.parametrize("net,style", [("res7", "fused"), ("alex11", "named")])
def test_hand_port_computes_the_net(work, net, style):
    """The corpus itself: the hand-written port agrees with an own float64 forward pass written from Caffe's rules
    (so a NOT EQUIVALENT below is the harness's verdict on a right port, not a wrong port)."""
    d = prepare(work, net)
    w = load_weights(d / "w.npz")
    x = input_batch(5, spec(net)[0][1:])
    ref = forward(net, w, x)
    got = np.asarray(build_port(net, w, style)(x.transpose(0, 2, 3, 1)))
    assert np.abs(got - ref["prob"]).max() < 2e-6
    assert ref["prob"].max() > 0.3          # a fitted classifier, not a uniform softmax


@pytest.mark.parametrize("net,style,batch", [("res7", "named", 0), ("alex11", "fused", 1)])
def test_correct_hand_port_is_equivalent(work, net, style, batch):
    rep, js = _report(work, net, batch, style=style)
    assert js["equivalent"] is True and bool(rep), (failing_layers(js), rep.table())
    assert failing_layers(js) == []


def _first(js):
    fd = js["first_divergence"]
    assert fd is not None, "no first divergence"
    return fd["caffe_layer"], [d["cause"] for d in fd["diagnosis"]], fd


def test_perturbed_weight_is_caught_at_its_layer(work):
    rep, js = _report(work, "res7", 4, perturb=("res2a_branch2b", 1e-3))
    assert js["equivalent"] is False
    layer, causes, _ = _first(js)
    assert layer == "res2a_branch2b", (layer, causes)
    row = next(L for L in js["layers"] if L["caffe_layer"] == "res2a_branch2b")
    assert row["params"]["status"] == "different"
    assert [L["caffe_layer"] for L in js["layers"] if L["isolated"] and not L["isolated"]["passed"]] == ["res2a_branch2b"]


def test_bn_epsilon_is_caught_with_its_cause(work):
    rep, js = _report(work, "res7", 5, bn_eps=1e-3)
    assert js["equivalent"] is False
    layer, causes, fd = _first(js)
    assert (layer, causes[:1]) == ("bn_conv1", ["bn_epsilon"]), (layer, causes)
    assert "1e-05" in fd["diagnosis"][0]["fix"]


def test_moved_stride_is_caught_as_stride(work):
    """Issue 25 item 4/5: the stride moved from res2a_branch2a (1x1) to res2a_branch2b (3x3) is found at
    res2a_branch2a with the ``stride`` cause, and the fix names the Keras ``strides=``."""
    rep, js = _report(work, "res7", 6, move_stride=True)
    assert js["equivalent"] is False
    layer, causes, fd = _first(js)
    assert layer == "res2a_branch2a", (layer, causes)
    assert causes[:1] == ["stride"], (causes, fd["diagnosis"][:2])
    assert "strides=" in fd["diagnosis"][0]["fix"]
