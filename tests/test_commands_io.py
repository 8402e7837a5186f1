"""The CLI's shared plumbing: input reading (harness/commands/_io.py) and the one atomic writer (harness/_atomic.py)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from harness._atomic import atomic_path, atomic_write
from harness.commands._io import parse_input_shapes, read_inputs, write_npz
from harness.errors import HarnessError


@pytest.fixture
def arrays(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    b = np.full((2, 4), 7.0)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "ab.npz", a=a, b=b)
    return tmp_path, a, b


def test_read_inputs_merges_npz_and_npy_by_name(arrays):
    d, a, b = arrays
    got = read_inputs(str(d / "ab.npz"), [])
    assert sorted(got) == ["a", "b"]
    np.testing.assert_array_equal(got["a"], a)
    np.testing.assert_array_equal(got["b"], b)
    got = read_inputs(None, [f"x={d / 'a.npy'}"])
    assert list(got) == ["x"] and got["x"].dtype == np.float32
    np.testing.assert_array_equal(got["x"], a)
    assert read_inputs(None, []) == {}


@pytest.mark.parametrize("inputs, items, needle", [
    (None, ["a"], "--input 'a': expected NAME=FILE.npy"),
    (None, ["a={d}/missing.npy"], "--input a: file '{d}/missing.npy' does not exist"),
    (None, ["a={d}/ab.npz"], "got an .npz archive (use --inputs)"),
    ("{d}/a.npy", [], "expected an .npz archive of arrays keyed by input name"),
    ("{d}/missing.npz", [], "--inputs: file '{d}/missing.npz' does not exist"),
    ("{d}/ab.npz", ["a={d}/a.npy"], "input 'a' is given twice"),
])
def test_read_inputs_refuses_with_the_option_and_file_named(arrays, inputs, items, needle):
    d = arrays[0]
    with pytest.raises(HarnessError) as e:
        read_inputs(inputs and inputs.format(d=d), [i.format(d=d) for i in items])
    assert needle.format(d=d) in str(e.value)


def test_parse_input_shapes():
    assert parse_input_shapes(["data=1,3,4,5", "im=2x3"]) == {"data": (1, 3, 4, 5), "im": (2, 3)}
    for bad, needle in (("data=1,0", "positive"), ("data", "expected NAME=N,C,H,W")):
        with pytest.raises(HarnessError, match=needle):
            parse_input_shapes([bad])


def test_atomic_write_replaces_whole_file_with_plain_permissions(tmp_path):
    p = tmp_path / "r.json"
    p.write_text("old")
    atomic_write(p, "new \u00e9\n")
    assert p.read_bytes() == "new \u00e9\n".encode("utf-8")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask
    atomic_write(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.json"]


def test_atomic_path_leaves_old_file_and_no_temporary_on_error(tmp_path):
    p = tmp_path / "m.keras"
    p.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(p, suffix=".keras") as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".m.keras.") and tmp.suffix == ".keras"
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.keras"]
    with pytest.raises(HarnessError, match="does not exist"):
        atomic_write(tmp_path / "no" / "x.txt", "x")


def test_write_npz_round_trips_and_names_missing_folder(tmp_path):
    write_npz(str(tmp_path / "o.npz"), {"l/t": np.ones((2, 3))})
    with np.load(tmp_path / "o.npz") as z:
        assert z.files == ["l/t"]
        np.testing.assert_array_equal(z["l/t"], np.ones((2, 3)))
    with pytest.raises(HarnessError, match="--out: folder"):
        write_npz(str(tmp_path / "no" / "o.npz"), {})
