"""Shared machinery of the property suite: example budgets per profile, running a drawn case through the reference
and the converted Keras model cheaply, and failure messages that carry the pasteable prototxt.

Speed (see benchmarks/bench_properties.py): a converted single-layer model is called eagerly (``model(x)``) --
no ``predict``/``tf.function`` tracing for a model that runs once; the Keras session is cleared only every
``CLEAR_EVERY`` models so that the graph of dead models does not grow without bound.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pytest
from hypothesis import settings

from harness.backends import to_numpy  # any Keras backend's tensors (torch ones may require grad)
from harness.strategies import NetCase

CLEAR_EVERY = 200
_built = 0


def examples(weight: float = 1.0, minimum: int = 2) -> int:
    """The active profile's ``max_examples`` scaled by ``weight`` (so one profile sets every property's budget)."""
    return max(minimum, int(math.ceil(settings().max_examples * weight)))


def to_keras(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if a.ndim == 4 else a


def to_caffe(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2)) if a.ndim == 4 else a


def convert(net, **kwargs):
    """harness.convert.convert, clearing the Keras session now and then (never per example: that costs ~5 ms)."""
    global _built
    from harness.convert import convert as conv

    _built += 1
    if _built % CLEAR_EVERY == 0:
        import keras

        keras.backend.clear_session()
    return conv(net, **kwargs)


def keras_outputs(model, net, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the converted model eagerly on NCHW ``inputs``; return its outputs keyed ``"<layer>/<top>"`` in Caffe's
    layout (the output blob's last writer names the key)."""
    xs = [to_keras(np.asarray(inputs[b], np.float32)) for b in net.inputs]
    out = model(xs if len(xs) > 1 else xs[0], training=False)
    if not isinstance(out, Mapping):
        out = dict(zip(net.outputs, out if isinstance(out, (list, tuple)) else [out]))
    last_writer = {}
    for lay in net.layers:
        for t in lay.tops:
            last_writer[t] = lay.name
    return {f"{last_writer[b]}/{b}": to_caffe(to_numpy(v)) for b, v in out.items()}


def _evaluate(tensors: list, known: dict[int, Any]) -> list:
    """Values of Keras functional-graph ``tensors`` given the inputs' values (``{id(tensor): value}``): each node's
    operation is called once, eagerly, on the values of its inbound tensors.  Cheaper than building a probe
    ``keras.Model`` over the intermediate tensors (that costs ~10 ms of graph bookkeeping per example)."""
    import keras

    memo = dict(known)

    def value(t):
        tid = id(t)
        if tid in memo:
            return memo[tid]
        op, node_index, _ = t._keras_history
        node = op._inbound_nodes[node_index]
        vals = {id(x): value(x) for x in node.input_tensors}
        args, kwargs = node.arguments.fill_in(vals)
        flat = keras.tree.flatten(op(*args, **kwargs))
        for o, v in zip(node.outputs, flat):
            memo[id(o)] = v
        return memo[tid]

    return [value(t) for t in tensors]


def keras_records(model, net, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every ``"<layer>/<top>"`` the converted model's ``harness_mapping`` names, in Caffe's layout, evaluated eagerly
    from the model's inputs (one call per Keras layer)."""
    mapping = (getattr(model, "harness_mapping", None) or {}).get("keys")
    if not mapping:
        return keras_outputs(model, net, inputs)
    keys, tensors = [], []
    for key, m in mapping.items():
        out = model.get_layer(m["layer"]).output
        keys.append(key)
        tensors.append(out[m["index"]] if isinstance(out, (list, tuple)) else out)
    xs = [to_keras(np.asarray(inputs[b], np.float32)) for b in net.inputs]
    known = {id(t): x for t, x in zip(model.inputs, xs)}
    res = {}
    for key, v in zip(keys, _evaluate(tensors, known)):
        v = to_numpy(v)
        res[key] = to_caffe(v) if mapping[key]["layout"] == "nhwc" else v
    return res


# Rounding of float32 arithmetic relative to the data's scale: a few dozen ulps (the longest accumulation in these
# small cases is a few hundred terms).  The scale of a record is the larger of its own max |value| and its layer's
# bottoms' (a mean of O(1) values that cancels to 2e-4 still carries O(1) * eps rounding).  Integer-valued outputs
# (ArgMax indices, Threshold) then match exactly.
REL_TOL = 2e-5


def record_scales(net, records: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``{"<layer>/<top>": max(max|record|, max|bottom records|)}`` in execution order."""
    latest: dict[str, float] = {}
    scales: dict[str, float] = {}
    for lay in net.layers:
        if lay.kind == "Input":
            for t in lay.tops:
                key = f"{lay.name}/{t}"
                if key in records:
                    latest[t] = scales[key] = float(np.max(np.abs(records[key]), initial=0.0))
            continue
        below = max((latest.get(b, 0.0) for b in lay.bottoms), default=0.0)
        for t in lay.tops:
            key = f"{lay.name}/{t}"
            own = float(np.max(np.abs(records[key]), initial=0.0)) if key in records else 0.0
            scales[key] = max(own, below)
            latest[t] = own
    return scales


def compare_records(expected: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray], *,
                    rel_tol: float = REL_TOL, scales: Mapping[str, float] | None = None) -> list[str]:
    """Problems (empty when equivalent): a missing key, a shape mismatch, or an error beyond ``rel_tol`` times the
    record's scale (``scales``, default: its own max |value|)."""
    problems = []
    for key, got in actual.items():
        if key not in expected:
            problems.append(f"{key}: produced by Keras, no such reference record")
            continue
        ref = np.asarray(expected[key], np.float64)
        got = np.asarray(got, np.float64)
        if ref.shape != got.shape:
            problems.append(f"{key}: shape {got.shape} (Keras, in Caffe order) != reference {ref.shape}")
            continue
        if ref.size == 0:
            continue
        if not np.isfinite(got).all() and np.isfinite(ref).all():
            problems.append(f"{key}: Keras has NaN/Inf where the reference has none")
            continue
        err = np.abs(got - ref)
        scale = float(np.max(np.abs(ref)))
        if scales is not None:
            scale = max(scale, scales.get(key, 0.0))
        bound = rel_tol * max(scale, 1e-6)
        worst = float(err.max())
        if worst > bound:
            idx = np.unravel_index(int(np.argmax(err)), err.shape)
            problems.append(f"{key}: max |keras - ref| = {worst:.3g} > {bound:.3g} ({rel_tol:g} x scale "
                            f"{scale:.3g}) at NCHW index {tuple(int(i) for i in idx)}: keras {float(got[idx]):.8g}, "
                            f"ref {float(ref[idx]):.8g}")
    return problems


def fail_with_case(case: NetCase, problems: list[str], what: str) -> None:
    """Write the case to a fresh directory and fail with the problems, the prototxt and the replay command."""
    d = case.write()
    msg = "\n".join([
        f"{what}:",
        *("  " + p for p in problems),
        "minimal net (paste into Caffe or save as net.prototxt):",
        case.to_prototxt().rstrip(),
        f"files: {d} (net.prototxt, weights.caffemodel, weights.npz, inputs.npz)",
        f"replay: {case.replay_hint(d)}",
    ])
    pytest.fail(msg, pytrace=False)


def use_comparator():
    """harness.compare.compare (imported on first use: the comparator pulls in its report machinery)."""
    from harness.compare import compare

    return compare
