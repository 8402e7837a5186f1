"""Hand-written Keras ports of real Caffe nets (golden cases with real-Caffe weights, LeNet with seeded weights), in
the styles users write them (Sequential/functional, default or Caffe names, fused or separate activations, NCHW
inputs, Dropout, ZeroPadding2D, Permute+Flatten or reordered Dense rows), each correct or with one classic bug.

Correct ports must be equivalent; each buggy port must fail, name the Caffe layer that introduced the error (the
first of a fused span: ``conv1`` for ``Conv2D(activation="relu")``, ``bn1`` for BatchNorm+Scale) and rank the right
cause first.  A representative subset goes through ``caffe-harness check --json`` on ports saved to ``.keras`` and
reloaded in safe mode; the rest through :func:`harness.compare.compare`.
"""

from __future__ import annotations

import functools
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import support.handwritten as H  # noqa: E402
from support import GOLDEN, ZOO  # noqa: E402

NETS = {
    "lenet": (H.lenet_net, H.lenet_inputs, H.lenet_port),
    "legacy_v1": (lambda: H.golden_net("legacy_v1"), lambda: H.golden_inputs("legacy_v1"), H.legacy_port),
    "resnet_block": (lambda: H.golden_net("resnet_block"), lambda: H.golden_inputs("resnet_block"), H.resnet_port),
    "conv_basic": (lambda: H.golden_net("conv_basic"), lambda: H.golden_inputs("conv_basic"), H.conv_basic_port),
    "conv_group": (lambda: H.golden_subnet("conv_group_dilation", H.CONV_GROUP_LAYERS),
                   lambda: H.golden_inputs("conv_group_dilation"), H.conv_group_port),
    "deconv": (lambda: H.golden_subnet("deconv", H.DECONV_LAYERS), lambda: H.golden_inputs("deconv"),
               H.deconv_port),
    "inner_product": (lambda: H.golden_net("inner_product"), lambda: H.golden_inputs("inner_product"),
                      H.inner_product_port),
    "alexnet": (H.alexnet_net, H.alexnet_inputs, H.alexnet_port),
    "mobilenet": (H.mobilenet_net, H.mobilenet_inputs, H.mobilenet_port),
    "activations": (lambda: H.golden_subnet("activations", H.ACT_LAYERS), lambda: H.golden_inputs("activations"),
                    H.activations_port),
    "batchnorm_scale": (lambda: H.golden_subnet("batchnorm_scale", H.BN_LAYERS),
                        lambda: H.golden_inputs("batchnorm_scale"), H.batchnorm_port),
    "inception": (lambda: H.golden_subnet("inception_block", H.INCEPTION_LAYERS),
                  lambda: H.golden_inputs("inception_block"), H.inception_port),
    # pooling sub-nets: where MaxPooling2D/AveragePooling2D('same') equals Caffe's ceil pooling ...
    "pool_max_same_ok": (lambda: H.golden_subnet("pool_max", ["max_k2s2", "max_global"]),
                         lambda: H.golden_inputs("pool_max"), H.pool_port),
    "pool_ave_same_ok": (lambda: H.golden_subnet("pool_ave", ["ave_k2s2", "ave_global"]),
                         lambda: H.golden_inputs("pool_ave"), H.pool_port),
    "pool_floor": (lambda: H.golden_net("pool_floor"), lambda: H.golden_inputs("pool_floor"), H.pool_port),
    # ... and where it does not (or where only a -inf padding would be exact)
    "pool_max_k3s2": (lambda: H.golden_subnet("pool_max", ["max_k3s2"]), lambda: H.golden_inputs("pool_max"),
                      H.pool_port),
    "pool_ave_k3s2p1": (lambda: H.golden_subnet("pool_ave", ["ave_k3s2p1"]), lambda: H.golden_inputs("pool_ave"),
                        H.pool_port),
    "pool_max_k3s3p2": (lambda: H.golden_subnet("pool_max", ["max_k3s3p2"]), lambda: H.golden_inputs("pool_max"),
                        H.pool_port),
}
SAME_OR_ROUNDING = ("same_padding", "pool_rounding")  # a 'same' pooling of the wrong size: both name the fix


@functools.lru_cache(maxsize=None)
def _net(name):
    return NETS[name][0]()


