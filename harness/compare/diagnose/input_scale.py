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
    est = _OneSided(layer, np.asarray(xs[0], _F64), list(xs[1:]), ker, bool(tail))
    out = [(est.h_scale, tail)]
    if est.x.ndim == 4 and 1 <= est.x.shape[1] <= 4:
        out.append((est.h_mean, tail))
    return out


class _OneSided:
    """The two estimates of what the Keras side did to a layer's input (a scale, a per-channel offset), sharing the
    reference output; each hypothesis' explanation names the estimated value once it ran."""

    _FIX = ("give both sides the same preprocessed input: remove the Rescaling / Normalization layer from the Keras "
            "model, or apply the same mean and scale to the Caffe input (transform_param mean_value / scale)")

    def __init__(self, layer: Layer, x: np.ndarray, rest: list, ker: np.ndarray, after_relu: bool) -> None:
        self.layer, self.x, self.rest, self.ker, self.after_relu = layer, x, rest, ker, after_relu
        self.state: dict[str, Any] = {}
        self.h_scale = _Hyp("input_preprocessing", "the Keras side scales the input", self._FIX, self.scaled)
        self.h_mean = _Hyp("input_preprocessing", "the Keras side subtracts a per-channel mean", self._FIX,
                           self.shifted)

    def base(self) -> tuple[np.ndarray, np.ndarray]:
        """The reference output and the mask of elements where the Keras output is affine in the input (lazy)."""
        if "y0" not in self.state:
            y0 = _run(self.layer, [self.x, *self.rest])
            ker = self.ker  # after a ReLU only the positive part is affine
            mask = (ker != 0) if self.after_relu else np.ones(ker.shape, bool)
            self.state["y0"] = (y0, mask) if y0.shape == ker.shape and int(mask.sum()) >= 8 else None
        if self.state["y0"] is None:
            raise ValueError("not applicable")
        return self.state["y0"]

    def scaled(self) -> np.ndarray:
        y0, mask = self.base()
        x, rest, ker = self.x, self.rest, self.ker
        d = (_run(self.layer, [2.0 * x, *rest]) - y0)[mask]
        den = float(d @ d)
        s_hat = 1.0 + float((ker[mask] - y0[mask]) @ d) / den if den > 0 else 1.0
        if not math.isfinite(s_hat) or abs(s_hat - 1.0) <= 1e-3 or s_hat == 0:
            raise ValueError("no scale")
        name = next((k for k, v in _KNOWN_SCALES.items() if abs(s_hat / v - 1) < 2e-3), None)
        self.h_scale.explanation = (f"the Keras side multiplies the input by {s_hat:.6g}" +
                                    (f" (= {name})" if name else "") + " before this layer")
        return _run(self.layer, [x * s_hat, *rest])

    def shifted(self) -> np.ndarray:
        y0, mask = self.base()
        x, rest, ker = self.x, self.rest, self.ker
        c = x.shape[1]
        cols = []
        for ch in range(c):
            e = np.zeros((1, c, 1, 1))
            e[0, ch] = 1.0
            cols.append((_run(self.layer, [x + e, *rest]) - y0)[mask])
        m, *_ = np.linalg.lstsq(np.stack(cols, axis=1), y0[mask] - ker[mask], rcond=None)  # keras = y(x - m)
        if not np.all(np.isfinite(m)) or float(np.abs(m).max()) <= 1e-6 * max(float(np.abs(x).max()), 1.0):
            raise ValueError("no offset")
        self.h_mean.explanation = (f"the Keras side subtracts ({', '.join(f'{v:.6g}' for v in m)}) per input "
                                   "channel before this layer (a mean subtraction Caffe's input did not get, or "
                                   "the reverse)")
        return _run(self.layer, [x - m.reshape(1, c, 1, 1), *rest])
