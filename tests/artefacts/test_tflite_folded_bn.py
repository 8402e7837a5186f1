"""``check --tflite`` on a hand-written Keras port whose layers have default names (nothing names the Caffe
layers): the TFLite converter folds a BatchNorm + Scale into the CONV_2D before it even where no activation follows
(conv -> bn -> scale -> pool; ResNet's conv -> bn -> scale -> Eltwise SUM), so the operator's tensor holds the
Scale's record, not the convolution's.  A correct port passes; a wrong BatchNorm epsilon still fails at the
BatchNorm and a reshaped kernel at the convolution."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from harness.compare.artefacts.tflite import check_tflite_file  # noqa: E402

L = keras.layers
_IN = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 11 } } }\n'
_BN = ('layer {{ name: "bn{i}" type: "BatchNorm" bottom: "conv{i}" top: "conv{i}" '
       'batch_norm_param {{ use_global_stats: true }} }}\n'
       'layer {{ name: "sc{i}" type: "Scale" bottom: "conv{i}" top: "conv{i}" scale_param {{ bias_term: true }} }}\n')
POOL = ('name: "foldpool"\n' + _IN +
        'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
        'convolution_param { num_output: 5 kernel_size: 3 pad: 1 } }\n' + _BN.format(i=1) +
        'layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" '
        'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
        'layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1" inner_product_param { num_output: 7 } }\n')
RES = ('name: "foldres"\n' + _IN +
       'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
       'convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }\n'
       'layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }\n'
       'layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2" '
       'convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }\n' + _BN.format(i=2) +
       'layer { name: "sum" type: "Eltwise" bottom: "conv2" bottom: "conv1" top: "sum" '
       'eltwise_param { operation: SUM } }\n'
       'layer { name: "relu2" type: "ReLU" bottom: "sum" top: "sum" }\n'
       'layer { name: "ip1" type: "InnerProduct" bottom: "sum" top: "ip1" inner_product_param { num_output: 7 } }\n')


def _weights(kind):
    rng = np.random.default_rng(21 if kind == "pool" else 22)
    c = 5 if kind == "pool" else 4
    conv = lambda o, i: [rng.normal(0, 1 / np.sqrt(9 * i), (o, i, 3, 3)), rng.normal(0, 0.2, o)]  # noqa: E731
    factor = 3.0  # Caffe's moving average factor blob: mean and variance are stored multiplied by it
    bn = [rng.normal(0, 0.5, c) * factor, rng.uniform(0.002, 0.02, c) * factor, np.array([factor])]
    sc = [rng.uniform(0.05, 0.15, c), rng.normal(0, 0.3, c)]
    if kind == "pool":
        w = {"conv1": conv(5, 3), "bn1": bn, "sc1": sc, "ip1": [rng.normal(0, 0.3, (7, 5 * 5 * 6)),
                                                               rng.normal(0, 0.2, 7)]}
    else:
        w = {"conv1": conv(4, 3), "conv2": conv(4, 4), "bn2": bn, "sc2": sc,
             "ip1": [rng.normal(0, 0.1, (7, 4 * 9 * 11)), rng.normal(0, 0.2, 7)]}
    return {k: [np.asarray(b, np.float32) for b in v] for k, v in w.items()}


def _kernel(w, bug):
    return w.reshape(w.shape[2], w.shape[3], w.shape[1], w.shape[0]) if bug == "kernel" else w.transpose(2, 3, 1, 0)


def _bn(x, w, name, bug):
    """BatchNorm + Scale as one BatchNormalization: Caffe's eps 1e-5, mean/var divided by the factor."""
    bnl = L.BatchNormalization(epsilon=1e-3 if bug == "eps" else 1e-5)
    y = bnl(x)
    mean, var, factor = w["bn" + name]
    return y, lambda: bnl.set_weights([w["sc" + name][0], w["sc" + name][1], mean / factor[0], var / factor[0]])


