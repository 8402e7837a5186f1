"""Parameter evidence: each matched pair's Keras weights and configuration read against the Caffe layer's blobs and
parameters, independent of how the port names or nests its layers.

For every pair whose span holds a convolution, an InnerProduct, a BatchNorm (+ Scale) or a ReLU, the Keras layer's
own arrays are compared with Caffe's under the transforms a port applies (and the ones a wrong port applies):

* kernel: ``equal`` (Caffe's blob in the Keras layout: OIHW -> HWIO ``transpose(2, 3, 1, 0)``; depthwise
  ``reshape(C, m, kh, kw).transpose(2, 3, 0, 1)``; deconvolution ``transpose(2, 3, 1, 0)``; Dense ``W.T``, also with
  rows in any other axis order of the flattened (C, H, W) blob: the H, W, C of an NHWC Flatten, the W, H, C of a
  Permute before it ...), or equal under a named wrong transform: ``reshaped``, ``flipped``,
  ``axes swapped``, ``not transposed``, ``channel order reversed``; else ``different``;
* bias: ``equal``, ``missing`` (no bias, or zeros where Caffe's is not), ``different``;
* stride, dilation: ``equal`` or the two values;
* padding (convolution, pooling): the padding the windows actually read, ``((top, bottom), (left, right))``, from a
  ZeroPadding2D feeding the layer plus TensorFlow's 'same' placement, against Caffe's symmetric ``pad`` (for a
  ceil-mode pooling, the trailing padding its last window reads): ``equal`` or both values;
* BatchNormalization: mean / variance ``equal`` (Caffe's divided by its factor blob), ``factor ignored`` (not
  divided), ``different``; gamma / beta against the Scale that follows (``equal``, ``ones/zeros``: the Scale left
  out, ``different``); epsilon ``equal`` or both values;
* ReLU: negative slope and max_value against Caffe's;
* PReLU: alpha against Caffe's slopes (channel-shared or per channel): ``equal``, ``channel order reversed``,
  ``different`` (with both values);
* LRN: local_size, alpha, beta, k read from the Keras layer's attributes (Caffe's names, or
  ``tf.nn.local_response_normalization``'s depth_radius / per-element alpha / bias);
* pooling: method (MAX / AVE), pool size and stride, besides the padding.

The result, per pair: ``{"status": "equal" | "transformed" | "different" | "none", "checks": [{"what", "result",
"caffe", "keras"}]}`` (``none``: nothing to compare).  ``status`` is ``equal`` when every check is, ``transformed``
when a check holds only under a wrong transform (the transform is the likely bug), else ``different``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...catalogue import completes, traits, window
from ...net import Layer, Net
from ...params import relu_form

_TOL = dict(rtol=1e-5, atol=1e-7)


def _eq(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.allclose(a, b, **_TOL))


_BIG = 1 << 22  # a Dense kernel above 4M elements (VGG16's fc6: 102M) is compared on its first 64 output units


def _check(what: str, result: str, caffe: Any = None, keras: Any = None) -> dict:
    return {"what": what, "result": result, "caffe": caffe, "keras": keras}


def _conv_forms(lay: Layer, w: np.ndarray, cls: str) -> list[tuple[str, np.ndarray]]:
    """(result, the Keras kernel a port writing it that way holds), the right form first."""
    o, i, kh, kw = w.shape
    if cls == "DepthwiseConv2D":
        from ...params import conv_geometry

        c = max(conv_geometry(lay).group, 1)
        m = o // c
        right = w.reshape(c, m, kh, kw).transpose(2, 3, 0, 1)
        return [("equal", right), ("reshaped", w.reshape(kh, kw, c, m)),
                ("flipped", right[::-1, ::-1]), ("axes swapped", right.transpose(1, 0, 2, 3))]
    right = w.transpose(2, 3, 1, 0)  # Conv2D: (kh, kw, in, out); Conv2DTranspose of (in, out, kh, kw): (kh, kw, out, in)
    return [("equal", right), ("reshaped", w.reshape(kh, kw, i, o) if window(lay.kind) != "deconv" else
                               w.reshape(kh, kw, o, i)),
            ("flipped", right[::-1, ::-1]), ("axes swapped", right.transpose(1, 0, 2, 3)),
            ("channel order reversed", right[:, :, ::-1])]


def _dense_forms(w: np.ndarray, in_shape: tuple[int, ...] | None, m: int) -> list[tuple[str, np.ndarray]]:
    """The Keras kernel's first ``m`` columns under each way of writing it (no full-size copy of a big blob)."""
    n, k = w.shape
    forms = [("equal", w[:m].T)]
    forms += _flatten_forms(w, in_shape, m)
    forms.append(("reshaped", w.reshape(k, n)[:, :m]))
    if n == k:
        forms.append(("not transposed", w[:, :m]))
    return forms


