"""Where a comparison diverges: the first divergent layer, and the structural causes found without the diagnosis
engine -- a Caffe layer the port left out (``missing_layer``), a Keras layer Caffe does not have (``extra_layer``),
a net output with no counterpart -- and which Caffe layer of a fused span introduced the error.

The first divergence is the first pair failing in isolation (else the first failing chained), named at the layer
that introduced it: the first layer of a fused span (conv1 of ``Conv2D(activation="relu")``) unless the cause is the
activation's (or a bias's), the Caffe layer the port left out, or the pair after a stray Keras layer.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ...catalogue import traits, types_with
from ...net import Net
from .match import ACTIVATIONS, HELPER_KERAS, PASSIVE_CAFFE, RELAYOUT_CAFFE, graph_model, walk_keras_up
from .passes import Session
from ..reports.result import Cause, FirstDivergence, LayerResult
from .evaluation import from_keras_layout, to_keras_layout


def foreign_weights_cause(s: Session) -> Cause | None:
    """``weights_not_given`` when the Caffe side runs on seeded weights (no weights file given) and not one of the
    port's weighted layers holds them (weights compared by statistics a transpose or reshape keeps), else None."""
    from .match import weight_distance

    checked, foreign = 0, []
    for p in s.pairs:
        lay = s.caffe.layer_of[p.key]
        first = s.net.layer(p.segment[0]) if p.segment else lay
        if not (first.blobs and traits(first.kind).linear):
            continue
        try:
            kl = graph_model(s.keras_model).get_layer(p.keras_layer)
        except ValueError:
            continue
        checked += 1
        if weight_distance(first, kl) > 1e-3:
            foreign.append(first.name)
    if not checked or len(foreign) < checked:
        return None
    return Cause("weights_not_given", 0.99,
                 f"no Caffe weights were given, so the Caffe side runs on seeded random weights, and none of the "
                 f"{checked} convolution / InnerProduct layer(s) compared ({', '.join(foreign[:4])}"
                 f"{' ...' if checked > 4 else ''}) holds them: every weighted layer differs for that reason alone",
                 "pass the trained Caffe weights: --weights model.caffemodel (API: weights=...)")


def first_failing(results: list[LayerResult]) -> LayerResult | None:
    """The first pair failing in isolation, else the first failing at all."""
    for lr in results:
        r_ = lr.isolated if lr.isolated is not None else lr.chained
        if r_ is not None and not r_.passed:
            return lr
    return next((lr for lr in results if not lr.passed), None)


def keras_output(first: LayerResult, isolated: Mapping[str, Any], chained: Mapping[str, Any]) -> Any:
    """The Keras output the structural checks and the diagnosis test: isolated when there is one, else chained."""
    return isolated.get(first.key, chained.get(first.key))


def missing_layer_cause(first: LayerResult, found: tuple[Any, str, float]) -> tuple[FirstDivergence, Cause]:
    lay_, key_, err_ = found
    return FirstDivergence(lay_.name, "", key_, "isolated"), Cause(
        "missing_layer", 0.95,
        f"the Keras model has no counterpart of Caffe {lay_.type} {lay_.name!r}: re-running the Caffe net "
        f"without it reproduces the Keras output of {first.caffe_layer!r} to {err_:.1e}",
        f"add the {lay_.type} layer {lay_.name!r} to the Keras model before {first.keras_layer!r}")


def extra_layer_cause(first: LayerResult, found: tuple[str, float]) -> Cause:
    kname, err_ = found
    return Cause("extra_layer", 0.95,
                 f"the Keras model applies {kname!r} before {first.keras_layer!r}; Caffe has no such layer there: "
                 f"the Caffe layer run on that layer's output reproduces the Keras output to {err_:.1e}",
                 f"remove Keras layer {kname!r}")


def structural_divergence(s: Session, problems: list[tuple[str, str, str, str]],
                          diagnose: bool) -> FirstDivergence:
    """Every pair passed but the structure does not: the first output problem as the divergence."""
    cause, key, klayer, msg = problems[0]
    fix = ("add the missing layer to the Keras model (or --map it to the Keras layer that computes it)"
           if cause == "missing_layer" else f"remove Keras layer {klayer!r} (Caffe has no such layer there)")
    by_key = {p.key: p.caffe_layer for p in s.pairs}
    lname = by_key.get(key, key.rsplit("/", 1)[0])
    return FirstDivergence(lname, klayer, key, "structure", [Cause(cause, 0.9, msg, fix)] if diagnose else [])


