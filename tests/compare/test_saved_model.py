"""``convert --format saved_model`` and ``check --saved-model DIR [--signature NAME]`` (issue 12, item 2 and the
SavedModel rows of item 6): the converted small net and hand-written ports of it exported as SavedModels pass or
fail at the right layer with the right cause; bad SavedModels are one line, exit 2, naming the folder and the
mismatch, nothing written."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main

from support.nets import SMALL_NET, small_net
from support.ports import keras_port, write_port_files


def _nested_port(net):
    """The named port with its layers up to bn1 in a nested ``Sequential`` backbone used as one layer."""
    import keras

    port = keras_port(net, names=True)
    layers = port.layers[1:]
    cut = next(i for i, lay in enumerate(layers) if lay.name == "bn1") + 1
    backbone = keras.Sequential([keras.Input((13, 11, 3))] + layers[:cut], name="backbone")
    inp = keras.Input((13, 11, 3), name="data")
    x = backbone(inp)
    for lay in layers[cut:]:
        x = lay(x)
    return keras.Model(inp, x)


@pytest.fixture(scope="module")
def sm(tmp_path_factory):
    """SMALL_NET's files and SavedModels: the converted net (through the CLI), a port named after the Caffe layers,
    a port with Keras's default names (its signature input is ``keras_tensor``), ports with one bug each."""
    d = tmp_path_factory.mktemp("saved_models")
    net = write_port_files(d, {})
    assert main(["convert", str(d / "net.prototxt"), "--weights", str(d / "w.npz"), "--format", "saved_model",
                 "-o", str(d / "converted")]) == 0
    keras_port(net, names=True).export(str(d / "named"), format="tf_saved_model", verbose=False)
    keras_port(net).export(str(d / "default_names"), format="tf_saved_model", verbose=False)
    for bug in ("reshape", "bn_epsilon"):
        keras_port(net, bug=bug).export(str(d / bug), format="tf_saved_model", verbose=False)
    _nested_port(net).export(str(d / "nested"), format="tf_saved_model", verbose=False)
    keras_port(net, bug="bn_epsilon", names=True).export(str(d / "bn_epsilon_named"), format="tf_saved_model",
                                                         verbose=False)
    return d


def _check(sm: Path, folder: str, *extra: str, capsys=None) -> tuple[int, dict, str]:
    out = sm / f"{folder}.{len(extra)}.json"
    rc = main(["check", str(sm / "net.prototxt"), "--weights", str(sm / "w.npz"), "--saved-model", str(sm / folder),
               "--json", str(out), "--no-table", *extra])
    err = capsys.readouterr().err if capsys is not None else ""
    return rc, json.loads(out.read_text()), err


def test_converted_saved_model_passes_layer_by_layer(sm, capsys):
    rc, rep, err = _check(sm, "converted", capsys=capsys)
    assert rc == 0 and rep["equivalent"]
    assert rep["artefact"] == {"kind": "saved_model", "path": str(sm / "converted")}
    assert rep["backend"] == "tensorflow" and rep["mode"] == "chained"
    by = {f"{lr['caffe_layer']}/{lr['caffe_top']}": lr for lr in rep["layers"]}
    # every Caffe layer's output was read from the frozen graph by its Keras layer scope; the net output from the
    # signature's output named after the blob
    assert [k for k in by] == ["conv1/conv1", "relu1/conv1", "pool1/pool1", "bn1/pool1", "scale1/pool1", "fc/fc",
                               "prob/prob"]
    assert {k: v["matched_by"] for k, v in by.items() if k != "prob/prob"} == dict.fromkeys(
        ["conv1/conv1", "relu1/conv1", "pool1/pool1", "bn1/pool1", "scale1/pool1", "fc/fc"], "name")
    assert by["prob/prob"]["matched_by"] == "output" and by["prob/prob"]["keras_layer"] == "serving_default:prob"
    assert by["conv1/conv1"]["keras_layer"] == "conv1_1"
    assert "names its inputs" not in err and "outputs compared only" not in err


def test_converted_signature_is_named_after_the_blobs(sm):
    from harness.compare.artefacts.saved_model import open_saved_model

    s = open_saved_model(sm / "converted")
    assert s.signature == "serving_default"
    assert [(i.name, i.dtype, i.shape) for i in s.inputs] == [("data", "float32", (None, 13, 11, 3))]
    assert [(o.name, o.dtype, o.shape) for o in s.outputs] == [("prob", "float32", (None, 10))]


