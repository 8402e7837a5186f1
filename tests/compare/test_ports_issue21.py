"""Issue 21, items 3, 4 and 6, on hand-written ports: every axis order of a flattened blob (``flatten_order``), a
channel-shared PReLU slope of another value, PReLU/LRN/pooling parameter evidence, and the fix text of a MAX pool
after a PReLU.  Each bug's fix, applied to the port as its text says, makes the port equivalent."""

from __future__ import annotations

import re

import numpy as np
import pytest

from harness.caffe import load_net_text
from harness.compare import compare
from harness.weights import random_weights

N, C, H, W = 2, 3, 5, 7  # the input; conv1 keeps 5x7 (pad 1) with 4 channels


def _keras():
    import keras

    return keras


FC_NET = f"""
name: "fc"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: {N} dim: {C} dim: {H} dim: {W} }} }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 4 kernel_size: 3 pad: 1 }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param {{ num_output: 6 }} }}
"""


def _fc_port(net, permute: tuple[int, int, int] | None, rows: tuple[int, int, int], kernel=None):
    """Conv2D -> [Permute(permute)] -> Flatten -> Dense whose kernel holds Caffe's rows in the NCHW axis order
    ``rows`` (C=1, H=2, W=3): a correct port when the Flatten gives that order."""
    keras = _keras()
    cw, cb = (np.asarray(b, np.float32) for b in net.layer("conv1").blobs)
    fw, fb = (np.asarray(b, np.float32) for b in net.layer("fc").blobs)
    inp = keras.Input((H, W, C))
    conv = keras.layers.Conv2D(4, 3, padding="same", name="conv1")
    x = conv(inp)
    if permute is not None:
        x = keras.layers.Permute(permute)(x)
    dense = keras.layers.Dense(6, name="fc")
    out = dense(keras.layers.Flatten()(x))
    conv.set_weights([cw.transpose(2, 3, 1, 0), cb])
    k = fw.reshape(6, 4, H, W).transpose(*rows, 0).reshape(4 * H * W, 6) if kernel is None else kernel
    dense.set_weights([k, fb])
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def fc_net():
    return random_weights(load_net_text(FC_NET), 3)


X = np.random.default_rng(0).standard_normal((N, C, H, W)).astype(np.float32)


def _fc(r):
    return next(lr for lr in r.layers if lr.caffe_layer == "fc")


@pytest.mark.parametrize("permute, rows, name", [
    (None, (2, 3, 1), "H, W, C"),          # NHWC's own Flatten, rows reordered
    ((2, 1, 3), (3, 2, 1), "W, H, C"),     # Permute((2, 1, 3)): W, H, C
    ((3, 1, 2), (1, 2, 3), None),          # Permute((3, 1, 2)): Caffe's own C, H, W
    ((3, 2, 1), (1, 3, 2), "C, W, H"),
])
def test_a_correct_port_flattening_in_any_order_is_equivalent_and_its_kernel_reads_equal(fc_net, permute, rows,
                                                                                         name):
    r = compare(fc_net, _fc_port(fc_net, permute, rows), X)
    assert r.equivalent, r.table()
    check = _fc(r).params["checks"][0]
    assert check["what"] == "kernel"
    assert check["result"] == ("equal" if name is None else f"equal (rows in {name} order)"), check
    assert _fc(r).params["status"] == "equal"


