"""Diverging layers located in the prototxt: the verdict line per layer, GitHub workflow annotations (escaping,
check --annotations, GITHUB_ACTIONS, the pytest plugin) and the locations in the JSON report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.compare.reports.annotations import annotations_wanted, divergences, github_annotations
from harness.compare.reports.report import Report
from harness.compare.reports.result import BlobResult, Cause, FirstDivergence, LayerResult

pytest_plugins = ["pytester"]
PLUGIN = ("-p", "no:caffe_harness", "-p", "harness_pytest")


def _fail(name: str, max_abs: float) -> BlobResult:
    return BlobResult(name, "isolated", False, "derived", max_abs=max_abs, needs_atol=max_abs, needs_rtol=0.5)


def synthetic_report(file: str = "deploy.prototxt", first: str = "conv1") -> Report:
    """conv1 (line 42) is the first divergence; relu2 (a span conv2 + relu2, line 60) also fails in isolation;
    pool fails only chained (carried: not annotated)."""
    ok = BlobResult("x", "isolated", True, "derived", max_abs=0.0)
    layers = [
        LayerResult(first, first, f"{first}/{first}", "conv2d", "name", (1, 2, 3, 3), "Convolution", (first,),
                    isolated=_fail(first, 3.0), file=file, line=42, column=3),
        LayerResult("relu2", "conv2", "relu2/conv2", "conv2d_1", "position", (1, 2, 3, 3), "ReLU",
                    ("conv2", "relu2"), isolated=_fail("relu2", 0.25), file=file, line=60, column=1),
        LayerResult("pool", "pool", "pool/pool", "max_pooling2d", "position", (1, 2, 1, 1), "Pooling", ("pool",),
                    chained=BlobResult("pool", "chained", False, "derived", max_abs=1.0), isolated=ok,
                    file=file, line=70, column=1),
    ]
    fd = FirstDivergence(first, "conv2d", f"{first}/{first}", "isolated",
                         [Cause("kernel_reshaped", 1.0, "reshaped", "use w.transpose(2, 3, 1, 0), not reshape")],
                         file=file, line=42, column=3)
    return Report("net", "port", "both", layers, [], [], first_divergence=fd)


def test_divergences_are_the_first_then_every_isolated_failure():
    ds = divergences(synthetic_report())
    assert [(d.caffe_layer, d.rule, d.line, d.column) for d in ds] == [("conv1", "kernel_reshaped", 42, 3),
                                                                       ("relu2", "diverges", 60, 1)]
    assert ds[0].message == ("deploy.prototxt:42: conv1: first divergent layer (Convolution) <-> Keras 'conv2d' "
                             "[isolated]: conv1 [isolated]: FAIL max_abs=3; needs atol>=3; likely "
                             "cause kernel_reshaped (1.00); fix: use w.transpose(2, 3, 1, 0), not reshape")
    assert ds[1].message == ("deploy.prototxt:60: relu2: fails in isolation (ReLU) <-> Keras 'conv2d_1' (Keras "
                             "layer computes conv2 + relu2): relu2 [isolated]: FAIL max_abs=0.25; needs atol>=0.25")


def test_github_annotations_format(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = github_annotations(synthetic_report(), environ={})
    assert len(lines) == 2
    assert lines[0] == ("::error file=deploy.prototxt,line=42,col=3,title=caffe-harness%3A conv1 diverges "
                        "(kernel_reshaped)::" + divergences(synthetic_report())[0].message)
    assert lines[1].startswith("::error file=deploy.prototxt,line=60,col=1,title=caffe-harness%3A relu2 diverges::"
                               "deploy.prototxt:60: relu2: fails in isolation")


def test_github_escaping_of_data_and_properties(tmp_path):
    file = str(tmp_path / "a,b" / "x:y.prototxt")
    rep = synthetic_report(file=file, first="c,1:%\r\nz")
    line = github_annotations(rep, environ={"GITHUB_WORKSPACE": str(tmp_path)})[0]
    props, _, message = line[len("::error "):].partition("::")
    assert props == ("file=a%2Cb/x%3Ay.prototxt,line=42,col=3,"
                     "title=caffe-harness%3A c%2C1%3A%25%0D%0Az diverges (kernel_reshaped)")
    assert message.startswith(f"{file}:42: c,1:%25%0D%0Az: first divergent layer")
    assert "\n" not in line and "\r" not in line


def test_a_net_not_read_from_a_file_gets_no_file_property():
    rep = synthetic_report(file="<string>")
    assert github_annotations(rep, environ={})[0].startswith("::error title=caffe-harness%3A conv1 diverges")


def test_when_annotations_are_wanted():
    assert annotations_wanted(None, {"GITHUB_ACTIONS": "true"}) is True
    assert annotations_wanted(None, {}) is False
    assert annotations_wanted("none", {"GITHUB_ACTIONS": "true"}) is False
    assert annotations_wanted("github", {}) is True


# ------------------------------------------------------------------------------------------- through the CLI

@pytest.fixture(scope="module")
def ports(tmp_path_factory):
    from support.ports import write_port_files

    d = tmp_path_factory.mktemp("annot")
    write_port_files(d, {"good": None, "bad": "reshape"})
    return d


def _check(d: Path, keras: str, capsys, *extra: str):
    from harness.cli import main

    rc = main(["check", "net.prototxt", "--weights", "w.npz", "--keras", keras, "--no-table", *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def test_check_prints_location_annotation_and_json_fields(ports, capsys, monkeypatch):
    monkeypatch.chdir(ports)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)
    rc, out, err = _check(ports, "bad.keras", capsys, "--json", "r.json")
    assert rc == 1, out + err
    assert "\n  at net.prototxt:4: conv1\n" in out
    notes = [line for line in out.splitlines() if line.startswith("::")]
    assert len(notes) == 1
    assert notes[0].startswith("::error file=net.prototxt,line=4,col=1,title=caffe-harness%3A conv1 diverges "
                               "(kernel_reshaped)::net.prototxt:4: conv1: first divergent layer")
    rep = json.loads((ports / "r.json").read_text())
    assert [(l["caffe_layer"], l["file"], l["line"], l["column"]) for l in rep["layers"]] == [
        ("relu1", "net.prototxt", 6, 1), ("pool1", "net.prototxt", 7, 1), ("scale1", "net.prototxt", 10, 1),
        ("fc", "net.prototxt", 11, 1), ("prob", "net.prototxt", 12, 1)]  # SMALL_NET starts with a blank line
    fd = rep["first_divergence"]
    assert (fd["caffe_layer"], fd["file"], fd["line"], fd["column"]) == ("conv1", "net.prototxt", 4, 1)


def test_annotations_none_and_default_off(ports, capsys, monkeypatch):
    monkeypatch.chdir(ports)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    rc, out, _ = _check(ports, "bad.keras", capsys, "--annotations", "none")
    assert rc == 1 and "::error" not in out
    monkeypatch.delenv("GITHUB_ACTIONS")
    rc, out, _ = _check(ports, "bad.keras", capsys)
    assert rc == 1 and "::error" not in out
    rc, out, _ = _check(ports, "bad.keras", capsys, "--annotations", "github")
    assert rc == 1 and out.count("::error file=net.prototxt,line=4,col=1,") == 1
    rc, out, _ = _check(ports, "good.keras", capsys, "--annotations", "github")
    assert rc == 0 and "::error" not in out


# ------------------------------------------------------------------------------------------- the pytest plugin

def _manifest(d: Path, keras: str) -> str:
    return f'prototxt = "{d / "net.prototxt"}"\nweights = "{d / "w.npz"}"\nkeras = "{d / keras}"\nseed = 3\n'


def test_plugin_prints_annotations_under_xdist(pytester, ports, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(ports))
    (pytester.path / "port.caffe-harness.toml").write_text(_manifest(ports, "bad.keras"))
    r = pytester.runpytest(*PLUGIN, "-n", "2", "-p", "no:cacheprovider")
    r.assert_outcomes(passed=4, failed=1)
    notes = [line for line in r.outlines if line.startswith("::error")]
    assert len(notes) == 1
    assert notes[0].startswith("::error file=net.prototxt,line=4,col=1,title=caffe-harness%3A conv1 diverges "
                               "(kernel_reshaped)::")
    r = pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider", "--caffe-annotations", "none")
    r.assert_outcomes(passed=4, failed=1)
    assert not [line for line in r.outlines if line.startswith("::")]


def test_plugin_fixture_annotates_a_failing_comparison(pytester, ports, monkeypatch):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setenv("GITHUB_WORKSPACE", str(ports))
    pytester.makepyfile(f"""
        import pytest

        def test_fails(caffe_harness):
            caffe_harness.assert_equivalent({str(ports / "net.prototxt")!r}, {str(ports / "bad.keras")!r},
                                            weights={str(ports / "w.npz")!r})

        def test_passes(caffe_harness):
            caffe_harness.assert_equivalent({str(ports / "net.prototxt")!r}, {str(ports / "good.keras")!r},
                                            weights={str(ports / "w.npz")!r})
    """)
    r = pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider", "--caffe-annotations", "github")
    r.assert_outcomes(passed=1, failed=1)
    notes = [line for line in r.outlines if line.startswith("::error")]
    assert [n.split("::")[1] for n in notes] == [
        "error file=net.prototxt,line=4,col=1,title=caffe-harness%3A conv1 diverges (kernel_reshaped)"]
