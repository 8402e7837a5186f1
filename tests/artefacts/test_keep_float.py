"""``convert --format tflite --quantize int8 --keep-float auto|LAYER,... | --recipe FILE``
(harness.compare.artefacts.keep_float): an int8 model that fails the ``check --tflite`` gate is re-quantised with
Caffe layers kept in float32 until it passes; the written model passes ``check --tflite`` on both LiteRT paths; a
gate no set meets is reported with the best set (exit 1); Ctrl-C keeps the best set so far (exit 130); a layer
damaged in float is refused; bad flags and recipes exit 2 in one line.

One net (the AlexNet-like stem of test_tflite: grouped convolution, LRN, ceil-mode pooling, InnerProduct, Softmax;
every blob with distinct sizes on every axis), calibrated once per module (seconds).  At 39 dB its full int8 fails
(the carried error at fc and prob), and keeping layers float32 lifts it over the gate.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from harness.caffe import load_net_text  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.compare.artefacts import keep_float as kf  # noqa: E402
from harness.compare.artefacts.pairing import QuantGate  # noqa: E402
from harness.compare.artefacts.tflite import check_tflite  # noqa: E402
from harness.compare.engine.inputs import prepare_inputs  # noqa: E402
from harness.convert import convert  # noqa: E402
from harness.convert.export import Calibrated, dataset_inputs, tflite_bytes  # noqa: E402
from harness.weights import random_weights  # noqa: E402
from tests.artefacts.test_tflite import ALEXNET_LIKE, _damaged  # noqa: E402

SEED = 3
GATE = QuantGate(min_sqnr=39.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    net = random_weights(load_net_text(ALEXNET_LIKE), seed=SEED)
    model = convert(net)
    data = prepare_inputs(net, None, SEED)
    with Calibrated(model, 16, SEED) as cal:
        yield net, model, data, cal, tflite_bytes(model), tmp_path_factory.mktemp("keep")


def _setup(world, gate=GATE):
    net, _, data, cal, f32, d = world
    return kf.Setup(net, cal, data, gate, "16 seeded", "2 seeded", d, f32)


def test_auto_search_passes_a_gate_full_int8_fails(world):
    """Full int8 fails at 39 dB; the search keeps layers in float32 (lowest isolated SQNR first), stops at the first
    set that passes; that model, written and checked afresh, passes check --tflite on both LiteRT paths."""
    res = kf.search(_setup(world), 8)
    assert not res.full.passed and res.full.failing
    assert res.chosen is not None and res.chosen.passed and 1 <= len(res.tries) <= 8
    first_pass = next(i for i, c in enumerate(res.tries) if c.passed)
    units = [k for k, v in res.full.isolated.items() if v != float("inf")]
    assert len(res.tries[0].keep) == 1 and all(len(c.keep) in (2 * len(p.keep), len(units))  # the set doubles
                                               for p, c in zip(res.tries, res.tries[1:first_pass + 1]))
    assert all(c.keep[:len(p.keep)] == p.keep for p, c in zip(res.tries, res.tries[1:first_pass + 1]))
    assert res.chosen.keep == min((c.keep for c in res.tries if c.passed), key=len)
    assert min(res.chosen.chained.values()) >= 39.0 > min(res.full.chained.values())
    # the first layer kept: the lowest own (isolated) SQNR in full int8 -- not the carried one -- of the layers up to
    # the last failing one
    names = list(res.full.chained)
    upto = names[:max(names.index(f) for f in res.full.failing) + 1]
    first = res.tries[0].keep[0]
    assert res.full.isolated[first] == min(res.full.isolated[k] for k in upto if res.full.isolated[k] != float("inf"))
    net, _, data, _, f32, d = world
    out = kf.write_model(res.chosen_buf, d / "chosen.tflite")
    rep = check_tflite(net, data, out, gate=GATE)
    assert rep, rep.table()
    assert set(rep.delegates) == {"xnnpack", "none"} and all(v["equivalent"] for v in rep.delegates.values())
    assert len(res.full_buf) < len(res.chosen_buf) < len(f32) + 4096
    text = kf.render(res) + "\n" + kf.verdict(res)
    assert f"the gate passes with {len(res.chosen.keep)} Caffe layer(s) kept in float32" in text
    assert "carried" in text and "float32" in text and "full int8" in text


def test_the_kept_layers_run_in_float32(world):
    """Keeping conv1 float32 leaves its CONV_2D float (its SQNR jumps from int8 level to float level)."""
    res = kf.keep_explicit(_setup(world), ["conv1"], "--keep-float")
    cand = res.tries[0]
    assert cand.keep == ("conv1",) and res.full.chained["conv1"] < 45.0 < 100.0 < cand.chained["conv1"]


def test_unreachable_gate_reports_the_best_set(world):
    res = kf.search(_setup(world, QuantGate(min_sqnr=300.0)), 2)
    assert res.chosen is None and len(res.tries) == 2 and not res.interrupted
    line = kf.verdict(res)
    assert line.startswith("no set found that passes the gate (after 2 re-quantisation(s)); best set: ")
    assert ", ".join(res.best.keep) in line


def test_ctrl_c_keeps_the_best_set_so_far(world, monkeypatch):
    setup = _setup(world)
    real = setup.judge
    calls = []

    def judge(keep, nodes):
        calls.append(keep)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(keep, nodes)

    monkeypatch.setattr(setup, "judge", judge)
    res = kf.search(setup, 8)
    assert res.interrupted and res.chosen is None and len(res.tries) == 1
    assert "interrupted (Ctrl-C)" in kf.verdict(res)


def test_a_layer_damaged_in_float_is_refused(world, tmp_path):
    """conv2's weights scaled by a seeded factor before conversion: the float32 .tflite already fails there, and no
    precision can fix that."""
    net, _, data, _, _, _ = world
    factor = np.random.default_rng(0).uniform(-1, 1, net.layer("conv2").blobs[0].shape).astype(np.float32)
    bad = tflite_bytes(convert(_damaged(net, "conv2", factor)))
    ref = kf.reference_forward(net, data)
    found = kf.float_damage(net, data, ref, bad, tmp_path / "f.tflite")
    assert found[0] == "conv2"
    with pytest.raises(kf.DamagedFloat, match="layer 'conv2' already fails .* cannot be fixed by precision"):
        kf.refuse_damage(found)
    assert not (tmp_path / "f.tflite").exists() or (tmp_path / "f.tflite").stat().st_size == len(bad)


def test_recipe_round_trip_and_bad_recipes(world, tmp_path):
    net = world[0]
    res = kf.keep_explicit(_setup(world), ["conv1", "fc"], "--keep-float")
    doc = kf.recipe(res, res.tries[0], net)
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc))
    assert kf.read_recipe(str(p), net) == ["conv1", "fc"]
    assert doc["denylisted_nodes"] and all("conv1" in n or "fc" in n for n in doc["denylisted_nodes"])
    doc["keep_float"] = ["conv1", "conv9"]
    p.write_text(json.dumps(doc))
    with pytest.raises(kf.HarnessError, match="names layer 'conv9', which net 't' does not have"):
        kf.read_recipe(str(p), net)
    p.write_text('{"format": "other"}')
    with pytest.raises(kf.HarnessError, match="field 'format' is 'other'"):
        kf.read_recipe(str(p), net)


def test_dataset_inputs_are_laid_out_nhwc_sample_by_sample(world):
    model = world[1]
    x = np.arange(4 * 3 * 23 * 19, dtype=np.float32).reshape(4, 3, 23, 19)
    got = list(dataset_inputs(model, {"data": x}))
    assert len(got) == 4 and got[2][0].shape == (1, 23, 19, 3)
    np.testing.assert_array_equal(got[2][0][0], x[2].transpose(1, 2, 0))


def test_representative_npz_names_what_was_calibrated_on(tmp_path):
    from harness.commands.convert import _representative

    net = load_net_text(ALEXNET_LIKE)
    x = np.random.default_rng(1).standard_normal((5, 3, 23, 19)).astype(np.float32)
    np.savez(tmp_path / "cal.npz", data=x)
    args = argparse.Namespace(representative=str(tmp_path / "cal.npz"), seed=0)
    arrays, words = _representative(args, net)
    np.testing.assert_array_equal(arrays["data"], x)
    assert words == f"5 samples of {tmp_path / 'cal.npz'} (npz)"
    np.savez(tmp_path / "bad.npz", data=x[:, :, :7])
    with pytest.raises(kf.HarnessError, match="--representative"):
        _representative(argparse.Namespace(representative=str(tmp_path / "bad.npz"), seed=0), net)


@pytest.mark.parametrize("extra, needle", [
    (["--keep-float-as", "float16"], "--keep-float-as float16: the TFLite converter keeps a denylisted operator in "
                                     "float32 only"),
    (["--keep-float", "conv9"], "net 't' has no layer 'conv9'"),
    (["--recipe", "MISSING.json"], "--recipe 'MISSING.json' does not exist"),
    (["--max-requantize", "0"], "--max-requantize 0: give at least 1"),
])
def test_bad_flags_exit_2_in_one_line(extra, needle, tmp_path, capsys):
    proto = tmp_path / "n.prototxt"
    proto.write_text(ALEXNET_LIKE)
    argv = ["convert", str(proto), "--format", "tflite", "--quantize", "int8", "-o", str(tmp_path / "m.tflite")]
    if "--keep-float" not in extra and "--recipe" not in extra:
        argv += ["--keep-float", "auto"]
    assert main(argv + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert needle in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "m.tflite").exists()


def test_keep_float_needs_int8(tmp_path, capsys):
    proto = tmp_path / "n.prototxt"
    proto.write_text(ALEXNET_LIKE)
    assert main(["convert", str(proto), "--format", "tflite", "--keep-float", "auto", "-o",
                 str(tmp_path / "m.tflite")]) == 2
    assert "applies to --format tflite --quantize int8 only" in capsys.readouterr().err


def test_cli_auto_writes_a_model_and_recipe_that_pass_check_tflite(tmp_path, capsys):
    """End to end: convert --keep-float auto --recipe-out, then check --tflite of the file at the same gate; then
    --recipe FILE gives a model that passes too."""
    proto = tmp_path / "n.prototxt"
    proto.write_text(ALEXNET_LIKE)
    out, recipe = tmp_path / "m.tflite", tmp_path / "r.json"
    base = ["convert", str(proto), "--seed", str(SEED), "--format", "tflite", "--quantize", "int8",
            "--representative", "16", "--min-sqnr", "39"]
    assert main(base + ["--keep-float", "auto", "--recipe-out", str(recipe), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "the gate passes with" in text and "verified: check --tflite" in text
    assert "xnnpack EQUIVALENT, none EQUIVALENT" in text
    doc = json.loads(recipe.read_text())
    assert doc["format"] == kf.RECIPE_FORMAT and doc["passed"] and doc["keep_float"]
    assert main(["check", str(proto), "--seed", str(SEED), "--tflite", str(out), "--min-sqnr", "39"]) == 0
    out2 = tmp_path / "m2.tflite"
    assert main(base + ["--recipe", str(recipe), "-o", str(out2)]) == 0
    assert out2.read_bytes() == out.read_bytes()


def test_representative_images_go_through_caffes_layer_0(tmp_path):
    """A folder of images calibrates on Caffe's layer 0 (the pycaffe route: RGB swapped to BGR, raw scale 255, mean per channel)."""
    cv2 = pytest.importorskip("cv2")
    from harness.commands.convert import _representative

    rng = np.random.default_rng(0)
    pix = [rng.integers(0, 256, (23, 19, 3), dtype=np.uint8) for _ in range(3)]
    (tmp_path / "imgs").mkdir()
    for i, im in enumerate(pix):
        cv2.imwrite(str(tmp_path / "imgs" / f"im{i}.png"), im)
    (tmp_path / "n.prototxt").write_text(ALEXNET_LIKE)
    args = argparse.Namespace(representative=str(tmp_path / "imgs"), seed=0, prototxt=str(tmp_path / "n.prototxt"),
                              transform_prototxt=None, channel_swap="2,1,0", raw_scale=255.0, mean_file=None,
                              mean_value="104,117,123", input_scale=None)
    arrays, words = _representative(args, load_net_text(ALEXNET_LIKE))
    assert words == f"3 samples of {tmp_path / 'imgs'} (images)"
    want = pix[1].transpose(2, 0, 1).astype(np.float64) - np.array([104.0, 117.0, 123.0])[:, None, None]
    np.testing.assert_allclose(arrays["data"][1], want, atol=1e-3)


