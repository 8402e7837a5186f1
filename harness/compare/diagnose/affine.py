"""Hypotheses for InnerProduct (flatten order, reshaped or untransposed weights, bias) and Scale."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...net import Layer
from ._common import Probe, _F64, _Hyp, _keras_find, _keras_weights, _run, _with_blobs, hypotheses
from .layout import flatten_order_hyps


def _ip_hyps(layer: Layer, xs: list[np.ndarray], keras_layer: Any) -> list[_Hyp]:
    ip = layer.p("inner_product_param")
    w = np.asarray(layer.blobs[0], _F64)
    b = list(layer.blobs[1:])
    x = xs[0]
    hyps: list[_Hyp] = []
    kl = _keras_find(keras_layer, "Dense")
    kern = None
    if kl is not None:
        ws = _keras_weights(kl)
        kern = ws[0] if ws else None

    def same_kernel(c: np.ndarray) -> bool:
        return kern is not None and kern.shape == c.shape and np.allclose(kern, c, rtol=1e-5, atol=1e-7)

    def wh(code: str, expl: str, fix: str, w2: np.ndarray, keras_form: np.ndarray | None = None) -> None:
        lay = _with_blobs(layer, [w2, *b])
        hyps.append(_Hyp(code, expl, fix, lambda: _run(lay, xs),
                         weight_match=keras_form is not None and same_kernel(keras_form)))

    n_out, k = (w.shape[1], w.shape[0]) if ip.transpose else w.shape
    if x.ndim == 4 and int(np.prod(x.shape[1:])) == k:
        def rows_in(order: tuple[int, ...]) -> bool:  # the Keras kernel holds Caffe's rows in this flatten order
            c4 = w if not ip.transpose else w.T
            return same_kernel(c4.reshape(n_out, *x.shape[1:]).transpose(*order, 0).reshape(k, n_out))

        hyps += flatten_order_hyps(layer, xs, n_out, k, rows_in)  # every axis order of the flattened blob
    if not ip.transpose and k != n_out:  # square: the reshape is the blob itself (dense_not_transposed)
        resh = w.reshape(k, n_out)
        wh("dense_reshaped", f"the Keras Dense kernel behaves like W.reshape({k}, {n_out}) of the Caffe (N, K) "
                             f"blob {tuple(w.shape)}",
           "use W.T (Caffe InnerProduct weights are (num_output, K); Keras Dense wants (K, num_output)), "
           "not reshape", resh.T, resh)
        if x.ndim == 4 and x.shape[1] > 1 and x.shape[2] * x.shape[3] > 1 and w.shape[1] == x[0].size:
            # the port flattens NHWC and reorders the columns to H, W, C correctly, then reshapes instead of
            # transposing: Dense(flatten_hwc(x), W_hwc.reshape(K, N)) = Caffe on the H, W, C-ordered input
            nb, c, h, ww = x.shape
            w_hwc = w.reshape(n_out, c, h, ww).transpose(0, 2, 3, 1).reshape(n_out, k)
            resh_hwc = w_hwc.reshape(k, n_out)
            lay_hwc = _with_blobs(layer, [resh_hwc.T, *b])
            xh2 = x.transpose(0, 2, 3, 1).reshape(nb, c, h, ww)
            hyps.append(_Hyp("dense_reshaped",
                             f"the Keras Dense (after an NHWC Flatten, rows reordered to H, W, C) behaves like "
                             f"W_hwc.reshape({k}, {n_out}) instead of W_hwc.T",
                             "use W_hwc.T as the kernel (W_hwc = W.reshape(N, C, H, W).transpose(0, 2, 3, 1)"
                             ".reshape(N, K)), not reshape",
                             lambda: _run(lay_hwc, [xh2, *xs[1:]]), weight_match=same_kernel(resh_hwc)))
            # the port flattens NHWC, leaves the rows in Caffe's C, H, W order and reshapes instead of transposing
            lay_r = _with_blobs(layer, [resh.T, *b])
            hyps.append(_Hyp("dense_reshaped",
                             f"after an NHWC Flatten, the Keras Dense kernel is W.reshape({k}, {n_out}) of the Caffe "
                             f"(N, K) blob: reshaped instead of transposed, rows not reordered to H, W, C",
                             f"kernel = W.reshape({n_out}, {c}, {h}, {ww}).transpose(2, 3, 1, 0).reshape({k}, "
                             f"{n_out}) (transposed, rows in the H, W, C order of the NHWC Flatten)",
                             lambda: _run(lay_r, [xh2, *xs[1:]]), weight_match=same_kernel(resh)))
    if w.shape[0] == w.shape[1]:
        wh("dense_not_transposed",
           f"the Keras Dense kernel is the Caffe blob {tuple(w.shape)} used as is, without transposing",
           "transpose the InnerProduct weights: kernel = W.T" if not ip.transpose else
           "inner_product_param.transpose is true: the blob is already (K, N), use it as the kernel unchanged",
           w.T, w if not ip.transpose else w.T)
    if x.ndim >= 2 and x.shape[1] > 1:
        xr = [x[:, ::-1], *xs[1:]]
        hyps.append(_Hyp("channel_order", f"the Keras side sees the {x.shape[1]} input channels in reverse order",
                         "reverse the channel axis once (x[..., ::-1]), not both or neither", lambda: _run(layer, xr)))
    if b:
        lay_nb = _with_blobs(layer, [w, np.zeros_like(np.asarray(b[0], _F64))])
        kb = None
        if kl is not None:
            ws = _keras_weights(kl)
            kb = ws[1] if len(ws) > 1 else None
        hyps.append(_Hyp("missing_bias", "the Keras Dense adds no bias (or a zero bias)",
                         "load blobs[1] as the bias: Dense(..., use_bias=True).set_weights([W.T, b])",
                         lambda: _run(lay_nb, xs), weight_match=kl is not None and (kb is None or not np.any(kb))))
    return hyps


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
