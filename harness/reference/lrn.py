"""LRN (local response normalisation), both regions, in pure NumPy (``lrn_layer.cpp``).

* ACROSS_CHANNELS: ``scale = k + (alpha/n) * sum_{c'=c-(n-1)/2}^{c+(n-1)/2} x_{c'}^2`` (zero outside the channel
  range), ``y = x * scale^-beta``.
* WITHIN_CHANNEL: Caffe builds it from layers: Power(x^2) -> Pooling AVE (kernel n, pad (n-1)/2, stride 1) ->
  Power(shift 1, scale alpha, power -beta) -> Eltwise PROD with x.  With stride 1 and that pad every window's
  pooling divisor ``(min(hs+n, H+pad) - hs)^2`` is exactly ``n^2`` (the pad is counted, nothing overhangs), so
  ``y = x * (1 + (alpha/n^2) * sum_{n x n} x^2)^-beta``; ``k`` is ignored.
* ``local_size`` must be odd; defaults n=5, alpha=1, beta=0.75, k=1.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError, UnsupportedParam
from ..net import Layer
from ..params import lrn_region
from . import pooling
from .registry import REFERENCE


def lrn_across_channels(x: np.ndarray, *, local_size: int, alpha: float, beta: float, k: float) -> np.ndarray:
    """ACROSS_CHANNELS LRN of ``x`` (N, C, H, W)."""
    n, c, h, w = x.shape
    pre = (local_size - 1) // 2
    dt = x.dtype.type
    sq = np.zeros((n, c + local_size - 1, h, w), dtype=x.dtype)
    np.square(x, out=sq[:, pre:pre + c])
    acc = np.zeros_like(x)
    for i in range(local_size):
        acc += sq[:, i:i + c]
    scale = dt(k) + dt(alpha / local_size) * acc
    return x * scale ** dt(-beta)


def lrn_within_channel(x: np.ndarray, *, local_size: int, alpha: float, beta: float) -> np.ndarray:
    """WITHIN_CHANNEL LRN of ``x`` (N, C, H, W), computed the way Caffe composes it (AVE pooling of x^2)."""
    dt = x.dtype.type
    pre = (local_size - 1) // 2
    pooled = pooling.ave_pool(np.square(x), kernel=(local_size, local_size), stride=(1, 1), pad=(pre, pre),
                              ceil=True)
    return x * (dt(1) + dt(alpha) * pooled) ** dt(-beta)


@REFERENCE.register("LRN")
def lrn_layer(layer: Layer, inputs: list[np.ndarray], *, dtype=np.float64) -> list[np.ndarray]:
    if len(inputs) != 1 or len(layer.tops) != 1:
        raise ShapeError(f"LRN {layer.name!r}: expects 1 bottom and 1 top")
    (x,) = inputs
    if x.ndim != 4:
        raise ShapeError(f"LRN {layer.name!r}: input must have 4 axes (N, C, H, W), got {tuple(x.shape)}")
    lp = layer.p("lrn_param")
    size = int(lp.local_size)
    if size % 2 != 1:
        raise UnsupportedParam(f"LRN {layer.name!r}: local_size={size} is not supported (odd values only)")
    region = lrn_region(layer)
    if region == "ACROSS_CHANNELS":
        return [lrn_across_channels(x, local_size=size, alpha=lp.alpha, beta=lp.beta, k=lp.k)]
    if region == "WITHIN_CHANNEL":
        return [lrn_within_channel(x, local_size=size, alpha=lp.alpha, beta=lp.beta)]
    raise UnsupportedParam(f"LRN {layer.name!r}: norm_region={region} is not supported "
                           f"(ACROSS_CHANNELS, WITHIN_CHANNEL)")
