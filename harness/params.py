"""Reading Caffe layer parameters: spatial fields as (h, w) pairs, enums by name, axes, PriorBox fields.

This is the one place that interprets ``kernel_size``/``kernel_h``/``pad``/..., Caffe's enums (compared by their
``caffe_pb2`` names, never as bare integers), ``axis`` fields (``Blob::CanonicalAxisIndex``) and the SSD PriorBox
fields, with Caffe's defaults, HasField semantics and setup ``CHECK``s.  It does no output-size or padding
arithmetic: shape inference, the reference and the converter each derive those themselves, so that one bug cannot
hide on both sides of a comparison.

API (every reader takes the :class:`~harness.net.Layer`):

* :func:`conv_geometry` -> :class:`ConvGeometry`; :func:`conv_group` -> the effective group;
* :func:`pool_geometry` -> :class:`PoolGeometry`; :func:`pool_method`, :func:`spp_method` -> ``"MAX"``/``"AVE"``/
  ``"STOCHASTIC"``; :func:`pool_ceil` -> ``round_mode == CEIL``;
* :func:`enum_name` (any enum field by name) and :func:`eltwise_operation`, :func:`lrn_region`,
  :func:`reduction_operation`, :func:`detection_code_type`;
* :func:`canonical_axis` (an axis value against a rank) and :func:`layer_axis` (a layer's ``<param>.axis`` field);
* :func:`prior_box_params` -> :class:`PriorBoxParams`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .catalogue import canonical_type, traits
from .errors import InvalidParam, ShapeError, UnsupportedParam
from .net import Layer, who as _who
from .proto import caffe_pb2


@dataclass(frozen=True)
class ConvGeometry:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    dilation: tuple[int, int]
    group: int
    num_output: int
    bias_term: bool


@dataclass(frozen=True)
class PoolGeometry:
    method: str  # "MAX" | "AVE" | "STOCHASTIC"
    kernel: tuple[int, int] | None  # None when global_pooling
    stride: tuple[int, int]
    pad: tuple[int, int]
    global_pooling: bool
    ceil: bool  # round_mode CEIL (Caffe's default) vs FLOOR


def _pair(layer: Layer, what: str, repeated: list[int], h_field: str, w_field: str, has_h: bool, has_w: bool,
          h: int, w: int, default: int | None) -> tuple[int, int]:
    """Caffe's rule (base_conv_layer.cpp): either the 2-D ``<what>_h``/``<what>_w`` pair, or the repeated field with
    one value for both axes or one per axis; never both."""
    if has_h or has_w:
        if repeated:
            raise UnsupportedParam(
                f"{layer.type} {layer.name!r}: {what} given both as {what}={list(repeated)} and as {h_field}/{w_field}"
            )
        if not (has_h and has_w):
            missing = w_field if has_h else h_field
            raise ShapeError(f"{layer.type} {layer.name!r}: {missing} must be given together with "
                             f"{h_field if has_h else w_field}")
        return int(h), int(w)
    if len(repeated) == 0:
        if default is None:
            raise ShapeError(f"{layer.type} {layer.name!r}: {what} is required (kernel_size or kernel_h/kernel_w)")
        return default, default
    if len(repeated) == 1:
        return int(repeated[0]), int(repeated[0])
    if len(repeated) == 2:
        return int(repeated[0]), int(repeated[1])
    raise UnsupportedParam(
        f"{layer.type} {layer.name!r}: {what}={list(repeated)} has {len(repeated)} values; only 2-D "
        f"(1 or 2 values) is supported"
    )


def conv_geometry(layer: Layer) -> ConvGeometry:
    """Kernel, stride, pad, dilation, group of a Convolution/Deconvolution/depthwise layer (2-D only)."""
    cp = layer.p("convolution_param")
    if cp.HasField("axis") and cp.axis != 1:
        raise UnsupportedParam(f"{layer.type} {layer.name!r}: convolution_param.axis={cp.axis} is not supported (1)")
    if cp.force_nd_im2col:
        raise UnsupportedParam(f"{layer.type} {layer.name!r}: force_nd_im2col=true is not supported (false)")
    kernel = _pair(layer, "kernel_size", list(cp.kernel_size), "kernel_h", "kernel_w",
                   cp.HasField("kernel_h"), cp.HasField("kernel_w"), cp.kernel_h, cp.kernel_w, None)
    stride = _pair(layer, "stride", list(cp.stride), "stride_h", "stride_w",
                   cp.HasField("stride_h"), cp.HasField("stride_w"), cp.stride_h, cp.stride_w, 1)
    # base_conv_layer.cpp: `if (has_pad_h() || has_pad_w())` takes (pad_h(), pad_w()): an unset one is 0 (its
    # proto default), unlike kernel_h/kernel_w (both required) and pooling (pad_h and pad_w both required).
    has_ph, has_pw = cp.HasField("pad_h"), cp.HasField("pad_w")
    pad = _pair(layer, "pad", list(cp.pad), "pad_h", "pad_w",
                has_ph or has_pw, has_ph or has_pw, cp.pad_h, cp.pad_w, 0)
    dil = list(cp.dilation)
    if len(dil) > 2:
        raise UnsupportedParam(f"{layer.type} {layer.name!r}: dilation={dil} has {len(dil)} values; only 2-D is "
                               f"supported")
    dilation = (1, 1) if not dil else ((dil[0], dil[0]) if len(dil) == 1 else (dil[0], dil[1]))
    for what, v in (("kernel", kernel), ("stride", stride), ("dilation", dilation)):
        if min(v) <= 0:
            raise ShapeError(f"{layer.type} {layer.name!r}: {what}={v[0]}x{v[1]} must be positive")
    if not cp.HasField("num_output"):
        raise ShapeError(f"{layer.type} {layer.name!r}: convolution_param.num_output is required")
    if cp.group <= 0:
        raise ShapeError(f"{layer.type} {layer.name!r}: group={cp.group} must be positive")
    return ConvGeometry(kernel, stride, pad, dilation, int(cp.group), int(cp.num_output), bool(cp.bias_term))


def enum_name(layer: Layer, param_field: str, field: str) -> str:
    """The ``caffe_pb2`` name of enum ``field`` of ``layer``'s ``param_field`` message (``"MAX"``, not ``0``)."""
    msg = layer.p(param_field)
    enum = msg.DESCRIPTOR.fields_by_name[field].enum_type
    value = getattr(msg, field)
    ev = enum.values_by_number.get(value)
    if ev is None:
        raise UnsupportedParam(f"{_who(layer)}: {param_field}.{field}={value} is not a {enum.name} "
                               f"({', '.join(v.name for v in enum.values)})")
    return ev.name