def test_port_named_after_the_caffe_layers_passes(sm, capsys):
    """``Conv2D(activation="relu", name="conv1")``: the scope conv1_1 ends in the ReLU; conv1 pairs with the tensor
    before it (by name) and relu1 with the activated one (by its op, Relu: the one ReLU scope left for the one Caffe
    ReLU no tensor names).  ``BatchNormalization(name="bn1")`` computes bn1 + scale1: its tensor pairs with scale1,
    bn1 in the span.  The unnamed MaxPooling2D pairs with pool1 by its op (MaxPool).  No false alarm anywhere."""
    rc, rep, _ = _check(sm, "named", capsys=capsys)
    assert rc == 0 and rep["equivalent"], rep["first_divergence"]
    by = {lr["caffe_layer"]: lr for lr in rep["layers"]}
    assert list(by) == ["conv1", "relu1", "pool1", "scale1", "fc", "prob"]
    assert by["scale1"]["segment"] == ["bn1", "scale1"] and by["scale1"]["matched_by"] == "name"
    assert by["pool1"]["matched_by"] == "name"
    assert re.fullmatch(r"max_pooling2d(_\d+)?_1/pool1", by["pool1"]["keras_layer"]), by["pool1"]
    assert by["conv1"]["keras_layer"] == "conv1_1" and by["conv1"]["matched_by"] == "name"
    assert by["relu1"]["keras_layer"] == "conv1_1>Relu/relu1" and by["relu1"]["matched_by"] == "name"
    assert by["conv1"]["chained"]["passed"] and by["relu1"]["chained"]["passed"]


def test_nested_backbone_layers_are_read_one_by_one(sm, capsys):
    """A Sequential backbone used as one layer: its layers' scopes sit inside the backbone's; each is read (no pair
    with the backbone's output as a whole, which would be a false alarm at pool1)."""
    rc, rep, _ = _check(sm, "nested", capsys=capsys)
    assert rc == 0 and rep["equivalent"], rep["first_divergence"]
    by = {lr["caffe_layer"]: lr for lr in rep["layers"]}
    assert by["conv1"]["keras_layer"] == "backbone_1/conv1_1" and by["conv1"]["matched_by"] == "name"
    assert re.fullmatch(r"backbone_1/max_pooling2d(_\d+)?_1/pool1", by["pool1"]["keras_layer"]), by["pool1"]
    assert by["scale1"]["segment"] == ["bn1", "scale1"] and by["fc"]["keras_layer"] == "fc_1"


def test_port_with_lost_input_names_is_paired_by_position_with_a_notice(sm, capsys):
    rc, rep, err = _check(sm, "default_names", capsys=capsys)
    assert rc == 0 and rep["equivalent"]
    # issue 25: not "lost": the port merely names its input otherwise (here: Keras's default name)
    assert re.search(r"signature 'serving_default' of '[^']*default_names' names its inputs "
                     r"\['keras_tensor(_\d+)?'\] \(default names: the port named no input\) where the net's are "
                     r"\['data'\]: paired by position", err), err
    assert "lost" not in err
    assert "names its outputs ['output_0']" in err
    convs = [lr for lr in rep["layers"] if lr["caffe_layer"] == "conv1"]
    # Keras's default name (conv2d, conv2d_<n> after other models in this process), paired by its op (Conv2D)
    assert convs and re.fullmatch(r"conv2d(_\d+)?_1/conv1", convs[0]["keras_layer"]), convs
    assert convs[0]["matched_by"] == "name"


@pytest.mark.parametrize("folder,first,cause", [("reshape", "conv1", "kernel_reshaped"),
                                                ("bn_epsilon", "bn1", "bn_epsilon"),
                                                ("bn_epsilon_named", "bn1", "bn_epsilon")])
def test_wrong_layer_in_a_saved_model_fails_at_that_layer(sm, capsys, folder, first, cause):
    rc, rep, _ = _check(sm, folder, capsys=capsys)
    assert rc == 1 and not rep["equivalent"]
    fd = rep["first_divergence"]
    assert fd["caffe_layer"] == first
    assert fd["diagnosis"] and fd["diagnosis"][0]["cause"] == cause
    at = next(i for i, lr in enumerate(rep["layers"]) if first in (lr["segment"] or [lr["caffe_layer"]]))
    assert all(lr["chained"]["passed"] for lr in rep["layers"][:at])
    assert not rep["layers"][at]["chained"]["passed"]


