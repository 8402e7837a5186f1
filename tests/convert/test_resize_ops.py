"""Converter B, Upsample (nearest, integer factors) and Interp (deeplab bilinear align-corners) against the NumPy
reference, with distinct H and W, crop pads, and every output-size rule."""

from __future__ import annotations

import numpy as np
import pytest

import support.converted as K
from support import one_layer_net
from harness.errors import UnsupportedParam

D4 = (2, 3, 5, 7)


def L(type_, params=""):
    return f'layer {{ name: "l" type: "{type_}" bottom: "data" top: "l" {params} }}'


UPSAMPLE = [
    ("default_scale2", ""),
    ("scale3", "upsample_param { scale: 3 }"),
    ("scale_hw", "upsample_param { scale_h: 2 scale_w: 3 }"),
    ("upsample_hw", "upsample_param { upsample_h: 15 upsample_w: 14 }"),
    ("scale1", "upsample_param { scale: 1 }"),
]


@pytest.mark.parametrize("params", [u[1] for u in UPSAMPLE], ids=[u[0] for u in UPSAMPLE])
def test_upsample_against_reference(params):
    K.check_against_reference(L("Upsample", params), {"data": D4}, exact=True)


def test_upsample_is_keras_upsampling2d_nearest():
    net = one_layer_net(L("Upsample", "upsample_param { scale_h: 2 scale_w: 3 }"), {"data": D4})
    model, _ = K.build_layer_model(net.layers[-1], [D4])
    lay = model.get_layer("l")
    assert type(lay).__name__ == "UpSampling2D" and lay.interpolation == "nearest" and tuple(lay.size) == (2, 3)


INTERP = [
    ("zoom2", "interp_param { zoom_factor: 2 }", D4),
    ("zoom3", "interp_param { zoom_factor: 3 }", D4),
    ("shrink2", "interp_param { shrink_factor: 2 }", (2, 3, 9, 11)),
    ("shrink_then_zoom", "interp_param { shrink_factor: 2 zoom_factor: 3 }", (2, 3, 9, 11)),
    ("height_width_up", "interp_param { height: 11 width: 6 }", D4),
    ("height_width_down", "interp_param { height: 3 width: 4 }", D4),
    ("to_1x1", "interp_param { height: 1 width: 1 }", D4),
    ("same_size_copy", "interp_param { height: 5 width: 7 }", D4),
    ("crop_pads_zoom", "interp_param { zoom_factor: 2 pad_beg: -1 pad_end: -1 }", (2, 3, 6, 9)),
    ("crop_pads_size", "interp_param { height: 8 width: 5 pad_beg: -1 pad_end: 0 }", (2, 3, 6, 9)),
    ("crop_pads_same", "interp_param { height: 4 width: 7 pad_beg: -1 pad_end: -1 }", (2, 3, 6, 9)),
]


@pytest.mark.parametrize("params,shape", [i[1:] for i in INTERP], ids=[i[0] for i in INTERP])
def test_interp_against_reference(params, shape):
    K.check_against_reference(L("Interp", params), {"data": shape})


def test_interp_align_corners_hand_values():
    """Align-corners: corners of the input map to corners of the output; a ramp stays a ramp."""
    x = np.arange(3, dtype=np.float32)[None, None, None, :].repeat(2, axis=2)  # (1, 1, 2, 3): rows [0 1 2]
    net = one_layer_net(L("Interp", "interp_param { height: 3 width: 5 }"), {"data": (1, 1, 2, 3)})
    (got,) = K.run_layer(net.layers[-1], [x])
    np.testing.assert_allclose(got[0, 0], np.tile([0, 0.5, 1, 1.5, 2], (3, 1)), rtol=0, atol=1e-7)


@pytest.mark.parametrize("params,match", [
    ("interp_param { zoom_factor: 2 pad_beg: 1 }", r"Interp 'l': interp_param.pad_beg=1 is not supported"),
    ("interp_param { height: 3 }", r"Interp 'l': interp_param=no output size"),
])
def test_interp_errors(params, match):
    from harness.caffe import load_net_text
    text = ('name: "t" layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 5'
            ' dim: 7 } } } ' + L("Interp", params))
    net = load_net_text(text, check=False)
    with pytest.raises(UnsupportedParam, match=match):
        K.build_layer_model(net.layers[-1], [D4])


def test_upsample_error_names_field():
    from harness.caffe import load_net_text
    text = ('name: "t" layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 5'
            ' dim: 7 } } } ' + L("Upsample", "upsample_param { upsample_h: 12 upsample_w: 14 }"))
    net = load_net_text(text, check=False)
    with pytest.raises(UnsupportedParam, match=r"Upsample 'l': upsample_param.upsample_h=12"):
        K.build_layer_model(net.layers[-1], [D4])
