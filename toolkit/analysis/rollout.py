"""Staged rollout of a flag variant: plan, evaluate from events, and run against a live lab.

A plan is data (YAML, defaults below): the flag and variant, the stages (1 % → 5 % → 25 % →
100 %), each with a minimum duration and an evaluation window, the guardrails ("roll back if
p99 processing latency rises more than 20 % over two consecutive windows") and the judge
config used for each stage's verdict.

* At the end of each *window* the rollout looks: variant vs control over the attempts whose outcome
  time is in (stage start, window end] (``toolkit.analysis.compare.scope_attempts``, the scope of
  every command), which feeds the guardrails: a guardrail is breached when its metric's always-valid
  interval lies wholly beyond ``max_change`` in the bad direction (or, with ``require_significant:
  false``, its estimate does) at ``consecutive_windows`` looks in a row; looks without enough data
  are neutral (they neither count nor reset).
* At the end of a stage the whole stage is judged; the decision is ``promote`` (next stage),
  ``rollback``, ``extend`` (hold or not enough data: one more window, up to ``max_extensions``)
  or ``hold`` (stop and leave the flag where it is for a human).

Repeated looks: every window is a look at the stage's data so far (stage start to the window's end),
and any look may roll back or (at the stage's end) promote. Each look judges the metrics with
always-valid intervals (``toolkit.analysis.stats.confidence_sequence_halfwidth``, a normal-mixture
confidence sequence on the estimate and the standard error the comparison uses, user design effect
included), which hold however often and whenever the stage is looked at — a learner refreshing the
dashboard, an extension beyond the plan. The judge's α is shared by the stages below 100 %
(``stage_alpha``); a promote needs every required metric's harm bound, at ``stage_alpha``, inside its
margin (non-inferiority); a rollback needs a metric's interval, at ``rollback_alpha`` (the stage's α
shared by the judge's metrics), to lie wholly beyond its margin (or a guardrail's ``max_change``) in the
bad direction: harm beyond the margin is shown. Anything between holds. So an unchanged variant is
rolled back in at most α of rollouts however often it is looked at (measured: docs/analysis.md,
``toolkit.analysis.simulate``).

``decide`` and ``guardrail_breaches`` are pure; ``evaluate_timeline`` judges a past rollout from
its events; ``run_rollout`` drives the flag through the control API with injected I/O.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from scipy import stats as sps

from contract.brief import brief
from toolkit.analysis.compare import (DEFAULT_ABANDON_AFTER_S, CohortSelector, CompareResult, Window, _clean, _iso,
                                      compare_attempts)
from contract.events import FLAGS
from contract.durations import DurationError, format_duration, format_seconds, parse_duration
from toolkit.analysis.judge import (DEFAULT_CONFIG, JudgeConfig, JudgeConfigError, MetricResult, MetricSpec,
                                    _fmt_change, _harm_bound, judge, parse_judge_config)
from contract.regular_file import NotRegularFileError, read_regular
from toolkit.analysis.stats import (always_valid_p_value, confidence_sequence_halfwidth, difference_standard_error,
                                    power_always_valid_harm, power_always_valid_noninferiority)
from toolkit.slo.yaml_file import load_yaml_file

__all__ = [
    "ROLLOUT_SCHEMA",
    "RolloutPlanError",
    "Stage",
    "Guardrail",
    "RolloutPlan",
    "DEFAULT_PLAN",
    "WindowResult",
    "StageResult",
    "RolloutResult",
    "DecisionLog",
    "load_plan",
    "parse_plan",
    "plan_summary",
    "guardrail_breaches",
    "decide",
    "evaluate_window",
    "evaluate_timeline",
    "timeline_from_log",
    "run_rollout",
    "tested_stages",
    "stage_alpha",
    "rollback_alpha",
    "mixture_scale",
    "mixture_scales",
    "always_valid_verdict",
]

ROLLOUT_SCHEMA = "obslab.rollout/v1"


class RolloutPlanError(ValueError):
    """The rollout plan is invalid; the message names the file and the field."""


@dataclass(frozen=True)
class Stage:
    percent: float
    duration_s: float = 0.0   # minimum time at this stage before its verdict
    window_s: float = 0.0     # evaluation window for guardrails


@dataclass(frozen=True)
class Guardrail:
    metric: str               # a metric of the judge config
    max_change: float         # absolute for proportions, relative for latencies (0.20 = +20 %)
    consecutive_windows: int = 2
    require_significant: bool = True

    def describe(self, config: JudgeConfig) -> str:
        spec = config.metric(self.metric)
        if spec.kind == "proportion":
            amount = f"{self.max_change * 100:g} percentage points"
        else:
            amount = f"{self.max_change * 100:g} %"
        verb = {"increase": "rises", "decrease": "falls", "either": "moves"}[spec.direction]
        sig = " (its always-valid interval wholly beyond)" if self.require_significant else ""
        return (f"roll back if {spec.description} {verb} more than {amount}{sig} over "
                f"{self.consecutive_windows} consecutive windows")


@dataclass(frozen=True)
class RolloutPlan:
    flag: str = "release"
    variant: str = "canary"
    control: str = "stable"
    stages: tuple[Stage, ...] = (Stage(1, 1800, 300), Stage(5, 1800, 300), Stage(25, 3600, 600), Stage(100))
    guardrails: tuple[Guardrail, ...] = (Guardrail("processing_latency_p99", 0.20, 2),
                                         Guardrail("publish_success_rate", 0.01, 2))
    max_extensions: int = 2
    settle_s: float = 5.0     # wait after a window ends so its attempts can finish
    judge: JudgeConfig = DEFAULT_CONFIG

    def to_dict(self) -> dict[str, Any]:
        return {
            "flag": self.flag, "variant": self.variant, "control": self.control,
            "stages": [{"percent": s.percent, "duration": format_duration(s.duration_s),
                        "window": format_duration(s.window_s)} for s in self.stages],
            "guardrails": [{**asdict(g), "rule": g.describe(self.judge)} for g in self.guardrails],
            "max_extensions": self.max_extensions, "settle": format_duration(self.settle_s),
            "judge": {"alpha": self.judge.alpha, "pass_threshold": self.judge.pass_threshold,
                      "marginal_threshold": self.judge.marginal_threshold,
                      "metrics": [m.name for m in self.judge.metrics],
                      "minimums": asdict(self.judge.minimums)},
            "always_valid": _always_valid_dict(self),
        }


DEFAULT_PLAN = RolloutPlan()


def _windows_in(stage: Stage) -> int:
    return max(1, int(math.floor(stage.duration_s / stage.window_s + 1e-9))) if stage.window_s > 0 else 1


def tested_stages(plan: RolloutPlan) -> int:
    """Stages with a control cohort left to compare (below 100 %): each is one always-valid sequence."""
    return max(1, sum(1 for s in plan.stages if s.percent < 100))


def stage_alpha(plan: RolloutPlan) -> float:
    """The level of each stage's confidence sequences: the judge's α shared by the tested stages (their
    number is fixed by the plan, not by how often anyone looks). A promote's harm bounds are at this level."""
    return plan.judge.alpha / tested_stages(plan)


