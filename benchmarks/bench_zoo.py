"""Benchmark: the whole model zoo -- reference, OpenCV DNN, converted Keras model, conversion and ``check``.

For each zoo net at its published input size and batch 1 (fixtures/zoo, seeded random weights, seeded uniform
input), in ONE process with the same thread count for every engine (OpenBLAS/OMP/MKL env vars set before NumPy
loads, ``cv2.setNumThreads``, TensorFlow intra-op threads):

* ``ref f32`` / ``ref f64``   harness.reference.forward (every blob recorded), float32 and float64;
* ``OpenCV``                  cv2.dnn.readNetFromCaffe(prototxt, caffemodel written by harness.caffe.write_caffemodel)
                              with OpenCV's defaults: 3x3 Winograd kernels and BatchNorm/Scale/ReLU fused into the
                              convolutions, so it does less arithmetic than a layer-by-layer run (and records only the
                              output); ``CV plain`` = Winograd and fusion off (context column);
* ``Keras eager`` / ``Keras graph``  the converted model (harness.convert): ``model(x)`` eagerly, and a
                              ``tf.function`` of it (traced once in the warm-up; the "compiled" forward);
* ``convert``                 harness.convert.convert(net) (one run; includes building the Keras graph);
* ``check`` stages            harness.compare.compare(net, mode="both") in this process, ``report.timings``;
* ``check CLI``               ``caffe-harness check <batch-1 copy of the prototxt> --no-table`` in a fresh process:
                              wall time including Python/TensorFlow start-up, its CPU time (user+sys, os.wait4; less
                              sensitive to other users' load than wall) and its peak RSS (VmHWM polled every 10 ms);
* memory                      tracemalloc peak of one float32/float64 reference forward and of the in-process
                              compare (NumPy buffers are traced; TensorFlow's allocator is not), ru_maxrss of this
                              process after the net (cumulative, in the JSON), and the check subprocess's peak RSS.

Forward times are MEDIANS of ``--repeat`` interleaved rounds after one warm-up (every round runs every engine once,
so background load hits all alike).  Ratios are against OpenCV and the Keras graph forward measured in the same run.
The load average (1 min) is printed with every net: the machine may be shared.

Targets (issue 7, 2 cores): ref f32 <= 1.5x OpenCV; check of ResNet-50 at 224x224 (both modes) < 20 s wall including
start-up; check of VGG16 peak memory < 3 GB (``--vgg16-batch10`` also measures the prototxt as published, batch 10).

Usage: python benchmarks/bench_zoo.py [--nets lenet resnet50 ...] [--repeat 3] [--threads 2] [--check-repeat 1]
       [--vgg16-batch10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "fixtures" / "zoo"
NETS = ["lenet", "alexnet", "vgg16", "googlenet", "resnet50", "squeezenet11", "mobilenet_v1", "ssd300",
        "fcn32s_head"]
MIB = 1 << 20


def _set_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def interleaved_median(variants: dict, repeat: int) -> dict:
    """Median wall time of each variant over ``repeat`` interleaved rounds after one warm-up round."""
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeat):
        for k, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def peak_traced(fn) -> tuple[int, object]:
    tracemalloc.start()
    try:
        out = fn()
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


def batch1_prototxt(src: Path, dst: Path) -> None:
    """The prototxt with its input batch set to 1 (first ``dim:`` of the Input layer or the legacy ``input_dim``)."""
    text = src.read_text()
    if re.search(r"^input_dim:", text, flags=re.M):
        text = re.sub(r"^input_dim:\s*\d+", "input_dim: 1", text, count=1, flags=re.M)
    else:
        text = re.sub(r"(shape\s*\{\s*dim:\s*)\d+", r"\g<1>1", text, count=1)
    dst.write_text(text)


def _vm_hwm(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def run_check_cli(prototxt: Path) -> dict:
    """``caffe-harness check PROTOTXT`` in a fresh process: wall seconds, exit code, the child's peak RSS and CPU.

    Peak RSS is the child's ``VmHWM`` (/proc/PID/status) polled every 10 ms until it exits: ``ru_maxrss`` from
    wait4 is useless here, because Linux carries the RSS of the pre-exec (forked) image into the child's maxrss, i.e.
    this big benchmark process's own RSS."""
    env = dict(os.environ)
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "check", str(prototxt), "--no-table"],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        hwm = 0
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            v = _vm_hwm(proc.pid)
            if v:
                hwm = max(hwm, v)
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        tail = log.read().decode(errors="replace")[-600:]
    return {"wall": wall, "rc": proc.returncode, "maxrss": hwm, "cpu": ru.ru_utime + ru.ru_stime, "tail": tail}


