"""The Python API on live port objects: every correct port EQUIVALENT, every bug at its layer with its cause, every
fix text applied literally (the port edited as the text says) and re-checked EQUIVALENT."""

from __future__ import annotations

import re

import numpy as np
import pytest

import _p7_build as B
import _p7_mtcnn as M
import _p7_ports as P
from conftest import summary


def check(nets, model, key=None, **kw):
    import harness

    proto, w, x = nets[key]
    return summary(harness.compare(str(proto), model, {"data": x}, weights=str(w), **kw))


CORRECT = [  # (port, inputs key, compare kwargs)
    ("pnet_sub", "pnet", {}),
    ("pnet_sub", "pnet40", {}),                   # a second size (the prototxt says 27 x 35)
    ("rnet_sub", "rnet", {}),
    ("onet_sub", "onet", {}),
    ("rnet_nested", "rnet", {}),                  # Functional heads around a subclassed backbone
    ("rnet_wrap", "rnet", {}),                    # keras.Model(i, port(i))
    ("pnet_fn", "pnet", {}),                      # heads named the other way round, fused softmax
    ("pnet_fn", "pnet40", {}),
    ("onet_fn", "onet", {}),                      # three heads, names rotated
    ("pnet_ops", "pnet40", {}),                   # keras.ops.softmax in call()
    ("rnet_ops", "rnet", {}),                     # keras.ops transpose + reshape instead of Permute + Flatten
    ("pnet_fn", "pnet", {"user_map": {"conv4-1": "conv4-2", "conv4-2": "conv4-1"}}),   # --map the intuitive swap
]


@pytest.mark.parametrize("name,key,kw", CORRECT, ids=[f"{c[0]}-{c[1]}{'-map' if c[2] else ''}" for c in CORRECT])
def test_correct_port_equivalent(nets, name, key, kw):
    net, build = B.PORTS[name]
    s = check(nets, build(), key, **kw)
    assert s["equivalent"], (s["first"], s["causes"], s["fix"])
    assert s["first"] is None
    assert s["unmatched"] == {"caffe": [], "keras": [], "outputs": []}
    paired = {row["caffe_layer"] for row in s["layers"]}
    heads = {"pnet": {"conv4-2", "prob1"}, "rnet": {"conv5-2", "prob1"}, "onet": {"conv6-2", "conv6-3", "prob1"}}[net]
    assert heads <= paired and "conv1" in paired
    # parameter evidence: nothing of a correct port reads different; every PReLU's alpha is read and equal
    evidence = {row["caffe_layer"]: row["params"] for row in s["layers"] if row["params"]}
    assert [k for k, p in evidence.items() if p["status"] == "different"] == [], evidence
    prelus = [k for k in paired if k.lower().startswith("prelu")]
    assert prelus and all(("alpha", "equal") in [(c["what"], c["result"]) for c in evidence[k]["checks"]]
                          for k in prelus), {k: evidence.get(k) for k in prelus}


BUGS = [  # (port, inputs key, first divergent Caffe layer, cause)
    ("pnet_fn_reshape", "pnet", "conv2", "kernel_reshaped"),
    ("rnet_sub_shared", "rnet", "prelu2", "relu_slope"),
    ("rnet_nested_shared", "rnet", "prelu2", "relu_slope"),
    ("rnet_nested_shared4", "rnet", "prelu4", "relu_slope"),
    ("rnet_sub_noperm", "rnet", "conv4", "flatten_order"),
    ("onet_fn_noperm", "onet", "conv5", "flatten_order"),
    ("rnet_ops_noperm", "rnet", "conv4", "flatten_order"),
    ("pnet_sub_valid", "pnet", "pool1", "pool_rounding"),
    ("pnet_fn_valid", "pnet40", "pool1", "pool_rounding"),
]


@pytest.mark.parametrize("name,key,layer,cause", BUGS, ids=[f"{b[0]}-{b[1]}" for b in BUGS])
def test_bug_at_its_layer(nets, name, key, layer, cause):
    s = check(nets, B.PORTS[name][1](), key)
    assert not s["equivalent"]
    assert (s["first"], s["causes"][:1]) == (layer, [cause]), (s["first"], s["causes"], s["fix"])


