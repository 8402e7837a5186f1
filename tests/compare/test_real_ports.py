"""Ports as published: subclassed ``keras.Model`` classes with their own ``call()`` (a live object, the user's wrap
``keras.Model(i, port(i))``, a ``.keras`` file loaded with ``--custom-objects``), ``keras.ops`` activations in
``call()``, and output heads whose names lie (named the other way round from the prototxt): a shape that cannot fit
overrules a name (issue 21, items 1 and 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

import harness
from harness.caffe import load_net_text
from harness.weights import random_weights

NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 12 dim: 14 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""

# a subclassed port as published ports write them: layers in __init__, keras.ops activations in call()
PORT_MODULE = '''
import keras


@keras.saving.register_keras_serializable(package="ports")
class SmallPort(keras.Model):
    def __init__(self, reshape_bug=False, **kwargs):
        super().__init__(**kwargs)
        self.reshape_bug = reshape_bug
        self.conv1 = keras.layers.Conv2D(4, 3, name="conv1")
        self.pool1 = keras.layers.MaxPooling2D(2, name="pool1")
        self.perm = keras.layers.Permute((3, 1, 2))  # Caffe's C, H, W flatten order
        self.flat = keras.layers.Flatten()
        self.fc = keras.layers.Dense(5, name="fc")

    def call(self, x, training=False):
        x = keras.ops.relu(self.conv1(x))
        x = self.flat(self.perm(self.pool1(x)))
        return keras.ops.softmax(self.fc(x))

    def get_config(self):
        return {**super().get_config(), "reshape_bug": self.reshape_bug}
'''


@pytest.fixture(scope="module")
def port_module(tmp_path_factory):
    d = tmp_path_factory.mktemp("ports")
    (d / "published_port.py").write_text(PORT_MODULE)
    sys.path.insert(0, str(d))
    import published_port

    yield d, published_port
    sys.path.remove(str(d))


@pytest.fixture(scope="module")
def net():
    return random_weights(load_net_text(NET), seed=3)


def _data(seed=1, hw=(12, 14)):
    return {"data": np.random.default_rng(seed).standard_normal((2, 3, *hw))}


def _port(mod, net, *, bug=False):
    p = mod.SmallPort(name="port")
    p(np.zeros((1, 12, 14, 3), np.float32))
    w, b = (np.asarray(a) for a in net.layer("conv1").blobs)
    p.conv1.set_weights([w.reshape(3, 3, 3, 4) if bug else w.transpose(2, 3, 1, 0), b])
    fw, fb = (np.asarray(a) for a in net.layer("fc").blobs)
    p.fc.set_weights([fw.T, fb])
    return p


def _pairs(report):
    return {r.caffe_layer: r.keras_layer for r in report.layers}


def test_a_subclassed_port_is_compared_layer_by_layer(port_module, net):
    _, mod = port_module
    report = harness.compare(net, _port(mod, net), _data())
    assert report.equivalent, report.verdict()
    # every Caffe layer has its own Keras counterpart (the keras.ops activations became layers of their own)
    pairs = _pairs(report)
    assert {k: pairs[k] for k in ("conv1", "pool1", "fc")} == {"conv1": "conv1", "pool1": "pool1", "fc": "fc"}
    assert pairs["relu1"].startswith("relu") and pairs["prob"].startswith("softmax")


def test_a_subclassed_port_with_a_reshaped_kernel_is_named_at_its_layer(port_module, net):
    _, mod = port_module
    report = harness.compare(net, _port(mod, net, bug=True), _data())
    assert not report.equivalent
    fd = report.first_divergence
    assert fd.caffe_layer == "conv1"
    assert fd.diagnosis[0].cause == "kernel_reshaped"


def test_the_users_wrap_of_a_subclassed_port_is_inlined(port_module, net):
    _, mod = port_module
    port = _port(mod, net)
    i = keras.Input((12, 14, 3), name="data")
    wrap = keras.Model(i, port(i))
    assert [type(lay).__name__ for lay in wrap.layers] == ["InputLayer", "SmallPort"]  # one opaque layer
    report = harness.compare(net, wrap, _data())
    assert report.equivalent, report.verdict()
    assert _pairs(report)["conv1"] == "conv1" and _pairs(report)["fc"] == "fc"
    bad = harness.compare(net, keras.Model(i, _port(mod, net, bug=True)(i)), _data())
    assert bad.first_divergence.caffe_layer == "conv1"


def test_a_saved_subclassed_port_is_checked_from_the_cli(port_module, net, tmp_path):
    d, mod = port_module
    model = tmp_path / "port.keras"
    _port(mod, net).save(model)
    proto = tmp_path / "net.prototxt"
    proto.write_text(NET)
    weights = tmp_path / "net.caffemodel"
    from harness.caffe import write_caffemodel

    write_caffemodel(net, weights)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(d), *sys.path])}
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "harness.cli", "check", str(proto), "--weights", str(weights),
                        "--keras", str(model), "--custom-objects", "published_port:SmallPort", "--json", str(out),
                        "--no-table"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    assert doc["equivalent"] is True
    assert {row["caffe_layer"] for row in doc["layers"]} >= {"conv1", "pool1", "fc", "prob"}


def test_a_call_that_cannot_run_symbolically_is_refused_in_one_line(net):
    class TfPort(keras.Model):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.conv1 = keras.layers.Conv2D(4, 3)

        def call(self, x):
            return np.asarray(self.conv1(x)) * 2  # NumPy on a symbolic tensor

    p = TfPort(name="tfport")
    p(np.zeros((1, 12, 14, 3), np.float32))
    with pytest.raises(harness.KerasModelError) as e:
        harness.compare(net, p, _data())
    msg = str(e.value)
    assert "\n" not in msg and "subclassed Keras model 'tfport'" in msg and "(None, 12, 14, 3)" in msg


HEADS = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 12 dim: 14 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 5 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv4-1" type: "Convolution" bottom: "conv1" top: "conv4-1" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "conv4-2" type: "Convolution" bottom: "conv1" top: "conv4-2" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "prob1" type: "Softmax" bottom: "conv4-1" top: "prob1" }
"""


