"""Asking the diagnosis engine (:mod:`.diagnose`) why a pair diverges: its Caffe layer (or span), the reference's
inputs and output, the Keras output in isolation, and a function that re-runs the Keras side on other inputs."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ...catalogue import traits, types_with
from ..diagnose import diagnose
from .judge import short
from .loading import input_tensors
from .match import graph_model
from .passes import Session, rerun_keras
from ..reports.result import Cause, LayerResult

_RELAYOUT = types_with(role="relayout")


def explain(s: Session, first: LayerResult, isolated: Mapping[str, Any], chained: Mapping[str, Any], *,
            time_budget_s: float = 60.0, growth: str = "") -> list[Cause]:
    """The diagnosis engine's causes for a divergent pair, best first (never raises: a failing engine gives one
    ``unknown`` cause saying so).  ``time_budget_s``: how long the engine may test hypotheses.  ``growth``: the
    chained error grows down the net after the pair (:func:`.divergence.error_growth`): never called rounding."""
    res = first.isolated if first.isolated is not None and not first.isolated.passed else first.chained
    seg_first = s.net.layer(first.segment[0]) if first.segment else s.caffe.layer_of[first.key]
    keras_out = next((v for v in (isolated.get(first.key), chained.get(first.key)) if isinstance(v, np.ndarray)),
                     None)
    try:
        kl = graph_model(s.keras_model).get_layer(first.keras_layer)
    except Exception:
        kl = None
    bottom_keys = s.caffe.bottom_keys[seg_first.name]
    kin = input_tensors(s.net, s.keras_model)

    def keras_fn(xs: list[np.ndarray]) -> np.ndarray:
        """Re-run the Keras side of the first divergent pair on NCHW values of the Caffe bottoms."""
        return rerun_keras(s, first.key, bottom_keys, xs, kin)

    context = {"chain": [s.net.layer(n) for n in first.segment[1:]], "net": s.net, "key": first.key,
               "keras_model": s.keras_model, "result": res, "time_budget_s": time_budget_s, "growth": growth,
               # the largest |error| of the pair in either mode: a per-layer atol the fix suggests passes both
               "max_abs": max((r.max_abs for r in (first.chained, first.isolated) if r is not None and
                               r.max_abs is not None), default=None)}
    try:
        return list(diagnose(seg_first, kl, _ref_inputs(s, first, seg_first), np.asarray(s.ref[first.key]),
                             keras_out, keras_fn=keras_fn, context=context) or [])
    except Exception as e:  # the diagnosis must never hide the verdict
        return [Cause("unknown", 0.0, f"the diagnosis engine failed: {type(e).__name__}: {short(e)}",
                      "inspect the layer by hand")]


def _ref_inputs(s: Session, first: LayerResult, seg_first: Any) -> list[np.ndarray]:
    """The reference's bottoms of the span's first layer.  An InnerProduct after a Caffe Flatten computes the same on
    the unflattened 4-D blob: the diagnosis gets that blob so the layout hypotheses (flatten_order ...) can run."""
    key0 = seg_first.keys()[0] if first.segment and len(first.segment) > 1 else first.key
    ref_inputs = s.caffe.inputs_of(key0)
    tr = traits(seg_first.kind)
    if tr.flattens and tr.linear and ref_inputs and np.ndim(ref_inputs[0]) == 2:
        bk = s.caffe.bottom_keys[seg_first.name][0]
        prod = s.caffe.layer_of.get(bk)
        if prod is not None and prod.kind in _RELAYOUT:
            x4 = s.caffe.inputs_of(bk)[0]
            if np.ndim(x4) == 4 and x4.size == np.size(ref_inputs[0]):
                ref_inputs = [np.asarray(x4), *ref_inputs[1:]]
    return ref_inputs
