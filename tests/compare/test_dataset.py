"""`caffe-harness check --dataset`: per-layer statistics over a dataset read in batches, classification agreement,
baselines, bad dataset input, Ctrl-C."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from support import run_cli
from support.nets import small_net
from support.ports import keras_port, write_port_files

N = 40  # samples: not a multiple of the batch sizes used (the last batch is smaller)


def _scaled_fc(net, factor: float):
    """The correct port with the Dense layer's kernel scaled by ``factor``."""
    m = keras_port(net)
    d = next(l for l in m.layers if l.__class__.__name__ == "Dense")
    w, b = d.get_weights()
    d.set_weights([w * np.float32(factor), b])
    return m


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("dataset")
    net = write_port_files(d, {"good": None, "flat": "flatten_order"})
    _scaled_fc(net, 1 + 3e-6).save(d / "drift.keras")  # within the float32 bound, but past 2x the baseline
    _scaled_fc(net, 1.01).save(d / "scaled.keras")
    x = np.random.default_rng(3).standard_normal((N, 3, 13, 11)).astype(np.float32)
    np.savez(d / "ds.npz", data=x)
    np.savez_compressed(d / "dsc.npz", data=x)
    folder = d / "npy"
    folder.mkdir()
    np.save(folder / "a_000.npy", x[0])  # one sample, (C, H, W)
    np.save(folder / "a_001.npy", x[1:17])  # sixteen, (k, C, H, W)
    for i in range(17, N):
        np.save(folder / f"b_{i:03d}.npy", x[i:i + 1])  # one, (1, C, H, W)
    return d


def _check(d, keras, ds, *extra):
    return ["check", str(d / "net.prototxt"), "--weights", str(d / "w.npz"), "--keras", str(d / keras),
            "--dataset", str(ds), *extra]


def _direct(d, keras, x, batch=16):
    """The net output of the float64 reference and of the Keras model (its own predict, batches of ``batch``: the
    float32 kernels Keras picks depend on the batch shape), computed here without the harness's comparison."""
    from harness.compare import load_keras_model
    from harness.caffe import load_net
    from harness.reference import forward

    model = load_keras_model(d / keras)
    refs, ks = [], []
    for a in range(0, len(x), batch):
        xb = x[a:a + batch]
        net = load_net(d / "net.prototxt", weights=d / "w.npz", input_shapes={"data": xb.shape})
        refs.append(forward(net, {"data": xb.astype(np.float64)}, dtype=np.float64)["prob/prob"])
        ks.append(np.asarray(model.predict_on_batch(xb.transpose(0, 2, 3, 1)), np.float64))
    return np.concatenate(refs), np.concatenate(ks)


def test_statistics_over_the_dataset(files, tmp_path, capsys):
    d = files
    rc, out, err = run_cli(_check(d, "good.keras", d / "ds.npz", "--batch", "16", "--mode", "chained", "--json",
                                  str(tmp_path / "r.json")), capsys)
    assert rc == 0, out + err
    assert f"EQUIVALENT over {N} sample(s)" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["kind"] == "dataset" and rep["equivalent"] is True and rep["interrupted"] is False
    assert rep["dataset"]["samples"] == N and rep["dataset"]["batch"] == 16 and rep["dataset"]["kind"] == "npz"
    assert [l["caffe_layer"] for l in rep["layers"]] == ["relu1", "pool1", "scale1", "fc", "prob"]
    x = np.load(d / "ds.npz")["data"]
    r, k = _direct(d, "good.keras", x)
    # the output layer's worst error and its sample, against one forward of all samples
    prob = rep["layers"][-1]["chained"]
    per_sample = np.abs(k - r).max(axis=1)
    assert prob["max_abs_sample"] == int(np.argmax(per_sample))
    assert prob["max_abs"] == pytest.approx(float(per_sample.max()), rel=1e-9)
    assert 0 < prob["quantile"]["bound_ratio"] <= prob["bound_ratio"] < 1
    assert prob["quantile"]["q"] == 0.99 and prob["samples"] == N and prob["samples_failed"] == 0
    assert rep["top1_agreement"] == 1.0 and rep["top5_agreement"] == 1.0
    gap = np.abs(k - r).max()
    assert rep["max_probability_gap"] == pytest.approx(float(gap), rel=1e-3)
    assert rep["classification"][0]["gap_sample"] == int(np.argmax(np.abs(k - r).max(axis=1)))


