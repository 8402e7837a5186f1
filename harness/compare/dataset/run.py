"""A dataset run from start to end: the batches of a :class:`~.datasets.Dataset` compared in this process or on Dask
(:mod:`.scaleout`), folded into an :class:`~.aggregate.Aggregate`, the first failing layer's worst sample compared
alone (for its cause and fix), and the :class:`~.dataset_report.DatasetReport`.  A ``KeyboardInterrupt`` (Ctrl-C)
stops the run: the report holds what was seen so far and says so (``interrupted``)."""

from __future__ import annotations

import time
from typing import Any, Callable

from .aggregate import Aggregate
from .report import DatasetReport
from .sources import Dataset
from .batch import Check, Sides, evaluate_batch

Progress = Callable[[int, int], None]  # (samples done, samples in all)


def run_dataset(check: Check, dataset: Dataset, *, workers: int | None = None, scheduler: str | None = None,
                progress: Progress | None = None, sides: Sides | None = None, diagnose: bool = True) -> DatasetReport:
    """Compare ``check`` over ``dataset`` in batches of ``check.batch``.  ``workers``/``scheduler``: on Dask;
    ``sides``: the already loaded net and model (this process only)."""
    agg = Aggregate()
    t0 = time.perf_counter()
    check, split_notice = fit_memory(check, workers=workers, scheduler=scheduler)

    def fold(stats: Any) -> None:
        agg.add(stats)
        if progress is not None:
            progress(agg.samples, dataset.n)

    interrupted, load = False, 0.0
    if progress is not None:
        progress(0, dataset.n)
    batches = _with_layer0(dataset, check.batch, agg)
    try:
        if workers or scheduler:
            from .scaleout import run_on_dask

            run_on_dask(check, batches, fold, workers=workers, scheduler=scheduler)
        else:
            t = time.perf_counter()
            sides = sides or Sides.load(check)
            load = time.perf_counter() - t
            for start, arrays, keras in batches:
                fold(evaluate_batch(sides, arrays, start, keras))
    except KeyboardInterrupt:
        interrupted = True
    seconds = time.perf_counter() - t0
    report = DatasetReport(agg, agg.names[0], agg.names[1], check.mode,
                           {"path": dataset.path, "kind": dataset.kind, "total": dataset.n, "batch": check.batch},
                           sample_name=dataset.sample_name, interrupted=interrupted,
                           workers=scheduler or workers, seconds=seconds, load_seconds=load)
    if split_notice:
        report.notes.append(split_notice)
    if diagnose and not interrupted and report.failing():
        try:
            if report.failing()[0].key == _layer0_key():
                report.layer0_diagnosis = layer0_diagnosis(dataset, report)
            else:
                report.worst_sample_report = worst_sample_report(check, dataset, report, sides)
        except KeyboardInterrupt:  # every sample was seen: the statistics stand without the diagnosis
            report.notes.append("notice: interrupted while comparing the worst sample alone: no diagnosis")
    return report


def fit_memory(check: Check, *, workers: int | None, scheduler: str | None) -> tuple[Check, str | None]:
    """``check`` with its batch halved until one batch's estimated peak memory
    (:func:`~.memory.fitting_batch`) fits the budget (every local worker holds one batch); an existing cluster's
    workers (``scheduler``) are not measured here.  Refuses in one line when one sample does not fit."""
    import dataclasses

    from ...caffe import load_net
    from ...errors import HarnessError
    from .memory import fitting_batch

    if scheduler:
        return check, None
    try:
        net = load_net(check.prototxt, input_shapes={k: (1, *s) for k, s in check.input_shapes} or None)
    except HarnessError:
        return check, None  # the run itself names the problem
    b, notice = fitting_batch(net, check.batch, streaming=check.mode == "chained", processes=workers or 1)
    return (check if b == check.batch else dataclasses.replace(check, batch=b)), notice


def _with_layer0(dataset: Dataset, batch: int, agg: Aggregate) -> Any:
    """The dataset's batches; an image dataset's layer 0 (Caffe's preprocessing against the Keras side's) is judged
    here, where each batch is read, and folded in before the batch goes to the net comparison."""
    images = dataset.images
    for start, arrays, keras in dataset.batches(batch):
        if keras is not None and images is not None:
            from .batch import layer0_batch_stats

            name = next(iter(arrays))
            agg.add_layer(layer0_batch_stats(arrays[name], keras[name], images[1], images[2]), start,
                          int(arrays[name].shape[0]))
        yield start, arrays, keras


def _layer0_key() -> str:
    from ..layer0.preprocessing import LAYER0

    return LAYER0


def layer0_diagnosis(dataset: Dataset, report: DatasetReport) -> Any:
    """Layer 0 of the image where it was worst, compared and diagnosed as ``check --images`` does
    (:func:`harness.compare.layer0.preprocessing.run_layer0`): a :class:`~harness.compare.layer0.preprocessing.Layer0`."""
    from ...reference.preprocess import keras_pixels, read_originals
    from ..layer0.preprocessing import run_layer0

    paths, t, side, hw = dataset.images
    i = report.failing()[0].worst().worst_sample
    if i is None:
        return None
    bgr = read_originals([paths[i]], t)
    rgb = [keras_pixels(im, paths[i]) for im in bgr]
    return run_layer0(bgr, rgb, [paths[i]], t, side, input_hw=hw)


def worst_sample_report(check: Check, dataset: Dataset, report: DatasetReport, sides: Sides | None) -> Any:
    """The single-sample comparison (:func:`harness.compare.compare`, with its diagnosis) of the sample where the
    first failing layer was worst; None when that layer could not be compared at all."""
    from ..engine.comparison import compare

    la = report.failing()[0]
    i = la.worst().worst_sample
    if i is None:
        i = next((m.worst_sample for m in la.modes.values() if m.worst_sample is not None), None)
    if i is None:
        return None
    sides = sides or Sides.load(check)
    mode = check.mode if check.mode != "chained" else "both"  # isolated too: the diagnosis needs the layer's own error
    keras_inputs = None
    if dataset.images is not None and dataset.images[2] is not None:  # the Keras side's own layer 0 of that image
        from ..layer0.preprocessing import layer0_batch

        paths, t, side, hw = dataset.images
        name = next(iter(dataset.sources))
        caffe, keras = layer0_batch([paths[i]], t, side, input_hw=hw)
        keras_inputs = {name: keras} if keras.shape == caffe.shape else None
    return compare(sides.net_for(1), sides.keras_model, dataset.sample(i), mode=mode, atol=check.atol,
                   rtol=check.rtol, tolerances=_tolerances(check), user_map=sides.user_map, seed=check.seed,
                   keras_inputs=keras_inputs)


def _tolerances(check: Check) -> Any:
    import json

    return json.loads(check.tolerances) if check.tolerances else None
