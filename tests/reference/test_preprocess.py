"""Caffe's preprocessing (harness.reference.preprocess) against hand-computed tables of Caffe's rules.

The first group re-derives the cases of Caffe's ``src/caffe/test/test_data_transformer.cpp`` (there: 2 channels,
10x10, ``FillDatum`` pixels either the label or consecutive ``j``; here 2 channels, 5x7, so that every axis differs)
-- the expected numbers are worked out below from ``DataTransformer::Transform``'s formula, not copied.  The rest
are drawn images written with OpenCV / PIL at test time (no downloads)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from harness.errors import HarnessError, LoadWarning, UnsupportedParam  # noqa: E402
from harness.proto import caffe_pb2 as pb  # noqa: E402
from harness.reference.preprocess import (CaffeTransform, ImageError, caffe_preprocess, image_files,  # noqa: E402
                                          load_batch, read_image, read_mean_binaryproto)

C, H, W = 2, 5, 7


def _datum(unique: bool, label: int = 0) -> np.ndarray:
    """FillDatum: CHW data, pixel j = j (unique) or the label; returned as the HWC image the cv::Mat path reads."""
    chw = (np.arange(C * H * W) if unique else np.full(C * H * W, label)).astype(np.uint8).reshape(C, H, W)
    return np.ascontiguousarray(chw.transpose(1, 2, 0))


def _run(t: CaffeTransform, img: np.ndarray) -> np.ndarray:
    return caffe_preprocess([img], t)[0]


def test_empty_transform_is_the_pixels_in_chw():
    # TestEmptyTransform: label pixels -> label; TestEmptyTransformUniquePixels: element j -> j.
    assert np.array_equal(_run(CaffeTransform(), _datum(False, label=0)), np.zeros((C, H, W), np.float32))
    got = _run(CaffeTransform(), _datum(True))
    assert got.dtype == np.float32
    assert np.array_equal(got, np.arange(C * H * W, dtype=np.float32).reshape(C, H, W))


def test_test_phase_crop_is_the_centre_with_integer_division():
    # TestCropTest: crop_size 2 at TEST is deterministic.  Here crop 3 of 5x7: h_off = (5-3)/2 = 1, w_off = (7-3)/2 = 2,
    # so out[c][h][w] = c*35 + (1+h)*7 + 2 + w.
    got = _run(CaffeTransform(crop_size=3), _datum(True))
    want = np.array([[[9, 10, 11], [16, 17, 18], [23, 24, 25]],
                     [[44, 45, 46], [51, 52, 53], [58, 59, 60]]], np.float32)
    assert np.array_equal(got, want)
    # an even remainder: crop 4 of 5x7 -> h_off = 1/2 = 0, w_off = 3/2 = 1 (floor, not rounding)
    got4 = _run(CaffeTransform(crop_size=4), _datum(True))
    assert got4.shape == (C, 4, 4) and got4[0, 0, 0] == 1 and got4[1, 3, 3] == 35 + 3 * 7 + 4


def test_mean_value_one_is_replicated_and_one_per_channel_is_per_channel():
    # TestMeanValue: one mean_value 2 -> label - 2 in every channel.
    assert np.array_equal(_run(CaffeTransform(mean_values=(2.0,)), _datum(False, label=0)),
                          np.full((C, H, W), -2.0, np.float32))
    # TestMeanValues: mean_value c for channel c -> label - c.
    got = _run(CaffeTransform(mean_values=(0.0, 1.0)), _datum(False, label=0))
    assert np.array_equal(got[0], np.zeros((H, W))) and np.array_equal(got[1], np.full((H, W), -1.0))
    with pytest.raises(ImageError, match="Specify either 1 mean_value or as many as channels"):
        _run(CaffeTransform(mean_values=(1.0, 2.0, 3.0)), _datum(True))


def _write_mean(path, arr: np.ndarray, legacy: bool = True) -> None:
    b = pb.BlobProto()
    if legacy:
        b.num, b.channels, b.height, b.width = 1, *arr.shape
    else:
        b.shape.dim.extend([1, *arr.shape])
    b.data.extend(arr.ravel().tolist())
    path.write_bytes(b.SerializeToString())


def test_mean_file_equal_to_the_pixels_gives_zero_even_cropped(tmp_path):
    # TestMeanFile: mean blob j = pixel j -> 0 everywhere.  With a crop the mean is cropped at the same offsets
    # (mean_index = (c*img_height + h_off + h)*img_width + w_off + w), so it stays 0.
    mean = np.arange(C * H * W, dtype=np.float32).reshape(C, H, W)
    f = tmp_path / "mean.binaryproto"
    _write_mean(f, mean)
    m = read_mean_binaryproto(f)
    assert m.shape == (C, H, W) and np.array_equal(m, mean)
    t = CaffeTransform(mean_image=m)
    assert np.array_equal(_run(t, _datum(True)), np.zeros((C, H, W), np.float32))
    assert np.array_equal(_run(CaffeTransform(mean_image=m, crop_size=3), _datum(True)), np.zeros((C, 3, 3)))
    g = tmp_path / "mean_shape.binaryproto"
    _write_mean(g, mean, legacy=False)
    assert np.array_equal(read_mean_binaryproto(g), mean)


def test_mean_is_subtracted_before_scale():
    # (pixel - mean) * scale: pixel 35+7*1+2 = 44 at channel 1 centre-crop origin, mean 4, scale 0.25 -> 10.
    got = _run(CaffeTransform(mean_values=(0.0, 4.0), scale=0.25, crop_size=3), _datum(True))
    assert got[1, 0, 0] == pytest.approx(10.0) and got[0, 2, 2] == pytest.approx(25 * 0.25)


def test_mean_file_of_the_wrong_shape_or_channels_is_refused_by_name(tmp_path):
    f = tmp_path / "m.binaryproto"
    _write_mean(f, np.zeros((3, H, W), np.float32))
    with pytest.raises(ImageError, match=r"m\.binaryproto.*\(3, 5, 7\).*\(2, 5, 7\)"):
        _run(CaffeTransform(mean_image=read_mean_binaryproto(f), mean_source=str(f)), _datum(True))
    _write_mean(f, np.zeros((C, 4, W), np.float32))
    with pytest.raises(ImageError, match=r"\(2, 4, 7\)"):
        _run(CaffeTransform(mean_image=read_mean_binaryproto(f), mean_source=str(f)), _datum(True))
    bad = tmp_path / "bad.binaryproto"
    bad.write_bytes(b"\xff\xff\xff\xff not a proto")
    with pytest.raises(ImageError, match="bad.binaryproto"):
        read_mean_binaryproto(bad)
    b = pb.BlobProto()
    b.shape.dim.extend([2, 3])
    b.data.extend([0.0] * 6)
    (tmp_path / "two.binaryproto").write_bytes(b.SerializeToString())
    with pytest.raises(ImageError, match=r"two\.binaryproto.*\[2, 3\]"):
        read_mean_binaryproto(tmp_path / "two.binaryproto")


def test_image_smaller_than_the_crop_is_refused():
    with pytest.raises(ImageError, match=r"5x7 \(HxW\) is smaller than crop_size 6"):
        _run(CaffeTransform(crop_size=6), _datum(True))


def test_mean_file_and_mean_value_together_are_refused():
    with pytest.raises(UnsupportedParam, match="mean_file and mean_value"):
        CaffeTransform(mean_image=np.zeros((C, H, W)), mean_values=(1.0,))


# ------------------------------------------------------------------------------------------------------------------
# Reading images


def test_read_image_is_bgr_uint8_from_a_pil_rgb_file(tmp_path):
    from PIL import Image

    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = 200  # red
    rgb[1, 3] = (10, 20, 30)
    Image.fromarray(rgb).save(tmp_path / "red.png")
    img = read_image(tmp_path / "red.png")
    assert img.dtype == np.uint8 and img.shape == (H, W, 3)
    assert tuple(img[0, 0]) == (0, 0, 200) and tuple(img[1, 3]) == (30, 20, 10)
    grey = read_image(tmp_path / "red.png", color=False)
    assert grey.shape == (H, W, 1)
    # CV_LOAD_IMAGE_GRAYSCALE: the decoder's own grey conversion (libpng: 59 here; cvtColor would round 0.299*200 to
    # 60) -- exactly what cv::imread(file, GRAYSCALE) gives, as Caffe reads it
    assert np.array_equal(grey[..., 0], cv2.imread(str(tmp_path / "red.png"), cv2.IMREAD_GRAYSCALE))
    assert abs(int(grey[0, 0, 0]) - 60) <= 1


def test_imagedata_resize_is_opencv_inter_linear(tmp_path):
    # cv::resize(img, out, cv::Size(width, height)) -> INTER_LINEAR, half-pixel centres src = (dst + 0.5)/2 - 0.5,
    # clamped at the border.  Row [0, 100, 200, 40, 80] widened 5 -> 10 (sources -0.25, 0.25, ..., 4.25):
    row = np.array([0, 100, 200, 40, 80], np.uint8)
    img = np.repeat(np.repeat(row[None, :, None], 3, axis=2), 3, axis=0)  # 3x5, every row and channel the same
    cv2.imwrite(str(tmp_path / "r.png"), img)
    got = read_image(tmp_path / "r.png", new_height=6, new_width=10)
    assert got.shape == (6, 10, 3)
    assert got[2, :, 1].tolist() == [0, 25, 75, 125, 175, 160, 80, 50, 70, 80]
    t = CaffeTransform(new_height=6, new_width=10)
    assert np.array_equal(load_batch([str(tmp_path / "r.png")], t)[0, 1, 2], got[2, :, 1].astype(np.float32))


def test_native_decode_keeps_the_files_channels_and_depth(tmp_path):
    # a Data layer without force_color/force_gray decodes natively (cv::imdecode(vec_data, -1)): an alpha channel
    # stays (4 channels, which Caffe's CHECK_EQ(channels, img_channels) then refuses), 16-bit pixels stay 16-bit
    # (refused: "Image data type must be unsigned byte")
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 3] = 255
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    assert read_image(tmp_path / "a.png", color=None).shape == (H, W, 4)
    assert read_image(tmp_path / "a.png").shape == (H, W, 3)  # IMREAD_COLOR drops alpha
    cv2.imwrite(str(tmp_path / "d.png"), np.full((H, W, 3), 1000, np.uint16))
    with pytest.raises(ImageError, match=r"d\.png.*uint16.*8-bit"):
        read_image(tmp_path / "d.png", color=None)
    assert read_image(tmp_path / "d.png").dtype == np.uint8  # IMREAD_COLOR converts to 8 bits, as Caffe's imread


def test_unreadable_and_missing_files_name_the_file(tmp_path):
    (tmp_path / "notes.png").write_text("this is not an image")
    with pytest.raises(ImageError, match=r"notes\.png.*cannot decode"):
        read_image(tmp_path / "notes.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.jpg"):
        read_image(tmp_path / "empty.jpg")
    with pytest.raises(ImageError, match=r"gone\.png.*does not exist"):
        read_image(tmp_path / "gone.png")


def test_image_files_of_a_folder_and_a_glob(tmp_path):
    for n in ("b.png", "a.jpg", "c.txt"):
        (tmp_path / n).write_bytes(b"x")
    assert [p.rsplit("/", 1)[1] for p in image_files(str(tmp_path))] == ["a.jpg", "b.png"]
    assert [p.rsplit("/", 1)[1] for p in image_files(str(tmp_path / "*.png"))] == ["b.png"]
    with pytest.raises(ImageError, match="no image files"):
        image_files(str(tmp_path / "sub")) if (tmp_path / "sub").mkdir() is None else None
    with pytest.raises(ImageError, match="matches no file"):
        image_files(str(tmp_path / "*.bmp"))


# ------------------------------------------------------------------------------------------------------------------
# pycaffe's Transformer


def test_pycaffe_order_swap_raw_scale_mean_input_scale(tmp_path):
    # load_image: RGB / 255; transpose; channel_swap (2,1,0) -> BGR; *255; - (104, 117, 123); *0.017.
    img = np.zeros((H, W, 3), np.uint8)
    img[2, 4] = (50, 150, 250)  # BGR as cv2 writes it: R = 250, G = 150, B = 50
    cv2.imwrite(str(tmp_path / "p.png"), img)
    t = CaffeTransform.from_pycaffe(channel_swap=(2, 1, 0), raw_scale=255.0, mean_values=(104.0, 117.0, 123.0),
                                    input_scale=0.017)
    got = load_batch([str(tmp_path / "p.png")], t, input_hw=(H, W))
    assert got.shape == (1, 3, H, W)
    # B: (50 - 104) * 0.017 = -0.918; G: (150 - 117) * 0.017 = 0.561; R: (250 - 123) * 0.017 = 2.159
    np.testing.assert_allclose(got[0, :, 2, 4], [-0.918, 0.561, 2.159], rtol=0, atol=2e-6)
    np.testing.assert_allclose(got[0, :, 0, 0], [-104 * 0.017, -117 * 0.017, -123 * 0.017], rtol=0, atol=2e-6)
    # without the swap the first channel is R (load_image's RGB)
    t2 = CaffeTransform.from_pycaffe(raw_scale=255.0)
    assert load_batch([str(tmp_path / "p.png")], t2, input_hw=(H, W))[0, 0, 2, 4] == pytest.approx(250.0)
    with pytest.raises(ImageError, match="skimage"):
        load_batch([str(tmp_path / "p.png")], t, input_hw=(H + 1, W))


# ------------------------------------------------------------------------------------------------------------------
# From a prototxt

_TRAIN_VAL = """
name: "tv"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { mirror: true crop_size: 5 mean_value: 1 } }
layer { name: "data" type: "ImageData" top: "data" top: "label" include { phase: TEST }
  transform_param { crop_size: 3 mean_value: 104 mean_value: 117 mean_value: 123 scale: 0.5 }
  image_data_param { source: "list.txt" new_height: 6 new_width: 10 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 2 } }
