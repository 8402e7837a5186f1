"""Hand-written Keras ports of real Caffe nets, written the way users write them, with and without classic bugs.

Nets: golden cases (real-Caffe weights from fixtures/golden) and LeNet from fixtures/zoo with seeded weights (batch 2,
28x24 input: distinct sizes on every axis).  Every builder takes ``bug`` (None: the correct port) and a ``style``;
``CASES`` lists (case id, net, style, bug, expected first divergent Caffe layer, expected first cause).  Styles:

* ``seq``: ``keras.Sequential`` with default layer names, activations fused (``Conv2D(..., activation="relu")``,
  ``Dense(..., activation="softmax")``), ``Permute((3, 1, 2))`` + ``Flatten`` before the first ``Dense``;
* ``seq_sep``: Sequential, separate ``ReLU``/``Activation``/``Softmax`` layers, ``Dropout`` present, NHWC ``Flatten``
  with the Dense rows reordered instead of a Permute;
* ``func_named``: functional API with the Caffe layer names, an ``InputLayer`` named differently from Caffe's input;
* ``func``: functional API, default names;
* ``nchw``: ``data_format="channels_first"`` layers on an NCHW input;
* ``nchw_permute``: an NCHW input turned NHWC by a ``Permute((2, 3, 1))`` first layer;
* ``func_dyn``: functional with an ``Input((None, None, 3))`` (any image size);
* ``func_act`` / ``seq_act``: default names, ``Activation("relu")`` / ``Activation("softmax")`` layers.
"""

from __future__ import annotations

import keras
import numpy as np

from support.golden import ZOO, golden
from support.sabotage import LRN  # what a hand port writes for Caffe's across-channel LRN (TF's LRN on NHWC)

L = keras.layers
# 32x26: conv1 28x22, pool1 14x11, conv2 10x7, pool2 5x4 (ceil; floor would give 5x3).  (28x24 made conv1's output
# width equal its 20 filters, where Keras 3's channels_first Conv2D adds the bias along the width axis.)
LENET_SHAPE = (2, 1, 32, 26)




# --------------------------------------------------------------------------------------------------------- nets
def golden_net(case: str):
    """The golden case's net with its weights (``support.golden``)."""
    return golden(case)[0]


def golden_inputs(case: str) -> dict[str, np.ndarray]:
    """The golden case's inputs as float32 (``support.golden``)."""
    return {k: v.astype(np.float32) for k, v in golden(case)[2].items()}


def lenet_net():
    from harness.caffe import load_net
    from harness.weights import random_weights

    return random_weights(load_net(ZOO / "lenet.prototxt",
                                   input_shapes={"data": LENET_SHAPE}), 3)


def lenet_inputs() -> dict[str, np.ndarray]:
    return {"data": np.random.default_rng(4).standard_normal(LENET_SHAPE).astype(np.float32)}


# ----------------------------------------------------------------------------------------------------- weights
def conv_kernel(w: np.ndarray, bug: str | None = None) -> np.ndarray:
    """Caffe OIHW -> Keras HWIO, or the classic way of getting it wrong."""
    w = np.asarray(w, np.float32)
    o, i, kh, kw = w.shape
    if bug == "kernel_reshaped":
        return w.reshape(kh, kw, i, o)
    if bug == "kernel_flipped":
        return w[:, :, ::-1, ::-1].transpose(2, 3, 1, 0)
    if bug == "kernel_axes_swapped":
        return w.transpose(3, 2, 1, 0)
    if bug == "channel_order":
        return w[:, ::-1].transpose(2, 3, 1, 0)
    return w.transpose(2, 3, 1, 0)


def dense_kernel(w: np.ndarray, chw: tuple[int, int, int] | None = None, *, nhwc_flatten: bool = False,
                 bug: str | None = None) -> np.ndarray:
    """Caffe (N, K) -> Keras (K, N).  ``nhwc_flatten``: rows reordered for a Flatten of an NHWC map of ``chw``."""
    w = np.asarray(w, np.float32)
    n, k = w.shape
    if nhwc_flatten and bug != "flatten_order":  # columns in H, W, C order
        c, h, ww = chw
        w = w.reshape(n, c, h, ww).transpose(0, 2, 3, 1).reshape(n, k)
    if bug == "dense_reshaped":
        return w.reshape(k, n)
    if bug == "dense_not_transposed":
        return w
    return w.T


def bn_weights(net, bn: str, scale: str | None, *, bug: str | None = None) -> list[np.ndarray]:
    mean, var, fac = (np.asarray(b, np.float32).reshape(-1) for b in net.layer(bn).blobs[:3])
    f = 0.0 if fac[0] == 0 else 1.0 / fac[0]
    if bug != "bn_scale_factor":
        mean, var = mean * f, var * f
    if scale is None:
        return [mean, var]
    sb = [np.asarray(b, np.float32).reshape(-1) for b in net.layer(scale).blobs]
    gamma = sb[0]
    beta = sb[1] if len(sb) > 1 else np.zeros_like(gamma)
    return [gamma, beta, mean, var]


def _wb(net, name):
    return [np.asarray(b, np.float32) for b in net.layer(name).blobs]


