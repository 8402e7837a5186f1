"""Zoo nets converted to a SavedModel pass ``check --saved-model`` layer by layer (issue 12, "How we know"), at the
zoo gate's reduced sizes and seeded weights (tests/test_zoo_gate.py).  A few nets keep the suite fast, chosen for
what they exercise in the SavedModel path:

* lenet: the smallest net, through the CLI (convert --format saved_model, then check --saved-model --json);
* squeezenet11: Concat of parallel branches (many layer scopes feeding one op), ceil-mode pooling;
* googlenet: Caffe names with ``/`` (``inception_3a/1x1`` -> the Keras layer and scope ``inception_3a.1x1``), LRN;
* fcn32s_head: Deconvolution and Crop (the net output is a Crop: exact, judged against the Caffe layer re-run on the
  SavedModel's own Deconvolution output).

Every Caffe layer with a tensor of its own is paired by its name (the output blob by the signature's output), and
every pair passes chained with the derived float32 bound.  Measured on the shared 2-core machine: about 25 s for the
four (googlenet 13 s: export 5 s, freeze + run + compare 8 s)."""

from __future__ import annotations

import json
import time

import pytest

from harness.cli import main
from harness.compare.artefacts.saved_model import compare_saved_model
from harness.convert import convert
from harness.convert.saved_model import export_saved_model

from test_zoo_gate import GATE_SHAPES, HEAD, ZOO, _gate_net

NETS = ("squeezenet11", "googlenet", "fcn32s_head")


@pytest.mark.parametrize("name", NETS)
def test_zoo_net_as_saved_model_passes_layer_by_layer(name, tmp_path, record_property):
    t0 = time.perf_counter()
    net = _gate_net(name)
    export_saved_model(convert(net), tmp_path / "sm")
    rep = compare_saved_model(net, tmp_path / "sm")
    record_property("seconds", round(time.perf_counter() - t0, 2))
    failing = [(lr.key, str(lr.chained)) for lr in rep.layers if not lr.passed]
    assert rep, f"{name} at {GATE_SHAPES[name]}: {failing[:5]} {rep.output_problems}"
    assert rep.artefact == {"kind": "saved_model", "path": str(tmp_path / "sm")} and rep.mode == "chained"
    assert not rep.unmatched_caffe and not rep.output_problems
    head, shape = HEAD[name]
    by_layer = {lr.caffe_layer: lr for lr in rep.layers}
    assert by_layer[head].matched_by == "output" and by_layer[head].keras_layer == f"serving_default:{head}"
    if shape is not None:
        assert tuple(by_layer[head].shape) == shape
    assert all(lr.matched_by == "name" for lr in rep.layers if lr.caffe_layer != head)
    weighted = {lay.name for lay in net.layers if lay.blobs}
    assert weighted <= set(by_layer), sorted(weighted - set(by_layer))
    if name == "googlenet":  # "/" in Caffe names: the scope is named with "."
        assert by_layer["inception_3a/1x1"].keras_layer == "inception_3a.1x1_1"
    for lr in rep.layers:
        assert lr.chained.passed and lr.chained.nonfinite == 0, (lr.key, str(lr.chained))


def test_lenet_through_the_cli(tmp_path, capsys):
    out = tmp_path / "sm"
    assert main(["convert", str(ZOO / "lenet.prototxt"), "--format", "saved_model", "-o", str(out)]) == 0
    assert "(TensorFlow SavedModel, signature serving_default)" in capsys.readouterr().out
    assert (out / "saved_model.pb").is_file()
    rc = main(["check", str(ZOO / "lenet.prototxt"), "--saved-model", str(out), "--json", str(tmp_path / "r.json"),
               "--no-table"])
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rc == 0 and rep["equivalent"], rep["first_divergence"]
    assert rep["artefact"] == {"kind": "saved_model", "path": str(out)} and rep["backend"] == "tensorflow"
    assert [lr["caffe_layer"] for lr in rep["layers"]] == ["conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2",
                                                          "prob"]
    assert all(lr["chained"]["passed"] for lr in rep["layers"])


_SSD_TINY = """name: "ssd_tiny"
input: "data"
input_shape { dim: 2 dim: 3 dim: 9 dim: 11 }
layer { name: "feat" type: "Convolution" bottom: "data" top: "feat" convolution_param { num_output: 5 kernel_size: 3 pad: 1 } }
layer { name: "relu" type: "ReLU" bottom: "feat" top: "feat" }
layer { name: "loc" type: "Convolution" bottom: "feat" top: "loc" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "loc_perm" type: "Permute" bottom: "loc" top: "loc_perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "loc_flat" type: "Flatten" bottom: "loc_perm" top: "loc_flat" }
layer { name: "conf" type: "Convolution" bottom: "feat" top: "conf" convolution_param { num_output: 3 kernel_size: 1 } }
layer { name: "conf_perm" type: "Permute" bottom: "conf" top: "conf_perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "conf_flat" type: "Flatten" bottom: "conf_perm" top: "conf_flat" }
layer { name: "prior" type: "PriorBox" bottom: "feat" bottom: "data" top: "prior" prior_box_param { min_size: 4 clip: true variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 } }
layer { name: "det" type: "DetectionOutput" bottom: "loc_flat" bottom: "conf_flat" bottom: "prior" top: "det"
  detection_output_param { num_classes: 3 share_location: true background_label_id: 0 confidence_threshold: 0.01
    nms_param { nms_threshold: 0.45 top_k: 50 } keep_top_k: 20 code_type: CENTER_SIZE } }
"""


def test_detection_output_loop_does_not_hide_the_layers(tmp_path):
    """SSD's DetectionOutput runs a tf.while_loop per image: its frame's tensors are no layer output, and fetching
    them failed the whole frozen-graph run ("Retval[3] has already been set"), leaving the outputs alone to judge --
    a false alarm at SSD300's detection_out (4.8e-5 on a box coordinate: the whole net's float32 error against one
    layer's bound).  A tiny SSD head is read layer by layer and passes."""
    from harness.caffe import load_net
    from harness.weights import random_weights

    (tmp_path / "ssd.prototxt").write_text(_SSD_TINY)
    net = random_weights(load_net(tmp_path / "ssd.prototxt"), seed=3)
    export_saved_model(convert(net), tmp_path / "sm")
    rep = compare_saved_model(net, tmp_path / "sm")
    assert not any("outputs compared only" in n for n in rep.notes), rep.notes
    assert {"feat", "loc", "conf", "det"} <= {lr.caffe_layer for lr in rep.layers}, [lr.key for lr in rep.layers]
    assert rep.equivalent, rep.verdict()
