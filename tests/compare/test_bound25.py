"""Issue 25: no false alarm on a trained model (a float32 bound that holds, a verdict that follows the diagnosis).

The false alarm: trained first-layer filters (smooth, mean-free, edge detectors) on Caffe-scale pixels (8-bit BGR
minus the mean, flat noisy "sky" regions up to 151) make the partial sums of the 11x11x3 reduction drift far beyond
the random walk the issue-19 bound assumed; TensorFlow's float32 error there was past that bound (1.05..1.3 of it,
measured by benchmarks/bench_margins.py), on a correct port.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest

from harness.compare.engine.tolerance import U32, count_factor, derived_bound, gamma, issue19_bound

MEAN = np.array([104.0, 117.0, 123.0])


def edge_filters(cout: int, k: int, seed: int = 0) -> np.ndarray:
    """Oriented edge detectors as trained first layers have them: one half-plane positive, the other negative,
    a little smooth texture, the same pattern in B, G, R (luminance), mean-free, trained-like scale."""
    rng = np.random.default_rng(seed)
    w = np.empty((cout, 3, k, k))
    yy, xx = np.mgrid[:k, :k] - (k - 1) / 2.0
    for o in range(cout):
        ang = rng.uniform(0, math.pi)
        pat = np.sign(np.cos(ang) * yy + np.sin(ang) * xx) + 0.3 * rng.standard_normal((k, k))
        w[o] = pat[None] * rng.uniform(0.8, 1.2, (3, 1, 1))
        w[o] -= w[o].mean()
        w[o] *= 0.03 * math.sqrt(3 * k * k) / np.linalg.norm(w[o])
    return w.astype(np.float32)


def sky(n: int, h: int, w: int, seed: int = 1) -> np.ndarray:
    """(n, 3, h, w) float32: flat 8-bit regions (saturated white, a grey wall) with +-2 levels of sensor noise, BGR
    minus the mean (values up to 151)."""
    rng = np.random.default_rng(seed)
    levels = np.array([255.0, 180.0, 20.0])
    img = levels[rng.integers(0, 3, n)][:, None, None, None] + rng.integers(-2, 3, (n, 3, h, w))
    img[:, :, h // 2:, : w // 3] = 60 + rng.integers(-2, 3, (n, 3, h - h // 2, w // 3))  # an edge
    return (np.clip(img, 0, 255) - MEAN[None, :, None, None]).astype(np.float32)


def conv_net(w: np.ndarray, b: np.ndarray, stride: int, pad: int, shape: tuple[int, ...]):
    from harness.caffe import load_net_text
    from harness.weights import random_weights

    cout, cin, k, _ = w.shape
    net = random_weights(load_net_text(f"""
        layer {{ name: "data" type: "Input" top: "data"
                input_param {{ shape {{ dim: {shape[0]} dim: {cin} dim: {shape[2]} dim: {shape[3]} }} }} }}
        layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
                convolution_param {{ num_output: {cout} kernel_size: {k} stride: {stride} pad: {pad} }} }}
    """), 0)
    return replace(net, layers=(net.layers[0], replace(net.layer("conv1"), blobs=(w, b))), has_weights=True)


def keras_conv(w: np.ndarray, b: np.ndarray, stride: int, pad: int, hw: tuple[int, int]):
    import keras

    inp = keras.Input((*hw, 3))
    x = keras.layers.ZeroPadding2D(pad)(inp) if pad else inp
    conv = keras.layers.Conv2D(w.shape[0], w.shape[2], strides=stride, name="conv1")
    y = conv(x)
    conv.set_weights([w.transpose(2, 3, 1, 0), b])
    return keras.Model(inp, y)


@pytest.fixture(scope="module")
def alexnet_conv1():
    """AlexNet's first layer (11x11/4, 3 -> 16 here) with edge filters, two 67x67 sky images: (net, model, x)."""
    w = edge_filters(16, 11)
    b = np.random.default_rng(3).normal(0, 0.1, 16).astype(np.float32)
    x = sky(2, 67, 67)
    net = conv_net(w, b, 4, 0, x.shape)
    return net, keras_conv(w, b, 4, 0, (67, 67)), x


