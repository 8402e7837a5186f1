"""Pooling geometry (:class:`PoolParams`, :func:`pool_params`) and the Pooling and SPP cases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from ._arrays import Limits, _check_int, _choice, _composite, _data, _distinct, _layer_case, _pick, _rng, _uniform
from ._render import Enum, Items, LayerCase, LayerDef
from .registry import _case


@dataclass(frozen=True)
class PoolParams:
    """Pooling: method, geometry, rounding and spelling."""

    method: str  # MAX | AVE | STOCHASTIC
    kernel: tuple[int, int] | None  # None: global_pooling
    stride: tuple[int, int]
    pad: tuple[int, int]
    ceil: bool
    round_spelling: str = "default"  # default (CEIL) | round_mode | ceil_mode
    spelling: tuple[str, str, str] = ("pair", "pair", "pair")

    def out(self, h: int, w: int) -> tuple[int, int]:
        """Caffe ``PoolingLayer::Reshape``::

            pooled_h = ceil((H + 2*pad_h - kernel_h) / stride_h) + 1          (floor with round_mode FLOOR)
            if (pad_h_ || pad_w_) {
              if ((pooled_h - 1) * stride_h >= H + pad_h) --pooled_h;     (same for w)
            }

        The clip is guarded by padding on EITHER axis: an unpadded axis is clipped too when the other is padded."""
        if self.kernel is None:
            return 1, 1
        any_pad = bool(self.pad[0] or self.pad[1])
        res = []
        for a, x in enumerate((h, w)):
            k, s, p = self.kernel[a], self.stride[a], self.pad[a]
            num = x + 2 * p - k
            o = (-(-num // s) if self.ceil else num // s) + 1
            if any_pad and (o - 1) * s >= x + p:
                o -= 1
            res.append(o)
        return tuple(res)  # type: ignore[return-value]

    def items(self) -> Items:
        out: Items = [("pool", Enum(self.method))] if self.method != "MAX" or self.spelling[0] != "omit" else []
        if self.kernel is None:
            out.append(("global_pooling", True))
        else:
            for (name, (h, w), default), how in zip(
                (("kernel", self.kernel, None), ("stride", self.stride, 1), ("pad", self.pad, 0)), self.spelling,
            ):
                if how == "omit" and h == w == default:
                    continue
                if h == w and how != "hw":
                    out.append(("kernel_size" if name == "kernel" else name, h))
                else:
                    out += [(f"{name}_h", h), (f"{name}_w", w)]
        if self.round_spelling == "round_mode":
            out.append(("round_mode", Enum("CEIL" if self.ceil else "FLOOR")))
        elif self.round_spelling == "ceil_mode":
            out.append(("ceil_mode", self.ceil))
        return out


def _pool_params_inner(draw, methods: Sequence[str], max_kernel: int, max_stride: int, global_pooling: bool
                       ) -> PoolParams:
    method = _choice(draw, list(methods))
    if global_pooling and draw(st.integers(0, 5)) == 0:
        return PoolParams(method, None, (1, 1), (0, 0), True, "default", ("pair", "pair", "pair"))
    kernel = _distinct(draw, [(1, max_kernel), (1, max_kernel)])
    pad: list[int] = []
    if method == "STOCHASTIC":  # Caffe pads only MAX and AVE
        pad = [0, 0]
    else:
        for k in kernel:
            pad.append(_pick(draw, range(0, k), [lambda p, _p=tuple(pad): p not in _p and p > 0]))
    # A stride larger than the kernel without padding would make Caffe's ceil rounding place a last window entirely
    # past the input (Caffe then emits -FLT_MAX); real nets never do that, so such strides come with padding only.
    stride = tuple(
        _pick(draw, range(1, (max_stride if p > 0 else min(max_stride, k)) + 1), [lambda s: s == 2])
        for k, p in zip(kernel, pad)
    )
    ceil = draw(st.booleans())
    rs = "default" if ceil else "round_mode"
    rs = _choice(draw, [rs, "round_mode", "ceil_mode"])
    spelling = tuple(_choice(draw, ["omit", "pair", "hw"]) for _ in range(3))
    return PoolParams(method, tuple(kernel), stride, tuple(pad), ceil, rs, spelling)  # type: ignore[arg-type]


def pool_params(*, methods: Sequence[str] = ("MAX", "AVE"), max_kernel: int = 4, max_stride: int = 3,
                global_pooling: bool = True) -> st.SearchStrategy[PoolParams]:
    """Pooling parameters: method, kernel, pad < kernel (nonzero and pad_h != pad_w preferred), stride (2 preferred),
    CEIL or FLOOR rounding in each of its spellings (default, ``round_mode``, the fork's ``ceil_mode``), sometimes
    ``global_pooling``."""
    bad = [m for m in methods if m not in ("MAX", "AVE", "STOCHASTIC")]
    if bad or not methods:
        raise InvalidArgument(f"methods={list(methods)!r}: each must be one of MAX, AVE, STOCHASTIC (and at least one)")
    _check_int("max_kernel", max_kernel, 1)
    _check_int("max_stride", max_stride, 1)
    return _composite(_pool_params_inner, tuple(methods), max_kernel, max_stride, global_pooling)


def _pool_input_side(draw, pp: PoolParams, axis: int, max_side: int, used: Iterable[int] = ()) -> int:
    """An input size >= kernel - 2*pad, preferring sizes where ceil and floor differ or the last window clips."""
    k, s, p = pp.kernel[axis], pp.stride[axis], pp.pad[axis]  # type: ignore[index]
    lo = max(1, k - 2 * p)
    cands = list(range(lo, max(lo, max_side) + 1))
    used = set(used)

    def clipped(v: int) -> bool:
        o = -(-(v + 2 * p - k) // s) + 1
        return p > 0 and (o - 1) * s >= v + p

    return _pick(draw, cands, [
        lambda v: v not in used and (v + 2 * p - k) % s != 0,
        lambda v: v not in used and clipped(v),
        lambda v: v not in used and s == 2 and v % 2 == 0,
        lambda v: v not in used,
    ])


def _pool_case(draw, lim: Limits, methods: Sequence[str]) -> LayerCase:
    rng = _rng(draw)
    pp = draw(pool_params(methods=methods, max_kernel=min(4, lim.max_side)))
    n, c = _distinct(draw, [(1, lim.max_batch), (1, lim.max_channels)])
    if pp.kernel is None:
        h, w = _distinct(draw, [(1, lim.max_side), (1, lim.max_side)], (n, c))
    else:
        h = _pool_input_side(draw, pp, 0, lim.max_side, (n, c))
        w = _pool_input_side(draw, pp, 1, lim.max_side, (n, c, h))
    if pp.method == "STOCHASTIC":  # Caffe's TEST-time rule sum(x^2)/sum(x) assumes non-negative activations
        x = _uniform(rng, (n, c, h, w), 0.05, 3.0)
    else:
        x = _data(draw, rng, (n, c, h, w), allow_all_negative=pp.method == "MAX")
    lay = LayerDef("pool1", "Pooling", ("data",), ("pool1",), [("pooling_param", pp.items())])
    return _layer_case("pool_case", {"data": x}, lay, f"out={pp.out(h, w)}")


_case("Pooling")(lambda draw, lim: _pool_case(draw, lim, ("MAX", "AVE", "STOCHASTIC")))


def _spp_levels_ok(h: int, levels: int) -> bool:
    """Caffe's SPP builds, per level l, a pooling with bins=2^l, kernel=ceil(H/bins), pad=(kernel*bins-H+1)/2 and
    stride=kernel; Pooling then requires pad < kernel."""
    for lvl in range(levels):
        b = 2 ** lvl
        k = -(-h // b)
        if (k * b - h + 1) // 2 >= k:
            return False
    return True


@_case("SPP")
def _spp_case(draw, lim: Limits) -> LayerCase:
    """Spatial pyramid pooling, 1-3 levels, MAX or AVE."""
    rng = _rng(draw)
    levels = draw(st.integers(1, 3))
    method = _choice(draw, ["MAX", "AVE"])
    n, c = _distinct(draw, [(1, lim.max_batch), (1, lim.max_channels)])
    ok = [v for v in range(1, lim.max_side + 1) if _spp_levels_ok(v, levels)]
    if not ok:
        levels, ok = 1, list(range(1, lim.max_side + 1))
    h = _pick(draw, ok, [lambda v: v not in (n, c)])
    w = _pick(draw, ok, [lambda v: v not in (n, c, h)])
    items: Items = [("pyramid_height", levels)]
    if method != "MAX" or draw(st.booleans()):
        items.append(("pool", Enum(method)))
    lay = LayerDef("spp1", "SPP", ("data",), ("spp1",), [("spp_param", items)])
    return _layer_case("spp_case", {"data": _data(draw, rng, (n, c, h, w), allow_all_negative=True)}, lay)
