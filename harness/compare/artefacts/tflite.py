"""``check --tflite``: a ``.tflite`` file run with the LiteRT interpreter (``ai-edge-litert``) and judged layer by
layer against the Caffe reference by :mod:`.artefact`.

Two runs, one per execution path (``delegate``):

* ``none``: LiteRT's builtin kernels without the default XNNPACK delegate (``OpResolverType.
  BUILTIN_WITHOUT_DEFAULT_DELEGATES``), every intermediate tensor kept (``experimental_preserve_all_tensors``).
* ``xnnpack``: the path that ships (the default resolver applies XNNPACK).  A delegate computes its partition in
  its own buffers, so the model is rewritten first (its flatbuffer, through LiteRT's own schema module) with every
  operator output made a subgraph output: XNNPACK then writes each of them back, and the values read are XNNPACK's.

Every float tensor an operator writes is read (quantised ones dequantised: ``scale * (q - zero_point)``); integer
shape arithmetic is skipped, and so are the outputs of ``QUANTIZE`` / ``DEQUANTIZE`` (a re-typed copy of their input,
not a layer's value: around a layer kept in float32 the copy of its output would otherwise be paired by position
with the next layer's record of the same shape), unless one is a model output.  A model is *quantised* when any tensor, its weights included, is int8/uint8/int16 with
quantisation parameters or float16: it is judged by SQNR and top-1/top-5 agreement (:class:`.artefact.QuantGate`)
instead of float32 bounds.

Bad files are refused before anything runs, as one line naming the file: missing, truncated or not a flatbuffer
(no ``TFL3`` identifier, or a buffer the schema cannot read), an input whose shape is neither the NHWC nor the NCHW
order of the prototxt's input (a differing batch is resized when the model allows it, else run sample by sample).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...catalogue import fused_activations
from ...errors import HarnessError
from ...net import Net
from ..._stdio import quiet_native_stderr
from .pairing import ArtefactRun, QuantGate, compare_artefact, dequantize
from ..reports.report import Report

DELEGATES = ("none", "xnnpack")
INSTALL_HINT = "pip install 'caffe-keras-harness[artefacts]' (or: pip install ai-edge-litert)"


class PathFailed(HarnessError):
    """LiteRT could not prepare or run the model on one execution path (the other may still run it)."""


def litert():
    """The ``ai_edge_litert.interpreter`` module, or a refusal by name with the install hint."""
    try:
        from ai_edge_litert import interpreter
    except ImportError as e:
        raise HarnessError(f"--tflite needs the LiteRT interpreter (package ai-edge-litert, not installed: {e}); "
                           f"{INSTALL_HINT}") from None
    return interpreter


def read_model(path: str | os.PathLike) -> tuple[bytes, Any]:
    """The file's bytes and its parsed flatbuffer (``schema_py_generated.ModelT``); one line naming the file for a
    missing, truncated or foreign file."""
    p = Path(path)
    if p.is_dir():
        raise HarnessError(f"--tflite {str(p)!r} is a folder, not a .tflite file (a SavedModel? use --saved-model)")
    if not p.is_file():
        raise HarnessError(f"--tflite {str(p)!r} does not exist")
    buf = p.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        what = "an empty file" if not buf else f"its bytes 4..8 are {buf[4:8]!r}"
        raise HarnessError(f"--tflite {str(p)!r} is not a TFLite flatbuffer (no 'TFL3' file identifier: {what})")
    litert()
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
        if not model.subgraphs:
            raise ValueError("no subgraph")
        sg = model.subgraphs[0]
        n = len(sg.tensors)
        if any(not 0 <= int(i) < n for op in sg.operators or [] for i in list(op.outputs) + list(op.inputs)
               if int(i) != -1):
            raise ValueError("an operator names a tensor that does not exist")
    except Exception as e:
        raise HarnessError(f"--tflite {str(p)!r} is truncated or corrupt ({len(buf)} bytes; the flatbuffer cannot "
                           f"be read: {type(e).__name__}: {' '.join(str(e).split())[:160]})") from None
    return buf, model


def output_names(model: Any, net: Net) -> dict[str, str]:
    """``{Caffe output blob: tensor name}``: by the serving signature's output names (the converter names them after
    the blobs), else the one model output of a one-output net."""
    sg = model.subgraphs[0]

    def name(i: int) -> str:
        n = sg.tensors[int(i)].name
        return n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n or "")

    sigs = list(model.signatureDefs or [])
    sd = next((d for d in sigs if (d.signatureKey or b"") in (b"serving_default", "serving_default")),
              sigs[0] if sigs else None)
    out: dict[str, str] = {}
    for tm in (sd.outputs or []) if sd is not None else []:
        blob = tm.name.decode("utf-8", "replace") if isinstance(tm.name, bytes) else str(tm.name)
        if blob in net.outputs:
            out[blob] = name(tm.tensorIndex)
    if not out and len(net.outputs) == len(sg.outputs) == 1:
        out[net.outputs[0]] = name(sg.outputs[0])
    return out


# the Caffe layer types each fused activation of a TFLite operator computes (schema ``ActivationFunctionType``;
# RELU_N1_TO_1 is a Clip to [-1, 1], RELU6 Caffe's ReLU6 or a Clip to [0, 6])
# (harness.catalogue Traits.fused_activation, inverted)
_FUSED_KINDS = fused_activations("tflite")


def _op_names(model: Any) -> list[str]:
    """The builtin operator name of every operator of subgraph 0 (``""`` for a custom or unknown code)."""
    from ai_edge_litert import schema_py_generated as schema

    ops = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = [model.operatorCodes[op.opcodeIndex] for op in model.subgraphs[0].operators or []]
    return [ops.get(max(int(c.builtinCode or 0), int(c.deprecatedBuiltinCode or 0)), "") for c in codes]


_RETYPING = ("QUANTIZE", "DEQUANTIZE")


def retyped(model: Any) -> set[int]:
    """The tensors of subgraph 0 that a ``QUANTIZE`` / ``DEQUANTIZE`` operator writes and that are not a model
    output: a re-typed copy of a value another operator computed (or of a constant), never read as a layer's."""
    sg = model.subgraphs[0]
    outs = {int(o) for o in (sg.outputs if sg.outputs is not None else [])}
    return {int(o) for op, name in zip(sg.operators or [], _op_names(model)) if name in _RETYPING
            for o in (op.outputs if op.outputs is not None else []) if int(o) >= 0 and int(o) not in outs}


