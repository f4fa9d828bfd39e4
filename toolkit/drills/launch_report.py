"""The report of a launch run: what the learner's plan caught, what it missed, and what a stronger plan
would have watched, beside the engine's figures for each rollout stage.

Each stage's window (the stage's start to the next stage's, outcome time in (start, end]) is compared
variant against control with the canary judge (``toolkit.analysis.compare.compare_attempts``): every
figure here is the engine's, quoted with its own wording (``reason``) and counts. Each signal of the
launch's regression gets the plan's verdict (``toolkit.drills.launch.plan_coverage``: caught by a
rollback guardrail, only seen, missed) and the judge metrics that measure it, stage by stage; a signal
no judge metric measures says so rather than showing a figure computed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contract.events import format_time
from toolkit.analysis.compare import Window, compare_attempts, parse_selector
from toolkit.analysis.stats import JUDGE_MINIMUMS, power_two_proportions
from toolkit.drills.launch import LaunchBrief, Signal, plan_coverage
from toolkit.drills.launch_load import planning_rates, values_needed

__all__ = ["LAUNCH_REPORT_SCHEMA", "StageWindow", "engine_metrics_for", "launch_report", "render_launch_report"]

LAUNCH_REPORT_SCHEMA = "obslab.launch-report/v1"

# The canary judge's metrics (toolkit.analysis.judge.DEFAULT_METRICS) that measure a signal, by what the
# signal reads. A signal absent here has no engine figure yet, and the report says so.
_BY_LATENCY = {
    ("upload_completed", "publish_succeeded"): ("processing_latency_p95", "processing_latency_p99",
                                                "processing_latency_shift"),
    ("upload_started", "publish_succeeded"): ("e2e_latency_p95",),
    ("transcode_started", "transcode_completed"): ("transcode_latency_shift",),
}
_BY_EVENT = {"chunk_retry": ("chunk_retry_share",), "publish_failed": ("publish_success_rate", "timeout_share"),
             "publish_succeeded": ("publish_success_rate",)}
_BY_OUTCOME = {"failed": ("publish_success_rate",), "succeeded": ("publish_success_rate",),
               "abandoned": ("publish_success_rate",)}


def engine_metrics_for(signal: Signal) -> tuple[str, ...]:
    """The judge metrics that measure ``signal`` (empty: the engine has no figure for it yet)."""
    if signal.latency is not None:
        return _BY_LATENCY.get(signal.latency, ())
    if signal.value is not None:
        if signal.value[1] == "duration_ms" and signal.value[0] == "publish_succeeded":
            return _BY_LATENCY[("upload_completed", "publish_succeeded")]
        return ()
    names: list[str] = []
    for key in signal.events:
        names += [n for n in _BY_EVENT.get(key, ()) if n not in names]
    for key in signal.outcomes:
        names += [n for n in _BY_OUTCOME.get(key, ()) if n not in names]
    return tuple(names)


@dataclass(frozen=True)
class StageWindow:
    percent: float
    start: datetime   # naive UTC
    end: datetime
    load: dict[str, Any] | None = None  # the stage's floor of users (launch_run's ``stage_loads``), if raised


def _plan_signal(metric: Any) -> Signal:
    """What a plan metric reads, as a launch signal, so the judge metrics that measure it can be found."""
    counted = metric.numerator or metric.count
    return Signal(metric.name, latency=metric.latency, value=metric.value,
                  events=counted.events if counted else (), outcomes=counted.outcomes if counted else ())


def _judge_metrics_of(metric: Any) -> tuple[str, ...]:
    """The judge metrics that measure a plan metric; for a percentile, the judge's same percentile if it has one."""
    names = engine_metrics_for(_plan_signal(metric))
    same = tuple(n for n in names if metric.statistic and n.endswith("_" + metric.statistic))
    return same or names


