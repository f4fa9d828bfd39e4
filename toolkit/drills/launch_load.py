"""The load a launch's stages need, so that the plan's guardrails have data at each stage (pure).

At the brief's own load a 5 % stage gets a handful of variant attempts (7 in a 12 s window at 30 users),
far below what the canary judge needs to compare anything. Each stage below 100 % therefore gets a floor
of users: enough for the variant to reach, within the stage's wall window, the values per arm the plan's
primary metric and rollback guardrails need (the judge's minimum sample for a percentile or a shift; for
a ratio with a threshold, the sample that detects that threshold with ``TARGET_POWER``), capped at what
the lab carries. The brief's own shape still runs wherever it asks for more users than the floor.

The flag's rollout is sticky per user, so a stage needs distinct *users* in the variant as much as attempts:
a 5 % stage of 120 users has about 6 variant users (a binomial draw: the user-hash key is random per data
dir), and 3 of them gave the variant 28 values in an 18 s window, short of the shift's 30. A raised load
therefore runs many users with a longer think time (``RAISED_THINK_TIME``): as many attempts per second,
from more people. The brief's own shape is scaled up by the ratio of the per-user rates, so it keeps its
traffic in attempts per second under the longer think time.

The cap and the rates are measured, not assumed, on the 2-core lab machine (2 API workers, the drills'
locustfile, 15 s steady runs): at the default think time (0.5-2 s) 6/30/60/120/200 users gave
3.7/17.8/33.3/58.6/68.1 attempts per second (0.49 per user, saturated near 68); at 3-6 s, 400 users gave
60.8 (0.152 per user). 400 users is the cap: the lab still carries them, at the saturated rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from loadtests.profiles import SPIKE_WINDOW, Profile
from toolkit.analysis.stats import JUDGE_MINIMUMS, MinimumSamples, sample_size_two_proportions

__all__ = ["ATTEMPTS_PER_USER_S", "LAB_ATTEMPTS_PER_S", "LAB_USER_CAP", "RAISED_PER_USER_S", "RAISED_THINK_TIME",
           "TARGET_POWER", "StageLoad", "expected_rate", "load_phases", "planning_rates", "stage_loads", "values_needed"]

LAB_USER_CAP = 400
ATTEMPTS_PER_USER_S = 0.49          # at the load generator's default think time
RAISED_THINK_TIME = "3s-6s"
RAISED_PER_USER_S = 0.152           # at RAISED_THINK_TIME
LAB_ATTEMPTS_PER_S = 68.0           # the saturated throughput
TARGET_POWER = 0.8
# The planning baseline a ratio's threshold is set against (as the rollout drill's stated power assumes):
# a success rate of 99 %, so a failure-like rate of 1 %.
PLANNING_SUCCESS = 0.99


@dataclass(frozen=True)
class StageLoad:
    percent: float
    start_s: float          # wall seconds after the launch starts
    end_s: float
    needed: int             # variant values the plan's watched metrics need in this stage (0: none asked)
    needed_by: str          # the plan metric that needs the most
    users: int              # the floor of users during the stage (0: the brief's shape alone)
    expected_variant: float  # variant attempts expected at that floor
    expected_variant_users: float
    capped: bool            # the floor was cut to LAB_USER_CAP: the stage cannot reach ``needed``


def expected_rate(users: int, per_user_s: float = RAISED_PER_USER_S, most: float = LAB_ATTEMPTS_PER_S) -> float:
    """Attempts per second the lab gives at ``users`` (linear, then saturated)."""
    return min(users * per_user_s, most)


def planning_rates(metric: Any) -> tuple[float, float] | None:
    """(baseline, rate at the threshold) for a ratio guardrail with a pp threshold, from the planning baseline;
    None for anything else. ``metric`` is a ``measurement_plan.Metric``."""
    t = metric.threshold
    if metric.statistic != "ratio" or t is None or t.kind != "change" or t.unit != "pp":
        return None
    if metric.direction == "higher_is_better":
        return PLANNING_SUCCESS, max(0.0, PLANNING_SUCCESS - t.value / 100)
    return 1 - PLANNING_SUCCESS, min(1.0, 1 - PLANNING_SUCCESS + t.value / 100)


def values_needed(metric: Any, share: float, alpha: float, minimums: MinimumSamples = JUDGE_MINIMUMS) -> int:
    """Variant values a stage with variant ``share`` needs for the judge to evaluate ``metric``: a percentile's
    minimum per arm, a latency or value's shift minimum, a ratio guardrail's sample for ``TARGET_POWER``."""
    stat = metric.statistic or ""
    if stat.startswith("p") and stat[1:].replace(".", "", 1).isdigit():
        return minimums.quantile_per_arm(float(stat[1:]) / 100)
    if metric.value is not None or metric.latency is not None:
        return minimums.shift_per_arm
    rates = planning_rates(metric)
    if rates is not None and rates[0] != rates[1]:
        return math.ceil(sample_size_two_proportions(rates[0], rates[1], share, TARGET_POWER, alpha) * share)
    return minimums.proportion_per_arm


def stage_loads(stages: tuple[tuple[float, float], ...], duration_s: float, plan: Any, speed: float,
                alpha: float, cap: int = LAB_USER_CAP, per_user_s: float = RAISED_PER_USER_S) -> tuple[StageLoad, ...]:
    """The floor of users for each of a launch's stages (``(percent, at)`` on the launch clock) so that the plan's
    primary metric and rollback guardrails get their values, capped at ``cap``. The 100 % stage has no control
    arm assigned any more: it holds the floor of the stage before (0 users: the brief's own shape)."""
    watched = [m for m in plan.metrics
               if m.role == "primary" or (m.role == "guardrail" and m.name in plan.rollback_when)]
    out = []
    for i, (pct, at) in enumerate(stages):
        start, end = at / speed, (stages[i + 1][1] if i + 1 < len(stages) else duration_s) / speed
        share = pct / 100
        if not watched:
            out.append(StageLoad(pct, start, end, 0, "", 0, 0.0, 0.0, False))
            continue
        if share >= 1:
            # No control arm is assigned any more, only the attempts still finishing: the floor before is held,
            # so that comparison (and the variant's own figures under the brief's regression) still has data.
            users = out[-1].users if out else 0
            out.append(StageLoad(pct, start, end, 0, "", users,
                                 round(expected_rate(users, per_user_s) * (end - start), 1), float(users), False))
            continue
        needs = [(values_needed(m, share, alpha), m.name) for m in watched]
        needed, by = max(needs)
        users = math.ceil(needed / (share * per_user_s * (end - start)))
        capped = users > cap
        users = min(users, cap)
        out.append(StageLoad(pct, start, end, needed, by, users,
                             round(expected_rate(users, per_user_s) * share * (end - start), 1),
                             round(users * share, 1), capped))
    return tuple(out)


def load_phases(shape: Profile, loads: tuple[StageLoad, ...], tail_s: float,
                scale: float = ATTEMPTS_PER_USER_S / RAISED_PER_USER_S, cap: int = LAB_USER_CAP) -> tuple[str, int]:
    """``OBSLAB_LOAD_PHASES`` for the launch at ``RAISED_THINK_TIME``: at every second the brief's shape's users
    times ``scale`` (the same attempts per second at the longer think time) or the stage's floor, whichever is
    more, at most ``cap``; the last level held ``tail_s`` more (the load is bounded by the same time as the
    brief's); with the peak user count (Locust's ``--users``)."""
    total = shape.duration_s
    bounds = sorted({0.0, total, *(s.start_s for s in loads), *(s.end_s for s in loads)}
                    | {b * total for b in _shape_breaks(shape)})
    bounds = [b for b in bounds if 0 <= b <= total]
    segments: list[tuple[float, int]] = []
    for a, b in pairwise(bounds):
        if b - a <= 1e-9:
            continue
        floor = max((s.users for s in loads if s.start_s <= a < s.end_s), default=0)
        users = min(cap, max(math.ceil((shape.users_at(a) or 1) * scale), floor))
        if segments and segments[-1][1] == users:
            segments[-1] = (segments[-1][0] + b - a, users)
        else:
            segments.append((b - a, users))
    segments[-1] = (segments[-1][0] + tail_s, segments[-1][1])
    peak = max(u for _d, u in segments)
    # Every phase spawns (and stops) users at the peak's count per second: a stage's floor arrives at once.
    return ",".join(f"{d:.3f}s:{u}@{peak}" for d, u in segments), peak


def _shape_breaks(shape: Profile) -> tuple[float, ...]:
    """Where the shape's user count changes, as shares of its length (each wall second for a curve)."""
    if shape.name == "spike":
        return SPIKE_WINDOW
    if shape.name in ("ramp", "diurnal"):
        return tuple(i / shape.duration_s for i in range(1, int(shape.duration_s)))
    return ()
