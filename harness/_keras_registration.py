"""Make ``import harness`` enough for ``keras.saving.load_model(path, safe_mode=True)`` of a converted model.

A converted ``.keras`` file names the harness's custom layers (``harness>CaffeLRN`` ...); Keras resolves them only
from its registry of serializable classes, which is filled when :mod:`harness.convert.custom_layers` (part A) and
:mod:`harness.convert.custom_ops` (part B) are imported -- and those import Keras/TensorFlow (seconds).  Importing
:mod:`harness` must stay light, so instead of importing them eagerly we register them the moment Keras itself is
imported: right away if it already is, else through a one-shot import hook on the top-level ``keras`` module that
imports the two modules after ``keras`` has finished initialising.  Nothing here executes code from a model file.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

_LAYER_MODULES = ("harness.convert.custom_layers", "harness.convert.custom_ops")
_done = False


def register_custom_layers() -> None:
    """Import the modules that register the harness's custom Keras layers (idempotent; never raises)."""
    global _done
    if _done:
        return
    _done = True
    for name in _LAYER_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                warnings.warn(f"harness: could not register custom Keras layers from {name}: {e}", stacklevel=2)
        except Exception as e:  # never break `import keras` for the user
            warnings.warn(f"harness: could not register custom Keras layers from {name}: {e}", stacklevel=2)


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the real loader of ``keras`` so the layers register once keras is loaded."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "keras":
            return None
        _uninstall()
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        real_exec = loader.exec_module

        def exec_module(module):
            real_exec(module)
            register_custom_layers()

        try:
            loader.exec_module = exec_module  # instance attribute shadows the class method for this load only
        except (AttributeError, TypeError):
            return spec
        return spec


_HOOK = _KerasImportHook()


def _uninstall() -> None:
    try:
        sys.meta_path.remove(_HOOK)
    except ValueError:
        pass


def install() -> None:
    """Register now if Keras is loaded, else when it gets imported."""
    if "keras" in sys.modules:
        register_custom_layers()
    elif _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)