def _operator_outputs(model: Any) -> list[tuple[str, str, str]]:
    """(tensor name, builtin operator, fused activation) of every operator output of subgraph 0, names as
    :func:`_read` keys them (a repeated name gets ``#<index>``)."""
    from ai_edge_litert import schema_py_generated as schema

    acts = {v: k for k, v in vars(schema.ActivationFunctionType).items() if not k.startswith("_")}
    sg = model.subgraphs[0]
    seen: set[str] = set()
    out = []
    for op, name_op in zip(sg.operators or [], _op_names(model)):
        act = acts.get(int(getattr(op.builtinOptions, "fusedActivationFunction", 0) or 0), "")
        for o in op.outputs if op.outputs is not None else []:
            if int(o) < 0:
                continue
            n = sg.tensors[int(o)].name
            n = (n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n or "")) or f"tensor#{int(o)}"
            out.append((f"{n}#{int(o)}" if n in seen else n, name_op, act))
            seen.add(n)
    return out


def fused_activations(model: Any) -> dict[str, tuple[str, ...]]:
    """``{tensor name: the Caffe layer types of the activation its operator fused}`` for every operator output (an
    empty tuple: the operator fused none; ``SIGN_BIT`` or an unknown code: no Caffe type)."""
    return {n: () if act == "NONE" else _FUSED_KINDS.get(act, ("?",)) for n, _, act in _operator_outputs(model)}


