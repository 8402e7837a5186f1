"""``caffe-harness``: the command-line entry point.

Exit codes: 0 success (``check``: equivalent), 1 ``check`` found a divergence, 2 bad input (one line on stderr,
no traceback, nothing written).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from . import __version__
from .commands import COMMANDS
from .backends import requested, select
from .errors import HarnessError, LoadWarning


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caffe-harness",
        description="Check that a Keras model computes exactly what a Caffe model computes, layer by layer.",
    )
    parser.add_argument("--version", action="version", version=f"caffe-harness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        mod = importlib.import_module(f"harness.commands.{name}")
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


# Subcommands that run Keras; the others never import TensorFlow.
_KERAS_COMMANDS = frozenset({"convert", "check"})


def _quiet_tensorflow_import() -> None:
    """Only when Keras runs on TensorFlow (:func:`harness._stdio.quiet_tensorflow_import`)."""
    if requested() != "tensorflow" or "tensorflow" in sys.modules:
        return
    from ._stdio import quiet_tensorflow_import

    quiet_tensorflow_import()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Load warnings (:class:`harness.errors.LoadWarning`) as one ``caffe-harness: warning: ...`` line each; any
    other warning as Python prints it."""
    if issubclass(category, LoadWarning):
        print(f"caffe-harness: warning: {' '.join(str(message).split())}", file=sys.stderr)
        return
    _DEFAULT_SHOWWARNING(message, category, filename, lineno, file, line)


_DEFAULT_SHOWWARNING = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in _KERAS_COMMANDS:
            # Keras picks its backend at first import: --backend must be in KERAS_BACKEND before anything imports it
            select(getattr(args, "backend", None))
            _quiet_tensorflow_import()
        with warnings.catch_warnings():
            warnings.simplefilter("always", LoadWarning)
            warnings.showwarning = _show_warning
            return int(args._run(args) or 0)
    except HarnessError as e:
        msg = " ".join(str(e).split("\n"))
        print(f"caffe-harness: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("caffe-harness: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
