"""Shape inference: Caffe's own output-size rules and setup checks, for every type in :mod:`harness.catalogue`.

Public API:

* :func:`infer_shapes(net) <infer_shapes>` -> :class:`NetShapes`: per layer the bottom and top shapes (NCHW, as Caffe
  has them), the parameter (blob) shapes Caffe expects, the multiply-adds; per blob its shape.
* :func:`param_shapes(layer, bottom_shapes) <param_shapes>`: the weight blob shapes Caffe creates for a layer.
* :func:`check_blob_shapes(net) <check_blob_shapes>`: compares attached weights to :func:`param_shapes`.
* :func:`check_budget(net_shapes, budget_bytes) <check_budget>`: refuses nets whose activations would not fit.

Every rule is written here from Caffe's source (``src/caffe/layers/*.cpp``) and quoted in the docstring where it is
coded.  The reference and the converter derive output sizes themselves (DEVELOPERS.md: separate derivations); the
converter may read bottom shapes from here.  Kernel/stride/pad are read with :mod:`harness.params` (reading only).

Each shape function is registered in :data:`harness.shapes_registry.SHAPES` as
``fn(layer, bottom_shapes: list[tuple[int, ...]]) -> list[tuple[int, ...]]`` (one shape per top).  Caffe's ``CHECK``
failures become :class:`~harness.errors.ShapeError` / :class:`~harness.errors.UnsupportedParam` naming the layer,
the field and the value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Sequence

from .catalogue import CATALOGUE
from .errors import HarnessError, ResourceError, ShapeError, UnsupportedParam
from .net import Layer, Net
from .params import conv_geometry, conv_group, pool_geometry
from .registry import Registry
from .shapes_registry import SHAPES

Shape = tuple[int, ...]

# Parameter (weight blob) shapes and multiply-add counts, keyed by Caffe type like SHAPES.  Types without weights
# (or without multiply-adds) are simply not registered here.
PARAM_SHAPES: Registry = Registry("param shape")
MACS: Registry = Registry("multiply-add count")

DEFAULT_BUDGET_BYTES = 8 * 1024**3  # 8 GiB; override with CAFFE_HARNESS_MEMORY_BUDGET (bytes, or 512M / 4G / 2GiB)


# ----------------------------------------------------------------------------------------------------------------
# helpers


def _who(layer: Layer) -> str:
    return f"{layer.type} {layer.name!r}"


def _fmt(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def count(shape: Sequence[int], start: int = 0, end: int | None = None) -> int:
    """Caffe ``Blob::count(start, end)``: the product of ``shape[start:end]`` (1 for an empty range)."""
    n = 1
    for d in list(shape)[start:end]:
        n *= int(d)
    return n


def canonical_axis(layer: Layer, field_name: str, axis: int, num_axes: int) -> int:
    """Caffe ``Blob::CanonicalAxisIndex``: ``-num_axes <= axis < num_axes``; a negative axis counts from the end
    (``axis + num_axes``)."""
    if not -num_axes <= axis < num_axes:
        raise ShapeError(
            f"{_who(layer)}: {field_name}={axis} is out of range for a {num_axes}-D blob "
            f"(valid: {-num_axes}..{num_axes - 1})"
        )
    return axis + num_axes if axis < 0 else axis


def _n_bottoms(layer: Layer, shapes: list[Shape], exact: int | None = None, minimum: int | None = None,
               maximum: int | None = None) -> None:
    n = len(shapes)
    if exact is not None and n != exact:
        raise ShapeError(f"{_who(layer)}: takes {exact} bottom blob(s), got {n} ({', '.join(layer.bottoms) or 'none'})")
    if minimum is not None and n < minimum:
        raise ShapeError(f"{_who(layer)}: takes at least {minimum} bottom blobs, got {n} "
                         f"({', '.join(layer.bottoms) or 'none'})")
    if maximum is not None and n > maximum:
        raise ShapeError(f"{_who(layer)}: takes at most {maximum} bottom blobs, got {n} ({', '.join(layer.bottoms)})")


def _n_tops(layer: Layer, exact: int | None = None, minimum: int | None = None) -> None:
    n = len(layer.tops)
    if exact is not None and n != exact:
        raise ShapeError(f"{_who(layer)}: produces {exact} top blob(s), got {n} ({', '.join(layer.tops) or 'none'})")
    if minimum is not None and n < minimum:
        raise ShapeError(f"{_who(layer)}: produces at least {minimum} top blob(s), got {n}")


def _rank(layer: Layer, shape: Shape, ndim: int, what: str = "bottom") -> None:
    if len(shape) != ndim:
        raise ShapeError(f"{_who(layer)}: {what} must have {ndim} axes (N, C, H, W), got shape {_fmt(shape)}")


def _min_rank(layer: Layer, shape: Shape, ndim: int, what: str = "bottom") -> None:
    if len(shape) < ndim:
        raise ShapeError(f"{_who(layer)}: {what} must have at least {ndim} axes, got shape {_fmt(shape)}")


def _positive_top(layer: Layer, shape: Shape, why: str = "") -> Shape:
    if any(d <= 0 for d in shape):
        raise ShapeError(f"{_who(layer)}: output shape {_fmt(shape)} has a zero or negative dimension{why}")
    return tuple(int(d) for d in shape)


def _same(layer: Layer, shapes: list[Shape]) -> list[Shape]:
    """One top per bottom, same shape (element-wise layers; Caffe allows in-place)."""
    _n_bottoms(layer, shapes, exact=1)
    _n_tops(layer, exact=1)
    return [tuple(shapes[0])]


# ----------------------------------------------------------------------------------------------------------------
# Input


@SHAPES.register("Input")
def _input(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Caffe ``InputLayer::LayerSetUp``: ``input_param.shape`` has 0, 1 (shared by every top) or one shape per top.
    Every dimension must be positive."""
    _n_bottoms(layer, bottoms, exact=0)
    _n_tops(layer, minimum=1)
    shapes = list(layer.p("input_param").shape)
    if len(shapes) not in (0, 1, len(layer.tops)):
        raise ShapeError(f"{_who(layer)}: input_param has {len(shapes)} shapes for {len(layer.tops)} tops "
                         f"(give 1 or {len(layer.tops)})")
    if not shapes:
        raise ShapeError(f"{_who(layer)}: no shape for top {layer.tops[0]!r}; give one with "
                         f"--input-shape {layer.tops[0]}=N,C,H,W")
    out = []
    for i, top in enumerate(layer.tops):
        dims = tuple(int(d) for d in shapes[0 if len(shapes) == 1 else i].dim)
        if not dims:
            raise ShapeError(f"{_who(layer)}: input shape of {top!r} is empty")
        for a, d in enumerate(dims):
            if d <= 0:
                raise ShapeError(f"{_who(layer)}: input {top!r} dim {a} = {d} in shape {_fmt(dims)} must be "
                                 f"positive")
        out.append(dims)
    return out


# ----------------------------------------------------------------------------------------------------------------
# convolution family


def conv_out_size(size: int, *, kernel: int, stride: int, pad: int, dilation: int) -> int:
    """Caffe ``ConvolutionLayer::compute_output_shape``::

        kernel_extent = dilation * (kernel - 1) + 1
        output = (input + 2 * pad - kernel_extent) / stride + 1      (integer division = floor, operands >= 0)
    """
    extent = dilation * (kernel - 1) + 1
    return (size + 2 * pad - extent) // stride + 1


