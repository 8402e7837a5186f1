"""LRN, MVN, BatchNorm, Normalize cases."""

from __future__ import annotations


import numpy as np
from hypothesis import strategies as st

from ._arrays import Limits, _choice, _data, _distinct, _layer_case, _normal, _pick, _rng, _shape, _uniform
from ._render import Enum, Items, LayerCase, LayerDef
from .registry import _case, _maybe_inplace


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
