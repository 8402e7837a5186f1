"""Seeded random weights for any net, scaled so that activations stay O(1) through the whole depth.

:func:`random_weights(net, seed) <random_weights>` returns a new :class:`~harness.net.Net` whose layers carry float32
blobs of exactly the shapes Caffe expects (:func:`harness.shapes.param_shapes`).  Nothing is run: the scale of every
blob is chosen from an *estimate* of the second moment ``E[x^2]`` of each blob, propagated through the net layer by
layer (net inputs are assumed ``E[x^2] = 1``, i.e. standardised data):

* Convolution / depthwise / InnerProduct: weights ``N(0, 1 / (fan_in * m_in))`` with ``fan_in = C_in/group * kh * kw``
  (resp. ``K``), so the output has ``E[x^2] ~ 1`` whatever came before (He/LeCun scaling, data-scale aware); bias
  ``N(0, 0.1^2)``.  Deconvolution: the effective fan-in is ``C_in/group * kh*kw / (stride_h*stride_w)``.
* BatchNorm: running mean ``N(0, 0.1^2 m_in)``, running variance ``m_in * U(0.5, 2)`` (positive), and a moving-average
  factor blob ``U(0.5, 2)`` (never 0 or 1, so a converter that ignores it is caught) with mean and variance stored
  pre-multiplied by it, as Caffe stores them (``mean = blob0 / blob2``).
* Scale: gamma ``U(0.5, 1.5)``, bias ``N(0, 0.1^2)``; Bias: ``N(0, 0.1^2 m_in)``.
* PReLU slopes ``U(0.05, 0.45)``; Normalize scale ``U(0.5, 1.5) * sqrt(C)`` (``sqrt(C*H*W)`` across_spatial; SSD's
  usual 20 on 512 channels is the same order); Embed ``N(0, 1)``.

Deterministic: every layer draws from ``numpy.random.default_rng([seed, crc32(layer name)])``, so a layer's weights
depend only on the seed, its name and its shapes (adding a layer elsewhere does not change them).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import replace

import numpy as np

from .net import Layer, Net
from .params import conv_geometry
from .shapes import NetShapes, count, infer_shapes

def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))])


def _normal(rng: np.random.Generator, shape, std: float) -> np.ndarray:
    return (rng.standard_normal(shape) * std).astype(np.float32)


def _uniform(rng: np.random.Generator, shape, lo: float, hi: float) -> np.ndarray:
    return rng.uniform(lo, hi, shape).astype(np.float32)


def _inside_fraction(size: int, kernel: int, stride: int, pad: int, dilation: int) -> float:
    """Mean fraction of a convolution window's taps that fall inside the (unpadded) input along one axis."""
    out = (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1
    if out <= 0:
        return 1.0
    inside = 0
    for o in range(out):
        start = o * stride - pad
        inside += sum(1 for t in range(kernel) if 0 <= start + t * dilation < size)
    return inside / (out * kernel)


Moment = tuple[float, float]  # (E[x], E[x^2]) estimated over a blob


def _relu_moments(mu: float, m: float, slope: float = 0.0, slope2: float = 0.0) -> Moment:
    """E[y], E[y^2] of ``y = max(x,0) + a*min(x,0)`` for Gaussian ``x`` of mean ``mu`` and second moment ``m``
    (``slope`` = E[a], ``slope2`` = E[a^2])::

        s = sqrt(m - mu^2), t = mu / s
        E[relu(x)]   = mu*Phi(t) + s*phi(t)
        E[relu(x)^2] = (mu^2 + s^2)*Phi(t) + mu*s*phi(t)
    """
    var = max(m - mu * mu, 1e-12)
    sd = math.sqrt(var)
    t = mu / sd
    cdf = 0.5 * (1.0 + math.erf(t / math.sqrt(2.0)))
    pdf = math.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)
    pos1 = mu * cdf + sd * pdf
    pos2 = (mu * mu + var) * cdf + mu * sd * pdf
    neg1 = pos1 - mu  # E[min(x,0)] = E[relu(x)] - E[x]   (as a negative number: -(E[relu(-x)]))
    neg2 = m - pos2
    return pos1 + slope * neg1, pos2 + slope2 * neg2


