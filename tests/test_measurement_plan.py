"""Measurement plans (docs/plans.md): fixture plans with the exact problems, each at its line; hostile
files refused as one-line errors; any document checked without a crash; the editor schema, the event
contract and docs/events.md held together."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import given

from contract.events import ALL_EVENTS, event_fields, event_schema
from fuzz_support import FUZZ, HOSTILE_FILES, assert_hostile_file_is_reader_error, delete_at, documents, paths, set_at
from toolkit.analysis.measurement_plan import (DIRECTIONS, STATISTICS, UNITS, PlanCheck, PlanFileError, check_plan,
                                               check_plan_file, plan_template)
from toolkit.drills.launch import load_launches
from toolkit.slo.yaml_file import Located, load_yaml_file_located

ROOT = Path(__file__).resolve().parents[1]
PLANS = Path(__file__).parent / "fixtures" / "plans"
SCHEMA = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())


def _found(result: PlanCheck) -> list[tuple[int, str, str, str]]:
    return [(p.line, p.where, p.code, p.kind) for p in result.problems]


def test_a_complete_plan_passes_with_one_note_about_a_field_only_async_has():
    result = check_plan_file(PLANS / "good.yaml")
    assert result.ok
    assert result.lines() == [
        f"{PLANS / 'good.yaml'}:19: secondary[0].value.field: note: queue_wait_ms is on only some transcode_started "
        "events (docs/events.md): the segment and the baseline must be traffic that has it"]
    assert [(m.role, m.name, m.statistic) for m in result.plan.metrics] == [
        ("primary", "publish success rate", "ratio"), ("secondary", "p95 transcode queue wait", "p95"),
        ("secondary", "transcode failure rate", "ratio"), ("guardrail", "p99 processing latency", "p99"),
        ("guardrail", "publish timeout rate", "ratio")]
    assert [(s.percent, s.duration_s) for s in result.plan.stages] == [(1, 1800), (5, 1800), (25, 3600), (100, None)]
    assert result.plan.rollback_when == ("p99 processing latency", "publish timeout rate")


def test_vague_definitions_are_flagged_at_their_lines():
    result = check_plan_file(PLANS / "vague.yaml")
    assert not result.ok
    assert _found(result) == [
        (6, "primary", "vague_statistic", "vague"),
        (6, "primary", "improves_without_baseline", "vague"),
        (14, "secondary[0]", "no_denominator", "vague"),
        (23, "guardrails[0]", "vague_value", "vague"),
        (23, "guardrails[0]", "no_segment", "vague"),
        (23, "guardrails[0]", "no_threshold", "vague"),
        (33, "slo[0]", "vague_latency_slo", "vague"),
        (38, "alerts[0]", "no_for", "vague"),
        (45, "rollout.stages[0]", "no_duration", "vague"),
        (47, "rollout.rollback", "no_consecutive", "vague"),
        (48, "rollout.rollback.when[0]", "no_threshold", "error"),
    ]
    text = "\n".join(result.lines())
    src = PLANS / "vague.yaml"
    assert (f"{src}:6: primary: vague: 'latency' names a kind of metric, not a metric: say which statistic "
            "(ratio, count, mean, max, p50, p75, p90, p95, p99, p99.9)") in text
    assert f"{src}:6: primary: vague: 'latency' says 'improves' but has no baseline: improves compared with what?" in text
    assert f"{src}:14: secondary[0]: vague: 'success' is a ratio with no denominator: out of what?" in text
    assert (f"{src}:23: guardrails[0]: vague: 'p99 processing latency': p99 which latency? name a start and an end "
            "event of an attempt (latency: {from, to}) or a numeric field (value: {event, field})") in text


def test_metrics_the_events_cannot_compute_are_errors_at_their_lines():
    result = check_plan_file(PLANS / "uncomputable.yaml")
    assert _found(result) == [
        (9, "primary.numerator", "numerator_outside_denominator", "error"),
        (12, "primary.segment.region", "unknown_value", "error"),
        (19, "secondary[0].value.field", "field_not_on_event", "error"),
        (24, "secondary[1]", "undeclared_event", "error"),
        (24, "secondary[1]", "undeclared_event", "error"),
        (27, "secondary[1].denominator.events[1]", "rejected_in_denominator", "error"),
        (36, "guardrails[0].latency.to", "reversed", "error"),
        (44, "guardrails[1].numerator.where.error_class", "unknown_value", "error"),
        (50, "guardrails[1].threshold.unit", "unit_mismatch", "error"),
        (53, "guardrails[2].value.event", "unknown_event", "error"),
        (61, "events[0].fields[1]", "field_not_on_event", "error"),
        (65, "slo[0].metric", "unknown_metric", "error"),
        (72, "alerts[0].metric", "burn_rate_needs_ratio", "error"),
        (73, "alerts[0].burn_rate.short", "short_not_shorter", "error"),
        (78, "rollout.stages[1].percent", "not_increasing", "error"),
        (79, "rollout.stages[2]", "never_full", "error"),
        (81, "rollout.rollback.when", "guardrail_not_watched", "note"),
        (81, "rollout.rollback.when", "guardrail_not_watched", "note"),
        (81, "rollout.rollback.when", "guardrail_not_watched", "note"),
        (81, "rollout.rollback.when[0]", "no_threshold", "error"),
    ]
    by_line = {p.line: p.message for p in result.problems}
    assert by_line[19] == ("transcode_completed carries no field 'queue_wait_ms' (its numeric fields: duration_ms)")
    assert by_line[36] == "upload_started comes before publish_succeeded in an attempt: from and to are swapped"
    assert by_line[53].startswith("'feed_served' is not an event of the event contract: nothing emits it")
    assert by_line[65] == "no metric 'publish success' in this plan (did you mean 'publish success rate'?)"
    assert by_line[44] == ("error_class is never 'timeouts' (the contract's values: timeout, dependency_unavailable, "
                           "storage, internal, chunk_missing)")
    assert by_line[27].startswith("upload_rejected is a refused request, not an attempt")


def test_a_blank_field_of_the_template_counts_as_missing_and_a_repeated_key_is_flagged(tmp_path):
    f = tmp_path / "plan.yaml"
    good = (PLANS / "good.yaml").read_text()
    f.write_text(good.replace("  window: 10m\n", "  window:\n  window: 10m\n", 1)
                 .replace("    threshold: {change: 20, unit: \"%\"}\n", "    threshold:\n", 1))
    result = check_plan_file(f)
    assert [(p.line, p.where, p.code) for p in result.problems if p.kind != "note"] == [
        (12, "primary.window", "duplicate_key"),
        (35, "guardrails[0]", "no_threshold"),
        (87, "rollout.rollback.when[0]", "no_threshold"),
    ]


def test_a_missing_events_declaration_names_what_each_metric_reads(tmp_path):
    f = tmp_path / "plan.yaml"
    f.write_text((PLANS / "good.yaml").read_text().replace(
        "  - {event: transcode_started, fields: [transcode_mode, queue_wait_ms]}\n",
        "  - {event: transcode_started, fields: [transcode_mode]}\n"))
    result = check_plan_file(f)
    assert [p.render(str(f)) for p in result.problems if p.kind == "error"] == [
        f"{f}:17: secondary[0]: 'p95 transcode queue wait' reads transcode_started.queue_wait_ms, which `events` "
        "does not list under transcode_started"]


@pytest.mark.parametrize("launch_id", sorted(load_launches()))
def test_the_template_of_every_launch_brief_fills_in_no_answer(tmp_path, launch_id):
    launch = load_launches()[launch_id]
    text = plan_template(launch.id, launch.change["flag"], launch.change["variant"], launch.change["control"],
                         launch.briefing)
    f = tmp_path / "plan.yaml"
    f.write_text(text)
    result = check_plan_file(f)
    # Every metric and section is asked for, nothing is wrong yet: the learner's answers are all missing.
    assert not result.ok and result.plan.change == launch.change
    assert {p.code for p in result.problems} >= {"vague_statistic", "no_window", "no_segment", "no_baseline",
                                                 "no_threshold", "missing_events", "missing_slo", "missing_alerts",
                                                 "no_stages"}
    assert not [p for p in result.problems if p.code.startswith("unknown")]
    # The regression's signals are the answer: no event or field of theirs is in the skeleton.
    for s in launch.signals:
        for name in (s.latency or ()) + (s.value or ()) + s.events:
            assert name not in text, (name, launch_id)


@pytest.mark.parametrize("content, where, what", HOSTILE_FILES)
def test_hostile_plan_files_are_one_line_errors_naming_file_and_line(tmp_path, content, where, what):
    assert_hostile_file_is_reader_error(check_plan_file, PlanFileError, tmp_path / "plan.yaml", content, where, what)


def test_an_empty_plan_says_where_to_start(tmp_path):
    f = tmp_path / "plan.yaml"
    f.write_text("# nothing yet\n")
    assert check_plan_file(f).lines() == [
        f"{f}:1: (document): the plan is empty: start from `obslab plan template BRIEF`"]


GOOD = yaml.safe_load((PLANS / "good.yaml").read_text())
GOOD_PATHS = [p for p in paths(GOOD) if p]


def _check_any(doc) -> PlanCheck:
    result = check_plan(Located(doc, {(): 1}), source="fuzz.yaml")
    for p in result.problems:
        assert p.line >= 1 and "\n" not in p.render("fuzz.yaml") and len(p.message) < 400, p
    return result


@FUZZ
@given(documents)
def test_any_document_is_checked_without_a_crash(doc):
    result = _check_any(doc)
    assert not result.ok


MANGLED = [None, "", 0, -1, True, "nope", [], {}, [1], {"a": 1}, float("nan")]


def test_every_field_of_a_good_plan_mangled_or_deleted_gives_problems_not_a_crash():
    for path in GOOD_PATHS:
        for value in MANGLED:
            doc = copy.deepcopy(GOOD)
            set_at(doc, path, value)
            try:
                _check_any(doc)
            except Exception as e:  # noqa: BLE001 - say which mutation broke the checker
                raise AssertionError(f"{path} = {value!r}: {type(e).__name__}: {e}") from e
        doc = copy.deepcopy(GOOD)
        delete_at(doc, path)
        _check_any(doc)


def test_lines_point_into_the_file_for_every_problem_of_a_mangled_plan(tmp_path):
    f = tmp_path / "plan.yaml"
    text = (PLANS / "uncomputable.yaml").read_text()
    f.write_text(text)
    n = len(text.splitlines())
    assert all(1 <= p.line <= n for p in check_plan_file(f).problems)


# -- the editor schema, the contract and the docs, held together ----------------------------------------------

def test_the_editor_schema_accepts_the_good_plan_and_rejects_the_vague_one():
    validator = jsonschema.Draft7Validator(SCHEMA)
    assert list(validator.iter_errors(GOOD)) == []
    vague = yaml.safe_load((PLANS / "vague.yaml").read_text())
    assert {tuple(e.absolute_path) for e in validator.iter_errors(vague)} >= {("primary",), ("secondary", 0)}


def test_the_editor_schema_names_what_the_checker_accepts():
    metric = SCHEMA["definitions"]["metric"]["properties"]
    assert metric["statistic"]["enum"] == list(STATISTICS)
    assert metric["direction"]["enum"] == list(DIRECTIONS)
    assert SCHEMA["definitions"]["threshold"]["properties"]["unit"]["enum"] == list(UNITS)
    assert SCHEMA["definitions"]["event"]["enum"] == list(ALL_EVENTS) == event_schema()["properties"]["event"]["enum"]


def test_the_fields_of_each_event_are_those_docs_events_lists():
    text = (ROOT / "docs" / "events.md").read_text()
    body = text.split("<!-- events:begin -->")[1].split("<!-- events:end -->")[0]
    common = set(event_schema()["required"])
    for row in re.findall(r"^\| `([a-z_]+)` \|.*\| (.*) \|$", body, flags=re.M):
        event, extra = row
        documented = {f for f in re.findall(r"`([a-z_]+)`", extra) if f in event_schema()["properties"]}
        assert event_fields(event) - common == documented - common, event


def test_located_yaml_gives_the_line_of_every_key_and_item(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("a:\n  b: 1\n  c:\n    - x\n    - {d: 2}\n")
    doc = load_yaml_file_located(f, ValueError)
    assert doc.data == {"a": {"b": 1, "c": ["x", {"d": 2}]}}
    assert doc.lines == {(): 1, ("a",): 1, ("a", "b"): 2, ("a", "c"): 3, ("a", "c", 0): 4, ("a", "c", 1): 5,
                         ("a", "c", 1, "d"): 5}
    assert doc.line(("a", "c", 1, "missing")) == 5


# -- the command line, through the console script ------------------------------------------------------------

OBSLAB = str(Path(sys.executable).parent / "obslab")


def obslab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([OBSLAB, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd,
                          stdin=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "250"})


def test_cli_check_passes_a_good_plan_and_fails_a_vague_one_with_file_and_line():
    ok = obslab("plan", "check", PLANS / "good.yaml")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().splitlines()[-1] == "ok: 5 metrics, each computable from the events and defined (1 note)"
    bad = obslab("plan", "check", PLANS / "vague.yaml")
    assert bad.returncode == 1, bad.stderr
    lines = bad.stdout.strip().splitlines()
    assert lines[0] == (f"{PLANS / 'vague.yaml'}:6: primary: vague: 'latency' names a kind of metric, not a metric: "
                        "say which statistic (ratio, count, mean, max, p50, p75, p90, p95, p99, p99.9)")
    assert lines[-1] == f"1 errors, 10 vague definitions, 0 notes in {PLANS / 'vague.yaml'} (3 metrics read; docs/plans.md)"


def test_cli_check_json_lists_every_problem():
    r = obslab("plan", "check", PLANS / "uncomputable.yaml", "--format", "json")
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert data["schema"] == "obslab.plan-check/v1" and data["ok"] is False
    assert data["counts"] == {"error": 17, "vague": 0, "note": 3}
    assert data["problems"][0] == {"line": 9, "where": "primary.numerator", "code": "numerator_outside_denominator",
                                   "message": "the numerator counts 'cancelled' attempts the denominator does not: "
                                              "the ratio could pass 100 %", "kind": "error"}


def test_cli_check_of_an_unreadable_plan_is_a_one_line_usage_error(tmp_path):
    f = tmp_path / "plan.yaml"
    f.write_text("a: &x [*x]\n")
    r = obslab("plan", "check", f)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == f"error: {f}:1: not valid YAML: YAML anchors (&x) are not allowed in this file"
    assert obslab("plan", "check", tmp_path / "missing.yaml").returncode == 2


def test_cli_template_writes_a_skeleton_then_refuses_to_overwrite_it(tmp_path):
    out = tmp_path / "plan.yaml"
    r = obslab("plan", "template", "async-transcode-launch", "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.read_text().startswith("# Measurement plan for the launch async-transcode-launch")
    assert "change: {flag: transcode_mode, variant: async, control: sync}" in out.read_text()
    again = obslab("plan", "template", "async-transcode-launch", "-o", out)
    assert again.returncode == 2 and "exists; not overwriting your plan" in again.stderr
    check = obslab("plan", "check", out)
    assert check.returncode == 1 and "rollout.stages: no stages" in check.stdout
    unknown = obslab("plan", "template", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == ("error: unknown launch brief 'nope' (known: async-transcode-launch, "
                                      "storage-client-launch)")


def test_the_example_plan_of_docs_plans_md_passes_the_check(tmp_path):
    text = (ROOT / "docs" / "plans.md").read_text()
    example = next(b for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.S) if b.startswith("version: 1"))
    f = tmp_path / "plan.yaml"
    f.write_text(example)
    result = check_plan_file(f)
    assert result.ok and not result.problems, result.lines()


def test_a_plan_for_a_known_brief_must_plan_that_brief_s_change(tmp_path):
    launches = {"async-transcode-launch": {"flag": "transcode_mode", "variant": "async", "control": "sync"}}
    assert check_plan_file(PLANS / "good.yaml", launches=launches).ok
    f = tmp_path / "plan.yaml"
    text = (PLANS / "good.yaml").read_text()
    f.write_text(text.replace("change: {flag: transcode_mode, variant: async, control: sync}",
                              "change: {flag: transcode_mode, variant: sync, control: async}"))
    assert [p.render("plan.yaml") for p in check_plan_file(f, launches=launches).problems if p.kind == "error"] == [
        "plan.yaml:4: change.control: the brief async-transcode-launch changes transcode_mode (async against sync): "
        "control is 'sync', not 'async'",
        "plan.yaml:4: change.variant: the brief async-transcode-launch changes transcode_mode (async against sync): "
        "variant is 'async', not 'sync'"]
    f.write_text(text.replace("launch: async-transcode-launch", "launch: async-transcode"))
    assert [p.render("plan.yaml") for p in check_plan_file(f, launches=launches).problems if p.kind == "error"] == [
        "plan.yaml:3: launch: no launch brief 'async-transcode' (did you mean 'async-transcode-launch'?) (the briefs: "
        "async-transcode-launch)"]


def test_cli_lists_the_launch_briefs():
    r = obslab("plan", "list")
    assert r.returncode == 0, r.stderr
    assert "async-transcode-launch" in r.stdout and "transcode_mode: async (control sync)" in r.stdout


def test_a_segment_that_keeps_only_the_variant_leaves_the_control_baseline_without_traffic(tmp_path):
    f = tmp_path / "plan.yaml"
    f.write_text((PLANS / "good.yaml").read_text().replace(
        "    latency: {from: upload_completed, to: publish_succeeded}\n    window: 5m\n    segment: all\n",
        "    latency: {from: upload_completed, to: publish_succeeded}\n    window: 5m\n"
        "    segment: {flags.transcode_mode: async}\n"))
    assert [p.render("plan.yaml") for p in check_plan_file(f).problems if p.kind == "error"] == [
        "plan.yaml:38: guardrails[0].segment.'flags.transcode_mode': the segment keeps only transcode_mode='async', "
        "so the control arm (sync) has no traffic in it: baseline `control` compares the arms by itself, leave the "
        "flag out of the segment"]


def test_cli_run_refuses_a_plan_that_does_not_pass_the_check_before_touching_the_lab(tmp_path):
    r = obslab("plan", "run", PLANS / "vague.yaml", "--data-dir", tmp_path, "--url", "http://127.0.0.1:9")
    assert r.returncode == 1
    assert f"{PLANS / 'vague.yaml'}:6: primary: vague: 'latency'" in r.stdout
    assert r.stderr.strip() == (f"error: {PLANS / 'vague.yaml'} does not pass `obslab plan check`: fix it before "
                                "the launch")
    assert not (tmp_path / "launches").exists()
