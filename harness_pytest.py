"""pytest plugin for caffe-keras-harness (registered through the ``pytest11`` entry point ``caffe_harness``).

Loading this module imports only :mod:`pytest` and the standard library: no :mod:`harness` module, no NumPy, Keras
or TensorFlow, and nothing is added to ``sys.meta_path``.  The harness is imported the first time a fixture is used
or a manifest is collected, so other projects in the same environment and ``pytest --help`` pay nothing for it.  It
uses only public names of the harness (:mod:`harness.compare`, :mod:`harness.manifest`, :mod:`harness.errors`).

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
  order), so ``pytest -n 2`` (xdist) works; each worker runs the comparison once per manifest.  The manifest format
  is documented in :mod:`harness.manifest`: a Keras model (``.keras``, legacy ``.h5``, ``convert``; ``backend``), an
  ONNX model (``onnx``), a SavedModel (``saved_model``, ``signature``) or a ``.tflite`` (``tflite``, or ``keras =
  "model.tflite"``) -- the artefact kinds of :mod:`harness.compare.artefacts.kinds` -- or several of them (the
  stages of one chain, items from the stage shown); an artefact's items are the layers its run paired, so its
  comparison runs at collection.  Every item's ``user_properties`` (JUnit
  ``<property>``) carry ``caffe_harness_artefact_kind``, ``caffe_harness_artefact_path`` and
  ``caffe_harness_backend``; a manifest with ``dataset`` (and ``batch``, ``baseline``, ``baseline_factor``) runs the
  comparison over the dataset (:func:`harness.manifest.dataset_report`) and each item fails with its layer's dataset
  statistics or baseline regression (:func:`harness.manifest.dataset_failure_text`);
* GitHub Actions annotations: when ``GITHUB_ACTIONS=true`` (or ``--caffe-annotations github``; ``none`` turns them
  off) a failing manifest item or a fixture comparison that is not equivalent leaves one ``::error file=...,line=...``
  workflow command per diverging layer (:func:`harness.compare.reports.annotations.github_annotations`) in the test report's
  ``user_properties``; the controlling process (also under xdist) prints each distinct one in the terminal summary,
  so the failure shows on the prototxt line in the pull request's diff.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

_MANIFEST = re.compile(r"^(caffe-equivalence.*|.*\.caffe-harness)\.toml$")
_MARKER_KEYS = ("atol", "rtol", "layers", "types", "reason")
# Per process (xdist worker): (manifest path, check name) -> prepared (net, model, inputs) / comparison report.
_PREPARED: dict[tuple[str, str], Any] = {}
_REPORTS: dict[tuple[str, str], Any] = {}
_ANNOTATION = "caffe_harness_annotation"  # user_properties name of a workflow annotation line


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("caffe-harness", "Caffe/Keras equivalence (caffe-keras-harness)")
    group.addoption("--caffe-atol", type=float, default=None, metavar="A",
                    help="absolute tolerance for every compared element (an element passes when within atol OR "
                         "within rtol*|reference|); default: the per-layer derived float32 bound")
    group.addoption("--caffe-rtol", type=float, default=None, metavar="R",
                    help="relative tolerance (see --caffe-atol)")
    group.addoption("--caffe-mode", choices=("both", "chained", "isolated"), default=None,
                    help="which comparisons run (default: both, or the manifest's mode)")
    group.addoption("--caffe-annotations", choices=("github", "none"), default=None,
                    help="github: print a GitHub Actions ::error annotation per diverging layer; none: don't "
                         "(default: github when GITHUB_ACTIONS=true)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "caffe_tolerance(atol=None, rtol=None, layers=None, types=None, reason=''): tolerance overrides for the "
        "caffe_harness fixture; layers/types map a Caffe layer name/type to {'atol':..,'rtol':..,'reason':..}",
    )
    config.pluginmanager.register(_Annotations(), "caffe_harness_annotations")


class _Annotations:
    """Collects the annotation lines the test reports carry (from this process or xdist workers) and prints each
    distinct one, in order, in the terminal summary."""

    def __init__(self) -> None:
        self.lines: dict[str, None] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in getattr(report, "user_properties", ()):
            if name == _ANNOTATION:
                self.lines.setdefault(str(value), None)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for line in self.lines:
            terminalreporter.write_line(line)


def _annotate(config: pytest.Config, node: Any, report: Any) -> None:
    """Leave the workflow annotations of a comparison that is not equivalent in ``node``'s report, when wanted."""
    if node is None or bool(report):
        return
    from harness.compare.reports.annotations import annotations_wanted, github_annotations

    if annotations_wanted(config.getoption("--caffe-annotations")):
        for line in github_annotations(report):
            if (_ANNOTATION, line) not in node.user_properties:
                node.user_properties.append((_ANNOTATION, line))


# ------------------------------------------------------------------------------------------------------- fixture

