"""A second, independent corpus of hand-written Keras ports of small Caffe nets, with classic bugs injected one
at a time (or a few at once) through a ``cfg`` dict of overrides.

Nets (written here, every tensor with distinct sizes on every axis):

* ``ALPHA``: data 2x3x14x10 -> conv1 (6, k3, s2, p1: 7x5) -> relu1 -> pool1 (MAX k2 s2, ceil: 4x3) -> bn1 + sc1
  -> conv2 (8, k3, p1, group 2) -> relu2 -> fc1 (9) -> relu3 (negative_slope 0.1) -> fc2 (7) -> fc3 (7, square).
* ``BETA``: data 2x4x9x7 -> ca (5, k1) / cb (3, k3, p1) -> cat (Concat ca, cb) -> norm (LRN 3) -> fc (6).

Styles (none uses the Caffe layer names as Keras names except where stated):

* ``seq``: ``keras.Sequential`` with default names, fused activations (``Conv2D(activation="relu")``), a default-named
  ``BatchNormalization``, NHWC ``Flatten`` with the Dense rows permuted CHW -> HWC.
* ``func``: functional API with arbitrary names (``block1_conv``, ``c_1``, ...), separate ``ReLU`` layers, the
  ``BatchNormalization`` named after the Caffe Scale layer (``sc1``).
* ``nested``: a ``Sequential`` backbone (conv1 .. bn) used as one layer of a functional model, the
  ``BatchNormalization`` named after the Caffe BatchNorm (``bn1``).
* ``nchw``: ``data_format="channels_first"`` layers on an NCHW input (no row permutation needed before the Dense).
"""

from __future__ import annotations

import keras
import numpy as np

import harness.caffe
import harness.weights

L = keras.layers

ALPHA_TEXT = """
name: "alpha"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 14 dim: 10 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "bn1" type: "BatchNorm" bottom: "pool1" top: "bn1" }
layer { name: "sc1" type: "Scale" bottom: "bn1" top: "bn1" scale_param { bias_term: true } }
layer { name: "conv2" type: "Convolution" bottom: "bn1" top: "conv2"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1 group: 2 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "fc1" type: "InnerProduct" bottom: "conv2" top: "fc1" inner_product_param { num_output: 9 } }
layer { name: "relu3" type: "ReLU" bottom: "fc1" top: "fc1" relu_param { negative_slope: 0.1 } }
layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2" inner_product_param { num_output: 7 } }
layer { name: "fc3" type: "InnerProduct" bottom: "fc2" top: "fc3" inner_product_param { num_output: 7 } }
"""

BETA_TEXT = """
name: "beta"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 4 dim: 9 dim: 7 } } }
layer { name: "ca" type: "Convolution" bottom: "data" top: "ca" convolution_param { num_output: 5 kernel_size: 1 } }
layer { name: "cb" type: "Convolution" bottom: "data" top: "cb"
        convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }
layer { name: "cat" type: "Concat" bottom: "ca" bottom: "cb" top: "cat" }
layer { name: "norm" type: "LRN" bottom: "cat" top: "norm"
        lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2.0 } }
layer { name: "fc" type: "InnerProduct" bottom: "norm" top: "fc" inner_product_param { num_output: 6 } }
"""

_NETS: dict = {}


def net(which: str = "alpha"):
    if which not in _NETS:
        text = ALPHA_TEXT if which == "alpha" else BETA_TEXT
        _NETS[which] = harness.weights.random_weights(harness.caffe.load_net_text(text), seed=11 if which == "alpha"
                                                      else 23)
    return _NETS[which]


def inputs(which: str = "alpha", scale: float = 1.0):
    shape = net(which).inputs["data"]
    return {"data": (np.random.default_rng(5).standard_normal(shape) * scale).astype(np.float32)}


def _blobs(n, name):
    return [np.asarray(b, np.float32) for b in n.layer(name).blobs]


