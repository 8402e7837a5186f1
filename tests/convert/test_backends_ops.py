"""Converter B on every installed Keras 3 backend: the chained net holding every custom layer (and an SSD head with
DetectionOutput) converted and run under KERAS_BACKEND=<backend> in a fresh interpreter, against the reference.
Backends that are not installed are skipped with the reason."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_chained_net_on_backend(backend):
    if importlib.util.find_spec(BACKENDS[backend]) is None:
        pytest.skip(f"Keras backend {backend!r} is not installed ({BACKENDS[backend]} not importable)")
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(HERE)!r}, {str(HERE.parent)!r}]  # tests/convert and tests/ (the support package)
        import numpy as np, keras
        assert keras.backend.backend() == {backend!r}, keras.backend.backend()
        import support.converted as K
        from support import assert_blob_close, to_caffe, to_keras
        from test_custom_ops_serialization import NET
        from test_detection_ops import SSD_HEAD
        from harness.caffe import load_net_text
        from harness.convert import convert, mapping_of
        from harness.reference import forward
        for text in (NET, SSD_HEAD):
            net = load_net_text(text)
            rng = np.random.default_rng(5)
            feed = {{k: rng.standard_normal(tuple(s)).astype(np.float32) for k, s in net.inputs.items()}}
            model = convert(net)
            ref = forward(net, feed, dtype=np.float64)
            out = model([to_keras(feed[b]) for b in mapping_of(model)["inputs"]])
            for blob in net.outputs:
                key = f"{{net.producers()[blob][-1]}}/{{blob}}"
                assert_blob_close(to_caffe(keras.ops.convert_to_numpy(out[blob])), ref[key], blob, rtol=K.REL_TOL)
        print("OK")
    """)
    env = dict(os.environ, KERAS_BACKEND=backend)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env,
                         cwd=str(HERE))
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-4000:]
