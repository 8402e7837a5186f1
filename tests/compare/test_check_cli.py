"""`caffe-harness check`: exit codes, reports written atomically, hand-written models loaded in safe mode."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from support import GOLDEN, run_cli
from support.nets import SMALL_NET, small_net
from support.ports import keras_port, write_port_files


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The small net as prototxt + .npz weights, a correct and a buggy hand-written .keras port, inputs."""
    d = tmp_path_factory.mktemp("check")
    write_port_files(d, {"good": None, "bad": "reshape"})
    x = np.random.default_rng(7).standard_normal((2, 3, 13, 11)).astype(np.float32)
    np.save(d / "x.npy", x)
    np.savez(d / "x.npz", data=x)
    return d


def test_equivalent_exit_0_with_reports(files, tmp_path, capsys):
    d = files
    rc, out, err = run_cli(["check", str(d / "net.prototxt"), "--weights", str(d / "w.npz"), "--keras",
                            str(d / "good.keras"), "--input", f"data={d / 'x.npy'}", "--json", str(tmp_path / "r.json"),
                            "--junit", str(tmp_path / "r.xml"), "--html", str(tmp_path / "r.html")], capsys)
    assert rc == 0, out + err
    assert "EQUIVALENT" in out and "relu1/conv1" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["equivalent"] is True and rep["first_divergence"] is None
    assert [l["caffe_layer"] for l in rep["layers"]] == ["relu1", "pool1", "scale1", "fc", "prob"]
    cases = ET.parse(tmp_path / "r.xml").getroot().findall(".//testcase")
    assert len(cases) == 5 and all(c.find("failure") is None for c in cases)
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_divergent_exit_1_names_layer_and_cause(files, tmp_path, capsys):
    d = files
    rc, out, err = run_cli(["check", str(d / "net.prototxt"), "--weights", str(d / "w.npz"), "--keras",
                            str(d / "bad.keras"), "--inputs", str(d / "x.npz"), "--json", str(tmp_path / "r.json")],
                           capsys)
    assert rc == 1
    assert "NOT EQUIVALENT" in out and "First divergent layer: Caffe 'conv1'" in out and "kernel_reshaped" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["first_divergence"]["caffe_layer"] == "conv1"  # the layer that introduced the error: the first of the fused span conv1+relu1
    assert rep["first_divergence"]["diagnosis"][0]["cause"] == "kernel_reshaped"


def test_atol_rtol_and_mode_flags(files, capsys):
    d = files
    rc, out, _ = run_cli(["check", str(d / "net.prototxt"), "--weights", str(d / "w.npz"), "--keras",
                          str(d / "bad.keras"), "--atol", "100", "--mode", "isolated", "--no-table"], capsys)
    assert rc == 0 and "(isolated)" in out and "┃" not in out


def test_map_flag_and_map_file(files, tmp_path, capsys):
    import keras

    d = files
    names = [l.name for l in keras.saving.load_model(d / "good.keras").layers]
    dense = next(n for n in names if n.startswith("dense"))
    mf = tmp_path / "map.txt"
    mf.write_text(f"# pairs\nfc = {dense}\n")
    rc, out, _ = run_cli(["check", str(d / "net.prototxt"), "--weights", str(d / "w.npz"), "--keras",
                          str(d / "good.keras"), "--map-file", str(mf), "--json", str(tmp_path / "r.json")], capsys)
    assert rc == 0
    lay = next(l for l in json.loads((tmp_path / "r.json").read_text())["layers"] if l["caffe_layer"] == "fc")
    assert lay["matched_by"] == "user"


def test_convert_when_no_keras_given(capsys, tmp_path):
    case = GOLDEN / "pool_ave"
    rc, out, err = run_cli(["check", str(case / "net.prototxt"), "--weights", str(case / "weights.caffemodel"),
                            "--inputs", str(case / "inputs.npz"), "--json", str(tmp_path / "r.json")], capsys)
    assert rc == 0, out + err
    assert {l["matched_by"] for l in json.loads((tmp_path / "r.json").read_text())["layers"]} == {"mapping"}


