"""Benchmark: ``compare`` (what ``caffe-harness check`` runs) on the full-size zoo nets, per phase, with the peer.

For each net (batch 1, seeded random weights and inputs, the harness's own conversion) it prints the matched pairs,
the time of each phase of :func:`harness.compare.compare` in mode ``both``:

  * ``reference``   the float64 NumPy reference forward (every blob),
  * ``chained``     the Keras model end to end, every matched output (eager, one pass),
  * ``isolated``    every matched Keras layer fed the reference's values (eager, one call per layer),
  * ``compare``     derived bounds (one float32 magnitude pass per accumulating layer), statistics, and the reference
                    re-run on the Keras inputs for layers whose chained error exceeds their bound,
  * ``total``       the whole call (conversion excluded, printed separately),

and, as the peer measured in the same run, ``keras predict``: one plain ``model.predict_on_batch`` of the converted
model (what a user pays to run the model once); ``ratio`` = total / keras predict.  The worst isolated element's share
of its bound (``bound use``) is printed as the tolerance's margin on that net.  Target (issue 5): ResNet-50 at
224x224, both modes, about 20 s on 2 cores.

Usage: python benchmarks/bench_compare.py [--nets resnet50 alexnet ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "fixtures" / "zoo"
DEFAULT_NETS = ["lenet", "alexnet", "resnet50", "googlenet", "squeezenet11", "mobilenet_v1"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", nargs="+", default=DEFAULT_NETS)
    args = ap.parse_args(argv)
    import numpy as np

    from harness.caffe import load_net
    from harness.compare import compare
    from harness.convert import convert
    from harness.weights import random_weights

    rows = []
    for name in args.nets:
        net = random_weights(load_net(ZOO / f"{name}.prototxt"), 0)
        t = time.perf_counter()
        model = convert(net)
        t_conv = time.perf_counter() - t
        x = {k: np.random.default_rng(0).standard_normal(s).astype(np.float32) for k, s in net.inputs.items()}
        feed = [v.transpose(0, 2, 3, 1) if v.ndim == 4 else v for v in x.values()]
        model.predict_on_batch(feed[0] if len(feed) == 1 else feed)  # warm up
        t = time.perf_counter()
        model.predict_on_batch(feed[0] if len(feed) == 1 else feed)
        t_pred = time.perf_counter() - t
        rep = compare(net, model, x, diagnose=False)
        tm = rep.timings
        use = max(lr.isolated.bound_ratio for lr in rep.layers)
        rows.append((name, len(rep.layers), "yes" if rep else "NO", t_conv, tm.get("reference", 0),
                     tm.get("keras_chained", 0), tm.get("keras_isolated", 0), tm.get("compare", 0), tm["total"],
                     t_pred, tm["total"] / t_pred, use))
    head = ("net", "pairs", "equiv", "convert", "reference", "chained", "isolated", "compare", "total",
            "keras predict", "ratio", "bound use")
    print(" | ".join(f"{h:>12}" for h in head))
    for r in rows:
        print(" | ".join(f"{v:>12}" if isinstance(v, (str, int)) else f"{v:>12.3g}" for v in r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