def _chain(inp, layers: list, *, sequential: bool) -> keras.Model:
    """The port's layers one after another: as a Sequential, or called in turn on ``inp`` (functional)."""
    if sequential:
        return keras.Sequential([inp] + layers)
    x = inp
    for lay in layers:
        x = lay(x)
    return keras.Model(inp, x)


def _name(style, caffe_name):
    return caffe_name if style == "func_named" else None


# -------------------------------------------------------------------------------------------------------- LeNet
def lenet_port(net, style: str = "seq", bug: str | None = None) -> keras.Model:
    """LeNet (conv1 20 5x5, pool1 MAX 2/2, conv2 50 5x5, pool2 MAX 2/2 ceil, ip1 500 + relu1, ip2 10, prob) on
    32x26.  pool2 on 10x7: Caffe's ceil gives 5x4 = TF 'same' (one padded column after, never winning)."""
    cf = style == "nchw"
    fmt = {"data_format": "channels_first"} if cf else {}
    n = lambda c: _name(style, c)  # noqa: E731
    layers: list = []
    if style in ("nchw", "nchw_permute"):
        inp = keras.Input((1, 32, 26), name="data" if style == "nchw" else None)
        if style == "nchw_permute":
            layers.append(L.Permute((2, 3, 1)))
    else:
        inp = keras.Input((32, 26, 1), name="image" if style == "func_named" else None)
    if bug == "input_layout":  # the NCHW array reshaped (not transposed) to NHWC inside the model
        layers += [L.Permute((3, 1, 2)), L.Reshape((32, 26, 1))]
    c1 = L.Conv2D(20, 5, name=n("conv1"), activation="relu" if bug == "extra_relu" else None, **fmt)
    c2 = L.Conv2D(50, 5, name=n("conv2"), use_bias=bug != "missing_bias_conv",
                  **({"dtype": "float16"} if bug == "reduced_precision" else {}), **fmt)
    layers += [c1, L.MaxPooling2D(2, name=n("pool1"), **fmt)]
    if bug == "extra_relu_layer":  # a ReLU after pool1 where LeNet has none
        layers.append(L.ReLU())
    layers += [c2, L.MaxPooling2D(2, padding="valid" if bug == "pool_rounding" else "same", name=n("pool2"), **fmt)]
    sep = style in ("seq_sep", "seq_act")
    nhwc_flat = sep
    if cf:
        layers.append(L.Flatten())  # channels_first: Flatten of NCHW = Caffe's order
    elif nhwc_flat or bug == "flatten_order":  # flatten_order: the Permute forgotten, the rows not reordered
        layers.append(L.Flatten())
    else:
        layers += [L.Permute((3, 1, 2)), L.Flatten()]
    d1 = L.Dense(500, activation=None if sep or bug == "no_relu" else "leaky_relu" if bug == "relu_slope" else "relu",
                 name=n("ip1"))
    layers.append(d1)
    if sep:
        act = L.LeakyReLU(negative_slope=0.1) if bug == "relu_slope" else \
            L.Activation("relu") if style == "seq_act" else L.ReLU()
        layers += [act, L.Dropout(0.5)]
    d2 = L.Dense(10, activation=None if (sep or bug == "no_softmax") else "softmax", name=n("ip2"),
                 use_bias=bug != "missing_bias")
    layers.append(d2)
    if sep and bug != "no_softmax":
        layers.append(L.Activation("softmax") if style == "seq_act" else L.Softmax(name=n("prob")))
    if bug == "extra_softmax":
        layers.append(L.Softmax())
    model = _chain(inp, layers, sequential=style.startswith("seq") or style.startswith("nchw"))
    w1, b1 = _wb(net, "conv1")
    c1.set_weights([conv_kernel(w1, bug if bug in ("kernel_reshaped", "channel_order") else None), b1])
    w2, b2 = _wb(net, "conv2")
    k2 = conv_kernel(w2, bug if bug in ("kernel_flipped", "kernel_axes_swapped") else None)
    c2.set_weights([k2.astype(c2.dtype)] + ([b2.astype(c2.dtype)] if bug != "missing_bias_conv" else []))
    f1, fb1 = _wb(net, "ip1")
    w_ = 3 if bug == "pool_rounding" else 4  # the floor-rounded map holds fewer columns: the port cut the rows
    f1 = f1.reshape(500, 50, 5, 4)[..., :w_].reshape(500, -1)
    d1.set_weights([dense_kernel(f1, (50, 5, w_), nhwc_flatten=nhwc_flat, bug=bug), fb1])
    f2, fb2 = _wb(net, "ip2")
    d2.set_weights([dense_kernel(f2)] + ([fb2] if bug != "missing_bias" else []))
    return model


