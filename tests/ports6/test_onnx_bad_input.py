"""``check --onnx`` on bad ONNX files (issue 20, item 4): a truncated file, a file that is not ONNX, a model whose
input is another net's, and an opset onnxruntime cannot run each exit 2 with one line naming the file, no traceback,
no report written.  The files are caffe2onnx's (plain and lrn nets), spoiled at test time."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def bad_files(corpus):
    made = corpus.onnx_files({"bad_plain": ("plain", None), "bad_lrn": ("lrn", None), "bad_opset": ("plain", 99)})
    good = made["bad_plain"].read_bytes()
    truncated = corpus.folder / "truncated.onnx"
    truncated.write_bytes(good[: len(good) // 2])
    not_onnx = corpus.folder / "not_onnx.onnx"
    not_onnx.write_text(json.dumps({"this": "is json"}))
    return {"truncated": truncated, "not_onnx": not_onnx, "other_net": made["bad_lrn"], "opset": made["bad_opset"]}


@pytest.mark.parametrize("what", ["truncated", "not_onnx", "other_net", "opset"])
def test_bad_onnx_is_one_line_naming_the_file(bad_files, check, workdir, what):
    path = bad_files[what]
    report = workdir / f"bad_{what}.json"
    rc, out, err = check.text("plain", "--onnx", path, "--json", report)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == 2, (rc, out[-500:], err[-1500:])
    assert len(lines) == 1 and lines[0].startswith("caffe-harness: error: "), err[-1500:]
    assert path.name in lines[0], lines[0]
    assert "Traceback" not in err and not report.exists(), err[-1500:]
