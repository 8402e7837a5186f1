"""``--sarif FILE``: a SARIF 2.1.0 log, validated against the hand-written schema subset in fixtures/sarif/."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import harness
from harness.compare.reports.annotations import divergences
from harness.compare.diagnose import CAUSES
from harness.compare.reports.sarif import SARIF_SCHEMA, to_sarif

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "fixtures" / "sarif" / "sarif-2.1.0-subset.schema.json").read_text())
sys.path.insert(0, str(ROOT / "tests"))
from test_annotations import ports, synthetic_report  # noqa: E402,F401  (the module-scoped port fixture)

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "number": (int, float), "integer": int}


def schema_errors(value, schema, path="$"):
    """Errors of ``value`` against the draft-07 keywords the subset uses ($ref, type, enum, required, properties,
    additionalProperties, items, minItems, uniqueItems, minimum, maximum, anyOf)."""
    if "$ref" in schema:
        return schema_errors(value, SCHEMA["definitions"][schema["$ref"].rsplit("/", 1)[1]], path)
    want = _TYPES.get(schema.get("type", ""), object)
    if not isinstance(value, want) or (isinstance(value, bool) and schema.get("type") in ("integer", "number")):
        return [f"{path}: expected {schema['type']}"]
    errs = [f"{path}: {value!r} not in {schema['enum']}"] if "enum" in schema and value not in schema["enum"] else []
    if "minimum" in schema and value < schema["minimum"] or "maximum" in schema and value > schema["maximum"]:
        errs.append(f"{path}: {value} out of range")
    if "anyOf" in schema and not any(not schema_errors(value, s, path) for s in schema["anyOf"]):
        errs.append(f"{path}: matches none of anyOf")
    if isinstance(value, dict):
        errs += _object_errors(value, schema, path)
    if isinstance(value, list):
        errs += [f"{path}: fewer than {schema['minItems']} items"] if len(value) < schema.get("minItems", 0) else []
        if schema.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
            errs.append(f"{path}: items not unique")
        for i, v in enumerate(value):
            errs += schema_errors(v, schema.get("items", {}), f"{path}[{i}]")
    return errs


def _object_errors(value, schema, path):
    props = schema.get("properties", {})
    errs = [f"{path}: missing {k!r}" for k in schema.get("required", ()) if k not in value]
    if schema.get("additionalProperties") is False:
        errs += [f"{path}: unexpected {k!r}" for k in value if k not in props]
    for k, v in value.items():
        if k in props:
            errs += schema_errors(v, props[k], f"{path}.{k}")
    return errs


def test_the_validator_rejects_what_the_schema_forbids():
    good = to_sarif(synthetic_report())
    assert schema_errors(good, SCHEMA) == []
    bad = json.loads(json.dumps(good))
    del bad["runs"][0]["tool"]["driver"]["name"]
    bad["runs"][0]["results"][0]["level"] = "fatal"
    bad["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] = 0
    bad["runs"][0]["results"][1]["message"] = {"txt": "x"}
    bad["version"] = "2.0.0"
    assert schema_errors(bad, SCHEMA) == [
        "$.version: '2.0.0' not in ['2.1.0']",
        "$.runs[0].tool.driver: missing 'name'",
        "$.runs[0].results[0].level: 'fatal' not in ['none', 'note', 'warning', 'error']",
        "$.runs[0].results[0].locations[0].physicalLocation.region.startLine: 0 out of range",
        "$.runs[0].results[1].message: matches none of anyOf",
        "$.runs[0].results[1].message: unexpected 'txt'",
    ]


def test_sarif_log_of_two_diverging_layers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    rep = synthetic_report(file="models/deploy.prototxt")
    log = to_sarif(rep)
    assert schema_errors(log, SCHEMA) == []
    assert log["$schema"] == SARIF_SCHEMA and log["version"] == "2.1.0"
    run = log["runs"][0]
    driver = run["tool"]["driver"]
    assert (driver["name"], driver["version"]) == ("caffe-harness", harness.__version__)
    assert [r["id"] for r in driver["rules"]] == ["diverges", *CAUSES]
    assert all(r["shortDescription"]["text"] == CAUSES[r["id"]] for r in driver["rules"][1:])
    res = run["results"]
    assert [(r["ruleId"], r["level"]) for r in res] == [("kernel_reshaped", "error"), ("diverges", "error")]
    assert [driver["rules"][r["ruleIndex"]]["id"] for r in res] == ["kernel_reshaped", "diverges"]
    assert [r["message"]["text"] for r in res] == [d.message for d in divergences(rep)]
    assert [r["locations"][0]["physicalLocation"] for r in res] == [
        {"artifactLocation": {"uri": "models/deploy.prototxt"}, "region": {"startLine": 42, "startColumn": 3}},
        {"artifactLocation": {"uri": "models/deploy.prototxt"}, "region": {"startLine": 60, "startColumn": 1}}]


def test_sarif_uri_outside_the_current_folder_and_without_a_file(tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    far = tmp_path / "my nets" / "deploy.prototxt"
    uri = to_sarif(synthetic_report(file=str(far)))["runs"][0]["results"][0]["locations"][0]
    assert uri["physicalLocation"]["artifactLocation"]["uri"] == far.resolve().as_uri()
    assert "%20" in far.resolve().as_uri()
    log = to_sarif(synthetic_report(file="<string>"))
    assert schema_errors(log, SCHEMA) == [] and "locations" not in log["runs"][0]["results"][0]


def test_sarif_cross_checked_with_jsonschema_when_installed():
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(to_sarif(synthetic_report()), SCHEMA)


def test_check_writes_sarif(ports, tmp_path, monkeypatch, capsys):
    from harness.cli import main

    monkeypatch.chdir(ports)
    base = ["check", "net.prototxt", "--weights", "w.npz", "--no-table", "--annotations", "none"]
    assert main(base + ["--keras", "bad.keras", "--sarif", str(tmp_path / "bad.sarif")]) == 1
    log = json.loads((tmp_path / "bad.sarif").read_text())
    assert schema_errors(log, SCHEMA) == []
    (res,) = log["runs"][0]["results"]
    assert res["ruleId"] == "kernel_reshaped"
    assert res["message"]["text"].startswith("net.prototxt:4: conv1: first divergent layer")
    assert res["locations"][0]["physicalLocation"] == {"artifactLocation": {"uri": "net.prototxt"},
                                                       "region": {"startLine": 4, "startColumn": 1}}
    assert main(base + ["--keras", "good.keras", "--sarif", str(tmp_path / "good.sarif")]) == 0
    assert json.loads((tmp_path / "good.sarif").read_text())["runs"][0]["results"] == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic: no temporary leftovers
    capsys.readouterr()


def test_sarif_into_a_missing_folder_is_one_line_exit_2(ports, tmp_path, capsys):
    from harness.cli import main

    rc = main(["check", str(ports / "net.prototxt"), "--keras", str(ports / "bad.keras"), "--json",
               str(tmp_path / "r.json"), "--sarif", str(tmp_path / "nope" / "r.sarif")])
    out, err = capsys.readouterr()
    assert rc == 2
    assert err.strip().count("\n") == 0 and "--sarif" in err and "nope" in err
    assert list(tmp_path.iterdir()) == []
