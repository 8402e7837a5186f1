"""Caffe's NCHW and Keras' NHWC: the layout contract of the converter, for test arrays (4-D transposed, other ranks
unchanged)."""

from __future__ import annotations

import numpy as np


def to_keras(a) -> np.ndarray:
    """Caffe array -> the layout contract's Keras array (4-D: NCHW -> NHWC)."""
    a = np.asarray(a)
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def to_caffe(a) -> np.ndarray:
    """Keras array -> Caffe's layout (4-D: NHWC -> NCHW)."""
    a = np.asarray(a)
    return a.transpose(0, 3, 1, 2) if a.ndim == 4 else a
