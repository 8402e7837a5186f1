"""keras.applications VGG16 / ResNet50 / MobileNet against their Caffe nets, with correctly transferred weights.

Everything here uses only the public API: ``harness.caffe.load_net`` (or ``load_net_text`` for the ResNet50 variant
whose 7x7 pool5 is written as the global pool it is at 224x224), ``harness.weights.random_weights`` and
``harness.compare.compare``.  The Keras side is the stock ``keras.applications`` model built with ``weights=None`` at
a reduced input size; the Caffe net's seeded weights are transferred into it by hand, the way a user does it:

* Convolution ``(O, I, kh, kw)`` -> Conv2D ``w.transpose(2, 3, 1, 0)``; a Caffe conv without bias into a Keras conv
  with one (ResNet50's) gets a zero bias.
* depthwise (``group == C_in``) ``(C*m, 1, kh, kw)`` -> DepthwiseConv2D ``w.reshape(C, m, kh, kw).transpose(2, 3, 0, 1)``.
* BatchNorm ``[mean*f, var*f, f]`` + Scale ``[gamma, beta]`` -> one BatchNormalization
  ``[gamma, beta, mean*f/f, var*f/f]`` (``f == 0`` gives 0, as Caffe does).
* InnerProduct ``(N, K)`` -> Dense ``(K, N)``; the first one after a ``C x H x W`` blob has its rows reordered from
  Caffe's CHW flatten to Keras' HWC flatten: ``fc.reshape(N, C, H, W).transpose(2, 3, 1, 0).reshape(-1, N)``.

Layers are paired by kind and order, never by name (Caffe's ``res2a_branch1`` is Keras' ``conv2_block1_0_conv``):
the i-th Caffe layer of a kind goes into the first unused Keras layer of that kind whose weight shapes fit.  (Keras
lists a projection block's layers as 1_conv, 2_conv, 0_conv, 3_conv; Caffe writes branch1 first.  Shapes tell the
branches apart, and where two have one shape -- branch1 and branch2c of res2a -- both sides list them in the same
order.)  The all-differences-fixed control passing as EQUIVALENT is the proof that the pairing is right.

Fixes are applied with ``keras.models.clone_model`` (``clone_function`` changes a layer's config,
``call_function`` inserts a ``ZeroPadding2D``) and the Caffe weights transferred again.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "fixtures" / "zoo"

# Reduced sizes: H != W, both multiples of 32 so that every stride-2 stage sees an even size (MobileNet's
# ZeroPadding2D(((0, 1), (0, 1))) + valid conv and Caffe's pad 1 then give the same shape, as at 224x224).
H, W = 64, 96
SEED = 7


# --------------------------------------------------------------------------------------------------------------
# Caffe side

def _resnet50_text() -> str:
    """The zoo ResNet-50 with pool5 (AVE 7x7 stride 1: global at 224x224, where res5 is 7x7) written as the global
    pool it is, so that it takes the reduced size (res5 is 2x3 here)."""
    text = (ZOO / "resnet50.prototxt").read_text()
    old = "pooling_param { pool: AVE kernel_size: 7 stride: 1 }"
    assert text.count(old) == 1
    return text.replace(old, "pooling_param { pool: AVE global_pooling: true }")


@functools.lru_cache(maxsize=None)
def caffe_net(which: str, n: int = 1):
    """The Caffe net of ``which`` at (n, 3, H, W) with seeded weights (``random_weights(net, SEED)``)."""
    from harness.caffe import load_net, load_net_text
    from harness.weights import random_weights

    shapes = {"data": (n, 3, H, W)}
    if which == "resnet50":
        net = load_net_text(_resnet50_text(), input_shapes=shapes, source="resnet50_global_pool5")
    else:
        net = load_net(ZOO / {"vgg16": "vgg16.prototxt", "mobilenet": "mobilenet_v1.prototxt"}[which],
                       input_shapes=shapes)
    return random_weights(net, SEED)


def inputs(net, scale: float = 1.0, seed: int = 3) -> dict[str, np.ndarray]:
    """Seeded NCHW input (the harness feeds the Keras model its NHWC transpose)."""
    shape = net.inputs["data"]
    x = np.random.default_rng(seed).standard_normal(shape) * scale
    return {"data": x.astype(np.float32)}


# --------------------------------------------------------------------------------------------------------------
# Keras side

def stock(which: str):
    """The stock keras.applications model, weights=None (no download), include_top=True, 1000 classes."""
    import keras

    ctor = {"vgg16": keras.applications.VGG16, "resnet50": keras.applications.ResNet50,
            "mobilenet": keras.applications.MobileNet}[which]
    return ctor(weights=None, include_top=True, input_shape=(H, W, 3), classes=1000)


def _kind(k) -> str | None:
    name = type(k).__name__
    if name == "DepthwiseConv2D":
        return "depthwise"
    if name == "Conv2D":
        return "conv"
    if name == "BatchNormalization":
        return "bn"
    if name == "Dense":
        return "dense"
    return None


def _caffe_kind(lay) -> str | None:
    if lay.kind == "Convolution":
        w = lay.blobs[0]
        group = int(lay.p("convolution_param").group)
        return "depthwise" if group > 1 and w.shape[1] == 1 else "conv"
    if lay.kind == "BatchNorm":
        return "bn"
    if lay.kind == "InnerProduct":
        return "dense"
    return None


def _scale_after(net, bn_layer):
    """The Scale layer that works in place on the BatchNorm's top, right after it."""
    layers = list(net.layers)
    i = layers.index(bn_layer)
    nxt = layers[i + 1]
    assert nxt.kind == "Scale" and nxt.bottoms[0] == bn_layer.tops[0], (bn_layer.name, nxt.name)
    return nxt


