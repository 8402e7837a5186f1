"""Result objects (Polygraphy style: truthy, and each states the tolerance that would have passed).

:class:`BlobResult` is one comparison of one Caffe blob record with one Keras output (chained or isolated);
:class:`LayerResult` holds both comparisons of one matched pair; :class:`Report` the whole run.  The JSON layout is
documented in :mod:`harness.compare.reports.report`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def fmt_number(v: float | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return str(v)
    if v == 0:
        return "0"
    return f"{v:.4g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.2e}"


def json_float(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    if not math.isfinite(v):  # JSON has no Inf/NaN: null (e.g. a relative error where the reference is 0)
        return None
    return v


@dataclass
class BlobResult:
    """One comparison.  Truthy when passed.

    ``error`` is set when the comparison could not run (shape mismatch, a Keras layer that fails on the reference's
    values); then ``passed`` is False and the error statistics are None."""

    name: str  # caffe layer (for messages)
    mode: str  # "chained" | "isolated"
    passed: bool
    tolerance: str  # the rule used, e.g. "derived: 4*u32*sqrt(27+1)*(||w*x||_2 + |y|)" or "atol=1e-3 OR rtol=1e-4"
    shape: tuple[int, ...] = ()
    max_abs: float | None = None
    mean_abs: float | None = None
    median_abs: float | None = None
    max_rel: float | None = None
    mean_rel: float | None = None
    median_rel: float | None = None
    scale: float | None = None  # max |reference|
    frac_fail: float | None = None
    worst_index: tuple[int, ...] | None = None  # NCHW index of the element with the largest error/bound ratio
    worst_ref: float | None = None
    worst_keras: float | None = None
    worst_bound: float | None = None
    needs_atol: float | None = None  # the smallest atol that alone would have passed
    needs_rtol: float | None = None  # the smallest rtol that alone would have passed (inf when ref is 0 somewhere)
    nonfinite: int = 0  # Keras NaN/Inf where the reference is finite
    nonfinite_matched: int = 0  # reference NaN/Inf (Caffe's own rule) reproduced exactly by Keras: not errors
    nonfinite_rule: str = ""  # the Caffe rule that produces them, when known
    propagated_max_abs: float | None = None  # chained: max |f(keras inputs) - f(reference inputs)|
    growth: float | None = None  # chained: CRADLE growth (see Report)
    bound_ratio: float | None = None  # max over elements of |keras - expected| / bound (< 1: passed; 1/x = margin)
    # the layer's own margin and the one it carries apart: own = max |keras - f(keras inputs)| / bound (isolated:
    # = bound_ratio), carried = max |f(keras inputs) - caffe| / bound (chained pairs near or past their bound)
    own_bound_ratio: float | None = None
    carried_ratio: float | None = None
    worst_ratio: float | None = None  # the error/bound ratio at worst_index
    n_fail: int | None = None  # elements past the bound
    # failing against the statistical bound: the elements past the rigorous float32 ceiling, and the largest
    # error/ceiling ratio (None when the ceiling was not needed: passed, an override, a shape mismatch)
    n_past_ceiling: int | None = None
    ceiling_ratio: float | None = None
    rounding: str = ""  # settled as float32 rounding (every failing element within the ceiling; the diagnosis
    # finds rounding): why; then passed is True
    error: str | None = None
    abs_err_map: np.ndarray | None = field(default=None, repr=False)  # (H, W) max |error| over N, C for 4-D blobs
    # per sample (axis 0) of a blob with a batch axis: max |keras - ref| and max error/bound ratio (a dataset run
    # aggregates them, harness.compare.dataset.batch); not part of the JSON report
    sample_max_abs: np.ndarray | None = field(default=None, repr=False)
    sample_bound_ratio: np.ndarray | None = field(default=None, repr=False)

    def __bool__(self) -> bool:
        return bool(self.passed)

    @property
    def noisy(self) -> bool:
        """Past the statistical bound, every failing element within the float32 ceiling (or settled as rounding)."""
        return bool(self.rounding) or (not self.passed and self.n_past_ceiling == 0 and not self.nonfinite
                                       and not self.error)

    @property
    def rel_to_scale(self) -> float | None:
        if self.max_abs is None or not self.scale:
            return None
        return self.max_abs / self.scale

    def __str__(self) -> str:
        head = f"{self.name} [{self.mode}]: {'PASS' if self.passed else 'FAIL'}"
        if self.error:
            return f"{head} {self.error}"
        s = f"{head} max_abs={fmt_number(self.max_abs)}"
        if self.worst_index is not None and (self.passed or self.worst_ratio is None):
            s += (f" at {tuple(self.worst_index)} caffe={self.worst_ref:.7g} keras={self.worst_keras:.7g}")
        elif self.worst_index is not None:
            s += (f"; failing element {tuple(self.worst_index)}: caffe={self.worst_ref:.7g} "
                  f"keras={self.worst_keras:.7g} bound={fmt_number(self.worst_bound)} "
                  f"ratio={fmt_number(self.worst_ratio)}; {self.n_fail} of {_size(self.shape)} past the bound")
            if self.n_past_ceiling is not None:
                s += (f", {self.n_past_ceiling} past the float32 ceiling"
                      + (f" (worst {fmt_number(self.ceiling_ratio)} of it)" if self.ceiling_ratio is not None else ""))
        if not self.passed and self.needs_atol is not None:  # atol = the largest |error| passes every element
            s += f"; needs atol>={fmt_number(self.needs_atol)}"
        if self.rounding:
            s += f"; {self.rounding}"
        if self.nonfinite:
            s += f"; {self.nonfinite} NaN/Inf in keras"
        if self.nonfinite_matched:
            s += (f"; {self.nonfinite_matched} NaN/Inf that Caffe itself computes"
                  f"{' (' + self.nonfinite_rule + ')' if self.nonfinite_rule else ''}, reproduced")
        return s

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": bool(self.passed),
            "tolerance": self.tolerance,
            "max_abs": json_float(self.max_abs), "mean_abs": json_float(self.mean_abs), "median_abs": json_float(self.median_abs),
            "max_rel": json_float(self.max_rel), "mean_rel": json_float(self.mean_rel), "median_rel": json_float(self.median_rel),
            "scale": json_float(self.scale),
            "frac_out_of_tolerance": json_float(self.frac_fail),
            "worst": None if self.worst_index is None else {
                "index": [int(i) for i in self.worst_index], "caffe": json_float(self.worst_ref),
                "keras": None if self.worst_keras is None or not math.isfinite(self.worst_keras)
                else float(self.worst_keras),
                "bound": json_float(self.worst_bound), "ratio": json_float(self.worst_ratio)},
            "needs_atol": json_float(self.needs_atol),
            "needs_rtol": None if self.needs_rtol is None or math.isinf(self.needs_rtol) else json_float(self.needs_rtol),
            "nonfinite": int(self.nonfinite),
            "nonfinite_matched": int(self.nonfinite_matched),
            "nonfinite_rule": self.nonfinite_rule or None,
            "propagated_max_abs": json_float(self.propagated_max_abs),
            "growth": json_float(self.growth),
            "bound_ratio": json_float(self.bound_ratio),
            "own_bound_ratio": json_float(self.own_bound_ratio),
            "carried_ratio": json_float(self.carried_ratio),
            "n_out_of_tolerance": self.n_fail,
            "n_past_ceiling": self.n_past_ceiling,
            "ceiling_ratio": json_float(self.ceiling_ratio),
            "noisy": self.noisy,
            "rounding": self.rounding or None,
            "error": self.error,
        }


_MEDIAN_SAMPLE = 1 << 14


def _median(a: np.ndarray) -> float:
    """Median (exact up to 16384 elements; beyond that, of an evenly strided sample of that many)."""
    flat = a.reshape(-1)
    if flat.size > _MEDIAN_SAMPLE:
        flat = flat[:: flat.size // _MEDIAN_SAMPLE]
    return float(np.median(flat))


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape)) if shape else 1


def abs_difference(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, bool]:
    """``|a - b|`` in float64 (one array); matching Inf/NaN count as 0, any other NaN as Inf.  Also whether it is all
    finite."""
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.asarray(np.subtract(a, b, dtype=np.float64, order="C"))  # C order: keras may be an NHWC view; 0-d: a scalar
        np.abs(d, out=d)
    if d.size == 0 or math.isfinite(float(np.max(d))):  # max propagates NaN: one pass, no mask array
        return d, True
    with np.errstate(invalid="ignore"):
        d[(a == b) | (np.isnan(a) & np.isnan(b))] = 0.0  # matching Inf / NaN where the reference has them
    d[np.isnan(d)] = np.inf
    return d, False


def _float(a: Any) -> np.ndarray:
    a = np.asarray(a)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def compare_arrays(name: str, mode: str, ref: np.ndarray, keras: np.ndarray, bound: np.ndarray | float, *,
                   tolerance: str, expected: np.ndarray | None = None,
                   expected_bound: np.ndarray | float | None = None, lean: bool = False,
                   absdiff: tuple[np.ndarray, bool] | None = None,
                   ceiling: Any = None) -> BlobResult:
    """Compare ``keras`` with ``ref`` (both NCHW).  An element passes when ``|keras - ref| <= bound``, or, when
    ``expected`` is given (chained mode: ``f(keras inputs)``, so that upstream error is not charged to this layer),
    when ``|keras - expected| <= expected_bound`` (default ``bound``; chained mode passes the larger of the bounds
    derived at the reference and at the Keras inputs: the rounding of ``f(keras inputs)`` is that of its own operating
    point, e.g. a Normalize input that is 0 in the reference and 1e-5 in Keras).
    Non-finite parity: where the reference itself is NaN or +-Inf (Caffe's own rule produces it: an AVE window wholly
    in the ceil overhang divides by 0, a negative base to a fractional power), a Keras value that is the same NaN or
    Inf passes; they are counted in ``nonfinite_matched``, and so is a Keras Inf where the finite float64 reference is
    beyond the float32 range with the same sign (Caffe's float32 overflows there too: an Exp of a large argument).  NaN/Inf in ``keras`` where ``ref`` is finite always fails
    (``nonfinite``).  Statistics are against ``ref`` (the error a user sees); medians of blobs above 16384 elements
    are taken on an evenly strided sample.  Work arrays: two or three float64 arrays of the blob's size (the error,
    the ratio/relative error, and ``|keras - expected|``).  ``lean`` (a dataset run): the mean, median and relative
    statistics and the error map are not computed (None).  ``absdiff``: ``abs_difference(keras, ref)`` when the caller has it
    already (the chained judge computes it once per pair; it is read, never written).  ``ceiling``: a callable giving
    the float32 ceiling, called only when some element fails (``n_past_ceiling``, :func:`_apply_ceiling`)."""
    ref = _float(ref)
    k = _float(keras)
    if ref.shape != k.shape:
        return BlobResult(name, mode, False, tolerance, tuple(ref.shape),
                          error=f"shape mismatch: caffe {tuple(ref.shape)} vs keras {tuple(k.shape)} (NCHW)")
    if ref.size == 0:
        return BlobResult(name, mode, True, tolerance, tuple(ref.shape), max_abs=0.0, frac_fail=0.0)
    bound = np.asarray(bound, np.float64)
    diff, all_finite = abs_difference(k, ref) if absdiff is None else absdiff
    n_ok, ratio, nonfinite, matched, own = _judged(k, ref, diff, bound, all_finite, expected, expected_bound)
    per_sample = _per_sample(diff, ratio)
    # the largest ratio, NaN skipped: that of the per sample maxima (one pass over the ratio array less)
    bound_ratio = _nanmax(ratio) if per_sample is None else _nanmax(per_sample[1])
    flat_i = int(np.argmax(diff))
    max_abs = float(diff.reshape(-1)[flat_i])
    worst, worst_ratio = _worst(ratio, ref.shape)
    mean_abs = median_abs = max_rel = mean_rel = median_rel = None
    if not lean:
        mean_abs, median_abs = float(np.mean(diff)), _median(diff)
        max_rel, mean_rel, median_rel = _relative(diff, ref, ratio, all_finite)  # reuses the ratio's array
    del ratio
    res = BlobResult(
        name, mode, n_ok == diff.size, tolerance, tuple(ref.shape),
        max_abs=max_abs, mean_abs=mean_abs, median_abs=median_abs,
        max_rel=max_rel, mean_rel=mean_rel, median_rel=median_rel,
        scale=_scale(ref, all_finite),
        frac_fail=float(diff.size - n_ok) / diff.size,
        worst_index=tuple(int(i) for i in worst), worst_ref=float(ref[worst]), worst_keras=float(k[worst]),
        worst_bound=float(np.broadcast_to(bound, ref.shape)[worst]),
        needs_atol=max_abs, needs_rtol=max_rel, nonfinite=nonfinite, bound_ratio=bound_ratio,
        nonfinite_matched=matched, worst_ratio=worst_ratio, n_fail=int(diff.size - n_ok),
        own_bound_ratio=bound_ratio if expected is None else own,
    )
    _margins(res, (diff, k, ref, bound), expected, ceiling if n_ok < diff.size else None)
    if per_sample is not None:
        res.sample_max_abs, res.sample_bound_ratio = per_sample
    if ref.ndim == 4 and not lean:
        res.abs_err_map = _error_map(diff, all_finite)
    return res


def _margins(res: BlobResult, dkrb: tuple[np.ndarray, ...], expected: np.ndarray | None, ceiling: Any) -> None:
    """The carried ratio (chained, with ``expected``) and, for a failing comparison, the ceiling's counts."""
    diff, k, ref, bound = dkrb
    if expected is not None:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            res.carried_ratio = _nanmax(np.abs(_float(expected) - ref) / np.maximum(bound, 1e-300))
    if ceiling is not None:
        _apply_ceiling(res, diff, k, expected, ceiling)


