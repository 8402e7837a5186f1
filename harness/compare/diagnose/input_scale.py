"""Input preprocessing applied on one side only (a scale, a per-channel mean), estimated from the data."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...catalogue import types_with
from ...net import Layer
from ...params import relu_form
from ._common import _F64, _Hyp, _run


_AFFINE_KINDS = types_with(linear=True)


_KNOWN_SCALES = {"255": 255.0, "1/255": 1 / 255.0, "127.5": 127.5, "1/127.5": 1 / 127.5, "0.017": 0.017,
                 "1/0.017": 1 / 0.017, "2": 2.0, "1/2": 0.5, "256": 256.0, "1/256": 1 / 256.0}


def _preprocessing_hyps(span: list[Layer], xs: list[np.ndarray], ker: np.ndarray,
                        context: dict) -> list[tuple[_Hyp, list[Layer]]]:
    """Input preprocessing done on one side only (a Rescaling / Normalization layer in the Keras model, mean values
    or scale): for a first layer that is affine in its input, the scale and per-channel offset are estimated by least
    squares from the Keras output and then re-run through the reference."""
    layer = span[0]
    if layer.kind not in _AFFINE_KINDS or not layer.blobs or not xs:
        return []
    net = context.get("net")
    inputs = getattr(net, "inputs", None)
    if inputs is not None and layer.bottoms and layer.bottoms[0] not in inputs:
        return []
    tail = span[1:]
    if any(relu_form(t) != (0.0, None) for t in tail):  # only plain ReLUs, which commute with a positive scale
        return []
    x = np.asarray(xs[0], _F64)
    rest = list(xs[1:])
    fix = ("give both sides the same preprocessed input: remove the Rescaling / Normalization layer from the Keras "
           "model, or apply the same mean and scale to the Caffe input (transform_param mean_value / scale)")
    state: dict[str, Any] = {}

    def base() -> tuple[np.ndarray, np.ndarray] | None:
        """The reference output and the mask of elements where the Keras output is affine in the input (lazy)."""
        if "y0" not in state:
            y0 = _run(layer, [x, *rest])
            mask = (ker != 0) if tail else np.ones(ker.shape, bool)  # after a ReLU only the positive part is affine
            state["y0"] = (y0, mask) if y0.shape == ker.shape and int(mask.sum()) >= 8 else None
        return state["y0"]

    def scaled() -> np.ndarray:
        b = base()
        if b is None:
            raise ValueError("not applicable")
        y0, mask = b
        d = (_run(layer, [2.0 * x, *rest]) - y0)[mask]
        den = float(d @ d)
        s_hat = 1.0 + float((ker[mask] - y0[mask]) @ d) / den if den > 0 else 1.0
        if not math.isfinite(s_hat) or abs(s_hat - 1.0) <= 1e-3 or s_hat == 0:
            raise ValueError("no scale")
        name = next((k for k, v in _KNOWN_SCALES.items() if abs(s_hat / v - 1) < 2e-3), None)
        h_scale.explanation = (f"the Keras side multiplies the input by {s_hat:.6g}" + (f" (= {name})" if name else "")
                               + " before this layer")
        return _run(layer, [x * s_hat, *rest])

    def shifted() -> np.ndarray:
        b = base()
        if b is None:
            raise ValueError("not applicable")
        y0, mask = b
        c = x.shape[1]
        cols = []
        for ch in range(c):
            e = np.zeros((1, c, 1, 1))
            e[0, ch] = 1.0
            cols.append((_run(layer, [x + e, *rest]) - y0)[mask])
        m, *_ = np.linalg.lstsq(np.stack(cols, axis=1), y0[mask] - ker[mask], rcond=None)  # keras = y(x - m)
        if not np.all(np.isfinite(m)) or float(np.abs(m).max()) <= 1e-6 * max(float(np.abs(x).max()), 1.0):
            raise ValueError("no offset")
        h_mean.explanation = (f"the Keras side subtracts ({', '.join(f'{v:.6g}' for v in m)}) per input channel "
                              "before this layer (a mean subtraction Caffe's input did not get, or the reverse)")
        return _run(layer, [x - m.reshape(1, c, 1, 1), *rest])

    h_scale = _Hyp("input_preprocessing", "the Keras side scales the input", fix, scaled)
    h_mean = _Hyp("input_preprocessing", "the Keras side subtracts a per-channel mean", fix, shifted)
    out = [(h_scale, tail)]
    if x.ndim == 4 and 1 <= x.shape[1] <= 4:
        out.append((h_mean, tail))
    return out