def _flatten_forms(w: np.ndarray, in_shape: tuple[int, ...] | None, m: int) -> list[tuple[str, np.ndarray]]:
    """A Dense after a Flatten of a (C, H, W) blob in any other axis order (NHWC's H, W, C; a Permute's W, H, C
    ...) holds Caffe's rows in that order: each is a correct port of its own flatten."""
    n, k = w.shape
    if in_shape is None or len(in_shape) != 4 or int(np.prod(in_shape[1:])) != k:
        return []
    _, c, h, ww = in_shape
    out = []
    for axes in ((2, 3, 1), (3, 2, 1), (1, 3, 2), (2, 1, 3), (3, 1, 2)):  # H,W,C first: NHWC's own Flatten
        names = ", ".join("CHW"[a - 1] for a in axes)
        out.append((f"equal (rows in {names} order)", w[:m].reshape(m, c, h, ww).transpose(*axes, 0).reshape(k, m)))
    return out


def _kernel_check(forms: list[tuple[str, np.ndarray]], kern: np.ndarray) -> dict:
    for result, form in forms:
        if form.shape == kern.shape and _eq(form, kern):
            return _check("kernel", result)
    return _check("kernel", "different")


def _bias_check(lay: Layer, kb: np.ndarray | None) -> dict | None:
    if len(lay.blobs) < 2:
        return None if kb is None or not np.any(kb) else _check("bias", "different", "none", "present")
    b = np.asarray(lay.blobs[1], np.float64).reshape(-1)
    if kb is None or (not np.any(kb) and np.any(b)):
        return _check("bias", "missing", f"{b.size} values", "none" if kb is None else "zeros")
    return _check("bias", "equal" if _eq(b, np.reshape(kb, -1)) else "different")


def _pair_check(what: str, caffe: tuple, keras: Any) -> dict | None:
    if keras is None:
        return None
    keras = tuple(int(v) for v in np.atleast_1d(keras))
    if len(keras) == 1:
        keras = keras * len(caffe)
    return _check(what, "equal" if keras == tuple(caffe) else "different", list(caffe), list(keras))


def _conv_checks(lay: Layer, kl: Any) -> list[dict]:
    from ...params import conv_geometry

    ws = kl.get_weights()
    if not ws or not lay.blobs:
        return []
    g = conv_geometry(lay)
    out = [_kernel_check(_conv_forms(lay, np.asarray(lay.blobs[0]), type(kl).__name__), np.asarray(ws[0]))]
    b = _bias_check(lay, ws[1] if len(ws) > 1 and getattr(kl, "use_bias", True) else None)
    out += [c for c in (b, _pair_check("stride", g.stride, getattr(kl, "strides", None)),
                        _pair_check("dilation", g.dilation, getattr(kl, "dilation_rate", None))) if c]
    return out


def _dense_checks(lay: Layer, kl: Any, in_shape: tuple[int, ...] | None) -> list[dict]:
    import keras

    if not lay.blobs or getattr(kl, "kernel", None) is None:
        return []
    w = np.asarray(lay.blobs[0])
    if lay.p("inner_product_param").transpose:
        w = np.ascontiguousarray(w.T)
    m = w.shape[0] if w.size <= _BIG else min(w.shape[0], 64)
    kern = keras.ops.convert_to_numpy(kl.kernel[:, :m])  # a slice: no host copy of a 400 MB kernel
    out = [_kernel_check(_dense_forms(w, in_shape, m), kern)]
    bias = keras.ops.convert_to_numpy(kl.bias) if getattr(kl, "use_bias", False) and kl.bias is not None else None
    b = _bias_check(lay, bias)
    return out + ([b] if b else [])


