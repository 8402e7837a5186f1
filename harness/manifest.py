"""Equivalence manifests: the TOML files the pytest plugin (``harness_pytest``) collects, one test item per layer.

Manifest format (paths relative to the manifest)::

    prototxt = "deploy.prototxt"
    weights = "weights.caffemodel"      # optional: seeded random weights
    keras = "model.keras"               # or "convert" (default): convert the net with the harness; a legacy
                                        # "model.h5"; or a LiteRT "model.tflite" (run by the LiteRT interpreter)
    custom_objects = ["my_port:MyNet"]  # optional, with keras: the port's own classes, the same opt-in as the
                                        # CLI's --custom-objects (each module imported from sys.path / the current
                                        # folder; nothing in the model file runs); a subclassed port needs it
    saved_model = "exported_dir"        # instead of keras: a TensorFlow SavedModel folder
    signature = "serving_default"       # with saved_model: the signature to run (default serving_default)
    onnx = "model.onnx"                 # instead of keras: an ONNX model (run by onnxruntime)
    tflite = "model.tflite"             # instead of keras: a LiteRT model (also spelt keras = "model.tflite")
    tflite_delegate = "both"            # with tflite: none | xnnpack | both; min_sqnr, min_top1_agreement: quantised
    backend = "jax"                     # optional: the Keras backend (tensorflow | jax | torch) for a Keras model
    inputs = "inputs.npz"               # optional: seeded standard-normal inputs
    input_shape = [4, 3, 300, 500]      # optional: the net's NCHW input size and batch (a fully convolutional net
                                        # at another size; {data = [...], im_info = [...]} for several inputs);
                                        # default: the inputs' own shapes, else the prototxt's
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

An exported artefact (ONNX, SavedModel, ``.tflite``: the kinds of :mod:`harness.compare.artefacts.kinds`, whose
registry gives these keys) runs end to end only (chained; :mod:`harness.compare.artefacts.pairing`): ``mode =
"isolated"``, ``[map]`` and ``backend`` are refused by name for it.  A check naming several (``onnx`` and
``saved_model`` and ``tflite``) judges each stage of the chain (:mod:`harness.compare.artefacts.chain`).  ``backend`` is selected as the CLI's
``--backend`` does (:func:`harness.backends.select`): before Keras is imported; a process whose Keras already runs
on another backend is refused by name (Keras picks its backend once per process).

This module holds what the plugin needs from the harness, so that the plugin itself is only pytest glue:
:func:`read_checks` (parse and validate a manifest), :func:`prepare` (the net, the Keras model and the inputs of one
check), :func:`layer_items` (the item names, in Caffe execution order) and :func:`failure_text` (what a failing item
prints).  Importing it imports only the standard library; NumPy, Keras and TensorFlow come with :func:`prepare`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from .errors import HarnessError

__all__ = ["KEYS", "OUTPUTS", "ManifestError", "Prepared", "read_checks", "resolve", "prepare", "run_check",
           "artefact_kind", "layer_items", "failure_text", "dataset_report", "dataset_failure_text"]

_BASE_KEYS = frozenset({"name", "prototxt", "weights", "keras", "custom_objects", "backend", "inputs", "input_shape",
                        "seed", "mode",
                        "atol", "rtol",
                        "map", "tolerances", "dataset", "batch", "baseline", "baseline_factor"})


def _keys() -> frozenset:
    """The base keys, and each artefact kind's manifest key and option keys (harness.compare.artefacts.kinds)."""
    from .compare.artefacts.kinds import KINDS

    return _BASE_KEYS | {k.manifest_key for k in KINDS.values()} | {o.dest for k in KINDS.values() for o in k.options}


def __getattr__(name: str) -> Any:
    if name == "KEYS":  # computed on first use: importing this module imports only the standard library
        return _keys()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
BACKENDS = ("tensorflow", "jax", "torch")
OUTPUTS = "<net outputs>"  # the key of the item that fails when a net output has no counterpart


class ManifestError(HarnessError):
    """A manifest that cannot be read or checked (the message starts with the manifest's path)."""


class Prepared(NamedTuple):
    net: Any
    model: Any  # the Keras model; None for an artefact
    inputs: dict | None
    artefact: dict | None = None  # {"kind": "saved_model" | "tflite", "path": ..., "signature": ...}


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
        keys = _keys()
        unknown = set(c) - keys
        if unknown:
            raise ManifestError(f"{path}: unknown key(s) {sorted(unknown)} (allowed: {', '.join(sorted(keys))})")
        if "prototxt" not in c:
            raise ManifestError(f"{path}: 'prototxt' is required")
        _check_artefact_keys(path, c)
        _check_dataset_keys(path, c)
        input_shapes(c, path)
        _check_custom_objects(path, c)
    return checks


