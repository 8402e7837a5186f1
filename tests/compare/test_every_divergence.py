"""Every independent divergence is diagnosed in one run, in execution order, each with its own cause and a fix that
fixes: a MobileNet-style port with TF 'same' padding at conv1, BatchNormalization epsilon 1e-3 and ReLU6 (three bugs,
five layers) gets all of them; applying every fix makes the port equivalent."""

from __future__ import annotations

import numpy as np

NET = """name: "mobilenet_like"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 12 dim: 10 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "conv1/bn" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "conv1/scale" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2" convolution_param { num_output: 5 kernel_size: 1 } }
layer { name: "conv2/bn" type: "BatchNorm" bottom: "conv2" top: "conv2" }
layer { name: "conv2/scale" type: "Scale" bottom: "conv2" top: "conv2" scale_param { bias_term: true } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
"""


def _net():
    from harness.caffe import load_net_text
    from harness.weights import random_weights

    return random_weights(load_net_text(NET), 2)


def _port(net, *, pad=((0, 1), (0, 1)), eps=1e-3, clip=6.0):
    """keras.applications.MobileNet's habits: pad bottom/right only, default epsilon, ReLU(6.)."""
    import keras
    from keras import layers as L

    inp = keras.Input((12, 10, 3))
    c1, c2 = L.Conv2D(4, 3, strides=2), L.Conv2D(5, 1)
    b1, b2 = L.BatchNormalization(epsilon=eps), L.BatchNormalization(epsilon=eps)
    x = L.ReLU(clip)(b1(c1(L.ZeroPadding2D(pad)(inp))))
    x = L.ReLU(clip)(b2(c2(x)))
    for c, n in ((c1, "conv1"), (c2, "conv2")):
        w, b = net.layer(n).blobs
        c.set_weights([np.asarray(w).transpose(2, 3, 1, 0), b])
    for bl, n in ((b1, "conv1"), (b2, "conv2")):
        mean, var, f = net.layer(f"{n}/bn").blobs
        g, beta = net.layer(f"{n}/scale").blobs
        bl.set_weights([g, beta, mean / f[0], var / f[0]])
    return keras.Model(inp, x)


def _x():
    return (np.random.default_rng(0).standard_normal((2, 3, 12, 10)) * 10).astype(np.float32)


def test_three_independent_bugs_are_all_diagnosed_in_one_run():
    from harness.compare import compare

    net = _net()
    rep = compare(net, _port(net), _x())
    assert not rep
    got = [(rep.first_divergence.caffe_layer, rep.first_divergence.diagnosis[0].cause)] + [
        (d.caffe_layer, d.diagnosis[0].cause) for d in rep.divergences]
    assert got == [("conv1", "same_padding"), ("conv1/bn", "bn_epsilon"), ("relu1", "activation_clipped"),
                   ("conv2/bn", "bn_epsilon"), ("relu2", "activation_clipped")]
    assert all(d.diagnosis[0].confidence > 0.9 for d in rep.divergences)
    text = rep.verdict()
    assert "Also diverging in isolation (4 more layer(s)" in text
    assert "BatchNormalization(epsilon=1e-05)" in text and "ReLU() with no max_value" in text
    fix = rep.first_divergence.diagnosis[0].fix
    assert "change ZeroPadding2D" in fix and "(it pads ((0, 1), (0, 1))) to keras.layers.ZeroPadding2D((1, 1))" in fix
    assert "not 'same'" not in fix  # the port's conv is padding='valid' already
    d = rep.to_dict()
    assert [x["caffe_layer"] for x in d["divergences"]] == ["conv1/bn", "relu1", "conv2/bn", "relu2"]


def test_applying_every_printed_fix_makes_the_port_equivalent():
    from harness.compare import compare

    net = _net()
    assert compare(net, _port(net, pad=((1, 1), (1, 1)), eps=1e-5, clip=None), _x())
    # one fix at a time leaves exactly the others
    rep = compare(net, _port(net, pad=((1, 1), (1, 1))), _x())
    assert not rep and rep.first_divergence.diagnosis[0].cause == "bn_epsilon"
    assert [d.diagnosis[0].cause for d in rep.divergences] == ["activation_clipped", "bn_epsilon",
                                                                "activation_clipped"]
