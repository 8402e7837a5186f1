"""Shape inference: Caffe's own output-size rules and setup checks, for every type in :mod:`harness.catalogue`.

Public API:

* :func:`infer_shapes(net) <infer_shapes>` -> :class:`NetShapes`: per layer the bottom and top shapes (NCHW, as Caffe
  has them), the parameter (blob) shapes Caffe expects, the multiply-adds; per blob its shape.
* :func:`param_shapes(layer, bottom_shapes) <param_shapes>`: the weight blob shapes Caffe creates for a layer.
* :func:`check_blob_shapes(net) <check_blob_shapes>`: compares attached weights to :func:`param_shapes`.
* :func:`check_budget(net_shapes, budget_bytes) <check_budget>`: refuses nets whose activations would not fit.

Every rule is written from Caffe's source (``src/caffe/layers/*.cpp``) and quoted in the docstring where it is coded,
one module per layer family (``io``, ``conv``, ``pooling``, ``norm``, ``affine``, ``activation``, ``shape``,
``eltwise``, ``reduce``, ``resize``, ``detection``, as :mod:`harness.reference` and :mod:`harness.convert`); shared
setup checks are in ``_checks``, the net walk in ``_infer``, the memory budget in ``_budget``.  The reference and the
converter derive output sizes themselves (DEVELOPERS.md: separate derivations); the converter may read bottom shapes
from here.  Layer parameters are read with :mod:`harness.params` (reading only).

Each shape function is registered in :data:`harness.shapes.registry.SHAPES` as
``fn(layer, bottom_shapes: list[tuple[int, ...]]) -> list[tuple[int, ...]]`` (one shape per top).  Caffe's ``CHECK``
failures become :class:`~harness.errors.ShapeError` / :class:`~harness.errors.UnsupportedParam` naming the layer,
the field and the value.
"""

from __future__ import annotations

from ._budget import DEFAULT_BUDGET_BYTES, check_budget, default_budget, parse_bytes
from ._checks import Shape, canonical_axis, count
from ._infer import LayerShapes, NetShapes, check_blob_shapes, expected_param_shapes, infer_shapes, param_shapes
from .conv import conv_out_size, deconv_out_size
from .nonfinite import nan_by_construction
from .detection import DATA_DEPENDENT_TYPES, detection_output_rows, num_priors, prior_aspect_ratios
from .pooling import pool_out_size, spp_level_geometry
from .registry import MACS, PARAM_SHAPES, SHAPES
from .resize import interp_out_size
from .shape import permute_order

__all__ = [
    "LayerShapes", "NetShapes", "PARAM_SHAPES", "MACS", "infer_shapes", "param_shapes", "check_blob_shapes",
    "check_budget", "default_budget", "count", "canonical_axis", "conv_out_size", "deconv_out_size", "pool_out_size",
    "spp_level_geometry", "interp_out_size", "num_priors", "prior_aspect_ratios", "detection_output_rows",
    "permute_order", "expected_param_shapes", "nan_by_construction", "parse_bytes", "DEFAULT_BUDGET_BYTES", "DATA_DEPENDENT_TYPES", "SHAPES",
    "Shape",
]
