"""``caffe-harness check --dataset PATH``: the comparison over a whole dataset in batches, with error-profile
baselines and Dask scale-out (harness.compare.dataset.run).  ``check`` dispatches here when ``--dataset`` is given.

Exit status: 0 equivalent on every sample (and no baseline regression), 1 not, 2 bad input, 130 interrupted (Ctrl-C:
the report of what was seen so far is printed and written; a baseline is never written by an interrupted run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .._atomic import atomic_write
from ..errors import HarnessError

DEFAULT_BATCH = 16
INTERRUPTED = 130
# check's flags that a dataset run does not implement (refused by name rather than ignored)
_NOT_WITH_DATASET = ("input", "inputs", "junit", "html", "sarif", "repro", "repro_layer", "tflite", "saved_model",
                     "signature")
# both sides' preprocessing (commands/_images.py, check --images' flags): what a dataset of images is read with
_PREPROCESS = ("transform_prototxt", "channel_swap", "raw_scale", "mean_file", "mean_value", "input_scale",
               "keras_preprocess", "keras_preprocess_model", "keras_resize", "data_encoded", "data_gray")
_DATASET_ONLY = ("baseline", "update_baseline", "workers", "scheduler", "batch", "baseline_factor")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..compare.dataset.baseline import DEFAULT_FACTOR

    g = p.add_argument_group("dataset runs (--dataset)")
    g.add_argument("--dataset", metavar="PATH",
                   help="compare over a dataset: an .npz of N samples per net input (keyed by input name), a folder "
                        "of .npy files (one sample (C,H,W) or several (k,C,H,W) each), read in batches")
    g.add_argument("--batch", type=int, default=None, metavar="B",
                   help=f"samples per batch of a --dataset run (default {DEFAULT_BATCH})")
    g.add_argument("--baseline", metavar="FILE",
                   help="error-profile baseline (JSON): written when FILE does not exist, else the run fails when a "
                        "layer's worst error/bound ratio grows past --baseline-factor x its baseline")
    g.add_argument("--update-baseline", action="store_true", help="rewrite --baseline FILE from this run")
    g.add_argument("--baseline-factor", type=float, default=None, metavar="F",
                   help=f"growth that fails against the baseline (default {DEFAULT_FACTOR:g})")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="run the batches on an embedded Dask LocalCluster of N single-threaded worker processes "
                        "(needs the 'dask' extra)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the batches on an existing Dask cluster (e.g. tcp://10.0.0.5:8786)")


def refuse_dataset_flags(args: argparse.Namespace) -> None:
    """Without --dataset: the dataset-only flags are refused by name."""
    for name in _DATASET_ONLY:
        v = getattr(args, name, None)
        if v not in (None, False):
            raise HarnessError(f"--{name.replace('_', '-')} needs --dataset PATH")


def _validate(args: argparse.Namespace) -> None:
    for name in _NOT_WITH_DATASET:
        v = getattr(args, name, None)
        if v not in (None, False, []):
            raise HarnessError(f"--{name.replace('_', '-')} is not supported with --dataset (a dataset run writes "
                               f"--json; compare one sample with --input to get the other outputs)")
    if getattr(args, "images", None):
        raise HarnessError("--images and --dataset both give the samples: give one (a --dataset folder of images is "
                           "read with the same preprocessing flags)")
    if args.batch is not None and args.batch <= 0:
        raise HarnessError(f"--batch {args.batch}: must be a positive number of samples")
    if args.workers is not None and args.workers <= 0:
        raise HarnessError(f"--workers {args.workers}: must be a positive number of worker processes")
    if args.workers and args.scheduler:
        raise HarnessError("--workers and --scheduler: give one (--workers starts a local cluster, --scheduler uses "
                           "an existing one)")
    if args.baseline_factor is not None and not args.baseline_factor > 1.0:
        raise HarnessError(f"--baseline-factor {args.baseline_factor:g}: must be greater than 1")
    if (args.update_baseline or args.baseline_factor is not None) and not args.baseline:
        raise HarnessError("--update-baseline / --baseline-factor need --baseline FILE")
    for what in ("json", "baseline"):
        out = getattr(args, what)
        if out and not (Path(out).parent if str(Path(out).parent) else Path(".")).is_dir():
            raise HarnessError(f"--{what} {out!r}: directory {str(Path(out).parent)!r} does not exist")
    if args.workers or args.scheduler:
        from ..compare.dataset.scaleout import require_dask

        require_dask("--scheduler" if args.scheduler else "--workers")


def _net_inputs(args: argparse.Namespace) -> dict:
    from ..caffe import load_net
    from ._io import parse_input_shapes

    shapes = parse_input_shapes(args.input_shape) or None
    try:
        return dict(load_net(args.prototxt, input_shapes=shapes).inputs)
    except HarnessError as e:
        raise HarnessError(f"{e} (a --dataset run sizes the net from the prototxt or --input-shape)") from None


def _image_setup(args: argparse.Namespace):
    """Both sides' preprocessing of a dataset of images (``check --images``' flags and rules:
    commands/_images.image_setup), else None; those flags with a dataset of arrays are refused by name."""
    from ..compare.dataset.sources import is_images

    if not is_images(args.dataset):
        given = [n for n in _PREPROCESS if getattr(args, n, None) not in (None, "", False)]  # False: a switch off
        if given:
            raise HarnessError(f"--{given[0].replace('_', '-')} needs a --dataset of images (the arrays of "
                               f"{args.dataset!r} are the net's input as they are)")
        return None
    from ..compare import resolve_custom_objects
    from ._images import image_setup

    return image_setup(args, resolve_custom_objects(args.custom_objects))


def make_check(args: argparse.Namespace, dataset, user_map: dict, tolerances, split: bool = False):
    """The picklable :class:`~harness.compare.dataset.batch.Check` of this run (paths made absolute: workers load them)."""
    from ..compare.dataset.batch import Check

    return Check(prototxt=str(Path(args.prototxt).resolve()),
                 weights=str(Path(args.weights).resolve()) if args.weights else None,
                 keras=str(Path(args.keras).resolve()) if args.keras else None,
                 custom_objects=tuple(args.custom_objects), seed=args.seed, mode=args.mode, atol=args.atol,
                 rtol=args.rtol, tolerances=json.dumps(tolerances, sort_keys=True) if tolerances else None,
                 user_map=tuple(sorted(user_map.items())),
                 input_shapes=tuple((k, tuple(v)) for k, v in dataset.shapes().items()),
                 batch=args.batch or DEFAULT_BATCH, split_preprocessing=split)


def run(args: argparse.Namespace, user_map: dict, tolerances) -> int:
    from ..compare.dataset.sources import open_dataset
    from ..compare.dataset.run import run_dataset

    _validate(args)
    inputs = _net_inputs(args)
    st = _image_setup(args)
    with open_dataset(args.dataset, inputs, st and st.transform, st and st.keras_side) as ds:
        check = make_check(args, ds, user_map, tolerances, split=st is not None)
        prog, cb = _progress(ds.n)
        try:
            if prog is not None:
                prog.start()
            report = run_dataset(check, ds, workers=args.workers, scheduler=args.scheduler, progress=cb)
        finally:
            if prog is not None:
                prog.stop()
    if args.keras and not args.weights:
        report.notes.append("notice: no --weights given: the Caffe net has seeded random weights (seed "
                            f"{args.seed}), which the --keras model does not have; give --weights")
    if args.baseline:
        from ..compare.dataset.baseline import apply_baseline, identity

        apply_baseline(report, args.baseline, args.baseline_factor, args.update_baseline,
                       identity(args.prototxt, args.weights, args.keras, args.seed, report.net_name))
    if not args.no_table:
        sys.stdout.write(report.table())
    print(report.verdict())
    for note in report.notes:
        print(f"caffe-harness: {note}", file=sys.stderr)
    if args.json:
        atomic_write(args.json, report.to_json() + "\n")
    if report.interrupted:
        return INTERRUPTED
    return 0 if report.equivalent else 1


def _progress(total: int):
    """A rich progress bar with samples/s on stderr when it is a terminal ((None, None) otherwise)."""
    if not sys.stderr.isatty():
        return None, None
    try:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    except Exception:  # pragma: no cover
        return None, None
    prog = Progress(TextColumn("comparing samples"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=Console(file=sys.stderr),
                    transient=True)
    task = prog.add_task("dataset", total=total, rate="")
    t0 = time.perf_counter()

    def cb(done: int, all_: int) -> None:
        dt = time.perf_counter() - t0
        prog.update(task, completed=done, total=all_, rate=f"{done / dt:.1f} samples/s" if done and dt > 0 else "")

    return prog, cb
