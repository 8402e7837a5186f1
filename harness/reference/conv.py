"""Convolution, ConvolutionDepthwise (alias DepthwiseConvolution) and Deconvolution, 2-D, in pure NumPy.

Caffe rules coded here (``base_conv_layer.cpp``, ``conv_layer.cpp``, ``deconv_layer.cpp``, ``util/im2col.cpp``):

* convolution output ``out = (in + 2*pad - (dilation*(kernel-1)+1)) / stride + 1`` with C++ integer division
  (truncation toward zero); windows that reach outside the image read zeros (im2col's bounds check);
* deconvolution output ``out = stride*(in-1) + dilation*(kernel-1)+1 - 2*pad``;
* weights are ``(num_output, channels/group, kh, kw)`` for convolution and ``(channels, num_output/group, kh, kw)``
  for deconvolution; groups are contiguous channel blocks; ``y = W * x + b`` as a cross-correlation (no flip).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError, UnsupportedParam
from ..net import Layer
from ..params import ConvGeometry, conv_geometry, conv_group
from . import _window
from .registry import REFERENCE


def _c_div(a: int, b: int) -> int:
    """C++ ``int / int``: truncation toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def conv_out_size(size: int, *, kernel: int, stride: int, pad: int, dilation: int) -> int:
    """``conv_layer.cpp compute_output_shape``: ``(in + 2p - (d(k-1)+1)) / s + 1`` (C integer division)."""
    extent = dilation * (kernel - 1) + 1
    return _c_div(size + 2 * pad - extent, stride) + 1


def deconv_out_size(size: int, *, kernel: int, stride: int, pad: int, dilation: int) -> int:
    """``deconv_layer.cpp compute_output_shape``: ``s(in-1) + d(k-1)+1 - 2p``."""
    extent = dilation * (kernel - 1) + 1
    return stride * (size - 1) + extent - 2 * pad


def convolution(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, *,
                stride: tuple[int, int] = (1, 1), pad: tuple[int, int] = (0, 0),
                dilation: tuple[int, int] = (1, 1), group: int = 1) -> np.ndarray:
    """Caffe Convolution forward: ``x`` (N, C, H, W), ``weight`` (M, C/group, kh, kw), ``bias`` (M,) or None."""
    n, c, h, w = x.shape
    m, cg, kh, kw = weight.shape
    if c % group or m % group or cg * group != c:
        raise ValueError(f"weight {weight.shape} does not fit {c} input channels in {group} group(s)")
    ho = conv_out_size(h, kernel=kh, stride=stride[0], pad=pad[0], dilation=dilation[0])
    wo = conv_out_size(w, kernel=kw, stride=stride[1], pad=pad[1], dilation=dilation[1])
    if ho <= 0 or wo <= 0:
        raise ValueError(f"output size {ho}x{wo} is not positive for input {h}x{w}")
    y = _window.conv2d(x, weight, stride=stride, pad=pad, dilation=dilation, group=group, out_hw=(ho, wo))
    if bias is not None:
        y += bias.reshape(1, m, 1, 1)
    return y


def deconvolution(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, *,
                  stride: tuple[int, int] = (1, 1), pad: tuple[int, int] = (0, 0),
                  dilation: tuple[int, int] = (1, 1), group: int = 1) -> np.ndarray:
    """Caffe Deconvolution forward: ``x`` (N, C, H, W), ``weight`` (C, M/group, kh, kw), ``bias`` (M,) or None."""
    n, c, h, w = x.shape
    cw, mg, kh, kw = weight.shape
    if cw != c or c % group:
        raise ValueError(f"weight {weight.shape} does not fit {c} input channels in {group} group(s)")
    ho = deconv_out_size(h, kernel=kh, stride=stride[0], pad=pad[0], dilation=dilation[0])
    wo = deconv_out_size(w, kernel=kw, stride=stride[1], pad=pad[1], dilation=dilation[1])
    if ho <= 0 or wo <= 0:
        raise ValueError(f"output size {ho}x{wo} is not positive for input {h}x{w}")
    y = _window.conv_transpose2d(x, weight, stride=stride, pad=pad, dilation=dilation, group=group,
                                 out_hw=(ho, wo))
    if bias is not None:
        y += bias.reshape(1, mg * group, 1, 1)
    return y


@dataclass(frozen=True)
class _Bound:
    geom: ConvGeometry
    group: int
    weight: np.ndarray
    bias: np.ndarray | None


