"""Diagnosis on models the converter produced from real-Caffe golden cases (fixtures/golden), each sabotaged after
conversion in one layer: the comparator must name that layer and the diagnosis the bug -- through the converter's
layer mapping, its layouts, grouped/dilated/depthwise convolutions and BatchNorm+Scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden"


def _sabotage(kl, what):
    ws = kl.get_weights()
    if what == "flip":
        ws[0] = ws[0][::-1, ::-1].copy()  # HWIO / (kh, kw, C, m): rotate the spatial axes by 180 degrees
    elif what == "bias":
        ws[1] = np.zeros_like(ws[1])
    kl.set_weights(ws)
    if what == "eps":
        kl.epsilon = 1e-3  # Keras's default instead of Caffe's 1e-5


@pytest.mark.parametrize("case,layer,what,cause", [
    ("conv_group_dilation", "conv_g2", "flip", "kernel_flipped"),
    ("conv_group_dilation", "conv_dw_mult2", "flip", "kernel_flipped"),
    ("conv_group_dilation", "conv_dil2", "bias", "missing_bias"),
    ("resnet_block", "conv1", "flip", "kernel_flipped"),
    ("resnet_block", "bn1", "eps", "bn_epsilon"),
])
def test_converted_model_sabotaged(case, layer, what, cause):
    from harness.caffe import load_net
    from harness.compare import compare
    from harness.convert import convert

    net = load_net(GOLDEN / case / "net.prototxt", weights=GOLDEN / case / "weights.caffemodel")
    inputs = dict(np.load(GOLDEN / case / "inputs.npz"))
    model = convert(net)
    assert compare(net, model, inputs), "the converted model must pass before it is sabotaged"
    _sabotage(model.get_layer(layer), what)
    report = compare(net, model, inputs)
    assert not report
    fd = report.first_divergence
    assert fd.caffe_layer == layer
    top = fd.diagnosis[0]
    assert top.cause == cause and top.confidence > 0.99, fd.diagnosis[:3]