def _marker_tolerances(node: Any) -> dict | None:
    m = node.get_closest_marker("caffe_tolerance") if node is not None else None
    if m is None:
        return None
    if m.args:
        raise pytest.UsageError("caffe_tolerance takes keyword arguments only (atol, rtol, layers, types, reason)")
    unknown = set(m.kwargs) - set(_MARKER_KEYS)
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
        for opt, name in (("--caffe-atol", "atol"), ("--caffe-rtol", "rtol"), ("--caffe-mode", "mode")):
            value = self.config.getoption(opt)
            if value is not None and name not in kw:
                kw[name] = value
        return kw

    def compare(self, net_or_prototxt: Any, keras_model: Any = None, inputs: Any = None, **kwargs: Any) -> Any:
        from harness.compare import compare

        report = compare(net_or_prototxt, keras_model, inputs, **self._kwargs(kwargs))
        _annotate(self.config, self.node, report)
        return report

    def assert_equivalent(self, net_or_prototxt: Any, keras_model: Any = None, inputs: Any = None,
                          **kwargs: Any) -> Any:
        """:func:`harness.compare.assert_equivalent` (``AssertionError``: the terminal verdict)."""
        report = self.compare(net_or_prototxt, keras_model, inputs, **kwargs)
        if not report:
            raise AssertionError(report.verdict())
        return report


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


def _collect_items(collector: pytest.Collector, check: dict) -> list:
    """The layer items of one manifest check; a bad manifest or net is the collector's collection error."""
    from harness.errors import HarnessError
    from harness.manifest import ManifestError, layer_items, prepare, resolve

    spec = resolve(check, collector.path)
    key = (str(collector.path), spec.get("name", ""))
    try:
        prepared = _PREPARED.get(key) or prepare(spec)
        _PREPARED[key] = prepared
        # an artefact's tensors are paired while it runs: its items need the comparison now
        report = _run(collector.config, spec, key) if prepared.artefact is not None else None
        items = layer_items(prepared, spec.get("map"), report)
    except ManifestError as e:
        raise collector.CollectError(str(e)) from None
    except HarnessError as e:
        raise collector.CollectError(f"{collector.path}: {e}") from None
    return [LayerItem.from_parent(collector, name=name, spec=spec, key=k, manifest=key) for name, k in items]


def _run(config: pytest.Config, spec: dict, key: tuple[str, str]) -> Any:
    """The comparison report of one manifest check, once per process (``--caffe-*`` options over the manifest's)."""
    rep = _REPORTS.get(key)
    if rep is None:
        from harness.manifest import prepare, run_check

        prepared = _PREPARED.get(key) or prepare(spec)
        _PREPARED[key] = prepared
        rep = run_check(prepared, spec, atol=config.getoption("--caffe-atol"), rtol=config.getoption("--caffe-rtol"),
                        mode=config.getoption("--caffe-mode"))
        _REPORTS[key] = rep
    return rep


class ManifestFile(pytest.File):
    def collect(self):
        from harness.manifest import ManifestError, read_checks

        try:
            checks = read_checks(self.path)
        except ManifestError as e:
            raise self.CollectError(str(e)) from None
        if len(checks) == 1 and not checks[0]["name"]:
            return _collect_items(self, checks[0])
        return [ManifestCheck.from_parent(self, name=c["name"], spec=c) for c in checks]


class ManifestCheck(pytest.Collector):
    def __init__(self, *, spec: dict, **kw: Any) -> None:
        super().__init__(**kw)
        self.spec = spec

    def collect(self):
        return _collect_items(self, self.spec)


class LayerFailure(Exception):
    pass


class LayerItem(pytest.Item):
    def __init__(self, *, spec: dict, key: str, manifest: tuple[str, str], **kw: Any) -> None:
        super().__init__(**kw)
        self.spec = spec
        self.key = key
        self.manifest = manifest

    def runtest(self) -> None:
        from harness.manifest import failure_text

        report = _run(self.config, self.spec, self.manifest)
        if self.spec.get("dataset"):
            from harness.manifest import dataset_failure_text

            text = dataset_failure_text(report, self.key)
            if text is not None:
                raise LayerFailure(text)
            return
        art = getattr(report, "artefact", None) or {}
        for name, value in (("caffe_harness_artefact_kind", art.get("kind")),
                            ("caffe_harness_artefact_path", art.get("path")),
                            ("caffe_harness_backend", getattr(report, "backend", None))):
            if value is not None and (name, value) not in self.user_properties:
                self.user_properties.append((name, value))
        text = failure_text(report, self.key)
        if text is not None:
            _annotate(self.config, self, report)
            raise LayerFailure(text)

    def repr_failure(self, excinfo: Any, style: Any = None) -> Any:
        if isinstance(excinfo.value, LayerFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, 0, f"caffe-harness {self.key}"
