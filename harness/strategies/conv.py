"""Convolution geometry (:class:`ConvParams`, :func:`conv_params`) and the Convolution, ConvolutionDepthwise,
Deconvolution cases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from hypothesis import strategies as st

from ..catalogue import traits
from ._arrays import (Limits, _check_int, _choice, _composite, _data, _distinct, _layer_case, _normal, _pick, _rng,
                      _weights)
from ._render import Items, LayerCase, LayerDef
from .registry import _case


# ----------------------------------------------------------------------------------------------------------------------
# Convolution and pooling geometry
# ----------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConvParams:
    """2-D convolution geometry (Caffe's fields) and how the prototxt spells it."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    dilation: tuple[int, int]
    spelling: tuple[str, str, str, str] = ("pair", "pair", "pair", "pair")  # kernel, stride, pad, dilation

    def extent(self, axis: int) -> int:
        """The dilated kernel's extent ``d*(k-1)+1`` along axis 0 (H) or 1 (W)."""
        return self.dilation[axis] * (self.kernel[axis] - 1) + 1

    def conv_out(self, h: int, w: int) -> tuple[int, int]:
        """Caffe: ``(H + 2p - (d(k-1)+1)) / s + 1`` (integer floor)."""
        return tuple((x + 2 * self.pad[a] - self.extent(a)) // self.stride[a] + 1  # type: ignore[return-value]
                     for a, x in enumerate((h, w)))

    def deconv_out(self, h: int, w: int) -> tuple[int, int]:
        """Caffe: ``s(H-1) + d(k-1)+1 - 2p``."""
        return tuple(self.stride[a] * (x - 1) + self.extent(a) - 2 * self.pad[a]  # type: ignore[return-value]
                     for a, x in enumerate((h, w)))

    def items(self) -> Items:
        out: Items = []
        for (name, hw, default), how in zip(
            (("kernel", self.kernel, None), ("stride", self.stride, 1), ("pad", self.pad, 0),
             ("dilation", self.dilation, 1)), self.spelling,
        ):
            h, w = hw
            if how == "omit" and h == w == default:
                continue
            if name == "dilation" or how == "repeated":
                rep = "kernel_size" if name == "kernel" else name
                out += [(rep, h)] if h == w else [(rep, h), (rep, w)]
            elif how == "hw":
                out += [(f"{name}_h", h), (f"{name}_w", w)]
            else:  # "pair": the scalar spelling when square, else _h/_w
                if h == w:
                    out.append(("kernel_size" if name == "kernel" else name, h))
                else:
                    out += [(f"{name}_h", h), (f"{name}_w", w)]
        return out


def _conv_params_inner(draw, max_kernel: int, max_stride: int, max_dilation: int, max_side: int) -> ConvParams:
    kmax = min(max_kernel, max_side)
    kernel = _distinct(draw, [(1, kmax), (1, kmax)])
    dil = []
    for k in kernel:
        dmax = max_dilation if k == 1 else max(1, min(max_dilation, (max_side - 1) // (k - 1)))
        dil.append(draw(st.integers(1, dmax)))
    pad = []
    for k in kernel:  # pads up to kernel - 1, pad_h != pad_w preferred
        pad.append(_pick(draw, range(0, k), [lambda p, _p=tuple(pad): p not in _p]))
    # stride 2 preferred (with an odd kernel over an even input it is where TF "same" padding goes asymmetric)
    stride = tuple(_pick(draw, range(1, max_stride + 1), [lambda s: s == 2]) for _ in range(2))
    spelling = (
        _choice(draw, ["pair", "hw", "repeated"]),
        _choice(draw, ["omit", "pair", "hw", "repeated"]),
        _choice(draw, ["omit", "pair", "hw", "repeated"]),
        _choice(draw, ["omit", "repeated"]),
    )
    return ConvParams(tuple(kernel), stride, tuple(pad), tuple(dil), spelling)  # type: ignore[arg-type]


def conv_params(*, max_kernel: int = 5, max_stride: int = 3, max_dilation: int = 2,
                max_side: int = 9) -> st.SearchStrategy[ConvParams]:
    """Convolution geometry: kernel (kh != kw preferred), dilation (extent <= ``max_side``), pad < kernel
    (pad_h != pad_w preferred), stride, and one of Caffe's spellings of each field."""
    _check_int("max_kernel", max_kernel, 1)
    _check_int("max_stride", max_stride, 1)
    _check_int("max_dilation", max_dilation, 1)
    _check_int("max_side", max_side, 1)
    return _composite(_conv_params_inner, max_kernel, max_stride, max_dilation, max_side)


def _conv_input_side(draw, cp: ConvParams, axis: int, max_side: int, *, used: Iterable[int] = ()) -> int:
    """An input size the (padded, dilated) kernel fits in; stride 2 with an odd kernel prefers even inputs."""
    lo = max(1, cp.extent(axis) - 2 * cp.pad[axis])
    cands = [v for v in range(lo, max(lo, max_side) + 1)]
    s, k = cp.stride[axis], cp.kernel[axis]
    used = set(used)
    return _pick(draw, cands, [
        lambda v: v not in used and (s % 2 == 0 and k % 2 == 1 and v % 2 == 0 or (v + 2 * cp.pad[axis]
                                                                                  - cp.extent(axis)) % s != 0),
        lambda v: v not in used,
    ])


def _deconv_input_side(draw, cp: ConvParams, axis: int, max_side: int, *, used: Iterable[int] = ()) -> int:
    """An input size for which the deconvolution output ``s(H-1) + d(k-1)+1 - 2p`` is at least 1."""
    s, ext, p = cp.stride[axis], cp.extent(axis), cp.pad[axis]
    lo = max(1, 1 + -(-(2 * p - ext + 1) // s))
    hi = max(lo, min(max_side, 6))
    used = set(used)
    return _pick(draw, range(lo, hi + 1), [lambda v: v not in used])


def _conv_like(draw, lim: Limits, caffe_type: str) -> LayerCase:
    rng = _rng(draw)
    cp = draw(conv_params(max_side=lim.max_side, max_kernel=min(5, lim.max_side)))
    depthwise = traits(caffe_type).depthwise
    deconv = traits(caffe_type).window == "deconv"
    if depthwise:
        g = cin = draw(st.integers(1, max(1, lim.max_channels // 2)))
        mult = draw(st.integers(1, max(1, lim.max_channels // cin)))
        cout = cin * mult
    else:
        g = _pick(draw, range(1, min(3, lim.max_channels) + 1), [lambda v: v > 1])
        cin = g * draw(st.integers(1, max(1, lim.max_channels // g)))
        cout = g * draw(st.integers(1, max(1, lim.max_channels // g)))
    n = draw(st.integers(1, lim.max_batch))
    side = _deconv_input_side if deconv else _conv_input_side
    h = side(draw, cp, 0, lim.max_side, used=(n, cin))
    w = side(draw, cp, 1, lim.max_side, used=(n, cin, h))
    bias = draw(st.booleans())
    kh, kw = cp.kernel
    if deconv:
        wshape = (cin, cout // g, kh, kw)
        fan_in = (cin // g) * kh * kw
    else:
        wshape = (cout, cin // g, kh, kw)
        fan_in = (cin // g) * kh * kw
    blobs = [_weights(rng, wshape, fan_in)]
    if bias:
        blobs.append(_normal(rng, (cout,), 0.5))
    items: Items = [("num_output", cout)]
    if not bias:
        items.append(("bias_term", False))
    elif draw(st.booleans()):
        items.append(("bias_term", True))
    if g != 1 or depthwise:
        items.append(("group", g))
    items += cp.items()
    type_name = caffe_type
    if depthwise and draw(st.booleans()):
        type_name = "DepthwiseConvolution"  # the alias some MobileNet forks use
    name = {"Convolution": "conv1", "Deconvolution": "deconv1", "ConvolutionDepthwise": "conv_dw"}[caffe_type]
    lay = LayerDef(name, type_name, ("data",), (name,), [("convolution_param", items)], tuple(blobs))
    inputs = {"data": _data(draw, rng, (n, cin, h, w))}
    note = f"group={g}" + (f", multiplier={cout // cin}" if depthwise else "")
    return _layer_case(f"{name}_case", inputs, lay, note)


for _t in ("Convolution", "ConvolutionDepthwise", "Deconvolution"):
    _case(_t)(lambda draw, lim, _t=_t: _conv_like(draw, lim, _t))
