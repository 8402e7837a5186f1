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


# ---------------------------------------------------------------------------------------------------- traits

def trait_gaps(traits_table=None) -> list[str]:
    """Every catalogue type states every trait, and every rule or Keras name a trait gives exists: one line per gap,
    naming the type and the trait."""
    import dataclasses

    import keras

    from harness.catalogue import TRAITS, Traits, trait_gaps as table_gaps
    from harness.compare.engine.tolerance import ACCUMULATION, MAGNITUDE

    table = TRAITS if traits_table is None else traits_table
    gaps = list(table_gaps()) if traits_table is None else [
        f"{t}: no traits row in harness/catalogue.py TRAITS" for t in CATALOGUE if t not in table]
    for t, tr in sorted(table.items()):
        for f in dataclasses.fields(Traits):
            if getattr(tr, f.name, None) is None:
                gaps.append(f"{t}: trait {f.name!r} missing")
        if tr.accumulation not in ACCUMULATION:
            gaps.append(f"{t}: trait 'accumulation' names rule {tr.accumulation!r}, which "
                        f"harness/compare/engine/tolerance.py ACCUMULATION does not implement")
        if tr.magnitude not in MAGNITUDE:
            gaps.append(f"{t}: trait 'magnitude' names rule {tr.magnitude!r}, which "
                        f"harness/compare/engine/tolerance.py MAGNITUDE does not implement")
        for variant, classes in tr.keras.items():
            for cls in classes:
                if not hasattr(keras.layers, cls):
                    gaps.append(f"{t}: trait 'keras' ({variant or 'any'}) names {cls!r}, not a keras.layers class")
        for act in tr.activations:
            try:
                keras.activations.get(act)
            except Exception:
                gaps.append(f"{t}: trait 'activations' names {act!r}, not a Keras activation")
    return gaps


def test_every_type_states_every_trait_and_each_names_something_real():
    gaps = trait_gaps()
    assert not gaps, "traits incomplete:\n" + "\n".join(gaps)


def test_trait_gap_report_names_the_type_and_the_trait():
    """Not vacuous: a row dropped, a rule nobody implements and a misspelt Keras class are each named."""
    import dataclasses

    from harness.catalogue import TRAITS

    table = dict(TRAITS)
    table.pop("LRN")
    table["ReLU"] = dataclasses.replace(TRAITS["ReLU"], magnitude="no_such_rule")
    table["Concat"] = dataclasses.replace(TRAITS["Concat"], keras={"": ("Concatenat",)})
    gaps = trait_gaps(table)
    assert gaps == [
        "LRN: no traits row in harness/catalogue.py TRAITS",
        "Concat: trait 'keras' (any) names 'Concatenat', not a keras.layers class",
        "ReLU: trait 'magnitude' names rule 'no_such_rule', which harness/compare/engine/tolerance.py MAGNITUDE does not "
        "implement",
    ]


def test_traits_have_no_defaults():
    """A new row must state every trait: constructing Traits without one fails."""
    from harness.catalogue import Traits

    with pytest.raises(TypeError, match="missing"):
        Traits("no", False, False, "compute", "one", "selection", {})  # activations left out


def test_trait_tables_drive_the_comparator():
    """The comparator's per-type sets are the catalogue's, not copies (a type added to TRAITS reaches matching,
    tolerance, loading and seeded weights)."""
    from harness.catalogue import has_learned_blobs, types_with
    from harness.compare.engine import match
    from harness.compare.engine.tolerance import accumulation_length

    assert match.ACTIVATIONS == {"AbsVal", "Clip", "ELU", "PReLU", "ReLU", "ReLU6", "Sigmoid", "Softmax", "Swish",
                                 "TanH"}
    assert match.PASSIVE_CAFFE == {"Input", "Split", "Silence", "Dropout"}
    assert types_with(linear=True) == {"Convolution", "ConvolutionDepthwise", "Deconvolution", "InnerProduct"}
    assert [has_learned_blobs("Scale", n) for n in (1, 2)] == [True, False]
    assert has_learned_blobs("DepthwiseConvolution", 1) and not has_learned_blobs("ReLU", 1)
    from harness.caffe import load_net_text

    net = load_net_text("""
name: "t"
input: "data" input_shape { dim: 2 dim: 3 dim: 5 dim: 7 }
layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: AVE kernel_h: 2 kernel_w: 3 } }
layer { name: "e" type: "Embed" bottom: "data" top: "e" embed_param { num_output: 4 input_dim: 11 } }
""")
    assert accumulation_length(net.layer("p"), [(2, 3, 5, 7)]) == 6
    assert accumulation_length(net.layer("e"), [(2, 3, 5, 7)]) == 8


