"""Layout helpers for converter part B: Caffe (NCHW) axes <-> Keras axes under the layout contract.

A 4-D Caffe blob is an NHWC Keras tensor; a blob of any other rank keeps Caffe's axis order.
"""

from __future__ import annotations

import keras

from ..errors import ShapeError
from ..net import Layer
from .base import ConvertContext

# Caffe axis of a 4-D blob -> Keras axis of its NHWC tensor (N->0, C->3, H->1, W->2).
NCHW_TO_NHWC_AXIS = (0, 3, 1, 2)


def caffe_shape(ctx: ConvertContext, i: int, x) -> tuple[int, ...]:
    """Caffe (NCHW) shape of bottom ``i``: from shape inference when given, else from the Keras tensor."""
    if ctx.bottom_shapes and i < len(ctx.bottom_shapes) and ctx.bottom_shapes[i] is not None:
        return tuple(int(d) for d in ctx.bottom_shapes[i])
    shape = tuple(x.shape)
    if len(shape) == 4:
        shape = (shape[0], shape[3], shape[1], shape[2])
    return tuple(-1 if d is None else int(d) for d in shape)


def keras_axis(caffe_axis: int, ndim: int) -> int:
    """The Keras axis holding canonical Caffe axis ``caffe_axis`` of an ``ndim``-axis blob."""
    return NCHW_TO_NHWC_AXIS[caffe_axis] if ndim == 4 else caffe_axis


def to_nchw(x, name: str):
    """NHWC -> NCHW (Keras ``Permute``; the batch axis stays)."""
    return keras.layers.Permute((3, 1, 2), name=name)(x)


def to_nhwc(x, name: str):
    """NCHW -> NHWC (Keras ``Permute``)."""
    return keras.layers.Permute((2, 3, 1), name=name)(x)


def expect(layer: Layer, inputs: list, n_bottoms: int | None = None, n_tops: int | None = None) -> None:
    if n_bottoms is not None and len(inputs) != n_bottoms:
        raise ShapeError(f"{layer.type} {layer.name!r}: expects {n_bottoms} bottom(s), got {len(inputs)}")
    if n_tops is not None and len(layer.tops) != n_tops:
        raise ShapeError(f"{layer.type} {layer.name!r}: expects {n_tops} top(s), got {len(layer.tops)}")
