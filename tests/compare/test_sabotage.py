"""Sabotage tests: hand-written Keras ports of one small Caffe net, each with exactly one classic porting bug.

For every bug the check must fail, name the right first divergent Caffe layer and rank the right cause first; the
correct port passes.  Two routes:

* direct: each port stage (the Keras layers computing one Caffe layer or fused span) is run in isolation on the
  reference's inputs here, and :func:`harness.compare.diagnose.diagnose` is called on the first stage that diverges;
* comparator: :func:`harness.compare.compare` on the whole Keras model (the route users take): matching, chained and
  isolated runs, tolerance, first divergence, and the diagnosis it asks for.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import support.sabotage as kit  # noqa: E402
from support import to_keras  # noqa: E402

from harness.compare.diagnose import CAUSES, Cause, diagnose  # noqa: E402
from harness.reference import forward  # noqa: E402

REL_TOL = 1e-5  # float32 work on these small layers lands near 1e-7 of the blob's scale


@pytest.fixture(scope="module")
def net():
    return kit.net()


@pytest.fixture(scope="module")
def data():
    return kit.inputs()


@pytest.fixture(scope="module")
def records(net, data):
    return forward(net, data)


def _bottom_values(net, data, records, layer_name):
    """The reference values of ``layer_name``'s bottoms just before it ran (in-place layers rewrite a blob)."""
    env = {k: np.asarray(v, np.float64) for k, v in data.items()}
    for lay in net.layers:
        if lay.name == layer_name:
            return [env[b] for b in lay.bottoms]
        if lay.kind == "Input":
            continue
        for top, key in zip(lay.tops, lay.keys()):
            env[top] = np.asarray(records[key], np.float64)
    raise KeyError(layer_name)


def _isolated(net, data, records, port):
    """Per stage, lazily: (caffe span, Keras layers, bottoms, reference output, Keras output in isolation)."""
    for names, layers in port.stages:
        xs = _bottom_values(net, data, records, names[0])
        ref = np.asarray(records[net.layer(names[-1]).keys()[0]], np.float64)
        ker = kit.run_stage(layers, xs[0])
        yield names, layers, xs, ref, ker


def _diverges(ref, ker):
    if ref.shape != ker.shape:
        return True
    return float(np.max(np.abs(ker - ref))) > REL_TOL * max(float(np.max(np.abs(ref))), 1e-30)


def test_correct_port_passes_every_stage(net, data, records):
    port = kit.build_port(None)
    for names, _, _, ref, ker in _isolated(net, data, records, port):
        assert not _diverges(ref, ker), f"stage {names} of the correct port diverges"
    # and chained, end to end
    y = np.asarray(port.model(to_keras(data["data"])), np.float64)
    np.testing.assert_allclose(y, records["prob/prob"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bug", sorted(kit.BUGS))
def test_sabotage_direct(bug, net, data, records):
    want_layer, want_cause = kit.BUGS[bug]
    port = kit.build_port(bug)
    stages = _isolated(net, data, records, port)
    first = next(s for s in stages if _diverges(s[3], s[4]))
    names, layers, xs, ref, ker = first
    assert names[0] == want_layer, f"{bug}: first divergent stage is {names}, expected {want_layer}"
    chain = [net.layer(n) for n in names[1:]]
    causes = diagnose(net.layer(names[0]), layers, xs, ref, ker, context={"chain": chain})
    assert causes and all(isinstance(c, Cause) for c in causes)
    assert all(c.cause in CAUSES for c in causes)
    assert [c.confidence for c in causes] == sorted((c.confidence for c in causes), reverse=True)
    top = causes[0]
    assert top.cause == want_cause, f"{bug}: ranked {[(c.cause, c.confidence) for c in causes[:3]]}"
    assert top.confidence >= 0.5, top
    assert top.fix and top.explanation
    if bug not in ("reduced_precision", "foreign_weights") and ker.shape == ref.shape:
        assert top.confidence >= 0.9, top  # the hypothesis reproduces the Keras output


@pytest.mark.parametrize("bug", [None, *sorted(kit.BUGS)])
def test_sabotage_compare(bug, net, data):
    from harness.compare import compare

    port = kit.build_port(bug)
    report = compare(net, port.model, data)
    if bug is None:
        assert report, "the correct port must pass"
        assert report.first_divergence is None
        return
    want_layer, want_cause = kit.BUGS[bug]
    assert not report, f"{bug}: the sabotaged port passed"
    fd = report.first_divergence
    assert fd is not None
    # A Keras layer that computes several Caffe layers (Conv2D(activation="relu") = conv1 + relu1, one
    # BatchNormalization = bn1 + scale1) is one pair; the layer that introduced the error is the first of its span.
    seg = next((tuple(lr.segment) for lr in report.layers if lr.key == fd.key and lr.segment), (fd.caffe_layer,))
    assert fd.caffe_layer in seg
    assert seg[0] == want_layer, f"{bug}: first divergence at {seg}, expected {want_layer}"
    assert fd.diagnosis, f"{bug}: no diagnosis"
    got = fd.diagnosis[0]
    code = got["cause"] if isinstance(got, dict) else got.cause
    assert code == want_cause, f"{bug}: ranked {fd.diagnosis[:3]}"
