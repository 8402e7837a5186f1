"""The pure-NumPy Caffe reference: Caffe's TEST-phase forward pass, layer by layer (no Keras/TensorFlow here).

``forward(net, inputs)`` runs every layer of a loaded :class:`~harness.net.Net` in execution order and records every
top right after its layer ran, keyed ``"<layer>/<top>"`` -- the keys of the real-Caffe golden files, minus Caffe's
auto-inserted Split layers.  One module per layer family registers its layers in :data:`REFERENCE`.
"""

from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np

from ..catalogue import is_source, traits
from ..errors import HarnessError, ResourceError, ShapeError
from ..net import Layer, Net
from .registry import REFERENCE

# Every family module, imported explicitly so that each registers its layers in REFERENCE.
from . import _memory, _window, conv, pooling, lrn, norm, affine  # noqa: E402,F401  (reference A)
from . import activation, shape, eltwise, reduce, resize, detection, io  # noqa: E402,F401  (reference B)

__all__ = ["REFERENCE", "forward", "forward_iter", "prepare_inputs", "random_inputs"]

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def random_inputs(net: Net, *, seed: int = 0, dtype=np.float64) -> dict[str, np.ndarray]:
    """Seeded inputs of the net's input shapes (NCHW), in declaration order: standard normal, except that an input
    read by an Embed layer gets integer indices in ``[0, input_dim)`` (the only values Embed accepts)."""
    rng = np.random.default_rng(seed)
    index_range: dict[str, int] = {}
    for lay in net.layers:
        if traits(lay.kind).indices and lay.bottoms and lay.bottoms[0] in net.inputs:
            dim = int(lay.p("embed_param").input_dim)
            if dim > 0:
                index_range[lay.bottoms[0]] = min(dim, index_range.get(lay.bottoms[0], dim))
    out = {}
    for name, shape in net.inputs.items():
        if name in index_range:
            out[name] = rng.integers(0, index_range[name], size=tuple(shape)).astype(dtype)
        else:
            out[name] = rng.standard_normal(tuple(shape)).astype(dtype)
    return out


def _check_budget(net: Net, dtype: np.dtype) -> None:
    """Refuse a net whose recorded activations exceed the memory budget, before anything is allocated.

    Uses the shape side's ``infer_shapes`` + ``check_budget`` (only the totals; the reference derives its own
    sizes).  A net the shape side cannot infer is left to the reference's own per-layer checks.
    """
    from ..shapes import check_budget, infer_shapes

    try:
        net_shapes = infer_shapes(net)
    except HarnessError:
        return
    check_budget(net_shapes, itemsize=dtype.itemsize)


def prepare_inputs(net: Net, inputs: Mapping[str, np.ndarray] | None, dtype: np.dtype,
                   seed: int) -> dict[str, np.ndarray]:
    """The one input preparer: the given NCHW arrays (checked against the net's input shapes; an array that is the
    NHWC transpose of one is named as such), and :func:`random_inputs` (seeded; indices for Embed) for the rest."""
    given = dict(inputs or {})
    unknown = [k for k in given if k not in net.inputs]
    if unknown:
        raise ShapeError(f"net {net.name!r} has no input {unknown[0]!r} (inputs: {', '.join(net.inputs) or 'none'})")
    rnd = random_inputs(net, seed=seed, dtype=dtype) if any(k not in given for k in net.inputs) else {}
    out: dict[str, np.ndarray] = {}
    for name, shape in net.inputs.items():
        if name in given:
            arr = np.asarray(given[name])
            if tuple(arr.shape) != tuple(shape):
                if arr.ndim == 4 and len(shape) == 4 and tuple(arr.shape) == (shape[0], shape[2], shape[3], shape[1]):
                    raise ShapeError(f"input {name!r} has shape {tuple(arr.shape)}, which looks NHWC; the Caffe input "
                                     f"is {tuple(shape)} (NCHW): give it NCHW (x.transpose(0, 3, 1, 2))")
                raise ShapeError(f"input {name!r} has shape {tuple(arr.shape)}, the net expects {tuple(shape)} (NCHW)")
            if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
                raise ShapeError(f"input {name!r} has dtype {arr.dtype}, expected a numeric array")
            out[name] = arr.astype(dtype, copy=True)
        else:
            out[name] = rnd[name]
    return out


def _impl(layer: Layer):
    return REFERENCE[layer.kind]


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


def _shapes(arrs) -> str:
    return ", ".join(str(tuple(a.shape)) for a in arrs) or "none"


def forward(net: Net, inputs: Mapping[str, np.ndarray] | None = None, dtype=np.float64, *,
            seed: int = 0) -> dict[str, np.ndarray]:
    """Run ``net`` in Caffe's TEST phase and return every layer's every top, keyed ``"<layer>/<top>"``.

    ``inputs`` maps net input blobs to NCHW arrays (missing ones are seeded standard-normal of the net's input shape,
    ``seed``); their shapes must match the net's.  ``dtype`` float64 (default, the exact answer) or float32 (close to
    Caffe's own arithmetic).  Each record is taken right after its layer ran (in-place layers get their own entry,
    never aliased with another record).  Errors from a layer name it and its bottom shapes.
    """
    dt = np.dtype(dtype)
    if dt not in _DTYPES:
        raise HarnessError(f"dtype={dt} is not supported (float32, float64)")
    _check_budget(net, dt)
    _memory.retain_freed_memory()  # reuse freed pages from run to run instead of faulting in new ones (no value changes)
    blobs = prepare_inputs(net, inputs, dt, seed)
    try:
        return _run(net, blobs, dt)
    finally:
        _window.release_scratch()  # the window code's reusable work buffers live only for one forward


