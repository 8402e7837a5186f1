"""Rendering drawn cases: prototxt text (:class:`Enum` literals, nested ``Items``), the case classes :class:`LayerDef`,
:class:`NetCase`, :class:`LayerCase`, and their ``.caffemodel``/``.npz`` files."""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..catalogue import canonical_type, is_source


# ----------------------------------------------------------------------------------------------------------------------
# Rendering: prototxt text and weights
# ----------------------------------------------------------------------------------------------------------------------

class Enum(str):
    """A prototxt enum literal (rendered without quotes)."""


Items = list  # list[tuple[str, Any]]; a value that is a list renders as a nested message


def _fmt(v: Any) -> str:
    if isinstance(v, Enum):
        return str(v)
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        r = repr(float(v))
        return r
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"cannot render {v!r}")


def _render_items(items: Items, indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    for key, value in items:
        if isinstance(value, list):
            lines.append(f"{pad}{key} {{")
            lines.extend(_render_items(value, indent + 1))
            lines.append(f"{pad}}}")
        else:
            lines.append(f"{pad}{key}: {_fmt(value)}")
    return lines


@dataclass(frozen=True, eq=False)
class LayerDef:
    """One Caffe layer of a drawn case: what the prototxt says plus its weight blobs (Caffe shapes, float32)."""

    name: str
    type: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: Items = field(default_factory=list)  # [(field, value | nested items)] after name/type/bottom/top
    blobs: tuple[np.ndarray, ...] = ()

    def items(self) -> Items:
        its: Items = [("name", self.name), ("type", self.type)]
        its += [("bottom", b) for b in self.bottoms]
        its += [("top", t) for t in self.tops]
        return its + list(self.params)

    def to_prototxt(self) -> str:
        return "\n".join(["layer {", *_render_items(self.items(), 1), "}"])


@dataclass(frozen=True, eq=False)
class NetCase:
    """A drawn net: its input arrays (NCHW, float32, seeded), its layers (after the Input layers) and their weights.

    ``inputs`` keeps declaration order; each input blob gets its own ``Input`` layer named after the blob.
    """

    name: str
    inputs: dict[str, np.ndarray]
    layers: tuple[LayerDef, ...]
    note: str = ""  # what the case is biased toward (shown in repr)

    # -- views ---------------------------------------------------------------------------------------------------
    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(int(d) for d in v.shape) for k, v in self.inputs.items()}

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """``{"<layer>/<i>": blob}`` (the npz convention :func:`harness.caffe.load_net` reads)."""
        return {f"{lay.name}/{i}": b for lay in self.layers for i, b in enumerate(lay.blobs)}

    @property
    def types(self) -> list[str]:
        return [lay.type for lay in self.layers]

    def input_layers(self) -> list[LayerDef]:
        """One Input layer per input blob (except those ``layers`` declares with an Input layer of its own)."""
        explicit = {t for lay in self.layers if is_source(lay.type) for t in lay.tops}
        return [
            LayerDef(k, "Input", (), (k,), [("input_param", [("shape", [("dim", int(d)) for d in v.shape])])])
            for k, v in self.inputs.items() if k not in explicit
        ]

    # -- rendering -----------------------------------------------------------------------------------------------
    def to_prototxt(self) -> str:
        """The net as prototxt text: paste it into Caffe or save it for ``caffe-harness check``."""
        parts = [f'name: "{self.name}"']
        parts += [lay.to_prototxt() for lay in (*self.input_layers(), *self.layers)]
        return "\n".join(parts) + "\n"

    def caffemodel_bytes(self) -> bytes:
        """A binary ``.caffemodel`` holding this case's weights (and the layer definitions, as Caffe writes them)."""
        from google.protobuf import text_format

        from ..proto import caffe_pb2

        netp = caffe_pb2.NetParameter()
        text_format.Parse(self.to_prototxt(), netp)
        by_name = {lay.name: lay for lay in self.layers}
        for lp in netp.layer:
            lay = by_name.get(lp.name)
            for b in (lay.blobs if lay is not None else ()):
                bp = lp.blobs.add()
                bp.shape.dim.extend(int(d) for d in b.shape)
                bp.data.extend(np.asarray(b, np.float32).ravel().tolist())
        return netp.SerializeToString()

    def npz_bytes(self, arrays: dict[str, np.ndarray]) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    def write(self, directory: str | os.PathLike | None = None) -> Path:
        """Write ``net.prototxt``, ``weights.caffemodel``, ``weights.npz``, ``inputs.npz`` into ``directory`` (a new
        temporary directory when None) and return it."""
        d = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="harness-case-"))
        d.mkdir(parents=True, exist_ok=True)
        (d / "net.prototxt").write_text(self.to_prototxt())
        (d / "weights.caffemodel").write_bytes(self.caffemodel_bytes())
        (d / "weights.npz").write_bytes(self.npz_bytes(self.weights))
        (d / "inputs.npz").write_bytes(self.npz_bytes(self.inputs))
        return d

    def replay_hint(self, directory: str | os.PathLike) -> str:
        d = Path(directory)
        return (f"caffe-harness check {d / 'net.prototxt'} --weights {d / 'weights.caffemodel'} "
                f"--inputs {d / 'inputs.npz'}")

    def load(self, **kwargs: Any):
        """The case as a :class:`harness.net.Net`, through the real loader (prototxt text + the weight blobs)."""
        from ..caffe import load_net_text

        weights = {lay.name: list(lay.blobs) for lay in self.layers if lay.blobs}
        return load_net_text(self.to_prototxt(), weights=weights or None, **kwargs)

    def describe(self) -> str:
        lines = [self.to_prototxt().rstrip()]
        for k, v in self.inputs.items():
            lines.append(f"# input {k}: shape {tuple(v.shape)}, min {v.min():.4g}, max {v.max():.4g}")
        for k, v in self.weights.items():
            lines.append(f"# weight {k}: shape {tuple(v.shape)}")
        if self.note:
            lines.append(f"# note: {self.note}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(\n{self.describe()}\n)"


@dataclass(frozen=True, eq=False, repr=False)
class LayerCase(NetCase):
    """A one-layer net: Input layer(s) + the layer under test (``self.layer``)."""

    @property
    def layer(self) -> LayerDef:
        return self.layers[-1]

    @property
    def type(self) -> str:
        return canonical_type(self.layer.type)
