"""The solver and the report on seeded synthetic events (toolkit.events.synth) with a known injected effect.

These are the pure-analysis checks; the live drills against the real service are in
test_drill_lessons.py.
"""

import json
import re
from pathlib import Path

import pytest

from toolkit.drills.auto import diagnose, rank_cohorts, wilson_lower
from toolkit.drills.measure import Window, read_attempts
from toolkit.drills.report import build_report_data, write_report
from toolkit.drills.schema import find_drill
from toolkit.drills.state import RunDir, RunState, append_jsonl
from toolkit.slo.spec import load_spec
from toolkit.events.synth import Effect, SynthConfig, generate, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
SPEC = load_spec(ROOT / "slo.yaml")
DURATION = 600.0
FAULT = (200.0, 380.0)


def _events(tmp_path, effect_kwargs, attempts=4000, **cfg):
    config = SynthConfig(attempts=attempts, duration_s=DURATION, synthetic_share=1.0,
                         effects=(Effect(start_s=FAULT[0], end_s=FAULT[1], **effect_kwargs),), **cfg)
    table = generate(config, seed=11)
    events_dir = tmp_path / "events"
    events_dir.mkdir()
    write_jsonl(table, events_dir / "events.jsonl")
    start = config.start.timestamp()
    return events_dir, start


CASES = {
    # The service fails a publish whose chunks could not be stored with error_class chunk_missing.
    "regional-storage-outage": dict(effect=dict(where={"region": "eu-west"}, failure_rate=1.0,
                                                error_class="chunk_missing")),
    "bad-canary": dict(effect=dict(where={"release": "canary", "media_size_bucket": "large"}, failure_rate=0.8,
                                  error_class="internal"),
                       cfg=dict(canary_share=0.3, attempts=8000)),
    "transcoder-tail-latency": dict(effect=dict(where={"media_size_bucket": "large"}, latency_factor=6.0)),
    "cellular-chunk-failures": dict(effect=dict(where={"network_type": "4g"}, chunk_failure_rate=0.4)),
}


@pytest.mark.parametrize("drill_id", sorted(CASES))
def test_solver_ranks_the_injected_cause_and_cohort_first(tmp_path, drill_id):
    case = CASES[drill_id]
    events_dir, start = _events(tmp_path, case["effect"], **case.get("cfg", {}))
    drill = find_drill(drill_id)
    attempts = read_attempts(events_dir, abandon_after_s=SPEC.abandon_after_s)
    d = diagnose(drill, attempts, [], start, start + DURATION, SPEC)
    assert d.cause == drill.truth.cause, d.causes
    assert dict(d.cohort) == drill.truth.cohort, d.cohorts[:3]
    # The incident window found from the data overlaps the injected one.
    assert d.incident.start < start + FAULT[1] and d.incident.end > start + FAULT[0]


def test_wilson_lower_bound():
    assert wilson_lower(0, 10) == 0.0
    assert wilson_lower(10, 10) < 1.0
    assert wilson_lower(50, 100) == pytest.approx(0.4038, abs=1e-3)
    assert wilson_lower(5, 10) < wilson_lower(50, 100)  # fewer observations, less certainty


def test_everyone_ranks_first_when_no_cohort_stands_out(tmp_path):
    events_dir, start = _events(tmp_path, dict(where={}, failure_rate=0.5))
    attempts = read_attempts(events_dir, abandon_after_s=SPEC.abandon_after_s)
    scores = rank_cohorts(attempts, Window(start + FAULT[0], start + FAULT[1]), Window(start, start + FAULT[0]),
                          lambda a: a.outcome == "failed", ["region", "network_type", "media_size_bucket"])
    assert scores[0].cohort == {}


