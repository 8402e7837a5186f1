"""Inputs on Caffe's scale: 8-bit BGR images, resized and cropped, minus the per-channel mean (104, 117, 123).

The pictures are scikit-image's bundled photographs when scikit-image is installed, else synthetic scenes with a
photograph's structure, drawn from a seed (no network): flat regions with lighting gradients, 1/f texture, a few
solid objects with sharp edges, clipped highlights and shadows (flat 255 / 0 areas), sensor noise, quantised to
uint8. Each scene also has a class (0-9: its palette and texture orientation), the synthetic task the last
InnerProduct of every net is fitted to.
"""

from __future__ import annotations

import cv2
import numpy as np

MEAN_BGR = np.array([104.0, 117.0, 123.0])
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "cat", "hubble_deep_field")


def _photographs():
    try:
        import skimage.data as sd
    except ImportError:
        return []
    out = []
    for name in PHOTOS:
        try:
            img = getattr(sd, name)()
        except Exception:  # noqa: BLE001 - a photograph this scikit-image cannot load offline is simply not used
            continue
        if img.ndim == 3 and img.shape[2] >= 3:
            out.append(np.ascontiguousarray(img[..., :3]).astype(np.uint8))
    return out


_CACHE: dict = {}


def photographs():
    if "photos" not in _CACHE:
        _CACHE["photos"] = _photographs()
    return _CACHE["photos"]


def _pink_noise(rng, h, w, orient):
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    c, s = np.cos(orient), np.sin(orient)
    r = np.sqrt((c * fy + s * fx) ** 2 + 0.15 * (-s * fy + c * fx) ** 2) + 1.0 / max(h, w)
    spec = (rng.standard_normal((h, w)) + 1j * rng.standard_normal((h, w))) / r ** 1.8
    n = np.real(np.fft.ifft2(spec))
    return n / n.std()


def scene(seed, h, w):
    """An RGB uint8 (h, w, 3) synthetic photograph and its class."""
    rng = np.random.default_rng(seed)
    cls = int(rng.integers(10))
    hue = np.array([np.cos(cls * 0.63), np.cos(cls * 0.63 + 2.1), np.cos(cls * 0.63 + 4.2)])
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    pts = rng.random((int(rng.integers(3, 8)), 2))
    region = np.argmin((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2, axis=-1)
    colours = 128 + 70 * hue + rng.normal(0, 45, (len(pts), 3))
    img = colours[region]
    img += (rng.normal(0, 40) * yy + rng.normal(0, 40) * xx)[..., None]
    img += (rng.uniform(8, 30) * _pink_noise(rng, h, w, cls * np.pi / 10))[..., None] * (1 + 0.3 * hue)
    for _ in range(int(rng.integers(2, 6))):
        cy, cx, ry, rx = rng.random(4) * [1, 1, 0.25, 0.25] + [0, 0, 0.03, 0.03]
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        img[mask] = rng.uniform(-20, 280, 3)
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.8)
    img += rng.normal(0, 2.0, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), cls


def _crop(rng, img, h, w):
    """Resize (OpenCV INTER_LINEAR on 8 bits, as Caffe's data layers) by a random factor, then crop h x w."""
    ih, iw = img.shape[:2]
    f = max(h / ih, w / iw) * rng.uniform(1.05, 1.6)
    img = cv2.resize(img, (int(np.ceil(iw * f)), int(np.ceil(ih * f))), interpolation=cv2.INTER_LINEAR)
    oy, ox = int(rng.integers(0, img.shape[0] - h + 1)), int(rng.integers(0, img.shape[1] - w + 1))
    return img[oy:oy + h, ox:ox + w]


def caffe_blob(rgb_images):
    """Caffe's input: BGR, float, minus the mean pixel, NCHW float32."""
    x = np.stack([im[..., ::-1].astype(np.float64) - MEAN_BGR for im in rgb_images])
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32)


def picture(seed, hw):
    """One RGB uint8 crop of size hw: a photograph's crop when scikit-image is there, else a synthetic scene's."""
    rng = np.random.default_rng(50_000 + seed)
    photos = photographs()
    if photos:
        return _crop(rng, photos[seed % len(photos)], *hw)
    img, _ = scene(seed, int(hw[0] * 1.3) + 7, int(hw[1] * 1.3) + 11)
    return _crop(rng, img, *hw)


def input_batch(index, hw, n=2):
    """The index-th test batch (n crops) as a Caffe NCHW blob; seeds disjoint from the calibration batch."""
    return caffe_blob([picture(index * n + j, hw) for j in range(n)])


def calibration_batch(n, hw, seed):
    """n synthetic scenes (never the test pictures) on Caffe's scale, and their classes."""
    imgs, labels = [], []
    rng = np.random.default_rng(seed)
    for j in range(n):
        img, cls = scene(seed * 1000 + j, int(hw[0] * 1.2) + 5, int(hw[1] * 1.2) + 3)
        imgs.append(_crop(rng, img, *hw))
        labels.append(cls)
    return caffe_blob(imgs), np.array(labels)
