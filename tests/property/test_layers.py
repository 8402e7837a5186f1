"""Property: for every Caffe type, a random valid single layer converted to Keras computes what the reference
computes (every ``"<layer>/<top>"`` record, float32 tolerance); the comparator agrees.

Failures print the shrunk case as a pasteable prototxt plus a directory with weights and inputs to replay with
``caffe-harness check``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from harness.reference import forward
from harness.strategies import STRATEGIES, layer_case

from ._props import (REL_TOL, compare_records, convert, examples, fail_with_case, keras_records, record_scales,
                     use_comparator)

# Every catalogued type (the converter refuses none; a refusal fails the property with the ConversionError's message).
TYPES = sorted(STRATEGIES.types())


def check_case(case, *, comparator: str = "on_failure", **convert_kwargs) -> None:
    """Reference vs converted Keras model on one drawn case, every mapped ``"<layer>/<top>"`` record.

    The fast path compares the records directly (float32 tolerance, ``_props.REL_TOL``).  ``comparator``:
    ``"on_failure"`` runs :func:`harness.compare.compare` (chained + isolated, derived bounds, diagnosis) only to
    explain a failure; ``"always"`` also requires the comparator to call every example equivalent (so the
    comparator's own matching and bounds are property-tested).  ``convert_kwargs`` go to harness.convert.convert."""
    net = case.load()
    model = convert(net, **convert_kwargs)
    ref = forward(net, {k: v.astype(np.float64) for k, v in case.inputs.items()})
    got = keras_records(model, net, case.inputs)
    problems = compare_records(ref, got, scales=record_scales(net, ref))
    # a BatchNorm folded into its Scale (fold_batchnorm=True) has no Keras tensor of its own, by design
    folded = set((getattr(model, "harness_mapping", None) or {}).get("folded", {}).values())
    missing = [k for lay in net.layers if lay.name not in folded for k in lay.keys() if k not in got]
    if missing:
        problems.append(f"reference records with no Keras counterpart in the model's mapping: {missing}")
    direct_ok = not problems
    what = f"{case.layers[-1].type} converted by harness.convert differs from the reference"
    if problems or comparator == "always":
        report = use_comparator()(net, model, inputs=case.inputs, diagnose=bool(problems))
        if not report:
            problems.append("harness.compare says:\n    " + report.verdict().replace("\n", "\n    "))
            if direct_ok:
                what = (f"harness.compare calls the converted {case.layers[-1].type} not equivalent, although every "
                        f"record is within {REL_TOL:g} x its scale of the reference (a comparator bound or matching "
                        f"problem)")
        elif problems:
            problems.append("(harness.compare's derived bounds accept this example: the direct tolerance "
                            "_props.REL_TOL may be too tight here)")
    if problems:
        fail_with_case(case, problems, what)


@pytest.mark.parametrize("caffe_type", TYPES)
@settings(max_examples=examples())
@given(data=st.data())
def test_converted_layer_matches_reference(caffe_type, data):
    case = data.draw(layer_case(caffe_type), label="case")
    check_case(case)


# Pass-through layers are compared like any other: a single Dropout/Split layer's records have Keras counterparts
# (the converter's mapping), and so has the output blob of an Input/Silence net (the Keras input itself).
PASSIVE = {"Input", "Split", "Dropout", "Silence"}


@pytest.mark.parametrize("caffe_type", TYPES)
@settings(max_examples=examples(0.15))
@given(data=st.data())
def test_comparator_calls_converted_layers_equivalent(caffe_type, data):
    """The comparator (matching by the saved mapping, chained and isolated, derived float32 bounds) agrees."""
    check_case(data.draw(layer_case(caffe_type), label="case"), comparator="always")


@pytest.mark.parametrize("caffe_type", sorted(PASSIVE))
def test_pass_through_nets_compare_their_outputs(caffe_type):
    """A net of pass-through layers only is compared at every output it has (no vacuous pass: each output is a
    pair), and a Keras model that changes an output fails at that pair."""
    import keras
    from hypothesis import find

    case = find(layer_case(caffe_type), lambda c: True)
    net = case.load()
    model = convert(net)
    report = use_comparator()(net, model, inputs=case.inputs, diagnose=False)
    assert report and {lr.caffe_top for lr in report.layers} == set(net.outputs)
    # the same model with every output scaled by 1 + 1e-4, the mapping pointing each output record at the scaling
    keys = {lr.caffe_top: lr.key for lr in report.layers}
    mapping = {"keys": dict(model.harness_mapping["keys"])}
    outs = []
    for i, (blob, t) in enumerate(zip(net.outputs, model.outputs)):
        outs.append(keras.layers.Rescaling(1.0 + 1e-4, name=f"scaled{i}")(t))
        mapping["keys"][keys[blob]] = {**mapping["keys"][keys[blob]], "layer": f"scaled{i}", "index": 0}
    bad = keras.Model(model.inputs, outs)
    worse = use_comparator()(net, bad, inputs=case.inputs, diagnose=False, mapping=mapping)
    assert not worse and {lr.key for lr in worse.failed()} == set(keys.values())


# Layers whose output has no batch axis of its own (PriorBox: one set of boxes for the whole batch; DetectionOutput:
# all images' detections in one (1, 1, K, 7) blob).
BATCHLESS = {"PriorBox", "DetectionOutput"}


def _defined_for_one_image(case) -> bool:
    """Whether the case's net, with its weights, loads when every input has batch 1 (Caffe's own shape checks)."""
    from harness.errors import HarnessError

    try:
        case.load(input_shapes={k: (1, *v.shape[1:]) for k, v in case.inputs.items()})
    except HarnessError:
        return False
    return True


@pytest.mark.parametrize("caffe_type", [t for t in TYPES if t not in BATCHLESS])
@settings(max_examples=examples(0.15))
@given(data=st.data())
def test_converted_model_does_not_bake_in_the_batch_size(caffe_type, data):
    """The converted model's batch axis is free: the first image alone gives what it gives inside the batch (a
    converter that reshapes with the Caffe net's N, or mixes images, fails).  Only batches of 2 or more are
    checked: with one image, "the first image alone" is the whole batch and the property could not fail.  A net whose
    weights span the batch axis (Scale/Bias with axis 0: one learned factor per image) is not defined for one image
    (Caffe refuses it), so it is not drawn either."""
    case = data.draw(layer_case(caffe_type, max_batch=3), label="case")
    assume(all(v.shape[0] >= 2 for v in case.inputs.values()))
    assume(_defined_for_one_image(case))
    net = case.load()
    model = convert(net)
    whole = keras_records(model, net, case.inputs)
    first = keras_records(model, net, {k: v[:1] for k, v in case.inputs.items()})
    n = next(iter(case.inputs.values())).shape[0]
    problems = []
    for key, got in first.items():
        full = whole[key]
        if full.ndim == 0 or full.shape[0] != n:
            continue
        problems += compare_records({key: full[:1]}, {key: got})
    if problems:
        fail_with_case(case, problems, "the converted model's output for one image depends on the rest of the batch")
