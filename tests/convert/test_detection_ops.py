"""Converter B, SSD detection layers: PriorBox against the golden real-Caffe values and the NumPy reference for every
parameter path; DetectionOutput is refused by name."""

from __future__ import annotations

import numpy as np
import pytest

import _kit as K
from harness.errors import ConversionError


@pytest.fixture(scope="module")
def ssd():
    return K.golden("ssd_ops")


@pytest.mark.parametrize("name", ["priorbox", "priorbox_noclip"])
def test_golden_priorbox(ssd, name):
    net, blobs, inputs = ssd
    lay = net.layer(name)
    (got,) = K.run_layer(lay, K.golden_bottoms(net, blobs, inputs, lay))
    K.assert_close(got, blobs[f"{name}/{name}"], name)


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
    net = K.one_layer_net(PB("min_size: 10 aspect_ratio: 2"), FEAT)
    a = K.run_layer(net.layers[-1], [np.zeros(FEAT["feat"]), np.zeros(FEAT["img"])])[0]
    b = K.run_layer(net.layers[-1], [np.ones(FEAT["feat"]), np.full(FEAT["img"], 7.0)])[0]
    assert a.shape == (1, 2, 5 * 7 * 3 * 4)
    np.testing.assert_array_equal(a, b)


def test_detection_output_refused_by_name():
    text = ('layer { name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" bottom: "prior" top: "det"'
            ' detection_output_param { num_classes: 3 nms_param { nms_threshold: 0.45 top_k: 10 } keep_top_k: 5'
            ' confidence_threshold: 0.01 } }')
    shapes = {"loc": (1, 24), "conf": (1, 18), "prior": (1, 2, 24)}
    net = K.one_layer_net(text, shapes)
    for approx in (False, True):
        with pytest.raises(ConversionError, match=r"DetectionOutput 'det': cannot be converted"):
            K.build_layer_model(net.layers[-1], list(shapes.values()), allow_approx=approx)
