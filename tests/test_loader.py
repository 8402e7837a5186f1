"""Loading nets: golden cases, dialects, legacy upgrades, phase rules, train_val nets, weights by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
from google.protobuf import text_format

from harness.caffe import (
    load_net,
    load_net_text,
    net_to_prototxt,
    read_weights,
    write_caffemodel,
)
from harness.errors import ProtoError, ShapeError, UnsupportedLayer, UnsupportedParam
from harness.proto import caffe_pb2 as pb
from support import GOLDEN

CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "net.prototxt").exists())


def _golden(case: str):
    d = GOLDEN / case
    return load_net(d / "net.prototxt", d / "weights.caffemodel"), json.loads((d / "case.json").read_text())


@pytest.mark.parametrize("case", CASES)
def test_golden_loads_with_caffe_keys_and_inputs(case):
    net, meta = _golden(case)
    caffe_keys = [k for k in meta["layers"] if "_split/" not in k]
    assert net.keys() == caffe_keys
    assert {k: list(v) for k, v in net.inputs.items()} == meta["inputs"]
    # Every weight blob the caffemodel holds is attached, with the values it holds.
    src = read_weights(GOLDEN / case / "weights.caffemodel")
    for lay in net.layers:
        for j, blob in enumerate(lay.blobs):
            np.testing.assert_array_equal(blob.ravel(), src[lay.name][j].ravel())
            assert not blob.flags.writeable


def test_outputs_are_unconsumed_tops_in_prototxt_order():
    net, _ = _golden("resnet_block")
    assert net.outputs == ("prob",)
    net, _ = _golden("conv_basic")
    consumed = {b for lay in net.layers for b in lay.bottoms}
    tops = [t for lay in net.layers for t in lay.tops]
    expect = [t for i, t in enumerate(tops) if t not in consumed and t not in tops[:i]]
    assert list(net.outputs) == expect


def test_in_place_chain_keys():
    net, _ = _golden("batchnorm_scale")
    keys = net.keys()
    assert keys[:4] == ["data/data", "bn/bn", "bn_inplace/bn", "scale/bn"]
    assert net.layer("bn_inplace").in_place


POOL = """
name: "p"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: 2 dim: 10 dim: 7 }} }} }}
layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool"
        pooling_param {{ pool: MAX kernel_size: 3 stride: 2 {extra} }} }}
