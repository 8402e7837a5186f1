"""Hypotheses for Pooling: padding placement and value, rounding, the AVE divisor."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ...net import Layer
from ._common import Probe, _F64, _Hyp, _tf_same, hypotheses, pool_padding_fix


def _pooler(x: np.ndarray, g: Any, out_hw: tuple[int, int]) -> Callable[..., Callable[[], np.ndarray]]:
    """``pool(before, fill=, divisor=)``: a function re-running the pooling with leading padding ``before`` (the
    trailing padding fills out Caffe's output size), padding value ``fill`` and, for AVE, the divisor "window" (the
    full kernel) or "valid" (real elements only)."""
    (kh, kw), (sh, sw) = g.kernel, g.stride
    h, w = x.shape[2:]
    ho, wo = out_hw

    def pool(before: tuple[int, int], *, fill: float, divisor: str) -> Callable[[], np.ndarray]:
        def f() -> np.ndarray:
            pt, pl = before
            pb = max(0, (ho - 1) * sh + kh - h - pt)
            pr = max(0, (wo - 1) * sw + kw - w - pl)
            n, c = x.shape[:2]
            xp = np.full((n, c, h + pt + pb, w + pl + pr), fill, dtype=_F64)
            xp[:, :, pt:pt + h, pl:pl + w] = x
            win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw][:, :, :ho, :wo]
            if g.method == "MAX":
                return win.max(axis=(-2, -1))
            s = win.sum(axis=(-2, -1))
            if divisor == "window":
                return s / (kh * kw)
            m = np.zeros(xp.shape[2:])
            m[pt:pt + h, pl:pl + w] = 1.0
            cnt = np.lib.stride_tricks.sliding_window_view(m, (kh, kw))[::sh, ::sw][:ho, :wo].sum(axis=(-2, -1))
            return s / np.maximum(cnt, 1.0)
        return f

    return pool


def _offset_hyps(pool: Callable, g: Any, tried: tuple, fix: str, *, fill: float, divisor: str) -> list[_Hyp]:
    """``padding_offset``: the windows placed at every other leading offset inside the kernel."""
    (kh, kw), (ph, pw) = g.kernel, g.pad
    return [_Hyp("padding_offset", f"the Keras pooling windows start at offset ({-bt}, {-bl}) where Caffe's start "
                                   f"at ({-ph}, {-pw})", fix, pool((bt, bl), fill=fill, divisor=divisor))
            for bt in range(kh) for bl in range(kw) if (bt, bl) not in tried]


def _max_pool_hyps(pool: Callable, g: Any, tf: list, out_hw: tuple[int, int], fix: str) -> list[_Hyp]:
    ph, pw = g.pad
    ho, wo = out_hw
    tf_before, caffe_before = (tf[0][1], tf[1][1]), (ph, pw)
    hyps: list[_Hyp] = []
    hyps.append(_Hyp("pool_pad_value",
                     "the Keras MAX pooling reads zeros in the padding (ZeroPadding2D before MaxPooling2D) where "
                     "Caffe's padding never wins (-inf); it shows where a whole window is negative",
                     fix, pool(caffe_before, fill=0.0, divisor="")))
    if tf_before != caffe_before and (tf[0][0], tf[1][0]) == (ho, wo):
        hyps.append(_Hyp("same_padding",
                         f"the Keras pooling places its windows like TensorFlow 'same' (leading pad {tf_before}) "
                         f"where Caffe's leading pad is {caffe_before}",
                         fix, pool(tf_before, fill=-np.inf, divisor="")))
    return hyps + _offset_hyps(pool, g, (caffe_before, tf_before), fix, fill=-np.inf, divisor="")


def _ave_pool_hyps(pool: Callable, g: Any, tf: list, out_hw: tuple[int, int], fix: str) -> list[_Hyp]:
    (kh, kw), (ph, pw) = g.kernel, g.pad
    ho, wo = out_hw
    tf_before, caffe_before = (tf[0][1], tf[1][1]), (ph, pw)
    hyps: list[_Hyp] = []
    hyps.append(_Hyp("pool_avg_divisor",
                     "the Keras average pooling divides by the number of real (non-padding) elements, as "
                     "TensorFlow's padding='same' does; Caffe counts the padding in the divisor",
                     fix, pool(caffe_before, fill=0.0, divisor="valid")))
    hyps.append(_Hyp("pool_avg_divisor",
                     f"the Keras average pooling always divides by {kh}x{kw}, also where a ceil-mode window "
                     "overhangs the padded input; Caffe counts padding but not the overhang",
                     "pad the ceil overhang separately and divide by Caffe's clipped window size (or use "
                     "FLOOR rounding in both)", pool(caffe_before, fill=0.0, divisor="window")))
    if tf_before != caffe_before and (tf[0][0], tf[1][0]) == (ho, wo):
        hyps.append(_Hyp("same_padding",
                         f"the Keras pooling places its windows like TensorFlow 'same' (leading pad {tf_before}) "
                         f"and excludes padding from the divisor",
                         fix, pool(tf_before, fill=0.0, divisor="valid")))
    return hyps + _offset_hyps(pool, g, (caffe_before, tf_before), fix, fill=0.0, divisor="window")


def _pool_hyps(layer: Layer, xs: list[np.ndarray], out_hw: tuple[int, int]) -> list[_Hyp]:
    from ...params import pool_geometry

    g = pool_geometry(layer)
    x = np.asarray(xs[0], _F64)
    if x.ndim != 4 or g.kernel is None:
        return []
    h, w = x.shape[2:]
    tf = [_tf_same(s, k, st) for s, k, st in ((h, g.kernel[0], g.stride[0]), (w, g.kernel[1], g.stride[1]))]
    pool = _pooler(x, g, out_hw)
    fix = pool_padding_fix(g.method, g, h, w, out_hw)
    if g.method == "MAX":
        return _max_pool_hyps(pool, g, tf, out_hw, fix)
    if g.method == "AVE":
        return _ave_pool_hyps(pool, g, tf, out_hw, fix)
    return []


@hypotheses("Pooling")
def pooling_family(layer: Layer, xs: list[np.ndarray], probe: Probe) -> list[_Hyp]:
    return _pool_hyps(layer, xs, probe.out_hw) if probe.out_hw else []
