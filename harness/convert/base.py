"""The converter registry and the context handed to every layer converter.

A converter has the signature ``fn(layer: Layer, inputs: list[KerasTensor], ctx: ConvertContext)
-> list[KerasTensor]``: ``inputs`` are the Keras tensors of the layer's bottoms, the result holds one tensor per top.

Layout contract: a 4-D Caffe blob (NCHW) is an NHWC Keras tensor; a blob of any other rank keeps Caffe's axis order.
The Keras layer that produces a top is named exactly after the Caffe layer (a multi-top Caffe layer becomes one Keras
layer with several outputs); helper layers are named ``ctx.helper_name(layer, "pad")`` -> ``"<layer>__pad"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..net import Layer, Net
from ..registry import Registry

CONVERTERS: Registry = Registry("converter")


@dataclass
class Approximation:
    layer: str
    what: str
    max_abs_error: float | None = None


@dataclass
class ConvertContext:
    net: Net
    # Caffe (NCHW) shapes of the bottoms of the layer being converted, from shape inference.
    bottom_shapes: list[tuple[int, ...]] = field(default_factory=list)
    allow_approx: bool = False
    approximations: list[Approximation] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def helper_name(layer: Layer, suffix: str) -> str:
        return f"{layer.name}__{suffix}"
