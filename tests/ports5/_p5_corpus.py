"""Shared steps of the ports5 tests and benchmarks/bench_ports5_margins.py: write a corpus net's files, convert it
with the CLI, run the API driver on a backend in a subprocess, run ``caffe-harness check`` and read its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from _p5_images import input_batch  # noqa: E402
from _p5_nets import make_weights, prototxt, save_weights, spec  # noqa: E402


def env(backend="tensorflow"):
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in e.get("PYTHONPATH", "").split(os.pathsep) if p])
    e.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", OPENBLAS_NUM_THREADS="1")
    return e


def cli(*args, timeout=600, backend="tensorflow"):
    """``python -m harness.cli ARGS``; returns the CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env(backend), cwd=ROOT)


def prepare(work, net, converted=False, tflite=False):
    """Write ``work/net/{net.prototxt, w.npz}`` (and the CLI's ``converted.keras`` / ``converted.tflite``)."""
    d = Path(work) / net
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "w.npz").exists():
        (d / "net.prototxt").write_text(prototxt(net))
        save_weights(make_weights(net), d / "w.npz")
    for flag, name, extra in ((converted, "converted.keras", ()), (tflite, "converted.tflite", ("--format", "tflite"))):
        if flag and not (d / name).exists():
            p = cli("convert", d / "net.prototxt", "--weights", d / "w.npz", *extra, "-o", d / name)
            assert p.returncode == 0, f"convert {net} {name}: rc {p.returncode}\n{p.stderr[-3000:]}"
    return d


def write_inputs(path, net, batch, n=2):
    x = input_batch(batch, spec(net)[0][1:], n)
    np.savez(path, data=x)
    return x


def run_driver(work, backend, nets, ports, first, batches, n, out, timeout=3000):
    """Run _p5_driver.py on ``backend`` in a subprocess; returns its records (JSON lines)."""
    plan = Path(out).with_suffix(".plan.json")
    plan.write_text(json.dumps(dict(work=str(work), nets=nets, ports=ports, first=first, batches=batches, n=n)))
    p = subprocess.run([sys.executable, str(HERE / "_p5_driver.py"), str(plan), str(out)], capture_output=True,
                       text=True, timeout=timeout, env=env(backend), cwd=ROOT)
    assert p.returncode == 0, f"driver on {backend}: rc {p.returncode}\n{p.stderr[-4000:]}"
    return [json.loads(line) for line in Path(out).read_text().splitlines() if line.strip()]


def check_json(work, net, batch, *extra, n=2, timeout=600, backend="tensorflow"):
    """``caffe-harness check`` on the net with the batch-th input batch and ``--json``: (rc, JSON, stderr)."""
    d = Path(work) / net
    tag = "_".join(str(a).replace("/", "_").lstrip("-") for a in extra[:2]) or "self"
    inputs = d / f"in_{batch}_{n}.npz"
    write_inputs(inputs, net, batch, n)
    report = d / f"report_{tag}_{batch}_{backend}.json"
    p = cli("check", d / "net.prototxt", "--weights", d / "w.npz", "--inputs", inputs, "--json", report, *extra,
            timeout=timeout, backend=backend)
    js = json.loads(report.read_text()) if report.exists() else None
    return p.returncode, js, p.stdout + p.stderr


def failing_layers(js):
    """[(caffe layer, mode, bound_ratio, worst index)] of every failing result of a report."""
    out = []
    for L in js["layers"]:
        for mode in ("chained", "isolated"):
            r = L.get(mode)
            if r is not None and not r.get("passed", True):
                out.append((L["caffe_layer"], mode, r.get("bound_ratio"), (r.get("worst") or {}).get("index")))
    return out


def describe(rec):
    """One line for a false alarm of a driver record."""
    fails = [(L["layer"], m, L[m].get("bound_ratio"), L[m].get("worst_index"))
             for L in rec["layers"] for m in ("chained", "isolated") if L[m] is not None and L[m]["passed"] is False]
    return (f"{rec['net']}/{rec['port']} on {rec['keras_backend']} batch {rec['batch']}: first divergence "
            f"{rec['first_divergence']}; failing {fails}")


def _numbers(res):
    if res is None:
        return None
    out = {k: v for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
           and ("ratio" in k or "margin" in k or k == "max_abs")}
    out["passed"] = res.get("passed")
    worst = res.get("worst") or {}
    out["worst_index"] = worst.get("index")
    return out


def summarise(js):
    """The per-layer numbers and the verdict of one report's JSON (also used by the tests on CLI reports)."""
    fd = js.get("first_divergence")
    first = None if fd is None else {"caffe_layer": fd.get("caffe_layer"), "mode": fd.get("mode"),
                                     "causes": [d.get("cause") for d in fd.get("diagnosis") or []]}
    layers = [{"layer": L["caffe_layer"], "type": L["caffe_type"], "keras": L.get("keras_layer"),
               "chained": _numbers(L.get("chained")), "isolated": _numbers(L.get("isolated"))}
              for L in js["layers"]]
    return {"equivalent": js["equivalent"], "backend": js.get("backend"), "first_divergence": first,
            "divergences": [d.get("caffe_layer") for d in js.get("divergences") or []], "layers": layers}
