"""(c) Bad artefacts: exit 2, one line on stderr naming the file (and what is wrong), no JSON report written."""

from __future__ import annotations

import pytest

from . import _corpus as C

pytest.importorskip("ai_edge_litert")


def _assert_refused(rc, report, err, *words):
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("caffe-harness: error:")]
    assert rc == 2, err
    assert report is None
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_truncated_tflite(artefact, check, tmp_path):
    good = artefact("plain", "tflite", "from_keras_model").read_bytes()
    bad = tmp_path / "cut_short.tflite"
    bad.write_bytes(good[: len(good) * 2 // 5])
    rc, report, err = check("plain", "--tflite", bad)
    _assert_refused(rc, report, err, "cut_short.tflite")


def test_folder_that_is_not_a_saved_model(check, tmp_path):
    d = tmp_path / "my_export"
    d.mkdir()
    (d / "weights.npz").write_bytes(b"not a saved model")
    (d / "variables").mkdir()
    rc, report, err = check("plain", "--saved-model", d)
    _assert_refused(rc, report, err, "my_export")


def test_unknown_signature(artefact, check):
    d = artefact("plain", "saved_model", "export_archive")
    rc, report, err = check("plain", "--saved-model", d, "--signature", "serve_images")
    _assert_refused(rc, report, err, d.name, "serve_images", "predict")


@pytest.fixture(scope="module")
def other_shape_port(nets):
    """The plain port built for 12x13 images (the prototxt says 10x13)."""
    import keras

    w = nets["plain"][3]
    x = inp = keras.Input((12, 13, 3), name="data")
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(keras.layers.Permute((3, 1, 2))(keras.layers.MaxPooling2D(2, 2, padding="same")(x)))
    model = keras.Model(inp, keras.layers.Dense(5, activation="softmax")(x))
    model.layers[1].set_weights([C.keras_kernel(w["conv1"][0]), w["conv1"][1]])
    return model


def test_saved_model_input_shape_mismatch(other_shape_port, check, tmp_path):
    d = C.export_tf_saved_model(other_shape_port, tmp_path / "for_12x13")
    rc, report, err = check("plain", "--saved-model", d)
    _assert_refused(rc, report, err, "for_12x13", "12", "10")


def test_tflite_input_shape_mismatch(other_shape_port, check, tmp_path):
    f = C.tflite_from_keras(other_shape_port, tmp_path / "for_12x13.tflite")
    rc, report, err = check("plain", "--tflite", f)
    _assert_refused(rc, report, err, "for_12x13.tflite", "12", "10")


def test_tflite_with_uninitialised_variables_is_not_passed(nets, check, tmp_path):
    """``from_concrete_functions([fn], model)`` keeps the weights as resource variables nothing initialises: LiteRT
    gives NaN through XNNPACK and refuses READ_VARIABLE without it. Such a file must not pass, and the path that
    cannot run it is named with LiteRT's message."""
    model = C.port_plain(nets["plain"][3], "func")
    f = C.tflite_from_concrete(model, tmp_path / "uninitialised.tflite", trackable=True)
    rc, report, err = check("plain", "--tflite", f, "--tflite-delegate", "both")
    assert rc == 1 and report["equivalent"] is False, err
    assert report["delegates"]["none"]["equivalent"] is False
    assert "READ_VARIABLE" in report["delegates"]["none"].get("error", ""), report["delegates"]
    assert report["delegates"]["xnnpack"]["equivalent"] is False, report["delegates"]


def test_tflite_file_given_as_saved_model(artefact, check):
    f = artefact("plain", "tflite", "from_keras_model")
    rc, report, err = check("plain", "--saved-model", f)
    _assert_refused(rc, report, err, f.name)


def test_saved_model_folder_given_as_tflite(artefact, check):
    d = artefact("plain", "saved_model", "model_export")
    rc, report, err = check("plain", "--tflite", d)
    _assert_refused(rc, report, err, d.name)


def test_no_serving_default_and_no_signature_given(nets, check, tmp_path):
    """``tf.saved_model.save(..., signatures={"classify": ...})``: the default ``serving_default`` is not there; the
    refusal lists the signature the folder has."""
    import tensorflow as tf

    model = C.port_plain(nets["plain"][3], "func")
    fn = tf.function(lambda data: {"prob": model(data, training=False)},
                     input_signature=[tf.TensorSpec((None, 10, 13, 3), tf.float32, name="data")])
    d = tmp_path / "classify_only"
    tf.saved_model.save(model, str(d), signatures={"classify": fn.get_concrete_function()})
    rc, report, err = check("plain", "--saved-model", d)
    _assert_refused(rc, report, err, "classify_only", "serving_default", "classify")
    rc, report, err = check("plain", "--saved-model", d, "--signature", "classify")
    assert rc == 0 and report["equivalent"] is True, err
