"""Held-out bad inputs for ``check --images``: exit 2, one line on stderr naming the file and the value, no
traceback, no report written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _ports3 import (BGR_MEAN, CUSTOM, KERAS_CAFFE_MEAN, SCALE, L, bgr, deploy_text, keras_port, mean_image,
                     net_weights, norm, run_check, train_val_text, transform_block, write_binaryproto, write_images)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("p3bad")
    w = net_weights(3, 10, 10, seed=4)
    np.savez(root / "w.npz", **w)
    dep = root / "deploy.prototxt"
    dep.write_text(deploy_text(2, 3, 10, 10))
    model = keras_port(root / "port.keras", (12, 16), (10, 10), w,
                       pre=[bgr(), norm(BGR_MEAN, [1 / SCALE**2] * 3), L.CenterCrop(10, 10)])
    return dict(root=root, dep=dep, model=model)


def _tv(path: Path, **transform) -> Path:
    path.write_text(train_val_text(transform_block(**transform), new_hw=(12, 16)))
    return path


def _run(base, tmp_path, capsys, imgs, tv, extra=()):
    args = [str(base["dep"]), "--weights", str(base["root"] / "w.npz"), "--keras", str(base["model"]),
            "--images", str(imgs), "--transform-prototxt", str(tv), "--keras-resize", "12,16", *CUSTOM, *extra]
    rc, report, out, err = run_check(args, tmp_path, capsys)
    return rc, report, err


def _assert_one_line(rc, report, err, *needles):
    assert rc == 2, err
    assert report is None
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_good_folder_passes_as_the_control(base, tmp_path, capsys):
    imgs = write_images(tmp_path / "imgs", [("a.png", 18, 25, False), ("b.jpg", 27, 21, False)])
    tv = _tv(tmp_path / "tv.prototxt", scale=SCALE, mean_value=BGR_MEAN, crop_size=10)
    rc, report, err = _run(base, tmp_path, capsys, imgs, tv)
    assert rc == 0 and report["preprocess"]["passed"] is True, err


def test_non_image_file_with_an_image_suffix(base, tmp_path, capsys):
    imgs = write_images(tmp_path / "imgs", [("a.png", 18, 25, False), ("b.jpg", 27, 21, False)])
    (imgs / "c_notes.jpg").write_text("these are my notes, not a JPEG\n")
    tv = _tv(tmp_path / "tv.prototxt", scale=SCALE, mean_value=BGR_MEAN, crop_size=10)
    _assert_one_line(*_run(base, tmp_path, capsys, imgs, tv), "c_notes.jpg")


def test_truncated_png(base, tmp_path, capsys):
    imgs = write_images(tmp_path / "imgs", [("a.png", 18, 25, False), ("b.png", 27, 21, False)])
    data = (imgs / "b.png").read_bytes()
    (imgs / "b.png").write_bytes(data[:40])
    tv = _tv(tmp_path / "tv.prototxt", scale=SCALE, mean_value=BGR_MEAN, crop_size=10)
    _assert_one_line(*_run(base, tmp_path, capsys, imgs, tv), "b.png")


def test_mean_file_with_one_channel_for_a_colour_net(base, tmp_path, capsys):
    imgs = write_images(tmp_path / "imgs", [("a.png", 18, 25, False), ("b.jpg", 27, 21, False)])
    mf = write_binaryproto(tmp_path / "gray_mean.binaryproto", mean_image(1, 12, 16))
    tv = _tv(tmp_path / "tv.prototxt", mean_file=str(mf), crop_size=10)
    _assert_one_line(*_run(base, tmp_path, capsys, imgs, tv), "gray_mean.binaryproto", "1")


def test_mean_file_of_another_image_size(base, tmp_path, capsys):
    imgs = write_images(tmp_path / "imgs", [("a.png", 18, 25, False), ("b.jpg", 27, 21, False)])
    mf = write_binaryproto(tmp_path / "mean_11x16.binaryproto", mean_image(3, 11, 16))
    tv = _tv(tmp_path / "tv.prototxt", mean_file=str(mf), crop_size=10)
    _assert_one_line(*_run(base, tmp_path, capsys, imgs, tv), "mean_11x16.binaryproto", "11")


def test_mean_file_that_is_not_a_blobproto(base, tmp_path, capsys):
    imgs = write_images(tmp_path / "imgs", [("a.png", 18, 25, False), ("b.jpg", 27, 21, False)])
    mf = tmp_path / "mean_text.binaryproto"
    mf.write_text("mean: 104 117 123\n")
    tv = _tv(tmp_path / "tv.prototxt", mean_file=str(mf), crop_size=10)
    _assert_one_line(*_run(base, tmp_path, capsys, imgs, tv), "mean_text.binaryproto")


def test_mean_file_missing(base, tmp_path, capsys):
    imgs = write_images(tmp_path / "imgs", [("a.png", 18, 25, False), ("b.jpg", 27, 21, False)])
    tv = _tv(tmp_path / "tv.prototxt", mean_file=str(tmp_path / "nowhere_mean.binaryproto"), crop_size=10)
    _assert_one_line(*_run(base, tmp_path, capsys, imgs, tv), "nowhere_mean.binaryproto")


def test_image_smaller_than_crop_size_in_a_data_layer(tmp_path, capsys):
    """A Data layer does not resize: a 9x30 image under crop_size 12 fails Caffe's CHECK_GE(img_height, crop_h)."""
    imgs = write_images(tmp_path / "imgs", [("a.jpg", 15, 19, False), ("small.png", 9, 30, False)])
    tv = tmp_path / "tv.prototxt"
    tv.write_text(train_val_text(transform_block(mean_value=KERAS_CAFFE_MEAN, crop_size=12), kind="Data"))
    dep = tmp_path / "deploy.prototxt"
    dep.write_text(deploy_text(2, 3, 12, 12))
    w = net_weights(3, 12, 12)
    np.savez(tmp_path / "w.npz", **w)
    model = keras_port(tmp_path / "port.keras", (12, 12), (12, 12), w)
    rc, report, out, err = run_check([str(dep), "--weights", str(tmp_path / "w.npz"), "--keras", str(model),
                                      "--images", str(imgs), "--transform-prototxt", str(tv),
                                      "--keras-preprocess", "caffe"], tmp_path, capsys)
    _assert_one_line(rc, report, err, "small.png", "9")


