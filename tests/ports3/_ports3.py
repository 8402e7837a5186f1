"""A third, independent corpus: real image files through Caffe's preprocessing (layer 0 of ``check --images``)
against Keras preprocessing ports written the way users write them.

Everything is generated at test time: drawn images (gradients, rectangles, circles, a checkerboard; distinct H and
W; JPEG and PNG; some grayscale files; most larger than the crop), small Caffe nets (a train_val with an ImageData
or Data layer carrying ``transform_param`` plus a deploy; conv1 -> pool1 -> ip1), ``.npz`` weights, ``.binaryproto``
mean files written here byte by byte in Caffe's ``BlobProto`` layout, and the Keras ports.

Caffe's rules these expectations follow (read in Caffe's own source, brocolli-caffe 9.0.2 = BVLC + SSD fork):

* ``util/io.cpp`` ``ReadImageToCVMat``: ``cv::imread(filename, is_color ? IMREAD_COLOR : IMREAD_GRAYSCALE)``, then
  ``cv::resize(img, img, cv::Size(new_width, new_height))`` (default ``INTER_LINEAR``) when both are > 0.
* ``data_transformer.cpp`` ``Transform(const cv::Mat&, Blob*)``: at TEST ``h_off = (img_height - crop_h) / 2``,
  ``w_off = (img_width - crop_w) / 2``; ``top = (pixel - mean) * scale`` with ``mean`` the mean_file blob at
  ``(c * img_height + h_off + h) * img_width + w_off + w`` (the full-size mean image cropped at the same offsets)
  or ``mean_values_[c]``.
* ``python/caffe/io.py`` ``Transformer.preprocess``: transpose, ``channel_swap``, ``*= raw_scale``, ``-= mean``,
  ``*= input_scale``, on ``load_image``'s RGB float image in [0, 1].
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import cv2
import keras
import numpy as np

from _p3_layers import ChannelReverse

L = keras.layers

BGR_MEAN = (104.0, 117.0, 123.0)  # a classic mean_value triple, B, G, R (ImageNet, as in the BVLC train_val files)
KERAS_CAFFE_MEAN = (103.939, 116.779, 123.68)  # keras.applications' preprocess_input(mode="caffe"), B, G, R
SCALE = 0.017
CUSTOM = ["--custom-objects", "_p3_layers:ChannelReverse"]


# ----------------------------------------------------------------------------------------------- images

def draw(h: int, w: int, seed: int) -> np.ndarray:
    """A BGR uint8 H x W image whose three channels differ everywhere (so a channel swap always shows)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.empty((h, w, 3), np.float64)
    img[..., 0] = 255.0 * xx / max(w - 1, 1)  # B: horizontal ramp
    img[..., 1] = 255.0 * yy / max(h - 1, 1)  # G: vertical ramp
    img[..., 2] = 128.0 + 100.0 * np.sin(xx / 2.3 + yy / 3.1 + seed)  # R: waves
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(3):
        y0, x0 = int(rng.integers(0, h - 2)), int(rng.integers(0, w - 2))
        y1, x1 = int(rng.integers(y0 + 1, h)), int(rng.integers(x0 + 1, w))
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.rectangle(img, (x0, y0), (x1, y1), color, thickness=-1)
    cv2.circle(img, (w // 3, h // 2), max(2, min(h, w) // 4), (30, 200, 90), thickness=2)
    check = ((yy // 3 + xx // 4) % 2).astype(bool)
    img[check, 1] = 255 - img[check, 1]
    return img


def write_image(path: Path, h: int, w: int, seed: int, gray: bool = False) -> Path:
    img = draw(h, w, seed)
    if gray:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if path.suffix.lower() in (".jpg", ".jpeg") else []
    assert cv2.imwrite(str(path), img, params), path
    return path


def write_images(folder: Path, specs) -> Path:
    """specs: (file name, H, W, gray) tuples."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, h, w, gray) in enumerate(specs):
        write_image(folder / name, h, w, seed=11 + 7 * i, gray=gray)
    return folder


def read_rgb(folder: Path) -> list[np.ndarray]:
    """Each image file of the folder, sorted by name, as the Keras side sees it: RGB uint8 at its own size."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1] for p in files]


# ----------------------------------------------------------------------------------------------- BlobProto

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def write_binaryproto(path: Path, mean: np.ndarray, legacy: bool = True) -> Path:
    """caffe.proto ``BlobProto``: num=1 channels=2 height=3 width=4 (legacy 4-D) or shape=7 (``BlobShape``,
    dim=1 packed int64), data=5 packed float. ``mean`` is (C, H, W) or (1, C, H, W)."""
    arr = np.asarray(mean, np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    body = bytearray()
    if legacy:
        for field, v in zip((1, 2, 3, 4), arr.shape):
            body += _key(field, 0) + _varint(int(v))
    else:
        dims = b"".join(_varint(int(v)) for v in arr.shape)
        shape = _key(1, 2) + _varint(len(dims)) + dims
        body += _key(7, 2) + _varint(len(shape)) + shape
    data = struct.pack("<%df" % arr.size, *arr.ravel().tolist())
    body += _key(5, 2) + _varint(len(data)) + data
    path.write_bytes(bytes(body))
    return path


def mean_image(c: int, h: int, w: int) -> np.ndarray:
    """A non-constant (C, H, W) mean image in BGR order, around the classic per-channel means."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((c, h, w), np.float64)
    for k in range(c):
        out[k] = BGR_MEAN[k % 3] + 20.0 * np.sin(xx / (1.7 + k) + yy / 2.9) + 3.0 * k * (yy - xx) / (h + w)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------------------------- nets

def deploy_text(n: int, c: int, h: int, w: int, conv_out: int = 4, ip_out: int = 5) -> str:
    return f"""
name: "p3net"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: {n} dim: {c} dim: {h} dim: {w} }} }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param {{ num_output: {conv_out} kernel_size: 3 }} }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1" inner_product_param {{ num_output: {ip_out} }} }}
layer {{ name: "prob" type: "Softmax" bottom: "ip1" top: "prob" }}
"""


def transform_block(scale=None, mean_value=None, mean_file=None, crop_size=None, extra: str = "") -> str:
    parts = []
    if scale is not None:
        parts.append(f"scale: {scale}")
    for v in mean_value or ():
        parts.append(f"mean_value: {v}")
    if mean_file is not None:
        parts.append(f'mean_file: "{mean_file}"')
    if crop_size is not None:
        parts.append(f"crop_size: {crop_size}")
    if extra:
        parts.append(extra)
    return "transform_param { " + " ".join(parts) + " }"


def train_val_text(test_transform: str, kind: str = "ImageData", new_hw=None, batch: int = 2,
                   data_extra: str = "") -> str:
    """A train_val whose TRAIN data layer differs on purpose (mirror, another crop and mean): only TEST counts."""
    if kind == "ImageData":
        resize = f" new_height: {new_hw[0]} new_width: {new_hw[1]}" if new_hw else ""
        test_param = (f'image_data_param {{ source: "val.txt" batch_size: {batch}{resize} {data_extra} }}')
        train_param = f'image_data_param {{ source: "train.txt" batch_size: 7{resize} shuffle: true }}'
    else:
        test_param = f'data_param {{ source: "val_lmdb" batch_size: {batch} backend: LMDB }}'
        train_param = 'data_param { source: "train_lmdb" batch_size: 7 backend: LMDB }'
    return f"""
name: "p3net"
layer {{ name: "data" type: "{kind}" top: "data" top: "label" include {{ phase: TRAIN }}
        transform_param {{ mirror: true crop_size: 3 mean_value: 1 scale: 0.5 }}
        {train_param} }}
layer {{ name: "data" type: "{kind}" top: "data" top: "label" include {{ phase: TEST }}
        {test_transform}
        {test_param} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param {{ num_output: 4 kernel_size: 3 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1" inner_product_param {{ num_output: 5 }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" include {{ phase: TRAIN }} }}
layer {{ name: "prob" type: "Softmax" bottom: "ip1" top: "prob" include {{ phase: TEST }} }}
"""


def net_weights(c: int, h: int, w: int, seed: int = 3, conv_out: int = 4, ip_out: int = 5) -> dict:
    """Caffe blobs: conv1 (O, C, kh, kw) + bias, ip1 (N, K) over pool1 flattened in C, H, W order + bias."""
    rng = np.random.default_rng(seed)
    ph, pw = (h - 2 + 1) // 2, (w - 2 + 1) // 2  # conv k3 -> (h-2); MAX k2 s2 ceil -> ceil((h-2-2)/2)+1
    return {
        "conv1/0": (0.2 * rng.standard_normal((conv_out, c, 3, 3))).astype(np.float32),
        "conv1/1": (0.1 * rng.standard_normal(conv_out)).astype(np.float32),
        "ip1/0": (0.05 * rng.standard_normal((ip_out, conv_out * ph * pw))).astype(np.float32),
        "ip1/1": (0.1 * rng.standard_normal(ip_out)).astype(np.float32),
    }


def net_body(x, weights: dict, h: int, w: int):
    """conv1 -> pool1 -> ip1 -> prob in Keras, NHWC, named after the Caffe layers; the Dense rows are permuted from
    Caffe's C, H, W flattening to Keras' H, W, C (as every correct hand port does)."""
    k = weights["conv1/0"]
    conv = L.Conv2D(k.shape[0], 3, name="conv1")
    x = conv(x)
    conv.set_weights([k.transpose(2, 3, 1, 0), weights["conv1/1"]])
    x = L.MaxPooling2D(2, 2, name="pool1")(x)
    ph, pw, co = (h - 2) // 2, (w - 2) // 2, k.shape[0]
    x = L.Flatten(name="flat")(x)
    ip = weights["ip1/0"]
    dense = L.Dense(ip.shape[0], name="ip1")
    x = dense(x)
    kernel = ip.reshape(ip.shape[0], co, ph, pw).transpose(2, 3, 1, 0).reshape(ph * pw * co, ip.shape[0])
    dense.set_weights([kernel, weights["ip1/1"]])
    return L.Softmax(name="prob")(x)


def keras_port(path: Path, in_hw, net_hw, weights: dict, pre=(), channels: int = 3) -> Path:
    """A functional model: Input(in_hw) -> the preprocessing layers ``pre`` (built fresh per call) -> the net."""
    inp = keras.Input((*in_hw, channels), name="data")
    x = inp
    for layer in pre:
        x = layer(x)
    out = net_body(x, weights, *net_hw)
    keras.Model(inp, out, name="port").save(path)
    return path


def preprocess_model(path: Path, layers, in_hw=(None, None), channels: int = 3) -> Path:
    inp = keras.Input((*in_hw, channels))
    x = inp
    for layer in layers:
        x = layer(x)
    keras.Model(inp, x, name="prep").save(path)
    return path


def bgr():
    return ChannelReverse(name="to_bgr")


def norm(mean, variance, axis=-1, name="norm"):
    return L.Normalization(axis=axis, mean=list(mean) if axis == -1 else mean,
                           variance=list(variance) if axis == -1 else variance, name=name)


def rgb(seq):
    return tuple(seq)[::-1]


# ----------------------------------------------------------------------------------------------- running

def run_check(argv: list[str], tmp: Path, capsys) -> tuple[int, dict | None, str, str]:
    """``caffe-harness check ... --json`` in process; (rc, report or None, stdout, stderr)."""
    from harness.cli import main

    out_json = tmp / "report.json"
    if out_json.exists():
        out_json.unlink()
    rc = main(["check", *argv, "--json", str(out_json), "--no-table"])
    out, err = capsys.readouterr()
    report = json.loads(out_json.read_text()) if out_json.exists() else None
    return rc, report, out, err


def diagnosis(report: dict) -> list[dict]:
    return list(report["preprocess"].get("diagnosis") or [])


def causes(report: dict) -> list[str]:
    return [d["cause"] for d in diagnosis(report)]
