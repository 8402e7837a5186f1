"""``convert --format tflite`` and ``check --tflite`` (harness.compare.artefacts.tflite): reduced zoo-style nets converted to
float32 ``.tflite`` pass on both LiteRT paths (XNNPACK and the builtin kernels); a ``.tflite`` exported from a Keras
port with one wrong layer fails at that layer with its cause; quantised models are judged by SQNR and top-1
agreement; bad files are refused in one line (exit 2).

The nets are small stand-ins of the zoo's structures (each converts in 1-2 s): LeNet (the zoo file at its gate
size), a ResNet bottleneck block (BatchNorm + Scale + ReLU, a projection shortcut, Eltwise SUM), an AlexNet-like
stem (grouped convolution, LRN, ceil-mode MAX pooling with overhang, InnerProduct, Dropout, Softmax) and a
SqueezeNet fire module (squeeze, two expand branches, Concat, global AVE pooling).  Every blob has distinct sizes on
every axis.
"""

from __future__ import annotations


import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from harness.caffe import load_net, load_net_text  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.compare.engine.inputs import prepare_inputs  # noqa: E402
from harness.compare.artefacts.tflite import check_tflite, quantised, read_model  # noqa: E402
from harness.convert import convert  # noqa: E402
from harness.convert.export import tflite_bytes  # noqa: E402
from harness.weights import random_weights  # noqa: E402
from support import ZOO, net_text  # noqa: E402


def _input(n, c, h, w):
    return net_text("", {"data": (n, c, h, w)})


def _conv(name, bottom, n, k, extra=""):
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
            f'convolution_param {{ num_output: {n} kernel_size: {k} {extra} }} }}\n')


def _bn_scale_relu(name, top):
    return (f'layer {{ name: "{name}_bn" type: "BatchNorm" bottom: "{top}" top: "{top}" }}\n'
            f'layer {{ name: "{name}_scale" type: "Scale" bottom: "{top}" top: "{top}" '
            f'scale_param {{ bias_term: true }} }}\n'
            f'layer {{ name: "{name}_relu" type: "ReLU" bottom: "{top}" top: "{top}" }}\n')


RESNET_BLOCK = (_input(2, 3, 13, 11) + _conv("conv1", "data", 8, 3, "pad: 1 stride: 2") + _bn_scale_relu("c1", "conv1")
                + _conv("res_a", "conv1", 6, 1) + _bn_scale_relu("ra", "res_a")
                + _conv("res_b", "res_a", 6, 3, "pad: 1") + _bn_scale_relu("rb", "res_b")
                + _conv("res_c", "res_b", 10, 1)
                + _conv("proj", "conv1", 10, 1)
                + 'layer { name: "sum" type: "Eltwise" bottom: "res_c" bottom: "proj" top: "sum" }\n'
                + 'layer { name: "sum_relu" type: "ReLU" bottom: "sum" top: "sum" }\n')

ALEXNET_LIKE = (_input(2, 3, 23, 19) + _conv("conv1", "data", 8, 5, "stride: 2")
                + 'layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }\n'
                + 'layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1" '
                  'lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }\n'
                + 'layer { name: "pool1" type: "Pooling" bottom: "norm1" top: "pool1" '
                  'pooling_param { pool: MAX kernel_size: 3 stride: 2 } }\n'
                + _conv("conv2", "pool1", 12, 3, "pad: 1 group: 2")
                + 'layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }\n'
                + 'layer { name: "fc" type: "InnerProduct" bottom: "conv2" top: "fc" '
                  'inner_product_param { num_output: 14 } }\n'
                + 'layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" }\n'
                + 'layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }\n')

SQUEEZENET_LIKE = (_input(2, 3, 17, 15) + _conv("conv1", "data", 8, 3, "stride: 2")
                   + 'layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }\n'
                   + _conv("squeeze", "conv1", 4, 1)
                   + 'layer { name: "relu_s" type: "ReLU" bottom: "squeeze" top: "squeeze" }\n'
                   + _conv("e1x1", "squeeze", 6, 1) + _conv("e3x3", "squeeze", 5, 3, "pad: 1")
                   + 'layer { name: "concat" type: "Concat" bottom: "e1x1" bottom: "e3x3" top: "concat" }\n'
                   + _conv("conv10", "concat", 9, 1)
                   + 'layer { name: "pool10" type: "Pooling" bottom: "conv10" top: "pool10" '
                     'pooling_param { pool: AVE global_pooling: true } }\n'
                   + 'layer { name: "prob" type: "Softmax" bottom: "pool10" top: "prob" }\n')


