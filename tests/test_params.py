"""harness.params, the one reader of layer parameters: enums by name, axes, PriorBox fields; and, over drawn layers,
the readers agree with what shape inference computes and with what the strategies rendered."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from harness import params
from harness.caffe import load_net_text
from harness.errors import InvalidParam, ShapeError, UnsupportedParam
from harness.reference.detection import prior_aspect_ratios as reference_aspect_ratios
from harness.reference.registry import REFERENCE
from harness.shapes import infer_shapes
from harness.strategies import Enum, layer_cases
from support import net_text

FEAT, IMG = (1, 3, 5, 7), (1, 3, 40, 56)


def _layer(text: str, inputs: dict[str, tuple[int, ...]]):
    return load_net_text(net_text(f"layer {{ {text} }}\n", inputs, name="n"), check=False).layers[-1]


def _pool(body: str):
    return _layer(f'name: "p" type: "Pooling" bottom: "x" top: "p" pooling_param {{ kernel_size: 2 {body} }}',
                  {"x": (2, 3, 6, 12)})


@pytest.mark.parametrize("body,method,ceil", [
    ("", "MAX", True), ("pool: AVE", "AVE", True), ("pool: STOCHASTIC", "STOCHASTIC", True),
    ("round_mode: FLOOR", "MAX", False), ("round_mode: CEIL pool: AVE", "AVE", True), ("ceil_mode: false", "MAX", False),
])
def test_pool_method_and_rounding_by_name(body, method, ceil):
    lay = _pool(body)
    assert params.pool_method(lay) == method
    assert params.pool_ceil(lay) is ceil
    assert (params.pool_geometry(lay).method, params.pool_geometry(lay).ceil) == (method, ceil)


@pytest.mark.parametrize("kind,field,body,reader,want", [
    ("SPP", "spp_param", "pyramid_height: 2", params.spp_method, "MAX"),
    ("SPP", "spp_param", "pyramid_height: 2 pool: AVE", params.spp_method, "AVE"),
    ("Eltwise", "eltwise_param", "", params.eltwise_operation, "SUM"),
    ("Eltwise", "eltwise_param", "operation: PROD", params.eltwise_operation, "PROD"),
    ("Eltwise", "eltwise_param", "operation: MAX", params.eltwise_operation, "MAX"),
    ("LRN", "lrn_param", "", params.lrn_region, "ACROSS_CHANNELS"),
    ("LRN", "lrn_param", "norm_region: WITHIN_CHANNEL", params.lrn_region, "WITHIN_CHANNEL"),
    ("Reduction", "reduction_param", "", params.reduction_operation, "SUM"),
    ("Reduction", "reduction_param", "operation: SUMSQ", params.reduction_operation, "SUMSQ"),
    ("DetectionOutput", "detection_output_param", "num_classes: 3", params.detection_code_type, "CORNER"),
    ("DetectionOutput", "detection_output_param", "num_classes: 3 code_type: CENTER_SIZE",
     params.detection_code_type, "CENTER_SIZE"),
])
def test_enum_readers_return_caffe_names(kind, field, body, reader, want):
    lay = _layer(f'name: "l" type: "{kind}" bottom: "x" top: "y" {field} {{ {body} }}', {"x": (2, 3, 4, 5)})
    assert reader(lay) == want


@pytest.mark.parametrize("axis,num_axes,want", [(0, 4, 0), (3, 4, 3), (-1, 4, 3), (-4, 4, 0), (-1, 2, 1)])
def test_canonical_axis_table(axis, num_axes, want):
    """``Blob::CanonicalAxisIndex``: ``-num_axes <= axis < num_axes``, a negative axis plus num_axes."""
    lay = _layer('name: "s" type: "Softmax" bottom: "x" top: "y"', {"x": (2, 3, 4, 5)})
    assert params.canonical_axis(lay, "softmax_param.axis", axis, num_axes) == want


@pytest.mark.parametrize("axis", [4, -5])
def test_canonical_axis_out_of_range_names_field_value_and_range(axis):
    lay = _layer('name: "s" type: "Softmax" bottom: "x" top: "y"', {"x": (2, 3, 4, 5)})
    with pytest.raises(ShapeError, match=rf"Softmax 's': softmax_param.axis={axis} is out of range for a 4-D blob "
                                         r"\(valid: -4..3\)"):
        params.canonical_axis(lay, "softmax_param.axis", axis, 4)


def test_layer_axis_reads_the_field_and_canonicalises():
    lay = _layer('name: "c" type: "Concat" bottom: "x" top: "y" concat_param { axis: -2 }', {"x": (2, 3, 4, 5)})
    assert params.layer_axis(lay, "concat_param", 4) == 2


def _prior(body: str):
    return _layer(f'name: "p" type: "PriorBox" bottom: "f" bottom: "i" top: "y" prior_box_param {{ {body} }}',
                  {"f": FEAT, "i": IMG})


def test_prior_box_defaults_and_values():
    p = params.prior_box_params(_prior("min_size: 4 max_size: 9 aspect_ratio: 2 flip: false"))
    assert (p.min_sizes, p.max_sizes, p.aspect_ratios, p.flip, p.clip) == ((4.0,), (9.0,), (2.0,), False, False)
    assert (p.variance, p.img_hw, p.step_hw, p.offset) == ((0.1,), None, None, 0.5)
    q = params.prior_box_params(_prior("min_size: 4 img_h: 30 img_w: 70 step_h: 6 step_w: 9 offset: 0.25 "
                                       "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2"))
    assert (q.img_hw, q.step_hw, q.offset) == ((30, 70), (6.0, 9.0), 0.25)
    np.testing.assert_allclose(q.variance, [0.1, 0.1, 0.2, 0.2], rtol=1e-7)
    assert params.prior_box_params(_prior("min_size: 4 img_size: 50 step: 8")).img_hw == (50, 50)


@pytest.mark.parametrize("body,words", [
    ("max_size: 20", ["min_size=<unset>"]),
    ("min_size: 4 max_size: 3", ["max_size=3.0 is not supported", "min_size=4.0"]),
    ("min_size: 4 min_size: 6 max_size: 9", ["1 max_size for 2 min_size"]),
    ("min_size: 4 variance: 0.1 variance: 0.2", ["2 variance values", "one or four positive values"]),
    ("min_size: 4 variance: -0.1", ["variance=[-0.1", "positive"]),
    ("min_size: 4 img_size: 30 img_h: 20 img_w: 30", ["img_size=30", "either img_size or img_h/img_w"]),
    ("min_size: 4 step: 2 step_h: 3 step_w: 3", ["step=2.0", "either step or step_h/step_w"]),
])
def test_prior_box_faults_raise_one_class_with_one_message_on_every_side(body, words):
    """The same fault is the same :class:`InvalidParam` (a ShapeError and an UnsupportedParam) whether shape
    inference, the reference or the converter reads the layer first."""
    lay = _prior(body)
    with pytest.raises(InvalidParam) as direct:
        params.prior_box_params(lay)
    assert issubclass(InvalidParam, ShapeError) and issubclass(InvalidParam, UnsupportedParam)
    for w in words:
        assert w in str(direct.value), (w, str(direct.value))
    with pytest.raises(InvalidParam) as ref:
        REFERENCE["PriorBox"](lay, [np.zeros(FEAT), np.zeros(IMG)], dtype=np.float64)
    assert str(ref.value) == str(direct.value)
    net = load_net_text(net_text(f'layer {{ name: "p" type: "PriorBox" bottom: "f" bottom: "i" top: "y" '
                                 f'prior_box_param {{ {body} }} }}\n', {"f": FEAT, "i": IMG}, name="n"), check=False)
    with pytest.raises(InvalidParam) as shp:
        infer_shapes(net)
    assert str(shp.value).endswith(str(direct.value))


# ---------------------------------------------------------------------------------------------------------------
# drawn layers: the readers against shape inference and against what was rendered


def _rendered(case, param_field: str, field: str):
    """The value the strategy wrote for ``param_field.field`` (None when it left the field at Caffe's default)."""
    for key, value in case.layer.params:
        if key == param_field and isinstance(value, list):
            for k, v in value:
                if k == field:
                    return str(v) if isinstance(v, Enum) else v
    return None


_ENUMS = {
    "Pooling": ("pooling_param", "pool", params.pool_method, "MAX"),
    "SPP": ("spp_param", "pool", params.spp_method, "MAX"),
    "Eltwise": ("eltwise_param", "operation", params.eltwise_operation, "SUM"),
    "LRN": ("lrn_param", "norm_region", params.lrn_region, "ACROSS_CHANNELS"),
    "Reduction": ("reduction_param", "operation", params.reduction_operation, "SUM"),
    "DetectionOutput": ("detection_output_param", "code_type", params.detection_code_type, "CORNER"),
}


@settings(max_examples=60, deadline=None)
@given(case=layer_cases(list(_ENUMS)))
def test_enum_readers_return_what_the_strategies_rendered(case):
    param_field, field, reader, default = _ENUMS[case.type]
    lay = case.load().layers[-1]
    want = _rendered(case, param_field, field) or default
    assert reader(lay) == want


@settings(max_examples=60, deadline=None)
@given(case=layer_cases(["Softmax", "Concat", "Flatten", "Reduction", "Tile", "InnerProduct", "Crop"]))
def test_axis_reader_matches_shape_inference(case):
    """The axis :func:`harness.params.layer_axis` reads is the one along which shape inference changed the blob."""
    net = case.load()
    lay = net.layers[-1]
    ls = infer_shapes(net)[lay.name]
    b, top = ls.bottom_shapes[0], ls.top_shapes[0]
    field = {"Softmax": "softmax_param", "Concat": "concat_param", "Flatten": "flatten_param",
             "Reduction": "reduction_param", "Tile": "tile_param", "InnerProduct": "inner_product_param",
             "Crop": "crop_param"}[case.type]
    if case.type == "Concat" and lay.p("concat_param").HasField("concat_dim"):
        return  # the legacy spelling is read by shape inference's own _axis_or_dim
    axis = params.layer_axis(lay, field, len(b))
    if case.type == "Softmax":
        assert top == b and 0 <= axis < len(b)
    elif case.type == "Concat":
        assert top[axis] == sum(s[axis] for s in ls.bottom_shapes)
        assert top[:axis] + top[axis + 1:] == b[:axis] + b[axis + 1:]
    elif case.type == "Flatten":
        end = params.layer_axis(lay, field, len(b), "end_axis")
        assert top == b[:axis] + (int(np.prod(b[axis:end + 1])),) + b[end + 1:]
    elif case.type == "Reduction":
        assert top == b[:axis]
    elif case.type == "Tile":
        assert top[axis] == b[axis] * lay.p("tile_param").tiles
    elif case.type == "InnerProduct":
        assert top == b[:axis] + (lay.p("inner_product_param").num_output,)
    else:  # Crop: axes from `axis` on take the reference bottom's sizes
        assert top[axis:] == ls.bottom_shapes[1][axis:] and top[:axis] == b[:axis]


@settings(max_examples=40, deadline=None)
@given(case=layer_cases(["PriorBox"]))
def test_prior_box_reader_with_the_reference_expansion_matches_shape_inference(case):
    """Shape inference counts priors with its own aspect-ratio expansion; the reference's (float32) expansion over the
    same :func:`harness.params.prior_box_params` gives the same count."""
    net = case.load()
    lay = net.layers[-1]
    ls = infer_shapes(net)[lay.name]
    p = params.prior_box_params(lay)
    per_cell = len(reference_aspect_ratios(p.aspect_ratios, flip=p.flip)) * len(p.min_sizes) + len(p.max_sizes)
    f = ls.bottom_shapes[0]
    assert ls.top_shapes == ((1, 2, f[2] * f[3] * per_cell * 4),)