def test_batching_and_formats_do_not_change_the_statistics(files, tmp_path, capsys):
    d = files
    reps = {}
    np.save(tmp_path / "one.npy", np.load(d / "ds.npz")["data"])
    for name, ds, batch in (("b16", d / "ds.npz", "16"), ("b7", d / "ds.npz", "7"), ("zip", d / "dsc.npz", "7"),
                            ("npy", d / "npy", "7"), ("one", tmp_path / "one.npy", "7")):
        rc, out, err = run_cli(_check(d, "good.keras", ds, "--batch", batch, "--json", str(tmp_path / f"{name}.json"),
                                      "--no-table"), capsys)
        assert rc == 0, out + err
        reps[name] = json.loads((tmp_path / f"{name}.json").read_text())
    # same batches: bit for bit, whatever the file format
    assert reps["b7"]["layers"] == reps["zip"]["layers"] == reps["one"]["layers"]
    assert reps["one"]["dataset"]["kind"] == "npy"
    strip = lambda layers: [{m: {k: v for k, v in (l[m] or {}).items() if k != "worst_sample_name"}
                             for m in ("chained", "isolated")} for l in layers]
    assert strip(reps["b7"]["layers"]) == strip(reps["npy"]["layers"])
    # other batches: Keras's float32 kernels round differently for another batch shape, so the figures (rounding
    # errors themselves) move, but every sample stays within its bound
    for a, b in zip(reps["b16"]["layers"], reps["b7"]["layers"]):
        for m in ("chained", "isolated"):
            assert a[m]["samples"] == b[m]["samples"] == N and a[m]["samples_failed"] == b[m]["samples_failed"] == 0
            assert a[m]["bound_ratio"] < 1 and b[m]["bound_ratio"] < 1
    # a folder names the file the worst sample came from
    names = {l["chained"]["worst_sample_name"] for l in reps["npy"]["layers"]}
    assert names and all(n.endswith(".npy") or ".npy[" in n for n in names)
    w = reps["npy"]["layers"][-1]["chained"]
    i = w["worst_sample"]
    assert w["worst_sample_name"] == ("a_000.npy" if i == 0 else f"a_001.npy[{i - 1}]" if i < 17 else f"b_{i:03d}.npy")


def test_classification_agreement_of_a_wrong_port(files, tmp_path, capsys):
    d = files
    rc, out, err = run_cli(_check(d, "flat.keras", d / "ds.npz", "--batch", "16", "--mode", "chained", "--json",
                                  str(tmp_path / "r.json"), "--no-table"), capsys)
    assert rc == 1
    rep = json.loads((tmp_path / "r.json").read_text())
    x = np.load(d / "ds.npz")["data"]
    r, k = _direct(d, "flat.keras", x)
    top1 = float(np.mean(np.argmax(r, 1) == np.argmax(k, 1)))
    top5 = float(np.mean([set(np.argsort(-a)[:5]) == set(np.argsort(-b)[:5]) for a, b in zip(r, k)]))
    assert top1 < 1.0 and rep["top1_agreement"] == pytest.approx(top1)
    assert rep["top5_agreement"] == pytest.approx(top5)
    assert rep["max_probability_gap"] == pytest.approx(float(np.abs(r - k).max()), rel=1e-3)
    assert rep["first_failing_layer"] == "fc" and "First failing layer: Caffe 'fc'" in out
    # the worst sample alone, diagnosed
    wsr = rep["worst_sample_report"]
    assert wsr["first_divergence"]["caffe_layer"] == "fc"
    assert wsr["first_divergence"]["diagnosis"][0]["cause"] == "flatten_order"


