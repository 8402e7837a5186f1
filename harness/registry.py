"""One registry per side (shapes, reference, converter, strategies), keyed by Caffe layer type.

Registering a type that :mod:`harness.catalogue` does not list, or registering one twice, fails at import time;
looking up a type that is not registered raises :class:`~harness.errors.UnsupportedLayer` listing what is.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from .catalogue import CATALOGUE, canonical_type
from .errors import UnsupportedLayer

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """Maps canonical Caffe type names to implementations of one kind (``"reference"``, ``"converter"`` ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._impls: dict[str, F] = {}

    def register(self, *caffe_types: str) -> Callable[[F], F]:
        """Decorator registering ``fn`` for one or more canonical Caffe types."""
        for t in caffe_types:
            if t not in CATALOGUE:
                raise KeyError(f"{self.kind}: unknown Caffe type {t!r}; add it to harness/catalogue.py")

        def deco(fn: F) -> F:
            for t in caffe_types:
                old = self._impls.get(t)
                if old is not None:
                    raise ValueError(
                        f"duplicate {self.kind} for {t!r}: {old.__qualname__} vs {fn.__qualname__}"
                    )
                self._impls[t] = fn
            return fn

        return deco

    def __contains__(self, caffe_type: str) -> bool:
        return canonical_type(caffe_type) in self._impls

    def __getitem__(self, caffe_type: str) -> F:
        t = canonical_type(caffe_type)
        try:
            return self._impls[t]
        except KeyError:
            raise UnsupportedLayer(
                f"no {self.kind} for layer type {caffe_type!r}; supported: {', '.join(sorted(self._impls))}"
            ) from None

    def types(self) -> frozenset[str]:
        return frozenset(self._impls)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._impls))

    def __len__(self) -> int:
        return len(self._impls)