def _check_custom_objects(path: Any, c: dict) -> None:
    """``custom_objects``: a list of "module:Class" strings (their modules are imported by :func:`prepare`)."""
    v = c.get("custom_objects")
    if v is None:
        return
    ok = isinstance(v, list) and all(isinstance(s, str) and s.partition(":")[0] and s.partition(":")[2]
                                     for s in v)
    if not ok:
        raise ManifestError(f"{path}: custom_objects = {v!r}: expected a list of \"module:Class\" strings (the "
                            f"classes of --custom-objects), e.g. custom_objects = [\"my_port:MyNet\"]")
    if c.get("keras", "convert") == "convert":
        what = 'keras = "convert"' if "keras" in c else "a check without keras"
        raise ManifestError(f"{path}: custom_objects applies to a keras model file (keras = \"model.keras\"), "
                            f"not to {what}")


def input_shapes(check: dict, path: Any = "manifest") -> dict[str, tuple[int, ...]] | None:
    """The ``input_shape`` key as ``{input blob: NCHW shape}`` (a bare list: the net's only input, named when the net
    is loaded: key ``""``); None when absent.  A value that is not a list of positive integers is refused."""
    v = check.get("input_shape")
    if v is None:
        return None
    shapes = v if isinstance(v, dict) else {"": v}
    for k, s in shapes.items():
        if not isinstance(s, list) or not s or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                                       for d in s):
            raise ManifestError(f"{path}: input_shape{'.' + k if k else ''} = {s!r}: expected a list of positive "
                                f"integers (NCHW), e.g. [2, 3, 224, 224]")
    return {k: tuple(s) for k, s in shapes.items()}


def _given_shapes(check: dict, inputs: dict | None) -> dict[str, tuple[int, ...]] | None:
    """What sizes the net: ``input_shape``, else the inputs' own shapes (as ``check --input`` does); a bare
    ``input_shape`` list names the prototxt's one input."""
    shapes = input_shapes(check)
    if shapes and "" in shapes:
        from .caffe import load_net

        names = list(load_net(check["prototxt"]).inputs)
        if len(names) != 1:
            raise ManifestError(f"{check['prototxt']}: input_shape is one list but the net has {len(names)} inputs "
                                f"({', '.join(names)}): give input_shape = {{{names[0]} = [...], ...}}")
        shapes = {names[0]: shapes[""]}
    if shapes is None and inputs:
        shapes = {k: tuple(int(d) for d in v.shape) for k, v in inputs.items()}
    return shapes


def artefact_kind(check: dict) -> str | None:
    """The kind of the (first) exported artefact a check names ("onnx", "saved_model", "tflite"; "chain" for
    several), None for a Keras model (or "convert")."""
    stages = artefact_stages(check)
    return None if not stages else stages[0][0] if len(stages) == 1 else "chain"


def artefact_stages(check: dict) -> list[tuple[str, Any]]:
    """``[(kind, path)]`` of the exported artefacts a check names, chain order."""
    from .compare.artefacts.kinds import manifest_stages

    return manifest_stages(check)


def _check_artefact_keys(path: Any, c: dict) -> None:
    """The keys that go together: one Keras model or artefacts; a kind's own keys with that kind; backend a Keras
    backend, for a Keras model; an artefact chained only, without [map] (harness.compare.artefacts.kinds)."""
    from .compare.artefacts.kinds import KINDS, refused_keys

    name = f"{path}" + (f" [[check]] {c['name']!r}" if c.get("name") else "")
    stages = artefact_stages(c)
    if stages and c.get("keras") not in (None, "convert") and not str(c["keras"]).lower().endswith(".tflite"):
        other = KINDS[stages[0][0]].manifest_key
        raise ManifestError(f"{name}: give either keras = {c['keras']!r} or {other} = {c[other]!r}, not both")
    if "backend" in c and c["backend"] not in BACKENDS:
        raise ManifestError(f"{name}: backend = {c['backend']!r}: expected one of {', '.join(BACKENDS)}")
    why = refused_keys(c, [KINDS[k] for k, _ in stages])
    if why:
        raise ManifestError(f"{name}: {why}")


