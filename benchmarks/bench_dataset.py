"""Benchmark: dataset throughput of ``check --dataset --mode chained`` on ResNet-50 (224x224, batch 16, seeded
weights, converted Keras model), against the floor measured in the same run; and Dask scale-out.

* **floor** (this process, default threads): one float32 reference forward of a batch plus one Keras forward of the
  same batch (``predict_on_batch`` after a warm-up call) -> ``batch / (t_ref32 + t_keras)`` samples/s;
* **check, one process**: ``caffe-harness check NET --dataset D --batch 16 --mode chained --json R`` in a fresh
  process; its throughput is the report's ``samples_per_s`` (samples / the batches' wall time: process start-up and
  loading the net and the model excluded).  Target: at least 0.5x the floor;
* **scale-out**: a ``LocalCluster`` of one single-threaded worker, then one of two (each worker pinned to one
  BLAS / TensorFlow thread, harness.compare.dataset.scaleout), warmed up (every worker loads the net and the model once, on
  a warm-up dataset of one batch per worker), then the same dataset through ``--scheduler``-style submission
  (``run_dataset(..., scheduler=address)``): samples / wall.  Target: two workers at least 1.7x one.

* **memory** (issue 22): ``--nets resnet50 vgg16 --batches 4 8`` runs the one-process check of each net at each
  batch size and prints its peak RSS (the child's VmHWM polled every 10 ms) beside the float64 size of all the
  records of a batch (``caffe-harness info``'s activation total) and the largest live set
  (:func:`harness.compare.dataset.memory.live_activation_bytes`): a streaming judge grows with the second, not the first.
  ``--baseline-tree DIR`` runs the same checks from another checkout (``git worktree add DIR COMMIT``) in the same
  run, so before / after ratios are measured under the same load.  ``--threads N``: the floor and the check both
  with N BLAS / TensorFlow threads (``check --threads``).

Usage: python benchmarks/bench_dataset.py [--samples 64] [--batch 16] [--size 224]
       python benchmarks/bench_dataset.py --skip-scale-out --nets resnet50 vgg16 --batches 4 8 --samples 16
           --threads 1 [--baseline-tree /tmp/base]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
ZOO = ROOT / "fixtures" / "zoo"


def _prototxt(d: Path, size: int, name: str = "resnet50") -> Path:
    text = (ZOO / f"{name}.prototxt").read_text()
    if size != 224:
        text = text.replace("dim: 224 dim: 224", f"dim: {size} dim: {size}")
    p = d / f"{name}.prototxt"
    p.write_text(text)
    return p


def floor(prototxt: Path, batch: int, size: int) -> dict:
    """The floor's two parts for one batch (this process): a float32 reference forward and a Keras forward."""
    from harness.caffe import load_net
    from harness.convert import convert
    from harness.reference import forward
    from harness.weights import random_weights

    net = random_weights(load_net(prototxt, input_shapes={"data": (batch, 3, size, size)}), 0)
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    t = time.perf_counter()
    forward(net, {"data": x}, np.float32)
    ref = time.perf_counter() - t
    model = convert(net)
    feed = x.transpose(0, 2, 3, 1)
    model.predict_on_batch(feed)
    t = time.perf_counter()
    model.predict_on_batch(feed)
    keras = time.perf_counter() - t
    return {"reference_f32": ref, "keras": keras, "samples_per_s": batch / (ref + keras)}


def check_cli(prototxt: Path, ds: Path, batch: int, d: Path, threads: int | None = None,
              tree: Path | None = None) -> dict:
    """One ``check --dataset`` in a fresh process (``tree``: run from that checkout): wall, samples/s, peak RSS."""
    from bench_check import run_child

    rep = d / "r.json"
    rep.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "harness.cli", "check", str(prototxt), "--dataset", str(ds), "--batch", str(batch),
            "--mode", "chained", "--json", str(rep), "--no-table"] + (["--threads", str(threads)] if threads else [])
    env = dict(os.environ, PYTHONPATH=str(tree or ROOT))
    r = run_child(argv, env=env, cwd=tree or ROOT)
    out = json.loads(rep.read_text()) if rep.exists() else {}
    return {"rc": r["rc"], "wall": r["wall"], "rss": r["rss"], "samples_per_s": out.get("samples_per_s"),
            "load_seconds": out.get("load_seconds"), "equivalent": out.get("equivalent"),
            "stderr": r["stderr"][-2000:]}


def memory_sizes(prototxt: Path, batch: int) -> tuple[int, int]:
    """(float64 bytes of every record of a batch, float64 bytes of the largest live set) from the shape rules."""
    from harness.caffe import load_net
    from harness.compare.dataset.memory import live_activation_bytes
    from harness.shapes import infer_shapes

    net = load_net(prototxt)
    ns = infer_shapes(load_net(prototxt, input_shapes={k: (batch, *v[1:]) for k, v in net.inputs.items()}))
    return ns.activation_bytes(8), live_activation_bytes(ns, 8)


