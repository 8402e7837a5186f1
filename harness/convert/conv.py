"""Convolution, depthwise convolution and deconvolution -> standard Keras layers (exact).

Caffe (``base_conv_layer.cpp``, ``conv_layer.cpp``, ``deconv_layer.cpp``):

* Convolution: cross-correlation, symmetric zero padding ``pad``, weights ``(C_out, C_in/group, kh, kw)`` (OIHW);
  groups are contiguous blocks of input and output channels.  ``out = (H + 2p - (d(k-1)+1)) / s + 1`` (floor).
  -> ``ZeroPadding2D`` named ``<layer>__pad`` (only when ``pad`` is not zero) + ``Conv2D(padding="valid",
  groups=group)`` named ``<layer>`` with kernel ``w.transpose(2, 3, 1, 0)`` (HWIO).  TF's ``same`` is never used:
  it pads ``(total//2, total - total//2)``, which differs from Caffe's symmetric pad (224, k7, s2: (2, 3) vs (3, 3)).
* Depthwise (``group == C_in > 1``, or the forks' ``ConvolutionDepthwise``/``DepthwiseConvolution``, any channel
  multiplier ``m = C_out / C_in``): weights ``(C*m, 1, kh, kw)``, output channel ``c*m + j`` reads input channel
  ``c`` -> ``DepthwiseConv2D(depth_multiplier=m)`` with kernel ``w.reshape(C, m, kh, kw).transpose(2, 3, 0, 1)``
  (Keras orders depthwise outputs the same way, ``c*m + j``).
* Unequal strides with a single output position along an axis: TensorFlow's CPU kernels (depthwise and oneDNN
  Conv2D) return garbage there (e.g. strides (1, 2) with one output column), so such a layer runs with stride 1 (``<layer>__full``) followed by
  ``MaxPooling2D((1, 1), strides=(sh, sw))`` named ``<layer>``: a pure subsampling, exact.
* Deconvolution: the backward pass of a convolution (col2im), no kernel flip; weights ``(C_in, C_out/group, kh,
  kw)``; ``out = s(H-1) + d(k-1)+1 - 2p``.  -> ``Conv2DTranspose(padding="valid", output_padding=0)`` with kernel
  ``(kh, kw, C_out, C_in) = w.transpose(2, 3, 1, 0)`` (the gradient of a Keras conv whose HWIO kernel has I=C_out,
  O=C_in), giving ``s(H-1) + d(k-1)+1``, then ``Cropping2D(pad)`` removes ``pad`` rows/columns on each side.
  ``output_padding=0`` matters: without it Keras makes ``H*s + max(k - s, 0)``, which differs when ``k < s``.
  ``Conv2DTranspose`` has no ``groups``: a grouped deconvolution gets a block-diagonal kernel (zeros between the
  groups add exact zeros, so the result is unchanged).
* Keras (all backends) refuses ``strides > 1`` together with ``dilation_rate > 1``; Caffe allows it; and TF's CPU
  ``Conv2DTranspose`` refuses any dilation without oneDNN.  Then (and for every dilated deconvolution) the kernel
  is dilated explicitly (zeros inserted between taps, extent ``d(k-1)+1``) and the layer runs with dilation 1: the
  extra taps multiply zeros, so the result is exact.

Naming: the Keras layer that produces the Caffe top is named after the Caffe layer: the conv itself, or the crop of a
padded deconvolution (then the transposed convolution is ``<layer>__full``).

Several bottom/top pairs (``conv_layer.cpp``/``deconv_layer.cpp`` loop over the bottoms with one set of weights; every
bottom must have the same shape, ``base_conv_layer.cpp``): each Keras layer of the chain above (pad, conv, crop ...) is
built once and called once per bottom, so the weights are shared exactly as in Caffe; the chain's last layer becomes a
helper (``<layer>__conv``, ``<layer>__deconv``, ``<layer>__crop``, ``<layer>__sub``) and a standard ``Identity`` named
``<layer>`` takes the list of results: top ``i`` is output ``i`` of the Keras layer ``<layer>`` (the mapping's
``index``), the result of the application to bottom ``i``.  Bottoms of different shapes are refused, as Caffe refuses
them.
"""

from __future__ import annotations

import keras
import numpy as np

