"""The registry of artefact kinds: what ``check`` can judge against the Caffe reference, one entry per kind.

Each kind is ONE module of this wing (:attr:`ArtefactKind.module`) with three functions, the seam every caller goes
through (the CLI ``check``, the manifest and so the pytest plugin):

``open_artefact(path, options) -> handle``
    Read the artefact and refuse a bad one (missing, truncated, foreign, inputs that fit no layout) in one line
    naming the file, before the Caffe net runs.  ``options``: the kind's own options (:attr:`ArtefactKind.options`,
    by ``dest``: ``{"signature": ...}``).
``judge(pre, handle, options, **kw) -> Report``
    Run it on the :class:`Preamble`'s data, read back every intermediate it lets one read, pair them with the Caffe
    records and judge them (:func:`harness.compare.artefacts.pairing.compare_artefact` for a graph).  ``kw``:
    ``tolerances``, ``atol``, ``rtol``, ``diagnose``.
``describe(handle) -> [(node name, op type)]``
    The artefact's nodes in execution order, named as the report's ``keras_layer`` names them.

and one :class:`ArtefactKind` entry in :data:`KINDS` below (its CLI flag, manifest key, options, the runner named in
refusals).  :func:`preamble` is what every kind shares: load the net (seeded weights, with the one notice
:func:`seeded_notice`), refuse an NHWC input array by name, prepare the inputs, run the reference once.
``tests/test_registry.py`` names a kind whose module lacks one of the functions.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ...errors import HarnessError
from ...net import Net

# the functions every kind's module defines (tests/test_registry.py enforces them)
SEAM = ("open_artefact", "judge", "describe")


@dataclass(frozen=True)
class Option:
    """A CLI flag only one kind takes: given without that kind it is refused by name."""

    dest: str  # argparse dest, and the key in ``options`` / the manifest
    flag: str
    what: str  # what it applies to, in the refusal ("a quantised --tflite model")
    default: Any = None
    help: str = ""
    metavar: str | None = None
    type: Any = None
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ArtefactKind:
    """One kind of artefact (see the module docstring)."""

    name: str  # the report's artefact.kind, the registry key
    flag: str  # the CLI flag that names the artefact (``--onnx``)
    metavar: str  # FILE / DIR
    manifest_key: str  # the manifest key that names it
    module: str  # its module in this wing (open, judge, describe)
    label: str  # "an ONNX model": refusals and notices
    runner: str  # what runs it ("onnxruntime"): refusals
    options: tuple[Option, ...] = ()
    chained_only: bool = True  # runs end to end only: no isolated mode, no Keras layers to map or cut a case from
    own_preamble: bool = False  # its judge runs the preamble itself from the request (Keras: compare())
    stage: int = 0  # its place in the usual conversion chain (Keras/ONNX first, .tflite last)
    help: str = ""  # the CLI flag's help
    noun: str = ""  # what the verdict calls it ("ONNX model"); "" for Keras (the report's own wording)

    def load(self) -> Any:
        return importlib.import_module(f"{__package__}.{self.module}")


KINDS: dict[str, ArtefactKind] = {}


def register(kind: ArtefactKind) -> ArtefactKind:
    if kind.name in KINDS:
        raise HarnessError(f"artefact kind {kind.name!r} registered twice")
    KINDS[kind.name] = kind
    return kind


register(ArtefactKind(
    "keras", "--keras", "MODEL", "keras", "keras_model", "a Keras model", "Keras", chained_only=False,
    own_preamble=True, stage=0, help=".keras model to check (loaded in safe mode); default: convert"))
register(ArtefactKind(
    "onnx", "--onnx", "FILE", "onnx", "onnx", "an ONNX model", "onnxruntime", stage=1, noun="ONNX model",
    help="an ONNX model to check: run with onnxruntime (every node output read as a graph output, NCHW), compared "
         "chained layer by layer"))
register(ArtefactKind(
    "saved_model", "--saved-model", "DIR", "saved_model", "saved_model", "a SavedModel", "TensorFlow", stage=2,
    noun="SavedModel",
    options=(Option("signature", "--signature", "a SavedModel", metavar="NAME",
                    help="with --saved-model: the signature to run (default: serving_default)"),),
    help="TensorFlow SavedModel folder to check: its serving signature is run (inputs paired with the net's by name, "
         "else by position) and every layer output the graph preserves is compared chained, then its outputs "
         "(names and dtypes checked)"))
register(ArtefactKind(
    "tflite", "--tflite", "FILE", "tflite", "tflite", "a .tflite model", "the LiteRT interpreter", stage=3,
    noun="LiteRT model",
    options=(Option("tflite_delegate", "--tflite-delegate", "--tflite", "both", choices=("none", "xnnpack", "both"),
                    help="with --tflite: none = LiteRT's builtin kernels without the default XNNPACK delegate; "
                         "xnnpack = the default path that ships; both (default) = each, the report says which "
                         "diverges"),
             Option("min_sqnr", "--min-sqnr", "a quantised --tflite model", type=float, metavar="DB",
                    help="with a quantised --tflite: the per-layer SQNR (dB, dequantised tensor vs the float64 "
                         "reference) a layer needs to pass (default 20)"),
             Option("min_top1_agreement", "--min-top1-agreement", "a quantised --tflite model", type=float,
                    metavar="FRACTION",
                    help="with a quantised --tflite: the fraction of samples (0..1) whose top-1 class must agree "
                         "with the reference's (default 0: reported, not gated)")),
    help="a LiteRT .tflite model to check: run with the LiteRT interpreter (every intermediate tensor read), "
         "compared chained layer by layer"))

# flags that need a Keras model (its layers, isolated runs, a .keras file to cut a case from, its backend): refused
# by name for a kind that runs end to end only, never ignored
KERAS_ONLY = (("keras", "--keras"), ("custom_objects", "--custom-objects"), ("map", "--map"),
              ("map_file", "--map-file"), ("repro", "--repro"), ("repro_layer", "--repro-layer"),
              ("backend", "--backend"), ("images", "--images"))


def add_flags(p: Any) -> None:
    """Every kind's CLI flag and its own options (argparse)."""
    for kind in KINDS.values():
        p.add_argument(kind.flag, dest=kind.name, metavar=kind.metavar, help=kind.help)
        for o in kind.options:
            extra = {k: v for k, v in (("metavar", o.metavar), ("type", o.type), ("choices", o.choices))
                     if v is not None}
            p.add_argument(o.flag, dest=o.dest, default=o.default, help=o.help, **extra)


