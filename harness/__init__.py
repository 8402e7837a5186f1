"""caffe-keras-harness: does a Keras model compute exactly what a Caffe model computes?

Importing :mod:`harness` is light (NumPy and protobuf only).  Keras and TensorFlow are imported on first use of the
converter or comparator, so ``caffe-harness info`` and ``pytest --help`` stay fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

import os as _os

# TensorFlow's oneDNN CPU kernels on every x86 CPU, not only the recent Intel ones TensorFlow turns them on for by
# default: without them (an AMD EPYC, say) TensorFlow's CPU kernels refuse what ports and the converter use -- an NCHW
# (channels_first) Conv2D, a Conv2DTranspose with dilation > 1, a DepthwiseConv2D with unequal strides -- so a check
# would depend on the machine's CPU brand.  Set before TensorFlow is imported (it reads the variable once); a user's
# TF_ENABLE_ONEDNN_OPTS=0 wins.  Verdicts do not depend on it: the derived bounds hold for every summation order.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from .errors import (  # noqa: E402
    ConversionError,
    HarnessError,
    KerasModelError,
    ProtoError,
    ResourceError,
    ShapeError,
    UnsupportedLayer,
    UnsupportedParam,
)

# Public names resolved lazily: module attribute -> "module:attr".
_LAZY = {
    "load_net": "harness.caffe:load_net",
    "infer_shapes": "harness.shapes:infer_shapes",
    "forward": "harness.reference:forward",
    "convert": "harness.convert",  # the package itself: calling it converts (see harness.convert)
    "compare": "harness.compare:compare",
    "assert_equivalent": "harness.compare:assert_equivalent",
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    import importlib

    mod_name, _, attr = target.partition(":")
    value = importlib.import_module(mod_name)
    if attr:
        value = getattr(value, attr)
    globals()[name] = value
    return value


__all__ = [
    "ConversionError", "HarnessError", "KerasModelError", "ProtoError", "ResourceError", "ShapeError",
    "UnsupportedLayer", "UnsupportedParam", *_LAZY,
]

# Converted .keras files name the harness's custom layers; register them as soon as Keras is imported (without
# importing Keras here), so `import harness` is all `keras.saving.load_model(path, safe_mode=True)` needs.
from ._keras_registration import install as _install_keras_registration  # noqa: E402

_install_keras_registration()
