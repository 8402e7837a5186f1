"""Pooling (MAX, AVE, STOCHASTIC at TEST, global, CEIL/FLOOR) and SPP, in pure NumPy.

Caffe rules coded here (``pooling_layer.cpp``, ``pooling_layer.cu``, ``spp_layer.cpp``):

* output size ``out = ceil((in + 2*pad - kernel) / stride) + 1`` (``round_mode: CEIL``, the default) or ``floor``
  (``round_mode: FLOOR``; the loader folds the fork spelling ``ceil_mode: false`` into it);
* "if we have padding, ensure that the last pooling starts strictly inside the image": when ``pad_h`` or ``pad_w``
  is non-zero, each axis with ``(out-1)*stride >= in + pad`` loses its last window;
* window ``o`` starts at ``hs = o*stride - pad``;
* MAX: ``he = min(hs+k, H)``, ``hs = max(hs, 0)``; the top starts at ``-FLT_MAX`` and a value replaces it only when
  strictly greater, so padding never wins, NaN never wins, and the first maximum (row-major) gives the mask index;
* AVE: ``he = min(hs+k, H+pad)``; ``pool_size = (he-hs)*(we-ws)`` is taken *before* clipping the window to the
  image, so padding counts in the divisor but the ceil overhang beyond ``H+pad`` does not; the sum runs over the
  clipped window;
* STOCHASTIC, TEST phase: the CPU code is ``NOT_IMPLEMENTED``; the GPU kernel ``StoPoolForwardTest`` computes
  ``sum(x^2) / (FLT_MIN + sum(x))`` over the window ``[hs, min(hs+k, H))`` (no padding is allowed), i.e. the
  probability-weighted average with probabilities ``x / sum(x)``.  That is what is implemented here;
* global pooling: kernel = the bottom's H x W, pad 0, stride 1.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError, UnsupportedParam
from ..net import Layer
from ..params import pool_geometry, spp_method
from . import _window
from .registry import REFERENCE

FLT_MAX = float(np.finfo(np.float32).max)
FLT_MIN = float(np.finfo(np.float32).tiny)
_BIG_KERNEL = 64  # above this many taps, reduce the window view in one call instead of one pass per tap


def pool_out_size(size: int, *, kernel: int, stride: int, pad: int, ceil: bool, clip: bool) -> int:
    """Caffe's pooled size along one axis; ``clip`` is "the layer has any padding" (pad_h or pad_w non-zero)."""
    num = size + 2 * pad - kernel
    q = -((-num) // stride) if ceil else num // stride
    out = q + 1
    if clip and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _sizes(h: int, w: int, kernel, stride, pad, ceil: bool) -> tuple[int, int]:
    clip = bool(pad[0] or pad[1])
    ho = pool_out_size(h, kernel=kernel[0], stride=stride[0], pad=pad[0], ceil=ceil, clip=clip)
    wo = pool_out_size(w, kernel=kernel[1], stride=stride[1], pad=pad[1], ceil=ceil, clip=clip)
    return ho, wo


def _blocks(x, kernel, stride, pad, out_hw, value):
    return _window.window_chunks(x, kernel=kernel, stride=stride, dilation=(1, 1), pad=pad, out_hw=out_hw,
                                 value=value, extra_per_output=2 * x.itemsize)


def max_pool(x: np.ndarray, *, kernel: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int],
             ceil: bool = True, with_mask: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Caffe MAX pooling of ``x`` (N, C, H, W); returns ``(top, mask)`` where ``mask`` (same dtype as the top, as
    Caffe's second top) holds the flat index ``h*W + w`` of the first maximum, or -1 for an empty window."""
    n, c, h, w = x.shape
    ho, wo = _sizes(h, w, kernel, stride, pad, ceil)
    if ho <= 0 or wo <= 0:
        raise ValueError(f"pooled size {ho}x{wo} is not positive")
    top = np.full((n, c, ho, wo), -FLT_MAX, dtype=x.dtype)
    mask = np.full((n, c, ho, wo), -1, dtype=np.int64) if with_mask else None
    for ns, rs, cs, view in _blocks(x, kernel, stride, pad, (ho, wo), -np.inf):
        t = top[ns, :, rs, cs]
        if not with_mask:
            if kernel[0] * kernel[1] > _BIG_KERNEL:
                np.fmax(t, np.fmax.reduce(view, axis=(2, 3)), out=t)
                continue
            for i in range(kernel[0]):
                for j in range(kernel[1]):
                    np.fmax(t, view[:, :, i, j], out=t)  # fmax: NaN never replaces the running max
            continue
        m = mask[ns, :, rs, cs]
        oh = np.arange(rs.start, rs.stop)[:, None] * stride[0] - pad[0]
        ow = np.arange(cs.start, cs.stop)[None, :] * stride[1] - pad[1]
        for i in range(kernel[0]):
            for j in range(kernel[1]):
                cand = view[:, :, i, j]
                better = cand > t  # strict: the first maximum wins
                np.copyto(t, cand, where=better)
                np.copyto(m, np.broadcast_to((oh + i) * w + (ow + j), m.shape), where=better)
    return top, None if mask is None else mask.astype(x.dtype)


def _ave_divisor(size: int, out: int, *, kernel: int, stride: int, pad: int) -> np.ndarray:
    """Per-window extent along one axis: ``min(hs+k, H+pad) - hs`` with ``hs = o*stride - pad`` (before clipping)."""
    hs = np.arange(out) * stride - pad
    he = np.minimum(hs + kernel, size + pad)
    return he - hs


def ave_pool(x: np.ndarray, *, kernel: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int],
             ceil: bool = True) -> np.ndarray:
    """Caffe AVE pooling of ``x`` (N, C, H, W): window sum over the image part / ``pool_size`` counting the pad."""
    n, c, h, w = x.shape
    ho, wo = _sizes(h, w, kernel, stride, pad, ceil)
    if ho <= 0 or wo <= 0:
        raise ValueError(f"pooled size {ho}x{wo} is not positive")
    top = np.zeros((n, c, ho, wo), dtype=x.dtype)
    for ns, rs, cs, view in _blocks(x, kernel, stride, pad, (ho, wo), 0.0):
        t = top[ns, :, rs, cs]
        if kernel[0] * kernel[1] > _BIG_KERNEL:
            t += view.sum(axis=(2, 3))
            continue
        for i in range(kernel[0]):  # row-major window order, as Caffe accumulates
            for j in range(kernel[1]):
                t += view[:, :, i, j]
    dh = _ave_divisor(h, ho, kernel=kernel[0], stride=stride[0], pad=pad[0])
    dw = _ave_divisor(w, wo, kernel=kernel[1], stride=stride[1], pad=pad[1])
    pool_size = (dh[:, None] * dw[None, :]).astype(x.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):  # Caffe divides by whatever pool_size is
        top /= pool_size
    return top


def stochastic_pool_test(x: np.ndarray, *, kernel: tuple[int, int], stride: tuple[int, int],
                         ceil: bool = True) -> np.ndarray:
    """Caffe STOCHASTIC pooling in the TEST phase (GPU ``StoPoolForwardTest``): ``sum(x^2) / (FLT_MIN + sum(x))``
    over ``[o*s, min(o*s+k, H))``; no padding."""
    n, c, h, w = x.shape
    ho, wo = _sizes(h, w, kernel, stride, (0, 0), ceil)
    if ho <= 0 or wo <= 0:
        raise ValueError(f"pooled size {ho}x{wo} is not positive")
    top = np.empty((n, c, ho, wo), dtype=x.dtype)
    for ns, rs, cs, view in _blocks(x, kernel, stride, (0, 0), (ho, wo), 0.0):
        shape = view.shape[:2] + view.shape[4:]
        cumsum = np.full(shape, FLT_MIN, dtype=x.dtype)
        cumvalues = np.zeros(shape, dtype=x.dtype)
        for i in range(kernel[0]):
            for j in range(kernel[1]):
                v = view[:, :, i, j]
                cumsum += v
                cumvalues += v * v
        with np.errstate(divide="ignore", invalid="ignore"):
            top[ns, :, rs, cs] = cumvalues / cumsum
    return top


def pool(x: np.ndarray, *, method: str, kernel: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int],
         ceil: bool = True, with_mask: bool = False) -> list[np.ndarray]:
    """One Caffe Pooling layer on ``x``; returns ``[top]`` or ``[top, mask]`` (MAX only)."""
    if method == "MAX":
        top, mask = max_pool(x, kernel=kernel, stride=stride, pad=pad, ceil=ceil, with_mask=with_mask)
        return [top] if mask is None else [top, mask]
    if with_mask:
        raise ValueError(f"only MAX pooling has a second (mask) top, not {method}")
    if method == "AVE":
        return [ave_pool(x, kernel=kernel, stride=stride, pad=pad, ceil=ceil)]
    if method == "STOCHASTIC":
        if pad != (0, 0):
            raise ValueError("padding is implemented only for MAX and AVE pooling")
        return [stochastic_pool_test(x, kernel=kernel, stride=stride, ceil=ceil)]
    raise ValueError(f"unknown pooling method {method}")


