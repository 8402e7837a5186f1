"""Caffe's layer 0 through the documented Python API (``harness.reference.preprocess``) against this corpus' own
transcription of Caffe's C++ loops -- so a rule the harness and a Keras port could get wrong together (the crop
offset, the mean image offsets, the resize) is checked against Caffe itself, not against a port.

Transcribed from brocolli-caffe 9.0.2 (BVLC + SSD fork):

* util/io.cpp ReadImageToCVMat: cv::imread(IMREAD_COLOR), cv::resize(img, cv::Size(new_width, new_height)).
* data_transformer.cpp Transform(const cv::Mat&): h_off = (img_height - crop_h) / 2 (TEST), and
  top[(c*height + h)*width + w] = (pixel - mean[(c*img_height + h_off + h)*img_width + w_off + w]) * scale
  or (pixel - mean_values_[c]) * scale, in float (Dtype).
* python/caffe/io.py: load_image = img_as_float(imread(RGB)).astype(float32); preprocess: transpose(2, 0, 1),
  [channel_swap], *= raw_scale, -= mean, *= input_scale.
"""

from __future__ import annotations

import cv2
import numpy as np

from _ports3 import BGR_MEAN, mean_image, train_val_text, transform_block, write_binaryproto, write_images


def _caffe_loop(img_bgr: np.ndarray, crop: int, scale: float, mean_values=None, mean=None) -> np.ndarray:
    """DataTransformer::Transform at TEST on one 8-bit H x W x C image, element by element, in float32."""
    ih, iw, c = img_bgr.shape
    ch, cw = (crop, crop) if crop else (ih, iw)
    h_off, w_off = ((ih - ch) // 2, (iw - cw) // 2) if crop else (0, 0)
    out = np.empty((c, ch, cw), np.float32)
    s = np.float32(scale)
    flat_mean = None if mean is None else np.asarray(mean, np.float32).ravel()
    for h in range(ch):
        for w in range(cw):
            for k in range(c):
                pixel = np.float32(img_bgr[h + h_off, w + w_off, k])
                if flat_mean is not None:
                    m = flat_mean[(k * ih + h_off + h) * iw + w_off + w]
                elif mean_values:
                    m = np.float32(mean_values[k])
                else:
                    out[k, h, w] = pixel * s
                    continue
                out[k, h, w] = np.float32(pixel - m) * s
    return out


def test_imagedata_resize_crop_mean_values_scale_is_caffes_loop(tmp_path):
    from harness.reference.preprocess import CaffeTransform, load_batch

    imgs = write_images(tmp_path / "imgs", [("a.jpg", 20, 28, False), ("b.png", 31, 23, False),
                                            ("c.png", 16, 19, True)])
    tv = tmp_path / "tv.prototxt"
    tv.write_text(train_val_text(transform_block(scale=0.017, mean_value=BGR_MEAN, crop_size=9), new_hw=(13, 16)))
    t = CaffeTransform.from_prototxt(tv)
    paths = sorted(str(p) for p in imgs.iterdir())
    got = load_batch(paths, t, input_hw=(9, 9))
    want = np.stack([_caffe_loop(cv2.resize(cv2.imread(p, cv2.IMREAD_COLOR), (16, 13)), 9, 0.017, BGR_MEAN)
                     for p in paths])
    assert got.dtype == np.float32 and got.shape == (3, 3, 9, 9)
    np.testing.assert_array_equal(got, want)
    # the odd margins: (13 - 9) / 2 = 2 rows, (16 - 9) / 2 = 3 columns (integer division, not rounded up)
    img = cv2.resize(cv2.imread(paths[0], cv2.IMREAD_COLOR), (16, 13))
    assert got[0, 0, 0, 0] == np.float32(np.float32(img[2, 3, 0]) - np.float32(104.0)) * np.float32(0.017)


def test_mean_file_image_is_read_at_the_crop_offsets(tmp_path):
    from harness.reference.preprocess import CaffeTransform, load_batch, read_mean_binaryproto

    imgs = write_images(tmp_path / "imgs", [("a.png", 18, 25, False), ("b.jpg", 27, 21, False)])
    mean = mean_image(3, 12, 17)
    write_binaryproto(tmp_path / "m.binaryproto", mean)
    np.testing.assert_array_equal(read_mean_binaryproto(tmp_path / "m.binaryproto"), mean)
    write_binaryproto(tmp_path / "m7.binaryproto", mean, legacy=False)
    np.testing.assert_array_equal(read_mean_binaryproto(tmp_path / "m7.binaryproto"), mean)
    tv = tmp_path / "tv.prototxt"
    tv.write_text(train_val_text(transform_block(mean_file=str(tmp_path / "m.binaryproto"), crop_size=10,
                                                 scale=0.5), new_hw=(12, 17)))
    t = CaffeTransform.from_prototxt(tv)
    paths = sorted(str(p) for p in imgs.iterdir())
    got = load_batch(paths, t, input_hw=(10, 10))
    want = np.stack([_caffe_loop(cv2.resize(cv2.imread(p, cv2.IMREAD_COLOR), (17, 12)), 10, 0.5, mean=mean)
                     for p in paths])
    np.testing.assert_array_equal(got, want)


def test_data_layer_without_resize_crops_at_the_files_own_size(tmp_path):
    from harness.reference.preprocess import CaffeTransform, load_batch

    imgs = write_images(tmp_path / "imgs", [("a.jpg", 15, 20, False), ("b.png", 15, 20, False)])
    tv = tmp_path / "tv.prototxt"
    tv.write_text(train_val_text(transform_block(mean_value=(120,), crop_size=12), kind="Data"))
    t = CaffeTransform.from_prototxt(tv)
    paths = sorted(str(p) for p in imgs.iterdir())
    got = load_batch(paths, t, input_hw=(12, 12))
    want = np.stack([_caffe_loop(cv2.imread(p, cv2.IMREAD_UNCHANGED), 12, 1.0, (120.0,) * 3) for p in paths])
    np.testing.assert_array_equal(got, want)


def test_pycaffe_transformer_order(tmp_path):
    from harness.reference.preprocess import CaffeTransform, load_batch

    imgs = write_images(tmp_path / "imgs", [("a.png", 11, 13, False), ("b.png", 11, 13, True)])
    t = CaffeTransform.from_pycaffe(channel_swap=(2, 1, 0), raw_scale=255.0, mean_values=(104.0, 117.0, 123.0),
                                    input_scale=0.017)
    paths = sorted(str(p) for p in imgs.iterdir())
    got = load_batch(paths, t, input_hw=(11, 13))
    want = []
    for p in paths:
        rgb = cv2.imread(p, cv2.IMREAD_COLOR)[:, :, ::-1]
        x = (rgb.astype(np.float64) / 255.0).astype(np.float32).transpose(2, 0, 1)  # load_image, transpose
        x = x[[2, 1, 0]]
        x *= 255.0
        x -= np.array([104.0, 117.0, 123.0])[:, None, None]
        x *= 0.017
        want.append(x)
    np.testing.assert_allclose(got, np.stack(want), rtol=0, atol=4 * 2.0 ** -24 * 255 * 0.017 * 4)
