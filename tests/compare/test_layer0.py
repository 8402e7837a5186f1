"""``check --images``: layer 0 (Caffe's preprocessing against the Keras side's) and then the net.

Real images are drawn at test time (gradients, a rectangle, a disc and seeded noise, written with OpenCV; H and W
differ, nothing is downloaded).  Every classic preprocessing bug is a Keras preprocessing port of its own; each gets
its cause at layer 0, and each fix text is applied (the port rewritten as the fix says) and re-run: layer 0 passes."""

from __future__ import annotations

import json

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from harness.cli import main  # noqa: E402
from harness.compare.layer0.preprocessing import LAYER0, KerasPreprocess, model_step, named_step, run_layer0  # noqa: E402
from harness.reference.preprocess import CaffeTransform, read_originals  # noqa: E402

MEAN = (104.0, 117.0, 123.0)


def draw(path, h: int, w: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) * 7) % 256], -1)
    img = img.astype(np.uint8)
    cv2.rectangle(img, (1, 1), (w // 2, h // 3), (20, 200, 90), -1)
    cv2.circle(img, (2 * w // 3, h // 2), max(2, min(h, w) // 4), (240, 30, 160), -1)
    img = np.clip(img.astype(int) + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
    assert cv2.imwrite(str(path), img)


def images(d, sizes=((17, 23), (17, 23)), seed=0) -> list[str]:
    d.mkdir(exist_ok=True)
    out = []
    for i, (h, w) in enumerate(sizes):
        p = d / f"img{i}.png"
        draw(p, h, w, seed + i)
        out.append(str(p))
    return out


# ------------------------------------------------------------------------------------------------------------------
# Keras preprocessing ports (NHWC RGB float in)


def _keras():
    import keras

    return keras


def flip_layer():
    """A weight-free custom layer reversing the channels (RGB -> BGR): the fix the channel-order cause names."""
    keras = _keras()

    class ChannelFlip(keras.layers.Layer):
        def call(self, x):
            return keras.ops.flip(x, axis=-1)

    return ChannelFlip()


def pre_model(*layers, shape=(None, None, 3)):
    keras = _keras()
    inp = keras.Input(shape)
    x = inp
    for lay in layers:
        x = lay(x)
    return keras.Model(inp, x)


def norm(mean, scale=1.0, axis=-1):
    """(x - mean) * scale as one Normalization: the form the fixes give."""
    keras = _keras()
    m = np.asarray(mean, np.float32)
    return keras.layers.Normalization(axis=axis, mean=m, variance=np.full_like(m, 1.0 / (scale * scale)))


def side(*layers, resize=None, shape=(None, None, 3)) -> KerasPreprocess:
    return KerasPreprocess([model_step(pre_model(*layers, shape=shape), "port")], resize=resize)


def layer0(paths, t, keras_side, input_hw=None):
    bgr = read_originals(paths, t)
    return run_layer0(bgr, [im[:, :, ::-1] for im in bgr], paths, t, keras_side, input_hw=input_hw)


def codes(l0) -> list[str]:
    return [c.cause for c in l0.diagnosis]


@pytest.fixture(scope="module")
def imgs(tmp_path_factory):
    return images(tmp_path_factory.mktemp("img"))


T_CROP = CaffeTransform(mean_values=MEAN, scale=0.017, crop_size=11)


def test_a_correct_port_passes_layer0(imgs):
    keras = _keras()
    good = side(flip_layer(), keras.layers.CenterCrop(11, 11), norm(MEAN, 0.017))
    l0 = layer0(imgs, T_CROP, good)
    assert l0.passed, l0.result.chained
    assert l0.diagnosis == [] and l0.caffe.shape == (2, 3, 11, 11)
    # the keras.applications 'caffe' convention is exactly Caffe's mean_value B,G,R = (103.939, 116.779, 123.68)
    t = CaffeTransform(mean_values=(103.939, 116.779, 123.68))
    assert layer0(imgs, t, KerasPreprocess([named_step("caffe")])).passed
    # and 'tf' is scale 1/127.5 with mean 127.5, RGB: pycaffe with no channel swap
    t_tf = CaffeTransform.from_pycaffe(raw_scale=255.0, mean_values=(127.5,) * 3, input_scale=1 / 127.5)
    assert layer0(imgs, t_tf, KerasPreprocess([named_step("tf")]), input_hw=(17, 23)).passed


def _assert_cause_and_fix(paths, t, bug: KerasPreprocess, fixed: KerasPreprocess, code: str, *words: str,
                          input_hw=None):
    l0 = layer0(paths, t, bug, input_hw)
    assert not l0.passed
    assert codes(l0)[0] == code, [(c.cause, c.confidence, c.explanation) for c in l0.diagnosis]
    top = l0.diagnosis[0]
    assert top.confidence >= 0.9
    for w in words:
        assert w in top.fix, top.fix
    assert layer0(paths, t, fixed, input_hw).passed
    return top


def test_bgr_vs_rgb_is_channel_order(imgs):
    keras = _keras()
    top = _assert_cause_and_fix(
        imgs, T_CROP, side(keras.layers.CenterCrop(11, 11), norm(MEAN, 0.017)),
        side(flip_layer(), keras.layers.CenterCrop(11, 11), norm(MEAN, 0.017)),
        "preprocess_channel_order", "x[..., ::-1]", "keras.ops.flip(x, axis=-1)")
    assert "R, G, B" in top.explanation


def test_an_rgb_pipeline_throughout_is_channel_order(imgs):
    # the image kept RGB and the mean given as R, G, B: every channel right, in the reverse order
    keras = _keras()
    top = _assert_cause_and_fix(
        imgs, T_CROP, side(keras.layers.CenterCrop(11, 11), norm(MEAN[::-1], 0.017)),
        side(flip_layer(), keras.layers.CenterCrop(11, 11), norm(MEAN, 0.017)),
        "preprocess_channel_order", "x[..., ::-1]", "B, G, R order (104, 117, 123)")
    assert "R, G, B throughout" in top.explanation


def test_mean_in_rgb_order_on_bgr_data_is_mean_order(imgs):
    keras = _keras()
    top = _assert_cause_and_fix(
        imgs, T_CROP, side(flip_layer(), keras.layers.CenterCrop(11, 11), norm(MEAN[::-1], 0.017)),
        side(flip_layer(), keras.layers.CenterCrop(11, 11), norm(MEAN, 0.017)),
        "preprocess_mean_order", "(104, 117, 123)")
    assert "(123, 117, 104)" in top.explanation


def test_mean_subtracted_after_scaling_is_scale_order(imgs):
    keras = _keras()
    bug = side(flip_layer(), keras.layers.CenterCrop(11, 11), keras.layers.Rescaling(0.017), norm(MEAN))
    top = _assert_cause_and_fix(imgs, T_CROP, bug,
                                side(flip_layer(), keras.layers.CenterCrop(11, 11), norm(MEAN, 0.017)),
                                "preprocess_scale_order", "(x - mean)*0.017", "variance=[3460.207612]")
    assert "after the scaling" in top.explanation
    # the fix's Normalization variance is 1/0.017**2
    assert 1 / 0.017 ** 2 == pytest.approx(3460.207612, rel=1e-9)


def test_hidden_input_scale_is_scale_value_naming_the_factor(imgs):
    # MobileNet-Caffe's deploy recipe: pycaffe raw_scale 255, mean B,G,R, input_scale 0.017; the port forgot 0.017
    keras = _keras()
    t = CaffeTransform.from_pycaffe(channel_swap=(2, 1, 0), raw_scale=255.0, mean_values=MEAN, input_scale=0.017)
    top = _assert_cause_and_fix(imgs, t, side(flip_layer(), norm(MEAN)), side(flip_layer(), norm(MEAN, 0.017)),
                                "preprocess_scale_value", "input_scale (0.017) after it", input_hw=(17, 23))
    assert "0.017" in top.explanation and "scale is 1" in top.explanation


def test_raw_scale_for_input_scale_confusion_is_scale_order(imgs):
    # the port treated [0, 255] pixels as load_image's [0, 1] and applied raw_scale 255 again: x*255 - mean
    keras = _keras()
    t = CaffeTransform.from_pycaffe(channel_swap=(2, 1, 0), raw_scale=255.0, mean_values=MEAN)
    bug = side(flip_layer(), keras.layers.Rescaling(255.0), norm(MEAN))
    top = _assert_cause_and_fix(imgs, t, bug, side(flip_layer(), norm(MEAN)), "preprocess_scale_order",
                                "raw_scale (255", input_hw=(17, 23))
    assert "255" in top.explanation


def test_mean_pixel_for_the_mean_image_is_mean_image(imgs, tmp_path):
    from harness.proto import caffe_pb2 as pb
    from harness.reference.preprocess import read_mean_binaryproto

    keras = _keras()
    rng = np.random.default_rng(3)
    mean_img = (rng.uniform(60, 180, (3, 17, 23))).astype(np.float32)
    b = pb.BlobProto()
    b.shape.dim.extend([1, 3, 17, 23])
    b.data.extend(mean_img.ravel().tolist())
    (tmp_path / "mean.binaryproto").write_bytes(b.SerializeToString())
    m = read_mean_binaryproto(tmp_path / "mean.binaryproto")
    t = CaffeTransform(mean_image=m, mean_source="mean.binaryproto", crop_size=11)
    pix = m.astype(np.float64).mean(axis=(1, 2))
    bug = side(flip_layer(), keras.layers.CenterCrop(11, 11), norm(pix))
    crop = m[:, 3:14, 6:17].transpose(1, 2, 0)  # h_off = (17 - 11)//2 = 3, w_off = (23 - 11)//2 = 6
    fixed = side(flip_layer(), keras.layers.CenterCrop(11, 11), norm(crop, axis=(1, 2, 3)))
    top = _assert_cause_and_fix(imgs, t, bug, fixed, "preprocess_mean_image", "mean[:, 3:14, 6:17]",
                                "Normalization(axis=(1, 2, 3)")
    assert "mean.binaryproto" in top.explanation


def test_top_left_crop_is_crop(imgs):
    keras = _keras()

    class TopLeft(keras.layers.Layer):
        def call(self, x):
            return x[:, :11, :11, :]

    top = _assert_cause_and_fix(imgs, T_CROP, side(flip_layer(), TopLeft(), norm(MEAN, 0.017)),
                                side(flip_layer(), keras.layers.CenterCrop(11, 11), norm(MEAN, 0.017)),
                                "preprocess_crop", "keras.layers.CenterCrop(11, 11)", "(3, 6)")
    assert "top-left" in top.explanation


def test_resize_instead_of_crop_is_crop(imgs):
    keras = _keras()
    top = _assert_cause_and_fix(imgs, T_CROP, side(flip_layer(), keras.layers.Resizing(11, 11), norm(MEAN, 0.017)),
                                side(flip_layer(), keras.layers.CenterCrop(11, 11), norm(MEAN, 0.017)),
                                "preprocess_crop", "CenterCrop(11, 11)")
    assert "resizes the whole image" in top.explanation


T_RESIZE = CaffeTransform(mean_values=MEAN, new_height=13, new_width=19, crop_size=11, color=True)


def test_resize_interpolation_is_resize(imgs):
    keras = _keras()
    bug = side(flip_layer(), keras.layers.Resizing(13, 19, interpolation="nearest"), keras.layers.CenterCrop(11, 11),
               norm(MEAN))
    fixed = side(flip_layer(), keras.layers.CenterCrop(11, 11), norm(MEAN), resize=(13, 19))
    top = _assert_cause_and_fix(imgs, T_RESIZE, bug, fixed, "preprocess_resize", "cv2.resize(img, (19, 13))",
                                "--keras-resize 13,19")
    assert "nearest" in top.explanation
    # Keras' own bilinear resize is not Caffe's (float, not 8-bit fixed point): also named, not passed
    near = layer0(imgs, T_RESIZE, side(flip_layer(), keras.layers.Resizing(13, 19), keras.layers.CenterCrop(11, 11),
                                       norm(MEAN)))
    assert not near.passed and codes(near)[0] == "preprocess_resize" and "keras-bilinear" in \
        near.diagnosis[0].explanation


def test_missing_resize_before_the_crop_is_resize(imgs):
    keras = _keras()
    bug = side(flip_layer(), keras.layers.CenterCrop(11, 11), norm(MEAN))
    fixed = side(flip_layer(), keras.layers.CenterCrop(11, 11), norm(MEAN), resize=(13, 19))
    top = _assert_cause_and_fix(imgs, T_RESIZE, bug, fixed, "preprocess_resize", "--keras-resize 13,19")
    assert "does not resize" in top.explanation


def test_no_crop_at_all_is_a_crop_cause_by_shape(imgs):
    l0 = layer0(imgs, T_CROP, side(flip_layer(), norm(MEAN, 0.017)))
    assert not l0.passed and codes(l0) == ["preprocess_crop"]
    assert "CenterCrop(11, 11)" in l0.diagnosis[0].fix and "17x23" in l0.diagnosis[0].explanation
    keras = _keras()
    assert layer0(imgs, T_CROP, side(flip_layer(), keras.layers.CenterCrop(11, 11), norm(MEAN, 0.017))).passed


# ------------------------------------------------------------------------------------------------------------------
# The command line: check --images

TRAIN_VAL = """
name: "tiny"
layer { name: "data" type: "ImageData" top: "data" top: "label" include { phase: TEST }
  transform_param { crop_size: 11 mean_value: 103.939 mean_value: 116.779 mean_value: 123.68 scale: 0.017 }
  image_data_param { source: "list.txt" } }
layer { name: "data" type: "ImageData" top: "data" top: "label" include { phase: TRAIN }
  transform_param { crop_size: 11 mirror: true } image_data_param { source: "train.txt" } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "conv1" bottom: "label" top: "loss" include { phase: TRAIN } }
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The net, its weights, a Keras port (optionally with a leading Rescaling) and a crop preprocessing model."""
    keras = _keras()
    d = tmp_path_factory.mktemp("cli")
    (d / "tv.prototxt").write_text(TRAIN_VAL)
    rng = np.random.default_rng(7)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    np.savez(d / "w.npz", **{"conv1/0": w, "conv1/1": b})
    for name, lead in (("port", []), ("port_scaled", [keras.layers.Rescaling(0.017)])):
        inp = keras.Input((11, 11, 3))
        x = inp
        for lay in lead:
            x = lay(x)
        conv = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")
        x = conv(x)
        conv.set_weights([w.transpose(2, 3, 1, 0), b])
        keras.Model(inp, x).save(d / f"{name}.keras")
    pre_model(keras.layers.CenterCrop(11, 11)).save(d / "crop.keras")
    images(d / "img", sizes=((17, 23), (19, 14)))
    return d


def _check(d, *extra, json_out=True):
    argv = ["check", str(d / "tv.prototxt"), "--weights", str(d / "w.npz"), "--images", str(d / "img"),
            "--no-table", *extra]
    out = d / "r.json"
    if out.exists():
        out.unlink()
    if json_out:
        argv += ["--json", str(out)]
    rc = main(argv)
    return rc, (json.loads(out.read_text()) if json_out and out.exists() else None)


def test_cli_images_equivalent_with_the_preprocessing_in_the_model(files, capsys):
    # Keras side: preprocess_input('caffe') (flip + ImageNet mean), a CenterCrop model, then the port's own leading
    # Rescaling(0.017): exactly Caffe's (x - mean) * 0.017 of the centre crop
    rc, rep = _check(files, "--keras", str(files / "port_scaled.keras"), "--keras-preprocess", "caffe",
                     "--keras-preprocess-model", str(files / "crop.keras"))
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    assert rep["equivalent"] and rep["layers"][0]["caffe_layer"] == LAYER0
    assert rep["layers"][0]["chained"]["passed"] and rep["layers"][0]["matched_by"] == "preprocess"
    assert [lr["caffe_layer"] for lr in rep["layers"][1:]] == ["relu1"]  # conv1 + relu1, one fused Conv2D
    pre = rep["preprocess"]
    assert pre["passed"] and pre["shape"] == [2, 3, 11, 11] and pre["caffe_route"] == "data_transformer"
    assert pre["images"][0].endswith("img0.png") and "Rescaling" in pre["keras"]
    assert rep["artefact"] == {"kind": "keras", "path": str(files / "port_scaled.keras")}


def test_cli_images_a_hidden_scale_is_layer0_first_divergence(files, capsys):
    rc, rep = _check(files, "--keras", str(files / "port.keras"), "--keras-preprocess", "caffe",
                     "--keras-preprocess-model", str(files / "crop.keras"))
    out = capsys.readouterr().out
    assert rc == 1
    fd = rep["first_divergence"]
    assert fd["caffe_layer"] == LAYER0 and fd["mode"] == "preprocess"
    assert fd["diagnosis"][0]["cause"] == "preprocess_scale_value"  # (x - mean)*1 for (x - mean)*0.017
    assert "0.017" in fd["diagnosis"][0]["explanation"]
    assert "First divergent layer: Caffe 'layer0:preprocess'" in out and "preprocess_scale_value" in out
    # the net itself is right: isolated (fed Caffe's layer 0) passes; chained (fed the Keras side's layer 0) adds no
    # error of its own to what it received: "carried", and no other divergence is reported
    conv = rep["layers"][1]
    assert conv["isolated"]["passed"] and conv["chained"]["passed"]
    assert conv["chained"]["propagated_max_abs"] > 1.0 and rep["divergences"] == []


def test_cli_images_pycaffe_route(files, capsys):
    # pycaffe: channel_swap 2,1,0, raw_scale 255, mean B,G,R, input_scale 0.017 == the crop-free Keras side on a
    # deploy net of the image size
    keras = _keras()
    d = files / "pyc"
    d.mkdir()
    (d / "deploy.prototxt").write_text(
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 17 dim: 23 } } }\n'
        'layer { name: "relu" type: "ReLU" bottom: "data" top: "r" }\n')
    images(d / "img", sizes=((17, 23), (17, 23)))
    inp = keras.Input((17, 23, 3))
    keras.Model(inp, keras.layers.ReLU(name="relu")(inp)).save(d / "relu.keras")
    argv = ["check", str(d / "deploy.prototxt"), "--images", str(d / "img" / "*.png"), "--keras",
            str(d / "relu.keras"), "--channel-swap", "2,1,0", "--raw-scale", "255", "--mean-value", "104,117,123",
            "--input-scale", "0.017", "--keras-preprocess", "caffe", "--no-table", "--json", str(d / "r.json")]
    rc = main(argv)
    rep = json.loads((d / "r.json").read_text())
    assert rc == 1 and rep["preprocess"]["caffe_route"] == "pycaffe"
    # preprocess_input('caffe') subtracts (103.939, 116.779, 123.68) and never multiplies by 0.017
    assert rep["first_divergence"]["diagnosis"][0]["cause"] == "preprocess_scale_order"


# ------------------------------------------------------------------------------------------------------------------
# Bad input: exit 2, one line naming the file and the value, nothing written


def _bad(files, tmp_path, capsys, *extra, prototxt=None, imgs=None):
    out = tmp_path / "never.json"
    argv = ["check", str(prototxt or files / "tv.prototxt"), "--weights", str(files / "w.npz"), "--images",
            str(imgs or files / "img"), "--keras", str(files / "port_scaled.keras"), "--json", str(out), *extra]
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not out.exists()
    msgs = [line for line in err if line.startswith("caffe-harness: error:")]
    assert len(msgs) == 1, err
    return msgs[0]


def test_bad_a_non_image_file(files, tmp_path, capsys):
    d = tmp_path / "imgs"
    images(d, sizes=((17, 23),))
    (d / "notes.png").write_text("not an image at all")
    msg = _bad(files, tmp_path, capsys, imgs=d)
    assert "notes.png" in msg and "cannot decode" in msg


def test_bad_an_image_smaller_than_crop_size(files, tmp_path, capsys):
    d = tmp_path / "small"
    images(d, sizes=((17, 23), (9, 30)))
    msg = _bad(files, tmp_path, capsys, imgs=d)
    assert "img1.png" in msg and "9x30" in msg and "crop_size 11" in msg


def _mean_net(tmp_path, shape) -> str:
    from harness.proto import caffe_pb2 as pb

    b = pb.BlobProto()
    b.num, b.channels, b.height, b.width = 1, *shape
    b.data.extend([100.0] * int(np.prod(shape)))
    (tmp_path / "mean.binaryproto").write_bytes(b.SerializeToString())
    p = tmp_path / "tv_mean.prototxt"
    p.write_text(TRAIN_VAL.replace("mean_value: 103.939 mean_value: 116.779 mean_value: 123.68",
                                   'mean_file: "mean.binaryproto"'))
    return str(p)


@pytest.mark.parametrize("shape, value", [((3, 16, 23), "(3, 16, 23)"), ((1, 17, 23), "(1, 17, 23)")])
def test_bad_a_mean_file_of_the_wrong_shape_or_channels(files, tmp_path, capsys, shape, value):
    msg = _bad(files, tmp_path, capsys, prototxt=_mean_net(tmp_path, shape))
    assert "mean.binaryproto" in msg and value in msg and "(3, 17, 23)" in msg


def test_bad_a_mean_file_that_is_not_a_blobproto(files, tmp_path, capsys):
    p = _mean_net(tmp_path, (3, 17, 23))
    (tmp_path / "mean.binaryproto").write_bytes(b"\x0a\xff\xff\xff\xff\xff garbage")
    msg = _bad(files, tmp_path, capsys, prototxt=p)
    assert "mean.binaryproto" in msg and "BlobProto" in msg


def test_bad_a_pycaffe_mean_with_the_wrong_channel_count(files, tmp_path, capsys):
    np.save(tmp_path / "m.npy", np.array([1.0, 2.0], np.float32))
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 17 '
                      'dim: 23 } } }\nlayer { name: "relu" type: "ReLU" bottom: "data" top: "r" }\n')
    d = tmp_path / "imgs"
    images(d, sizes=((17, 23),))
    msg = _bad(files, tmp_path, capsys, "--raw-scale", "255", "--mean-file", str(tmp_path / "m.npy"),
               prototxt=deploy, imgs=d)
    assert "m.npy" in msg and "2 mean values for 3 channels" in msg
    # a train_val net states no input shape: the pycaffe route cannot size the Transformer
    msg = _bad(files, tmp_path, capsys, "--raw-scale", "255")
    assert "pycaffe route" in msg and "deploy prototxt" in msg


def test_bad_images_that_do_not_fit_the_net_input(files, tmp_path, capsys):
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 17 '
                      'dim: 23 } } }\nlayer { name: "relu" type: "ReLU" bottom: "data" top: "r" }\n')
    msg = _bad(files, tmp_path, capsys, "--transform-prototxt", str(files / "tv.prototxt"), prototxt=deploy)
    assert "img0.png" in msg and "preprocessed to 11x11" in msg and "net input is 17x23" in msg


