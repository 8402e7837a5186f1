"""Compatibility alias: the pytest plugin is the top-level module :mod:`harness_pytest` (entry point
``caffe_harness``), which loads without importing the harness.  Installations whose entry point metadata still names
``harness.pytest_plugin`` load this module, which registers the same hooks, fixture and marker.  Do not load both.
"""

from harness_pytest import (  # noqa: F401
    CaffeHarness,
    LayerItem,
    ManifestCheck,
    ManifestFile,
    caffe_harness,
    pytest_addoption,
    pytest_collect_file,
    pytest_configure,
)
