"""tests/ports7: the MTCNN corpus (trained facenet-pytorch weights, real photographs); fixtures shared by its tests.

Skips, saying why, without the facenet-pytorch wheel (`pip install --no-deps facenet-pytorch==2.6.0`, as .ci/run
does).  The corpus never imports tests/support: it is written from the docs alone.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _p7_mtcnn as M  # noqa: E402

NO_FACENET = M.facenet_data_dir() is None
SKIP_REASON = f"needs the trained MTCNN weights of {M.FACENET_PIN} (pip install --no-deps {M.FACENET_PIN})"


def pytest_collection_modifyitems(config, items):
    if not NO_FACENET:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def nets(tmp_path_factory):
    """{net: (prototxt, weights.npz, x NCHW batch 2)} for pnet (27 x 35), rnet, onet, and 'pnet40' (40 x 31)."""
    if NO_FACENET:
        pytest.skip(SKIP_REASON)
    import _p7_build

    return _p7_build.write_nets(tmp_path_factory.mktemp("mtcnn"))


def summary(report) -> dict:
    """What a user reads off a report: verdict, first divergent layer, its causes and fixes, unmatched."""
    j = json.loads(report.to_json())
    fd = j["first_divergence"]
    return {"equivalent": j["equivalent"], "first": fd and fd["caffe_layer"], "keras": fd and fd["keras_layer"],
            "causes": [d["cause"] for d in fd["diagnosis"]] if fd else [],
            "fix": fd["diagnosis"][0]["fix"] if fd and fd["diagnosis"] else None,
            "explanation": fd["diagnosis"][0]["explanation"] if fd and fd["diagnosis"] else None,
            "unmatched": j["unmatched"], "layers": j["layers"], "json": j}


def cli_env() -> dict:
    """The environment a CLI subprocess needs to import this folder's port module (--custom-objects _p7_ports:X)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parents[1]), env.get("PYTHONPATH", "")])
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env
