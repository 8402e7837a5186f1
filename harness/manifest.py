"""Equivalence manifests: the TOML files the pytest plugin (``harness_pytest``) collects, one test item per layer.

Manifest format (paths relative to the manifest)::

    prototxt = "deploy.prototxt"
    weights = "weights.caffemodel"      # optional: seeded random weights
    keras = "model.keras"               # or "convert" (default): convert the net with the harness
    inputs = "inputs.npz"               # optional: seeded standard-normal inputs
    seed = 0
    mode = "both"                       # both | chained | isolated
    atol = 1e-5                         # optional global override (with rtol)
    [map]                               # optional: caffe layer (or layer/top) = keras layer
    conv1 = "conv2d"
    [tolerances.layers.fc8]
    rtol = 1e-4
    reason = "fc8 weights were re-quantised"
    dataset = "val.npz"                 # optional: compare over a dataset (.npz or folder of .npy) in batches
    batch = 16                          #   samples per batch (default 16)
    baseline = "profile.json"           #   optional: the error-profile baseline (written when missing)
    baseline_factor = 2.0               #   growth of a layer's worst error/bound ratio that fails

Several checks in one file: ``[[check]]`` tables with the same keys plus ``name``.

This module holds what the plugin needs from the harness, so that the plugin itself is only pytest glue:
:func:`read_checks` (parse and validate a manifest), :func:`prepare` (the net, the Keras model and the inputs of one
check), :func:`layer_items` (the item names, in Caffe execution order) and :func:`failure_text` (what a failing item
prints).  Importing it imports only the standard library; NumPy, Keras and TensorFlow come with :func:`prepare`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from .errors import HarnessError

__all__ = ["KEYS", "OUTPUTS", "ManifestError", "Prepared", "read_checks", "resolve", "prepare", "layer_items",
           "failure_text", "dataset_report", "dataset_failure_text"]

KEYS = frozenset({"name", "prototxt", "weights", "keras", "inputs", "seed", "mode", "atol", "rtol", "map",
                  "tolerances", "dataset", "batch", "baseline", "baseline_factor"})
OUTPUTS = "<net outputs>"  # the key of the item that fails when a net output has no counterpart


class ManifestError(HarnessError):
    """A manifest that cannot be read or checked (the message starts with the manifest's path)."""


class Prepared(NamedTuple):
    net: Any
    model: Any
    inputs: dict | None


def _load_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"{path}: invalid TOML: {e}") from None


def read_checks(path: str | Path) -> list[dict]:
    """The checks of a manifest, each a dict of manifest keys with ``name`` ("" for a file without ``[[check]]``)."""
    data = _load_toml(Path(path))
    if "check" in data:
        extra = set(data) - {"check"}
        if extra:
            raise ManifestError(f"{path}: with [[check]] tables no top-level keys are allowed ({sorted(extra)})")
        checks = list(data["check"])
        names = [c.get("name") for c in checks]
        if any(not isinstance(n, str) or not n for n in names) or len(set(names)) != len(names):
            raise ManifestError(f"{path}: every [[check]] needs a unique non-empty name (got {names})")
    else:
        checks = [dict(data, name=data.get("name", ""))]
    for c in checks:
        unknown = set(c) - KEYS
        if unknown:
            raise ManifestError(f"{path}: unknown key(s) {sorted(unknown)} (allowed: {', '.join(sorted(KEYS))})")
        if "prototxt" not in c:
            raise ManifestError(f"{path}: 'prototxt' is required")
        _check_dataset_keys(path, c)
    return checks


def _check_dataset_keys(path: str | Path, c: dict) -> None:
    if "dataset" in c and "inputs" in c:
        raise ManifestError(f"{path}: 'dataset' and 'inputs' exclude each other (a dataset run reads its samples)")
    for k in ("batch", "baseline", "baseline_factor"):
        if k in c and "dataset" not in c:
            raise ManifestError(f"{path}: {k!r} needs 'dataset'")
    b = c.get("batch", 1)
    if not isinstance(b, int) or isinstance(b, bool) or b <= 0:
        raise ManifestError(f"{path}: 'batch' must be a positive integer (got {b!r})")
    f = c.get("baseline_factor", 2.0)
    if not isinstance(f, (int, float)) or isinstance(f, bool) or not f > 1:
        raise ManifestError(f"{path}: 'baseline_factor' must be a number greater than 1 (got {f!r})")


