"""The corpus: every port variant by name, the Caffe nets, the photograph inputs, and the artefacts on disk.

``PORTS[name] = (net, build)``: ``build()`` returns the Keras port with the trained weights.  ``write_all(folder)``
writes what notes/corpus21.md's reproductions name: ``{pnet,rnet,onet}.prototxt`` / ``.npz`` (P-Net at 27 x 35),
``<net>_x.npy`` (batch 2, NCHW), ``pnet_x40.npy`` (P-Net at 40 x 31), ``<port>.keras`` and ``<port>_sm`` (its
``model.export``), ``img24/`` (two 24 x 24 PNG crops for layer 0).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

import _p7_mtcnn as M
import _p7_ports as P

PNET_HW = (27, 35)      # the prototxt's P-Net size: odd sizes, so Caffe's ceil rounding of pool1 matters
PNET_HW2 = (40, 31)     # a second size for the fully convolutional P-Net
HW = {"pnet": PNET_HW, "rnet": (24, 24), "onet": (48, 48)}
PNET_HEADS = {"conv4-1": "conv4_2", "conv4-2": "conv4_1"}                       # named the other way round
ONET_HEADS = {"conv6-1": "dense6_2", "conv6-2": "dense6_3", "conv6-3": "dense6_1"}


@lru_cache(maxsize=None)
def sd(net):
    return M.state_dict(net)


def _sub(cls, net, **kw):
    import keras

    def build():
        m = cls(**kw)
        m(keras.Input((None, None, 3) if net == "pnet" else (*HW[net], 3)))   # built for any size (P-Net)
        return P.load_trained(m, net, sd(net))
    return build


def _wrap(cls, net, **kw):
    def build():
        import keras

        port = _sub(cls, net, **kw)()
        i = keras.Input((*HW[net], 3))
        return keras.Model(i, port(i), name="wrap")
    return build


PORTS = {
    # correct
    "pnet_sub": ("pnet", _sub(P.PNet, "pnet")),
    "rnet_sub": ("rnet", _sub(P.RNet, "rnet")),
    "onet_sub": ("onet", _sub(P.ONet, "onet")),
    "rnet_nested": ("rnet", lambda: P.load_trained(P.rnet_nested(), "rnet", sd("rnet"))),
    "rnet_wrap": ("rnet", _wrap(P.RNet, "rnet")),
    "pnet_fn": ("pnet", lambda: P.load_trained(P.pnet_functional(), "pnet", sd("pnet"), heads=PNET_HEADS)),
    "onet_fn": ("onet", lambda: P.load_trained(P.onet_functional(), "onet", sd("onet"), heads=ONET_HEADS)),
    "pnet_ops": ("pnet", _sub(P.PNetOps, "pnet")),                  # keras.ops.softmax in call()
    "rnet_ops": ("rnet", _sub(P.RNetOps, "rnet")),                  # keras.ops transpose + reshape + softmax
    "rnet_rescale": ("rnet", lambda: P.load_trained(P.rnet_nested(preprocess="rescale"), "rnet", sd("rnet"))),
    # one bug each
    "pnet_fn_reshape": ("pnet", lambda: P.load_trained(P.pnet_functional(), "pnet", sd("pnet"), heads=PNET_HEADS,
                                                       reshape="conv2")),
    "rnet_sub_shared": ("rnet", _sub(P.RNet, "rnet", shared="prelu2")),
    "rnet_nested_shared": ("rnet", lambda: P.load_trained(P.rnet_nested(shared="prelu2"), "rnet", sd("rnet"))),
    "rnet_nested_shared4": ("rnet", lambda: P.load_trained(P.rnet_nested(shared="prelu4"), "rnet", sd("rnet"))),
    "rnet_sub_noperm": ("rnet", _sub(P.RNet, "rnet", permute=False)),
    "onet_fn_noperm": ("onet", lambda: P.load_trained(P.onet_functional(permute=False), "onet", sd("onet"),
                                                      heads=ONET_HEADS)),
    "rnet_ops_noperm": ("rnet", _sub(P.RNetOps, "rnet", permute=False)),
    "pnet_sub_valid": ("pnet", _sub(P.PNet, "pnet", pool="valid")),
    "pnet_fn_valid": ("pnet", lambda: P.load_trained(P.pnet_functional(pool="valid"), "pnet", sd("pnet"),
                                                     heads=PNET_HEADS)),
    "rnet_bgr": ("rnet", lambda: P.load_trained(P.rnet_nested(preprocess="bgr"), "rnet", sd("rnet"))),
}


def write_nets(folder: Path) -> dict:
    """The three Caffe nets and their photograph inputs: {net: (prototxt, weights, x_nchw)} plus 'pnet40'."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for net, hw in HW.items():
        proto, w = M.write_net(net, folder, hw if net == "pnet" else None)
        x = M.mtcnn_input(M.crops(hw))
        np.save(folder / f"{net}_x.npy", x)
        out[net] = (proto, w, x)
    x40 = M.mtcnn_input(M.crops(PNET_HW2, ("eyes", "shoulder")))
    np.save(folder / "pnet_x40.npy", x40)
    out["pnet40"] = (out["pnet"][0], out["pnet"][1], x40)
    return out


def write_images(folder: Path, hw=(24, 24)) -> Path:
    """Two PNG crops of the photograph (face, cap) at hw, for check --images."""
    import cv2

    d = folder / f"img{hw[0]}"
    d.mkdir(parents=True, exist_ok=True)
    for name, rgb in zip(("face", "cap"), M.crops(hw)):
        cv2.imwrite(str(d / f"{name}.png"), np.ascontiguousarray(rgb[:, :, ::-1]))
    return d


def write_all(folder) -> None:
    folder = Path(folder)
    write_nets(folder)
    write_images(folder)
    for name, (net, build) in PORTS.items():
        m = build()
        m.save(folder / f"{name}.keras")
        m.export(str(folder / f"{name}_sm"), verbose=False)
