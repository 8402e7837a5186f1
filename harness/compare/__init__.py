"""The comparator: does a Keras model compute what a Caffe model computes, layer by layer?

``compare(net_or_prototxt, keras_model, inputs=None, ...) -> Report`` runs the float64 NumPy reference and the Keras
model on the same data, matches Caffe blob records to Keras layer outputs (:mod:`.match`), compares every pair chained
(end to end) and isolated (each Keras layer fed the reference's values, :mod:`.run`) against a derived float32 bound
(:mod:`.tolerance`), names the first divergent layer and asks the diagnosis engine why (:mod:`.diagnose`, optional).
``assert_equivalent(...)`` raises ``AssertionError`` with the terminal verdict as its message.

Structure as well as values: a Caffe net output with no Keras counterpart or a Keras output computed by a layer no
Caffe layer matched makes the report NOT equivalent (``Report.output_problems``; unmatched intermediate layers stay
informational).  The first divergence names the Caffe layer that introduced the error: the first layer of a fused span
(conv1 of ``Conv2D(activation="relu")``) unless the cause is the activation's, a Caffe layer the port left out
(``missing_layer``), or the pair after a stray Keras layer (``extra_layer``).
"""

from __future__ import annotations

import inspect
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..catalogue import traits, types_with
from ..errors import HarnessError, KerasModelError
from ..net import Net
from .result import BlobResult, Cause, FirstDivergence, LayerResult, Report, compare_arrays
from .tolerance import Tolerance, Tolerances

__all__ = ["compare", "assert_equivalent", "Report", "LayerResult", "BlobResult", "Tolerance", "Tolerances", "Cause",
           "load_keras_model", "prepare_inputs"]

MODES = ("both", "chained", "isolated")


def load_keras_model(path: str | os.PathLike) -> Any:
    """Load a user Keras model in safe mode (never executes code from the file)."""
    p = Path(path)
    if not p.exists():
        raise KerasModelError(f"Keras model {str(p)!r} does not exist")
    try:
        from ..convert import load_model as _conv_load  # restores the saved mapping, safe mode
    except Exception:
        _conv_load = None
    try:
        if _conv_load is not None and p.suffix == ".keras":
            return _conv_load(p)
        import keras

        return keras.saving.load_model(str(p), safe_mode=True, compile=False)
    except Exception as e:
        msg = " ".join(str(e).split())
        if "safe_mode" in msg or "unsafe" in msg.lower() or "lambda" in msg.lower():
            raise KerasModelError(
                f"Keras model {str(p)!r} needs unsafe deserialization (it contains a Lambda or other Python code); "
                f"refusing to load it in safe mode") from None
        if isinstance(e, HarnessError):
            raise
        raise KerasModelError(f"cannot load Keras model {str(p)!r}: {type(e).__name__}: {msg[:300]}") from None


def _nested_graph(op: Any) -> Any:
    """The functional graph of a model used as a layer (a Sequential keeps one in ``_functional``), else None."""
    import keras

    if isinstance(op, keras.Model):
        graph = getattr(op, "_functional", None) if isinstance(op, keras.Sequential) else op
        if graph is not None and hasattr(graph, "_run_through_graph"):
            return graph
    return None


def flatten_nested(model: Any) -> Any:
    """A Keras model with every nested model (e.g. a Sequential backbone used as one layer) inlined, so that each
    Caffe layer can pair with the Keras layer computing it.  The same layer objects (weights, names) are called on new
    symbolic tensors; a model without nested models is returned as it is."""
    import keras

    if not any(_nested_graph(lay) is not None for lay in getattr(model, "layers", [])):
        return model

    def operation_fn(op: Any) -> Any:
        graph = _nested_graph(op)
        if graph is None:
            return op

        def run(*args: Any, **kwargs: Any) -> Any:
            return graph._run_through_graph(args[0] if len(args) == 1 else list(args), operation_fn=operation_fn)

        return run

    import warnings

    try:
        inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name) for t in model.inputs]
        with warnings.catch_warnings():  # Keras notes that a nested model gets a bare tensor, not its input dict
            warnings.simplefilter("ignore", UserWarning)
            outputs = model._run_through_graph(inputs[0] if len(inputs) == 1 else inputs, operation_fn=operation_fn)
        return keras.Model(inputs, outputs, name=model.name)
    except Exception as e:  # noqa: BLE001 - an unusual nesting: compare the model as it is
        warnings.warn(f"could not inline the nested models of {model.name!r} ({e}); they are compared as single "
                      f"layers", stacklevel=2)
        return model


def _given_shapes(inputs: Any) -> dict[str, tuple[int, ...]] | None:
    """NCHW shapes of the input arrays the user gave by name (they size the net, as Caffe's Reshape does)."""
    if isinstance(inputs, Mapping) and inputs and all(hasattr(v, "shape") for v in inputs.values()):
        return {str(k): tuple(int(d) for d in np.shape(v)) for k, v in inputs.items()}
    return None


