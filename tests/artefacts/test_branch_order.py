"""Position pairing across parallel branches that the artefact computes in another order than Caffe's (issue 20:
onnx2tf runs GoogLeNet's inception branches in its own order, and the pool branch was paired with a later layer's
ReLU).  A seeded two-branch inception-like net; the artefact's tensors carry no Caffe names (a SavedModel's
``tf.nn.relu_12``), so only shapes and order pair them."""

from __future__ import annotations

import numpy as np

from harness.compare.artefacts.pairing import ArtefactRun, compare_artefact
from harness.compare.engine.passes import reference_forward

from support.nets import feed_for, make_net

# N=2, C=3, H=5, W=7; the branches: 1x1 conv (5 channels) and max pool (keeps 4) -> 1x1 conv (6); concat 11;
# then a 1x1 conv back to 4 channels, the pool's shape
LAYERS = """
layer { name: "conv0" type: "Convolution" bottom: "data" top: "c0"
        convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "relu0" type: "ReLU" bottom: "c0" top: "c0" }
layer { name: "conv_a" type: "Convolution" bottom: "c0" top: "a"
        convolution_param { num_output: 5 kernel_size: 1 } }
layer { name: "relu_a" type: "ReLU" bottom: "a" top: "a" }
layer { name: "pool_p" type: "Pooling" bottom: "c0" top: "p"
        pooling_param { pool: MAX kernel_size: 3 stride: 1 pad: 1 } }
layer { name: "proj_p" type: "Convolution" bottom: "p" top: "pp"
        convolution_param { num_output: 6 kernel_size: 1 } }
layer { name: "relu_p" type: "ReLU" bottom: "pp" top: "pp" }
layer { name: "cat" type: "Concat" bottom: "a" bottom: "pp" top: "cat" }
layer { name: "conv_c" type: "Convolution" bottom: "cat" top: "c"
        convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "relu_c" type: "ReLU" bottom: "c" top: "c" }
"""
CAFFE_ORDER = ["conv0/c0", "relu0/c0", "conv_a/a", "relu_a/a", "pool_p/p", "proj_p/pp", "relu_p/pp", "cat/cat",
               "conv_c/c", "relu_c/c"]
# the artefact computes the pool branch first
ARTEFACT_ORDER = ["conv0/c0", "relu0/c0", "pool_p/p", "proj_p/pp", "relu_p/pp", "conv_a/a", "relu_a/a", "cat/cat",
                  "conv_c/c", "relu_c/c"]


def _setup(values_of=None):
    net = make_net(LAYERS, {"data": (2, 3, 5, 7)}, seed=20)
    data = feed_for(net, seed=20)
    ref = reference_forward(net, data)
    names = {k: f"tf.nn.op_{i}" for i, k in enumerate(ARTEFACT_ORDER)}
    src = values_of(net, data) if values_of else ref
    values = {"serving_default_data:0": np.ascontiguousarray(data["data"].transpose(0, 2, 3, 1))}
    values.update({names[k]: np.ascontiguousarray(np.asarray(src[k], np.float32).transpose(0, 2, 3, 1))
                   for k in ARTEFACT_ORDER})
    run = ArtefactRun("saved_model", "sm", values, list(values), {"data": "serving_default_data:0"}, {},
                      name="sm", op_names=False)
    return net, data, ref, run, names


def test_branches_in_another_order_pair_each_record_with_its_own_tensor():
    net, data, ref, run, names = _setup()
    rep = compare_artefact(net, data, run, ref=ref)
    by = {lr.key: lr for lr in rep.layers}
    assert {k: by[k].keras_layer for k in CAFFE_ORDER if k in by} == names
    assert rep.coverage["paired"] == rep.coverage["records"] == len(CAFFE_ORDER)
    assert rep and rep.first_divergence is None, rep.table()


def test_a_wrong_pool_in_the_swapped_branch_is_named_at_its_layer():
    def avg_pool_values(net, data):  # the artefact averages where Caffe takes the maximum
        wrong = make_net(LAYERS.replace("pool: MAX", "pool: AVE"), {"data": (2, 3, 5, 7)},
                         {lay.name: list(lay.blobs) for lay in net.layers if lay.blobs})
        return reference_forward(wrong, data)

    net, data, ref, run, names = _setup(avg_pool_values)
    rep = compare_artefact(net, data, run, ref=ref)
    by = {lr.key: lr for lr in rep.layers}
    assert by["pool_p/p"].keras_layer == names["pool_p/p"]
    assert not rep and rep.first_divergence.caffe_layer == "pool_p", rep.table()
    assert all(by[k].chained.passed for k in ["conv0/c0", "relu0/c0", "conv_a/a", "relu_a/a"]), rep.table()


# two branches of one shape (GoogLeNet's inception_3b: 1x1 and 3x3_reduce, 128 channels each); the artefact
# computes both convolutions, then the second branch's ReLU before the first's
TWIN = """
layer { name: "conv0" type: "Convolution" bottom: "data" top: "c0"
        convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "relu0" type: "ReLU" bottom: "c0" top: "c0" }
layer { name: "conv_a" type: "Convolution" bottom: "c0" top: "a"
        convolution_param { num_output: 6 kernel_size: 1 } }
layer { name: "relu_a" type: "ReLU" bottom: "a" top: "a" }
layer { name: "conv_b" type: "Convolution" bottom: "c0" top: "b"
        convolution_param { num_output: 6 kernel_size: 1 } }
layer { name: "relu_b" type: "ReLU" bottom: "b" top: "b" }
layer { name: "cat" type: "Concat" bottom: "a" bottom: "b" top: "cat" }
"""
TWIN_ORDER = ["conv0/c0", "relu0/c0", "conv_a/a", "conv_b/b", "relu_b/b", "relu_a/a", "cat/cat"]


def test_same_shape_branches_whose_activations_run_in_another_order():
    net = make_net(TWIN, {"data": (2, 3, 5, 7)}, seed=21)
    data = feed_for(net, seed=21)
    ref = reference_forward(net, data)
    names = {k: f"model/op_{i}/{k.split('/')[0].split('_')[0]}" for i, k in enumerate(TWIN_ORDER)}
    values = {"serving_default_data:0": np.ascontiguousarray(data["data"].transpose(0, 2, 3, 1))}
    values.update({names[k]: np.ascontiguousarray(np.asarray(ref[k], np.float32).transpose(0, 2, 3, 1))
                   for k in TWIN_ORDER})
    run = ArtefactRun("tflite", "m.tflite", values, list(values), {"data": "serving_default_data:0"}, {},
                      name="m.tflite", fused={names[k]: () for k in TWIN_ORDER})
    rep = compare_artefact(net, data, run, ref=ref)
    by = {lr.key: lr for lr in rep.layers}
    assert {k: by[k].keras_layer for k in TWIN_ORDER if k in by} == names, rep.table()
    assert rep and rep.coverage["paired"] == len(TWIN_ORDER), rep.table()