def memory_table(a, d: Path) -> None:
    """Peak RSS of the one-process check per net and batch size (this tree, and ``--baseline-tree`` if given)."""
    trees = [("after", None)] + ([("before", Path(a.baseline_tree))] if a.baseline_tree else [])
    print("| net | batch | tree | samples/s | floor samples/s | ratio | peak RSS GiB | records f64 GiB | "
          "live set f64 GiB | equivalent | load 1m |", flush=True)
    print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    rng = np.random.default_rng(1)
    for name in a.nets:
        proto = _prototxt(d, a.size, name)
        ds = d / f"{name}.npz"
        np.savez(ds, data=rng.standard_normal((a.samples, 3, a.size, a.size)).astype(np.float32))
        for b in a.batches:
            fl = floor(proto, b, a.size)
            allb, live = memory_sizes(proto, b)
            for label, tree in trees:
                ck = check_cli(proto, ds, b, d, a.threads, tree)
                sps = ck["samples_per_s"] or 0.0
                print(f"| {name} | {b} | {label} | {sps:.3f} | {fl['samples_per_s']:.3f} | "
                      f"{sps / fl['samples_per_s']:.2f} | {ck['rss'] / 2**30:.2f} | {allb / 2**30:.2f} | "
                      f"{live / 2**30:.2f} | {ck['equivalent']} (rc {ck['rc']}) | {os.getloadavg()[0]:.1f} |",
                      flush=True)


def scale_out(prototxt: Path, ds: Path, warm: Path, batch: int, workers: int) -> dict:
    import logging

    import dask
    from distributed import LocalCluster

    from harness.compare.dataset.run import run_dataset
    from harness.compare.dataset.sources import open_dataset
    from harness.compare.dataset.scaleout import ONE_THREAD
    from harness.compare.dataset.batch import Check

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}, **ONE_THREAD)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR, env=dict(ONE_THREAD))
    try:
        def run(path: Path) -> tuple[float, object]:
            with open_dataset(str(path), {"data": None}) as dset:
                check = Check(prototxt=str(prototxt), mode="chained", batch=batch,
                              input_shapes=tuple(dset.shapes().items()))
                t = time.perf_counter()
                rep = run_dataset(check, dset, scheduler=cluster.scheduler_address, diagnose=False)
                return time.perf_counter() - t, rep

        run(warm)  # every worker loads the net and the model
        wall, rep = run(ds)
    finally:
        cluster.close()
    return {"workers": workers, "wall": wall, "samples": rep.agg.samples, "samples_per_s": rep.agg.samples / wall,
            "equivalent": rep.agg.equivalent, "cpu_per_sample": rep.agg.cpu_seconds / max(1, rep.agg.samples)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--scale-samples", type=int, default=None, help="samples of the scale-out runs (default --samples)")
    ap.add_argument("--scale-batch", type=int, default=None, help="batch of the scale-out runs (default --batch)")
    ap.add_argument("--skip-scale-out", action="store_true")
    ap.add_argument("--nets", nargs="*", default=None, help="memory table: these zoo nets (resnet50, vgg16)")
    ap.add_argument("--batches", nargs="*", type=int, default=[4, 8], help="memory table: these batch sizes")
    ap.add_argument("--threads", type=int, default=None, help="BLAS / TensorFlow threads of the floor and the check")
    ap.add_argument("--baseline-tree", default=None, help="memory table: also run the check from this checkout")
    a = ap.parse_args(argv)
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs", flush=True)
    if a.threads:
        from harness.threads import apply_threads, plan_threads

        apply_threads(plan_threads(a.threads))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        if a.nets:
            memory_table(a, d)
            end = os.getloadavg()
            print(f"load average at the end: {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}")
            return 0
        proto = _prototxt(d, a.size)
        rng = np.random.default_rng(1)
        ds, warm = d / "ds.npz", d / "warm.npz"
        np.savez(ds, data=rng.standard_normal((a.samples, 3, a.size, a.size)).astype(np.float32))
        np.savez(warm, data=rng.standard_normal((2 * a.batch, 3, a.size, a.size)).astype(np.float32))
        fl = floor(proto, a.batch, a.size)
        print(f"floor (f32 reference {fl['reference_f32']:.2f} s + Keras {fl['keras']:.2f} s per batch of "
              f"{a.batch}): {fl['samples_per_s']:.2f} samples/s", flush=True)
        ck = check_cli(proto, ds, a.batch, d)
        if ck["rc"] not in (0, 1) or ck["samples_per_s"] is None:
            print(f"check failed (exit {ck['rc']}): {ck['stderr']}")
            return 1
        ratio = ck["samples_per_s"] / fl["samples_per_s"]
        print(f"check --mode chained, one process: {ck['samples_per_s']:.2f} samples/s ({a.samples} samples; "
              f"wall {ck['wall']:.1f} s incl. start-up and {ck['load_seconds']:.1f} s loading; equivalent "
              f"{ck['equivalent']}) -> {ratio:.2f}x the floor (target >= 0.5)", flush=True)
        rows = []
        if not a.skip_scale_out:
            sb, sn = a.scale_batch or a.batch, a.scale_samples or a.samples
            if (sb, sn) != (a.batch, a.samples):
                ds, warm = d / "ds2.npz", d / "warm2.npz"
                np.savez(ds, data=rng.standard_normal((sn, 3, a.size, a.size)).astype(np.float32))
                np.savez(warm, data=rng.standard_normal((2 * sb, 3, a.size, a.size)).astype(np.float32))
            for w in (1, 2):
                rows.append(scale_out(proto, ds, warm, sb, w))
                r = rows[-1]
                print(f"Dask, {w} single-threaded worker(s): {r['samples_per_s']:.3f} samples/s "
                      f"({r['samples']} samples, batch {sb}, {r['wall']:.1f} s, warm workers; worker CPU "
                      f"{r['cpu_per_sample']:.2f} s per sample)", flush=True)
            print(f"scale-out: 2 workers / 1 worker = {rows[1]['samples_per_s'] / rows[0]['samples_per_s']:.2f}x "
                  f"(target >= 1.7); CPU per sample 2 workers / 1 = "
                  f"{rows[1]['cpu_per_sample'] / rows[0]['cpu_per_sample']:.2f} (1.0: no overhead from the split)")
    end = os.getloadavg()
    print(f"load average at the end: {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
