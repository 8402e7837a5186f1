"""Sabotage kit: one small Caffe net and hand-written Keras ports of it, each with exactly one classic porting bug.

The net (input (2, 3, 20, 16): distinct sizes on every axis, even H and W for the stride-2 convolution)::

    conv1  Convolution 5 3x3 stride 2 pad 1   (2, 5, 10, 8)  + relu1 (in place)
    pool1  Pooling MAX 3x3 stride 2, ceil      (2, 5, 5, 4)   floor would give (2, 5, 4, 3)
    bn1    BatchNorm (factor blob 2.5)         + scale1 Scale with bias (in place); some channels pushed negative
    relu2  ReLU negative_slope 0.1 (in place)
    pool2  Pooling MAX 3x3 stride 1 pad 1      (2, 5, 5, 4)   windows of negative values: padding must never win
    pool3  Pooling AVE 3x3 stride 1 pad 1      (2, 5, 5, 4)   Caffe counts padding in the divisor
    norm1  LRN local_size 3, alpha 1, beta 0.75, k 2
    fc1    InnerProduct 7 on the 4-D blob      (2, 7)         K = 100, C,H,W order
    fc2    InnerProduct 7                      (2, 7)         square weights (the only way a missing transpose runs)
    prob   Softmax

The Keras ports are written the way a person ports by hand: plain ``keras.Sequential`` layers with default names,
``Conv2D(activation="relu")`` fused, BatchNorm+Scale as one ``BatchNormalization``, explicit ``ZeroPadding2D``,
``Permute``/``Flatten`` helpers, and a small ``LRN`` layer calling ``tf.nn.local_response_normalization``.

Each port is also described as *stages*: the Caffe layers a group of Keras layers computes, so the tests can run
every stage in isolation on the reference's inputs without the comparator core.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from harness.caffe import load_net_text
from harness.net import Net

from support.layout import to_caffe, to_keras

PROTOTXT = """
name: "sabotage"
input: "data"
input_shape { dim: 2 dim: 3 dim: 20 dim: 16 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 5 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "bn1" type: "BatchNorm" bottom: "pool1" top: "pool1" }
layer { name: "scale1" type: "Scale" bottom: "pool1" top: "pool1" scale_param { bias_term: true } }
layer { name: "relu2" type: "ReLU" bottom: "pool1" top: "pool1" relu_param { negative_slope: 0.1 } }
layer { name: "pool2" type: "Pooling" bottom: "pool1" top: "pool2"
        pooling_param { pool: MAX kernel_size: 3 stride: 1 pad: 1 } }
layer { name: "pool3" type: "Pooling" bottom: "pool2" top: "pool3"
        pooling_param { pool: AVE kernel_size: 3 stride: 1 pad: 1 } }
layer { name: "norm1" type: "LRN" bottom: "pool3" top: "norm1"
        lrn_param { local_size: 3 alpha: 1.0 beta: 0.75 k: 2.0 } }
