"""Hypotheses for InnerProduct (flatten order, reshaped or untransposed weights, bias) and Scale."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...net import Layer
from ._common import Probe, _F64, _Hyp, _keras_find, _keras_weights, _run, _with_blobs, hypotheses
from .layout import flatten_order_hyps


class _IP:
    """One InnerProduct's blobs, input and Keras Dense kernel, shared by its hypotheses."""

    def __init__(self, layer: Layer, xs: list[np.ndarray], keras_layer: Any) -> None:
        self.layer, self.xs, self.x = layer, xs, xs[0]
        self.transpose = layer.p("inner_product_param").transpose
        self.w = np.asarray(layer.blobs[0], _F64)
        self.b = list(layer.blobs[1:])
        self.kl = _keras_find(keras_layer, "Dense")
        ws = _keras_weights(self.kl) if self.kl is not None else []
        self.kern = ws[0] if ws else None
        self.kb = ws[1] if len(ws) > 1 else None
        self.n_out, self.k = (self.w.shape[1], self.w.shape[0]) if self.transpose else self.w.shape
        self.hyps: list[_Hyp] = []

    def same_kernel(self, c: np.ndarray) -> bool:
        kern = self.kern
        return kern is not None and kern.shape == c.shape and np.allclose(kern, c, rtol=1e-5, atol=1e-7)

    def wh(self, code: str, expl: str, fix: str, w2: np.ndarray, keras_form: np.ndarray | None = None) -> None:
        """A hypothesis that the Keras side computes with weights ``w2`` (its kernel ``keras_form``)."""
        lay = _with_blobs(self.layer, [w2, *self.b])
        xs = self.xs
        self.hyps.append(_Hyp(code, expl, fix, lambda: _run(lay, xs),
                              weight_match=keras_form is not None and self.same_kernel(keras_form)))

    def spatial(self) -> bool:
        x = self.x
        return x.ndim == 4 and x.shape[1] > 1 and x.shape[2] * x.shape[3] > 1


def _ip_hyps(layer: Layer, xs: list[np.ndarray], keras_layer: Any) -> list[_Hyp]:
    ip = _IP(layer, xs, keras_layer)
    w, x, n_out, k = ip.w, ip.x, ip.n_out, ip.k
    if x.ndim == 4 and int(np.prod(x.shape[1:])) == k:
        def rows_in(order: tuple[int, ...]) -> bool:  # the Keras kernel holds Caffe's rows in this flatten order
            c4 = w if not ip.transpose else w.T
            return ip.same_kernel(c4.reshape(n_out, *x.shape[1:]).transpose(*order, 0).reshape(k, n_out))

        ip.hyps += flatten_order_hyps(layer, xs, n_out, k, rows_in)  # every axis order of the flattened blob
    if not ip.transpose and k != n_out:  # square: the reshape is the blob itself (dense_not_transposed)
        _reshaped_hyps(ip)
    if w.shape[0] == w.shape[1]:
        ip.wh("dense_not_transposed",
              f"the Keras Dense kernel is the Caffe blob {tuple(w.shape)} used as is, without transposing",
              "transpose the InnerProduct weights: kernel = W.T" if not ip.transpose else
              "inner_product_param.transpose is true: the blob is already (K, N), use it as the kernel unchanged",
              w.T, w if not ip.transpose else w.T)
    if x.ndim >= 2 and x.shape[1] > 1:
        xr = [x[:, ::-1], *xs[1:]]
        ip.hyps.append(_Hyp("channel_order", f"the Keras side sees the {x.shape[1]} input channels in reverse order",
                            "reverse the channel axis once (x[..., ::-1]), not both or neither",
                            lambda: _run(layer, xr)))
    if ip.b:
        lay_nb = _with_blobs(layer, [w, np.zeros_like(np.asarray(ip.b[0], _F64))])
        ip.hyps.append(_Hyp("missing_bias", "the Keras Dense adds no bias (or a zero bias)",
                            "load blobs[1] as the bias: Dense(..., use_bias=True).set_weights([W.T, b])",
                            lambda: _run(lay_nb, xs),
                            weight_match=ip.kl is not None and (ip.kb is None or not np.any(ip.kb))))
    return ip.hyps