def test_intermediates_of_the_frozen_graph_are_the_keras_layer_outputs(sm):
    """The values read by layer scope are the Keras model's own layer outputs (not only the final output)."""
    import keras

    from harness.compare.artefacts.saved_model import open_saved_model, read_intermediates

    net = small_net()
    port = keras_port(net, names=True)
    x = np.random.default_rng(3).standard_normal((2, 13, 11, 3)).astype(np.float32)
    vals, why = read_intermediates(open_saved_model(sm / "named"), {"data": x})
    assert why is None
    probe = keras.Model(port.inputs, [port.get_layer("conv1").output, port.get_layer("bn1").output])
    relu, bn = (np.asarray(v) for v in probe([x]))
    # the fused Conv2D(activation="relu"): the scope's tensor before the ReLU, then the activated one
    assert np.min(vals["conv1_1"]) < 0 and np.min(vals["conv1_1>Relu"]) == 0
    np.testing.assert_allclose(np.maximum(vals["conv1_1"], 0), relu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vals["conv1_1>Relu"], relu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vals["bn1_1"], bn, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------ bad SavedModels

def _bad(sm: Path, tmp: Path, argv: list[str], capsys, monkeypatch) -> str:
    monkeypatch.chdir(tmp)
    before = sorted(p.name for p in tmp.iterdir())
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, (rc, err)
    assert "Traceback" not in err and out == ""
    lines = [x for x in err.strip().splitlines() if not x.startswith("caffe-harness: notice: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("caffe-harness: error: ")
    assert sorted(p.name for p in tmp.iterdir()) == before
    return lines[0]


def _two_inputs(d: Path) -> Path:
    import keras

    a, b = keras.Input((13, 11, 3), name="data"), keras.Input((13, 11, 3), name="extra")
    keras.Model([a, b], keras.layers.Add()([a, b])).export(str(d), format="tf_saved_model", verbose=False)
    return d


def _other_shape(d: Path) -> Path:
    import keras

    a = keras.Input((11, 13, 3), name="data")
    keras.Model(a, keras.layers.ReLU()(a)).export(str(d), format="tf_saved_model", verbose=False)
    return d


def _int_input(d: Path) -> Path:
    import keras

    a = keras.Input((13, 11, 3), name="data", dtype="int32")
    keras.Model(a, keras.layers.Activation("linear")(keras.ops.cast(a, "float32"))).export(
        str(d), format="tf_saved_model", verbose=False)
    return d


def _not_saved_model(d: Path) -> Path:
    d.mkdir()
    (d / "model.pb").write_bytes(b"\x08\x01")
    return d


BAD = {
    "not_a_saved_model": (_not_saved_model, [], ["is not a SavedModel folder", "saved_model.pb"]),
    "missing_folder": (None, [], ["does not exist"]),
    "unknown_signature": ("reshape", ["--signature", "predict"],
                          ["no signature 'predict'", "serve, serving_default", "--signature"]),
    "input_count": (_two_inputs, [], ["takes 2 input(s) (data, extra)", "the net has 1 (data)"]),
    "input_shape": (_other_shape, [], ["input 'data' has shape (None, 11, 13, 3)", "(2, 3, 13, 11) (NCHW)",
                                       "(2, 13, 11, 3) (NHWC)"]),
    "input_dtype": (_int_input, [], ["input 'data' is int32", "float32"]),
    "signature_without_saved_model": ("", ["--signature", "serving_default"], ["--signature needs --saved-model"]),
    "map_with_saved_model": ("reshape", ["--map", "conv1=conv2d"], ["--map cannot be used with --saved-model"]),
    "isolated_with_saved_model": ("reshape", ["--mode", "isolated"], ["--mode isolated", "chained"]),
}


@pytest.mark.parametrize("row", list(BAD), ids=list(BAD))
def test_bad_saved_model(row, sm, tmp_path, capsys, monkeypatch):
    make, extra, words = BAD[row]
    if callable(make):
        folder = str(make(tmp_path / "sm"))
    elif make is None:
        folder = str(tmp_path / "nothere")
    else:
        folder = str(sm / make) if make else ""
    (tmp_path / "net.prototxt").write_text(SMALL_NET)
    argv = ["check", "net.prototxt"] + (["--saved-model", folder] if folder else []) + extra
    line = _bad(sm, tmp_path, argv, capsys, monkeypatch)
    if folder and not row.endswith("_with_saved_model"):
        assert repr(folder) in line, line
    for w in words:
        assert w in line, (w, line)


def test_convert_saved_model_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "net.prototxt").write_text(SMALL_NET)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc = main(["convert", str(tmp_path / "net.prototxt"), "--format", "saved_model", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "the folder exists and is not empty" in err and repr(str(out)) in err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.prototxt", "out"]  # no temporary folder left


def test_keras_flag_on_a_saved_model_points_to_saved_model(sm, capsys):
    rc = main(["check", str(sm / "net.prototxt"), "--keras", str(sm / "converted")])
    err = capsys.readouterr().err
    assert rc == 2 and "TensorFlow SavedModel folder" in err and "--saved-model" in err


def test_junit_and_html_carry_the_artefact_kind_and_path(sm, tmp_path, capsys):
    import html
    import xml.etree.ElementTree as ET

    from harness.convert import convert, save_model

    save_model(convert(small_net()), tmp_path / "conv.keras")
    for flag, target, kind in (("--saved-model", sm / "converted", "saved_model"),
                               ("--keras", tmp_path / "conv.keras", "keras")):
        junit, page = tmp_path / f"{kind}.xml", tmp_path / f"{kind}.html"
        rc = main(["check", str(sm / "net.prototxt"), "--weights", str(sm / "w.npz"), flag, str(target),
                   "--junit", str(junit), "--html", str(page), "--no-table"])
        capsys.readouterr()
        assert rc == 0
        suite = ET.parse(junit).getroot().find("testsuite")
        props = {p.get("name"): p.get("value") for p in suite.find("properties")}
        assert props["artefact.kind"] == kind and props["artefact.path"] == str(target)
        assert props["backend"] == "tensorflow" and props["mode"] == ("chained" if kind == "saved_model" else "both")
        text = page.read_text()
        header = text[text.index("<h1>"):text.index("<pre>")]
        assert f"artefact.kind: <code>{kind}</code>" in header
        assert f"artefact.path: <code>{html.escape(str(target))}</code>" in header


@pytest.mark.skipif(__import__("importlib").util.find_spec("jax") is None, reason="jax is not installed")
def test_jax_backend_export_is_compared_on_its_outputs_with_a_notice(sm, tmp_path, capsys):
    """A SavedModel exported on the JAX backend is one XlaCallModule op (jax2tf): no layer scopes to read.  Its
    outputs are still compared (names, dtypes, values), and a notice says the intermediates could not be read."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-m", "harness.cli", "convert", str(sm / "net.prototxt"), "--weights",
                        str(sm / "w.npz"), "--format", "saved_model", "-o", str(tmp_path / "jax_sm")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "r.json"
    rc = main(["check", str(sm / "net.prototxt"), "--weights", str(sm / "w.npz"), "--saved-model",
               str(tmp_path / "jax_sm"), "--json", str(out), "--no-table"])
    err = capsys.readouterr().err
    rep = json.loads(out.read_text())
    assert rc == 0 and rep["equivalent"]
    assert "outputs compared only" in err and repr(str(tmp_path / "jax_sm")) in err
    assert [(lr["caffe_layer"], lr["matched_by"]) for lr in rep["layers"]] == [("prob", "output")]
    assert any("outputs compared only" in n for n in rep["notes"])


TWO_INPUTS = """
name: "two"
layer { name: "a" type: "Input" top: "a" input_param { shape { dim: 2 dim: 3 dim: 5 dim: 7 } } }
layer { name: "b" type: "Input" top: "b" input_param { shape { dim: 2 dim: 3 dim: 5 dim: 7 } } }
layer { name: "conv" type: "Convolution" bottom: "a" top: "conv" convolution_param { num_output: 3 kernel_size: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "conv" bottom: "b" top: "sum" }
layer { name: "ip" type: "InnerProduct" bottom: "b" top: "ip" inner_product_param { num_output: 4 } }
"""


def test_two_inputs_and_two_outputs_keep_their_blob_names(tmp_path, capsys):
    from harness.compare.artefacts.saved_model import open_saved_model

    (tmp_path / "two.prototxt").write_text(TWO_INPUTS)
    assert main(["convert", str(tmp_path / "two.prototxt"), "--format", "saved_model", "-o", str(tmp_path / "sm")]) == 0
    s = open_saved_model(tmp_path / "sm")
    assert [(i.name, i.shape) for i in s.inputs] == [("a", (None, 5, 7, 3)), ("b", (None, 5, 7, 3))]
    assert [(o.name, o.shape) for o in s.outputs] == [("ip", (None, 4)), ("sum", (None, 5, 7, 3))]
    rc = main(["check", str(tmp_path / "two.prototxt"), "--saved-model", str(tmp_path / "sm"), "--json",
               str(tmp_path / "r.json"), "--no-table"])
    err = capsys.readouterr().err
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rc == 0 and rep["equivalent"] and "paired by position" not in err
    assert [(lr["caffe_layer"], lr["matched_by"]) for lr in rep["layers"]] == [("conv", "name"), ("sum", "output"),
                                                                               ("ip", "output")]


def test_keras_flag_on_a_tflite_file_points_to_tflite(tmp_path, capsys):
    (tmp_path / "net.prototxt").write_text(SMALL_NET)
    (tmp_path / "m.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3")
    rc = main(["check", str(tmp_path / "net.prototxt"), "--keras", str(tmp_path / "m.tflite")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "LiteRT (.tflite) model" in err and "--tflite" in err
