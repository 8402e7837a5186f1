"""The converted models and the comparator on Keras's JAX and PyTorch backends (TensorFlow is what every other test
runs on).  Keras picks its backend once per process, so each test runs tests/backends/_drive.py in a fresh
interpreter with ``KERAS_BACKEND`` set and asserts on the ``RESULT`` lines it prints:

* golden: ``caffe-harness check`` on every golden real-Caffe case (fixtures/golden, all supported by the converter);
* extra: ties (ArgMax over integer-valued data, DetectionOutput over exactly tied scores -- ``torch.topk`` orders ties
  arbitrarily) and Caffe ``/`` layer names (torch refuses ``.`` in parameter names), through convert + check;
* zoo: tests/test_zoo_gate.py's gate on a subset of the zoo at its reduced sizes (default derived tolerance);
* props: the property suite's single-layer property (record by record, and the comparator), derandomized, a few
  examples of every catalogued type;
* cli: the installed ``caffe-harness check --backend B`` itself, and ``--backend`` choosing the backend with no
  ``KERAS_BACKEND`` in the environment.

A backend that is not installed is skipped with the reason (CI installs both: ``.ci/run``, extra ``backends``).
Times measured on the shared 2-core machine are in docs/converter.md ("Backends").
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ZOO = ROOT / "fixtures" / "zoo"
BACKENDS = ("jax", "torch")
# The zoo nets checked per backend (each at tests/test_zoo_gate.py's size): LeNet, AlexNet (LRN, groups, ceil pools),
# SqueezeNet (Concat), MobileNet (depthwise), the FCN head (Deconvolution + Crop); on torch also GoogLeNet, whose
# '/' layer names broke the torch backend (37 s on JAX at its 224x231 gate size, so JAX gets the small '/' net of
# part "extra" instead).
ZOO_NETS = {
    "jax": ["lenet", "alexnet", "squeezenet11", "mobilenet_v1", "fcn32s_head"],
    "torch": ["lenet", "alexnet", "squeezenet11", "mobilenet_v1", "fcn32s_head", "googlenet"],
}
PROPERTY_EXAMPLES = 3


def _need(backend: str) -> None:
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"Keras backend {backend!r} is not installed ({backend} is not importable): "
                    f"pip install '.[backends]'")


def _env(backend: str | None) -> dict[str, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("KERAS_BACKEND", None)
    if backend:
        env["KERAS_BACKEND"] = backend
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # pytest -n 2 on 2 cores: one thread per worker
        env.setdefault(var, "1")
    return env


def _drive(backend: str, *args: str) -> list[dict]:
    _need(backend)
    proc = subprocess.run([sys.executable, str(HERE / "_drive.py"), *args], capture_output=True, text=True,
                          timeout=900, env=_env(backend), cwd=str(ROOT))
    results = [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and results, (f"driver {' '.join(args)} on {backend} exited {proc.returncode}:\n"
                                              f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    bad = [r for r in results if not r["ok"]]
    assert not bad, f"on {backend}, {len(bad)} of {len(results)} failed:\n" + "\n".join(
        f"--- {r['item']}:\n{r['detail']}" for r in bad)
    return results


@pytest.mark.parametrize("backend", BACKENDS)
def test_golden_cases_pass_check(backend, record_property):
    results = _drive(backend, "golden")
    record_property("seconds", round(sum(r["seconds"] for r in results), 1))
    cases = sorted(p.name for p in (ROOT / "fixtures" / "golden").iterdir() if (p / "net.prototxt").is_file())
    assert [r["item"] for r in results] == cases


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_and_slash_names(backend):
    results = _drive(backend, "extra")
    assert {r["item"] for r in results} == {"ArgMax ties", "DetectionOutput ties", "'/' names"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_zoo_gate_subset(backend, record_property):
    results = _drive(backend, "zoo", *ZOO_NETS[backend])
    record_property("seconds", {r["item"]: r["seconds"] for r in results})
    assert len(results) == len(ZOO_NETS[backend])


@pytest.mark.parametrize("backend", BACKENDS)
def test_property_slice(backend):
    from harness.strategies import STRATEGIES

    results = _drive(backend, "props", str(PROPERTY_EXAMPLES))
    assert {r["item"] for r in results} == {f"property {t}" for t in STRATEGIES.types()}


_SHOW_BACKEND = ("import sys, harness.cli as c; rc = c.main(sys.argv[1:]); import keras; "
                 "print('BACKEND', keras.backend.backend()); sys.exit(rc)")


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_backend_flag(backend, tmp_path):
    """``--backend`` alone picks the backend (no KERAS_BACKEND in the environment), for convert and check; and the
    installed ``caffe-harness`` script runs ``check --backend`` on LeNet at its published batch of 64."""
    _need(backend)
    model = tmp_path / "lenet.keras"
    proc = subprocess.run([sys.executable, "-c", _SHOW_BACKEND, "convert", str(ZOO / "lenet.prototxt"), "-o",
                           str(model), "--backend", backend], capture_output=True, text=True, timeout=600,
                          env=_env(None), cwd=str(ROOT))
    assert proc.returncode == 0 and f"BACKEND {backend}" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
    proc = subprocess.run([sys.executable, "-c", _SHOW_BACKEND, "check", str(ZOO / "lenet.prototxt"), "--keras",
                           str(model), "--backend", backend, "--no-table"], capture_output=True, text=True,
                          timeout=600, env=_env(None), cwd=str(ROOT))
    assert proc.returncode == 0 and f"BACKEND {backend}" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.startswith("EQUIVALENT"), proc.stdout[-2000:]
    script = Path(sys.executable).with_name("caffe-harness")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "harness.cli"]
    out = tmp_path / "report.json"
    proc = subprocess.run([*cmd, "check", str(ZOO / "lenet.prototxt"), "--backend", backend, "--json", str(out)],
                          capture_output=True, text=True, timeout=600, env=_env(None), cwd=str(ROOT))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert rep["equivalent"] and {lay["caffe_layer"] for lay in rep["layers"]} >= {"conv1", "ip2", "prob"}


def test_backend_refused_when_keras_runs_on_another(capsys):
    """In a process whose Keras already runs on one backend, ``--backend`` naming another is refused by name with
    one line (exit 2), before anything is loaded."""
    import keras

    from harness.cli import main

    other = next(b for b in ("jax", "torch", "tensorflow") if b != keras.backend.backend())
    rc = main(["check", str(ZOO / "lenet.prototxt"), "--backend", other])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"caffe-harness: error: --backend {other}: Keras is already imported with backend "
                             f"{keras.backend.backend()!r}"), err
    assert main(["check", str(ZOO / "lenet.prototxt"), "--backend", keras.backend.backend(), "--no-table",
                 "--mode", "chained"]) == 0


def test_unknown_backend_is_an_argparse_error(capsys):
    from harness.cli import main

    with pytest.raises(SystemExit) as e:
        main(["check", str(ZOO / "lenet.prototxt"), "--backend", "mxnet"])
    assert e.value.code == 2 and "invalid choice: 'mxnet'" in capsys.readouterr().err
