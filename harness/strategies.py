"""Public Hypothesis strategies: random, valid Caffe layers and nets, with inputs and weights, renderable as prototxt.

Use them to test a converter, a custom layer or a hand-written port against the reference::

    from hypothesis import given
    from harness.reference import forward
    from harness.strategies import layer_cases

    @given(layer_cases(["Convolution", "Pooling"]))
    def test_my_port(case):
        net = case.load()                      # harness.net.Net (prototxt + weights through harness.caffe)
        expected = forward(net, case.inputs)   # {"<layer>/<top>": NCHW float64 array}
        ...

Every strategy is *constructive* (no ``filter``/``assume`` for validity): parameters are drawn in an order that makes
each later draw valid for the earlier ones -- kernel, then pad (< kernel), then stride, then an input at least as large
as the padded (dilated) kernel.  The draws are biased toward what breaks ports: every axis a distinct size (so a
transposed axis cannot hide), ``pad_h != pad_w``, stride 2 over an even input with an odd kernel (TF ``same`` pads
asymmetrically there), pooling sizes where ceil and floor rounding differ and the last window is clipped, pads up to
``kernel - 1``, groups and depthwise multipliers, dilation, negative (even all-negative) inputs into MAX pooling,
BatchNorm scale factors outside {0, 1}, LRN ``k != 1`` and WITHIN_CHANNEL, Flatten then InnerProduct and the implicit
flatten of InnerProduct, Eltwise coefficients, softmax axes.

A drawn case (:class:`NetCase`, :class:`LayerCase`) renders to a self-contained, pasteable prototxt
(:meth:`NetCase.to_prototxt`) and writes ``net.prototxt``, ``weights.caffemodel``, ``weights.npz`` (keys
``"<layer>/<i>"``) and ``inputs.npz`` with :meth:`NetCase.write`, so a failing example can be replayed in real Caffe or
with ``caffe-harness check net.prototxt --weights weights.caffemodel --inputs inputs.npz``.

Public functions take keyword-only options; bounds are validated when the strategy is *defined* and raise
:class:`hypothesis.errors.InvalidArgument`, as :mod:`hypothesis.extra.numpy` does.  This module imports Hypothesis (a
test extra), so ``import harness`` never imports it.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from .catalogue import canonical_type
from .registry import Registry

__all__ = [
    "STRATEGIES", "Limits", "LayerDef", "NetCase", "LayerCase", "ConvParams", "PoolParams",
    "layer_cases", "layer_case", "conv_params", "pool_params", "nchw_shapes", "nets",
]

STRATEGIES: Registry = Registry("strategy")
"""Caffe type -> ``fn(limits: Limits) -> SearchStrategy[LayerCase]``."""


# ----------------------------------------------------------------------------------------------------------------------
# Rendering: prototxt text and weights
# ----------------------------------------------------------------------------------------------------------------------

class Enum(str):
    """A prototxt enum literal (rendered without quotes)."""


Items = list  # list[tuple[str, Any]]; a value that is a list renders as a nested message


def _fmt(v: Any) -> str:
    if isinstance(v, Enum):
        return str(v)
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        r = repr(float(v))
        return r
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"cannot render {v!r}")


def _render_items(items: Items, indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    for key, value in items:
        if isinstance(value, list):
            lines.append(f"{pad}{key} {{")
            lines.extend(_render_items(value, indent + 1))
            lines.append(f"{pad}}}")
        else:
            lines.append(f"{pad}{key}: {_fmt(value)}")
    return lines


@dataclass(frozen=True, eq=False)
class LayerDef:
    """One Caffe layer of a drawn case: what the prototxt says plus its weight blobs (Caffe shapes, float32)."""

    name: str
    type: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: Items = field(default_factory=list)  # [(field, value | nested items)] after name/type/bottom/top
    blobs: tuple[np.ndarray, ...] = ()

    def items(self) -> Items:
        its: Items = [("name", self.name), ("type", self.type)]
        its += [("bottom", b) for b in self.bottoms]
        its += [("top", t) for t in self.tops]
        return its + list(self.params)

    def to_prototxt(self) -> str:
        return "\n".join(["layer {", *_render_items(self.items(), 1), "}"])


@dataclass(frozen=True, eq=False)
class NetCase:
    """A drawn net: its input arrays (NCHW, float32, seeded), its layers (after the Input layers) and their weights.

    ``inputs`` keeps declaration order; each input blob gets its own ``Input`` layer named after the blob.
    """

    name: str
    inputs: dict[str, np.ndarray]
    layers: tuple[LayerDef, ...]
    note: str = ""  # what the case is biased toward (shown in repr)

    # -- views ---------------------------------------------------------------------------------------------------
    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(int(d) for d in v.shape) for k, v in self.inputs.items()}

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """``{"<layer>/<i>": blob}`` (the npz convention :func:`harness.caffe.load_net` reads)."""
        return {f"{lay.name}/{i}": b for lay in self.layers for i, b in enumerate(lay.blobs)}

    @property
    def types(self) -> list[str]:
        return [lay.type for lay in self.layers]

    def input_layers(self) -> list[LayerDef]:
        """One Input layer per input blob (except those ``layers`` declares with an Input layer of its own)."""
        explicit = {t for lay in self.layers if lay.type == "Input" for t in lay.tops}
        return [
            LayerDef(k, "Input", (), (k,), [("input_param", [("shape", [("dim", int(d)) for d in v.shape])])])
            for k, v in self.inputs.items() if k not in explicit
        ]

    # -- rendering -----------------------------------------------------------------------------------------------
    def to_prototxt(self) -> str:
        """The net as prototxt text: paste it into Caffe or save it for ``caffe-harness check``."""
        parts = [f'name: "{self.name}"']
        parts += [lay.to_prototxt() for lay in (*self.input_layers(), *self.layers)]
        return "\n".join(parts) + "\n"

    def caffemodel_bytes(self) -> bytes:
        """A binary ``.caffemodel`` holding this case's weights (and the layer definitions, as Caffe writes them)."""
        from google.protobuf import text_format

        from .proto import caffe_pb2

        netp = caffe_pb2.NetParameter()
        text_format.Parse(self.to_prototxt(), netp)
        by_name = {lay.name: lay for lay in self.layers}
        for lp in netp.layer:
            lay = by_name.get(lp.name)
            for b in (lay.blobs if lay is not None else ()):
                bp = lp.blobs.add()
                bp.shape.dim.extend(int(d) for d in b.shape)
                bp.data.extend(np.asarray(b, np.float32).ravel().tolist())
        return netp.SerializeToString()

    def npz_bytes(self, arrays: dict[str, np.ndarray]) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    def write(self, directory: str | os.PathLike | None = None) -> Path:
        """Write ``net.prototxt``, ``weights.caffemodel``, ``weights.npz``, ``inputs.npz`` into ``directory`` (a new
        temporary directory when None) and return it."""
        d = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="harness-case-"))
        d.mkdir(parents=True, exist_ok=True)
        (d / "net.prototxt").write_text(self.to_prototxt())
        (d / "weights.caffemodel").write_bytes(self.caffemodel_bytes())
        (d / "weights.npz").write_bytes(self.npz_bytes(self.weights))
        (d / "inputs.npz").write_bytes(self.npz_bytes(self.inputs))
        return d

    def replay_hint(self, directory: str | os.PathLike) -> str:
        d = Path(directory)
        return (f"caffe-harness check {d / 'net.prototxt'} --weights {d / 'weights.caffemodel'} "
                f"--inputs {d / 'inputs.npz'}")

    def load(self, **kwargs: Any):
        """The case as a :class:`harness.net.Net`, through the real loader (prototxt text + the weight blobs)."""
        from .caffe import load_net_text

        weights = {lay.name: list(lay.blobs) for lay in self.layers if lay.blobs}
        return load_net_text(self.to_prototxt(), weights=weights or None, **kwargs)

    def describe(self) -> str:
        lines = [self.to_prototxt().rstrip()]
        for k, v in self.inputs.items():
            lines.append(f"# input {k}: shape {tuple(v.shape)}, min {v.min():.4g}, max {v.max():.4g}")
        for k, v in self.weights.items():
            lines.append(f"# weight {k}: shape {tuple(v.shape)}")
        if self.note:
            lines.append(f"# note: {self.note}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(\n{self.describe()}\n)"


@dataclass(frozen=True, eq=False, repr=False)
class LayerCase(NetCase):
    """A one-layer net: Input layer(s) + the layer under test (``self.layer``)."""

    @property
    def layer(self) -> LayerDef:
        return self.layers[-1]

    @property
    def type(self) -> str:
        return canonical_type(self.layer.type)


# ----------------------------------------------------------------------------------------------------------------------
# Validation (definition time, like hypothesis.extra.numpy)
# ----------------------------------------------------------------------------------------------------------------------

def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgument(f"{name}={value!r} must be an integer")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise InvalidArgument(f"{name}={value!r} must be {rng}")


@dataclass(frozen=True)
class Limits:
    """Size bounds shared by the per-type strategies (small by default: examples must be cheap)."""

    max_side: int = 9
    max_channels: int = 6
    max_batch: int = 2

    def __post_init__(self) -> None:
        _check_int("max_side", self.max_side, 3, 4096)
        _check_int("max_channels", self.max_channels, 3, 4096)
        _check_int("max_batch", self.max_batch, 1, 1024)


# ----------------------------------------------------------------------------------------------------------------------
# Small drawing helpers
# ----------------------------------------------------------------------------------------------------------------------

def _pick(draw, candidates: Sequence[Any], prefer: Iterable[Callable[[Any], bool]] = ()) -> Any:
    """Draw from ``candidates``; with some probability restricted to those meeting one ``prefer`` predicate.

    Constructive: restriction happens on the candidate list, so nothing is ever rejected."""
    cands = list(candidates)
    if not cands:
        raise ValueError("no candidates")  # a bug in a strategy, never user-facing
    prefer = list(prefer)
    if prefer:
        which = draw(st.integers(0, len(prefer)))  # 0: no preference (shrinks to the plain choice)
        if which:
            sub = [c for c in cands if prefer[which - 1](c)]
            if sub:
                cands = sub
    return _choice(draw, cands)


def _distinct(draw, ranges: Sequence[tuple[int, int]], used: Iterable[int] = ()) -> tuple[int, ...]:
    """One size per range, each different from the others (and from ``used``) whenever its range allows."""
    seen = set(used)
    out = []
    for lo, hi in ranges:
        lo, hi = int(lo), int(hi)
        if hi < lo:
            raise ValueError(f"empty range [{lo}, {hi}]")
        cands = [v for v in range(lo, hi + 1) if v not in seen] or list(range(lo, hi + 1))
        v = _choice(draw, cands)
        seen.add(v)
        out.append(v)
    return tuple(out)


def _choice(draw, seq: Sequence[Any]) -> Any:
    """``draw(st.sampled_from(seq))`` without building a new strategy per call (an integer strategy is cached by
    Hypothesis; a fresh ``sampled_from`` over a new list costs validation on every draw).  Shrinks to ``seq[0]``."""
    seq = seq if isinstance(seq, (list, tuple)) else list(seq)
    return seq[draw(_index(len(seq)))] if len(seq) > 1 else seq[0]


def _index(n: int) -> st.SearchStrategy[int]:
    return st.integers(0, n - 1)


def _rng(draw) -> np.random.Generator:
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


def _normal(rng: np.random.Generator, shape, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale + shift).astype(np.float32)


def _uniform(rng: np.random.Generator, shape, lo: float, hi: float) -> np.ndarray:
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def _data(draw, rng: np.random.Generator, shape, *, allow_all_negative: bool = False) -> np.ndarray:
    """Input values: standard normal (negatives included), sometimes scaled up, sometimes entirely negative."""
    scale = _choice(draw, [1.0, 3.0])
    shift = _choice(draw, [0.0, -4.0]) if allow_all_negative else 0.0
    return _normal(rng, shape, scale, shift)


def _weights(rng: np.random.Generator, shape, fan_in: int) -> np.ndarray:
    return _normal(rng, shape, 1.0 / math.sqrt(max(fan_in, 1)))


def _layer_case(name: str, inputs: dict[str, np.ndarray], layer: LayerDef, note: str = "") -> LayerCase:
    return LayerCase(name=name, inputs=inputs, layers=(layer,), note=note)


def _draw_nchw(draw, max_batch: int, max_channels: int, max_side: int, min_side: int, min_channels: int
               ) -> tuple[int, ...]:
    return _distinct(draw, [(1, max_batch), (min_channels, max_channels), (min_side, max_side),
                            (min_side, max_side)])


def nchw_shapes(*, max_batch: int = 2, max_channels: int = 6, max_side: int = 9, min_side: int = 1,
                min_channels: int = 1) -> st.SearchStrategy[tuple[int, int, int, int]]:
    """An NCHW shape with (whenever the bounds allow) a distinct size on every axis."""
    _check_int("max_batch", max_batch, 1)
    _check_int("max_channels", max_channels, 1)
    _check_int("max_side", max_side, 1)
    _check_int("min_side", min_side, 1, max_side)
    _check_int("min_channels", min_channels, 1, max_channels)
    return _composite(_draw_nchw, max_batch, max_channels, max_side, min_side, min_channels)


def _composite(fn: Callable[..., Any], *args: Any) -> st.SearchStrategy:
    """``st.composite`` over ``fn(draw, *args)``."""
    return st.composite(lambda draw: fn(draw, *args))()


def _shape(draw, lim: Limits, rank: int = 4, *, min_side: int = 1, min_channels: int = 1,
           sides: tuple[tuple[int, int], ...] | None = None, channels: tuple[int, int] | None = None,
           batch: int | None = None) -> tuple[int, ...]:
    """A blob shape of ``rank`` (2: N,C; 3: N,C,L; 4: N,C,H,W) with distinct sizes (``batch`` fixes N: every input
    of one net shares its batch size, as a Keras model's inputs do)."""
    cr = channels or (min_channels, lim.max_channels)
    if sides is None:
        sides = tuple((min_side, lim.max_side) for _ in range(rank - 2))
    nr = (batch, batch) if batch is not None else (1, lim.max_batch)
    return _distinct(draw, [nr, cr, *sides])


def _any_rank(draw) -> int:
    return _choice(draw, [4, 2, 3])


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


# ----------------------------------------------------------------------------------------------------------------------
# One strategy per Caffe type
# ----------------------------------------------------------------------------------------------------------------------

def _case(caffe_type: str) -> Callable[[Callable[..., LayerCase]], Callable[[Limits], st.SearchStrategy]]:
    """Register ``fn(draw, lim) -> LayerCase`` as the strategy factory for ``caffe_type``."""

    def deco(fn: Callable[..., LayerCase]) -> Callable[[Limits], st.SearchStrategy]:
        def factory(lim: Limits) -> st.SearchStrategy:
            return _composite(fn, lim)

        factory.__qualname__ = factory.__name__ = f"strategy_{caffe_type}"
        factory.__doc__ = fn.__doc__
        STRATEGIES.register(caffe_type)(factory)
        return factory

    return deco


def _inputs(rng, draw, shapes: dict[str, tuple[int, ...]], **kw) -> dict[str, np.ndarray]:
    return {k: _data(draw, rng, s, **kw) for k, s in shapes.items()}


def _maybe_inplace(draw, name: str, bottom: str) -> tuple[str, ...]:
    return (bottom,) if draw(st.booleans()) else (name,)


@_case("Input")
def _input_case(draw, lim: Limits) -> LayerCase:
    """One or two Input layers of rank 4 or 2 (the net is the inputs themselves)."""
    rng = _rng(draw)
    n_in = draw(st.integers(1, 2))
    shapes = {}
    n = draw(st.integers(1, lim.max_batch))
    for i in range(n_in):
        shapes["data" if i == 0 else f"data{i + 1}"] = _shape(draw, lim, _choice(draw, [4, 2]), batch=n)
    inputs = _inputs(rng, draw, shapes)
    # The case's layer under test is the last Input layer (NetCase.input_layers skips it; it is rendered as a layer).
    last = list(inputs)[-1]
    lay = LayerDef(last, "Input", (), (last,), [("input_param", [("shape", [("dim", d) for d in inputs[last].shape])])])
    return _layer_case("input_case", inputs, lay)


def _conv_like(draw, lim: Limits, caffe_type: str) -> LayerCase:
    rng = _rng(draw)
    cp = draw(conv_params(max_side=lim.max_side, max_kernel=min(5, lim.max_side)))
    depthwise = caffe_type == "ConvolutionDepthwise"
    deconv = caffe_type == "Deconvolution"
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


@_case("LRN")
def _lrn_case(draw, lim: Limits) -> LayerCase:
    """LRN, both regions; k != 1 and alpha far from 1e-4 preferred so that alpha/n and k mistakes show."""
    rng = _rng(draw)
    shape = _shape(draw, lim, min_channels=1)
    region = _choice(draw, ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
    size = _choice(draw, [3, 5, 1, 7] if region == "ACROSS_CHANNELS" else [3, 1, 5])
    alpha = _choice(draw, [1.0, 0.5, 2.5, 1e-4])
    beta = _choice(draw, [0.75, 0.5, 1.25])
    k = _choice(draw, [2.0, 1.0, 0.5])
    items: Items = [("local_size", size), ("alpha", alpha), ("beta", beta)]
    if region != "ACROSS_CHANNELS" or draw(st.booleans()):
        items.append(("norm_region", Enum(region)))
    if k != 1.0 or draw(st.booleans()):
        items.append(("k", k))
    lay = LayerDef("norm1", "LRN", ("data",), ("norm1",), [("lrn_param", items)])
    return _layer_case("lrn_case", {"data": _data(draw, rng, shape)}, lay, region)


@_case("MVN")
def _mvn_case(draw, lim: Limits) -> LayerCase:
    """MVN with/without variance normalisation, within or across channels (spatial size >= 4 so that the variance
    is not a rounding artefact)."""
    rng = _rng(draw)
    n, c = _distinct(draw, [(1, lim.max_batch), (1, lim.max_channels)])
    h = _pick(draw, range(2, lim.max_side + 1), [lambda v: v not in (n, c)])
    w = _pick(draw, range(2, lim.max_side + 1), [lambda v: v not in (n, c, h)])
    items: Items = []
    nv = draw(st.booleans())
    ac = draw(st.booleans())
    if not nv or draw(st.booleans()):
        items.append(("normalize_variance", nv))
    if ac or draw(st.booleans()):
        items.append(("across_channels", ac))
    if draw(st.booleans()):
        items.append(("eps", _choice(draw, [1e-9, 1e-3, 0.5])))
    lay = LayerDef("mvn1", "MVN", ("data",), ("mvn1",), [("mvn_param", items)] if items else [])
    return _layer_case("mvn_case", {"data": _data(draw, rng, (n, c, h, w), allow_all_negative=True)}, lay)


@_case("BatchNorm")
def _batchnorm_case(draw, lim: Limits) -> LayerCase:
    """Inference BatchNorm: blobs mean*f, var*f, f with the factor f mostly not in {0, 1}; 4-D or 2-D input."""
    rng = _rng(draw)
    shape = _shape(draw, lim, _choice(draw, [4, 2]))
    c = shape[1]
    factor = _choice(draw, [3.5, 0.25, 999.98, 1.0, 0.0])
    mean = _normal(rng, (c,))
    var = _uniform(rng, (c,), 0.2, 2.0)
    blobs = (
        (mean * np.float32(factor)).astype(np.float32),
        (var * np.float32(factor)).astype(np.float32),
        np.array([factor], np.float32),
    )
    items: Items = []
    if draw(st.booleans()):
        items.append(("use_global_stats", True))
    eps = _choice(draw, [None, 1e-3, 1e-5, 0.25])
    if eps is not None:
        items.append(("eps", eps))
    tops = _maybe_inplace(draw, "bn1", "data")
    lay = LayerDef("bn1", "BatchNorm", ("data",), tops, [("batch_norm_param", items)] if items else [], blobs)
    return _layer_case("bn_case", {"data": _data(draw, rng, shape)}, lay, f"factor={factor}")


@_case("Normalize")
def _normalize_case(draw, lim: Limits) -> LayerCase:
    """SSD Normalize: across_spatial and channel_shared both ways, a learned scale blob."""
    rng = _rng(draw)
    shape = _shape(draw, lim)
    across = draw(st.booleans())
    shared = draw(st.booleans())
    items: Items = [("across_spatial", across), ("channel_shared", shared)]
    if draw(st.booleans()):
        items.append(("eps", _choice(draw, [1e-10, 1e-6, 0.01])))
    scale = _uniform(rng, (1,) if shared else (shape[1],), 0.5, 20.0)
    lay = LayerDef("norm1", "Normalize", ("data",), ("norm1",), [("norm_param", items)], (scale,))
    return _layer_case("normalize_case", {"data": _data(draw, rng, shape)}, lay)


def _axis_spelling(draw, axis: int, ndim: int, default: int | None) -> list[tuple[str, int]]:
    """``axis`` as Caffe accepts it: omitted when it is the default, sometimes written negative."""
    if default is not None and axis == default and draw(st.booleans()):
        return []
    return [("axis", axis - ndim if draw(st.booleans()) else axis)]


def _scale_bias_case(draw, lim: Limits, caffe_type: str) -> LayerCase:
    rng = _rng(draw)
    shape = _shape(draw, lim)
    two_bottoms = draw(st.integers(0, 3)) == 0
    inputs: dict[str, np.ndarray] = {}
    param_name = "scale_param" if caffe_type == "Scale" else "bias_param"
    items: Items = []
    blobs: list[np.ndarray] = []
    if two_bottoms:
        # the second bottom is the scale (bias) of shape bottom.shape[axis:axis+k]; as a net input it has the batch
        # axis first, so axis 0: SENet's (N, C) or (N, C, H), or the full shape
        axis = 0
        k = draw(st.integers(2, 4))
        pshape = shape[axis:axis + k]
        inputs["data"] = _data(draw, rng, shape)
        inputs["factor"] = _data(draw, rng, pshape)
        items += _axis_spelling(draw, axis, 4, 1)
        bottoms: tuple[str, ...] = ("data", "factor")
    else:
        axis = _choice(draw, [1, 2, 3, 0])
        if axis == 0:
            axis = 1
        num_axes = _choice(draw, [1, -1, 0, 2, 3])
        if num_axes > 4 - axis:
            num_axes = 1
        end = 4 if num_axes == -1 else axis + num_axes
        pshape = shape[axis:end]
        items += _axis_spelling(draw, axis, 4, 1)
        if num_axes != 1 or draw(st.booleans()):
            items.append(("num_axes", num_axes))
        blobs.append(_normal(rng, pshape, 1.0, 0.5 if caffe_type == "Scale" else 0.0))
        inputs["data"] = _data(draw, rng, shape)
        bottoms = ("data",)
    if caffe_type == "Scale" and draw(st.booleans()):
        items.append(("bias_term", True))
        blobs.append(_normal(rng, pshape))
    name = "scale1" if caffe_type == "Scale" else "bias1"
    tops = _maybe_inplace(draw, name, "data")
    lay = LayerDef(name, caffe_type, bottoms, tops, [(param_name, items)] if items else [], tuple(blobs))
    return _layer_case(f"{name}_case", inputs, lay, f"param shape {pshape}")


_case("Scale")(lambda draw, lim: _scale_bias_case(draw, lim, "Scale"))
_case("Bias")(lambda draw, lim: _scale_bias_case(draw, lim, "Bias"))


@_case("InnerProduct")
def _inner_product_case(draw, lim: Limits) -> LayerCase:
    """InnerProduct on a 4-D blob (implicit C,H,W flatten) or a 2-D one, axis 1..3, transpose, bias."""
    rng = _rng(draw)
    rank = _choice(draw, [4, 2])
    shape = _shape(draw, lim, rank)
    axis = _choice(draw, [1, 2, 3][: rank - 1])
    k = int(np.prod(shape[axis:]))
    nout = _pick(draw, range(1, lim.max_channels + 2), [lambda v: v not in shape])
    transpose = draw(st.booleans())
    bias = draw(st.booleans())
    items: Items = [("num_output", nout)]
    if not bias:
        items.append(("bias_term", False))
    items += _axis_spelling(draw, axis, rank, 1)
    if transpose:
        items.append(("transpose", True))
    wt = _weights(rng, (k, nout) if transpose else (nout, k), k)
    blobs = (wt, _normal(rng, (nout,), 0.5)) if bias else (wt,)
    lay = LayerDef("fc1", "InnerProduct", ("data",), ("fc1",), [("inner_product_param", items)], blobs)
    return _layer_case("ip_case", {"data": _data(draw, rng, shape)}, lay, f"K={k}")


@_case("Embed")
def _embed_case(draw, lim: Limits) -> LayerCase:
    """Embed: integer indices (stored as float, as Caffe does) into a (input_dim, num_output) table."""
    rng = _rng(draw)
    n, t = _distinct(draw, [(1, lim.max_batch), (1, lim.max_side)])
    input_dim = _pick(draw, range(1, 10), [lambda v: v not in (n, t)])
    nout = _pick(draw, range(1, lim.max_channels + 1), [lambda v: v not in (n, t, input_dim)])
    bias = draw(st.booleans())
    items: Items = [("num_output", nout), ("input_dim", input_dim)]
    if not bias:
        items.append(("bias_term", False))
    blobs = [_normal(rng, (input_dim, nout))]
    if bias:
        blobs.append(_normal(rng, (nout,)))
    idx = rng.integers(0, input_dim, size=(n, t)).astype(np.float32)
    lay = LayerDef("embed1", "Embed", ("data",), ("embed1",), [("embed_param", items)], tuple(blobs))
    return _layer_case("embed_case", {"data": idx}, lay)


def _unary_case(draw, lim: Limits, caffe_type: str, param: str | None, items: Items, *,
                values: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray] | None = None,
                rank: int | None = None, blobs: Callable[[np.random.Generator, tuple[int, ...]], tuple] | None = None,
                note: str = "") -> LayerCase:
    rng = _rng(draw)
    shape = _shape(draw, lim, rank or _any_rank(draw))
    x = values(rng, shape) if values is not None else _data(draw, rng, shape)
    name = caffe_type.lower() + "1"
    tops = _maybe_inplace(draw, name, "data")
    params = [(param, items)] if (param and items) else []
    lay = LayerDef(name, caffe_type, ("data",), tops, params, blobs(rng, shape) if blobs else ())
    return _layer_case(f"{name}_case", {"data": x}, lay, note)


@_case("ReLU")
def _relu_case(draw, lim):
    slope = _choice(draw, [0.0, 0.1, 0.25, -0.5])
    items = [("negative_slope", slope)] if slope != 0.0 or draw(st.booleans()) else []
    return _unary_case(draw, lim, "ReLU", "relu_param", items)


_case("ReLU6")(lambda draw, lim: _unary_case(draw, lim, "ReLU6", None, [],
                                             values=lambda rng, s: _normal(rng, s, 5.0)))
_case("Sigmoid")(lambda draw, lim: _unary_case(draw, lim, "Sigmoid", None, []))
_case("TanH")(lambda draw, lim: _unary_case(draw, lim, "TanH", None, []))
_case("AbsVal")(lambda draw, lim: _unary_case(draw, lim, "AbsVal", None, []))
_case("BNLL")(lambda draw, lim: _unary_case(draw, lim, "BNLL", None, [], values=lambda rng, s: _normal(rng, s, 4.0)))


@_case("PReLU")
def _prelu_case(draw, lim):
    shared = draw(st.booleans())
    items = [("channel_shared", True)] if shared else ([("channel_shared", False)] if draw(st.booleans()) else [])
    return _unary_case(draw, lim, "PReLU", "prelu_param", items, rank=_choice(draw, [4, 2]),
                       blobs=lambda rng, s: (_uniform(rng, (1,) if shared else (s[1],), -0.5, 0.75),))


@_case("ELU")
def _elu_case(draw, lim):
    alpha = _choice(draw, [1.0, 0.5, 2.0])
    items = [("alpha", alpha)] if alpha != 1.0 or draw(st.booleans()) else []
    return _unary_case(draw, lim, "ELU", "elu_param", items)


@_case("Power")
def _power_case(draw, lim):
    """(shift + scale*x)^power; inputs are placed so that the base is positive where the power needs it."""
    power = _choice(draw, [2.0, 1.0, 0.5, 3.0, -1.0, 1.5, 0.0])
    scale = _choice(draw, [1.0, 0.5, -2.0])
    shift = _choice(draw, [0.0, 1.0, 0.25])
    items: Items = [(k, v) for k, v, d in (("power", power, 1.0), ("scale", scale, 1.0), ("shift", shift, 0.0))
                    if v != d or draw(st.booleans())]
    positive_base = power != int(power) or power < 0

    def values(rng, s):
        if not positive_base:
            return _normal(rng, s)
        base = rng.uniform(0.5, 2.0, size=s)
        return ((base - shift) / scale).astype(np.float32)

    return _unary_case(draw, lim, "Power", "power_param", items, values=values)


def _exp_log_items(draw, bases) -> tuple[Items, float, float]:
    base = _choice(draw, bases)
    scale = _choice(draw, [1.0, 0.5, -1.0, 2.0])
    shift = _choice(draw, [0.0, 0.5])
    items: Items = [(k, v) for k, v, d in (("base", base, -1.0), ("scale", scale, 1.0), ("shift", shift, 0.0))
                    if v != d or draw(st.booleans())]
    return items, scale, shift


@_case("Exp")
def _exp_case(draw, lim):
    """base^(shift + scale*x), base -1 meaning e."""
    items, _, _ = _exp_log_items(draw, [-1.0, 2.0, 0.5])
    return _unary_case(draw, lim, "Exp", "exp_param", items)


@_case("Log")
def _log_case(draw, lim):
    """log_base(shift + scale*x) on inputs that keep the argument in [0.5, 3]."""
    items, scale, shift = _exp_log_items(draw, [-1.0, 2.0, 10.0])

    def values(rng, s):
        arg = rng.uniform(0.5, 3.0, size=s)
        return ((arg - shift) / scale).astype(np.float32)

    return _unary_case(draw, lim, "Log", "log_param", items, values=values)


@_case("Threshold")
def _threshold_case(draw, lim):
    t = _choice(draw, [0.0, 0.5, -0.25])
    items = [("threshold", t)] if t != 0.0 or draw(st.booleans()) else []
    return _unary_case(draw, lim, "Threshold", "threshold_param", items)


@_case("Clip")
def _clip_case(draw, lim):
    lo = _choice(draw, [-1.0, -0.5, 0.0])
    hi = _choice(draw, [0.5, 1.0, 2.0])
    return _unary_case(draw, lim, "Clip", "clip_param", [("min", lo), ("max", hi)])


@_case("Swish")
def _swish_case(draw, lim):
    beta = _choice(draw, [1.0, 0.5, 2.0])
    items = [("beta", beta)] if beta != 1.0 or draw(st.booleans()) else []
    return _unary_case(draw, lim, "Swish", "swish_param", items)


@_case("Dropout")
def _dropout_case(draw, lim):
    """Identity at TEST whatever the ratio."""
    ratio = _choice(draw, [0.5, 0.25, 0.9])
    items = [("dropout_ratio", ratio)] if ratio != 0.5 or draw(st.booleans()) else []
    return _unary_case(draw, lim, "Dropout", "dropout_param", items)


@_case("Softmax")
def _softmax_case(draw, lim: Limits) -> LayerCase:
    """Softmax over any non-batch axis (written positive or negative) of a 4-D, 3-D or 2-D blob."""
    rng = _rng(draw)
    rank = _choice(draw, [4, 2, 3])
    shape = _shape(draw, lim, rank)
    axis = draw(st.integers(1, rank - 1))
    items = _axis_spelling(draw, axis, rank, 1)
    lay = LayerDef("prob", "Softmax", ("data",), ("prob",), [("softmax_param", items)] if items else [])
    return _layer_case("softmax_case", {"data": _data(draw, rng, shape)}, lay, f"axis={axis}")


@_case("Concat")
def _concat_case(draw, lim: Limits) -> LayerCase:
    """2-3 bottoms that differ only along the (non-batch) concat axis; ``axis`` or legacy ``concat_dim``."""
    rng = _rng(draw)
    rank = _choice(draw, [4, 2])
    base = list(_shape(draw, lim, rank))
    axis = draw(st.integers(1, rank - 1))
    k = draw(st.integers(2, 3))
    inputs = {}
    hi = lim.max_channels if axis == 1 else lim.max_side
    for i in range(k):
        s = list(base)
        s[axis] = draw(st.integers(1, hi))
        inputs[f"in{i}"] = _data(draw, rng, tuple(s))
    items: Items
    if axis == 1 and draw(st.booleans()):
        items = [("concat_dim", 1)] if draw(st.booleans()) else []
    else:
        items = _axis_spelling(draw, axis, rank, 1)
    lay = LayerDef("concat1", "Concat", tuple(inputs), ("concat1",), [("concat_param", items)] if items else [])
    return _layer_case("concat_case", inputs, lay, f"axis={axis}")


@_case("Slice")
def _slice_case(draw, lim: Limits) -> LayerCase:
    """2-3 tops along a non-batch axis: explicit increasing slice points or an equal split."""
    rng = _rng(draw)
    rank = _choice(draw, [4, 2])
    ntops = draw(st.integers(2, 3))
    equal = draw(st.booleans())
    axis = draw(st.integers(1, rank - 1))
    hi = lim.max_channels if axis == 1 else lim.max_side
    if equal:
        dim = ntops * draw(st.integers(1, max(1, hi // ntops)))
    else:
        dim = draw(st.integers(ntops, max(ntops, hi)))
    shape = list(_shape(draw, lim, rank))
    shape[axis] = dim
    items: Items
    if axis == 1 and draw(st.booleans()):
        items = [("slice_dim", 1)] if draw(st.booleans()) else []
    else:
        items = _axis_spelling(draw, axis, rank, 1)
    if not equal:
        pts = sorted(draw(st.lists(st.integers(1, dim - 1), min_size=ntops - 1, max_size=ntops - 1, unique=True)))
        items += [("slice_point", p) for p in pts]
    tops = tuple(f"slice1_{i}" for i in range(ntops))
    lay = LayerDef("slice1", "Slice", ("data",), tops, [("slice_param", items)] if items else [])
    return _layer_case("slice_case", {"data": _data(draw, rng, tuple(shape))}, lay, f"axis={axis}")


@_case("Split")
def _split_case(draw, lim: Limits) -> LayerCase:
    rng = _rng(draw)
    shape = _shape(draw, lim, _any_rank(draw))
    ntops = draw(st.integers(2, 3))
    lay = LayerDef("split1", "Split", ("data",), tuple(f"split1_{i}" for i in range(ntops)))
    return _layer_case("split_case", {"data": _data(draw, rng, shape)}, lay)


@_case("Flatten")
def _flatten_case(draw, lim: Limits) -> LayerCase:
    """Flatten axis..end_axis (never the batch axis), both written positive or negative."""
    rng = _rng(draw)
    shape = _shape(draw, lim)
    axis = draw(st.integers(1, 3))
    end = draw(st.integers(axis, 3))
    items: Items = _axis_spelling(draw, axis, 4, 1)
    if end != 3 or draw(st.booleans()):
        items.append(("end_axis", end - 4 if draw(st.booleans()) else end))
    lay = LayerDef("flat1", "Flatten", ("data",), ("flat1",), [("flatten_param", items)] if items else [])
    return _layer_case("flatten_case", {"data": _data(draw, rng, shape)}, lay, f"axis={axis} end_axis={end}")


def _factorizations(p: int, parts: int) -> list[tuple[int, ...]]:
    if parts == 1:
        return [(p,)]
    out = []
    for d in range(1, p + 1):
        if p % d == 0:
            out += [(d, *rest) for rest in _factorizations(p // d, parts - 1)]
    return out


@_case("Reshape")
def _reshape_case(draw, lim: Limits) -> LayerCase:
    """Reshape of a sub-range [axis, axis+num_axes) into a factorisation of its size, with 0 (copy) and -1 (infer);
    the batch axis is kept."""
    rng = _rng(draw)
    shape = _shape(draw, lim)
    axis = draw(st.integers(0, 3))
    num_axes = _choice(draw, [-1, *range(0, 4 - axis + 1)])
    end = 4 if num_axes == -1 else axis + num_axes
    sub = shape[axis:end]
    if axis == 0:  # keep the batch: the first new dim copies N
        rest = int(np.prod(sub[1:])) if len(sub) > 1 else 1
        parts = draw(st.integers(1, 3))
        new = [shape[0], *_choice(draw, _factorizations(rest, parts))]
        if len(sub) == 0:
            new = []
    else:
        p = int(np.prod(sub)) if sub else 1
        parts = draw(st.integers(1, 3))
        new = list(_choice(draw, _factorizations(p, parts)))
    dims: list[int] = list(new)
    for i, d in enumerate(new):  # 0 copies the bottom's dim at the same position
        if axis + i < 4 and axis + i < end and shape[axis + i] == d and (axis + i == 0 or draw(st.booleans())):
            dims[i] = 0
    free = [i for i, d in enumerate(dims) if d != 0]
    if free and draw(st.booleans()):
        dims[_choice(draw, free)] = -1
    items: Items = [("shape", [("dim", d) for d in dims])]
    if axis != 0 or draw(st.booleans()):
        items.append(("axis", axis))
    if num_axes != -1 or draw(st.booleans()):
        items.append(("num_axes", num_axes))
    out_shape = shape[:axis] + tuple(new) + shape[end:]
    lay = LayerDef("reshape1", "Reshape", ("data",), ("reshape1",), [("reshape_param", items)])
    return _layer_case("reshape_case", {"data": _data(draw, rng, shape)}, lay, f"-> {out_shape}")


@_case("Crop")
def _crop_case(draw, lim: Limits) -> LayerCase:
    """Crop bottom 0 to bottom 1's shape from ``axis`` on, with no, one shared, or per-axis offsets."""
    rng = _rng(draw)
    shape = _shape(draw, lim, min_side=2)
    axis = _choice(draw, [2, 1, 3])
    ref = list(shape)
    ref[1] = _pick(draw, range(1, lim.max_channels + 1), [lambda v: v != shape[1]]) if axis > 1 else shape[1]
    mode = _choice(draw, ["per_axis", "one", "none"])
    offsets = []
    for i in range(axis, 4):
        ref[i] = draw(st.integers(1, shape[i]))
    if mode == "one":
        room = min(shape[i] - ref[i] for i in range(axis, 4))
        offsets = [draw(st.integers(0, room))]
    elif mode == "per_axis":
        offsets = [draw(st.integers(0, shape[i] - ref[i])) for i in range(axis, 4)]
    items: Items = [] if axis == 2 and draw(st.booleans()) else [("axis", axis)]
    items += [("offset", o) for o in offsets]
    inputs = {"data": _data(draw, rng, shape), "ref": _data(draw, rng, tuple(ref))}
    lay = LayerDef("crop1", "Crop", ("data", "ref"), ("crop1",), [("crop_param", items)] if items else [])
    return _layer_case("crop_case", inputs, lay)


@_case("Permute")
def _permute_case(draw, lim: Limits) -> LayerCase:
    """SSD Permute keeping the batch axis first; sometimes a partial order (the rest appended, as SSD does)."""
    rng = _rng(draw)
    shape = _shape(draw, lim)
    rest = list(draw(st.permutations([1, 2, 3])))
    order = [0, *rest]
    n_written = _choice(draw, [4, 3, 2]) if rest[0] != 1 else 4
    written = order[:n_written]
    # a partial order only when the appended axes come out in increasing order (SSD appends the missing ones sorted)
    if sorted(order[n_written:]) != order[n_written:]:
        written = order
    lay = LayerDef("perm1", "Permute", ("data",), ("perm1",), [("permute_param", [("order", o) for o in written])])
    return _layer_case("permute_case", {"data": _data(draw, rng, shape)}, lay, f"order={order}")


@_case("Tile")
def _tile_case(draw, lim: Limits) -> LayerCase:
    rng = _rng(draw)
    rank = _choice(draw, [4, 2])
    shape = _shape(draw, lim, rank)
    axis = draw(st.integers(1, rank - 1))
    tiles = draw(st.integers(1, 3))
    items = _axis_spelling(draw, axis, rank, 1) + [("tiles", tiles)]
    lay = LayerDef("tile1", "Tile", ("data",), ("tile1",), [("tile_param", items)])
    return _layer_case("tile_case", {"data": _data(draw, rng, shape)}, lay, f"axis={axis} tiles={tiles}")


@_case("ShuffleChannel")
def _shuffle_case(draw, lim: Limits) -> LayerCase:
    rng = _rng(draw)
    g = draw(st.integers(1, 3))
    m = draw(st.integers(1, max(1, lim.max_channels // g)))
    if g > 1 and m == 1 and lim.max_channels // g >= 2:
        m = 2  # a shuffle that moves something
    shape = _shape(draw, lim, channels=(g * m, g * m))
    items = [("group", g)] if g != 1 or draw(st.booleans()) else []
    lay = LayerDef("shuffle1", "ShuffleChannel", ("data",), ("shuffle1",),
                   [("shuffle_channel_param", items)] if items else [])
    return _layer_case("shuffle_case", {"data": _data(draw, rng, shape)}, lay, f"group={g}")


@_case("Silence")
def _silence_case(draw, lim: Limits) -> LayerCase:
    """Silence consumes a blob and produces nothing; a second input stays a net output."""
    rng = _rng(draw)
    shape = _shape(draw, lim)
    inputs = {"data": _data(draw, rng, shape), "keep": _data(draw, rng, _shape(draw, lim, 2, batch=shape[0]))}
    lay = LayerDef("silence1", "Silence", ("data",), ())
    return _layer_case("silence_case", inputs, lay)


@_case("Eltwise")
def _eltwise_case(draw, lim: Limits) -> LayerCase:
    """PROD, SUM (with per-bottom coeff, negatives included) or MAX over 2-3 same-shape bottoms."""
    rng = _rng(draw)
    shape = _shape(draw, lim, _choice(draw, [4, 2]))
    k = draw(st.integers(2, 3))
    op = _choice(draw, ["SUM", "PROD", "MAX"])
    items: Items = [] if op == "SUM" and draw(st.booleans()) else [("operation", Enum(op))]
    if op == "SUM" and draw(st.booleans()):
        items += [("coeff", _choice(draw, [1.0, -1.0, 0.5, 2.0, -0.25])) for _ in range(k)]
    inputs = {f"in{i}": _data(draw, rng, shape) for i in range(k)}
    lay = LayerDef("elt1", "Eltwise", tuple(inputs), ("elt1",), [("eltwise_param", items)] if items else [])
    return _layer_case("eltwise_case", inputs, lay, op)


@_case("Axpy")
def _axpy_case(draw, lim: Limits) -> LayerCase:
    """SENet Axpy: a (N,C,1,1) * x + y."""
    rng = _rng(draw)
    n, c, h, w = _shape(draw, lim)
    inputs = {"a": _data(draw, rng, (n, c, 1, 1)), "x": _data(draw, rng, (n, c, h, w)),
              "y": _data(draw, rng, (n, c, h, w))}
    lay = LayerDef("axpy1", "Axpy", ("a", "x", "y"), ("axpy1",))
    return _layer_case("axpy_case", inputs, lay)


@_case("Reduction")
def _reduction_case(draw, lim: Limits) -> LayerCase:
    """SUM/ASUM/SUMSQ/MEAN over the tail from a non-batch axis, with coeff (axis 0 would reduce the batch away)."""
    rng = _rng(draw)
    rank = _choice(draw, [4, 2])
    shape = _shape(draw, lim, rank)
    op = _choice(draw, ["SUM", "ASUM", "SUMSQ", "MEAN"])
    axis = draw(st.integers(1, rank - 1))
    coeff = _choice(draw, [1.0, 0.5, -2.0])
    items: Items = [] if op == "SUM" and draw(st.booleans()) else [("operation", Enum(op))]
    items += [("axis", axis - rank if draw(st.booleans()) else axis)]
    if coeff != 1.0 or draw(st.booleans()):
        items.append(("coeff", coeff))
    lay = LayerDef("red1", "Reduction", ("data",), ("red1",), [("reduction_param", items)])
    return _layer_case("reduction_case", {"data": _data(draw, rng, shape)}, lay, f"{op} axis={axis}")


@_case("ArgMax")
def _argmax_case(draw, lim: Limits) -> LayerCase:
    """ArgMax with or without axis, top_k up to the axis size, out_max_val."""
    rng = _rng(draw)
    shape = _shape(draw, lim)
    use_axis = draw(st.booleans())
    items: Items = []
    if use_axis:
        axis = draw(st.integers(1, 3))
        items += [("axis", axis)]
        kmax = shape[axis]
    else:
        kmax = int(np.prod(shape[1:]))
    top_k = draw(st.integers(1, min(kmax, 4)))
    if top_k != 1 or draw(st.booleans()):
        items.append(("top_k", top_k))
    if draw(st.booleans()):
        items.append(("out_max_val", True))
    lay = LayerDef("argmax1", "ArgMax", ("data",), ("argmax1",), [("argmax_param", items)] if items else [])
    return _layer_case("argmax_case", {"data": _data(draw, rng, shape)}, lay)


@_case("Upsample")
def _upsample_case(draw, lim: Limits) -> LayerCase:
    """Nearest upsampling by ``scale`` (default 2), per-axis ``scale_h``/``scale_w``, or an output size
    ``upsample_h``/``upsample_w`` (a whole multiple of the input)."""
    rng = _rng(draw)
    shape = _shape(draw, lim, sides=((1, 5), (1, 5)))
    mode = _choice(draw, ["scale", "hw", "default", "size"])
    if mode == "scale":
        items: Items = [("scale", draw(st.integers(1, 3)))]
    elif mode in ("hw", "size"):
        sh, sw = _distinct(draw, [(1, 3), (1, 3)])
        # the fork's output-size spelling must be a whole multiple of the input (nearest upsampling)
        items = [("scale_h", sh), ("scale_w", sw)] if mode == "hw" else [("upsample_h", shape[2] * sh),
                                                                       ("upsample_w", shape[3] * sw)]
    else:
        items = []
    lay = LayerDef("up1", "Upsample", ("data",), ("up1",), [("upsample_param", items)] if items else [])
    return _layer_case("upsample_case", {"data": _data(draw, rng, shape)}, lay)


@_case("Interp")
def _interp_case(draw, lim: Limits) -> LayerCase:
    """Bilinear (align-corners) Interp to an explicit size, by zoom_factor, by shrink_factor, or shrink then zoom;
    sometimes with deeplab's cropping pads (pad_beg/pad_end <= 0)."""
    rng = _rng(draw)
    shape = _shape(draw, lim, sides=((1, lim.max_side), (1, lim.max_side)))
    mode = _choice(draw, ["size", "zoom", "shrink", "both"])
    items: Items = []
    if mode == "size":
        oh, ow = _distinct(draw, [(1, lim.max_side + 4), (1, lim.max_side + 4)], shape[:2])
        items = [("height", oh), ("width", ow)]
    if mode in ("shrink", "both"):
        items.append(("shrink_factor", draw(st.integers(1, 3))))
    if mode in ("zoom", "both"):
        items.append(("zoom_factor", draw(st.integers(1, 3))))
    if min(shape[2:]) >= 3 and draw(st.integers(0, 2)) == 0:  # deeplab's pads are <= 0: they crop the input
        items += [("pad_beg", _choice(draw, [0, -1])), ("pad_end", -1)]
    lay = LayerDef("interp1", "Interp", ("data",), ("interp1",), [("interp_param", items)])
    return _layer_case("interp_case", {"data": _data(draw, rng, shape)}, lay, mode)


@_case("PriorBox")
def _priorbox_case(draw, lim: Limits) -> LayerCase:
    """SSD PriorBox over a feature map and an image blob: min/max sizes, aspect ratios, flip, clip, variances,
    explicit or implied image size and step, offset."""
    rng = _rng(draw)
    n, c, h, w = _shape(draw, lim, sides=((1, 5), (1, 5)))
    ih, iw = _distinct(draw, [(h * 4, h * 12), (w * 4, w * 12)])
    nmin = draw(st.integers(1, 2))
    mins = sorted(draw(st.lists(st.sampled_from([8.0, 12.5, 20.0, 32.0]), min_size=nmin, max_size=nmin,
                                unique=True)))
    items: Items = [("min_size", m) for m in mins]
    if draw(st.booleans()):
        items += [("max_size", m * _choice(draw, [1.5, 2.0])) for m in mins]
    ars = draw(st.lists(st.sampled_from([2.0, 3.0, 0.5]), max_size=2, unique=True))
    items += [("aspect_ratio", a) for a in ars]
    flip = draw(st.booleans())
    if not flip or draw(st.booleans()):
        items.append(("flip", flip))
    if draw(st.booleans()):
        items.append(("clip", True))
    var = _choice(draw, [[], [0.1], [0.1, 0.1, 0.2, 0.2]])
    items += [("variance", v) for v in var]
    img = _choice(draw, ["blob", "size", "hw"])
    if img == "size":
        items.append(("img_size", _choice(draw, [300, 64])))
    elif img == "hw":
        items += [("img_h", ih * 2), ("img_w", iw)]
    step = _choice(draw, ["implied", "step", "hw"])
    if step == "step":
        items.append(("step", _choice(draw, [8.0, 16.0])))
    elif step == "hw":
        items += [("step_h", 8.0), ("step_w", 12.0)]
    if draw(st.booleans()):
        items.append(("offset", _choice(draw, [0.5, 0.25])))
    inputs = {"fmap": _data(draw, rng, (n, c, h, w)), "image": _data(draw, rng, (n, 3, ih, iw))}
    lay = LayerDef("prior1", "PriorBox", ("fmap", "image"), ("prior1",), [("prior_box_param", items)])
    return _layer_case("priorbox_case", inputs, lay)


@_case("DetectionOutput")
def _detection_output_case(draw, lim: Limits) -> LayerCase:
    """SSD DetectionOutput on decoded-ready inputs: loc offsets, per-prior class probabilities, valid priors with
    variances; one image (deploy nets run N=1)."""
    rng = _rng(draw)
    num_priors = draw(st.integers(2, 12))
    num_classes = draw(st.integers(2, 4))
    share = draw(st.integers(0, 3)) != 0
    bg = _choice(draw, [0, num_classes - 1] if share else [0, -1])  # Caffe aborts on -1 when shared
    code = _choice(draw, ["CENTER_SIZE", "CORNER"])
    var_in_target = draw(st.integers(0, 4)) == 0
    ctr = rng.uniform(0.1, 0.9, size=(num_priors, 2))
    size = rng.uniform(0.1, 0.5, size=(num_priors, 2))
    boxes = np.concatenate([ctr - size / 2, ctr + size / 2], axis=1)
    variances = np.tile(np.array([0.1, 0.1, 0.2, 0.2]), (num_priors, 1))
    prior = np.stack([boxes.reshape(-1), variances.reshape(-1)])[None].astype(np.float32)
    nloc = num_priors * 4 * (1 if share else num_classes)
    loc = _normal(rng, (1, nloc), 0.5)
    logits = rng.standard_normal((num_priors, num_classes)) * 2.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    conf = probs.reshape(1, -1).astype(np.float32)
    nms: Items = [("nms_threshold", _choice(draw, [0.45, 0.3, 0.7]))]
    if draw(st.booleans()):
        nms.append(("top_k", draw(st.integers(1, num_priors))))
    items: Items = [("num_classes", num_classes)]
    if not share:
        items.append(("share_location", False))
    items += [("background_label_id", bg), ("nms_param", nms), ("code_type", Enum(code))]
    if var_in_target:
        items.append(("variance_encoded_in_target", True))
    if draw(st.booleans()):
        items.append(("keep_top_k", draw(st.integers(1, 8))))
    items.append(("confidence_threshold", _choice(draw, [0.01, 0.2, 0.5])))
    inputs = {"loc": loc, "conf": conf, "prior": prior}
    lay = LayerDef("detection_out", "DetectionOutput", ("loc", "conf", "prior"), ("detection_out",),
                   [("detection_output_param", items)])
    return _layer_case("detection_case", inputs, lay)


# ----------------------------------------------------------------------------------------------------------------------
# Public entry points: single layers
# ----------------------------------------------------------------------------------------------------------------------

def _validate_types(types: Iterable[str] | str | None) -> list[str]:
    if types is None:
        return sorted(STRATEGIES.types())
    if isinstance(types, str):
        types = [types]
    out = []
    for t in types:
        c = canonical_type(t)
        if c not in STRATEGIES:
            raise InvalidArgument(f"types: no strategy for Caffe type {t!r}; known: {', '.join(sorted(STRATEGIES))}")
        out.append(c)
    if not out:
        raise InvalidArgument("types must name at least one Caffe type")
    return out


def layer_case(caffe_type: str, *, max_side: int = 9, max_channels: int = 6, max_batch: int = 2
               ) -> st.SearchStrategy[LayerCase]:
    """A one-layer net of ``caffe_type`` (Input layer(s) + the layer), with seeded inputs and weights."""
    (t,) = _validate_types([caffe_type])
    lim = _limits(max_side, max_channels, max_batch)
    return STRATEGIES[t](lim)


def _limits(max_side: int, max_channels: int, max_batch: int) -> Limits:
    try:
        return Limits(max_side=max_side, max_channels=max_channels, max_batch=max_batch)
    except InvalidArgument:
        raise
    except Exception as exc:  # pragma: no cover - defensive
        raise InvalidArgument(str(exc)) from None


def layer_cases(types: Iterable[str] | str | None = None, *, max_side: int = 9, max_channels: int = 6,
                max_batch: int = 2) -> st.SearchStrategy[LayerCase]:
    """A one-layer net of one of ``types`` (default: every catalogued type), with seeded inputs and weights.

    ``max_side`` bounds the spatial sizes of the inputs (>= 3), ``max_channels`` the channel counts (>= 3),
    ``max_batch`` the batch (>= 1).  Every axis gets a distinct size wherever the bounds allow."""
    ts = _validate_types(types)
    lim = _limits(max_side, max_channels, max_batch)
    return st.one_of([STRATEGIES[t](lim) for t in ts])


# ----------------------------------------------------------------------------------------------------------------------
# Whole random nets
# ----------------------------------------------------------------------------------------------------------------------

NET_OPS = ("conv", "dwconv", "deconv", "pool", "act", "bn_scale", "lrn", "residual", "branch_concat",
           "branch_eltwise", "slice", "dropout")
HEADS = ("none", "ip_implicit", "flatten_ip", "gap_ip_softmax")


class _NetBuilder:
    def __init__(self, draw, rng: np.random.Generator, lim: Limits) -> None:
        self.draw, self.rng, self.lim = draw, rng, lim
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.layers: list[LayerDef] = []
        self.counts: dict[str, int] = {}

    def name(self, prefix: str) -> str:
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        return f"{prefix}{self.counts[prefix]}"

    def add(self, lay: LayerDef, *shapes: tuple[int, ...]) -> LayerDef:
        self.layers.append(lay)
        for t, s in zip(lay.tops, shapes):
            self.shapes[t] = s
        return lay

    def four_d(self) -> list[str]:
        return [b for b, s in self.shapes.items() if len(s) == 4]

    def pick_bottom(self, min_side: int = 1) -> str | None:
        cands = [b for b in self.four_d() if min(self.shapes[b][2:]) >= min_side]
        if not cands:
            return None
        # prefer the most recent blob (chains) but allow any (branches)
        latest = cands[-1]
        return latest if self.draw(st.integers(0, 2)) else _choice(self.draw, cands)

    # -- ops -----------------------------------------------------------------------------------------------------
    def conv(self, bottom: str, *, same: bool = False, num_output: int | None = None, depthwise: bool = False
             ) -> str:
        draw, rng = self.draw, self.rng
        n, c, h, w = self.shapes[bottom]
        if same:
            k = _choice(draw, [1, 3])
            kh, kw = (k, k) if draw(st.booleans()) else (k, _choice(draw, [1, 3]))
            cp = ConvParams((kh, kw), (1, 1), ((kh - 1) // 2, (kw - 1) // 2), (1, 1))
        else:
            kern, pad, dil = [], [], []
            for side in (h, w):
                k = draw(st.integers(1, min(5, side + 2)))
                p = draw(st.integers(0, k - 1))
                d = 2 if (k > 1 and 2 * (k - 1) + 1 <= side + 2 * p and draw(st.integers(0, 3)) == 0) else 1
                if d * (k - 1) + 1 > side + 2 * p:
                    k, p, d = 1, 0, 1
                kern.append(k), pad.append(p), dil.append(d)
            stride = tuple(draw(st.integers(1, 2)) for _ in range(2))
            cp = ConvParams(tuple(kern), stride, tuple(pad), tuple(dil),  # type: ignore[arg-type]
                            (_choice(draw, ["pair", "hw"]), "omit", "omit", "omit"))
        oh, ow = cp.conv_out(h, w)
        if depthwise:
            g = c
            cout = c * draw(st.integers(1, max(1, self.lim.max_channels // c)))
        else:
            g = 1
            if num_output is None and c % 2 == 0 and draw(st.integers(0, 3)) == 0:
                g = 2
            per_group = max(1, self.lim.max_channels // g)
            cout = num_output if num_output is not None else g * draw(st.integers(1, per_group))
            if cout % g:
                g = 1
        name = self.name("convdw" if depthwise else "conv")
        kh, kw = cp.kernel
        blobs = (_weights(rng, (cout, c // g, kh, kw), (c // g) * kh * kw), _normal(rng, (cout,), 0.3))
        items: Items = [("num_output", cout)] + ([("group", g)] if g > 1 or depthwise else []) + cp.items()
        self.add(LayerDef(name, "ConvolutionDepthwise" if depthwise else "Convolution", (bottom,), (name,),
                          [("convolution_param", items)], blobs), (n, cout, oh, ow))
        return name

    def deconv(self, bottom: str) -> str:
        draw, rng = self.draw, self.rng
        n, c, h, w = self.shapes[bottom]
        k = draw(st.integers(2, 4))
        cp = ConvParams((k, k), (2, 2), (draw(st.integers(0, (k - 1) // 2)),) * 2, (1, 1))
        oh, ow = cp.deconv_out(h, w)
        cout = draw(st.integers(1, self.lim.max_channels))
        name = self.name("deconv")
        blobs = (_weights(rng, (c, cout, k, k), c * k * k / 4), _normal(rng, (cout,), 0.3))
        self.add(LayerDef(name, "Deconvolution", (bottom,), (name,),
                          [("convolution_param", [("num_output", cout)] + cp.items())], blobs), (n, cout, oh, ow))
        return name

    def pool(self, bottom: str) -> str:
        draw = self.draw
        n, c, h, w = self.shapes[bottom]
        method = _choice(draw, ["MAX", "AVE"])
        kern, pad, stride = [], [], []
        for side in (h, w):
            k = draw(st.integers(1, min(3, side)))
            p = draw(st.integers(0, k - 1))
            s = draw(st.integers(1, 2 if p > 0 else min(2, k)))
            kern.append(k), pad.append(p), stride.append(s)
        pp = PoolParams(method, tuple(kern), tuple(stride), tuple(pad), draw(st.booleans()),  # type: ignore[arg-type]
                        "round_mode", ("pair", "pair", "pair"))
        oh, ow = pp.out(h, w)
        name = self.name("pool")
        self.add(LayerDef(name, "Pooling", (bottom,), (name,), [("pooling_param", pp.items())]), (n, c, oh, ow))
        return name

    def act(self, bottom: str) -> str:
        draw, rng = self.draw, self.rng
        kind = _choice(draw, ["ReLU", "ReLU", "PReLU", "Sigmoid", "TanH", "ELU", "leaky"])
        name = self.name("relu" if kind in ("ReLU", "leaky") else kind.lower())
        inplace = draw(st.booleans())
        top = bottom if inplace else name
        shape = self.shapes[bottom]
        params: Items = []
        blobs: tuple = ()
        if kind == "leaky":
            kind, params = "ReLU", [("relu_param", [("negative_slope", 0.1)])]
        elif kind == "PReLU":
            blobs = (_uniform(rng, (shape[1],), 0.0, 0.5),)
        self.add(LayerDef(name, kind, (bottom,), (top,), params, blobs), shape)
        return top

    def bn_scale(self, bottom: str) -> str:
        rng = self.rng
        shape = self.shapes[bottom]
        c = shape[1]
        f = np.float32(_choice(self.draw, [999.98, 1.0, 3.5]))
        mean, var = _normal(rng, (c,), 0.5), _uniform(rng, (c,), 0.3, 2.0)
        bn = self.name("bn")
        self.add(LayerDef(bn, "BatchNorm", (bottom,), (bottom,), [("batch_norm_param", [("use_global_stats", True)])],
                          ((mean * f).astype(np.float32), (var * f).astype(np.float32), np.array([f], np.float32))),
                 shape)
        sc = self.name("scale")
        self.add(LayerDef(sc, "Scale", (bottom,), (bottom,), [("scale_param", [("bias_term", True)])],
                          (_uniform(rng, (c,), 0.5, 1.5), _normal(rng, (c,), 0.2))), shape)
        return bottom

    def lrn(self, bottom: str) -> str:
        draw = self.draw
        region = _choice(draw, ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
        name = self.name("norm")
        items: Items = [("local_size", 3), ("alpha", _choice(draw, [1e-4, 0.5])), ("beta", 0.75),
                        ("norm_region", Enum(region))]
        if region == "ACROSS_CHANNELS":
            items.append(("k", 2.0))
        self.add(LayerDef(name, "LRN", (bottom,), (name,), [("lrn_param", items)]), self.shapes[bottom])
        return name

    def dropout(self, bottom: str) -> str:
        name = self.name("drop")
        self.add(LayerDef(name, "Dropout", (bottom,), (bottom,), [("dropout_param", [("dropout_ratio", 0.5)])]),
                 self.shapes[bottom])
        return bottom

    def residual(self, bottom: str) -> str:
        """conv (same geometry, same channels) -> ReLU, then Eltwise SUM (sometimes with coeff) with the bottom."""
        c = self.shapes[bottom][1]
        a = self.conv(bottom, same=True, num_output=c)
        a = self.act(a)
        name = self.name("res")
        items: Items = []
        if self.draw(st.booleans()):
            items = [("coeff", 1.0), ("coeff", _choice(self.draw, [0.5, -1.0]))]
        self.add(LayerDef(name, "Eltwise", (bottom, a), (name,), [("eltwise_param", items)] if items else []),
                 self.shapes[bottom])
        return name

    def branches(self, bottom: str, join: str) -> str:
        """2-3 branches from one blob (same spatial size), joined by Concat (channels may differ) or Eltwise."""
        draw = self.draw
        k = draw(st.integers(2, 3))
        cout = draw(st.integers(1, self.lim.max_channels))
        tops = []
        for _ in range(k):
            t = self.conv(bottom, same=True, num_output=cout if join == "eltwise" else None)
            if draw(st.booleans()):
                t = self.act(t)
            tops.append(t)
        shapes = [self.shapes[t] for t in tops]
        if join == "concat":
            name = self.name("concat")
            out = (shapes[0][0], sum(s[1] for s in shapes), *shapes[0][2:])
            self.add(LayerDef(name, "Concat", tuple(tops), (name,)), out)
        else:
            name = self.name("elt")
            op = _choice(draw, ["SUM", "PROD", "MAX"])
            items: Items = [("operation", Enum(op))]
            if op == "SUM" and draw(st.booleans()):
                items += [("coeff", _choice(draw, [1.0, -0.5, 2.0])) for _ in tops]
            self.add(LayerDef(name, "Eltwise", tuple(tops), (name,), [("eltwise_param", items)]), shapes[0])
        return name

    def slice(self, bottom: str) -> str:
        n, c, h, w = self.shapes[bottom]
        if c < 2:
            return self.act(bottom)
        p = self.draw(st.integers(1, c - 1))
        name = self.name("slice")
        tops = (f"{name}_a", f"{name}_b")
        self.add(LayerDef(name, "Slice", (bottom,), tops, [("slice_param", [("axis", 1), ("slice_point", p)])]),
                 (n, p, h, w), (n, c - p, h, w))
        return tops[self.draw(st.integers(0, 1))]

    def head(self, bottom: str, kind: str) -> None:
        rng = self.rng
        shape = self.shapes[bottom]
        nout = self.draw(st.integers(2, self.lim.max_channels + 1))
        if kind == "gap_ip_softmax":
            pool = self.name("pool")
            self.add(LayerDef(pool, "Pooling", (bottom,), (pool,),
                              [("pooling_param", [("pool", Enum("AVE")), ("global_pooling", True)])]),
                     (shape[0], shape[1], 1, 1))
            bottom, shape = pool, self.shapes[pool]
        if kind == "flatten_ip":
            fl = self.name("flatten")
            self.add(LayerDef(fl, "Flatten", (bottom,), (fl,)), (shape[0], int(np.prod(shape[1:]))))
            bottom = fl
        k = int(np.prod(shape[1:]))
        fc = self.name("fc")
        self.add(LayerDef(fc, "InnerProduct", (bottom,), (fc,), [("inner_product_param", [("num_output", nout)])],
                          (_weights(rng, (nout, k), k), _normal(rng, (nout,), 0.3))), (shape[0], nout))
        if kind == "gap_ip_softmax" or self.draw(st.booleans()):
            prob = self.name("prob")
            self.add(LayerDef(prob, "Softmax", (fc,), (prob,)), (shape[0], nout))


def _draw_net(draw, max_layers: int, max_inputs: int, lim: Limits, ops: tuple[str, ...], heads: tuple[str, ...]
              ) -> NetCase:
    rng = _rng(draw)
    b = _NetBuilder(draw, rng, lim)
    n_in = draw(st.integers(1, max_inputs))
    n = draw(st.integers(1, lim.max_batch))
    h, w = _distinct(draw, [(3, lim.max_side), (3, lim.max_side)], (n,))
    inputs: dict[str, np.ndarray] = {}
    for i in range(n_in):
        c = _pick(draw, range(1, lim.max_channels + 1), [lambda v: v not in (n, h, w)])
        name = "data" if i == 0 else f"data{i + 1}"
        inputs[name] = _data(draw, rng, (n, c, h, w))
        b.shapes[name] = (n, c, h, w)
    if n_in > 1:  # join the inputs: Concat on channels (several inputs feeding one graph)
        cat = b.name("concat_in")
        tops = tuple(inputs)
        b.add(LayerDef(cat, "Concat", tops, (cat,)), (n, sum(b.shapes[t][1] for t in tops), h, w))
    target = draw(st.integers(1, max_layers))
    head = _choice(draw, list(heads))
    while len(b.layers) < target:
        op = _choice(draw, list(ops))
        bottom = b.pick_bottom()
        if bottom is None:
            break
        bh, bw = b.shapes[bottom][2:]
        if op == "conv":
            b.conv(bottom)
        elif op == "dwconv":
            b.conv(bottom, depthwise=True)
        elif op == "deconv" and max(bh, bw) <= lim.max_side:
            b.deconv(bottom)
        elif op == "pool":
            b.pool(bottom)
        elif op == "bn_scale":
            b.bn_scale(bottom)
        elif op == "lrn":
            b.lrn(bottom)
        elif op == "residual":
            b.residual(bottom)
        elif op == "branch_concat":
            b.branches(bottom, "concat")
        elif op == "branch_eltwise":
            b.branches(bottom, "eltwise")
        elif op == "slice":
            b.slice(bottom)
        elif op == "dropout":
            b.dropout(bottom)
        else:
            b.act(bottom)
    if head != "none":
        last = b.four_d()[-1] if b.four_d() else None
        if last is not None:
            b.head(last, head)
    return NetCase(name="random_net", inputs=inputs, layers=tuple(b.layers),
                   note=f"{len(b.layers)} layers, head={head}")


def nets(*, max_layers: int = 6, max_inputs: int = 2, max_side: int = 9, max_channels: int = 6, max_batch: int = 2,
         ops: Sequence[str] = NET_OPS, heads: Sequence[str] = HEADS) -> st.SearchStrategy[NetCase]:
    """Random nets: chains and DAGs (branches joined by Concat or Eltwise, residual Eltwise SUM with coeff), in-place
    activations/BatchNorm/Scale/Dropout, several inputs (joined by a Concat), and a classifier head (InnerProduct on a
    4-D blob, Flatten + InnerProduct, or global AVE pooling + InnerProduct + Softmax).

    ``max_layers`` bounds the number of drawn building blocks (a block is 1-8 layers); ``ops`` and ``heads`` choose
    from :data:`NET_OPS` and :data:`HEADS`."""
    _check_int("max_layers", max_layers, 1, 200)
    _check_int("max_inputs", max_inputs, 1, 8)
    lim = _limits(max_side, max_channels, max_batch)
    bad = [o for o in ops if o not in NET_OPS]
    if bad or not ops:
        raise InvalidArgument(f"ops={list(ops)!r}: each must be one of {', '.join(NET_OPS)} (and at least one)")
    bad = [h for h in heads if h not in HEADS]
    if bad or not heads:
        raise InvalidArgument(f"heads={list(heads)!r}: each must be one of {', '.join(HEADS)} (and at least one)")
    return _composite(_draw_net, max_layers, max_inputs, lim, tuple(ops), tuple(heads))
