"""``convert --format tflite --quantize int8 --keep-float auto|LAYER,...``: from "int8 fails the gate" to an int8
model that passes it, with the fewest Caffe layers kept in float32.

The model is calibrated once (:class:`harness.convert.export.Calibrated`) and re-quantised with chosen operators
left float32 through the TFLite converter's own selective quantisation (``QuantizationDebugOptions(
denylisted_nodes=...)``).  A Caffe layer's operators are the calibrated model's operator outputs whose tensor names
name the layer (:func:`~.pairing.named_layers`); a fused span (convolution + ReLU) is one unit, named by its first
layer that has an operator.

Every model is judged as ``check --tflite`` judges it (:func:`.pairing.compare_artefact` with the
:class:`~.pairing.QuantGate`, on each LiteRT path: XNNPACK and the builtin kernels); it passes when every path
passes.  Per compared layer two SQNRs against the float64 Caffe reference are kept:

* *chained* (carried): the artefact's tensor against the reference run on the Caffe inputs (what the gate judges);
* *isolated* (own): the artefact's tensor against the Caffe layer run on the artefact's own input tensors -- the
  error that layer's quantisation adds by itself.

The search (``auto``) first refuses a net whose float32 ``.tflite`` already fails at a layer (a damaged float layer
cannot be fixed by precision), then from full int8 adds units, one re-quantisation per set, the ones with the lowest
isolated SQNR of the last model judged (the isolated drop, not the carried one) among those at or before its last
failing layer, in batches that double the set (1, 2, 4, 8, ... units kept: a deep net whose error is carried from
many layers needs many); when a set passes, the last batch is bisected to the shortest head that still passes.  It
stops there, after ``max_requantize`` re-quantisations, or at Ctrl-C (the best set so far is kept: fewest failing
layers, then the highest lowest SQNR).  Greedy, so the set is the smallest *in that order*, not proven minimal.
Each intermediate model is written atomically into a temporary folder (:func:`harness._atomic.atomic_path`).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ...errors import HarnessError
from ...net import Net
from ..engine.evaluation import CaffeSide, from_keras_layout
from ..engine.judge import chained_inputs
from ..engine.passes import Session, reference_forward
from .pairing import ArtefactRun, QuantGate, artefact_input, compare_artefact, match_tensors, named_layers, sqnr_db
from .tflite import DELEGATES, PathFailed, run_tflite

DEFAULT_MAX_REQUANTIZE = 8  # the command's help says it too (commands/convert.py builds its parser TF-free)


class DamagedFloat(HarnessError):
    """The float32 model already fails the reference: no precision choice can fix it (exit 1, not 2)."""


@dataclass
class Candidate:
    """One quantised model judged: the layers it keeps float32 and what the gate saw on every LiteRT path."""

    keep: tuple[str, ...]
    nodes: tuple[str, ...]
    size: int
    passed: bool
    paths: dict[str, bool]  # LiteRT path -> passed (False also when the path cannot run the model)
    chained: dict[str, float]  # Caffe layer (a pair's first layer) -> chained SQNR dB, the lowest over the paths
    isolated: dict[str, float]  # Caffe layer -> isolated SQNR dB, the lowest over the paths
    failing: list[str]
    top1: float | None
    top5: float | None
    problems: list[str] = field(default_factory=list)
    segments: dict[str, tuple[str, ...]] = field(default_factory=dict)  # Caffe layer -> the span it names
    tensors: dict[str, str] = field(default_factory=dict)  # Caffe layer -> the artefact tensor paired with it

    def worst(self) -> tuple[str, float]:
        """(layer, dB) of the lowest chained SQNR."""
        if not self.chained:
            return "", -math.inf
        name = min(self.chained, key=lambda k: self.chained[k])
        return name, self.chained[name]

    def rank(self) -> tuple[float, ...]:
        """Sort key of "better": passes, fewer failing layers, higher lowest SQNR, fewer layers kept."""
        return (not self.passed, len(self.failing) + len(self.problems), -self.worst()[1], len(self.keep))


@dataclass
class Search:
    """What :func:`search` (or :func:`keep_explicit`) found, for :func:`render` and the CLI."""

    gate: QuantGate
    calibration: str
    judged_on: str
    max_requantize: int
    float32_size: int
    full: Candidate
    tries: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None
    interrupted: bool = False
    invoke_s: dict[str, float] = field(default_factory=dict)  # "float32", "int8", "chosen" -> seconds per invoke
    chosen_buf: bytes = b""
    best_buf: bytes = b""
    full_buf: bytes = b""
    weights: dict[str, float | None] = field(default_factory=dict)  # Caffe layer -> weights-alone SQNR dB

    @property
    def best(self) -> Candidate:
        return min([self.full] + self.tries, key=Candidate.rank)


def layer_nodes(net: Net, nodes: Sequence[str]) -> dict[str, list[str]]:
    """``{Caffe layer: the operator output names (denylisted_nodes) naming it}``, execution order."""
    out: dict[str, list[str]] = {}
    for n in nodes:
        for lay in named_layers(net, n):
            out.setdefault(lay, []).append(n)
    return out


def unit_of(report: Any) -> dict[str, str]:
    """``{pair key: the first Caffe layer of its segment}`` (how :class:`Candidate` names a layer)."""
    return {lr.key: (list(lr.segment) or [lr.caffe_layer])[0] for lr in report.layers}


def isolated_sqnr(net: Net, data: Mapping[str, np.ndarray], run: ArtefactRun, ref: Mapping[str, np.ndarray]
                  ) -> tuple[dict[str, float], dict[str, str]]:
    """(``{pair key: SQNR dB of the artefact's tensor against the Caffe layer (span) run on the artefact's own
    input tensors}``: the error the layer adds by itself, ``{pair key: the artefact tensor paired}``)."""
    shapes = {k: tuple(np.shape(v)) for k, v in ref.items()}
    matching = match_tensors(net, run, shapes, ref)
    s = Session(net, None, dict(data), dict(ref), matching, CaffeSide(net, ref), None, {}, {})
    chained = {p.key: from_keras_layout(np.asarray(run.values[p.keras_layer], np.float32), p.layout)
               for p in matching.pairs}
    avail = chained_inputs(s, chained)
    out: dict[str, float] = {}
    for p in matching.pairs:
        try:
            with np.errstate(all="ignore"):
                expected = s.caffe.compute(p.key, avail, {}, exclude=p.key)
        except Exception:  # noqa: BLE001 - a record the reference cannot re-run alone: no isolated figure
            continue
        if np.shape(expected) == np.shape(chained[p.key]):
            out[p.key] = sqnr_db(expected, chained[p.key])
    return out, {p.key: p.keras_layer for p in matching.pairs}


def write_model(buf: bytes, path: str | os.PathLike) -> Path:
    """``buf`` written to ``path`` atomically."""
    from ..._atomic import atomic_path

    with atomic_path(path, suffix=".tflite") as tmp:
        Path(tmp).write_bytes(buf)
    return Path(path)


def judge(net: Net, data: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray], buf: bytes, path: Path,
          gate: QuantGate, keep: Sequence[str] = (), nodes: Sequence[str] = ()) -> Candidate:
    """``buf`` written to ``path`` and judged on every LiteRT path as ``check --tflite`` judges it."""
    write_model(buf, path)
    paths: dict[str, bool] = {}
    chained: dict[str, float] = {}
    isolated: dict[str, float] = {}
    failing: list[str] = []
    problems: list[str] = []
    segments: dict[str, tuple[str, ...]] = {}
    tensors: dict[str, str] = {}
    top1 = top5 = None
    for d in DELEGATES[::-1]:
        try:
            run = run_tflite(path, net, data, d)
        except PathFailed as e:
            paths[d] = False
            problems.append(f"the LiteRT {d} path cannot run the model: {str(e).split(': ', 1)[-1]}")
            continue
        rep = compare_artefact(net, data, run, gate=gate, ref=ref, diagnose=False)
        names = unit_of(rep)
        iso, pair_tensor = isolated_sqnr(net, data, run, ref)
        paths[d] = rep.equivalent
        for lr in rep.layers:
            n = names[lr.key]
            db = lr.sqnr_db if lr.sqnr_db is not None else -math.inf
            chained[n] = min(chained.get(n, math.inf), db)
            segments[n] = tuple(lr.segment) or (lr.caffe_layer,)
            tensors.setdefault(n, pair_tensor.get(lr.key, ""))
            if not lr.passed and n not in failing:
                failing.append(n)
        for k, db in iso.items():
            isolated[names.get(k, k)] = min(isolated.get(names.get(k, k), math.inf), db)
        problems += [p for p in rep.output_problems if p not in problems]
        top1 = rep.top1_agreement if top1 is None else min(top1, rep.top1_agreement or 0.0)
        top5 = rep.top5_agreement if top5 is None else min(top5, rep.top5_agreement or 0.0)
    return Candidate(tuple(keep), tuple(nodes), len(buf), all(paths.values()) and bool(paths), paths, chained,
                     isolated, failing, top1, top5, problems, segments, tensors)


def float_damage(net: Net, data: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray], buf: bytes,
                 path: Path) -> list[str]:
    """The Caffe layers at which the float32 ``.tflite`` already fails (derived float32 bounds, builtin kernels)."""
    write_model(buf, path)
    rep = compare_artefact(net, data, run_tflite(path, net, data, "none"), ref=ref, diagnose=False)
    names = unit_of(rep)  # a fused span (conv2 + relu2) by its first layer
    return list(dict.fromkeys(names[lr.key] for lr in rep.layers if not lr.passed))


def refuse_damage(bad: Sequence[str]) -> None:
    if bad:
        more = f" (and {len(bad) - 1} more after it: {', '.join(bad[1:4])})" if len(bad) > 1 else ""
        raise DamagedFloat(f"layer {bad[0]!r} already fails against Caffe in the float32 .tflite{more}, before any "
                           f"quantisation: a damaged float layer cannot be fixed by precision; fix the port (or its "
                           f"weights) first")


def invoke_seconds(buf: bytes, net: Net, data: Mapping[str, np.ndarray], repeats: int = 7) -> float:
    """Median wall time of one LiteRT invoke (the default XNNPACK path, one sample), after one warm-up."""
    from ..._stdio import quiet_native_stderr
    from .tflite import _pair_inputs, litert

    with quiet_native_stderr():
        it = litert().Interpreter(model_content=buf)
        dets = _pair_inputs(net, it, "<timing>")
        it.allocate_tensors()
        for blob, d in dets.items():
            it.set_tensor(d["index"], artefact_input(np.asarray(data[blob])[:1], d["shape"]))
        it.invoke()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            it.invoke()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


@dataclass
class Setup:
    """What every run needs: the net, the model's calibration, the judge's inputs and the reference on them."""

    net: Net
    calibrated: Any  # harness.convert.export.Calibrated
    data: Mapping[str, np.ndarray]
    gate: QuantGate
    calibration: str
    judged_on: str
    workdir: Path
    float32: bytes
    ref: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.ref:
            self.ref = reference_forward(self.net, self.data)
        self.nodes = layer_nodes(self.net, self.calibrated.nodes)
        self._n = 0

    def judge(self, keep: Sequence[str], nodes: Sequence[str]) -> tuple[Candidate, bytes]:
        buf = self.calibrated.quantize(nodes)
        self._n += 1
        path = self.workdir / f"int8-{self._n}.tflite"
        try:
            return judge(self.net, self.data, self.ref, buf, path, self.gate, keep, nodes), buf
        finally:
            path.unlink(missing_ok=True)

    def new_search(self, full: Candidate, max_requantize: int) -> Search:
        res = Search(self.gate, self.calibration, self.judged_on, max_requantize, len(self.float32), full)
        res.weights = {n: weight_sqnr(self.net, self.ref, n) for n in full.chained}
        return res


def start(setup: Setup) -> tuple[Candidate, bytes]:
    """The float32 model checked (damage refused), then full int8 judged."""
    path = setup.workdir / "float32.tflite"
    try:
        refuse_damage(float_damage(setup.net, setup.data, setup.ref, setup.float32, path))
    finally:
        path.unlink(missing_ok=True)
    return setup.judge((), ())


def search(setup: Setup, max_requantize: int = DEFAULT_MAX_REQUANTIZE,
           progress: Callable[[Candidate], None] | None = None) -> Search:
    """``--keep-float auto`` (see the module docstring); Ctrl-C ends the search with the best set so far: the
    re-quantisation under way finishes first (a second Ctrl-C stops at once), so an interrupt landing inside the
    converter or between two steps still ends in the report of the best set."""
    if max_requantize < 1:
        raise HarnessError(f"--max-requantize {max_requantize}: give at least 1")
    with _deferred_interrupt() as asked:
        full, full_buf = start(setup)
        res = setup.new_search(full, max_requantize)
        res.best_buf = res.full_buf = full_buf
        if progress:
            progress(full)
        if full.passed:
            res.chosen, res.chosen_buf = full, full_buf
            return res
        try:
            _search_steps(setup, res, full, max_requantize, progress, asked)
        except KeyboardInterrupt:
            res.interrupted = True
        res.interrupted = res.interrupted or asked()
    return res


def _search_steps(setup: Setup, res: Search, full: Candidate, max_requantize: int,
                  progress: Callable[[Candidate], None] | None, asked: Callable[[], bool]) -> None:
    keep: list[str] = []
    last, units = full, {}
    while len(res.tries) < max_requantize and not asked():
        units = _units_of(setup, last, units)
        batch = _next_units(last, units, keep, max(1, len(keep)))  # totals 1, 2, 4, 8, ...
        if not batch:
            break
        cand = _try(setup, res, units, keep + batch, progress)
        if cand.passed:
            _shrink(setup, res, units, keep, batch, progress)
            break
        keep, last = keep + batch, cand


class _deferred_interrupt:
    """SIGINT while the block runs only asks the search to stop (``asked()`` turns true); a second SIGINT raises
    KeyboardInterrupt at once.  Outside the main thread (no signal handlers there) Ctrl-C is left as it is."""

    def __enter__(self) -> Callable[[], bool]:
        import signal
        import threading

        self.flag, self.prev = False, None
        if threading.current_thread() is threading.main_thread():
            self.prev = signal.signal(signal.SIGINT, self._on_sigint)
        return lambda: self.flag

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True

    def __exit__(self, *exc: Any) -> None:
        if self.prev is not None:
            import signal

            signal.signal(signal.SIGINT, self.prev)


def _next_units(last: Candidate, units: Mapping[str, tuple[str, ...]], keep: Sequence[str], n: int) -> list[str]:
    """The ``n`` units not kept yet with the lowest isolated SQNR in ``last``, among those at or before its last
    failing layer (execution order: a layer after every failure cannot mend one); all when none fails."""
    names = list(last.chained)
    end = max((names.index(f) for f in last.failing if f in names), default=len(names) - 1)
    left = [u for u in units if u not in keep]
    near = [u for u in left if u in names and names.index(u) <= end] or left
    return sorted(near, key=lambda u: (last.isolated.get(u, math.inf), near.index(u)))[:n]


def _try(setup: Setup, res: Search, units: Mapping[str, tuple[str, ...]], keep: Sequence[str],
         progress: Callable[[Candidate], None] | None) -> Candidate:
    """``keep`` judged (one re-quantisation) and recorded: the best so far, the passing set with the fewest layers."""
    nodes = tuple(dict.fromkeys(x for u in keep for x in units[u]))
    cand, buf = setup.judge(tuple(keep), nodes)
    res.tries.append(cand)
    if cand is res.best:
        res.best_buf = buf
    if cand.passed and (res.chosen is None or len(cand.keep) < len(res.chosen.keep)):
        res.chosen, res.chosen_buf = cand, buf
    if progress:
        progress(cand)
    return cand


def _shrink(setup: Setup, res: Search, units: Mapping[str, tuple[str, ...]], keep: list[str], batch: list[str],
            progress: Callable[[Candidate], None] | None) -> None:
    """``keep + batch`` passed, ``keep`` did not: the shortest head of ``batch`` that still passes, by bisection
    (while re-quantisations are left)."""
    lo, hi = 0, len(batch)
    while hi - lo > 1 and len(res.tries) < res.max_requantize:
        mid = (lo + hi) // 2
        if _try(setup, res, units, keep + batch[:mid], progress).passed:
            hi = mid
        else:
            lo = mid


def _units_of(setup: Setup, cand: Candidate, known: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """The units (Caffe layer -> nodes) of the compared layers of ``cand`` that are not exact (an infinite isolated
    SQNR: float cannot improve them); ``known`` ones kept."""
    out = dict(known)
    for name in cand.chained:
        if name in out or cand.isolated.get(name) == math.inf:
            continue
        nodes = unit_nodes(setup, cand, name)
        if nodes:
            out[name] = nodes
    return out


def unit_nodes(setup: Setup, cand: Candidate, name: str) -> tuple[str, ...]:
    """The denylisted nodes of Caffe layer ``name``: the operators naming any layer of its span, else (a layer whose
    operators name no Caffe layer: the net output, ``StatefulPartitionedCall:0``) the node of its paired tensor."""
    seg = cand.segments.get(name) or next((s for s in cand.segments.values() if name in s), (name,))
    nodes = [x for n in seg for x in setup.nodes.get(n, [])]
    t = next((cand.tensors[k] for k, s in cand.segments.items() if name in s), "").split("#")[0]
    if not nodes and t in setup.calibrated.nodes:
        nodes = [t]
    return tuple(dict.fromkeys(nodes))


def resolve_layers(setup: Setup, full: Candidate, layers: Sequence[str], where: str) -> tuple[str, ...]:
    """The denylisted nodes of the named Caffe layers; a layer the net lacks, or one without an operator in the
    model, is refused by name."""
    names = {lay.name for lay in setup.net.layers}
    out: list[str] = []
    for lay in layers:
        if lay not in names:
            raise HarnessError(f"{where}: net {setup.net.name!r} has no layer {lay!r}")
        nodes = unit_nodes(setup, full, lay)
        if not nodes:
            raise HarnessError(f"{where}: layer {lay!r} has no operator in the int8 model (it computes nothing "
                               f"there, or is folded away)")
        out += [n for n in nodes if n not in out]
    return tuple(out)


def keep_explicit(setup: Setup, layers: Sequence[str], where: str) -> Search:
    """``--keep-float LAYER,...`` / ``--recipe FILE``: full int8 and the given set, each judged."""
    full, full_buf = start(setup)
    nodes = resolve_layers(setup, full, layers, where)
    res = setup.new_search(full, 1)
    res.full_buf = full_buf
    cand, buf = setup.judge(tuple(layers), nodes)
    res.tries.append(cand)
    res.best_buf = buf
    if cand.passed:
        res.chosen, res.chosen_buf = cand, buf
    return res


# ------------------------------------------------------------------------------------------------- recipe, report

RECIPE_FORMAT = "caffe-harness keep-float recipe"


def recipe(res: Search, cand: Candidate, net: Net) -> dict[str, Any]:
    """The JSON recipe of ``cand`` (documented in notes/quant.md; TFLite's converter has no recipe file format of its
    own: ``denylisted_nodes`` is what its ``QuantizationDebugOptions`` takes)."""
    return {"format": RECIPE_FORMAT, "version": 1, "net": net.name, "quantize": "int8", "keep_float_as": "float32",
            "keep_float": list(cand.keep), "denylisted_nodes": list(cand.nodes),
            "gate": {"min_sqnr": res.gate.min_sqnr, "min_top1_agreement": res.gate.min_top1_agreement},
            "passed": cand.passed, "calibration": res.calibration}


def read_recipe(path: str, net: Net) -> list[str]:
    """The Caffe layers a recipe keeps float; a bad file, or a layer the net does not have, in one line."""
    import json

    p = Path(path)
    if not p.is_file():
        raise HarnessError(f"--recipe {path!r} does not exist")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise HarnessError(f"--recipe {path!r}: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != RECIPE_FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise HarnessError(f"--recipe {path!r}: field 'format' is {got!r}, expected {RECIPE_FORMAT!r}")
    layers = doc.get("keep_float")
    if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
        raise HarnessError(f"--recipe {path!r}: field 'keep_float' is {layers!r}, expected a list of Caffe layer "
                           f"names")
    names = {lay.name for lay in net.layers}
    for lay in layers:
        if lay not in names:
            raise HarnessError(f"--recipe {path!r}: field 'keep_float' names layer {lay!r}, which net {net.name!r} "
                               f"does not have")
    return layers


_PER_CHANNEL = {"Convolution", "ConvolutionDepthwise", "Deconvolution"}  # the converter's per-channel kernels


def weight_sqnr(net: Net, ref: Mapping[str, np.ndarray], layer: str) -> float | None:
    """SQNR dB of the Caffe layer run on its reference inputs with only its weights quantised as the converter
    quantises them (symmetric int8 in [-127, 127]: per output channel for convolutions, per tensor otherwise),
    against the float weights; None for a layer without weights."""
    import dataclasses

    lay = net.layer(layer)
    if not lay.blobs or np.ndim(lay.blobs[0]) < 2:
        return None
    w = np.asarray(lay.blobs[0], np.float64)
    axis = tuple(range(1, w.ndim)) if lay.kind in _PER_CHANNEL else tuple(range(w.ndim))
    scale = np.max(np.abs(w), axis=axis, keepdims=True) / 127.0
    scale = np.where(scale > 0, scale, 1.0)
    wq = np.clip(np.round(w / scale), -127, 127) * scale
    side = CaffeSide(net, ref)
    xs = [np.asarray(ref[k], np.float64) for k in side.bottom_keys[lay.name]]
    qlay = dataclasses.replace(lay, blobs=(wq.astype(np.asarray(lay.blobs[0]).dtype), *lay.blobs[1:]))
    with np.errstate(all="ignore"):
        return sqnr_db(side.run_layer(lay, xs)[0], side.run_layer(qlay, xs)[0])


def attribution(cand: Candidate, gate: QuantGate, weights: Mapping[str, float | None] | None = None
                ) -> dict[str, str]:
    """Per failing layer: ``own`` (its isolated SQNR is below the gate: its own quantisation) or ``carried`` (it
    is above: the error comes from upstream); for an own error with ``weights`` (:func:`weight_sqnr`), which
    dominates: ``weights`` when quantising the weights alone costs at least half the layer's own noise (its SQNR
    within 3 dB of the isolated one), else ``activations``."""
    out = {}
    for name in cand.failing:
        iso = cand.isolated.get(name)
        own = iso is not None and iso < gate.min_sqnr
        out[name] = "own" if own else "carried"
        w = (weights or {}).get(name)
        if own and w is not None:
            out[name] += ", weights dominate" if w <= iso + 3.0 else ", activations dominate"
    return out


def _db(v: float | None) -> str:
    if v is None:
        return "-"
    return "inf" if v == math.inf else ("-inf" if v == -math.inf else f"{v:.1f}")


def _try_line(i: int, c: Candidate) -> str:
    kept = f"{len(c.keep)}: {', '.join(c.keep)}" if c.keep else "(none: full int8)"
    name, db = c.worst()
    t1 = "-" if c.top1 is None else f"{c.top1:.3f}"
    return (f"  {i:<4} {kept[:40]:<40} {len(c.failing):>7}  {_db(db):>7} {name[:14]:<14} {t1:>6}  "
            f"{'PASS' if c.passed else 'FAIL'}")


def render(res: Search) -> str:
    """The search as text: the tries, the per-layer SQNR before/after, and the cost against float32 and int8."""
    g = res.gate
    lines = [f"keep-float (int8; gate: SQNR >= {g.min_sqnr:g} dB at every layer, top-1 agreement >= "
             f"{g.min_top1_agreement:g}; on both LiteRT paths)",
             f"  calibrated on {res.calibration}; judged on {res.judged_on}; at most {res.max_requantize} "
             f"re-quantisation(s)",
             f"  {'try':<4} {'kept in float32':<40} {'failing':>7}  {'min dB':>7} {'at':<14} {'top-1':>6}  verdict"]
    lines += [_try_line(i, c) for i, c in enumerate([res.full] + res.tries)]
    after = res.chosen or res.best
    own = attribution(res.full, g, res.weights)
    w = min(30, max([16] + [len(n) + 2 for n in res.full.chained]))  # the name and its " *" mark
    lines.append(f"  {'layer':<{w}} {'own dB int8':>11} {'weights dB':>10} {'chained dB int8':>15} "
                 f"{'chained dB kept':>15}  failing in int8")
    for name, db in res.full.chained.items():
        mark = " *" if name in after.keep else ""
        lines.append(f"  {name[:w - len(mark)] + mark:<{w}} {_db(res.full.isolated.get(name)):>11} "
                     f"{_db(res.weights.get(name)):>10} {_db(db):>15} {_db(after.chained.get(name)):>15}  "
                     f"{own.get(name, '')}")
    lines.append("  (* kept in float32; own: the layer's SQNR on the artefact's own inputs -- 'own' when it is "
                 "below the gate, 'carried' when the error comes from upstream; weights: the layer with only its "
                 "weights quantised, on the reference inputs)")
    lines += _cost_lines(res, after)
    return "\n".join(lines)


def _cost_lines(res: Search, after: Candidate) -> list[str]:
    t = res.invoke_s
    rows = [("float32", res.float32_size, t.get("float32")), ("full int8", res.full.size, t.get("int8"))]
    if after is not res.full:
        rows.append((f"int8, {len(after.keep)} layer(s) float32", after.size, t.get("chosen")))
    out = [f"  {'model':<30} {'.tflite bytes':>13} {'ms / invoke':>12}"]
    for name, size, sec in rows:
        out.append(f"  {name:<30} {size:>13} {('-' if sec is None else f'{sec * 1e3:.3f}'):>12}")
    out.append("  (interpreter time: LiteRT with the default XNNPACK delegate, one sample, median of 7 in this run)")
    return out


def verdict(res: Search) -> str:
    """The last line: what was found (and what was not)."""
    if res.chosen is not None:
        n = len(res.chosen.keep)
        which = f": {', '.join(res.chosen.keep)}" if n else ""
        return f"the gate passes with {n} Caffe layer(s) kept in float32{which}"
    b = res.best
    why = "interrupted (Ctrl-C)" if res.interrupted else f"after {len(res.tries)} re-quantisation(s)"
    kept = ", ".join(b.keep) if b.keep else "none"
    name, db = b.worst()
    return (f"no set found that passes the gate ({why}); best set: {kept} ({len(b.failing)} failing layer(s), lowest "
            f"SQNR {_db(db)} dB at {name!r})")
