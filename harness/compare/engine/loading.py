"""Loading the Keras side: a model file in safe mode, nested models inlined, the layout its tensors use, and its
input tensors by Caffe input record."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ...catalogue import is_source

# Keras classes with a data_format (class names, not Caffe types): convolutions, poolings, padding, cropping, resizing
_SPATIAL_KERAS = re.compile(r"Conv|Pooling|^ZeroPadding2D$|^Cropping2D$|^UpSampling2D$")
from ...errors import HarnessError, KerasModelError
from ...net import Net


def load_keras_model(path: str | os.PathLike, *, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """Load a user Keras model in safe mode (never executes code from the file).  ``custom_objects``: the user's own
    layer classes by name (see :func:`resolve_custom_objects`); a file that is not a Keras model (a SavedModel
    folder, a weights-only ``.weights.h5``) is refused with one line saying what it is and what to pass instead."""
    p = Path(path)
    refusal = _not_a_model(p) or _code_in_model(p)
    if refusal:
        raise KerasModelError(refusal)
    import keras

    from ...convert import load_model as _conv_load  # restores the saved mapping, safe mode

    try:
        with keras.saving.custom_object_scope(dict(custom_objects or {})):
            if p.suffix == ".keras":
                return _conv_load(p)
            return keras.saving.load_model(str(p), safe_mode=True, compile=False)
    except Exception as e:
        raise _load_failure(p, e) from None


def _not_a_model(p: Path) -> str | None:
    """Why ``p`` is not a Keras model file to load, or None."""
    where = repr(str(p))
    if not p.exists():
        return f"Keras model {where} does not exist"
    if p.is_dir():
        if (p / "saved_model.pb").exists():
            return (f"{where} is a TensorFlow SavedModel folder, not a Keras model file: check it with "
                    f"--saved-model {str(p)} (or pass the .keras or .h5 model it was exported from with --keras)")
        return f"{where} is a folder, not a Keras model file (.keras or .h5)"
    if p.suffix.lower() == ".tflite":
        return f"{where} is a LiteRT (.tflite) model, not a Keras model file: check it with --tflite {str(p)}"
    if p.name.endswith(".weights.h5"):
        return (f"{where} is a weights-only file (model.save_weights): it holds no layers to compare; pass the whole "
                f"model saved with model.save('model.keras')")
    return None


def _model_config(p: Path) -> Any:
    """The model's architecture as saved, without building anything: ``config.json`` of a ``.keras`` zip, the
    ``model_config`` attribute of a legacy (Keras 2 / tf_keras) ``.h5``; None when it cannot be read (the loader
    then says why)."""
    import json

    try:
        if p.suffix == ".keras":
            import zipfile

            with zipfile.ZipFile(p) as z:
                return json.loads(z.read("config.json").decode("utf-8"))
        if p.suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(p, "r") as f:
                raw = f.attrs.get("model_config")
            if raw is None:
                return None
            return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
    except Exception:  # noqa: BLE001 - an unreadable file: the loader names the failure
        return None
    return None


# serialized Python code: a Lambda layer (its function marshalled or as source) and a Python lambda standing for an
# activation or another callable (Keras 3: class_name "__lambda__" with its bytecode; tf_keras: "function_type").  A
# registered function (class_name "function" + module + name) is a reference by name, not code, and is not listed.
_CODE_CLASSES = {"Lambda": "is a Lambda layer", "__lambda__": "holds a Python lambda"}


def _marshalled(v: Any) -> bool:
    """A function dumped as ``[base64 bytecode, defaults, closure]`` (Keras's func_dump, e.g. a lambda given as a
    layer's ``activation``): the base64 text decodes to a marshalled code object (type byte ``c``, 0x63 / 0xe3)."""
    import base64
    import binascii

    if not (isinstance(v, list) and len(v) == 3 and isinstance(v[0], str) and len(v[0]) > 16):
        return False
    try:
        return base64.b64decode(v[0], validate=False)[:1] in (b"\x63", b"\xe3")
    except (binascii.Error, ValueError):
        return False


def _code_layers(config: Any, layer: str | None = None) -> list[tuple[str, str]]:
    """``[(layer name, what)]`` of the Python code in a saved model config (nested models included), one entry per
    layer."""
    found: dict[str, str] = {}

    def walk(c: Any, here: str | None) -> None:
        if isinstance(c, dict):
            inner = c.get("config")
            name = c.get("name") or (inner.get("name") if isinstance(inner, dict) else None)
            if isinstance(name, str) and "class_name" in c:
                here = name
            cls = c.get("class_name")
            if isinstance(cls, str) and cls in _CODE_CLASSES:
                found.setdefault(here or "?", _CODE_CLASSES[cls])
            elif c.get("function_type") in ("lambda", "raw") or _marshalled(c.get("value")):
                found.setdefault(here or "?", "holds a marshalled Python function")
            for v in c.values():
                walk(v, here)
        elif isinstance(c, list):
            for v in c:
                walk(v, here)

    walk(config, layer)
    return list(found.items())


def _code_in_model(p: Path) -> str | None:
    """Why ``p`` is refused in safe mode because it holds Python code, naming the layer, or None."""
    found = _code_layers(_model_config(p))
    if not found:
        return None
    name, what = found[0]
    more = f" (and {len(found) - 1} more: {', '.join(repr(n) for n, _ in found[1:4])})" if len(found) > 1 else ""
    return (f"Keras model {str(p)!r}: layer {name!r} {what}: Python code in a model file never runs (safe mode: "
            f"no unsafe deserialization){more}; replace it by a layer class of your own and pass it with "
            f"--custom-objects module:Class")


def _load_failure(p: Path, e: Exception) -> HarnessError:
    import re

    msg = " ".join(str(e).split())
    where = repr(str(p))
    inner = " ".join(str(e.__context__ or "").split())  # the Keras error behind a harness one (raised from None)
    m = re.search(r"Could not locate (?:class|function) '([^']+)'", inner) or re.search(r"Could not locate (?:class|function) '([^']+)'", msg)
    if m:
        return KerasModelError(
            f"Keras model {where} uses the class {m.group(1)!r}, which is neither a Keras nor a harness class: pass "
            f"the module that defines it with --custom-objects your_module:{m.group(1)} (your own module is "
            f"imported; no code from the model file runs)")
    if "safe_mode" in msg or "unsafe" in msg.lower() or "lambda" in msg.lower():
        return KerasModelError(
            f"Keras model {where} needs unsafe deserialization (it contains a Lambda or other Python code); "
            f"refusing to load it in safe mode: replace the Lambda by a layer class of your own and pass it with "
            f"--custom-objects module:Class")
    if isinstance(e, HarnessError):
        return e
    return KerasModelError(f"cannot load Keras model {where}: {type(e).__name__}: {msg[:500]}")


def resolve_custom_objects(specs: Sequence[str] | None) -> dict[str, type]:
    """``["module:Name", ...]`` -> ``{"Name": class}``: the explicit opt-in for a port's own layer classes.  The
    user's module is imported (from ``sys.path`` / the current folder); nothing in a model file is executed."""
    import importlib
    import sys

    out: dict[str, type] = {}
    for spec in specs or ():
        mod_name, sep, name = spec.partition(":")
        if not sep or not mod_name or not name:
            raise HarnessError(f"--custom-objects {spec!r}: expected MODULE:CLASS (e.g. my_layers:CaffeLRN)")
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            mod = importlib.import_module(mod_name)
        except Exception as e:
            raise HarnessError(f"--custom-objects {spec!r}: cannot import module {mod_name!r}: "
                               f"{type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
        obj = getattr(mod, name, None)
        if not isinstance(obj, type):
            raise HarnessError(f"--custom-objects {spec!r}: module {mod_name!r} has no class {name!r}")
        out[name] = obj
    return out


def _nested_graph(op: Any) -> Any:
    """The functional graph of a model used as a layer (a Sequential keeps one in ``_functional``), else None."""
    import keras

    if isinstance(op, keras.Model):
        graph = getattr(op, "_functional", None) if isinstance(op, keras.Sequential) else op
        if graph is not None and hasattr(graph, "_run_through_graph"):
            return graph
    return None


def flatten_nested(model: Any) -> Any:
    """A Keras model with every nested model (e.g. a Sequential backbone used as one layer, or a subclassed model in a
    user's wrap ``keras.Model(i, port(i))``) inlined, and every bare ``keras.ops`` activation made an ``Activation``
    layer (:mod:`.subclassed`), so that each Caffe layer can pair with the Keras layer computing it.  The same layer
    objects (weights, names) are called on new symbolic tensors; a model with nothing to inline is returned as it
    is."""
    for _ in range(8):  # a subclassed block may hold a Sequential, which may hold ...: until nothing is left
        flat = _inline_once(model)
        if flat is model:
            return model
        model = flat
    return model


def _inline_once(model: Any) -> Any:
    import keras

    from .subclassed import activation_layer, is_subclassed, symbolic_call

    ops = getattr(model, "operations", None) or getattr(model, "layers", [])
    if not any(_nested_graph(op) is not None or is_subclassed(op) or activation_layer(op) is not None for op in ops):
        return model

    def operation_fn(op: Any) -> Any:
        graph = _nested_graph(op)
        if graph is None and is_subclassed(op):
            return lambda *args, **kwargs: symbolic_call(op, args[0] if len(args) == 1 else list(args))
        if graph is None:
            return activation_layer(op) or op

        def run(*args: Any, **kwargs: Any) -> Any:
            return graph._run_through_graph(args[0] if len(args) == 1 else list(args), operation_fn=operation_fn)

        return run

    try:
        inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name) for t in model.inputs]
        with warnings.catch_warnings():  # Keras notes that a nested model gets a bare tensor, not its input dict
            warnings.simplefilter("ignore", UserWarning)
            outputs = model._run_through_graph(inputs[0] if len(inputs) == 1 else inputs, operation_fn=operation_fn)
        return keras.Model(inputs[0] if len(inputs) == 1 else inputs, outputs, name=model.name)
    except Exception as e:  # noqa: BLE001 - an unusual nesting: compare the model as it is
        warnings.warn(f"could not inline the nested models of {model.name!r} ({e}); they are compared as single "
                      f"layers", stacklevel=2)
        return model


