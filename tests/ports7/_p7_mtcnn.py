"""The MTCNN cascade (Zhang et al. 2016: P-Net det1, R-Net det2, O-Net det3), trained in Caffe, as Caffe nets.

The prototxts are written here from the published det1/det2/det3 architecture (PReLU per channel, MAX pooling with
Caffe's ceil rounding, the two / three heads, Softmax on the classification head).  The trained weights come from the
``facenet-pytorch==2.6.0`` wheel (``facenet_pytorch/data/{pnet,rnet,onet}.pt``: torch state dicts converted from the
original caffemodels), read with ``torch.load`` from the file the package ships -- the package is never imported.

Orientation: the original caffemodels were trained on MATLAB's column-major (transposed, W x H) images.  The
facenet-pytorch weights are that trained function re-laid for row-major images: their conv kernels run on the
image as it is and their first Dense layer reads its input flattened in (W, H, C) order (the port permutes before
flattening).  The Caffe nets built here are that same trained function for row-major images: conv blobs are the
OIHW kernels as stored (Caffe and torch both correlate with OIHW kernels), the InnerProduct after the last
convolution gets the facenet rows re-ordered from (W, H, C) to Caffe's (C, H, W).  ``torch_forward`` re-runs the
state dict with torch's own ops and the tests check the harness's reference against it on real photographs.

Weights are written as ``.npz`` (``<layer>/<i>``, as the README documents for ``--weights``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

FACENET_PIN = "facenet-pytorch==2.6.0"


def facenet_data_dir() -> Path | None:
    """facenet_pytorch/data of the installed wheel, found without importing the package (None when absent)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "data"
    return d if (d / "pnet.pt").is_file() else None


def state_dict(net: str) -> dict[str, np.ndarray]:
    """The trained state dict of 'pnet' / 'rnet' / 'onet' as float32 NumPy arrays."""
    import torch

    sd = torch.load(facenet_data_dir() / f"{net}.pt", map_location="cpu", weights_only=True)
    return {k: v.detach().numpy().astype(np.float32) for k, v in sd.items()}


# ---------------------------------------------------------------------------------------------------------- prototxt

def _conv(name, bottom, n, k):
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}"\n'
            f'  convolution_param {{ num_output: {n} kernel_size: {k} stride: 1 }} }}\n')


def _prelu(name, blob):
    return f'layer {{ name: "{name}" type: "PReLU" bottom: "{blob}" top: "{blob}" }}\n'


def _pool(name, bottom, k, s):
    return (f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{name}"\n'
            f'  pooling_param {{ pool: MAX kernel_size: {k} stride: {s} }} }}\n')


def _ip(name, bottom, n):
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}"\n'
            f'  inner_product_param {{ num_output: {n} }} }}\n')


def _softmax(name, bottom):
    return f'layer {{ name: "{name}" type: "Softmax" bottom: "{bottom}" top: "{name}" }}\n'


def _head(name, n, hw):
    return (f'name: "{name}"\ninput: "data"\n'
            f'input_shape {{ dim: 1 dim: 3 dim: {hw[0]} dim: {hw[1]} }}\n')


def det1_prototxt(hw=(12, 12)) -> str:
    """P-Net (det1.prototxt): fully convolutional; heads conv4-1 (2, face score, Softmax prob1) and conv4-2 (4)."""
    return (_head("PNet", 3, hw) + _conv("conv1", "data", 10, 3) + _prelu("PReLU1", "conv1")
            + _pool("pool1", "conv1", 2, 2) + _conv("conv2", "pool1", 16, 3) + _prelu("PReLU2", "conv2")
            + _conv("conv3", "conv2", 32, 3) + _prelu("PReLU3", "conv3")
            + _conv("conv4-1", "conv3", 2, 1) + _conv("conv4-2", "conv3", 4, 1) + _softmax("prob1", "conv4-1"))


