"""The one padded-window machinery behind convolution, deconvolution and pooling (pure NumPy).

JAX ``lax_reference`` style: pad -> strided window view -> matmul / reduce.  Nothing here knows a Caffe output-size
rule: callers (conv.py, pooling.py) derive the output size from Caffe's formula and pass it in, together with the
padding *before* the first row/column; positions past the image (padding, or windows that overhang the end) read
``value`` (0 for convolution and AVE pooling, -inf for MAX pooling).

Window ``o`` along an axis covers input positions ``o*stride - pad_before + i*dilation`` for ``i in range(kernel)``.

Memory: the work is done in chunks over the batch, the output rows and, for absurd widths, the output columns.
Each chunk pads only the input slab its windows read (no padded copy of the whole input) and builds its im2col
columns (and GEMM result) for that chunk, so that no single temporary exceeds :data:`MAX_TEMP_BYTES` (256 MiB)
whatever the input size.  :data:`CHUNK_BYTES` is the (smaller) working size aimed at, for cache locality.  The
column and slab buffers are per-thread scratch reused from layer to layer (:func:`scratch`), freed after each
``forward``.
"""

from __future__ import annotations

import math
import threading
from typing import Iterator

import numpy as np
from numpy.lib.stride_tricks import as_strided

MAX_TEMP_BYTES = 256 << 20
"""Hard ceiling on any single temporary the window code allocates (the result array itself excepted)."""

CHUNK_BYTES = 32 << 20
"""Working chunk size; always <= MAX_TEMP_BYTES."""

_TLS = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A per-thread work buffer ``name`` of ``shape``/``dtype``, reused from call to call.

    First-touch page faults on a freshly allocated im2col buffer cost as much as a small GEMM (measured: a 64-channel
    56x56 3x3 convolution takes 3 ms with a warm buffer, 7.5 ms with fresh pages), so the window code keeps its
    buffers between layers.  Contents are undefined; :func:`release_scratch` (called at the end of every
    ``forward``) frees them.
    """
    dt = np.dtype(dtype)
    nbytes = math.prod(shape) * dt.itemsize
    bufs = _TLS.__dict__.setdefault("bufs", {})
    buf = bufs.get(name)
    if buf is None or buf.nbytes < nbytes:
        bufs.pop(name, None)
        buf = np.empty(max(nbytes, dt.itemsize), dtype=np.uint8)
        if nbytes <= MAX_TEMP_BYTES:
            bufs[name] = buf
    return buf[:nbytes].view(dt).reshape(shape)


def release_scratch() -> None:
    """Free this thread's work buffers."""
    _TLS.__dict__.pop("bufs", None)


def slab(x: np.ndarray, rows: tuple[int, int], cols: tuple[int, int], *, value: float = 0.0,
         buffer: str | None = None) -> np.ndarray:
    """``x[:, :, r0:r1, c0:c1]`` of an (N, C, H, W) array where the ranges may reach outside the image; positions
    outside read ``value``.  A view (no copy) when the ranges lie inside the image; otherwise a new array, or the
    scratch buffer ``buffer`` (valid until the next use of that buffer)."""
    (r0, r1), (c0, c1) = rows, cols
    n, c, h, w = x.shape
    if r0 >= 0 and c0 >= 0 and r1 <= h and c1 <= w:
        return x[:, :, r0:r1, c0:c1]
    shape = (n, c, r1 - r0, c1 - c0)
    if buffer is None:
        out = np.full(shape, value, dtype=x.dtype)
    else:
        out = scratch(buffer, shape, x.dtype)
        out.fill(value)
    ir0, ir1 = max(r0, 0), min(r1, h)
    ic0, ic1 = max(c0, 0), min(c1, w)
    if ir0 < ir1 and ic0 < ic1:
        out[:, :, ir0 - r0:ir1 - r0, ic0 - c0:ic1 - c0] = x[:, :, ir0:ir1, ic0:ic1]
    return out


def window_view(xs: np.ndarray, *, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
                out_hw: tuple[int, int]) -> np.ndarray:
    """Read-only strided view ``(N, C, kh, kw, Ho, Wo)`` of a slab whose window (0, 0) starts at its origin:
    ``view[n, c, i, j, oh, ow] == xs[n, c, oh*sh + i*dh, ow*sw + j*dw]``."""
    n, c = xs.shape[:2]
    s_n, s_c, s_h, s_w = xs.strides
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    return as_strided(xs, shape=(n, c, kh, kw, *out_hw),
                      strides=(s_n, s_c, dh * s_h, dw * s_w, sh * s_h, sw * s_w), writeable=False)


