"""Pooling and SPP output sizes (``pooling_layer.cpp``, ``spp_layer.cpp``)."""

from __future__ import annotations

from ..errors import ShapeError
from ..net import Layer
from ..params import pool_geometry
from ._checks import Shape, _n_bottoms, _n_tops, _positive_top, _rank, _who
from .registry import SHAPES


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
