"""Hypothesis profiles for the property suite.

Slow suites (``@pytest.mark.slow``) run only with ``CAFFE_HARNESS_SLOW=1``.

Pick one with the ``HYPOTHESIS_PROFILE`` environment variable::

    HYPOTHESIS_PROFILE=dev pytest tests/property        # fast, a few examples per property (while editing)
    pytest                                              # "ci": the default, deterministic (derandomize=True)
    HYPOTHESIS_PROFILE=thorough pytest tests/property   # many examples, for a nightly or release run

``ci`` is used when ``HYPOTHESIS_PROFILE`` is unset (also under ``CI=true``): examples are derived from the test's
source, so every run checks the same cases and a red build is reproducible; a failure prints the ``@reproduce_failure``
blob and the failing case's prototxt.  Property tests scale their own ``max_examples`` from the profile's value
(``harness_examples`` in tests/property/_props.py), so single-layer, net and invariant properties keep their relative
weights under every profile.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# as harness/__init__.py does, before any test module imports TensorFlow or Keras directly (see there)
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from hypothesis import HealthCheck, Phase, Verbosity, settings

# tests/support/ (the one support package of the project's tests) is imported as `support` from every test folder;
# the independently written corpora (tests/ports2, ports3, ...) never import it.
sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))

_COMMON = dict(
    deadline=None,  # the first example of a property pays for Keras/TF start-up and tracing
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

settings.register_profile("dev", max_examples=5, **_COMMON)
settings.register_profile("ci", max_examples=40, derandomize=True, print_blob=True, database=None, **_COMMON)
settings.register_profile("thorough", max_examples=400, print_blob=True, **_COMMON)
settings.register_profile("debug", max_examples=5, verbosity=Verbosity.verbose, phases=[Phase.explicit, Phase.generate,
                                                                                         Phase.target, Phase.shrink],
                          **_COMMON)

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: a suite too slow for the default run (zoo sizes, the 1,000-pair "
                                       "margin corpus); runs with CAFFE_HARNESS_SLOW=1 (.ci/run sets it where it fits)")


def pytest_collection_modifyitems(config, items) -> None:
    if os.environ.get("CAFFE_HARNESS_SLOW") == "1":
        return
    import pytest

    skip = pytest.mark.skip(reason="slow suite: set CAFFE_HARNESS_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
