"""Layers whose Caffe output holds NaN by construction, found from shapes alone (``info`` and ``check`` warn).

AVE pooling (``pooling_layer.cpp``, Forward_cpu)::

    hstart = ph * stride_h - pad_h;
    hend = min(hstart + kernel_h, height_ + pad_h);
    pool_size = (hend - hstart) * (wend - wstart);
    ... top_data[ph * pooled_width_ + pw] /= pool_size;

In ceil mode the last window can start exactly at ``height + pad``: then ``hend == hstart``, ``pool_size`` is 0 and
the (empty) sum 0 is divided by 0: NaN for every element of that output row (or column).  Caffe only checks that the
last window starts inside the image when the layer is padded.  Data-dependent NaN (Power of a negative base to a
fractional exponent, Log of a non-positive value) cannot be seen from shapes: the comparison names those rules when
they occur (``BlobResult.nonfinite_rule``).
"""

from __future__ import annotations

from ..catalogue import window
from ..net import Layer, who
from ..params import pool_geometry
from ._infer import NetShapes


def _empty_windows(size: int, kernel: int, stride: int, pad: int, out: int) -> list[int]:
    """Output indices along one axis whose window has Caffe's pool_size 0."""
    return [i for i in range(out) if min(i * stride - pad + kernel, size + pad) - (i * stride - pad) == 0]


def nan_by_construction(ns: NetShapes) -> list[str]:
    """One line per layer that produces NaN whatever the input: the layer, the axis, the window index, the rule."""
    out = []
    for lay, ls in zip(ns.net.layers, ns.layers):
        if window(lay.kind) != "pool" or not ls.bottom_shapes or len(ls.bottom_shapes[0]) != 4:
            continue
        g = pool_geometry(lay)
        if g.method != "AVE" or g.kernel is None:
            continue
        (_, _, h, w), (_, _, ho, wo) = ls.bottom_shapes[0], ls.top_shapes[0]
        for axis, size, k, s, p, n in (("H", h, g.kernel[0], g.stride[0], g.pad[0], ho),
                                       ("W", w, g.kernel[1], g.stride[1], g.pad[1], wo)):
            idx = _empty_windows(size, k, s, p, n)
            if idx:
                out.append(_line(lay, axis, idx, size, k, s, p))
    return out


def _line(lay: Layer, axis: str, idx: list[int], size: int, k: int, s: int, p: int) -> str:
    where = ", ".join(str(i) for i in idx)
    return (f"{who(lay)}: output {axis} index {where} is NaN in Caffe: that AVE window starts at {idx[0] * s - p} "
            f"= {axis.lower()} + pad ({size} + {p}) in ceil mode, so pool_size is 0 and Caffe divides 0 by 0 "
            f"(kernel {k}, stride {s}); a Keras model matches Caffe only with NaN there too")