def _check_dataset_keys(path: str | Path, c: dict) -> None:
    if "dataset" in c and artefact_kind(c):
        raise ManifestError(f"{path}: 'dataset' applies to a Keras model (or \"convert\"), not to an exported "
                            f"artefact")
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
    from .compare.artefacts.kinds import artefact_kinds

    for k in ("prototxt", "weights", "inputs", "dataset", "baseline", *(k.manifest_key for k in artefact_kinds())):
        if out.get(k):
            out[k] = str((base / out[k]).resolve())
    if out.get("keras") and out["keras"] != "convert":
        out["keras"] = str((base / out["keras"]).resolve())
    return out


def prepare(check: dict) -> Prepared:
    """(net, Keras model, inputs, artefact) of a resolved check: the net with its weights (seeded random ones,
    ``seed``, when the manifest names none), the Keras model converted or loaded in safe mode -- on ``backend``,
    selected before Keras is imported -- or, for a SavedModel / ``.tflite`` check, no model and the artefact's kind
    and path; the ``inputs`` npz (None: seeded)."""
    if check.get("backend"):
        from .backends import select

        try:
            select(check["backend"])
        except HarnessError as e:  # this process's Keras runs on another backend, or it is not installed
            raise HarnessError(f"backend = {check['backend']!r}: {e}") from None
    from .compare.engine.inputs import load_seeded_net, refuse_nhwc_inputs

    inputs = _read_inputs(check)
    shapes = _given_shapes(check, inputs)
    refuse_nhwc_inputs(check["prototxt"], shapes)  # one line naming the input, not a failure per layer item
    net = load_seeded_net(check["prototxt"], check.get("weights"), int(check.get("seed", 0)), shapes)[0]
    if inputs:
        _inputs_fit(check, net, inputs)
    stages = artefact_stages(check)
    model, artefact = None, None
    if stages:
        artefact = {"kind": artefact_kind(check), "path": stages[0][1] if len(stages) == 1 else None,
                    "signature": check.get("signature"), "stages": stages}
    elif check.get("keras", "convert") in (None, "convert"):
        from .convert import convert

        model = convert(net)
    else:
        model = _load_keras(check)
    return Prepared(net, model, inputs, artefact)


def _load_keras(check: dict) -> Any:
    """The check's ``keras`` model with its ``custom_objects`` opted in; a model that needs a class the manifest
    does not name says so with the manifest key, not the CLI flag."""
    import re

    from .compare import load_keras_model
    from .compare.engine.loading import resolve_custom_objects

    specs = check.get("custom_objects")
    try:
        custom = resolve_custom_objects(specs)
    except HarnessError as e:
        raise HarnessError(f"custom_objects = {specs!r}: {str(e).replace('--custom-objects ', '', 1)}") from None
    try:
        return load_keras_model(check["keras"], custom_objects=custom)
    except HarnessError as e:
        msg = re.sub(r"with --custom-objects (\S+?):(\S+)", r'with custom_objects = ["\1:\2"] in the manifest '
                     r"(its key for --custom-objects)", str(e))
        raise type(e)(msg) from None