# causes that belong to the activation at the end of a fused span (Conv2D(activation=...), Dense(activation=...));
# every other cause belongs to the span's first layer (the convolution, the BatchNorm of BatchNorm+Scale)
_ACTIVATION_CAUSES = {"relu_slope", "activation_clipped"}
# causes that belong to the first layer of the span carrying a bias (conv1 of conv1+relu1, scale1 of bn1+scale1)
_BIAS_CAUSES = {"missing_bias"}
_BIASED = types_with(biased=True)


def introducer(net: Net, first: LayerResult, diagnosis: list[Any]) -> str:
    """The Caffe layer that introduced the error of a failing pair: a Keras layer can compute a span of Caffe layers
    (conv1 + relu1); the error is the convolution's unless the diagnosis names the activation."""
    seg = tuple(first.segment) or (first.caffe_layer,)
    if len(seg) == 1:
        return seg[0]
    code = None
    if diagnosis:
        d = diagnosis[0]
        code = d.get("cause") if isinstance(d, dict) else getattr(d, "cause", None)
        named = d.get("layer") if isinstance(d, dict) else getattr(d, "layer", "")
        if named in seg:  # the hypothesis knows which layer of the span it blames (bn_scale_split)
            return named
    if code in _ACTIVATION_CAUSES:
        acts = [n for n in seg if net.layer(n).kind in ACTIVATIONS]
        if acts:
            return acts[-1]
    if code in _BIAS_CAUSES:
        biased = [n for n in seg if net.layer(n).kind in _BIASED]
        if biased:
            return biased[0]
    return seg[0]


def skipped_layer(caffe: Any, first: LayerResult, matching: Any, ref: Mapping[str, np.ndarray],
                   keras_out: Any) -> tuple[Any, str, float] | None:
    """(Caffe layer, its record, error) when the first divergent pair's Keras output is what Caffe computes without
    an unmatched, shape-keeping Caffe layer right before the pair (an LRN or ReLU the port left out)."""
    if not isinstance(keras_out, np.ndarray):
        return None
    covered = {p.key for p in matching.pairs} | set(matching.folded)
    seg = tuple(first.segment) or (first.caffe_layer,)
    seg_keys = {k for name in seg for k in caffe.net.layer(name).keys()}
    r = np.asarray(ref[first.key], np.float64)
    if keras_out.shape != r.shape:
        return None
    scale = float(np.max(np.abs(r))) if r.size else 0.0
    e0 = float(np.max(np.abs(keras_out - r))) if r.size else 0.0
    for k in caffe.bottom_keys[seg[0]]:
        lay = caffe.layer_of.get(k)
        while lay is not None and lay.kind in PASSIVE_CAFFE - {"Input"} and len(caffe.bottom_keys[lay.name]) == 1:
            k = caffe.bottom_keys[lay.name][0]  # through Split / Dropout
            lay = caffe.layer_of.get(k)
        if lay is None or k in covered or lay.kind in PASSIVE_CAFFE | RELAYOUT_CAFFE or \
                len(caffe.bottom_keys[lay.name]) != 1:
            continue
        x = caffe.inputs_of(k)[0]
        if x.shape != np.shape(ref[k]):
            continue
        available = {kk: v for kk, v in ref.items() if kk not in seg_keys}
        available[k] = x  # the layer left out: its output is its input
        try:
            expected = caffe.compute(first.key, available, {}, exclude=first.key)
        except Exception:
            continue
        if expected.shape != r.shape:
            continue
        err = float(np.max(np.abs(keras_out - expected)))
        if err <= 1e-3 * max(scale, 1e-30) and err <= 1e-2 * e0:
            return lay, k, err / max(scale, 1e-30)
    return None


