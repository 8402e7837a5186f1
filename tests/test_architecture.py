"""The import graph of the package: no cycle, and every import runs down the layers of docs/architecture.md

    proto / errors / catalogue / registry / net / params  ->  shapes  ->  loading (caffe)  ->
    reference | convert | strategies  ->  weights  ->  compare  ->  manifest  ->  commands | plugin  ->  cli

with compare/ itself in wings, each importing only the wings below it:

    reports  ->  diagnose  ->  engine  ->  layer0  ->  artefacts | dataset  ->  repro, the package face

(a module may import its own component and anything on a lower layer; the reference, the converter and the
strategies never import each other: they are separate derivations of Caffe's rules).  Read from the source with
``ast``, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS: list[tuple[str, ...]] = [
    ("harness", "harness.errors", "harness.catalogue", "harness.registry", "harness.net", "harness.params",
     "harness.proto", "harness._atomic", "harness.upgrade", "harness.fillers", "harness._keras_registration",
     "harness.locations", "harness.backends",
     "harness._stdio",  # native (C++) stderr capture: LiteRT and the TFLite converter, used by convert and compare
     "harness.threads"),  # BLAS / TensorFlow thread counts from the free cores
    ("harness.shapes",),
    ("harness.caffe",),
    ("harness.reference", "harness.convert", "harness.strategies"),
    ("harness.weights",),
    # compare/ in wings, each importing only the wings below it (docs/architecture.md):
    ("harness.compare.reports",),  # results, the report and its renderings, annotations, SARIF, the cause table
    ("harness.compare.diagnose",),
    ("harness.compare.engine",),  # inputs, loading, match, evaluation, passes, tolerance, judge, evidence, divergence
    ("harness.compare.layer0",),
    ("harness.compare.artefacts", "harness.compare.dataset"),
    ("harness.compare.repro", "harness.compare"),  # the package face re-exports every wing
    ("harness.manifest",),
    ("harness.commands", "harness_pytest"),
    ("harness.cli", "harness.pytest_plugin"),  # the command line over the commands; the plugin's old name
]
RANK = {c: i for i, layer in enumerate(LAYERS) for c in layer}


def _modules() -> dict[str, Path]:
    mods = {"harness_pytest": ROOT / "harness_pytest.py"}
    for f in (ROOT / "harness").rglob("*.py"):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = f
    return mods


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (``from .x import y`` resolves to ``.x.y`` when that is a module)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rpartition(".")[0]
        out: set[str] = set()
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.ImportFrom):
                base = pkg.split(".")[: len(pkg.split(".")) - (n.level - 1)] if n.level else []
                tgt = ".".join(base + ([n.module] if n.module else []))
                subs = [f"{tgt}.{a.name}" for a in n.names if f"{tgt}.{a.name}" in mods]
                out.update(subs or ([tgt] if tgt in mods else []))
            elif isinstance(n, ast.Import):
                out.update(a.name for a in n.names if a.name in mods)
        out.discard(m)
        graph[m] = out
    return graph


WINGS = "harness.compare."


def component(m: str) -> str:
    """A module's layer: its top-level package, or its wing inside ``harness.compare``."""
    parts = m.split(".")
    return ".".join(parts[:3] if m.startswith(WINGS) else parts[:2])


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, targets in sorted(graph.items()):
        cm = component(m)
        for t in sorted(targets):
            ct = component(t)
            if ct == cm or (RANK[ct] == 0 and RANK[cm] == 0):
                continue
            if RANK[ct] >= RANK[cm]:
                bad.append(f"{m} imports {t}: {ct} is not below {cm}")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_package_module_has_a_layer():
    missing = sorted({component(m) for m in import_graph()} - set(RANK))
    assert not missing, f"modules on no layer of docs/architecture.md: {missing}"


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_every_import_runs_down_the_layers():
    assert layering_violations(import_graph()) == []


