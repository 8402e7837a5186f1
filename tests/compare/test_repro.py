"""`caffe-harness check --repro DIR`: the written case reproduces the verdict from a fresh process, holds only the
divergent span, and bad input writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support import run_cli
from support.ports import write_port_files

ROOT = Path(__file__).resolve().parents[2]
BUGS = {"reshape": ("conv1", "kernel_reshaped"), "bn_epsilon": ("bn1", "bn_epsilon"),
        "flatten_order": ("fc", "flatten_order")}


def _fresh(args, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", GITHUB_ACTIONS="")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("repro")
    net = write_port_files(d, {bug: bug for bug in BUGS})
    x = np.random.default_rng(7).standard_normal((2, 3, 13, 11)).astype(np.float32)
    np.savez(d / "x.npz", data=x)
    return d, net, x


def _check(d, bug, out, capsys, *extra):
    return run_cli(["check", str(d / "net.prototxt"), "--weights", str(d / "w.npz"), "--keras", str(d / f"{bug}.keras"),
                    "--inputs", str(d / "x.npz"), "--no-table", "--annotations", "none", "--repro", str(out), *extra],
                   capsys)


def _reproduce(out: Path) -> subprocess.CompletedProcess:
    return _fresh(["-m", "harness.cli", "check", "net.prototxt", "--weights", "weights.caffemodel", "--keras",
                   "model.keras", "--inputs", "inputs.npz", "--no-table", "--annotations", "none"], out)


@pytest.mark.parametrize("bug", list(BUGS))
def test_repro_reproduces_verdict_in_fresh_process(files, bug, tmp_path, capsys):
    d, net, _ = files
    layer, cause = BUGS[bug]
    out = tmp_path / "case"
    rc, stdout, err = _check(d, bug, out, capsys)
    assert rc == 1 and f"First divergent layer: Caffe '{layer}'" in stdout, stdout + err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["net.prototxt", "weights.caffemodel", "inputs.npz", "model.keras", "README.md", "test_repro.py"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the temporary folder was renamed
    readme = (out / "README.md").read_text()
    assert f"Caffe '{layer}' diverges" in readme and cause in readme and "fix:" in readme
    assert "caffe-harness check net.prototxt --weights weights.caffemodel --keras model.keras" in readme
    res = _reproduce(out)
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"First divergent layer: Caffe '{layer}'" in res.stdout
    likely = res.stdout.split("Likely cause(s):\n", 1)[1]
    assert likely.startswith(f"  - {cause} "), res.stdout


def test_middle_divergence_holds_a_few_percent_of_the_weights(files, tmp_path, capsys):
    from harness.caffe import load_net
    from harness.compare.engine.passes import reference_forward

    d, net, x = files
    out = tmp_path / "bn"
    rc, _, err = _check(d, "bn_epsilon", out, capsys)
    assert rc == 1, err
    sub = load_net(out / "net.prototxt", out / "weights.caffemodel")
    assert [(lay.name, lay.type) for lay in sub.layers] == [("pool1", "Input"), ("bn1", "BatchNorm"),
                                                            ("scale1", "Scale")]
    n_sub = sum(b.size for lay in sub.layers for b in lay.blobs)
    n_all = sum(b.size for lay in net.layers for b in lay.blobs)
    assert n_sub == 8 + 8 + 1 + 8 + 8 and n_sub / n_all < 0.05
    with np.load(out / "inputs.npz") as z:
        assert z.files == ["pool1"] and z["pool1"].dtype == np.float32 and z["pool1"].shape == (2, 8, 3, 3)
        ref = reference_forward(net, {"data": x})["pool1/pool1"]
        np.testing.assert_array_equal(z["pool1"], ref.astype(np.float32))
    import keras

    import harness  # noqa: F401  (registers the harness's layers for safe mode)

    model = keras.saving.load_model(str(out / "model.keras"), safe_mode=True)
    assert [type(l).__name__ for l in model.layers] == ["InputLayer", "BatchNormalization"]
    assert model.layers[1].epsilon == pytest.approx(1e-3) and tuple(model.input.shape) == (None, 3, 3, 8)
    res = _fresh(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:caffe_harness", "test_repro.py"], out)
    assert res.returncode == 0 and "1 passed" in res.stdout, res.stdout + res.stderr


def test_chained_only_failure_uses_the_chained_values(files, tmp_path, capsys):
    """With --mode chained the fc pair fails only chained: the case starts at fc, fed the Keras model's own
    chained value of pool1 (helper Flatten included in the Keras sub-model)."""
    import keras

    d, net, x = files
    out = tmp_path / "chained"
    rc, stdout, err = _check(d, "flatten_order", out, capsys, "--mode", "chained")
    assert rc == 1 and "First divergent layer: Caffe 'fc' (InnerProduct) <-> Keras" in stdout, stdout + err
    assert "chained values" in (out / "README.md").read_text()
    port = keras.saving.load_model(str(d / "flatten_order.keras"), safe_mode=True)
    pool = port.get_layer(index=len(port.layers) - 4).output  # BatchNormalization, before Flatten
    chained = keras.Model(port.input, pool)(x.transpose(0, 2, 3, 1)).numpy().transpose(0, 3, 1, 2)
    with np.load(out / "inputs.npz") as z:
        np.testing.assert_array_equal(z["pool1"], chained)
    res = _reproduce(out)
    assert res.returncode == 1 and "First divergent layer: Caffe 'fc'" in res.stdout
    assert "  - flatten_order " in res.stdout


def test_repro_layer_picks_the_pair_of_a_segment_layer(files, tmp_path, capsys):
    d, _, _ = files
    out = tmp_path / "s"
    rc, _, err = _check(d, "bn_epsilon", out, capsys, "--repro-layer", "scale1")
    assert rc == 1, err
    assert "EXPECTED_LAYER = 'bn1'" in (out / "test_repro.py").read_text()
    assert "EXPECTED_CAUSE = 'bn_epsilon'" in (out / "test_repro.py").read_text()


@pytest.mark.parametrize("extra, message", [
    (["--repro-layer", "nosuch"], "--repro-layer 'nosuch' is not a Caffe layer of the report"),
    (["--repro-layer", "prob"], "Caffe layer 'prob' does not diverge"),
])
def test_bad_repro_layer_is_one_line_exit_2_nothing_written(files, tmp_path, capsys, extra, message):
    d, _, _ = files
    rc, _, err = _check(d, "reshape", tmp_path / "case", capsys, *extra)
    lines = [l for l in err.splitlines() if l.startswith("caffe-harness: error")]
    assert rc == 2 and len(lines) == 1 and message in lines[0], err
    assert list(tmp_path.iterdir()) == []


def test_uncreatable_dir_refused_before_running(files, tmp_path, capsys):
    d, _, _ = files
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep")
    for target, message in [(tmp_path / "no" / "such" / "case", "does not exist"),
                            (tmp_path / "full", "exists and is not an empty folder")]:
        rc, out, err = _check(d, "reshape", target, capsys)
        assert rc == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["full", "x.txt"]
    rc, _, err = run_cli(["check", str(d / "net.prototxt"), "--repro-layer", "conv1"], capsys)
    assert rc == 2 and "--repro-layer needs --repro DIR" in err