def keras_weights(net, lay, keras_layer, shapes: dict[str, tuple[int, ...]]) -> list[np.ndarray]:
    """The Keras weight list of Caffe layer ``lay`` (see the module docstring for each rule)."""
    kind = _caffe_kind(lay)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    want = [tuple(v.shape) for v in keras_layer.weights]
    if kind == "conv":
        w = f32(lay.blobs[0])
        out = [w.transpose(2, 3, 1, 0)]
        if len(want) == 2:  # Keras conv with a bias (ResNet50 convs, MobileNet's conv_preds)
            out.append(f32(lay.blobs[1]) if len(lay.blobs) > 1 else np.zeros(w.shape[0], np.float32))
        elif len(lay.blobs) > 1:
            raise AssertionError(f"{lay.name}: Caffe has a bias the Keras layer {keras_layer.name} lacks")
        return out
    if kind == "depthwise":
        w = f32(lay.blobs[0])
        c, m = want[0][2], want[0][3]
        out = [w.reshape(c, m, w.shape[2], w.shape[3]).transpose(2, 3, 0, 1)]
        if len(want) == 2:
            out.append(f32(lay.blobs[1]) if len(lay.blobs) > 1 else np.zeros(c * m, np.float32))
        return out
    if kind == "bn":
        mean, var, factor = (np.asarray(b, np.float64) for b in lay.blobs)
        f = 0.0 if float(factor.reshape(-1)[0]) == 0 else 1.0 / float(factor.reshape(-1)[0])
        sc = _scale_after(net, lay)
        gamma, beta = f32(sc.blobs[0]), f32(sc.blobs[1])
        return [gamma, beta, (mean * f).astype(np.float32), (var * f).astype(np.float32)]
    if kind == "dense":
        w = f32(lay.blobs[0])  # (N, K)
        n_out = w.shape[0]
        bottom = shapes[lay.bottoms[0]]
        if len(bottom) == 4 and bottom[2] * bottom[3] > 1:  # CHW flatten in Caffe, HWC Flatten in Keras
            _, c, h, ww = bottom
            kern = w.reshape(n_out, c, h, ww).transpose(2, 3, 1, 0).reshape(-1, n_out)
        else:
            kern = w.T
        return [np.ascontiguousarray(kern), f32(lay.blobs[1])]
    raise AssertionError(lay.name)


def blob_shapes(net) -> dict[str, tuple[int, ...]]:
    """Every blob's NCHW shape (from the reference's own shape inference)."""
    from harness.shapes import infer_shapes

    s = infer_shapes(net)
    return {b: tuple(v) for b, v in s.blobs.items()}