def _reshaped_hyps(ip: _IP) -> None:
    """``dense_reshaped``: the kernel written as ``W.reshape(K, N)`` instead of ``W.T`` (also after an NHWC
    Flatten, with the rows reordered to H, W, C or not)."""
    w, x, xs, n_out, k, b = ip.w, ip.x, ip.xs, ip.n_out, ip.k, ip.b
    resh = w.reshape(k, n_out)
    ip.wh("dense_reshaped", f"the Keras Dense kernel behaves like W.reshape({k}, {n_out}) of the Caffe (N, K) "
                            f"blob {tuple(w.shape)}",
          "use W.T (Caffe InnerProduct weights are (num_output, K); Keras Dense wants (K, num_output)), "
          "not reshape", resh.T, resh)
    if not (ip.spatial() and w.shape[1] == x[0].size):
        return
    # the port flattens NHWC and reorders the columns to H, W, C correctly, then reshapes instead of
    # transposing: Dense(flatten_hwc(x), W_hwc.reshape(K, N)) = Caffe on the H, W, C-ordered input
    nb, c, h, ww = x.shape
    w_hwc = w.reshape(n_out, c, h, ww).transpose(0, 2, 3, 1).reshape(n_out, k)
    resh_hwc = w_hwc.reshape(k, n_out)
    lay_hwc = _with_blobs(ip.layer, [resh_hwc.T, *b])
    xh2 = x.transpose(0, 2, 3, 1).reshape(nb, c, h, ww)
    ip.hyps.append(_Hyp("dense_reshaped",
                        f"the Keras Dense (after an NHWC Flatten, rows reordered to H, W, C) behaves like "
                        f"W_hwc.reshape({k}, {n_out}) instead of W_hwc.T",
                        "use W_hwc.T as the kernel (W_hwc = W.reshape(N, C, H, W).transpose(0, 2, 3, 1)"
                        ".reshape(N, K)), not reshape",
                        lambda: _run(lay_hwc, [xh2, *xs[1:]]), weight_match=ip.same_kernel(resh_hwc)))
    # the port flattens NHWC, leaves the rows in Caffe's C, H, W order and reshapes instead of transposing
    lay_r = _with_blobs(ip.layer, [resh.T, *b])
    ip.hyps.append(_Hyp("dense_reshaped",
                        f"after an NHWC Flatten, the Keras Dense kernel is W.reshape({k}, {n_out}) of the Caffe "
                        f"(N, K) blob: reshaped instead of transposed, rows not reordered to H, W, C",
                        f"kernel = W.reshape({n_out}, {c}, {h}, {ww}).transpose(2, 3, 1, 0).reshape({k}, "
                        f"{n_out}) (transposed, rows in the H, W, C order of the NHWC Flatten)",
                        lambda: _run(lay_r, [xh2, *xs[1:]]), weight_match=ip.same_kernel(resh)))


def _scale_hyps(layer: Layer, xs: list[np.ndarray]) -> list[_Hyp]:
    sp = layer.p("scale_param")
    if not sp.bias_term or len(xs) != 1 or len(layer.blobs) != 2:
        return []
    lay = _with_blobs(layer, [layer.blobs[0], np.zeros_like(np.asarray(layer.blobs[1], _F64))])
    return [_Hyp("missing_bias", "the Keras side applies the Scale layer's gamma but not its beta (bias_term)",
                 "load the Scale layer's blobs[1] as beta (BatchNormalization(center=True) / a bias add)",
                 lambda: _run(lay, xs))]


@hypotheses("InnerProduct")
def inner_product_family(layer: Layer, xs: list[np.ndarray], probe: Probe) -> list[_Hyp]:
    return _ip_hyps(layer, xs, probe.keras_layer) if layer.blobs else []


@hypotheses("Scale")
def scale_family(layer: Layer, xs: list[np.ndarray], probe: Probe) -> list[_Hyp]:
    return _scale_hyps(layer, xs)
