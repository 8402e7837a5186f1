"""Test kit for converter part B: build a Keras model around one converted Caffe layer and run it.

Tolerance rule (``support.assert_blob_close`` with ``rtol=REL_TOL``): a converted layer is float32 arithmetic on float32 data, so against Caffe's float32
output (golden) or the float64 reference it may differ by float32 rounding -- a few ulps of the blob's scale.  We
accept ``max|keras - expected| <= 1e-5 * max|expected|`` (about 80 ulps of the largest element), and pure data
movement (Concat, Slice, Crop, Permute, ...) must match exactly (``rtol=0``).
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

import harness.convert.activation  # noqa: F401  (register converters)
import harness.convert.detection  # noqa: F401
import harness.convert.eltwise  # noqa: F401
import harness.convert.reduce  # noqa: F401
import harness.convert.resize  # noqa: F401
import harness.convert.shape  # noqa: F401
from harness.caffe import load_net_text
from harness.convert.base import CONVERTERS, ConvertContext
from harness.net import Layer, Net

from _core_kit import REL_TOL  # one tolerance rule for both kits
from support import assert_blob_close


def to_keras(a: np.ndarray) -> np.ndarray:
    """Caffe array -> the layout contract's Keras array (4-D: NCHW -> NHWC)."""
    a = np.asarray(a)
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def to_caffe(a) -> np.ndarray:
    a = np.asarray(a)
    return a.transpose(0, 3, 1, 2) if a.ndim == 4 else a


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




# ---------------------------------------------------------------------------------------------------------------
# Golden cases
# ---------------------------------------------------------------------------------------------------------------


def golden_bottoms(net: Net, blobs: dict[str, np.ndarray], inputs: dict[str, np.ndarray], layer: Layer):
    """The bottoms ``layer`` read in Caffe: each blob's value after the last earlier layer that wrote it."""
    written: dict[str, str] = {}
    for lay in net.layers:
        if lay.name == layer.name:
            break
        for t in lay.tops:
            written[t] = lay.name
    out = []
    for b in layer.bottoms:
        key = f"{written[b]}/{b}" if b in written else None
        out.append(blobs[key] if key in blobs else inputs[b])
    return out


# ---------------------------------------------------------------------------------------------------------------
# Random single-layer nets against the NumPy reference
# ---------------------------------------------------------------------------------------------------------------


def one_layer_net(layer_text: str, inputs: dict[str, Sequence[int]], weights=None) -> Net:
    parts = [f'name: "t"']
    for name, shape in inputs.items():
        dims = " ".join(f"dim: {d}" for d in shape)
        parts.append(f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims} }} }} }}')
    parts.append(layer_text)
    return load_net_text("\n".join(parts), weights)


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