def _load_net(net_or_prototxt: Any, weights: Any, seed: int,
              input_shapes: Mapping[str, Sequence[int]] | None = None) -> Net:
    if isinstance(net_or_prototxt, Net):
        net = net_or_prototxt
        if weights is not None:
            from ..caffe import load_net

            if not net.source or net.source == "<string>":
                raise HarnessError("weights= given with an already loaded Net; load the net with its weights")
            net = load_net(net.source, weights=weights)
    else:
        from ..caffe import load_net

        net = load_net(net_or_prototxt, weights=weights, input_shapes=input_shapes or None)
    if not net.has_weights and any(traits(lay.kind).weighted != "no" for lay in net.layers):
        from ..weights import random_weights

        net = random_weights(net, seed)
    return net




def prepare_inputs(net: Net, inputs: Any, seed: int) -> dict[str, np.ndarray]:
    """The data both sides get: NCHW float32 per Caffe input (seeded standard normal where not given)."""
    if inputs is None:
        inputs = {}
    elif isinstance(inputs, np.ndarray):
        if len(net.inputs) != 1:
            raise HarnessError(f"one array given but the net has {len(net.inputs)} inputs ({', '.join(net.inputs)})")
        inputs = {next(iter(net.inputs)): inputs}
    elif not isinstance(inputs, Mapping):
        raise HarnessError(f"inputs: expected a dict of NCHW arrays or one array, got {type(inputs).__name__}")
    unknown = [k for k in inputs if k not in net.inputs]
    if unknown:
        raise HarnessError(f"input {unknown[0]!r} is not an input of net {net.name!r} "
                           f"(inputs: {', '.join(net.inputs)})")
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in net.inputs.items():
        if name in inputs:
            a = np.asarray(inputs[name])
            if tuple(a.shape) != tuple(shape):
                if a.ndim == len(shape) and a.ndim == 4 and tuple(a.shape[1:]) == (shape[2], shape[3], shape[1]) \
                        and a.shape[0] == shape[0]:
                    raise HarnessError(f"input {name!r} has shape {a.shape}, which looks NHWC; the Caffe input is "
                                       f"{tuple(shape)} (NCHW): give it NCHW")
                raise HarnessError(f"input {name!r} has shape {tuple(a.shape)}, the net expects {tuple(shape)} (NCHW)")
            if not np.issubdtype(a.dtype, np.number):
                raise HarnessError(f"input {name!r} has dtype {a.dtype}, expected numbers")
            out[name] = a.astype(np.float32)
        else:
            out[name] = rng.standard_normal(tuple(shape)).astype(np.float32)
    return out


def _get_diagnose() -> Callable[..., Any] | None:
    try:
        from .diagnose import diagnose
    except ImportError:
        return None
    return diagnose


def _call_diagnose(fn: Callable[..., Any], layer, keras_obj, ref_inputs, ref_output, keras_output,
                   extra: dict[str, Any]) -> list[Any]:
    try:
        sig = inspect.signature(fn)
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
            kw = extra
        else:
            kw = {k: v for k, v in extra.items() if k in sig.parameters}
    except (TypeError, ValueError):
        kw = {}
    return list(fn(layer, keras_obj, ref_inputs, ref_output, keras_output, **kw) or [])


