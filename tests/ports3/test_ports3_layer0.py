"""Held-out layer-0 corpus: ``check --images`` on image files against Keras preprocessing ports.

(a) correct pipelines pass (exit 0, layer 0 passed, no diagnosis); (b) each classic bug alone fails at layer 0
(``first_divergence`` is ``layer0:preprocess``) with its cause code first, and the port rewritten as the fix text
says passes layer 0; (c) two bugs at once: one of them is named first, and fixing as told, one cause after the other,
ends in a pass; (d) bad inputs exit 2 with one line naming the file and the value, writing nothing.

Setups (see _ports3.py for how each file is drawn / written):

* ``A``: ImageData TEST ``transform_param { scale: 0.017 mean_value: 104 117 123 crop_size: 10 }``, ``new_height:
  13 new_width: 17``; three files (JPEG 20x28, PNG 31x23, grayscale PNG 16x19); deploy 3x3x10x10; the Keras side
  resizes with OpenCV (``--keras-resize 13,17``) and uses its own RGB -> BGR layer (``--custom-objects``).
* ``R``: as A but every file 20x28 (for ports that resize inside Keras).
* ``B``: ImageData, ``new_height: 12 new_width: 16``, a non-constant 3x12x16 ``mean_file`` (BlobProto), crop 10.
* ``C``: pycaffe's Transformer (``--channel-swap 2,1,0 --raw-scale 255 --mean-value 104,117,123 --input-scale
  0.017``) on 12x14 files (a JPEG and a grayscale PNG), deploy 2x3x12x14.
* ``D``: Data layer ``transform_param { mean_value: 103.939 116.779 123.68 crop_size: 12 force_color: true }`` on
  15x19 files, the Keras side ``--keras-preprocess caffe`` (keras.applications' convention).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from _ports3 import (BGR_MEAN, CUSTOM, KERAS_CAFFE_MEAN, SCALE, L, bgr, causes, deploy_text, diagnosis,
                     keras_port, mean_image, net_weights, norm, preprocess_model, rgb, run_check, train_val_text,
                     transform_block, write_binaryproto, write_images)

VAR = [1.0 / SCALE**2] * 3  # Normalization's variance for a * 0.017 scale
ONE = [1.0, 1.0, 1.0]


# ----------------------------------------------------------------------------------------------- setups

def _setup_a(root: Path, same_size: bool) -> dict:
    root.mkdir()
    specs = ([("a.jpg", 20, 28, False), ("b.png", 20, 28, False), ("c.png", 20, 28, True)] if same_size else
             [("a.jpg", 20, 28, False), ("b.png", 31, 23, False), ("c.png", 16, 19, True)])
    imgs = write_images(root / "imgs", specs)
    (root / "notes.txt").write_text("not an image, not in the folder")
    tv = root / "train_val.prototxt"
    tv.write_text(train_val_text(transform_block(scale=SCALE, mean_value=BGR_MEAN, crop_size=10), new_hw=(13, 17),
                                 batch=3))
    dep = root / "deploy.prototxt"
    dep.write_text(deploy_text(3, 3, 10, 10))
    w = net_weights(3, 10, 10)
    np.savez(root / "w.npz", **w)
    return dict(root=root, w=w, net_hw=(10, 10), in_hw=(13, 17),
                args=[str(dep), "--weights", str(root / "w.npz"), "--images", str(imgs), "--transform-prototxt",
                      str(tv), *CUSTOM])


@pytest.fixture(scope="module")
def setup_a(tmp_path_factory):
    return _setup_a(tmp_path_factory.mktemp("p3") / "A", same_size=False)


@pytest.fixture(scope="module")
def setup_r(tmp_path_factory):
    return _setup_a(tmp_path_factory.mktemp("p3") / "R", same_size=True)


@pytest.fixture(scope="module")
def setup_b(tmp_path_factory):
    root = tmp_path_factory.mktemp("p3") / "B"
    root.mkdir()
    imgs = write_images(root / "imgs", [("a.png", 18, 25, False), ("b.jpg", 27, 21, False)])
    mean = mean_image(3, 12, 16)
    write_binaryproto(root / "mean.binaryproto", mean)
    tv = root / "train_val.prototxt"
    tv.write_text(train_val_text(transform_block(mean_file=str(root / "mean.binaryproto"), crop_size=10),
                                 new_hw=(12, 16)))
    dep = root / "deploy.prototxt"
    dep.write_text(deploy_text(2, 3, 10, 10))
    w = net_weights(3, 10, 10, seed=5)
    np.savez(root / "w.npz", **w)
    return dict(root=root, w=w, net_hw=(10, 10), in_hw=(12, 16), mean=mean, tv=tv, imgs=imgs,
                args=[str(dep), "--weights", str(root / "w.npz"), "--images", str(imgs), "--transform-prototxt",
                      str(tv), "--keras-resize", "12,16", *CUSTOM])


@pytest.fixture(scope="module")
def setup_c(tmp_path_factory):
    root = tmp_path_factory.mktemp("p3") / "C"
    root.mkdir()
    imgs = write_images(root / "imgs", [("a.jpg", 12, 14, False), ("b.png", 12, 14, True)])
    dep = root / "deploy.prototxt"
    dep.write_text(deploy_text(2, 3, 12, 14))
    w = net_weights(3, 12, 14, seed=9)
    np.savez(root / "w.npz", **w)
    return dict(root=root, w=w, net_hw=(12, 14), in_hw=(12, 14),
                args=[str(dep), "--weights", str(root / "w.npz"), "--images", str(imgs), "--channel-swap", "2,1,0",
                      "--raw-scale", "255", "--mean-value", "104,117,123", "--input-scale", "0.017", *CUSTOM])


@pytest.fixture(scope="module")
def setup_d(tmp_path_factory):
    root = tmp_path_factory.mktemp("p3") / "D"
    root.mkdir()
    imgs = write_images(root / "imgs", [("a.jpg", 15, 19, False), ("b.png", 15, 19, False), ("c.png", 15, 19, True)])
    tv = root / "train_val.prototxt"
    tv.write_text(train_val_text(transform_block(mean_value=KERAS_CAFFE_MEAN, crop_size=12, extra="force_color: true"),
                                 kind="Data", batch=3))
    dep = root / "deploy.prototxt"
    dep.write_text(deploy_text(3, 3, 12, 12))
    w = net_weights(3, 12, 12, seed=2)
    np.savez(root / "w.npz", **w)
    return dict(root=root, w=w, net_hw=(12, 12), in_hw=(15, 19), tv=tv, dep=dep, imgs=imgs,
                args=[str(dep), "--weights", str(root / "w.npz"), "--images", str(imgs), "--transform-prototxt",
                      str(tv), *CUSTOM])


# ----------------------------------------------------------------------------------------------- running a port

def _check(setup, tmp_path, capsys, pre=(), in_hw=None, extra=(), prep=None):
    """Write the port (``pre`` inside the model; ``prep`` as a --keras-preprocess-model) and run the check."""
    in_hw = in_hw or setup["in_hw"]
    model = keras_port(tmp_path / "port.keras", in_hw, setup["net_hw"], setup["w"], pre=[f() for f in pre])
    args = [*setup["args"], "--keras", str(model), *extra]
    if prep is not None:
        args += ["--keras-preprocess-model", str(preprocess_model(tmp_path / "prep.keras", [f() for f in prep]))]
    rc, report, out, err = run_check(args, tmp_path, capsys)
    assert report is not None, (rc, out, err)
    return rc, report, out + err


def _assert_passes(rc, report, text):
    assert report is not None, (rc, text)
    pre = report["preprocess"]
    assert pre["passed"] is True, (diagnosis(report), text)
    assert pre["diagnosis"] == []
    assert report["layers"][0]["caffe_layer"] == "layer0:preprocess"
    assert report["layers"][0]["chained"]["passed"] is True
    assert rc == 0 and report["equivalent"] is True, text


def _assert_named(rc, report, text, cause):
    assert rc == 1, text
    assert report["preprocess"]["passed"] is False
    assert report["first_divergence"]["caffe_layer"] == "layer0:preprocess"
    assert report["first_divergence"]["mode"] == "preprocess"
    got = causes(report)
    assert got and got[0] == cause, (got, text)
    # the net itself is right: fed Caffe's own inputs (isolated) every net layer agrees -- no second false alarm
    for row in report["layers"][1:]:
        assert row["isolated"] is None or row["isolated"]["passed"] is True, (row["caffe_layer"], text)
    fix = diagnosis(report)[0]["fix"]
    assert fix and len(fix) > 20
    return fix


def _norm_from_fix(fix: str):
    """The ``keras.layers.Normalization(mean=[...], variance=[...])`` a fix text spells out, as a layer factory."""
    m = re.search(r"Normalization\(mean=\[([^\]]*)\],\s*variance=\[([^\]]*)\]", fix)
    assert m, fix
    mean = [float(v) for v in m.group(1).split(",")]
    var_text = m.group(2).replace("...", "")
    var = [float(v) for v in var_text.split(",") if v.strip()]
    if "*C" in fix[m.end():m.end() + 4] or len(var) == 1:
        var = var * len(mean)
    return mean, var


def _with_fix_norm(fix, before=(), after=()):
    mean, var = _norm_from_fix(fix)
    return [*before, lambda: norm(mean, var, name="norm_fixed"), *after]


def _crop10():
    return L.CenterCrop(10, 10, name="crop")


# ----------------------------------------------------------------------------------------------- (a) correct ports

def test_a_normalization_with_the_scale_as_variance(setup_a, tmp_path, capsys):
    rc, rep, text = _check(setup_a, tmp_path, capsys, [bgr, lambda: norm(BGR_MEAN, VAR), _crop10],
                           extra=["--keras-resize", "13,17"])
    _assert_passes(rc, rep, text)
    assert rep["preprocess"]["shape"] == [3, 3, 10, 10]
    assert rep["preprocess"]["caffe_route"] == "data_transformer"
    assert len(rep["preprocess"]["images"]) == 3  # notes.txt sits beside the folder, not in it


def test_a_rescaling_after_the_mean_done_right(setup_a, tmp_path, capsys):
    pre = [bgr, lambda: norm(BGR_MEAN, ONE), lambda: L.Rescaling(SCALE, name="scale"), _crop10]
    _assert_passes(*_check(setup_a, tmp_path, capsys, pre, extra=["--keras-resize", "13,17"]))


def test_a_first_layers_rescaling_then_normalization_of_the_scaled_mean(setup_a, tmp_path, capsys):
    """x*0.017 - m*0.017 == (x - m)*0.017 up to float32 rounding: a correct port, written scale-first."""
    scaled = [v * SCALE for v in BGR_MEAN]
    pre = [bgr, lambda: L.Rescaling(SCALE, name="scale"), lambda: norm(scaled, ONE), _crop10]
    _assert_passes(*_check(setup_a, tmp_path, capsys, pre, extra=["--keras-resize", "13,17"]))


def test_a_separate_preprocessing_model_with_rescaling_offsets(setup_a, tmp_path, capsys):
    prep = [bgr, lambda: L.Rescaling(1.0, offset=[-v for v in BGR_MEAN]), lambda: L.Rescaling(SCALE),
            lambda: L.CenterCrop(10, 10)]
    _assert_passes(*_check(setup_a, tmp_path, capsys, (), in_hw=(10, 10), prep=prep,
                           extra=["--keras-resize", "13,17"]))


def test_b_mean_image_subtracted_per_pixel_then_cropped(setup_b, tmp_path, capsys):
    m = setup_b["mean"].transpose(1, 2, 0)  # (12, 16, 3) B, G, R
    pre = [bgr, lambda: L.Normalization(axis=(1, 2, 3), mean=m, variance=np.ones_like(m)), _crop10]
    _assert_passes(*_check(setup_b, tmp_path, capsys, pre))


def test_b_cropped_then_the_mean_image_cropped_at_the_same_offsets(setup_b, tmp_path, capsys):
    m = setup_b["mean"].transpose(1, 2, 0)[1:11, 3:13]  # h_off = (12-10)/2 = 1, w_off = (16-10)/2 = 3
    pre = [bgr, _crop10, lambda: L.Normalization(axis=(1, 2, 3), mean=m, variance=np.ones_like(m))]
    _assert_passes(*_check(setup_b, tmp_path, capsys, pre))


def test_b_mean_file_in_the_blobshape_layout(setup_b, tmp_path, capsys):
    """The newer BlobProto layout (shape { dim: 1 dim: 3 dim: 12 dim: 16 }) reads as the legacy one does."""
    write_binaryproto(tmp_path / "mean2.binaryproto", setup_b["mean"], legacy=False)
    tv = tmp_path / "tv.prototxt"
    tv.write_text(setup_b["tv"].read_text().replace(str(setup_b["root"] / "mean.binaryproto"),
                                                    str(tmp_path / "mean2.binaryproto")))
    m = setup_b["mean"].transpose(1, 2, 0)
    pre = [bgr, lambda: L.Normalization(axis=(1, 2, 3), mean=m, variance=np.ones_like(m)), _crop10]
    _assert_passes(*_check(setup_b, tmp_path, capsys, pre, extra=["--transform-prototxt", str(tv)]))


def test_c_pycaffe_transformer_reproduced_in_keras(setup_c, tmp_path, capsys):
    pre = [bgr, lambda: norm(BGR_MEAN, ONE), lambda: L.Rescaling(SCALE, name="input_scale")]
    rc, rep, text = _check(setup_c, tmp_path, capsys, pre)
    _assert_passes(rc, rep, text)
    assert rep["preprocess"]["shape"] == [2, 3, 12, 14]


def test_c_pycaffe_mean_file_npy(setup_c, tmp_path, capsys):
    """set_mean with a (C, H, W) mean image from .npy: the Keras port subtracts it per pixel."""
    mean = mean_image(3, 12, 14)
    np.save(tmp_path / "mean.npy", mean)
    args = [a for a in setup_c["args"]]
    i = args.index("--mean-value")
    del args[i:i + 2]
    m = mean.transpose(1, 2, 0)
    pre = [bgr, lambda: L.Normalization(axis=(1, 2, 3), mean=m, variance=np.ones_like(m)),
           lambda: L.Rescaling(SCALE)]
    model = keras_port(tmp_path / "port.keras", (12, 14), (12, 14), setup_c["w"], pre=[f() for f in pre])
    rc, rep, out, err = run_check([*args, "--mean-file", str(tmp_path / "mean.npy"), "--keras", str(model)],
                                  tmp_path, capsys)
    _assert_passes(rc, rep, out + err)


def test_d_keras_applications_caffe_mode(setup_d, tmp_path, capsys):
    rc, rep, text = _check(setup_d, tmp_path, capsys, [lambda: L.CenterCrop(12, 12)],
                           extra=["--keras-preprocess", "caffe"])
    _assert_passes(rc, rep, text)
    assert rep["preprocess"]["shape"] == [3, 3, 12, 12]


def test_d_caffe_mode_written_out_as_a_preprocessing_model(setup_d, tmp_path, capsys):
    prep = [bgr, lambda: norm(KERAS_CAFFE_MEAN, ONE), lambda: L.CenterCrop(12, 12)]
    _assert_passes(*_check(setup_d, tmp_path, capsys, (), in_hw=(12, 12), prep=prep))


def test_d_deploy_batch_of_one_with_three_images(setup_d, tmp_path, capsys):
    """A classic deploy states dim: 1; the folder holds three images."""
    dep = tmp_path / "deploy1.prototxt"
    dep.write_text(deploy_text(1, 3, 12, 12))
    args = [str(dep), *setup_d["args"][1:]]
    model = keras_port(tmp_path / "port.keras", (15, 19), (12, 12), setup_d["w"], pre=[L.CenterCrop(12, 12)])
    rc, rep, out, err = run_check([*args, "--keras", str(model), "--keras-preprocess", "caffe"], tmp_path, capsys)
    assert rep is not None, out + err
    _assert_passes(rc, rep, out + err)


# ----------------------------------------------------------------------------------------------- (b) one bug each

def test_bug_rgb_fed_where_bgr_expected(setup_a, tmp_path, capsys):
    """No RGB -> BGR flip; the mean given in the matching (R, G, B) order: the whole input is channel-reversed."""
    fix = _assert_named(*_check(setup_a, tmp_path, capsys, [lambda: norm(rgb(BGR_MEAN), VAR), _crop10],
                                extra=["--keras-resize", "13,17"]), "preprocess_channel_order")
    assert re.search(r"BGR|B, G, R|reverse|flip|swap", fix), fix
    _assert_passes(*_check(setup_a, tmp_path, capsys, [bgr, lambda: norm(BGR_MEAN, VAR), _crop10],
                           extra=["--keras-resize", "13,17"]))


def test_bug_rgb_mean_on_bgr_data(setup_a, tmp_path, capsys):
    fix = _assert_named(*_check(setup_a, tmp_path, capsys, [bgr, lambda: norm(rgb(BGR_MEAN), VAR), _crop10],
                                extra=["--keras-resize", "13,17"]), "preprocess_mean_order")
    mean, var = _norm_from_fix(fix)
    assert mean == list(BGR_MEAN), fix
    # the fix as written (its Normalization replaces the port's one)
    _assert_passes(*_check(setup_a, tmp_path, capsys, _with_fix_norm(fix, [bgr], [_crop10]),
                           extra=["--keras-resize", "13,17"]))


def test_bug_mean_subtracted_after_scaling(setup_a, tmp_path, capsys):
    pre = [bgr, lambda: L.Rescaling(SCALE, name="scale"), lambda: norm(BGR_MEAN, ONE), _crop10]
    fix = _assert_named(*_check(setup_a, tmp_path, capsys, pre, extra=["--keras-resize", "13,17"]),
                        "preprocess_scale_order")
    assert "0.017" in fix, fix
    _assert_passes(*_check(setup_a, tmp_path, capsys, _with_fix_norm(fix, [bgr], [_crop10]),
                           extra=["--keras-resize", "13,17"]))


def test_bug_forgotten_scale_0017(setup_a, tmp_path, capsys):
    """transform_param.scale: 0.017 left out of the port (the mean is right)."""
    fix = _assert_named(*_check(setup_a, tmp_path, capsys, [bgr, lambda: norm(BGR_MEAN, ONE), _crop10],
                                extra=["--keras-resize", "13,17"]), "preprocess_scale_value")
    assert "0.017" in fix, fix
    _assert_passes(*_check(setup_a, tmp_path, capsys, _with_fix_norm(fix, [bgr], [_crop10]),
                           extra=["--keras-resize", "13,17"]))


def test_bug_top_left_crop(setup_a, tmp_path, capsys):
    pre = [bgr, lambda: norm(BGR_MEAN, VAR), lambda: L.Cropping2D(((0, 3), (0, 7)), name="crop_tl")]
    fix = _assert_named(*_check(setup_a, tmp_path, capsys, pre, extra=["--keras-resize", "13,17"]),
                        "preprocess_crop")
    assert re.search(r"CenterCrop|cent(re|er)", fix), fix
    _assert_passes(*_check(setup_a, tmp_path, capsys, [bgr, lambda: norm(BGR_MEAN, VAR), _crop10],
                           extra=["--keras-resize", "13,17"]))


def test_bug_mean_pixel_where_a_mean_image_is(setup_b, tmp_path, capsys):
    pixel = [float(v) for v in setup_b["mean"].mean(axis=(1, 2))]
    fix = _assert_named(*_check(setup_b, tmp_path, capsys, [bgr, lambda: norm(pixel, ONE), _crop10]),
                        "preprocess_mean_image")
    assert re.search(r"mean.?(image|file)|binaryproto|per.pixel", fix), fix
    m = setup_b["mean"].transpose(1, 2, 0)
    _assert_passes(*_check(setup_b, tmp_path, capsys,
                           [bgr, lambda: L.Normalization(axis=(1, 2, 3), mean=m, variance=np.ones_like(m)),
                            _crop10]))


def test_bug_resize_nearest_inside_keras(setup_r, tmp_path, capsys):
    pre = [lambda: L.Resizing(13, 17, interpolation="nearest"), bgr, lambda: norm(BGR_MEAN, VAR), _crop10]
    fix = _assert_named(*_check(setup_r, tmp_path, capsys, pre, in_hw=(20, 28)), "preprocess_resize")
    assert re.search(r"--keras-resize|INTER_LINEAR|cv2\.resize|OpenCV", fix), fix
    _assert_passes(*_check(setup_r, tmp_path, capsys, [bgr, lambda: norm(BGR_MEAN, VAR), _crop10],
                           extra=["--keras-resize", "13,17"]))


def test_bug_resize_to_another_size(setup_a, tmp_path, capsys):
    """Resized to 14x18 (not new_height 13 x new_width 17), then the same centre crop: same shape, other pixels."""
    fix = _assert_named(*_check(setup_a, tmp_path, capsys, [bgr, lambda: norm(BGR_MEAN, VAR), _crop10],
                                in_hw=(14, 18), extra=["--keras-resize", "14,18"]), "preprocess_resize")
    assert "13" in fix and "17" in fix, fix
    _assert_passes(*_check(setup_a, tmp_path, capsys, [bgr, lambda: norm(BGR_MEAN, VAR), _crop10],
                           extra=["--keras-resize", "13,17"]))


def test_bug_keras_bilinear_resizing_is_not_opencv(setup_r, tmp_path, capsys):
    pre = [lambda: L.Resizing(13, 17), bgr, lambda: norm(BGR_MEAN, VAR), _crop10]
    _assert_named(*_check(setup_r, tmp_path, capsys, pre, in_hw=(20, 28)), "preprocess_resize")


def test_bug_pycaffe_input_scale_forgotten(setup_c, tmp_path, capsys):
    fix = _assert_named(*_check(setup_c, tmp_path, capsys, [bgr, lambda: norm(BGR_MEAN, ONE)]),
                        "preprocess_scale_value")
    assert "0.017" in fix, fix
    _assert_passes(*_check(setup_c, tmp_path, capsys, _with_fix_norm(fix, [bgr])))


def test_bug_pycaffe_input_scale_used_as_raw_scale(setup_c, tmp_path, capsys):
    """0.017 applied where raw_scale goes (before the mean): (x*0.017 - mean) instead of (x - mean)*0.017."""
    pre = [bgr, lambda: L.Rescaling(SCALE), lambda: norm(BGR_MEAN, ONE)]
    fix = _assert_named(*_check(setup_c, tmp_path, capsys, pre), "preprocess_scale_order")
    _assert_passes(*_check(setup_c, tmp_path, capsys, _with_fix_norm(fix, [bgr])))


def test_bug_pycaffe_raw_scale_undone(setup_c, tmp_path, capsys):
    """The port divides by 255 (load_image's [0, 1]) and forgets that raw_scale 255 brings it back."""
    pre = [lambda: L.Rescaling(1 / 255.0), bgr, lambda: norm(BGR_MEAN, ONE), lambda: L.Rescaling(SCALE)]
    fix = _assert_named(*_check(setup_c, tmp_path, capsys, pre), "preprocess_scale_order")
    _assert_passes(*_check(setup_c, tmp_path, capsys, _with_fix_norm(fix, [bgr])))


def test_bug_pycaffe_channel_swap_left_out(setup_c, tmp_path, capsys):
    pre = [lambda: norm(rgb(BGR_MEAN), ONE), lambda: L.Rescaling(SCALE)]
    _assert_named(*_check(setup_c, tmp_path, capsys, pre), "preprocess_channel_order")
    _assert_passes(*_check(setup_c, tmp_path, capsys, [bgr, lambda: norm(BGR_MEAN, ONE), lambda: L.Rescaling(SCALE)]))


def test_bug_data_layer_top_left_crop(setup_d, tmp_path, capsys):
    fix = _assert_named(*_check(setup_d, tmp_path, capsys, [lambda: L.Cropping2D(((0, 3), (0, 7)))],
                                extra=["--keras-preprocess", "caffe"]), "preprocess_crop")
    assert re.search(r"CenterCrop|cent(re|er)", fix), fix


def test_bug_tf_mode_on_a_caffe_net(setup_d, tmp_path, capsys):
    """keras.applications 'tf' mode (x/127.5 - 1, RGB) on a BGR mean-subtracted net: named at layer 0 (any cause
    of the family), never passed."""
    rc, rep, text = _check(setup_d, tmp_path, capsys, [lambda: L.CenterCrop(12, 12)],
                           extra=["--keras-preprocess", "tf"])
    assert rc == 1 and rep["preprocess"]["passed"] is False
    assert rep["first_divergence"]["caffe_layer"] == "layer0:preprocess"


# ----------------------------------------------------------------------------------------------- (c) two at once

def test_two_bugs_rgb_fed_and_mean_kept_in_bgr_order(setup_a, tmp_path, capsys):
    """No flip, and the prototxt's B, G, R mean subtracted from R, G, B data."""
    rc, rep, text = _check(setup_a, tmp_path, capsys, [lambda: norm(BGR_MEAN, VAR), _crop10],
                           extra=["--keras-resize", "13,17"])
    assert rc == 1 and rep["first_divergence"]["caffe_layer"] == "layer0:preprocess"
    got = causes(rep)
    assert got and got[0] in ("preprocess_channel_order", "preprocess_mean_order"), got
    # adding the flip the first fix asks for leaves only the mean order, which is then named
    rc, rep, text = _check(setup_a, tmp_path, capsys, [bgr, lambda: norm(BGR_MEAN, VAR), _crop10],
                           extra=["--keras-resize", "13,17"])
    _assert_passes(rc, rep, text)


def test_two_bugs_scale_order_and_top_left_crop(setup_a, tmp_path, capsys):
    pre = [bgr, lambda: L.Rescaling(SCALE), lambda: norm(BGR_MEAN, ONE), lambda: L.Cropping2D(((0, 3), (0, 7)))]
    rc, rep, text = _check(setup_a, tmp_path, capsys, pre, extra=["--keras-resize", "13,17"])
    assert rc == 1 and rep["first_divergence"]["caffe_layer"] == "layer0:preprocess"
    got = causes(rep)
    assert got and got[0] in ("preprocess_scale_order", "preprocess_crop"), got
    if got[0] == "preprocess_crop":
        rest = [bgr, lambda: L.Rescaling(SCALE), lambda: norm(BGR_MEAN, ONE), _crop10]
        second = "preprocess_scale_order"
    else:
        fix_pre = _with_fix_norm(diagnosis(rep)[0]["fix"], [bgr])
        rest = [*fix_pre, lambda: L.Cropping2D(((0, 3), (0, 7)))]
        second = "preprocess_crop"
    _assert_named(*_check(setup_a, tmp_path, capsys, rest, extra=["--keras-resize", "13,17"]), second)


def test_two_bugs_mean_pixel_and_rgb(setup_b, tmp_path, capsys):
    pixel = [float(v) for v in setup_b["mean"].mean(axis=(1, 2))]
    rc, rep, text = _check(setup_b, tmp_path, capsys, [lambda: norm(rgb(pixel), ONE), _crop10])
    assert rc == 1 and rep["first_divergence"]["caffe_layer"] == "layer0:preprocess"
    got = causes(rep)
    assert got and got[0] in ("preprocess_channel_order", "preprocess_mean_image"), got
    # with the flip added, the mean pixel alone is what is left, and it is named
    _assert_named(*_check(setup_b, tmp_path, capsys, [bgr, lambda: norm(pixel, ONE), _crop10]),
                  "preprocess_mean_image")


# ----------------------------------------------------------------------------------------------- more held-out cases

def test_d_glob_takes_only_the_matching_files(setup_d, tmp_path, capsys):
    args = list(setup_d["args"])
    args[args.index("--images") + 1] = str(setup_d["imgs"] / "*.png")
    model = keras_port(tmp_path / "port.keras", (15, 19), (12, 12), setup_d["w"], pre=[L.CenterCrop(12, 12)])
    rc, rep, out, err = run_check([*args, "--keras", str(model), "--keras-preprocess", "caffe"], tmp_path, capsys)
    _assert_passes(rc, rep, out + err)
    assert [Path(p).name for p in rep["preprocess"]["images"]] == ["b.png", "c.png"]


def test_d_flip_twice_caffe_mode_plus_own_flip(setup_d, tmp_path, capsys):
    """preprocess_input('caffe') already flips to BGR; a second flip in the model feeds RGB again."""
    fix = _assert_named(*_check(setup_d, tmp_path, capsys, [bgr, lambda: L.CenterCrop(12, 12)],
                                extra=["--keras-preprocess", "caffe"]), "preprocess_channel_order")
    assert fix


def test_d_tf_mode_matches_a_net_trained_on_x_over_127_5_minus_1(tmp_path, capsys):
    """transform_param { mean_value: 127.5 scale: 0.0078431372549 } == preprocess_input(mode='tf') + a BGR flip."""
    imgs = write_images(tmp_path / "imgs", [("a.jpg", 15, 19, False), ("b.png", 15, 19, True)])
    tv = tmp_path / "tv.prototxt"
    tv.write_text(train_val_text(transform_block(scale=0.0078431372549, mean_value=(127.5,), crop_size=12,
                                                 extra="force_color: true"),
                                 kind="Data"))
    dep = tmp_path / "deploy.prototxt"
    dep.write_text(deploy_text(2, 3, 12, 12))
    w = net_weights(3, 12, 12, seed=8)
    np.savez(tmp_path / "w.npz", **w)
    model = keras_port(tmp_path / "port.keras", (15, 19), (12, 12), w, pre=[bgr(), L.CenterCrop(12, 12)])
    rc, rep, out, err = run_check([str(dep), "--weights", str(tmp_path / "w.npz"), "--keras", str(model),
                                   "--images", str(imgs), "--transform-prototxt", str(tv), "--keras-preprocess",
                                   "tf", *CUSTOM], tmp_path, capsys)
    _assert_passes(rc, rep, out + err)


def _one_off(tmp_path, transform: str, specs, net_hw, in_hw, pre, kind="ImageData", new_hw=None, extra=(),
             data_extra=""):
    imgs = write_images(tmp_path / "imgs", specs)
    tv = tmp_path / "tv.prototxt"
    tv.write_text(train_val_text(transform, kind=kind, new_hw=new_hw, batch=len(specs), data_extra=data_extra))
    dep = tmp_path / "deploy.prototxt"
    dep.write_text(deploy_text(len(specs), 3, *net_hw))
    w = net_weights(3, *net_hw, seed=6)
    np.savez(tmp_path / "w.npz", **w)
    model = keras_port(tmp_path / "port.keras", in_hw, net_hw, w, pre=[f() for f in pre])
    return [str(dep), "--weights", str(tmp_path / "w.npz"), "--keras", str(model), "--images", str(imgs),
            "--transform-prototxt", str(tv), *CUSTOM, *extra]


def test_one_mean_value_is_replicated_over_the_channels(tmp_path, capsys):
    """data_transformer.cpp: 'Replicate the mean_value for simplicity' when one value is given for 3 channels."""
    args = _one_off(tmp_path, transform_block(mean_value=(120,), scale=0.0125), [("a.png", 10, 14, False),
                    ("b.jpg", 10, 14, False)], (10, 14), (10, 14),
                    [bgr, lambda: norm([120.0] * 3, [1 / 0.0125**2] * 3)], kind="Data")
    _assert_passes(*run_check(args, tmp_path, capsys)[:2], "")


V1_TRAIN_VAL = """
name: "p3v1"
layers { name: "data" type: IMAGE_DATA top: "data" top: "label" include { phase: TEST }
         image_data_param { source: "val.txt" batch_size: 2 new_height: 13 new_width: 17 scale: 0.017 crop_size: 10 }
         transform_param { mean_value: 104 mean_value: 117 mean_value: 123 } }
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layers { name: "ip1" type: INNER_PRODUCT bottom: "pool1" top: "ip1" inner_product_param { num_output: 5 } }
layers { name: "prob" type: SOFTMAX bottom: "ip1" top: "prob" }
"""


def _legacy_args(tmp_path, pre, train_val_text_=V1_TRAIN_VAL):
    args = _one_off(tmp_path, transform_block(mean_value=BGR_MEAN), [("a.png", 18, 25, False),
                    ("b.jpg", 27, 21, False)], (10, 10), (13, 17), pre, new_hw=(13, 17),
                    extra=["--keras-resize", "13,17"])
    (tmp_path / "tv.prototxt").write_text(train_val_text_)
    return args


def test_legacy_v1_image_data_param_scale_and_crop(tmp_path, capsys):
    """V1 nets carry scale/crop_size in image_data_param; upgrade_proto.cpp UpgradeNetDataTransformation moves them
    into transform_param (NetNeedsDataUpgrade looks at V1 `layers` only)."""
    args = _legacy_args(tmp_path, [bgr, lambda: norm(BGR_MEAN, VAR), _crop10])
    _assert_passes(*run_check(args, tmp_path, capsys)[:2], "")


def test_legacy_v1_scale_forgotten_is_named(tmp_path, capsys):
    args = _legacy_args(tmp_path, [bgr, lambda: norm(BGR_MEAN, ONE), _crop10])
    rc, rep, out, err = run_check(args, tmp_path, capsys)
    _assert_named(rc, rep, out + err, "preprocess_scale_value")


def test_new_style_layer_legacy_scale_is_not_applied(tmp_path, capsys):
    """A new-style `layer { type: "ImageData" }` with image_data_param.scale: Caffe's upgrade does not touch it
    (NetNeedsDataUpgrade reads V1 `layers` only) and ImageDataLayer never reads it: Caffe does not scale. The
    harness may follow Caffe (an unscaled port passes) or refuse the field by name -- never apply the scale."""
    imgs_specs = [("a.png", 10, 14, False), ("b.jpg", 10, 14, False)]
    args = _one_off(tmp_path, transform_block(mean_value=BGR_MEAN), imgs_specs, (10, 14), (10, 14),
                    [bgr, lambda: norm(BGR_MEAN, ONE)], data_extra="scale: 0.017")
    rc, rep, out, err = run_check(args, tmp_path, capsys)
    if rc == 2:
        assert rep is None and "scale" in err and len(err.strip().splitlines()) == 1, err
    else:
        _assert_passes(rc, rep, out + err)


def test_mirror_at_test_is_warned_and_not_reproduced(tmp_path, capsys):
    args = _one_off(tmp_path, transform_block(mean_value=BGR_MEAN, crop_size=10, extra="mirror: true"),
                    [("a.png", 18, 25, False), ("b.jpg", 27, 21, False)], (10, 10), (13, 17),
                    [bgr, lambda: norm(BGR_MEAN, ONE), _crop10], new_hw=(13, 17), extra=["--keras-resize", "13,17"])
    rc, rep, out, err = run_check(args, tmp_path, capsys)
    _assert_passes(rc, rep, out + err)
    assert "mirror" in (out + err)


def test_gray_files_in_a_force_gray_free_colour_imagedata(tmp_path, capsys):
    """ImageData is_color defaults to true: a grayscale PNG is read as three equal B, G, R planes."""
    args = _one_off(tmp_path, transform_block(mean_value=BGR_MEAN), [("g1.png", 10, 14, True),
                    ("g2.jpg", 10, 14, True)], (10, 14), (10, 14), [bgr, lambda: norm(BGR_MEAN, ONE)])
    _assert_passes(*run_check(args, tmp_path, capsys)[:2], "")


def test_bug_resize_where_a_data_layer_does_not(setup_d, tmp_path, capsys):
    """A Data layer crops the image at its own size; the port resizes to 16x20 first (--keras-resize)."""
    fix = _assert_named(*_check(setup_d, tmp_path, capsys, [lambda: L.CenterCrop(12, 12)], in_hw=(16, 20),
                                extra=["--keras-preprocess", "caffe", "--keras-resize", "16,20"]),
                        "preprocess_resize")
    assert "--keras-resize" in fix, fix
    _assert_passes(*_check(setup_d, tmp_path, capsys, [lambda: L.CenterCrop(12, 12)],
                           extra=["--keras-preprocess", "caffe"]))


def test_bug_mean_image_with_its_channels_reversed(setup_b, tmp_path, capsys):
    m = setup_b["mean"][::-1].transpose(1, 2, 0).copy()  # R, G, B planes of a B, G, R mean_file
    pre = [bgr, lambda: L.Normalization(axis=(1, 2, 3), mean=m, variance=np.ones_like(m)), _crop10]
    _assert_named(*_check(setup_b, tmp_path, capsys, pre), "preprocess_mean_order")


def test_bug_mean_image_cropped_at_the_top_left(setup_b, tmp_path, capsys):
    """The image is centre-cropped right, the mean image top-left cropped (mean[:, :10, :10]): a mean bug, not
    'unknown' (data_transformer.cpp reads the mean at the image's crop offsets)."""
    m = setup_b["mean"].transpose(1, 2, 0)[:10, :10].copy()
    pre = [bgr, _crop10, lambda: L.Normalization(axis=(1, 2, 3), mean=m, variance=np.ones_like(m))]
    rc, rep, text = _check(setup_b, tmp_path, capsys, pre)
    assert rc == 1 and rep["first_divergence"]["caffe_layer"] == "layer0:preprocess"
    assert causes(rep)[0] == "preprocess_mean_image", (causes(rep), text)
    assert "mean[:, 1:11, 3:13]" in diagnosis(rep)[0]["fix"]


def test_bug_resize_forgotten_before_the_crop(setup_a, tmp_path, capsys):
    """No --keras-resize: the Keras side centre-crops each file at its own size (same 10x10 shape)."""
    fix = _assert_named(*_check(setup_a, tmp_path, capsys, [bgr, lambda: norm(BGR_MEAN, VAR), _crop10],
                                in_hw=(None, None)), "preprocess_resize")
    assert "13" in fix and "17" in fix, fix


def test_bug_no_crop_at_all(setup_a, tmp_path, capsys):
    """The port forgets the crop: its layer 0 is 13x17, Caffe's 10x10 (the net is fed Caffe's, with a notice)."""
    prep = preprocess_model(tmp_path / "prep.keras", [bgr(), norm(BGR_MEAN, VAR)])
    rest = keras_port(tmp_path / "net.keras", (10, 10), (10, 10), setup_a["w"])
    rc, rep, out, err = run_check([*setup_a["args"], "--keras", str(rest), "--keras-preprocess-model", str(prep),
                                   "--keras-resize", "13,17"], tmp_path, capsys)
    assert rep is not None, out + err
    fix = _assert_named(rc, rep, out + err, "preprocess_crop")
    assert "CenterCrop(10, 10)" in fix, fix


def test_bug_std_given_where_normalization_wants_the_variance(setup_a, tmp_path, capsys):
    """Normalization(variance=[58.82]*3) -- the std 1/0.017, not its square: the scale is wrong."""
    pre = [bgr, lambda: norm(BGR_MEAN, [1 / SCALE] * 3), _crop10]
    fix = _assert_named(*_check(setup_a, tmp_path, capsys, pre, extra=["--keras-resize", "13,17"]),
                        "preprocess_scale_value")
    _assert_passes(*_check(setup_a, tmp_path, capsys, _with_fix_norm(fix, [bgr], [_crop10]),
                           extra=["--keras-resize", "13,17"]))


def test_bug_torch_mode_on_a_caffe_net_is_never_passed(setup_d, tmp_path, capsys):
    rc, rep, text = _check(setup_d, tmp_path, capsys, [lambda: L.CenterCrop(12, 12)],
                           extra=["--keras-preprocess", "torch"])
    assert rc == 1 and rep["preprocess"]["passed"] is False
    assert rep["first_divergence"]["caffe_layer"] == "layer0:preprocess"


def _pycaffe_unit(tmp_path, extra_args):
    imgs = write_images(tmp_path / "imgs", [("a.png", 12, 14, False), ("b.jpg", 12, 14, False)])
    dep = tmp_path / "deploy.prototxt"
    dep.write_text(deploy_text(2, 3, 12, 14))
    w = net_weights(3, 12, 14, seed=12)
    np.savez(tmp_path / "w.npz", **w)
    return w, [str(dep), "--weights", str(tmp_path / "w.npz"), "--images", str(imgs), "--channel-swap", "2,1,0",
               "--mean-value", "0.4,0.45,0.5", *extra_args, *CUSTOM]


def test_c_pycaffe_without_raw_scale_works_on_0_1_pixels(tmp_path, capsys):
    """No set_raw_scale: the net sees load_image's [0, 1] values minus the mean; the port divides by 255 first."""
    w, args = _pycaffe_unit(tmp_path, [])
    model = keras_port(tmp_path / "port.keras", (12, 14), (12, 14), w,
                       pre=[L.Rescaling(1 / 255.0), bgr(), norm([0.4, 0.45, 0.5], ONE)])
    rc, rep, out, err = run_check([*args, "--keras", str(model)], tmp_path, capsys)
    _assert_passes(rc, rep, out + err)


def test_bug_pycaffe_0_1_net_fed_0_255(tmp_path, capsys):
    w, args = _pycaffe_unit(tmp_path, [])
    model = keras_port(tmp_path / "port.keras", (12, 14), (12, 14), w, pre=[bgr(), norm([0.4, 0.45, 0.5], ONE)])
    rc, rep, out, err = run_check([*args, "--keras", str(model)], tmp_path, capsys)
    _assert_named(rc, rep, out + err, "preprocess_scale_order")


def test_a_sequential_port_with_leading_preprocessing_layers(setup_a, tmp_path, capsys):
    """keras.Sequential([Input, flip, Normalization, CenterCrop, Conv2D, ...]) -- the other way users write it."""
    import keras

    func = keras_port(tmp_path / "f.keras", (10, 10), (10, 10), setup_a["w"])
    body = keras.saving.load_model(func, safe_mode=True)
    seq = keras.Sequential([keras.Input((13, 17, 3)), bgr(), norm(BGR_MEAN, VAR), _crop10()]
                           + [body.get_layer(n) for n in ("conv1", "pool1", "flat", "ip1", "prob")], name="seqport")
    seq.save(tmp_path / "port.keras")
    rc, rep, out, err = run_check([*setup_a["args"], "--keras", str(tmp_path / "port.keras"), "--keras-resize",
                                   "13,17"], tmp_path, capsys)
    _assert_passes(rc, rep, out + err)


def test_a_nested_preprocessing_block(setup_a, tmp_path, capsys):
    """prep = keras.Sequential([flip, Normalization, CenterCrop], name="prep"); x = prep(inputs); ... the net."""
    import keras

    from _ports3 import net_body

    prep = keras.Sequential([bgr(), norm(BGR_MEAN, VAR), _crop10()], name="prep")
    inp = keras.Input((13, 17, 3), name="data")
    out = net_body(prep(inp), setup_a["w"], 10, 10)
    keras.Model(inp, out, name="nestedport").save(tmp_path / "port.keras")
    rc, rep, out_, err = run_check([*setup_a["args"], "--keras", str(tmp_path / "port.keras"), "--keras-resize",
                                    "13,17"], tmp_path, capsys)
    assert rep is not None, out_ + err
    _assert_passes(rc, rep, out_ + err)


def test_rgba_png_in_an_imagedata_folder(tmp_path, capsys):
    """IMREAD_COLOR drops the alpha channel (io.cpp ReadImageToCVMat with is_color); so does load_img's RGB."""
    import cv2

    from _ports3 import draw

    args = _one_off(tmp_path, transform_block(mean_value=BGR_MEAN), [("a.png", 10, 14, False),
                    ("b.jpg", 10, 14, False)], (10, 14), (10, 14), [bgr, lambda: norm(BGR_MEAN, ONE)])
    img = draw(10, 14, 99)
    alpha = np.linspace(0, 255, 10 * 14).reshape(10, 14).astype(np.uint8)
    (tmp_path / "imgs" / "a.png").unlink()
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), np.dstack([img, alpha]))
    _assert_passes(*run_check(args, tmp_path, capsys)[:2], "")


