"""Threads from the cores actually free (harness/threads.py): the rule, the override, and that it takes effect."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.threads import ENV, ThreadPlan, apply_threads, plan_threads


def test_free_cores_are_the_cores_minus_the_load_of_the_rest_of_the_machine(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert plan_threads(cores=2, load=0.2) == ThreadPlan(2, 2, 0.2, "free cores")
    assert plan_threads(cores=2, load=1.4).n == 1  # one core busy elsewhere: one thread
    assert plan_threads(cores=2, load=6.3).n == 1  # never below one
    assert plan_threads(cores=16, load=3.6).n == 12
    assert plan_threads(cores=4, load=0.0).describe() == "threads 4 (4 cores, load 0.0: 4 free; --threads N overrides)"


def test_a_request_wins_and_a_bad_one_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv(ENV, "3")
    assert plan_threads(cores=2, load=5.0) == ThreadPlan(3, 2, None, "requested")
    assert plan_threads(1, cores=2, load=0.0).n == 1  # --threads beats the environment
    for bad in ("0", "two", -1):
        with pytest.raises(HarnessError, match=r"^--threads .*at least 1 \(or set CAFFE_HARNESS_THREADS\)$"):
            plan_threads(bad, cores=2)


def test_the_plan_takes_effect_in_blas(monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    import numpy as np

    np.dot(np.ones((3, 5)), np.ones((5, 7)))  # BLAS loaded
    with threadpool_limits():  # restore whatever the test run had afterwards
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            monkeypatch.setenv(k, "0")
        apply_threads(ThreadPlan(1, 2, 0.0, "free cores"))
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and {p["num_threads"] for p in blas} == {1}
        import os

        assert os.environ["OPENBLAS_NUM_THREADS"] == "1"


def test_check_timings_prints_the_stages_memory_and_threads(tmp_path, capsys, monkeypatch):
    import json

    from support.cli import run_cli
    from support.nets import net_text

    monkeypatch.delenv(ENV, raising=False)
    proto = tmp_path / "net.prototxt"
    proto.write_text(net_text('layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
                              'convolution_param { num_output: 4 kernel_size: 3 } }\n', {"data": (2, 3, 5, 7)}))
    out = tmp_path / "r.json"
    rc, _, err = run_cli(["check", str(proto), "--no-table", "--timings", "--threads", "1", "--json", str(out)],
                         capsys)
    assert rc == 0, err
    line = next(x for x in err.splitlines() if x.startswith("caffe-harness: timings: "))
    assert "reference" in line and "total" in line and "GiB" in line
    assert line.endswith("threads 1 (requested; %d cores)" % plan_threads(1).cores)
    doc = json.loads(out.read_text())
    assert doc["resources"]["threads"] == {"n": 1, "cores": plan_threads(1).cores, "load": None,
                                           "reason": "requested"}
    assert doc["resources"]["peak_rss_bytes"] > 50 * 2**20  # TensorFlow alone is more than that
    rc, _, err = run_cli(["check", str(proto), "--no-table", "--threads", "0"], capsys)
    assert rc == 2 and err.strip().endswith("--threads 0: a whole number of threads, at least 1 (or set "
                                            "CAFFE_HARNESS_THREADS)")
