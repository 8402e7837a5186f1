"""Converter B, shape layers: golden real-Caffe values and the NumPy reference on tensors with distinct sizes on
every axis, including axis variants (negative, 0, 2, 3) and rank-changing Flatten/Reshape in both directions.
Pure data movement must match exactly."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import support.converted as K
from support import assert_blob_close, golden, golden_bottoms, net_text, one_layer_net, to_caffe, to_keras
from harness.errors import ShapeError

SHAPE_TYPES = {"Concat", "Slice", "Flatten", "Reshape", "Crop", "Permute", "Tile", "Split", "ShuffleChannel"}
D4 = (2, 3, 5, 7)


def _golden_layers(case):
    net, _, _ = golden(case)
    return [(case, lay.name) for lay in net.layers if lay.kind in SHAPE_TYPES]


@pytest.fixture(scope="module")
def goldens():
    return {c: golden(c) for c in ("shape_ops", "ssd_ops")}


@pytest.mark.parametrize("case,name", _golden_layers("shape_ops") + _golden_layers("ssd_ops"))
def test_golden_shape_ops(goldens, case, name):
    net, blobs, inputs = goldens[case]
    lay = net.layer(name)
    outs = K.run_layer(lay, golden_bottoms(net, blobs, inputs, lay))
    assert len(outs) == len(lay.tops)
    for top, got in zip(lay.tops, outs):
        assert_blob_close(got, blobs[f"{name}/{top}"], f"{name}/{top}", rtol=0.0)


def L(type_, params="", bottoms=("data",), tops=("l",), name="l"):
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    t = " ".join(f'top: "{x}"' for x in tops)
    return f'layer {{ name: "{name}" type: "{type_}" {b} {t} {params} }}'


CASES = [
    # Concat
    ("concat_c", L("Concat", bottoms=("data", "b")), {"data": D4, "b": (2, 4, 5, 7)}),
    ("concat_n", L("Concat", "concat_param { axis: 0 }", bottoms=("data", "b")), {"data": D4, "b": (4, 3, 5, 7)}),
    ("concat_h", L("Concat", "concat_param { axis: 2 }", bottoms=("data", "b")), {"data": D4, "b": (2, 3, 4, 7)}),
    ("concat_w_neg", L("Concat", "concat_param { axis: -1 }", bottoms=("data", "b", "data")),
     {"data": D4, "b": (2, 3, 5, 4)}),
    ("concat_dim_legacy", L("Concat", "concat_param { concat_dim: 3 }", bottoms=("data", "b")),
     {"data": D4, "b": (2, 3, 5, 6)}),
    ("concat_2d", L("Concat", "concat_param { axis: 1 }", bottoms=("data", "b")), {"data": (2, 3), "b": (2, 5)}),
    ("concat_3d_last", L("Concat", "concat_param { axis: -1 }", bottoms=("data", "b")),
     {"data": (2, 3, 5), "b": (2, 3, 4)}),
    ("concat_one", L("Concat"), {"data": D4}),
    # Slice
    ("slice_c_points", L("Slice", "slice_param { slice_point: 1 }", tops=("a", "b")), {"data": D4}),
    ("slice_h_equal", L("Slice", "slice_param { axis: 2 }", tops=("a",)), {"data": D4}),
    ("slice_w_neg", L("Slice", "slice_param { axis: -1 slice_point: 2 slice_point: 3 }", tops=("a", "b", "c")),
     {"data": D4}),
    ("slice_n", L("Slice", "slice_param { axis: 0 }", tops=("a", "b")), {"data": D4}),
    ("slice_dim_legacy", L("Slice", "slice_param { slice_dim: 2 slice_point: 4 }", tops=("a", "b")), {"data": D4}),
    ("slice_2d", L("Slice", "slice_param { axis: 1 slice_point: 2 }", tops=("a", "b")), {"data": (2, 5)}),
    # Split
    ("split3", L("Split", tops=("a", "b", "c")), {"data": D4}),
    ("split1", L("Split", tops=("a",)), {"data": D4}),
    # Flatten
    ("flatten_default", L("Flatten"), {"data": D4}),
    ("flatten_axis2", L("Flatten", "flatten_param { axis: 2 }"), {"data": D4}),
    ("flatten_axis0", L("Flatten", "flatten_param { axis: 0 }"), {"data": D4}),
    ("flatten_1_2", L("Flatten", "flatten_param { axis: 1 end_axis: 2 }"), {"data": D4}),
    ("flatten_end_neg2", L("Flatten", "flatten_param { axis: -3 end_axis: -2 }"), {"data": D4}),
    ("flatten_noop_4d", L("Flatten", "flatten_param { axis: 3 end_axis: 3 }"), {"data": D4}),
    ("flatten_5d_to_4d", L("Flatten", "flatten_param { axis: 2 end_axis: 3 }"), {"data": (2, 3, 4, 5, 6)}),
    ("flatten_3d", L("Flatten"), {"data": (2, 3, 5)}),
    # Reshape
    ("reshape_0_m1_10", L("Reshape", "reshape_param { shape { dim: 0 dim: -1 dim: 5 } }"), {"data": D4}),
    ("reshape_to_4d", L("Reshape", "reshape_param { shape { dim: 0 dim: 7 dim: 3 dim: 5 } }"), {"data": D4}),
    ("reshape_2d_to_4d", L("Reshape", "reshape_param { shape { dim: 2 dim: 5 dim: 3 dim: 7 } }"),
     {"data": (2, 105)}),
    ("reshape_axis1_numaxes1", L("Reshape", "reshape_param { shape { dim: 1 dim: 3 } axis: 1 num_axes: 1 }"),
     {"data": D4}),
    ("reshape_axis_neg1_append", L("Reshape", "reshape_param { shape { dim: 1 } axis: -1 }"), {"data": D4}),
    ("reshape_axis_neg2_numaxes1", L("Reshape", "reshape_param { shape { dim: -1 dim: 1 } axis: -2 num_axes: 1 }"),
     {"data": D4}),
    ("reshape_3d_to_4d_axis1", L("Reshape", "reshape_param { shape { dim: 5 dim: 1 } axis: 2 }"),
     {"data": (2, 3, 5)}),
    ("reshape_axis2_numaxes2_4d", L("Reshape", "reshape_param { shape { dim: -1 } axis: 2 num_axes: 2 }"),
     {"data": (2, 3, 5, 7, 4)}),
    ("reshape_insert_axis0", L("Reshape", "reshape_param { shape { dim: 1 } axis: 0 num_axes: 0 }"),
     {"data": (2, 3, 5)}),
    ("reshape_batch_changes", L("Reshape", "reshape_param { shape { dim: -1 dim: 35 } }"), {"data": D4}),
    ("reshape_batch_changes_4d", L("Reshape", "reshape_param { shape { dim: 1 dim: 6 dim: 5 dim: -1 } }"),
     {"data": D4}),
    # Crop
    ("crop_hw_one_offset", L("Crop", "crop_param { offset: 1 }", bottoms=("data", "ref")),
     {"data": D4, "ref": (2, 3, 4, 5)}),
    ("crop_hw_two_offsets", L("Crop", "crop_param { axis: -2 offset: 2 offset: 1 }", bottoms=("data", "ref")),
     {"data": D4, "ref": (1, 1, 3, 4)}),
    ("crop_c", L("Crop", "crop_param { axis: 1 offset: 1 offset: 0 offset: 2 }", bottoms=("data", "ref")),
     {"data": D4, "ref": (2, 2, 4, 5)}),
    ("crop_w_only", L("Crop", "crop_param { axis: 3 offset: 3 }", bottoms=("data", "ref")),
     {"data": D4, "ref": (9, 9, 9, 4)}),
    ("crop_no_offset", L("Crop", "crop_param { axis: 2 }", bottoms=("data", "ref")),
     {"data": D4, "ref": (2, 3, 4, 6)}),
    ("crop_n", L("Crop", "crop_param { axis: 0 offset: 1 offset: 0 offset: 1 offset: 2 }", bottoms=("data", "ref")),
     {"data": D4, "ref": (1, 3, 4, 5)}),
    ("crop_3d", L("Crop", "crop_param { axis: 1 offset: 1 }", bottoms=("data", "ref")),
     {"data": (2, 6, 5), "ref": (2, 4, 3)}),
    # Permute
    ("permute_0231", L("Permute", "permute_param { order: 0 order: 2 order: 3 order: 1 }"), {"data": D4}),
    ("permute_0312", L("Permute", "permute_param { order: 0 order: 3 order: 1 order: 2 }"), {"data": D4}),
    ("permute_0321", L("Permute", "permute_param { order: 0 order: 3 order: 2 order: 1 }"), {"data": D4}),
    ("permute_batch_moves", L("Permute", "permute_param { order: 1 order: 0 order: 2 order: 3 }"), {"data": D4}),
    ("permute_partial_order", L("Permute", "permute_param { order: 0 order: 2 }"), {"data": D4}),
    ("permute_identity", L("Permute", "permute_param { order: 0 order: 1 }"), {"data": D4}),
    ("permute_3d", L("Permute", "permute_param { order: 0 order: 2 order: 1 }"), {"data": (2, 3, 5)}),
    # Tile
    ("tile_c", L("Tile", "tile_param { tiles: 3 }"), {"data": D4}),
    ("tile_h", L("Tile", "tile_param { axis: 2 tiles: 2 }"), {"data": D4}),
    ("tile_w_neg", L("Tile", "tile_param { axis: -1 tiles: 2 }"), {"data": D4}),
    ("tile_n", L("Tile", "tile_param { axis: 0 tiles: 2 }"), {"data": D4}),
    ("tile_2d", L("Tile", "tile_param { axis: 1 tiles: 4 }"), {"data": (2, 3)}),
    # ShuffleChannel
    ("shuffle_g3", L("ShuffleChannel", "shuffle_channel_param { group: 3 }"), {"data": (2, 6, 5, 7)}),
    ("shuffle_g2", L("ShuffleChannel", "shuffle_channel_param { group: 2 }"), {"data": (2, 6, 5, 7)}),
    ("shuffle_g1", L("ShuffleChannel", "shuffle_channel_param { group: 1 }"), {"data": (2, 6, 5, 7)}),
]


@pytest.mark.parametrize("text,inputs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_against_reference(text, inputs):
    K.check_against_reference(text, inputs, exact=True)


def test_flatten_of_nhwc_uses_caffe_order():
    """Flatten of a 4-D blob gives Caffe's C,H,W order (the classic Flatten->InnerProduct trap), not NHWC order."""
    x = np.arange(np.prod(D4), dtype=np.float32).reshape(D4)
    net = one_layer_net(L("Flatten"), {"data": D4})
    (got,) = K.run_layer(net.layers[-1], [x])
    np.testing.assert_array_equal(got, x.reshape(2, -1))
    assert not np.array_equal(got, x.transpose(0, 2, 3, 1).reshape(2, -1))


