"""Parameter evidence: the port's own weights and configuration read against Caffe's, whatever the port's names."""

from __future__ import annotations

import numpy as np
import pytest

NET = """name: "ev"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 7 dim: 5 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "sc1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 6 } }
"""


def _net():
    from harness.caffe import load_net_text
    from harness.weights import random_weights

    return random_weights(load_net_text(NET), 7)


def _port(net, bug=None):
    import keras
    from keras import layers as L

    w, b = (np.asarray(x, np.float32) for x in net.layer("conv1").blobs)
    mean, var, fac = (np.asarray(x, np.float32) for x in net.layer("bn1").blobs)
    gamma, beta = (np.asarray(x, np.float32) for x in net.layer("sc1").blobs)
    fw, fb = (np.asarray(x, np.float32) for x in net.layer("fc").blobs)
    f = 1.0 if bug == "factor" else 1.0 / fac[0]
    kern = w.reshape(3, 3, 3, 4) if bug == "reshape" else w.transpose(2, 3, 1, 0)
    dense = fw.reshape(6, 4, 7, 5).transpose(2, 3, 1, 0).reshape(140, 6)
    inp = keras.Input((7, 5, 3))
    c = L.Conv2D(4, 3, padding="same", use_bias=bug != "bias")
    bn = L.BatchNormalization(epsilon=1e-3 if bug == "eps" else 1e-5)
    d = L.Dense(6)
    out = d(L.Flatten()(L.ReLU(6.0 if bug == "relu6" else None)(bn(c(inp)))))
    c.set_weights([kern] if bug == "bias" else [kern, b])
    g, be = (np.ones_like(gamma), np.zeros_like(beta)) if bug == "scale" else (gamma, beta)
    bn.set_weights([g, be, mean * f, var * f])
    d.set_weights([dense, fb])
    return keras.Model(inp, out)


def _params(rep):
    return {lr.key: lr.params for lr in rep.layers}


def _compare(net, model):
    from harness.compare import compare

    return compare(net, model, np.random.default_rng(0).standard_normal((2, 3, 7, 5)).astype(np.float32))


def test_a_correct_port_is_equal_everywhere_including_the_hwc_flatten_order():
    net = _net()
    rep = _compare(net, _port(net))
    assert rep
    p = _params(rep)
    assert p["conv1/conv1"]["status"] == "equal" and p["sc1/conv1"]["status"] == "equal"
    assert [c["result"] for c in p["fc/fc"]["checks"]] == ["equal (rows in H, W, C order)", "equal"]
    assert p["relu1/conv1"]["checks"] == [{"what": "negative slope", "result": "equal", "caffe": 0.0, "keras": 0.0},
                                          {"what": "clip", "result": "equal", "caffe": None, "keras": None}]
    assert "│ ok" in rep.table(width=240)


@pytest.mark.parametrize("bug,key,what,result,column", [
    ("reshape", "conv1/conv1", "kernel", "reshaped", "kernel reshaped"),
    ("bias", "conv1/conv1", "bias", "missing", "bias missing"),
    ("factor", "sc1/conv1", "mean", "factor ignored", "mean factor ignored"),
    ("scale", "sc1/conv1", "gamma", "Scale left out", "gamma Scale left out"),
    ("eps", "sc1/conv1", "epsilon", "different", "epsilon 0.001 (Caffe 1e-05)"),
    ("relu6", "relu1/conv1", "clip", "different", "clip 6 (Caffe none)"),
])
def test_each_bug_shows_in_the_evidence_of_its_own_pair(bug, key, what, result, column):
    from harness.compare.reports.result import params_column as short

    net = _net()
    rep = _compare(net, _port(net, bug))
    p = _params(rep)
    check = next(c for c in p[key]["checks"] if c["what"] == what)
    assert check["result"] == result
    assert p[key]["status"] == ("different" if result == "different" else "transformed")
    assert short(p[key]) == column
    assert all(v["status"] in ("equal", "none") for k, v in p.items() if k != key), p
    assert rep.to_dict()["layers"][[lr.key for lr in rep.layers].index(key)]["params"] == p[key]


