"""A dataset run's per-batch work: the two sides loaded once (:class:`Sides`), and one batch compared by the stages
of a single comparison (:mod:`.passes`, :mod:`.judge`) into :class:`BatchStats` -- per sample statistics only (the
max error and the max error/bound ratio of every matched layer, the classification agreement of the net's outputs),
never the arrays.  The same function runs in the calling process and on a Dask worker (:mod:`.scaleout`), so a run
gives the same statistics either way; :mod:`.aggregate` folds the batches together.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ...catalogue import TRAITS
from ...net import Net

# what a net output (N, K) of this type holds (harness.catalogue Traits.classifier_output)
CLASSIFIERS = {t: tr.classifier_output for t, tr in TRAITS.items() if tr.classifier_output}


@dataclass(frozen=True)
class Check:
    """What a dataset check compares, by path (picklable: it is what a worker loads, and the key of its cache).
    ``input_shapes``: the per-sample shape of every net input (from the dataset); ``tolerances``: the overrides as
    JSON text; ``user_map``: ``(caffe, keras)`` pairs."""

    prototxt: str
    weights: str | None = None
    keras: str | None = None
    custom_objects: tuple[str, ...] = ()
    seed: int = 0
    mode: str = "chained"
    atol: float | None = None
    rtol: float | None = None
    tolerances: str | None = None
    user_map: tuple[tuple[str, str], ...] = ()
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    batch: int = 16
    split_preprocessing: bool = False  # images: compare the model without its leading preprocessing layers

    def identity(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


class Sides:
    """The Caffe net (sized for each batch size met) and the Keras model of a check, loaded once."""

    def __init__(self, net: Net, keras_model: Any, tol: Any, mode: str, *, user_map: Any = None,
                 mapping: Mapping[str, Any] | None = None, seed: int = 0) -> None:
        self.net, self.keras_model, self.tol, self.mode = net, keras_model, tol, mode
        self.user_map, self.mapping, self.seed = user_map, mapping, seed
        self._nets: dict[int, Net] = {}

    @classmethod
    def load(cls, check: Check) -> "Sides":
        from ..engine.inputs import load_caffe_net
        from ..engine.loading import resolve_custom_objects, resolve_keras_model
        from ..engine.tolerance import Tolerances

        shapes = {k: (check.batch,) + tuple(s) for k, s in check.input_shapes} or None
        net = load_caffe_net(check.prototxt, check.weights, check.seed, shapes)
        model = resolve_keras_model(check.keras, net, resolve_custom_objects(list(check.custom_objects)))
        if check.split_preprocessing and check.keras:
            from ..layer0.preprocessing import split_preprocessing

            model = split_preprocessing(model, [lay.name for lay in net.layers])[1]  # as check --images does
        tol = Tolerances.build(atol=check.atol, rtol=check.rtol,
                               tolerances=json.loads(check.tolerances) if check.tolerances else None)
        return cls(net, model, tol, check.mode, user_map=dict(check.user_map) or None, seed=check.seed)

    def net_for(self, n: int) -> Net:
        """The net with every input's batch axis ``n`` (Caffe's Net::Reshape from the input blobs)."""
        got = self._nets.get(n)
        if got is None:
            inputs = {k: (n,) + tuple(v[1:]) for k, v in self.net.inputs.items()}
            got = self._nets[n] = dataclasses.replace(self.net, inputs=inputs)
        return got


@dataclass
class ModeBatch:
    """One matched layer's comparison of one kind (chained / isolated) over a batch: per sample max |error| and
    max error/bound ratio (``None``: the comparison could not run, ``error`` says why)."""

    passed: bool
    error: str | None
    max_abs: np.ndarray | None
    bound_ratio: np.ndarray | None


@dataclass
class LayerBatch:
    key: str
    caffe_layer: str
    caffe_top: str
    layer_type: str
    keras_layer: str
    modes: dict[str, ModeBatch]


@dataclass
class ClassBatch:
    """One classification output over a batch: top-1 / top-5 agreements (counts) and the largest probability gap."""

    output: str
    kind: str  # "probabilities" | "logits"
    classes: int
    top1: int
    top5: int | None
    gap: float
    gap_at: int  # sample index within the batch


@dataclass
class BatchStats:
    start: int
    n: int
    layers: list[LayerBatch]
    classes: list[ClassBatch]
    problems: list[str] = field(default_factory=list)  # structure: net outputs without a Keras counterpart, ...
    unmatched: int = 0  # Caffe layers not matched
    names: tuple[str, str] = ("", "")  # the net's and the Keras model's names
    cpu_seconds: float = 0.0  # CPU time of the process that computed the batch, while it did (all its threads)


def evaluate_batch(sides: Sides, arrays: Mapping[str, np.ndarray], start: int,
                   keras_arrays: Mapping[str, np.ndarray] | None = None) -> BatchStats:
    """Compare the batch ``arrays`` (``{input: (n, ...)}``, the dataset's samples ``start:start+n``) layer by layer,
    as :func:`harness.compare.compare` does for one array, keeping only per sample statistics.  ``keras_arrays``:
    the Keras model's own chained inputs (an image dataset's Keras-side layer 0), when they have the shapes of
    ``arrays``."""
    from ..engine.divergence import output_problems
    from ..engine.inputs import prepare_inputs

    import time

    cpu0 = time.process_time()
    n = int(next(iter(arrays.values())).shape[0])
    net = sides.net_for(n)
    data = prepare_inputs(net, dict(arrays), sides.seed)
    kdata = None
    if keras_arrays and all(np.shape(keras_arrays.get(k)) == np.shape(v) for k, v in arrays.items()):
        kdata = prepare_inputs(net, dict(keras_arrays), sides.seed)
    got = stream_batch(sides, net, data, kdata) if sides.mode == "chained" else None
    s, classes, results = got if got is not None else whole_batch(sides, net, data, kdata)
    layers = [LayerBatch(lr.key, lr.caffe_layer, lr.caffe_top, lr.layer_type, lr.keras_layer,
                         {m: _mode_batch(r, n) for m, r in (("chained", lr.chained), ("isolated", lr.isolated))
                          if r is not None}) for lr in results]
    problems = [msg for _, _, _, msg in output_problems(net, s.matching, sides.keras_model)] if start == 0 else []
    return BatchStats(start, n, layers, classes, problems, len(s.matching.unmatched_caffe),
                      (net.name, str(getattr(sides.keras_model, "name", "keras"))), time.process_time() - cpu0)


def whole_batch(sides: Sides, net: Net, data: dict, kdata: dict | None) -> tuple[Any, list, list]:
    """(session, classification, layer results) of a batch: every record of the float64 reference, then the Keras
    passes, then the judge (the method :func:`stream_batch` gives bit for bit in bounded memory)."""
    from ..engine.judge import judge
    from ..engine.passes import chained_pass, isolated_pass, open_session, reference_forward

    n = int(next(iter(data.values())).shape[0])
    ref = reference_forward(net, data)
    s = open_session(net, sides.keras_model, data, ref, mapping=sides.mapping, user_map=sides.user_map,
                     keras_data=kdata)
    chained = chained_pass(s) if sides.mode in ("both", "chained") else {}
    isolated = isolated_pass(s) if sides.mode in ("both", "isolated") else {}
    classes = classification(net, s, chained or isolated, n)
    return s, classes, judge(s, sides.tol, chained, isolated, lambda _: None, lean=True)


def stream_batch(sides: Sides, net: Net, data: dict, kdata: dict | None) -> tuple[Any, list, list] | None:
    """A chained batch judged layer by layer as the reference and the Keras side compute it: each pair is judged
    as soon as both of its values exist, and every value no later pair (or the classification) reads is dropped
    (:class:`FreePlan`, :class:`~harness.compare.engine.passes.ChainedStream`), so the batch holds the live
    activations, not every blob.  Same results as :func:`whole_batch`, bit for bit; None (the caller runs
    :func:`whole_batch`) when a record's shape is data dependent or not the one Caffe's shape rules give, or a
    pair's chained output is missing or shaped otherwise (its re-run would read further upstream)."""
    from ..engine.judge import Judging, chained_inputs, judge_pair
    from ..engine.passes import ChainedStream, open_session, reference_layers

    shapes = record_shapes(net)
    if shapes is None:
        return None
    ref: dict[str, np.ndarray] = {}
    s = open_session(net, sides.keras_model, data, ref, mapping=sides.mapping, user_map=sides.user_map,
                     keras_data=kdata, shapes=shapes)
    plan, keras, layers = FreePlan(s), ChainedStream(s), reference_layers(net, data)
    chained: dict[str, Any] = {}
    results, st = [], None
    try:
        for i, p in enumerate(s.pairs):
            _advance(layers, ref, p.key, shapes, plan)
            v = keras.value(i)
            if not isinstance(v, np.ndarray) or v.shape != ref[p.key].shape:
                return None
            chained[p.key] = v
            st = st or Judging(s, sides.tol, chained_inputs(s, {}), True)
            st.avail[p.key] = v
            results.append(judge_pair(st, p, chained, {}, lambda _: None))
            plan.free(i, ref, chained, st.avail, st.cmemo)
        _advance(layers, ref, None, shapes, plan)
    except _Fallback:
        return None
    finally:
        layers.close()
    return s, classification(net, s, chained, int(next(iter(data.values())).shape[0])), results


