"""A held-out corpus for ``check --saved-model`` and ``check --tflite``: small Caffe nets written as prototxt text,
weights written the documented ways (``.npz`` with ``<layer>/<i>`` keys, or a binary ``.caffemodel`` written with the
protobuf schema), and Keras 3 ports written by hand the way users write them, exported by the user's own code
(``model.export``, ``keras.export.ExportArchive``, ``tf.saved_model.save`` with a ``tf.function`` signature, and the
three ``tf.lite.TFLiteConverter`` entry points). Nothing here uses the harness's own converter or exporter.

Nets (every blob has distinct sizes on every axis):

* ``PLAIN``: data 2x3x10x13 -> conv1 (6, k3, s2, p1: 5x7; TF 'same' would pad H (0, 1), not (1, 1)) -> relu1
  -> pool1 (MAX k2 s2, Caffe's ceil: 3x4; floor would give 2x3) -> ip1 (5) -> prob (Softmax).
* ``BN``: data 2x3x9x11 -> conv1 (5, k3, p1) -> bn1 (BatchNorm, eps 1e-5, factor 2) -> sc1 (Scale + bias) -> relu1
  -> pool1 (MAX k2 s2, ceil: 5x6; floor 4x5) -> conv2 (4, k1) -> pool2 (AVE global) -> ip1 (7) -> prob.
* ``RES``: data 2x4x7x9 -> conv1 (6, k3, p1) -> relu1 -> conv2 (6, k3, p1) -> res (Eltwise SUM conv2 + conv1)
  -> relu2 -> norm (LRN local_size 3) -> ip1 (3) -> prob.  Weights as a ``.caffemodel``.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

L = keras.layers

PLAIN = """name: "plain"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 10 dim: 13 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "ip1" top: "prob" }
"""

BN = """name: "bnnet"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 11 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 5 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" batch_norm_param { use_global_stats: true } }
layer { name: "sc1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: AVE global_pooling: true } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1" inner_product_param { num_output: 7 } }
layer { name: "prob" type: "Softmax" bottom: "ip1" top: "prob" }
"""

RES = """name: "resnet_tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 4 dim: 7 dim: 9 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "res" type: "Eltwise" bottom: "conv2" bottom: "conv1" top: "res" eltwise_param { operation: SUM } }
layer { name: "relu2" type: "ReLU" bottom: "res" top: "res" }
layer { name: "norm" type: "LRN" bottom: "res" top: "norm"
        lrn_param { local_size: 3 alpha: 0.3 beta: 0.75 k: 1.5 } }
layer { name: "ip1" type: "InnerProduct" bottom: "norm" top: "ip1" inner_product_param { num_output: 3 } }
layer { name: "prob" type: "Softmax" bottom: "ip1" top: "prob" }
"""

SHAPES = {"plain": (2, 3, 10, 13), "bn": (2, 3, 9, 11), "res": (2, 4, 7, 9)}
TEXTS = {"plain": PLAIN, "bn": BN, "res": RES}


def _conv(rng, o, i, k):
    return [rng.normal(0, 1.0 / np.sqrt(i * k * k), (o, i, k, k)), rng.normal(0, 0.2, o)]


def _ip(rng, o, i):
    return [rng.normal(0, 1.0 / np.sqrt(i), (o, i)), rng.normal(0, 0.2, o)]


def caffe_weights(name: str) -> dict[str, list[np.ndarray]]:
    """Seeded Caffe blobs per layer, in Caffe's own layouts (conv OIHW, InnerProduct (out, C*H*W))."""
    rng = np.random.default_rng({"plain": 11, "bn": 12, "res": 13}[name])
    if name == "plain":
        w = {"conv1": _conv(rng, 6, 3, 3), "ip1": _ip(rng, 5, 6 * 3 * 4)}
    elif name == "bn":
        factor = 2.0
        mean = rng.normal(0, 0.5, 5) * factor
        var = rng.uniform(0.002, 0.02, 5) * factor  # small variances: epsilon 1e-3 vs 1e-5 is visible
        w = {"conv1": _conv(rng, 5, 3, 3), "bn1": [mean, var, np.array([factor])],
             "sc1": [rng.uniform(0.05, 0.15, 5), rng.normal(0, 0.3, 5)],
             "conv2": _conv(rng, 4, 5, 1), "ip1": _ip(rng, 7, 4)}
    else:
        w = {"conv1": _conv(rng, 6, 4, 3), "conv2": _conv(rng, 6, 6, 3), "ip1": _ip(rng, 3, 6 * 7 * 9)}
    return {k: [np.asarray(b, np.float32) for b in v] for k, v in w.items()}


def write_npz(weights, path: Path) -> Path:
    np.savez(path, **{f"{layer}/{i}": b for layer, blobs in weights.items() for i, b in enumerate(blobs)})
    return path


