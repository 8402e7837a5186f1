"""Small Caffe nets for the tests: prototxt text builders and seeded weights.

* :func:`input_layers` -- one ``Input`` layer per blob (name -> shape), a line each: the head of every net a test
  writes as text;
* :func:`net_text` -- ``name: ...``, those Input layers, then the test's layers;
* :func:`one_layer_net` -- such a net loaded, with explicit weights or none; :func:`make_net` -- loaded with explicit
  or seeded random weights (``harness.weights.random_weights``);
* :func:`feed_for` -- seeded standard-normal float32 inputs of a net;
* :func:`save_weights_npz` -- a net's blobs as ``.npz`` (``"<layer>/<i>"``), the form ``--weights x.npz`` reads;
* :data:`SMALL_NET` / :func:`small_net` -- the small net the comparator, CLI, plugin and artefact tests share (its
  hand-written Keras ports are in :mod:`support.ports`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

SMALL_NET = """
name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 13 dim: 11 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 8 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "bn1" type: "BatchNorm" bottom: "pool1" top: "pool1" }
layer { name: "scale1" type: "Scale" bottom: "pool1" top: "pool1" scale_param { bias_term: true } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 10 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def input_layers(inputs: Mapping[str, Sequence[int]]) -> str:
    """``layer { name: "<blob>" type: "Input" top: "<blob>" input_param { shape { dim: ... } } }``, one line per
    entry of ``inputs`` (blob name -> shape), in order."""
    return "".join(f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ '
                   f'{" ".join(f"dim: {d}" for d in shape)} }} }} }}\n' for name, shape in inputs.items())


def net_text(layers: str, inputs: Mapping[str, Sequence[int]], name: str = "t") -> str:
    """A whole prototxt: ``name: "<name>"``, :func:`input_layers` of ``inputs``, then ``layers``."""
    return f'name: "{name}"\n{input_layers(inputs)}{layers}'


def one_layer_net(layer_text: str, inputs: Mapping[str, Sequence[int]], weights=None):
    """:func:`net_text` loaded with ``weights`` ({layer: [blobs]}) or none."""
    from harness.caffe import load_net_text

    return load_net_text(net_text(layer_text, inputs), weights)


def make_net(layers: str, inputs: Mapping[str, Sequence[int]], weights: Mapping | None = None, *, seed: int = 0):
    """A net from prototxt text; explicit ``weights`` ({layer: [blobs]}) or seeded random ones."""
    from harness.weights import random_weights

    net = one_layer_net(layers, inputs, weights)
    if weights is None:
        net = random_weights(net, seed=seed)
    return net


def feed_for(net, seed: int = 0, overrides: Mapping[str, np.ndarray] | None = None) -> dict:
    """Seeded standard-normal float32 arrays of the net's input shapes, ``overrides`` replacing some."""
    rng = np.random.default_rng(seed)
    feed = {b: rng.standard_normal(tuple(s)).astype(np.float32) for b, s in net.inputs.items()}
    if overrides:
        feed.update({k: np.asarray(v, np.float32) for k, v in overrides.items()})
    return feed


def save_weights_npz(net, path) -> Path:
    """Every blob of ``net`` into ``path`` as ``"<layer>/<i>"`` arrays; returns the path."""
    np.savez(path, **{f"{lay.name}/{i}": np.asarray(b) for lay in net.layers for i, b in enumerate(lay.blobs)})
    return Path(path)


def small_net(seed: int = 0):
    """:data:`SMALL_NET` with seeded random weights."""
    from harness.caffe import load_net_text
    from harness.weights import random_weights

    return random_weights(load_net_text(SMALL_NET), seed)