def test_the_checks_see_a_violation_and_a_cycle():
    """Not vacuous: an upward import (across packages and across compare's wings) and a two-module circle are both
    reported."""
    g = {"harness.shapes._infer": {"harness.compare.engine.comparison"},
         "harness.compare.engine.comparison": {"harness.compare.reports.result"},
         "harness.compare.reports.result": {"harness.compare.engine.comparison"},
         "harness.reference.conv": {"harness.convert.conv"}}
    assert layering_violations(g) == [
        "harness.compare.reports.result imports harness.compare.engine.comparison: harness.compare.engine is not below"
        " harness.compare.reports",
        "harness.reference.conv imports harness.convert.conv: harness.convert is not below harness.reference",
        "harness.shapes._infer imports harness.compare.engine.comparison: harness.compare.engine is not below"
        " harness.shapes",
    ]
    assert cycles(g) == [["harness.compare.engine.comparison", "harness.compare.reports.result"]]


MAX_FUNCTION_LINES = 60


def long_functions(root: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:line name (n lines)`` of every function in ``root``'s Python files longer than ``limit`` lines."""
    long = []
    for f in sorted(root.rglob("*.py")):
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > limit:
                long.append(f"{f.relative_to(root.parent)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)")
    return long


def test_no_function_in_harness_is_longer_than_60_lines():
    long = long_functions(ROOT / "harness")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_the_length_check_sees_a_long_function(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "m.py").write_text("def short():\n    return 1\n\n\ndef long():\n" + body)
    assert [line.split(" ", 1)[1] for line in long_functions(tmp_path)] == [f"long ({MAX_FUNCTION_LINES + 1} lines)"]


# Per-type knowledge lives in harness/catalogue.py (traits) and in registries keyed by type; a comparison of a layer's
# type with a Caffe type name elsewhere is a per-type fact written at its point of use.  The few left say, in a
# comment, why they are not a trait.
MAX_TYPE_COMPARISONS = 20


def _type_names() -> set[str]:
    from harness.catalogue import CATALOGUE, canonical_type

    aliases = {a for spec in CATALOGUE.values() for a in spec.aliases}
    assert all(canonical_type(a) in CATALOGUE for a in aliases)
    return set(CATALOGUE) | aliases


def _names_in(node: ast.AST, names: set[str]) -> set[str]:
    """The Caffe type names a comparison operand holds: a string constant, or constants of a tuple/set/list."""
    elts = node.elts if isinstance(node, (ast.Tuple, ast.Set, ast.List)) else [node]
    return {e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value in names}


def type_comparisons(root: Path, names: set[str]) -> list[str]:
    """``path:line  source`` of every ``ast.Compare`` with a Caffe type name among its operands (either side),
    catalogue.py excluded."""
    hits = []
    for f in sorted(root.rglob("*.py")):
        if f == ROOT / "harness" / "catalogue.py":
            continue
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.Compare) and any(_names_in(o, names) for o in (n.left, *n.comparators)):
                hits.append(f"{f.relative_to(root.parent)}:{n.lineno}  {ast.unparse(n)}")
    return hits


def test_type_name_comparisons_outside_the_catalogue_are_few():
    hits = type_comparisons(ROOT / "harness", _type_names())
    assert len(hits) <= MAX_TYPE_COMPARISONS, (
        f"{len(hits)} comparisons with a Caffe type name outside harness/catalogue.py (at most "
        f"{MAX_TYPE_COMPARISONS}; make the fact a trait or a registry keyed by type):\n" + "\n".join(hits))


def test_the_comparison_count_sees_every_spelling(tmp_path):
    (tmp_path / "m.py").write_text(
        "def f(lay, t):\n"
        "    a = lay.kind == 'Pooling'\n"
        "    b = 'Scale' != t\n"
        "    c = t in ('ReLU', 'relu')\n"
        "    d = t not in {'DepthwiseConvolution'}\n"
        "    e = t == 'pool' or t in ('relu',)\n"  # not type names
        "    return a, b, c, d, e\n")
    hits = type_comparisons(tmp_path, _type_names())
    assert [h.split(":", 1)[1] for h in hits] == [
        "2  lay.kind == 'Pooling'", "3  'Scale' != t", "4  t in ('ReLU', 'relu')",
        "5  t not in {'DepthwiseConvolution'}"]
