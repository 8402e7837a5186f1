"""Hypotheses for Convolution / ConvolutionDepthwise / Deconvolution: kernel layouts, groups, bias, padding."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ...catalogue import traits, window
from ...net import Layer
from ..reports.result import Cause
from ._common import (_F64, Probe, _clear_conv_pad, _Hyp, _keras_find, _keras_weights, _rel, _run, _tf_same,
                      _with_blobs, _with_param, conv_padding_fix, hypotheses)
from .layout import _layout_hyps


class _ConvCase:
    """The layer's blobs and the Keras kernel, shared by the conv hypothesis groups below."""

    def __init__(self, layer: Layer, xs: list[np.ndarray], keras_layer: Any) -> None:
        from ...params import conv_geometry

        self.layer, self.xs, self.g = layer, xs, conv_geometry(layer)
        self.deconv = window(layer.kind) == "deconv"
        self.w = np.asarray(layer.blobs[0], _F64)
        self.b = list(layer.blobs[1:])
        o, i = self.w.shape[:2]
        x = xs[0]
        self.c_in = x.shape[1] if x.ndim == 4 else 0
        self.depthwise = not self.deconv and i == 1 and self.c_in > 1 and (
            traits(layer.kind).depthwise or self.g.group == self.c_in)
        self.kl = _keras_find(keras_layer, "Conv2D", "Conv2DTranspose", "DepthwiseConv2D")
        kws = _keras_weights(self.kl) if self.kl is not None else []
        self.kern = kws[0] if kws else None
        self.kbias = kws[1] if len(kws) > 1 else None
        self.hyps: list[_Hyp] = []

    def same_kernel(self, candidate: np.ndarray) -> bool:
        return self.kern is not None and self.kern.shape == candidate.shape and np.allclose(
            self.kern, candidate, rtol=1e-5, atol=1e-7)

    def wh(self, code: str, expl: str, fix: str, w2: np.ndarray, keras_form: np.ndarray | None = None) -> None:
        """A hypothesis that the Keras layer computes with weight ``w2`` (``keras_form``: how its Keras kernel would
        then look, to check against the real one)."""
        lay = _with_blobs(self.layer, [w2, *self.b])
        xs = self.xs
        self.hyps.append(_Hyp(code, expl, fix, lambda: _run(lay, xs),
                              weight_match=keras_form is not None and self.same_kernel(keras_form)))


def _kernel_layout_hyps(c: _ConvCase) -> None:
    """Reshaped instead of transposed, H/W swapped, rotated 180 degrees."""
    w = c.w
    o, i, kh, kw = w.shape
    if c.depthwise:
        # Keras DepthwiseConv2D wants (kh, kw, C, m) = W.reshape(C, m, kh, kw).transpose(2, 3, 0, 1)
        m = o // c.c_in
        resh = w.reshape(kh, kw, c.c_in, m)
        c.wh("kernel_reshaped",
             f"the Keras depthwise kernel behaves like W.reshape({kh}, {kw}, {c.c_in}, {m}) of the Caffe blob "
             f"{tuple(w.shape)}",
             f"use w.reshape({c.c_in}, {m}, {kh}, {kw}).transpose(2, 3, 0, 1) for DepthwiseConv2D, not a plain "
             "reshape", resh.transpose(2, 3, 0, 1).reshape(o, 1, kh, kw), resh)
        if kh == kw:
            c.wh("kernel_axes_swapped", "the Keras depthwise kernel's H and W axes are swapped",
                 f"use w.reshape({c.c_in}, {m}, {kh}, {kw}).transpose(2, 3, 0, 1) (H, W, C, multiplier)",
                 w.transpose(0, 1, 3, 2))
    elif not c.deconv:
        resh = w.reshape(kh, kw, i, o)
        c.wh("kernel_reshaped",
             f"the Keras kernel behaves like W.reshape({kh}, {kw}, {i}, {o}) of the Caffe OIHW blob {tuple(w.shape)}",
             "use w.transpose(2, 3, 1, 0) to turn Caffe OIHW into Keras HWIO, not reshape",
             resh.transpose(3, 2, 0, 1), resh)
        if kh == kw:
            c.wh("kernel_axes_swapped",
                 "the Keras kernel's H and W axes are swapped (e.g. W.T or transpose(3, 2, 1, 0))",
                 "use w.transpose(2, 3, 1, 0) (H, W, in, out), not w.T / transpose(3, 2, 1, 0)",
                 w.transpose(0, 1, 3, 2), w.transpose(3, 2, 1, 0))
    elif kh == kw:
        c.wh("kernel_axes_swapped", "the Keras kernel's H and W axes are swapped",
             "put the kernel height first: (kh, kw, ...)", w.transpose(0, 1, 3, 2))
    if kh > 1 or kw > 1:
        flip = w[:, :, ::-1, ::-1]
        c.wh("kernel_flipped",
             "the Keras kernel is the Caffe kernel rotated 180 degrees (convolution vs cross-correlation)",
             "do not flip the kernel: Caffe and Keras both compute cross-correlation (drop w[:, :, ::-1, ::-1] / "
             "np.rot90(..., 2))", flip,
             None if c.deconv or c.depthwise else flip.transpose(2, 3, 1, 0))


