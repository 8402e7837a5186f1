"""Option declarations shared by the subcommands: each flag's name, metavar, action, default and type are declared
here once; a command passes the help text where its wording is its own (the texts are part of the CLI's interface)."""

from __future__ import annotations

import argparse

INPUT_SHAPE_HELP = ("NCHW shape of a net input (repeatable): overrides the prototxt's; needed for a train_val net "
                    "whose Data layer states none, unless --input/--inputs give the arrays")
INPUT_SHAPE_HELP_SHORT = "NCHW shape of a net input (repeatable); needed for train_val nets with Data layers"


def add_prototxt(p: argparse.ArgumentParser, help: str, *, metavar: str | None = None) -> None:
    p.add_argument("prototxt", metavar=metavar, help=help)


def add_weights(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--weights", metavar="FILE", help=help)


def add_input(p: argparse.ArgumentParser, help: str) -> None:
    """``--input NAME=FILE.npy`` (repeatable; read by :func:`harness.commands._io.read_inputs`)."""
    p.add_argument("--input", metavar="NAME=FILE.npy", action="append", default=[], help=help)


def add_inputs(p: argparse.ArgumentParser, help: str) -> None:
    """``--inputs FILE.npz`` (read by :func:`harness.commands._io.read_inputs`)."""
    p.add_argument("--inputs", metavar="FILE.npz", help=help)


def add_input_shape(p: argparse.ArgumentParser, help: str = INPUT_SHAPE_HELP_SHORT) -> None:
    """``--input-shape NAME=N,C,H,W`` (repeatable; parsed by :func:`harness.commands._io.parse_input_shapes`)."""
    p.add_argument("--input-shape", metavar="NAME=N,C,H,W", action="append", default=[], help=help)


def add_seed(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--seed", type=int, default=0, help=help)


BACKEND_HELP = ("Keras backend to run the model on: tensorflow, jax or torch (default: $KERAS_BACKEND, else tensorflow); "
                "set before Keras is imported")


def add_backend(p: argparse.ArgumentParser, help: str = BACKEND_HELP) -> None:
    """``--backend tensorflow|jax|torch`` (applied by :func:`harness.backends.select` in ``cli.main`` before anything
    imports Keras)."""
    p.add_argument("--backend", choices=("tensorflow", "jax", "torch"), default=None, help=help)
