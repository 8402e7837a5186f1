"""Margin distribution of correct ports of trained-like Caffe nets (the tests/ports5 corpus, issue 25).

Runs the corpus -- 3 nets (res7: 7x7/2 stem, alex11: 11x11/4, vgg3: 3x3) x 3 ports (two hand-written Keras 3 ports,
the CLI's converted model) on each Keras backend through ``harness.compare``, plus the LiteRT file of each net
through ``caffe-harness check --tflite`` -- on Caffe-scale photo crops, and prints per layer type (and backend) the
worst and the median of every ratio the report's JSON gives per result (``bound_ratio``, and any other ``*ratio*`` /
``*margin*`` field a newer harness adds), chained and isolated, and the false-alarm count (every port is correct:
each NOT EQUIVALENT is a false alarm).

    python benchmarks/bench_ports5_margins.py                        # 4 batches of 4 crops per (net, port, backend)
    python benchmarks/bench_ports5_margins.py --batches 12 --tflite-batches 2
    CAFFE_HARNESS_SLOW=1 CAFFE_HARNESS_PORTS5_RECORDS=/tmp/p5 pytest tests/ports5/test_ports5_slow.py
    python benchmarks/bench_ports5_margins.py --records /tmp/p5      # the table of the slow suite's run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ports5"))

from _p5_corpus import check_json, describe, prepare, run_driver, summarise  # noqa: E402

NETS = ("res7", "alex11", "vgg3")
PORTS = ("named", "fused", "converted")


def run(out, backends, batches, n, tflite_batches):
    work = Path(out)
    for net in NETS:
        prepare(work, net, converted=True, tflite=tflite_batches > 0)
    for i, backend in enumerate(backends):
        t = time.perf_counter()
        run_driver(work, backend, list(NETS), list(PORTS), 1000 + 100 * i, batches, n, work / f"records_{backend}.jsonl")
        print(f"# {backend}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    for net in NETS if tflite_batches else ():
        with open(work / f"records_litert_{net}.jsonl", "a") as f:
            for b in range(tflite_batches):
                rc, js, text = check_json(work, net, 2000 + b, "--tflite", work / net / "converted.tflite", n=8)
                if js is None:
                    raise SystemExit(f"check --tflite {net}: rc {rc}\n{text[-2000:]}")
                rec = summarise(js)
                rec.update(net=net, port="converted.tflite", batch=2000 + b, images=8, keras_backend="litert")
                f.write(json.dumps(rec) + "\n")
    return work


def load(records_dir):
    return [json.loads(line) for p in sorted(Path(records_dir).glob("records_*.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]


def _collect(recs):
    """{(field, backend, layer type, mode): [values]} over every result of every record."""
    vals = defaultdict(list)
    for r in recs:
        for layer in r["layers"]:
            for mode in ("chained", "isolated"):
                res = layer[mode]
                for field, v in (res or {}).items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and field != "max_abs":
                        for be in (r["keras_backend"], "all"):
                            vals[(field, be, layer["type"], mode)].append(float(v))
    return vals


def _fmt(xs):
    return (f"{max(xs):.3f} | {statistics.median(xs):.3f} | {len(xs)}") if xs else "- | - | 0"


def table(recs):
    vals = _collect(recs)
    fields = sorted({k[0] for k in vals})
    backends = sorted({k[1] for k in vals} - {"all"}) + ["all"]
    types = sorted({k[2] for k in vals})
    lines = []
    for field in fields:
        lines += [f"\n### {field} (worst | median | results)\n",
                  "| backend | layer type | chained worst | median | n | isolated worst | median | n |",
                  "|---|---|---|---|---|---|---|---|"]
        for be in backends:
            for ty in types:
                c, i = vals.get((field, be, ty, "chained"), []), vals.get((field, be, ty, "isolated"), [])
                if c or i:
                    lines.append(f"| {be} | {ty} | {_fmt(c)} | {_fmt(i)} |")
    return "\n".join(lines)


STEMS = {"res7": ("conv1", "7x7/2", "conv1"), "alex11": ("conv1", "11x11/4", "relu1"),
         "vgg3": ("conv1_1", "3x3", "relu1_1")}      # (layer, kernel/stride, the pair of a fused Conv2D+ReLU)


def stems(recs):
    """The first convolution of each net (the zoo's stems) alone: bound_ratio per backend, isolated and chained."""
    vals = defaultdict(list)
    for r in recs:
        name, _, fused = STEMS[r["net"]]
        for layer in r["layers"]:
            if layer["layer"] == (fused if r["port"] == "fused" else name):
                for mode in ("chained", "isolated"):
                    if layer[mode] and layer[mode].get("bound_ratio") is not None:
                        vals[(r["net"], r["keras_backend"], mode)].append(layer[mode]["bound_ratio"])
    lines = ["| net | stem | backend | chained worst | median | n | isolated worst | median | n |",
             "|---|---|---|---|---|---|---|---|---|"]
    for net, be in sorted({k[:2] for k in vals}):
        lines.append(f"| {net} | {STEMS[net][1]} | {be} | {_fmt(vals[(net, be, 'chained')])} | "
                     f"{_fmt(vals[(net, be, 'isolated')])} |")
    return "\n".join(lines)


def summary(recs):
    pairs = defaultdict(int)
    alarms = [r for r in recs if not r["equivalent"]]
    for r in recs:
        pairs[r["keras_backend"]] += r["images"]
    lines = ["| backend | batches | pairs (model, input) | false-alarm batches | pairs in them |", "|---|---|---|---|---|"]
    for be in sorted(pairs):
        a = [r for r in alarms if r["keras_backend"] == be]
        n = sum(1 for r in recs if r["keras_backend"] == be)
        lines.append(f"| {be} | {n} | {pairs[be]} | {len(a)} | {sum(r['images'] for r in a)} |")
    lines.append(f"| all | {len(recs)} | {sum(pairs.values())} | {len(alarms)} | {sum(r['images'] for r in alarms)} |")
    return "\n".join(lines) + "".join("\n- " + describe(r) for r in alarms)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", help="read the records of an earlier run (records_*.jsonl) instead of running")
    ap.add_argument("--out", help="where to write the corpus and records (default: a temporary folder)")
    ap.add_argument("--backends", default="tensorflow,jax,torch")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--n", type=int, default=4, help="crops per batch")
    ap.add_argument("--tflite-batches", type=int, default=1, help="LiteRT batches of 8 crops per net (0: none)")
    a = ap.parse_args(argv)
    if a.records:
        recs = load(a.records)
    else:
        out = a.out or tempfile.mkdtemp(prefix="ports5_")
        recs = load(run(out, a.backends.split(","), a.batches, a.n, a.tflite_batches))
        print(f"# records in {out}", file=sys.stderr)
    print("## ports5: correct ports, false alarms\n")
    print(summary(recs))
    print("\n## ports5: the stems (first convolution; a fused Conv2D+ReLU port is paired at relu1)\n")
    print(stems(recs))
    print("\n## ports5: margins per layer type (every ratio field of the JSON results)")
    print(table(recs))


if __name__ == "__main__":
    main()
