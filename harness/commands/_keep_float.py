"""``convert --format tflite --quantize int8 --keep-float auto|LAYER,... | --recipe FILE``: the command's side of
:mod:`harness.compare.artefacts.keep_float` (inputs, the run, the written model, the recipe and the exit code)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HarnessError


def judge_inputs(args: Any, net: Any, rep: Any) -> tuple[dict[str, np.ndarray], str]:
    """What the gate is judged on: the net's batch (its input shape, ``--input-shape``) of seeded standard-normal
    inputs (``--seed``, as ``check --tflite`` draws them), or of the calibration dataset's first samples."""
    from ..compare.engine.inputs import prepare_inputs

    batch = {b: int(s[0]) for b, s in net.inputs.items()}
    if not isinstance(rep, dict):
        return prepare_inputs(net, None, args.seed), (f"{next(iter(batch.values()))} seeded standard-normal inputs "
                                                      f"(seed {args.seed}, as check --tflite draws them)")
    out = {}
    for b, n in batch.items():
        have = int(np.shape(rep[b])[0])
        if have < n:
            raise HarnessError(f"--representative {args.representative!r}: {have} sample(s), fewer than the net's "
                               f"batch {n} the gate is judged on (--input-shape {b}=N,... sets it)")
        out[b] = np.asarray(rep[b][:n], np.float32)
    return prepare_inputs(net, out, args.seed), f"the first {next(iter(batch.values()))} calibration samples"


def _progress(c: Any) -> None:
    kept = ", ".join(c.keep) if c.keep else "none (full int8)"
    name, db = c.worst()
    print(f"caffe-harness: keep-float: kept {kept}: {'PASS' if c.passed else 'FAIL'} ({len(c.failing)} failing, "
          f"lowest SQNR {db:.1f} dB at {name!r})", file=sys.stderr)


def keep_float_layers(args: Any, net: Any) -> tuple[list[str] | None, str]:
    """The explicit set (None for auto) and where it came from, for messages; a layer the net lacks is refused by
    name (before anything is converted)."""
    from ..compare.artefacts.keep_float import read_recipe

    if args.recipe is not None:
        return read_recipe(args.recipe, net), f"--recipe {args.recipe!r}"
    if args.keep_float == "auto":
        return None, "--keep-float auto"
    layers = [x.strip() for x in args.keep_float.split(",") if x.strip()]
    if not layers:
        raise HarnessError(f"--keep-float {args.keep_float!r}: expected auto or comma-separated Caffe layer names")
    names = {lay.name for lay in net.layers}
    for lay in layers:
        if lay not in names:
            raise HarnessError(f"--keep-float: net {net.name!r} has no layer {lay!r}")
    return layers, "--keep-float"


def run_keep_float(args: Any, net: Any, model: Any, rep: Any, calibrated_on: str,
                   chosen: tuple[list[str] | None, str], data: Any, judged_on: str) -> int:
    """Quantise, judge, search (or keep the ``chosen`` set), write the model when it passes; the exit code."""
    from ..compare.artefacts import keep_float as kf
    from ..compare.artefacts.pairing import QuantGate
    from ..convert.export import Calibrated, tflite_bytes

    layers, where = chosen
    gate = QuantGate(20.0 if args.min_sqnr is None else float(args.min_sqnr),
                     0.0 if args.min_top1_agreement is None else float(args.min_top1_agreement))
    k = kf.DEFAULT_MAX_REQUANTIZE if args.max_requantize is None else args.max_requantize
    float32 = tflite_bytes(model)
    try:
        with Calibrated(model, rep, args.seed) as cal, tempfile.TemporaryDirectory(prefix="harness-keep-") as d:
            setup = kf.Setup(net, cal, data, gate, calibrated_on, judged_on, Path(d), float32)
            res = kf.search(setup, k, _progress) if layers is None else kf.keep_explicit(setup, layers, where)
            _timings(res, net, data, float32)
    except kf.DamagedFloat as e:
        print(f"caffe-harness: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("caffe-harness: interrupted before full int8 was judged: no set to report", file=sys.stderr)
        return 130
    print(kf.render(res))
    print(kf.verdict(res))
    if res.chosen is None:
        print(f"not written: {args.output} (the gate fails)", file=sys.stderr)
        return 130 if res.interrupted else 1
    return _write(args, net, res, data, gate)


def _timings(res: Any, net: Any, data: Any, float32: bytes) -> None:
    from ..compare.artefacts.keep_float import invoke_seconds

    res.invoke_s["float32"] = invoke_seconds(float32, net, data)
    res.invoke_s["int8"] = invoke_seconds(res.full_buf, net, data)
    after = res.chosen_buf if res.chosen is not None else res.best_buf
    if after and after is not res.full_buf:
        res.invoke_s["chosen"] = invoke_seconds(after, net, data)


def _write(args: Any, net: Any, res: Any, data: Any, gate: Any) -> int:
    """The chosen model written, then judged afresh from the file by ``check --tflite``'s judge (both paths)."""
    from .._atomic import atomic_write
    from ..compare.artefacts.keep_float import recipe, write_model
    from ..compare.artefacts.tflite import check_tflite

    write_model(res.chosen_buf, args.output)
    rep = check_tflite(net, data, args.output, delegate="both", gate=gate, diagnose=False)
    paths = ", ".join(f"{d} {'EQUIVALENT' if v['equivalent'] else 'NOT EQUIVALENT'}"
                      for d, v in (rep.delegates or {}).items())
    print(f"verified: check --tflite {args.output}: LiteRT paths: {paths}")
    if args.recipe_out:
        atomic_write(args.recipe_out, json.dumps(recipe(res, res.chosen, net), indent=2) + "\n")
        print(f"wrote {args.recipe_out} (keep-float recipe: {len(res.chosen.keep)} layer(s))")
    print(f"wrote {args.output} (LiteRT, int8, {len(res.chosen.keep)} Caffe layer(s) in float32, "
          f"{res.chosen.size} bytes)")
    return 0 if rep.equivalent else 1