def test_reshape_to_4d_lands_nhwc():
    """A 4-D Reshape output is an NHWC Keras tensor holding Caffe's (N, C, H, W) blob."""
    x = np.arange(2 * 105, dtype=np.float32).reshape(2, 105)
    net = one_layer_net(L("Reshape", "reshape_param { shape { dim: 2 dim: 5 dim: 3 dim: 7 } }"), {"data": (2, 105)})
    model, names = K.build_layer_model(net.layers[-1], [(2, 105)])
    y = keras.ops.convert_to_numpy(model([x]))
    assert y.shape == (2, 3, 7, 5)
    np.testing.assert_array_equal(y, x.reshape(2, 5, 3, 7).transpose(0, 2, 3, 1))
    assert model.layers[-1].name == "l"
    assert [lay.name for lay in model.layers[1:]] == ["l__reshape", "l"]


def test_silence_has_no_outputs_and_model_builds():
    net = one_layer_net('layer { name: "s" type: "Silence" bottom: "data" }', {"data": D4})
    lay = net.layers[-1]
    inp = keras.Input(shape=(5, 7, 3), batch_size=2)
    ctx = K.ConvertContext(net=net, bottom_shapes=[D4])
    assert K.CONVERTERS["Silence"](lay, [inp], ctx) == []
    model = keras.Model(inp, keras.layers.ReLU(name="other")(inp))
    assert [lay.name for lay in model.layers if lay.name == "s"] == []


