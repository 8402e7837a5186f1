"""Layer 0 of ``check --images``: Caffe's preprocessing against the Keras side's, on the same image files.

* Caffe's side: :mod:`harness.reference.preprocess` (``DataTransformer`` at TEST, or pycaffe's ``Transformer``).
* The Keras side sees each file as **RGB uint8 HWC at the file's own size**, as float32 -- what
  ``keras.utils.img_to_array(keras.utils.load_img(path))`` gives (decoded here by OpenCV and reordered BGR -> RGB, so
  both sides start from the same pixels; one gray channel where Caffe reads the file gray, as
  ``load_img(path, color_mode="grayscale")`` gives a gray net's port), optionally first resized on 8 bits with OpenCV (``--keras-resize H,W``: a
  pipeline that resizes with ``cv2.resize`` before Keras).  Its preprocessing, applied in this order, is any of:
  a ``keras.applications`` convention (``--keras-preprocess caffe|tf|torch``: ``imagenet_utils.preprocess_input``
  itself), a preprocessing model (``--keras-preprocess-model FILE``, safe mode), and the leading preprocessing
  layers of the checked model itself (Rescaling, Normalization, Resizing, CenterCrop, Cropping2D, or a weight-free
  layer class of your own), which are split off the model so that the rest of it starts at the net's first layer.  The result,
  NHWC, is transposed to NCHW.

:func:`layer0_batch` gives both sides' layer 0 of a list of files (a dataset runner's batch); :func:`run_layer0`
compares the two (a :class:`~harness.compare.reports.result.LayerResult` named ``layer0:preprocess``)
and, when they differ, diagnoses the preprocessing bug (:mod:`harness.compare.diagnose.preprocessing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ...errors import HarnessError, KerasModelError
from ...reference.preprocess import CaffeTransform, caffe_layer0, require_cv2
from ..diagnose.preprocessing import diagnose_layer0, layer0_bound
from ..engine.match import normalize_mapping
from ..reports.result import Cause, FirstDivergence, LayerResult, compare_arrays

LAYER0 = "layer0:preprocess"
NAMED = ("caffe", "tf", "torch")
# Cropping2D: a port's own fixed crop (e.g. a top-left one) is preprocessing when it leads the model
_PREPROCESSING_CLASSES = ("Rescaling", "Normalization", "Resizing", "CenterCrop", "Cropping2D")


@dataclass
class KerasPreprocess:
    """The Keras side's preprocessing: ``steps`` (name, fn on a (1, H, W, C) float32 batch -> NHWC), after an
    optional OpenCV 8-bit resize to ``resize`` (H, W)."""

    steps: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = field(default_factory=list)
    resize: tuple[int, int] | None = None

    def describe(self) -> str:
        parts = ([f"cv2.resize {self.resize[0]}x{self.resize[1]}"] if self.resize else []) + [n for n, _ in self.steps]
        return " -> ".join(["RGB"] + parts)

    def apply(self, rgb_images: Sequence[np.ndarray], names: Sequence[str]) -> np.ndarray:
        """RGB uint8 HWC images -> NCHW float32 (each image alone: they may differ in size)."""
        outs = []
        for img, nm in zip(rgb_images, names):
            if self.resize is not None:
                img = require_cv2().resize(img, (self.resize[1], self.resize[0]))  # cv::Size(width, height)
            x = np.asarray(img, np.float32)[None]
            for step, fn in self.steps:
                try:
                    x = np.asarray(fn(x), np.float32)
                except Exception as e:  # a user preprocessing model failing on this image
                    raise HarnessError(f"{nm}: the Keras preprocessing step {step!r} fails on its "
                                       f"{img.shape[0]}x{img.shape[1]} RGB pixels ({type(e).__name__}: "
                                       f"{str(e).splitlines()[0] if str(e) else ''})") from None
            if x.ndim != 4 or x.shape[0] != 1:
                raise HarnessError(f"{nm}: the Keras preprocessing gives shape {tuple(x.shape)}, expected one NHWC "
                                   f"image")
            out = x[0].transpose(2, 0, 1)
            if outs and out.shape != outs[0].shape:
                raise HarnessError(f"{nm}: the Keras preprocessing gives {tuple(out.shape)} (CHW), the first image "
                                   f"{tuple(outs[0].shape)}: the images do not batch (add Resizing/CenterCrop)")
            outs.append(out)
        return np.stack(outs).astype(np.float32, copy=False)


def named_step(mode: str) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """``keras.applications.imagenet_utils.preprocess_input(x, mode=...)`` itself (channels_last): caffe = RGB -> BGR
    then minus (103.939, 116.779, 123.68), no scaling; tf = x / 127.5 - 1; torch = x / 255, minus (0.485, 0.456,
    0.406), divided by (0.229, 0.224, 0.225)."""
    if mode not in NAMED:
        raise HarnessError(f"--keras-preprocess {mode!r}: expected one of {', '.join(NAMED)}")
    from keras.applications import imagenet_utils

    def fn(x: np.ndarray) -> np.ndarray:
        return imagenet_utils.preprocess_input(np.array(x, np.float32), data_format="channels_last", mode=mode)

    return f"preprocess_input(mode={mode!r})", fn


def model_step(model: Any, name: str | None = None) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """A Keras preprocessing model (NHWC RGB in, NHWC out) as a step."""
    def fn(x: np.ndarray) -> np.ndarray:
        import keras

        return keras.ops.convert_to_numpy(model(x, training=False))

    fn.model = model  # type: ignore[attr-defined] - the diagnosis looks for a channel-reversing layer in it
    return name or f"model {model.name!r}", fn


def reversing_layer(side: KerasPreprocess) -> str | None:
    """The name of a layer of the Keras side's preprocessing models that reverses the channel axis (x[..., ::-1]),
    found by running each weight-free layer on a probe batch; None when there is none."""
    probe = np.arange(1 * 5 * 7 * 3, dtype=np.float32).reshape(1, 5, 7, 3)
    for _, fn in side.steps:
        model = getattr(fn, "model", None)
        for lay in getattr(model, "layers", None) or []:
            if type(lay).__name__ == "InputLayer" or lay.weights:
                continue
            try:
                import keras

                out = keras.ops.convert_to_numpy(lay(probe))
            except Exception:  # noqa: BLE001 - a layer that does not take the probe is not a plain reversal
                continue
            if out.shape == probe.shape and np.array_equal(out, probe[..., ::-1]):
                return str(lay.name)
    return None


def load_preprocess_model(path: str, custom_objects: Any = None) -> Any:
    """``--keras-preprocess-model FILE``: a .keras model loaded in safe mode (no code from the file runs)."""
    from ..engine.loading import load_keras_model

    return load_keras_model(path, custom_objects=custom_objects)


def _is_preprocessing(layer: Any, keep: frozenset[str]) -> bool:
    """A Keras preprocessing layer, a weight-free layer class of the user's own (never Lambda: safe mode refuses
    it; never the harness's own Caffe layers), or a nested model made only of these; a layer named like a Caffe
    layer, or mapped to one, is the net's."""
    if layer.name in keep:
        return False
    cls = type(layer)
    if cls.__name__ in _PREPROCESSING_CLASSES and cls.__module__.startswith("keras"):
        return True
    sub = [s for s in getattr(layer, "layers", None) or [] if type(s).__name__ != "InputLayer"]
    if cls.__name__ in ("Sequential", "Functional") and cls.__module__.startswith("keras"):
        # a nested block of preprocessing layers (prep = keras.Sequential([Rescaling, ...]); x = prep(inputs))
        return bool(sub) and all(_is_preprocessing(s, keep) for s in sub)
    return not cls.__module__.startswith(("keras", "tf_keras", "tensorflow", "harness")) and not layer.weights


