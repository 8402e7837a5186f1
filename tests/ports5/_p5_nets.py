"""Trained-like Caffe nets for the ports5 corpus (issue 25): prototxt text, weights with trained statistics, and an
own float64 NumPy forward pass written from Caffe's rules (used to calibrate the weights and to check that the
hand-written ports are right before the harness judges them).

Nets (every blob has distinct sizes on its axes; N=2 per batch):

* ``res7`` (ResNet's stem): data 3x163x179 -> conv1 (64, 7x7, stride 2, pad 3, no bias: 64x82x90) -> bn_conv1 +
  scale_conv1 + conv1_relu -> pool1 (MAX 3x3/2, Caffe's ceil: 41x45, floor would give 40x44) -> a bottleneck block
  with the stride on the 1x1 (Caffe's ResNet habit): res2a_branch1 (32, 1x1/2) + BN + Scale, res2a_branch2a (16,
  1x1/2) -> 2b (16, 3x3, pad 1) -> 2c (32, 1x1), each + BN + Scale (+ ReLU) -> res2a (Eltwise SUM) -> res2a_relu
  -> pool5 (AVE, global) -> fc10 -> prob (Softmax).
* ``alex11`` (AlexNet's stem): data 3x227x239 -> conv1 (48, 11x11, stride 4: 48x55x58) -> relu1 -> pool1 (MAX 3x3/2,
  ceil: 27x29) -> conv2 (32, 5x5, pad 2) -> relu2 -> pool2 (MAX 3x3/2, ceil: 13x14) -> fc6 (64) -> relu6 -> fc7 (10)
  -> prob.
* ``vgg3`` (VGG's stem): data 3x96x112 -> conv1_1, conv1_2 (32, 3x3, pad 1) + ReLU -> pool1 (MAX 2x2/2: 48x56)
  -> conv2_1 (40, 3x3, pad 1, no bias) + BN + Scale + ReLU -> pool2 (MAX 3x3/2, ceil: 24x28) -> fc8 (10) -> prob.

Weights: smooth (low-pass filtered seeded noise) filters, mostly mean-free, scaled per layer on a calibration batch
of synthetic scenes; BatchNorm blobs hold running statistics measured on that batch (perturbed, as a running average
is) times Caffe's moving-average factor 999.982; the last InnerProduct is fitted (ridge regression) to the scenes'
classes, so the softmax is confident as a trained classifier's is.
"""

from __future__ import annotations

import math

import numpy as np

from _p5_images import calibration_batch

MEAN_BGR = (104.0, 117.0, 123.0)
BN_FACTOR = 999.982
BN_EPS = 1e-5


def _conv(name, bottom, top, n, k, s=1, p=0, bias=True):
    return dict(name=name, type="Convolution", bottom=[bottom], top=top, n=n, k=k, s=s, p=p, bias=bias)


def _bn_scale(prefix_bn, prefix_sc, blob):
    return [dict(name=prefix_bn, type="BatchNorm", bottom=[blob], top=blob, eps=BN_EPS),
            dict(name=prefix_sc, type="Scale", bottom=[blob], top=blob)]


def _relu(name, blob):
    return dict(name=name, type="ReLU", bottom=[blob], top=blob)


def _pool(name, bottom, top, method, k=0, s=1, glob=False):
    return dict(name=name, type="Pooling", bottom=[bottom], top=top, method=method, k=k, s=s, glob=glob)


def _ip(name, bottom, top, n):
    return dict(name=name, type="InnerProduct", bottom=[bottom], top=top, n=n)


def _res7():
    b = [_conv("conv1", "data", "conv1", 64, 7, 2, 3, bias=False), *_bn_scale("bn_conv1", "scale_conv1", "conv1"),
         _relu("conv1_relu", "conv1"), _pool("pool1", "conv1", "pool1", "MAX", 3, 2),
         _conv("res2a_branch1", "pool1", "res2a_branch1", 32, 1, 2, bias=False),
         *_bn_scale("bn2a_branch1", "scale2a_branch1", "res2a_branch1")]
    for part, n, k, s, p in (("2a", 16, 1, 2, 0), ("2b", 16, 3, 1, 1), ("2c", 32, 1, 1, 0)):
        bottom = {"2a": "pool1", "2b": "res2a_branch2a", "2c": "res2a_branch2b"}[part]
        blob = f"res2a_branch{part}"
        b += [_conv(blob, bottom, blob, n, k, s, p, bias=False), *_bn_scale(f"bn2a_branch{part}", f"scale2a_branch{part}", blob)]
        if part != "2c":
            b.append(_relu(f"res2a_branch{part}_relu", blob))
    b += [dict(name="res2a", type="Eltwise", bottom=["res2a_branch1", "res2a_branch2c"], top="res2a"),
          _relu("res2a_relu", "res2a"), _pool("pool5", "res2a", "pool5", "AVE", glob=True),
          _ip("fc10", "pool5", "fc10", 10), dict(name="prob", type="Softmax", bottom=["fc10"], top="prob")]
    return (3, 163, 179), b


