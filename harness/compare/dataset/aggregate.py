"""A dataset run's statistics, folded batch by batch in memory independent of the number of samples, and its
report (verdict, JSON).

Per matched layer and comparison kind (chained / isolated): whether every sample passed, how many did not, the
worst max |keras - caffe| and the worst error/bound ratio with the sample where each occurred, and the
:data:`QUANTILE` (p99) of the per sample worst ratio and error.  The quantile is estimated by :class:`Sketch`, a
log-binned histogram (DDSketch's bins, relative accuracy 1%): its memory is bounded by the range of the values, not
their number, and merging counts is exact, so the result does not depend on how the batches were split among
workers or in which order they came back.  Every fold here is order-independent (maxima with ties going to the
lower sample index, integer counts), which is what makes ``--workers N`` give the single-worker statistics bit for
bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .batch import BatchStats, ClassBatch, LayerBatch, ModeBatch

QUANTILE = 0.99
ALPHA = 0.01  # the sketch's relative accuracy
QUANTILE_METHOD = ("nearest-rank p99 over samples of the per sample worst value, estimated with a log-binned "
                   "histogram (DDSketch bins, relative accuracy 1%, at most the exact maximum)")


class Sketch:
    """Counts of values in bins ``(gamma**(i-1), gamma**i]``, ``gamma = (1+a)/(1-a)``; zero and non-finite values
    counted apart.  ``quantile(q)`` is within a relative ``a`` of the nearest-rank quantile."""

    def __init__(self, alpha: float = ALPHA) -> None:
        self.gamma = (1 + alpha) / (1 - alpha)
        self.log_gamma = math.log(self.gamma)
        self.bins: dict[int, int] = {}
        self.zero = self.inf = self.n = 0
        self.max = -math.inf

    def add(self, values: np.ndarray) -> None:
        v = np.asarray(values, np.float64).reshape(-1)
        if not v.size:
            return
        self.n += v.size
        fin = np.isfinite(v)
        self.inf += int(np.count_nonzero(~fin))
        pos = v[fin & (v > 0)]
        self.zero += int(np.count_nonzero(fin & (v <= 0)))
        self.max = max(self.max, float(np.max(np.where(fin, v, np.inf))))
        if pos.size:
            idx, counts = np.unique(np.ceil(np.log(pos) / self.log_gamma).astype(np.int64), return_counts=True)
            for i, c in zip(idx.tolist(), counts.tolist()):
                self.bins[i] = self.bins.get(i, 0) + c

    def quantile(self, q: float) -> float | None:
        if not self.n:
            return None
        rank = max(1, math.ceil(q * self.n))  # nearest rank, 1-based
        if rank <= self.zero:
            return 0.0
        seen = self.zero
        for i in sorted(self.bins):
            seen += self.bins[i]
            if seen >= rank:
                return min(2 * self.gamma ** i / (self.gamma + 1), self.max)
        return math.inf


@dataclass
class ModeAgg:
    """One layer's comparison of one kind over the dataset."""

    passed: bool = True
    error: str | None = None
    samples: int = 0
    samples_failed: int = 0
    max_abs: float = -math.inf
    max_abs_sample: int | None = None
    bound_ratio: float = -math.inf
    worst_sample: int | None = None  # where the bound ratio was worst
    error_at: int = 0  # the first batch whose comparison could not run
    ratio_sketch: Sketch = field(default_factory=Sketch)
    abs_sketch: Sketch = field(default_factory=Sketch)

    def add(self, mb: ModeBatch, start: int, n: int) -> None:
        self.samples += n
        self.passed = self.passed and mb.passed
        if mb.error is not None:
            if self.error is None or start < self.error_at:
                self.error, self.error_at = mb.error, start
            self.samples_failed += n
            return
        ma = np.where(np.isnan(mb.max_abs), np.inf, mb.max_abs)
        br = np.where(np.isnan(mb.bound_ratio), np.inf, mb.bound_ratio)
        self.samples_failed += int(np.count_nonzero(br > 1.0))
        self.max_abs, self.max_abs_sample = _worse(self.max_abs, self.max_abs_sample, ma, start)
        self.bound_ratio, self.worst_sample = _worse(self.bound_ratio, self.worst_sample, br, start)
        self.ratio_sketch.add(br)
        self.abs_sketch.add(ma)


