"""The one support package of the project's own tests, importable from every test folder as ``support`` (the root
conftest.py puts tests/ on sys.path).  This face only re-exports the light helpers (NumPy, protobuf, no Keras);
import the Keras-side modules by name.

Light (re-exported here):

* :mod:`support.blobs` -- the one closeness rule: :func:`assert_blob_close`, :func:`max_rel_err`;
* :mod:`support.layers` -- :func:`make_layer` (one Layer from prototxt text), :func:`run` (its NumPy reference);
* :mod:`support.golden` -- :data:`ROOT`, :data:`GOLDEN`, :data:`ZOO`, :func:`golden_cases`, :func:`golden`,
  :func:`golden_bottoms`, and :class:`GoldenCase` / :func:`rel_err` (read without the loader);
* :mod:`support.nets` -- prototxt text builders (:func:`input_layers`, :func:`net_text`), nets from text
  (:func:`one_layer_net`, :func:`make_net` with seeded weights), :func:`feed_for`, :func:`save_weights_npz`, and the
  shared small net :data:`SMALL_NET` / :func:`small_net`;
* :mod:`support.layout` -- :func:`to_keras` / :func:`to_caffe` (NCHW <-> NHWC for 4-D arrays);
* :mod:`support.cli` -- :func:`run_cli` (``caffe-harness ARGV`` in this process: exit status, stdout, stderr),
  :func:`one_error_line` (the CLI's one error line).

Keras side (import as ``support.<module>``):

* :mod:`support.converted` -- one converted layer alone, or a whole converted net read back key by key, against
  the reference (``REL_TOL``);
* :mod:`support.ports` -- hand-written Keras ports of :data:`SMALL_NET` and the files the CLI/plugin tests run on;
* :mod:`support.sabotage` -- the sabotage net and its ports with one classic porting bug each;
* :mod:`support.handwritten` -- hand-written ports of the golden nets, LeNet, AlexNet and MobileNet.

Not here on purpose: the independently written port corpora (tests/ports2, ports3, ports4, ...) keep their own
helpers and never import this package; tests/property/_props.py (the property suite's machinery, also imported by
benchmarks/bench_properties.py, which runs without this conftest), tests/applications/_apps.py (keras.applications
weight transfer) and tests/backends/_drive.py (a script run in a fresh interpreter per Keras backend).
"""

from support.blobs import assert_blob_close, max_rel_err
from support.cli import one_error_line, run_cli
from support.golden import GOLDEN, ROOT, ZOO, GoldenCase, golden, golden_bottoms, golden_cases, rel_err
from support.layers import make_layer, run
from support.layout import to_caffe, to_keras
from support.nets import (SMALL_NET, feed_for, input_layers, make_net, net_text, one_layer_net, save_weights_npz,
                          small_net)

__all__ = ["GOLDEN", "ROOT", "SMALL_NET", "ZOO", "GoldenCase", "assert_blob_close", "feed_for", "golden",
           "golden_bottoms", "golden_cases", "input_layers", "make_layer", "make_net", "max_rel_err", "net_text",
           "one_error_line", "one_layer_net", "rel_err", "run", "run_cli", "save_weights_npz", "small_net", "to_caffe", "to_keras"]
