"""Bad ``.tflite`` artefacts through the CLI (as tests/test_bad_input.py): exit 2, one line on stderr naming the
file and the mismatch, no traceback, nothing written (``--json`` included)."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("ai_edge_litert")

from harness.caffe import load_net_text  # noqa: E402
from harness.cli import main  # noqa: E402
from support import one_error_line  # noqa: E402
from harness.convert import convert  # noqa: E402
from harness.convert.export import tflite_bytes  # noqa: E402
from harness.weights import random_weights  # noqa: E402

NET = ('name: "bad"\nlayer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 5 '
       'dim: 7 } } }\nlayer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
       'convolution_param { num_output: 4 kernel_size: 3 } }\n')
OTHER = NET.replace("dim: 5 dim: 7", "dim: 6 dim: 7")  # the prototxt the .tflite was not made from
TWO_INPUTS = NET + ('layer { name: "aux" type: "Input" top: "aux" input_param { shape { dim: 2 dim: 4 dim: 3 dim: 5 '
                    '} } }\nlayer { name: "sum" type: "Eltwise" bottom: "conv" bottom: "aux" top: "sum" }\n')


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return tflite_bytes(convert(random_weights(load_net_text(NET), 0)))


ROWS = {
    "truncated": (lambda b: b[: len(b) // 3], NET, ["m.tflite", "truncated", "bytes"]),
    "not_a_flatbuffer": (lambda b: b"PK\x03\x04 a zip, not a model" * 4, NET, ["m.tflite", "not a TFLite flatbuffer",
                                                                              "TFL3"]),
    "empty": (lambda b: b"", NET, ["m.tflite", "empty file"]),
    "input_shape_differs": (lambda b: b, OTHER, ["m.tflite", "serving_default_data", "[1, 5, 7, 3]",
                                                 "[2, 3, 6, 7]", "'data'"]),
    "input_count_differs": (lambda b: b, TWO_INPUTS, ["m.tflite", "1 input(s)", "data, aux"]),
}


@pytest.mark.parametrize("row", list(ROWS), ids=list(ROWS))
def test_bad_tflite(row, model_bytes, tmp_path, capsys, monkeypatch):
    make, proto, words = ROWS[row]
    (tmp_path / "m.tflite").write_bytes(make(model_bytes))
    (tmp_path / "net.prototxt").write_text(proto)
    before = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.chdir(tmp_path)
    rc = main(["check", "net.prototxt", "--tflite", "m.tflite", "--json", "r.json"])
    out, err = capsys.readouterr()
    assert rc == 2, (rc, err)
    assert out == "" and "Traceback" not in err
    one_error_line(err, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("argv, words", [
    (["--tflite", "dir"], ["'dir'", "folder", "--saved-model"]),
    (["--tflite", "nothere.tflite"], ["'nothere.tflite'", "does not exist"]),
    (["--tflite", "m.tflite", "--mode", "isolated"], ["--mode isolated", "end to end"]),
    (["--tflite", "m.tflite", "--map", "conv=x"], ["--map", "--tflite"]),
    (["--tflite", "m.tflite", "--min-sqnr", "30"], ["--min-sqnr", "float32 model"]),
    (["--min-sqnr", "30"], ["--min-sqnr", "quantised --tflite"]),
    (["--tflite-delegate", "none"], ["--tflite-delegate none", "--tflite only"]),
])
def test_tflite_flags_refused_by_name(argv, words, model_bytes, tmp_path, capsys, monkeypatch):
    (tmp_path / "m.tflite").write_bytes(model_bytes)
    (tmp_path / "dir").mkdir()
    (tmp_path / "net.prototxt").write_text(NET)
    monkeypatch.chdir(tmp_path)
    rc = main(["check", "net.prototxt", *argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    one_error_line(err, words)


def test_missing_litert_is_refused_with_the_install_hint(model_bytes, tmp_path, capsys, monkeypatch):
    (tmp_path / "m.tflite").write_bytes(model_bytes)
    (tmp_path / "net.prototxt").write_text(NET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # import ai_edge_litert -> ImportError
    rc = main(["check", "net.prototxt", "--tflite", "m.tflite"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "ai-edge-litert" in err and "pip install 'caffe-keras-harness[artefacts]'" in err


@pytest.mark.parametrize("argv, words", [
    (["-o", "m.keras", "--format", "tflite"], ["m.keras", ".tflite"]),
    (["-o", "m.tflite"], ["m.tflite", ".keras"]),
    (["-o", "m.keras", "--quantize", "int8"], ["--quantize int8", "--format tflite"]),
    (["-o", "m.tflite", "--format", "tflite", "--representative", "4"], ["--representative 4", "--quantize int8"]),
    (["-o", "m.tflite", "--format", "tflite", "--quantize", "int8", "--representative", "0"], ["--representative 0"]),
])
def test_convert_tflite_flags_refused_by_name(argv, words, tmp_path, capsys, monkeypatch):
    (tmp_path / "net.prototxt").write_text(NET)
    monkeypatch.chdir(tmp_path)
    rc = main(["convert", "net.prototxt", *argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    line = err.strip().splitlines()[-1]
    for w in words:
        assert w in line, (w, line)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.prototxt"]
