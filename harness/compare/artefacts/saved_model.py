"""The SavedModel side of ``check --saved-model DIR [--signature NAME]``: open the folder, check its serving
signature against the Caffe net's inputs and outputs, run it, and read back every intermediate the export preserves.

A SavedModel is a TensorFlow graph: :func:`tf.saved_model.load` restores the graph and the variables, and no Python
code from the folder runs.

Intermediates: the signature's concrete function is frozen (``convert_variables_to_constants_v2`` inlines the
function bodies and turns the variables into constants), so every op of the traced Keras model is a node of one
GraphDef named ``.../<model scope>/<layer scope>/<op>``.  Keras runs each layer's ``call`` in a TensorFlow name scope
named after the layer; tracing reuses the names once, so TensorFlow made each scope unique with a ``_<n>`` suffix
(``conv1_1`` for the layer ``conv1``, ``zero_padding2d_1_2`` for ``zero_padding2d_1``), as in TFLite tensor
names; the artefact core (:func:`harness.compare.artefacts.pairing.named_layers`) reads a name with or without it.  A layer's
outputs are the tensors its scope hands to an op outside it (:func:`layer_scopes`); the graph is imported once more
and pruned to those fetches (:func:`read_intermediates`).  An export where the layers left no
scopes (a JAX-backend export is one ``XlaCallModule`` op) has no readable intermediates: outputs only, with a note.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import numpy as np

from ...catalogue import completes, traits, window
from ...errors import HarnessError, KerasModelError

DEFAULT_SIGNATURE = "serving_default"
# names Keras / TensorFlow give a signature input that was not named (the port named no input)
_GENERIC_INPUT = re.compile(r"^(inputs?|input_\d+|args_\d+|x|keras_tensor(_\d+)?|input_layer(_\d+)?)$")

__all__ = ["DEFAULT_SIGNATURE", "SavedModel", "open_saved_model", "signature_inputs", "signature_outputs",
           "run_signature", "read_intermediates", "layer_scopes", "compare_saved_model",
           "open_artefact", "judge", "describe"]


class Spec(NamedTuple):
    name: str
    dtype: str
    shape: tuple  # None for a free axis


class SavedModel(NamedTuple):
    path: str
    signature: str
    fn: Any  # the signature's concrete function
    inputs: list  # [Spec] in the function's positional order
    outputs: list  # [Spec] sorted by name (a signature's outputs are a dict)


def _spec(name: str, s: Any) -> Spec:
    dims = tuple(None if d is None else int(d) for d in s.shape.as_list()) if s.shape.rank is not None else None
    return Spec(name, s.dtype.name, dims)


def _not_a_saved_model(p: Path) -> str | None:
    where = repr(str(p))
    if not p.exists():
        return f"--saved-model {where} does not exist"
    if not p.is_dir():
        hint = " (a Keras model file: pass it with --keras)" if p.suffix in (".keras", ".h5") else ""
        return f"--saved-model {where} is a file, not a SavedModel folder{hint}"
    if not (p / "saved_model.pb").is_file() and not (p / "saved_model.pbtxt").is_file():
        return f"--saved-model {where} is not a SavedModel folder (it has no saved_model.pb)"
    return None


def open_saved_model(path: str | os.PathLike, signature: str | None = None) -> SavedModel:
    """Load the SavedModel at ``path`` and pick ``signature`` (default ``serving_default``); a folder that is not a
    SavedModel, one that cannot be loaded and an unknown signature (the message lists those it has) are refused by
    name."""
    p = Path(path)
    refusal = _not_a_saved_model(p)
    if refusal:
        raise KerasModelError(refusal)
    import tensorflow as tf

    # TensorFlow runs float32 matmuls / convolutions in TF32 on Ampere+ GPUs by default (~3e-4 relative error): the
    # SavedModel runs on TensorFlow whatever the Keras backend, so full float32 is set here, as the converter does
    try:
        tf.config.experimental.enable_tensor_float_32_execution(False)
    except Exception:  # noqa: BLE001 - an old TensorFlow without the switch
        pass
    try:
        loaded = tf.saved_model.load(str(p))
    except Exception as e:  # noqa: BLE001 - a corrupt folder raises many kinds
        raise KerasModelError(f"--saved-model {str(p)!r}: cannot load the SavedModel: {type(e).__name__}: "
                              f"{' '.join(str(e).split())[:300]}") from None
    sigs = dict(getattr(loaded, "signatures", {}) or {})
    name = signature or DEFAULT_SIGNATURE
    if name not in sigs:
        have = ", ".join(sorted(sigs)) or "none"
        raise KerasModelError(f"--saved-model {str(p)!r}: no signature {name!r} (its signatures: {have}); choose one "
                              f"with --signature NAME")
    fn = sigs[name]
    args, kwargs = fn.structured_input_signature
    flat = tf.nest.flatten((args, kwargs), expand_composites=True)
    names = [s.name or f"args_{i}" for i, s in enumerate(flat)]
    if kwargs and not args:  # signature functions take keyword arguments, flattened in sorted key order
        names = sorted(kwargs)
        flat = [kwargs[k] for k in names]
    outs = fn.structured_outputs
    outputs = [_spec(k, outs[k]) for k in sorted(outs)] if isinstance(outs, dict) else \
        [_spec(f"output_{i}", s) for i, s in enumerate(tf.nest.flatten(outs))]
    # keep the loaded object alive with the function (its variables belong to it)
    fn._harness_owner = loaded  # type: ignore[attr-defined]
    return SavedModel(str(p), name, fn, [_spec(n, s) for n, s in zip(names, flat)], outputs)


def _fits(spec_shape: tuple | None, shape: tuple) -> bool:
    return spec_shape is not None and len(spec_shape) == len(shape) and \
        all(d is None or d == s for d, s in zip(spec_shape, shape))


def _layout_of(sm: SavedModel, spec: Spec, blob: str, a: np.ndarray) -> str:
    """"nhwc" or "caffe": how the signature takes the NCHW blob ``a``; a shape that fits neither is refused."""
    nhwc = (a.shape[0], a.shape[2], a.shape[3], a.shape[1]) if a.ndim == 4 else None
    if nhwc is not None and _fits(spec.shape, nhwc):
        return "nhwc"
    if _fits(spec.shape, a.shape):
        return "caffe"
    want = f"{tuple(a.shape)} (NCHW)" + (f" or {nhwc} (NHWC)" if nhwc else "")
    raise KerasModelError(f"--saved-model {sm.path!r}: signature {sm.signature!r} input {spec.name!r} has shape "
                          f"{_shape_text(spec.shape)}, the net's input {blob!r} is {want}")


def _shape_text(shape: tuple | None) -> str:
    return "unknown" if shape is None else "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def signature_inputs(sm: SavedModel, blobs: list[str], data: Mapping[str, np.ndarray]) -> tuple[dict, dict, list]:
    """Pair the signature's inputs with the net's input ``blobs`` (``data``: their NCHW arrays): by name when the
    signature kept the blob names, else by position, with a notice naming the inputs that lost them.  Returns
    ``(feeds {signature input: array as the signature takes it}, layouts {blob: "nhwc"|"caffe"}, notes)``; a count,
    shape or dtype that does not fit is refused naming the folder, the input and both values."""
    names = [s.name for s in sm.inputs]
    if len(names) != len(blobs):
        raise KerasModelError(f"--saved-model {sm.path!r}: signature {sm.signature!r} takes {len(names)} input(s) "
                              f"({', '.join(names) or 'none'}), the net has {len(blobs)} ({', '.join(blobs)})")
    notes = []
    if set(names) == set(blobs):
        pairs = [(next(s for s in sm.inputs if s.name == b), b) for b in blobs]
    else:
        lost = [n for n in names if n not in blobs]
        generic = all(_GENERIC_INPUT.match(n) for n in lost)
        notes.append(f"notice: signature {sm.signature!r} of {sm.path!r} names its inputs {lost}"
                     f"{' (default names: the port named no input)' if generic else ''} where the net's are "
                     f"{blobs}: paired by position")
        pairs = list(zip(sorted(sm.inputs, key=lambda spec: _numbered(spec.name)), blobs))  # input_2 before input_10
    feeds, layouts = {}, {}
    for spec, blob in pairs:
        if not spec.dtype.startswith("float"):
            raise KerasModelError(f"--saved-model {sm.path!r}: signature {sm.signature!r} input {spec.name!r} is "
                                  f"{spec.dtype}; the net's input {blob!r} is float32")
        a = np.asarray(data[blob], np.float32)
        layouts[blob] = _layout_of(sm, spec, blob, a)
        feeds[spec.name] = np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if layouts[blob] == "nhwc" else a
    return feeds, layouts, notes


def run_signature(sm: SavedModel, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The signature's outputs ``{name: array}`` for ``feeds`` (``{signature input: array}``)."""
    import tensorflow as tf

    try:
        outs = sm.fn(**{k: tf.constant(v, dtype=next(s.dtype for s in sm.inputs if s.name == k))
                        for k, v in feeds.items()})
    except Exception as e:  # noqa: BLE001
        raise KerasModelError(f"--saved-model {sm.path!r}: signature {sm.signature!r} failed to run: "
                              f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
    if isinstance(outs, dict):
        return {k: np.asarray(v) for k, v in outs.items()}
    return {f"output_{i}": np.asarray(v) for i, v in enumerate(tf.nest.flatten(outs))}


_WRAPPER = re.compile(r"^(StatefulPartitionedCall(_\d+)?|PartitionedCall(_\d+)?)$")
_SUFFIX = re.compile(r"^(.*)_\d+$")


def _parts(node: str) -> list[str] | None:
    """A frozen graph node's name scopes and op name under the model's scope (call wrappers dropped), or None for a
    node outside any layer (the signature's placeholders, the function's input / output plumbing)."""
    parts = node.split("/")
    while parts and _WRAPPER.match(parts[0]):
        parts = parts[1:]
    if len(parts) < 3 or parts[0] == "Func":
        return None
    return parts


def _graph_parts(graph_def: Any) -> dict[str, list[str] | None]:
    """:func:`_parts` of every node.  A function that called the model (``model.export``, ``model(x)`` in a
    ``tf.function``) puts every layer under the model's own scope (``plain_port_1/conv2d_1/BiasAdd``); one that runs
    the model's ``call`` directly (``ExportArchive.add_endpoint(fn=model.call)``) has the layers at the top
    (``conv2d_1/BiasAdd``): when more than one top scope runs an op of its own right below it (``conv2d_1/BiasAdd``,
    ``max_pooling2d_1/MaxPool2d``; a model scope holds only layer scopes, and the serving function's own ops outside
    the model -- a ``tf.transpose`` of an NCHW input, with its ``transpose/perm`` constant -- run no op below a scope),
    an empty model scope is put in front, so the layers are found at the same depth either way."""
    raw = {n.name: n.name.split("/") for n in graph_def.node}
    for name, p in raw.items():
        while p and _WRAPPER.match(p[0]):
            p = p[1:]
        raw[name] = p
    plumbing = {"Const", "Identity", "NoOp", "Placeholder"}
    tops = {raw[n.name][0] for n in graph_def.node
            if len(raw[n.name]) == 2 and raw[n.name][0] != "Func" and n.op not in plumbing}
    if len(tops) > 1:
        parts = {name: _parts("/".join(["", *p])) if len(p) >= 2 and p[0] != "Func" else None
                 for name, p in raw.items()}
    else:
        parts = {n.name: _parts(n.name) for n in graph_def.node}
    return _with_op_units(graph_def, raw, parts)


# ops that compute no layer's value: plumbing, shape arithmetic, and the explicit pads a hand writer puts before a
# convolution or a pooling (the reader's value is the layer's)
_NO_UNIT_OPS = frozenset({"Const", "Identity", "NoOp", "Placeholder", "Shape", "StridedSlice", "Pack", "Pad",
                          "PadV2", "MirrorPad", "Cast", "Range", "Fill", "Size", "Rank", "Unpack"})


def _with_op_units(graph_def: Any, raw: Mapping[str, list[str]], parts: dict) -> dict:
    """A graph written without name scopes (a hand-rolled ``tf.Module`` with raw ``tf.nn`` ops: ``Conv2D``,
    ``BiasAdd``, ``MaxPool2d`` at the function's top level) has no layer scope for its convolutions: when a
    convolution or matmul runs outside every scope, each such top-level op that computes a value is a unit of its
    own (``("", "Conv2D_1")``), paired as scopes are -- by structure, shapes and order, the op names being no Caffe
    layer's.  A graph whose linear ops all sit in scopes is left alone."""
    top = {n.name for n in graph_def.node if parts.get(n.name) is None and len(raw[n.name]) == 1
           and n.op not in _NO_UNIT_OPS}
    if not any(n.op in _LINEAR_OPS for n in graph_def.node if n.name in top):
        return parts
    return {**parts, **{name: ["", raw[name][0], raw[name][0]] for name in top}}


def _base(scope: str) -> str:
    m = _SUFFIX.match(scope)
    return m.group(1) if m else scope


def _containers(paths: Any, known: Any) -> set[tuple]:
    """The scope paths of nested Keras models (a ``Sequential`` backbone used as one layer): a scope that is no
    weighted layer itself and holds the scope of one (``backbone_1/conv1_1``, with ``conv1/kernel`` among the
    variables); nested in a container, deeper ones too."""
    out: set[tuple] = set()
    for parts in paths:
        for i in range(1, len(parts) - 2):
            if (i == 1 or tuple(parts[:i]) in out) and _base(parts[i]) not in known and _base(parts[i + 1]) in known:
                out.add(tuple(parts[:i + 1]))
    return out


_PLUMBING = frozenset({"Const", "Identity", "NoOp", "Placeholder"})


def _model_scopes(graph_def: Any, parts: Mapping[str, list[str] | None], containers: set[tuple]) -> set[tuple]:
    """The scope paths of nested Keras models the variables do not reveal (a subclassed backbone's variables are
    named after the model, ``backbone/kernel``, not after its layers): a scope below the model's (or below a
    nested model's) that runs no op of its own right below it but holds two or more layer scopes (named with
    TensorFlow's ``_<n>`` suffix, each running an op right below it: ``backbone_1/conv1_1/BiasAdd``).  A layer's
    scope runs its own ops (``conv1_1/convolution``); TensorFlow's scopes inside a layer (``batchnorm/mul``) have
    no suffix."""
    own: dict[tuple, bool] = {}  # scope path -> whether it runs a non-plumbing op right below it
    for n in graph_def.node:
        p = parts.get(n.name)
        if p is not None and n.op not in _PLUMBING:
            own[tuple(p[:-1])] = True
    children: dict[tuple, set[str]] = {}
    for path in own:
        if len(path) >= 3 and _SUFFIX.match(path[-1]):
            children.setdefault(path[:-1], set()).add(path[-1])
    out = set(containers)
    for path in sorted(children, key=len):
        if len(path) >= 2 and path not in own and len(children[path]) >= 2 and \
                (len(path) == 2 or path[:-1] in out) and _SUFFIX.match(path[-1]):
            out.add(path)
    return out - containers


def _layer_scope(parts: list[str] | None, containers: set[tuple]) -> tuple | None:
    """The scope path of the Keras layer a node belongs to (inside nested models, the innermost layer's)."""
    if parts is None:
        return None
    i = 1
    while i + 2 < len(parts) and tuple(parts[:i + 1]) in containers:
        i += 1
    scope = tuple(parts[:i + 1])
    return None if scope in containers else scope


# the ops a Keras layer's ``activation=`` argument appends to its own output inside the layer's scope
_ACTIVATION_OPS = frozenset({"Relu", "Relu6", "Elu", "Selu", "Sigmoid", "Tanh", "Softplus", "Softsign", "LeakyRelu",
                             "Softmax", "Gelu"})


def layer_scopes(graph_def: Any, known: Any = frozenset()) -> dict[str, list[str]]:
    """``{name: [tensor names]}`` of a frozen graph: per layer scope (as TensorFlow named it, with its uniquifying
    ``_<n>`` suffix: ``conv1_1`` for the Keras layer ``conv1``), the tensors an op of the scope hands to an op
    outside it, in graph order.  A layer with a fused activation (``Conv2D(activation="relu")``) computes two Caffe
    layers: its scope's name keeps the tensor before the activation (the convolution's output) and
    ``<scope>>Relu`` names the activated one, which names no layer (it pairs by position with the Caffe activation
    after the convolution).  ``known``: the names of the weighted Keras layers (from the variables), which reveal
    nested models: their layers are named by the scope path below the model (``backbone_1/conv1_1``)."""
    nodes = {n.name: n for n in graph_def.node}
    parts = _graph_parts(graph_def)
    containers = _containers([p for p in parts.values() if p is not None], set(known))
    containers |= _model_scopes(graph_def, parts, containers)
    scope_of = {name: _layer_scope(p, containers) for name, p in parts.items()}
    outs: dict[str, list[str]] = {}
    for n in graph_def.node:
        for inp in n.input:
            if inp.startswith("^"):
                continue
            src, _, idx = inp.partition(":")
            s = scope_of.get(src)
            if s is None or s == scope_of.get(n.name):
                continue
            for key, t in _split_fused(nodes, scope_of, s, src, idx or "0"):
                if t not in outs.setdefault(key, []):
                    outs[key].append(t)
    return outs


def _split_fused(nodes: Mapping[str, Any], scope_of: Mapping[str, Any], s: tuple, src: str, idx: str) -> list:
    """``[(name, tensor)]`` for a scope's output tensor: the activated output of a fused activation comes with the
    tensor the activation reads, when an op of the same scope computed it."""
    op = nodes[src]
    if op.op in _ACTIVATION_OPS and op.input:
        pre = op.input[0].split(":")[0]
        if scope_of.get(pre) == s and nodes[pre].op not in _ACTIVATION_OPS and nodes[pre].op != "Identity":
            pre_t = op.input[0] if ":" in op.input[0] else f"{op.input[0]}:0"
            return [("/".join(s[1:]), pre_t), (f"{'/'.join(s[1:])}>{op.op}", f"{src}:{idx}")]
    return [("/".join(s[1:]), f"{src}:{idx}")]


def scope_op_types(graph_def: Any, known: Any = frozenset()) -> dict[str, set[str]]:
    """``{layer scope: the op types its nodes run}`` (the names :func:`layer_scopes` gives; a fused activation's
    ``<scope>>Relu`` has the activation's op type only)."""
    parts = _graph_parts(graph_def)
    containers = _containers([p for p in parts.values() if p is not None], set(known))
    containers |= _model_scopes(graph_def, parts, containers)
    out: dict[str, set[str]] = {}
    for n in graph_def.node:
        s = _layer_scope(parts[n.name], containers)
        if s is not None:
            out.setdefault("/".join(s[1:]), set()).add(n.op)
            if n.op in _ACTIVATION_OPS:
                out.setdefault(f"{'/'.join(s[1:])}>{n.op}", set()).add(n.op)
    return out


def read_intermediates(sm: SavedModel, feeds: Mapping[str, np.ndarray],
                       op_types: dict | None = None) -> tuple[dict[str, np.ndarray], str | None]:
    """Every layer output the export preserves, ``{layer scope (":<i>" after the first of several outputs): array}``
    (graph order), then the signature's outputs (``"<signature>:<output>"``) from the same run, for ``feeds``; with
    ``(values, None)`` or ``({}, why not)``; ``op_types`` (a dict) gets :func:`scope_op_types`.  One run gives every
    value, so that each output is judged against the Caffe layer re-run on the bottoms this very run computed (the
    served function, run apart, may pick other kernels: rounding-size differences).  The scope names keep
    TensorFlow's ``_<n>`` suffix, as TFLite tensor names do (:func:`harness.compare.artefacts.pairing.named_layers` reads
    both)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    try:
        frozen = convert_variables_to_constants_v2(sm.fn)
        gd = frozen.graph.as_graph_def()
    except Exception as e:  # noqa: BLE001 - some graphs cannot be frozen
        return {}, (f"cannot freeze the signature's graph ({type(e).__name__}: {' '.join(str(e).split())[:120]}); "
                    f"outputs compared only")
    owner = getattr(sm.fn, "_harness_owner", None)
    # the Keras layer owning each variable: ``conv1`` of ``conv1/kernel:0``, also inside a nested model
    # (``features/conv2d/kernel:0``: ``conv2d``), which is how :func:`_containers` finds that model's scope
    known = {str(v.name).rsplit("/", 2)[-2] for v in getattr(owner, "variables", ()) if "/" in str(v.name)}
    scopes = layer_scopes(gd, known)
    if op_types is not None:
        op_types.update(scope_op_types(gd, known))
    if not scopes:
        return {}, ("the export keeps no Keras layer scopes in its graph (e.g. a JAX-backend export); outputs "
                    "compared only")
    # a tf.while_loop's tensors (DetectionOutput's per-image loop) are its frame's internals, never a layer output,
    # and fetching them fails the whole run (SSD300: "Retval[3] has already been set")
    scopes = {k: kept for k, ts in scopes.items() if (kept := [t for t in ts if "/while/" not in t])}
    inner = inner_scopes(gd, scopes)  # a bias added in a scope of its own: the layer's value is after it
    scopes = {k: ts for k, ts in scopes.items() if k not in inner}
    fetch = [(k if i == 0 else f"{k}:{i}", t) for k, ts in scopes.items() for i, t in enumerate(ts)]
    # the frozen function's outputs are the signature's, flattened (a dict in sorted key order, as sm.outputs)
    if len(frozen.outputs) == len(sm.outputs):
        fetch += [(f"{sm.signature}:{o.name}", t.name) for o, t in zip(sm.outputs, frozen.outputs)]
    names = {n.name for n in gd.node}
    missing = [k for k in feeds if k not in names]
    if missing:
        return {}, f"the frozen graph has no placeholder for the input(s) {missing}; outputs compared only"

    def imported() -> None:
        tf.graph_util.import_graph_def(gd, name="")

    try:
        w = tf.compat.v1.wrap_function(imported, [])
        pruned = w.prune(feeds=[w.graph.get_tensor_by_name(f"{k}:0") for k in feeds],
                         fetches=[w.graph.get_tensor_by_name(t) for _, t in fetch])
        vals = pruned(*[tf.constant(v) for v in feeds.values()])
    except Exception as e:  # noqa: BLE001
        return {}, f"cannot run the frozen graph's layer outputs ({type(e).__name__}); outputs compared only"
    return {k: np.asarray(v) for (k, _), v in zip(fetch, vals)}, None


_LINEAR_OPS = {"Conv2D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2", "Conv2DBackpropInput"}
_ADD_OPS = {"AddV2", "Add", "BiasAdd", "Sub"}


def inner_scopes(graph_def: Any, scopes: Mapping[str, list[str]]) -> set[str]:
    """The scopes whose one output is the inside of one Caffe layer, as a converter that writes each op as a layer
    of its own leaves it (onnx2tf: ``tf.nn.convolution`` then ``tf.math.add`` of the bias): a convolution or matmul
    whose only reader adds a constant (its bias; through a constant multiply: matmul -> multiply -> add, a Gemm with
    alpha), and a constant multiply whose only reader adds a constant (a Caffe Scale as multiply + add).  The layer's
    value is the add's; pairing the tensor before it would blame a missing bias on a correct export."""
    nodes = {n.name: n for n in graph_def.node}
    readers: dict[str, list[Any]] = {}
    for n in graph_def.node:
        for i in n.input:
            if not i.startswith("^"):
                readers.setdefault(i if ":" in i else f"{i}:0", []).append(n)

    def const(name: str) -> bool:
        n = nodes.get(name.split(":")[0].lstrip("^"))
        while n is not None and n.op == "Identity" and n.input:
            n = nodes.get(n.input[0].split(":")[0])
        return n is not None and n.op == "Const"

    def adds_const(t: str, ops: set[str]) -> Any:
        r = readers.get(t, [])
        ok = len(r) == 1 and r[0].op in ops and sum(not const(i) for i in r[0].input) == 1
        return r[0] if ok else None

    inner = set()
    for k, ts in scopes.items():
        src = nodes.get(ts[0].split(":")[0]) if len(ts) == 1 else None
        if src is None:
            continue
        if src.op == "Mul" and any(const(i) for i in src.input) and adds_const(ts[0], _ADD_OPS) is not None:
            inner.add(k)  # the multiply of a multiply + add (a Scale, a Gemm's alpha)
        elif src.op in _LINEAR_OPS:
            mul = adds_const(ts[0], {"Mul"})
            if adds_const(ts[0], _ADD_OPS) is not None or (
                    mul is not None and adds_const(f"{mul.name}:0", _ADD_OPS) is not None):
                inner.add(k)  # its bias (and scale) come next
    return inner


def _numbered(name: str) -> tuple:
    m = re.match(r"^(.*?)(\d+)$", name)
    return (m.group(1), int(m.group(2))) if m else (name, -1)


def signature_outputs(sm: SavedModel, outputs: list[str]) -> tuple[dict[str, str], list[str], list[str]]:
    """Pair the signature's outputs with the net's output blobs: by name, else by position (a notice names them).
    Returns ``({blob: signature output}, notes, problems)``; a problem (the report is then not equivalent) is a
    count that differs or an output that is not float32 as Caffe's blobs are."""
    names = [o.name for o in sm.outputs]
    notes: list[str] = []
    problems: list[str] = []
    if set(outputs) <= set(names):
        pairs = {b: b for b in outputs}
    else:
        ordered = sorted(names, key=_numbered)
        pairs = dict(zip(outputs, ordered))
        notes.append(f"notice: signature {sm.signature!r} of {sm.path!r} names its outputs {ordered}, not after the "
                     f"net's output blobs {outputs}: paired by position")
    if len(names) != len(outputs):
        problems.append(f"signature {sm.signature!r} of {sm.path!r} has {len(names)} output(s) ({', '.join(names)}), "
                        f"the net has {len(outputs)} ({', '.join(outputs)})")
    dtypes = {o.name: o.dtype for o in sm.outputs}
    for blob, name in pairs.items():
        if dtypes[name] != "float32":
            problems.append(f"signature {sm.signature!r} output {name!r} is {dtypes[name]}; Caffe's blob {blob!r} "
                            f"is float32")
    return pairs, notes, problems


def _served_difference(sm: SavedModel, served: Mapping[str, np.ndarray], values: Mapping[str, np.ndarray]) -> str:
    """A note: how far the served signature's outputs are from the same outputs of the frozen graph's run (the
    values judged)."""
    diffs = []
    for name, a in served.items():
        b = values.get(f"{sm.signature}:{name}")
        if b is not None and np.shape(a) == np.shape(b):
            diffs.append(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)), initial=0.0)))
    worst = f"{max(diffs):.3g}" if diffs else "n/a"
    return (f"the layer outputs and the net outputs judged come from one run of the frozen graph of signature "
            f"{sm.signature!r}; the served signature's outputs differ from them by at most {worst} (max abs)")


