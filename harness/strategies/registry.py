"""The strategy registry (Caffe type -> ``fn(limits) -> SearchStrategy[LayerCase]``) and the decorator the family
modules register with."""

from __future__ import annotations

from typing import Callable

import numpy as np
from hypothesis import strategies as st

from ..registry import Registry
from ._arrays import Limits, _composite, _data
from ._render import LayerCase


STRATEGIES: Registry = Registry("strategy")
"""Caffe type -> ``fn(limits: Limits) -> SearchStrategy[LayerCase]``."""


def _case(caffe_type: str) -> Callable[[Callable[..., LayerCase]], Callable[[Limits], st.SearchStrategy]]:
    """Register ``fn(draw, lim) -> LayerCase`` as the strategy factory for ``caffe_type``."""

    def deco(fn: Callable[..., LayerCase]) -> Callable[[Limits], st.SearchStrategy]:
        def factory(lim: Limits) -> st.SearchStrategy:
            return _composite(fn, lim)

        factory.__qualname__ = factory.__name__ = f"strategy_{caffe_type}"
        factory.__doc__ = fn.__doc__
        STRATEGIES.register(caffe_type)(factory)
        return factory

    return deco


def _inputs(rng, draw, shapes: dict[str, tuple[int, ...]], **kw) -> dict[str, np.ndarray]:
    return {k: _data(draw, rng, s, **kw) for k, s in shapes.items()}


def _maybe_inplace(draw, name: str, bottom: str) -> tuple[str, ...]:
    return (bottom,) if draw(st.booleans()) else (name,)
