"""Converter core: weight layouts and Caffe rules on asymmetric shapes (distinct sizes on every axis), each checked
against the float64 NumPy reference (harness.reference.forward) and, where it matters, against the Keras weights
themselves (a transpose, never a reshape)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import support.converted as K
from support import feed_for, make_net, max_rel_err, net_text
import harness.convert as hc
from harness.errors import ConversionError, ShapeError, UnsupportedParam

RNG = np.random.default_rng(1234)


def _w(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _conv(name, bottom, params, type_="Convolution"):
    return f'layer {{ name: "{name}" type: "{type_}" bottom: "{bottom}" top: "{name}" convolution_param {{ {params} }} }}'


# ---------------------------------------------------------------------------------------------------------------
# Convolution family


def test_conv_oihw_to_hwio_with_rect_kernel_stride_pad():
    w, b = _w(5, 3, 3, 2), _w(5)
    net = make_net(_conv("c", "data", "num_output: 5 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 "
                                      "pad_w: 0"), {"data": (2, 3, 7, 9)}, {"c": [w, b]})
    model, errs = K.check_vs_reference(net)
    kernel, bias = model.get_layer("c").get_weights()
    np.testing.assert_array_equal(kernel, w.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(bias, b)
    assert model.get_layer("c__pad").padding == ((1, 1), (0, 0))
    assert model.get_layer("c").padding == "valid"
    # the classic bug: reshape instead of transpose gives a different model (so the comparison above can fail)
    model.get_layer("c").set_weights([w.reshape(kernel.shape), b])
    bad = K.run_keys(model, feed_for(net), ["c/c"])["c/c"]
    from harness.reference import forward

    assert max_rel_err(bad, forward(net, feed_for(net), np.float64)["c/c"]) > 1e-2


def test_conv_stride2_k7_p3_is_symmetric_not_tf_same():
    net = make_net(_conv("c", "data", "num_output: 4 kernel_size: 7 stride: 2 pad: 3"), {"data": (1, 3, 12, 10)})
    model, _ = K.check_vs_reference(net)
    assert model.get_layer("c__pad").padding == ((3, 3), (3, 3))


def test_grouped_conv_uses_keras_groups():
    w = _w(6, 2, 3, 3)
    net = make_net(_conv("c", "data", "num_output: 6 group: 2 kernel_size: 3 pad: 1"), {"data": (2, 4, 6, 9)},
                   {"c": [w, _w(6)]})
    model, _ = K.check_vs_reference(net)
    lay = model.get_layer("c")
    assert lay.groups == 2
    np.testing.assert_array_equal(lay.get_weights()[0], w.transpose(2, 3, 1, 0))


@pytest.mark.parametrize("type_", ["Convolution", "ConvolutionDepthwise", "DepthwiseConvolution"])
def test_depthwise_multiplier_2(type_):
    w = _w(6, 1, 3, 5)
    net = make_net(_conv("c", "data", "num_output: 6 group: 3 kernel_h: 3 kernel_w: 5 pad_h: 1 pad_w: 2 "
                                      "bias_term: false", type_), {"data": (2, 3, 7, 8)}, {"c": [w]})
    model, _ = K.check_vs_reference(net)
    lay = model.get_layer("c")
    assert isinstance(lay, keras.layers.DepthwiseConv2D) and lay.depth_multiplier == 2
    np.testing.assert_array_equal(lay.get_weights()[0], w.reshape(3, 2, 3, 5).transpose(2, 3, 0, 1))


@pytest.mark.parametrize("params", [
    "num_output: 6 group: 2 kernel_size: 3 stride: 2 dilation: 2 pad: 1",
    "num_output: 5 kernel_h: 2 kernel_w: 3 stride_h: 3 stride_w: 2 dilation: 2 dilation: 3",
    "num_output: 8 group: 4 kernel_size: 3 stride: 2 dilation: 2",  # depthwise, multiplier 2
])
def test_conv_stride_and_dilation_together(params):
    """Keras refuses strides > 1 with dilation > 1; the converter dilates the kernel with zeros instead."""
    net = make_net(_conv("c", "data", params), {"data": (2, 4, 13, 11)})
    K.check_vs_reference(net)


@pytest.mark.parametrize("params", [
    "num_output: 6 group: 2 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 1",
    "num_output: 3 kernel_size: 2 stride: 3",  # kernel < stride: Keras' default output size would differ
    "num_output: 2 kernel_size: 3 stride: 2 dilation: 2 pad: 1",  # stride with dilation
    "num_output: 4 group: 4 kernel_size: 4 stride: 2 pad: 1 bias_term: false",  # FCN-style per-channel upsampling
])
def test_deconvolution(params):
    net = make_net(_conv("d", "data", params, "Deconvolution"), {"data": (2, 4, 5, 6)})
    K.check_vs_reference(net)


def test_deconv_weight_layout():
    w, b = _w(4, 3, 3, 2), _w(6)
    net = make_net(_conv("d", "data", "num_output: 6 group: 2 kernel_h: 3 kernel_w: 2 stride: 2 pad: 1",
                         "Deconvolution"), {"data": (2, 4, 5, 7)}, {"d": [w, b]})
    model, _ = K.check_vs_reference(net)
    assert model.get_layer("d").__class__.__name__ == "Cropping2D"
    kernel, bias = model.get_layer("d__full").get_weights()
    assert kernel.shape == (3, 2, 6, 4)
    np.testing.assert_array_equal(kernel[:, :, 0:3, 0:2], w[0:2].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(kernel[:, :, 3:6, 2:4], w[2:4].transpose(2, 3, 1, 0))
    assert not kernel[:, :, 0:3, 2:4].any() and not kernel[:, :, 3:6, 0:2].any()


# ---------------------------------------------------------------------------------------------------------------
# InnerProduct, Embed


IP_BASE = _conv("conv", "data", "num_output: 3 kernel_size: 1")


@pytest.mark.parametrize("params", [
    "num_output: 7",
    "num_output: 7 transpose: true bias_term: false",
    "num_output: 6 axis: 2",
    "num_output: 2 axis: 3",  # 4-D result: back to NHWC
    "num_output: 6 axis: -2",
])
def test_inner_product_after_4d(params):
    net = make_net(IP_BASE + f'\nlayer {{ name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" '
                               f'inner_product_param {{ {params} }} }}', {"data": (2, 5, 4, 6)})
    K.check_vs_reference(net)


def test_inner_product_keeps_caffe_rows_and_flattens_nchw():
    w = _w(7, 3 * 4 * 6)
    net = make_net(IP_BASE + '\nlayer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" '
                               'inner_product_param { num_output: 7 } }', {"data": (2, 5, 4, 6)},
                     {"conv": [_w(3, 5, 1, 1), _w(3)], "fc": [w, _w(7)]})
    model, _ = K.check_vs_reference(net)
    np.testing.assert_array_equal(model.get_layer("fc").get_weights()[0], w.T)
    assert model.get_layer("fc__nchw").dims == (3, 1, 2)
    # transposed blob (K, N)
    net2 = make_net(IP_BASE + '\nlayer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" '
                                'inner_product_param { num_output: 7 transpose: true } }', {"data": (2, 5, 4, 6)},
                      {"conv": [_w(3, 5, 1, 1), _w(3)], "fc": [w.T.copy(), _w(7)]})
    m2, _ = K.check_vs_reference(net2)
    np.testing.assert_array_equal(m2.get_layer("fc").get_weights()[0], w.T)


def test_inner_product_axis0_refused():
    net = make_net('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                   'inner_product_param { num_output: 3 axis: 0 } }', {"data": (2, 5)})
    with pytest.raises(UnsupportedParam, match="fc.*axis=0"):
        hc.convert(net)


def test_embed():
    w, b = _w(11, 4), _w(4)
    net = make_net('layer { name: "e" type: "Embed" bottom: "data" top: "e" '
                   'embed_param { num_output: 4 input_dim: 11 } }', {"data": (2, 3, 5)}, {"e": [w, b]})
    idx = RNG.integers(0, 11, size=(2, 3, 5)).astype(np.float32)
    model, _ = K.check_vs_reference(net, feed={"data": idx})
    got = K.run_keys(model, {"data": idx}, ["e/e"])["e/e"]  # 4-D Caffe (2, 3, 5, 4) back from NHWC
    np.testing.assert_allclose(got, w[idx.astype(int)] + b, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# BatchNorm, Scale, Bias, PReLU


@pytest.mark.parametrize("factor", [0.5, 0.0, 3.0])
def test_batchnorm_factor_blob(factor):
    mean, var = _w(3), np.abs(_w(3)) + 0.5
    net = make_net('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" batch_norm_param { eps: 0.002 } }',
                   {"data": (2, 3, 5, 7)}, {"bn": [mean, var, np.array([factor], np.float32)]})
    model, _ = K.check_vs_reference(net)
    lay = model.get_layer("bn")
    mm, mv = lay.get_weights()
    f = 0.0 if factor == 0 else 1.0 / factor
    np.testing.assert_allclose(mm, mean * f, rtol=1e-6)
    np.testing.assert_allclose(mv, var * f, rtol=1e-6)
    assert lay.epsilon == pytest.approx(0.002)


def test_batchnorm_batch_statistics_converted():
    """use_global_stats: false (batch statistics at TEST, issue 15) is converted, on 4-D and 2-D bottoms."""
    for shape in ((2, 3, 5, 7), (4, 3)):
        net = make_net('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" '
                       'batch_norm_param { use_global_stats: false } }', {"data": shape})
        K.check_vs_reference(net)


def test_batchnorm_2d_input():
    net = make_net('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" }', {"data": (4, 3)})
    K.check_vs_reference(net)


BN_SCALE = ('layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 5 '
            'kernel_size: 3 } }\n'
            'layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }\n'
            'layer { name: "sc" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }\n'
            'layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }')


def test_fold_batchnorm_with_slash_names():
    text = BN_SCALE.replace('"bn"', '"res/bn"').replace('"sc"', '"res/sc"')
    net = make_net(text, {"data": (2, 3, 7, 6)})
    folded, _ = K.check_vs_reference(net, fold_batchnorm=True)
    mp = folded.harness_mapping
    assert mp["folded"] == {"res/sc": "res/bn"} and mp["keys"]["res/sc/conv"]["layer"] == "res.sc"
    assert "res/bn/conv" not in mp["keys"]


def test_fold_batchnorm_is_opt_in_and_exact():
    net = make_net(BN_SCALE, {"data": (2, 3, 7, 6)})
    plain, _ = K.check_vs_reference(net)
    assert {"bn", "sc"} <= {lay.name for lay in plain.layers}
    folded, errs = K.check_vs_reference(net, fold_batchnorm=True)
    mp = folded.harness_mapping
    assert "bn/conv" not in mp["keys"] and mp["keys"]["sc/conv"]["layer"] == "sc"
    assert mp["folded"] == {"sc": "bn"}
    assert "bn" not in {lay.name for lay in folded.layers}
    assert isinstance(folded.get_layer("sc"), keras.layers.BatchNormalization)


@pytest.mark.parametrize("params,shape", [
    ("", (2, 3, 5, 7)),                        # per channel: standard DepthwiseConv2D 1x1
    ("bias_term: true", (2, 3, 5, 7)),
    ("axis: 0 num_axes: 2", (2, 3, 5, 7)),
    ("axis: 2 num_axes: 2 bias_term: true", (2, 3, 5, 7)),
    ("axis: -1", (2, 3, 5, 7)),
    ("num_axes: 0", (2, 3, 5, 7)),
    ("num_axes: -1", (2, 3, 5, 7)),
    ("axis: 1", (4, 6)),
    ("axis: 1 num_axes: 2", (2, 3, 5)),
])
def test_scale_axes(params, shape):
    net = make_net(f'layer {{ name: "s" type: "Scale" bottom: "data" top: "s" scale_param {{ {params} }} }}',
                   {"data": shape})
    K.check_vs_reference(net)


def test_scale_per_channel_weights():
    g, b = _w(3), _w(3)
    net = make_net('layer { name: "s" type: "Scale" bottom: "data" top: "s" scale_param { bias_term: true } }',
                   {"data": (2, 3, 5, 7)}, {"s": [g, b]})
    model, _ = K.check_vs_reference(net)
    k, bias = model.get_layer("s").get_weights()
    np.testing.assert_array_equal(k.reshape(-1), g)
    np.testing.assert_array_equal(bias, b)


@pytest.mark.parametrize("gshape,params", [
    ((2, 3), "axis: 0"),         # SENet: per image and channel (the factor reshaped to N x C)
    ((2, 3, 5), "axis: 0"),      # 3-D factor covering N, C, H
    ((3, 5), "axis: 1 bias_term: true"),  # factor without a batch axis
])
def test_scale_second_bottom(gshape, params):
    net = make_net(f'layer {{ name: "s" type: "Scale" bottom: "data" bottom: "g" top: "s" '
                   f'scale_param {{ {params} }} }}', {"data": (2, 3, 5, 7), "g": gshape})
    K.check_vs_reference(net)


@pytest.mark.parametrize("layers,inputs", [
    ('layer { name: "b" type: "Bias" bottom: "data" top: "b" }', {"data": (2, 3, 5, 7)}),
    ('layer { name: "b" type: "Bias" bottom: "data" top: "b" bias_param { axis: 2 num_axes: 2 } }',
     {"data": (2, 3, 5, 7)}),
    ('layer { name: "b" type: "Bias" bottom: "data" bottom: "g" top: "b" bias_param { axis: 0 } }',
     {"data": (2, 3, 5, 7), "g": (2, 3)}),
])
def test_bias(layers, inputs):
    K.check_vs_reference(make_net(layers, inputs))


def test_prelu_channelwise_slopes():
    a = np.array([0.1, -0.7, 2.5], np.float32)
    net = make_net('layer { name: "p" type: "PReLU" bottom: "data" top: "p" }', {"data": (2, 3, 5, 7)},
                   {"p": [a]})
    K.check_vs_reference(net)


# ---------------------------------------------------------------------------------------------------------------
# Pooling, LRN, MVN, Normalize


def _pool(params, name="p"):
    return f'layer {{ name: "{name}" type: "Pooling" bottom: "data" top: "{name}" pooling_param {{ {params} }} }}'


@pytest.mark.parametrize("params", [
    "pool: MAX kernel_size: 3 stride: 2 pad: 1",
    "pool: MAX kernel_size: 3 stride: 2",                       # ceil overhang, no pad
    "pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 0",
    "pool: MAX kernel_size: 2 stride: 3 round_mode: FLOOR",
    "pool: AVE kernel_size: 3 stride: 2 pad: 1",                # divisor counts the pad
    "pool: AVE kernel_size: 4 stride: 3 pad: 2",                # ceil overhang beyond H+pad: custom divisor
    "pool: AVE kernel_size: 3 stride: 2",                       # overhang without pad
    "pool: AVE kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 pad_h: 1 pad_w: 0 round_mode: FLOOR",
    "pool: MAX global_pooling: true",
    "pool: AVE global_pooling: true",
])
def test_pooling_vs_reference_negative_inputs(params):
    net = make_net(_pool(params), {"data": (2, 3, 9, 12)})
    feed = feed_for(net)
    feed["data"] = feed["data"] - 3.0  # mostly negative: zero padding would win a MAX
    model, _ = K.check_vs_reference(net, feed=feed)
    if params in ("pool: AVE kernel_size: 3 stride: 2", "pool: AVE kernel_size: 3 stride: 2 pad: 1"):
        # W=12: the last window reaches past W + pad, its divisor is smaller than 9: the custom layer is needed
        assert type(model.get_layer("p")).__name__ == "CaffeAvePool2D"
    if params == "pool: AVE kernel_size: 4 stride: 3 pad: 2":
        # padding counted, no window past H + pad: zero padding + standard average pooling is exact
        assert type(model.get_layer("p")).__name__ == "AveragePooling2D"


def test_max_pool_padding_never_wins():
    net = make_net(_pool("pool: MAX kernel_size: 3 stride: 2 pad: 1"), {"data": (1, 2, 5, 6)})
    x = -np.abs(feed_for(net)["data"]) - 1.0
    model = hc.convert(net)
    y = K.run_keys(model, {"data": x}, ["p/p"])["p/p"]
    assert (y < 0).all()
    assert isinstance(model.get_layer("p"), keras.layers.MaxPooling2D)


def test_stochastic_pooling_test_phase():
    net = make_net(_pool("pool: STOCHASTIC kernel_size: 3 stride: 2"), {"data": (2, 3, 8, 11)})
    feed = {"data": np.abs(feed_for(net)["data"]) + 0.1}
    K.check_vs_reference(net, feed=feed)


@pytest.mark.parametrize("params", ["pyramid_height: 3 pool: MAX", "pyramid_height: 2 pool: AVE",
                                    "pyramid_height: 1 pool: MAX"])
def test_spp(params):
    net = make_net(f'layer {{ name: "spp" type: "SPP" bottom: "data" top: "spp" spp_param {{ {params} }} }}',
                   {"data": (2, 3, 7, 10)})
    K.check_vs_reference(net)


@pytest.mark.parametrize("params", [
    "local_size: 5 alpha: 0.5 beta: 0.75 k: 2",
    "local_size: 3 alpha: 3 beta: 0.6",
    "local_size: 7 alpha: 2 beta: 0.9 k: 1.5",
    "local_size: 3 alpha: 4 beta: 0.75 norm_region: WITHIN_CHANNEL k: 7",  # k ignored within
    "local_size: 5 alpha: 1 beta: 0.5 norm_region: WITHIN_CHANNEL",
])
def test_lrn(params):
    net = make_net(f'layer {{ name: "n" type: "LRN" bottom: "data" top: "n" lrn_param {{ {params} }} }}',
                   {"data": (2, 6, 5, 7)})
    K.check_vs_reference(net)


@pytest.mark.parametrize("params,shape", [
    ("", (2, 3, 5, 7)),
    ("across_channels: true", (2, 3, 5, 7)),
    ("normalize_variance: false", (2, 3, 5, 7)),
    ("eps: 0.1", (2, 3, 5, 7)),
    ("", (2, 3, 6)),
])
def test_mvn(params, shape):
    net = make_net(f'layer {{ name: "m" type: "MVN" bottom: "data" top: "m" mvn_param {{ {params} }} }}',
                   {"data": shape})
    K.check_vs_reference(net)


@pytest.mark.parametrize("params", ["", "across_spatial: false", "channel_shared: false",
                                    "across_spatial: false channel_shared: false eps: 0.01"])
def test_normalize(params):
    net = make_net(f'layer {{ name: "nm" type: "Normalize" bottom: "data" top: "nm" norm_param {{ {params} }} }}',
                   {"data": (2, 3, 5, 7)})
    K.check_vs_reference(net)


# ---------------------------------------------------------------------------------------------------------------
# Contract and errors


def test_slash_names_and_multi_input_mapping():
    layers = ('layer { name: "a/conv" type: "Convolution" bottom: "in/x" top: "a/conv" '
              'convolution_param { num_output: 2 kernel_size: 1 } }\n'
              'layer { name: "fc" type: "InnerProduct" bottom: "v" top: "fc" inner_product_param { num_output: 3 } }')
    net = make_net(layers, {"in/x": (2, 3, 4, 5), "v": (2, 6)})
    model, _ = K.check_vs_reference(net)
    mp = model.harness_mapping
    assert mp["keys"]["a/conv/a/conv"] == {"layer": "a.conv", "index": 0, "layout": "nhwc"}
    assert mp["keys"]["fc/fc"] == {"layer": "fc", "index": 0, "layout": "caffe"}
    assert mp["inputs"] == ["in/x", "v"] and mp["input_layers"] == ["in.x", "v"]
    assert [t.name for t in model.inputs] == ["in.x", "v"] or len(model.inputs) == 2
    assert mp["outputs"] == ["a/conv", "fc"]


def test_errors_name_the_caffe_layer_not_its_keras_name():
    net = make_net('layer { name: "a/fc" type: "InnerProduct" bottom: "data" top: "b" '
                   'inner_product_param { num_output: 2 axis: 0 } }', {"data": (1, 3, 4, 5)})
    with pytest.raises((ConversionError, UnsupportedParam), match="'a/fc'"):
        hc.convert(net)


def test_missing_weights_named():
    from harness.caffe import load_net_text

    net = load_net_text(net_text(_conv("c", "data", "num_output: 2 kernel_size: 1"), {"data": (1, 3, 4, 5)}))
    with pytest.raises(ConversionError, match="Convolution 'c'.*weight blob 0"):
        hc.convert(net)


def test_wrong_weight_shape_named():
    with pytest.raises(Exception) as ei:
        net = make_net(_conv("c", "data", "num_output: 2 kernel_size: 3"), {"data": (1, 3, 4, 5)},
                       {"c": [_w(2, 3, 2, 3), _w(2)]})
        hc.convert(net)
    assert "'c'" in str(ei.value) and isinstance(ei.value, (ShapeError, ConversionError))


def test_max_pool_mask_top_refused():
    net = make_net('layer { name: "p" type: "Pooling" bottom: "data" top: "p" top: "mask" '
                   'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }', {"data": (1, 2, 4, 6)})
    with pytest.raises(UnsupportedParam, match="'p'"):
        hc.convert(net)


def test_approximation_refused_or_recorded_with_measured_error(monkeypatch):
    """A converter that cannot be exact must refuse unless allow_approx; then the error is measured."""
    from harness.convert import CONVERTERS
    from harness.convert._util import approximate

    def fake_absval(layer, inputs, ctx):
        approximate(ctx, layer, "|x| replaced by max(x, 0) (test stand-in)")
        return [keras.layers.ReLU(name=layer.name)(inputs[0])]

    monkeypatch.setitem(CONVERTERS._impls, "AbsVal", fake_absval)
    net = make_net('layer { name: "abs" type: "AbsVal" bottom: "data" top: "abs" }', {"data": (2, 3, 4, 5)})
    with pytest.raises(ConversionError, match="AbsVal 'abs'.*allow_approx"):
        hc.convert(net)
    model = hc.convert(net, allow_approx=True)
    (a,) = model.harness_mapping["approximations"]
    assert a["layer"] == "abs" and "test stand-in" in a["what"] and a["max_abs_error"] is None  # not run here
    from harness.compare import measure_approximations

    (m,) = measure_approximations(model, net)
    assert m is a and a["max_abs_error"] is not None and a["max_abs_error"] > 0.1


def test_public_entry_points():
    """`harness.convert(net)` (lazy, from the package root) and the package `harness.convert` coexist: the package is
    callable, so whichever import happens first, both spellings work."""
    import harness

    net = make_net(_conv("c", "data", "num_output: 2 kernel_size: 1"), {"data": (1, 3, 4, 5)})
    m1 = harness.convert(net)
    m2 = hc.convert(net)
    assert callable(hc) and hc.save_model and hc.load_model
    assert [lay.name for lay in m1.layers] == [lay.name for lay in m2.layers]
