"""Converter B, Eltwise/Axpy and Softmax/Reduction/ArgMax: golden real-Caffe values and the NumPy reference on
random tensors with distinct axis sizes (axis variants 0/1/2/3/negative, rank-changing outputs)."""

from __future__ import annotations

import numpy as np
import pytest

import support.converted as K
from support import assert_blob_close, golden, golden_bottoms, one_layer_net
from harness.errors import ShapeError, UnsupportedParam

TYPES = {"Eltwise", "Axpy", "Softmax", "Reduction", "ArgMax"}
EXACT = {"Eltwise", "ArgMax"}  # SUM/PROD/MAX of two float32 values is one rounding on both sides
D4 = (2, 3, 5, 7)


@pytest.fixture(scope="module")
def shape_ops():
    return golden("shape_ops")


def _golden_layers():
    net, _, _ = golden("shape_ops")
    return [lay.name for lay in net.layers if lay.kind in TYPES]


@pytest.mark.parametrize("name", _golden_layers())
def test_golden(shape_ops, name):
    net, blobs, inputs = shape_ops
    lay = net.layer(name)
    (got,) = K.run_layer(lay, golden_bottoms(net, blobs, inputs, lay))
    exact = lay.kind == "ArgMax" or (lay.kind == "Eltwise" and not lay.p("eltwise_param").coeff)
    assert_blob_close(got, blobs[f"{name}/{lay.tops[0]}"], name, rtol=0.0 if exact else K.REL_TOL)


def L(type_, params="", bottoms=("data",), name="l"):
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    return f'layer {{ name: "{name}" type: "{type_}" {b} top: "{name}" {params} }}'


THREE = {"data": D4, "b": D4, "c": D4}
CASES = [
    ("sum", L("Eltwise", bottoms=("data", "b", "c")), THREE),
    ("sum_coeff", L("Eltwise", "eltwise_param { coeff: 0.5 coeff: -2 coeff: 1.25 }", bottoms=("data", "b", "c")),
     THREE),
    ("sum_coeff_ones", L("Eltwise", "eltwise_param { coeff: 1 coeff: 1 }", bottoms=("data", "b")), THREE),
    ("prod", L("Eltwise", "eltwise_param { operation: PROD }", bottoms=("data", "b", "c")), THREE),
    ("max", L("Eltwise", "eltwise_param { operation: MAX }", bottoms=("data", "b", "c")), THREE),
    ("sum_2d", L("Eltwise", "eltwise_param { coeff: 3 coeff: -1 }", bottoms=("data", "b")),
     {"data": (2, 3), "b": (2, 3)}),
    ("axpy", L("Axpy", bottoms=("a", "data", "b")), {"a": (2, 3, 1, 1), "data": D4, "b": D4}),
    ("softmax", L("Softmax"), {"data": D4}),
    ("softmax_n", L("Softmax", "softmax_param { axis: 0 }"), {"data": D4}),
    ("softmax_h", L("Softmax", "softmax_param { axis: 2 }"), {"data": D4}),
    ("softmax_w_neg", L("Softmax", "softmax_param { axis: -1 }"), {"data": D4}),
    ("softmax_2d", L("Softmax"), {"data": (2, 5)}),
    ("softmax_3d_last", L("Softmax", "softmax_param { axis: 2 }"), {"data": (2, 3, 5)}),
]
for op in ("SUM", "ASUM", "SUMSQ", "MEAN"):
    for axis in (0, 1, 2, 3, -1):
        CASES.append((f"reduction_{op}_{axis}",
                      L("Reduction", f"reduction_param {{ operation: {op} axis: {axis} coeff: -1.5 }}"), {"data": D4}))
CASES += [
    ("reduction_default", L("Reduction"), {"data": D4}),
    ("reduction_3d", L("Reduction", "reduction_param { operation: MEAN axis: 1 }"), {"data": (2, 3, 5)}),
    ("reduction_2d_axis1", L("Reduction", "reduction_param { operation: SUMSQ axis: 1 }"), {"data": (2, 5)}),
]


@pytest.mark.parametrize("text,inputs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_against_reference(text, inputs):
    K.check_against_reference(text, inputs)


ARGMAX = [
    ("default", "", D4),
    ("top3", "argmax_param { top_k: 3 }", D4),
    ("top2_val", "argmax_param { top_k: 2 out_max_val: true }", D4),
    ("axis0", "argmax_param { axis: 0 }", D4),
    ("axis1_top2", "argmax_param { axis: 1 top_k: 2 }", D4),
    ("axis2_val", "argmax_param { axis: 2 top_k: 3 out_max_val: true }", D4),
    ("axis_neg1", "argmax_param { axis: -1 top_k: 4 }", D4),
    ("2d", "argmax_param { top_k: 2 out_max_val: true }", (2, 5)),
    ("3d", "argmax_param { top_k: 2 }", (2, 3, 5)),
    ("5d", "argmax_param { top_k: 2 out_max_val: true }", (2, 3, 4, 5, 6)),
]


@pytest.mark.parametrize("params,shape", [a[1:] for a in ARGMAX], ids=[a[0] for a in ARGMAX])
def test_argmax_against_reference(params, shape):
    K.check_against_reference(L("ArgMax", params), {"data": shape}, exact=True)


def test_argmax_ties_go_to_higher_index():
    """Caffe sorts (value, index) pairs with std::greater: among equal values the higher index ranks first."""
    data = np.zeros(D4, np.float32)
    data[:, :, 1:3, 2] = 1.0  # ties along H at rows 1 and 2
    K.check_against_reference(L("ArgMax", "argmax_param { axis: 2 top_k: 2 }"), {"data": D4}, exact=True,
                              data={"data": data})
    K.check_against_reference(L("ArgMax", "argmax_param { top_k: 3 }"), {"data": D4}, exact=True,
                              data={"data": data})
    net = one_layer_net(L("ArgMax", "argmax_param { axis: 2 }"), {"data": D4})
    (got,) = K.run_layer(net.layers[-1], [data])
    assert got[0, 0, 0, 2] == 2.0 and got[0, 0, 0, 0] == 4.0


def test_eltwise_errors():
    from harness.caffe import load_net_text
    base = ('name: "t" layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 5'
            ' dim: 7 } } } ')
    net = load_net_text(base + L("Eltwise", "eltwise_param { operation: PROD coeff: 1 coeff: 2 }",
                                 bottoms=("data", "data")), check=False)
    with pytest.raises(UnsupportedParam, match=r"Eltwise 'l': eltwise_param.coeff=.*operation=PROD"):
        K.build_layer_model(net.layers[-1], [D4, D4])
    net = load_net_text(base + L("Eltwise", "eltwise_param { coeff: 1 }", bottoms=("data", "data")), check=False)
    with pytest.raises(ShapeError, match=r"Eltwise 'l': 1 coeff values for 2 bottoms"):
        K.build_layer_model(net.layers[-1], [D4, D4])