def _blobs_for(lay: Layer, bshapes: list[tuple], pshapes: list[tuple], mom: Moment, rng: np.random.Generator):
    """Blobs for one layer and the estimated (mean, second moment) of its top."""
    kind = lay.kind
    mu_in, m_in = mom
    m_in = max(m_in, 1e-12)
    if kind in ("Convolution", "ConvolutionDepthwise", "Deconvolution"):
        g = conv_geometry(lay)
        w = rng.standard_normal(pshapes[0])
        if kind == "Deconvolution":
            # output channel o (within its group) receives w[:, o] over about kh*kw/(sh*sw) taps per input channel
            norm2 = g.stride[0] * g.stride[1] / m_in
            w *= np.sqrt(norm2 / np.maximum((w**2).sum(axis=(0, 2, 3), keepdims=True), 1e-12))
        else:
            # zero padding: border outputs see fewer input values; count the taps that land inside
            h, wd = bshapes[0][2], bshapes[0][3]
            frac = (_inside_fraction(h, g.kernel[0], g.stride[0], g.pad[0], g.dilation[0])
                    * _inside_fraction(wd, g.kernel[1], g.stride[1], g.pad[1], g.dilation[1]))
            norm2 = 1.0 / (m_in * max(frac, 1e-3))
            w *= np.sqrt(norm2 / np.maximum((w**2).sum(axis=(1, 2, 3), keepdims=True), 1e-12))
        blobs = [w.astype(np.float32)]
        if len(pshapes) > 1:
            blobs.append(_normal(rng, pshapes[1], 0.1))
        return blobs, (0.0, 1.01 if len(pshapes) > 1 else 1.0)
    if kind == "InnerProduct":
        ip = lay.p("inner_product_param")
        w = rng.standard_normal(pshapes[0])
        axis = 0 if ip.transpose else 1  # the K axis: each output's weight vector gets norm^2 = 1 / m_in
        w *= np.sqrt(1.0 / m_in / np.maximum((w**2).sum(axis=axis, keepdims=True), 1e-12))
        blobs = [w.astype(np.float32)]
        if len(pshapes) > 1:
            blobs.append(_normal(rng, pshapes[1], 0.1))
        return blobs, (0.0, 1.01 if len(pshapes) > 1 else 1.0)
    if kind == "BatchNorm":
        c = pshapes[0]
        factor = float(rng.uniform(0.5, 2.0))
        var_in = max(m_in - mu_in * mu_in, 1e-3 * m_in)
        # running statistics near the true ones (mean within 0.1 sd, variance within a factor [0.5, 2])
        mean = mu_in + rng.standard_normal(c) * 0.1 * math.sqrt(var_in)
        var = var_in * rng.uniform(0.5, 2.0, c)
        blobs = [(mean * factor).astype(np.float32), (var * factor).astype(np.float32),
                 np.full(pshapes[2], factor, np.float32)]
        for s in pshapes[3:]:  # NVCaffe scale_bias: scale, bias
            blobs.append(_uniform(rng, s, 0.5, 1.5) if len(blobs) == 3 else _normal(rng, s, 0.1))
        # the moments that come out with these very statistics, so the estimate does not drift through depth
        mu_out = float(np.mean((mu_in - mean) / np.sqrt(var)))
        m_out = float(np.mean((var_in + (mu_in - mean) ** 2) / var))
        return blobs, (mu_out, m_out)
    if kind == "Scale":
        blobs = []
        shapes = list(pshapes)
        if len(bshapes) == 1:
            blobs.append(_uniform(rng, shapes.pop(0), 0.5, 1.5))
        if shapes:
            blobs.append(_normal(rng, shapes[0], 0.1))
        if len(bshapes) != 1:
            return blobs, (mu_in, m_in)
        g = blobs[0].astype(np.float64)
        b = blobs[1].astype(np.float64) if len(blobs) > 1 else np.zeros(1)
        return blobs, (float(g.mean() * mu_in + b.mean()),
                       float((g**2).mean() * m_in + 2 * (g * b).mean() * mu_in + (b**2).mean()))
    if kind == "Bias":
        blobs = [_normal(rng, s, 0.1 * math.sqrt(m_in)) for s in pshapes]
        b = blobs[0].astype(np.float64) if blobs else np.zeros(1)
        return blobs, (mu_in + float(b.mean()), m_in + 2 * mu_in * float(b.mean()) + float((b**2).mean()))
    if kind == "PReLU":
        a = _uniform(rng, pshapes[0], 0.05, 0.45)
        a64 = a.astype(np.float64)
        return [a], _relu_moments(mu_in, m_in, float(a64.mean()), float((a64**2).mean()))
    if kind == "Normalize":
        b = bshapes[0]
        spatial = lay.p("norm_param").across_spatial
        per = count(b, 1) if spatial else b[1]
        return [_uniform(rng, pshapes[0], 0.5, 1.5) * np.float32(math.sqrt(per))], (0.0, 1.0)
    if kind == "Embed":
        blobs = [_normal(rng, pshapes[0], 1.0)]
        if len(pshapes) > 1:
            blobs.append(_normal(rng, pshapes[1], 0.1))
        return blobs, (0.0, 1.0)
    # any other weighted type: small normal values (none in the catalogue today)
    return [_normal(rng, s, 0.1) for s in pshapes], (mu_in, m_in)


