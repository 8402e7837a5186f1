"""SSD detection layers (weiliu89/caffe ``ssd`` branch): PriorBox and DetectionOutput.

The box arithmetic follows ``prior_box_layer.cpp``, ``detection_output_layer.cpp`` and ``util/bbox_util.cpp`` of the
SSD fork: normalised boxes ``[xmin, ymin, xmax, ymax]``, sizes without the ``+1`` of pixel boxes, Caffe's loop orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numpy.typing import NDArray

from ..net import Layer
from ..params import detection_output_params, prior_box_params
from ._reject import bad_shape, expect_bottoms, unsupported
from .registry import REFERENCE

_F32 = np.float32


# ----------------------------------------------------------------------------------------------------------------
# PriorBox
# ----------------------------------------------------------------------------------------------------------------


def prior_aspect_ratios(aspect_ratio: Sequence[float], *, flip: bool) -> list[float]:
    """``PriorBoxLayer::LayerSetUp``: start from ``[1]``; append each given ratio not within 1e-6 of one already
    listed, followed by ``1/ratio`` when ``flip`` (stored as float32)."""
    ars = [_F32(1.0)]
    for ar in aspect_ratio:
        ar = _F32(ar)
        if any(abs(float(ar) - float(a)) < 1e-6 for a in ars):
            continue
        ars.append(ar)
        if flip:
            ars.append(_F32(1.0 / float(ar)))
    return [float(a) for a in ars]


def prior_box(
    layer_hw: tuple[int, int],
    image_hw: tuple[int, int],
    *,
    min_sizes: Sequence[float],
    max_sizes: Sequence[float] = (),
    aspect_ratios: Sequence[float] = (1.0,),
    clip: bool = False,
    variance: Sequence[float] = (0.1,),
    step_hw: tuple[float, float] | None = None,
    offset: float = 0.5,
    dtype=np.float64,
) -> NDArray:
    """``prior_box_layer.cpp`` Forward: top ``(1, 2, H*W*P*4)``; channel 0 the normalised boxes, channel 1 variances.

    ``aspect_ratios`` is the expanded list of :func:`prior_aspect_ratios` (1 first).  Per cell (row-major over the
    feature map ``h, w``), per ``min_size`` (truncated to int as the fork does): the ``min x min`` box, then
    ``sqrt(min*max)`` squared (``max_size`` truncated to int) when ``max_sizes`` is given, then for each ratio
    ``ar != 1`` the box ``min*sqrt(ar) x min/sqrt(ar)``.  Centres ``((w + offset) * step_w, (h + offset) * step_h)``
    with ``step = image / layer`` unless given; every coordinate divided by the image width/height; ``clip`` clamps
    to [0, 1].  ``variance``: one value for all four coordinates, or four.
    """
    lh, lw = layer_hw
    ih, iw = image_hw
    if step_hw is None:
        step_h, step_w = _F32(_F32(ih) / _F32(lh)), _F32(_F32(iw) / _F32(lw))
    else:
        step_h, step_w = _F32(step_hw[0]), _F32(step_hw[1])
    # the (width, height) of every prior of one cell, in Caffe's order, as float32
    sizes: list[tuple[np.float32, np.float32]] = []
    for s, mn in enumerate(min_sizes):
        mn_i = int(mn)
        sizes.append((_F32(mn_i), _F32(mn_i)))
        if max_sizes:
            side = _F32(np.sqrt(float(mn_i * int(max_sizes[s]))))
            sizes.append((side, side))
        for ar in aspect_ratios:
            if abs(ar - 1.0) < 1e-6:
                continue
            r = np.sqrt(_F32(ar))
            sizes.append((_F32(mn_i * r), _F32(mn_i / r)))
    bw = np.array([s[0] for s in sizes], dtype=np.float64)
    bh = np.array([s[1] for s in sizes], dtype=np.float64)
    cx = ((np.arange(lw, dtype=_F32) + _F32(offset)) * step_w).astype(np.float64)
    cy = ((np.arange(lh, dtype=_F32) + _F32(offset)) * step_h).astype(np.float64)
    cxg = cx[None, :, None]  # (1, W, 1)
    cyg = cy[:, None, None]  # (H, 1, 1)
    boxes = np.stack(
        np.broadcast_arrays(
            (cxg - bw / 2.0) / iw, (cyg - bh / 2.0) / ih, (cxg + bw / 2.0) / iw, (cyg + bh / 2.0) / ih
        ),
        axis=-1,
    )  # (H, W, P, 4)
    boxes = boxes.reshape(-1).astype(dtype)
    if clip:
        boxes = np.minimum(np.maximum(boxes, 0), 1)
    var = np.asarray(variance, dtype=_F32).astype(dtype)
    variances = np.tile(var, boxes.size // 4) if var.size == 4 else np.full(boxes.size, var[0], dtype=dtype)
    return np.stack([boxes, variances])[None]


@REFERENCE.register("PriorBox")
def _prior_box(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    expect_bottoms(layer, inputs, 2)
    feat, image = inputs
    if feat.ndim != 4 or image.ndim != 4:
        raise bad_shape(layer, f"expects NCHW bottoms, got shapes {feat.shape} and {image.shape}")
    p = prior_box_params(layer)
    img = p.img_hw or (int(image.shape[2]), int(image.shape[3]))
    out = prior_box(
        (int(feat.shape[2]), int(feat.shape[3])), img,
        min_sizes=list(p.min_sizes), max_sizes=list(p.max_sizes),
        aspect_ratios=prior_aspect_ratios(p.aspect_ratios, flip=p.flip), clip=p.clip, variance=list(p.variance),
        step_hw=p.step_hw, offset=p.offset, dtype=dtype,
    )
    return [out]


# ----------------------------------------------------------------------------------------------------------------
# DetectionOutput
# ----------------------------------------------------------------------------------------------------------------


def decode_boxes(loc: NDArray, priors: NDArray, variances: NDArray, *, code_type: str,
                 variance_encoded_in_target: bool) -> NDArray:
    """``bbox_util.cpp`` DecodeBBox for ``(P, 4)`` arrays of ``[xmin, ymin, xmax, ymax]``.

    CORNER: ``prior + v * loc``; CORNER_SIZE: ``prior + v * loc * (prior w or h)``; CENTER_SIZE:
    ``c = v0 * loc0 * pw + pcx``, ``w = exp(v2 * loc2) * pw`` (same for y), box ``c -/+ w/2``.  With
    ``variance_encoded_in_target`` every ``v`` is 1.  No clipping (DetectionOutput decodes with ``clip_bbox=false``).
    """
    v = np.ones_like(variances) if variance_encoded_in_target else variances
    pw = priors[:, 2] - priors[:, 0]
    ph = priors[:, 3] - priors[:, 1]
    if code_type == "CORNER":
        return priors + v * loc
    if code_type == "CORNER_SIZE":
        return priors + v * loc * np.stack([pw, ph, pw, ph], axis=1)
    if code_type == "CENTER_SIZE":
        pcx = (priors[:, 0] + priors[:, 2]) / 2.0
        pcy = (priors[:, 1] + priors[:, 3]) / 2.0
        cx = v[:, 0] * loc[:, 0] * pw + pcx
        cy = v[:, 1] * loc[:, 1] * ph + pcy
        w = np.exp(v[:, 2] * loc[:, 2]) * pw
        h = np.exp(v[:, 3] * loc[:, 3]) * ph
        return np.stack([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0], axis=1)
    raise ValueError(f"unknown code_type {code_type!r}")


def box_size(boxes: NDArray) -> NDArray:
    """``BBoxSize`` (normalised): ``(xmax - xmin) * (ymax - ymin)``, 0 for an inverted box."""
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return np.where((w < 0) | (h < 0), 0.0, w * h)


def jaccard(box: NDArray, others: NDArray) -> NDArray:
    """``JaccardOverlap`` (normalised, no +1) of one box against ``(K, 4)`` boxes.

    Disjoint (``b.xmin > a.xmax or b.xmax < a.xmin or ...``) or a non-positive intersection side gives 0, else
    ``inter / (size(a) + size(b) - inter)``.
    """
    disjoint = ((others[:, 0] > box[2]) | (others[:, 2] < box[0]) |
                (others[:, 1] > box[3]) | (others[:, 3] < box[1]))
    iw = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    ih = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    ok = ~disjoint & (iw > 0) & (ih > 0)
    inter = np.where(ok, iw * ih, 0.0)
    denom = box_size(box) + box_size(others) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, inter / np.where(ok, denom, 1.0), 0.0)


def jaccard_matrix(a: NDArray, b: NDArray) -> NDArray:
    """:func:`jaccard` of every box of ``a`` ``(M, 4)`` against every box of ``b`` ``(K, 4)``: ``(M, K)``."""
    a_ = a[:, None, :]
    b_ = b[None, :, :]
    disjoint = ((b_[..., 0] > a_[..., 2]) | (b_[..., 2] < a_[..., 0]) |
                (b_[..., 1] > a_[..., 3]) | (b_[..., 3] < a_[..., 1]))
    iw = np.minimum(a_[..., 2], b_[..., 2]) - np.maximum(a_[..., 0], b_[..., 0])
    ih = np.minimum(a_[..., 3], b_[..., 3]) - np.maximum(a_[..., 1], b_[..., 1])
    ok = ~disjoint & (iw > 0) & (ih > 0)
    inter = np.where(ok, iw * ih, 0.0)
    denom = box_size(a)[:, None] + box_size(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, inter / np.where(ok, denom, 1.0), 0.0)


def _greedy_fixed(boxes: NDArray, thr: float, block: int = 256) -> NDArray:
    """Positions (into the score-sorted ``boxes``) that greedy NMS with a fixed threshold keeps.

    A box is kept iff no earlier kept box overlaps it by more than ``thr``.  Blocks of ``block`` candidates: inside a
    block the greedy pass walks a small overlap matrix; the block's kept boxes then suppress every later candidate
    in one matrix step.
    """
    n = len(boxes)
    alive = np.ones(n, dtype=bool)
    kept: list[int] = []
    for start in range(0, n, block):
        stop = min(start + block, n)
        idx = start + np.flatnonzero(alive[start:stop])
        if idx.size == 0:
            continue
        over = jaccard_matrix(boxes[idx], boxes[idx]) > thr
        live = np.ones(idx.size, dtype=bool)
        new: list[int] = []
        for j in range(idx.size):
            if live[j]:
                new.append(j)
                live[j + 1 :] &= ~over[j, j + 1 :]
        kept_here = idx[new]
        kept.extend(kept_here.tolist())
        rest = stop + np.flatnonzero(alive[stop:])
        if rest.size:
            for k0 in range(0, kept_here.size, 64):  # bound the (kept x rest) temporary
                hit = (jaccard_matrix(boxes[kept_here[k0 : k0 + 64]], boxes[rest]) > thr).any(axis=0)
                alive[rest[hit]] = False
                rest = rest[~hit]
                if rest.size == 0:
                    break
    return np.asarray(kept, dtype=np.int64)


def nms_fast(boxes: NDArray, scores: NDArray, *, score_threshold: float, nms_threshold: float, eta: float = 1.0,
             top_k: int = -1) -> list[int]:
    """``bbox_util.cpp`` ApplyNMSFast: candidates with ``score > score_threshold``, stably sorted by descending score,
    cut to ``top_k`` (when ``top_k > -1``); greedily keep a candidate when its overlap with every kept box is
    ``<= threshold``; after each kept box, ``threshold *= eta`` while ``eta < 1`` and ``threshold > 0.5``.

    With ``eta == 1`` the threshold is fixed, so "overlaps no earlier kept box by more than it" is computed in blocks
    (:func:`_greedy_fixed`, same result, vectorised).
    """
    cand = np.nonzero(scores > score_threshold)[0]
    cand = cand[np.argsort(-scores[cand], kind="stable")]
    if top_k > -1:
        cand = cand[:top_k]
    kept: list[int] = []
    thr = nms_threshold
    if eta >= 1:
        return [int(i) for i in cand[_greedy_fixed(boxes[cand], thr)]]
    for idx in cand:
        keep = not kept or bool(np.all(jaccard(boxes[idx], boxes[kept]) <= thr))
        if keep:
            kept.append(int(idx))
            if thr > 0.5:
                thr *= eta
    return kept


@dataclass(frozen=True)
class DetectionParams:
    num_classes: int
    share_location: bool = True
    background_label_id: int = 0
    code_type: str = "CORNER"
    variance_encoded_in_target: bool = False
    keep_top_k: int = -1
    confidence_threshold: float = -np.finfo(np.float32).max
    nms_threshold: float = 0.3
    top_k: int = -1
    eta: float = 1.0


def detection_output(loc: NDArray, conf: NDArray, prior: NDArray, *, params: DetectionParams) -> NDArray:
    """``detection_output_layer.cpp`` Forward_cpu (SSD fork).

    ``loc`` ``(N, P*L*4)`` (``L = 1`` if ``share_location`` else ``num_classes``; per prior, per loc class, 4 coords),
    ``conf`` ``(N, P*C)`` (per prior, per class), ``prior`` ``(1, 2, P*4)`` (boxes, then variances).  Per image: decode,
    then for each class ``c != background_label_id`` in ascending order ApplyNMSFast; if ``keep_top_k > -1`` and more
    than ``keep_top_k`` detections survive, keep the ``keep_top_k`` best by score (over all classes).  Output
    ``(1, 1, D, 7)`` rows ``[image, label, score, xmin, ymin, xmax, ymax]`` ordered by image, label, then the NMS /
    score order; with no detection at all, one row ``[i, -1, -1, -1, -1, -1, -1]`` per image.
    """
    dt = loc.dtype
    n = loc.shape[0]
    c = params.num_classes
    n_loc = 1 if params.share_location else c
    priors_flat = prior.reshape(-1)
    p_count = prior.shape[-1] // 4
    pri = priors_flat[: p_count * 4].reshape(p_count, 4).astype(np.float64)
    var = priors_flat[p_count * 4 : p_count * 8].reshape(p_count, 4).astype(np.float64)
    locs = loc.reshape(n, p_count, n_loc, 4).astype(np.float64)
    confs = conf.reshape(n, p_count, c).astype(np.float64)
    rows: list[list[float]] = []
    for i in range(n):
        decoded: dict[int, NDArray] = {}
        for lc in range(n_loc):
            label = -1 if params.share_location else lc
            if label == params.background_label_id:
                continue
            decoded[label] = decode_boxes(locs[i, :, lc], pri, var, code_type=params.code_type,
                                          variance_encoded_in_target=params.variance_encoded_in_target)
        indices: dict[int, list[int]] = {}
        num_det = 0
        for cls in range(c):
            if cls == params.background_label_id:
                continue
            boxes = decoded[-1 if params.share_location else cls]
            indices[cls] = nms_fast(boxes, confs[i, :, cls], score_threshold=params.confidence_threshold,
                                    nms_threshold=params.nms_threshold, eta=params.eta, top_k=params.top_k)
            num_det += len(indices[cls])
        if params.keep_top_k > -1 and num_det > params.keep_top_k:
            pairs = [(confs[i, idx, cls], cls, idx) for cls in sorted(indices) for idx in indices[cls]]
            order = sorted(range(len(pairs)), key=lambda k: -pairs[k][0])[: params.keep_top_k]  # stable
            new: dict[int, list[int]] = {}
            for k in order:
                new.setdefault(pairs[k][1], []).append(pairs[k][2])
            indices = new
        for cls in sorted(indices):
            boxes = decoded[-1 if params.share_location else cls]
            for idx in indices[cls]:
                rows.append([i, cls, confs[i, idx, cls], *boxes[idx]])
    if not rows:
        out = np.full((1, 1, n, 7), -1.0, dtype=dt)
        out[0, 0, :, 0] = np.arange(n)
        return out
    return np.asarray(rows, dtype=dt).reshape(1, 1, len(rows), 7)


_CODE_TYPES = ("CORNER", "CENTER_SIZE", "CORNER_SIZE")


@REFERENCE.register("DetectionOutput")
def _detection_output(layer: Layer, inputs: list[np.ndarray], *, dtype) -> list[np.ndarray]:
    if len(inputs) != 3:
        raise unsupported(layer, "bottom", f"{len(inputs)} bottoms",
                          "exactly 3 bottoms: loc, conf, prior (the ARM-refined 5-bottom variant is not supported)")
    loc, conf, prior = inputs
    dp = detection_output_params(layer)
    code_type = dp.code_type
    if code_type not in _CODE_TYPES:
        raise unsupported(layer, "detection_output_param.code_type", code_type, _CODE_TYPES)
    c = dp.num_classes
    n_loc = 1 if dp.share_location else c
    if prior.ndim != 3 or prior.shape[1] != 2 or prior.shape[2] % 4:
        raise bad_shape(layer, f"prior bottom must be (1, 2, P*4), got {prior.shape}")
    n_pri = prior.shape[2] // 4
    if loc.shape[0] != conf.shape[0]:
        raise bad_shape(layer, f"loc batch {loc.shape[0]} differs from conf batch {conf.shape[0]}")
    if int(np.prod(loc.shape[1:])) != n_pri * n_loc * 4:
        raise bad_shape(layer, f"loc has {int(np.prod(loc.shape[1:]))} values per image; {n_pri} priors x "
                        f"{n_loc} location classes x 4 need {n_pri * n_loc * 4}")
    if int(np.prod(conf.shape[1:])) != n_pri * c:
        raise bad_shape(layer, f"conf has {int(np.prod(conf.shape[1:]))} values per image; {n_pri} priors x "
                        f"{c} classes need {n_pri * c}")
    if code_type != "CORNER":
        boxes = prior.reshape(-1)[: n_pri * 4].reshape(n_pri, 4)
        flat = np.flatnonzero((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))
        if flat.size:
            # DecodeBBox: CHECK_GT(prior_width, 0) / CHECK_GT(prior_height, 0) for the size-relative codes
            raise bad_shape(layer, f"prior {int(flat[0])} {boxes[flat[0]].tolist()} has no positive width and height, "
                            f"which code_type {code_type} divides by")
    params = DetectionParams(
        num_classes=c, share_location=dp.share_location, background_label_id=dp.background_label_id,
        code_type=code_type, variance_encoded_in_target=dp.variance_encoded_in_target, keep_top_k=dp.keep_top_k,
        confidence_threshold=dp.confidence_threshold, nms_threshold=dp.nms_threshold, top_k=dp.top_k, eta=dp.eta)
    return [detection_output(loc, conf, prior, params=params)]