def test_the_readme_lists_exactly_the_registries_this_test_enforces():
    """docs/contributing.md ("Adding a layer type") is the list of places a new type needs; it names each registry this
    file checks (and the catalogue's two tables), no more and no fewer."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "contributing.md").read_text()
    steps = text.split("<!-- layer-steps")[1].split("<!-- /layer-steps -->")[0]
    named = set(re.findall(r"@(\w+)\.register", steps)) | set(re.findall(r"catalogue\.py` `(\w+)`", steps))
    enforced = {where.rsplit(":", 1)[1] for _, _, where in REGISTRIES} | {"_SPECS", "TRAITS"}
    assert named == enforced
    for _, populate, where in REGISTRIES:  # each step's file pattern is where that registry's entries live
        folder = populate.replace(".", "/")
        assert f"`{folder}/<family>.py`" in steps, folder


# ----------------------------------------------------------------------- facts keyed by type outside the catalogue

def _fact_tables() -> dict[str, tuple[dict, frozenset | None]]:
    """{table: (the table, the types it must cover exactly; None: any catalogue types)}."""
    from harness import caffe, fillers, params, weights
    from harness.catalogue import TRAITS, types_with
    from harness.compare.diagnose import engine as diag_engine, shape_mismatch
    from harness.compare.engine import evidence, match

    weighted = frozenset(t for t, tr in TRAITS.items() if tr.weighted != "no")
    variants = frozenset(t for t, tr in TRAITS.items() if set(tr.keras) - {""} or set(tr.nonfinite) - {""})
    return {
        "harness/weights.py SEED_BLOBS": (weights.SEED_BLOBS, weighted),
        "harness/weights.py SEED_MOMENTS": (weights.SEED_MOMENTS,
                                            frozenset(t for t, tr in TRAITS.items() if tr.weighted != "yes")),
        "harness/weights.py OUTPUT_SCALE": (weights.OUTPUT_SCALE, types_with(linear=True)),
        "harness/fillers.py FILLERS": (fillers.FILLERS, weighted),
        "harness/params.py VARIANTS": (params.VARIANTS, variants),
        "harness/params.py RELU_FORMS": (params.RELU_FORMS, frozenset(
            t for t, tr in TRAITS.items() if "ReLU" in tr.keras.get("", ()))),  # what a Keras ReLU can stand for
        "harness/weights.py FROM_INPUT_STATS": (weights.FROM_INPUT_STATS, None),
        "harness/caffe.py LOAD_FOLDS": (caffe.LOAD_FOLDS, None),
        "harness/compare/engine/evidence.py _CHECKS": (evidence._CHECKS, None),
        "harness/compare/engine/match.py _PARAM_DISTANCE": (match._PARAM_DISTANCE, None),
        "harness/compare/diagnose/engine.py _SPAN_HYPS": (diag_engine._SPAN_HYPS, None),
        "harness/compare/diagnose/engine.py _OWN_CAUSE": (diag_engine._OWN_CAUSE, None),
        "harness/compare/diagnose/shape_mismatch.py _SHAPE_RULES": (shape_mismatch._SHAPE_RULES, None),
    }


def fact_gaps(tables: dict[str, tuple[dict, frozenset | None]]) -> list[str]:
    """One line per type a table lacks or holds wrongly, naming the table and the type."""
    from harness.catalogue import WINDOWS

    gaps = []
    for name, (table, want) in tables.items():
        keys = set(table)
        if name.endswith("_SHAPE_RULES"):  # keyed by the catalogue's window geometries
            gaps += [f"{name}: {k!r} is not a Traits.window value" for k in sorted(keys - set(WINDOWS))]
            continue
        gaps += [f"{name}: {t!r} is not a catalogue type" for t in sorted(keys - set(CATALOGUE))]
        if want is not None:
            gaps += [f"{name}: no rule for {t}" for t in sorted(want - keys)]
            gaps += [f"{name}: a rule for {t}, which has no such fact" for t in sorted(keys & set(CATALOGUE) - want)]
    return gaps


def test_every_type_has_its_facts_in_each_table():
    gaps = fact_gaps(_fact_tables())
    assert not gaps, "per-type tables disagree with harness/catalogue.py:\n" + "\n".join(gaps)


def test_fact_gap_report_names_the_table_and_the_type():
    """Not vacuous: a seeding rule dropped, a filler rule for a weightless type and a misspelt key are each named."""
    tables = _fact_tables()
    seed, want = tables["harness/weights.py SEED_MOMENTS"]
    tables["harness/weights.py SEED_MOMENTS"] = ({k: v for k, v in seed.items() if k != "Swish"}, want)
    fill, want = tables["harness/fillers.py FILLERS"]
    tables["harness/fillers.py FILLERS"] = ({**fill, "ReLU": fill["Bias"], "Scael": fill["Scale"]}, want)
    assert fact_gaps(tables) == [
        "harness/weights.py SEED_MOMENTS: no rule for Swish",
        "harness/fillers.py FILLERS: 'Scael' is not a catalogue type",
        "harness/fillers.py FILLERS: a rule for ReLU, which has no such fact",
    ]


def test_seeding_a_type_without_a_rule_fails_naming_it(monkeypatch):
    """No silent fallback: a layer whose type has no seeding rule is refused by name."""
    import numpy as np

    from harness.caffe import load_net_text
    from harness.errors import HarnessError
    from harness import weights

    net = load_net_text('input: "data" input_shape { dim: 2 dim: 3 dim: 5 dim: 7 }\n'
                        'layer { name: "act" type: "TanH" bottom: "data" top: "act" }\n'
                        'layer { name: "ip" type: "InnerProduct" bottom: "act" top: "ip" '
                        'inner_product_param { num_output: 4 } }\n')
    seeded = weights.random_weights(net, 1)
    assert seeded.layer("ip").blobs[0].shape == (4, 105) and np.all(np.isfinite(seeded.layer("ip").blobs[0]))
    monkeypatch.delitem(weights.SEED_MOMENTS, "TanH")
    with pytest.raises(HarnessError, match=r"TanH 'act': harness/weights.py SEED_MOMENTS has no seeding rule for "
                                           r"Caffe type 'TanH'"):
        weights.random_weights(net, 1)
    monkeypatch.delitem(weights.SEED_BLOBS, "InnerProduct")
    monkeypatch.setitem(weights.SEED_MOMENTS, "TanH", weights.SEED_MOMENTS["Swish"])
    with pytest.raises(HarnessError, match=r"InnerProduct 'ip': .*SEED_BLOBS has no seeding rule"):
        weights.random_weights(net, 1)


def test_new_traits_answer_for_their_types():
    """The traits the comparator, the artefact pairing and the loader branch on, stated per type."""
    from harness.catalogue import completes, fused_activations, is_source, traits, types_with, window

    assert types_with(source=True) == {"Input"} and is_source("Input") and not is_source("NoSuchType")
    assert {t: window(t) for t in types_with() if window(t)} == {
        "Convolution": "conv", "ConvolutionDepthwise": "conv", "Deconvolution": "deconv", "Pooling": "pool"}
    assert window("DepthwiseConvolution") == "conv" and traits("DepthwiseConvolution").depthwise
    assert completes("BatchNorm", "Scale")
    assert not completes("Scale", "BatchNorm") and not completes("BatchNorm", "Bias")
    assert types_with(flattens=True) == {"InnerProduct", "Flatten", "Reshape"}
    assert types_with(export_fusion="folds") == {"BatchNorm", "Scale", "Bias"}
    assert types_with(export_fusion="absorbs") == {"Convolution", "ConvolutionDepthwise", "Deconvolution",
                                                   "InnerProduct", "Eltwise"}
    assert set(traits("Pooling").nonfinite) == {"AVE"} and traits("Log").nonfinite[""].startswith("Log: ")
    assert fused_activations("tflite") == {"RELU": ("ReLU",), "RELU6": ("ReLU6", "Clip"), "RELU_N1_TO_1": ("Clip",),
                                           "TANH": ("TanH",)}
    assert fused_activations("saved_model") == {}
    assert {t: traits(t).classifier_output for t in types_with() if traits(t).classifier_output} == {
        "Softmax": "probabilities", "InnerProduct": "logits"}


# ------------------------------------------------------------------------------------------------ artefact kinds
# Adding an artefact kind = one module in harness/compare/artefacts/ (the seam functions) + one ArtefactKind entry
# in harness/compare/artefacts/kinds.py.  Everything else (the CLI flag and its options, the manifest keys, the
# refusals, the chain order, the verdict's noun) comes from the entry; this names a kind that lacks a part.

def kind_gaps() -> dict[str, list[str]]:
    """{kind: [what is missing]} over the registry of artefact kinds (empty when every kind is complete)."""
    import argparse
    import inspect

    from harness.commands.check import add_parser
    from harness.compare.artefacts.kinds import KINDS, SEAM
    from harness.manifest import KEYS

    parser = add_parser(argparse.ArgumentParser().add_subparsers())
    flags = {s for a in parser._actions for s in a.option_strings}
    gaps: dict[str, list[str]] = {}
    for name, kind in KINDS.items():
        missing = []
        try:
            mod = kind.load()
        except ImportError as e:
            missing.append(f"module harness/compare/artefacts/{kind.module}.py ({e})")
            mod = None
        for fn in SEAM:
            if mod is not None and not inspect.isfunction(getattr(mod, fn, None)):
                missing.append(f"{kind.module}.{fn}()")
        missing += [f"CLI flag {f}" for f in (kind.flag, *(o.flag for o in kind.options)) if f not in flags]
        missing += [f"manifest key {k}" for k in (kind.manifest_key, *(o.dest for o in kind.options))
                    if k not in KEYS]
        if kind.chained_only and not kind.noun:
            missing.append("noun (what the verdict calls it)")
        if missing:
            gaps[name] = missing
    return gaps


def test_every_artefact_kind_has_its_module_seam_flag_and_manifest_key():
    from harness.compare.artefacts.kinds import KINDS

    assert {"keras", "onnx", "saved_model", "tflite"} <= set(KINDS)
    gaps = kind_gaps()
    assert not gaps, "artefact kinds with a gap:\n" + "\n".join(f"{k}: missing {', '.join(v)}" for k, v in gaps.items())
    assert len({k.flag for k in KINDS.values()}) == len({k.manifest_key for k in KINDS.values()}) == len(KINDS)
    assert len({k.stage for k in KINDS.values()}) == len(KINDS)  # the chain order is total


def test_kind_gap_report_names_the_kind_and_the_missing_part(monkeypatch):
    """The kind check is not vacuous: a kind whose module lacks ``describe`` is named with that part."""
    import harness.compare.artefacts.onnx as onnx_kind

    monkeypatch.delattr(onnx_kind, "describe")
    assert kind_gaps() == {"onnx": ["onnx.describe()"]}


def test_registering_an_artefact_kind_twice_fails():
    from harness.compare.artefacts.kinds import KINDS, register
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="artefact kind 'onnx' registered twice"):
        register(KINDS["onnx"])