def _advance(layers: Any, ref: dict, key: str | None, shapes: Mapping[str, tuple], plan: "FreePlan") -> None:
    """Run the reference until record ``key`` exists (None: to the end), keeping the records ``plan`` needs."""
    while key is None or key not in ref:
        got = next(layers, None)
        if got is None:
            if key is None:
                return
            raise _Fallback(key)
        for k, a in got[1].items():
            if tuple(a.shape) != shapes.get(k):
                raise _Fallback(k)
            if plan.needed(k):
                ref[k] = a


def layer0_batch_stats(caffe: np.ndarray, keras: np.ndarray, transform: Any, keras_side: Any) -> LayerBatch:
    """Layer 0 of an image batch: Caffe's preprocessing against the Keras side's, judged as ``check --images``
    judges it (:func:`harness.compare.diagnose.preprocessing.layer0_bound`)."""
    from ..diagnose.preprocessing import layer0_bound
    from ..layer0.preprocessing import LAYER0
    from ..reports.result import compare_arrays

    n = int(caffe.shape[0])
    bound = layer0_bound(transform, caffe) if np.shape(keras) == np.shape(caffe) else 0.0
    res = compare_arrays(LAYER0, "chained", caffe, keras, bound, tolerance="derived: layer 0", lean=True)
    return LayerBatch(LAYER0, LAYER0, LAYER0, "Preprocess", keras_side.describe(), {"chained": _mode_batch(res, n)})