def test_unsafe_keras_model_is_refused(files, tmp_path, capsys):
    import keras

    inp = keras.Input((13, 11, 3))
    y = keras.layers.Lambda(lambda t: t * 2.0)(inp)
    keras.Model(inp, y).save(tmp_path / "lam.keras")
    rc, out, err = run_cli(["check", str(files / "net.prototxt"), "--keras", str(tmp_path / "lam.keras"),
                            "--json", str(tmp_path / "r.json")], capsys)
    assert rc == 2 and out == ""
    assert err.startswith("caffe-harness: error: ") and err.count("\n") == 1
    assert "unsafe" in err and "lam.keras" in err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("args,needle", [
    (["--input", "data"], "NAME=FILE.npy"),
    (["--input", "data=/nonexistent.npy"], "does not exist"),
    (["--input", "image={x}"], "not an input"),
    (["--keras", "/nonexistent.keras"], "does not exist"),
    (["--json", "/nonexistent/dir/r.json"], "directory"),
    (["--map", "conv1"], "CAFFE=KERAS"),
])
def test_bad_input_exit_2(files, capsys, args, needle):
    d = files
    args = [a.replace("{x}", str(d / "x.npy")) for a in args]
    rc, out, err = run_cli(["check", str(d / "net.prototxt"), "--weights", str(d / "w.npz"), *args], capsys)
    assert rc == 2 and needle in err and err.count("\n") == 1, err


def test_tolerances_file(files, tmp_path, capsys):
    d = files
    tf = tmp_path / "tol.toml"
    tf.write_text('[layers.relu1]\natol = 100.0\nreason = "kernel known to be reshaped"\n')
    rc, out, _ = run_cli(["check", str(d / "net.prototxt"), "--weights", str(d / "w.npz"), "--keras",
                          str(d / "bad.keras"), "--mode", "isolated", "--tolerances", str(tf),
                          "--json", str(tmp_path / "r.json")], capsys)
    assert rc == 0, out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["tolerances"]["layers"]["relu1"]["reason"] == "kernel known to be reshaped"
    tf.write_text("[layers.relu1\n")
    rc, _, err = run_cli(["check", str(d / "net.prototxt"), "--tolerances", str(tf)], capsys)
    assert rc == 2 and "--tolerances" in err


EMBED_NET = """name: "embed_net"
input: "ids" input_shape { dim: 2 dim: 5 }
layer { name: "emb" type: "Embed" bottom: "ids" top: "emb" embed_param { num_output: 7 input_dim: 11 } }
layer { name: "fc" type: "InnerProduct" bottom: "emb" top: "fc" inner_product_param { num_output: 3 axis: 1 } }
"""


def test_check_on_an_embed_net_without_inputs_seeds_indices(tmp_path, capsys):
    """`check` with no --input gives an Embed-fed input integer indices in [0, input_dim) -- the reference's own
    seeding -- instead of standard normals that Embed refuses (one input preparer for every command)."""
    from harness.caffe import load_net
    from harness.compare import prepare_inputs
    from harness.reference import random_inputs

    p = tmp_path / "embed.prototxt"
    p.write_text(EMBED_NET)
    rc, out, err = run_cli(["check", str(p), "--json", str(tmp_path / "r.json")], capsys)
    assert rc == 0, err + out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["equivalent"] is True and [lay["caffe_layer"] for lay in rep["layers"]] == ["emb", "fc"]
    net = load_net(p)
    got = prepare_inputs(net, None, seed=3)["ids"]
    assert got.dtype == np.float32 and np.array_equal(got, random_inputs(net, seed=3, dtype=np.float32)["ids"])
    assert set(np.unique(got)) <= set(range(11)) and len(np.unique(got)) > 3


def test_an_nhwc_input_array_is_named_as_such(tmp_path):
    from harness.caffe import load_net
    from harness.compare import prepare_inputs
    from harness.errors import HarnessError

    p = tmp_path / "n.prototxt"
    p.write_text(SMALL_NET)
    net = load_net(p)
    n, c, h, w = net.inputs["data"]
    with pytest.raises(HarnessError, match=r"looks NHWC.*x\.transpose\(0, 3, 1, 2\)"):
        prepare_inputs(net, {"data": np.zeros((n, h, w, c), np.float32)}, seed=0)


