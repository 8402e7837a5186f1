"""Benchmark: Caffe -> Keras conversion time on the full-size zoo nets (fixtures/zoo) with seeded random weights.

For each net (batch 1) it prints: Caffe layers, Keras layers, parameters, and the times of
  * ``random_weights``  seeded weights (harness.weights.random_weights, not part of the conversion),
  * ``convert``         harness.convert.convert (shape inference, building the Keras graph, setting every weight),
  * ``save``            harness.convert.save_model (.keras zip + embedded mapping),
  * ``load``            harness.convert.load_model (Keras safe mode),
  * ``keras rebuild``   the peer, measured in the same run: ``keras.Model.from_config(model.get_config())`` plus
                        ``set_weights`` -- what Keras itself needs to build the same graph and fill the same weights,
and the ratio convert / keras rebuild.  Target (issue 4): seconds, not minutes, for VGG16 / ResNet-50.
Times are the best of ``--repeat`` runs (TensorFlow imported and warmed up once before timing).

Usage: python benchmarks/bench_convert.py [--nets vgg16 resnet50 ...] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "fixtures" / "zoo"
DEFAULT_NETS = ["alexnet", "vgg16", "resnet50", "googlenet", "squeezenet11", "mobilenet_v1"]


def _best(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", nargs="*", default=DEFAULT_NETS)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT))

    t = time.perf_counter()
    import keras

    import harness.convert as hc
    from harness.caffe import load_net
    from harness.weights import random_weights

    print(f"import keras + harness.convert: {time.perf_counter() - t:.1f} s (backend {keras.backend.backend()}, "
          f"keras {keras.__version__})")
    # warm-up: the first Keras graph pays one-off costs
    hc.convert(random_weights(load_net(ZOO / "lenet.prototxt"), seed=0))

    head = (f"{'net':<14}{'caffe':>6}{'keras':>6}{'params':>12}{'weights s':>10}{'convert s':>10}{'save s':>8}"
            f"{'load s':>8}{'rebuild s':>10}{'conv/rebuild':>13}")
    print(head)
    print("-" * len(head))
    with tempfile.TemporaryDirectory() as d:
        for name in args.nets:
            net = load_net(ZOO / f"{name}.prototxt")
            t_w, wnet = _best(lambda: random_weights(net, seed=0), 1)
            t_c, model = _best(lambda: hc.convert(wnet), args.repeat)
            path = Path(d) / f"{name}.keras"
            t_s, _ = _best(lambda: hc.save_model(model, path), 1)
            t_l, _ = _best(lambda: hc.load_model(path), 1)
            weights = model.get_weights()
            cfg = model.get_config()

            def rebuild():
                m = keras.Model.from_config(cfg)
                m.set_weights(weights)
                return m

            t_r, _ = _best(rebuild, args.repeat)
            print(f"{name:<14}{len(net.layers):>6}{len(model.layers):>6}{model.count_params():>12,}{t_w:>10.2f}"
                  f"{t_c:>10.2f}{t_s:>8.2f}{t_l:>8.2f}{t_r:>10.2f}{t_c / t_r:>13.2f}")
            keras.backend.clear_session()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
