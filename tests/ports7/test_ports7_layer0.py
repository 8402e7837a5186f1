"""Layer 0 on real photographs (`check --images`): MTCNN's preprocessing is pycaffe's route without a channel swap
(MTCNN runs on RGB): raw_scale 255, mean 127.5, input_scale 0.0078125.  The Keras port carries it as a leading
Rescaling(1/128, -127.5/128); the bug variant also flips RGB -> BGR first (an OpenCV habit)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import _p7_build as B
import _p7_ports as P
from conftest import HERE, cli_env

CAFFE_SIDE = ["--raw-scale", "255", "--mean-value", "127.5,127.5,127.5", "--input-scale", "0.0078125"]


def check_images(tmp_path, nets, model_path):
    proto, w, _ = nets["rnet"]
    images = B.write_images(tmp_path)
    cmd = [sys.executable, "-m", "harness.cli", "check", str(proto), "--weights", str(w), "--keras", str(model_path),
           "--custom-objects", "_p7_ports:RNetBackbone", "--custom-objects", "_p7_ports:RGBToBGR",
           "--images", str(images), *CAFFE_SIDE, "--json", str(tmp_path / "r.json"), "--no-table"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), cwd=HERE, timeout=600)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    return r.returncode, json.loads((tmp_path / "r.json").read_text())


def saved(tmp_path, name):
    path = tmp_path / f"{name}.keras"
    B.PORTS[name][1]().save(path)
    return path


def test_rgb_port_equivalent(tmp_path, nets):
    rc, j = check_images(tmp_path, nets, saved(tmp_path, "rnet_rescale"))
    assert rc == 0 and j["equivalent"] and j["first_divergence"] is None
    assert j["layers"][0]["caffe_layer"] == "layer0:preprocess" and j["layers"][0]["chained"]["passed"]


@pytest.fixture(scope="module")
def bgr_run(tmp_path_factory, nets):
    tmp = tmp_path_factory.mktemp("bgr")
    return check_images(tmp, nets, saved(tmp, "rnet_bgr"))


def test_bgr_port_at_layer0(bgr_run):
    rc, j = bgr_run
    fd = j["first_divergence"]
    assert rc == 1 and (fd["caffe_layer"], fd["mode"]) == ("layer0:preprocess", "preprocess")
    assert fd["diagnosis"][0]["cause"] == "preprocess_channel_order"
    net_rows = [row for row in j["layers"][1:]]
    assert all(row["isolated"]["passed"] for row in net_rows if row["isolated"])   # the net itself is right


def test_bgr_wording(bgr_run):
    d = bgr_run[1]["first_divergence"]["diagnosis"][0]
    assert "channel_swap" not in d["explanation"], d["explanation"]
    assert "to_bgr" in d["fix"], d["fix"]


@pytest.mark.slow
def test_bgr_fix_applied(tmp_path, nets, bgr_run):
    """The fix as printed: remove the port's channel-reversing layer (named in the fix), keep its mean and scale."""
    fix = bgr_run[1]["first_divergence"]["diagnosis"][0]["fix"]
    assert "remove" in fix and "'to_bgr'" in fix, fix
    import keras

    bad = B.PORTS["rnet_bgr"][1]()
    i = keras.Input((24, 24, 3), name="image")
    x = i
    for layer in bad.layers[1:3]:               # the port's own to_bgr and mtcnn_norm, to_bgr removed as the fix says
        if layer.name != "to_bgr":
            x = layer(x)
    f = bad.get_layer("backbone")(x)
    m = keras.Model(i, [bad.get_layer("box")(f), bad.get_layer("cls")(f)])
    m.save(tmp_path / "fixed.keras")
    rc, j = check_images(tmp_path, nets, tmp_path / "fixed.keras")
    assert rc == 0 and j["equivalent"]
