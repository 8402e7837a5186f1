"""The ports6 corpus machinery, shared by the fixtures (conftest.py) and make_results.py: where the converters'
venv is, the converter subprocesses (tests/ports6/_chain_tool.py, once per batch of cases: one caffe2onnx process
for every ONNX file, one onnx2tf process for every SavedModel / .tflite, so TensorFlow starts once), and the
in-process ``caffe-harness check`` runner."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from . import _nets as N

HERE = Path(__file__).resolve().parent
DEFAULT_VENV = "/work/venvs/corpus20"


def venv_python() -> tuple[Path | None, str]:
    """(the converters' venv python, "") or (None, why not)."""
    venv = Path(os.environ.get("PORTS6_CONVERTERS_VENV") or DEFAULT_VENV)
    py = venv / "bin" / "python"
    stamp = venv / ".ports6-stamp"
    if not py.exists() or not stamp.exists():
        return None, (f"the ports6 converters' venv is not at {venv} (caffe2onnx, onnx2tf): "
                      f"run tests/ports6/install_converters.sh {venv} or set PORTS6_CONVERTERS_VENV")
    pins = b"".join((HERE / f).read_bytes() for f in ("requirements-converters.txt", "constraints-converters.txt"))
    want = hashlib.sha256(pins).hexdigest()[:16]
    if stamp.read_text().strip() != want:
        return None, (f"the ports6 converters' venv at {venv} is not of the current pins: "
                      f"re-run tests/ports6/install_converters.sh {venv}")
    return py, ""


def run_tool(py: Path, stage: str, jobs: list[dict], folder: Path) -> list[dict]:
    path = folder / f"jobs_{stage}.json"
    path.write_text(json.dumps(jobs))
    # onnx2tf runs `onnxsim` as a command: the venv's bin/ must be on PATH (else it skips simplifying, with a warning)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               PATH=f"{py.parent}{os.pathsep}{os.environ.get('PATH', '')}")
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
            net, bug = N.case_key(case)
            proto, weights, _ = self.net(net)
            jobs.append({"prototxt": str(proto), "caffemodel": str(weights), "onnx": str(self._paths(case)["onnx"]),
                         "bug": N.ALL_BUGS[bug][3] if bug else None, "layer": N.ALL_BUGS[bug][1] if bug else None})
        if not jobs:
            return
        tf_jobs, tf_cases = [], []
        for case, res in zip(cases, run_tool(self.py, "onnx", jobs, self.folder)):
            if not res["ok"]:
                self.errors[(case, "onnx")] = f"caffe2onnx failed on {case}: {res['error']}"
                continue
            tf_cases.append(case)
            tf_jobs.append({"onnx": str(self._paths(case)["onnx"]), "out": str(self._paths(case)["saved_model"]),
                            "cotof": cotof})
        for case, res in zip(tf_cases, run_tool(self.py, "tf", tf_jobs, self.folder) if tf_jobs else []):
            if not res["ok"]:
                self.errors[(case, "tf")] = f"onnx2tf failed on {case}: {res['error']}"
            elif "cotof" in res:
                self.cotof[case] = res["cotof"]

    def onnx_files(self, specs: dict[str, tuple[str, int | None]]) -> dict[str, Path]:
        """ONNX files only (no onnx2tf), one caffe2onnx process: ``{file stem: (net, opset or None)}`` -> paths."""
        jobs = []
        for stem, (net, opset) in specs.items():
            proto, weights, _ = self.net(net)
            jobs.append({"prototxt": str(proto), "caffemodel": str(weights), "onnx": str(self.folder / f"{stem}.onnx"),
                         "opset": opset})
        for stem, res in zip(specs, run_tool(self.py, "onnx", jobs, self.folder)):
            assert res["ok"], f"caffe2onnx failed on {stem}: {res['error']}"
        return {stem: self.folder / f"{stem}.onnx" for stem in specs}

    def artefact(self, case: str, kind: str) -> Path:
        self.build([case])
        stage = "onnx" if kind == "onnx" else "tf"
        for key in ((case, "onnx"), (case, stage)):
            if key in self.errors:
                raise AssertionError(self.errors[key])
        path = self._paths(case)[kind]
        assert path.exists(), f"the converter wrote no {kind} for {case} at {path}"
        return path


class Checker:
    """``checker(net, *flags)`` -> (exit code, JSON report or None, stderr): the in-process CLI ``caffe-harness check
    NET.prototxt --weights W --inputs X.npz --json F --no-table FLAGS``; one run per distinct command line (the tests
    of one artefact share it)."""

    def __init__(self, folder: Path, net_files):
        self.folder, self.net_files = folder, net_files
        self.cache: dict[tuple, tuple] = {}

    def __call__(self, net: str, *flags):
        key = (net, *map(str, flags))
        if key not in self.cache:
            self.cache[key] = self._run(net, key)
        return self.cache[key]

    def text(self, net: str, *flags) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) of ``check`` with its table and verdict text (no JSON)."""
        return self._cli(net, [*map(str, flags)])

    def _cli(self, net: str, flags: list[str]) -> tuple[int, str, str]:
        from harness.cli import main

        proto, weights, inp = self.net_files(net)
        out, err = io.StringIO(), io.StringIO()
        with redirect_stderr(err), redirect_stdout(out):
            try:
                rc = main(["check", str(proto), "--weights", str(weights), "--inputs", str(inp), *flags])
            except SystemExit as e:  # argparse: a flag this harness does not have yet (--onnx)
                rc = e.code
        return rc, out.getvalue(), err.getvalue()

    def _run(self, net: str, key: tuple):
        report = self.folder / f"report_{hashlib.sha1(repr(key).encode()).hexdigest()[:12]}.json"
        rc, _, err = self._cli(net, ["--json", str(report), "--no-table", *key[1:]])
        return rc, (json.loads(report.read_text()) if report.exists() else None), err


def net_writer(folder: Path):
    """net_writer(folder)(name) -> (prototxt, caffemodel, inputs.npz) of a _nets net, written once."""
    files: dict[str, tuple[Path, Path, Path]] = {}

    def get(name: str) -> tuple[Path, Path, Path]:
        if name not in files:
            files[name] = N.write_net(name, folder)
        return files[name]

    return get