@functools.lru_cache(maxsize=None)
def _inputs(name):
    return NETS[name][1]()


# (net, style, bug, first divergent Caffe layer, first cause); bug None: the correct port
CASES = [
    # LeNet: Sequential default names / separate activations + Dropout + NHWC Flatten with reordered rows /
    # functional with Caffe names and a differently named input / channels_first / NCHW input + Permute
    *[("lenet", s, None, None, None) for s in ("seq", "seq_sep", "seq_act", "func", "func_named", "nchw",
                                                 "nchw_permute")],
    ("lenet", "seq", "extra_relu", "conv1", "extra_layer"),  # Conv2D(activation="relu"): LeNet's conv has no ReLU
    ("lenet", "seq", "relu_slope", "relu1", "relu_slope"),  # Dense(activation="leaky_relu") fused: relu1 named
    ("lenet", "seq_sep", "relu_slope", "relu1", "relu_slope"),  # LeakyReLU(0.1) for a plain ReLU
    ("lenet", "seq", "reduced_precision", "conv2", "reduced_precision"),  # Conv2D(dtype="float16")
    ("lenet", "seq", "kernel_reshaped", "conv1", "kernel_reshaped"),
    ("lenet", "func", "kernel_flipped", "conv2", "kernel_flipped"),
    ("lenet", "seq", "kernel_axes_swapped", "conv2", "kernel_axes_swapped"),
    ("lenet", "func_named", "missing_bias_conv", "conv2", "missing_bias"),
    ("lenet", "nchw", "kernel_reshaped", "conv1", "kernel_reshaped"),
    ("lenet", "nchw_permute", "kernel_flipped", "conv2", "kernel_flipped"),
    ("lenet", "seq", "pool_rounding", "pool2", "pool_rounding"),  # MaxPooling2D valid (floor) vs Caffe's ceil
    ("lenet", "seq", "flatten_order", "ip1", "flatten_order"),  # Permute((3, 1, 2)) forgotten
    ("lenet", "seq_sep", "flatten_order", "ip1", "flatten_order"),  # rows not reordered for the NHWC Flatten
    ("lenet", "seq", "dense_reshaped", "ip1", "dense_reshaped"),  # Dense(relu) fused: ip1 + relu1, ip1 named
    ("lenet", "seq_sep", "dense_reshaped", "ip1", "dense_reshaped"),
    ("lenet", "seq", "missing_bias", "ip2", "missing_bias"),  # Dense(softmax) fused: ip2 + prob, ip2 named
    ("lenet", "seq", "no_softmax", "prob", "missing_layer"),  # the net output prob has no Keras counterpart
    ("lenet", "seq_sep", "no_softmax", "prob", "missing_layer"),
    ("lenet", "seq", "extra_softmax", "prob", "extra_layer"),  # Dense(softmax) then Softmax(): applied twice
    ("lenet", "seq", "no_relu", "relu1", "missing_layer"),  # Dense(500) without its ReLU
    ("lenet", "seq", "extra_relu_layer", "conv2", "extra_layer"),  # a ReLU() layer between pool1 and conv2
    ("lenet", "seq_sep", "extra_softmax", "prob", "extra_layer"),
    # legacy V1 net (Caffe input layer "input"): LRN as a custom layer, MaxPooling2D('same') = Caffe's ceil here,
    # Conv2D(groups=2)
    *[("legacy_v1", s, None, None, None) for s in ("seq", "func_named")],
    ("legacy_v1", "seq", "lrn_alpha_scaling", "norm1", "lrn_alpha_scaling"),
    ("legacy_v1", "func_named", "lrn_k", "norm1", "lrn_k"),
    ("legacy_v1", "seq", "pool_rounding", "pool1", "pool_rounding"),
    ("legacy_v1", "seq", "group_order", "conv2", "group_order"),
    # ResNet block: BatchNormalization for BatchNorm+Scale, Add, GlobalAveragePooling2D ((N, C) for Caffe's
    # (N, C, 1, 1)), Dense(softmax)
    *[("resnet_block", s, None, None, None) for s in ("func", "func_named", "func_act", "func_dyn",
                                                        "nchw_permute")],
    # NCHW input Reshape'd (not Permute'd) to NHWC; res_a's 4x4x4 output fits both layouts: the model's
    # channels_last layers decide how to read it
    ("resnet_block", "nchw_permute", "input_layout", "conv1", "input_layout"),
    ("resnet_block", "func_dyn", "bn_epsilon", "bn1", "bn_epsilon"),
    ("resnet_block", "func", "bn_epsilon", "bn1", "bn_epsilon"),
    ("resnet_block", "func_named", "bn_scale_factor", "bn1", "bn_scale_factor"),
    ("resnet_block", "func", "kernel_reshaped", "conv1", "kernel_reshaped"),
    ("resnet_block", "func_act", "kernel_flipped", "conv1", "kernel_flipped"),
    ("resnet_block", "func", "channel_order", "conv1", "channel_order"),  # BGR weights on RGB data
    ("resnet_block", "func_act", "bn_weight_order", "bn1", "bn_weight_order"),  # set_weights([beta, gamma, ...])
    # BatchNormalization(center=False): Scale's bias dropped; the span is bn_a + scale_a, scale_a introduced it
    ("resnet_block", "func", "bn_no_beta", "scale_a", "missing_bias"),
    ("resnet_block", "func_named", "input_layout", "conv1", "input_layout"),  # Permute + Reshape, not transpose
    # MaxPooling2D('same') on the 9x8 map gives 5x4, Caffe's ceil 4x4: not equal here, must fail
    ("resnet_block", "func", "pool_same", "pool1", "same_padding"),
    # conv_basic, four outputs: ZeroPadding2D + valid, padding='same' where it is symmetric (k7 s2 p3 on odd sizes)
    *[("conv_basic", s, None, None, None) for s in ("func", "func_named")],
    ("conv_basic", "func", "same_padding", "conv_rect", "same_padding"),  # 'same' on a 3x2 kernel: other shape
    ("conv_basic", "func_named", "padding_offset", "conv_rect", "padding_offset"),  # pad (2, 0) instead of (1, 1)
    ("conv_basic", "func", "kernel_reshaped", "conv_1x1_nobias", "kernel_reshaped"),  # 1x1: a reshape mixes C
    ("conv_basic", "func", "kernel_flipped", "conv_s2_k7p3", "kernel_flipped"),
    ("conv_basic", "func", "missing_bias", "conv_s4_k11", "missing_bias"),
    # groups -> Conv2D(groups=2); depthwise -> DepthwiseConv2D (multiplier 1 and 2); dilation
    *[("conv_group", s, None, None, None) for s in ("func", "func_named")],
    ("conv_group", "func", "group_order", "conv_g2", "group_order"),
    ("conv_group", "func", "kernel_reshaped", "conv_dw", "kernel_reshaped"),
    ("conv_group", "func_named", "kernel_flipped", "conv_dil2", "kernel_flipped"),
    # Conv2DTranspose + Cropping2D (the compared output is the crop's)
    *[("deconv", s, None, None, None) for s in ("func", "func_named")],
    ("deconv", "func", "kernel_flipped", "deconv_s2_k4_p1", "kernel_flipped"),
    ("deconv", "func", "padding_offset", "deconv_s2_k4_p1", "padding_offset"),  # cropped (2, 0) not (1, 1)
    # InnerProduct: after Permute + Flatten, after Caffe's Flatten (NHWC Flatten + reordered rows), axis 2,
    # transpose: true
    *[("inner_product", s, None, None, None) for s in ("func", "func_named")],
    ("inner_product", "func", "dense_reshaped", "fc_implicit", "dense_reshaped"),
    ("inner_product", "func", "flatten_order", "fc_after_flatten", "flatten_order"),
    # AlexNet-like (zoo AlexNet, narrow heads): LRN custom layer, groups, 'same' pooling where equal, explicit pad
    # where not (pool5), Dropout
    *[("alexnet", s, None, None, None) for s in ("seq", "func_named")],
    ("alexnet", "seq", "kernel_reshaped", "conv1", "kernel_reshaped"),  # the motivating question's bug
    ("alexnet", "seq", "lrn_alpha_scaling", "norm1", "lrn_alpha_scaling"),
    ("alexnet", "seq", "group_order", "conv2", "group_order"),
    ("alexnet", "seq", "no_lrn", "norm1", "missing_layer"),
    ("alexnet", "seq", "dense_not_transposed", "fc7", "dense_not_transposed"),
    ("alexnet", "func_named", "channel_order", "conv1", "channel_order"),  # norm1 left out; norm2 must not be taken for it
    ("alexnet", "func_named", "dense_reshaped", "fc6", "dense_reshaped"),
    # MobileNet v1 (zoo, 64x48, seeded calibrated weights), layer by layer as keras.applications writes it
    *[("mobilenet", s, None, None, None) for s in ("seq", "func_named", "gap_dense")],
    ("mobilenet", "gap_dense", "missing_bias", "fc7", "missing_bias"),  # fc7 (1x1 conv on 1x1) as a Dense
    ("mobilenet", "seq", "same_padding", "conv2_2/dw", "same_padding"),  # DepthwiseConv2D(strides=2, 'same')
    ("mobilenet", "seq", "kernel_reshaped", "conv3_1/dw", "kernel_reshaped"),  # depthwise kernel reshaped
    ("mobilenet", "func_named", "dense_kernel", "conv4_1/sep", "kernel_reshaped"),  # 1x1 pointwise reshaped
    ("mobilenet", "seq", "bn_epsilon", "conv1/bn", "bn_epsilon"),  # every BatchNormalization at Keras' 1e-3
    ("mobilenet", "seq", "missing_bias", "fc7", "missing_bias"),
    # inception branches + Concatenate (positional matching over four branches with default names)
    *[("inception", s, None, None, None) for s in ("func", "func_named", "func_reordered")],
    ("inception", "func", "concat_order", "concat", "concat_order"),
    ("inception", "func", "kernel_flipped", "b3", "kernel_flipped"),
    # two BatchNorms in place then Scale: BatchNormalization(center=False, scale=False) + BatchNormalization
    *[("batchnorm_scale", s, None, None, None) for s in ("func", "func_named")],
    ("batchnorm_scale", "func", "bn_epsilon", "bn_inplace", "bn_epsilon"),  # 1e-5 where Caffe says eps: 0.001
    ("batchnorm_scale", "func_named", "bn_scale_factor", "bn", "bn_scale_factor"),
    # parallel activations of one shape (ReLU, LeakyReLU, PReLU per channel and shared, ELU, sigmoid, tanh), also
    # written in another order than the prototxt: matched by their parameters
    *[("activations", s, None, None, None) for s in ("func", "func_reordered")],
    ("activations", "func_reordered", "relu_slope", "leaky", "relu_slope"),  # LeakyReLU 0.3 for slope 0.1
    # pooling
    ("pool_max_same_ok", "same", None, None, None),
    ("pool_ave_same_ok", "same", None, None, None),
    ("pool_floor", "func", None, None, None),  # floor MAX valid; floor AVE pad 1 = ZeroPadding2D + valid
    ("pool_floor", "same", "pool_same", "max_floor", SAME_OR_ROUNDING),
    ("pool_max_k3s2", "same", "pool_same", "max_k3s2", SAME_OR_ROUNDING),  # 'same' 5x6, Caffe ceil 4x6
    ("pool_ave_k3s2p1", "same", "pool_same", "ave_k3s2p1", SAME_OR_ROUNDING),
    ("pool_max_k3s3p2", "func", "pool_pad_value", "max_k3s3p2", "pool_pad_value"),  # ZeroPadding2D before MAX
]