def _fake_run(tmp_path, drill_id, events_dir, start, answers):
    drills_dir = tmp_path / "drills"
    run = RunDir(drills_dir / "run-1")
    run.path.mkdir(parents=True)
    run.write_state(RunState(run_id="run-1", drill_id=drill_id, seed=5, speed=1.0, url="http://127.0.0.1:1",
                             data_dir=str(tmp_path), started_at=start, duration_s=DURATION))
    run.write_truth({"fault_start_s": FAULT[0], "fault_duration_s": FAULT[1] - FAULT[0],
                     "fault_applied_at": start + FAULT[0], "fault_removed_at": start + FAULT[1]})
    for kind, t in (("drill_started", 0), ("fault_applied", FAULT[0]), ("fault_removed", FAULT[1]),
                    ("drill_finished", DURATION)):
        append_jsonl(run.timeline_file, {"t": start + t, "kind": kind})
    for a in answers:
        append_jsonl(run.answers_file, a)
    return run


def test_report_numbers_and_files(tmp_path):
    events_dir, start = _events(tmp_path, CASES["regional-storage-outage"]["effect"])
    answer = {"cause": "storage_outage", "cohort": {"region": "eu-west"}, "impact": 5.0, "at_s": 260.0, "by": "t"}
    run = _fake_run(tmp_path, "regional-storage-outage", events_dir, start, [answer])
    data = build_report_data(run, SPEC)
    # The report's SLI over the fault window is the same count a direct SQL over the events gives.
    fs, fe = start + FAULT[0], start + FAULT[1]
    from toolkit.events.attempts import attempts as attempts_table
    from toolkit.events import load_events

    es = load_events([events_dir])
    attempts_table(es, abandon_after_s=SPEC.abandon_after_s)
    good, total = es.con.execute(f"""
        SELECT count(*) FILTER (WHERE outcome = 'succeeded'),
               count(*) FILTER (WHERE outcome IN ('succeeded', 'failed', 'abandoned'))
        FROM attempts WHERE epoch(ended_at) > {fs} AND epoch(ended_at) <= {fe}""").fetchone()
    assert data.sli_incident == (good, total)
    assert data.impact.value("failed_publishes") == total - good
    assert data.first_page_at is not None and fs <= data.first_page_at < fs + 60
    parts = {p.part: p for p in data.grade.parts}
    assert parts["cause"].points == 50 and parts["cohort"].points == 30
    assert data.grade.time_to_diagnose_s == pytest.approx(60.0)
    path = write_report(run, SPEC)
    md = path.read_text()
    for png in ("sli-burn.png", "latency.png", "cohorts.png"):
        assert (path.parent / png).stat().st_size > 10_000
        assert f"({png})" in md
    assert f"{good}/{total}" in md
    assert "## Debrief (STAR)" in md and "**Situation.**" in md and "**Result.**" in md
    assert re.search(r"Time to detect .*: \d+\.\d s of scenario time \(by the first alert\)", md)
    summary = json.loads((path.parent / "report.json").read_text())
    assert summary["schema"] == "obslab.drill-result/v1"  # what `obslab story` tells
    assert summary["drill"]["truth"]["cohort"] == {"region": "eu-west"}
    assert [p["part"] for p in summary["grade"]["parts"]] == ["cause", "cohort", "impact"]
    assert summary["measured_impact"] == data.impact.value("budget_spent_percent")
    from toolkit.analysis.story import write_story

    story = write_story(summary)
    assert f"Score {data.grade.total:g}/100" in story and "cohort region=eu-west" in story
    assert (summary["sli_fault_window"]["good"], summary["sli_fault_window"]["total"]) == (good, total)


def test_report_without_answers_scores_zero(tmp_path):
    events_dir, start = _events(tmp_path, CASES["transcoder-tail-latency"]["effect"])
    run = _fake_run(tmp_path, "transcoder-tail-latency", events_dir, start, [])
    data = build_report_data(run, SPEC)
    assert data.grade.total == 0 and data.grade.answers == 0
    assert data.impact.value("p99_processing_shift_ms") > 500
    md = write_report(run, SPEC).read_text()
    assert "not diagnosed" in md