# fc6 and fc7 of one width (17), as AlexNet's are (4096): around a float32 fc6 the int8 fc7 reads fc6's output
# through a QUANTIZE whose tensor has fc7's record's shape
FC_CHAIN = ('name: "fcs"\n'
            'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 11 dim: 9 } } }\n'
            'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
            'convolution_param { num_output: 5 kernel_size: 3 } }\n'
            'layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }\n'
            'layer { name: "fc6" type: "InnerProduct" bottom: "conv1" top: "fc6" inner_product_param { num_output: 17 } }\n'
            'layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }\n'
            'layer { name: "drop6" type: "Dropout" bottom: "fc6" top: "fc6" }\n'
            'layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7" inner_product_param { num_output: 17 } }\n'
            'layer { name: "relu7" type: "ReLU" bottom: "fc7" top: "fc7" }\n'
            'layer { name: "fc8" type: "InnerProduct" bottom: "fc7" top: "fc8" inner_product_param { num_output: 7 } }\n'
            'layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }\n')


def test_a_float_layers_neighbours_are_judged_on_their_own_tensors(tmp_path):
    """fc6 kept float32: the QUANTIZE between it and the int8 fc7 writes a (2, 17) copy of fc6's output, which the
    position rule used to pair with fc7's pre-ReLU record (fc7 read -2.7 dB, top-1 still 1.000).  Re-typing
    operators' outputs are not read (a model output excepted): fc7 is judged on its FULLY_CONNECTED tensor on both
    LiteRT paths, within 2 dB of full int8."""
    from harness.compare.artefacts.pairing import match_tensors
    from harness.compare.artefacts.tflite import read_model, retyped, run_tflite

    net = random_weights(load_net_text(FC_CHAIN), seed=1)
    model = convert(net)
    data = prepare_inputs(net, None, 2)
    with Calibrated(model, 16, 2) as cal:
        setup = kf.Setup(net, cal, data, QuantGate(20.0), "16 seeded", "2 seeded", tmp_path, tflite_bytes(model))
        res = kf.keep_explicit(setup, ["fc6"], "--keep-float")
        buf = cal.quantize(res.tries[0].nodes)
    full, kept = res.full, res.tries[0]
    assert kept.passed and not kept.failing, kf.render(res)
    assert kept.chained["fc7"] > full.chained["fc7"] - 2.0 > 20.0
    assert kept.tensors["fc7"].startswith("fcs_1/fc7_1/MatMul;fcs_1/relu7_1/Relu")
    assert kept.segments["fc7"] == ("fc7", "relu7") and "relu7" not in kept.chained
    path = kf.write_model(buf, tmp_path / "fc6.tflite")
    model_t = read_model(path)[1]
    sg = model_t.subgraphs[0]
    names = {sg.tensors[i].name.decode() for i in retyped(model_t)}
    assert {"tfl.quantize", "tfl.quantize1"} <= names  # the input's QUANTIZE and the one after fc6
    ref = kf.reference_forward(net, data)
    for d in ("none", "xnnpack"):
        run = run_tflite(path, net, data, d)
        assert not names & set(run.values) and run.outputs["prob"] in run.values
        pairs = {p.key: p.keras_layer for p in match_tensors(net, run, {k: np.shape(v) for k, v in ref.items()},
                                                             ref).pairs}
        assert "fc7/fc7" not in pairs and pairs["relu7/fc7"].startswith("fcs_1/fc7_1/MatMul"), (d, pairs)


