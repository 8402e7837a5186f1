"""Test kit for the converter core (part A): convert whole nets with :func:`harness.convert.convert` and read every
mapped intermediate back in Caffe's NCHW order.

Tolerance rule: ``support.assert_blob_close(got, expected, what, rtol=REL_TOL)``, i.e. ``max|keras - expected| <=
REL_TOL * max|expected|`` with ``REL_TOL = 1e-5`` (shapes and NaN positions equal; see tests/support.py).
Why: the converted model does float32 arithmetic on float32 data, the expected values are real Caffe's float32 blobs
(golden) or the float64 NumPy reference; the difference is float32 rounding, which for the sums in these small
layers (at most a few hundred terms) stays around 1e-7..1e-6 of the blob's largest magnitude (measured: golden worst
6e-7).  1e-5 leaves ~10x headroom, yet every real porting bug is orders of magnitude larger: a reshaped instead of
transposed kernel, a wrong Flatten order, zero-padded MAX pooling or a wrong AVE divisor are O(1e-1..1), and TF32
(~3e-4) or fp16 (~5e-4) also fail it.  NaN positions must agree.  Pure data movement is compared exactly (``rtol=0``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import keras
import numpy as np

import harness.convert as hc
from harness.caffe import load_net_text
from harness.net import Net
from support import GOLDEN, assert_blob_close

REL_TOL = 1e-5


def golden_cases() -> list[str]:
    return sorted(p.name for p in GOLDEN.iterdir() if (p / "net.prototxt").is_file())


def tensor_of(model: keras.Model, entry: Mapping):
    out = model.get_layer(entry["layer"]).output
    if isinstance(out, (list, tuple)):
        out = out[entry["index"]]
    return out


def run_keys(model: keras.Model, inputs: Mapping[str, np.ndarray], keys: Sequence[str] | None = None) -> dict:
    """Every mapped ``"<layer>/<top>"`` (or ``keys``) of a converted model on the NCHW ``inputs``, as NCHW arrays;
    one sub-model, one call."""
    mp = hc.mapping_of(model)
    keys = list(mp["keys"]) if keys is None else list(keys)
    sub = keras.Model(model.inputs, [tensor_of(model, mp["keys"][k]) for k in keys])
    ys = sub([hc.to_keras_layout(inputs[b]) for b in mp["inputs"]])
    if not isinstance(ys, (list, tuple)):
        ys = [ys]
    return {k: hc.from_keras_layout(keras.ops.convert_to_numpy(y), mp["keys"][k]["layout"]) for k, y in zip(keys, ys)}


def predict(model: keras.Model, inputs: Mapping[str, np.ndarray]) -> dict:
    """The model's outputs (dict keyed by output blob) on NCHW inputs, returned NCHW."""
    mp = hc.mapping_of(model)
    feed = [hc.to_keras_layout(inputs[b]) for b in mp["inputs"]]
    ys = model(feed[0] if len(feed) == 1 else feed)
    return {k: hc.from_keras_layout(keras.ops.convert_to_numpy(v), "nhwc") for k, v in ys.items()}


def net_text(layers: str, inputs: Mapping[str, Sequence[int]], name: str = "t") -> str:
    parts = [f'name: "{name}"']
    for blob, shape in inputs.items():
        dims = " ".join(f"dim: {d}" for d in shape)
        parts.append(f'layer {{ name: "{blob}" type: "Input" top: "{blob}" input_param {{ shape {{ {dims} }} }} }}')
    parts.append(layers)
    return "\n".join(parts)


def make_net(layers: str, inputs: Mapping[str, Sequence[int]], weights: Mapping | None = None, *,
             seed: int = 0) -> Net:
    """A net from prototxt text; explicit ``weights`` ({layer: [blobs]}) or seeded random ones."""
    from harness.weights import random_weights

    net = load_net_text(net_text(layers, inputs), weights)
    if weights is None:
        net = random_weights(net, seed=seed)
    return net


def feed_for(net: Net, seed: int = 0, overrides: Mapping[str, np.ndarray] | None = None) -> dict:
    rng = np.random.default_rng(seed)
    feed = {b: rng.standard_normal(tuple(s)).astype(np.float32) for b, s in net.inputs.items()}
    if overrides:
        feed.update({k: np.asarray(v, np.float32) for k, v in overrides.items()})
    return feed


def check_vs_reference(net: Net, *, seed: int = 0, feed=None, model=None, tol: float = REL_TOL, **convert_kw):
    """Convert ``net`` and compare every mapped key with the float64 reference; returns (model, {key: rel err})."""
    from harness.reference import forward

    feed = feed if feed is not None else feed_for(net, seed)
    model = model if model is not None else hc.convert(net, **convert_kw)
    ref = forward(net, feed, np.float64)
    got = run_keys(model, feed)
    errs = {}
    for k, g in got.items():
        errs[k] = assert_blob_close(g, ref[k], k, rtol=tol)
    return model, errs