# --------------------------------------------------------------------------------------------- weight transforms
def conv_kernel(w, bug=None, groups=1):
    if bug == "kernel_reshaped":
        return w.reshape(w.shape[2], w.shape[3], w.shape[1], w.shape[0])
    if bug == "kernel_flipped":
        w = w[:, :, ::-1, ::-1]
    if bug == "channel_order":
        w = w[:, ::-1]
    if bug == "group_order":
        g = w.shape[0] // groups
        w = np.concatenate([w[i * g:(i + 1) * g] for i in reversed(range(groups))])
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def dense_kernel(w, chw=None, bug=None):
    """Caffe (N, K) -> Keras (K, N); ``chw``: the (C, H, W) of a 4-D bottom read by an NHWC Flatten."""
    if bug == "dense_reshaped":
        return np.ascontiguousarray(w.reshape(w.shape[1], w.shape[0]))
    if bug == "dense_not_transposed":
        return w
    if chw is not None and bug != "flatten_order":
        c, h, ww = chw
        return np.ascontiguousarray(w.reshape(-1, c, h, ww).transpose(2, 3, 1, 0).reshape(c * h * ww, -1))
    return np.ascontiguousarray(w.T)


def bias(b, bug=None):
    return np.zeros_like(b) if bug == "missing_bias" else b


# ------------------------------------------------------------------------------------------------------ ALPHA
def _bugs(cfg, layer):
    """The weight bug cfg assigns to a Caffe layer: cfg = {"conv1": "kernel_reshaped", ...}."""
    return cfg.get(layer)


def alpha_weights(cfg):
    n = net("alpha")
    w1, b1 = _blobs(n, "conv1")
    w2, b2 = _blobs(n, "conv2")
    mean, var, factor = _blobs(n, "bn1")
    gamma, beta = _blobs(n, "sc1")
    f = 1.0 if cfg.get("bn1") == "bn_scale_factor" else (0.0 if factor[0] == 0 else 1.0 / factor[0])
    if cfg.get("bn1") == "bn_scale_split":
        gamma, beta = np.ones_like(gamma), np.zeros_like(beta)
    if cfg.get("bn1") == "bn_stats_missing":  # only the Scale loaded: statistics left at Keras's 0 / 1
        mean, var, f = np.zeros_like(mean), np.ones_like(var), 1.0
    fw = {}
    for name in ("fc1", "fc2", "fc3"):
        w, b = _blobs(n, name)
        fw[name] = (dense_kernel(w, (8, 4, 3) if name == "fc1" and not cfg.get("nchw") else None,
                                 _bugs(cfg, name)), bias(b, _bugs(cfg, name)))
    return {
        "conv1": [conv_kernel(w1, _bugs(cfg, "conv1")), bias(b1, _bugs(cfg, "conv1"))],
        "bn": [gamma, beta, mean * f, var * f],
        "conv2": [conv_kernel(w2, _bugs(cfg, "conv2"), groups=2), bias(b2, _bugs(cfg, "conv2"))],
        "fc1": list(fw["fc1"]), "fc2": list(fw["fc2"]), "fc3": list(fw["fc3"]),
    }


def _act(cfg, layer, default):
    """Activation layer for Caffe layer ``layer`` (relu1/relu2: ReLU, relu3: LeakyReLU(0.1))."""
    if layer == "relu3":
        return L.LeakyReLU(negative_slope=cfg.get("relu3_slope", 0.1), **default)
    if cfg.get(layer) == "activation_clipped":
        return L.ReLU(max_value=6.0, **default)
    return L.ReLU(**default)


def _conv1_layers(cfg, fmt="channels_last", fused=False, names=None):
    names = names or {}
    pad = cfg.get("conv1_padding", "caffe")
    out = []
    if pad == "caffe":
        out.append(L.ZeroPadding2D(1, data_format=fmt, **names.get("pad1", {})))
        padding = "valid"
    else:
        padding = "same"
    act = "relu" if fused and not cfg.get("relu1") else None
    out.append(L.Conv2D(6, 3, strides=2, padding=padding, data_format=fmt, activation=act,
                        **names.get("conv1", {})))
    return out


