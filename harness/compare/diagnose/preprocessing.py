"""Layer 0 (``check --images``): which classic preprocessing bug makes the Keras side's input differ from Caffe's.

Each hypothesis re-runs Caffe's own preprocessing (:mod:`harness.reference.preprocess`) on the same decoded images
with one rule changed the way a port typically gets it wrong -- the channels reversed, the mean in the other channel
order, the mean pixel for the mean image, another crop offset, another resize -- or, for the scale, fits
``keras = a*x + b*mean`` to the data; a hypothesis explains the Keras side when its output agrees with it within
the layer-0 float32 bound (confidence 0.95), or brings the error down at least tenfold (0.5, "partly").  Each cause
comes with its fix (every fix is applied and re-run in tests/compare/test_layer0.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from ...errors import HarnessError
from ...reference.preprocess import CaffeTransform, caffe_preprocess, caffe_resize, require_cv2
from ..reports.result import Cause

_U32 = 2.0 ** -24
_KNOWN = {"0.017": 0.017, "1/255": 1 / 255.0, "1/127.5": 1 / 127.5, "255": 255.0, "1": 1.0, "1/0.017": 1 / 0.017,
          "1/256": 1 / 256.0, "1/128": 1 / 128.0, "0.00390625": 0.00390625}


def layer0_bound(t: CaffeTransform, caffe: np.ndarray) -> np.ndarray:
    """Elementwise float32 bound: a few roundings of the largest intermediate (pixel, mean, their scaled values)
    plus of the result itself (Caffe's Dtype is float32; so is the Keras side)."""
    m = float(np.max(np.abs(t.mean_image))) if t.mean_image is not None else \
        max((abs(v) for v in t.mean_values), default=0.0)
    if t.route == "pycaffe":
        raw = abs(t.raw_scale) if t.raw_scale is not None else 1.0
        inter = (max(raw, 1.0) + m) * max(1.0, abs(t.input_scale) if t.input_scale is not None else 1.0)
    else:
        inter = (255.0 + m) * max(1.0, abs(t.scale))
    return 8 * _U32 * (inter + np.abs(np.asarray(caffe, np.float64)))


@dataclass
class _H:
    code: str
    explanation: str
    fix: str
    candidate: Callable[[], np.ndarray]


def diagnose_layer0(bgr: Sequence[np.ndarray], names: Sequence[str], t: CaffeTransform, caffe: np.ndarray,
                    keras: np.ndarray, input_hw: tuple[int, int] | None,
                    keras_resize: tuple[int, int] | None = None, reversing: str | None = None) -> list[Cause]:
    """The causes, best first (one per code); ``unknown`` when none fits.  ``keras_resize``: the Keras side's own
    OpenCV resize (H, W) (``--keras-resize``), tried as Caffe's resize size; ``reversing``: the name of the Keras
    side's layer that reverses the channels, if it has one (a fix removes it by name)."""
    if keras.shape != caffe.shape:
        return [_shape_cause(bgr, t, caffe, keras)]
    k = np.asarray(keras, np.float64)
    base = float(np.max(np.abs(k - caffe)))
    best: dict[str, tuple[float, float, Cause]] = {}
    for h in _hypotheses(bgr, names, t, caffe, k, input_hw, keras_resize, reversing):
        try:
            cand = np.asarray(h.candidate(), np.float64)
        except (HarnessError, ValueError, np.linalg.LinAlgError):
            continue
        if cand.shape != k.shape:
            continue
        diff = np.abs(k - cand)
        err = float(np.max(diff))
        if bool(np.all(diff <= layer0_bound(t, cand))):
            conf = 0.95
        elif err <= 0.1 * base:
            conf = 0.5
        else:
            continue
        expl = h.explanation + ("" if conf > 0.9 else f" (partly: {err:.3g} of the {base:.3g} difference remains)")
        c = Cause(h.code, conf, expl, h.fix)
        if h.code not in best or (conf, -err) > best[h.code][:2]:
            best[h.code] = (conf, -err, c)
    out = [c for _, _, c in sorted(best.values(), key=lambda v: (-v[0], -v[1]))]
    if out:
        return out
    return [Cause("unknown", 0.2, f"the Keras side's layer 0 differs from Caffe's ({t.describe()}) by up to "
                  f"{base:.4g}, and no single preprocessing bug (channel order, mean order, scale order, mean image, "
                  f"crop, resize) explains it", "compare the two pipelines step by step: Caffe's is " + t.describe())]


def _hypotheses(bgr: Sequence[np.ndarray], names: Sequence[str], t: CaffeTransform, caffe: np.ndarray,
                keras: np.ndarray, input_hw: Any, keras_resize: Any = None, reversing: str | None = None) -> list[_H]:
    def run(imgs: Sequence[np.ndarray], tt: CaffeTransform = t, resized: bool = False, **kw: Any) -> np.ndarray:
        ims = imgs if resized else [caffe_resize(im, tt) for im in imgs]
        return caffe_preprocess(ims, tt, input_hw=input_hw, names=names, **kw)

    out: list[_H] = []
    out += _channel_order(bgr, t, run, reversing)
    out += _mean_order(bgr, t, run)
    out += _mean_image(bgr, t, run, input_hw)
    out += _mean_value(bgr, t, run, keras)
    out += _scale(bgr, t, run, keras)
    out += _crop(bgr, t, run)
    out += _resize(bgr, t, run)
    out += _resize_size(bgr, t, run, keras_resize)
    return out


def _bgr_word(t: CaffeTransform) -> str:
    return "pycaffe's channel_swap makes it B, G, R" if t.route == "pycaffe" else "Caffe reads B, G, R (OpenCV)"


def _caffe_keeps_rgb(t: CaffeTransform) -> bool:
    """pycaffe without a channel_swap (or with the identity): the net sees the image R, G, B."""
    return t.route == "pycaffe" and (not t.channel_swap or tuple(t.channel_swap) == tuple(range(len(t.channel_swap))))


def _channel_order(bgr, t: CaffeTransform, run, reversing: str | None = None) -> list[_H]:
    if not bgr or bgr[0].shape[2] != 3:
        return []
    if _caffe_keeps_rgb(t):
        return _keras_reverses(bgr, t, run, reversing)
    swap = f" (pycaffe: channel_swap {tuple(t.channel_swap)})" if t.route == "pycaffe" and t.channel_swap else ""
    return [_H("preprocess_channel_order",
               f"the Keras side's layer 0 is Caffe's preprocessing of the image with its channels reversed: it keeps "
               f"the image R, G, B where {_bgr_word(t)}{swap}",
               "reverse the channels first, before the mean and the scale: x = x[..., ::-1] (RGB -> BGR; "
               "keras.applications' mode 'caffe' does it; in a model, a weight-free layer returning "
               "keras.ops.flip(x, axis=-1)), keeping the mean in B, G, R order",
               lambda: run([im[:, :, ::-1] for im in bgr])),
            _H("preprocess_channel_order",
               f"the Keras side's layer 0 is Caffe's with its channels in reverse order: R, G, B throughout (the "
               f"image kept RGB and the mean given in R, G, B order too) where {_bgr_word(t)}",
               "reverse the channels of the image first (x = x[..., ::-1], RGB -> BGR; in a model, a weight-free "
               "layer returning keras.ops.flip(x, axis=-1)) and give the mean in B, G, R order" +
               (f" ({', '.join(f'{v:g}' for v in t.mean_values)})" if t.mean_values else ""),
               lambda: run(bgr)[:, ::-1])]


def _keras_reverses(bgr, t: CaffeTransform, run, reversing: str | None) -> list[_H]:
    """pycaffe keeps R, G, B (no channel_swap): the Keras side is the one that reverses; its fix removes the
    reversal (the port's layer ``reversing`` by name when one was found), never adds a second one."""
    where = "pycaffe keeps the image R, G, B (no channel swap given)"
    drop = (f"remove the port's channel-reversing layer {reversing!r}" if reversing else
            "remove the Keras side's channel reversal (x[..., ::-1] / keras.ops.flip(x, axis=-1))")
    return [_H("preprocess_channel_order",
               f"the Keras side's layer 0 is Caffe's preprocessing of the image with its channels reversed: the "
               f"Keras side reverses R, G, B to B, G, R where {where}",
               f"{drop}: the net takes the image R, G, B as pycaffe gives it (keep the mean in R, G, B order)",
               lambda: run([im[:, :, ::-1] for im in bgr])),
            _H("preprocess_channel_order",
               f"the Keras side's layer 0 is Caffe's with its channels in reverse order: B, G, R throughout (the "
               f"image reversed and the mean given in B, G, R order too) where {where}",
               f"{drop} and give the mean in R, G, B order" +
               (f" ({', '.join(f'{v:g}' for v in t.mean_values)})" if t.mean_values else ""),
               lambda: run(bgr)[:, ::-1])]


def _mean_order(bgr, t: CaffeTransform, run) -> list[_H]:
    mv = t.mean_values
    if len(mv) == 3 and tuple(mv[::-1]) != tuple(mv):
        vals = ", ".join(f"{v:g}" for v in mv)
        rev = ", ".join(f"{v:g}" for v in mv[::-1])
        return [_H("preprocess_mean_order",
                   f"the Keras side subtracts the mean ({rev}) -- Caffe's ({vals}) in the reverse channel order: R, "
                   f"G, B mean values on B, G, R data",
                   f"subtract the mean in Caffe's channel order, B, G, R = ({vals}), from the B, G, R channels "
                   f"(e.g. {_normalization(t, mv)} after the RGB -> BGR flip)",
                   lambda: run(bgr, replace(t, mean_values=tuple(mv[::-1]))))]
    if t.mean_image is not None and t.mean_image.shape[0] == 3:
        return [_H("preprocess_mean_order",
                   "the Keras side subtracts Caffe's mean image with its channels reversed (an R, G, B mean on B, G, "
                   "R data)", "subtract the mean image in Caffe's B, G, R channel order (do not reverse "
                   "the mean_file's channels; reverse the image's)",
                   lambda: run(bgr, t.with_mean_image(t.mean_image[::-1].copy())))]
    return []


def _mean_image(bgr, t: CaffeTransform, run, input_hw: Any = None) -> list[_H]:
    if t.mean_image is None:
        return []
    pix = tuple(float(v) for v in t.mean_image.astype(np.float64).mean(axis=(1, 2)))
    c, mh, mw = t.mean_image.shape
    crop = t.crop_size
    where = (f"centre-cropped like the image: mean[:, {(mh - crop) // 2}:{(mh - crop) // 2 + crop}, "
             f"{(mw - crop) // 2}:{(mw - crop) // 2 + crop}]" if crop else "as it is")
    if t.route == "pycaffe" and input_hw is not None and (mh, mw) != tuple(input_hw):
        h, w = input_hw
        where = (f"resized to the input's {h}x{w} as pycaffe's set_mean does (M = "
                 f"harness.reference.preprocess.pycaffe_set_mean(mean, ({c}, {h}, {w})))")
    fix = (f"subtract the mean image ({t.mean_source or 'the mean_file'}, read with "
           f"harness.reference.preprocess.read_mean_binaryproto), {where}, in B, G, R order: e.g. "
           f"keras.layers.Normalization(axis=(1, 2, 3), mean=M, variance=np.ones_like(M)) with M that array "
           f"transposed to H, W, C")
    out = [_H("preprocess_mean_image",
              f"the Keras side subtracts the mean pixel ({', '.join(f'{v:.6g}' for v in pix)}) -- the per-channel "
              f"mean of Caffe's mean image -- where Caffe subtracts the mean image itself ({c}x{mh}x{mw}, "
              f"{t.mean_source or 'mean_file'}) pixel by pixel", fix,
              lambda: run(bgr, t.with_mean_image(None, pix)))]
    if crop and t.route != "pycaffe" and ((mh - crop) // 2, (mw - crop) // 2) != (0, 0):
        # data_transformer.cpp: mean_index = (c * img_height + h_off + h) * img_width + w_off + w -- the mean image
        # is read at the image's own crop offsets; a port often crops it at (0, 0)
        top_left = t.mean_image[:, :crop, :crop].astype(np.float64)
        out.append(_H("preprocess_mean_image",
                      f"the Keras side subtracts the mean image cropped at the top-left corner (mean[:, :{crop}, "
                      f":{crop}]) where Caffe reads it at the image's crop offsets ({(mh - crop) // 2}, "
                      f"{(mw - crop) // 2})", fix,
                      lambda: run(bgr, t.with_mean_image(None)).astype(np.float64) - float(t.scale) * top_left))
    return out


def _mean_value(bgr, t: CaffeTransform, run, keras: np.ndarray) -> list[_H]:
    """The Keras side subtracts another per-channel mean (or none) with Caffe's scale: keras = a*x + b*m' with
    Caffe's a, b and m' fitted per channel (the reversed mean is preprocess_mean_order's)."""
    if t.mean_image is not None or not t.mean_values or keras.ndim != 4:
        return []
    k, _ = _factors(t)
    h = _H("preprocess_mean_value", "", "", lambda: np.empty(0))

    def cand() -> np.ndarray:
        x, m, a0, b0 = _design(bgr, t, run)
        if m is None:
            raise ValueError("no mean")
        fitted = ((keras - a0 * x) / b0).mean(axis=(0, 2, 3))  # m' per channel, in the mean's own units
        caffe_mean = np.asarray(m.mean(axis=(0, 2, 3)), np.float64)
        # float32 rounding of the mean as fitted (a mean 0.001 off is a cause; one off by rounding is Caffe's)
        tol = 8 * _U32 * (255.0 + float(np.max(np.abs(caffe_mean))))
        if np.all(np.abs(fitted - caffe_mean) <= tol) or np.all(np.abs(fitted - caffe_mean[::-1]) <= tol):
            raise ValueError("Caffe's mean, or its reverse (preprocess_mean_order)")
        if abs(b0 + 1.0) > 1e-6 and np.all(np.abs(fitted * -b0 - caffe_mean) <= tol * abs(b0)):
            raise ValueError("Caffe's mean subtracted after the scaling (preprocess_scale_order)")
        got = ", ".join(f"{v:.6g}" for v in fitted)
        want = ", ".join(f"{v:g}" for v in t.mean_values)
        h.explanation = (f"the Keras side subtracts the mean ({got}) where Caffe subtracts mean_value ({want})" +
                         (" -- keras.applications' mode 'caffe' mean" if np.allclose(fitted / k, (103.939, 116.779,
                                                                                                   123.68),
                                                                                    atol=1e-2) else ""))
        h.fix = (f"subtract Caffe's own mean, B, G, R = ({want}) (not keras.applications' (103.939, 116.779, 123.68) "
                 f"unless the net was trained with it): e.g. {_normalization(t, t.mean_values)} after the RGB -> BGR "
                 f"flip, in place of the Keras side's mean step and any scaling step")
        return a0 * x + b0 * fitted[None, :, None, None]

    h.candidate = cand
    return [h]


def _design(bgr, t: CaffeTransform, run) -> tuple[np.ndarray, np.ndarray | None, float, float]:
    """(X, M, a, b) with Caffe's layer 0 = a*X + b*M: X the cropped pixels in Caffe's channel order (0..255), M the
    mean it subtracts (None: none)."""
    if t.route == "pycaffe":
        plain = replace(t, raw_scale=255.0, input_scale=None, mean_values=(), mean_image=None)
        x = run(bgr, plain).astype(np.float64)
        has_mean = t.mean_image is not None or bool(t.mean_values)
        m = x - run(bgr, replace(t, raw_scale=255.0, input_scale=None)).astype(np.float64) if has_mean else None
        i = t.input_scale if t.input_scale is not None else 1.0
        r = t.raw_scale if t.raw_scale is not None else 1.0
        return x, m, r / 255.0 * i, -i
    plain = replace(t, scale=1.0, mean_values=(), mean_image=None)
    x = run(bgr, plain).astype(np.float64)
    has_mean = t.mean_image is not None or bool(t.mean_values)
    m = x - run(bgr, replace(t, scale=1.0)).astype(np.float64) if has_mean else None
    return x, m, float(t.scale), -float(t.scale)


def _name(v: float) -> str:
    """A factor as printed: 0 for a rounding residue, its known name when it is that value to float32 rounding."""
    if abs(v) < 1e-9:
        return "0"
    for k, ref in _KNOWN.items():
        if ref and abs(v / ref - 1) < 1e-6:
            return f"{v:.6g} (= {k})" if k not in (f"{v:g}",) else f"{v:g}"
    return f"{v:.6g}"


def _close(v: float, ref: float, rel: float = 1e-4) -> bool:
    return abs(v - ref) <= rel * max(abs(ref), 1e-12)


def _scale(bgr, t: CaffeTransform, run, keras: np.ndarray) -> list[_H]:
    """``keras = a*x + b*mean`` fitted by least squares (Caffe's: ``a0*x + b0*mean``).  One factor on both terms
    (``a/a0 == b/b0 != 1``, or ``a != a0`` with no mean) is a wrong scale *value* in Caffe's order
    (``preprocess_scale_value``); the pixels and the mean scaled differently is the scale at another point
    (``preprocess_scale_order``); Caffe's pixel factor with another mean factor than "after the scaling" (b = -1)
    is another mean (``preprocess_mean_value``'s)."""
    def cand() -> np.ndarray:
        x, m, a0, b0 = _design(bgr, t, run)
        cols = [x.ravel()] + ([m.ravel()] if m is not None else [])
        coef, *_ = np.linalg.lstsq(np.stack(cols, axis=1), keras.ravel(), rcond=None)
        a = float(coef[0])
        b = float(coef[1]) if m is not None else 0.0
        if _close(a, a0) and (m is None or _close(b, b0)):
            raise ValueError("the fit is Caffe's own")
        if m is not None and _close(a, a0) and not (_close(b, -1.0) and not _close(b0, -1.0)):
            raise ValueError("Caffe's scale with another mean (preprocess_mean_value)")
        value = (m is None or _close(b / b0, a / a0)) and a / a0 > 0
        h.code = "preprocess_scale_value" if value else "preprocess_scale_order"
        h.explanation = _scale_text(t, dict(a=a, b=b, a0=a0, b0=b0, mean=m is not None), value)
        sc = _factors(t)[1]
        h.fix = _scale_fix(t, f"the factor is {_name(sc)}, not {_name(a / a0 * sc)}" if value else None)
        return a * x + (b * m if m is not None else 0.0)

    h = _H("preprocess_scale_order", "the Keras side scales the input differently", _scale_fix(t), cand)
    return [h]


def _scale_text(t: CaffeTransform, s: dict, value: bool) -> str:
    a, b, a0, b0 = s["a"], s["b"], s["a0"], s["b0"]
    if not s["mean"]:
        return (f"the Keras side multiplies the pixels by {_name(a)} where Caffe's layer 0 multiplies them by "
                f"{_name(a0)} ({t.describe()})")
    keras_form = f"{_name(a)}*x" + (f" - {_name(-b)}*mean" if _name(-b) != "0" else " (no mean)")
    caffe_form = (f"(x - mean)*{_name(a0)}" if t.route != "pycaffe" else
                  f"(x*raw_scale/255 - mean)*input_scale = {_name(a0)}*x - {_name(-b0)}*mean")
    if value:
        c = a / a0
        why = (f"the order is Caffe's (the mean subtracted first) but the whole of layer 0 is {_name(c)} times "
               f"Caffe's: the scale is {_name(c * _factors(t)[1])} where Caffe's is {_name(_factors(t)[1])}")
    elif _close(b, -1.0) and _close(a, a0) and not _close(a0, 1.0, 1e-6):
        why = "the mean is subtracted after the scaling, not before"
    else:
        why = "the scale is applied at another point (the pixels and the mean are scaled by different factors)"
    return f"the Keras side computes {keras_form} where Caffe computes {caffe_form}: {why}"


def _factors(t: CaffeTransform) -> tuple[float, float]:
    """(k, s) with Caffe's layer 0 on the 0..255 pixels x = (x - mean/k)*s.  pycaffe (python/caffe/io.py
    Transformer.preprocess: ``*= raw_scale`` on load_image's x/255, ``-= mean``, ``*= input_scale``):
    (x*k - mean)*i with k = raw_scale/255, so s = k*i; data_transformer.cpp: (x - mean)*scale, k = 1."""
    if t.route == "pycaffe":
        k = (t.raw_scale if t.raw_scale is not None else 1.0) / 255.0
        return k, k * (t.input_scale if t.input_scale is not None else 1.0)
    return 1.0, float(t.scale)


def _normalization(t: CaffeTransform, mean_values: Sequence[float]) -> str:
    """The one keras.layers.Normalization that computes Caffe's layer 0 on the 0..255 pixels, numbers spelled out
    (pasteable): mean = mean/k, variance = 1/s**2 per channel."""
    k, s = _factors(t)
    mean = "[" + ", ".join(f"{v / k:g}" for v in mean_values) + "]"
    var = "[1, 1, 1]" if abs(s - 1.0) < 1e-12 else f"[{1.0 / (s * s):.10g}]*C"
    return f"keras.layers.Normalization(mean={mean}, variance={var})"


def _scale_fix(t: CaffeTransform, lead: str | None = None) -> str:
    """The one Normalization that computes Caffe's layer 0 (``lead``: what the Keras side does, said first)."""
    k, s = _factors(t)
    first = f"{lead}; " if lead else ""
    if t.mean_image is not None:
        m = "M" if k == 1.0 else f"M/{k:g}"
        norm = (f"keras.layers.Normalization(axis=(1, 2, 3), mean={m}, variance=np.full_like(M, "
                f"{1.0 / (s * s):.10g})) with M the mean image as H, W, C")
    else:
        norm = _normalization(t, t.mean_values or (0.0, 0.0, 0.0))
    if t.route == "pycaffe":
        r = t.raw_scale if t.raw_scale is not None else 1.0
        i = t.input_scale if t.input_scale is not None else 1.0
        x = "x" if k == 1.0 else f"x*{k:g}"
        return (f"{first}compute pycaffe's order on the 0..255 pixels x: ({x} - mean)*{i:g} -- raw_scale ({r:g}, on "
                f"load_image's [0, 1] image) multiplies before the mean, input_scale ({i:g}) after it; e.g. one "
                f"{norm} (= (x - mean{'' if k == 1.0 else f'/{k:g}'})*{s:g}) in place of the Keras side's own "
                f"scaling and mean steps")
    return (f"{first}subtract the mean first, then multiply by transform_param.scale = {s:g}: (x - mean)*{s:g}; "
            f"e.g. one {norm} (= (x - mean)*{s:g}) in place of the Keras side's own scaling and mean steps")


def _crop(bgr, t: CaffeTransform, run) -> list[_H]:
    c = t.crop_size
    if not c or t.route == "pycaffe":
        return []
    sizes = {tuple(caffe_resize(im, t).shape[:2]) for im in bgr[:1]}
    (ih, iw), = sizes
    centre = ((ih - c) // 2, (iw - c) // 2)
    fix = (f"crop the centre as Caffe does at TEST: h_off = (H - {c}) // 2, w_off = (W - {c}) // 2 (= {centre} for "
           f"{ih}x{iw} images{', after resizing to new_height x new_width' if t.new_height else ''}), e.g. "
           f"keras.layers.CenterCrop({c}, {c}) (the same offsets), and crop the mean image at the same offsets")
    out = []
    rules = {"at the top-left corner (offset (0, 0))": lambda h, w, k: (0, 0),
             "at the bottom-right corner": lambda h, w, k: (h - k, w - k),
             "with the offset rounded up ((H - crop + 1) // 2)": lambda h, w, k: ((h - k + 1) // 2, (w - k + 1) // 2)}
    for what, rule in rules.items():
        if rule(ih, iw, c) == centre:
            continue
        out.append(_H("preprocess_crop", f"the Keras side crops {what} where Caffe crops the centre {centre} "
                      f"(h_off = (H - crop)/2, integer division)", fix,
                      (lambda r: lambda: run(bgr, offsets=r))(rule)))

    def resized_instead(kind: str) -> Callable[[], np.ndarray]:
        def f() -> np.ndarray:
            ims = [_resize_to(caffe_resize(im, t), c, c, kind) for im in bgr]
            return run(ims, replace(t, crop_size=0, mean_image=_crop_mean(t)), resized=True, allow_float=True)
        return f

    for kind in ("keras-bilinear", "cv2-linear"):
        out.append(_H("preprocess_crop", f"the Keras side resizes the whole image to {c}x{c} ({kind}) where Caffe "
                      f"crops its centre", fix, resized_instead(kind)))
    return out


def _crop_mean(t: CaffeTransform) -> np.ndarray | None:
    if t.mean_image is None:
        return None
    m, c = t.mean_image, t.crop_size
    h0, w0 = (m.shape[1] - c) // 2, (m.shape[2] - c) // 2
    return m[:, h0:h0 + c, w0:w0 + c].copy()


_CV2 = {"cv2-nearest": "INTER_NEAREST", "cv2-cubic": "INTER_CUBIC", "cv2-area": "INTER_AREA",
        "cv2-lanczos4": "INTER_LANCZOS4", "cv2-linear": "INTER_LINEAR"}
_KERAS = {"keras-bilinear": "bilinear", "keras-nearest": "nearest", "keras-bicubic": "bicubic"}


def _resize_to(img: np.ndarray, h: int, w: int, kind: str) -> np.ndarray:
    if kind in _CV2:
        cv2 = require_cv2()
        out = cv2.resize(img, (w, h), interpolation=getattr(cv2, _CV2[kind]))
        return out[:, :, None] if out.ndim == 2 else out
    import keras

    y = keras.layers.Resizing(h, w, interpolation=_KERAS[kind])(np.asarray(img, np.float32)[None])
    return np.asarray(keras.ops.convert_to_numpy(y))[0].astype(np.float32)


def _resize(bgr, t: CaffeTransform, run) -> list[_H]:
    nh, nw = t.new_height, t.new_width
    if not nh or t.route == "pycaffe":
        return []
    fix = (f"resize as Caffe's ImageData does, before any crop: the 8-bit image to {nh}x{nw} with OpenCV's "
           f"INTER_LINEAR (cv::resize's default) -- cv2.resize(img, ({nw}, {nh})) before the Keras preprocessing "
           f"(check: --keras-resize {nh},{nw}); keras.layers.Resizing({nh}, {nw}) interpolates in float and "
           f"differs from it by up to one grey level")
    plain = replace(t, new_height=0, new_width=0)

    def variant(kind: str) -> Callable[[], np.ndarray]:
        return lambda: run([_resize_to(im, nh, nw, kind) for im in bgr], plain, resized=True, allow_float=True)

    out = [_H("preprocess_resize", f"the Keras side resizes to {nh}x{nw} with {kind} where Caffe uses OpenCV's "
              f"INTER_LINEAR on the 8-bit image", fix, variant(kind))
           for kind in ("cv2-nearest", "cv2-cubic", "cv2-area", "cv2-lanczos4", "keras-nearest", "keras-bicubic",
                        "keras-bilinear")]
    if t.crop_size:
        out.append(_H("preprocess_resize", f"the Keras side does not resize to {nh}x{nw} before the crop (it crops "
                      f"the image at its own size)", fix, lambda: run(bgr, plain, resized=True)))
    return out


def _resize_size(bgr, t: CaffeTransform, run, keras_resize: Any) -> list[_H]:
    """The Keras side resizes (with OpenCV, as Caffe) to another size than ImageData's new_height x new_width, or
    where Caffe does not resize at all; the crop then gives the same shape from other pixels."""
    nh, nw = t.new_height, t.new_width
    if not keras_resize or t.route == "pycaffe" or tuple(keras_resize) == (nh, nw):
        return []
    kh, kw = keras_resize
    if nh:
        caffe_does = f"resizes to {nh}x{nw} (image_data_param new_height x new_width)"
        fix = (f"resize to Caffe's size, {nh}x{nw} (height x width; cv2.resize(img, ({nw}, {nh})), check: "
               f"--keras-resize {nh},{nw}), before the crop")
    else:
        caffe_does = f"does not resize ({t.source}: no new_height/new_width; the image is cropped at its own size)"
        fix = "do not resize before the crop (drop --keras-resize): Caffe crops the image at its own size"
    return [_H("preprocess_resize", f"the Keras side resizes to {kh}x{kw} (--keras-resize) where Caffe {caffe_does}",
               fix, lambda: run(bgr, replace(t, new_height=int(kh), new_width=int(kw))))]


def _shape_cause(bgr, t: CaffeTransform, caffe: np.ndarray, keras: np.ndarray) -> Cause:
    """Layer 0 of another shape: which geometric step is missing or different."""
    kh, kw = keras.shape[2:] if keras.ndim == 4 else (None, None)
    ch, cw = caffe.shape[2:]
    oh, ow = bgr[0].shape[:2]
    rh, rw = caffe_resize(bgr[0], t).shape[:2]
    if keras.ndim == 4 and keras.shape[1] != caffe.shape[1]:
        return Cause("unknown", 0.5, f"the Keras side's layer 0 has {keras.shape[1]} channels, Caffe's "
                     f"{caffe.shape[1]}", "give the Keras preprocessing the net's channel count")
    if t.crop_size and (kh, kw) in ((rh, rw), (oh, ow)):
        return Cause("preprocess_crop", 0.9, f"the Keras side does not crop: it gives {kh}x{kw}, Caffe centre-crops "
                     f"to {ch}x{cw}", f"crop the centre as Caffe does at TEST: keras.layers.CenterCrop({ch}, {cw}) "
                     f"(offsets ((H - {ch}) // 2, (W - {cw}) // 2))")
    if t.new_height and (kh, kw) == (oh, ow):
        return Cause("preprocess_resize", 0.9, f"the Keras side does not resize: it gives the image's own {kh}x{kw}, "
                     f"Caffe resizes to {t.new_height}x{t.new_width}" + (" and crops" if t.crop_size else ""),
                     f"resize the 8-bit image to {t.new_height}x{t.new_width} with OpenCV INTER_LINEAR first "
                     f"(--keras-resize {t.new_height},{t.new_width})")
    code = "preprocess_resize" if t.new_height or not t.crop_size else "preprocess_crop"
    return Cause(code, 0.6, f"the Keras side's layer 0 is {kh}x{kw}, Caffe's {ch}x{cw} ({t.describe()})",
                 f"bring the Keras side's images to {ch}x{cw} the way Caffe does: {t.describe()}")