def _plan_metric_at_stage(metric: Any, rolls_back: bool, metrics: dict[str, Any], result: dict[str, Any],
                          percent: float) -> dict[str, Any]:
    """Whether a plan metric could be evaluated at a stage, by which judge metric, with which fallback, and for
    a rollback guardrail the power to detect its threshold at the stage's counts."""
    names = [n for n in _judge_metrics_of(metric) if n in metrics]
    fallback = [n for n in names if metrics[n].get("fallback")]
    judged = [n for n in names if metrics[n]["classification"] != "NoData" and n not in fallback]
    n_c, n_v = result["control"]["attempts"], result["treatment"]["attempts"]
    alpha = result["config"]["alpha"]
    row: dict[str, Any] = {"metric": metric.name, "role": metric.role, "rolls_back": rolls_back,
                           "judge_metrics": names, "evaluable": bool(judged), "judged_by": judged,
                           "fallback": fallback, "power": None, "power_note": ""}
    if not names or not rolls_back:
        return row
    elif (rates := planning_rates(metric)) is not None:
        row["power"] = round(power_two_proportions(rates[0], rates[1], n_c, n_v, alpha), 3) if n_c and n_v else 0.0
        row["power_note"] = (f"power to detect {rates[0]:.1%} → {rates[1]:.1%} (its threshold from the planning "
                             f"baseline) with {n_v:,} variant and {n_c:,} control attempts at α = {alpha:g}")
    else:
        need = values_needed(metric, percent / 100, alpha, JUDGE_MINIMUMS)
        has = {metrics[n]["comparison"].get("treatment_n") for n in names} - {None}
        row["power_note"] = (f"a {metric.statistic or 'value'} comparison needs {need:,} values per arm"
                             + (f" (the variant had {max(has):,})" if has else "")
                             + ("; checked against the judge's absolute limit instead" if fallback and not judged
                                else "" if judged else "; no absolute limit to fall back on: not judged"))
    return row


def launch_report(attempts: Any, launch: LaunchBrief, plan: Any, stages: list[StageWindow], *,
                  source: str = "", abandon_after_s: float = 600.0) -> dict[str, Any]:
    """The report as data (``obslab.launch-report/v1``). ``attempts`` is the engine's attempts relation
    (``toolkit.analysis.compare.load_attempts``), ``plan`` a checked ``measurement_plan.Plan``."""
    flag, variant, control = launch.change["flag"], launch.change["variant"], launch.change["control"]
    control_sel, treatment_sel = parse_selector(f"{flag}={control}"), parse_selector(f"{flag}={variant}")
    compared = []
    for stage in stages:
        result = compare_attempts(attempts, control_sel, treatment_sel, window=Window(stage.start, stage.end),
                                  source=source, abandon_after_s=abandon_after_s).to_dict()
        compared.append((stage, {m["name"]: m for m in result["metrics"]}, result))
    rollback = set(getattr(plan, "rollback_when", ()))
    plan_rows = [[_plan_metric_at_stage(m, m.role == "guardrail" and m.threshold is not None and m.name in rollback,
                                        metrics, result, stage.percent) for m in plan.metrics]
                 for stage, metrics, result in compared]
    signals = []
    for signal, coverage in zip(launch.signals, plan_coverage(plan, launch)):
        names = engine_metrics_for(signal)
        figures = []
        for stage, metrics, _result in compared:
            for name in names:
                m = metrics.get(name)
                if m is None:
                    continue
                figures.append({"stage_percent": stage.percent, "metric": name, "description": m["description"],
                                "classification": m["classification"], "failed": m["failed"], "reason": m["reason"],
                                "fallback": bool(m.get("fallback"))})
        signals.append({
            "signal": signal.name, "verdict": coverage.verdict,
            "watched_by": [{"metric": n, "role": r} for n, r in coverage.watched_by],
            "rolls_back": list(coverage.rolls_back),
            "engine_metrics": list(names),
            "figures": figures,
            "moved": any(f["failed"] for f in figures),
            # Whether any stage had enough data for the engine to judge the signal at all.
            "judged": any(f["classification"] != "NoData" for f in figures),
            # The stages at which a comparison judged it (an absolute-limit fallback is not a comparison).
            "judged_stages": sorted({f["stage_percent"] for f in figures
                                     if f["classification"] != "NoData" and not f["fallback"]}),
        })
    return {
        "schema": LAUNCH_REPORT_SCHEMA,
        "launch": launch.id,
        "title": launch.title,
        "change": dict(launch.change),
        "source": source,
        "stages": [{"percent": stage.percent, "start": format_time(stage.start), "end": format_time(stage.end),
                    "control_attempts": result["control"]["attempts"],
                    "treatment_attempts": result["treatment"]["attempts"],
                    "control_users": result["control"]["users"], "treatment_users": result["treatment"]["users"],
                    "load": stage.load, "plan_metrics": rows,
                    "verdict": result["verdict"]["verdict"], "rule": result["verdict"]["rule"]}
                   for (stage, _m, result), rows in zip(compared, plan_rows)],
        "signals": signals,
        "what_happened": launch.what_happened,
        "stronger_plan": list(launch.stronger_plan),
    }