def forward_iter(net: Net, inputs: Mapping[str, np.ndarray] | None = None, dtype=np.float64, *,
                 seed: int = 0) -> Iterator:
    """:func:`forward` one layer at a time, holding only the live blobs: yields ``(layer, {"<layer>/<top>":
    array})`` right after each layer ran, bit for bit the records of :func:`forward`; a blob is dropped from the pass
    once its last reader ran (what the caller keeps is its own).  No budget check of all the records: a streaming
    caller holds only the live set (:func:`harness.shapes.live_activation_bytes` estimates it)."""
    dt = np.dtype(dtype)
    if dt not in _DTYPES:
        raise HarnessError(f"dtype={dt} is not supported (float32, float64)")
    _memory.retain_freed_memory()
    blobs = prepare_inputs(net, inputs, dt, seed)
    try:
        yield from run_layers(net, blobs, dt)
    finally:
        _window.release_scratch()


def _run(net: Net, blobs: dict[str, np.ndarray], dt: np.dtype) -> dict[str, np.ndarray]:
    records: dict[str, np.ndarray] = {}
    for _layer, recs in run_layers(net, blobs, dt, free=False):
        records.update(recs)
    return records


def run_layers(net: Net, blobs: Mapping[str, np.ndarray], dt: np.dtype, *, free: bool = True) -> Iterator:
    """The forward pass one layer at a time: yields ``(layer, {"<layer>/<top>": array})`` right after each layer
    ran (the arrays :func:`forward` records, computed the same way).  ``free``: a blob no later layer reads is
    dropped from the pass's own environment as soon as its last reader ran, so the pass itself holds only the live
    blobs (the caller keeps what it needs of the yielded records)."""
    env: dict[str, np.ndarray] = {}
    last = _last_readers(net) if free else {}
    for i, layer in enumerate(net.layers):
        bottoms = _bottoms(layer, blobs, env)
        outs = _call(layer, bottoms, dt)
        recs = {}
        for top, out in zip(layer.tops, outs):
            out = np.asarray(out)
            # Never alias a bottom or an earlier record (views from Flatten/Reshape/Dropout, in-place layers).
            if any(np.may_share_memory(out, b) for b in bottoms):
                out = out.copy()
            env[top] = out
            recs[f"{layer.name}/{top}"] = out
        del bottoms, outs
        if free:
            for b in [b for b in env if last.get(b, -1) <= i]:
                del env[b]
        yield layer, recs


def _last_readers(net: Net) -> dict[str, int]:
    """Blob name -> the index of the last layer reading it (a blob overwritten in place is read by its writer)."""
    last: dict[str, int] = {}
    for i, layer in enumerate(net.layers):
        for b in layer.bottoms:
            last[b] = i
    return last


def _bottoms(layer: Layer, blobs: Mapping[str, np.ndarray], env: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    if is_source(layer.kind):
        # The driver feeds the user's array for each top as the Input layer's "bottom".
        for top in layer.tops:
            if top not in blobs:
                raise ShapeError(f"Input {layer.name!r}: top {top!r} is not one of the net's inputs")
        return [blobs[t] for t in layer.tops]
    missing = [b for b in layer.bottoms if b not in env]
    if missing:
        raise ShapeError(f"{layer.type} {layer.name!r}: bottom {missing[0]!r} is not produced by any "
                         f"earlier layer")
    return [env[b] for b in layer.bottoms]


def _call(layer: Layer, bottoms: list[np.ndarray], dt: np.dtype) -> list:
    fn = _impl(layer)
    try:
        # Read-only views: a layer that wrote into its bottom would corrupt an earlier record; make it fail loudly.
        outs = fn(layer, [_readonly(b) for b in bottoms], dtype=dt)
    except HarnessError as e:
        msg = str(e)
        if layer.name not in msg:
            msg = f"{layer.type} {layer.name!r}: {msg}"
        raise type(e)(f"{msg} (bottom shapes: {_shapes(bottoms)})") from e
    except MemoryError as e:
        raise ResourceError(f"{layer.type} {layer.name!r}: out of memory computing the reference "
                            f"(bottom shapes: {_shapes(bottoms)})") from e
    except Exception as e:  # a NumPy/math failure inside the layer: name the layer and its inputs
        raise HarnessError(f"{layer.type} {layer.name!r}: {type(e).__name__}: {e} "
                           f"(bottom shapes: {_shapes(bottoms)})") from e
    if len(outs) != len(layer.tops):
        raise HarnessError(f"{layer.type} {layer.name!r}: the reference produced {len(outs)} tops, the layer "
                           f"declares {len(layer.tops)}")
    return outs

