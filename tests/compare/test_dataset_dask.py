"""`check --dataset --workers N` / `--scheduler ADDRESS`: the batches on Dask give the statistics of one worker bit
for bit; Dask missing is refused by name."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from support import run_cli
from support.ports import write_port_files

# A ResNet-50 bottleneck stage at reduced size: conv1 7x7/2 + BN + Scale + ReLU, 3x3/2 max pool, one bottleneck
# block with its projection shortcut (Eltwise SUM), global AVE pool, fc, softmax.
RESNET_LIKE = """
name: "resnet_like"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 21 dim: 19 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 8 kernel_size: 7 stride: 2 pad: 3 bias_term: false } }
layer { name: "bn_conv1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale_conv1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "conv1_relu" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "res2a_branch1" type: "Convolution" bottom: "pool1" top: "res2a_branch1"
        convolution_param { num_output: 16 kernel_size: 1 bias_term: false } }
layer { name: "bn2a_branch1" type: "BatchNorm" bottom: "res2a_branch1" top: "res2a_branch1" }
layer { name: "scale2a_branch1" type: "Scale" bottom: "res2a_branch1" top: "res2a_branch1" scale_param { bias_term: true } }
layer { name: "res2a_branch2a" type: "Convolution" bottom: "pool1" top: "res2a_branch2a"
        convolution_param { num_output: 4 kernel_size: 1 bias_term: false } }
layer { name: "bn2a_branch2a" type: "BatchNorm" bottom: "res2a_branch2a" top: "res2a_branch2a" }
layer { name: "scale2a_branch2a" type: "Scale" bottom: "res2a_branch2a" top: "res2a_branch2a" scale_param { bias_term: true } }
layer { name: "res2a_branch2a_relu" type: "ReLU" bottom: "res2a_branch2a" top: "res2a_branch2a" }
layer { name: "res2a_branch2b" type: "Convolution" bottom: "res2a_branch2a" top: "res2a_branch2b"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 bias_term: false } }
layer { name: "bn2a_branch2b" type: "BatchNorm" bottom: "res2a_branch2b" top: "res2a_branch2b" }
layer { name: "scale2a_branch2b" type: "Scale" bottom: "res2a_branch2b" top: "res2a_branch2b" scale_param { bias_term: true } }
layer { name: "res2a_branch2b_relu" type: "ReLU" bottom: "res2a_branch2b" top: "res2a_branch2b" }
layer { name: "res2a_branch2c" type: "Convolution" bottom: "res2a_branch2b" top: "res2a_branch2c"
        convolution_param { num_output: 16 kernel_size: 1 bias_term: false } }