def write_caffemodel(weights, path: Path, net_name: str) -> Path:
    """A binary NetParameter with one LayerParameter per weighted layer (name and blobs), as pycaffe writes it."""
    from harness.proto import caffe_pb2

    types = {"conv1": "Convolution", "conv2": "Convolution", "ip1": "InnerProduct", "bn1": "BatchNorm",
             "sc1": "Scale"}
    netp = caffe_pb2.NetParameter(name=net_name)
    for layer, blobs in weights.items():
        lp = netp.layer.add(name=layer, type=types[layer])
        for b in blobs:
            bp = lp.blobs.add()
            bp.shape.dim.extend(b.shape)
            bp.data.extend(b.ravel().tolist())
    path.write_bytes(netp.SerializeToString())
    return path


def inputs(name: str) -> np.ndarray:
    return np.random.default_rng(99).normal(0, 1, SHAPES[name]).astype(np.float32)


# ---- hand-written Keras ports -------------------------------------------------------------------------------------

def keras_kernel(w: np.ndarray, bug: str | None = None) -> np.ndarray:
    if bug == "kernel_reshaped":  # the classic: right shape, wrong values
        return w.reshape(w.shape[2], w.shape[3], w.shape[1], w.shape[0])
    return w.transpose(2, 3, 1, 0)


class CaffeLRN(L.Layer):
    """Cross-channel LRN as a user writes it: TF's alpha is Caffe's alpha / local_size."""

    def __init__(self, size, alpha, beta, k, **kw):
        super().__init__(**kw)
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def call(self, x):
        return tf.nn.local_response_normalization(x, depth_radius=self.size // 2, bias=self.k,
                                                  alpha=self.alpha / self.size, beta=self.beta)


def port_plain(w, style: str = "func", bug: str | None = None) -> keras.Model:
    """``style`` func: functional API with default-ish names; seq: ``Sequential`` with default names."""
    h, wd = SHAPES["plain"][2:]
    pad = L.Conv2D(6, 3, strides=2, padding="same") if bug == "same_padding" else None
    if style == "seq":
        layers = [keras.Input((h, wd, 3))]
        layers += [pad] if pad else [L.ZeroPadding2D(1), L.Conv2D(6, 3, strides=2, activation="relu")]
        if pad:
            layers.append(L.ReLU())
        layers += [L.MaxPooling2D(2, 2, padding="same")]
        if bug != "flatten_order":
            layers.append(L.Permute((3, 1, 2)))
        layers += [L.Flatten(), L.Dense(5, activation="softmax")]
        model = keras.Sequential(layers)
        conv = pad or model.layers[1]
    else:
        x = inp = keras.Input((h, wd, 3), name="data")
        if pad:
            conv = pad
        else:
            x = L.ZeroPadding2D(1, name="zero_padding2d_1")(x)
            conv = L.Conv2D(6, 3, strides=2, name="conv2d_1")
        x = L.ReLU(name="re_lu_1")(conv(x))
        x = L.ZeroPadding2D(((0, 1), (0, 1)), name="zero_padding2d_2")(x)  # ceil overhang; zeros are safe after ReLU
        x = L.MaxPooling2D(2, 2, name="max_pooling2d_1")(x)
        if bug != "flatten_order":
            x = L.Permute((3, 1, 2), name="permute_1")(x)
        x = L.Flatten(name="flatten_1")(x)
        x = L.Dense(5, name="dense_1")(x)
        model = keras.Model(inp, L.Softmax(name="softmax_1")(x), name="plain_port")
    conv.set_weights([keras_kernel(w["conv1"][0], bug), w["conv1"][1]])
    model.get_layer(index=len(model.layers) - (1 if style == "seq" else 2)).set_weights(
        [w["ip1"][0].T, w["ip1"][1]])
    return model


def port_bn(w, bug: str | None = None) -> keras.Model:
    """Functional API; one BatchNormalization for BatchNorm + Scale (mean/var divided by Caffe's factor)."""
    h, wd = SHAPES["bn"][2:]
    x = inp = keras.Input((h, wd, 3), name="data")
    x = L.Conv2D(5, 3, padding="same", name="conv2d")(x)  # stride 1, k3: TF 'same' is Caffe's pad 1 here
    eps = 1e-3 if bug == "bn_epsilon" else 1e-5
    x = L.BatchNormalization(epsilon=eps, name="batch_normalization")(x)
    x = L.Activation("relu", name="activation")(x)
    x = L.MaxPooling2D(2, 2, padding="valid" if bug == "pool_rounding" else "same", name="max_pooling2d")(x)
    x = L.Conv2D(4, 1, name="conv2d_1")(x)
    x = L.GlobalAveragePooling2D(name="global_average_pooling2d")(x)
    x = L.Dense(7, activation="softmax", name="dense")(x)
    model = keras.Model(inp, x, name="bn_port")
    mean, var, factor = w["bn1"]
    model.get_layer("conv2d").set_weights([keras_kernel(w["conv1"][0]), w["conv1"][1]])
    model.get_layer("batch_normalization").set_weights([w["sc1"][0], w["sc1"][1], mean / factor[0], var / factor[0]])
    model.get_layer("conv2d_1").set_weights([keras_kernel(w["conv2"][0]), w["conv2"][1]])
    model.get_layer("dense").set_weights([w["ip1"][0].T, w["ip1"][1]])
    return model


