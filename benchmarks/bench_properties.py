"""Examples per second of each property in tests/property (what the ``ci`` profile pays for), with a per-phase
breakdown of the single-layer property and, as the peer measured in the same run, the reference alone.

    python benchmarks/bench_properties.py                 # 8 examples per type, every property
    python benchmarks/bench_properties.py --examples 20 --types Convolution Pooling

Target (issue 6): >= 30 single-layer examples/second on 2 cores (reference + Keras + compare).  Each example is drawn
by Hypothesis (derandomized, generate phase only), so generation is included, as in a real run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.simplefilter("ignore")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

import harness.strategies as S  # noqa: E402

PHASES = ("load", "reference", "convert", "keras", "compare")


def run_property(strategy, fn, n: int) -> tuple[int, float]:
    """Run ``fn`` on ``n`` drawn examples; return (examples, seconds)."""
    count = [0]

    @settings(max_examples=n, database=None, derandomize=True, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(case):
        fn(case)
        count[0] += 1

    t0 = time.perf_counter()
    prop()
    return count[0], time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=8, help="examples per type (single layer) / per property")
    ap.add_argument("--types", nargs="*", help="Caffe types for the single-layer properties (default: all)")
    args = ap.parse_args(argv)

    import keras  # noqa: F401  (pay the import before timing)

    from harness.convert import convert
    from harness.reference import forward
    from tests.property._props import compare_records, keras_records, record_scales
    from tests.property.test_layers import TYPES, check_case
    from tests.property.test_roundtrip import check_roundtrip

    types = args.types or TYPES
    n = args.examples
    print(f"cores: {os.cpu_count()}, load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())}, "
          f"{n} examples per type/property, keras {keras.__version__} ({keras.backend.backend()})")
    convert(S.layer_case("ReLU").example().load())  # warm up TF

    # -- single layer, per type, with the per-phase breakdown ------------------------------------------------------
    failures: dict[str, int] = defaultdict(int)
    per_type: dict[str, tuple[int, float, dict[str, float]]] = {}
    for t in types:
        acc: dict[str, float] = defaultdict(float)

        def single(case, acc=acc):
            t0 = time.perf_counter()
            net = case.load()
            t1 = time.perf_counter()
            ref = forward(net, {k: v.astype(np.float64) for k, v in case.inputs.items()})
            t2 = time.perf_counter()
            model = convert(net)
            t3 = time.perf_counter()
            got = keras_records(model, net, case.inputs)
            t4 = time.perf_counter()
            problems = compare_records(ref, got, scales=record_scales(net, ref))
            t5 = time.perf_counter()
            if problems:  # a finding for the test run; the benchmark only counts it
                failures[f"single layer: {t}"] += 1
            for k, a, b in zip(PHASES, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5)):
                acc[k] += b - a

        cnt, secs = run_property(S.layer_case(t), single, n)
        per_type[t] = (cnt, secs, dict(acc))

    print("\nsingle-layer property (reference + convert + Keras eager + compare), per type:")
    print(f"{'type':22s} {'ex/s':>7s} " + " ".join(f"{p + ' ms':>12s}" for p in PHASES) + f" {'other ms':>9s}")
    tot_n, tot_s = 0, 0.0
    tot_acc: dict[str, float] = defaultdict(float)
    for t, (cnt, secs, acc) in per_type.items():
        tot_n += cnt
        tot_s += secs
        for k, v in acc.items():
            tot_acc[k] += v
        other = secs - sum(acc.values())
        print(f"{t:22s} {cnt / secs:7.1f} " + " ".join(f"{acc.get(p, 0) / cnt * 1e3:12.2f}" for p in PHASES)
              + f" {other / cnt * 1e3:9.2f}")
    other = tot_s - sum(tot_acc.values())
    print(f"{'ALL TYPES':22s} {tot_n / tot_s:7.1f} " + " ".join(f"{tot_acc[p] / tot_n * 1e3:12.2f}" for p in PHASES)
          + f" {other / tot_n * 1e3:9.2f}")

    # -- the other properties ----------------------------------------------------------------------------------------
    rows = [("single layer, all types (above)", tot_n, tot_s)]

    def ref_only(case):
        net = case.load()
        forward(net, {k: v.astype(np.float64) for k, v in case.inputs.items()})

    everything = S.layer_cases(types)
    def counting(label, fn):
        """Time ``fn`` whatever its verdict (a failing property is a finding for the test run, not the benchmark)."""
        def run(case):
            try:
                fn(case)
            except (Exception, pytest.fail.Exception):
                failures[label] += 1
        return run

    rows.append(("peer: reference alone (load + forward), all types", *run_property(everything, ref_only, n * 4)))
    label = "single layer + harness.compare (chained+isolated)"
    rows.append((label, *run_property(everything, counting(label, lambda c: check_case(c, comparator="always")),
                                      n * 2)))
    label = "random nets + harness.compare"
    rows.append((label, *run_property(S.nets(), counting(label, lambda c: check_case(c, comparator="always")), n * 2)))
    label = "save -> load (safe mode) round trip, all types"
    rows.append((label, *run_property(everything, counting(label, check_roundtrip), n)))
    from tests.property import test_reference_invariants as inv

    def affine(case):
        name, x = next(iter(case.inputs.items()))
        y = np.random.default_rng(0).standard_normal(x.shape)
        inv.assert_close(inv.out(case, {name: 2 * np.asarray(x, np.float64) - y}),
                         2 * inv.out(case, {name: x}) - inv.out(case, {name: y}) + 0 * inv.out(case, {name: 0 * y}),
                         "affine", case, tol=1.0)

    rows.append(("invariant: convolution is affine (reference only)",
                 *run_property(S.layer_case("Convolution"), affine, n * 4)))

    print(f"\n{'property':58s} {'examples':>8s} {'seconds':>8s} {'ex/s':>7s} {'vs ref alone':>12s} {'failed':>6s}")
    peer = rows[1][1] / rows[1][2]
    for name, cnt, secs in rows:
        print(f"{name:58s} {cnt:8d} {secs:8.2f} {cnt / secs:7.1f} {cnt / secs / peer:11.2f}x "
              f"{failures.get(name, 0):6d}")
    for name, k in failures.items():
        if name.startswith("single layer: "):
            print(f"findings: {k} failing example(s) in {name} (run the property suite to see them shrunk)")
    print(f"\nload average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"(other processes share these cores: compare ratios, not absolute rates, across runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
