"""Scale, Bias, InnerProduct and Embed, in pure NumPy.

Caffe rules coded here:

* Scale / Bias (``scale_layer.cpp``, ``bias_layer.cpp``): the parameter (a learned blob, or ``bottom[1]``) covers
  ``bottom[0].shape[axis : axis + num_axes]`` and is broadcast over the outer and inner axes; ``axis`` may be
  negative (counted from the end); ``num_axes: -1`` extends to the last axis, ``num_axes: 0`` is a scalar; a scalar
  parameter ignores ``axis``.  With ``bottom[1]`` the parameter's own shape gives the covered axes (``num_axes`` is
  not used).  ``Scale { bias_term: true }`` adds a Bias with the same ``axis`` (and ``num_axes``, or
  ``bottom[1]``'s axis count) whose learned blob is the Scale layer's last blob.
* InnerProduct (``inner_product_layer.cpp``): ``K = count(axis..)`` -- the bottom flattened in C order (N, C, H, W
  -> C*H*W), ``M = count(..axis)``, weight ``(N, K)`` (or ``(K, N)`` with ``transpose: true``), ``y = x W^T + b``,
  top shape ``bottom.shape[:axis] + (N,)``.
* Embed (``embed_layer.cpp``): each input value is an index into the ``(input_dim, num_output)`` weight: the value
  must be an integer in ``[0, input_dim)``; top shape ``bottom.shape + (num_output,)``; plus bias.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import HarnessError, ShapeError
from ..net import Layer
from ..params import canonical_axis
from . import _window
from .registry import REFERENCE

_CAST_BLOCK_BYTES = 16 << 20  # InnerProduct weights are cast to the compute dtype in blocks of at most this (4 MiB
# made 200 small GEMVs for fc6, each an OpenBLAS fork/join at 2 threads: 190 ms vs 33 ms)


def broadcast_param(p: np.ndarray, x_shape: tuple[int, ...], axis: int) -> np.ndarray:
    """``p`` (covering ``x_shape[axis:axis+p.ndim]``) reshaped to broadcast against an array of ``x_shape``."""
    return p.reshape((1,) * axis + p.shape + (1,) * (len(x_shape) - axis - p.ndim))


def scale(x: np.ndarray, s: np.ndarray, *, axis: int, bias: np.ndarray | None = None) -> np.ndarray:
    """``y = x * s (+ bias)``, ``s`` and ``bias`` covering ``x.shape[axis:axis+s.ndim]``."""
    y = x * broadcast_param(s, x.shape, axis)
    if bias is not None:
        y += broadcast_param(bias, x.shape, axis)
    return y


def bias_add(x: np.ndarray, b: np.ndarray, *, axis: int) -> np.ndarray:
    """``y = x + b``, ``b`` covering ``x.shape[axis:axis+b.ndim]``."""
    return x + broadcast_param(b, x.shape, axis)


def inner_product(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, *, axis: int = 1,
                  transpose: bool = False) -> np.ndarray:
    """Caffe InnerProduct: ``x`` flattened from ``axis`` (C order) times ``weight`` (N, K) transposed (or (K, N))."""
    lead = x.shape[:axis]
    m = math.prod(lead)
    k = math.prod(x.shape[axis:])
    xm = x.reshape(m, k)
    n = weight.shape[1] if transpose else weight.shape[0]
    if weight.dtype == x.dtype:
        y = xm @ weight if transpose else xm @ weight.T
    else:
        # Cast the (float32) weight to the compute dtype block by block (no full-size copy of a big FC matrix), into
        # one reused cache-sized work buffer: a fresh 32 MiB cast per block made VGG16's float64 fc6 twice as slow.
        y = np.empty((m, n), dtype=x.dtype)
        step = max(1, _CAST_BLOCK_BYTES // max(1, k * x.itemsize))
        buf = _window.scratch("ip_cast", (min(step, n), k), x.dtype)
        for o in range(0, n, step):
            e = min(n, o + step)
            blk = buf[:e - o]
            if transpose:
                np.copyto(blk.T, weight[:, o:e])
            else:
                np.copyto(blk, weight[o:e])
            np.matmul(xm, blk.T, out=y[:, o:e])
    if bias is not None:
        y += bias[None, :]
    return y.reshape(*lead, n)


def embed(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Caffe Embed: one-hot lookup of the integer values of ``x`` in ``weight`` (input_dim, num_output)."""
    k = weight.shape[0]
    idx = x.astype(np.int64)
    bad = (idx != x) | (idx < 0) | (idx >= k)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"input value {x[pos]!r} at index {pos} is not an integer in [0, {k}) (input_dim={k})")
    y = weight[idx]
    if bias is not None:
        y = y + bias
    return y


