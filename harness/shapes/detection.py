"""SSD PriorBox and DetectionOutput."""

from __future__ import annotations

from ..errors import ShapeError
from ..net import Layer
from ..params import prior_box_params
from ._checks import Shape, _fmt, _n_bottoms, _n_tops, _rank, _who, count
from .registry import SHAPES


def prior_aspect_ratios(layer: Layer) -> list[float]:
    """SSD ``prior_box_layer.cpp``: start with 1.0; add each ``aspect_ratio`` not already present (|diff| < 1e-6) and,
    with ``flip``, its reciprocal."""
    pb = prior_box_params(layer)
    ars = [1.0]
    for ar in pb.aspect_ratios:
        if any(abs(ar - x) < 1e-6 for x in ars):
            continue
        if ar <= 0:
            raise ShapeError(f"{_who(layer)}: prior_box_param.aspect_ratio={ar} must be positive")
        ars.append(float(ar))
        if pb.flip:
            ars.append(1.0 / float(ar))
    return ars


def num_priors(layer: Layer) -> int:
    """Priors per feature-map cell: ``len(aspect_ratios) * len(min_size) + len(max_size)`` (sizes checked by
    :func:`harness.params.prior_box_params`)."""
    pb = prior_box_params(layer)
    return len(prior_aspect_ratios(layer)) * len(pb.min_sizes) + len(pb.max_sizes)


@SHAPES.register("PriorBox")
def _priorbox_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """PriorBox (SSD): bottoms (feature map, image); top ``(1, 2, H * W * num_priors * 4)`` (boxes, variances).
    The fields (``variance`` 0, 1 or 4 values; ``img_size`` excludes ``img_h``/``img_w``, ``step`` excludes
    ``step_h``/``step_w``) are checked by :func:`harness.params.prior_box_params`."""
    _n_bottoms(layer, bottoms, exact=2)
    _n_tops(layer, exact=1)
    prior_box_params(layer)
    f = bottoms[0]
    _rank(layer, f, 4, "feature map")
    _rank(layer, bottoms[1], 4, "image")
    return [(1, 2, f[2] * f[3] * num_priors(layer) * 4)]


def detection_output_rows(layer: Layer, bottoms: list[Shape]) -> int:
    """The number of rows of DetectionOutput's ``(1, 1, rows, 7)`` top is data dependent.  This returns an upper bound:
    ``N * keep_top_k`` when ``keep_top_k > -1``, else ``N * num_priors * (num_classes - 1 if a background class)``
    (each prior kept at most once per class after NMS)."""
    dp = layer.p("detection_output_param")
    n = bottoms[0][0]
    prior_count = bottoms[2][2] // 4
    if dp.keep_top_k > -1:
        return max(n * dp.keep_top_k, 1)
    classes = dp.num_classes - (1 if 0 <= dp.background_label_id < dp.num_classes else 0)
    per_class = prior_count
    if dp.HasField("nms_param") and dp.nms_param.HasField("top_k") and dp.nms_param.top_k > -1:
        per_class = min(per_class, dp.nms_param.top_k)
    return max(n * classes * per_class, 1)


@SHAPES.register("DetectionOutput")
def _detout_shapes(layer: Layer, bottoms: list[Shape]) -> list[Shape]:
    """DetectionOutput (SSD): bottoms loc ``(N, P*L*4)``, conf ``(N, P*num_classes)``, priors ``(1, 2, P*4)`` with L
    = 1 if share_location else num_classes; top ``(1, 1, rows, 7)`` = [image, label, score, xmin, ymin, xmax, ymax].
    ``rows`` is data dependent: :func:`detection_output_rows` gives the bound used here (marked in
    :attr:`LayerShapes.data_dependent`)."""
    _n_bottoms(layer, bottoms, exact=3)
    _n_tops(layer, exact=1)
    dp = layer.p("detection_output_param")
    if not dp.HasField("num_classes") or dp.num_classes < 1:
        raise ShapeError(f"{_who(layer)}: detection_output_param.num_classes is required and positive")
    loc, conf, prior = (tuple(s) for s in bottoms)
    if len(prior) != 3 or prior[1] != 2 or prior[2] % 4:
        raise ShapeError(f"{_who(layer)}: priors {layer.bottoms[2]!r} {_fmt(prior)} must be (1, 2, P*4)")
    p = prior[2] // 4
    nloc = 1 if dp.share_location else dp.num_classes
    if count(loc, 1) != p * nloc * 4:
        raise ShapeError(f"{_who(layer)}: loc {layer.bottoms[0]!r} {_fmt(loc)} must hold {p} priors x {nloc} x 4 "
                         f"= {p * nloc * 4} values per image")
    if count(conf, 1) != p * dp.num_classes:
        raise ShapeError(f"{_who(layer)}: conf {layer.bottoms[1]!r} {_fmt(conf)} must hold {p} priors x "
                         f"{dp.num_classes} classes = {p * dp.num_classes} values per image")
    if conf[0] != loc[0]:
        raise ShapeError(f"{_who(layer)}: loc and conf batch sizes differ ({loc[0]} vs {conf[0]})")
    return [(1, 1, detection_output_rows(layer, bottoms), 7)]


DATA_DEPENDENT_TYPES = frozenset({"DetectionOutput"})
