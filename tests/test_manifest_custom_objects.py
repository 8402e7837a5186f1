"""``custom_objects`` in a manifest: the same opt-in as ``--custom-objects`` (corpus21 gap G7), so that a manifest
can check a subclassed ``.keras`` port; a bad value is one error naming the manifest, the key and the value."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from harness.caffe import load_net_text
from harness.errors import HarnessError
from harness.manifest import ManifestError, prepare, read_checks, resolve, run_check
from harness.weights import random_weights

NET = """name: "sub"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 13 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2" convolution_param { num_output: 5 kernel_size: 1 } }
"""

MODULE = '''
import keras


class SubPort(keras.Model):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.conv1 = keras.layers.Conv2D(4, 3, name="conv1")
        self.conv2 = keras.layers.Conv2D(5, 1, name="conv2")

    def call(self, x):
        return self.conv2(keras.ops.relu(self.conv1(x)))
'''


@pytest.fixture
def port_dir(tmp_path, monkeypatch):
    (tmp_path / "m21_port.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import m21_port

    net = random_weights(load_net_text(NET), 4)
    (tmp_path / "sub.prototxt").write_text(NET)
    np.savez(tmp_path / "sub.npz", **{f"{n}/{i}": np.asarray(b, np.float32) for n in ("conv1", "conv2")
                                      for i, b in enumerate(net.layer(n).blobs)})
    p = m21_port.SubPort(name="sub")
    p(np.zeros((1, 9, 13, 3), np.float32))
    for name in ("conv1", "conv2"):
        w, b = (np.asarray(a, np.float32) for a in net.layer(name).blobs)
        getattr(p, name).set_weights([w.transpose(2, 3, 1, 0), b])
    p.save(tmp_path / "sub.keras")
    np.savez(tmp_path / "x.npz", data=np.random.default_rng(3).standard_normal((2, 3, 9, 13)).astype(np.float32))
    yield tmp_path
    sys.modules.pop("m21_port", None)


def _checks(d, extra: str) -> list[dict]:
    m = d / "caffe-equivalence.toml"
    m.write_text('prototxt = "sub.prototxt"\nweights = "sub.npz"\nkeras = "sub.keras"\ninputs = "x.npz"\n' + extra)
    return [resolve(c, m) for c in read_checks(m)]


def test_a_manifest_checks_a_subclassed_port_with_custom_objects(port_dir):
    (check,) = _checks(port_dir, 'custom_objects = ["m21_port:SubPort"]\n')
    rep = run_check(prepare(check), check)
    assert rep.equivalent, rep.verdict()
    assert {r.caffe_layer: r.keras_layer for r in rep.layers}["conv2"] == "conv2"


def test_without_the_key_the_error_names_the_manifest_key(port_dir):
    (check,) = _checks(port_dir, "")
    with pytest.raises(HarnessError, match=r'custom_objects = \["your_module:.*SubPort"\] in the manifest') as e:
        prepare(check)
    assert "--custom-objects your_module" not in str(e.value)


@pytest.mark.parametrize("bad, says", [('"m21_port:SubPort"', "expected a list"), ('["m21_port"]', "expected a list"),
                                       ("[1]", "expected a list")])
def test_a_malformed_value_is_one_manifest_error(port_dir, bad, says):
    with pytest.raises(ManifestError, match=rf"caffe-equivalence\.toml: custom_objects = .*{says}"):
        _checks(port_dir, f"custom_objects = {bad}\n")


def test_an_unimportable_module_is_one_error_naming_the_key(port_dir):
    (check,) = _checks(port_dir, 'custom_objects = ["no_such_m21:SubPort"]\n')
    with pytest.raises(HarnessError, match=r"custom_objects = \['no_such_m21:SubPort'\]: 'no_such_m21:SubPort': "
                                           r"cannot import module 'no_such_m21'"):
        prepare(check)