def pool_method(layer: Layer) -> str:
    """``pooling_param.pool``: ``"MAX"`` (Caffe's default), ``"AVE"`` or ``"STOCHASTIC"``."""
    return enum_name(layer, "pooling_param", "pool")


def spp_method(layer: Layer) -> str:
    """``spp_param.pool``: ``"MAX"`` (default), ``"AVE"`` or ``"STOCHASTIC"``."""
    return enum_name(layer, "spp_param", "pool")


def pool_ceil(layer: Layer) -> bool:
    """``pooling_param.round_mode == CEIL`` (Caffe's default; the loader folds the forks' ``ceil_mode`` into it)."""
    return layer.p("pooling_param").round_mode == caffe_pb2.PoolingParameter.CEIL


def eltwise_operation(layer: Layer) -> str:
    """``eltwise_param.operation``: ``"PROD"``, ``"SUM"`` (Caffe's default) or ``"MAX"``."""
    return enum_name(layer, "eltwise_param", "operation")


# the types whose catalogue facts differ by a parameter (harness.catalogue.Traits.keras / .nonfinite keys)
VARIANTS: dict[str, Callable[[Layer], str]] = {"Pooling": pool_method, "Eltwise": eltwise_operation}


def variant(layer: Layer) -> str:
    """The parameter that selects among a type's catalogue variants (Pooling ``"MAX"``/``"AVE"``, Eltwise
    ``"SUM"``...); ``""`` for a type without variants."""
    fn = VARIANTS.get(canonical_type(layer.kind))
    return fn(layer) if fn is not None else ""


def _relu_form(layer: Layer) -> tuple[float, float | None]:
    return float(layer.p("relu_param").negative_slope), None


# the rectifiers: y = max(x, 0) + slope * min(x, 0), clipped at ``clip`` when it is set
RELU_FORMS: dict[str, Callable[[Layer], tuple[float, float | None]]] = {
    "ReLU": _relu_form, "ReLU6": lambda layer: (0.0, 6.0)}


