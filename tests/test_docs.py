"""The docs agree with the code they describe.

* docs/cli.md is what the argument parsers give (``python docs/cli_reference.py`` regenerates it);
* every flag README.md and docs/*.md name -- in backticks, or on a ``caffe-harness``/``pytest`` command line of a shell
  block -- is a flag of the parser it is named with (a ``caffe-harness check ...`` line: check's), so a description
  cannot outlive its flag;
* every repository path and every dotted ``harness.`` name they give in backticks exists, every relative link and
  its ``#anchor`` resolves, and the cause codes listed are the cause table;
* the README is the quickstart and the map: short, its quickstart commands exact, every docs page linked from it.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
REGENERATE = "python docs/cli_reference.py"


def _generator():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "docs" / "cli_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cli_flags() -> dict[str | None, set[str]]:
    """Subcommand -> its ``--flags`` (``""`` -> the top-level parser's), from ``harness.cli.build_parser``."""
    from harness.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))

    def longs(p: argparse.ArgumentParser) -> set[str]:
        return {s for a in p._actions for s in a.option_strings if s.startswith("--")}

    return {"": longs(parser), **{name: longs(p) for name, p in sub.choices.items()}}


_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
_SPAN = re.compile(r"`([^`]+)`")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_SHELL = {"sh", "bash", "shell", "console"}


def _command_flags(words: list[str]) -> tuple[str, str | None, list[str]] | None:
    """(tool, subcommand, flags) of a command line, after any leading ``VAR=value`` words; None for other tools."""
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words = words[1:]
    if not words:
        return None
    flags = _FLAG.findall(" ".join(words))
    if words[0] == "caffe-harness":
        return "caffe-harness", words[1] if len(words) > 1 else None, flags
    if words[0] == "pytest" or words[:3] == ["python", "-m", "pytest"]:
        return "pytest", None, flags
    if words[0].startswith("--"):
        return "any", None, flags  # a flag named alone, or several (`--atol/--rtol`): the CLI's or the plugin's
    return None


def documented_flags(text: str) -> list[tuple[str, str | None, str]]:
    """(tool, subcommand or None, flag) for every flag a Markdown text names as an interface."""
    found = []
    for lang, body in _FENCE.findall(text):
        if lang in _SHELL:
            for line in body.replace("\\\n", " ").splitlines():
                got = _command_flags(line.split(" #")[0].split())
                found += [(got[0], got[1], f) for f in got[2]] if got else []
    for span in _SPAN.findall(_FENCE.sub("", text)):
        got = _command_flags(span.split())
        found += [(got[0], got[1], f) for f in got[2]] if got else []
    return found


def unknown_flags(text: str, flags: dict[str | None, set[str]], pytest_knows) -> list[str]:
    every = set().union(*flags.values())
    bad = []
    for tool, command, flag in documented_flags(text):
        if tool != "caffe-harness":
            ok = pytest_knows(flag) or (tool == "any" and flag in every)
        else:
            ok = flag in (flags[command] | flags[""] if command in flags else every)
        if not ok:
            bad.append(f"{tool} {command or ''} {flag}".replace("  ", " "))
    return bad


def _pytest_knows(config: pytest.Config):
    def knows(flag: str) -> bool:
        try:
            config.getoption(flag)
        except ValueError:
            return False
        return True

    return knows


def test_cli_md_is_what_the_parsers_give():
    have = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert have == _generator().render(), f"docs/cli.md is out of date: run `{REGENERATE}` and commit the result"


def test_every_flag_the_docs_name_is_a_flag_of_its_parser(pytestconfig):
    flags = cli_flags()
    bad = {p.relative_to(ROOT).as_posix(): unknown_flags(p.read_text(encoding="utf-8"), flags,
                                                           _pytest_knows(pytestconfig)) for p in PAGES}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"flags named in the docs that no parser has (a renamed or removed flag?): {bad}"