"""


@pytest.mark.parametrize(
    "extra, ceil",
    [("", True), ("round_mode: FLOOR", False), ("round_mode: CEIL", True), ("ceil_mode: false", False),
     ("ceil_mode: true", True)],
)
def test_pooling_round_mode_dialects_mean_the_same(extra, ceil):
    net = load_net_text(POOL.format(extra=extra))
    pp = net.layer("pool").p("pooling_param")
    assert pp.round_mode == (pb.PoolingParameter.CEIL if ceil else pb.PoolingParameter.FLOOR)
    assert not pp.HasField("ceil_mode")


def test_contradictory_dialects_are_rejected():
    with pytest.raises(UnsupportedParam, match="ceil_mode=false contradicts round_mode=CEIL"):
        load_net_text(POOL.format(extra="ceil_mode: false round_mode: CEIL"))


V2_EQUIVALENT_OF_LEGACY_V1 = """
name: "legacy_v1"
layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 23 dim: 19 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 8 kernel_size: 5 stride: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1" lrn_param { local_size: 5 alpha: 0.5 beta: 0.75 } }
layer { name: "pool1" type: "Pooling" bottom: "norm1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 group: 2 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "fc3" type: "InnerProduct" bottom: "conv2" top: "fc3" inner_product_param { num_output: 10 } }
layer { name: "drop3" type: "Dropout" bottom: "fc3" top: "fc3" dropout_param { dropout_ratio: 0.5 } }
layer { name: "prob" type: "Softmax" bottom: "fc3" top: "prob" }
"""


def _layer_params(net):
    return [text_format.MessageToString(lay.param) for lay in net.layers]


def test_v1_upgrade_equals_hand_written_v2():
    legacy = load_net(GOLDEN / "legacy_v1" / "net.prototxt")
    v2 = load_net_text(V2_EQUIVALENT_OF_LEGACY_V1)
    assert _layer_params(legacy) == _layer_params(v2)
    assert legacy.inputs == v2.inputs and legacy.outputs == v2.outputs
    assert legacy.layers[0].name == "input" and legacy.layers[0].type == "Input"


@pytest.mark.parametrize("case", CASES)
def test_prototxt_round_trip(case, tmp_path):
    net, _ = _golden(case)
    text = net_to_prototxt(net)
    again = load_net_text(text, GOLDEN / case / "weights.caffemodel")
    assert _layer_params(again) == _layer_params(net)
    assert again.inputs == net.inputs and again.outputs == net.outputs
    for a, b in zip(net.layers, again.layers):
        assert len(a.blobs) == len(b.blobs)
        for x, y in zip(a.blobs, b.blobs):
            np.testing.assert_array_equal(x, y)


def test_caffemodel_round_trip(tmp_path):
    net, _ = _golden("inception_block")
    write_caffemodel(net, tmp_path / "w.caffemodel")
    again = load_net(GOLDEN / "inception_block" / "net.prototxt", tmp_path / "w.caffemodel")
    for a, b in zip(net.layers, again.layers):
        for x, y in zip(a.blobs, b.blobs):
            np.testing.assert_array_equal(x, y)


V0_NET = """
name: "v0"
input: "data"
input_dim: 2 input_dim: 3 input_dim: 8 input_dim: 9
layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" }
layers { layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 3 stride: 2 biasterm: false } bottom: "pad1" top: "conv1" }
layers { layer { name: "relu1" type: "relu" } bottom: "conv1" top: "conv1" }
layers { layer { name: "pool1" type: "pool" pool: AVE kernelsize: 2 stride: 2 } bottom: "conv1" top: "pool1" }
layers { layer { name: "norm1" type: "lrn" local_size: 3 alpha: 0.2 beta: 0.5 } bottom: "pool1" top: "norm1" }
layers { layer { name: "fc" type: "innerproduct" num_output: 5 } bottom: "norm1" top: "fc" }
"""


def test_v0_upgrade_folds_padding_and_maps_fields():
    net = load_net_text(V0_NET, check=False)
    assert [lay.type for lay in net.layers] == ["Input", "Convolution", "ReLU", "Pooling", "LRN", "InnerProduct"]
    conv = net.layer("conv1")
    cp = conv.p("convolution_param")
    assert conv.bottoms == ("data",)
    assert list(cp.pad) == [2] and list(cp.kernel_size) == [3] and list(cp.stride) == [2]
    assert cp.num_output == 4 and cp.bias_term is False
    pp = net.layer("pool1").p("pooling_param")
    assert pp.pool == pb.PoolingParameter.AVE and pp.kernel_size == 2 and pp.stride == 2
    lp = net.layer("norm1").p("lrn_param")
    assert (lp.local_size, round(lp.alpha, 6), lp.beta) == (3, 0.2, 0.5)
    assert net.inputs == {"data": (2, 3, 8, 9)}


TRAIN_VAL = """
name: "tv"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { mirror: true crop_size: 7 } data_param { source: "train_lmdb" batch_size: 4 backend: LMDB } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { crop_size: 7 } data_param { source: "val_lmdb" batch_size: 2 backend: LMDB } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" param { lr_mult: 1 } convolution_param { num_output: 4 kernel_size: 3
  weight_filler { type: "xavier" } } }