def _bind(layer: Layer, inputs: list[np.ndarray], dtype, *, deconv: bool, depthwise: bool) -> _Bound:
    if not inputs or len(inputs) != len(layer.tops):
        # Caffe runs each bottom through the same weights into the top at the same position.
        raise ShapeError(f"{layer.type} {layer.name!r}: needs as many tops as bottoms "
                         f"(got {len(inputs)} bottoms, {len(layer.tops)} tops)")
    for x in inputs:
        if x.ndim != 4:
            raise UnsupportedParam(f"{layer.type} {layer.name!r}: {x.ndim}-D input {tuple(x.shape)} is not "
                                   f"supported (only 2-D spatial convolution on N x C x H x W)")
    if any(x.shape != inputs[0].shape for x in inputs):
        raise ShapeError(f"{layer.type} {layer.name!r}: all bottoms must have the same shape")
    g = conv_geometry(layer)
    c = inputs[0].shape[1]
    group = conv_group(layer, c)
    m = g.num_output
    if c % group:
        raise ShapeError(f"{layer.type} {layer.name!r}: input channels {c} are not a multiple of group={group}")
    if m % group:
        raise ShapeError(f"{layer.type} {layer.name!r}: num_output={m} is not a multiple of group={group}")
    want = (c, m // group) if deconv else (m, c // group)
    want_w = (*want, *g.kernel)
    nblobs = 2 if g.bias_term else 1
    if len(layer.blobs) != nblobs:
        if not layer.blobs:
            raise ShapeError(f"{layer.type} {layer.name!r}: has no weights (expected weight {want_w}"
                             f"{' and bias (' + str(m) + ',)' if g.bias_term else ''})")
        raise ShapeError(f"{layer.type} {layer.name!r}: has {len(layer.blobs)} blobs, expected {nblobs} "
                         f"(bias_term={str(g.bias_term).lower()})")
    w = layer.blobs[0]
    if tuple(w.shape) != want_w:
        raise ShapeError(f"{layer.type} {layer.name!r}: weight blob has shape {tuple(w.shape)}, expected {want_w} "
                         f"({'channels, num_output/group' if deconv else 'num_output, channels/group'}, kh, kw)")
    b = None
    if g.bias_term:
        b = layer.blobs[1]
        if b.size != m:
            raise ShapeError(f"{layer.type} {layer.name!r}: bias blob has shape {tuple(b.shape)}, expected ({m},)")
        b = np.asarray(b, dtype=dtype).reshape(m)
    return _Bound(g, group, np.asarray(w, dtype=dtype), b)


def _run(layer: Layer, inputs: list[np.ndarray], dtype, *, deconv: bool, depthwise: bool) -> list[np.ndarray]:
    bd = _bind(layer, inputs, dtype, deconv=deconv, depthwise=depthwise)
    fn = deconvolution if deconv else convolution
    size = deconv_out_size if deconv else conv_out_size
    outs = []
    for x in inputs:
        h, w = x.shape[2:]
        ho = size(h, kernel=bd.geom.kernel[0], stride=bd.geom.stride[0], pad=bd.geom.pad[0],
                  dilation=bd.geom.dilation[0])
        wo = size(w, kernel=bd.geom.kernel[1], stride=bd.geom.stride[1], pad=bd.geom.pad[1],
                  dilation=bd.geom.dilation[1])
        if ho <= 0 or wo <= 0:
            g = bd.geom
            raise ShapeError(f"{layer.type} {layer.name!r}: output would be {ho}x{wo} for input {h}x{w} "
                             f"(kernel={g.kernel[0]}x{g.kernel[1]}, stride={g.stride[0]}x{g.stride[1]}, "
                             f"pad={g.pad[0]}x{g.pad[1]}, dilation={g.dilation[0]}x{g.dilation[1]})")
        outs.append(fn(x, bd.weight, bd.bias, stride=bd.geom.stride, pad=bd.geom.pad,
                       dilation=bd.geom.dilation, group=bd.group))
    return outs


@REFERENCE.register("Convolution")
def convolution_layer(layer: Layer, inputs: list[np.ndarray], *, dtype=np.float64) -> list[np.ndarray]:
    return _run(layer, inputs, dtype, deconv=False, depthwise=False)


@REFERENCE.register("ConvolutionDepthwise")
def depthwise_layer(layer: Layer, inputs: list[np.ndarray], *, dtype=np.float64) -> list[np.ndarray]:
    """Fork layer (MobileNet): a Convolution with group = input channels; weights (num_output, 1, kh, kw)."""
    return _run(layer, inputs, dtype, deconv=False, depthwise=True)


@REFERENCE.register("Deconvolution")
def deconvolution_layer(layer: Layer, inputs: list[np.ndarray], *, dtype=np.float64) -> list[np.ndarray]:
    return _run(layer, inputs, dtype, deconv=True, depthwise=False)