layer { name: "fc1" type: "InnerProduct" bottom: "norm1" top: "fc1" inner_product_param { num_output: 7 } }
layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2" inner_product_param { num_output: 7 } }
layer { name: "prob" type: "Softmax" bottom: "fc2" top: "prob" }
"""

INPUT_SHAPE = (2, 3, 20, 16)
BN_FACTOR = 2.5
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 3, 1.0, 0.75, 2.0


def weights(seed: int = 5) -> dict[str, list[np.ndarray]]:
    r = np.random.default_rng(seed)
    f = np.float32
    # statistics of the size pool1's values have (ReLU'd, max-pooled: about 0..6), so BatchNorm leaves negatives;
    # the variances stay small enough for epsilon 1e-3 vs 1e-5 to be visible
    mean = r.uniform(2.0, 3.5, 5)
    var = r.uniform(0.3, 1.5, 5)
    return {
        "conv1": [r.standard_normal((5, 3, 3, 3)).astype(f), r.standard_normal(5).astype(f) * f(0.3)],
        "bn1": [(mean * BN_FACTOR).astype(f), (var * BN_FACTOR).astype(f),
                np.array([BN_FACTOR], f)],
        # beta pushes channels 0 and 3 well below zero: whole pooling windows are negative there
        "scale1": [r.uniform(0.5, 1.5, 5).astype(f), np.array([-2.5, 0.3, -0.4, -3.0, 0.5], f)],
        "fc1": [(r.standard_normal((7, 100)) / 10).astype(f), r.standard_normal(7).astype(f) * f(0.3)],
        "fc2": [(r.standard_normal((7, 7)) / np.sqrt(7)).astype(f), r.standard_normal(7).astype(f) * f(0.3)],
    }


def net(seed: int = 5) -> Net:
    return load_net_text(PROTOTXT, weights=weights(seed))


def inputs(seed: int = 11) -> dict[str, np.ndarray]:
    return {"data": np.random.default_rng(seed).standard_normal(INPUT_SHAPE).astype(np.float32)}


class LRN(keras.layers.Layer):
    """What a hand port writes for Caffe's LRN: TF's across-channel LRN on NHWC."""

    def __init__(self, depth_radius: int = 2, bias: float = 1.0, alpha: float = 1.0, beta: float = 0.5, **kw):
        super().__init__(**kw)
        self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta

    def call(self, x):
        import tensorflow as tf

        return tf.nn.local_response_normalization(x, depth_radius=self.depth_radius, bias=self.bias,
                                                  alpha=self.alpha, beta=self.beta)

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias, "alpha": self.alpha,
                "beta": self.beta}


@dataclass
class Port:
    bug: str | None
    model: keras.Model
    stages: list[tuple[list[str], list[keras.layers.Layer]]] = field(default_factory=list)


# bug -> (first divergent Caffe layer, expected first cause)
BUGS: dict[str, tuple[str, str]] = {
    "kernel_reshaped": ("conv1", "kernel_reshaped"),
    "kernel_flipped": ("conv1", "kernel_flipped"),
    "kernel_axes_swapped": ("conv1", "kernel_axes_swapped"),
    "channel_order": ("conv1", "channel_order"),
    "input_layout": ("conv1", "input_layout"),
    "same_padding": ("conv1", "same_padding"),
    "padding_offset": ("conv1", "padding_offset"),
    "missing_bias_conv": ("conv1", "missing_bias"),
    "reduced_precision": ("conv1", "reduced_precision"),
    "input_preprocessing": ("conv1", "input_preprocessing"),
    "pool_rounding": ("pool1", "pool_rounding"),
    "bn_scale_factor": ("bn1", "bn_scale_factor"),
    "bn_epsilon": ("bn1", "bn_epsilon"),
    "bn_weight_order": ("bn1", "bn_weight_order"),
    "pool_pad_value": ("pool2", "pool_pad_value"),
    "relu_slope": ("relu2", "relu_slope"),
    "pool_avg_divisor": ("pool3", "pool_avg_divisor"),
    "lrn_alpha_scaling": ("norm1", "lrn_alpha_scaling"),
    "lrn_k": ("norm1", "lrn_k"),
    "lrn_size": ("norm1", "lrn_size"),
    "flatten_order": ("fc1", "flatten_order"),
    "dense_reshaped": ("fc1", "dense_reshaped"),
    "missing_bias": ("fc1", "missing_bias"),
    "dense_not_transposed": ("fc2", "dense_not_transposed"),
    "foreign_weights": ("fc2", "unknown"),  # weights of another model: no classic bug explains it
}


def build_port(bug: str | None = None, seed: int = 5) -> Port:
    """A hand-written Keras port of the sabotage net with the one ``bug`` (None: the correct port)."""
    if bug is not None and bug not in BUGS:
        raise KeyError(f"unknown bug {bug!r}; known: {sorted(BUGS)}")
    wts = weights(seed)
    L = keras.layers
    W, b = wts["conv1"]
    mean, var, fac = wts["bn1"]
    gamma, beta = wts["scale1"]
    f1w, f1b = wts["fc1"]
    f2w, f2b = wts["fc2"]

    # conv1 (+ relu1 fused, as in the motivating question)
    conv_dtype = "float16" if bug == "reduced_precision" else None
    conv_kw = {"dtype": conv_dtype} if conv_dtype else {}
    stage_conv: list = []
    if bug == "input_layout":  # the NCHW array reshaped (not transposed) to NHWC, inside the model
        stage_conv += [L.Permute((3, 1, 2)), L.Reshape((20, 16, 3))]
    if bug == "input_preprocessing":  # the port scales its input; the Caffe net's input was not scaled
        stage_conv.append(L.Rescaling(1 / 255.0))
    if bug == "same_padding":
        conv = L.Conv2D(5, 3, strides=2, padding="same", activation="relu", **conv_kw)
    else:
        pad = ((2, 0), (2, 0)) if bug == "padding_offset" else ((1, 1), (1, 1))
        stage_conv.append(L.ZeroPadding2D(pad))
        conv = L.Conv2D(5, 3, strides=2, padding="valid", activation="relu", use_bias=bug != "missing_bias_conv",
                        **conv_kw)
    stage_conv.append(conv)
    kernel = {
        "kernel_reshaped": lambda: W.reshape(3, 3, 3, 5),
        "kernel_flipped": lambda: W[:, :, ::-1, ::-1].transpose(2, 3, 1, 0),
        "kernel_axes_swapped": lambda: W.transpose(3, 2, 1, 0),
        "channel_order": lambda: W[:, ::-1].transpose(2, 3, 1, 0),
    }.get(bug, lambda: W.transpose(2, 3, 1, 0))()

    # pool1: ceil MAX 3x3/2 on an even-sized blob = TF 'same' (pad 0 before, 1 after; padding never wins)
    stage_pool1 = [L.MaxPooling2D(3, 2, padding="valid" if bug == "pool_rounding" else "same")]
    # bn1 + scale1 as one BatchNormalization
    bn = L.BatchNormalization(epsilon=1e-3 if bug == "bn_epsilon" else 1e-5)
    stage_bn = [bn]
    # pool2: MAX 3x3/1 pad 1
    stage_pool2 = [L.ZeroPadding2D(1), L.MaxPooling2D(3, 1)] if bug == "pool_pad_value" \
        else [L.MaxPooling2D(3, 1, padding="same")]
    stage_relu2 = [L.ReLU() if bug == "relu_slope" else L.LeakyReLU(negative_slope=0.1)]
    stage_pool3 = [L.AveragePooling2D(3, 1, padding="same")] if bug == "pool_avg_divisor" \
        else [L.ZeroPadding2D(1), L.AveragePooling2D(3, 1)]
    n = LRN_SIZE
    stage_lrn = [LRN(depth_radius=n if bug == "lrn_size" else (n - 1) // 2,
                     bias=1.0 if bug == "lrn_k" else LRN_K,
                     alpha=LRN_ALPHA if bug == "lrn_alpha_scaling" else LRN_ALPHA / n, beta=LRN_BETA,
                     name="norm1")]  # Keras has no LRN: a custom layer, named after the Caffe layer it ports
    fc1 = L.Dense(7, use_bias=bug != "missing_bias")
    stage_fc1 = ([L.Flatten()] if bug == "flatten_order" else [L.Permute((3, 1, 2)), L.Flatten()]) + [fc1]
    fc2 = L.Dense(7)
    stage_fc2 = [fc2]
    stage_prob = [L.Softmax()]

    stages = [(["conv1", "relu1"], stage_conv), (["pool1"], stage_pool1), (["bn1", "scale1"], stage_bn),
              (["relu2"], stage_relu2), (["pool2"], stage_pool2), (["pool3"], stage_pool3), (["norm1"], stage_lrn),
              (["fc1"], stage_fc1), (["fc2"], stage_fc2), (["prob"], stage_prob)]
    model = keras.Sequential([keras.Input((20, 16, 3))] + [k for _, ks in stages for k in ks])

    conv.set_weights([kernel.astype(conv.dtype)] + ([b] if bug != "missing_bias_conv" else []))
    if bug == "bn_scale_factor":
        bn.set_weights([gamma, beta, mean, var])
    elif bug == "bn_weight_order":  # Scale's blobs taken as (beta, gamma)
        bn.set_weights([beta, gamma, mean / fac[0], var / fac[0]])
    else:
        bn.set_weights([gamma, beta, mean / fac[0], var / fac[0]])
    if fc1.kernel.shape == (100, 7):
        k1 = f1w.reshape(100, 7) if bug == "dense_reshaped" else f1w.T
        fc1.set_weights([k1] + ([f1b] if bug != "missing_bias" else []))
    if bug == "foreign_weights":
        f2w = weights(seed + 1)["fc2"][0]
    fc2.set_weights([f2w if bug == "dense_not_transposed" else f2w.T, f2b])
    return Port(bug, model, stages)


def run_stage(layers: list, x_nchw: np.ndarray) -> np.ndarray:
    """Run Keras layers in sequence on an NCHW reference blob; the result in NCHW, float64."""
    y = to_keras(np.asarray(x_nchw, np.float32))
    for k in layers:
        y = k(y)
    return to_caffe(np.asarray(keras.ops.convert_to_numpy(y), np.float64))