def split_preprocessing(model: Any, caffe_names: Any = ()) -> tuple[Any | None, Any]:
    """The leading preprocessing layers of a single-input functional ``model`` (a chain from its input), as a
    (prefix model, rest of the model) pair; (None, model) when it starts with none.  ``caffe_names``: the net's layer
    names (a Keras layer of one of these names is never preprocessing); the rest keeps the model's
    ``harness_mapping``."""
    import keras

    inputs = list(getattr(model, "inputs", None) or [])
    if len(inputs) != 1:
        return None, model
    mapping = getattr(model, "harness_mapping", None)
    # the converter's mapping ({"keys": {key: {"layer", ...}}, ...}) or a plain {key: (layer, index, layout)}
    mapped = {spec[0] for spec in normalize_mapping(mapping)[0].values()}
    keep = frozenset(str(n) for n in [*caffe_names, *mapped] if isinstance(n, str))
    layers = [l for l in model.layers if type(l).__name__ != "InputLayer"]
    # a loaded Sequential is built more than once: its layers keep a node per build, the last one is its graph's
    seq = type(model).__name__ == "Sequential"
    t, n = inputs[0], 0
    for lay in layers:
        nodes = getattr(lay, "_inbound_nodes", [])
        if not nodes or (len(nodes) != 1 and not seq) or not _is_preprocessing(lay, keep):
            break
        node = [nd for nd in nodes if len(nd.input_tensors) == 1 and nd.input_tensors[0] is t][-1:]
        if not node or sum(1 for l in layers if _consumes(l, t)) != 1:
            break
        t, n = node[0].output_tensors[0], n + 1
    if n == 0:
        return None, model
    try:
        prefix = keras.Model(inputs[0], t, name=f"{model.name}_preprocessing")
        rest = keras.Model(t, model.outputs, name=model.name)
    except Exception as e:
        raise KerasModelError(f"cannot split the leading preprocessing layers off {model.name!r} "
                              f"({type(e).__name__}: {e})") from None
    if mapping is not None:
        object.__setattr__(rest, "harness_mapping", mapping)
    return prefix, rest


