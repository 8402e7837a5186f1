"""The one atomic file writer of the harness: a reader of the target path sees the old file or the whole new one,
never a half-written file, and an error leaves nothing behind.

:func:`atomic_path` yields a temporary path in the target's folder (``.<name>.<random><suffix>``, so that the rename
stays on one file system); when the block ends normally the file gets the permissions a plain ``open()`` would give
(``0666 & ~umask``; ``mkstemp`` makes ``0600``) and is renamed over the target with :func:`os.replace`; when it
raises, the temporary file is removed and the exception goes on.  :func:`atomic_write` writes text (UTF-8) or bytes
through it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import HarnessError

__all__ = ["atomic_path", "atomic_write"]


def _plain_permissions(path: str) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path to write, renamed to ``path`` when the block succeeds (see the module docstring).

    ``suffix`` is the temporary file's suffix (a writer that needs one, e.g. Keras's ``.keras``).  A missing folder is
    a :class:`HarnessError` naming it."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise HarnessError(f"cannot write {str(target)!r}: directory {str(folder)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield Path(tmp)
        _plain_permissions(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` (``str``: UTF-8 text; ``bytes`` as they are) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(data)
