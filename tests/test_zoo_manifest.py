"""The zoo's equivalence manifest (``fixtures/zoo/caffe-equivalence.toml``) run the way a user runs it:
``pytest fixtures/zoo/caffe-equivalence.toml`` in a fresh process, one test item per matched Caffe layer output, every
item passing with the default tolerance.  (The default test run does not collect ``fixtures/``: testpaths = tests;
this one subprocess, about 20-40 s on 2 loaded cores, is the manifest's cost in CI.)"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "fixtures" / "zoo" / "caffe-equivalence.toml"


def test_zoo_manifest_collects_one_passing_item_per_layer(tmp_path):
    xml = tmp_path / "junit.xml"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(MANIFEST), "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         f"--junitxml={xml}"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    items: dict[str, list[str]] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        assert not [c.tag for c in case if c.tag in ("failure", "error", "skipped")], case.attrib
        check = case.get("classname").rsplit(".", 1)[-1]
        items.setdefault(check, []).append(case.get("name"))
    assert list(items) == ["lenet", "fcn32s_head", "mobilenet_v1"]
    # one item per Caffe layer output, in Caffe's execution order (in-place ReLU included)
    assert items["lenet"] == ["conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "prob"]
    assert items["fcn32s_head"][0] == "conv1_1" and items["fcn32s_head"][-2:] == ["upscore", "score"]
    mob = items["mobilenet_v1"]
    # 27 conv blocks (conv1, 13 depthwise, 13 pointwise) of Convolution/BatchNorm/Scale/ReLU, then pool6, fc7, prob;
    # the '/' in layer names ("conv2_1/dw/bn") survives into the item ids
    assert len([n for n in mob if n.endswith("/dw")]) == 13 + 13  # conv*/dw and relu*/dw
    assert "conv2_1/dw/bn" in mob and "conv6/sep/scale" in mob and mob[-3:] == ["pool6", "fc7", "prob"]
    assert len(mob) == 27 * 4 + 3
