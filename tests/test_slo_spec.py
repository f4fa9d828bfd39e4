"""The SLO spec loader: the repo's spec is valid, and bad specs name the field."""

from pathlib import Path

import pytest
import yaml

from contract.durations import DurationError, format_duration, parse_duration
from toolkit.slo.spec import SloSpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]


def _spec_dict():
    return yaml.safe_load((ROOT / "slo.yaml").read_text())


def test_repo_spec_loads_with_workbook_windows():
    spec = load_spec(ROOT / "slo.yaml")
    assert [s.name for s in spec.slos] == ["publish-success", "publish-latency"]
    assert [(w.long, w.short, w.burn_rate) for w in spec.windows] == [
        ("1h", "5m", 14.4), ("6h", "30m", 6.0), ("1d", "2h", 3.0), ("3d", "6h", 1.0)]
    lab = spec.windows_for("lab")
    assert [(w.long, w.short) for w in lab] == [("1m", "5s"), ("6m", "30s"), ("24m", "2m"), ("1h12m", "6m")]
    assert spec.period_for(spec.slos[0], "lab") == 12 * 3600


@pytest.mark.parametrize("path, value, message", [
    (("slos", 1, "threshold"), "fast", "slos[1].threshold: expected a duration"),
    (("slos", 0, "objective"), 1.5, "slos[0].objective: must be in (0, 1)"),
    (("slos", 0, "kind"), "boolean", "slos[0].kind: expected one of ratio, latency"),
    (("alerting", "windows", 0, "burn_rate"), 10, "alerting.windows[0].burn_rate: 10 does not match"),
    (("profiles", "lab", "time_compression"), 3600, "profiles.lab.time_compression: compresses alerting.windows[0].short"),
    (("version",), 2, "version: unsupported spec version 2"),
])
def test_bad_field_is_named(path, value, message):
    d = _spec_dict()
    target = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SloSpecError) as e:
        parse_spec(d, source="x.yaml")
    assert str(e.value).startswith(f"x.yaml: {message}")


def test_unknown_field_and_missing_field():
    d = _spec_dict()
    d["slos"][0]["objectiv"] = 0.9
    with pytest.raises(SloSpecError, match=r"slos\[0\]\.objectiv: unknown field"):
        parse_spec(d)
    d = _spec_dict()
    del d["slos"][0]["objective"]
    with pytest.raises(SloSpecError, match=r"slos\[0\]\.objective: required field is missing"):
        parse_spec(d)


def test_invalid_yaml_names_line(tmp_path):
    p = tmp_path / "slo.yaml"
    p.write_text("version: 1\nslos: [\n  - a: b\n")
    with pytest.raises(SloSpecError, match=r"slo.yaml:\d+: not valid YAML"):
        load_spec(p)


@pytest.mark.parametrize("text, seconds", [("5m", 300), ("1h30m", 5400), ("30d", 2592000), ("250ms", 0.25), (90, 90)])
def test_durations_round_trip(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("bad", ["", "5", "m5", "5x", "1h 5m", True, -1])
def test_bad_durations(bad):
    with pytest.raises(DurationError):
        parse_duration(bad)