def chosen_kinds(given: Mapping[str, Any]) -> list[ArtefactKind]:
    """The end-to-end kinds whose flag was given (argparse's namespace as a dict), in chain order."""
    return [k for k in artefact_kinds() if given.get(k.name)]


def artefact_kinds() -> list[ArtefactKind]:
    """The kinds that run end to end (every kind but Keras), in chain order."""
    return sorted((k for k in KINDS.values() if k.chained_only), key=lambda k: k.stage)


def options_of(kind: ArtefactKind, values: Mapping[str, Any]) -> dict[str, Any]:
    """``{dest: value}`` of the kind's own options (their defaults where ``values`` has none)."""
    return {o.dest: values.get(o.dest, o.default) for o in kind.options}


def refuse_flags(given: Mapping[str, Any], chosen: Sequence[ArtefactKind]) -> None:
    """Refuse by name a flag that does not fit the chosen kinds: a kind's own option without that kind, a Keras-only
    flag (or ``--mode isolated``) with a kind that runs end to end.  ``given``: argparse's namespace as a dict."""
    names = {k.name for k in chosen}
    for kind in KINDS.values():
        for o in kind.options:
            v = given.get(o.dest)
            if kind.name not in names and v is not None and v != o.default:
                raise HarnessError(f"{o.flag} needs {kind.flag} {kind.metavar}: {o.flag} {_show(v)} applies to "
                                   f"{o.what} only")
    for kind in chosen:
        if not kind.chained_only:
            continue
        why = (f"{kind.label} runs end to end (chained) on {kind.runner}: it has no Keras layers to map, run in "
               f"isolation or cut a case from")
        for dest, flag in KERAS_ONLY:
            if given.get(dest):
                raise HarnessError(f"{flag} cannot be used with {kind.flag}: {why}")
        if given.get("mode") == "isolated":
            raise HarnessError(f"--mode isolated cannot be used with {kind.flag}: {why}")


