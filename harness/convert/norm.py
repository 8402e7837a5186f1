"""LRN, BatchNorm, MVN and SSD's Normalize -> Keras.

* BatchNorm (``batch_norm_layer.cpp``, TEST / ``use_global_stats``): ``f = blob[2] == 0 ? 0 : 1 / blob[2]``,
  ``mean = f * blob[0]``, ``var = f * blob[1]``, ``y = (x - mean) / sqrt(var + eps)`` (eps default 1e-5; Keras'
  default 1e-3 is never used).  Caffe multiplies by the float32 reciprocal of the factor (``caffe_cpu_scale``); so
  does this converter.  -> standard ``BatchNormalization(epsilon=eps, center=False, scale=False)`` with the moving
  statistics set.  Keras computes ``x * rsqrt(var + eps) - mean * rsqrt(var + eps)``: the same value up to float32
  rounding.  ``use_global_stats: false`` makes Caffe normalise with the batch's own statistics even at TEST (mean and
  biased variance over N, H, W per channel; the stored blobs do not enter the output) -> custom
  ``CaffeBatchStatsNorm`` (``keras.ops`` only, exact: ``(x - mean) / sqrt(var + eps)``); the model's output then
  depends on the whole batch, as Caffe's does.
  Optional ``fold_batchnorm`` (off by default, so that every Caffe layer keeps its own Keras layer) folds an in-place
  Scale that directly follows into the BatchNormalization's gamma/beta; the folded Keras layer is named after the
  Scale layer and the BatchNorm key is left out of the mapping (it has no Keras tensor).
* LRN (``lrn_layer.cpp``): ACROSS_CHANNELS ``y = x * (k + alpha/n * sum_window x^2)^-beta``; WITHIN_CHANNEL ``y = x
  * (1 + alpha * avg_{n x n}(x^2))^-beta`` (zero padding (n-1)/2 counted in the divisor n^2, k ignored).  Keras has
  no LRN layer -> custom ``CaffeLRN``.  ``local_size`` must be odd (Caffe CHECK).
* MVN (``mvn_layer.cpp``): ``x - mean`` over H, W (and C when ``across_channels``); with ``normalize_variance``
  divided by ``sqrt(var) + eps`` -> custom ``CaffeMVN``.
* Normalize (SSD fork): ``x / sqrt(sum x^2 + eps) * scale`` -> custom ``CaffeNormalize``.
"""

from __future__ import annotations

import keras
import numpy as np

from ..catalogue import completes
from ..errors import ShapeError, UnsupportedParam
from ..net import Layer
from ..params import lrn_region
from ._util import blob, one_bottom, who
from .base import CONVERTERS, ConvertContext
from .custom_layers import CaffeBatchStatsNorm, CaffeLRN, CaffeMVN, CaffeNormalize


