"""Issue 22: a chained dataset batch judged layer by layer (harness.compare.dataset.batch.stream_batch) gives the
whole-batch judge's statistics bit for bit while holding only the live values; the reference's layer-by-layer forward
equals forward(); the peak-memory estimate, the batch split and its one-line refusal; the float32 magnitude's upward
factor."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from harness.caffe import load_net_text
from harness.compare.dataset import batch as batch_mod
from harness.compare.dataset.batch import Sides, stream_batch, whole_batch
from harness.compare.dataset.memory import fitting_batch, live_activation_bytes, with_batch
from harness.compare.engine.inputs import prepare_inputs
from harness.compare.engine.tolerance import Tolerances, f32_sum_factor
from harness.errors import ResourceError
from harness.reference import forward, forward_iter
from harness.shapes import infer_shapes
from harness.weights import random_weights

from tests.compare.test_dataset_dask import RESNET_LIKE  # noqa: E402


def _net(n: int = 2):
    net = random_weights(load_net_text(RESNET_LIKE, input_shapes={"data": (n, 3, 21, 19)}), seed=0)
    return net


def _sides(net, model=None):
    from harness.convert import convert

    return Sides(net, model if model is not None else convert(net), Tolerances.build(), "chained")


def _fields(lr):
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in dataclasses.asdict(lr.chained).items()}


def _same(a, b):
    assert [lr.key for lr in a[2]] == [lr.key for lr in b[2]]
    for x, y in zip(a[2], b[2]):
        fx, fy = _fields(x), _fields(y)
        assert json.dumps(fx, sort_keys=True, default=str) == json.dumps(fy, sort_keys=True, default=str), x.key
    assert a[1] == b[1]  # classification agreement


@pytest.mark.parametrize("scale", [None, 1.001])
def test_stream_batch_equals_whole_batch_bit_for_bit(scale):
    import keras

    net = _net(2)
    sides = _sides(net)
    if scale is not None:  # a conversion bug in one kernel: the chained rule's re-run path is exercised
        layer = next(la for la in sides.keras_model.layers if isinstance(la, keras.layers.Conv2D)
                     and la.name.startswith("res2a_branch2b"))
        w = layer.get_weights()
        layer.set_weights([w[0] * scale, *w[1:]])
    x = np.random.default_rng(3).standard_normal((2, 3, 21, 19)).astype(np.float32)
    data = prepare_inputs(net, {"data": x}, 0)
    whole = whole_batch(sides, net, data, None)
    streamed = stream_batch(sides, net, data, None)
    assert streamed is not None  # the net's shapes are static: it streamed
    _same(whole, streamed)
    failing = [lr.key for lr in streamed[2] if not lr.passed]
    assert failing == ([] if scale is None else failing[:1]) and (scale is None) == (not failing)


def test_stream_batch_drops_records_after_their_last_reader(monkeypatch):
    net = _net(2)
    sides = _sides(net)
    held: list[int] = []
    real = batch_mod.FreePlan.free

    def spy(self, i, ref, *stores):
        real(self, i, ref, *stores)
        held.append(len(ref))

    monkeypatch.setattr(batch_mod.FreePlan, "free", spy)
    data = prepare_inputs(net, {"data": np.random.default_rng(4).standard_normal((2, 3, 21, 19))}, 0)
    assert stream_batch(sides, net, data, None) is not None
    n_records = len(forward(net, data))
    # never more than a handful of records at once (the net output's and its logits' stay to the end)
    assert max(held) <= 6 < n_records == 25, held


def test_forward_iter_yields_the_records_of_forward():
    net = _net(3)
    x = {"data": np.random.default_rng(5).standard_normal((3, 3, 21, 19))}
    whole = forward(net, x)
    streamed = {}
    for lay, recs in forward_iter(net, x):
        assert all(k.startswith(lay.name + "/") for k in recs)
        streamed.update(recs)
    assert list(streamed) == list(whole)
    assert all(np.array_equal(streamed[k], whole[k]) for k in whole)


def test_live_activation_bytes_of_a_chain_and_a_branch():
    text = """
