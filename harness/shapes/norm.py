"""LRN, MVN, BatchNorm, Normalize: same-shape layers with their checks and statistics blobs."""

from __future__ import annotations

from ..errors import ShapeError
from ..net import Layer
from ._checks import Shape, _min_rank, _rank, _same, _who
from .registry import PARAM_SHAPES, SHAPES


@SHAPES.register("LRN")
def _lrn_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """LRN (``lrn_layer.cpp``): ``CHECK_EQ(size % 2, 1) "LRN only supports odd values for local_size"``; 4-D."""
    out = _same(layer, bottoms)
    lp = layer.p("lrn_param")
    if lp.local_size < 1 or lp.local_size % 2 != 1:
        raise ShapeError(f"{_who(layer)}: lrn_param.local_size={lp.local_size} must be odd (LRN only supports odd "
                         f"values)")
    _rank(layer, bottoms[0], 4)
    return out


@SHAPES.register("MVN")
def _mvn_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """MVN: same shape (means over H*W, or C*H*W with across_channels)."""
    return _same(layer, bottoms)


def _channels(shape: Shape) -> int:
    """Caffe's ``channels``: ``shape[1]`` (1 for a 1-D blob, as BatchNorm has it)."""
    return 1 if len(shape) == 1 else int(shape[1])


@SHAPES.register("BatchNorm")
def _bn_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """BatchNorm: same shape; statistics per channel ``shape[1]``."""
    return _same(layer, bottoms)


@PARAM_SHAPES.register("BatchNorm")
def _bn_params(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """``batch_norm_layer.cpp``: mean ``(C,)``, variance ``(C,)``, moving-average factor ``(1,)``; NVCaffe's
    ``scale_bias: true`` adds scale ``(C,)`` and bias ``(C,)``."""
    c = _channels(bottoms[0])
    out = [(c,), (c,), (1,)]
    if layer.p("batch_norm_param").scale_bias:
        out += [(c,), (c,)]
    return out


@SHAPES.register("Normalize")
def _normalize_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """SSD Normalize: same shape; at least 2 axes."""
    out = _same(layer, bottoms)
    _min_rank(layer, bottoms[0], 2)
    return out


@PARAM_SHAPES.register("Normalize")
def _normalize_params(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """SSD ``normalize_layer.cpp``: the scale blob is 0-D (one value) when ``channel_shared`` (the default), else
    ``(C,)``.  Real SSD caffemodels store the shared scale with an empty shape, as the golden ``ssd_ops`` case does."""
    return [()] if layer.p("norm_param").channel_shared else [(bottoms[0][1],)]
