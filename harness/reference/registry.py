"""The reference registry: Caffe type -> NumPy forward function.

A reference function has the signature ``fn(layer: Layer, inputs: list[np.ndarray], *, dtype: np.dtype)
-> list[np.ndarray]``: ``inputs`` are the bottoms (NCHW, already in ``dtype``), the result holds one array per top.
Weights come from ``layer.blobs`` (float32, Caffe shapes) and are cast to ``dtype`` by the function.
"""

from __future__ import annotations

from ..registry import Registry

REFERENCE: Registry = Registry("reference")
