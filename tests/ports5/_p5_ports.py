"""Hand-written Keras 3 functional ports of the corpus nets, the way users write them (runs on any Keras backend).

Two styles, both correct:

* ``named``: every Keras layer named after its Caffe layer; explicit ``ZeroPadding2D`` + ``padding="valid"``; one
  ``BatchNormalization`` for Caffe's BatchNorm + Scale (running statistics divided by Caffe's factor blob); ceil-mode
  pooling as a ``ZeroPadding2D`` on the bottom/right (exact: every pooled blob follows a ReLU) + ``MaxPooling2D``;
  ``GlobalAveragePooling2D(keepdims=True)``; ``Permute((3, 1, 2))`` + ``Flatten`` before an InnerProduct on a 4-D
  blob (Caffe flattens C, H, W).
* ``fused``: Keras' default names; ReLU fused into the ``Conv2D``/``Dense`` before it; ``GlobalAveragePooling2D()``
  to (N, C); a plain (H, W, C) ``Flatten`` with the Dense kernel's rows permuted to that order.

Kernels are transposed OIHW -> HWIO (``w.transpose(2, 3, 1, 0)``), Dense kernels (out, in) -> (in, out).
Sabotages (``named`` only): ``perturb=(layer, rel)`` multiplies that layer's kernel by 1 + rel * (+-1, seeded);
``bn_eps=1e-3`` gives every BatchNormalization Keras' default epsilon instead of Caffe's 1e-5; ``move_stride=True``
moves res2a_branch2a's stride 2 onto res2a_branch2b (torchvision's "v1.5" habit).
"""

from __future__ import annotations

import keras
import numpy as np

from _p5_nets import pool_size, spec

L = keras.layers


def _name(style, name):
    return name if style == "named" else None


def _fused_relu(layers, i, style):
    """True when the next layer is the in-place ReLU of this one's top and the style fuses it."""
    if style != "fused" or i + 1 >= len(layers):
        return False
    nxt = layers[i + 1]
    return nxt["type"] == "ReLU" and nxt["bottom"] == [layers[i]["top"]]


def _conv(t, d, w, style, fuse, opts):
    k, s, p = d["k"], d["s"], d["p"]
    if opts.get("move_stride") and d["name"] == "res2a_branch2a":
        s = 1
    if opts.get("move_stride") and d["name"] == "res2a_branch2b":
        s = 2
    if p:
        t = L.ZeroPadding2D(p, name=_name(style, d["name"] + "_pad"))(t)
    kernel = w[0].transpose(2, 3, 1, 0).copy()
    if opts.get("perturb") and opts["perturb"][0] == d["name"]:
        sign = np.where(np.random.default_rng(99).random(kernel.shape) < 0.5, -1.0, 1.0)
        kernel = (kernel * (1.0 + opts["perturb"][1] * sign)).astype(np.float32)
    layer = L.Conv2D(d["n"], k, strides=s, padding="valid", use_bias=d["bias"], activation="relu" if fuse else None,
                     name=_name(style, d["name"]))
    y = layer(t)
    layer.set_weights([kernel] + ([w[1]] if d["bias"] else []))
    return y


def _batchnorm(t, d, w, scale, style, opts):
    f = w[2][0]
    eps = opts.get("bn_eps", d["eps"])
    layer = L.BatchNormalization(epsilon=eps, momentum=0.9, name=_name(style, d["name"]))
    y = layer(t)
    layer.set_weights([scale[0], scale[1], (w[0] / f).astype(np.float32), (w[1] / f).astype(np.float32)])
    return y


def _pool(t, d, style):
    if d["glob"]:
        return L.GlobalAveragePooling2D(keepdims=style == "named", name=_name(style, d["name"]))(t)
    h, w = t.shape[1], t.shape[2]
    k, s = d["k"], d["s"]
    eh, ew = (pool_size(h, k, s) - 1) * s + k - h, (pool_size(w, k, s) - 1) * s + k - w
    if eh or ew:
        t = L.ZeroPadding2D(((0, eh), (0, ew)), name=_name(style, d["name"] + "_ceil"))(t)
    return L.MaxPooling2D(k, s, padding="valid", name=_name(style, d["name"]))(t)


def _dense(t, d, w, style, fuse):
    kernel = w[0].T
    if len(t.shape) == 4 and (t.shape[1], t.shape[2]) != (1, 1):
        h, wd, c = t.shape[1], t.shape[2], t.shape[3]
        if style == "named":
            t = L.Permute((3, 1, 2), name=d["name"] + "_chw")(t)
        else:
            kernel = w[0].reshape(d["n"], c, h, wd).transpose(2, 3, 1, 0).reshape(h * wd * c, d["n"])
    if len(t.shape) != 2:
        t = L.Flatten(name=_name(style, d["name"] + "_flatten"))(t)
    layer = L.Dense(d["n"], activation="relu" if fuse else None, name=_name(style, d["name"]))
    y = layer(t)
    layer.set_weights([np.ascontiguousarray(kernel), w[1]])
    return y


def build_port(net, weights, style="named", **opts):
    """A Keras functional model (NHWC input) computing the Caffe net ``net`` with ``weights``."""
    chw, layers = spec(net)
    inp = keras.Input((chw[1], chw[2], chw[0]), name="data")
    blobs, skip = {"data": inp}, set()
    for i, d in enumerate(layers):
        if i in skip:
            continue
        t, w = blobs[d["bottom"][0]], weights.get(d["name"])
        fuse = d["type"] in ("Convolution", "InnerProduct") and _fused_relu(layers, i, style)
        if fuse:
            skip.add(i + 1)
        ty = d["type"]
        if ty == "Convolution":
            y = _conv(t, d, w, style, fuse, opts)
        elif ty == "BatchNorm":
            y = _batchnorm(t, d, w, weights[layers[i + 1]["name"]], style, opts)
            skip.add(i + 1)
        elif ty == "ReLU":
            y = L.ReLU(name=_name(style, d["name"]))(t)
        elif ty == "Pooling":
            y = _pool(t, d, style)
        elif ty == "Eltwise":
            y = L.Add(name=_name(style, d["name"]))([blobs[b] for b in d["bottom"]])
        elif ty == "InnerProduct":
            y = _dense(t, d, w, style, fuse)
        elif ty == "Softmax":
            y = L.Softmax(name=_name(style, d["name"]))(t)
        else:
            raise ValueError(ty)
        blobs[d["top"]] = y
    return keras.Model(inp, blobs[layers[-1]["top"]], name=f"{net}_{style}_port")
