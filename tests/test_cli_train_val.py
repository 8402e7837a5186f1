"""A train_val prototxt (Data layers with no shape, loss and accuracy layers) through the CLI: the user gives the
input shape with --input-shape or by passing the input arrays; without either the error says how."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.cli import main

TRAIN_VAL = """
name: "tv"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  data_param { source: "train_lmdb" batch_size: 4 backend: LMDB } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { crop_size: 7 mean_value: 104 mean_value: 117 mean_value: 123 }
  data_param { source: "val_lmdb" batch_size: 2 backend: LMDB } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "acc" type: "Accuracy" bottom: "fc" bottom: "label" top: "acc" include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""


@pytest.fixture()
def train_val(tmp_path):
    p = tmp_path / "train_val.prototxt"
    p.write_text(TRAIN_VAL)
    return p


def test_reference_and_check_need_an_input_shape(train_val, tmp_path, capsys):
    assert main(["reference", str(train_val), "--out", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--input-shape data=N,C,H,W" in err[0]
    assert not (tmp_path / "o.npz").exists()


def test_reference_with_input_shape(train_val, tmp_path, capsys):
    out = tmp_path / "o.npz"
    assert main(["reference", str(train_val), "--input-shape", "data=2,3,7,6", "--out", str(out)]) == 0
    with np.load(out) as z:
        assert list(z.files) == ["data/data", "conv/conv", "relu/conv", "fc/fc"]
        assert z["fc/fc"].shape == (2, 5)
        assert (z["relu/conv"] >= 0).all() and (z["conv/conv"] < 0).any()


def test_check_with_input_arrays_sizes_the_net(train_val, tmp_path, capsys):
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    rc = main(["check", str(train_val), "--input", f"data={tmp_path / 'x.npy'}", "--json", str(tmp_path / "r.json"),
               "--no-table"])
    assert rc == 0, capsys.readouterr()
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["equivalent"] is True
    assert [row["caffe_layer"] for row in rep["layers"]] == ["conv", "relu", "fc"]
    assert rep["layers"][-1]["shape"] == [2, 5]
    rc = main(["check", str(train_val), "--input-shape", "data=1,3,9,8", "--no-table", "--mode", "chained"])
    assert rc == 0
