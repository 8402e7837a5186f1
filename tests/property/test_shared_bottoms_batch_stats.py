"""Properties (issue 15): random shared-weight Convolution/Deconvolution layers over 2-3 bottoms, and random
``use_global_stats: false`` BatchNorm layers with N > 1 and distinct N, C, H, W.

* reference invariant: top ``i`` of a shared-weight layer is the one-bottom layer on bottom ``i``; the batch-statistics
  BatchNorm leaves every channel with mean 0 and biased variance ``var / (var + eps)``;
* the converted Keras model computes every record the reference computes (float32 tolerance of _props).
The strategies are local (harness/strategies.py is not changed here)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.caffe import load_net_text
from harness.reference import forward
from harness.weights import random_weights
from support import input_layers

from ._props import compare_records, convert, examples, keras_records, record_scales


@st.composite
def distinct_nchw(draw, min_n: int = 1):
    dims = draw(st.lists(st.integers(min_n, 9), min_size=4, max_size=4, unique=True)
                .filter(lambda d: d[0] >= min_n and d[2] >= 3 and d[3] >= 3))
    return tuple(dims)


@st.composite
def shared_conv_cases(draw):
    n, c, h, w = draw(distinct_nchw())
    deconv = draw(st.booleans())
    k = (draw(st.integers(1, min(3, h))), draw(st.integers(1, min(3, w))))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = (draw(st.integers(0, k[0] - 1)), draw(st.integers(0, k[1] - 1)))
    group = draw(st.sampled_from([g for g in (1, c) if c % g == 0]))
    num_output = group * draw(st.integers(1, 3))
    bottoms = draw(st.integers(2, 3))
    names = "abc"[:bottoms]
    params = (f"num_output: {num_output} kernel_h: {k[0]} kernel_w: {k[1]} stride_h: {stride[0]} "
              f"stride_w: {stride[1]} pad_h: {pad[0]} pad_w: {pad[1]} group: {group} "
              f"bias_term: {str(draw(st.booleans())).lower()}")
    text = input_layers({b: (n, c, h, w) for b in names})
    text += (f'layer {{ name: "conv" type: "{"Deconvolution" if deconv else "Convolution"}" '
             + "".join(f'bottom: "{b}" ' for b in names) + "".join(f'top: "y{b}" ' for b in names)
             + f"convolution_param {{ {params} }} }}\n")
    seed = draw(st.integers(0, 2**16))
    return text, {b: (n, c, h, w) for b in names}, seed


def _inputs(shapes, seed):
    rng = np.random.default_rng(seed)
    return {b: rng.standard_normal(s) * (1 + i) + i for i, (b, s) in enumerate(shapes.items())}


def _check_converted(net, feed) -> None:
    ref = forward(net, feed)
    got = keras_records(convert(net), net, {k: v.astype(np.float32) for k, v in feed.items()})
    assert set(ref) <= set(got), set(ref) - set(got)
    problems = compare_records(ref, got, scales=record_scales(net, ref))
    assert not problems, problems


@settings(max_examples=examples(0.5))
@given(shared_conv_cases())
def test_shared_weight_layer_is_the_one_bottom_layer_per_bottom_and_converts(case):
    text, shapes, seed = case
    net = random_weights(load_net_text(text), seed)
    feed = _inputs(shapes, seed)
    rec = forward(net, feed)
    lay = net.layer("conv")
    for b in shapes:
        single = load_net_text(_one_bottom(text, b, shapes), {"conv": list(lay.blobs)})
        want = forward(single, {b: feed[b]})[f"conv/y{b}"]
        np.testing.assert_array_equal(rec[f"conv/y{b}"], want)
    _check_converted(net, feed)


def _one_bottom(text: str, b: str, shapes) -> str:
    head, conv = text.split('layer { name: "conv"')
    inputs = [ln for ln in head.splitlines() if f'name: "{b}"' in ln]
    for other in shapes:
        conv = conv.replace(f'bottom: "{other}" ', "" if other != b else f'bottom: "{b}" ')
        conv = conv.replace(f'top: "y{other}" ', "" if other != b else f'top: "y{b}" ')
    return "\n".join(inputs) + '\nlayer { name: "conv"' + conv


@st.composite
def batch_stats_cases(draw):
    n, c, h, w = draw(distinct_nchw(min_n=2))
    eps = draw(st.sampled_from([None, 1e-3, 0.1, 2.0]))
    extra = "" if eps is None else f" eps: {eps}"
    text = (input_layers({"data": (n, c, h, w)}) +
            f'layer {{ name: "bn" type: "BatchNorm" bottom: "data" top: "data" batch_norm_param {{ '
            f'use_global_stats: false{extra} }} }}\n')
    return text, (n, c, h, w), 1e-5 if eps is None else eps, draw(st.integers(0, 2**16))


@settings(max_examples=examples(0.5))
@given(batch_stats_cases())
def test_batch_stats_normalise_each_channel_over_n_h_w_and_convert(case):
    text, shape, eps, seed = case
    net = random_weights(load_net_text(text), seed)
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.1, 3.0, shape[1])[None, :, None, None]
    x = rng.standard_normal(shape) * scale + rng.uniform(-2, 2, shape[1])[None, :, None, None]
    y = forward(net, {"data": x})["bn/data"]
    var = x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), var / (var + np.float32(eps)), rtol=1e-10)
    _check_converted(net, {"data": x})
