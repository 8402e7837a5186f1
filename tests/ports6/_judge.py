"""Reading ``check --json`` reports of the ports6 corpus: the flags of each artefact kind, pairing coverage, stages,
and the messages a failing assertion prints (verdict, first divergence, causes, coverage)."""

from __future__ import annotations

import re

from . import _nets as N

KINDS = ["onnx", "saved_model", "tflite"]
FLAG = {"onnx": "--onnx", "saved_model": "--saved-model", "tflite": "--tflite"}
# A fix that widens the tolerance hides a real bug (issue 20, "Errors that grow are not rounding").
WIDER_TOLERANCE = re.compile(r"--[ar]tol|wider tolerance|tolerance file|--tolerances", re.I)


def summary(rc, rep, err: str) -> str:
    """One paragraph for an assertion message: exit code, verdict, first divergence with its causes, coverage."""
    if rep is None:
        return f"exit {rc}, no JSON report; stderr: {err.strip()[-800:]}"
    fd = rep.get("first_divergence") or {}
    causes = [(d.get("cause"), round(d.get("confidence") or 0, 2)) for d in fd.get("diagnosis") or []]
    failed = [lay["caffe_layer"] for lay in rep.get("layers", [])
              if (lay.get("chained") or {}).get("passed") is False]
    return (f"exit {rc}, equivalent={rep.get('equivalent')}, first divergence {fd.get('caffe_layer')!r} "
            f"<-> {fd.get('keras_layer')!r} causes {causes}, failing {failed}, coverage {rep.get('coverage')}, "
            f"unmatched {rep.get('unmatched')}, stages {rep.get('stages')}; stderr: {err.strip()[-400:]}")


def coverage(rep) -> float | None:
    """Pairing coverage as issue 20 defines it: Caffe records paired with a tensor of the artefact / records
    (JSON ``coverage``: ``{"paired", "records", ...}``); None when the report has none."""
    c = rep.get("coverage") if rep else None
    if not (isinstance(c, dict) and {"paired", "records"} <= c.keys() and c["records"]):
        return None
    return c["paired"] / c["records"]


def assert_coverage(rep, msg: str, at_least: float = 0.95) -> None:
    cov = coverage(rep)
    assert cov is not None, f"the JSON report has no pairing coverage (records paired / records): {msg}"
    assert cov >= at_least, f"pairing coverage {cov:.2f} < {at_least}: {msg}"


def layer_names(x) -> set[str]:
    """The Caffe layer names a JSON value names: a name, a first_divergence-like object, or a list of them."""
    if x is None:
        return set()
    if isinstance(x, str):
        return {x}
    if isinstance(x, dict):
        return {x[k] for k in ("caffe_layer", "layer") if isinstance(x.get(k), str)}
    return set().union(*(layer_names(v) for v in x)) if isinstance(x, (list, tuple)) else set()


def stages_by_kind(rep) -> dict[str, dict]:
    stages = rep.get("stages")
    assert isinstance(stages, list) and stages, f"the JSON report has no stages: {stages!r}"
    return {s.get("kind"): s for s in stages}


def top_cause(rep) -> str | None:
    diag = (rep.get("first_divergence") or {}).get("diagnosis") or []
    return diag[0]["cause"] if diag else None


def check_kind(corpus, check, case: str, kind: str):
    """``check NET --weights W --inputs X --json F --<kind> ARTEFACT`` on the case's artefact of that kind."""
    return check(N.case_key(case)[0], FLAG[kind], corpus.artefact(case, kind))


def check_chain(corpus, check, case: str):
    """``check NET ... --onnx a.onnx --saved-model DIR --tflite m.tflite``: the whole chain in one run."""
    flags = []
    for kind in KINDS:
        flags += [FLAG[kind], corpus.artefact(case, kind)]
    return check(N.case_key(case)[0], *flags)


def assert_equivalent(rc, rep, err, kind: str) -> None:
    msg = summary(rc, rep, err)
    assert rc == 0 and rep is not None and rep["equivalent"] is True, msg
    assert rep["first_divergence"] is None, msg
    assert rep["artefact"]["kind"] == kind, msg
    assert_coverage(rep, msg)


def assert_named(rc, rep, err, layer: str, cause: str) -> None:
    msg = summary(rc, rep, err)
    assert rc == 1 and rep is not None and rep["equivalent"] is False, msg
    assert rep["first_divergence"]["caffe_layer"] == layer, msg
    assert top_cause(rep) == cause, msg