def _bn_checks(span: list[Layer], kl: Any) -> list[dict]:
    bn = span[0]
    if len(bn.blobs) < 3:
        return []
    ws = {w.path.rsplit("/", 1)[-1].split(":")[0]: np.asarray(w.numpy(), np.float64) for w in kl.weights}
    mean, var, fac = (np.asarray(b, np.float64).reshape(-1) for b in bn.blobs[:3])
    f = 0.0 if fac[0] == 0 else 1.0 / fac[0]
    out = []
    for what, blob, key in (("mean", mean, "moving_mean"), ("variance", var, "moving_variance")):
        k = ws.get(key)
        if k is None:
            continue
        res = "equal" if _eq(blob * f, k) else "factor ignored" if f != 1.0 and _eq(blob, k) else "different"
        out.append(_check(what, res))
    scale = span[1] if len(span) > 1 and completes(bn.kind, span[1].kind) else None
    for what, key, i, neutral in (("gamma", "gamma", 0, 1.0), ("beta", "beta", 1, 0.0)):
        k = ws.get(key)
        if k is None or scale is None:
            continue
        want = np.asarray(scale.blobs[i], np.float64).reshape(-1) if len(scale.blobs) > i else None
        if want is None:
            continue
        res = "equal" if _eq(want, k) else "Scale left out" if np.allclose(k, neutral) else "different"
        out.append(_check(what, res))
    eps = float(bn.p("batch_norm_param").eps)
    keps = getattr(kl, "epsilon", None)
    if keps is not None:
        out.append(_check("epsilon", "equal" if abs(float(keps) - eps) <= 1e-12 else "different", eps, float(keps)))
    return out


def _relu_checks(lay: Layer, kl: Any) -> list[dict]:
    slope, clip = relu_form(lay)
    ks = getattr(kl, "negative_slope", None)
    km = getattr(kl, "max_value", None)
    if type(kl).__name__ == "Activation" or getattr(kl, "activation", None) is not None:
        name = getattr(getattr(kl, "activation", None), "__name__", "")
        ks, km = (0.0, 6.0) if name == "relu6" else (0.0, None) if name == "relu" else (ks, km)
    out = []
    if ks is not None:
        out.append(_check("negative slope", "equal" if abs(float(ks) - slope) <= 1e-7 else "different", slope,
                          float(ks)))
    kmv = None if km is None else float(km)
    out.append(_check("clip", "equal" if kmv == clip else "different", clip, kmv))
    return out


def _prelu_checks(lay: Layer, kl: Any) -> list[dict]:
    """PReLU: the Keras alpha (any shape broadcasting over H, W, C) against Caffe's blobs[0] -- one channel-shared
    slope, or one per channel."""
    if not lay.blobs or not kl.get_weights():
        return []
    a = np.asarray(lay.blobs[0], np.float64).reshape(-1)
    k = np.asarray(kl.get_weights()[0], np.float64)
    c = k.shape[-1] if k.ndim else 1
    per = k.reshape(-1, c)  # rows: positions (H, W), columns: channels
    if not np.allclose(per, per[:1], **_TOL):
        return [_check("alpha", "different", _vals(a), "per position (no shared_axes)")]
    per = per[0]
    want = np.full(per.size, a[0]) if a.size == 1 else a
    if per.size != want.size and per.size == 1:
        per = np.full(want.size, per[0])
    if per.shape == want.shape and _eq(per, want):
        return [_check("alpha", "equal")]
    if per.shape == want.shape and want.size > 1 and _eq(per, want[::-1]):
        return [_check("alpha", "channel order reversed")]
    one = float(per[0]) if np.allclose(per, per[0], **_TOL) else None
    keras = one if one is not None else _vals(per)
    return [_check("alpha", "different", float(a[0]) if a.size == 1 else _vals(a), keras)]


def _vals(v: np.ndarray) -> Any:
    v = np.asarray(v, np.float64).reshape(-1)
    return float(v[0]) if v.size == 1 else [float(t) for t in v[:8]] + (["..."] if v.size > 8 else [])


# an LRN written with tf.nn.local_response_normalization's names: depth_radius r = (local_size - 1) / 2, alpha per
# element (Caffe's alpha / local_size), bias = k; or Caffe's own names (the converter's CaffeLRN, most ports)
_LRN_NAMES = {"local_size": ("local_size", "size", "n"), "alpha": ("alpha",), "beta": ("beta",),
              "k": ("k", "bias")}


def _lrn_checks(lay: Layer, kl: Any) -> list[dict]:
    lp = lay.p("lrn_param")
    n = int(lp.local_size)
    caffe = {"local_size": n, "alpha": float(lp.alpha), "beta": float(lp.beta), "k": float(lp.k)}
    radius = getattr(kl, "depth_radius", None)
    got: dict[str, float] = {}
    for what, names in _LRN_NAMES.items():
        v = next((getattr(kl, nm) for nm in names if isinstance(getattr(kl, nm, None), (int, float))), None)
        if v is not None:
            got[what] = float(v)
    if isinstance(radius, (int, float)):  # tf.nn.lrn's form: size 2r + 1, alpha per element
        got["local_size"] = 2 * float(radius) + 1
        if "alpha" in got:
            got["alpha"] = got["alpha"] * got["local_size"]
    out = []
    for what, want in caffe.items():
        if what in got:
            ok = abs(got[what] - want) <= 1e-6 * max(abs(want), 1e-12)
            out.append(_check(what, "equal" if ok else "different", want, got[what]))
    return out


