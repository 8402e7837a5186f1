"""The activation memory budget: refuse a net before anything is allocated."""

from __future__ import annotations

import os

from ..errors import ResourceError
from ._checks import _fmt, count
from ._infer import NetShapes

DEFAULT_BUDGET_BYTES = 8 * 1024**3  # 8 GiB; override with CAFFE_HARNESS_MEMORY_BUDGET (bytes, or 512M / 4G / 2GiB)



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
