"""Comparing an exported artefact that can only be run end to end (a ``.tflite`` file, a SavedModel) with the Caffe
reference: the same :class:`~harness.compare.reports.report.Report` as :func:`~harness.compare.compare`, chained only.

API (small and stable; the LiteRT and SavedModel checks both call it):

``ArtefactRun(kind, path, values, order=(), inputs={}, outputs={}, name="")``
    What one run of the artefact on the comparison's inputs read back.  ``kind``: its kind (``"tflite"``,
    ``"saved_model"``, ``"onnx"``: :mod:`.kinds`); ``path``: the file or folder.  ``values``: ``{tensor name: array}``, every tensor that could
    be read, in the artefact's own layout (NHWC, NCHW or flattened), already dequantised to float (see
    :func:`dequantize`).  ``order``: the tensor names in execution order (default: the order of ``values``);
    structural matching walks it.  ``inputs``/``outputs``: ``{Caffe blob: tensor name}`` of the artefact's inputs
    and outputs (an output is paired with the Caffe record that computes the blob even when its name says nothing).
    ``name``: shown where a Keras model's name would be.  ``quantised``: judge by SQNR (below) instead of float32
    bounds.  ``notes``: lines added to the report's notes (which delegate ran, what was converted).
    ``op_names``: each tensor name ends with the op that wrote it (TFLite, the default); False for names that are
    layer scopes (a SavedModel's values): see :func:`named_layers`.  ``fused``: ``{tensor name: the Caffe layer
    types of the activation its operator fused}`` for every operator output whose operator is known (TFLite's
    ``fused_activation_function``; an empty tuple: none fused); position matching reads it (rule 3).

``compare_artefact(net, data, run, *, tolerances=None, atol=None, rtol=None, diagnose=True, gate=None, ref=None)``
    ``net``: the loaded :class:`~harness.net.Net` (with its weights); ``data``: ``{input blob: NCHW float32}``
    (:func:`harness.compare.engine.inputs.prepare_inputs`), the same data the artefact was run on; ``ref``: the float64
    reference records when the caller already has them.  ``gate``: a :class:`QuantGate` for a quantised artefact
    (``run.quantised``).  Returns the Report with ``artefact = {"kind": ..., "path": ...}`` and mode ``chained``,
    its pairing ``coverage`` (:func:`coverage`) and ``nodes`` (each pair's full tensor name).

Pairing a tensor with a Caffe record (:func:`match_tensors`):

1. ``output``: the artefact's output tensor of a Caffe net output blob (``run.outputs``).
2. ``name``: a tensor whose name names the layer: its name split at ``;`` and ``/`` holds the converter's Keras layer
   name (the Caffe name, ``/`` written ``.``; or ``_``), optionally with the one ``_<n>`` suffix a TensorFlow name
   scope adds (TFLite: ``LeNet_1/conv1_1/BiasAdd;LeNet_1/conv1_1/convolution``).  Of several tensors naming a layer,
   the last in execution order whose shape agrees is its output, unless a later tensor names it together with later
   layers (a dilated convolution's ``BatchToSpaceND`` before the ``BiasAdd;Relu`` it is fused into).  A tensor
   naming several layers (TFLite fuses
   ``Conv2D`` + ``ReLU``: ``.../ip1_1/MatMul;.../relu1_1/Relu``) is the output of the last of them, and the earlier
   ones without an own tensor are the pair's ``segment`` (judged with the propagated bound, as a fused Keras
   activation is).  A tensor naming one layer followed by in-place layers no tensor names (a Keras
   ``Conv2D(activation="relu")`` named ``conv1``, a ``BatchNormalization`` named ``bn1`` standing for bn1 + scale1)
   is paired with whichever of those records it is closest to.
3. ``position``: the compute records left, walked in execution order, each with the first unused tensor after the
   tensors paired with the records it depends on (its bottoms', transitively) and before those paired with the
   records that depend on it (parallel branches may run in another order than Caffe's) that names no Caffe layer, whose shape agrees and that ends its
   layer scope (of ``model/batch_normalization/batchnorm/mul`` and ``.../add``, the add; an operator that fused an
   activation always ends its layer, also inside a nested model's scope) (NCHW, NHWC, or ``(N, C)`` for
   ``(N, C, 1, 1)``).  Where the tensor's operator is known (``run.fused``, TFLite's
   ``fused_activation_function``) it decides: a fused activation makes the tensor the output of the first in-place
   follower of that type, over the per-channel affine layers a converter folds into the weights (conv1 + bn1 + sc1 +
   relu1 as one ``CONV_2D`` with ``RELU``; an ``ADD`` with ``RELU`` is Eltwise + ReLU), and an operator that fused
   none holds no activation; after a Convolution / InnerProduct it may still hold the BatchNorm / Scale / Bias
   followers the converter folded into its weights (conv -> bn -> scale -> pool, or -> Eltwise): of the record and
   those followers, the one the tensor is closest to (max abs difference; a tie: the earliest), the others its
   segment.  Otherwise a run of shape-keeping activations after it with no tensor of their own is
   folded into its segment when the next tensor of that shape comes only after a different shape (a fused
   activation, BatchNorm + Scale).  Records of one shape in parallel branches (inception_3b's 1x1 and
   3x3_reduce) that order alone paired with each other's tensors are then re-paired by their values: a cycle of
   records each closest to the next one's tensor takes those tensors, where the lineage order still holds.

Caffe's passive layers (Split, Dropout) and pure re-layouts (Flatten, Reshape) are not paired: an exporter drops the
first and an NHWC port flattens in another order (the next weighted layer shows it).

Judging: every pair chained, by :func:`harness.compare.engine.judge.judge` (the derived float32 bound, the chained rule:
an element passes when within the bound of the reference or of the Caffe layer re-run on the artefact's own values
of its bottoms).  The first divergent layer is the first failing pair; the diagnosis engine gets the artefact's own
values of the layer's bottoms, the Caffe layer run on them, and the artefact's output (an isolated comparison in
all but name: nothing upstream is blamed on the layer).

Quantised artefacts (:class:`QuantGate`): a layer passes when its SQNR ``10 log10(sum ref^2 / sum (ref - q)^2)``
(dB, the dequantised tensor against the float64 reference) is at least ``min_sqnr``; the report also carries the
top-1 / top-5 agreement of the outputs (:func:`agreement`) and fails when top-1 agreement is below
``min_top1_agreement``.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ...catalogue import completes, is_source, types_with
from ...errors import HarnessError
from ...net import Net
from ..engine.match import Matching, Pair, layout_for, pairable
from ..engine.passes import Session, reference_forward
from ..reports.report import Report
from ..reports.result import Cause, FirstDivergence, LayerResult
from ..engine.evaluation import CaffeSide, from_keras_layout
from ..engine.tolerance import Tolerances

_SKIPPED = set(types_with(role="passive")) | set(types_with(role="relayout"))
_FUSABLE = set(types_with(role="activation"))  # what an exporter fuses into the layer before it
_SUFFIX = re.compile(r"_\d+$")
# what an exporter computes inside the tensor of the layer before (harness.catalogue Traits.export_fusion: TFLite
# fuses activations into a convolution or fully-connected operator and folds BatchNorm + Scale into one
# multiply-add): the in-place followers a tensor may hold, and the producers that can absorb them
_FUSED_FOLLOWERS = types_with(export_fusion="folds") | types_with(export_fusion="activation")
_FUSING_PRODUCERS = types_with(export_fusion="absorbs") | types_with(export_fusion="folds")


@dataclass
class ArtefactRun:
    """One end-to-end run of an exported artefact (see the module docstring)."""

    kind: str
    path: str | None
    values: Mapping[str, np.ndarray]
    order: Sequence[str] = ()
    inputs: Mapping[str, str] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    quantised: bool = False
    notes: list[str] = field(default_factory=list)
    op_names: bool = True  # each name ends with its op (TFLite's model/layer/op); False: a layer scope (SavedModel)
    fused: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # tensor -> Caffe types of its fused activation

    def tensor_order(self) -> list[str]:
        order = [n for n in (self.order or list(self.values)) if n in self.values]
        return order + [n for n in self.values if n not in set(order)]


@dataclass(frozen=True)
class QuantGate:
    """Thresholds for a quantised artefact: per-layer SQNR (dB) and top-1 agreement of the outputs (0..1)."""

    min_sqnr: float = 20.0
    min_top1_agreement: float = 0.0


def dequantize(q: np.ndarray, scale: Any, zero_point: Any, axis: int = 0) -> np.ndarray:
    """``scale * (q - zero_point)`` as float64 (per-tensor, or per-channel along ``axis``); a float tensor as is."""
    q = np.asarray(q)
    s = np.asarray(scale, np.float64).reshape(-1)
    z = np.asarray(zero_point, np.float64).reshape(-1)
    if not np.issubdtype(q.dtype, np.integer) or s.size == 0 or not np.any(s):
        return q.astype(np.float64)
    if s.size == 1:
        return (q.astype(np.float64) - z[0]) * s[0]
    shape = [1] * q.ndim
    shape[axis] = s.size
    zz = z if z.size == s.size else np.zeros_like(s)
    return (q.astype(np.float64) - zz.reshape(shape)) * s.reshape(shape)


def sqnr_db(ref: np.ndarray, q: np.ndarray) -> float:
    """Signal-to-quantisation-noise ratio in dB; inf when equal, -inf for a zero reference with any error."""
    r = np.asarray(ref, np.float64)
    e = float(np.sum((r - np.asarray(q, np.float64)) ** 2))
    s = float(np.sum(r ** 2))
    if e == 0.0:
        return math.inf
    if s == 0.0 or not math.isfinite(e):
        return -math.inf
    return 10.0 * math.log10(s / e)


def agreement(ref: np.ndarray, q: np.ndarray, k: int) -> float | None:
    """Fraction of samples whose reference top-1 class is among the artefact's top ``k`` (k=1: the same argmax).
    Classes are axis 1 (NCHW); every other axis but the batch is flattened into the sample's positions."""
    r = np.asarray(ref, np.float64)
    v = np.asarray(q, np.float64)
    if r.ndim < 2 or r.shape != v.shape or r.shape[1] < 2:
        return None
    r2 = np.moveaxis(r, 1, -1).reshape(-1, r.shape[1])
    v2 = np.moveaxis(v, 1, -1).reshape(-1, r.shape[1])
    top = np.argmax(r2, axis=1)
    kk = min(k, r.shape[1])
    best = np.argsort(-v2, axis=1, kind="stable")[:, :kk]
    return float(np.mean(np.any(best == top[:, None], axis=1)))


