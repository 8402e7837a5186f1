"""The pytest plugin: light import, fixture + marker, manifests collected into one item per layer, xdist."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import GOLDEN, ROOT

pytest_plugins = ["pytester"]


# The plugin under test is the top-level module harness_pytest, loaded by name; the installed entry point
# (caffe_harness) is blocked so that an older installation's entry point cannot load a second copy.
PLUGIN = ("-p", "no:caffe_harness", "-p", "harness_pytest")

_LOAD_PLUGIN = """
import json, sys
import pytest
before, meta = set(sys.modules), list(sys.meta_path)
import harness_pytest
print(json.dumps({"new": sorted(set(sys.modules) - before),
                  "meta_path_added": [repr(f) for f in sys.meta_path if f not in meta],
                  "hooks": [h for h in ("pytest_addoption", "pytest_configure", "pytest_collect_file")
                            if callable(getattr(harness_pytest, h, None))]}))
"""


def test_loading_the_plugin_imports_nothing_but_itself():
    """Loading the plugin (after pytest) adds exactly one module, itself: no harness module, no NumPy, Keras or
    TensorFlow; and it installs no import hook."""
    r = subprocess.run([sys.executable, "-c", _LOAD_PLUGIN], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads(r.stdout)
    assert got == {"new": ["harness_pytest"], "meta_path_added": [],
                   "hooks": ["pytest_addoption", "pytest_configure", "pytest_collect_file"]}


def test_a_pytest_session_with_the_plugin_never_imports_the_harness(pytester):
    """A whole pytest run with the plugin loaded (options parsed, fixture requested, files collected) leaves
    ``harness``, Keras and TensorFlow unimported and ``sys.meta_path`` without a harness hook, as long as no manifest
    is collected and the fixture's methods are not called."""
    pytester.makepyfile(test_light="""
        import sys

        def test_light(caffe_harness):
            assert type(caffe_harness).__module__ == "harness_pytest"
            heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("harness", "keras", "tensorflow", "numpy"))
            assert heavy == []
            hooks = [repr(f) for f in sys.meta_path if type(f).__module__.startswith("harness")]
            assert hooks == []
    """)
    r = pytester.runpytest_subprocess(*PLUGIN, "-p", "no:cacheprovider", "--caffe-mode", "isolated")
    r.assert_outcomes(passed=1)


def test_compatibility_alias_registers_the_same_plugin():
    import harness.pytest_plugin as alias
    import harness_pytest

    for name in ("pytest_addoption", "pytest_configure", "pytest_collect_file", "caffe_harness", "CaffeHarness"):
        assert getattr(alias, name) is getattr(harness_pytest, name), name


def test_fresh_install_ships_the_plugin_module_and_points_the_entry_point_at_it():
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["entry-points"]["pytest11"] == {"caffe_harness": "harness_pytest"}
    assert project["tool"]["setuptools"]["py-modules"] == ["harness_pytest"]
    assert (ROOT / "harness_pytest.py").is_file()


def test_options_and_marker_registered(pytester):
    r = pytester.runpytest(*PLUGIN, "--help")
    out = r.stdout.str()
    assert "Caffe/Keras equivalence" in out and "--caffe-atol" in out and "--caffe-rtol" in out and "--caffe-mode" in out
    r = pytester.runpytest(*PLUGIN, "--markers")
    assert "caffe_tolerance" in r.stdout.str()


@pytest.fixture(scope="module")
def ports(tmp_path_factory):
    from support.ports import write_port_files

    d = tmp_path_factory.mktemp("ports")
    write_port_files(d, {"good": None, "bad": "reshape", "e4": "scale1e-4"})
    return d


def _manifest(d: Path, keras: str, extra: str = "") -> str:
    return (f'prototxt = "{d / "net.prototxt"}"\nweights = "{d / "w.npz"}"\nkeras = "{d / keras}"\nseed = 3\n'
            + extra)


