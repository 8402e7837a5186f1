"""Error-profile baselines (``check --dataset ... --baseline FILE``), pytest-regressions style: the first run writes
the per-layer error profile, later runs are held against it, ``--update-baseline`` rewrites it.

The file (JSON, two-space indent, keys in a fixed order, numbers to 6 significant digits so that a pull request's
diff shows real changes only)::

    {"format": "caffe-harness-baseline/1", "harness_version": "0.1.0",
     "net": {"name", "prototxt", "sha256"}, "weights": {"path", "sha256"} | {"seed"},
     "model": {"kind": "converted" | "keras", "path", "sha256"},
     "dataset": {"path", "samples", "batch"}, "mode": "chained", "quantile": 0.99,
     "rule": {"factor": 2.0, "floor": 0.01},
     "layers": {"<caffe layer>/<top>": {"caffe_layer", "type",
                 "chained": {"max_abs", "bound_ratio", "p99_bound_ratio", "p99_max_abs", "worst_sample"},
                 "isolated": {...}}}}

The rule: a layer regresses when its worst error/bound ratio over the dataset exceeds ``factor`` x max(its
baseline ratio, ``floor``) (the floor: a ratio below 1% of the float32 bound is rounding noise whose growth says
nothing; ``--baseline-factor`` sets the factor).  A layer of the baseline that this run did not compare regresses
too; a layer new in this run is a notice.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..._atomic import atomic_write
from ...errors import HarnessError
from .aggregate import QUANTILE
from .report import DatasetReport

FORMAT = "caffe-harness-baseline/1"
FLOOR = 0.01
DEFAULT_FACTOR = 2.0


def _g(v: float | None) -> float | None:
    import math

    if v is None or not math.isfinite(v):
        return None
    return float(f"{v:.6g}")


def file_id(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    p = Path(path)
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"path": p.name, "sha256": h.hexdigest()}


def identity(prototxt: str, weights: str | None, keras: str | None, seed: int, net_name: str) -> dict[str, Any]:
    """The net / weights / model identity a baseline records (file names and SHA-256 of their bytes)."""
    from ... import __version__

    return {"harness_version": __version__, "net": dict(name=net_name, **(file_id(prototxt) or {})),
            "weights": file_id(weights) or {"seed": seed},
            "model": dict(kind="keras", **file_id(keras)) if keras else {"kind": "converted"}}


def apply_baseline(report: DatasetReport, path: str, factor: float | None, update: bool,
                   ident: dict[str, Any]) -> None:
    """Hold ``report`` against the baseline at ``path``, or write it there (when it does not exist, or ``update``;
    never from an interrupted run); the outcome goes to ``report.baseline``."""
    factor = factor or DEFAULT_FACTOR
    exists = Path(path).is_file()
    if exists and not update:
        report.baseline = check_baseline(path, read_baseline(path), report, factor, ident)
        return
    if report.interrupted or not report.agg.samples:
        report.notes.append("notice: --baseline: an interrupted run writes no baseline")
        return
    write_baseline(path, profile(report, ident, factor))
    report.baseline = {"path": path, "status": "updated" if exists else "written", "factor": factor, "floor": FLOOR,
                       "layers": len(report.agg.layers), "regressions": [], "notices": []}


def profile(report: DatasetReport, identity: dict[str, Any], factor: float) -> dict[str, Any]:
    """The baseline document of a run (``identity``: ``net``, ``weights``, ``model`` entries)."""
    layers = {}
    for la in report.agg.in_order():
        entry: dict[str, Any] = {"caffe_layer": la.caffe_layer, "type": la.layer_type}
        for mode, m in la.modes.items():
            entry[mode] = {"max_abs": _g(m.max_abs), "bound_ratio": _g(m.bound_ratio),
                           "p99_bound_ratio": _g(m.ratio_sketch.quantile(QUANTILE)),
                           "p99_max_abs": _g(m.abs_sketch.quantile(QUANTILE)), "worst_sample": m.worst_sample}
        layers[la.key] = entry
    ds = report.dataset
    return {"format": FORMAT, "harness_version": identity.get("harness_version"),
            "net": identity.get("net"), "weights": identity.get("weights"), "model": identity.get("model"),
            "dataset": {"path": Path(str(ds.get("path"))).name, "samples": report.agg.samples,
                        "batch": ds.get("batch")},
            "mode": report.mode, "quantile": QUANTILE, "rule": {"factor": factor, "floor": FLOOR}, "layers": layers}


def write_baseline(path: str, doc: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")


def read_baseline(path: str) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise HarnessError(f"--baseline {path!r}: cannot read it ({type(e).__name__}: {e})") from None
    except json.JSONDecodeError as e:
        raise HarnessError(f"--baseline {path!r}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("layers"), dict):
        raise HarnessError(f"--baseline {path!r}: not a caffe-harness baseline (expected \"format\": {FORMAT!r} and "
                           f"a \"layers\" object; write one with --update-baseline)")
    return doc


def check_baseline(path: str, doc: dict[str, Any], report: DatasetReport, factor: float,
                   identity: dict[str, Any]) -> dict[str, Any]:
    """The outcome of holding ``report`` against the baseline ``doc``: ``{path, status, factor, floor,
    regressions: [{layer, key, mode, baseline, now, why}], notices}``."""
    regs, notices = [], []
    now = report.agg.layers
    for key, entry in doc["layers"].items():
        la = now.get(key)
        for mode in ("chained", "isolated"):
            base = entry.get(mode) if isinstance(entry, dict) else None
            if not isinstance(base, dict):
                continue
            m = la.modes.get(mode) if la is not None else None
            name = entry.get("caffe_layer", key)
            if la is not None and m is None:  # this run's --mode does not compare it: nothing to hold against
                note = f"{mode} comparisons are not run in this run (--mode {report.mode}); the baseline has them"
                if note not in notices:
                    notices.append(note)
                continue
            if m is None or m.worst_sample is None:
                why = ("not compared in this run" if m is None else f"could not be compared: {m.error}")
                regs.append({"layer": name, "key": key, "mode": mode, "baseline": base.get("bound_ratio"),
                             "now": None, "why": why})
                continue
            b = base.get("bound_ratio")
            b = 0.0 if b is None else float(b)
            if m.bound_ratio > factor * max(b, FLOOR):
                regs.append({"layer": name, "key": key, "mode": mode, "baseline": b, "now": float(m.bound_ratio),
                             "why": "grew past the factor"})
    for key in report.agg.order:
        if key not in doc["layers"]:
            notices.append(f"layer {now[key].caffe_layer!r} is not in the baseline (new in this run)")
    notices += _identity_notices(doc, report, identity)
    return {"path": path, "status": "regressed" if regs else "passed", "factor": factor, "floor": FLOOR,
            "regressions": regs, "notices": notices}


def _identity_notices(doc: dict[str, Any], report: DatasetReport, identity: dict[str, Any]) -> list[str]:
    out = []
    for what in ("net", "weights", "model"):
        a, b = doc.get(what), identity.get(what)
        if isinstance(a, dict) and isinstance(b, dict) and a.get("sha256") != b.get("sha256"):
            out.append(f"the {what} differs from the one the baseline was recorded with ({a.get('path')!r})")
    ds = doc.get("dataset") or {}
    if ds.get("samples") not in (None, report.agg.samples) and not report.interrupted:
        out.append(f"the baseline was recorded over {ds.get('samples')} samples, this run saw {report.agg.samples}")
    return out