def test_baseline_written_checked_and_a_drifting_layer_named(files, tmp_path, capsys):
    d = files
    base = tmp_path / "profile.json"
    rc, out, _ = run_cli(_check(d, "good.keras", d / "ds.npz", "--baseline", str(base), "--no-table"), capsys)
    assert rc == 0 and f"Baseline {str(base)!r} written" in out
    text = base.read_text()
    doc = json.loads(text)
    assert list(doc) == ["format", "harness_version", "net", "weights", "model", "dataset", "mode", "quantile", "rule",
                         "layers"]
    assert list(doc["layers"]) == ["relu1/conv1", "pool1/pool1", "scale1/pool1", "fc/fc", "prob/prob"]
    assert doc["dataset"] == {"path": "ds.npz", "samples": N, "batch": 16}
    assert doc["rule"] == {"factor": 2.0, "floor": 0.01}
    assert 0 < doc["layers"]["fc/fc"]["chained"]["bound_ratio"] < 1
    # checked against itself: passes, the file untouched
    rc, out, _ = run_cli(_check(d, "good.keras", d / "ds.npz", "--baseline", str(base), "--no-table"), capsys)
    assert rc == 0 and "no layer grew past its baseline" in out and base.read_text() == text
    # fc weights off by 3e-6: within the float32 bound (equivalent), but past 2x the baseline
    rc, out, _ = run_cli(_check(d, "drift.keras", d / "ds.npz", "--baseline", str(base), "--no-table", "--json",
                                str(tmp_path / "r.json")), capsys)
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rc == 1 and "every one of 5 matched layer output(s) within its float32 bound" in out
    assert "BASELINE REGRESSION" in out and "'fc' [chained]" in out
    assert [r["layer"] for r in rep["baseline"]["regressions"]] == ["fc", "fc"]  # chained and isolated
    assert rep["baseline"]["regressions"][0]["now"] > 2 * doc["layers"]["fc/fc"]["chained"]["bound_ratio"]
    # a larger factor lets it pass; --update-baseline rewrites the profile, which then passes
    rc, _, _ = run_cli(_check(d, "drift.keras", d / "ds.npz", "--baseline", str(base), "--baseline-factor", "50",
                              "--no-table"), capsys)
    assert rc == 0
    rc, out, _ = run_cli(_check(d, "drift.keras", d / "ds.npz", "--baseline", str(base), "--update-baseline",
                                "--no-table"), capsys)
    assert rc == 0 and "updated" in out and base.read_text() != text
    # a run of chained comparisons only is held against the baseline's chained figures (isolated: a notice)
    rc, out, _ = run_cli(_check(d, "drift.keras", d / "ds.npz", "--baseline", str(base), "--mode", "chained",
                                "--no-table"), capsys)
    assert rc == 0 and "no layer grew past its baseline" in out
    # weights scaled by 1.01: the check fails at fc and so does the baseline
    rc, out, _ = run_cli(_check(d, "scaled.keras", d / "ds.npz", "--baseline", str(base), "--no-table"), capsys)
    assert rc == 1 and "First failing layer: Caffe 'fc'" in out and "'fc' [chained]" in out