def _alex11():
    return (3, 227, 239), [
        _conv("conv1", "data", "conv1", 48, 11, 4), _relu("relu1", "conv1"), _pool("pool1", "conv1", "pool1", "MAX", 3, 2),
        _conv("conv2", "pool1", "conv2", 32, 5, 1, 2), _relu("relu2", "conv2"), _pool("pool2", "conv2", "pool2", "MAX", 3, 2),
        _ip("fc6", "pool2", "fc6", 64), _relu("relu6", "fc6"), _ip("fc7", "fc6", "fc7", 10),
        dict(name="prob", type="Softmax", bottom=["fc7"], top="prob")]


def _vgg3():
    return (3, 96, 112), [
        _conv("conv1_1", "data", "conv1_1", 32, 3, 1, 1), _relu("relu1_1", "conv1_1"),
        _conv("conv1_2", "conv1_1", "conv1_2", 32, 3, 1, 1), _relu("relu1_2", "conv1_2"),
        _pool("pool1", "conv1_2", "pool1", "MAX", 2, 2),
        _conv("conv2_1", "pool1", "conv2_1", 40, 3, 1, 1, bias=False), *_bn_scale("bn2_1", "scale2_1", "conv2_1"),
        _relu("relu2_1", "conv2_1"), _pool("pool2", "conv2_1", "pool2", "MAX", 3, 2),
        _ip("fc8", "pool2", "fc8", 10), dict(name="prob", type="Softmax", bottom=["fc8"], top="prob")]


NETS = {"res7": _res7, "alex11": _alex11, "vgg3": _vgg3}


def spec(net):
    """(input CHW, layer list) of a corpus net."""
    return NETS[net]()


# ---------------------------------------------------------------------------------------------------- prototxt

def _layer_text(d):
    head = f'layer {{ name: "{d["name"]}" type: "{d["type"]}" ' + " ".join(f'bottom: "{b}"' for b in d["bottom"])
    head += f' top: "{d["top"]}"'
    t = d["type"]
    if t == "Convolution":
        body = f'convolution_param {{ num_output: {d["n"]} kernel_size: {d["k"]} stride: {d["s"]}'
        body += (f' pad: {d["p"]}' if d["p"] else "") + ("" if d["bias"] else " bias_term: false") + " }"
    elif t == "BatchNorm":
        body = f'batch_norm_param {{ use_global_stats: true eps: {d["eps"]:g} }}'
    elif t == "Scale":
        body = "scale_param { bias_term: true }"
    elif t == "Pooling":
        body = (f'pooling_param {{ pool: {d["method"]} global_pooling: true }}' if d["glob"] else
                f'pooling_param {{ pool: {d["method"]} kernel_size: {d["k"]} stride: {d["s"]} }}')
    elif t == "InnerProduct":
        body = f'inner_product_param {{ num_output: {d["n"]} }}'
    elif t == "Eltwise":
        body = "eltwise_param { operation: SUM }"
    else:
        body = ""
    return f"{head} {body} }}\n"


def prototxt(net, batch=2):
    chw, layers = spec(net)
    dims = " ".join(f"dim: {v}" for v in (batch, *chw))
    text = f'name: "{net}"\nlayer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n'
    return text + "".join(_layer_text(d) for d in layers)


# ---------------------------------------------------------------------------------------------------- forward

def conv_forward(x, w, b, s, p):
    """Caffe's convolution: zero pad p on every side, output floor((H + 2p - k) / s) + 1."""
    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    n, _, ho, wo = win.shape[:4]
    col = np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n * ho * wo, -1)     # im2col, (C, kh, kw)
    y = (col @ w.reshape(w.shape[0], -1).T).reshape(n, ho, wo, -1).transpose(0, 3, 1, 2)
    return y if b is None else y + b[None, :, None, None]


