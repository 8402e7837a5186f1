"""Converter core: custom layers' get_config round trips, save -> load (Keras safe mode, after only `import harness`)
-> identical outputs, the embedded mapping, atomic writes, and every installed Keras backend."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import support.converted as K
from support import assert_blob_close, make_net
import harness.convert as hc
from harness.convert import custom_layers as CL
from harness.errors import HarnessError, KerasModelError

REPO = Path(__file__).resolve().parents[2]

# One net that uses every custom layer of the core (and standard ones around them).
ALL_CUSTOM = """
layer { name: "pmax" type: "Pooling" bottom: "data" top: "pmax" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "pave" type: "Pooling" bottom: "data" top: "pave" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "psto" type: "Pooling" bottom: "pos" top: "psto" pooling_param { pool: STOCHASTIC kernel_size: 3 stride: 2 } }
layer { name: "lrn" type: "LRN" bottom: "data" top: "lrn" lrn_param { local_size: 3 alpha: 2 beta: 0.75 k: 1.5 } }
layer { name: "lrnw" type: "LRN" bottom: "data" top: "lrnw" lrn_param { local_size: 3 alpha: 2 norm_region: WITHIN_CHANNEL } }
layer { name: "mvn" type: "MVN" bottom: "data" top: "mvn" }
layer { name: "norm" type: "Normalize" bottom: "data" top: "norm" norm_param { across_spatial: false channel_shared: false } }
layer { name: "sc" type: "Scale" bottom: "data" top: "sc" scale_param { axis: 0 num_axes: 2 bias_term: true } }
layer { name: "bi" type: "Bias" bottom: "data" top: "bi" bias_param { axis: 2 num_axes: 2 } }
layer { name: "emb" type: "Embed" bottom: "idx" top: "emb" embed_param { num_output: 4 input_dim: 9 } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "pow" type: "Power" bottom: "data" top: "pow" power_param { power: 2 scale: 0.5 shift: 1 } }
layer { name: "bnb" type: "BatchNorm" bottom: "data" top: "bnb" batch_norm_param { use_global_stats: false eps: 0.001 } }
layer { name: "convs" type: "Convolution" bottom: "data" bottom: "mvn" top: "convs_a" top: "convs_b" convolution_param { num_output: 4 kernel_h: 3 kernel_w: 2 pad: 1 } }
"""  # Power: a custom layer of part B (custom_ops), to check that `import harness` registers those too; convs: one
# shared Conv2D called on two bottoms (saved and loaded as one Keras layer with two inbound nodes)
INPUTS = {"data": (2, 3, 7, 10), "pos": (2, 3, 8, 11), "idx": (2, 6)}


@pytest.fixture(scope="module")
def all_custom():
    net = make_net(ALL_CUSTOM, INPUTS)
    rng = np.random.default_rng(7)
    feed = {"data": rng.standard_normal(INPUTS["data"]).astype(np.float32),
            "pos": (np.abs(rng.standard_normal(INPUTS["pos"])) + 0.1).astype(np.float32),
            "idx": rng.integers(0, 9, INPUTS["idx"]).astype(np.float32)}
    model = hc.convert(net)
    return net, feed, model


def test_all_custom_net_matches_reference(all_custom):
    net, feed, model = all_custom
    K.check_vs_reference(net, feed=feed, model=model)
    used = {type(lay).__name__ for lay in model.layers}
    assert {c.__name__ for c in CL.CUSTOM_LAYERS} <= used, {c.__name__ for c in CL.CUSTOM_LAYERS} - used


# ---------------------------------------------------------------------------------------------------------------
# get_config round trips


def test_custom_layers_get_config_round_trip(all_custom):
    net, feed, model = all_custom
    sub_inputs = [hc.to_keras_layout(feed[b]) for b in model.harness_mapping["inputs"]]
    checked = set()
    for lay in model.layers:
        if type(lay) not in CL.CUSTOM_LAYERS:
            continue
        cfg = lay.get_config()
        json.dumps(cfg)  # plain JSON values only
        clone = type(lay).from_config(cfg)
        assert clone.get_config() == cfg
        ser = keras.saving.serialize_keras_object(lay)
        assert ser["registered_name"] == f"harness>{type(lay).__name__}"
        again = keras.saving.deserialize_keras_object(json.loads(json.dumps(ser)), safe_mode=True)
        assert type(again) is type(lay) and again.get_config() == cfg
        # same outputs with the same weights, on the layer's real inputs
        node_in = lay._inbound_nodes[0].input_tensors
        feeder = keras.Model(model.inputs, list(node_in))
        xs = feeder(sub_inputs)
        xs = list(xs) if isinstance(xs, (list, tuple)) else [xs]
        arg = xs if len(xs) > 1 else xs[0]
        want = keras.ops.convert_to_numpy(lay(arg))
        clone(arg)
        clone.set_weights(lay.get_weights())
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(arg)), want)
        checked.add(type(lay))
    assert checked == set(CL.CUSTOM_LAYERS)


def test_constant_pad_rejects_bad_value():
    with pytest.raises(ValueError, match="value"):
        CL.CaffeConstantPad2D(padding=((1, 1), (0, 0)), value="nan-ish")


# ---------------------------------------------------------------------------------------------------------------
# save -> load


@pytest.fixture(scope="module")
def saved(all_custom, tmp_path_factory):
    net, feed, model = all_custom
    d = tmp_path_factory.mktemp("saved")
    path = hc.save_model(model, d / "m.keras")
    np.savez(d / "inputs.npz", **{b: hc.to_keras_layout(feed[b]) for b in model.harness_mapping["inputs"]})
    want = {k: keras.ops.convert_to_numpy(v) for k, v in model([hc.to_keras_layout(feed[b])
                                                                 for b in model.harness_mapping["inputs"]]).items()}
    return d, path, want


def test_saved_file_embeds_mapping(all_custom, saved):
    _, _, model = all_custom
    d, path, _ = saved
    with zipfile.ZipFile(path) as z:
        assert json.loads(z.read(hc.MAPPING_MEMBER)) == json.loads(json.dumps(model.harness_mapping))
    assert sorted(os.listdir(d)) == ["inputs.npz", "m.keras"]  # no temporary left behind


def test_load_model_restores_mapping_and_outputs(all_custom, saved):
    _, feed, model = all_custom
    d, path, want = saved
    loaded = hc.load_model(path)
    assert loaded.harness_mapping == json.loads(json.dumps(model.harness_mapping))
    got = loaded([hc.to_keras_layout(feed[b]) for b in loaded.harness_mapping["inputs"]])
    assert list(got) == list(want) == ["pmax", "pave", "psto", "lrn", "lrnw", "norm", "sc", "bi", "emb", "fc",
                                        "pow", "bnb", "convs_a", "convs_b"]
    for k in want:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(got[k]), want[k], err_msg=k)
    # every mapped intermediate is reachable in the loaded model too
    K.run_keys(loaded, feed)


_LOAD_SCRIPT = textwrap.dedent("""
    import sys, numpy as np
    import harness  # the only harness import: registers the custom layers once Keras loads
    import keras
    assert keras.backend.backend() == sys.argv[3], keras.backend.backend()
    m = keras.saving.load_model(sys.argv[1], safe_mode=True)
    x = dict(np.load(sys.argv[2] + "/inputs.npz"))
    feed = [x[n] for n in ("data", "pos", "idx")]
    out = m(feed)
    np.savez(sys.argv[2] + "/out_" + sys.argv[3] + ".npz", **{k: keras.ops.convert_to_numpy(v) for k, v in out.items()})