def compare(net_or_prototxt: Any, keras_model: Any = None, inputs: Any = None, *, weights: Any = None,
            mode: str = "both", atol: float | None = None, rtol: float | None = None, tolerances: Any = None,
            mapping: Mapping[str, Any] | None = None, seed: int = 0, user_map: Any = None,
            diagnose: bool = True, progress: Callable[[str, int, int], None] | None = None,
            input_shapes: Mapping[str, Sequence[int]] | None = None) -> Report:
    """Compare a Caffe net with a Keras model layer by layer.

    ``net_or_prototxt``: a :class:`~harness.net.Net` or a prototxt path (``weights``: .caffemodel/.npz; a net without
    weights gets seeded random ones).  ``keras_model``: a Keras model, a path to one (loaded in safe mode) or None
    (convert the net).  ``inputs``: ``{input blob: NCHW array}`` or one array (default: seeded standard normal).
    ``mode``: "both", "chained" or "isolated".  ``atol``/``rtol``: override the derived bound (an element passes when
    within atol OR within rtol*|ref|); ``tolerances``: overrides per type/layer with reasons (see
    :class:`Tolerances.build`).  ``input_shapes``: ``{input blob: NCHW shape}`` when loading a prototxt (default: the
    shapes of the ``inputs`` given by name, else the prototxt's; train_val nets need one of them).  ``mapping``: ``{"<layer>/<top>": (keras_layer, output_index, layout)}`` (default: the
    model's ``harness_mapping``); ``user_map``: ``{"caffe": "keras"}`` or ``["caffe=keras", ...]`` overrides.
    """
    from .match import match, parse_user_map
    from .run import (CaffeSide, ChainedValues, KerasEvaluator, disable_tf32, from_keras_layout, growth,
                      match_inputs, pair_tensor, to_keras_layout)

    if mode not in MODES:
        raise HarnessError(f"mode={mode!r} is not supported ({', '.join(MODES)})")
    tol = Tolerances.build(atol=atol, rtol=rtol, tolerances=tolerances)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if input_shapes is None and not isinstance(net_or_prototxt, Net):
        input_shapes = _given_shapes(inputs)
    net = _load_net(net_or_prototxt, weights, seed, input_shapes)
    timings["load"] = time.perf_counter() - t0

    t = time.perf_counter()
    if keras_model is None:
        from ..convert import convert

        keras_model = convert(net)
    elif isinstance(keras_model, (str, os.PathLike)):
        keras_model = load_keras_model(keras_model)
    timings["keras_model"] = time.perf_counter() - t
    if not hasattr(keras_model, "layers") or not hasattr(keras_model, "get_layer"):
        raise KerasModelError(f"expected a Keras model (or a path to a .keras file), got "
                              f"{type(keras_model).__name__}")
    keras_model = flatten_nested(keras_model)
    disable_tf32()

    if mapping is None:
        mapping = getattr(keras_model, "harness_mapping", None)

    data = prepare_inputs(net, inputs, seed)
    if progress is not None:
        progress("reference (float64)", 0, 0)
    t = time.perf_counter()
    from ..reference import forward

    # The reference's allocator setting (keep freed heap memory for reuse, harness/reference/_memory.py) speeds up
    # repeated forwards but keeps every freed block of the comparison mapped: off for a compare unless the user set
    # HARNESS_KEEP_FREED_MEMORY (VGG16 check at batch 1 before the streaming changes: 3.11 -> 2.97 GiB peak RSS).
    # It is decided once per process, at the first forward.
    set_default = "HARNESS_KEEP_FREED_MEMORY" not in os.environ
    if set_default:
        os.environ["HARNESS_KEEP_FREED_MEMORY"] = "0"
    try:
        ref = forward(net, {k: v.astype(np.float64) for k, v in data.items()}, dtype=np.float64)
    finally:
        if set_default:
            os.environ.pop("HARNESS_KEEP_FREED_MEMORY", None)
    timings["reference"] = time.perf_counter() - t

    shapes = {k: tuple(v.shape) for k, v in ref.items()}
    kin_known, _ = match_inputs(net, keras_model, data)
    prefer = _preferred_layout(keras_model, data)
    matching = match(net, keras_model, mapping=mapping, user_map=parse_user_map(user_map), shapes=shapes,
                     prefer_layout=prefer)
    pairs = matching.pairs
    ev = KerasEvaluator(keras_model)
    caffe = CaffeSide(net, ref)
    tensors = {p.key: pair_tensor(keras_model, p) for p in pairs}
    total = len(pairs) * (2 if mode == "both" else 1)
    done = 0

    def tick(what: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(what, done, total)

    # --- chained Keras pass
    chained_out: dict[str, np.ndarray | Exception] = {}
    if mode in ("both", "chained"):
        if progress is not None:
            progress("keras (chained)", 0, total)
        t = time.perf_counter()
        memo: dict[int, Any] = {}
        for p in pairs:
            try:
                v = ev.value(tensors[p.key], kin_known, memo)
                chained_out[p.key] = from_keras_layout(_np(v), p.layout)
            except Exception as e:  # a Keras layer failing on the chained data
                chained_out[p.key] = e
        timings["keras_chained"] = time.perf_counter() - t

    # --- isolated Keras pass
    isolated_out: dict[str, np.ndarray | Exception] = {}
    if mode in ("both", "isolated"):
        if progress is not None:
            progress("keras (isolated)", 0, total)
        t = time.perf_counter()
        known = dict(kin_known)
        for p in pairs:
            r = ref[p.key]
            kt = tensors[p.key]
            if _shape_ok(r.shape, to_keras_layout(r, p.layout).shape, kt.shape):
                known[id(kt)] = to_keras_layout(np.asarray(r, np.float32), p.layout)
        memo = {}
        for p in pairs:
            try:
                v = ev.recompute(tensors[p.key], known, memo)
                isolated_out[p.key] = from_keras_layout(_np(v), p.layout)
            except Exception as e:
                isolated_out[p.key] = e
        del known, memo  # the float32 copies of every record and the Keras values in between
        timings["keras_isolated"] = time.perf_counter() - t

    # --- compare
    t = time.perf_counter()
    results: list[LayerResult] = []
    matched_keys = {p.key for p in pairs}
    avail_chained = {k: v.astype(np.float64) for k, v in data.items()}
    for lay in net.layers:
        if lay.kind == "Input":
            for top in lay.tops:
                avail_chained[f"{lay.name}/{top}"] = data[top].astype(np.float64) if top in data else ref[
                    f"{lay.name}/{top}"]
    for p in pairs:
        v = chained_out.get(p.key)
        if isinstance(v, np.ndarray) and v.shape == ref[p.key].shape:
            avail_chained[p.key] = v  # float32; the reference casts its inputs to float64
    cmemo: dict[str, np.ndarray] = {}
    rel_chained: dict[str, float | None] = {}
    for p in pairs:
        lay = caffe.layer_of[p.key]
        r = np.asarray(ref[p.key], np.float64)
        override = tol.override_for(lay)
        bound_arr = None
        tol_desc = ""
        if override is not None:
            tol_desc = _override_desc(override)
            bound_arr = override.bound(r)
        lr = LayerResult(p.caffe_layer, p.caffe_top, p.key, p.keras_layer, p.matched_by, tuple(r.shape),
                         layer_type=lay.type, segment=p.segment)

        def get_bound():
            nonlocal bound_arr, tol_desc
            if bound_arr is None:
                try:
                    b, rule = caffe.bound(p, tol.c)
                    bound_arr, tol_desc = b, f"derived: {rule}"
                except Exception as e:  # a reference function refusing the squared weights: the generic bound
                    from .tolerance import U32

                    bound_arr = tol.c * U32 * math.sqrt(9) * (np.abs(r) + float(np.max(np.abs(r), initial=0.0)))
                    tol_desc = (f"derived (generic, K=8, m=|y|+max|y|; the layer's own rule failed: "
                                f"{type(e).__name__}: {_short(e)})")
            return bound_arr

        if p.key in isolated_out:
            v = isolated_out[p.key]
            if isinstance(v, Exception):
                lr.isolated = BlobResult(p.caffe_layer, "isolated", False, "", tuple(r.shape),
                                         error=f"the Keras layer failed on the reference's inputs: "
                                               f"{type(v).__name__}: {_short(v)}")
            elif v.shape != r.shape:
                lr.isolated = compare_arrays(p.caffe_layer, "isolated", r, v, 0.0, tolerance="")
            else:
                lr.isolated = compare_arrays(p.caffe_layer, "isolated", r, v, get_bound(), tolerance=tol_desc)
            tick(p.caffe_layer)
        if p.key in chained_out:
            v = chained_out[p.key]
            if isinstance(v, Exception):
                lr.chained = BlobResult(p.caffe_layer, "chained", False, "", tuple(r.shape),
                                        error=f"the Keras model failed: {type(v).__name__}: {_short(v)}")
                rel_chained[p.key] = None
            elif v.shape != r.shape:
                lr.chained = compare_arrays(p.caffe_layer, "chained", r, v, 0.0, tolerance="")
                rel_chained[p.key] = None
            else:
                b = get_bound()
                with np.errstate(invalid="ignore", over="ignore"):
                    d_ = np.asarray(np.subtract(v, r, dtype=np.float64, order="C"))
                    np.abs(d_, out=d_)
                    within = bool(np.all(d_ <= b))  # NaN -> False
                del d_
                lr.chained = None
                if override is None and not within:
                    # Not within this layer's own rounding bound of the reference: remove what the layer received
                    # (re-run the reference on the Keras chained inputs) and judge only what it added.
                    try:
                        expected = caffe.compute(p.key, avail_chained, cmemo, exclude=p.key)
                    except Exception:
                        expected = None
                    if expected is not None and expected.shape == r.shape:
                        view = ChainedValues({p.key: expected}, avail_chained, cmemo, ref)
                        eb = None
                        if _moved(caffe, p, avail_chained, cmemo, ref):
                            # an upstream divergence moved this layer's operating point: derive the bound there
                            eb = _bound_at(caffe, p, tol.c, view, b)
                            b = eb
                        lr.chained = compare_arrays(p.caffe_layer, "chained", r, v, b, tolerance=tol_desc,
                                                    expected=expected)
                        if not lr.chained.passed and eb is None:
                            # f(keras inputs) is judged with the bound derived at its own operating point too (the
                            # Keras inputs and f of them): the reference's bound is ~0 where the reference's input
                            # is exactly 0 (after a ReLU) and the Keras one is not (SSD300 conv4_3_norm).  Derived
                            # only when needed: with max(b, that bound) a pass under b stays a pass.
                            eb = _bound_at(caffe, p, tol.c, view, b)
                            lr.chained = compare_arrays(p.caffe_layer, "chained", r, v, b, tolerance=tol_desc,
                                                        expected=expected, expected_bound=eb)
                        lr.chained.propagated_max_abs = float(np.max(np.abs(expected - r))) if r.size else 0.0
                if lr.chained is None:
                    lr.chained = compare_arrays(p.caffe_layer, "chained", r, v, b, tolerance=tol_desc)
                rc = lr.chained
                rel_chained[p.key] = (rc.max_abs / rc.scale if rc.scale else (0.0 if not rc.max_abs else math.inf))
                ups = caffe.upstream_matched(p.key, matched_keys)
                lr.chained.growth = growth(rel_chained[p.key], [rel_chained.get(k, U32_) for k in ups])
            tick(p.caffe_layer)
        if lr.passed:
            isolated_out.pop(p.key, None)  # only a failing pair's outputs are read again (first divergence)
        results.append(lr)
    timings["compare"] = time.perf_counter() - t

    report = Report(net.name, getattr(keras_model, "name", "keras"), mode, results, matching.unmatched_caffe,
                    matching.unmatched_keras, tolerances=tol.to_dict(), timings=timings)
    if not pairs:
        report.notes.append("no Caffe layer could be matched to a Keras layer (use --map CAFFE=KERAS)")
    out_problems = _output_problems(net, matching, keras_model)
    report.output_problems = [msg for _, _, _, msg in out_problems]

    # --- first divergence + diagnosis
    first = None
    for lr in results:
        r_ = lr.isolated if lr.isolated is not None else lr.chained
        if r_ is not None and not r_.passed:
            first = lr
            break
    if first is None:
        for lr in results:
            if not lr.passed:
                first = lr
                break
    if first is not None:
        fd_mode = "isolated" if (first.isolated is not None and not first.isolated.passed) else "chained"
        fd = FirstDivergence(first.caffe_layer, first.keras_layer, first.key, fd_mode)
        skipped = _skipped_layer(caffe, first, matching, ref, isolated_out.get(first.key, chained_out.get(first.key)))
        if skipped is not None:  # the Keras model lacks an unmatched Caffe layer just before this pair
            lay_, key_, err_ = skipped
            fd = FirstDivergence(lay_.name, "", key_, fd_mode)
            if diagnose:
                fd.diagnosis = [Cause(
                    "missing_layer", 0.95,
                    f"the Keras model has no counterpart of Caffe {lay_.type} {lay_.name!r}: re-running the Caffe net "
                    f"without it reproduces the Keras output of {first.caffe_layer!r} to {err_:.1e}",
                    f"add the {lay_.type} layer {lay_.name!r} to the Keras model before {first.keras_layer!r}")]
        extra = None if skipped is not None else _extra_before(
            caffe, first, matching, ref, isolated_out.get(first.key, chained_out.get(first.key)), tensors, p_layout={
                p.key: p.layout for p in pairs})
        if extra is not None:  # the Keras model applies a layer Caffe does not have just before this pair
            kname, err_ = extra
            if diagnose:
                fd.diagnosis = [Cause(
                    "extra_layer", 0.95,
                    f"the Keras model applies {kname!r} before {first.keras_layer!r}; Caffe has no such layer there: "
                    f"the Caffe layer run on that layer's output reproduces the Keras output to {err_:.1e}",
                    f"remove Keras layer {kname!r}")]
        elif skipped is None and diagnose:
            t = time.perf_counter()
            fd.diagnosis = _diagnose(net, keras_model, caffe, first, ref, isolated_out, chained_out, tensors,
                                     matching, ev, kin_known, _input_tensors(net, keras_model))
            timings["diagnose"] = time.perf_counter() - t
        if skipped is None:
            fd.caffe_layer = _introducer(net, first, fd.diagnosis)
        report.first_divergence = fd
    elif out_problems:
        cause, key, klayer, msg = out_problems[0]
        from .match import graph_model  # noqa: F401

        fix = ("add the missing layer to the Keras model (or --map it to the Keras layer that computes it)"
               if cause == "missing_layer" else f"remove Keras layer {klayer!r} (Caffe has no such layer there)")
        lname = key.rsplit("/", 1)[0] if key not in {p.key for p in pairs} else \
            next(p.caffe_layer for p in pairs if p.key == key)
        report.first_divergence = FirstDivergence(lname, klayer, key, "structure",
                                                  [Cause(cause, 0.9, msg, fix)] if diagnose else [])
    timings["total"] = time.perf_counter() - t0
    return report


U32_ = 2.0 ** -24


def _preferred_layout(keras_model: Any, data: Mapping[str, np.ndarray]) -> str:
    """How to read a 4-D Keras tensor whose shape fits both NHWC and NCHW (C == H == W ...): "caffe" (NCHW) for a
    model whose spatial layers are channels_first, else "nhwc".  A model that takes an NCHW input and turns it NHWC
    with a Permute is NHWC inside.  Without spatial layers, the input's declared layout decides."""
    from .match import keras_layers
    from .run import KerasEvaluator

    fmts = set()
    for kl in keras_layers(keras_model):
        cls = type(kl).__name__
        if "Conv" in cls or "Pooling" in cls or cls in ("ZeroPadding2D", "Cropping2D", "UpSampling2D"):
            f = getattr(kl, "data_format", None)
            if f in ("channels_first", "channels_last"):
                fmts.add(f)
    if fmts == {"channels_first"}:
        return "caffe"
    if fmts:
        return "nhwc"
    try:
        kin0 = list(KerasEvaluator(keras_model).input_tensors())[0]
        cin0 = next(iter(data.values()))
        if cin0.ndim == 4 and tuple(kin0.shape[1:]) == tuple(cin0.shape[1:]) and \
                tuple(kin0.shape[1:]) != (cin0.shape[2], cin0.shape[3], cin0.shape[1]):
            return "caffe"  # an NCHW input and no spatial layer saying otherwise
    except Exception:
        pass
    return "nhwc"
# causes that belong to the activation at the end of a fused span (Conv2D(activation=...), Dense(activation=...));
# every other cause belongs to the span's first layer (the convolution, the BatchNorm of BatchNorm+Scale)
_ACTIVATION_CAUSES = {"relu_slope"}
# causes that belong to the first layer of the span carrying a bias (conv1 of conv1+relu1, scale1 of bn1+scale1)
_BIAS_CAUSES = {"missing_bias"}
_BIASED = types_with(biased=True)


def _introducer(net: Net, first: LayerResult, diagnosis: list[Any]) -> str:
    """The Caffe layer that introduced the error of a failing pair: a Keras layer can compute a span of Caffe layers
    (conv1 + relu1); the error is the convolution's unless the diagnosis names the activation."""
    seg = tuple(first.segment) or (first.caffe_layer,)
    if len(seg) == 1:
        return seg[0]
    from .match import ACTIVATIONS

    code = None
    if diagnosis:
        d = diagnosis[0]
        code = d.get("cause") if isinstance(d, dict) else getattr(d, "cause", None)
    if code in _ACTIVATION_CAUSES:
        acts = [n for n in seg if net.layer(n).kind in ACTIVATIONS]
        if acts:
            return acts[-1]
    if code in _BIAS_CAUSES:
        biased = [n for n in seg if net.layer(n).kind in _BIASED]
        if biased:
            return biased[0]
    return seg[0]


def _skipped_layer(caffe: Any, first: LayerResult, matching: Any, ref: Mapping[str, np.ndarray],
                   keras_out: Any) -> tuple[Any, str, float] | None:
    """(Caffe layer, its record, error) when the first divergent pair's Keras output is what Caffe computes without
    an unmatched, shape-keeping Caffe layer right before the pair (an LRN or ReLU the port left out)."""
    from .match import PASSIVE_CAFFE, RELAYOUT_CAFFE

    if not isinstance(keras_out, np.ndarray):
        return None
    covered = {p.key for p in matching.pairs} | set(matching.folded)
    seg = tuple(first.segment) or (first.caffe_layer,)
    seg_keys = {k for name in seg for k in caffe.net.layer(name).keys()}
    r = np.asarray(ref[first.key], np.float64)
    if keras_out.shape != r.shape:
        return None
    scale = float(np.max(np.abs(r))) if r.size else 0.0
    e0 = float(np.max(np.abs(keras_out - r))) if r.size else 0.0
    for k in caffe.bottom_keys[seg[0]]:
        lay = caffe.layer_of.get(k)
        while lay is not None and lay.kind in PASSIVE_CAFFE - {"Input"} and len(caffe.bottom_keys[lay.name]) == 1:
            k = caffe.bottom_keys[lay.name][0]  # through Split / Dropout
            lay = caffe.layer_of.get(k)
        if lay is None or k in covered or lay.kind in PASSIVE_CAFFE | RELAYOUT_CAFFE or \
                len(caffe.bottom_keys[lay.name]) != 1:
            continue
        x = caffe.inputs_of(k)[0]
        if x.shape != np.shape(ref[k]):
            continue
        available = {kk: v for kk, v in ref.items() if kk not in seg_keys}
        available[k] = x  # the layer left out: its output is its input
        try:
            expected = caffe.compute(first.key, available, {}, exclude=first.key)
        except Exception:
            continue
        if expected.shape != r.shape:
            continue
        err = float(np.max(np.abs(keras_out - expected)))
        if err <= 1e-3 * max(scale, 1e-30) and err <= 1e-2 * e0:
            return lay, k, err / max(scale, 1e-30)
    return None


def _extra_before(caffe: Any, first: LayerResult, matching: Any, ref: Mapping[str, np.ndarray], keras_out: Any,
                  tensors: Mapping[str, Any], p_layout: Mapping[str, str]) -> tuple[str, float] | None:
    """(Keras layer, error) when the first divergent pair's Keras output is the Caffe span run on the output of an
    unmatched, shape-keeping Keras layer applied to the reference's input (an extra ReLU between two layers).
    Preprocessing layers (Rescaling, Normalization) are left to the diagnosis (``input_preprocessing``)."""
    from .match import HELPER_KERAS
    from .run import from_keras_layout, to_keras_layout

    if not isinstance(keras_out, np.ndarray) or first.key not in tensors:
        return None
    seg = tuple(first.segment) or (first.caffe_layer,)
    lay0 = caffe.net.layer(seg[0])
    if len(caffe.bottom_keys[lay0.name]) != 1:
        return None
    r = np.asarray(ref[first.key], np.float64)
    if keras_out.shape != r.shape or not r.size:
        return None
    known = {id(t) for t in tensors.values()}
    used = {p.keras_layer for p in matching.pairs} | {v for p in matching.pairs for v in p.via}
    t0 = tensors[first.key]
    op0 = t0._keras_history[0]
    stack = [t for t in op0._inbound_nodes[-1].input_tensors] if op0._inbound_nodes else []
    cands = []
    seen: set[int] = set()
    while stack:
        t = stack.pop()
        if id(t) in seen or id(t) in known:
            continue
        seen.add(id(t))
        op, ni, _ = t._keras_history
        cls = type(op).__name__
        if cls == "InputLayer" or op.name in used:
            continue
        node = op._inbound_nodes[ni]
        if cls not in HELPER_KERAS and cls not in ("Rescaling", "Normalization") and \
                len(node.input_tensors) == 1 and tuple(node.input_tensors[0].shape) == tuple(t.shape):
            cands.append(op)
        stack.extend(node.input_tensors)
    if not cands:
        return None
    x = caffe.inputs_of(caffe.net.layer(seg[0]).keys()[0])[0]
    layout = "nhwc" if x.ndim == 4 else "caffe"
    k_in = caffe.bottom_keys[lay0.name][0]
    layout = p_layout.get(k_in, layout)
    scale = float(np.max(np.abs(r)))
    e0 = float(np.max(np.abs(keras_out - r)))
    for op in cands:
        try:
            y = np.asarray(op(to_keras_layout(np.asarray(x, np.float32), layout)))
            v = from_keras_layout(y, layout).astype(np.float64)
            for name in seg:
                v = caffe.run_layer(caffe.net.layer(name), [v])[0]
        except Exception:
            continue
        if v.shape != r.shape:
            continue
        err = float(np.max(np.abs(keras_out - v)))
        if err <= 1e-3 * max(scale, 1e-30) and err <= 1e-2 * e0:
            return op.name, err / max(scale, 1e-30)
    return None


def _output_problems(net: Net, matching: Any, keras_model: Any) -> list[tuple[str, str, str, str]]:
    """Net outputs with no counterpart, as (cause, Caffe key, Keras layer, message): a Caffe net output whose last
    computing layer has no Keras pair (``missing_layer``), or a Keras model output computed by a layer no Caffe layer
    matched (``extra_layer``).  Unmatched intermediate layers stay informational."""
    from .match import HELPER_KERAS, PASSIVE_CAFFE, RELAYOUT_CAFFE, graph_model

    covered = {p.key for p in matching.pairs} | set(matching.folded)
    out: list[tuple[str, str, str, str]] = []
    for blob in net.outputs:
        recs = [(lay, k) for lay in net.layers for t, k in zip(lay.tops, lay.keys()) if t == blob]
        for lay, key in reversed(recs):
            if lay.kind in PASSIVE_CAFFE | RELAYOUT_CAFFE:
                continue
            if key not in covered:
                out.append(("missing_layer", key, "",
                            f"Caffe output {blob!r} is computed by {lay.type} {lay.name!r}, which has no Keras "
                            f"counterpart: the Keras model does not compute this output"))
            break
    by_keras = {p.keras_layer: p for p in matching.pairs}
    caffe_names = {lay.name for lay in net.layers} | {lay.name.replace("/", ".") for lay in net.layers}
    try:
        outputs = list(graph_model(keras_model).outputs)
    except Exception:
        return out
    for t in outputs:
        extra = None
        stack, seen = [t], set()
        while stack:
            x = stack.pop()
            if id(x) in seen:
                continue
            seen.add(id(x))
            op, ni, _ = x._keras_history
            if op.name in by_keras:
                if extra is not None:
                    p = by_keras[op.name]
                    kind = type(graph_model(keras_model).get_layer(extra)).__name__
                    out.append(("extra_layer", p.key, extra,
                                f"the Keras model output passes through {kind} {extra!r} after the layer matched to "
                                f"Caffe {p.caffe_layer!r}; Caffe has no such layer"))
                break
            cls = type(op).__name__
            if cls == "InputLayer":
                break
            converter_helper = "__" in op.name and op.name.split("__", 1)[0] in caffe_names
            if cls not in HELPER_KERAS and not converter_helper and extra is None:
                extra = op.name
            stack.extend(op._inbound_nodes[ni].input_tensors)
    return out


def _bound_at(caffe, pair, c: float, view, b: np.ndarray) -> np.ndarray:
    """``max(b, the derived bound at the operating point view)`` (``b`` when the derivation fails there)."""
    try:
        return np.maximum(b, caffe.bound(pair, c, view)[0])
    except Exception:
        return b


def _moved(caffe, pair, avail: Mapping[str, np.ndarray], memo: Mapping[str, np.ndarray], ref) -> bool:
    """Whether the chained inputs of ``pair``'s segment differ from the reference's by more than 1e-3 of their
    scale (an upstream bug, not rounding)."""
    first = pair.segment[0] if pair.segment else caffe.layer_of[pair.key].name
    for k in caffe.bottom_keys[first]:
        v = avail.get(k, memo.get(k))
        if v is None:
            continue
        r = np.asarray(ref[k], np.float64)
        if v.shape != r.shape:
            return True
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        if r.size and float(np.max(np.abs(v - r))) > 1e-3 * max(scale, 1e-30):
            return True
    return False


def _np(v: Any) -> np.ndarray:
    from .run import _to_numpy

    return _to_numpy(v)


def _shape_ok(caffe_shape, keras_layout_shape, tensor_shape) -> bool:
    ts = tuple(tensor_shape)
    ks = tuple(keras_layout_shape)
    return len(ts) == len(ks) and all(a is None or int(a) == int(b) for a, b in zip(ts[1:], ks[1:]))


def _short(e: Exception) -> str:
    s = " ".join(str(e).split())
    return s[:240] + ("..." if len(s) > 240 else "")


def _override_desc(t: Tolerance) -> str:
    s = f"atol={t.atol if t.atol is not None else 0:g} OR rtol={t.rtol if t.rtol is not None else 0:g}"
    return s + (f" ({t.reason})" if t.reason else "")


def _input_tensors(net: Net, keras_model: Any) -> dict[str, Any]:
    """Caffe input record key ("<Input layer>/<top>") -> Keras input tensor."""
    from .match import graph_model

    kin = list(graph_model(keras_model).inputs)
    names = list(net.inputs)
    knames = [t._keras_history[0].name for t in kin]
    order = knames if set(knames) == set(names) else names
    by_blob = dict(zip(order, kin))
    out = {}
    for lay in net.layers:
        if lay.kind == "Input":
            for top in lay.tops:
                if top in by_blob:
                    out[f"{lay.name}/{top}"] = by_blob[top]
    return out


def _diagnose(net, keras_model, caffe, first: LayerResult, ref, isolated_out, chained_out, tensors, matching,
              ev, kin_known, input_tensors) -> list[Any]:
    fn = _get_diagnose()
    res = first.isolated if first.isolated is not None and not first.isolated.passed else first.chained
    if fn is None:
        return [Cause("unknown", 0.0, "the diagnosis engine (harness.compare.diagnose) is not available in this "
                      "installation", "inspect the layer's weights, padding and layout by hand")]
    seg_first = net.layer(first.segment[0]) if first.segment else caffe.layer_of[first.key]
    key0 = seg_first.keys()[0] if first.segment and len(first.segment) > 1 else first.key
    ref_inputs = caffe.inputs_of(key0)
    if seg_first.kind == "InnerProduct" and ref_inputs and np.ndim(ref_inputs[0]) == 2:
        # an InnerProduct after a Caffe Flatten computes the same on the unflattened 4-D blob: hand the diagnosis
        # that blob so the layout hypotheses (flatten_order ...) can be tested
        bk = caffe.bottom_keys[seg_first.name][0]
        prod = caffe.layer_of.get(bk)
        if prod is not None and prod.kind in ("Flatten", "Reshape"):
            x4 = caffe.inputs_of(bk)[0]
            if np.ndim(x4) == 4 and x4.size == np.size(ref_inputs[0]):
                ref_inputs = [np.asarray(x4), *ref_inputs[1:]]
    keras_out = isolated_out.get(first.key)
    if not isinstance(keras_out, np.ndarray):
        keras_out = chained_out.get(first.key)
    if not isinstance(keras_out, np.ndarray):
        keras_out = None
    graph = keras_model
    try:
        from .match import graph_model

        kl = graph_model(keras_model).get_layer(first.keras_layer)
    except Exception:
        kl = None
    layouts = {p.key: p.layout for p in matching.pairs}
    bottom_keys = caffe.bottom_keys[seg_first.name]

    def keras_fn(xs: list[np.ndarray]) -> np.ndarray:
        """Re-run the Keras side of the first divergent pair on NCHW values of the Caffe bottoms."""
        from .run import from_keras_layout, to_keras_layout

        known = dict(kin_known)
        for p in matching.pairs:
            if p.key != first.key and p.key in ref and p.key in tensors:
                r = ref[p.key]
                known[id(tensors[p.key])] = to_keras_layout(np.asarray(r, np.float32), p.layout)
        for k, x in zip(bottom_keys, xs):
            t_ = tensors.get(k) if k in tensors else input_tensors.get(k)
            if t_ is None:
                raise HarnessError(f"no Keras tensor for Caffe blob {k!r}")
            if np.ndim(x) == 4 and len(t_.shape) == 2:  # the unflattened blob of a Caffe Flatten (see above)
                x = np.reshape(x, (np.shape(x)[0], -1))
            lay_ = layouts.get(k, "nhwc" if len(t_.shape) == 4 and np.ndim(x) == 4 and
                               tuple(t_.shape[1:]) == (x.shape[2], x.shape[3], x.shape[1]) else "caffe")
            known[id(t_)] = to_keras_layout(np.asarray(x, np.float32), lay_)
        v = ev.recompute(tensors[first.key], known, {})
        return from_keras_layout(_np(v), layouts.get(first.key, "nhwc")).astype(np.float64)

    extra = {"keras_fn": keras_fn, "context": {"chain": [net.layer(n) for n in first.segment[1:]], "net": net,
                                               "key": first.key, "keras_model": graph, "result": res}}
    try:
        return _call_diagnose(fn, seg_first, kl, ref_inputs, np.asarray(ref[first.key]), keras_out, extra)
    except Exception as e:  # the diagnosis must never hide the verdict
        return [Cause("unknown", 0.0, f"the diagnosis engine failed: {type(e).__name__}: {_short(e)}",
                      "inspect the layer by hand")]


def assert_equivalent(net_or_prototxt: Any, keras_model: Any = None, inputs: Any = None, **kwargs: Any) -> Report:
    """:func:`compare`, raising ``AssertionError`` (message: the terminal verdict) when not equivalent."""
    report = compare(net_or_prototxt, keras_model, inputs, **kwargs)
    if not report:
        raise AssertionError(report.verdict())
    return report


def __getattr__(name: str) -> Any:  # pragma: no cover - lazy submodules
    import importlib

    if name in ("match", "run", "report", "tolerance", "result", "diagnose"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(name)


# ``harness.compare`` is both this package and the public function: importing the package sets the attribute
# ``harness.compare`` to the module, so the module itself is made callable (it calls :func:`compare`).
import sys as _sys  # noqa: E402
import types as _types  # noqa: E402


class _CallableModule(_types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Report:
        return compare(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
