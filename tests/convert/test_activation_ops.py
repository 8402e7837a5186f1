"""Converter B, element-wise neurons: golden real-Caffe values, the NumPy reference on random data, errors.

Tolerance: see tests/convert/_kit.py (1e-5 of the blob's max; exact where the Keras op is a selection/one product).
"""

from __future__ import annotations

import numpy as np
import pytest

import support.converted as K
from support import assert_blob_close, golden, golden_bottoms, one_layer_net
from harness.errors import ShapeError, UnsupportedParam

SHAPE = {"data": (2, 3, 5, 7)}
EXACT_GOLDEN = {"relu", "leaky", "prelu", "prelu_shared", "absval", "threshold", "dropout", "relu6"}


@pytest.fixture(scope="module")
def golden_activations():
    return golden("activations")


def _golden_layers():
    net, _, _ = golden("activations")
    return [lay.name for lay in net.layers if lay.kind != "Input"]


@pytest.mark.parametrize("name", _golden_layers())
def test_golden_activations(golden_activations, name):
    net, blobs, inputs = golden_activations
    lay = net.layer(name)
    (got,) = K.run_layer(lay, golden_bottoms(net, blobs, inputs, lay))
    assert_blob_close(got, blobs[f"{name}/{lay.tops[0]}"], name, rtol=0.0 if name in EXACT_GOLDEN else K.REL_TOL)


def L(type_, params="", bottom="data", name="l"):
    return f'layer {{ name: "{name}" type: "{type_}" bottom: "{bottom}" top: "{name}" {params} }}'


CASES = [
    ("relu", L("ReLU"), True),
    ("leaky", L("ReLU", "relu_param { negative_slope: 0.25 }"), True),
    ("negative_slope", L("ReLU", "relu_param { negative_slope: -0.5 }"), True),
    ("relu6", L("ReLU6"), True),
    ("elu", L("ELU", "elu_param { alpha: 0.3 }"), False),
    ("elu_default", L("ELU"), False),
    ("sigmoid", L("Sigmoid"), False),
    ("tanh", L("TanH"), False),
    ("absval", L("AbsVal"), True),
    ("bnll", L("BNLL"), False),
    ("power", L("Power", "power_param { power: 3 scale: -0.7 shift: 0.4 }"), False),
    ("power_scale_only", L("Power", "power_param { scale: 2.5 }"), False),
    ("power_const", L("Power", "power_param { power: 2 scale: 0 shift: 3 }"), False),
    ("power_zero", L("Power", "power_param { power: 0 scale: 3 }"), False),
    ("exp_e", L("Exp"), False),
    ("exp_e_shift", L("Exp", "exp_param { scale: 0.5 shift: -0.3 }"), False),
    ("exp_base3", L("Exp", "exp_param { base: 3 scale: -1.5 shift: 0.25 }"), False),
    ("threshold", L("Threshold", "threshold_param { threshold: 0.3 }"), True),
    ("threshold_default", L("Threshold"), True),
    ("clip", L("Clip", "clip_param { min: -0.4 max: 0.7 }"), True),
    ("swish", L("Swish"), False),
    ("swish_beta", L("Swish", "swish_param { beta: 1.7 }"), False),
    ("dropout", L("Dropout", "dropout_param { dropout_ratio: 0.4 }"), True),
    ("dropout_scale_test", L("Dropout", "dropout_param { dropout_ratio: 0.25 scale_train: false }"), False),
]


@pytest.mark.parametrize("text,exact", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_against_reference(text, exact):
    K.check_against_reference(text, SHAPE, exact=exact)


@pytest.mark.parametrize("text", [
    L("Log"),
    L("Log", "log_param { base: 2 scale: 3 shift: 0.5 }"),
    L("Log", "log_param { base: 10 }"),
    L("Power", "power_param { power: 0.5 scale: 1.5 shift: 0.2 }"),  # fractional power of |x|
], ids=["log_e", "log_base2", "log_base10", "power_frac"])
def test_positive_domain_against_reference(text):
    rng = np.random.default_rng(3)
    data = np.abs(rng.standard_normal(SHAPE["data"])) + 0.05
    K.check_against_reference(text, SHAPE, data={"data": data})


def test_log_of_negative_is_nan_like_caffe():
    data = np.linspace(-1, 1, 2 * 3 * 5 * 7).reshape(SHAPE["data"])
    K.check_against_reference(L("Log"), SHAPE, data={"data": data})


@pytest.mark.parametrize("shape,shared", [
    ((2, 3, 5, 7), False), ((2, 3, 5, 7), True), ((2, 3), False), ((2, 3, 5), False), ((2, 4, 3, 5, 7), False),
])
def test_prelu_channel_axis(shape, shared):
    """The slope follows Caffe's axis 1: the NHWC channel axis of a 4-D blob, axis 1 of any other rank."""
    c = 1 if shared else shape[1]
    slopes = np.linspace(-0.9, 1.3, c).astype(np.float32)
    text = L("PReLU", "prelu_param { channel_shared: %s }" % ("true" if shared else "false"))
    K.check_against_reference(text, {"data": shape}, weights={"l": [slopes]}, exact=True)


def test_prelu_rejects_1d_and_wrong_blob():
    net = one_layer_net(L("PReLU"), SHAPE, weights={"l": [np.ones(3, np.float32)]})
    lay = net.layers[-1]
    from dataclasses import replace
    bad = replace(lay, blobs=(np.ones(4, np.float32),))
    with pytest.raises(ShapeError, match=r"PReLU 'l'.*4 values, expected 3"):
        K.build_layer_model(bad, [SHAPE["data"]])


def test_exp_rejects_negative_base():
    net = one_layer_net(L("Exp"), SHAPE)
    from harness.proto import caffe_pb2
    lp = caffe_pb2.LayerParameter()
    lp.CopyFrom(net.layers[-1].param)
    lp.exp_param.base = -2
    from dataclasses import replace
    with pytest.raises(UnsupportedParam, match=r"Exp 'l': exp_param.base=-2"):
        K.build_layer_model(replace(net.layers[-1], param=lp), [SHAPE["data"]])


def test_keras_layer_names_and_kinds():
    """The layer producing the top is named after the Caffe layer; standard layers where exact."""
    net = one_layer_net(L("ReLU", "relu_param { negative_slope: 0.1 }", name="leaky1"), SHAPE)
    model, _ = K.build_layer_model(net.layers[-1], [SHAPE["data"]])
    assert model.get_layer("leaky1").__class__.__name__ == "LeakyReLU"
    net = one_layer_net(L("Dropout", name="drop7"), SHAPE)
    model, _ = K.build_layer_model(net.layers[-1], [SHAPE["data"]])
    assert model.get_layer("drop7").__class__.__name__ == "Identity"