def _pool(cfg, fmt="channels_last", **kw):
    """pool1: Caffe's ceil overhang is TF 'same' here (7x5 -> 4x3, one row/column at the bottom/right; after the
    ReLU the -inf / zero padding question does not arise).  Bug "offset": the overhang padded at the top/left."""
    if cfg.get("pool_padding") == "offset":
        return [L.ZeroPadding2D(((1, 0), (1, 0)), data_format=fmt), L.MaxPooling2D(2, 2, data_format=fmt, **kw)]
    return [L.MaxPooling2D(2, 2, padding="same", data_format=fmt, **kw)]


def alpha_model(style: str, cfg: dict | None = None):
    cfg = dict(cfg or {})
    if style == "nchw":
        cfg["nchw"] = True
    wts = alpha_weights(cfg)
    eps = cfg.get("eps", 1e-5)
    named: dict = {}
    if style == "seq":
        fused1 = not cfg.get("relu1")
        layers = [keras.Input((14, 10, 3))] + _conv1_layers(cfg, fused=True)
        if not fused1:
            layers.append(_act(cfg, "relu1", {}))
        layers += _pool(cfg) + [L.BatchNormalization(epsilon=eps),
                   L.Conv2D(8, 3, padding="same", groups=2, activation="relu"),
                   L.Flatten(), L.Dense(9), L.LeakyReLU(negative_slope=cfg.get("relu3_slope", 0.1)),
                   L.Dense(7), L.Dense(7)]
        m = keras.Sequential(layers)
        weighted = [l for l in m.layers if l.weights]
        for l, k in zip(weighted, ["conv1", "bn", "conv2", "fc1", "fc2", "fc3"]):
            l.set_weights(wts[k])
        return m
    if style == "func":
        x = inp = keras.Input((14, 10, 3), name="image")
        for l in _conv1_layers(cfg, names={"pad1": {"name": "p_1"}, "conv1": {"name": "block1_conv"}}):
            x = l(x)
        x = _act(cfg, "relu1", {"name": "block1_act"})(x)
        for l in _pool(cfg, name="block1_pool"):
            x = l(x)
        x = L.BatchNormalization(epsilon=eps, name="sc1")(x)
        x = L.Conv2D(8, 3, padding="same", groups=2, name="c_1")(x)
        x = L.ReLU(name="a_1")(x)
        x = L.Flatten(name="flat")(x)
        x = L.Dense(9, name="head_a")(x)
        x = _act(cfg, "relu3", {"name": "leaky"})(x)
        x = L.Dense(7, name="head_b")(x)
        x = L.Dense(7, name="logits")(x)
        m = keras.Model(inp, x, name="func_port")
        named = {"block1_conv": "conv1", "sc1": "bn", "c_1": "conv2", "head_a": "fc1", "head_b": "fc2",
                 "logits": "fc3"}
    elif style == "nested":
        back = keras.Sequential([keras.Input((14, 10, 3))] + _conv1_layers(cfg, fused=not cfg.get("relu1"))
                                + ([_act(cfg, "relu1", {})] if cfg.get("relu1") else [])
                                + _pool(cfg) + [L.BatchNormalization(epsilon=eps, name="bn1")], name="backbone")
        inp = keras.Input((14, 10, 3), name="pixels")
        x = back(inp)
        x = L.Conv2D(8, 3, padding="same", groups=2, activation="relu", name="stage2")(x)
        x = L.Flatten()(x)
        x = L.Dense(9, name="fc_a")(x)
        x = _act(cfg, "relu3", {})(x)
        x = L.Dense(7, name="fc_b")(x)
        x = L.Dense(7, name="fc_c")(x)
        m = keras.Model(inp, x, name="nested_port")
        conv1 = [l for l in back.layers if isinstance(l, L.Conv2D)][0]
        conv1.set_weights(wts["conv1"])
        back.get_layer("bn1").set_weights(wts["bn"])
        named = {"stage2": "conv2", "fc_a": "fc1", "fc_b": "fc2", "fc_c": "fc3"}
    elif style == "nchw":
        f = "channels_first"
        x = inp = keras.Input((3, 14, 10), name="nchw_in")
        for l in _conv1_layers(cfg, fmt=f, fused=not cfg.get("relu1")):
            x = l(x)
        if cfg.get("relu1"):
            x = _act(cfg, "relu1", {})(x)
        for l in _pool(cfg, fmt=f):
            x = l(x)
        x = L.BatchNormalization(axis=1, epsilon=eps, name="norm_1")(x)
        x = L.Conv2D(8, 3, padding="same", groups=2, data_format=f, name="conv_g")(x)
        x = L.Activation("relu")(x)
        x = L.Flatten(name="flat_chw")(x)  # flattens the NCHW tensor in C, H, W order: Caffe's rows as they are
        x = L.Dense(9, name="d1")(x)
        x = _act(cfg, "relu3", {})(x)
        x = L.Dense(7, name="d2")(x)
        x = L.Dense(7, name="d3")(x)
        m = keras.Model(inp, x, name="nchw_port")
        conv1 = [l for l in m.layers if isinstance(l, L.Conv2D)][0]
        conv1.set_weights(wts["conv1"])
        named = {"norm_1": "bn", "conv_g": "conv2", "d1": "fc1", "d2": "fc2", "d3": "fc3"}
    else:
        raise ValueError(style)
    for lname, key in named.items():
        m.get_layer(lname).set_weights(wts[key])
    return m