def _worst(ratio: np.ndarray, shape: tuple[int, ...]) -> tuple[tuple[int, ...], float]:
    """The element shown: the one with the largest error/bound ratio (the failing one; NaN ratios as Inf), and its
    ratio."""
    with np.errstate(invalid="ignore"):
        flat_w = int(np.argmax(np.where(np.isnan(ratio), np.inf, ratio))) if np.ndim(ratio) else 0
    worst = np.unravel_index(flat_w, shape)
    return worst, float(np.reshape(ratio, -1)[flat_w]) if np.ndim(ratio) else float(ratio)


def _error_map(diff: np.ndarray, all_finite: bool) -> np.ndarray:
    """(H, W) max |error| over N, C (non-finite errors shown as the largest finite one)."""
    if all_finite:
        return diff.max(axis=(0, 1))
    finite_max = float(np.max(np.where(np.isfinite(diff), diff, 0.0)))
    return np.where(np.isfinite(diff), diff, finite_max).max(axis=(0, 1))


def _apply_ceiling(res: BlobResult, diff: np.ndarray, k: np.ndarray, expected: np.ndarray | None,
                   ceiling: Any) -> None:
    """``n_past_ceiling`` and ``ceiling_ratio`` of a failing comparison (left None when the ceiling fails)."""
    try:
        c = np.asarray(ceiling(), np.float64)
    except Exception:
        return
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = diff / c
        if expected is not None:
            local, _ = abs_difference(k, _float(expected))
            np.fmin(r, local / c, out=r)
    r = np.where(np.isnan(r), np.inf, r)
    res.n_past_ceiling = int(np.count_nonzero(r > 1.0))
    res.ceiling_ratio = float(np.max(r)) if r.size else 0.0