def test_bug_keras_caffe_mode_on_a_104_117_123_net(setup_a, tmp_path, capsys):
    """preprocess_input('caffe') subtracts (103.939, 116.779, 123.68); the net's mean_value is (104, 117, 123): a
    real 0.06..0.7 grey-level difference, failed at layer 0 with a cause that names both means."""
    fix = _assert_named(*_check(setup_a, tmp_path, capsys, [lambda: L.Rescaling(SCALE), _crop10],
                                extra=["--keras-resize", "13,17", "--keras-preprocess", "caffe"]),
                        "preprocess_mean_value")
    assert "104, 117, 123" in fix, fix
    _assert_passes(*_check(setup_a, tmp_path, capsys, _with_fix_norm(fix, [bgr], [_crop10]),
                           extra=["--keras-resize", "13,17"]))


def test_bug_mean_forgotten(setup_a, tmp_path, capsys):
    """The scale is right (Rescaling(0.017)) but no mean is subtracted: a mean bug, not a scale one."""
    fix = _assert_named(*_check(setup_a, tmp_path, capsys, [bgr, lambda: L.Rescaling(SCALE), _crop10],
                                extra=["--keras-resize", "13,17"]), "preprocess_mean_value")
    _assert_passes(*_check(setup_a, tmp_path, capsys, _with_fix_norm(fix, [bgr], [_crop10]),
                           extra=["--keras-resize", "13,17"]))