@pytest.mark.parametrize("case, message", [
    ("shape", "array 'data' has shape (4, 3, 11, 13) (per sample (3, 11, 13)), the net's input 'data' takes "
              "(3, 13, 11) per sample"),
    ("nhwc", "the samples look NHWC"),
    ("empty", "has shape (0, 3, 13, 11): no samples"),
    ("keys", "array 'x' is not an input of the net"),
    ("folder", "'notes.txt' is not an .npy file"),
    ("emptyfolder", "the folder is empty"),
    ("images", "a.png"),
    ("imgflag", "--raw-scale needs a --dataset of images"),
    ("layer0", "--keras-preprocess needs a --dataset of images"),
    ("dataflag", "--data-gray needs a --dataset of images"),
    ("batch0", "--batch 0: must be a positive number"),
    ("both", "--workers and --scheduler: give one"),
    ("noflag", "--baseline needs --dataset PATH"),
    ("html", "--html is not supported with --dataset"),
])
def test_bad_dataset_input_exit_2_one_line(files, tmp_path, capsys, case, message):
    d = files
    ds = tmp_path / "ds.npz"
    extra: list[str] = []
    if case == "shape":
        np.savez(ds, data=np.zeros((4, 3, 11, 13), np.float32))
    elif case == "nhwc":
        np.savez(ds, data=np.zeros((4, 13, 11, 3), np.float32))
    elif case == "empty":
        np.savez(ds, data=np.zeros((0, 3, 13, 11), np.float32))
    elif case == "keys":
        np.savez(ds, x=np.zeros((4, 3, 13, 11), np.float32), y=np.zeros((4, 3, 13, 11), np.float32))
    elif case in ("folder", "emptyfolder", "images"):
        ds = tmp_path / "f"
        ds.mkdir()
        if case == "folder":
            np.save(ds / "a.npy", np.zeros((3, 13, 11), np.float32))
            (ds / "notes.txt").write_text("x")
        if case == "images":
            (ds / "a.png").write_bytes(b"\x89PNG")  # not an image; read with pycaffe's route
            extra = ["--raw-scale", "255"]
    else:
        ds = d / "ds.npz"
        extra = {"batch0": ["--batch", "0"], "imgflag": ["--raw-scale", "255"],
                 "layer0": ["--keras-preprocess", "caffe"], "dataflag": ["--data-gray"],
                 "both": ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
                 "html": ["--html", str(tmp_path / "r.html")]}.get(case, [])
    argv = _check(d, "good.keras", ds, *extra, "--json", str(tmp_path / "r.json"))
    if case == "noflag":
        argv = argv[:argv.index("--dataset")] + ["--baseline", str(tmp_path / "b.json")]
    rc, out, err = run_cli(argv, capsys)
    assert rc == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "b.json").exists()


