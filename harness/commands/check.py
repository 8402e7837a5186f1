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
    p = sub.add_parser(
        "check", help="compare a Keras model with a Caffe net layer by layer (chained and isolated)",
        description="Run the Caffe net (NumPy float64 reference) and a Keras model on the same data, compare every "
                    "matched layer output chained (end to end) and isolated (each Keras layer fed the reference's "
                    "inputs), and name the first divergent layer with its likely cause. Without --keras the net is "
                    "converted by the harness itself. Exit 0 equivalent, 1 not, 2 bad input.")
    add_prototxt(p, "Caffe deploy prototxt")
    add_weights(p, ".caffemodel or .npz (default: seeded random weights)")
    p.add_argument("--keras", metavar="MODEL", help=".keras model to check (loaded in safe mode); default: convert")
    p.add_argument("--saved-model", metavar="DIR",
                   help="TensorFlow SavedModel folder to check instead of a Keras model: its serving signature is run "
                        "(inputs paired with the net's by name, else by position) and every layer output the graph "
                        "preserves is compared chained, then its outputs (names and dtypes checked)")
    p.add_argument("--signature", metavar="NAME",
                   help="with --saved-model: the signature to run (default: serving_default)")
    p.add_argument("--tflite", metavar="FILE",
                   help="a LiteRT .tflite model to check instead of a Keras model: run with the LiteRT interpreter "
                        "(every intermediate tensor read), compared chained layer by layer")
    p.add_argument("--tflite-delegate", choices=("none", "xnnpack", "both"), default="both",
                   help="with --tflite: none = LiteRT's builtin kernels without the default XNNPACK delegate; "
                        "xnnpack = the default path that ships; both (default) = each, the report says which diverges")
    p.add_argument("--min-sqnr", type=float, default=None, metavar="DB",
                   help="with a quantised --tflite: the per-layer SQNR (dB, dequantised tensor vs the float64 "
                        "reference) a layer needs to pass (default 20)")
    p.add_argument("--min-top1-agreement", type=float, default=None, metavar="FRACTION",
                   help="with a quantised --tflite: the fraction of samples (0..1) whose top-1 class must agree with "
                        "the reference's (default 0: reported, not gated)")
    add_input(p, "NCHW array for one net input (repeatable)")
    add_inputs(p, "NCHW arrays keyed by net input name")
    add_input_shape(p, INPUT_SHAPE_HELP)
    add_seed(p, "seed for random inputs/weights (default 0)")
    add_backend(p)
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
    p.add_argument("--json", metavar="FILE", help="write the JSON report (documented in the README)")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML, one test case per layer")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    p.add_argument("--sarif", metavar="FILE",
                   help="write a SARIF 2.1.0 log: one result per diverging layer at its prototxt line (code scanning)")
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
    add_image_options(p)
    from .dataset import add_arguments as add_dataset_arguments

    add_dataset_arguments(p)  # --dataset, --batch, --baseline, --update-baseline, --baseline-factor, --workers, ...
    return p


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
    from ..compare import compare

    if not Path(args.prototxt).is_file():
        raise HarnessError(f"prototxt {args.prototxt!r} does not exist")
    if args.weights and not Path(args.weights).is_file():
        raise HarnessError(f"--weights {args.weights!r} does not exist")
    for what in ("json", "junit", "html", "sarif"):
        out = getattr(args, what)
        if out and not (Path(out).parent if str(Path(out).parent) else Path(".")).is_dir():
            raise HarnessError(f"--{what} {out!r}: directory {str(Path(out).parent)!r} does not exist")
    if args.repro_layer and not args.repro:
        raise HarnessError("--repro-layer needs --repro DIR")
    if args.repro:
        from ..compare.repro import check_repro_dir

        check_repro_dir(args.repro)
    from ..compare import resolve_custom_objects
    from . import dataset

    if args.dataset:  # a dataset run (commands/dataset.py): its own path from here
        return dataset.run(args, _user_map(args), _tolerances(args.tolerances))
    dataset.refuse_dataset_flags(args)
    custom_objects = resolve_custom_objects(args.custom_objects)
    keras_model, keras_inputs, images = args.keras, None, None
    if args.images:
        for flag, given in (("--tflite", args.tflite), ("--saved-model", args.saved_model)):
            if given:
                raise HarnessError(f"--images cannot be used with {flag} yet: check the preprocessing with the "
                                   f"--keras model the artefact was exported from")
        images = prepare_images(args, custom_objects)
        inputs, keras_inputs = images.inputs, images.keras_inputs
        keras_model = images.keras_model
    elif image_options_given(args):
        raise HarnessError(f"{image_options_given(args)[0]} needs --images DIR|GLOB")
    else:
        inputs = read_inputs(args.inputs, args.input) or None
    input_shapes = parse_input_shapes(args.input_shape) or None
    user_map = _user_map(args)
    tolerances = _tolerances(args.tolerances)
    if args.saved_model or args.signature:
        report = _saved_model_report(args, inputs, input_shapes, tolerances)
        return _emit(report, args, [])
    prog, cb = _progress()
    kept: list = []
    try:
        if prog is not None:
            prog.start()
        if args.tflite:
            report = _check_tflite(args, inputs, input_shapes, tolerances, user_map)
        else:
            _refuse_quant_flags(args)
            report = compare(args.prototxt, keras_model, inputs, weights=args.weights, mode=args.mode,
                             atol=args.atol, rtol=args.rtol, tolerances=tolerances, user_map=user_map, seed=args.seed,
                             progress=cb, input_shapes=input_shapes, custom_objects=custom_objects,
                             session_hook=(lambda *a: kept.append(a)) if args.repro else None,
                             keras_inputs=keras_inputs)
    finally:
        if prog is not None:
            prog.stop()
    if images is not None:
        from ..compare.layer0.preprocessing import attach_layer0

        attach_layer0(report, images.layer0, net_ran_on_caffe_input=keras_inputs is None)
        if args.keras:
            report.artefact = {"kind": "keras", "path": str(args.keras)}
    return _emit(report, args, kept)


