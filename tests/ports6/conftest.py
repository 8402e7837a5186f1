"""Fixtures of the ports6 corpus: artefacts made at test time by real third-party converters (caffe2onnx -> ONNX,
onnx2tf -> SavedModel and float32 .tflite) from seeded weights, and checked with the in-process ``caffe-harness check``.

The converters live in their own venv (tests/ports6/install_converters.sh; ``PORTS6_CONVERTERS_VENV`` or
/work/venvs/corpus20): without it every test that needs them skips, saying how to install it.  They run as
subprocesses (tests/ports6/_chain_tool.py), once per session for all the cases the selected tests need: one
caffe2onnx process for every ONNX file, one onnx2tf process for every SavedModel / .tflite (TensorFlow starts once).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from . import _nets as N

HERE = Path(__file__).resolve().parent
DEFAULT_VENV = "/work/venvs/corpus20"


def case_key(case: str) -> tuple[str, str | None]:
    """'plain' -> ('plain', None); 'pool_floor' (a bug of _nets.BUGS) -> ('plain', 'pool_floor')."""
    return (N.BUGS[case][0], case) if case in N.BUGS else (case, None)


def _venv_python() -> Path:
    venv = Path(os.environ.get("PORTS6_CONVERTERS_VENV") or DEFAULT_VENV)
    py = venv / "bin" / "python"
    stamp = venv / ".ports6-stamp"
    if not py.exists() or not stamp.exists():
        pytest.skip(f"the ports6 converters' venv is not at {venv} (caffe2onnx, onnx2tf): "
                    f"run tests/ports6/install_converters.sh {venv} or set PORTS6_CONVERTERS_VENV")
    want = hashlib.sha256((HERE / "requirements-converters.txt").read_bytes()).hexdigest()[:16]
    if stamp.read_text().strip() != want:
        pytest.skip(f"the ports6 converters' venv at {venv} is not of the current pins: "
                    f"re-run tests/ports6/install_converters.sh {venv}")
    return py


def _selected_cases(session) -> set[str]:
    """The corpus cases the selected (and not skipped-as-slow) tests ask for, from their ``case`` parameter."""
    slow_on = os.environ.get("CAFFE_HARNESS_SLOW") == "1"
    cases = set()
    for item in session.items:
        spec = getattr(item, "callspec", None)
        if spec is None or "case" not in spec.params or item.path.parent != HERE:
            continue
        if item.get_closest_marker("slow") is None or slow_on:
            cases.add(spec.params["case"])
    return cases


def _run_tool(py: Path, stage: str, jobs: list[dict], folder: Path) -> list[dict]:
    path = folder / f"jobs_{stage}.json"
    path.write_text(json.dumps(jobs))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    env.pop("PYTHONPATH", None)
    if stage == "onnx":  # caffe2onnx's generated caffe_pb2 needs the pure-Python protobuf
        env["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
    proc = subprocess.run([str(py), str(HERE / "_chain_tool.py"), stage, str(path)], env=env, cwd=folder,
                          capture_output=True, text=True, timeout=1800)
    out = Path(str(path) + ".out")
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"_chain_tool.py {stage} exited {proc.returncode}: {proc.stderr[-3000:]}")
    return json.loads(out.read_text())


class Corpus:
    """Every file of the session's corpus: ``net(name)`` -> (prototxt, caffemodel, inputs.npz);
    ``artefact(case, kind)`` -> the path of the case's ``onnx`` file, ``saved_model`` folder or ``tflite`` file
    (built in one batch by :meth:`build`; a conversion that failed is a test error naming the converter's message)."""

    def __init__(self, folder: Path, py: Path, net_files):
        self.folder, self.py, self.net = folder, py, net_files
        self.errors: dict[tuple[str, str], str] = {}
        self.cotof: dict[str, dict] = {}

    def _paths(self, case: str) -> dict[str, Path]:
        stem = self.folder / case
        return {"onnx": stem.with_suffix(".onnx"), "saved_model": self.folder / f"{case}_tf",
                "tflite": self.folder / f"{case}_tf" / f"{case}_float32.tflite"}

    def build(self, cases, cotof: bool = False) -> None:
        cases = [c for c in sorted(cases) if not self._paths(c)["onnx"].exists() and (c, "onnx") not in self.errors]
        jobs = []
        for case in cases:
            net, bug = case_key(case)
            proto, weights, _ = self.net(net)
            jobs.append({"prototxt": str(proto), "caffemodel": str(weights), "onnx": str(self._paths(case)["onnx"]),
                         "bug": bug, "layer": N.BUGS[bug][1] if bug else None})
        if not jobs:
            return
        tf_jobs, tf_cases = [], []
        for case, res in zip(cases, _run_tool(self.py, "onnx", jobs, self.folder)):
            if not res["ok"]:
                self.errors[(case, "onnx")] = f"caffe2onnx failed on {case}: {res['error']}"
                continue
            tf_cases.append(case)
            tf_jobs.append({"onnx": str(self._paths(case)["onnx"]), "out": str(self._paths(case)["saved_model"]),
                            "cotof": cotof})
        for case, res in zip(tf_cases, _run_tool(self.py, "tf", tf_jobs, self.folder) if tf_jobs else []):
            if not res["ok"]:
                self.errors[(case, "tf")] = f"onnx2tf failed on {case}: {res['error']}"
            elif "cotof" in res:
                self.cotof[case] = res["cotof"]

    def artefact(self, case: str, kind: str) -> Path:
        self.build([case])
        stage = "onnx" if kind == "onnx" else "tf"
        for key in ((case, "onnx"), (case, stage)):
            if key in self.errors:
                raise AssertionError(self.errors[key])
        path = self._paths(case)[kind]
        assert path.exists(), f"the converter wrote no {kind} for {case} at {path}"
        return path


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ports6")


@pytest.fixture(scope="session")
def net_files(workdir):
    """net_files(name) -> (prototxt, caffemodel, inputs.npz) of a _nets.NETS net, written once per session."""
    files: dict[str, tuple[Path, Path, Path]] = {}

    def get(name: str) -> tuple[Path, Path, Path]:
        if name not in files:
            files[name] = N.write_net(name, workdir)
        return files[name]

    return get


@pytest.fixture(scope="session")
def corpus(request, workdir, net_files) -> Corpus:
    c = Corpus(workdir, _venv_python(), net_files)
    c.build(_selected_cases(request.session))
    return c


@pytest.fixture(scope="session")
def check(workdir, net_files):
    """check(net, *flags) -> (exit code, JSON report or None, stderr): the in-process CLI
    ``caffe-harness check NET.prototxt --weights W --inputs X.npz --json F --no-table FLAGS``; one run per distinct
    command line in a session (the tests of one artefact share it)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from harness.cli import main

    cache: dict[tuple, tuple] = {}

    def run(net: str, *flags):
        key = (net, *map(str, flags))
        if key not in cache:
            proto, weights, inp = net_files(net)
            report = workdir / f"report_{hashlib.sha1(repr(key).encode()).hexdigest()[:12]}.json"
            err = io.StringIO()
            with redirect_stderr(err), redirect_stdout(io.StringIO()):
                try:
                    rc = main(["check", str(proto), "--weights", str(weights), "--inputs", str(inp),
                               "--json", str(report), "--no-table", *map(str, flags)])
                except SystemExit as e:  # argparse: a flag this harness does not have yet (--onnx)
                    rc = e.code
            cache[key] = (rc, json.loads(report.read_text()) if report.exists() else None, err.getvalue())
        return cache[key]

    return run