# ---------------------------------------------------------------------------------------------------- legacy_v1
def legacy_port(net, style: str = "seq", bug: str | None = None) -> keras.Model:
    """legacy_v1: conv1 8 5x5/2 + relu1, norm1 LRN(5, 0.5, 0.75), pool1 MAX 3/2 ceil, conv2 6 3x3 p1 group 2 + relu2,
    fc3 10 on the 4-D blob, drop3, prob.  Input (1, 3, 23, 19)."""
    n = lambda c: _name(style, c)  # noqa: E731
    inp = keras.Input((23, 19, 3), name="data" if style == "func_named" else None)
    c1 = L.Conv2D(8, 5, strides=2, activation="relu", name=n("conv1"))
    alpha = 0.5 if bug == "lrn_alpha_scaling" else 0.5 / 5
    lrn = LRN(depth_radius=2, bias=2.0 if bug == "lrn_k" else 1.0, alpha=alpha, beta=0.75, name=n("norm1"))
    # conv1 map 10x8: ceil MAX 3/2 gives 5x4 = TF 'same' here (pads after only, and TF's pads never win)
    pool = L.MaxPooling2D(3, 2, padding="valid" if bug == "pool_rounding" else "same", name=n("pool1"))
    c2 = L.Conv2D(6, 3, padding="same", groups=2, activation="relu", name=n("conv2"))
    fc = L.Dense(10, name=n("fc3"))
    layers = [c1, lrn, pool, c2, L.Permute((3, 1, 2)), L.Flatten(), fc, L.Dropout(0.5), L.Softmax(name=n("prob"))]
    model = _chain(inp, layers, sequential=style == "seq")
    w1, b1 = _wb(net, "conv1")
    c1.set_weights([conv_kernel(w1), b1])
    w2, b2 = _wb(net, "conv2")
    if bug == "group_order":  # the two groups' filters swapped
        w2 = np.concatenate([w2[3:], w2[:3]])
        b2 = np.concatenate([b2[3:], b2[:3]])
    c2.set_weights([conv_kernel(w2), b2])
    fw, fb = _wb(net, "fc3")
    h, w = (4, 3) if bug == "pool_rounding" else (5, 4)
    fw = fw.reshape(10, 6, 5, 4)[:, :, :h, :w].reshape(10, -1)  # the rows the floor-rounded map holds
    fc.set_weights([dense_kernel(fw), fb])
    return model


# ------------------------------------------------------------------------------------------------- resnet_block
def resnet_port(net, style: str = "func", bug: str | None = None) -> keras.Model:
    """resnet_block: conv1 8 7x7/2 p3 (no bias) + bn1/scale1 + relu1, pool1 MAX 3/2 ceil (9x8 -> 4x4), res_a 1x1 +
    BN + relu, res_b 3x3 p1 + BN, add, relu_add, gap, fc 5, prob.  Input (2, 3, 17, 15)."""
    n = lambda c: _name(style, c)  # noqa: E731
    eps = 1e-3 if bug == "bn_epsilon" else 1e-5
    if style == "nchw_permute":  # the model takes Caffe's NCHW array and turns it NHWC itself
        inp = keras.Input((3, 17, 15))
        x = L.Reshape((17, 15, 3))(inp) if bug == "input_layout" else L.Permute((2, 3, 1))(inp)
    else:
        inp = keras.Input((None, None, 3) if style == "func_dyn" else (17, 15, 3),
                          name="input_1" if style == "func_named" else None)
        x = inp
        if bug == "input_layout":  # the NCHW array reshaped (not transposed) to NHWC inside the model
            x = L.Reshape((17, 15, 3))(L.Permute((3, 1, 2))(x))
    x = L.ZeroPadding2D(3)(x)
    c1 = L.Conv2D(8, 7, strides=2, use_bias=False, name=n("conv1"))
    x = c1(x)
    bn1 = L.BatchNormalization(epsilon=eps, name=n("bn1"))
    x = bn1(x)
    x = L.ReLU(name=n("relu1"))(x) if style != "func_act" else L.Activation("relu")(x)
    if bug == "pool_same":  # MaxPooling2D('same') on 9x8 gives 5x4, Caffe's ceil gives 4x4
        x = L.MaxPooling2D(3, 2, padding="same", name=n("pool1"))(x)
    else:  # ceil on 9x8 = one extra column after (ReLU'd values >= 0: the zero never wins)
        x = L.ZeroPadding2D(((0, 0), (0, 1)))(x)
        x = L.MaxPooling2D(3, 2, name=n("pool1"))(x)
    ca = L.Conv2D(4, 1, use_bias=False, name=n("res_a"))
    y = ca(x)
    bna = L.BatchNormalization(epsilon=1e-5, center=bug != "bn_no_beta", name=n("bn_a"))
    y = bna(y)
    y = L.ReLU(name=n("relu_a"))(y) if style != "func_act" else L.Activation("relu")(y)
    cb = L.Conv2D(8, 3, padding="same", use_bias=False, name=n("res_b"))
    y = cb(y)
    bnb = L.BatchNormalization(epsilon=1e-5, name=n("bn_b"))
    y = bnb(y)
    x = L.Add(name=n("add"))([x, y])
    x = L.ReLU(name=n("relu_add"))(x) if style != "func_act" else L.Activation("relu")(x)
    x = L.GlobalAveragePooling2D(name=n("gap"))(x)
    fc = L.Dense(5, activation="softmax", name=n("fc"))
    x = fc(x)
    model = keras.Model(inp, x)
    c1.set_weights([conv_kernel(_wb(net, "conv1")[0], bug if bug in ("kernel_reshaped", "kernel_flipped",
                                                                     "channel_order") else None)])
    w1 = bn_weights(net, "bn1", "scale1", bug=bug)
    bn1.set_weights([w1[1], w1[0], *w1[2:]] if bug == "bn_weight_order" else w1)  # (beta, gamma, ...) swapped
    ca.set_weights([conv_kernel(_wb(net, "res_a")[0])])
    wa = bn_weights(net, "bn_a", "scale_a")
    bna.set_weights(wa if bug != "bn_no_beta" else [wa[0], *wa[2:]])  # Scale's bias (beta) left out
    cb.set_weights([conv_kernel(_wb(net, "res_b")[0])])
    bnb.set_weights(bn_weights(net, "bn_b", "scale_b"))
    fw, fb = _wb(net, "fc")
    fc.set_weights([dense_kernel(fw.reshape(5, -1)), fb])
    return model