# the smallest magnitude float32 rounds to Inf (half an ulp above the largest float32: 2**128 (1 - 2**-25))
F32_OVERFLOW = 2.0 ** 128 * (1.0 - 2.0 ** -25)


def _judged(k: np.ndarray, ref: np.ndarray, diff: np.ndarray, bound: np.ndarray, all_finite: bool,
            expected: np.ndarray | None, expected_bound: Any) -> tuple[int, np.ndarray, int, int, float | None]:
    """(elements passing, per-element error/bound ratio, Keras non-finite where the reference is finite, non-finite
    reference values the Keras output reproduces exactly, the largest ``|keras - expected| / expected_bound``:
    the layer's own margin, None without ``expected``)."""
    own = None
    nonfinite = matched = 0
    bad_nf = same_nf = None
    if not all_finite:
        ref_nf = ~np.isfinite(ref)
        bad_nf = ~np.isfinite(k) & ~ref_nf
        nonfinite = int(np.count_nonzero(bad_nf))
        with np.errstate(invalid="ignore"):
            same_nf = ref_nf & ((k == ref) | (np.isnan(k) & np.isnan(ref)))
            # a finite float64 reference beyond the float32 range: Caffe's float32 computes the same-signed Inf
            overflow = np.isinf(k) & ~ref_nf & (np.abs(ref) >= F32_OVERFLOW) & (np.sign(k) == np.sign(ref))
        bad_nf &= ~overflow
        same_nf |= overflow
        nonfinite = int(np.count_nonzero(bad_nf))
        matched = int(np.count_nonzero(same_nf))
    ok = diff <= bound
    positive = bool(np.min(bound) > 0)  # a derived bound is (floor 1e-35); an atol/rtol override may be 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if positive:
            ratio = np.asarray(np.divide(diff, bound), np.float64)  # 0 where the error is 0 (0-d: a scalar)
        else:
            ratio = np.zeros(diff.shape, np.float64)
            np.divide(diff, bound, out=ratio, where=diff != 0)
        if expected is not None:
            ebound = bound if expected_bound is None else np.asarray(expected_bound, np.float64)
            local, _ = abs_difference(k, _float(expected))
            ok |= local <= ebound
            np.divide(local, ebound, out=local, where=local != 0)  # zeros stay zero
            own = _nanmax(local) if local.size else 0.0
            np.fmin(ratio, local, out=ratio)  # within the bound of the reference OR of f(keras inputs)
            del local
    if same_nf is not None and matched:
        ok |= same_nf  # Caffe's own NaN/Inf, reproduced (the bound there is not a number)
        ratio = np.where(same_nf, 0.0, ratio) if np.ndim(ratio) else ratio
    if bad_nf is not None:
        ok &= ~bad_nf
    return int(np.count_nonzero(ok)), ratio, nonfinite, matched, own


