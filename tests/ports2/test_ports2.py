"""Independent hand-written ports (tests/ports2/_ports2.py): correct ports are equivalent in every style; each
classic bug, alone or with others, is named at the right Caffe layer with the right top cause, its fix carries
Caffe's numbers, and applying the fix makes that layer pass."""

from __future__ import annotations

import re

import pytest

import _ports2 as P
from harness.compare import compare

STYLES = ["seq", "func", "nested", "nchw"]


def _report(model, which="alpha", scale=1.0):
    return compare(P.net(which), model, P.inputs(which, scale))


def _observed(report):
    items = ([report.first_divergence] if report.first_divergence else []) + list(report.divergences)
    return [(d.caffe_layer, d.diagnosis[0].cause if d.diagnosis else None) for d in items]


def _layer_passes(report, caffe_layer):
    rows = [lr for lr in report.layers if lr.caffe_layer == caffe_layer or caffe_layer in lr.segment]
    assert rows, f"{caffe_layer} not compared: {[lr.caffe_layer for lr in report.layers]}"
    return all(lr.isolated is not None and lr.isolated.passed and lr.passed for lr in rows)


def _num(pattern, text):
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in fix: {text}"
    return float(m.group(1))


# --------------------------------------------------------------------------------------------- correct ports
@pytest.mark.parametrize("style", STYLES)
def test_correct_port_is_equivalent(style):
    r = _report(P.alpha_model(style))
    assert r.equivalent, r.table()
    assert r.first_divergence is None and not r.divergences


def test_correct_port_with_own_lrn_layer_is_equivalent():
    r = _report(P.beta_model(), "beta")
    assert r.equivalent, r.table()


def test_correct_port_equivalent_at_large_activations():
    """ReLU6-sized activations (inputs x4): the correct port still passes (the clipping tests rely on this scale)."""
    r = _report(P.alpha_model("func"), scale=4.0)
    assert r.equivalent, r.table()


# --------------------------------------------------------------------------------------------- one bug each
def _drop(key):
    def apply(fix, cfg):
        cfg = dict(cfg)
        cfg.pop(key)
        return cfg
    return apply


def _fix_eps(fix, cfg):
    return {**cfg, "eps": _num(r"epsilon\s*=\s*([0-9.eE+-]+)", fix)}


def _fix_slope(fix, cfg):
    return {**cfg, "relu3_slope": _num(r"(?:negative_slope|alpha)\s*=\s*([0-9.eE+-]+)", fix)}


def _fix_lrn_alpha(fix, cfg):
    # "alpha=0.5 / 3 = 0.166667": the value is the last number of the expression
    m = re.search(r"alpha\s*=\s*([^a-z]*)", fix)
    assert m, fix
    return {**cfg, "lrn_alpha": float(re.findall(r"[0-9.]+(?:e-?[0-9]+)?", m.group(1))[-1])}


# (id, model, cfg, input scale, expected layer, expected cause, substrings of the fix, apply(fix, cfg) -> cfg)
SINGLE = [
    ("kernel_reshaped", "seq", {"conv1": "kernel_reshaped"}, 1, "conv1", "kernel_reshaped",
     ["transpose(2, 3, 1, 0)"], _drop("conv1")),
    ("kernel_flipped", "func", {"conv2": "kernel_flipped"}, 1, "conv2", "kernel_flipped",
     ["::-1"], _drop("conv2")),
    ("channel_order", "nested", {"conv1": "channel_order"}, 1, "conv1", "channel_order",
     [], _drop("conv1")),
    ("same_padding", "func", {"conv1_padding": "same"}, 1, "conv1", "same_padding",
     ["ZeroPadding2D", "valid"], _drop("conv1_padding")),
    ("padding_offset", "nested", {"pool_padding": "offset"}, 1, "pool1", "padding_offset",
     [], _drop("pool_padding")),
    ("flatten_order", "func", {"fc1": "flatten_order"}, 1, "fc1", "flatten_order",
     [], _drop("fc1")),
    ("dense_reshaped", "seq", {"fc2": "dense_reshaped"}, 1, "fc2", "dense_reshaped",
     [".T"], _drop("fc2")),
    ("dense_not_transposed", "nested", {"fc3": "dense_not_transposed"}, 1, "fc3", "dense_not_transposed",
     [".T"], _drop("fc3")),
    ("bn_scale_factor", "nchw", {"bn1": "bn_scale_factor"}, 1, "bn1", "bn_scale_factor",
     ["1.10161", "blobs[2]"], _drop("bn1")),
    ("bn_epsilon", "seq", {"eps": 1e-3}, 1, "bn1", "bn_epsilon",
     ["epsilon=1e-05"], _fix_eps),
    ("bn_scale_split", "func", {"bn1": "bn_scale_split"}, 1, "sc1", "bn_scale_split",
     ["sc1"], _drop("bn1")),
    ("bn_scale_split_stats", "nested", {"bn1": "bn_stats_missing"}, 1, "bn1", "bn_scale_split",
     [], _drop("bn1")),
    ("relu_slope", "nested", {"relu3_slope": 0.3}, 1, "relu3", "relu_slope",
     ["0.1"], _fix_slope),
    ("activation_clipped", "seq", {"relu1": "activation_clipped"}, 4, "relu1", "activation_clipped",
     ["max_value"], _drop("relu1")),
    ("missing_bias", "func", {"fc2": "missing_bias"}, 1, "fc2", "missing_bias",
     [], _drop("fc2")),
    ("missing_bias_conv_nchw", "nchw", {"conv1": "missing_bias"}, 1, "conv1", "missing_bias",
     [], _drop("conv1")),
    ("group_order", "nchw", {"conv2": "group_order"}, 1, "conv2", "group_order",
     [], _drop("conv2")),
    ("lrn_alpha_scaling", "beta", {"lrn_alpha": 0.5}, 1, "norm", "lrn_alpha_scaling",
     ["0.1666"], _fix_lrn_alpha),
    ("concat_order", "beta", {"concat_order": True}, 1, "cat", "concat_order",
     [], _drop("concat_order")),
]