@pytest.mark.parametrize("text,inputs,match", [
    (L("Slice", "slice_param { slice_point: 1 slice_point: 2 }", tops=("a", "b")), {"data": D4},
     r"Slice 'l': 2 slice_point\(s\) for 2 tops"),
    (L("Slice", "slice_param { axis: 2 }", tops=("a", "b")), {"data": D4}, r"axis 2 size 5 is not divisible by 2"),
    (L("Crop", "crop_param { axis: 2 offset: 3 }", bottoms=("data", "ref")), {"data": D4, "ref": (2, 3, 3, 4)},
     r"Crop 'l': axis 2: offset 3 \+ size 3 exceeds bottom size 5"),
    (L("Concat", "concat_param { axis: 4 }", bottoms=("data", "data")), {"data": D4},
     r"concat_param.axis=4 is out of range"),
    (L("ShuffleChannel", "shuffle_channel_param { group: 2 }"), {"data": D4}, r"group=2 does not divide 3"),
])
def test_errors_name_layer_and_field(text, inputs, match):
    from harness.caffe import load_net_text
    net = load_net_text(net_text(text, inputs), check=False)
    lay = net.layers[-1]
    with pytest.raises(ShapeError, match=match):
        K.build_layer_model(lay, [inputs[b] for b in lay.bottoms])