def test_a_dropped_permute_before_flatten_is_flatten_order_and_both_fixes_work(fc_net):
    keras = _keras()
    # the port flattens W, H, C (Permute((2, 1, 3))) and its kernel rows follow; the Permute is dropped
    bug = _fc_port(fc_net, None, (3, 2, 1))
    r = compare(fc_net, bug, X)
    fd = r.first_divergence
    assert fd is not None and fd.caffe_layer == "fc", r.table()
    top = fd.diagnosis[0]
    assert top.cause == "flatten_order" and top.confidence >= 0.9, fd.diagnosis
    assert "H, W, C order" in top.explanation and "W, H, C order" in top.explanation, top.explanation
    assert "add keras.layers.Permute((2, 1, 3)) before Flatten" in top.fix, top.fix
    # the fix as written: the Permute it names, before Flatten
    assert compare(fc_net, _fc_port(fc_net, (2, 1, 3), (3, 2, 1)), X).equivalent
    # or its kernel expression, evaluated on Caffe's weights
    m = re.search(r"kernel = (W[.\w(), 0-9]+?)(?: \(|$)", top.fix)
    assert m, top.fix
    fw = np.asarray(fc_net.layer("fc").blobs[0], np.float32)
    kernel = eval(m.group(1), {"W": fw})  # noqa: S307 - the fix's own numpy expression
    r2 = compare(fc_net, _fc_port(fc_net, None, (3, 2, 1), kernel=kernel), X)
    assert r2.equivalent, r2.table()
    assert keras is not None


def test_the_plain_nhwc_flatten_order_bug_keeps_its_fix(fc_net):
    # Flatten on NHWC, rows left in Caffe's C, H, W order: the classic case, its fix text unchanged
    r = compare(fc_net, _fc_port(fc_net, None, (1, 2, 3)), X)
    top = r.first_divergence.diagnosis[0]
    assert top.cause == "flatten_order"
    assert "kernel = W.reshape(6, 4, 5, 7).transpose(2, 3, 1, 0).reshape(140, 6)" in top.fix, top.fix
    assert "Permute((3, 1, 2)) before Flatten" in top.fix


# ------------------------------------------------------------------------------------------------------------------
# 4. PReLU slopes; PReLU, LRN and pooling parameters as evidence

def _prelu_net(shared: bool, pool: str = "", h: int = H, w: int = W) -> str:
    return f"""
name: "pr"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: {N} dim: {C} dim: {h} dim: {w} }} }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 4 kernel_size: 3 pad: 1 }} }}
layer {{ name: "prelu1" type: "PReLU" bottom: "conv1" top: "conv1"
  prelu_param {{ channel_shared: {'true' if shared else 'false'} }} }}
{pool}"""


def _prelu_port(net, alpha: np.ndarray, shared_axes, pool=None, h: int = H, w: int = W):
    keras = _keras()
    cw, cb = (np.asarray(b, np.float32) for b in net.layer("conv1").blobs)
    inp = keras.Input((h, w, C))
    conv = keras.layers.Conv2D(4, 3, padding="same", name="conv1")
    pr = keras.layers.PReLU(shared_axes=shared_axes, name="prelu1")
    x = pr(conv(inp))
    for lay in pool or []:
        x = lay(x)
    model = keras.Model(inp, x)
    conv.set_weights([cw.transpose(2, 3, 1, 0), cb])
    pr.set_weights([np.asarray(alpha, np.float32).reshape(pr.get_weights()[0].shape)])
    return model


def _prelu(r):
    return next(lr for lr in r.layers if lr.caffe_layer == "prelu1")


def _apply_prelu_fix(fix: str, net, shared: bool, caffe_alpha: np.ndarray, pool=None, h: int = H, w: int = W):
    """The fix text's PReLU, its numbers read from the text itself."""
    if shared:
        m = re.search(r"PReLU\(shared_axes=\[1, 2, 3\], alpha_initializer=keras\.initializers\.Constant\(([-\d.e]+)\)",
                      fix)
        assert m, fix
        return _prelu_port(net, np.array([float(m.group(1))]), [1, 2, 3], pool, h, w)
    m = re.search(r"PReLU\(shared_axes=\[1, 2\]\) with alpha of shape \(1, 1, (\d+)\) = \[([^\]]+)\]", fix)
    assert m, fix
    vals = np.array([float(v) for v in m.group(2).split(",")])
    assert int(m.group(1)) == vals.size == caffe_alpha.size
    return _prelu_port(net, vals, [1, 2], pool, h, w)


