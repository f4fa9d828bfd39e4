"""Launch briefs (kind: launch, docs/plans.md): the shipped ones are valid and keep their answer out of the
briefing; bad ones name the file and field; a plan's coverage of a launch's signals."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from toolkit.analysis.measurement_plan import check_plan_file
from toolkit.drills.launch import launches_dir, load_launch, load_launches, parse_launch, plan_coverage
from toolkit.drills.launch_load import LAB_USER_CAP
from toolkit.drills.schema import DrillSpecError, load_catalogue

PLANS = Path(__file__).parent / "fixtures" / "plans"
BRIEFS = sorted(launches_dir().glob("*.yaml"))


@pytest.mark.parametrize("path", BRIEFS, ids=lambda p: p.stem)
def test_every_shipped_launch_brief_is_valid_and_keeps_its_answer_out_of_the_briefing(path):
    launch = load_launch(path)
    assert launch.id == path.stem and launch.signals and launch.stronger_plan
    assert launch.stages[-1][0] == 100
    words = set(re.findall(r"[a-z_]+", launch.briefing.lower()))
    for signal in launch.signals:
        for name in (signal.latency or ()) + (signal.value or ()) + signal.events + signal.outcomes:
            assert name not in words, (name, "the briefing names a signal of the regression")
    # The component a launch changes is in its brief (the transcoder, the storage client); what goes wrong is not.
    assert launch.regression.kind not in words


def test_launch_briefs_are_not_incident_drills():
    assert len(BRIEFS) >= 2
    assert not set(load_launches()) & set(load_catalogue())


def _doc() -> dict:
    return yaml.safe_load((launches_dir() / "async-transcode-launch.yaml").read_text())


@pytest.mark.parametrize("path, value, message", [
    (("change", "control"), "async", "change.control: must differ from the variant"),
    (("kind",), "incident", "kind: expected one of launch, got 'incident'"),
    (("signals", 0, "latency", "to"), "upload_started",
     "signals[0].latency.to: must come after upload_completed in an attempt"),
    (("signals", 1, "value", "field"), "queue_depth",
     "signals[1].value.field: expected one of queue_wait_ms, got 'queue_depth'"),
    (("regression", "duration"), "7m", "regression.duration: the regression would outlast the launch (setup.duration)"),
    (("rollout", 1, "percent"), 5, "rollout[1]: stages must grow in percent and come later in time"),
])
def test_a_bad_launch_brief_names_the_file_and_field(path, value, message):
    doc = _doc()
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(DrillSpecError) as e:
        parse_launch(doc, source="async-transcode-launch.yaml")
    assert str(e.value) == f"async-transcode-launch.yaml: {message}"


def test_coverage_says_which_guardrail_catches_the_regression_and_what_only_a_secondary_sees():
    plan = check_plan_file(PLANS / "good.yaml").plan
    coverage = {c.signal: c for c in plan_coverage(plan, load_launches()["async-transcode-launch"])}
    latency = coverage["processing latency to publish (upload_completed → publish_succeeded)"]
    assert latency.verdict == "caught" and latency.rolls_back == ("p99 processing latency",)
    queue = coverage["time a transcode job waits in the queue"]
    assert queue.verdict == "seen" and queue.watched_by == (("p95 transcode queue wait", "secondary"),)
    other = plan_coverage(plan, load_launches()["storage-client-launch"])
    assert [c.verdict for c in other] == ["missed", "missed", "missed"]


def test_a_duration_field_watches_the_latency_of_its_phase(tmp_path):
    text = (PLANS / "good.yaml").read_text().replace(
        "    latency: {from: upload_completed, to: publish_succeeded}\n",
        "    value: {event: publish_succeeded, field: duration_ms}\n")
    f = tmp_path / "plan.yaml"
    f.write_text(text)
    result = check_plan_file(f)
    assert result.ok, result.lines()
    coverage = plan_coverage(result.plan, load_launches()["async-transcode-launch"])
    assert coverage[0].rolls_back == ("p99 processing latency",)
    # upload_completed.duration_ms is the upload phase, not processing: it does not watch this signal.
    g = tmp_path / "other.yaml"
    g.write_text(text.replace("value: {event: publish_succeeded, field: duration_ms}",
                              "value: {event: upload_completed, field: duration_ms}"))
    assert plan_coverage(check_plan_file(g).plan, load_launches()["async-transcode-launch"])[0].verdict == "missed"


def test_starting_a_launch_brief_as_an_incident_drill_points_to_its_plan():
    from toolkit.drills.schema import find_drill

    with pytest.raises(DrillSpecError) as e:
        find_drill("async-transcode-launch")
    assert str(e.value) == ("async-transcode-launch is a launch exercise, not an incident drill: write its "
                            "measurement plan with `obslab plan template async-transcode-launch` (docs/plans.md)")
    with pytest.raises(DrillSpecError, match=r"unknown drill 'nope'"):
        find_drill("nope")


def test_the_launch_report_sets_the_plan_s_verdicts_beside_the_engine_s_figures_per_stage(tmp_path):
    from datetime import timedelta

    from toolkit.analysis.compare import load_attempts
    from toolkit.drills.launch_report import StageWindow, launch_report, render_launch_report
    from toolkit.events.synth import Effect, SynthConfig, generate, write_jsonl

    # Half the attempts async; from minute 10 the async arm's processing is three times slower.
    cfg = SynthConfig(attempts=4000, duration_s=1200, async_share=0.5, synthetic_share=1.0,
                      effects=(Effect(where={"transcode_mode": "async"}, start_s=600, latency_factor=3.0),))
    events = write_jsonl(generate(cfg, seed=3), tmp_path / "events.jsonl")
    attempts, _ = load_attempts([events])
    t0 = cfg.start.replace(tzinfo=None)
    stages = [StageWindow(25, t0, t0 + timedelta(seconds=600)),
              StageWindow(100, t0 + timedelta(seconds=600), t0 + timedelta(seconds=1200))]
    plan = check_plan_file(PLANS / "good.yaml").plan
    report = launch_report(attempts, load_launches()["async-transcode-launch"], plan, stages, source=str(events))
    latency, queue = report["signals"]
    assert latency["verdict"] == "caught" and latency["rolls_back"] == ["p99 processing latency"]
    p95 = {f["stage_percent"]: f for f in latency["figures"] if f["metric"] == "processing_latency_p95"}
    assert not p95[25]["failed"] and p95[100]["failed"] and latency["moved"] and latency["judged"]
    assert p95[100]["reason"].startswith("+") and "rose beyond the allowed" in p95[100]["reason"]
    assert queue["verdict"] == "seen" and queue["engine_metrics"] == [] and queue["figures"] == []
    assert [s["percent"] for s in report["stages"]] == [25, 100]
    assert all(s["control_attempts"] > 500 and s["treatment_attempts"] > 500 for s in report["stages"])
    md = render_launch_report(report)
    assert "**caught: a rollback guardrail watches it**" in md
    assert "the engine computes no figure for this signal yet" in md
    assert "no stage had enough data" not in md
    assert "## What a stronger plan watches" in md


@pytest.mark.slow
def test_a_launch_runs_against_the_real_service_and_reports_what_the_plan_caught(service, tmp_path):
    """`obslab plan run` end to end: the flag moves through the brief's stages, the regression is applied
    and removed without an audit event, and the report quotes the engine's figures per stage."""
    import json
    import os
    import subprocess
    import sys

    obslab = str(Path(sys.executable).parent / "obslab")
    proc = subprocess.run([obslab, "plan", "run", str(PLANS / "good.yaml"), "--data-dir", str(service.data_dir),
                           "--url", service.base_url, "--speed", "10", "--seed", "3"],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "# Launch report: Moving transcoding onto a queue" in proc.stdout
    run_dir = next((service.data_dir / "launches").glob("*-async-transcode-launch"))
    report = json.loads((run_dir / "report" / "report.json").read_text())
    stages = report["stages"]
    assert [s["percent"] for s in stages] == [5, 25, 100]
    assert [s["verdict"] for s in report["signals"]] == ["caught", "seen"]
    latency = report["signals"][0]
    # The load was raised for the stages below 100 % (the plan's guardrails need more than the lab carries:
    # capped) and held through 100 %, and every stage had enough data to compare the regression's primary signal.
    assert [s["load"]["users"] for s in stages] == [LAB_USER_CAP] * 3
    assert [s["load"]["capped"] for s in stages] == [True, True, False]
    counts = [(s["percent"], s["treatment_attempts"], s["treatment_users"]) for s in stages]
    assert latency["judged_stages"] == [5, 25, 100], (counts, latency["figures"])
    # Per stage, each plan metric says whether it was evaluable; the p99 guardrail cannot get its 1,000
    # values per arm at 5 % and falls back to the judge's absolute limit, saying so; the timeout-rate
    # guardrail states its power at the stage's counts.
    rows = {r["metric"]: r for r in stages[0]["plan_metrics"]}
    assert rows["publish success rate"]["evaluable"]
    p99 = rows["p99 processing latency"]
    assert not p99["evaluable"] and p99["fallback"] == ["processing_latency_p99"]
    assert "needs 1,000 values per arm" in p99["power_note"] and "absolute limit instead" in p99["power_note"]
    assert 0 < rows["publish timeout rate"]["power"] < 1
    md = (run_dir / "report" / "report.md").read_text()
    assert "absolute-threshold fallback (processing_latency_p99)" in md and "power " in md
    assert oct((run_dir / "truth.json").stat().st_mode & 0o777) == "0o600"
    # Everything the launch set is gone; its flag changes are audited, its regression is not.
    assert service.admin("GET", "/admin/faults").json()["faults"] == []
    flags = {f["name"]: f for f in service.admin("GET", "/admin/flags").json()["flags"]}
    assert flags["transcode_mode"]["rollout"] == {}
    audit = service.events(lambda e: e["event"] in ("fault_changed", "flag_changed"))
    assert not [e for e in audit if e["event"] == "fault_changed"]
    assert [e["change"]["new"]["rollout"] for e in audit if e["event"] == "flag_changed"
            and e["change"]["action"] == "put"][:3] == [{"async": 5.0}, {"async": 25.0}, {"async": 100.0}]
