"""Matching details that need no Keras run: mapping formats, user maps, layout detection."""

from __future__ import annotations

import pytest

from harness.compare.engine.match import layout_for, normalize_mapping, parse_user_map
from harness.errors import HarnessError


def test_normalize_mapping_accepts_converter_and_plain_formats():
    conv = {"format": 1, "keys": {"conv1/conv1": {"layer": "conv1", "index": 0, "layout": "nhwc"},
                                  "scale1/conv1": {"layer": "bn1", "index": 0, "layout": "nhwc"}},
            "folded": {"scale1": "bn1"}}
    entries, folded = normalize_mapping(conv)
    assert entries == {"conv1/conv1": ("conv1", 0, "nhwc"), "scale1/conv1": ("bn1", 0, "nhwc")}
    assert folded == {"bn1": "scale1"}
    entries, folded = normalize_mapping({"fc/fc": ("dense", 0, "caffe"), "s/a": ["sl", 1], "p/p": "prob"})
    assert entries == {"fc/fc": ("dense", 0, "caffe"), "s/a": ("sl", 1, None), "p/p": ("prob", 0, None)}
    assert folded == {} and normalize_mapping(None) == ({}, {})


def test_parse_user_map():
    assert parse_user_map(["conv1=conv2d", " fc = dense_1 "]) == {"conv1": "conv2d", "fc": "dense_1"}
    assert parse_user_map({"a": "b"}) == {"a": "b"}
    assert parse_user_map(["inception_3a/1x1=inception_3a.1x1"]) == {"inception_3a/1x1": "inception_3a.1x1"}
    for bad in (["conv1"], ["=x"], ["x="]):
        with pytest.raises(HarnessError, match="CAFFE=KERAS"):
            parse_user_map(bad)


@pytest.mark.parametrize("caffe,keras,prefer,want", [
    ((2, 3, 5, 7), (None, 5, 7, 3), "nhwc", ("nhwc", True)),
    ((2, 3, 5, 7), (None, 3, 5, 7), "nhwc", ("caffe", True)),
    ((2, 4, 4, 4), (None, 4, 4, 4), "nhwc", ("nhwc", True)),  # a tie goes to the layout contract
    ((2, 4, 4, 4), (None, 4, 4, 4), "caffe", ("caffe", True)),
    ((2, 3, 5, 7), (None, 5, 6, 3), "nhwc", ("nhwc", False)),  # off by one: compared, fails as a shape mismatch
    ((2, 10), (None, 10), "nhwc", ("caffe", True)),
    ((2, 10), (None, 11), "nhwc", ("caffe", False)),
])
def test_layout_for(caffe, keras, prefer, want):
    assert layout_for(caffe, keras, prefer) == want
