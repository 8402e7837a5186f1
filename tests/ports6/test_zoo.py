"""Zoo sizes through the same third-party chain (slow suite): LeNet, SqueezeNet 1.1, AlexNet, MobileNet v1,
GoogLeNet, ResNet-50 and VGG16 (reduced inputs, ResNet-50 and VGG16 reduced widths: _nets.ZOO) converted by
caffe2onnx -> onnx2tf at test time from seeded weights; every correct artefact EQUIVALENT with pairing coverage
>= 95%, a pooling that floors in SqueezeNet and an LRN alpha not divided by n in AlexNet named at their layers with
their causes on every kind, and the chain says the ONNX stage brought them in; caffe2onnx's own BatchNorm drift
(variance / (s + 1e-5) in MobileNet's 27 BatchNorms, seeded s in [0.5, 2]) named at the first BatchNorm, where it
starts, as bn_scale_factor, never as rounding with a wider tolerance for fix.  Run one net at a time
(``-k mobilenet``): each net's conversions take 0.5 to 3 minutes on 2 shared cores."""

from __future__ import annotations

import pytest

from . import _judge as J
from . import _nets as N

pytestmark = pytest.mark.slow


# Known gaps, kept visible (strict: they fail the run once they pass).  None left: GoogLeNet's inception branches,
# which onnx2tf runs in another order than Caffe's, are paired by lineage (each record after its own bottoms'
# tensors) and same-shape branches by their values (pairing._reorder_branches).
KNOWN_GAPS: set[tuple[str, str]] = set()


def _zoo_param(case: str, kind: str):
    gap = pytest.mark.xfail(reason="issue 20: parallel branches run in another order -- position pairing across "
                                   "them", strict=True)
    return pytest.param(case, kind, id=f"{case}-{kind}", marks=[gap] if (case, kind) in KNOWN_GAPS else [])


@pytest.mark.parametrize("case,kind", [_zoo_param(c, k) for c in N.ZOO if c not in N.ZOO_DRIFT for k in J.KINDS])
def test_zoo_conversion_is_equivalent(corpus, check, case, kind):
    J.assert_equivalent(*J.check_kind(corpus, check, case, kind), kind)


@pytest.mark.parametrize("kind", J.KINDS)
@pytest.mark.parametrize("case", list(N.ZOO_BUGS))
def test_zoo_edited_bug_is_named(corpus, check, case, kind):
    _, layer, cause, _ = N.ZOO_BUGS[case]
    J.assert_named(*J.check_kind(corpus, check, case, kind), layer, cause)


@pytest.mark.parametrize("case", list(N.ZOO_BUGS))
def test_zoo_chain_names_the_onnx_stage(corpus, check, case):
    _, layer, _, _ = N.ZOO_BUGS[case]
    rc, rep, err = J.check_chain(corpus, check, case)
    msg = J.summary(rc, rep, err)
    assert rc == 1 and rep is not None and rep["equivalent"] is False, msg
    stages = J.stages_by_kind(rep)
    assert layer in J.layer_names(stages["onnx"]["introduced"]), msg
    assert not any(layer in J.layer_names(stages[k]["introduced"]) for k in ("saved_model", "tflite")), msg


@pytest.mark.parametrize("kind", J.KINDS)
@pytest.mark.parametrize("case", list(N.ZOO_DRIFT))
def test_zoo_batchnorm_drift_is_named_where_it_starts(corpus, check, case, kind):
    rc, rep, err = J.check_kind(corpus, check, case, kind)
    msg = J.summary(rc, rep, err)
    assert rc == 1 and rep is not None and rep["equivalent"] is False, msg
    fd = rep["first_divergence"]
    assert fd["caffe_layer"] == N.ZOO_DRIFT[case], msg
    assert fd["diagnosis"][0]["cause"] == "bn_scale_factor", msg
    for d in fd["diagnosis"]:
        assert not J.WIDER_TOLERANCE.search(d.get("fix") or ""), f"a wider tolerance offered as the fix: {d}"
