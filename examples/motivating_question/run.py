"""Replay the motivating Stack Overflow question: a Caffe conv layer ported to Keras by hand.

The question: a Caffe net takes a 500x500 RGB image into 96 filters of 11x11, stride 4.  The asker copied the Caffe
weights (OIHW: (96, 3, 11, 11)) into a Keras ``Conv2D`` with ``w.reshape(11, 11, 3, 96)`` -- no error, wrong numbers.
Keras wants HWIO, which is ``w.transpose(2, 3, 1, 0)``.

This script writes, into a temporary directory (or ``--out DIR``):

* ``weights.caffemodel`` and ``weights.npz``: seeded random weights for ``net.prototxt`` (a real caffemodel, written
  with the harness's caffe.proto schema);
* ``buggy.keras``: the hand-written port with ``w.reshape(11, 11, 3, 96)``;
* ``fixed.keras``: the same port with ``w.transpose(2, 3, 1, 0)``;
* ``input.npz``: one seeded image in [0, 1), NCHW;

then runs ``caffe-harness check`` on both models and shows that the buggy one fails with ``kernel_reshaped`` named as
the first cause at ``conv1``, and the fixed one passes.  Exit status 0 when both outcomes are as expected.

    python examples/motivating_question/run.py [--out DIR] [--keep] [--subprocess]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROTOTXT = HERE / "net.prototxt"


def make_weights(seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((96, 3, 11, 11)) * np.sqrt(2.0 / (3 * 11 * 11))).astype(np.float32)
    b = (rng.standard_normal(96) * 0.1).astype(np.float32)
    return {"conv1": [w, b]}


def write_caffemodel(path: Path, blobs: dict[str, list[np.ndarray]]) -> None:
    from harness.proto import caffe_pb2

    netp = caffe_pb2.NetParameter(name="motivating_question")
    for name, arrays in blobs.items():
        lay = netp.layer.add(name=name, type="Convolution")
        for a in arrays:
            bp = lay.blobs.add()
            bp.shape.dim.extend(a.shape)
            bp.data.extend(a.reshape(-1).tolist())
    path.write_bytes(netp.SerializeToString())


def build_keras(kernel: np.ndarray, bias: np.ndarray):
    """The port as the question writes it: default layer names, ReLU fused into the convolution."""
    import keras

    model = keras.Sequential([
        keras.Input((500, 500, 3)),
        keras.layers.Conv2D(96, 11, strides=4, activation="relu"),
        keras.layers.MaxPooling2D(3, 2),
    ])
    model.layers[0].set_weights([kernel, bias])
    return model


def check(out: Path, keras_file: str, *, subprocess_: bool = False) -> tuple[int, dict]:
    """``caffe-harness check`` on one model: in this process (``harness.cli.main``, one TensorFlow import for both
    runs) or, with ``subprocess_``, as the installed command would run."""
    report = out / (Path(keras_file).stem + ".json")
    argv = ["check", str(PROTOTXT), "--weights", str(out / "weights.caffemodel"), "--keras", str(out / keras_file),
            "--inputs", str(out / "input.npz"), "--json", str(report)]
    print("$ caffe-harness " + " ".join(argv), flush=True)
    if subprocess_:
        rc = subprocess.run([sys.executable, "-m", "harness.cli", *argv],
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}).returncode
    else:
        from harness.cli import main as cli_main

        rc = cli_main(argv)
    print(f"(exit status {rc})\n", flush=True)
    return rc, json.loads(report.read_text()) if report.exists() else {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="directory for the generated files (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--subprocess", action="store_true", help="run caffe-harness as a separate process")
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="motivating_question_"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        blobs = make_weights()
        write_caffemodel(out / "weights.caffemodel", blobs)
        np.savez(out / "weights.npz", **{f"{k}/{i}": a for k, v in blobs.items() for i, a in enumerate(v)})
        image = np.random.default_rng(1).random((1, 3, 500, 500), dtype=np.float32)
        np.savez(out / "input.npz", data=image)
        w, b = blobs["conv1"]
        build_keras(w.reshape(11, 11, 3, 96), b).save(out / "buggy.keras")  # the question's bug
        build_keras(w.transpose(2, 3, 1, 0), b).save(out / "fixed.keras")  # OIHW -> HWIO

        rc_bug, rep_bug = check(out, "buggy.keras", subprocess_=args.subprocess)
        rc_fix, rep_fix = check(out, "fixed.keras", subprocess_=args.subprocess)

        fd = rep_bug.get("first_divergence") or {}
        diag = fd.get("diagnosis") or [{}]
        ok = (rc_bug == 1 and diag[0].get("cause") == "kernel_reshaped" and rc_fix == 0
              and rep_fix.get("equivalent") is True)
        print("buggy.keras: first divergence", fd.get("caffe_layer"), "->", diag[0].get("cause"),
              f"(confidence {diag[0].get('confidence')})")
        print("   fix:", diag[0].get("fix"))
        print("fixed.keras: equivalent =", rep_fix.get("equivalent"))
        print("OK: the reshape bug is named, the transpose passes" if ok else "UNEXPECTED outcome")
        return 0 if ok else 1
    finally:
        if not args.out and not args.keep:
            shutil.rmtree(out, ignore_errors=True)
        elif not args.out:
            print(f"files kept in {out}")


if __name__ == "__main__":
    sys.exit(main())
