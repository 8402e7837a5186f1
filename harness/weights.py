"""Seeded random weights for any net, scaled so that activations stay O(1) through the whole depth.

:func:`random_weights(net, seed) <random_weights>` returns a new :class:`~harness.net.Net` whose layers carry float32
blobs of exactly the shapes Caffe expects (:func:`harness.shapes.param_shapes`).  Nothing is run: every blob's scale
is chosen from an *estimate* of the per-channel mean and second moment of each activation, propagated through the net
layer by layer (net inputs are assumed standardised: mean 0, ``E[x^2] = 1``):

* Convolution / depthwise / Deconvolution / InnerProduct: zero-mean uniform weights, each output channel's filter rescaled so
  that the channel's estimated ``E[y^2]`` is 1 given the input channels' means and variances (He/LeCun scaling that
  also accounts for zero padding at the borders and for the non-zero mean after a ReLU); bias ``N(0, 0.1^2)``.
* BatchNorm: running mean within 0.1 standard deviations of the estimated channel mean, running variance the
  estimated variance times ``U(0.5, 2)`` (positive), and a moving-average factor blob ``U(0.5, 2)`` (never 0 or 1, so
  a converter that ignores it is caught) with mean and variance stored pre-multiplied by it, as Caffe stores them
  (``mean = blob0 / blob2``).
* Scale: gamma ``U(0.5, 1.5)``, bias ``N(0, 0.1^2)``; Bias ``N(0, 0.1^2 E[x^2])``.
* PReLU slopes ``U(0.05, 0.45)``; Normalize scale ``U(0.5, 1.5) * sqrt(C)`` (``sqrt(C*H*W)`` across_spatial; SSD's
  usual 20 on 512 channels is the same order); Embed ``N(0, 1)``.

ReLU-family layers map each channel's (mean, E[x^2]) with the Gaussian formulas, BatchNorm/Scale with their own
values, so the estimate does not drift through depth.  Residual sums still grow (linearly), as in real ResNets.

``calibrate=True`` replaces the estimate by measurement: one reference forward pass on a seeded image fixes each
linear layer's output scale and each BatchNorm's running statistics (LSUV-style), so any architecture stays O(1).

Deterministic: every layer draws from ``numpy.random.default_rng([seed, crc32(layer name)])``, so a layer's weights
depend only on the seed, its name, its shapes and the estimated moments of its input.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import replace
from typing import Any, Callable, Mapping

import numpy as np

from .catalogue import canonical_type, is_source
from .errors import HarnessError
from .net import Layer, Net
from .params import conv_geometry, eltwise_operation, pool_method, relu_form
from .shapes import NetShapes, count, infer_shapes

# Estimated per-channel (mean, E[x^2]) of a blob: two float64 arrays, of length C (= shape[1]) or 1 (uniform).
Moment = tuple[np.ndarray, np.ndarray]

_ONE: Moment = (np.zeros(1), np.ones(1))


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))])


def _normal(rng: np.random.Generator, shape, std: float) -> np.ndarray:
    return (rng.standard_normal(shape) * std).astype(np.float32)


def _unit(rng: np.random.Generator, shape) -> np.ndarray:
    """Zero-mean, unit-variance float32 values: ``U(-sqrt(3), sqrt(3))`` (uniform draws are several times faster
    than Gaussian ones, which matters for the 100M-value fully connected layers of VGG16)."""
    w = rng.random(shape, dtype=np.float32)
    w -= np.float32(0.5)
    w *= np.float32(2.0 * math.sqrt(3.0))
    return w


def _uniform(rng: np.random.Generator, shape, lo: float, hi: float) -> np.ndarray:
    return rng.uniform(lo, hi, shape).astype(np.float32)


def _chan(mom: Moment, c: int) -> Moment:
    """Broadcast a moment to ``c`` channels (a length-mismatched one is averaged first)."""
    mu, m = mom
    if len(mu) != c:
        mu, m = np.full(c, mu.mean()), np.full(c, m.mean())
    return mu, m


def _scalar(mom: Moment) -> Moment:
    return np.array([mom[0].mean()]), np.array([mom[1].mean()])


def _var(mom: Moment) -> np.ndarray:
    return np.maximum(mom[1] - mom[0] ** 2, 1e-6 * np.maximum(mom[1], 1e-12))


def _tap_patterns(size: int, kernel: int, stride: int, pad: int, dilation: int) -> list[tuple[np.ndarray, float]]:
    """Along one axis: the distinct sets of kernel taps that land inside the input (as 0/1 masks), each with the
    fraction of output positions that see it."""
    out = (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1
    counts: dict[tuple[int, ...], int] = {}
    for o in range(max(out, 1)):
        start = o * stride - pad
        key = tuple(int(0 <= start + t * dilation < size) for t in range(kernel))
        counts[key] = counts.get(key, 0) + 1
    total = sum(counts.values())
    return [(np.array(k, dtype=float), n / total) for k, n in counts.items()]


_erf = np.vectorize(math.erf, otypes=[float])


def _relu_moments(mom: Moment, slope=0.0, slope2=0.0) -> Moment:
    """Per channel, E[y] and E[y^2] of ``y = max(x,0) + a*min(x,0)`` for Gaussian ``x`` (``slope`` = E[a],
    ``slope2`` = E[a^2], scalars or per channel)::

        s = sqrt(var), t = mu / s
        E[relu(x)]   = mu*Phi(t) + s*phi(t)
        E[relu(x)^2] = (mu^2 + s^2)*Phi(t) + mu*s*phi(t)
    """
    mu, m = mom
    var = _var(mom)
    sd = np.sqrt(var)
    t = mu / sd
    cdf = 0.5 * (1.0 + _erf(t / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)
    pos1 = mu * cdf + sd * pdf
    pos2 = (mu * mu + var) * cdf + mu * sd * pdf
    neg1 = pos1 - mu  # E[min(x, 0)]
    neg2 = np.maximum(m - pos2, 0.0)  # E[min(x, 0)^2]
    return pos1 + np.asarray(slope) * neg1, pos2 + np.asarray(slope2) * neg2


def _with_bias(mean: np.ndarray, var: np.ndarray, bias: np.ndarray | None) -> Moment:
    if bias is not None:
        mean = mean + bias.astype(np.float64)
    return mean, var + mean**2


def _group_split(lay: Layer, c_in: int) -> tuple:
    g = conv_geometry(lay)
    return g, g.num_output, c_in // g.group, g.num_output // g.group


def _deconv(lay: Layer, bshapes, pshapes, mom: Moment, rng) -> tuple[list, Moment]:
    """Deconvolution: w is (C_in, C_out/g, kh, kw).  Output channel o of group gi receives w[c, o_local] from the
    group's input channels c, over about kh*kw/(sh*sw) taps each: the mean and second-moment weights are sums /
    (sh*sw)."""
    c_in = bshapes[0][1]
    mu_in, var_in = _chan(mom, c_in)[0], _var(_chan(mom, c_in))
    w = _unit(rng, pshapes[0])
    bias = _normal(rng, pshapes[1], 0.1) if len(pshapes) > 1 else None
    g, c_out, cg_in, cg_out = _group_split(lay, c_in)
    density = 1.0 / (g.stride[0] * g.stride[1])
    mean_coef = np.zeros((c_out, c_in))
    var_coef = np.zeros((c_out, c_in))
    for gi in range(g.group):
        blk = w[gi * cg_in:(gi + 1) * cg_in]  # (cg_in, cg_out, kh, kw)
        mean_coef[gi * cg_out:(gi + 1) * cg_out, gi * cg_in:(gi + 1) * cg_in] = blk.sum(axis=(2, 3)).T * density
        var_coef[gi * cg_out:(gi + 1) * cg_out, gi * cg_in:(gi + 1) * cg_in] = (blk**2).sum(axis=(2, 3)).T * density
    mean = mean_coef @ mu_in
    var = var_coef @ var_in
    scale = 1.0 / np.sqrt(np.maximum(mean**2 + var, 1e-24))  # per output channel = axis 1 of w
    w = _scale_deconv(lay, w, scale)
    return [w] + ([bias] if bias is not None else []), _with_bias(mean * scale, var * scale**2, bias)


def _conv(lay: Layer, bshapes, pshapes, mom: Moment, rng) -> tuple[list, Moment]:
    """Convolution: w is (C_out, C_in/g, kh, kw).  Zero padding: a border output sees only the taps that land
    inside the input, so its mean is a partial sum of the filter; average the mean, its square and the variance
    over positions."""
    n, c_in, h, wd = bshapes[0]
    mu_in, var_in = _chan(mom, c_in)[0], _var(_chan(mom, c_in))
    w = _unit(rng, pshapes[0])
    bias = _normal(rng, pshapes[1], 0.1) if len(pshapes) > 1 else None
    g, c_out, cg_in, cg_out = _group_split(lay, c_in)
    grp = np.arange(c_out) // cg_out
    cols = grp[:, None] * cg_in + np.arange(cg_in)[None, :]  # input channel of w[o, j]
    a = np.einsum("ojhw,oj->ohw", w, mu_in[cols])  # mean contribution per tap
    b = np.einsum("ojhw,oj->ohw", w**2, var_in[cols])  # variance contribution per tap
    rows_p = _tap_patterns(h, g.kernel[0], g.stride[0], g.pad[0], g.dilation[0])
    cols_p = _tap_patterns(wd, g.kernel[1], g.stride[1], g.pad[1], g.dilation[1])
    e_mean = np.zeros(c_out)
    e_mean2 = np.zeros(c_out)
    for rmask, rw in rows_p:
        for cmask, cw in cols_p:
            mo = np.einsum("ohw,h,w->o", a, rmask, cmask)
            e_mean += rw * cw * mo
            e_mean2 += rw * cw * mo**2
    rfrac = sum(rw * rmask for rmask, rw in rows_p)
    cfrac = sum(cw * cmask for cmask, cw in cols_p)
    e_var = np.einsum("ohw,h,w->o", b, rfrac, cfrac)
    scale = 1.0 / np.sqrt(np.maximum(e_mean2 + e_var, 1e-24))
    w *= scale.astype(np.float32)[:, None, None, None]
    var = (e_mean2 - e_mean**2 + e_var) * scale**2  # spread of the mean over positions counts as variance
    return [w.astype(np.float32)] + ([bias] if bias is not None else []), _with_bias(e_mean * scale, var, bias)


def _inner_product(lay: Layer, bshapes, pshapes, mom: Moment, rng) -> tuple[list, Moment]:
    ip = lay.p("inner_product_param")
    b = bshapes[0]
    axis = ip.axis if ip.axis >= 0 else ip.axis + len(b)
    k = count(b, axis)
    # per-input-element moments: channel c's values fill count(2..) consecutive entries when flattening from axis 1
    if axis == 1 and len(b) >= 2 and len(mom[0]) == b[1]:
        rep = count(b, 2)
        mu_k, var_k = np.repeat(mom[0], rep), np.repeat(_var(mom), rep)
    else:
        mu_k, var_k = np.full(k, mom[0].mean()), np.full(k, _var(mom).mean())
    w = _unit(rng, pshapes[0])  # float32 throughout: fc6 of VGG16 is 103M values
    wn = w.T if ip.transpose else w  # (N, K) view
    n_out = wn.shape[0]
    mean = np.empty(n_out)
    var = np.empty(n_out)
    mu32, var32 = mu_k.astype(np.float32), var_k.astype(np.float32)
    step = max(1, (1 << 22) // max(k, 1))  # rows per chunk (about 16 MB of temporaries)
    for r0 in range(0, n_out, step):
        blk = wn[r0:r0 + step]
        mean[r0:r0 + step] = blk @ mu32
        var[r0:r0 + step] = np.einsum("ij,ij,j->i", blk, blk, var32)
    scale = 1.0 / np.sqrt(np.maximum(mean**2 + var, 1e-24))
    wn *= scale.astype(np.float32)[:, None]
    mean, var = mean * scale, var * scale**2
    bias = _normal(rng, pshapes[1], 0.1) if len(pshapes) > 1 else None
    return [np.ascontiguousarray(w)] + ([bias] if bias is not None else []), _with_bias(mean, var, bias)




def _batchnorm(lay: Layer, bshapes, pshapes, mom: Moment, rng) -> tuple[list, Moment]:
    cs = pshapes[0][0]
    mu_in, _ = _chan(mom, cs)
    var_in = _var(_chan(mom, cs))
    factor = float(rng.uniform(0.5, 2.0))
    mean = mu_in + rng.standard_normal(cs) * 0.1 * np.sqrt(var_in)
    var = var_in * rng.uniform(0.5, 2.0, cs)
    blobs = [(mean * factor).astype(np.float32), (var * factor).astype(np.float32),
             np.full(pshapes[2], factor, np.float32)]
    for s in pshapes[3:]:  # NVCaffe scale_bias: scale, bias
        blobs.append(_uniform(rng, s, 0.5, 1.5) if len(blobs) == 3 else _normal(rng, s, 0.1))
    mu_out = (mu_in - mean) / np.sqrt(var)
    return blobs, (mu_out, (var_in + (mu_in - mean) ** 2) / var)


def _scale(lay: Layer, bshapes, pshapes, mom: Moment, rng) -> tuple[list, Moment]:
    c = bshapes[0][1] if len(bshapes[0]) >= 2 else 1
    blobs = []
    shapes = list(pshapes)
    if len(bshapes) == 1:
        blobs.append(_uniform(rng, shapes.pop(0), 0.5, 1.5))
    if shapes:
        blobs.append(_normal(rng, shapes[0], 0.1))
    if len(bshapes) != 1:
        return blobs, _scalar(mom)
    gam = blobs[0].astype(np.float64).ravel()
    bet = blobs[1].astype(np.float64).ravel() if len(blobs) > 1 else np.zeros_like(gam)
    if gam.size == c and pshapes[0] == (c,) and lay.p("scale_param").axis in (1, 1 - len(bshapes[0])):
        mu, m = _chan(mom, c)
    else:  # another axis: average
        mu, m = _scalar(mom)
        gam, bet = np.array([gam.mean()]), np.array([bet.mean()])
        m = m * (blobs[0].astype(np.float64) ** 2).mean() / max(gam[0] ** 2, 1e-12)
    return blobs, (gam * mu + bet, gam**2 * m + 2 * gam * bet * mu + bet**2)


def _bias(lay: Layer, bshapes, pshapes, mom: Moment, rng) -> tuple[list, Moment]:
    mu, m = _scalar(mom)
    blobs = [_normal(rng, s, 0.1 * math.sqrt(float(m[0]))) for s in pshapes]
    bb = blobs[0].astype(np.float64) if blobs else np.zeros(1)
    return blobs, (mu + bb.mean(), m + 2 * mu * bb.mean() + (bb**2).mean())


def _prelu(lay: Layer, bshapes, pshapes, mom: Moment, rng) -> tuple[list, Moment]:
    c = bshapes[0][1] if len(bshapes[0]) >= 2 else 1
    a = _uniform(rng, pshapes[0], 0.05, 0.45)
    a64 = a.astype(np.float64).ravel()
    if a64.size == c:
        return [a], _relu_moments(_chan(mom, c), a64, a64**2)
    return [a], _relu_moments(mom, float(a64.mean()), float((a64**2).mean()))


def _normalize(lay: Layer, bshapes, pshapes, mom: Moment, rng) -> tuple[list, Moment]:
    b = bshapes[0]
    per = count(b, 1) if lay.p("norm_param").across_spatial else b[1]
    return [_uniform(rng, pshapes[0], 0.5, 1.5) * np.float32(math.sqrt(per))], _ONE


def _embed(lay: Layer, bshapes, pshapes, mom: Moment, rng) -> tuple[list, Moment]:
    blobs = [_normal(rng, pshapes[0], 1.0)]
    if len(pshapes) > 1:
        blobs.append(_normal(rng, pshapes[1], 0.1))
    return blobs, _ONE


# Blobs for one layer and the estimated per-channel (mean, E[x^2]) of its top, per type with learned blobs
# (harness.catalogue: weighted "yes" or "one_bottom"); tests/test_registry.py names a type without its rule.
SEED_BLOBS: dict[str, Callable[..., tuple[list, Moment]]] = {
    "Convolution": _conv, "ConvolutionDepthwise": _conv, "Deconvolution": _deconv, "InnerProduct": _inner_product,
    "BatchNorm": _batchnorm, "Scale": _scale, "Bias": _bias, "PReLU": _prelu, "Normalize": _normalize,
    "Embed": _embed,
}


def _rule(table: Mapping[str, Any], what: str, lay: Layer) -> Any:
    try:
        return table[canonical_type(lay.kind)]
    except KeyError:
        raise HarnessError(f"{lay.type} {lay.name!r}: harness/weights.py {what} has no seeding rule for Caffe type "
                           f"{lay.type!r}; add one") from None


def _max_order_stats(n: int) -> tuple[float, float]:
    """Mean and variance of the maximum of ``n`` independent standard normals (numerical integration of
    ``n * phi(x) * Phi(x)^(n-1)``); MAX pooling's window raises the mean by about ``e_n`` standard deviations."""
    if n <= 1:
        return 0.0, 1.0
    x = np.linspace(-8.0, 8.0, 4001)
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    cdf = 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))
    dens = n * pdf * cdf ** (n - 1)
    dx = x[1] - x[0]
    e = float((x * dens).sum() * dx)
    return e, float((x * x * dens).sum() * dx - e * e)