# flags that need a Keras model (its layers, isolated runs, a .keras file to cut a case from): refused by name
# with --saved-model, never ignored
_KERAS_ONLY = (("keras", "--keras"), ("tflite", "--tflite"), ("custom_objects", "--custom-objects"), ("map", "--map"),
               ("map_file", "--map-file"), ("repro", "--repro"), ("repro_layer", "--repro-layer"))


def _saved_model_report(args: argparse.Namespace, inputs, input_shapes, tolerances):
    """``--saved-model DIR [--signature NAME]``: :func:`harness.compare.artefacts.saved_model.compare_saved_model`."""
    if not args.saved_model:
        raise HarnessError("--signature needs --saved-model DIR")
    for attr, flag in _KERAS_ONLY:
        if getattr(args, attr):
            raise HarnessError(f"{flag} cannot be used with --saved-model (a SavedModel is a graph: it has no Keras "
                               f"layers to map, run in isolation or cut a case from)")
    if args.backend:
        raise HarnessError(f"--backend {args.backend} cannot be used with --saved-model: a SavedModel runs on "
                           f"TensorFlow, whichever Keras backend exported it")
    _refuse_quant_flags(args)
    if args.mode == "isolated":
        raise HarnessError("--mode isolated cannot be used with --saved-model: a SavedModel runs end to end only "
                           "(chained)")
    from ..compare.artefacts.saved_model import compare_saved_model

    return compare_saved_model(args.prototxt, args.saved_model, inputs, signature=args.signature,
                               weights=args.weights, seed=args.seed, input_shapes=input_shapes, atol=args.atol,
                               rtol=args.rtol, tolerances=tolerances)


def _emit(report, args: argparse.Namespace, kept: list) -> int:
    """Print the notices, the table and the verdict; write the requested report files; the exit status."""
    from ..compare.reports.report import to_html, to_junit

    for note in report.notes:
        if note.startswith(("notice: ", "warning: ")):
            print(f"caffe-harness: {note}", file=sys.stderr)
    color = sys.stdout.isatty()
    if not args.no_table:
        import shutil

        width = max(100, shutil.get_terminal_size((160, 24)).columns) if color else 160
        sys.stdout.write(report.table(color=color, width=width))
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
    if args.repro:
        _repro(report, kept, args)
    return 0 if report.equivalent else 1


def _refuse_quant_flags(args: argparse.Namespace) -> None:
    for flag, v in (("--min-sqnr", args.min_sqnr), ("--min-top1-agreement", args.min_top1_agreement)):
        if v is not None:
            raise HarnessError(f"{flag} {v:g}: applies to a quantised --tflite model only")
    if args.tflite_delegate != "both":
        raise HarnessError(f"--tflite-delegate {args.tflite_delegate}: applies to --tflite only")


def _check_tflite(args: argparse.Namespace, inputs, input_shapes, tolerances, user_map):
    """``--tflite FILE``: the LiteRT model run end to end and compared chained (harness.compare.artefacts.tflite)."""
    from ..compare.artefacts.tflite import check_tflite_file

    for flag, given in (("--keras", args.keras), ("--map/--map-file", user_map), ("--repro", args.repro),
                        ("--custom-objects", args.custom_objects), ("--backend", args.backend)):
        if given:
            raise HarnessError(f"{flag} does not apply to --tflite (a .tflite file is run by the LiteRT interpreter, "
                               f"its tensors matched by name and position)")
    if args.mode == "isolated":
        raise HarnessError("--mode isolated: a .tflite model runs end to end only (use --mode chained)")
    if args.min_top1_agreement is not None and not 0.0 <= args.min_top1_agreement <= 1.0:
        raise HarnessError(f"--min-top1-agreement {args.min_top1_agreement:g}: a fraction between 0 and 1")
    return check_tflite_file(args.prototxt, args.tflite, inputs, weights=args.weights, seed=args.seed,
                             input_shapes=input_shapes, delegate=args.tflite_delegate, min_sqnr=args.min_sqnr,
                             min_top1_agreement=args.min_top1_agreement, tolerances=tolerances, atol=args.atol,
                             rtol=args.rtol)


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
