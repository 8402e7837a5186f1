"""``check --model-explorer FILE``: Google Model Explorer node data, so that the divergence shows on the artefact's
own graph.

The file is one graph's node data (Model Explorer's ``GraphNodeData`` JSON: load it in Model Explorer's side panel
over the graph of the artefact that was checked)::

    {"results": {"<node>": {"value": <bound ratio>, "bgColor": "<colour>"}, ...},
     "thresholds": [{"value": 0.5, "bgColor": ...}, {"value": 1, "bgColor": ...}]}

Each compared layer's node is keyed by every name the artefact's graph knows it by (an ONNX node's name and its
output tensor's, a TFLite tensor name, a SavedModel layer scope, a Keras layer name).  ``value`` is the layer's
chained error / bound ratio (the isolated one where only that ran; < 1 passes, a pass/fail colour is set on each
node: green passed, amber passed with less than a factor 2 margin, red failed).  A ratio that is not finite is
written as 1e9.
"""

from __future__ import annotations

import json
import math
from typing import Any

PASSED, CLOSE, FAILED = "#c8e6c9", "#ffe08a", "#f4a0a0"
NOT_FINITE = 1e9


def _ratio(lr: Any) -> float:
    r = lr.chained if lr.chained is not None else lr.isolated
    v = getattr(r, "bound_ratio", None)
    if v is None or not math.isfinite(v):
        return NOT_FINITE if not lr.passed else 0.0
    return float(v)


def node_data(report: Any) -> dict[str, Any]:
    """The ``GraphNodeData`` dict of ``report`` (see the module docstring)."""
    results: dict[str, dict[str, Any]] = {}
    nodes = getattr(report, "nodes", None) or {}
    for lr in report.layers:
        if lr.matched_by == "preprocess":
            continue
        v = _ratio(lr)
        colour = FAILED if not lr.passed else CLOSE if v > 0.5 else PASSED
        for name in dict.fromkeys([*nodes.get(lr.key, []), lr.keras_layer]):
            if name:
                results[name] = {"value": round(v, 6), "bgColor": colour}
    return {"results": results, "thresholds": [{"value": 0.5, "bgColor": PASSED}, {"value": 1, "bgColor": CLOSE}]}


def to_model_explorer(report: Any) -> str:
    """The node data as JSON text."""
    return json.dumps(node_data(report), indent=1, allow_nan=False) + "\n"