def window_chunks(x: np.ndarray, *, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
                  pad: tuple[int, int], out_hw: tuple[int, int], value: float = 0.0, extra_per_output: int = 0,
                  budget: int | None = None) -> Iterator[tuple[slice, slice, slice, np.ndarray]]:
    """Yield ``(batch, rows, cols, view)`` blocks covering the (N, Ho, Wo) output grid; ``view`` is the
    ``(nb, C, kh, kw, rb, cb)`` window view of just the padded input slab those outputs read.

    ``extra_per_output``: bytes of the caller's own per-output temporaries (im2col column + GEMM result), so that a
    block's slab plus the caller's temporaries stay within the chunk budget.
    """
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = kernel, stride, dilation, pad
    ho, wo = out_hw
    if ho <= 0 or wo <= 0:
        raise ValueError(f"empty output {out_hw}")
    ext_h, ext_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    # Upper bound of the slab bytes per output position (a block of rb x cb outputs reads
    # ((rb-1)*sh + ext_h) x ((cb-1)*sw + ext_w) input positions per channel).
    slab_per_output = x.itemsize * c * (sh + ext_h) * (sw + ext_w)
    for ns, rs, cs in plan_chunks(n, ho, wo, slab_per_output + extra_per_output, budget=budget):
        rb, cb = rs.stop - rs.start, cs.stop - cs.start
        r0, c0 = rs.start * sh - ph, cs.start * sw - pw
        xs = slab(x[ns], (r0, r0 + (rb - 1) * sh + ext_h), (c0, c0 + (cb - 1) * sw + ext_w), value=value,
                  buffer="slab")
        yield ns, rs, cs, window_view(xs, kernel=kernel, stride=stride, dilation=dilation, out_hw=(rb, cb))