XFAIL: dict[str, str] = {}  # every case passes (bn_scale_split is named at the Scale whose blobs are missing)


def _build(style, cfg):
    return P.beta_model(cfg) if style == "beta" else P.alpha_model(style, cfg)


def _case(c):
    marks = [pytest.mark.xfail(strict=True, reason=XFAIL[c[0]])] if c[0] in XFAIL else []
    return pytest.param(*c[1:], id=c[0], marks=marks)


@pytest.mark.parametrize("style,cfg,scale,layer,cause,fix_has,apply", [_case(c) for c in SINGLE])
def test_single_bug_named_and_fixed(style, cfg, scale, layer, cause, fix_has, apply):
    which = "beta" if style == "beta" else "alpha"
    r = _report(_build(style, cfg), which, scale)
    assert not r.equivalent
    fd = r.first_divergence
    assert fd is not None, r.table()
    assert _observed(r) == [(layer, cause)], (_observed(r), r.table())
    fix = fd.diagnosis[0].fix
    for s in fix_has:
        assert s in fix, fix
    fixed = apply(fix, cfg)
    r2 = _report(_build(style, fixed), which, scale)
    assert _layer_passes(r2, layer), r2.table()
    assert r2.equivalent, r2.table()


# --------------------------------------------------------------------------------------------- several bugs at once
# (id, style, cfg, input scale, [(layer, cause) in execution order], {layer: substring of its fix})
MULTI = [
    ("bn_epsilon+flatten_order", "func", {"eps": 1e-3, "fc1": "flatten_order"}, 1,
     [("bn1", "bn_epsilon"), ("fc1", "flatten_order")],
     {"bn1": "epsilon=1e-05", "fc1": "reshape(9, 8, 4, 3).transpose(2, 3, 1, 0)"}),
    ("same_padding+activation_clipped+missing_bias", "func",
     {"conv1_padding": "same", "relu1": "activation_clipped", "fc2": "missing_bias"}, 4,
     [("conv1", "same_padding"), ("relu1", "activation_clipped"), ("fc2", "missing_bias")],
     {"conv1": "ZeroPadding2D((1, 1))", "relu1": "max_value", "fc2": "blobs[1]"}),
    ("kernel_flipped+relu_slope+dense_not_transposed", "nested",
     {"conv2": "kernel_flipped", "relu3_slope": 0.3, "fc3": "dense_not_transposed"}, 1,
     [("conv2", "kernel_flipped"), ("relu3", "relu_slope"), ("fc3", "dense_not_transposed")],
     {"conv2": "::-1", "relu3": "negative_slope=0.1", "fc3": "W.T"}),
    ("channel_order+bn_scale_factor+dense_reshaped", "nchw",
     {"conv1": "channel_order", "bn1": "bn_scale_factor", "fc2": "dense_reshaped"}, 1,
     [("conv1", "channel_order"), ("bn1", "bn_scale_factor"), ("fc2", "dense_reshaped")],
     {"conv1": "::-1", "bn1": "1.10161", "fc2": "W.T"}),
    ("concat_order+lrn_alpha_scaling", "beta", {"concat_order": True, "lrn_alpha": 0.5}, 1,
     [("cat", "concat_order"), ("norm", "lrn_alpha_scaling")],
     {"cat": "[ca, cb]", "norm": "0.166667"}),
]

_CLEAN = {"eps": 1e-5, "relu3_slope": 0.1, "lrn_alpha": 0.5 / 3}


@pytest.mark.parametrize("style,cfg,scale,expected,fixes", [pytest.param(*c[1:], id=c[0]) for c in MULTI])
def test_several_bugs_each_named_once_in_order(style, cfg, scale, expected, fixes):
    which = "beta" if style == "beta" else "alpha"
    r = _report(_build(style, cfg), which, scale)
    assert _observed(r) == expected, (_observed(r), r.table())
    by_layer = {d.caffe_layer: d for d in [r.first_divergence, *r.divergences]}
    for layer, s in fixes.items():
        assert s in by_layer[layer].diagnosis[0].fix, by_layer[layer].diagnosis[0].fix
    # apply the fixes one at a time, in execution order: each fixed layer passes, the rest still diverge
    keys = list(cfg)
    for i in range(len(keys)):
        partial = {k: (_CLEAN[k] if k in _CLEAN else None) for k in keys[: i + 1]}
        now = {k: v for k, v in {**cfg, **partial}.items() if v is not None}
        r2 = _report(_build(style, now), which, scale)
        assert _observed(r2) == expected[i + 1:], (i, _observed(r2), r2.table())
        assert _layer_passes(r2, expected[i][0]), r2.table()
    assert r2.equivalent
