"""The shape-inference registry: Caffe type -> ``fn(layer, bottom_shapes) -> list[top_shape]``."""

from __future__ import annotations

from .registry import Registry

SHAPES: Registry = Registry("shape")