def _judged_values(sm: SavedModel, feeds: Mapping[str, np.ndarray], served: Mapping[str, np.ndarray],
                   outputs: list[str], notes: list[str], op_types: dict) -> dict[str, np.ndarray]:
    """The values to judge: every layer output and the outputs from one run of the frozen graph; the served outputs
    alone (with a notice saying why) when the intermediates cannot be read."""
    values, why = read_intermediates(sm, feeds, op_types)
    if why is not None:
        notes.append(f"notice: {sm.path!r}: {why}")
        return {f"{sm.signature}:{name}": served[name] for name in outputs}
    if all(f"{sm.signature}:{n}" in values for n in outputs):
        notes.append(_served_difference(sm, served, values))
    else:  # the frozen function's outputs could not be told apart: judge the served ones
        values.update({f"{sm.signature}:{name}": served[name] for name in outputs})
    return values


# what a layer scope computes, by the op types it runs, as the Caffe type it stands for (first match wins: a
# convolution with its bias and fused ReLU is a Convolution; the scope ``<scope>>Relu`` holds the ReLU alone; a
# reduction over H, W -- GlobalAveragePooling2D's ``Mean``, GlobalMaxPooling2D's ``Max`` -- is a global Pooling
# where no ``Rsqrt`` makes it a normalisation)
_KIND_OPS = (("Deconvolution", {"Conv2DBackpropInput"}), ("Convolution", {"Conv2D", "DepthwiseConv2dNative"}),
             ("InnerProduct", {"MatMul", "BatchMatMulV2"}), ("Pooling", {"MaxPool", "AvgPool"}),
             ("BatchNorm", {"Rsqrt", "FusedBatchNormV3"}), ("Pooling", {"Mean", "Max"}), ("LRN", {"LRN"}),
             ("Softmax", {"Softmax"}),
             ("ReLU", {"Relu", "LeakyRelu"}), ("ELU", {"Elu"}), ("Sigmoid", {"Sigmoid"}), ("TanH", {"Tanh"}))