# ------------------------------------------------------------------------------------------------------- matching

def _name_keys(layer_name: str) -> set[str]:
    return {layer_name, layer_name.replace("/", "."), layer_name.replace("/", "_")}


def named_layers(net: Net, tensor_name: str, ops: bool = True) -> list[str]:
    """The Caffe layers a tensor name names (execution order).  With ``ops`` (a TFLite tensor name) only name
    scopes count: of each ``;``-part ``model/layer/.../op``, neither the op (``add_1``, ``Relu``: a Caffe layer may
    be called ``add``) nor, with three or more components, the model's own scope.  Without (a SavedModel value's
    name is a layer scope, ``conv2d_1`` or ``features/conv2d``, :func:`~harness.compare.artefacts.saved_model.name_by_kind`
    appends the Caffe layer it stands for: ``conv2d_1/conv1``) every component counts.  A scope with a ``_<n>``
    suffix counts for the layer without it; the exact scope counts when stripping names no layer."""
    by_key: dict[str, str] = {}
    for lay in net.layers:
        for k in _name_keys(lay.name):
            by_key.setdefault(k, lay.name)
    found = set()
    for part in tensor_name.split(";"):
        comps = part.split("/")
        if ops:
            comps = comps[:-1]
            comps = comps[1:] if len(comps) >= 2 else comps
        # a Caffe name with "/" (inception_3a/1x1) is one scope "inception_3a.1x1" or two components
        cands = comps + ["/".join(comps[i:i + 2]) for i in range(len(comps) - 1)]
        for c in cands:
            c0 = c.split(":")[0]
            stripped = _SUFFIX.sub("", c0)
            if stripped != c0 and stripped in by_key:
                found.add(by_key[stripped])
            elif c0 in by_key:
                found.add(by_key[c0])
    idx = {lay.name: i for i, lay in enumerate(net.layers)}
    return sorted(found, key=idx.__getitem__)


