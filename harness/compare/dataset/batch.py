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
    from ..engine.judge import judge
    from ..engine.passes import chained_pass, isolated_pass, open_session, reference_forward

    import time

    cpu0 = time.process_time()
    n = int(next(iter(arrays.values())).shape[0])
    net = sides.net_for(n)
    data = prepare_inputs(net, dict(arrays), sides.seed)
    ref = reference_forward(net, data)
    kdata = None
    if keras_arrays and all(np.shape(keras_arrays.get(k)) == np.shape(v) for k, v in arrays.items()):
        kdata = prepare_inputs(net, dict(keras_arrays), sides.seed)
    s = open_session(net, sides.keras_model, data, ref, mapping=sides.mapping, user_map=sides.user_map,
                     keras_data=kdata)
    chained = chained_pass(s) if sides.mode in ("both", "chained") else {}
    isolated = isolated_pass(s) if sides.mode in ("both", "isolated") else {}
    classes = classification(net, s, chained or isolated, n)
    results = judge(s, sides.tol, chained, isolated, lambda _: None, lean=True)
    layers = [LayerBatch(lr.key, lr.caffe_layer, lr.caffe_top, lr.layer_type, lr.keras_layer,
                         {m: _mode_batch(r, n) for m, r in (("chained", lr.chained), ("isolated", lr.isolated))
                          if r is not None}) for lr in results]
    problems = [msg for _, _, _, msg in output_problems(net, s.matching, sides.keras_model)] if start == 0 else []
    return BatchStats(start, n, layers, classes, problems, len(s.matching.unmatched_caffe),
                      (net.name, str(getattr(sides.keras_model, "name", "keras"))), time.process_time() - cpu0)


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
