"""The one base of every custom Keras layer of the converter (:mod:`.custom_layers`, :mod:`.custom_ops`).

Rules every custom layer follows:

* ``keras.ops`` only (no TensorFlow calls), so the layers run on every Keras 3 backend;
* registered with :data:`register` (``@keras.saving.register_keras_serializable(package="harness")``): the
  serialization name is ``harness>ClassName``, and a ``.keras`` file names the layer by it, so a class is never
  renamed (``tests/convert/test_custom_layers_safe_load.py`` freezes every name and config key);
* its constructor parameters are the names in ``_params``, stored as plain JSON values and returned by
  ``get_config``, so a saved ``.keras`` loads with ``keras.saving.load_model(path, safe_mode=True)`` once
  :mod:`harness` is imported (:mod:`harness._keras_registration`);
* the tensors it receives follow the layout contract: a 4-D Caffe blob arrives as NHWC, any other rank in Caffe's own
  axis order.  Axis arguments are *Keras* axes (the converter has already translated Caffe's NCHW axes) unless their
  name says ``caffe`` or ``nchw``.

Class names carry a ``Caffe`` prefix.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from ..backends import allow_dotted_names_on_torch

register = keras.saving.register_keras_serializable(package="harness")

# Converted models name layers after Caffe's with '/' spelled '.': make that work on Keras's torch backend too (this
# module is imported whenever the converter or a converted model's custom layers are, see harness.backends)
allow_dotted_names_on_torch()


def plain(v: Any) -> Any:
    """Parameters as plain JSON values (tuples -> lists, NumPy scalars -> Python), so ``get_config`` round-trips
    exactly through a saved file."""
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


class CaffeLayer(keras.layers.Layer):
    """Stores the keyword parameters named in ``_params`` (every one required) and returns them from
    ``get_config``; the remaining keywords go to :class:`keras.layers.Layer`."""

    _params: tuple[str, ...] = ()

    def __init__(self, **kwargs: Any) -> None:
        own = {k: kwargs.pop(k) for k in list(kwargs) if k in self._params}
        missing = [k for k in self._params if k not in own]
        if missing:
            raise TypeError(f"{type(self).__name__}: missing arguments {missing}")
        super().__init__(**kwargs)
        for k, v in own.items():
            setattr(self, k, plain(v))

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update({k: getattr(self, k) for k in self._params})
        return cfg