def bench(name: str, repeat: int, threads: int, check_repeat: int) -> dict:
    import cv2
    import numpy as np
    import tensorflow as tf

    from harness.caffe import load_net, write_caffemodel
    from harness.compare import compare
    from harness.convert import convert
    from harness.reference import forward
    from harness.weights import random_weights

    row: dict = {"net": name, "load_before": os.getloadavg()[0]}
    path = ZOO / f"{name}.prototxt"
    first = load_net(path)
    (blob, shape), = first.inputs.items()
    shape = (1,) + tuple(shape[1:])
    row["input"] = "x".join(map(str, shape))
    net = random_weights(load_net(path, input_shapes={blob: shape}), seed=0)
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    feed = {blob: x}

    row["mem_f32"], _ = peak_traced(lambda: forward(net, feed, dtype=np.float32))
    row["mem_f64"], ref64 = peak_traced(lambda: forward(net, feed, dtype=np.float64))
    variants = {
        "ref_f32": lambda: forward(net, feed, dtype=np.float32),
        "ref_f64": lambda: forward(net, feed, dtype=np.float64),
    }

    # OpenCV DNN on the same prototxt and weights (batch-1 copy of the prototxt so its shapes match)
    cv2.setNumThreads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        proto1 = Path(tmp) / f"{name}.prototxt"
        batch1_prototxt(path, proto1)
        model_path = Path(tmp) / "w.caffemodel"
        write_caffemodel(net, model_path)
        try:
            cvnet = cv2.dnn.readNetFromCaffe(str(proto1), str(model_path))
            plain = cv2.dnn.readNetFromCaffe(str(proto1), str(model_path))
            for n_ in (cvnet, plain):
                n_.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
                n_.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
            plain.enableWinograd(False)
            plain.enableFusion(False)

            def run_cv(n_=cvnet):
                n_.setInput(x, blob)
                return n_.forward()

            run_cv()
            run_cv(plain)
            variants["opencv"] = run_cv
            variants["opencv_plain"] = lambda: run_cv(plain)
        except cv2.error as e:
            row["opencv_error"] = " ".join(str(e).split())[-160:]
            run_cv = None

    # the converted Keras model
    t0 = time.perf_counter()
    model = convert(net)
    row["convert"] = time.perf_counter() - t0
    x_nhwc = tf.constant(x.transpose(0, 2, 3, 1).copy())
    graph = tf.function(lambda t: model(t, training=False))
    variants["keras_eager"] = lambda: model(x_nhwc, training=False)
    variants["keras_graph"] = lambda: graph(x_nhwc)

    row.update(interleaved_median(variants, repeat))
    last = net.outputs[-1] if net.outputs else list(ref64)[-1]
    if run_cv is not None:
        r = ref64[f"{[lay.name for lay in net.layers if last in lay.tops][-1]}/{last}"]
        cv_out = run_cv().astype(np.float64)
        if cv_out.size == r.size:
            row["cv_vs_ref"] = float(np.abs(cv_out.reshape(r.shape) - r).max() / max(np.abs(r).max(), 1e-30))

    # check, in process: stages
    mem_cmp, rep = peak_traced(lambda: compare(net, model, feed, mode="both"))
    row["check_ok"] = bool(rep)
    row["timings"] = {k: float(v) for k, v in rep.timings.items()}
    row["mem_check_traced"] = mem_cmp
    # check CLI in a fresh process (start-up included), batch-1 copy of the prototxt
    with tempfile.TemporaryDirectory() as tmp:
        proto1 = Path(tmp) / f"{name}.prototxt"
        batch1_prototxt(path, proto1)
        runs = [run_check_cli(proto1) for _ in range(check_repeat)]
    row["cli_wall"] = statistics.median(r["wall"] for r in runs)
    row["cli_walls"] = [r["wall"] for r in runs]
    row["cli_rc"] = [r["rc"] for r in runs]
    row["cli_maxrss"] = max(r["maxrss"] for r in runs)
    row["cli_cpu"] = statistics.median(r["cpu"] for r in runs)
    if any(r["rc"] != 0 for r in runs):
        row["cli_tail"] = runs[0]["tail"]
    row["maxrss_self"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    row["load_after"] = os.getloadavg()[0]
    return row


def _fmt_s(v) -> str:
    return "n/a" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def table(rows: list[dict]) -> str:
    head = ("net", "input", "ref f32 s", "ref f64 s", "OpenCV s", "f32/CV", "f64/CV", "CV plain s", "Keras eager s",
            "Keras graph s", "f32/Keras", "convert s", "check: ref / chained / isolated / compare / total s",
            "check CLI wall s", "CLI CPU s", "CLI peak RSS MiB", "traced f32/f64/check MiB", "load 1m")
    lines = [head]
    for r in rows:
        tm = r["timings"]
        cv = r.get("opencv")
        lines.append((
            r["net"], r["input"], _fmt_s(r["ref_f32"]), _fmt_s(r["ref_f64"]), _fmt_s(cv),
            f"{r['ref_f32'] / cv:.2f}x" if cv else "n/a", f"{r['ref_f64'] / cv:.2f}x" if cv else "n/a",
            _fmt_s(r.get("opencv_plain")), _fmt_s(r["keras_eager"]), _fmt_s(r["keras_graph"]),
            f"{r['ref_f32'] / r['keras_graph']:.2f}x", _fmt_s(r["convert"]),
            " / ".join(_fmt_s(tm.get(k, 0.0)) for k in ("reference", "keras_chained", "keras_isolated", "compare",
                                                         "total")) + ("" if r["check_ok"] else " FAILED"),
            " ".join(_fmt_s(w) for w in r["cli_walls"]) + ("" if set(r["cli_rc"]) == {0} else f" rc={r['cli_rc']}"),
            _fmt_s(r["cli_cpu"]), f"{r['cli_maxrss'] / MIB:.0f}",
            f"{r['mem_f32'] / MIB:.0f}/{r['mem_f64'] / MIB:.0f}/{r['mem_check_traced'] / MIB:.0f}",
            f"{r['load_before']:.1f}-{r['load_after']:.1f}"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = []
    for i, line in enumerate(lines):
        out.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths)) + " |")
        if i == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def cli_only(args) -> int:
    """Interleaved rounds of the check CLI on batch-1 copies of the nets (and the published VGG16, batch 10)."""
    res: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        protos = {}
        for name in args.nets:
            protos[name] = Path(tmp) / f"{name}.prototxt"
            batch1_prototxt(ZOO / f"{name}.prototxt", protos[name])
        if args.vgg16_batch10:
            protos["vgg16 (batch 10)"] = ZOO / "vgg16.prototxt"
        for _ in range(args.check_repeat):
            for name, p in protos.items():
                r = run_check_cli(p)
                r["load"] = os.getloadavg()[0]
                res.setdefault(name, []).append(r)
                print(f"{name}: {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU, rc {r['rc']}, "
                      f"{r['maxrss'] / MIB:.0f} MiB, load {r['load']:.1f}", file=sys.stderr, flush=True)
    print(f"check CLI (fresh process, start-up included), threads={args.threads}, {args.check_repeat} round(s)")
    print("| net | wall s (median; runs) | CPU s (median) | peak RSS MiB | rc | load 1m |")
    print("|---|---|---|---|---|---|")
    for name, rs in res.items():
        print(f"| {name} | {statistics.median(r['wall'] for r in rs):.1f}; "
              f"{' '.join(format(r['wall'], '.1f') for r in rs)} | {statistics.median(r['cpu'] for r in rs):.1f} | "
              f"{max(r['maxrss'] for r in rs) / MIB:.0f} | {sorted({r['rc'] for r in rs})} | "
              f"{min(r['load'] for r in rs):.1f}-{max(r['load'] for r in rs):.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", choices=NETS, default=NETS)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved timing rounds (median)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check-repeat", type=int, default=1, help="check CLI runs per net (median; ResNet-50: 3)")
    ap.add_argument("--vgg16-batch10", action="store_true",
                    help="also run `caffe-harness check fixtures/zoo/vgg16.prototxt` as published (batch 10)")
    ap.add_argument("--json", metavar="FILE", help="write the raw rows")
    ap.add_argument("--cli-only", action="store_true",
                    help="only the check CLI runs (wall, CPU, peak RSS), --check-repeat times per net, interleaved")
    args = ap.parse_args(argv)
    _set_threads(args.threads)  # before NumPy/OpenBLAS start their thread pools
    if args.cli_only:
        return cli_only(args)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    rows = []
    for name in args.nets:
        rep = max(args.check_repeat, 3) if name == "resnet50" else args.check_repeat
        rows.append(bench(name, args.repeat, args.threads, rep))
        r = rows[-1]
        print(f"done {name}: check total {r['timings'].get('total', 0):.1f} s, CLI {r['cli_walls']}, "
              f"load {r['load_before']:.1f}-{r['load_after']:.1f}", file=sys.stderr, flush=True)
    extra = {}
    if args.vgg16_batch10:
        extra["vgg16_batch10"] = run_check_cli(ZOO / "vgg16.prototxt")
        extra["vgg16_batch10"]["load_after"] = os.getloadavg()[0]
    import cv2
    import keras
    import numpy as np

    print(f"threads={args.threads} repeat={args.repeat} (median of interleaved rounds); python "
          f"{sys.version.split()[0]}, numpy {np.__version__}, tensorflow {tf.__version__}, keras {keras.__version__}, "
          f"opencv {cv2.__version__}; targets: f32/CV <= 1.5x, resnet50 check CLI < 20 s, vgg16 check RSS < 3 GB")
    print(table(rows))
    for k, v in extra.items():
        print(f"{k}: check CLI wall {v['wall']:.1f} s, CPU {v['cpu']:.1f} s, rc {v['rc']}, "
              f"peak RSS {v['maxrss'] / MIB:.0f} MiB, "
              f"load {v['load_after']:.1f}")
    for r in rows:
        if "opencv_error" in r:
            print(f"{r['net']}: OpenCV could not run it: {r['opencv_error']}")
        if "cv_vs_ref" in r:
            print(f"{r['net']}: OpenCV output vs float64 reference, max rel {r['cv_vs_ref']:.1e}")
        if "cli_tail" in r:
            print(f"{r['net']}: check CLI failed: {r['cli_tail']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "extra": extra, "threads": args.threads}, indent=1,
                                              default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