def _id(case):
    net, style, bug, _, _ = case
    return f"{net}-{style}-{bug or 'correct'}"


def _check(rep, case):
    net, style, bug, want_layer, want_cause = case
    if bug is None:
        assert rep, f"{_id(case)}: the correct port must pass\n{rep.verdict()}"
        assert rep.first_divergence is None and not rep.output_problems
        assert not rep.unmatched_caffe, rep.unmatched_caffe  # every Caffe layer found its Keras counterpart
        return
    assert not rep, f"{_id(case)}: the buggy port passed"
    fd = rep.first_divergence
    assert fd is not None, rep.verdict()
    assert fd.caffe_layer == want_layer, f"{_id(case)}: first divergence {fd.caffe_layer}, want {want_layer}"
    assert fd.diagnosis, rep.verdict()
    got = fd.diagnosis[0]
    code = got["cause"] if isinstance(got, dict) else got.cause
    want = (want_cause,) if isinstance(want_cause, str) else want_cause
    assert code in want, f"{_id(case)}: ranked {[getattr(c, 'cause', c) for c in fd.diagnosis[:3]]}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_handwritten_port(case):
    from harness.compare import compare

    net, style, bug, _, _ = case
    model = NETS[net][2](_net(net), style, bug)
    rep = compare(_net(net), model, _inputs(net))
    _check(rep, case)
    if bug is None:  # the model's own outputs are Caffe's net outputs, end to end
        from harness.reference import forward

        x = _inputs(net)["data"]
        ys = model(x if style.startswith("nchw") else x.transpose(0, 2, 3, 1))
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        ref = forward(_net(net), _inputs(net))
        last = {top: key for lay in _net(net).layers for top, key in zip(lay.tops, lay.keys())}
        refs = [np.asarray(ref[last[top]]) for top in _net(net).outputs]
        assert len(ys) == len(refs)
        for y in ys:  # each Keras output is one of Caffe's (a port may list them in another order)
            y = np.asarray(y)
            y = y.transpose(0, 3, 1, 2) if y.ndim == 4 and not style.startswith("nchw") else y
            assert any(y.size == r.size and np.allclose(y.reshape(r.shape), r, rtol=1e-4,
                                                        atol=1e-5 * float(np.abs(r).max())) for r in refs)


