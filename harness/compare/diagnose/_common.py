"""What every hypothesis family uses: re-running a Caffe layer through the reference, the relative error
and confidence, Keras layer lookups, the hypothesis record, and where the error sits (cues)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ...net import Layer


_F64 = np.float64


_EXACT = 1e-4  # e_h below this (and far below e_0) is a reproduction; stop testing further hypotheses


_MAX_SAMPLES_BIG = 1  # samples used for hypotheses when a layer is expensive


_BIG_ELEMENTS = 200_000


def _reference() -> Any:
    """The reference registry (importing the reference package registers every reference function)."""
    import harness.reference  # noqa: F401
    from ...reference.registry import REFERENCE

    return REFERENCE


def _run(layer: Layer, inputs: Sequence[np.ndarray]) -> np.ndarray:
    ref = _reference()
    out = ref[layer.kind](layer, [np.asarray(x, dtype=_F64) for x in inputs], dtype=_F64)
    return np.asarray(out[0], dtype=_F64)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """Relative L2 distance of ``a`` from ``b`` (inf when the shapes differ)."""
    if a.shape != b.shape:
        return math.inf
    a = np.asarray(a, _F64)
    b = np.asarray(b, _F64)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.inf
    den = max(float(np.linalg.norm(b)), float(np.linalg.norm(a)), 1e-30)
    return float(np.linalg.norm(a - b)) / den


def _confidence(e_h: float, e_0: float) -> float:
    if not math.isfinite(e_h) or e_0 <= 0:
        return 0.0
    return max(0.0, 1.0 - e_h / e_0) / (1.0 + e_h / 0.01)


def _with_blobs(layer: Layer, blobs: Iterable[np.ndarray]) -> Layer:
    return dataclasses.replace(layer, blobs=tuple(np.asarray(b, dtype=np.float64) for b in blobs))


def _with_param(layer: Layer, edit: Callable[[Any], None]) -> Layer:
    p = type(layer.param)()
    p.CopyFrom(layer.param)
    edit(p)
    return dataclasses.replace(layer, param=p)


def _keras_layers(keras_layer: Any) -> list[Any]:
    if keras_layer is None:
        return []
    if isinstance(keras_layer, (list, tuple)):
        return [k for k in keras_layer if k is not None]
    return [keras_layer]


def _keras_find(keras_layer: Any, *class_names: str) -> Any:
    for k in _keras_layers(keras_layer):
        if type(k).__name__ in class_names:
            return k
    return None


def _keras_weights(klayer: Any) -> list[np.ndarray]:
    try:
        return [np.asarray(w) for w in klayer.get_weights()]
    except Exception:
        return []


def _keras_attr(keras_layer: Any, names: Sequence[str], class_names: Sequence[str] = ()) -> Any:
    for k in _keras_layers(keras_layer):
        if class_names and type(k).__name__ not in class_names:
            continue
        for n in names:
            v = getattr(k, n, None)
            if v is not None and not callable(v):
                return v
    return None


@dataclass
class _Cues:
    texts: list[str]
    border_only: bool = False
    channel: int | None = None
    negative_only: bool = False
    ratio: float | None = None

    @property
    def structured(self) -> bool:
        return self.border_only or self.channel is not None or self.negative_only or self.ratio is not None


def _cues(x: np.ndarray | None, ref: np.ndarray, ker: np.ndarray) -> _Cues:
    """Where does the error sit?  Borders only, one channel, negative inputs only, a constant ratio."""
    err = np.abs(np.asarray(ker, _F64) - ref)
    total = float(err.sum())
    cues = _Cues([])
    if total == 0 or not np.isfinite(total):
        return cues
    if ref.ndim == 4 and ref.shape[2] > 2 and ref.shape[3] > 2:
        inner = err[:, :, 1:-1, 1:-1]
        frac_border = 1.0 - float(inner.sum()) / total
        border_share = 1.0 - inner.size / err.size
        if frac_border > 0.99 and border_share < 0.9:
            cues.border_only = True
            cues.texts.append(f"the error sits on the border rows/columns only ({frac_border:.0%} of it)")
    if ref.ndim >= 2 and ref.shape[1] > 1:
        per_c = err.reshape(err.shape[0], err.shape[1], -1).sum(axis=(0, 2))
        c = int(np.argmax(per_c))
        if per_c[c] > 0.99 * total:
            cues.channel = c
            cues.texts.append(f"the error sits in channel {c} only")
    if x is not None and x.shape == ref.shape:
        neg = x < 0
        if neg.any() and (~neg).any():
            frac_neg = float(err[neg].sum()) / total
            if frac_neg > 0.99:
                cues.negative_only = True
                cues.texts.append("the error sits where the input is negative only")
    big = np.abs(ref) > 1e-3 * max(float(np.abs(ref).max()), 1e-30)
    if big.sum() > 4:
        ratios = np.asarray(ker, _F64)[big] / ref[big]
        med = float(np.median(ratios))
        if abs(med - 1.0) > 1e-3 and np.all(np.abs(ratios - med) <= 1e-3 * abs(med) + 1e-9):
            cues.ratio = med
            cues.texts.append(f"Keras = {med:.6g} x Caffe everywhere (a constant ratio: a scale is wrong)")
    return cues


@dataclass
class _Hyp:
    code: str
    explanation: str
    fix: str
    predict: Callable[[], np.ndarray]
    weight_match: bool = False  # the Keras weights equal the buggy transform exactly
    layer: str = ""  # the Caffe layer of the span this hypothesis blames (default: the span's usual owner)


def _tf_same(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow 'same': out = ceil(in / s), total = max((out - 1) s + k - in, 0), before = total // 2."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def _clear_conv_pad(p: Any) -> None:
    cp = p.convolution_param
    for f in ("pad", "pad_h", "pad_w"):
        cp.ClearField(f)


# ------------------------------------------------------------------------------------------------------ registry

@dataclass(frozen=True)
class Probe:
    """What a hypothesis family may read besides the layer and its reference inputs."""

    keras_layer: Any  # the matched Keras layer (or a list of layers, or None)
    keras_out: np.ndarray | None  # the Keras output when the layer is the span's last (NCHW), else None
    out_hw: tuple[int, int] | None  # the layer's own output H, W (4-D outputs)


HypFn = Callable[[Layer, list, Probe], list]
# canonical Caffe type -> (hypothesis family, whether it already includes the input-layout hypotheses)
HYPOTHESES: dict[str, tuple[HypFn, bool]] = {}


def hypotheses(*caffe_types: str, includes_layout: bool = False) -> Callable[[HypFn], HypFn]:
    """Register a hypothesis family for Caffe types of the catalogue (one family per type)."""
    from ...catalogue import CATALOGUE

    for t in caffe_types:
        if t not in CATALOGUE:
            raise KeyError(f"hypotheses: unknown Caffe type {t!r}; add it to harness/catalogue.py")
        if t in HYPOTHESES:
            raise ValueError(f"duplicate hypotheses for {t!r}")

    def deco(fn: HypFn) -> HypFn:
        for t in caffe_types:
            HYPOTHESES[t] = (fn, includes_layout)
        return fn

    return deco


# ------------------------------------------------------------------------------------------------------ fix texts

def caffe_pool_padding(g: Any, h: int, w: int, out_hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) padding that makes a padding='valid' pooling place its windows where Caffe does:
    Caffe's ``pad`` on top/left, and at the bottom/right whatever its last window needs, the pad or, in ceil mode,
    the overhang ``(out - 1) * stride + kernel - in - pad``."""
    (kh, kw), (sh, sw), (ph, pw) = g.kernel, g.stride, g.pad
    ho, wo = out_hw
    return (ph, max(0, (ho - 1) * sh + kh - h - ph)), (pw, max(0, (wo - 1) * sw + kw - w - pw))