def batchnorm_stats(mean: np.ndarray, var: np.ndarray, factor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm's global statistics: ``scale_factor = blob[2][0] == 0 ? 0 : 1 / blob[2][0]`` (float32), then
    ``mean = scale_factor * blob[0]``, ``var = scale_factor * blob[1]`` (``caffe_cpu_scale``)."""
    f0 = np.float32(np.asarray(factor, dtype=np.float32).reshape(-1)[0])
    f = np.float32(0.0) if f0 == 0 else np.float32(1.0) / f0
    return (mean.astype(np.float32) * f).astype(np.float32), (var.astype(np.float32) * f).astype(np.float32)


def _bn_channels_axis(layer: Layer, shape) -> int:
    if len(shape) < 2:
        raise ShapeError(f"{who(layer)}: bottom must have at least 2 axes, got {tuple(shape)}")
    return -1 if len(shape) == 4 else 1


def _fold_scale(layer: Layer, ctx: ConvertContext) -> Layer | None:
    """The Scale layer to fold into ``layer`` (opt-in ``fold_batchnorm``): learned, in place on the BatchNorm's top,
    directly after it, per-channel (axis 1, num_axes 1).  None when folding does not apply."""
    if not ctx.extra.get("fold_batchnorm"):
        return None
    layers = ctx.net.layers
    # the converter sees the Keras-safe name ('/' -> '.'); find the Caffe layer it stands for
    idx = next(i for i, lay in enumerate(layers) if lay.name.replace("/", ".") == layer.name)
    if idx + 1 >= len(layers):
        return None
    nxt = layers[idx + 1]
    if not completes(layer.kind, nxt.kind) or len(nxt.bottoms) != 1 or nxt.bottoms != nxt.tops or \
            nxt.bottoms[0] != layer.tops[0]:
        return None
    ctx.extra["fold_pair"] = (layers[idx].name, nxt.name)  # Caffe names (BatchNorm, Scale)
    sp = nxt.p("scale_param")
    if (sp.HasField("axis") and sp.axis != 1) or (sp.HasField("num_axes") and sp.num_axes != 1):
        return None
    # nobody may read the BatchNorm's output before the Scale overwrites it: the Scale is next, so that holds
    return nxt


@CONVERTERS.register("BatchNorm")
def convert_batchnorm(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    one_bottom(layer, inputs)
    bp = layer.p("batch_norm_param")
    shape = ctx.bottom_shapes[0]
    axis = _bn_channels_axis(layer, shape)
    if bp.HasField("use_global_stats") and not bp.use_global_stats:
        return [_batch_stats(layer, inputs[0], shape, bp)]
    c = shape[1]
    mean_b = blob(layer, 0, (c,), "mean")
    var_b = blob(layer, 1, (c,), "variance")
    fac_b = blob(layer, 2, (1,), "moving-average factor")
    mean, var = batchnorm_stats(mean_b, var_b, fac_b)
    eps = float(np.float32(bp.eps))
    folded = _fold_scale(layer, ctx)
    if folded is None:
        bn = keras.layers.BatchNormalization(axis=axis, epsilon=eps, center=False, scale=False, name=layer.name,
                                             dtype="float32")
        y = bn(inputs[0])
        bn.set_weights([mean, var])
        return [y]
    sp = folded.p("scale_param")
    gamma = blob(folded, 0, (c,), "scale")
    beta = blob(folded, 1, (c,), "bias") if sp.bias_term else None
    bn = keras.layers.BatchNormalization(axis=axis, epsilon=eps, center=beta is not None, scale=True,
                                         name=folded.name.replace("/", "."), dtype="float32")
    y = bn(inputs[0])
    bn.set_weights([gamma] + ([beta] if beta is not None else []) + [mean, var])
    bn_name, scale_name = ctx.extra.pop("fold_pair")
    ctx.extra.setdefault("folded", {})[scale_name] = bn_name
    return [y]


def _batch_stats(layer: Layer, x, shape, bp):
    """``use_global_stats: false``: the batch's own statistics over every axis but the channels (Caffe axis 1)."""
    if bp.scale_bias:
        raise UnsupportedParam(f"{who(layer)}: batch_norm_param.scale_bias=true (NVCaffe's learned scale and bias) is "
                               f"not supported (false; put a Scale layer after BatchNorm)")
    rank = len(shape)
    axes = [0, 1, 2] if rank == 4 else [a for a in range(rank) if a != 1]
    return CaffeBatchStatsNorm(axes=axes, eps=float(np.float32(bp.eps)), name=layer.name)(x)


@CONVERTERS.register("LRN")
def convert_lrn(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    one_bottom(layer, inputs)
    lp = layer.p("lrn_param")
    n = int(lp.local_size)
    if n <= 0 or n % 2 == 0:
        raise ShapeError(f"{who(layer)}: local_size={n} must be a positive odd number")
    shape = ctx.bottom_shapes[0]
    if len(shape) != 4:
        raise ShapeError(f"{who(layer)}: bottom must have 4 axes (N, C, H, W), got {tuple(shape)}")
    region = lrn_region(layer)
    f32 = lambda v: float(np.float32(v))  # noqa: E731  (Caffe holds these as float32)
    return [CaffeLRN(local_size=n, alpha=f32(lp.alpha), beta=f32(lp.beta), k=f32(lp.k), region=region,
                     name=layer.name)(inputs[0])]


@CONVERTERS.register("MVN")
def convert_mvn(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    one_bottom(layer, inputs)
    mp = layer.p("mvn_param")
    shape = ctx.bottom_shapes[0]
    rank = len(shape)
    if rank < 2:
        raise ShapeError(f"{who(layer)}: bottom must have at least 2 axes, got {tuple(shape)}")
    # Caffe: num = N (across_channels) or N*C; mean over the remaining count/num values (C order)
    caffe_axes = list(range(1 if mp.across_channels else 2, rank))
    if rank == 4:
        to_keras = {1: 3, 2: 1, 3: 2}
        axes = sorted(to_keras[a] for a in caffe_axes)
    else:
        axes = caffe_axes
    if not axes:
        # a 2-D bottom without across_channels: every mean is over one value
        axes = []
    return [CaffeMVN(axes=axes, normalize_variance=bool(mp.normalize_variance), eps=float(np.float32(mp.eps)),
                     name=layer.name)(inputs[0])]


@CONVERTERS.register("Normalize")
def convert_normalize(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    one_bottom(layer, inputs)
    npm = layer.p("norm_param")
    shape = ctx.bottom_shapes[0]
    if len(shape) != 4:
        raise ShapeError(f"{who(layer)}: bottom must have 4 axes (N, C, H, W), got {tuple(shape)}")
    c = shape[1]
    shared = bool(npm.channel_shared)
    scale = blob(layer, 0, (1,) if shared else (c,), "scale")
    lay = CaffeNormalize(across_spatial=bool(npm.across_spatial), channel_shared=shared,
                         eps=float(np.float32(npm.eps)), channels=int(c), name=layer.name)
    y = lay(inputs[0])
    lay.set_weights([scale])
    return [y]