# ------------------------------------------------------------------------------------------------------ the CLI
CLI_CASES = [
    ("lenet", "seq", None, None, None),
    ("lenet", "nchw", None, None, None),
    ("lenet", "seq", "kernel_reshaped", "conv1", "kernel_reshaped"),
    ("lenet", "seq_sep", "flatten_order", "ip1", "flatten_order"),
    ("lenet", "seq", "no_softmax", "prob", "missing_layer"),
    ("lenet", "seq", "extra_softmax", "prob", "extra_layer"),
    ("lenet", "seq", "relu_slope", "relu1", "relu_slope"),
    ("resnet_block", "func", None, None, None),
    ("resnet_block", "func", "bn_epsilon", "bn1", "bn_epsilon"),
    ("resnet_block", "func", "pool_same", "pool1", "same_padding"),
    ("resnet_block", "nchw_permute", None, None, None),
    ("conv_basic", "func", None, None, None),
    ("conv_basic", "func", "same_padding", "conv_rect", "same_padding"),
    ("inner_product", "func_named", None, None, None),
    ("inner_product", "func", "flatten_order", "fc_after_flatten", "flatten_order"),
    ("pool_floor", "same", "pool_same", "max_floor", SAME_OR_ROUNDING),
]


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    """Prototxt, weights and NCHW input of each net on disk (LeNet's seeded weights as .npz)."""
    d = tmp_path_factory.mktemp("handwritten")
    out = {}
    for name in ("lenet", "resnet_block", "conv_basic", "inner_product", "pool_floor"):
        if name == "lenet":
            proto = d / "lenet.prototxt"
            text = (ZOO / "lenet.prototxt").read_text()
            dims = " ".join(f"dim: {d}" for d in H.LENET_SHAPE)
            proto.write_text(re.sub(r"shape\s*\{[^}]*\}", "shape { " + dims + " }", text, count=1))
            net = _net(name)
            weights = d / "lenet.npz"
            np.savez(weights, **{f"{lay.name}/{i}": np.asarray(b) for lay in net.layers
                                 for i, b in enumerate(lay.blobs)})
        else:
            proto, weights = GOLDEN / name / "net.prototxt", GOLDEN / name / "weights.caffemodel"
        x = d / f"{name}.npy"
        np.save(x, _inputs(name)["data"])
        out[name] = (proto, weights, x)
    return out