def _per_sample(diff: np.ndarray, ratio: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(max |error|, max error/bound ratio) of each sample along axis 0 (None for a 0-d blob); NaN ratios are
    skipped as :func:`_nanmax` skips them."""
    if diff.ndim == 0 or np.ndim(ratio) != diff.ndim:
        return None
    n = diff.shape[0]
    return diff.reshape(n, -1).max(axis=1), np.fmax.reduce(ratio.reshape(n, -1), axis=1)


def _nanmax(a: np.ndarray) -> float:
    v = float(np.max(a))
    if math.isnan(v):
        with np.errstate(invalid="ignore"):
            v = float(np.nanmax(a))
    return v


def _relative(diff: np.ndarray, ref: np.ndarray, rel: np.ndarray, all_finite: bool) -> tuple[float, Any, float]:
    """(max, mean, median) of ``|keras - ref| / |ref|`` (0 where the error is 0), written into ``rel``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if all_finite:
            np.divide(diff, ref, out=rel)
            np.abs(rel, out=rel)
            np.fmax(rel, 0.0, out=rel)  # 0/0 (NaN) -> 0: no error where the reference is 0
        else:
            rel.fill(0.0)
            np.divide(diff, ref, out=rel, where=diff != 0)
            np.abs(rel, out=rel)
    max_rel = _nanmax(rel)
    mean_rel = float(np.mean(rel))
    if not math.isfinite(mean_rel):  # Inf where the reference is 0, NaN where it is not finite: the finite ones
        finite_rel = rel[np.isfinite(rel)]
        mean_rel = float(np.mean(finite_rel)) if finite_rel.size else None
    return max_rel, mean_rel, _median(rel)


def _scale(ref: np.ndarray, all_finite: bool) -> float:
    """max |ref| over its finite elements."""
    if all_finite:
        return float(max(np.max(ref), -np.min(ref)))
    fin = np.isfinite(ref)
    return float(np.max(np.abs(ref[fin]))) if fin.any() else float(np.max(np.abs(ref)))


@dataclass
class LayerResult:
    caffe_layer: str
    caffe_top: str
    key: str
    keras_layer: str
    matched_by: str
    shape: tuple[int, ...]
    layer_type: str = ""
    segment: tuple[str, ...] = ()
    chained: BlobResult | None = None
    isolated: BlobResult | None = None
    params: dict | None = None  # parameter evidence (harness.compare.engine.evidence)
    # where the prototxt writes caffe_layer (harness.net.Location; None when the net was not read from text)
    file: str | None = None
    line: int | None = None
    column: int | None = None
    sqnr_db: float | None = None  # a quantised artefact: SQNR (dB) of the chained output against the reference

    @property
    def passed(self) -> bool:
        return all(r.passed for r in (self.chained, self.isolated) if r is not None)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        parts = [str(r) for r in (self.chained, self.isolated) if r is not None]
        return "; ".join(parts) if parts else f"{self.caffe_layer}: not compared"

    def to_dict(self) -> dict[str, Any]:
        return {
            "caffe_layer": self.caffe_layer, "caffe_top": self.caffe_top, "caffe_type": self.layer_type,
            "keras_layer": self.keras_layer, "matched_by": self.matched_by, "shape": list(self.shape),
            "segment": list(self.segment),
            "chained": self.chained.to_dict() if self.chained is not None else None,
            "isolated": self.isolated.to_dict() if self.isolated is not None else None,
            "params": self.params,
            "file": self.file, "line": self.line, "column": self.column,
            "sqnr_db": json_float(None if self.sqnr_db is None else round(float(self.sqnr_db), 3)),
        }


@dataclass
class Cause:
    cause: str
    confidence: float
    explanation: str
    fix: str
    layer: str = ""  # the Caffe layer of a fused span the cause belongs to, when the hypothesis knows it

    def to_dict(self) -> dict[str, Any]:
        return {"cause": self.cause, "confidence": float(self.confidence), "explanation": self.explanation,
                "fix": self.fix}


@dataclass
class FirstDivergence:
    caffe_layer: str
    keras_layer: str
    key: str
    mode: str  # which comparison established it ("isolated", or "chained" when isolated was not run)
    diagnosis: list[Any] = field(default_factory=list)
    file: str | None = None  # where the prototxt writes caffe_layer (as LayerResult)
    line: int | None = None
    column: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"caffe_layer": self.caffe_layer, "keras_layer": self.keras_layer, "caffe_key": self.key,
                "mode": self.mode, "diagnosis": [cause_dict(c) for c in self.diagnosis],
                "file": self.file, "line": self.line, "column": self.column}

    @property
    def where(self) -> str:
        """``file:line: layer`` (just the layer when its location is unknown): what the verdict prints."""
        return f"{self.file}:{self.line}: {self.caffe_layer}" if self.line is not None else self.caffe_layer


def cause_dict(c: Any) -> dict[str, Any]:
    if hasattr(c, "to_dict"):
        return c.to_dict()
    if isinstance(c, dict):
        return {k: c.get(k) for k in ("cause", "confidence", "explanation", "fix")}
    return {"cause": getattr(c, "cause", "unknown"), "confidence": float(getattr(c, "confidence", 0.0)),
            "explanation": str(getattr(c, "explanation", "")), "fix": str(getattr(c, "fix", ""))}


_cause_dict = cause_dict  # the earlier private spelling


def params_column(params: dict | None) -> str:
    """The parameter evidence's terminal column (:mod:`harness.compare.engine.evidence`): ``ok``, ``-`` or the first check that is not equal (``kernel reshaped``)."""
    if not params or params["status"] == "none":
        return "-"
    if params["status"] == "equal":
        return "ok"
    c = next(c for c in params["checks"] if not c["result"].startswith("equal"))
    if c["result"] == "different" and not isinstance(c["keras"], list) and (c["keras"], c["caffe"]) != (None, None):
        return f"{c['what']} {_val(c['keras'])} (Caffe {_val(c['caffe'])})"
    return f"{c['what']} {c['result']}"


def _val(v: Any) -> str:
    return "none" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)
