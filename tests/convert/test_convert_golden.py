"""Converter core: every golden real-Caffe case converted as a whole net; every mapped intermediate and every output
must match Caffe's own float32 blobs (tolerance rule in _core_kit).  Caffe's inserted Split copies are the only keys
the converted model does not reproduce (they are not in the prototxt)."""

from __future__ import annotations

import pytest

import support.converted as K
from support import assert_blob_close, golden, golden_cases, max_rel_err

CASES = golden_cases()


@pytest.fixture(scope="module")
def converted():
    """Each golden case converted once per module (conversion and the first call dominate the runtime)."""
    import harness.convert as hc

    out = {}
    for case in CASES:
        net, blobs, inputs = golden(case)
        model = hc.convert(net)
        out[case] = (net, blobs, inputs, model, K.run_keys(model, inputs))
    return out


def test_all_golden_cases_present():
    assert len(CASES) >= 17, CASES


@pytest.mark.parametrize("case", CASES)
def test_golden_every_mapped_key(converted, case):
    net, blobs, inputs, model, got = converted[case]
    mp = model.harness_mapping
    expected = [k for k in blobs if "_split/" not in k]
    missing = [k for k in expected if k not in mp["keys"]]
    assert not missing, f"{case}: keys without a Keras tensor: {missing}"
    worst = 0.0
    for k in expected:
        worst = max(worst, assert_blob_close(got[k], blobs[k], f"{case} {k}", rtol=K.REL_TOL))
    assert worst < K.REL_TOL


@pytest.mark.parametrize("case", CASES)
def test_golden_outputs_named_and_ordered(converted, case):
    net, blobs, inputs, model, _ = converted[case]
    out = K.predict(model, inputs)
    assert list(out) == list(net.outputs)
    last_writer = {}
    for lay in net.layers:
        for t in lay.tops:
            last_writer[t] = f"{lay.name}/{t}"
    for blob_name, y in out.items():
        assert_blob_close(y, blobs[last_writer[blob_name]], f"{case} output {blob_name}", rtol=K.REL_TOL)


@pytest.mark.parametrize("case", CASES)
def test_golden_naming_contract(converted, case):
    """Each Caffe layer's top comes from the Keras layer of the same name ('/' -> '.'), inputs from InputLayers
    named after the blobs; helper layers are '<layer>__<suffix>'."""
    net, _, _, model, _ = converted[case]
    mp = model.harness_mapping
    names = {lay.name for lay in model.layers}
    caffe = {lay.name.replace("/", ".") for lay in net.layers if lay.kind != "Input"}
    inputs = {b.replace("/", ".") for b in net.inputs}
    for lay in net.layers:
        for top, k in zip(lay.tops, lay.keys()):
            want = (top if lay.kind == "Input" else lay.name).replace("/", ".")
            assert mp["keys"][k]["layer"] == want, (k, mp["keys"][k])
    for n in names - caffe - inputs:
        base, sep, _ = n.partition("__")
        assert sep and base in caffe, f"{case}: Keras layer {n!r} is neither a Caffe layer nor a helper"


def test_golden_deconv_is_not_flipped(converted):
    """Caffe deconvolution = conv backward (no kernel flip relative to Conv2DTranspose): a flipped kernel must fail
    the golden comparison, so the test above can fail."""
    import harness.convert as hc

    net, blobs, inputs, model, _ = converted["deconv"]
    key = "deconv_g2/deconv_g2"
    lay = model.get_layer("deconv_g2")
    k, b = lay.get_weights()
    try:
        lay.set_weights([k[::-1, ::-1].copy(), b])
        bad = K.run_keys(model, inputs, [key])[key]
    finally:
        lay.set_weights([k, b])
    assert max_rel_err(bad, blobs[key]) > 1e-2
    assert hc.mapping_of(model) is model.harness_mapping
