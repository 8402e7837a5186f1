"""The comparator: does a Keras model compute what a Caffe model computes, layer by layer?

``compare(net_or_prototxt, keras_model, inputs=None, ...) -> Report`` runs the float64 NumPy reference and the Keras
model on the same data, matches Caffe blob records to Keras layer outputs (:mod:`.match`), compares every pair chained
(end to end) and isolated (each Keras layer fed the reference's values, :mod:`.passes`) against a derived float32
bound (:mod:`.tolerance`, judged in :mod:`.judge`), names the first divergent layer (:mod:`.divergence`) and asks
the diagnosis engine why (:mod:`.diagnose`).  ``assert_equivalent(...)`` raises ``AssertionError`` with the terminal
verdict as its message.

Structure as well as values: a Caffe net output with no Keras counterpart or a Keras output computed by a layer no
Caffe layer matched makes the report NOT equivalent (``Report.output_problems``; unmatched intermediate layers stay
informational).

The modules, in the order a comparison runs them: :mod:`.inputs` (the Caffe net, the inputs both sides get),
:mod:`.loading` (the Keras model: safe mode, nested models, layouts), :mod:`.match`, :mod:`.passes` (the reference
forward and the two Keras runs), :mod:`.judge`, :mod:`.divergence`, :mod:`.explain` / :mod:`.diagnose`,
:mod:`.result` (per-blob and per-layer results) and :mod:`.report` (the report and its renderings).
This module only re-exports.
"""

from __future__ import annotations

import sys as _sys
import types as _types
from typing import Any

from .engine.approximations import measure_approximations
from .engine.comparison import MODES, CompareOptions, assert_equivalent, compare
from .dataset.report import DatasetReport
from .dataset.run import run_dataset
from .dataset.sources import open_dataset
from .dataset.batch import Check
from .engine.divergence import output_problems
from .engine.inputs import load_caffe_net, prepare_inputs
from .engine.loading import flatten_nested, load_keras_model, resolve_custom_objects
from .reports.report import Report
from .reports.result import BlobResult, Cause, FirstDivergence, LayerResult, cause_dict, compare_arrays
from .engine.tolerance import Tolerance, Tolerances

__all__ = ["compare", "CompareOptions", "assert_equivalent", "Report", "LayerResult", "BlobResult", "FirstDivergence", "Tolerance",
           "Tolerances", "Cause", "cause_dict", "compare_arrays", "load_keras_model", "flatten_nested",
           "prepare_inputs", "load_caffe_net", "output_problems", "measure_approximations", "resolve_custom_objects", "MODES",
           "run_dataset", "open_dataset", "Check", "DatasetReport"]


class _CallableModule(_types.ModuleType):
    """``harness.compare`` is both this package and the public function: importing the package sets the attribute
    ``harness.compare`` to the module, so the module itself is callable (it calls :func:`compare`)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Report:
        return compare(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