def _consumes(layer: Any, t: Any) -> bool:
    return any(any(x is t for x in node.input_tensors) for node in getattr(layer, "_inbound_nodes", []))


# ------------------------------------------------------------------------------------------------------------------
# The comparison


@dataclass
class Layer0:
    """Both layer-0 outputs (NCHW float32; ``keras`` None when its preprocessing failed), the row and the causes."""

    caffe: np.ndarray
    keras: np.ndarray
    result: LayerResult
    diagnosis: list[Cause]
    transform: CaffeTransform
    keras_side: KerasPreprocess
    images: list[str]

    @property
    def passed(self) -> bool:
        return self.result.passed

    def to_dict(self) -> dict[str, Any]:
        return {"caffe": self.transform.describe(), "caffe_route": self.transform.route,
                "keras": self.keras_side.describe(), "images": list(self.images), "passed": self.passed,
                "shape": list(self.caffe.shape), "diagnosis": [c.to_dict() for c in self.diagnosis]}


def run_layer0(bgr: Sequence[np.ndarray], rgb: Sequence[np.ndarray], paths: Sequence[str], t: CaffeTransform,
               keras_side: KerasPreprocess, *, input_hw: tuple[int, int] | None = None,
               diagnose: bool = True) -> Layer0:
    """Caffe's layer 0 of the decoded images ``bgr`` (:func:`~harness.reference.preprocess.read_originals`) and the
    Keras side's of ``rgb`` (the same pixels, RGB), compared elementwise within :func:`layer0_bound`; ``paths`` are
    the files (messages name them)."""
    names = [f"image {str(p)!r}" for p in paths]
    caffe = caffe_layer0(bgr, t, input_hw=input_hw, names=names)
    keras = keras_side.apply(rgb, names)
    bound = layer0_bound(t, caffe)
    res = compare_arrays(LAYER0, "chained", caffe, keras, bound,
                         tolerance="derived: layer 0: 8*u32*(|pixel| + |mean|)*max(1, |scale|) + 8*u32*|caffe|")
    lr = LayerResult(LAYER0, LAYER0, LAYER0, keras_side.describe(), "preprocess", tuple(caffe.shape),
                     layer_type="Preprocess", chained=res)
    causes: list[Cause] = []
    if not res.passed and diagnose:
        causes = diagnose_layer0(bgr, names, t, caffe, keras, input_hw, keras_resize=keras_side.resize,
                                 reversing=reversing_layer(keras_side))
    return Layer0(caffe, keras, lr, causes, t, keras_side, [str(p) for p in paths])


def layer0_batch(paths: Sequence[str], t: CaffeTransform, keras_side: KerasPreprocess, *,
                 input_hw: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Image files -> (Caffe's layer 0, the Keras side's layer 0), both NCHW float32, each file decoded once: what a
    dataset of images feeds the two sides batch by batch (no comparison, no diagnosis)."""
    from ...reference.preprocess import keras_pixels, read_originals

    bgr = read_originals(paths, t)
    rgb = [keras_pixels(im, p) for im, p in zip(bgr, paths)]
    names = [f"image {str(p)!r}" for p in paths]
    return caffe_layer0(bgr, t, input_hw=input_hw, names=names), keras_side.apply(rgb, names)


def attach_layer0(report: Any, l0: Layer0, *, net_ran_on_caffe_input: bool = False) -> None:
    """Put layer 0 first in ``report``: its row, its JSON object (``report.preprocess``) and, when it fails, the
    first divergence (mode ``"preprocess"``) with its causes; the net's own first divergence moves to the others
    when it is an error of its own (isolated), and is dropped when it only carries layer 0's (chained)."""
    report.layers.insert(0, l0.result)
    report.preprocess = l0.to_dict()
    if net_ran_on_caffe_input:
        report.notes.append("notice: the Keras side's layer 0 does not have the net input's shape; the net ran on "
                            "Caffe's layer 0 on both sides")
    if l0.passed:
        return
    fd = report.first_divergence
    if fd is not None and fd.mode == "isolated":  # an error of the net's own, besides layer 0's
        report.divergences.insert(0, fd)
    report.first_divergence = FirstDivergence(LAYER0, l0.keras_side.describe(), LAYER0, "preprocess",
                                              diagnosis=list(l0.diagnosis))

