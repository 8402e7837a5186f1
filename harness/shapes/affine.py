"""Scale, Bias, InnerProduct, Embed: broadcast axes, flatten axes, weight shapes, multiply-adds."""

from __future__ import annotations

from ..errors import ShapeError
from ..net import Layer
from ._checks import Shape, _fmt, _n_bottoms, _n_tops, _who, canonical_axis, count
from .registry import MACS, PARAM_SHAPES, SHAPES


def _scale_axes(layer: Layer, field_name: str, bottoms: list[Shape]) -> tuple[int, Shape]:
    """Scale/Bias (``scale_layer.cpp``, ``bias_layer.cpp``): with a second bottom its shape is the factor's shape and
    must equal ``bottom[0].shape[axis:axis+k]`` (axis 0 if the factor is a 0-D scalar); with one bottom the learned
    blob has shape ``bottom.shape[axis : axis + num_axes]`` (``num_axes = -1``: to the end; 0: a scalar)."""
    prm = layer.p(field_name)
    _n_bottoms(layer, bottoms, minimum=1, maximum=2)
    _n_tops(layer, exact=1)
    b0 = tuple(bottoms[0])
    if len(bottoms) == 2:
        b1 = tuple(bottoms[1])
        axis = 0 if len(b1) == 0 else canonical_axis(layer, f"{field_name}.axis", prm.axis, len(b0))
        if b0[axis:axis + len(b1)] != b1:
            raise ShapeError(f"{_who(layer)}: second bottom {layer.bottoms[1]!r} {_fmt(b1)} must equal "
                             f"{layer.bottoms[0]!r} {_fmt(b0)} from axis {axis}")
        return axis, b1
    # Caffe canonicalises axis against bottom[0] (num_axes + 1 allowed only for a 0-axis blob: not needed here)
    axis = canonical_axis(layer, f"{field_name}.axis", prm.axis, len(b0)) if b0 else 0
    num_axes = prm.num_axes
    if num_axes < -1:
        raise ShapeError(f"{_who(layer)}: {field_name}.num_axes={num_axes} must be -1 (to the end) or >= 0")
    if num_axes == -1:
        return axis, b0[axis:]
    if axis + num_axes > len(b0):
        raise ShapeError(f"{_who(layer)}: {field_name}.axis={prm.axis} + num_axes={num_axes} exceeds the "
                         f"{len(b0)} axes of {layer.bottoms[0]!r} {_fmt(b0)}")
    return axis, b0[axis:axis + num_axes]


@SHAPES.register("Scale")
def _scale_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    _scale_axes(layer, "scale_param", bottoms)
    return [tuple(bottoms[0])]


@PARAM_SHAPES.register("Scale")
def _scale_params(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """gamma ``bottom.shape[axis:axis+num_axes]`` (none when the factor is bottom[1]); ``bias_term`` adds a bias of
    the same shape."""
    _, shape = _scale_axes(layer, "scale_param", bottoms)
    out = [] if len(bottoms) == 2 else [shape]
    if layer.p("scale_param").bias_term:
        out.append(shape)
    return out


@MACS.register("Scale")
def _scale_macs(layer: Layer, bottoms: list[Shape], tops: list[Shape]) -> int:
    """One multiply per output element."""
    return count(tops[0])


@SHAPES.register("Bias")
def _bias_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    _scale_axes(layer, "bias_param", bottoms)
    return [tuple(bottoms[0])]


@PARAM_SHAPES.register("Bias")
def _bias_params(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """bias ``bottom.shape[axis:axis+num_axes]``; none when the bias is bottom[1]."""
    _, shape = _scale_axes(layer, "bias_param", bottoms)
    return [] if len(bottoms) == 2 else [shape]


def _ip_dims(layer: Layer, bottoms: list[Shape]) -> tuple[int, int, int, int]:
    ip = layer.p("inner_product_param")
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, exact=1)
    if not ip.HasField("num_output") or ip.num_output <= 0:
        raise ShapeError(f"{_who(layer)}: inner_product_param.num_output="
                         f"{ip.num_output if ip.HasField('num_output') else 'unset'} must be positive")
    b = tuple(bottoms[0])
    axis = canonical_axis(layer, "inner_product_param.axis", ip.axis, len(b))
    return axis, count(b, 0, axis), count(b, axis), int(ip.num_output)


@SHAPES.register("InnerProduct")
def _ip_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """InnerProduct (``inner_product_layer.cpp``): ``K = count(axis)`` (C-order flatten from ``axis``), top
    ``bottom.shape[:axis] + (num_output,)``."""
    axis, m, k, n = _ip_dims(layer, bottoms)
    return [tuple(bottoms[0][:axis]) + (n,)]


@PARAM_SHAPES.register("InnerProduct")
def _ip_params(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """weights ``(N, K)`` (``(K, N)`` with ``transpose: true``), bias ``(N,)``."""
    _, _, k, n = _ip_dims(layer, bottoms)
    ip = layer.p("inner_product_param")
    out = [(k, n) if ip.transpose else (n, k)]
    if ip.bias_term:
        out.append((n,))
    return out


@MACS.register("InnerProduct")
def _ip_macs(layer: Layer, bottoms: list[Shape], tops: list[Shape]) -> int:
    """M * K * N."""
    _, m, k, n = _ip_dims(layer, bottoms)
    return m * k * n


def _embed_dims(layer: Layer) -> tuple[int, int, bool]:
    ep = layer.p("embed_param")
    for f in ("num_output", "input_dim"):
        if not ep.HasField(f) or getattr(ep, f) <= 0:
            raise ShapeError(f"{_who(layer)}: embed_param.{f}={getattr(ep, f) if ep.HasField(f) else 'unset'} must "
                             f"be positive")
    return int(ep.input_dim), int(ep.num_output), bool(ep.bias_term)


@SHAPES.register("Embed")
def _embed_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Embed (``embed_layer.cpp``): indices in, ``top = bottom.shape + (num_output,)`` (adds an axis)."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, exact=1)
    _, n, _ = _embed_dims(layer)
    return [tuple(bottoms[0]) + (n,)]


@PARAM_SHAPES.register("Embed")
def _embed_params(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """weights ``(input_dim, num_output)``, bias ``(num_output,)``."""
    k, n, bias = _embed_dims(layer)
    return [(k, n), (n,)] if bias else [(k, n)]
