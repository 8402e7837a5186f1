"""The immutable description of a loaded Caffe net (V2 form, one phase, weights attached).

Produced by :func:`harness.caffe.load_net`; consumed by shape inference, the reference, the converter and the
comparator.  Layers are in execution order (prototxt order, as Caffe runs them).  ``Layer.param`` is the V2
``LayerParameter`` message with its ``blobs`` cleared (weights live in ``Layer.blobs`` as read-only NumPy arrays);
treat it as read-only.  ``Layer.location`` says where the prototxt writes the layer (:class:`Location`); it takes no
part in equality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from .catalogue import canonical_type


@dataclass(frozen=True)
class Location:
    """Where a layer is written: the prototxt ``file`` and the 1-based ``line`` and ``column`` at which its
    ``layer {`` / ``layers {`` block starts (:mod:`harness.locations`).  ``str()`` is ``file:line``, the spelling
    editors and terminals turn into a link."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def who(layer: "Layer") -> str:
    """How every message names a layer: ``<Type> '<name>'`` (the type as the prototxt spells it)."""
    return f"{layer.type} {layer.name!r}"


@dataclass(frozen=True)
class Layer:
    name: str
    type: str  # as written in the prototxt (after V1/V0 upgrade), e.g. "Convolution", "DepthwiseConvolution"
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    param: Any  # caffe_pb2.LayerParameter (V2), blobs cleared
    blobs: tuple[np.ndarray, ...] = ()  # Caffe shapes (legacy 4-D shapes normalised), read-only
    # where the prototxt writes it (None for a layer not read from text); not part of equality: the same layer
    # written on another line is the same layer
    location: Location | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        """Canonical catalogue type (fork aliases resolved)."""
        return canonical_type(self.type)

    @property
    def in_place(self) -> bool:
        return bool(self.tops) and self.tops == self.bottoms[: len(self.tops)]

    def p(self, field_name: str) -> Any:
        """The parameter sub-message ``field_name`` (defaults when unset)."""
        return getattr(self.param, field_name)

    def keys(self) -> list[str]:
        """Blob-record keys ``"<layer>/<top>"`` this layer produces."""
        return [f"{self.name}/{t}" for t in self.tops]


@dataclass(frozen=True)
class Net:
    name: str
    layers: tuple[Layer, ...]
    inputs: Mapping[str, tuple[int, ...]]  # net input blob -> NCHW shape, in declaration order
    outputs: tuple[str, ...]  # tops no layer consumes, in prototxt order
    has_weights: bool = False
    source: str = ""  # the prototxt path (or "<string>")
    meta: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def layer(self, name: str) -> Layer:
        for lay in self.layers:
            if lay.name == name:
                return lay
        raise KeyError(f"net {self.name!r} has no layer {name!r}")

    def keys(self) -> list[str]:
        """Every ``"<layer>/<top>"`` key in execution order (what the reference records)."""
        return [k for lay in self.layers for k in lay.keys()]

    def producers(self) -> dict[str, list[str]]:
        """Blob -> names of the layers that write it, in order (in-place layers rewrite a blob)."""
        out: dict[str, list[str]] = {}
        for lay in self.layers:
            for t in lay.tops:
                out.setdefault(t, []).append(lay.name)
        return out

    def consumers(self) -> dict[str, list[str]]:
        """Blob -> names of the layers that read it, in order."""
        out: dict[str, list[str]] = {}
        for lay in self.layers:
            for b in lay.bottoms:
                out.setdefault(b, []).append(lay.name)
        return out
