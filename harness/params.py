"""Reading Caffe's spatial parameters as (h, w) pairs, with Caffe's defaults and HasField semantics.

This is the only place that interprets ``kernel_size``/``kernel_h``/``pad``/... fields.  It does no output-size or
padding arithmetic: shape inference, the reference and the converter each derive those themselves, so that one bug
cannot hide on both sides of a comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ShapeError, UnsupportedParam
from .net import Layer


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


_POOL_NAMES = {0: "MAX", 1: "AVE", 2: "STOCHASTIC"}


def pool_geometry(layer: Layer) -> PoolGeometry:
    """Kernel, stride, pad, method and rounding of a Pooling layer (pooling_layer.cpp LayerSetUp rules)."""
    pp = layer.p("pooling_param")
    method = _POOL_NAMES[pp.pool]
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
    return PoolGeometry(method, kernel, stride, pad, bool(pp.global_pooling), pp.round_mode == 0)


def conv_group(layer: Layer, channels: int) -> int:
    """The effective ``group`` of a convolution on ``channels`` input channels.

    The forks' ``ConvolutionDepthwise``/``DepthwiseConvolution`` layers are grouped convolutions with one group per
    input channel: their prototxts often leave ``group`` unset (the layer's own code sizes its weights
    ``(num_output, 1, kh, kw)``), so an unset group means ``channels``; a group that is set must equal it.
    """
    cp = layer.p("convolution_param")
    if layer.kind == "ConvolutionDepthwise":
        if cp.HasField("group") and cp.group != channels:
            raise UnsupportedParam(f"{layer.type} {layer.name!r}: group={cp.group} differs from the input channels "
                                   f"({channels}); a depthwise convolution has group = channels")
        return channels
    return int(cp.group)