def test_reshape_count_mismatch_rejected():
    from harness.caffe import load_net_text
    text = ('name: "t" layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 5'
            ' dim: 7 } } } ' + L("Reshape", "reshape_param { shape { dim: 0 dim: 4 dim: -1 } }"))
    net = load_net_text(text, check=False)
    with pytest.raises(ShapeError, match=r"Reshape 'l': cannot infer the -1 dim"):
        K.build_layer_model(net.layers[-1], [D4])


@pytest.mark.parametrize("text,inputs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_through_convert_with_free_batch(text, inputs):
    """The same cases through harness.convert.convert, whose Inputs leave the batch axis free (None): batch-axis
    Concat/Slice/Crop/Tile, batch-changing Reshape and batch-moving Permute must still build and match."""
    from harness.convert import convert, mapping_of
    from harness.reference import forward

    net = one_layer_net(text, inputs)
    rng = np.random.default_rng(1)
    feed = {k: rng.standard_normal(tuple(s)).astype(np.float32) for k, s in inputs.items()}
    model = convert(net)
    ref = forward(net, feed, dtype=np.float32)
    x = [to_keras(feed[b]) for b in mapping_of(model)["inputs"]]
    out = model(x[0] if len(x) == 1 else x)
    lay = net.layers[-1]
    for top in lay.tops:
        if top in out:
            assert_blob_close(to_caffe(keras.ops.convert_to_numpy(out[top])), ref[f"{lay.name}/{top}"], top,
                              rtol=0.0)


def test_silence_through_convert():
    """Silence swallows a blob: the converted model builds and the silenced blob is not an output."""
    from harness.caffe import load_net_text
    from harness.convert import convert

    text = ('name: "t" layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 5'
            ' dim: 7 } } } layer { name: "sl" type: "Slice" bottom: "data" top: "a" top: "b" slice_param {'
            ' slice_point: 1 } } layer { name: "quiet" type: "Silence" bottom: "b" }'
            ' layer { name: "r" type: "ReLU" bottom: "a" top: "r" }')
    net = load_net_text(text)
    model = convert(net)
    x = np.random.default_rng(0).standard_normal(D4).astype(np.float32)
    out = model(to_keras(x))
    assert list(out) == ["r"]
    np.testing.assert_array_equal(to_caffe(keras.ops.convert_to_numpy(out["r"])), np.maximum(x[:, :1], 0))
    assert "quiet" not in [lay.name for lay in model.layers]
