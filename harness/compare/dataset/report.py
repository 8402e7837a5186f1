"""The report of a dataset run (``check --dataset``): verdict, table and JSON over the :class:`~.aggregate.Aggregate`
of every batch.  The JSON layout is documented in the README ("Dataset runs")."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .aggregate import QUANTILE, QUANTILE_METHOD, Aggregate, ClassAgg, LayerAgg, ModeAgg
from ..reports.result import json_float, fmt_number


@dataclass
class DatasetReport:
    """Truthy when every matched layer passed on every sample seen, the structure matched, the run was not
    interrupted and no layer regressed against the baseline."""

    agg: Aggregate
    net_name: str
    keras_name: str
    mode: str
    dataset: dict[str, Any]  # {path, kind, samples (seen), total, batch}
    sample_name: Callable[[int], str] = field(default=lambda i: "", repr=False)
    interrupted: bool = False
    workers: Any = None  # None (this process), an int (LocalCluster workers) or the scheduler address
    seconds: float = 0.0
    load_seconds: float = 0.0  # of ``seconds``: loading the net and the model in this process (0 on Dask: workers)
    worst_sample_report: Any = None  # the single-sample Report of the first failing layer's worst sample
    layer0_diagnosis: Any = None  # images: layer 0 of the image where it was worst (harness.compare.layer0.preprocessing.Layer0)
    baseline: dict[str, Any] | None = None  # harness.compare.dataset.baseline.check_baseline / write outcome
    notes: list[str] = field(default_factory=list)

    @property
    def equivalent(self) -> bool:
        return self.agg.equivalent and not self.interrupted and not self.regressed

    @property
    def regressed(self) -> bool:
        return bool(self.baseline and self.baseline.get("regressions"))

    def __bool__(self) -> bool:
        return self.equivalent

    def failing(self) -> list[LayerAgg]:
        return [la for la in self.agg.in_order() if not la.passed]

    def first_classifier(self) -> ClassAgg | None:
        return next(iter(self.agg.classes.values()), None)

    @property
    def samples_per_s(self) -> float | None:
        """Samples compared per second, loading the net and the model in this process excluded (on Dask the
        workers' loading and the cluster's start are included)."""
        t = self.seconds - self.load_seconds
        return self.agg.samples / t if t > 0 else None

    # ----------------------------------------------------------------------------------------------- JSON

    def to_dict(self) -> dict[str, Any]:
        c = self.first_classifier()
        first = self.failing()[0].caffe_layer if self.failing() else None
        return {
            "kind": "dataset",
            "equivalent": self.equivalent,
            "interrupted": self.interrupted,
            "net": self.net_name, "keras_model": self.keras_name, "mode": self.mode,
            "dataset": dict(self.dataset, samples=self.agg.samples),
            "quantile": {"q": QUANTILE, "method": QUANTILE_METHOD},
            "first_failing_layer": first,
            "layers": [self._layer_dict(la) for la in self.agg.in_order()],
            "output_problems": list(self.agg.problems),
            "classification": [_class_dict(x) for x in self.agg.classes.values()],
            "top1_agreement": _class_dict(c)["top1_agreement"] if c else None,
            "top5_agreement": _class_dict(c)["top5_agreement"] if c else None,
            "max_probability_gap": json_float(c.gap) if c else None,
            "worst_sample_report": (self.worst_sample_report.to_dict() if self.worst_sample_report is not None
                                    else None),
            "layer0_diagnosis": self.layer0_diagnosis.to_dict() if self.layer0_diagnosis is not None else None,
            "baseline": self.baseline,
            "workers": self.workers,
            "seconds": round(self.seconds, 3), "load_seconds": round(self.load_seconds, 3),
            "cpu_seconds": round(self.agg.cpu_seconds, 3),
            "samples_per_s": None if self.samples_per_s is None else round(self.samples_per_s, 3),
            "notes": list(self.notes),
            "harness_version": _version(),
        }

    def _layer_dict(self, la: LayerAgg) -> dict[str, Any]:
        return {"caffe_layer": la.caffe_layer, "caffe_top": la.caffe_top, "caffe_key": la.key,
                "caffe_type": la.layer_type, "keras_layer": la.keras_layer, "passed": la.passed,
                "chained": self._mode_dict(la.modes.get("chained")),
                "isolated": self._mode_dict(la.modes.get("isolated"))}

    def _mode_dict(self, m: ModeAgg | None) -> dict[str, Any] | None:
        if m is None:
            return None
        has = m.worst_sample is not None
        return {"passed": m.passed, "samples": m.samples, "samples_failed": m.samples_failed,
                "max_abs": json_float(m.max_abs) if has else None, "max_abs_sample": m.max_abs_sample,
                "bound_ratio": json_float(m.bound_ratio) if has else None, "worst_sample": m.worst_sample,
                "worst_sample_name": self.sample_name(m.worst_sample) if has else None,
                "quantile": {"q": QUANTILE, "bound_ratio": json_float(m.ratio_sketch.quantile(QUANTILE)),
                             "max_abs": json_float(m.abs_sketch.quantile(QUANTILE))},
                "error": m.error}

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    # ----------------------------------------------------------------------------------------------- text

    def where(self, i: int | None) -> str:
        if i is None:
            return "-"
        name = self.sample_name(i)
        return f"sample {i}" + (f" ({name})" if name else "")

    def verdict(self) -> str:
        a = self.agg
        total = self.dataset.get("total", a.samples)
        over = (f"over {a.samples} sample(s) of {self.dataset.get('path')!r} (batch {self.dataset.get('batch')}, "
                f"{self.mode})")
        lines = []
        if self.interrupted:
            lines.append(f"INTERRUPTED after {a.samples} of {total} samples: what was seen so far:")
        lines += self._layer_lines(over)
        lines += [f"Output not matched: {msg}" for msg in a.problems]
        lines += self._class_lines()
        if self.worst_sample_report is not None:
            lines.append(f"The first failing layer's worst sample alone (--input of that sample):")
            lines += ["  " + ln for ln in self.worst_sample_report.verdict().splitlines()]
        if self.layer0_diagnosis is not None:
            l0 = self.layer0_diagnosis
            lines.append(f"Layer 0 of the image where it was worst ({', '.join(l0.images)}): Caffe "
                         f"{l0.transform.describe()} vs Keras {l0.keras_side.describe()}")
            for c in l0.diagnosis:
                lines.append(f"  - {c.cause} (confidence {float(c.confidence):.2f}): {c.explanation}")
                if c.fix:
                    lines.append(f"    fix: {c.fix}")
        lines += _baseline_lines(self.baseline)
        return "\n".join(lines)

    def _layer_lines(self, over: str) -> list[str]:
        a = self.agg
        n = len(a.layers)
        fails = self.failing()
        if not n:
            return [f"NOT EQUIVALENT {over}: no layers were compared (use --map CAFFE=KERAS)"]
        if not fails:
            worst = max(a.in_order(), key=lambda la: la.worst().bound_ratio)
            w = worst.worst()
            head = "EQUIVALENT" if not a.problems else "NOT EQUIVALENT (structure)"
            return [f"{head} {over}: every one of {n} matched layer output(s) within its float32 bound on every "
                    f"sample; closest to its bound: {worst.caffe_layer!r} ({worst.layer_type}) ratio "
                    f"{fmt_number(w.bound_ratio)} at {self.where(w.worst_sample)}, p99 "
                    f"{fmt_number(w.ratio_sketch.quantile(QUANTILE))}."]
        lines = [f"NOT EQUIVALENT {over}: {len(fails)} of {n} matched layer output(s) exceed their bound."]
        for i, la in enumerate(fails[:8]):
            lines.append(("First failing layer: " if i == 0 else "Also failing: ") + self._fail_line(la))
        if len(fails) > 8:
            lines.append(f"  ... and {len(fails) - 8} more (see the table / --json)")
        return lines

    def _fail_line(self, la: LayerAgg) -> str:
        parts = []
        for mode, m in la.modes.items():
            if m.passed:
                continue
            if m.error is not None:
                parts.append(f"[{mode}] {m.error}")
                continue
            parts.append(f"[{mode}] {m.samples_failed} of {m.samples} samples out of bound, worst bound ratio "
                         f"{fmt_number(m.bound_ratio)} at {self.where(m.worst_sample)} (p99 "
                         f"{fmt_number(m.ratio_sketch.quantile(QUANTILE))}), max |error| {fmt_number(m.max_abs)} at "
                         f"{self.where(m.max_abs_sample)}")
        return f"Caffe {la.caffe_layer!r} ({la.layer_type}) <-> Keras {la.keras_layer!r}: " + "; ".join(parts)

    def _class_lines(self) -> list[str]:
        out = []
        for c in self.agg.classes.values():
            d = _class_dict(c)
            t5 = f", top-5 {d['top5_agreement']:.2%}" if d["top5_agreement"] is not None else ""
            out.append(f"Output {c.output!r} ({c.kind}, {c.classes} classes): top-1 agreement "
                       f"{d['top1_agreement']:.2%} ({c.top1}/{c.samples}){t5}; largest probability gap "
                       f"{fmt_number(c.gap)} at {self.where(c.gap_sample)}")
        return out

    def table(self) -> str:
        rows = [("layer", "type", "keras", "mode", "samples failed", "worst ratio", "at", "p99 ratio", "max |err|")]
        for la in self.agg.in_order():
            for mode, m in la.modes.items():
                rows.append((la.caffe_layer, la.layer_type, la.keras_layer, mode, f"{m.samples_failed}/{m.samples}",
                             "error" if m.error else fmt_number(m.bound_ratio), "-" if m.worst_sample is None
                             else str(m.worst_sample), fmt_number(m.ratio_sketch.quantile(QUANTILE)),
                             "-" if m.error else fmt_number(m.max_abs)))
        widths = [min(28, max(len(r[i]) for r in rows)) for i in range(len(rows[0]))]
        return "".join("  ".join(c[:w].ljust(w) for c, w in zip(r, widths)).rstrip() + "\n" for r in rows)


def _class_dict(c: ClassAgg) -> dict[str, Any]:
    return {"output": c.output, "kind": c.kind, "classes": c.classes, "samples": c.samples,
            "top1_agreement": c.top1 / c.samples if c.samples else None,
            "top5_agreement": (c.top5 / c.samples) if c.top5 is not None and c.samples else None,
            "max_probability_gap": json_float(c.gap) if c.gap_sample is not None else None, "gap_sample": c.gap_sample}


def _baseline_lines(b: dict[str, Any] | None) -> list[str]:
    if not b:
        return []
    rule = (f"a layer fails when its worst error/bound ratio exceeds {b['factor']:g} x max(its baseline, "
            f"{b['floor']:g})")
    if b["status"] in ("written", "updated"):
        return [f"Baseline {b['path']!r} {b['status']} ({b['layers']} layer(s)); later runs: {rule}."]
    regs = b.get("regressions") or []
    if not regs:
        return [f"Baseline {b['path']!r}: no layer grew past its baseline ({rule})."] + \
            [f"  notice: {n}" for n in b.get("notices", [])]
    out = [f"BASELINE REGRESSION against {b['path']!r}: {len(regs)} layer(s) ({rule}):"]
    for r in regs:
        if r.get("now") is None:
            out.append(f"  - {r['layer']!r} [{r['mode']}]: {r['why']}")
        else:
            out.append(f"  - {r['layer']!r} [{r['mode']}]: bound ratio {fmt_number(r['now'])} > {b['factor']:g} x "
                       f"{fmt_number(max(r['baseline'], b['floor']))} (baseline {fmt_number(r['baseline'])})")
    out += [f"  notice: {n}" for n in b.get("notices", [])]
    return out


def _version() -> str:
    from ... import __version__

    return __version__
