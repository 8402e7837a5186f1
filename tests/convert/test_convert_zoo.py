"""Converter core on the zoo's real architectures (fixtures/zoo, seeded random weights, batch 1, reduced input sizes
where the net allows): every mapped key of the converted model against the float64 reference.

Tolerance for these deep chains: per key, ``err_keras <= max(1e-5, 8 * err_f32)`` where ``err_x`` is the relative
max error (max|x - ref64| / max|ref64|) and ``err_f32`` that of the reference run in float32 on the same input.
Why: through 20-50 float32 layers rounding accumulates, and Softmax turns the absolute error of large logits into
relative error of the probabilities (VGG16 ``prob``: the float32 reference itself is 1.4e-5 off, Keras 5e-5);
a float32 Caffe would drift the same way.  The converted model must be as close to the exact answer as a faithful
float32 computation, within a small factor; a real conversion bug is orders of magnitude beyond it.
"""

from __future__ import annotations

import numpy as np
import pytest

import support.converted as K
from support import GOLDEN, feed_for, max_rel_err
import harness.convert as hc
from harness.caffe import load_net
from harness.weights import random_weights

ZOO = GOLDEN.parent / "zoo"
NETS = {  # net -> input shape (None: the prototxt's own)
    "lenet": (2, 1, 28, 31),
    "alexnet": (1, 3, 99, 111),
    "vgg16": (1, 3, 64, 72),
    "resnet50": (1, 3, 197, 199),
    "googlenet": (1, 3, 224, 231),
    "squeezenet11": (1, 3, 67, 75),
    "mobilenet_v1": (1, 3, 64, 72),
    "fcn32s_head": None,
}
FACTOR = 8.0


@pytest.mark.parametrize("name", sorted(NETS))
def test_zoo_net_matches_reference(name):
    from harness.reference import forward

    path = ZOO / f"{name}.prototxt"
    if not path.is_file():
        pytest.skip(f"{path} is not in this checkout")
    shape = NETS[name]
    first = load_net(path)
    net = load_net(path, input_shapes={next(iter(first.inputs)): shape} if shape else None)
    net = random_weights(net, seed=1)
    model = hc.convert(net)
    feed = feed_for(net, 0)
    ref64 = forward(net, feed, np.float64)
    ref32 = forward(net, feed, np.float32)
    got = K.run_keys(model, feed)
    expected = [k for k in net.keys()]
    assert sorted(got) == sorted(expected), set(expected) ^ set(got)
    bad = []
    for k in expected:
        e = max_rel_err(got[k], ref64[k])
        allowed = max(K.REL_TOL, FACTOR * max_rel_err(ref32[k], ref64[k]))
        if not e <= allowed:
            bad.append(f"{k}: {e:.3g} > {allowed:.3g}")
    assert not bad, f"{name}: " + "; ".join(bad[:10])
    out = K.predict(model, feed)
    assert list(out) == list(net.outputs)
