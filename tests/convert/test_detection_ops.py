"""Converter B, SSD detection layers: PriorBox against the golden real-Caffe values and the NumPy reference for every
parameter path; DetectionOutput
against the reference (all code types, unshared locations, eta, keep_top_k, no detections) and end to end."""

from __future__ import annotations

import numpy as np
import pytest

import support.converted as K
from support import assert_blob_close, golden, golden_bottoms, net_text, one_layer_net, to_caffe, to_keras
from harness.errors import UnsupportedParam


@pytest.fixture(scope="module")
def ssd():
    return golden("ssd_ops")


@pytest.mark.parametrize("name", ["priorbox", "priorbox_noclip"])
def test_golden_priorbox(ssd, name):
    net, blobs, inputs = ssd
    lay = net.layer(name)
    (got,) = K.run_layer(lay, golden_bottoms(net, blobs, inputs, lay))
    assert_blob_close(got, blobs[f"{name}/{name}"], name, rtol=K.REL_TOL)


def PB(params):
    return f'layer {{ name: "l" type: "PriorBox" bottom: "feat" bottom: "img" top: "l" prior_box_param {{ {params} }} }}'


FEAT = {"feat": (2, 3, 5, 7), "img": (2, 3, 40, 63)}
CASES = [
    ("min_only", "min_size: 10"),
    ("min_max_ar_flip_clip", "min_size: 10 max_size: 25 aspect_ratio: 2 aspect_ratio: 3 flip: true clip: true"),
    ("two_sizes_no_flip", "min_size: 8 min_size: 17 max_size: 12 max_size: 30 aspect_ratio: 2 flip: false"),
    ("fractional_min_truncated", "min_size: 10.7 max_size: 21.5 aspect_ratio: 0.5"),
    ("dup_ratio", "min_size: 9 aspect_ratio: 1 aspect_ratio: 2 aspect_ratio: 2.0000001"),
    ("variance4", "min_size: 9 variance: 0.1 variance: 0.2 variance: 0.3 variance: 0.4"),
    ("img_size", "min_size: 9 img_size: 50"),
    ("img_hw", "min_size: 9 img_h: 30 img_w: 70 clip: true"),
    ("step", "min_size: 9 step: 8"),
    ("step_hw_offset", "min_size: 9 step_h: 6 step_w: 9 offset: 0.25"),
]


