"""SavedModels written by hand with ``tf.Module`` + ``tf.function`` (no Keras): the ports6 nets as a TensorFlow user
writes them from the Caffe blobs, with raw ``tf.nn`` ops, no name scopes, NHWC inside; and the same bugs a hand
writer makes (the README's cause codes).

Variants (``name -> (net, bug or None)``); each is saved with ``tf.saved_model.save(module, DIR,
signatures=module.serve.get_concrete_function(...))``:

* ``plain``/``bn``/``lrn``/``res``: correct, signature input ``data`` NHWC.
* ``plain_nchw``: correct, the signature takes Caffe's NCHW and the function transposes it itself.
* ``plain_floor``: MAX pooling with ``padding="VALID"`` and no overhang pad (floor where Caffe ceils).
* ``lrn_alpha``: ``tf.nn.local_response_normalization(alpha=alpha)`` where TF wants ``alpha / local_size``.
* ``bn_eps``: ``variance_epsilon=1e-3`` in bn2.
* ``res_axes``: conv2a's kernel as ``w.transpose(3, 2, 1, 0)`` (kh and kw swapped) instead of ``(2, 3, 1, 0)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from . import _nets as N

VARIANTS = {"plain": ("plain", None), "plain_nchw": ("plain", "nchw"), "bn": ("bn", None), "lrn": ("lrn", None),
            "res": ("res", None), "plain_floor": ("plain", "pool_floor"), "lrn_alpha": ("lrn", "lrn_alpha"),
            "bn_eps": ("bn", "bn_eps"), "res_axes": ("res", "conv_axes")}


def _blobs(net: str) -> dict[str, list[np.ndarray]]:
    return {lay.name: [np.asarray(b, np.float32) for b in lay.blobs] for lay in N.caffe_net(net).layers if lay.blobs}


class _Ops:
    """The ops a hand writer uses, on NHWC tensors, with the Caffe blobs of one net."""

    def __init__(self, tf, blobs, bug):
        self.tf, self.b, self.bug = tf, blobs, bug

    def conv(self, x, name, stride=1, pad=0):
        tf = self.tf
        w, bias = self.b[name]
        kernel = w.transpose(3, 2, 1, 0) if (self.bug, name) == ("conv_axes", "conv2a") else w.transpose(2, 3, 1, 0)
        if pad:
            x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        return tf.nn.bias_add(tf.nn.conv2d(x, tf.constant(kernel), stride, "VALID"), tf.constant(bias))

    def bn_scale(self, x, bn, sc):
        mean, var, s = self.b[bn]
        gamma, beta = self.b[sc]
        eps = 1e-3 if (self.bug, bn) == ("bn_eps", "bn2") else 1e-5
        return self.tf.nn.batch_normalization(x, mean / s[0], var / s[0], beta, gamma, eps)

    def max_pool(self, x, k, s, ceil_pad=(0, 0)):
        tf = self.tf
        if self.bug != "pool_floor" and any(ceil_pad):  # Caffe's ceil: pad the overhang with -inf
            x = tf.pad(x, [[0, 0], [0, ceil_pad[0]], [0, ceil_pad[1]], [0, 0]], constant_values=-np.inf)
        return tf.nn.max_pool2d(x, k, s, "VALID")

    def lrn(self, x, size, alpha, beta):
        a = alpha if self.bug == "lrn_alpha" else alpha / size
        return self.tf.nn.local_response_normalization(x, depth_radius=size // 2, bias=1.0, alpha=a, beta=beta)

    def ip(self, x, name):
        tf = self.tf
        w, bias = self.b[name]
        flat = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [tf.shape(x)[0], -1])  # Caffe flattens C, H, W
        return tf.matmul(flat, tf.constant(w.T)) + tf.constant(bias)


def _forward(net: str, o: _Ops, x):
    tf = o.tf
    if net == "plain":
        x = o.max_pool(tf.nn.relu(o.conv(x, "conv1", pad=1)), 3, 2, ceil_pad=(1, 1))
        x = tf.reduce_mean(tf.nn.relu(o.conv(x, "conv2")), axis=[1, 2], keepdims=True)
    elif net == "bn":
        x = tf.nn.relu(o.bn_scale(o.conv(x, "conv1", pad=1), "bn1", "sc1"))
        x = tf.nn.relu(o.bn_scale(o.conv(x, "conv2", stride=2), "bn2", "sc2"))
        x = tf.nn.relu(o.bn_scale(o.conv(x, "conv3"), "bn3", "sc3"))
        x = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    elif net == "lrn":
        x = o.max_pool(o.lrn(tf.nn.relu(o.conv(x, "conv1", pad=1)), 5, 0.3, 0.75), 2, 2)
    else:
        x = tf.nn.relu(o.conv(x, "conv1", pad=1))
        x = tf.nn.relu(o.conv(x, "conv2a", pad=1) + o.conv(x, "conv2b"))
        x = o.max_pool(x, 3, 2)
    return tf.nn.softmax(o.ip(x, "ip1"))


def save(variant: str, folder: Path) -> Path:
    """Write the variant's SavedModel into ``folder/variant`` and return that path."""
    if "tensorflow" not in sys.modules:  # no TensorFlow start-up noise on the terminal (as the CLI imports it)
        from harness._stdio import quiet_tensorflow_import

        quiet_tensorflow_import()
    import tensorflow as tf

    net, bug = VARIANTS[variant]
    ops = _Ops(tf, _blobs(net), bug)
    n, c, h, w = N.inputs(net).shape
    nchw = bug == "nchw"

    class Net(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, c, h, w] if nchw else [None, h, w, c], tf.float32,
                                                    name="data")])
        def serve(self, data):
            x = tf.transpose(data, [0, 2, 3, 1]) if nchw else data
            return {"prob": _forward(net, ops, x)}

    module = Net()
    out = folder / variant
    tf.saved_model.save(module, str(out), signatures=module.serve.get_concrete_function())
    return out
