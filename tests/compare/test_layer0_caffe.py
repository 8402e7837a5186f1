"""Layer 0 as real Caffe runs it (issue 21, items 8-12), on real image files written at test time with OpenCV from
seeded data (grey, RGBA, 16-bit PNG, JPEG; nothing downloaded).

* a Data layer with no force flag follows ``convert_imageset``'s defaults: every file was decoded in colour when the
  database was written (3 channels, 8 bits), and ``--data-encoded`` / ``--data-gray`` say how it was written
  otherwise;
* ``check --keras`` on a model written by ``caffe-harness convert`` (its embedded mapping) with ``--images``;
* the scale applied before the mean is ``preprocess_scale_order`` first, and a wrong scale *value* in Caffe's order
  is ``preprocess_scale_value``; a mean 0.001 off is ``preprocess_mean_value`` (no "scale 0.999999 (= 1)");
* pycaffe's ``set_mean`` with a mean image of another size resizes it as BVLC ``python/caffe/io.py`` does.

Every fix text is applied to the port (rewritten as the text says) and layer 0 re-run: it passes."""

from __future__ import annotations

import json

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from harness.cli import main  # noqa: E402
from harness.reference.preprocess import (CaffeTransform, ImageError, caffe_layer0, load_batch,  # noqa: E402
                                          pycaffe_set_mean, read_originals)

from test_layer0 import MEAN, codes, flip_layer, layer0, norm, side  # noqa: E402

H, W = 13, 17  # every file; crop 11 -> offsets (1, 3)
CROP = 11


def _keras():
    import keras

    return keras