def deconv_out_size(size: int, *, kernel: int, stride: int, pad: int, dilation: int) -> int:
    """Caffe ``DeconvolutionLayer::compute_output_shape``::

        kernel_extent = dilation * (kernel - 1) + 1
        output = stride * (input - 1) + kernel_extent - 2 * pad
    """
    extent = dilation * (kernel - 1) + 1
    return stride * (size - 1) + extent - 2 * pad


def _conv_common(layer: Layer, bottoms: list[Shape]):
    _n_bottoms(layer, bottoms, minimum=1)
    if len(layer.tops) != len(bottoms):
        raise ShapeError(f"{_who(layer)}: needs one top per bottom ({len(bottoms)} bottoms, {len(layer.tops)} tops)")
    g = conv_geometry(layer)
    first = tuple(bottoms[0])
    cp = layer.p("convolution_param")
    nk = max(len(cp.kernel_size), 2 if (cp.HasField("kernel_h") or cp.HasField("kernel_w")) else 0)
    if len(first) != 4:
        if len(first) == 5 and nk == 3:
            raise UnsupportedParam(f"{_who(layer)}: 3-D convolution (kernel_size={list(cp.kernel_size)} on "
                                   f"{_fmt(first)}) is not supported (2-D only)")
        raise ShapeError(f"{_who(layer)}: bottom {layer.bottoms[0]!r} must have 4 axes (N, C, H, W) for a 2-D "
                         f"kernel, got shape {_fmt(first)}")
    for b, s in zip(layer.bottoms, bottoms):
        if tuple(s) != first:
            raise ShapeError(f"{_who(layer)}: all bottoms must have the same shape; {b!r} is {_fmt(s)}, "
                             f"{layer.bottoms[0]!r} is {_fmt(first)}")
    c_in = first[1]
    group = conv_group(layer, c_in)
    if c_in % group:
        raise ShapeError(f"{_who(layer)}: group={group} does not divide the input channels {c_in} "
                         f"(bottom {layer.bottoms[0]!r} {_fmt(first)})")
    if g.num_output <= 0:
        raise ShapeError(f"{_who(layer)}: num_output={g.num_output} must be positive")
    if g.num_output % group:
        raise ShapeError(f"{_who(layer)}: group={group} does not divide num_output={g.num_output}")
    return g, first


