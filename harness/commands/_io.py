"""What the subcommands read and load, written once: ``--input-shape`` values, the ``--inputs``/``--input`` arrays,
the net (with seeded random weights and a notice when no ``--weights`` are given) and an atomically written npz.

Every problem is a :class:`HarnessError` whose message names the option and the file (the CLI prints it as one line
and exits 2).
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path
from typing import Any

from .._atomic import atomic_path
from ..errors import HarnessError


def parse_input_shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    """``["data=1,3,224,224"]`` (or ``data=1x3x224x224``) -> ``{"data": (1, 3, 224, 224)}``; bad syntax is a
    :class:`HarnessError`."""
    out: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, sep, dims = item.partition("=")
        name = name.strip()
        try:
            shape = tuple(int(d) for d in re.split(r"[,x]", dims.strip()))
        except ValueError:
            shape = ()
        if not sep or not name or not shape:
            raise HarnessError(f"--input-shape {item!r}: expected NAME=N,C,H,W (e.g. data=1,3,224,224)")
        if any(d <= 0 for d in shape):
            raise HarnessError(f"--input-shape {item!r}: every dimension must be positive")
        if name in out:
            raise HarnessError(f"--input-shape: {name!r} given twice")
        out[name] = shape
    return out


def _load_numpy(path: str, what: str) -> Any:
    """``np.load`` of an existing file (an array, or an open ``NpzFile``); a missing or unreadable file names ``what``."""
    import numpy as np

    if not Path(path).is_file():
        raise HarnessError(f"{what}: file {path!r} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise HarnessError(f"{what}: cannot read {path!r} as a NumPy file ({type(e).__name__}: {e})") from None


def read_inputs(inputs: str | None, input_items: list[str]) -> dict[str, Any]:
    """The NCHW arrays of ``--inputs FILE.npz`` (keyed by input name) and ``--input NAME=FILE.npy`` (repeatable), as
    ``{name: array}`` (empty when none is given).  A name given twice is refused."""
    given: dict[str, Any] = {}
    if inputs:
        z = _load_numpy(inputs, "--inputs")
        if not hasattr(z, "files"):
            raise HarnessError(f"--inputs {inputs!r}: expected an .npz archive of arrays keyed by input name")
        with z:
            given.update({k: z[k] for k in z.files})
    for item in input_items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise HarnessError(f"--input {item!r}: expected NAME=FILE.npy")
        if name in given:
            raise HarnessError(f"--input {item!r}: input {name!r} is given twice")
        a = _load_numpy(path, f"--input {name}")
        if hasattr(a, "files"):
            a.close()
            raise HarnessError(f"--input {item!r}: expected a .npy array, got an .npz archive (use --inputs)")
        given[name] = a
    return given


def load_net(args: Any, given: dict[str, Any] | None = None) -> Any:
    """The net of ``args.prototxt`` with ``args.weights``, sized by ``--input-shape``; without it, a train_val net
    whose Data layers state no shape is sized by the ``given`` input arrays (the prototxt's own error otherwise)."""
    from ..caffe import load_net as _load

    shapes = parse_input_shapes(args.input_shape)
    if shapes:
        return _load(args.prototxt, weights=args.weights, input_shapes=shapes)
    try:
        return _load(args.prototxt, weights=args.weights)
    except HarnessError as first:
        if not given:
            raise
        try:
            return _load(args.prototxt, weights=args.weights,
                         input_shapes={k: tuple(v.shape) for k, v in given.items()})
        except HarnessError:
            raise first from None


def seeded_weights(net: Any, seed: int) -> Any:
    """``net`` with seeded random weights, and the notice on stderr that says so (used when no --weights is given)."""
    from ..weights import random_weights

    net = random_weights(net, seed=seed)
    print(f"caffe-harness: notice: no --weights given; using seeded random weights (seed {seed})", file=sys.stderr)
    return net


def write_npz(path: str, arrays: dict[str, Any], what: str = "--out") -> None:
    """Write ``arrays`` to ``path`` as an npz, atomically; a missing folder or a failed write names ``what``."""
    import numpy as np

    out = Path(path)
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise HarnessError(f"{what}: folder {str(folder)!r} does not exist")
    try:
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    except OSError as e:
        raise HarnessError(f"{what}: cannot write {path!r}: {e.strerror or e}") from None
