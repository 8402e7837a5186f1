"""Runs the corpus through ``harness.compare`` (the Python API) on the Keras backend that ``KERAS_BACKEND`` names,
as a user on that backend would, and writes one JSON line per (model, input batch).

    KERAS_BACKEND=jax python tests/ports5/_p5_driver.py PLAN.json OUT.jsonl

PLAN: ``{"work": DIR, "nets": [...], "ports": ["named", "fused", "converted"], "first": 0, "batches": B, "n": 4}``;
DIR holds ``<net>/net.prototxt``, ``<net>/w.npz`` and ``<net>/converted.keras`` (written by ``caffe-harness
convert``).  Each line: net, port, backend, batch, images, equivalent, seconds, the first divergence (layer, mode,
causes) and per layer its type and every ratio/margin number of the chained and isolated results.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness.convert import load_model  # noqa: E402

from _p5_corpus import summarise  # noqa: E402
from _p5_images import input_batch  # noqa: E402
from _p5_nets import load_weights, spec  # noqa: E402
from _p5_ports import build_port  # noqa: E402


def _model(work, net, port):
    if port == "converted":
        return load_model(str(work / net / "converted.keras"))
    return build_port(net, load_weights(work / net / "w.npz"), port)


def main(plan_path, out_path):
    plan = json.loads(Path(plan_path).read_text())
    work = Path(plan["work"])
    with open(out_path, "a") as out:
        for net in plan["nets"]:
            hw = spec(net)[0][1:]
            for port in plan["ports"]:
                model = _model(work, net, port)
                for b in range(plan["first"], plan["first"] + plan["batches"]):
                    t = time.perf_counter()
                    rep = harness.compare(str(work / net / "net.prototxt"), model,
                                          {"data": input_batch(b, hw, plan["n"])}, weights=str(work / net / "w.npz"))
                    rec = summarise(json.loads(rep.to_json()))
                    rec.update(net=net, port=port, batch=b, images=plan["n"], seconds=time.perf_counter() - t,
                               keras_backend=os.environ.get("KERAS_BACKEND", "tensorflow"))
                    out.write(json.dumps(rec) + "\n")
                    out.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