def port_res(w, bug: str | None = None) -> keras.Model:
    """Functional API with the user's own names; LRN as a custom layer on tf.nn; Permute before Flatten.
    ``bug="lrn_alpha_scaling"``: Caffe's alpha given to tf.nn as it is (not divided by local_size)."""
    h, wd = SHAPES["res"][2:]
    x = inp = keras.Input((h, wd, 4), name="data")
    a = L.Conv2D(6, 3, padding="same", activation="relu", name="block_a")(x)
    b = L.Conv2D(6, 3, padding="same", name="block_b")(a)
    x = L.ReLU(name="post_add_relu")(L.Add(name="shortcut_add")([b, a]))
    x = CaffeLRN(3, 0.3 * (3 if bug == "lrn_alpha_scaling" else 1), 0.75, 1.5, name="my_lrn")(x)
    x = L.Flatten(name="flat")(L.Permute((3, 1, 2), name="to_chw")(x))
    x = L.Dense(3, name="classifier")(x)
    model = keras.Model(inp, L.Softmax(name="probs")(x), name="res_port")
    for caffe, mine in (("conv1", "block_a"), ("conv2", "block_b")):
        model.get_layer(mine).set_weights([keras_kernel(w[caffe][0]), w[caffe][1]])
    model.get_layer("classifier").set_weights([w["ip1"][0].T, w["ip1"][1]])
    return model


# ---- the user's own export code -----------------------------------------------------------------------------------

def _spec(model, name=None):
    return tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=name)


def port_plain_nested(w) -> keras.Model:
    """A ``Sequential`` feature extractor (default names) used as one layer of a functional classifier."""
    h, wd = SHAPES["plain"][2:]
    backbone = keras.Sequential([keras.Input((h, wd, 3)), L.ZeroPadding2D(1), L.Conv2D(6, 3, strides=2),
                                 L.ReLU(), L.MaxPooling2D(2, 2, padding="same")], name="features")
    inp = keras.Input((h, wd, 3), name="image")
    x = L.Flatten()(L.Permute((3, 1, 2))(backbone(inp)))
    model = keras.Model(inp, L.Dense(5, activation="softmax", name="head")(x))
    backbone.layers[1].set_weights([keras_kernel(w["conv1"][0]), w["conv1"][1]])
    model.get_layer("head").set_weights([w["ip1"][0].T, w["ip1"][1]])
    return model


def export_nchw_signature(model, d: Path) -> Path:
    """``tf.saved_model.save`` with a serving function that takes Caffe's NCHW blob and transposes it itself."""
    n, c, h, wd = (None, *model.input_shape[3:], *model.input_shape[1:3])
    serve = tf.function(lambda data: {"prob": model(tf.transpose(data, [0, 2, 3, 1]), training=False)},
                        input_signature=[tf.TensorSpec((n, c, h, wd), tf.float32, name="data")])
    tf.saved_model.save(model, str(d), signatures={"serving_default": serve.get_concrete_function()})
    return d


def export_model_export(model, d: Path) -> Path:
    model.export(str(d), verbose=False)
    return d


def export_archive(model, d: Path, endpoint: str = "predict") -> Path:
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name=endpoint, fn=model.call, input_signature=[_spec(model)])
    archive.write_out(str(d), verbose=False)
    return d


def export_tf_saved_model(model, d: Path) -> Path:
    serve = tf.function(lambda data: {"prob": model(data, training=False)},
                        input_signature=[_spec(model, "data")])
    tf.saved_model.save(model, str(d), signatures={"serving_default": serve.get_concrete_function()})
    return d


def tflite_from_keras(model, f: Path) -> Path:
    f.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return f


def tflite_from_saved_model(model, f: Path) -> Path:
    d = export_model_export(model, f.with_suffix(".sm"))
    f.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(d)).convert())
    return f


def tflite_from_concrete(model, f: Path, trackable: bool = False) -> Path:
    """``from_concrete_functions([fn])`` freezes the weights into constants. Given the model as the trackable object
    too (``from_concrete_functions([fn], model)``), TF 2.21 keeps them as resource variables (VAR_HANDLE +
    READ_VARIABLE) that nothing in the file initialises: LiteRT returns NaN through XNNPACK and refuses to run
    without it -- a broken artefact (``test_bad``)."""
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(_spec(model, "data"))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], model) if trackable else \
        tf.lite.TFLiteConverter.from_concrete_functions([fn])
    f.write_bytes(converter.convert())
    return f


SAVED_MODEL_EXPORTS = {"model_export": export_model_export, "export_archive": export_archive,
                       "tf_saved_model": export_tf_saved_model, "nchw_signature": export_nchw_signature}
TFLITE_EXPORTS = {"from_keras_model": tflite_from_keras, "from_saved_model": tflite_from_saved_model,
                  "from_concrete_functions": tflite_from_concrete}
