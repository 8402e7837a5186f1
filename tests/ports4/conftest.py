"""Fixtures for the held-out artefact corpus: each net's prototxt, weights file and inputs written once per session;
each (net, port, export) artefact built once and reused by the tests that check it."""

from __future__ import annotations

import json

import pytest

from . import _corpus as C


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ports4")


@pytest.fixture(scope="session")
def nets(corpus_dir):
    """{net: (prototxt, weights file, inputs .npz, caffe weights dict)}."""
    import numpy as np

    out = {}
    for name, text in C.TEXTS.items():
        proto = corpus_dir / f"{name}.prototxt"
        proto.write_text(text)
        w = C.caffe_weights(name)
        wfile = (C.write_caffemodel(w, corpus_dir / f"{name}.caffemodel", name) if name == "res"
                 else C.write_npz(w, corpus_dir / f"{name}_weights.npz"))
        inp = corpus_dir / f"{name}_inputs.npz"
        np.savez(inp, data=C.inputs(name))
        out[name] = (proto, wfile, inp, w)
    return out


_CACHE: dict = {}


@pytest.fixture(scope="session")
def artefact(nets, corpus_dir):
    """artefact(net, kind, export, style="func", bug=None) -> path of the exported SavedModel folder or .tflite."""

    def build(net, kind, export, style="func", bug=None):
        key = (net, kind, export, style, bug)
        if key not in _CACHE:
            w = nets[net][3]
            model = (C.port_plain_nested(w) if style == "nested" else C.port_plain(w, style, bug) if net == "plain"
                     else C.port_bn(w, bug) if net == "bn" else C.port_res(w, bug))
            stem = corpus_dir / "_".join(str(k) for k in key)
            if kind == "saved_model":
                _CACHE[key] = C.SAVED_MODEL_EXPORTS[export](model, stem)
            else:
                _CACHE[key] = C.TFLITE_EXPORTS[export](model, stem.with_suffix(".tflite"))
        return _CACHE[key]

    return build


@pytest.fixture
def check(nets, tmp_path, capsys):
    """check(net, *flags) -> (exit code, JSON report or None, stderr) of the in-process CLI."""
    from harness.cli import main

    def run(net, *flags):
        proto, wfile, inp, _ = nets[net]
        report = tmp_path / "report.json"
        capsys.readouterr()
        rc = main(["check", str(proto), "--weights", str(wfile), "--inputs", str(inp), "--json", str(report),
                   "--no-table", *map(str, flags)])
        err = capsys.readouterr().err
        return rc, (json.loads(report.read_text()) if report.exists() else None), err

    return run