def golden_subnet(case: str, layers: list[str]):
    """The golden net cut down to its input and ``layers`` (with their real-Caffe weights): for ports of the
    branches Keras can express."""
    from google.protobuf import text_format

    from harness.caffe import load_net_text

    net = golden_net(case)
    keep = [lay for lay in net.layers if lay.kind == "Input" or lay.name in layers]
    text = f'name: "{case}_sub"\n' + "".join(
        "layer {\n" + text_format.MessageToString(lay.param) + "}\n" for lay in keep)
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith(("blobs", "phase")))
    return load_net_text(text, weights={lay.name: list(lay.blobs) for lay in keep if lay.blobs})


def _model(inp, outs, style):
    return keras.Model(inp, outs if len(outs) > 1 else outs[0])


# --------------------------------------------------------------------------------------------------- conv_basic
def conv_basic_port(net, style: str = "func", bug: str | None = None) -> keras.Model:
    """conv_basic (input (2, 3, 9, 11)): conv_k3p1 4 3x3 p1 -> conv_1x1_nobias 6; conv_rect 5 3x2 stride (2, 1) pad
    (1, 0); conv_s2_k7p3 4 7x7/2 p3 (TF 'same' is symmetric here: odd sizes); conv_s4_k11 2 5x5/4.  Four outputs."""
    n = lambda c: _name(style, c)  # noqa: E731
    inp = keras.Input((9, 11, 3), name="data" if style == "func_named" else None)
    c = {}
    c["conv_k3p1"] = L.Conv2D(4, 3, padding="same", name=n("conv_k3p1"))
    c["conv_1x1_nobias"] = L.Conv2D(6, 1, use_bias=False, name=n("conv_1x1_nobias"))
    if bug == "same_padding":
        c["conv_rect"] = L.Conv2D(5, (3, 2), strides=(2, 1), padding="same", name=n("conv_rect"))
        rect_in = inp
    else:
        c["conv_rect"] = L.Conv2D(5, (3, 2), strides=(2, 1), name=n("conv_rect"))
        rect_in = L.ZeroPadding2D(((2, 0), (0, 0)) if bug == "padding_offset" else ((1, 1), (0, 0)))(inp)
    c["conv_s2_k7p3"] = L.Conv2D(4, 7, strides=2, padding="same", name=n("conv_s2_k7p3"))
    c["conv_s4_k11"] = L.Conv2D(2, 5, strides=4, use_bias=bug != "missing_bias", name=n("conv_s4_k11"))
    a = c["conv_k3p1"](inp)
    outs = [c["conv_rect"](rect_in), c["conv_1x1_nobias"](a), c["conv_s2_k7p3"](inp), c["conv_s4_k11"](inp)]
    model = _model(inp, outs, style)
    bugs = {"conv_1x1_nobias": "kernel_reshaped", "conv_s2_k7p3": "kernel_flipped"}
    for name, lay in c.items():
        wb = _wb(net, name)
        kb = conv_kernel(wb[0], bug if bugs.get(name) == bug else None)
        lay.set_weights([kb] + ([wb[1]] if len(wb) > 1 and lay.use_bias else []))
    return model


# ------------------------------------------------------------------------------------------ conv_group_dilation
CONV_GROUP_LAYERS = ["conv_g2", "conv_dil2", "conv_dw", "conv_dw_mult2"]


def conv_group_port(net, style: str = "func", bug: str | None = None) -> keras.Model:
    """conv_group_dilation (input (2, 4, 10, 13)): conv_g2 6 3x3 p1 group 2 (Conv2D(groups=2)); conv_dil2 3 3x3
    dilation 2 pad (2, 1); conv_dw 4 3x3/2 p1 group 4 and conv_dw_mult2 8 3x3 group 4 (DepthwiseConv2D, kernel
    W.reshape(C, m, kh, kw).transpose(2, 3, 0, 1)).  (conv_g2_dil_s2, stride 2 with dilation 2, has no Keras
    counterpart: Keras refuses strides > 1 with dilation_rate > 1; use the sub-net CONV_GROUP_LAYERS.)"""
    n = lambda c: _name(style, c)  # noqa: E731
    inp = keras.Input((10, 13, 4), name="data" if style == "func_named" else None)
    g2 = L.Conv2D(6, 3, padding="same", groups=2, name=n("conv_g2"))
    dil = L.Conv2D(3, 3, dilation_rate=2, name=n("conv_dil2"))
    dw = L.DepthwiseConv2D(3, strides=2, name=n("conv_dw"))
    dw2 = L.DepthwiseConv2D(3, depth_multiplier=2, name=n("conv_dw_mult2"))
    a = g2(inp)
    outs = [a, dil(L.ZeroPadding2D(((2, 2), (1, 1)))(inp)), dw(L.ZeroPadding2D(1)(inp)), dw2(inp)]
    model = _model(inp, outs, style)
    w, b = _wb(net, "conv_g2")
    if bug == "group_order":
        w, b = np.concatenate([w[3:], w[:3]]), np.concatenate([b[3:], b[:3]])
    g2.set_weights([conv_kernel(w), b])
    w, b = _wb(net, "conv_dil2")
    dil.set_weights([conv_kernel(w, bug if bug == "kernel_flipped" else None), b])
    for lay, name, m in ((dw, "conv_dw", 1), (dw2, "conv_dw_mult2", 2)):
        w, b = _wb(net, name)
        if bug == "kernel_reshaped" and name == "conv_dw":
            k = w.reshape(3, 3, 4, m)
        else:
            k = w.reshape(4, m, 3, 3).transpose(2, 3, 0, 1)
        lay.set_weights([k, b])
    return model


