"""Why does a Keras layer disagree with Caffe?  Candidate explanations tested against the data.

:func:`diagnose` takes one Caffe layer, the reference's inputs and output for it, and what the Keras side produced
from the same inputs in isolation.  It re-runs the Caffe layer through the NumPy reference
(:data:`harness.reference.registry.REFERENCE`) under each *classic porting bug* -- weights transformed the way a
wrong port transforms them, inputs permuted the way a wrong port reads them, padding placed the way TensorFlow places
it, arithmetic rounded the way reduced-precision hardware rounds it -- and keeps the hypotheses whose prediction
reproduces the Keras output.  Confidence measures how much of the observed error a hypothesis explains and how
closely it reproduces the Keras output::

    confidence = max(0, 1 - e_h / e_0) / (1 + e_h / 0.01)

where ``e_0 = ||keras - reference|| / ||reference||`` and ``e_h = ||keras - prediction_h|| / ||prediction_h||``.
An exact reproduction (``e_h`` at float32 rounding level) scores about 0.99+; a hypothesis that changes nothing
scores 0.  :func:`diagnose_shape` does the same from shapes alone when the Keras output cannot even be compared.

Cause codes (stable, public; they appear in the JSON report):

==========================  =========================================================================================
code                        detected by
==========================  =========================================================================================
``kernel_reshaped``         conv re-run with ``W' = W.reshape(kh, kw, ci, co).transpose(3, 2, 0, 1)`` (the Keras kernel
                            was ``W.reshape(kh, kw, ci, co)`` instead of ``W.transpose(2, 3, 1, 0)``); depthwise: the
                            kernel was ``W.reshape(kh, kw, C, m)`` instead of ``W.reshape(C, m, kh, kw).transpose(2, 3,
                            0, 1)``
``kernel_flipped``          conv/deconv re-run with the kernel rotated 180 degrees (``W[:, :, ::-1, ::-1]``)
``kernel_axes_swapped``     conv re-run with the kernel's H and W axes swapped (``W.transpose(0, 1, 3, 2)``)
``channel_order``           conv/inner-product re-run with the input channels reversed (BGR vs RGB); PReLU with its
                            slopes reversed
``input_layout``            re-run with the NCHW input read as an NHWC buffer (``x.reshape(N, H, W, C)``) or the
                            reverse; from shapes: the Keras shape is a permutation of Caffe's
``same_padding``            conv/pool/deconv re-run with TensorFlow's ``padding="same"`` placement
                            (``before = total // 2``); from shapes: Keras size = ``ceil(in / stride)``
``padding_offset``          conv/pool re-run with other asymmetric paddings of the right output size; deconv output
                            cropped at other offsets; from shapes: the size of no padding; weakly, an error on the
                            borders only
``pool_rounding``           shapes: the Keras size equals Caffe's formula with floor instead of ceil (or the reverse)
``pool_pad_value``          MAX pool re-run with zero padding (``ZeroPadding2D``) instead of ``-inf``; weakly, a MAX
                            pool error on negative inputs only
``pool_avg_divisor``        AVE pool re-run with TF's divisor (padding excluded) or a full ``k*k`` divisor
``flatten_order``           inner product / Flatten re-run on the input flattened in H, W, C order
``dense_reshaped``          inner product re-run with ``W' = W.reshape(K, N).T`` (Keras kernel ``W.reshape(K, N)``)
``dense_not_transposed``    inner product re-run with ``W' = W.T`` (Keras kernel ``W`` itself; square weights only)
``bn_scale_factor``         BatchNorm re-run with the moving-average factor blob taken as 1
``bn_epsilon``              BatchNorm re-run with Keras's epsilon (the Keras layer's, else 1e-3) instead of Caffe's
``lrn_alpha_scaling``       LRN re-run with ``alpha * n`` (Keras/TF ``alpha`` is Caffe's ``alpha / n``)
``lrn_k``                   LRN re-run with ``k = 1`` (TF's default bias) instead of Caffe's ``k``
``lrn_size``                LRN re-run with ``local_size = 2 n + 1`` (``depth_radius = n`` instead of ``(n - 1) / 2``)
``relu_slope``              ReLU re-run with the Keras layer's slope, slope 0, or the slope measured on negative
                            inputs; PReLU with its slopes zero or shared; weakly, an error on negative inputs only
``missing_bias``            conv/deconv/inner product/Scale re-run with the bias set to zero
``group_order``             grouped conv re-run with the output (or input) channel groups in reverse order
``deconv_kernel_layout``    deconv re-run with the kernel's two channel axes exchanged (``W.transpose(1, 0, 2, 3)``)
``bn_batch_stats``          BatchNorm re-run with the batch's own statistics (Keras in training mode, Caffe TRAIN
                            phase)
``bn_weight_order``         BatchNorm(+Scale) recomputed with gamma, beta, mean, variance handed to Keras in another
                            order
``dropout_active``          Dropout output zeroed at about ``dropout_ratio`` of the elements and the rest scaled by
                            ``1 / (1 - ratio)``: dropout ran in training mode
``input_preprocessing``     first (affine) layer re-run on ``x * s`` or ``x - m`` with the scale ``s`` and per-channel
                            mean ``m`` estimated by least squares from the Keras output (a Rescaling/Normalization
                            layer or mean values applied on one side only)
``reduced_precision``       error of the size float16 / bfloat16 / TF32 arithmetic produces (re-run with inputs and
                            weights rounded to that format) and spread evenly: not on borders, one channel or sign
``concat_order``            Concat re-run with its bottoms in every other order (up to 5 bottoms)
``missing_layer``           not a hypothesis: set by :func:`harness.compare.compare` when no pair fails but a Caffe net
                            output's last computing layer has no Keras counterpart (the final Softmax left out), or
                            when the Caffe net re-run without an unmatched layer right before the first divergent
                            pair reproduces its Keras output (an LRN or ReLU left out; that layer is then named)
``extra_layer``             Caffe output re-run through the activation fused into the Keras layer (Conv2D(...,
                            activation="relu") where Caffe has no ReLU); also set by :func:`harness.compare.compare`
                            when a Keras model output is computed by a layer no Caffe layer matched (a second
                            Softmax after Dense(softmax)), or when the Caffe layer run on the output of an unmatched
                            Keras layer just before it reproduces the Keras output (a stray ReLU layer)
``unknown``                 nothing above fits; the explanation lists where the error sits (borders, one channel,
                            negative inputs, a constant ratio, a shape off by one)
==========================  =========================================================================================

Hypotheses are tried most likely first and the search stops at the first exact reproduction, or when
``context["time_budget_s"]`` (default 60 s) is spent; expensive layers are tested on their first sample only.

``context`` may carry ``{"chain": [Layer, ...]}``: Caffe layers after ``layer`` whose effect the Keras output also
contains (an activation fused into ``Conv2D``, a Scale folded into ``BatchNormalization``).  Hypotheses are then
tried on every layer of the span and the rest of the span is run by the reference, so ``ref_output`` is the output of
the last layer of the chain.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import itertools
import math
import pkgutil
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..catalogue import types_with
from ..net import Layer
from .result import Cause  # one class for the report and the engine: cause, confidence, explanation, fix


__all__ = ["CAUSES", "Cause", "diagnose", "diagnose_shape"]

CAUSES: dict[str, str] = {
    "kernel_reshaped": "Caffe OIHW conv weights reshaped to Keras HWIO instead of transposed",
    "kernel_flipped": "kernel rotated 180 degrees (convolution vs cross-correlation)",
    "kernel_axes_swapped": "kernel H and W axes swapped",
    "channel_order": "input channels reversed (BGR vs RGB)",
    "input_layout": "NCHW data fed as NHWC (reshaped instead of transposed), or the reverse",
    "same_padding": "TensorFlow padding='same' instead of Caffe's symmetric padding",
    "padding_offset": "padding placed on the wrong side or of the wrong amount",
    "pool_rounding": "pooling output size rounded down (floor) where Caffe rounds up (ceil), or the reverse",
    "pool_pad_value": "MAX pooling padded with zeros instead of -inf",
    "pool_avg_divisor": "AVE pooling divides by the wrong count (TF excludes padding, Caffe counts it)",
    "flatten_order": "InnerProduct weights expect C,H,W order but the Keras Flatten gives H,W,C",
    "dense_reshaped": "InnerProduct weights reshaped to (K, N) instead of transposed",
    "dense_not_transposed": "InnerProduct weights (N, K) used as the Keras kernel without transposing",
    "bn_scale_factor": "BatchNorm moving-average factor blob (blobs[2]) ignored",
    "bn_epsilon": "BatchNorm epsilon differs (Keras default 1e-3, Caffe default 1e-5)",
    "lrn_alpha_scaling": "LRN alpha not divided by local_size (Caffe uses alpha / n)",
    "lrn_k": "LRN k (bias) dropped or changed",
    "lrn_size": "LRN depth_radius set to local_size instead of (local_size - 1) / 2",
    "relu_slope": "ReLU negative slope missing or wrong",
    "missing_bias": "bias not loaded",
    "group_order": "grouped convolution's channel groups concatenated or fed in the wrong order",
    "deconv_kernel_layout": "Deconvolution weights (C_in, C_out, kh, kw) read with the channel axes exchanged",
    "bn_batch_stats": "BatchNorm normalised with batch statistics (training mode) instead of the stored ones",
    "bn_weight_order": "BatchNormalization weights set in the wrong order (Keras: gamma, beta, mean, variance)",
    "dropout_active": "Dropout applied at inference (training mode)",
    "input_preprocessing": "input scale or mean subtraction applied on one side only",
    "reduced_precision": "float16 / bfloat16 / TF32 arithmetic",
    "concat_order": "Concatenate given the branches in another order than the Caffe Concat's bottoms",
    "missing_layer": "a Caffe layer that computes a net output has no Keras counterpart (e.g. the final Softmax "
                     "left out)",
    "extra_layer": "the Keras model output passes through a layer Caffe does not have (e.g. a second Softmax)",
    "unknown": "no tested explanation fits",
}


# ----------------------------------------------------------------------------------------------------------- helpers

_F64 = np.float64
_EXACT = 1e-4  # e_h below this (and far below e_0) is a reproduction; stop testing further hypotheses
_MAX_SAMPLES_BIG = 1  # samples used for hypotheses when a layer is expensive
_BIG_ELEMENTS = 200_000


@functools.lru_cache(maxsize=1)
def _reference() -> Any:
    """The reference registry with every reference module imported (registration happens at import)."""
    from ..reference.registry import REFERENCE

    pkg = importlib.import_module("harness.reference")
    for mod in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
        if not mod.name.startswith("_") and mod.name != "registry":
            try:
                importlib.import_module(f"harness.reference.{mod.name}")
            except Exception:  # a half-written module must not take the diagnosis down
                pass
    return REFERENCE


def _run(layer: Layer, inputs: Sequence[np.ndarray]) -> np.ndarray:
    ref = _reference()
    out = ref[layer.kind](layer, [np.asarray(x, dtype=_F64) for x in inputs], dtype=_F64)
    return np.asarray(out[0], dtype=_F64)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """Relative L2 distance of ``a`` from ``b`` (inf when the shapes differ)."""
    if a.shape != b.shape:
        return math.inf
    a = np.asarray(a, _F64)
    b = np.asarray(b, _F64)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.inf
    den = max(float(np.linalg.norm(b)), float(np.linalg.norm(a)), 1e-30)
    return float(np.linalg.norm(a - b)) / den


def _confidence(e_h: float, e_0: float) -> float:
    if not math.isfinite(e_h) or e_0 <= 0:
        return 0.0
    return max(0.0, 1.0 - e_h / e_0) / (1.0 + e_h / 0.01)


def _with_blobs(layer: Layer, blobs: Iterable[np.ndarray]) -> Layer:
    return dataclasses.replace(layer, blobs=tuple(np.asarray(b, dtype=np.float64) for b in blobs))


def _with_param(layer: Layer, edit: Callable[[Any], None]) -> Layer:
    p = type(layer.param)()
    p.CopyFrom(layer.param)
    edit(p)
    return dataclasses.replace(layer, param=p)


def _keras_layers(keras_layer: Any) -> list[Any]:
    if keras_layer is None:
        return []
    if isinstance(keras_layer, (list, tuple)):
        return [k for k in keras_layer if k is not None]
    return [keras_layer]


def _keras_find(keras_layer: Any, *class_names: str) -> Any:
    for k in _keras_layers(keras_layer):
        if type(k).__name__ in class_names:
            return k
    return None


def _keras_weights(klayer: Any) -> list[np.ndarray]:
    try:
        return [np.asarray(w) for w in klayer.get_weights()]
    except Exception:
        return []


def _keras_attr(keras_layer: Any, names: Sequence[str], class_names: Sequence[str] = ()) -> Any:
    for k in _keras_layers(keras_layer):
        if class_names and type(k).__name__ not in class_names:
            continue
        for n in names:
            v = getattr(k, n, None)
            if v is not None and not callable(v):
                return v
    return None


# Reduced-precision rounding (round to nearest even on float32 bits).
def _round_bits(x: np.ndarray, drop: int) -> np.ndarray:
    f = np.asarray(x, dtype=np.float32).copy()
    u = f.view(np.uint32)
    finite = np.isfinite(f)
    half = np.uint32((1 << (drop - 1)) - 1)
    lsb = (u >> np.uint32(drop)) & np.uint32(1)
    r = (u + half + lsb) & np.uint32(~((1 << drop) - 1) & 0xFFFFFFFF)
    u[finite] = r[finite]
    return f.astype(_F64)


_FORMATS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], bool, str]] = {
    # name: (rounding, output rounded too, fix)
    "TF32": (lambda a: _round_bits(a, 13), False,
             "turn TF32 off: tf.config.experimental.enable_tensor_float_32_execution(False) (GPU convolutions and "
             "matmuls round inputs to 10 mantissa bits by default on Ampere and newer)"),
    "float16": (lambda a: np.asarray(a, dtype=np.float32).astype(np.float16).astype(_F64), True,
                "compute this layer in float32: keras.mixed_precision.set_global_policy('float32') or drop "
                "dtype='float16' / mixed_float16 from the layer"),
    "bfloat16": (lambda a: _round_bits(a, 16), True,
                 "compute this layer in float32: drop dtype='bfloat16' / mixed_bfloat16 from the layer"),
}


# -------------------------------------------------------------------------------------------------- error location

@dataclass
class _Cues:
    texts: list[str]
    border_only: bool = False
    channel: int | None = None
    negative_only: bool = False
    ratio: float | None = None

    @property
    def structured(self) -> bool:
        return self.border_only or self.channel is not None or self.negative_only or self.ratio is not None


def _cues(x: np.ndarray | None, ref: np.ndarray, ker: np.ndarray) -> _Cues:
    """Where does the error sit?  Borders only, one channel, negative inputs only, a constant ratio."""
    err = np.abs(np.asarray(ker, _F64) - ref)
    total = float(err.sum())
    cues = _Cues([])
    if total == 0 or not np.isfinite(total):
        return cues
    if ref.ndim == 4 and ref.shape[2] > 2 and ref.shape[3] > 2:
        inner = err[:, :, 1:-1, 1:-1]
        frac_border = 1.0 - float(inner.sum()) / total
        border_share = 1.0 - inner.size / err.size
        if frac_border > 0.99 and border_share < 0.9:
            cues.border_only = True
            cues.texts.append(f"the error sits on the border rows/columns only ({frac_border:.0%} of it)")
    if ref.ndim >= 2 and ref.shape[1] > 1:
        per_c = err.reshape(err.shape[0], err.shape[1], -1).sum(axis=(0, 2))
        c = int(np.argmax(per_c))
        if per_c[c] > 0.99 * total:
            cues.channel = c
            cues.texts.append(f"the error sits in channel {c} only")
    if x is not None and x.shape == ref.shape:
        neg = x < 0
        if neg.any() and (~neg).any():
            frac_neg = float(err[neg].sum()) / total
            if frac_neg > 0.99:
                cues.negative_only = True
                cues.texts.append("the error sits where the input is negative only")
    big = np.abs(ref) > 1e-3 * max(float(np.abs(ref).max()), 1e-30)
    if big.sum() > 4:
        ratios = np.asarray(ker, _F64)[big] / ref[big]
        med = float(np.median(ratios))
        if abs(med - 1.0) > 1e-3 and np.all(np.abs(ratios - med) <= 1e-3 * abs(med) + 1e-9):
            cues.ratio = med
            cues.texts.append(f"Keras = {med:.6g} x Caffe everywhere (a constant ratio: a scale is wrong)")
    return cues


# ------------------------------------------------------------------------------------------------------ hypotheses

@dataclass
class _Hyp:
    code: str
    explanation: str
    fix: str
    predict: Callable[[], np.ndarray]
    weight_match: bool = False  # the Keras weights equal the buggy transform exactly


_ACT_FN: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda y: np.maximum(y, 0.0),
    "sigmoid": lambda y: 1.0 / (1.0 + np.exp(-y)),
    "tanh": np.tanh,
    "softmax": lambda y: np.exp(y - y.max(axis=1, keepdims=True)) / np.exp(y - y.max(axis=1, keepdims=True)).sum(
        axis=1, keepdims=True),  # Keras: the last (channel) axis = Caffe's axis 1
}
_CAFFE_ACTS = types_with(role="activation")


def _extra_activation_hyps(span: list[Layer], ref_out: np.ndarray, keras_layer: Any) -> list[_Hyp]:
    """``extra_layer``: the Keras layer has a fused activation (``Conv2D(..., activation="relu")``) where the Caffe
    span has none (LeNet's convolutions have no ReLU)."""
    if any(lay.kind in _CAFFE_ACTS for lay in span):
        return []
    out = []
    for k in _keras_layers(keras_layer):
        act = getattr(k, "activation", None)
        name = getattr(act, "__name__", None)
        if type(k).__name__ == "Activation" or name not in _ACT_FN:
            continue
        fn = _ACT_FN[name]
        out.append(_Hyp("extra_layer",
                        f"the Keras layer {k.name!r} applies activation={name!r}, which the Caffe net does not have "
                        f"after {span[-1].name!r}",
                        f"drop activation={name!r} from {type(k).__name__} {k.name!r} (Caffe's {span[-1].type} "
                        f"{span[-1].name!r} is not followed by an activation)",
                        lambda fn=fn: fn(np.asarray(ref_out, _F64))))
    return out


def _conv_hyps(layer: Layer, xs: list[np.ndarray], keras_layer: Any, out_hw: tuple[int, int]) -> list[_Hyp]:
    from ..params import conv_geometry

    g = conv_geometry(layer)
    deconv = layer.kind == "Deconvolution"
    w = np.asarray(layer.blobs[0], _F64)
    b = list(layer.blobs[1:])
    o, i, kh, kw = w.shape
    x = xs[0]
    hyps: list[_Hyp] = []
    kern = None
    kl = _keras_find(keras_layer, "Conv2D", "Conv2DTranspose", "DepthwiseConv2D")
    if kl is not None:
        kw_ = _keras_weights(kl)
        kern = kw_[0] if kw_ else None

    def same_kernel(candidate: np.ndarray) -> bool:
        return kern is not None and kern.shape == candidate.shape and np.allclose(kern, candidate, rtol=1e-5,
                                                                                     atol=1e-7)

    def wh(code: str, expl: str, fix: str, w2: np.ndarray, keras_form: np.ndarray | None = None) -> None:
        lay = _with_blobs(layer, [w2, *b])
        hyps.append(_Hyp(code, expl, fix, lambda: _run(lay, xs),
                         weight_match=keras_form is not None and same_kernel(keras_form)))

    c_in = x.shape[1] if x.ndim == 4 else 0
    depthwise = not deconv and i == 1 and c_in > 1 and (layer.kind == "ConvolutionDepthwise" or g.group == c_in)
    if depthwise:
        # Keras DepthwiseConv2D wants (kh, kw, C, m) = W.reshape(C, m, kh, kw).transpose(2, 3, 0, 1)
        m = o // c_in
        resh = w.reshape(kh, kw, c_in, m)
        wh("kernel_reshaped",
           f"the Keras depthwise kernel behaves like W.reshape({kh}, {kw}, {c_in}, {m}) of the Caffe blob "
           f"{tuple(w.shape)}",
           f"use w.reshape({c_in}, {m}, {kh}, {kw}).transpose(2, 3, 0, 1) for DepthwiseConv2D, not a plain reshape",
           resh.transpose(2, 3, 0, 1).reshape(o, 1, kh, kw), resh)
        if kh == kw:
            wh("kernel_axes_swapped", "the Keras depthwise kernel's H and W axes are swapped",
               f"use w.reshape({c_in}, {m}, {kh}, {kw}).transpose(2, 3, 0, 1) (H, W, C, multiplier)",
               w.transpose(0, 1, 3, 2))
    elif not deconv:
        resh = w.reshape(kh, kw, i, o)
        wh("kernel_reshaped",
           f"the Keras kernel behaves like W.reshape({kh}, {kw}, {i}, {o}) of the Caffe OIHW blob {tuple(w.shape)}",
           "use w.transpose(2, 3, 1, 0) to turn Caffe OIHW into Keras HWIO, not reshape", resh.transpose(3, 2, 0, 1),
           resh)
        if kh == kw:
            wh("kernel_axes_swapped",
               "the Keras kernel's H and W axes are swapped (e.g. W.T or transpose(3, 2, 1, 0))",
               "use w.transpose(2, 3, 1, 0) (H, W, in, out), not w.T / transpose(3, 2, 1, 0)",
               w.transpose(0, 1, 3, 2), w.transpose(3, 2, 1, 0))
    elif kh == kw:
        wh("kernel_axes_swapped", "the Keras kernel's H and W axes are swapped",
           "put the kernel height first: (kh, kw, ...)", w.transpose(0, 1, 3, 2))
    if kh > 1 or kw > 1:
        flip = w[:, :, ::-1, ::-1]
        wh("kernel_flipped",
           "the Keras kernel is the Caffe kernel rotated 180 degrees (convolution vs cross-correlation)",
           "do not flip the kernel: Caffe and Keras both compute cross-correlation (drop w[:, :, ::-1, ::-1] / "
           "np.rot90(..., 2))", flip,
           None if deconv or depthwise else flip.transpose(2, 3, 1, 0))
    if g.group > 1 and not depthwise and o % g.group == 0:
        blocks = np.split(np.arange(o), g.group)
        perm = np.concatenate(blocks[::-1])
        full = _with_blobs(layer, [w, *b])
        hyps.append(_Hyp("group_order",
                         f"the Keras side puts the {g.group} output channel groups in reverse order (the per-group "
                         "convolutions concatenated the wrong way round)",
                         "concatenate the group outputs in Caffe's order (group 0 first), or use Conv2D(groups=g) "
                         "with w.transpose(2, 3, 1, 0)", lambda: _run(full, xs)[:, perm]))
        if c_in % g.group == 0:
            iblocks = np.split(np.arange(c_in), g.group)
            iperm = np.concatenate(iblocks[::-1])
            hyps.append(_Hyp("group_order",
                             f"the Keras side feeds the {g.group} input channel groups to the wrong group's weights",
                             "split the input channels into contiguous groups in order (group i gets channels "
                             "i*C/g .. (i+1)*C/g - 1)", lambda: _run(full, [x[:, iperm], *xs[1:]])))
        if not deconv:  # Conv2D(groups=g) given the filter groups in reverse order: each group's filters (and
            # biases) see another group's input channels
            swapped = _with_blobs(layer, [w[perm], *[np.asarray(bb)[perm] if np.ndim(bb) == 1 and len(bb) == o
                                                      else bb for bb in b]])
            hyps.append(_Hyp("group_order",
                             f"the Keras kernel holds the {g.group} filter groups in reverse order (group i's "
                             "filters and biases applied to another group's input channels)",
                             "keep Caffe's filter order: Conv2D(groups=g) kernel = w.transpose(2, 3, 1, 0) of the "
                             "whole (C_out, C_in/g, kh, kw) blob, group 0's filters first",
                             lambda: _run(swapped, xs)))
    if deconv and w.shape[0] == w.shape[1]:
        wh("deconv_kernel_layout",
           f"the Deconvolution blob {tuple(w.shape)} is (C_in, C_out, kh, kw) but was read as (C_out, C_in, kh, kw)",
           "for Conv2DTranspose use w.transpose(2, 3, 1, 0) of Caffe's (C_in, C_out, kh, kw) blob, which gives "
           "(kh, kw, C_out, C_in)", w.transpose(1, 0, 2, 3))
    if b:
        zb = [w, np.zeros_like(np.asarray(b[0], _F64))]
        lay_nb = _with_blobs(layer, zb)
        kb = None
        if kl is not None:
            kws = _keras_weights(kl)
            kb = kws[1] if len(kws) > 1 else None
        hyps.append(_Hyp("missing_bias", "the Keras layer adds no bias (or a zero bias)",
                         "load blobs[1] as the bias: layer.set_weights([kernel, bias]) with use_bias=True",
                         lambda: _run(lay_nb, xs),
                         weight_match=(kl is not None and (kb is None or not np.any(kb)))))
    # input-side hypotheses (the first layers of a net are where these happen)
    if x.ndim == 4 and x.shape[1] > 1 and not deconv:
        xr = [x[:, ::-1], *xs[1:]]
        hyps.append(_Hyp("channel_order",
                         f"the Keras side sees the {x.shape[1]} input channels in reverse order (BGR vs RGB)",
                         "reverse the channel axis once: x[..., ::-1] for the Keras input (or w[:, ::-1] for the "
                         "first layer's weights), not both or neither", lambda: _run(layer, xr)))
    hyps += _layout_hyps(layer, xs)
    # padding placement
    hyps += _deconv_pad_hyps(layer, xs, g, out_hw) if deconv else _conv_pad_hyps(layer, xs, g, out_hw)
    return hyps


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


def _tf_same(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow 'same': out = ceil(in / s), total = max((out - 1) s + k - in, 0), before = total // 2."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def _clear_conv_pad(p: Any) -> None:
    cp = p.convolution_param
    for f in ("pad", "pad_h", "pad_w"):
        cp.ClearField(f)


def _conv_pad_hyps(layer: Layer, xs: list[np.ndarray], g: Any, out_hw: tuple[int, int]) -> list[_Hyp]:
    x = xs[0]
    if x.ndim != 4:
        return []
    h, w = x.shape[2:]
    ext = [g.dilation[a] * (g.kernel[a] - 1) + 1 for a in (0, 1)]
    nopad = _with_param(layer, _clear_conv_pad)

    def padded(pt: int, pb: int, pl: int, pr: int) -> Callable[[], np.ndarray]:
        def f() -> np.ndarray:
            xp = np.pad(np.asarray(x, _F64), ((0, 0), (0, 0), (pt, max(pb, 0)), (pl, max(pr, 0))))
            xp = xp[:, :, : xp.shape[2] + min(pb, 0), : xp.shape[3] + min(pr, 0)]
            return _run(nopad, [xp])
        return f

    hyps: list[_Hyp] = []
    same = [_tf_same(s, ext[a], g.stride[a]) for a, s in enumerate((h, w))]
    caffe = ((g.pad[0], g.pad[0]), (g.pad[1], g.pad[1]))
    tf_pads = ((same[0][1], same[0][2]), (same[1][1], same[1][2]))
    if (same[0][0], same[1][0]) == tuple(out_hw) and tf_pads != caffe:
        hyps.append(_Hyp("same_padding",
                         f"the Keras layer pads like TensorFlow 'same' (top/bottom {tf_pads[0]}, left/right "
                         f"{tf_pads[1]}) where Caffe pads {g.pad[0]}x{g.pad[1]} on every side",
                         f"use keras.layers.ZeroPadding2D(({g.pad[0]}, {g.pad[1]})) then padding='valid' instead of "
                         f"padding='same'", padded(*tf_pads[0], *tf_pads[1])))
    cands = []
    for a, size in enumerate((h, w)):
        opts = []
        for before in range(0, ext[a]):
            for after in range(-g.stride[a] + 1, ext[a] + g.stride[a]):
                if (size + before + after - ext[a]) // g.stride[a] + 1 == out_hw[a] and size + before + after >= ext[a]:
                    opts.append((before, after))
        cands.append(opts)
    combos = [(ph, pw) for ph in cands[0] for pw in cands[1] if (ph, pw) != caffe and (ph, pw) != tf_pads]
    combos.sort(key=lambda c: abs(c[0][0] - g.pad[0]) + abs(c[1][0] - g.pad[1])
                + abs(c[0][1] - g.pad[0]) + abs(c[1][1] - g.pad[1]))
    cost = x[:1].size * g.num_output * g.kernel[0] * g.kernel[1]
    limit = 64 if cost < 5e7 else 6
    for ph, pw in combos[:limit]:
        hyps.append(_Hyp("padding_offset",
                         f"the Keras layer pads (top, bottom) = {ph}, (left, right) = {pw} where Caffe pads "
                         f"{g.pad[0]}x{g.pad[1]} on every side",
                         f"pad symmetrically: keras.layers.ZeroPadding2D(({g.pad[0]}, {g.pad[1]})) then "
                         f"padding='valid'", padded(*ph, *pw)))
    return hyps


def _pool_hyps(layer: Layer, xs: list[np.ndarray], out_hw: tuple[int, int]) -> list[_Hyp]:
    from ..params import pool_geometry

    g = pool_geometry(layer)
    x = np.asarray(xs[0], _F64)
    if x.ndim != 4 or g.kernel is None:
        return []
    (kh, kw), (sh, sw), (ph, pw) = g.kernel, g.stride, g.pad
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

    hyps: list[_Hyp] = []
    tf = [_tf_same(s, k, st) for s, k, st in ((h, kh, sh), (w, kw, sw))]
    tf_before = (tf[0][1], tf[1][1])
    caffe_before = (ph, pw)
    if g.method == "MAX":
        hyps.append(_Hyp("pool_pad_value",
                         "the Keras MAX pooling reads zeros in the padding (ZeroPadding2D before MaxPooling2D) where "
                         "Caffe's padding never wins (-inf); it shows where a whole window is negative",
                         "pad with -inf, not zeros: use MaxPooling2D(padding='same') when its placement matches, or "
                         "pad with a large negative constant (e.g. keras.ops.pad(x, ..., constant_values=-inf))",
                         pool(caffe_before, fill=0.0, divisor="")))
        if tf_before != caffe_before and (tf[0][0], tf[1][0]) == (ho, wo):
            hyps.append(_Hyp("same_padding",
                             f"the Keras pooling places its windows like TensorFlow 'same' (leading pad {tf_before}) "
                             f"where Caffe's leading pad is {caffe_before}",
                             f"pad explicitly ({ph}, {pw}) before a padding='valid' pooling",
                             pool(tf_before, fill=-np.inf, divisor="")))
        for bt in range(0, kh):
            for bl in range(0, kw):
                if (bt, bl) not in (caffe_before, tf_before):
                    hyps.append(_Hyp("padding_offset",
                                     f"the Keras pooling windows start at offset (-{bt}, -{bl}) where Caffe's start "
                                     f"at (-{ph}, -{pw})",
                                     f"pad ({ph}, {pw}) before the pooling, symmetrically",
                                     pool((bt, bl), fill=-np.inf, divisor="")))
    elif g.method == "AVE":
        hyps.append(_Hyp("pool_avg_divisor",
                         "the Keras average pooling divides by the number of real (non-padding) elements, as "
                         "TensorFlow's padding='same' does; Caffe counts the padding in the divisor",
                         f"use ZeroPadding2D(({ph}, {pw})) then AveragePooling2D(padding='valid') so padding counts "
                         f"(and crop Caffe's ceil overhang if any)", pool(caffe_before, fill=0.0, divisor="valid")))
        hyps.append(_Hyp("pool_avg_divisor",
                         f"the Keras average pooling always divides by {kh}x{kw}, also where a ceil-mode window "
                         "overhangs the padded input; Caffe counts padding but not the overhang",
                         "pad the ceil overhang separately and divide by Caffe's clipped window size (or use "
                         "FLOOR rounding in both)", pool(caffe_before, fill=0.0, divisor="window")))
        if tf_before != caffe_before and (tf[0][0], tf[1][0]) == (ho, wo):
            hyps.append(_Hyp("same_padding",
                             f"the Keras pooling places its windows like TensorFlow 'same' (leading pad {tf_before}) "
                             f"and excludes padding from the divisor",
                             f"use ZeroPadding2D(({ph}, {pw})) then AveragePooling2D(padding='valid')",
                             pool(tf_before, fill=0.0, divisor="valid")))
        for bt in range(0, kh):
            for bl in range(0, kw):
                if (bt, bl) not in (caffe_before, tf_before):
                    hyps.append(_Hyp("padding_offset",
                                     f"the Keras pooling windows start at offset (-{bt}, -{bl}) where Caffe's start "
                                     f"at (-{ph}, -{pw})", f"pad ({ph}, {pw}) before the pooling, symmetrically",
                                     pool((bt, bl), fill=0.0, divisor="window")))
    return hyps


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
    if x.ndim == 4 and x.shape[1] > 1 and x.shape[2] * x.shape[3] > 1:
        nb, c, h, ww = x.shape
        xh = x.transpose(0, 2, 3, 1).reshape(nb, c, h, ww)
        hyps.append(_Hyp("flatten_order",
                         f"the Keras Dense sees its {c}x{h}x{ww} input flattened in H, W, C order (Flatten on NHWC) "
                         "but the Caffe weights are in C, H, W order",
                         f"permute the kernel rows: kernel = W.reshape({n_out}, {c}, {h}, {ww}).transpose(2, 3, 1, 0)"
                         f".reshape({k}, {n_out}) (or Permute((3, 1, 2)) before Flatten)",
                         lambda: _run(layer, [xh, *xs[1:]])))
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


def _bn_hyps(layer: Layer, xs: list[np.ndarray], keras_layer: Any) -> list[_Hyp]:
    hyps: list[_Hyp] = []
    bp = layer.p("batch_norm_param")
    if len(layer.blobs) == 3:
        mean, var, fac = (np.asarray(bb, _F64) for bb in layer.blobs)
        f = float(fac.reshape(-1)[0])
        if f != 1.0:
            lay = _with_blobs(layer, [mean, var, np.ones_like(fac)])
            scale = 0.0 if f == 0 else 1.0 / f
            hyps.append(_Hyp("bn_scale_factor",
                             f"the Keras BatchNormalization uses blobs[0] and blobs[1] as mean and variance directly, "
                             f"ignoring the moving-average factor blobs[2] = {f:g}",
                             f"divide by the factor: mean = blobs[0] * {scale:.6g}, variance = blobs[1] * {scale:.6g} "
                             f"(1 / blobs[2]; 0 when blobs[2] == 0)", lambda lay=lay: _run(lay, xs)))
    if not bp.HasField("use_global_stats") or bp.use_global_stats:
        def edit_bs(p: Any) -> None:
            p.batch_norm_param.use_global_stats = False

        lay_bs = _with_param(layer, edit_bs)
        hyps.append(_Hyp("bn_batch_stats",
                         "the Keras side normalises with the batch's own mean and variance (BatchNormalization in "
                         "training mode) instead of the stored statistics",
                         "run the model in inference mode (model(x, training=False) or model.predict) and keep "
                         "BatchNormalization layers frozen", lambda: _run(lay_bs, xs)))
    caffe_eps = float(bp.eps)
    keps = _keras_attr(keras_layer, ("epsilon",), ("BatchNormalization",))
    candidates = [float(keps)] if keps is not None else []
    candidates += [e for e in (1e-3,) if e not in candidates]
    for e in candidates:
        if abs(e - caffe_eps) <= 1e-12:
            continue

        def edit(p: Any, e: float = e) -> None:
            p.batch_norm_param.eps = e

        lay = _with_param(layer, edit)
        hyps.append(_Hyp("bn_epsilon",
                         f"the Keras BatchNormalization uses epsilon={e:g} where Caffe uses eps={caffe_eps:g}",
                         f"BatchNormalization(epsilon={caffe_eps:g}) (Keras defaults to 1e-3, Caffe to 1e-5)",
                         lambda lay=lay: _run(lay, xs), weight_match=keps is not None and abs(float(keps) - e) < 1e-12))
    return hyps


def _lrn_hyps(layer: Layer, xs: list[np.ndarray]) -> list[_Hyp]:
    lp = layer.p("lrn_param")
    n, alpha, k = int(lp.local_size), float(lp.alpha), float(lp.k)
    hyps: list[_Hyp] = []

    def variant(code: str, expl: str, fix: str, **changes: float) -> None:
        def edit(p: Any) -> None:
            for f, v in changes.items():
                setattr(p.lrn_param, f, v)
        lay = _with_param(layer, edit)
        hyps.append(_Hyp(code, expl, fix, lambda: _run(lay, xs)))

    if n > 1:
        variant("lrn_alpha_scaling", f"the Keras LRN uses alpha={alpha:g} per element; Caffe divides it by "
                                     f"local_size={n} (alpha / n = {alpha / n:g})",
                f"pass alpha={alpha:g} / {n} = {alpha / n:g} to tf.nn.local_response_normalization", alpha=alpha * n)
        variant("lrn_alpha_scaling", f"the Keras LRN divides alpha by local_size twice (alpha / n^2)",
                f"pass alpha / n = {alpha / n:g} once", alpha=alpha / n)
        variant("lrn_size", f"the Keras LRN sums {2 * n + 1} channels (depth_radius={n}); Caffe's local_size={n} "
                            f"means depth_radius={(n - 1) // 2}",
                f"use depth_radius=(local_size - 1) // 2 = {(n - 1) // 2}", local_size=2 * n + 1,
                alpha=alpha * (2 * n + 1) / n)
    for k2 in (1.0, 2.0, 0.0):
        if abs(k2 - k) > 1e-12 and layer.p("lrn_param").norm_region == 0:
            variant("lrn_k", f"the Keras LRN uses bias k={k2:g} where Caffe uses k={k:g}",
                    f"pass bias={k:g} (Caffe's lrn_param.k) to tf.nn.local_response_normalization", k=k2)
    return hyps


def _relu_hyps(layer: Layer, xs: list[np.ndarray], keras_out: np.ndarray, keras_layer: Any) -> list[_Hyp]:
    slope = float(layer.p("relu_param").negative_slope)
    x = np.asarray(xs[0], _F64)
    cands: list[tuple[float, str]] = []
    ks = _keras_attr(keras_layer, ("negative_slope", "alpha"), ("LeakyReLU", "ReLU"))
    if ks is not None:
        cands.append((float(ks), "the Keras layer's"))
    cands.append((0.0, "plain ReLU"))
    neg = x < -1e-6 * max(float(np.abs(x).max()), 1e-30)
    if keras_out.shape == x.shape and neg.any():
        est = float(np.median(np.asarray(keras_out, _F64)[neg] / x[neg]))
        cands.append((est, "measured"))
    hyps = []
    seen: list[float] = []
    for s, how in cands:
        if abs(s - slope) < 1e-9 or any(abs(s - t) < 1e-9 for t in seen):
            continue
        seen.append(s)

        def edit(p: Any, s: float = s) -> None:
            p.relu_param.negative_slope = s

        lay = _with_param(layer, edit)
        hyps.append(_Hyp("relu_slope", f"the Keras activation uses negative slope {s:.6g} ({how}) where Caffe's "
                                       f"negative_slope is {slope:g}",
                         f"use keras.layers.LeakyReLU(negative_slope={slope:g})" if slope else
                         "use a plain ReLU (negative_slope 0)", lambda lay=lay: _run(lay, xs)))
    return hyps


def _prelu_hyps(layer: Layer, xs: list[np.ndarray]) -> list[_Hyp]:
    a = np.asarray(layer.blobs[0], _F64)
    hyps = [_Hyp("relu_slope", "the Keras PReLU's slopes are zero (not loaded): it acts as a plain ReLU",
                 "load Caffe's PReLU blobs[0] into keras.layers.PReLU(shared_axes=[1, 2]) as alpha with shape "
                 "(1, 1, C)", lambda: _run(_with_blobs(layer, [np.zeros_like(a)]), xs))]
    if a.size > 1:
        hyps.append(_Hyp("relu_slope", "the Keras PReLU uses the first channel's slope for every channel",
                         "give PReLU one slope per channel (alpha shape (1, 1, C), shared_axes=[1, 2])",
                         lambda: _run(_with_blobs(layer, [np.full_like(a, a.reshape(-1)[0])]), xs)))
        hyps.append(_Hyp("channel_order", "the Keras PReLU's per-channel slopes are in reverse channel order",
                         "keep the slopes in Caffe's channel order", lambda: _run(_with_blobs(layer, [a[::-1]]), xs)))
    return hyps


def _scale_hyps(layer: Layer, xs: list[np.ndarray]) -> list[_Hyp]:
    sp = layer.p("scale_param")
    if not sp.bias_term or len(xs) != 1 or len(layer.blobs) != 2:
        return []
    lay = _with_blobs(layer, [layer.blobs[0], np.zeros_like(np.asarray(layer.blobs[1], _F64))])
    return [_Hyp("missing_bias", "the Keras side applies the Scale layer's gamma but not its beta (bias_term)",
                 "load the Scale layer's blobs[1] as beta (BatchNormalization(center=True) / a bias add)",
                 lambda: _run(lay, xs))]


def _flatten_hyps(layer: Layer, xs: list[np.ndarray]) -> list[_Hyp]:
    x = xs[0]
    if x.ndim != 4 or x.shape[1] == 1 or x.shape[2] * x.shape[3] == 1:
        return []
    n, c, h, w = x.shape
    xh = x.transpose(0, 2, 3, 1).reshape(n, c, h, w)
    return [_Hyp("flatten_order", "the Keras Flatten runs on NHWC and gives H, W, C order; Caffe flattens C, H, W",
                 "add keras.layers.Permute((3, 1, 2)) before Flatten (or permute the next Dense kernel's rows)",
                 lambda: _run(layer, [xh, *xs[1:]]))]


def _bn_order_hyps(span: list[Layer], xs: list[np.ndarray]) -> list[tuple[_Hyp, list[Layer]]]:
    """BatchNorm (+ Scale) recomputed with its four per-channel vectors given to Keras in another order."""
    bn = span[0]
    x = np.asarray(xs[0], _F64) if xs else None
    if bn.kind != "BatchNorm" or len(bn.blobs) != 3 or x is None or x.ndim < 2:
        return []
    c = x.shape[1]
    mean, var, fac = (np.asarray(bb, _F64).reshape(-1) for bb in bn.blobs)
    if mean.size != c or var.size != c:
        return []
    f = float(fac[0])
    sc = 0.0 if f == 0 else 1.0 / f
    mean, var = mean * sc, var * sc
    eps = float(bn.p("batch_norm_param").eps)
    gamma, beta = np.ones(c), np.zeros(c)
    tail = span[1:]
    has_scale = False
    if len(span) > 1 and span[1].kind == "Scale" and span[1].blobs and span[1].blobs[0].size == c:
        gamma = np.asarray(span[1].blobs[0], _F64).reshape(-1)
        if len(span[1].blobs) > 1:
            beta = np.asarray(span[1].blobs[1], _F64).reshape(-1)
        tail, has_scale = span[2:], True
    names = ("gamma", "beta", "mean", "variance")
    vals = (gamma, beta, mean, var)
    perms = list(itertools.permutations(range(4)))[1:] if has_scale else [(0, 1, 3, 2)]
    shape = (1, c) + (1,) * (x.ndim - 2)
    out = []
    for perm in perms:
        g, b, m, v = (vals[i].reshape(shape) for i in perm)
        if all(np.array_equal(vals[perm[j]], vals[j]) for j in range(4)):
            continue

        def predict(g=g, b=b, m=m, v=v) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                return g * (x - m) / np.sqrt(v + eps) + b

        given = ", ".join(names[i] for i in perm)
        out.append((_Hyp("bn_weight_order",
                         f"the Keras BatchNormalization got its weights in the order [{given}] where it expects "
                         "[gamma, beta, moving_mean, moving_variance]",
                         "set_weights([gamma, beta, mean, variance]) in exactly that order (Scale blobs[0], blobs[1]; "
                         "BatchNorm blobs[0] / blobs[2], blobs[1] / blobs[2])", predict), tail))
    return out


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
    if any(t.kind != "ReLU" or float(t.p("relu_param").negative_slope) != 0.0 for t in tail):
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


def _dropout_cause(layer: Layer, ref: np.ndarray, ker: np.ndarray) -> Cause | None:
    """Dropout ran in training mode: about ``ratio`` of the elements zeroed, the rest scaled by 1 / (1 - ratio)."""
    p = float(layer.p("dropout_param").dropout_ratio)
    nz = ref != 0
    n = int(nz.sum())
    if n < 8 or not 0 < p < 1:
        return None
    zeroed = (ker == 0) & nz
    frac = float(zeroed.sum()) / n
    keep = nz & ~zeroed
    if not keep.any() or frac == 0:
        return None
    ratio = float(np.median(ker[keep] / ref[keep]))
    spread = 0.1 + 3 * math.sqrt(p * (1 - p) / n)
    conf = 0.0
    if abs(frac - p) <= spread:
        conf = 0.6
        if abs(ratio * (1 - p) - 1) < 1e-3:
            conf = 0.97
    if conf == 0:
        return None
    return Cause("dropout_active", conf,
                 f"{frac:.0%} of the non-zero elements are zeroed (dropout_ratio {p:g}) and the rest are scaled by "
                 f"{ratio:.4g} (1 / (1 - ratio) = {1 / (1 - p):.4g}): dropout ran in training mode",
                 "run the Keras model in inference mode (model(x, training=False) / model.predict); Caffe's Dropout "
                 "is the identity in the TEST phase")


def _deconv_pad_hyps(layer: Layer, xs: list[np.ndarray], g: Any, out_hw: tuple[int, int]) -> list[_Hyp]:
    """Deconvolution padding = cropping of the full output: other crop offsets, and TF 'same''s."""
    x = xs[0]
    if x.ndim != 4:
        return []
    h, w = x.shape[2:]
    ext = [g.dilation[a] * (g.kernel[a] - 1) + 1 for a in (0, 1)]
    full_hw = [g.stride[0] * (h - 1) + ext[0], g.stride[1] * (w - 1) + ext[1]]
    nopad = _with_param(layer, _clear_conv_pad)
    cache: dict[str, np.ndarray] = {}

    def full() -> np.ndarray:
        if "y" not in cache:
            cache["y"] = _run(nopad, xs)
        return cache["y"]

    # Conv2DTranspose(padding="same"): out = in * s, crop before = max((in - 1) s + k - out, 0) // 2
    tf_before = tuple(max((size - 1) * g.stride[a] + ext[a] - size * g.stride[a], 0) // 2
                      for a, size in enumerate((h, w)))
    tf_same_fits = (h * g.stride[0], w * g.stride[1]) == tuple(out_hw)
    hyps = []
    for ct in range(0, full_hw[0] - out_hw[0] + 1):
        for cl in range(0, full_hw[1] - out_hw[1] + 1):
            if (ct, cl) == tuple(g.pad):
                continue
            same = tf_same_fits and (ct, cl) == tf_before
            hyps.append(_Hyp("same_padding" if same else "padding_offset",
                             f"the Keras transposed convolution crops its full output at offset ({ct}, {cl})"
                             + (" (TensorFlow 'same')" if same else "") + f" where Caffe crops pad = "
                             f"({g.pad[0]}, {g.pad[1]})",
                             f"use Conv2DTranspose(padding='valid') then Cropping2D((({g.pad[0]}, {g.pad[0]}), "
                             f"({g.pad[1]}, {g.pad[1]})))",
                             lambda ct=ct, cl=cl: full()[:, :, ct:ct + out_hw[0], cl:cl + out_hw[1]]))
    hyps.sort(key=lambda hh: hh.code != "same_padding")
    return hyps


def _concat_hyps(layer: Layer, xs: list[np.ndarray]) -> list[_Hyp]:
    """``concat_order``: Concatenate given the branches in another order than Caffe's bottoms (Concat only; for
    Eltwise SUM/MAX the order does not matter, for PROD neither)."""
    import itertools

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


def _layer_hyps(layer: Layer, xs: list[np.ndarray], keras_out_first: np.ndarray | None, keras_layer: Any,
                out_hw: tuple[int, int] | None) -> list[_Hyp]:
    kind = layer.kind
    hyps: list[_Hyp] = []
    try:
        if kind in ("Convolution", "ConvolutionDepthwise", "Deconvolution") and layer.blobs and out_hw:
            return _conv_hyps(layer, xs, keras_layer, out_hw)  # input_layout included
        if kind == "Pooling" and out_hw:
            hyps = _pool_hyps(layer, xs, out_hw)
        elif kind == "InnerProduct" and layer.blobs:
            hyps = _ip_hyps(layer, xs, keras_layer)
        elif kind == "BatchNorm":
            hyps = _bn_hyps(layer, xs, keras_layer)
        elif kind == "LRN":
            hyps = _lrn_hyps(layer, xs)
        elif kind == "ReLU":
            hyps = _relu_hyps(layer, xs, keras_out_first if keras_out_first is not None else xs[0], keras_layer)
        elif kind == "Scale":
            hyps = _scale_hyps(layer, xs)
        elif kind == "PReLU" and layer.blobs:
            hyps = _prelu_hyps(layer, xs)
        elif kind in ("Flatten", "Reshape"):
            hyps = _flatten_hyps(layer, xs)
        elif kind in ("Concat", "Eltwise"):
            hyps = _concat_hyps(layer, xs)
    except Exception:  # a hypothesis generator must never break the report
        hyps = []
    # Any layer can be where NCHW data enters a port reshaped instead of transposed.
    return hyps + _layout_hyps(layer, xs)


# ------------------------------------------------------------------------------------------------------ public API

def diagnose(layer: Layer, keras_layer: Any, ref_inputs: list[np.ndarray], ref_output: np.ndarray,
             keras_output: np.ndarray, *, keras_fn: Callable[[list[np.ndarray]], np.ndarray] | None = None,
             context: dict | None = None) -> list[Cause]:
    """Candidate causes of ``keras_output`` differing from ``ref_output``, best first.

    ``layer``: the first divergent Caffe layer.  ``keras_layer``: the matched Keras layer (or a list of the layers
    of a matched subgraph, or None); its class, config and weights sharpen some hypotheses.  ``ref_inputs``: the
    reference's bottoms (NCHW).  ``ref_output``: the reference's top (NCHW, float64; with ``context["chain"]`` the
    top of the chain's last layer).  ``keras_output``: what the Keras side computed from ``ref_inputs`` in isolation,
    converted to NCHW.  ``keras_fn`` (optional): re-runs the Keras side on NCHW inputs, used to check input-side
    hypotheses in the other direction.  ``context``: ``{"chain": [Layer, ...]}``, see the module docstring.
    """
    context = dict(context or {})
    if keras_output is None or ref_output is None:
        return [Cause("unknown", 0.0, "no isolated Keras output for this layer was available to test hypotheses on",
                      "run the comparison in isolated mode (--mode both) to get a diagnosis")]
    chain: list[Layer] = list(context.get("chain") or [])
    span = [layer, *chain]
    ref = np.asarray(ref_output, _F64)
    ker = np.asarray(keras_output, _F64)
    xs_all = [np.asarray(x, _F64) for x in ref_inputs]
    if ker.shape != ref.shape:
        return diagnose_shape(layer, ref_inputs, ref.shape, ker.shape, keras_layer, context=context)
    if not np.all(np.isfinite(ker)) and np.all(np.isfinite(ref)):
        return [Cause("unknown", 0.5, "the Keras output has NaN or Inf where the reference has none",
                      "look for a division by zero or log of a negative (e.g. BatchNorm variance with a zero "
                      "factor, epsilon 0) in this layer's weights and configuration")]
    e0 = _rel(ker, ref)
    if e0 == 0.0:
        return []

    # Hypotheses run on the first sample(s) only when the layer is big (the bugs are per-sample).
    nsamp = ref.shape[0] if ref.ndim and ref.size <= _BIG_ELEMENTS else _MAX_SAMPLES_BIG
    batched = ref.ndim > 0 and all(x.ndim > 0 and x.shape[0] == ref.shape[0] for x in xs_all)
    sel = slice(0, nsamp if batched else None)
    xs = [x[sel] for x in xs_all] if batched else xs_all
    ref_s, ker_s = (ref[sel], ker[sel]) if batched else (ref, ker)
    e0_s = _rel(ker_s, ref_s)
    if e0_s == 0.0:
        e0_s = e0

    # Per-layer intermediate reference values for the chain.
    stage_inputs: list[list[np.ndarray]] = [xs]
    try:
        y = _run(span[0], xs) if len(span) > 1 else None
        for lay in span[1:]:
            stage_inputs.append([y])
            y = _run(lay, [y])
    except Exception:
        span = [layer]
        stage_inputs = [xs]

    out_hw = tuple(ref_s.shape[2:4]) if ref_s.ndim == 4 else None
    hyps: list[tuple[_Hyp, list[Layer]]] = []
    for j, lay in enumerate(span):
        lay_out_hw = out_hw
        if len(span) > 1:  # a layer inside a fused span: its own output size
            try:
                o = _run(lay, stage_inputs[j])
                lay_out_hw = tuple(o.shape[2:4]) if o.ndim == 4 else None
            except Exception:
                lay_out_hw = None
        first_ker = ker_s if j == len(span) - 1 else None
        for h in _layer_hyps(lay, stage_inputs[j], first_ker, keras_layer, lay_out_hw):
            hyps.append((h, span[j + 1:]))
        if lay.kind == "BatchNorm":
            hyps += _bn_order_hyps(span[j:], stage_inputs[j])

    try:
        hyps += _preprocessing_hyps(span, xs, ker_s, context)
    except Exception:
        pass
    hyps += [(h, []) for h in _extra_activation_hyps(span, ref_s, keras_layer)]

    best: dict[str, Cause] = {}

    def consider(code: str, conf: float, expl: str, fix: str) -> None:
        conf = float(min(1.0, max(0.0, conf)))
        if code not in best or conf > best[code].confidence:
            best[code] = Cause(code, round(conf, 4), expl, fix)

    found_exact = False
    budget = float(context.get("time_budget_s", 60.0))
    t_start = time.perf_counter()
    if layer.kind == "Dropout" and len(span) == 1:
        dc = _dropout_cause(layer, ref, ker)
        if dc is not None:
            best[dc.cause] = dc
    for h, tail in hyps:
        if found_exact or time.perf_counter() - t_start > budget:
            break
        try:
            pred = h.predict()
            for lay in tail:
                pred = _run(lay, [pred])
        except Exception:
            continue
        e_h = _rel(ker_s, np.asarray(pred, _F64))
        conf = _confidence(e_h, e0_s)
        if conf <= 0.02:
            continue
        expl = f"{h.explanation}; re-running the Caffe layer that way reproduces the Keras output to {e_h:.1e} " \
               f"(observed error {e0_s:.1e})"
        if h.weight_match and conf > 0.5:
            conf = max(conf, 0.995)
            expl += "; the Keras weights match this transformation exactly"
        consider(h.code, conf, expl, h.fix)
        if e_h <= _EXACT and e_h <= 1e-2 * e0_s:
            found_exact = True

    cues = _cues(xs[0] if xs else None, ref_s, ker_s)

    # keras_fn: the input-side hypotheses in the other direction (undo the suspected transform on the Keras side).
    if keras_fn is not None and not found_exact and xs and xs[0].ndim == 4 and len(span) == 1:
        x = xs[0]
        n, c, hh, ww = x.shape
        inverse = [("channel_order", x[:, ::-1], "the Keras side reads the input channels in reverse order",
                    "reverse the channel axis once (x[..., ::-1])")]
        if c > 1:
            inverse.append(("input_layout", x.transpose(0, 2, 3, 1).reshape(n, c, hh, ww),
                            "the Keras side expects its input reshaped, not transposed",
                            "feed x.transpose(0, 2, 3, 1) to Keras, not x.reshape(N, H, W, C)"))
        for code, xi, expl, fix in inverse:
            try:
                ki = np.asarray(keras_fn([xi, *xs[1:]]), _F64)
            except Exception:
                continue
            e_h = _rel(ki, ref_s)
            conf = _confidence(e_h, e0_s)
            if conf > 0.02:
                consider(code, conf, f"{expl}; feeding Keras the transformed input reproduces Caffe to {e_h:.1e}",
                         fix)

    # Reduced precision: a small, evenly spread error of the size a lower-precision format gives.
    if not found_exact:
        rp = _reduced_precision(span, xs, ref_s, ker_s, e0_s, cues)
        if rp is not None:
            consider(*rp)

    # Where the error sits, when no hypothesis reproduced it: weak pointers to a family of causes.
    if not found_exact and (not best or max(c.confidence for c in best.values()) < 0.5):
        where = "; ".join(cues.texts)
        if cues.border_only and out_hw is not None:
            consider("padding_offset", 0.35, f"{where}: padding (amount, side or value) is the usual reason",
                     "compare this layer's padding with the prototxt's pad / pad_h / pad_w (Caffe pads "
                     "symmetrically, TF 'same' puts the extra row/column at the end)")
        if cues.negative_only:
            if layer.kind == "Pooling":
                consider("pool_pad_value", 0.35, f"{where}: MAX pooling padding should never win (-inf)",
                         "pad MAX pooling with -inf, not zeros")
            else:
                consider("relu_slope", 0.35, f"{where}: the negative part of an activation differs",
                         "check the activation's negative slope (LeakyReLU negative_slope, PReLU alpha, ELU alpha)")

    causes = sorted(best.values(), key=lambda c: -c.confidence)
    top = causes[0].confidence if causes else 0.0
    if top < 0.5:
        where = "; ".join(cues.texts) if cues.texts else "the error is spread over the whole output"
        partial = f"; closest hypothesis: {causes[0].cause} ({top:.2f})" if causes else ""
        fix = ("check this layer's parameters against the Caffe prototxt one by one (padding, stride, weights "
               "layout, epsilon, slopes) and its weights against the caffemodel")
        if cues.ratio is not None:
            fix = (f"the output is {cues.ratio:.6g} x Caffe's: look for a missing or extra scale (input "
                   "preprocessing 1/255, a BatchNorm factor, a Scale layer's gamma)")
        elif e0_s < 1e-5:
            where = (f"the error is the size of float32 rounding (relative {e0_s:.1e}), not of a porting bug; "
                     + where)
            fix = ("if this layer sums very many terms, give it a wider tolerance (--rtol, or a per-layer override "
                   "with its reason); otherwise look for float32 accumulation order effects")
        causes.insert(0, Cause("unknown", round(1.0 - top, 4),
                               f"no tested explanation reproduces the Keras output (relative error {e0_s:.1e}); "
                               f"{where}{partial}", fix))
    return causes


def _reduced_precision(span: list[Layer], xs: list[np.ndarray], ref: np.ndarray, ker: np.ndarray, e0: float,
                       cues: _Cues) -> tuple[str, float, str, str] | None:
    if e0 > 5e-2:
        return None
    best = None
    for name, (rnd, round_out, fix) in _FORMATS.items():
        try:
            y = _run(_with_blobs(span[0], [rnd(b) for b in span[0].blobs]), [rnd(x) for x in xs])
            for lay in span[1:]:
                y = _run(_with_blobs(lay, [rnd(b) for b in lay.blobs]), [rnd(y) if round_out else y])
            if round_out:
                y = rnd(y)
        except Exception:
            continue
        noise = _rel(y, ref)
        if not (noise > 0 and math.isfinite(noise)):
            continue
        e_f = _rel(ker, y)
        band = 1.0 - abs(math.log10(e0 / noise)) / 1.3
        if band <= 0:
            continue
        conf = 0.9 * band
        if e_f < 0.7 * e0:
            conf = min(0.97, conf + 0.1)
        if cues.structured:
            conf *= 0.3
        if best is None or conf > best[1]:
            best = (name, conf, noise, e_f)
    if best is None:
        return None
    name, conf, noise, e_f = best
    expl = (f"the error (relative {e0:.1e}) is small and spread evenly over the output, the size {name} arithmetic "
            f"gives here (re-running with {name}-rounded inputs and weights lands {noise:.1e} from float64"
            f"{'' if e_f >= 0.7 * e0 else f' and {e_f:.1e} from Keras'})")
    return ("reduced_precision", conf, expl, _FORMATS[name][2])


def _perm_of(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...] | None:
    if len(a) != len(b) or sorted(a) != sorted(b) or tuple(a) == tuple(b):
        return None
    used: set[int] = set()
    perm = []
    for v in b:
        for i, u in enumerate(a):
            if u == v and i not in used:
                used.add(i)
                perm.append(i)
                break
    return tuple(perm)


def diagnose_shape(layer: Layer, ref_inputs: list[np.ndarray], ref_shape: Sequence[int], keras_shape: Sequence[int],
                   keras_layer: Any = None, *, context: dict | None = None) -> list[Cause]:
    """Causes of a Keras output whose shape differs from Caffe's (both NCHW), best first."""
    ref_shape, keras_shape = tuple(int(s) for s in ref_shape), tuple(int(s) for s in keras_shape)
    causes: list[Cause] = []
    x_shape = tuple(np.shape(ref_inputs[0])) if ref_inputs else ()
    kind = layer.kind
    diff = f"Keras gives {keras_shape} where Caffe gives {ref_shape}"

    if kind == "Pooling" and len(x_shape) == 4 and len(keras_shape) == 4 and keras_shape[:2] == ref_shape[:2]:
        from ..params import pool_geometry

        g = pool_geometry(layer)
        if g.kernel is not None:
            h, w = x_shape[2:]

            def sizes(fn: Callable[[int, int, int, int], int]) -> tuple[int, int]:
                return (fn(h, g.kernel[0], g.stride[0], g.pad[0]), fn(w, g.kernel[1], g.stride[1], g.pad[1]))

            floor_pad = sizes(lambda s, k, st, p: (s + 2 * p - k) // st + 1)
            ceil_pad = sizes(lambda s, k, st, p: -(-(s + 2 * p - k) // st) + 1)
            valid = sizes(lambda s, k, st, p: (s - k) // st + 1)
            same = sizes(lambda s, k, st, p: -(-s // st))
            kk = tuple(keras_shape[2:])
            rnd = "FLOOR" if g.ceil else "CEIL"
            if kk == (floor_pad if g.ceil else ceil_pad):
                causes.append(Cause("pool_rounding", 0.95,
                                    f"{diff}: the Keras pooling rounds the output size with {rnd.lower()} where "
                                    f"Caffe uses round_mode {'CEIL' if g.ceil else 'FLOOR'} "
                                    f"({'ceil' if g.ceil else 'floor'}((in + 2p - k) / s) + 1)",
                                    "for Caffe's ceil mode pad the bottom/right by the overhang "
                                    "((out - 1) * s + k - in - p) with -inf for MAX, or use padding='same' when it "
                                    "gives the same size; keep padding='valid' sizes only for round_mode FLOOR"))
            if kk == valid and valid != (floor_pad if g.ceil else ceil_pad) and (g.pad[0] or g.pad[1]):
                causes.append(Cause("padding_offset", 0.7,
                                    f"{diff}: the size is what an unpadded 'valid' pooling gives; Caffe pads "
                                    f"{g.pad[0]}x{g.pad[1]}",
                                    f"pad ({g.pad[0]}, {g.pad[1]}) before the pooling"))
            if kk == same and same != tuple(ref_shape[2:]):
                causes.append(Cause("same_padding", 0.8 if not causes else 0.6,
                                    f"{diff}: the size is TensorFlow 'same' pooling's ceil(in / stride)",
                                    "pad explicitly to Caffe's sizes and use padding='valid'"))
            if kk == valid and kk != (floor_pad if g.ceil else ceil_pad) and not (g.pad[0] or g.pad[1]):
                causes.append(Cause("pool_rounding", 0.8, f"{diff}: the size is a floor-mode 'valid' pooling's",
                                    "use Caffe's ceil rounding (pad the bottom/right overhang)"))
    if kind in ("Convolution", "ConvolutionDepthwise") and len(x_shape) == 4 and len(keras_shape) == 4 \
            and keras_shape[:2] == ref_shape[:2]:
        from ..params import conv_geometry

        g = conv_geometry(layer)
        h, w = x_shape[2:]
        ext = [g.dilation[a] * (g.kernel[a] - 1) + 1 for a in (0, 1)]
        same = (-(-h // g.stride[0]), -(-w // g.stride[1]))
        valid = ((h - ext[0]) // g.stride[0] + 1, (w - ext[1]) // g.stride[1] + 1)
        kk = tuple(keras_shape[2:])
        if kk == same:
            causes.append(Cause("same_padding", 0.9,
                                f"{diff}: the size is TensorFlow padding='same''s ceil(in / stride); Caffe pads "
                                f"{g.pad[0]}x{g.pad[1]} symmetrically",
                                f"use ZeroPadding2D(({g.pad[0]}, {g.pad[1]})) and padding='valid'"))
        if kk == valid and (g.pad[0] or g.pad[1]):
            causes.append(Cause("padding_offset", 0.85,
                                f"{diff}: the size is an unpadded 'valid' convolution's; Caffe pads "
                                f"{g.pad[0]}x{g.pad[1]}",
                                f"add ZeroPadding2D(({g.pad[0]}, {g.pad[1]})) before the convolution"))
        if not causes:
            tot = []
            for a, s in enumerate((h, w)):
                tot.append([t for t in range(0, 2 * ext[a] + 1) if (s + t - ext[a]) // g.stride[a] + 1 == kk[a]])
            if tot[0] and tot[1]:
                causes.append(Cause("padding_offset", 0.6,
                                    f"{diff}: the size fits a total padding of {tot[0]} rows and {tot[1]} columns; "
                                    f"Caffe pads {2 * g.pad[0]} rows and {2 * g.pad[1]} columns in total",
                                    f"pad ({g.pad[0]}, {g.pad[1]}) on every side, padding='valid'"))
    if kind == "Deconvolution" and len(x_shape) == 4 and len(keras_shape) == 4 and keras_shape[:2] == ref_shape[:2]:
        from ..params import conv_geometry

        g = conv_geometry(layer)
        h, w = x_shape[2:]
        ext = [g.dilation[a] * (g.kernel[a] - 1) + 1 for a in (0, 1)]
        kk = tuple(keras_shape[2:])
        if kk == (h * g.stride[0], w * g.stride[1]):
            causes.append(Cause("same_padding", 0.9,
                                f"{diff}: the size is Conv2DTranspose(padding='same')'s in * stride; Caffe's is "
                                f"stride * (in - 1) + kernel - 2 * pad",
                                f"use Conv2DTranspose(padding='valid') then Cropping2D((({g.pad[0]}, {g.pad[0]}), "
                                f"({g.pad[1]}, {g.pad[1]})))"))
        elif kk == (g.stride[0] * (h - 1) + ext[0], g.stride[1] * (w - 1) + ext[1]) and (g.pad[0] or g.pad[1]):
            causes.append(Cause("padding_offset", 0.85,
                                f"{diff}: the size is the uncropped transposed convolution's; Caffe removes pad = "
                                f"({g.pad[0]}, {g.pad[1]}) on every side",
                                f"add Cropping2D((({g.pad[0]}, {g.pad[0]}), ({g.pad[1]}, {g.pad[1]}))) after "
                                "Conv2DTranspose(padding='valid')"))
    perm = _perm_of(ref_shape, keras_shape)
    if perm is not None:
        causes.append(Cause("input_layout", 0.75 if not causes else 0.4,
                            f"{diff}: the same sizes in another axis order (axes {perm}); a tensor went through as "
                            "NCHW where NHWC was meant, or the reverse",
                            "convert layouts with transpose (NCHW->NHWC: (0, 2, 3, 1)), never reshape, and compare "
                            "4-D tensors as NHWC on the Keras side"))
    if kind in ("InnerProduct", "Flatten", "Reshape") and math.prod(keras_shape) == math.prod(ref_shape) \
            and perm is None and keras_shape != ref_shape:
        causes.append(Cause("flatten_order", 0.5,
                            f"{diff}: the same elements in another shape; a Flatten/Reshape was placed differently",
                            "flatten as Caffe does: Permute((3, 1, 2)) then Flatten before Dense"))
    if len(x_shape) == 4 and len(keras_shape) == 4 and x_shape[2:] == keras_shape[2:] \
            and ref_shape[2:] != keras_shape[2:] and kind in ("Convolution", "Pooling"):
        causes.append(Cause("padding_offset", 0.3, f"{diff}: Keras kept the input's spatial size",
                            "check padding and stride of this layer against the prototxt"))
    if not causes:
        causes.append(Cause("unknown", 0.5, f"{diff}; no tested rule gives the Keras size",
                            "compare this layer's kernel, stride, padding and output count with the prototxt"))
    best: dict[str, Cause] = {}
    for c in causes:
        if c.cause not in best or c.confidence > best[c.cause].confidence:
            best[c.cause] = c
    return sorted(best.values(), key=lambda c: -c.confidence)
