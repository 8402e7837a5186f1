"""Artefacts made by real third-party converters (issue 20, "How we know"): each small Caffe net of _nets.py with
seeded weights goes through caffe2onnx -> ONNX (restamped for onnxruntime), then onnx2tf -> SavedModel and float32
.tflite, and ``caffe-harness check NET --weights W`` judges each artefact (``--onnx``, ``--saved-model``,
``--tflite``) and the whole chain in one run.

* A correct conversion is EQUIVALENT with pairing coverage (records paired / records) >= 95% on every kind.
* A deliberate bug edited into caffe2onnx's ONNX graph (_nets.BUGS), converted on down the chain, is NOT EQUIVALENT
  on every kind, the first divergence naming the edited Caffe layer with the cause code the README lists.
* caffe2onnx's own BatchNorm bug (variance divided by ``s + 1e-5``; net ``bn_drift``, three BatchNorms) is named at
  bn1, where it starts, never explained as rounding nor "fixed" by a wider tolerance.
* The chain in one run (``--onnx a.onnx --saved-model DIR --tflite m.tflite``, JSON ``stages``) says the ONNX stage
  introduced the divergence and the later stages add nothing.

``--onnx`` and the chain are written against issue 20's spec (items 4 and 5) before the harness has them.
The plain net and its pooling bug run by default (about 60-95 s with the rest of the default ports6 tests on the
shared 2-core machine, most of it the two onnx2tf conversions and TensorFlow's start-up); the other nets are marked
slow (each onnx2tf conversion costs 10-20 s, each check 1-20 s; the whole ports6 suite about 12 minutes).
"""

from __future__ import annotations

import re

import pytest

from . import _judge as J
from . import _nets as N

KINDS = J.KINDS
DEFAULT_CASES = {"plain", "pool_floor"}


def _param(case: str):
    return pytest.param(case, id=case, marks=() if case in DEFAULT_CASES else pytest.mark.slow)


CORRECT = [_param(c) for c in ("plain", "bn", "lrn", "res")]
BUGGY = [_param(b) for b in N.BUGS]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", CORRECT)
def test_correct_conversion_is_equivalent(corpus, check, case, kind):
    J.assert_equivalent(*J.check_kind(corpus, check, case, kind), kind)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", BUGGY)
def test_edited_bug_is_named_at_its_layer(corpus, check, case, kind):
    _, layer, cause, _ = N.BUGS[case]
    J.assert_named(*J.check_kind(corpus, check, case, kind), layer, cause)


def _assert_named_where_it_starts(rc, rep, err):
    msg = J.summary(rc, rep, err)
    assert rc == 1 and rep is not None and rep["equivalent"] is False, msg
    fd = rep["first_divergence"]
    assert fd["caffe_layer"] == "bn1", msg
    for d in fd["diagnosis"]:
        assert d["cause"] != "reduced_precision", msg
        assert not J.WIDER_TOLERANCE.search(d.get("fix") or ""), f"a wider tolerance offered as the fix: {d}"
    return fd


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_compounding_batchnorm_bug_is_named_where_it_starts(corpus, check, kind):
    fd = _assert_named_where_it_starts(*J.check_kind(corpus, check, "bn_drift", kind))
    # The error is BatchNorm's (a variance divided by s + 1e-5): bn_scale_factor, the factor blob misused, whose
    # hypothesis re-runs bn1 that way -- also where onnx2tf / TFLite fold bn1 into conv1's tensor (a span).
    top = fd["diagnosis"][0]
    assert top["cause"] == "bn_scale_factor" and top["confidence"] >= 0.9 and "1e-05" in top["explanation"], fd


# The case parameter of the tests below lets the session fixture build the artefacts in one batch.
@pytest.mark.slow
@pytest.mark.parametrize("case", ["bn_drift"])
def test_chain_names_the_onnx_stage_for_the_batchnorm_drift(corpus, check, case):
    rc, rep, err = J.check_chain(corpus, check, case)
    _assert_named_where_it_starts(rc, rep, err)
    stages = J.stages_by_kind(rep)
    assert "bn1" in J.layer_names(stages["onnx"]["introduced"]), J.summary(rc, rep, err)


@pytest.mark.parametrize("case", BUGGY)
def test_chain_says_which_stage_introduced_the_bug(corpus, check, case):
    _, layer, _, _ = N.BUGS[case]
    rc, rep, err = J.check_chain(corpus, check, case)
    msg = J.summary(rc, rep, err)
    assert rc == 1 and rep is not None and rep["equivalent"] is False, msg
    stages = J.stages_by_kind(rep)
    assert list(stages) == KINDS, msg
    assert all(s["equivalent"] is False for s in stages.values()), msg
    assert layer in J.layer_names(stages["onnx"]["first_divergence"]), msg
    assert layer in J.layer_names(stages["onnx"]["introduced"]), msg
    for later in ("saved_model", "tflite"):
        assert layer not in J.layer_names(stages[later]["introduced"]), msg
        assert layer in J.layer_names(stages[later]["first_divergence"]), msg


@pytest.mark.parametrize("case", CORRECT)
def test_chain_of_a_correct_conversion_is_equivalent_at_every_stage(corpus, check, case):
    rc, rep, err = J.check_chain(corpus, check, case)
    msg = J.summary(rc, rep, err)
    assert rc == 0 and rep is not None and rep["equivalent"] is True, msg
    stages = J.stages_by_kind(rep)
    assert list(stages) == KINDS, msg
    for kind, s in stages.items():
        assert s["equivalent"] is True and not J.layer_names(s["introduced"]), msg
        J.assert_coverage(s, f"stage {kind}: {msg}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", [_param("pool_floor")])
def test_verdict_header_and_detail_name_the_same_layer(corpus, check, case, kind):
    """Issue 20 item 2: where a shape change cuts the pairing, the header and the FAIL line under it name one layer."""
    rc, out, err = check.text(N.case_key(case)[0], J.FLAG[kind], corpus.artefact(case, kind))
    header = re.search(r"First divergent layer: Caffe '([^']+)'", out)
    detail = re.search(r"^\s+(\S+) \[(?:chained|isolated)\]: FAIL", out, re.M)
    assert rc == 1 and header and detail, (rc, out[-3000:], err[-1000:])
    assert header.group(1) == detail.group(1) == N.BUGS[case][1], out[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["bn_drift"])
def test_the_batchnorm_drift_fix_applied_to_the_onnx_file_makes_it_equivalent(corpus, check, case, tmp_path):
    """The fix text says: replace the BatchNormalization's variance input by blobs[1] / blobs[2].  Applied to every
    BatchNorm of caffe2onnx's file (in the net's order), the check passes."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(corpus.artefact(case, "onnx")))
    bns = [lay for lay in N.caffe_net("bn_drift").layers if lay.type == "BatchNorm"]
    nodes = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    assert len(nodes) == len(bns) == 3
    inits = {t.name: t for t in model.graph.initializer}
    for node, lay in zip(nodes, bns):
        var = np.asarray(lay.blobs[1], np.float64) / float(lay.blobs[2][0])
        old = numpy_helper.to_array(inits[node.input[4]])
        assert old.shape == var.shape and np.max(np.abs(old / var - 1)) > 1e-6  # the drift is there
        inits[node.input[4]].CopyFrom(numpy_helper.from_array(var.astype(np.float32), node.input[4]))
    fixed = tmp_path / "bn_drift_fixed.onnx"
    onnx.save(model, str(fixed))
    J.assert_equivalent(*check("bn_drift", "--onnx", fixed), "onnx")
