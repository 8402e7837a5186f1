"""`caffe-harness convert`: in-process through harness.cli.main (TensorFlow is imported once per test session)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import support.converted as K
from support import GOLDEN, assert_blob_close, net_text
import harness.convert as hc
from harness.cli import main

CASE = GOLDEN / "conv_basic"


def test_convert_with_weights_matches_golden(tmp_path, capsys):
    out = tmp_path / "m.keras"
    rc = main(["convert", str(CASE / "net.prototxt"), "--weights", str(CASE / "weights.caffemodel"), "-o", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert f"wrote {out}" in cap.out and "notice" not in cap.err
    model = hc.load_model(out)
    blobs = dict(np.load(CASE / "blobs.npz"))
    got = K.run_keys(model, dict(np.load(CASE / "inputs.npz")))
    for k, v in got.items():
        assert_blob_close(v, blobs[k], k, rtol=K.REL_TOL)
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]


def test_convert_without_weights_uses_seeded_random_weights(tmp_path, capsys):
    a, b, c = (tmp_path / f"{n}.keras" for n in "abc")
    assert main(["convert", str(CASE / "net.prototxt"), "-o", str(a)]) == 0
    assert "seeded random weights (seed 0)" in capsys.readouterr().err
    assert main(["convert", str(CASE / "net.prototxt"), "--seed", "0", "-o", str(b)]) == 0
    assert main(["convert", str(CASE / "net.prototxt"), "--seed", "3", "-o", str(c)]) == 0
    wa, wb, wc = (hc.load_model(p).get_layer("conv_k3p1").get_weights()[0] for p in (a, b, c))
    np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(wa, wc)


def test_convert_input_shape_override(tmp_path, capsys):
    out = tmp_path / "m.keras"
    assert main(["convert", str(CASE / "net.prototxt"), "--input-shape", "data=1,3,13,17", "-o", str(out)]) == 0
    model = hc.load_model(out)
    assert tuple(model.inputs[0].shape) == (None, 13, 17, 3)


@pytest.mark.parametrize("argv_tail,msg", [
    (["-o", "{d}/m.h5"], "must end in .keras"),
    (["-o", "{d}/missing/m.keras"], "does not exist"),
    (["--weights", "{d}/nope.caffemodel", "-o", "{d}/m.keras"], "nope.caffemodel"),
    (["--input-shape", "data=1,3", "-o", "{d}/m.keras"], ""),
])
def test_convert_errors_one_line_exit_2_nothing_written(tmp_path, capsys, argv_tail, msg):
    argv = ["convert", str(CASE / "net.prototxt")] + [a.format(d=tmp_path) for a in argv_tail]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2
    line = [ln for ln in err.splitlines() if ln.startswith("caffe-harness: error:")]
    assert len(line) == 1 and msg in line[0] and "Traceback" not in err
    assert os.listdir(tmp_path) == []


def test_convert_unconvertible_layer_names_it(tmp_path, capsys):
    proto = tmp_path / "fc.prototxt"
    proto.write_text(net_text('layer { name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1" '
                              'inner_product_param { num_output: 2 axis: 0 } }', {"data": (1, 3, 4, 5)}))
    out = tmp_path / "m.keras"
    assert main(["convert", str(proto), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "'fc1'" in err and "axis" in err
    assert not out.exists()


def test_convert_fold_batchnorm(tmp_path, capsys):
    case = GOLDEN / "resnet_block"
    out = tmp_path / "m.keras"
    assert main(["convert", str(case / "net.prototxt"), "--weights", str(case / "weights.caffemodel"),
                 "--fold-batchnorm", "-o", str(out)]) == 0
    model = hc.load_model(out)
    mp = model.harness_mapping
    assert mp["folded"] == {"scale1": "bn1", "scale_a": "bn_a", "scale_b": "bn_b"}
    blobs = dict(np.load(case / "blobs.npz"))
    got = K.run_keys(model, dict(np.load(case / "inputs.npz")))
    assert "bn1/conv1" not in got and "scale1/conv1" in got
    for k, v in got.items():
        assert_blob_close(v, blobs[k], k, rtol=K.REL_TOL)