def det2_prototxt() -> str:
    """R-Net (det2.prototxt), 24 x 24: conv 3x3 -> pool 3/2 (ceil) twice, conv 2x2, InnerProduct 128, two heads."""
    return (_head("RNet", 3, (24, 24)) + _conv("conv1", "data", 28, 3) + _prelu("prelu1", "conv1")
            + _pool("pool1", "conv1", 3, 2) + _conv("conv2", "pool1", 48, 3) + _prelu("prelu2", "conv2")
            + _pool("pool2", "conv2", 3, 2) + _conv("conv3", "pool2", 64, 2) + _prelu("prelu3", "conv3")
            + _ip("conv4", "conv3", 128) + _prelu("prelu4", "conv4")
            + _ip("conv5-1", "conv4", 2) + _ip("conv5-2", "conv4", 4) + _softmax("prob1", "conv5-1"))


def det3_prototxt() -> str:
    """O-Net (det3.prototxt), 48 x 48: three conv/pool stages, conv 2x2, InnerProduct 256 (+Dropout), three heads."""
    drop = ('layer { name: "drop5" type: "Dropout" bottom: "conv5" top: "conv5"\n'
            '  dropout_param { dropout_ratio: 0.25 } }\n')
    return (_head("ONet", 3, (48, 48)) + _conv("conv1", "data", 32, 3) + _prelu("prelu1", "conv1")
            + _pool("pool1", "conv1", 3, 2) + _conv("conv2", "pool1", 64, 3) + _prelu("prelu2", "conv2")
            + _pool("pool2", "conv2", 3, 2) + _conv("conv3", "pool2", 64, 3) + _prelu("prelu3", "conv3")
            + _pool("pool3", "conv3", 2, 2) + _conv("conv4", "pool3", 128, 2) + _prelu("prelu4", "conv4")
            + _ip("conv5", "conv4", 256) + drop + _prelu("prelu5", "conv5")
            + _ip("conv6-1", "conv5", 2) + _ip("conv6-2", "conv5", 4) + _ip("conv6-3", "conv5", 10)
            + _softmax("prob1", "conv6-1"))


# Caffe layer -> facenet state-dict prefix, per net; the InnerProduct fed by a convolution blob (C, H, W) is listed
# in FLAT with that blob's (C, H, W).
LAYERS = {
    "pnet": {"conv1": "conv1", "PReLU1": "prelu1", "conv2": "conv2", "PReLU2": "prelu2", "conv3": "conv3",
             "PReLU3": "prelu3", "conv4-1": "conv4_1", "conv4-2": "conv4_2"},
    "rnet": {"conv1": "conv1", "prelu1": "prelu1", "conv2": "conv2", "prelu2": "prelu2", "conv3": "conv3",
             "prelu3": "prelu3", "conv4": "dense4", "prelu4": "prelu4", "conv5-1": "dense5_1", "conv5-2": "dense5_2"},
    "onet": {"conv1": "conv1", "prelu1": "prelu1", "conv2": "conv2", "prelu2": "prelu2", "conv3": "conv3",
             "prelu3": "prelu3", "conv4": "conv4", "prelu4": "prelu4", "conv5": "dense5", "prelu5": "prelu5",
             "conv6-1": "dense6_1", "conv6-2": "dense6_2", "conv6-3": "dense6_3"},
}
FLAT = {"rnet": ("conv4", (64, 3, 3)), "onet": ("conv5", (128, 3, 3))}
PROTOTXT = {"pnet": det1_prototxt, "rnet": det2_prototxt, "onet": det3_prototxt}
SIZE = {"rnet": (24, 24), "onet": (48, 48)}


def whc_to_chw_rows(w: np.ndarray, chw) -> np.ndarray:
    """facenet's Dense weight (out, W*H*C in (W, H, C) order) -> Caffe's (out, C*H*W) in (C, H, W) order."""
    c, h, wd = chw
    return w.reshape(w.shape[0], wd, h, c).transpose(0, 3, 2, 1).reshape(w.shape[0], -1)


def caffe_blobs(net: str) -> dict[str, list[np.ndarray]]:
    """Caffe's blobs per layer of det1/det2/det3 from the trained state dict."""
    sd = state_dict(net)
    flat = FLAT.get(net)
    blobs: dict[str, list[np.ndarray]] = {}
    for layer, prefix in LAYERS[net].items():
        if prefix.startswith("prelu"):
            blobs[layer] = [sd[prefix + ".weight"]]
            continue
        w = sd[prefix + ".weight"]
        if flat and layer == flat[0]:
            w = whc_to_chw_rows(w, flat[1])
        blobs[layer] = [w, sd[prefix + ".bias"]]
    return blobs


