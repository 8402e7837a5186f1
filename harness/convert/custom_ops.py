"""Custom Keras layers for the Caffe layers no standard Keras layer computes exactly (converter part B: neurons,
shape ops, eltwise, reductions, resize, detection).  Every class derives from
:class:`~harness.convert._custom_base.CaffeLayer` and follows the rules written there; part A's classes live in
:mod:`harness.convert.custom_layers`.  Layers whose Caffe output has a different rank than their input take a
``nchw_input`` flag and transpose the NHWC input to Caffe's NCHW order first.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from keras import ops

from ._custom_base import CaffeLayer, register
from ._layout import ops_to_nchw, ops_to_nhwc


# ----------------------------------------------------------------------------------------------------------------
# Element-wise neurons
# ----------------------------------------------------------------------------------------------------------------


@register
class CaffeAbsVal(CaffeLayer):
    """``absval_layer.cpp``: ``top = |bottom|``."""

    def call(self, x):
        return ops.absolute(x)


@register
class CaffeBNLL(CaffeLayer):
    """``bnll_layer.cpp``: ``x > 0 ? x + log(1 + exp(-x)) : log(1 + exp(x))`` = ``max(x, 0) + log1p(exp(-|x|))``
    (Caffe evaluates it in double; the log1p form is the overflow-free float32 equivalent)."""

    def call(self, x):
        return ops.maximum(x, 0.0) + ops.log1p(ops.exp(-ops.absolute(x)))


@register
class CaffePower(CaffeLayer):
    """``power_layer.cpp``: ``top = (shift + scale * x) ^ power``, computed as Caffe does (scale only if != 1, shift
    only if != 0, pow only if power != 1); ``power * scale == 0`` fills ``power == 0 ? 1 : shift ^ power``."""

    _params = ("power", "scale", "shift")

    def __init__(self, power: float = 1.0, scale: float = 1.0, shift: float = 0.0, **kwargs: Any) -> None:
        super().__init__(power=float(power), scale=float(scale), shift=float(shift), **kwargs)

    def call(self, x):
        if self.power * self.scale == 0:
            value = 1.0 if self.power == 0 else float(np.power(np.float32(self.shift), np.float32(self.power)))
            return ops.full_like(x, value)
        y = x
        if self.scale != 1:
            y = y * self.scale
        if self.shift != 0:
            y = y + self.shift
        if self.power != 1:
            y = ops.power(y, self.power)
        return y


@register
class CaffeExp(CaffeLayer):
    """``exp_layer.cpp``: ``top = base ^ (shift + scale * x)`` computed as Caffe does:
    ``inner = scale * (base == -1 ? 1 : ln(base))``, ``outer = shift == 0 ? 1 : (base == -1 ? e^shift : base^shift)``,
    ``top = outer * exp(inner * x)`` (each factor skipped when it is 1)."""

    _params = ("base", "scale", "shift")

    def __init__(self, base: float = -1.0, scale: float = 1.0, shift: float = 0.0, **kwargs: Any) -> None:
        super().__init__(base=float(base), scale=float(scale), shift=float(shift), **kwargs)
        b, s, t = np.float32(self.base), np.float32(self.scale), np.float32(self.shift)
        log_base = np.float32(1) if b == -1 else np.float32(np.log(b))
        self._inner = float(np.float32(log_base * s))
        if t == 0:
            self._outer = 1.0
        else:
            self._outer = float(np.float32(np.exp(t) if b == -1 else np.power(b, t)))

    def call(self, x):
        y = ops.exp(x) if self._inner == 1 else ops.exp(x * self._inner)
        if self._outer != 1:
            y = y * self._outer
        return y


@register
class CaffeLog(CaffeLayer):
    """``log_layer.cpp``: ``top = log_base(shift + scale * x)`` = ``ln(shift + scale * x) * (base == -1 ? 1 :
    1 / ln(base))`` (scale, shift and the base factor each applied only when not neutral, as Caffe does)."""

    _params = ("base", "scale", "shift")

    def __init__(self, base: float = -1.0, scale: float = 1.0, shift: float = 0.0, **kwargs: Any) -> None:
        super().__init__(base=float(base), scale=float(scale), shift=float(shift), **kwargs)
        b = np.float32(self.base)
        self._base_scale = 1.0 if b == -1 else float(np.float32(np.float32(1) / np.float32(np.log(b))))

    def call(self, x):
        y = x
        if self.scale != 1:
            y = y * self.scale
        if self.shift != 0:
            y = y + self.shift
        y = ops.log(y)
        if self._base_scale != 1:
            y = y * self._base_scale
        return y


@register
class CaffeThreshold(CaffeLayer):
    """``threshold_layer.cpp``: ``top = bottom > threshold ? 1 : 0`` (strict)."""

    _params = ("threshold",)

    def __init__(self, threshold: float = 0.0, **kwargs: Any) -> None:
        super().__init__(threshold=float(threshold), **kwargs)

    def call(self, x):
        return ops.cast(ops.greater(x, self.threshold), x.dtype)


@register
class CaffeClip(CaffeLayer):
    """``clip_layer.cpp``: ``top = max(min, min(bottom, max))``."""

    _params = ("min", "max")

    def __init__(self, min: float = 0.0, max: float = 0.0, **kwargs: Any) -> None:  # noqa: A002 - Caffe names
        super().__init__(min=float(min), max=float(max), **kwargs)

    def call(self, x):
        return ops.maximum(ops.minimum(x, self.max), self.min)


@register
class CaffeSwish(CaffeLayer):
    """``swish_layer.cpp``: ``top = x * sigmoid(beta * x)``."""

    _params = ("beta",)

    def __init__(self, beta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(beta=float(beta), **kwargs)

    def call(self, x):
        s = ops.sigmoid(x) if self.beta == 1 else ops.sigmoid(x * self.beta)
        return x * s


# ----------------------------------------------------------------------------------------------------------------
# Shape ops
# ----------------------------------------------------------------------------------------------------------------


@register
class CaffeSlice(CaffeLayer):
    """``slice_layer.cpp``: one output per ``[bounds[i], bounds[i+1])`` range along Keras ``axis``."""

    _params = ("axis", "bounds")

    def __init__(self, axis: int = -1, bounds: Sequence[int] = (), **kwargs: Any) -> None:
        super().__init__(axis=int(axis), bounds=[int(b) for b in bounds], **kwargs)

    def call(self, x):
        rank = len(x.shape)
        outs = []
        for lo, hi in zip(self.bounds[:-1], self.bounds[1:]):
            idx = [slice(None)] * rank
            idx[self.axis] = slice(lo, hi)
            outs.append(x[tuple(idx)])
        return outs


@register
class CaffeSplit(CaffeLayer):
    """``split_layer.cpp``: ``count`` copies of the bottom (one output per top)."""

    _params = ("count",)

    def __init__(self, count: int = 2, **kwargs: Any) -> None:
        super().__init__(count=int(count), **kwargs)

    def call(self, x):
        return [ops.copy(x) for _ in range(self.count)]


@register
class CaffeReshape(CaffeLayer):
    """A reshape that may change the batch axis (Caffe's Reshape/Flatten with ``axis`` 0): ``shape`` is the full
    target shape, batch included."""

    _params = ("shape",)

    def __init__(self, shape: Sequence[int] = (), **kwargs: Any) -> None:
        super().__init__(shape=[int(d) for d in shape], **kwargs)

    def call(self, x):
        return ops.reshape(x, tuple(self.shape))

    def compute_output_shape(self, input_shape):
        # Stated, not traced: the target shape is fixed (batch included), and Keras's torch backend infers shapes by
        # running ``call`` on stand-in batch sizes (83, 89), which no fixed shape fits.
        return tuple(self.shape)


@register
class CaffeTranspose(CaffeLayer):
    """A transpose that may move the batch axis (Permute with ``order[0] != 0``); ``perm`` covers every axis."""

    _params = ("perm",)

    def __init__(self, perm: Sequence[int] = (), **kwargs: Any) -> None:
        super().__init__(perm=[int(d) for d in perm], **kwargs)

    def call(self, x):
        return ops.transpose(x, tuple(self.perm))


@register
class CaffeCrop(CaffeLayer):
    """``crop_layer.cpp``: ``top = bottom0[..., o_i : o_i + ref.shape[i], ...]`` on each cropped Keras axis.

    Inputs are ``[bottom0, reference]``; the reference contributes only its shape, as in Caffe.
    """

    _params = ("axes", "offsets")

    def __init__(self, axes: Sequence[int] = (), offsets: Sequence[int] = (), **kwargs: Any) -> None:
        super().__init__(axes=[int(a) for a in axes], offsets=[int(o) for o in offsets], **kwargs)

    def call(self, inputs):
        x, ref = inputs
        rank = len(x.shape)
        idx = [slice(None)] * rank
        for ax, off in zip(self.axes, self.offsets):
            size = ref.shape[ax]
            if size is None:
                size = ops.shape(ref)[ax]
            idx[ax] = slice(off, off + size)
        return x[tuple(idx)]


@register
class CaffeTile(CaffeLayer):
    """``tile_layer.cpp``: the bottom repeated ``tiles`` times along Keras ``axis`` (whole-block repetition)."""

    _params = ("axis", "tiles")

    def __init__(self, axis: int = -1, tiles: int = 1, **kwargs: Any) -> None:
        super().__init__(axis=int(axis), tiles=int(tiles), **kwargs)

    def call(self, x):
        reps = [1] * len(x.shape)
        reps[self.axis] = self.tiles
        return ops.tile(x, reps)


# ----------------------------------------------------------------------------------------------------------------
# Eltwise
# ----------------------------------------------------------------------------------------------------------------


@register
class CaffeEltwiseSum(CaffeLayer):
    """``eltwise_layer.cpp`` SUM with ``coeff``: ``top = 0; top += coeff_i * bottom_i`` in bottom order."""

    _params = ("coeffs",)

    def __init__(self, coeffs: Sequence[float] = (), **kwargs: Any) -> None:
        super().__init__(coeffs=[float(c) for c in coeffs], **kwargs)

    def call(self, inputs):
        y = None
        for c, x in zip(self.coeffs, inputs):
            term = x if c == 1 else x * c
            y = term if y is None else y + term
        return y


@register
class CaffeAxpy(CaffeLayer):
    """Axpy (SENet forks): bottoms ``(a, x, y)`` with ``a`` of shape ``(N, C, 1, 1)``: ``top = a * x + y``."""

    def call(self, inputs):
        a, x, y = inputs
        return a * x + y


# ----------------------------------------------------------------------------------------------------------------
# Reductions
# ----------------------------------------------------------------------------------------------------------------


@register
class CaffeReduction(CaffeLayer):
    """``reduction_layer.cpp``: reduce every axis from ``axis`` to the end; ``top`` keeps the leading axes. ``op`` in
    SUM, ASUM (sum of |x|), SUMSQ (sum of x^2), MEAN (a SUM whose ``coeff`` the converter already divided by the
    reduced count, in float32 as Caffe does); the result is multiplied by ``coeff`` when it is not 1.
    ``nchw_input``: the bottom is a 4-D NHWC tensor, transposed to NCHW first (needed when ``axis >= 2``)."""

    _params = ("op", "axis", "coeff", "nchw_input")

    def __init__(self, op: str = "SUM", axis: int = 0, coeff: float = 1.0, nchw_input: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(op=str(op), axis=int(axis), coeff=float(coeff), nchw_input=bool(nchw_input), **kwargs)

    def call(self, x):
        if self.nchw_input:
            x = ops_to_nchw(x)
        rank = len(x.shape)
        axes = tuple(range(self.axis, rank))
        if self.op == "ASUM":
            x = ops.absolute(x)
        elif self.op == "SUMSQ":
            x = x * x
        y = ops.sum(x, axis=axes) if axes else x
        if self.coeff != 1:
            y = y * self.coeff
        return y


def nonzero_1d(mask):
    """The indices of the true elements of a 1-D boolean ``mask``, ascending, as int32.  Under TensorFlow
    ``tf.where`` and a cast, because ``ops.nonzero`` splits TF's int64 index matrix with ``tf.unstack`` (``tf.Unpack``
    on int64), which LiteRT's builtin operators do not cover (``convert --format tflite`` needs builtins only); the
    same indices on every backend."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.cast(tf.reshape(tf.where(mask), (-1,)), tf.int32)
    (idx,) = ops.nonzero(mask)
    return ops.cast(idx, "int32")