def _kind(ops: set[str], kind_ops: Any = _KIND_OPS) -> str | None:
    return next((kind for kind, want in kind_ops if ops & want), None)


def name_by_kind(net: Any, values: Mapping[str, np.ndarray], op_types: Mapping[str, set[str]],
                 shapes: Mapping[str, tuple], misfits: dict | None = None, kind_ops: Any = _KIND_OPS) -> dict:
    """Structural pairing of a hand-written port's unnamed layer scopes (``conv2d_1``, ``batch_normalization_1``):
    per Caffe type, the scopes that compute it (by their op types, :data:`_KIND_OPS`) and the Caffe layers of that
    type no tensor names, both in execution order, are paired one to one -- only when the counts agree and every
    pair's shapes agree (NCHW or NHWC); the tensor name then also names its Caffe layer (``conv2d_1/conv1``), which
    the artefact core pairs by name.  A run of same-shape layers (BatchNormalization, LeakyReLU, two poolings, ...)
    would otherwise be paired by position alone, one off after a BatchNormalization that covers BatchNorm + Scale.
    ``misfits`` (a dict) gets ``{Caffe layer: tensor name}`` of the pairs whose shapes did not agree, where the
    counts did (a pooling rounded the other way): :func:`shape_diagnosis` reads them.  ``kind_ops``: the table of
    op types per Caffe type (default: TensorFlow's; the ONNX kind passes its own)."""
    from .pairing import named_layers

    named = {k: named_layers(net, k, ops=False) for k in values}
    has_tensor = {n for ns in named.values() for n in ns}
    by_kind: dict[str, list[str]] = {}
    for k in values:
        kind = _kind(op_types.get(k, set()), kind_ops) if not named[k] else None
        if kind is not None:
            by_kind.setdefault(kind, []).append(k)
    rename: dict[str, str] = {}
    for kind, keys in by_kind.items():
        lays = [lay for lay in net.layers if lay.kind == kind and lay.name not in has_tensor and len(lay.tops) == 1]
        if len(lays) != len(keys):
            continue
        pairs = list(zip(keys, lays))
        bad = {lay.name: k for k, lay in pairs if _as_nchw(values[k], shapes.get(lay.keys()[0], ())) is None}
        if bad:  # in order the shapes disagree: shapes decide when they pair every scope (heads in another order)
            pairs = _pairs_by_shape(keys, lays, values, shapes)
            if pairs is None:
                if misfits is not None:
                    misfits.update(bad)
                continue
        rename.update({k: f"{k}/{lay.name.replace('/', '.')}" for k, lay in pairs})
    return {rename.get(k, k): v for k, v in values.items()}


