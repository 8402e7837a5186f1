"""Native log lines kept off the terminal: TensorFlow's start-up banner, LiteRT's and the TFLite converter's.

Their C++ code writes to file descriptor 2 directly ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU", the
MLIR converter's ``loc(...)`` diagnostics, absl/oneDNN notices at TensorFlow's import), past Python's ``sys.stderr``
and past ``TF_CPP_MIN_LOG_LEVEL``."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator


@contextlib.contextmanager
def quiet_native_stderr(keep: bool = True, drop: tuple[str, ...] = ("INFO:",)) -> Iterator[None]:
    """File descriptor 2 captured while the block runs; afterwards every captured line is passed on to
    ``sys.stderr`` except ``drop``-prefixed ones (default: LiteRT's ``INFO:`` lines) or all (``keep=False``: the
    converter's diagnostics, which the caller turns into one message)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines():
                if keep and line.strip() and not line.startswith(drop):
                    print(line, file=sys.stderr)


def quiet_tensorflow_import() -> None:
    """Import TensorFlow (once) with file descriptor 2 silenced -- its C++ start-up banner would otherwise bury the
    report -- and its Python logger at ERROR (Keras builds a tf.function per grouped-convolution call and TF warns
    "triggered tf.function retracing" for each after the fifth: AlexNet's conv2/4/5; nothing is wrong).
    ``TF_CPP_MIN_LOG_LEVEL`` defaults to 3, TensorFlow's C++ log off, errors included (SSD300's DetectionOutput made
    oneDNN log "supports DT_INT64 only on platforms with AVX-512" as an E-line mid-report); the harness reports its
    own errors.  An import failure is left to whoever uses TensorFlow next, which reports it loudly."""
    import logging

    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            try:
                import tensorflow  # noqa: F401
            except Exception:  # noqa: BLE001 - reported by the first real use
                pass
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