"""


def test_from_prototxt_takes_the_test_phase_layer(tmp_path):
    p = tmp_path / "train_val.prototxt"
    p.write_text(_TRAIN_VAL)
    t = CaffeTransform.from_prototxt(p)
    assert (t.crop_size, t.mean_values, t.scale, t.new_height, t.new_width, t.mirror, t.color) == \
        (3, (104.0, 117.0, 123.0), 0.5, 6, 10, False, True)


def test_from_prototxt_mean_file_relative_to_the_prototxt_and_mirror_warns(tmp_path):
    _write_mean(tmp_path / "mean.binaryproto", np.ones((3, H, W), np.float32))
    p = tmp_path / "tv.prototxt"
    p.write_text('layer { name: "d" type: "Data" top: "data" transform_param { mirror: true '
                 'mean_file: "mean.binaryproto" force_gray: false } }')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        t = CaffeTransform.from_prototxt(p)
    assert any(issubclass(x.category, LoadWarning) and "mirror" in str(x.message) for x in w)
    # a Data layer's database as convert_imageset writes it by default: pixels decoded in colour
    assert t.mean_image.shape == (3, H, W) and t.color is True
    assert CaffeTransform.from_prototxt(p, encoded=True).color is None  # --encoded: the file's own channels
    assert CaffeTransform.from_prototxt(p, gray=True).color is False  # --gray: decoded grey


def test_from_prototxt_legacy_image_data_param_fields(tmp_path):
    """upgrade_proto.cpp UpgradeNetDataTransformation moves a V1 layer's legacy fields into transform_param."""
    p = tmp_path / "old.prototxt"
    p.write_text('layers { name: "d" type: IMAGE_DATA top: "data" image_data_param { source: "x" crop_size: 4 '
                 'scale: 0.125 is_color: false } }')
    t = CaffeTransform.from_prototxt(p)
    assert (t.crop_size, t.scale, t.color) == (4, 0.125, False)