def test_ctrl_c_reports_what_was_seen(files, tmp_path):
    """SIGINT to a running dataset run (its stderr a terminal: the progress bar shows samples/s): the verdict says
    how far it got, the JSON says interrupted, no baseline is written, exit 130."""
    import os
    import pty
    import select
    import signal
    import subprocess
    import time

    d = files
    big = tmp_path / "big.npz"
    np.savez(big, data=np.random.default_rng(0).standard_normal((20000, 3, 13, 11)).astype(np.float32))
    master, slave = pty.openpty()
    argv = [sys.executable, "-m", "harness.cli", *_check(d, "good.keras", big, "--batch", "8", "--mode", "chained",
                                                         "--json", str(tmp_path / "r.json"), "--baseline",
                                                         str(tmp_path / "b.json"), "--no-table")]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), COLUMNS="120")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    seen, t0 = b"", time.time()
    try:
        while b"samples/s" not in seen and time.time() - t0 < 120:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        assert b"samples/s" in seen, seen[-500:]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = out.decode()
    assert proc.returncode == 130, text
    import re

    m = re.search(r"INTERRUPTED after (\d+) of 20000 samples", text)
    assert m and 0 < int(m.group(1)) < 20000, text
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["interrupted"] is True and rep["equivalent"] is False
    assert rep["dataset"]["samples"] == int(m.group(1)) and rep["dataset"]["total"] == 20000
    assert rep["layers"][0]["chained"]["samples"] == int(m.group(1))
    assert not (tmp_path / "b.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _drawn_images(folder: Path, n: int = 12) -> list[str]:
    """Gradients, noise and a rectangle, distinct per image; 13 x 11 like the net's input."""
    cv2 = pytest.importorskip("cv2")
    folder.mkdir()
    rng = np.random.default_rng(4)
    for i in range(n):
        img = np.zeros((13, 11, 3), np.uint8)
        img[..., 0] = np.arange(11)[None, :] * (i + 3) % 256
        img[..., 1] = np.arange(13)[:, None] * (2 * i + 5) % 256
        img[..., 2] = rng.integers(0, 256, (13, 11))
        cv2.rectangle(img, (i % 5, 2), (i % 5 + 4, 9), (255 - 9 * i, 40, 200), -1)
        cv2.imwrite(str(folder / f"im_{i:02d}.png"), img)
    return sorted(str(p) for p in folder.iterdir())


CAFFE_FLAGS = ["--channel-swap", "2,1,0", "--raw-scale", "255", "--mean-value", "103.939,116.779,123.68"]


def test_a_dataset_of_images_through_both_preprocessings(files, tmp_path, capsys):
    """Drawn images read as Caffe reads and preprocesses them (pycaffe route) and as the Keras side does
    (keras.applications' 'caffe' mode: the same rule), a batch at a time: layer 0 is the first row and passes, the
    isolated statistics are those of the .npz of Caffe's preprocessed batch bit for bit (the reference feeds them),
    and the worst sample is named by its file."""
    from harness.reference.preprocess import CaffeTransform, load_batch

    d = files
    paths = _drawn_images(tmp_path / "img")
    rc, out, err = run_cli(_check(d, "good.keras", tmp_path / "img", "--batch", "5", *CAFFE_FLAGS, "--keras-preprocess",
                                  "caffe", "--json", str(tmp_path / "i.json"), "--no-table"), capsys)
    assert rc == 0, out + err
    t = CaffeTransform.from_pycaffe(channel_swap=(2, 1, 0), raw_scale=255.0, mean_values=(103.939, 116.779, 123.68))
    np.savez(tmp_path / "pre.npz", data=load_batch(paths, t, input_hw=(13, 11)))
    rc, out, err = run_cli(_check(d, "good.keras", tmp_path / "pre.npz", "--batch", "5", "--json",
                                  str(tmp_path / "n.json"), "--no-table"), capsys)
    assert rc == 0, out + err
    img, arr = (json.loads((tmp_path / f).read_text()) for f in ("i.json", "n.json"))
    assert img["dataset"]["kind"] == "images" and img["dataset"]["samples"] == 12
    l0 = img["layers"][0]
    assert (l0["caffe_layer"], l0["caffe_type"], l0["passed"]) == ("layer0:preprocess", "Preprocess", True)
    assert l0["chained"]["samples"] == 12 and l0["chained"]["bound_ratio"] < 1
    for a, b in zip(img["layers"][1:], arr["layers"]):
        assert {k: v for k, v in a["isolated"].items() if k != "worst_sample_name"} == \
            {k: v for k, v in b["isolated"].items() if k != "worst_sample_name"}
        assert a["chained"]["passed"] and a["isolated"]["worst_sample_name"] == \
            Path(paths[a["isolated"]["worst_sample"]]).name


def test_an_image_dataset_with_the_wrong_keras_preprocessing_names_layer_0(files, tmp_path, capsys):
    d = files
    _drawn_images(tmp_path / "img", 6)
    rc, out, err = run_cli(_check(d, "good.keras", tmp_path / "img", "--batch", "4", *CAFFE_FLAGS, "--keras-preprocess",
                                  "torch", "--mode", "chained", "--json", str(tmp_path / "r.json"), "--no-table"),
                           capsys)
    assert rc == 1, out + err
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["first_failing_layer"] == "layer0:preprocess" and "First failing layer: Caffe 'layer0:preprocess'" in out
    assert rep["layers"][0]["chained"]["samples_failed"] == 6
    diag = rep["layer0_diagnosis"]
    assert diag is not None and diag["images"][0].endswith(rep["layers"][0]["chained"]["worst_sample_name"])
    assert diag["diagnosis"] and all(c["cause"].startswith("preprocess_") for c in diag["diagnosis"])


def test_quantile_sketch_accuracy_and_merge_order():
    """The p99 sketch is within its 1% relative accuracy of the exact nearest-rank p99, never above the maximum, and
    the same whatever the split of the values into batches and their order (what makes workers agree)."""
    import math

    from harness.compare.dataset.aggregate import ALPHA, Sketch

    rng = np.random.default_rng(9)
    v = np.concatenate([np.exp(rng.normal(-3, 2, 4999)), [0.0, 0.0, np.inf]])
    exact = np.sort(v)[math.ceil(0.99 * v.size) - 1]
    one = Sketch()
    one.add(v)
    q = one.quantile(0.99)
    assert abs(q - exact) <= ALPHA * exact * 1.0001 and q <= np.max(v[np.isfinite(v)])
    parts = Sketch()
    for chunk in reversed(np.array_split(rng.permutation(v), 7)):
        parts.add(chunk)
    assert parts.bins == one.bins and (parts.zero, parts.inf, parts.n) == (one.zero, one.inf, one.n)
    assert parts.quantile(0.99) == q and parts.quantile(0.5) == one.quantile(0.5)
    assert one.quantile(0.0001) == 0.0  # the zeros come first
    small = Sketch()
    small.add(np.array([0.25, 0.5, 3.0]))
    assert 3.0 * (1 - ALPHA) <= small.quantile(0.99) <= 3.0  # nearest rank of 3 values: the largest (its bin)


TWO_INPUTS = """
name: "two"
layer { name: "a" type: "Input" top: "a" input_param { shape { dim: 1 dim: 3 dim: 5 dim: 7 } } }
layer { name: "b" type: "Input" top: "b" input_param { shape { dim: 1 dim: 2 dim: 5 dim: 7 } } }
layer { name: "cat" type: "Concat" bottom: "a" bottom: "b" top: "cat" }
layer { name: "conv" type: "Convolution" bottom: "cat" top: "conv" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 6 } }
"""


def test_an_npz_keyed_by_input_name_feeds_every_input(tmp_path, capsys):
    (tmp_path / "two.prototxt").write_text(TWO_INPUTS)
    rng = np.random.default_rng(6)
    np.savez(tmp_path / "ds.npz", b=rng.standard_normal((9, 2, 5, 7)).astype(np.float32),
             a=rng.standard_normal((9, 3, 5, 7)).astype(np.float32))
    rc, out, err = run_cli(["check", str(tmp_path / "two.prototxt"), "--dataset", str(tmp_path / "ds.npz"), "--batch",
                            "4", "--json", str(tmp_path / "r.json"), "--no-table"], capsys)
    assert rc == 0, out + err
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["dataset"]["samples"] == 9 and [l["caffe_layer"] for l in rep["layers"]] == ["cat", "conv", "fc"]
    c = rep["classification"]  # an InnerProduct net output: logits (softmax-ed for the probability gap)
    assert [(x["output"], x["kind"], x["classes"], x["samples"]) for x in c] == [("fc", "logits", 6, 9)]
    assert rep["top1_agreement"] == 1.0 and rep["top5_agreement"] == 1.0 and rep["max_probability_gap"] < 1e-5
    np.savez(tmp_path / "bad.npz", a=np.zeros((9, 3, 5, 7), np.float32), b=np.zeros((8, 2, 5, 7), np.float32))
    rc, out, err = run_cli(["check", str(tmp_path / "two.prototxt"), "--dataset", str(tmp_path / "bad.npz")], capsys)
    assert rc == 2 and "the inputs hold different numbers of samples (a: 9, b: 8)" in err


def test_top_k_agreement_counts_ties_either_way_and_ranks_a_softmax_by_its_logits():
    from harness.compare.dataset.batch import _agreement

    # saturated probabilities: one class at 1, the other nine tied at 0 in the reference, Keras's zeros in another
    # order -- any five of them are a top five of the reference
    r = np.zeros((2, 10))
    r[0, 3] = r[1, 7] = 1.0
    v = r.copy()
    v[0, 9] = v[1, 0] = 1e-40  # float32 denormals the reference does not have
    cb = _agreement("prob", "probabilities", r, v)
    assert (cb.top1, cb.top5, cb.gap, cb.gap_at) == (2, 2, 1e-40, 0)
    # a real disagreement: Keras's second class is the reference's last
    r2 = np.array([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    v2 = np.array([[5.0, 0.5, 3.0, 2.0, 1.0, 4.5]])
    assert (_agreement("o", "logits", r2, v2).top1, _agreement("o", "logits", r2, v2).top5) == (1, 0)
    # ranked by the logits when given: probabilities that tie (both 0) but logits that do not
    p = np.array([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    assert _agreement("o", "probabilities", p, p, (r2, v2)).top5 == 0
    assert _agreement("o", "probabilities", p, p, (r2, r2)).top5 == 1