def _group_hyps(c: _ConvCase) -> None:
    """The channel groups of a grouped convolution in the wrong order (outputs, inputs, or filters+biases)."""
    g, w, b, xs = c.g.group, c.w, c.b, c.xs
    o = w.shape[0]
    if g <= 1 or c.depthwise or o % g:
        return
    perm = np.concatenate(np.split(np.arange(o), g)[::-1])
    full = _with_blobs(c.layer, [w, *b])
    c.hyps.append(_Hyp("group_order",
                       f"the Keras side puts the {g} output channel groups in reverse order (the per-group "
                       "convolutions concatenated the wrong way round)",
                       "concatenate the group outputs in Caffe's order (group 0 first), or use Conv2D(groups=g) "
                       "with w.transpose(2, 3, 1, 0)", lambda: _run(full, xs)[:, perm]))
    if c.c_in % g == 0:
        iperm = np.concatenate(np.split(np.arange(c.c_in), g)[::-1])
        c.hyps.append(_Hyp("group_order",
                           f"the Keras side feeds the {g} input channel groups to the wrong group's weights",
                           "split the input channels into contiguous groups in order (group i gets channels "
                           "i*C/g .. (i+1)*C/g - 1)", lambda: _run(full, [xs[0][:, iperm], *xs[1:]])))
    if not c.deconv:  # Conv2D(groups=g) given the filter groups in reverse order: each group's filters (and
        # biases) see another group's input channels
        swapped = _with_blobs(c.layer, [w[perm], *[np.asarray(bb)[perm] if np.ndim(bb) == 1 and len(bb) == o
                                                   else bb for bb in b]])
        c.hyps.append(_Hyp("group_order",
                           f"the Keras kernel holds the {g} filter groups in reverse order (group i's "
                           "filters and biases applied to another group's input channels)",
                           "keep Caffe's filter order: Conv2D(groups=g) kernel = w.transpose(2, 3, 1, 0) of the "
                           "whole (C_out, C_in/g, kh, kw) blob, group 0's filters first",
                           lambda: _run(swapped, xs)))
        if b and np.ndim(b[0]) == 1 and len(b[0]) == o:  # the filters reordered, the biases left in place
            only_w = _with_blobs(c.layer, [w[perm], *b])
            c.hyps.append(_Hyp("group_order",
                               f"the Keras kernel holds the {g} filter groups in reverse order while the biases "
                               "stay in Caffe's order (each group's filters applied to another group's channels)",
                               "keep Caffe's filter order: Conv2D(groups=g) kernel = w.transpose(2, 3, 1, 0) of the "
                               "whole (C_out, C_in/g, kh, kw) blob, group 0's filters first (the bias is already "
                               "right)", lambda: _run(only_w, xs)))


