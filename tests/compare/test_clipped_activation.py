"""ReLU6 where Caffe has ReLU (keras.applications.MobileNet) and the reverse: cause activation_clipped, named at the
activation, with a fix that fixes (applied to the port, the pair passes)."""

from __future__ import annotations

import numpy as np
import pytest

NET = """name: "clip"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 7 dim: 5 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "act1" type: "%s" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2" convolution_param { num_output: 5 kernel_size: 1 } }
"""


def _net(act: str):
    from harness.caffe import load_net_text
    from harness.weights import random_weights

    net = random_weights(load_net_text(NET % act), 1)
    return net


def _port(net, keras_act):
    import keras
    from keras import layers as L

    w1, b1 = (np.asarray(b, np.float32) for b in net.layer("conv1").blobs)
    w2, b2 = (np.asarray(b, np.float32) for b in net.layer("conv2").blobs)
    inp = keras.Input((7, 5, 3))
    c1, c2 = L.Conv2D(4, 3, padding="same"), L.Conv2D(5, 1)
    x = c2(keras_act(c1(inp)))
    c1.set_weights([w1.transpose(2, 3, 1, 0), b1])
    c2.set_weights([w2.transpose(2, 3, 1, 0), b2])
    return keras.Model(inp, x)


def _x():
    return (np.random.default_rng(2).standard_normal((2, 3, 7, 5)) * 20).astype(np.float32)  # conv1 well above 6


@pytest.mark.parametrize("caffe_act,bad,good", [
    ("ReLU", lambda L: L.ReLU(6.0), lambda L: L.ReLU()),
    ("ReLU", lambda L: L.Activation("relu6"), lambda L: L.Activation("relu")),
    ("ReLU6", lambda L: L.ReLU(), lambda L: L.ReLU(max_value=6.0)),
])
def test_clipped_activation_is_diagnosed_at_the_activation_and_the_fix_works(caffe_act, bad, good):
    from keras import layers as L

    from harness.compare import compare

    net = _net(caffe_act)
    x = _x()
    ref_max = None
    rep = compare(net, _port(net, bad(L)), x)
    assert not rep
    fd = rep.first_divergence
    assert fd.caffe_layer == "act1", rep.verdict()
    top = fd.diagnosis[0]
    assert top.cause == "activation_clipped" and top.confidence > 0.9, rep.verdict()
    if caffe_act == "ReLU":
        assert "max_value" in top.fix and "ReLU()" in top.fix
        lr = next(lr for lr in rep.layers if lr.key == "act1/conv1")
        ref_max = lr.isolated.worst_ref
        assert ref_max > 6 and lr.isolated.worst_keras == pytest.approx(6.0)
    else:
        assert "ReLU(max_value=6.0)" in top.fix
    assert compare(net, _port(net, good(L)), x), "the fix applied must pass"
