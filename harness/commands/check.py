"""``caffe-harness check``: is a Keras model equivalent to a Caffe net, layer by layer?

Exit status: 0 equivalent, 1 not equivalent, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._atomic import atomic_write
from ..errors import HarnessError
from ._images import add_image_options, image_options_given, prepare_images
from ._io import parse_input_shapes, read_inputs
from ._options import (INPUT_SHAPE_HELP, add_backend, add_input, add_input_shape, add_inputs, add_prototxt, add_seed,
                       add_weights)

_TOL_HELP = ("Polygraphy semantics: an element passes when |keras - caffe| <= atol OR |keras - caffe| <= rtol*|caffe|; "
             "giving either replaces the derived per-layer float32 bound")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ..compare.artefacts.kinds import add_flags

    p = sub.add_parser(
        "check", help="compare a Keras model with a Caffe net layer by layer (chained and isolated)",
        description="Run the Caffe net (NumPy float64 reference) and a Keras model on the same data, compare every "
                    "matched layer output chained (end to end) and isolated (each Keras layer fed the reference's "
                    "inputs), and name the first divergent layer with its likely cause. Without --keras the net is "
                    "converted by the harness itself. An exported artefact (--onnx, --saved-model, --tflite; "
                    "several at once: each stage of the chain) runs end to end and is compared chained. "
                    "Exit 0 equivalent, 1 not, 2 bad input.")
    add_prototxt(p, "Caffe deploy prototxt")
    add_weights(p, ".caffemodel or .npz (default: seeded random weights)")
    add_flags(p)  # --keras, --onnx, --saved-model, --tflite and their own options (harness.compare.artefacts.kinds)
    add_input(p, "NCHW array for one net input (repeatable)")
    add_inputs(p, "NCHW arrays keyed by net input name")
    add_input_shape(p, INPUT_SHAPE_HELP)
    add_seed(p, "seed for random inputs/weights (default 0)")
    add_backend(p)
    _add_keras_options(p)
    _add_report_options(p)
    add_image_options(p)
    from .dataset import add_arguments as add_dataset_arguments

    add_dataset_arguments(p)  # --dataset, --batch, --baseline, --update-baseline, --baseline-factor, --workers, ...
    return p


def _add_keras_options(p: argparse.ArgumentParser) -> None:
    """How the comparison runs: custom layers, mode, tolerances, pairing overrides."""
    p.add_argument("--custom-objects", metavar="MODULE:CLASS", action="append", default=[],
                   help="a layer class of your own that the --keras model uses (repeatable): imports MODULE (from "
                        "the current folder or sys.path); no code from the model file ever runs")
    p.add_argument("--mode", choices=("both", "chained", "isolated"), default="both",
                   help="chained: run both models end to end; isolated: feed each Keras layer the reference's "
                        "inputs (default: both)")
    p.add_argument("--atol", type=float, help="absolute tolerance; " + _TOL_HELP)
    p.add_argument("--rtol", type=float, help="relative tolerance; " + _TOL_HELP)
    p.add_argument("--map", metavar="CAFFE=KERAS", action="append", default=[],
                   help="pair a Caffe layer (or layer/top) with a Keras layer (name or name:index); repeatable")
    p.add_argument("--map-file", metavar="FILE",
                   help="JSON {caffe: keras} or text lines 'caffe=keras' (# comments) with more --map pairs")
    p.add_argument("--tolerances", metavar="FILE",
                   help="JSON/TOML tolerance overrides: {atol, rtol, reason, types: {Type: {atol, rtol, reason}}, "
                        "layers: {name: {...}}}")


def _add_report_options(p: argparse.ArgumentParser) -> None:
    """The report files and what is printed."""
    p.add_argument("--json", metavar="FILE", help="write the JSON report (documented in the README)")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML, one test case per layer")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    p.add_argument("--sarif", metavar="FILE",
                   help="write a SARIF 2.1.0 log: one result per diverging layer at its prototxt line (code scanning)")
    p.add_argument("--model-explorer", metavar="FILE",
                   help="write Google Model Explorer node data (JSON): each compared layer's error / bound ratio and "
                        "pass/fail colour keyed by the artefact's node names, to load over the artefact's graph")
    p.add_argument("--annotations", choices=("github", "none"), default=None,
                   help="github: print a GitHub Actions ::error annotation per diverging layer (file, line); none: "
                        "don't (default: github when GITHUB_ACTIONS=true)")
    p.add_argument("--repro", metavar="DIR",
                   help="write a self-contained case of the first divergent layer into DIR (new or empty folder): "
                        "net.prototxt, weights.caffemodel, inputs.npz, model.keras (your own Keras layers), "
                        "README.md, test_repro.py")
    p.add_argument("--repro-layer", metavar="NAME",
                   help="with --repro: the diverging Caffe layer to cut out instead of the first divergent one")
    p.add_argument("--no-table", action="store_true", help="print only the verdict")
    p.add_argument("--timings", action="store_true",
                   help="print each stage's seconds, the peak memory and the thread count on stderr (also in --json: "
                        "timings, resources)")
    p.add_argument("--threads", metavar="N", type=int,
                   help="BLAS and TensorFlow threads (default: the cores left free by the rest of the machine's load; "
                        "env CAFFE_HARNESS_THREADS)")


def _map_file(path: str) -> dict[str, str]:
    import json

    p = Path(path)
    if not p.is_file():
        raise HarnessError(f"--map-file: file {path!r} does not exist")
    text = p.read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise HarnessError(f"--map-file {path!r}: invalid JSON at line {e.lineno}: {e.msg}") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise HarnessError(f"--map-file {path!r}: expected a JSON object {{caffe: keras}}")
        return {str(k): v for k, v in data.items()}
    out = {}
    for i, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        c, sep, k = line.partition("=")
        if not sep or not c.strip() or not k.strip():
            raise HarnessError(f"--map-file {path!r} line {i}: expected caffe=keras, got {line!r}")
        out[c.strip()] = k.strip()
    return out


def _user_map(args: argparse.Namespace) -> dict[str, str]:
    """--map-file's pairs, then --map's."""
    from ..compare.engine.match import parse_user_map

    user_map = _map_file(args.map_file) if args.map_file else {}
    user_map.update(parse_user_map(args.map))
    return user_map


def _tolerances(path: str | None):
    if not path:
        return None
    import json

    p = Path(path)
    if not p.is_file():
        raise HarnessError(f"--tolerances: file {path!r} does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # pragma: no cover - Python 3.10
                import tomli as tomllib
            return tomllib.loads(text)
        return json.loads(text)
    except Exception as e:
        raise HarnessError(f"--tolerances {path!r}: cannot parse ({type(e).__name__}: {e})") from None


def _progress():
    """A rich progress bar on stderr when it is a terminal (None otherwise)."""
    if not sys.stderr.isatty():
        return None, None
    try:
        from rich.console import Console
        from rich.progress import Progress
    except Exception:  # pragma: no cover
        return None, None
    prog = Progress(console=Console(file=sys.stderr), transient=True)
    task = prog.add_task("comparing", total=None)

    def cb(what: str, done: int, total: int) -> None:
        if done == 0:
            prog.update(task, completed=0, total=total or None, description=f"running {what}")
        else:
            prog.update(task, completed=done, total=total, description=f"comparing {what}")

    return prog, cb


def run(args: argparse.Namespace) -> int:
    from ..compare.artefacts.kinds import chosen_kinds, refuse_flags
    from ..threads import apply_threads, plan_threads
    from . import dataset

    _check_paths(args)
    args.thread_plan = plan_threads(args.threads)
    apply_threads(args.thread_plan)
    if args.dataset and args.model_explorer:
        raise HarnessError("--model-explorer is not supported with --dataset (a dataset run writes --json; compare "
                           "one sample with --input to get the node data)")
    if args.dataset:  # a dataset run (commands/dataset.py): its own path from here
        return dataset.run(args, _user_map(args), _tolerances(args.tolerances))
    dataset.refuse_dataset_flags(args)
    chosen = chosen_kinds(vars(args))
    refuse_flags(vars(args), chosen)
    if image_options_given(args) and not args.images:
        raise HarnessError(f"{image_options_given(args)[0]} needs --images DIR|GLOB")
    tolerances = _tolerances(args.tolerances)
    input_shapes = parse_input_shapes(args.input_shape) or None
    if chosen:
        return _emit(_artefact_report(args, chosen, input_shapes, tolerances), args, [])
    kept: list = []
    return _emit(_keras_report(args, input_shapes, tolerances, kept), args, kept)


def _check_paths(args: argparse.Namespace) -> None:
    """The prototxt, the weights, the report folders and the --repro folder, before anything runs."""
    if not Path(args.prototxt).is_file():
        raise HarnessError(f"prototxt {args.prototxt!r} does not exist")
    if args.weights and not Path(args.weights).is_file():
        raise HarnessError(f"--weights {args.weights!r} does not exist")
    for what in ("json", "junit", "html", "sarif", "model_explorer"):
        out = getattr(args, what)
        if out and not (Path(out).parent if str(Path(out).parent) else Path(".")).is_dir():
            raise HarnessError(f"--{what.replace('_', '-')} {out!r}: directory {str(Path(out).parent)!r} does not "
                               f"exist")
    if args.repro_layer and not args.repro:
        raise HarnessError("--repro-layer needs --repro DIR")
    if args.repro:
        from ..compare.repro import check_repro_dir

        check_repro_dir(args.repro)


def _artefact_report(args: argparse.Namespace, chosen: list, input_shapes, tolerances):
    """``--onnx`` / ``--saved-model`` / ``--tflite``: one artefact (harness.compare.artefacts.kinds), or several:
    each stage of the chain judged against the reference (harness.compare.artefacts.chain)."""
    from ..compare.artefacts.chain import check_chain
    from ..compare.artefacts.kinds import check_artefact

    inputs = read_inputs(args.inputs, args.input) or None
    kw = dict(weights=args.weights, seed=args.seed, input_shapes=input_shapes, options=vars(args),
              tolerances=tolerances, atol=args.atol, rtol=args.rtol)
    if len(chosen) == 1:
        return check_artefact(chosen[0].name, args.prototxt, getattr(args, chosen[0].name), inputs, **kw)
    return check_chain([(k.name, getattr(args, k.name)) for k in chosen], args.prototxt, inputs, **kw)


def _keras_report(args: argparse.Namespace, input_shapes, tolerances, kept: list):
    """A Keras model (``--keras``, or the harness's own conversion), chained and isolated, with ``--images``' layer
    0 when given; ``kept`` gets the session for ``--repro``."""
    from ..compare import resolve_custom_objects
    from ..compare.artefacts.kinds import check_artefact

    custom_objects = resolve_custom_objects(args.custom_objects)
    model, keras_inputs, images = args.keras, None, None
    if args.images:
        images = prepare_images(args, custom_objects)
        inputs, keras_inputs, model = images.inputs, images.keras_inputs, images.keras_model
    else:
        inputs = read_inputs(args.inputs, args.input) or None
    options = dict(mode=args.mode, user_map=_user_map(args), custom_objects=custom_objects, keras_inputs=keras_inputs,
                   session_hook=(lambda *a: kept.append(a)) if args.repro else None)
    prog, options["progress"] = _progress()
    try:
        if prog is not None:
            prog.start()
        report = check_artefact("keras", args.prototxt, model, inputs, weights=args.weights, seed=args.seed,
                                input_shapes=input_shapes, options=options, tolerances=tolerances, atol=args.atol,
                                rtol=args.rtol)
    finally:
        if prog is not None:
            prog.stop()
    if images is not None:
        from ..compare.layer0.preprocessing import attach_layer0

        attach_layer0(report, images.layer0, net_ran_on_caffe_input=keras_inputs is None)
        if args.keras:
            report.artefact = {"kind": "keras", "path": str(args.keras)}
    return report


def _resources(report, args: argparse.Namespace) -> None:
    """The run's cost in the report (JSON ``resources``) and, with ``--timings``, one line on stderr."""
    from ..threads import peak_rss_bytes

    plan = getattr(args, "thread_plan", None)
    report.resources = {"peak_rss_bytes": peak_rss_bytes(), "threads": plan.to_dict() if plan else None}
    if getattr(args, "timings", False):
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in report.timings.items() if k != "total")
        total = report.timings.get("total")
        print(f"caffe-harness: timings: {stages}{f'; total {total:.2f} s' if total is not None else ''}; peak RSS "
              f"{report.resources['peak_rss_bytes'] / 2**30:.2f} GiB"
              f"{'; ' + plan.describe() if plan else ''}", file=sys.stderr)


