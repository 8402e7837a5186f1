"""(a) Correct hand-written ports, exported by the user's own code, pass: exit 0, every paired layer within bounds,
on both LiteRT paths. The pairs must not be vacuous: the net output and the first convolution are compared."""

from __future__ import annotations

import pytest

pytest.importorskip("ai_edge_litert")

SAVED = [  # (net, style, export, extra flags)
    ("plain", "func", "model_export", ()),
    ("plain", "seq", "export_archive", ("--signature", "predict")),
    ("plain", "func", "tf_saved_model", ()),
    ("bn", "func", "export_archive", ("--signature", "predict")),
    ("bn", "func", "tf_saved_model", ()),
    ("res", "func", "model_export", ()),
    ("res", "func", "tf_saved_model", ()),
    ("plain", "seq", "model_export", ()),
    ("plain", "func", "nchw_signature", ()),
    ("plain", "nested", "export_archive", ("--signature", "predict")),
    ("plain", "nested", "model_export", ()),
]
# harness/compare/artefact.py pairs TFLite tensors with Caffe records by position (_by_position); where TFLite
# fused a layer with the in-place layers after it, _fused_next hands the tensor to the follower only when the NEXT
# tensor has another shape and the follower is an activation (or a Scale after a BatchNorm).  Two correct ports break
# that rule (false alarms, on both LiteRT paths):
BN_FOLDED = pytest.mark.xfail(strict=True, reason=(
    "artefact._fused_next: TFLite folds conv1 + bn1 + sc1 + relu1 into one CONV_2D (fused RELU), tensor "
    "'bn_port_1/activation_1/Relu' (2x9x11x5); a BatchNorm after a Convolution is not in _FUSABLE, so _by_position "
    "pairs that tensor with record conv1/conv1 (the pre-BN convolution): max_abs 3.164 at (1, 1, 6, 7), caffe "
    "-3.164234, tflite 0 (ReLU'd); first_divergence conv1, cause unknown. It should pair relu1/conv1 (segment "
    "conv1..relu1)"))
RES_SHIFTED = pytest.mark.xfail(strict=True, reason=(
    "artefact._fused_next: in a shape-preserving chain (conv1 k3 p1 -> relu1 -> conv2 k3 p1 -> res -> relu2 -> LRN, "
    "all 2x6x7x9) the tensor after the fused CONV_2D+RELU 'res_port_1/block_a_1/Relu' has the same shape, so the "
    "fusion is not seen and _by_position pairs one record off: conv1<-block_a_1/Relu (max_abs 2.839, caffe -2.839 "
    "tflite 0), relu1<-block_b_1/BiasAdd (3.757), conv2<-post_add_relu_1/Relu (ADD with fused RELU, 3.772), "
    "res<-my_lrn_1/LRN (2.302), relu2<-to_chw_1/transpose. Fusion could be read from the operator "
    "(fused_activation_function) or from the values (closest record, as _to_follower does for named tensors)"))
NESTED_SCOPE = pytest.mark.xfail(strict=True, reason=(
    "artefact.layer_scope/_layer_outputs: a layer scope is the first two name components, which for a Sequential "
    "backbone used as one layer is the backbone ('functional_1_1/features_1'), so of the consecutive tensors "
    "'functional_1_1/features_1/re_lu_1/Relu;...conv2d_1/BiasAdd;...' (CONV_2D + fused RELU, 2x5x7x6) and "
    "'.../features_1/max_pooling2d_1/MaxPool2d' only the last counts as a layer output: conv1 and relu1 pair with "
    "nothing (folded into pool1's segment, not listed as unmatched); the verdict (pass) is right, but a conv1 bug "
    "can only surface at pool1 (conv1 itself is never compared)"))
TFLITE = [
    ("plain", "func", "from_keras_model"),
    ("plain", "seq", "from_saved_model"),
    ("plain", "func", "from_concrete_functions"),
    pytest.param("plain", "nested", "from_keras_model", marks=NESTED_SCOPE),
    pytest.param("bn", "func", "from_keras_model", marks=BN_FOLDED),
    pytest.param("bn", "func", "from_concrete_functions", marks=BN_FOLDED),
    pytest.param("bn", "func", "from_saved_model", marks=BN_FOLDED),
    pytest.param("res", "func", "from_saved_model", marks=RES_SHIFTED),
    pytest.param("res", "func", "from_concrete_functions", marks=RES_SHIFTED),
]


def _id(p):
    v = p.values if hasattr(p, "values") else p
    return "-".join(map(str, v))


def _paired(report):
    return {row["caffe_layer"] for row in report["layers"] if row["chained"] is not None}


def summary(report):
    """The failing rows, short: what a failure message needs to say."""
    if report is None:
        return "no report"
    rows = [(r["caffe_layer"], r["keras_layer"], r["matched_by"], r["shape"], r["chained"] and r["chained"]["max_abs"],
             r["chained"] and r["chained"]["tolerance"]) for r in report["layers"]
            if r["chained"] is not None and not r["chained"]["passed"]]
    return {"first": report["first_divergence"] and {k: report["first_divergence"][k] for k in
                                                     ("caffe_layer", "keras_layer")},
            "failed": rows, "unmatched": report["unmatched"], "notes": report["notes"],
            "delegates": report.get("delegates")}


def _assert_pass(rc, report, err):
    assert rc == 0, (err, summary(report))
    assert report["equivalent"] is True and report["first_divergence"] is None
    paired = _paired(report)
    # not vacuous: the output and the first convolution (or, where TFLite fused it with what follows, the tensor
    # that ends its fused span) are compared
    assert "prob" in paired and paired & {"conv1", "bn1", "sc1", "relu1"}, sorted(paired)
    assert all(row["chained"]["passed"] for row in report["layers"] if row["chained"] is not None)
    assert not report["unmatched"]["outputs"]


# what a SavedModel export preserves of each port: every layer scope's output, so every Caffe layer with a Keras
# counterpart is paired (the frozen graph keeps the convolution's output before a fused ReLU, too)
SAVED_PAIRED = {"plain": {"conv1", "relu1", "pool1", "ip1", "prob"},
                "bn": {"conv1", "pool1", "conv2", "pool2", "ip1", "prob"},
                "res": {"conv1", "conv2", "res", "norm", "ip1", "prob"}}


@pytest.mark.parametrize("net,style,export,flags", SAVED, ids=[f"{n}-{s}-{e}" for n, s, e, _ in SAVED])
def test_correct_saved_model_passes(artefact, check, net, style, export, flags):
    d = artefact(net, "saved_model", export, style)
    rc, report, err = check(net, "--saved-model", d, *flags)
    _assert_pass(rc, report, err)
    assert report["artefact"]["kind"] == "saved_model"
    assert SAVED_PAIRED[net] <= _paired(report), sorted(_paired(report))


@pytest.mark.parametrize("net,style,export", TFLITE, ids=[_id(p) for p in TFLITE])
def test_correct_tflite_passes_on_both_delegates(artefact, check, net, style, export):
    f = artefact(net, "tflite", export, style)
    rc, report, err = check(net, "--tflite", f, "--tflite-delegate", "both")
    _assert_pass(rc, report, err)
    assert report["artefact"]["kind"] == "tflite"
    assert {k: v["equivalent"] for k, v in report["delegates"].items()} == {"xnnpack": True, "none": True}