def relu_form(layer: Layer) -> tuple[float, float | None] | None:
    """``(negative slope, clip or None)`` of a rectifier (ReLU, ReLU6); None for any other type."""
    fn = RELU_FORMS.get(canonical_type(layer.kind))
    return fn(layer) if fn is not None else None


def lrn_region(layer: Layer) -> str:
    """``lrn_param.norm_region``: ``"ACROSS_CHANNELS"`` (Caffe's default) or ``"WITHIN_CHANNEL"``."""
    return enum_name(layer, "lrn_param", "norm_region")


def reduction_operation(layer: Layer) -> str:
    """``reduction_param.operation``: ``"SUM"`` (Caffe's default), ``"ASUM"``, ``"SUMSQ"`` or ``"MEAN"``."""
    return enum_name(layer, "reduction_param", "operation")


def detection_code_type(layer: Layer) -> str:
    """``detection_output_param.code_type``: ``"CORNER"`` (the SSD default), ``"CENTER_SIZE"`` or ``"CORNER_SIZE"``."""
    return enum_name(layer, "detection_output_param", "code_type")


def canonical_axis(layer: Layer, field_name: str, axis: int, num_axes: int) -> int:
    """Caffe ``Blob::CanonicalAxisIndex``::

        CHECK_GE(axis_index, -num_axes()) ... CHECK_LT(axis_index, num_axes())
        if (axis_index < 0) return axis_index + num_axes();
    """
    if not -num_axes <= axis < num_axes:
        raise ShapeError(
            f"{_who(layer)}: {field_name}={axis} is out of range for a {num_axes}-D blob "
            f"(valid: {-num_axes}..{num_axes - 1})"
        )
    return axis + num_axes if axis < 0 else axis


def layer_axis(layer: Layer, param_field: str, num_axes: int, field: str = "axis") -> int:
    """``layer.<param_field>.<field>`` canonicalised against a blob of ``num_axes`` axes (:func:`canonical_axis`)."""
    return canonical_axis(layer, f"{param_field}.{field}", int(getattr(layer.p(param_field), field)), num_axes)


def pool_geometry(layer: Layer) -> PoolGeometry:
    """Kernel, stride, pad, method and rounding of a Pooling layer (pooling_layer.cpp LayerSetUp rules)."""
    pp = layer.p("pooling_param")
    method = pool_method(layer)
    if pp.global_pooling:
        if pp.HasField("kernel_size") or pp.HasField("kernel_h") or pp.HasField("kernel_w"):
            raise ShapeError(f"Pooling {layer.name!r}: with global_pooling=true the kernel size cannot be specified")
        kernel = None
    else:
        kernel = _pair(layer, "kernel_size", [pp.kernel_size] if pp.HasField("kernel_size") else [],
                       "kernel_h", "kernel_w", pp.HasField("kernel_h"), pp.HasField("kernel_w"),
                       pp.kernel_h, pp.kernel_w, None)
    pad = _pair(layer, "pad", [pp.pad] if pp.HasField("pad") else [], "pad_h", "pad_w",
                pp.HasField("pad_h"), pp.HasField("pad_w"), pp.pad_h, pp.pad_w, 0)
    stride = _pair(layer, "stride", [pp.stride] if pp.HasField("stride") else [], "stride_h", "stride_w",
                   pp.HasField("stride_h"), pp.HasField("stride_w"), pp.stride_h, pp.stride_w, 1)
    if kernel is not None and min(kernel) <= 0:
        raise ShapeError(f"Pooling {layer.name!r}: kernel={kernel[0]}x{kernel[1]} must be positive")
    if min(stride) <= 0:
        raise ShapeError(f"Pooling {layer.name!r}: stride={stride[0]}x{stride[1]} must be positive")
    if pp.global_pooling and (pad != (0, 0) or stride != (1, 1)):
        raise ShapeError(f"Pooling {layer.name!r}: with global_pooling=true only pad=0 and stride=1 are allowed "
                         f"(got pad={pad}, stride={stride})")
    if kernel is not None and (pad[0] or pad[1]):
        if method not in ("MAX", "AVE"):
            raise UnsupportedParam(f"Pooling {layer.name!r}: padding is implemented only for MAX and AVE pooling "
                                   f"(pool={method})")
        if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
            raise ShapeError(f"Pooling {layer.name!r}: pad={pad[0]}x{pad[1]} must be smaller than "
                             f"kernel={kernel[0]}x{kernel[1]}")
    return PoolGeometry(method, kernel, stride, pad, bool(pp.global_pooling), pool_ceil(layer))


