"""PriorBox and DetectionOutput (SSD fork): hand-computed boxes, golden ssd_ops priors, NMS / keep_top_k tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import harness.reference.detection  # noqa: F401 - registers the layers
from harness.errors import ShapeError, UnsupportedParam
from harness.reference.registry import REFERENCE
from support import run

try:
    from ._layer_support import GoldenCase, rel_err
except ImportError:
    from support import GoldenCase, rel_err


FEAT = np.zeros((1, 8, 2, 3))  # layer 2 x 3
IMG = np.zeros((1, 3, 20, 30))  # image 20 x 30 -> step 10 both ways


def test_prior_box_first_cells_by_hand():
    (y,) = run('name: "p" type: "PriorBox" bottom: "f" bottom: "i" top: "y" prior_box_param { min_size: 8 '
               'max_size: 18 aspect_ratio: 2 flip: true variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 }',
               FEAT, IMG)
    # priors per cell: min (8x8), sqrt(8*18)=12 square, ar 2 (8*sqrt2 x 8/sqrt2), ar 1/2 -> 4 priors
    assert y.shape == (1, 2, 2 * 3 * 4 * 4)
    b = y[0, 0].reshape(2, 3, 4, 4)
    # cell (0, 0): centre (5, 5); image w 30, h 20
    np.testing.assert_allclose(b[0, 0, 0], [1 / 30, 1 / 20, 9 / 30, 9 / 20])
    np.testing.assert_allclose(b[0, 0, 1], [-1 / 30, -1 / 20, 11 / 30, 11 / 20])
    r = math.sqrt(2)
    np.testing.assert_allclose(b[0, 0, 2], [(5 - 4 * r) / 30, (5 - 4 / r) / 20, (5 + 4 * r) / 30, (5 + 4 / r) / 20],
                               rtol=1e-6)
    np.testing.assert_allclose(b[0, 0, 3], [(5 - 4 / r) / 30, (5 - 4 * r) / 20, (5 + 4 / r) / 30, (5 + 4 * r) / 20],
                               rtol=1e-6)
    # cell (1, 2): centre (25, 15)
    np.testing.assert_allclose(b[1, 2, 0], [21 / 30, 11 / 20, 29 / 30, 19 / 20])
    v = y[0, 1].reshape(-1, 4)
    np.testing.assert_allclose(v, np.tile(np.float32([0.1, 0.1, 0.2, 0.2]), (24, 1)))


def test_prior_box_clip_step_offset_img_size_and_dedup():
    (y,) = run('name: "p" type: "PriorBox" bottom: "f" bottom: "i" top: "y" prior_box_param { min_size: 16 '
               'aspect_ratio: 1 aspect_ratio: 3 aspect_ratio: 3.0000001 flip: false clip: true img_h: 40 img_w: 60 '
               'step_h: 4 step_w: 6 offset: 0 }', FEAT, IMG)
    # ratios 1 (duplicate of the implicit 1) and 3.0000001 (within 1e-6 of 3) dropped: 2 priors per cell
    b = y[0, 0].reshape(2, 3, 2, 4)
    # cell (0, 0): centre (0, 0) -> min box [-8/60, -8/40, 8/60, 8/40] clipped
    np.testing.assert_allclose(b[0, 0, 0], [0, 0, 8 / 60, 8 / 40])
    # cell (1, 2): centre (12, 4); ar 3: w = 16 sqrt3, h = 16/sqrt3
    w, h = 16 * math.sqrt(3), 16 / math.sqrt(3)
    np.testing.assert_allclose(b[1, 2, 1], [0, max(0, (4 - h / 2) / 40), (12 + w / 2) / 60, (4 + h / 2) / 40],
                               rtol=1e-6)
    assert np.all(y[0, 1] == np.float32(0.1))  # no variance given -> 0.1


def test_prior_box_golden_ssd_ops():
    g = GoldenCase("ssd_ops")
    for name in g.layer_names({"PriorBox"}):
        lay = g.layer(name)
        (y,) = REFERENCE[lay.type](lay, g.bottoms(name), dtype=np.float64)
        (want,) = g.expected(name)
        assert rel_err(y, want) <= 1e-5, name


@pytest.mark.parametrize(
    "params,match",
    [
        ("max_size: 20", r"min_size=<unset>"),
        ("min_size: 8 max_size: 4", r"max_size=4.0 is not supported \(greater than its min_size 8.0\)"),
        ("min_size: 8 variance: 0.1 variance: 0.2", r"variance=\[0.1.*one or four positive values"),
        ("min_size: 8 img_size: 30 img_h: 20 img_w: 30", r"img_size=30 .*either img_size or img_h/img_w"),
        ("min_size: 8 step: 2 step_h: 3 step_w: 3", r"step=2.0 .*either step or step_h/step_w"),
    ],
)
def test_prior_box_rejections(params, match):
    with pytest.raises(UnsupportedParam, match=r"PriorBox 'p': prior_box_param\..*" + match):
        run(f'name: "p" type: "PriorBox" bottom: "f" bottom: "i" top: "y" prior_box_param {{ {params} }}', FEAT, IMG)


# ---------------------------------------------------------------------------------------------------------------
# DetectionOutput
# ---------------------------------------------------------------------------------------------------------------

P0, P1, P2 = [0.0, 0.0, 0.4, 0.4], [0.05, 0.05, 0.45, 0.45], [0.5, 0.5, 0.9, 0.9]  # IoU(P0, P1) = 0.62
PRIOR = np.array([[P0 + P1 + P2, [0.1] * 12]])  # (1, 2, 12)
CONF = np.array([[0.1, 0.6, 0.3, 0.1, 0.7, 0.2, 0.5, 0.2, 0.35]])  # per prior (bg, c1, c2)
LOC0 = np.zeros((1, 12))
DET = 'name: "d" type: "DetectionOutput" bottom: "l" bottom: "c" bottom: "p" top: "y" '


def det(params: str, loc=LOC0, conf=CONF, prior=PRIOR) -> np.ndarray:
    (y,) = run(DET + f"detection_output_param {{ num_classes: 3 {params} }}", loc, conf, prior)
    return y


def test_nms_per_class_and_label_order():
    y = det("nms_param { nms_threshold: 0.5 } confidence_threshold: 0.25")
    # class 1: P1 (0.7) kept, P0 (0.6) overlaps it by 0.62 > 0.5; class 2: P2 (0.35), P0 (0.3); P1 (0.2) below 0.25
    np.testing.assert_allclose(y[0, 0], [[0, 1, 0.7, *P1], [0, 2, 0.35, *P2], [0, 2, 0.3, *P0]])


def test_keep_top_k_and_top_k():
    y = det("nms_param { nms_threshold: 0.5 } confidence_threshold: 0.25 keep_top_k: 2")
    np.testing.assert_allclose(y[0, 0], [[0, 1, 0.7, *P1], [0, 2, 0.35, *P2]])
    z = det("nms_param { nms_threshold: 0.5 top_k: 1 } confidence_threshold: 0.25")
    np.testing.assert_allclose(z[0, 0], [[0, 1, 0.7, *P1], [0, 2, 0.35, *P2]])


def test_eta_shrinks_the_threshold():
    conf = np.array([[0.0, 0.9, 0.0, 0.0, 0.8, 0.0, 0.0, 0.0, 0.0]])
    both = det("nms_param { nms_threshold: 0.9 } confidence_threshold: 0.1", conf=conf)
    assert both.shape == (1, 1, 2, 7)  # IoU 0.62 <= 0.9 keeps both
    one = det("nms_param { nms_threshold: 0.9 eta: 0.5 } confidence_threshold: 0.1", conf=conf)
    # after the first kept box the threshold becomes 0.45 < 0.62
    np.testing.assert_allclose(one[0, 0], [[0, 1, 0.9, *P0]])


def test_default_nms_threshold_is_0_3():
    # no nms_param: threshold 0.3 (the SSD fork reads the default); class 1: P0 (0.6) overlaps P1 (0.7) by 0.62
    y = det("confidence_threshold: 0.45")
    np.testing.assert_allclose(y[0, 0], [[0, 1, 0.7, *P1]])


def test_background_minus_one():
    # share_location=false: every class (0 included) decodes its own locations (all zero here: the priors)
    y = det("background_label_id: -1 share_location: false confidence_threshold: 0.45", loc=np.zeros((1, 36)))
    np.testing.assert_allclose(y[0, 0], [[0, 0, 0.5, *P2], [0, 1, 0.7, *P1]])
    # shared locations are labelled -1 and skipped as background: Caffe aborts, we refuse by name
    with pytest.raises(UnsupportedParam, match=r"background_label_id=-1 is not supported"):
        det("background_label_id: -1")


def test_no_detection_rows_per_image():
    y = det("confidence_threshold: 0.99", loc=np.zeros((2, 12)), conf=np.tile(CONF, (2, 1)))
    np.testing.assert_array_equal(y, [[[[0, -1, -1, -1, -1, -1, -1], [1, -1, -1, -1, -1, -1, -1]]]])


def test_decode_code_types():
    prior = np.array([[[0.2, 0.2, 0.6, 0.4], [0.1, 0.1, 0.2, 0.2]]])  # one prior, variances 0.1 0.1 0.2 0.2
    conf = np.array([[0.0, 1.0]])
    one = 'detection_output_param { num_classes: 2 code_type: %s %s }'
    loc = np.array([[1.0, -2.0, 5 * math.log(2), 0.0]])
    (y,) = run(DET + one % ("CENTER_SIZE", ""), loc, conf, prior)
    # centre (0.4, 0.3), w 0.4, h 0.2 -> cx 0.44, cy 0.26, w 0.8, h 0.2
    np.testing.assert_allclose(y[0, 0, 0, 3:], [0.04, 0.16, 0.84, 0.36], atol=1e-12)
    (y,) = run(DET + one % ("CORNER_SIZE", ""), np.ones((1, 4)), conf, prior)
    np.testing.assert_allclose(y[0, 0, 0, 3:], [0.24, 0.22, 0.68, 0.44], atol=1e-12)
    (y,) = run(DET + one % ("CORNER", "variance_encoded_in_target: true"), np.ones((1, 4)) * 0.5, conf, prior)
    np.testing.assert_allclose(y[0, 0, 0, 3:], [0.7, 0.7, 1.1, 0.9], atol=1e-12)


def test_unshared_locations_use_their_class():
    prior = np.array([[[0.2, 0.2, 0.6, 0.4], [1.0] * 4]])
    loc = np.array([[9, 9, 9, 9, 0.1, 0.2, 0.3, 0.4]])  # class 0 (background, ignored), class 1
    (y,) = run(DET + "detection_output_param { num_classes: 2 share_location: false }", loc,
               np.array([[0.0, 0.8]]), prior)
    np.testing.assert_allclose(y[0, 0], [[0, 1, 0.8, 0.3, 0.4, 0.9, 0.8]])


@pytest.mark.parametrize(
    "params,err,match",
    [
        ('save_output_param { output_directory: "/tmp/x" }', UnsupportedParam,
         r"DetectionOutput 'd': detection_output_param.save_output_param=<set> is not supported"),
        ("visualize: true", UnsupportedParam, r"visualize=true"),
        ("nms_param { eta: 0 }", UnsupportedParam, r"nms_param.eta=0.0"),
    ],
)
def test_detection_rejections(params, err, match):
    with pytest.raises(err, match=match):
        det(params)


def test_detection_shape_errors():
    with pytest.raises(ShapeError, match=r"conf has 6 values per image; 3 priors x 3 classes need 9"):
        det("", conf=CONF[:, :6])
    flat_prior = PRIOR.copy()
    flat_prior[0, 0, 6] = flat_prior[0, 0, 4]  # prior 1: xmax == xmin
    with pytest.raises(ShapeError, match=r"prior 1 .* no positive width and height, which code_type CENTER_SIZE"):
        det("code_type: CENTER_SIZE", prior=flat_prior)
    assert det("code_type: CORNER", prior=flat_prior).shape[-1] == 7  # CORNER never divides by the size
    with pytest.raises(UnsupportedParam, match=r"num_classes=<unset>"):
        run(DET + "detection_output_param { }", LOC0, CONF, PRIOR)


def _naive_nms(boxes, scores, score_threshold, thr, top_k):
    """ApplyNMSFast written from bbox_util.cpp as a plain loop (pure Python overlaps)."""
    def size(b):
        return 0.0 if b[2] < b[0] or b[3] < b[1] else (b[2] - b[0]) * (b[3] - b[1])

    def iou(a, b):
        if b[0] > a[2] or b[2] < a[0] or b[1] > a[3] or b[3] < a[1]:
            return 0.0
        w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
        if w <= 0 or h <= 0:
            return 0.0
        return w * h / (size(a) + size(b) - w * h)

    order = sorted((i for i in range(len(scores)) if scores[i] > score_threshold), key=lambda i: -scores[i])
    if top_k > -1:
        order = order[:top_k]
    kept = []
    for i in order:
        if all(iou(boxes[i], boxes[k]) <= thr for k in kept):
            kept.append(i)
    return kept


@settings(max_examples=10, deadline=None)
@given(n=st.integers(200, 600), thr=st.sampled_from([0.0, 0.3, 0.6]), top_k=st.sampled_from([-1, 300]),
       seed=st.integers(0, 10_000))
def test_nms_matches_plain_loop_across_blocks(n, thr, top_k, seed):
    """The vectorised NMS (blocks of 256 candidates) keeps exactly what the plain greedy loop keeps, in order,
    including inverted boxes (size 0) and tied scores (stable order)."""
    from harness.reference.detection import nms_fast

    rng = np.random.default_rng(seed)
    c, s = rng.uniform(0, 1, (n, 2)), rng.uniform(0, 0.4, (n, 2))
    boxes = np.concatenate([c - s / 2, c + s / 2], axis=1)
    boxes[::7, 2] -= 0.5  # some inverted boxes
    scores = rng.integers(0, 40, n) / 40.0
    got = nms_fast(boxes, scores, score_threshold=0.2, nms_threshold=thr, top_k=top_k)
    assert got == _naive_nms(boxes.tolist(), scores.tolist(), 0.2, thr, top_k)