# ------------------------------------------------------------------------------------------------------- deconv
DECONV_LAYERS = ["deconv_s2_k4_p1", "deconv_rect_nobias", "deconv_dil"]  # Keras' Conv2DTranspose has no groups


def deconv_port(net, style: str = "func", bug: str | None = None) -> keras.Model:
    """deconv branches (input (2, 4, 5, 6)) as Conv2DTranspose (kernel = Caffe's (C_in, C_out, kh, kw) blob
    .transpose(2, 3, 1, 0)) + Cropping2D for Caffe's pad: deconv_s2_k4_p1 3 4x4/2 p1; deconv_rect_nobias 2 3x2
    stride (3, 1) pad (1, 0); deconv_dil 2 3x3 dilation 2 pad 1."""
    n = lambda c: _name(style, c)  # noqa: E731
    inp = keras.Input((5, 6, 4))
    d1 = L.Conv2DTranspose(3, 4, strides=2, name=n("deconv_s2_k4_p1"))
    d2 = L.Conv2DTranspose(2, (3, 2), strides=(3, 1), use_bias=False, name=n("deconv_rect_nobias"))
    d3 = L.Conv2DTranspose(2, 3, dilation_rate=2, name=n("deconv_dil"))
    crop1 = ((1, 1), (1, 1)) if bug != "padding_offset" else ((2, 0), (2, 0))
    outs = [L.Cropping2D(crop1)(d1(inp)), L.Cropping2D(((1, 1), (0, 0)))(d2(inp)),
            L.Cropping2D(1)(d3(inp))]
    model = _model(inp, outs, style)
    for lay, name in ((d1, "deconv_s2_k4_p1"), (d2, "deconv_rect_nobias"), (d3, "deconv_dil")):
        wb = _wb(net, name)
        w = wb[0]
        if bug == "kernel_flipped" and name == "deconv_s2_k4_p1":
            w = w[:, :, ::-1, ::-1]
        lay.set_weights([w.transpose(2, 3, 1, 0)] + wb[1:])
    return model


# ------------------------------------------------------------------------------------------------ inner_product
def inner_product_port(net, style: str = "func", bug: str | None = None) -> keras.Model:
    """inner_product (input (2, 3, 4, 5)): conv 4 3x3 p1; fc_implicit 6 on the 4-D blob (Permute + Flatten + Dense);
    flat + fc_after_flatten 5 (NHWC Flatten, rows reordered); fc_axis2 3 with axis 2 (per channel over H*W: Permute
    to C, H, W + Reshape + Dense); fc_transpose 7 (transpose: true: the blob (K, N) is the Keras kernel)."""
    n = lambda c: _name(style, c)  # noqa: E731
    inp = keras.Input((4, 5, 3))
    conv = L.Conv2D(4, 3, padding="same", name=n("conv"))
    x = conv(inp)
    chw = L.Permute((3, 1, 2))(x)
    f_impl = L.Dense(6, name=n("fc_implicit"))
    f_flat = L.Dense(5, name=n("fc_after_flatten"))
    f_ax2 = L.Dense(3, name=n("fc_axis2"))
    f_tr = L.Dense(7, use_bias=False, name=n("fc_transpose"))
    outs = [f_impl(L.Flatten()(chw)), f_flat(L.Flatten()(x)), f_ax2(L.Reshape((4, 20))(chw)),
            f_tr(L.Flatten()(chw))]
    model = _model(inp, outs, style)
    w, b = _wb(net, "conv")
    conv.set_weights([conv_kernel(w), b])
    w, b = _wb(net, "fc_implicit")
    f_impl.set_weights([dense_kernel(w, bug=bug if bug == "dense_reshaped" else None), b])
    w, b = _wb(net, "fc_after_flatten")
    f_flat.set_weights([dense_kernel(w, (4, 4, 5), nhwc_flatten=True, bug=bug if bug == "flatten_order" else None),
                        b])
    w, b = _wb(net, "fc_axis2")
    f_ax2.set_weights([dense_kernel(w), b])
    (w,) = _wb(net, "fc_transpose")
    f_tr.set_weights([w])
    return model


