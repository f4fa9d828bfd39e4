"""One way to print a measured span ("49.3 s"), one way to write a configured duration ("5m"), on every surface."""

import re
from datetime import timedelta
from pathlib import Path

import pytest

from contract.durations import DurationError, format_duration, format_seconds, parse_duration
from test_web_app import data_dir  # noqa: F401  (a fixture: a small lab data directory)

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden.jsonl"
MEASURED = re.compile(r"^\d{1,3}(,\d{3})*\.\d s$")
CONFIG_STYLE_SPAN = re.compile(r"\d+(ms|s|m|h|d)\d")  # "49s320ms": a measured span in the configured format


@pytest.mark.parametrize("seconds, text", [(49.32, "49.3 s"), (0.0, "0.0 s"), (0.04, "0.0 s"), (59.96, "60.0 s"),
                                           (1800, "1,800.0 s"), (86400 * 3 + 0.25, "259,200.2 s")])
def test_format_seconds_prints_a_measured_span_one_way(seconds, text):
    assert format_seconds(seconds) == text and MEASURED.match(text)


def test_format_duration_is_for_configured_durations_and_round_trips():
    for text in ("5m", "1h30m", "30d", "250ms", "1m30s"):
        assert format_duration(parse_duration(text)) == text
    assert format_duration(49.32) == "49s320ms"  # why it is not used for measured spans
    with pytest.raises(DurationError):
        format_seconds(-1)


def test_sli_scope_of_an_unbounded_report_is_a_measured_span():
    from toolkit.events import load_events
    from toolkit.measures.sli import SliQuery, compute_report
    from toolkit.slo.spec import load_spec

    spec = load_spec(ROOT / "slo.yaml")
    totals = compute_report(load_events([GOLDEN]), spec, SliQuery()).totals
    assert MEASURED.match(totals.scope.window), totals.scope.window
    assert format_seconds(parse_duration(totals.scope.window.replace(",", "").replace(" s", "s"))) == totals.scope.window
    # given --since and --until the span is the configured one, as typed
    given = compute_report(load_events([GOLDEN]), spec, SliQuery(since="2026-01-05T10:02:00Z",
                                                                  until="2026-01-05T10:20:00Z")).totals
    assert given.scope.window == "18m"


def test_compare_table_prints_its_window_as_a_measured_span(capsys):
    from toolkit.analysis import compare as C
    from toolkit.cli.compare import print_compare

    from attempt_tables import attempts_table, relation

    rel = relation(attempts_table(3000, seed=11, duration_s=49.32))
    res = C.compare_attempts(rel, C.parse_selector("release=stable"), C.parse_selector("release=canary"),
                             window=C.parse_window("2026-01-05T12:00:00Z", "2026-01-05T12:00:49.320Z", None))
    print_compare(res.to_dict())
    out = capsys.readouterr().out
    assert "(49.3 s)" in out and not CONFIG_STYLE_SPAN.search(out.replace("2026-01-05T", ""))


def test_rollout_stage_too_short_says_how_long_it_ran_as_a_measured_span():
    from toolkit.analysis import rollout as R

    from attempt_tables import START, attempts_table, relation

    rel = relation(attempts_table(6000, seed=21, canary_share=0.10, duration_s=600))
    plan = R.parse_plan({"rollout": {"stages": [{"percent": 10, "duration": "10m", "window": "2m"}, {"percent": 100}],
                                     "guardrails": []},
                          # a margin ~250 canary attempts can show non-inferior, so the verdict is promote
                          "judge": {"minimums": {"tail_points": 5}, "metrics": [
                              {"name": "publish_success_rate", "kind": "proportion", "direction": "decrease",
                               "allowed_change": 0.05, "weight": 1, "critical": True,
                               "numerator": "outcome = 'succeeded'",
                               "denominator": "outcome IN ('succeeded', 'failed', 'abandoned')"}]}})
    from datetime import timezone
    t0 = START.replace(tzinfo=timezone.utc)
    res = R.evaluate_timeline(rel, plan, [(10, t0, t0 + timedelta(seconds=249.32))])
    stage = res.stages[0]
    assert stage.rule == "stage-too-short", stage
    # measured span one way, the plan's configured duration as written
    assert "stage ran 249.3 s, less than its minimum 10m" in stage.explanation


def test_story_prints_measured_spans_one_way():
    from toolkit.analysis.story import write_story

    d = {"schema": "obslab.drill-result/v1",
         "drill": {"id": "x", "title": "X", "briefing": "b",
                   "truth": {"cause": "c", "cohort": {}, "metric": "m", "direction": "down"}},
         "grade": {"parts": [], "total": 0, "max_total": 100, "time_to_detect_s": 49.32, "detected_by": "alert",
                   "time_to_diagnose_s": 3725.04},
         "measured_impact": 1, "impact_definition": "d"}
    md = write_story(d)
    assert "Detected after 49.3 s" in md and "diagnosed after 3,725.0 s" in md


def test_budget_data_covers_is_a_measured_span():
    from toolkit.events import load_events
    from toolkit.measures.budget import compute_budget
    from toolkit.slo.spec import load_spec

    spec = load_spec(ROOT / "slo.yaml")
    rep = compute_budget(load_events([GOLDEN]), spec)
    covers = [s.data_covers for s in rep.slos if s.data_covers != "no data"]
    assert covers and all(MEASURED.match(c.split(" of ")[0]) for c in covers), covers


def test_top_and_dashboard_print_how_much_of_the_period_has_data_as_a_measured_span(data_dir):  # noqa: F811
    """``obslab top`` and the dashboard (its snapshot API; app.js prints ``data_covers`` as it comes)."""
    import json as _json

    from typer.testing import CliRunner

    from test_web_app import SPEC, T0
    from toolkit.cli import app
    from toolkit.lab.web import DashboardConfig, create_app

    (data_dir / "lab.json").write_text(_json.dumps({"started_at": "2026-01-05T12:00:00Z", "spec": str(SPEC),
                                                    "profile": "lab"}))
    out = CliRunner().invoke(app, ["top", "--data-dir", str(data_dir), "--once"], env={"COLUMNS": "200"}).output
    covers = re.findall(r"data covers ([\d,]+\.\d s) of 12h", out)
    assert covers, out
    now = T0 + timedelta(seconds=14)
    web = create_app(DashboardConfig(data_dir=data_dir, spec_path=SPEC, settle_s=2.0), {"OBSLAB_CLOCK": lambda: now})
    budgets = web.test_client().get("/api/snapshot").get_json()["budgets"]
    assert budgets and all(MEASURED.match(b["data_covers"].split(" of ")[0]) for b in budgets), budgets
