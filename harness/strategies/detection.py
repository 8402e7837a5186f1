"""SSD PriorBox and DetectionOutput cases."""

from __future__ import annotations


import numpy as np
from hypothesis import strategies as st

from ._arrays import Limits, _choice, _data, _distinct, _layer_case, _normal, _rng, _shape
from ._render import Enum, Items, LayerCase, LayerDef
from .registry import _case


@_case("PriorBox")
def _priorbox_case(draw, lim: Limits) -> LayerCase:
    """SSD PriorBox over a feature map and an image blob: min/max sizes, aspect ratios, flip, clip, variances,
    explicit or implied image size and step, offset."""
    rng = _rng(draw)
    n, c, h, w = _shape(draw, lim, sides=((1, 5), (1, 5)))
    ih, iw = _distinct(draw, [(h * 4, h * 12), (w * 4, w * 12)])
    nmin = draw(st.integers(1, 2))
    mins = sorted(draw(st.lists(st.sampled_from([8.0, 12.5, 20.0, 32.0]), min_size=nmin, max_size=nmin,
                                unique=True)))
    items: Items = [("min_size", m) for m in mins]
    if draw(st.booleans()):
        items += [("max_size", m * _choice(draw, [1.5, 2.0])) for m in mins]
    ars = draw(st.lists(st.sampled_from([2.0, 3.0, 0.5]), max_size=2, unique=True))
    items += [("aspect_ratio", a) for a in ars]
    flip = draw(st.booleans())
    if not flip or draw(st.booleans()):
        items.append(("flip", flip))
    if draw(st.booleans()):
        items.append(("clip", True))
    var = _choice(draw, [[], [0.1], [0.1, 0.1, 0.2, 0.2]])
    items += [("variance", v) for v in var]
    img = _choice(draw, ["blob", "size", "hw"])
    if img == "size":
        items.append(("img_size", _choice(draw, [300, 64])))
    elif img == "hw":
        items += [("img_h", ih * 2), ("img_w", iw)]
    step = _choice(draw, ["implied", "step", "hw"])
    if step == "step":
        items.append(("step", _choice(draw, [8.0, 16.0])))
    elif step == "hw":
        items += [("step_h", 8.0), ("step_w", 12.0)]
    if draw(st.booleans()):
        items.append(("offset", _choice(draw, [0.5, 0.25])))
    inputs = {"fmap": _data(draw, rng, (n, c, h, w)), "image": _data(draw, rng, (n, 3, ih, iw))}
    lay = LayerDef("prior1", "PriorBox", ("fmap", "image"), ("prior1",), [("prior_box_param", items)])
    return _layer_case("priorbox_case", inputs, lay)


@_case("DetectionOutput")
def _detection_output_case(draw, lim: Limits) -> LayerCase:
    """SSD DetectionOutput on decoded-ready inputs: loc offsets, per-prior class probabilities, valid priors with
    variances; one image (deploy nets run N=1)."""
    rng = _rng(draw)
    num_priors = draw(st.integers(2, 12))
    num_classes = draw(st.integers(2, 4))
    share = draw(st.integers(0, 3)) != 0
    bg = _choice(draw, [0, num_classes - 1] if share else [0, -1])  # Caffe aborts on -1 when shared
    code = _choice(draw, ["CENTER_SIZE", "CORNER"])
    var_in_target = draw(st.integers(0, 4)) == 0
    ctr = rng.uniform(0.1, 0.9, size=(num_priors, 2))
    size = rng.uniform(0.1, 0.5, size=(num_priors, 2))
    boxes = np.concatenate([ctr - size / 2, ctr + size / 2], axis=1)
    variances = np.tile(np.array([0.1, 0.1, 0.2, 0.2]), (num_priors, 1))
    prior = np.stack([boxes.reshape(-1), variances.reshape(-1)])[None].astype(np.float32)
    nloc = num_priors * 4 * (1 if share else num_classes)
    loc = _normal(rng, (1, nloc), 0.5)
    logits = rng.standard_normal((num_priors, num_classes)) * 2.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    conf = probs.reshape(1, -1).astype(np.float32)
    nms: Items = [("nms_threshold", _choice(draw, [0.45, 0.3, 0.7]))]
    if draw(st.booleans()):
        nms.append(("top_k", draw(st.integers(1, num_priors))))
    items: Items = [("num_classes", num_classes)]
    if not share:
        items.append(("share_location", False))
    items += [("background_label_id", bg), ("nms_param", nms), ("code_type", Enum(code))]
    if var_in_target:
        items.append(("variance_encoded_in_target", True))
    if draw(st.booleans()):
        items.append(("keep_top_k", draw(st.integers(1, 8))))
    items.append(("confidence_threshold", _choice(draw, [0.01, 0.2, 0.5])))
    inputs = {"loc": loc, "conf": conf, "prior": prior}
    lay = LayerDef("detection_out", "DetectionOutput", ("loc", "conf", "prior"), ("detection_out",),
                   [("detection_output_param", items)])
    return _layer_case("detection_case", inputs, lay)
