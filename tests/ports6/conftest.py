"""Fixtures of the ports6 corpus: artefacts made at test time by real third-party converters (caffe2onnx -> ONNX,
onnx2tf -> SavedModel and float32 .tflite) from seeded weights, and checked with the in-process ``caffe-harness check``.

The converters live in their own venv (tests/ports6/install_converters.sh; ``PORTS6_CONVERTERS_VENV`` or
/work/venvs/corpus20): without it every test that needs them skips, saying how to install it.  They run as
subprocesses (tests/ports6/_chain_tool.py), once per session for all the cases the selected tests need: one
caffe2onnx process for every ONNX file, one onnx2tf process for every SavedModel / .tflite (TensorFlow starts once).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from . import _corpus as C

HERE = Path(__file__).resolve().parent


def _selected_cases(session) -> set[str]:
    """The corpus cases the selected (and not skipped-as-slow) tests ask for, from their ``case`` parameter."""
    slow_on = os.environ.get("CAFFE_HARNESS_SLOW") == "1"
    cases = set()
    for item in session.items:
        spec = getattr(item, "callspec", None)
        if spec is None or "case" not in spec.params or item.path.parent != HERE:
            continue
        if item.get_closest_marker("slow") is None or slow_on:
            cases.add(spec.params["case"])
    return cases


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ports6")


@pytest.fixture(scope="session")
def net_files(workdir):
    """net_files(name) -> (prototxt, caffemodel, inputs.npz) of a _nets net, written once per session."""
    return C.net_writer(workdir)


@pytest.fixture(scope="session")
def corpus(request, workdir, net_files) -> C.Corpus:
    """The converted artefacts (_corpus.Corpus); skips, saying how to install them, without the converters' venv."""
    py, why = C.venv_python()
    if py is None:
        pytest.skip(why)
    c = C.Corpus(workdir, py, net_files)
    c.build(_selected_cases(request.session))
    return c


@pytest.fixture(scope="session")
def check(workdir, net_files) -> C.Checker:
    """check(net, *flags) -> (exit code, JSON report or None, stderr) of the in-process ``caffe-harness check``."""
    return C.Checker(workdir, net_files)
