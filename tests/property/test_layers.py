"""Property: for every Caffe type, a random valid single layer converted to Keras computes what the reference
computes (every output key, float32 tolerance), and the converter refuses by name what it cannot convert exactly.

Failures print the shrunk case as a pasteable prototxt plus a directory with weights and inputs to replay with
``caffe-harness check``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import ConversionError
from harness.strategies import STRATEGIES, layer_case

from ._props import compare_records, convert, examples, fail_with_case, keras_records, require, use_comparator

# Types the converter refuses by design (an exact Keras model is impossible), with the reason.  If the converter
# starts supporting one, test_refused_types_are_refused_by_name fails: move the type back to the equivalence property.
REFUSED = {
    "DetectionOutput": "data-dependent output size (per-class NMS + keep_top_k); refused by name",
}
TYPES = sorted(t for t in STRATEGIES.types() if t not in REFUSED)


def check_case(case, *, comparator: bool = False) -> None:
    """Reference vs converted Keras model on one drawn case; fails with the pasteable prototxt."""
    forward = require("harness.reference", "forward")
    net = case.load()
    model = convert(net)
    cmp = use_comparator() if comparator else None
    if cmp is not None:
        report = cmp(net, model, inputs=case.inputs, diagnose=False)
        if not report:
            fail_with_case(case, [str(report.verdict() if hasattr(report, "verdict") else report)],
                           f"{case.layers[-1].type} converted by harness.convert differs from the reference")
        return
    ref = forward(net, {k: v.astype(np.float64) for k, v in case.inputs.items()})
    got = keras_records(model, net, case.inputs)
    problems = compare_records(ref, got)
    missing = [k for k in net.keys() if k not in got]
    if missing:
        problems.append(f"reference records with no Keras counterpart in the model's mapping: {missing}")
    if problems:
        fail_with_case(case, problems, f"{case.layers[-1].type} converted by harness.convert differs from the "
                                       f"reference")


@pytest.mark.parametrize("caffe_type", TYPES)
@settings(max_examples=examples())
@given(data=st.data())
def test_converted_layer_matches_reference(caffe_type, data):
    case = data.draw(layer_case(caffe_type), label="case")
    check_case(case)


@pytest.mark.parametrize("caffe_type", sorted(REFUSED))
@settings(max_examples=examples(0.25))
@given(data=st.data())
def test_refused_types_are_refused_by_name(caffe_type, data):
    case = data.draw(layer_case(caffe_type), label="case")
    net = case.load()
    with pytest.raises(ConversionError) as exc:
        convert(net)
    assert case.layers[-1].name in str(exc.value) and caffe_type in str(exc.value), str(exc.value)