USER_LAYER_MODULE = '''
import keras


@keras.saving.register_keras_serializable(package="my_port")
class ScaledReLU(keras.layers.Layer):
    """A port's own layer: relu(x) * 1 (registered only when this module is imported)."""

    def call(self, x):
        return keras.ops.relu(x)
'''


def _user_layer_port(tmp_path, net):
    """A port of SMALL_NET whose first ReLU is the user's own class, saved with that class registered; then the
    class is unregistered again, as in a fresh process that never imported the module."""
    import importlib
    import sys

    import keras

    mod_dir = tmp_path / "mods"
    mod_dir.mkdir()
    (mod_dir / "my_port_layers.py").write_text(USER_LAYER_MODULE)
    sys.path.insert(0, str(mod_dir))
    try:
        mod = importlib.import_module("my_port_layers")
        good = keras_port(net, fused=False)
        x = keras.Input(batch_shape=good.inputs[0].shape)
        y = x
        for lay in good.layers[1:]:
            y = mod.ScaledReLU(name="user_relu")(y) if isinstance(lay, keras.layers.ReLU) else lay(y)
        model = keras.Model(x, y)
        model.save(tmp_path / "user.keras")
    finally:
        sys.path.remove(str(mod_dir))
        sys.modules.pop("my_port_layers", None)
        keras.saving.get_custom_objects().pop("my_port>ScaledReLU", None)
    return mod_dir


def test_a_port_with_its_own_layer_class_needs_the_explicit_opt_in(files, tmp_path, capsys, monkeypatch):
    net = small_net()
    mod_dir = _user_layer_port(tmp_path, net)
    base = ["check", str(files / "net.prototxt"), "--weights", str(files / "w.npz"), "--keras",
            str(tmp_path / "user.keras"), "--inputs", str(files / "x.npz"), "--no-table"]
    rc, out, err = run_cli(base, capsys)
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "'ScaledReLU'" in err and "--custom-objects your_module:ScaledReLU" in err and "user.keras" in err
    monkeypatch.syspath_prepend(str(mod_dir))
    rc, out, err = run_cli(base + ["--custom-objects", "my_port_layers:ScaledReLU"], capsys)
    assert rc == 0, err + out
    assert "EQUIVALENT" in out


@pytest.mark.parametrize("spec,want", [
    ("nocolon", "expected MODULE:CLASS"),
    ("no_such_module_xyz:Foo", "cannot import module 'no_such_module_xyz'"),
    ("json:NoSuchClass", "module 'json' has no class 'NoSuchClass'"),
])
def test_custom_objects_bad_spec_is_one_line(files, spec, want, capsys):
    rc, out, err = run_cli(["check", str(files / "net.prototxt"), "--keras", str(files / "good.keras"),
                            "--custom-objects", spec], capsys)
    assert rc == 2 and want in err and err.count("\n") == 1


def test_weights_only_file_and_saved_model_folder_say_what_they_are(files, tmp_path, capsys):
    import keras

    m = keras.saving.load_model(files / "good.keras", safe_mode=True)
    m.save_weights(tmp_path / "port.weights.h5")
    sm = tmp_path / "exported"
    sm.mkdir()
    (sm / "saved_model.pb").write_bytes(b"\x08\x01")
    for target, want in [(tmp_path / "port.weights.h5", "weights-only file (model.save_weights)"),
                         (sm, "TensorFlow SavedModel folder, not a Keras model file"),
                         (tmp_path, "is a folder, not a Keras model file")]:
        rc, out, err = run_cli(["check", str(files / "net.prototxt"), "--keras", str(target)], capsys)
        assert rc == 2 and want in err and str(target) in err and err.count("\n") == 1, err