TWO_INPUTS = (_input(2, 3, 5, 7) + _conv("conv", "data", 4, 3)
              + 'layer { name: "aux" type: "Input" top: "aux" input_param { shape { dim: 2 dim: 4 dim: 3 dim: 5 } } }\n'
              + 'layer { name: "sum" type: "Eltwise" bottom: "conv" bottom: "aux" top: "sum" '
                'eltwise_param { coeff: 1.5 coeff: -0.5 } }\n')


def _lenet():
    return random_weights(load_net(ZOO / "lenet.prototxt", input_shapes={"data": (2, 1, 28, 31)}), seed=0)


NETS = {
    "lenet": _lenet,
    "resnet_block": lambda: random_weights(load_net_text(RESNET_BLOCK), seed=1),
    "alexnet_like": lambda: random_weights(load_net_text(ALEXNET_LIKE), seed=2),
    "squeezenet_like": lambda: random_weights(load_net_text(SQUEEZENET_LIKE), seed=3),
    "two_inputs": lambda: random_weights(load_net_text(TWO_INPUTS), seed=5),  # inputs paired by signature name
    # the convolution TFLite fuses into the add is the Eltwise's second bottom
    "two_inputs_swapped": lambda: random_weights(load_net_text(
        TWO_INPUTS.replace('bottom: "conv" bottom: "aux"', 'bottom: "aux" bottom: "conv"')), seed=5),
}


def _write(tmp_path, name, model, **kw):
    p = tmp_path / f"{name}.tflite"
    p.write_bytes(tflite_bytes(model, **kw))
    return p


@pytest.mark.parametrize("name", list(NETS))
def test_converted_net_passes_on_both_litert_paths(name, tmp_path):
    net = NETS[name]()
    path = _write(tmp_path, name, convert(net))
    data = prepare_inputs(net, None, 4)
    rep = check_tflite(net, data, path)
    assert rep, rep.table()
    assert set(rep.delegates) == {"xnnpack", "none"}
    assert all(v["equivalent"] and v["failed"] == 0 for v in rep.delegates.values()), rep.delegates
    assert rep.artefact["kind"] == "tflite" and rep.artefact["delegate"] == "xnnpack"
    # every weighted Caffe layer was compared (alone or as the first layer of a fused span)
    compared = {n for lr in rep.layers for n in (lr.segment or (lr.caffe_layer,))}
    weighted = {lay.name for lay in net.layers if lay.blobs}
    assert weighted <= compared, sorted(weighted - compared)
    assert all(lr.chained.passed and lr.chained.max_abs < 1e-3 * max(lr.chained.scale, 1e-6) for lr in rep.layers)


def test_port_with_a_reshaped_kernel_fails_at_that_layer(tmp_path):
    from support.nets import small_net
    from support.ports import keras_port

    net = small_net()
    data = prepare_inputs(net, None, 0)
    good = check_tflite(net, data, _write(tmp_path, "good", keras_port(net)))
    assert good, good.table()
    bad = check_tflite(net, data, _write(tmp_path, "bad", keras_port(net, bug="reshape")))
    assert not bad
    fd = bad.first_divergence
    assert fd.caffe_layer == "conv1" and fd.key == "relu1/conv1"
    assert fd.diagnosis[0].cause == "kernel_reshaped", [c.cause for c in fd.diagnosis]
    assert {d: v["first_divergence"] for d, v in bad.delegates.items()} == {"xnnpack": "conv1", "none": "conv1"}
    # only the wrong layer adds an error of its own: the rest carry it
    assert [lr.key for lr in bad.layers if not lr.passed] == ["relu1/conv1"]