def stable_top_k(x, k: int):
    """The ``k`` largest values along the last axis in descending order and their indices, ties to the *lower* index,
    on every backend.  ``ops.top_k`` is not that everywhere: TensorFlow's ``top_k`` and ``jax.lax.top_k`` keep ties in
    index order, ``torch.topk`` (Keras's torch ``top_k``) does not (measured on torch 2.13 CPU: ``[1, 0, 0, 1, 0]`` comes back
    ``[0, 3, 2, 4, 1]``, the tied zeros out of index order).  A stable ascending ``argsort`` of ``-x`` is stable
    on all three (``tf.argsort`` through its stable top_k, ``jnp.argsort`` and ``torch.argsort(stable=True)``)."""
    idx = ops.argsort(ops.negative(x), axis=-1)[..., :k]
    return ops.take_along_axis(x, idx, axis=-1), idx


@register
class CaffeArgMax(CaffeLayer):
    """``argmax_layer.cpp``: the ``top_k`` largest values of each slice, ordered by (value, index) descending, so a
    tie goes to the *higher* index (``std::greater`` on (value, index) pairs).

    With ``axis`` (a Keras axis): indices (or values when ``out_max_val``) replace that axis, size ``top_k``.
    Without: each instance is flattened in Caffe's order (``nchw_input`` transposes an NHWC input first) and the
    Caffe top is ``(N, 1 or 2, top_k, 1...)`` (indices, then values when ``out_max_val``); ``out_rank`` is its rank
    and ``nhwc_output`` says whether that top is 4-D (returned NHWC).
    """

    _params = ("axis", "top_k", "out_max_val", "nchw_input", "out_rank", "nhwc_output")

    def __init__(self, axis: int | None = None, top_k: int = 1, out_max_val: bool = False,
                 nchw_input: bool = False, out_rank: int = 3, nhwc_output: bool = False, **kwargs: Any) -> None:
        super().__init__(axis=None if axis is None else int(axis), top_k=int(top_k), out_max_val=bool(out_max_val),
                         nchw_input=bool(nchw_input), out_rank=int(out_rank), nhwc_output=bool(nhwc_output),
                         **kwargs)

    @staticmethod
    def _topk_last(x, k):
        """Top-k along the last axis with ties to the higher index: top_k on the reversed axis."""
        n = x.shape[-1]
        vals, idx = stable_top_k(ops.flip(x, axis=-1), k)
        return vals, (n - 1) - idx

    def call(self, x):
        if self.axis is not None:
            ax = self.axis % len(x.shape)
            xt = ops.moveaxis(x, ax, -1)
            vals, idx = self._topk_last(xt, self.top_k)
            out = vals if self.out_max_val else ops.cast(idx, x.dtype)
            return ops.moveaxis(out, -1, ax)
        if self.nchw_input:
            x = ops_to_nchw(x)
        flat = ops.reshape(x, (-1, int(np.prod(x.shape[1:]))))
        vals, idx = self._topk_last(flat, self.top_k)
        idx = ops.cast(idx, x.dtype)
        if self.out_max_val:
            out = ops.stack([idx, vals], axis=1)  # (N, 2, k)
        else:
            out = ops.expand_dims(idx, 1)  # (N, 1, k)
        out = ops.reshape(out, (-1,) + tuple(out.shape[1:]) + (1,) * (self.out_rank - 3))
        if self.nhwc_output:
            out = ops_to_nhwc(out)
        return out


