"""Shape inference: golden real-Caffe shapes, Caffe's size rules as tables, and every Caffe check as a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.caffe import load_net, load_net_text
from harness.catalogue import CATALOGUE
from harness.errors import HarnessError, ResourceError, ShapeError, UnsupportedParam
from harness.proto import caffe_pb2 as pb
from harness.shapes import (
    check_blob_shapes,
    check_budget,
    conv_out_size,
    deconv_out_size,
    infer_shapes,
    interp_out_size,
    param_shapes,
    parse_bytes,
    pool_out_size,
    spp_level_geometry,
)
from harness.shapes.registry import SHAPES
from support import GOLDEN, net_text

CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "net.prototxt").exists())


# ---------------------------------------------------------------------------------------------------------------
# golden: real Caffe


@pytest.mark.parametrize("case", CASES)
def test_golden_top_shapes_equal_real_caffe(case):
    d = GOLDEN / case
    net = load_net(d / "net.prototxt", d / "weights.caffemodel")
    ns = infer_shapes(net)
    with np.load(d / "blobs.npz") as z:
        want = {k: tuple(z[k].shape) for k in z.files if "_split/" not in k}
    assert dict(ns.keys) == want


def _raw_caffemodel_shapes(path: Path) -> dict[str, list[tuple[int, ...]]]:
    netp = pb.NetParameter()
    netp.ParseFromString(path.read_bytes())
    out = {}
    for lp in netp.layer:
        if len(lp.blobs):
            out[lp.name] = [tuple(b.shape.dim) for b in lp.blobs]
    return out


@pytest.mark.parametrize("case", CASES)
def test_golden_param_shapes_equal_caffemodel_blob_shapes(case):
    """The shapes real Caffe wrote (BlobShape, read here with protobuf directly) are the shapes we expect."""
    d = GOLDEN / case
    net = load_net(d / "net.prototxt", d / "weights.caffemodel")
    ns = infer_shapes(net)
    raw = _raw_caffemodel_shapes(d / "weights.caffemodel")
    ours = {ls.name: list(ls.param_shapes) for ls in ns.layers if ls.param_shapes}
    assert ours == raw
    check_blob_shapes(net)  # and the loaded blobs pass the check


def test_every_catalogue_type_has_a_shape_rule():
    assert SHAPES.types() == frozenset(CATALOGUE)


def test_golden_param_counts_and_macs():
    net = load_net(GOLDEN / "conv_basic" / "net.prototxt")
    ns = infer_shapes(net)
    ls = ns["conv_s2_k7p3"]
    # data (2,3,9,11), k7 s2 p3, 4 outputs: (9+6-7)//2+1 = 5, (11+6-7)//2+1 = 6
    assert ls.top_shapes == ((2, 4, 5, 6),)
    assert ls.param_shapes == ((4, 3, 7, 7), (4,))
    assert ls.macs == 2 * 4 * 5 * 6 * 3 * 7 * 7
    assert ns.param_count == sum(int(np.prod(s)) for x in ns.layers for s in x.param_shapes) == 975


# ---------------------------------------------------------------------------------------------------------------
# Caffe's size rules as tables


@pytest.mark.parametrize(
    "size,kernel,stride,pad,ceil,any_pad,want",
    [
        (6, 3, 2, 0, True, False, 3),  # test_pooling_layer.cpp TestSetup: 6x5 k3 s2 -> 3x2
        (5, 3, 2, 0, True, False, 2),
        (6, 3, 2, 1, True, True, 4),  # TestSetupPadded: k3 s2 p1 -> 4x3
        (5, 3, 2, 1, True, True, 3),
        (3, 3, 2, 2, True, True, 3),  # TestForwardMaxPadded 3x3 k3 s2 p2 -> 3x3
        (14, 3, 2, 0, True, False, 7),  # GoogLeNet 14 -> 7 (ceil) ...
        (14, 3, 2, 0, False, False, 6),  # ... floor (and TF 'valid') give 6
        (112, 3, 2, 0, True, False, 56),  # TF 'valid' would give 55
        (13, 3, 2, 0, True, False, 6),  # AlexNet pool5
        (9, 3, 2, 1, True, True, 5),  # ceil((9+2-3)/2)+1 = 5; (5-1)*2 = 8 < 10: no clip
        (10, 3, 2, 1, True, True, 5),  # ceil(9/2)+1 = 6, (6-1)*2 = 10 >= 10+1? no -> 6? see below
        (12, 2, 3, 0, True, True, 4),  # golden max_rect W: ceil(10/3)+1 = 5, other axis padded -> clipped to 4
        (12, 2, 3, 0, True, False, 5),  # the same axis without any padding keeps 5
        (9, 3, 3, 2, True, True, 4),  # golden max_k3s3p2: ceil(10/3)+1 = 5, (5-1)*3 = 12 >= 11 -> 4
        (10, 3, 2, 1, False, True, 5),  # floor(9/2)+1 = 5
        (7, 2, 2, 1, False, True, 4),  # pool_floor: floor(7/2)+1 = 4
    ],
)
def test_pool_out_size_table(size, kernel, stride, pad, ceil, any_pad, want):
    if (size, kernel, stride, pad, ceil) == (10, 3, 2, 1, True):
        want = 6  # ceil(9/2)+1 = 6; (6-1)*2 = 10 < 10+1: the last window starts inside the image: kept
    assert pool_out_size(size, kernel=kernel, stride=stride, pad=pad, ceil=ceil, any_pad=any_pad) == want


@pytest.mark.parametrize(
    "size,kernel,stride,pad,dilation,want",
    [
        (224, 7, 2, 3, 1, 112),  # ResNet conv1 (TF 'same' pads (2,3), Caffe (3,3): same size, shifted values)
        (227, 11, 4, 0, 1, 55),  # AlexNet conv1
        (224, 11, 4, 2, 1, 55),  # CaffeNet variant with pad 2
        (11, 5, 4, 0, 1, 2),  # golden conv_s4_k11 W
        (13, 3, 1, 2, 2, 13),  # dilation 2: extent 5
        (10, 3, 2, 2, 2, 5),  # (10+4-5)//2+1
        (5, 3, 3, 0, 1, 1),  # floor((5-3)/3)+1
    ],
)
def test_conv_out_size_table(size, kernel, stride, pad, dilation, want):
    assert conv_out_size(size, kernel=kernel, stride=stride, pad=pad, dilation=dilation) == want


@pytest.mark.parametrize(
    "size,kernel,stride,pad,dilation,want",
    [
        (5, 4, 2, 1, 1, 10),  # FCN-style 2x upsampling: 2*(5-1)+4-2
        (6, 3, 3, 1, 1, 16),  # 3*5+3-2
        (5, 3, 1, 0, 2, 9),  # 4+5
        (1, 64, 32, 16, 1, 32),  # FCN-32s: 32*0+64-32
    ],
)
def test_deconv_out_size_table(size, kernel, stride, pad, dilation, want):
    assert deconv_out_size(size, kernel=kernel, stride=stride, pad=pad, dilation=dilation) == want


@pytest.mark.parametrize(
    "size,zoom,shrink,pad_beg,pad_end,want",
    [
        (9, 2, None, 0, 0, 17),  # 9 + 8*1
        (9, 8, None, 0, 0, 65),  # deeplab zoom 8: 9 + 8*7
        (17, None, 2, 0, 0, 9),  # (16)//2+1
        (18, None, 4, 0, 0, 5),  # 17//4+1
        (17, 3, 2, 0, 0, 25),  # shrink -> 9, zoom -> 9 + 8*2
        (12, 2, None, -1, -2, 17),  # eff 9
    ],
)
def test_interp_out_size_table(size, zoom, shrink, pad_beg, pad_end, want):
    assert interp_out_size(size, zoom=zoom, shrink=shrink, pad_beg=pad_beg, pad_end=pad_end) == want


def test_spp_level_geometry():
    # level 2 on 13x10: bins 4; kernel ceil(13/4)=4, remainder 3, pad 2; kernel ceil(10/4)=3, remainder 2, pad 1
    assert spp_level_geometry(2, 13, 10) == ((4, 3), (2, 1))
    assert spp_level_geometry(0, 13, 10) == ((13, 10), (0, 0))


# ---------------------------------------------------------------------------------------------------------------
# one layer at a time, built from prototxt text

INPUTS = {"data": (2, 3, 5, 7)}


def _net(body: str, inputs: dict | None = None, check: bool = False):
    inputs = INPUTS if inputs is None else inputs
    return load_net_text(net_text(body, inputs), check=check)


def _layer(type_: str, params: str = "", bottoms=("data",), tops=("out",), name="L"):
    bs = " ".join(f'bottom: "{b}"' for b in bottoms)
    ts = " ".join(f'top: "{t}"' for t in tops)
    return f'layer {{ name: "{name}" type: "{type_}" {bs} {ts} {params} }}\n'


def _shapes(type_, params="", bottoms=("data",), tops=("out",), inputs=None):
    ns = infer_shapes(_net(_layer(type_, params, bottoms, tops), inputs))
    return ns["L"]


CASES_OK = [
    # (type, params, inputs, bottoms, tops, top shapes, param shapes, macs)
    ("Convolution", "convolution_param { num_output: 4 kernel_size: 3 pad: 1 }", None, ("data",), ("out",),
     [(2, 4, 5, 7)], [(4, 3, 3, 3), (4,)], 2 * 4 * 5 * 7 * 3 * 9),
    ("Convolution", "convolution_param { num_output: 6 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 group: 3 "
     "bias_term: false }", None, ("data",), ("out",), [(2, 6, 2, 2)], [(6, 1, 3, 2)], 2 * 6 * 2 * 2 * 1 * 6),
    ("ConvolutionDepthwise", "convolution_param { num_output: 6 kernel_size: 3 group: 3 pad: 1 }", None, ("data",),
     ("out",), [(2, 6, 5, 7)], [(6, 1, 3, 3), (6,)], 2 * 6 * 5 * 7 * 9),
    ("DepthwiseConvolution", "convolution_param { num_output: 3 kernel_size: 3 group: 3 }", None, ("data",),
     ("out",), [(2, 3, 3, 5)], [(3, 1, 3, 3), (3,)], 2 * 3 * 3 * 5 * 9),
    ("Deconvolution", "convolution_param { num_output: 4 kernel_size: 4 stride: 2 pad: 1 }", None, ("data",),
     ("out",), [(2, 4, 10, 14)], [(3, 4, 4, 4), (4,)], 2 * 3 * 5 * 7 * 4 * 16),
    ("Deconvolution", "convolution_param { num_output: 6 kernel_size: 2 stride: 2 group: 3 bias_term: false }",
     None, ("data",), ("out",), [(2, 6, 10, 14)], [(3, 2, 2, 2)], 2 * 3 * 5 * 7 * 2 * 4),
    ("Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 2 }", None, ("data",), ("out",), [(2, 3, 2, 3)],
     [], 0),
    ("Pooling", "pooling_param { pool: AVE kernel_size: 3 stride: 2 round_mode: FLOOR }", None, ("data",),
     ("out",), [(2, 3, 2, 3)], [], 0),
    ("Pooling", "pooling_param { pool: AVE kernel_size: 2 stride: 2 }", None, ("data",), ("out",), [(2, 3, 3, 4)],
     [], 0),
    ("Pooling", "pooling_param { pool: AVE kernel_size: 2 stride: 2 round_mode: FLOOR }", None, ("data",),
     ("out",), [(2, 3, 2, 3)], [], 0),
    ("Pooling", "pooling_param { pool: AVE global_pooling: true }", None, ("data",), ("out",), [(2, 3, 1, 1)], [], 0),
    ("Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }", None, ("data",), ("out", "mask"),
     [(2, 3, 3, 4), (2, 3, 3, 4)], [], 0),
    ("SPP", "spp_param { pyramid_height: 3 }", {"data": (2, 3, 13, 10)}, ("data",), ("out",),
     [(2, 3 * (1 + 4 + 16))], [], 0),
    ("SPP", "spp_param { pyramid_height: 1 pool: AVE }", None, ("data",), ("out",), [(2, 3, 1, 1)], [], 0),
    ("LRN", "lrn_param { local_size: 3 }", None, ("data",), ("out",), [(2, 3, 5, 7)], [], 0),
    ("MVN", "", None, ("data",), ("out",), [(2, 3, 5, 7)], [], 0),
    ("BatchNorm", "", None, ("data",), ("out",), [(2, 3, 5, 7)], [(3,), (3,), (1,)], 0),
    ("Normalize", "norm_param { channel_shared: false }", None, ("data",), ("out",), [(2, 3, 5, 7)], [(3,)], 0),
    ("Normalize", "", None, ("data",), ("out",), [(2, 3, 5, 7)], [()], 0),
    ("Scale", "scale_param { bias_term: true }", None, ("data",), ("out",), [(2, 3, 5, 7)], [(3,), (3,)],
     2 * 3 * 5 * 7),
    ("Scale", "scale_param { axis: 2 num_axes: 2 }", None, ("data",), ("out",), [(2, 3, 5, 7)], [(5, 7)],
     2 * 3 * 5 * 7),
    ("Scale", "scale_param { axis: 0 num_axes: -1 }", None, ("data",), ("out",), [(2, 3, 5, 7)], [(2, 3, 5, 7)],
     2 * 3 * 5 * 7),
    ("Scale", "scale_param { num_axes: 0 }", None, ("data",), ("out",), [(2, 3, 5, 7)], [()], 2 * 3 * 5 * 7),
    ("Scale", "scale_param { axis: -2 }", None, ("data",), ("out",), [(2, 3, 5, 7)], [(5,)], 2 * 3 * 5 * 7),
    ("Scale", "scale_param { bias_term: true }", {"data": (2, 3, 5, 7), "g": (3, 5)}, ("data", "g"), ("out",),
     [(2, 3, 5, 7)], [(3, 5)], 2 * 3 * 5 * 7),
    ("Bias", "bias_param { axis: 1 num_axes: 2 }", None, ("data",), ("out",), [(2, 3, 5, 7)], [(3, 5)], 0),
    ("InnerProduct", "inner_product_param { num_output: 4 }", None, ("data",), ("out",), [(2, 4)],
     [(4, 105), (4,)], 2 * 105 * 4),
    ("InnerProduct", "inner_product_param { num_output: 4 axis: 2 transpose: true bias_term: false }", None,
     ("data",), ("out",), [(2, 3, 4)], [(35, 4)], 6 * 35 * 4),
    ("InnerProduct", "inner_product_param { num_output: 6 axis: -1 }", None, ("data",), ("out",), [(2, 3, 5, 6)],
     [(6, 7), (6,)], 30 * 7 * 6),
    ("Embed", "embed_param { num_output: 4 input_dim: 10 }", {"data": (2, 3)}, ("data",), ("out",), [(2, 3, 4)],
     [(10, 4), (4,)], 0),
    ("PReLU", "", None, ("data",), ("out",), [(2, 3, 5, 7)], [(3,)], 0),
    ("PReLU", "prelu_param { channel_shared: true }", None, ("data",), ("out",), [(2, 3, 5, 7)], [()], 0),
    ("ReLU", "", None, ("data",), ("data",), [(2, 3, 5, 7)], [], 0),
    ("ReLU6", "", None, ("data",), ("out",), [(2, 3, 5, 7)], [], 0),
    ("Clip", "clip_param { min: -1 max: 2 }", None, ("data",), ("out",), [(2, 3, 5, 7)], [], 0),
    ("Softmax", "softmax_param { axis: -1 }", None, ("data",), ("out",), [(2, 3, 5, 7)], [], 0),
    ("Concat", "", {"a": (2, 3, 5, 7), "b": (2, 4, 5, 7)}, ("a", "b"), ("out",), [(2, 7, 5, 7)], [], 0),
    ("Concat", "concat_param { axis: -1 }", {"a": (2, 3, 5, 7), "b": (2, 3, 5, 4)}, ("a", "b"), ("out",),
     [(2, 3, 5, 11)], [], 0),
    ("Concat", "concat_param { concat_dim: 2 }", {"a": (2, 3, 5, 7), "b": (2, 3, 6, 7)}, ("a", "b"), ("out",),
     [(2, 3, 11, 7)], [], 0),
    ("Slice", "slice_param { slice_point: 1 slice_point: 3 }", {"data": (2, 6, 5, 7)}, ("data",), ("x", "y", "z"),
     [(2, 1, 5, 7), (2, 2, 5, 7), (2, 3, 5, 7)], [], 0),
    ("Slice", "slice_param { axis: -1 }", {"data": (2, 3, 5, 8)}, ("data",), ("x", "y"),
     [(2, 3, 5, 4), (2, 3, 5, 4)], [], 0),
    ("Slice", "slice_param { slice_dim: 2 slice_point: 2 }", None, ("data",), ("x", "y"),
     [(2, 3, 2, 7), (2, 3, 3, 7)], [], 0),
    ("Split", "", None, ("data",), ("x", "y"), [(2, 3, 5, 7), (2, 3, 5, 7)], [], 0),
    ("Silence", "", None, ("data",), (), [], [], 0),
    ("Flatten", "", None, ("data",), ("out",), [(2, 105)], [], 0),
    ("Flatten", "flatten_param { axis: 2 }", None, ("data",), ("out",), [(2, 3, 35)], [], 0),
    ("Flatten", "flatten_param { axis: 0 end_axis: 1 }", None, ("data",), ("out",), [(6, 5, 7)], [], 0),
    ("Flatten", "flatten_param { axis: -3 end_axis: -2 }", None, ("data",), ("out",), [(2, 15, 7)], [], 0),
    ("Reshape", "reshape_param { shape { dim: 0 dim: -1 dim: 7 } }", None, ("data",), ("out",), [(2, 15, 7)], [], 0),
    ("Reshape", "reshape_param { shape { dim: 5 dim: 3 } axis: 1 num_axes: 2 }", None, ("data",), ("out",),
     [(2, 5, 3, 7)], [], 0),
    ("Reshape", "reshape_param { shape { dim: 1 } axis: -1 num_axes: 0 }", None, ("data",), ("out",),
     [(2, 3, 5, 7, 1)], [], 0),
    ("Reshape", "reshape_param { shape { dim: -1 } }", None, ("data",), ("out",), [(210,)], [], 0),
    ("Reshape", "reshape_param { shape { dim: 0 dim: 0 dim: 35 } }", None, ("data",), ("out",), [(2, 3, 35)], [], 0),
    ("Crop", "crop_param { offset: 1 }", {"data": (2, 3, 5, 7), "ref": (1, 1, 3, 4)}, ("data", "ref"), ("out",),
     [(2, 3, 3, 4)], [], 0),
    ("Crop", "crop_param { axis: 1 offset: 0 offset: 2 offset: 3 }", {"data": (2, 3, 5, 7), "ref": (9, 2, 3, 4)},
     ("data", "ref"), ("out",), [(2, 2, 3, 4)], [], 0),
    ("Permute", "permute_param { order: 0 order: 2 order: 3 order: 1 }", None, ("data",), ("out",), [(2, 5, 7, 3)],
     [], 0),
    ("Permute", "permute_param { order: 3 }", None, ("data",), ("out",), [(7, 2, 3, 5)], [], 0),
    ("Tile", "tile_param { axis: -1 tiles: 3 }", None, ("data",), ("out",), [(2, 3, 5, 21)], [], 0),
    ("ShuffleChannel", "shuffle_channel_param { group: 3 }", {"data": (2, 6, 5, 7)}, ("data",), ("out",),
     [(2, 6, 5, 7)], [], 0),
    ("Eltwise", "eltwise_param { operation: SUM coeff: 1 coeff: -1 }", {"a": (2, 3, 5, 7), "b": (2, 3, 5, 7)},
     ("a", "b"), ("out",), [(2, 3, 5, 7)], [], 0),
    ("Axpy", "", {"a": (2, 3, 1, 1), "x": (2, 3, 5, 7), "y": (2, 3, 5, 7)}, ("a", "x", "y"), ("out",),
     [(2, 3, 5, 7)], [], 0),
    ("Reduction", "reduction_param { axis: 2 }", None, ("data",), ("out",), [(2, 3)], [], 0),
    ("Reduction", "reduction_param { axis: -1 operation: MEAN }", None, ("data",), ("out",), [(2, 3, 5)], [], 0),
    ("Reduction", "", None, ("data",), ("out",), [()], [], 0),
    ("ArgMax", "", None, ("data",), ("out",), [(2, 1, 1, 1)], [], 0),
    ("ArgMax", "argmax_param { top_k: 4 out_max_val: true }", None, ("data",), ("out",), [(2, 2, 4, 1)], [], 0),
    ("ArgMax", "argmax_param { top_k: 2 }", {"data": (2, 9)}, ("data",), ("out",), [(2, 1, 2)], [], 0),
    ("ArgMax", "argmax_param { axis: 1 top_k: 2 }", None, ("data",), ("out",), [(2, 2, 5, 7)], [], 0),
    ("ArgMax", "argmax_param { axis: -1 }", None, ("data",), ("out",), [(2, 3, 5, 1)], [], 0),
    ("Upsample", "upsample_param { scale: 2 }", None, ("data",), ("out",), [(2, 3, 10, 14)], [], 0),
    ("Upsample", "upsample_param { scale_h: 3 scale_w: 2 }", None, ("data",), ("out",), [(2, 3, 15, 14)], [], 0),
    ("Upsample", "upsample_param { upsample_h: 9 upsample_w: 13 }", None, ("data",), ("out",), [(2, 3, 9, 13)], [],
     0),
    ("Interp", "interp_param { zoom_factor: 2 }", None, ("data",), ("out",), [(2, 3, 9, 13)], [], 0),
    ("Interp", "interp_param { shrink_factor: 2 }", None, ("data",), ("out",), [(2, 3, 3, 4)], [], 0),
    ("Interp", "interp_param { height: 11 width: 6 }", None, ("data",), ("out",), [(2, 3, 11, 6)], [], 0),
    ("Interp", "", {"data": (2, 3, 5, 7), "ref": (1, 1, 8, 9)}, ("data", "ref"), ("out",), [(2, 3, 8, 9)], [], 0),
    ("PriorBox", "prior_box_param { min_size: 4 max_size: 9 aspect_ratio: 2 flip: true }",
     {"f": (1, 3, 5, 7), "img": (1, 3, 40, 56)}, ("f", "img"), ("out",), [(1, 2, 5 * 7 * 4 * 4)], [], 0),
    ("PriorBox", "prior_box_param { min_size: 4 aspect_ratio: 2 aspect_ratio: 3 aspect_ratio: 2 flip: false "
     "variance: 0.1 }", {"f": (1, 3, 5, 7), "img": (1, 3, 40, 56)}, ("f", "img"), ("out",), [(1, 2, 5 * 7 * 3 * 4)],
     [], 0),
    ("DetectionOutput", "detection_output_param { num_classes: 3 keep_top_k: 5 }",
     {"loc": (2, 24), "conf": (2, 18), "prior": (1, 2, 24)}, ("loc", "conf", "prior"), ("out",), [(1, 1, 10, 7)],
     [], 0),
    ("DetectionOutput", "detection_output_param { num_classes: 3 share_location: false }",
     {"loc": (2, 72), "conf": (2, 18), "prior": (1, 2, 24)}, ("loc", "conf", "prior"), ("out",),
     [(1, 1, 2 * 2 * 6, 7)], [], 0),
]


@pytest.mark.parametrize("type_,params,inputs,bottoms,tops,want_tops,want_params,want_macs", CASES_OK,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES_OK)])
def test_layer_shapes(type_, params, inputs, bottoms, tops, want_tops, want_params, want_macs):
    ls = _shapes(type_, params, bottoms, tops, inputs)
    assert [tuple(s) for s in ls.top_shapes] == [tuple(s) for s in want_tops]
    assert list(ls.param_shapes) == [tuple(s) for s in want_params]
    assert ls.macs == want_macs
    assert ls.data_dependent == (type_ == "DetectionOutput")


def test_catalogue_is_covered_by_the_ok_table():
    from harness.catalogue import canonical_type

    covered = {canonical_type(c[0]) for c in CASES_OK} | {"Input"}
    # element-wise layers share one rule; the table exercises ReLU/ReLU6/Clip of that family
    family = {"ELU", "Sigmoid", "TanH", "AbsVal", "BNLL", "Power", "Exp", "Log", "Threshold", "Swish", "Dropout"}
    assert set(CATALOGUE) - covered == family


@pytest.mark.parametrize("type_", ["ELU", "Sigmoid", "TanH", "AbsVal", "BNLL", "Power", "Exp", "Log", "Threshold",
                                   "Swish", "Dropout"])
def test_elementwise_family_keeps_shape(type_):
    ls = _shapes(type_, inputs={"data": (2, 3, 5)})
    assert ls.top_shapes == ((2, 3, 5),)
    assert ls.param_shapes == ()


# ---------------------------------------------------------------------------------------------------------------
# Caffe's checks as errors: (type, params, inputs, bottoms, tops, error class, words the message must contain)

CASES_BAD = [
    ("Convolution", "convolution_param { num_output: 4 kernel_size: 3 group: 2 }", None, ("data",), ("out",),
     ShapeError, ["'L'", "group=2", "3"]),
    ("Convolution", "convolution_param { num_output: 5 kernel_size: 3 group: 3 }", None, ("data",), ("out",),
     ShapeError, ["group=3", "num_output=5"]),
    ("Convolution", "convolution_param { num_output: 4 kernel_size: 9 pad: 1 }", None, ("data",), ("out",),
     ShapeError, ["kernel_h=9", "larger than the padded input", "5+2*1=7"]),
    ("Convolution", "convolution_param { num_output: 4 kernel_size: 3 dilation: 4 }", None, ("data",), ("out",),
     ShapeError, ["dilation 4", "extent 9"]),
    ("Convolution", "convolution_param { num_output: 4 kernel_size: 3 kernel_size: 3 kernel_size: 3 }", None,
     ("data",), ("out",), UnsupportedParam, ["kernel_size=[3, 3, 3]"]),
    ("Convolution", "convolution_param { num_output: 4 kernel_size: 3 }", {"data": (2, 3, 7)}, ("data",), ("out",),
     ShapeError, ["4 axes", "(2, 3, 7)"]),
    ("Convolution", "convolution_param { num_output: 4 kernel_size: 3 stride: 0 }", None, ("data",), ("out",),
     ShapeError, ["stride=0x0"]),
    ("Convolution", "convolution_param { num_output: 0 kernel_size: 3 }", None, ("data",), ("out",), ShapeError,
     ["num_output=0"]),
    ("ConvolutionDepthwise", "convolution_param { num_output: 3 kernel_size: 3 group: 1 }", None, ("data",),
     ("out",), UnsupportedParam, ["group=1", "input channels (3)"]),
    ("Deconvolution", "convolution_param { num_output: 4 kernel_size: 2 pad: 3 }", {"data": (2, 3, 1, 2)}, ("data",),
     ("out",), ShapeError, ["pad=3x3", "too large"]),
    ("Pooling", "pooling_param { kernel_size: 3 pad: 3 }", None, ("data",), ("out",), ShapeError,
     ["pad=3x3", "kernel=3x3"]),
    ("Pooling", "pooling_param { kernel_size: 9 }", None, ("data",), ("out",), ShapeError,
     ["kernel_h=9", "larger than the padded input"]),
    ("Pooling", "pooling_param { kernel_size: 2 stride: 0 }", None, ("data",), ("out",), ShapeError, ["stride=0x0"]),
    ("Pooling", "pooling_param { pool: AVE kernel_size: 2 }", None, ("data",), ("out", "mask"), ShapeError,
     ["pool=AVE"]),
    ("SPP", "spp_param { pyramid_height: 3 }", {"data": (2, 3, 5, 7)}, ("data",), ("out",), ShapeError,
     ["pyramid level 2", "pad 2x1 >= kernel 2x2", "pyramid_height=3"]),
    ("SPP", "", None, ("data",), ("out",), ShapeError, ["pyramid_height=unset"]),
    ("LRN", "lrn_param { local_size: 4 }", None, ("data",), ("out",), ShapeError, ["local_size=4", "odd"]),
    ("LRN", "", {"data": (2, 3, 5)}, ("data",), ("out",), ShapeError, ["4 axes"]),
    ("Scale", "scale_param { axis: 2 num_axes: 3 }", None, ("data",), ("out",), ShapeError,
     ["axis=2", "num_axes=3"]),
    ("Scale", "scale_param { axis: 4 }", None, ("data",), ("out",), ShapeError, ["scale_param.axis=4"]),
    ("Scale", "", {"data": (2, 3, 5, 7), "g": (3, 4)}, ("data", "g"), ("out",), ShapeError, ["'g'", "(3, 4)"]),
    ("InnerProduct", "", None, ("data",), ("out",), ShapeError, ["num_output=unset"]),
    ("InnerProduct", "inner_product_param { num_output: 3 axis: -5 }", None, ("data",), ("out",), ShapeError,
     ["inner_product_param.axis=-5"]),
    ("Embed", "embed_param { num_output: 4 }", None, ("data",), ("out",), ShapeError, ["input_dim=unset"]),
    ("Concat", "", {"a": (2, 3, 5, 7), "b": (2, 3, 6, 7)}, ("a", "b"), ("out",), ShapeError,
     ["'b'", "(2, 3, 6, 7)", "concat axis 1"]),
    ("Concat", "", {"a": (2, 3, 5, 7), "b": (2, 3, 5)}, ("a", "b"), ("out",), ShapeError, ["(2, 3, 5)"]),
    ("Concat", "concat_param { axis: 1 concat_dim: 1 }", {"a": (2, 3), "b": (2, 3)}, ("a", "b"), ("out",),
     UnsupportedParam, ["concat_dim=1"]),
    ("Slice", "slice_param { slice_point: 2 slice_point: 1 }", None, ("data",), ("x", "y", "z"), ShapeError,
     ["slice_point=[2, 1]"]),
    ("Slice", "slice_param { slice_point: 3 }", None, ("data",), ("x", "y"), ShapeError,
     ["slice_point 3", "size 3"]),
    ("Slice", "slice_param { slice_point: 1 }", None, ("data",), ("x", "y", "z"), ShapeError,
     ["slice_point=[1]", "3 tops"]),
    ("Slice", "", None, ("data",), ("x", "y"), ShapeError, ["size 3", "2 tops"]),
    ("Flatten", "flatten_param { axis: 2 end_axis: 1 }", None, ("data",), ("out",), ShapeError, ["end_axis=1"]),
    ("Reshape", "reshape_param { shape { dim: -1 dim: -1 } }", None, ("data",), ("out",), ShapeError,
     ["more than one -1"]),
    ("Reshape", "reshape_param { shape { dim: 4 dim: -1 } }", None, ("data",), ("out",), ShapeError,
     ["[4, -1]", "210"]),
    ("Reshape", "reshape_param { shape { dim: 2 dim: 3 dim: 5 dim: 8 } }", None, ("data",), ("out",), ShapeError,
     ["240", "210"]),
    ("Reshape", "reshape_param { shape { dim: 0 dim: 0 } axis: 3 }", None, ("data",), ("out",), ShapeError,
     ["dim 1 is 0 (copy)"]),
    ("Reshape", "reshape_param { shape { dim: 1 } axis: 5 }", None, ("data",), ("out",), ShapeError,
     ["reshape_param.axis=5"]),
    ("Reshape", "reshape_param { shape { dim: 2 } axis: 3 num_axes: 2 }", None, ("data",), ("out",), ShapeError,
     ["num_axes=2"]),
    ("Crop", "crop_param { offset: 2 }", {"data": (2, 3, 5, 7), "ref": (1, 1, 4, 4)}, ("data", "ref"), ("out",),
     ShapeError, ["axis 2", "offset 2", "size 4"]),
    ("Crop", "crop_param { offset: 0 offset: 1 offset: 1 }", {"data": (2, 3, 5, 7), "ref": (1, 1, 4, 4)},
     ("data", "ref"), ("out",), ShapeError, ["offset=[0, 1, 1]"]),
    ("Permute", "permute_param { order: 0 order: 4 }", None, ("data",), ("out",), ShapeError, ["order=[0, 4]"]),
    ("Permute", "permute_param { order: 1 order: 1 }", None, ("data",), ("out",), ShapeError, ["duplicates"]),
    ("Tile", "", None, ("data",), ("out",), ShapeError, ["tiles=unset"]),
    ("ShuffleChannel", "shuffle_channel_param { group: 2 }", None, ("data",), ("out",), ShapeError,
     ["group=2", "3 channels"]),
    ("Eltwise", "", {"a": (2, 3, 5, 7), "b": (2, 3, 5, 6)}, ("a", "b"), ("out",), ShapeError,
     ["'b'", "(2, 3, 5, 6)"]),
    ("Eltwise", "eltwise_param { coeff: 1 }", {"a": (2, 3), "b": (2, 3)}, ("a", "b"), ("out",), ShapeError,
     ["1 coeff", "2 bottoms"]),
    ("Eltwise", "eltwise_param { operation: MAX coeff: 1 coeff: 2 }", {"a": (2, 3), "b": (2, 3)}, ("a", "b"),
     ("out",), UnsupportedParam, ["operation=MAX"]),
    ("ArgMax", "argmax_param { top_k: 4 axis: 1 }", None, ("data",), ("out",), ShapeError, ["top_k=4", "size 3"]),
    ("Upsample", "upsample_param { upsample_h: 4 upsample_w: 9 }", None, ("data",), ("out",), ShapeError,
     ["4x9", "5x7"]),
    ("Interp", "", None, ("data",), ("out",), ShapeError, ["interp_param needs"]),
    ("Interp", "interp_param { zoom_factor: 2 pad_beg: 1 }", None, ("data",), ("out",), UnsupportedParam,
     ["pad_beg=1"]),
    ("PriorBox", "prior_box_param { min_size: 4 max_size: 3 }", {"f": (1, 3, 5, 7), "img": (1, 3, 40, 56)},
     ("f", "img"), ("out",), ShapeError, ["max_size=3", "min_size=4"]),
    ("PriorBox", "prior_box_param { min_size: 4 variance: 0.1 variance: 0.2 }",
     {"f": (1, 3, 5, 7), "img": (1, 3, 40, 56)}, ("f", "img"), ("out",), ShapeError, ["2 variance"]),
    ("DetectionOutput", "detection_output_param { num_classes: 3 }",
     {"loc": (2, 20), "conf": (2, 18), "prior": (1, 2, 24)}, ("loc", "conf", "prior"), ("out",), ShapeError,
     ["(2, 20)", "6 priors"]),
    ("Input", "", {}, (), ("x",), ShapeError, ["no shape", "--input-shape x="]),
]


@pytest.mark.parametrize("type_,params,inputs,bottoms,tops,err,words", CASES_BAD,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES_BAD)])
def test_layer_errors(type_, params, inputs, bottoms, tops, err, words):
    with pytest.raises(err) as ei:
        try:
            net = _net(_layer(type_, params, bottoms, tops), inputs)
        except HarnessError:
            if type_ == "Input":
                raise
            raise AssertionError("the loader refused the test net before shape inference") from None
        infer_shapes(net)
    msg = str(ei.value)
    assert "\n" not in msg
    assert "<string>:" in msg or type_ == "Input"
    for w in words:
        assert w in msg, (w, msg)


def test_in_place_shape_change_and_unknown_bottom_and_duplicate_top():
    body = _layer("Flatten", bottoms=("data",), tops=("x",)) + _layer("Pooling", "pooling_param { kernel_size: 2 }",
                                                                      bottoms=("data",), tops=("x",), name="P")
    with pytest.raises(HarnessError) as ei:
        infer_shapes(_net(body))
    assert "'x'" in str(ei.value)


def test_check_blob_shapes_names_layer_index_expected_actual():
    text = (GOLDEN / "conv_basic" / "net.prototxt").read_text()
    net = load_net_text(text, check=False)
    good = infer_shapes(net)
    w = {ls.name: [np.zeros(s, np.float32) for s in ls.param_shapes] for ls in good.layers if ls.param_shapes}
    w["conv_rect"][0] = np.zeros((5, 3, 2, 3), np.float32)  # kh/kw swapped
    from harness.caffe import attach_weights

    bad = attach_weights(net, w)
    with pytest.raises(ShapeError) as ei:
        check_blob_shapes(bad)
    msg = str(ei.value)
    assert "'conv_rect'" in msg and "blob 0" in msg and "(5, 3, 2, 3)" in msg and "(5, 3, 3, 2)" in msg
    w["conv_rect"][0] = np.zeros((5, 3, 3, 2), np.float32)
    w["conv_rect"].append(np.zeros((5,), np.float32))
    with pytest.raises(ShapeError, match="3 blobs, the layer expects 2"):
        check_blob_shapes(attach_weights(net, w))
    # legacy right-aligned shapes are equal, as Caffe's Blob::ShapeEquals has them
    w["conv_rect"] = [np.zeros((5, 3, 3, 2), np.float32), np.zeros((1, 1, 1, 5), np.float32)]
    check_blob_shapes(attach_weights(net, w))


def test_check_budget_refuses_with_largest_blob(monkeypatch):
    net = _net(_layer("Convolution", "convolution_param { num_output: 64 kernel_size: 1 }"),
               {"data": (16, 3, 300, 500)})
    ns = infer_shapes(net)
    need64 = 8 * (16 * 3 * 300 * 500 + 16 * 64 * 300 * 500)
    assert ns.activation_bytes(8) == need64
    assert check_budget(ns, need64) == need64
    with pytest.raises(ResourceError) as ei:
        check_budget(ns, need64 - 1)
    msg = str(ei.value)
    assert "'L/out'" in msg and "(16, 64, 300, 500)" in msg and "float64" in msg
    assert check_budget(ns, need64 // 2 + 1, itemsize=4) == need64 // 2
    monkeypatch.setenv("CAFFE_HARNESS_MEMORY_BUDGET", "100M")
    with pytest.raises(ResourceError, match="100.0 MiB"):
        check_budget(ns)
    monkeypatch.setenv("CAFFE_HARNESS_MEMORY_BUDGET", "lots")
    with pytest.raises(ResourceError, match="'lots'"):
        check_budget(ns)


@pytest.mark.parametrize("text,want", [("1024", 1024), ("512M", 512 * 2**20), ("4G", 4 * 2**30),
                                       ("2GiB", 2 * 2**30), ("1.5GB", 3 * 2**29), ("3k", 3072)])
def test_parse_bytes(text, want):
    assert parse_bytes(text) == want


def test_param_shapes_public_function():
    net = _net(_layer("Deconvolution", "convolution_param { num_output: 8 kernel_h: 3 kernel_w: 2 group: 1 }"))
    lay = net.layer("L")
    assert param_shapes(lay, [(2, 3, 5, 7)]) == [(3, 8, 3, 2), (8,)]
    assert param_shapes(net.layer("data"), []) == []


@pytest.mark.parametrize(
    "pool_params, want",
    [
        # CEIL: ceil((4-5)/2)+1 = 1 and ceil((5-6)/2)+1 = 1: Caffe pools the one clipped window.
        ("pool: MAX kernel_h: 5 kernel_w: 6 stride: 2", (2, 3, 1, 1)),
        ("pool: AVE kernel_h: 5 kernel_w: 6 stride: 2", (2, 3, 1, 1)),
        # FLOOR: floor(-1/2)+1 = 0 -> no window: refused.
        ("pool: MAX kernel_h: 5 kernel_w: 6 stride: 2 round_mode: FLOOR", "kernel_h=5 is larger than the padded input"),
        # CEIL with an overhang of a whole stride: ceil(-2/2)+1 = 0 -> refused.
        ("pool: MAX kernel_h: 6 kernel_w: 3 stride: 2", r"kernel_h=6 is larger than the padded input H=4\+2\*0=4 \(no pooling window fits; round_mode=CEIL"),
    ],
)
def test_pool_kernel_larger_than_input_follows_caffe_rounding(pool_params, want):
    text = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 5 } } }\n'
            f'layer {{ name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param {{ {pool_params} }} }}')
    if isinstance(want, tuple):
        assert infer_shapes(load_net_text(text)).keys["p/p"] == want
    else:
        with pytest.raises(ShapeError, match=want):
            load_net_text(text)


def test_depthwise_without_group_means_one_group_per_channel():
    """The forks' ConvolutionDepthwise prototxts often leave group unset: weights (num_output, 1, kh, kw)."""
    ls = _shapes("ConvolutionDepthwise", "convolution_param { num_output: 6 kernel_h: 3 kernel_w: 2 }",
                 inputs={"data": (2, 3, 5, 7)})
    assert ls.param_shapes == ((6, 1, 3, 2), (6,))
    assert ls.top_shapes == ((2, 6, 3, 6),)
