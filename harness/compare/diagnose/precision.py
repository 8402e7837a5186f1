"""Reduced precision: float16 / bfloat16 / TF32 arithmetic simulated by rounding inputs and weights."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ...net import Layer
from ._common import _Cues, _F64, _rel, _run, _with_blobs


# Reduced-precision rounding (round to nearest even on float32 bits).
def _round_bits(x: np.ndarray, drop: int) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):  # beyond the float32 range: inf, as float32 arithmetic has it
        f = np.asarray(x, dtype=np.float32).copy()
    u = f.view(np.uint32)
    finite = np.isfinite(f)
    half = np.uint32((1 << (drop - 1)) - 1)
    lsb = (u >> np.uint32(drop)) & np.uint32(1)
    r = (u + half + lsb) & np.uint32(~((1 << drop) - 1) & 0xFFFFFFFF)
    u[finite] = r[finite]
    return f.astype(_F64)


_FORMATS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], bool, str]] = {
    # name: (rounding, output rounded too, fix)
    "TF32": (lambda a: _round_bits(a, 13), False,
             "turn TF32 off: tf.config.experimental.enable_tensor_float_32_execution(False) (GPU convolutions and "
             "matmuls round inputs to 10 mantissa bits by default on Ampere and newer)"),
    "float16": (lambda a: np.asarray(a, dtype=np.float32).astype(np.float16).astype(_F64), True,
                "compute this layer in float32: keras.mixed_precision.set_global_policy('float32') or drop "
                "dtype='float16' / mixed_float16 from the layer"),
    "bfloat16": (lambda a: _round_bits(a, 16), True,
                 "compute this layer in float32: drop dtype='bfloat16' / mixed_bfloat16 from the layer"),
}


def _simulated(span: list[Layer], xs: list[np.ndarray], rnd: Callable[[np.ndarray], np.ndarray],
               round_out: bool) -> np.ndarray:
    """The span run with ``rnd``-rounded inputs and weights (and outputs, ``round_out``); beyond the format's range
    the values are inf, as that arithmetic has them, with no NumPy warning reaching the user."""
    with np.errstate(over="ignore", invalid="ignore"):
        y = _run(_with_blobs(span[0], [rnd(b) for b in span[0].blobs]), [rnd(x) for x in xs])
        for lay in span[1:]:
            y = _run(_with_blobs(lay, [rnd(b) for b in lay.blobs]), [rnd(y) if round_out else y])
        return rnd(y) if round_out else y


def _reduced_precision(span: list[Layer], xs: list[np.ndarray], ref: np.ndarray, ker: np.ndarray, e0: float,
                       cues: _Cues) -> tuple[str, float, str, str] | None:
    if e0 > 5e-2:
        return None
    best = None
    for name, (rnd, round_out, fix) in _FORMATS.items():
        try:
            y = _simulated(span, xs, rnd, round_out)
        except Exception:
            continue
        noise = _rel(y, ref)
        if not (noise > 0 and math.isfinite(noise)):
            continue
        e_f = _rel(ker, y)
        band = 1.0 - abs(math.log10(e0 / noise)) / 1.3
        if band <= 0:
            continue
        conf = 0.9 * band
        if e_f < 0.7 * e0:
            conf = min(0.97, conf + 0.1)
        if cues.structured:
            conf *= 0.3
        if best is None or conf > best[1]:
            best = (name, conf, noise, e_f)
    if best is None:
        return None
    name, conf, noise, e_f = best
    expl = (f"the error (relative {e0:.1e}) is small and spread evenly over the output, the size {name} arithmetic "
            f"gives here (re-running with {name}-rounded inputs and weights lands {noise:.1e} from float64"
            f"{'' if e_f >= 0.7 * e0 else f' and {e_f:.1e} from Keras'})")
    return ("reduced_precision", conf, expl, _FORMATS[name][2])