def conv_group(layer: Layer, channels: int) -> int:
    """The effective ``group`` of a convolution on ``channels`` input channels.

    The forks' ``ConvolutionDepthwise``/``DepthwiseConvolution`` layers are grouped convolutions with one group per
    input channel: their prototxts often leave ``group`` unset (the layer's own code sizes its weights
    ``(num_output, 1, kh, kw)``), so an unset group means ``channels``; a group that is set must equal it.
    """
    cp = layer.p("convolution_param")
    if traits(layer.kind).depthwise:
        if cp.HasField("group") and cp.group != channels:
            raise UnsupportedParam(f"{layer.type} {layer.name!r}: group={cp.group} differs from the input channels "
                                   f"({channels}); a depthwise convolution has group = channels")
        return channels
    return int(cp.group)


@dataclass(frozen=True)
class PriorBoxParams:
    """The SSD PriorBox fields after ``PriorBoxLayer::LayerSetUp``'s checks and defaults."""

    min_sizes: tuple[float, ...]
    max_sizes: tuple[float, ...]  # empty, or one per min_size
    aspect_ratios: tuple[float, ...]  # as given (the expansion with 1 and flips is each side's own rule)
    flip: bool
    clip: bool
    variance: tuple[float, ...]  # 1 or 4 values; Caffe's default (0.1,) when none is given
    img_hw: tuple[int, int] | None  # None: the image bottom's H, W
    step_hw: tuple[float, float] | None  # None: image size / feature-map size
    offset: float


def _prior_bad(layer: Layer, field: str, value, requirement: str) -> InvalidParam:
    return InvalidParam(f"{_who(layer)}: prior_box_param.{field}={value} is not supported ({requirement})")


def _prior_sizes(layer: Layer, p) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``CHECK_GT(min_size, 0)``; ``CHECK_EQ(min_size_size, max_size_size)`` and ``CHECK_GT(max_size, min_size)``
    when max sizes are given."""
    mins, maxs = tuple(float(v) for v in p.min_size), tuple(float(v) for v in p.max_size)
    if not mins:
        raise _prior_bad(layer, "min_size", "<unset>", "at least one positive min_size")
    for v in mins:
        if not v > 0:
            raise _prior_bad(layer, "min_size", v, "positive sizes")
    if maxs and len(maxs) != len(mins):
        raise _prior_bad(layer, "max_size", list(maxs), f"one max_size per min_size ({len(mins)}); got "
                                                         f"{len(maxs)} max_size for {len(mins)} min_size")
    for lo, hi in zip(mins, maxs):
        if not hi > lo:
            raise InvalidParam(f"{_who(layer)}: prior_box_param.max_size={hi} is not supported (greater than its "
                               f"min_size {lo}); Caffe requires max_size > min_size={lo}")
    return mins, maxs


def _prior_variance(layer: Layer, p) -> tuple[float, ...]:
    """More than one variance: exactly 4, each ``> 0``; one: ``> 0``; none: Caffe pushes ``0.1``."""
    var = [float(v) for v in p.variance]
    if len(var) not in (0, 1, 4) or any(not v > 0 for v in var):
        raise _prior_bad(layer, "variance", var, f"one or four positive values; got {len(var)} variance values")
    return tuple(var) or (0.1,)


def _prior_image(layer: Layer, p) -> tuple[int, int] | None:
    """``CHECK(!(has_img_size && (has_img_h || has_img_w)))`` "Either img_size or img_h/img_w should be specified;
    not both", then ``CHECK_GT(img_h, 0)``/``CHECK_GT(img_w, 0)``."""
    if p.HasField("img_h") or p.HasField("img_w"):
        if p.HasField("img_size"):
            raise _prior_bad(layer, "img_size", p.img_size, "either img_size or img_h/img_w, not both")
        if p.img_h <= 0 or p.img_w <= 0:
            raise _prior_bad(layer, "img_h/img_w", (p.img_h, p.img_w), "both positive")
        return int(p.img_h), int(p.img_w)
    if p.HasField("img_size"):
        if p.img_size <= 0:
            raise _prior_bad(layer, "img_size", p.img_size, "a positive size")
        return int(p.img_size), int(p.img_size)
    return None


