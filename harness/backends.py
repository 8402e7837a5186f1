"""Keras 3 backends: choosing one before Keras is imported, and the per-backend switches the comparison needs.

Keras picks its backend once, when ``keras`` is first imported (``KERAS_BACKEND``, else ``~/.keras/keras.json``, else
TensorFlow), so :func:`select` must run before anything imports Keras; once Keras is imported with another backend it
refuses by name (a process holds one backend).  Importing this module imports nothing but the standard library.

Everything backend-specific the converter and the comparator do lives here:

* :func:`full_float32_precision`: float32 matmuls and convolutions at full precision.  TensorFlow uses TF32 on
  Ampere+ GPUs by default (``enable_tensor_float_32_execution(False)``); PyTorch may for cuDNN convolutions
  (``torch.backends.cudnn.allow_tf32``) and for matmuls when asked (``torch.backends.cuda.matmul.allow_tf32``,
  ``torch.set_float32_matmul_precision``); JAX uses bf16 passes on TPUs and TF32 on GPUs under its ``default``
  precision (``jax_default_matmul_precision = "highest"``).  On CPUs every backend is already full float32.
* :func:`allow_dotted_names_on_torch`: Caffe names with ``/`` become Keras names with ``.`` (Keras forbids ``/``);
  Keras's torch backend registers each layer's variables as torch parameters named by the variable's path
  (``inception_3a.1x1/kernel``) and torch refuses a ``.`` in a parameter name (``KeyError: parameter name can't
  contain "."``), so a converted GoogLeNet -- or any ``.keras`` file with such a name, converted on any backend --
  could not be built on torch.  The patch names the torch parameters with ``.`` spelled ``_`` (the Keras names and
  variable paths are unchanged; only ``torch.nn.Module.named_parameters()`` shows the other spelling).
* :func:`to_numpy`: a backend tensor (TensorFlow eager tensor, JAX array, torch tensor that may require grad or live
  on a GPU) as a NumPy array.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

from .errors import HarnessError

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT = "tensorflow"
# the module each backend needs, and what to install for it
_MODULE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
_INSTALL = {"tensorflow": "pip install tensorflow-cpu (or tensorflow)", "jax": "pip install jax",
            "torch": "pip install torch"}


def requested() -> str:
    """The backend Keras will use (or uses): Keras's own when it is imported, else ``KERAS_BACKEND``, else the
    default.  (Keras's ``keras.json`` is honoured by Keras itself when no ``KERAS_BACKEND`` is set.)"""
    if "keras" in sys.modules:
        try:
            return str(sys.modules["keras"].backend.backend())
        except Exception:  # pragma: no cover - a half-imported keras
            pass
    return os.environ.get("KERAS_BACKEND") or DEFAULT


def installed(name: str) -> bool:
    return importlib.util.find_spec(_MODULE[name]) is not None


def select(name: str | None) -> str:
    """Make Keras run on ``name`` (None: leave the choice to ``KERAS_BACKEND`` / Keras).  Must run before Keras is
    imported; raises :class:`HarnessError` (one line) for an unknown or uninstalled backend, or when Keras is
    already imported with another one.  Returns the backend that will be used."""
    if name is None:
        return requested()
    if name not in BACKENDS:
        raise HarnessError(f"--backend {name!r}: unknown Keras backend; expected one of {', '.join(BACKENDS)}")
    if "keras" in sys.modules:
        have = requested()
        if have != name:
            raise HarnessError(f"--backend {name}: Keras is already imported with backend {have!r} in this process "
                               f"(Keras picks its backend once, at import); set KERAS_BACKEND={name} before "
                               f"importing keras, or run in a fresh process")
        return name
    if not installed(name):
        raise HarnessError(f"--backend {name}: the Keras backend {name!r} is not installed ({_MODULE[name]} is not "
                           f"importable): {_INSTALL[name]}")
    os.environ["KERAS_BACKEND"] = name
    return name


def full_float32_precision() -> None:
    """Turn off reduced-precision float32 arithmetic (TF32, bf16 passes) on the active Keras backend.  Idempotent;
    never raises (an old framework without the switch is left as it is)."""
    try:
        import keras

        backend = keras.backend.backend()
    except Exception:  # pragma: no cover
        return
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            tf.config.experimental.enable_tensor_float_32_execution(False)
        elif backend == "torch":
            import torch

            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.set_float32_matmul_precision("highest")
        elif backend == "jax":
            import jax

            jax.config.update("jax_default_matmul_precision", "highest")
    except Exception:  # pragma: no cover - an old framework version
        pass


def allow_dotted_names_on_torch() -> None:
    """On the torch backend, let Keras layers whose names contain ``.`` hold variables (see the module docstring).
    Idempotent; a no-op on other backends, and when Keras's torch layer no longer has the methods patched."""
    if "keras" not in sys.modules or requested() != "torch":
        return
    try:
        import torch
        from keras.src.backend.torch.layer import TorchLayer
    except Exception:  # pragma: no cover - another Keras layout
        return
    if getattr(TorchLayer, "_harness_dotted_names", False) or not all(
            hasattr(TorchLayer, m) for m in ("_track_variables", "_post_track_variable", "_post_untrack_variable")):
        return

    def key(variable) -> str:
        return variable.path.replace(".", "_")

    def _track_variables(self):
        self._torch_params = torch.nn.ParameterDict({key(v): v.value for v in self.variables})

    def _post_track_variable(self, variable):
        if hasattr(self, "_torch_params") and key(variable) not in self.torch_params:
            self.torch_params[key(variable)] = variable.value

    def _post_untrack_variable(self, variable):
        if hasattr(self, "_torch_params") and key(variable) in self.torch_params:
            self.torch_params.pop(key(variable))

    TorchLayer._track_variables = _track_variables
    TorchLayer._post_track_variable = _post_track_variable
    TorchLayer._post_untrack_variable = _post_untrack_variable
    TorchLayer._harness_dotted_names = True


def to_numpy(v: Any):
    """A backend tensor (or NumPy array, or Python scalar) as a NumPy array, on any backend."""
    import numpy as np

    if isinstance(v, np.ndarray):
        return v
    mod = type(v).__module__
    if mod.startswith("torch"):  # may require grad (Keras variables are trainable) or sit on a GPU
        return v.detach().cpu().numpy()
    if hasattr(v, "numpy") and not mod.startswith("jax"):  # TensorFlow eager tensor
        try:
            return np.asarray(v.numpy())
        except Exception:
            pass
    from keras import ops

    return np.asarray(ops.convert_to_numpy(v))
