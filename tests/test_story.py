"""Stories: every number defined, caveats present, each supported schema, clear errors."""

import json
import re
from datetime import timedelta, timezone

import pyarrow as pa
import pytest

from toolkit.analysis import compare as C
from toolkit.analysis import rollout as R
from toolkit.analysis.breakdown import breakdown_attempts, selection_preset
from toolkit.analysis.story import StoryError, write_story

from attempt_tables import START, attempts_table, relation, rollout_step_table


@pytest.fixture(scope="module")
def canary_compare():
    rel = relation(attempts_table(40_000, seed=31, latency_mu={"canary": 5.5}, success={"canary": 0.985}))
    d = C.compare_attempts(rel, C.parse_selector("release=stable"), C.parse_selector("release=canary"),
                           expected_split=(0.95, 0.05)).to_dict()
    return json.loads(json.dumps(d))


def test_compare_story_is_star_shaped_with_defined_numbers(canary_compare):
    md = write_story(canary_compare)
    for heading in ("## Situation", "## Task", "## Action", "## Result", "## Tradeoff and guardrails",
                    "## Caveats", "## What to check next"):
        assert heading in md
    p95 = next(m for m in canary_compare["metrics"] if m["name"] == "processing_latency_p95")["comparison"]
    # the p95 figures appear with their definition, cohorts, counts, interval and method
    line = next(l for l in md.splitlines() if l.startswith("- **processing_latency_p95**"))
    assert "upload_completed → publish_succeeded" in line
    assert f"{p95['control_value']:,.0f} ms" in line and f"{p95['treatment_value']:,.0f} ms" in line
    assert f"n = {p95['treatment_n']:,}" in line and "95 % CI" in line and "bootstrap" in line
    assert "5 % release=canary" in md and "95 % release=stable" in md
    assert "window of 1,800.0 s" in md  # a measured span, printed as every output prints one
    for caveat in ("**Sample size**", "**Synthetic traffic**", "**Sample-ratio mismatch**", "**Seasonality**"):
        assert caveat in md
    # faster latency with a (small) success drop: a tradeoff is named
    assert "Tradeoff" in md or "Improved" in md


def test_a_story_after_a_rollout_step_counts_users_and_says_who_moved():
    """5 % → 20 %: the users who moved at the step are in both cohorts; the story's SRM caveat and its unit
    sentence count them once, in the treatment, and find no mismatch."""
    step = START.replace(tzinfo=timezone.utc) + timedelta(seconds=600)
    d = json.loads(json.dumps(C.compare_attempts(
        relation(rollout_step_table(seed=0)), C.parse_selector("release=stable"), C.parse_selector("release=canary"),
        window=C.Window(step, None), expected_split=(0.8, 0.2)).to_dict()))
    md = write_story(d)
    caveat = next(line for line in md.splitlines() if "**Sample-ratio mismatch**" in line)
    moved = d["srm"]["users_moved"]
    assert caveat.startswith("- **Sample-ratio mismatch**: users per cohort") and f"{moved} moved from control" in caveat
    assert "no mismatch" in caveat
    assert f"the {moved} who moved to the treatment in the window count once, in the treatment" in md


def test_nodata_metrics_make_no_claim():
    rel = relation(attempts_table(3000, seed=32, canary_share=0.02))
    d = json.loads(json.dumps(C.compare_attempts(rel, C.parse_selector("release=stable"),
                                                 C.parse_selector("release=canary")).to_dict()))
    md = write_story(d)
    assert "not enough data" in md and "no claim either way" in md and "Verdict **not_enough_data**" in md
    assert "obslab rollout plan --rate" in md