def test_manifest_one_item_per_layer_and_failing_layer_named(pytester, ports):
    (pytester.path / "caffe-equivalence-good.toml").write_text(_manifest(ports, "good.keras"))
    (pytester.path / "port.caffe-harness.toml").write_text(_manifest(ports, "bad.keras"))
    r = pytester.runpytest(*PLUGIN, "-v", "-p", "no:cacheprovider")
    out = r.stdout.str()
    for layer in ("conv1+relu1", "pool1", "bn1+scale1", "fc", "prob"):  # named after the span each pair covers
        assert f"caffe-equivalence-good.toml::{layer} PASSED" in out
    assert "port.caffe-harness.toml::conv1+relu1 FAILED" in out
    assert "port.caffe-harness.toml::fc PASSED" in out  # isolated: only the conv carries the bug
    assert "kernel_reshaped" in out and "Caffe 'conv1' is the first divergent layer" in out  # where the verdict is
    r.assert_outcomes(passed=9, failed=1)


def test_manifest_tolerances_and_checks_tables(pytester, ports):
    import shutil

    sub = pytester.path / "models"
    sub.mkdir()
    for f in ("net.prototxt", "w.npz", "e4.keras"):
        shutil.copy(ports / f, sub / f)
    rel = 'prototxt = "models/net.prototxt"\nweights = "models/w.npz"\nkeras = "models/e4.keras"\nseed = 3\n'
    pytester.makefile(".toml", **{"caffe-equivalence": f"""
[[check]]
name = "strict"
{rel}
[[check]]
name = "relaxed"
{rel}
[check.tolerances.layers.fc]
rtol = 1e-3
reason = "fc re-quantised"
"""})
    r = pytester.runpytest(*PLUGIN, "-v", "-p", "no:cacheprovider")
    out = r.stdout.str()
    assert "caffe-equivalence.toml::strict::fc FAILED" in out
    assert "caffe-equivalence.toml::relaxed::fc PASSED" in out
    r.assert_outcomes(passed=9, failed=1)


def test_bad_manifest_is_a_collection_error(pytester):
    pytester.makefile(".toml", **{"caffe-equivalence": 'prototxt = "x.prototxt"\nkeras = "convert"\nbogus = 1\n'})
    r = pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider")
    assert "unknown key(s) ['bogus']" in r.stdout.str()
    r.assert_outcomes(errors=1)


def test_manifest_under_xdist(pytester, ports):
    case = GOLDEN / "conv_basic"
    pytester.makefile(".toml", **{
        "caffe-equivalence-golden": f'prototxt = "{case / "net.prototxt"}"\nweights = "{case / "weights.caffemodel"}"\n'
                                    f'inputs = "{case / "inputs.npz"}"\nkeras = "convert"\n',
        "caffe-equivalence-bad": _manifest(ports, "bad.keras")})
    r = pytester.runpytest(*PLUGIN, "-n", "2", "-v", "-p", "no:cacheprovider")
    out = r.stdout.str()
    assert "caffe-equivalence-golden.toml::conv_k3p1" in out
    assert "caffe-equivalence-bad.toml::conv1+relu1" in out
    r.assert_outcomes(passed=9, failed=1)


def test_fixture_and_marker(pytester, ports):
    pytester.makepyfile(f"""
        import sys
        import pytest
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from support.nets import small_net
        from support.ports import keras_port

        NET = small_net()

        def test_plain_fails(caffe_harness):
            with pytest.raises(AssertionError, match="First divergent layer: Caffe 'fc'"):
                caffe_harness.assert_equivalent(NET, keras_port(NET, bug="scale1e-4"))

        @pytest.mark.caffe_tolerance(layers={{"fc": {{"rtol": 1e-3, "reason": "re-quantised"}}}})
        def test_marker_relaxes_one_layer(caffe_harness):
            rep = caffe_harness.assert_equivalent(NET, keras_port(NET, bug="scale1e-4"))
            fc = [lr for lr in rep.layers if lr.key == "fc/fc"][0]
            assert "re-quantised" in fc.isolated.tolerance

        def test_compare_returns_report(caffe_harness):
            rep = caffe_harness.compare(NET, keras_port(NET))
            assert rep and rep.mode == "isolated"
    """)
    r = pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider", "--caffe-mode", "isolated")
    r.assert_outcomes(passed=3)
