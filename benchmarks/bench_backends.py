"""Benchmark: forward time of the converted ResNet-50 (fixtures/zoo/resnet50.prototxt, batch 1, 3x224x224, seeded
weights) on each installed Keras 3 backend, and the ratio against TensorFlow measured in the same run.

Each backend runs in its own fresh process (Keras picks its backend once per process): convert, one warm-up, then
``--repeats`` timed forwards of each kind, medians reported:

* ``predict_on_batch``: each backend's own inference path -- TensorFlow a ``tf.function`` (no XLA on CPU), JAX a
  ``jax.jit`` program (Keras's ``jit_compile="auto"``), torch eager under ``no_grad``;
* ``eager call``: ``model(x, training=False)``, op by op (what the comparator's evaluator does, layer by layer).

Threads: ``--threads`` (default 1) per engine -- TensorFlow intra/inter-op pools, ``torch.set_num_threads``, XLA's
CPU Eigen pool off (``--xla_cpu_multi_thread_eigen=false``) -- so a shared machine measures the kernels, not the
scheduler.  The output of every backend is also compared with TensorFlow's (max |difference| / max |TF|).

Usage: python benchmarks/bench_backends.py [--repeats 10] [--threads 1] [--backends tensorflow jax torch]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NET = ROOT / "fixtures" / "zoo" / "resnet50.prototxt"

CHILD = r"""
import json, os, statistics, sys, time
import numpy as np
threads, repeats, out_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
import keras
backend = keras.backend.backend()
if backend == "tensorflow":
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
elif backend == "torch":
    import torch
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
from harness.caffe import load_net
from harness.convert import convert
from harness.weights import random_weights
net = random_weights(load_net(sys.argv[4], input_shapes={"data": (1, 3, 224, 224)}), seed=0)
t = time.perf_counter(); model = convert(net); t_convert = time.perf_counter() - t
x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype(np.float32)
res = {"backend": backend, "convert": t_convert}
def timed(fn):
    t = time.perf_counter(); y = fn(); first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); y = fn(); times.append(time.perf_counter() - t)
    return first, statistics.median(times), y
from harness.backends import to_numpy
first, med, y = timed(lambda: model.predict_on_batch(x))
res.update(predict_first=first, predict=med)
np.save(out_path + ".npy", np.asarray(to_numpy(y["prob"]), np.float64))
if backend == "torch":
    import torch
    with torch.no_grad():
        _, eager, _ = timed(lambda: model(x, training=False))
else:
    _, eager, _ = timed(lambda: model(x, training=False))
res["eager"] = eager
open(out_path, "w").write(json.dumps(res))
"""


def run_backend(backend: str, threads: int, repeats: int, d: Path) -> dict | str:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    if backend == "jax" and threads == 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                            "intra_op_parallelism_threads=1").strip()
    out = d / f"{backend}.json"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(repeats), str(out), str(NET)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    if proc.returncode != 0 or not out.is_file():
        return f"failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    args = ap.parse_args(argv)
    import numpy as np

    rows = {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for b in args.backends:
            if importlib.util.find_spec(b) is None:
                rows[b] = "not installed"
                continue
            rows[b] = run_backend(b, args.threads, args.repeats, d)
            if isinstance(rows[b], dict):
                rows[b]["prob"] = np.load(d / f"{b}.json.npy")
    tf = rows.get("tensorflow") if isinstance(rows.get("tensorflow"), dict) else None
    print(f"ResNet-50 1x3x224x224, batch 1, {args.threads} thread(s) per engine, median of {args.repeats} "
          f"(seconds); ratio = backend / TensorFlow, same run")
    print("| backend | predict_on_batch | ratio | eager call | ratio | first predict (incl. tracing) | convert | "
          "prob vs TF |")
    print("|---|---|---|---|---|---|---|---|")
    for b, r in rows.items():
        if not isinstance(r, dict):
            print(f"| {b} | {r} | | | | | | |")
            continue
        ratio = lambda k: f"{r[k] / tf[k]:.2f}x" if tf else "n/a"  # noqa: E731
        diff = (f"{float(np.max(np.abs(r['prob'] - tf['prob'])) / np.max(np.abs(tf['prob']))):.1e}" if tf else "n/a")
        print(f"| {b} | {r['predict']:.3f} | {ratio('predict')} | {r['eager']:.3f} | {ratio('eager')} | "
              f"{r['predict_first']:.2f} | {r['convert']:.1f} | {diff} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
