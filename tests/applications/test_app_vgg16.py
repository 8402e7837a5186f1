"""keras.applications.VGG16 (include_top, weights=None, 64x96) against the zoo VGG16 (legacy V1 prototxt), Caffe's
seeded weights transferred correctly (fc6's rows reordered from Caffe's C,H,W flatten of pool5 -- 512x2x3 here -- to
Keras' H,W,C Flatten).

Real differences of the stock model: none.  Every conv is 3x3 'same' at stride 1 (TF pads (1, 1) = Caffe pad 1),
every pool 2x2/2 'valid' on even sizes (64x96 -> 2x3; Caffe's ceil mode adds nothing there), ReLU fused into the
convs and fc1/fc2 (= Caffe's in-place ReLUs), no Dropout at inference (Caffe's drop6/drop7 are identity at TEST),
Dense(softmax) = fc8 + prob.  So the stock model must pass, and a 1e-4 weight change must not.
"""

from __future__ import annotations

import numpy as np
import pytest

from _apps import blob_shapes, caffe_net, inputs, isolated_failures, pairing, perturb, stock, top_cause, transfer


@pytest.fixture(scope="module")
def net():
    return caffe_net("vgg16")


def _compare(net, model):
    from harness.compare import compare

    return compare(net, model, inputs(net))


def test_stock_vgg16_with_transferred_weights_is_equivalent(net):
    assert blob_shapes(net)["pool5"] == (1, 512, 2, 3)
    rep = _compare(net, transfer(net, stock("vgg16")))
    assert rep, rep.verdict()
    assert rep.first_divergence is None and not rep.output_problems and not rep.unmatched_caffe
    d = rep.to_dict()
    assert d["equivalent"] is True and d["first_divergence"] is None
    assert {lr["caffe_layer"] for lr in d["layers"]} >= {"pool5", "relu6", "relu7", "prob"}


def test_a_1e_4_weight_perturbation_fails_at_that_layer(net):
    model = transfer(net, stock("vgg16"))
    keras_name = perturb(net, model, "conv3_2", rel=1e-4)
    rep = _compare(net, model)
    assert not rep
    fd = rep.first_divergence
    assert (fd.caffe_layer, fd.keras_layer) == ("conv3_2", keras_name)
    assert isolated_failures(rep) == ["relu3_2"]  # the Conv2D(activation='relu') output is Caffe's relu3_2 record


def test_fc6_transferred_without_the_chw_to_hwc_reorder_is_flatten_order(net):
    """The transfer rule matters at 2x3: fc6 given ``w.T`` (rows in Caffe's C,H,W order) is caught as flatten_order
    at fc6, and the fix is the reorder this module's transfer does."""
    model = transfer(net, stock("vgg16"))
    (fc6, k), = [(lay, k) for lay, k in pairing(net, model) if lay.name == "fc6"]
    k.set_weights([np.asarray(fc6.blobs[0], np.float32).T, np.asarray(fc6.blobs[1], np.float32)])
    rep = _compare(net, model)
    assert not rep and rep.first_divergence.caffe_layer == "fc6"
    assert top_cause(rep).cause == "flatten_order", top_cause(rep)


def test_the_transfer_is_right_without_the_harness(net):
    """Independent of the comparator: the Keras model on the NHWC transpose of the input gives Caffe's prob."""
    from _apps import reference

    data = inputs(net)
    model = transfer(net, stock("vgg16"))
    keras_prob = np.asarray(model(data["data"].transpose(0, 2, 3, 1)))
    caffe_prob = np.asarray(reference(net, data)["prob/prob"]).reshape(keras_prob.shape)
    # float32 end to end through 16 layers and a peaked softmax (max prob 0.8): 1.4e-5 measured; a layout or
    # flatten-order mistake gives O(0.1).
    assert np.abs(keras_prob - caffe_prob).max() < 1e-4
    assert caffe_prob.max() > 0.1  # not vacuous: prob is far from uniform (1e-3)
