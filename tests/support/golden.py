"""The golden cases of ``fixtures/golden`` (real Caffe's blobs) and where the suite's fixtures live.

* :data:`ROOT`, :data:`GOLDEN`, :data:`ZOO` -- the repository, ``fixtures/golden`` and ``fixtures/zoo``;
* :func:`golden_cases` -- the names of the golden cases (folders with a ``net.prototxt``);
* :func:`golden` -- one case through the loader: (net with its weights when it has any, real-Caffe blobs
  ``{"<layer>/<top>": array}``, inputs);
* :func:`golden_bottoms` -- the bottoms one layer of a loaded golden net read in Caffe;
* :class:`GoldenCase` -- one case read *independently of the implementation* (protobuf and NumPy only), for the
  reference layer tests; :func:`rel_err` is their measure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from google.protobuf import text_format

from harness.net import Layer
from harness.proto import caffe_pb2

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "fixtures" / "golden"
ZOO = ROOT / "fixtures" / "zoo"


def golden_cases() -> list[str]:
    """The golden cases' names, sorted."""
    return sorted(p.name for p in GOLDEN.iterdir() if (p / "net.prototxt").is_file())


def golden(case: str):
    """(net, blobs, inputs) of ``fixtures/golden/<case>``: the net with ``weights.caffemodel`` when the case has one,
    real Caffe's ``"<layer>/<top>"`` blobs and the input arrays."""
    from harness.caffe import load_net

    d = GOLDEN / case
    weights = d / "weights.caffemodel"
    net = load_net(d / "net.prototxt", weights if weights.exists() else None)
    with np.load(d / "blobs.npz") as b, np.load(d / "inputs.npz") as i:
        return net, {k: b[k] for k in b.files}, {k: i[k] for k in i.files}


def golden_bottoms(net, blobs: dict[str, np.ndarray], inputs: dict[str, np.ndarray], layer) -> list[np.ndarray]:
    """The bottoms ``layer`` read in Caffe: each blob's value after the last earlier layer that wrote it."""
    written: dict[str, str] = {}
    for lay in net.layers:
        if lay.name == layer.name:
            break
        for t in lay.tops:
            written[t] = lay.name
    out = []
    for b in layer.bottoms:
        key = f"{written[b]}/{b}" if b in written else None
        out.append(blobs[key] if key in blobs else inputs[b])
    return out


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
    """max |got - want| / max |want| (shapes must match exactly); the absolute error where ``want`` is all zero
    (where :func:`support.max_rel_err` says inf)."""
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if want.size else 0.0
    return diff / scale if scale else diff
