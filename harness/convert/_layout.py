"""The converter's one layout module: Caffe (NCHW) axes <-> Keras axes under the layout contract, and the layout
conversions themselves (Keras ``Permute`` layers for the converters, ``keras.ops`` transposes for the custom layers).

A 4-D Caffe blob is an NHWC Keras tensor; a blob of any other rank keeps Caffe's axis order.
"""

from __future__ import annotations

import keras
from keras import ops

from .base import ConvertContext

# Caffe axis of a 4-D blob -> Keras axis of its NHWC tensor (N->0, C->3, H->1, W->2).
NCHW_TO_NHWC_AXIS = (0, 3, 1, 2)
# Full transposes (batch axis included): an NHWC tensor to NCHW, an NCHW one to NHWC.
NHWC_TO_NCHW = (0, 3, 1, 2)
NCHW_TO_NHWC = (0, 2, 3, 1)
# The same as ``keras.layers.Permute`` dims (the batch axis excluded, axes counted from 1).
PERMUTE_TO_NCHW = (3, 1, 2)
PERMUTE_TO_NHWC = (2, 3, 1)


def caffe_shape(ctx: ConvertContext, i: int, x) -> tuple[int, ...]:
    """Caffe (NCHW) shape of bottom ``i``: from shape inference when given, else from the Keras tensor."""
    if ctx.bottom_shapes and i < len(ctx.bottom_shapes) and ctx.bottom_shapes[i] is not None:
        return tuple(int(d) for d in ctx.bottom_shapes[i])
    shape = tuple(x.shape)
    if len(shape) == 4:
        shape = tuple(shape[a] for a in NHWC_TO_NCHW)
    return tuple(-1 if d is None else int(d) for d in shape)


def keras_axis(caffe_axis: int, ndim: int) -> int:
    """The Keras axis holding canonical Caffe axis ``caffe_axis`` of an ``ndim``-axis blob."""
    return NCHW_TO_NHWC_AXIS[caffe_axis] if ndim == 4 else caffe_axis


def to_nchw(x, name: str):
    """NHWC -> NCHW (Keras ``Permute`` layer named ``name``; the batch axis stays)."""
    return keras.layers.Permute(PERMUTE_TO_NCHW, name=name)(x)


def to_nhwc(x, name: str):
    """NCHW -> NHWC (Keras ``Permute`` layer named ``name``)."""
    return keras.layers.Permute(PERMUTE_TO_NHWC, name=name)(x)


def ops_to_nchw(x):
    """NHWC -> NCHW inside a custom layer (``keras.ops.transpose``)."""
    return ops.transpose(x, NHWC_TO_NCHW)


def ops_to_nhwc(x):
    """NCHW -> NHWC inside a custom layer (``keras.ops.transpose``)."""
    return ops.transpose(x, NCHW_TO_NHWC)