def _prior_step(layer: Layer, p) -> tuple[float, float] | None:
    """``step`` excludes ``step_h``/``step_w`` ("Either step or step_h/step_w should be specified; not both"); each
    ``> 0``."""
    if p.HasField("step_h") or p.HasField("step_w"):
        if p.HasField("step"):
            raise _prior_bad(layer, "step", p.step, "either step or step_h/step_w, not both")
        if not (p.step_h > 0 and p.step_w > 0):
            raise _prior_bad(layer, "step_h/step_w", (p.step_h, p.step_w), "both positive")
        return float(p.step_h), float(p.step_w)
    if p.HasField("step"):
        if not p.step > 0:
            raise _prior_bad(layer, "step", p.step, "a positive step")
        return float(p.step), float(p.step)
    return None


def prior_box_params(layer: Layer) -> PriorBoxParams:
    """The PriorBox fields, checked as SSD's ``prior_box_layer.cpp`` ``LayerSetUp`` does (one
    :class:`~harness.errors.InvalidParam` per fault, whichever side asks)."""
    p = layer.p("prior_box_param")
    mins, maxs = _prior_sizes(layer, p)
    return PriorBoxParams(mins, maxs, tuple(float(a) for a in p.aspect_ratio), bool(p.flip), bool(p.clip),
                          _prior_variance(layer, p), _prior_image(layer, p), _prior_step(layer, p), float(p.offset))


@dataclass(frozen=True)
class DetectionOutputParams:
    """The SSD DetectionOutput fields after ``DetectionOutputLayer::LayerSetUp``'s checks and defaults (read once,
    for the reference and the converter)."""

    num_classes: int
    share_location: bool
    background_label_id: int
    code_type: str  # "CORNER", "CENTER_SIZE" or "CORNER_SIZE"
    variance_encoded_in_target: bool
    keep_top_k: int  # -1: keep all
    confidence_threshold: float  # -FLT_MAX when unset (every score passes)
    nms_threshold: float
    top_k: int  # -1 when unset
    eta: float


def _detection_bad(layer: Layer, field: str, value, requirement: str) -> UnsupportedParam:
    return UnsupportedParam(f"{_who(layer)}: {field}={value} is not supported ({requirement})")


def detection_output_params(layer: Layer) -> DetectionOutputParams:
    """``detection_output_param`` of ``layer``, refusing by name what Caffe refuses or what is no forward pass."""
    p = layer.p("detection_output_param")
    if not p.HasField("num_classes") or p.num_classes < 1:
        raise _detection_bad(layer, "detection_output_param.num_classes",
                             p.num_classes if p.HasField("num_classes") else "<unset>",
                             "a positive class count (Caffe requires it)")
    if p.HasField("save_output_param"):
        raise _detection_bad(layer, "detection_output_param.save_output_param", "<set>",
                             "writing detections to files is not part of a forward pass; remove it")
    if p.visualize:
        raise _detection_bad(layer, "detection_output_param.visualize", "true", "false")
    code_type = detection_code_type(layer)
    nms = p.nms_param
    if nms.nms_threshold < 0:
        raise _detection_bad(layer, "nms_param.nms_threshold", nms.nms_threshold, "a non-negative overlap")
    if not 0 < nms.eta <= 1:
        raise _detection_bad(layer, "nms_param.eta", nms.eta, "0 < eta <= 1")
    if p.share_location and p.background_label_id == -1:
        # DecodeBBoxesAll labels the shared locations -1 and skips label == background_label_id, so Caffe finds no
        # location predictions and aborts (LOG(FATAL)).
        raise _detection_bad(layer, "detection_output_param.background_label_id", -1,
                             "with share_location=true Caffe aborts (its shared boxes are filed under label -1); "
                             "use a class id, or share_location=false")
    return DetectionOutputParams(
        num_classes=int(p.num_classes), share_location=bool(p.share_location),
        background_label_id=int(p.background_label_id), code_type=code_type,
        variance_encoded_in_target=bool(p.variance_encoded_in_target), keep_top_k=int(p.keep_top_k),
        confidence_threshold=float(p.confidence_threshold) if p.HasField("confidence_threshold")
        else -_FLT32_MAX,
        nms_threshold=float(nms.nms_threshold), top_k=int(nms.top_k) if nms.HasField("top_k") else -1,
        eta=float(nms.eta))


_FLT32_MAX = 3.4028234663852886e38  # FLT_MAX (numpy.finfo(numpy.float32).max)
