"""``caffe-harness convert PROTOTXT [--weights FILE] [--allow-approx] [--fold-batchnorm] [--seed N]
[--input-shape NAME=N,C,H,W ...] [--format keras|saved_model|tflite [--quantize float16|dynamic|int8
[--representative N|DATASET] [--keep-float auto|LAYER,... | --recipe FILE] [--min-sqnr DB] [--min-top1-agreement F]
[--max-requantize K] [--recipe-out FILE]]] -o MODEL.keras|DIR|MODEL.tflite``

Converts a Caffe net into a Keras 3 ``.keras`` model (see :mod:`harness.convert` for the layout contract and the
embedded Caffe -> Keras mapping).  Without ``--weights`` the net gets seeded random weights
(:func:`harness.weights.random_weights`, ``--seed``) and a notice says so on stderr.  The file is written atomically
(temporary file + rename): on any error nothing is written and the exit code is 2 with a one-line message.
Approximations (only with ``--allow-approx``) are listed on stderr with their measured error.  ``--format tflite``
writes a LiteRT flatbuffer instead (:mod:`harness.convert.export`), float32 or quantised.  ``--format saved_model``
writes a TensorFlow SavedModel folder (:mod:`harness.convert.saved_model`: serving signature ``serving_default``,
inputs and outputs named after the Caffe blobs; written atomically, a non-empty ``DIR`` is refused by name).
``--keep-float`` (int8 only) checks the int8 model against the Caffe reference as ``check --tflite`` does and keeps
the named -- or, with ``auto``, searched -- Caffe layers in float32 until the gate passes
(:mod:`harness.compare.artefacts.keep_float`); the model is written only when it passes (exit 1 otherwise, 130 at
Ctrl-C, with the best set found).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..errors import HarnessError
from ._io import load_net, seeded_weights
from ._images import _PYCAFFE
from ._options import add_backend, add_input_shape, add_prototxt, add_seed, add_weights


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "convert",
        help="convert a Caffe net (and weights) into an exact Keras 3 .keras model",
        description="Convert a Caffe net into a Keras 3 functional model (channels_last, NHWC inputs/outputs for "
                    "4-D blobs) whose every layer computes what the Caffe layer computes; the Caffe -> Keras layer "
                    "mapping is embedded in the .keras file.",
    )
    add_prototxt(p, "the net definition (.prototxt; V0, V1 or V2)")
    add_weights(p, ".caffemodel or .npz (keys '<layer>/<i>'); without it the net gets seeded random weights")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.keras|DIR|MODEL.tflite",
                   help="the model to write (.keras; a new or empty folder with --format saved_model; .tflite with "
                        "--format tflite)")
    p.add_argument("--format", choices=("keras", "saved_model", "tflite"), default="keras",
                   help="keras: a Keras 3 .keras file (default); saved_model: a TensorFlow SavedModel folder whose "
                        "serving signature serving_default has inputs and outputs named after the Caffe blobs; "
                        "tflite: a LiteRT .tflite flatbuffer (via the SavedModel export, TFLite builtin operators "
                        "only)")
    p.add_argument("--quantize", choices=("float16", "dynamic", "int8"), default=None,
                   help="with --format tflite: float16 weights, dynamic-range int8 weights, or full-integer int8 "
                        "calibrated on --representative seeded inputs (default: float32)")
    p.add_argument("--representative", default=None, metavar="N|DATASET",
                   help="with --quantize int8: the number of seeded standard-normal calibration inputs (default 32), "
                        "or a dataset to calibrate on: an .npz (one array per input blob), an .npy, a folder of "
                        ".npy files, or images through Caffe's layer-0 preprocessing (the flags below)")
    _add_keep_float(p)
    p.add_argument("--allow-approx", action="store_true",
                   help="convert layers with no exact Keras equivalent anyway, recording the measured error")
    p.add_argument("--fold-batchnorm", action="store_true",
                   help="fold BatchNorm + the in-place Scale after it into one BatchNormalization layer")
    add_seed(p, "seed of the random weights used without --weights (default 0)")
    add_input_shape(p)
    add_backend(p)
    return p


KEEP_FLOAT_AS = ("float32", "float16")
FLOAT16_REFUSED = ("--keep-float-as float16: the TFLite converter keeps a denylisted operator in float32 only (its "
                   "selective quantisation, QuantizationDebugOptions(denylisted_nodes), has no per-operator float16); "
                   "use --keep-float-as float32 (the default)")
_TRANSFORM = ("transform_prototxt",) + _PYCAFFE  # the Caffe side of check --images' layer-0 flags


def _add_keep_float(p: argparse.ArgumentParser) -> None:
    from ._images import add_image_options

    g = p.add_argument_group("int8 that passes the gate (--quantize int8): layers kept in float32")
    g.add_argument("--keep-float", metavar="auto|LAYER,LAYER",
                   help="check the int8 model against the Caffe reference (as check --tflite, both LiteRT paths) "
                        "and keep these Caffe layers in float32; auto: search the fewest that make the gate pass")
    g.add_argument("--keep-float-as", choices=KEEP_FLOAT_AS, default="float32",
                   help="the precision of the kept layers (float16 is refused: the TFLite converter has no "
                        "per-operator float16)")
    g.add_argument("--min-sqnr", type=float, default=None, metavar="DB",
                   help="the gate: SQNR of every layer against the reference (default 20)")
    g.add_argument("--min-top1-agreement", type=float, default=None, metavar="FRACTION",
                   help="the gate: top-1 agreement of the outputs with the reference (default 0)")
    g.add_argument("--max-requantize", type=int, default=None, metavar="K",
                   help="--keep-float auto: at most K re-quantisations (default 8)")
    g.add_argument("--recipe-out", metavar="FILE.json", help="write the set that passes as a keep-float recipe")
    g.add_argument("--recipe", metavar="FILE.json", help="keep the layers of a recipe (written by --recipe-out)")
    tmp = argparse.ArgumentParser(add_help=False)
    add_image_options(tmp)  # the Caffe side of check --images' layer-0 flags, for --representative IMAGES
    img = p.add_argument_group("calibration images (--representative DIR of images): Caffe's layer 0")
    for a in tmp._actions:
        if a.dest in _TRANSFORM:
            img._add_action(a)


def _check_keep_float(args) -> None:
    """The keep-float flags only where they apply."""
    kf = args.keep_float is not None or args.recipe is not None
    if kf and args.quantize != "int8":
        raise HarnessError(f"{'--keep-float' if args.keep_float is not None else '--recipe'}: keeping layers in "
                           f"float applies to --format tflite --quantize int8 only")
    if args.keep_float is not None and args.recipe is not None:
        raise HarnessError("--keep-float and --recipe both name the layers to keep: give one")
    if args.keep_float_as == "float16":
        raise HarnessError(FLOAT16_REFUSED)
    for flag in ("min_sqnr", "min_top1_agreement", "recipe_out"):
        if getattr(args, flag) is not None and not kf:
            raise HarnessError(f"--{flag.replace('_', '-')}: applies with --keep-float or --recipe only")
    if args.max_requantize is not None and args.keep_float != "auto":
        raise HarnessError(f"--max-requantize {args.max_requantize}: applies to --keep-float auto only")
    if args.max_requantize is not None and args.max_requantize < 1:
        raise HarnessError(f"--max-requantize {args.max_requantize}: give at least 1")
    if args.recipe_out is not None and not os.path.isdir(os.path.dirname(os.path.abspath(args.recipe_out))):
        raise HarnessError(f"--recipe-out {args.recipe_out!r}: its directory does not exist")


def _check_format(args) -> None:
    """-o's suffix agrees with --format; --quantize/--representative only where they apply."""
    out = str(args.output)
    suffix = {"tflite": ".tflite", "keras": ".keras"}.get(args.format)
    if suffix is None:
        from ..convert.saved_model import check_export_dir

        check_export_dir(out)
    elif not out.endswith(suffix):
        raise HarnessError(f"-o {out!r}: a --format {args.format} file name must end in {suffix}")
    if args.quantize and args.format != "tflite":
        raise HarnessError(f"--quantize {args.quantize}: quantisation applies to --format tflite only")
    if args.representative is not None and args.quantize != "int8":
        raise HarnessError(f"--representative {args.representative}: calibration inputs apply to --quantize int8 only")
    rep = args.representative
    if rep is not None and rep.lstrip("+-").isdigit():
        args.representative = int(rep)
        if args.representative < 1:
            raise HarnessError(f"--representative {rep}: give at least 1 calibration input")
    elif rep is not None and not os.path.exists(rep):
        raise HarnessError(f"--representative {rep!r}: neither a number of seeded inputs nor an existing dataset")
    given = [n for n in _TRANSFORM if getattr(args, n, None) not in (None, "")]
    if given and not (isinstance(args.representative, str) and _is_images(args.representative)):
        raise HarnessError(f"--{given[0].replace('_', '-')}: Caffe's layer-0 preprocessing applies to a "
                           f"--representative dataset of images only")
    _check_keep_float(args)