@pytest.mark.parametrize("params", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_priorbox_against_reference(params):
    K.check_against_reference(PB(params), FEAT)


def test_priorbox_is_constant_with_batch_one():
    net = one_layer_net(PB("min_size: 10 aspect_ratio: 2"), FEAT)
    a = K.run_layer(net.layers[-1], [np.zeros(FEAT["feat"]), np.zeros(FEAT["img"])])[0]
    b = K.run_layer(net.layers[-1], [np.ones(FEAT["feat"]), np.full(FEAT["img"], 7.0)])[0]
    assert a.shape == (1, 2, 5 * 7 * 3 * 4)
    np.testing.assert_array_equal(a, b)


def _det_feed(n, p, c, n_loc, seed):
    rng = np.random.default_rng(seed)
    ctr = rng.uniform(0.1, 0.9, (p, 2))
    wh = rng.uniform(0.05, 0.4, (p, 2))
    pri = np.concatenate([ctr - wh / 2, ctr + wh / 2], 1).reshape(-1)
    var = np.tile([0.1, 0.1, 0.2, 0.2], p)
    return {"loc": (rng.standard_normal((n, p * n_loc * 4)) * 0.5).astype(np.float32),
            "conf": rng.uniform(0, 1, (n, p * c)).astype(np.float32),
            "prior": np.stack([pri, var])[None].astype(np.float32)}


DET = [
    ("center_size_topk_keep", "nms_param { nms_threshold: 0.45 top_k: 10 } keep_top_k: 7 confidence_threshold: 0.3"
     " code_type: CENTER_SIZE", True),
    ("corner_no_topk", "nms_param { nms_threshold: 0.45 } confidence_threshold: 0.5", True),
    ("corner_size_unshared_eta_bg2", "nms_param { nms_threshold: 0.3 top_k: 12 eta: 0.9 } keep_top_k: 20"
     " background_label_id: 2 code_type: CORNER_SIZE", False),
    ("variance_in_target", "nms_param { nms_threshold: 0.5 top_k: 15 } code_type: CENTER_SIZE"
     " variance_encoded_in_target: true confidence_threshold: 0.2", True),
    ("no_threshold_no_background", "nms_param { nms_threshold: 0.6 top_k: 5 } background_label_id: -1", False),
    ("nothing_found", "nms_param { nms_threshold: 0.45 } confidence_threshold: 1.5", True),
]


@pytest.mark.parametrize("params,share", [d[1:] for d in DET], ids=[d[0] for d in DET])
def test_detection_output_against_reference(params, share):
    """Rows [image, label, score, box] in Caffe's order and count (the Caffe top (1, 1, D, 7) is NHWC (1, D, 7, 1))."""
    n, p, c = 2, 30, 4
    n_loc = 1 if share else c
    text = ('layer { name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" bottom: "prior" top: "det"'
            ' detection_output_param { num_classes: %d share_location: %s %s } }'
            % (c, "true" if share else "false", params))
    shapes = {"loc": (n, p * n_loc * 4), "conf": (n, p * c), "prior": (1, 2, p * 4)}
    errs = K.check_against_reference(text, shapes, data=_det_feed(n, p, c, n_loc, 7))
    assert errs[0] <= K.REL_TOL


def test_detection_output_row_by_row_overlaps(monkeypatch):
    """The NMS path that computes one overlap row per step (large K) gives the same rows as the reference."""
    from harness.convert.custom_ops import CaffeDetectionOutput

    monkeypatch.setattr(CaffeDetectionOutput, "FULL_IOU_LIMIT", 0)
    n, p, c = 2, 30, 4
    text = ('layer { name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" bottom: "prior" top: "det"'
            ' detection_output_param { num_classes: 4 nms_param { nms_threshold: 0.35 top_k: 20 eta: 0.8 }'
            ' keep_top_k: 12 code_type: CENTER_SIZE confidence_threshold: 0.1 } }')
    shapes = {"loc": (n, p * 4), "conf": (n, p * c), "prior": (1, 2, p * 4)}
    K.check_against_reference(text, shapes, data=_det_feed(n, p, c, 1, 3))


SSD_HEAD = """
name: "ssd_head"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 20 dim: 24 } } }
layer { name: "feat" type: "Input" top: "feat" input_param { shape { dim: 2 dim: 16 dim: 5 dim: 6 } } }
layer { name: "cls" type: "Input" top: "cls" input_param { shape { dim: 2 dim: 12 dim: 5 dim: 6 } } }
layer { name: "loc_perm" type: "Permute" bottom: "feat" top: "loc_perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "loc_flat" type: "Flatten" bottom: "loc_perm" top: "loc_flat" }
layer { name: "conf_perm" type: "Permute" bottom: "cls" top: "conf_perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "conf_flat" type: "Flatten" bottom: "conf_perm" top: "conf_flat" }
layer { name: "conf_rs" type: "Reshape" bottom: "conf_flat" top: "conf_rs" reshape_param { shape { dim: 0 dim: -1 dim: 3 } } }
layer { name: "conf_sm" type: "Softmax" bottom: "conf_rs" top: "conf_sm" softmax_param { axis: 2 } }
layer { name: "conf_out" type: "Flatten" bottom: "conf_sm" top: "conf_out" }
layer { name: "pb" type: "PriorBox" bottom: "feat" bottom: "data" top: "pb"
        prior_box_param { min_size: 6 max_size: 12 aspect_ratio: 2 flip: true clip: true variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 } }
layer { name: "det" type: "DetectionOutput" bottom: "loc_flat" bottom: "conf_out" bottom: "pb" top: "det"
        detection_output_param { num_classes: 3 share_location: true background_label_id: 0
          nms_param { nms_threshold: 0.45 top_k: 40 } code_type: CENTER_SIZE keep_top_k: 25 confidence_threshold: 0.2 } }
"""


def test_ssd_head_converted_end_to_end(tmp_path):
    """Permute -> Flatten -> Reshape -> Softmax -> PriorBox -> DetectionOutput through harness.convert.convert."""
    import keras
    from harness.caffe import load_net_text
    from harness.convert import convert, mapping_of
    from harness.reference import forward

    net = load_net_text(SSD_HEAD)
    rng = np.random.default_rng(11)
    feed = {k: rng.standard_normal(tuple(s)).astype(np.float32) for k, s in net.inputs.items()}
    model = convert(net)
    ref = forward(net, feed, dtype=np.float32)["det/det"]
    out = model([to_keras(feed[b]) for b in mapping_of(model)["inputs"]])
    got = to_caffe(keras.ops.convert_to_numpy(out["det"]))
    assert got.shape == ref.shape and ref.shape[2] > 3
    assert_blob_close(got, ref, "det", rtol=K.REL_TOL)
    if keras.backend.backend() != "jax":  # JAX's jit needs static shapes: D rows are data dependent (eager only)
        pred = model.predict([to_keras(feed[b]) for b in mapping_of(model)["inputs"]], verbose=0)
        assert_blob_close(to_caffe(pred["det"]), ref, "det via predict (graph mode)", rtol=K.REL_TOL)
    # save -> load in safe mode -> same detections; the layer's config round-trips
    path = tmp_path / "ssd_head.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    out2 = again([to_keras(feed[b]) for b in mapping_of(model)["inputs"]])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out2["det"]), keras.ops.convert_to_numpy(out["det"]))
    det = model.get_layer("det")
    assert type(det).__name__ == "CaffeDetectionOutput"
    assert type(det).from_config(det.get_config()).get_config() == det.get_config()


def test_detection_output_rejects_by_name():
    text = ('layer { name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" bottom: "prior" top: "det"'
            ' detection_output_param { num_classes: 3 nms_param { nms_threshold: 0.45 eta: 1.5 } } }')
    shapes = {"loc": (1, 24), "conf": (1, 18), "prior": (1, 2, 24)}
    from harness.caffe import load_net_text
    text = net_text(text, shapes)
    net = load_net_text(text, check=False)
    with pytest.raises(UnsupportedParam, match=r"DetectionOutput 'det': nms_param.eta=1.5"):
        K.build_layer_model(net.layers[-1], list(shapes.values()))
    net = load_net_text(text.replace("eta: 1.5 }", "} background_label_id: -1"), check=False)
    with pytest.raises(UnsupportedParam, match=r"DetectionOutput 'det': detection_output_param.background_label_id=-1"):
        K.build_layer_model(net.layers[-1], list(shapes.values()))