def _pairs_by_shape(keys: list[str], lays: list[Any], values: Mapping[str, np.ndarray],
                    shapes: Mapping[str, tuple]) -> list | None:
    """``[(scope, Caffe layer)]``: each scope (execution order) with the first Caffe layer left whose shape its
    value has (NCHW or NHWC), so that same-shape layers keep their order; None unless every scope gets one.  A
    subclassed port's ``call()`` may run its heads in another order than the prototxt (``return box, prob``:
    the 4-channel head first): the shapes say which is which, where order alone pairs each with the other."""
    free, out = list(lays), []
    for k in keys:
        lay = next((x for x in free if _as_nchw(values[k], shapes.get(x.keys()[0], ())) is not None), None)
        if lay is None:
            return None
        free.remove(lay)
        out.append((k, lay))
    return out


def _bottom_records(net: Any, layer: Any, ref: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The reference values of ``layer``'s bottoms as it read them (the last record of each blob before it)."""
    last: dict[str, str] = {}
    for lay in net.layers:
        if lay is layer:
            break
        for top, key in zip(lay.tops, lay.keys()):
            last[top] = key
    return [np.asarray(ref[last[b]]) for b in layer.bottoms if last.get(b) in ref]


def shape_diagnosis(report: Any, net: Any, ref: Mapping[str, np.ndarray], misfits: Mapping[str, str],
                    values: Mapping[str, np.ndarray]) -> None:
    """When the first divergent layer is one whose own scope computes it with another output shape (``misfits``)
    and the core found no cause, the causes come from the shapes alone (:func:`diagnose_shape`: ceil / floor
    rounding, padding, stride), as for a Keras model, and the first divergence names that scope as its Keras layer."""
    fd = report.first_divergence
    if fd is None or fd.caffe_layer not in misfits or (fd.diagnosis and fd.diagnosis[0].cause != "unknown"):
        return
    from ..diagnose.shape_mismatch import diagnose_shape

    lay = net.layer(fd.caffe_layer)
    want = tuple(np.shape(ref[lay.keys()[0]]))
    got = tuple(np.shape(values[misfits[lay.name]]))
    if len(got) == 4 and len(want) == 4 and got[-1] == want[1] and got[1] != want[1]:
        got = (got[0], got[3], got[1], got[2])  # NHWC, as the port computes it
    causes = diagnose_shape(lay, _bottom_records(net, lay, ref), want, got)
    if causes and causes[0].cause != "unknown":
        fd.diagnosis = causes
        fd.keras_layer = misfits[lay.name]  # the scope that computes it (not the later tensor the error surfaced in)


def windowed_pool_misfits(net: Any, pools: list[str], values: Mapping[str, np.ndarray],
                          ref: Mapping[str, np.ndarray]) -> dict[str, str]:
    """``{Caffe Pooling layer: tensor}`` of the windowed poolings (not global) whose tensor (``pools``: the
    artefact's windowed pooling outputs, execution order) has another shape than Caffe's, paired in order, only when
    their counts agree."""
    lays = [lay for lay in net.layers if window(lay.kind) == "pool" and len(lay.tops) == 1
            and not lay.p("pooling_param").global_pooling]
    if len(pools) != len(lays):
        return {}
    return {lay.name: t for lay, t in zip(lays, pools)
            if lay.keys()[0] in ref and _as_nchw(values[t], np.shape(ref[lay.keys()[0]])) is None}


_POOL_OPS = frozenset({"MaxPool", "AvgPool", "MaxPoolV2"})


def scope_pool_misfits(net: Any, values: Mapping[str, np.ndarray], op_types: Mapping[str, set[str]],
                       ref: Mapping[str, np.ndarray]) -> dict[str, str]:
    """:func:`windowed_pool_misfits` of a SavedModel's layer scopes that run a windowed pooling op (graph order):
    a ``MaxPooling2D(padding='valid')`` where Caffe rounds up is named by its scope (``pool1_1``) but its shape
    keeps the name rule from pairing it, and every record after it goes unpaired; the pooling, not a later head
    a kind or position rule reaches with another shape, is then the first divergence."""
    pools = [k for k in values if op_types.get(k, set()) & _POOL_OPS]
    return windowed_pool_misfits(net, pools, values, ref)


def shape_first(report: Any, net: Any, ref: Mapping[str, np.ndarray], misfits: Mapping[str, str],
                values: Mapping[str, np.ndarray]) -> None:
    """When a layer's own tensor has another shape than Caffe's (``misfits``, a pooling rounded the other way) and
    it comes before the first divergence found (or none was, or only a missing output), that layer is the first
    divergence, diagnosed from the shapes (:func:`diagnose_shape`): every later record went unpaired because of it.
    Its row joins the table (chained: FAIL, the two shapes), so the header and the detail line name it; the
    divergence it replaces joins the others."""
    if not misfits:
        return
    from ..reports.annotations import attach_locations
    from ..reports.result import BlobResult, FirstDivergence, LayerResult
    from ..diagnose.shape_mismatch import diagnose_shape

    order = [lay.name for lay in net.layers]
    first = min(misfits, key=order.index)
    fd = report.first_divergence
    if fd is not None and fd.mode != "structure" and order.index(fd.caffe_layer) < order.index(first):
        return
    lay, key = net.layer(first), net.layer(first).keys()[0]
    want, got = tuple(np.shape(ref[key])), tuple(np.shape(values[misfits[first]]))
    if len(got) == 4 and len(want) == 4 and got[-1] == want[1] and got[1] != want[1]:
        got = (got[0], got[3], got[1], got[2])  # NHWC
    res = BlobResult(first, "chained", False, "shape", shape=want,
                     error=f"{lay.type} output has shape {list(got)} where Caffe's is {list(want)}: every record "
                           f"after it is unpaired")
    row = LayerResult(first, lay.tops[0], key, misfits[first], "shape", want, lay.type, chained=res)
    later = [i for i, lr in enumerate(report.layers) if order.index(lr.caffe_layer) > order.index(first)]
    if all(lr.key != key for lr in report.layers):
        report.layers.insert(later[0] if later else len(report.layers), row)
    if fd is not None and fd.caffe_layer != first:
        report.divergences.insert(0, fd)
    _unpaired_after(report, net, first)
    causes = diagnose_shape(lay, _bottom_records(net, lay, ref), want, got)
    report.first_divergence = FirstDivergence(first, misfits[first], key, "chained", list(causes))
    attach_locations(report, net)


def _unpaired_after(report: Any, net: Any, first: str) -> None:
    """A net output after the misfit ``first`` went unpaired because of it, not because the artefact lacks it: its
    "does not compute this output" problem is restated and its ``missing_layer`` divergence ("export the net
    output", a fix that does not fix) dropped."""
    order = [lay.name for lay in net.layers]
    later = net.layers[order.index(first) + 1:]
    names = {lay.name for lay in later}
    report.divergences = [d for d in report.divergences if not (d.mode == "structure" and d.caffe_layer in names)]
    for i, msg in enumerate(report.output_problems):
        for lay in later:
            blob = next((b for b in lay.tops if msg.startswith(f"Caffe output {b!r} is computed by {lay.type} "
                                                                f"{lay.name!r}, which has no tensor")), None)
            if blob is not None:
                report.output_problems[i] = (
                    f"Caffe output {blob!r} ({lay.type} {lay.name!r}) is not paired: it comes after {first!r}, "
                    f"whose tensor has another shape than Caffe's, and no record after that one could be paired")
                break


def _scale_after(net: Any, lay: Any) -> Any:
    """The Scale layer that alone reads ``lay``'s one top right after it (in place or not), else None."""
    if len(lay.tops) != 1:
        return None
    readers = [x for x in net.layers if lay.tops[0] in x.bottoms and x is not lay]
    first = next((x for x in readers if net.layers.index(x) > net.layers.index(lay)), None)
    return first if first is not None and completes(lay.kind, first.kind) and len(first.bottoms) == 1 else None


def _as_nchw(v: np.ndarray, shape: tuple) -> np.ndarray | None:
    v = np.asarray(v, np.float64)
    if v.shape == tuple(shape):
        return v
    if v.ndim == 4 and len(shape) == 4 and v.shape == (shape[0], shape[2], shape[3], shape[1]):
        return v.transpose(0, 3, 1, 2)
    if v.ndim == 2 and tuple(shape) == (*v.shape, 1, 1):  # GlobalAveragePooling2D's (N, C) for Caffe's (N, C, 1, 1)
        return v.reshape(shape)
    return None


def fold_scale_into_batchnorm(net: Any, values: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]) -> dict:
    """A tensor named after a Caffe BatchNorm whose top a Scale rescales next, with no tensor naming that Scale: a
    Keras ``BatchNormalization`` (its gamma and beta are the Scale's) computes both, so the name is made to name both
    (``bn1_1/scale1``) and the pair covers the span, as the Keras-model comparison pairs one BatchNormalization with
    BatchNorm + Scale.  Only when the tensor is nearer the Scale's output than the BatchNorm's: a port that scales in
    a layer of its own keeps the BatchNorm pair (no false alarm either way)."""
    from .pairing import named_layers

    named = {k: named_layers(net, k, ops=False) for k in values}
    has_tensor = {n for ns in named.values() for n in ns}
    out = {}
    for k, v in values.items():
        lay = net.layer(named[k][-1]) if named[k] else None
        sc = _scale_after(net, lay) if lay is not None and traits(lay.kind).completed_by else None
        if sc is not None and sc.name not in has_tensor and lay.keys()[0] in ref and sc.keys()[0] in ref:
            r_bn, r_sc = ref[lay.keys()[0]], ref[sc.keys()[0]]
            x = _as_nchw(v, np.shape(r_sc))
            if x is not None and np.max(np.abs(x - r_sc)) < np.max(np.abs(x - r_bn)):
                k = f"{k}/{sc.name.replace('/', '.')}"
        out[k] = v
    return out


