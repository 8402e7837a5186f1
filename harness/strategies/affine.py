"""Scale, Bias, InnerProduct, Embed cases."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from hypothesis import strategies as st

from ._arrays import (Limits, _axis_spelling, _choice, _data, _distinct, _layer_case, _normal, _pick, _rng, _shape,
                      _weights)
from ._render import Items, LayerCase, LayerDef
from .registry import _case, _maybe_inplace


class _Affine(NamedTuple):
    param: str  # the LayerParameter field
    mean: float  # of the drawn learned blob (a scale near 1 + 0.5 keeps the signal, a bias near 0)
    bias_term: bool  # a learned bias may follow (Scale's bias_term)
    name: str


_AFFINE = {"Scale": _Affine("scale_param", 0.5, True, "scale1"), "Bias": _Affine("bias_param", 0.0, False, "bias1")}


def _scale_bias_case(draw, lim: Limits, caffe_type: str) -> LayerCase:
    spec = _AFFINE[caffe_type]
    rng = _rng(draw)
    shape = _shape(draw, lim)
    two_bottoms = draw(st.integers(0, 3)) == 0
    inputs: dict[str, np.ndarray] = {}
    param_name = spec.param
    items: Items = []
    blobs: list[np.ndarray] = []
    if two_bottoms:
        # the second bottom is the scale (bias) of shape bottom.shape[axis:axis+k]; as a net input it has the batch
        # axis first, so axis 0: SENet's (N, C) or (N, C, H), or the full shape
        axis = 0
        k = draw(st.integers(2, 4))
        pshape = shape[axis:axis + k]
        inputs["data"] = _data(draw, rng, shape)
        inputs["factor"] = _data(draw, rng, pshape)
        items += _axis_spelling(draw, axis, 4, 1)
        bottoms: tuple[str, ...] = ("data", "factor")
    else:
        axis = _choice(draw, [1, 2, 3, 0])
        if axis == 0:
            axis = 1
        num_axes = _choice(draw, [1, -1, 0, 2, 3])
        if num_axes > 4 - axis:
            num_axes = 1
        end = 4 if num_axes == -1 else axis + num_axes
        pshape = shape[axis:end]
        items += _axis_spelling(draw, axis, 4, 1)
        if num_axes != 1 or draw(st.booleans()):
            items.append(("num_axes", num_axes))
        blobs.append(_normal(rng, pshape, 1.0, spec.mean))
        inputs["data"] = _data(draw, rng, shape)
        bottoms = ("data",)
    if spec.bias_term and draw(st.booleans()):
        items.append(("bias_term", True))
        blobs.append(_normal(rng, pshape))
    name = spec.name
    tops = _maybe_inplace(draw, name, "data")
    lay = LayerDef(name, caffe_type, bottoms, tops, [(param_name, items)] if items else [], tuple(blobs))
    return _layer_case(f"{name}_case", inputs, lay, f"param shape {pshape}")


_case("Scale")(lambda draw, lim: _scale_bias_case(draw, lim, "Scale"))
_case("Bias")(lambda draw, lim: _scale_bias_case(draw, lim, "Bias"))


@_case("InnerProduct")
def _inner_product_case(draw, lim: Limits) -> LayerCase:
    """InnerProduct on a 4-D blob (implicit C,H,W flatten) or a 2-D one, axis 1..3, transpose, bias."""
    rng = _rng(draw)
    rank = _choice(draw, [4, 2])
    shape = _shape(draw, lim, rank)
    axis = _choice(draw, [1, 2, 3][: rank - 1])
    k = int(np.prod(shape[axis:]))
    nout = _pick(draw, range(1, lim.max_channels + 2), [lambda v: v not in shape])
    transpose = draw(st.booleans())
    bias = draw(st.booleans())
    items: Items = [("num_output", nout)]
    if not bias:
        items.append(("bias_term", False))
    items += _axis_spelling(draw, axis, rank, 1)
    if transpose:
        items.append(("transpose", True))
    wt = _weights(rng, (k, nout) if transpose else (nout, k), k)
    blobs = (wt, _normal(rng, (nout,), 0.5)) if bias else (wt,)
    lay = LayerDef("fc1", "InnerProduct", ("data",), ("fc1",), [("inner_product_param", items)], blobs)
    return _layer_case("ip_case", {"data": _data(draw, rng, shape)}, lay, f"K={k}")


@_case("Embed")
def _embed_case(draw, lim: Limits) -> LayerCase:
    """Embed: integer indices (stored as float, as Caffe does) into a (input_dim, num_output) table."""
    rng = _rng(draw)
    n, t = _distinct(draw, [(1, lim.max_batch), (1, lim.max_side)])
    input_dim = _pick(draw, range(1, 10), [lambda v: v not in (n, t)])
    nout = _pick(draw, range(1, lim.max_channels + 1), [lambda v: v not in (n, t, input_dim)])
    bias = draw(st.booleans())
    items: Items = [("num_output", nout), ("input_dim", input_dim)]
    if not bias:
        items.append(("bias_term", False))
    blobs = [_normal(rng, (input_dim, nout))]
    if bias:
        blobs.append(_normal(rng, (nout,)))
    idx = rng.integers(0, input_dim, size=(n, t)).astype(np.float32)
    lay = LayerDef("embed1", "Embed", ("data",), ("embed1",), [("embed_param", items)], tuple(blobs))
    return _layer_case("embed_case", {"data": idx}, lay)