def _show(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def refused_keys(check: Mapping[str, Any], chosen: Sequence[ArtefactKind]) -> str | None:
    """The manifest's counterpart of :func:`refuse_flags`: why a check's keys do not fit its artefact kinds (a
    kind's own option key without the kind, a Keras-only key with a kind that runs end to end), else None."""
    names = {k.name for k in chosen}
    for kind in KINDS.values():
        for o in kind.options:
            if kind.name not in names and check.get(o.dest) not in (None, o.default):
                return f"{o.dest} = {check[o.dest]!r} needs {kind.manifest_key} = \"{kind.metavar}\""
    for kind in chosen:
        for key, bad in (("backend", "backend" in check), ("map", bool(check.get("map"))),
                         ("mode", check.get("mode") == "isolated")):
            if bad and kind.chained_only:
                return (f"{key} = {check[key]!r} does not apply to {kind.label} (run end to end, chained, by "
                        f"{kind.runner}; its tensors are paired by name and position)")
    return None


def manifest_stages(check: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``[(kind, path)]`` of the end-to-end artefacts a manifest check names, chain order (``keras = "m.tflite"``,
    the older spelling, is the tflite kind)."""
    keras = check.get("keras")
    legacy = {"tflite": keras} if isinstance(keras, str) and keras.lower().endswith(".tflite") else {}
    return [(k.name, check.get(k.manifest_key) or legacy.get(k.name)) for k in artefact_kinds()
            if check.get(k.manifest_key) or legacy.get(k.name)]


# ------------------------------------------------------------------------------------------------------ preamble

def seeded_notice(seed: int, label: str = "a model") -> str:
    """The one wording of "the Caffe side runs on seeded random weights"."""
    return (f"notice: no Caffe weights given: the Caffe side runs on seeded random weights (seed {seed}); {label} "
            f"converted from other weights diverges at its first weighted layer (pass --weights)")


@dataclass(frozen=True)
class Request:
    """What the caller asked for: the net (a prototxt path or a Net), its inputs, weights, seed and input shapes."""

    net_or_prototxt: Any
    inputs: Any = None
    weights: Any = None
    seed: int = 0
    input_shapes: Mapping[str, Any] | None = None


@dataclass
class Preamble:
    """What every kind's judge starts from: the net (with its weights), the NCHW float32 inputs, the notices."""

    net: Net
    data: dict[str, np.ndarray]
    seed: int = 0
    seeded: bool = False
    notes: list[str] = field(default_factory=list)
    request: Request | None = None
    _ref: dict | None = field(default=None, repr=False)

    def ref(self) -> dict[str, np.ndarray]:
        """The float64 reference records (run once, shared by every stage)."""
        if self._ref is None:
            from ..engine.passes import reference_forward

            self._ref = reference_forward(self.net, self.data)
        return self._ref


def preamble(net_or_prototxt: Any, inputs: Any = None, *, weights: Any = None, seed: int = 0,
             input_shapes: Mapping[str, Any] | None = None, label: str = "a model") -> Preamble:
    """Load the net (a prototxt path or a Net; seeded random weights without ``weights``, with :func:`seeded_notice`),
    refuse an input array given in NHWC order by name, and prepare the inputs (``inputs`` or seeded standard
    normal) as the reference gets them."""
    from ..engine.inputs import given_shapes, load_seeded_net, prepare_inputs, refuse_nhwc_inputs

    if input_shapes is None and not isinstance(net_or_prototxt, Net):
        input_shapes = given_shapes(inputs)
        refuse_nhwc_inputs(net_or_prototxt, input_shapes)
    net, seeded = load_seeded_net(net_or_prototxt, weights, seed, input_shapes)
    notes = [seeded_notice(seed, label)] if seeded else []
    return Preamble(net, prepare_inputs(net, inputs, seed), seed, seeded, notes,
                    Request(net_or_prototxt, inputs, weights, seed, input_shapes))


def check_artefact(name: str, net_or_prototxt: Any, path: Any, inputs: Any = None, *, weights: Any = None,
                   seed: int = 0, input_shapes: Mapping[str, Any] | None = None,
                   options: Mapping[str, Any] | None = None, **kw: Any) -> Any:
    """One artefact of kind ``name`` judged against the net: :func:`open_kind` (a bad file refused before the net
    runs), the shared :func:`preamble`, :func:`judge_kind`."""
    handle = open_kind(name, path, options)
    kind = KINDS[name]
    request = Request(net_or_prototxt, inputs, weights, seed, input_shapes)
    pre = Preamble(None, {}, seed, request=request) if kind.own_preamble else \
        preamble(net_or_prototxt, inputs, weights=weights, seed=seed, input_shapes=input_shapes, label=kind.label)
    return judge_kind(name, handle, pre, options, **kw)


def _kind(name: str) -> ArtefactKind:
    if name not in KINDS:
        raise HarnessError(f"unknown artefact kind {name!r} (known: {', '.join(KINDS)})")
    return KINDS[name]


def _options(kind: ArtefactKind, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options the kind's module gets: its own (:func:`options_of`); all of them for a kind with its own
    preamble (Keras: compare()'s keywords)."""
    return dict(options or {}) if kind.own_preamble else options_of(kind, options or {})


def open_kind(name: str, path: Any, options: Mapping[str, Any] | None = None) -> Any:
    """The kind's ``open_artefact``: the artefact read, a bad one refused in one line naming it."""
    kind = _kind(name)
    return kind.load().open_artefact(path, _options(kind, options))


def judge_kind(name: str, handle: Any, pre: Preamble, options: Mapping[str, Any] | None = None, **kw: Any) -> Any:
    """The kind's ``judge`` on the preamble; the preamble's notices lead the report's."""
    kind = _kind(name)
    report = kind.load().judge(pre, handle, _options(kind, options), **kw)
    report.what = report.what or kind.noun
    report.notes[:0] = [n for n in pre.notes if n not in report.notes]
    return report
