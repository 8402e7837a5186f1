"""forward(): keys, in-place records, seeded inputs, input validation, error wrapping; and the CLI command."""

from __future__ import annotations


import numpy as np
import pytest

from harness.caffe import load_net_text
from harness.cli import main
from harness.errors import HarnessError, ShapeError
from harness.reference import forward
from support import GOLDEN


NET = """
name: "t"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 5 dim: 7 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 6 } }
"""


def _weights(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "conv1": [rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)],
        "bn1": [rng.standard_normal(4), rng.uniform(0.5, 2, 4), np.array([2.0])],
        "scale1": [rng.standard_normal(4), rng.standard_normal(4)],
        "fc": [rng.standard_normal((6, 4 * 3 * 4)), rng.standard_normal(6)],
    }


@pytest.fixture(scope="module")
def net():
    return load_net_text(NET, weights={k: [np.asarray(a, np.float32) for a in v] for k, v in _weights().items()})


def test_keys_in_execution_order_and_in_place_records_differ(net):
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 7))
    out = forward(net, {"data": x})
    assert list(out) == ["data/data", "conv1/conv1", "bn1/conv1", "scale1/conv1", "pool1/pool1", "fc/fc"]
    assert not np.shares_memory(out["conv1/conv1"], out["bn1/conv1"])
    assert not np.allclose(out["conv1/conv1"], out["bn1/conv1"])
    np.testing.assert_array_equal(out["data/data"], x)
    w = {k: [np.asarray(a, np.float32).astype(np.float64) for a in v] for k, v in _weights().items()}
    m, v, f = w["bn1"]
    bn = (out["conv1/conv1"] - (m / f)[None, :, None, None]) / np.sqrt(v / f + float(np.float32(1e-5)))[None, :, None,
                                                                                                        None]
    np.testing.assert_allclose(out["bn1/conv1"], bn, rtol=1e-12)
    np.testing.assert_allclose(out["scale1/conv1"], bn * w["scale1"][0][None, :, None, None]
                               + w["scale1"][1][None, :, None, None], rtol=1e-12)
    assert out["fc/fc"].shape == (2, 6)


def test_records_do_not_alias_the_callers_input(net):
    x = np.ones((2, 3, 5, 7))
    out = forward(net, {"data": x})
    out["data/data"][...] = 7
    assert (x == 1).all()


def test_seeded_random_inputs_are_reproducible(net):
    a = forward(net, seed=3)
    b = forward(net, seed=3)
    c = forward(net, seed=4)
    np.testing.assert_array_equal(a["fc/fc"], b["fc/fc"])
    assert not np.array_equal(a["data/data"], c["data/data"])
    assert a["data/data"].shape == (2, 3, 5, 7)


def test_float32_everywhere(net):
    out = forward(net, dtype=np.float32)
    assert {v.dtype for v in out.values()} == {np.dtype(np.float32)}
    out64 = forward(net)
    np.testing.assert_allclose(out["fc/fc"], out64["fc/fc"], rtol=1e-4, atol=1e-4)


def test_input_validation(net):
    with pytest.raises(ShapeError, match=r"'data'.*\(2, 3, 7, 5\).*\(2, 3, 5, 7\)"):
        forward(net, {"data": np.zeros((2, 3, 7, 5))})
    with pytest.raises(ShapeError, match=r"no input 'image'"):
        forward(net, {"image": np.zeros((2, 3, 5, 7))})
    with pytest.raises(HarnessError, match="float16"):
        forward(net, dtype=np.float16)


def test_layer_errors_name_the_layer_and_bottom_shapes():
    bad = load_net_text(NET.replace("num_output: 6", "num_output: 6 axis: 1"),
                        weights={k: [np.asarray(a, np.float32) for a in v] for k, v in _weights().items()},
                        check=False)
    object.__setattr__(bad.layers[-1], "blobs", (np.zeros((6, 23), np.float32), np.zeros(6, np.float32)))
    with pytest.raises(ShapeError, match=r"InnerProduct 'fc'.*\(6, 23\).*bottom shapes: \(2, 4, 3, 4\)"):
        forward(bad)


def test_cli_reference_writes_golden_blobs(tmp_path, capsys):
    d = GOLDEN / "resnet_block"
    out = tmp_path / "ref.npz"
    rc = main(["reference", str(d / "net.prototxt"), "--weights", str(d / "weights.caffemodel"), "--inputs",
               str(d / "inputs.npz"), "--out", str(out)])
    assert rc == 0
    gold = np.load(d / "blobs.npz")
    with np.load(out) as z:
        assert "relu1/conv1" in z.files and "bn1/conv1" in z.files
        for k in z.files:
            scale = np.abs(gold[k]).max()
            assert np.abs(z[k] - gold[k]).max() <= 1e-5 * scale, k
    assert [p.name for p in tmp_path.iterdir()] == ["ref.npz"]


