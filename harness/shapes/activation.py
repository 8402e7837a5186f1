"""Element-wise activations (same shape), PReLU slopes, Softmax axis."""

from __future__ import annotations

from ..net import Layer
from ._checks import Shape, _min_rank, _same, canonical_axis
from .registry import PARAM_SHAPES, SHAPES


SHAPES.register("ReLU", "ReLU6", "ELU", "Sigmoid", "TanH", "AbsVal", "BNLL", "Power", "Exp", "Log", "Threshold",
                "Clip", "Swish", "Dropout")(_same)


@SHAPES.register("PReLU")
def _prelu_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """PReLU: ``CHECK_GE(bottom[0]->num_axes(), 2)``; same shape."""
    out = _same(layer, bottoms)
    _min_rank(layer, bottoms[0], 2)
    return out


@PARAM_SHAPES.register("PReLU")
def _prelu_params(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """``prelu_layer.cpp``: slopes ``(C,)``; with ``channel_shared`` a 0-D blob (``vector<int>(0)``, one value)."""
    return [()] if layer.p("prelu_param").channel_shared else [(bottoms[0][1],)]


@SHAPES.register("Softmax")
def _softmax_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Softmax: same shape; ``axis`` (default 1) canonicalised."""
    out = _same(layer, bottoms)
    canonical_axis(layer, "softmax_param.axis", layer.p("softmax_param").axis, len(bottoms[0]))
    return out