def extra_before(caffe: Any, first: LayerResult, matching: Any, ref: Mapping[str, np.ndarray], keras_out: Any,
                  tensors: Mapping[str, Any], p_layout: Mapping[str, str]) -> tuple[str, float] | None:
    """(Keras layer, error) when the first divergent pair's Keras output is the Caffe span run on the output of an
    unmatched, shape-keeping Keras layer applied to the reference's input (an extra ReLU between two layers).
    Preprocessing layers (Rescaling, Normalization) are left to the diagnosis (``input_preprocessing``)."""
    if not isinstance(keras_out, np.ndarray) or first.key not in tensors:
        return None
    seg = tuple(first.segment) or (first.caffe_layer,)
    lay0 = caffe.net.layer(seg[0])
    if len(caffe.bottom_keys[lay0.name]) != 1:
        return None
    r = np.asarray(ref[first.key], np.float64)
    if keras_out.shape != r.shape or not r.size:
        return None
    known = {id(t) for t in tensors.values()}
    used = {p.keras_layer for p in matching.pairs} | {v for p in matching.pairs for v in p.via}
    t0 = tensors[first.key]
    op0 = t0._keras_history[0]
    cands = []

    def visit(t: Any, op: Any, ni: int) -> str:
        cls = type(op).__name__
        if id(t) in known or cls == "InputLayer" or op.name in used:
            return "stop"
        node = op._inbound_nodes[ni]
        if cls not in HELPER_KERAS and cls not in ("Rescaling", "Normalization") and \
                len(node.input_tensors) == 1 and tuple(node.input_tensors[0].shape) == tuple(t.shape):
            cands.append(op)
        return "up"

    walk_keras_up(op0._inbound_nodes[-1].input_tensors if op0._inbound_nodes else [], visit)
    if not cands:
        return None
    x = caffe.inputs_of(caffe.net.layer(seg[0]).keys()[0])[0]
    layout = "nhwc" if x.ndim == 4 else "caffe"
    k_in = caffe.bottom_keys[lay0.name][0]
    layout = p_layout.get(k_in, layout)
    scale = float(np.max(np.abs(r)))
    e0 = float(np.max(np.abs(keras_out - r)))
    for op in cands:
        try:
            y = np.asarray(op(to_keras_layout(np.asarray(x, np.float32), layout)))
            v = from_keras_layout(y, layout).astype(np.float64)
            for name in seg:
                v = caffe.run_layer(caffe.net.layer(name), [v])[0]
        except Exception:
            continue
        if v.shape != r.shape:
            continue
        err = float(np.max(np.abs(keras_out - v)))
        if err <= 1e-3 * max(scale, 1e-30) and err <= 1e-2 * e0:
            return op.name, err / max(scale, 1e-30)
    return None


def output_problems(net: Net, matching: Any, keras_model: Any) -> list[tuple[str, str, str, str]]:
    """Net outputs with no counterpart, as (cause, Caffe key, Keras layer, message): a Caffe net output whose last
    computing layer has no Keras pair (``missing_layer``), or a Keras model output computed by a layer no Caffe layer
    matched (``extra_layer``).  Unmatched intermediate layers stay informational."""
    covered = {p.key for p in matching.pairs} | set(matching.folded)
    out: list[tuple[str, str, str, str]] = []
    for blob in net.outputs:
        recs = [(lay, k) for lay in net.layers for t, k in zip(lay.tops, lay.keys()) if t == blob]
        for lay, key in reversed(recs):
            if lay.kind in PASSIVE_CAFFE | RELAYOUT_CAFFE:
                continue
            if key not in covered:
                out.append(("missing_layer", key, "",
                            f"Caffe output {blob!r} is computed by {lay.type} {lay.name!r}, which has no Keras "
                            f"counterpart: the Keras model does not compute this output"))
            break
    by_keras = {p.keras_layer: p for p in matching.pairs}
    caffe_names = {lay.name for lay in net.layers} | {lay.name.replace("/", ".") for lay in net.layers}
    try:
        outputs = list(graph_model(keras_model).outputs)
    except Exception:
        return out
    for t in outputs:
        extra: list[str] = []

        def visit(x: Any, op: Any, ni: int) -> str:
            if op.name in by_keras:
                if extra:
                    p = by_keras[op.name]
                    kind = type(graph_model(keras_model).get_layer(extra[0])).__name__
                    out.append(("extra_layer", p.key, extra[0],
                                f"the Keras model output passes through {kind} {extra[0]!r} after the layer matched "
                                f"to Caffe {p.caffe_layer!r}; Caffe has no such layer"))
                return "end"
            cls = type(op).__name__
            if cls == "InputLayer":
                return "end"
            converter_helper = "__" in op.name and op.name.split("__", 1)[0] in caffe_names
            if cls not in HELPER_KERAS and not converter_helper and not extra:
                extra.append(op.name)
            return "up"

        walk_keras_up([t], visit)
    return out