def test_prelu_alpha_evidence_on_the_shared_slope(nets):
    s = check(nets, B.PORTS["rnet_sub_shared"][1](), "rnet")
    params = {row["caffe_layer"]: row["params"] for row in s["layers"]}
    assert params["prelu2"]["status"] == "different"
    assert ("alpha", "different") in [(c["what"], c["result"]) for c in params["prelu2"]["checks"]]
    assert params["prelu1"]["status"] == "equal"


def test_pool_padding_evidence_on_the_valid_pooling(nets):
    s = check(nets, B.PORTS["pnet_sub_valid"][1](), "pnet")
    checks = {row["caffe_layer"]: {c["what"]: c["result"] for c in row["params"]["checks"]} for row in s["layers"]
              if row["params"]}
    assert checks["pool1"].get("padding", "").startswith("different"), checks["pool1"]


# ------------------------------------------------------------------------------------------ fixes applied

def _eval(expr, **names):
    import keras

    return eval(expr, {"keras": keras, "np": np, **names})  # noqa: S307 (the fix text is the harness's own)


def _one(pattern, text):
    found = re.findall(pattern, text)
    assert found, f"fix text has no {pattern!r}: {text}"
    return found[0]


def fix_kernel_transpose(fix):
    """kernel_reshaped: 'use w.transpose(2, 3, 1, 0) ...' on the port's conv2."""
    expr = _one(r"w\.transpose\([\d, ]+\)", fix)
    m = B.PORTS["pnet_fn_reshape"][1]()
    w, b = M.caffe_blobs("pnet")["conv2"]
    m.get_layer("conv2").set_weights([_eval(expr, w=w), b])
    return m


def _prelu_from_fix(fix, layer_name, blob):
    """keras.layers.PReLU(...) from the fix, its weights set as the fix's np.reshape(a, SHAPE) says."""
    ctor = _one(r"keras\.layers\.PReLU\([^()]*(?:\[[^\]]*\])?[^()]*\)", fix)
    shape = _one(r"np\.reshape\(a, (\([\d, ]+\))\)", fix)
    layer = _eval(ctor.replace("PReLU(", f"PReLU(name={layer_name!r}, ", 1))
    return layer, _eval(f"np.reshape(a, {shape})", a=blob)


def fix_prelu_sub(fix):
    import keras

    layer, alpha = _prelu_from_fix(fix, "prelu2", M.caffe_blobs("rnet")["prelu2"][0])
    m = P.RNet(shared="prelu2", overrides={"prelu2": layer})
    m(keras.Input((24, 24, 3)))
    P.load_trained(m, "rnet", B.sd("rnet"))
    layer.set_weights([alpha])
    return m


def fix_prelu_dense(fix):
    """The shared PReLU after dense4 (inside the nested backbone) replaced as the fix says."""
    layer, alpha = _prelu_from_fix(fix, "prelu4", M.caffe_blobs("rnet")["prelu4"][0])
    m = P.load_trained(P.rnet_nested(shared="prelu4", overrides={"prelu4": layer}), "rnet", B.sd("rnet"))
    layer.set_weights([alpha])
    return m


def _kernel_rows(fix, net, layer):
    expr = _one(r"kernel = (W\.reshape\([^=]*?\)\.transpose\([^)]*\)\.reshape\([^)]*\))", fix)
    return _eval(expr, W=M.caffe_blobs(net)[layer][0]), M.caffe_blobs(net)[layer][1]


def _permute(fix):
    return _one(r"keras\.layers\.Permute\(\([\d, ]+\)\)", fix)


def fix_flatten_kernel_rnet(fix):
    m = B.PORTS["rnet_sub_noperm"][1]()
    m.fc.set_weights(list(_kernel_rows(fix, "rnet", "conv4")))
    return m


