"""Issue 15, converter and comparator side: Convolution/Deconvolution over several bottom/top pairs (one set of weights,
``conv_layer.cpp``), BatchNorm with ``use_global_stats: false`` (the batch's own statistics at TEST), and the CLI on
nets Caffe accepts (duplicate names, a legacy input given its shape).  Values are computed by hand from Caffe's
rules where they can be; the golden real-Caffe cases are in test_convert_golden.py."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import support.converted as K
from support import assert_blob_close, make_net, max_rel_err
import harness.convert as hc
from harness.cli import main
from harness.compare import compare
from harness.convert.custom_layers import CaffeBatchStatsNorm

N, C, H, W = 2, 3, 5, 7
SHARED = """
layer { name: "conv" type: "Convolution" bottom: "a" bottom: "b" bottom: "c" top: "ya" top: "yb" top: "yc"
        convolution_param { num_output: 4 kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 0 stride: 2 } }
layer { name: "up" type: "Deconvolution" bottom: "ya" bottom: "yb" top: "ua" top: "ub"
        convolution_param { num_output: 2 kernel_size: 3 stride: 2 pad: 1 } }
"""
SHAPES = {"a": (N, C, H, W), "b": (N, C, H, W), "c": (N, C, H, W)}


@pytest.fixture(scope="module")
def shared():
    net = make_net(SHARED, SHAPES, seed=2)
    rng = np.random.default_rng(11)
    feed = {"a": rng.standard_normal(SHAPES["a"]), "b": 10 * rng.standard_normal(SHAPES["b"]),
            "c": rng.standard_normal(SHAPES["c"]) + 3}
    return net, feed, hc.convert(net)


def test_shared_conv_matches_reference_on_every_top(shared):
    net, feed, model = shared
    _, errs = K.check_vs_reference(net, feed=feed, model=model)
    assert set(errs) >= {"conv/ya", "conv/yb", "conv/yc", "up/ua", "up/ub"}
    assert max(errs.values()) < K.REL_TOL


def test_one_keras_layer_per_step_shares_the_weights(shared):
    net, feed, model = shared
    conv = model.get_layer("conv__conv")
    assert len(conv._inbound_nodes) == 3 and len(conv.weights) == 2  # one kernel, one bias, three applications
    np.testing.assert_array_equal(conv.get_weights()[0], net.layer("conv").blobs[0].transpose(2, 3, 1, 0))
    assert len(model.get_layer("conv__pad")._inbound_nodes) == 3
    assert len(model.get_layer("up__deconv" if "up__deconv" in [x.name for x in model.layers] else "up__full")
               ._inbound_nodes) == 2
    mp = model.harness_mapping["keys"]
    assert [(mp[f"conv/{t}"]["layer"], mp[f"conv/{t}"]["index"]) for t in ("ya", "yb", "yc")] == \
        [("conv", 0), ("conv", 1), ("conv", 2)]
    got = K.run_keys(model, feed, ["conv/ya", "conv/yb", "conv/yc"])
    # top i is the application to bottom i: a shifted (+3) bottom c and a 10x bottom b give different tops
    assert max_rel_err(got["conv/yb"], got["conv/ya"]) > 0.5 and max_rel_err(got["conv/yc"], got["conv/ya"]) > 0.5


def test_shared_conv_constant_weights_by_hand():
    """Weight 1 everywhere, bias 0.5: each output is 0.5 + the sum of the (zero-padded) 3x2 window over channels."""
    text = ('layer { name: "conv" type: "Convolution" bottom: "a" bottom: "b" top: "ya" top: "yb" '
            'convolution_param { num_output: 2 kernel_h: 3 kernel_w: 2 pad_h: 1 } }\n')
    net = make_net(text, {"a": (N, C, H, W), "b": (N, C, H, W)},
                   weights={"conv": [np.ones((2, C, 3, 2), np.float32), np.full(2, 0.5, np.float32)]})
    rng = np.random.default_rng(0)
    feed = {"a": rng.standard_normal((N, C, H, W)), "b": rng.standard_normal((N, C, H, W))}
    got = K.run_keys(hc.convert(net), feed)
    for b, t in (("a", "ya"), ("b", "yb")):
        xp = np.pad(feed[b], ((0, 0), (0, 0), (1, 1), (0, 0))).sum(axis=1)
        want = sum(xp[:, i:i + H, j:j + W - 1] for i in range(3) for j in range(2)) + 0.5
        for o in range(2):
            assert_blob_close(got[f"conv/{t}"][:, o], want, f"conv/{t}", rtol=K.REL_TOL)


def test_check_compares_every_top_and_catches_a_bad_third_application(shared):
    net, feed, model = shared
    rep = compare(net, model, {k: v.astype(np.float32) for k, v in feed.items()})
    keys = [p["caffe_layer"] + "/" + p["caffe_top"] for p in json.loads(rep.to_json())["layers"]]
    assert {"conv/ya", "conv/yb", "conv/yc", "up/ua", "up/ub"} <= set(keys) and rep.equivalent
    # a port whose third top comes from other weights: only conv/yc (and what reads it) may fail
    x = [keras.Input((H, W, C), name=n) for n in "abc"]
    good = model.get_layer("conv__conv")
    bad = keras.layers.Conv2D(4, (3, 2), strides=2, name="conv_c")
    pad = keras.layers.ZeroPadding2D(((1, 1), (0, 0)))
    ya, yb, yc = good(pad(x[0])), good(pad(x[1])), bad(pad(x[2]))
    bad.set_weights([w * 1.01 for w in good.get_weights()])
    port = keras.Model(x, {"ya": ya, "yb": yb, "yc": yc})
    net1 = make_net(SHARED.split("layer { name: \"up\"")[0], SHAPES, seed=2)
    rep = compare(net1, port, {k: v.astype(np.float32) for k, v in feed.items()}, user_map={"conv/yc": "conv_c"})
    failed = {f"{p.caffe_layer}/{p.caffe_top}" for p in rep.layers if p.chained is not None and not p.chained.passed}
    assert "conv/yc" in failed and not rep.equivalent


BN = """
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" batch_norm_param { use_global_stats: false } }
layer { name: "bn_eps" type: "BatchNorm" bottom: "data" top: "bn_eps" batch_norm_param { use_global_stats: false eps: 0.25 } }
"""


def test_batch_stats_by_hand_and_depends_on_the_batch():
    # per channel c, the batch holds the values c + k for k over N*H*W distinct steps: mean and biased variance known
    net = make_net(BN, {"data": (N, C, H, W)}, seed=1)
    model = hc.convert(net)
    assert isinstance(model.get_layer("bn"), CaffeBatchStatsNorm) and model.get_layer("bn").eps == np.float32(1e-5)
    steps = np.linspace(-1.0, 2.0, N * H * W).reshape(N, H, W)
    x = np.stack([3.0 * c + (c + 1) * steps for c in range(C)], axis=1)  # (N, C, H, W)
    got = K.run_keys(model, {"data": x})
    for c in range(C):
        mean, var = 3.0 * c + (c + 1) * steps.mean(), (c + 1) ** 2 * steps.var()
        for key, eps in (("bn/bn", np.float32(1e-5)), ("bn_eps/bn_eps", 0.25)):
            assert_blob_close(got[key][:, c], (x[:, c] - mean) / np.sqrt(var + float(eps)), f"{key} channel {c}",
                              rtol=K.REL_TOL)
    # the stored blobs do not enter the output, and sample 0's output changes when sample 1 changes
    x2 = x.copy()
    x2[1] += 5.0
    got2 = K.run_keys(model, {"data": x2})
    assert max_rel_err(got2["bn/bn"][0], got["bn/bn"][0]) > 0.1


def test_batch_stats_layer_saves_and_loads_in_safe_mode(tmp_path):
    net = make_net(BN, {"data": (N, C, H, W)}, seed=1)
    model = hc.convert(net)
    path = hc.save_model(model, tmp_path / "bn.keras")
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(2).standard_normal((N, H, W, C)).astype(np.float32)
    for k in ("bn", "bn_eps"):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)[k]),
                                      keras.ops.convert_to_numpy(model(x)[k]))


def test_cli_check_duplicate_names_and_legacy_input(tmp_path, capsys):
    dup = ('name: "dup"\ninput: "data"\n'
           'layer { name: "conv" type: "Convolution" bottom: "data" top: "c1" convolution_param { num_output: 4 '
           'kernel_size: 3 } }\n'
           'layer { name: "conv" type: "Convolution" bottom: "c1" top: "c2" convolution_param { num_output: 2 '
           'kernel_size: 1 weight_filler { type: "constant" value: 0.5 } } }\n')
    (tmp_path / "net.prototxt").write_text(dup)
    np.savez(tmp_path / "w.npz", **{"conv/0": np.ones((4, 3, 3, 3), np.float32), "conv/1": np.zeros(4, np.float32)})
    rc = main(["check", str(tmp_path / "net.prototxt"), "--weights", str(tmp_path / "w.npz"), "--input-shape",
               "data=2,3,5,7", "--json", str(tmp_path / "r.json")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    warn = [x for x in err.splitlines() if x.startswith("caffe-harness: warning: ")]
    assert len(warn) == 1 and "duplicate layer name 'conv'" in warn[0] and "Traceback" not in err
    rep = json.loads((tmp_path / "r.json").read_text())
    assert [x["caffe_layer"] for x in rep["layers"]] == ["conv", "conv#2"] and rep["equivalent"]