@REFERENCE.register("Pooling")
def pooling_layer(layer: Layer, inputs: list[np.ndarray], *, dtype=np.float64) -> list[np.ndarray]:
    if len(inputs) != 1:
        raise ShapeError(f"Pooling {layer.name!r}: expects 1 bottom, got {len(inputs)}")
    (x,) = inputs
    if x.ndim != 4:
        raise ShapeError(f"Pooling {layer.name!r}: input must have 4 axes (N, C, H, W), got {tuple(x.shape)}")
    g = pool_geometry(layer)
    ntop = len(layer.tops)
    if ntop not in (1, 2) or (ntop == 2 and g.method != "MAX"):
        allowed = "1 or 2 tops" if g.method == "MAX" else "1 top"
        raise ShapeError(f"Pooling {layer.name!r}: pool={g.method} takes {allowed}, got {ntop}")
    h, w = x.shape[2:]
    kernel = (h, w) if g.global_pooling else g.kernel
    ho, wo = _sizes(h, w, kernel, g.stride, g.pad, g.ceil)
    if ho <= 0 or wo <= 0:
        raise ShapeError(f"Pooling {layer.name!r}: output would be {ho}x{wo} for input {h}x{w} "
                         f"(kernel={kernel[0]}x{kernel[1]}, stride={g.stride[0]}x{g.stride[1]}, "
                         f"pad={g.pad[0]}x{g.pad[1]})")
    if g.global_pooling and g.method == "AVE":
        return [(x.sum(axis=(2, 3), keepdims=True) / x.dtype.type(h * w)).astype(x.dtype, copy=False)]
    return pool(x, method=g.method, kernel=kernel, stride=g.stride, pad=g.pad, ceil=g.ceil, with_mask=ntop == 2)


