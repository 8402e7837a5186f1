"""The sabotage kit's hand-written ports (tests/compare/_sabotage_kit.py: a plain ``Sequential`` with Keras's default
layer names, one classic porting bug each) exported as SavedModels: ``check --saved-model``'s route must name the
same first divergent Caffe layer and top cause as the Keras-model check does, and pass the correct port.  The layer
scopes carry no Caffe names, so this exercises the structural pairing by op types
(:func:`harness.compare.artefacts.saved_model.name_by_kind`), the BatchNorm + Scale span and the diagnosis from shapes
(:func:`harness.compare.artefacts.saved_model.shape_diagnosis`)."""

from __future__ import annotations

import re

import pytest

import support.sabotage as kit

from harness.compare.artefacts.saved_model import compare_saved_model  # noqa: E402


@pytest.fixture(scope="module")
def net():
    return kit.net()


@pytest.fixture(scope="module")
def data():
    return kit.inputs()


def _check(bug, net, data, tmp_path):
    kit.build_port(bug).model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    return compare_saved_model(net, tmp_path / "sm", data)


def test_correct_port_as_saved_model_passes(net, data, tmp_path):
    rep = _check(None, net, data, tmp_path)
    assert rep, [(lr.key, str(lr.chained)) for lr in rep.layers if not lr.passed]
    by = {lr.caffe_layer: lr for lr in rep.layers}
    # every compute layer paired, bn1 inside the span of the one BatchNormalization
    assert set(by) == {"conv1", "relu1", "pool1", "scale1", "relu2", "pool2", "pool3", "norm1", "fc1", "fc2", "prob"}
    assert by["scale1"].segment == ("bn1", "scale1")
    # the table names the SavedModel's scope and the Caffe layer it was paired with by its ops
    assert re.fullmatch(r"max_pooling2d(_\d+)?_\d+/pool2", by["pool2"].keras_layer), by["pool2"].keras_layer
    assert re.fullmatch(r"average_pooling2d(_\d+)?_\d+/pool3", by["pool3"].keras_layer), by["pool3"].keras_layer
    assert re.fullmatch(r"batch_normalization(_\d+)?_\d+/bn1/scale1", by["scale1"].keras_layer), by["scale1"]


@pytest.mark.parametrize("bug", sorted(kit.BUGS))
def test_sabotaged_port_as_saved_model_fails_at_its_layer(bug, net, data, tmp_path):
    first, cause = kit.BUGS[bug]
    rep = _check(bug, net, data, tmp_path)
    assert not rep
    fd = rep.first_divergence
    assert fd is not None and fd.caffe_layer == first, (fd, rep.table())
    # pool_rounding: floor rounding changes pool1's shape, so no tensor pairs with it; its MaxPool scope (the count
    # of poolings agrees) gives the shape the causes come from
    assert fd.diagnosis and fd.diagnosis[0].cause == cause, [(d.cause, d.confidence) for d in fd.diagnosis]
