"""compare()/assert_equivalent on hand-written ports and converted models: matching, both modes, first divergence,
reports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from support.nets import SMALL_NET, small_net
from support.ports import keras_port
from support import GOLDEN



@pytest.fixture(scope="module")
def net():
    return small_net()


@pytest.fixture(scope="module")
def good_report(net):
    from harness.compare import compare

    return compare(net, keras_port(net))


def test_hand_written_port_matches_by_position_with_fused_relu_and_bn_scale(good_report):
    rep = good_report
    got = [(lr.key, lr.matched_by, lr.segment) for lr in rep.layers]
    assert got == [
        ("relu1/conv1", "position", ("conv1", "relu1")),  # Conv2D(activation="relu") covers conv1 + in-place relu1
        ("pool1/pool1", "position", ("pool1",)),
        ("scale1/pool1", "position", ("bn1", "scale1")),  # one BatchNormalization = BatchNorm + Scale
        ("fc/fc", "position", ("fc",)),
        ("prob/prob", "position", ("prob",)),
    ]
    assert [lr.keras_layer.split("_")[0] for lr in rep.layers] == ["conv2d", "max", "batch", "dense", "softmax"]
    assert rep.unmatched_caffe == [] and rep.unmatched_keras == []  # ZeroPadding2D/Flatten are helpers


def test_correct_port_is_equivalent_in_both_modes(good_report):
    rep = good_report
    assert rep and rep.equivalent and rep.first_divergence is None
    for lr in rep.layers:
        assert lr.chained.passed and lr.isolated.passed, str(lr)
        assert lr.isolated.max_abs < 1e-5 and lr.isolated.bound_ratio < 0.5
        assert lr.chained.growth is not None
    assert "EQUIVALENT" in rep.verdict()


def test_named_port_matches_by_name(net):
    from harness.compare import compare

    rep = compare(net, keras_port(net, fused=False, names=True), mode="chained")
    by = {lr.key: (lr.matched_by, lr.keras_layer) for lr in rep.layers}
    assert by["conv1/conv1"] == ("name", "conv1")
    assert by["relu1/conv1"] == ("name", "relu1")
    assert by["scale1/pool1"] == ("name", "bn1")
    assert by["fc/fc"] == ("name", "fc") and by["prob/prob"] == ("name", "prob")
    assert by["pool1/pool1"][0] == "position"
    assert rep and rep.layers[0].isolated is None


def test_user_map_overrides(net):
    from harness.compare import compare

    m = keras_port(net)
    dense = next(l.name for l in m.layers if l.name.startswith("dense"))
    rep = compare(net, m, user_map=[f"fc={dense}"], mode="isolated")
    lr = next(lr for lr in rep.layers if lr.key == "fc/fc")
    assert lr.matched_by == "user" and lr.keras_layer == dense and rep


@pytest.mark.parametrize("bug,first,cause", [
    ("reshape", "conv1", "kernel_reshaped"),  # Conv2D(activation="relu") = conv1 + relu1: conv1 introduced it
    ("scale1e-4", "fc", None),
    ("floor_pool", "pool1", "pool_rounding"),
])
def test_bug_gives_first_divergence(net, bug, first, cause):
    from harness.compare import compare

    rep = compare(net, keras_port(net, bug=bug))
    assert not rep
    fd = rep.first_divergence
    assert fd is not None and fd.caffe_layer == first and fd.mode == "isolated"
    # layers before the bug pass in isolation; the bug's layer fails
    at = next(i for i, lr in enumerate(rep.layers) if first in (lr.segment or (lr.caffe_layer,)))
    assert rep.layers[at].key == fd.key and not rep.layers[at].isolated.passed
    assert all(lr.isolated.passed for lr in rep.layers[:at])
    if cause:
        assert fd.diagnosis and fd.diagnosis[0].cause == cause
    if bug != "floor_pool":  # same shapes: downstream chained errors are explained by what they received
        after = rep.layers[at + 1:]
        assert after and all(lr.chained.passed and lr.chained.propagated_max_abs > 0 for lr in after)
    text = rep.verdict()
    assert "NOT EQUIVALENT" in text and f"First divergent layer: Caffe {first!r}" in text


def test_1e4_bug_is_local_in_isolation_but_carried_chained(net):
    from harness.compare import compare

    rep = compare(net, keras_port(net, bug="scale1e-4"))
    fc = next(lr for lr in rep.layers if lr.key == "fc/fc")
    prob = next(lr for lr in rep.layers if lr.key == "prob/prob")
    assert not fc.isolated.passed and not fc.chained.passed
    assert fc.chained.growth > 100  # the layer that grows the error
    assert prob.isolated.passed and prob.chained.passed  # softmax only carries it
    assert prob.chained.max_abs > 10 * prob.isolated.max_abs
    assert prob.chained.propagated_max_abs == pytest.approx(prob.chained.max_abs, rel=0.05)
    r = fc.isolated
    assert r.needs_atol == pytest.approx(r.max_abs) and r.needs_rtol >= 1e-4 * 0.9
    s = str(r)
    assert s.startswith("fc [isolated]: FAIL max_abs=") and "needs atol>=" in s and "caffe=" in s
    assert r.worst_index is not None and len(r.worst_index) == 2


def test_atol_override_passes_the_bug(net):
    from harness.compare import compare

    rep = compare(net, keras_port(net, bug="scale1e-4"), atol=1e-2)
    assert rep, rep.verdict()
    rep2 = compare(net, keras_port(net, bug="scale1e-4"),
                   tolerances={"layers": {"fc": {"rtol": 1e-3, "reason": "fc weights rounded on purpose"}}})
    assert rep2
    fc = next(lr for lr in rep2.layers if lr.key == "fc/fc")
    assert "fc weights rounded on purpose" in fc.isolated.tolerance


def test_assert_equivalent_message_is_the_verdict(net):
    from harness.compare import assert_equivalent

    with pytest.raises(AssertionError) as ei:
        assert_equivalent(net, keras_port(net, bug="reshape"))
    msg = str(ei.value)
    assert msg.startswith("NOT EQUIVALENT") and "relu1" in msg and "kernel_reshaped" in msg
    assert assert_equivalent(net, keras_port(net))


def test_public_api_is_lazy_and_callable(net):
    import harness

    assert callable(harness.compare) and callable(harness.assert_equivalent)
    rep = harness.compare(net, keras_port(net), mode="isolated")
    assert rep


def test_json_report_layout(good_report, net):
    from harness.compare import compare

    bad = compare(net, keras_port(net, bug="reshape"))
    for rep in (good_report, bad):
        d = json.loads(rep.to_json())
        assert set(d) >= {"equivalent", "first_divergence", "layers", "unmatched"}
        assert d["equivalent"] is bool(rep)
        assert set(d["unmatched"]) == {"caffe", "keras", "outputs"}
        for lay in d["layers"]:
            assert set(lay) >= {"caffe_layer", "caffe_top", "keras_layer", "matched_by", "shape", "chained",
                                "isolated"}
            for mode in ("chained", "isolated"):
                r = lay[mode]
                assert set(r) >= {"passed", "max_abs", "mean_abs", "median_abs", "max_rel", "mean_rel",
                                  "median_rel", "frac_out_of_tolerance", "worst", "needs_atol", "needs_rtol"}
    d = json.loads(bad.to_json())
    fd = d["first_divergence"]
    assert fd["caffe_layer"] == "conv1" and fd["caffe_key"] == "relu1/conv1" and fd["keras_layer"].startswith("conv2d")
    assert fd["diagnosis"][0]["cause"] == "kernel_reshaped"
    assert set(fd["diagnosis"][0]) == {"cause", "confidence", "explanation", "fix"}
    first = d["layers"][0]["isolated"]
    assert first["passed"] is False and len(first["worst"]["index"]) == 4
    assert json.loads(good_report.to_json())["first_divergence"] is None


def test_junit_and_html(good_report, net, tmp_path):
    import xml.etree.ElementTree as ET

    from harness.compare import compare
    from harness.compare.reports.report import to_html, to_junit

    bad = compare(net, keras_port(net, bug="scale1e-4"))
    root = ET.fromstring(to_junit(bad))
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == [lr.key for lr in bad.layers]
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == ["fc/fc"]
    page = to_html(bad)  # a 2-D first divergence: the plot, no H x W heat map
    assert page.startswith("<!DOCTYPE html>") and page.count("data:image/png;base64,") == 1
    assert "fc" in page and "http://" not in page and "https://" not in page
    conv_bug = compare(net, keras_port(net, bug="reshape"))
    page = to_html(conv_bug)
    assert page.count("data:image/png;base64,") == 2 and "error heat map" in page  # plot + heat map
    assert "kernel_reshaped" in page
    assert to_html(good_report).count("data:image/png;base64,") == 1
    hm = conv_bug.layers[0].isolated.abs_err_map
    assert hm.shape == (7, 6)  # H x W of conv1's output (13x11 input, k3 s2 p1)


def test_table_plain_and_colour(good_report):
    plain = good_report.table()
    assert "relu1/conv1" in plain and "\x1b[" not in plain
    assert "\x1b[" in good_report.table(color=True)


def test_nchw_keras_model_is_fed_nchw():
    """A channels-first Keras port (input (C, H, W)) gets NCHW data and its outputs are compared as they are."""
    import keras

    from harness.caffe import load_net_text
    from harness.compare import compare
    from harness.weights import random_weights

    net = random_weights(load_net_text("""
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 5 dim: 7 } } }
        layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 4 } }
    """), 0)
    w, b = net.layer("fc").blobs
    inp = keras.Input((3, 5, 7))
    x = keras.layers.Flatten()(inp)  # C-order flatten of NCHW = Caffe's order
    d = keras.layers.Dense(4)
    y = d(x)
    d.set_weights([np.asarray(w).T, np.asarray(b)])
    rep = compare(net, keras.Model(inp, y))
    assert rep and [lr.key for lr in rep.layers] == ["fc/fc"]


def test_converted_golden_case_uses_saved_mapping():
    from harness.compare import compare

    case = GOLDEN / "batchnorm_scale"
    z = np.load(case / "inputs.npz")
    rep = compare(str(case / "net.prototxt"), None, {k: z[k] for k in z.files},
                  weights=str(case / "weights.caffemodel"))
    assert rep, rep.verdict()
    assert {lr.matched_by for lr in rep.layers} == {"mapping"}
    # the result equals real Caffe's recorded blobs within the bound too
    blobs = np.load(case / "blobs.npz")
    for lr in rep.layers:
        assert lr.chained.max_abs <= 1e-5 * max(1.0, float(np.abs(blobs[lr.key]).max()))


def test_bad_inputs_are_harness_errors(net):
    from harness.compare import compare
    from harness.errors import HarnessError

    m = keras_port(net)
    with pytest.raises(HarnessError, match="NHWC"):
        compare(net, m, {"data": np.zeros((2, 13, 11, 3), np.float32)})
    with pytest.raises(HarnessError, match="not an input"):
        compare(net, m, {"image": np.zeros((2, 3, 13, 11), np.float32)})
    with pytest.raises(HarnessError, match="mode"):
        compare(net, m, mode="fast")
    with pytest.raises(HarnessError, match="no layer"):
        compare(net, m, user_map=["fc=nope"])
    assert SMALL_NET  # the prototxt text is importable for other tests


def test_branches_built_in_another_order_match_by_structure_and_shape():
    """Inception-style branches: Keras creates them in a different order than the prototxt lists them."""
    import keras

    from harness.caffe import load_net_text
    from harness.compare import compare
    from harness.weights import random_weights

    net = random_weights(load_net_text("""
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 7 } } }
        layer { name: "a" type: "Convolution" bottom: "data" top: "a" convolution_param { num_output: 4 kernel_size: 1 } }
        layer { name: "b1" type: "Convolution" bottom: "data" top: "b1" convolution_param { num_output: 5 kernel_size: 1 } }
        layer { name: "b2" type: "Convolution" bottom: "b1" top: "b2"
                convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
        layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 2 kernel_size: 1 } }
        layer { name: "cat" type: "Concat" bottom: "a" bottom: "b2" bottom: "c" top: "cat" }
    """), 0)

    def w(n):
        k, b = net.layer(n).blobs
        return [np.asarray(k).transpose(2, 3, 1, 0), np.asarray(b)]

    inp = keras.Input((9, 7, 3))
    lc, lb1, lb2, la = (keras.layers.Conv2D(2, 1), keras.layers.Conv2D(5, 1),
                        keras.layers.Conv2D(6, 3, padding="same"), keras.layers.Conv2D(4, 1))
    c, b1 = lc(inp), lb1(inp)
    b2 = lb2(b1)
    a = la(inp)
    m = keras.Model(inp, keras.layers.Concatenate()([a, b2, c]))
    for lay, n in ((lc, "c"), (lb1, "b1"), (lb2, "b2"), (la, "a")):
        lay.set_weights(w(n))
    rep = compare(net, m)
    assert rep, rep.verdict()
    got = {lr.caffe_layer: lr.keras_layer for lr in rep.layers}
    assert got == {"a": la.name, "b1": lb1.name, "b2": lb2.name, "c": lc.name, "cat": m.layers[-1].name}


def test_chained_only_mode_names_first_divergence(net):
    from harness.compare import compare

    rep = compare(net, keras_port(net, bug="scale1e-4"), mode="chained")
    assert not rep and all(lr.isolated is None for lr in rep.layers)
    fd = rep.first_divergence
    assert fd.caffe_layer == "fc" and fd.mode == "chained"
    d = rep.to_dict()
    assert d["mode"] == "chained" and all(l["isolated"] is None for l in d["layers"])


def test_blob_result_str_format():
    from harness.compare.reports.result import compare_arrays

    ref = np.zeros((2, 3, 5, 7))
    ref[0, 2, 4, 1] = 2.0
    k = ref.copy()
    k[0, 2, 4, 1] = 2.0031
    r = compare_arrays("conv2", "isolated", ref, k, 1e-6, tolerance="t")
    # issue 25: the failing element (index, Caffe, Keras, bound, ratio) and how many are past the bound; only the
    # atol that passes every element (no rtol from a near-zero element, no "0.00% of elements")
    assert str(r) == ("conv2 [isolated]: FAIL max_abs=0.0031; failing element (0, 2, 4, 1): caffe=2 keras=2.0031 "
                      "bound=1.00e-06 ratio=3100; 1 of 210 past the bound; needs atol>=0.0031")
    assert r.worst_index == (0, 2, 4, 1) and r.frac_fail == pytest.approx(1 / 210)
    assert r.needs_atol == pytest.approx(0.0031) and r.needs_rtol == pytest.approx(0.00155)
    assert r.median_abs == 0 and r.mean_abs == pytest.approx(0.0031 / 210)


def test_unmatched_on_both_sides_are_listed():
    import keras

    from harness.caffe import load_net_text
    from harness.compare import compare
    from harness.weights import random_weights

    net = random_weights(load_net_text("""
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 5 dim: 7 } } }
        layer { name: "flat" type: "Flatten" bottom: "data" top: "flat" }
        layer { name: "fc" type: "InnerProduct" bottom: "flat" top: "fc" inner_product_param { num_output: 4 } }
        layer { name: "sig" type: "Sigmoid" bottom: "fc" top: "sig" }
        layer { name: "prob" type: "Softmax" bottom: "sig" top: "prob" }
    """), 0)
    w, b = net.layer("fc").blobs
    inp = keras.Input((5, 7, 3))
    x = keras.layers.Permute((3, 1, 2))(inp)
    x = keras.layers.Flatten()(x)
    d = keras.layers.Dense(4)
    x = d(x)
    d.set_weights([np.asarray(w).T, np.asarray(b)])
    x = keras.layers.Activation("sigmoid")(x)
    x = keras.layers.Dense(6, name="extra_head")(x)  # not in Caffe
    rep = compare(net, keras.Model(inp, x))  # no Softmax in Keras
    assert [lr.key for lr in rep.layers] == ["fc/fc", "sig/sig"]
    assert rep.unmatched_caffe == ["prob/prob"]  # "flat" is a re-layout: not listed
    assert rep.unmatched_keras == ["extra_head"]
    assert all(lr.passed for lr in rep.layers)  # everything that was matched agrees ...
    # ... but the net output prob has no Keras counterpart and the Keras output comes from a layer Caffe lacks:
    # not equivalent (unmatched intermediate layers alone would stay informational)
    assert not rep and len(rep.output_problems) == 2
    assert "'prob'" in rep.output_problems[0] and "extra_head" in rep.output_problems[1]
    fd = rep.first_divergence
    assert fd.caffe_layer == "prob" and fd.mode == "structure" and fd.diagnosis[0].cause == "missing_layer"
    assert "Unmatched Caffe: prob/prob" in rep.verdict() and "Unmatched Keras: extra_head" in rep.verdict()
    assert "Output not matched" in rep.verdict()


def test_lrn_in_a_lambda_is_matched_and_alpha_scaling_named():
    """Hand-written AlexNet ports compute LRN with tf.nn.local_response_normalization in a Lambda (in memory)."""
    import keras
    import tensorflow as tf

    from harness.caffe import load_net_text
    from harness.compare import compare

    net = load_net_text("""
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 7 dim: 5 dim: 6 } } }
        layer { name: "norm1" type: "LRN" bottom: "data" top: "norm1"
                lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }
    """)
    x = np.random.default_rng(0).standard_normal((2, 7, 5, 6)).astype(np.float32) * 30
    verdicts = []
    for alpha in (1e-4 / 5, 1e-4):  # Caffe divides alpha by local_size; TF does not
        inp = keras.Input((5, 6, 7))
        y = keras.layers.Lambda(lambda t, a=alpha: tf.nn.local_response_normalization(t, 2, 1.0, a, 0.75))(inp)
        rep = compare(net, keras.Model(inp, y), x)
        assert [(lr.key, lr.matched_by) for lr in rep.layers] == [("norm1/norm1", "position")]
        verdicts.append(rep)
    assert verdicts[0] and not verdicts[1]
    assert verdicts[1].first_divergence.diagnosis[0].cause == "lrn_alpha_scaling"


def test_a_layer_that_only_carries_an_upstream_error_never_reads_ok():
    """After a kernel-reshape bug at conv1, the later pairs' chained errors are the upstream error carried along:
    their chained status reads "carried", not "ok", and the verdict counts isolated vs chained-only failures."""
    from support.nets import small_net
    from support.ports import keras_port

    from harness.compare import compare

    net = small_net()
    x = np.random.default_rng(3).standard_normal((2, 3, 13, 11)).astype(np.float32)
    rep = compare(net, keras_port(net, bug="reshape"), x)
    assert not rep
    first, *later = rep.layers
    assert first.key == "relu1/conv1" and not first.isolated.passed and rep.first_divergence.caffe_layer == "conv1"
    carried = [lr.key for lr in later if lr.chained.passed and lr.chained.propagated_max_abs is not None]
    assert carried == ["pool1/pool1", "scale1/pool1", "fc/fc", "prob/prob"]
    assert all(lr.isolated.passed and lr.chained.rel_to_scale > 0.1 for lr in later)  # far from right
    table = rep.table(width=200)
    rows = [[c.strip() for c in ln.split("│")] for ln in table.splitlines() if ln.count("│") > 8]
    assert [r[7] for r in rows] == ["FAIL", "carried", "carried", "carried", "carried"]
    verdict = rep.verdict()
    iso = sum(1 for lr in rep.layers if not lr.isolated.passed)
    assert f"{iso} fail in isolation (their own error)" in verdict
    assert f"{len(carried)} more carry an upstream error" in verdict