""")

BACKENDS = ["tensorflow", "jax", "torch"]


def _installed(backend: str) -> bool:
    return importlib.util.find_spec(backend) is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_plain_keras_safe_load_after_import_harness_on_every_backend(saved, backend):
    """A fresh interpreter: `import harness`, then keras.saving.load_model(path, safe_mode=True) on each installed
    Keras backend; outputs identical (tensorflow) or within float32 rounding (other backends' kernels)."""
    if not _installed(backend):
        pytest.skip(f"Keras backend {backend!r} is not installed in this environment")
    d, path, want = saved
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-c", _LOAD_SCRIPT, str(path), str(d), backend], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = dict(np.load(d / f"out_{backend}.npz"))
    assert set(got) == set(want)
    for k in want:
        if backend == "tensorflow":
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
        else:
            assert_blob_close(got[k], want[k], f"{backend} {k}", rtol=K.REL_TOL)


def test_import_harness_stays_light():
    code = "import sys, harness; print('keras' in sys.modules, 'tensorflow' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.stdout.split() == ["False", "False"], r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------------------------
# atomic writes and load errors


def test_save_is_atomic_on_error(all_custom, tmp_path, monkeypatch):
    _, _, model = all_custom

    def boom(path, *a, **k):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(model, "save", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        hc.save_model(model, tmp_path / "x.keras")
    assert os.listdir(tmp_path) == []


def test_save_refuses_bad_targets(all_custom, tmp_path):
    _, _, model = all_custom
    with pytest.raises(HarnessError, match=r"\.keras"):
        hc.save_model(model, tmp_path / "x.h5")
    with pytest.raises(HarnessError, match="does not exist"):
        hc.save_model(model, tmp_path / "nope" / "x.keras")
    assert os.listdir(tmp_path) == []


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(KerasModelError, match="no such model file"):
        hc.load_model(tmp_path / "missing.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(KerasModelError, match="cannot load"):
        hc.load_model(bad)
