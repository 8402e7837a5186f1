"""Convolution, depthwise convolution, Deconvolution: output sizes, weight shapes, multiply-adds."""

from __future__ import annotations

from ..errors import ShapeError, UnsupportedParam
from ..net import Layer
from ..params import conv_geometry, conv_group
from ._checks import Shape, _fmt, _n_bottoms, _positive_top, _who, count
from .registry import MACS, PARAM_SHAPES, SHAPES


def conv_out_size(size: int, *, kernel: int, stride: int, pad: int, dilation: int) -> int:
    """Caffe ``ConvolutionLayer::compute_output_shape``::

        kernel_extent = dilation * (kernel - 1) + 1
        output = (input + 2 * pad - kernel_extent) / stride + 1      (integer division = floor, operands >= 0)
    """
    extent = dilation * (kernel - 1) + 1
    return (size + 2 * pad - extent) // stride + 1


def deconv_out_size(size: int, *, kernel: int, stride: int, pad: int, dilation: int) -> int:
    """Caffe ``DeconvolutionLayer::compute_output_shape``::

        kernel_extent = dilation * (kernel - 1) + 1
        output = stride * (input - 1) + kernel_extent - 2 * pad
    """
    extent = dilation * (kernel - 1) + 1
    return stride * (size - 1) + extent - 2 * pad


def _conv_common(layer: Layer, bottoms: list[Shape]):
    _n_bottoms(layer, bottoms, minimum=1)
    if len(layer.tops) != len(bottoms):
        raise ShapeError(f"{_who(layer)}: needs one top per bottom ({len(bottoms)} bottoms, {len(layer.tops)} tops)")
    g = conv_geometry(layer)
    first = tuple(bottoms[0])
    cp = layer.p("convolution_param")
    nk = max(len(cp.kernel_size), 2 if (cp.HasField("kernel_h") or cp.HasField("kernel_w")) else 0)
    if len(first) != 4:
        if len(first) == 5 and nk == 3:
            raise UnsupportedParam(f"{_who(layer)}: 3-D convolution (kernel_size={list(cp.kernel_size)} on "
                                   f"{_fmt(first)}) is not supported (2-D only)")
        raise ShapeError(f"{_who(layer)}: bottom {layer.bottoms[0]!r} must have 4 axes (N, C, H, W) for a 2-D "
                         f"kernel, got shape {_fmt(first)}")
    for b, s in zip(layer.bottoms, bottoms):
        if tuple(s) != first:
            raise ShapeError(f"{_who(layer)}: all bottoms must have the same shape; {b!r} is {_fmt(s)}, "
                             f"{layer.bottoms[0]!r} is {_fmt(first)}")
    c_in = first[1]
    group = conv_group(layer, c_in)
    if c_in % group:
        raise ShapeError(f"{_who(layer)}: group={group} does not divide the input channels {c_in} "
                         f"(bottom {layer.bottoms[0]!r} {_fmt(first)})")
    if g.num_output <= 0:
        raise ShapeError(f"{_who(layer)}: num_output={g.num_output} must be positive")
    if g.num_output % group:
        raise ShapeError(f"{_who(layer)}: group={group} does not divide num_output={g.num_output}")
    return g, first


def _conv_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Convolution (and the forks' depthwise convolution, which requires ``group`` = input channels)::

        out_h = (H + 2*pad_h - (dilation_h*(kernel_h-1)+1)) / stride_h + 1     (floor)

    Caffe rejects group not dividing C_in or num_output; a kernel extent larger than the padded input gives no
    output position, which is refused here by name."""
    g, (n, c, h, w) = _conv_common(layer, bottoms)
    outs = []
    for axis, size, k, s, p, d in (("h", h, g.kernel[0], g.stride[0], g.pad[0], g.dilation[0]),
                                   ("w", w, g.kernel[1], g.stride[1], g.pad[1], g.dilation[1])):
        extent = d * (k - 1) + 1
        if extent > size + 2 * p:
            raise ShapeError(
                f"{_who(layer)}: kernel_{axis}={k}" + (f" (dilation {d}: extent {extent})" if d != 1 else "")
                + f" is larger than the padded input {axis.upper()}={size}+2*{p}={size + 2 * p}"
            )
        outs.append(conv_out_size(size, kernel=k, stride=s, pad=p, dilation=d))
    top = _positive_top(layer, (n, g.num_output, outs[0], outs[1]))
    return [top] * len(bottoms)


SHAPES.register("Convolution", "ConvolutionDepthwise")(_conv_shapes)


@SHAPES.register("Deconvolution")
def _deconv_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Deconvolution (``deconv_layer.cpp``): ``out_h = stride_h*(H-1) + dilation_h*(kernel_h-1)+1 - 2*pad_h``;
    must be positive (a pad too large for the kernel gives none)."""
    g, (n, c, h, w) = _conv_common(layer, bottoms)
    oh = deconv_out_size(h, kernel=g.kernel[0], stride=g.stride[0], pad=g.pad[0], dilation=g.dilation[0])
    ow = deconv_out_size(w, kernel=g.kernel[1], stride=g.stride[1], pad=g.pad[1], dilation=g.dilation[1])
    if oh <= 0 or ow <= 0:
        raise ShapeError(f"{_who(layer)}: pad={g.pad[0]}x{g.pad[1]} is too large for kernel "
                         f"{g.kernel[0]}x{g.kernel[1]}, stride {g.stride[0]}x{g.stride[1]} on {h}x{w}: "
                         f"output {oh}x{ow}")
    return [(n, g.num_output, oh, ow)] * len(bottoms)


@PARAM_SHAPES.register("Convolution", "ConvolutionDepthwise")
def _conv_params(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """``base_conv_layer.cpp``: weights ``(num_output, C_in/group, kh, kw)``, bias ``(num_output,)``."""
    g = conv_geometry(layer)
    c_in = bottoms[0][1]
    out = [(g.num_output, c_in // conv_group(layer, c_in), g.kernel[0], g.kernel[1])]
    if g.bias_term:
        out.append((g.num_output,))
    return out


@PARAM_SHAPES.register("Deconvolution")
def _deconv_params(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Deconvolution reverses the weight dimensions: ``(C_in, num_output/group, kh, kw)``, bias ``(num_output,)``."""
    g = conv_geometry(layer)
    c_in = bottoms[0][1]
    out = [(c_in, g.num_output // g.group, g.kernel[0], g.kernel[1])]
    if g.bias_term:
        out.append((g.num_output,))
    return out


@MACS.register("Convolution", "ConvolutionDepthwise")
def _conv_macs(layer: Layer, bottoms: list[Shape], tops: list[Shape]) -> int:
    """N * C_out * H_out * W_out * (C_in/group) * kh * kw per bottom."""
    g = conv_geometry(layer)
    return sum(count(t) * (b[1] // conv_group(layer, b[1])) * g.kernel[0] * g.kernel[1] for b, t in zip(bottoms, tops))


@MACS.register("Deconvolution")
def _deconv_macs(layer: Layer, bottoms: list[Shape], tops: list[Shape]) -> int:
    """Every input element is multiplied into a (C_out/group) x kh x kw patch: N*C_in*H*W * (C_out/group)*kh*kw."""
    g = conv_geometry(layer)
    return sum(count(b) * (g.num_output // g.group) * g.kernel[0] * g.kernel[1] for b in bottoms)
