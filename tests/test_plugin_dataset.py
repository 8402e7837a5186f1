"""The pytest plugin's manifests with `dataset`, `batch` and `baseline`: one item per layer over a dataset, the
baseline written on the first run (pytest-regressions: the items fail, run again), checked afterwards, and a
drifting layer's item failing with text that reads like the verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest_plugins = ["pytester"]

PLUGIN = ("-p", "no:caffe_harness", "-p", "harness_pytest")


@pytest.fixture(scope="module")
def ports(tmp_path_factory):
    from support.ports import keras_port, write_port_files

    d = tmp_path_factory.mktemp("dsports")
    net = write_port_files(d, {"good": None})
    m = keras_port(net)
    dense = next(l for l in m.layers if l.__class__.__name__ == "Dense")
    w, b = dense.get_weights()
    dense.set_weights([w * np.float32(1 + 3e-6), b])  # within the float32 bound, past 2x the baseline
    m.save(d / "drift.keras")
    np.savez(d / "ds.npz", data=np.random.default_rng(2).standard_normal((24, 3, 13, 11)).astype(np.float32))
    return d


def _manifest(d: Path, keras: str) -> str:
    return (f'prototxt = "{d / "net.prototxt"}"\nweights = "{d / "w.npz"}"\nkeras = "{d / keras}"\nmode = "chained"\n'
            f'dataset = "{d / "ds.npz"}"\nbatch = 10\nbaseline = "profile.json"\n')


def _fresh() -> None:
    """In-process pytester runs share the plugin module: forget the previous run's comparisons."""
    import harness_pytest

    harness_pytest._REPORTS.clear()
    harness_pytest._PREPARED.clear()


def test_manifest_dataset_and_baseline(pytester, ports):
    _fresh()
    (pytester.path / "caffe-equivalence.toml").write_text(_manifest(ports, "good.keras"))
    r = pytester.runpytest(*PLUGIN, "-v", "-p", "no:cacheprovider")
    assert "did not exist: written from this run (5 layers); run again" in r.stdout.str()
    r.assert_outcomes(failed=5)
    assert (pytester.path / "profile.json").is_file()
    _fresh()
    r = pytester.runpytest(*PLUGIN, "-v", "-p", "no:cacheprovider")
    r.assert_outcomes(passed=5)
    (pytester.path / "caffe-equivalence.toml").write_text(_manifest(ports, "drift.keras"))
    _fresh()
    r = pytester.runpytest(*PLUGIN, "-v", "-p", "no:cacheprovider")
    out = r.stdout.str()
    assert "caffe-equivalence.toml::fc FAILED" in out and "caffe-equivalence.toml::prob PASSED" in out
    assert "BASELINE REGRESSION against" in out and "[chained]: bound ratio" in out
    r.assert_outcomes(passed=4, failed=1)


def test_manifest_dataset_keys_checked(pytester):
    pytester.makefile(".toml", **{"caffe-equivalence": 'prototxt = "x.prototxt"\nbaseline = "b.json"\n'})
    r = pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider")
    assert "'baseline' needs 'dataset'" in r.stdout.str()
    r.assert_outcomes(errors=1)
