"""Hand-written Keras ports of :data:`support.nets.SMALL_NET` (default Keras layer names, fused activations, explicit
helper layers), correct or with one bug, and the files the CLI, plugin and artefact tests run on."""

from __future__ import annotations

import numpy as np

from support.nets import SMALL_NET, save_weights_npz, small_net


def keras_port(net, *, bug: str | None = None, fused: bool = True, names: bool = False):
    """A hand-written Keras port of SMALL_NET.  ``bug``: None (correct), "reshape" (conv kernel reshaped instead of
    transposed), "scale1e-4" (fc weights off by a relative 1e-4), "floor_pool" (floor rounding), "bn_epsilon" (BatchNormalization epsilon 1e-3 instead of Caffe's 1e-5),
    "flatten_order" (fc rows left in Caffe's C, H, W flatten order behind an NHWC Flatten)."""
    import keras
    from keras import layers as L

    conv = net.layer("conv1")
    w, b = (np.asarray(x, np.float32) for x in conv.blobs)
    if bug == "reshape":
        kw = w.reshape(3, 3, 3, 8)
    else:
        kw = w.transpose(2, 3, 1, 0)
    bn = net.layer("bn1")
    f = float(bn.blobs[2].reshape(-1)[0])
    f = 0.0 if f == 0 else 1.0 / f
    mean, var = bn.blobs[0] * f, bn.blobs[1] * f
    gamma, beta = net.layer("scale1").blobs
    fw, fb = net.layer("fc").blobs
    inp = keras.Input((13, 11, 3), name="data" if names else None)
    x = L.ZeroPadding2D(1)(inp)
    if fused:
        c = L.Conv2D(8, 3, strides=2, activation="relu", name="conv1" if names else None)
        x = c(x)
    else:
        c = L.Conv2D(8, 3, strides=2, name="conv1" if names else None)
        x = c(x)
        x = L.ReLU(name="relu1" if names else None)(x)
    c.set_weights([kw, b])
    if bug != "floor_pool":
        x = L.ZeroPadding2D(((0, 1), (0, 1)))(x)  # ceil rounding: ReLU output >= 0, so 0 never wins
    x = L.MaxPooling2D(3, 2)(x)
    bnl = L.BatchNormalization(epsilon=1e-3 if bug == "bn_epsilon" else 1e-5, name="bn1" if names else None)
    x = bnl(x)
    bnl.set_weights([gamma, beta, mean, var])
    H, W, C = (int(d) for d in x.shape[1:])
    if bug == "floor_pool":  # the port author cut the Caffe rows down to what the floor-rounded map holds
        fk = fw.reshape(10, C, 3, 3)[:, :, :H, :W].transpose(2, 3, 1, 0).reshape(H * W * C, 10)
    elif bug == "flatten_order":
        fk = fw.reshape(10, C * H * W).T
    else:
        fk = fw.reshape(10, C, H, W).transpose(2, 3, 1, 0).reshape(H * W * C, 10)  # rows in NHWC flatten order
    if bug == "scale1e-4":
        fk = fk * (1 + 1e-4)
    x = L.Flatten()(x)
    d = L.Dense(10, name="fc" if names else None)
    x = d(x)
    d.set_weights([fk, fb])
    x = L.Softmax(name="prob" if names else None)(x)
    return keras.Model(inp, x)


def write_port_files(d, ports: dict[str, str | None]):
    """SMALL_NET as ``d/net.prototxt``, its seeded weights as ``d/w.npz`` (``<layer>/<i>``) and one ``.keras`` port per
    entry of ``ports`` (file stem -> bug, None for the correct port): the files the CLI and plugin tests run on.
    Returns the seeded net."""
    from pathlib import Path

    d = Path(d)
    net = small_net()
    (d / "net.prototxt").write_text(SMALL_NET)
    save_weights_npz(net, d / "w.npz")
    for stem, bug in ports.items():
        keras_port(net, bug=bug).save(d / f"{stem}.keras")
    return net