def test_empty_folder(base, tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "readme.txt").write_text("no images here")
    tv = _tv(tmp_path / "tv.prototxt", scale=SCALE, mean_value=BGR_MEAN, crop_size=10)
    _assert_one_line(*_run(base, tmp_path, capsys, tmp_path / "imgs", tv), "imgs")


def test_mean_value_count_neither_one_nor_channels(base, tmp_path, capsys):
    """data_transformer.cpp: CHECK(mean_values_.size() == 1 || mean_values_.size() == img_channels)."""
    imgs = write_images(tmp_path / "imgs", [("a.png", 18, 25, False), ("b.jpg", 27, 21, False)])
    tv = _tv(tmp_path / "tv.prototxt", mean_value=(104, 117), crop_size=10)
    _assert_one_line(*_run(base, tmp_path, capsys, imgs, tv), "mean_value")


def test_refused_transform_parameter_is_named(base, tmp_path, capsys):
    imgs = write_images(tmp_path / "imgs", [("a.png", 18, 25, False), ("b.jpg", 27, 21, False)])
    tv = _tv(tmp_path / "tv.prototxt", mean_value=BGR_MEAN, crop_size=10,
             extra="resize_param { prob: 1 resize_mode: WARP height: 12 width: 16 }")
    _assert_one_line(*_run(base, tmp_path, capsys, imgs, tv), "resize_param")


def test_glob_that_matches_nothing(base, tmp_path, capsys):
    write_images(tmp_path / "imgs", [("a.png", 18, 25, False), ("b.jpg", 27, 21, False)])
    tv = _tv(tmp_path / "tv.prototxt", mean_value=BGR_MEAN, crop_size=10)
    _assert_one_line(*_run(base, tmp_path, capsys, str(tmp_path / "imgs" / "*.bmp"), tv), "*.bmp")


