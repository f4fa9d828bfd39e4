"""Simulated staged rollouts: how often the rollout rules roll back an unchanged variant (A/A, with a
look at every window) and how often they catch a regression, at a given traffic.

Each simulated rollout runs the plan's stages exactly as ``toolkit.analysis.rollout.run_rollout``
does — a look at the stage's data so far at the end of every window, its guardrails (``decide``),
the stage verdict at the end, extensions, with the always-valid intervals
(``toolkit.analysis.rollout.always_valid_verdict``) — over attempts generated in-process instead of
read from an event log, through the same judge (``toolkit.analysis.compare.compare_samples``).
``looks_per_window`` looks more often than the plan's windows (a learner refreshing the dashboard):
the intervals are valid however often they are read, which the simulation measures. Pure and seeded:
the figures in docs/analysis.md come from ``obslab rollout simulate --standard``.

Traffic model (``Traffic``): attempts arrive as a Poisson stream; each belongs to a user drawn by
activity weight (Pareto-tailed when ``user_tail`` is set: a few users make many attempts; None:
every attempt a new user, as the lab's load generator does). Assignment is sticky per user (a
user's fixed uniform draw below the stage's share puts them in the variant, at every stage). Users
differ: their own success probability (Beta with ``user_success_concentration``) and their own
latency factor (log-normal, ``user_latency_sigma``), so one user's attempts are correlated.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from scipy import stats as sps

from toolkit.analysis.compare import CohortSample, compare_samples
from toolkit.analysis.rollout import (DEFAULT_PLAN, RolloutPlan, _always_valid_text, _window_from_compare, _windows_in,
                                      always_valid_verdict, decide, rollback_alpha, stage_alpha)

__all__ = ["HEAVY_USERS", "summary_table", "Traffic", "Regression", "SimulationSummary", "simulate_rollout", "simulate_rollouts",
           "SIMULATION_METRICS", "simulation_plan", "STANDARD_SCENARIOS", "standard_scenarios", "LAB_RATE_PER_S"]

# Attempts per second of the lab under load: the documented lab run (docs/analysis.md, worked
# example 2) had 159 finished attempts per 10-second window.
LAB_RATE_PER_S = 15.0
# The judge's metrics the simulation generates data for: the success rate, the p95 and the p99
# guardrail (the Hodges-Lehmann shifts and the secondary shares are left out for speed; each
# extra metric is one more Holm test, which only makes a false rollback rarer).
SIMULATION_METRICS = ("publish_success_rate", "processing_latency_p95", "processing_latency_p99")
_T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Traffic:
    rate_per_s: float = LAB_RATE_PER_S
    users: int = 3000
    user_tail: float | None = None            # Pareto shape of user activity; None: a new user per attempt
    base_success: float = 0.99
    user_success_concentration: float | None = None  # Beta(κp, κ(1−p)) per user; None: the same p for all
    latency_mu: float = 6.0                   # log ms: median ≈ 400 ms
    latency_sigma: float = 0.5
    user_latency_sigma: float = 0.0           # per-user log-latency effect


HEAVY_USERS = dict(users=1500, user_tail=1.5, user_success_concentration=20.0, user_latency_sigma=0.4)


@dataclass(frozen=True)
class Regression:
    success_drop: float = 0.0                 # absolute fall of the variant's success probability
    latency_factor: float = 1.0               # variant latencies × this (1.2: p95 +20 %)

    @property
    def is_null(self) -> bool:
        return self.success_drop == 0.0 and self.latency_factor == 1.0


@dataclass(frozen=True)
class SimulationSummary:
    runs: int
    seed: int
    traffic: dict[str, Any]
    regression: dict[str, Any]
    rate_per_s: float
    stage_alpha: float                        # level of a stage's always-valid intervals (a promote's harm bounds)
    rollback_alpha: float                     # level a rollback needs (the stage's α over the judge's metrics)
    looks_per_window: int                     # looks per planned window (1: as planned)
    mean_looks: float                         # looks taken per rollout, on average
    outcomes: dict[str, int]                  # rolled_back | held | completed
    rollback_rate: float
    rollback_ci: tuple[float, float]          # Clopper-Pearson 95 %
    rules: dict[str, int] = field(default_factory=dict)   # rule of each rollback
    rollback_stage: dict[str, int] = field(default_factory=dict)
    label: str = ""
    continue_on_hold: bool = False

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def simulation_plan(plan: RolloutPlan = DEFAULT_PLAN, bootstrap_resamples: int = 2000) -> RolloutPlan:
    """The plan with its judge cut to ``SIMULATION_METRICS`` (guardrails on other metrics dropped)."""
    metrics = tuple(m for m in plan.judge.metrics if m.name in SIMULATION_METRICS)
    judge = replace(plan.judge, metrics=metrics, bootstrap_resamples=bootstrap_resamples)
    names = {m.name for m in metrics}
    return replace(plan, judge=judge, guardrails=tuple(g for g in plan.guardrails if g.metric in names))


class _Population:
    """One rollout's users: activity weights, sticky assignment draws, their own success and latency."""

    def __init__(self, traffic: Traffic, rng: np.random.Generator):
        self.t = traffic
        self.rng = rng
        if traffic.user_tail is not None:
            w = rng.pareto(traffic.user_tail, traffic.users) + 1.0
            self.weights = w / w.sum()
            self.n_users = traffic.users
        else:
            self.weights = None
            self.n_users = 0
        self.next_new_user = 0
        self._assign: dict[int, float] = {}

    def _user_arrays(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(assignment draw, success probability, log-latency effect) per user, fixed per run."""
        if not hasattr(self, "_u_draw"):
            size = self.n_users if self.weights is not None else 0
            self._u_draw = self.rng.random(size)
            self._u_p = self._draw_p(size)
            self._u_lat = self.rng.normal(0, self.t.user_latency_sigma, size) if self.t.user_latency_sigma else np.zeros(size)
        if self.weights is not None:
            return self._u_draw[users], self._u_p[users], self._u_lat[users]
        n = users.size
        return self.rng.random(n), self._draw_p(n), (self.rng.normal(0, self.t.user_latency_sigma, n)
                                                     if self.t.user_latency_sigma else np.zeros(n))

    def _draw_p(self, size: int) -> np.ndarray:
        k = self.t.user_success_concentration
        if k is None:
            return np.full(size, self.t.base_success)
        return self.rng.beta(k * self.t.base_success, k * (1 - self.t.base_success), size)

    def window(self, percent: float, seconds: float, regression: Regression):
        """Attempts of one window: (is_variant, succeeded, latency_ms, user) arrays."""
        n = int(self.rng.poisson(self.t.rate_per_s * seconds))
        if self.weights is not None:
            users = self.rng.choice(self.n_users, n, p=self.weights)
        else:
            users = np.arange(self.next_new_user, self.next_new_user + n)
            self.next_new_user += n
        draw, p_user, lat_user = self._user_arrays(users)
        variant = draw < percent / 100.0
        p = np.clip(p_user - np.where(variant, regression.success_drop, 0.0), 0.0, 1.0)
        ok = self.rng.random(n) < p
        log_lat = self.rng.normal(self.t.latency_mu, self.t.latency_sigma, n) + lat_user
        lat = np.exp(log_lat) * np.where(variant, regression.latency_factor, 1.0)
        return variant, ok, lat, users


def _cohort(label: str, mask: np.ndarray, ok: np.ndarray, lat: np.ndarray, users: np.ndarray) -> CohortSample:
    u, ok_m = users[mask], ok[mask]
    codes, inverse = np.unique(u, return_inverse=True)
    s_u = np.bincount(inverse, weights=ok_m.astype(float), minlength=codes.size)
    n_u = np.bincount(inverse, minlength=codes.size).astype(float)
    values = lat[mask][ok_m]
    value_users = inverse[ok_m]
    name_rate, *value_names = SIMULATION_METRICS
    return CohortSample(label, label, int(mask.sum()), int(codes.size), 0, None, None,
                        proportions={name_rate: (int(ok_m.sum()), int(mask.sum()))},
                        values={n: values for n in value_names},
                        user_proportions={name_rate: (s_u, n_u)},
                        value_users={n: value_users for n in value_names})


def _compare(plan: RolloutPlan, percent: float, data: list[tuple[np.ndarray, ...]]):
    variant, ok, lat, users = (np.concatenate(x) for x in zip(*data))
    return always_valid_verdict(plan, compare_samples(
        _cohort("control", ~variant, ok, lat, users), _cohort("variant", variant, ok, lat, users), plan.judge,
        expected_split=(1 - percent / 100, percent / 100), decision_alpha=rollback_alpha(plan),
        look=_always_valid_text(plan)))


def simulate_rollout(plan: RolloutPlan, traffic: Traffic, regression: Regression,
                     rng: np.random.Generator, continue_on_hold: bool = False,
                     looks_per_window: int = 1) -> tuple[str, str, float, int]:
    """One rollout under ``run_rollout``'s rules: (outcome, rule, percent where it ended, looks taken).

    Every look (``looks_per_window`` per planned window) compares the stage's data so far, as ``run_rollout``
    does at each window's end. ``continue_on_hold``: a held stage goes on to the next one, as if a human
    pressed continue — every stage then takes every look it can (the worst case for false rollbacks); the
    outcome is ``completed`` or ``rolled_back``."""
    if looks_per_window < 1:
        raise ValueError(f"looks_per_window must be at least 1, got {looks_per_window}")
    pop = _Population(traffic, rng)
    clock = 0.0
    looks = 0
    for stage in plan.stages:
        if stage.percent >= 100:
            return "completed", "", 100.0, looks
        windows, stage_data, extensions = [], [], 0
        step = stage.window_s / looks_per_window
        target = _windows_in(stage) * looks_per_window
        stage_start = _T0 + timedelta(seconds=clock)
        while True:
            data = pop.window(stage.percent, step, regression)
            stage_data.append(data)
            start = _T0 + timedelta(seconds=clock)
            clock += step
            looks += 1
            result = _compare(plan, stage.percent, stage_data)
            windows.append(_window_from_compare(stage.percent, len(windows), start,
                                                _T0 + timedelta(seconds=clock), result, stage_start))
            decision, rule, _ = decide(plan, windows, None, None, extensions)
            if decision == "rollback":
                return "rolled_back", rule, stage.percent, looks
            if len(windows) < target:
                continue
            v = result.verdict  # the stage's verdict: its last look covers the whole stage
            decision, rule, _ = decide(plan, windows, v.verdict, v.rule, extensions)
            if decision == "extend":
                extensions += 1
                target += looks_per_window
                continue
            if decision == "rollback":
                return "rolled_back", rule, stage.percent, looks
            if decision == "hold" and not continue_on_hold:
                return "held", rule, stage.percent, looks
            break
    return "completed", "", plan.stages[-1].percent, looks


def simulate_rollouts(plan: RolloutPlan = DEFAULT_PLAN, traffic: Traffic = Traffic(),
                      regression: Regression = Regression(), runs: int = 200, seed: int = 0,
                      label: str = "", continue_on_hold: bool = False, looks_per_window: int = 1) -> SimulationSummary:
    """``runs`` seeded rollouts; the rollback rate with its Clopper-Pearson 95 % interval."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    rng = np.random.default_rng(seed)
    outcomes = {"rolled_back": 0, "held": 0, "completed": 0}
    rules: dict[str, int] = {}
    stages: dict[str, int] = {}
    looks = 0
    for _ in range(runs):
        outcome, rule, percent, taken = simulate_rollout(plan, traffic, regression, rng, continue_on_hold,
                                                         looks_per_window)
        looks += taken
        outcomes[outcome] += 1
        if outcome == "rolled_back":
            rules[rule] = rules.get(rule, 0) + 1
            stages[f"{percent:g}"] = stages.get(f"{percent:g}", 0) + 1
    k = outcomes["rolled_back"]
    ci = sps.binomtest(k, runs).proportion_ci(confidence_level=0.95, method="exact")
    from dataclasses import asdict

    return SimulationSummary(runs, seed, asdict(traffic), asdict(regression), traffic.rate_per_s, stage_alpha(plan),
                             rollback_alpha(plan), looks_per_window, looks / runs, outcomes, k / runs,
                             (float(ci.low), float(ci.high)), rules, stages, label, continue_on_hold)


# The scenarios published in docs/analysis.md: A/A with new users per attempt and with sticky
# heavy-tailed users, each also looked at twice as often as the plan's windows, then regressions of
# several sizes at lab traffic. (label, traffic, regression, looks per window)
STANDARD_SCENARIOS: tuple[tuple[str, dict[str, Any], Regression, int], ...] = (
    ("A/A, a new user per attempt", {}, Regression(), 1),
    ("A/A, sticky heavy-tailed users", HEAVY_USERS, Regression(), 1),
    ("A/A, a new user per attempt, 2× the looks", {}, Regression(), 2),
    ("A/A, sticky heavy-tailed users, 2× the looks", HEAVY_USERS, Regression(), 2),
    ("success −0.5 pp", {}, Regression(success_drop=0.005), 1),
    ("success −1 pp", {}, Regression(success_drop=0.01), 1),
    ("success −2 pp", {}, Regression(success_drop=0.02), 1),
    ("success −5 pp", {}, Regression(success_drop=0.05), 1),
    ("latency ×1.2 (p95 +20 %)", {}, Regression(latency_factor=1.2), 1),
    ("latency ×1.5 (p95 +50 %)", {}, Regression(latency_factor=1.5), 1),
    ("latency ×1.2, heavy-tailed users", HEAVY_USERS, Regression(latency_factor=1.2), 1),
)


def standard_scenarios(runs: int = 200, seed: int = 0, rate_per_s: float = LAB_RATE_PER_S,
                       plan: RolloutPlan | None = None, continue_on_hold: bool = False) -> list[SimulationSummary]:
    plan = plan or simulation_plan()
    return [simulate_rollouts(plan, Traffic(rate_per_s=rate_per_s, **extra), reg, runs, seed + i, label,
                              continue_on_hold, looks)
            for i, (label, extra, reg, looks) in enumerate(STANDARD_SCENARIOS)]


def summary_table(summaries: list[SimulationSummary]) -> str:
    """Markdown table of the summaries (what docs/analysis.md publishes): ``completed`` are the rollouts that
    reached 100 % (for a regression: promoted although worse)."""
    lines = ["| scenario | runs | looks/run | rolled back | 95 % CI | held | completed | rollback rules |",
             "|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        rules = ", ".join(f"{k} {v}" for k, v in sorted(s.rules.items())) or "—"
        lines.append(f"| {s.label} | {s.runs} | {s.mean_looks:.1f} | {s.rollback_rate:.3f} "
                     f"| [{s.rollback_ci[0]:.3f}, {s.rollback_ci[1]:.3f}] "
                     f"| {s.outcomes['held']} | {s.outcomes['completed']} | {rules} |")
    return "\n".join(lines)
