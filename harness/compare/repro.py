"""``check --repro DIR``: cut one divergent pair out of both models into a self-contained case that reproduces it.

The case is the pair's Caffe span (its bottoms become ``Input`` layers named after the bottom blobs, of the
reference's shapes) with that span's weights, the values of those bottoms (the reference's when the pair fails in
isolation; the Keras model's chained values when it fails only chained: then the span starts at the first pair
whose chained error exceeds its bound), and a Keras model built from the user's own Keras layers (same classes,
configs and weights) between new inputs at the tensors of those bottoms and the pair's tensor.  Everything is written
into a temporary folder next to DIR and renamed to DIR at the end, so an error leaves nothing behind.

Files: ``net.prototxt``, ``weights.caffemodel``, ``inputs.npz`` (NCHW float32 keyed by Input blob), ``model.keras``,
``README.md`` (what diverged, the cause and fix, the command) and ``test_repro.py`` (pytest, asserts the verdict).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import HarnessError
from ..net import Layer, Net
from .engine.passes import Session
from .reports.report import Report
from .reports.result import FirstDivergence, LayerResult, cause_dict

FILES = ("net.prototxt", "weights.caffemodel", "inputs.npz", "model.keras", "README.md", "test_repro.py")


@dataclass
class Case:
    """What one repro holds: the Caffe span, its boundary (record key -> blob), the bottom values and what to expect."""

    layers: list[Layer]
    boundary: dict[str, str]  # "<producer>/<blob>" outside the span -> blob name (the Input it becomes)
    values: dict[str, np.ndarray]  # blob -> NCHW float32
    target: LayerResult
    expected_layer: str
    expected_cause: str | None
    fd: FirstDivergence | None
    chained_only: bool


def check_repro_dir(path: str | os.PathLike) -> Path:
    """Refuse, before anything runs, a DIR that cannot be created: its parent must be a folder and DIR itself
    absent or an empty folder."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise HarnessError(f"--repro {str(path)!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise HarnessError(f"--repro {str(path)!r}: directory {str(parent)!r} is not writable")
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise HarnessError(f"--repro {str(path)!r} exists and is not an empty folder")
    return p


# ------------------------------------------------------------------------------------------------------------------
# Which pair


def choose_target(report: Report, layer: str | None) -> tuple[LayerResult, FirstDivergence | None]:
    """The report's result for the pair to reproduce (the first divergence, or the one naming Caffe layer
    ``layer``) and its diagnosed divergence (None for a pair that fails only chained after the first)."""
    by_key = {lr.key: lr for lr in report.layers}
    fds = [fd for fd in [report.first_divergence, *report.divergences] if fd is not None and fd.key in by_key]
    if layer is None:
        if not fds:
            raise HarnessError("--repro: no matched layer pair diverges, there is nothing to reproduce")
        return by_key[fds[0].key], fds[0]
    for fd in fds:
        lr = by_key[fd.key]
        if layer in (fd.caffe_layer, lr.caffe_layer, *lr.segment):
            return lr, fd
    for lr in report.layers:
        if layer in (lr.caffe_layer, *lr.segment):
            if lr.passed:
                raise HarnessError(f"--repro-layer {layer!r}: Caffe layer {layer!r} does not diverge "
                                   f"(diverging: {', '.join(l.caffe_layer for l in report.failed()) or 'none'})")
            return lr, None
    raise HarnessError(f"--repro-layer {layer!r} is not a Caffe layer of the report (compared: "
                       f"{', '.join(lr.caffe_layer for lr in report.layers[:20])})")


def _chained_start(report: Report, target: LayerResult) -> LayerResult:
    """The first pair, up to the target, whose chained error exceeds its bound (where the chained failure starts)."""
    for lr in report.layers:
        if lr.chained is not None and not lr.chained.passed:
            return lr
        if lr.key == target.key:
            break
    return target


# ------------------------------------------------------------------------------------------------------------------
# The Caffe span and its boundary


def _producer_index(net: Net, before: int, blob: str) -> int | None:
    """Index of the last layer before ``before`` that writes ``blob``."""
    for i in range(before - 1, -1, -1):
        if blob in net.layers[i].tops:
            return i
    return None


def _span_from(net: Net, lo: int, target: int) -> tuple[list[int], dict[str, str]]:
    """Layers in [lo, target] the target depends on, and the records they read from before ``lo``."""
    todo, span, boundary = [target], set(), {}
    while todo:
        i = todo.pop()
        if i in span:
            continue
        span.add(i)
        for b in net.layers[i].bottoms:
            j = _producer_index(net, i, b)
            if j is None:
                raise HarnessError(f"--repro: blob {b!r} of layer {net.layers[i].name!r} has no producer")
            if j >= lo:
                todo.append(j)
            else:
                boundary[f"{net.layers[j].name}/{b}"] = b
    return sorted(span), boundary


def _cut(s: Session, first_layer: str, target_layer: str, tensor_of) -> tuple[list[Layer], dict[str, str]]:
    """The span from ``first_layer`` to ``target_layer``, moved up until every boundary record has a Keras tensor."""
    names = [lay.name for lay in s.net.layers]
    lo, target = names.index(first_layer), names.index(target_layer)
    while True:
        idx, boundary = _span_from(s.net, lo, target)
        missing = [k for k in boundary if tensor_of(k) is None]
        if not missing:
            break
        lo = min(names.index(k.rsplit("/", 1)[0]) for k in missing)
    blobs = list(boundary.values())
    if len(set(blobs)) != len(blobs):
        raise HarnessError(f"--repro: the span {names[lo]}..{target_layer} reads two versions of one blob "
                           f"({', '.join(blobs)}); choose another layer with --repro-layer")
    return [s.net.layers[i] for i in idx], boundary


def _tensor_lookup(s: Session):
    from .engine.loading import input_tensors

    inputs = input_tensors(s.net, s.keras_model)

    def tensor_of(key: str) -> Any:
        return s.tensors.get(key, inputs.get(key))

    return tensor_of


def build_case(report: Report, s: Session, chained: Mapping[str, Any], layer: str | None) -> tuple[Case, Any]:
    """The case for the chosen pair, and a function giving the Keras tensor of a record key."""
    target, fd = choose_target(report, layer)
    iso_fails = target.isolated is not None and not target.isolated.passed
    start = target if iso_fails else _chained_start(report, target)
    pair = {p.key: p for p in s.pairs}
    first_layer = (pair[start.key].segment or (start.caffe_layer,))[0]
    tensor_of = _tensor_lookup(s)
    layers, boundary = _cut(s, first_layer, target.caffe_layer, tensor_of)
    values = {}
    for key, blob in boundary.items():
        v = s.ref[key] if iso_fails or key not in chained else chained[key]
        if key in s.tensors and not iso_fails and isinstance(chained.get(key), Exception):
            raise HarnessError(f"--repro: the chained Keras value of {key!r} could not be computed")
        if not iso_fails and key not in chained:  # a net input: both sides get the same data
            v = s.data.get(blob, v)
        values[blob] = np.ascontiguousarray(np.asarray(v, np.float32))
    causes = [cause_dict(c) for c in (fd.diagnosis if fd is not None else [])]
    case = Case(layers, boundary, values, target, fd.caffe_layer if fd is not None else target.caffe_layer,
                causes[0]["cause"] if causes else None, fd, not iso_fails)
    return case, tensor_of


# ------------------------------------------------------------------------------------------------------------------
# The Caffe files


def sub_net(net: Net, case: Case) -> tuple[str, Net]:
    """The span as a net of its own (prototxt text, loaded net with its blobs): one ``Input`` per boundary blob,
    then the span's layers."""
    from google.protobuf import text_format

    from ..caffe import attach_weights, load_net_text
    from ..proto import caffe_pb2 as pb

    netp = pb.NetParameter(name=f"{net.name}_repro")
    for blob, v in case.values.items():
        lp = netp.layer.add(name=blob, type="Input")
        lp.top.append(blob)
        lp.input_param.shape.add().dim.extend(int(d) for d in v.shape)
    for lay in case.layers:
        netp.layer.add().CopyFrom(lay.param)
    text = text_format.MessageToString(netp)
    out = load_net_text(text, source="net.prototxt")
    weights = {lay.name: lay.blobs for lay in case.layers if lay.blobs}
    return text, (attach_weights(out, weights) if weights else out)


def weight_count(net: Net) -> int:
    return sum(int(np.asarray(b).size) for lay in net.layers for b in lay.blobs)


# ------------------------------------------------------------------------------------------------------------------
# The Keras sub-model


def _clone(op: Any, clones: dict[int, Any]) -> Any:
    """The user's layer again (same class, config and name), once per layer; other operations are reused."""
    import keras

    if id(op) not in clones:
        clones[id(op)] = op.__class__.from_config(op.get_config()) if isinstance(op, keras.layers.Layer) else op
    return clones[id(op)]


def _rebuild(t: Any, new: dict[int, Any], clones: dict[int, Any], walked: list[Any]) -> Any:
    """The new tensor standing for ``t``: ``t``'s producing node re-applied to the rebuilt inputs, back to the
    boundary tensors (``new``)."""
    import keras

    if id(t) in new:
        return new[id(t)]
    op, node_index, _ = t._keras_history
    node = op._inbound_nodes[node_index]
    if node.is_input:
        raise HarnessError(f"--repro: the Keras graph reaches model input {op.name!r} without passing the tensors "
                           "of the span's Caffe bottoms; choose another layer with --repro-layer")
    vals = {id(x): _rebuild(x, new, clones, walked) for x in node.input_tensors}
    args, kwargs = node.arguments.fill_in(vals)
    layer = _clone(op, clones)
    flat = keras.tree.flatten(layer(*args, **kwargs))
    if layer is not op and (op, layer) not in walked:
        walked.append((op, layer))
    for o, v in zip(node.outputs, flat):
        new[id(o)] = v
    return new[id(t)]


def sub_model(s: Session, case: Case, tensor_of) -> tuple[Any, int]:
    """A keras.Model from new Inputs (the Keras layout of the boundary tensors, named after the blobs) through the
    pair's Keras layer and the helper layers in front of it; returns it and its weight count."""
    import keras

    from ..convert import keras_name

    new: dict[int, Any] = {}
    inputs = []
    for key, blob in case.boundary.items():
        t = tensor_of(key)
        x = keras.Input(tuple(t.shape[1:]), dtype=t.dtype, name=keras_name(blob))
        new[id(t)] = x
        inputs.append(x)
    walked: list[Any] = []
    out = _rebuild(s.tensors[case.target.key], new, {}, walked)
    for op, layer in walked:
        layer.set_weights(op.get_weights())
    model = keras.Model(inputs[0] if len(inputs) == 1 else inputs, out,
                        name=getattr(s.keras_model, "name", "keras"))
    return model, sum(int(np.size(w)) for op, _ in walked for w in op.get_weights())


# ------------------------------------------------------------------------------------------------------------------
# README, test and the files


def _command(custom_objects: Sequence[str], atol: float | None, rtol: float | None) -> str:
    parts = ["caffe-harness check net.prototxt --weights weights.caffemodel --keras model.keras --inputs inputs.npz"]
    parts += [f"--custom-objects {spec}" for spec in custom_objects]
    parts += [f"--{name} {v!r}" for name, v in (("atol", atol), ("rtol", rtol)) if v is not None]
    return " ".join(parts)


def _verdict_lines(case: Case) -> list[str]:
    lr, fd = case.target, case.fd
    mode = fd.mode if fd is not None else "chained"
    typ = next((lay.type for lay in case.layers if lay.name == case.expected_layer), lr.layer_type)
    lines = [f"Caffe {case.expected_layer!r} ({typ}) <-> Keras {lr.keras_layer!r} [{mode}]"]
    if fd is not None and fd.line is not None:
        lines.append(f"at {fd.where}")
    lines += [str(r) for r in (lr.isolated, lr.chained) if r is not None and not r.passed]
    for c in (cause_dict(c) for c in (fd.diagnosis if fd is not None else [])):
        lines.append(f"- {c['cause']} (confidence {float(c['confidence']):.2f}): {c['explanation']}")
        if c.get("fix"):
            lines.append(f"  fix: {c['fix']}")
    return lines


def readme_text(case: Case, command: str, sizes: tuple[int, int, int, int]) -> str:
    span = ", ".join(lay.name for lay in case.layers)
    inputs = ", ".join(f"`{b}` {list(v.shape)}" for b, v in case.values.items())
    source = ("the Keras model's chained values (the layer fails only on what the Keras model feeds it)"
              if case.chained_only else "the float64 reference's values, as float32")
    body = "\n".join(_verdict_lines(case))
    return (f"# Reproduction: Caffe {case.expected_layer!r} diverges\n\n"
            f"What diverged (from the `caffe-harness check` that wrote this folder):\n\n```text\n{body}\n```\n\n"
            f"The case is the Caffe span {span} (bottoms as `Input` layers: {inputs}; values: {source}) and the "
            f"Keras layers of the port that compute it, with their own weights: {sizes[0]} of the net's "
            f"{sizes[1]} Caffe weights, {sizes[2]} of the model's {sizes[3]} Keras weights.\n\n"
            f"Reproduce, from this folder (exit 1, first divergent layer {case.expected_layer!r}"
            + (f", cause `{case.expected_cause}`" if case.expected_cause else "") + "):\n\n"
            f"```sh\n{command}\npython -m pytest test_repro.py\n```\n\n"
            "Files: `net.prototxt` + `weights.caffemodel` (the Caffe span), `inputs.npz` (NCHW float32, keyed by "
            "Input blob), `model.keras` (the Keras sub-model, safe mode), `test_repro.py`.\n")


_TEST = '''"""Reproduces the divergence of Caffe {layer!r} (written by caffe-harness check --repro)."""

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
EXPECTED_LAYER = {layer!r}
EXPECTED_CAUSE = {cause!r}
CUSTOM_OBJECTS = {custom!r}
ATOL, RTOL = {atol!r}, {rtol!r}


def test_repro_reproduces_the_verdict():
    import harness
    from harness.compare import resolve_custom_objects
    from harness.compare.reports.result import cause_dict

    with np.load(HERE / "inputs.npz") as z:
        inputs = {{k: z[k] for k in z.files}}
    report = harness.compare(str(HERE / "net.prototxt"), str(HERE / "model.keras"), inputs,
                             weights=str(HERE / "weights.caffemodel"), atol=ATOL, rtol=RTOL,
                             custom_objects=resolve_custom_objects(CUSTOM_OBJECTS))
    assert not report, report.verdict()
    fd = report.first_divergence
    assert fd is not None and fd.caffe_layer == EXPECTED_LAYER, report.verdict()
    if EXPECTED_CAUSE is not None:
        assert fd.diagnosis and cause_dict(fd.diagnosis[0])["cause"] == EXPECTED_CAUSE, report.verdict()
'''


def write_repro(report: Report, s: Session, chained: Mapping[str, Any], out: str | os.PathLike, *,
                layer: str | None = None, custom_objects: Sequence[str] = (), atol: float | None = None,
                rtol: float | None = None) -> Path:
    """Write the case of the chosen pair into ``out`` (see the module docstring); returns the folder."""
    from ..caffe import write_caffemodel
    from ..convert import save_model

    target = check_repro_dir(out)
    case, tensor_of = build_case(report, s, chained, layer)
    text, net = sub_net(s.net, case)
    model, kw = sub_model(s, case, tensor_of)
    sizes = (weight_count(net), weight_count(s.net), kw, int(s.keras_model.count_params()))
    parent = target.parent if str(target.parent) else Path(".")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
    try:
        (tmp / "net.prototxt").write_text(text, encoding="utf-8")
        write_caffemodel(net, tmp / "weights.caffemodel")
        np.savez(tmp / "inputs.npz", **case.values)
        save_model(model, tmp / "model.keras")
        command = _command(custom_objects, atol, rtol)
        (tmp / "README.md").write_text(readme_text(case, command, sizes), encoding="utf-8")
        (tmp / "test_repro.py").write_text(_TEST.format(layer=case.expected_layer, cause=case.expected_cause,
                                                        custom=list(custom_objects), atol=atol, rtol=rtol),
                                           encoding="utf-8")
        if target.is_dir():
            target.rmdir()  # empty (checked)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