name: "t"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 5 dim: 7 } } }
layer { name: "a" type: "ReLU" bottom: "data" top: "a" }
layer { name: "b" type: "ReLU" bottom: "a" top: "b" }
layer { name: "c" type: "Eltwise" bottom: "data" bottom: "b" top: "c" }
"""
    ns = infer_shapes(load_net_text(text))
    one = 2 * 3 * 5 * 7 * 8
    # at b: data (read again by c), a (b's bottom) and b's new top; at c: data, b and c
    assert live_activation_bytes(ns, 8) == 3 * one
    assert ns.activation_bytes(8) == 4 * one
    assert live_activation_bytes(infer_shapes(with_batch(load_net_text(text), 5)), 8) == 3 * one // 2 * 5


def test_a_batch_over_the_budget_is_halved_and_one_sample_over_it_refused():
    net = load_net_text(RESNET_LIKE, input_shapes={"data": (1, 3, 21, 19)})
    from harness.compare.dataset.memory import estimate_net

    e4, e8 = (estimate_net(net, b, streaming=True).peak for b in (4, 8))
    b, notice = fitting_batch(net, 16, streaming=True, budget=((e4 + e8) // 2, "CAFFE_HARNESS_MEMORY_BUDGET"))
    assert b == 4 and "run in batches of 4" in notice and "batch of 16" in notice
    assert fitting_batch(net, 16, streaming=True, budget=(1 << 40, "x")) == (16, None)
    with pytest.raises(ResourceError) as e:
        fitting_batch(net, 16, streaming=True, budget=(1 << 20, "CAFFE_HARNESS_MEMORY_BUDGET"))
    assert "\n" not in str(e.value) and "one sample" in str(e.value) and "CAFFE_HARNESS_MEMORY_BUDGET" in str(e.value)


def test_dataset_run_refuses_in_one_line_when_one_sample_does_not_fit(tmp_path, capsys, monkeypatch):
    from support import run_cli

    (tmp_path / "net.prototxt").write_text(RESNET_LIKE)
    np.savez(tmp_path / "ds.npz", data=np.random.default_rng(6).standard_normal((3, 3, 21, 19)).astype(np.float32))
    monkeypatch.setenv("CAFFE_HARNESS_MEMORY_BUDGET", "1M")
    rc, out, err = run_cli(["check", str(tmp_path / "net.prototxt"), "--dataset", str(tmp_path / "ds.npz")], capsys)
    assert rc == 2 and "one sample of a dataset batch needs about" in err and len(err.strip().splitlines()) == 1


def test_f32_sum_factor_covers_the_float32_norm():
    text = """
name: "c"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 64 dim: 5 dim: 7 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 3 kernel_size: 3 pad: 1 bias_term: false } }
"""
    from harness.compare.engine.tolerance import _reference_fn, _squared_layer

    net = random_weights(load_net_text(text), seed=1)
    lay = net.layer("conv")
    x = np.random.default_rng(7).standard_normal((2, 64, 5, 7)) * 1e3
    up = f32_sum_factor(lay, [x])
    k = 64 * 9
    assert up == pytest.approx(1 / np.sqrt(1 - (k + 4) * 2.0**-24 / (1 - (k + 4) * 2.0**-24)), rel=1e-15)
    fn = _reference_fn(lay)
    sq32 = fn(_squared_layer(lay, np.float32), [np.square(x.astype(np.float32))], dtype=np.float32)[0]
    sq64 = fn(_squared_layer(lay, np.float64), [np.square(x)], dtype=np.float64)[0]
    assert np.all(np.sqrt(sq32.astype(np.float64)) * up >= np.sqrt(sq64) * (1 - 1e-15))
    assert f32_sum_factor(dataclasses.replace(lay), [np.zeros((2, 64, 5, 7))]) == up