def display_name(net: Net, tensor_name: str, caffe_layer: str, ops: bool = True) -> str:
    """The part of a fused tensor name (``a;b;c``) that names ``caffe_layer``, else its first part."""
    parts = tensor_name.split(";")
    return next((p for p in parts if caffe_layer in named_layers(net, p, ops)), parts[0])


def _shape_layout(caffe_shape: tuple[int, ...], shape: tuple[int, ...]) -> str | None:
    if not caffe_shape or not shape:  # a scalar (Reduction over axis 0): only a scalar holds it
        return "caffe" if tuple(caffe_shape) == tuple(shape) else None
    if int(shape[0]) != int(caffe_shape[0]):
        return None
    layout, ok = layout_for(caffe_shape, shape)
    return layout if ok else None


def _records(net: Net) -> list[tuple[Any, str]]:
    """(layer, key) of every record that can be paired, in execution order."""
    return [(lay, k) for lay in net.layers if lay.kind not in _SKIPPED and not is_source(lay.kind)
            for k in lay.keys() if pairable(net, lay, k)]


def match_tensors(net: Net, run: ArtefactRun, shapes: Mapping[str, tuple[int, ...]],
                  ref: Mapping[str, np.ndarray] | None = None) -> Matching:
    """Pair Caffe records with artefact tensors (see the module docstring).  ``shapes``: NCHW shape of every
    record; ``ref``: the reference records (for the followers rule).  ``Pair.keras_layer`` is the tensor name."""
    order = run.tensor_order()
    pos = {n: i for i, n in enumerate(order)}
    tshape = {n: tuple(int(d) for d in np.shape(run.values[n])) for n in order}
    recs = _records(net)
    taken: dict[str, tuple[str, str, str]] = {}  # key -> (tensor, layout, by)
    used: set[str] = set(run.inputs.values())
    _by_output(net, run, shapes, tshape, taken, used)
    _by_name(net, order, shapes, tshape, recs, taken, used, run.op_names)
    if ref is not None:
        _to_follower(net, recs, ref, run, taken)
    _by_position(net, recs, order, shapes, tshape, pos, taken, used, run, ref)
    if ref is not None:
        _reorder_branches(net, recs, ref, run, taken, pos)
    return _matching(net, recs, taken, pos, shapes)


def _by_output(net, run, shapes, tshape, taken, used) -> None:
    last = {}
    for lay, k in _records(net):
        for t, kk in zip(lay.tops, lay.keys()):
            if kk == k:
                last[t] = k
    for blob, tname in run.outputs.items():
        k = last.get(blob)
        if k is None or tname not in tshape:
            continue
        lo = _shape_layout(shapes[k], tshape[tname])
        if lo is not None:
            taken[k] = (tname, lo, "output")
            used.add(tname)


