"""Running both sides: the chained and isolated Keras evaluations, and the Caffe-side expectations and bounds.

Keras side (no per-layer retracing, no sub-model construction): a small eager evaluator walks the Keras functional
graph from the tensors whose values are known and calls each layer once on NumPy/backend values.

* **chained**: only the model inputs are known; every matched output is computed in one pass (memoised).
* **isolated**: the model inputs *and every matched tensor* are known, set to the reference's values (float32,
  converted to the tensor's layout); each matched tensor is then recomputed from its producing node.  So a Keras layer
  (or the helper layers in front of it: ``ZeroPadding2D``, ``Flatten``, ``Permute`` ...) sees exactly the reference's
  values of its Caffe bottoms.  For a converted model that is the subgraph from the Keras tensors of the Caffe bottoms
  to the layer's output; for a hand-written port, the Keras layer's inbound tensors mapped back to reference blobs.

Caffe side (float64, the registered reference functions, layer by layer):

* isolated expectation: the reference record itself.
* chained: an element passes when ``|keras - ref| <= bound``; when some element does not, the reference is re-run on
  the Keras chained values of the matched blobs (unmatched Caffe layers in between are recomputed), ``f(x + e)``, and
  an element also passes when ``|keras - f(x + e)| <= bound``: the layer adds no more than float32 rounding to the
  error it received.  The reported statistics are against the reference (the error a user sees), and
  ``propagated_max_abs = max |f(x + e) - f(x)|`` (the part it received) is set when the re-run was needed.  When an
  upstream bug moved the operating point (inputs off by more than 1e-3 of their scale), the bound is also derived at
  the chained values.  A user override (atol/rtol) is applied to ``|keras - ref|`` only.
* bound: :func:`harness.compare.engine.tolerance.derived_bound` on the reference inputs; for a pair whose Keras layer computes
  several Caffe layers (fused activation, BatchNorm+Scale) the bounds of the earlier layers are propagated through the
  later ones (``|g(v + B) - g(v - B)| / 2``) and added.

CRADLE-style growth (chained): ``growth = r(out) / max(u32, max_i r(in_i))`` where ``r(b) = max|keras_b - ref_b| /
max|ref_b|`` is a blob's chained error relative to its scale and ``in_i`` are the nearest matched blobs upstream of the
pair's Caffe bottoms (a net input counts as ``u32``, its float32 rounding).  ``growth`` near 1 means the layer only
carries the error; a layer with a bug shows growth of 100 or more.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ...catalogue import is_source, window
from ...errors import HarnessError
from ...net import Net
from .match import Pair, bottom_keys, graph_model, walk_up
from .tolerance import U32, derived_bound


def to_keras_layout(x: np.ndarray, layout: str) -> np.ndarray:
    x = np.asarray(x)
    if layout == "nhwc" and x.ndim == 4:
        return x.transpose(0, 2, 3, 1)
    if layout == "nc11" and x.ndim == 4:  # (N, C, 1, 1) blob held by Keras as (N, C) (GlobalAveragePooling2D)
        return x.reshape(x.shape[0], x.shape[1])
    return x


def from_keras_layout(x: np.ndarray, layout: str) -> np.ndarray:
    x = np.asarray(x)
    if layout == "nhwc" and x.ndim == 4:
        return x.transpose(0, 3, 1, 2)
    if layout == "nc11" and x.ndim == 2:
        return x.reshape(x.shape + (1, 1))
    return x


def disable_tf32() -> None:
    """Full float32 arithmetic on the active Keras backend: TF32 (TensorFloat-32, relative error ~3e-4) is the default
    for matmul/conv on Ampere+ GPUs under TensorFlow and PyTorch's cuDNN, and JAX's default matmul precision may use
    it (or bf16 passes on TPUs).  See :func:`harness.backends.full_float32_precision`."""
    from ...backends import full_float32_precision

    full_float32_precision()


# --------------------------------------------------------------------------------------------------------------------
# Keras side


def _to_numpy(v: Any) -> np.ndarray:
    """A Keras value (TensorFlow eager tensor, JAX array, torch tensor -- one that requires grad or sits on a GPU
    included) as a NumPy array."""
    from ...backends import to_numpy

    return to_numpy(v)


class KerasEvaluator:
    """Evaluate tensors of a functional graph from known values (keyed by ``id(KerasTensor)``)."""

    def __init__(self, model: Any) -> None:
        self.graph = graph_model(model)

    def input_tensors(self) -> list[Any]:
        return list(self.graph.inputs)

    def _node(self, t: Any):
        op, node_index, _ = t._keras_history
        return op, op._inbound_nodes[node_index]

    def _run_node(self, op: Any, node: Any, known: dict[int, Any], memo: dict[int, Any]) -> list[Any]:
        vals: dict[int, Any] = {}
        for x in node.input_tensors:
            vals[id(x)] = self.value(x, known, memo)
        args, kwargs = node.arguments.fill_in(vals)
        out = op(*args, **kwargs)
        import keras

        flat = keras.tree.flatten(out)
        return flat

    def value(self, t: Any, known: dict[int, Any], memo: dict[int, Any]) -> Any:
        tid = id(t)
        if tid in known:
            return known[tid]
        if tid in memo:
            return memo[tid]
        op, node = self._node(t)
        if node.is_input:
            raise HarnessError(f"Keras input {op.name!r} has no value")
        flat = self._run_node(op, node, known, memo)
        for i, ot in enumerate(node.outputs):
            if i < len(flat):
                memo[id(ot)] = flat[i]
        return memo[tid]

    def recompute(self, t: Any, known: dict[int, Any], memo: dict[int, Any]) -> Any:
        """``t``'s value computed from its producing node's inputs, even when ``t`` itself is known (not memoised).
        A model input is produced by no layer: its value is the one it was given."""
        op, node = self._node(t)
        if node.is_input:
            return self.value(t, known, memo)
        flat = self._run_node(op, node, known, memo)
        return flat[[id(o) for o in node.outputs].index(id(t))]


def pair_tensor(model: Any, pair: Pair) -> Any:
    graph = graph_model(model)
    kl = graph.get_layer(pair.keras_layer)
    nodes = kl._inbound_nodes
    outs = nodes[-1].outputs
    t = outs[pair.output_index]
    for name in pair.via:  # helper layers after it (Cropping2D after Conv2DTranspose ...)
        t = graph.get_layer(name)._inbound_nodes[-1].outputs[0]
    return t


def match_inputs(net: Net, model: Any, caffe_inputs: Mapping[str, np.ndarray]) -> tuple[dict[int, Any], dict[str, str]]:
    """Keras input tensors -> values (same data as Caffe, in the layout the Keras input declares).
    Returns ({id(tensor): value}, {caffe input name: keras input name})."""
    from .match import layout_for, pair_inputs

    kin = list(graph_model(model).inputs)
    names = list(net.inputs)
    if len(kin) != len(names):
        raise HarnessError(f"the Caffe net has {len(names)} input(s) ({', '.join(names)}) but the Keras model has "
                           f"{len(kin)}")
    known: dict[int, Any] = {}
    pairing: dict[str, str] = {}
    for cname, t in pair_inputs(net, model):
        kname = t._keras_history[0].name
        x = np.asarray(caffe_inputs[cname], np.float32)
        layout, ok = layout_for(x.shape, tuple(t.shape))
        if not ok:
            raise HarnessError(f"Keras input {kname!r} has shape {tuple(t.shape)}; Caffe input {cname!r} is "
                               f"{tuple(x.shape)} (NCHW) -- neither NHWC nor NCHW agrees")
        known[id(t)] = to_keras_layout(x, layout)
        pairing[cname] = kname
    return known, pairing


# --------------------------------------------------------------------------------------------------------------------
# Caffe side


class CaffeSide:
    """Reference re-evaluation over the net, keyed by blob records ``"<layer>/<top>"``."""

    def __init__(self, net: Net, ref: Mapping[str, np.ndarray]) -> None:
        import harness.reference  # noqa: F401
        from ...reference.registry import REFERENCE

        self.net = net
        self.ref = ref
        self.REF = REFERENCE
        self.layer_of: dict[str, Any] = {k: lay for lay in net.layers for k in lay.keys()}
        self.bottom_keys: dict[str, list[str]] = bottom_keys(net)
        self._bounds: dict[str, np.ndarray] = {}

    def run_layer(self, lay, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        outs = self.REF[lay.kind](lay, [np.asarray(x, np.float64) for x in inputs], dtype=np.float64)
        return [np.asarray(o, np.float64) for o in outs]

    def inputs_of(self, key: str, values: Mapping[str, np.ndarray] | None = None) -> list[np.ndarray]:
        lay = self.layer_of[key]
        src = self.ref if values is None else values
        return [np.asarray(src[k], np.float64) for k in self.bottom_keys[lay.name]]

    def compute(self, key: str, available: Mapping[str, np.ndarray], memo: dict[str, np.ndarray],
                exclude: str | None = None) -> np.ndarray:
        if key != exclude and key in available:
            return available[key]
        if key in memo and key != exclude:
            return memo[key]
        lay = self.layer_of.get(key)
        if lay is None:
            raise HarnessError(f"no Caffe blob record {key!r}")
        if is_source(lay.kind):
            return np.asarray(self.ref[key], np.float64)
        ins = [self.compute(k, available, memo) for k in self.bottom_keys[lay.name]]
        outs = self.run_layer(lay, ins)
        res = None
        for k, o in zip(lay.keys(), outs):
            if k == key:
                res = o
            if k != exclude:
                memo[k] = o
        return res

    def upstream_matched(self, key: str, matched: set[str]) -> list[str]:
        """The nearest matched (or input) records upstream of ``key``'s Caffe bottoms."""
        return walk_up(self.bottom_keys[self.layer_of[key].name], self.bottom_keys, self.layer_of,
                       lambda k: k in matched)

    def bound(self, pair: Pair, c: float, values: Mapping[str, np.ndarray] | None = None, *,
              ceiling: bool = False) -> tuple[np.ndarray, str]:
        """The derived bound of the pair's output, propagated through the pair's segment, at the operating point
        ``values`` (default: the reference's records; chained mode passes the chained values when they differ);
        ``ceiling``: the rigorous float32 ceiling (:func:`~.tolerance.ceiling_values`), propagated the same way."""
        seg = [self.net.layer(n) for n in pair.segment] or [self.layer_of[pair.key]]
        src = self.ref if values is None else values
        inside: dict[str, np.ndarray] = {}  # record -> its bound, for the span's records computed so far
        b: np.ndarray | None = None
        rules = []
        for i, lay in enumerate(seg):
            key = pair.key if i == len(seg) - 1 else _feeding_key(lay, seg[i + 1])
            ins = self.inputs_of(key, src)
            out = np.asarray(src[key], np.float64)
            own = derived_bound(*_one_pair(lay, key, ins), out, c=c, ceiling=ceiling)
            rules.append(f"{lay.name}: {own.rule}")
            fed = [(j, inside[k]) for j, k in enumerate(self.bottom_keys[lay.name][:len(ins)]) if k in inside]
            if not fed and b is not None and ins:  # a span whose records do not name each other: the layer before
                fed = [(_fed_index(lay, seg[i - 1], len(ins)), b)]
            b = own.values + sum((self._propagated(lay, ins, j, bj, out.shape) for j, bj in fed),
                                 np.zeros(out.shape))
            inside[key] = b
            for k in lay.keys():  # a DAG span: every record of the layer a later layer of the span reads
                inside.setdefault(k, b)
        return b, "; ".join(rules)

    def _propagated(self, lay, ins: list[np.ndarray], j: int, bj: np.ndarray, shape: tuple) -> np.ndarray:
        """How far ``lay``'s output moves when its bottom ``j`` moves by its bound ``bj`` (half the spread between
        the two perturbed runs; the largest spread everywhere when the layer does not keep the shape)."""
        try:
            lo = self.run_layer(lay, [*ins[:j], ins[j] - bj, *ins[j + 1:]])[0]
            hi = self.run_layer(lay, [*ins[:j], ins[j] + bj, *ins[j + 1:]])[0]
            prop = np.abs(hi - lo) / 2.0
            return prop if prop.shape == shape else np.full(shape, float(np.max(prop)))
        except Exception:
            return np.full(shape, float(np.max(bj)))


