"""Drawing helpers shared by every family: definition-time validation, :class:`Limits`, constructive choices with
preferences, distinct axis sizes, seeded arrays and weights, blob shapes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from ._render import LayerCase, LayerDef


# ----------------------------------------------------------------------------------------------------------------------
# Validation (definition time, like hypothesis.extra.numpy)
# ----------------------------------------------------------------------------------------------------------------------

def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgument(f"{name}={value!r} must be an integer")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise InvalidArgument(f"{name}={value!r} must be {rng}")


@dataclass(frozen=True)
class Limits:
    """Size bounds shared by the per-type strategies (small by default: examples must be cheap)."""

    max_side: int = 9
    max_channels: int = 6
    max_batch: int = 2

    def __post_init__(self) -> None:
        _check_int("max_side", self.max_side, 3, 4096)
        _check_int("max_channels", self.max_channels, 3, 4096)
        _check_int("max_batch", self.max_batch, 1, 1024)


# ----------------------------------------------------------------------------------------------------------------------
# Small drawing helpers
# ----------------------------------------------------------------------------------------------------------------------

def _pick(draw, candidates: Sequence[Any], prefer: Iterable[Callable[[Any], bool]] = ()) -> Any:
    """Draw from ``candidates``; with some probability restricted to those meeting one ``prefer`` predicate.

    Constructive: restriction happens on the candidate list, so nothing is ever rejected."""
    cands = list(candidates)
    if not cands:
        raise ValueError("no candidates")  # a bug in a strategy, never user-facing
    prefer = list(prefer)
    if prefer:
        which = draw(st.integers(0, len(prefer)))  # 0: no preference (shrinks to the plain choice)
        if which:
            sub = [c for c in cands if prefer[which - 1](c)]
            if sub:
                cands = sub
    return _choice(draw, cands)


def _distinct(draw, ranges: Sequence[tuple[int, int]], used: Iterable[int] = ()) -> tuple[int, ...]:
    """One size per range, each different from the others (and from ``used``) whenever its range allows."""
    seen = set(used)
    out = []
    for lo, hi in ranges:
        lo, hi = int(lo), int(hi)
        if hi < lo:
            raise ValueError(f"empty range [{lo}, {hi}]")
        cands = [v for v in range(lo, hi + 1) if v not in seen] or list(range(lo, hi + 1))
        v = _choice(draw, cands)
        seen.add(v)
        out.append(v)
    return tuple(out)


def _choice(draw, seq: Sequence[Any]) -> Any:
    """``draw(st.sampled_from(seq))`` without building a new strategy per call (an integer strategy is cached by
    Hypothesis; a fresh ``sampled_from`` over a new list costs validation on every draw).  Shrinks to ``seq[0]``."""
    seq = seq if isinstance(seq, (list, tuple)) else list(seq)
    return seq[draw(_index(len(seq)))] if len(seq) > 1 else seq[0]


def _index(n: int) -> st.SearchStrategy[int]:
    return st.integers(0, n - 1)


def _rng(draw) -> np.random.Generator:
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


def _normal(rng: np.random.Generator, shape, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale + shift).astype(np.float32)


def _uniform(rng: np.random.Generator, shape, lo: float, hi: float) -> np.ndarray:
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def _data(draw, rng: np.random.Generator, shape, *, allow_all_negative: bool = False) -> np.ndarray:
    """Input values: standard normal (negatives included), sometimes scaled up, sometimes entirely negative."""
    scale = _choice(draw, [1.0, 3.0])
    shift = _choice(draw, [0.0, -4.0]) if allow_all_negative else 0.0
    return _normal(rng, shape, scale, shift)


def _weights(rng: np.random.Generator, shape, fan_in: int) -> np.ndarray:
    return _normal(rng, shape, 1.0 / math.sqrt(max(fan_in, 1)))


def _layer_case(name: str, inputs: dict[str, np.ndarray], layer: LayerDef, note: str = "") -> LayerCase:
    return LayerCase(name=name, inputs=inputs, layers=(layer,), note=note)


def _draw_nchw(draw, max_batch: int, max_channels: int, max_side: int, min_side: int, min_channels: int
               ) -> tuple[int, ...]:
    return _distinct(draw, [(1, max_batch), (min_channels, max_channels), (min_side, max_side),
                            (min_side, max_side)])


def nchw_shapes(*, max_batch: int = 2, max_channels: int = 6, max_side: int = 9, min_side: int = 1,
                min_channels: int = 1) -> st.SearchStrategy[tuple[int, int, int, int]]:
    """An NCHW shape with (whenever the bounds allow) a distinct size on every axis."""
    _check_int("max_batch", max_batch, 1)
    _check_int("max_channels", max_channels, 1)
    _check_int("max_side", max_side, 1)
    _check_int("min_side", min_side, 1, max_side)
    _check_int("min_channels", min_channels, 1, max_channels)
    return _composite(_draw_nchw, max_batch, max_channels, max_side, min_side, min_channels)


def _composite(fn: Callable[..., Any], *args: Any) -> st.SearchStrategy:
    """``st.composite`` over ``fn(draw, *args)``."""
    return st.composite(lambda draw: fn(draw, *args))()


def _shape(draw, lim: Limits, rank: int = 4, *, min_side: int = 1, min_channels: int = 1,
           sides: tuple[tuple[int, int], ...] | None = None, channels: tuple[int, int] | None = None,
           batch: int | None = None) -> tuple[int, ...]:
    """A blob shape of ``rank`` (2: N,C; 3: N,C,L; 4: N,C,H,W) with distinct sizes (``batch`` fixes N: every input
    of one net shares its batch size, as a Keras model's inputs do)."""
    cr = channels or (min_channels, lim.max_channels)
    if sides is None:
        sides = tuple((min_side, lim.max_side) for _ in range(rank - 2))
    nr = (batch, batch) if batch is not None else (1, lim.max_batch)
    return _distinct(draw, [nr, cr, *sides])


def _any_rank(draw) -> int:
    return _choice(draw, [4, 2, 3])


def _axis_spelling(draw, axis: int, ndim: int, default: int | None) -> list[tuple[str, int]]:
    """``axis`` as Caffe accepts it: omitted when it is the default, sometimes written negative."""
    if default is not None and axis == default and draw(st.booleans()):
        return []
    return [("axis", axis - ndim if draw(st.booleans()) else axis)]
