"""``check --images DIR|GLOB``: read the images, compute both sides' layer 0, and prepare the net comparison.

Caffe's preprocessing comes from pycaffe's flags (``--channel-swap``, ``--raw-scale``, ``--mean-file``,
``--mean-value``, ``--input-scale``: the pycaffe route) or else from a TEST-phase data layer's ``transform_param``
(``--transform-prototxt FILE``, default the checked prototxt).  The Keras side's from ``--keras-preprocess``,
``--keras-preprocess-model``, ``--keras-resize`` and the leading preprocessing layers of ``--keras`` (see
:mod:`harness.compare.layer0.preprocessing`).  Every problem is a :class:`HarnessError` naming the file and value (exit 2), raised
before anything is written.
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HarnessError

_PYCAFFE = ("channel_swap", "raw_scale", "mean_file", "mean_value", "input_scale")
_DATABASE = ("data_encoded", "data_gray")  # how a Data layer's database was written (convert_imageset's flags)


def add_image_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("real images (layer 0: Caffe's preprocessing against the Keras side's)")
    g.add_argument("--images", metavar="DIR|GLOB",
                   help="image files (a folder -- its image files by suffix, not recursive -- or a glob pattern): "
                        "both sides preprocess the same pixels, layer 0 is compared first (row layer0:preprocess), "
                        "then the net on the preprocessed batch")
    g.add_argument("--transform-prototxt", metavar="FILE",
                   help="train_val prototxt whose TEST-phase data layer's transform_param (and ImageData's "
                        "new_height/new_width/is_color) is Caffe's preprocessing (default: the checked prototxt)")
    g.add_argument("--data-encoded", action="store_true",
                   help="the Data layer's database was written with convert_imageset --encoded (each file's own "
                        "bytes, decoded at read time: transform_param's force_color/force_gray apply, else the "
                        "file's own channels); default: convert_imageset's default, every image decoded in colour "
                        "(3 channels, 8-bit) when the database was written")
    g.add_argument("--data-gray", action="store_true",
                   help="the Data layer's database was written with convert_imageset --gray (not --encoded): every "
                        "image decoded grey (1 channel) when the database was written (with --data-encoded it "
                        "changes nothing: convert_imageset --encoded stores each file's own bytes)")
    g.add_argument("--channel-swap", metavar="2,1,0", help="pycaffe Transformer.set_channel_swap (pycaffe route)")
    g.add_argument("--raw-scale", metavar="S", type=float, help="pycaffe set_raw_scale, e.g. 255 (pycaffe route)")
    g.add_argument("--mean-file", metavar="FILE",
                   help="pycaffe set_mean from a .binaryproto or .npy ((C,H,W), or one value per channel)")
    g.add_argument("--mean-value", metavar="B,G,R", help="pycaffe set_mean with one value per channel")
    g.add_argument("--input-scale", metavar="S", type=float, help="pycaffe set_input_scale, e.g. 0.017")
    g.add_argument("--keras-preprocess", choices=("caffe", "tf", "torch"),
                   help="the Keras side applies keras.applications' preprocess_input(mode=...) to the RGB image")
    g.add_argument("--keras-preprocess-model", metavar="FILE",
                   help="a .keras preprocessing model (NHWC RGB in, NHWC out; safe mode) the Keras side applies")
    g.add_argument("--keras-resize", metavar="H,W",
                   help="the Keras side's images are first resized on 8 bits with cv2.resize (INTER_LINEAR), as a "
                        "pipeline that resizes with OpenCV before Keras")


def image_options_given(args: argparse.Namespace) -> list[str]:
    """The layer-0 flags given (they need --images)."""
    names = ("transform_prototxt",) + _DATABASE + _PYCAFFE + ("keras_preprocess", "keras_preprocess_model",
                                                               "keras_resize")
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n, None) not in (None, "", False)]


@dataclass
class ImageRun:
    """What ``check`` needs from the images: the two inputs, the Keras model to compare (the checked model minus its
    leading preprocessing layers, or None: convert), and layer 0."""

    inputs: dict[str, Any]
    keras_inputs: dict[str, Any] | None
    keras_model: Any
    layer0: Any


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        vals = ()
    if not vals:
        raise HarnessError(f"{what} {text!r}: expected comma-separated numbers")
    return vals


def _transform(args: argparse.Namespace) -> Any:
    from ..reference.preprocess import CaffeTransform

    pyc = [n for n in _PYCAFFE if getattr(args, n, None) is not None]
    if pyc and args.transform_prototxt:
        raise HarnessError(f"--transform-prototxt and the pycaffe flag --{pyc[0].replace('_', '-')} are two "
                           f"preprocessing routes: give one")
    db = [n for n in _DATABASE if getattr(args, n, False)]
    if pyc and db:
        raise HarnessError(f"--{db[0].replace('_', '-')} describes a Data layer's database; the pycaffe flag "
                           f"--{pyc[0].replace('_', '-')} reads the files with caffe.io.load_image: give one")
    if args.mean_file and args.mean_value:
        raise HarnessError("--mean-file and --mean-value both given: pycaffe's set_mean takes one mean")
    if pyc:
        swap = None
        if args.channel_swap:
            try:
                swap = tuple(int(v) for v in args.channel_swap.split(","))
            except ValueError:
                raise HarnessError(f"--channel-swap {args.channel_swap!r}: expected a permutation such as "
                                   f"2,1,0") from None
            if sorted(swap) != list(range(len(swap))):
                raise HarnessError(f"--channel-swap {args.channel_swap!r}: not a permutation of 0..{len(swap) - 1}")
        mv = _floats(args.mean_value, "--mean-value") if args.mean_value else ()
        return CaffeTransform.from_pycaffe(channel_swap=swap, raw_scale=args.raw_scale, mean_file=args.mean_file,
                                           mean_values=mv, input_scale=args.input_scale)
    src = args.transform_prototxt or args.prototxt
    if args.transform_prototxt and not Path(src).is_file():
        raise HarnessError(f"--transform-prototxt {src!r} does not exist")
    t = CaffeTransform.from_prototxt(src, encoded=bool(getattr(args, "data_encoded", False)),
                                     gray=bool(getattr(args, "data_gray", False)))
    if db and t.layer_type != "Data":
        raise HarnessError(f"--{db[0].replace('_', '-')}: {t.source} is a {t.layer_type} layer, not a Data layer "
                           f"reading a database (convert_imageset's flags do not apply)")
    return t


def _net_input(args: argparse.Namespace, t: Any) -> tuple[str, tuple[int, ...] | None, list[str]]:
    """The net's one input, its declared NCHW shape (None: a train_val net that states none) and its layer names."""
    from ..caffe import load_net

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # compare() loads the net again and shows its warnings once
            net = load_net(args.prototxt, check=False)
    except HarnessError as e:
        if t.top is None:
            raise HarnessError(f"{e}; with --images (pycaffe route) the net must state its input shape itself: give "
                               f"the deploy prototxt (an Input layer with a shape)") from None
        return t.top, None, _layer_names(args.prototxt)
    if len(net.inputs) != 1:
        raise HarnessError(f"--images: net {net.name!r} has {len(net.inputs)} inputs ({', '.join(net.inputs)}); "
                           f"--images feeds exactly one")
    name, shape = next(iter(net.inputs.items()))
    return name, tuple(shape), [lay.name for lay in net.layers]


