"""Where each layer is written (``Layer.location``): V2, V1 and upgraded V0 prototxts, with comments, strings,
nested braces, list syntax and phase rules; the location takes no part in a layer's equality."""

from __future__ import annotations

import dataclasses

import pytest

from harness.caffe import load_net, load_net_text
from harness.locations import scan_blocks
from harness.net import Location

V2 = '''# a deploy net; the next line is not a layer:
# layer { name: "commented" type: "ReLU" }
name: "v2"

layer {
  name: "data" type: "Input" top: "data"
  input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } }
}
  layer {   # indented: column 3
    name: "conv1"
    type: "Convolution"
    bottom: "data"
    top: "conv1"
    param { lr_mult: 1 }   # nested braces
    convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "constant" value: 0.1 } }
  }


layer { name: "drop_train" type: "Dropout" bottom: "conv1" top: "conv1" include { phase: TRAIN } }
layer {
  name: "relu1"
  # layer { name: "inside a comment" }
  type: "ReLU" bottom: "conv1" top: "conv1"
}
layer: { name: "layer { in a string \\" layer {" type: "TanH" bottom: "conv1" top: "t" }
layer < name: 'it\\'s } a string' type: "Sigmoid" bottom: "t" top: "s" >
layer { name: "only_train" type: "ReLU" bottom: "s" top: "s" include { phase: TRAIN } } layer { name: "last" type: "AbsVal" bottom: "s" top: "out" }
'''


def _at(net, name):
    loc = net.layer(name).location
    return (loc.line, loc.column)


def test_v2_lines_skip_comments_strings_and_nested_braces():
    net = load_net_text(V2, source="deploy.prototxt")
    assert [lay.name for lay in net.layers] == ["data", "conv1", "relu1", 'layer { in a string " layer {',
                                                "it's } a string", "last"]
    assert _at(net, "data") == (5, 1)
    assert _at(net, "conv1") == (9, 3)
    assert _at(net, "relu1") == (20, 1)
    assert _at(net, 'layer { in a string " layer {') == (25, 1)
    assert _at(net, "it's } a string") == (26, 1)
    last = V2.splitlines()[26]
    assert _at(net, "last") == (27, last.index('layer { name: "last"') + 1)
    assert all(lay.location.file == "deploy.prototxt" for lay in net.layers)


def test_layers_excluded_by_phase_keep_the_others_on_their_own_lines():
    train = load_net_text(V2, phase="TRAIN", source="train.prototxt")
    assert [lay.name for lay in train.layers][:3] == ["data", "conv1", "drop_train"]
    assert _at(train, "drop_train") == (19, 1)
    assert _at(train, "relu1") == (20, 1)
    assert _at(train, "only_train") == (27, 1)
    test = load_net_text(V2, source="train.prototxt")
    assert _at(test, "relu1") == _at(train, "relu1")


V1 = '''name: "v1"
# legacy inputs: the Input layer is located at the first of them

input: "data"
input_dim: 1 input_dim: 3 input_dim: 6 input_dim: 6
layers {
  name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
  blobs_lr: 1 blobs_lr: 2
  convolution_param { num_output: 2 kernel_size: 3 }
}
# layers { name: "ghost" type: RELU }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "drop" type: DROPOUT bottom: "conv1" top: "conv1" exclude { phase: TEST } }
layers {
  name: "fc" type: INNER_PRODUCT bottom: "conv1" top: "fc"
  inner_product_param { num_output: 3 }
}
'''


def test_v1_layers_and_legacy_input():
    net = load_net_text(V1, source="v1.prototxt")
    assert [lay.name for lay in net.layers] == ["input", "conv1", "relu1", "fc"]
    assert [_at(net, n) for n in ("input", "conv1", "relu1", "fc")] == [(4, 1), (6, 1), (12, 1), (14, 1)]


V0 = '''name: "v0"
input: "data"
input_dim: 2 input_dim: 3 input_dim: 8 input_dim: 9

layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" }
layers {
  layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 3 stride: 2 biasterm: false }
  bottom: "pad1" top: "conv1"
}
# layers { layer { name: "x" type: "relu" } }
layers { layer { name: "relu1" type: "relu" } bottom: "conv1" top: "conv1" }
    layers { layer { name: "fc" type: "innerproduct" num_output: 5 } bottom: "conv1" top: "fc" }
'''


def test_upgraded_v0_keeps_the_original_block_lines_with_padding_folded():
    net = load_net_text(V0, source="v0.prototxt")
    assert [lay.name for lay in net.layers] == ["input", "conv1", "relu1", "fc"]
    assert [_at(net, n) for n in ("input", "conv1", "relu1", "fc")] == [(2, 1), (6, 1), (11, 1), (12, 5)]


def test_list_syntax_locates_each_element():
    text = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 } } }\n'
            'layer: [\n  { name: "a" type: "ReLU" bottom: "data" top: "a" },\n'
            '  { name: "b" type: "TanH" bottom: "a" top: "b" }\n]\n')
    net = load_net_text(text)
    assert [_at(net, n) for n in ("data", "a", "b")] == [(1, 1), (3, 3), (4, 3)]


def test_train_val_data_layer_and_duplicate_names_keep_their_lines(tmp_path):
    text = ('name: "tv"\nlayer { name: "d" type: "Data" top: "data" top: "label" }\n'
            'layer { name: "r" type: "ReLU" bottom: "data" top: "x" }\n\n'
            'layer { name: "r" type: "TanH" bottom: "x" top: "y" }\n'
            'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "y" bottom: "label" top: "loss" }\n')
    p = tmp_path / "train_val.prototxt"
    p.write_text(text)
    with pytest.warns(Warning):
        net = load_net(p, input_shapes={"data": (1, 4)})
    assert [(lay.name, lay.type) for lay in net.layers] == [("d", "Input"), ("r", "ReLU"), ("r#2", "TanH")]
    assert [lay.location for lay in net.layers] == [Location(str(p), 2, 1), Location(str(p), 3, 1),
                                                    Location(str(p), 5, 1)]
    assert str(net.layers[2].location) == f"{p}:5"


def test_location_takes_no_part_in_equality_and_survives_replace():
    a = load_net_text(V1, source="a.prototxt", check=False)
    b = load_net_text("\n\n" + V1.replace("layers {", "layers   {"), source="b.prototxt", check=False)
    la, lb = a.layer("relu1"), b.layer("relu1")
    assert la.location != lb.location and la == lb
    moved = dataclasses.replace(la, blobs=())
    assert moved.location == la.location
    with pytest.raises(dataclasses.FrozenInstanceError):
        la.location = None  # type: ignore[misc]


def test_scan_blocks_ignores_nested_and_value_positions():
    b = scan_blocks('name: "layer"\nstate { layer { } }\nlayer {\n layer { }\n}\ninput: "layer"\ninput: "x"\n')
    assert b.layer == [(3, 1)] and b.layers == [] and b.first_input == (6, 1)


def test_blocks_that_do_not_line_up_give_no_locations():
    from harness.locations import layer_locations
    from harness.caffe import parse_prototxt

    netp = parse_prototxt('layer { name: "a" type: "ReLU" }')
    assert layer_locations(netp, "", "x") == []
    assert [loc.line for loc in layer_locations(netp, '\nlayer { name: "a" type: "ReLU" }', "x")] == [2]
