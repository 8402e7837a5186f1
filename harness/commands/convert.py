"""``caffe-harness convert PROTOTXT [--weights FILE] [--allow-approx] [--fold-batchnorm] [--seed N]
[--input-shape NAME=N,C,H,W ...] [--format keras|saved_model|tflite [--quantize float16|dynamic|int8
[--representative N]]] -o MODEL.keras|DIR|MODEL.tflite``

Converts a Caffe net into a Keras 3 ``.keras`` model (see :mod:`harness.convert` for the layout contract and the
embedded Caffe -> Keras mapping).  Without ``--weights`` the net gets seeded random weights
(:func:`harness.weights.random_weights`, ``--seed``) and a notice says so on stderr.  The file is written atomically
(temporary file + rename): on any error nothing is written and the exit code is 2 with a one-line message.
Approximations (only with ``--allow-approx``) are listed on stderr with their measured error.  ``--format tflite``
writes a LiteRT flatbuffer instead (:mod:`harness.convert.export`), float32 or quantised.  ``--format saved_model``
writes a TensorFlow SavedModel folder (:mod:`harness.convert.saved_model`: serving signature ``serving_default``,
inputs and outputs named after the Caffe blobs; written atomically, a non-empty ``DIR`` is refused by name).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..errors import HarnessError
from ._io import load_net, seeded_weights
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
    p.add_argument("--representative", type=int, default=None, metavar="N",
                   help="with --quantize int8: the number of seeded standard-normal calibration inputs (default 32)")
    p.add_argument("--allow-approx", action="store_true",
                   help="convert layers with no exact Keras equivalent anyway, recording the measured error")
    p.add_argument("--fold-batchnorm", action="store_true",
                   help="fold BatchNorm + the in-place Scale after it into one BatchNormalization layer")
    add_seed(p, "seed of the random weights used without --weights (default 0)")
    add_input_shape(p)
    add_backend(p)
    return p


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
    if args.representative is not None and args.representative < 1:
        raise HarnessError(f"--representative {args.representative}: give at least 1 calibration input")


def run(args) -> int:
    out = str(args.output)
    _check_format(args)
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise HarnessError(f"-o {out!r}: directory {parent} does not exist")
    net = load_net(args)
    if not args.weights:
        net = seeded_weights(net, args.seed)
    from ..convert import convert, save_model  # imports Keras/TensorFlow (seconds): not part of the timing

    t0 = time.perf_counter()
    model = convert(net, allow_approx=args.allow_approx, fold_batchnorm=args.fold_batchnorm)
    if args.allow_approx:
        from ..compare import measure_approximations

        measure_approximations(model, net)
    if args.format == "tflite":
        from ..convert.export import save_tflite

        rep = 32 if args.representative is None else args.representative
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
        f", calibrated on {rep} seeded inputs)" if args.quantize == "int8" else ")")
    print(f"wrote {out}{what}: {len(net.layers)} Caffe layers -> {n_layers} Keras layers, "
          f"{model.count_params()} parameters, converted in {dt:.2f} s")
    return 0