def open_artefact(path: str | os.PathLike, options: Mapping[str, Any]) -> SavedModel:
    """The kind seam (:mod:`.kinds`): :func:`open_saved_model` with ``options["signature"]``."""
    return open_saved_model(path, options.get("signature"))


def describe(sm: SavedModel) -> list[tuple[str, str]]:
    """``[(layer scope, the op types it runs)]`` of the signature's frozen graph (:func:`scope_op_types`), graph
    order; empty when the graph cannot be frozen."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    try:
        gd = convert_variables_to_constants_v2(sm.fn).graph.as_graph_def()
    except Exception:  # noqa: BLE001 - some graphs cannot be frozen
        return []
    return [(k, ",".join(sorted(v))) for k, v in scope_op_types(gd).items()]


def judge(pre: Any, sm: SavedModel, options: Mapping[str, Any], *, atol: float | None = None,
          rtol: float | None = None, tolerances: Any = None, diagnose: bool = True) -> Any:
    """The kind seam (:mod:`.kinds`): run the signature on the preamble's inputs, read every layer output the graph
    preserves and judge them, then its outputs (names and dtypes checked), against the reference."""
    from .pairing import ArtefactRun, compare_artefact

    net, data = pre.net, pre.data
    feeds, _, notes = signature_inputs(sm, list(net.inputs), data)
    outs = run_signature(sm, feeds)
    out_pairs, out_notes, problems = signature_outputs(sm, list(net.outputs))
    op_types: dict = {}
    values = _judged_values(sm, feeds, outs, list(out_pairs.values()), notes, op_types)
    ref = pre.ref()
    values = _without_relayouts(net, values, op_types)
    misfits: dict = {}
    before = list(values)
    pools = scope_pool_misfits(net, values, op_types, ref)
    values = name_by_kind(net, values, op_types, {k: np.shape(v) for k, v in ref.items()}, misfits)
    values = fold_scale_into_batchnorm(net, values, ref)
    if len(values) == len(before):  # the renames keep the order: a pooling scope's tensor under its new name
        renamed = dict(zip(before, values))
        misfits.update({lay: renamed[t] for lay, t in pools.items() if lay not in misfits})
    blob_of = {spec.name: blob for spec, blob in zip(sm.inputs, net.inputs)} if set(feeds) != set(net.inputs) \
        else {b: b for b in net.inputs}
    run = ArtefactRun("saved_model", sm.path, values, inputs={b: n for n, b in blob_of.items()},
                      outputs={b: f"{sm.signature}:{n}" for b, n in out_pairs.items()},
                      name=f"{Path(sm.path).name} [{sm.signature}]", notes=notes + out_notes, op_names=False,
                      fused=_no_activation(values, op_types))
    report = compare_artefact(net, data, run, tolerances=tolerances, atol=atol, rtol=rtol, diagnose=diagnose,
                              ref=ref)
    report.output_problems += problems
    shape_diagnosis(report, net, ref, misfits, values)
    if diagnose:  # a pooling rounded the other way: the first divergence, its row in the table
        shape_first(report, net, ref, misfits, values)
    report.backend = "tensorflow"  # a SavedModel runs on TensorFlow whatever Keras backend exported it
    return report


_RELAYOUT_OPS = frozenset({"Transpose", "Reshape", "Squeeze", "ExpandDims", "Const", "Identity"})


def _without_relayouts(net: Any, values: Mapping[str, np.ndarray], op_types: Mapping[str, set[str]]) -> dict:
    """The values less those of layer scopes that only re-lay a tensor out (a transpose or reshape a converter
    inserts for layout, onnx2tf's NHWC <-> NCHW around an add) and name no Caffe layer: they hold an earlier value in
    another order, never a layer's output, and a position pairing would take them (ResNet's Eltwise paired with the
    transposed branch)."""
    from .pairing import named_layers

    def relayout(k: str) -> bool:
        ops = op_types.get(k)
        return bool(ops) and ops <= _RELAYOUT_OPS and bool(ops & {"Transpose", "Reshape"})

    return {k: v for k, v in values.items() if not relayout(k) or named_layers(net, k, ops=False)}


def _no_activation(values: Mapping[str, np.ndarray], op_types: Mapping[str, set[str]]) -> dict:
    """``{value: ()}`` of the layer scopes whose ops are known and hold no activation: what the artefact core's
    position rule reads as "an operator that fused none" (a convolution whose bias add, BatchNorm and Scale a
    converter folded into it, with the ReLU in a scope of its own: onnx2tf)."""
    out = {}
    for k in values:
        ops = op_types.get(k.split("/")[0]) or op_types.get(k)
        if ops and not ops & _ACTIVATION_OPS and ops & (_LINEAR_OPS | _ADD_OPS):
            out[k] = ()
    return out


def compare_saved_model(net_or_prototxt: Any, path: str | os.PathLike, inputs: Any = None, *,
                        signature: str | None = None, weights: Any = None, seed: int = 0,
                        input_shapes: Mapping[str, Any] | None = None, **kw: Any) -> Any:
    """``check --saved-model``: run the SavedModel's ``signature`` (default ``serving_default``) on the inputs the
    reference gets and judge every layer output it preserves, then its outputs, against the Caffe net
    (:func:`harness.compare.artefacts.pairing.compare_artefact`: chained, first divergent layer, causes).  Arguments as for
    :func:`harness.compare.compare` (``kw``: atol, rtol, tolerances, diagnose).  A signature that does not fit the
    net's inputs is refused by name."""
    from .kinds import check_artefact

    return check_artefact("saved_model", net_or_prototxt, path, inputs, weights=weights, seed=seed,
                          input_shapes=input_shapes, options={"signature": signature}, **kw)
