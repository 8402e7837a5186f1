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
  ``representative``: N seeded standard-normal inputs (``numpy.random.default_rng(seed)``, one sample per step, the
  model's own input layout) or a dataset (``{Caffe input blob: (N, C, H, W) array}``, laid out NHWC for a 4-D model
  input); the model keeps float32 inputs and outputs (a quantise / dequantise at each end).

Selective int8 (:class:`Calibrated`, ``convert --keep-float``): the model is calibrated once and re-quantised with
chosen operators left in float32 through the TFLite converter's own selective quantisation,
``tf.lite.experimental.QuantizationDebugger`` with ``QuantizationDebugOptions(denylisted_nodes=[...])`` and
``get_nondebug_quantized_model()`` (a denylisted node is an operator's output tensor name; a DEQUANTIZE / QUANTIZE
pair brackets it).  It keeps float32 only: the converter has no per-operator float16.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

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


def dataset_inputs(model: Any, arrays: Mapping[str, np.ndarray]) -> Iterator[list[np.ndarray]]:
    """One sample (batch 1) at a time of ``arrays`` (``{Caffe input blob: (N, ...) array}``, NCHW) for every model
    input in the model's order (by input name, else by position), a 4-D sample transposed to the model's NHWC."""
    names = [str(getattr(t, "name", "")).split(":")[0] for t in model.inputs]
    keys = [n if n in arrays else k for n, k in zip(names, list(arrays))]
    shapes = [tuple(t.shape) for t in model.inputs]
    n = min(int(np.shape(arrays[k])[0]) for k in keys)
    for i in range(n):
        out = []
        for k, s in zip(keys, shapes):
            x = np.asarray(arrays[k][i:i + 1], np.float32)
            if x.ndim == 4 and len(s) == 4 and tuple(x.shape[1:]) != tuple(s[1:]):
                x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
            out.append(x)
        yield out


def _samples(model: Any, representative: Any, seed: int):
    """The representative-dataset callable for ``representative`` (a count of seeded inputs, or a dataset)."""
    if isinstance(representative, Mapping):
        return lambda: dataset_inputs(model, representative)
    if representative < 1:
        raise HarnessError(f"--representative {representative}: int8 calibration needs at least 1 sample")
    return lambda: representative_inputs(model, representative, seed)


def _converter(saved: str, model: Any, quantize: str | None, representative: Any, seed: int) -> Any:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(saved)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is None:
        return conv
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        conv.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.representative_dataset = _samples(model, representative, seed)
    return conv


def tflite_bytes(model: Any, *, quantize: str | None = None, representative: Any = 32, seed: int = 0) -> bytes:
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


class Calibrated:
    """A model calibrated once for int8 (``representative``: see the module docstring) and re-quantised with any set
    of operators kept in float32 (:meth:`quantize`).  ``nodes``: the calibrated float model's operator output tensor
    names (what ``denylisted_nodes`` names), in execution order.  Use as a context manager (its SavedModel folder is
    removed on exit)."""

    def __init__(self, model: Any, representative: Any = 32, seed: int = 0) -> None:
        import warnings

        import tensorflow as tf

        self._tmp = tempfile.mkdtemp(prefix="harness-calibrate-")
        try:
            saved = os.path.join(self._tmp, "saved_model")
            model.export(saved, format="tf_saved_model", verbose=False)
            conv = _converter(saved, model, "int8", representative, seed)
            self._tf = tf
            with quiet_native_stderr(keep=False), _quiet_stdout(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
                self._debugger = tf.lite.experimental.QuantizationDebugger(
                    converter=conv, debug_dataset=conv.representative_dataset,
                    debug_options=tf.lite.experimental.QuantizationDebugOptions(fully_quantize=False))
                self.nodes = _node_names(self._debugger.calibrated_model)
        except Exception as e:
            self.close()
            if isinstance(e, HarnessError):
                raise
            raise ConversionError(_convert_failure(e)) from None

    def quantize(self, denylisted_nodes: Any = ()) -> bytes:
        """The int8 flatbuffer with the operators writing ``denylisted_nodes`` kept in float32."""
        import warnings

        opts = self._tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(denylisted_nodes) or None,
                                                                   fully_quantize=False)
        with quiet_native_stderr(keep=False), _quiet_stdout(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._debugger.options = opts
            return bytes(self._debugger.get_nondebug_quantized_model())

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "Calibrated":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _node_names(buf: bytes) -> list[str]:
    """The output tensor names of every operator of subgraph 0 (execution order)."""
    from tensorflow.lite.python import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    sg = m.subgraphs[0]
    names = []
    for op in sg.operators or []:
        for o in op.outputs if op.outputs is not None else []:
            n = sg.tensors[int(o)].name if int(o) >= 0 else b""
            n = n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n or "")
            if n and n not in names:
                names.append(n)
    return names


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """File descriptor 1 silenced (the MLIR quantiser prints its options, ``fully_quantize: 0, ...``, there)."""
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


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