layer { name: "drop" type: "Dropout" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "acc" type: "Accuracy" bottom: "fc" bottom: "label" top: "acc" include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
layer { name: "only_train" type: "ReLU" bottom: "fc" top: "fc_relu" include { phase: TRAIN } }
layer { name: "not_test" type: "Sigmoid" bottom: "fc" top: "fc_sig" exclude { phase: TEST } }
layer { name: "staged" type: "TanH" bottom: "fc" top: "fc_tanh" include { stage: "deploy" } }
"""


def test_train_val_becomes_inference_net_with_given_shape():
    net = load_net_text(TRAIN_VAL, input_shapes={"data": (2, 3, 7, 6)})
    assert [lay.name for lay in net.layers] == ["data", "conv", "drop", "fc"]
    assert net.layer("data").type == "Input"
    assert net.inputs == {"data": (2, 3, 7, 6)}
    assert net.outputs == ("fc",)
    staged = load_net_text(TRAIN_VAL, input_shapes={"data": (2, 3, 7, 6)}, stages=["deploy"])
    assert [lay.name for lay in staged.layers][-1] == "staged"
    train = load_net_text(TRAIN_VAL, phase="TRAIN", input_shapes={"data": (2, 3, 7, 6)})
    assert [lay.name for lay in train.layers] == ["data", "conv", "drop", "fc", "only_train", "not_test"]


def test_train_val_without_shape_says_how_to_give_it():
    with pytest.raises(ShapeError, match=r"Data layer 'data' does not state the shape of 'data'.*--input-shape data="):
        load_net_text(TRAIN_VAL)


def test_input_shapes_override_and_reject_unknown():
    net, _ = _golden("conv_basic")
    text = (GOLDEN / "conv_basic" / "net.prototxt").read_text()
    small = load_net_text(text, input_shapes={"data": (1, 3, 13, 17)})
    assert small.inputs == {"data": (1, 3, 13, 17)}
    assert list(small.layer("data").p("input_param").shape[0].dim) == [1, 3, 13, 17]
    with pytest.raises(ShapeError, match=r"'label' is not an input of the net \(inputs: 'data'\)"):
        load_net_text(text, input_shapes={"label": (1,)})


def _legacy_blob(shape4, values):
    b = pb.BlobProto(num=shape4[0], channels=shape4[1], height=shape4[2], width=shape4[3])
    b.data.extend(values)
    return b


def test_v1_caffemodel_with_legacy_4d_blobs(tmp_path):
    # A V1 binary model as old Caffe wrote it: InnerProduct weights (1,1,N,K), bias (1,1,1,N).
    rng = np.random.default_rng(3)
    w = rng.standard_normal((10, 6 * 5 * 4)).astype(np.float32)
    b = rng.standard_normal(10).astype(np.float32)
    model = pb.NetParameter(name="old")
    lay = model.layers.add(name="fc3", type=pb.V1LayerParameter.INNER_PRODUCT)
    lay.blobs.add().CopyFrom(_legacy_blob((1, 1, 10, 120), w.ravel()))
    lay.blobs.add().CopyFrom(_legacy_blob((1, 1, 1, 10), b))
    model.layers.add(name="not_in_net", type=pb.V1LayerParameter.RELU)
    path = tmp_path / "old.caffemodel"
    path.write_bytes(model.SerializeToString())
    text = """
    input: "data" input_dim: 1 input_dim: 6 input_dim: 5 input_dim: 4
    layers { name: "fc3" type: INNER_PRODUCT bottom: "data" top: "fc3" inner_product_param { num_output: 10 } }
    """
    net = load_net_text(text, path)
    fc = net.layer("fc3")
    assert fc.blobs[0].shape == (10, 120) and fc.blobs[1].shape == (10,)
    np.testing.assert_array_equal(fc.blobs[0], w)
    np.testing.assert_array_equal(fc.blobs[1], b)


def test_npz_weights(tmp_path):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    np.savez(tmp_path / "w.npz", **{"conv/0": w, "conv/1": np.arange(4, dtype=np.float32)})
    text = """
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 5 dim: 7 } } }
    layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
            convolution_param { num_output: 4 kernel_h: 3 kernel_w: 2 } }
    """
    net = load_net_text(text, tmp_path / "w.npz")
    np.testing.assert_array_equal(net.layer("conv").blobs[0], w)
    np.testing.assert_array_equal(net.layer("conv").blobs[1], [0, 1, 2, 3])
    np.savez(tmp_path / "bad.npz", **{"conv_0": w})
    with pytest.raises(ProtoError, match=r"key 'conv_0' is not of the form '<layer>/<blob index>'"):
        load_net_text(text, tmp_path / "bad.npz")


@pytest.mark.parametrize(
    "text, err, match",
    [
        ("layer { name: 'a' type: 'Input' top: 'a' input_param { shape { dim: 1 dim: 2 } } }\nlayer { name: 'b' typo: 1 }",
         ProtoError, r"<string>:2:\d+: .*typo"),
        ("layer { name: 'a' type: 'Input' top: 'a' input_param { shape { dim: 1 dim: 2 } } }\n"
         "layer { name: 'p' type: 'Python' bottom: 'a' top: 'p' python_param { module: 'evil' layer: 'Run' } }",
         UnsupportedLayer, r"layer 'p' is a Python layer \(evil.Run\)"),
        ("layer { name: 'a' type: 'Input' top: 'a' input_param { shape { dim: 1 dim: 2 } } }\n"
         "layer { name: 'x' type: 'Frobnicate' bottom: 'a' top: 'x' }",
         UnsupportedLayer, r"layer 'x' has unsupported type 'Frobnicate'; supported: .*Convolution"),
        ("layer { name: 'a' type: 'Input' top: 'a' input_param { shape { dim: 1 dim: 2 } } }\n"
         "layer { name: 'r' type: 'ReLU' bottom: 'nope' top: 'r' }",
         ProtoError, r"layer 'r': unknown bottom blob 'nope'"),
        ("layer { name: 'a' type: 'Input' top: 'a' input_param { shape { dim: 1 dim: 2 } } }\n"
         "layer { name: 'r' type: 'ReLU' bottom: 'a' top: 'b' }\nlayer { name: 's' type: 'ReLU' bottom: 'a' top: 'b' }",
         ProtoError, r"layer 's': top 'b' is already produced by layer 'r'"),
        ("name: 'empty'", ProtoError, r"the net has no layers"),
        ("layer { name: 'a' type: 'Input' top: 'a' input_param { shape { dim: 1 dim: 0 } } }",
         ShapeError, r"dimension 0 in shape \[1, 0\] must be positive"),
        ("layer { name: 'a' type: 'Input' top: 'a' input_param { shape { dim: 1 dim: -3 } } }",
         ShapeError, r"dimension -3"),
    ],
    ids=["syntax", "python", "unknown-type", "missing-bottom", "duplicate-top", "empty", "zero-dim", "negative-dim"],
)
def test_bad_nets(text, err, match):
    with pytest.raises(err, match=match):
        load_net_text(text, check=False)


def test_bad_weights_files(tmp_path):
    proto = GOLDEN / "conv_basic" / "net.prototxt"
    good = (GOLDEN / "conv_basic" / "weights.caffemodel").read_bytes()
    (tmp_path / "trunc.caffemodel").write_bytes(good[: len(good) // 2])
    with pytest.raises(ProtoError, match=r"trunc.caffemodel: not a valid .caffemodel"):
        load_net(proto, tmp_path / "trunc.caffemodel")
    with pytest.raises(ProtoError, match=r"looks like a text prototxt"):
        load_net(proto, proto)
    (tmp_path / "garbage.caffemodel").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ProtoError, match=r"garbage.caffemodel: not a valid .caffemodel"):
        load_net(proto, tmp_path / "garbage.caffemodel")
    with pytest.raises(ProtoError, match=r"no such weights file"):
        load_net(proto, tmp_path / "missing.caffemodel")


def test_empty_npz_for_a_net_without_learned_blobs(tmp_path):
    """Scale with a second bottom takes its factors from that blob: an empty weights file is fine."""
    np.savez(tmp_path / "none.npz")
    text = """
    layer { name: "data" type: "Input" top: "data" top: "gamma"
            input_param { shape { dim: 2 dim: 3 dim: 5 dim: 7 } shape { dim: 3 } } }
    layer { name: "scale" type: "Scale" bottom: "data" bottom: "gamma" top: "scale" }
    """
    net = load_net_text(text, tmp_path / "none.npz")
    assert net.layer("scale").blobs == ()
    conv = text + 'layer { name: "c" type: "Convolution" bottom: "scale" top: "c" convolution_param { num_output: 2 kernel_size: 1 } }'
    with pytest.raises(ProtoError, match="none of its layer names match"):
        load_net_text(conv, tmp_path / "none.npz")