def resolve(check: dict, path: str | Path) -> dict:
    """``check`` with its file paths made absolute (relative to the manifest at ``path``)."""
    base = Path(path).parent
    out = dict(check)
    for k in ("prototxt", "weights", "inputs", "dataset", "baseline"):
        if out.get(k):
            out[k] = str((base / out[k]).resolve())
    if out.get("keras") and out["keras"] != "convert":
        out["keras"] = str((base / out["keras"]).resolve())
    return out


def prepare(check: dict) -> Prepared:
    """(net, Keras model, inputs) of a resolved check: the net with its weights (seeded random ones, ``seed``, when
    the manifest names none), the Keras model converted or loaded in safe mode, the ``inputs`` npz (None: seeded)."""
    from .caffe import load_net
    from .compare import load_keras_model
    from .weights import random_weights

    net = load_net(check["prototxt"], weights=check.get("weights"))
    if not net.has_weights:
        net = random_weights(net, int(check.get("seed", 0)))
    keras_spec = check.get("keras", "convert")
    if keras_spec in (None, "convert"):
        from .convert import convert

        model = convert(net)
    else:
        model = load_keras_model(keras_spec)
    inputs = None
    if check.get("inputs"):
        import numpy as np

        with np.load(check["inputs"], allow_pickle=False) as z:
            inputs = {k: z[k] for k in z.files}
    return Prepared(net, model, inputs)


def _top_shapes(net: Any) -> dict[str, tuple[int, ...]]:
    from .shapes import infer_shapes

    try:
        ns = infer_shapes(net)
    except Exception:  # noqa: BLE001 - matching works without shapes (by name/mapping)
        return {}
    return {f"{lay.name}/{top}": tuple(s) for lay, ls in zip(net.layers, ns.layers)
            for top, s in zip(lay.tops, ls.top_shapes)}


def layer_items(prepared: Prepared, user_map: Any = None) -> list[tuple[str, str]]:
    """``(item name, Caffe key)`` per matched Caffe layer output, in Caffe execution order, named after the span the
    pair covers (``conv1``; ``ip1+relu1`` for a Dense with a fused ReLU, ``bn1+scale1`` for one BatchNormalization;
    ``<layer>/<top>`` for a layer with several tops), then ``("net outputs", OUTPUTS)`` when a net output has no
    counterpart in the Keras model."""
    from .compare import output_problems
    from .compare.match import match, parse_user_map

    net, model, _ = prepared
    m = match(net, model, mapping=getattr(model, "harness_mapping", None), user_map=parse_user_map(user_map),
              shapes=_top_shapes(net))
    ntops = {lay.name: len(lay.tops) for lay in net.layers}
    items = [(_span_name(p.segment or (p.caffe_layer,)) if ntops.get(p.caffe_layer, 1) == 1
              else f"{p.caffe_layer}/{p.caffe_top}", p.key) for p in m.pairs]
    if output_problems(net, m, model):
        items.append(("net outputs", OUTPUTS))
    return items


def failure_text(report: Any, key: str) -> str | None:
    """What the item of ``key`` reports from a comparison ``report``: None when it passed, else the failure text
    (the pair, its chained/isolated results and, for the first divergent layer, the likely causes and fixes)."""
    if key == OUTPUTS:
        return "not equivalent: " + "; ".join(report.output_problems) if report.output_problems else None
    lr = next((x for x in report.layers if x.key == key), None)
    if lr is None:
        return f"{key}: not compared (the matching changed since collection)"
    if lr.passed:
        return None
    span = _span_name(lr.segment or (lr.caffe_layer,))
    lines = [f"Caffe {span} ({lr.layer_type}) <-> Keras {lr.keras_layer!r} [{lr.matched_by}]"]
    lines += [f"  {r}" for r in (lr.chained, lr.isolated) if r is not None]
    fd = report.first_divergence
    own = fd if fd is not None and fd.key == key else next((d for d in report.divergences if d.key == key), None)
    if own is not None:
        which = "the first divergent layer" if own is fd else "diverges in isolation (an error of its own)"
        lines.append(f"Caffe {own.caffe_layer!r} is {which}" if len(lr.segment) > 1 else f"this is {which}")
        for d in own.to_dict()["diagnosis"]:
            lines.append(f"  likely cause: {d['cause']} ({float(d['confidence']):.2f}): {d['explanation']}")
            lines.append(f"    fix: {d['fix']}")
    elif fd is not None:
        lines.append(f"(the first divergent layer is {fd.caffe_layer!r})")
    return "\n".join(lines)