def _is_images(path: str) -> bool:
    from ..compare.dataset.sources import is_images

    return is_images(path)


def _representative(args, net) -> tuple[object, str]:
    """(what the converter calibrates on: a count or ``{input blob: NCHW array}``, the words for the report)."""
    rep = args.representative
    if not isinstance(rep, str):
        n = 32 if rep is None else rep
        return n, f"{n} seeded standard-normal inputs (seed {args.seed})"
    from ..compare.dataset.sources import open_dataset

    transform = None
    if _is_images(rep):
        from ._images import _transform

        transform = _transform(args)
    try:
        with open_dataset(rep, {b: tuple(s) for b, s in net.inputs.items()}, transform) as ds:
            arrays = next(ds.batches(ds.n))[1]
            kind = ds.kind
    except HarnessError as e:
        raise HarnessError(str(e).replace("--dataset", "--representative")) from None
    return arrays, f"{ds.n} samples of {rep} ({kind})"


def run(args) -> int:
    out = str(args.output)
    _check_format(args)
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise HarnessError(f"-o {out!r}: directory {parent} does not exist")
    net = load_net(args)
    if not args.weights:
        net = seeded_weights(net, args.seed)
    rep, calibrated_on = _representative(args, net)
    keep = args.keep_float is not None or args.recipe is not None
    if keep:  # bad layer names and too small a dataset are refused before anything is converted
        from ._keep_float import judge_inputs, keep_float_layers

        chosen, (data, judged_on) = keep_float_layers(args, net), judge_inputs(args, net, rep)
    from ..convert import convert, save_model  # imports Keras/TensorFlow (seconds): not part of the timing

    t0 = time.perf_counter()
    model = convert(net, allow_approx=args.allow_approx, fold_batchnorm=args.fold_batchnorm)
    if args.allow_approx:
        from ..compare import measure_approximations

        measure_approximations(model, net)
    if keep:
        from ._keep_float import run_keep_float

        return run_keep_float(args, net, model, rep, calibrated_on, chosen, data, judged_on)
    if args.format == "tflite":
        from ..convert.export import save_tflite

        save_tflite(model, out, quantize=args.quantize, representative=rep, seed=args.seed)
    elif args.format == "saved_model":
        from ..convert.saved_model import export_saved_model

        export_saved_model(model, out)
    else:
        save_model(model, out)
    dt = time.perf_counter() - t0
    for a in model.harness_mapping.get("approximations", []):
        err = "unmeasured" if a.get("max_abs_error") is None else f"max abs error {a['max_abs_error']:.3g}"
        print(f"caffe-harness: approximated {a['layer']!r}: {a['what']} ({err})", file=sys.stderr)
    n_layers = len(model.layers)
    what = {"keras": "", "saved_model": " (TensorFlow SavedModel, signature serving_default)"}.get(args.format)
    what = what if what is not None else f" (LiteRT, {args.quantize or 'float32'}" + (
        f", calibrated on {calibrated_on})" if args.quantize == "int8" else ")")
    print(f"wrote {out}{what}: {len(net.layers)} Caffe layers -> {n_layers} Keras layers, "
          f"{model.count_params()} parameters, converted in {dt:.2f} s")
    return 0