def pairing(net, model) -> list[tuple[Any, Any]]:
    """(Caffe layer, Keras layer) for every layer with weights, by kind and order (shapes must fit)."""
    shapes = blob_shapes(net)
    pool: dict[str, list] = {}
    for k in model.layers:
        kind = _kind(k)
        if kind is not None:
            pool.setdefault(kind, []).append(k)
    pairs = []
    for lay in net.layers:
        kind = _caffe_kind(lay)
        if kind is None:
            continue
        for i, k in enumerate(pool.get(kind, [])):
            ws = keras_weights(net, lay, k, shapes) if _fits_shallow(lay, k) else None
            if ws is not None and [w.shape for w in ws] == [tuple(v.shape) for v in k.weights]:
                pairs.append((lay, k))
                pool[kind].pop(i)
                break
        else:
            raise AssertionError(f"no Keras {kind} layer fits Caffe {lay.type} {lay.name!r}")
    left = {kind: [k.name for k in ks] for kind, ks in pool.items() if ks}
    assert not left, f"Keras layers with weights that no Caffe layer filled: {left}"
    return pairs


def _fits_shallow(lay, k) -> bool:
    """Cheap pre-check before building weights (the channel counts and kernel size agree)."""
    kind = _caffe_kind(lay)
    if kind in ("conv", "depthwise"):
        w = lay.blobs[0]
        ks = tuple(k.weights[0].shape)
        if kind == "conv":
            return ks == (w.shape[2], w.shape[3], w.shape[1], w.shape[0])
        return ks[:2] == tuple(w.shape[2:]) and ks[2] * ks[3] == w.shape[0]
    if kind == "bn":
        return tuple(k.weights[0].shape) == (lay.blobs[0].shape[0],)
    if kind == "dense":
        return tuple(k.weights[0].shape) == (lay.blobs[0].shape[1], lay.blobs[0].shape[0])
    return False


def transfer(net, model):
    """Set every Keras weight from the Caffe net (correctly).  Returns the model."""
    shapes = blob_shapes(net)
    for lay, k in pairing(net, model):
        k.set_weights(keras_weights(net, lay, k, shapes))
    return model


def perturb(net, model, caffe_layer: str, rel: float = 1e-4, seed: int = 11):
    """Multiply the kernel of the Keras layer that holds ``caffe_layer``'s weights by ``1 + rel * N(0, 1)``."""
    for lay, k in pairing(net, model):
        if lay.name == caffe_layer:
            ws = k.get_weights()
            ws[0] = ws[0] * (1 + rel * np.random.default_rng(seed).standard_normal(ws[0].shape)).astype(np.float32)
            k.set_weights(ws)
            return k.name
    raise KeyError(caffe_layer)


# --------------------------------------------------------------------------------------------------------------
# Fixes: rebuild the model with clone_model, then transfer the Caffe weights again

def edited(net, model, *, config: Callable[[Any, dict], dict | None] | None = None,
           pad_before: dict[str, Any] | None = None):
    """A clone of ``model`` with ``config(layer, cfg)`` (a changed config, or None for unchanged) applied to every
    layer and a ``ZeroPadding2D(pad)`` inserted before each layer named in ``pad_before``; weights transferred from
    ``net`` again."""
    import keras

    def clone(layer):
        cfg = layer.get_config()
        new = config(layer, dict(cfg)) if config is not None else None
        return layer.__class__.from_config(new if new is not None else cfg)

    def call(layer, *args, **kwargs):
        if pad_before and layer.name in pad_before:
            args = (keras.layers.ZeroPadding2D(pad_before[layer.name], name=f"{layer.name}_caffe_pad")(args[0]),
                    *args[1:])
        return layer(*args, **kwargs)

    new = keras.models.clone_model(model, clone_function=clone, call_function=call)
    return transfer(net, new)


def set_cfg(**changes) -> Callable[[Any, dict], dict | None]:
    """``config`` callback: ``set_cfg(layer_name={...})`` changes those layers' configs."""
    def fn(layer, cfg):
        if layer.name in changes:
            cfg.update(changes[layer.name])
            return cfg
        return None
    return fn


def chain(*fns):
    def fn(layer, cfg):
        out = None
        for f in fns:
            r = f(layer, dict(out or cfg))
            out = r if r is not None else out
        return out
    return fn


def all_bn_epsilon(eps: float):
    return lambda layer, cfg: ({**cfg, "epsilon": eps} if type(layer).__name__ == "BatchNormalization" else None)