def _evidence_differs(lr: LayerResult) -> str:
    """The first parameter the evidence finds different ("" when none does, or there is no evidence)."""
    params = lr.params or {}
    for c in params.get("checks") or []:
        if str(c.get("result", "")).startswith("different"):
            return str(c.get("what", "a parameter"))
    return ""


def settle_rounding(s: Session, results: list[LayerResult], isolated: Mapping[str, Any],
                    chained: Mapping[str, Any], diagnose: bool) -> list[str]:
    """The verdict follows the diagnosis: a pair whose failing comparisons are all *noisy* (past the statistical
    bound, every element within the rigorous float32 ceiling) passes when its parameter evidence finds nothing
    different and the diagnosis (when it runs) tests no porting bug that reproduces the error (its top cause is
    ``unknown``): rounding-sized error is not a divergence.  Returns the notes saying so, one per pair."""
    from .diagnosis import explain

    notes = []
    for lr in results:
        fails = [r for r in (lr.chained, lr.isolated) if r is not None and not r.passed]
        if not fails or not all(r.noisy for r in fails) or _evidence_differs(lr):
            continue
        if diagnose:
            causes = explain(s, lr, isolated, chained, time_budget_s=OTHERS_BUDGET_S)
            if causes and getattr(causes[0], "cause", "unknown") != "unknown":
                continue
        r0 = fails[0]
        why = (f"float32 rounding: {r0.n_fail} element(s) past the statistical bound (worst "
               f"{r0.worst_ratio:.3g} of it), all within the float32 ceiling (worst {r0.ceiling_ratio:.3g} of it); "
               f"parameters {'equal' if lr.params and lr.params.get('status') == 'equal' else 'not different'}"
               f"{'; no porting bug the diagnosis tests reproduces it' if diagnose else ''}")
        for r in fails:
            r.passed, r.rounding = True, why
        notes.append(f"note: {lr.caffe_layer}: not a divergence: {why}")
    return notes


MAX_DIAGNOSED = 24  # independent divergences diagnosed after the first (the rest are listed without causes)
OTHERS_BUDGET_S = 5.0  # the engine's time budget for each of them


def other_divergences(s: Session, results: list[LayerResult], first: FirstDivergence | None,
                      isolated: Mapping[str, Any], chained: Mapping[str, Any], diagnose: bool) -> list[FirstDivergence]:
    """Every other pair that fails in isolation -- an error of its own, not carried from upstream -- with its own
    causes, in execution order (the first ``MAX_DIAGNOSED`` diagnosed): one run names every independent bug."""
    from .diagnosis import explain

    out: list[FirstDivergence] = []
    for lr in results:
        if lr.isolated is None or lr.isolated.passed or (first is not None and lr.key == first.key):
            continue
        fd = FirstDivergence(lr.caffe_layer, lr.keras_layer, lr.key, "isolated")
        if diagnose and len(out) < MAX_DIAGNOSED:
            fd.diagnosis = explain(s, lr, isolated, chained, time_budget_s=OTHERS_BUDGET_S)
            fd.caffe_layer = introducer(s.net, lr, fd.diagnosis)
        out.append(fd)
    return out


def locate(s: Session, results: list[LayerResult], isolated: Mapping[str, Any], chained: Mapping[str, Any],
           problems: list[tuple[str, str, str, str]], diagnose: bool,
           setup: Cause | None = None) -> FirstDivergence | None:
    """The first divergence with its causes: a layer the port left out, a stray Keras layer before the pair, or what
    the diagnosis engine finds; else the first structural problem; None when everything agrees.  ``setup``: a cause
    in how the comparison was set up (seeded Caffe weights against a trained port) that replaces the diagnosis."""
    first = first_failing(results)
    if first is None:
        return structural_divergence(s, problems, diagnose) if problems else None
    mode = "isolated" if (first.isolated is not None and not first.isolated.passed) else "chained"
    if setup is not None:
        return FirstDivergence(first.caffe_layer, first.keras_layer, first.key, mode, [setup] if diagnose else [])
    out = keras_output(first, isolated, chained)
    skipped = skipped_layer(s.caffe, first, s.matching, s.ref, out)
    if skipped is not None:  # the Keras model lacks an unmatched Caffe layer just before this pair
        fd, cause = missing_layer_cause(first, skipped)
        fd.mode = mode
        fd.diagnosis = [cause] if diagnose else []
        return fd
    fd = FirstDivergence(first.caffe_layer, first.keras_layer, first.key, mode)
    extra = extra_before(s.caffe, first, s.matching, s.ref, out, s.tensors, p_layout=s.layouts())
    if extra is not None:  # the Keras model applies a layer Caffe does not have just before this pair
        fd.diagnosis = [extra_layer_cause(first, extra)] if diagnose else []
    elif diagnose:
        import time

        from .diagnosis import explain

        t = time.perf_counter()
        fd.diagnosis = explain(s, first, isolated, chained, growth=error_growth(results, first))
        s.timings["diagnose"] = time.perf_counter() - t
    fd.caffe_layer = introducer(s.net, first, fd.diagnosis)
    return fd


