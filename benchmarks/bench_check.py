"""Benchmark: what ``caffe-harness check`` costs against the floor of what it must do, measured in the same run.

For each net (full size, batch 1, seeded weights and inputs):

* ``check`` wall: ``caffe-harness check NET --json R`` in a fresh process (start-up included), its stage table from
  the report's ``timings`` (load, keras_model = conversion or loading, reference, match, keras_chained,
  keras_isolated, compare, diagnose) and its peak RSS (the child's VmHWM polled every 10 ms), and whether TensorFlow
  printed a warning (``retracing`` or any ``W0000``/``WARNING`` line) on the terminal;
* the **floor**: what any equivalence check has to pay, each part measured in a fresh process or after a warm-up:
  Python + ``import tensorflow, keras`` (a fresh process), one float32 reference forward, and two forwards of the
  converted Keras model (``predict_on_batch``, after one warm-up call);
* ``ratio`` = check wall / floor (target: at most 1.5).

``--port`` also checks a user's port: the converted model with every layer renamed (so nothing is matched by the
saved mapping or by name: matching is positional, as for a hand-written port), saved as ``.keras``, checked with
``--keras``; its peak RSS against the self-converted check (target: at most 1.2x).

Usage: python benchmarks/bench_check.py [--nets resnet50 vgg16] [--port vgg16]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from bench_zoo import _vm_hwm  # noqa: E402  (the child's VmHWM, polled: the one reader of peak RSS)
ZOO = ROOT / "fixtures" / "zoo"
STAGES = ("load", "keras_model", "reference", "match", "keras_chained", "keras_isolated", "compare", "diagnose")


def run_child(argv: list[str], env: dict | None = None, cwd: Path | None = None) -> dict:
    """A fresh process: wall seconds, exit code, peak RSS (VmHWM polled every 10 ms), stderr text."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=cwd or ROOT, env=env)
        hwm = 0
        while True:
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            hwm = max(hwm, _vm_hwm(proc.pid) or 0)
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        err.seek(0)
        return {"wall": wall, "rc": os.waitstatus_to_exitcode(status), "rss": hwm,
                "stderr": err.read().decode(errors="replace")}


def floor(name: str) -> dict:
    """The floor's three parts for one net."""
    imp = run_child([sys.executable, "-c", "import tensorflow, keras"])["wall"]
    import numpy as np

    from harness.caffe import load_net
    from harness.convert import convert
    from harness.reference import forward
    from harness.weights import random_weights

    net = random_weights(load_net(ZOO / f"{name}.prototxt", input_shapes=_batch1(name)), 0)
    x = {k: np.random.default_rng(0).standard_normal(s).astype(np.float32) for k, s in net.inputs.items()}
    t = time.perf_counter()
    forward(net, x, np.float32)
    ref = time.perf_counter() - t
    model = convert(net)
    feed = [v.transpose(0, 2, 3, 1) if v.ndim == 4 else v for v in x.values()]
    feed = feed[0] if len(feed) == 1 else feed
    model.predict_on_batch(feed)
    t = time.perf_counter()
    model.predict_on_batch(feed)
    model.predict_on_batch(feed)
    keras2 = time.perf_counter() - t
    return {"import": imp, "reference_f32": ref, "keras_x2": keras2, "floor": imp + ref + keras2}


def _batch1(name: str) -> dict | None:
    from harness.caffe import load_net

    net = load_net(ZOO / f"{name}.prototxt")
    return {k: (1, *s[1:]) for k, s in net.inputs.items()}


def _shape_args(name: str) -> list[str]:
    return [a for k, s in _batch1(name).items() for a in ("--input-shape", f"{k}={','.join(map(str, s))}")]


def check(name: str, keras_file: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory() as d:
        rep = Path(d) / "r.json"
        argv = [sys.executable, "-m", "harness.cli", "check", str(ZOO / f"{name}.prototxt"), "--json", str(rep),
                "--no-table", *_shape_args(name)]
        if keras_file is not None:
            argv += ["--keras", str(keras_file)]
        r = run_child(argv)
        r["timings"] = json.loads(rep.read_text())["timings"] if rep.exists() else {}
    r["warnings"] = [ln for ln in r["stderr"].splitlines() if "retrac" in ln or ln.startswith(("W0000", "WARNING"))]
    return r


def user_port(name: str, d: Path) -> Path:
    """The converted model with every layer renamed and no saved mapping: matched by position, like a hand port."""
    import keras

    from harness.caffe import load_net
    from harness.convert import convert
    from harness.weights import random_weights

    net = random_weights(load_net(ZOO / f"{name}.prototxt", input_shapes=_batch1(name)), 0)
    model = convert(net)
    names = {lay.name: f"port_{i}" for i, lay in enumerate(model.layers)}

    def rename(layer):
        cfg = layer.get_config()
        cfg["name"] = names[layer.name]
        return layer.__class__.from_config(cfg)

    port = keras.models.clone_model(model, clone_function=rename)
    port.set_weights(model.get_weights())
    path = d / f"{name}_port.keras"
    port.save(path)  # plain Keras save: no harness mapping inside
    return path


def _row(label: str, r: dict, fl: dict | None) -> str:
    tm = r["timings"]
    st = " ".join(f"{s}={tm.get(s, 0):.2f}" for s in STAGES if s in tm)
    ratio = f"{r['wall'] / fl['floor']:.2f}" if fl else "-"
    return (f"| {label} | {r['wall']:.1f} | {fl['floor']:.1f} | {ratio} | {r['rss'] / 2**30:.2f} | "
            f"{len(r['warnings'])} | rc {r['rc']}; {st} |" if fl else
            f"| {label} | {r['wall']:.1f} | - | - | {r['rss'] / 2**30:.2f} | {len(r['warnings'])} | rc {r['rc']}; {st} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", nargs="*", default=["resnet50"])
    ap.add_argument("--port", nargs="*", default=["vgg16"])
    args = ap.parse_args(argv)
    print("| check | wall s | floor s | ratio | peak RSS GiB | TF warnings | stages (s) |")
    print("|---|---|---|---|---|---|---|")
    for name in args.nets:
        fl = floor(name)
        r = check(name)
        print(_row(name, r, fl))
        print(f"|   floor parts | import {fl['import']:.2f} | reference f32 {fl['reference_f32']:.2f} | "
              f"2 keras forwards {fl['keras_x2']:.2f} | | | |", flush=True)
    for name in args.port:
        with tempfile.TemporaryDirectory() as d:
            path = user_port(name, Path(d))
            own = check(name)
            port = check(name, path)
        print(_row(f"{name} self-converted", own, None))
        print(_row(f"{name} user port (.keras, positional)", port, None))
        print(f"|   port / self-converted peak RSS | {port['rss'] / max(own['rss'], 1):.2f} | | | | | |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
