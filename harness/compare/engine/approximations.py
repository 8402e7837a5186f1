"""Measuring the layers a conversion approximated (``convert(..., allow_approx=True)``) against the reference.

The converter never runs the reference (the two are separate derivations of Caffe's rules): it records what it
approximated, and this module, which sits above both, measures the error on seeded inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...net import Net


def measure_approximations(model: Any, net: Net, *, seed: int = 0) -> list[dict]:
    """Set ``max_abs_error`` of every approximation in ``model.harness_mapping`` to the largest absolute difference
    of the layer's records from the float64 reference on seeded standard-normal inputs; returns the list."""
    from ...convert import keras_blob, mapping_of
    from ...reference import forward

    mapping = mapping_of(model) or {}
    approximations = mapping.get("approximations") or []
    if not approximations:
        return approximations
    rng = np.random.default_rng(seed)
    inputs = {b: rng.standard_normal(tuple(s)).astype(np.float32) for b, s in net.inputs.items()}
    ref = forward(net, inputs, np.float64)
    for a in approximations:
        errs = []
        for k, m in mapping.get("keys", {}).items():
            if k.split("/", 1)[0] != a["layer"] or k not in ref:
                continue
            got, want = keras_blob(model, m, inputs, net), ref[k]
            if got.shape == want.shape:
                errs.append(float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0)
        if errs:
            a["max_abs_error"] = max(errs)
    return approximations
