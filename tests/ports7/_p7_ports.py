"""Published-style Keras ports of the MTCNN cascade, with the trained weights, correct and with one bug each.

Written as people publish them: ``keras.Model`` subclasses with ``call()`` (facenet-pytorch's module layout:
``conv1``, ``prelu1``, ``pool1``, ..., ``dense4``, ``softmax5_1``), a Functional model wrapping a subclassed backbone,
and Functional rewrites (ipazc/mtcnn's habits: ``MaxPooling2D(padding='same')`` where Caffe's ceil rounding is TF's ceil(H / s) and
``'valid'`` where Caffe's windows fit exactly,
``PReLU(shared_axes=[1, 2])``, ``Permute((2, 1, 3))`` before ``Flatten`` because the Dense rows are in (W, H, C)
order, a fused ``activation="softmax"`` on the classification head, and head names that are not the prototxt's).

Every port reads the same facenet state dict the Caffe nets are built from (``_p7_mtcnn.state_dict``), the way a
port author converts it: conv kernels ``w.transpose(2, 3, 1, 0)`` (OIHW -> HWIO), Dense ``w.T``, PReLU alphas as
(1, 1, C).  A bug is one keyword of ``build``: ``reshape=LAYER`` (``w.reshape(kh, kw, ci, co)``), ``shared=LAYER``
(one alpha for every channel: their mean), ``permute=False`` (the Permute dropped), ``pool="valid"`` (floor rounding).

This module is imported by name by the harness (``--custom-objects _p7_ports:PNet``), so it must stay importable
from tests/ports7 with nothing but Keras and NumPy.
"""

from __future__ import annotations

import numpy as np
import keras
from keras import layers as L

PACKAGE = "ports7"


def _prelu(name, shared=False):
    return L.PReLU(shared_axes=[1, 2, 3] if shared else [1, 2], name=name)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PNet(keras.Model):
    """facenet-pytorch's PNet as a Keras subclass: returns (box regression, face probability), any input size."""

    def __init__(self, pool="same", shared=None, overrides=None, **kwargs):
        super().__init__(**kwargs)
        self.pool, self.shared = pool, shared
        ov = overrides or {}     # {attribute: layer}: a layer edited as a fix text says (live objects only)
        self.conv1 = L.Conv2D(10, 3, name="conv1")
        self.prelu1 = _prelu("prelu1", shared == "prelu1")
        self.pool1 = ov.get("pool1") or L.MaxPooling2D(2, 2, padding=pool, name="pool1")
        self.conv2 = L.Conv2D(16, 3, name="conv2")
        self.prelu2 = _prelu("prelu2", shared == "prelu2")
        self.conv3 = L.Conv2D(32, 3, name="conv3")
        self.prelu3 = _prelu("prelu3", shared == "prelu3")
        self.conv4_1 = L.Conv2D(2, 1, name="conv4_1")
        self.softmax4_1 = L.Softmax(axis=-1, name="softmax4_1")
        self.conv4_2 = L.Conv2D(4, 1, name="conv4_2")

    def call(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))

    def get_config(self):
        return {**super().get_config(), "pool": self.pool, "shared": self.shared}


class _Trunk(keras.Model):
    """R-Net / O-Net convolutional stages + Permute + Flatten + the first Dense + PReLU (shared by both)."""

    stages: tuple = ()
    dense: tuple = ()

    def __init__(self, permute=True, shared=None, overrides=None, **kwargs):
        super().__init__(**kwargs)
        self.permute_, self.shared = permute, shared
        ov = overrides or {}     # {attribute: layer}: a layer edited as a fix text says (live objects only)
        self.seq = []
        for i, (n, k, pool, padding) in enumerate(self.stages, 1):
            conv = L.Conv2D(n, k, name=f"conv{i}")
            prelu = ov.get(f"prelu{i}") or _prelu(f"prelu{i}", shared == f"prelu{i}")
            setattr(self, f"conv{i}", conv), setattr(self, f"prelu{i}", prelu)
            self.seq += [conv, prelu]
            if pool:
                p = L.MaxPooling2D(pool, 2, padding=padding, name=f"pool{i}")
                setattr(self, f"pool{i}", p)
                self.seq.append(p)
        self.permute = ov.get("permute") or (L.Permute((2, 1, 3), name="permute") if permute else None)
        self.flatten = L.Flatten(name="flatten")
        d, n = self.dense
        self.fc = L.Dense(n, name=f"dense{d}")
        self.fc_prelu = ov.get(f"prelu{d}") or L.PReLU(shared_axes=[1] if shared == f"prelu{d}" else None,
                                                       name=f"prelu{d}")

    def trunk(self, x):
        for layer in self.seq:
            x = layer(x)
        if self.permute is not None:
            x = self.permute(x)
        return self.fc_prelu(self.fc(self.flatten(x)))

    def call(self, x):
        return self.trunk(x)

    def get_config(self):
        return {**super().get_config(), "permute": self.permute_, "shared": self.shared}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RNetBackbone(_Trunk):
    # Caffe's ceil rounding: 22 -> 11 is TF 'same' (ceil(22 / 2)); 9 -> 4 is 'valid' (exact windows)
    stages = ((28, 3, 3, "same"), (48, 3, 3, "valid"), (64, 2, 0, None))
    dense = (4, 128)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ONetBackbone(_Trunk):
    # 46 -> 23 is 'same'; 21 -> 10 and 8 -> 4 are exact windows ('valid')
    stages = ((32, 3, 3, "same"), (64, 3, 3, "valid"), (64, 3, 2, "valid"), (128, 2, 0, None))
    dense = (5, 256)