_VERDICT_TEXT = {
    "caught": "caught: a rollback guardrail watches it",
    "seen": "seen: the plan watches it, but nothing rolls back on it",
    "missed": "missed: no metric of the plan reads it",
}


def _evaluable_text(row: dict[str, Any]) -> str:
    if not row["judge_metrics"]:
        return "not evaluable (the engine computes no figure for it yet)"
    if row["evaluable"]:
        return "evaluable (" + ", ".join(row["judged_by"]) + ")"
    if row["fallback"]:
        return ("not enough data for a comparison: absolute-threshold fallback ("
                + ", ".join(row["fallback"]) + ")")
    return "not enough data: not judged (" + ", ".join(row["judge_metrics"]) + ")"


def render_launch_report(report: dict[str, Any]) -> str:
    """The report as markdown: stages, then each signal with the plan's verdict and the engine's figures."""
    change = report["change"]
    lines = [f"# Launch report: {report['title']}", "",
             f"`{change['flag']}`: {change['variant']} against {change['control']} (launch `{report['launch']}`).",
             "", "## Stages", "",
             "| stage | window (outcome time) | load floor | control attempts (users) | variant attempts (users) | judge |",
             "|---|---|---|---|---|---|"]
    for s in report["stages"]:
        load = s.get("load") or {}
        floor = (f"{load['users']} users" + (" (capped)" if load.get("capped") else "")) if load.get("users") else "—"
        lines.append(f"| {s['percent']:g} % | {s['start']} → {s['end']} | {floor} | {s['control_attempts']:,} "
                     f"({s['control_users']:,}) | {s['treatment_attempts']:,} ({s['treatment_users']:,}) | "
                     f"{s['verdict']} ({s['rule']}) |")
    lines += ["", "## Your plan's metrics at each stage", "",
              "Whether the judge could evaluate each metric of your plan with the stage's data, and for a rollback "
              "guardrail the power to detect its threshold at those counts. The load was raised for each stage "
              "below 100 % to what the plan's primary metric and rollback guardrails need, up to what the lab "
              "carries, and held through the 100 % stage, where only the control attempts still finishing are "
              "left to compare with.", ""]
    for s in report["stages"]:
        load = s.get("load") or {}
        head = f"**{s['percent']:g} % stage**"
        if load.get("users") and not load.get("needed"):
            head += f": at least {load['users']} users, held from the stage before"
        elif load.get("users"):
            head += (f": at least {load['users']} users, for {load['needed_by']} ({load['needed']:,} variant values"
                     f" needed, about {load['expected_variant']:g} expected from about"
                     f" {load.get('expected_variant_users', 0):g} variant users (sticky per user)"
                     + (", capped at what the lab carries)" if load.get("capped") else ")"))
        lines += [head, ""]
        for row in s["plan_metrics"]:
            lines.append(f"- {row['metric']} ({row['role']}{', rolls back' if row['rolls_back'] else ''}): "
                         + _evaluable_text(row) + (f"; {row['power_note']}" if row["power_note"] else "")
                         + (f": power {row['power']:.0%}" if row["power"] is not None else ""))
        lines.append("")
    lines += ["", "## What the regression showed in, and what your plan did with it", ""]
    for sig in report["signals"]:
        lines += [f"### {sig['signal']}", "", f"- **{_VERDICT_TEXT[sig['verdict']]}**"]
        if sig["watched_by"]:
            lines.append("- watched by: " + ", ".join(f"{w['metric']} ({w['role']})" for w in sig["watched_by"]))
        if not sig["engine_metrics"]:
            lines.append("- the engine computes no figure for this signal yet (no judge metric reads it): "
                         "look at it with `obslab breakdown` or the events")
        elif not sig["judged"]:
            lines.append("- no stage had enough data for the engine to judge it: at this traffic no guardrail on "
                         "it could have fired, whatever the plan says (the counts are below)")
        for f in sig["figures"]:
            mark = "moved" if f["failed"] else f["classification"]
            lines.append(f"- {f['stage_percent']:g} % stage, {f['description']}: {f['reason']} [{mark}]")
        lines.append("")
    lines += ["## What happened", "", report["what_happened"], "", "## What a stronger plan watches", ""]
    lines += [f"- {item}" for item in report["stronger_plan"]]
    return "\n".join(lines) + "\n"
