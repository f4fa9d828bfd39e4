"""schemas/slo.schema.json, the editor schema of slo.yaml: it accepts the shipped spec and rejects every kind of
error the Python loader rejects that JSON Schema can express; the rest is listed, and checked to be loader-only."""

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from toolkit.slo.spec import SloSpecError, parse_spec

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "schemas" / "slo.schema.json"
DELETE = object()


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _spec():
    return yaml.safe_load((ROOT / "slo.yaml").read_text())


def _mutate(doc, path, value):
    d = copy.deepcopy(doc)
    target = d
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return d


def test_shipped_spec_validates_and_points_editors_at_the_schema(validator):
    assert list(validator.iter_errors(_spec())) == []
    first = (ROOT / "slo.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=schemas/slo.schema.json"
    assert (ROOT / "slo.yaml").parent.joinpath("schemas/slo.schema.json").is_file()


# One mutation per kind of error the loader rejects and JSON Schema can express.
EXPRESSIBLE = [
    ("not a mapping", (), None),
    ("unknown top-level field", ("owner",), "me"),
    ("missing version", ("version",), DELETE),
    ("wrong version", ("version",), 2),
    ("missing service", ("service",), DELETE),
    ("empty service", ("service",), "  "),
    ("bad abandon_after", ("abandon_after",), "ten minutes"),
    ("zero abandon_after", ("abandon_after",), "0s"),
    ("negative duration number", ("abandon_after",), -5),
    ("missing slos", ("slos",), DELETE),
    ("empty slos", ("slos",), []),
    ("slo not a mapping", ("slos", 0), "publish-success"),
    ("unknown slo field", ("slos", 0, "owner"), "me"),
    ("missing slo name", ("slos", 0, "name"), DELETE),
    ("bad kind", ("slos", 0, "kind"), "boolean"),
    ("objective 1", ("slos", 0, "objective"), 1),
    ("objective 0", ("slos", 0, "objective"), 0),
    ("objective as a string", ("slos", 0, "objective"), "0.99"),
    ("objective true", ("slos", 0, "objective"), True),
    ("bad period", ("slos", 0, "period"), "a month"),
    ("missing prometheus", ("slos", 0, "prometheus"), DELETE),
    ("ratio without events", ("slos", 0, "events"), DELETE),
    ("ratio with a threshold", ("slos", 0, "threshold"), "1s"),
    ("unknown events field", ("slos", 0, "events", "bad"), ["failed"]),
    ("unknown outcome", ("slos", 0, "events", "good"), ["published"]),
    ("empty outcome list", ("slos", 0, "events", "total"), []),
    ("outcome twice", ("slos", 0, "events", "total"), ["failed", "failed"]),
    ("ratio prometheus missing counter", ("slos", 0, "prometheus", "counter"), DELETE),
    ("ratio prometheus unknown field", ("slos", 0, "prometheus", "histogram"), "h"),
    ("ratio prometheus bad outcome", ("slos", 0, "prometheus", "total"), ["ok"]),
    ("latency with events", ("slos", 1, "events"), {"good": ["succeeded"], "total": ["succeeded"]}),
    ("latency without threshold", ("slos", 1, "threshold"), DELETE),
    ("bad latency kind", ("slos", 1, "latency"), "client"),
    ("bad threshold", ("slos", 1, "threshold"), "fast"),
    ("latency prometheus missing histogram", ("slos", 1, "prometheus", "histogram"), DELETE),
    ("latency prometheus unknown field", ("slos", 1, "prometheus", "counter"), "c"),
    ("non-positive bucket", ("slos", 1, "prometheus", "buckets"), [0, 1.0]),
    ("empty buckets", ("slos", 1, "prometheus", "buckets"), []),
    ("missing alerting", ("alerting",), DELETE),
    ("unknown alerting field", ("alerting", "routes"), []),
    ("empty windows", ("alerting", "windows"), []),
    ("bad severity", ("alerting", "windows", 0, "severity"), "critical"),
    ("window missing long", ("alerting", "windows", 0, "long"), DELETE),
    ("unknown window field", ("alerting", "windows", 0, "for"), "2m"),
    ("budget_consumed over 1", ("alerting", "windows", 0, "budget_consumed"), 1.5),
    ("burn_rate 0", ("alerting", "windows", 0, "burn_rate"), 0),
    ("missing profiles", ("profiles",), DELETE),
    ("missing prod profile", ("profiles", "prod"), DELETE),
    ("profile not a mapping", ("profiles", "lab"), 60),
    ("time_compression under 1", ("profiles", "lab", "time_compression"), 0.5),
    ("unknown profile field", ("profiles", "lab", "speed"), 2),
    ("bad scrape_interval", ("profiles", "prod", "scrape_interval"), "often"),
]

# Cross-field rules only the loader checks: JSON Schema compares no two values.
LOADER_ONLY = [
    ("burn rate arithmetic", ("alerting", "windows", 0, "burn_rate"), 10),
    ("threshold not a bucket bound", ("slos", 1, "threshold"), "2s"),
    ("good outcome not in total", ("slos", 0, "events", "good"), ["cancelled"]),
    ("duplicate SLO name", ("slos", 1, "name"), "publish-success"),
    ("periods differ", ("slos", 1, "period"), "7d"),
    ("short window not shorter", ("alerting", "windows", 0, "short"), "2h"),
    ("window compressed under two scrapes", ("profiles", "lab", "time_compression"), 3600),
    ("buckets not increasing", ("slos", 1, "prometheus", "buckets"), [1.0, 0.5]),
]


@pytest.mark.parametrize("what, path, value", EXPRESSIBLE, ids=[c[0] for c in EXPRESSIBLE])
def test_schema_rejects_what_the_loader_rejects(validator, what, path, value):
    doc = _mutate(_spec(), path, value) if path else value
    with pytest.raises(SloSpecError):
        parse_spec(doc)
    assert list(validator.iter_errors(doc)), f"the schema accepts a spec with {what}"


@pytest.mark.parametrize("what, path, value", LOADER_ONLY, ids=[c[0] for c in LOADER_ONLY])
def test_cross_field_rules_are_the_loaders_alone(validator, what, path, value):
    doc = _mutate(_spec(), path, value)
    with pytest.raises(SloSpecError):
        parse_spec(doc)
    assert list(validator.iter_errors(doc)) == [], f"{what} is now expressible: move it to EXPRESSIBLE"


def test_schema_accepts_what_the_loader_accepts(validator):
    """Optional fields left out and bare-number durations are valid for both."""
    doc = _spec()
    del doc["abandon_after"], doc["slos"][1]["prometheus"]["buckets"], doc["slos"][1]["latency"]
    doc["profiles"]["prod"].pop("scrape_interval")
    doc["slos"][0]["description"] = "x"
    doc["abandon_after"] = 600
    parse_spec(doc)
    assert list(validator.iter_errors(doc)) == []
