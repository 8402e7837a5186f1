"""Test support for the reference layer tests: build single Layer objects from prototxt text and feed golden blobs.

Independent of the implementation: it parses with protobuf directly and reads the golden files with NumPy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from google.protobuf import text_format

from harness.net import Layer
from harness.proto import caffe_pb2

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden"


def _blob_array(bp) -> np.ndarray:
    if bp.HasField("shape"):
        shape = tuple(bp.shape.dim)
    elif bp.num or bp.channels or bp.height or bp.width:
        shape = (bp.num, bp.channels, bp.height, bp.width)
    else:
        shape = (len(bp.double_data) or len(bp.data),)
    data = np.asarray(bp.double_data if len(bp.double_data) else bp.data, dtype=np.float32)
    return data.reshape(shape)


class GoldenCase:
    """One golden case: its layers (V2 messages), weights, inputs and real-Caffe blobs."""

    def __init__(self, name: str) -> None:
        d = GOLDEN / name
        self.net = text_format.Parse((d / "net.prototxt").read_text(), caffe_pb2.NetParameter())
        w = caffe_pb2.NetParameter()
        w.ParseFromString((d / "weights.caffemodel").read_bytes())
        self.weights = {lp.name: tuple(_blob_array(b) for b in lp.blobs) for lp in w.layer}
        self.blobs = dict(np.load(d / "blobs.npz"))
        self.inputs = dict(np.load(d / "inputs.npz"))
        # blob name -> golden key of its latest producer, as seen by each layer
        self._feeds: dict[str, dict[str, str]] = {}
        current: dict[str, str] = {}
        for lp in self.net.layer:
            self._feeds[lp.name] = {b: current[b] for b in lp.bottom}
            for t in lp.top:
                current[t] = f"{lp.name}/{t}"

    def layer(self, name: str) -> Layer:
        for lp in self.net.layer:
            if lp.name == name:
                return Layer(lp.name, lp.type, tuple(lp.bottom), tuple(lp.top), lp, self.weights.get(lp.name, ()))
        raise KeyError(name)

    def bottoms(self, name: str, dtype=np.float64) -> list[np.ndarray]:
        lay = self.layer(name)
        return [self.blobs[self._feeds[name][b]].astype(dtype) for b in lay.bottoms]

    def expected(self, name: str) -> list[np.ndarray]:
        lay = self.layer(name)
        return [self.blobs[f"{name}/{t}"] for t in lay.tops]

    def layer_names(self, types: set[str]) -> list[str]:
        return [lp.name for lp in self.net.layer if lp.type in types]


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want| (shapes must match exactly)."""
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if want.size else 0.0
    return diff / scale if scale else diff
