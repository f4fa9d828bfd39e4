"""Rollout plans, guardrails and stage decisions (pure), and evaluating a past rollout from a table."""

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from toolkit.analysis import rollout as R
from toolkit.analysis.judge import JudgeConfig, DEFAULT_CONFIG

from attempt_tables import START, attempts_table, relation, rollout_step_table
from fuzz_support import (CLI_HOSTILE_FILES, HOSTILE_FILES, assert_hostile_file_is_reader_error,
                          assert_one_line_cli_error, write_hostile_file)

UTC_START = START.replace(tzinfo=timezone.utc)


def _w(i, p99=None, rate=None, sig=True):
    return R.WindowResult(5, i, f"w{i}", f"w{i + 1}", 1000, 50,
                          {"processing_latency_p99": p99, "publish_success_rate": rate},
                          {"processing_latency_p99": sig, "publish_success_rate": sig}, "promote", "score>=pass")


def test_default_plan_is_the_documented_ladder():
    plan = R.DEFAULT_PLAN
    assert [s.percent for s in plan.stages] == [1, 5, 25, 100]
    text = plan.guardrails[0].describe(plan.judge)
    assert "p99" in text and "rises more than 20 %" in text and "2 consecutive windows" in text


def test_guardrail_needs_consecutive_windows_and_nodata_is_neutral():
    plan = R.DEFAULT_PLAN
    assert R.guardrail_breaches(plan, [_w(0, 0.3)]) == []
    assert R.guardrail_breaches(plan, [_w(0, 0.3), _w(1, 0.1), _w(2, 0.3)]) == []  # a good window resets
    breached = R.guardrail_breaches(plan, [_w(0, 0.3), _w(1, None), _w(2, 0.25)])     # NoData in between
    assert [g.metric for g, _ in breached] == ["processing_latency_p99"]
    assert R.guardrail_breaches(plan, [_w(0, 0.3, sig=False), _w(1, 0.3, sig=False)]) == []
    # success rate falls (a decrease metric): -1.5 pp twice
    assert [g.metric for g, _ in R.guardrail_breaches(plan, [_w(0, rate=-0.015), _w(1, rate=-0.02)])] == \
        ["publish_success_rate"]


def test_decide_orders_guardrails_before_the_verdict_and_extends_then_holds():
    plan = R.DEFAULT_PLAN
    assert R.decide(plan, [_w(0, 0.3), _w(1, 0.3)], "promote", "score>=pass", 0)[:2] == \
        ("rollback", "guardrail:processing_latency_p99")
    assert R.decide(plan, [_w(0)], None, None, 0)[0] == "continue"
    assert R.decide(plan, [_w(0)], "promote", "score>=pass", 0)[:2] == ("promote", "score>=pass")
    assert R.decide(plan, [_w(0)], "rollback", "critical:x", 0)[:2] == ("rollback", "critical:x")
    assert R.decide(plan, [_w(0)], "not_enough_data", "not-enough-data", 0)[0] == "extend"
    assert R.decide(plan, [_w(0)], "hold", "score>=marginal", 2)[0] == "hold"


