"""Converters for the SSD fork's detection layers: PriorBox (exact, a constant) and DetectionOutput (refused)."""

from __future__ import annotations

from ..errors import ConversionError, ShapeError, UnsupportedParam
from ..net import Layer
from . import custom_ops as C
from ._layout import caffe_shape, expect
from .base import CONVERTERS, ConvertContext


def _bad(layer: Layer, field: str, value, alternatives: str) -> UnsupportedParam:
    return UnsupportedParam(f"{layer.type} {layer.name!r}: {field}={value} is not supported ({alternatives})")


@CONVERTERS.register("PriorBox")
def convert_prior_box(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """SSD ``prior_box_layer.cpp``: the ``(1, 2, H*W*P*4)`` prior boxes and variances depend only on the feature map
    and image sizes -> ``CaffePriorBox([feature, image])``, a constant in Caffe's order computed in float32 as the
    fork does (see :func:`harness.convert.custom_ops.prior_boxes`)."""
    expect(layer, inputs, 2, 1)
    p = layer.p("prior_box_param")
    feat = caffe_shape(ctx, 0, inputs[0])
    img = caffe_shape(ctx, 1, inputs[1])
    if len(feat) != 4 or len(img) != 4:
        raise ShapeError(f"PriorBox {layer.name!r}: needs 4-D bottoms, got {feat} and {img}")
    mins = list(p.min_size)
    if not mins:
        raise _bad(layer, "prior_box_param.min_size", "<unset>", "at least one positive min_size")
    for v in mins:
        if not v > 0:
            raise _bad(layer, "prior_box_param.min_size", v, "a positive size")
    maxs = list(p.max_size)
    if maxs:
        if len(maxs) != len(mins):
            raise _bad(layer, "prior_box_param.max_size", maxs, f"one max_size per min_size ({len(mins)})")
        for lo, hi in zip(mins, maxs):
            if not hi > lo:
                raise _bad(layer, "prior_box_param.max_size", hi, f"greater than min_size {lo}")
    var = list(p.variance)
    if len(var) not in (0, 1, 4) or any(not v > 0 for v in var):
        raise _bad(layer, "prior_box_param.variance", var, "one or four positive values")
    if p.HasField("img_h") or p.HasField("img_w"):
        if p.HasField("img_size"):
            raise _bad(layer, "prior_box_param.img_size", p.img_size, "either img_size or img_h/img_w, not both")
        img_h, img_w = int(p.img_h), int(p.img_w)
        if img_h <= 0 or img_w <= 0:
            raise _bad(layer, "prior_box_param.img_h/img_w", f"{img_h}/{img_w}", "both positive")
    elif p.HasField("img_size"):
        if p.img_size <= 0:
            raise _bad(layer, "prior_box_param.img_size", p.img_size, "a positive size")
        img_h = img_w = int(p.img_size)
    else:
        img_h = img_w = 0
    if p.HasField("step_h") or p.HasField("step_w"):
        if p.HasField("step"):
            raise _bad(layer, "prior_box_param.step", p.step, "either step or step_h/step_w, not both")
        step_h, step_w = float(p.step_h), float(p.step_w)
        if not (step_h > 0 and step_w > 0):
            raise _bad(layer, "prior_box_param.step_h/step_w", f"{step_h}/{step_w}", "both positive")
    elif p.HasField("step"):
        if not p.step > 0:
            raise _bad(layer, "prior_box_param.step", p.step, "a positive step")
        step_h = step_w = float(p.step)
    else:
        step_h = step_w = 0.0
    lay = C.CaffePriorBox(min_sizes=mins, max_sizes=maxs, aspect_ratios=list(p.aspect_ratio), flip=p.flip,
                          clip=p.clip, variance=var, img_h=img_h, img_w=img_w, step_h=step_h, step_w=step_w,
                          offset=float(p.offset), name=layer.name)
    return [lay(list(inputs))]


@CONVERTERS.register("DetectionOutput")
def convert_detection_output(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """SSD ``detection_output_layer.cpp`` returns a data-dependent number of rows ``(1, 1, D, 7)`` (decode, per-class
    NMS, keep_top_k); no exact fixed-shape Keras equivalent is implemented, so conversion is refused by name (also
    under ``allow_approx``: there is no approximation to offer)."""
    raise ConversionError(
        f"DetectionOutput {layer.name!r}: cannot be converted to Keras exactly (its output has a data-dependent"
        " number of detections after per-class NMS); no approximate conversion is available either. Convert the"
        " net up to its loc/conf/prior blobs and run DetectionOutput outside Keras (harness.reference implements it)")
