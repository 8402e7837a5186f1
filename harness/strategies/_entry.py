"""The public single-layer entry points :func:`layer_case` and :func:`layer_cases`."""

from __future__ import annotations

from typing import Iterable

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from ..catalogue import canonical_type
from ._arrays import Limits
from ._render import LayerCase
from .registry import STRATEGIES


def _validate_types(types: Iterable[str] | str | None) -> list[str]:
    if types is None:
        return sorted(STRATEGIES.types())
    if isinstance(types, str):
        types = [types]
    out = []
    for t in types:
        c = canonical_type(t)
        if c not in STRATEGIES:
            raise InvalidArgument(f"types: no strategy for Caffe type {t!r}; known: {', '.join(sorted(STRATEGIES))}")
        out.append(c)
    if not out:
        raise InvalidArgument("types must name at least one Caffe type")
    return out


def layer_case(caffe_type: str, *, max_side: int = 9, max_channels: int = 6, max_batch: int = 2
               ) -> st.SearchStrategy[LayerCase]:
    """A one-layer net of ``caffe_type`` (Input layer(s) + the layer), with seeded inputs and weights."""
    (t,) = _validate_types([caffe_type])
    lim = _limits(max_side, max_channels, max_batch)
    return STRATEGIES[t](lim)


def _limits(max_side: int, max_channels: int, max_batch: int) -> Limits:
    try:
        return Limits(max_side=max_side, max_channels=max_channels, max_batch=max_batch)
    except InvalidArgument:
        raise
    except Exception as exc:  # pragma: no cover - defensive
        raise InvalidArgument(str(exc)) from None


def layer_cases(types: Iterable[str] | str | None = None, *, max_side: int = 9, max_channels: int = 6,
                max_batch: int = 2) -> st.SearchStrategy[LayerCase]:
    """A one-layer net of one of ``types`` (default: every catalogued type), with seeded inputs and weights.

    ``max_side`` bounds the spatial sizes of the inputs (>= 3), ``max_channels`` the channel counts (>= 3),
    ``max_batch`` the batch (>= 1).  Every axis gets a distinct size wherever the bounds allow."""
    ts = _validate_types(types)
    lim = _limits(max_side, max_channels, max_batch)
    return st.one_of([STRATEGIES[t](lim) for t in ts])