layer { name: "bn2a_branch2c" type: "BatchNorm" bottom: "res2a_branch2c" top: "res2a_branch2c" }
layer { name: "scale2a_branch2c" type: "Scale" bottom: "res2a_branch2c" top: "res2a_branch2c" scale_param { bias_term: true } }
layer { name: "res2a" type: "Eltwise" bottom: "res2a_branch1" bottom: "res2a_branch2c" top: "res2a" }
layer { name: "res2a_relu" type: "ReLU" bottom: "res2a" top: "res2a" }
layer { name: "pool5" type: "Pooling" bottom: "res2a" top: "pool5" pooling_param { pool: AVE global_pooling: true } }
layer { name: "fc10" type: "InnerProduct" bottom: "pool5" top: "fc10" inner_product_param { num_output: 10 } }
layer { name: "prob" type: "Softmax" bottom: "fc10" top: "prob" }
"""


def _stats(path: Path) -> dict:
    rep = json.loads(path.read_text())
    return {k: rep[k] for k in ("layers", "classification", "top1_agreement", "top5_agreement", "max_probability_gap",
                                "equivalent", "first_failing_layer")}


def test_resnet_like_256_samples_workers_1_and_2_bit_for_bit(tmp_path, capsys):
    pytest.importorskip("distributed")
    (tmp_path / "net.prototxt").write_text(RESNET_LIKE)
    np.savez(tmp_path / "ds.npz", data=np.random.default_rng(11).standard_normal((256, 3, 21, 19)).astype(np.float32))
    for w in ("1", "2"):
        rc, out, err = run_cli(["check", str(tmp_path / "net.prototxt"), "--dataset", str(tmp_path / "ds.npz"),
                                "--batch", "32", "--mode", "chained", "--workers", w, "--json",
                                str(tmp_path / f"w{w}.json"), "--no-table"], capsys)
        assert rc == 0, out + err
        assert "EQUIVALENT over 256 sample(s)" in out
        assert not [ln for ln in err.splitlines() if "I0000" in ln or "WARNING" in ln], err  # no TF noise
    one, two = _stats(tmp_path / "w1.json"), _stats(tmp_path / "w2.json")
    assert one == two
    assert len(one["layers"]) >= 10 and all(l["chained"]["samples"] == 256 for l in one["layers"])
    assert json.loads((tmp_path / "w2.json").read_text())["workers"] == 2


def test_small_net_on_an_existing_scheduler_equals_one_worker(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    import logging

    write_port_files(tmp_path, {"good": None})
    np.savez(tmp_path / "ds.npz", data=np.random.default_rng(5).standard_normal((64, 3, 13, 11)).astype(np.float32))
    argv = ["check", str(tmp_path / "net.prototxt"), "--weights", str(tmp_path / "w.npz"), "--keras",
            str(tmp_path / "good.keras"), "--dataset", str(tmp_path / "ds.npz"), "--batch", "8", "--no-table"]
    rc, out, err = run_cli(argv + ["--workers", "1", "--json", str(tmp_path / "w1.json")], capsys)
    assert rc == 0, out + err
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster:
        rc, out, err = run_cli(argv + ["--scheduler", cluster.scheduler_address, "--json", str(tmp_path / "s.json")],
                               capsys)
    assert rc == 0, out + err
    assert _stats(tmp_path / "w1.json") == _stats(tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["workers"].startswith("tcp://")


def test_dask_missing_is_refused_by_name(tmp_path, capsys, monkeypatch):
    write_port_files(tmp_path, {"good": None})
    np.savez(tmp_path / "ds.npz", data=np.zeros((4, 3, 13, 11), np.float32))
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    rc, out, err = run_cli(["check", str(tmp_path / "net.prototxt"), "--dataset", str(tmp_path / "ds.npz"),
                            "--workers", "2", "--json", str(tmp_path / "r.json")], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--workers needs Dask's distributed scheduler, which is not installed: pip install " \
        "'caffe-keras-harness[dask]'" in lines[0], err
    assert not (tmp_path / "r.json").exists()


def test_a_worker_loads_each_check_once(tmp_path, monkeypatch):
    """The worker-side cache: the same check's batches reuse the loaded net and model; another check loads its own;
    the task's statistics are those of the single-process batch function."""
    from harness.compare.dataset import scaleout
    from harness.compare.dataset.batch import Check, Sides, evaluate_batch

    write_port_files(tmp_path, {"good": None})
    monkeypatch.setattr(scaleout, "_PINNED", [True])  # no thread pinning of the test process itself
    monkeypatch.setattr(scaleout, "_CACHE", {})
    loads = []
    real = Sides.load.__func__
    monkeypatch.setattr(Sides, "load", classmethod(lambda cls, chk: loads.append(chk.seed) or real(cls, chk)))
    chk = Check(prototxt=str(tmp_path / "net.prototxt"), weights=str(tmp_path / "w.npz"),
                keras=str(tmp_path / "good.keras"), mode="chained", batch=4, input_shapes=(("data", (3, 13, 11)),))
    x = {"data": np.random.default_rng(8).standard_normal((4, 3, 13, 11)).astype(np.float32)}
    a = scaleout.batch_on_worker(chk, x, 0)
    b = scaleout.batch_on_worker(chk, x, 4)
    assert loads == [0]
    scaleout.batch_on_worker(Check(**{**chk.__dict__, "seed": 1}), x, 0)
    assert loads == [0, 1] and len(scaleout._CACHE) == 2
    ref = evaluate_batch(Sides.load(chk), x, 0)
    for la, lr in zip(a.layers, ref.layers):
        assert np.array_equal(la.modes["chained"].bound_ratio, lr.modes["chained"].bound_ratio)
    assert b.start == 4 and [l.key for l in b.layers] == [l.key for l in a.layers]
