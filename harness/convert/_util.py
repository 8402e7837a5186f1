"""The converter's non-layout helpers, shared by every converter module: the error helpers (one message form,
``<Type> '<name>': <field>=<value> ...``, as :mod:`harness.params` and :mod:`harness.shapes` write it), weight blob
reading, approximations, and the fast float32 transpose.  Layout lives in :mod:`._layout`."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ConversionError, ShapeError, UnsupportedParam
from ..net import Layer, who  # noqa: F401  (re-exported: every converter message names layers this way)
from .base import Approximation, ConvertContext



def unsupported(layer: Layer, field: str, value, alternatives: str) -> UnsupportedParam:
    """The one-line refusal of a parameter value: ``<Type> '<name>': <field>=<value> is not supported
    (<alternatives>)``; raise it."""
    return UnsupportedParam(f"{who(layer)}: {field}={value} is not supported ({alternatives})")


def expect(layer: Layer, inputs: list, n_bottoms: int | None = None, n_tops: int | None = None) -> None:
    """Exactly ``n_bottoms`` bottoms and ``n_tops`` tops (None: any number), else a :class:`ShapeError`."""
    if n_bottoms is not None and len(inputs) != n_bottoms:
        raise ShapeError(f"{who(layer)}: expects {n_bottoms} bottom(s), got {len(inputs)}")
    if n_tops is not None and len(layer.tops) != n_tops:
        raise ShapeError(f"{who(layer)}: expects {n_tops} top(s), got {len(layer.tops)}")


def one_bottom(layer: Layer, inputs: list) -> None:
    """Most core converters handle exactly one bottom and one top (a count Caffe allows but the converter does not
    implement: :class:`UnsupportedParam`)."""
    if len(inputs) != 1 or len(layer.tops) != 1:
        raise UnsupportedParam(f"{who(layer)}: {len(inputs)} bottoms / {len(layer.tops)} tops are not supported by "
                               f"the converter (1 bottom, 1 top)")


def blob(layer: Layer, i: int, shape: Sequence[int], what: str) -> np.ndarray:
    """The i-th weight blob of ``layer``, checked against the shape Caffe creates for it."""
    if i >= len(layer.blobs):
        raise ConversionError(f"{who(layer)}: weight blob {i} ({what}, shape {tuple(shape)}) is missing; the net has "
                              f"{len(layer.blobs)} blob(s) for this layer (convert a net loaded with weights)")
    b = np.asarray(layer.blobs[i], dtype=np.float32)
    if tuple(b.shape) != tuple(int(d) for d in shape):
        if b.size == int(np.prod(shape)) and tuple(d for d in b.shape if d != 1) == tuple(d for d in shape if d != 1):
            # Caffe's blob.cpp ShapeEquals accepts the same sizes with leading/trailing singleton axes (legacy blobs)
            return b.reshape(tuple(int(d) for d in shape))
        raise ShapeError(f"{who(layer)}: weight blob {i} ({what}) has shape {tuple(b.shape)}, expected {tuple(shape)}")
    return b


def approximate(ctx: ConvertContext, layer: Layer, what: str, max_abs_error: float | None = None) -> None:
    """Record an approximation, or refuse it when ``allow_approx`` is off (never approximate silently)."""
    if not ctx.allow_approx:
        raise ConversionError(f"{who(layer)}: cannot be converted exactly ({what}); pass allow_approx=True "
                              f"(--allow-approx) to convert it anyway and record the approximation")
    ctx.approximations.append(Approximation(layer.name, what, max_abs_error))


def transpose2d(w: np.ndarray, block: int = 256) -> np.ndarray:
    """``w.T`` as a C-contiguous float32 array.  Large matrices (VGG16's fc6 is 4096 x 25088) are copied in
    square blocks: NumPy's strided copy of a big transpose thrashes the cache (measured 3-4 s vs 0.7 s)."""
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2 or w.size < (1 << 20):
        return np.ascontiguousarray(w.T)
    r, c = w.shape
    out = np.empty((c, r), dtype=np.float32)
    for i in range(0, r, block):
        for j in range(0, c, block):
            out[j:j + block, i:i + block] = w[i:i + block, j:j + block].T
    return out


# Keras layers are built with cheap zero initialisers: every weight is overwritten from the Caffe blobs right after
# the layer is built, so drawing random initial values (glorot on 100M VGG16 fc weights: ~4 s) would be wasted.
ZEROS = "zeros"
