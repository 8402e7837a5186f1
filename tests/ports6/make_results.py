"""Write tests/ports6/RESULTS.md's table: what onnx2tf's own check (``-cotof``: ONNX vs TensorFlow, every op) says
vs what ``caffe-harness check`` says (Caffe vs the artefact) on the same conversions, broken and correct.

    PYTHONPATH=. /work/main/.venv/bin/python tests/ports6/make_results.py [--zoo] [--out FILE]

Needs the converters' venv (install_converters.sh).  Prints the table; ``--out`` also writes it (markdown).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ports6 import _corpus as C  # noqa: E402
from ports6 import _judge as J  # noqa: E402
from ports6 import _nets as N  # noqa: E402


def _cell(rc, rep, err: str) -> str:
    if rep is None:
        first = (err.strip().splitlines() or ["(no output)"])[-1]
        if "unrecognized arguments" in first:
            return f"exit {rc}: no such flag yet"
        return f"exit {rc}: {first[:90]}"
    if rep["equivalent"]:
        verdict = "EQUIVALENT"
    else:
        fd = rep.get("first_divergence") or {}
        verdict = f"NOT EQUIVALENT: {fd.get('caffe_layer')}, {J.top_cause(rep)}"
    cov = J.coverage(rep)
    return verdict + (f" (coverage {cov:.0%})" if cov is not None else "")


def _cotof(res: dict | None) -> str:
    if not res:
        return "-"
    return f"{res['verdict']} ({res['matches']} match, {res['unmatched']} unmatched)"


def rows(cases, folder: Path) -> list[list[str]]:
    py, why = C.venv_python()
    if py is None:
        raise SystemExit(why)
    nets = C.net_writer(folder)
    corpus = C.Corpus(folder, py, nets)
    corpus.build(cases, cotof=True)
    check = C.Checker(folder, nets)
    out = []
    for case in cases:
        net, bug = N.case_key(case)
        drift = {"bn_drift": "bn1", **N.ZOO_DRIFT}.get(case)
        truth = f"{N.ALL_BUGS[bug][1]}, {N.ALL_BUGS[bug][2]}" if bug else (
            f"{drift}, bn_scale_factor (variance / (s + 1e-5))" if drift else "correct")
        edit = N.EDITS[N.ALL_BUGS[bug][3]] if bug else (
            "none: caffe2onnx's own BatchNorm line, s in [0.5, 2]" if drift else "none")
        cells = []
        for kind in J.KINDS:
            try:
                cells.append(_cell(*J.check_kind(corpus, check, case, kind)))
            except AssertionError as e:  # the conversion itself failed
                cells.append(f"not converted: {str(e)[:80]}")
        out.append([f"{net} ({case})" if bug else net, edit, truth, _cotof(corpus.cotof.get(case)), *cells])
    return out


def table(rs: list[list[str]]) -> str:
    head = ["net (case)", "edited into the ONNX graph", "truth", "onnx2tf -cotof", "check --onnx",
            "check --saved-model", "check --tflite"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rs]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", action="store_true", help="also the zoo-size nets and their bugs")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    cases = [*N.BUGS, "bn_drift", "plain", "bn", "lrn", "res"]
    if args.zoo:
        cases += [*N.ZOO_BUGS, *N.ZOO]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        text = table(rows(cases, Path(tmp)))
    print(text)
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