def _moments_out(lay: Layer, moms: list[Moment], bshapes: list[tuple]) -> Moment:
    """Estimated (mean, second moment) of a weightless layer's top from its bottoms' (enough to pick scales)."""
    kind = lay.kind
    mu, m = moms[0] if moms else (0.0, 1.0)
    if kind in ("ReLU", "ReLU6"):
        slope = float(lay.p("relu_param").negative_slope) if kind == "ReLU" else 0.0
        return _relu_moments(mu, m, slope, slope * slope)
    if kind == "ELU":
        return _relu_moments(mu, m)
    if kind == "Sigmoid":
        return 0.5, 0.3
    if kind == "TanH":
        return 0.0, min(m, 0.6)
    if kind == "Softmax":
        ax = lay.p("softmax_param").axis
        n = bshapes[0][ax] if bshapes and -len(bshapes[0]) <= ax < len(bshapes[0]) else 1
        return 1.0 / max(n, 1), 1.0 / max(n, 1)
    if kind == "MVN":
        return 0.0, 1.0
    if kind == "Eltwise" and moms:
        op = lay.p("eltwise_param").operation
        if op == 0:  # PROD
            return float(np.prod([x[0] for x in moms])), float(np.prod([x[1] for x in moms]))
        if op == 2:  # MAX
            return max(x[0] for x in moms), max(x[1] for x in moms)
        coeff = list(lay.p("eltwise_param").coeff) or [1.0] * len(moms)
        mean = sum(c * x[0] for c, x in zip(coeff, moms))
        sq = sum(c * c * x[1] for c, x in zip(coeff, moms))
        sq += mean * mean - sum((c * x[0]) ** 2 for c, x in zip(coeff, moms))  # cross terms of the means
        return mean, sq
    if kind == "Concat" and bshapes:
        try:
            ax = lay.p("concat_param").axis
            sizes = [s[ax] for s in bshapes]
        except IndexError:
            sizes = [1] * len(moms)
        tot = max(sum(sizes), 1)
        return (sum(x[0] * n for x, n in zip(moms, sizes)) / tot, sum(x[1] * n for x, n in zip(moms, sizes)) / tot)
    if kind == "Axpy" and len(moms) == 3:
        (ma, sa), (mx, sx), (my, sy) = moms
        return ma * mx + my, sa * sx + sy + 2 * ma * mx * my
    if kind == "Power":
        pp = lay.p("power_param")
        if pp.power == 1:
            return pp.shift + pp.scale * mu, pp.scale**2 * m + 2 * pp.scale * pp.shift * mu + pp.shift**2
    return mu, m


def random_weights(net: Net, seed: int = 0, *, net_shapes: NetShapes | None = None) -> Net:
    """A copy of ``net`` with seeded random float32 blobs of the expected shapes on every layer that has weights
    (existing blobs are replaced).  See the module docstring for the scales."""
    ns = net_shapes or infer_shapes(net)
    moments: dict[str, Moment] = {b: (0.0, 1.0) for b in net.inputs}
    layers = []
    for lay, ls in zip(net.layers, ns.layers):
        moms = [moments.get(b, (0.0, 1.0)) for b in lay.bottoms]
        bshapes = [tuple(s) for s in ls.bottom_shapes]
        if ls.param_shapes:
            blobs, mom = _blobs_for(lay, bshapes, [tuple(s) for s in ls.param_shapes],
                                    moms[0] if moms else (0.0, 1.0), _rng(seed, lay.name))
            for b in blobs:
                b.setflags(write=False)
            lay = replace(lay, blobs=tuple(blobs))
        else:
            mom = (0.0, 1.0) if lay.kind == "Input" else _moments_out(lay, moms, bshapes)
            if lay.blobs:
                lay = replace(lay, blobs=())
        for t in lay.tops:
            moments[t] = (float(mom[0]), max(float(mom[1]), float(mom[0]) ** 2, 1e-12))
        layers.append(lay)
    return replace(net, layers=tuple(layers), has_weights=True)


__all__ = ["random_weights"]
