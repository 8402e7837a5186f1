"""The public strategies themselves: validated options, constructive validity (every draw loads and passes Caffe's
shape rules), the biases they promise, and renderings that replay exactly."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.errors import InvalidArgument

from harness.caffe import load_net, load_net_text
from harness.shapes import infer_shapes
from harness.strategies import (conv_params, layer_case, layer_cases, nchw_shapes, nets,
                                pool_params)

from ._props import examples


@pytest.mark.parametrize("call", [
    lambda: layer_cases(max_side=2),
    lambda: layer_cases(max_channels=0),
    lambda: layer_cases(max_batch=True),
    lambda: layer_cases(["NoSuchLayer"]),
    lambda: layer_cases([]),
    lambda: layer_case("Convolution", max_side=2.5),
    lambda: conv_params(max_kernel=0),
    lambda: conv_params(max_stride=-1),
    lambda: pool_params(methods=("MEDIAN",)),
    lambda: pool_params(methods=()),
    lambda: nchw_shapes(min_side=5, max_side=4),
    lambda: nets(max_layers=0),
    lambda: nets(ops=("conv", "fft")),
    lambda: nets(heads=()),
], ids=["max_side", "max_channels", "bool", "unknown_type", "no_types", "float", "kernel", "stride", "method",
        "no_methods", "min>max", "max_layers", "op", "heads"])
def test_bad_options_fail_when_the_strategy_is_defined(call):
    with pytest.raises(InvalidArgument):
        call()  # no draw needed: validated at definition time


def test_fork_aliases_are_accepted_as_types():
    """A fork's spelling draws the canonical type's layers: a loadable depthwise convolution (group == channels)."""
    from hypothesis import find

    case = find(layer_cases(["DepthwiseConvolution"]), lambda c: True)
    assert case.type == "ConvolutionDepthwise"
    net = case.load()
    assert [lay.kind for lay in net.layers] == ["Input", "ConvolutionDepthwise"]


@settings(max_examples=examples(3.0))
@given(case=layer_cases())
def test_every_drawn_layer_is_valid_caffe(case):
    """Constructive: every draw loads, passes shape inference (Caffe's checks) and declares each input's real shape."""
    net = case.load()
    shapes = infer_shapes(net)
    assert dict(net.inputs) == case.input_shapes
    assert len(shapes.layers) == len(net.layers)
    batch = {v.shape[0] for v in case.inputs.values()}
    assert len(batch) == 1, f"inputs of one case must share the batch size, got {batch}"


@settings(max_examples=examples(1.0))
@given(case=nets())
def test_every_drawn_net_is_valid_caffe(case):
    net = case.load()
    infer_shapes(net)
    assert len(net.layers) == len(case.layers) + len(case.inputs)


@settings(max_examples=examples(1.0))
@given(shape=nchw_shapes(max_batch=2, max_channels=6, max_side=9))
def test_nchw_shapes_have_distinct_sizes(shape):
    assert len(set(shape)) == 4, shape


@settings(max_examples=examples(2.0))
@given(cp=conv_params(max_kernel=5, max_side=9))
def test_conv_params_are_constructive(cp):
    for a in (0, 1):
        assert 0 <= cp.pad[a] < cp.kernel[a]
        assert cp.extent(a) <= 9


@settings(max_examples=examples(2.0))
@given(pp=pool_params())
def test_pool_params_never_place_a_window_past_the_input(pp):
    if pp.kernel is None:
        return
    for a in (0, 1):
        assert pp.pad[a] < pp.kernel[a]
        if pp.pad[a] == 0:
            assert pp.stride[a] <= pp.kernel[a]


BIASES = {
    "Convolution": {"group", "pad_h != pad_w", "dilation", "stride 2, even input, odd kernel"},
    "Pooling": {"ceil != floor", "all-negative MAX input"},
    "LRN": {"LRN within", "LRN k != 1"},
    "BatchNorm": {"BN factor"},
    "Eltwise": {"Eltwise coeff"},
    "Softmax": {"softmax axis"},
    "InnerProduct": {"implicit flatten"},
}


def _traps(case) -> set[str]:
    seen = set()
    lay = case.layers[-1]
    items = dict(lay.params[0][1]) if lay.params else {}
    x = next(iter(case.inputs.values()))
    if case.type == "Convolution":
        if items.get("group", 1) > 1:
            seen.add("group")
        if items.get("pad_h", 0) != items.get("pad_w", 0):
            seen.add("pad_h != pad_w")
        if "dilation" in items:
            seen.add("dilation")
        stride, kernel = items.get("stride", items.get("stride_h")), items.get("kernel_size", items.get("kernel_h"))
        if stride == 2 and x.shape[2] % 2 == 0 and kernel % 2 == 1:
            seen.add("stride 2, even input, odd kernel")
    if case.type == "Pooling" and "global_pooling" not in items:
        k, s = items.get("kernel_size", items.get("kernel_h")), items.get("stride", items.get("stride_h", 1))
        p = items.get("pad", items.get("pad_h", 0))
        if (x.shape[2] + 2 * p - k) % s:
            seen.add("ceil != floor")
        if items.get("pool", "MAX") == "MAX" and x.max() < 0:
            seen.add("all-negative MAX input")
    if case.type == "LRN":
        if items.get("norm_region") == "WITHIN_CHANNEL":
            seen.add("LRN within")
        if items.get("k", 1.0) != 1.0:
            seen.add("LRN k != 1")
    if case.type == "BatchNorm" and float(lay.blobs[2][0]) not in (0.0, 1.0):
        seen.add("BN factor")
    if case.type == "Eltwise" and "coeff" in items:
        seen.add("Eltwise coeff")
    if case.type == "Softmax" and items.get("axis", 1) not in (1, -3):
        seen.add("softmax axis")
    if case.type == "InnerProduct" and x.ndim == 4:
        seen.add("implicit flatten")
    return seen


@pytest.mark.parametrize("caffe_type", sorted(BIASES))
def test_strategies_reach_the_cases_that_break_ports(caffe_type):
    """The biases are real: within 60 derandomized draws of the type, each classic trap shows up."""
    seen: set[str] = set()

    @settings(max_examples=60, derandomize=True, database=None)
    @given(case=layer_case(caffe_type))
    def collect(case):
        seen.update(_traps(case))

    collect()
    assert BIASES[caffe_type] <= seen, f"never drawn: {sorted(BIASES[caffe_type] - seen)}"


@settings(max_examples=examples(0.5))
@given(case=layer_cases(["Convolution", "InnerProduct", "BatchNorm", "Scale", "PReLU", "Deconvolution"]))
def test_written_case_replays_exactly(case, tmp_path_factory):
    """net.prototxt + weights.caffemodel (and weights.npz) + inputs.npz reproduce the drawn case bit for bit."""
    d = case.write(tmp_path_factory.mktemp("case"))
    # (an npz with no arrays at all is refused by the loader, so it is only read back when the case has weights)
    for weights in ("weights.caffemodel", "weights.npz") if case.weights else ("weights.caffemodel",):
        net = load_net(d / "net.prototxt", weights=d / weights)
        for lay in case.layers:
            got = net.layer(lay.name).blobs
            assert len(got) == len(lay.blobs)
            for a, b in zip(got, lay.blobs):
                assert a.shape == b.shape and np.array_equal(a, b)
    with np.load(d / "inputs.npz") as z:
        assert sorted(z.files) == sorted(case.inputs)
        for k, v in case.inputs.items():
            assert np.array_equal(z[k], v)
    assert (d / "net.prototxt").read_text() == case.to_prototxt()
    assert load_net_text(case.to_prototxt(), weights=d / "weights.caffemodel").keys() == case.load().keys()


@settings(max_examples=examples(0.25))
@given(case=layer_case("Pooling"))
def test_the_rendered_prototxt_is_plain_caffe_text(case):
    text = case.to_prototxt()
    assert text.startswith('name: "pool_case"\nlayer {\n  name: "data"\n  type: "Input"')
    assert 'type: "Pooling"' in text and "pooling_param {" in text
    buf = io.StringIO(repr(case))
    assert "LayerCase(" in buf.getvalue() and 'type: "Pooling"' in buf.getvalue()
