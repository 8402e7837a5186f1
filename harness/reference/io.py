"""Input: the net's entry point (``input_layer.cpp``); the driver feeds the user's array as the layer's bottom."""

from __future__ import annotations

import numpy as np

from ..net import Layer
from ._reject import bad_shape
from .registry import REFERENCE


def input_identity(x: np.ndarray) -> np.ndarray:
    """``input_layer.cpp``: the top is the blob the caller filled (Caffe's Forward leaves it untouched)."""
    return x


@REFERENCE.register("Input")
def _input(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    """The driver passes one array per top (the user's input for that blob); each is returned unchanged."""
    if len(inputs) != len(layer.tops):
        raise bad_shape(layer, f"expects one input array per top ({len(layer.tops)}), got {len(inputs)}")
    return [input_identity(np.asarray(x, dtype=dtype)) for x in inputs]
