"""Scale, Bias, InnerProduct and Embed -> Keras.

* Scale (``scale_layer.cpp``): ``y = x * gamma (+ beta)``; gamma has shape ``bottom.shape[axis:axis+num_axes]``
  (axis 1, num_axes 1 by default; num_axes -1 = to the end; 0 = a scalar) or is ``bottom[1]`` (then its own shape
  sets the axes), and broadcasts over the other axes; ``bias_term`` adds a learned beta of the same shape after the
  product.  The common learned per-channel case on a 4-D blob (axis 1, one axis) is a standard
  ``DepthwiseConv2D(1x1)`` (kernel ``gamma``, bias ``beta``: one multiply, one add, exact); every other case is the
  custom ``CaffeScale``, which broadcasts gamma in Caffe's axis order and transposes it to NHWC.
* Bias (``bias_layer.cpp``): ``y = x + beta``, same axis rules -> ``DepthwiseConv2D(1x1)`` with kernel 1 (``x*1`` is
  exact) for the learned per-channel 4-D case, else custom ``CaffeBias``.
* InnerProduct (``inner_product_layer.cpp``): ``K = count(axis..end)`` of the NCHW blob flattened in C order,
  ``y = x W^T + b`` with ``W`` of shape ``(N, K)`` (``(K, N)`` when ``transpose: true``).  Choice made here: an
  explicit ``Permute((3, 1, 2))`` (``<layer>__nchw``) brings a 4-D NHWC tensor back to Caffe's NCHW order, then
  ``Flatten``/``Reshape`` (``<layer>__flatten``) and a standard ``Dense`` with kernel ``W.T`` (or ``W`` when
  transposed).  The weights keep Caffe's row order, so they can be checked against the caffemodel directly; the
  transpose costs one copy of the activation.  ``axis`` 2 or 3 flattens only the trailing axes (the leading ones
  stay, ``Dense`` acts on the last axis); a 4-D result is permuted back to NHWC.  ``axis: 0`` (folding the batch
  into the features) is refused.
* Embed (``embed_layer.cpp``): ``top = W[int(x)] (+ b)``, one more axis -> custom ``CaffeEmbed`` on the Caffe-order
  input.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from ..errors import ShapeError, UnsupportedParam
from ..net import Layer
from ..params import canonical_axis
from ._layout import to_nchw, to_nhwc
from ._util import ZEROS, blob, one_bottom, transpose2d, who
from .base import CONVERTERS, ConvertContext
from .custom_layers import CaffeBias, CaffeEmbed, CaffeScale


def _param_axes(layer: Layer, field: str, shapes: list[tuple[int, ...]]) -> tuple[int, tuple[int, ...]]:
    """(canonical axis, parameter shape) of a Scale/Bias layer."""
    prm = layer.p(field)
    x = shapes[0]
    rank = len(x)
    axis = canonical_axis(layer, f"{field}.axis", int(prm.axis), rank) if rank else 0
    if len(shapes) > 1:
        pshape = tuple(shapes[1])
    else:
        na = int(prm.num_axes)
        if na < -1:
            raise ShapeError(f"{who(layer)}: num_axes={na} must be -1 or non-negative")
        end = rank if na == -1 else axis + na
        if end > rank:
            raise ShapeError(f"{who(layer)}: axis={axis} + num_axes={na} exceeds the bottom's {rank} axes")
        pshape = tuple(x[axis:end])
    if tuple(x[axis:axis + len(pshape)]) != pshape:
        raise ShapeError(f"{who(layer)}: parameter shape {pshape} does not match bottom {tuple(x)} from axis {axis}")
    return axis, pshape


def _bcast(rank: int, axis: int, pshape: tuple[int, ...]) -> list[int]:
    s = [1] * rank
    s[axis:axis + len(pshape)] = list(pshape)
    if axis == 0 and pshape:
        s[0] = -1  # the batch axis: keep whatever batch the tensor has
    return s


def _per_channel_4d(shapes, axis, pshape) -> bool:
    return len(shapes) == 1 and len(shapes[0]) == 4 and axis == 1 and len(pshape) == 1


@CONVERTERS.register("Scale")
def convert_scale(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    if len(inputs) not in (1, 2) or len(layer.tops) != 1:
        raise UnsupportedParam(f"{who(layer)}: {len(inputs)} bottoms / {len(layer.tops)} tops (1 or 2 bottoms, "
                               f"1 top)")
    shapes = [tuple(s) for s in ctx.bottom_shapes]
    axis, pshape = _param_axes(layer, "scale_param", shapes)
    bias_term = bool(layer.p("scale_param").bias_term)
    learned = len(inputs) == 1
    i = 0
    weights = []
    if learned:
        weights.append(blob(layer, 0, pshape, "scale"))
        i = 1
    if bias_term:
        weights.append(blob(layer, i, pshape, "bias"))
    if learned and _per_channel_4d(shapes, axis, pshape):
        lay = keras.layers.DepthwiseConv2D(1, use_bias=bias_term, name=layer.name, dtype="float32",
                                           depthwise_initializer=ZEROS)
        y = lay(inputs[0])
        lay.set_weights([weights[0].reshape(1, 1, -1, 1)] + weights[1:])
        return [y]
    lay = CaffeScale(param_shape=list(pshape), bcast_shape=_bcast(len(shapes[0]), axis, pshape),
                     rank=len(shapes[0]), learned_scale=learned, bias=bias_term,
                     second_input_rank=0 if learned else len(shapes[1]), name=layer.name)
    y = lay(inputs[0] if learned else list(inputs))
    if weights:
        lay.set_weights(weights)
    return [y]


@CONVERTERS.register("Bias")
def convert_bias(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    if len(inputs) not in (1, 2) or len(layer.tops) != 1:
        raise UnsupportedParam(f"{who(layer)}: {len(inputs)} bottoms / {len(layer.tops)} tops (1 or 2 bottoms, "
                               f"1 top)")
    shapes = [tuple(s) for s in ctx.bottom_shapes]
    axis, pshape = _param_axes(layer, "bias_param", shapes)
    learned = len(inputs) == 1
    if learned:
        beta = blob(layer, 0, pshape, "bias")
        if _per_channel_4d(shapes, axis, pshape):
            lay = keras.layers.DepthwiseConv2D(1, use_bias=True, name=layer.name, dtype="float32",
                                               depthwise_initializer=ZEROS)
            y = lay(inputs[0])
            lay.set_weights([np.ones((1, 1, pshape[0], 1), np.float32), beta])
            return [y]
    lay = CaffeBias(param_shape=list(pshape), bcast_shape=_bcast(len(shapes[0]), axis, pshape),
                    rank=len(shapes[0]), learned=learned, second_input_rank=0 if learned else len(shapes[1]),
                    name=layer.name)
    y = lay(inputs[0] if learned else list(inputs))
    if learned:
        lay.set_weights([beta])
    return [y]


@CONVERTERS.register("InnerProduct")
def convert_inner_product(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    one_bottom(layer, inputs)
    ip = layer.p("inner_product_param")
    shape = tuple(ctx.bottom_shapes[0])
    rank = len(shape)
    axis = canonical_axis(layer, "inner_product_param.axis", int(ip.axis), rank)
    if axis == 0:
        raise UnsupportedParam(f"{who(layer)}: axis=0 (flattening the batch axis into the features) is not "
                               f"supported by the converter (axis >= 1)")
    if not ip.HasField("num_output") or ip.num_output <= 0:
        raise ShapeError(f"{who(layer)}: inner_product_param.num_output must be positive")
    n_out = int(ip.num_output)
    k = math.prod(shape[axis:])
    w = blob(layer, 0, (k, n_out) if ip.transpose else (n_out, k), "weights")
    kernel = np.ascontiguousarray(w) if ip.transpose else transpose2d(w)
    bias = blob(layer, 1, (n_out,), "bias") if ip.bias_term else None

    x = inputs[0]
    if rank == 4:
        x = to_nchw(x, ctx.helper_name(layer, "nchw"))
    lead = shape[1:axis]
    if rank - axis > 1:
        if axis == 1:
            x = keras.layers.Flatten(name=ctx.helper_name(layer, "flatten"))(x)
        else:
            x = keras.layers.Reshape(tuple(lead) + (k,), name=ctx.helper_name(layer, "flatten"))(x)
    out_rank = axis + 1
    dense = keras.layers.Dense(n_out, use_bias=bias is not None, dtype="float32", kernel_initializer=ZEROS,
                               name=ctx.helper_name(layer, "dense") if out_rank == 4 else layer.name)
    y = dense(x)
    dense.set_weights([kernel] + ([bias] if bias is not None else []))
    if out_rank == 4:
        y = to_nhwc(y, layer.name)
    return [y]


@CONVERTERS.register("Embed")
def convert_embed(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    one_bottom(layer, inputs)
    ep = layer.p("embed_param")
    shape = tuple(ctx.bottom_shapes[0])
    n_out, in_dim = int(ep.num_output), int(ep.input_dim)
    if n_out <= 0 or in_dim <= 0:
        raise ShapeError(f"{who(layer)}: num_output={n_out} and input_dim={in_dim} must be positive")
    w = blob(layer, 0, (in_dim, n_out), "weights")
    b = blob(layer, 1, (n_out,), "bias") if ep.bias_term else None
    x = inputs[0]
    if len(shape) == 4:
        x = to_nchw(x, ctx.helper_name(layer, "nchw"))
    out_rank = len(shape) + 1
    lay = CaffeEmbed(input_dim=in_dim, num_output=n_out, bias=b is not None,
                     name=ctx.helper_name(layer, "embed") if out_rank == 4 else layer.name)
    y = lay(x)
    lay.set_weights([w] + ([b] if b is not None else []))
    if out_rank == 4:
        y = to_nhwc(y, layer.name)
    return [y]