# ------------------------------------------------------------------------------------------------------ pooling
def pool_port(net, style: str = "func", bug: str | None = None) -> keras.Model:
    """Pooling sub-nets of pool_max / pool_floor: each Caffe Pooling layer of ``net`` as the Keras layer a port
    writes; ``style`` "same" uses MaxPooling2D(padding='same') for every ceil MAX pooling (equal to Caffe where
    the output sizes agree and padding is 0)."""
    from harness.params import pool_geometry

    ins = net.inputs["data"]
    inp = keras.Input((ins[2], ins[3], ins[1]))
    outs = []
    for lay in net.layers:
        if lay.kind != "Pooling":
            continue
        g = pool_geometry(lay)
        cls = L.MaxPooling2D if g.method == "MAX" else L.AveragePooling2D
        if g.global_pooling:
            p = (L.GlobalMaxPooling2D if g.method == "MAX" else L.GlobalAveragePooling2D)(keepdims=True)
            outs.append(p(inp))
        elif style == "same" or (bug == "pool_avg_divisor" and g.method == "AVE"):
            outs.append(cls(g.kernel, g.stride, padding="same")(inp))
        elif any(g.pad):
            x = L.ZeroPadding2D(g.pad)(inp)  # exact for AVE (Caffe counts pads); pool_pad_value for MAX
            outs.append(cls(g.kernel, g.stride)(x))
        else:
            outs.append(cls(g.kernel, g.stride, padding="same" if bug == "pool_rounding" else "valid")(inp))
    return _model(inp, outs, style)


# ---------------------------------------------------------------------------------------------- inception_block
# pool_out (AVE 5/3 ceil on 7x6, the clipped last window's divisor excluding the overhang) has no Keras layer
INCEPTION_LAYERS = ["pool_in", "b1", "b1_relu", "b2_reduce", "b2_relu_r", "b2", "b3_reduce", "b3", "b4_pool", "b4",
                    "concat"]


def inception_port(net, style: str = "func", bug: str | None = None) -> keras.Model:
    """inception_block up to its Concatenate (input (1, 8, 15, 13)): pool_in MAX 3/2 ceil (15x13 -> 7x6, = floor
    here), branches 1x1 (+ReLU) / 1x1 (+ReLU) 3x3 p1 / 1x1 5x5 p2 / MAX 3/1 p1 + 1x1, concat on channels."""
    n = lambda c: _name(style, c)  # noqa: E731
    inp = keras.Input((15, 13, 8))
    x = L.MaxPooling2D(3, 2, name=n("pool_in"))(inp)
    convs = {}

    def conv(name, f, k, act=False):
        c = L.Conv2D(f, k, padding="same", activation="relu" if act else None, name=n(name))
        convs[name] = c
        return c

    if style == "func_reordered":  # branches written in another order than the prototxt's
        b3 = conv("b3", 3, 5)(conv("b3_reduce", 2, 1)(x))
        b2 = conv("b2", 5, 3)(conv("b2_reduce", 3, 1, act=True)(x))
        b1 = conv("b1", 4, 1, act=True)(x)
    else:
        b1 = conv("b1", 4, 1, act=True)(x)
        b2 = conv("b2", 5, 3)(conv("b2_reduce", 3, 1, act=True)(x))
        b3 = conv("b3", 3, 5)(conv("b3_reduce", 2, 1)(x))
    if bug == "pool_pad_value":
        p4 = L.MaxPooling2D(3, 1, name=n("b4_pool"))(L.ZeroPadding2D(1)(x))
    else:
        p4 = L.MaxPooling2D(3, 1, padding="same", name=n("b4_pool"))(x)
    b4 = conv("b4", 2, 1)(p4)
    out = L.Concatenate(name=n("concat"))([b1, b3, b2, b4] if bug == "concat_order" else [b1, b2, b3, b4])
    model = keras.Model(inp, out)
    for name, c in convs.items():
        w, b = _wb(net, name)
        c.set_weights([conv_kernel(w, bug if bug == "kernel_flipped" and name == "b3" else None), b])
    return model


# ------------------------------------------------------------------------------------------------------ AlexNet
ALEXNET_SHAPE = (2, 3, 103, 87)  # conv1 24x20, pool1 12x10, pool2 6x5, pool5 3x2 (TF 'same' would give 3x3)


def alexnet_net():
    """fixtures/zoo AlexNet (groups, LRN, ceil pooling, dropout) at 103x87 with fc6/fc7 72 wide and 10 classes (the
    full 4096-wide heads only cost time), seeded weights."""
    from harness.caffe import load_net_text
    from harness.weights import random_weights

    text = (ZOO / "alexnet.prototxt").read_text()
    text = text.replace("num_output: 4096", "num_output: 72").replace("num_output: 1000", "num_output: 10")
    return random_weights(load_net_text(text, input_shapes={"data": ALEXNET_SHAPE}), 5)


def alexnet_inputs() -> dict[str, np.ndarray]:
    return {"data": np.random.default_rng(6).uniform(0, 1, ALEXNET_SHAPE).astype(np.float32)}