def _pool_checks(lay: Layer, kl: Any) -> list[dict]:
    """Pooling: method, window and stride (the padding: :func:`_padding_check`)."""
    from ...params import pool_geometry

    g = pool_geometry(lay)
    cls = type(kl).__name__
    kmethod = "MAX" if "Max" in cls else "AVE" if "Average" in cls else None
    out = []
    if kmethod is not None:
        out.append(_check("method", "equal" if kmethod == g.method else "different", g.method, kmethod))
    if g.kernel is not None:
        out += [c for c in (_pair_check("pool size", g.kernel, getattr(kl, "pool_size", None)),
                            _pair_check("stride", g.stride, getattr(kl, "strides", None))) if c]
    return out


_CONV = ("Conv2D", "DepthwiseConv2D", "Conv2DTranspose")
_POOL = ("MaxPooling2D", "AveragePooling2D")


def _keras_input_hw(kl: Any) -> tuple[Any, tuple[int, int] | None] | None:
    """(the tensor feeding ``kl``, its spatial size H, W: None when the graph leaves it free, as a fully
    convolutional port's does)."""
    nodes = getattr(kl, "_inbound_nodes", None) or []
    ins = list(nodes[-1].input_tensors) if nodes else []
    if len(ins) != 1 or len(ins[0].shape) != 4:
        return None
    shp = ins[0].shape
    hw = (shp[2], shp[3]) if getattr(kl, "data_format", "channels_last") == "channels_first" else (shp[1], shp[2])
    return (ins[0], (int(hw[0]), int(hw[1])) if None not in hw else None)


