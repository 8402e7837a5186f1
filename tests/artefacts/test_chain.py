"""Several artefacts in one run (``check NET --onnx a.onnx --saved-model DIR --tflite m.tflite``, or a manifest
naming them): each stage judged against the same reference, and each divergence put down to the first stage where
it appears.  The stages are written at test time from one seeded net: the ONNX by tests/artefacts/onnx_kit.py, the
SavedModel and the ``.tflite`` from the harness's conversion with the same BatchNorm epsilon bug edited in (a chain
whose first stage made the bug carries it) or not."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

from harness.cli import main  # noqa: E402
from harness.compare.artefacts.chain import check_chain  # noqa: E402

from .onnx_kit import BN_NET, export, seeded_net  # noqa: E402


def _keras(net, eps=None):
    """The harness's conversion of ``net``, its BatchNormalization's epsilon set to ``eps`` when given."""
    from harness.convert import convert

    model = convert(net)
    if eps is not None:
        bn = [lay for lay in model.layers if type(lay).__name__ == "BatchNormalization"]
        assert len(bn) == 1
        bn[0].epsilon = eps
    return model


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """{name: path} of the ONNX, SavedModel and .tflite stages of the BN net (seed 0, as the CLI seeds it), each
    correct ("ok") and with the BatchNorm epsilon bug ("bug")."""
    from harness.convert.export import tflite_bytes

    d = tmp_path_factory.mktemp("chain")
    net, _ = seeded_net(BN_NET, d, seed=0)
    out = {"net": d / "net.prototxt"}
    for tag, bug, eps in (("ok", None, None), ("bug", "bn_epsilon", 1e-3)):
        out[f"onnx_{tag}"] = export(net, d / f"{tag}.onnx", bug)
        model = _keras(net, eps)
        model.export(str(d / f"sm_{tag}"), format="tf_saved_model", verbose=False)
        out[f"sm_{tag}"] = d / f"sm_{tag}"
        if tag == "bug":
            (d / "bug.tflite").write_bytes(tflite_bytes(model))
            out["tflite_bug"] = d / "bug.tflite"
    return out


def test_a_bug_of_the_first_stage_is_put_down_to_it_the_later_stages_add_nothing(stages):
    rep = check_chain([("tflite", stages["tflite_bug"]), ("onnx", stages["onnx_bug"]),
                       ("saved_model", stages["sm_bug"])], stages["net"])
    assert not rep.equivalent
    assert [s["kind"] for s in rep.stages] == ["onnx", "saved_model", "tflite"]  # chain order, whatever was given
    assert [s["equivalent"] for s in rep.stages] == [False, False, False]
    assert [s["introduced"] for s in rep.stages] == [["bn1"], [], []]
    assert all(s["first_divergence"] == "bn1" for s in rep.stages)
    assert rep.artefact["kind"] == "onnx" and rep.artefact["stage"] == "onnx"  # the stage that introduced it
    assert rep.first_divergence.caffe_layer == "bn1" and rep.first_divergence.diagnosis[0].cause == "bn_epsilon"
    text = rep.verdict()
    assert (f"'bn1' drifts from the onnx stage ({str(stages['onnx_bug'])!r}) on; the saved_model and tflite stages "
            f"add nothing.") in text


def test_a_bug_of_a_later_stage_is_put_down_to_that_stage(stages):
    rep = check_chain([("onnx", stages["onnx_ok"]), ("saved_model", stages["sm_bug"])], stages["net"])
    assert [(s["kind"], s["equivalent"], s["introduced"]) for s in rep.stages] == [
        ("onnx", True, []), ("saved_model", False, ["bn1"])]
    assert rep.artefact["kind"] == "saved_model"
    assert f"'bn1' drifts from the saved_model stage ({str(stages['sm_bug'])!r}) on." in rep.verdict()


def test_check_with_several_artefacts_writes_stages_in_json_junit_and_html(stages, tmp_path, capsys):
    rc = main(["check", str(stages["net"]), "--onnx", str(stages["onnx_ok"]), "--saved-model", str(stages["sm_ok"]),
               "--json", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml"), "--html",
               str(tmp_path / "r.html"), "--no-table"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert [(s["kind"], s["equivalent"], s["introduced"]) for s in rep["stages"]] == [
        ("onnx", True, []), ("saved_model", True, [])]
    assert rep["stages"][0]["coverage"]["ratio"] == 1.0
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "r.xml").getroot().iter("testcase")}
    assert "stage onnx" in cases and "stage saved_model" in cases
    assert cases["stage onnx"].find("failure") is None
    assert "Stages (chain order): onnx" in (tmp_path / "r.html").read_text()
    assert "Stages (chain order): onnx" in out


def test_a_manifest_naming_several_artefacts_judges_the_chain(stages, tmp_path):
    from harness.manifest import artefact_kind, prepare, read_checks, resolve, run_check

    m = tmp_path / "caffe-equivalence.toml"
    m.write_text(f'prototxt = "{stages["net"]}"\nonnx = "{stages["onnx_bug"]}"\nsaved_model = "{stages["sm_bug"]}"\n')
    check = resolve(read_checks(m)[0], m)
    assert artefact_kind(check) == "chain"
    rep = run_check(prepare(check), check)
    assert [s["introduced"] for s in rep.stages] == [["bn1"], []]


def test_a_bad_file_in_the_chain_is_refused_before_anything_runs(stages, tmp_path, capsys):
    (tmp_path / "bad.onnx").write_bytes(b"")
    rc = main(["check", str(stages["net"]), "--onnx", str(tmp_path / "bad.onnx"), "--saved-model",
               str(stages["sm_ok"]), "--json", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.onnx" in err and not (tmp_path / "r.json").exists()
