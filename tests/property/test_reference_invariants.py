"""Properties of the NumPy reference that do not depend on the converter: algebraic facts about Caffe's layers,
checked on random valid layers from harness.strategies in float64.

A failure here is a reference bug (or a wrong strategy) even when the converter agrees with the reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.strategies import Enum, LayerDef, NetCase, conv_params, layer_case, pool_params

from harness.reference import forward
from support import assert_blob_close

from ._props import examples

TOL = 1e-9  # float64 arithmetic on O(1) data: relative to the blob's scale


def run(case: NetCase, inputs: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    net = case.load()
    data = {k: np.asarray(v, np.float64) for k, v in (inputs or case.inputs).items()}
    return forward(net, data, dtype=np.float64)


def out(case: NetCase, inputs=None) -> np.ndarray:
    """The record of the case's last layer's first top."""
    lay = case.layers[-1]
    return run(case, inputs)[f"{lay.name}/{lay.tops[0]}"]


def assert_same(a, b, what: str, case: NetCase, tol: float = TOL) -> None:
    """``support.assert_blob_close(a, b, rtol=tol, atol=tol)``: max|a - b| <= tol * max(max|b|, 1), with a finite
    ``b``; the message carries the case's prototxt."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    note = f"{what}\n{case.to_prototxt()}"
    assert np.isfinite(b).all(), f"{note}\nthe expected values are not finite"
    assert_blob_close(a, b, note, rtol=tol, atol=tol)


def with_layers(case: NetCase, *layers: LayerDef, inputs=None) -> NetCase:
    return NetCase(name=case.name, inputs=inputs if inputs is not None else case.inputs, layers=tuple(layers))


def rng_of(data) -> np.random.Generator:
    return np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))


# -- linearity ---------------------------------------------------------------------------------------------------

AFFINE_TYPES = ["Convolution", "ConvolutionDepthwise", "Deconvolution", "InnerProduct", "Scale", "Bias", "BatchNorm",
                "Embed"]


@pytest.mark.parametrize("caffe_type", ["Convolution", "ConvolutionDepthwise", "Deconvolution", "InnerProduct",
                                        "BatchNorm"])
@settings(max_examples=examples())
@given(data=st.data())
def test_affine_layers_are_affine_in_their_input(caffe_type, data):
    """f(a x + b y) = a f(x) + b f(y) + (1 - a - b) f(0) for convolution (any group/dilation/stride/pad),
    deconvolution, InnerProduct (any axis, transpose) and inference BatchNorm."""
    case = data.draw(layer_case(caffe_type), label="case")
    rng = rng_of(data)
    (name, x), = case.inputs.items()
    y = rng.standard_normal(x.shape)
    a, b = data.draw(st.sampled_from([(2.0, -0.5), (0.25, 3.0), (-1.0, 1.0)]), label="a, b")
    fx, fy = out(case, {name: x}), out(case, {name: y})
    f0 = out(case, {name: np.zeros_like(x)})
    fxy = out(case, {name: a * np.asarray(x, np.float64) + b * y})
    assert_same(fxy, a * fx + b * fy + (1 - a - b) * f0, f"{caffe_type} is not affine", case)


@settings(max_examples=examples())
@given(data=st.data())
def test_average_pooling_is_linear(data):
    case = data.draw(layer_case("Pooling"), label="case")
    lay = case.layers[-1]
    items = [(k, v) for k, v in lay.params[0][1] if k != "pool"] + [("pool", Enum("AVE"))]
    case = with_layers(case, dataclasses.replace(lay, params=[("pooling_param", items)]))
    rng = rng_of(data)
    x = np.asarray(case.inputs["data"], np.float64)
    y = rng.standard_normal(x.shape)
    assert_same(out(case, {"data": 3 * x - 2 * y}), 3 * out(case, {"data": x}) - 2 * out(case, {"data": y}),
                 "AVE pooling is not linear", case)


# -- convolution identities ---------------------------------------------------------------------------------------

def _adjoint_side(cp, axis: int) -> list[int]:
    """Input sizes for which Caffe's deconvolution is exactly the adjoint of the convolution: either the windows tile
    the padded input exactly ((H + 2p - ext) % s == 0, then the deconvolution output is H), or there is no padding
    (then the rows the floor rounding drops are read by neither)."""
    ext, p, s = cp.extent(axis), cp.pad[axis], cp.stride[axis]
    return [v for v in range(max(1, ext - 2 * p), 17) if p == 0 or (v + 2 * p - ext) % s == 0]