def alexnet_port(net, style: str = "seq", bug: str | None = None) -> keras.Model:
    """AlexNet as a Sequential with default names: fused ReLUs, LRN as a custom layer (alpha / local_size),
    MaxPooling2D('same') where it equals Caffe's ceil (pool1, pool2) and ZeroPadding2D + valid where it does not
    (pool5: ReLU'd values, the zero never wins), Conv2D(groups=2), Permute + Flatten, Dropout, Dense(softmax)."""
    n = lambda c: _name(style, c)  # noqa: E731

    def lrn(name):
        return LRN(depth_radius=2, bias=1.0, alpha=1e-4 if bug == "lrn_alpha_scaling" and name == "norm1"
                   else 1e-4 / 5, beta=0.75, name=n(name))

    convs = {"conv1": L.Conv2D(96, 11, strides=4, activation="relu", name=n("conv1")),
             "conv2": L.Conv2D(256, 5, groups=2, activation="relu", name=n("conv2")),
             "conv3": L.Conv2D(384, 3, padding="same", activation="relu", name=n("conv3")),
             "conv4": L.Conv2D(384, 3, padding="same", groups=2, activation="relu", name=n("conv4")),
             "conv5": L.Conv2D(256, 3, padding="same", groups=2, activation="relu", name=n("conv5"))}
    fcs = {"fc6": L.Dense(72, activation="relu", name=n("fc6")), "fc7": L.Dense(72, activation="relu", name=n("fc7")),
           "fc8": L.Dense(10, activation="softmax", name=n("fc8"))}
    layers = [keras.Input(ALEXNET_SHAPE[2:] + ALEXNET_SHAPE[1:2]), convs["conv1"]]
    if bug != "no_lrn":  # some ports leave LRN out ("it barely matters")
        layers.append(lrn("norm1"))
    layers += [L.MaxPooling2D(3, 2, padding="same", name=n("pool1")),
               L.ZeroPadding2D(2), convs["conv2"], lrn("norm2"), L.MaxPooling2D(3, 2, padding="same", name=n("pool2")),
               convs["conv3"], convs["conv4"], convs["conv5"],
               L.ZeroPadding2D(((0, 1), (0, 0))), L.MaxPooling2D(3, 2, name=n("pool5")),
               L.Permute((3, 1, 2)), L.Flatten(), fcs["fc6"], L.Dropout(0.5), fcs["fc7"], L.Dropout(0.5), fcs["fc8"]]
    model = keras.Sequential(layers)
    for name, c in convs.items():
        w, b = _wb(net, name)
        if bug == "group_order" and name == "conv2":
            h = len(w) // 2
            w, b = np.concatenate([w[h:], w[:h]]), np.concatenate([b[h:], b[:h]])
        c.set_weights([conv_kernel(w, bug if bug in ("kernel_reshaped", "channel_order") and name == "conv1"
                                   else None), b])
    dense_bug = {"dense_reshaped": "fc6", "dense_not_transposed": "fc7"}  # fc7 is 72x72: the blob fits untransposed
    for name, d in fcs.items():
        w, b = _wb(net, name)
        d.set_weights([dense_kernel(w, bug=bug if dense_bug.get(bug or "") == name else None), b])
    return model


# -------------------------------------------------------------------------------------------------- activations
ACT_LAYERS = ["relu", "leaky", "prelu", "prelu_shared", "elu", "sigmoid", "tanh"]


def activations_port(net, style: str = "func", bug: str | None = None) -> keras.Model:
    """Parallel element-wise branches of one shape from the input (2, 3, 4, 5): ReLU, LeakyReLU(0.1),
    PReLU(shared_axes=[1, 2]) per channel and shared, ELU(0.7), sigmoid, tanh; ``style`` "func_reordered" writes
    them in another order than the prototxt (matching must then use the layers' parameters)."""
    inp = keras.Input((4, 5, 3))
    layers = {"relu": L.ReLU(), "leaky": L.LeakyReLU(negative_slope=0.3 if bug == "relu_slope" else 0.1),
              "prelu": L.PReLU(shared_axes=[1, 2]), "prelu_shared": L.PReLU(shared_axes=[1, 2, 3]),
              "elu": L.ELU(alpha=0.7), "sigmoid": L.Activation("sigmoid"), "tanh": L.Activation("tanh")}
    order = list(layers)
    if style == "func_reordered":
        order = ["tanh", "leaky", "prelu_shared", "relu", "sigmoid", "prelu", "elu"]
    outs = {name: layers[name](inp) for name in order}
    model = keras.Model(inp, [outs[name] for name in order])
    layers["prelu"].set_weights([np.asarray(net.layer("prelu").blobs[0], np.float32).reshape(1, 1, 3)])
    layers["prelu_shared"].set_weights([np.asarray(net.layer("prelu_shared").blobs[0], np.float32).reshape(1, 1, 1)])
    return model


# ---------------------------------------------------------------------------------------------- batchnorm_scale
BN_LAYERS = ["bn", "bn_inplace", "scale"]


def batchnorm_port(net, style: str = "func", bug: str | None = None) -> keras.Model:
    """batchnorm_scale's in-place chain on blob 'bn' (input (2, 3, 5, 7)): bn BatchNorm (eps 1e-5, factor blob not 1)
    -> bn_inplace BatchNorm eps 1e-3 -> scale Scale with bias: BatchNormalization(center=False, scale=False), then
    BatchNormalization(epsilon=1e-3) carrying Scale's gamma and beta."""
    n = lambda c: _name(style, c)  # noqa: E731
    inp = keras.Input((5, 7, 3))
    b1 = L.BatchNormalization(epsilon=1e-5, center=False, scale=False, name=n("bn"))
    b2 = L.BatchNormalization(epsilon=1e-5 if bug == "bn_epsilon" else 1e-3, name=n("bn_inplace"))
    model = keras.Model(inp, b2(b1(inp)))
    b1.set_weights(bn_weights(net, "bn", None, bug=bug if bug == "bn_scale_factor" else None))
    b2.set_weights(bn_weights(net, "bn_inplace", "scale"))
    return model


