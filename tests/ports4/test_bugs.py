"""(b) One classic porting bug per port, exported by the user's own code: exit 1, the first divergent layer is the
Caffe layer the bug is in, and the top cause is the bug's cause code. TFLite files are checked on both LiteRT paths,
and each path must name the same layer."""

from __future__ import annotations

import pytest

from .test_correct import summary

pytest.importorskip("ai_edge_litert")

BUGS = [  # (net, style, bug, Caffe layer, cause)
    ("plain", "func", "kernel_reshaped", "conv1", "kernel_reshaped"),
    ("plain", "seq", "same_padding", "conv1", "same_padding"),
    ("plain", "func", "flatten_order", "ip1", "flatten_order"),
    ("bn", "func", "bn_epsilon", "bn1", "bn_epsilon"),
    ("bn", "func", "pool_rounding", "pool1", "pool_rounding"),
    ("res", "func", "lrn_alpha_scaling", "norm", "lrn_alpha_scaling"),
]
SAVED_EXPORT = {"kernel_reshaped": "model_export", "same_padding": "tf_saved_model", "flatten_order": "model_export",
                "bn_epsilon": "tf_saved_model", "pool_rounding": "model_export",
                "lrn_alpha_scaling": "export_archive"}
TFLITE_EXPORT = {"kernel_reshaped": "from_keras_model", "same_padding": "from_concrete_functions",
                 "flatten_order": "from_saved_model", "bn_epsilon": "from_keras_model",
                 "pool_rounding": "from_concrete_functions", "lrn_alpha_scaling": "from_keras_model"}
IDS = [b[2] for b in BUGS]
# the user's Keras layer the SavedModel's first divergence must name (its layer scope in the graph)
SAVED_KERAS = {"kernel_reshaped": "conv2d_1", "same_padding": "conv2d", "flatten_order": "dense_1",
               "bn_epsilon": "batch_normalization", "pool_rounding": "max_pooling2d",
               "lrn_alpha_scaling": "my_lrn"}


def _assert_named(rc, report, err, layer, cause):
    assert rc == 1, (err, summary(report))
    first = report["first_divergence"]
    assert report["equivalent"] is False and first is not None, summary(report)
    assert first["caffe_layer"] == layer, summary(report)
    causes = [d["cause"] for d in first["diagnosis"]]
    assert causes and causes[0] == cause, (causes, first["diagnosis"][:2])


@pytest.mark.parametrize("net,style,bug,layer,cause", BUGS, ids=IDS)
def test_bug_in_saved_model_named(artefact, check, net, style, bug, layer, cause):
    d = artefact(net, "saved_model", SAVED_EXPORT[bug], style, bug)
    flags = ("--signature", "predict") if SAVED_EXPORT[bug] == "export_archive" else ()
    rc, report, err = check(net, "--saved-model", d, *flags)
    _assert_named(rc, report, err, layer, cause)
    assert report["first_divergence"]["keras_layer"].startswith(SAVED_KERAS[bug]), report["first_divergence"]


@pytest.mark.parametrize("net,style,bug,layer,cause", BUGS, ids=IDS)
def test_bug_in_tflite_named_on_both_delegates(artefact, check, net, style, bug, layer, cause):
    f = artefact(net, "tflite", TFLITE_EXPORT[bug], style, bug)
    rc, report, err = check(net, "--tflite", f, "--tflite-delegate", "both")
    _assert_named(rc, report, err, layer, cause)
    paths = report["delegates"]
    assert {k: (v["equivalent"], v["first_divergence"]) for k, v in paths.items()} == {
        "xnnpack": (False, layer), "none": (False, layer)}, paths
