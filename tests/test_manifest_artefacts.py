"""Equivalence manifests for exported artefacts and Keras backends (issue 12, item 5): ``saved_model = "dir"``,
``keras = "model.tflite"`` and ``backend = "jax"``; each item carries the artefact's kind and path and the backend
as JUnit properties; keys that do not go together are collection errors naming them."""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy  # noqa: F401 - imported here, outside pytester's in-process runs: reading a manifest's keys imports the
import pytest  # artefact kinds' registry (harness.compare, NumPy), and NumPy cannot be imported twice in one process

pytest_plugins = ["pytester"]

PLUGIN = ("-p", "no:caffe_harness", "-p", "harness_pytest")
SMALL_ITEMS = ["conv1", "relu1", "pool1", "bn1", "scale1", "fc", "prob"]


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    """SMALL_NET's files, its converted SavedModel, a SavedModel of the port with a reshaped conv kernel, and the
    converted net as a float32 .tflite."""
    from support.ports import keras_port, write_port_files

    from harness.convert import convert
    from harness.convert.saved_model import export_saved_model

    d = tmp_path_factory.mktemp("artefacts")
    net = write_port_files(d, {})
    export_saved_model(convert(net), d / "sm")
    keras_port(net, bug="reshape").export(str(d / "sm_bad"), format="tf_saved_model", verbose=False)
    if importlib.util.find_spec("ai_edge_litert") is not None:
        from harness.convert.export import save_tflite

        save_tflite(convert(net), d / "model.tflite")
    return d


def _manifest(d: Path, extra: str) -> str:
    return f'prototxt = "{d / "net.prototxt"}"\nweights = "{d / "w.npz"}"\nseed = 3\n' + extra


def _junit(pytester) -> dict[str, dict[str, str]]:
    """{test case name: {property: value}} of the run's JUnit XML."""
    root = ET.parse(pytester.path / "out.xml").getroot()
    return {tc.get("name"): {p.get("name"): p.get("value") for p in tc.iter("property")}
            for tc in root.iter("testcase")}


def _outcomes(r) -> dict[str, str]:
    out = {}
    for line in r.outlines:
        if "::" in line and (line.rstrip().endswith("PASSED") or line.rstrip().endswith("FAILED")
                             or " PASSED " in line or " FAILED " in line):
            node, _, rest = line.partition(" ")
            out[node.split("::")[-1]] = "PASSED" if "PASSED" in rest else "FAILED"
    return out


def test_saved_model_manifest_one_item_per_layer(pytester, art):
    (pytester.path / "caffe-equivalence.toml").write_text(_manifest(art, f'saved_model = "{art / "sm"}"\n'))
    r = pytester.runpytest(*PLUGIN, "-v", "-p", "no:cacheprovider", "--junitxml", "out.xml")
    r.assert_outcomes(passed=len(SMALL_ITEMS))
    assert list(_outcomes(r)) == SMALL_ITEMS
    props = _junit(pytester)
    assert props["conv1"]["caffe_harness_artefact_kind"] == "saved_model"
    assert props["conv1"]["caffe_harness_artefact_path"] == str(art / "sm")
    assert props["conv1"]["caffe_harness_backend"] == "tensorflow"


def test_saved_model_manifest_names_the_failing_layer(pytester, art):
    (pytester.path / "caffe-equivalence.toml").write_text(
        _manifest(art, f'saved_model = "{art / "sm_bad"}"\nsignature = "serving_default"\n'))
    r = pytester.runpytest(*PLUGIN, "-v", "-p", "no:cacheprovider")
    outcomes = _outcomes(r)
    assert outcomes["conv1"] == "FAILED", outcomes
    text = r.stdout.str()
    assert "this is the first divergent layer" in text and "likely cause: kernel_reshaped" in text


@pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None, reason="ai-edge-litert is not installed")
def test_tflite_manifest_runs_the_litert_check(pytester, art):
    (pytester.path / "caffe-equivalence.toml").write_text(_manifest(art, f'keras = "{art / "model.tflite"}"\n'))
    r = pytester.runpytest(*PLUGIN, "-v", "-p", "no:cacheprovider", "--junitxml", "out.xml")
    outcomes = _outcomes(r)
    # LiteRT fuses the ReLU into the convolution: one tensor, one item for the span
    assert outcomes == dict.fromkeys(["conv1+relu1", "pool1", "bn1", "scale1", "fc", "prob"], "PASSED"), \
        r.stdout.str()[-3000:]
    props = next(iter(_junit(pytester).values()))
    assert props["caffe_harness_artefact_kind"] == "tflite"
    assert props["caffe_harness_artefact_path"] == str(art / "model.tflite")


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
                    reason="onnx / onnxruntime are not installed")