def test_from_prototxt_legacy_fields_on_a_v2_layer_are_ignored_as_caffe_does(tmp_path):
    """NetNeedsDataUpgrade looks at V1 `layers` only; a V2 ImageData layer's image_data_param.scale is never read."""
    p = tmp_path / "v2.prototxt"
    p.write_text('layer { name: "d" type: "ImageData" top: "data" transform_param { scale: 0.5 } '
                 'image_data_param { source: "x" crop_size: 4 scale: 0.125 } }')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        t = CaffeTransform.from_prototxt(p)
    assert (t.crop_size, t.scale) == (0, 0.5)
    msgs = [str(x.message) for x in w if issubclass(x.category, LoadWarning)]
    assert any("image_data_param.scale, crop_size ignored" in m for m in msgs), msgs


def test_from_prototxt_refuses_a_data_layer_without_images(tmp_path):
    p = tmp_path / "w.prototxt"
    p.write_text('layer { name: "w" type: "WindowData" top: "data" window_data_param { source: "x" crop_size: 5 } }')
    with pytest.raises(UnsupportedParam, match="WindowData layer samples windows"):
        CaffeTransform.from_prototxt(p)


@pytest.mark.parametrize("extra, match", [
    ("resize_param { height: 3 }", "transform_param.resize_param is not implemented"),
    ("force_color: true force_gray: true", "both force_color and force_gray"),
])
def test_from_prototxt_refuses_what_it_does_not_implement(tmp_path, extra, match):
    p = tmp_path / "r.prototxt"
    p.write_text(f'layer {{ name: "d" type: "Data" top: "data" transform_param {{ {extra} }} }}')
    with pytest.raises(UnsupportedParam, match=match):
        CaffeTransform.from_prototxt(p, encoded=True)  # force_color/force_gray are read for an encoded database


def test_force_flags_on_a_database_of_decoded_pixels_are_ignored_with_a_warning(tmp_path):
    # DataTransformer::Transform(const Datum&): a datum that is not encoded -> LOG(ERROR) << "force_color and
    # force_gray only for encoded datum", the stored pixels used as they are
    p = tmp_path / "r.prototxt"
    p.write_text('layer { name: "d" type: "Data" top: "data" transform_param { force_gray: true } }')
    with pytest.warns(LoadWarning, match=r"layer 'd': transform_param.force_gray ignored.*--data-encoded"):
        t = CaffeTransform.from_prototxt(p)
    assert t.color is True and t.layer_type == "Data"
    assert CaffeTransform.from_prototxt(p, encoded=True).color is False


def test_from_prototxt_without_a_data_layer_says_so(tmp_path):
    p = tmp_path / "deploy.prototxt"
    p.write_text('layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 5 dim: 7 } } }')
    with pytest.raises(HarnessError, match="no TEST-phase data layer"):
        CaffeTransform.from_prototxt(p)
