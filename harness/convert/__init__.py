"""Caffe -> Keras 3 converter: :func:`convert`, :func:`save_model`, :func:`load_model`.

The converted model is a Keras 3 functional model, channels_last:

* inputs: one ``keras.Input`` per Caffe input blob, named after the blob (4-D blobs as NHWC, any other rank in
  Caffe's order, batch axis free); a single input is passed as a tensor, several as a list in declaration order;
* outputs: a dict ``{blob: tensor}`` of the net's output blobs (tops no layer consumes) in prototxt order, named
  after them (``model.predict(x)["prob"]``); 4-D outputs are NHWC;
* every Caffe layer becomes the Keras layer of the same name that produces its top(s) (``/`` is not allowed in Keras
  names and becomes ``.``); helpers are ``<layer>__<suffix>`` (``conv1__pad``).  In-place chains map naturally.
* the model carries the Caffe -> Keras mapping as ``model.harness_mapping`` (see :func:`mapping_of`):
  ``{"keys": {"<layer>/<top>": {"layer": keras_layer_name, "index": output_index, "layout": "nhwc" | "caffe"}},
  "inputs": [...], "outputs": [...], "folded": {...}, "approximations": [...]}``.  :func:`save_model` stores it in
  the ``.keras`` zip as ``harness_mapping.json``; :func:`load_model` (Keras safe mode) restores it.

Exactness: every converter reproduces Caffe's arithmetic up to float32 rounding; a layer that cannot be converted
exactly raises :class:`~harness.errors.ConversionError` naming it, unless ``allow_approx=True``, which records an
:class:`~harness.convert.base.Approximation` with the measured error (against :func:`harness.reference.forward`).
TensorFlow's TF32 (default-on for float32 matmul/conv on Ampere+ GPUs, ~3e-4 relative error) is switched off
whenever a model is converted or loaded on the TensorFlow backend.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import types
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ..catalogue import is_source
from ..errors import ConversionError, HarnessError, KerasModelError, ShapeError
from ..net import Layer, Net
from ._layout import NCHW_TO_NHWC, NHWC_TO_NCHW
from ._util import who
from .base import CONVERTERS, Approximation, ConvertContext
from . import custom_layers  # noqa: F401  (registers the custom layers for safe-mode loading)

# Every converter family, imported explicitly (each registers its types in CONVERTERS at import): part A (core:
# conv, pooling, norm, affine, Input below) and part B (activation, shape, eltwise, reduce, resize, detection and
# their custom layers in custom_ops).
from . import affine, conv, norm, pooling  # noqa: F401,E402
from . import activation, custom_ops, detection, eltwise, reduce, resize, shape  # noqa: F401,E402

MAPPING_MEMBER = "harness_mapping.json"
MAPPING_FORMAT = 1

__all__ = ["convert", "save_model", "load_model", "mapping_of", "keras_name", "disable_tf32", "CONVERTERS"]


def keras_name(caffe_name: str) -> str:
    """Keras 3 forbids ``/`` in layer names (Caffe nets use it: ``inception_3a/1x1``); it becomes ``.``."""
    return caffe_name.replace("/", ".")


def disable_tf32() -> None:
    """Full float32 arithmetic on the active backend: TF32 is on by default for float32 convolutions and matmuls on
    Ampere and newer GPUs under TensorFlow (and PyTorch's cuDNN; JAX's default matmul precision may use it) and costs
    ~3e-4 relative error.  Kept under its old name; see :func:`harness.backends.full_float32_precision`."""
    from ..backends import full_float32_precision

    full_float32_precision()


# ----------------------------------------------------------------------------------------------------------------
# Input


@CONVERTERS.register("Input")
def convert_input(layer: Layer, inputs: list, ctx: ConvertContext) -> list:
    """One ``keras.Input`` per top, named after the blob; the batch axis is left free."""
    if inputs:
        raise ShapeError(f"{who(layer)}: takes no bottoms, got {len(inputs)}")
    outs = []
    for top, shape in zip(layer.tops, ctx.extra["top_shapes"]):
        shape = tuple(int(d) for d in shape)
        if len(shape) == 4:
            kshape = (shape[2], shape[3], shape[1])
        else:
            kshape = shape[1:]
        outs.append(keras.Input(shape=kshape, name=keras_name(top), dtype="float32"))
    return outs


# ----------------------------------------------------------------------------------------------------------------


def _caffe_shape_of(t, layout: str) -> tuple:
    """A Keras tensor's static shape in Caffe's order (a free batch axis stays None: a blob's axis 0 need not be the
    net's batch, e.g. a (3, 5) factor input)."""
    s = list(t.shape)
    if layout == "nhwc" and len(s) == 4:
        s = [s[0], s[3], s[1], s[2]]
    return tuple(s)


def _producer(t) -> tuple[str, int]:
    hist = getattr(t, "_keras_history", None)
    if hist is None:
        raise ConversionError("internal: a converter returned something that is not a Keras tensor")
    return hist.operation.name, int(hist.tensor_index)


def _shape_check(layer: Layer, outs: list, tops_shapes, data_dependent: bool) -> None:
    """Every converted top must have Caffe's shape (from :func:`harness.shapes.infer_shapes`, a separate derivation)
    in the layout contract; a free Keras batch axis is not compared."""
    if data_dependent:
        return
    for top, t, want in zip(layer.tops, outs, tops_shapes):
        want = tuple(int(d) for d in want)
        got = _caffe_shape_of(t, "nhwc" if len(want) == 4 else "caffe")
        if len(got) != len(want) or any(g is not None and g != w for g, w in zip(got, want)):
            raise ConversionError(f"{who(layer)}: the converted top {top!r} has shape {got} (Caffe "
                                  f"order), Caffe's is {want}: converter bug, refusing to build a wrong model")


def convert(net: Net, *, allow_approx: bool = False, fold_batchnorm: bool = False) -> keras.Model:
    """Convert a loaded Caffe net (with weights) into a Keras 3 functional model that computes the same blobs.

    ``allow_approx``: convert layers that have no exact Keras equivalent anyway and record each approximation (with
    its measured error) in ``model.harness_mapping["approximations"]``; without it such a layer raises
    :class:`ConversionError` naming it.  ``fold_batchnorm``: fold a BatchNorm and the in-place Scale right after it
    into one ``BatchNormalization`` (off by default so every Caffe layer keeps its own Keras layer).
    """
    from ..shapes import infer_shapes

    disable_tf32()
    shapes = infer_shapes(net)
    ctx = ConvertContext(net=net, allow_approx=allow_approx)
    ctx.extra["fold_batchnorm"] = fold_batchnorm
    b = _Built()
    for lay, ls in zip(net.layers, shapes.layers):
        if lay.name in b.folded_scales:
            # folded into the preceding BatchNorm: its top is that layer's output
            kname, idx = _producer(b.tensors[lay.tops[0]])
            b.keys[f"{lay.name}/{lay.tops[0]}"] = {"layer": kname, "index": idx,
                                                   "layout": "nhwc" if len(ls.top_shapes[0]) == 4 else "caffe"}
            continue
        kname = _keras_name_of(lay, b.used_names)
        outs = _convert_layer(lay, kname, ls, [b.tensors[x] for x in lay.bottoms], ctx)
        b.record(lay, kname, ls, outs, ctx.extra.get("folded", {}))
    return _model(net, b, ctx)


@dataclasses.dataclass
class _Built:
    """What :func:`convert` has built so far."""

    tensors: dict[str, Any] = dataclasses.field(default_factory=dict)
    keys: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    model_inputs: list = dataclasses.field(default_factory=list)
    input_blobs: list[str] = dataclasses.field(default_factory=list)
    used_names: dict[str, str] = dataclasses.field(default_factory=dict)
    folded_scales: set[str] = dataclasses.field(default_factory=set)

    def record(self, lay: Layer, kname: str, ls: Any, outs: list, folded: dict[str, str]) -> None:
        """One converted layer's tops: the model inputs, the mapping keys, the Scales folded into it."""
        if is_source(lay.kind):
            self.model_inputs.extend(outs)
            self.input_blobs.extend(lay.tops)
        elif lay.name not in folded.values():
            outs = _ensure_named(lay, kname, outs)
        for scale_name, bn_name in folded.items():
            if bn_name == lay.name:
                self.folded_scales.add(scale_name)
        _shape_check(lay, outs, ls.top_shapes, getattr(ls, "data_dependent", False))
        for top, t, tshape in zip(lay.tops, outs, ls.top_shapes):
            self.tensors[top] = t
            if lay.name in folded.values():
                continue  # a folded BatchNorm has no Keras tensor of its own
            pname, idx = _producer(t)
            self.keys[f"{lay.name}/{top}"] = {"layer": pname, "index": idx,
                                              "layout": "nhwc" if len(tshape) == 4 else "caffe"}


def _keras_name_of(lay: Layer, used_names: dict[str, str]) -> str:
    kname = keras_name(lay.name)
    if kname in used_names and used_names[kname] != lay.name:
        raise ConversionError(f"{who(lay)}: its Keras name {kname!r} collides with layer "
                              f"{used_names[kname]!r}")
    used_names[kname] = lay.name
    return kname


def _convert_layer(lay: Layer, kname: str, ls: Any, ins: list, ctx: ConvertContext) -> list:
    """The Keras tensors of one layer's tops, from its registered converter; errors name the Caffe layer."""
    klay = dataclasses.replace(lay, name=kname) if kname != lay.name else lay
    ctx.bottom_shapes = [tuple(s) for s in ls.bottom_shapes]
    ctx.extra["top_shapes"] = [tuple(s) for s in ls.top_shapes]
    try:
        fn = CONVERTERS[lay.type]
    except HarnessError as e:
        raise ConversionError(f"{who(lay)}: {e}") from None
    try:
        outs = list(fn(klay, ins, ctx))
    except HarnessError as e:
        if kname != lay.name:  # converters see the Keras-safe name; errors must name the Caffe layer
            raise type(e)(str(e).replace(repr(kname), repr(lay.name))) from None
        raise
    except ValueError as e:  # Keras refusing a construct: name the layer
        raise ConversionError(f"{who(lay)}: Keras refused the converted layer: "
                              f"{' '.join(str(e).split())}") from None
    if len(outs) != len(lay.tops):
        raise ConversionError(f"{who(lay)}: converter returned {len(outs)} tensors for "
                              f"{len(lay.tops)} tops")
    return outs


def _model(net: Net, b: _Built, ctx: ConvertContext) -> keras.Model:
    """The functional model of the converted tensors, with its ``harness_mapping``."""
    if not b.model_inputs:
        raise ConversionError(f"net {net.name!r} has no Input layer")
    outputs = {blob_name: b.tensors[blob_name] for blob_name in net.outputs}
    try:
        model = keras.Model(b.model_inputs[0] if len(b.model_inputs) == 1 else b.model_inputs, outputs,
                            name=_model_name(net.name))
    except ValueError as e:
        raise ConversionError(f"net {net.name!r}: Keras refused the converted model: {' '.join(str(e).split())}") \
            from None
    mapping = {
        "format": MAPPING_FORMAT,
        "net": net.name,
        "inputs": list(b.input_blobs),
        "input_layers": [keras_name(x) for x in b.input_blobs],
        "outputs": list(net.outputs),
        "keys": b.keys,
        "folded": dict(ctx.extra.get("folded", {})),
        "approximations": [],
    }
    if ctx.approximations:  # measured against the reference by harness.compare.measure_approximations
        mapping["approximations"] = [dataclasses.asdict(a) for a in ctx.approximations]
    _attach(model, mapping)
    return model


def _ensure_named(lay: Layer, kname: str, outs: list) -> list:
    """Enforce the naming contract: the top(s) come from one Keras layer named after the Caffe layer.  A converter
    that returns its input unchanged (an identity at TEST) or a helper's output gets a standard ``Identity`` layer
    of that name (on a list for several tops)."""
    producers = [_producer(t) for t in outs]
    if all(p[0] == kname for p in producers) and len({p[1] for p in producers}) == len(outs):
        return outs
    if len(outs) == 1:
        return [keras.layers.Identity(name=kname)(outs[0])]
    return list(keras.layers.Identity(name=kname)(list(outs)))


def _model_name(name: str) -> str:
    n = keras_name(name or "caffe_net").strip()
    return n or "caffe_net"


def _attach(model: keras.Model, mapping: dict) -> None:
    # object.__setattr__: keep Keras' attribute tracking out of a plain JSON dict
    object.__setattr__(model, "harness_mapping", mapping)


def mapping_of(model: keras.Model) -> dict | None:
    """The Caffe -> Keras mapping a converted (or :func:`load_model`-loaded) model carries, or None."""
    return getattr(model, "harness_mapping", None)


def keras_blob(model: keras.Model, entry: dict, inputs: dict[str, np.ndarray], net: Net) -> np.ndarray:
    """Run ``model`` up to one mapped tensor and return it in Caffe's NCHW order (a helper for tests/measurement)."""
    lay = model.get_layer(entry["layer"])
    out = lay.output
    if isinstance(out, (list, tuple)):
        out = out[entry["index"]]
    sub = keras.Model(model.inputs, out)
    feed = [to_keras_layout(inputs[b]) for b in mapping_of(model)["inputs"]] if mapping_of(model) else None
    if feed is None:
        feed = [to_keras_layout(inputs[b]) for b in net.inputs]
    y = keras.ops.convert_to_numpy(sub(feed))
    return from_keras_layout(y, entry["layout"])


def to_keras_layout(a: np.ndarray) -> np.ndarray:
    """A Caffe blob as the converted model expects it: NCHW -> NHWC for 4-D, unchanged otherwise."""
    a = np.asarray(a, dtype=np.float32)
    return np.ascontiguousarray(a.transpose(NCHW_TO_NHWC)) if a.ndim == 4 else a


def from_keras_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """A converted model's tensor in Caffe's order: NHWC -> NCHW for ``layout == "nhwc"``."""
    a = np.asarray(a)
    return np.ascontiguousarray(a.transpose(NHWC_TO_NCHW)) if layout == "nhwc" and a.ndim == 4 else a


# ----------------------------------------------------------------------------------------------------------------
# Persistence


def save_model(model: keras.Model, path: str | os.PathLike) -> Path:
    """Write ``model`` as a ``.keras`` file with its Caffe -> Keras mapping embedded (``harness_mapping.json`` in the
    zip).  Atomic: written to a temporary file in the target directory, then renamed; nothing is left on error."""
    path = Path(path)
    if path.suffix != ".keras":
        raise HarnessError(f"{path}: the model file name must end in .keras")
    mapping = mapping_of(model)
    from .._atomic import atomic_path

    try:
        with atomic_path(path, suffix=".keras") as tmp:
            model.save(tmp)
            if mapping is not None:
                with zipfile.ZipFile(tmp, "a") as z:
                    z.writestr(MAPPING_MEMBER, json.dumps(mapping, indent=1, sort_keys=False))
    except OSError as e:
        raise HarnessError(f"{path}: cannot write the model: {e}") from None
    return path


def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a ``.keras`` file in Keras safe mode (no code from the file runs; the harness's custom layers are
    registered by importing :mod:`harness.convert`) and restore its embedded mapping (None when it has none)."""
    path = Path(path)
    if not path.is_file():
        raise KerasModelError(f"{path}: no such model file")
    disable_tf32()
    try:
        model = keras.saving.load_model(str(path), safe_mode=True)
    except Exception as e:  # Keras raises many types for a bad or unsafe file
        raise KerasModelError(f"{path}: cannot load the Keras model safely: {' '.join(str(e).split())[:500]}") \
            from None
    mapping = None
    try:
        with zipfile.ZipFile(path) as z:
            if MAPPING_MEMBER in z.namelist():
                mapping = json.loads(z.read(MAPPING_MEMBER).decode("utf-8"))
    except (zipfile.BadZipFile, ValueError) as e:
        raise KerasModelError(f"{path}: unreadable {MAPPING_MEMBER}: {e}") from None
    if mapping is not None:
        _attach(model, mapping)
    return model


class _CallableConvertModule(types.ModuleType):
    """``harness.convert`` is both this package and the public function: the package name shadows a function
    attribute of :mod:`harness` as soon as it is imported, so calling the package converts.
    ``harness.convert(net, ...)`` is ``harness.convert.convert(net, ...)``."""

    def __call__(self, net: Net, **kwargs: Any) -> keras.Model:
        return convert(net, **kwargs)


sys.modules[__name__].__class__ = _CallableConvertModule