def pool_size(h, k, s, p=0):
    """Caffe's pooled size: ceil((H + 2p - k) / s) + 1, minus one when the last window starts in the padding."""
    out = int(math.ceil((h + 2 * p - k) / s)) + 1
    if p and (out - 1) * s >= h + p:
        out -= 1
    return out


def max_pool(x, k, s):
    n, c, h, w = x.shape
    ho, wo = pool_size(h, k, s), pool_size(w, k, s)
    xp = np.full((n, c, (ho - 1) * s + k, (wo - 1) * s + k), -np.inf)
    xp[:, :, :h, :w] = x
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    return win.max(axis=(4, 5))


def _forward_layer(d, blobs, w):
    t, x = d["type"], blobs[d["bottom"][0]]
    if t == "Convolution":
        return conv_forward(x, w[0], w[1] if d["bias"] else None, d["s"], d["p"])
    if t == "BatchNorm":
        f = w[2][0]
        return (x - (w[0] / f)[None, :, None, None]) / np.sqrt(w[1] / f + d["eps"])[None, :, None, None]
    if t == "Scale":
        return x * w[0][None, :, None, None] + w[1][None, :, None, None]
    if t == "ReLU":
        return np.maximum(x, 0.0)
    if t == "Pooling":
        return x.mean(axis=(2, 3), keepdims=True) if d["glob"] else max_pool(x, d["k"], d["s"])
    if t == "Eltwise":
        return sum(blobs[b] for b in d["bottom"])
    if t == "InnerProduct":
        return x.reshape(x.shape[0], -1) @ w[0].T + w[1]
    if t == "Softmax":
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(t)


def forward(net, weights, x):
    """Float64 forward of the net on NCHW ``x``; returns {layer name: output} (in-place layers each their own)."""
    _, layers = spec(net)
    blobs, out = {"data": np.asarray(x, np.float64)}, {}
    for d in layers:
        y = _forward_layer(d, blobs, [np.asarray(a, np.float64) for a in weights.get(d["name"], [])])
        blobs[d["top"]] = out[d["name"]] = y
    return out


# ---------------------------------------------------------------------------------------------------- weights

def _smooth_filters(rng, o, i, k, mean_free):
    """Low-pass filtered noise, most filters mean-free, unit norm times a gain (the later layers' filters)."""
    w = rng.standard_normal((o, i, k, k))
    if k > 1:
        f = np.fft.fftfreq(k)
        lp = np.exp(-((f[:, None] ** 2 + f[None, :] ** 2) / (2 * 0.22 ** 2)))
        w = np.real(np.fft.ifft2(np.fft.fft2(w) * lp))
    keep_dc = rng.random(o) >= mean_free
    w = w - np.where(keep_dc[:, None, None, None], 0.0, w.mean(axis=(1, 2, 3), keepdims=True))
    w /= np.sqrt((w ** 2).sum(axis=(1, 2, 3), keepdims=True))
    return w * rng.lognormal(0.0, 0.3, o)[:, None, None, None]


def _first_layer_filter(rng, k):
    """One filter as trained first layers have them (3 input channels): an oriented Gabor (grey or tinted), a
    colour-opponent blob (channel weights summing to 0), or smooth noise; mean-free over the filter, so a flat
    region of pixels near 150 cancels to almost nothing."""
    yy, xx = (np.mgrid[0:k, 0:k] - (k - 1) / 2.0)
    sigma = k * rng.uniform(0.18, 0.35)
    env = np.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2))
    kind = rng.random()
    if kind < 0.55:
        th, fr, ph = rng.uniform(0, np.pi), rng.uniform(0.6, 2.2) / k, rng.uniform(0, 2 * np.pi)
        g = env * np.cos(2 * np.pi * fr * (xx * np.cos(th) + yy * np.sin(th)) + ph)
        tint = 1.0 + (rng.normal(0, 0.5, 3) if rng.random() < 0.4 else np.zeros(3))
        w = tint[:, None, None] * g[None]
    elif kind < 0.85:
        c = rng.normal(0, 1, 3)
        w = (c - c.mean())[:, None, None] * env[None]
    else:
        w = _smooth_filters(rng, 1, 3, k, 1.0)[0]
    w = w + 0.05 * np.abs(w).max() * rng.standard_normal(w.shape)
    return w - w.mean()


