"""Hypotheses for data layout (NCHW read as NHWC), Flatten order and Concat / Eltwise bottom order."""

from __future__ import annotations

import itertools
from typing import Callable

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


# the axis orders a 4-D blob can be flattened in, as (NCHW axes, names); Keras' NHWC Flatten gives H, W, C
_ORDERS = tuple((axes, tuple("CHW"[a - 1] for a in axes)) for axes in itertools.permutations((1, 2, 3)))
_NHWC_AXIS = {"H": 1, "W": 2, "C": 3}  # keras.layers.Permute's axis numbers of a channels_last tensor


def _reread(x: np.ndarray, a: tuple[int, ...], b: tuple[int, ...]) -> np.ndarray:
    """The NCHW blob whose flattening in order ``b`` is ``x`` flattened in order ``a``: what a layer with Caffe's
    weights arranged for order ``b`` computes on a Flatten that gives order ``a``."""
    v = x.transpose(0, *a).reshape(x.shape[0], -1)
    zb = v.reshape((x.shape[0],) + tuple(x.shape[i] for i in b))
    return zb.transpose(0, *(1 + b.index(i) for i in (1, 2, 3)))


def _permute_fix(a_names: tuple[str, ...], b_names: tuple[str, ...]) -> str:
    dims = tuple(_NHWC_AXIS[n] for n in b_names)
    if a_names == ("H", "W", "C"):
        return f"add keras.layers.Permute({dims}) before Flatten"
    if b_names == ("H", "W", "C"):
        return "drop the Permute before Flatten"
    return f"make the Permute before Flatten keras.layers.Permute({dims})"


def flatten_order_hyps(layer: Layer, xs: list[np.ndarray], n_out: int | None = None, k: int | None = None,
                       kernel_is: Callable[[tuple[int, ...]], bool] | None = None) -> list[_Hyp]:
    """``flatten_order`` for every axis order of the flattened blob: the Keras side flattens the (C, H, W) blob in
    order A where the layer's weights (Caffe's, or the Keras kernel's rows) are arranged for order B (A != B; Caffe
    flattens C, H, W).  For an InnerProduct (``n_out``, ``k``) every (A, B) pair, for a Flatten A against C, H, W;
    ``kernel_is(B)``: whether the Keras kernel holds Caffe's rows in order B (the weights confirm it)."""
    x = xs[0]
    if x.ndim != 4 or x.shape[1] == 1 or x.shape[2] * x.shape[3] == 1:
        return []
    n, c, h, w = x.shape
    chw = ((1, 2, 3), ("C", "H", "W"))
    pairs = [(a, b) for a in _ORDERS for b in (_ORDERS if n_out is not None else (chw,)) if a != b]
    # most likely first: the order the Keras kernel's rows are in (the weights say it: then A is the port's own
    # Flatten order and both fix forms are relative to it), then NHWC's own Flatten (H, W, C) against Caffe's C, H, W
    # weights, then either one of them; pairs with the same relative order compute the same, so the first one wins
    in_rows = {b: bool(kernel_is and kernel_is(b)) for b, _ in _ORDERS}
    pairs.sort(key=lambda p: (not in_rows[p[1][0]], (p[0][1] != ("H", "W", "C")) + (p[1] != chw)))
    hyps = []
    for (a, an), (b, bn) in pairs:
        got, want = ", ".join(an), ", ".join(bn)
        rows = "Caffe's weights" if b == chw[0] else f"its kernel rows in {want} order (Caffe's: C, H, W)"
        if n_out is None:
            expl = f"the Keras Flatten gives {got} order; Caffe flattens C, H, W"
            fix = f"flatten in C, H, W order: {_permute_fix(an, chw[1])}"
        else:
            expl = (f"the Keras Dense sees its {c}x{h}x{w} input flattened in {got} order"
                    f"{' (Flatten on NHWC)' if an == ('H', 'W', 'C') else ''} but {rows}"
                    f"{' are in C, H, W order' if b == chw[0] else ''}")
            fix = (f"permute the kernel rows: kernel = W.reshape({n_out}, {c}, {h}, {w}).transpose({a[0]}, {a[1]}, "
                   f"{a[2]}, 0).reshape({k}, {n_out}) (or {_permute_fix(an, bn)})")
        hyps.append(_Hyp("flatten_order", expl, fix, lambda a=a, b=b: _run(layer, [_reread(x, a, b), *xs[1:]]),
                         weight_match=in_rows[b]))
    return hyps


def _flatten_hyps(layer: Layer, xs: list[np.ndarray]) -> list[_Hyp]:
    return flatten_order_hyps(layer, xs)


def _concat_hyps(layer: Layer, xs: list[np.ndarray]) -> list[_Hyp]:
    """``concat_order``: Concatenate given the branches in another order than Caffe's bottoms (Concat only; for
    Eltwise SUM/MAX the order does not matter, for PROD neither)."""
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
