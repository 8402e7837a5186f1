"""Hypotheses for data layout (NCHW read as NHWC), Flatten order and Concat / Eltwise bottom order."""

from __future__ import annotations

import itertools

import numpy as np

from ...net import Layer
from ._common import Probe, _Hyp, _run, hypotheses


def _layout_hyps(layer: Layer, xs: list[np.ndarray]) -> list[_Hyp]:
    x = xs[0]
    if x.ndim != 4 or x.shape[1] == 1 or x.shape[2] * x.shape[3] == 1:
        return []
    n, c, h, w = x.shape
    as_nhwc = x.reshape(n, h, w, c).transpose(0, 3, 1, 2)  # the NCHW buffer reshaped to NHWC, seen as NCHW
    back = x.transpose(0, 2, 3, 1).reshape(n, c, h, w)  # an NHWC buffer read as NCHW
    return [
        _Hyp("input_layout", f"the Keras side received the NCHW input reshaped to NHWC ({n}, {h}, {w}, {c}) "
                             "instead of transposed",
             "feed x.transpose(0, 2, 3, 1) to Keras, not x.reshape(N, H, W, C)",
             lambda: _run(layer, [as_nhwc, *xs[1:]])),
        _Hyp("input_layout", "the Keras side read an NHWC buffer as if it were NCHW (reshape instead of transpose)",
             "convert between layouts with transpose (NCHW->NHWC: (0, 2, 3, 1); NHWC->NCHW: (0, 3, 1, 2)), never "
             "reshape", lambda: _run(layer, [back, *xs[1:]])),
    ]


def _flatten_hyps(layer: Layer, xs: list[np.ndarray]) -> list[_Hyp]:
    x = xs[0]
    if x.ndim != 4 or x.shape[1] == 1 or x.shape[2] * x.shape[3] == 1:
        return []
    n, c, h, w = x.shape
    xh = x.transpose(0, 2, 3, 1).reshape(n, c, h, w)
    return [_Hyp("flatten_order", "the Keras Flatten runs on NHWC and gives H, W, C order; Caffe flattens C, H, W",
                 "add keras.layers.Permute((3, 1, 2)) before Flatten (or permute the next Dense kernel's rows)",
                 lambda: _run(layer, [xh, *xs[1:]]))]


def _concat_hyps(layer: Layer, xs: list[np.ndarray]) -> list[_Hyp]:
    """``concat_order``: Concatenate given the branches in another order than Caffe's bottoms (Concat only; for
    Eltwise SUM/MAX the order does not matter, for PROD neither)."""
    import itertools

    # not a trait: the one type whose bottoms' order shows in its output (Eltwise's SUM/MAX/PROD commute)
    if layer.kind != "Concat" or not 2 <= len(xs) <= 5:
        return []
    hyps = []
    names = list(layer.bottoms)
    for perm in itertools.permutations(range(len(xs))):
        if list(perm) == list(range(len(xs))) or len({tuple(xs[i].shape) for i in perm}) == 1 and \
                all(np.array_equal(xs[i], xs[j]) for i, j in zip(perm, range(len(xs)))):
            continue
        order = ", ".join(names[i] for i in perm)
        hyps.append(_Hyp("concat_order",
                         f"the Keras Concatenate joins the branches as ({order}); Caffe's {layer.name!r} joins "
                         f"({', '.join(names)})",
                         f"pass the branches to Concatenate in the Caffe bottom order: [{', '.join(names)}]",
                         lambda perm=perm: _run(layer, [xs[i] for i in perm])))
    return hyps


@hypotheses("Flatten", "Reshape")
def flatten_family(layer: Layer, xs: list[np.ndarray], probe: Probe) -> list[_Hyp]:
    return _flatten_hyps(layer, xs)


@hypotheses("Concat", "Eltwise")
def concat_family(layer: Layer, xs: list[np.ndarray], probe: Probe) -> list[_Hyp]:
    return _concat_hyps(layer, xs)
