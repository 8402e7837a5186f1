"""From "layer X diverges" to the line that writes layer X: prototxt locations on a report, the diverging layers
with one verdict line each, and GitHub Actions workflow annotations.

The diverging layers (:func:`divergences`) are the first divergence and every other pair that fails in isolation
(its own error; pairs failing only chained carry an upstream error and are not annotated).  Each has a rule (the
cause code of its top cause, or ``diverges`` when it has none), its location and its verdict line
``file:line: layer: what``.  :mod:`.sarif` writes them as a SARIF log; :func:`github_annotations` as
``::error file=...,line=...,col=...,title=...::message`` lines, escaped as GitHub's toolkit escapes them
(``@actions/core`` ``issueCommand``: data ``%`` ``\\r`` ``\\n``; properties also ``:`` and ``,``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ...net import Net
from .report import Report
from .result import FirstDivergence, LayerResult, cause_dict

__all__ = ["Divergence", "attach_locations", "divergences", "github_annotations", "annotations_wanted",
           "relative_path", "DIVERGES"]

DIVERGES = "diverges"  # the rule of a diverging layer without a diagnosed cause


@dataclass(frozen=True)
class Divergence:
    caffe_layer: str
    key: str
    rule: str  # cause code of the top cause, or DIVERGES
    message: str  # the verdict line: "file:line: layer: what"
    title: str
    file: str | None = None
    line: int | None = None
    column: int | None = None


def attach_locations(report: Report, net: Net) -> Report:
    """Copy every compared Caffe layer's prototxt location (``Layer.location``) onto its result and onto the first
    divergence; record the net's source.  Returns ``report``."""
    where = {lay.name: lay.location for lay in net.layers if lay.location is not None}
    items: list[Any] = list(report.layers) + ([report.first_divergence] if report.first_divergence else [])
    for item in items:
        loc = where.get(item.caffe_layer)
        if loc is not None:
            item.file, item.line, item.column = loc.file, loc.line, loc.column
    report.net_source = net.source
    return report


def _place(layer: str, file: str | None, line: int | None) -> str:
    return f"{file}:{line}: {layer}" if line is not None else layer


def _first(report: Report, fd: FirstDivergence) -> Divergence:
    lr = next((x for x in report.layers if x.key == fd.key), None)
    typ = f" ({lr.layer_type})" if lr is not None and lr.caffe_layer == fd.caffe_layer else ""
    what = f"first divergent layer{typ} <-> Keras {fd.keras_layer or '(none)'!r} [{fd.mode}]"
    res = None if lr is None or fd.mode == "structure" else lr.isolated if fd.mode == "isolated" else lr.chained
    if res is not None:
        what += f": {res}"
    rule = DIVERGES
    if fd.diagnosis:
        top = cause_dict(fd.diagnosis[0])
        rule = str(top["cause"])
        what += f"; likely cause {rule} ({float(top['confidence']):.2f})"
        what += f"; fix: {top['fix']}" if top.get("fix") else ""
    return Divergence(fd.caffe_layer, fd.key, rule, f"{_place(fd.caffe_layer, fd.file, fd.line)}: {what}",
                      f"caffe-harness: {fd.caffe_layer} diverges ({rule})", fd.file, fd.line, fd.column)


def _isolated(lr: LayerResult) -> Divergence:
    span = "" if len(lr.segment) < 2 else f" (Keras layer computes {' + '.join(lr.segment)})"
    what = f"fails in isolation ({lr.layer_type}) <-> Keras {lr.keras_layer!r}{span}: {lr.isolated}"
    return Divergence(lr.caffe_layer, lr.key, DIVERGES, f"{_place(lr.caffe_layer, lr.file, lr.line)}: {what}",
                      f"caffe-harness: {lr.caffe_layer} diverges", lr.file, lr.line, lr.column)


def divergences(report: Report) -> list[Divergence]:
    """The first divergence, then every other pair failing in isolation, in Caffe execution order."""
    fd = report.first_divergence
    out = [_first(report, fd)] if fd is not None else []
    seen = {d.key for d in out}
    for lr in report.layers:
        if lr.isolated is not None and not lr.isolated.passed and lr.key not in seen:
            out.append(_isolated(lr))
    return out


def relative_path(file: str, base: str | os.PathLike | None = None) -> str:
    """``file`` relative to ``base`` (default: the current folder), with ``/`` separators, when it lies below it;
    else ``file`` as it is."""
    p = Path(file)
    try:
        return p.resolve().relative_to(Path(base or os.getcwd()).resolve()).as_posix()
    except (ValueError, OSError):
        return p.as_posix()


def _escape_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(s: str) -> str:
    return _escape_data(s).replace(":", "%3A").replace(",", "%2C")


def github_annotations(report: Report, environ: Mapping[str, str] | None = None) -> list[str]:
    """One ``::error`` workflow command per diverging layer; ``file`` is relative to ``GITHUB_WORKSPACE`` (the
    checkout, which is what GitHub resolves it against) or else to the current folder."""
    env = os.environ if environ is None else environ
    out = []
    for d in divergences(report):
        props = []
        if d.file is not None and not d.file.startswith("<"):
            props.append(f"file={_escape_property(relative_path(d.file, env.get('GITHUB_WORKSPACE') or None))}")
            props += [f"line={d.line}", f"col={d.column}"]
        props.append(f"title={_escape_property(d.title)}")
        out.append(f"::error {','.join(props)}::{_escape_data(d.message)}")
    return out


def annotations_wanted(choice: str | None, environ: Mapping[str, str] | None = None) -> bool:
    """``"github"``: yes; ``"none"``: no; None (not given): when running in GitHub Actions (``GITHUB_ACTIONS=true``)."""
    if choice is not None:
        return choice == "github"
    env = os.environ if environ is None else environ
    return env.get("GITHUB_ACTIONS", "").lower() == "true"
