"""Render docs/cli.md, the command-line reference, from the real argument parsers (``harness.cli.build_parser``).

Regenerate after changing a flag, its metavar, default or help text::

    python docs/cli_reference.py          # writes docs/cli.md (PYTHONPATH=. in a checkout without an install)

``tests/test_docs.py`` fails when docs/cli.md differs from what this prints.  The output depends on the parsers
only: no terminal width, no environment, no Python-version-specific argparse formatting (usage lines and option
lists are written here, not by ``argparse.HelpFormatter``).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

OUT = Path(__file__).resolve().parent / "cli.md"
WIDTH = 118
COMMAND = "python docs/cli_reference.py"


def _metavar(action: argparse.Action) -> str:
    if action.choices is not None and action.metavar is None:
        return "|".join(str(c) for c in action.choices)
    if action.metavar is not None:
        return str(action.metavar)
    return action.dest.upper() if action.option_strings else action.dest


def _args(action: argparse.Action) -> str:
    """What follows the flag: ``M``, ``[M]``, ``M [M ...]``; nothing for a switch."""
    if action.nargs == 0:
        return ""
    m = _metavar(action)
    return {None: m, "?": f"[{m}]", "*": f"[{m} ...]", "+": f"{m} [{m} ...]"}.get(action.nargs, m)


def _shown(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions
            if a.help != argparse.SUPPRESS and not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


def _spelling(action: argparse.Action) -> str:
    """``-o, --output M`` for an option, ``M`` for a positional."""
    if not action.option_strings:
        return _metavar(action)
    arg = _args(action)
    return ", ".join(action.option_strings) + (f" {arg}" if arg else "")


def _usage(prog: str, parser: argparse.ArgumentParser) -> str:
    parts = [prog]
    for a in _shown(parser):
        if not a.option_strings:
            parts.append(_metavar(a))
            continue
        text = a.option_strings[-1] + (f" {_args(a)}" if _args(a) else "")
        parts.append(text if a.required else f"[{text}]")
    return _pack(parts, " " * (len(prog) + 1))


def _pack(parts: list[str], indent: str) -> str:
    """The parts on lines of at most WIDTH characters, never breaking inside one part."""
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 1 + len(part) > WIDTH:
            lines.append(indent + part)
        else:
            lines[-1] += " " + part
    return "\n".join(lines)


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:
        params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        if params.get("choices") is not None:
            params["choices"] = ", ".join(str(c) for c in params["choices"])
        text = text % dict(params, prog=prog)
    return _escape(" ".join(text.split()))


def _escape(text: str) -> str:
    """Help text as Markdown shows it literally: ``<layer>`` is not an HTML tag, ``rtol*|caffe|`` no emphasis."""
    return text.replace("\\", "\\\\").replace("<", "\\<").replace("*", "\\*")


def _facts(action: argparse.Action) -> str:
    """Default, repeatability and requiredness, as the parser states them."""
    facts = []
    if action.required and action.option_strings:
        facts.append("required")
    if isinstance(action, argparse._AppendAction):
        facts.append("repeatable")
    default = action.default
    if action.option_strings and action.nargs != 0 and default not in (None, [], argparse.SUPPRESS):
        facts.append(f"default `{default}`")
    return f" ({', '.join(facts)})" if facts else ""


def _bullet(action: argparse.Action, prog: str) -> str:
    return _fill(f"* `{_spelling(action)}`{_facts(action)}: {_help(action, prog)}", "  ")


def _fill(text: str, indent: str = "") -> str:
    return textwrap.fill(text, WIDTH, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def _groups(parser: argparse.ArgumentParser) -> list[tuple[str | None, list[argparse.Action]]]:
    """The parser's argument groups in order: positionals and options first (no title), then each named group."""
    shown = set(map(id, _shown(parser)))
    out: list[tuple[str | None, list[argparse.Action]]] = [(None, [])]
    for g in parser._action_groups:
        actions = [a for a in g._group_actions if id(a) in shown]
        if not actions:
            continue
        if g.title in ("positional arguments", "options", "optional arguments"):
            out[0][1].extend(actions)
        else:
            out.append((g.title, actions))
    return out


def _command(name: str, parser: argparse.ArgumentParser, summary: str) -> list[str]:
    prog = f"caffe-harness {name}"
    lines = [f"## `{prog}`", "", summary[:1].upper() + summary[1:] + ".", ""]
    if parser.description:
        lines += [_fill(_escape(parser.description)), ""]
    lines += ["```text", _usage(prog, parser), "```", ""]
    for title, actions in _groups(parser):
        if title:
            lines += [f"{title[:1].upper() + title[1:]}:", ""]
        lines += [_bullet(a, prog) for a in actions] + [""]
    return lines


def render() -> str:
    from harness.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {c.dest: c.help for c in sub._choices_actions}
    lines = ["# Command-line reference", "",
             f"<!-- Generated from the argument parsers by `{COMMAND}`; do not edit by hand:",
             "     tests/test_docs.py fails when this file and the parsers differ. -->", "",
             _fill(f"{parser.description} Every command takes `-h`/`--help`; `caffe-harness --version` prints the "
                   "version. What each command does, with examples: [checking-a-port.md](checking-a-port.md)."), "",
             "```text", _usage("caffe-harness", parser) + " COMMAND ...", "```", ""]
    for name, p in sub.choices.items():
        lines += _command(name, p, summaries.get(name) or "")
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    text = render()
    if args == ["--check"]:
        if OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is out of date: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