def rollback_alpha(plan: RolloutPlan) -> float:
    """The level a rollback needs: the stage's α shared by the judge's metrics (Bonferroni), so the chance
    that any metric of an unchanged variant is ever shown beyond its margin in the stage is at most
    ``stage_alpha``."""
    return stage_alpha(plan) / max(1, len(plan.judge.metrics))


# The mixture's base scale when a metric's margin is 0 (any change counts): a rate's 0.5 pp, a latency's 10 %.
MIXTURE_SCALE_WHEN_NO_MARGIN = {"proportion": 0.005, "shift": 0.10, "quantile": 0.10}
# A metric's confidence sequence mixes four scales, the base × these: narrow both for the margin-sized
# changes a large stage decides on and for the gross breakage a small stage (or a drill's short one) can show.
MIXTURE_SCALE_STEPS = (1.0, 4.0, 16.0, 64.0)


def mixture_scales(base: float) -> tuple[float, ...]:
    return tuple(base * k for k in MIXTURE_SCALE_STEPS)


def mixture_scale(spec: MetricSpec) -> tuple[float, ...]:
    """The scales τ of a metric's confidence sequence (equal-weight mixture): its margin (allowed change) × 1,
    4, 16 and 64. The first puts the sequence's narrowest point near where its half-width is comparable to the
    margin (a rate's 0.5 pp: about 4 000 variant attempts at a 5 % split and 99 % success, between the 5 % and
    the 25 % stage of the default ladder at lab traffic); the larger ones keep it narrow where a small stage
    has a standard error of several points (a 1 % stage's 270 attempts, a drill's stage of 100) and only a
    gross change can show. Fixed by the plan before the first look, as validity requires."""
    return mixture_scales(spec.allowed_change if spec.allowed_change > 0 else MIXTURE_SCALE_WHEN_NO_MARGIN[spec.kind])


def _always_valid_text(plan: RolloutPlan) -> str:
    return (f"always-valid intervals (normal-mixture confidence sequences): α {plan.judge.alpha:g} shared by "
            f"{tested_stages(plan)} stage(s), {stage_alpha(plan):.4g} each (promote: harm bound inside the margin "
            f"at {(1 - stage_alpha(plan)) * 100:.4g} %); rollback: an interval at {(1 - rollback_alpha(plan)) * 100:.4g} % "
            f"({len(plan.judge.metrics)} metrics) wholly beyond the margin; valid however often a stage is looked at")


def _always_valid_dict(plan: RolloutPlan) -> dict[str, Any]:
    return {"method": "normal-mixture confidence sequence (Howard et al. 2021; Waudby-Smith et al. 2021)",
            "tested_stages": tested_stages(plan), "stage_alpha": stage_alpha(plan),
            "rollback_alpha": rollback_alpha(plan),
            "mixture_scale": {m.name: mixture_scale(m) for m in plan.judge.metrics}}