# -------------------------------------------------------------------------------------- errors that grow (issue 20)

GROWTH_FLOOR = 0.25  # an earlier passing pair is re-examined when its own error is at least this share of its bound
MAX_WALK_BACK = 8  # earlier pairs diagnosed, at most, looking for where a growing error starts


def _result(lr: LayerResult) -> Any:
    return lr.chained if lr.chained is not None else lr.isolated  # (a failing BlobResult is falsy)


def _ratio(r: Any) -> float:
    return max((x for x in (r.bound_ratio, r.carried_ratio) if x is not None), default=0.0) if r is not None else 0.0


def error_growth(results: list[LayerResult], first: LayerResult) -> str:
    """A sentence when the chained error grows down the net after the pair ``first`` ("" when it does not): a later
    pair fails or carries more than its bound, further past it than ``first`` is.  Float32 rounding stays within
    each layer's bound; an error that compounds layer after layer is a real difference, however small here."""
    try:
        at = next(i for i, lr in enumerate(results) if lr.key == first.key)
    except StopIteration:
        return ""
    own = _ratio(_result(first))
    later = [(lr, _ratio(lr.chained)) for lr in results[at + 1:]
             if lr.chained is not None and (not lr.chained.passed or (lr.chained.carried_ratio or 0.0) > 1.0)]
    if not later:
        return ""
    lr, worst = max(later, key=lambda t: t[1])
    if worst <= max(own, 1.0):
        return ""
    return (f"the chained error grows down the net: {first.caffe_layer!r} is {own:.3g} times its bound, "
            f"{lr.caffe_layer!r} {worst:.3g} times ({len(later)} later pair(s) past their bound)")


def _confident(causes: list[Any]) -> Any:
    top = causes[0] if causes else None
    return top if top is not None and top.cause != "unknown" and top.confidence >= 0.5 else None


def growth_start(results: list[LayerResult], first: LayerResult, first_causes: list[Any],
                 explain_fn: Any) -> tuple[LayerResult, list[Any]] | None:
    """Where a growing error starts when it starts before the first failing pair: the earliest earlier pair, within
    its bound, whose own error is at least ``GROWTH_FLOOR`` of it and which the diagnosis explains with a confident
    cause -- the first failing pair's cause when it has one (the same converter bug in every BatchNorm, each below
    its bound, compounding), any cause when it has none.  ``explain_fn(lr)`` -> that pair's causes.  Returns (pair,
    causes, with a sentence saying how the error grows added to the top one's explanation) or None."""
    want = _confident(first_causes)
    at = next((i for i, lr in enumerate(results) if lr.key == first.key), 0)
    tried = 0
    for lr in results[:at]:
        r = _result(lr)
        if r is None or not r.passed or r.rounding or (r.own_bound_ratio or r.bound_ratio or 0.0) < GROWTH_FLOOR:
            continue
        if tried >= MAX_WALK_BACK:
            break
        tried += 1
        causes = explain_fn(lr)
        top = _confident(causes)
        if top is None or (want is not None and top.cause != want.cause):
            continue
        own = r.own_bound_ratio or r.bound_ratio or 0.0
        top.explanation += (f"; here the error is {own:.2g} of this layer's bound (within it), and it compounds: "
                            f"{first.caffe_layer!r}, later, fails (its chained error up to "
                            f"{_ratio(_result(first)):.3g} times its bound) -- the growth starts here")
        return lr, causes
    return None