def _at_net_size(built: list[tuple], net: Net) -> list[tuple]:
    """The build shapes with their spatial sizes taken from the net being checked (its input as given): a subclassed
    port's ``call()`` runs at any size, its build config only says the size of its first call.  A build shape that is
    not the net input's NHWC (or NCHW) form at another size is kept as it is."""
    dims = list(net.inputs.values())
    if len(dims) != len(built):
        return built
    out = []
    for b, d in zip(built, dims):
        if len(b) == len(d) == 4 and b[-1] == d[1]:
            out.append((None, *d[2:], d[1]))  # NHWC, as built
        elif len(b) == len(d) == 4 and b[1] == d[1]:
            out.append((None, *d[1:]))  # channels first, as built
        else:
            out.append(b)
    return out


def trace_if_subclassed(keras_model: Any, net: Net) -> Any:
    """A subclassed model (no functional graph) traced into one (:func:`.subclassed.trace_subclassed`) at the size of
    the net's input (NHWC, or the layout and rank it was built with); at its build shapes when its ``call()`` cannot
    run at that size; refused in one line when its ``call()`` cannot run on symbolic tensors at all."""
    from .subclassed import build_shapes, is_subclassed, trace_subclassed

    if not is_subclassed(keras_model):
        return keras_model
    names = list(net.inputs)
    built = build_shapes(keras_model)
    shapes = _at_net_size(built, net) if built else [(None, *d[2:], d[1]) if len(d) == 4 else (None, *d[1:])
                                                      for d in net.inputs.values()]  # NHWC, as a Keras port takes it
    names = names if len(names) == len(shapes) else [f"input_{i}" for i in range(len(shapes))]
    tries = [shapes] + ([built] if built and built != shapes else [])
    for i, sh in enumerate(tries):
        try:
            return trace_subclassed(keras_model, sh, names)
        except Exception as e:  # noqa: BLE001 - the user's call(): say what failed, in one line
            if i + 1 < len(tries):
                continue
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise KerasModelError(f"subclassed Keras model {keras_model.name!r}: its call() could not run on "
                                  f"symbolic inputs of shape {[tuple(s) for s in sh]} ({type(e).__name__}: {msg}); "
                                  f"build it with a functional wrap of the layers it calls, or use keras.ops (not "
                                  f"tf.*) in call()") from None
    return keras_model


