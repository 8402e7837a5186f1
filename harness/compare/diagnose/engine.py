"""The engine: every registered hypothesis family of the span's layers, tried against the data.

Each family module registers its hypotheses per Caffe type (:data:`._common.HYPOTHESES`); the engine asks the
family of every layer of the span, adds the cross-cutting ones (input layout, preprocessing, a fused activation,
BatchNorm weight order), re-runs the reference under each and keeps what reproduces the Keras output.
"""

from __future__ import annotations

import math

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from ...catalogue import window
from ...net import Layer
from ..reports.result import Cause
from . import activation, affine, conv, layout, norm, pooling  # noqa: F401  (register their families)
from ._common import (_BIG_ELEMENTS, _EXACT, _F64, _MAX_SAMPLES_BIG, HYPOTHESES, Probe, _confidence, _Cues, _cues,
                      _Hyp, _rel, _run)
from .activation import _dropout_cause, _extra_activation_hyps
from .norm import _bn_order_hyps, _bn_scale_split_hyps
from .precision import _reduced_precision
from .input_scale import _preprocessing_hyps
from .layout import _layout_hyps
from .conv import conv_param_causes
from .shape_mismatch import diagnose_shape


# hypotheses about a span that starts at a layer of this type (BatchNorm: its vectors in another order, the Scale
# after it half loaded), and a cause read straight off one layer's two outputs (Dropout: scaled at TEST or not)
_SPAN_HYPS: dict[str, tuple[Callable[[list[Layer], list[np.ndarray]], list], ...]] = {
    "BatchNorm": (_bn_order_hyps, _bn_scale_split_hyps)}
_OWN_CAUSE: dict[str, Callable[[Layer, np.ndarray, np.ndarray], Any]] = {"Dropout": _dropout_cause}


def _layer_hyps(layer: Layer, xs: list[np.ndarray], probe: Probe) -> list[_Hyp]:
    """The layer's family of hypotheses (none registered: none), plus the input-layout ones: any layer can be where
    NCHW data enters a port reshaped instead of transposed."""
    fn, includes_layout = HYPOTHESES.get(layer.kind, (None, False))
    hyps: list[_Hyp] = []
    try:
        if fn is not None:
            hyps = list(fn(layer, xs, probe))
            if includes_layout:
                return hyps
    except Exception:  # a hypothesis generator must never break the report
        hyps = []
    return hyps + _layout_hyps(layer, xs)


@dataclass
class _Case:
    """One diagnosis: the span, the (sampled) data and the causes found so far."""

    span: list[Layer]
    xs: list[np.ndarray]  # the span's first layer's inputs, sampled
    ref: np.ndarray  # the full reference output
    ker: np.ndarray  # the full Keras output
    ref_s: np.ndarray  # sampled
    ker_s: np.ndarray
    e0: float  # relative error of the sample
    best: dict[str, Cause] = field(default_factory=dict)
    found_exact: bool = False

    def consider(self, code: str, conf: float, expl: str, fix: str, layer: str = "") -> None:
        conf = float(min(1.0, max(0.0, conf)))
        if code not in self.best or conf > self.best[code].confidence:
            self.best[code] = Cause(code, round(conf, 4), expl, fix, layer)


def _sampled(layer: Layer, chain: list[Layer], ref: np.ndarray, ker: np.ndarray,
             xs_all: list[np.ndarray]) -> _Case:
    """Hypotheses run on the first sample(s) only when the layer is big (the bugs are per-sample)."""
    nsamp = ref.shape[0] if ref.ndim and ref.size <= _BIG_ELEMENTS else _MAX_SAMPLES_BIG
    batched = ref.ndim > 0 and all(x.ndim > 0 and x.shape[0] == ref.shape[0] for x in xs_all)
    sel = slice(0, nsamp if batched else None)
    xs = [x[sel] for x in xs_all] if batched else xs_all
    ref_s, ker_s = (ref[sel], ker[sel]) if batched else (ref, ker)
    e0_s = _rel(ker_s, ref_s)
    return _Case([layer, *chain], xs, ref, ker, ref_s, ker_s, e0_s if e0_s != 0.0 else _rel(ker, ref))


def _span_hyps(case: _Case, keras_layer: Any) -> list[tuple[_Hyp, list[Layer]]]:
    """Every layer's hypotheses, each with the rest of the span to run after it (``(hypothesis, tail)``)."""
    span, xs = case.span, case.xs
    stage_inputs: list[list[np.ndarray]] = [xs]
    try:  # per-layer intermediate reference values for the chain
        y = _run(span[0], xs) if len(span) > 1 else None
        for lay in span[1:]:
            stage_inputs.append([y])
            y = _run(lay, [y])
    except Exception:
        case.span = span = span[:1]
        stage_inputs = [xs]
    out_hw = tuple(case.ref_s.shape[2:4]) if case.ref_s.ndim == 4 else None
    hyps: list[tuple[_Hyp, list[Layer]]] = []
    for j, lay in enumerate(span):
        lay_out_hw = out_hw
        if len(span) > 1:  # a layer inside a fused span: its own output size
            try:
                o = _run(lay, stage_inputs[j])
                lay_out_hw = tuple(o.shape[2:4]) if o.ndim == 4 else None
            except Exception:
                lay_out_hw = None
        probe = Probe(keras_layer, case.ker_s if j == len(span) - 1 else None, lay_out_hw)
        # a hypothesis of a layer inside the span blames that layer (bn_epsilon in Conv + BatchNorm + ReLU, which
        # TFLite computes as one CONV_2D), not the span's first one
        hyps += [(replace(h, layer=h.layer or lay.name) if j else h, span[j + 1:])
                 for h in _layer_hyps(lay, stage_inputs[j], probe)]
        for span_hyps in _SPAN_HYPS.get(lay.kind, ()):
            hyps += span_hyps(span[j:], stage_inputs[j])
    return hyps