def test_plan_file_round_trip_and_errors(tmp_path):
    p = tmp_path / "plan.yaml"
    p.write_text("""
rollout:
  stages:
    - {percent: 10, duration: 20s, window: 10s}
    - {percent: 50, duration: 20s, window: 10s}
    - {percent: 100}
  guardrails:
    - {metric: processing_latency_p95, max_change: 0.5, consecutive_windows: 1}
  settle: 2s
  judge:
    minimums: {proportion_per_arm: 20, shift_per_arm: 10}
""")
    plan = R.load_plan(p)
    assert [s.percent for s in plan.stages] == [10, 50, 100] and plan.stages[0].window_s == 10
    assert plan.guardrails[0].consecutive_windows == 1 and plan.settle_s == 2
    assert plan.judge.minimums.proportion_per_arm == 20
    for text, msg in [("rollout: {stages: [{percent: 5, duration: 1m}, {percent: 1, duration: 1m}]}", "strictly increase"),
                      ("rollout: {guardrails: [{metric: nope, max_change: 1}]}", "guardrails[0].metric"),
                      ("rollout: {flag: colour}", "unknown flag"),
                      ("rollout: {stages: [{percent: 5, duration: soon}]}", "stages[0].duration")]:
        p.write_text(text)
        with pytest.raises(R.RolloutPlanError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            R.load_plan(p)


def test_missing_plan_file_is_a_clear_error(tmp_path):
    with pytest.raises(R.RolloutPlanError, match="nope.yaml: no such rollout plan file"):
        R.load_plan(tmp_path / "nope.yaml")


@pytest.mark.parametrize("content, where, what", HOSTILE_FILES)
def test_hostile_plan_file_is_a_rollout_plan_error(tmp_path, content, where, what):
    assert_hostile_file_is_reader_error(R.load_plan, R.RolloutPlanError, tmp_path / "plan.yaml", content, where, what)


def test_plan_summary_states_sample_sizes_and_power():
    s = R.plan_summary(R.DEFAULT_PLAN, rate_per_s=20)
    one, twentyfive = s["stages"][0], s["stages"][2]
    assert one["expected_variant_attempts_per_window"] == pytest.approx(20 * 300 * 0.01)
    assert not one["window_has_enough_for_p99"]
    assert twentyfive["power_to_roll_back_success_drop"] > one["power_to_roll_back_success_drop"]
    assert twentyfive["power_to_show_non_inferiority"] > one["power_to_show_non_inferiority"]
    # α = 0.05 shared by the 3 stages below 100 % (however often each is looked at), then by the 8 metrics
    av = s["always_valid"]
    assert av["tested_stages"] == 3 and av["stage_alpha"] == pytest.approx(0.05 / 3)
    assert av["rollback_alpha"] == pytest.approx(0.05 / 3 / 8)
    assert av["mixture_scale"]["publish_success_rate"] == pytest.approx([0.005, 0.02, 0.08, 0.32])  # margin × 1..64


def test_guardrail_absolute_fallback_breach_counts_and_is_explained():
    plan = R.DEFAULT_PLAN
    thin = [R.WindowResult(1, i, f"w{i}", f"w{i + 1}", 1000, 12, {"processing_latency_p99": None},
                           {"processing_latency_p99": False}, "not_enough_data", "not-enough-data",
                           {"processing_latency_p99": True}) for i in range(2)]
    (g, streak), = R.guardrail_breaches(plan, thin)
    assert g.metric == "processing_latency_p99" and len(streak) == 2
    decision, rule, why = R.decide(plan, thin, None, None, 0)
    assert (decision, rule) == ("rollback", "guardrail:processing_latency_p99") and "absolute fallback" in why


def _timeline_table():
    """Stage 10 % healthy for 10 min, then stage 50 % where the canary's latency doubles."""
    healthy = attempts_table(6000, seed=21, canary_share=0.10, duration_s=600, start=START, id_prefix="a")
    bad = attempts_table(6000, seed=22, canary_share=0.50, duration_s=600, start=START + timedelta(seconds=600),
                         latency_mu={"canary": 6.7}, id_prefix="b")
    return relation(pa.concat_tables([healthy, bad]))


FAST_PLAN = R.parse_plan({"rollout": {
    "stages": [{"percent": 10, "duration": "10m", "window": "2m"}, {"percent": 50, "duration": "10m", "window": "2m"},
               {"percent": 100}],
    "guardrails": [{"metric": "processing_latency_p95", "max_change": 0.2, "consecutive_windows": 2}]},
    # ~600 canary attempts per stage can show a 2.5 pp / 30 % non-inferiority margin, not the
    # defaults' 0.5 pp: margins a stage of this size can afford (power: obslab rollout plan).
    "judge": {"minimums": {"tail_points": 5}, "metrics": [
        {"name": "publish_success_rate", "group": "primary", "kind": "proportion", "direction": "decrease",
         "allowed_change": 0.025, "weight": 60, "critical": True, "numerator": "outcome = 'succeeded'",
         "denominator": "outcome IN ('succeeded', 'failed', 'abandoned')"},
        {"name": "processing_latency_p95", "group": "primary", "kind": "quantile", "quantile": 0.95,
         "direction": "increase", "allowed_change": 0.3, "weight": 40, "value": "processing_ms",
         "population": "outcome = 'succeeded'"}]}})


def test_evaluate_timeline_promotes_the_healthy_stage_and_rolls_back_on_the_guardrail():
    rel = _timeline_table()
    timeline = [(10, UTC_START, UTC_START + timedelta(seconds=600)),
                (50, UTC_START + timedelta(seconds=600), UTC_START + timedelta(seconds=1200))]
    res = R.evaluate_timeline(rel, FAST_PLAN, timeline)
    assert [s.decision for s in res.stages] == ["promote", "rollback"]
    assert res.outcome == "rolled_back" and res.rule == "guardrail:processing_latency_p95"
    assert len(res.stages[1].windows) == 2  # decided at the second consecutive bad window
    d = res.to_dict()
    assert d["schema"] == R.ROLLOUT_SCHEMA and d["stages"][0]["compare"]["schema"] == "obslab.compare/v1"


def test_a_stage_after_a_step_checks_its_sample_ratio_on_users():
    """10 % → 50 %: the second stage's first attempts were assigned at 10 %, so the users who moved sit in both
    arms. Its SRM check counts them once, in the canary: users stay the unit and the split is no mismatch."""
    rel = relation(rollout_step_table(seed=3, before=10.0, after=50.0, step_s=600.0, duration_s=1200.0))
    timeline = [(10, UTC_START, UTC_START + timedelta(seconds=600)),
                (50, UTC_START + timedelta(seconds=600), UTC_START + timedelta(seconds=1200))]
    res = R.evaluate_timeline(rel, FAST_PLAN, timeline)
    srm = res.stages[1].compare["srm"]
    assert srm["unit"] == "users" and srm["users_moved"] == srm["users_in_both"] > 0
    assert tuple(srm["expected_shares"]) == (0.5, 0.5) and not srm["mismatch"]
    assert [s.decision for s in res.stages] == ["promote", "promote"] and res.stages[1].rule != "srm"


def test_run_rollout_with_an_injected_clock_writes_the_decision_log(tmp_path):
    """The run loop's control flow with a simulated clock over a prepared table; the real
    service run is in test_rollout_service.py."""
    rel = _timeline_table()
    clock = [UTC_START]
    set_calls = []
    log = R.DecisionLog(tmp_path / "decisions.jsonl")
    res = R.run_rollout(FAST_PLAN, set_percent=set_calls.append, load_attempts=lambda: rel, log=log,
                        now=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + timedelta(seconds=s)))
    log.close()
    assert set_calls == [10, 50, 0.0]
    assert res.outcome == "rolled_back" and res.rule == "guardrail:processing_latency_p95"
    timeline = R.timeline_from_log(tmp_path / "decisions.jsonl")
    assert [p for p, _, _ in timeline] == [10, 50]
    assert timeline[1][2] is not None  # the rollback closes the last stage


