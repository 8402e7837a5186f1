"""Wording of the report (issue 21.7): ``carried`` only behind a failing layer, nothing compared said so, no
``1.08597e-16*mean`` for 0, and the layer table fitted to the terminal width, one line per row."""

from __future__ import annotations

import numpy as np
import pytest

from harness.compare.reports.report import Report
from harness.compare.reports.result import BlobResult, LayerResult


def _blob(name, mode, passed, max_abs, propagated=None):
    return BlobResult(name, mode, passed, "derived", (2, 3, 5, 7), max_abs=max_abs, scale=1.0,
                      propagated_max_abs=propagated, growth=1.5 if mode == "chained" else None)


def _layer(name, keras, chained, isolated, typ="Convolution"):
    return LayerResult(name, name, f"{name}/{name}", keras, "name", (2, 3, 5, 7), layer_type=typ, chained=chained,
                       isolated=isolated)


def _report(first_fails: bool, long: bool = False) -> Report:
    n = "a_rather_long_caffe_layer_name_for_the_table_" if long else ""
    k = "keras_functional_block_with_a_long_name_" if long else ""
    conv = _layer(f"{n}conv1", f"{k}conv1", _blob("conv1", "chained", not first_fails, 3e-7 if not first_fails else
                                                   0.5), _blob("conv1", "isolated", not first_fails, 3e-7))
    # relu1 passes chained only through the propagated allowance (what it received was already off)
    relu = _layer(f"{n}relu1", f"{k}relu1", _blob("relu1", "chained", True, 2e-7, propagated=2e-7),
                  _blob("relu1", "isolated", True, 1e-7), typ="ReLU")
    return Report("net", "port", "both", [conv, relu], [], [])


def _rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in ln.split("│")] for ln in text.splitlines() if ln.count("│") >= 5]


def test_carried_is_said_only_behind_a_failing_layer():
    ok = _report(first_fails=False)
    assert ok.equivalent
    rows = _rows(ok.table(width=200))
    assert [r[7] for r in rows] == ["ok", "ok"]  # relu1's allowance covered float32 drift, not an upstream error
    from harness.compare.reports.report import to_html

    assert "carried" not in to_html(ok) and "carried" in to_html(_report(first_fails=True))  # the HTML table too
    bad = _report(first_fails=True)
    rows = _rows(bad.table(width=200))
    assert [r[7] for r in rows] == ["FAIL", "carried"]
    assert "1 more carry an upstream error" in bad.verdict()


@pytest.mark.parametrize("width", [80, 100, 120, 160])
def test_the_table_fits_the_width_one_line_per_row(width):
    rep = _report(first_fails=True, long=True)
    text = rep.table(width=width)
    lines = text.splitlines()
    assert all(len(ln) <= width for ln in lines), [len(ln) for ln in lines]
    body = [ln for ln in lines if ln.startswith(("│ 0 │", "│ 1 │"))]
    assert len(body) == 2 and len([ln for ln in lines if ln.startswith("│")]) == 2, text  # nothing folded
    assert "FAIL" in body[0] and "carried" in body[1] and "a_rather_lo" in body[0] and "keras_funct" in body[0]
    assert ("2x3x5x7" in body[0]) == (width >= 100), text  # the shape goes last, only where names would be < 16
    wide = rep.table(width=400)
    assert all(w in wide for w in ("growth", " by ", "Convolution", "a_rather_long_caffe_layer_name_for_the_table_"
                                   "conv1", "keras_functional_block_with_a_long_name_conv1"))  # all when it fits


def test_nothing_compared_is_not_said_to_agree():
    rep = Report("net", "port", "both", [], [], [], output_problems=["'prob' has no Keras counterpart"])
    v = rep.verdict()
    assert "the 0 matched" not in v and "no layer output of 'net' was compared" in v, v


def test_a_zero_mean_factor_prints_as_no_mean(tmp_path):
    pytest.importorskip("cv2")
    import sys
    from pathlib import Path

    import keras

    sys.path.insert(0, str(Path(__file__).parent))
    from test_layer0 import MEAN, flip_layer, images, layer0, norm, side

    from harness.reference.preprocess import CaffeTransform

    # Caffe: (x - mean)*0.017; the port only rescales by 1/255: the fitted mean factor is a rounding residue
    paths = images(tmp_path / "img")
    t = CaffeTransform(mean_values=MEAN, scale=0.017)
    l0 = layer0(paths, t, side(flip_layer(), keras.layers.Rescaling(1 / 255)))
    text = " ".join(c.explanation for c in l0.diagnosis)
    assert "e-1" not in text and "e-2" not in text, text  # no 1.08597e-16*mean
    scale = [c for c in l0.diagnosis if c.cause.startswith("preprocess_scale")]
    assert scale and "(no mean)" in scale[0].explanation and "0.00392157 (= 1/255)*x" in scale[0].explanation, text
    assert layer0(paths, t, side(flip_layer(), norm(MEAN, 0.017))).passed
    assert np.isfinite(l0.caffe).all()