def _conv_hyps(layer: Layer, xs: list[np.ndarray], keras_layer: Any, out_hw: tuple[int, int]) -> list[_Hyp]:
    c = _ConvCase(layer, xs, keras_layer)
    _kernel_layout_hyps(c)
    _group_hyps(c)
    w, b, x = c.w, c.b, xs[0]
    if c.deconv and w.shape[0] == w.shape[1]:
        c.wh("deconv_kernel_layout",
             f"the Deconvolution blob {tuple(w.shape)} is (C_in, C_out, kh, kw) but was read as (C_out, C_in, kh, kw)",
             "for Conv2DTranspose use w.transpose(2, 3, 1, 0) of Caffe's (C_in, C_out, kh, kw) blob, which gives "
             "(kh, kw, C_out, C_in)", w.transpose(1, 0, 2, 3))
    if b:
        lay_nb = _with_blobs(layer, [w, np.zeros_like(np.asarray(b[0], _F64))])
        c.hyps.append(_Hyp("missing_bias", "the Keras layer adds no bias (or a zero bias)",
                           "load blobs[1] as the bias: layer.set_weights([kernel, bias]) with use_bias=True",
                           lambda: _run(lay_nb, xs),
                           weight_match=(c.kl is not None and (c.kbias is None or not np.any(c.kbias)))))
    # input-side hypotheses (the first layers of a net are where these happen)
    if x.ndim == 4 and x.shape[1] > 1 and not c.deconv:
        xr = [x[:, ::-1], *xs[1:]]
        c.hyps.append(_Hyp("channel_order",
                           f"the Keras side sees the {x.shape[1]} input channels in reverse order (BGR vs RGB)",
                           "reverse the channel axis once: x[..., ::-1] for the Keras input (or kernel[:, :, ::-1, :] "
                           "for the first layer's Keras HWIO kernel), not both or neither", lambda: _run(layer, xr)))
    hyps = c.hyps + _layout_hyps(layer, xs)
    # padding placement
    hyps += _deconv_pad_hyps(layer, xs, c.g, out_hw) if c.deconv else _conv_pad_hyps(layer, xs, c.g, out_hw,
                                                                                       keras_layer)
    return hyps


def _conv_pad_hyps(layer: Layer, xs: list[np.ndarray], g: Any, out_hw: tuple[int, int],
                   keras_layer: Any = None) -> list[_Hyp]:
    x = xs[0]
    if x.ndim != 4:
        return []
    h, w = x.shape[2:]
    ext = [g.dilation[a] * (g.kernel[a] - 1) + 1 for a in (0, 1)]
    nopad = _with_param(layer, _clear_conv_pad)

    def padded(pt: int, pb: int, pl: int, pr: int) -> Callable[[], np.ndarray]:
        def f() -> np.ndarray:
            xp = np.pad(np.asarray(x, _F64), ((0, 0), (0, 0), (pt, max(pb, 0)), (pl, max(pr, 0))))
            xp = xp[:, :, : xp.shape[2] + min(pb, 0), : xp.shape[3] + min(pr, 0)]
            return _run(nopad, [xp])
        return f

    hyps: list[_Hyp] = []
    same = [_tf_same(s, ext[a], g.stride[a]) for a, s in enumerate((h, w))]
    caffe = ((g.pad[0], g.pad[0]), (g.pad[1], g.pad[1]))
    tf_pads = ((same[0][1], same[0][2]), (same[1][1], same[1][2]))
    if (same[0][0], same[1][0]) == tuple(out_hw) and tf_pads != caffe:
        hyps.append(_Hyp("same_padding",
                         f"the Keras layer pads like TensorFlow 'same' (top/bottom {tf_pads[0]}, left/right "
                         f"{tf_pads[1]}) where Caffe pads {g.pad[0]}x{g.pad[1]} on every side",
                         conv_padding_fix(g, keras_layer=keras_layer), padded(*tf_pads[0], *tf_pads[1])))
    cands = []
    for a, size in enumerate((h, w)):
        opts = []
        for before in range(0, ext[a]):
            for after in range(-g.stride[a] + 1, ext[a] + g.stride[a]):
                if (size + before + after - ext[a]) // g.stride[a] + 1 == out_hw[a] and size + before + after >= ext[a]:
                    opts.append((before, after))
        cands.append(opts)
    combos = [(ph, pw) for ph in cands[0] for pw in cands[1] if (ph, pw) != caffe and (ph, pw) != tf_pads]
    combos.sort(key=lambda c: abs(c[0][0] - g.pad[0]) + abs(c[1][0] - g.pad[1])
                + abs(c[0][1] - g.pad[0]) + abs(c[1][1] - g.pad[1]))
    cost = x[:1].size * g.num_output * g.kernel[0] * g.kernel[1]
    limit = 64 if cost < 5e7 else 6
    for ph, pw in combos[:limit]:
        hyps.append(_Hyp("padding_offset",
                         f"the Keras layer pads (top, bottom) = {ph}, (left, right) = {pw} where Caffe pads "
                         f"{g.pad[0]}x{g.pad[1]} on every side",
                         conv_padding_fix(g, keras_layer=keras_layer), padded(*ph, *pw)))
    return hyps