def test_a_trained_port_checked_without_weights_gets_a_notice_not_weight_causes(files, tmp_path, capsys):
    """Without --weights the Caffe side runs on seeded weights; a port holding other (trained) weights is told so up
    front, and its first divergence gets weights_not_given instead of a weight-layout diagnosis."""
    keras_port(small_net(seed=5)).save(tmp_path / "trained.keras")
    rc, out, err = run_cli(["check", str(files / "net.prototxt"), "--keras", str(tmp_path / "trained.keras"),
                            "--inputs", str(files / "x.npz"), "--no-table", "--json", str(tmp_path / "r.json")], capsys)
    assert rc == 1
    assert err.startswith("caffe-harness: notice: no Caffe weights were given") and "--weights" not in err.split(
        "notice:")[0]
    rep = json.loads((tmp_path / "r.json").read_text())
    causes = [c["cause"] for c in rep["first_divergence"]["diagnosis"]]
    assert causes == ["weights_not_given"]
    assert "--weights model.caffemodel" in rep["first_divergence"]["diagnosis"][0]["fix"]
    # the port of the seeded weights themselves: no notice, equivalent
    rc, out, err = run_cli(["check", str(files / "net.prototxt"), "--keras", str(files / "good.keras"),
                            "--inputs", str(files / "x.npz"), "--no-table"], capsys)
    assert rc == 0 and "notice" not in err and "EQUIVALENT" in out


def test_an_nhwc_input_file_is_named_before_it_resizes_the_net(files, tmp_path, capsys):
    """`--input data=x_nhwc.npy` used to resize the net to C=13 and fail in conv1's weights; now one line names the
    layout (a train_val net, with no declared shape, is still sized by the array)."""
    x = np.load(files / "x.npy")
    np.save(tmp_path / "nhwc.npy", x.transpose(0, 2, 3, 1))
    rc, out, err = run_cli(["check", str(files / "net.prototxt"), "--weights", str(files / "w.npz"),
                            "--input", f"data={tmp_path / 'nhwc.npy'}"], capsys)
    assert rc == 2 and err.count("\n") == 1
    assert "(2, 13, 11, 3), which looks NHWC; the Caffe input is (2, 3, 13, 11)" in err


def test_the_json_report_names_the_backend_and_the_artefact(files, tmp_path, capsys):
    import keras

    rc, _, err = run_cli(["check", str(files / "net.prototxt"), "--weights", str(files / "w.npz"), "--keras",
                          str(files / "good.keras"), "--inputs", str(files / "x.npz"), "--no-table", "--json",
                          str(tmp_path / "r.json")], capsys)
    assert rc == 0, err
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["backend"] == keras.backend.backend()
    assert rep["artefact"] == {"kind": "keras", "path": str(files / "good.keras")}
    rc, _, _ = run_cli(["check", str(files / "net.prototxt"), "--no-table", "--json", str(tmp_path / "c.json")],
                       capsys)
    assert json.loads((tmp_path / "c.json").read_text())["artefact"] == {"kind": "converted", "path": None}


def test_check_prints_no_tensorflow_warning_for_grouped_convolutions(tmp_path):
    """Keras traces a tf.function per grouped-convolution call; TensorFlow's retracing warnings stay off the
    terminal (AlexNet's grouped conv2/4/5 printed two before)."""
    import subprocess
    import sys

    net = tmp_path / "groups.prototxt"
    layers = "".join(
        f'layer {{ name: "g{i}" type: "Convolution" bottom: "{"data" if i == 0 else f"g{i - 1}"}" top: "g{i}" '
        f'convolution_param {{ num_output: 6 kernel_size: 3 pad: 1 group: 2 }} }}\n' for i in range(8))
    net.write_text('name: "groups"\ninput: "data" input_shape { dim: 2 dim: 6 dim: 7 dim: 5 }\n' + layers)
    r = subprocess.run([sys.executable, "-m", "harness.cli", "check", str(net), "--no-table"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "EQUIVALENT" in r.stdout
    assert "retracing" not in r.stderr and "WARNING" not in r.stderr, r.stderr


@pytest.mark.parametrize("columns, fits", [("72", True), ("", False), ("wide", False)])
def test_the_table_honours_columns_when_stdout_is_not_a_terminal(files, capsys, monkeypatch, columns, fits):
    """A pipe or CI log: COLUMNS (as shutil.get_terminal_size reads it) sizes the table; unset or not a number:
    160 columns."""
    d = files
    monkeypatch.setenv("COLUMNS", columns)
    rc, out, _ = run_cli(["check", str(d / "net.prototxt"), "--weights", str(d / "w.npz"), "--keras",
                          str(d / "bad.keras"), "--inputs", str(d / "x.npz")], capsys)
    assert rc == 1
    widest = max(len(line) for line in out.splitlines() if "┃" in line or "│" in line)
    assert (widest <= 72) is fits, (widest, out)
