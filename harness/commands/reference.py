"""``caffe-harness reference``: run the pure-NumPy Caffe reference and write every ``"<layer>/<top>"`` blob to an npz.

Inputs are NCHW, as Caffe has them; inputs not given are seeded standard-normal arrays of the net's input shapes.
Without ``--weights`` the net gets seeded random weights (``harness.weights.random_weights``) and a notice on stderr.
The output is written atomically (a temporary file in the same folder, renamed into place), so an error never leaves a
half-written file.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ._io import load_net, read_inputs, seeded_weights, write_npz
from ._options import INPUT_SHAPE_HELP, add_input, add_input_shape, add_inputs, add_prototxt, add_seed, add_weights


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "reference",
        help="run the NumPy Caffe reference and save every layer's tops",
        description="Run Caffe's TEST-phase forward pass in NumPy and save every '<layer>/<top>' blob (NCHW) to an "
                    "npz file.",
    )
    add_prototxt(p, "the net definition (.prototxt)", metavar="PROTOTXT")
    add_weights(p, ".caffemodel or .npz (keys '<layer>/<i>'); default: seeded random weights")
    add_input(p, "an NCHW array for the net input NAME (repeatable)")
    add_inputs(p, "NCHW arrays for the net inputs, keyed by blob name")
    add_input_shape(p, INPUT_SHAPE_HELP)
    add_seed(p, "seed for random inputs and weights (default 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                   help="arithmetic precision (default float64, the exact answer)")
    p.add_argument("--out", metavar="OUT.npz", required=True, help="where to write the blobs")
    return p


def run(args) -> int:
    from ..reference import forward

    given = read_inputs(args.inputs, args.input)
    net = load_net(args, given)
    if not args.weights:
        net = seeded_weights(net, args.seed)
    records = forward(net, given, dtype=np.dtype(args.dtype), seed=args.seed)
    write_npz(args.out, records)
    print(f"wrote {len(records)} blobs to {args.out}", file=sys.stderr)
    return 0