def test_pycaffe_route_image_of_another_size(tmp_path, capsys):
    """pycaffe would resize with skimage; the harness refuses, naming the file and its size."""
    imgs = write_images(tmp_path / "imgs", [("a.jpg", 12, 14, False), ("odd.png", 13, 14, False)])
    dep = tmp_path / "deploy.prototxt"
    dep.write_text(deploy_text(2, 3, 12, 14))
    w = net_weights(3, 12, 14)
    np.savez(tmp_path / "w.npz", **w)
    model = keras_port(tmp_path / "port.keras", (12, 14), (12, 14), w, pre=[bgr(), norm(BGR_MEAN, [1.0] * 3)])
    rc, report, out, err = run_check([str(dep), "--weights", str(tmp_path / "w.npz"), "--keras", str(model),
                                      "--images", str(imgs), "--channel-swap", "2,1,0", "--raw-scale", "255",
                                      "--mean-value", "104,117,123", *CUSTOM], tmp_path, capsys)
    _assert_one_line(rc, report, err, "odd.png", "13")


def test_pycaffe_mean_npy_of_the_wrong_channel_count(tmp_path, capsys):
    imgs = write_images(tmp_path / "imgs", [("a.jpg", 12, 14, False), ("b.png", 12, 14, False)])
    dep = tmp_path / "deploy.prototxt"
    dep.write_text(deploy_text(2, 3, 12, 14))
    w = net_weights(3, 12, 14)
    np.savez(tmp_path / "w.npz", **w)
    np.save(tmp_path / "mean4.npy", mean_image(4, 12, 14))
    model = keras_port(tmp_path / "port.keras", (12, 14), (12, 14), w, pre=[bgr(), norm(BGR_MEAN, [1.0] * 3)])
    rc, report, out, err = run_check([str(dep), "--weights", str(tmp_path / "w.npz"), "--keras", str(model),
                                      "--images", str(imgs), "--channel-swap", "2,1,0", "--raw-scale", "255",
                                      "--mean-file", str(tmp_path / "mean4.npy"), *CUSTOM], tmp_path, capsys)
    _assert_one_line(rc, report, err, "mean4.npy", "4")


def test_pycaffe_mean_image_of_another_size_than_the_input(tmp_path, capsys):
    """io.py set_mean resizes a mean image of another H x W to the input (resize_image, skimage order 1): the
    harness does the same (issue 21.11) -- not refused, never a silent crop or broadcast: a port subtracting the
    mean pixel is told to subtract the mean resized as set_mean does, and doing so passes."""
    from harness.reference.preprocess import pycaffe_set_mean

    imgs = write_images(tmp_path / "imgs", [("a.jpg", 12, 14, False), ("b.png", 12, 14, False)])
    dep = tmp_path / "deploy.prototxt"
    dep.write_text(deploy_text(2, 3, 12, 14))
    w = net_weights(3, 12, 14)
    np.savez(tmp_path / "w.npz", **w)
    big = mean_image(3, 16, 18)
    write_binaryproto(tmp_path / "big_mean.binaryproto", big)
    flags = ["--images", str(imgs), "--channel-swap", "2,1,0", "--raw-scale", "255", "--mean-file",
             str(tmp_path / "big_mean.binaryproto"), *CUSTOM]
    pix = big.astype(np.float64).mean(axis=(1, 2))
    model = keras_port(tmp_path / "port.keras", (12, 14), (12, 14), w, pre=[bgr(), norm(pix, [1.0] * 3)])
    rc, report, out, err = run_check([str(dep), "--weights", str(tmp_path / "w.npz"), "--keras", str(model),
                                      *flags], tmp_path, capsys)
    assert rc == 1 and report is not None, out + err
    top = report["preprocess"]["diagnosis"][0]
    assert top["cause"] == "preprocess_mean_image" and "pycaffe_set_mean(mean, (3, 12, 14))" in top["fix"], top
    m = pycaffe_set_mean(big, (3, 12, 14)).transpose(1, 2, 0)
    fixed = keras_port(tmp_path / "fixed.keras", (12, 14), (12, 14), w,
                       pre=[bgr(), norm(m, np.ones_like(m), axis=(1, 2, 3))])
    rc, report, out, err = run_check([str(dep), "--weights", str(tmp_path / "w.npz"), "--keras", str(fixed),
                                      *flags], tmp_path, capsys)
    assert rc == 0 and report["preprocess"]["passed"] and report["equivalent"], out + err