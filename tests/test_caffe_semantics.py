"""Issue 15, loader side: what Caffe accepts, the harness accepts with Caffe's semantics (values computed by hand from
Caffe's rules; no Keras here).

* duplicate layer names (net.cpp accepts them): the later ones are spelled ``<name>#<k>``; a weights file's layer of
  that name goes to the first one only (``CopyTrainedLayersFrom``, a linear search); the later ones keep their filler
  values (constant / defaults reproduced, random ones refused); a caffemodel's repeated source layers are all copied
  into the first target, so the last one wins;
* a legacy ``input:`` without a shape loads when the caller gives it;
* ``mirror: true`` is warned about by name and nothing is ever mirrored.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest

from harness.caffe import load_net_text, net_to_prototxt, read_weights, write_caffemodel
from harness.errors import LoadWarning, ProtoError, ShapeError, UnsupportedParam
from harness.proto import caffe_pb2 as pb
from harness.reference import forward
from support import net_text

N, C, H, W = 2, 3, 5, 7
HEAD = net_text("", {"data": (N, C, H, W)}, name="n")
DUP = HEAD + (
    'layer { name: "conv" type: "Convolution" bottom: "data" top: "c1" convolution_param { num_output: 4 '
    'kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.1 } } }\n'
    'layer { name: "conv" type: "Convolution" bottom: "c1" top: "c2" convolution_param { num_output: 2 '
    'kernel_h: 3 kernel_w: 2 FILLERS } }\n'
    'layer { name: "conv" type: "Scale" bottom: "c2" top: "c2" scale_param { bias_term: true } }\n'
    'layer { name: "bn" type: "BatchNorm" bottom: "c2" top: "b1" }\n'
    'layer { name: "bn" type: "BatchNorm" bottom: "c2" top: "b2" batch_norm_param { eps: 0.01 } }\n'
)
CONST = 'weight_filler { type: "constant" value: 0.5 } bias_filler { type: "constant" value: 0.25 }'


def _weights(rng) -> dict:
    return {"conv": [rng.standard_normal((4, 3, 3, 3)).astype(np.float32), rng.standard_normal(4).astype(np.float32)],
            "bn": [np.full(2, 0.5, np.float32), np.full(2, 4.0, np.float32), np.full(1, 2.0, np.float32)]}


def _load(text: str, weights=None, **kw):
    with pytest.warns(LoadWarning) as rec:
        net = load_net_text(text, weights, source="dup.prototxt", **kw)
    return net, [str(r.message) for r in rec]


def _window_sum(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    n, c, h, w = x.shape
    out = np.zeros((n, h - kh + 1, w - kw + 1))
    for i in range(kh):
        for j in range(kw):
            out += x[:, :, i:i + h - kh + 1, j:j + w - kw + 1].sum(axis=1)
    return out


def test_duplicate_names_spelled_uniquely_and_warned():
    net, msgs = _load(DUP.replace("FILLERS", CONST))
    assert [lay.name for lay in net.layers] == ["data", "conv", "conv#2", "conv#3", "bn", "bn#2"]
    assert [lay.param.name for lay in net.layers] == ["data", "conv", "conv", "conv", "bn", "bn"]
    assert net.keys() == ["data/data", "conv/c1", "conv#2/c2", "conv#3/c2", "bn/b1", "bn#2/b2"]
    assert len(msgs) == 2
    assert "'conv'" in msgs[0] and "3 layers" in msgs[0] and "'conv#2', 'conv#3'" in msgs[0]
    assert "'bn'" in msgs[1] and "'bn#2'" in msgs[1]
    assert 'name: "conv"' in net_to_prototxt(net) and "conv#2" not in net_to_prototxt(net)


def test_duplicate_names_get_constant_fillers_with_weights():
    rng = np.random.default_rng(3)
    wts = _weights(rng)
    net, msgs = _load(DUP.replace("FILLERS", CONST), wts)
    assert "filler values" in msgs[0]
    x = rng.standard_normal((N, C, H, W))
    rec = forward(net, {"data": x})
    c1 = rec["conv/c1"]
    np.testing.assert_array_equal(net.layer("conv").blobs[0], wts["conv"][0])  # the first layer of the name
    # conv#2: every weight 0.5, every bias 0.25 (its constant fillers), 2 outputs (kernel 3x2, no pad)
    want = 0.5 * _window_sum(c1, 3, 2) + 0.25
    assert rec["conv#2/c2"].shape == (N, 2, H - 2, W - 1)
    for o in range(2):
        np.testing.assert_allclose(rec["conv#2/c2"][:, o], want, rtol=1e-12, atol=1e-12)
    # conv#3 (Scale): default scale filler 1, bias filler 0 -> identity
    np.testing.assert_array_equal(rec["conv#3/c2"], rec["conv#2/c2"])
    # bn: the stored statistics (factor 2: mean 0.25, var 2); bn#2: all three blobs 0 -> factor 0 -> x / sqrt(eps)
    v = rec["conv#3/c2"]
    np.testing.assert_allclose(rec["bn/b1"], (v - 0.25) / np.sqrt(2.0 + 1e-5), rtol=1e-6)
    np.testing.assert_allclose(rec["bn#2/b2"], v / np.sqrt(np.float32(0.01)), rtol=1e-6)


def test_duplicate_names_default_fillers_are_zero():
    rng = np.random.default_rng(4)
    net, _ = _load(DUP.replace("FILLERS", ""), _weights(rng))
    rec = forward(net, {"data": rng.standard_normal((N, C, H, W))})
    assert not np.any(net.layer("conv#2").blobs[0]) and not np.any(net.layer("conv#2").blobs[1])
    np.testing.assert_array_equal(rec["conv#2/c2"], np.zeros((N, 2, H - 2, W - 1)))


@pytest.mark.parametrize("filler", ["gaussian", "xavier", "msra", "uniform", "positive_unitball", "bilinear"])
def test_duplicate_name_with_random_filler_refused_by_name(filler):
    text = DUP.replace("FILLERS", f'weight_filler {{ type: "{filler}" }}')
    with warnings.catch_warnings():
        warnings.simplefilter("error", LoadWarning)  # refused before any warning
        with pytest.raises(UnsupportedParam) as e:
            load_net_text(text, _weights(np.random.default_rng(0)), source="dup.prototxt")
    msg = str(e.value)
    for w in ("dup.prototxt", "'conv'", "'conv#2'", "convolution_param.weight_filler.type", repr(filler)):
        assert w in msg, (w, msg)


def test_duplicate_names_without_weights_load_and_warn():
    net, msgs = _load(DUP.replace("FILLERS", 'weight_filler { type: "xavier" }'))
    assert not net.has_weights and "seeded random" in msgs[0]


def test_caffemodel_repeated_source_layers_last_one_wins(tmp_path):
    """A caffemodel saved from a net with duplicate names holds each layer under the Caffe name: every one is copied,
    in turn, into the first target layer of that name (CopyTrainedLayersFrom's linear search)."""
    text = HEAD + ''.join(
        f'layer {{ name: "fc" type: "InnerProduct" bottom: "{b}" top: "{t}" inner_product_param {{ num_output: 4 }} }}\n'
        for b, t in (("data", "f1"), ("f1", "f2")))
    text = text.replace('bottom: "f1" top: "f2" inner_product_param { num_output: 4 }',
                        'bottom: "f1" top: "f2" inner_product_param { num_output: 4 bias_filler { type: "constant" '
                        'value: 2 } }')
    rng = np.random.default_rng(5)
    first = {"fc": [rng.standard_normal((4, C * H * W)).astype(np.float32), np.ones(4, np.float32)]}
    net, _ = _load(text, first)
    later = replace(net.layers[2], blobs=(np.full((4, 4), 3, np.float32), np.full(4, 7, np.float32)))
    net = replace(net, layers=net.layers[:2] + (later,))
    path = tmp_path / "w.caffemodel"
    write_caffemodel(net, path)
    wn = pb.NetParameter()
    wn.ParseFromString(path.read_bytes())
    assert [lp.name for lp in wn.layer] == ["data", "fc", "fc"]  # Caffe's names
    assert len(read_weights(path).repeats["fc"]) == 2
    # both source 'fc' layers go to the first 'fc'; the (4, 4) blob of the second does not fit it: Caffe refuses
    with pytest.raises(ShapeError, match=r"'fc'.*blob 0.*\(4, 4\).*\(4, 105\)"):
        load_net_text(text, path, source="dup.prototxt")
    # same shapes: the last source layer wins, the later target keeps its fillers (weight 0, bias 2)
    wn.layer[2].blobs[0].CopyFrom(wn.layer[1].blobs[0])
    wn.layer[2].blobs[0].data[:] = [0.125] * (4 * C * H * W)
    path.write_bytes(wn.SerializeToString())
    with pytest.warns(LoadWarning):
        net2 = load_net_text(text, path, source="dup.prototxt")
    assert np.all(net2.layer("fc").blobs[0] == np.float32(0.125))
    rec = forward(net2, {"data": np.ones((N, C, H, W))})
    np.testing.assert_array_equal(rec["fc#2/f2"], np.full((N, 4), 2.0))


LEGACY = 'name: "legacy"\ninput: "input"\n' \
         'layer { name: "fc" type: "InnerProduct" bottom: "input" top: "fc" inner_product_param { num_output: 5 } }\n'


def test_legacy_input_without_shape_refused_like_caffe():
    with pytest.raises(ProtoError) as e:
        load_net_text(LEGACY, source="legacy.prototxt")
    for w in ("legacy.prototxt", "'input'", "input_shape", "Unknown bottom blob", "--input-shape input="):
        assert w in str(e.value), (w, str(e.value))


def test_legacy_input_without_shape_loads_with_given_shape():
    net = load_net_text(LEGACY, input_shapes={"input": (6, 12)}, source="legacy.prototxt")
    assert dict(net.inputs) == {"input": (6, 12)}
    assert net.layers[0].name == "input" and net.layers[0].kind == "Input"
    w = np.arange(60, dtype=np.float32).reshape(5, 12) / 60
    net = load_net_text(LEGACY, {"fc": [w, np.full(5, 0.5, np.float32)]}, input_shapes={"input": (6, 12)})
    x = np.random.default_rng(1).standard_normal((6, 12))
    np.testing.assert_allclose(forward(net, {"input": x})["fc/fc"], x @ w.T.astype(np.float64) + 0.5, rtol=1e-12)


MIRROR = ('name: "tv"\nlayer { name: "images" type: "Data" top: "data" top: "label" include { phase: TEST } '
          'transform_param { mirror: true crop_size: 0 } data_param { source: "x" batch_size: 2 } }\n'
          'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 1 '
          'kernel_h: 1 kernel_w: 1 bias_term: false } }\n')


def test_mirror_true_warned_by_name_and_never_applied():
    with pytest.warns(LoadWarning) as rec:
        net = load_net_text(MIRROR, {"conv": [np.ones((1, C, 1, 1), np.float32)]}, input_shapes={"data": (N, C, H, W)},
                            source="tv.prototxt")
    msgs = [str(r.message) for r in rec]
    assert len(msgs) == 1
    for w in ("tv.prototxt", "'images'", "transform_param.mirror=true", "never mirrors", "Rand(2)"):
        assert w in msgs[0], (w, msgs[0])
    x = np.arange(N * C * H * W, dtype=np.float64).reshape(N, C, H, W)  # not symmetric left-right
    for _ in range(3):
        rec = forward(net, {"data": x})
        np.testing.assert_array_equal(rec["images/data"], x)
        np.testing.assert_array_equal(rec["conv/conv"][:, 0], x.sum(axis=1))


def test_mirror_legacy_data_param_spelling_warned():
    text = MIRROR.replace("transform_param { mirror: true crop_size: 0 } data_param { source: \"x\" batch_size: 2 }",
                          'data_param { source: "x" batch_size: 2 mirror: true }')
    with pytest.warns(LoadWarning, match=r"'images'.*data_param\.mirror=true"):
        load_net_text(text, input_shapes={"data": (N, C, H, W)}, source="tv.prototxt")


def test_no_warning_for_ordinary_net(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", LoadWarning)
        load_net_text(HEAD.replace('"n"', '"ok"') + 'layer { name: "r" type: "ReLU" bottom: "data" top: "data" }\n')
        load_net_text(MIRROR.replace("mirror: true", "mirror: false"), input_shapes={"data": (N, C, H, W)})