def test_feed_p95_shift_is_measured_when_the_baseline_starts_with_the_drill():
    # The scheduler's first /metrics sample comes after the drill's start, so the baseline window
    # (start, fault) has no sample before it; the shift used to be None (cache-regression at --speed 10).
    from toolkit.drills.measure import MetricSample, measure_impact

    def sample(t, fast, slow):
        route = 'route="/v1/feed"'
        return MetricSample(t, {f'obslab_http_request_duration_seconds_bucket{{le="0.005",{route}}}': fast,
                                f'obslab_http_request_duration_seconds_bucket{{le="0.05",{route}}}': fast + slow,
                                f'obslab_http_request_duration_seconds_bucket{{le="+Inf",{route}}}': fast + slow})
    samples = [sample(101.0, 10, 0), sample(150.0, 110, 0), sample(200.0, 120, 100)]
    spec = load_spec(Path(__file__).resolve().parents[1] / "slo.yaml")
    impact = measure_impact([], samples, Window(150.0, 200.0), Window(100.0, 150.0), spec)
    # baseline: all 100 requests in (0, 5 ms] → p95 4.75 ms; fault: 100 of 110 in (5, 50 ms] → p95 ≈ 47.7 ms.
    assert impact.value("feed_p95_shift_ms") == pytest.approx(1000 * (0.005 + 0.045 * (0.95 * 110 - 10) / 100)
                                                               - 4.75)


def _cancel_attempts(start: float, cells: dict[tuple[str, str], tuple[int, int]], at: float) -> list:
    """Attempts ending at ``at``: per (app_version, network_type), (cancelled, total)."""
    from toolkit.drills.measure import Attempt

    out = []
    for (app, net), (cancelled, total) in cells.items():
        for i in range(total):
            out.append(Attempt(request_id=f"{app}-{net}-{at}-{i}", started=start + at - 5, last_event=start + at,
                               cohort={"app_version": app, "network_type": net, "release": "stable"},
                               outcome="cancelled" if i < cancelled else "succeeded", ended=start + at,
                               processing_ms=None, e2e_ms=None, transcode_ms=None, chunk_retries=0,
                               chunk_failures=0, error_class=None))
    return out


def _cancel_ranking(during: dict) -> list:
    start = 1_800_000_000.0
    baseline = {("5.5.0-beta", "3g"): (1, 50), ("5.5.0-beta", "wifi"): (1, 90), ("5.4.0", "3g"): (0, 20),
                ("5.4.0", "wifi"): (1, 40)}
    attempts = _cancel_attempts(start, baseline, 100.0) + _cancel_attempts(start, during, 300.0)
    return list(rank_cohorts(attempts, Window(start + 200, start + 400), Window(start, start + 200),
                             lambda a: a.outcome == "cancelled", ["app_version", "network_type", "release"]))


def test_a_pair_that_both_of_its_dimensions_explain_wins_clearly_over_either_parent():
    # The cancellation trap's counts at x10 (a real run): 3g is mostly beta, so the whole of 3g has a
    # rate close to the pair's; the fixed pair penalty left the pair ahead by 9 % only.
    scores = _cancel_ranking({("5.5.0-beta", "3g"): (50, 61), ("5.4.0", "3g"): (0, 19),
                              ("5.5.0-beta", "wifi"): (12, 114), ("5.4.0", "wifi"): (0, 56)})
    assert scores[0].cohort == {"app_version": "5.5.0-beta", "network_type": "3g"}, scores[:3]
    parents = [s.score for s in scores if s.cohort in ({"app_version": "5.5.0-beta"}, {"network_type": "3g"})]
    assert scores[0].score >= 1.25 * max(parents), scores[:4]


def test_a_pair_whose_second_dimension_does_not_matter_stays_behind_its_parent():
    # All of 3g is hurt alike, beta or not: the pair refines nothing.
    scores = _cancel_ranking({("5.5.0-beta", "3g"): (45, 61), ("5.4.0", "3g"): (14, 19),
                              ("5.5.0-beta", "wifi"): (2, 114), ("5.4.0", "wifi"): (1, 56)})
    assert scores[0].cohort == {"network_type": "3g"}, scores[:3]
