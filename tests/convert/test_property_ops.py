"""Converter B property tests: random single layers from :mod:`harness.strategies` (distinct axis sizes, axis
variants, negative inputs) converted by :func:`harness.convert.convert` and compared, top by top, with the float64
NumPy reference (tolerance rule: tests/convert/_kit.py).  Example counts are small to keep the suite fast."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import support.converted as K
from support import assert_blob_close, to_keras
from harness.strategies import STRATEGIES, layer_case

B_TYPES = sorted(t for t in (
    "ReLU", "ReLU6", "PReLU", "ELU", "Sigmoid", "TanH", "AbsVal", "BNLL", "Power", "Exp", "Log", "Threshold", "Clip",
    "Swish", "Dropout", "Softmax", "Concat", "Slice", "Split", "Flatten", "Reshape", "Crop", "Permute", "Tile",
    "ShuffleChannel", "Eltwise", "Axpy", "Reduction", "ArgMax", "Upsample", "Interp", "PriorBox", "DetectionOutput",
) if t in STRATEGIES)


def _all_mapped(model):
    from harness.convert import mapping_of

    m = mapping_of(model)
    keys, outs = [], []
    for k, e in m["keys"].items():
        o = model.get_layer(e["layer"]).output
        if isinstance(o, (list, tuple)):
            o = o[e["index"]]
        keys.append((k, e["layout"]))
        outs.append(o)
    return m, keys, keras.Model(model.inputs, outs)


@pytest.mark.parametrize("caffe_type", B_TYPES)
def test_random_layer_matches_reference(caffe_type):
    from harness.convert import convert
    from harness.reference import forward

    @settings(max_examples=4, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(layer_case(caffe_type, max_side=8, max_channels=6, max_batch=2))
    def check(case):
        net = case.load()
        ref = forward(net, case.inputs, dtype=np.float64)
        model = convert(net)
        m, keys, sub = _all_mapped(model)
        feed = [to_keras(case.inputs[b]) for b in m["inputs"]]
        ys = sub(feed)
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        checked = 0
        for (k, layout), y in zip(keys, ys):
            if k not in ref or k.split("/")[0] in net.inputs:
                continue
            y = keras.ops.convert_to_numpy(y)
            y = y.transpose(0, 3, 1, 2) if layout == "nhwc" and y.ndim == 4 else y
            assert_blob_close(y, ref[k], f"{caffe_type} {k}\n{case.to_prototxt()}", rtol=K.REL_TOL)
            checked += 1
        assert checked >= 1

    check()