def _layer_names(prototxt: str) -> list[str]:
    from ..caffe import _read_text, parse_prototxt

    return [lp.name for lp in parse_prototxt(_read_text(prototxt), prototxt).layer]


def _keras_side(args: argparse.Namespace, custom_objects: Any, caffe_names: list[str]) -> tuple[Any, Any]:
    """(KerasPreprocess, the Keras model to compare or None)."""
    from ..compare.layer0.preprocessing import KerasPreprocess, load_preprocess_model, model_step, named_step, split_preprocessing
    from ..compare.engine.loading import load_keras_model

    side = KerasPreprocess()
    if args.keras_resize:
        hw = _floats(args.keras_resize, "--keras-resize")
        if len(hw) != 2 or any(v <= 0 or v != int(v) for v in hw):
            raise HarnessError(f"--keras-resize {args.keras_resize!r}: expected H,W (two positive integers)")
        side.resize = (int(hw[0]), int(hw[1]))
    if args.keras_preprocess:
        side.steps.append(named_step(args.keras_preprocess))
    if args.keras_preprocess_model:
        pm = load_preprocess_model(args.keras_preprocess_model, custom_objects)
        side.steps.append(model_step(pm, f"model {Path(args.keras_preprocess_model).name!r}"))
    model = None
    if args.keras:
        model = load_keras_model(args.keras, custom_objects=custom_objects)
        prefix, model = split_preprocessing(model, caffe_names)
        if prefix is not None:
            kinds = ", ".join(type(l).__name__ for l in prefix.layers if type(l).__name__ != "InputLayer")
            side.steps.append(model_step(prefix, f"{Path(args.keras).name} leading layers ({kinds})"))
    return side, model


@dataclass
class ImageSetup:
    """Both sides' preprocessing as the flags give them, and the net input they fill (``declared``: its NCHW shape,
    None for a train_val net that states none) -- everything a run over image files needs besides the files."""

    transform: Any
    keras_side: Any
    keras_model: Any
    input_name: str
    declared: tuple[int, ...] | None

    @property
    def input_hw(self) -> tuple[int, int] | None:
        return tuple(self.declared[2:]) if self.declared is not None and len(self.declared) == 4 else None


def image_setup(args: argparse.Namespace, custom_objects: Any) -> ImageSetup:
    """The two preprocessings and the Keras model of ``args`` (the layer-0 flags, ``--keras``); OpenCV required."""
    from ..reference.preprocess import require_cv2

    require_cv2("--images")
    t = _transform(args)
    name, declared, caffe_names = _net_input(args, t)
    side, model = _keras_side(args, custom_objects, caffe_names)
    return ImageSetup(t, side, model, name, declared)


def prepare_images(args: argparse.Namespace, custom_objects: Any) -> ImageRun:
    """Read ``--images``, compute layer 0 on both sides, and the inputs of the net comparison."""
    from ..compare.layer0.preprocessing import run_layer0
    from ..reference.preprocess import image_files, keras_pixels, read_originals, require_cv2

    require_cv2("--images")
    if args.input or args.inputs:
        raise HarnessError("--images and --input/--inputs both give the net's input: give one")
    if args.input_shape:
        raise HarnessError("--images gives the input shape (N images, Caffe's layer 0): drop --input-shape")
    paths = image_files(args.images)
    st = image_setup(args, custom_objects)
    t, name, declared = st.transform, st.input_name, st.declared
    bgr = read_originals(paths, t)
    rgb = [keras_pixels(im, p) for im, p in zip(bgr, paths)]
    l0 = run_layer0(bgr, rgb, paths, t, st.keras_side, input_hw=st.input_hw)
    if declared is not None and l0.caffe.shape[1] != declared[1]:
        raise HarnessError(f"--images: Caffe's layer 0 has {l0.caffe.shape[1]} channels ({t.describe()}), net "
                           f"input {name!r} is {declared}")
    same = l0.keras.shape == l0.caffe.shape
    return ImageRun({name: l0.caffe}, {name: l0.keras} if same else None, st.keras_model, l0)
