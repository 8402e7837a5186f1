"""Element-wise activation cases, PReLU, Dropout, Softmax."""

from __future__ import annotations

from typing import Callable

import numpy as np
from hypothesis import strategies as st

from ._arrays import Limits, _any_rank, _axis_spelling, _choice, _data, _layer_case, _normal, _rng, _shape, _uniform
from ._render import Items, LayerCase, LayerDef
from .registry import _case, _maybe_inplace


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