def _port(kind, w, bug=None):
    x = inp = keras.Input((9, 11, 3))
    if kind == "pool":
        conv = L.Conv2D(5, 3, padding="same")
        x, setbn = _bn(conv(x), w, "1", bug)
        x = L.MaxPooling2D(2, 2, padding="same")(x)  # Caffe's ceil: 5x6 (TF pads a max pooling with -inf)
        convs, ip = [(conv, "conv1")], L.Dense(7)
    else:
        c1, c2 = L.Conv2D(4, 3, padding="same", activation="relu"), L.Conv2D(4, 3, padding="same")
        a = c1(x)
        b, setbn = _bn(c2(a), w, "2", bug)
        x = L.ReLU()(L.Add()([b, a]))
        convs, ip = [(c1, "conv1"), (c2, "conv2")], L.Dense(7)
    model = keras.Model(inp, ip(L.Flatten()(L.Permute((3, 1, 2))(x))))
    for layer, caffe in convs:
        layer.set_weights([_kernel(w[caffe][0], bug if caffe == convs[-1][1] else None), w[caffe][1]])
    setbn()
    ip.set_weights([w["ip1"][0].T, w["ip1"][1]])
    return model


def _check(tmp_path, kind, bug=None):
    proto = tmp_path / f"{kind}.prototxt"
    proto.write_text(POOL if kind == "pool" else RES)
    w = _weights(kind)
    wf = tmp_path / f"{kind}.npz"
    np.savez(wf, **{f"{layer}/{i}": b for layer, blobs in w.items() for i, b in enumerate(blobs)})
    inp = {"data": np.random.default_rng(7).normal(0, 1, (2, 3, 9, 11)).astype(np.float32)}
    f = tmp_path / f"{kind}_{bug}.tflite"
    f.write_bytes(tf.lite.TFLiteConverter.from_keras_model(_port(kind, w, bug)).convert())
    return check_tflite_file(proto, f, inp, weights=wf)


PAIRS = {"pool": [("sc1/conv1", ("conv1", "bn1", "sc1")), ("pool1/pool1", ()), ("ip1/ip1", ())],
         "res": [("relu1/conv1", ("conv1", "relu1")), ("sc2/conv2", ("conv2", "bn2", "sc2")),
                 ("relu2/sum", ("sum", "relu2")), ("ip1/ip1", ())]}


@pytest.mark.parametrize("kind", ["pool", "res"])
def test_folded_batchnorm_without_activation_passes(kind, tmp_path):
    """The CONV_2D with BatchNorm + Scale folded in (no fused activation) is paired with the Scale's record, the
    convolution and BatchNorm its segment (before: paired with the convolution's own record, a false alarm)."""
    rep = _check(tmp_path, kind)
    assert rep, rep.table()
    assert [(lr.key, tuple(lr.segment)) for lr in rep.layers] == PAIRS[kind]
    assert all(lr.chained.passed and lr.chained.max_abs < 1e-4 * max(lr.chained.scale, 1.0) for lr in rep.layers)


@pytest.mark.parametrize("kind", ["pool", "res"])
@pytest.mark.parametrize("bug, layer, cause", [("eps", "bn", "bn_epsilon"), ("kernel", "conv", "kernel_reshaped")])
def test_folded_batchnorm_bug_still_caught(kind, bug, layer, cause, tmp_path):
    """A wrong epsilon (1e-3 for Caffe's 1e-5, small variances) fails at the BatchNorm, a kernel reshaped instead of
    transposed at the convolution: the folded pair is the only failing one."""
    rep = _check(tmp_path, kind, bug)
    i = "1" if kind == "pool" else "2"
    assert not rep, rep.table()
    fd = rep.first_divergence
    assert (fd.caffe_layer, fd.key) == (layer + i, f"sc{i}/conv{i}"), rep.table()
    assert fd.diagnosis[0].cause == cause, [c.cause for c in fd.diagnosis]
    assert [lr.key for lr in rep.layers if not lr.chained.passed] == [f"sc{i}/conv{i}"]