# ------------------------------------------------------------------------------------------------------- BETA
class CaffeLRN(keras.layers.Layer):
    """Across-channel LRN on NHWC, written the TF way: ``alpha`` is TF's (Caffe's alpha / local_size)."""

    def __init__(self, depth_radius=1, bias=1.0, alpha=1.0, beta=0.75, **kw):
        super().__init__(**kw)
        self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta

    def call(self, x):
        r = self.depth_radius
        sq = keras.ops.square(x)
        padded = keras.ops.pad(sq, [[0, 0], [0, 0], [0, 0], [r, r]])
        c = x.shape[-1]
        s = sum(padded[..., i:i + c] for i in range(2 * r + 1))
        return x / keras.ops.power(self.bias + self.alpha * s, self.beta)

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias, "alpha": self.alpha,
                "beta": self.beta}


def beta_model(cfg: dict | None = None):
    """Functional, arbitrary names; the LRN is the port's own Layer subclass."""
    cfg = dict(cfg or {})
    n = net("beta")
    x = inp = keras.Input((9, 7, 4), name="in_0")
    a = L.Conv2D(5, 1, name="branch_1x1")(x)
    b = L.Conv2D(3, 3, padding="same", name="branch_3x3")(x)
    parts = [b, a] if cfg.get("concat_order") else [a, b]
    y = L.Concatenate(axis=-1, name="merge")(parts)
    alpha = cfg.get("lrn_alpha", 0.5 / 3)
    y = CaffeLRN(depth_radius=1, bias=2.0, alpha=alpha, beta=0.75, name="lrn_0")(y)
    y = L.Flatten(name="flat_0")(y)
    y = L.Dense(6, name="out_0")(y)
    m = keras.Model(inp, y, name="beta_port")
    wa, ba = _blobs(n, "ca")
    wb, bb = _blobs(n, "cb")
    wf, bf = _blobs(n, "fc")
    m.get_layer("branch_1x1").set_weights([conv_kernel(wa), ba])
    m.get_layer("branch_3x3").set_weights([conv_kernel(wb), bb])
    m.get_layer("out_0").set_weights([dense_kernel(wf, (8, 9, 7)), bf])
    return m