def _num(raw: Any, where: str, *, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise RolloutPlanError(f"{where}: expected a number, got {brief(raw)}")
    if (lo is not None and raw < lo) or (hi is not None and raw > hi):
        raise RolloutPlanError(f"{where}: must be between {lo:g} and {hi:g}, got {brief(raw)}")
    return float(raw)


def _dur(raw: Any, where: str) -> float:
    try:
        return parse_duration(raw)
    except DurationError as e:
        raise RolloutPlanError(f"{where}: {e}") from None


def parse_plan(raw: Any, source: str = "<plan>") -> RolloutPlan:
    """A RolloutPlan from a mapping (top-level key ``rollout``); omitted fields keep the defaults."""
    if raw is None:
        return DEFAULT_PLAN
    if not isinstance(raw, Mapping):
        raise RolloutPlanError(f"{source}: expected a mapping at the top level")
    top = raw["rollout"] if isinstance(raw.get("rollout"), Mapping) else raw
    judge_raw = top.get("judge", raw.get("judge"))
    body = {k: v for k, v in top.items() if k != "judge"}
    known = {"flag", "variant", "control", "stages", "guardrails", "max_extensions", "settle"}
    unknown = set(body) - known
    if unknown:
        raise RolloutPlanError(f"{source}: unknown field(s) {', '.join(sorted(unknown))}")
    plan = DEFAULT_PLAN
    try:
        judge = parse_judge_config({"judge": judge_raw} if judge_raw is not None else None, f"{source}: judge")
    except JudgeConfigError as e:
        raise RolloutPlanError(str(e)) from None
    plan = replace(plan, judge=judge)
    flag = body.get("flag", plan.flag)
    if not isinstance(flag, str) or flag not in FLAGS:  # a list would be unhashable: a TypeError
        raise RolloutPlanError(f"{source}: flag: unknown flag {brief(flag)} (flags: {', '.join(FLAGS)})")
    variant = body.get("variant", FLAGS[flag][1] if flag != plan.flag else plan.variant)
    control = body.get("control", FLAGS[flag][0])
    if variant not in FLAGS[flag] or control not in FLAGS[flag] or variant == control:
        raise RolloutPlanError(f"{source}: variant/control must be two different variants of {flag}: "
                               f"{', '.join(FLAGS[flag])}")
    plan = replace(plan, flag=flag, variant=variant, control=control)
    if "stages" in body:
        if not isinstance(body["stages"], list) or not body["stages"]:
            raise RolloutPlanError(f"{source}: stages: expected a non-empty list")
        stages = []
        for i, s in enumerate(body["stages"]):
            where = f"{source}: stages[{i}]"
            if not isinstance(s, Mapping) or "percent" not in s:
                raise RolloutPlanError(f"{where}: expected a mapping with percent")
            extra = set(s) - {"percent", "duration", "window"}
            if extra:
                raise RolloutPlanError(f"{where}: unknown field(s) {', '.join(sorted(extra))}")
            pct = _num(s["percent"], f"{where}.percent", lo=0.01, hi=100)
            duration = _dur(s.get("duration", 0), f"{where}.duration")
            window = _dur(s.get("window", duration), f"{where}.window")
            if pct < 100 and (duration <= 0 or window <= 0):
                raise RolloutPlanError(f"{where}: a stage below 100 % needs a positive duration and window")
            if window > duration and pct < 100:
                raise RolloutPlanError(f"{where}.window: longer than the stage duration")
            stages.append(Stage(pct, duration, window))
        pcts = [s.percent for s in stages]
        if pcts != sorted(set(pcts)):
            raise RolloutPlanError(f"{source}: stages: percentages must strictly increase, got {pcts}")
        plan = replace(plan, stages=tuple(stages))
    if "guardrails" in body:
        if not isinstance(body["guardrails"], list):
            raise RolloutPlanError(f"{source}: guardrails: expected a list")
        guards = []
        names = {m.name for m in plan.judge.metrics}
        for i, g in enumerate(body["guardrails"]):
            where = f"{source}: guardrails[{i}]"
            if not isinstance(g, Mapping) or "metric" not in g or "max_change" not in g:
                raise RolloutPlanError(f"{where}: expected a mapping with metric and max_change")
            extra = set(g) - {"metric", "max_change", "consecutive_windows", "require_significant"}
            if extra:
                raise RolloutPlanError(f"{where}: unknown field(s) {', '.join(sorted(extra))}")
            if not isinstance(g["metric"], str) or g["metric"] not in names:
                raise RolloutPlanError(f"{where}.metric: {brief(g['metric'])} is not a judge metric "
                                       f"({', '.join(sorted(names))})")
            n = g.get("consecutive_windows", 2)
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise RolloutPlanError(f"{where}.consecutive_windows: expected a positive integer, got {brief(n)}")
            guards.append(Guardrail(g["metric"], _num(g["max_change"], f"{where}.max_change", lo=0),
                                    n, bool(g.get("require_significant", True))))
        plan = replace(plan, guardrails=tuple(guards))
    else:
        names = {m.name for m in plan.judge.metrics}
        plan = replace(plan, guardrails=tuple(g for g in plan.guardrails if g.metric in names))
    if "max_extensions" in body:
        plan = replace(plan, max_extensions=int(_num(body["max_extensions"], f"{source}: max_extensions", lo=0)))
    if "settle" in body:
        plan = replace(plan, settle_s=_dur(body["settle"], f"{source}: settle"))
    return plan


def load_plan(path: str | Path | None) -> RolloutPlan:
    if path is None:
        return DEFAULT_PLAN
    p = Path(path)
    if not p.exists():  # the common slip, in the reader's own words; load_yaml_file names the rest
        raise RolloutPlanError(f"{p}: no such rollout plan file")
    return parse_plan(load_yaml_file(p, RolloutPlanError), str(p))


def plan_summary(plan: RolloutPlan, rate_per_s: float | None = None, baseline_success: float = 0.99,
                 detect_drop: float = 0.01) -> dict[str, Any]:
    """The plan as data, and — given a traffic rate — the attempts each stage will see, the power of
    the stage's last look to roll back a ``detect_drop`` fall in success rate (its always-valid interval
    at ``rollback_alpha`` wholly beyond the success metric's margin) and the power to show the rate
    non-inferior (harm bound at ``stage_alpha`` inside the margin) when nothing changed, which a promote
    needs. Normal approximation, independent attempts."""
    out = {"schema": "obslab.rollout-plan/v1", "plan": plan.to_dict(), "stages": [],
           "always_valid": {**_always_valid_dict(plan), "rule": _always_valid_text(plan)}}
    mins = plan.judge.minimums
    try:
        spec = plan.judge.metric("publish_success_rate")
        success_margin, tau = spec.allowed_change, mixture_scale(spec)
    except KeyError:
        success_margin = detect_drop / 2
        tau = mixture_scales(success_margin or MIXTURE_SCALE_WHEN_NO_MARGIN["proportion"])
    for s in plan.stages:
        row: dict[str, Any] = {"percent": s.percent, "duration": format_duration(s.duration_s),
                               "window": format_duration(s.window_s)}
        if rate_per_s and s.percent < 100:
            share = s.percent / 100
            per_window = rate_per_s * s.window_s * share
            per_stage = rate_per_s * s.duration_s * share
            control_stage = rate_per_s * s.duration_s * (1 - share)
            row.update({
                "expected_variant_attempts_per_window": round(per_window, 1),
                "expected_variant_attempts_per_stage": round(per_stage, 1),
                "window_has_enough_for_rates": per_window >= mins.proportion_per_arm,
                "window_has_enough_for_p99": per_window * baseline_success >= mins.quantile_per_arm(0.99),
                "power_to_roll_back_success_drop": round(power_always_valid_harm(
                    baseline_success, baseline_success - detect_drop, control_stage, per_stage, success_margin,
                    rollback_alpha(plan), tau), 3) if per_stage >= 1 else 0.0,
                "power_to_show_non_inferiority": round(power_always_valid_noninferiority(
                    baseline_success, control_stage, per_stage, success_margin, stage_alpha(plan), tau), 3)
                    if per_stage >= 1 else 0.0,
            })
        out["stages"].append(row)
    if rate_per_s:
        out["assumptions"] = {"rate_per_s": rate_per_s, "baseline_success": baseline_success,
                              "detect_drop": detect_drop, "non_inferiority_margin": success_margin,
                              "rollback_alpha": rollback_alpha(plan), "non_inferiority_alpha": stage_alpha(plan),
                              "mixture_scale": tau}
    return out


# --------------------------------------------------------------------------- judging


@dataclass(frozen=True)
class WindowResult:
    stage_percent: float
    index: int
    start: str
    end: str
    control_attempts: int
    variant_attempts: int
    changes: dict[str, float | None]          # metric → change (None: not enough data)
    significant: dict[str, bool]
    verdict: str
    rule: str
    # metric → True when too thin for a comparison but beyond its absolute limit (judge fallback)
    fallback_breached: dict[str, bool] = field(default_factory=dict)
    # metric → the always-valid interval at the rollback level over the stage's data so far
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    since: str | None = None  # the look covers (since, end]: the stage's start


@dataclass(frozen=True)
class StageResult:
    percent: float
    start: str
    end: str | None
    windows: tuple[WindowResult, ...]
    decision: str            # promote | rollback | hold | extend | completed
    rule: str
    explanation: str
    compare: dict[str, Any] | None = None   # the stage-level compare (obslab.compare/v1)


@dataclass(frozen=True)
class RolloutResult:
    plan: RolloutPlan
    stages: tuple[StageResult, ...]
    outcome: str             # completed | rolled_back | held | in_progress
    rule: str
    explanation: str
    final_percent: float
    source: str = ""
    synthetic: str = "include"

    def to_dict(self) -> dict[str, Any]:
        return _clean({
            "schema": ROLLOUT_SCHEMA,
            "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "source": self.source,
            "plan": self.plan.to_dict(),
            "stages": [asdict(s) for s in self.stages],
            "outcome": self.outcome, "rule": self.rule, "explanation": self.explanation,
            "final_percent": self.final_percent, "synthetic": self.synthetic,
        })



def _window_from_compare(stage: float, index: int, start: datetime, end: datetime,
                         result: CompareResult, since: datetime | None = None) -> WindowResult:
    changes, significant, fallback, bounds = {}, {}, {}, {}
    for m in result.verdict.metrics:
        changes[m.name] = m.change
        significant[m.name] = bool(m.significant)  # shown beyond its margin, always-valid, at the rollback level
        if m.fallback is not None:
            fallback[m.name] = bool(m.failed)
        av = (m.comparison or {}).get("always_valid")
        if av and av.get("rollback_interval"):
            bounds[m.name] = tuple(av["rollback_interval"])
    return WindowResult(stage, index, _iso(start), _iso(end), result.control.attempts, result.treatment.attempts,
                        changes, significant, result.verdict.verdict, result.verdict.rule, fallback, bounds,
                        _iso(since) if since is not None else None)


def _estimate(spec: MetricSpec, r: MetricResult) -> tuple[float, float] | None:
    """(estimate, standard error) of a metric's change on the judge's scale (absolute for a rate, relative to
    the control for a latency), with the variance the comparison used (users' design effect included)."""
    c = r.comparison or {}
    if r.change is None or not math.isfinite(r.change):
        return None
    if spec.kind == "proportion":
        deff_c, deff_t = c.get("design_effect_control", 1.0), c.get("design_effect_treatment", 1.0)
        se = difference_standard_error(c["control_successes"] / deff_c, c["control_total"] / deff_c,
                                       c["treatment_successes"] / deff_t, c["treatment_total"] / deff_t)
    elif spec.kind == "quantile":
        se = c.get("rel_se")
    else:  # Hodges-Lehmann: the SE its distribution-free interval implies (normal approximation of U)
        lo, hi, med, alpha = c.get("ci_low"), c.get("ci_high"), c.get("control_median"), c.get("alpha", 0.05)
        if lo is None or hi is None or not med or not (math.isfinite(lo) and math.isfinite(hi)):
            return None
        se = (hi - lo) / (2 * float(sps.norm.isf(alpha / 2))) / abs(med)
    if se is None or not math.isfinite(se):
        return None
    return float(r.change), float(se)


def _beyond(direction: str, lo: float, hi: float, limit: float) -> tuple[str, bool]:
    """(classification, failed) of an interval against ±limit: wholly above is High, wholly below Low."""
    cls = "High" if lo > limit else "Low" if hi < -limit else "Pass"
    failed = (cls == "High" and direction in ("increase", "either")) or \
             (cls == "Low" and direction in ("decrease", "either"))
    return cls, failed


def _always_valid_metric(plan: RolloutPlan, spec: MetricSpec, r: MetricResult) -> MetricResult:
    if r.fallback is not None or r.change is None:
        return r  # no comparison: NoData, or its absolute fallback (a fixed-α exact test at the rollback level)
    a_stage, a_back, m = stage_alpha(plan), rollback_alpha(plan), max(1, len(plan.judge.metrics))
    est = _estimate(spec, r)
    if est is None:
        return replace(r, classification="Pass", failed=False, significant=False, non_inferior=False,
                       harm_bound=None, decision_alpha=a_back,
                       reason=f"{_fmt_change(spec.kind, r.change)}: no standard error for an always-valid interval")
    x, se = est
    tau = mixture_scale(spec)
    hw_stage = confidence_sequence_halfwidth(se, a_stage, tau)
    hw_back = confidence_sequence_halfwidth(se, a_back, tau)
    lo, hi = x - hw_stage, x + hw_stage
    harm, ok = _harm_bound(spec.direction, lo, hi, spec.allowed_change)
    cls, failed = _beyond(spec.direction, x - hw_back, x + hw_back, spec.allowed_change)
    p = (always_valid_p_value(x, se, tau, spec.allowed_change if x > 0 else -spec.allowed_change)
         if abs(x) > spec.allowed_change else 1.0)
    power = r.power
    c = r.comparison
    if spec.kind == "proportion":
        n_c, n_t = c.get("effective_control_total") or c["control_total"], \
            c.get("effective_treatment_total") or c["treatment_total"]
        pooled = (c["control_successes"] + c["treatment_successes"]) / (c["control_total"] + c["treatment_total"])
        power = power_always_valid_noninferiority(pooled, n_c, n_t, spec.allowed_change, a_stage, tau)
    av = {"estimate": x, "se": se, "mixture_scale": tau, "stage_alpha": a_stage, "interval": [lo, hi],
          "rollback_alpha": a_back, "rollback_interval": [x - hw_back, x + hw_back],
          "method": "normal-mixture confidence sequence on the estimate and its standard error"}
    allowed = _fmt_change(spec.kind, spec.allowed_change).lstrip("+")
    reason = (f"{_fmt_change(spec.kind, x)}, always-valid {(1 - a_stage) * 100:.4g} % interval "
              f"[{_fmt_change(spec.kind, lo)}, {_fmt_change(spec.kind, hi)}]: harm bound "
              f"{_fmt_change(spec.kind, harm)} {'inside' if ok else 'beyond'} the margin {allowed}; "
              f"at the rollback level {(1 - a_back) * 100:.4g} % [{_fmt_change(spec.kind, x - hw_back)}, "
              f"{_fmt_change(spec.kind, x + hw_back)}]: "
              + ("wholly beyond the margin in the bad direction (harm shown)" if failed else
                 "wholly beyond the margin in the good direction" if cls != "Pass" else "not wholly beyond the margin"))
    return replace(r, classification=cls, failed=failed, change_ci=(lo, hi), p_value=p,
                   p_adjusted=min(1.0, m * p), significant=cls != "Pass", decision_alpha=a_back, harm_bound=harm,
                   non_inferior=ok, power=power, reason=reason, comparison={**c, "always_valid": av})


def always_valid_verdict(plan: RolloutPlan, result: CompareResult) -> CompareResult:
    """The comparison re-judged for a look of a rollout: every metric's interval replaced by its always-valid
    one (``stage_alpha`` for the harm bound a promote needs, ``rollback_alpha`` for a failure), then the judge's
    rules (SRM hold, critical failure, score, non-inferiority) on them. Pure."""
    specs = {m.name: m for m in plan.judge.metrics}
    metrics = tuple(_always_valid_metric(plan, specs[r.name], r) if r.name in specs else r
                    for r in result.verdict.metrics)
    text = _always_valid_text(plan)
    v = result.verdict
    if v.rule == "srm":
        verdict = replace(v, metrics=metrics, multiplicity=text, decision_alpha=rollback_alpha(plan))
    else:
        verdict = replace(judge(metrics, plan.judge, None, text), srm=v.srm)
    return replace(result, verdict=verdict)


def _selectors(plan: RolloutPlan) -> tuple[CohortSelector, CohortSelector]:
    return (CohortSelector(f"{plan.flag}={plan.control}", ((plan.flag, plan.control),)),
            CohortSelector(f"{plan.flag}={plan.variant}", ((plan.flag, plan.variant),)))


def _compare(attempts, plan: RolloutPlan, percent: float, start: datetime, end: datetime,
             synthetic: str, abandon_after_s: float = DEFAULT_ABANDON_AFTER_S) -> CompareResult:
    control, variant = _selectors(plan)
    split = (1 - percent / 100, percent / 100) if percent < 100 else None
    return always_valid_verdict(plan, compare_attempts(
        attempts, control, variant, window=Window(start, end), config=plan.judge, expected_split=split,
        synthetic=synthetic, abandon_after_s=abandon_after_s, decision_alpha=rollback_alpha(plan),
        look=_always_valid_text(plan)))


def evaluate_window(attempts, plan: RolloutPlan, percent: float, index: int, start: datetime, end: datetime,
                    synthetic: str = "include", abandon_after_s: float = DEFAULT_ABANDON_AFTER_S,
                    since: datetime | None = None) -> WindowResult:
    """A look at the end of the window (start, end]: variant vs control over the attempts whose outcome time is
    in (since, end] — ``since`` the stage's start, so each look sees the stage's data so far (default: the
    window alone)."""
    return _window_from_compare(percent, index, start, end,
                                _compare(attempts, plan, percent, since or start, end, synthetic, abandon_after_s),
                                since)


def guardrail_breaches(plan: RolloutPlan, windows: list[WindowResult] | tuple[WindowResult, ...]
                       ) -> list[tuple[Guardrail, list[WindowResult]]]:
    """Guardrails whose last ``consecutive_windows`` looks with data all breached: the metric's always-valid
    interval at the rollback level wholly beyond ``max_change`` in the bad direction (or, with
    ``require_significant: false``, its estimate beyond it). Pure."""
    out = []
    for g in plan.guardrails:
        spec = plan.judge.metric(g.metric)
        streak: list[WindowResult] = []
        for w in windows:
            change = w.changes.get(g.metric)
            if change is None:
                if w.fallback_breached.get(g.metric):
                    streak.append(w)  # too thin to compare, but beyond the metric's absolute limit
                continue  # not enough data and no absolute breach: neutral
            bad = (change > g.max_change if spec.direction == "increase" else
                   change < -g.max_change if spec.direction == "decrease" else abs(change) > g.max_change)
            bounds = w.bounds.get(g.metric)
            if bad and g.require_significant and bounds is not None:
                bad = _beyond(spec.direction, bounds[0], bounds[1], g.max_change)[1]  # harm beyond it shown
            elif bad and g.require_significant:
                bad = bool(w.significant.get(g.metric))  # a look recorded before always-valid bounds
            if bad:
                streak.append(w)
            else:
                streak = []
        if len(streak) >= g.consecutive_windows:
            out.append((g, streak[-g.consecutive_windows:]))
    return out


def decide(plan: RolloutPlan, windows: list[WindowResult], stage_verdict: str | None, stage_rule: str | None,
           extensions_used: int) -> tuple[str, str, str]:
    """(decision, rule, explanation) for a stage given its windows and, at its end, its verdict. Pure.

    ``stage_verdict`` None means the stage is still running: only guardrails can decide then
    (decision ``continue`` when none is breached)."""
    breaches = guardrail_breaches(plan, windows)
    if breaches:
        g, streak = breaches[0]
        spec = plan.judge.metric(g.metric)
        moved = ", ".join((f"{w.changes[g.metric] * 100:+.1f}{' pp' if spec.kind == 'proportion' else ' %'}"
                           if w.changes.get(g.metric) is not None else
                           f"too few values to compare, beyond the absolute limit {spec.absolute_limit:g} {spec.unit}".rstrip()
                           + " (absolute fallback)")
                          + f" in ({w.start}, {w.end}]" for w in streak)
        return "rollback", f"guardrail:{g.metric}", f"{g.describe(plan.judge)}: {moved}"
    if stage_verdict is None:
        return "continue", "", "guardrails hold"
    if stage_verdict == "rollback":
        return "rollback", stage_rule or "judge", "the stage verdict is rollback"
    if stage_verdict == "promote":
        return "promote", stage_rule or "judge", "the stage verdict is promote"
    if extensions_used < plan.max_extensions:
        return "extend", stage_rule or "judge", (f"stage verdict {stage_verdict}: extending by one window "
                                                 f"({extensions_used + 1} of {plan.max_extensions})")
    return "hold", stage_rule or "judge", (f"stage verdict {stage_verdict} after {plan.max_extensions} "
                                           f"extensions: holding for a human decision")


def _stage_windows(start: datetime, end: datetime, window_s: float) -> list[tuple[datetime, datetime]]:
    out, t = [], start
    step = timedelta(seconds=window_s)
    while t + step <= end + timedelta(microseconds=1):
        out.append((t, t + step))
        t += step
    return out


def evaluate_timeline(attempts, plan: RolloutPlan, timeline: list[tuple[float, datetime, datetime | None]], *,
                      synthetic: str = "include", source: str = "",
                      abandon_after_s: float = DEFAULT_ABANDON_AFTER_S) -> RolloutResult:
    """Judge a past rollout: ``timeline`` lists (percent, start, end) of the stages as they ran
    (from a decision log or given by hand). Stops at the first rollback or hold. A stage and its
    windows hold the attempts whose outcome time is in (start, end]."""
    results: list[StageResult] = []
    final = 0.0
    for percent, start, end in timeline:
        final = percent
        if percent >= 100:
            results.append(StageResult(percent, _iso(start), _iso(end), (), "completed", "",
                                       f"{plan.variant} at 100 %: no control cohort left to compare"))
            return RolloutResult(plan, tuple(results), "completed", "", "every stage promoted", 100.0, source, synthetic)
        stage = next((s for s in plan.stages if s.percent == percent), None)
        window_s = stage.window_s if stage else (plan.stages[0].window_s or 300.0)
        if end is None:
            _, last = _data_end(attempts, abandon_after_s)
            end = last or start
        windows: list[WindowResult] = []
        decided = None
        for i, (ws, we) in enumerate(_stage_windows(start, end, window_s)):
            windows.append(evaluate_window(attempts, plan, percent, i, ws, we, synthetic, abandon_after_s, since=start))
            d = decide(plan, windows, None, None, 0)
            if d[0] == "rollback":
                decided = d
                break
        stage_compare = _compare(attempts, plan, percent, start, end, synthetic, abandon_after_s)
        if decided is None:
            v = stage_compare.verdict
            decided = decide(plan, windows, v.verdict, v.rule, plan.max_extensions)
            if decided[0] == "promote" and stage and (end - start).total_seconds() + 1e-6 < stage.duration_s:
                decided = ("hold", "stage-too-short", f"stage ran {format_seconds((end - start).total_seconds())}, "
                           f"less than its minimum {format_duration(stage.duration_s)}")
        results.append(StageResult(percent, _iso(start), _iso(end), tuple(windows), decided[0], decided[1],
                                   decided[2], stage_compare.to_dict()))
        if decided[0] != "promote":
            outcome = {"rollback": "rolled_back", "hold": "held"}.get(decided[0], decided[0])
            return RolloutResult(plan, tuple(results), outcome, decided[1], decided[2], percent, source, synthetic)
    return RolloutResult(plan, tuple(results), "in_progress", "", "the timeline ends before 100 %", final, source,
                         synthetic)


def _data_end(attempts, abandon_after_s: float) -> tuple[datetime | None, datetime | None]:
    from toolkit.analysis.compare import data_window

    return data_window(attempts, abandon_after_s)


# --------------------------------------------------------------------------- decision log & run


class DecisionLog:
    """Append-only JSONL of what the rollout did and why (one object per line, flushed)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")

    def write(self, action: str, at: datetime, **fields: Any) -> dict[str, Any]:
        entry = {"at": _iso(at), "action": action, **_clean(fields)}
        self._fh.write(json.dumps(entry, sort_keys=False) + "\n")
        self._fh.flush()
        return entry

    def close(self) -> None:
        self._fh.close()


def timeline_from_log(path: str | Path) -> list[tuple[float, datetime, datetime | None]]:
    """(percent, start, end) per stage from a decision log written by ``run_rollout``."""
    p = Path(path)
    try:
        lines = read_regular(p).decode("utf-8").splitlines()
    except FileNotFoundError:
        raise RolloutPlanError(f"{p}: no such decision log") from None
    except OSError as e:
        raise RolloutPlanError(str(e) if isinstance(e, NotRegularFileError) else f"{p}: cannot read: {e.strerror or e}"
                               ) from None
    except UnicodeDecodeError as e:
        raise RolloutPlanError(f"{p}: not valid UTF-8 (byte {e.object[e.start]:#04x} at offset {e.start})") from None
    starts: list[tuple[float, datetime]] = []
    end_of_last = None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
            at = datetime.fromisoformat(e["at"].replace("Z", "+00:00"))
        except (ValueError, KeyError, AttributeError):
            raise RolloutPlanError(f"{p}:{i}: not a decision log entry") from None
        if e.get("action") == "stage_started":
            starts.append((float(e["percent"]), at))
        elif e.get("action") in ("rolled_back", "held", "completed", "aborted"):
            end_of_last = at
    if not starts:
        raise RolloutPlanError(f"{p}: no stage_started entries")
    out = []
    for i, (pct, at) in enumerate(starts):
        end = starts[i + 1][1] if i + 1 < len(starts) else end_of_last
        out.append((pct, at, end))
    return out


def run_rollout(plan: RolloutPlan, *, set_percent: Callable[[float], Any], load_attempts: Callable[[], Any],
                log: DecisionLog, now: Callable[[], datetime] | None = None,
                sleep: Callable[[float], None] | None = None, synthetic: str = "include",
                on_event: Callable[[dict[str, Any]], None] | None = None,
                abandon_after_s: float = DEFAULT_ABANDON_AFTER_S) -> RolloutResult:
    """Drive the flag stage by stage; roll back (variant to 0 %) on a guardrail breach, a rollback
    verdict or any error. Returns what happened; the decision log has every step."""
    import time as _time

    now = now or (lambda: datetime.now(timezone.utc))
    sleep = sleep or _time.sleep
    emit = on_event or (lambda e: None)

    def wait_until(t: datetime) -> None:
        while (remaining := (t - now()).total_seconds()) > 0:
            sleep(min(remaining, 1.0))

    def rollback(rule: str, why: str, percent: float, stages: list[StageResult]) -> RolloutResult:
        set_percent(0.0)
        emit(log.write("rolled_back", now(), from_percent=percent, rule=rule, explanation=why))
        return RolloutResult(plan, tuple(stages), "rolled_back", rule, why, 0.0, synthetic=synthetic)

    stages: list[StageResult] = []
    percent = 0.0
    emit(log.write("plan", now(), plan=plan.to_dict()))
    try:
        for stage in plan.stages:
            percent = stage.percent
            set_percent(percent)
            stage_start = now()
            emit(log.write("stage_started", stage_start, percent=percent, flag=plan.flag, variant=plan.variant))
            if percent >= 100:
                stages.append(StageResult(percent, _iso(stage_start), None, (), "completed", "",
                                          f"{plan.variant} at 100 %"))
                emit(log.write("completed", now(), percent=percent))
                return RolloutResult(plan, tuple(stages), "completed", "", "every stage promoted", 100.0,
                                         synthetic=synthetic)
            windows: list[WindowResult] = []
            target_end = stage_start + timedelta(seconds=stage.duration_s)
            extensions = 0
            w_start = stage_start
            while True:
                w_end = w_start + timedelta(seconds=stage.window_s)
                wait_until(w_end + timedelta(seconds=plan.settle_s))
                attempts = load_attempts()
                # A look at the stage so far: its always-valid intervals allow any number of looks.
                result = _compare(attempts, plan, percent, stage_start, w_end, synthetic, abandon_after_s)
                w = _window_from_compare(percent, len(windows), w_start, w_end, result, stage_start)
                windows.append(w)
                emit(log.write("window", now(), **asdict(w)))
                decision, rule, why = decide(plan, windows, None, None, extensions)
                if decision == "rollback":
                    stages.append(StageResult(percent, _iso(stage_start), _iso(w_end), tuple(windows), decision,
                                              rule, why))
                    return rollback(rule, why, percent, stages)
                w_start = w_end
                if w_end < target_end:
                    continue
                v = result.verdict  # the stage verdict: the last look, over the whole stage
                decision, rule, why = decide(plan, windows, v.verdict, v.rule, extensions)
                emit(log.write("stage_decision", now(), percent=percent, decision=decision, rule=rule,
                               explanation=why, verdict=v.verdict, verdict_explanation=v.explanation,
                               score=v.score, variant_attempts=result.treatment.attempts,
                               control_attempts=result.control.attempts))
                if decision == "extend":
                    extensions += 1
                    target_end = w_end + timedelta(seconds=stage.window_s)
                    continue
                stages.append(StageResult(percent, _iso(stage_start), _iso(w_end), tuple(windows), decision, rule,
                                          f"{why}: {v.explanation}", result.to_dict()))
                if decision == "rollback":
                    return rollback(rule, f"{why}: {v.explanation}", percent, stages)
                if decision == "hold":
                    emit(log.write("held", now(), percent=percent, rule=rule, explanation=why))
                    return RolloutResult(plan, tuple(stages), "held", rule, why, percent, synthetic=synthetic)
                break  # promote: next stage
        return RolloutResult(plan, tuple(stages), "completed", "", "every stage promoted", percent,
                             synthetic=synthetic)
    except BaseException as e:
        # Never leave a half-rolled-out variant behind an error or an interrupt.
        rollback_error = None
        try:
            set_percent(0.0)
        except Exception as err:  # the control API may be what failed; say so in the log
            rollback_error = f"{type(err).__name__}: {err}"
        log.write("aborted", now(), from_percent=percent, error=f"{type(e).__name__}: {e}",
                  rolled_back=rollback_error is None, rollback_error=rollback_error)
        raise


class FlagControl:
    """Sets a flag's rollout percentage through the service's control API (bearer token).

    Body of ``PUT /admin/flags/{flag}``: ``{"default": control, "rollout": {variant: percent}}``
    (demo_service/flags.py)."""

    def __init__(self, url: str, token: str, plan: RolloutPlan, timeout_s: float = 5.0):
        import requests

        self.url = url.rstrip("/")
        self.plan = plan
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.session.headers["X-Actor"] = "obslab-rollout"  # names who changed the flag in the audit event

    def set_percent(self, percent: float) -> dict[str, Any]:
        import requests

        path = f"/admin/flags/{self.plan.flag}"
        body = {"default": self.plan.control, "rollout": {self.plan.variant: float(percent)}}
        try:
            resp = self.session.put(self.url + path, json=body, timeout=self.timeout_s)
        except requests.ConnectionError:
            raise ConnectionError(f"no service answering at {self.url} (is the lab running?)") from None
        except requests.Timeout:
            raise ConnectionError(f"{self.url} did not answer PUT {path} within {self.timeout_s:g}s") from None
        if resp.status_code in (401, 403):
            raise PermissionError(f"{self.url} refused the admin token (HTTP {resp.status_code}) on PUT {path}")
        if resp.status_code >= 400:
            raise ConnectionError(f"PUT {self.url}{path} failed: HTTP {resp.status_code}: {resp.text[:200].strip()}")
        return resp.json() if resp.content else {}
