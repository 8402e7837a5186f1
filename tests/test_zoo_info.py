"""``caffe-harness info`` on the model zoo: the published parameter counts and landmark shapes of the originals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main

ZOO = Path(__file__).resolve().parent.parent / "fixtures" / "zoo"

# Known parameter counts of the original Caffe models (every blob, BatchNorm statistics and factor blobs included).
PARAMS = {
    "lenet": 431_080,  # Caffe's MNIST LeNet (20/50 conv, 500 ip)
    "alexnet": 60_965_224,  # CaffeNet/AlexNet with group 2 (issue 7)
    "vgg16": 138_357_544,  # VGG16 (issue 7), legacy V1 file
    "googlenet": 6_998_552,  # BVLC GoogLeNet deploy (no auxiliary heads)
    "resnet50": 25_610_205,  # ResNet-50 counting BatchNorm's 3 blobs per layer (issue 7)
    "squeezenet11": 1_235_496,  # SqueezeNet 1.1
    # MobileNet v1 1.0: 4,253,864 values in Keras' count (conv, BN gamma/beta/mean/var, fc) + 27 BatchNorm
    # moving-average factor blobs of one value each, which Caffe stores and Keras does not
    "mobilenet_v1": 4_253_864 + 27,
    "ssd300": 26_285_486,  # SSD300 on VGG16 (Normalize scale included)
}


def _info(capsys, name):
    assert main(["info", str(ZOO / f"{name}.prototxt"), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_zoo_param_counts(name, capsys):
    obj = _info(capsys, name)
    assert obj["totals"]["params"] == PARAMS[name]
    # the total is the sum of the per-layer parameter shapes
    per_layer = 0
    for lay in obj["layers"]:
        for s in lay["param_shapes"]:
            n = 1
            for d in s:
                n *= d
            per_layer += n
    assert per_layer == PARAMS[name]


def test_resnet50_learnable_count_excludes_batchnorm_statistics(capsys):
    obj = _info(capsys, "resnet50")
    stats = sum(sum(s[0] for s in lay["param_shapes"]) for lay in obj["layers"] if lay["type"] == "BatchNorm")
    assert obj["totals"]["params"] - stats == 25_557_032


def test_zoo_landmark_shapes(capsys):
    shapes = {}
    for name in ("alexnet", "vgg16", "googlenet", "resnet50", "ssd300"):
        obj = _info(capsys, name)
        shapes[name] = {lay["name"]: lay["top_shapes"] for lay in obj["layers"]}
    assert shapes["alexnet"]["conv1"] == [[10, 96, 55, 55]]  # 227, k11 s4
    assert shapes["alexnet"]["pool5"] == [[10, 256, 6, 6]]  # ceil pooling 13 -> 6
    assert shapes["vgg16"]["pool5"] == [[10, 512, 7, 7]]
    assert shapes["googlenet"]["pool5/7x7_s1"] == [[10, 1024, 1, 1]]
    assert shapes["resnet50"]["fc1000"] == [[1, 1000]]
    assert shapes["ssd300"]["mbox_priorbox"] == [[1, 2, 8732 * 4]]  # SSD300's 8732 default boxes
    assert shapes["ssd300"]["detection_out"] == [[1, 1, 200, 7]]  # bound: keep_top_k 200 for one image


def test_alexnet_group2_param_shapes(capsys):
    obj = _info(capsys, "alexnet")
    by = {lay["name"]: lay for lay in obj["layers"]}
    assert by["conv2"]["param_shapes"] == [[256, 48, 5, 5], [256]]
    assert by["conv4"]["param_shapes"] == [[384, 192, 3, 3], [384]]
    assert by["fc6"]["param_shapes"] == [[4096, 9216], [4096]]
