"""The blob values Caffe's layer set-up writes before any weights are copied (``LayerSetUp`` + ``filler.hpp``).

They matter for a net with duplicate layer names: ``Net::CopyTrainedLayersFrom`` copies each source layer of a
caffemodel into the *first* target layer of that name (a linear search over the net's layer names), so every later
layer of that name keeps the values its fillers gave it.  The harness reproduces them where they are deterministic
and refuses the layer by name where they are not:

* ``constant`` (``FillerParameter``'s default type, value 0): every element ``value`` (float32); a ``sparse`` setting
  is refused (Caffe CHECKs that only the Gaussian filler is sparse);
* the layers' own defaults when no filler is given: Convolution / Deconvolution / InnerProduct / Embed weights and
  biases ``constant 0``; Scale's scale ``constant 1`` (its bias ``constant 0``); Bias ``constant 0``; PReLU
  ``constant 0.25``; SSD Normalize's scale ``constant 1``; BatchNorm's three blobs 0 (``caffe_set``, no filler);
* ``gaussian``, ``uniform``, ``xavier``, ``msra``, ``positive_unitball`` draw from Caffe's random generator: no one
  can reproduce them, so the layer is refused (:class:`~harness.errors.UnsupportedParam`, naming the file, the layer,
  the filler field and its type).  ``bilinear`` is refused too: its centre formula changed between Caffe versions.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .errors import UnsupportedParam
from .net import Layer

__all__ = ["filler_blobs"]

_Spec = tuple[str, str, float]  # (parameter message, filler field, default constant) of one blob


def _fixed(*specs: _Spec) -> Callable[[Layer], list[_Spec] | None]:
    return lambda layer: list(specs)


def _scale(layer: Layer) -> list[_Spec]:
    """Scale: the scale blob only with one bottom (a second bottom is the scale), then the bias."""
    scale = ("scale_param", "filler", 1.0)
    bias = ("scale_param", "bias_filler", 0.0)
    return ([scale] if len(layer.bottoms) == 1 else []) + [bias]


_WEIGHT_BIAS = {msg: _fixed((msg, "weight_filler", 0.0), (msg, "bias_filler", 0.0))
                for msg in ("convolution_param", "inner_product_param", "embed_param")}
# type -> one spec per blob, in blob order (None: every blob set to 0 without a filler), for every type with learned
# blobs (harness.catalogue: weighted); tests/test_registry.py names a type without its rule
FILLERS: dict[str, Callable[[Layer], list[_Spec] | None]] = {
    "Convolution": _WEIGHT_BIAS["convolution_param"], "ConvolutionDepthwise": _WEIGHT_BIAS["convolution_param"],
    "Deconvolution": _WEIGHT_BIAS["convolution_param"], "InnerProduct": _WEIGHT_BIAS["inner_product_param"],
    "Embed": _WEIGHT_BIAS["embed_param"],
    "Bias": _fixed(("bias_param", "filler", 0.0)),
    "PReLU": _fixed(("prelu_param", "filler", 0.25)),
    "Normalize": _fixed(("norm_param", "scale_filler", 1.0)),
    "Scale": _scale,
    "BatchNorm": lambda layer: None,  # caffe_set(0) on its three blobs
}


def _constant(layer: Layer, msg: str, fld: str, default: float, shape: tuple[int, ...], source: str) -> np.ndarray:
    prm = getattr(layer.param, msg)
    if not prm.HasField(fld):
        return np.full(shape, np.float32(default), np.float32)
    f = getattr(prm, fld)
    if f.type != "constant":
        why = ("its centre formula differs between Caffe versions" if f.type == "bilinear"
               else "it is drawn from Caffe's random generator")
        raise UnsupportedParam(
            f"{source}: layer {layer.param.name!r} (a later layer of a duplicate name, {layer.name!r} here) keeps "
            f"its filler values, because Caffe copies the weights of {layer.param.name!r} into the first layer of "
            f"that name only; {msg}.{fld}.type={f.type!r} cannot be reproduced ({why}): give the layer a unique "
            f"name, or a constant filler")
    if f.sparse != -1:
        raise UnsupportedParam(f"{source}: layer {layer.name!r}: {msg}.{fld}.sparse={f.sparse} with a constant "
                               f"filler (Caffe allows sparse only with the gaussian filler)")
    return np.full(shape, np.float32(f.value), np.float32)


def filler_blobs(layer: Layer, shapes: Sequence[Sequence[int]], source: str = "<net>") -> list[np.ndarray]:
    """The float32 blobs of the expected ``shapes`` that Caffe's set-up of ``layer`` writes (see the module
    docstring); :class:`~harness.errors.UnsupportedParam` where they are random."""
    shapes = [tuple(int(d) for d in s) for s in shapes]
    rule = FILLERS.get(layer.kind)
    specs = rule(layer) if rule is not None else []
    if specs is None:
        return [np.zeros(s, np.float32) for s in shapes]
    specs = specs[:len(shapes)]
    if len(specs) != len(shapes):
        raise UnsupportedParam(f"{source}: layer {layer.name!r} ({layer.type}): the harness does not know the "
                               f"fillers of its {len(shapes)} blob(s), so it cannot give the values Caffe would")
    return [_constant(layer, msg, fld, default, s, source) for (msg, fld, default), s in zip(specs, shapes)]
