"""Converter B custom layers: get_config round trips, and a converted net holding every one of them saved to
``.keras`` and loaded back with ``keras.saving.load_model(path, safe_mode=True)`` in a fresh interpreter that only
imported ``harness.convert`` -- giving identical outputs.  The chained net also matches the NumPy reference."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import support.converted as K
from support import assert_blob_close, to_caffe, to_keras
from harness.convert import custom_ops as C

ROUND_TRIP = [
    (C.CaffeAbsVal, {}),
    (C.CaffeBNLL, {}),
    (C.CaffePower, {"power": 3.0, "scale": -0.5, "shift": 0.25}),
    (C.CaffeExp, {"base": 3.0, "scale": 0.5, "shift": -0.2}),
    (C.CaffeLog, {"base": 2.0, "scale": 3.0, "shift": 4.0}),
    (C.CaffeThreshold, {"threshold": 0.3}),
    (C.CaffeClip, {"min": -0.5, "max": 0.75}),
    (C.CaffeSwish, {"beta": 1.5}),
    (C.CaffeSlice, {"axis": 3, "bounds": [0, 1, 3]}),
    (C.CaffeSplit, {"count": 3}),
    (C.CaffeReshape, {"shape": [1, 2, 3, 35]}),
    (C.CaffeTranspose, {"perm": [3, 1, 2, 0]}),
    (C.CaffeTile, {"axis": 2, "tiles": 3}),
    (C.CaffeReduction, {"op": "ASUM", "axis": 2, "coeff": -1.5, "nchw_input": True}),
    (C.CaffeArgMax, {"axis": None, "top_k": 2, "out_max_val": True, "nchw_input": True, "out_rank": 4,
                     "nhwc_output": True}),
    (C.CaffeArgMax, {"axis": 1, "top_k": 2, "out_max_val": False}),
    (C.CaffeInterp, {"height": 9, "width": 13, "in_eff_h": 5, "in_eff_w": 7, "start": 0}),
]


@pytest.mark.parametrize("cls,cfg", ROUND_TRIP, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(ROUND_TRIP)])
def test_get_config_round_trip(cls, cfg):
    lay = cls(name="x", **cfg)
    conf = lay.get_config()
    for k, v in cfg.items():
        assert conf[k] == v
    again = cls.from_config(json.loads(json.dumps(conf)))
    assert again.get_config() == conf
    x = np.random.default_rng(0).standard_normal((2, 5, 7, 3)).astype(np.float32)
    a, b = lay(x), again(x)
    for u, v in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(u), keras.ops.convert_to_numpy(v))


@pytest.mark.parametrize("cls,cfg", [
    (C.CaffeCrop, {"axes": [3, 1], "offsets": [1, 2]}),
    (C.CaffePriorBox, {"min_sizes": [10.0], "max_sizes": [20.0], "aspect_ratios": [2.0], "flip": True,
                       "clip": True, "variance": [0.1, 0.1, 0.2, 0.2], "img_h": 0, "img_w": 0, "step_h": 0.0,
                       "step_w": 0.0, "offset": 0.5}),
])
def test_get_config_round_trip_two_inputs(cls, cfg):
    lay = cls(name="x", **cfg)
    conf = lay.get_config()
    again = cls.from_config(json.loads(json.dumps(conf)))
    assert again.get_config() == conf
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
    ref = rng.standard_normal((4, 3, 5, 2)).astype(np.float32)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(lay([x, ref])),
                                  keras.ops.convert_to_numpy(again([x, ref])))


def test_two_input_config_types():
    conf = C.CaffeEltwiseSum(coeffs=[0.5, -2.0], name="e").get_config()
    assert C.CaffeEltwiseSum.from_config(conf).get_config() == conf
    conf = C.CaffeAxpy(name="a").get_config()
    assert C.CaffeAxpy.from_config(conf).get_config() == conf


NET = """
name: "all_b"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 6 dim: 5 dim: 7 } } }
layer { name: "a" type: "Input" top: "a" input_param { shape { dim: 2 dim: 6 dim: 1 dim: 1 } } }
layer { name: "ref" type: "Input" top: "ref" input_param { shape { dim: 2 dim: 5 dim: 3 dim: 4 } } }
layer { name: "abs" type: "AbsVal" bottom: "data" top: "abs" }
layer { name: "bnll" type: "BNLL" bottom: "data" top: "bnll" }
layer { name: "pow" type: "Power" bottom: "abs" top: "pow" power_param { power: 0.5 scale: 2 shift: 0.1 } }
layer { name: "exp" type: "Exp" bottom: "data" top: "exp" exp_param { base: 2 scale: 0.5 shift: 0.1 } }
layer { name: "log" type: "Log" bottom: "pow" top: "log" log_param { base: 10 scale: 3 shift: 0.5 } }
layer { name: "thr" type: "Threshold" bottom: "data" top: "thr" threshold_param { threshold: 0.2 } }
layer { name: "clip" type: "Clip" bottom: "data" top: "clip" clip_param { min: -0.3 max: 0.6 } }
layer { name: "swish" type: "Swish" bottom: "data" top: "swish" swish_param { beta: 1.3 } }
layer { name: "slice" type: "Slice" bottom: "swish" top: "s0" top: "s1" slice_param { slice_point: 2 } }
layer { name: "split" type: "Split" bottom: "s1" top: "p0" top: "p1" }
layer { name: "rs" type: "Reshape" bottom: "p0" top: "rs" reshape_param { shape { dim: -1 dim: 35 } } }
layer { name: "perm" type: "Permute" bottom: "p1" top: "perm" permute_param { order: 1 order: 0 order: 3 order: 2 } }
layer { name: "crop" type: "Crop" bottom: "clip" bottom: "ref" top: "crop" crop_param { axis: 1 offset: 1 offset: 2 offset: 3 } }
layer { name: "tile" type: "Tile" bottom: "thr" top: "tile" tile_param { axis: 2 tiles: 2 } }
layer { name: "esum" type: "Eltwise" bottom: "bnll" bottom: "exp" top: "esum" eltwise_param { coeff: 0.5 coeff: -1.5 } }
layer { name: "axpy" type: "Axpy" bottom: "a" bottom: "log" bottom: "esum" top: "axpy" }
layer { name: "red" type: "Reduction" bottom: "axpy" top: "red" reduction_param { operation: SUMSQ axis: 2 } }
layer { name: "amax" type: "ArgMax" bottom: "axpy" top: "amax" argmax_param { top_k: 3 out_max_val: true } }
layer { name: "interp" type: "Interp" bottom: "axpy" top: "interp" interp_param { zoom_factor: 2 pad_beg: -1 pad_end: 0 } }
layer { name: "pb" type: "PriorBox" bottom: "interp" bottom: "data" top: "pb" prior_box_param { min_size: 3 max_size: 5 aspect_ratio: 2 clip: true } }
layer { name: "shuf" type: "ShuffleChannel" bottom: "tile" top: "shuf" shuffle_channel_param { group: 3 } }
layer { name: "up" type: "Upsample" bottom: "s0" top: "up" upsample_param { scale_h: 2 scale_w: 3 } }
"""


def test_chained_net_matches_reference_and_reloads_in_safe_mode(tmp_path):
    from harness.caffe import load_net_text
    from harness.convert import convert, mapping_of
    from harness.reference import forward

    net = load_net_text(NET)
    rng = np.random.default_rng(5)
    feed = {k: rng.standard_normal(tuple(s)).astype(np.float32) for k, s in net.inputs.items()}
    model = convert(net)
    ref = forward(net, feed, dtype=np.float64)
    mapping = mapping_of(model)
    x = [to_keras(feed[b]) for b in mapping["inputs"]]
    out = model(x)
    classes = {type(lay).__name__ for lay in model.layers}
    for name in ("CaffeAbsVal", "CaffeBNLL", "CaffePower", "CaffeExp", "CaffeLog", "CaffeThreshold", "CaffeClip",
                 "CaffeSwish", "CaffeSlice", "CaffeSplit", "CaffeReshape", "CaffeTranspose", "CaffeCrop", "CaffeTile",
                 "CaffeEltwiseSum", "CaffeAxpy", "CaffeReduction", "CaffeArgMax", "CaffeInterp", "CaffePriorBox"):
        assert name in classes, name
    for blob in net.outputs:
        key = f"{net.producers()[blob][-1]}/{blob}"
        assert_blob_close(to_caffe(keras.ops.convert_to_numpy(out[blob])), ref[key], blob, rtol=K.REL_TOL)
    path = tmp_path / "all_b.keras"
    model.save(path)
    np.savez(tmp_path / "io.npz", *x, **{f"out__{k}": keras.ops.convert_to_numpy(v) for k, v in out.items()})
    script = textwrap.dedent(f"""
        import numpy as np, keras
        import harness.convert  # registers the custom layers; nothing else
        m = keras.saving.load_model({str(path)!r}, safe_mode=True)
        d = np.load({str(tmp_path / "io.npz")!r})
        x = [d[f"arr_{{i}}"] for i in range({len(x)})]
        out = m(x)
        for k, v in out.items():
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), d["out__" + k])
        print("OK", len(out))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"OK {len(net.outputs)}" in res.stdout