def _keras_padding(kl: Any, kernel: tuple[int, int], stride: tuple[int, int],
                   checked_hw: tuple[int, int] | None = None) -> tuple | None:
    """((top, bottom), (left, right)) the Keras side pads the layer's input by: a ZeroPadding2D feeding it plus, for
    padding='same', TensorFlow's placement (the extra row/column at the end).  ``checked_hw``: the Caffe layer's
    input size at the checked input, for a graph whose size is free (before any ZeroPadding2D, as Caffe's is)."""
    got = _keras_input_hw(kl)
    if got is None or (got[1] is None and checked_hw is None):
        return None
    t, hw = got
    op = t._keras_history[0]
    pads = [[0, 0], [0, 0]]
    if type(op).__name__ == "ZeroPadding2D":
        pads = [list(map(int, p)) for p in op.padding]
    h, w = (hw[0] - sum(pads[0]), hw[1] - sum(pads[1])) if hw is not None else checked_hw
    if getattr(kl, "padding", "valid") == "same":
        for a, n in enumerate((h + sum(pads[0]), w + sum(pads[1]))):
            total = max((-(-n // stride[a]) - 1) * stride[a] + kernel[a] - n, 0)
            pads[a][0] += total // 2
            pads[a][1] += total - total // 2
    return (tuple(pads[0]), tuple(pads[1])), (h, w)


def _used(pads: tuple, size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], ceil: bool) -> tuple:
    """The padding the windows actually read: the leading pad, and the trailing pad cut to what the last window
    reaches (a row of padding no window reads changes nothing)."""
    out = []
    for (before, after), n, k, s in zip(pads, size, kernel, stride):
        span = n + before + after - k
        count = (-(-span // s) if ceil else span // s) + 1
        reach = max(0, (count - 1) * s + k - n - before)  # ceil mode: the overhang past the pad is read too
        out.append((before, reach if ceil else min(after, reach)))
    return tuple(out)


def _padding_check(lay: Layer, kl: Any, in_shape: tuple[int, ...] | None = None) -> dict | None:
    """Padding amount and placement against Caffe's (a pooling's ceil rounding expressed as trailing padding);
    ``in_shape``: the layer's NCHW input at the checked size, for a Keras graph that leaves the size free."""
    from ...params import conv_geometry, pool_geometry

    if window(lay.kind) == "pool":
        g = pool_geometry(lay)
        if g.kernel is None:
            return None
        kernel, stride, ceil = g.kernel, g.stride, g.ceil
    else:
        g = conv_geometry(lay)
        kernel = tuple(g.dilation[a] * (g.kernel[a] - 1) + 1 for a in (0, 1))
        stride, ceil = g.stride, False
    got = _keras_padding(kl, kernel, stride, tuple(in_shape[2:4]) if in_shape and len(in_shape) == 4 else None)
    if got is None:
        return None
    kpads, size = got
    caffe = _used(((g.pad[0], g.pad[0]), (g.pad[1], g.pad[1])), size, kernel, stride, ceil)
    keras = _used(kpads, size, kernel, tuple(int(v) for v in getattr(kl, "strides", stride)), False)
    return _check("padding", "equal" if caffe == keras else "different", [list(p) for p in caffe],
                  [list(p) for p in keras])


def evidence(net: Net, pair: Any, kl: Any, in_shape: tuple[int, ...] | None = None) -> dict:
    """The parameter evidence of one pair (see the module docstring)."""
    span = [net.layer(n) for n in (pair.segment or (pair.caffe_layer,))]
    cls = type(kl).__name__
    checks: list[dict] = []
    try:
        classes, read = _CHECKS.get(span[0].kind, ((), None))
        if cls in classes:
            if in_shape is None and read is _windowed_checks:
                in_shape = _bottom_shape(net, span[0])
            checks = read(span, kl, in_shape)
        acts = [lay for lay in span if relu_form(lay) is not None]
        if acts and (cls in _RELU_KERAS or len(span) > 1):
            checks += _relu_checks(acts[-1], kl)
    except Exception as e:  # evidence must never hide the verdict
        checks = [_check("parameters", f"not read: {type(e).__name__}")]
    return {"status": _status(checks), "checks": checks}


_SHAPES: list = [None, None]  # (the last net, its inferred shapes): evidence reads one net's layers in turn


def _bottom_shape(net: Net, lay: Layer) -> tuple[int, ...] | None:
    """The layer's first bottom's NCHW shape in ``net`` (sized at the checked input), or None."""
    from ...shapes import infer_shapes

    if _SHAPES[0] is not net:
        try:
            _SHAPES[:] = [net, infer_shapes(net)]
        except Exception:  # noqa: BLE001 - evidence works without it (no padding row)
            _SHAPES[:] = [net, None]
    ns = _SHAPES[1]
    bs = ns.bottom_shapes(lay.name) if ns is not None else []
    return tuple(bs[0]) if bs else None


def _windowed_checks(span: list[Layer], kl: Any, in_shape: Any) -> list[dict]:
    """Kernel, bias, stride, dilation and (but for a deconvolution, whose port crops) the padding."""
    checks = _conv_checks(span[0], kl) if window(span[0].kind) != "pool" else _pool_checks(span[0], kl)
    if window(span[0].kind) != "deconv":
        checks += [c for c in (_padding_check(span[0], kl, in_shape),) if c]
    return checks


class _AnyClass(tuple):
    """Every Keras class: an LRN port is a layer of its own (the converter's CaffeLRN, a user's class) whose
    attributes are read by name."""

    def __contains__(self, cls: object) -> bool:
        return True


_ANY_CLASS = _AnyClass()


# the parameter checks per Caffe type: the Keras classes they read, and how
_CHECKS: dict[str, tuple[tuple[str, ...], Any]] = {
    "Convolution": (_CONV, _windowed_checks), "ConvolutionDepthwise": (_CONV, _windowed_checks),
    "Deconvolution": (_CONV, _windowed_checks), "Pooling": (_POOL, _windowed_checks),
    "InnerProduct": (("Dense",), lambda span, kl, in_shape: _dense_checks(span[0], kl, in_shape)),
    "BatchNorm": (("BatchNormalization",), lambda span, kl, in_shape: _bn_checks(span, kl)),
    "PReLU": (("PReLU",), lambda span, kl, in_shape: _prelu_checks(span[0], kl)),
    "LRN": (_ANY_CLASS, lambda span, kl, in_shape: _lrn_checks(span[0], kl)),
}
_RELU_KERAS = traits("ReLU").keras[""]  # the Keras layers that carry a slope / max_value


def _status(checks: list[dict]) -> str:
    if not checks:
        return "none"
    results = [c["result"] for c in checks]
    if all(r.startswith("equal") for r in results):
        return "equal"
    if any(r == "different" or r.startswith("not read") for r in results):
        return "different"
    return "transformed"