def write_net(net: str, folder: Path, hw=None) -> tuple[Path, Path]:
    """deploy.prototxt and weights.npz of one MTCNN stage in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    proto = folder / f"{net}.prototxt"
    proto.write_text(det1_prototxt(hw or (12, 12)) if net == "pnet" else PROTOTXT[net]())
    npz = folder / f"{net}.npz"
    np.savez(npz, **{f"{layer}/{i}": b for layer, bl in caffe_blobs(net).items() for i, b in enumerate(bl)})
    return proto, npz


# ---------------------------------------------------------------------------------------------- torch oracle

def torch_forward(net: str, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
    """The state dict run with torch's own ops, as facenet-pytorch's modules run it (float64)."""
    import torch
    import torch.nn.functional as F

    sd = {k: torch.from_numpy(v.astype(np.float64)) for k, v in state_dict(net).items()}
    x = torch.from_numpy(x_nchw.astype(np.float64))

    def conv_prelu(x, i):
        return F.prelu(F.conv2d(x, sd[f"conv{i}.weight"], sd[f"conv{i}.bias"]), sd[f"prelu{i}.weight"])

    if net == "pnet":
        x = F.max_pool2d(conv_prelu(x, 1), 2, 2, ceil_mode=True)
        x = conv_prelu(conv_prelu(x, 2), 3)
        a = F.conv2d(x, sd["conv4_1.weight"], sd["conv4_1.bias"])
        b = F.conv2d(x, sd["conv4_2.weight"], sd["conv4_2.bias"])
        return {"prob1": torch.softmax(a, 1).numpy(), "conv4-2": b.numpy()}
    x = F.max_pool2d(conv_prelu(x, 1), 3, 2, ceil_mode=True)
    x = F.max_pool2d(conv_prelu(x, 2), 3, 2, ceil_mode=True)
    if net == "onet":
        x = F.max_pool2d(conv_prelu(x, 3), 2, 2, ceil_mode=True)
        x = conv_prelu(x, 4)
        d, heads = 5, {"conv6-2": "dense6_2", "conv6-3": "dense6_3"}
    else:
        x = conv_prelu(x, 3)
        d, heads = 4, {"conv5-2": "dense5_2"}
    x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
    x = F.prelu(F.linear(x, sd[f"dense{d}.weight"], sd[f"dense{d}.bias"]), sd[f"prelu{d}.weight"])
    cls = F.linear(x, sd[f"dense{d + 1}_1.weight"], sd[f"dense{d + 1}_1.bias"])
    out = {"prob1": torch.softmax(cls, 1).numpy()}
    out.update({k: F.linear(x, sd[v + ".weight"], sd[v + ".bias"]).numpy() for k, v in heads.items()})
    return out


# ---------------------------------------------------------------------------------------------- photographs

def grace_hopper_rgb() -> np.ndarray:
    """matplotlib's sample photograph grace_hopper.jpg (512 x 600 RGB uint8), decoded by OpenCV."""
    import cv2
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return bgr[:, :, ::-1].copy()


# (top, left, height, width) of photograph regions: her face, her eyes, the cap badge, the shoulder
REGIONS = {"face": (140, 170, 250, 200), "eyes": (200, 190, 70, 150), "cap": (20, 170, 120, 190),
           "shoulder": (380, 20, 130, 230)}


def crops(size, regions=("face", "cap")) -> np.ndarray:
    """RGB uint8 crops of the photograph, each resized to size (H, W) with cv2.INTER_AREA: (N, H, W, 3)."""
    import cv2

    img = grace_hopper_rgb()
    out = []
    for r in regions:
        t, left, h, w = REGIONS[r]
        out.append(cv2.resize(img[t:t + h, left:left + w], (size[1], size[0]), interpolation=cv2.INTER_AREA))
    return np.stack(out)


def mtcnn_input(rgb_nhwc: np.ndarray) -> np.ndarray:
    """MTCNN's preprocessing, (x - 127.5) * 0.0078125, as an NCHW float32 array (RGB channel order)."""
    x = (rgb_nhwc.astype(np.float32) - 127.5) * np.float32(0.0078125)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