def plan_chunks(n: int, rows: int, cols: int, bytes_per_elem: int, *,
                budget: int | None = None) -> Iterator[tuple[slice, slice, slice]]:
    """Split an (n, rows, cols) output grid into blocks whose temporaries take at most ``budget`` bytes.

    ``bytes_per_elem`` is what one output position costs in temporaries (e.g. im2col column + matmul result).
    Whole images are grouped when they fit; otherwise one image is split by rows, and a single row by columns.
    """
    budget = min(CHUNK_BYTES if budget is None else budget, MAX_TEMP_BYTES)
    per_row = cols * bytes_per_elem
    per_image = rows * per_row
    if per_image <= budget:
        nb = max(1, budget // max(per_image, 1))
        for n0 in range(0, n, nb):
            yield slice(n0, min(n, n0 + nb)), slice(0, rows), slice(0, cols)
        return
    if per_row <= budget:
        rb = max(1, budget // per_row)
        for n0 in range(n):
            for r0 in range(0, rows, rb):
                yield slice(n0, n0 + 1), slice(r0, min(rows, r0 + rb)), slice(0, cols)
        return
    cb = max(1, budget // bytes_per_elem)
    for n0 in range(n):
        for r0 in range(rows):
            for c0 in range(0, cols, cb):
                yield slice(n0, n0 + 1), slice(r0, r0 + 1), slice(c0, min(cols, c0 + cb))


def conv2d(x: np.ndarray, w: np.ndarray, *, stride: tuple[int, int], pad: tuple[int, int],
           dilation: tuple[int, int], group: int, out_hw: tuple[int, int],
           budget: int | None = None) -> np.ndarray:
    """Caffe's convolution as im2col + batched GEMM (``base_conv_layer.cpp``: ``W_g @ col_g`` per group).

    ``x`` (N, C, H, W), ``w`` (M, C/group, kh, kw), both of the same dtype; zero padding; returns (N, M, Ho, Wo).
    Groups are contiguous channel blocks of input and output.
    """
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    ho, wo = out_hw
    g = group
    mg = m // g
    kg = cg * kh * kw
    wmat = w.reshape(g, mg, kg)
    out = np.empty((n, m, ho, wo), dtype=np.result_type(x.dtype, w.dtype))
    if (kh, kw) == (1, 1) and stride == (1, 1) and pad == (0, 0) and (ho, wo) == (h, wd):
        # 1x1 convolution: the image itself is the column buffer, no copy.
        cols_all = x.reshape(n, g, cg, h * wd)
        for ns, _, _ in plan_chunks(n, 1, h * wd, mg * g * out.itemsize, budget=budget):
            np.matmul(wmat, cols_all[ns], out=out[ns].reshape(-1, g, mg, h * wd))
        return out
    # Window blocks (nb, C, kh, kw, rb, cb) -> grouped columns (nb, g, cg*kh*kw, rb*cb): C order matches w's
    # (cg, kh, kw) flattening.
    for ns, rs, cs, blk in window_chunks(x, kernel=(kh, kw), stride=stride, dilation=dilation, pad=pad,
                                         out_hw=out_hw, value=0.0, extra_per_output=(c * kh * kw + m) * out.itemsize,
                                         budget=budget):
        nb, rb, cb = blk.shape[0], blk.shape[4], blk.shape[5]
        cols = scratch("cols", blk.shape, x.dtype)
        np.copyto(cols, blk)
        cols = cols.reshape(nb, g, kg, rb * cb)
        if rb == ho and cb == wo:  # whole images: the GEMM writes straight into the output
            np.matmul(wmat, cols, out=out[ns].reshape(nb, g, mg, ho * wo))
        else:
            out[ns, :, rs, cs] = np.matmul(wmat, cols).reshape(nb, m, rb, cb)
    return out


def _col2im_phased(acc6: np.ndarray, cols8: np.ndarray, ns: slice, rs: slice, cs: slice,
                   stride: tuple[int, int]) -> None:
    """Tap (i, j) = (p + sh*a, q + sw*b) of input (ih, iw) lands on ((ih + a)*sh + p, (iw + b)*sw + q): for each
    (a, b) all sh*sw phases (p, q) are one shifted block add on the (Hc, sh, Wc, sw) view of acc.  For one output
    pixel the terms still arrive in increasing (i, j), as in :func:`_col2im_taps` (same sums)."""
    rb, cb = cols8.shape[6], cols8.shape[7]
    for a in range(cols8.shape[2]):
        for b in range(cols8.shape[4]):
            acc6[ns, :, rs.start + a:rs.start + a + rb, :, cs.start + b:cs.start + b + cb, :] += \
                cols8[:, :, a, :, b].transpose(0, 1, 4, 2, 5, 3)


def _col2im_taps(acc: np.ndarray, cols: np.ndarray, ns: slice, rs: slice, cs: slice, stride: tuple[int, int],
                 dilation: tuple[int, int]) -> None:
    """col2im one kernel tap at a time: tap (i, j) of the block's inputs adds to a strided output window."""
    (sh, sw), (dh, dw) = stride, dilation
    kh, kw, rb, cb = cols.shape[2:]
    for i in range(kh):
        top = rs.start * sh + i * dh
        rows = slice(top, top + (rb - 1) * sh + 1, sh)
        for j in range(kw):
            left = cs.start * sw + j * dw
            colsl = slice(left, left + (cb - 1) * sw + 1, sw)
            acc[ns, :, rows, colsl] += cols[:, :, i, j]


def conv_transpose2d(x: np.ndarray, w: np.ndarray, *, stride: tuple[int, int], pad: tuple[int, int],
                     dilation: tuple[int, int], group: int, out_hw: tuple[int, int],
                     budget: int | None = None) -> np.ndarray:
    """Caffe's deconvolution (``deconv_layer.cpp``: the convolution's backward pass): GEMM ``W_g^T @ x_g`` then col2im.

    ``x`` (N, C, H, W), ``w`` (C, M/group, kh, kw) (Caffe's reversed layout), returns (N, M, Ho, Wo).  Input pixel
    ``(ih, iw)`` adds ``w[c, m, i, j] * x`` to output ``(ih*sh - ph + i*dh, iw*sw - pw + j*dw)``; contributions that
    fall in the padding are dropped (col2im skips them).  No kernel flip.
    """
    n, c, h, wd = x.shape
    cw, mg, kh, kw = w.shape
    g = group
    cg = c // g
    m = mg * g
    sh, sw = stride
    dh, dw = dilation
    ph, pw = pad
    ho, wo = out_hw
    dt = np.result_type(x.dtype, w.dtype)
    # Full (uncropped) scatter target: every contribution lands inside it.
    full_h = sh * (h - 1) + dh * (kh - 1) + 1
    full_w = sw * (wd - 1) + dw * (kw - 1) + 1
    full_h = max(full_h, ph + ho)
    full_w = max(full_w, pw + wo)
    acc = np.zeros((n, m, full_h, full_w), dtype=dt)
    # (g, cg, mg*kh*kw) -> (g, mg*kh*kw, cg)
    wt = np.ascontiguousarray(w.reshape(g, cg, mg * kh * kw).transpose(0, 2, 1))
    xg = x.reshape(n, g, cg, h, wd)
    per_elem = (m * kh * kw + c) * acc.itemsize  # columns + the contiguous input block
    # col2im one tap at a time is kh*kw NumPy calls per chunk (4096 for FCN's 64x64 stride-32 upsampling); when the
    # stride divides the (undilated) kernel, the taps are added stride-phase blocks at a time instead.
    phased = (dh, dw) == (1, 1) and (sh, sw) != (1, 1) and kh % sh == 0 and kw % sw == 0
    if phased:
        assert (full_h, full_w) == (sh * (h - 1 + kh // sh), sw * (wd - 1 + kw // sw))
        acc6 = acc.reshape(n, m, full_h // sh, sh, full_w // sw, sw)
    for ns, rs, cs in plan_chunks(n, h, wd, per_elem, budget=budget):
        blk = xg[ns, :, :, rs, cs]
        nb, rb, cb = blk.shape[0], blk.shape[3], blk.shape[4]
        xb = scratch("deconv_in", blk.shape, x.dtype)
        np.copyto(xb, blk)
        cols = scratch("cols", (nb, g, mg * kh * kw, rb * cb), dt)
        np.matmul(wt, xb.reshape(nb, g, cg, rb * cb), out=cols)
        if phased:
            _col2im_phased(acc6, cols.reshape(nb, m, kh // sh, sh, kw // sw, sw, rb, cb), ns, rs, cs, (sh, sw))
        else:
            _col2im_taps(acc, cols.reshape(nb, m, kh, kw, rb, cb), ns, rs, cs, (sh, sw), (dh, dw))
    if (ph, pw) == (0, 0) and acc.shape[2:] == (ho, wo):
        return acc
    return acc[:, :, ph:ph + ho, pw:pw + wo].copy()  # col2im drops what lands in the padding