def _by_name(net, order, shapes, tshape, recs, taken, used, ops: bool = True) -> None:
    """Each layer's output tensors: of the tensors whose last named layer it is, the last ones in execution order
    whose shapes agree (one per top, in top order: a shared-weight convolution with two tops has two)."""
    key_of: dict[str, list[str]] = {}
    for lay, k in recs:
        key_of.setdefault(lay.name, []).append(k)
    last_naming: dict[str, int] = {}  # layer -> the last tensor naming it
    own: dict[str, list[str]] = {}  # layer -> the tensors whose last named layer it is
    for i, tname in enumerate(order):
        names = [n for n in named_layers(net, tname, ops) if n in key_of]
        for n in names:
            last_naming[n] = i
        if names and tname not in used:
            own.setdefault(names[-1], []).append(tname)
    pos = {t: i for i, t in enumerate(order)}
    for lname, tensors in own.items():
        free = list(tensors)
        for k in reversed(key_of[lname]):
            if k in taken:
                continue
            t = next((t for t in reversed(free) if _shape_layout(shapes[k], tshape[t])), None)
            if t is None:
                continue
            free = free[:free.index(t)]  # earlier tops come from earlier tensors
            if last_naming[lname] > pos[t]:
                continue  # a later, fused tensor names the layer again: this one was an intermediate
            taken[k] = (t, _shape_layout(shapes[k], tshape[t]), "name")
            used.add(t)


def _followers(net: Net, recs, i: int, named: set[str], taken) -> list[str]:
    """The records after ``recs[i]`` that could be computed inside its tensor: each the only bottom of the next,
    same shape, no tensor naming its layer, none paired."""
    lay, k = recs[i]
    out, top = [], lay.tops[lay.keys().index(k)]
    if lay.kind not in _FUSING_PRODUCERS:
        return out
    for nlay, nk in recs[i + 1:]:
        if nlay.name in named or nk in taken or len(nlay.bottoms) != 1 or nlay.bottoms[0] != top or \
                nlay.kind not in _FUSED_FOLLOWERS:
            break
        out.append(nk)
        top = nlay.tops[0]
    return out


def _to_follower(net: Net, recs, ref: Mapping[str, np.ndarray], run: ArtefactRun, taken) -> None:
    """A tensor that names one layer may hold the output of the unnamed, in-place layers after it (a Keras
    ``Conv2D(activation="relu")`` named ``conv1`` computes Caffe's conv1 + relu1; a ``BatchNormalization`` named
    ``bn1`` computes bn1 + scale1): it is paired with the record among them it is closest to (max abs difference),
    which the chained rule then judges; the layers before it join its segment."""
    named = {n for t in run.values for n in named_layers(net, t, run.op_names)}
    index = {k: i for i, (_, k) in enumerate(recs)}
    for k, (t, layout, by) in list(taken.items()):
        if by != "name" or k not in index:
            continue
        fol = [f for f in _followers(net, recs, index[k], named, taken) if np.shape(ref[f]) == np.shape(ref[k])]
        if not fol:
            continue
        v = from_keras_layout(np.asarray(run.values[t], np.float64), layout)
        if np.shape(v) != np.shape(ref[k]):
            continue
        err = {c: float(np.max(np.abs(v - ref[c]))) if v.size else 0.0 for c in [k, *fol]}
        best = min([k, *fol], key=lambda c: (err[c], c != k))
        if best != k:
            taken[best] = taken.pop(k)


def _reorder_branches(net: Net, recs, ref: Mapping[str, np.ndarray], run: ArtefactRun, taken, pos) -> None:
    """Records of one shape in parallel branches that the artefact computes in another order than Caffe's (an
    inception module's 1x1 and 3x3_reduce, ReLUs after both convolutions) can each be paired with another's tensor
    by order alone: of the records of one shape with a parallel record among them, each cycle of records whose
    tensor closest to its reference value (max abs difference; a tie: its own) is the next one's takes those
    tensors, where every tensor then still lies after its records' upstream tensors and before their downstream."""
    up, down = _lineage(net, recs)
    groups: dict[tuple, list[str]] = {}
    for _, k in recs:
        if k in taken and taken[k][2] in ("name", "position"):
            groups.setdefault((np.shape(ref[k]), taken[k][1]), []).append(k)
    for grp in groups.values():
        grp = [k for k in grp if any(o != k and o not in up[k] and k not in up[o] for o in grp)]
        vals = [from_keras_layout(np.asarray(run.values[taken[k][0]], np.float64), taken[k][1]) for k in grp]
        err = [[float(np.max(np.abs(v - ref[k]))) if np.shape(v) == np.shape(ref[k]) and v.size else math.inf
                for v in vals] for k in grp]
        choice = [min(range(len(grp)), key=lambda j: (err[i][j], j != i)) for i in range(len(grp))]
        done: set[int] = set()
        for i in range(len(grp)):
            cycle = [i]
            while choice[cycle[-1]] not in cycle:
                cycle.append(choice[cycle[-1]])
            if len(cycle) > 1 and choice[cycle[-1]] == i and not done & set(cycle):
                done.update(cycle)
                _rotate(taken, [grp[c] for c in cycle], up, down, pos)


