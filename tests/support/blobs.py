"""The one closeness rule of the suite: :func:`assert_blob_close` and :func:`max_rel_err`.

:func:`assert_blob_close` asserts exactly this, about ``got`` and the expected blob ``want``:

1. ``got.shape == want.shape``;
2. NaN positions are equal (a NaN where ``want`` is not NaN fails, and the other way round);
3. over the other elements, ``max|got - want| <= max(atol, rtol * max|want|)`` (computed in float64; an infinity
   that is not matched exactly fails).

``rtol`` and ``atol`` have to be given (``rtol=0, atol=0`` is exact equality), so every test states its tolerance.
"""

from __future__ import annotations

import numpy as np


def max_rel_err(got, want) -> float:
    """``max|got - want| / max|want|`` in float64 (0 for equal or empty blobs; inf when ``want`` is all zero and
    ``got`` is not).  Shapes must be equal."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"shape {got.shape} != expected {want.shape}"
    if not want.size:
        return 0.0
    err = float(np.max(np.abs(got - want)))
    if err == 0:
        return 0.0
    scale = float(np.max(np.abs(want)))
    return err / scale if scale else float("inf")


def assert_blob_close(got, want, what: str = "", *, rtol: float, atol: float = 0.0) -> float:
    """Assert the rule in the module docstring; returns ``max|got - want| / max|want|`` over the non-NaN elements."""
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != expected {want.shape}"
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan), f"{what}: NaN positions differ"
    g, w = got[~nan].astype(np.float64), want[~nan].astype(np.float64)
    if not w.size:
        return 0.0
    diff = np.abs(g - w)
    diff[(g == w)] = 0.0  # equal infinities
    err, scale = float(np.max(diff)), float(np.max(np.abs(w)))
    bound = max(atol, rtol * scale)
    if not err <= bound:
        where = np.unravel_index(int(np.nanargmax(np.where(np.isnan(diff), np.inf, diff))), diff.shape)
        raise AssertionError(f"{what}: max|got - expected| = {err:.3g} > max(atol={atol:.3g}, rtol={rtol:.3g} x "
                             f"max|expected| {scale:.3g}) = {bound:.3g}; worst: got {g[where]!r}, expected "
                             f"{w[where]!r}")
    return max_rel_err(g, w)