def _try_hyps(case: _Case, hyps: list[tuple[_Hyp, list[Layer]]], budget: float) -> None:
    """Re-run the reference under each hypothesis, most likely first, until one reproduces the Keras output exactly
    or the time budget is spent."""
    t_start = time.perf_counter()
    for h, tail in hyps:
        if case.found_exact or time.perf_counter() - t_start > budget:
            break
        try:
            pred = h.predict()
            for lay in tail:
                pred = _run(lay, [pred])
        except Exception:
            continue
        e_h = _rel(case.ker_s, np.asarray(pred, _F64))
        conf = _confidence(e_h, case.e0)
        if conf <= 0.02:
            continue
        expl = f"{h.explanation}; re-running the Caffe layer that way reproduces the Keras output to {e_h:.1e} " \
               f"(observed error {case.e0:.1e})"
        if h.weight_match and conf > 0.5:
            conf = max(conf, 0.995)
            expl += "; the Keras weights match this transformation exactly"
        case.consider(h.code, conf, expl, h.fix, h.layer)
        if e_h <= _EXACT and e_h <= 1e-2 * case.e0:
            case.found_exact = True


def _inverse_input_hyps(case: _Case, keras_fn: Callable[[list[np.ndarray]], np.ndarray]) -> None:
    """The input-side hypotheses in the other direction: undo the suspected transform on the Keras side."""
    xs = case.xs
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
        e_h = _rel(ki, case.ref_s)
        conf = _confidence(e_h, case.e0)
        if conf > 0.02:
            case.consider(code, conf, f"{expl}; feeding Keras the transformed input reproduces Caffe to {e_h:.1e}",
                          fix)


def _weak_pointers(case: _Case, cues: _Cues, layer: Layer) -> None:
    """Where the error sits, when no hypothesis reproduced it: weak pointers to a family of causes."""
    where = "; ".join(cues.texts)
    if cues.border_only and case.ref_s.ndim == 4:
        case.consider("padding_offset", 0.35, f"{where}: padding (amount, side or value) is the usual reason",
                      "compare this layer's padding with the prototxt's pad / pad_h / pad_w (Caffe pads "
                      "symmetrically, TF 'same' puts the extra row/column at the end)")
    if cues.negative_only:
        if window(layer.kind) == "pool":
            case.consider("pool_pad_value", 0.35, f"{where}: MAX pooling padding should never win (-inf)",
                          "pad MAX pooling with -inf, not zeros")
        else:
            case.consider("relu_slope", 0.35, f"{where}: the negative part of an activation differs",
                          "check the activation's negative slope (LeakyReLU negative_slope, PReLU alpha, ELU alpha)")


def _rounding_fix(case: _Case, layer_name: str, max_abs: float | None) -> str:
    """A per-layer override that passes this layer: ``atol`` the largest |error| rounded up (every element is within
    it, so re-judging passes by construction); never a global --rtol (it fails every near-zero element)."""
    if max_abs is None or not math.isfinite(max_abs) or not layer_name:
        return ("a per-layer override in --tolerances FILE ({\"layers\": {LAYER: {\"atol\": ..., \"reason\": ...}}}) "
                "with the largest error as atol; a global --rtol fails every element near zero")
    atol = float(f"{max_abs * (1 + 1e-3):.2e}")
    while atol < max_abs:  # the printed value rounds up, never below an error
        atol = float(f"{atol * 1.01:.2e}")
    return (f"if the layer's float32 arithmetic differs by design, pass --tolerances FILE with {{\"layers\": "
            f"{{\"{layer_name}\": {{\"atol\": {atol:.2e}, \"reason\": \"float32 summation order\"}}}}}} (every "
            f"element of this layer is within it); a global --rtol fails every element near zero")


# what a layer's parameters in an artefact are, to compare with the caffemodel's blobs by hand
_PARAMS_OF = {"BatchNorm": "mean = blobs[0] / blobs[2], variance = blobs[1] / blobs[2] and eps",
              "Scale": "gamma = blobs[0], beta = blobs[1]", "Convolution": "kernel, bias, stride, padding",
              "InnerProduct": "weights (transposed), bias", "LRN": "alpha / local_size, beta, k",
              "Pooling": "window, stride, padding, rounding"}