def _mode_batch(r: Any, n: int) -> ModeBatch:
    if r.error:
        return ModeBatch(False, r.error, None, None)
    ma, br = r.sample_max_abs, r.sample_bound_ratio
    if ma is None or len(ma) != n:  # a blob whose axis 0 is not the batch: every sample gets the batch's figure
        ma = np.full(n, r.max_abs if r.max_abs is not None else np.inf)
        br = np.full(n, r.bound_ratio if r.bound_ratio is not None else np.inf)
    return ModeBatch(bool(r.passed), None, np.asarray(ma, np.float64), np.asarray(br, np.float64))


def classification(net: Net, s: Any, values: Mapping[str, Any], n: int) -> list[ClassBatch]:
    """Top-1 / top-5 agreement and the largest probability gap of every net output that is a probability vector
    (a Softmax) or logits (an InnerProduct): ``(n, K)`` or ``(n, K, 1, 1)`` with K >= 2."""
    last: dict[str, str] = {}
    for lay in net.layers:
        for t in lay.tops:
            last[t] = lay.name
    out = []
    for top in net.outputs:
        key = f"{last.get(top)}/{top}"
        layer = s.caffe.layer_of.get(key)
        v, r = values.get(key), s.ref.get(key)
        if layer is None or layer.kind not in CLASSIFIERS or not isinstance(v, np.ndarray) or r is None:
            continue
        if v.shape != r.shape or r.shape[0] != n or r.ndim not in (2, 4) or r.shape[1] < 2 or \
                (r.ndim == 4 and r.shape[2:] != (1, 1)):
            continue
        rank = _ranking_inputs(s, layer, values, r.shape)
        out.append(_agreement(top, CLASSIFIERS[layer.kind], r.reshape(n, -1), v.reshape(n, -1),
                              None if rank is None else (rank[0].reshape(n, -1), rank[1].reshape(n, -1))))
    return out


def _ranking_inputs(s: Any, layer: Any, values: Mapping[str, Any], shape: tuple) -> tuple | None:
    """A Softmax output's logits on both sides (its bottom, when matched): the classes are ranked by them, since
    saturated probabilities tie (exact zeros, float32 underflow) where the logits do not."""
    if CLASSIFIERS.get(layer.kind) != "probabilities":
        return None
    keys = s.caffe.bottom_keys.get(layer.name) or []
    if len(keys) != 1:
        return None
    r, v = s.ref.get(keys[0]), values.get(keys[0])
    if r is None or not isinstance(v, np.ndarray) or v.shape != r.shape or r.shape != shape:
        return None
    return r, v


