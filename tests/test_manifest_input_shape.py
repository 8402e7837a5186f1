"""A manifest checks a net at the size its inputs (or ``input_shape``) give, and an input that cannot fit is one
collection error naming the file and the input, not a traceback per layer item (issue 21, item 5)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.manifest import ManifestError, prepare, read_checks, resolve, run_check

pytest_plugins = ["pytester"]
PLUGIN = ("-p", "no:caffe_harness", "-p", "harness_pytest")

FCN = """name: "fcn"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 12 dim: 14 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "score" type: "Convolution" bottom: "conv1" top: "score" convolution_param { num_output: 5 kernel_size: 1 } }
"""


def _manifest(tmp_path, extra: str) -> list[dict]:
    (tmp_path / "fcn.prototxt").write_text(FCN)
    m = tmp_path / "caffe-equivalence.toml"
    m.write_text('prototxt = "fcn.prototxt"\nkeras = "convert"\n' + extra)
    return [resolve(c, m) for c in read_checks(m)]


def test_input_shape_sizes_the_net_at_another_size_and_batch(tmp_path):
    (check,) = _manifest(tmp_path, "input_shape = [2, 3, 17, 19]\n")
    prepared = prepare(check)
    assert dict(prepared.net.inputs) == {"data": (2, 3, 17, 19)}
    rep = run_check(prepared, check)
    assert rep.equivalent, rep.verdict()
    assert {r.caffe_layer: r.shape for r in rep.layers}["score"] == (2, 5, 15, 17)


def test_the_inputs_own_shape_sizes_the_net(tmp_path):
    np.savez(tmp_path / "x.npz", data=np.random.default_rng(2).standard_normal((3, 3, 16, 20)).astype(np.float32))
    (check,) = _manifest(tmp_path, 'inputs = "x.npz"\n')
    rep = run_check(prepare(check), check)
    assert rep.equivalent, rep.verdict()
    assert {r.caffe_layer: r.shape for r in rep.layers}["score"] == (3, 5, 14, 18)


def test_an_input_that_cannot_fit_is_one_error_naming_it(tmp_path):
    np.savez(tmp_path / "x.npz", data=np.zeros((2, 16, 20, 3), np.float32))  # NHWC
    (check,) = _manifest(tmp_path, 'inputs = "x.npz"\n')
    with pytest.raises(HarnessError, match=r"input 'data' has shape \(2, 16, 20, 3\), which looks NHWC"):
        prepare(check)
    np.savez(tmp_path / "y.npz", data=np.zeros((2, 3, 16, 20), np.float32))
    (check,) = _manifest(tmp_path, 'inputs = "y.npz"\ninput_shape = [2, 3, 12, 14]\n')
    with pytest.raises(ManifestError, match=r"y\.npz: input 'data' has shape \(2, 3, 16, 20\), the net expects "
                                            r"\(2, 3, 12, 14\)"):
        prepare(check)


@pytest.mark.parametrize("bad", ["[2, 3, 0, 7]", '"2x3x5x7"', "[2.5, 3, 5, 7]"])
def test_a_malformed_input_shape_is_refused_by_read_checks(tmp_path, bad):
    with pytest.raises(ManifestError, match=r"input_shape = .*expected a list of positive integers"):
        _manifest(tmp_path, f"input_shape = {bad}\n")


def test_the_plugin_reports_one_collection_error(pytester):
    pytester.path.joinpath("fcn.prototxt").write_text(FCN)
    np.savez(pytester.path / "x.npz", data=np.zeros((2, 16, 20, 3), np.float32))
    pytester.makefile(".toml", **{"caffe-equivalence": 'prototxt = "fcn.prototxt"\nkeras = "convert"\n'
                                                       'inputs = "x.npz"\n'})
    r = pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider")
    out = r.stdout.str()
    r.assert_outcomes(errors=1)
    assert "which looks NHWC" in out and "Traceback" not in out