from ..catalogue import traits
from ..errors import ShapeError, UnsupportedParam
from ..net import Layer
from ..params import conv_geometry, conv_group
from ._util import ZEROS, blob, who
from .base import CONVERTERS, ConvertContext


def dilate_kernel_hw(k: np.ndarray, dilation: tuple[int, int]) -> np.ndarray:
    """Insert ``d-1`` zeros between the taps of a kernel whose first two axes are (kh, kw)."""
    dh, dw = dilation
    kh, kw = k.shape[:2]
    out = np.zeros(((kh - 1) * dh + 1, (kw - 1) * dw + 1) + k.shape[2:], dtype=k.dtype)
    out[::dh, ::dw] = k
    return out


def conv_kernel_hwio(w: np.ndarray) -> np.ndarray:
    """Caffe OIHW ``(C_out, C_in/g, kh, kw)`` -> Keras HWIO ``(kh, kw, C_in/g, C_out)``: a transpose, never a
    reshape."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def depthwise_kernel(w: np.ndarray, channels: int) -> np.ndarray:
    """Caffe ``(C*m, 1, kh, kw)`` -> Keras DepthwiseConv2D ``(kh, kw, C, m)``."""
    cm, one, kh, kw = w.shape
    m = cm // channels
    return np.ascontiguousarray(w.reshape(channels, m, kh, kw).transpose(2, 3, 0, 1))


def deconv_kernel(w: np.ndarray, group: int) -> np.ndarray:
    """Caffe deconvolution ``(C_in, C_out/g, kh, kw)`` -> Keras Conv2DTranspose ``(kh, kw, C_out, C_in)``,
    block-diagonal over the groups (group ``i`` maps input block ``i`` to output block ``i``)."""
    c_in, cog, kh, kw = w.shape
    cig = c_in // group
    k = np.zeros((kh, kw, cog * group, c_in), dtype=np.float32)
    for g in range(group):
        k[:, :, g * cog:(g + 1) * cog, g * cig:(g + 1) * cig] = w[g * cig:(g + 1) * cig].transpose(2, 3, 1, 0)
    return k


def _check_pairs(layer: Layer, inputs: list, ctx: ConvertContext) -> None:
    """Caffe runs bottom ``i`` through the shared weights into top ``i`` (``conv_layer.cpp``); every bottom must have
    the same shape (``base_conv_layer.cpp``: "All inputs must have the same shape")."""
    if not inputs or len(inputs) != len(layer.tops):
        raise UnsupportedParam(f"{who(layer)}: {len(inputs)} bottoms / {len(layer.tops)} tops; Caffe needs as many "
                               f"tops as bottoms (one top per bottom, shared weights)")
    first = tuple(ctx.bottom_shapes[0])
    for b, s in zip(layer.bottoms, ctx.bottom_shapes):
        if tuple(s) != first:
            raise ShapeError(f"{who(layer)}: all bottoms must have the same shape; {b!r} is {tuple(s)}, "
                             f"{layer.bottoms[0]!r} is {first}")


def _apply_shared(inputs: list, stack: list, last_name: str) -> list:
    """Apply the layers ``stack`` (pad, conv, ...) to every bottom.
    One bottom: the last layer of the stack is named after the Caffe layer.  Several: each stack layer is one shared
    Keras layer (one set of weights) called once per bottom, and a standard ``Identity`` named after the Caffe layer
    gathers the results, so top ``i`` is output ``i`` of the Keras layer of that name."""
    outs = []
    for x in inputs:
        for lay in stack:
            x = lay(x)
        outs.append(x)
    if len(inputs) == 1:
        return outs
    return list(keras.layers.Identity(name=last_name)(outs))


def _tail_name(layer: Layer, ctx: ConvertContext, n_inputs: int, suffix: str) -> str:
    """The name of the stack's last layer: the Caffe layer's own for one bottom, a helper for several."""
    return layer.name if n_inputs == 1 else ctx.helper_name(layer, suffix)


@CONVERTERS.register("Convolution", "ConvolutionDepthwise")
def convert_convolution(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    _check_pairs(layer, inputs, ctx)
    g = conv_geometry(layer)
    n, c_in, h, w = ctx.bottom_shapes[0]
    group = conv_group(layer, c_in)
    if c_in % group or g.num_output % group:
        raise ShapeError(f"{who(layer)}: group={group} must divide input channels {c_in} and num_output "
                         f"{g.num_output}")
    wt = blob(layer, 0, (g.num_output, c_in // group, *g.kernel), "weights")
    bias = blob(layer, 1, (g.num_output,), "bias") if g.bias_term else None

    stack = []
    ph, pw = g.pad
    if ph or pw:
        stack.append(keras.layers.ZeroPadding2D(((ph, ph), (pw, pw)), name=ctx.helper_name(layer, "pad")))
    stride, dilation = g.stride, g.dilation
    # TensorFlow's CPU convolutions return garbage for unequal strides when an output axis has a single position
    # (measured: strides (1, s>1), one output column): then the layer runs with stride 1 and a (1, 1) max pooling
    # with the Caffe strides subsamples it, exactly.
    hp, wp = h + 2 * ph, w + 2 * pw
    single = any((size - (d * (k - 1) + 1)) // st + 1 == 1
                 for size, k, st, d in zip((hp, wp), g.kernel, stride, dilation))
    subsample = stride if stride[0] != stride[1] and single else None
    if subsample:
        stride = (1, 1)
    depthwise = group == c_in and (group > 1 or traits(layer.kind).depthwise)
    kernel = depthwise_kernel(wt, c_in) if depthwise else conv_kernel_hwio(wt)
    if max(stride) > 1 and max(dilation) > 1:
        kernel = dilate_kernel_hw(kernel, dilation)
        dilation = (1, 1)
    conv_name = ctx.helper_name(layer, "full") if subsample else _tail_name(layer, ctx, len(inputs), "conv")
    common = dict(strides=stride, padding="valid", dilation_rate=dilation, use_bias=g.bias_term, name=conv_name,
                  dtype="float32")
    if depthwise:
        conv = keras.layers.DepthwiseConv2D(kernel.shape[:2], depth_multiplier=g.num_output // c_in,
                                            depthwise_initializer=ZEROS, **common)
    else:
        conv = keras.layers.Conv2D(g.num_output, kernel.shape[:2], groups=group, kernel_initializer=ZEROS, **common)
    stack.append(conv)
    if subsample:
        stack.append(keras.layers.MaxPooling2D((1, 1), strides=subsample, padding="valid",
                                               name=_tail_name(layer, ctx, len(inputs), "sub")))
    outs = _apply_shared(inputs, stack, layer.name)
    conv.set_weights([kernel] + ([bias] if bias is not None else []))
    return outs


@CONVERTERS.register("Deconvolution")
def convert_deconvolution(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    _check_pairs(layer, inputs, ctx)
    g = conv_geometry(layer)
    n, c_in, h, w = ctx.bottom_shapes[0]
    if c_in % g.group or g.num_output % g.group:
        raise ShapeError(f"{who(layer)}: group={g.group} must divide input channels {c_in} and num_output "
                         f"{g.num_output}")
    wt = blob(layer, 0, (c_in, g.num_output // g.group, *g.kernel), "weights")
    bias = blob(layer, 1, (g.num_output,), "bias") if g.bias_term else None
    kernel = deconv_kernel(wt, g.group)
    stride, dilation = g.stride, g.dilation
    if max(dilation) > 1:  # TF's CPU Conv2DTranspose without oneDNN refuses dilation > 1: dilate the kernel itself
        kernel = dilate_kernel_hw(kernel, dilation)
        dilation = (1, 1)
    ph, pw = g.pad
    padded = bool(ph or pw)
    deconv = keras.layers.Conv2DTranspose(
        g.num_output, kernel.shape[:2], strides=stride, padding="valid", output_padding=0, dilation_rate=dilation,
        use_bias=g.bias_term, name=ctx.helper_name(layer, "full") if padded else _tail_name(layer, ctx, len(inputs),
                                                                                            "deconv"),
        dtype="float32", kernel_initializer=ZEROS,
    )
    stack = [deconv]
    if padded:
        stack.append(keras.layers.Cropping2D(((ph, ph), (pw, pw)), name=_tail_name(layer, ctx, len(inputs), "crop")))
    outs = _apply_shared(inputs, stack, layer.name)
    deconv.set_weights([kernel] + ([bias] if bias is not None else []))
    return outs
