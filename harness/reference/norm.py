"""BatchNorm, MVN and the SSD fork's Normalize, in pure NumPy.

Caffe rules coded here:

* BatchNorm (``batch_norm_layer.cpp``): ``use_global_stats`` defaults to ``phase == TEST`` (true here) unless set.
  With global stats: ``f = 0 if blob[2] == 0 else 1/blob[2]``, ``mean = f*blob[0]``, ``var = f*blob[1]``.  With
  ``use_global_stats: false`` Caffe uses the batch's own statistics even at TEST: mean and biased variance over
  N and all spatial positions, per channel.  Then ``y = (x - mean) / sqrt(var + eps)``.  Channels are axis 1
  (a 1-axis bottom has one channel).  No affine part (a Scale layer follows).
* MVN (``mvn_layer.cpp``): mean over H*W per (n, c), or over C*H*W per n with ``across_channels``;
  ``normalize_variance`` divides by ``sqrt(E[(x-mean)^2]) + eps`` -- eps is added to the standard deviation, not to
  the variance.
* Normalize (weiliu89/caffe SSD, ``normalize_layer.cpp``): ``across_spatial`` (default true):
  ``norm = sqrt(sum_{C,H,W} x^2 + eps)`` per image; otherwise ``norm = sqrt(eps + sum_C x^2)`` per pixel;
  ``y = x / norm * scale`` with ``scale`` one learned value (``channel_shared``, default true) or one per channel.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError, UnsupportedParam
from ..net import Layer
from .registry import REFERENCE


def batch_norm(x: np.ndarray, mean: np.ndarray | None, var: np.ndarray | None, factor: float | None, *,
               eps: float) -> np.ndarray:
    """Caffe BatchNorm forward.  With ``mean``/``var``/``factor`` (the three blobs) uses the stored statistics;
    with all three None uses the batch statistics (``use_global_stats: false``)."""
    dt = x.dtype.type
    c = 1 if x.ndim == 1 else x.shape[1]
    xs = x.reshape(x.shape[0], c, -1)
    if mean is None:
        mu = xs.mean(axis=(0, 2))
        y = xs - mu[None, :, None]
        sigma2 = np.square(y).mean(axis=(0, 2))
    else:
        f = dt(0) if factor == 0 else dt(1) / dt(factor)
        mu = f * mean.astype(x.dtype, copy=False)
        sigma2 = f * var.astype(x.dtype, copy=False)
        y = xs - mu[None, :, None]
    std = np.sqrt(sigma2 + dt(eps))
    y /= std[None, :, None]
    return y.reshape(x.shape)


def mvn(x: np.ndarray, *, normalize_variance: bool, across_channels: bool, eps: float) -> np.ndarray:
    """Caffe MVN forward on ``x`` (N, C, ...)."""
    dt = x.dtype.type
    groups = x.shape[0] if across_channels or x.ndim < 2 else x.shape[0] * x.shape[1]
    xs = x.reshape(groups, -1)
    y = xs - xs.mean(axis=1, keepdims=True)
    if normalize_variance:
        std = np.sqrt(np.square(y).mean(axis=1, keepdims=True))
        y = y / (std + dt(eps))
    return y.reshape(x.shape)


def normalize(x: np.ndarray, scale: np.ndarray, *, across_spatial: bool, channel_shared: bool,
              eps: float) -> np.ndarray:
    """SSD Normalize forward on ``x`` (N, C, ...); ``scale`` has 1 value (channel_shared) or C values."""
    dt = x.dtype.type
    n, c = x.shape[:2]
    xs = x.reshape(n, c, -1)
    sq = np.square(xs)
    if across_spatial:
        norm = np.sqrt(sq.sum(axis=(1, 2), keepdims=True) + dt(eps))
    else:
        norm = np.sqrt(dt(eps) + sq.sum(axis=1, keepdims=True))
    y = xs / norm
    s = scale.astype(x.dtype, copy=False).reshape(-1)
    y = y * (s[0] if channel_shared else s[None, :, None])
    return y.reshape(x.shape)


def _one(layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    if len(inputs) != 1 or len(layer.tops) != 1:
        raise ShapeError(f"{layer.type} {layer.name!r}: expects 1 bottom and 1 top "
                         f"(got {len(inputs)} and {len(layer.tops)})")
    return inputs[0]


@REFERENCE.register("BatchNorm")
def batch_norm_layer(layer: Layer, inputs: list[np.ndarray], *, dtype=np.float64) -> list[np.ndarray]:
    x = _one(layer, inputs)
    bp = layer.p("batch_norm_param")
    if bp.scale_bias:
        raise UnsupportedParam(f"BatchNorm {layer.name!r}: batch_norm_param.scale_bias=true (NVCaffe's learned "
                               f"scale and bias) is not supported (false; put a Scale layer after BatchNorm)")
    use_global = bp.use_global_stats if bp.HasField("use_global_stats") else True  # phase is TEST
    c = 1 if x.ndim == 1 else x.shape[1]
    if not use_global:
        return [batch_norm(x, None, None, None, eps=bp.eps)]
    if len(layer.blobs) != 3:
        raise ShapeError(f"BatchNorm {layer.name!r}: has {len(layer.blobs)} blobs, expected 3 (mean ({c},), "
                         f"variance ({c},), moving-average factor (1,))")
    mean, var, fac = layer.blobs
    for what, b, size in (("mean", mean, c), ("variance", var, c), ("factor", fac, 1)):
        if b.size != size:
            raise ShapeError(f"BatchNorm {layer.name!r}: {what} blob has shape {tuple(b.shape)}, expected ({size},)")
    return [batch_norm(x, mean.reshape(c), var.reshape(c), float(fac.reshape(-1)[0]), eps=bp.eps)]


@REFERENCE.register("MVN")
def mvn_layer(layer: Layer, inputs: list[np.ndarray], *, dtype=np.float64) -> list[np.ndarray]:
    x = _one(layer, inputs)
    mp = layer.p("mvn_param")
    return [mvn(x, normalize_variance=mp.normalize_variance, across_channels=mp.across_channels, eps=mp.eps)]


@REFERENCE.register("Normalize")
def normalize_layer(layer: Layer, inputs: list[np.ndarray], *, dtype=np.float64) -> list[np.ndarray]:
    x = _one(layer, inputs)
    if x.ndim < 2:
        raise ShapeError(f"Normalize {layer.name!r}: input must have at least 2 axes, got {tuple(x.shape)}")
    npar = layer.p("norm_param")
    c = x.shape[1]
    want = 1 if npar.channel_shared else c
    if len(layer.blobs) != 1:
        raise ShapeError(f"Normalize {layer.name!r}: has {len(layer.blobs)} blobs, expected 1 (scale ({want},))")
    if layer.blobs[0].size != want:
        raise ShapeError(f"Normalize {layer.name!r}: scale blob has shape {tuple(layer.blobs[0].shape)}, expected "
                         f"({want},) (channel_shared={str(npar.channel_shared).lower()})")
    return [normalize(x, layer.blobs[0], across_spatial=npar.across_spatial, channel_shared=npar.channel_shared,
                      eps=npar.eps)]