# ----------------------------------------------------------------------------------------------------------------
# Resize
# ----------------------------------------------------------------------------------------------------------------


def _interp_axis(size_in_eff: int, size_out: int, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """deeplab ``caffe_cpu_interp2`` along one axis, in float32 as Caffe computes it: source rows ``i0``,
    ``i1 = i0 + (i0 < in-1)``, weights ``l0 = 1 - l1``, ``l1 = r*o - floor``, with ``r = (in-1)/(out-1)``."""
    r = np.float32(size_in_eff - 1) / np.float32(size_out - 1) if size_out > 1 else np.float32(0)
    pos = np.float32(r) * np.arange(size_out, dtype=np.float32)
    i0 = pos.astype(np.int64)  # C++ float -> int truncation (pos >= 0)
    step = (i0 < size_in_eff - 1).astype(np.int64)
    l1 = (pos - i0.astype(np.float32)).astype(np.float32)
    l0 = (np.float32(1) - l1).astype(np.float32)
    return i0 + start, i0 + step + start, l0, l1


@register
class CaffeInterp(CaffeLayer):
    """deeplab/PSPNet ``Interp``: bilinear, align-corners resize of the rows ``[start, start + in_eff)`` (``start =
    -pad_beg``) of an NHWC input to ``(height, width)`` with Caffe's float32 weights and blend order
    ``h0*(w0*a + w1*b) + h1*(w0*c + w1*d)``; equal sizes copy the region."""

    _params = ("height", "width", "in_eff_h", "in_eff_w", "start")

    def __init__(self, height: int = 1, width: int = 1, in_eff_h: int = 1, in_eff_w: int = 1, start: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(height=int(height), width=int(width), in_eff_h=int(in_eff_h), in_eff_w=int(in_eff_w),
                         start=int(start), **kwargs)

    def call(self, x):
        s = self.start
        if self.in_eff_h == self.height and self.in_eff_w == self.width:
            return x[:, s:s + self.height, s:s + self.width, :]
        h0, h1, lh0, lh1 = _interp_axis(self.in_eff_h, self.height, s)
        w0, w1, lw0, lw1 = _interp_axis(self.in_eff_w, self.width, s)
        dt = x.dtype
        lw0 = ops.reshape(ops.convert_to_tensor(lw0, dtype=dt), (1, 1, -1, 1))
        lw1 = ops.reshape(ops.convert_to_tensor(lw1, dtype=dt), (1, 1, -1, 1))
        lh0 = ops.reshape(ops.convert_to_tensor(lh0, dtype=dt), (1, -1, 1, 1))
        lh1 = ops.reshape(ops.convert_to_tensor(lh1, dtype=dt), (1, -1, 1, 1))
        top = ops.take(x, ops.convert_to_tensor(h0, dtype="int32"), axis=1)
        bot = ops.take(x, ops.convert_to_tensor(h1, dtype="int32"), axis=1)
        w0t = ops.convert_to_tensor(w0, dtype="int32")
        w1t = ops.convert_to_tensor(w1, dtype="int32")
        a, b = ops.take(top, w0t, axis=2), ops.take(top, w1t, axis=2)
        c, d = ops.take(bot, w0t, axis=2), ops.take(bot, w1t, axis=2)
        return lh0 * (lw0 * a + lw1 * b) + lh1 * (lw0 * c + lw1 * d)


# ----------------------------------------------------------------------------------------------------------------
# Detection (SSD)
# ----------------------------------------------------------------------------------------------------------------


def prior_boxes(*, layer_h: int, layer_w: int, img_h: int, img_w: int, min_sizes: Sequence[float],
                max_sizes: Sequence[float], aspect_ratios: Sequence[float], flip: bool, clip: bool,
                variance: Sequence[float], step_h: float, step_w: float, offset: float) -> np.ndarray:
    """SSD ``prior_box_layer.cpp`` forward: a ``(1, 2, H*W*P*4)`` float32 array (boxes, then variances).

    Aspect ratios: ``[1]`` then each given ratio not within 1e-6 of one already listed (and ``1/ar`` when ``flip``).
    Per cell ``(h, w)`` (row-major), per min size ``s`` (truncated to int as the fork does): the ``s x s`` box, then
    ``sqrt(s * max_s)`` when max sizes are given, then ``s*sqrt(ar) x s/sqrt(ar)`` for each ratio != 1.  Centre
    ``((w + offset) * step_w, (h + offset) * step_h)``; corners divided by the image size; ``clip`` to [0, 1].
    Step 0 means ``img / layer``.
    """
    ars = [1.0]
    for ar in aspect_ratios:
        ar = float(np.float32(ar))
        if any(abs(ar - a) < 1e-6 for a in ars):
            continue
        ars.append(ar)
        if flip:
            ars.append(float(np.float32(1.0 / ar)))
    if step_h == 0 or step_w == 0:
        sw = float(np.float32(np.float32(img_w) / np.float32(layer_w)))
        sh = float(np.float32(np.float32(img_h) / np.float32(layer_h)))
    else:
        sw, sh = float(np.float32(step_w)), float(np.float32(step_h))
    off = np.float32(offset)
    sizes = []  # (width, height) of each prior of one cell, in Caffe's order
    for si, ms in enumerate(min_sizes):
        s = int(np.float32(ms))
        sizes.append((float(s), float(s)))
        if max_sizes:
            m = int(np.float32(max_sizes[si]))
            side = float(np.float32(math.sqrt(s * m)))
            sizes.append((side, side))
        for ar in ars:
            if abs(ar - 1.0) < 1e-6:
                continue
            r = math.sqrt(ar)
            sizes.append((float(np.float32(s * r)), float(np.float32(s / r))))
    bw = np.array([z[0] for z in sizes], dtype=np.float64)[None, None, :]
    bh = np.array([z[1] for z in sizes], dtype=np.float64)[None, None, :]
    # centres in float32 as Caffe computes them; corners in double, then stored as float32
    cx = ((np.arange(layer_w, dtype=np.float32) + off) * np.float32(sw)).astype(np.float64)[None, :, None]
    cy = ((np.arange(layer_h, dtype=np.float32) + off) * np.float32(sh)).astype(np.float64)[:, None, None]
    boxes = np.stack(np.broadcast_arrays((cx - bw / 2.0) / img_w, (cy - bh / 2.0) / img_h,
                                         (cx + bw / 2.0) / img_w, (cy + bh / 2.0) / img_h), axis=-1)  # (H, W, P, 4)
    out = np.asarray(boxes, dtype=np.float32).reshape(-1)
    if clip:
        out = np.minimum(np.maximum(out, np.float32(0)), np.float32(1))
    var = np.asarray(variance if variance else [0.1], dtype=np.float32)
    var_plane = np.broadcast_to(var if var.size == 4 else np.repeat(var, 4), (out.size // 4, 4)).reshape(-1)
    return np.stack([out, var_plane])[None].astype(np.float32)


@register
class CaffePriorBox(CaffeLayer):
    """SSD PriorBox: a constant ``(1, 2, H*W*P*4)`` tensor in Caffe order that depends only on the shapes of its two
    NHWC inputs ``[feature, image]`` (``img_h``/``img_w`` 0: take the image input's size). See :func:`prior_boxes`."""

    _params = ("min_sizes", "max_sizes", "aspect_ratios", "flip", "clip", "variance", "img_h", "img_w", "step_h",
               "step_w", "offset")

    def __init__(self, min_sizes: Sequence[float] = (), max_sizes: Sequence[float] = (),
                 aspect_ratios: Sequence[float] = (), flip: bool = True, clip: bool = False,
                 variance: Sequence[float] = (), img_h: int = 0, img_w: int = 0, step_h: float = 0.0,
                 step_w: float = 0.0, offset: float = 0.5, **kwargs: Any) -> None:
        super().__init__(min_sizes=[float(v) for v in min_sizes], max_sizes=[float(v) for v in max_sizes],
                         aspect_ratios=[float(v) for v in aspect_ratios], flip=bool(flip), clip=bool(clip),
                         variance=[float(v) for v in variance], img_h=int(img_h), img_w=int(img_w),
                         step_h=float(step_h), step_w=float(step_w), offset=float(offset), **kwargs)

    def _priors(self, feat_shape, img_shape) -> np.ndarray:
        key = (int(feat_shape[1]), int(feat_shape[2]), img_shape[1], img_shape[2])
        cache = self.__dict__.setdefault("_prior_cache", {})
        if key not in cache:
            cache[key] = self._compute_priors(feat_shape, img_shape)
        return cache[key]

    def _compute_priors(self, feat_shape, img_shape) -> np.ndarray:
        img_h, img_w = (self.img_h, self.img_w) if self.img_h and self.img_w else (img_shape[1], img_shape[2])
        return prior_boxes(layer_h=int(feat_shape[1]), layer_w=int(feat_shape[2]), img_h=int(img_h),
                           img_w=int(img_w), min_sizes=self.min_sizes, max_sizes=self.max_sizes,
                           aspect_ratios=self.aspect_ratios, flip=self.flip, clip=self.clip,
                           variance=self.variance, step_h=self.step_h, step_w=self.step_w, offset=self.offset)

    def compute_output_shape(self, input_shapes):
        feat, img = input_shapes
        return tuple(self._priors(feat, img).shape)

    def call(self, inputs):
        feat, img = inputs
        return ops.convert_to_tensor(self._priors(feat.shape, img.shape), dtype=self.compute_dtype)



def _box_size(b):
    """``BBoxSize`` (normalised): ``(xmax - xmin) * (ymax - ymin)``, 0 for an inverted box."""
    w = b[..., 2] - b[..., 0]
    h = b[..., 3] - b[..., 1]
    return ops.where(ops.logical_or(w < 0, h < 0), ops.zeros_like(w), w * h)


def _jaccard(a, b, size_a, size_b):
    """``JaccardOverlap`` (normalised boxes, broadcasting): 0 unless both intersection sides are > 0 (which also
    covers Caffe's disjoint early return), else ``inter / (size_a + size_b - inter)``."""
    iw = ops.minimum(a[..., 2], b[..., 2]) - ops.maximum(a[..., 0], b[..., 0])
    ih = ops.minimum(a[..., 3], b[..., 3]) - ops.maximum(a[..., 1], b[..., 1])
    ok = ops.logical_and(iw > 0, ih > 0)
    inter = ops.where(ok, iw * ih, ops.zeros_like(iw))
    denom = size_a + size_b - inter
    return ops.where(ok, inter / ops.where(ok, denom, ops.ones_like(denom)), ops.zeros_like(inter))


@register
class CaffeDetectionOutput(CaffeLayer):
    """SSD ``detection_output_layer.cpp`` (+ ``bbox_util.cpp``) with ``keras.ops``; inputs ``[loc, conf, prior]``.

    Per image: decode every prior's box (``code_type`` CORNER / CENTER_SIZE / CORNER_SIZE, variances from the prior
    blob or 1 when ``variance_encoded_in_target``, no clipping); per class ``c != background_label_id``:
    ApplyNMSFast -- candidates with ``score > confidence_threshold`` in stable descending score order, cut to
    ``top_k``, a candidate is kept when its Jaccard overlap with every kept box is ``<= threshold`` (``threshold *=
    eta`` after each keep while ``eta < 1`` and ``threshold > 0.5``); then, when more than ``keep_top_k`` (> -1)
    survive over all classes, the ``keep_top_k`` best scores.  Rows ``[image, label, score, xmin, ymin, xmax, ymax]``
    ordered by image, label, descending score; no detection at all: one row ``[i, -1, ..., -1]`` per image.

    The Caffe top ``(1, 1, D, 7)`` has a data-dependent ``D``; it is returned NHWC as ``(1, D, 7, 1)``.
    ``*_nchw`` flags: that input is a 4-D NHWC tensor to read in Caffe's order.  Score ties are ordered by prior
    index (Caffe's stable sort in NMS; its keep_top_k sort is unstable, so ties there are unspecified in Caffe).
    """

    _params = ("num_classes", "share_location", "background_label_id", "code_type", "variance_encoded_in_target",
               "keep_top_k", "confidence_threshold", "nms_threshold", "top_k", "eta", "num_priors", "loc_nchw",
               "conf_nchw", "prior_nchw")
    FULL_IOU_LIMIT = 1 << 24  # classes x K x K overlaps precomputed at most (else one row per NMS step)

    def __init__(self, num_classes: int = 1, share_location: bool = True, background_label_id: int = 0,
                 code_type: str = "CORNER", variance_encoded_in_target: bool = False, keep_top_k: int = -1,
                 confidence_threshold: float = -3.4028234663852886e38, nms_threshold: float = 0.3, top_k: int = -1,
                 eta: float = 1.0, num_priors: int = 1, loc_nchw: bool = False, conf_nchw: bool = False,
                 prior_nchw: bool = False, **kwargs: Any) -> None:
        super().__init__(num_classes=int(num_classes), share_location=bool(share_location),
                         background_label_id=int(background_label_id), code_type=str(code_type),
                         variance_encoded_in_target=bool(variance_encoded_in_target), keep_top_k=int(keep_top_k),
                         confidence_threshold=float(confidence_threshold), nms_threshold=float(nms_threshold),
                         top_k=int(top_k), eta=float(eta), num_priors=int(num_priors), loc_nchw=bool(loc_nchw),
                         conf_nchw=bool(conf_nchw), prior_nchw=bool(prior_nchw), **kwargs)
        # The row count D depends on the data (``ops.nonzero``): no XLA program can have it.  Keras then resolves a
        # model's ``jit_compile="auto"`` to False, so ``predict`` on JAX runs eagerly instead of failing under
        # ``jax.jit`` (ConcretizationTypeError), and TensorFlow never tries XLA on a GPU.
        self.supports_jit = False

    def compute_output_shape(self, input_shapes):
        return (1, None, 7, 1)

    def _decode(self, loc, pb, pv):
        """``DecodeBBox``: loc ``(N, P, L, 4)``, prior boxes/variances ``(P, 4)`` -> ``(N, P, L, 4)``."""
        pb = pb[None, :, None, :]
        pv = ops.ones_like(pb) if self.variance_encoded_in_target else pv[None, :, None, :]
        pw = pb[..., 2] - pb[..., 0]
        ph = pb[..., 3] - pb[..., 1]
        if self.code_type == "CORNER":
            return pb + pv * loc
        if self.code_type == "CORNER_SIZE":
            return pb + pv * loc * ops.stack([pw, ph, pw, ph], axis=-1)
        pcx = (pb[..., 0] + pb[..., 2]) / 2.0
        pcy = (pb[..., 1] + pb[..., 3]) / 2.0
        cx = pv[..., 0] * loc[..., 0] * pw + pcx
        cy = pv[..., 1] * loc[..., 1] * ph + pcy
        w = ops.exp(pv[..., 2] * loc[..., 2]) * pw
        h = ops.exp(pv[..., 3] * loc[..., 3]) * ph
        return ops.stack([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0], axis=-1)

    def call(self, inputs):
        b_sorted, s_sorted, valid, cls_idx, k = self._candidates(*inputs)
        n = len(self._classes()) * k
        flat_keep = self._keep_top_k(ops.reshape(self._nms(b_sorted, valid, k), (-1, n)), s_sorted, n)
        return self._rows(flat_keep, b_sorted, s_sorted, cls_idx, k, n, b_sorted.dtype)

    def _classes(self) -> list[int]:
        return [c for c in range(self.num_classes) if c != self.background_label_id]

    def _candidates(self, loc, conf, prior):
        """Decoded boxes per class, sorted by descending score and cut to ``top_k``: boxes ``(N, Cc, K, 4)``, scores
        and the ``score > confidence_threshold`` mask ``(N, Cc, K)``, the class ids and ``K``."""
        if self.loc_nchw:
            loc = ops_to_nchw(loc)
        if self.conf_nchw:
            conf = ops_to_nchw(conf)
        if self.prior_nchw:
            prior = ops_to_nchw(prior)
        p_count, c_count = self.num_priors, self.num_classes
        n_loc = 1 if self.share_location else c_count
        loc = ops.reshape(loc, (-1, p_count, n_loc, 4))
        conf = ops.reshape(conf, (-1, p_count, c_count))
        prior = ops.reshape(prior, (2, p_count, 4))
        decoded = self._decode(loc, prior[0], prior[1])  # (N, P, L, 4)
        classes = self._classes()
        cls_idx = ops.convert_to_tensor(np.asarray(classes, dtype=np.int32))
        scores = ops.transpose(ops.take(conf, cls_idx, axis=2), (0, 2, 1))  # (N, Cc, P)
        if self.share_location:
            boxes = ops.broadcast_to(decoded[:, None, :, 0, :],
                                     (ops.shape(decoded)[0], len(classes), p_count, 4))  # (N, Cc, P, 4)
        else:
            boxes = ops.transpose(ops.take(decoded, cls_idx, axis=2), (0, 2, 1, 3))
        k = p_count if self.top_k < 0 else min(self.top_k, p_count)
        s_sorted, order = stable_top_k(scores, k)  # ties keep the lower prior index first (Caffe's stable sort)
        valid = s_sorted > self.confidence_threshold
        b_sorted = ops.take_along_axis(boxes, ops.expand_dims(order, -1), axis=2)  # (N, Cc, K, 4)
        return b_sorted, s_sorted, valid, cls_idx, k

    def _nms(self, b_sorted, valid, k):
        """ApplyNMSFast per image and class: the kept mask ``(N, Cc, K)``."""
        sizes = _box_size(b_sorted)  # (N, Cc, K)
        positions = ops.arange(k, dtype="int32")
        eta = self.eta
        # The (Cc, K, K) overlap matrix is computed once when small (SSD: 20 x 400 x 400), else row by row.
        full = len(self._classes()) * k * k <= self.FULL_IOU_LIMIT
        if full:
            iou_all = _jaccard(b_sorted[:, :, :, None, :], b_sorted[:, :, None, :, :], sizes[:, :, :, None],
                               sizes[:, :, None, :])  # (N, Cc, K, K)

        def body(j, state):
            keep, thr = state
            if full:
                iou = ops.take(iou_all, j, axis=2)  # (N, Cc, K)
            else:
                iou = _jaccard(ops.take(b_sorted, j, axis=2)[:, :, None, :], b_sorted,
                               ops.take(sizes, j, axis=2)[:, :, None], sizes)
            suppressed = ops.any(ops.logical_and(keep, iou > thr[..., None]), axis=-1)
            kj = ops.logical_and(ops.take(valid, j, axis=2), ops.logical_not(suppressed))  # (N, Cc)
            keep = ops.where(ops.equal(positions, j), kj[..., None], keep)
            if eta < 1:
                thr = ops.where(ops.logical_and(kj, thr > 0.5), thr * eta, thr)
            return keep, thr

        keep0 = ops.zeros_like(valid)
        thr0 = ops.full(ops.shape(valid)[:2], self.nms_threshold, dtype="float32")
        keep, _ = ops.fori_loop(0, k, body, (keep0, thr0))
        return keep

    def _keep_top_k(self, flat_keep, s_sorted, n):
        """When more than ``keep_top_k`` (> -1) of the ``n`` candidates of an image survive, only its ``keep_top_k``
        best scores."""
        if not (self.keep_top_k > -1 and self.keep_top_k < n):
            return flat_keep
        total = ops.sum(ops.cast(flat_keep, "int32"), axis=1)  # (N,)
        flat_s = ops.where(flat_keep, ops.reshape(s_sorted, (-1, n)),
                           ops.full_like(ops.reshape(s_sorted, (-1, n)), -np.inf))
        if self.keep_top_k == 0:
            chosen = ops.zeros_like(flat_keep)
        else:
            _, sel = stable_top_k(flat_s, self.keep_top_k)
            chosen = ops.any(ops.equal(sel[:, :, None], ops.arange(n, dtype=sel.dtype)[None, None, :]), axis=1)
        return ops.where((total > self.keep_top_k)[:, None], ops.logical_and(flat_keep, chosen), flat_keep)

    @staticmethod
    def _rows(flat_keep, b_sorted, s_sorted, cls_idx, k, n, dt):
        """The kept boxes as rows ``[image, label, score, box]``; no detection at all: ``[i, -1, ...]`` per image."""
        flat_index = nonzero_1d(ops.reshape(flat_keep, (-1,)))  # row-major: image, then class, then rank
        img, pos = flat_index // n, flat_index % n
        cls_of = ops.take(cls_idx, pos // k)
        score = ops.take(ops.reshape(s_sorted, (-1,)), flat_index)
        box = ops.take(ops.reshape(b_sorted, (-1, 4)), flat_index, axis=0)
        rows = ops.concatenate([ops.cast(ops.stack([img, cls_of], axis=1), dt), score[:, None], box], axis=1)
        n_img = ops.shape(flat_keep)[0]
        none_found = ops.equal(ops.sum(ops.cast(flat_keep, "int32")), 0)
        fake_img = nonzero_1d(ops.logical_and(ops.ones((n_img,), dtype="bool"), none_found))
        fake = ops.concatenate([ops.cast(fake_img, dt)[:, None], -ops.ones((ops.shape(fake_img)[0], 6), dtype=dt)],
                               axis=1)
        out = ops.concatenate([rows, fake], axis=0)  # (D, 7)
        return ops.reshape(out, (1, -1, 7, 1))


__all__ = [name for name in dir() if name.startswith("Caffe") and name != "CaffeLayer"] + ["prior_boxes",
                                                                                          "stable_top_k", "nonzero_1d"]
