"""Several artefacts in one run, the stages of one conversion chain (``check NET --onnx a.onnx --saved-model DIR
--tflite m.tflite``, or a manifest naming them): each stage is judged against the same reference (one preamble, one
reference run) and each divergence is put down to the first stage where it appears.

A stage *introduces* a divergent layer when that layer fails there and in no earlier stage (chain order: the
registry's ``stage``, Keras / ONNX before SavedModel before ``.tflite``); a later stage that fails at the same layer
carries it.  The report returned is the first stage that is not equivalent (it introduced the first divergence),
else the last stage's; ``report.stages`` holds every stage:
``{"kind", "path", "equivalent", "first_divergence", "failing", "introduced", "coverage"}``, with ``failing`` the
Caffe layers that fail there and ``introduced`` those that fail there first.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .kinds import KINDS, judge_kind, open_kind, preamble


def check_chain(stages: Sequence[tuple[str, Any]], net_or_prototxt: Any, inputs: Any = None, *, weights: Any = None,
                seed: int = 0, input_shapes: Mapping[str, Any] | None = None,
                options: Mapping[str, Any] | None = None, **kw: Any) -> Any:
    """``stages``: ``[(kind, path)]``; every file is opened (a bad one refused) before the net runs; ``kw``:
    tolerances, atol, rtol, diagnose."""
    order = sorted(stages, key=lambda s: KINDS[s[0]].stage)
    opened = [(name, path, open_kind(name, path, options)) for name, path in order]  # a bad file refused first
    pre = preamble(net_or_prototxt, inputs, weights=weights, seed=seed, input_shapes=input_shapes,
                   label="an artefact")
    reports = [(name, path, judge_kind(name, handle, pre, options, **kw)) for name, path, handle in opened]
    summary = stage_summary(reports)
    shown = next((r for _, _, r in reports if not r.equivalent), reports[-1][2])
    shown.stages = summary
    shown.artefact["stage"] = next(s["kind"] for s, (_, _, r) in zip(summary, reports) if r is shown)
    return shown


def stage_summary(reports: Sequence[tuple[str, Any, Any]]) -> list[dict[str, Any]]:
    """One dict per stage (see the module docstring), chain order."""
    seen: set[str] = set()
    out = []
    for name, path, rep in reports:
        named = {d.key: d.caffe_layer for d in [rep.first_divergence, *rep.divergences] if d is not None}
        failing = list(dict.fromkeys([*named.values(), *(named.get(lr.key, lr.caffe_layer) for lr in rep.failed())]))
        out.append({"kind": name, "path": str(path), "equivalent": rep.equivalent,
                    "first_divergence": rep.first_divergence.caffe_layer if rep.first_divergence else None,
                    "failing": failing, "introduced": [n for n in failing if n not in seen],
                    "coverage": dict(rep.coverage) if getattr(rep, "coverage", None) else None})
        seen.update(failing)
    return out