def test_a_channel_shared_prelu_slope_of_another_value_is_named_and_fixed():
    net = random_weights(load_net_text(_prelu_net(True)), 1)
    a = np.asarray(net.layer("prelu1").blobs[0], np.float64).reshape(-1)
    good = compare(net, _prelu_port(net, a, [1, 2, 3]), X)
    assert good.equivalent, good.table()
    assert _prelu(good).params == {"status": "equal", "checks": [{"what": "alpha", "result": "equal", "caffe": None,
                                                                   "keras": None}]}
    r = compare(net, _prelu_port(net, np.array([0.25]), [1, 2, 3]), X)  # Keras' usual 0.25, not Caffe's slope
    fd = r.first_divergence
    assert fd is not None and fd.caffe_layer == "prelu1", r.table()
    top = fd.diagnosis[0]
    assert top.cause == "relu_slope" and top.confidence >= 0.9, fd.diagnosis
    assert "one slope 0.25" in top.explanation and f"{a[0]:.6g}" in top.explanation, top.explanation
    check = _prelu(r).params["checks"][0]
    assert (check["what"], check["result"], check["keras"]) == ("alpha", "different", 0.25)
    assert check["caffe"] == pytest.approx(a[0])
    assert compare(net, _apply_prelu_fix(top.fix, net, True, a), X).equivalent


def test_per_channel_slopes_given_one_shared_value_are_named_and_fixed():
    net = random_weights(load_net_text(_prelu_net(False)), 2)
    a = np.asarray(net.layer("prelu1").blobs[0], np.float64).reshape(-1)
    r = compare(net, _prelu_port(net, np.array([a.mean()]), [1, 2, 3]), X)
    top = r.first_divergence.diagnosis[0]
    assert (r.first_divergence.caffe_layer, top.cause) == ("prelu1", "relu_slope"), r.first_divergence.diagnosis
    assert "4 per-channel slopes" in top.explanation
    assert _prelu(r).params["checks"][0]["result"] == "different"
    # reversed per-channel slopes: evidence and cause agree
    rev = compare(net, _prelu_port(net, a[::-1], [1, 2]), X)
    assert _prelu(rev).params["checks"][0]["result"] == "channel order reversed"
    assert rev.first_divergence.diagnosis[0].cause == "channel_order"
    assert compare(net, _apply_prelu_fix(top.fix, net, False, a), X).equivalent


def test_lrn_and_pooling_parameters_are_read_as_evidence():
    keras = _keras()
    from harness.compare.engine.evidence import evidence
    from harness.compare.engine.match import Pair
    from harness.convert.custom_layers import CaffeLRN

    net = load_net_text(f"""
name: "lp"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: {N} dim: {C} dim: {H} dim: {W} }} }} }}
layer {{ name: "norm1" type: "LRN" bottom: "data" top: "norm1" lrn_param {{ local_size: 5 alpha: 0.0001 beta: 0.75 }} }}
layer {{ name: "pool1" type: "Pooling" bottom: "norm1" top: "pool1" pooling_param {{ pool: MAX kernel_size: 3 stride: 2 }} }}
""")
    inp = keras.Input((H, W, C))

    def ev(layer, name):
        layer(inp)
        return evidence(net, Pair(f"{name}/{name}", name, name, layer.name, 0, "nhwc", "name"), layer)

    right = ev(CaffeLRN(local_size=5, alpha=0.0001, beta=0.75, k=1.0, region="ACROSS_CHANNELS"), "norm1")
    assert right["status"] == "equal" and [c["what"] for c in right["checks"]] == ["local_size", "alpha", "beta", "k"]
    wrong = ev(CaffeLRN(local_size=5, alpha=0.0001 / 5, beta=0.75, k=1.0, region="ACROSS_CHANNELS"), "norm1")
    alpha = next(c for c in wrong["checks"] if c["what"] == "alpha")
    assert wrong["status"] == "different" and alpha["result"] == "different"
    assert alpha["caffe"] == pytest.approx(1e-4) and alpha["keras"] == pytest.approx(2e-5)
    pool_ok = ev(keras.layers.MaxPooling2D(3, 2), "pool1")
    assert [(c["what"], c["result"]) for c in pool_ok["checks"]][:3] == [("method", "equal"), ("pool size", "equal"),
                                                                         ("stride", "equal")]
    pool_bad = ev(keras.layers.AveragePooling2D(2, 2), "pool1")
    got = {c["what"]: (c["result"], c["caffe"], c["keras"]) for c in pool_bad["checks"]}
    assert got["method"] == ("different", "MAX", "AVE") and got["pool size"] == ("different", [3, 3], [2, 2])


