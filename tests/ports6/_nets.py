"""The ports6 corpus nets: small Caffe nets as prototxt text, seeded weights written as a binary ``.caffemodel``
(what caffe2onnx reads), seeded NCHW inputs, and the deliberate bugs edited into their ONNX graphs.

Nets (every blob has distinct sizes on its N, C, H, W axes; batch 2):

* ``plain``: data 2x3x12x14 -> conv1 (4, k3, p1) -> relu1 -> pool1 (MAX k3 s2, Caffe's ceil: 6x7; floor would give
  5x6) -> conv2 (8, k1) -> relu2 -> pool2 (AVE global) -> ip1 (3) -> prob (Softmax).  The global pooling keeps a
  pooling that rounds the other way runnable down the chain (the shape change stops at pool2), as in SqueezeNet.
* ``bn``: data 2x3x9x11 -> conv1 (5, k3, p1) -> bn1 -> sc1 (Scale + bias) -> relu1 -> conv2 (6, k3, s2) -> bn2 -> sc2
  -> relu2 -> conv3 (7, k1) -> bn3 -> sc3 -> relu3 -> pool1 (AVE global) -> ip1 (4) -> prob.  Three BatchNorms.
* ``lrn``: data 2x3x10x8 -> conv1 (6, k3, p1) -> relu1 -> norm1 (LRN across channels, local_size 5, alpha 0.3,
  beta 0.75) -> pool1 (MAX k2 s2: 5x4) -> ip1 (7) -> prob.
* ``res``: data 2x4x7x9 -> conv1 (6, k3, p1) -> relu1 -> {conv2a (5, k3, p1), conv2b (5, k1)} -> res (Eltwise SUM)
  -> relu2 -> pool1 (MAX k3 s2: 3x4) -> ip1 (2) -> prob.

BatchNorm factor.  caffe2onnx 2.0.1 divides a BatchNorm's stored variance by ``s + 1e-5`` (``s`` the moving-average
factor blob) instead of ``s`` (caffe2onnx/src/caffe2onnx.py, ``AddInputsTVIFromParams``): a relative variance error
of ``1e-5 / s``.  A trained net's ``s`` is about 1000 (``sum 0.999**k``), where the error (1e-8) is below float32
rounding, so the correct ``bn`` net stores ``s = 999.98``.  The compounding-bug net ``bn_drift`` is the same net with
the harness's own seeded factor (``s`` in [0.5, 2]): there the same converter line is a real 5e-6-relative error in
every BatchNorm, the one issue 20 describes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

SEED = 20

PLAIN = """name: "plain"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 12 dim: 14 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 8 kernel_size: 1 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
        pooling_param { pool: AVE global_pooling: true } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1" inner_product_param { num_output: 3 } }
layer { name: "prob" type: "Softmax" bottom: "ip1" top: "prob" }
"""


def _bn_block(i: int, bottom: str, out: int, kernel: int, stride: int, pad: int) -> str:
    return f"""layer {{ name: "conv{i}" type: "Convolution" bottom: "{bottom}" top: "conv{i}"
        convolution_param {{ num_output: {out} kernel_size: {kernel} stride: {stride} pad: {pad} }} }}
layer {{ name: "bn{i}" type: "BatchNorm" bottom: "conv{i}" top: "conv{i}" batch_norm_param {{ eps: 1e-5 }} }}
layer {{ name: "sc{i}" type: "Scale" bottom: "conv{i}" top: "conv{i}" scale_param {{ bias_term: true }} }}
layer {{ name: "relu{i}" type: "ReLU" bottom: "conv{i}" top: "conv{i}" }}
"""


BN = ('name: "bnnet"\n'
      'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 11 } } }\n'
      + _bn_block(1, "data", 5, 3, 1, 1) + _bn_block(2, "conv1", 6, 3, 2, 0) + _bn_block(3, "conv2", 7, 1, 1, 0)
      + """layer { name: "pool1" type: "Pooling" bottom: "conv3" top: "pool1"
        pooling_param { pool: AVE global_pooling: true } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1" inner_product_param { num_output: 4 } }
layer { name: "prob" type: "Softmax" bottom: "ip1" top: "prob" }
""")

LRN = """name: "lrnnet"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 10 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1"
        lrn_param { local_size: 5 alpha: 0.3 beta: 0.75 } }
