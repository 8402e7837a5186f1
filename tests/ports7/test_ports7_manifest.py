"""Equivalence manifests (pytest plugin) over the ports: one item per layer; another input size by `inputs` and by
`input_shape`; a SavedModel; a manifest whose input does not fit the net is one collection error."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import _p7_build as B
from conftest import cli_env


def run_pytest(folder):
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", str(folder),
           f"--junitxml={folder / 'junit.xml'}", "--rootdir", str(folder)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), cwd=folder, timeout=600)
    outcomes = {}
    if (folder / "junit.xml").exists():
        for case in ET.parse(folder / "junit.xml").iter("testcase"):
            failed = case.find("failure") is not None or case.find("error") is not None
            outcomes[f"{case.get('classname')}::{case.get('name')}"] = "failed" if failed else "passed"
    return r, outcomes


def manifest(folder, name, **keys):
    lines = [f"{k} = {v!r}".replace("'", '"') if isinstance(v, str) else f"{k} = {list(v)}" for k, v in keys.items()]
    (folder / f"{name}.caffe-harness.toml").write_text("\n".join(lines) + "\n")


def setup(tmp_path, nets, *ports, export=()):
    for net in ("pnet", "rnet"):
        proto, w, _ = nets[net]
        (tmp_path / proto.name).write_text(proto.read_text())
        (tmp_path / w.name).write_bytes(w.read_bytes())
    np.savez(tmp_path / "pnet40.npz", data=nets["pnet40"][2])
    np.savez(tmp_path / "rnet_bad.npz", data=nets["pnet40"][2])
    for name in ports:
        B.PORTS[name][1]().save(tmp_path / f"{name}.keras")
    for name in export:
        B.PORTS[name][1]().export(str(tmp_path / f"{name}_sm"), verbose=False)


def test_manifest_items(tmp_path, nets):
    setup(tmp_path, nets, "pnet_fn", "pnet_fn_reshape")
    manifest(tmp_path, "a", prototxt="pnet.prototxt", weights="pnet.npz", keras="pnet_fn.keras", inputs="pnet40.npz")
    manifest(tmp_path, "b", prototxt="pnet.prototxt", weights="pnet.npz", keras="pnet_fn_reshape.keras",
             input_shape=(2, 3, 40, 31))
    r, out = run_pytest(tmp_path)
    a = {k.rsplit("::", 1)[1]: v for k, v in out.items() if k.startswith("a.caffe-harness.toml")}
    b = {k: v for k, v in out.items() if k.startswith("b.caffe-harness.toml")}
    assert set(a.values()) == {"passed"}, (out, r.stdout[-3000:])
    assert {"conv1", "pool1", "conv2", "conv4-2", "conv4-1+prob1"} <= set(a), a    # the fused head is one item
    assert [k.rsplit("::", 1)[1] for k, v in b.items() if v == "failed"] == ["conv2"], (b, r.stdout[-3000:])
    assert "Caffe 'conv2' is the first divergent layer" in r.stdout or "first divergent layer" in r.stdout
    assert "kernel_reshaped" in r.stdout


def test_manifest_bad_input_one_collection_error(tmp_path, nets):
    setup(tmp_path, nets, "rnet_nested")
    manifest(tmp_path, "bad", prototxt="rnet.prototxt", weights="rnet.npz", keras="convert", inputs="rnet_bad.npz")
    r, _ = run_pytest(tmp_path)
    assert r.returncode != 0
    assert "1 error" in r.stdout and "Traceback" not in r.stdout, r.stdout[-3000:]
    errors = [ln for ln in r.stdout.splitlines() if "bad.caffe-harness.toml:" in ln and "ERROR" not in ln]
    assert len(errors) == 1 and "conv4" in errors[0], r.stdout[-3000:]


@pytest.mark.slow
def test_manifest_saved_model(tmp_path, nets):
    setup(tmp_path, nets, export=("pnet_fn",))
    manifest(tmp_path, "sm", prototxt="pnet.prototxt", weights="pnet.npz", saved_model="pnet_fn_sm",
             inputs="pnet40.npz")
    r, out = run_pytest(tmp_path)
    assert r.returncode == 0 and out and set(out.values()) == {"passed"}, r.stdout[-3000:]


def test_manifest_subclassed(tmp_path, nets):
    setup(tmp_path, nets, "rnet_nested")
    np.savez(tmp_path / "rnet.npz.inputs.npz", data=nets["rnet"][2])
    manifest(tmp_path, "sub", prototxt="rnet.prototxt", weights="rnet.npz", keras="rnet_nested.keras",
             inputs="rnet.npz.inputs.npz", custom_objects=["_p7_ports:RNetBackbone"])
    r, out = run_pytest(tmp_path)
    assert r.returncode == 0 and out and set(out.values()) == {"passed"}, r.stdout[-3000:]