def pooling_misfits(net: Net, model: Any, values: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]
                    ) -> dict[str, str]:
    """``{Caffe Pooling layer: tensor name}`` of the windowed poolings whose ``MAX_POOL_2D`` / ``AVERAGE_POOL_2D``
    tensor has another shape than Caffe's (a pooling rounded the other way), pairing both in execution order, only
    when their counts agree (a global pooling is a ``MEAN``, not counted): what
    :func:`harness.compare.artefacts.saved_model.shape_diagnosis` reads."""
    from .saved_model import windowed_pool_misfits

    pools = [n for n, op, _ in _operator_outputs(model) if op in ("MAX_POOL_2D", "AVERAGE_POOL_2D") and n in values]
    return windowed_pool_misfits(net, pools, values, ref)


def quantised(model: Any) -> bool:
    """Whether any tensor (weights included) is stored quantised (int8/uint8/int16 with scales) or as float16."""
    from ai_edge_litert import schema_py_generated as schema

    tt = schema.TensorType
    for sg in model.subgraphs:
        for t in sg.tensors or []:
            if t.type == tt.FLOAT16:
                return True
            q = t.quantization
            if t.type in (tt.INT8, tt.UINT8, tt.INT16) and q is not None and q.scale is not None and len(q.scale):
                return True
    return False


