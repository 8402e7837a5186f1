"""``caffe-harness info``: the public JSON (schema and values), the table, input shapes, no TensorFlow import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "fixtures" / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "net.prototxt").exists())


def _info_json(capsys, *argv):
    assert main(["info", *map(str, argv), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one object, one line
    return json.loads(out)


def _check_schema(obj):
    assert set(obj) == {"name", "inputs", "outputs", "layers", "totals", "memory"}
    assert obj["memory"]["estimate"] is True and set(obj["memory"]) == {"estimate", "check", "dataset_batch"}
    for part in ("check", "dataset_batch"):
        assert set(obj["memory"][part]) == {"batch", "peak_bytes", "records_bytes", "live_bytes", "weights_bytes"}
        assert all(type(v) is int for v in obj["memory"][part].values())
    assert isinstance(obj["name"], str)
    assert all(isinstance(k, str) and all(type(d) is int for d in v) for k, v in obj["inputs"].items())
    assert all(isinstance(b, str) for b in obj["outputs"])
    for lay in obj["layers"]:
        assert set(lay) == {"name", "type", "bottoms", "tops", "top_shapes", "param_shapes", "macs"}
        assert len(lay["top_shapes"]) == len(lay["tops"])
        assert all(type(d) is int for s in lay["top_shapes"] + lay["param_shapes"] for d in s)
        assert type(lay["macs"]) is int
    assert set(obj["totals"]) == {"params", "macs", "activation_bytes"}


@pytest.mark.parametrize("case", CASES)
def test_json_top_shapes_equal_real_caffe(case, capsys):
    d = GOLDEN / case
    obj = _info_json(capsys, d / "net.prototxt", "--weights", d / "weights.caffemodel")
    _check_schema(obj)
    meta = json.loads((d / "case.json").read_text())
    assert obj["inputs"] == meta["inputs"]
    with np.load(d / "blobs.npz") as z:
        want = {k: list(z[k].shape) for k in z.files if "_split/" not in k}
    got = {f"{lay['name']}/{t}": s for lay in obj["layers"] for t, s in zip(lay["tops"], lay["top_shapes"])}
    assert got == want
    # parameter totals are the sizes of the blobs real Caffe wrote
    from harness.caffe import load_net

    net = load_net(d / "net.prototxt", d / "weights.caffemodel")
    assert obj["totals"]["params"] == sum(int(b.size) for lay in net.layers for b in lay.blobs)


def test_json_values_conv_basic(capsys):
    obj = _info_json(capsys, GOLDEN / "conv_basic" / "net.prototxt")
    assert obj["name"] == "conv_basic"
    assert obj["inputs"] == {"data": [2, 3, 9, 11]}
    by = {lay["name"]: lay for lay in obj["layers"]}
    rect = by["conv_rect"]
    assert rect["type"] == "Convolution" and rect["bottoms"] == ["data"] and rect["tops"] == ["conv_rect"]
    assert rect["param_shapes"] == [[5, 3, 3, 2], [5]]
    n, c, h, w = rect["top_shapes"][0]
    assert rect["macs"] == n * c * h * w * 3 * 3 * 2
    assert by["conv_1x1_nobias"]["param_shapes"] == [[6, 4, 1, 1]]
    assert obj["totals"]["params"] == 975
    assert obj["totals"]["macs"] == sum(lay["macs"] for lay in obj["layers"])
    assert obj["totals"]["activation_bytes"] == 4 * sum(int(np.prod(s)) for lay in obj["layers"]
                                                        for s in lay["top_shapes"])
    # conv_k3p1 feeds conv_1x1_nobias, so it is not an output
    assert obj["outputs"] == ["conv_rect", "conv_1x1_nobias", "conv_s2_k7p3", "conv_s4_k11"]


def test_json_in_place_and_outputs(capsys):
    obj = _info_json(capsys, GOLDEN / "resnet_block" / "net.prototxt")
    by = {lay["name"]: lay for lay in obj["layers"]}
    assert by["bn1"]["bottoms"] == by["bn1"]["tops"] == ["conv1"]
    assert by["bn1"]["param_shapes"] == [[8], [8], [1]]
    assert by["scale1"]["param_shapes"] == [[8], [8]]
    assert obj["outputs"] == ["prob"]


def test_table_rows_and_totals(capsys):
    assert main(["info", str(GOLDEN / "inception_block" / "net.prototxt")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    row = next(x for x in lines if x.startswith("concat "))
    # pool_in k3 s2 ceil on 15x13 -> 7x6; branches 4+5+3+2 = 14 channels
    assert "Concat" in row and "b1, b2, b3, b4 -> concat" in row and "1x14x7x6" in row
    fc = next(x for x in lines if x.startswith("fc "))
    assert "10x56, 10" in fc and "560" in fc
    assert "total parameters: 962" in out
    assert "total multiply-adds: 16,226" in out


def test_input_shape_option_for_train_val(tmp_path, capsys):
    p = tmp_path / "train_val.prototxt"
    p.write_text(
        'name: "tv"\n'
        'layer { name: "data" type: "Data" top: "data" top: "label" data_param { source: "x" batch_size: 4 } }\n'
        'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
        'convolution_param { num_output: 5 kernel_size: 3 } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip" inner_product_param { num_output: 2 } }\n'
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }\n'
    )
    obj = _info_json(capsys, p, "--input-shape", "data=4,3,9,7")
    assert obj["inputs"] == {"data": [4, 3, 9, 7]}
    by = {lay["name"]: lay for lay in obj["layers"]}
    assert by["conv"]["top_shapes"] == [[4, 5, 7, 5]]
    assert by["ip"]["param_shapes"] == [[2, 175], [2]]
    assert "loss" not in by


def test_absurd_sizes_still_print_shapes(tmp_path, capsys):
    p = tmp_path / "huge.prototxt"
    p.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 64 dim: 512 dim: 4096 '
                 'dim: 4096 } } }\nlayer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                 'convolution_param { num_output: 256 kernel_size: 1 } }\n')
    obj = _info_json(capsys, p)
    assert obj["layers"][1]["top_shapes"] == [[64, 256, 4096, 4096]]
    assert obj["totals"]["activation_bytes"] == 4 * (64 * 512 * 4096 * 4096 + 64 * 256 * 4096 * 4096)


def test_info_does_not_import_tensorflow():
    code = (
        "import sys, io, contextlib\n"
        "from harness.cli import main\n"
        f"buf = io.StringIO()\n"
        f"with contextlib.redirect_stdout(buf):\n"
        f"    rc = main(['info', {str(GOLDEN / 'resnet_block' / 'net.prototxt')!r}, '--json'])\n"
        "assert rc == 0, rc\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(heavy)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