# Estimated per-channel (mean, E[x^2]) of a weightless layer's first top (enough to pick scales), per type without
# learned blobs (and Scale/Bias with a second bottom): moms = the bottoms' moments (mom: the first's).


def _relu_like(lay: Layer, moms: list[Moment], mom: Moment, bshapes) -> Moment:
    slope = relu_form(lay)[0]
    return _relu_moments(mom, slope, slope * slope)


def _softmax(lay: Layer, moms: list[Moment], mom: Moment, bshapes) -> Moment:
    ax = lay.p("softmax_param").axis
    n = bshapes[0][ax] if bshapes and -len(bshapes[0]) <= ax < len(bshapes[0]) else 1
    return np.array([1.0 / max(n, 1)]), np.array([1.0 / max(n, 1)])


def _pooling(lay: Layer, moms: list[Moment], mom: Moment, bshapes) -> Moment:
    if pool_method(lay) != "MAX" or not bshapes or len(bshapes[0]) != 4:
        return mom
    pp = lay.p("pooling_param")
    if pp.global_pooling:
        n = bshapes[0][2] * bshapes[0][3]
    else:
        kh = pp.kernel_h if pp.HasField("kernel_h") else pp.kernel_size
        kw = pp.kernel_w if pp.HasField("kernel_w") else pp.kernel_size
        n = max(int(kh) * int(kw), 1)
    e_n, v_n = _max_order_stats(n)
    mu, m = mom
    sd = np.sqrt(_var(mom))
    mu_out = mu + sd * e_n
    return mu_out, mu_out**2 + sd**2 * v_n


