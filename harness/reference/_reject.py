"""Shared error helpers for the reference's layer bindings (messages name layer, field, value and alternatives)."""

from __future__ import annotations

from typing import Any, Iterable

from ..errors import ShapeError, UnsupportedParam


def unsupported(layer: Any, field: str, value: Any, alternatives: Iterable[Any] | str) -> UnsupportedParam:
    """``UnsupportedParam`` for ``layer``: ``<Type> '<name>': <field>=<value> is not supported (<alternatives>)``."""
    alts = alternatives if isinstance(alternatives, str) else ", ".join(str(a) for a in alternatives)
    return UnsupportedParam(f"{layer.type} {layer.name!r}: {field}={value} is not supported ({alts})")


def bad_shape(layer: Any, message: str) -> ShapeError:
    """``ShapeError`` for ``layer`` with Caffe's reason."""
    return ShapeError(f"{layer.type} {layer.name!r}: {message}")


def expect_bottoms(layer: Any, inputs: list, counts: Iterable[int] | int) -> None:
    """Raise ShapeError unless ``len(inputs)`` is one of ``counts``."""
    allowed = (counts,) if isinstance(counts, int) else tuple(counts)
    if len(inputs) not in allowed:
        raise bad_shape(layer, f"expects {' or '.join(map(str, allowed))} bottom(s), got {len(inputs)}")