def test_bad_flags(files, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["check", str(files / "tv.prototxt"), "--keras-preprocess", "caffe", "--json", str(out)])
    assert rc == 2 and "--keras-preprocess needs --images" in capsys.readouterr().err and not out.exists()
    assert "give one" in _bad(files, tmp_path, capsys, "--input", "data=x.npy")
    assert "two preprocessing routes" in _bad(files, tmp_path, capsys, "--raw-scale", "255",
                                              "--transform-prototxt", str(files / "tv.prototxt"))
    assert "not a permutation" in _bad(files, tmp_path, capsys, "--channel-swap", "0,0,1")
    (tmp_path / "empty").mkdir()
    assert "no image files" in _bad(files, tmp_path, capsys, imgs=tmp_path / "empty")


def test_bad_no_opencv_names_the_extra(files, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cv2", None)
    msg = _bad(files, tmp_path, capsys)
    assert "--images needs OpenCV" in msg and "caffe-keras-harness[images]" in msg


def test_split_preprocessing_takes_the_leading_weight_free_layers():
    from harness.compare.layer0.preprocessing import split_preprocessing

    keras = _keras()
    inp = keras.Input((17, 23, 3))
    x = flip_layer()(inp)
    x = keras.layers.CenterCrop(11, 11)(x)
    x = norm(MEAN, 0.017)(x)
    x = keras.layers.Conv2D(4, 3, name="conv1")(x)
    m = keras.Model(inp, keras.layers.ReLU(name="relu1")(x))
    prefix, rest = split_preprocessing(m)
    assert [type(lay).__name__ for lay in prefix.layers[1:]] == ["ChannelFlip", "CenterCrop", "Normalization"]
    assert [lay.name for lay in rest.layers if type(lay).__name__ != "InputLayer"] == ["conv1", "relu1"]
    xs = np.random.default_rng(1).uniform(0, 255, (2, 17, 23, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(rest(prefix(xs))), np.asarray(m(xs)), rtol=0, atol=1e-5)
    # a model that starts with its first computing layer has no preprocessing to split
    inp2 = keras.Input((11, 11, 3))
    m2 = keras.Model(inp2, keras.layers.Conv2D(4, 3)(inp2))
    assert split_preprocessing(m2) == (None, m2)
    # a layer named like a Caffe layer is the net's own (a Caffe Power layer ported as Rescaling), never split off
    inp3 = keras.Input((11, 11, 3))
    m3 = keras.Model(inp3, keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(0.5, name="power1")(inp3)))
    assert split_preprocessing(m3, ["data", "power1", "conv1"]) == (None, m3)
    assert split_preprocessing(m3)[0] is not None


def test_cli_images_with_the_converted_model(files, capsys):
    # no --keras: the harness's own conversion (no preprocessing inside) behind the Keras side's preprocessing
    rc, rep = _check(files, "--keras-preprocess", "caffe", "--keras-preprocess-model", str(files / "crop.keras"))
    assert rc == 1 and rep["artefact"]["kind"] == "converted"
    assert rep["first_divergence"]["diagnosis"][0]["cause"] == "preprocess_scale_value"
    assert all(lr["isolated"]["passed"] for lr in rep["layers"][1:])


def test_layer0_batch_gives_both_sides_as_the_check_does(imgs):
    from harness.compare.layer0.preprocessing import layer0_batch
    from harness.reference.preprocess import load_batch

    keras = _keras()
    good = side(flip_layer(), keras.layers.CenterCrop(11, 11), norm(MEAN, 0.017))
    caffe, kx = layer0_batch(imgs, T_CROP, good)
    l0 = layer0(imgs, T_CROP, good)
    assert np.array_equal(caffe, l0.caffe) and np.array_equal(kx, l0.keras)
    assert np.array_equal(caffe, load_batch(imgs, T_CROP))
    # hand check of one element: image 0, channel G, crop origin (3, 6): (G - 117) * 0.017
    g = cv2.imread(imgs[0])[3, 6, 1]
    assert caffe[0, 1, 0, 0] == pytest.approx((float(g) - 117.0) * 0.017, abs=1e-5)


def test_mean_image_with_its_channels_reversed_is_mean_order(imgs):
    keras = _keras()
    rng = np.random.default_rng(5)
    m = rng.uniform(60, 180, (3, 17, 23)).astype(np.float32)
    t = CaffeTransform(mean_image=m, mean_source="mean.binaryproto")
    bug = side(flip_layer(), norm(m[::-1].transpose(1, 2, 0), axis=(1, 2, 3)), shape=(17, 23, 3))
    fixed = side(flip_layer(), norm(m.transpose(1, 2, 0), axis=(1, 2, 3)), shape=(17, 23, 3))
    _assert_cause_and_fix(imgs, t, bug, fixed, "preprocess_mean_order", "B, G, R channel order")


def test_centre_offset_rounded_up_is_crop(imgs):
    # crop 10 of 17x23: Caffe's (17 - 10)/2 = 3, (23 - 10)/2 = 6; rounded up: 4, 7
    keras = _keras()

    class Rounded(keras.layers.Layer):
        def call(self, x):
            return x[:, 4:14, 7:17, :]

    t = CaffeTransform(mean_values=MEAN, crop_size=10)
    top = _assert_cause_and_fix(imgs, t, side(flip_layer(), Rounded(), norm(MEAN)),
                                side(flip_layer(), keras.layers.CenterCrop(10, 10), norm(MEAN)),
                                "preprocess_crop", "(3, 6)", "CenterCrop(10, 10)")
    assert "rounded up" in top.explanation


def test_another_scale_without_a_mean_is_scale_value(imgs):
    # Caffe: scale 1/256 (0.00390625), no mean; the port divides by 255
    keras = _keras()
    t = CaffeTransform(scale=0.00390625)
    top = _assert_cause_and_fix(imgs, t, side(flip_layer(), keras.layers.Rescaling(1 / 255)),
                                side(flip_layer(), norm([0.0, 0.0, 0.0], 0.00390625)),
                                "preprocess_scale_value", "variance=[65536]*C")
    assert "1/255" in top.explanation and "0.00390625" in top.explanation


# ------------------------------------------------------------------------------------------------------------------
# the Keras side is the one that reverses R, G, B (corpus21 gap G6): pycaffe without a channel swap feeds the net
# R, G, B; a port with its own leading flip layer is told so, and the fix removes that layer by name (no second flip)

MEAN_RGB = (127.5, 120.0, 110.0)  # R, G, B
T_RGB = CaffeTransform.from_pycaffe(raw_scale=255.0, mean_values=MEAN_RGB, input_scale=0.0078125)  # no channel_swap


@pytest.fixture(scope="module")
def imgs_rev(tmp_path_factory):
    return images(tmp_path_factory.mktemp("img_rev"), sizes=((13, 19), (13, 19)), seed=5)


def test_a_port_that_reverses_the_channels_is_told_to_remove_its_layer(imgs_rev):
    flip = flip_layer()
    bug = side(flip, norm(MEAN_RGB, 0.0078125))
    l0 = layer0(imgs_rev, T_RGB, bug, input_hw=(13, 19))
    assert not l0.passed and codes(l0)[0] == "preprocess_channel_order", [(c.cause, c.explanation) for c in l0.diagnosis]
    top = l0.diagnosis[0]
    assert "the Keras side reverses R, G, B" in top.explanation and "channel_swap" not in top.explanation, top.explanation
    assert f"remove the port's channel-reversing layer {flip.name!r}" in top.fix, top.fix
    assert "keras.ops.flip" not in top.fix and "x[..., ::-1]" not in top.fix, top.fix
    # the fix applied: the same pipeline without that layer
    assert layer0(imgs_rev, T_RGB, side(norm(MEAN_RGB, 0.0078125)), input_hw=(13, 19)).passed


def test_with_a_channel_swap_the_keras_side_still_gets_the_flip(imgs_rev):
    t = CaffeTransform.from_pycaffe(channel_swap=(2, 1, 0), raw_scale=255.0, mean_values=MEAN_RGB[::-1],
                                    input_scale=0.0078125)
    l0 = layer0(imgs_rev, t, side(norm(MEAN_RGB[::-1], 0.0078125)), input_hw=(13, 19))
    top = l0.diagnosis[0]
    assert top.cause == "preprocess_channel_order" and "keras.ops.flip(x, axis=-1)" in top.fix, top.fix
    assert layer0(imgs_rev, t, side(flip_layer(), norm(MEAN_RGB[::-1], 0.0078125)), input_hw=(13, 19)).passed
