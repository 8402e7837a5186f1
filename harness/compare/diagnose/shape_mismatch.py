"""Diagnosis from shapes alone, when the Keras output cannot even be compared with the reference."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from ...catalogue import traits, window
from ...net import Layer
from ..reports.result import Cause
from ._common import conv_padding_fix, pool_padding_fix


def _perm_of(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...] | None:
    if len(a) != len(b) or sorted(a) != sorted(b) or tuple(a) == tuple(b):
        return None
    used: set[int] = set()
    perm = []
    for v in b:
        for i, u in enumerate(a):
            if u == v and i not in used:
                used.add(i)
                perm.append(i)
                break
    return tuple(perm)


def _pool_shape_causes(layer: Layer, x_shape: tuple, ref_shape: tuple, keras_shape: tuple, diff: str,
                       causes: list[Cause]) -> None:
    """Pooling: the Keras size is floor/ceil rounding, unpadded, or TF "same"."""
    if not (len(x_shape) == 4 and len(keras_shape) == 4 and keras_shape[:2] == ref_shape[:2]):
        return
    from ...params import pool_geometry

    g = pool_geometry(layer)
    if g.kernel is not None:
        h, w = x_shape[2:]

        def sizes(fn: Callable[[int, int, int, int], int]) -> tuple[int, int]:
            return (fn(h, g.kernel[0], g.stride[0], g.pad[0]), fn(w, g.kernel[1], g.stride[1], g.pad[1]))

        floor_pad = sizes(lambda s, k, st, p: (s + 2 * p - k) // st + 1)
        ceil_pad = sizes(lambda s, k, st, p: -(-(s + 2 * p - k) // st) + 1)
        valid = sizes(lambda s, k, st, p: (s - k) // st + 1)
        same = sizes(lambda s, k, st, p: -(-s // st))
        kk = tuple(keras_shape[2:])
        rnd = "FLOOR" if g.ceil else "CEIL"
        if kk == (floor_pad if g.ceil else ceil_pad):
            causes.append(Cause("pool_rounding", 0.95,
                                f"{diff}: the Keras pooling rounds the output size with {rnd.lower()} where "
                                f"Caffe uses round_mode {'CEIL' if g.ceil else 'FLOOR'} "
                                f"({'ceil' if g.ceil else 'floor'}((in + 2p - k) / s) + 1)",
                                pool_padding_fix(g.method, g, h, w, tuple(ref_shape[2:]))))
        if kk == valid and valid != (floor_pad if g.ceil else ceil_pad) and (g.pad[0] or g.pad[1]):
            causes.append(Cause("padding_offset", 0.7,
                                f"{diff}: the size is what an unpadded 'valid' pooling gives; Caffe pads "
                                f"{g.pad[0]}x{g.pad[1]}",
                                pool_padding_fix(g.method, g, h, w, tuple(ref_shape[2:]))))
        if kk == same and same != tuple(ref_shape[2:]):
            causes.append(Cause("same_padding", 0.8 if not causes else 0.6,
                                f"{diff}: the size is TensorFlow 'same' pooling's ceil(in / stride)",
                                pool_padding_fix(g.method, g, h, w, tuple(ref_shape[2:]))))
        if kk == valid and kk != (floor_pad if g.ceil else ceil_pad) and not (g.pad[0] or g.pad[1]):
            causes.append(Cause("pool_rounding", 0.8, f"{diff}: the size is a floor-mode 'valid' pooling's",
                                pool_padding_fix(g.method, g, h, w, tuple(ref_shape[2:]))))


def _conv_shape_causes(layer: Layer, x_shape: tuple, ref_shape: tuple, keras_shape: tuple, diff: str,
                       causes: list[Cause]) -> None:
    """Convolution: the Keras size is TF "same", unpadded, or another total padding."""
    if not (len(x_shape) == 4 and len(keras_shape) == 4
            and keras_shape[:2] == ref_shape[:2]):
        return
    from ...params import conv_geometry

    g = conv_geometry(layer)
    h, w = x_shape[2:]
    ext = [g.dilation[a] * (g.kernel[a] - 1) + 1 for a in (0, 1)]
    same = (-(-h // g.stride[0]), -(-w // g.stride[1]))
    valid = ((h - ext[0]) // g.stride[0] + 1, (w - ext[1]) // g.stride[1] + 1)
    kk = tuple(keras_shape[2:])
    if kk == same:
        causes.append(Cause("same_padding", 0.9,
                            f"{diff}: the size is TensorFlow padding='same''s ceil(in / stride); Caffe pads "
                            f"{g.pad[0]}x{g.pad[1]} symmetrically",
                            conv_padding_fix(g)))
    if kk == valid and (g.pad[0] or g.pad[1]):
        causes.append(Cause("padding_offset", 0.85,
                            f"{diff}: the size is an unpadded 'valid' convolution's; Caffe pads "
                            f"{g.pad[0]}x{g.pad[1]}",
                            conv_padding_fix(g)))
    if not causes:
        tot = []
        for a, s in enumerate((h, w)):
            tot.append([t for t in range(0, 2 * ext[a] + 1) if (s + t - ext[a]) // g.stride[a] + 1 == kk[a]])
        if tot[0] and tot[1]:
            causes.append(Cause("padding_offset", 0.6,
                                f"{diff}: the size fits a total padding of {tot[0]} rows and {tot[1]} columns; "
                                f"Caffe pads {2 * g.pad[0]} rows and {2 * g.pad[1]} columns in total",
                                conv_padding_fix(g)))


def _deconv_shape_causes(layer: Layer, x_shape: tuple, ref_shape: tuple, keras_shape: tuple, diff: str,
                         causes: list[Cause]) -> None:
    """Deconvolution: the Keras size is Conv2DTranspose "same" or the uncropped output."""
    if not (len(x_shape) == 4 and len(keras_shape) == 4 and keras_shape[:2] == ref_shape[:2]):
        return
    from ...params import conv_geometry

    g = conv_geometry(layer)
    h, w = x_shape[2:]
    ext = [g.dilation[a] * (g.kernel[a] - 1) + 1 for a in (0, 1)]
    kk = tuple(keras_shape[2:])
    if kk == (h * g.stride[0], w * g.stride[1]):
        causes.append(Cause("same_padding", 0.9,
                            f"{diff}: the size is Conv2DTranspose(padding='same')'s in * stride; Caffe's is "
                            f"stride * (in - 1) + kernel - 2 * pad",
                            f"use Conv2DTranspose(padding='valid') then Cropping2D((({g.pad[0]}, {g.pad[0]}), "
                            f"({g.pad[1]}, {g.pad[1]})))"))
    elif kk == (g.stride[0] * (h - 1) + ext[0], g.stride[1] * (w - 1) + ext[1]) and (g.pad[0] or g.pad[1]):
        causes.append(Cause("padding_offset", 0.85,
                            f"{diff}: the size is the uncropped transposed convolution's; Caffe removes pad = "
                            f"({g.pad[0]}, {g.pad[1]}) on every side",
                            f"add Cropping2D((({g.pad[0]}, {g.pad[0]}), ({g.pad[1]}, {g.pad[1]}))) after "
                            "Conv2DTranspose(padding='valid')"))


# the output-size rules per window geometry (harness.catalogue.Traits.window)
_SHAPE_RULES = {"pool": _pool_shape_causes, "conv": _conv_shape_causes, "deconv": _deconv_shape_causes}


def diagnose_shape(layer: Layer, ref_inputs: list[np.ndarray], ref_shape: Sequence[int], keras_shape: Sequence[int],
                   keras_layer: Any = None, *, context: dict | None = None) -> list[Cause]:
    """Causes of a Keras output whose shape differs from Caffe's (both NCHW), best first."""
    ref_shape, keras_shape = tuple(int(s) for s in ref_shape), tuple(int(s) for s in keras_shape)
    causes: list[Cause] = []
    x_shape = tuple(np.shape(ref_inputs[0])) if ref_inputs else ()
    kind = layer.kind
    diff = f"Keras gives {keras_shape} where Caffe gives {ref_shape}"
    rule = _SHAPE_RULES.get(traits(kind).window)
    if rule is not None:
        rule(layer, x_shape, ref_shape, keras_shape, diff, causes)
    perm = _perm_of(ref_shape, keras_shape)
    if perm is not None:
        causes.append(Cause("input_layout", 0.75 if not causes else 0.4,
                            f"{diff}: the same sizes in another axis order (axes {perm}); a tensor went through as "
                            "NCHW where NHWC was meant, or the reverse",
                            "convert layouts with transpose (NCHW->NHWC: (0, 2, 3, 1)), never reshape, and compare "
                            "4-D tensors as NHWC on the Keras side"))
    if traits(kind).flattens and math.prod(keras_shape) == math.prod(ref_shape) \
            and perm is None and keras_shape != ref_shape:
        causes.append(Cause("flatten_order", 0.5,
                            f"{diff}: the same elements in another shape; a Flatten/Reshape was placed differently",
                            "flatten as Caffe does: Permute((3, 1, 2)) then Flatten before Dense"))
    if len(x_shape) == 4 and len(keras_shape) == 4 and x_shape[2:] == keras_shape[2:] \
            and ref_shape[2:] != keras_shape[2:] and window(kind) in ("conv", "pool") and not traits(kind).depthwise:
        causes.append(Cause("padding_offset", 0.3, f"{diff}: Keras kept the input's spatial size",
                            "check padding and stride of this layer against the prototxt"))
    if not causes:
        causes.append(Cause("unknown", 0.5, f"{diff}; no tested rule gives the Keras size",
                            "compare this layer's kernel, stride, padding and output count with the prototxt"))
    best: dict[str, Cause] = {}
    for c in causes:
        if c.cause not in best or c.confidence > best[c.cause].confidence:
            best[c.cause] = c
    return sorted(best.values(), key=lambda c: -c.confidence)
