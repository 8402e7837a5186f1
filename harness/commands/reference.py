"""``caffe-harness reference``: run the pure-NumPy Caffe reference and write every ``"<layer>/<top>"`` blob to an npz.

Inputs are NCHW, as Caffe has them; inputs not given are seeded standard-normal arrays of the net's input shapes.
Without ``--weights`` the net gets seeded random weights (``harness.weights.random_weights``) and a notice on stderr.
The output is written atomically (a temporary file in the same folder, renamed into place), so an error never leaves a
half-written file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..errors import HarnessError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "reference",
        help="run the NumPy Caffe reference and save every layer's tops",
        description="Run Caffe's TEST-phase forward pass in NumPy and save every '<layer>/<top>' blob (NCHW) to an "
                    "npz file.",
    )
    p.add_argument("prototxt", metavar="PROTOTXT", help="the net definition (.prototxt)")
    p.add_argument("--weights", metavar="FILE", help=".caffemodel or .npz (keys '<layer>/<i>'); default: seeded "
                                                     "random weights")
    p.add_argument("--input", metavar="NAME=FILE.npy", action="append", default=[],
                   help="an NCHW array for the net input NAME (repeatable)")
    p.add_argument("--inputs", metavar="FILE.npz", help="NCHW arrays for the net inputs, keyed by blob name")
    p.add_argument("--input-shape", metavar="NAME=N,C,H,W", action="append", default=[],
                   help="NCHW shape of a net input (repeatable): overrides the prototxt's; needed for a train_val "
                        "net whose Data layer states none, unless --input/--inputs give the arrays")
    p.add_argument("--seed", type=int, default=0, help="seed for random inputs and weights (default 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                   help="arithmetic precision (default float64, the exact answer)")
    p.add_argument("--out", metavar="OUT.npz", required=True, help="where to write the blobs")
    return p


def _load_array(path: str, what: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise HarnessError(f"{what}: no such file {path!r}") from None
    except (ValueError, OSError, EOFError) as e:
        raise HarnessError(f"{what}: {path!r} is not a readable .npy array ({e})") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        arr.close()
        raise HarnessError(f"{what}: {path!r} is an .npz archive; pass it with --inputs")
    return arr


def _read_inputs(args) -> dict[str, np.ndarray]:
    given: dict[str, np.ndarray] = {}
    if args.inputs:
        try:
            with np.load(args.inputs, allow_pickle=False) as z:
                if not isinstance(z, np.lib.npyio.NpzFile):
                    raise HarnessError(f"--inputs: {args.inputs!r} is not an .npz archive")
                given.update({k: z[k] for k in z.files})
        except FileNotFoundError:
            raise HarnessError(f"--inputs: no such file {args.inputs!r}") from None
        except HarnessError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise HarnessError(f"--inputs: {args.inputs!r} is not a readable .npz archive ({e})") from None
    for spec in args.input:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise HarnessError(f"--input {spec!r}: expected NAME=FILE.npy")
        if name in given:
            raise HarnessError(f"--input {spec!r}: input {name!r} is given twice")
        given[name] = _load_array(path, f"--input {name}")
    return given


def _load(args, given: dict[str, np.ndarray]):
    from ..caffe import load_net
    from .info import parse_input_shapes

    shapes = parse_input_shapes(args.input_shape)
    if shapes:
        return load_net(args.prototxt, weights=args.weights, input_shapes=shapes)
    try:
        return load_net(args.prototxt, weights=args.weights)
    except HarnessError as first:
        if not given:
            raise
        # train_val nets: Data layers may only get their shape from the arrays the user gives.
        try:
            return load_net(args.prototxt, weights=args.weights,
                            input_shapes={k: tuple(v.shape) for k, v in given.items()})
        except HarnessError:
            raise first from None


def _random_weights(net, seed: int):
    try:
        from ..weights import random_weights
    except ModuleNotFoundError as e:
        if e.name == "harness.weights":
            raise HarnessError("no --weights given and random weights are not available in this installation "
                               "(harness.weights is missing); pass --weights FILE") from None
        raise
    return random_weights(net, seed)


def write_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` as an npz via a temporary file in the same folder and an atomic rename."""
    out = Path(path)
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise HarnessError(f"--out: folder {str(folder)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions a plain open() would
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def run(args) -> int:
    from ..reference import forward

    given = _read_inputs(args)
    net = _load(args, given)
    if not args.weights:
        net = _random_weights(net, args.seed)
        print(f"caffe-harness: notice: no --weights given; using seeded random weights (seed {args.seed})",
              file=sys.stderr)
    records = forward(net, given, dtype=np.dtype(args.dtype), seed=args.seed)
    try:
        write_npz_atomic(args.out, records)
    except OSError as e:
        raise HarnessError(f"--out: cannot write {args.out!r}: {e.strerror or e}") from None
    print(f"wrote {len(records)} blobs to {args.out}", file=sys.stderr)
    return 0
