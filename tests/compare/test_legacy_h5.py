"""Keras-2-era ``.h5`` ports keep working (issue 12, item 4): a port of the small net written with tf_keras 2.x at test
time, in a subprocess (tf_keras is Keras 2: it never shares a process with Keras 3 here), passes ``check --keras
port.h5``; the same port with its conv kernel reshaped fails at conv1 with ``kernel_reshaped``; a ``.h5`` or
``.keras`` holding a Lambda layer is refused by the Lambda's name (safe mode, exit 2, one line).

tf_keras is installed beside tensorflow-cpu with ``pip install --no-deps tf_keras`` (its dependency ``tensorflow``
would pull a second TensorFlow wheel); .ci/run does so.  Without it the tf_keras tests skip, saying so."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

from support.ports import write_port_files

needs_tf_keras = pytest.mark.skipif(importlib.util.find_spec("tf_keras") is None,
                                    reason="tf_keras is not installed (pip install --no-deps tf_keras)")

# A Keras 2 port of _ports.SMALL_NET (the hand-written keras_port, in tf_keras), from the Caffe weights in w.npz.
WRITER = r'''
import sys
import numpy as np
import tf_keras as K

L = K.layers
d = sys.argv[1]
z = np.load(f"{d}/w.npz")


def port(bug, name):
    w, b = z["conv1/0"], z["conv1/1"]
    kw = w.reshape(3, 3, 3, 8) if bug == "reshape" else w.transpose(2, 3, 1, 0)
    f = float(z["bn1/2"].reshape(-1)[0])
    f = 0.0 if f == 0 else 1.0 / f
    mean, var = z["bn1/0"] * f, z["bn1/1"] * f
    gamma, beta = z["scale1/0"], z["scale1/1"]
    fw, fb = z["fc/0"], z["fc/1"]
    inp = K.Input((13, 11, 3), name="data")
    x = L.ZeroPadding2D(1)(inp)
    conv = L.Conv2D(8, 3, strides=2, name="conv1")
    x = L.ReLU(name="relu1")(conv(x))
    x = L.ZeroPadding2D(((0, 1), (0, 1)))(x)
    x = L.MaxPooling2D(3, 2, name="pool1")(x)
    bn = L.BatchNormalization(epsilon=1e-5)
    x = bn(x)
    x = L.Flatten()(x)
    dense = L.Dense(10, name="fc")
    x = L.Softmax(name="prob")(dense(x))
    if bug == "lambda":
        x = L.Lambda(lambda t: t * 1.0, name="times_one")(x)
    m = K.Model(inp, x)
    conv.set_weights([kw, b])
    bn.set_weights([gamma, beta, mean, var])
    dense.set_weights([fw.reshape(10, 8, 3, 3).transpose(2, 3, 1, 0).reshape(72, 10), fb])
    m.save(f"{d}/{name}")


for bug, name in ((None, "port.h5"), ("reshape", "reshaped.h5"), ("lambda", "lambda.h5")):
    port(bug, name)
print(K.__version__)
'''


@pytest.fixture(scope="module")
def h5(tmp_path_factory):
    if importlib.util.find_spec("tf_keras") is None:
        pytest.skip("tf_keras is not installed (pip install --no-deps tf_keras)")
    d = tmp_path_factory.mktemp("legacy_h5")
    write_port_files(d, {})
    (d / "writer.py").write_text(WRITER)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, str(d / "writer.py"), str(d)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1].startswith("2."), r.stdout  # written by Keras 2 (tf_keras 2.x)
    return d


def _check(d: Path, model: str, capsys) -> tuple[int, dict, str]:
    out = d / f"{model}.json"
    rc = main(["check", str(d / "net.prototxt"), "--weights", str(d / "w.npz"), "--keras", str(d / model),
               "--json", str(out), "--no-table"])
    err = capsys.readouterr().err
    return rc, (json.loads(out.read_text()) if out.exists() else {}), err


@needs_tf_keras
def test_tf_keras_h5_port_passes(h5, capsys):
    import h5py

    with h5py.File(h5 / "port.h5", "r") as f:
        assert str(f.attrs["keras_version"]).startswith("2.")  # a Keras 2 file, not a Keras 3 one
    rc, rep, err = _check(h5, "port.h5", capsys)
    assert rc == 0 and rep["equivalent"], err
    assert rep["artefact"] == {"kind": "keras", "path": str(h5 / "port.h5")}
    by = {lr["caffe_layer"]: lr for lr in rep["layers"]}
    assert by["conv1"]["keras_layer"] == "conv1" and by["conv1"]["matched_by"] == "name"
    assert by["fc"]["keras_layer"] == "fc" and by["fc"]["chained"]["passed"] and by["fc"]["isolated"]["passed"]


@needs_tf_keras
def test_tf_keras_h5_port_with_a_reshaped_kernel_fails_at_conv1(h5, capsys):
    rc, rep, _ = _check(h5, "reshaped.h5", capsys)
    assert rc == 1 and not rep["equivalent"]
    fd = rep["first_divergence"]
    assert fd["caffe_layer"] == "conv1" and fd["diagnosis"][0]["cause"] == "kernel_reshaped"


@needs_tf_keras
def test_tf_keras_h5_with_a_lambda_is_refused_by_name(h5, capsys):
    rc, rep, err = _check(h5, "lambda.h5", capsys)
    assert rc == 2 and rep == {}
    assert err.count("\n") == 1 and err.startswith("caffe-harness: error: ") and "Traceback" not in err
    assert "'times_one'" in err and "Lambda layer" in err and "lambda.h5" in err and "unsafe" in err


def test_keras3_file_with_lambdas_is_refused_by_their_names(tmp_path, capsys):
    """A Lambda layer and a lambda given as an activation: both are code, both named (the first in the message)."""
    import keras

    write_port_files(tmp_path, {})
    inp = keras.Input((13, 11, 3), name="data")
    x = keras.layers.Conv2D(8, 3, name="conv_with_lambda", activation=lambda t: t * 3.0)(inp)
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double_it")(x)
    keras.Model(inp, x).save(tmp_path / "lam.keras")
    rc, rep, err = _check(tmp_path, "lam.keras", capsys)
    assert rc == 2 and rep == {} and err.count("\n") == 1
    assert "layer 'conv_with_lambda' holds a marshalled Python function" in err
    assert "(and 1 more: 'double_it')" in err and "lam.keras" in err