@pytest.mark.parametrize("kw, expect", [
    ({"names": True, "fused": True}, None),  # Conv2D(activation="relu") named conv1, BatchNormalization named bn1
    ({"bug": "bn_epsilon"}, ("bn1", "bn_epsilon")),
    ({"bug": "flatten_order", "names": True}, ("fc", "flatten_order")),
], ids=["named_fused", "bn_epsilon", "flatten_order"])
def test_port_variants(kw, expect, tmp_path):
    """A named port's Conv2D(activation="relu") and BatchNormalization are each paired with the last Caffe record
    their tensor holds (relu1, scale1); two more wrong ports fail at their layer with their cause."""
    from support.nets import small_net
    from support.ports import keras_port

    net = small_net()
    rep = check_tflite(net, prepare_inputs(net, None, 0), _write(tmp_path, "p", keras_port(net, **kw)))
    keys = [lr.key for lr in rep.layers]
    assert keys == ["relu1/conv1", "pool1/pool1", "scale1/pool1", "fc/fc", "prob/prob"], keys
    if expect is None:
        assert rep, rep.table()
        return
    assert not rep and rep.first_divergence.caffe_layer == expect[0], rep.verdict()
    assert rep.first_divergence.diagnosis[0].cause == expect[1], rep.verdict()


def _damaged(net, layer, factor):
    import dataclasses

    lays = tuple(dataclasses.replace(l, blobs=(l.blobs[0] * factor, *l.blobs[1:])) if l.name == layer else l
                 for l in net.layers)
    return dataclasses.replace(net, layers=lays)


def test_int8_gate_passes_at_25_db_and_fails_at_the_damaged_layer(tmp_path):
    """Full-integer int8 (32 seeded calibration inputs): every layer of the AlexNet-like net is above 25 dB SQNR
    and top-1 agrees; conv2's weights multiplied by a seeded random factor in [-1, 1) before quantisation make conv2
    the first layer under the gate."""
    net = NETS["alexnet_like"]()
    data = prepare_inputs(net, None, 5)
    path = _write(tmp_path, "q", convert(net), quantize="int8", representative=32, seed=9)
    assert quantised(read_model(path)[1])
    from harness.compare.artefacts.pairing import QuantGate

    rep = check_tflite(net, data, path, gate=QuantGate(min_sqnr=25.0, min_top1_agreement=1.0))
    assert rep, rep.table()
    assert all(25.0 <= lr.sqnr_db < 60.0 for lr in rep.layers), [(lr.key, lr.sqnr_db) for lr in rep.layers]
    assert rep.top1_agreement == 1.0 and rep.to_dict()["top1_agreement"] == 1.0
    w = net.layer("conv2").blobs[0]
    factor = np.random.default_rng(0).uniform(-1, 1, w.shape).astype(np.float32)
    bad_path = _write(tmp_path, "qbad", convert(_damaged(net, "conv2", factor)), quantize="int8", representative=32,
                      seed=9)
    bad = check_tflite(net, data, bad_path, gate=QuantGate(min_sqnr=25.0))
    assert not bad
    assert bad.first_divergence.caffe_layer == "conv2", bad.table()
    assert {lr.key: lr.passed for lr in bad.layers}["pool1/pool1"]
    assert bad.layers[[lr.key for lr in bad.layers].index(bad.first_divergence.key)].sqnr_db < 10.0


@pytest.mark.parametrize("quantize", ["float16", "dynamic"])
def test_float16_and_dynamic_are_judged_by_sqnr(quantize, tmp_path):
    """(TFLite's dynamic-range quantisation leaves tensors of <= 1024 elements in float32: a model it leaves all
    float is judged by the float32 bounds, as it should.)"""
    net = NETS["alexnet_like"]()  # fc's 14 x 240 kernel: big enough for dynamic-range quantisation (> 1024)
    data = prepare_inputs(net, None, 6)
    path = _write(tmp_path, quantize, convert(net), quantize=quantize)
    assert quantised(read_model(path)[1])
    rep = check_tflite(net, data, path)
    assert rep, rep.table()
    assert rep.quant_gate == {"min_sqnr": 20.0, "min_top1_agreement": 0.0}
    floor = 50.0 if quantize == "float16" else 25.0
    assert all(lr.sqnr_db > floor for lr in rep.layers), [(lr.key, lr.sqnr_db) for lr in rep.layers]
    assert "SQNR dB" in rep.table()


