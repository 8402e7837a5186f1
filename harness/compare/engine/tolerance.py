"""Tolerances: the derived float32 bound of each layer, and user overrides as data with a reason.

The default rule (derived, per element)
=======================================
A correct float32 implementation differs from the float64 reference by rounding only.  For an output element that is
an accumulation of ``K`` terms ``t_k = w_k * x_k`` (convolution: ``K = C_in/group * kh * kw``; InnerProduct: ``K`` =
the input length; deconvolution: ``C_in/group * kh * kw``; average pooling: the window), the float32 result carries

* the rounding of its inputs to float32 (``|delta x_k| <= u |x_k|``),
* the rounding of every partial sum ``S_j`` (``|delta| <= u |S_j|``),
* the rounding of the output (``u |y|``),

with ``u = 2**-24`` (float32 unit roundoff).  Treating the rounding errors as independent and zero-mean (Higham & Mary,
"A new approach to probabilistic rounding error analysis", SIAM J. Sci. Comput. 2019) the error is a sum of ``K``
independent terms of size ``u |S_j|``: its standard deviation is ``u/sqrt(3) * sqrt(sum_j S_j**2)``.  For terms of
mixed sign the partial sums are random walks (``|S_j| ~ sqrt(j) * rms(t)``), which gives ``sqrt(K/6) * ||t||_2``; for
terms of one sign the partial sums drift towards ``y`` (``sqrt(K/3) * |y|``).  (Higham & Mary's own bound uses
``sum_k |t_k|`` instead of ``||t||_2 + |y|``; for mixed signs that is ``sqrt(K)`` times larger and would let a 1e-4
bug pass in any layer with ``K`` in the thousands.)  Hence the bound

    bound_i = c * u * sqrt(K + 1) * m_i,        m_i = ||t_i||_2 + |y_i|,        c = 6

``||t_i||_2 = sqrt(sum_k (w_k x_k)**2)`` is computed by re-running the layer's reference function on the squared
weights and squared inputs with the bias set to zero, in float32 (a sum of non-negative terms), times the upward
factor ``1 / sqrt(1 - gamma_{K+4})`` that covers the rounding of that float32 sum itself (:func:`f32_sum_factor`:
``1 + 1.4e-4`` for ``K = 4608``, ``1 + 7.5e-4`` for VGG's fc6), so the magnitude is never below the exact one.

The constant is measured, not guessed: for TensorFlow's CPU float32 convolutions (oneDNN) the normalised error
``z = (y32 - y64) / (u * sqrt(K) * m)`` has the same spread for every ``K`` from 64 to 4608 (which confirms the
``sqrt(K)`` law), an RMS of 0.10..0.15 and a largest value of 0.8..1.5 over 10^5..10^6 elements (heavier tails than a
Gaussian).  ``c = 6`` leaves a factor 4 above the largest deviation measured (ResNet-50 at 224x224: the worst layer
uses 0.24 of its bound; the golden cases at most 0.23).  At the same time, at the output's largest element
(``|y| ~ 4 ||t||_2``) the bound is ``6 * 1.25 * u * sqrt(K) = 4.5e-7 * sqrt(K)`` of ``|y|``: 3e-5 for ``K = 4608``,
4.3e-5 for ``K = 9216`` and 7e-5 for VGG's fc6 (``K = 25088``), so a real bug of relative size 1e-4 fails, and TF32 /
fp16 arithmetic (3e-4 .. 5e-4, caffe-facts section F) fails everywhere.  GPU float32 (cuDNN, TF32 off) drifts about
as much as oneDNN does on CPU (section F: 1.0e-6 vs our measured 0.9e-6 relative to the blob maximum for a 3x3
convolution with ``K = 1152``).

Layers without a long accumulation use the same formula with a small ``K`` and their own magnitude ``m_i``:

==================================  ====  =============================================================
layer                               K     m_i
==================================  ====  =============================================================
selection / copy (MAX pool, ReLU,   1     |y|        (the output is a float32 input value)
Split, Concat, Flatten, Reshape,
Crop, Slice, Permute, Dropout, ...)
elementwise math (Sigmoid, TanH,    4     |y| + |x| + 1 + kappa_i   (intermediates such as exp(x) - 1 or log(x)
ELU, Power, Exp, Log, BNLL, Swish)        cancel to below |y|; kappa_i: the float32 rounding of the function's
                                          argument times its condition number, per function: see below)
BatchNorm                           4     (|x| + |mean|) / sqrt(var + eps)   (cancellation in x - mean)
Scale / Bias                        2     |x gamma| + |beta|
Eltwise SUM / PROD / MAX            n     sum_j |coeff_j x_j|, n |y|, |y|
Softmax / LRN / Normalize          n     |y| (1 + |x|), n = reduced length (Softmax: the axis; Normalize: C*H*W
                                          across_spatial, else C per pixel); Softmax: + |y| sum_axis y|x|
                                          (every logit's rounding moves every output)
MVN                                 n     (|x| + |mean|) / std + |y|   (cancellation in x - mean; n = H*W, or
                                          C*H*W across_channels)
PriorBox / DetectionOutput / Interp 8     |y| + max|y|  (coordinates from differences of O(1) terms)
anything else                       8     |y| + |x| (same shape) or |y|
==================================  ====  =============================================================

Conditioning of the elementwise functions
-----------------------------------------
``y = f(a)`` with an argument ``a`` that float32 computes with an error ``|delta a| <= u w`` (``w`` counts the
roundings: the input itself ``|x|``, a product ``|scale x|``, a sum ``|a|``) gives ``|delta y| ~ |f'(a)| u w`` on top
of the function's own rounding; ``kappa_i = |f'(a)| w`` (in units of ``u``), plus what evaluating ``f`` itself loses
beyond a few ulps of ``y``.  Well conditioned (``|a f'(a)| ~ |y|``) it is ``O(|y|)``: a 1e-4 change of a parameter
still moves ``y`` by ~1e-4 of ``|y|``, far above ``13 u (|y| + kappa)``; near a pole or a cancelling ``shift + scale
x`` it grows as the function amplifies the rounding that a correct float32 port cannot avoid.

=======  ===========================================  ==================  =================================
layer    float32 computes                             w (|delta a|/u)     kappa_i
=======  ===========================================  ==================  =================================
Power    a = shift + scale x,  y = a^p                2|scale x| + |a|    |p y| w / |a| + |y p ln|a||
         (pow as exp(p log a): log's rounding                             (at a = 0: (u w)^p / u, the
         u |ln a| is multiplied by p)                                     output of a rounding-sized a)
Exp      b = inner x (inner = scale ln(base) in       3|b|                |y| w  (f' = f)
         float32), y = outer exp(b)
Log      a = shift + scale x,  y = ln(a) / ln(base)   2|scale x| + |a|    w / (|a| |ln base|)
Sigmoid  y = 1 / (1 + exp(-x))                        |x|                 y (1 - y) |x|
TanH     y = tanh(x)                                  |x|                 (1 - y^2) |x|
ELU      x < 0: y = alpha (exp(x) - 1), else x        |x|                 |alpha| exp(x) |x|  (x < 0)
BNLL     y = max(x, 0) + log1p(exp(-|x|))             |x|                 sigmoid(x) |x|
Swish    b = beta x,  y = x sigmoid(b)                |x|, 2|b|           |y| (1 + 2 (1 - sigmoid(b)) |b|)
=======  ===========================================  ==================  =================================

Non-finite ``kappa_i`` (a NaN or infinite reference: the non-finite rule judges those) counts 0.

In chained mode an element passes when its error against the reference is within the bound, or, when it is not
(the Keras input already carries upstream error ``e``), when ``|y_keras - f(x + e)|`` is: the reference is re-run on
the Keras inputs, which removes the propagated part ``f(x + e) - f(x)`` exactly (see :mod:`harness.compare.engine.evaluation`).

Overrides (Polygraphy semantics)
================================
``Tolerance(atol, rtol, reason)``: an element passes when ``|keras - ref| <= atol`` OR ``|keras - ref| <= rtol *
|ref|`` (an unset one counts as 0).  :class:`Tolerances` holds a global override (``--atol/--rtol``), overrides per
Caffe layer type and per layer, each with its reason; the most specific wins (layer > type > global > derived).
NaN or Inf in the Keras output where the reference is finite always fails, whatever the tolerance.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ...errors import HarnessError
from ...net import Layer

U32 = 2.0 ** -24  # float32 unit roundoff
C_DEFAULT = 6.0



@dataclass(frozen=True)
class Tolerance:
    """A user override: pass when within ``atol`` OR within ``rtol * |ref|``."""

    atol: float | None = None
    rtol: float | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        for name in ("atol", "rtol"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0):
                raise HarnessError(f"tolerance {name}={v!r} must be a finite number >= 0")
        if self.atol is None and self.rtol is None:
            raise HarnessError("a tolerance override needs atol or rtol")

    def bound(self, ref: np.ndarray) -> np.ndarray:
        """Per-element allowance ``max(atol, rtol*|ref|)`` (the OR of the two tests)."""
        a = float(self.atol or 0.0)
        r = float(self.rtol or 0.0)
        return np.maximum(a, r * np.abs(ref))

    def to_dict(self) -> dict[str, Any]:
        return {"atol": self.atol, "rtol": self.rtol, "reason": self.reason}


def _tol_from(data: Any, where: str) -> Tolerance:
    if isinstance(data, Tolerance):
        return data
    if not isinstance(data, Mapping):
        raise HarnessError(f"tolerance {where}: expected a table with atol/rtol/reason, got {data!r}")
    unknown = set(data) - {"atol", "rtol", "reason"}
    if unknown:
        raise HarnessError(f"tolerance {where}: unknown key(s) {sorted(unknown)} (atol, rtol, reason)")
    return Tolerance(data.get("atol"), data.get("rtol"), str(data.get("reason", "")))


@dataclass(frozen=True)
class Tolerances:
    """Overrides as data: ``global_`` (``--atol/--rtol``), ``by_type`` (Caffe type), ``by_layer`` (Caffe layer name),
    and the constant ``c`` of the derived bound."""

    global_: Tolerance | None = None
    by_type: Mapping[str, Tolerance] = field(default_factory=dict)
    by_layer: Mapping[str, Tolerance] = field(default_factory=dict)
    c: float = C_DEFAULT

    @classmethod
    def build(cls, *, atol: float | None = None, rtol: float | None = None, tolerances: Any = None) -> "Tolerances":
        """From the API/CLI arguments.  ``tolerances`` is a :class:`Tolerances` or a dict::

            {"atol": .., "rtol": .., "reason": "..",              # global (optional)
             "types":  {"LRN":   {"rtol": 1e-5, "reason": "..."}},
             "layers": {"conv1": {"atol": 1e-4, "reason": "..."}},
             "c": 4.0}
        """
        if isinstance(tolerances, Tolerances):
            base = tolerances
        elif tolerances is None:
            base = cls()
        elif isinstance(tolerances, Mapping):
            unknown = set(tolerances) - {"atol", "rtol", "reason", "types", "layers", "c"}
            if unknown:
                raise HarnessError(f"tolerances: unknown key(s) {sorted(unknown)} (atol, rtol, reason, types, "
                                   f"layers, c)")
            g = None
            if tolerances.get("atol") is not None or tolerances.get("rtol") is not None:
                g = Tolerance(tolerances.get("atol"), tolerances.get("rtol"), str(tolerances.get("reason", "")))
            types = {str(k): _tol_from(v, f"for type {k!r}") for k, v in (tolerances.get("types") or {}).items()}
            layers = {str(k): _tol_from(v, f"for layer {k!r}") for k, v in (tolerances.get("layers") or {}).items()}
            c = float(tolerances.get("c", C_DEFAULT))
            if not (c > 0 and math.isfinite(c)):
                raise HarnessError(f"tolerances: c={c!r} must be a positive number")
            base = cls(g, types, layers, c)
        else:
            raise HarnessError(f"tolerances: expected a dict or Tolerances, got {type(tolerances).__name__}")
        if atol is not None or rtol is not None:
            base = cls(Tolerance(atol, rtol, "command line / API atol/rtol"), base.by_type, base.by_layer, base.c)
        return base

    def override_for(self, layer: Layer | None, caffe_name: str = "") -> Tolerance | None:
        name = layer.name if layer is not None else caffe_name
        if name in self.by_layer:
            return self.by_layer[name]
        if layer is not None:
            for t in (layer.type, layer.kind):
                if t in self.by_type:
                    return self.by_type[t]
        return self.global_

    def to_dict(self) -> dict[str, Any]:
        return {
            "global": self.global_.to_dict() if self.global_ else None,
            "types": {k: v.to_dict() for k, v in self.by_type.items()},
            "layers": {k: v.to_dict() for k, v in self.by_layer.items()},
            "c": self.c,
        }


# --------------------------------------------------------------------------------------------------------------------
# The derived bound


@dataclass(frozen=True)
class Bound:
    """A derived per-element bound: ``values`` (same shape as the output) and how it was derived."""

    values: np.ndarray
    k: int
    rule: str


def _reference_fn(layer: Layer):
    try:
        import harness.reference  # noqa: F401  (registers every reference function)
    except Exception:  # pragma: no cover - the reference package not importable in a partial checkout
        pass
    from ...reference.registry import REFERENCE

    try:
        return REFERENCE[layer.type]
    except Exception:
        return None


def _squared_layer(layer: Layer, dtype=np.float64, op: Callable[[np.ndarray], np.ndarray] = np.square,
                   bias: Callable[[np.ndarray], np.ndarray] | None = None) -> Layer:
    """The layer with ``op``-ed weights (squared: ``||t||_2**2 = sum (w x)**2``; ``np.abs``: ``sum |w||x|``) and the
    bias zero (``bias``: or ``bias(b)``)."""
    from dataclasses import replace

    blobs = list(layer.blobs)
    if blobs:
        blobs[0] = op(np.asarray(blobs[0], dtype))
        for i in range(1, len(blobs)):
            blobs[i] = np.zeros(np.shape(blobs[i]), dtype) if bias is None else bias(np.asarray(blobs[i], dtype))
    return replace(layer, blobs=tuple(blobs))


# --------------------------------------------------------------------------------------------------------------------
# Accumulation length K: one rule per name; each catalogue type names its rule (harness.catalogue.TRAITS)

ACCUMULATION: dict[str, Callable[[Layer, Sequence[tuple[int, ...]]], int]] = {}
MAGNITUDE: dict[str, Callable[[Layer, list[np.ndarray], np.ndarray, Sequence[np.ndarray]],
                              tuple[np.ndarray, str] | None]] = {}


def _rule(table: dict, *names: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        for n in names:
            if n in table:
                raise ValueError(f"duplicate tolerance rule {n!r}")
            table[n] = fn
        return fn

    return deco


def _constant(n: int) -> Callable[[Layer, Sequence[tuple[int, ...]]], int]:
    return lambda layer, in_shapes: n


ACCUMULATION.update({"one": _constant(1), "two": _constant(2), "four": _constant(4), "eight": _constant(8)})


@_rule(ACCUMULATION, "conv")
def _k_conv(layer: Layer, in_shapes: Sequence[tuple[int, ...]]) -> int:
    """C_in/group * kh * kw (the weight's second axis when there is a weight)."""
    from ...params import conv_geometry

    g = conv_geometry(layer)
    kh, kw = g.kernel
    if layer.blobs:
        return int(layer.blobs[0].shape[1]) * kh * kw
    return max(1, in_shapes[0][1] // max(g.group, 1)) * kh * kw


@_rule(ACCUMULATION, "deconv")
def _k_deconv(layer: Layer, in_shapes: Sequence[tuple[int, ...]]) -> int:
    """Each output element of a strided deconvolution sums C_in/group * ceil(kh/sh) * ceil(kw/sw) terms."""
    from ...params import conv_geometry

    g = conv_geometry(layer)
    kh, kw = g.kernel
    cin = in_shapes[0][1] if in_shapes else (layer.blobs[0].shape[0] if layer.blobs else 1)
    sh, sw = g.stride
    return max(1, (cin // max(g.group, 1)) * math.ceil(kh / sh) * math.ceil(kw / sw))


@_rule(ACCUMULATION, "inner_product")
def _k_inner_product(layer: Layer, in_shapes: Sequence[tuple[int, ...]]) -> int:
    if layer.blobs:
        w = layer.blobs[0]
        return int(w.shape[0] if layer.p("inner_product_param").transpose else w.shape[1])
    return int(np.prod(in_shapes[0][1:])) if in_shapes else 1


@_rule(ACCUMULATION, "pooling")
def _k_pooling(layer: Layer, in_shapes: Sequence[tuple[int, ...]]) -> int:
    from ...params import pool_geometry

    g = pool_geometry(layer)
    if g.method == "MAX":
        return 1
    if g.kernel is None:
        return int(np.prod(in_shapes[0][2:])) if in_shapes else 1
    return g.kernel[0] * g.kernel[1]


@_rule(ACCUMULATION, "bottoms")
def _k_bottoms(layer: Layer, in_shapes: Sequence[tuple[int, ...]]) -> int:
    return max(2, len(layer.bottoms))


@_rule(ACCUMULATION, "spp")
def _k_spp(layer: Layer, in_shapes: Sequence[tuple[int, ...]]) -> int:
    from ...params import spp_method

    if spp_method(layer) == "MAX":  # selection
        return 1
    return int(np.prod(in_shapes[0][2:])) if in_shapes else 8  # level 0 averages the whole image


@_rule(ACCUMULATION, "reduction")
def _k_reduction(layer: Layer, in_shapes: Sequence[tuple[int, ...]]) -> int:
    if not in_shapes:
        return 8
    from ...params import layer_axis

    ax = layer_axis(layer, "reduction_param", len(in_shapes[0]))
    return max(1, int(np.prod(in_shapes[0][ax:])))


@_rule(ACCUMULATION, "softmax")
def _k_softmax(layer: Layer, in_shapes: Sequence[tuple[int, ...]]) -> int:
    ax = layer.p("softmax_param").axis if layer.p("softmax_param").HasField("axis") else 1
    return int(in_shapes[0][ax]) if in_shapes and len(in_shapes[0]) > ax else 8


@_rule(ACCUMULATION, "lrn")
def _k_lrn(layer: Layer, in_shapes: Sequence[tuple[int, ...]]) -> int:
    from ...params import lrn_region

    within = lrn_region(layer) == "WITHIN_CHANNEL"
    return int(layer.p("lrn_param").local_size) ** (2 if within else 1) + 2


@_rule(ACCUMULATION, "normalize")
def _k_normalize(layer: Layer, in_shapes: Sequence[tuple[int, ...]]) -> int:
    """SSD's Normalize: the sum of squares runs over C*H*W (across_spatial, the default) or, per pixel, over C."""
    if not in_shapes:
        return 8
    shp = in_shapes[0]
    return max(1, int(np.prod(shp[1:]) if layer.p("norm_param").across_spatial or len(shp) < 2 else shp[1]))


@_rule(ACCUMULATION, "mvn")
def _k_mvn(layer: Layer, in_shapes: Sequence[tuple[int, ...]]) -> int:
    """The mean and variance run over C*H*W (across_channels) or, per channel, over H*W (the default)."""
    if not in_shapes:
        return 8
    shp = in_shapes[0]
    return max(1, int(np.prod(shp[1:] if layer.p("mvn_param").across_channels else shp[2:])))


def accumulation_length(layer: Layer, in_shapes: Sequence[tuple[int, ...]]) -> int:
    """K of the derived bound, by the rule the catalogue names for the layer's type."""
    from ...catalogue import traits

    return ACCUMULATION[traits(layer.kind).accumulation](layer, in_shapes)


def _bcast_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape((1, -1) + (1,) * (ndim - 2)) if ndim >= 2 else v


_IP_BLOCK_BYTES = 4 << 20


def _inner_product_sum_sq(layer: Layer, x: np.ndarray, dtype, op: Callable = np.square) -> np.ndarray | None:
    """``sum_k op(w_nk) op(x_k)`` of an InnerProduct (``op``: ``np.square``, or ``np.abs`` for the ceiling), the
    weight ``op``-ed a block of rows (at most 4 MiB) at a time into one work buffer: squaring VGG16's whole fc6 weight
    took a 392 MiB copy.  None when the weight does not fit."""
    ip = layer.p("inner_product_param")
    x = np.asarray(x)
    axis = ip.axis + x.ndim if ip.axis < 0 else ip.axis
    if not 0 <= axis < x.ndim:
        return None
    m = int(np.prod(x.shape[:axis]))
    k = int(np.prod(x.shape[axis:]))
    w = layer.blobs[0]
    if w.ndim != 2:
        return None
    n = int(w.shape[1] if ip.transpose else w.shape[0])
    if tuple(w.shape) != ((k, n) if ip.transpose else (n, k)):
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        x2 = op(x.reshape(m, k).astype(dtype))
        out = np.empty((m, n), dtype)
        step = max(1, _IP_BLOCK_BYTES // max(1, k * np.dtype(dtype).itemsize))
        buf = np.empty((min(step, n), k), dtype)
        for o in range(0, n, step):
            e = min(n, o + step)
            blk = buf[:e - o]
            np.copyto(blk, w[:, o:e].T if ip.transpose else w[o:e])
            op(blk, out=blk)
            np.matmul(x2, blk.T, out=out[:, o:e])
    return out.reshape(x.shape[:axis] + (n,))


# Convolutions with at most this many input channels per group (first layers: 3 BGR channels, or 1) get the
# partial-sum term of the magnitude (partial_sums_rms)
PARTIAL_SUM_CHANNELS = 4


def _row_increment(xp: np.ndarray, ch: int, wrow: np.ndarray, r0: int, out_hw: tuple[int, int],
                   stride: tuple[int, int], dw: int) -> np.ndarray:
    """``sum_kx w[o, kx] x[n, ch, r0 + oy*sh, kx*dw + ox*sw]`` for every (n, o, oy, ox): one kernel row of one input
    channel (``xp``: the padded input; ``wrow``: (C_out, kw))."""
    n, _, hp, wp = xp.shape
    (ho, wo), (sh, sw), kw = out_hw, stride, wrow.shape[1]
    if r0 + (ho - 1) * sh >= hp or (kw - 1) * dw + (wo - 1) * sw >= wp:
        raise ValueError("partial sums: the output does not fit the padded input")
    sn, _, s_h, s_w = xp.strides
    view = np.lib.stride_tricks.as_strided(xp[:, ch, r0:, :], (n, ho, wo, kw), (sn, s_h * sh, s_w * sw, s_w * dw),
                                           writeable=False)
    return np.tensordot(view, wrow.T, axes=([3], [0])).transpose(0, 3, 1, 2)


def partial_sums_rms(layer: Layer, ref_inputs: Sequence[np.ndarray], out_shape: tuple[int, ...]
                     ) -> np.ndarray | None:
    """``sqrt(2 mean_j S_j**2)`` of a convolution with few input channels per group, the larger of the two summation
    orders the backends use (Caffe's im2col GEMM and torch: channel, row, column; oneDNN, XNNPACK and XLA on NHWC:
    row, column, channel), with ``S_j`` the partial sums at every kernel row of every channel.  The random-walk
    model of the module docstring gives ``||w*x||_2`` for it; trained (smooth, mean-free) filters on Caffe-scale
    pixels (0..255 minus a mean: a large common part) drift instead, up to ``sqrt(K)`` times more.  None where the
    rule does not apply (more than PARTIAL_SUM_CHANNELS channels per group: their partial sums run over channels,
    whose weights do not drift)."""
    from ...catalogue import traits, window

    if window(layer.kind) != "conv" or traits(layer.kind).depthwise or not layer.blobs or len(ref_inputs) != 1 \
            or len(out_shape) != 4:
        return None
    from ...params import conv_geometry

    x, w = np.asarray(ref_inputs[0]), np.asarray(layer.blobs[0], np.float64)
    g = conv_geometry(layer)
    if x.ndim != 4 or w.ndim != 4 or w.shape[1] > PARTIAL_SUM_CHANNELS or g.group * w.shape[1] != x.shape[1] \
            or w.shape[0] != out_shape[1] or w.shape[0] % g.group:
        return None
    cout, cg, kh, _ = w.shape
    (ph, pw), (dh, dw), cpg = g.pad, g.dilation, cout // g.group
    xp = np.pad(np.asarray(x, np.float32), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.empty(out_shape, np.float64)
    orders = [[(c, r) for c in range(cg) for r in range(kh)], [(c, r) for r in range(kh) for c in range(cg)]]
    for gi in range(g.group):
        best = None
        for order in orders[:1 if cg == 1 else 2]:
            run = np.zeros((out_shape[0], cpg) + tuple(out_shape[2:]), np.float64)
            acc = np.zeros_like(run)
            for c, r in order:
                run += _row_increment(xp, gi * cg + c, w[gi * cpg:(gi + 1) * cpg, c, r, :], r * dh, out_shape[2:],
                                      g.stride, dw)
                acc += run * run
            best = acc if best is None else np.maximum(best, acc)
        out[:, gi * cpg:(gi + 1) * cpg] = np.sqrt(2.0 * best / (cg * kh))
    return out


def f32_sum_factor(layer: Layer, ref_inputs: Sequence[np.ndarray]) -> float | None:
    """The upward factor for ``||w*x||_2`` computed in float32: the layer's reference function on squared weights
    and squared float32 inputs sums ``K`` non-negative terms, each with at most 5 roundings (the input's cast to
    float32, two squares, the product; the weight is float32 already) and ``K - 1`` additions, so the float32 sum is
    at least ``(1 - gamma_{K+4})`` times the exact one (``gamma_n = n u / (1 - n u)``, Higham, Accuracy and Stability
    of Numerical Algorithms, 2002, section 3.1) and ``1 / sqrt(1 - gamma_{K+4})`` times its square root is never
    below the exact norm (nor, beyond float64's own rounding, below the norm computed in float64).  None when that
    factor is not small (``(K+4) u > 1e-2``) or ``K`` is unknown: the caller computes in float64 instead."""
    try:
        k = accumulation_length(layer, [tuple(np.shape(x)) for x in ref_inputs])
    except Exception:
        return None
    nu = (k + 4) * U32
    if nu > 1e-2:
        return None
    return 1.0 / math.sqrt(1.0 - nu / (1.0 - nu))


def _accumulated(layer: Layer, ref_inputs: Sequence[np.ndarray], y: np.ndarray) -> tuple[np.ndarray, str] | None:
    """``max(||w*x||_2, partial sums) + |y|``: the layer's reference function on squared weights and inputs, bias
    zero; the partial sums' RMS (:func:`partial_sums_rms`) where their drift can exceed the random walk."""
    fn = _reference_fn(layer)
    if fn is None:
        return None
    # a magnitude: float32 arithmetic is plenty (relative error ~1e-6 of a bound) and twice as fast
    # (float32 inputs, e.g. chained Keras values, are squared without a float64 copy first)
    up = f32_sum_factor(layer, ref_inputs)
    if up is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            x32 = [np.asarray(x, np.float32) for x in ref_inputs]
            x32[0] = np.square(x32[0])
            sq = fn(_squared_layer(layer, np.float32), x32, dtype=np.float32)[0]
            del x32
    if up is None or not np.all(np.isfinite(sq)):  # float32 overflow on huge activations: redo in float64
        xs = [np.asarray(x, np.float64) for x in ref_inputs]
        sq = fn(_squared_layer(layer, np.float64), [np.square(xs[0]), *xs[1:]], dtype=np.float64)[0]
        up = 1.0
    norm = np.sqrt(np.maximum(np.asarray(sq, np.float64), 0.0)).reshape(y.shape)
    if up != 1.0:
        norm *= up
    try:
        ps = partial_sums_rms(layer, ref_inputs, y.shape)
    except HarnessError:
        raise
    except Exception:
        ps = None
    if ps is not None:
        return np.maximum(norm, ps) + y, "max(||w*x||_2, rms partial sums) + |y|"
    return norm + y, "||w*x||_2 + |y|"


def absolute_sum(layer: Layer, ref_inputs: Sequence[np.ndarray], y: np.ndarray) -> np.ndarray | None:
    """``sum_k |w_k| |x_k| + |b|`` per output element of a layer whose catalogue magnitude rule accumulates
    (convolution, deconvolution, InnerProduct, AVE pooling): the reference function on ``|w|``, ``|x|`` and ``|b|``,
    in float32 (a sum of non-negative terms: within ``gamma_K`` of itself, allowed for by :func:`ceiling`).  None
    for the other rules (their magnitude ``m_i`` is a sum of absolute values already)."""
    from ...catalogue import traits

    rule = traits(layer.kind).magnitude
    if rule not in ("accumulate", "inner_product") and not (rule == "pooling" and _pool_method(layer) == "AVE"):
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        if rule == "inner_product" and len(ref_inputs) == 1 and layer.blobs:
            got = _inner_product_sum_sq(layer, ref_inputs[0], np.float64, np.abs)
            if got is not None and got.size == y.size:
                if len(layer.blobs) > 1 and layer.p("inner_product_param").bias_term:
                    got = got + np.abs(np.asarray(layer.blobs[1], np.float64)).reshape(-1)
                return got.reshape(y.shape)
        fn = _reference_fn(layer)
        if fn is None:
            return None
        xs = [np.abs(np.asarray(x, np.float32)) for x in ref_inputs[:1]] + [np.asarray(x) for x in ref_inputs[1:]]
        got = fn(_squared_layer(layer, np.float32, np.abs, np.abs), xs, dtype=np.float32)[0]
    got = np.asarray(got, np.float64)
    return got.reshape(y.shape) if got.size == y.size and np.all(np.isfinite(got)) else None


@_rule(MAGNITUDE, "accumulate")
def _m_accumulate(layer, xs, y, ref_inputs):
    return _accumulated(layer, ref_inputs, y)


@_rule(MAGNITUDE, "inner_product")
def _m_inner_product(layer, xs, y, ref_inputs):
    """``sum_k (w_nk x_k)**2`` by row blocks of the weight (no squared copy of VGG's fc6)."""
    if len(ref_inputs) == 1 and layer.blobs:
        up = f32_sum_factor(layer, ref_inputs)
        sq = _inner_product_sum_sq(layer, ref_inputs[0], np.float32) if up is not None else None
        if up is None or (sq is not None and not np.all(np.isfinite(sq))):  # float32 overflow on huge activations
            sq, up = _inner_product_sum_sq(layer, ref_inputs[0], np.float64), 1.0
        if sq is not None and sq.size == y.size:
            norm = np.sqrt(np.maximum(np.asarray(sq, np.float64), 0.0)).reshape(y.shape)
            return norm * up + y, "||w*x||_2 + |y|"
    return _accumulated(layer, ref_inputs, y)


@_rule(MAGNITUDE, "pooling")
def _m_pooling(layer, xs, y, ref_inputs):
    """AVE pooling accumulates its window; MAX (and STOCHASTIC at TEST, a weighted pick) selects."""
    if _pool_method(layer) == "AVE":
        try:
            got = _accumulated(layer, ref_inputs, y)
        except HarnessError:
            raise
        except Exception:
            got = None
        if got is not None:
            return got
    return y, "|y|"


@_rule(MAGNITUDE, "selection")
def _m_selection(layer, xs, y, ref_inputs):
    return y, "|y|"


@_rule(MAGNITUDE, "elementwise")
def _m_elementwise(layer, xs, y, ref_inputs):
    """``|y| + |x| + 1 + kappa``: ``kappa`` is the argument's float32 rounding times the function's condition
    (the table "Conditioning of the elementwise functions" in the module docstring)."""
    if not xs or xs[0].shape != y.shape:
        return None
    x = xs[0]
    extra = 1.0
    if layer.kind == "ELU":  # not a trait: ELU's own parameter (alpha) scales its condition number
        extra = max(1.0, abs(layer.p("elu_param").alpha))
    cond = CONDITION.get(layer.kind)
    kappa = 0.0
    if cond is not None:
        with np.errstate(all="ignore"):
            kappa = np.asarray(cond(layer, x, y), np.float64)
        kappa = np.where(np.isfinite(kappa), kappa, 0.0)
    return y + np.abs(x) + extra + kappa, "|y|+|x|+1+kappa"


def _affine_argument(x: np.ndarray, scale: float, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """``a = shift + scale x`` and its float32 rounding ``w`` in units of u: the input, the product, the sum."""
    sx = float(scale) * x
    a = sx + float(shift)
    return a, 2.0 * np.abs(sx) + np.abs(a)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * np.tanh(0.5 * x) + 0.5


def _cond_power(layer, x, y):
    """``|p y| w / |a|`` (= ``|f'(a)| w``) plus ``|y p ln|a||`` (pow as exp(p log a)); at ``a = 0`` the output of an
    argument of rounding size, ``(u w)^p / u``."""
    pp = layer.p("power_param")
    p = float(pp.power)
    if p * float(pp.scale) == 0 or p == 1 and float(pp.shift) == 0:
        return 0.0  # a constant, or a plain product scale * x (rounded once, within |y|)
    a, w = _affine_argument(x, pp.scale, pp.shift)
    aa = np.abs(a)
    at_pole = np.where(aa > 0, 0.0, (U32 * w) ** p / U32) if p > 0 else 0.0
    safe = np.where(aa > 0, aa, 1.0)
    return np.where(aa > 0, abs(p) * y * w / safe + y * np.abs(p * np.log(safe)), at_pole)


def _cond_exp(layer, x, y):
    """``|y| 3|b|``: ``b = inner x`` carries the input's, inner's and the product's rounding; ``exp' = exp``."""
    ep = layer.p("exp_param")
    log_base = 1.0 if ep.base == -1 else math.log(ep.base)
    return y * 3.0 * np.abs(log_base * float(ep.scale) * x)


def _cond_log(layer, x, y):
    """``w / (|a| |ln base|)``: ``ln' (a) = 1 / a``."""
    lp = layer.p("log_param")
    a, w = _affine_argument(x, lp.scale, lp.shift)
    base_scale = 1.0 if lp.base == -1 else 1.0 / abs(math.log(lp.base))
    return base_scale * w / np.abs(a)


def _cond_elu(layer, x, y):
    alpha = abs(float(layer.p("elu_param").alpha))
    xn = np.minimum(x, 0.0)
    return alpha * np.exp(xn) * np.abs(xn)


def _cond_swish(layer, x, y):
    b = float(layer.p("swish_param").beta) * x
    return y * (1.0 + 2.0 * (1.0 - _sigmoid(b)) * np.abs(b))


CONDITION: dict[str, Callable[[Layer, np.ndarray, np.ndarray], Any]] = {
    "Power": _cond_power,
    "Exp": _cond_exp,
    "Log": _cond_log,
    "Sigmoid": lambda layer, x, y: y * (1.0 - y) * np.abs(x),
    "TanH": lambda layer, x, y: (1.0 - y * y) * np.abs(x),
    "ELU": _cond_elu,
    "BNLL": lambda layer, x, y: _sigmoid(x) * np.abs(x),
    "Swish": _cond_swish,
}


@_rule(MAGNITUDE, "generated")
def _m_generated(layer, xs, y, ref_inputs):
    return y + float(np.max(y, initial=0.0)), "|y|+max|y|"


@_rule(MAGNITUDE, "batchnorm")
def _m_batchnorm(layer, xs, y, ref_inputs):
    if len(layer.blobs) < 3 or not xs:
        return None
    f = float(layer.blobs[2].reshape(-1)[0])
    f = 0.0 if f == 0 else 1.0 / f
    mean = np.asarray(layer.blobs[0], np.float64).reshape(-1) * f
    var = np.asarray(layer.blobs[1], np.float64).reshape(-1) * f
    s = 1.0 / np.sqrt(var + float(layer.p("batch_norm_param").eps))
    nd = xs[0].ndim
    return (np.abs(xs[0]) + np.abs(_bcast_channel(mean, nd))) * _bcast_channel(s, nd) + y, \
        "(|x|+|mean|)/sqrt(var+eps)"


@_rule(MAGNITUDE, "scale")
def _m_scale(layer, xs, y, ref_inputs):
    if not xs or xs[0].shape != y.shape:
        return None
    gam = (xs[1] if len(xs) > 1 else (np.asarray(layer.blobs[0], np.float64) if layer.blobs else None))
    # not a trait: Scale and Bias share the magnitude rule "scale"; only Scale's blob is a multiplier
    if layer.kind == "Scale" and gam is not None and gam.ndim <= 1 and xs[0].ndim >= 2 and \
            gam.size == xs[0].shape[1]:
        return np.abs(xs[0] * _bcast_channel(gam.reshape(-1), xs[0].ndim)) + y, "|x*gamma|+|y|"
    return np.abs(xs[0]) + y, "|x|+|y|"


@_rule(MAGNITUDE, "axpy")
def _m_axpy(layer, xs, y, ref_inputs):
    """a * x + y: the product and the addend may cancel."""
    if len(xs) != 3:
        return None
    a = xs[0].reshape(xs[0].shape + (1,) * (xs[1].ndim - xs[0].ndim))
    return np.abs(a * xs[1]) + np.abs(xs[2]) + y, "|a*x|+|y_in|+|y|"


@_rule(MAGNITUDE, "spp")
def _m_spp(layer, xs, y, ref_inputs):
    """AVE levels average whole bins: the partial sums are bounded by the bin's largest |x|."""
    if not xs:
        return None
    return y + float(np.max(np.abs(xs[0]), initial=0.0)), "|y|+max|x|"


@_rule(MAGNITUDE, "reduction")
def _m_reduction(layer, xs, y, ref_inputs):
    if not xs:
        return None
    from ...params import layer_axis, reduction_operation

    rp = layer.p("reduction_param")
    x0 = xs[0]
    ax = layer_axis(layer, "reduction_param", x0.ndim)
    flat = x0.reshape(int(np.prod(x0.shape[:ax])), -1)
    op = reduction_operation(layer)
    if op in ("SUM", "MEAN"):  # terms of both signs cancel; bound by the sum of |x|
        r = np.abs(flat).sum(axis=1) * abs(rp.coeff)
        if op == "MEAN":
            r = r / max(1, flat.shape[1])
        return r.reshape(y.shape) + y, "|coeff|*reduce(|x|)+|y|"
    return y, "|y|"


@_rule(MAGNITUDE, "eltwise")
def _m_eltwise(layer, xs, y, ref_inputs):
    if not all(x.shape == y.shape for x in xs):
        return None
    from ...params import eltwise_operation

    ep = layer.p("eltwise_param")
    op = eltwise_operation(layer)
    if op == "SUM":
        coeffs = list(ep.coeff) or [1.0] * len(xs)
        return sum(abs(c) * np.abs(x) for c, x in zip(coeffs, xs)) + y, "sum|coeff*x|+|y|"
    return y * len(xs) if op == "PROD" else y, "|y|"


@_rule(MAGNITUDE, "normalized")
def _m_normalized(layer, xs, y, ref_inputs):
    """Softmax / LRN / Normalize: ``|y| (1 + |x|)``.  Softmax adds ``|y| sum_j y_j |x_j|`` over its axis: the
    float32 rounding ``dx_j ~ u |x_j|`` of every logit moves every output, ``dy_i = y_i (dx_i - sum_j y_j dx_j)``
    (a large logit elsewhere shifts a probability whose own logit is small)."""
    if not xs or xs[0].shape != y.shape:
        return None
    ax = np.abs(xs[0])
    # not a trait: of the types sharing the magnitude rule "normalized", only Softmax sums along its axis
    if layer.kind == "Softmax" and y.ndim > 1:
        axis = int(layer.p("softmax_param").axis) % y.ndim
        return y * (1.0 + ax + (y * ax).sum(axis=axis, keepdims=True)), "|y|(1+|x|+sum_axis y|x|)"
    return y * (1.0 + ax), "|y|(1+|x|)"


@_rule(MAGNITUDE, "mvn")
def _m_mvn(layer, xs, y, ref_inputs):
    """Cancellation in x - mean: ``(|x| + |mean|) / std + |y|``."""
    if not (xs and xs[0].shape == y.shape and xs[0].ndim >= 3):
        return _m_normalized(layer, xs, y, ref_inputs)
    mp = layer.p("mvn_param")
    axes = tuple(range(1, xs[0].ndim)) if mp.across_channels else tuple(range(2, xs[0].ndim))
    mu = xs[0].mean(axis=axes, keepdims=True)
    sd = np.sqrt(((xs[0] - mu) ** 2).mean(axis=axes, keepdims=True)) + float(mp.eps) \
        if mp.normalize_variance else 1.0
    return (np.abs(xs[0]) + np.abs(mu)) / sd + y, "(|x|+|mean|)/std+|y|"


@_rule(MAGNITUDE, "generic")
def _m_generic(layer, xs, y, ref_inputs):
    """A few operations on O(1) terms (a lookup plus a bias): ``|y| + |x|`` (same shape) or ``|y|``."""
    return None


def magnitude(layer: Layer, ref_inputs: Sequence[np.ndarray], ref_output: np.ndarray) -> tuple[np.ndarray, str]:
    """The per-element magnitude ``m_i`` of the table in the module docstring (float64, the output's shape), by the
    rule the catalogue names for the layer's type; a rule that does not apply to these inputs (or fails on them)
    gives the generic ``|y| + |x|`` (same shape) or ``|y|``."""
    from ...catalogue import traits

    y = np.abs(np.asarray(ref_output, np.float64))
    rule = MAGNITUDE[traits(layer.kind).magnitude]
    lazy = rule in (_m_accumulate, _m_inner_product, _m_pooling)
    xs = list(ref_inputs) if lazy else [np.asarray(x, np.float64) for x in ref_inputs]
    try:
        got = rule(layer, xs, y, ref_inputs)
    except HarnessError:
        raise
    except Exception:
        got = None
    if got is not None:
        return got
    x0 = np.asarray(ref_inputs[0], np.float64) if ref_inputs else None
    if x0 is not None and x0.shape == y.shape:
        return y + np.abs(x0), "|y|+|x|"
    return y, "|y|"


def _pool_method(layer: Layer) -> str:
    from ...params import pool_geometry

    return pool_geometry(layer).method


# the element count at which c was measured (10^5..10^6 elements per blob); beyond it the multiplier grows as the
# expected largest of n samples does (count_factor)
COUNT_MEASURED = 10 ** 6


@contextmanager
def issue19_bound():
    """The statistical bound as it was before issue 25 (no partial-sum term, no element-count factor), for the
    margin benchmark and its regression tests to measure the difference on the same data."""
    global PARTIAL_SUM_CHANNELS, COUNT_MEASURED
    saved = PARTIAL_SUM_CHANNELS, COUNT_MEASURED
    PARTIAL_SUM_CHANNELS, COUNT_MEASURED = 0, 10 ** 300
    try:
        yield
    finally:
        PARTIAL_SUM_CHANNELS, COUNT_MEASURED = saved


def count_factor(n: int) -> float:
    """``sqrt(ln n / ln 10^6)`` (at least 1): the largest of ``n`` deviations grows as ``sqrt(2 ln n)`` (Gaussian
    tails), and ``c`` was measured as a multiple of the largest over 10^6 elements; a blob of 10^8 elements (a large
    batch) gets 1.15 times the bound, so that a one-in-a-million event does not fail it."""
    return math.sqrt(max(1.0, math.log(max(n, 2)) / math.log(COUNT_MEASURED)))


def gamma(n: int) -> float:
    """``gamma_n = n u / (1 - n u)`` (Higham, Accuracy and Stability of Numerical Algorithms, Lemma 3.1)."""
    nu = n * U32
    return nu / (1.0 - nu) if nu < 1 else math.inf


def derived_bound(layer: Layer, ref_inputs: Sequence[np.ndarray], ref_output: np.ndarray, *,
                  c: float = C_DEFAULT, ceiling: bool = False) -> Bound:
    """``c * u * sqrt(K + 1) * m_i`` for every output element, times :func:`count_factor` of the output's size (see
    the module docstring); ``ceiling``: the worst-case bound of :func:`ceiling_values` instead."""
    shapes = [tuple(np.shape(x)) for x in ref_inputs]
    k = accumulation_length(layer, shapes)
    m, rule = magnitude(layer, ref_inputs, ref_output)
    f = count_factor(int(np.size(ref_output)))
    vals = c * f * U32 * math.sqrt(k + 1) * m
    # Tiny absolute floor: denormal-range values are flushed to zero by many float32 kernels.
    vals = np.maximum(vals, 1e-35)
    desc = f"{c:g}*u32*sqrt({k}+1)*({rule})" + (f"*{f:.3g} ({np.size(ref_output)} elements)" if f > 1 else "")
    if not ceiling:
        return Bound(vals, k, desc)
    return ceiling_values(layer, ref_inputs, ref_output, k, vals)


def ceiling_values(layer: Layer, ref_inputs: Sequence[np.ndarray], ref_output: np.ndarray, k: int,
                   estimate: np.ndarray) -> Bound:
    """The rigorous float32 ceiling: ``gamma_{K+3} (sum_k |w_k||x_k| + |b|)`` (K products and additions, the bias,
    the float32 rounding of the input and of the weight), which holds for every summation order, blocked or
    pairwise sums and FMA; ``(1 + 2 gamma_K)`` more for the float32 evaluation of the sum of absolute values, and
    ``K * 2**-126`` for denormal products flushed to zero.  Never below the statistical ``estimate``: for layers
    without a long accumulation (``m_i`` is already a sum of absolute values, ``K`` small) that estimate is the
    ceiling."""
    a = absolute_sum(layer, ref_inputs, np.asarray(ref_output))
    if a is None:
        return Bound(estimate, k, "the statistical bound (no long accumulation)")
    gk = gamma(k + 3)
    vals = np.maximum(gk * (1.0 + 2.0 * gamma(k)) * a + k * 2.0 ** -126, estimate)
    return Bound(vals, k, f"gamma_{k + 3}*(sum|w||x|+|b|)")
