"""The public strategy helpers' own size arithmetic (``PoolParams.out``, ``ConvParams.conv_out``/``deconv_out``) and
the :mod:`harness.params` readers agree with :func:`harness.shapes.infer_shapes` on drawn cases, so the copies cannot
drift apart again."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import params
from harness.shapes import infer_shapes
from harness.strategies import ConvParams, LayerCase, LayerDef, PoolParams, conv_params, pool_params

from ._props import examples


def _one_layer(layer: LayerDef, shape: tuple[int, ...]) -> LayerCase:
    return LayerCase(name="geometry", inputs={"data": np.zeros(shape, np.float32)}, layers=(layer,))


def _pool_layer(pp: PoolParams) -> LayerDef:
    return LayerDef("pool1", "Pooling", ("data",), ("pool1",), [("pooling_param", pp.items())])


def _conv_layer(cp: ConvParams, caffe_type: str, num_output: int) -> LayerDef:
    items = [("num_output", num_output)] + cp.items()
    return LayerDef("conv1", caffe_type, ("data",), ("conv1",), [("convolution_param", items)])


def test_pool_out_clips_the_unpadded_axis_when_the_other_is_padded():
    """The reported case: pad (1, 0), kernel 2, stride 3 on 6x12.  Caffe (pooling_layer.cpp) clips when ``pad_h_ ||
    pad_w_``: W = ceil((12 - 2) / 3) + 1 = 5, and (5 - 1) * 3 = 12 >= 12 + 0, so 4 columns, not 5."""
    pp = PoolParams("MAX", (2, 2), (3, 3), (1, 0), True)
    assert pp.out(6, 12) == (3, 4)
    net = _one_layer(_pool_layer(pp), (2, 3, 6, 12)).load()
    assert infer_shapes(net)["pool1"].top_shapes == ((2, 3, 3, 4),)


def test_pool_out_without_padding_never_clips():
    """No pad on either axis: ceil((7 - 2) / 3) + 1 = 3 rows (the last window starts at 6 < 7) and
    ceil((11 - 3) / 2) + 1 = 5 columns."""
    pp = PoolParams("AVE", (2, 3), (3, 2), (0, 0), True)
    assert pp.out(7, 11) == (3, 5)


@settings(max_examples=examples(2.0))
@given(pp=pool_params(methods=("MAX", "AVE", "STOCHASTIC")), data=st.data())
def test_pool_params_out_matches_shape_inference(pp, data):
    n, c = 2, 3
    if pp.kernel is None:
        h, w = 5, 7
    else:
        h = data.draw(st.integers(max(4, pp.kernel[0] - 2 * pp.pad[0]), 11), label="h")
        w = data.draw(st.integers(max(4, pp.kernel[1] - 2 * pp.pad[1]), 11).filter(lambda v: v != h), label="w")
    net = _one_layer(_pool_layer(pp), (n, c, h, w)).load()
    assert infer_shapes(net)["pool1"].top_shapes == ((n, c) + pp.out(h, w),)
    g = params.pool_geometry(net.layers[-1])
    assert (g.method, g.kernel, g.ceil) == (pp.method, pp.kernel, pp.ceil)
    if pp.kernel is not None:
        assert (g.stride, g.pad) == (pp.stride, pp.pad)


@settings(max_examples=examples(2.0))
@given(cp=conv_params(max_side=9), caffe_type=st.sampled_from(["Convolution", "Deconvolution"]), data=st.data())
def test_conv_params_out_matches_shape_inference(cp, caffe_type, data):
    n, c, cout = 2, 3, 5
    lo = [max(1, cp.extent(a) - 2 * cp.pad[a]) if caffe_type == "Convolution" else
          max(1, 1 + -(-(2 * cp.pad[a] - cp.extent(a) + 1) // cp.stride[a])) for a in (0, 1)]
    h = data.draw(st.integers(max(lo[0], 6), 12), label="h")
    w = data.draw(st.integers(max(lo[1], 6), 12).filter(lambda v: v != h), label="w")
    net = _one_layer(_conv_layer(cp, caffe_type, cout), (n, c, h, w)).load()
    want = cp.conv_out(h, w) if caffe_type == "Convolution" else cp.deconv_out(h, w)
    assert infer_shapes(net)["conv1"].top_shapes == ((n, cout) + want,)
    g = params.conv_geometry(net.layers[-1])
    assert (g.kernel, g.stride, g.pad, g.dilation, g.num_output) == (cp.kernel, cp.stride, cp.pad, cp.dilation, cout)


@pytest.mark.parametrize("pad,kernel,stride,h,w,want", [
    ((1, 0), (2, 2), (3, 3), 6, 12, (3, 4)),   # W: ceil(10/3)+1 = 5, (5-1)*3 = 12 >= 12 + 0 -> 4
    ((0, 1), (2, 3), (3, 2), 9, 8, (3, 5)),    # H: ceil(7/3)+1 = 4, (4-1)*3 = 9 >= 9 + 0 -> 3; W: 8 < 8 + 1 keeps 5
    ((0, 0), (2, 3), (2, 2), 9, 8, (5, 4)),    # no padding: no clip (H: ceil(7/2)+1 = 5, W: ceil(5/2)+1 = 4)
])
def test_pool_out_table_against_shape_inference(pad, kernel, stride, h, w, want):
    """CEIL rounding; the clip ``(pooled - 1) * stride >= size + pad`` applies to both axes when either is padded."""
    pp = PoolParams("MAX", kernel, stride, pad, True)
    assert pp.out(h, w) == want
    net = _one_layer(_pool_layer(pp), (2, 3, h, w)).load()
    assert infer_shapes(net)["pool1"].top_shapes == ((2, 3) + want,)
