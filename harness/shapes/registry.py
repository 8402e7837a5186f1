"""The shape-inference registries, keyed by Caffe type like every other side's:

* :data:`SHAPES`: ``fn(layer, bottom_shapes) -> list[top_shape]`` (every catalogue type);
* :data:`PARAM_SHAPES`: ``fn(layer, bottom_shapes) -> list[blob_shape]`` (types with weights);
* :data:`MACS`: ``fn(layer, bottom_shapes, top_shapes) -> int`` (types with multiply-adds).
"""

from __future__ import annotations

from ..registry import Registry

SHAPES: Registry = Registry("shape")
# Parameter (weight blob) shapes and multiply-add counts, keyed by Caffe type like SHAPES.  Types without weights
# (or without multiply-adds) are simply not registered here.
PARAM_SHAPES: Registry = Registry("param shape")
MACS: Registry = Registry("multiply-add count")