def _isolation_fix(case: _Case) -> str:
    """How to see a small, compounding error in isolation (a wider tolerance would hide it)."""
    names = ", ".join(f"{lay.name!r}" for lay in case.span)
    params = "; ".join(f"{lay.name}: {_PARAMS_OF[lay.kind]}" for lay in case.span if lay.kind in _PARAMS_OF)
    return (f"do not widen the tolerance (the error compounds); in isolation this layer's error is the size of "
            f"float32 rounding, so its values alone cannot show it: compare the artefact's constants for {names} "
            f"with the caffemodel's blobs to float32 precision ({params or 'every blob and field'}; a constant "
            f"off by more than about 1e-7 relative is the difference)")


def _ranked(case: _Case, cues: _Cues, layer_name: str = "", max_abs: float | None = None,
            growth: str = "") -> list[Cause]:
    """The causes best first; ``unknown`` on top, saying where the error sits, when none reaches 0.5.  ``growth``:
    the chained error grows down the net after this layer (a sentence saying how): not rounding, and no tolerance
    is offered as the fix."""
    causes = sorted(case.best.values(), key=lambda c: -c.confidence)
    top = causes[0].confidence if causes else 0.0
    if top >= 0.5:
        return causes
    where = "; ".join(cues.texts) if cues.texts else "the error is spread over the whole output"
    partial = f"; closest hypothesis: {causes[0].cause} ({top:.2f})" if causes else ""
    fix = ("check this layer's parameters against the Caffe prototxt one by one (padding, stride, weights "
           "layout, epsilon, slopes) and its weights against the caffemodel")
    if cues.ratio is not None:
        fix = (f"the output is {cues.ratio:.6g} x Caffe's: look for a missing or extra scale (input "
               "preprocessing 1/255, a BatchNorm factor, a Scale layer's gamma)")
    elif growth:  # small here, but compounding: never rounding, never a wider tolerance
        where = (f"the error is small here (relative {case.e0:.1e}) but it is not float32 rounding, which stays "
                 f"within each layer's bound: {growth}; " + where)
        fix = _isolation_fix(case)
    elif case.e0 < 1e-5:
        where = (f"the error is the size of float32 rounding (relative {case.e0:.1e}), not of a porting bug; "
                 + where)
        fix = _rounding_fix(case, layer_name, max_abs)
    causes.insert(0, Cause("unknown", round(1.0 - top, 4),
                           f"no tested explanation reproduces the Keras output (relative error {case.e0:.1e}); "
                           f"{where}{partial}", fix))
    return causes


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
    ref = np.asarray(ref_output, _F64)
    ker = np.asarray(keras_output, _F64)
    if ker.shape != ref.shape:
        causes = diagnose_shape(layer, ref_inputs, ref.shape, ker.shape, keras_layer, context=context)
        named = conv_param_causes(layer, [np.asarray(x, _F64) for x in ref_inputs], ker, keras_layer)
        if named:  # a parameter the re-run verified: the weak size pointers ("kept the input's size") go
            return named + [c for c in causes if c.confidence > max(n.confidence for n in named) - 0.5
                            and c.cause not in {n.cause for n in named} and c.cause != "unknown"]
        return causes
    if not np.all(np.isfinite(ker)) and np.all(np.isfinite(ref)):
        return [Cause("unknown", 0.5, "the Keras output has NaN or Inf where the reference has none",
                      "look for a division by zero or log of a negative (e.g. BatchNorm variance with a zero "
                      "factor, epsilon 0) in this layer's weights and configuration")]
    if _rel(ker, ref) == 0.0:
        return []
    case = _sampled(layer, list(context.get("chain") or []), ref, ker, [np.asarray(x, _F64) for x in ref_inputs])
    hyps = _span_hyps(case, keras_layer)
    try:
        hyps += _preprocessing_hyps(case.span, case.xs, case.ker_s, context)
    except Exception:
        pass
    hyps += [(h, []) for h in _extra_activation_hyps(case.span, case.ref_s, keras_layer)]
    own_cause = _OWN_CAUSE.get(layer.kind)
    if own_cause is not None and len(case.span) == 1:
        dc = own_cause(layer, ref, ker)
        if dc is not None:
            case.best[dc.cause] = dc
    _try_hyps(case, hyps, float(context.get("time_budget_s", 60.0)))
    cues = _cues(case.xs[0] if case.xs else None, case.ref_s, case.ker_s)
    if keras_fn is not None and not case.found_exact and case.xs and case.xs[0].ndim == 4 and len(case.span) == 1:
        _inverse_input_hyps(case, keras_fn)
    if not case.found_exact:  # a small, evenly spread error of the size a lower-precision format gives
        rp = _reduced_precision(case.span, case.xs, case.ref_s, case.ker_s, case.e0, cues)
        if rp is not None:
            case.consider(*rp)
    if not case.found_exact and (not case.best or max(c.confidence for c in case.best.values()) < 0.5):
        _weak_pointers(case, cues, layer)
    max_abs = context.get("max_abs", getattr(context.get("result"), "max_abs", None))
    return _ranked(case, cues, layer.name, max_abs, str(context.get("growth") or ""))