@settings(max_examples=examples())
@given(cp=conv_params(), data=st.data())
def test_deconvolution_is_the_adjoint_of_convolution(cp, data):
    """<conv(x), y> == <x, deconv(y)> with the same weights, no bias: Caffe's deconvolution is convolution's backward
    pass; the (C_out, C_in/g, kh, kw) convolution blob is read by the deconvolution as (C_in', C_out'/g, kh, kw)."""
    g = data.draw(st.integers(1, 3), label="group")
    cin, cout = g * data.draw(st.integers(1, 2), label="cin/g"), g * data.draw(st.integers(1, 3), label="cout/g")
    h = data.draw(st.sampled_from(_adjoint_side(cp, 0)), label="H")
    w_ = data.draw(st.sampled_from(_adjoint_side(cp, 1)), label="W")
    n = data.draw(st.integers(1, 2), label="N")
    rng = rng_of(data)
    x = rng.standard_normal((n, cin, h, w_))
    w = rng.standard_normal((cout, cin // g, *cp.kernel)).astype(np.float32)
    common = [("bias_term", False), ("group", g), *cp.items()]
    conv = NetCase("conv", {"x": x.astype(np.float32)},
                   (LayerDef("conv", "Convolution", ("x",), ("conv",),
                             [("convolution_param", [("num_output", cout), *common])], (w,)),))
    cx = out(conv, {"x": x})
    y = rng.standard_normal(cx.shape)
    deconv = NetCase("deconv", {"y": y.astype(np.float32)},
                     (LayerDef("deconv", "Deconvolution", ("y",), ("deconv",),
                               [("convolution_param", [("num_output", cin), *common])], (w,)),))
    dy = out(deconv, {"y": y})
    hh, ww = dy.shape[2:]
    assert hh <= h and ww <= w_, f"deconvolution output {dy.shape} larger than the conv input {x.shape}"
    lhs = float(np.sum(cx * y))
    rhs = float(np.sum(x[:, :, :hh, :ww] * dy))
    assert abs(lhs - rhs) <= 1e-9 * max(1.0, float(np.sum(np.abs(cx * y)))), (
        f"<conv(x), y> = {lhs!r} but <x, deconv(y)> = {rhs!r}\n{conv.to_prototxt()}\n{deconv.to_prototxt()}")


@settings(max_examples=examples())
@given(case=layer_case("Convolution", max_channels=6), data=st.data())
def test_1x1_convolution_is_an_inner_product_on_the_channel_axis(case, data):
    """A 1x1, stride-1, unpadded, ungrouped convolution equals Permute(0,2,3,1) -> InnerProduct(axis=3) ->
    Permute(0,3,1,2) with the (C_out, C_in) weights."""
    x = case.inputs["data"]
    c = x.shape[1]
    nout = data.draw(st.integers(1, 6), label="num_output")
    rng = rng_of(data)
    w = (rng.standard_normal((nout, c, 1, 1)) / np.sqrt(c)).astype(np.float32)
    bias = rng.standard_normal(nout).astype(np.float32)
    conv = LayerDef("conv", "Convolution", ("data",), ("conv",),
                    [("convolution_param", [("num_output", nout), ("kernel_size", 1)])], (w, bias))
    ip_net = with_layers(
        case,
        LayerDef("to_nhwc", "Permute", ("data",), ("nhwc",), [("permute_param", [("order", o) for o in (0, 2, 3, 1)])]),
        LayerDef("ip", "InnerProduct", ("nhwc",), ("ip",), [("inner_product_param", [("num_output", nout),
                                                                                         ("axis", 3)])],
                 (w.reshape(nout, c), bias)),
        LayerDef("to_nchw", "Permute", ("ip",), ("out",), [("permute_param", [("order", o) for o in (0, 3, 1, 2)])]),
    )
    assert_same(out(with_layers(case, conv)), out(ip_net), "1x1 convolution != channel-axis InnerProduct", case)


@settings(max_examples=examples())
@given(case=layer_case("Convolution"))
def test_grouped_convolution_is_a_concat_of_per_group_convolutions(case):
    conv = case.layers[-1]
    items = dict(conv.params[0][1])
    g = items.get("group", 1)
    x = case.inputs["data"]
    c = x.shape[1]
    w = conv.blobs[0]
    cout = w.shape[0]
    geometry = [(k, v) for k, v in conv.params[0][1] if k not in ("group", "num_output")]
    layers: list[LayerDef] = []
    if g > 1:
        layers.append(LayerDef("split_in", "Slice", ("data",), tuple(f"x{i}" for i in range(g)),
                               [("slice_param", [("slice_point", c // g * i) for i in range(1, g)])]))
    tops = []
    for i in range(g):
        blobs = (w[i * cout // g:(i + 1) * cout // g],) + (
            (conv.blobs[1][i * cout // g:(i + 1) * cout // g],) if len(conv.blobs) > 1 else ())
        layers.append(LayerDef(f"conv_g{i}", "Convolution", (f"x{i}" if g > 1 else "data",), (f"y{i}",),
                               [("convolution_param", [("num_output", cout // g), *geometry])], blobs))
        tops.append(f"y{i}")
    layers.append(LayerDef("cat", "Concat", tuple(tops), ("cat",)) if g > 1 else
                  LayerDef("cat", "Dropout", tuple(tops), ("cat",)))
    assert_same(out(case), out(with_layers(case, *layers)), f"group={g} convolution != concat of groups", case)


# -- pooling -------------------------------------------------------------------------------------------------------

@settings(max_examples=examples())
@given(case=layer_case("ReLU"), method=st.sampled_from(["MAX", "AVE", "STOCHASTIC"]),
       rounding=st.sampled_from([None, "CEIL", "FLOOR"]))
def test_pooling_with_kernel_1_stride_1_is_the_identity(case, method, rounding):
    x = np.abs(case.inputs["data"]) + 0.1 if method == "STOCHASTIC" else case.inputs["data"]
    if x.ndim != 4:
        x = x.reshape(x.shape + (1,) * (4 - x.ndim))
    items = [("pool", Enum(method)), ("kernel_size", 1), ("stride", 1)]
    if rounding:
        items.append(("round_mode", Enum(rounding)))
    pool = LayerDef("pool", "Pooling", ("data",), ("pool",), [("pooling_param", items)])
    c = NetCase("identity", {"data": x.astype(np.float32)}, (pool,))
    assert_same(out(c), x, f"{method} pooling k=1 s=1 is not the identity", c, tol=1e-15)


@settings(max_examples=examples())
@given(pp=pool_params(methods=("AVE",)), shape=st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(4, 9),
                                                         st.integers(4, 9)),
       value=st.sampled_from([2.0, -3.5, 0.125]))
def test_average_pooling_of_a_constant_without_padding_is_that_constant(pp, shape, value):
    """Caffe's divisor counts only in-image elements when there is no padding (the ceil overhang is clipped)."""
    if pp.kernel is not None:
        k = tuple(min(k, s) for k, s in zip(pp.kernel, shape[2:]))
        pp = dataclasses.replace(pp, kernel=k, pad=(0, 0), stride=tuple(min(s, kk) for s, kk in zip(pp.stride, k)))
    x = np.full(shape, value, np.float32)
    c = NetCase("const", {"data": x}, (LayerDef("pool", "Pooling", ("data",), ("pool",),
                                                [("pooling_param", pp.items())]),))
    y = out(c)
    assert_same(y, np.full(y.shape, value), "AVE pooling of a constant (no pad) is not that constant", c, tol=1e-15)


@settings(max_examples=examples())
@given(pp=pool_params(methods=("MAX",)), data=st.data())
def test_max_pooling_commutes_with_adding_a_constant(pp, data):
    """max(x + c) = max(x) + c even with padding: Caffe's pads never win (they are -FLT_MAX, not 0)."""
    case = data.draw(layer_case("Pooling"), label="case")
    lay = case.layers[-1]
    items = [(k, v) for k, v in lay.params[0][1] if k != "pool"]
    case = with_layers(case, dataclasses.replace(lay, params=[("pooling_param", items)]))
    x = np.asarray(case.inputs["data"], np.float64)
    c = data.draw(st.sampled_from([-10.0, 7.5]), label="c")
    assert_same(out(case, {"data": x + c}), out(case, {"data": x}) + c, "MAX pooling does not commute with +c",
                 case)


# -- data movement -------------------------------------------------------------------------------------------------

@settings(max_examples=examples())
@given(case=layer_case("Slice"))
def test_slice_then_concat_returns_the_input(case):
    sl = case.layers[-1]
    items = [(k, v) for k, v in (sl.params[0][1] if sl.params else []) if k in ("axis", "slice_dim")]
    if items and items[0][0] == "slice_dim":
        items = [("axis", items[0][1])]
    cat = LayerDef("cat", "Concat", sl.tops, ("cat",), [("concat_param", items)] if items else [])
    full = with_layers(case, sl, cat)
    assert_same(out(full), case.inputs["data"], "Slice -> Concat is not the identity", full, tol=0.0)


@settings(max_examples=examples())
@given(case=layer_case("Split"))
def test_split_then_concat_stacks_copies_of_the_input(case):
    sp = case.layers[-1]
    x = case.inputs["data"]
    full = with_layers(case, sp, LayerDef("cat", "Concat", sp.tops, ("cat",),
                                          [("concat_param", [("axis", 0)])]))
    assert_same(out(full), np.concatenate([x] * len(sp.tops), axis=0), "Split -> Concat(axis 0)", full, tol=0.0)


@settings(max_examples=examples())
@given(case=layer_case("Permute"))
def test_permute_then_inverse_permute_is_the_identity(case):
    lay = case.layers[-1]
    order = [v for _, v in lay.params[0][1]]
    order += [a for a in range(4) if a not in order]
    inverse = list(np.argsort(order))
    inv = LayerDef("inv", "Permute", lay.tops, ("inv",), [("permute_param", [("order", int(o)) for o in inverse])])
    full = with_layers(case, lay, inv)
    assert_same(out(full), case.inputs["data"], "Permute then its inverse", full, tol=0.0)


@settings(max_examples=examples())
@given(case=layer_case("InnerProduct"))
def test_flatten_then_inner_product_equals_the_implicit_flatten(case):
    ip = case.layers[-1]
    params = dict(ip.params[0][1])
    axis = params.get("axis", 1)
    ndim = case.inputs["data"].ndim
    axis = axis + ndim if axis < 0 else axis
    flat = LayerDef("flat", "Flatten", ("data",), ("flat",), [("flatten_param", [("axis", axis)])])
    items = [(k, v) for k, v in ip.params[0][1] if k != "axis"] + [("axis", axis)]
    ip2 = dataclasses.replace(ip, bottoms=("flat",), params=[("inner_product_param", items)])
    assert_same(out(case), out(with_layers(case, flat, ip2)), "Flatten + InnerProduct != InnerProduct", case)


# -- normalisation -------------------------------------------------------------------------------------------------

@settings(max_examples=examples())
@given(case=layer_case("Softmax"), shift=st.sampled_from([-20.0, 5.0, 300.0]))
def test_softmax_sums_to_one_and_ignores_a_shift(case, shift):
    lay = case.layers[-1]
    params = dict(lay.params[0][1]) if lay.params else {}
    x = np.asarray(case.inputs["data"], np.float64)
    axis = params.get("axis", 1)
    y = out(case)
    assert_same(y.sum(axis=axis), np.ones(y.sum(axis=axis).shape), "softmax does not sum to 1", case, tol=1e-12)
    assert_same(out(case, {"data": x + shift}), y, "softmax(x + c) != softmax(x)", case, tol=1e-12)


@settings(max_examples=examples())
@given(case=layer_case("BatchNorm"), factor=st.sampled_from([0.5, 7.0, 1e3]))
def test_batchnorm_factor_blob_only_rescales_the_stored_statistics(case, factor):
    """(mean*f, var*f, f) normalises exactly like (mean, var, 1) for every f != 0."""
    bn = case.layers[-1]
    mean, var, f = (np.asarray(b, np.float64) for b in bn.blobs)
    if f[0] == 0:
        return  # Caffe zeroes the statistics when the factor is 0; covered by the reference's table tests
    m1, v1 = mean / f[0], var / f[0]
    def variant(scale):
        blobs = ((m1 * scale).astype(np.float32), (v1 * scale).astype(np.float32), np.array([scale], np.float32))
        return with_layers(case, dataclasses.replace(bn, blobs=blobs))
    assert_same(out(variant(1.0)), out(variant(np.float32(factor))), "BatchNorm factor blob", case, tol=1e-5)