def _same_is_caffe(g: Any, h: int, w: int, out_hw: tuple[int, int]) -> bool:
    """Whether ``MaxPooling2D(padding='same')`` pools exactly as Caffe's MAX pooling here: TensorFlow's output size
    ``ceil(in / s)`` is Caffe's and its leading pad ``total // 2`` is Caffe's ``pad`` (the trailing padding, like
    Caffe's clipped last window, never wins a max)."""
    for n, k, s, p, o in zip((h, w), g.kernel, g.stride, g.pad, out_hw):
        out, before, _ = _tf_same(n, k, s)
        if out != o or before != p:
            return False
    return True


def pool_padding_fix(method: str, g: Any, h: int, w: int, out_hw: tuple[int, int]) -> str:
    """The concrete Keras change that pools like Caffe (numbers filled in)."""
    (pt, pb), (pl, pr) = caffe_pool_padding(g, h, w, out_hw)
    (kh, kw), (sh, sw) = g.kernel, g.stride
    cls = "MaxPooling2D" if method == "MAX" else "AveragePooling2D"
    core = f"{cls}(pool_size=({kh}, {kw}), strides=({sh}, {sw}), padding='valid')"
    same = method == "MAX" and _same_is_caffe(g, h, w, out_hw)
    if same:  # exact for any input sign, and a stock layer: first
        alt = (f"; or pad as Caffe does: keras.layers.ZeroPadding2D((({pt}, {pb}), ({pl}, {pr}))) then "
               f"keras.layers.{core}, exact only where the input is >= 0, e.g. after a ReLU"
               if pt or pb or pl or pr else "")
        return (f"use keras.layers.MaxPooling2D(pool_size=({kh}, {kw}), strides=({sh}, {sw}), padding='same') with "
                f"no padding before it (exact here: TensorFlow 'same' gives Caffe's {out_hw[0]}x{out_hw[1]} windows "
                f"at Caffe's offsets, and its padding never wins a max{alt})")
    if not (pt or pb or pl or pr):
        return f"use {core} with no padding before it (Caffe pads nothing here)"
    text = f"pad exactly as Caffe does, then pool unpadded: keras.layers.ZeroPadding2D((({pt}, {pb}), ({pl}, {pr}))) " \
           f"then {core}"
    if method == "MAX":
        # Caffe's MAX padding never wins (-FLT_MAX): zeros only where the input is >= 0; the harness's own
        # registered pad layer loads in safe mode (no Lambda)
        return (f"pad with -inf as Caffe's padding never wins, then pool unpadded: "
                f"harness.convert.custom_layers.CaffeConstantPad2D(padding=(({pt}, {pb}), ({pl}, {pr})), "
                f"value='-inf') then keras.layers.{core} (keras.layers.ZeroPadding2D((({pt}, {pb}), ({pl}, {pr}))) "
                f"in its place is exact only where the input is >= 0, e.g. after a ReLU)")
    if pb > pt or pr > pl:
        text += (f"; Caffe's divisor leaves out the ceil overhang ({pb - pt} row(s), {pr - pl} column(s)) that "
                 f"zero padding counts: the converter's CaffeAvePool2D is exact")
    return text


