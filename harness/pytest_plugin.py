"""pytest plugin for caffe-keras-harness (registered through the ``pytest11`` entry point).

Importing this module imports only :mod:`pytest` and the standard library; the harness, NumPy, Keras and TensorFlow are
imported the first time a fixture is used or a manifest is collected, so ``pytest --help`` stays fast.

What it adds
------------
* options (group ``caffe-harness``): ``--caffe-atol``, ``--caffe-rtol`` (Polygraphy semantics: an element passes when
  within atol OR within rtol*|reference|; they replace the derived float32 bound), ``--caffe-mode``
  (both/chained/isolated);
* the fixture ``caffe_harness``: ``caffe_harness.compare(net_or_prototxt, keras_model=None, inputs=None, **kw)`` and
  ``caffe_harness.assert_equivalent(...)`` (the ``AssertionError`` message is the terminal verdict), with the test's
  ``caffe_tolerance`` marker and the command-line options applied;
* the marker ``@pytest.mark.caffe_tolerance(atol=None, rtol=None, layers=None, types=None, reason="")``: ``layers`` /
  ``types`` map a Caffe layer name / type to ``{"atol": .., "rtol": .., "reason": ".."}``;
* equivalence manifests: files named ``caffe-equivalence*.toml`` or ``*.caffe-harness.toml`` are collected into one
  test item per matched Caffe layer output (``<manifest>::<layer>``, or ``<manifest>::<layer>/<top>`` for a layer with
  several tops), so the failing layer shows up in pytest's output.  Item ids are deterministic (Caffe execution
  order), so ``pytest -n 2`` (xdist) works; each worker runs the comparison once per manifest.

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

Several checks in one file: ``[[check]]`` tables with the same keys plus ``name``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

_MANIFEST = re.compile(r"^(caffe-equivalence.*|.*\.caffe-harness)\.toml$")
_REPORTS: dict[tuple[str, str], Any] = {}  # (manifest path, check name) -> Report (per process / xdist worker)
_KEYS = {"name", "prototxt", "weights", "keras", "inputs", "seed", "mode", "atol", "rtol", "map", "tolerances"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("caffe-harness", "Caffe/Keras equivalence (caffe-keras-harness)")
    group.addoption("--caffe-atol", type=float, default=None, metavar="A",
                    help="absolute tolerance for every compared element (an element passes when within atol OR "
                         "within rtol*|reference|); default: the per-layer derived float32 bound")
    group.addoption("--caffe-rtol", type=float, default=None, metavar="R",
                    help="relative tolerance (see --caffe-atol)")
    group.addoption("--caffe-mode", choices=("both", "chained", "isolated"), default=None,
                    help="which comparisons run (default: both, or the manifest's mode)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "caffe_tolerance(atol=None, rtol=None, layers=None, types=None, reason=''): tolerance overrides for the "
        "caffe_harness fixture; layers/types map a Caffe layer name/type to {'atol':..,'rtol':..,'reason':..}",
    )


# ------------------------------------------------------------------------------------------------------- fixture

def _marker_tolerances(node: Any) -> dict | None:
    m = node.get_closest_marker("caffe_tolerance") if node is not None else None
    if m is None:
        return None
    if m.args:
        raise pytest.UsageError("caffe_tolerance takes keyword arguments only (atol, rtol, layers, types, reason)")
    unknown = set(m.kwargs) - {"atol", "rtol", "layers", "types", "reason"}
    if unknown:
        raise pytest.UsageError(f"caffe_tolerance: unknown argument(s) {sorted(unknown)} "
                                f"(atol, rtol, layers, types, reason)")
    return {k: v for k, v in m.kwargs.items() if v is not None}


class CaffeHarness:
    """What the ``caffe_harness`` fixture gives a test."""

    def __init__(self, config: pytest.Config, node: Any = None) -> None:
        self.config = config
        self.node = node

    def _kwargs(self, kwargs: dict) -> dict:
        kw = dict(kwargs)
        marker = _marker_tolerances(self.node)
        if marker is not None and "tolerances" not in kw:
            kw["tolerances"] = marker
        atol = self.config.getoption("--caffe-atol")
        rtol = self.config.getoption("--caffe-rtol")
        if atol is not None and "atol" not in kw:
            kw["atol"] = atol
        if rtol is not None and "rtol" not in kw:
            kw["rtol"] = rtol
        mode = self.config.getoption("--caffe-mode")
        if mode is not None and "mode" not in kw:
            kw["mode"] = mode
        return kw

    def compare(self, net_or_prototxt: Any, keras_model: Any = None, inputs: Any = None, **kwargs: Any) -> Any:
        from harness.compare import compare

        return compare(net_or_prototxt, keras_model, inputs, **self._kwargs(kwargs))

    def assert_equivalent(self, net_or_prototxt: Any, keras_model: Any = None, inputs: Any = None,
                          **kwargs: Any) -> Any:
        from harness.compare import assert_equivalent

        return assert_equivalent(net_or_prototxt, keras_model, inputs, **self._kwargs(kwargs))


@pytest.fixture
def caffe_harness(request: pytest.FixtureRequest) -> CaffeHarness:
    """``caffe_harness.compare(...)`` / ``caffe_harness.assert_equivalent(...)`` with this test's
    ``caffe_tolerance`` marker and the ``--caffe-*`` options applied."""
    return CaffeHarness(request.config, request.node)


# ----------------------------------------------------------------------------------------------------- manifests

def pytest_collect_file(parent: pytest.Collector, file_path: Any) -> Any:
    if _MANIFEST.match(file_path.name):
        return ManifestFile.from_parent(parent, path=file_path)
    return None


class ManifestError(Exception):
    pass


def _load_toml(path: Any) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"{path}: invalid TOML: {e}") from None


def _checks(data: dict, path: Any) -> list[dict]:
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
        unknown = set(c) - _KEYS
        if unknown:
            raise ManifestError(f"{path}: unknown key(s) {sorted(unknown)} (allowed: {', '.join(sorted(_KEYS))})")
        if "prototxt" not in c:
            raise ManifestError(f"{path}: 'prototxt' is required")
    return checks


class ManifestFile(pytest.File):
    def collect(self):
        try:
            data = _load_toml(self.path)
            checks = _checks(data, self.path)
            if len(checks) == 1 and not checks[0]["name"]:
                return list(_items(self, checks[0], self.path))
        except ManifestError as e:
            raise self.CollectError(str(e)) from None
        return [ManifestCheck.from_parent(self, name=c["name"], spec=c) for c in checks]


class ManifestCheck(pytest.Collector):
    def __init__(self, *, spec: dict, **kw: Any) -> None:
        super().__init__(**kw)
        self.spec = spec

    def collect(self):
        try:
            return list(_items(self, self.spec, self.path))
        except ManifestError as e:
            raise self.CollectError(str(e)) from None


def _resolve(spec: dict, path: Any) -> dict:
    base = path.parent
    out = dict(spec)
    for k in ("prototxt", "weights", "inputs"):
        if out.get(k):
            out[k] = str((base / out[k]).resolve())
    if out.get("keras") and out["keras"] != "convert":
        out["keras"] = str((base / out["keras"]).resolve())
    return out


def _prepare(spec: dict) -> tuple[Any, Any, Any]:
    """(net, keras model, inputs) for a resolved manifest check."""
    from harness.compare import load_caffe_net, load_keras_model

    net = load_caffe_net(spec["prototxt"], spec.get("weights"), int(spec.get("seed", 0)))
    keras_spec = spec.get("keras", "convert")
    if keras_spec in (None, "convert"):
        from harness.convert import convert

        model = convert(net)
    else:
        model = load_keras_model(keras_spec)
    inputs = None
    if spec.get("inputs"):
        import numpy as np

        z = np.load(spec["inputs"], allow_pickle=False)
        inputs = {k: z[k] for k in z.files}
    return net, model, inputs


_PREPARED: dict[tuple[str, str], tuple[Any, Any, Any]] = {}


def _items(parent: Any, spec: dict, path: Any):
    from harness.compare.match import match, parse_user_map
    from harness.errors import HarnessError

    spec = _resolve(spec, path)
    key = (str(path), spec.get("name", ""))
    try:
        prepared = _PREPARED.get(key) or _prepare(spec)
        _PREPARED[key] = prepared
        net, model, _ = prepared
        mapping = getattr(model, "harness_mapping", None)
        from harness.shapes import infer_shapes

        shapes = {}
        try:
            ns = infer_shapes(net)
            for lay, ls in zip(net.layers, ns.layers):
                for top, s in zip(lay.tops, ls.top_shapes):
                    shapes[f"{lay.name}/{top}"] = tuple(s)
        except Exception:
            shapes = {}
        m = match(net, model, mapping=mapping, user_map=parse_user_map(spec.get("map")), shapes=shapes)
    except HarnessError as e:
        raise ManifestError(f"{path}: {e}") from None
    ntops = {lay.name: len(lay.tops) for lay in net.layers}
    for p in m.pairs:
        name = p.caffe_layer if ntops.get(p.caffe_layer, 1) == 1 else f"{p.caffe_layer}/{p.caffe_top}"
        yield LayerItem.from_parent(parent, name=name, spec=spec, key=p.key, manifest=key)
    from harness.compare import output_problems

    if output_problems(net, m, model):  # a net output with no counterpart: one failing item says which
        yield LayerItem.from_parent(parent, name="net outputs", spec=spec, key=_OUTPUTS, manifest=key)


_OUTPUTS = "<net outputs>"


class LayerFailure(Exception):
    pass


class LayerItem(pytest.Item):
    def __init__(self, *, spec: dict, key: str, manifest: tuple[str, str], **kw: Any) -> None:
        super().__init__(**kw)
        self.spec = spec
        self.key = key
        self.manifest = manifest

    def _report(self) -> Any:
        rep = _REPORTS.get(self.manifest)
        if rep is None:
            from harness.compare import compare

            net, model, inputs = _PREPARED.get(self.manifest) or _prepare(self.spec)
            _PREPARED[self.manifest] = (net, model, inputs)
            cfg = self.config
            atol = cfg.getoption("--caffe-atol")
            rtol = cfg.getoption("--caffe-rtol")
            if atol is None and rtol is None:
                atol, rtol = self.spec.get("atol"), self.spec.get("rtol")
            mode = cfg.getoption("--caffe-mode") or self.spec.get("mode", "both")
            rep = compare(net, model, inputs, mode=mode, atol=atol, rtol=rtol,
                          tolerances=self.spec.get("tolerances"), user_map=self.spec.get("map"),
                          seed=int(self.spec.get("seed", 0)))
            _REPORTS[self.manifest] = rep
        return rep

    def runtest(self) -> None:
        rep = self._report()
        if self.key == _OUTPUTS:
            if rep.output_problems:
                raise LayerFailure("not equivalent: " + "; ".join(rep.output_problems))
            return
        lr = next((x for x in rep.layers if x.key == self.key), None)
        if lr is None:
            raise LayerFailure(f"{self.key}: not compared (the matching changed since collection)")
        if not lr.passed:
            lines = [f"Caffe {lr.caffe_layer!r} ({lr.layer_type}) <-> Keras {lr.keras_layer!r} "
                     f"[{lr.matched_by}]"]
            for r in (lr.chained, lr.isolated):
                if r is not None:
                    lines.append(f"  {r}")
            fd = rep.first_divergence
            if fd is not None and fd.key == self.key:
                lines.append("this is the first divergent layer")
                for c in fd.diagnosis:
                    from harness.compare import cause_dict

                    d = cause_dict(c)
                    lines.append(f"  likely cause: {d['cause']} ({float(d['confidence']):.2f}): {d['explanation']}")
                    lines.append(f"    fix: {d['fix']}")
            elif fd is not None:
                lines.append(f"(the first divergent layer is {fd.caffe_layer!r})")
            raise LayerFailure("\n".join(lines))

    def repr_failure(self, excinfo: Any, style: Any = None) -> Any:
        if isinstance(excinfo.value, LayerFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, 0, f"caffe-harness {self.key}"