def _eltwise(lay: Layer, moms: list[Moment], mom: Moment, bshapes) -> Moment:
    if not moms:
        return mom
    c = max(len(x[0]) for x in moms)
    ms = [_chan(x, c) for x in moms]
    op = eltwise_operation(lay)
    if op == "PROD":
        return np.prod([x[0] for x in ms], axis=0), np.prod([x[1] for x in ms], axis=0)
    if op == "MAX":
        return np.max([x[0] for x in ms], axis=0), np.max([x[1] for x in ms], axis=0)
    coeff = list(lay.p("eltwise_param").coeff) or [1.0] * len(ms)
    mean = sum(k * x[0] for k, x in zip(coeff, ms))
    sq = sum(k * k * _var(x) for k, x in zip(coeff, ms)) + mean**2  # independent parts, summed means
    return mean, sq


def _concat(lay: Layer, moms: list[Moment], mom: Moment, bshapes) -> Moment:
    if not bshapes:
        return mom
    ax = lay.p("concat_param").axis
    if ax in (1, 1 - len(bshapes[0])) and len(bshapes[0]) >= 2:
        parts = [_chan(x, s[1]) for x, s in zip(moms, bshapes)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return (np.array([np.mean([x[0].mean() for x in moms])]), np.array([np.mean([x[1].mean() for x in moms])]))


def _axpy(lay: Layer, moms: list[Moment], mom: Moment, bshapes) -> Moment:
    if len(moms) != 3:
        return mom
    c = bshapes[1][1]
    (ma, sa), (mx, sx), (my, sy) = (_chan(x, c) for x in moms)
    return ma * mx + my, sa * sx + sy + 2 * ma * mx * my


def _power(lay: Layer, moms: list[Moment], mom: Moment, bshapes) -> Moment:
    pp = lay.p("power_param")
    if pp.power != 1:
        return mom
    mu, m = mom
    return pp.shift + pp.scale * mu, pp.scale**2 * m + 2 * pp.scale * pp.shift * mu + pp.shift**2


def _kept(lay: Layer, moms: list[Moment], mom: Moment, bshapes) -> Moment:
    return mom


def _fresh(lay: Layer, moms: list[Moment], mom: Moment, bshapes) -> Moment:
    return _ONE


# the types whose top keeps its (first) bottom's estimate: copies, selections, re-layouts, and the ones whose
# output scale the next linear layer's normalisation absorbs (the estimate only picks the next layer's scale)
_KEPT = ("SPP", "LRN", "AbsVal", "BNLL", "Exp", "Log", "Threshold", "Clip", "Swish", "Dropout", "Slice", "Split",
         "Flatten", "Reshape", "Crop", "Permute", "Tile", "ShuffleChannel", "Silence", "Reduction", "ArgMax",
         "Upsample", "Interp", "PriorBox", "DetectionOutput", "Scale", "Bias")
SEED_MOMENTS: dict[str, Callable[..., Moment]] = {
    **{t: _kept for t in _KEPT},
    "Input": _fresh, "MVN": _fresh,  # a net input is standardised; MVN standardises
    "ReLU": _relu_like, "ReLU6": _relu_like, "ELU": lambda lay, moms, mom, bs: _relu_moments(mom),
    "Sigmoid": lambda lay, moms, mom, bs: (np.full_like(mom[0], 0.5), np.full_like(mom[1], 0.3)),
    "TanH": lambda lay, moms, mom, bs: (np.zeros_like(mom[0]), np.minimum(mom[1], 0.6)),
    "Softmax": _softmax, "Pooling": _pooling, "Eltwise": _eltwise, "Concat": _concat, "Axpy": _axpy,
    "Power": _power,
}


def _fit(mom: Moment, shape: tuple) -> Moment:
    """Keep per-channel moments only where the blob's axis 1 has that many channels."""
    mu, m = np.asarray(mom[0], float).ravel(), np.asarray(mom[1], float).ravel()
    if len(shape) >= 2 and len(mu) == shape[1]:
        return mu, np.maximum(m, mu**2 + 1e-12)
    mu, m = np.array([mu.mean()]), np.array([m.mean()])
    return mu, np.maximum(m, mu**2 + 1e-12)


def random_weights(net: Net, seed: int = 0, *, net_shapes: NetShapes | None = None,
                   calibrate: bool = False) -> Net:
    """A copy of ``net`` with seeded random float32 blobs of the expected shapes on every layer that has weights
    (existing blobs are replaced).  See the module docstring for the scales.

    ``calibrate=True`` then runs the NumPy reference once, layer by layer, on one seeded standard-normal image
    (batch 1) and rescales each Convolution/Deconvolution/InnerProduct output channel to ``E[y^2] = 1`` and sets each
    BatchNorm's running statistics from the channel's actual mean and variance (perturbed as above, factor blob
    kept): activations then stay O(1) through any depth (ResNet-50: RMS within [0.3, 3]) at the cost of one forward
    pass.  Without it the analytic estimate holds plain and BatchNorm chains within about [0.1, 30] over 30 layers,
    and lets residual sums grow (ResNet-50's last block reaches RMS ~100)."""
    ns = net_shapes or infer_shapes(net)
    moments: dict[str, Moment] = {}
    layers = []
    for lay, ls in zip(net.layers, ns.layers):
        bshapes = [tuple(s) for s in ls.bottom_shapes]
        moms = [moments.get(b, _ONE) for b in lay.bottoms]
        if ls.param_shapes:
            blobs, mom = _rule(SEED_BLOBS, "SEED_BLOBS", lay)(lay, bshapes, [tuple(s) for s in ls.param_shapes],
                                                              moms[0] if moms else _ONE, _rng(seed, lay.name))
            for b in blobs:
                b.setflags(write=False)
            lay = replace(lay, blobs=tuple(blobs))
        else:
            mom = _rule(SEED_MOMENTS, "SEED_MOMENTS", lay)(lay, moms, moms[0] if moms else _ONE, bshapes)
            if lay.blobs:
                lay = replace(lay, blobs=())
        for t, shape in zip(lay.tops, ls.top_shapes):
            moments[t] = _fit(mom, tuple(shape))
        layers.append(lay)
    out = replace(net, layers=tuple(layers), has_weights=True)
    if calibrate:
        out = _calibrate(out, seed)
    return out


def _scale_conv(lay: Layer, w: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Convolution ``(C_out, C_in/g, kh, kw)``: output channel ``o``'s filter times ``s[o]``."""
    return np.array(w, dtype=np.float32, copy=True) * s.astype(np.float32).reshape(-1, 1, 1, 1)


def _scale_deconv(lay: Layer, w: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Deconvolution ``(C_in, C_out/g, kh, kw)`` per group: output channel ``o``'s weights times ``s[o]``."""
    w = np.array(w, dtype=np.float32, copy=True)
    s = s.astype(np.float32)
    g = conv_geometry(lay).group
    cg_in, cg_out = w.shape[0] // g, w.shape[1]
    for gi in range(g):
        w[gi * cg_in:(gi + 1) * cg_in] *= s[gi * cg_out:(gi + 1) * cg_out].reshape(1, -1, 1, 1)
    return w


def _scale_inner_product(lay: Layer, w: np.ndarray, s: np.ndarray) -> np.ndarray:
    """InnerProduct ``(N, K)``, or ``(K, N)`` transposed: output ``o``'s row (column) times ``s[o]``."""
    s = s.astype(np.float32)
    return np.array(w, dtype=np.float32, copy=True) * (s[None, :] if lay.p("inner_product_param").transpose
                                                       else s[:, None])


# calibration of the linear types (harness.catalogue: linear): how to scale output channel o, and the axis of the
# output blob that holds the channels
OUTPUT_SCALE: dict[str, tuple[Callable[[Layer, np.ndarray, np.ndarray], np.ndarray], int]] = {
    "Convolution": (_scale_conv, 1), "ConvolutionDepthwise": (_scale_conv, 1), "Deconvolution": (_scale_deconv, 1),
    "InnerProduct": (_scale_inner_product, -1),
}


def _bn_from_stats(lay: Layer, x: np.ndarray, seed: int) -> Layer:
    """A BatchNorm's running statistics from its actual input (perturbed as in the estimate, factor blob kept)."""
    x = x.astype(np.float64)
    axes = tuple(a for a in range(x.ndim) if a != 1) if x.ndim > 1 else (0,)
    mean, var = x.mean(axis=axes).ravel(), x.var(axis=axes).ravel()
    r = _rng(seed, lay.name + "#calibrate")
    f = float(lay.blobs[2].ravel()[0])
    run_mean = mean + r.standard_normal(mean.shape) * 0.1 * np.sqrt(var + 1e-12)
    run_var = np.maximum(var, 1e-6) * r.uniform(0.5, 2.0, var.shape)
    blobs = [(run_mean * f).astype(np.float32), (run_var * f).astype(np.float32), *lay.blobs[2:]]
    return replace(lay, blobs=tuple(_frozen(b) for b in blobs))


# the types whose blobs calibration sets from the layer's measured input, before it runs
FROM_INPUT_STATS: dict[str, Callable[[Layer, np.ndarray, int], Layer]] = {"BatchNorm": _bn_from_stats}


def _rescaled(lay: Layer, outs: list[np.ndarray]) -> tuple[Layer, list[np.ndarray]]:
    """A linear layer with each output channel rescaled to ``E[y^2] = 1`` on its measured output, and that
    output rescaled likewise."""
    scale_fn, ch = OUTPUT_SCALE[canonical_type(lay.kind)]
    y = outs[0].astype(np.float64)
    ch = ch % y.ndim
    bias = lay.blobs[1].astype(np.float64) if len(lay.blobs) > 1 else None
    shape = [1] * y.ndim
    shape[ch] = y.shape[ch]
    yc = y - bias.reshape(shape) if bias is not None else y
    axes = tuple(a for a in range(y.ndim) if a != ch)
    per_channel = (yc**2).mean(axis=axes)
    if yc.size // max(y.shape[ch], 1) < 16:  # too few values per channel: one scale for all
        per_channel = np.full_like(per_channel, per_channel.mean())
    s = 1.0 / np.sqrt(np.maximum(per_channel, 1e-24))
    lay = replace(lay, blobs=(_frozen(scale_fn(lay, lay.blobs[0], s)), *lay.blobs[1:]))
    y = yc * s.reshape(shape) + (bias.reshape(shape) if bias is not None else 0.0)
    return lay, [y.astype(np.float32)] + list(outs[1:])


def _calibrated_pass(net: Net, seed: int, batch_one: bool, last_use: Mapping[str, int]) -> Net:
    """One layer-by-layer float32 reference pass on a seeded image, calibrating each layer it reaches."""
    from .reference import REFERENCE

    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xCA1B])
    env: dict[str, np.ndarray] = {}
    layers = []
    for i, lay in enumerate(net.layers):
        if is_source(lay.kind):
            ins = [rng.standard_normal(((1,) + tuple(net.inputs[t])[1:]) if batch_one
                                       else tuple(net.inputs[t])).astype(np.float32) for t in lay.tops]
        else:
            ins = [env[b] for b in lay.bottoms]
        from_stats = FROM_INPUT_STATS.get(canonical_type(lay.kind))
        if from_stats is not None and lay.blobs:
            lay = from_stats(lay, ins[0], seed)
        outs = REFERENCE[lay.kind](lay, ins, dtype=np.float32)
        if canonical_type(lay.kind) in OUTPUT_SCALE and lay.blobs:
            lay, outs = _rescaled(lay, outs)
        for t, o in zip(lay.tops, outs):
            env[t] = o
        for b in set(lay.bottoms) | set(lay.tops):
            if last_use.get(b, -1) <= i and b not in lay.tops:
                env.pop(b, None)
        layers.append(lay)
    return replace(net, layers=tuple(layers))


def _calibrate(net: Net, seed: int) -> Net:
    """One layer-by-layer reference pass (float32, batch 1) fixing the scales from actual statistics."""
    last_use: dict[str, int] = {}
    for i, lay in enumerate(net.layers):
        for b in lay.bottoms:
            last_use[b] = i
    try:
        return _calibrated_pass(net, seed, True, last_use)
    except HarnessError:  # a layer that needs the net's own batch size (e.g. Reshape with an explicit N)
        return _calibrated_pass(net, seed, False, last_use)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float32)
    a.setflags(write=False)
    return a


__all__ = ["random_weights"]