def test_cli_convert_and_check_tflite(tmp_path, capsys):
    proto = tmp_path / "net.prototxt"
    proto.write_text(ALEXNET_LIKE)
    out = tmp_path / "m.tflite"
    assert main(["convert", str(proto), "--format", "tflite", "-o", str(out)]) == 0
    assert out.read_bytes()[4:8] == b"TFL3"
    js = tmp_path / "r.json"
    assert main(["check", str(proto), "--tflite", str(out), "--json", str(js), "--no-table"]) == 0
    import json

    d = json.loads(js.read_text())
    assert d["artefact"]["kind"] == "tflite" and d["artefact"]["path"] == str(out)
    assert d["mode"] == "chained" and d["equivalent"] is True
    assert set(d["delegates"]) == {"xnnpack", "none"}
    assert all(lay["sqnr_db"] is None for lay in d["layers"]) and d["top1_agreement"] is None
    err = capsys.readouterr().err
    assert "XNNPACK delegate" not in err and "Traceback" not in err
    q = tmp_path / "q.tflite"
    assert main(["convert", str(proto), "--format", "tflite", "--quantize", "int8", "--representative", "8",
                 "-o", str(q)]) == 0
    assert main(["check", str(proto), "--tflite", str(q), "--min-sqnr", "200", "--no-table", "--json", str(js)]) == 1
    d = json.loads(js.read_text())
    assert d["quant_gate"]["min_sqnr"] == 200 and all(isinstance(lay["sqnr_db"], float) for lay in d["layers"])
    assert "SQNR" in capsys.readouterr().out


def test_fixed_batch_model_runs_sample_by_sample(tmp_path):
    """A .tflite whose batch axis is fixed at 1 (the exporter writes a resizable one: its shape signatures are
    removed here, as a converter with a static batch writes it) is run once per sample of the comparison's batch of
    2, and its tensors concatenated."""
    import flatbuffers
    import keras

    from harness.caffe import load_net_text as _text

    net = random_weights(_text(_input(2, 3, 5, 7) + _conv("conv", "data", 4, 3)), seed=4)
    w, b = net.layer("conv").blobs
    inp = keras.Input((5, 7, 3), batch_size=1)
    conv = keras.layers.Conv2D(4, 3)
    model = keras.Model(inp, conv(inp))
    conv.set_weights([np.asarray(w).transpose(2, 3, 1, 0), np.asarray(b)])
    path = _write(tmp_path, "fixed", model)
    fb = read_model(path)[1]
    for t in fb.subgraphs[0].tensors:
        t.shapeSignature = None
    builder = flatbuffers.Builder(1024)
    builder.Finish(fb.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    assert read_model(path)[1].subgraphs[0].tensors[0].shapeSignature is None
    data = prepare_inputs(net, None, 8)
    rep = check_tflite(net, data, path)
    assert rep, rep.table()
    (lr,) = rep.layers
    assert lr.key == "conv/conv" and lr.shape == (2, 4, 3, 5) and lr.matched_by == "output"


def test_int8_inputs_and_outputs_are_quantised_and_dequantised(tmp_path):
    """A full-integer model with int8 inputs and outputs (``inference_input_type=tf.int8``): the Caffe input is
    quantised with the input tensor's own scale and zero point, the int8 output dequantised; judged by SQNR."""
    import shutil

    import tensorflow as tf

    from harness.convert.export import representative_inputs

    net = NETS["squeezenet_like"]()
    model = convert(net)
    saved = tmp_path / "sm"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.representative_dataset = lambda: representative_inputs(model, 16, 3)
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    path = tmp_path / "io8.tflite"
    path.write_bytes(conv.convert())
    shutil.rmtree(saved)
    from ai_edge_litert.interpreter import Interpreter

    assert Interpreter(model_path=str(path)).get_input_details()[0]["dtype"] == np.int8
    from harness.compare.artefacts.pairing import QuantGate

    rep = check_tflite(net, prepare_inputs(net, None, 6), path, gate=QuantGate(min_sqnr=15.0))
    assert rep, rep.table()
    by = {lr.key: lr for lr in rep.layers}
    assert by["prob/prob"].matched_by == "output" and 15.0 < by["prob/prob"].sqnr_db < 60.0