# ------------------------------------------------------------------------------------------------------------------
# 6. fix texts exact and writable: a MAX pool after a PReLU

_POOL = 'layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param {{ pool: MAX ' \
        'kernel_size: 3 stride: 2 {pad} }} }}'


def _pool_run(pad: int, keras_pool):
    h, w = 12, 14
    net = random_weights(load_net_text(_prelu_net(False, _POOL.format(pad=f"pad: {pad}" if pad else ""), h, w)), 4)
    a = np.asarray(net.layer("prelu1").blobs[0], np.float64).reshape(-1)
    x = np.random.default_rng(1).standard_normal((N, C, h, w)).astype(np.float32)
    return net, x, compare(net, _prelu_port(net, a, [1, 2], keras_pool, h, w), x), a


def _apply_pool_fix(fix: str, net, x, a):
    keras = _keras()
    from harness.convert.custom_layers import CaffeConstantPad2D

    m = re.search(r"MaxPooling2D\(pool_size=\((\d+), (\d+)\), strides=\((\d+), (\d+)\), padding='(same|valid)'\)",
                  fix)
    assert m, fix
    k, s, padding = (int(m.group(1)), int(m.group(2))), (int(m.group(3)), int(m.group(4))), m.group(5)
    layers = []
    p = re.search(r"CaffeConstantPad2D\(padding=\(\((\d+), (\d+)\), \((\d+), (\d+)\)\), value='-inf'\)", fix)
    if p and fix.index(p.group(0)) < fix.index(m.group(0)):
        pads = ((int(p.group(1)), int(p.group(2))), (int(p.group(3)), int(p.group(4))))
        layers.append(CaffeConstantPad2D(padding=pads, value="-inf"))
    layers.append(keras.layers.MaxPooling2D(k, s, padding=padding))
    return compare(net, _prelu_port(net, a, [1, 2], layers, 12, 14), x)


def test_a_max_pool_after_a_prelu_gets_padding_same_first_where_it_is_exact():
    keras = _keras()
    # Caffe: 3x3 stride 2, no pad, ceil: 12x14 -> 6x7; the port pools 'valid' (floor: 5x6)
    net, x, r, a = _pool_run(0, [keras.layers.MaxPooling2D(3, 2)])
    fd = r.first_divergence
    assert fd.caffe_layer == "pool1" and fd.diagnosis[0].cause == "pool_rounding", fd.diagnosis
    fix = fd.diagnosis[0].fix
    assert fix.startswith("use keras.layers.MaxPooling2D(pool_size=(3, 3), strides=(2, 2), padding='same')"), fix
    assert "keras.ops.pad" not in fix and "Lambda" not in fix
    assert _apply_pool_fix(fix, net, x, a).equivalent


def test_a_padded_max_pool_after_a_prelu_is_padded_with_minus_inf_by_a_loadable_layer():
    keras = _keras()
    # pad 1: 'same' would give 6x7 windows at offset 0, Caffe gives 7x8 at offset -1: not 'same'
    net, x, r, a = _pool_run(1, [keras.layers.ZeroPadding2D(1), keras.layers.MaxPooling2D(3, 2)])
    fd = r.first_divergence
    assert fd.caffe_layer == "pool1", r.table()
    top = fd.diagnosis[0]
    assert "padding='same'" not in top.fix.split(" (")[0], top.fix
    assert "CaffeConstantPad2D(padding=((1, 2), (1, 2)), value='-inf')" in top.fix, (top.cause, top.fix)
    assert "keras.ops.pad" not in top.fix
    assert _apply_pool_fix(top.fix, net, x, a).equivalent