def _deconv_pad_hyps(layer: Layer, xs: list[np.ndarray], g: Any, out_hw: tuple[int, int]) -> list[_Hyp]:
    """Deconvolution padding = cropping of the full output: other crop offsets, and TF 'same''s."""
    x = xs[0]
    if x.ndim != 4:
        return []
    h, w = x.shape[2:]
    ext = [g.dilation[a] * (g.kernel[a] - 1) + 1 for a in (0, 1)]
    full_hw = [g.stride[0] * (h - 1) + ext[0], g.stride[1] * (w - 1) + ext[1]]
    nopad = _with_param(layer, _clear_conv_pad)
    cache: dict[str, np.ndarray] = {}

    def full() -> np.ndarray:
        if "y" not in cache:
            cache["y"] = _run(nopad, xs)
        return cache["y"]

    # Conv2DTranspose(padding="same"): out = in * s, crop before = max((in - 1) s + k - out, 0) // 2
    tf_before = tuple(max((size - 1) * g.stride[a] + ext[a] - size * g.stride[a], 0) // 2
                      for a, size in enumerate((h, w)))
    tf_same_fits = (h * g.stride[0], w * g.stride[1]) == tuple(out_hw)
    hyps = []
    for ct in range(0, full_hw[0] - out_hw[0] + 1):
        for cl in range(0, full_hw[1] - out_hw[1] + 1):
            if (ct, cl) == tuple(g.pad):
                continue
            same = tf_same_fits and (ct, cl) == tf_before
            hyps.append(_Hyp("same_padding" if same else "padding_offset",
                             f"the Keras transposed convolution crops its full output at offset ({ct}, {cl})"
                             + (" (TensorFlow 'same')" if same else "") + f" where Caffe crops pad = "
                             f"({g.pad[0]}, {g.pad[1]})",
                             f"use Conv2DTranspose(padding='valid') then Cropping2D((({g.pad[0]}, {g.pad[0]}), "
                             f"({g.pad[1]}, {g.pad[1]})))",
                             lambda ct=ct, cl=cl: full()[:, :, ct:ct + out_hw[0], cl:cl + out_hw[1]]))
    hyps.sort(key=lambda hh: hh.code != "same_padding")
    return hyps


@hypotheses("Convolution", "ConvolutionDepthwise", "Deconvolution", includes_layout=True)
def conv_family(layer: Layer, xs: list[np.ndarray], probe: Probe) -> list[_Hyp]:
    if not (layer.blobs and probe.out_hw):
        return _layout_hyps(layer, xs)
    return _conv_hyps(layer, xs, probe.keras_layer, probe.out_hw)


# (the Caffe geometry's field, the Keras Conv2D config key, the cause code): the parameters the evidence compares that
# a re-run of the Caffe layer with the Keras value tests
_RERUN_PARAMS = (("stride", "strides", "stride"), ("dilation", "dilation_rate", "dilation"))


def _set_pair(p: Any, what: str, v: tuple[int, int]) -> None:
    cp = p.convolution_param
    if what == "stride":
        for f in ("stride", "stride_h", "stride_w"):
            cp.ClearField(f)
        cp.stride_h, cp.stride_w = v
    else:
        cp.ClearField("dilation")
        cp.dilation.extend(list(v))


def _keras_pair(cfg: dict, key: str) -> tuple[int, int] | None:
    v = cfg.get(key)
    if v is None:
        return None
    v = tuple(int(a) for a in (v if isinstance(v, (list, tuple)) else (v, v)))
    return v if len(v) == 2 else None