def _obslab(*args):
    import subprocess
    import sys
    from pathlib import Path

    return subprocess.run([str(Path(sys.executable).parent / "obslab"), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_cli_plan_and_plan_errors(tmp_path):
    import json

    r = _obslab("rollout", "plan", "--rate", "20", "--format", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert [s["percent"] for s in d["stages"]] == [1, 5, 25, 100]
    assert d["stages"][1]["expected_variant_attempts_per_window"] == 300
    bad = tmp_path / "plan.yaml"
    bad.write_text("rollout: {stages: [{percent: 150}]}")
    r = _obslab("rollout", "plan", "--plan", bad)
    assert r.returncode == 2 and "stages[0].percent" in r.stderr and "Traceback" not in r.stderr
    r = _obslab("rollout", "evaluate", tmp_path / "none.jsonl", "--stage", "5@soon/later")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("content, where, what", CLI_HOSTILE_FILES)
def test_cli_hostile_plan_is_one_line(tmp_path, content, where, what):
    plan = write_hostile_file(tmp_path / "plan.yaml", content)
    assert_one_line_cli_error(_obslab("rollout", "plan", "--plan", plan), f"{plan}{where}:", what)


def test_cli_evaluate_with_stages_on_synthetic_events(tmp_path):
    import json

    from toolkit.events.synth import Effect, SynthConfig, generate, write_jsonl

    # 10 % canary whose publishes fail 20 % of the time from minute 10.
    cfg = SynthConfig(attempts=6000, duration_s=1200, users=3000, canary_share=0.5,
                      effects=(Effect(where={"release": "canary"}, start_s=600, failure_rate=0.2),))
    events = write_jsonl(generate(cfg, seed=8), tmp_path / "events.jsonl")
    r = _obslab("rollout", "evaluate", events, "--stage", "50@2026-01-05T10:00:00Z/2026-01-05T10:10:00Z",
                "--stage", "75@2026-01-05T10:10:00Z/2026-01-05T10:20:00Z", "--plan", _plan_file(tmp_path),
                "--format", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["stages"][0]["decision"] == "promote", d["stages"][0]["explanation"]
    assert d["outcome"] == "rolled_back" and d["stages"][1]["decision"] == "rollback"


def _plan_file(tmp_path):
    p = tmp_path / "plan.yaml"
    p.write_text("""
rollout:
  stages: [{percent: 50, duration: 10m, window: 5m}, {percent: 75, duration: 10m, window: 5m}, {percent: 100}]
  guardrails: [{metric: publish_success_rate, max_change: 0.05}]
judge:
  minimums: {tail_points: 3}
  metrics:   # margins ~1 500 attempts a stage can show non-inferior
    - {name: publish_success_rate, group: primary, kind: proportion, direction: decrease, allowed_change: 0.03,
       weight: 60, critical: true, numerator: "outcome = 'succeeded'",
       denominator: "outcome IN ('succeeded', 'failed', 'abandoned')"}
    - {name: processing_latency_p95, group: primary, kind: quantile, quantile: 0.95, direction: increase,
       allowed_change: 0.3, weight: 40, value: processing_ms, population: "outcome = 'succeeded'"}
""")
    return p


def test_cli_run_without_a_service_is_one_line_and_logs_the_abort(tmp_path):
    import json

    from toolkit.lab.processes import free_port

    (tmp_path / "events").mkdir()
    log = tmp_path / "decisions.jsonl"
    r = _obslab("rollout", "run", "--events", tmp_path / "events", "--log", log,
                "--url", f"http://127.0.0.1:{free_port()}", "--token", "t")
    assert r.returncode == 2 and "no service answering" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["action"] == "aborted" and last["rolled_back"] is False


def _rate_look(control: tuple[int, int], variant: tuple[int, int], percent: float = 5.0):
    """A rollout look on the success rate alone: the judge's result, then re-judged always-valid."""
    from dataclasses import replace

    from toolkit.analysis.compare import CohortSample, compare_samples

    success = DEFAULT_CONFIG.metric("publish_success_rate")
    plan = R.parse_plan({"rollout": {"guardrails": [{"metric": "publish_success_rate", "max_change": 0.01}]},
                         "judge": {"metrics": [{k: v for k, v in success.__dict__.items() if v is not None}]}})
    plan = replace(plan, judge=replace(plan.judge, metrics=(success,)))
    name = success.name
    cohorts = [CohortSample(label, label, n, n, 0, None, None, proportions={name: (s, n)})
               for label, (s, n) in (("control", control), ("variant", variant))]
    fixed = compare_samples(*cohorts, plan.judge, expected_split=(1 - percent / 100, percent / 100),
                            decision_alpha=R.rollback_alpha(plan))
    return plan, fixed, R.always_valid_verdict(plan, fixed)


def test_a_drop_the_fixed_interval_calls_beyond_the_margin_holds_until_the_always_valid_one_shows_it():
    # 99.0 % vs 97.8 % on 3 000 variant attempts: the fixed-sample test (one look) fails the rate beyond its
    # 0.5 pp margin; the always-valid interval, valid at any number of looks, reaches back inside the margin.
    plan, fixed, looked = _rate_look((56_430, 57_000), (2_934, 3_000))
    m = looked.verdict.metrics[0]
    assert fixed.verdict.verdict == "rollback" and fixed.verdict.metrics[0].failed
    lo, hi = m.change_ci
    assert lo < fixed.verdict.metrics[0].change_ci[0] and hi > -0.005  # wider, and not wholly beyond the margin
    assert not m.failed and looked.verdict.verdict == "not_enough_data" and looked.verdict.rule == "not-non-inferior"
    av = m.comparison["always_valid"]
    assert av["stage_alpha"] == pytest.approx(0.05 / 3) and av["rollback_alpha"] == pytest.approx(0.05 / 3)
    assert av["mixture_scale"][0] == 0.005 and av["se"] > 0
    # Three times the data at the same rates: now the always-valid interval lies wholly below −0.5 pp.
    _, _, more = _rate_look((169_290, 171_000), (8_802, 9_000))
    assert more.verdict.verdict == "rollback" and more.verdict.rule == "critical:publish_success_rate"
    assert more.verdict.metrics[0].comparison["always_valid"]["rollback_interval"][1] < -0.005


def test_promote_needs_the_always_valid_harm_bound_inside_the_margin():
    # Unchanged at 99 % on 13 500 variant attempts (the 25 % stage at lab traffic): shown non-inferior.
    _, _, looked = _rate_look((40_095, 40_500), (13_365, 13_500), percent=25)
    m = looked.verdict.metrics[0]
    assert looked.verdict.verdict == "promote" and m.non_inferior and m.harm_bound > -0.005
    # The same rates on 1 350 (the 5 % stage): the harm bound is beyond the margin, so no promote.
    _, fixed, small = _rate_look((25_245, 25_500), (1_337, 1_350))
    assert small.verdict.verdict == "not_enough_data" and not small.verdict.metrics[0].non_inferior
    assert small.verdict.metrics[0].harm_bound < fixed.verdict.metrics[0].harm_bound  # wider than one look's


def test_guardrail_needs_the_always_valid_interval_beyond_max_change():
    w = lambda i, bounds: R.WindowResult(5, i, f"w{i}", f"w{i + 1}", 1000, 50, {"publish_success_rate": -0.02},
                                         {"publish_success_rate": True}, "hold", "", {}, bounds)
    plan = R.DEFAULT_PLAN
    straddles = [w(i, {"publish_success_rate": (-0.035, -0.005)}) for i in range(2)]
    assert not [g for g, _ in R.guardrail_breaches(plan, straddles) if g.metric == "publish_success_rate"]
    beyond = [w(i, {"publish_success_rate": (-0.03, -0.012)}) for i in range(2)]
    assert [g.metric for g, _ in R.guardrail_breaches(plan, beyond)] == ["publish_success_rate"]