def _all_outputs(model: Any) -> bytes:
    """The model with every operator output of subgraph 0 made a subgraph output (so a delegate writes it back)."""
    import flatbuffers

    sg = model.subgraphs[0]
    outs = [int(o) for o in sg.outputs]
    have = set(outs)
    for op in sg.operators:
        for o in op.outputs:
            if int(o) >= 0 and int(o) not in have:
                outs.append(int(o))
                have.add(int(o))
    sg.outputs = np.asarray(outs, np.int32)
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _interpreter(buf: bytes, model: Any, delegate: str, path: str) -> Any:
    mod = litert()
    try:
        if delegate == "none":
            it = mod.Interpreter(model_content=buf, experimental_preserve_all_tensors=True,
                                 experimental_op_resolver_type=mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        else:
            it = mod.Interpreter(model_content=_all_outputs(model))
    except (ValueError, RuntimeError) as e:
        raise HarnessError(f"--tflite {path!r}: LiteRT cannot load the model ({' '.join(str(e).split())[:200]})"
                           ) from None
    return it


def _pair_inputs(net: Net, it: Any, path: str) -> dict[str, dict]:
    """``{Caffe input blob: input tensor detail}``: by the serving signature's input names (the converter names
    them after the blobs), else by order."""
    details = it.get_input_details()
    by_index = {d["index"]: d for d in details}
    names = list(net.inputs)
    sigs = it._get_full_signature_list() or {}
    sig = sigs.get("serving_default") or (next(iter(sigs.values())) if sigs else {})
    sin = (sig or {}).get("inputs", {})
    if set(names) <= set(sin):
        return {n: by_index[sin[n]] for n in names}
    if len(details) != len(names):
        raise HarnessError(f"--tflite {path!r} has {len(details)} input(s) "
                           f"({', '.join(d['name'] for d in details)}); the prototxt's net has {len(names)} "
                           f"({', '.join(names)})")
    return dict(zip(names, details))


def _shape_for(x: np.ndarray, detail: dict, blob: str, path: str) -> tuple[tuple[int, ...], bool]:
    """(the input tensor shape to use, whether the model's batch axis is resizable); refuses a shape that is
    neither NHWC nor NCHW of the Caffe input."""
    sig = tuple(int(d) for d in detail.get("shape_signature", detail["shape"]))
    shape = tuple(int(d) for d in detail["shape"])
    nchw = tuple(x.shape)
    rest = shape[1:]
    ok = len(shape) == len(nchw) and (rest == nchw[1:] or (len(nchw) == 4 and rest == (nchw[2], nchw[3], nchw[1])))
    if not ok:
        raise HarnessError(f"--tflite {path!r}: input {detail['name']!r} has shape {list(shape)}; the prototxt's "
                           f"input {blob!r} is {list(nchw)} (NCHW), and the model's shape is neither its NHWC nor "
                           f"its NCHW order")
    return (nchw[0],) + rest, bool(sig) and sig[0] == -1


def _feed(x: np.ndarray, detail: dict, path: str) -> np.ndarray:
    """An NCHW float input laid out and typed as the input tensor wants (an int8 input quantised with its own
    scale and zero point)."""
    shape = tuple(int(d) for d in detail["shape"])
    x = np.asarray(x, np.float32)
    if x.ndim == 4 and shape[1:] != x.shape[1:]:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    dt = np.dtype(detail["dtype"])
    if np.issubdtype(dt, np.integer):
        scale, zp = detail.get("quantization", (0.0, 0))
        if not scale:
            raise HarnessError(f"--tflite {path!r}: input {detail['name']!r} is {dt.name} without quantisation "
                               f"parameters (no scale to quantise the Caffe input with)")
        info = np.iinfo(dt)
        x = np.clip(np.round(x / scale + zp), info.min, info.max)
    return x.astype(dt)


def _read(it: Any, indices: list[int]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Every float (or quantised) tensor written by an operator, dequantised, keyed by a unique name."""
    details = {d["index"]: d for d in it.get_tensor_details()}
    values: dict[str, np.ndarray] = {}
    order: list[str] = []
    for i in indices:
        d = details.get(i)
        if d is None:
            continue
        dt = np.dtype(d["dtype"])
        qp = d.get("quantization_parameters") or {}
        scales = np.asarray(qp.get("scales", []))
        if not (np.issubdtype(dt, np.floating) or (np.issubdtype(dt, np.integer) and scales.size)):
            continue
        try:
            v = it.get_tensor(i)
        except ValueError:  # a tensor the runtime did not keep
            continue
        if v is None:
            continue
        v = dequantize(v, scales, qp.get("zero_points", []), int(qp.get("quantized_dimension", 0)))
        name = d["name"] or f"tensor#{i}"
        if name in values:
            name = f"{name}#{i}"
        values[name] = np.asarray(v, np.float64 if np.issubdtype(dt, np.integer) else np.float32)
        order.append(name)
    return values, order


def _op_outputs(it: Any) -> list[int]:
    """Operator outputs in execution order, each once (a delegate's node lists again what it computes)."""
    out: dict[int, None] = {}
    for op in it._get_ops_details():
        out.update((int(o), None) for o in op["outputs"] if int(o) >= 0)
    return list(out)


def _invoke(it: Any, feeds: Mapping[str, np.ndarray], dets: Mapping[str, dict], shapes: Mapping[str, tuple],
            path: str, skip: frozenset[int] = frozenset()) -> tuple[dict[str, np.ndarray], list[str]]:
    """One invoke; every operator output read (:func:`_read`) but the tensors ``skip`` names (:func:`retyped`)."""
    for blob, d in dets.items():
        if tuple(int(v) for v in d["shape"]) != shapes[blob]:
            it.resize_tensor_input(d["index"], list(shapes[blob]))
    try:
        it.allocate_tensors()
    except (RuntimeError, ValueError) as e:
        raise PathFailed(f"--tflite {path!r}: LiteRT cannot prepare the model ({' '.join(str(e).split())[:200]})"
                         ) from None
    dets = {b: next(x for x in it.get_input_details() if x["index"] == d["index"]) for b, d in dets.items()}
    for blob, d in dets.items():
        it.set_tensor(d["index"], _feed(feeds[blob], d, path))
    try:
        it.invoke()
    except (RuntimeError, ValueError) as e:
        raise PathFailed(f"--tflite {path!r}: LiteRT failed to run the model "
                         f"({' '.join(str(e).split())[:200]})") from None
    outs = [o for o in _op_outputs(it) if o not in skip]
    have = set(outs) | skip
    consts = [int(d["index"]) for d in it.get_output_details() if int(d["index"]) not in have]
    return _read(it, outs + consts)  # + an output no operator writes (a constant: PriorBox folded)


def run_tflite(path: str | os.PathLike, net: Net, data: Mapping[str, np.ndarray], delegate: str = "xnnpack"
               ) -> ArtefactRun:
    """One run of the ``.tflite`` file on ``data`` (NCHW float32 by input blob) with ``delegate``."""
    if delegate not in DELEGATES:
        raise HarnessError(f"--tflite-delegate {delegate!r}: expected one of {', '.join(DELEGATES)}")
    path = str(path)
    buf, model = read_model(path)
    out_names = output_names(model, net)  # before the XNNPACK rewrite adds outputs
    fused = fused_activations(model)
    skip = frozenset(retyped(model))  # before the XNNPACK rewrite makes every tensor an output
    with quiet_native_stderr():
        it = _interpreter(buf, model, delegate, path)
        dets = _pair_inputs(net, it, path)
        plan = {b: _shape_for(np.asarray(data[b]), d, b, path) for b, d in dets.items()}
        if all(resizable or shape[0] == int(dets[b]["shape"][0]) for b, (shape, resizable) in plan.items()):
            values, order = _invoke(it, data, dets, {b: s for b, (s, _) in plan.items()}, path, skip)
        else:  # a fixed batch (1) smaller than the comparison's: one sample at a time
            values, order = _per_sample(it, data, dets, plan, path, skip)
    outputs = {b: t for b, t in out_names.items() if t in values}
    return ArtefactRun("tflite", path, values, order, {b: d["name"] for b, d in dets.items()}, outputs,
                       name=Path(path).name, quantised=quantised(model), fused=fused)


def _per_sample(it, data, dets, plan, path, skip):
    n = next(iter(data.values())).shape[0]
    runs = []
    for i in range(n):
        one = {b: np.asarray(data[b])[i:i + 1] for b in dets}
        runs.append(_invoke(it, one, dets, {b: (1,) + s[1:] for b, (s, _) in plan.items()}, path, skip))
    values, order = runs[0]
    out = {}
    for k in order:
        parts = [r[0].get(k) for r in runs]
        if all(p is not None and p.ndim and p.shape[0] == 1 for p in parts):
            out[k] = np.concatenate(parts, axis=0)
        else:
            out[k] = parts[0]
    return out, order


def check_tflite(net: Net, data: Mapping[str, np.ndarray], path: str | os.PathLike, *, delegate: str = "both",
                 gate: QuantGate | None = None, ref: Mapping[str, np.ndarray] | None = None, **kwargs: Any) -> Report:
    """``path`` judged against ``net`` on ``data`` with each delegate asked for (``"both"``: XNNPACK and the builtin
    kernels).  The report returned is the first path that diverges (XNNPACK first), else XNNPACK's; ``report.
    delegates`` holds each path's verdict and first divergent layer, and ``report.artefact["delegate"]`` the path
    shown.  ``kwargs`` go to :func:`.artefact.compare_artefact` (tolerances, atol, rtol, diagnose)."""
    from ..engine.passes import reference_forward
    from .saved_model import shape_diagnosis, shape_first

    if delegate not in DELEGATES + ("both",):
        raise HarnessError(f"--tflite-delegate {delegate!r}: expected none, xnnpack or both")
    which = list(DELEGATES[::-1]) if delegate == "both" else [delegate]
    ref = reference_forward(net, data) if ref is None else ref
    model = read_model(path)[1]
    reports, failed = {}, {}
    for d in which:
        try:
            run = run_tflite(path, net, data, d)
        except PathFailed as e:
            failed[d] = str(e)
            continue
        run.notes.append(f"LiteRT delegate: {d}" + (" (builtin kernels, no default delegate)" if d == "none" else
                                                    " (the default XNNPACK delegate)"))
        reports[d] = compare_artefact(net, data, run, gate=gate, ref=ref, **kwargs)
        if kwargs.get("diagnose", True):  # a pooling rounded the other way: the causes from the shapes
            misfits = pooling_misfits(net, model, run.values, ref)
            shape_diagnosis(reports[d], net, ref, misfits, run.values)
            shape_first(reports[d], net, ref, misfits, run.values)
    if not reports:
        raise HarnessError(next(iter(failed.values())))
    shown = next((d for d in which if d in reports and not reports[d]), next(d for d in which if d in reports))
    rep = reports[shown]
    rep.artefact["delegate"] = shown
    rep.delegates = {d: {"equivalent": r.equivalent,
                         "first_divergence": r.first_divergence.caffe_layer if r.first_divergence else None,
                         "failed": len(r.failed())} for d, r in reports.items()}
    for d, msg in failed.items():  # this path cannot run the model at all: it diverges
        rep.delegates[d] = {"equivalent": False, "first_divergence": None, "failed": 0, "error": msg}
        rep.output_problems.append(f"the LiteRT {d} path cannot run the model: {msg.split(': ', 1)[-1]}")
    return rep


def open_artefact(path: str | os.PathLike, options: Mapping[str, Any]) -> tuple[str, Any]:
    """The kind seam (:mod:`.kinds`): the file read and refused when bad (:func:`read_model`), the delegate and the
    quantised gate checked: ``(path, parsed model)``."""
    _, model = read_model(path)
    delegate = options.get("tflite_delegate") or "both"
    if delegate not in DELEGATES + ("both",):
        raise HarnessError(f"--tflite-delegate {delegate!r}: expected none, xnnpack or both")
    q1 = options.get("min_top1_agreement")
    if q1 is not None and not 0.0 <= q1 <= 1.0:
        raise HarnessError(f"--min-top1-agreement {q1:g}: a fraction between 0 and 1")
    if not quantised(model) and (options.get("min_sqnr") is not None or q1 is not None):
        raise HarnessError(f"--min-sqnr/--min-top1-agreement: {str(path)!r} is a float32 model (no quantised "
                           f"tensor), judged by the derived float32 bounds")
    return str(path), model


def describe(handle: tuple[str, Any]) -> list[tuple[str, str]]:
    """``[(tensor name, builtin operator)]`` of every operator output of subgraph 0, execution order."""
    return [(n, op) for n, op, _ in _operator_outputs(handle[1])]


def judge(pre: Any, handle: tuple[str, Any], options: Mapping[str, Any], **kwargs: Any) -> Report:
    """The kind seam (:mod:`.kinds`): :func:`check_tflite` on the preamble's net and data with the options'
    delegate and quantised gate (defaults 20 dB and 0)."""
    min_sqnr, min_top1 = options.get("min_sqnr"), options.get("min_top1_agreement")
    gate = QuantGate(20.0 if min_sqnr is None else float(min_sqnr), 0.0 if min_top1 is None else float(min_top1))
    return check_tflite(pre.net, pre.data, handle[0], delegate=options.get("tflite_delegate") or "both", gate=gate,
                        ref=pre.ref(), **kwargs)


def check_tflite_file(prototxt: Any, path: str | os.PathLike, inputs: Any = None, *, weights: Any = None,
                      seed: int = 0, input_shapes: Mapping[str, Any] | None = None, delegate: str = "both",
                      min_sqnr: float | None = None, min_top1_agreement: float | None = None,
                      **kwargs: Any) -> Report:
    """``check --tflite``: the Caffe net (a prototxt or a Net; seeded weights without ``weights``, with a notice),
    its inputs (``inputs`` or seeded standard normal) and :func:`check_tflite`.  ``min_sqnr`` /
    ``min_top1_agreement`` judge a quantised model (defaults 20 dB and 0); for a float32 model they are refused."""
    from .kinds import check_artefact

    return check_artefact("tflite", prototxt, path, inputs, weights=weights, seed=seed, input_shapes=input_shapes,
                          options={"tflite_delegate": delegate, "min_sqnr": min_sqnr,
                                   "min_top1_agreement": min_top1_agreement}, **kwargs)
