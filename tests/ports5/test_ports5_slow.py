"""Issue 25, "How we know": 0 false alarms over at least 1,000 (model, input) pairs of correct ports of trained-like
Caffe nets, on TensorFlow, JAX, torch (Keras 3 backends, each in its own process) and LiteRT.

Per backend: 3 nets (res7: 7x7/2, alex11: 11x11/4, vgg3: 3x3) x 3 ports (hand-written ``named``, hand-written
``fused``, the CLI's ``caffe-harness convert`` model) x ``PORTS5_BATCHES`` (default 12) batches of 4 crops = 432
pairs, judged by ``harness.compare`` (mode both); LiteRT: each net's ``convert --format tflite`` file checked with
``check --tflite`` (both delegate paths) on 2 batches of 8 crops; ``check`` converting res7 itself (TensorFlow) and
``check --keras --backend`` on JAX and torch with a hand port's ``.keras`` file. Every input batch is different (disjoint seeds per backend).

``CAFFE_HARNESS_PORTS5_RECORDS=DIR`` keeps the per-batch records (JSON lines) for
``benchmarks/bench_ports5_margins.py --records DIR``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from _p5_corpus import check_json, describe, failing_layers, prepare, run_driver, summarise

pytestmark = pytest.mark.slow

NETS = ("res7", "alex11", "vgg3")
PORTS = ("named", "fused", "converted")
BACKENDS = ("tensorflow", "jax", "torch")
BATCHES = int(os.environ.get("PORTS5_BATCHES", "12"))
N = 4
TFLITE_BATCHES, TFLITE_N = 2, 8


def _keep(path):
    keep = os.environ.get("CAFFE_HARNESS_PORTS5_RECORDS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / Path(path).name)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    work = tmp_path_factory.mktemp("ports5_slow")
    for net in NETS:
        prepare(work, net, converted=True)
    return work


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_false_alarm_on_backend(corpus, backend):
    pytest.importorskip({"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend])
    out = corpus / f"records_{backend}.jsonl"
    first = 1000 + 100 * BACKENDS.index(backend)
    recs = run_driver(corpus, backend, list(NETS), list(PORTS), first, BATCHES, N, out)
    _keep(out)
    assert {r["backend"] for r in recs} == {backend}
    pairs = sum(r["images"] for r in recs)
    assert pairs == len(NETS) * len(PORTS) * BATCHES * N
    alarms = [describe(r) for r in recs if not r["equivalent"]]
    assert not alarms, f"{len(alarms)} of {len(recs)} batches ({pairs} pairs) false-alarm on {backend}:\n" + \
        "\n".join(alarms)


@pytest.mark.parametrize("net", NETS)
def test_no_false_alarm_on_litert(corpus, net):
    pytest.importorskip("ai_edge_litert")
    d = prepare(corpus, net, tflite=True)
    out = corpus / f"records_litert_{net}.jsonl"
    alarms = []
    for b in range(TFLITE_BATCHES):
        rc, js, text = check_json(corpus, net, 2000 + b, "--tflite", d / "converted.tflite", n=TFLITE_N)
        assert js is not None, text[-3000:]
        rec = summarise(js)
        rec.update(net=net, port="converted.tflite", batch=2000 + b, images=TFLITE_N, keras_backend="litert",
                   delegates=js.get("delegates"))
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if rc != 0 or not js["equivalent"]:
            alarms.append(f"batch {2000 + b}: rc {rc}, delegates {js.get('delegates')}, failing "
                          f"{failing_layers(js)}, first {rec['first_divergence']}")
    _keep(out)
    assert not alarms, "\n".join(alarms)


def test_converted_model_is_equivalent_cli(corpus):
    """``caffe-harness check`` with no --keras converts the net itself: the harness's own model, TensorFlow."""
    rc, js, text = check_json(corpus, "res7", 3500, n=N)
    assert js is not None, text[-3000:]
    assert (rc, js["equivalent"]) == (0, True), (failing_layers(js), text[-6000:])


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_cli_hand_port_file_on_backend(corpus, backend):
    """``caffe-harness check --keras port.keras --backend B``: a hand port saved as a .keras file, run on B."""
    pytest.importorskip(backend)
    from _p5_nets import load_weights
    from _p5_ports import build_port

    d = corpus / "res7"
    path = d / "hand_named.keras"
    if not path.exists():
        build_port("res7", load_weights(d / "w.npz"), "named").save(path)
    rc, js, text = check_json(corpus, "res7", 3000 + BACKENDS.index(backend), "--keras", path, "--backend", backend,
                              n=N)
    assert js is not None, text[-3000:]
    assert js["backend"] == backend
    assert (rc, js["equivalent"]) == (0, True), (failing_layers(js), text[-6000:])
