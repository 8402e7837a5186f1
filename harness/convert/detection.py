"""Converters for the SSD fork's detection layers: PriorBox (exact, a constant) and DetectionOutput (keras.ops
NMS, data-dependent row count)."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..net import Layer
from ..params import detection_code_type, prior_box_params
from . import custom_ops as C
from ._layout import caffe_shape
from ._util import expect, unsupported, who
from .base import CONVERTERS, ConvertContext


@CONVERTERS.register("PriorBox")
def convert_prior_box(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """SSD ``prior_box_layer.cpp``: the ``(1, 2, H*W*P*4)`` prior boxes and variances depend only on the feature map
    and image sizes -> ``CaffePriorBox([feature, image])``, a constant in Caffe's order computed in float32 as the
    fork does (see :func:`harness.convert.custom_ops.prior_boxes`)."""
    expect(layer, inputs, 2, 1)
    p = prior_box_params(layer)
    feat = caffe_shape(ctx, 0, inputs[0])
    img = caffe_shape(ctx, 1, inputs[1])
    if len(feat) != 4 or len(img) != 4:
        raise ShapeError(f"{who(layer)}: needs 4-D bottoms, got {feat} and {img}")
    img_h, img_w = p.img_hw or (0, 0)  # 0: the image bottom's size
    step_h, step_w = p.step_hw or (0.0, 0.0)  # 0: image size / feature-map size
    lay = C.CaffePriorBox(min_sizes=list(p.min_sizes), max_sizes=list(p.max_sizes),
                          aspect_ratios=list(p.aspect_ratios), flip=p.flip, clip=p.clip, variance=list(p.variance),
                          img_h=img_h, img_w=img_w, step_h=step_h, step_w=step_w, offset=p.offset, name=layer.name)
    return [lay(list(inputs))]


_FLT_MAX = float(np.finfo(np.float32).max)


def _count(shape, start=1) -> int:
    n = 1
    for d in shape[start:]:
        n *= int(d)
    return n


@CONVERTERS.register("DetectionOutput")
def convert_detection_output(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """SSD ``detection_output_layer.cpp``: decode + per-class NMS + keep_top_k -> ``CaffeDetectionOutput`` (keras.ops:
    sort by ``top_k``, a greedy NMS loop over the sorted candidates, ``nonzero`` gathers); the Caffe top
    ``(1, 1, D, 7)`` has a data-dependent ``D`` and is returned NHWC as ``(1, D, 7, 1)``. Exact up to float32
    rounding of the decoded boxes (an overlap within rounding of the NMS threshold could decide differently)."""
    if len(inputs) != 3:
        raise unsupported(layer, "bottom", f"{len(inputs)} bottoms",
                   "exactly 3 bottoms: loc, conf, prior (the ARM-refined 5-bottom variant is not supported)")
    expect(layer, inputs, 3, 1)
    p = layer.p("detection_output_param")
    if not p.HasField("num_classes") or p.num_classes < 1:
        raise unsupported(layer, "detection_output_param.num_classes",
                   p.num_classes if p.HasField("num_classes") else "<unset>", "a positive class count")
    if p.HasField("save_output_param"):
        raise unsupported(layer, "detection_output_param.save_output_param", "<set>",
                   "writing detections to files is not part of a forward pass; remove it")
    if p.visualize:
        raise unsupported(layer, "detection_output_param.visualize", "true", "false")
    code_type = detection_code_type(layer)
    if p.share_location and p.background_label_id == -1:
        raise unsupported(layer, "detection_output_param.background_label_id", -1,
                   "with share_location=true Caffe aborts (its shared boxes are filed under label -1); use a class"
                   " id, or share_location=false")
    nms = p.nms_param
    if nms.nms_threshold < 0:
        raise unsupported(layer, "nms_param.nms_threshold", nms.nms_threshold, "a non-negative overlap")
    if not 0 < nms.eta <= 1:
        raise unsupported(layer, "nms_param.eta", nms.eta, "0 < eta <= 1")
    loc_s, conf_s, prior_s = (caffe_shape(ctx, i, t) for i, t in enumerate(inputs))
    if len(prior_s) < 3 or prior_s[1] != 2 or prior_s[2] % 4:
        raise ShapeError(f"{who(layer)}: priors {prior_s} must be (1, 2, P*4)")
    n_priors = int(prior_s[2]) // 4
    c = int(p.num_classes)
    n_loc = 1 if p.share_location else c
    if _count(loc_s) != n_priors * n_loc * 4:
        raise ShapeError(f"{who(layer)}: loc {loc_s} must hold {n_priors} priors x {n_loc} x 4"
                         " values per image")
    if _count(conf_s) != n_priors * c:
        raise ShapeError(f"{who(layer)}: conf {conf_s} must hold {n_priors} priors x {c} classes")
    thr = float(np.float32(p.confidence_threshold)) if p.HasField("confidence_threshold") else -_FLT_MAX
    lay = C.CaffeDetectionOutput(
        num_classes=c, share_location=p.share_location, background_label_id=p.background_label_id,
        code_type=code_type, variance_encoded_in_target=p.variance_encoded_in_target, keep_top_k=p.keep_top_k,
        confidence_threshold=thr, nms_threshold=float(np.float32(nms.nms_threshold)),
        top_k=int(nms.top_k) if nms.HasField("top_k") else -1, eta=float(np.float32(nms.eta)), num_priors=n_priors,
        loc_nchw=len(loc_s) == 4, conf_nchw=len(conf_s) == 4, prior_nchw=len(prior_s) == 4, name=layer.name)
    return [lay(list(inputs))]
