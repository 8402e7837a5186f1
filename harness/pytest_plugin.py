"""pytest plugin for caffe-keras-harness (registered through the ``pytest11`` entry point).

Importing this module imports only :mod:`pytest` (and the standard library); NumPy-heavy code, Keras and TensorFlow
are imported the first time a fixture or a manifest item actually runs, so ``pytest --help`` stays fast.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("caffe-harness", "Caffe/Keras equivalence (caffe-keras-harness)")
    group.addoption("--caffe-atol", type=float, default=None, metavar="A",
                    help="absolute tolerance for every compared element (an element passes when within atol OR "
                         "within rtol*|reference|); default: the per-layer derived float32 bound")
    group.addoption("--caffe-rtol", type=float, default=None, metavar="R",
                    help="relative tolerance (see --caffe-atol)")
    group.addoption("--caffe-mode", choices=("both", "chained", "isolated"), default="both",
                    help="which comparisons manifest items run (default: both)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "caffe_tolerance(atol=None, rtol=None, layers=None, types=None, reason=None): tolerance overrides for the "
        "caffe_harness fixture; layers/types map a Caffe layer name/type to {'atol':..,'rtol':..,'reason':..}",
    )
