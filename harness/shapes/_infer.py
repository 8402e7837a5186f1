"""Net-level shape inference: Caffe's graph checks, per-layer shapes in execution order, weight blob checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Sequence

from ..catalogue import CATALOGUE, is_source
from ..errors import HarnessError, ShapeError
from ..net import Layer, Net
# importing the family modules registers their rules
from . import (activation, affine, conv, detection, eltwise, io, norm, pooling, reduce,  # noqa: F401
               resize, shape)
from ._checks import Shape, _fmt, _who, count
from .detection import DATA_DEPENDENT_TYPES
from .registry import MACS, PARAM_SHAPES, SHAPES

def param_shapes(layer: Layer, bottom_shapes: Sequence[Shape]) -> list[Shape]:
    """The weight blob shapes Caffe creates for ``layer`` given its bottom shapes (``[]`` for weightless layers)."""
    bottoms = [tuple(int(d) for d in s) for s in bottom_shapes]
    if layer.kind in PARAM_SHAPES:
        return [tuple(int(d) for d in s) for s in PARAM_SHAPES[layer.kind](layer, bottoms)]
    return []


@dataclass(frozen=True)
class LayerShapes:
    """Shapes of one layer: bottoms and tops (Caffe NCHW order), parameter blobs, multiply-adds."""

    name: str
    type: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    bottom_shapes: tuple[Shape, ...]
    top_shapes: tuple[Shape, ...]
    param_shapes: tuple[Shape, ...]
    macs: int
    data_dependent: bool = False  # top sizes are an upper bound (DetectionOutput)

    @property
    def param_count(self) -> int:
        return sum(count(s) for s in self.param_shapes)

    @property
    def top_bytes(self) -> int:
        """float32 bytes of this layer's tops (what recording them needs)."""
        return 4 * sum(count(s) for s in self.top_shapes)


@dataclass(frozen=True)
class NetShapes:
    """Result of :func:`infer_shapes`: per layer :class:`LayerShapes` in execution order; ``blobs`` maps each blob to
    its (final) shape; ``keys`` maps every ``"<layer>/<top>"`` record key to its shape."""

    net: Net
    layers: tuple[LayerShapes, ...]
    blobs: Mapping[str, Shape] = field(default_factory=lambda: MappingProxyType({}))
    keys: Mapping[str, Shape] = field(default_factory=lambda: MappingProxyType({}))

    def __getitem__(self, layer_name: str) -> LayerShapes:
        for ls in self.layers:
            if ls.name == layer_name:
                return ls
        raise KeyError(f"net {self.net.name!r} has no layer {layer_name!r}")

    def bottom_shapes(self, layer_name: str) -> list[Shape]:
        return list(self[layer_name].bottom_shapes)

    @property
    def param_count(self) -> int:
        return sum(ls.param_count for ls in self.layers)

    @property
    def macs(self) -> int:
        return sum(ls.macs for ls in self.layers)

    def activation_bytes(self, itemsize: int = 4) -> int:
        """Bytes to hold every recorded top (one array per ``"<layer>/<top>"`` key, in-place layers included, as the
        reference records them) at ``itemsize`` bytes per value."""
        return itemsize * sum(count(s) for s in self.keys.values())

    def largest_blob(self) -> tuple[str, Shape]:
        key = max(self.keys, key=lambda k: count(self.keys[k]), default="")
        return key, self.keys.get(key, ())


def infer_shapes(net: Net) -> NetShapes:
    """Run Caffe's shape rules over ``net`` in execution order.

    Checks the graph as Caffe's ``Net::Init`` does: every bottom must be a net input or a top of an earlier layer
    (``Unknown bottom blob``), and a top may be produced twice only in place (``Duplicate blobs produced by multiple
    sources``).  Errors are prefixed with the net's source file."""
    try:
        return _infer(net)
    except HarnessError as e:
        src = net.source or "<net>"
        msg = str(e)
        if not msg.startswith(src):
            raise type(e)(f"{src}: {msg}") from None
        raise