def _param_shape(layer: Layer, x_shape: tuple[int, ...], axis_field: int, num_axes: int) -> tuple[int, tuple]:
    """(canonical axis, covered shape) for a learned Scale/Bias parameter."""
    if num_axes < -1:
        raise ShapeError(f"{layer.type} {layer.name!r}: num_axes={num_axes} must be >= -1")
    if num_axes == 0:
        return 0, ()
    axis = canonical_axis(layer, "axis", axis_field, len(x_shape))
    end = len(x_shape) if num_axes == -1 else axis + num_axes
    if end > len(x_shape):
        raise ShapeError(f"{layer.type} {layer.name!r}: axis={axis_field}, num_axes={num_axes} extend past the "
                         f"{len(x_shape)}-axis bottom {tuple(x_shape)}")
    return axis, tuple(x_shape[axis:end])


def _learned(layer: Layer, blob: np.ndarray, shape: tuple, what: str, dtype) -> np.ndarray:
    if blob.size != math.prod(shape):
        raise ShapeError(f"{layer.type} {layer.name!r}: {what} blob has shape {tuple(blob.shape)}, expected "
                         f"{shape} (the bottom's axes it covers)")
    return np.asarray(blob, dtype=dtype).reshape(shape)


def _second_bottom(layer: Layer, x: np.ndarray, p: np.ndarray, axis_field: int) -> int:
    axis = 0 if p.ndim == 0 else canonical_axis(layer, "axis", axis_field, x.ndim)
    if tuple(x.shape[axis:axis + p.ndim]) != tuple(p.shape):
        raise ShapeError(f"{layer.type} {layer.name!r}: bottom[1] shape {tuple(p.shape)} does not match bottom[0] "
                         f"shape {tuple(x.shape)} from axis {axis}")
    return axis


@REFERENCE.register("Scale")
def scale_layer(layer: Layer, inputs: list[np.ndarray], *, dtype=np.float64) -> list[np.ndarray]:
    if len(inputs) not in (1, 2) or len(layer.tops) != 1:
        raise ShapeError(f"Scale {layer.name!r}: expects 1 or 2 bottoms and 1 top")
    sp = layer.p("scale_param")
    x = inputs[0]
    nblobs = (0 if len(inputs) == 2 else 1) + (1 if sp.bias_term else 0)
    if len(layer.blobs) != nblobs:
        raise ShapeError(f"Scale {layer.name!r}: has {len(layer.blobs)} blobs, expected {nblobs} "
                         f"({'scale from bottom[1]' if len(inputs) == 2 else 'scale'}"
                         f"{', bias' if sp.bias_term else ''})")
    if len(inputs) == 2:
        s = inputs[1]
        axis = _second_bottom(layer, x, s, sp.axis)
        bias_axes = s.ndim
    else:
        axis, shape = _param_shape(layer, x.shape, sp.axis, sp.num_axes)
        s = _learned(layer, layer.blobs[0], shape, "scale", dtype)
        bias_axes = sp.num_axes
    b = None
    if sp.bias_term:
        baxis, bshape = _param_shape(layer, x.shape, sp.axis, bias_axes)
        b = _learned(layer, layer.blobs[-1], bshape, "bias", dtype)
        y = scale(x, s, axis=axis)
        y += broadcast_param(b, x.shape, baxis)
        return [y]
    return [scale(x, s, axis=axis)]


