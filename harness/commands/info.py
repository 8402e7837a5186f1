"""``caffe-harness info PROTOTXT [--weights FILE] [--json] [--input-shape NAME=N,C,H,W ...]``

Loads the net (and its weights, checking every blob's shape), infers every blob's shape with Caffe's rules
(:mod:`harness.shapes`) and prints one row per layer: name, type, ``bottoms -> tops``, each top's shape, the parameter
(weight blob) shapes, multiply-adds and the activation memory of its tops (float32), then totals.  Nothing is
allocated, so a net too large to run still prints its shapes.  TensorFlow/Keras are never imported.

``--input-shape data=1,3,224,224`` gives (or overrides) the NCHW shape of a net input; train_val prototxts whose Data
layers state no shape need it.  It may be repeated, one per input.

JSON output (``--json``): one object, a public interface (shapes are lists of ints in Caffe's NCHW order)::

    {
      "name": "CaffeNet",                         # the net's name (prototxt `name`, else the file stem)
      "inputs": {"data": [10, 3, 227, 227]},      # net input blob -> shape, in declaration order
      "outputs": ["prob"],                        # blobs no layer consumes, in prototxt order
      "layers": [                                 # execution order (V2 form: V0/V1 nets upgraded, TEST phase)
        {"name": "conv1", "type": "Convolution",  # type as written (after upgrade), e.g. "DepthwiseConvolution"
         "bottoms": ["data"], "tops": ["conv1"],
         "top_shapes": [[10, 96, 55, 55]],        # one per top
         "param_shapes": [[96, 3, 11, 11], [96]], # the weight blobs Caffe expects, in blob order ([] if none)
         "macs": 1054135200},                     # multiply-adds (see below)
        ...
      ],
      "totals": {"params": 60965224,              # values in all weight blobs (BatchNorm statistics included)
                 "macs": 724406816,
                 "activation_bytes": 123456},     # float32 bytes of every layer's tops (in-place tops counted
                                                  # again: the reference records one array per layer/top)
      "memory": {                                 # peak memory ESTIMATES, made before anything runs (bytes)
        "estimate": true,
        "check": {"batch": 10, "peak_bytes": ..., # `check` of the net at its input shapes (every record held)
                  "records_bytes": ..., "live_bytes": ...},
        "dataset_batch": {"batch": 16, ...}       # one `check --dataset --mode chained` batch of --batch samples
      }                                           # (judged layer by layer: grows with live_bytes, the largest
    }                                             # live set of the float64 reference, not with records_bytes)

``memory`` (:func:`harness.compare.dataset.memory.estimate`): the process and the weights plus a multiple of the
activations, fitted to peak RSS measured by ``benchmarks/bench_dataset.py``; a dataset batch whose estimate does not
fit the memory available is split into smaller batches by the run (or refused in one line when one sample does not
fit).  ``--batch B`` sizes the dataset batch (default 16, as ``check --dataset``).

``macs`` counts multiply-accumulates of Convolution/depthwise (``N*C_out*H_out*W_out*C_in/group*kh*kw``),
Deconvolution (``N*C_in*H*W*C_out/group*kh*kw``), InnerProduct (``M*K*N``) and one multiply per output of Scale;
every other layer reports 0.  DetectionOutput's row count is data dependent: its top shape is the upper bound
``(1, 1, N*keep_top_k, 7)`` (or ``N*num_priors*classes`` without keep_top_k).
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import HarnessError
from ._io import parse_input_shapes
from ._options import add_input_shape, add_prototxt, add_weights


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "info",
        help="print every layer's shapes, parameters and multiply-adds (no TensorFlow)",
        description="Print one row per layer (name, type, bottoms -> tops, top shapes, parameter shapes, "
                    "multiply-adds, activation memory) and totals, from Caffe's own shape rules.",
    )
    add_prototxt(p, "the net definition (.prototxt; V0, V1 or V2)")
    add_weights(p, ".caffemodel or .npz (keys '<layer>/<i>'); blob shapes are checked")
    p.add_argument("--json", action="store_true", help="print one JSON object (documented in harness.commands.info)")
    add_input_shape(p)
    p.add_argument("--batch", type=int, default=16, metavar="B",
                   help="samples of the dataset batch whose peak memory is estimated (default 16)")
    return p


def memory_dict(net, batch: int) -> dict:
    """The ``memory`` object: peak estimates of a check and of a dataset batch of ``batch`` samples."""
    from ..compare.dataset.memory import estimate_net

    def part(e, b):
        return {"batch": b, "peak_bytes": e.peak, "records_bytes": e.records, "live_bytes": e.live,
                "weights_bytes": e.weights}

    n = next(iter(net.inputs.values()), (1,))[0] if net.inputs else 1
    return {"estimate": True, "check": part(estimate_net(net, None, streaming=False), int(n)),
            "dataset_batch": part(estimate_net(net, batch, streaming=True), batch)}


def memory_lines(mem: dict) -> list[str]:
    c, d = mem["check"], mem["dataset_batch"]
    return [f"estimated peak memory (before running, from the shapes): check {_bytes(c['peak_bytes'])} "
            f"(batch {c['batch']}, every record held); dataset batch of {d['batch']} {_bytes(d['peak_bytes'])} "
            f"(judged layer by layer: largest live set {_bytes(d['live_bytes'])} of "
            f"{_bytes(d['records_bytes'])} records, float64)"]


def info_dict(net_shapes) -> dict:
    """The public JSON object for a :class:`~harness.shapes.NetShapes`."""
    net = net_shapes.net
    return {
        "name": net.name,
        "inputs": {k: [int(d) for d in v] for k, v in net.inputs.items()},
        "outputs": list(net.outputs),
        "layers": [
            {
                "name": ls.name,
                "type": ls.type,
                "bottoms": list(ls.bottoms),
                "tops": list(ls.tops),
                "top_shapes": [[int(d) for d in s] for s in ls.top_shapes],
                "param_shapes": [[int(d) for d in s] for s in ls.param_shapes],
                "macs": int(ls.macs),
            }
            for ls in net_shapes.layers
        ],
        "totals": {
            "params": int(net_shapes.param_count),
            "macs": int(net_shapes.macs),
            "activation_bytes": int(net_shapes.activation_bytes(4)),
        },
    }


def _shape(s) -> str:
    return "x".join(str(int(d)) for d in s) if len(s) else "scalar"


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _count(n: int) -> str:
    return f"{n:,}"


def format_table(net_shapes) -> str:
    """The human-readable table (one row per layer, then totals)."""
    net = net_shapes.net
    head = ("layer", "type", "bottoms -> tops", "top shapes", "params", "MACs", "memory")
    rows = []
    for ls in net_shapes.layers:
        tops = ", ".join(_shape(s) for s in ls.top_shapes) or "-"
        if ls.data_dependent:
            tops += " (max)"
        rows.append((
            ls.name,
            ls.type,
            f"{', '.join(ls.bottoms) or '-'} -> {', '.join(ls.tops) or '-'}",
            tops,
            ", ".join(_shape(s) for s in ls.param_shapes) or "-",
            _count(ls.macs) if ls.macs else "-",
            _bytes(ls.top_bytes) if ls.tops else "-",
        ))
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) if rows else len(head[i]) for i in range(len(head))]
    right = {5, 6}

    def line(r):
        return "  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)).rstrip()

    out = [f"net {net.name!r} ({net.source})",
           "inputs: " + ", ".join(f"{k} {_shape(v)}" for k, v in net.inputs.items()),
           "outputs: " + ", ".join(net.outputs),
           "", line(head), line(tuple("-" * w for w in widths))]
    out += [line(r) for r in rows]
    out += ["",
            f"total parameters: {_count(net_shapes.param_count)}",
            f"total multiply-adds: {_count(net_shapes.macs)}",
            f"activation memory (float32, every layer's tops): {_bytes(net_shapes.activation_bytes(4))} "
            f"(float64: {_bytes(net_shapes.activation_bytes(8))})"]
    if not net.has_weights:
        out.append("weights: none given (shapes are what the layers expect)")
    return "\n".join(out)


def run(args) -> int:
    from ..caffe import load_net
    from ..shapes import check_blob_shapes, infer_shapes, nan_by_construction

    input_shapes = parse_input_shapes(args.input_shape)
    net = load_net(args.prototxt, weights=args.weights, input_shapes=input_shapes or None, check=False)
    ns = infer_shapes(net)
    if net.has_weights:
        check_blob_shapes(net, ns, weights_source=args.weights)
    for line in nan_by_construction(ns):
        print(f"caffe-harness: warning: {line}", file=sys.stderr)
    if args.batch <= 0:
        raise HarnessError(f"--batch {args.batch}: must be a positive number of samples")
    mem = memory_dict(net, args.batch)
    if args.json:
        sys.stdout.write(json.dumps(dict(info_dict(ns), memory=mem)) + "\n")
    else:
        sys.stdout.write(format_table(ns) + "\n" + "\n".join(memory_lines(mem)) + "\n")
    return 0
