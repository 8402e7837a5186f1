"""Running converted Keras models in the tests: one converted layer alone (converter part B), or a whole converted
net with every mapped intermediate read back in Caffe's NCHW order (part A, :func:`harness.convert.convert`).

Tolerance rule: ``support.assert_blob_close(got, expected, what, rtol=REL_TOL)``, i.e. ``max|keras - expected| <=
REL_TOL * max|expected|`` with ``REL_TOL = 1e-5`` (shapes and NaN positions equal; see :mod:`support.blobs`).
Why: the converted model does float32 arithmetic on float32 data, the expected values are real Caffe's float32 blobs
(golden) or the float64 NumPy reference; the difference is float32 rounding, which for the sums in these small
layers (at most a few hundred terms) stays around 1e-7..1e-6 of the blob's largest magnitude (measured: golden worst
6e-7).  1e-5 leaves ~10x headroom (about 80 ulps of the largest element), yet every real porting bug is orders of
magnitude larger: a reshaped instead of transposed kernel, a wrong Flatten order, zero-padded MAX pooling or a wrong
AVE divisor are O(1e-1..1), and TF32 (~3e-4) or fp16 (~5e-4) also fail it.  NaN positions must agree.  Pure data
movement (Concat, Slice, Crop, Permute, ...) is compared exactly (``rtol=0``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import keras
import numpy as np

import harness.convert as hc
import harness.convert.activation  # noqa: F401  (register converters)
import harness.convert.detection  # noqa: F401
import harness.convert.eltwise  # noqa: F401
import harness.convert.reduce  # noqa: F401
import harness.convert.resize  # noqa: F401
import harness.convert.shape  # noqa: F401
from harness.convert.base import CONVERTERS, ConvertContext
from harness.net import Layer, Net

from support.blobs import assert_blob_close
from support.layout import to_caffe, to_keras
from support.nets import feed_for, one_layer_net

REL_TOL = 1e-5


# ---------------------------------------------------------------------------------------------------------------
# One converted layer alone
# ---------------------------------------------------------------------------------------------------------------


def build_layer_model(layer: Layer, bottom_shapes: Sequence[Sequence[int]], *, allow_approx: bool = False,
                      net: Net | None = None) -> tuple[keras.Model, list[str]]:
    """A Keras model with one Input per distinct bottom blob (NHWC for 4-D, fixed batch) around ``layer``."""
    inputs: dict[str, keras.KerasTensor] = {}
    ins = []
    for name, shape in zip(layer.bottoms, bottom_shapes):
        if name not in inputs:
            kshape = tuple(shape)
            if len(kshape) == 4:
                kshape = (kshape[0], kshape[2], kshape[3], kshape[1])
            inputs[name] = keras.Input(shape=kshape[1:], batch_size=kshape[0] if kshape else None,
                                       name=f"in__{name}")
        ins.append(inputs[name])
    ctx = ConvertContext(net=net, bottom_shapes=[tuple(s) for s in bottom_shapes], allow_approx=allow_approx)
    outs = CONVERTERS[layer.type](layer, ins, ctx)
    model = keras.Model(list(inputs.values()), list(outs))
    return model, list(inputs)


def run_model(model: keras.Model, names: list[str], blobs: dict[str, np.ndarray]) -> list[np.ndarray]:
    ys = model([to_keras(np.asarray(blobs[n], dtype=np.float32)) for n in names])
    if not isinstance(ys, (list, tuple)):
        ys = [ys]
    return [to_caffe(keras.ops.convert_to_numpy(y)) for y in ys]


def run_layer(layer: Layer, bottoms: Sequence[np.ndarray], **kw) -> list[np.ndarray]:
    """Convert ``layer`` alone and run it on the NCHW ``bottoms``; returns the tops in Caffe layout."""
    model, names = build_layer_model(layer, [np.shape(b) for b in bottoms], **kw)
    feed = {}
    for n, b in zip(layer.bottoms, bottoms):
        feed.setdefault(n, b)
    return run_model(model, names, feed)


def check_against_reference(layer_text: str, inputs: dict[str, Sequence[int]], *, weights=None, seed: int = 0,
                            exact: bool = False, data: dict[str, np.ndarray] | None = None) -> list[float]:
    """Convert the last layer of a one-layer net and compare each top with ``harness.reference.forward`` (float64
    for value checks; float32 when ``exact``, where both sides only move float32 data)."""
    from harness.reference import forward

    net = one_layer_net(layer_text, inputs, weights)
    layer = net.layers[-1]
    rng = np.random.default_rng(seed)
    feed = {k: rng.standard_normal(tuple(s)).astype(np.float32) for k, s in inputs.items()}
    if data:
        feed.update({k: np.asarray(v, dtype=np.float32) for k, v in data.items()})
    ref = forward(net, feed, dtype=np.float32 if exact else np.float64)
    got = run_layer(layer, [feed[b] for b in layer.bottoms])
    errs = []
    for top, g in zip(layer.tops, got):
        errs.append(assert_blob_close(g, ref[f"{layer.name}/{top}"], f"{layer.name}/{top}",
                                      rtol=0.0 if exact else REL_TOL))
    assert len(got) == len(layer.tops)
    return errs


# ---------------------------------------------------------------------------------------------------------------
# A whole converted net
# ---------------------------------------------------------------------------------------------------------------


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
