"""``compare()``: load both sides, run them, judge every pair, locate the first divergence.  Each step lives in its
own module (:mod:`.inputs`, :mod:`.loading`, :mod:`.passes`, :mod:`.judge`, :mod:`.divergence`); this one only
orders them and times them."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Sequence

from ...errors import HarnessError
from ...net import Net
from ..reports.annotations import attach_locations
from .divergence import locate, output_problems
from .divergence import foreign_weights_cause, other_divergences, settle_rounding
from .inputs import (given_shapes, load_seeded_net, nan_warnings, prepare_inputs,
                     refuse_nhwc_inputs)
from .judge import judge
from .loading import resolve_keras_model
from .passes import Session, chained_pass, isolated_pass, open_session, reference_forward
from ..reports.report import Report
from .tolerance import Tolerances

MODES = ("both", "chained", "isolated")


class _Clock:
    def __init__(self, timings: dict[str, float]) -> None:
        self.timings, self.t = timings, time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = now - self.t
        self.t = now


@dataclass(frozen=True)
class CompareOptions:
    """Everything :func:`compare` takes besides the net, the model and the inputs (see its docstring); what it builds
    from its keywords and passes on, and what a caller (the manifest, the CLI) may build once and pass as
    ``options=``."""

    weights: Any = None
    mode: str = "both"
    atol: float | None = None
    rtol: float | None = None
    tolerances: Any = None
    mapping: Mapping[str, Any] | None = None
    seed: int = 0
    user_map: Any = None
    diagnose: bool = True
    progress: Callable[[str, int, int], None] | None = None
    input_shapes: Mapping[str, Sequence[int]] | None = None
    custom_objects: Mapping[str, Any] | None = None
    session_hook: Callable[[Session, dict, dict], None] | None = None
    keras_inputs: Any = None


def compare(net_or_prototxt: Any, keras_model: Any = None, inputs: Any = None, *, weights: Any = None,
            mode: str = "both", atol: float | None = None, rtol: float | None = None, tolerances: Any = None,
            mapping: Mapping[str, Any] | None = None, seed: int = 0, user_map: Any = None,
            diagnose: bool = True, progress: Callable[[str, int, int], None] | None = None,
            input_shapes: Mapping[str, Sequence[int]] | None = None,
            custom_objects: Mapping[str, Any] | None = None,
            session_hook: Callable[[Session, dict, dict], None] | None = None,
            keras_inputs: Any = None, options: CompareOptions | None = None) -> Report:
    """Compare a Caffe net with a Keras model layer by layer.

    ``net_or_prototxt``: a :class:`~harness.net.Net` or a prototxt path (``weights``: .caffemodel/.npz; a net without
    weights gets seeded random ones).  ``keras_model``: a Keras model, a path to one (loaded in safe mode) or None
    (convert the net).  ``inputs``: ``{input blob: NCHW array}`` or one array (default: seeded standard normal).
    ``mode``: "both", "chained" or "isolated".  ``atol``/``rtol``: override the derived bound (an element passes when
    within atol OR within rtol*|ref|); ``tolerances``: overrides per type/layer with reasons (see
    :class:`Tolerances.build`).  ``input_shapes``: ``{input blob: NCHW shape}`` when loading a prototxt (default: the
    shapes of the ``inputs`` given by name, else the prototxt's; train_val nets need one of them).  ``mapping``:
    ``{"<layer>/<top>": (keras_layer, output_index, layout)}`` (default: the model's ``harness_mapping``);
    ``user_map``: ``{"caffe": "keras"}`` or ``["caffe=keras", ...]`` overrides.  ``custom_objects``: the port's own
    layer classes by name, for loading a model file (:func:`~harness.compare.engine.loading.resolve_custom_objects`).
    ``session_hook``: called once at the end with the :class:`Session` and the chained and isolated Keras values
    (NCHW, keyed by pair key), for a caller that needs more than the report (``--repro``, :mod:`.repro`).
    ``keras_inputs``: the Keras model's own input arrays for the chained pass (same names and shapes as ``inputs``;
    ``check --images`` feeds the Keras side's layer 0 there and Caffe's layer 0 as ``inputs``); the isolated pass
    feeds the reference's values as always.  ``options``: a :class:`CompareOptions` instead of the keywords (not
    both).
    """
    given = CompareOptions(weights, mode, atol, rtol, tolerances, mapping, seed, user_map, diagnose, progress,
                           input_shapes, custom_objects, session_hook, keras_inputs)
    if options is not None and any(not _is_default(getattr(given, f.name), f.default) for f in fields(given)):
        raise HarnessError("compare(): give the keyword arguments or options=CompareOptions(...), not both")
    return run_compare(net_or_prototxt, keras_model, inputs, options or given)


def _is_default(value: Any, default: Any) -> bool:
    return value is default or (isinstance(value, (str, int, float)) and type(value) is type(default)
                                and value == default)


def run_compare(net_or_prototxt: Any, keras_model: Any, inputs: Any, opt: CompareOptions) -> Report:
    """:func:`compare` with its options built."""
    if opt.mode not in MODES:
        raise HarnessError(f"mode={opt.mode!r} is not supported ({', '.join(MODES)})")
    tol = Tolerances.build(atol=opt.atol, rtol=opt.rtol, tolerances=opt.tolerances)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    clock = _Clock(timings)
    input_shapes = opt.input_shapes
    if input_shapes is None and not isinstance(net_or_prototxt, Net):
        input_shapes = given_shapes(inputs)
        refuse_nhwc_inputs(net_or_prototxt, input_shapes)
    net, seeded = load_seeded_net(net_or_prototxt, opt.weights, opt.seed, input_shapes)
    clock.lap("load")
    user_model = keras_model is not None
    artefact = ({"kind": "keras", "path": str(keras_model)} if isinstance(keras_model, (str, os.PathLike)) else
                {"kind": "in-memory" if user_model else "converted", "path": None})
    keras_model = resolve_keras_model(keras_model, net, opt.custom_objects)
    clock.lap("keras_model")
    data = prepare_inputs(net, inputs, opt.seed)
    _say(opt.progress, "reference (float64)", 0, 0)
    ref = reference_forward(net, data)
    clock.lap("reference")
    kdata = _keras_inputs(net, opt.keras_inputs, data, opt.seed)
    s = open_session(net, keras_model, data, ref, mapping=opt.mapping, user_map=opt.user_map, keras_data=kdata)
    s.timings = timings
    setup = foreign_weights_cause(s) if seeded and user_model else None
    tick = _ticker(opt.progress, len(s.pairs) * (2 if opt.mode == "both" else 1))
    chained, isolated = _run_keras(s, opt.mode, opt.progress, tick.total, clock)
    results = judge(s, tol, chained, isolated, tick)
    rounding_notes = settle_rounding(s, results, isolated, chained, opt.diagnose)
    clock.lap("compare")
    report = Report(net.name, getattr(keras_model, "name", "keras"), opt.mode, results, s.matching.unmatched_caffe,
                    s.matching.unmatched_keras, tolerances=tol.to_dict(), timings=timings)
    report.backend, report.artefact = _backend(), artefact
    _conclude(report, s, results, chained, isolated, setup, opt.diagnose, rounding_notes)
    timings["total"] = time.perf_counter() - t0
    if opt.session_hook is not None:
        opt.session_hook(s, chained, isolated)
    return report


def _conclude(report: Report, s: Session, results: list, chained: dict, isolated: dict, setup: Any,
              diagnose: bool, rounding_notes: list[str]) -> None:
    """The report's structure, notes (``rounding_notes``: the pairs settled as float32 rounding), first divergence
    (diagnosed) and the other divergences."""
    net, keras_model = s.net, s.keras_model
    report.graph = [(lay.name, lay.type, lay.bottoms, lay.tops) for lay in net.layers]
    if not s.pairs:
        report.notes.append("no Caffe layer could be matched to a Keras layer (use --map CAFFE=KERAS)")
    problems = output_problems(net, s.matching, keras_model)
    report.output_problems = [msg for _, _, _, msg in problems]
    if setup is not None:
        report.notes.insert(0, f"notice: {setup.explanation}")
    report.notes += [f"warning: {line}" for line in nan_warnings(net)] + rounding_notes
    report.first_divergence = locate(s, results, isolated, chained, problems, diagnose, setup)
    if setup is None:
        t = time.perf_counter()
        report.divergences = other_divergences(s, results, report.first_divergence, isolated, chained, diagnose)
        report.timings["diagnose_others"] = time.perf_counter() - t
    attach_locations(report, net)


def _keras_inputs(net: Net, keras_inputs: Any, data: dict, seed: int) -> dict | None:
    """The Keras side's own chained inputs, checked against the Caffe inputs' shapes (None: the same data)."""
    if keras_inputs is None:
        return None
    missing = [k for k in net.inputs if k not in keras_inputs] if isinstance(keras_inputs, Mapping) else []
    if missing:
        raise HarnessError(f"keras_inputs: no array for net input {missing[0]!r}")
    kdata = prepare_inputs(net, keras_inputs, seed)
    for name, x in kdata.items():
        if x.shape != data[name].shape:
            raise HarnessError(f"keras_inputs {name!r}: shape {x.shape}, the Caffe input is {data[name].shape}")
    return kdata


def _backend() -> str:
    import keras

    return str(keras.backend.backend())


def _run_keras(s: Session, mode: str, progress: Any, total: int, clock: _Clock) -> tuple[dict, dict]:
    """The chained and/or isolated Keras pass, as the mode asks."""
    chained: dict[str, Any] = {}
    isolated: dict[str, Any] = {}
    clock.lap("match")
    if mode in ("both", "chained"):
        _say(progress, "keras (chained)", 0, total)
        chained = chained_pass(s)
        clock.lap("keras_chained")
    if mode in ("both", "isolated"):
        _say(progress, "keras (isolated)", 0, total)
        isolated = isolated_pass(s)
        clock.lap("keras_isolated")
    return chained, isolated


def _say(progress: Any, what: str, done: int, total: int) -> None:
    if progress is not None:
        progress(what, done, total)


class _ticker:
    """Counts judged comparisons for the progress callback."""

    def __init__(self, progress: Any, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self, what: str) -> None:
        self.done += 1
        _say(self.progress, what, self.done, self.total)


def assert_equivalent(net_or_prototxt: Any, keras_model: Any = None, inputs: Any = None, **kwargs: Any) -> Report:
    """:func:`compare`, raising ``AssertionError`` (message: the terminal verdict) when not equivalent."""
    report = compare(net_or_prototxt, keras_model, inputs, **kwargs)
    if not report:
        raise AssertionError(report.verdict())
    return report
