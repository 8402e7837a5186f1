"""The motivating question's example (examples/motivating_question): the reshape port fails ``check`` with
``kernel_reshaped`` ranked first at conv1, the transpose port passes, through the CLI and its JSON report."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "motivating_question"


def _load_example():
    spec = importlib.util.spec_from_file_location("motivating_question_run", EXAMPLE / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_caffemodel_written_by_the_example_loads(tmp_path):
    from harness.caffe import load_net

    ex = _load_example()
    blobs = ex.make_weights()
    ex.write_caffemodel(tmp_path / "w.caffemodel", blobs)
    net = load_net(EXAMPLE / "net.prototxt", weights=tmp_path / "w.caffemodel")
    w, b = net.layer("conv1").blobs
    assert w.shape == (96, 3, 11, 11) and b.shape == (96,)
    np.testing.assert_array_equal(w, blobs["conv1"][0])
    np.testing.assert_array_equal(b, blobs["conv1"][1])


def test_example_end_to_end(tmp_path, capsys):
    ex = _load_example()
    rc = ex.main(["--out", str(tmp_path)])
    out = capsys.readouterr().out
    buggy = json.loads((tmp_path / "buggy.json").read_text())
    fixed = json.loads((tmp_path / "fixed.json").read_text())
    assert buggy["equivalent"] is False
    fd = buggy["first_divergence"]
    assert fd["caffe_layer"] in ("conv1", "relu1")  # Conv2D(activation="relu") is conv1 + relu1 in one pair
    top = fd["diagnosis"][0]
    assert top["cause"] == "kernel_reshaped" and top["confidence"] > 0.99
    assert "transpose(2, 3, 1, 0)" in top["fix"]
    assert fixed["equivalent"] is True and fixed["first_divergence"] is None
    assert "kernel_reshaped" in out
    assert rc == 0