def test_cli_reference_single_input_float32(tmp_path):
    d = GOLDEN / "conv_basic"
    x = np.load(d / "inputs.npz")["data"]
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "o.npz"
    assert main(["reference", str(d / "net.prototxt"), "--weights", str(d / "weights.caffemodel"),
                 "--input", f"data={tmp_path / 'x.npy'}", "--dtype", "float32", "--out", str(out)]) == 0
    with np.load(out) as z:
        assert z["conv_k3p1/conv_k3p1"].dtype == np.float32


def test_cli_reference_bad_input_exit_2_nothing_written(tmp_path, capsys):
    d = GOLDEN / "conv_basic"
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 11, 9), np.float32))  # H and W swapped
    out = tmp_path / "o.npz"
    rc = main(["reference", str(d / "net.prototxt"), "--weights", str(d / "weights.caffemodel"),
               "--input", f"data={tmp_path / 'x.npy'}", "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "caffe-harness: error:" in err and "(2, 3, 11, 9)" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
    rc = main(["reference", str(d / "net.prototxt"), "--weights", str(d / "weights.caffemodel"),
               "--input", "data", "--out", str(out)])
    assert rc == 2 and "NAME=FILE.npy" in capsys.readouterr().err


def test_absurd_net_refused_before_allocating(monkeypatch):
    """A net whose recorded activations exceed the memory budget is refused by the shape side's budget check before
    any input or top is allocated (the input alone here would be 2 * 3 * 90000 * 70000 * 8 bytes = 302 GB)."""
    from harness.errors import ResourceError

    text = NET.replace("dim: 5 dim: 7", "dim: 90000 dim: 70000")
    big = load_net_text(text, weights={k: [np.asarray(a, np.float32) for a in v] for k, v in _weights().items()},
                        check=False)
    with pytest.raises(ResourceError, match="budget"):
        forward(big)


def test_cli_reference_random_weights_notice(tmp_path, capsys):
    d = GOLDEN / "inner_product"
    out = tmp_path / "o.npz"
    assert main(["reference", str(d / "net.prototxt"), "--seed", "5", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "random weights" in err and "seed 5" in err
    with np.load(out) as z:
        first = {k: z[k] for k in z.files}
    assert main(["reference", str(d / "net.prototxt"), "--seed", "5", "--out", str(out)]) == 0
    with np.load(out) as z:
        for k in z.files:
            np.testing.assert_array_equal(z[k], first[k])  # seeded: identical reruns
    assert np.abs(first["fc_implicit/fc_implicit"]).max() > 0


def test_random_inputs_feed_embed_with_valid_indices():
    text = """
    layer { name: "ids" type: "Input" top: "ids" input_param { shape { dim: 2 dim: 5 } } }
    layer { name: "emb" type: "Embed" bottom: "ids" top: "emb" embed_param { num_output: 3 input_dim: 4 } }
    """
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    net = load_net_text(text, weights={"emb": [w, np.zeros(3, np.float32)]})
    out = forward(net, seed=2)
    ids = out["ids/ids"]
    assert ids.shape == (2, 5) and set(np.unique(ids)) <= {0.0, 1.0, 2.0, 3.0}
    np.testing.assert_array_equal(out["emb/emb"], w[ids.astype(int)])


def test_reference_imports_no_keras_tensorflow_or_opencv():
    """The reference is pure NumPy: importing it (and running a forward) pulls in no Keras/TensorFlow/OpenCV."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from harness.caffe import load_net\n"
            "from harness.reference import forward\n"
            f"net = load_net({str(GOLDEN / 'resnet_block' / 'net.prototxt')!r}, "
            f"weights={str(GOLDEN / 'resnet_block' / 'weights.caffemodel')!r})\n"
            "forward(net)\n"
            "import harness.commands.reference\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'cv2', 'torch'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_layer_writing_into_its_bottom_fails_loudly(monkeypatch):
    """Bottoms reach layer functions as read-only views, so an in-place bug cannot silently corrupt an earlier
    record (conv1/conv1 would otherwise change when relu1 runs)."""
    from harness.reference import REFERENCE

    def bad_relu(layer, inputs, *, dtype):
        np.maximum(inputs[0], 0, out=inputs[0])
        return [inputs[0]]

    monkeypatch.setitem(REFERENCE._impls, "ReLU", bad_relu)
    net = load_net_text(NET.replace('layer { name: "pool1"',
                                    'layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }\n'
                                    'layer { name: "pool1"'),
                        weights={k: [np.asarray(a, np.float32) for a in v] for k, v in _weights().items()})
    with pytest.raises(HarnessError, match=r"ReLU 'relu1'.*read-only"):
        forward(net)
