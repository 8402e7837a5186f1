"""Non-finite parity: where Caffe's own rule computes NaN/Inf, a Keras output with the same values at the same
positions passes (counted and named); any other NaN/Inf still fails."""

from __future__ import annotations

import numpy as np
import pytest

from harness.compare import compare_arrays

NAN_NET = """name: "nan_by_construction"
input: "data" input_shape { dim: 2 dim: 3 dim: 4 dim: 6 }
layer { name: "aux_pool" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: AVE kernel_size: 2 stride: 3 } }
layer { name: "root" type: "Power" bottom: "data" top: "q" power_param { power: 0.5 shift: -0.2 } }
"""


def _ref_with_nan() -> np.ndarray:
    r = np.arange(2 * 3 * 5 * 7, dtype=np.float64).reshape(2, 3, 5, 7) / 10.0
    r[:, :, -1, :] = np.nan  # a row of NaN (Caffe's 0/0)
    r[0, 1, 0, 0] = np.inf
    return r


def test_the_same_nan_and_inf_pass_and_are_counted():
    r = _ref_with_nan()
    bound = np.where(np.isfinite(r), 1e-6, np.nan)  # the derived bound is NaN where the reference is
    res = compare_arrays("p", "isolated", r, r.astype(np.float32), bound, tolerance="t")
    assert res.passed and res.nonfinite == 0 and res.nonfinite_matched == 2 * 3 * 7 + 1
    assert res.frac_fail == 0.0


@pytest.mark.parametrize("where,value", [((1, 2, 4, 6), 0.0), ((0, 1, 0, 0), -np.inf), ((1, 0, 2, 3), np.nan)])
def test_a_different_or_a_new_nonfinite_value_fails(where, value):
    r = _ref_with_nan()
    k = r.astype(np.float32)
    k[where] = value
    bound = np.where(np.isfinite(r), 1e-3, np.nan)
    res = compare_arrays("p", "isolated", r, k, bound, tolerance="t")
    assert not res.passed
    assert res.frac_fail == pytest.approx(1 / r.size)
    assert res.nonfinite == (1 if np.isfinite(r[where]) else 0)


def test_a_net_whose_caffe_layers_compute_nan_by_construction_is_equivalent():
    """AVE pooling k2 s3 on 4x6 in ceil mode has windows wholly in the overhang (pool_size 0 -> 0/0); Power 0.5 of
    x - 0.2 is NaN for x < 0.2.  The converted model reproduces both: no false alarm, and the rule is named."""
    from harness.caffe import load_net_text
    from harness.compare import compare

    rep = compare(load_net_text(NAN_NET), seed=1)
    assert rep, rep.verdict()
    by = {lr.caffe_layer: lr for lr in rep.layers}
    pool, root = by["aux_pool"].isolated, by["root"].isolated
    ref_pool = rep.layers[0].shape
    assert ref_pool == (2, 3, 2, 3)
    assert pool.nonfinite_matched == 2 * 3 * 2 and "pool_size 0" in pool.nonfinite_rule
    assert root.nonfinite_matched > 0 and "non-integer power" in root.nonfinite_rule
    assert by["aux_pool"].chained.passed and by["root"].chained.passed
    d = rep.to_dict()["layers"][0]["isolated"]
    assert d["nonfinite_matched"] == 12 and d["nonfinite_rule"].startswith("AVE pooling")


def test_info_and_check_warn_about_nan_by_construction(tmp_path, capsys):
    """The layer, the axis, the window index and Caffe's rule, before anything runs (info) and in check's notes."""
    from harness.caffe import load_net_text
    from harness.cli import main
    from harness.shapes import infer_shapes, nan_by_construction

    lines = nan_by_construction(infer_shapes(load_net_text(NAN_NET)))
    assert lines == [
        "Pooling 'aux_pool': output W index 2 is NaN in Caffe: that AVE window starts at 6 = w + pad (6 + 0) in "
        "ceil mode, so pool_size is 0 and Caffe divides 0 by 0 (kernel 2, stride 3); a Keras model matches Caffe "
        "only with NaN there too"]
    p = tmp_path / "nan.prototxt"
    p.write_text(NAN_NET)
    assert main(["info", str(p)]) == 0
    err = capsys.readouterr().err
    assert err == f"caffe-harness: warning: {lines[0]}\n"
    assert main(["check", str(p), "--no-table"]) == 0
    out, err = capsys.readouterr()
    assert f"caffe-harness: warning: {lines[0]}" in err and "EQUIVALENT" in out


def test_no_warning_where_every_window_has_elements():
    from harness.caffe import load_net_text
    from harness.shapes import infer_shapes, nan_by_construction

    ok = NAN_NET.replace("dim: 6 }", "dim: 7 }")  # W=7: windows start at 0, 3 (2 outputs), none past the edge
    assert nan_by_construction(infer_shapes(load_net_text(ok))) == []
