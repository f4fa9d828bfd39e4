"""The load a launch's stages need (toolkit.drills.launch_load): derived from the plan's guardrails and the
judge's minimums, capped at what the lab carries, and laid out as Locust phases bounded by the launch."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.profiles import Profile, parse_phases
from toolkit.analysis.measurement_plan import check_plan_file
from toolkit.analysis.stats import JUDGE_MINIMUMS, power_two_proportions
from toolkit.drills.launch import load_launches
from toolkit.drills.launch_load import LAB_USER_CAP, RAISED_PER_USER_S, load_phases, stage_loads, values_needed

PLANS = Path(__file__).parent / "fixtures" / "plans"
ASYNC = load_launches()["async-transcode-launch"]


def _plan(tmp_path, drop: str = ""):
    """The good plan, optionally without one rollback guardrail (name) so another one decides the load."""
    text = (PLANS / "good.yaml").read_text()
    if drop:
        text = text.replace("when: [p99 processing latency, publish timeout rate]",
                            "when: [" + ", ".join(n for n in ("p99 processing latency", "publish timeout rate")
                                                  if n != drop) + "]")
    f = tmp_path / "plan.yaml"
    f.write_text(text)
    result = check_plan_file(f)
    assert result.ok, result.lines()
    return result.plan


def test_a_percentile_guardrail_needs_the_judge_s_minimum_and_a_ratio_its_power_sample(tmp_path):
    plan = _plan(tmp_path)
    by_name = {m.name: m for m in plan.metrics}
    assert values_needed(by_name["p99 processing latency"], 0.05, 0.05) == JUDGE_MINIMUMS.quantile_per_arm(0.99) == 1000
    ratio = values_needed(by_name["publish timeout rate"], 0.05, 0.05)
    # The variant's share of the sample that detects 1 % → 1.5 % (the 0.5 pp threshold) with 80 % power.
    n_v = ratio
    n_c = round(ratio / 0.05 * 0.95)
    assert power_two_proportions(0.01, 0.015, n_c, n_v, 0.05) == pytest.approx(0.8, abs=0.01)


def test_stages_below_100_get_the_floor_their_guardrails_need_capped_at_what_the_lab_carries(tmp_path):
    loads = stage_loads(ASYNC.stages, ASYNC.setup.duration_s, _plan(tmp_path), 10, 0.05)
    assert [s.percent for s in loads] == [5, 25, 100]
    five, twenty_five, hundred = loads
    assert (five.needed_by, five.users, five.capped) == ("publish timeout rate", LAB_USER_CAP, True)
    assert five.expected_variant < five.needed and five.expected_variant_users == LAB_USER_CAP * 0.05
    assert twenty_five.start_s == five.end_s == ASYNC.stages[1][1] / 10
    # No control arm is assigned at 100 %: the stage asks for nothing of its own and holds the floor before.
    assert hundred.needed == 0 and hundred.users == twenty_five.users and not hundred.capped


def test_a_stage_that_needs_little_gets_just_enough_users(tmp_path):
    # Only the p99 guardrail rolls back; at speed 1 the 25 % stage's 90 s can get its 1,000 values uncapped.
    loads = stage_loads(ASYNC.stages, ASYNC.setup.duration_s, _plan(tmp_path, drop="publish timeout rate"), 1, 0.05)
    twenty_five = loads[1]
    assert twenty_five.needed == 1000 and not twenty_five.capped
    window = twenty_five.end_s - twenty_five.start_s
    assert twenty_five.users == -(-1000 // (0.25 * RAISED_PER_USER_S * window))
    assert twenty_five.expected_variant >= 1000
    assert loads[0].capped  # 5 % of 210 s cannot


def test_the_phases_hold_each_floor_keep_the_brief_s_shape_elsewhere_and_end_with_the_launch(tmp_path):
    loads = stage_loads(ASYNC.stages, ASYNC.setup.duration_s, _plan(tmp_path), 10, 0.05)
    duration = ASYNC.setup.duration_s / 10
    shape = Profile(ASYNC.setup.load.shape, ASYNC.setup.load.users, 30.0, duration)
    text, peak = load_phases(shape, loads, tail_s=5, scale=2.0)
    phases = parse_phases(text)
    assert sum(p.duration_s for p in phases) == pytest.approx(duration + 5)
    assert peak == LAB_USER_CAP == max(p.users for p in phases)
    # The floor holds through the launch: the brief's spike (30 users, scaled by 2) stays below it.
    assert [p.users for p in phases] == [LAB_USER_CAP] and all(p.spawn_rate == peak for p in phases)
    # Without a floor the brief's shape runs, scaled: the spike's base of 6 users, its peak of 30.
    bare = parse_phases(load_phases(shape, (), tail_s=5, scale=2.0)[0])
    assert [p.users for p in bare] == [12, 60, 12]
    assert [round(p.duration_s, 3) for p in bare] == [round(0.4 * duration, 3), round(0.2 * duration, 3),
                                                     round(0.4 * duration + 5, 3)]