@pytest.mark.parametrize("bug,explains", [("scale", "leaves out the Scale"), ("stats", "not Caffe's statistics")])
def test_a_batchnormalization_covering_only_batchnorm_or_only_scale_is_bn_scale_split(bug, explains):
    """One BatchNormalization for BatchNorm + Scale whose gamma/beta (or whose statistics) were never loaded: the
    cause has its own code, and loading the missing half (the fix) makes the pair pass."""
    import keras

    net = _net()
    model = _port(net, "scale" if bug == "scale" else None)
    if bug == "stats":
        bn = next(lay for lay in model.layers if isinstance(lay, keras.layers.BatchNormalization))
        g, b, _, _ = bn.get_weights()
        bn.set_weights([g, b, np.zeros_like(g), np.ones_like(g)])
    rep = _compare(net, model)
    # named at the half that is missing: the Scale whose gamma/beta were never loaded, or the BatchNorm
    assert not rep and rep.first_divergence.caffe_layer == ("sc1" if bug == "scale" else "bn1")
    top = rep.first_divergence.diagnosis[0]
    assert top.cause == "bn_scale_split" and top.confidence > 0.99 and explains in top.explanation
    assert _compare(net, _port(net))  # both halves loaded: equivalent


def test_padding_evidence_reads_zero_padding_same_and_ceil_overhang():
    """Conv pad 1 (stride 2) as ZeroPadding2D(1) + valid: equal; as TF 'same': different ((0, 1) read where Caffe
    reads (1, 0)); a ceil-mode pool as ZeroPadding2D(((0, 1), (0, 1))) + valid: equal (Caffe's last window reads one
    overhang row)."""
    import keras
    from keras import layers as L

    from harness.caffe import load_net_text
    from harness.compare.engine.evidence import evidence
    from harness.compare.engine.match import Pair

    net = load_net_text("""name: "pads"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 12 dim: 10 } } }
layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: %d } }
layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
""" % 2)

    def pad_of(build):
        inp = keras.Input((12, 10, 3))
        conv, pool, x = build(inp)
        keras.Model(inp, x)
        pc = evidence(net, Pair("c/c", "c", "c", conv.name, 0, "nhwc", "position"), conv)
        pp = evidence(net, Pair("p/p", "p", "p", pool.name, 0, "nhwc", "position"), pool)
        return [next(c for c in e["checks"] if c["what"] == "padding") for e in (pc, pp)]

    def explicit(inp):
        conv, pool = L.Conv2D(4, 3, strides=2), L.MaxPooling2D(3, 2)
        x = pool(L.ZeroPadding2D(((0, 1), (0, 1)))(conv(L.ZeroPadding2D(1)(inp))))
        return conv, pool, x

    def tf_same(inp):
        conv, pool = L.Conv2D(4, 3, strides=2, padding="same"), L.MaxPooling2D(3, 2)
        return conv, pool, pool(conv(inp))

    c, p = pad_of(explicit)
    assert c["result"] == "equal" and c["caffe"] == [[1, 0], [1, 0]]  # stride 2 on 12: the last pad row is never read
    # 6x5 -> 3x2 in ceil mode: the last row window reads one overhang row, no column overhang
    assert p == {"what": "padding", "result": "equal", "caffe": [[0, 1], [0, 0]], "keras": [[0, 1], [0, 0]]}
    c, p = pad_of(tf_same)
    assert c == {"what": "padding", "result": "different", "caffe": [[1, 0], [1, 0]], "keras": [[0, 1], [0, 1]]}
    assert p["result"] == "different" and p["keras"] == [[0, 0], [0, 0]]  # no ceil overhang on the Keras side