def test_folder_takes_upper_case_and_other_opencv_suffixes(tmp_path, capsys):
    """cv::imread reads JPEG/PNG/BMP whatever the case of the suffix; a folder's image files are all taken."""
    args = _one_off(tmp_path, transform_block(mean_value=BGR_MEAN), [("a.JPG", 10, 14, False),
                    ("b.jpeg", 10, 14, False), ("c.bmp", 10, 14, True), ("d.PNG", 10, 14, False)], (10, 14),
                    (10, 14), [bgr, lambda: norm(BGR_MEAN, ONE)])
    rc, rep, out, err = run_check(args, tmp_path, capsys)
    _assert_passes(rc, rep, out + err)
    assert sorted(Path(p).name for p in rep["preprocess"]["images"]) == ["a.JPG", "b.jpeg", "c.bmp", "d.PNG"]


def test_file_smaller_than_the_crop_is_fine_when_imagedata_resizes_first(tmp_path, capsys):
    """ReadImageToCVMat resizes to new_height x new_width before DataTransformer's CHECK_GE(img_height, crop_h): a
    6x8 file under crop_size 10 with new_height 13 new_width 17 is valid Caffe input, not an error."""
    args = _one_off(tmp_path, transform_block(mean_value=BGR_MEAN, scale=SCALE, crop_size=10),
                    [("tiny.png", 6, 8, False), ("b.jpg", 27, 21, False)], (10, 10), (13, 17),
                    [bgr, lambda: norm(BGR_MEAN, VAR), _crop10], new_hw=(13, 17), extra=["--keras-resize", "13,17"])
    rc, rep, out, err = run_check(args, tmp_path, capsys)
    _assert_passes(rc, rep, out + err)