def test_onnx_manifest_one_item_per_layer_and_the_failing_one_named(pytester, tmp_path):
    """``onnx = "m.onnx"``: the plugin judges the ONNX model through the artefact kinds' seam, one item per paired
    layer; a deliberate LRN alpha bug fails the LRN's item with its cause."""
    from artefacts.onnx_kit import CONV_NET, export, seeded_net

    net, proto = seeded_net(CONV_NET, tmp_path)
    export(net, tmp_path / "ok.onnx")
    export(net, tmp_path / "bad.onnx", "lrn_alpha")
    (pytester.path / "caffe-equivalence.toml").write_text(
        f'[[check]]\nname = "ok"\nprototxt = "{proto}"\nseed = 3\nonnx = "{tmp_path / "ok.onnx"}"\n'
        f'[[check]]\nname = "bad"\nprototxt = "{proto}"\nseed = 3\nonnx = "{tmp_path / "bad.onnx"}"\n')
    r = pytester.runpytest(*PLUGIN, "-v", "-p", "no:cacheprovider", "--junitxml", "out.xml")
    items = ["conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "ip1", "prob"]
    r.assert_outcomes(passed=2 * len(items) - 1, failed=1)
    assert "likely cause: lrn_alpha_scaling" in r.stdout.str()
    props = _junit(pytester)
    assert {p["caffe_harness_artefact_kind"] for p in props.values()} == {"onnx"}
    assert {p["caffe_harness_backend"] for p in props.values()} == {"onnxruntime"}


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_backend_jax_manifest_runs_on_jax(pytester, art, monkeypatch):
    """In a fresh process (Keras picks its backend at import): the converted net checked on JAX."""
    (pytester.path / "caffe-equivalence.toml").write_text(_manifest(art, 'keras = "convert"\nbackend = "jax"\n'))
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    r = pytester.runpytest_subprocess(*PLUGIN, "-v", "-p", "no:cacheprovider", "--junitxml", "out.xml")
    r.assert_outcomes(passed=len(SMALL_ITEMS))
    props = _junit(pytester)
    assert {p["caffe_harness_backend"] for p in props.values()} == {"jax"}
    assert {p["caffe_harness_artefact_kind"] for p in props.values()} == {"converted"}


def test_backend_other_than_this_process_keras_is_a_collection_error(pytester, art):
    import keras

    other = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    (pytester.path / "caffe-equivalence.toml").write_text(_manifest(art, f'backend = "{other}"\n'))
    r = pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider")
    r.assert_outcomes(errors=1)
    text = r.stdout.str()
    assert f"backend = '{other}'" in text and "Keras is already imported with backend" in text


@pytest.mark.parametrize("extra,words", [
    ('keras = "m.keras"\nsaved_model = "sm"\n', ["either keras = ", "or saved_model = "]),
    ('signature = "serve"\n', ["signature = 'serve' needs saved_model"]),
    ('backend = "theano"\n', ["backend = 'theano'", "tensorflow, jax, torch"]),
    ('saved_model = "sm"\nbackend = "jax"\n', ["backend = 'jax' does not apply to a SavedModel"]),
    ('saved_model = "sm"\nmode = "isolated"\n', ["mode = 'isolated' does not apply to a SavedModel", "chained"]),
    ('keras = "m.tflite"\n[map]\nconv1 = "x"\n', ["map = ", "does not apply to a .tflite model"]),
    ('onnx = "m.onnx"\n[map]\nconv1 = "x"\n', ["map = ", "does not apply to an ONNX model", "onnxruntime"]),
    ('onnx = "m.onnx"\nmode = "isolated"\n', ["mode = 'isolated' does not apply to an ONNX model"]),
    ('tflite_delegate = "none"\n', ["tflite_delegate = 'none' needs tflite = \"FILE\""]),
    ('keras = "m.keras"\nonnx = "m.onnx"\n', ["either keras = ", "or onnx = "]),
])
def test_keys_that_do_not_go_together_are_collection_errors(pytester, extra, words):
    (pytester.path / "caffe-equivalence.toml").write_text('prototxt = "x.prototxt"\n' + extra)
    r = pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider")
    r.assert_outcomes(errors=1)
    text = r.stdout.str()
    assert "caffe-equivalence.toml" in text
    for w in words:
        assert w in text, (w, text[-2000:])