layer { name: "pool1" type: "Pooling" bottom: "norm1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1" inner_product_param { num_output: 7 } }
layer { name: "prob" type: "Softmax" bottom: "ip1" top: "prob" }
"""

RES = """name: "resnet"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 4 dim: 7 dim: 9 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2a" type: "Convolution" bottom: "conv1" top: "conv2a"
        convolution_param { num_output: 5 kernel_size: 3 pad: 1 } }
layer { name: "conv2b" type: "Convolution" bottom: "conv1" top: "conv2b"
        convolution_param { num_output: 5 kernel_size: 1 } }
layer { name: "res" type: "Eltwise" bottom: "conv2a" bottom: "conv2b" top: "res" eltwise_param { operation: SUM } }
layer { name: "relu2" type: "ReLU" bottom: "res" top: "res" }
layer { name: "pool1" type: "Pooling" bottom: "res" top: "pool1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1" inner_product_param { num_output: 2 } }
layer { name: "prob" type: "Softmax" bottom: "ip1" top: "prob" }
"""

# name -> (prototxt, BatchNorm factor to store: None keeps the harness's seeded one)
NETS = {"plain": (PLAIN, None), "bn": (BN, 999.98), "lrn": (LRN, None), "res": (RES, None),
        "bn_drift": (BN, None)}

# Zoo sizes (the slow suite): fixtures/zoo prototxts with the input resized (seeded weights fit any size):
# name -> (file, (N, C, H, W), {text: replacement}).  SqueezeNet's 69x77 makes conv1 34x38, where pool1's ceil
# (17x19) != floor (16x18).  AlexNet is reduced ("AlexNet-like"): 99x111 input and fc6/fc7 of 512, not 4096 (27M
# weights through caffe2onnx's pure-Python protobuf and float lists took over 8 minutes; 3.6M take seconds).
# MobileNet v1 at 64x72 (global pool6: any size).  GoogLeNet and ResNet-50 at 96x111 with their 7x7 AVE pool5 made
# global (at 224 it is global too).  ResNet-50 and VGG16 are "-like": every num_output but the classifier's 1000
# divided by 4 (ZOO_WIDTH; 25.5M and 138M weights through caffe2onnx's pure-Python float lists take many minutes,
# the structure -- depth, strides, shortcuts, BatchNorm + Scale -- is what the pairing meets).  ``mobilenet_drift``
# is MobileNet with the harness's seeded BatchNorm factor (s in [0.5, 2]): caffe2onnx's own variance / (s + 1e-5)
# in 27 BatchNorms, issue 20's compounding bug; the correct MobileNet and ResNet store s = 999.98 (ZOO_FACTOR).
_GLOBAL_POOL5 = {"pooling_param { pool: AVE kernel_size: 7 stride: 1 }": "pooling_param { pool: AVE global_pooling: true }"}
ZOO = {"lenet": ("lenet.prototxt", (2, 1, 28, 36), {}),
       "squeezenet11": ("squeezenet11.prototxt", (2, 3, 69, 77), {}),
       "alexnet": ("alexnet.prototxt", (2, 3, 99, 111), {"num_output: 4096": "num_output: 512"}),
       "mobilenet_v1": ("mobilenet_v1.prototxt", (2, 3, 64, 72), {}),
       "googlenet": ("googlenet.prototxt", (2, 3, 96, 111), _GLOBAL_POOL5),
       "resnet50": ("resnet50.prototxt", (2, 3, 96, 111), _GLOBAL_POOL5),
       "vgg16": ("vgg16.prototxt", (2, 3, 64, 72), {}),
       "mobilenet_drift": ("mobilenet_v1.prototxt", (2, 3, 64, 72), {})}
ZOO_WIDTH = {"resnet50": 4, "vgg16": 4}
ZOO_FACTOR = {"mobilenet_v1": 999.98, "resnet50": 999.98}
ZOO_DRIFT = {"mobilenet_drift": "conv1/bn"}  # net -> its first BatchNorm, where caffe2onnx's drift starts
ZOO_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "zoo"

# The deliberate bugs, each edited into one node of caffe2onnx's ONNX graph (_chain_tool.py does the edit):
# case -> (net, the Caffe layer whose ONNX node is edited, the cause code `check` must name, the edit).
EDITS = {
    "pool_floor": "MaxPool ceil_mode 1 -> 0 (floor where Caffe ceils)",
    "lrn_alpha": "LRN alpha multiplied by size (alpha where alpha/n is meant)",
    "conv_axes": "Conv weight (O, I, kh, kw) -> (O, I, kw, kh)",
    "bn_eps": "BatchNormalization epsilon 1e-5 -> 1e-3",
}
BUGS = {
    "pool_floor": ("plain", "pool1", "pool_rounding", "pool_floor"),
    "lrn_alpha": ("lrn", "norm1", "lrn_alpha_scaling", "lrn_alpha"),
    "conv_axes": ("res", "conv2a", "kernel_axes_swapped", "conv_axes"),
    "bn_eps": ("bn", "bn2", "bn_epsilon", "bn_eps"),
}
ZOO_BUGS = {
    "squeezenet11_pool_floor": ("squeezenet11", "pool1", "pool_rounding", "pool_floor"),
    "alexnet_lrn_alpha": ("alexnet", "norm1", "lrn_alpha_scaling", "lrn_alpha"),
}
ALL_BUGS = {**BUGS, **ZOO_BUGS}


def case_key(case: str) -> tuple[str, str | None]:
    """'plain' -> ('plain', None); 'pool_floor' (a bug of ALL_BUGS) -> ('plain', 'pool_floor')."""
    return (ALL_BUGS[case][0], case) if case in ALL_BUGS else (case, None)


def prototxt(name: str) -> str:
    if name in NETS:
        return NETS[name][0]
    import re

    file, shape, edits = ZOO[name]
    dims = " ".join(f"dim: {d}" for d in shape)
    text = (ZOO_DIR / file).read_text()
    if re.search(r"^layers \{", text, re.M):  # a V1 net (VGG16's "layers { type: CONVOLUTION }"): caffe2onnx reads V2
        from google.protobuf import text_format

        from harness.caffe import parse_prototxt
        from harness.upgrade import upgrade_net

        text = text_format.MessageToString(upgrade_net(parse_prototxt(text, file), file), as_one_line=True)
    text, n = re.subn(r"input_param \{ shape \{[^}]*\} \}", f"input_param {{ shape {{ {dims} }} }}", text, count=1)
    assert n == 1, f"no input_param shape in {file}"
    for old, new in edits.items():
        assert old in text, f"{old!r} not in {file}"
        text = text.replace(old, new)
    if name in ZOO_WIDTH:
        k = ZOO_WIDTH[name]
        text = re.sub(r"num_output: (\d+)", lambda m: m.group(0) if m.group(1) == "1000" else
                      f"num_output: {max(int(m.group(1)) // k, 1)}", text)
    return text


def caffe_net(name: str):
    """The harness's Net of ``name`` with seeded weights (the BatchNorm factor fixed as NETS says)."""
    from harness.caffe import load_net_text
    from harness.weights import random_weights

    factor = NETS[name][1] if name in NETS else ZOO_FACTOR.get(name)
    net = random_weights(load_net_text(prototxt(name), source=f"{name}.prototxt"), seed=SEED)
    if factor is None:
        return net
    layers = []
    for lay in net.layers:
        if lay.type == "BatchNorm":
            s = float(lay.blobs[2][0])
            mean, var = (np.asarray(b, np.float64) / s for b in lay.blobs[:2])
            lay = replace(lay, blobs=((mean * factor).astype(np.float32), (var * factor).astype(np.float32),
                                      np.array([factor], np.float32)))
        layers.append(lay)
    return replace(net, layers=tuple(layers))


def inputs(name: str) -> np.ndarray:
    shape = {"plain": (2, 3, 12, 14), "bn": (2, 3, 9, 11), "lrn": (2, 3, 10, 8), "res": (2, 4, 7, 9),
             "bn_drift": (2, 3, 9, 11), **{k: v[1] for k, v in ZOO.items()}}[name]
    return np.random.default_rng([SEED, len(name)]).standard_normal(shape).astype(np.float32)


def write_net(name: str, folder: Path) -> tuple[Path, Path, Path]:
    """Write ``NAME.prototxt``, ``NAME.caffemodel`` and ``NAME_inputs.npz`` (key ``data``, NCHW) into ``folder``."""
    from harness.caffe import write_caffemodel

    proto, weights, inp = folder / f"{name}.prototxt", folder / f"{name}.caffemodel", folder / f"{name}_inputs.npz"
    proto.write_text(prototxt(name))
    write_caffemodel(caffe_net(name), weights)
    np.savez(inp, data=inputs(name))
    return proto, weights, inp