def _worse(cur: float, cur_at: int | None, values: np.ndarray, start: int) -> tuple[float, int | None]:
    """The larger of the running maximum and this batch's (ties: the lower sample index)."""
    i = int(np.argmax(values))
    v = float(values[i])
    if cur_at is None or v > cur or (v == cur and start + i < cur_at):
        return v, start + i
    return cur, cur_at


@dataclass
class LayerAgg:
    key: str
    caffe_layer: str
    caffe_top: str
    layer_type: str
    keras_layer: str
    modes: dict[str, ModeAgg] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(m.passed for m in self.modes.values())

    def worst(self) -> ModeAgg:
        """The comparison that decides the layer (chained when run: what the user's model computes)."""
        return self.modes.get("chained") or next(iter(self.modes.values()))


@dataclass
class ClassAgg:
    output: str
    kind: str
    classes: int
    samples: int = 0
    top1: int = 0
    top5: int | None = None
    gap: float = -math.inf
    gap_sample: int | None = None

    def add(self, cb: ClassBatch, start: int, n: int) -> None:
        self.samples += n
        self.top1 += cb.top1
        if cb.top5 is not None:
            self.top5 = (self.top5 or 0) + cb.top5
        at = start + cb.gap_at
        if self.gap_sample is None or cb.gap > self.gap or (cb.gap == self.gap and at < self.gap_sample):
            self.gap, self.gap_sample = cb.gap, at


class Aggregate:
    """Every batch folded in (in any order)."""

    def __init__(self) -> None:
        self.layers: dict[str, LayerAgg] = {}
        self.order: list[str] = []  # Caffe execution order (of the first batch seen)
        self.classes: dict[str, ClassAgg] = {}
        self.samples = 0
        self.batches = 0
        self.problems: list[str] = []
        self.unmatched = 0
        self.names = ("", "")
        self.cpu_seconds = 0.0  # summed over batches (timing only: not a statistic, its rounding depends on order)

    def add(self, b: BatchStats) -> None:
        self.samples += b.n
        self.batches += 1
        self.cpu_seconds += b.cpu_seconds
        if b.start == 0:
            self.problems, self.unmatched = list(b.problems), b.unmatched
        self.names = b.names
        for lb in b.layers:
            agg = self._layer(lb)
            for mode, mb in lb.modes.items():
                agg.modes.setdefault(mode, ModeAgg()).add(mb, b.start, b.n)
        for cb in b.classes:
            self.classes.setdefault(cb.output, ClassAgg(cb.output, cb.kind, cb.classes)).add(cb, b.start, b.n)

    def add_layer(self, lb: LayerBatch, start: int, n: int) -> None:
        """One layer's batch outside the net's batches (an image dataset's layer 0: computed where the batch is
        read)."""
        agg = self._layer(lb)
        for mode, mb in lb.modes.items():
            agg.modes.setdefault(mode, ModeAgg()).add(mb, start, n)

    def _layer(self, lb: LayerBatch) -> LayerAgg:
        agg = self.layers.get(lb.key)
        if agg is None:
            agg = self.layers[lb.key] = LayerAgg(lb.key, lb.caffe_layer, lb.caffe_top, lb.layer_type, lb.keras_layer)
            self.order.append(lb.key)
        return agg

    def in_order(self) -> list[LayerAgg]:
        return [self.layers[k] for k in self.order]

    @property
    def equivalent(self) -> bool:
        return bool(self.layers) and all(la.passed for la in self.layers.values()) and not self.problems