def _conv_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Convolution (and the forks' depthwise convolution, which requires ``group`` = input channels)::

        out_h = (H + 2*pad_h - (dilation_h*(kernel_h-1)+1)) / stride_h + 1     (floor)

    Caffe rejects group not dividing C_in or num_output; a kernel extent larger than the padded input gives no
    output position, which is refused here by name."""
    g, (n, c, h, w) = _conv_common(layer, bottoms)
    outs = []
    for axis, size, k, s, p, d in (("h", h, g.kernel[0], g.stride[0], g.pad[0], g.dilation[0]),
                                   ("w", w, g.kernel[1], g.stride[1], g.pad[1], g.dilation[1])):
        extent = d * (k - 1) + 1
        if extent > size + 2 * p:
            raise ShapeError(
                f"{_who(layer)}: kernel_{axis}={k}" + (f" (dilation {d}: extent {extent})" if d != 1 else "")
                + f" is larger than the padded input {axis.upper()}={size}+2*{p}={size + 2 * p}"
            )
        outs.append(conv_out_size(size, kernel=k, stride=s, pad=p, dilation=d))
    top = _positive_top(layer, (n, g.num_output, outs[0], outs[1]))
    return [top] * len(bottoms)


SHAPES.register("Convolution", "ConvolutionDepthwise")(_conv_shapes)


@SHAPES.register("Deconvolution")
def _deconv_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Deconvolution (``deconv_layer.cpp``): ``out_h = stride_h*(H-1) + dilation_h*(kernel_h-1)+1 - 2*pad_h``;
    must be positive (a pad too large for the kernel gives none)."""
    g, (n, c, h, w) = _conv_common(layer, bottoms)
    oh = deconv_out_size(h, kernel=g.kernel[0], stride=g.stride[0], pad=g.pad[0], dilation=g.dilation[0])
    ow = deconv_out_size(w, kernel=g.kernel[1], stride=g.stride[1], pad=g.pad[1], dilation=g.dilation[1])
    if oh <= 0 or ow <= 0:
        raise ShapeError(f"{_who(layer)}: pad={g.pad[0]}x{g.pad[1]} is too large for kernel "
                         f"{g.kernel[0]}x{g.kernel[1]}, stride {g.stride[0]}x{g.stride[1]} on {h}x{w}: "
                         f"output {oh}x{ow}")
    return [(n, g.num_output, oh, ow)] * len(bottoms)


@PARAM_SHAPES.register("Convolution", "ConvolutionDepthwise")
def _conv_params(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """``base_conv_layer.cpp``: weights ``(num_output, C_in/group, kh, kw)``, bias ``(num_output,)``."""
    g = conv_geometry(layer)
    c_in = bottoms[0][1]
    out = [(g.num_output, c_in // conv_group(layer, c_in), g.kernel[0], g.kernel[1])]
    if g.bias_term:
        out.append((g.num_output,))
    return out


@PARAM_SHAPES.register("Deconvolution")
def _deconv_params(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Deconvolution reverses the weight dimensions: ``(C_in, num_output/group, kh, kw)``, bias ``(num_output,)``."""
    g = conv_geometry(layer)
    c_in = bottoms[0][1]
    out = [(c_in, g.num_output // g.group, g.kernel[0], g.kernel[1])]
    if g.bias_term:
        out.append((g.num_output,))
    return out


@MACS.register("Convolution", "ConvolutionDepthwise")
def _conv_macs(layer: Layer, bottoms: list[Shape], tops: list[Shape]) -> int:
    """N * C_out * H_out * W_out * (C_in/group) * kh * kw per bottom."""
    g = conv_geometry(layer)
    return sum(count(t) * (b[1] // conv_group(layer, b[1])) * g.kernel[0] * g.kernel[1] for b, t in zip(bottoms, tops))


@MACS.register("Deconvolution")
def _deconv_macs(layer: Layer, bottoms: list[Shape], tops: list[Shape]) -> int:
    """Every input element is multiplied into a (C_out/group) x kh x kw patch: N*C_in*H*W * (C_out/group)*kh*kw."""
    g = conv_geometry(layer)
    return sum(count(b) * (g.num_output // g.group) * g.kernel[0] * g.kernel[1] for b in bottoms)


# ----------------------------------------------------------------------------------------------------------------
# pooling


def pool_out_size(size: int, *, kernel: int, stride: int, pad: int, ceil: bool, any_pad: bool | None = None) -> int:
    """Caffe ``PoolingLayer::Reshape``::

        pooled = ceil((size + 2*pad - kernel) / stride) + 1        (round_mode CEIL, the default)
        pooled = floor((size + 2*pad - kernel) / stride) + 1       (round_mode FLOOR)
        if (pad_h || pad_w) {                                     # ANY padding on EITHER axis:
            if ((pooled - 1) * stride >= size + pad) --pooled;    # the last window would start in the padding
        }

    The clip is guarded by ``pad_h || pad_w``: an axis with pad 0 is clipped too when the other axis is padded
    (golden ``pool_max/max_rect``: W=12, k=2, s=3, pad_w=0, pad_h=1 -> 4 columns, not ceil(10/3)+1 = 5).
    ``any_pad`` is that guard (default: ``pad > 0``).  ``size + 2*pad >= kernel`` is checked by the caller.
    """
    num = size + 2 * pad - kernel
    pooled = (-(-num // stride) if ceil else num // stride) + 1
    if (pad > 0 if any_pad is None else any_pad) and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


@SHAPES.register("Pooling")
def _pool_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Pooling (``pooling_layer.cpp``): 4-D bottom; global pooling -> 1x1; otherwise :func:`pool_out_size` per axis.
    Caffe requires pad < kernel (checked by :func:`harness.params.pool_geometry`).  A kernel larger than the padded
    input is legal in CEIL mode while the output stays positive (``ceil((H+2p-k)/s) + 1 >= 1`` for
    ``k - (H+2p) < s``): Caffe pools the one clipped window, as small inputs to GoogLeNet-style heads do.  FLOOR mode
    (or a larger overhang) gives no output and is refused."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, minimum=1)
    if len(layer.tops) > 2:
        raise ShapeError(f"{_who(layer)}: produces at most 2 tops (output, MAX mask), got {len(layer.tops)}")
    g = pool_geometry(layer)
    (b,) = bottoms
    _rank(layer, b, 4)
    n, c, h, w = b
    if len(layer.tops) == 2 and g.method != "MAX":
        raise ShapeError(f"{_who(layer)}: a second top (the argmax mask) needs pool=MAX, got pool={g.method}")
    if g.global_pooling:
        top = (n, c, 1, 1)
    else:
        outs = []
        for axis, size, k, s, p in (("h", h, g.kernel[0], g.stride[0], g.pad[0]),
                                    ("w", w, g.kernel[1], g.stride[1], g.pad[1])):
            out = pool_out_size(size, kernel=k, stride=s, pad=p, ceil=g.ceil, any_pad=any(g.pad))
            if out <= 0:
                raise ShapeError(f"{_who(layer)}: kernel_{axis}={k} is larger than the padded input "
                                 f"{axis.upper()}={size}+2*{p}={size + 2 * p} (no pooling window fits; "
                                 f"round_mode={'CEIL' if g.ceil else 'FLOOR'}, stride_{axis}={s})")
            outs.append(out)
        top = _positive_top(layer, (n, c, outs[0], outs[1]))
    return [top] * len(layer.tops)


def spp_level_geometry(level: int, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Caffe ``SPPLayer::GetPoolingParam`` for pyramid level ``level`` (``num_bins = 2**level``)::

        kernel_h = ceil(H / num_bins);  remainder_h = kernel_h * num_bins - H;  pad_h = (remainder_h + 1) / 2
        stride_h = kernel_h                                   (same for w)

    Returns ``(kernel, pad)`` as (h, w) pairs."""
    bins = 2**level
    kh = -(-h // bins)
    kw = -(-w // bins)
    return (kh, kw), ((kh * bins - h + 1) // 2, (kw * bins - w + 1) // 2)


@SHAPES.register("SPP")
def _spp_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """SPP (``spp_layer.cpp``): pyramid_height 1 is one Pooling with the level-0 geometry (4-D top); otherwise each
    level's pooling (CEIL rounding) is flattened and the levels concatenated: top ``(N, C * sum(ph_i * pw_i))``."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, exact=1)
    sp = layer.p("spp_param")
    if not sp.HasField("pyramid_height") or sp.pyramid_height < 1:
        raise ShapeError(f"{_who(layer)}: spp_param.pyramid_height={sp.pyramid_height if sp.HasField('pyramid_height') else 'unset'} "
                         f"must be >= 1")
    (b,) = bottoms
    _rank(layer, b, 4)
    n, c, h, w = b
    total = 0
    level_shapes = []
    for lvl in range(sp.pyramid_height):
        (kh, kw), (ph, pw) = spp_level_geometry(lvl, h, w)
        if ph >= kh or pw >= kw:
            raise ShapeError(f"{_who(layer)}: pyramid level {lvl} on {h}x{w} needs pad {ph}x{pw} >= kernel "
                             f"{kh}x{kw} (Caffe requires pad < kernel): pyramid_height={sp.pyramid_height} is too "
                             f"large for this input")
        oh = pool_out_size(h, kernel=kh, stride=kh, pad=ph, ceil=True, any_pad=bool(ph or pw))
        ow = pool_out_size(w, kernel=kw, stride=kw, pad=pw, ceil=True, any_pad=bool(ph or pw))
        level_shapes.append((oh, ow))
        total += c * oh * ow
    if sp.pyramid_height == 1:
        return [(n, c) + level_shapes[0]]
    return [(n, total)]


# ----------------------------------------------------------------------------------------------------------------
# normalisation


@SHAPES.register("LRN")
def _lrn_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """LRN (``lrn_layer.cpp``): ``CHECK_EQ(size % 2, 1) "LRN only supports odd values for local_size"``; 4-D."""
    out = _same(layer, bottoms)
    lp = layer.p("lrn_param")
    if lp.local_size < 1 or lp.local_size % 2 != 1:
        raise ShapeError(f"{_who(layer)}: lrn_param.local_size={lp.local_size} must be odd (LRN only supports odd "
                         f"values)")
    _rank(layer, bottoms[0], 4)
    return out


@SHAPES.register("MVN")
def _mvn_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """MVN: same shape (means over H*W, or C*H*W with across_channels)."""
    return _same(layer, bottoms)


def _channels(shape: Shape) -> int:
    """Caffe's ``channels``: ``shape[1]`` (1 for a 1-D blob, as BatchNorm has it)."""
    return 1 if len(shape) == 1 else int(shape[1])


@SHAPES.register("BatchNorm")
def _bn_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """BatchNorm: same shape; statistics per channel ``shape[1]``."""
    return _same(layer, bottoms)


@PARAM_SHAPES.register("BatchNorm")
def _bn_params(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """``batch_norm_layer.cpp``: mean ``(C,)``, variance ``(C,)``, moving-average factor ``(1,)``; NVCaffe's
    ``scale_bias: true`` adds scale ``(C,)`` and bias ``(C,)``."""
    c = _channels(bottoms[0])
    out = [(c,), (c,), (1,)]
    if layer.p("batch_norm_param").scale_bias:
        out += [(c,), (c,)]
    return out


@SHAPES.register("Normalize")
def _normalize_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """SSD Normalize: same shape; at least 2 axes."""
    out = _same(layer, bottoms)
    _min_rank(layer, bottoms[0], 2)
    return out


@PARAM_SHAPES.register("Normalize")
def _normalize_params(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """SSD ``normalize_layer.cpp``: the scale blob is 0-D (one value) when ``channel_shared`` (the default), else
    ``(C,)``.  Real SSD caffemodels store the shared scale with an empty shape, as the golden ``ssd_ops`` case does."""
    return [()] if layer.p("norm_param").channel_shared else [(bottoms[0][1],)]


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


# ----------------------------------------------------------------------------------------------------------------
# affine


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


# ----------------------------------------------------------------------------------------------------------------
# activations (element-wise, same shape)

SHAPES.register("ReLU", "ReLU6", "ELU", "Sigmoid", "TanH", "AbsVal", "BNLL", "Power", "Exp", "Log", "Threshold",
                "Clip", "Swish", "Dropout")(_same)


@SHAPES.register("PReLU")
def _prelu_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """PReLU: ``CHECK_GE(bottom[0]->num_axes(), 2)``; same shape."""
    out = _same(layer, bottoms)
    _min_rank(layer, bottoms[0], 2)
    return out


@PARAM_SHAPES.register("PReLU")
def _prelu_params(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """``prelu_layer.cpp``: slopes ``(C,)``; with ``channel_shared`` a 0-D blob (``vector<int>(0)``, one value)."""
    return [()] if layer.p("prelu_param").channel_shared else [(bottoms[0][1],)]


@SHAPES.register("Softmax")
def _softmax_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Softmax: same shape; ``axis`` (default 1) canonicalised."""
    out = _same(layer, bottoms)
    canonical_axis(layer, "softmax_param.axis", layer.p("softmax_param").axis, len(bottoms[0]))
    return out


# ----------------------------------------------------------------------------------------------------------------
# shape layers


def _axis_or_dim(layer: Layer, field_name: str, dim_field: str, num_axes: int) -> int:
    """Concat/Slice: ``axis`` or the legacy ``concat_dim``/``slice_dim`` (never both; the legacy one must be a valid
    non-negative axis)."""
    prm = layer.p(field_name)
    if prm.HasField("axis") and prm.HasField(dim_field):
        raise UnsupportedParam(f"{_who(layer)}: {field_name} has both axis={prm.axis} and {dim_field}="
                               f"{getattr(prm, dim_field)}; give one")
    if prm.HasField(dim_field):
        d = getattr(prm, dim_field)
        if d >= num_axes:
            raise ShapeError(f"{_who(layer)}: {field_name}.{dim_field}={d} is out of range for a {num_axes}-D blob")
        return int(d)
    return canonical_axis(layer, f"{field_name}.axis", prm.axis, num_axes)


@SHAPES.register("Concat")
def _concat_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Concat (``concat_layer.cpp``): every bottom has the same number of axes and equal sizes except on ``axis``;
    the top's ``axis`` size is the sum."""
    _n_bottoms(layer, bottoms, minimum=1)
    _n_tops(layer, exact=1)
    first = tuple(bottoms[0])
    axis = _axis_or_dim(layer, "concat_param", "concat_dim", len(first))
    total = 0
    for name, s in zip(layer.bottoms, bottoms):
        s = tuple(s)
        if len(s) != len(first) or s[:axis] + s[axis + 1:] != first[:axis] + first[axis + 1:]:
            raise ShapeError(f"{_who(layer)}: bottom {name!r} {_fmt(s)} does not match {layer.bottoms[0]!r} "
                             f"{_fmt(first)} on the axes other than the concat axis {axis}")
        total += s[axis]
    return [first[:axis] + (total,) + first[axis + 1:]]


@SHAPES.register("Slice")
def _slice_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Slice (``slice_layer.cpp``): with ``slice_point`` there must be ``tops - 1`` strictly increasing points inside
    the axis; without, the axis is split equally (``dim % tops == 0``)."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, minimum=1)
    b = tuple(bottoms[0])
    axis = _axis_or_dim(layer, "slice_param", "slice_dim", len(b))
    dim = b[axis]
    points = [int(p) for p in layer.p("slice_param").slice_point]
    ntop = len(layer.tops)
    if points:
        if len(points) != ntop - 1:
            raise ShapeError(f"{_who(layer)}: slice_point={points} gives {len(points) + 1} slices for {ntop} tops")
        prev, sizes = 0, []
        for p in points:
            if p <= prev:
                raise ShapeError(f"{_who(layer)}: slice_point={points} must be strictly increasing and positive "
                                 f"(got {p} after {prev})")
            sizes.append(p - prev)
            prev = p
        if prev >= dim:
            raise ShapeError(f"{_who(layer)}: slice_point {prev} is outside axis {axis} of size {dim} "
                             f"(bottom {_fmt(b)})")
        sizes.append(dim - prev)
    else:
        if dim % ntop:
            raise ShapeError(f"{_who(layer)}: axis {axis} of size {dim} cannot be split equally into {ntop} tops; "
                             f"give slice_point")
        sizes = [dim // ntop] * ntop
    return [b[:axis] + (s,) + b[axis + 1:] for s in sizes]


@SHAPES.register("Split")
def _split_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Split: every top is a copy of the bottom."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, minimum=1)
    return [tuple(bottoms[0])] * len(layer.tops)


@SHAPES.register("Silence")
def _silence_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Silence: consumes its bottoms, produces no top."""
    _n_bottoms(layer, bottoms, minimum=1)
    _n_tops(layer, exact=0)
    return []


@SHAPES.register("Flatten")
def _flatten_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Flatten (``flatten_layer.cpp``): axes ``axis..end_axis`` (both canonicalised, default 1..-1) merge into one:
    ``shape[:axis] + (count(axis, end_axis+1),) + shape[end_axis+1:]``."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, exact=1)
    b = tuple(bottoms[0])
    fp = layer.p("flatten_param")
    a = canonical_axis(layer, "flatten_param.axis", fp.axis, len(b))
    e = canonical_axis(layer, "flatten_param.end_axis", fp.end_axis, len(b))
    if e < a:
        raise ShapeError(f"{_who(layer)}: flatten_param.end_axis={fp.end_axis} (axis {e}) is before axis={fp.axis} "
                         f"(axis {a})")
    return [b[:a] + (count(b, a, e + 1),) + b[e + 1:]]


@SHAPES.register("Reshape")
def _reshape_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Reshape (``reshape_layer.cpp``): ``shape`` replaces ``bottom.shape[start:end]`` where
    ``start = axis`` (negative: ``axis + num_axes + 1``), ``end = start + num_axes`` (``num_axes = -1``: to the end).
    ``0`` copies the bottom dim at ``start + i``; one ``-1`` is inferred as ``count / (product of the others)``; the
    total count must not change."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, exact=1)
    b = tuple(bottoms[0])
    rp = layer.p("reshape_param")
    dims = [int(d) for d in rp.shape.dim]
    nb = len(b)
    start = rp.axis if rp.axis >= 0 else rp.axis + nb + 1
    if not 0 <= start <= nb:
        raise ShapeError(f"{_who(layer)}: reshape_param.axis={rp.axis} is out of range for {_fmt(b)}")
    if rp.num_axes < -1:
        raise ShapeError(f"{_who(layer)}: reshape_param.num_axes={rp.num_axes} must be >= -1")
    end = nb if rp.num_axes == -1 else start + rp.num_axes
    if end > nb:
        raise ShapeError(f"{_who(layer)}: reshape_param.axis={rp.axis} + num_axes={rp.num_axes} exceeds the {nb} "
                         f"axes of {_fmt(b)}")
    if dims.count(-1) > 1:
        raise ShapeError(f"{_who(layer)}: reshape_param.shape {dims} has more than one -1")
    new = []
    for i, d in enumerate(dims):
        if d == 0:
            if start + i >= nb:
                raise ShapeError(f"{_who(layer)}: reshape_param.shape {dims}: dim {i} is 0 (copy) but bottom "
                                 f"{_fmt(b)} has no axis {start + i}")
            new.append(b[start + i])
        elif d < -1:
            raise ShapeError(f"{_who(layer)}: reshape_param.shape {dims}: dim {i} = {d} is invalid (use >0, 0 copy, "
                             f"-1 infer)")
        else:
            new.append(d)
    region = count(b, start, end)
    if -1 in new:
        known = count([d for d in new if d != -1])
        if known == 0 or region % known:
            raise ShapeError(f"{_who(layer)}: reshape_param.shape {dims} cannot hold the {region} values of "
                             f"{_fmt(b[start:end])} (-1 not inferable)")
        new[new.index(-1)] = region // known
    if count(new) != region:
        raise ShapeError(f"{_who(layer)}: reshape_param.shape {dims} -> {_fmt(new)} has {count(new)} values, bottom "
                         f"{_fmt(b)} has {region} in the reshaped range")
    return [b[:start] + tuple(new) + b[end:]]


@SHAPES.register("Crop")
def _crop_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Crop (``crop_layer.cpp``): axes ``>= axis`` (default 2, canonicalised) take bottom[1]'s sizes; one offset for
    all of them or one per cropped axis; ``CHECK_GE(bottom[0].shape(i) - offset, bottom[1].shape(i))``."""
    _n_bottoms(layer, bottoms, exact=2)
    _n_tops(layer, exact=1)
    b0, b1 = tuple(bottoms[0]), tuple(bottoms[1])
    cp = layer.p("crop_param")
    axis = canonical_axis(layer, "crop_param.axis", cp.axis, len(b0))
    offsets = [int(o) for o in cp.offset]
    if len(offsets) > 1 and axis + len(offsets) != len(b0):
        raise ShapeError(f"{_who(layer)}: crop_param.offset={offsets} has {len(offsets)} values; give 1 or "
                         f"{len(b0) - axis} (one per axis from axis {axis})")
    if len(b1) != len(b0):
        raise ShapeError(f"{_who(layer)}: reference bottom {layer.bottoms[1]!r} {_fmt(b1)} must have as many axes "
                         f"as {layer.bottoms[0]!r} {_fmt(b0)}")
    out = list(b0)
    for i in range(axis, len(b0)):
        off = offsets[0] if len(offsets) == 1 else (offsets[i - axis] if offsets else 0)
        if b0[i] - off < b1[i]:
            raise ShapeError(f"{_who(layer)}: crop on axis {i} is out of bounds: offset {off} + size {b1[i]} > "
                             f"{b0[i]} (bottom {_fmt(b0)}, reference {_fmt(b1)})")
        out[i] = b1[i]
    return [tuple(out)]


def permute_order(layer: Layer, ndim: int) -> list[int]:
    """SSD ``permute_layer.cpp``: each ``order`` value is a unique axis < num_axes; axes not listed follow in their
    original order."""
    given = [int(o) for o in layer.p("permute_param").order]
    for o in given:
        if o >= ndim:
            raise ShapeError(f"{_who(layer)}: permute_param.order={given}: {o} is not an axis of a {ndim}-D blob")
    if len(set(given)) != len(given):
        raise ShapeError(f"{_who(layer)}: permute_param.order={given} has duplicates")
    return given + [a for a in range(ndim) if a not in given]


@SHAPES.register("Permute")
def _permute_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Permute: ``top.shape[i] = bottom.shape[order[i]]``."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, exact=1)
    b = tuple(bottoms[0])
    return [tuple(b[o] for o in permute_order(layer, len(b)))]


@SHAPES.register("Tile")
def _tile_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Tile (``tile_layer.cpp``): ``tiles`` required and > 0; ``top.shape[axis] = bottom.shape[axis] * tiles``."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, exact=1)
    tp = layer.p("tile_param")
    if not tp.HasField("tiles") or tp.tiles <= 0:
        raise ShapeError(f"{_who(layer)}: tile_param.tiles={tp.tiles if tp.HasField('tiles') else 'unset'} must be "
                         f"given and positive")
    b = list(bottoms[0])
    axis = canonical_axis(layer, "tile_param.axis", tp.axis, len(b))
    b[axis] *= tp.tiles
    return [tuple(b)]


@SHAPES.register("ShuffleChannel")
def _shuffle_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """ShuffleChannel: ``group`` must divide the channels; same shape."""
    out = _same(layer, bottoms)
    _min_rank(layer, bottoms[0], 2)
    g = layer.p("shuffle_channel_param").group
    c = bottoms[0][1]
    if g <= 0 or c % g:
        raise ShapeError(f"{_who(layer)}: shuffle_channel_param.group={g} does not divide the {c} channels")
    return out


# ----------------------------------------------------------------------------------------------------------------
# eltwise


@SHAPES.register("Eltwise")
def _eltwise_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Eltwise (``eltwise_layer.cpp``): at least 2 bottoms of identical shape; ``coeff`` only for SUM and then one per
    bottom."""
    _n_bottoms(layer, bottoms, minimum=2)
    _n_tops(layer, exact=1)
    ep = layer.p("eltwise_param")
    if len(ep.coeff) not in (0, len(bottoms)):
        raise ShapeError(f"{_who(layer)}: eltwise_param has {len(ep.coeff)} coeff values for {len(bottoms)} bottoms")
    if len(ep.coeff) and ep.operation != 1:
        raise UnsupportedParam(f"{_who(layer)}: coeff is only allowed with operation=SUM "
                               f"(operation={ {0: 'PROD', 1: 'SUM', 2: 'MAX'}.get(ep.operation, ep.operation)})")
    first = tuple(bottoms[0])
    for name, s in zip(layer.bottoms, bottoms):
        if tuple(s) != first:
            raise ShapeError(f"{_who(layer)}: bottom {name!r} {_fmt(s)} does not match {layer.bottoms[0]!r} "
                             f"{_fmt(first)}")
    return [first]


@SHAPES.register("Axpy")
def _axpy_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Axpy (SENet forks): bottoms ``a (N, C[, 1, 1])``, ``x``, ``y`` with ``x.shape == y.shape`` and ``a`` matching
    x on N and C; top ``a * x + y`` has x's shape."""
    _n_bottoms(layer, bottoms, exact=3)
    _n_tops(layer, exact=1)
    a, x, y = (tuple(s) for s in bottoms)
    if tuple(x) != tuple(y):
        raise ShapeError(f"{_who(layer)}: x {layer.bottoms[1]!r} {_fmt(x)} and y {layer.bottoms[2]!r} {_fmt(y)} "
                         f"must have the same shape")
    _min_rank(layer, x, 2, "x")
    if a[:2] != x[:2] or any(d != 1 for d in a[2:]) or len(a) > len(x):
        raise ShapeError(f"{_who(layer)}: scale {layer.bottoms[0]!r} {_fmt(a)} must be (N, C, 1, 1) for x {_fmt(x)}")
    return [x]


# ----------------------------------------------------------------------------------------------------------------
# reductions


@SHAPES.register("Reduction")
def _reduction_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Reduction (``reduction_layer.cpp``): reduces all axes from ``axis`` (canonicalised): top
    ``bottom.shape[:axis]`` (0-D for axis 0)."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, exact=1)
    b = tuple(bottoms[0])
    axis = canonical_axis(layer, "reduction_param.axis", layer.p("reduction_param").axis, len(b))
    return [b[:axis]]


@SHAPES.register("ArgMax")
def _argmax_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """ArgMax (``argmax_layer.cpp``): ``top_k >= 1``.  With ``axis``: the bottom's shape with ``shape[axis] = top_k``
    (values if out_max_val, else indices).  Without: ``max(num_axes, 3)`` axes of 1 with ``shape[0] = N``,
    ``shape[2] = top_k`` and ``shape[1] = 2`` if ``out_max_val`` (indices and values); top_k <= count(1)."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, exact=1)
    ap = layer.p("argmax_param")
    b = tuple(bottoms[0])
    k = int(ap.top_k)
    if k < 1:
        raise ShapeError(f"{_who(layer)}: argmax_param.top_k={k} must be >= 1")
    if ap.HasField("axis"):
        axis = canonical_axis(layer, "argmax_param.axis", ap.axis, len(b))
        if k > b[axis]:
            raise ShapeError(f"{_who(layer)}: argmax_param.top_k={k} exceeds axis {axis} of size {b[axis]}")
        out = list(b)
        out[axis] = k
        return [tuple(out)]
    if k > count(b, 1):
        raise ShapeError(f"{_who(layer)}: argmax_param.top_k={k} exceeds the {count(b, 1)} values per item")
    out = [1] * max(len(b), 3)
    out[0] = b[0]
    out[2] = k
    if ap.out_max_val:
        out[1] = 2
    return [tuple(out)]


# ----------------------------------------------------------------------------------------------------------------
# resize


@SHAPES.register("Upsample")
def _upsample_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Upsample (nearest, YOLOv3-caffe): ``upsample_h``/``upsample_w`` give the output size; otherwise
    ``H * scale_h``, ``W * scale_w`` (each defaulting to ``scale``, default 2).  4-D."""
    _n_bottoms(layer, bottoms, exact=1)
    _n_tops(layer, exact=1)
    (b,) = bottoms
    _rank(layer, b, 4)
    n, c, h, w = b
    up = layer.p("upsample_param")
    if up.HasField("upsample_h") or up.HasField("upsample_w"):
        if not (up.HasField("upsample_h") and up.HasField("upsample_w")):
            raise ShapeError(f"{_who(layer)}: upsample_h and upsample_w must be given together")
        oh, ow = int(up.upsample_h), int(up.upsample_w)
        if oh < h or ow < w:
            raise ShapeError(f"{_who(layer)}: upsample_h x upsample_w = {oh}x{ow} is smaller than the input {h}x{w}")
    else:
        sh = up.scale_h if up.HasField("scale_h") else up.scale
        sw = up.scale_w if up.HasField("scale_w") else up.scale
        if sh <= 0 or sw <= 0:
            raise ShapeError(f"{_who(layer)}: upsample scale {sh}x{sw} must be positive")
        oh, ow = h * sh, w * sw
    return [_positive_top(layer, (n, c, oh, ow))]


def interp_out_size(size: int, *, zoom: int | None, shrink: int | None, pad_beg: int, pad_end: int) -> int:
    """deeplab ``interp_layer.cpp``::

        size_eff = size + pad_beg + pad_end
        shrink only:  (size_eff - 1) / shrink + 1                                    (floor)
        zoom only:    size_eff + (size_eff - 1) * (zoom - 1)
        both:         s = (size_eff - 1) / shrink + 1;  s + (s - 1) * (zoom - 1)     (shrink, then zoom)
    """
    eff = size + pad_beg + pad_end
    out = eff
    if shrink is not None:
        out = (eff - 1) // shrink + 1
    if zoom is not None:
        out = out + (out - 1) * (zoom - 1)
    return out


@SHAPES.register("Interp")
def _interp_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """Interp (deeplab / PSPNet, bilinear with align_corners): the output size comes from ``shrink_factor`` and/or
    ``zoom_factor`` (:func:`interp_out_size`), else from ``height`` and ``width``, else from a second bottom's H, W.
    Only non-positive ``pad_beg``/``pad_end`` (cropping) are allowed, as in deeplab."""
    _n_bottoms(layer, bottoms, minimum=1, maximum=2)
    _n_tops(layer, exact=1)
    b = bottoms[0]
    _rank(layer, b, 4)
    n, c, h, w = b
    ip = layer.p("interp_param")
    if ip.pad_beg > 0 or ip.pad_end > 0:
        raise UnsupportedParam(f"{_who(layer)}: interp_param pad_beg={ip.pad_beg}, pad_end={ip.pad_end}: only "
                               f"non-positive padding (cropping) is supported")
    he, we = h + ip.pad_beg + ip.pad_end, w + ip.pad_beg + ip.pad_end
    if he <= 0 or we <= 0:
        raise ShapeError(f"{_who(layer)}: pad_beg={ip.pad_beg}, pad_end={ip.pad_end} crop all of {h}x{w}")
    has_zoom, has_shrink = ip.HasField("zoom_factor"), ip.HasField("shrink_factor")
    if has_zoom and ip.zoom_factor < 1:
        raise ShapeError(f"{_who(layer)}: interp_param.zoom_factor={ip.zoom_factor} must be >= 1")
    if has_shrink and ip.shrink_factor < 1:
        raise ShapeError(f"{_who(layer)}: interp_param.shrink_factor={ip.shrink_factor} must be >= 1")
    if has_zoom or has_shrink:
        kw = dict(zoom=ip.zoom_factor if has_zoom else None, shrink=ip.shrink_factor if has_shrink else None,
                  pad_beg=ip.pad_beg, pad_end=ip.pad_end)
        oh, ow = interp_out_size(h, **kw), interp_out_size(w, **kw)
    elif ip.HasField("height") and ip.HasField("width"):
        oh, ow = int(ip.height), int(ip.width)
    elif len(bottoms) == 2:
        _rank(layer, bottoms[1], 4, "second bottom")
        oh, ow = bottoms[1][2], bottoms[1][3]
    else:
        raise ShapeError(f"{_who(layer)}: interp_param needs zoom_factor, shrink_factor, height and width, or a "
                         f"second bottom giving the size")
    return [_positive_top(layer, (n, c, oh, ow))]


# ----------------------------------------------------------------------------------------------------------------
# detection


def prior_aspect_ratios(layer: Layer) -> list[float]:
    """SSD ``prior_box_layer.cpp``: start with 1.0; add each ``aspect_ratio`` not already present (|diff| < 1e-6) and,
    with ``flip``, its reciprocal."""
    pb = layer.p("prior_box_param")
    ars = [1.0]
    for ar in pb.aspect_ratio:
        if any(abs(ar - x) < 1e-6 for x in ars):
            continue
        if ar <= 0:
            raise ShapeError(f"{_who(layer)}: prior_box_param.aspect_ratio={ar} must be positive")
        ars.append(float(ar))
        if pb.flip:
            ars.append(1.0 / float(ar))
    return ars


def num_priors(layer: Layer) -> int:
    """Priors per feature-map cell: ``len(aspect_ratios) * len(min_size) + len(max_size)``."""
    pb = layer.p("prior_box_param")
    if len(pb.min_size) == 0:
        raise ShapeError(f"{_who(layer)}: prior_box_param.min_size is required")
    for m in pb.min_size:
        if m <= 0:
            raise ShapeError(f"{_who(layer)}: prior_box_param.min_size={m} must be positive")
    if len(pb.max_size) and len(pb.max_size) != len(pb.min_size):
        raise ShapeError(f"{_who(layer)}: prior_box_param has {len(pb.max_size)} max_size for {len(pb.min_size)} "
                         f"min_size")
    for lo, hi in zip(pb.min_size, pb.max_size):
        if hi <= lo:
            raise ShapeError(f"{_who(layer)}: prior_box_param.max_size={hi} must be greater than min_size={lo}")
    return len(prior_aspect_ratios(layer)) * len(pb.min_size) + len(pb.max_size)


@SHAPES.register("PriorBox")
def _priorbox_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """PriorBox (SSD): bottoms (feature map, image); top ``(1, 2, H * W * num_priors * 4)`` (boxes, variances).
    ``variance`` has 0, 1 or 4 values; ``img_size`` excludes ``img_h``/``img_w``, ``step`` excludes
    ``step_h``/``step_w``."""
    _n_bottoms(layer, bottoms, exact=2)
    _n_tops(layer, exact=1)
    pb = layer.p("prior_box_param")
    if len(pb.variance) not in (0, 1, 4):
        raise ShapeError(f"{_who(layer)}: prior_box_param has {len(pb.variance)} variance values (give 1 or 4)")
    if pb.HasField("img_size") and (pb.HasField("img_h") or pb.HasField("img_w")):
        raise UnsupportedParam(f"{_who(layer)}: prior_box_param has img_size and img_h/img_w; give one")
    if pb.HasField("step") and (pb.HasField("step_h") or pb.HasField("step_w")):
        raise UnsupportedParam(f"{_who(layer)}: prior_box_param has step and step_h/step_w; give one")
    f = bottoms[0]
    _rank(layer, f, 4, "feature map")
    _rank(layer, bottoms[1], 4, "image")
    return [(1, 2, f[2] * f[3] * num_priors(layer) * 4)]


def detection_output_rows(layer: Layer, bottoms: list[Shape]) -> int:
    """The number of rows of DetectionOutput's ``(1, 1, rows, 7)`` top is data dependent.  This returns an upper bound:
    ``N * keep_top_k`` when ``keep_top_k > -1``, else ``N * num_priors * (num_classes - 1 if a background class)``
    (each prior kept at most once per class after NMS)."""
    dp = layer.p("detection_output_param")
    n = bottoms[0][0]
    prior_count = bottoms[2][2] // 4
    if dp.keep_top_k > -1:
        return max(n * dp.keep_top_k, 1)
    classes = dp.num_classes - (1 if 0 <= dp.background_label_id < dp.num_classes else 0)
    per_class = prior_count
    if dp.HasField("nms_param") and dp.nms_param.HasField("top_k") and dp.nms_param.top_k > -1:
        per_class = min(per_class, dp.nms_param.top_k)
    return max(n * classes * per_class, 1)


@SHAPES.register("DetectionOutput")
def _detout_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """DetectionOutput (SSD): bottoms loc ``(N, P*L*4)``, conf ``(N, P*num_classes)``, priors ``(1, 2, P*4)`` with L
    = 1 if share_location else num_classes; top ``(1, 1, rows, 7)`` = [image, label, score, xmin, ymin, xmax, ymax].
    ``rows`` is data dependent: :func:`detection_output_rows` gives the bound used here (marked in
    :attr:`LayerShapes.data_dependent`)."""
    _n_bottoms(layer, bottoms, exact=3)
    _n_tops(layer, exact=1)
    dp = layer.p("detection_output_param")
    if not dp.HasField("num_classes") or dp.num_classes < 1:
        raise ShapeError(f"{_who(layer)}: detection_output_param.num_classes is required and positive")
    loc, conf, prior = (tuple(s) for s in bottoms)
    if len(prior) != 3 or prior[1] != 2 or prior[2] % 4:
        raise ShapeError(f"{_who(layer)}: priors {layer.bottoms[2]!r} {_fmt(prior)} must be (1, 2, P*4)")
    p = prior[2] // 4
    nloc = 1 if dp.share_location else dp.num_classes
    if count(loc, 1) != p * nloc * 4:
        raise ShapeError(f"{_who(layer)}: loc {layer.bottoms[0]!r} {_fmt(loc)} must hold {p} priors x {nloc} x 4 "
                         f"= {p * nloc * 4} values per image")
    if count(conf, 1) != p * dp.num_classes:
        raise ShapeError(f"{_who(layer)}: conf {layer.bottoms[1]!r} {_fmt(conf)} must hold {p} priors x "
                         f"{dp.num_classes} classes = {p * dp.num_classes} values per image")
    if conf[0] != loc[0]:
        raise ShapeError(f"{_who(layer)}: loc and conf batch sizes differ ({loc[0]} vs {conf[0]})")
    return [(1, 1, detection_output_rows(layer, bottoms), 7)]


DATA_DEPENDENT_TYPES = frozenset({"DetectionOutput"})


# ----------------------------------------------------------------------------------------------------------------
# the public API


def param_shapes(layer: Layer, bottom_shapes: Sequence[Shape]) -> list[Shape]:
    """The weight blob shapes Caffe creates for ``layer`` given its bottom shapes (``[]`` for weightless layers)."""
    bottoms = [tuple(int(d) for d in s) for s in bottom_shapes]
    if layer.kind in PARAM_SHAPES:
        return [tuple(int(d) for d in s) for s in PARAM_SHAPES[layer.kind](layer, bottoms)]
    return []


@dataclass(frozen=True)
class LayerShapes:
    """Shapes of one layer: bottoms and tops (Caffe NCHW order), parameter blobs, multiply-adds."""

    name: str
    type: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    bottom_shapes: tuple[Shape, ...]
    top_shapes: tuple[Shape, ...]
    param_shapes: tuple[Shape, ...]
    macs: int
    data_dependent: bool = False  # top sizes are an upper bound (DetectionOutput)

    @property
    def param_count(self) -> int:
        return sum(count(s) for s in self.param_shapes)

    @property
    def top_bytes(self) -> int:
        """float32 bytes of this layer's tops (what recording them needs)."""
        return 4 * sum(count(s) for s in self.top_shapes)


@dataclass(frozen=True)
class NetShapes:
    """Result of :func:`infer_shapes`: per layer :class:`LayerShapes` in execution order; ``blobs`` maps each blob to
    its (final) shape; ``keys`` maps every ``"<layer>/<top>"`` record key to its shape."""

    net: Net
    layers: tuple[LayerShapes, ...]
    blobs: Mapping[str, Shape] = field(default_factory=lambda: MappingProxyType({}))
    keys: Mapping[str, Shape] = field(default_factory=lambda: MappingProxyType({}))

    def __getitem__(self, layer_name: str) -> LayerShapes:
        for ls in self.layers:
            if ls.name == layer_name:
                return ls
        raise KeyError(f"net {self.net.name!r} has no layer {layer_name!r}")

    def bottom_shapes(self, layer_name: str) -> list[Shape]:
        return list(self[layer_name].bottom_shapes)

    @property
    def param_count(self) -> int:
        return sum(ls.param_count for ls in self.layers)

    @property
    def macs(self) -> int:
        return sum(ls.macs for ls in self.layers)

    def activation_bytes(self, itemsize: int = 4) -> int:
        """Bytes to hold every recorded top (one array per ``"<layer>/<top>"`` key, in-place layers included, as the
        reference records them) at ``itemsize`` bytes per value."""
        return itemsize * sum(count(s) for s in self.keys.values())

    def largest_blob(self) -> tuple[str, Shape]:
        key = max(self.keys, key=lambda k: count(self.keys[k]), default="")
        return key, self.keys.get(key, ())


def infer_shapes(net: Net) -> NetShapes:
    """Run Caffe's shape rules over ``net`` in execution order.

    Checks the graph as Caffe's ``Net::Init`` does: every bottom must be a net input or a top of an earlier layer
    (``Unknown bottom blob``), and a top may be produced twice only in place (``Duplicate blobs produced by multiple
    sources``).  Errors are prefixed with the net's source file."""
    try:
        return _infer(net)
    except HarnessError as e:
        src = net.source or "<net>"
        msg = str(e)
        if not msg.startswith(src):
            raise type(e)(f"{src}: {msg}") from None
        raise


def _infer(net: Net) -> NetShapes:
    blobs: dict[str, Shape] = {}
    keys: dict[str, Shape] = {}
    out: list[LayerShapes] = []
    if not net.layers:
        raise ShapeError(f"net {net.name!r} has no layers")
    for lay in net.layers:
        if lay.kind not in CATALOGUE:
            # the loader refuses these; be explicit if a hand-built net slips through
            from .catalogue import supported_types

            raise ShapeError(f"layer {lay.name!r}: unknown type {lay.type!r}; supported: {', '.join(supported_types())}")
        bshapes: list[Shape] = []
        for b in lay.bottoms:
            if b not in blobs:
                raise ShapeError(f"{_who(lay)}: bottom {b!r} is not a net input nor a top of an earlier layer")
            bshapes.append(blobs[b])
        for i, t in enumerate(lay.tops):
            if t in blobs and not (i < len(lay.bottoms) and lay.bottoms[i] == t):
                raise ShapeError(f"{_who(lay)}: top {t!r} is already produced by an earlier layer and this layer is "
                                 f"not in place on it")
        if lay.kind == "Input" and not len(lay.p("input_param").shape) and all(t in net.inputs for t in lay.tops):
            tops = [tuple(int(d) for d in net.inputs[t]) for t in lay.tops]
            for t, s in zip(lay.tops, tops):
                if not s or any(d <= 0 for d in s):
                    raise ShapeError(f"{_who(lay)}: input {t!r} shape {_fmt(s)} must have positive dims")
        else:
            tops = [tuple(int(d) for d in s) for s in SHAPES[lay.kind](lay, bshapes)]
        if len(tops) != len(lay.tops):
            raise ShapeError(f"{_who(lay)}: produced {len(tops)} shapes for {len(lay.tops)} tops")
        for t, s in zip(lay.tops, tops):
            if t in blobs and blobs[t] != s:  # in-place must keep the shape
                raise ShapeError(f"{_who(lay)}: in place on {t!r} but changes its shape {_fmt(blobs[t])} -> {_fmt(s)}")
            blobs[t] = s
            keys[f"{lay.name}/{t}"] = s
        pshapes = param_shapes(lay, bshapes)
        macs = int(MACS[lay.kind](lay, bshapes, tops)) if lay.kind in MACS else 0
        out.append(LayerShapes(lay.name, lay.type, tuple(lay.bottoms), tuple(lay.tops), tuple(bshapes), tuple(tops),
                               tuple(pshapes), macs, lay.kind in DATA_DEPENDENT_TYPES))
    return NetShapes(net, tuple(out), MappingProxyType(blobs), MappingProxyType(keys))


def _legacy_equal(expected: Shape, actual: Shape) -> bool:
    """Caffe's ``Blob::ShapeEquals`` accepts legacy (num, channels, height, width) blobs right-aligned: leading 1s
    do not count.  A 0-D blob equals a one-value blob stored as ``(1,)``."""

    def strip(s: Shape) -> Shape:
        s = tuple(int(d) for d in s)
        while s and s[0] == 1:
            s = s[1:]
        return s

    return tuple(expected) == tuple(actual) or strip(expected) == strip(actual)


def check_blob_shapes(net: Net, net_shapes: NetShapes | None = None, *, weights_source: str | None = None) -> None:
    """Compare every attached weight blob with :func:`param_shapes` (Caffe's ``CopyTrainedLayersFrom`` checks).
    Raises :class:`ShapeError` naming the weights file (``weights_source``, else ``net.meta["weights"]``), the net
    file, the layer, blob index, expected and actual shape."""
    ns = net_shapes or infer_shapes(net)
    src = net.source or "<net>"
    wsrc = weights_source or (net.meta.get("weights") if net.meta else None)
    if wsrc:
        src = f"{wsrc} (weights for {src})"
    for lay, ls in zip(net.layers, ns.layers):
        if not lay.blobs:
            continue
        exp = ls.param_shapes
        if len(lay.blobs) != len(exp):
            raise ShapeError(f"{src}: {_who(lay)}: weights have {len(lay.blobs)} blobs, the layer expects "
                             f"{len(exp)} ({', '.join(_fmt(s) for s in exp) or 'none'})")
        for i, (blob, e) in enumerate(zip(lay.blobs, exp)):
            actual = tuple(int(d) for d in getattr(blob, "shape", ()))
            if not _legacy_equal(e, actual):
                raise ShapeError(f"{src}: {_who(lay)}: blob {i} has shape {_fmt(actual)}, expected {_fmt(e)}")


def parse_bytes(text: str) -> int:
    """``"8589934592"``, ``"512M"``, ``"4G"``, ``"2GiB"``, ``"1.5GB"`` -> bytes (binary multiples)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    mult = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    try:
        if t and t[-1] in mult:
            return int(float(t[:-1]) * mult[t[-1]])
        return int(float(t))
    except ValueError:
        raise ResourceError(f"CAFFE_HARNESS_MEMORY_BUDGET={text!r} is not a size (bytes, or e.g. 512M, 4G)") from None


def default_budget() -> int:
    """The activation memory budget: ``CAFFE_HARNESS_MEMORY_BUDGET`` (bytes, ``512M``, ``4G`` ...) or 8 GiB."""
    env = os.environ.get("CAFFE_HARNESS_MEMORY_BUDGET")
    return parse_bytes(env) if env else DEFAULT_BUDGET_BYTES


def check_budget(net_shapes: NetShapes, budget_bytes: int | None = None, *, itemsize: int = 8) -> int:
    """Refuse (``ResourceError``) a net whose recorded activations would need more than ``budget_bytes`` (default
    :func:`default_budget`) at ``itemsize`` bytes per value (8: the float64 reference, the worst case; 4: float32).
    Call it before allocating anything.  Returns the bytes needed."""
    budget = default_budget() if budget_bytes is None else int(budget_bytes)
    need = net_shapes.activation_bytes(itemsize)
    if need > budget:
        key, shape = net_shapes.largest_blob()
        dtype = {4: "float32", 8: "float64"}.get(itemsize, f"{itemsize}-byte")
        raise ResourceError(
            f"{net_shapes.net.source or net_shapes.net.name}: activations need {_human(need)} as {dtype}, over the "
            f"memory budget of {_human(budget)} (largest blob {key!r} {_fmt(shape)} = "
            f"{_human(count(shape) * itemsize)}); reduce the input size or set CAFFE_HARNESS_MEMORY_BUDGET"
        )
    return need


def _human(n: int) -> str:
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


# Every catalogue type must have a shape rule (a missing one fails at import, like a duplicate).
_missing = sorted(set(CATALOGUE) - SHAPES.types())
if _missing:  # pragma: no cover - guarded by tests/test_shapes.py
    raise ImportError(f"harness.shapes: no shape rule for {', '.join(_missing)}")

__all__ = [
    "LayerShapes", "NetShapes", "PARAM_SHAPES", "MACS", "infer_shapes", "param_shapes", "check_blob_shapes",
    "check_budget", "default_budget", "count", "canonical_axis", "conv_out_size", "deconv_out_size", "pool_out_size",
    "spp_level_geometry", "interp_out_size", "num_priors", "prior_aspect_ratios", "detection_output_rows",
    "permute_order", "expected_param_shapes",
]


def expected_param_shapes(net: Net) -> dict[str, list[Shape]]:
    """``{layer name: [expected blob shapes]}`` for every layer with weights (used by the loader to normalise
    Caffe's legacy 4-D blob shapes)."""
    return {ls.name: list(ls.param_shapes) for ls in infer_shapes(net).layers if ls.param_shapes}