def _agreement(top: str, kind: str, r: np.ndarray, v: np.ndarray, rank: tuple | None = None) -> ClassBatch:
    """Top-1: Keras's highest class is a highest class of the reference; top-5: Keras's five highest classes are a
    top five of the reference (ties in the reference count either way); ranked by ``rank`` (the logits) when
    given; the gap is the largest |p_keras - p_caffe|."""
    r = np.asarray(r, np.float64)
    v = np.asarray(v, np.float64)
    rr, rv = (r, v) if rank is None else (np.asarray(rank[0], np.float64), np.asarray(rank[1], np.float64))
    k = r.shape[1]
    top1 = int(np.count_nonzero(_in_top(rr, rv, 1)))
    top5 = int(np.count_nonzero(_in_top(rr, rv, 5))) if k >= 5 else None
    if kind == "logits":
        r, v = _softmax(r), _softmax(v)
    gaps = np.max(np.abs(r - v), axis=1)
    gaps = np.where(np.isnan(gaps), np.inf, gaps)
    at = int(np.argmax(gaps))
    return ClassBatch(top, kind, k, top1, top5, float(gaps[at]), at)


def _in_top(r: np.ndarray, v: np.ndarray, k: int) -> np.ndarray:
    """Per sample: whether the ``k`` highest classes of ``v`` all reach the reference's ``k``-th highest value."""
    kth = -np.sort(-r, axis=1)[:, k - 1:k]
    vk = np.argsort(-v, axis=1, kind="stable")[:, :k]
    return np.all(np.take_along_axis(r, vk, axis=1) >= kth, axis=1)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=1, keepdims=True))
    return e / np.sum(e, axis=1, keepdims=True)


class _Fallback(Exception):
    """The streaming judge cannot give the batch judge's answer (see :func:`stream_batch`)."""


def record_shapes(net: Net) -> dict[str, tuple[int, ...]] | None:
    """Every record's NCHW shape from Caffe's shape rules (:func:`harness.shapes.infer_shapes`), None when a shape is
    data dependent (DetectionOutput) or the rules cannot infer the net."""
    from ...errors import HarnessError
    from ...shapes import infer_shapes
    from .memory import with_batch

    try:  # the shape rules read the Input layers' shapes (net_for changes only net.inputs)
        ns = infer_shapes(with_batch(net, int(next(iter(net.inputs.values()))[0])) if net.inputs else net)
    except HarnessError:
        return None
    if any(ls.data_dependent for ls in ns.layers):
        return None
    return {f"{ls.name}/{t}": tuple(int(d) for d in sh) for ls in ns.layers for t, sh in zip(ls.tops, ls.top_shapes)}


class FreePlan:
    """Which records each pair's judging reads (its record, every record and bottom of its segment, and the records
    the chained re-run walks through up to the nearest pair or net input), so that a value is dropped once the last
    pair reading it was judged; the net outputs' records (and their bottoms: a Softmax ranks by its logits) stay to
    the end for the classification agreement."""

    def __init__(self, s: Any) -> None:
        cs = s.caffe
        stops = {p.key for p in s.pairs} | {k for lay in s.net.layers if _is_source(lay) for k in lay.keys()}
        self.last: dict[str, int] = {}
        for i, p in enumerate(s.pairs):
            for k in _pair_reads(s, p, stops):
                self.last[k] = i
        self.keep: set[str] = set()
        for top in s.net.outputs:
            key = next((k for lay in reversed(s.net.layers) for t, k in zip(lay.tops, lay.keys()) if t == top), None)
            if key is not None:
                self.keep |= {key, *cs.bottom_keys[cs.layer_of[key].name]}
        self.keep |= {k for lay in s.net.layers if _is_source(lay) for k in lay.keys()}

    def needed(self, key: str) -> bool:
        return key in self.last or key in self.keep

    def free(self, i: int, *stores: dict) -> None:
        """Drop from every store each value whose last reader is pair ``i``."""
        for k in [k for k, j in self.last.items() if j == i and k not in self.keep]:
            for d in stores:
                d.pop(k, None)


def _is_source(lay: Any) -> bool:
    from ...catalogue import is_source

    return is_source(lay.kind)


def _pair_reads(s: Any, p: Any, stops: set[str]) -> set[str]:
    cs = s.caffe
    seg = [s.net.layer(n) for n in p.segment] or [cs.layer_of[p.key]]
    keys = {p.key}
    for lay in seg:
        keys |= set(lay.keys()) | set(cs.bottom_keys[lay.name])
    seen: set[str] = set()
    stack = list(cs.bottom_keys[cs.layer_of[p.key].name])
    while stack:  # the chained re-run: through records that are not a pair's output, up to a pair or a net input
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        lay = cs.layer_of.get(k)
        if k in stops or lay is None or _is_source(lay):
            continue
        stack.extend(cs.bottom_keys[lay.name])
    return keys | seen