def _infer(net: Net) -> NetShapes:
    blobs: dict[str, Shape] = {}
    keys: dict[str, Shape] = {}
    out: list[LayerShapes] = []
    if not net.layers:
        raise ShapeError(f"net {net.name!r} has no layers")
    for lay in net.layers:
        if lay.kind not in CATALOGUE:
            # the loader refuses these; be explicit if a hand-built net slips through
            from ..catalogue import supported_types

            raise ShapeError(f"layer {lay.name!r}: unknown type {lay.type!r}; supported: {', '.join(supported_types())}")
        bshapes: list[Shape] = []
        for b in lay.bottoms:
            if b not in blobs:
                raise ShapeError(f"{_who(lay)}: bottom {b!r} is not a net input nor a top of an earlier layer")
            bshapes.append(blobs[b])
        for i, t in enumerate(lay.tops):
            if t in blobs and not (i < len(lay.bottoms) and lay.bottoms[i] == t):
                raise ShapeError(f"{_who(lay)}: top {t!r} is already produced by an earlier layer and this layer is "
                                 f"not in place on it")
        if is_source(lay.kind) and not len(lay.p("input_param").shape) and all(t in net.inputs for t in lay.tops):
            tops = [tuple(int(d) for d in net.inputs[t]) for t in lay.tops]
            for t, s in zip(lay.tops, tops):
                if not s or any(d <= 0 for d in s):
                    raise ShapeError(f"{_who(lay)}: input {t!r} shape {_fmt(s)} must have positive dims")
        else:
            tops = [tuple(int(d) for d in s) for s in SHAPES[lay.kind](lay, bshapes)]
        if len(tops) != len(lay.tops):
            raise ShapeError(f"{_who(lay)}: produced {len(tops)} shapes for {len(lay.tops)} tops")
        for t, s in zip(lay.tops, tops):
            if t in blobs and blobs[t] != s:  # in-place must keep the shape
                raise ShapeError(f"{_who(lay)}: in place on {t!r} but changes its shape {_fmt(blobs[t])} -> {_fmt(s)}")
            blobs[t] = s
            keys[f"{lay.name}/{t}"] = s
        pshapes = param_shapes(lay, bshapes)
        macs = int(MACS[lay.kind](lay, bshapes, tops)) if lay.kind in MACS else 0
        out.append(LayerShapes(lay.name, lay.type, tuple(lay.bottoms), tuple(lay.tops), tuple(bshapes), tuple(tops),
                               tuple(pshapes), macs, lay.kind in DATA_DEPENDENT_TYPES))
    return NetShapes(net, tuple(out), MappingProxyType(blobs), MappingProxyType(keys))


def _legacy_equal(expected: Shape, actual: Shape) -> bool:
    """Caffe's ``Blob::ShapeEquals`` accepts legacy (num, channels, height, width) blobs right-aligned: leading 1s
    do not count.  A 0-D blob equals a one-value blob stored as ``(1,)``."""

    def strip(s: Shape) -> Shape:
        s = tuple(int(d) for d in s)
        while s and s[0] == 1:
            s = s[1:]
        return s

    return tuple(expected) == tuple(actual) or strip(expected) == strip(actual)


def check_blob_shapes(net: Net, net_shapes: NetShapes | None = None, *, weights_source: str | None = None) -> None:
    """Compare every attached weight blob with :func:`param_shapes` (Caffe's ``CopyTrainedLayersFrom`` checks).
    Raises :class:`ShapeError` naming the weights file (``weights_source``, else ``net.meta["weights"]``), the net
    file, the layer, blob index, expected and actual shape."""
    ns = net_shapes or infer_shapes(net)
    src = net.source or "<net>"
    wsrc = weights_source or (net.meta.get("weights") if net.meta else None)
    if wsrc:
        src = f"{wsrc} (weights for {src})"
    for lay, ls in zip(net.layers, ns.layers):
        if not lay.blobs:
            continue
        exp = ls.param_shapes
        if len(lay.blobs) != len(exp):
            raise ShapeError(f"{src}: {_who(lay)}: weights have {len(lay.blobs)} blobs, the layer expects "
                             f"{len(exp)} ({', '.join(_fmt(s) for s in exp) or 'none'})")
        for i, (blob, e) in enumerate(zip(lay.blobs, exp)):
            actual = tuple(int(d) for d in getattr(blob, "shape", ()))
            if not _legacy_equal(e, actual):
                raise ShapeError(f"{src}: {_who(lay)}: blob {i} has shape {_fmt(actual)}, expected {_fmt(e)}")


def expected_param_shapes(net: Net) -> dict[str, list[Shape]]:
    """``{layer name: [expected blob shapes]}`` for every layer with weights (used by the loader to normalise
    Caffe's legacy 4-D blob shapes)."""
    return {ls.name: list(ls.param_shapes) for ls in infer_shapes(net).layers if ls.param_shapes}


# Every catalogue type must have a shape rule (a missing one fails at import, like a duplicate).
_missing = sorted(set(CATALOGUE) - SHAPES.types())
if _missing:  # pragma: no cover - guarded by tests/test_shapes.py
    raise ImportError(f"harness.shapes: no shape rule for {', '.join(_missing)}")
