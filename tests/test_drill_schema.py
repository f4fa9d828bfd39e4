"""Drill specs: every catalogue file is valid, and bad files name the file and field."""

import copy

import pytest
import yaml

from toolkit.drills.causes import CAUSES
from toolkit.drills.schema import (DrillSpecError, catalogue_dir, find_drill, load_catalogue, load_drill,
                                   parse_drill)

CATALOGUE = sorted(catalogue_dir().glob("*.yaml"))
REQUIRED_DRILLS = {
    "transcoder-tail-latency", "cellular-chunk-failures", "retry-storm", "bad-canary",
    "regional-storage-outage", "cache-regression", "silent-instrumentation-loss",
    "cancellation-definition-trap", "async-migration", "memory-growth",
}


def _doc(name="regional-storage-outage"):
    return yaml.safe_load((catalogue_dir() / f"{name}.yaml").read_text())


@pytest.mark.parametrize("path", CATALOGUE, ids=lambda p: p.stem)
def test_every_catalogue_drill_is_valid(path):
    drill = load_drill(path)
    assert drill.id == path.stem
    if drill.kind == "experiment":  # a verdict and its evidence, not a cause (tests/test_drill_experiments.py)
        assert drill.truth.verdict in drill.questions.verdict_choices and drill.hints and drill.debrief.evidence_path
        return
    if drill.kind == "rollout":  # a call at each stage (tests/test_drill_rollout.py)
        assert drill.rollout.stages[-1] == 100 and drill.hints and drill.debrief.evidence_path
        assert drill.setup.duration_s == drill.rollout.bound_s()
        return
    assert drill.truth.cause in drill.questions.cause_choices
    assert set(drill.truth.cohort) <= set(drill.questions.cohort_dimensions)
    assert drill.hints and drill.debrief.evidence_path
    lo, hi = drill.fault.window_s
    assert 0 <= lo <= hi and hi + drill.fault.duration_s <= drill.setup.duration_s


def test_catalogue_has_the_ten_issue_drills_with_distinct_causes():
    drills = load_catalogue()
    assert REQUIRED_DRILLS <= set(drills)
    assert len({d.truth.cause for d in drills.values()}) >= 10
    assert all(c in CAUSES for d in drills.values() for c in d.questions.cause_choices)


def test_briefing_does_not_spoil_the_cause_label():
    for drill in load_catalogue().values():
        assert drill.truth.cause not in drill.briefing


def test_find_drill_unknown_lists_known_ids():
    with pytest.raises(DrillSpecError, match=r"unknown drill 'nope' \(known: .*retry-storm"):
        find_drill("nope")


def _set(doc, path, value):
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value


_DELETE = object()


@pytest.mark.parametrize("path, value, message", [
    (("difficulty",), "expert", "difficulty: expected one of beginner, intermediate, advanced, got 'expert'"),
    (("fault", "kind"), "meteor", "fault.kind: expected one of latency"),
    (("fault", "target"), "event_sink", "fault.target: a errors fault cannot target event_sink"),
    (("fault", "selector", "region"), "mars", "fault.selector.region: expected one of us-east"),
    (("fault", "selector", "planet"), "x", "fault.selector.planet: expected one of region"),
    (("fault", "params"), {"latency_ms": 5}, "fault.params.latency_ms: a errors fault takes no parameter 'latency_ms' (it takes: none)"),
    (("fault", "selector", "percentage"), 150, "fault.selector.percentage: must be in [0, 100], got 150"),
    (("fault", "when", "window"), ["4m", "2m"], "fault.when.window[1]: must not be before window[0] (4m)"),
    (("fault", "when", "window"), "3m", "fault.when.window: expected [earliest, latest] start"),
    (("fault", "when", "duration"), "9m", "fault.when.duration: a fault starting as late as 4m and lasting 9m ends after the drill"),
    (("fault", "when", "duration"), "soon", "fault.when.duration: expected a duration"),
    (("setup", "load", "users"), 0, "setup.load.users: must be in [1, 500], got 0"),
    (("setup", "load", "shape"), "zigzag", "setup.load.shape: expected one of steady, phased, spike"),
    (("setup", "flags"), {"release": {"variant": "beta"}}, "setup.flags.release.variant: expected one of stable, canary"),
    (("setup", "duration"), _DELETE, "setup.duration: required field is missing"),
    (("truth", "cause"), "memory_leak", "truth.cause: expected one of storage_outage"),
    (("truth", "cohort"), {"region": "moon"}, "truth.cohort.region: expected one of us-east"),
    (("truth", "cohort"), {"transcode_mode": "async"}, "truth.cohort.transcode_mode: expected one of region, app_version"),
    (("questions", "cause", "choices"), ["storage_outage", "x", "y"], "questions.cause.choices[1]: expected one of"),
    (("questions", "cause", "choices"), ["storage_outage"], "questions.cause.choices: expected a list of at least 3 causes"),
    (("questions", "cause", "partial"), {"storage_outage": 0.5}, "questions.cause.partial: gives partial credit to the true cause"),
    (("questions", "impact", "metric"), "vibes", "questions.impact.metric: expected one of failed_publishes"),
    (("hints",), [], "hints: expected a non-empty list"),
    (("debrief", "evidence_path"), [{"a": "b"}], "debrief.evidence_path[0]: expected a non-empty string"),
    (("surprise",), 1, "surprise: unknown field (allowed: "),
    (("id",), "Regional Outage", "id: expected lowercase words joined by '-'"),
])
def test_bad_drill_names_file_and_field(path, value, message):
    doc = _doc()
    _set(doc, path, value)
    with pytest.raises(DrillSpecError) as err:
        parse_drill(copy.deepcopy(doc), source="catalogue/regional-storage-outage.yaml")
    assert str(err.value).startswith("catalogue/regional-storage-outage.yaml: ")
    assert message in str(err.value)


def test_id_must_match_file_name(tmp_path):
    path = tmp_path / "other-name.yaml"
    path.write_text(yaml.safe_dump(_doc()))
    with pytest.raises(DrillSpecError, match=r"other-name.yaml: id: 'regional-storage-outage' does not match"):
        load_drill(path)


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("id: broken\ntitle: [unclosed\n")
    with pytest.raises(DrillSpecError, match=r"broken.yaml:\d+: not valid YAML"):
        load_drill(path)


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(DrillSpecError, match=r"nothing.yaml: cannot read"):
        load_drill(tmp_path / "nothing.yaml")


def test_background_fault_is_validated():
    doc = _doc("silent-instrumentation-loss")
    doc["setup"]["background_faults"][0]["kind"] = "cache_off"
    doc["setup"]["background_faults"][0].pop("selector")
    with pytest.raises(DrillSpecError, match=r"setup.background_faults\[0\].target: a cache_off fault cannot target transcoder"):
        parse_drill(doc, source="drill")


def test_fault_params_are_range_checked():
    doc = _doc("transcoder-tail-latency")
    doc["fault"]["params"]["latency_ms"] = 90_000
    with pytest.raises(DrillSpecError, match=r"drill: fault.params.latency_ms: must be in \[0, 60000\], got 90000"):
        parse_drill(doc, source="drill")


def test_fault_start_is_inside_the_window():
    drill = find_drill("retry-storm")
    lo, hi = drill.fault.window_s
    assert drill.fault.start_at(0.0) == lo and drill.fault.start_at(0.999999) < hi