def spp_level_geometry(h: int, w: int, level: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """``SPPLayer::GetPoolingParam``: ``bins = 2^level``, ``kernel = ceil(H/bins)``, ``pad = (kernel*bins-H+1)/2``,
    stride = kernel.  Returns ``(kernel, pad)``."""
    bins = 2 ** level
    kh = -(-h // bins)
    kw = -(-w // bins)
    ph = (kh * bins - h + 1) // 2
    pw = (kw * bins - w + 1) // 2
    return (kh, kw), (ph, pw)


def spp(x: np.ndarray, *, pyramid_height: int, method: str) -> np.ndarray:
    """Caffe SPP: pool at each pyramid level (CEIL rounding), flatten each to (N, C*bins_h*bins_w) and concatenate
    along axis 1.  With ``pyramid_height == 1`` Caffe returns the single pooling's 4-D top unflattened."""
    n, c, h, w = x.shape
    outs = []
    for level in range(pyramid_height):
        kernel, pad = spp_level_geometry(h, w, level)
        if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
            raise ValueError(f"pyramid level {level} needs pad {pad[0]}x{pad[1]} >= kernel {kernel[0]}x{kernel[1]} "
                             f"for a {h}x{w} input (Caffe's CHECK_LT(pad, kernel) fails)")
        if method == "STOCHASTIC" and pad != (0, 0):
            raise ValueError(f"pyramid level {level} needs padding {pad[0]}x{pad[1]}, which STOCHASTIC pooling "
                             f"does not implement")
        (top,) = pool(x, method=method, kernel=kernel, stride=kernel, pad=pad, ceil=True)
        if pyramid_height == 1:
            return top
        outs.append(top.reshape(n, -1))
    return np.concatenate(outs, axis=1)


@REFERENCE.register("SPP")
def spp_layer(layer: Layer, inputs: list[np.ndarray], *, dtype=np.float64) -> list[np.ndarray]:
    if len(inputs) != 1 or len(layer.tops) != 1:
        raise ShapeError(f"SPP {layer.name!r}: expects 1 bottom and 1 top")
    (x,) = inputs
    if x.ndim != 4:
        raise ShapeError(f"SPP {layer.name!r}: input must have 4 axes (N, C, H, W), got {tuple(x.shape)}")
    sp = layer.p("spp_param")
    if not sp.HasField("pyramid_height") or sp.pyramid_height < 1:
        raise ShapeError(f"SPP {layer.name!r}: spp_param.pyramid_height="
                         f"{sp.pyramid_height if sp.HasField('pyramid_height') else 'unset'} must be >= 1")
    try:
        return [spp(x, pyramid_height=int(sp.pyramid_height), method=spp_method(layer))]
    except ValueError as e:
        raise UnsupportedParam(f"SPP {layer.name!r}: {e}") from e