def conv_param_causes(layer: Layer, xs: list[np.ndarray], ker: np.ndarray, keras_layer: Any) -> list[Cause]:
    """``stride`` / ``dilation``: the Keras Conv2D's ``strides`` / ``dilation_rate`` differ from the prototxt's, tested
    by re-running the Caffe layer with the Keras value on the reference's inputs: it reproduces the Keras output's
    shape (and, when the padding agrees too, its values).  The fix names the Keras layer and Caffe's value."""
    from ...params import conv_geometry

    kl = _keras_find(keras_layer, "Conv2D", "DepthwiseConv2D")
    if window(layer.kind) != "conv" or kl is None or not xs or not layer.blobs:
        return []
    try:
        cfg, g = kl.get_config(), conv_geometry(layer)
    except Exception:
        return []
    out = []
    for what, key, code in _RERUN_PARAMS:
        kv, cv = _keras_pair(cfg, key), tuple(getattr(g, what))
        if kv is None or kv == cv:
            continue
        try:
            y = _run(_with_param(layer, lambda p, what=what, kv=kv: _set_pair(p, what, kv)), xs)
        except Exception:
            continue
        if y.shape != ker.shape:
            continue
        e = _rel(ker, y)
        exact = e < 1e-4
        out.append(Cause(code, 0.97 if exact else 0.8,
                         f"the Keras layer {kl.name!r} has {key}={kv} where Caffe {layer.name!r} has {what} "
                         f"{cv[0]}x{cv[1]}: the Caffe layer re-run with {what} {kv[0]}x{kv[1]} gives the Keras "
                         f"output's shape {tuple(ker.shape)}" + (f" and values (to {e:.1e})" if exact else
                                                                 f" (values {e:.1e} apart: the padding differs too)"),
                         f"set {key}=({cv[0]}, {cv[1]}) on Keras layer {kl.name!r}"))
    return out + _shape_param_causes(layer, xs, ker, kl, cfg, g)


def _set_kernel(p: Any, v: tuple[int, int]) -> None:
    cp = p.convolution_param
    for f in ("kernel_size", "kernel_h", "kernel_w"):
        cp.ClearField(f)
    cp.kernel_h, cp.kernel_w = v


def _shape_param_causes(layer: Layer, xs: list[np.ndarray], ker: np.ndarray, kl: Any, cfg: dict,
                        g: Any) -> list[Cause]:
    """``kernel_size`` / ``num_output``: the Keras layer's ``kernel_size`` / ``filters`` differ from the prototxt's.
    Caffe's weights do not fit the Keras value, so the re-run (with zero weights of the fitting shape) tests the
    output shape only: it gives the Keras output's shape (confidence 0.8)."""
    w = np.asarray(layer.blobs[0], _F64)
    out = []
    kv = _keras_pair(cfg, "kernel_size")
    if kv is not None and kv != tuple(g.kernel):
        trial = _with_blobs(_with_param(layer, lambda p: _set_kernel(p, kv)),
                            [np.zeros(w.shape[:2] + kv), *layer.blobs[1:]])
        out.append(("kernel_size", trial, f"kernel_size={kv}", f"kernel {g.kernel[0]}x{g.kernel[1]}",
                    f"kernel_size=({g.kernel[0]}, {g.kernel[1]})"))
    f = cfg.get("filters")
    if isinstance(f, int) and f != g.num_output and f > 0:
        trial = _with_blobs(_with_param(layer, lambda p: setattr(p.convolution_param, "num_output", f)),
                            [np.zeros((f,) + w.shape[1:]), *[np.zeros(f) for _ in layer.blobs[1:]]])
        out.append(("num_output", trial, f"filters={f}", f"num_output {g.num_output}", f"filters={g.num_output}"))
    causes = []
    for code, trial, kval, cval, fix in out:
        try:
            y = _run(trial, xs)
        except Exception:
            continue
        if y.shape == ker.shape:
            causes.append(Cause(code, 0.8, f"the Keras layer {kl.name!r} has {kval} where Caffe {layer.name!r} has "
                                           f"{cval}: the Caffe layer re-run with {kval} gives the Keras output's shape "
                                           f"{tuple(ker.shape)} (Caffe's weights do not fit it: shape only)",
                                f"set {fix} on Keras layer {kl.name!r} and load Caffe's weights"))
    return causes
