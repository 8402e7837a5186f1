"""Converters for the SSD fork's detection layers: PriorBox (exact, a constant) and DetectionOutput (keras.ops
NMS, data-dependent row count)."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..net import Layer
from ..params import detection_output_params, prior_box_params
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
    dp = detection_output_params(layer)
    loc_s, conf_s, prior_s = (caffe_shape(ctx, i, t) for i, t in enumerate(inputs))
    if len(prior_s) < 3 or prior_s[1] != 2 or prior_s[2] % 4:
        raise ShapeError(f"{who(layer)}: priors {prior_s} must be (1, 2, P*4)")
    n_priors = int(prior_s[2]) // 4
    c = dp.num_classes
    n_loc = 1 if dp.share_location else c
    if _count(loc_s) != n_priors * n_loc * 4:
        raise ShapeError(f"{who(layer)}: loc {loc_s} must hold {n_priors} priors x {n_loc} x 4"
                         " values per image")
    if _count(conf_s) != n_priors * c:
        raise ShapeError(f"{who(layer)}: conf {conf_s} must hold {n_priors} priors x {c} classes")
    lay = C.CaffeDetectionOutput(
        num_classes=c, share_location=dp.share_location, background_label_id=dp.background_label_id,
        code_type=dp.code_type, variance_encoded_in_target=dp.variance_encoded_in_target, keep_top_k=dp.keep_top_k,
        confidence_threshold=float(np.float32(dp.confidence_threshold)),
        nms_threshold=float(np.float32(dp.nms_threshold)), top_k=dp.top_k, eta=float(np.float32(dp.eta)), num_priors=n_priors,
        loc_nchw=len(loc_s) == 4, conf_nchw=len(conf_s) == 4, prior_nchw=len(prior_s) == 4, name=layer.name)
    return [lay(list(inputs))]