def test_trained_like_first_conv_is_no_false_alarm(alexnet_conv1):
    """The correct port passes with room to spare; the issue-19 bound failed it on TensorFlow (past the bound,
    every element within the rigorous ceiling)."""
    from harness.compare import compare

    net, model, x = alexnet_conv1
    rep = compare(net, model, inputs={"data": x}, mode="isolated", diagnose=False)
    r = rep.layers[0].isolated
    assert rep and r.passed, rep.verdict()
    assert r.bound_ratio < 0.5, r.bound_ratio
    assert "partial sums" in r.tolerance
    with issue19_bound():
        old = compare(net, model, inputs={"data": x}, mode="isolated", diagnose=False, tolerances={"c": 6.0})
    ro = old.layers[0].isolated
    # before: past the bound (the false alarm) -- and within the float32 ceiling, so now settled as rounding
    assert ro.bound_ratio > 1.0 and ro.n_fail > 0
    assert ro.n_past_ceiling == 0 and 0 < ro.ceiling_ratio < 0.2
    assert old and ro.passed and ro.rounding.startswith("float32 rounding")
    assert any(n.startswith("note: conv1: not a divergence: float32 rounding") for n in old.notes)
    assert "NOT EQUIVALENT" not in old.verdict()


def test_noisy_layer_settled_by_the_diagnosis(alexnet_conv1):
    """Past the (issue-19) statistical bound, within the ceiling, parameters equal, and the diagnosis finds no
    porting bug: the verdict follows it (EQUIVALENT, the layer's status 'rounding'), never NOT EQUIVALENT next to
    'not a porting bug'."""
    from harness.compare import compare

    net, model, x = alexnet_conv1
    with issue19_bound():
        rep = compare(net, model, inputs={"data": x}, mode="both")
    assert rep, rep.verdict()
    assert rep.first_divergence is None and rep.divergences == []
    r = rep.layers[0].isolated
    assert r.rounding and r.noisy and r.passed
    assert "rounding" in rep.table()
    d = rep.to_dict()["layers"][0]["isolated"]
    assert d["noisy"] is True and d["n_past_ceiling"] == 0 and d["rounding"].startswith("float32 rounding")


def test_weight_error_still_caught(alexnet_conv1):
    """The detection floor: every weight off by a relative 1e-4 (N(0,1) each) still fails at conv1, past the
    statistical bound and not settled (the parameter evidence finds the weights different)."""
    from harness.compare import compare

    net, _, x = alexnet_conv1
    w, b = net.layer("conv1").blobs
    bad = (w.astype(np.float64) * (1 + 1e-4 * np.random.default_rng(9).standard_normal(w.shape))).astype(np.float32)
    rep = compare(net, keras_conv(bad, b, 4, 0, (67, 67)), inputs={"data": x}, mode="isolated", diagnose=False)
    r = rep.layers[0].isolated
    assert not rep and not r.passed and not r.rounding
    assert r.bound_ratio > 1.3 and r.n_fail > 0
    assert r.worst_ratio == pytest.approx(r.bound_ratio)
    text = str(r)
    assert "failing element" in text and f"{r.n_fail} of {x.shape[0] * 16 * 15 * 15} past the bound" in text


def test_ceiling_formula_at_one_element():
    """ceiling = gamma_{K+3} (1 + 2 gamma_K) (sum |w||x| + |b|) + K 2^-126, never below the statistical bound."""
    w = edge_filters(4, 3, seed=5)
    b = np.array([0.5, -0.25, 0.0, 2.0], np.float32)
    x = sky(2, 5, 7)
    net = conv_net(w, b, 1, 1, x.shape)
    lay = net.layer("conv1")
    from harness.reference.registry import REFERENCE

    y = REFERENCE["Convolution"](lay, [x.astype(np.float64)], dtype=np.float64)[0]
    c = derived_bound(lay, [x.astype(np.float64)], y, ceiling=True)
    s = derived_bound(lay, [x.astype(np.float64)], y)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    a = float(np.sum(np.abs(w[3].astype(np.float64) * xp[1, :, 2:5, 4:7]))) + 2.0  # element (1, 3, 2, 4)
    k = 27
    expect = gamma(k + 3) * (1 + 2 * gamma(k)) * a + k * 2.0 ** -126
    assert c.values[1, 3, 2, 4] == pytest.approx(max(expect, s.values[1, 3, 2, 4]), rel=1e-6)
    assert np.all(c.values >= s.values)
    assert c.rule == "gamma_30*(sum|w||x|+|b|)"
    assert gamma(30) == pytest.approx(30 * U32 / (1 - 30 * U32), rel=1e-15)


def test_count_factor_grows_with_the_elements_compared():
    assert count_factor(10) == 1.0 and count_factor(10 ** 6) == 1.0
    assert count_factor(10 ** 8) == pytest.approx(math.sqrt(8 / 6), rel=1e-12)
    assert count_factor(802_816 * 64) == pytest.approx(math.sqrt(math.log(802_816 * 64) / math.log(1e6)))