def fix_flatten_kernel_rnet_ops(fix):
    m = B.PORTS["rnet_ops_noperm"][1]()
    m.fc.set_weights(list(_kernel_rows(fix, "rnet", "conv4")))
    return m


def fix_flatten_permute_rnet(fix):
    import keras

    perm = _eval(_permute(fix).replace("Permute(", "Permute(name='permute', dims=", 1))
    m = P.RNet(permute=False, overrides={"permute": perm})
    m(keras.Input((24, 24, 3)))
    return P.load_trained(m, "rnet", B.sd("rnet"))


def fix_flatten_kernel_onet(fix):
    m = B.PORTS["onet_fn_noperm"][1]()
    m.get_layer("conv5").set_weights(list(_kernel_rows(fix, "onet", "conv5")))
    return m


def fix_flatten_permute_onet(fix):
    perm = _eval(_permute(fix).replace("Permute(", "Permute(name='permute', dims=", 1))
    return P.load_trained(P.onet_functional(permute=perm), "onet", B.sd("onet"), heads=B.ONET_HEADS)


def fix_pool_same(fix):
    import keras

    expr = _one(r"keras\.layers\.MaxPooling2D\(pool_size=\([\d, ]+\), strides=\([\d, ]+\), padding='\w+'\)", fix)
    m = P.PNet(pool="valid", overrides={"pool1": _eval(expr.replace("MaxPooling2D(", "MaxPooling2D(name='pool1', ", 1))})
    m(keras.Input((None, None, 3)))
    return P.load_trained(m, "pnet", B.sd("pnet"))


FIXES = [  # (bug port, inputs key, apply(fix) -> edited port, xfail reason)
    ("pnet_fn_reshape", "pnet", fix_kernel_transpose, None),
    ("rnet_sub_shared", "rnet", fix_prelu_sub, None),
    ("rnet_nested_shared4", "rnet", fix_prelu_dense, None),
    ("rnet_sub_noperm", "rnet", fix_flatten_kernel_rnet, None),
    ("rnet_sub_noperm", "rnet", fix_flatten_permute_rnet, None),
    ("rnet_ops_noperm", "rnet", fix_flatten_kernel_rnet_ops, None),
    ("onet_fn_noperm", "onet", fix_flatten_kernel_onet, None),
    ("onet_fn_noperm", "onet", fix_flatten_permute_onet, None),
    ("pnet_sub_valid", "pnet", fix_pool_same, None),
    ("pnet_sub_valid", "pnet40", fix_pool_same, None),
]


@pytest.mark.parametrize("name,key,apply", [
    pytest.param(n, k, a, marks=[pytest.mark.xfail(strict=True, reason=r)] if r else [], id=f"{n}-{a.__name__}-{k}")
    for n, k, a, r in FIXES])
def test_fix_applied(nets, name, key, apply):
    before = check(nets, B.PORTS[name][1](), key)
    assert not before["equivalent"] and before["fix"]
    after = check(nets, apply(before["fix"]), key)
    assert after["equivalent"], (after["first"], after["causes"], after["fix"])


def test_right_flatten_fixes_do_fix(nets):
    """What G1 expects: the Permute((2, 1, 3)) the port dropped, or the kernel for its plain (H, W, C) Flatten."""
    s = check(nets, B.PORTS["rnet_sub"][1](), "rnet")
    assert s["equivalent"]
    m = B.PORTS["rnet_sub_noperm"][1]()
    W, b = M.caffe_blobs("rnet")["conv4"]
    m.fc.set_weights([W.reshape(128, 64, 3, 3).transpose(2, 3, 1, 0).reshape(576, 128), b])
    assert check(nets, m, "rnet")["equivalent"]


def test_right_dense_prelu_fix_does_fix(nets):
    """What G2 expects: keras.layers.PReLU() (no shared axes) with alpha (128,) after the Dense."""
    fix = "keras.layers.PReLU() with alpha of shape (128,) (layer.set_weights([np.reshape(a, (128,))]))"
    assert check(nets, fix_prelu_dense(fix), "rnet")["equivalent"]