def dataset_report(check: dict, prepared: Prepared, *, mode: str, atol: Any = None, rtol: Any = None) -> Any:
    """The :class:`~harness.compare.dataset_report.DatasetReport` of a resolved check with a ``dataset`` (the net and
    the model of ``prepared``, loaded once), held against (or writing) its ``baseline``."""
    import json

    from .compare.baseline import apply_baseline, identity
    from .compare.dataset_run import run_dataset
    from .compare.datasets import open_dataset
    from .compare.sweep import Check, Sides
    from .compare.tolerance import Tolerances

    net, model, _ = prepared
    tol = check.get("tolerances")
    keras = check.get("keras") if check.get("keras") not in (None, "convert") else None
    with open_dataset(check["dataset"], dict(net.inputs)) as ds:
        spec = Check(prototxt=check["prototxt"], weights=check.get("weights"), keras=keras,
                     seed=int(check.get("seed", 0)), mode=mode, atol=atol, rtol=rtol,
                     tolerances=json.dumps(tol, sort_keys=True) if tol else None,
                     user_map=tuple(sorted((check.get("map") or {}).items())),
                     input_shapes=tuple(ds.shapes().items()), batch=int(check.get("batch", 16)))
        sides = Sides(net, model, Tolerances.build(atol=atol, rtol=rtol, tolerances=tol), mode,
                      user_map=check.get("map"), seed=spec.seed)
        report = run_dataset(spec, ds, sides=sides)
    if check.get("baseline"):
        apply_baseline(report, check["baseline"], check.get("baseline_factor"), False,
                       identity(check["prototxt"], check.get("weights"), keras, spec.seed, net.name))
    return report


def dataset_failure_text(report: Any, key: str) -> str | None:
    """What the item of ``key`` reports from a dataset run: None when the layer passed on every sample and did not
    grow past its baseline; else the layer's statistics (and, for the first failing layer, the causes found on its
    worst sample), the baseline regression, or the baseline just written (pytest-regressions: run again)."""
    if key == OUTPUTS:
        return "not equivalent: " + "; ".join(report.agg.problems) if report.agg.problems else None
    la = report.agg.layers.get(key)
    if la is None:
        return f"{key}: not compared (the matching changed since collection)"
    lines = []
    if not la.passed:
        lines.append(f"over {report.agg.samples} samples of {report.dataset['path']!r}: {report._fail_line(la)}")
        wsr = report.worst_sample_report
        if wsr is not None and report.failing()[0] is la:
            lines.append("the first failing layer; on its worst sample alone:")
            lines += ["  " + ln for ln in wsr.verdict().splitlines()]
    b = report.baseline or {}
    if b.get("status") == "written":
        lines.append(f"baseline {b['path']!r} did not exist: written from this run ({b['layers']} layers); run again "
                     f"to check against it")
    for r in b.get("regressions", []):
        if r["key"] == key:
            lines.append(f"BASELINE REGRESSION against {b['path']!r} [{r['mode']}]: " +
                         (r["why"] if r["now"] is None else
                          f"bound ratio {r['now']:.4g} > {b['factor']:g} x max(baseline {r['baseline']:.4g}, "
                          f"{b['floor']:g})"))
    return "\n".join(lines) or None


def _span_name(segment: tuple[str, ...]) -> str:
    return "+".join(segment)
