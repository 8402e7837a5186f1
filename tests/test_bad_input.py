"""Every bad input of issue 2, through the CLI: exit code 2, one line on stderr naming the file/layer/value, no
traceback, nothing written.  One table; each row is a file set, the command line and the words the message needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from support import GOLDEN


HEAD = 'name: "bad"\nlayer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 5 dim: 7 } } }\n'


def _conv(params: str, name: str = "conv", bottom: str = "data", top: str = "conv") -> str:
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top}" '
            f'convolution_param {{ {params} }} }}\n')


def _npz_bytes(tmp: Path, arrays: dict) -> bytes:
    p = tmp / "_w.npz"
    np.savez(p, **arrays)
    data = p.read_bytes()
    p.unlink()
    return data


def _golden_model_bytes(n: int | None = None) -> bytes:
    data = (GOLDEN / "conv_basic" / "weights.caffemodel").read_bytes()
    return data if n is None else data[:n]


# id -> (files: {name: text|bytes|callable(tmp)->bytes}, argv (paths relative to tmp), words in the message)
ROWS = {
    "syntax_error_line_col": (
        {"net.prototxt": HEAD + 'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"\n'
                                '  convolution_param { num_output: 4 kernel_size: }\n}\n'},
        ["info", "net.prototxt"], ["net.prototxt:4:"]),
    "unknown_layer_type": (
        {"net.prototxt": HEAD + 'layer { name: "weird" type: "FancyNorm" bottom: "data" top: "weird" }\n'},
        ["info", "net.prototxt"], ["net.prototxt", "'weird'", "FancyNorm", "Convolution", "Pooling"]),
    "python_layer": (
        {"net.prototxt": HEAD + 'layer { name: "py" type: "Python" bottom: "data" top: "py" '
                                'python_param { module: "evil" layer: "Evil" } }\n'},
        ["info", "net.prototxt"], ["net.prototxt", "'py'", "Python"]),
    "missing_bottom": (
        {"net.prototxt": HEAD + _conv("num_output: 4 kernel_size: 3", bottom="nothere")},
        ["info", "net.prototxt"], ["net.prototxt", "'conv'", "'nothere'"]),
    "duplicate_top_not_in_place": (
        {"net.prototxt": HEAD + _conv("num_output: 4 kernel_size: 3")
         + _conv("num_output: 4 kernel_size: 1", name="conv2", top="conv")},
        ["info", "net.prototxt"], ["net.prototxt", "'conv2'", "'conv'"]),
    "negative_dim": (
        {"net.prototxt": HEAD.replace("dim: 5", "dim: -5") + _conv("num_output: 4 kernel_size: 3")},
        ["info", "net.prototxt"], ["net.prototxt", "-5"]),
    "zero_dim": (
        {"net.prototxt": HEAD.replace("dim: 7", "dim: 0") + _conv("num_output: 4 kernel_size: 3")},
        ["info", "net.prototxt"], ["net.prototxt", "'data'", "0"]),
    "zero_stride": (
        {"net.prototxt": HEAD + _conv("num_output: 4 kernel_size: 3 stride: 0")},
        ["info", "net.prototxt"], ["net.prototxt", "'conv'", "stride=0x0"]),
    "kernel_larger_than_padded_input": (
        {"net.prototxt": HEAD + _conv("num_output: 4 kernel_size: 8 pad: 1")},
        ["info", "net.prototxt"], ["net.prototxt", "'conv'", "kernel_h=8", "5+2*1=7"]),
    "group_not_dividing_channels": (
        {"net.prototxt": HEAD + _conv("num_output: 4 kernel_size: 3 group: 2")},
        ["info", "net.prototxt"], ["net.prototxt", "'conv'", "group=2", "3"]),
    "pooling_pad_ge_kernel": (
        {"net.prototxt": HEAD + 'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
                                'pooling_param { pool: MAX kernel_size: 2 pad: 2 } }\n'},
        ["info", "net.prototxt"], ["net.prototxt", "'pool'", "pad=2x2", "kernel=2x2"]),
    "even_lrn_size": (
        {"net.prototxt": HEAD + 'layer { name: "norm" type: "LRN" bottom: "data" top: "norm" '
                                'lrn_param { local_size: 4 } }\n'},
        ["info", "net.prototxt"], ["net.prototxt", "'norm'", "local_size=4"]),
    "3d_kernel_on_4d_blob": (
        {"net.prototxt": HEAD + _conv("num_output: 4 kernel_size: 3 kernel_size: 3 kernel_size: 3")},
        ["info", "net.prototxt"], ["net.prototxt", "'conv'", "kernel_size=[3, 3, 3]"]),
    "empty_net": (
        {"net.prototxt": 'name: "empty"\n'},
        ["info", "net.prototxt"], ["net.prototxt", "no layers"]),
    "truncated_caffemodel": (
        {"net.prototxt": (GOLDEN / "conv_basic" / "net.prototxt").read_text(),
         "w.caffemodel": _golden_model_bytes(700)},
        ["info", "net.prototxt", "--weights", "w.caffemodel"], ["w.caffemodel"]),
    "garbage_caffemodel": (
        {"net.prototxt": (GOLDEN / "conv_basic" / "net.prototxt").read_text(),
         "w.caffemodel": bytes(range(256)) * 8},
        ["info", "net.prototxt", "--weights", "w.caffemodel"], ["w.caffemodel"]),
    "prototxt_as_weights": (
        {"net.prototxt": (GOLDEN / "conv_basic" / "net.prototxt").read_text(),
         "w.caffemodel": (GOLDEN / "conv_basic" / "net.prototxt").read_text()},
        ["info", "net.prototxt", "--weights", "w.caffemodel"], ["w.caffemodel", "prototxt"]),
    "weights_blob_wrong_shape": (
        {"net.prototxt": HEAD + _conv("num_output: 4 kernel_h: 3 kernel_w: 2"),
         "w.npz": lambda tmp: _npz_bytes(tmp, {"conv/0": np.zeros((4, 3, 2, 3), np.float32),
                                                "conv/1": np.zeros((4,), np.float32)})},
        ["info", "net.prototxt", "--weights", "w.npz"], ["w.npz", "net.prototxt", "'conv'", "blob 0", "(4, 3, 2, 3)",
                                                      "(4, 3, 3, 2)"]),
    "bad_input_shape_option": (
        {"net.prototxt": HEAD},
        ["info", "net.prototxt", "--input-shape", "data=2,x,5"], ["--input-shape", "data=2,x,5"]),
    # issue 15: what Caffe refuses too
    "conv_bottoms_of_different_shapes": (
        {"net.prototxt": HEAD + 'layer { name: "b" type: "Input" top: "b" input_param { shape { dim: 2 dim: 3 dim: 6 '
                                'dim: 7 } } }\n'
                                'layer { name: "conv" type: "Convolution" bottom: "data" bottom: "b" top: "ca" top: "cb" '
                                'convolution_param { num_output: 4 kernel_size: 3 } }\n'},
        ["check", "net.prototxt"], ["net.prototxt", "'conv'", "same shape", "(2, 3, 6, 7)", "(2, 3, 5, 7)"]),
    "inner_product_two_bottoms": (
        {"net.prototxt": HEAD + 'layer { name: "fc" type: "InnerProduct" bottom: "data" bottom: "data" top: "fa" '
                                'top: "fb" inner_product_param { num_output: 4 } }\n'},
        ["check", "net.prototxt"], ["net.prototxt", "'fc'", "bottom", "got 2"]),
    "random_filler_on_duplicate_layer_name": (
        {"net.prototxt": HEAD + _conv("num_output: 4 kernel_size: 1")
         + _conv('num_output: 4 kernel_size: 1 weight_filler { type: "msra" }', bottom="conv", top="conv2"),
         "w.npz": lambda tmp: _npz_bytes(tmp, {"conv/0": np.ones((4, 3, 1, 1), np.float32),
                                                "conv/1": np.zeros((4,), np.float32)})},
        ["check", "net.prototxt", "--weights", "w.npz"],
        ["net.prototxt", "'conv#2'", "convolution_param.weight_filler.type", "'msra'"]),
    "legacy_input_without_shape": (
        {"net.prototxt": 'name: "legacy"\ninput: "data"\n' + _conv("num_output: 4 kernel_size: 3")},
        ["info", "net.prototxt"], ["net.prototxt", "'data'", "input_shape", "--input-shape data="]),
    "missing_file": (
        {}, ["info", "nope.prototxt"], ["nope.prototxt"]),
    "absurd_sizes_refused_before_allocating": (
        {"net.prototxt": HEAD.replace("dim: 2 dim: 3 dim: 5 dim: 7", "dim: 64 dim: 3 dim: 20000 dim: 20000")
         + _conv("num_output: 64 kernel_size: 1", name="conv")},
        ["reference", "net.prototxt", "--out", "out.npz"], ["net.prototxt", "budget", "'conv/conv'",
                                                          "(64, 64, 20000, 20000)"]),
}


@pytest.mark.parametrize("row", list(ROWS), ids=list(ROWS))
def test_bad_input(row, tmp_path, capsys, monkeypatch):
    files, argv, words = ROWS[row]
    for name, content in files.items():
        if callable(content):
            content = content(tmp_path)
        p = tmp_path / name
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    before = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.chdir(tmp_path)
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 2, (rc, err)
    assert out == ""
    assert "Traceback" not in err
    # one error line; a command may print a notice before it (reference: "no --weights given; ...")
    lines = [x for x in err.strip().splitlines() if not x.startswith("caffe-harness: notice: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("caffe-harness: error: ")
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
