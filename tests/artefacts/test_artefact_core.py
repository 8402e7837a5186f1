"""The artefact core (harness.compare.artefacts.pairing) on synthetic artefact runs: tensors named like a TFLite export's,
in NHWC, built from the float64 reference (float32-rounded) or from the reference of a net with one wrong layer."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from harness.compare.artefacts.pairing import (ArtefactRun, QuantGate, agreement, compare_artefact, dequantize,
                                      named_layers, sqnr_db)
from harness.compare.engine.inputs import prepare_inputs
from harness.compare.engine.passes import reference_forward

from support.nets import small_net

# what a TFLite export of the converted small net names its tensors (the Keras layer names, a scope suffix "_1",
# TFLite's fusion of conv1 + relu1 and bn1 + scale1 into one tensor)
NAMES = {
    "relu1/conv1": "small_1/conv1_1/BiasAdd;small_1/relu1_1/Relu;small_1/conv1_1/convolution",
    "pool1/pool1": "small_1/pool1_1/MaxPool2d",
    "scale1/pool1": "small_1/bn1_1/mul;small_1/scale1_1/add",
    "fc/fc": "small_1/fc_1/MatMul;small_1/fc_1/BiasAdd",
    "prob/prob": "StatefulPartitionedCall_1:0",
}


def _nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x


def _run(ref, names=NAMES, **kw):
    values = {names[k]: _nhwc(np.asarray(ref[k], np.float32)) for k in names}
    return ArtefactRun("tflite", "m.tflite", values, list(values), {"data": "serving_default_data:0"},
                       {"prob": NAMES["prob/prob"]}, name="m.tflite", **kw)


def _net_and_data():
    net = small_net()
    return net, prepare_inputs(net, None, 3)


def test_named_layers_reads_the_scope_suffix_and_fusions():
    net = small_net()
    assert named_layers(net, NAMES["relu1/conv1"]) == ["conv1", "relu1"]
    assert named_layers(net, NAMES["scale1/pool1"]) == ["bn1", "scale1"]
    assert named_layers(net, "StatefulPartitionedCall_1:0") == []


def test_a_faithful_artefact_passes_with_fused_segments():
    net, data = _net_and_data()
    ref = reference_forward(net, data)
    rep = compare_artefact(net, data, _run(ref))
    assert rep, rep.table()
    assert rep.mode == "chained" and rep.artefact == {"kind": "tflite", "path": "m.tflite"}
    by = {lr.key: lr for lr in rep.layers}
    assert set(by) == set(NAMES)
    assert by["relu1/conv1"].segment == ("conv1", "relu1")
    assert by["scale1/pool1"].segment == ("bn1", "scale1")
    assert by["prob/prob"].matched_by == "output" and by["fc/fc"].matched_by == "name"
    assert all(lr.isolated is None and lr.chained.passed for lr in rep.layers)
    assert "LiteRT model" in rep.verdict()


def test_structural_matching_without_names_folds_the_fused_activation():
    net, data = _net_and_data()
    ref = reference_forward(net, data)
    anon = {k: f"t{i}" for i, k in enumerate(NAMES)}
    run = _run(ref, anon)
    run.outputs = {}
    rep = compare_artefact(net, data, run)
    assert rep, rep.table()
    by = {lr.key: lr for lr in rep.layers}
    assert [by[k].keras_layer for k in NAMES if k in by] == [anon[k] for k in NAMES if k in by]
    assert by["relu1/conv1"].segment == ("conv1", "relu1") and by["relu1/conv1"].matched_by == "position"


def _reshaped_kernel_net(net):
    conv = net.layer("conv1")
    w, b = conv.blobs
    bad = w.reshape(3, 3, 3, 8).transpose(3, 2, 0, 1)  # HWIO from a reshape, back to Caffe's OIHW
    layers = tuple(dataclasses.replace(l, blobs=(bad, b)) if l.name == "conv1" else l for l in net.layers)
    return dataclasses.replace(net, layers=layers)


def test_one_wrong_layer_is_the_first_divergence_with_its_cause():
    net, data = _net_and_data()
    ref_bad = reference_forward(_reshaped_kernel_net(net), data)
    rep = compare_artefact(net, data, _run(ref_bad))
    assert not rep
    fd = rep.first_divergence
    assert fd.caffe_layer == "conv1" and fd.key == "relu1/conv1"
    assert fd.diagnosis[0].cause == "kernel_reshaped", [c.cause for c in fd.diagnosis]
    # downstream layers only carry the error (the chained rule re-runs each on the artefact's own inputs)
    assert [lr.key for lr in rep.layers if not lr.passed] == ["relu1/conv1"]


def test_quantised_gate_by_sqnr_and_agreement():
    net, data = _net_and_data()
    ref = reference_forward(net, data)
    rng = np.random.default_rng(0)
    noisy = {k: v + 1e-3 * float(np.max(np.abs(v))) * rng.standard_normal(v.shape) for k, v in ref.items()}
    rep = compare_artefact(net, data, _run(noisy, quantised=True), gate=QuantGate(min_sqnr=30.0))
    assert rep, rep.table()
    lrs = {lr.key: lr for lr in rep.layers}
    assert all(40.0 < lr.sqnr_db < 80.0 for lr in rep.layers), [lr.sqnr_db for lr in rep.layers]
    assert rep.top1_agreement == 1.0 and rep.top5_agreement == 1.0
    assert rep.to_dict()["layers"][0]["sqnr_db"] == pytest.approx(lrs["relu1/conv1"].sqnr_db, abs=1e-3)
    strict = compare_artefact(net, data, _run(noisy, quantised=True), gate=QuantGate(min_sqnr=90.0))
    assert not strict and strict.first_divergence.key == "relu1/conv1"
    assert "SQNR dB" in strict.table()


def test_sqnr_agreement_and_dequantize_values():
    r = np.array([[3.0, 4.0]])
    assert sqnr_db(r, r) == math.inf
    assert sqnr_db(r, r + np.array([[0.0, 0.5]])) == pytest.approx(10 * math.log10(25 / 0.25))
    ref = np.array([[0.1, 0.9, 0.0], [0.7, 0.2, 0.1]])
    art = np.array([[0.2, 0.8, 0.0], [0.1, 0.2, 0.7]])
    assert agreement(ref, art, 1) == 0.5 and agreement(ref, art, 2) == 0.5 and agreement(ref, art, 3) == 1.0
    q = np.array([[-128, 0, 127]], np.int8)
    assert np.allclose(dequantize(q, [0.5], [-10]), [[-59.0, 5.0, 68.5]])
    assert np.allclose(dequantize(np.array([[2, 2], [2, 2]], np.int8), [1.0, 2.0], [0, 1], axis=0),
                       [[2.0, 2.0], [2.0, 2.0]])


def test_a_saved_model_scope_name_counts_every_component():
    """A SavedModel value is named by its layer scope (``fc_1``; ``conv2d_1/conv1`` once paired by kind): no op
    component to drop, unlike a TFLite tensor name (``model/layer/op``)."""
    net = small_net()
    assert named_layers(net, "conv2d_1/conv1", ops=False) == ["conv1"]
    assert named_layers(net, "fc_1", ops=False) == ["fc"]
    assert named_layers(net, "conv2d_1/conv1") == []  # as a TFLite name, conv1 would be the op
    assert named_layers(net, "small_1/fc_1/MatMul") == ["fc"]


@pytest.mark.parametrize("known", [True, False])
def test_the_operator_fused_activation_decides_the_pair(known):
    """conv1's operator fused its ReLU, and the next tensor has the same shape (a Pad): only the operator's fused
    activation (``run.fused``) shows that the first tensor is relu1's, not conv1's."""
    net, data = _net_and_data()
    ref = reference_forward(net, data)
    keys = ["relu1/conv1", "pad", "pool1/pool1", "scale1/pool1", "fc/fc", "prob/prob"]
    names = {k: f"t{i}" for i, k in enumerate(keys)}
    values = {names[k]: _nhwc(np.asarray(ref[k], np.float32)) for k in keys if k != "pad"}
    values[names["pad"]] = 3 * values[names["relu1/conv1"]]  # same shape, values of no record
    values = {names[k]: values[names[k]] for k in keys}  # execution order
    fused = {names["relu1/conv1"]: ("ReLU",), names["pad"]: (), names["fc/fc"]: ()} if known else {}
    run = ArtefactRun("tflite", "m.tflite", values, list(values), {"data": "serving_default_data:0"},
                      {"prob": names["prob/prob"]}, name="m.tflite", fused=fused)
    rep = compare_artefact(net, data, run)
    by = {lr.key: lr for lr in rep.layers}
    if known:
        assert rep, rep.table()
        assert by["relu1/conv1"].keras_layer == "t0" and by["relu1/conv1"].segment == ("conv1", "relu1")
        assert "conv1/conv1" not in by
    else:  # by shapes alone the ReLU'd tensor is taken for conv1's: a false alarm the operator facts prevent
        assert not rep and rep.first_divergence.caffe_layer == "conv1"