def test_the_flag_check_sees_a_flag_no_parser_has(pytestconfig):
    """Not vacuous: an unknown flag in backticks, a flag of another subcommand on a command line, an unknown pytest
    flag in a shell block are each named; real ones are not."""
    text = ("Use `--no-such-flag` or `--atol/--rtol`; `caffe-harness info net.prototxt --fold-batchnorm`.\n"
            "```sh\ncaffe-harness convert net.prototxt \\\n    --fold-batchnorm -o m.keras  # --not-a-flag\n"
            "pytest --caffe-mode chained --caffe-nothing\npip install --no-deps x\n```\n")
    assert unknown_flags(text, cli_flags(), _pytest_knows(pytestconfig)) == [
        "pytest --caffe-nothing", "any --no-such-flag", "caffe-harness info --fold-batchnorm"]


_PATH = re.compile(r"(?:harness|tests|benchmarks|fixtures|examples|docs|\.ci)/[\w./-]*|harness_pytest\.py|"
                   r"pyproject\.toml")


def test_every_path_the_docs_name_exists():
    """A backticked repository path (``harness/compare/engine/tolerance.py``) names a file or folder that exists, so
    a module that moved cannot be left behind in the docs; patterns with ``<family>`` or ``*`` are not paths."""
    missing = []
    for page in PAGES:
        for span in _SPAN.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
            for word in span.split():
                word = word.rstrip(".,:;)")
                if _PATH.fullmatch(word) and not re.search(r"[<*{]", word) and not (ROOT / word).exists():
                    missing.append(f"{page.relative_to(ROOT)}: {word}")
    assert not missing, missing


_DOTTED = re.compile(r"(?<![\w.-])harness(?:\.\w+)+")


def _resolves(dotted: str) -> bool:
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_every_dotted_name_the_docs_give_resolves():
    """A backticked ``harness.compare.artefacts.saved_model.compare_saved_model`` or ``harness.errors.LoadWarning`` is
    a module or an attribute that exists (importing it, which loads Keras for ``harness.compare``)."""
    bad = []
    for page in PAGES:
        for span in _SPAN.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
            bad += [f"{page.relative_to(ROOT)}: {n}" for n in _DOTTED.findall(span) if not _resolves(n)]
    assert not bad, bad
    assert not _resolves("harness.compare.no_such_module") and _resolves("harness.net.Location")


def anchors(page: Path) -> set[str]:
    """The ``#anchors`` GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    heads = re.findall(r"^#+ (.+)$", _FENCE.sub("", page.read_text(encoding="utf-8")), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_every_relative_link_and_anchor_resolves():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            path, _, anchor = target.partition("#")
            if re.match(r"\w+:", path):
                continue
            dest = page.parent / path if path else page
            if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in anchors(dest)):
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_the_anchor_rule_is_githubs():
    assert {"json---json", "litert-tflite-convert-and-check", "checking-your-own-keras-port"} <= (
        anchors(ROOT / "docs" / "reports.md") | anchors(ROOT / "docs" / "artefacts.md")
        | anchors(ROOT / "docs" / "checking-a-port.md"))


def test_the_cause_codes_listed_are_the_cause_table():
    """docs/reports.md's "Cause codes" names exactly the public codes of ``harness.compare.reports.causes``."""
    from harness.compare.reports.causes import CAUSES

    text = (ROOT / "docs" / "reports.md").read_text(encoding="utf-8")
    section = text.split("\n## Cause codes\n")[1].split("\n## ")[0]
    listed = {c for c in _SPAN.findall(section) if re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", c)}
    assert listed == set(CAUSES), (sorted(listed - set(CAUSES)), sorted(set(CAUSES) - listed))


def test_the_readme_is_the_quickstart_and_the_map():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    assert 'pip install ".[test,report]" && caffe-harness check fixtures/zoo/alexnet.prototxt\n' in text
    assert "\npython -m pytest -n 2\n" in text
    unlinked = [d.name for d in DOCS if f"(docs/{d.name})" not in text]
    assert not unlinked, f"docs pages the README's map does not link: {unlinked}"