def _rotate(taken, keys: list[str], up, down, pos) -> None:
    """Each of ``keys`` takes the next one's tensor (the last the first's), unless a tensor would then lie before
    the tensor of a record it depends on or after one that depends on it."""
    old = {k: taken[k] for k in keys}
    for k, nk in zip(keys, keys[1:] + keys[:1]):
        taken[k] = (old[nk][0], old[nk][1], old[k][2])

    def fits(k: str) -> bool:
        p = pos[taken[k][0]]
        return all(pos[taken[a][0]] < p for a in up[k] if a in taken) and \
            all(pos[taken[d][0]] > p for d in down[k] if d in taken)

    if not all(fits(k) for k in keys):
        taken.update(old)


def layer_scope(tensor_name: str) -> str | None:
    """The exporting layer's name scope of a tensor (``model/layer`` of ``model/layer/.../op``), None when the name
    has no such scope."""
    comps = tensor_name.split(";")[0].split("/")
    return "/".join(comps[:2]) if len(comps) >= 3 else None


def _layer_outputs(order: Sequence[str]) -> set[str]:
    """The tensors that can be a layer's output: of consecutive tensors of one layer scope (a Keras
    BatchNormalization lowered to a mul and an add), the last."""
    out = set()
    for i, t in enumerate(order):
        sc = layer_scope(t)
        if sc is None or i + 1 == len(order) or layer_scope(order[i + 1]) != sc:
            out.add(t)
    return out