def _pixels(seed: int, h: int = H, w: int = W, c: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // (w - 1)), (yy * 255 // (h - 1)), ((xx + 2 * yy) * 11) % 256], -1)[..., :c]
    return np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """grey PNG, RGBA PNG (alpha not constant), 16-bit PNG, JPEG -- all H x W."""
    d = tmp_path_factory.mktemp("kinds")
    grey = _pixels(1)[..., 0]
    rgba = np.concatenate([_pixels(2), _pixels(3)[..., :1]], -1)
    deep = _pixels(4).astype(np.uint16) * 256 + np.uint16(100)  # 16 bits: OpenCV's 8-bit decode keeps v >> 8
    jpg = _pixels(5)
    paths = {"grey": d / "a_grey.png", "rgba": d / "b_rgba.png", "deep": d / "c_deep16.png", "jpeg": d / "d.jpg"}
    for key, img in (("grey", grey), ("rgba", rgba), ("deep", deep), ("jpeg", jpg)):
        assert cv2.imwrite(str(paths[key]), img)
    assert cv2.imread(str(paths["deep"]), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    return d, {k: str(v) for k, v in paths.items()}


KERAS_MEAN = (103.939, 116.779, 123.68)  # keras.applications' mode 'caffe' (B, G, R): --keras-preprocess caffe
TV_MEAN = " ".join(f"mean_value: {v}" for v in KERAS_MEAN)


def _data_layer(tmp_path, transform: str = f"crop_size: {CROP} {TV_MEAN}",
                kind: str = "Data"):
    p = tmp_path / "tv.prototxt"
    param = ('data_param { source: "lmdb" batch_size: 4 backend: LMDB }' if kind == "Data" else
             'image_data_param { source: "list.txt" }')
    p.write_text(f'name: "kinds"\nlayer {{ name: "data" type: "{kind}" top: "data" top: "label" include {{ phase: TEST }}\n'
                 f'  transform_param {{ {transform} }} {param} }}\n'
                 'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"\n'
                 '  convolution_param { num_output: 4 kernel_size: 3 } }\n')
    return p


# ------------------------------------------------------------------------------------------------------------------
# 9. a Data layer follows convert_imageset's defaults


def test_a_data_layer_without_force_flags_sees_every_file_decoded_in_colour(files, tmp_path):
    _, paths = files
    t = CaffeTransform.from_prototxt(_data_layer(tmp_path))
    assert t.color is True and t.layer_type == "Data"
    order = [paths[k] for k in ("grey", "rgba", "deep", "jpeg")]
    got = load_batch(order, t)
    assert got.shape == (4, 3, CROP, CROP)
    mean = np.asarray(KERAS_MEAN, np.float32).reshape(3, 1, 1)
    for i, p in enumerate(order):
        # convert_imageset (--encoded=false): cv::imread(file, IMREAD_COLOR) -> CVMatToDatum; TEST centre crop at
        # ((13 - 11)/2, (17 - 11)/2) = (1, 3); (pixel - mean) * 1
        stored = cv2.imread(p, cv2.IMREAD_COLOR)
        want = stored[1:1 + CROP, 3:3 + CROP].transpose(2, 0, 1).astype(np.float32) - mean
        assert np.array_equal(got[i], want), p
    # by hand: a grey file becomes three equal channels, the RGBA file drops its alpha, the 16-bit file is v >> 8
    def centre(px: np.ndarray) -> np.ndarray:
        return px[1:12, 3:14].transpose(2, 0, 1).astype(np.float32) - mean

    assert np.array_equal(got[0], centre(np.repeat(_pixels(1)[..., :1], 3, -1)))
    assert np.array_equal(got[1], centre(_pixels(2))) and np.array_equal(got[2], centre(_pixels(4)))


def test_an_encoded_database_decodes_each_file_natively(files, tmp_path):
    _, paths = files
    t = CaffeTransform.from_prototxt(_data_layer(tmp_path), encoded=True)
    assert t.color is None
    # DecodeDatumToCVMatNative: cv::imdecode(buf, -1): the grey file keeps its one channel ...
    one = load_batch([paths["grey"]], CaffeTransform.from_prototxt(_data_layer(
        tmp_path, f"crop_size: {CROP} mean_value: 120"), encoded=True))
    assert one.shape == (1, 1, CROP, CROP)
    assert np.array_equal(one[0, 0], _pixels(1)[1:12, 3:14, 0].astype(np.float32) - 120)
    # ... the RGBA file has 4 channels (3 mean values: Caffe's CHECK), the 16-bit file is not 8-bit (CHECK)
    with pytest.raises(ImageError, match=r"3 mean_value\(s\) for image '.*b_rgba\.png', which has 4 channel"):
        load_batch([paths["rgba"]], t)
    with pytest.raises(ImageError, match=r"c_deep16\.png.*uint16 pixels.*8-bit"):
        load_batch([paths["deep"]], t)
    # force_color on an encoded database: DecodeDatumToCVMat(datum, true) -- colour again
    tc = CaffeTransform.from_prototxt(_data_layer(tmp_path, f"crop_size: {CROP} force_color: true"), encoded=True)
    assert load_batch([paths["grey"], paths["rgba"]], tc).shape == (2, 3, CROP, CROP)
    # --gray (not encoded): IMREAD_GRAYSCALE when the database was written
    tg = CaffeTransform.from_prototxt(_data_layer(tmp_path, f"crop_size: {CROP}"), gray=True)
    assert np.array_equal(load_batch([paths["jpeg"]], tg)[0, 0],
                          cv2.imread(paths["jpeg"], cv2.IMREAD_GRAYSCALE)[1:12, 3:14].astype(np.float32))


def _net_files(tmp_path):
    keras = _keras()
    rng = np.random.default_rng(9)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    np.savez(tmp_path / "w.npz", **{"conv1/0": w, "conv1/1": b})
    inp = keras.Input((H, W, 3))
    x = keras.layers.CenterCrop(CROP, CROP)(inp)  # the flip and the mean: --keras-preprocess caffe
    conv = keras.layers.Conv2D(4, 3, name="conv1")
    x = conv(x)
    conv.set_weights([w.transpose(2, 3, 1, 0), b])
    keras.Model(inp, x).save(tmp_path / "port.keras")
    return tmp_path / "w.npz", tmp_path / "port.keras"


def _cli(tv, weights, model, imgs, out, *extra):
    argv = ["check", str(tv), "--weights", str(weights), "--keras", str(model), "--images", str(imgs),
            "--keras-preprocess", "caffe", "--no-table", "--json", str(out), *extra]
    return main(argv)


def test_cli_a_data_layer_on_grey_rgba_16bit_and_jpeg_files_is_equivalent(files, tmp_path, capsys):
    d, _ = files
    weights, model = _net_files(tmp_path)
    tv = _data_layer(tmp_path)
    rc = _cli(tv, weights, model, d, tmp_path / "r.json")
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["equivalent"] and rep["preprocess"]["passed"] and rep["preprocess"]["shape"] == [4, 3, CROP, CROP]
    # --data-encoded: each file decoded natively: the 16-bit file is refused as Caffe's CHECK refuses it (one line
    # naming it, exit 2, nothing written)
    never = tmp_path / "never.json"
    rc = _cli(tv, weights, model, d, never, "--data-encoded")
    err = capsys.readouterr().err
    assert rc == 2 and not never.exists()
    assert "c_deep16.png" in err and "uint16" in err and len(err.strip().splitlines()) == 1, err
    rc = _cli(tv, weights, model, d, never, "--data-gray")
    err = capsys.readouterr().err
    assert rc == 2 and not never.exists() and "which has 1 channel(s)" in err and len(err.strip().splitlines()) == 1, err


def test_database_flags_with_an_imagedata_layer_or_pycaffe_are_refused(files, tmp_path, capsys):
    d, _ = files
    weights, model = _net_files(tmp_path)
    never = tmp_path / "never.json"
    rc = _cli(_data_layer(tmp_path, f"crop_size: {CROP}", kind="ImageData"), weights, model, d, never,
              "--data-encoded")
    err = capsys.readouterr().err
    assert rc == 2 and "--data-encoded" in err and "ImageData layer" in err and not never.exists()
    rc = _cli(_data_layer(tmp_path), weights, model, d, never, "--data-gray", "--raw-scale", "255")
    err = capsys.readouterr().err
    assert rc == 2 and "--data-gray" in err and "--raw-scale" in err and not never.exists()


# ------------------------------------------------------------------------------------------------------------------
# 8. check --keras MODEL.keras --images with a model written by caffe-harness convert


def test_cli_images_with_a_model_written_by_convert(files, tmp_path, capsys):
    keras = _keras()
    d, _ = files
    (tmp_path / "deploy.prototxt").write_text(
        'name: "kinds"\nlayer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 '
        f'dim: {CROP} dim: {CROP} }} }} }}\n'
        'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"\n'
        '  convolution_param { num_output: 4 kernel_size: 3 } }\n')
    weights, _ = _net_files(tmp_path)
    conv = tmp_path / "converted.keras"
    assert main(["convert", str(tmp_path / "deploy.prototxt"), "--weights", str(weights), "-o", str(conv)]) == 0
    inp = keras.Input((None, None, 3))
    keras.Model(inp, keras.layers.CenterCrop(CROP, CROP)(inp)).save(tmp_path / "pre.keras")
    capsys.readouterr()
    rc = _cli(_data_layer(tmp_path), weights, conv, d, tmp_path / "r.json", "--keras-preprocess-model",
              str(tmp_path / "pre.keras"))
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["equivalent"] and rep["preprocess"]["passed"]
    # paired by the converted model's embedded mapping
    assert [(lr["caffe_layer"], lr["matched_by"]) for lr in rep["layers"]] == [("layer0:preprocess", "preprocess"),
                                                                              ("conv1", "mapping")]


def test_split_preprocessing_reads_the_converters_mapping():
    from harness.compare.layer0.preprocessing import split_preprocessing

    keras = _keras()
    inp = keras.Input((5, 7, 3), name="data")
    x = keras.layers.Rescaling(0.5, name="scale_in")(inp)
    m = keras.Model(inp, keras.layers.Conv2D(2, 3, name="conv1")(x))
    # the converter's form: {"keys": {key: {"layer", "index", "layout"}}, ...}: a mapped layer is the net's own
    object.__setattr__(m, "harness_mapping", {"format": 1, "keys": {
        "scale_in/s": {"layer": "scale_in", "index": 0, "layout": "nhwc"},
        "conv1/conv1": {"layer": "conv1", "index": 0, "layout": "nhwc"}}, "folded": {}})
    assert split_preprocessing(m) == (None, m)
    object.__setattr__(m, "harness_mapping", {"format": 1, "keys": {
        "conv1/conv1": {"layer": "conv1", "index": 0, "layout": "nhwc"}}, "folded": {}})
    prefix, rest = split_preprocessing(m)
    assert [lay.name for lay in prefix.layers][1:] == ["scale_in"]
    assert rest.harness_mapping["keys"] == {"conv1/conv1": {"layer": "conv1", "index": 0, "layout": "nhwc"}}


# ------------------------------------------------------------------------------------------------------------------
# 10, 12. scale order, scale value, a mean 0.001 off


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    d = tmp_path_factory.mktemp("jpg")
    out = []
    for i, (h, w) in enumerate(((15, 19), (15, 19))):
        p = d / f"p{i}.jpg"
        assert cv2.imwrite(str(p), _pixels(20 + i, h, w))
        out.append(str(p))
    return out


T = CaffeTransform(mean_values=MEAN, scale=0.017)


def _assert_first(paths, t, bug, fixed, code, input_hw=None):
    l0 = layer0(paths, t, bug, input_hw)
    assert not l0.passed and codes(l0)[0] == code, [(c.cause, c.confidence, c.explanation) for c in l0.diagnosis]
    assert l0.diagnosis[0].confidence >= 0.9
    assert layer0(paths, t, fixed, input_hw).passed
    return l0.diagnosis


def test_the_scale_before_the_mean_is_scale_order_and_the_mean_value_is_not_offered(jpegs):
    keras = _keras()
    for scale in (0.017, 0.00390625, 1 / 127.5):
        t = CaffeTransform(mean_values=MEAN, scale=scale)
        bug = side(flip_layer(), keras.layers.Rescaling(scale), norm(MEAN))
        # the fix as written: one Normalization (x - mean)*scale in place of the port's scaling and mean steps
        diag = _assert_first(jpegs, t, bug, side(flip_layer(), norm(MEAN, scale)), "preprocess_scale_order")
        assert "after the scaling" in diag[0].explanation
        assert "preprocess_mean_value" not in [c.cause for c in diag], diag


@pytest.mark.parametrize("keras_scale, words", [(1.0, "the scale is 1 where Caffe's is 0.017"),
                                                (0.017 ** 0.5, "0.130384")])
def test_a_wrong_scale_value_in_caffes_order_is_scale_value(jpegs, keras_scale, words):
    # (x - mean) * 1 (the 0.017 forgotten), (x - mean) * sqrt(0.017) (the std given where the variance goes)
    diag = _assert_first(jpegs, T, side(flip_layer(), norm(MEAN, keras_scale)), side(flip_layer(), norm(MEAN, 0.017)),
                         "preprocess_scale_value")
    assert words in diag[0].explanation and "the order is Caffe's" in diag[0].explanation, diag[0].explanation
    assert "variance=[3460.207612]" in diag[0].fix


def test_a_wrong_pycaffe_input_scale_is_scale_value_and_raw_scale_twice_is_scale_order(jpegs):
    keras = _keras()
    t = CaffeTransform.from_pycaffe(channel_swap=(2, 1, 0), raw_scale=255.0, mean_values=MEAN, input_scale=0.017)
    _assert_first(jpegs, t, side(flip_layer(), norm(MEAN)), side(flip_layer(), norm(MEAN, 0.017)),
                  "preprocess_scale_value", input_hw=(15, 19))
    t2 = CaffeTransform.from_pycaffe(channel_swap=(2, 1, 0), raw_scale=255.0, mean_values=MEAN)
    _assert_first(jpegs, t2, side(flip_layer(), keras.layers.Rescaling(255.0), norm(MEAN)),
                  side(flip_layer(), norm(MEAN)), "preprocess_scale_order", input_hw=(15, 19))


def test_a_mean_0_001_off_is_mean_value_not_a_scale_of_one(jpegs):
    t = CaffeTransform(mean_values=MEAN)
    off = tuple(v + 0.001 for v in MEAN)
    diag = _assert_first(jpegs, t, side(flip_layer(), norm(off)), side(flip_layer(), norm(MEAN)),
                         "preprocess_mean_value")
    assert "(104.001, 117.001, 123.001)" in diag[0].explanation, diag[0].explanation
    assert "0.999999" not in " ".join(c.explanation for c in diag)
    assert "mean=[104, 117, 123], variance=[1, 1, 1]" in diag[0].fix


def test_a_pycaffe_mean_is_printed_in_its_own_units(jpegs):
    keras = _keras()
    # pycaffe without raw_scale: load_image's [0, 1] pixels minus a [0, 1] mean; the port's mean 0.001 off
    t = CaffeTransform.from_pycaffe(channel_swap=(2, 1, 0), mean_values=(0.4, 0.45, 0.5))
    bug = side(flip_layer(), keras.layers.Rescaling(1 / 255), norm([0.401, 0.451, 0.501]))
    l0 = layer0(jpegs, t, bug, (15, 19))
    assert codes(l0)[0] == "preprocess_mean_value"
    assert "(0.401, 0.451, 0.501)" in l0.diagnosis[0].explanation, l0.diagnosis[0].explanation
    # the fix's one Normalization on the 0..255 pixels, in place of the port's scaling and mean steps
    fix = l0.diagnosis[0].fix
    assert "Normalization(mean=[102, 114.75, 127.5], variance=[65025]*C)" in fix, fix
    mean = np.array([102, 114.75, 127.5], np.float32)
    fixed = side(flip_layer(), keras.layers.Normalization(mean=mean, variance=np.full(3, 65025.0)))
    assert layer0(jpegs, t, fixed, (15, 19)).passed


# ------------------------------------------------------------------------------------------------------------------
# 11. pycaffe's set_mean resizes a mean image of another size

MEAN_IMG = np.random.default_rng(11).uniform(60, 180, (3, 5, 7)).astype(np.float32)
# python/caffe/io.py set_mean -> resize_image -> skimage.transform.resize(order=1, mode='constant'), measured with
# scikit-image 0.26.0 and SciPy 1.17.1 on MEAN_IMG: (index, value) and the float64 sum of the whole mean
SKIMAGE = {(3, 6, 9): ([((0, 0, 0), 72.94635772705078), ((1, 2, 3), 141.460693359375),
                        ((2, 5, 8), 134.61068725585938)], 18164.34312057495),
           (3, 3, 4): ([((0, 0, 0), 98.85101318359375), ((1, 2, 3), 111.9879150390625),
                        ((2, 2, 3), 157.1019287109375)], 4091.0668411254883)}


@pytest.mark.parametrize("shape", sorted(SKIMAGE))
def test_set_mean_resizes_as_pycaffe_with_scikit_image(shape):
    got = pycaffe_set_mean(MEAN_IMG, shape)
    assert got.shape == shape and got.dtype == np.float32
    points, total = SKIMAGE[shape]
    for idx, v in points:
        assert float(got[idx]) == pytest.approx(v, rel=2e-7, abs=0), idx
    assert float(got.astype(np.float64).sum()) == pytest.approx(total, rel=1e-7)
    # upsampled, the border reads zeros past the edge (mode='constant' -> ndimage grid-constant): darker than the
    # mean's own corner
    if shape == (3, 6, 9):
        assert got[0, 0, 0] < MEAN_IMG[0, 0, 0]


def test_set_mean_agrees_with_scikit_image_where_it_is_installed():
    pytest.importorskip("skimage")
    from skimage.transform import resize

    rng = np.random.default_rng(4)
    for (h, w), (oh, ow) in (((17, 23), (20, 28)), ((32, 40), (13, 17)), ((40, 40), (37, 29))):
        im = rng.uniform(0, 1, (h, w, 3)).astype(np.float32)
        from harness.reference.preprocess import skimage_resize_linear

        ref = resize(im, (oh, ow), order=1, mode="constant")
        assert np.max(np.abs(ref - skimage_resize_linear(im, (oh, ow)))) <= 1.2e-7


def test_pycaffe_mean_image_of_another_size_is_resized_not_refused(jpegs, tmp_path):
    keras = _keras()
    np.save(tmp_path / "mean.npy", MEAN_IMG)
    t = CaffeTransform.from_pycaffe(channel_swap=(2, 1, 0), raw_scale=255.0, mean_file=str(tmp_path / "mean.npy"))
    bgr = read_originals(jpegs, t)
    got = caffe_layer0(bgr, t, input_hw=(15, 19))
    m = pycaffe_set_mean(MEAN_IMG, (3, 15, 19))
    # caffe_in = img/255 (load_image) -> CHW -> channel_swap (back to B, G, R) -> *255 -> -= mean
    want = (cv2.imread(jpegs[0]).transpose(2, 0, 1).astype(np.float32) / np.float32(255) * np.float32(255)) - m
    assert np.array_equal(got[0], want)
    # a port subtracting the mean pixel (classify.py's mean.mean(1).mean(1)) is named, and the fix (the mean
    # resized as set_mean does) passes
    pix = MEAN_IMG.astype(np.float64).mean(axis=(1, 2))
    bug = side(flip_layer(), norm(pix), shape=(15, 19, 3))
    fixed = side(flip_layer(), norm(m.transpose(1, 2, 0), axis=(1, 2, 3)), shape=(15, 19, 3))
    diag = _assert_first(jpegs, t, bug, fixed, "preprocess_mean_image", input_hw=(15, 19))
    assert "pycaffe_set_mean(mean, (3, 15, 19))" in diag[0].fix, diag[0].fix


def test_set_mean_refusals_name_the_file_and_the_value():
    with pytest.raises(ImageError, match=r"m\.npy: mean shape \(1, 5, 7\) has 1 channel\(s\), the input 3"):
        pycaffe_set_mean(MEAN_IMG[:1], (3, 6, 9), "m.npy")
    with pytest.raises(ImageError, match=r"m\.npy: a constant mean image.*max - min = 0"):
        pycaffe_set_mean(np.full((3, 5, 7), 7.0, np.float32), (3, 6, 9), "m.npy")
    assert pycaffe_set_mean(MEAN_IMG, (3, 5, 7)) is not None  # the input's own size: as it is
    assert np.array_equal(pycaffe_set_mean(MEAN_IMG, (3, 5, 7)), MEAN_IMG)


def test_no_message_says_image_image(jpegs, tmp_path):
    bgr = read_originals(jpegs, CaffeTransform())
    names = [f"image {p!r}" for p in jpegs]
    for t, hw in ((CaffeTransform(mean_values=(1.0, 2.0)), None),
                  (CaffeTransform(mean_image=np.zeros((3, 4, 4), np.float32), mean_source="m.binaryproto"), None),
                  (CaffeTransform.from_pycaffe(channel_swap=(1, 0)), (15, 19))):
        with pytest.raises(ImageError) as e:
            caffe_layer0(bgr, t, input_hw=hw, names=names)
        assert "image image" not in str(e.value) and "p0.jpg" in str(e.value), str(e.value)
