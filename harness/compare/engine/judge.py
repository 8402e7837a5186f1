"""Judging each pair: the isolated output against the reference, and the chained output by the chained rule.

Bound: a user override (atol/rtol, most specific first) or the derived float32 bound of the layer
(:mod:`.tolerance`), computed once per pair and only when needed.  Chained rule: an element passes when it is
within the bound of the reference or, when it is not, within the bound of ``f(keras inputs)`` (the reference re-run
on the Keras chained inputs: what the layer *added*, not what it carried); when an upstream bug moved the layer's
operating point, the bound is also derived there (see :mod:`.run`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np

from ...catalogue import is_source, traits, types_with
from .passes import Session
from ..reports.result import BlobResult, LayerResult, abs_difference, compare_arrays
from .evaluation import ChainedValues, growth
from .tolerance import U32, Tolerance, Tolerances

Tick = Callable[[str], None]


def judge(s: Session, tol: Tolerances, chained: dict[str, Any], isolated: dict[str, Any],
          tick: Tick, *, lean: bool = False) -> list[LayerResult]:
    """One :class:`LayerResult` per pair, in execution order.  A passing pair's isolated output is dropped from
    ``isolated`` (only a failing pair's outputs are read again, by the divergence and the diagnosis).  ``lean``: only
    what a dataset run keeps (pass/fail, max error, bound ratio, per sample figures): no parameter evidence, no
    mean/median/relative statistics (:func:`~.result.compare_arrays`)."""
    st = Judging(s, tol, chained_inputs(s, chained), lean)
    return [judge_pair(st, p, chained, isolated, tick) for p in s.pairs]


class Judging:
    """What judging the pairs one after another shares: the chained re-run's inputs (``avail``) and memo
    (``cmemo``), the moved-operating-point answers per record, each pair's chained error relative to its scale.  A
    streaming caller (:func:`harness.compare.dataset.batch.stream_batch`) adds a pair's chained value to ``avail``
    before judging it and drops values once their last reader was judged."""

    def __init__(self, s: Session, tol: Tolerances, avail: dict[str, np.ndarray], lean: bool) -> None:
        self.s, self.tol, self.avail, self.lean = s, tol, avail, lean
        self.cmemo: dict[str, np.ndarray] = {}
        self.moved: dict[str, bool] = {}  # per Caffe record: whether its chained value moved (moved())
        self.rel: dict[str, float | None] = {}
        self.matched = {p.key for p in s.pairs}


def judge_pair(st: Judging, p: Any, chained: Mapping[str, Any], isolated: dict[str, Any], tick: Tick) -> LayerResult:
    """One pair's :class:`LayerResult` (isolated and chained, as far as they were computed)."""
    s = st.s
    lr = LayerResult(p.caffe_layer, p.caffe_top, p.key, p.keras_layer, p.matched_by, tuple(s.ref[p.key].shape),
                     layer_type=s.caffe.layer_of[p.key].type, segment=p.segment)
    lr.params = None if st.lean else pair_evidence(s, p)
    bound = _BoundSource(s, p, st.tol, st.lean)
    if p.key in isolated:
        lr.isolated = _isolated_result(p, np.asarray(s.ref[p.key], np.float64), isolated[p.key], bound)
        _name_nonfinite(lr.isolated, s.caffe.layer_of[p.key])
        tick(p.caffe_layer)
    if p.key in chained:
        lr.chained, st.rel[p.key] = _chained_result(s, p, chained[p.key], bound, st.avail, st.cmemo, st.moved)
        _name_nonfinite(lr.chained, s.caffe.layer_of[p.key])
        if lr.chained.growth is None and st.rel[p.key] is not None:
            ups = s.caffe.upstream_matched(p.key, st.matched)
            lr.chained.growth = growth(st.rel[p.key], [st.rel.get(k, U32) for k in ups])
        tick(p.caffe_layer)
    if lr.passed:
        isolated.pop(p.key, None)
    return lr


_RELAYOUT = types_with(role="relayout")  # Flatten, Reshape: an InnerProduct's 4-D input is the blob before them


def nonfinite_rule(layer: Any) -> str:
    """The Caffe rule by which this layer itself computes NaN/Inf, or that they come from its inputs."""
    from ...params import variant

    rules = traits(layer.kind).nonfinite  # harness.catalogue: per type (and variant: AVE pooling)
    return rules.get("", rules.get(variant(layer))) or "propagated from NaN/Inf in the layer's inputs"


def _name_nonfinite(res: BlobResult | None, layer: Any) -> None:
    if res is not None and res.nonfinite_matched:
        res.nonfinite_rule = nonfinite_rule(layer)


def pair_evidence(s: Session, p: Any) -> dict:
    """The pair's parameter evidence (:mod:`.evidence`): its Keras layer's weights and configuration against Caffe's."""
    from .evidence import evidence
    from .match import graph_model

    if s.keras_model is None:  # an exported artefact (harness.compare.artefacts.pairing): no Keras layers to read
        return {"status": "none", "checks": []}
    try:
        kl = graph_model(s.keras_model).get_layer(p.keras_layer)
    except ValueError:
        return {"status": "none", "checks": []}
    first = s.net.layer(p.segment[0]) if p.segment else s.caffe.layer_of[p.key]
    in_shape = None
    if traits(first.kind).flattens and traits(first.kind).linear and s.caffe.bottom_keys[first.name]:
        bk = s.caffe.bottom_keys[first.name][0]
        prod = s.caffe.layer_of.get(bk)
        if prod is not None and prod.kind in _RELAYOUT and s.caffe.bottom_keys[prod.name]:
            bk = s.caffe.bottom_keys[prod.name][0]  # the 4-D blob a Caffe Flatten flattened
        in_shape = tuple(np.shape(s.ref[bk])) if bk in s.ref else None
    return evidence(s.net, p, kl, in_shape)


def chained_inputs(s: Session, chained: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The values a chained re-run of the reference reads: the inputs the Keras side got (float64; its own layer 0
    with ``check --images``) and every pair's Keras output."""
    data = s.keras_data if s.keras_data is not None else s.data
    avail = {k: v.astype(np.float64) for k, v in data.items()}
    for lay in s.net.layers:
        if is_source(lay.kind):
            for top in lay.tops:
                key = f"{lay.name}/{top}"
                avail[key] = data[top].astype(np.float64) if top in data else s.ref[key]
    for p in s.pairs:
        v = chained.get(p.key)
        if isinstance(v, np.ndarray) and v.shape == s.ref[p.key].shape:
            avail[p.key] = v  # float32; the reference casts its inputs to float64
    return avail


class _BoundSource:
    """The pair's per-element bound and how it was obtained, derived at most once."""

    def __init__(self, s: Session, pair: Any, tol: Tolerances, lean: bool = False) -> None:
        self.s, self.pair, self.tol, self.lean = s, pair, tol, lean
        self.override: Tolerance | None = tol.override_for(s.caffe.layer_of[pair.key])
        self._values: np.ndarray | None = None
        self._ceiling: np.ndarray | None = None
        self.desc = ""
        if self.override is not None:
            self.desc = override_desc(self.override)
            self._values = self.override.bound(np.asarray(s.ref[pair.key], np.float64))

    def ceiling(self) -> np.ndarray:
        """The rigorous float32 ceiling at the reference's operating point (derived on first use; only a failing
        comparison asks): never below :meth:`values`."""
        if self._ceiling is None:
            try:
                self._ceiling = np.maximum(self.s.caffe.bound(self.pair, self.tol.c, ceiling=True)[0], self.values())
            except Exception:
                self._ceiling = self.values()
        return self._ceiling

    def ceiling_fn(self) -> Callable[[], np.ndarray] | None:
        """:meth:`ceiling` for :func:`~.result.compare_arrays` (None under a user override: no ceiling there; and in
        a dataset run, which settles nothing: no reference runs for it)."""
        return None if self.override is not None or self.lean else self.ceiling

    def values(self) -> np.ndarray:
        if self._values is None:
            try:
                b, rule = self.s.caffe.bound(self.pair, self.tol.c)
                self._values, self.desc = b, f"derived: {rule}"
            except Exception as e:  # a reference function refusing the squared weights: the generic bound
                r = np.asarray(self.s.ref[self.pair.key], np.float64)
                self._values = self.tol.c * U32 * math.sqrt(9) * (np.abs(r) + float(np.max(np.abs(r), initial=0.0)))
                self.desc = (f"derived (generic, K=8, m=|y|+max|y|; the layer's own rule failed: "
                             f"{type(e).__name__}: {short(e)})")
        return self._values


def _isolated_result(p: Any, r: np.ndarray, v: Any, bound: _BoundSource) -> BlobResult:
    if isinstance(v, Exception):
        return BlobResult(p.caffe_layer, "isolated", False, "", tuple(r.shape),
                          error=f"the Keras layer failed on the reference's inputs: {type(v).__name__}: {short(v)}")
    if v.shape != r.shape:
        return compare_arrays(p.caffe_layer, "isolated", r, v, 0.0, tolerance="", lean=bound.lean)
    return compare_arrays(p.caffe_layer, "isolated", r, v, bound.values(), tolerance=bound.desc,
                          lean=bound.lean, ceiling=bound.ceiling_fn())


def _chained_result(s: Session, p: Any, v: Any, bound: _BoundSource, avail: dict[str, np.ndarray],
                    cmemo: dict[str, np.ndarray], moved_memo: dict[str, bool] | None = None
                    ) -> tuple[BlobResult, float | None]:
    """(result, chained error relative to the blob's scale; None when there is no comparable output)."""
    r = np.asarray(s.ref[p.key], np.float64)
    if isinstance(v, Exception):
        return BlobResult(p.caffe_layer, "chained", False, "", tuple(r.shape),
                          error=f"the Keras model failed: {type(v).__name__}: {short(v)}"), None
    if v.shape != r.shape:
        return compare_arrays(p.caffe_layer, "chained", r, v, 0.0, tolerance="", lean=bound.lean), None
    b = bound.values()
    ad = abs_difference(v, r)  # |v - r|, computed once for the test below and every comparison of this pair
    res = None
    if bound.override is None and not _within(ad, v, r, b):
        res = _carried_rule(s, p, (r, v, b), bound, avail, cmemo, ad, moved_memo)
    if res is None:
        res = compare_arrays(p.caffe_layer, "chained", r, v, b, tolerance=bound.desc, lean=bound.lean, absdiff=ad,
                             ceiling=bound.ceiling_fn())
        if bound.override is None and not bound.lean and (res.bound_ratio or 0.0) > SPLIT_ABOVE:
            _split_margins(s, p, res, (r, v, b), avail, cmemo)
    rel = res.max_abs / res.scale if res.scale else (0.0 if not res.max_abs else math.inf)
    return res, rel


# a chained pair using more than this fraction of its bound against the reference gets its own and carried margins
# apart (the reference re-run on its Keras inputs): a near miss that is only carried error is not one
SPLIT_ABOVE = 0.5


def _split_margins(s: Session, p: Any, res: BlobResult, rvb: tuple[np.ndarray, np.ndarray, np.ndarray],
                   avail: dict[str, np.ndarray], cmemo: dict[str, np.ndarray]) -> None:
    """A chained pair within its bound but near it: its own margin (``|keras - f(keras inputs)| / bound``) and the
    carried one (``|f(keras inputs) - caffe| / bound``) apart; ``bound_ratio`` stays the error against Caffe."""
    r, v, b = rvb
    try:
        expected = s.caffe.compute(p.key, avail, cmemo, exclude=p.key)
    except Exception:
        return
    if expected is None or expected.shape != r.shape:
        return
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        res.own_bound_ratio = float(np.nanmax(np.abs(v - expected) / b)) if r.size else 0.0
        res.carried_ratio = float(np.nanmax(np.abs(expected - r) / b)) if r.size else 0.0


def _within(ad: tuple[np.ndarray, bool], v: np.ndarray, r: np.ndarray, b: np.ndarray, frac: float = 1.0) -> bool:
    """Whether every raw ``|v - r|`` is within ``frac * b`` (NaN -> False; a non-finite reference matched by Keras is not
    within: ``inf - inf`` is NaN).  ``ad``: :func:`~harness.compare.reports.result.abs_difference`, which is the raw difference when it is all
    finite; otherwise the raw difference is recomputed here."""
    d, all_finite = ad
    if all_finite:
        return bool(np.all(d <= frac * b))
    with np.errstate(invalid="ignore", over="ignore"):
        d_ = np.asarray(np.subtract(v, r, dtype=np.float64, order="C"))
        np.abs(d_, out=d_)
        return bool(np.all(d_ <= frac * b))  # NaN -> False


def _carried_rule(s: Session, p: Any, rvb: tuple[np.ndarray, np.ndarray, np.ndarray], bound: _BoundSource,
                  avail: dict[str, np.ndarray], cmemo: dict[str, np.ndarray],
                  ad: tuple[np.ndarray, bool] | None = None,
                  moved_memo: dict[str, bool] | None = None) -> BlobResult | None:
    """Not within this layer's own rounding bound of the reference (``rvb``: reference, Keras, bound): remove what
    the layer received (re-run the reference on the Keras chained inputs) and judge only what it added.  None when
    the re-run is not possible."""
    r, v, b = rvb
    desc, c = bound.desc, bound.tol.c
    try:
        expected = s.caffe.compute(p.key, avail, cmemo, exclude=p.key)
    except Exception:
        return None
    if expected is None or expected.shape != r.shape:
        return None
    view = ChainedValues({p.key: expected}, avail, cmemo, s.ref)
    eb = None
    if moved(s, p, avail, cmemo, moved_memo):
        # an upstream divergence moved this layer's operating point: derive the bound there
        eb = bound_at(s, p, c, view, b)
        b = eb
    res = compare_arrays(p.caffe_layer, "chained", r, v, b, tolerance=desc, expected=expected, lean=bound.lean,
                         absdiff=ad)
    if not res.passed and eb is None:
        # f(keras inputs) is judged with the bound derived at its own operating point too (the Keras inputs and f
        # of them): the reference's bound is ~0 where the reference's input is exactly 0 (after a ReLU) and the
        # Keras one is not (SSD300 conv4_3_norm).  Derived only when needed: with max(b, that bound) a pass under b
        # stays a pass.
        eb = bound_at(s, p, c, view, b)
        res = compare_arrays(p.caffe_layer, "chained", r, v, b, tolerance=desc, expected=expected, expected_bound=eb,
                             lean=bound.lean, absdiff=ad, ceiling=bound.ceiling_fn())
    if not bound.lean:  # a dataset run (lean) keeps no propagated error: one float64 pass less per pair
        res.propagated_max_abs = float(np.max(np.abs(expected - r))) if r.size else 0.0
    return res


def bound_at(s: Session, pair: Any, c: float, view: Mapping[str, np.ndarray], b: np.ndarray) -> np.ndarray:
    """``max(b, the derived bound at the operating point view)`` (``b`` when the derivation fails there)."""
    try:
        return np.maximum(b, s.caffe.bound(pair, c, view)[0])
    except Exception:
        return b


def moved(s: Session, pair: Any, avail: Mapping[str, np.ndarray], memo: Mapping[str, np.ndarray],
          cache: dict[str, bool] | None = None) -> bool:
    """Whether the chained inputs of ``pair``'s segment differ from the reference's by more than 1e-3 of their
    scale (an upstream bug, not rounding).  ``cache``: the answer per record, kept over one judge (a record read by
    several pairs, e.g. a ResNet block's input read by both branches, is measured once)."""
    first = pair.segment[0] if pair.segment else s.caffe.layer_of[pair.key].name
    for k in s.caffe.bottom_keys[first]:
        got = cache.get(k) if cache is not None else None
        if got is None:
            v = avail.get(k, memo.get(k))
            if v is None:
                continue
            got = _moved_record(np.asarray(s.ref[k], np.float64), v)
            if cache is not None:
                cache[k] = got
        if got:
            return True
    return False


def _moved_record(r: np.ndarray, v: np.ndarray) -> bool:
    if v.shape != r.shape:
        return True
    scale = float(np.max(np.abs(r))) if r.size else 0.0
    return bool(r.size and float(np.max(np.abs(v - r))) > 1e-3 * max(scale, 1e-30))


def short(e: Exception) -> str:
    s = " ".join(str(e).split())
    return s[:240] + ("..." if len(s) > 240 else "")


def override_desc(t: Tolerance) -> str:
    s = f"atol={t.atol if t.atol is not None else 0:g} OR rtol={t.rtol if t.rtol is not None else 0:g}"
    return s + (f" ({t.reason})" if t.reason else "")