def _heads_port(net, *, reshape_bug=False):
    """An MTCNN-style two-head port whose heads are named the other way round from the prototxt; the 2-channel head
    fuses Caffe's Softmax (``activation="softmax"``)."""
    def w(name, bug=False):
        k, b = (np.asarray(a) for a in net.layer(name).blobs)
        return [k.reshape(k.shape[2], k.shape[3], k.shape[1], k.shape[0]) if bug else k.transpose(2, 3, 1, 0), b]

    inp = keras.Input((12, 14, 3), name="data")
    c1 = keras.layers.Conv2D(5, 3, activation="relu", name="conv1")
    x = c1(inp)
    cls = keras.layers.Conv2D(2, 1, activation="softmax", name="conv4-2")  # computes Caffe's conv4-1 + prob1
    box = keras.layers.Conv2D(4, 1, name="conv4-1")  # computes Caffe's conv4-2
    model = keras.Model(inp, [cls(x), box(x)])
    c1.set_weights(w("conv1", reshape_bug))
    cls.set_weights(w("conv4-1"))
    box.set_weights(w("conv4-2"))
    return model


def test_heads_named_the_other_way_round_pair_by_their_shapes():
    net = random_weights(load_net_text(HEADS), seed=5)
    data = {"data": np.random.default_rng(2).standard_normal((2, 3, 12, 14))}
    report = harness.compare(net, _heads_port(net), data)
    assert report.equivalent, report.verdict()
    pairs = {r.key: (r.keras_layer, r.segment) for r in report.layers}
    assert pairs["prob1/prob1"] == ("conv4-2", ("conv4-1", "prob1"))
    assert pairs["conv4-2/conv4-2"] == ("conv4-1", ("conv4-2",))
    # the intuitive --map swap says the same: the fused softmax is Caffe's Softmax, not an extra layer
    mapped = harness.compare(net, _heads_port(net), data, user_map={"conv4-1": "conv4-2", "conv4-2": "conv4-1"})
    assert mapped.equivalent, mapped.verdict()
    # a real bug upstream of the lying names is still found where it is
    bad = harness.compare(net, _heads_port(net, reshape_bug=True), data)
    assert bad.first_divergence.caffe_layer == "conv1"
    assert bad.first_divergence.diagnosis[0].cause == "kernel_reshaped"


def test_a_layer_of_the_wrong_size_is_still_paired_by_its_name():
    """The name is deferred, not dropped: a pooling that rounds the other way keeps its pair and its shape cause."""
    net = random_weights(load_net_text(NET.replace("dim: 12 dim: 14", "dim: 11 dim: 13")), seed=3)
    w, b = (np.asarray(a) for a in net.layer("conv1").blobs)
    inp = keras.Input((11, 13, 3), name="data")
    conv = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")
    x = keras.layers.MaxPooling2D(2, name="pool1")(conv(inp))  # floor: (4, 5); Caffe's ceil gives (5, 6)
    fc = keras.layers.Dense(5, activation="softmax", name="fc")
    model = keras.Model(inp, fc(keras.layers.Flatten()(keras.layers.Permute((3, 1, 2))(x))))
    conv.set_weights([w.transpose(2, 3, 1, 0), b])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = harness.compare(net, model, _data(hw=(11, 13)))
    pairs = {r.caffe_layer: r.keras_layer for r in report.layers}
    assert pairs["pool1"] == "pool1"
    assert report.first_divergence.caffe_layer == "pool1"
    assert report.first_divergence.diagnosis[0].cause == "pool_rounding"


FCN = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 12 dim: 14 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "score" type: "Convolution" bottom: "conv1" top: "score" convolution_param { num_output: 5 kernel_size: 1 } }
"""


def test_a_fully_convolutional_net_runs_at_another_size_and_an_nhwc_array_gets_the_hint(tmp_path):
    proto = tmp_path / "fcn.prototxt"
    proto.write_text(FCN)
    rng = np.random.default_rng(4)
    other = harness.compare(str(proto), None, {"data": rng.standard_normal((2, 3, 17, 19))})
    assert other.equivalent, other.verdict()
    assert {r.caffe_layer: r.shape for r in other.layers}["score"] == (2, 5, 15, 17)
    with pytest.raises(harness.HarnessError) as e:
        harness.compare(str(proto), None, {"data": rng.standard_normal((2, 17, 19, 3))})
    assert "(2, 17, 19, 3), which looks NHWC" in str(e.value) and "x.transpose(0, 3, 1, 2)" in str(e.value)
