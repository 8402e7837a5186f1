"""Every registry (shapes, reference, converter, strategies) covers exactly the catalogue's types, and registering an
unknown or duplicate type fails.  A gap is named per registry, so adding a layer tells you what is still missing."""

from __future__ import annotations

import importlib

import pytest

from harness.catalogue import CATALOGUE, canonical_type
from harness.errors import UnsupportedLayer
from harness.registry import Registry

# (registry name, module to import so that it registers, "module:attribute" of the Registry)
REGISTRIES = [
    ("shapes", "harness.shapes", "harness.shapes.registry:SHAPES"),
    ("reference", "harness.reference", "harness.reference.registry:REFERENCE"),
    ("converter", "harness.convert", "harness.convert.base:CONVERTERS"),
    ("strategies", "harness.strategies", "harness.strategies:STRATEGIES"),
]


def _registry(populate: str, where: str) -> Registry:
    importlib.import_module(populate)
    mod, attr = where.split(":")
    return getattr(importlib.import_module(mod), attr)


def coverage_gaps() -> dict[str, dict[str, list[str]]]:
    """{registry: {"missing": [...], "extra": [...]}} against the catalogue (empty when every registry is complete)."""
    want = set(CATALOGUE)
    gaps: dict[str, dict[str, list[str]]] = {}
    for name, populate, where in REGISTRIES:
        have = set(_registry(populate, where).types())
        missing, extra = sorted(want - have), sorted(have - want)
        if missing or extra:
            gaps[name] = {"missing": missing, "extra": extra}
    return gaps


def test_every_registry_covers_the_catalogue():
    gaps = coverage_gaps()
    lines = [
        f"{reg}: missing {', '.join(g['missing']) or '-'}; not in catalogue {', '.join(g['extra']) or '-'}"
        for reg, g in gaps.items()
    ]
    assert not gaps, "registries disagree with harness/catalogue.py:\n" + "\n".join(lines)


@pytest.mark.parametrize("name,populate,where", REGISTRIES, ids=[r[0] for r in REGISTRIES])
def test_each_registry_has_exactly_the_catalogue_types(name, populate, where):
    have = set(_registry(populate, where).types())
    assert have == set(CATALOGUE), (
        f"{name}: missing {sorted(set(CATALOGUE) - have)}, not in catalogue {sorted(have - set(CATALOGUE))}"
    )


def test_gap_report_names_the_missing_type_and_the_registry(monkeypatch):
    """The coverage check is not vacuous: drop a type from one registry and the report names both."""
    reg = _registry("harness.strategies", "harness.strategies:STRATEGIES")
    impls = dict(reg._impls)
    impls.pop("LRN")
    monkeypatch.setattr(reg, "_impls", impls)
    gaps = coverage_gaps()
    assert gaps["strategies"] == {"missing": ["LRN"], "extra": []}


def test_registering_an_unknown_type_fails():
    reg = Registry("test")
    with pytest.raises(KeyError, match=r"test: unknown Caffe type 'NoSuchLayer'; add it to harness/catalogue.py"):
        reg.register("NoSuchLayer")


def test_registering_a_type_twice_fails_naming_both():
    reg = Registry("test")

    @reg.register("ReLU")
    def first(*a):  # pragma: no cover - never called
        return a

    with pytest.raises(ValueError, match=r"duplicate test for 'ReLU'.*first.*second"):
        @reg.register("ReLU")
        def second(*a):  # pragma: no cover - never called
            return a

    assert reg["ReLU"] is first


def test_registering_a_fork_alias_instead_of_the_canonical_type_fails():
    """Registries are keyed by canonical types; an alias resolves on lookup only."""
    reg = Registry("test")
    with pytest.raises(KeyError, match="DepthwiseConvolution"):
        reg.register("DepthwiseConvolution")

    @reg.register("ConvolutionDepthwise")
    def dw(*a):  # pragma: no cover - never called
        return a

    assert canonical_type("DepthwiseConvolution") == "ConvolutionDepthwise"
    assert reg["DepthwiseConvolution"] is dw
    assert "DepthwiseConvolution" in reg


def test_lookup_of_an_unregistered_type_lists_what_is_supported():
    reg = Registry("test")
    reg.register("ReLU", "TanH")(lambda *a: a)
    with pytest.raises(UnsupportedLayer, match=r"no test for layer type 'Sigmoid'; supported: ReLU, TanH"):
        reg["Sigmoid"]


def test_importing_harness_does_not_import_hypothesis():
    import subprocess
    import sys

    code = "import sys, harness; harness.load_net; assert 'hypothesis' not in sys.modules, 'hypothesis imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
