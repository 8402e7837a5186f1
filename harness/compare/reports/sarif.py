"""SARIF 2.1.0 log of a comparison (``caffe-harness check --sarif FILE``): code-scanning tools (GitHub code scanning,
IDE SARIF viewers) show each diverging layer on the prototxt line that writes it.

One ``run`` whose ``tool.driver`` is ``caffe-harness`` (its version) with one rule per cause code
(:data:`harness.compare.diagnose.CAUSES`, short description from there) plus ``diverges`` (a diverging layer without
a diagnosed cause).  One ``result`` per diverging layer (:func:`harness.compare.reports.annotations.divergences`: the first
divergence and every other pair failing in isolation): ``ruleId`` the cause code of its top cause (or ``diverges``),
``level`` ``error``, ``message.text`` its verdict line, and a ``physicalLocation`` (``artifactLocation.uri``
relative to the current folder when the prototxt lies below it, else an absolute ``file:`` URI; ``region``
``startLine``/``startColumn`` of the layer's block; columns count Unicode code points: ``columnKind``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ... import __version__
from ..._atomic import atomic_write
from .annotations import DIVERGES, Divergence, divergences
from .causes import CAUSES
from .report import Report

__all__ = ["SARIF_SCHEMA", "to_sarif", "write_sarif"]

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
_DIVERGES_TEXT = "a layer's output differs from Caffe's beyond the float32 bound, with no diagnosed cause"


def _rules() -> list[dict[str, Any]]:
    items = [(DIVERGES, _DIVERGES_TEXT)] + [(code, text) for code, text in CAUSES.items() if code != DIVERGES]
    return [{"id": code, "shortDescription": {"text": text}, "defaultConfiguration": {"level": "error"}}
            for code, text in items]


def artifact_uri(file: str, base: str | os.PathLike | None = None) -> str:
    """``file`` as a URI reference: relative to ``base`` (default: the current folder) when it lies below it, else
    an absolute ``file:`` URI."""
    p = Path(file).resolve()
    try:
        return quote(p.relative_to(Path(base or os.getcwd()).resolve()).as_posix())
    except ValueError:
        return p.as_uri()


def _result(d: Divergence, index: dict[str, int], base: str | os.PathLike | None) -> dict[str, Any]:
    rule = d.rule if d.rule in index else DIVERGES
    out: dict[str, Any] = {"ruleId": rule, "ruleIndex": index[rule], "level": "error", "message": {"text": d.message}}
    if d.file is not None and not d.file.startswith("<"):
        phys: dict[str, Any] = {"artifactLocation": {"uri": artifact_uri(d.file, base)}}
        if d.line is not None:
            phys["region"] = {"startLine": d.line, "startColumn": d.column or 1}
        out["locations"] = [{"physicalLocation": phys}]
    return out


def to_sarif(report: Report, base: str | os.PathLike | None = None) -> dict[str, Any]:
    """The SARIF 2.1.0 log of ``report`` as a dict (see the module docstring)."""
    rules = _rules()
    index = {r["id"]: i for i, r in enumerate(rules)}
    driver = {"name": "caffe-harness", "version": __version__, "semanticVersion": __version__, "rules": rules}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0",
            "runs": [{"tool": {"driver": driver}, "columnKind": "unicodeCodePoints",
                      "results": [_result(d, index, base) for d in divergences(report)]}]}


def write_sarif(report: Report, path: str | os.PathLike, base: str | os.PathLike | None = None) -> None:
    """Write :func:`to_sarif` to ``path`` atomically (a missing folder is a HarnessError naming it)."""
    atomic_write(path, json.dumps(to_sarif(report, base), indent=1) + "\n")