@pytest.mark.parametrize("case", CLI_CASES, ids=_id)
def test_handwritten_port_cli(case, cli_files, tmp_path, capsys):
    """The user's route: the port saved to .keras, reloaded in safe mode by `caffe-harness check --json`."""
    from harness.caffe import load_net
    from harness.cli import main

    net, style, bug, _, _ = case
    proto, weights, x = cli_files[net]
    assert tuple(load_net(proto).inputs["data"]) == _inputs(net)["data"].shape
    path = tmp_path / "port.keras"
    NETS[net][2](_net(net), style, bug).save(path)
    rc = main(["check", str(proto), "--weights", str(weights), "--keras", str(path), "--input", f"data={x}",
               "--json", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml"), "--no-table"])
    out, err = capsys.readouterr()
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rc == (0 if bug is None else 1), out + err
    assert rep["equivalent"] is (bug is None)
    suite = ET.parse(tmp_path / "r.xml").getroot().find("testsuite")
    assert (int(suite.get("failures")) > 0) is (bug is not None)  # a missing output is a failing case too
    if bug is None:
        assert rep["first_divergence"] is None and not rep["unmatched"]["outputs"]
        return
    _, _, _, want_layer, want_cause = case
    fd = rep["first_divergence"]
    assert fd["caffe_layer"] == want_layer, out
    want = (want_cause,) if isinstance(want_cause, str) else want_cause
    assert fd["diagnosis"][0]["cause"] in want, out
    assert want_layer in out and fd["diagnosis"][0]["cause"] in out


@pytest.mark.parametrize("net,style,how", [
    ("lenet", "seq", {"position"}),  # default names: conv2d, conv2d_1, max_pooling2d, dense ...
    ("lenet", "func_named", {"name"}),
    ("mobilenet", "func_named", {"name"}),  # "conv1_bn" for Caffe's "conv1/bn"
    ("inception", "func_reordered", {"position"}),
])
def test_how_layers_are_matched(net, style, how):
    from harness.compare.engine.match import match
    from harness.reference import forward

    shapes = {k: tuple(v.shape) for k, v in forward(_net(net), _inputs(net)).items()}  # as compare() passes them
    m = match(_net(net), NETS[net][2](_net(net), style, None), shapes=shapes)
    assert {p.matched_by for p in m.pairs} == how
    assert not m.unmatched_caffe and not m.unmatched_keras
    # every pair's Keras layer computes that Caffe layer: its name, when it has a Caffe one, is the Caffe layer's
    for p in m.pairs:
        if how == {"name"}:
            assert p.keras_layer.replace("_", "/") in {s.replace("_", "/") for s in p.segment}, p


def test_batchnormalization_named_after_the_scale_layer_covers_batchnorm_and_scale():
    """A port naming its BatchNormalization after Caffe's Scale ("scale1") pairs with BatchNorm + Scale, as one
    named after the BatchNorm does: a factor blob ignored is bn_scale_factor, a wrong epsilon bn_epsilon (both were
    'unknown' / 'reduced_precision' when the pair covered the Scale alone)."""
    import keras
    import numpy as np
    from keras import layers as L

    from harness.caffe import load_net_text
    from harness.compare import compare
    from harness.weights import random_weights

    net = random_weights(load_net_text("""name: "bnscale"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 7 dim: 5 } } }
layer { name: "bn1" type: "BatchNorm" bottom: "data" top: "data" }
layer { name: "scale1" type: "Scale" bottom: "data" top: "data" scale_param { bias_term: true } }
"""), 4)
    mean, var, fac = (np.asarray(b, np.float64) for b in net.layer("bn1").blobs)
    gamma, beta = (np.asarray(b, np.float32) for b in net.layer("scale1").blobs)
    assert abs(float(fac[0]) - 1.0) > 0.1  # the factor matters

    def port(*, factor: bool = True, eps: float = 1e-5):
        f = 1.0 / float(fac[0]) if factor else 1.0
        inp = keras.Input((7, 5, 3))
        bn = L.BatchNormalization(epsilon=eps, name="scale1")
        out = bn(inp)
        bn.set_weights([gamma, beta, (mean * f).astype(np.float32), (var * f).astype(np.float32)])
        return keras.Model(inp, out)

    x = np.random.default_rng(1).standard_normal((2, 3, 7, 5)).astype(np.float32)
    ok = compare(net, port(), x)
    assert ok and [lr.segment for lr in ok.layers] == [("bn1", "scale1")]
    for kwargs, want in [({"factor": False}, "bn_scale_factor"), ({"eps": 1e-3}, "bn_epsilon")]:
        rep = compare(net, port(**kwargs), x)
        assert not rep and rep.first_divergence.diagnosis[0].cause == want, rep.verdict()