@REFERENCE.register("Bias")
def bias_layer(layer: Layer, inputs: list[np.ndarray], *, dtype=np.float64) -> list[np.ndarray]:
    if len(inputs) not in (1, 2) or len(layer.tops) != 1:
        raise ShapeError(f"Bias {layer.name!r}: expects 1 or 2 bottoms and 1 top")
    bp = layer.p("bias_param")
    x = inputs[0]
    if len(inputs) == 2:
        if layer.blobs:
            raise ShapeError(f"Bias {layer.name!r}: takes its bias from bottom[1] but also has "
                             f"{len(layer.blobs)} blob(s)")
        b = inputs[1]
        axis = _second_bottom(layer, x, b, bp.axis)
    else:
        if len(layer.blobs) != 1:
            raise ShapeError(f"Bias {layer.name!r}: has {len(layer.blobs)} blobs, expected 1 (bias)")
        axis, shape = _param_shape(layer, x.shape, bp.axis, bp.num_axes)
        b = _learned(layer, layer.blobs[0], shape, "bias", dtype)
    return [bias_add(x, b, axis=axis)]


def _bias(layer: Layer, n: int, dtype) -> np.ndarray:
    """Blob 1 as the ``(n,)`` bias of an InnerProduct or Embed layer (legacy ``(1,1,1,n)`` shapes accepted)."""
    if layer.blobs[1].size != n:
        raise ShapeError(f"{layer.type} {layer.name!r}: bias blob has shape {tuple(layer.blobs[1].shape)}, "
                         f"expected ({n},)")
    return np.asarray(layer.blobs[1], dtype=dtype).reshape(n)


@REFERENCE.register("InnerProduct")
def inner_product_layer(layer: Layer, inputs: list[np.ndarray], *, dtype=np.float64) -> list[np.ndarray]:
    if len(inputs) != 1 or len(layer.tops) != 1:
        raise ShapeError(f"InnerProduct {layer.name!r}: expects 1 bottom and 1 top")
    ip = layer.p("inner_product_param")
    (x,) = inputs
    if not ip.HasField("num_output"):
        raise ShapeError(f"InnerProduct {layer.name!r}: inner_product_param.num_output is required")
    n = int(ip.num_output)
    axis = canonical_axis(layer, "inner_product_param.axis", ip.axis, x.ndim)
    k = math.prod(x.shape[axis:])
    want = (k, n) if ip.transpose else (n, k)
    nblobs = 2 if ip.bias_term else 1
    if len(layer.blobs) != nblobs:
        raise ShapeError(f"InnerProduct {layer.name!r}: has {len(layer.blobs)} blobs, expected {nblobs} "
                         f"(weight {want}{', bias (' + str(n) + ',)' if ip.bias_term else ''})")
    w = layer.blobs[0]
    if tuple(w.shape) != want:
        raise ShapeError(f"InnerProduct {layer.name!r}: weight blob has shape {tuple(w.shape)}, expected {want} "
                         f"for a bottom {tuple(x.shape)} flattened from axis {axis} (K={k}, "
                         f"transpose={str(ip.transpose).lower()})")
    b = _bias(layer, n, dtype) if ip.bias_term else None
    return [inner_product(x, w, b, axis=axis, transpose=ip.transpose)]


@REFERENCE.register("Embed")
def embed_layer(layer: Layer, inputs: list[np.ndarray], *, dtype=np.float64) -> list[np.ndarray]:
    if len(inputs) != 1 or len(layer.tops) != 1:
        raise ShapeError(f"Embed {layer.name!r}: expects 1 bottom and 1 top")
    ep = layer.p("embed_param")
    (x,) = inputs
    if not ep.HasField("num_output") or not ep.HasField("input_dim"):
        raise ShapeError(f"Embed {layer.name!r}: embed_param.num_output and embed_param.input_dim are required")
    n, k = int(ep.num_output), int(ep.input_dim)
    nblobs = 2 if ep.bias_term else 1
    if len(layer.blobs) != nblobs:
        raise ShapeError(f"Embed {layer.name!r}: has {len(layer.blobs)} blobs, expected {nblobs}")
    w = layer.blobs[0]
    if tuple(w.shape) != (k, n):
        raise ShapeError(f"Embed {layer.name!r}: weight blob has shape {tuple(w.shape)}, expected ({k}, {n}) "
                         f"(input_dim, num_output)")
    b = _bias(layer, n, dtype) if ep.bias_term else None
    try:
        return [embed(x, np.asarray(w, dtype=dtype), b)]
    except ValueError as e:
        raise HarnessError(f"Embed {layer.name!r}: {e}") from e
