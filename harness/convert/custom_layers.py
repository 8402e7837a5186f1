"""Custom Keras layers for the core converter (part A: pooling, normalisation, affine): only where no standard Keras
layer computes Caffe exactly.  Every class derives from :class:`~harness.convert._custom_base.CaffeLayer` and follows
the rules written there; converter part B's classes live in :mod:`harness.convert.custom_ops`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from keras import ops

from ._custom_base import CaffeLayer, register
from ._layout import ops_to_nchw, ops_to_nhwc


def _pairs(p: Sequence[Sequence[int]]) -> tuple[tuple[int, int], tuple[int, int]]:
    return (int(p[0][0]), int(p[0][1])), (int(p[1][0]), int(p[1][1]))


# ----------------------------------------------------------------------------------------------------------------
# Pooling helpers
# ----------------------------------------------------------------------------------------------------------------


@register
class CaffeConstantPad2D(CaffeLayer):
    """Pad the H and W axes of an NHWC tensor with a constant (``-inf`` for Caffe's MAX pooling).

    ``padding = ((top, bottom), (left, right))``; ``value`` is a float or the strings ``"-inf"``/``"inf"`` (JSON
    has no infinities) or ``"edge"``: repeat the first/last row and column (slices and a concatenation).  Keras'
    ``ZeroPadding2D`` only pads zeros, which is wrong for MAX pooling over negative inputs: Caffe initialises the max
    with ``-FLT_MAX`` and never reads the padding (``pooling_layer.cpp``).  ``"edge"`` is what MAX pooling uses when
    every window holds a real element (the converter checks): a copied edge value lies in the same window as the
    edge itself, so the max is the same, and int8 quantisation (one scale for the pad's input and output) does not
    have to cover ``-FLT_MAX``.
    """

    _params = ("padding", "value")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.padding = [list(p) for p in _pairs(self.padding)]
        if isinstance(self.value, str) and self.value not in ("-inf", "inf", "edge"):
            raise ValueError(f"CaffeConstantPad2D: value={self.value!r} (a float, '-inf', 'inf' or 'edge')")

    def _value(self) -> float:
        return float(self.value)

    def call(self, x):
        (t, b), (l, r) = _pairs(self.padding)
        if self.value == "edge":
            return _edge_pad(_edge_pad(x, 1, t, b), 2, l, r)
        return ops.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=self._value())

    def compute_output_shape(self, s):
        (t, b), (l, r) = _pairs(self.padding)
        h = None if s[1] is None else s[1] + t + b
        w = None if s[2] is None else s[2] + l + r
        return (s[0], h, w, s[3])


def _edge_pad(x, axis: int, before: int, after: int):
    """``x`` with its first slice along ``axis`` repeated ``before`` times in front and its last ``after`` times
    behind (strided slices and one concatenation: builtin LiteRT operators)."""
    if not before and not after:
        return x
    first = x[:, :1] if axis == 1 else x[:, :, :1]
    last = x[:, -1:] if axis == 1 else x[:, :, -1:]
    return ops.concatenate([first] * before + [x] + [last] * after, axis=axis)


def caffe_ave_divisors(size: int, *, kernel: int, stride: int, pad: int, out: int) -> np.ndarray:
    """Caffe's AVE pooling divisor along one axis, per output index (``pooling_layer.cpp`` Forward_cpu):

    ``hstart = ph*stride - pad; hend = min(hstart + kernel, height + pad); pool_size = (hend - hstart) * ...``
    computed before ``hstart``/``hend`` are clipped to ``[0, height)``: padding up to ``H + pad`` is counted, the ceil
    overhang beyond ``H + pad`` is not."""
    starts = np.arange(out) * stride - pad
    ends = np.minimum(starts + kernel, size + pad)
    return (ends - starts).astype(np.float64)


@register
class CaffeAvePool2D(CaffeLayer):
    """Caffe AVE pooling where some window's divisor is not ``kh*kw`` (a ceil-mode window reaches past ``H + pad``).

    ``padding = ((top, bottom), (left, right))`` zero-pads the input so that a ``valid`` average pool yields Caffe's
    output size; the result (sum / (kh*kw)) is then multiplied by ``(kh*kw) / pool_size`` per output position, with
    ``pool_size`` from :func:`caffe_ave_divisors` (``caffe_pad`` is Caffe's own pad, which sets the divisor).  Where
    the divisor is ``kh*kw`` the factor is exactly 1.  The input H, W are fixed at build time (``in_hw``).
    """

    _params = ("pool_size", "strides", "padding", "caffe_pad", "in_hw")

    def _factors(self):
        kh, kw = (int(v) for v in self.pool_size)
        sh, sw = (int(v) for v in self.strides)
        ph, pw = (int(v) for v in self.caffe_pad)
        h, w = (int(v) for v in self.in_hw)
        (t, b), (l, r) = _pairs(self.padding)
        oh = (h + t + b - kh) // sh + 1
        ow = (w + l + r - kw) // sw + 1
        dh = caffe_ave_divisors(h, kernel=kh, stride=sh, pad=ph, out=oh)
        dw = caffe_ave_divisors(w, kernel=kw, stride=sw, pad=pw, out=ow)
        f = (kh * kw) / (dh[:, None] * dw[None, :])
        return f.astype(np.float32)[None, :, :, None]

    def call(self, x):
        (t, b), (l, r) = _pairs(self.padding)
        x = ops.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
        y = ops.average_pool(x, tuple(self.pool_size), tuple(self.strides), padding="valid",
                             data_format="channels_last")
        return y * ops.convert_to_tensor(self._factors(), dtype=y.dtype)

    def compute_output_shape(self, s):
        f = self._factors()
        return (s[0], f.shape[1], f.shape[2], s[3])


@register
class CaffeStochasticPool2D(CaffeLayer):
    """Caffe STOCHASTIC pooling at TEST time (``pooling_layer.cu`` StoPoolForwardTest; the CPU build has none):

    ``cumsum = FLT_MIN; cumvalues = 0; for x in window (clipped to [0, H)): cumsum += x; cumvalues += x*x;
    top = cumvalues / cumsum``.  The window clip equals zero padding at the bottom/right (``padding``), which adds
    nothing to either sum.  Both sums come from one average pool each (the ``kh*kw`` divisors cancel)."""

    _params = ("pool_size", "strides", "padding")

    def call(self, x):
        (t, b), (l, r) = _pairs(self.padding)
        k = float(int(self.pool_size[0]) * int(self.pool_size[1]))
        xp = ops.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
        kw = dict(pool_size=tuple(self.pool_size), strides=tuple(self.strides), padding="valid",
                  data_format="channels_last")
        s1 = ops.average_pool(xp, **kw) * k
        s2 = ops.average_pool(xp * xp, **kw) * k
        return s2 / (s1 + np.float32(np.finfo(np.float32).tiny))

    def compute_output_shape(self, s):
        (t, b), (l, r) = _pairs(self.padding)
        kh, kw = self.pool_size
        sh, sw = self.strides
        h = None if s[1] is None else (s[1] + t + b - kh) // sh + 1
        w = None if s[2] is None else (s[2] + l + r - kw) // sw + 1
        return (s[0], h, w, s[3])


# ----------------------------------------------------------------------------------------------------------------
# Normalisation
# ----------------------------------------------------------------------------------------------------------------


@register
class CaffeLRN(CaffeLayer):
    """Caffe LRN on an NHWC tensor (``lrn_layer.cpp``).

    ``ACROSS_CHANNELS``: ``scale_c = k + alpha/n * sum_{c'=c-(n-1)/2}^{c+(n-1)/2} x_{c'}^2`` (zeros outside),
    ``y = x * scale^-beta``.  ``WITHIN_CHANNEL``: Caffe builds Power(x^2) -> AVE pool (kernel n, stride 1, pad
    (n-1)/2, divisor always n^2) -> Power(shift 1, scale alpha, power -beta) -> product, so
    ``y = x * (1 + alpha * avg_{n x n}(x^2))^-beta`` and ``k`` is ignored.
    """

    _params = ("local_size", "alpha", "beta", "k", "region")

    def call(self, x):
        n = int(self.local_size)
        r = (n - 1) // 2
        sq = x * x
        if self.region == "ACROSS_CHANNELS":
            c = x.shape[-1]
            padded = ops.pad(sq, ((0, 0), (0, 0), (0, 0), (r, r)))
            acc = padded[..., 0:c]
            for o in range(1, n):
                acc = acc + padded[..., o:o + c]
            scale = np.float32(self.k) + np.float32(self.alpha / n) * acc
        elif self.region == "WITHIN_CHANNEL":
            padded = ops.pad(sq, ((0, 0), (r, r), (r, r), (0, 0)))
            avg = ops.average_pool(padded, (n, n), (1, 1), padding="valid", data_format="channels_last")
            scale = np.float32(1.0) + np.float32(self.alpha) * avg
        else:
            raise ValueError(f"CaffeLRN: region={self.region!r} (ACROSS_CHANNELS, WITHIN_CHANNEL)")
        return x * ops.power(scale, np.float32(-self.beta))

    def compute_output_shape(self, s):
        return s


@register
class CaffeMVN(CaffeLayer):
    """Caffe MVN (``mvn_layer.cpp``): subtract the mean over ``axes`` (Keras axes: H, W of an NHWC tensor, plus C when
    ``across_channels``); with ``normalize_variance`` divide by ``sqrt(E[(x - mean)^2]) + eps`` (eps is added
    *after* the square root, as Caffe does)."""

    _params = ("axes", "normalize_variance", "eps")

    def call(self, x):
        axes = tuple(int(a) for a in self.axes)
        d = x - ops.mean(x, axis=axes, keepdims=True)
        if not self.normalize_variance:
            return d
        var = ops.mean(d * d, axis=axes, keepdims=True)
        return d / (ops.sqrt(var) + np.float32(self.eps))

    def compute_output_shape(self, s):
        return s


@register
class CaffeBatchStatsNorm(CaffeLayer):
    """Caffe BatchNorm with ``use_global_stats: false`` (``batch_norm_layer.cpp``, also at TEST): each channel is
    normalised with this batch's own statistics, ``mean = E[x]`` and the biased ``var = E[(x - mean)^2]`` over the
    reduced ``axes`` (Keras axes: N, H, W of an NHWC tensor; N and the trailing axes of a Caffe-order one), then
    ``y = (x - mean) / sqrt(var + eps)`` -- divided, as Caffe divides (``caffe_div``), with Caffe's float32 ``eps``.
    No state: the stored blobs do not enter the output."""

    _params = ("axes", "eps")

    def call(self, x):
        axes = tuple(int(a) for a in self.axes)
        d = x - ops.mean(x, axis=axes, keepdims=True)
        var = ops.mean(d * d, axis=axes, keepdims=True)
        return d / ops.sqrt(var + np.float32(self.eps))

    def compute_output_shape(self, s):
        return s


@register
class CaffeNormalize(CaffeLayer):
    """SSD's Normalize (``normalize_layer.cpp``, weiliu89/caffe) on an NHWC tensor:
    ``norm = sqrt(sum x^2 + eps)`` over C, H, W per image (``across_spatial``) or over C per pixel; ``y = x / norm *
    scale`` with one learned scale (``channel_shared``) or one per channel (weight ``scale``)."""

    _params = ("across_spatial", "channel_shared", "eps", "channels")

    def build(self, input_shape):
        n = 1 if self.channel_shared else int(self.channels)
        self.scale = self.add_weight(name="scale", shape=(n,), initializer="ones", trainable=True)
        self.built = True

    def call(self, x):
        axes = (1, 2, 3) if self.across_spatial else (3,)
        ss = ops.sum(x * x, axis=axes, keepdims=True)
        norm = ops.sqrt(ss + np.float32(self.eps))
        return x / norm * ops.cast(self.scale, x.dtype)

    def compute_output_shape(self, s):
        return s


# ----------------------------------------------------------------------------------------------------------------
# Affine
# ----------------------------------------------------------------------------------------------------------------


def _caffe_to_keras_param(p, *, full_caffe_shape: Sequence[int], rank: int):
    """Reshape a parameter to ``full_caffe_shape`` (Caffe order, ones where it broadcasts) and, for a 4-D blob,
    transpose it to NHWC."""
    p = ops.reshape(p, tuple(int(d) for d in full_caffe_shape))
    if rank == 4:
        p = ops_to_nhwc(p)
    return p


@register
class CaffeScale(CaffeLayer):
    """Caffe Scale (``scale_layer.cpp``) with optional bias (``bias_layer.cpp``): ``y = x * gamma (+ beta)``.

    ``gamma`` spans Caffe axes ``[axis, axis + len(param_shape))`` of the bottom and broadcasts over the rest;
    ``bcast_shape`` is that Caffe-order broadcast shape (ones elsewhere, the leading batch entry is ``-1`` when the
    parameter covers axis 0) and ``rank`` the bottom's rank (4 means NHWC in Keras).  With ``learned_scale`` gamma is
    the weight ``gamma`` (shape ``param_shape``), else it is the layer's second input (Caffe's ``bottom[1]``, in its own
    Keras layout).  ``bias`` adds the weight ``beta`` (shape ``param_shape``) after the product, as Caffe's Scale with
    ``bias_term`` runs a BiasLayer on the product.
    """

    _params = ("param_shape", "bcast_shape", "rank", "learned_scale", "bias", "second_input_rank")

    def build(self, input_shape):
        shape = tuple(int(d) for d in self.param_shape)
        if self.learned_scale:
            self.gamma = self.add_weight(name="gamma", shape=shape, initializer="ones")
        if self.bias:
            self.beta = self.add_weight(name="beta", shape=shape, initializer="zeros")
        self.built = True

    def _to_caffe(self, g):
        # a second bottom arrives in Keras layout; bring a 4-D one back to NCHW first
        if int(self.second_input_rank) == 4:
            g = ops_to_nchw(g)
        return g

    def call(self, inputs):
        if self.learned_scale:
            x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
            g = ops.cast(self.gamma, x.dtype)
        else:
            x, g = inputs
            g = self._to_caffe(g)
        g = _caffe_to_keras_param(g, full_caffe_shape=self.bcast_shape, rank=int(self.rank))
        y = x * g
        if self.bias:
            y = y + _caffe_to_keras_param(ops.cast(self.beta, x.dtype), full_caffe_shape=self.bcast_shape,
                                          rank=int(self.rank))
        return y

    def compute_output_shape(self, s):
        if isinstance(s, (list, tuple)) and s and isinstance(s[0], (list, tuple)):
            return tuple(s[0])
        return s


@register
class CaffeBias(CaffeLayer):
    """Caffe Bias (``bias_layer.cpp``): ``y = x + beta``, beta spanning Caffe axes ``[axis, axis + len(param_shape))``
    (see :class:`CaffeScale` for ``bcast_shape``/``rank``); ``beta`` is the weight ``beta`` or the second input."""

    _params = ("param_shape", "bcast_shape", "rank", "learned", "second_input_rank")

    def build(self, input_shape):
        if self.learned:
            self.beta = self.add_weight(name="beta", shape=tuple(int(d) for d in self.param_shape),
                                        initializer="zeros")
        self.built = True

    def call(self, inputs):
        if self.learned:
            x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
            b = ops.cast(self.beta, x.dtype)
        else:
            x, b = inputs
            if int(self.second_input_rank) == 4:
                b = ops_to_nchw(b)
        return x + _caffe_to_keras_param(b, full_caffe_shape=self.bcast_shape, rank=int(self.rank))

    def compute_output_shape(self, s):
        if isinstance(s, (list, tuple)) and s and isinstance(s[0], (list, tuple)):
            return tuple(s[0])
        return s


@register
class CaffeEmbed(CaffeLayer):
    """Caffe Embed (``embed_layer.cpp``): ``top[..., :] = W[int(x)] (+ b)``; the float index is truncated like
    ``static_cast<int>``.  The input arrives in Caffe axis order (the converter transposes a 4-D blob first), the
    output has one more axis of size ``num_output``."""

    _params = ("input_dim", "num_output", "bias")

    def build(self, input_shape):
        self.weight = self.add_weight(name="weight", shape=(int(self.input_dim), int(self.num_output)),
                                      initializer="zeros")
        if self.bias:
            self.b = self.add_weight(name="b", shape=(int(self.num_output),), initializer="zeros")
        self.built = True

    def call(self, x):
        idx = ops.cast(x, "int32")
        y = ops.take(ops.cast(self.weight, "float32"), idx, axis=0)
        if self.bias:
            y = y + ops.cast(self.b, y.dtype)
        return y

    def compute_output_shape(self, s):
        return tuple(s) + (int(self.num_output),)


CUSTOM_LAYERS = (
    CaffeConstantPad2D, CaffeAvePool2D, CaffeStochasticPool2D, CaffeLRN, CaffeMVN, CaffeBatchStatsNorm, CaffeNormalize,
    CaffeScale, CaffeBias, CaffeEmbed,
)