class _Heads:
    """facenet-pytorch's heads after the trunk: ``heads`` = ((name, units), ...), the first the 2-way face score
    (a Softmax after it), the others regressions; ``call`` returns (regressions..., face probability)."""

    heads: tuple = ()

    def _make_heads(self):
        self.head_layers = [L.Dense(n, name=name) for name, n in self.heads]
        self.softmax = L.Softmax(axis=-1, name="softmax" + self.heads[0][0][len("dense"):])

    def call(self, x):
        x = self.trunk(x)
        cls, *regressions = self.head_layers
        return (*[h(x) for h in regressions], self.softmax(cls(x)))


@keras.saving.register_keras_serializable(package=PACKAGE)
class RNet(_Heads, RNetBackbone):
    """facenet-pytorch's RNet as one subclass: returns (box regression, face probability)."""

    heads = (("dense5_1", 2), ("dense5_2", 4))

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._make_heads()


@keras.saving.register_keras_serializable(package=PACKAGE)
class ONet(_Heads, ONetBackbone):
    """facenet-pytorch's ONet as one subclass: returns (box regression, landmarks, face probability)."""

    heads = (("dense6_1", 2), ("dense6_2", 4), ("dense6_3", 10))

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._make_heads()


@keras.saving.register_keras_serializable(package=PACKAGE)
class PNetOps(PNet):
    """The P-Net subclass with the softmax called as a function in call() (keras.ops.softmax), no Softmax layer."""

    def call(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), keras.ops.softmax(self.conv4_1(x), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class RNetOps(RNet):
    """The R-Net subclass that permutes and flattens with keras.ops (transpose + reshape) instead of layers, and
    calls keras.ops.softmax; permute=False: the reshape without the transpose (the bug)."""

    def call(self, x):
        for layer in self.seq:
            x = layer(x)
        if self.permute_:
            x = keras.ops.transpose(x, (0, 2, 1, 3))
        x = self.fc_prelu(self.fc(keras.ops.reshape(x, (-1, 576))))
        cls, box = self.head_layers
        return box(x), keras.ops.softmax(cls(x), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class RGBToBGR(keras.layers.Layer):
    """A weight-free preprocessing layer: reverses the channel axis (an OpenCV-habit port feeding BGR)."""

    def call(self, x):
        return keras.ops.flip(x, axis=-1)


CUSTOM = {c.__name__: c for c in (PNet, RNetBackbone, ONetBackbone, RNet, ONet, PNetOps, RNetOps, RGBToBGR)}

# --------------------------------------------------------------------------------------------- functional ports


def pnet_functional(pool="same", shared=None, swapped_heads=True):
    """ipazc-style P-Net, Functional, any size; heads named the OTHER way round from det1 (conv4-1 = 4 channels)
    when swapped_heads, the 2-channel head with a fused softmax."""
    i = keras.Input((None, None, 3), name="input_1")
    x = L.Conv2D(10, 3, name="conv1")(i)
    x = _prelu("PReLU1", shared == "PReLU1")(x)
    x = L.MaxPooling2D(2, 2, padding=pool, name="pool1")(x)
    x = _prelu("PReLU2", shared == "PReLU2")(L.Conv2D(16, 3, name="conv2")(x))
    x = _prelu("PReLU3", shared == "PReLU3")(L.Conv2D(32, 3, name="conv3")(x))
    box, cls = ("conv4-1", "conv4-2") if swapped_heads else ("conv4-2", "conv4-1")
    b = L.Conv2D(4, 1, name=box)(x)
    a = L.Conv2D(2, 1, activation="softmax", name=cls)(x)
    return keras.Model(i, [b, a], name="pnet_ipazc")


def onet_functional(permute=True, swapped_heads=True):
    """ipazc-style O-Net, Functional, Permute before Flatten; heads named rotated (conv6-1 = 4, conv6-2 = 10,
    conv6-3 = the 2-channel softmax head) when swapped_heads.  permute: True (Permute((2, 1, 3))), False (dropped)
    or a Permute layer of one's own."""
    i = keras.Input((48, 48, 3), name="input_1")
    x = i
    for k, (n, ks, pool, padding) in enumerate(ONetBackbone.stages, 1):
        x = L.PReLU(shared_axes=[1, 2], name=f"prelu{k}")(L.Conv2D(n, ks, name=f"conv{k}")(x))
        if pool:
            x = L.MaxPooling2D(pool, 2, padding=padding, name=f"pool{k}")(x)
    if permute is True:
        x = L.Permute((2, 1, 3), name="permute")(x)
    elif permute:
        x = permute(x)
    x = L.PReLU(name="prelu5")(L.Dense(256, name="conv5")(L.Flatten(name="flatten")(x)))
    names = ("conv6-1", "conv6-2", "conv6-3") if swapped_heads else ("conv6-2", "conv6-3", "conv6-1")
    b = L.Dense(4, name=names[0])(x)
    m = L.Dense(10, name=names[1])(x)
    a = L.Dense(2, activation="softmax", name=names[2])(x)
    return keras.Model(i, [b, m, a], name="onet_ipazc")


def rnet_nested(permute=True, shared=None, preprocess=None, overrides=None):
    """A Functional model wrapping the subclassed R-Net backbone (its own heads outside); preprocess: None,
    "rescale" (MTCNN's (x - 127.5) / 128 as a leading Rescaling) or "bgr" (an RGB->BGR flip, then the Rescaling)."""
    i = keras.Input((24, 24, 3), name="image")
    x = i
    if preprocess == "bgr":
        x = RGBToBGR(name="to_bgr")(x)
    if preprocess:
        x = L.Rescaling(0.0078125, offset=-127.5 * 0.0078125, name="mtcnn_norm")(x)
    f = RNetBackbone(permute=permute, shared=shared, overrides=overrides, name="backbone")(x)
    a = L.Dense(2, activation="softmax", name="cls")(f)
    b = L.Dense(4, name="box")(f)
    return keras.Model(i, [b, a], name="rnet_nested")


# ----------------------------------------------------------------------------------------------- weights

# Keras layer name -> facenet state-dict prefix (per net); names not listed have no weights.
FACENET = {
    "pnet": {"conv1": "conv1", "prelu1": "prelu1", "PReLU1": "prelu1", "conv2": "conv2", "prelu2": "prelu2",
             "PReLU2": "prelu2", "conv3": "conv3", "prelu3": "prelu3", "PReLU3": "prelu3", "conv4_1": "conv4_1",
             "conv4_2": "conv4_2"},
    "rnet": {"conv1": "conv1", "prelu1": "prelu1", "conv2": "conv2", "prelu2": "prelu2", "conv3": "conv3",
             "prelu3": "prelu3", "dense4": "dense4", "prelu4": "prelu4", "dense5_1": "dense5_1",
             "dense5_2": "dense5_2", "cls": "dense5_1", "box": "dense5_2"},
    "onet": {"conv1": "conv1", "prelu1": "prelu1", "conv2": "conv2", "prelu2": "prelu2", "conv3": "conv3",
             "prelu3": "prelu3", "conv4": "conv4", "prelu4": "prelu4", "dense5": "dense5", "conv5": "dense5",
             "prelu5": "prelu5", "dense6_1": "dense6_1", "dense6_2": "dense6_2", "dense6_3": "dense6_3"},
}


def _walk(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _walk(layer)
        yield layer


def load_trained(model, net, sd, heads=None, reshape=None):
    """Give every weighted layer of model the trained weights, converted as a port author does.

    heads: {keras head name: facenet prefix} for heads named otherwise; reshape: a conv layer whose kernel is
    w.reshape(kh, kw, ci, co) (the bug) instead of w.transpose(2, 3, 1, 0)."""
    table = {**FACENET[net], **(heads or {})}
    for layer in _walk(model):
        prefix = table.get(layer.name)
        if prefix is None or isinstance(layer, keras.Model):
            continue
        if not layer.weights:
            raise ValueError(f"layer {layer.name!r} of {model.name!r} is not built: call the model on an input first")
        w = sd[prefix + ".weight"]
        if isinstance(layer, L.PReLU):
            alpha = np.full(layer.alpha.shape, w.mean()) if int(np.prod(layer.alpha.shape)) == 1 else w
            layer.set_weights([np.reshape(alpha, layer.alpha.shape).astype(np.float32)])
        elif isinstance(layer, L.Conv2D):
            o, c, kh, kw = w.shape
            k = w.reshape(kh, kw, c, o) if layer.name == reshape else w.transpose(2, 3, 1, 0)
            layer.set_weights([k, sd[prefix + ".bias"]])
        else:
            layer.set_weights([w.T, sd[prefix + ".bias"]])
    return model


def built(model, hw):
    """Call the model once on a zero batch of size hw so every sublayer is built (a subclassed port needs it)."""
    model(np.zeros((1, *hw, 3), np.float32))
    return model