def test_reduced_precision_diagnosis_gives_no_numpy_warning():
    """Values beyond float16/float32 range: inf in the simulation, and no RuntimeWarning reaches the user."""
    from harness.compare.diagnose.precision import _round_bits, _simulated

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = _round_bits(np.array([1e39, -1e40, 1.0]), 13)
        assert np.isinf(r[0]) and np.isinf(r[1]) and r[2] == 1.0
        from harness.caffe import load_net_text

        net = load_net_text("""
            layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
            layer { name: "p" type: "Power" bottom: "data" top: "p" }""")
        from harness.compare.diagnose.precision import _FORMATS

        rnd, round_out, _ = _FORMATS["float16"]
        y = _simulated([net.layer("p")], [np.array([[1e6, 2.0, 3.0], [1.0, 1e30, 5.0]])], rnd, round_out)
        assert np.isinf(y[0, 0]) and y[0, 1] == 2.0


V15 = """
name: "v15"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 12 dim: 16 } } }
layer { name: "conv_a" type: "Convolution" bottom: "data" top: "conv_a"
        convolution_param { num_output: 4 kernel_size: 1 stride: 2 } }
layer { name: "bn_a" type: "BatchNorm" bottom: "conv_a" top: "conv_a" }
layer { name: "scale_a" type: "Scale" bottom: "conv_a" top: "conv_a" scale_param { bias_term: true } }
layer { name: "relu_a" type: "ReLU" bottom: "conv_a" top: "conv_a" }
layer { name: "conv_b" type: "Convolution" bottom: "conv_a" top: "conv_b"
        convolution_param { num_output: 5 kernel_size: 3 pad: 1 } }
layer { name: "relu_b" type: "ReLU" bottom: "conv_b" top: "conv_b" }
"""


@pytest.fixture(scope="module")
def v15_report():
    """The stride moved from the 1x1 convolution to the following 3x3 (torchvision's ResNet v1.5 habit), in the
    harness's own converted model with those two strides edited."""
    import keras

    from harness.caffe import load_net_text
    from harness.compare import compare
    from harness.convert import convert
    from harness.weights import random_weights

    net = random_weights(load_net_text(V15), 0)
    good = convert(net)
    cfg = good.get_config()
    for lay in cfg["layers"]:
        if lay["config"]["name"] in ("conv_a", "conv_b"):
            lay["config"]["strides"] = (1, 1) if lay["config"]["name"] == "conv_a" else (2, 2)
    bad = keras.Model.from_config(cfg)
    for lay in good.layers:
        bad.get_layer(lay.name).set_weights(lay.get_weights())
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 16))
    return compare(net, bad, inputs={"data": x})


def test_moved_stride_is_named_stride_at_both_layers(v15_report):
    """Cause ``stride`` (not padding_offset) at the 1x1 and at the 3x3, each verified by re-running the Caffe layer
    with the Keras stride, each fix naming the layer's strides=."""
    rep = v15_report
    fd = rep.first_divergence
    assert fd.caffe_layer == "conv_a" and fd.diagnosis[0].cause == "stride"
    assert fd.diagnosis[0].fix == "set strides=(2, 2) on Keras layer 'conv_a'"
    assert "re-run with stride 1x1 gives the Keras output's shape (2, 4, 12, 16) and values" in \
        fd.diagnosis[0].explanation
    assert "padding_offset" not in [c.cause for c in fd.diagnosis]
    assert [d.caffe_layer for d in rep.divergences] == ["conv_b"]
    assert rep.divergences[0].diagnosis[0].cause == "stride"
    assert rep.divergences[0].diagnosis[0].fix == "set strides=(1, 1) on Keras layer 'conv_b'"
    from harness.compare.reports.causes import CAUSES

    assert "stride" in CAUSES and "dilation" in CAUSES


def test_layers_after_a_moved_stride_are_carried_not_errors_of_their_own(v15_report):
    """BatchNorm, Scale and ReLU after the 1x1 only inherit its shape: judged on Caffe's values in isolation they
    pass; chained they are carried.  Two bugs, counted twice, not five times."""
    rep = v15_report
    by = {lr.caffe_layer: lr for lr in rep.layers}
    for name in ("bn_a", "scale_a", "relu_a"):
        assert by[name].isolated.passed, (name, str(by[name].isolated))
        assert by[name].chained.error.startswith("shape mismatch")
    v = rep.verdict()
    assert "2 fail in isolation (their own error), 0 only chained" in v
    assert "(2 more layer(s)" not in v and "(1 more layer(s), each an error of its own)" in v
    table = rep.table(width=220)
    assert table.count("carried") >= 4


