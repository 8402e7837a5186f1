"""A dataset run from start to end: the batches of a :class:`~.datasets.Dataset` compared in this process or on Dask
(:mod:`.scaleout`), folded into an :class:`~.aggregate.Aggregate`, the first failing layer's worst sample compared
alone (for its cause and fix), and the :class:`~.dataset_report.DatasetReport`.  A ``KeyboardInterrupt`` (Ctrl-C)
stops the run: the report holds what was seen so far and says so (``interrupted``)."""

from __future__ import annotations

import time
from typing import Any, Callable

from .aggregate import Aggregate
from .dataset_report import DatasetReport
from .datasets import Dataset
from .sweep import Check, Sides, evaluate_batch

Progress = Callable[[int, int], None]  # (samples done, samples in all)


def run_dataset(check: Check, dataset: Dataset, *, workers: int | None = None, scheduler: str | None = None,
                progress: Progress | None = None, sides: Sides | None = None, diagnose: bool = True) -> DatasetReport:
    """Compare ``check`` over ``dataset`` in batches of ``check.batch``.  ``workers``/``scheduler``: on Dask;
    ``sides``: the already loaded net and model (this process only)."""
    agg = Aggregate()
    t0 = time.perf_counter()

    def fold(stats: Any) -> None:
        agg.add(stats)
        if progress is not None:
            progress(agg.samples, dataset.n)

    interrupted, load = False, 0.0
    if progress is not None:
        progress(0, dataset.n)
    try:
        if workers or scheduler:
            from .scaleout import run_on_dask

            run_on_dask(check, dataset.batches(check.batch), fold, workers=workers, scheduler=scheduler)
        else:
            t = time.perf_counter()
            sides = sides or Sides.load(check)
            load = time.perf_counter() - t
            for start, arrays in dataset.batches(check.batch):
                fold(evaluate_batch(sides, arrays, start))
    except KeyboardInterrupt:
        interrupted = True
    seconds = time.perf_counter() - t0
    report = DatasetReport(agg, agg.names[0], agg.names[1], check.mode,
                           {"path": dataset.path, "kind": dataset.kind, "total": dataset.n, "batch": check.batch},
                           sample_name=dataset.sample_name, interrupted=interrupted,
                           workers=scheduler or workers, seconds=seconds, load_seconds=load)
    if diagnose and not interrupted and report.failing():
        try:
            report.worst_sample_report = worst_sample_report(check, dataset, report, sides)
        except KeyboardInterrupt:  # every sample was seen: the statistics stand without the diagnosis
            report.notes.append("notice: interrupted while comparing the worst sample alone: no diagnosis")
    return report


def worst_sample_report(check: Check, dataset: Dataset, report: DatasetReport, sides: Sides | None) -> Any:
    """The single-sample comparison (:func:`harness.compare.compare`, with its diagnosis) of the sample where the
    first failing layer was worst; None when that layer could not be compared at all."""
    from .core import compare

    la = report.failing()[0]
    i = la.worst().worst_sample
    if i is None:
        i = next((m.worst_sample for m in la.modes.values() if m.worst_sample is not None), None)
    if i is None:
        return None
    sides = sides or Sides.load(check)
    mode = check.mode if check.mode != "chained" else "both"  # isolated too: the diagnosis needs the layer's own error
    return compare(sides.net_for(1), sides.keras_model, dataset.sample(i), mode=mode, atol=check.atol,
                   rtol=check.rtol, tolerances=_tolerances(check), user_map=sides.user_map, seed=check.seed)


def _tolerances(check: Check) -> Any:
    import json

    return json.loads(check.tolerances) if check.tolerances else None