def test_ctrl_c_during_the_cli_search_exits_130_and_writes_nothing(tmp_path):
    """A real SIGINT to ``caffe-harness convert --keep-float auto`` once full int8 is judged (its progress line on
    stderr), at a gate no set meets within 8 re-quantisations: exit 130, the best set so far reported, the
    existing output file and no recipe touched, no temporary file left next to them nor in TMPDIR."""
    import os
    import queue
    import signal
    import subprocess
    import sys
    import threading

    proto = tmp_path / "n.prototxt"
    proto.write_text(ALEXNET_LIKE)
    out, recipe_path, tmp = tmp_path / "m.tflite", tmp_path / "r.json", tmp_path / "tmp"
    out.write_bytes(b"the model from before")
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    argv = [sys.executable, "-m", "harness.cli", "convert", str(proto), "--seed", str(SEED), "--format", "tflite",
            "--quantize", "int8", "--representative", "16", "--min-sqnr", "300", "--keep-float", "auto",
            "--max-requantize", "8", "--recipe-out", str(recipe_path), "-o", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue = queue.Queue()

    def pump():
        for x in proc.stderr:
            lines.put(x)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    got_out: list[str] = []  # stdout read by a thread of its own: communicate() would also read (steal) stderr
    reader = threading.Thread(target=lambda: got_out.append(proc.stdout.read()), daemon=True)
    reader.start()
    err = []
    try:
        while True:
            line = lines.get(timeout=300)
            assert line is not None, "".join(err)  # the run ended before full int8 was judged
            err.append(line)
            if "keep-float: kept none (full int8): FAIL" in line:
                break
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=300)
        reader.join(timeout=30)
        stdout = "".join(got_out)
    finally:
        proc.kill()
    while (line := lines.get(timeout=30)) is not None:
        err.append(line)
    assert proc.returncode == 130, "".join(err)
    assert "no set found that passes the gate (interrupted (Ctrl-C)); best set: " in stdout, err[-6:]
    said = [x.strip() for x in err if x.strip()]
    assert said[-1] == f"not written: {out} (the gate fails)" and "Traceback" not in "".join(err), err[-5:]
    assert out.read_bytes() == b"the model from before" and not recipe_path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite", "n.prototxt", "tmp"]
    assert not [p.name for p in tmp.iterdir() if p.name.startswith("harness-")]


