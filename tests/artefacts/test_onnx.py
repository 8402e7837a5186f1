"""``check --onnx``: ONNX graphs written at test time from a seeded Caffe net (tests/artefacts/onnx_kit.py), run
with onnxruntime, every intermediate read and judged.  Correct exports are EQUIVALENT with full pairing coverage;
each deliberate bug is named at its own layer with its cause; bad files exit 2 in one line naming the file."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from harness.cli import main  # noqa: E402
from support import one_error_line  # noqa: E402
from harness.compare.artefacts.kinds import check_artefact  # noqa: E402

from .onnx_kit import BN_NET, CONV_NET, POOL_NET, export, seeded_net  # noqa: E402


@pytest.mark.parametrize("text, kw", [(CONV_NET, {}), (BN_NET, {}), (BN_NET, {"scale_as_mul": True}),
                                      (CONV_NET, {"batch": 1})],
                         ids=["conv-relu-pool-lrn-ip", "bn-scale-fused", "bn-then-scale-as-mul-add", "fixed-batch-1"])
def test_correct_exports_are_equivalent_with_full_coverage(text, kw, tmp_path):
    net, _ = seeded_net(text, tmp_path)
    rep = check_artefact("onnx", net, export(net, tmp_path / "m.onnx", **kw))
    assert rep.equivalent, rep.verdict()
    assert rep.artefact == {"kind": "onnx", "path": str(tmp_path / "m.onnx")} and rep.backend == "onnxruntime"
    assert rep.coverage["uncomputed"] == [] and rep.coverage["ratio"] == 1.0
    assert rep.coverage["paired"] == rep.coverage["records"] == len([k for lay in net.layers for k in lay.keys()
                                                                     if lay.type != "Input"])
    assert "Pairing coverage: " in rep.verdict() and "ONNX model 'm.onnx'" in rep.verdict()


@pytest.mark.parametrize("text, bug, layer, cause", [
    (CONV_NET, "lrn_alpha", "norm1", "lrn_alpha_scaling"),
    (CONV_NET, "conv_axes", "conv1", "kernel_axes_swapped"),
    (BN_NET, "bn_epsilon", "bn1", "bn_epsilon"),
    (POOL_NET, "pool_floor", "pool1", "pool_rounding"),
])
def test_a_deliberate_bug_is_named_at_its_layer_with_its_cause(text, bug, layer, cause, tmp_path):
    net, _ = seeded_net(text, tmp_path)
    rep = check_artefact("onnx", net, export(net, tmp_path / "m.onnx", bug))
    assert not rep.equivalent
    fd = rep.first_divergence
    assert fd.caffe_layer == layer and fd.diagnosis[0].cause == cause, rep.verdict()
    assert f"First divergent layer: Caffe {layer!r}" in rep.verdict()
    if bug == "pool_floor":  # the shape misfit cuts the pairing: the records after it are listed, not judged
        assert rep.coverage["uncomputed"][0] == "pool1/pool1" and rep.coverage["paired"] == 2
        assert "  pool1 [chained]: FAIL Pooling output has shape [2, 4, 6, 5] where Caffe's is [2, 4, 7, 5]" in \
            rep.verdict()


def test_check_onnx_cli_writes_coverage_in_json_and_html(tmp_path, capsys, monkeypatch):
    net, proto = seeded_net(BN_NET, tmp_path, seed=0)  # the CLI seeds the net as seeded_net(seed=0) does
    export(net, tmp_path / "m.onnx")
    monkeypatch.chdir(tmp_path)
    rc = main(["check", "net.prototxt", "--onnx", "m.onnx", "--json", "r.json", "--html", "r.html", "--no-table"])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert "seeded random weights (seed 0)" in err and "EQUIVALENT" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["artefact"] == {"kind": "onnx", "path": "m.onnx"}
    assert rep["coverage"] == {"paired": 5, "records": 5, "ratio": 1.0, "uncomputed": []}
    assert "Pairing coverage: 5 of 5" in (tmp_path / "r.html").read_text()


def test_check_onnx_cli_names_the_bug_exit_1(tmp_path, capsys, monkeypatch):
    net, _ = seeded_net(CONV_NET, tmp_path, seed=0)
    export(net, tmp_path / "m.onnx", "lrn_alpha")
    monkeypatch.chdir(tmp_path)
    rc = main(["check", "net.prototxt", "--onnx", "m.onnx", "--json", "r.json", "--no-table"])
    assert rc == 1
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["first_divergence"]["caffe_layer"] == "norm1"
    assert rep["first_divergence"]["diagnosis"][0]["cause"] == "lrn_alpha_scaling"
    capsys.readouterr()


def _two_inputs(good: bytes, tmp_path) -> bytes:
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load_model_from_string(good)
    m.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1, 2]))
    return m.SerializeToString()


def _other_shape(good: bytes, tmp_path) -> bytes:
    import onnx

    m = onnx.load_model_from_string(good)
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 9
    return m.SerializeToString()


def _future_opset(good: bytes, tmp_path) -> bytes:
    import onnx

    m = onnx.load_model_from_string(good)
    m.opset_import[0].version = 999
    return m.SerializeToString()


BAD = {
    "truncated": (lambda b, _: b[: len(b) // 3], ["'m.onnx'", "truncated or not an ONNX model"]),
    "empty": (lambda b, _: b"", ["'m.onnx'", "no node"]),
    "not_onnx": (lambda b, _: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, ["'m.onnx'", "not an ONNX model"]),
    "two_inputs": (_two_inputs, ["'m.onnx' has 2 input(s) (data, extra)", "has 1 (data)"]),
    "input_shape": (_other_shape, ["'m.onnx'", "input 'data' has shape", "[2, 3, 14, 11] (NCHW)"]),
    "opset_onnxruntime_cannot_run": (_future_opset, ["'m.onnx'", "onnxruntime cannot load the model"]),
}


@pytest.mark.parametrize("row", list(BAD), ids=list(BAD))
def test_bad_onnx_exits_2_in_one_line_naming_the_file(row, tmp_path, capsys, monkeypatch):
    net, _ = seeded_net(POOL_NET, tmp_path, seed=0)  # no InnerProduct: another input size keeps the graph valid
    good = export(net, tmp_path / "good.onnx").read_bytes()
    make, words = BAD[row]
    (tmp_path / "m.onnx").write_bytes(make(good, tmp_path))
    before = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.chdir(tmp_path)
    rc = main(["check", "net.prototxt", "--onnx", "m.onnx", "--json", "r.json"])
    out, err = capsys.readouterr()
    assert rc == 2, (rc, err)
    assert out == "" and "Traceback" not in err
    one_error_line(err, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no report half-written


@pytest.mark.parametrize("argv, words", [
    (["--onnx", "dir"], ["'dir'", "folder"]),
    (["--onnx", "nothere.onnx"], ["'nothere.onnx'", "does not exist"]),
    (["--onnx", "m.onnx", "--mode", "isolated"], ["--mode isolated", "--onnx", "end to end"]),
    (["--onnx", "m.onnx", "--map", "conv1=x"], ["--map cannot be used with --onnx"]),
    (["--onnx", "m.onnx", "--backend", os.environ.get("KERAS_BACKEND", "tensorflow")],
     ["--backend cannot be used with --onnx"]),
    (["--onnx", "m.onnx", "--signature", "serve"], ["--signature needs --saved-model DIR"]),
])
def test_onnx_flags_refused_by_name(argv, words, tmp_path, capsys, monkeypatch):
    net, _ = seeded_net(CONV_NET, tmp_path, seed=0)
    export(net, tmp_path / "m.onnx")
    (tmp_path / "dir").mkdir()
    monkeypatch.chdir(tmp_path)
    rc = main(["check", "net.prototxt", *argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    one_error_line(err, words)


def test_missing_onnxruntime_is_refused_with_the_install_hint(tmp_path, capsys, monkeypatch):
    net, _ = seeded_net(CONV_NET, tmp_path, seed=0)
    export(net, tmp_path / "m.onnx")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    rc = main(["check", "net.prototxt", "--onnx", "m.onnx"])
    err = capsys.readouterr().err
    assert rc == 2 and "--onnx needs onnx and onnxruntime" in err and "caffe-keras-harness[artefacts]" in err


def test_every_node_output_is_read_and_the_bias_add_is_the_layer_output(tmp_path):
    """A Gemm written as MatMul + Add (its bias) is paired at the Add: the value after everything the layer
    computes, not the tensor before its bias (that would be a false ``missing_bias``)."""
    import onnx
    from onnx import helper, numpy_helper

    net, _ = seeded_net(CONV_NET, tmp_path)
    m = onnx.load(str(export(net, tmp_path / "m.onnx")))
    g = m.graph
    gemm = next(n for n in g.node if n.op_type == "Gemm")
    w = next(numpy_helper.to_array(t) for t in g.initializer if t.name == gemm.input[1])
    g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w.T), "ip1_wt"))
    i = list(g.node).index(gemm)
    mm = helper.make_node("MatMul", [gemm.input[0], "ip1_wt"], ["ip1_mm"], name="ip1_matmul")
    add = helper.make_node("Add", ["ip1_mm", gemm.input[2]], [gemm.output[0]], name="ip1_bias")
    g.node.remove(gemm)
    g.node.insert(i, add)
    g.node.insert(i, mm)
    onnx.save(m, str(tmp_path / "split.onnx"))
    rep = check_artefact("onnx", net, tmp_path / "split.onnx")
    assert rep.equivalent, rep.verdict()
    ip = next(lr for lr in rep.layers if lr.caffe_layer == "ip1")
    assert ip.keras_layer in ("ip1_bias", "ip1_bias/ip1")


def test_model_explorer_node_data_keyed_by_the_onnx_node_names(tmp_path, capsys, monkeypatch):
    """``--model-explorer FILE``: Model Explorer's GraphNodeData, each compared node (by its node name and its output
    tensor's name) with its bound ratio and a pass/fail colour; the failing LRN red, the layers before it green."""
    from harness.compare.reports.model_explorer import FAILED

    net, _ = seeded_net(CONV_NET, tmp_path, seed=0)
    export(net, tmp_path / "m.onnx", "lrn_alpha")
    monkeypatch.chdir(tmp_path)
    rc = main(["check", "net.prototxt", "--onnx", "m.onnx", "--model-explorer", "me.json", "--json", "r.json",
               "--no-table"])
    capsys.readouterr()
    assert rc == 1
    data = json.loads((tmp_path / "me.json").read_text())
    rep = json.loads((tmp_path / "r.json").read_text())
    res = data["results"]
    assert {"norm1", "norm1_out", "conv1", "conv1_out", "pool1_out"} <= set(res)
    lrn = next(lr for lr in rep["layers"] if lr["caffe_layer"] == "norm1")
    assert res["norm1"] == res["norm1_out"] == {"value": round(lrn["chained"]["bound_ratio"], 6), "bgColor": FAILED}
    assert res["norm1"]["value"] > 1 and all(res[n]["value"] < 1 for n in ("conv1", "pool1"))
    assert [t["value"] for t in data["thresholds"]] == [0.5, 1]