def test_own_and_carried_margins_apart(v15_report):
    """relu_b after the wrong conv_b: chained its error is all carried (carried ratio ~1e6), its own is rounding."""
    lr = next(lr for lr in v15_report.layers if lr.caffe_layer == "relu_b")
    c = lr.chained
    assert c.passed and c.carried_ratio > 1e3 and c.own_bound_ratio < 0.5
    d = v15_report.to_dict()["layers"][-1]["chained"]
    assert d["own_bound_ratio"] == pytest.approx(c.own_bound_ratio) and d["carried_ratio"] > 1e3
    assert d["bound_ratio"] == pytest.approx(c.bound_ratio)
    assert f"{c.own_bound_ratio:.4g}"[:4] in v15_report.table(width=220)


def test_small_texts():
    """channel_order's fix indexes the Keras HWIO kernel; pooling offsets print no '-0'."""
    import inspect

    from harness.compare.diagnose import conv, pooling

    src = inspect.getsource(conv)
    assert "kernel[:, :, ::-1, :]" in src and "w[:, ::-1] for the" not in src
    assert "(-{bt}, -{bl})" not in inspect.getsource(pooling)
    assert f"({-0}, {-2})" == "(0, -2)"


def test_rounding_fix_names_a_per_layer_atol_that_passes(alexnet_conv1):
    """The rounding diagnosis' fix: a per-layer override first, its atol verified by re-judging (it passes the
    layer); a global --rtol is not offered (it fails elements near zero)."""
    import re

    from harness.compare import compare
    from harness.compare.diagnose import diagnose
    from harness.reference.registry import REFERENCE

    net, model, x = alexnet_conv1
    lay = net.layer("conv1")
    y64 = REFERENCE["Convolution"](lay, [x.astype(np.float64)], dtype=np.float64)[0]
    ker = np.asarray(model(x.transpose(0, 2, 3, 1)), np.float64).transpose(0, 3, 1, 2)
    err = float(np.max(np.abs(ker - y64)))
    causes = diagnose(lay, None, [x], y64, ker, context={"max_abs": err})
    top = causes[0]
    assert top.cause == "unknown" and "the size of float32 rounding" in top.explanation
    m = re.search(r'"layers": \{"conv1": \{"atol": ([0-9.e+-]+), "reason": "float32 summation order"\}\}', top.fix)
    assert m, top.fix
    atol = float(m.group(1))
    assert err <= atol <= 1.01 * err
    assert "--rtol" not in top.fix.split("a global")[0]
    with issue19_bound():
        rep = compare(net, model, inputs={"data": x}, mode="both", diagnose=False,
                      tolerances={"layers": {"conv1": {"atol": atol, "reason": "float32 summation order"}}})
        assert rep and all(r.passed and not r.rounding for r in (rep.layers[0].chained, rep.layers[0].isolated))
        glob = compare(net, model, inputs={"data": x}, mode="isolated", diagnose=False, rtol=1e-5)
        assert not glob  # the global --rtol the issue-19 fix offered fails the correct layer


@pytest.mark.parametrize("edit,code,fix", [({"kernel_size": (5, 5)}, "kernel_size", "set kernel_size=(3, 3)"),
                                           ({"filters": 6}, "num_output", "set filters=4")])
def test_kernel_size_and_output_count_named_from_the_keras_config(edit, code, fix):
    """A Keras Conv2D with another kernel_size / filters than the prototxt (its own weights): the shape re-run names
    the parameter and the fix its Caffe value."""
    import keras

    from harness.caffe import load_net_text
    from harness.compare import compare
    from harness.convert import convert
    from harness.weights import random_weights

    net = random_weights(load_net_text("""
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 12 dim: 16 } } }
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
                convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }"""), 0)
    cfg = convert(net).get_config()
    for lay in cfg["layers"]:
        if lay["config"]["name"] == "conv":
            lay["config"].update(edit)
    rep = compare(net, keras.Model.from_config(cfg), inputs={"data": np.random.default_rng(1).standard_normal(
        (2, 3, 12, 16))}, mode="isolated")
    top = rep.first_divergence.diagnosis[0]
    assert top.cause == code and top.confidence == pytest.approx(0.8)
    assert top.fix == f"{fix} on Keras layer 'conv' and load Caffe's weights"
    from harness.compare.reports.causes import CAUSES

    assert code in CAUSES