def _cli(tmp_path, *extra):
    proto = tmp_path / "n.prototxt"
    proto.write_text(ALEXNET_LIKE)
    return main(["convert", str(proto), "--seed", str(SEED), "--format", "tflite", "--quantize", "int8",
                 "--representative", "16", "-o", str(tmp_path / "m.tflite"), *extra])


def test_cli_a_gate_no_set_meets_reports_the_best_set_and_exits_1(tmp_path, capsys):
    assert _cli(tmp_path, "--keep-float", "auto", "--min-sqnr", "300", "--max-requantize", "2") == 1
    cap = capsys.readouterr()
    last = cap.out.strip().splitlines()[-1]
    assert last.startswith("no set found that passes the gate (after 2 re-quantisation(s)); best set: ")
    assert "lowest SQNR " in last and "failing layer(s)" in last
    assert cap.err.strip().splitlines()[-1] == f"not written: {tmp_path / 'm.tflite'} (the gate fails)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.prototxt"]


@pytest.mark.parametrize("keep, needle", [
    ("recipe:conv9", "field 'keep_float' names layer 'conv9', which net 't' does not have"),
    ("drop", "--keep-float: layer 'drop' has no operator in the int8 model"),
])
def test_cli_a_layer_that_cannot_be_kept_exits_2_in_one_line(keep, needle, tmp_path, capsys):
    """A recipe naming a layer the net lacks is refused before anything is converted; a layer the int8 model has no
    operator for (a Dropout) once the model is calibrated."""
    if keep.startswith("recipe:"):
        r = tmp_path / "r.json"
        r.write_text(json.dumps({"format": kf.RECIPE_FORMAT, "version": 1, "keep_float": ["conv1", keep[7:]]}))
        extra = ["--recipe", str(r)]
    else:
        extra = ["--keep-float", keep]
    assert _cli(tmp_path, *extra) == 2
    from tests.support.cli import one_error_line

    line = one_error_line(capsys.readouterr().err, [needle])
    if keep.startswith("recipe:"):
        assert f"--recipe {str(tmp_path / 'r.json')!r}" in line
    assert not (tmp_path / "m.tflite").exists()