def all_relu_plain():
    """Every ReLU(max_value=6.0) -> ReLU() (Caffe's ReLU is unbounded)."""
    return lambda layer, cfg: ({**cfg, "max_value": None}
                               if type(layer).__name__ == "ReLU" and cfg.get("max_value") is not None else None)


# --------------------------------------------------------------------------------------------------------------
# Reading a report

def isolated_failures(report) -> list[str]:
    """Caffe layers whose isolated comparison failed, in execution order."""
    return [lr.caffe_layer for lr in report.layers if lr.isolated is not None and not lr.isolated.passed]


def top_cause(report):
    fd = report.first_divergence
    assert fd is not None and fd.diagnosis, report.verdict()
    return fd.diagnosis[0]


ZP = re.compile(r"ZeroPadding2D\(\(\((\d+), (\d+)\), \((\d+), (\d+)\)\)\)")
ZP_SYM = re.compile(r"ZeroPadding2D\((?:\((\d+), (\d+)\)|(\d+))\)")


def zero_padding_in(fix: str) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The padding a fix text names: ``ZeroPadding2D(((t, b), (l, r)))``, ``ZeroPadding2D((ph, pw))`` or
    ``ZeroPadding2D(p)``."""
    m = ZP.search(fix)
    if m:
        return (int(m[1]), int(m[2])), (int(m[3]), int(m[4]))
    m = ZP_SYM.search(fix)
    if m:
        if m[3] is not None:
            p = int(m[3])
            return (p, p), (p, p)
        return (int(m[1]), int(m[1])), (int(m[2]), int(m[2]))
    return None


# --------------------------------------------------------------------------------------------------------------
# The real differences of each stock model against its Caffe net, and the model with all but some of them fixed

# MobileNet: keras.applications pads stride-2 depthwise convs with ZeroPadding2D(((0, 1), (0, 1))) + 'valid'
# (block ids 2, 4, 6, 12 = Caffe conv2_2/dw, conv3_2/dw, conv4_2/dw, conv5_6/dw, each pad 1).
MOBILENET_DW_PADS = {"conv_pad_2": "conv2_2/dw", "conv_pad_4": "conv3_2/dw", "conv_pad_6": "conv4_2/dw",
                     "conv_pad_12": "conv5_6/dw"}


def reference(net, data):
    """Every ``"<layer>/<top>"`` record of the float64 NumPy reference."""
    from harness.reference import forward

    return forward(net, data)


def relu6_differences(net, data, margin: float = 0.0) -> list[str]:
    """Caffe ReLU layers whose input (in the reference) exceeds 6 + margin somewhere: there ReLU6 clips."""
    rec = reference(net, data)
    layers = list(net.layers)
    out = []
    for i, lay in enumerate(layers):
        if lay.kind != "ReLU":
            continue
        prev = layers[i - 1]  # in MobileNet every ReLU works in place right after the Scale
        x = np.asarray(rec[f"{prev.name}/{prev.tops[0]}"])
        if float(x.max()) > 6.0 + margin:
            out.append(lay.name)
    return out


def mobilenet(net, *, conv1_same=False, dw_pad=(), bn_eps=False, relu6=False):
    """keras.applications.MobileNet with only the named real differences left in (weights transferred):
    ``conv1_same``: conv1 padding='same'; ``dw_pad``: the conv_pad_N layers left at ((0, 1), (0, 1)) (names or
    "all"); ``bn_eps``: BatchNormalization epsilon 1e-3 everywhere; ``relu6``: ReLU(6.0) everywhere."""
    dw = set(MOBILENET_DW_PADS) if dw_pad == "all" else set(dw_pad)
    fixes = [set_cfg(**{p: {"padding": ((1, 1), (1, 1))} for p in MOBILENET_DW_PADS if p not in dw})]
    pad_before = {}
    if not conv1_same:
        fixes.append(set_cfg(conv1={"padding": "valid"}))
        pad_before["conv1"] = (1, 1)
    if not bn_eps:
        fixes.append(all_bn_epsilon(1e-5))
    if not relu6:
        fixes.append(all_relu_plain())
    return edited(net, stock("mobilenet"), config=chain(*fixes), pad_before=pad_before)
