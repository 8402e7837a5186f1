"""The Caffe side of the corpus is the trained MTCNN: the harness's reference on our det1/det2/det3 prototxts and
.npz weights equals an independent torch forward of the facenet state dict, on real photographs."""

from __future__ import annotations

import numpy as np
import pytest

import _p7_mtcnn as M


@pytest.mark.parametrize("net", ["pnet", "pnet40", "rnet", "onet"])
def test_reference_matches_torch(nets, net):
    import harness

    proto, w, x = nets[net]
    ref = harness.forward(harness.load_net(proto, weights=w, input_shapes={"data": x.shape}), {"data": x})
    torch_out = M.torch_forward(net[:4], x)
    for blob, want in torch_out.items():
        got = ref[f"{blob}/{blob}"]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * max(1.0, np.abs(want).max()))


def test_trained_weights_see_a_face(nets):
    """R-Net and O-Net give her face crop a high face probability and the cap crop a low one: real weights."""
    import harness

    for net in ("rnet", "onet"):
        proto, w, x = nets[net]
        net_ = harness.load_net(proto, weights=w, input_shapes={"data": x.shape})
        prob = harness.forward(net_, {"data": x})["prob1/prob1"][:, 1]
        assert prob[0] > 0.99 and prob[1] < 0.1, (net, prob)


def test_pnet_ceil_rounding_shapes(nets):
    """P-Net at 27 x 35: pool1 rounds up (13 x 17, floor would be 12 x 16); at 40 x 31: 19 x 15."""
    import harness

    for key, want in (("pnet", (2, 10, 13, 17)), ("pnet40", (2, 10, 19, 15))):
        proto, w, x = nets[key]
        ref = harness.forward(harness.load_net(proto, weights=w, input_shapes={"data": x.shape}), {"data": x})
        assert ref["pool1/pool1"].shape == want
