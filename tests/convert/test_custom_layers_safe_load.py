"""Every custom Keras layer of the converter, in one place: the registered serialization names and config keys are
frozen (a ``.keras`` file written by an earlier version names them; renaming one breaks loading it), all of them
derive from the one custom-layer base, and models holding every one of them, saved to ``.keras``, load with
``keras.saving.load_model(path, safe_mode=True)`` in a fresh interpreter that imported only ``harness`` and compute
the same values."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

import support.converted as CK
from support import make_net
import harness.convert as hc
from harness.caffe import load_net_text
from test_convert_saveload import ALL_CUSTOM, INPUTS
from test_custom_ops_serialization import NET as ALL_B
from test_detection_ops import SSD_HEAD

REPO = Path(__file__).resolve().parents[2]

# registered name -> the layer's own config keys (beyond keras.layers.Layer's), exactly as earlier files hold them
FROZEN = {
    "harness>CaffeAbsVal": [],
    "harness>CaffeArgMax": ["axis", "nchw_input", "nhwc_output", "out_max_val", "out_rank", "top_k"],
    "harness>CaffeAvePool2D": ["caffe_pad", "in_hw", "padding", "pool_size", "strides"],
    "harness>CaffeAxpy": [],
    "harness>CaffeBNLL": [],
    "harness>CaffeBatchStatsNorm": ["axes", "eps"],
    "harness>CaffeBias": ["bcast_shape", "learned", "param_shape", "rank", "second_input_rank"],
    "harness>CaffeClip": ["max", "min"],
    "harness>CaffeConstantPad2D": ["padding", "value"],
    "harness>CaffeCrop": ["axes", "offsets"],
    "harness>CaffeDetectionOutput": ["background_label_id", "code_type", "conf_nchw", "confidence_threshold", "eta",
                                     "keep_top_k", "loc_nchw", "nms_threshold", "num_classes", "num_priors",
                                     "prior_nchw", "share_location", "top_k", "variance_encoded_in_target"],
    "harness>CaffeEltwiseSum": ["coeffs"],
    "harness>CaffeEmbed": ["bias", "input_dim", "num_output"],
    "harness>CaffeExp": ["base", "scale", "shift"],
    "harness>CaffeInterp": ["height", "in_eff_h", "in_eff_w", "start", "width"],
    "harness>CaffeLRN": ["alpha", "beta", "k", "local_size", "region"],
    "harness>CaffeLog": ["base", "scale", "shift"],
    "harness>CaffeMVN": ["axes", "eps", "normalize_variance"],
    "harness>CaffeNormalize": ["across_spatial", "channel_shared", "channels", "eps"],
    "harness>CaffePower": ["power", "scale", "shift"],
    "harness>CaffePriorBox": ["aspect_ratios", "clip", "flip", "img_h", "img_w", "max_sizes", "min_sizes", "offset",
                              "step_h", "step_w", "variance"],
    "harness>CaffeReduction": ["axis", "coeff", "nchw_input", "op"],
    "harness>CaffeReshape": ["shape"],
    "harness>CaffeScale": ["bcast_shape", "bias", "learned_scale", "param_shape", "rank", "second_input_rank"],
    "harness>CaffeSlice": ["axis", "bounds"],
    "harness>CaffeSplit": ["count"],
    "harness>CaffeStochasticPool2D": ["padding", "pool_size", "strides"],
    "harness>CaffeSwish": ["beta"],
    "harness>CaffeThreshold": ["threshold"],
    "harness>CaffeTile": ["axis", "tiles"],
    "harness>CaffeTranspose": ["perm"],
}


def _harness_registered() -> dict[str, type]:
    return {k: v for k, v in keras.saving.get_custom_objects().items() if k.startswith("harness>")}


def test_registered_names_are_frozen_and_share_one_base():
    from harness.convert._custom_base import CaffeLayer

    reg = _harness_registered()
    assert sorted(reg) == sorted(FROZEN)
    for name, cls in reg.items():
        assert issubclass(cls, CaffeLayer), name
        assert sorted(cls._params) == FROZEN[name], name


@pytest.fixture(scope="module")
def every_custom(tmp_path_factory):
    """Three converted models that between them hold every custom layer, saved, with their inputs and outputs."""
    d = tmp_path_factory.mktemp("every_custom")
    rng = np.random.default_rng(3)
    nets = [make_net(ALL_CUSTOM, INPUTS), load_net_text(ALL_B), load_net_text(SSD_HEAD)]
    used: dict[str, list] = {}
    for i, net in enumerate(nets):
        feed = {k: rng.standard_normal(tuple(s)).astype(np.float32) for k, s in net.inputs.items()}
        if "pos" in feed:  # STOCHASTIC pooling wants positive inputs, Embed integer indices
            feed["pos"] = np.abs(feed["pos"]) + 0.1
        if "idx" in feed:
            feed["idx"] = rng.integers(0, 9, feed["idx"].shape).astype(np.float32)
        model = hc.convert(net)
        x = [hc.to_keras_layout(feed[b]) for b in model.harness_mapping["inputs"]]
        out = model(x)
        model.save(d / f"m{i}.keras")
        np.savez(d / f"io{i}.npz", *x, **{f"out__{k}": keras.ops.convert_to_numpy(v) for k, v in out.items()})
        for lay in model.layers:
            ser = keras.saving.serialize_keras_object(lay)
            if (ser.get("registered_name") or "").startswith("harness>"):
                used.setdefault(ser["registered_name"], []).append(ser["config"])
    return d, len(nets), used


def test_every_custom_layer_serializes_under_its_frozen_name(every_custom):
    _, _, used = every_custom
    assert sorted(used) == sorted(FROZEN)
    plain = set(keras.layers.Layer(name="plain").get_config())
    for name, configs in used.items():
        for cfg in configs:
            assert sorted(set(cfg) - plain) == FROZEN[name], name


_SCRIPT = textwrap.dedent("""
    import sys, numpy as np
    import harness  # the only harness import
    import keras
    d, n = sys.argv[1], int(sys.argv[2])
    for i in range(n):
        m = keras.saving.load_model(f"{d}/m{i}.keras", safe_mode=True)
        io = np.load(f"{d}/io{i}.npz")
        x = [io[f"arr_{j}"] for j in range(len(m.inputs))]
        out = m(x)
        for k, v in out.items():
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), io["out__" + k], err_msg=f"m{i} {k}")
        print("OK", i, len(out))
""")


def test_every_custom_layer_loads_in_safe_mode_after_import_harness(every_custom):
    d, n, _ = every_custom
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-c", _SCRIPT, str(d), str(n)], env=env, cwd=REPO, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [ln.split()[:2] for ln in r.stdout.splitlines() if ln.startswith("OK")] == [["OK", str(i)] for i in range(n)]