def test_model_explorer_is_refused_with_a_dataset(tmp_path, capsys, monkeypatch):
    net, _ = seeded_net(CONV_NET, tmp_path, seed=0)
    np.savez(tmp_path / "d.npz", data=np.zeros((2, 3, 14, 11), np.float32))
    monkeypatch.chdir(tmp_path)
    rc = main(["check", "net.prototxt", "--dataset", "d.npz", "--model-explorer", "me.json"])
    assert rc == 2
    one_error_line(capsys.readouterr().err, ["--model-explorer is not supported with --dataset"])
    assert not (tmp_path / "me.json").exists()


def test_describe_lists_the_nodes_in_graph_order_as_the_report_names_them(tmp_path):
    from harness.compare.artefacts.kinds import open_kind
    from harness.compare.artefacts.onnx import describe

    net, _ = seeded_net(BN_NET, tmp_path)
    h = open_kind("onnx", export(net, tmp_path / "m.onnx"))
    assert describe(h) == [("conv1", "Conv"), ("bn1", "BatchNormalization"), ("relu1", "Relu"),
                           ("ip1_flatten", "Flatten"), ("ip1", "Gemm")]
    rep = check_artefact("onnx", net, tmp_path / "m.onnx")
    assert {lr.keras_layer.split("/")[0] for lr in rep.layers} <= {k for k, _ in describe(h)}