def test_rollout_and_breakdown_stories():
    healthy = attempts_table(6000, seed=33, canary_share=0.10, duration_s=600, id_prefix="a")
    bad = attempts_table(6000, seed=34, canary_share=0.50, duration_s=600, start=START + timedelta(seconds=600),
                         latency_mu={"canary": 6.7}, id_prefix="b")
    rel = relation(pa.concat_tables([healthy, bad]))
    plan = R.parse_plan({"rollout": {"stages": [{"percent": 10, "duration": "10m", "window": "2m"},
                                                {"percent": 50, "duration": "10m", "window": "2m"}, {"percent": 100}],
                                     "guardrails": [{"metric": "processing_latency_p95", "max_change": 0.2}]},
                          # margins ~600 canary attempts can show non-inferior, so the healthy stage promotes
                          "judge": {"metrics": [
                              {"name": "publish_success_rate", "kind": "proportion", "direction": "decrease",
                               "allowed_change": 0.025, "weight": 60, "critical": True,
                               "numerator": "outcome = 'succeeded'",
                               "denominator": "outcome IN ('succeeded', 'failed', 'abandoned')"},
                              {"name": "processing_latency_p95", "kind": "quantile", "quantile": 0.95,
                               "direction": "increase", "allowed_change": 0.3, "weight": 40,
                               "value": "processing_ms", "population": "outcome = 'succeeded'"}]}})
    t0 = START.replace(tzinfo=__import__("datetime").timezone.utc)
    res = R.evaluate_timeline(rel, plan, [(10, t0, t0 + timedelta(seconds=600)),
                                          (50, t0 + timedelta(seconds=600), t0 + timedelta(seconds=1200))])
    md = write_story(json.loads(json.dumps(res.to_dict())))
    assert "rolled back" in md and "guardrail:processing_latency_p95" in md and "10 % → 50 % → 100 %" in md

    rel2 = relation(attempts_table(20_000, seed=35, plant={("network_type", "3g"): 8.0}))
    b = json.loads(json.dumps(breakdown_attempts(rel2, selection_preset("failed")).to_dict()))
    md = write_story(b)
    assert re.search(r"\*\*network_type = 3g\*\*: [\d.]+ % of the selection", md)
    assert "Association, not cause" in md


def test_drill_result_story():
    d = {"schema": "obslab.drill-result/v1",
         "drill": {"id": "bad-canary", "title": "Bad canary", "briefing": "Release 1.5.0 is rolling out.",
                   "truth": {"cause": "canary_regression", "cohort": {"release": "canary"},
                             "metric": "publish success rate", "direction": "down"}},
         "grade": {"parts": [{"part": "cause", "points": 50, "max_points": 50, "note": "right"}], "total": 50,
                   "max_total": 100, "time_to_detect_s": 95, "detected_by": "alert", "time_to_diagnose_s": 310},
         "measured_impact": 42, "impact_definition": "failed publishes that started during the incident"}
    md = write_story(d)
    assert "# Incident drill: Bad canary" in md and "canary_regression" in md and "Detected after 95.0 s" in md and "diagnosed after 310.0 s" in md


def test_unknown_or_broken_input_is_a_story_error():
    with pytest.raises(StoryError, match="unsupported schema"):
        write_story({"schema": "something/v9"})
    with pytest.raises(StoryError, match="missing or has a malformed field"):
        write_story({"schema": "obslab.compare/v1"})


def test_compare_and_story_use_and_name_the_sli_engines_percentile_method(canary_compare):
    rel = relation(attempts_table(40_000, seed=31, latency_mu={"canary": 5.5}, success={"canary": 0.985}))
    # The SLI engine's p95 of the canary's processing latency (DuckDB quantile_disc, nearest-rank).
    sli_p95 = rel.query("a", "SELECT quantile_disc(processing_ms, 0.95) FROM a WHERE release = 'canary' "
                             "AND outcome = 'succeeded'").fetchall()[0][0]
    p95 = next(m for m in canary_compare["metrics"] if m["name"] == "processing_latency_p95")["comparison"]
    assert p95["treatment_value"] == pytest.approx(sli_p95, rel=0, abs=1e-9)
    assert canary_compare["percentile_method"].startswith("nearest-rank")
    assert "nearest-rank" in p95["method"]
    md = write_story(canary_compare)
    line = next(l for l in md.splitlines() if l.startswith("- **processing_latency_p95**"))
    assert "p95 by nearest-rank" in line
    assert "every percentile and median nearest-rank" in md


def test_small_overwhelming_regression_story_names_the_exact_test_and_holm():
    rel = relation(attempts_table(1500, seed=14, canary_share=0.04, success={"stable": 1.0, "canary": 0.73}))
    d = json.loads(json.dumps(C.compare_attempts(rel, C.parse_selector("release=stable"),
                                                 C.parse_selector("release=canary"),
                                                 expected_split=(0.96, 0.04)).to_dict()))
    md = write_story(d)
    rate_line = next(line for line in md.splitlines() if line.startswith("- **publish_success_rate**"))
    assert "Verdict **rollback**" in md and "no claim either way" not in rate_line
    assert "Fisher's exact test (small expected counts) p = " in rate_line and "Holm step-down" in md
    assert "held against its absolute limit" in md  # the p99 guardrail, too thin to compare


def test_thin_healthy_canary_story_says_not_shown_safe_with_the_power():
    rel = relation(attempts_table(3000, seed=4, canary_share=0.05))
    d = json.loads(json.dumps(C.compare_attempts(rel, C.parse_selector("release=stable"),
                                                 C.parse_selector("release=canary")).to_dict()))
    md = write_story(d)
    if d["verdict"]["rule"] == "not-non-inferior":
        assert "absence of evidence is not a promote" in md
    assert "not shown to be safe (power to show it at this sample: 0." in md