def _fed_index(lay, prev, n: int) -> int:
    """Which of ``lay``'s ``n`` bottoms the previous layer of a span computes (0 for a chain through the first: an
    Eltwise may take the fused layer's output second)."""
    return next((j for j, b in enumerate(lay.bottoms[:n]) if b in prev.tops), 0)


def _feeding_key(lay, nxt) -> str:
    """The record of ``lay`` that the next layer of a segment reads (a shared-weight convolution's second top feeds
    its own ReLU)."""
    return next((k for t, k in zip(lay.tops, lay.keys()) if t in nxt.bottoms), lay.keys()[0])


def _one_pair(lay, key: str, ins: list[np.ndarray]) -> tuple[Any, list[np.ndarray]]:
    """A layer with several bottom/top pairs (shared-weight Convolution/Deconvolution, ``conv_layer.cpp``) computes
    top ``i`` from bottom ``i`` alone: the bound of record ``key`` is the one-pair layer's bound on that bottom."""
    if len(lay.tops) < 2 or len(ins) != len(lay.tops) or key not in lay.keys():
        return lay, ins
    if window(lay.kind) not in ("conv", "deconv"):
        return lay, ins
    from dataclasses import replace

    i = lay.keys().index(key)
    return replace(lay, bottoms=(lay.bottoms[i],), tops=(lay.tops[i],)), [ins[i]]


class ChainedValues(Mapping):
    """Records at the chained operating point: the Keras chained values of matched blobs, the reference re-run on
    them for the others (``memo``), the pair's own expectation, and the reference's records as the last resort."""

    def __init__(self, *layers: Mapping[str, np.ndarray]) -> None:
        self.layers = layers

    def __getitem__(self, key: str) -> np.ndarray:
        for m in self.layers:
            if key in m:
                return m[key]
        raise KeyError(key)

    def __iter__(self):
        seen = set()
        for m in self.layers:
            for k in m:
                if k not in seen:
                    seen.add(k)
                    yield k

    def __len__(self) -> int:
        return len(set().union(*[set(m) for m in self.layers]))


def growth(r_out: float | None, r_ins: Sequence[float | None]) -> float | None:
    if r_out is None:
        return None
    base = max([U32] + [r for r in r_ins if r is not None and math.isfinite(r)])
    return r_out / base

