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
TFLITE = [
    ("plain", "func", "from_keras_model"),
    ("plain", "seq", "from_saved_model"),
    ("plain", "func", "from_concrete_functions"),
    ("plain", "nested", "from_keras_model"),
    ("bn", "func", "from_keras_model"),
    ("bn", "func", "from_concrete_functions"),
    ("bn", "func", "from_saved_model"),
    ("res", "func", "from_saved_model"),
    ("res", "func", "from_concrete_functions"),
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