def _padding_before(keras_layer: Any) -> Any:
    """The ZeroPadding2D feeding the matched Keras layer, if one does."""
    for k in _keras_layers(keras_layer)[:1]:
        nodes = getattr(k, "_inbound_nodes", None) or []
        ins = list(nodes[-1].input_tensors) if nodes else []
        if len(ins) == 1:
            op = ins[0]._keras_history[0]
            if type(op).__name__ == "ZeroPadding2D":
                return op
    return None


def conv_padding_fix(g: Any, layer_word: str = "convolution", keras_layer: Any = None) -> str:
    """The concrete Keras change that pads a convolution like Caffe (symmetric ``pad``; numbers filled in), naming
    the port's own ZeroPadding2D when one feeds the layer, and 'same' only when the layer uses it."""
    ph, pw = g.pad
    kls = [k for k in _keras_layers(keras_layer) if isinstance(getattr(k, "name", None), str)]
    name = f"{kls[0].name!r}" if kls else f"the {layer_word}"
    same = ", not 'same'" if not kls or getattr(kls[0], "padding", "same") == "same" else ""
    pad_layer = _padding_before(keras_layer)
    if not (ph or pw):
        drop = f"remove ZeroPadding2D {pad_layer.name!r} and " if pad_layer is not None else ""
        return f"{drop}use padding='valid' on {name} with no padding before it{same} (Caffe pads nothing here)"
    if pad_layer is not None:
        return (f"pad symmetrically as Caffe does: change ZeroPadding2D {pad_layer.name!r} (it pads "
                f"{tuple(tuple(int(v) for v in p) for p in pad_layer.padding)}) to keras.layers.ZeroPadding2D"
                f"(({ph}, {pw})), with padding='valid' on {name}{same}")
    return (f"pad symmetrically as Caffe does: keras.layers.ZeroPadding2D(({ph}, {pw})) before {name}, and "
            f"padding='valid' on it{same}")