def _first_layer(rng, o, k):
    w = np.stack([_first_layer_filter(rng, k) for _ in range(o)])
    dc = rng.random(o) < 0.1                          # a few filters keep a DC response (brightness detectors)
    w[dc] += rng.normal(0, 0.3, (int(dc.sum()), 1, 1, 1)) * np.abs(w[dc]).mean(axis=(1, 2, 3), keepdims=True)
    w /= np.sqrt((w ** 2).sum(axis=(1, 2, 3), keepdims=True))
    return w * rng.lognormal(0.0, 0.3, o)[:, None, None, None]


def _conv_weights(rng, d, x):
    """Filters scaled so that the layer's output has a trained net's spread; returns (blobs, output)."""
    first = d["bottom"] == ["data"]
    w = _first_layer(rng, d["n"], d["k"]) if first else _smooth_filters(rng, d["n"], x.shape[1], d["k"], 0.5)
    y = conv_forward(x, w, None, d["s"], d["p"])
    gain = (12.0 if first else 4.0) / y.std()
    blobs, y = [w * gain], y * gain
    if d["bias"]:
        blobs.append(rng.normal(0.0, 0.8, d["n"]))
        y = y + blobs[1][None, :, None, None]
    return blobs, y


def _bn_weights(rng, x):
    m, v = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    m = m + 0.05 * np.sqrt(v) * rng.standard_normal(m.shape)   # a running average is not the batch's own
    v = v * rng.lognormal(0.0, 0.1, v.shape)
    return [m * BN_FACTOR, v * BN_FACTOR, np.array([BN_FACTOR])]


def _ridge(feats, labels, n, lam=1.0):
    x = feats.reshape(feats.shape[0], -1)
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mu) / sd
    y = 6.0 * np.eye(n)[labels] - 3.0
    wz = z.T @ np.linalg.solve(z @ z.T + lam * len(z) * np.eye(len(z)), y - y.mean(axis=0))   # dual form
    w = (wz / sd[:, None]).T
    return [w, y.mean(axis=0) - w @ mu]


def _ip_weights(rng, d, x, last, labels):
    if last:
        return _ridge(x, labels, d["n"])
    k = int(np.prod(x.shape[1:]))
    w = rng.standard_normal((d["n"], k)) / math.sqrt(k)
    w *= 4.0 / (x.reshape(len(x), -1) @ w.T).std()
    return [w, rng.normal(0.0, 0.5, d["n"])]


def make_weights(net, seed=0, n_calib=12):
    """Trained-like weights {layer: [blobs]} (float32), calibrated layer by layer on synthetic scenes."""
    rng = np.random.default_rng(1000 + seed)
    chw, layers = spec(net)
    x, labels = calibration_batch(n_calib, chw[1:], seed=7000 + seed)
    blobs, weights = {"data": x}, {}                 # calibration in float32: statistics only
    last_ip = [d["name"] for d in layers if d["type"] == "InnerProduct"][-1]
    for d in layers:
        xin, y = blobs[d["bottom"][0]], None
        if d["type"] == "Convolution":
            weights[d["name"]], y = _conv_weights(rng, d, xin)
        elif d["type"] == "BatchNorm":
            weights[d["name"]] = _bn_weights(rng, xin)
        elif d["type"] == "Scale":
            weights[d["name"]] = [rng.lognormal(0.0, 0.3, xin.shape[1]), rng.normal(0.0, 0.4, xin.shape[1])]
        elif d["type"] == "InnerProduct":
            weights[d["name"]] = _ip_weights(rng, d, xin, d["name"] == last_ip, labels)
        weights[d["name"]] = [np.asarray(a, np.float32) for a in weights.get(d["name"], [])]
        if y is None:
            y = _forward_layer(d, blobs, [a.astype(np.float32) for a in weights.get(d["name"], [])])
        blobs[d["top"]] = y
    return {k: v for k, v in weights.items() if v}


def save_weights(weights, path):
    """The documented .npz layout: one array per blob, keyed ``<layer>/<i>``."""
    np.savez(path, **{f"{k}/{i}": a for k, v in weights.items() for i, a in enumerate(v)})


def load_weights(path):
    """The .npz written by :func:`save_weights`, back as {layer: [blobs]}."""
    out: dict = {}
    with np.load(path) as z:
        for key in sorted(z.files, key=lambda k: (k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1]))):
            out.setdefault(key.rsplit("/", 1)[0], []).append(z[key])
    return out