def _read_inputs(check: dict) -> dict | None:
    if not check.get("inputs"):
        return None
    import numpy as np

    with np.load(check["inputs"], allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _inputs_fit(check: dict, net: Any, inputs: dict) -> None:
    """The inputs checked now, by the one input preparer the comparison uses (names, NCHW shapes against the net's
    possibly resized ones, dtype): one collection error naming the file, not a failure per layer item."""
    from .compare.engine.inputs import prepare_inputs

    try:
        prepare_inputs(net, inputs, int(check.get("seed", 0)))
    except HarnessError as e:
        raise ManifestError(f"{check['inputs']}: {e}") from None


def run_check(prepared: Prepared, check: dict, *, atol: float | None = None, rtol: float | None = None,
              mode: str | None = None) -> Any:
    """The comparison report of one check: :func:`harness.compare.compare` for a Keras model, the SavedModel or
    LiteRT check for an artefact (chained; ``mode = "isolated"`` is refused for it).  ``atol``/``rtol``/``mode``
    from the command line replace the manifest's.  A ``backend`` the report did not run on is refused."""
    if atol is None and rtol is None:
        atol, rtol = check.get("atol"), check.get("rtol")
    mode = mode or check.get("mode", "both")
    if check.get("dataset"):
        return dataset_report(check, prepared, mode=mode, atol=atol, rtol=rtol)
    net, model, inputs, artefact = prepared
    kw = dict(atol=atol, rtol=rtol, tolerances=check.get("tolerances"))
    seed = int(check.get("seed", 0))
    if artefact is None:
        from .compare import compare

        rep = compare(net, model, inputs, mode=mode, user_map=check.get("map"), seed=seed, **kw)
        keras = check.get("keras", "convert")  # the model was loaded by prepare(): say what it came from
        rep.artefact = ({"kind": "converted", "path": None} if keras in (None, "convert") else
                        {"kind": "keras", "path": keras})
    elif mode == "isolated":
        raise ManifestError(f"{artefact['path']}: mode isolated does not apply to a {artefact['kind']} artefact "
                            f"(it runs end to end: chained)")
    else:
        rep = _artefact_report(check, artefact["stages"], inputs, seed, dict(kw, input_shapes=dict(net.inputs)))
    want = check.get("backend")
    if want and artefact is None and rep.backend != want:
        raise ManifestError(f"backend = {want!r}: the comparison ran on {rep.backend!r}")
    return rep


def _artefact_report(check: dict, stages: list, inputs: Any, seed: int, kw: dict) -> Any:
    """One artefact (harness.compare.artefacts.kinds.check_artefact) or the chain of them (.chain.check_chain),
    through the shared preamble: the prototxt, its weights (seeded ones, with the notice) and the inputs."""
    from .compare.artefacts.chain import check_chain
    from .compare.artefacts.kinds import check_artefact

    args = dict(weights=check.get("weights"), seed=seed, options=check, **kw)
    if len(stages) == 1:
        return check_artefact(stages[0][0], check["prototxt"], stages[0][1], inputs, **args)
    return check_chain(stages, check["prototxt"], inputs, **args)


def _top_shapes(net: Any) -> dict[str, tuple[int, ...]]:
    from .shapes import infer_shapes

    try:
        ns = infer_shapes(net)
    except Exception:  # noqa: BLE001 - matching works without shapes (by name/mapping)
        return {}
    return {f"{lay.name}/{top}": tuple(s) for lay, ls in zip(net.layers, ns.layers)
            for top, s in zip(lay.tops, ls.top_shapes)}


def layer_items(prepared: Prepared, user_map: Any = None, report: Any = None) -> list[tuple[str, str]]:
    """``(item name, Caffe key)`` per matched Caffe layer output, in Caffe execution order, named after the span the
    pair covers (``conv1``; ``ip1+relu1`` for a Dense with a fused ReLU, ``bn1+scale1`` for one BatchNormalization;
    ``<layer>/<top>`` for a layer with several tops), then ``("net outputs", OUTPUTS)`` when a net output has no
    counterpart in the Keras model.  An artefact's tensors are paired while it runs: its items come from its
    ``report`` (:func:`run_check`)."""
    if prepared.artefact is not None:
        return _report_items(prepared.net, report)
    from .compare import output_problems
    from .compare.engine.match import match, parse_user_map

    net, model, _, _ = prepared
    m = match(net, model, mapping=getattr(model, "harness_mapping", None), user_map=parse_user_map(user_map),
              shapes=_top_shapes(net))
    ntops = {lay.name: len(lay.tops) for lay in net.layers}
    items = [(_span_name(p.segment or (p.caffe_layer,)) if ntops.get(p.caffe_layer, 1) == 1
              else f"{p.caffe_layer}/{p.caffe_top}", p.key) for p in m.pairs]
    if output_problems(net, m, model):
        items.append(("net outputs", OUTPUTS))
    return items


def _report_items(net: Any, report: Any) -> list[tuple[str, str]]:
    ntops = {lay.name: len(lay.tops) for lay in net.layers}
    items = [(_span_name(lr.segment or (lr.caffe_layer,)) if ntops.get(lr.caffe_layer, 1) == 1
              else f"{lr.caffe_layer}/{lr.caffe_top}", lr.key) for lr in report.layers]
    if report.output_problems:
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
    """The :class:`~harness.compare.dataset.report.DatasetReport` of a resolved check with a ``dataset`` (the net and
    the model of ``prepared``, loaded once), held against (or writing) its ``baseline``."""
    import json

    from .compare.dataset.baseline import apply_baseline, identity
    from .compare.dataset.run import run_dataset
    from .compare.dataset.sources import open_dataset
    from .compare.dataset.batch import Check, Sides
    from .compare.engine.tolerance import Tolerances

    net, model = prepared[0], prepared[1]
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