def test_cli_a_layer_damaged_in_float_is_named_and_refused(tmp_path, capsys, monkeypatch):
    """The Keras model's conv2 weights damaged (a seeded factor) before quantisation: the float32 .tflite already
    fails there, so no set is searched: exit 1 naming conv2, nothing written."""
    import harness.convert as conv

    real = conv.convert

    def damaged(net, **kw):
        factor = np.random.default_rng(0).uniform(-1, 1, net.layer("conv2").blobs[0].shape).astype(np.float32)
        return real(_damaged(net, "conv2", factor), **kw)

    monkeypatch.setattr(conv, "convert", damaged)
    assert _cli(tmp_path, "--keep-float", "auto", "--min-sqnr", "39") == 1
    cap = capsys.readouterr()
    assert "keep-float: kept" not in cap.err and "Traceback" not in cap.err
    assert cap.err.strip().splitlines()[-1].startswith("caffe-harness: layer 'conv2' already fails against Caffe in "
                                                       "the float32 .tflite")
    assert "cannot be fixed by precision" in cap.err and not (tmp_path / "m.tflite").exists()


def test_a_passing_batch_is_bisected_to_its_shortest_passing_head():
    """Kept x, then x + a..h passed: the bisection judges x + a..d (fails), x + a..f (passes), x + a..e (fails) and
    keeps x + a..f -- the judge here passes a set exactly when it holds f."""
    def cand(keep, passed):
        return kf.Candidate(tuple(keep), tuple(keep), 100 + len(keep), passed, {"none": passed}, {"f": 30.0 if passed
                            else 10.0}, {}, [] if passed else ["f"], 1.0, 1.0)

    class Judge:
        def judge(self, keep, nodes):
            assert nodes == tuple(f"n_{k}" for k in keep)
            return cand(keep, "f" in keep), b"buf" + ",".join(keep).encode()

    batch = list("abcdefgh")
    units = {k: (f"n_{k}",) for k in ["x"] + batch}
    res = kf.Search(QuantGate(20.0), "", "", 5, 0, cand([], False))
    res.tries.append(cand(["x"] + batch, True))
    res.chosen = res.tries[0]
    kf._shrink(Judge(), res, units, ["x"], batch, None)
    assert ["".join(c.keep) for c in res.tries[1:]] == ["xabcd", "xabcdef", "xabcde"]
    assert res.chosen.keep == tuple("xabcdef") and res.chosen_buf == b"bufx,a,b,c,d,e,f"
    res2 = kf.Search(QuantGate(20.0), "", "", 2, 0, cand([], False))
    res2.tries.append(cand(["x"] + batch, True))
    kf._shrink(Judge(), res2, units, ["x"], batch, None)
    assert len(res2.tries) == 2  # bounded by max_requantize: one bisection step left
