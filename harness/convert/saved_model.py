"""Exporting a converted model as a TensorFlow SavedModel (``caffe-harness convert --format saved_model``).

The folder holds one serving signature, ``serving_default``, whose inputs and outputs are named after the Caffe blobs:
an input per Caffe input blob (4-D blobs NHWC, batch axis free, float32), an output per net output blob (the
converted model's output dict).  Keras 3's :class:`keras.export.ExportArchive` traces the model's ``call`` into a
TensorFlow graph; every converted layer runs in a name scope named after its Keras layer (the Caffe layer's name,
``/`` spelled ``.``), which is what lets ``check --saved-model`` read the intermediates back
(:mod:`harness.compare.artefacts.saved_model`).

Written atomically: into a temporary folder beside ``DIR``, renamed to ``DIR`` when complete; an existing non-empty
``DIR`` is refused by name, and on error nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import HarnessError

SIGNATURE = "serving_default"

__all__ = ["SIGNATURE", "check_export_dir", "export_saved_model"]


def check_export_dir(path: str | os.PathLike) -> Path:
    """``path`` as a folder the export may create: its parent exists and it is absent, or an empty folder."""
    p = Path(path)
    parent = p.resolve().parent
    if not parent.is_dir():
        raise HarnessError(f"-o {str(p)!r}: directory {str(parent)!r} does not exist")
    if p.exists() and not p.is_dir():
        raise HarnessError(f"-o {str(p)!r}: exists and is not a folder (a SavedModel is a folder)")
    if p.is_dir() and any(p.iterdir()):
        raise HarnessError(f"-o {str(p)!r}: the folder exists and is not empty; refusing to overwrite it (remove it "
                           f"or name a new folder)")
    return p


def _input_specs(model: Any) -> list:
    import tensorflow as tf

    specs = []
    for t in model.inputs:
        name = str(getattr(t, "name", "") or "").split(":")[0]
        specs.append(tf.TensorSpec(tuple(t.shape), tf.as_dtype(str(t.dtype)), name=name))
    return specs


def export_saved_model(model: Any, path: str | os.PathLike) -> Path:
    """Write ``model`` (a Keras model, e.g. :func:`harness.convert.convert`'s) as a SavedModel folder at ``path``
    with the serving signature ``serving_default`` (inputs named after the model's inputs, outputs after its output
    dict keys).  Atomic (see the module docstring)."""
    import keras

    p = check_export_dir(path)
    specs = _input_specs(model)
    tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", dir=p.resolve().parent))
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        if len(specs) == 1:
            fn = lambda x: model(x, training=False)  # noqa: E731 - the traced serving function
        else:
            fn = lambda *xs: model(list(xs), training=False)  # noqa: E731
        archive.add_endpoint(SIGNATURE, fn, input_signature=specs)
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # Keras prints its endpoints
            archive.write_out(str(tmp), verbose=False)
        if p.is_dir():
            p.rmdir()  # an empty folder the user made for it
        os.replace(tmp, p)
    except HarnessError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as e:  # noqa: BLE001 - TensorFlow / Keras raise many kinds here
        shutil.rmtree(tmp, ignore_errors=True)
        raise HarnessError(f"-o {str(p)!r}: cannot export the SavedModel on the {keras.backend.backend()} backend: "
                           f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return p