def _emit(report, args: argparse.Namespace, kept: list) -> int:
    """Print the notices, the table and the verdict; write the requested report files; the exit status."""
    _resources(report, args)
    from ..compare.reports.report import to_html, to_junit

    for note in report.notes:
        if note.startswith(("notice: ", "warning: ")):
            print(f"caffe-harness: {note}", file=sys.stderr)
    color = sys.stdout.isatty()
    if not args.no_table:
        sys.stdout.write(report.table(color=color, width=_table_width(color)))
    print(report.verdict())
    _annotate(report, args.annotations)
    if args.json:
        atomic_write(args.json, report.to_json() + "\n")
    if args.sarif:
        from ..compare.reports.sarif import write_sarif

        write_sarif(report, args.sarif)
    if args.junit:
        atomic_write(args.junit, to_junit(report))
    if args.html:
        atomic_write(args.html, to_html(report))
    if args.model_explorer:
        from ..compare.reports.model_explorer import to_model_explorer

        atomic_write(args.model_explorer, to_model_explorer(report))
    if args.repro:
        _repro(report, kept, args)
    return 0 if report.equivalent else 1


def _repro(report, kept: list, args: argparse.Namespace) -> None:
    """``--repro DIR``: the case of the chosen divergent pair (harness.compare.repro), or a notice when none."""
    from ..compare.repro import write_repro

    if report.equivalent and not args.repro_layer:
        print("caffe-harness: notice: --repro: nothing diverges, no case written", file=sys.stderr)
        return
    fd = report.first_divergence
    if fd is not None and fd.mode == "preprocess" and not args.repro_layer:
        print("caffe-harness: notice: --repro: the first divergence is layer 0 (the preprocessing: its cause and fix "
              "are in the verdict); no net case written (--repro-layer NAME cuts out a net layer)", file=sys.stderr)
        return
    s, chained, _ = kept[0]
    out = write_repro(report, s, chained, args.repro, layer=args.repro_layer, custom_objects=args.custom_objects,
                      atol=args.atol, rtol=args.rtol)
    print(f"caffe-harness: wrote the reproduction to {str(out)!r} (README.md says how to run it)", file=sys.stderr)


def _annotate(report, choice: str | None) -> None:
    """GitHub Actions workflow annotations (stdout, one ``::error`` line per diverging layer), when wanted."""
    from ..compare.reports.annotations import annotations_wanted, github_annotations

    if annotations_wanted(choice):
        for line in github_annotations(report):
            print(line)


def _table_width(tty: bool) -> int:
    """The width the layer table fits: the terminal's; when stdout is not a terminal (a pipe, a CI log) the
    ``COLUMNS`` environment variable if it is a positive integer (as :func:`shutil.get_terminal_size` reads it),
    else 160."""
    import os
    import shutil

    if tty:
        return shutil.get_terminal_size((160, 24)).columns
    cols = os.environ.get("COLUMNS", "")
    return int(cols) if cols.isdigit() and int(cols) > 0 else 160