def resolve_keras_model(keras_model: Any, net: Net, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """The Keras model to compare: ``None`` converts ``net``, a path is loaded in safe mode; nested models are
    inlined.  Anything that is not a built Keras model is refused by name."""
    if keras_model is None:
        from ...convert import convert

        keras_model = convert(net)
    elif isinstance(keras_model, (str, os.PathLike)):
        keras_model = load_keras_model(keras_model, custom_objects=custom_objects)
    if not hasattr(keras_model, "layers") or not hasattr(keras_model, "get_layer"):
        raise KerasModelError(f"expected a Keras model (or a path to a .keras file), got "
                              f"{type(keras_model).__name__}")
    return flatten_nested(trace_if_subclassed(keras_model, net))


def preferred_layout(keras_model: Any, data: Mapping[str, np.ndarray]) -> str:
    """How to read a 4-D Keras tensor whose shape fits both NHWC and NCHW (C == H == W ...): "caffe" (NCHW) for a
    model whose spatial layers are channels_first, else "nhwc".  A model that takes an NCHW input and turns it NHWC
    with a Permute is NHWC inside.  Without spatial layers, the input's declared layout decides."""
    from .match import keras_layers
    from .evaluation import KerasEvaluator

    fmts = set()
    for kl in keras_layers(keras_model):
        cls = type(kl).__name__
        if _SPATIAL_KERAS.search(cls):
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


def input_tensors(net: Net, keras_model: Any) -> dict[str, Any]:
    """Caffe input record key ("<Input layer>/<top>") -> Keras input tensor."""
    from .match import pair_inputs

    by_blob = dict(pair_inputs(net, keras_model))
    out = {}
    for lay in net.layers:
        if is_source(lay.kind):
            for top in lay.tops:
                if top in by_blob:
                    out[f"{lay.name}/{top}"] = by_blob[top]
    return out