def _lineage(net: Net, recs) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(upstream, downstream)``: of every record, the records it depends on (through its bottoms, across passive
    and re-layout layers) and the records that depend on it."""
    keys = {k for _, k in recs}
    of_blob: dict[str, frozenset[str]] = {}
    up: dict[str, set[str]] = {}
    for lay in net.layers:
        inputs = frozenset().union(*(of_blob.get(b, frozenset()) for b in lay.bottoms))
        for t, k in zip(lay.tops, lay.keys()):
            if k in keys:
                up[k] = set(inputs)
            of_blob[t] = inputs | {k} if k in keys else inputs
    down: dict[str, set[str]] = {k: set() for k in keys}
    for k, ups in up.items():
        for a in ups:
            down[a].add(k)
    return up, down


def _by_position(net, recs, order, shapes, tshape, pos, taken, used, run: ArtefactRun, ref=None) -> None:
    # an operator that fused an activation ends its layer (a Sequential backbone's scope holds several layers)
    outs = _layer_outputs(order) | {t for t in order if run.fused.get(t)}
    # a tensor whose name names a Caffe layer was the name rule's to take: what it left is an intermediate
    order = [t for t in order if t in outs and not named_layers(net, t, run.op_names)]
    spanned: set[str] = set()  # records an operator computed inside a later record's tensor
    # a record's tensor lies after its own bottoms' tensors and before its consumers': parallel branches (an
    # inception module's) may run in another order than Caffe's
    up, down = _lineage(net, recs)
    for i, (lay, k) in enumerate(recs):
        if k in taken or k in spanned:
            continue
        lower = max((pos[taken[a][0]] for a in up[k] if a in taken), default=-1)
        upper = min((pos[taken[d][0]] for d in down[k] if d in taken), default=len(pos))
        cands = [t for t in order if lower < pos[t] < upper and t not in used and _shape_layout(shapes[k], tshape[t])]
        if not cands:
            continue
        t = cands[0]
        if run.fused.get(t):  # the operator says which activation it fused
            span = _fused_span(recs, i, shapes, taken, run.fused[t])
            spanned.update(span[:-1])
            k = span[-1]
        elif t in run.fused and ref is not None and lay.kind in _FOLDS_INTO:  # an operator that fused none
            span = _folded_span(recs, i, shapes, taken, ref, run.values[t], _shape_layout(shapes[k], tshape[t]))
            spanned.update(span[:-1])
            k = span[-1]
        elif _fused_next(recs, i, shapes, order, tshape, used, t, pos, taken, t in run.fused):
            continue  # a fused activation's tensor: the activation after this layer takes it
        taken[k] = (t, _shape_layout(shapes[k], tshape[t]), "position")
        used.add(t)


# what a TFLite converter folds into a convolution's or fully-connected operator's weights and bias (a constant
# per-channel multiply-add after it: BatchNorm with global stats, Scale, Bias), before a fused activation
_FOLDED_AFFINE = types_with(export_fusion="folds")
_FOLDS_AFFINE = types_with(linear=True) | _FOLDED_AFFINE


def _fused_span(recs, i, shapes, taken, kinds: tuple[str, ...]) -> list[str]:
    """The records the operator of the tensor paired with record ``i`` computes, ending at the one the tensor holds:
    ``[recs[i]]``, or, when the operator fused an activation (``kinds``: its Caffe types), record ``i`` through the
    first in-place follower of one of those types, over per-channel affine followers the converter folded into the
    weights (Convolution + BatchNorm + Scale + ReLU as one ``CONV_2D`` with fused ``RELU``; an ``ADD`` with fused
    ``RELU`` for Eltwise + ReLU).  Each follower reads only the top before it and keeps its shape; none is paired."""
    lay, k = recs[i]
    span = [k]
    if not kinds or lay.kind not in _FUSING_PRODUCERS:
        return span
    top = lay.tops[lay.keys().index(k)]
    for nlay, nk in recs[i + 1:]:
        if nk in taken or len(nlay.bottoms) != 1 or nlay.bottoms[0] != top or shapes[nk] != shapes[k]:
            break
        span.append(nk)
        if nlay.kind in kinds:
            return span
        if nlay.kind not in _FOLDED_AFFINE or lay.kind not in _FOLDS_AFFINE:
            break
        top = nlay.tops[0]
    return [k]


_FOLDS_INTO = types_with(linear=True)


def _folded_span(recs, i, shapes, taken, ref, value, layout) -> list[str]:
    """The records the operator of the tensor paired with Convolution / InnerProduct record ``i`` computes when it
    fused no activation: the TFLite converter folds the per-channel affine followers (BatchNorm with global stats,
    Scale, Bias: each reading only the top before it, same shape, unpaired) into the weights and bias, with or
    without an activation after them (conv -> bn -> scale -> pool; ResNet's conv -> bn -> scale -> Eltwise).  Of
    record ``i`` and those followers, the tensor holds the one it is closest to (max abs difference; a tie: the
    earliest): record ``i`` through that one (the earlier ones become the pair's segment, judged with the
    propagated bound)."""
    lay, k = recs[i]
    chain, top = [k], lay.tops[lay.keys().index(k)]
    for nlay, nk in recs[i + 1:]:
        if nlay.kind not in _FOLDED_AFFINE or nk in taken or len(nlay.bottoms) != 1 or nlay.bottoms[0] != top \
                or shapes[nk] != shapes[k]:
            break
        chain.append(nk)
        top = nlay.tops[0]
    if len(chain) == 1 or layout is None:
        return [k]
    v = from_keras_layout(np.asarray(value, np.float64), layout)
    if any(np.shape(v) != np.shape(ref[c]) for c in chain):
        return [k]
    err = [float(np.max(np.abs(v - ref[c]))) if v.size else 0.0 for c in chain]
    j = min(range(len(chain)), key=lambda n: (err[n], n))
    return chain[:j + 1]


def _fused_next(recs, i, shapes, order, tshape, used, t, pos, taken, no_act: bool = False) -> bool:
    """Whether record ``i`` is followed by a same-shape layer reading only its top (an activation, the Scale after a
    BatchNorm) that has no tensor of its own: the next tensor after ``t`` has another shape (an exporter fused them).
    ``no_act``: ``t``'s operator is known to have fused no activation (only a Scale can then be in it)."""
    lay, k = recs[i]
    if i + 1 >= len(recs) or lay.kind not in _FUSING_PRODUCERS:
        return False
    nlay, nk = recs[i + 1]
    if nlay.kind not in _FUSED_FOLLOWERS or nk in taken or shapes[nk] != shapes[k] or len(nlay.bottoms) != 1 \
            or nlay.bottoms[0] not in lay.tops:
        return False
    if nlay.kind not in _FUSABLE and not completes(lay.kind, nlay.kind):
        return False  # only what an exporter fuses (a pooling is not fused into the BatchNorm after it)
    if no_act and nlay.kind in _FUSABLE:
        return False
    nxt = [u for u in order if pos[u] > pos[t] and u not in used]
    return not nxt or _shape_layout(shapes[k], tshape[nxt[0]]) is None


def _matching(net: Net, recs, taken, pos, shapes) -> Matching:
    pairs: list[Pair] = []
    pending: list[str] = []
    folded: dict[str, str] = {}
    for lay, k in recs:
        if k not in taken:
            pending.append(lay.name)
            continue
        tname, layout, by = taken[k]
        seg = _segment(net, lay, pending, tname)
        for n in seg[:-1]:
            for kk in net.layer(n).keys():
                folded[kk] = k
        pending = [p for p in pending if p not in seg]
        top = lay.tops[lay.keys().index(k)]
        pairs.append(Pair(k, lay.name, top, tname, 0, layout, by, tuple(seg) if len(seg) > 1 else ()))
    pairs.sort(key=lambda p: [lay.name for lay in net.layers].index(p.caffe_layer))
    unmatched = [k for lay, k in recs if k not in taken and k not in folded]
    return Matching(pairs, unmatched, [], folded)


def _segment(net: Net, lay: Any, pending: list[str], tname: str) -> list[str]:
    """The unpaired layers right before ``lay`` that the same tensor computes: a chain, each reading the top of the
    one before (``lay`` itself may read more: an Eltwise a fused convolution's output and another blob; the layers
    before it one bottom each)."""
    seg = [lay.name]
    cur = lay
    while pending:
        prev = net.layer(pending[-1])
        if not (any(b in prev.tops for b in cur.bottoms) and (cur is lay or len(cur.bottoms) == 1)):
            break
        seg.insert(0, prev.name)
        pending = pending[:-1]
        cur = prev
    return seg


# -------------------------------------------------------------------------------------------------------- judging

def compare_artefact(net: Net, data: Mapping[str, np.ndarray], run: ArtefactRun, *, tolerances: Any = None,
                     atol: float | None = None, rtol: float | None = None, diagnose: bool = True,
                     gate: QuantGate | None = None, ref: Mapping[str, np.ndarray] | None = None) -> Report:
    """The artefact's run judged layer by layer against the Caffe reference (see the module docstring)."""
    from ..engine.divergence import settle_rounding
    from ..engine.judge import judge

    t0 = time.perf_counter()
    tol = Tolerances.build(atol=atol, rtol=rtol, tolerances=tolerances)
    ref = dict(ref) if ref is not None else reference_forward(net, data)
    shapes = {k: tuple(np.shape(v)) for k, v in ref.items()}
    matching = match_tensors(net, run, shapes, ref)
    s = Session(net, None, dict(data), ref, matching, CaffeSide(net, ref), None, {}, {})
    chained = {p.key: from_keras_layout(np.asarray(run.values[p.keras_layer], np.float32), p.layout)
               for p in matching.pairs}
    results = judge(s, tol, chained, {}, lambda _: None)
    rounding = [] if run.quantised else settle_rounding(s, results, {}, chained, False)
    nodes = {lr.key: [lr.keras_layer] for lr in results}
    for lr in results:
        lr.keras_layer = display_name(net, lr.keras_layer, lr.caffe_layer, run.op_names)
    report = Report(net.name, run.name or (run.path or run.kind), "chained", results, matching.unmatched_caffe,
                    [], tolerances=tol.to_dict(), timings={})
    report.graph = [(lay.name, lay.type, lay.bottoms, lay.tops) for lay in net.layers]
    report.artefact = {"kind": run.kind, "path": run.path}
    report.coverage = coverage(net, matching)
    report.nodes = nodes
    report.notes += list(run.notes) + rounding
    if run.quantised:
        _quant_judge(report, s, chained, gate or QuantGate())
    missing = _missing_outputs(net, matching)
    report.output_problems += [msg for _, _, msg in missing]
    if not matching.pairs:
        report.notes.append(f"no Caffe layer could be matched to a tensor of the {run.kind} artefact")
    _divergences(report, s, chained, diagnose, missing)
    from ..reports.annotations import attach_locations

    attach_locations(report, net)
    report.timings["total"] = time.perf_counter() - t0
    return report


def coverage(net: Net, matching: Matching) -> dict[str, Any]:
    """Pairing coverage: of the records that can be paired, how many a tensor computes (paired, or inside a paired
    tensor's span), and the ones none computes."""
    keys = [k for _, k in _records(net)]
    covered = {p.key for p in matching.pairs} | set(matching.folded) | \
        {kk for p in matching.pairs for n in p.segment for kk in net.layer(n).keys()}
    paired = [k for k in keys if k in covered]
    return {"paired": len(paired), "records": len(keys), "ratio": round(len(paired) / len(keys), 4) if keys else 1.0,
            "uncomputed": [k for k in keys if k not in covered]}


def _missing_outputs(net: Net, matching: Matching) -> list[tuple[str, str, str]]:
    """(Caffe layer, record, message) of every net output no tensor of the artefact holds."""
    covered = {p.key for p in matching.pairs} | set(matching.folded)
    out = []
    for blob in net.outputs:
        recs = [(lay, k) for lay in net.layers for t, k in zip(lay.tops, lay.keys()) if t == blob]
        for lay, key in reversed(recs):
            if lay.kind in _SKIPPED:
                continue
            if key not in covered and not is_source(lay.kind):
                out.append((lay.name, key, f"Caffe output {blob!r} is computed by {lay.type} {lay.name!r}, which "
                                           f"has no tensor in the artefact: the artefact does not compute this output"))
            break
    return out


def _quant_judge(report: Report, s: Session, chained: Mapping[str, np.ndarray], gate: QuantGate) -> None:
    """Per-layer SQNR against ``gate.min_sqnr`` replaces the float32 verdict; top-1/top-5 agreement of the net
    outputs against ``gate.min_top1_agreement``."""
    for lr in report.layers:
        v = chained[lr.key]
        r = s.ref[lr.key]
        db = sqnr_db(r, v) if np.shape(v) == np.shape(r) else -math.inf
        lr.sqnr_db = db
        if lr.chained is not None:
            lr.chained.passed = db >= gate.min_sqnr
            lr.chained.tolerance = f"quantised: SQNR {db:.1f} dB >= {gate.min_sqnr:g} dB"
            lr.chained.propagated_max_abs = None  # no carried/own split under SQNR
    outs = [lr for lr in report.layers if lr.caffe_top in s.net.outputs]
    t1 = [agreement(s.ref[lr.key], chained[lr.key], 1) for lr in outs]
    t5 = [agreement(s.ref[lr.key], chained[lr.key], 5) for lr in outs]
    t1 = [a for a in t1 if a is not None]
    t5 = [a for a in t5 if a is not None]
    report.top1_agreement = min(t1) if t1 else None
    report.top5_agreement = min(t5) if t5 else None
    report.quant_gate = {"min_sqnr": gate.min_sqnr, "min_top1_agreement": gate.min_top1_agreement}
    if report.top1_agreement is not None and report.top1_agreement < gate.min_top1_agreement:
        report.output_problems.append(
            f"top-1 agreement of the outputs with the reference is {report.top1_agreement:.3f}, below "
            f"--min-top1-agreement {gate.min_top1_agreement:g}")


def _divergences(report: Report, s: Session, chained: Mapping[str, np.ndarray], diagnose: bool,
                 missing: list[tuple[str, str, str]]) -> None:
    """The first failing pair (with causes) and every other failing pair (the first few with causes); when every
    pair passes, the first net output the artefact lacks."""
    from ..engine.divergence import MAX_DIAGNOSED, OTHERS_BUDGET_S, error_growth, introducer

    failing = [lr for lr in report.layers if not lr.passed]
    if not failing:
        if missing:
            lname, key, msg = missing[0]
            report.first_divergence = FirstDivergence(lname, "", key, "structure", [Cause(
                "missing_layer", 0.9, msg, "export the net output: the artefact's serving signature must return "
                                           "every output blob of the Caffe net")] if diagnose else [])
        return
    for i, lr in enumerate(failing):
        fd = FirstDivergence(lr.caffe_layer, lr.keras_layer, lr.key, "chained")
        if diagnose and i <= MAX_DIAGNOSED:
            growth = "" if report.quant_gate else error_growth(report.layers, lr)
            fd.diagnosis = explain_pair(s, lr, chained, 60.0 if i == 0 else OTHERS_BUDGET_S, growth)
        fd.caffe_layer = introducer(s.net, lr, fd.diagnosis)  # a fused span: its first layer unless a cause says
        if i == 0:
            report.first_divergence = fd
        else:
            report.divergences.append(fd)
    if diagnose and failing and not report.quant_gate:  # float32 bounds only (not SQNR)
        _growth_start(report, s, chained, failing[0])


def _growth_start(report: Report, s: Session, chained: Mapping[str, np.ndarray], first: LayerResult) -> None:
    """An error that grows from an earlier pair still within its bound (engine.divergence.growth_start): that pair
    becomes the first divergence, the first failing one the next divergence."""
    from ..engine.divergence import OTHERS_BUDGET_S, growth_start, introducer

    fd0 = report.first_divergence
    found = growth_start(report.layers, first, fd0.diagnosis if fd0 else [],
                         lambda lr: explain_pair(s, lr, chained, OTHERS_BUDGET_S))
    if found is None or fd0 is None:
        return
    lr, causes = found
    fd = FirstDivergence(lr.caffe_layer, lr.keras_layer, lr.key, "chained", causes)
    fd.caffe_layer = introducer(s.net, lr, causes)
    report.first_divergence = fd
    report.divergences.insert(0, fd0)


def explain_pair(s: Session, lr: LayerResult, chained: Mapping[str, np.ndarray], budget_s: float,
                 growth: str = "") -> list[Cause]:
    """The diagnosis of one failing pair from the artefact's own values: its bottoms (the artefact's tensors where
    paired, the reference re-run on them in between) and its output (never raises).  ``growth``: a sentence saying
    the chained error grows down the net after it (engine.divergence.error_growth), so it is never called rounding."""
    from ..diagnose import diagnose
    from ..engine.judge import chained_inputs, short

    try:
        seg_first = s.net.layer(lr.segment[0]) if lr.segment else s.caffe.layer_of[lr.key]
        avail = chained_inputs(s, chained)
        memo: dict[str, np.ndarray] = {}
        xs = [s.caffe.compute(k, avail, memo) for k in s.caffe.bottom_keys[seg_first.name]]
        expected = s.caffe.compute(lr.key, avail, memo, exclude=lr.key)
        context = {"chain": [s.net.layer(n) for n in lr.segment[1:]], "net": s.net, "key": lr.key,
                   "keras_model": None, "result": lr.chained, "time_budget_s": budget_s, "growth": growth}
        with np.errstate(all="ignore"):  # hypotheses re-run the reference off its domain (LRN with k dropped)
            return list(diagnose(seg_first, None, xs, expected, np.asarray(chained[lr.key], np.float64),
                                 context=context) or [])
    except Exception as e:  # the diagnosis must never hide the verdict
        return [Cause("unknown", 0.0, f"the diagnosis engine failed: {type(e).__name__}: {short(e)}",
                      "inspect the layer by hand")]


def artefact_input(x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """An NCHW input laid out as the artefact's input tensor of ``shape`` (NHWC, NCHW or flattened); refuses a
    shape that is none of them."""
    x = np.asarray(x, np.float32)
    shape = tuple(int(d) for d in shape)
    if x.ndim == 4 and len(shape) == 4:
        if shape[1:] == (x.shape[2], x.shape[3], x.shape[1]):
            return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        if shape[1:] == x.shape[1:]:
            return x
    elif x.shape[1:] == shape[1:]:
        return x
    raise HarnessError(f"input shape {shape} agrees with neither NHWC nor NCHW of the Caffe input {tuple(x.shape)}")