def test_gray_net_imagedata_is_color_false(tmp_path, capsys):
    """ImageData is_color: false reads IMREAD_GRAYSCALE (one channel); the port of a gray net loads its files with
    load_img(color_mode="grayscale"): the Keras side gets the same one-channel pixels."""
    imgs = write_images(tmp_path / "imgs", [("a.png", 10, 14, True), ("b.png", 10, 14, True)])
    tv = tmp_path / "tv.prototxt"
    tv.write_text(train_val_text(transform_block(mean_value=(120,), scale=0.0125), data_extra="is_color: false"))
    dep = tmp_path / "deploy.prototxt"
    dep.write_text(deploy_text(2, 1, 10, 14))
    w = net_weights(1, 10, 14, seed=13)
    np.savez(tmp_path / "w.npz", **w)
    args = [str(dep), "--weights", str(tmp_path / "w.npz"), "--images", str(imgs), "--transform-prototxt", str(tv)]
    good = keras_port(tmp_path / "good.keras", (10, 14), (10, 14), w, pre=[norm([120.0], [1 / 0.0125**2])],
                      channels=1)
    rc, rep, out, err = run_check([*args, "--keras", str(good)], tmp_path, capsys)
    _assert_passes(rc, rep, out + err)
    assert rep["preprocess"]["shape"] == [2, 1, 10, 14]
    bad = keras_port(tmp_path / "bad.keras", (10, 14), (10, 14), w, pre=[norm([120.0], [1.0])], channels=1)
    rc, rep, out, err = run_check([*args, "--keras", str(bad)], tmp_path, capsys)
    _assert_named(rc, rep, out + err, "preprocess_scale_value")
