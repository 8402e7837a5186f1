"""LiteRT's and the TFLite converter's native log lines, kept off the terminal.

Their C++ code writes to file descriptor 2 directly ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU", the
MLIR converter's ``loc(...)`` diagnostics), past Python's ``sys.stderr`` and past ``TF_CPP_MIN_LOG_LEVEL``."""

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
