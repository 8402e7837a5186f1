"""Property: a converted model saved with harness.convert.save_model and loaded back with load_model (Keras safe
mode) computes bit-identical records and keeps its Caffe -> Keras mapping, for every convertible layer type and for
random nets."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.convert import load_model, save_model
from harness.strategies import layer_case, nets

from ._props import convert, examples, fail_with_case, keras_records
from .test_layers import TYPES


def check_roundtrip(case) -> None:
    net = case.load()
    model = convert(net)
    before = keras_records(model, net, case.inputs)
    with tempfile.TemporaryDirectory(prefix="harness-rt-") as d:
        path = Path(d) / "model.keras"
        save_model(model, path)
        loaded = load_model(path)
    assert getattr(loaded, "harness_mapping", None) == model.harness_mapping
    after = keras_records(loaded, net, case.inputs)
    problems = []
    if sorted(before) != sorted(after):
        problems.append(f"keys differ after the round trip: {sorted(set(before) ^ set(after))}")
    for k in before:
        if k in after and not np.array_equal(before[k], after[k], equal_nan=True):
            diff = np.max(np.abs(np.asarray(before[k], np.float64) - np.asarray(after[k], np.float64)))
            problems.append(f"{k}: differs after save -> load by up to {diff:.3g}")
    if problems:
        fail_with_case(case, problems, "save_model -> load_model (safe mode) changed the model")


@pytest.mark.parametrize("caffe_type", TYPES)
@settings(max_examples=examples(0.1))
@given(data=st.data())
def test_layer_roundtrip_is_identical(caffe_type, data):
    check_roundtrip(data.draw(layer_case(caffe_type), label="case"))


@settings(max_examples=examples(0.25))
@given(case=nets())
def test_net_roundtrip_is_identical(case):
    check_roundtrip(case)
