"""``convert --format tflite``: a converted Keras model written as a LiteRT ``.tflite`` flatbuffer.

The route is the one the LiteRT docs give for Keras 3: ``model.export(dir, format="tf_saved_model")`` and
``tf.lite.TFLiteConverter.from_saved_model(dir)``, builtin operators only (``OpsSet.TFLITE_BUILTINS``; the LiteRT
interpreter runs no Flex/TF ops).  The harness's custom layers are written in ``keras.ops`` that lower to builtins
(docs/converter.md, "LiteRT"); a model that still needs a TF op is refused naming the ops.

Quantisation (``quantize``):

* ``None``: float32.
* ``"float16"``: float16 weights (``Optimize.DEFAULT`` + ``supported_types=[tf.float16]``), float32 arithmetic.
* ``"dynamic"``: dynamic-range int8 weights (``Optimize.DEFAULT``), activations quantised on the fly.
* ``"int8"``: full-integer int8 (``Optimize.DEFAULT``, ``OpsSet.TFLITE_BUILTINS_INT8``) calibrated on
  ``representative`` seeded standard-normal inputs (``numpy.random.default_rng(seed)``, one sample per step, the
  model's own input layout); the model keeps float32 inputs and outputs (a quantise / dequantise at each end).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .._stdio import quiet_native_stderr
from ..errors import ConversionError, HarnessError

QUANTIZE = ("float16", "dynamic", "int8")


def representative_inputs(model: Any, n: int, seed: int) -> Iterator[list[np.ndarray]]:
    """``n`` seeded standard-normal samples (batch 1) for every model input, in the order the model takes them."""
    rng = np.random.default_rng(seed)
    shapes = [tuple(1 if d is None else int(d) for d in t.shape) for t in model.inputs]
    for _ in range(n):
        yield [rng.standard_normal((1,) + s[1:]).astype(np.float32) for s in shapes]


def _converter(saved: str, model: Any, quantize: str | None, representative: int, seed: int) -> Any:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(saved)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is None:
        return conv
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        conv.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if representative < 1:
            raise HarnessError(f"--representative {representative}: int8 calibration needs at least 1 sample")
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.representative_dataset = lambda: representative_inputs(model, representative, seed)
    return conv


def tflite_bytes(model: Any, *, quantize: str | None = None, representative: int = 32, seed: int = 0) -> bytes:
    """The ``.tflite`` flatbuffer of ``model`` (see the module docstring)."""
    if quantize is not None and quantize not in QUANTIZE:
        raise HarnessError(f"--quantize {quantize!r}: expected one of {', '.join(QUANTIZE)}")
    tmp = tempfile.mkdtemp(prefix="harness-tflite-")
    try:
        saved = os.path.join(tmp, "saved_model")
        model.export(saved, format="tf_saved_model", verbose=False)
        conv = _converter(saved, model, quantize, representative, seed)
        try:
            with quiet_native_stderr(keep=False):  # its MLIR diagnostics: the error names the ops instead
                return bytes(conv.convert())
        except Exception as e:  # the converter's ConverterError: name the TF ops LiteRT cannot run
            raise ConversionError(_convert_failure(e)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _convert_failure(e: Exception) -> str:
    text = str(e)
    ops = sorted(set(re.findall(r"'(tf\.[A-Za-z0-9_]+)'", text)))
    if ops:
        return (f"the model needs TensorFlow ops that LiteRT's builtin operators do not cover: {', '.join(ops)} "
                f"(the LiteRT interpreter runs no Flex ops)")
    return f"TFLite conversion failed: {type(e).__name__}: {' '.join(text.split())[:300]}"


def save_tflite(model: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Write ``model`` as a ``.tflite`` file, atomically (nothing is left on error)."""
    from .._atomic import atomic_path

    path = Path(path)
    if path.suffix != ".tflite":
        raise HarnessError(f"-o {str(path)!r}: a --format tflite file name must end in .tflite")
    data = tflite_bytes(model, **kwargs)
    try:
        with atomic_path(path, suffix=".tflite") as tmp:
            Path(tmp).write_bytes(data)
    except OSError as e:
        raise HarnessError(f"{path}: cannot write the model: {e}") from None
    return path
