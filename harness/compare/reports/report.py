"""Report writers: terminal table and verdict, JSON, JUnit XML, self-contained HTML.

JSON report (``caffe-harness check --json FILE``, ``Report.to_json()``)
=====================================================================
::

    {
      "equivalent": bool,              # every matched pair passed every comparison that ran (>= 1 pair) and
                                       # every net output has a counterpart (unmatched.outputs is empty)
      "first_divergence": null | {     # the first pair, in Caffe execution order, failing in isolation
                                       # (or chained, when isolated did not run)
        "caffe_layer": str,            # the Caffe layer that introduced the error: for a Keras layer computing a
                                       # span (Conv2D(activation="relu") = conv1 + relu1, BatchNormalization =
                                       # bn1 + scale1) the span's first layer, or its activation when the top
                                       # cause is the activation's (relu_slope)
        "keras_layer": str,            # Keras layer name ("" when the Caffe layer has no Keras counterpart)
        "caffe_key": str,              # "<layer>/<top>" blob record compared (the span's last record)
        "mode": "isolated"|"chained"|"structure"|"preprocess",  # which comparison established it ("structure":
                                       # no pair failed, but a net output has no counterpart: see
                                       # "unmatched.outputs"; "preprocess": layer 0 of check --images)
        "diagnosis": [                 # likely causes, best first (harness.compare.diagnose)
          {"cause": str,               # stable code, e.g. "kernel_reshaped", "same_padding", "unknown"
           "confidence": float,        # 0..1
           "explanation": str,         # what the data shows
           "fix": str}                 # one-line fix
        ],
        "file": str|null, "line": int|null, "column": int|null   # where caffe_layer is written (as in "layers")
      },
      "divergences": [ {...} ],        # every other pair failing in isolation (an error of its own), in
                                       # execution order, each like first_divergence (mode "isolated"; the
                                       # first 24 diagnosed, the rest with an empty diagnosis)
      "layers": [                      # one entry per matched pair, Caffe execution order
        {"caffe_layer": str, "caffe_top": str, "caffe_type": str,
         "keras_layer": str,
         "matched_by": "mapping"|"name"|"position"|"user",
         "shape": [int, ...],          # the Caffe (NCHW) shape
         "segment": [str, ...],        # Caffe layers the Keras layer computes (["conv1", "relu1"] for a fused ReLU)
         "chained": null | RESULT,     # null when the mode did not run it
         "isolated": null | RESULT,
         "params": {                   # parameter evidence (harness/compare/engine/evidence.py): the Keras layer's own
                                       # weights and configuration against Caffe's blobs and parameters
           "status": "equal"|"transformed"|"different"|"none",
           "checks": [{"what": str,    # "kernel", "bias", "stride", "dilation", "mean", "variance", "gamma",
                                       # "beta", "epsilon", "negative slope", "clip"
                       "result": str,  # "equal", "equal (rows in H, W, C order)", "reshaped", "flipped",
                                       # "axes swapped", "not transposed", "channel order reversed", "missing",
                                       # "factor ignored", "Scale left out", "different"
                       "caffe": ..., "keras": ...}]},  # the two values where they are scalars or pairs
         "file": str|null,             # the prototxt the layer was read from, as given to load_net/check
         "line": int|null,             # 1-based line where its `layer {` / `layers {` block starts (V0/V1 nets:
                                       # the original block; the legacy `input:` fields: the first `input:`)
         "column": int|null}           # 1-based column of that block; all three null for a net not read
                                       # from text
      ],
      "backend": str,                  # the Keras backend that ran the model: "tensorflow", "jax" or "torch"
      "artefact": {"kind": "converted"|"keras"|"in-memory",   # what was checked: the harness's own conversion,
                   "path": str|null},  # a model file (--keras), or a model object passed to compare()
      "unmatched": {"caffe": [str],    # Caffe blob records ("<layer>/<top>") with no Keras counterpart
                    "keras": [str],    # Keras layers (helpers such as ZeroPadding2D/Flatten/Permute excluded)
                    "outputs": [str]}, # net outputs with no counterpart, one message each; NOT equivalent when
                                       # non-empty: a Caffe net output (net.outputs) whose last computing layer
                                       # has no Keras pair (cause missing_layer, e.g. the final Softmax left out),
                                       # or a Keras model output computed by a layer no Caffe layer matched
                                       # (cause extra_layer, e.g. a second Softmax).  Unmatched intermediate
                                       # layers ("caffe"/"keras" above) stay informational.
      "net": str, "keras_model": str, "mode": "both"|"chained"|"isolated",
      "tolerances": {"global": null|TOL, "types": {type: TOL}, "layers": {name: TOL}, "c": float},
                                       # TOL = {"atol": float|null, "rtol": float|null, "reason": str}
      "timings": {str: seconds},
      "resources": null | {"peak_rss_bytes": int,   # this process's peak resident memory at the end of the check
                           "threads": {"n": int, "cores": int, "load": float|null, "reason": str}},
                                       # BLAS/TensorFlow threads used (harness.threads); null from the API
      "notes": [str],
      "preprocess": null | {           # check --images only: layer 0, Caffe's preprocessing vs the Keras side's
        "caffe": str,                  # Caffe's rules in order, e.g. "BGR uint8, centre crop 227, - mean image
                                       # (3, 256, 256)" (harness.reference.preprocess.CaffeTransform.describe)
        "caffe_route": "data_transformer"|"pycaffe",
        "keras": str,                  # the Keras side's steps, e.g. "RGB -> preprocess_input(mode='caffe')"
        "images": [str],               # the image files, in batch order (sample n = images[n])
        "passed": bool,
        "shape": [int, ...],           # Caffe's layer 0 (NCHW)
        "diagnosis": [CAUSE]           # as first_divergence.diagnosis (preprocess_* codes); [] when it passed
      }
    }

    With --images, layers[0] is layer 0 itself: caffe_layer = caffe_top = "layer0:preprocess", caffe_type
    "Preprocess", matched_by "preprocess", keras_layer the Keras side's steps, its comparison under "chained"
    (isolated null); when it fails, first_divergence is layer 0 (mode "preprocess") and the net's own first
    divergence, if any, is the first entry of "divergences".

    RESULT = {
      "passed": bool,
      "tolerance": str,                # the rule used: "derived: <layer>: 4*u32*sqrt(K+1)*(m)" or "atol=.. OR rtol=.."
      "max_abs", "mean_abs", "median_abs": float,   # |keras - caffe| over all elements
      "max_rel", "mean_rel", "median_rel": float|null,  # |keras - caffe| / |caffe| (null: infinite, caffe is 0
                                                       # where keras is not; mean_rel over the finite ones)
      "scale": float,                  # max |caffe|
      "frac_out_of_tolerance": float,  # fraction of elements failing
      "worst": {"index": [n, c, h, w], # NCHW index of the element with the largest error/bound ratio (the
                                       # failing element when it failed; max_abs is the largest |error| anywhere)
                "caffe": float, "keras": float|null, "bound": float, "ratio": float},
      "needs_atol": float,             # the smallest atol that alone would pass (= max_abs)
      "needs_rtol": float|null,        # the smallest rtol that alone would pass (null: infinite, caffe is 0 there)
      "nonfinite": int,                # Keras NaN/Inf where Caffe is finite (always a failure)
      "propagated_max_abs": float|null,# chained: max |f(keras inputs) - f(caffe inputs)|, the error received
                                       # (null when the layer passed against the reference directly)
                                       # every float field is null when not finite
      "growth": float|null,            # chained: CRADLE growth, r(out) / max(u32, r(inputs)), r = max_abs/scale
      "bound_ratio": float|null,       # max over elements of |keras - expected| / bound (< 1 passes; 1/x = margin);
                                       # chained: expected is caffe or f(keras inputs), whichever is nearer
      "own_bound_ratio": float|null,   # the layer's own margin: isolated = bound_ratio; chained = max
                                       # |keras - f(keras inputs)| / bound where bound_ratio > 0.5 (else = bound_ratio)
      "carried_ratio": float|null,     # chained, where split: max |f(keras inputs) - caffe| / bound (what it inherits)
      "n_out_of_tolerance": int|null,  # elements past the bound
      "n_past_ceiling": int|null,      # failing: elements past the rigorous float32 ceiling gamma_{K+3}(sum|w||x|+|b|)
      "ceiling_ratio": float|null,     # failing: max error / ceiling
      "noisy": bool,                   # past the bound, every element within the ceiling
      "rounding": str|null,            # settled as float32 rounding (passed): why
      "error": str|null                # why the comparison could not run (shape mismatch, Keras failure)
    }

A chained comparison passes when every element is within the bound of the reference, or of ``f(keras inputs)`` (the
reference re-run on the Keras chained inputs): the layer adds no more than float32 rounding to what it received.
An element passes an override when within ``atol`` OR within ``rtol*|caffe|``.

JUnit XML: one ``<testsuite name="caffe-harness">`` with one ``<testcase classname="<net>" name="<caffe_layer>/<top>">``
per matched pair, a ``<failure>`` carrying the result lines when it failed.

HTML: one self-contained page (no external resources): the layer table, a log-scale plot of chained and isolated
``max_abs / scale`` per layer, and for the first divergent layer a heat map of ``max |error|`` over N, C in H x W
(matplotlib, embedded as base64 PNG).
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._atomic import atomic_write  # noqa: F401  (re-exported: the report writers' one atomic writer)
from .result import BlobResult, FirstDivergence, LayerResult, cause_dict, fmt_number, params_column


@dataclass
class Report:
    """Truthy when the models are equivalent (every compared pair passed and at least one pair was compared)."""

    net_name: str
    keras_name: str
    mode: str
    layers: list[LayerResult]
    unmatched_caffe: list[str]
    unmatched_keras: list[str]
    first_divergence: FirstDivergence | None = None
    divergences: list[FirstDivergence] = field(default_factory=list)  # the other pairs failing in isolation
    backend: str = ""  # the Keras backend that ran the model (tensorflow, jax, torch)
    artefact: dict[str, Any] = field(default_factory=dict)  # {"kind": "converted"|"keras"|"in-memory", "path"}
    graph: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = field(default_factory=list, repr=False)
    # the Caffe net as (layer, type, bottoms, tops), execution order: the HTML report draws it
    tolerances: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    # what the run cost and ran on (check --timings): {"peak_rss_bytes": int, "threads": harness.threads.ThreadPlan}
    resources: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    output_problems: list[str] = field(default_factory=list)  # net outputs with no counterpart (never equivalent)
    top1_agreement: float | None = None  # a quantised artefact: top-1 agreement of the outputs (0..1)
    top5_agreement: float | None = None  # the reference's top-1 among the artefact's top 5 (0..1)
    quant_gate: dict[str, float] | None = None  # the thresholds a quantised artefact was judged by
    # a .tflite checked on several LiteRT paths: {delegate: {"equivalent", "first_divergence", "failed"}}
    delegates: dict[str, dict[str, Any]] | None = None
    net_source: str = ""  # the prototxt the net was read from ("" or "<string>" when none; annotations, SARIF)
    preprocess: dict[str, Any] | None = None  # check --images: layer 0 (harness.compare.layer0.preprocessing.Layer0.to_dict)
    # an artefact: {"paired", "records", "ratio", "uncomputed": [records no tensor computes]}
    coverage: dict[str, Any] | None = None
    # several artefacts (the stages of a chain): [{"kind", "path", "equivalent", "first_divergence", "failing",
    # "introduced", "coverage"}] in chain order (harness.compare.artefacts.chain)
    stages: list[dict[str, Any]] | None = None
    what: str = ""  # what the net was compared with, in the verdict ("ONNX model"; set by the artefact kind)
    # an artefact: {caffe key: the names its graph knows the paired node by} (Model Explorer node data)
    nodes: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @property
    def equivalent(self) -> bool:
        return bool(self.layers) and all(lr.passed for lr in self.layers) and not self.output_problems

    def __bool__(self) -> bool:
        return self.equivalent

    def failed(self) -> list[LayerResult]:
        return [lr for lr in self.layers if not lr.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "equivalent": self.equivalent,
            "first_divergence": self.first_divergence.to_dict() if self.first_divergence else None,
            "divergences": [d.to_dict() for d in self.divergences],
            "layers": [lr.to_dict() for lr in self.layers],
            "unmatched": {"caffe": list(self.unmatched_caffe), "keras": list(self.unmatched_keras),
                          "outputs": list(self.output_problems)},
            "net": self.net_name, "keras_model": self.keras_name, "mode": self.mode,
            "backend": self.backend, "artefact": dict(self.artefact),
            "tolerances": self.tolerances,
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
            "resources": dict(self.resources) if self.resources else None,
            "notes": list(self.notes),
            "preprocess": self.preprocess,
            "top1_agreement": self.top1_agreement, "top5_agreement": self.top5_agreement,
            "quant_gate": dict(self.quant_gate) if self.quant_gate else None,
            "delegates": {k: dict(v) for k, v in self.delegates.items()} if self.delegates else None,
            "coverage": dict(self.coverage) if self.coverage else None,
            "stages": [dict(s) for s in self.stages] if self.stages else None,
        }

    def to_json(self, indent: int | None = 1) -> str:
        import json

        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def table(self, *, color: bool = False, width: int | None = None) -> str:
        return render_table(self, color=color, width=width)

    def verdict(self) -> str:
        return verdict_text(self)

    def __str__(self) -> str:
        return self.verdict()


def _cell(r: BlobResult | None, upstream_failed: bool = True) -> tuple[str, str]:
    """(status, error text).  Chained status: ``ok`` (within this layer's own float32 bound of the reference),
    ``carried`` (off the reference by more than that, but the layer adds no error of its own to what it received:
    the output is *not* right, an upstream layer is wrong) or ``FAIL``.  With no failing layer before it
    (``upstream_failed`` False) what it received is only float32 drift: ``ok``."""
    if r is None:
        return "-", ""
    if r.error:
        return "FAIL", "error"
    rel = r.rel_to_scale
    status = "FAIL" if not r.passed else "rounding" if r.rounding else "carried" if r.mode == "chained" and \
        r.propagated_max_abs is not None and upstream_failed else "ok"
    return status, (f"{fmt_number(r.max_abs)} ({fmt_number(rel)})" if rel is not None else fmt_number(r.max_abs))


def carried_shape(lr: LayerResult) -> bool:
    """Chained, the shape an upstream divergence gave it; in isolation (on Caffe's inputs) it passes: carried."""
    c, i = lr.chained, lr.isolated
    return c is not None and bool(c.error) and str(c.error).startswith("shape mismatch") and i is not None and \
        i.passed


def margin_cell(lr: LayerResult) -> str:
    """The table's margin: the layer's own error over its bound, and (chained, where split) the carried error's."""
    r = lr.isolated if lr.isolated is not None else lr.chained
    c = lr.chained
    own = r.own_bound_ratio if r is not None else None
    if own is None:
        return "-"
    text = fmt_number(own)
    if c is not None and c.carried_ratio is not None:
        text += f" (carried {fmt_number(c.carried_ratio)})"
    return text


def _carrying(report: Report) -> list[bool]:
    """Per row of ``report.layers``: whether a layer before it (in execution order) fails, so that an error it
    passes on within the propagated allowance is an upstream error "carried"."""
    out, seen = [], False
    for lr in report.layers:
        out.append(seen)
        seen = seen or not lr.passed
    return out


def _failure_counts(report: Report) -> str:
    """How many pairs fail in isolation (their own error) and how many only chained (an upstream error); layer 0
    (check --images) is counted apart."""
    net = [lr for lr in report.layers if lr.matched_by != "preprocess"]
    iso = sum(1 for lr in net if lr.isolated is not None and not lr.isolated.passed)
    only = sum(1 for lr in net if not lr.passed and (lr.isolated is None or lr.isolated.passed)
               and not carried_shape(lr))
    after = dict(zip((id(lr) for lr in report.layers), _carrying(report)))
    carried = sum(1 for lr in net if (lr.chained is not None and lr.chained.passed and
                                      lr.chained.propagated_max_abs is not None and after[id(lr)])
                  or carried_shape(lr))
    pre = "layer 0 (the preprocessing) differs; of the net's: " if len(net) < len(report.layers) and \
        not report.layers[0].passed else ""
    if _what(report) != "Keras model":  # an artefact: chained only, each failure judged on the artefact's inputs
        return (f"{only} add an error of their own (the Caffe layer re-run on the artefact's own inputs does not "
                f"reproduce them); {carried} more carry an upstream error without adding to it (chained: carried)")
    return (f"{pre}{iso} fail in isolation (their own error), {only} only chained (an error they received and "
            f"amplified); {carried} more carry an upstream error without adding to it (chained: carried)")


def verdict_text(report: Report) -> str:
    lines = []
    n = len(report.layers)
    nf = len(report.failed())
    what = _what(report)
    if report.equivalent:
        within = "within float32 rounding" if not report.quant_gate else \
            f"within the quantised gate (SQNR >= {report.quant_gate['min_sqnr']:g} dB per layer)"
        lines.append(f"EQUIVALENT: {n} matched layer output(s) of {report.net_name!r} agree with {what} "
                     f"{report.keras_name!r} {within} ({report.mode}).")
    else:
        lines += _not_equivalent_lines(report, n, nf, what)
    lines += _delegate_lines(report) + _coverage_lines(report) + _stage_lines(report.stages or [])
    if report.quant_gate:
        a1, a5 = report.top1_agreement, report.top5_agreement
        lines.append(f"  Quantised: per-layer SQNR >= {report.quant_gate['min_sqnr']:g} dB; top-1 agreement "
                     f"{'-' if a1 is None else f'{a1:.3f}'} (>= {report.quant_gate['min_top1_agreement']:g}), top-5 "
                     f"agreement {'-' if a5 is None else f'{a5:.3f}'}.")
    fd = report.first_divergence
    if fd is not None:
        lr = next((l for l in report.layers if l.key == fd.key), None)
        typ = f" ({lr.layer_type})" if lr is not None and lr.caffe_layer == fd.caffe_layer else ""
        lines.append(f"First divergent layer: Caffe {fd.caffe_layer!r}{typ} <-> Keras {fd.keras_layer or '(none)'!r}"
                     f" [{fd.mode}]")
        if fd.line is not None:
            lines.append(f"  at {fd.where}")
        res = None if lr is None or fd.mode == "structure" else lr.isolated if fd.mode == "isolated" else lr.chained
        if res is not None:
            lines.append(f"  {res}")
        if fd.diagnosis:
            lines.append("Likely cause(s):")
            for c in fd.diagnosis:
                d = cause_dict(c)
                lines.append(f"  - {d['cause']} (confidence {float(d['confidence']):.2f}): {d['explanation']}")
                if d.get("fix"):
                    lines.append(f"    fix: {d['fix']}")
        lines += _other_divergence_lines(report)
    elif not report.layers:
        lines.append("No layers were compared." + (" " + " ".join(report.notes) if report.notes else ""))
    if report.unmatched_caffe:
        lines.append(f"Unmatched Caffe: {', '.join(report.unmatched_caffe[:20])}"
                     f"{' ...' if len(report.unmatched_caffe) > 20 else ''}")
    if report.unmatched_keras:
        lines.append(f"Unmatched Keras: {', '.join(report.unmatched_keras[:20])}"
                     f"{' ...' if len(report.unmatched_keras) > 20 else ''}")
    return "\n".join(lines)


def _not_equivalent_lines(report: Report, n: int, nf: int, what: str) -> list[str]:
    lines = []
    if nf or not report.output_problems:
        lines.append(f"NOT EQUIVALENT: {nf} of {n} matched layer output(s) of {report.net_name!r} differ in "
                     f"{what} {report.keras_name!r} ({report.mode}).")
        if nf:
            lines.append(f"  Of all {n}: {_failure_counts(report)}.")
    elif n == 0:  # nothing was compared: nothing "agrees"
        lines.append(f"NOT EQUIVALENT: no layer output of {report.net_name!r} was compared with {what} "
                     f"{report.keras_name!r} (no pair matched), and {len(report.output_problems)} net "
                     f"output(s) have no counterpart.")
    else:
        lines.append(f"NOT EQUIVALENT: the {n} matched layer output(s) of {report.net_name!r} agree with "
                     f"{what} {report.keras_name!r} ({report.mode}), but {len(report.output_problems)} net "
                     f"output(s) have no counterpart.")
    return lines + [f"Output not matched: {msg}" for msg in report.output_problems]


def _delegate_lines(report: Report) -> list[str]:
    """A .tflite checked on several LiteRT paths: each path's verdict."""
    if not report.delegates or len(report.delegates) < 2:
        return []
    return ["  LiteRT paths: " + "; ".join(
        f"{d} {'EQUIVALENT' if v['equivalent'] else 'NOT EQUIVALENT'}"
        + (f" (first divergent layer {v['first_divergence']!r})" if v.get("first_divergence") else "")
        for d, v in report.delegates.items()) + f"; the table shows {report.artefact.get('delegate')}."]


def _coverage_lines(report: Report) -> list[str]:
    """An artefact's pairing coverage, and the records no tensor computes."""
    c = report.coverage
    if not c:
        return []
    out = [f"  Pairing coverage: {c['paired']} of {c['records']} Caffe records computed by a tensor of the artefact "
           f"({100 * c['ratio']:.0f}%)."]
    if c["uncomputed"]:
        more = " ..." if len(c["uncomputed"]) > 20 else ""
        out.append(f"  No tensor computes: {', '.join(c['uncomputed'][:20])}{more}")
    return out


def _stage_lines(stages: list[dict[str, Any]]) -> list[str]:
    """Each stage's verdict, then which stage first introduced each divergence ("bn1 drifts from the onnx stage
    ('a.onnx') on; the saved_model and tflite stages add nothing")."""
    if not stages:
        return []
    lines = ["  Stages (chain order): " + "; ".join(
        f"{s['kind']} {s['path']!r} {'EQUIVALENT' if s['equivalent'] else 'NOT EQUIVALENT'}"
        + (f" (first divergent layer {s['first_divergence']!r})" if s["first_divergence"] else "") for s in stages)]
    for i, s in enumerate(stages):
        if not s["introduced"]:
            continue
        later = stages[i + 1:]
        quiet = [t["kind"] for t in later if not t["introduced"]]
        names = ", ".join(repr(n) for n in s["introduced"][:5]) + (" ..." if len(s["introduced"]) > 5 else "")
        tail = (f"; the {' and '.join(quiet)} stage{'s add' if len(quiet) > 1 else ' adds'} nothing"
                if quiet and len(quiet) == len(later) else "")
        lines.append(f"  {names} {'drift' if len(s['introduced']) > 1 else 'drifts'} from the {s['kind']} stage "
                     f"({s['path']!r}) on{tail}.")
    return lines


def _what(report: Report) -> str:
    """What the Caffe net was compared with: a Keras model, or an exported artefact run end to end."""
    kind = (report.artefact or {}).get("kind")
    return report.what or {"tflite": "LiteRT model", "saved_model": "SavedModel"}.get(kind, "Keras model")


def _other_divergence_lines(report: Report) -> list[str]:
    """The other layers failing in isolation, each with its top cause and fix, in execution order."""
    if not report.divergences:
        return []
    out = [f"Also diverging in isolation ({len(report.divergences)} more layer(s), each an error of its own):"]
    for fd in report.divergences:
        head = f"  - Caffe {fd.caffe_layer!r} <-> Keras {fd.keras_layer or '(none)'!r}"
        if not fd.diagnosis:
            out.append(f"{head}: not diagnosed (beyond the diagnosis limit)")
            continue
        d = cause_dict(fd.diagnosis[0])
        out.append(f"{head}: {d['cause']} (confidence {float(d['confidence']):.2f})" +
                   (f"; fix: {d['fix']}" if d.get("fix") else ""))
    return out


def render_table(report: Report, *, color: bool = False, width: int | None = None) -> str:
    """The per-layer table as text (rich; ANSI colour only when ``color``), fitted to ``width`` (default 160)
    columns: when the full table is wider, the same rows in a compact form (:func:`_table`: status and error in one
    cell, then without the by/growth/type/margin columns, the relative errors and the shape, then the two names cut with an
    ellipsis) -- one line per row."""
    from rich.console import Console

    w = width or 160
    console = Console(file=io.StringIO(), force_terminal=color, color_system="standard" if color else None,
                      width=w, no_color=not color, highlight=False)
    wide = console.options.update_width(10 ** 5)  # the table's natural width (a measure is capped at its width)

    def natural(t: Any) -> int:
        return console.measure(t, options=wide).maximum

    for level in range(_LEVELS - 1):
        t = _table(report, color, level)
        if natural(t) <= w:
            break
    else:  # the names cut (not below 16 with the shape column, then not below 8 without it)
        for level, floor in ((_LEVELS - 2, 16), (_LEVELS - 1, 8)):
            names = [max([len(_row_name(lr)) for lr in report.layers] + [11]),
                     max([len(lr.keras_layer) for lr in report.layers] + [11])]
            t = _table(report, color, level)
            excess = natural(t) - w
            while excess > 0 and max(names) > floor:  # the longer name first
                i = 0 if names[0] >= names[1] else 1
                names[i] -= min(excess, names[i] - floor, max(names[i] - names[1 - i], 1))
                t = _table(report, color, level, (names[0], names[1]))
                excess = natural(t) - w
            if excess <= 0:
                break
    console.print(t)
    return console.file.getvalue()


def _row_name(lr: LayerResult) -> str:
    return lr.caffe_layer if lr.caffe_top == lr.caffe_layer else f"{lr.caffe_layer}/{lr.caffe_top}"


def _cut(text: str, n: int | None) -> str:
    return text if n is None or len(text) <= n else text[:n - 1] + "…"


_LEVELS = 5


def _table(report: Report, color: bool, level: int, names: tuple[int, int] | None = None) -> Any:
    """The table at compactness ``level``: 0 every column; 1 status and error in one cell per mode; 2 also
    without the by, growth, type and margin columns; 3 the errors without their relative part; 4 also without the shape
    column; ``names``: the caffe and keras layer names cut to these lengths."""
    from rich.table import Table

    quant = any(lr.sqnr_db is not None for lr in report.layers)
    t = Table(title=f"{report.net_name} vs {report.keras_name}", show_lines=False)
    full = ("#", "caffe layer", "type", "keras layer", "by", "shape", "chained", "max_abs (rel)", "growth",
            *(("SQNR dB",) if quant else ()), "isolated", "max_abs (rel)", "own bound (carried)", "params")
    drop = ({"by", "growth", "type", "own bound (carried)"} if level >= 2 else set()) | \
        ({"shape"} if level >= 4 else set())
    cols = [c for c in full if c not in drop and not (level >= 1 and c == "max_abs (rel)")]
    for col in cols:
        t.add_column(col, overflow="fold")
    cut = names or (None, None)

    def st(s: str) -> str:
        if not color:
            return s
        return {"ok": "[green]ok[/]", "FAIL": "[bold red]FAIL[/]", "carried": "[yellow]carried[/]",
                "rounding": "[green]rounding[/]"}.get(s, s)

    for i, (lr, up) in enumerate(zip(report.layers, _carrying(report))):
        (cs, cv), (is_, iv) = _cell(lr.chained, up), _cell(lr.isolated)
        if carried_shape(lr):
            cs, cv = "carried", "shape"
        if level >= 3:
            cv, iv = cv.split(" (")[0], iv.split(" (")[0]
        g = lr.chained.growth if lr.chained is not None else None
        cells = {"#": str(i), "caffe layer": _cut(_row_name(lr), cut[0]), "type": lr.layer_type,
                 "keras layer": _cut(lr.keras_layer, cut[1]),
                 "by": lr.matched_by, "shape": "x".join(str(d) for d in lr.shape),
                 "chained": st(cs) + (f" {cv}" if level >= 1 and cv else ""), "growth": fmt_number(g)
                 if g is not None else "-", "SQNR dB": _db(lr.sqnr_db),
                 "isolated": st(is_) + (f" {iv}" if level >= 1 and iv else ""), "own bound (carried)": margin_cell(lr),
                 "params": params_column(lr.params)}
        row = [cells.get(c, "") for c in cols]
        if level == 0:  # the two "max_abs (rel)" columns follow their status
            row = [cv if c == "max_abs (rel)" and k < cols.index("isolated") else iv if c == "max_abs (rel)"
                   else cells[c] for k, c in enumerate(cols)]
        t.add_row(*row)
    return t


def _db(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if math.isfinite(v) else ("exact" if v > 0 else "-inf")


def to_junit(report: Report) -> str:
    from xml.sax.saxutils import quoteattr, escape

    cases = []
    nfail = 0
    for lr in report.layers:
        body = ""
        if not lr.passed:
            nfail += 1
            msg = str(lr)
            body = f'<failure message={quoteattr(msg[:500])}>{escape(msg)}</failure>'
        cases.append(f'  <testcase classname={quoteattr(report.net_name)} name={quoteattr(lr.key)} time="0">'
                     f'{body}</testcase>')
    if report.output_problems:  # one more failing case: a net output with no counterpart
        nfail += 1
        msg = "; ".join(report.output_problems)
        cases.append(f'  <testcase classname={quoteattr(report.net_name)} name="net outputs" time="0">'
                     f'<failure message={quoteattr(msg[:500])}>{escape(msg)}</failure></testcase>')
    for st in report.stages or []:  # one case per stage of a chain: fails where the stage introduced a divergence
        nfail += bool(st["introduced"])
        msg = f"introduces {', '.join(st['introduced'])}" if st["introduced"] else ""
        body = f'<failure message={quoteattr(msg[:500])}>{escape(msg)}</failure>' if msg else ""
        cases.append(f'  <testcase classname={quoteattr(report.net_name)} name={quoteattr("stage " + st["kind"])} '
                     f'time="0">{body}</testcase>')
    head = (f'<?xml version="1.0" encoding="utf-8"?>\n<testsuites>\n<testsuite name="caffe-harness" '
            f'tests="{len(cases)}" failures="{nfail}" errors="0" skipped="0">')
    props = "".join(f'\n    <property name={quoteattr(k)} value={quoteattr(v)}/>'
                    for k, v in _artefact_properties(report))
    return (head + f"\n  <properties>{props}\n  </properties>\n" + "\n".join(cases)
            + "\n</testsuite>\n</testsuites>\n")


def _artefact_properties(report: Report) -> list[tuple[str, str]]:
    """What was compared, as (name, value): the artefact's kind and path (JUnit testsuite properties, the HTML
    header), the Keras backend and the comparison mode."""
    art = getattr(report, "artefact", None) or {}
    out = [("artefact.kind", str(art.get("kind") or "")), ("artefact.path", str(art.get("path") or ""))]
    if getattr(report, "backend", None):
        out.append(("backend", str(report.backend)))
    return out + [("mode", str(report.mode))]


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(report: Report) -> tuple[str | None, str | None]:
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except Exception:  # pragma: no cover - matplotlib missing
        return None, None
    names = [lr.caffe_layer for lr in report.layers]
    if not names:
        return None, None

    def series(attr: str) -> list[float]:
        out = []
        for lr in report.layers:
            r = getattr(lr, attr)
            v = r.rel_to_scale if r is not None else None
            out.append(max(v, 1e-12) if v is not None and math.isfinite(v) else float("nan"))
        return out

    fig, ax = plt.subplots(figsize=(min(13.0, max(6.0, 0.35 * len(names))), 3.6))  # at most 1170 px at 90 dpi
    x = list(range(len(names)))
    ax.semilogy(x, series("chained"), "o-", ms=3, label="chained max|err|/scale")
    ax.semilogy(x, series("isolated"), "s--", ms=3, label="isolated max|err|/scale")
    ax.axhline(2.0 ** -24, color="grey", lw=0.8, ls=":", label="float32 unit roundoff")
    step = max(1, math.ceil(len(names) / 40))  # at most 40 labels: every step-th layer named
    ax.set_xticks(x[::step])
    ax.set_xticklabels(names[::step], rotation=70, fontsize=7)
    ax.set_ylabel("relative error")
    ax.legend(fontsize=7, loc="upper left", framealpha=0.85)
    plot = _png(fig)
    heat = None
    fd = report.first_divergence
    if fd is not None:
        lr = next((l for l in report.layers if l.key == fd.key), None)
        r = None if lr is None or fd.mode == "structure" else lr.isolated if fd.mode == "isolated" else lr.chained
        if r is not None and r.abs_err_map is not None:
            fig, ax = plt.subplots(figsize=(4.5, 3.6))
            im = ax.imshow(r.abs_err_map, cmap="magma", interpolation="nearest")
            ax.set_title(f"{fd.caffe_layer}: max |error| over N,C", fontsize=9)
            ax.set_xlabel("W")
            ax.set_ylabel("H")
            fig.colorbar(im, ax=ax)
            heat = _png(fig)
    return plot, heat


_GRAPH_ROW, _GRAPH_COL, _NODE_W, _NODE_H = 34, 170, 158, 24


def _graph_layout(graph: list) -> tuple[dict[str, tuple[int, int]], list[tuple[str, str]]]:
    """Each Caffe layer at (row = its depth from the inputs, column = its rank among that depth), and the edges."""
    depth: dict[str, int] = {}
    producer: dict[str, str] = {}
    edges: list[tuple[str, str]] = []
    for name, _t, bottoms, tops in graph:
        srcs = [producer[b] for b in bottoms if b in producer]
        depth[name] = 1 + max((depth[p] for p in srcs), default=-1)
        edges += [(p, name) for p in dict.fromkeys(srcs)]
        for t in tops:
            producer[t] = name
    cols: dict[int, int] = {}
    pos = {}
    for name, *_ in graph:
        d = depth[name]
        pos[name] = (d, cols.get(d, 0))
        cols[d] = cols.get(d, 0) + 1
    return pos, edges


def _graph_svg(report: Report) -> str:
    """The net as an inline SVG DAG: each layer coloured by its isolated bound ratio (green well inside, amber near,
    red past the bound, grey unmatched), the first divergence outlined thick, every diagnosed layer dashed; a node
    links to its row of the table.  No script, no external resource."""
    if not report.graph:
        return ""
    e = html.escape
    pos, edges = _graph_layout(report.graph)
    row_of, res_of = {}, {}
    for i, lr in enumerate(report.layers):
        for n in lr.segment or (lr.caffe_layer,):
            row_of[n], res_of[n] = i, lr
    first = report.first_divergence.caffe_layer if report.first_divergence else None
    diagnosed = {d.caffe_layer for d in report.divergences}
    w = (max(c for _, c in pos.values()) + 1) * _GRAPH_COL + 20
    h = (max(r for r, _ in pos.values()) + 1) * _GRAPH_ROW + 20

    def xy(n: str) -> tuple[int, int]:
        r, c = pos[n]
        return 10 + c * _GRAPH_COL, 10 + r * _GRAPH_ROW

    parts = [f'<svg width="{w}" height="{h}" font-size="10" '
             f'font-family="sans-serif" role="img" aria-label="net graph">']
    for a, b in edges:
        (xa, ya), (xb, yb) = xy(a), xy(b)
        parts.append(f'<line x1="{xa + _NODE_W // 2}" y1="{ya + _NODE_H}" x2="{xb + _NODE_W // 2}" y2="{yb}" '
                     f'stroke="#999" stroke-width="1"/>')
    for name, typ, _b, _t in report.graph:
        x, y = xy(name)
        fill, tip = _node_colour(res_of.get(name))
        stroke = ' stroke="#000" stroke-width="3"' if name == first else (
            ' stroke="#b00" stroke-width="2" stroke-dasharray="4 2"' if name in diagnosed else ' stroke="#555"')
        label = e(f"{name[:20]} ({typ[:12]})")
        node = (f'<rect class="node" data-layer="{e(name)}" x="{x}" y="{y}" width="{_NODE_W}" height="{_NODE_H}" '
                f'rx="4" fill="{fill}"{stroke}><title>{e(name)} ({e(typ)}): {e(tip)}</title></rect>'
                f'<text x="{x + 4}" y="{y + 16}">{label}</text>')
        parts.append(f'<a href="#row-{row_of[name]}">{node}</a>' if name in row_of else node)
    parts.append("</svg>")
    return "".join(parts)


def _node_colour(lr: LayerResult | None) -> tuple[str, str]:
    if lr is None:
        return "#e0e0e0", "no Keras counterpart compared"
    r = lr.isolated if lr.isolated is not None else lr.chained
    ratio = r.bound_ratio if r is not None else None
    if r is None or ratio is None or not math.isfinite(ratio):
        return ("#f4a0a0", "failed") if not lr.passed else ("#c8e6c9", "passed")
    fill = "#f4a0a0" if not r.passed else "#ffe08a" if ratio > 0.5 else "#c8e6c9"
    return fill, f"isolated error / bound = {ratio:.3g}"


def to_html(report: Report) -> str:
    e = html.escape
    artefact = " &middot; ".join(f"{e(k)}: <code>{e(v) or '-'}</code>" for k, v in _artefact_properties(report))
    rows = []
    for i, (lr, up) in enumerate(zip(report.layers, _carrying(report))):
        cs, cv = _cell(lr.chained, up)
        if carried_shape(lr):
            cs, cv = "carried", "shape"
        is_, iv = _cell(lr.isolated)
        cls = "" if lr.passed else ' class="fail"'
        first = ' data-first="1"' if report.first_divergence and report.first_divergence.key == lr.key else ""
        g = lr.chained.growth if lr.chained is not None else None
        rows.append(f"<tr{cls}{first} id=\"row-{i}\"><td>{i}</td><td class=\"name\">{e(lr.key)}</td><td>{e(lr.layer_type)}</td>"
                    f"<td class=\"name\">{e(lr.keras_layer)}</td><td>{e(lr.matched_by)}</td>"
                    f"<td>{e('x'.join(map(str, lr.shape)))}</td><td>{cs}</td><td>{e(cv)}</td>"
                    f"<td>{e(fmt_number(g)) if g is not None else '-'}</td><td>{is_}</td><td>{e(iv)}</td></tr>")
    plot, heat = _plots(report)
    diag = ""
    fd = report.first_divergence
    if fd is not None:
        items = "".join(
            f"<li><b>{e(str(d['cause']))}</b> ({float(d['confidence']):.2f}): {e(str(d['explanation']))}"
            f"<br><i>fix:</i> {e(str(d['fix']))}</li>"
            for d in (cause_dict(c) for c in fd.diagnosis))
        diag = (f"<h2>First divergent layer: {e(fd.caffe_layer)} &harr; {e(fd.keras_layer)} ({e(fd.mode)})</h2>"
                f"<ol>{items}</ol>")
        if heat:
            diag += f'<img alt="error heat map" src="data:image/png;base64,{heat}">'
    verdict = e(verdict_text(report))
    unmatched = (f"<p>Unmatched Caffe: {e(', '.join(report.unmatched_caffe)) or 'none'}<br>"
                 f"Unmatched Keras: {e(', '.join(report.unmatched_keras)) or 'none'}</p>")
    img = (f'<img alt="error per layer" src="data:image/png;base64,{plot}">' if plot else
           '<p class="notice">The plots need matplotlib: install the report extra '
           '(<code>pip install "caffe-keras-harness[report]"</code>).</p>')
    graph = _graph_svg(report)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>caffe-harness: {e(report.net_name)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:2px 6px}} tr.fail td{{background:#fde0e0}} tr[data-first] td{{font-weight:bold}}
tr:target td{{outline:2px solid #1565c0}} img{{max-width:100%;height:auto}} .notice{{background:#fff3cd;padding:.5em}}
pre{{background:#f5f5f5;padding:.6em;white-space:pre-wrap;overflow-wrap:anywhere}}
.graph{{max-width:100%;max-height:70vh;overflow:auto;border:1px solid #ddd}}
td.name{{overflow-wrap:anywhere;min-width:8em}} .table{{max-width:100%;overflow-x:auto}}</style></head><body>
<h1>{'Equivalent' if report.equivalent else 'Not equivalent'}: {e(report.net_name)} vs {e(report.keras_name)}</h1>
<p class="artefact">{artefact}</p>
<pre>{verdict}</pre>
{diag}
<h2>Net</h2><div class="graph">{graph or '<p>No graph (the report was not made by compare).</p>'}</div>
<h2>Error per layer</h2>{img}
<h2>Layers</h2>
<div class="table"><table><tr><th>#</th><th>caffe blob</th><th>type</th><th>keras layer</th><th>matched by</th><th>shape</th>
<th>chained</th><th>max_abs (rel)</th><th>growth</th><th>isolated</th><th>max_abs (rel)</th></tr>
{''.join(rows)}</table></div>
{unmatched}
</body></html>
"""