# ---------------------------------------------------------------------------------------------------- MobileNet
MOBILENET_SHAPE = (1, 3, 64, 48)  # even sizes: TF 'same' on the stride-2 3x3 convolutions pads (0, 1), Caffe (1, 1)


def mobilenet_net():
    """fixtures/zoo MobileNet v1 (27 Conv+BatchNorm+Scale+ReLU blocks, depthwise = group == channels, global AVE
    pooling, 1x1 conv classifier, Softmax over channels) at 64x48 with 10 classes, seeded calibrated weights."""
    from harness.caffe import load_net_text
    from harness.weights import random_weights

    text = (ZOO / "mobilenet_v1.prototxt").read_text().replace("num_output: 1000",
                                                                                       "num_output: 10")
    return random_weights(load_net_text(text, input_shapes={"data": MOBILENET_SHAPE}), 7, calibrate=True)


def mobilenet_inputs() -> dict[str, np.ndarray]:
    return {"data": np.random.default_rng(8).standard_normal(MOBILENET_SHAPE).astype(np.float32)}


MOBILENET_BUG_LAYER = {"same_padding": "conv2_2/dw", "kernel_reshaped": "conv3_1/dw", "dense_kernel": "conv4_1/sep",
                       "bn_epsilon": "conv1/bn", "missing_bias": "fc7"}


def mobilenet_port(net, style: str = "seq", bug: str | None = None) -> keras.Model:
    """MobileNet v1 written layer by layer the way keras.applications does: ZeroPadding2D + DepthwiseConv2D
    (kernel W.reshape(C, 1, 3, 3).transpose(2, 3, 0, 1)), Conv2D 1x1, BatchNormalization(epsilon=1e-5) for
    BatchNorm + Scale, ReLU, GlobalAveragePooling2D(keepdims=True), Conv2D 1x1 classifier, Softmax.  ``bug`` goes
    into the layer MOBILENET_BUG_LAYER names (bn_epsilon: every BatchNormalization keeps Keras' 1e-3)."""
    from harness.params import conv_geometry

    n = lambda c: _name(style, c.replace("/", "_"))  # noqa: E731
    bug_at = MOBILENET_BUG_LAYER.get(bug or "")
    layers: list = [keras.Input(MOBILENET_SHAPE[2:] + MOBILENET_SHAPE[1:2])]
    setters = []
    lays = net.layers
    for idx, lay in enumerate(lays):
        if lay.kind == "Convolution":
            g = conv_geometry(lay)
            w = np.asarray(lay.blobs[0], np.float32)
            c_in = w.shape[1] * g.group
            here = lay.name == bug_at
            pad = g.pad
            if any(pad):
                if bug == "same_padding" and here:
                    padding = "same"
                else:
                    layers.append(L.ZeroPadding2D(pad))
                    padding = "valid"
            else:
                padding = "valid"
            if g.group > 1 and g.group == c_in:
                m = g.num_output // c_in
                k = L.DepthwiseConv2D(g.kernel, strides=g.stride, padding=padding, depth_multiplier=m,
                                      use_bias=g.bias_term, name=n(lay.name))
                kern = w.reshape(3, 3, c_in, m) if bug == "kernel_reshaped" and here else \
                    w.reshape(c_in, m, *g.kernel).transpose(2, 3, 0, 1)
            elif style == "gap_dense" and lay.name == "fc7":  # GlobalAveragePooling2D() + Dense for the 1x1 conv
                k = L.Dense(g.num_output, use_bias=not (bug == "missing_bias" and here))
                kern = dense_kernel(w.reshape(g.num_output, -1))
            else:
                k = L.Conv2D(g.num_output, g.kernel, strides=g.stride, padding=padding, groups=g.group,
                             use_bias=g.bias_term and not (bug == "missing_bias" and here), name=n(lay.name))
                kern = conv_kernel(w, "kernel_reshaped" if bug == "dense_kernel" and here else None)
            layers.append(k)
            bias = [np.asarray(lay.blobs[1], np.float32)] if k.use_bias else []
            setters.append((k, [kern, *bias]))
        elif lay.kind == "BatchNorm":
            scale = lays[idx + 1].name if idx + 1 < len(lays) and lays[idx + 1].kind == "Scale" else None
            eps = 1e-3 if bug == "bn_epsilon" else float(lay.p("batch_norm_param").eps)
            k = L.BatchNormalization(epsilon=eps, center=scale is not None, scale=scale is not None,
                                     name=n(lay.name))
            layers.append(k)
            setters.append((k, bn_weights(net, lay.name, scale)))
        elif lay.kind == "ReLU":
            layers.append(L.ReLU(name=n(lay.name)))
        elif lay.kind == "Pooling":
            layers.append(L.GlobalAveragePooling2D(keepdims=style != "gap_dense", name=n(lay.name)))
        elif lay.kind == "Softmax":
            layers.append(L.Softmax(name=n(lay.name)))
    model = keras.Sequential(layers)
    for k, ws in setters:
        k.set_weights(ws)
    return model
