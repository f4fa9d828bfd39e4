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
from toolkit.drills.launch import LaunchBrief, Signal, plan_coverage

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
                                "classification": m["classification"], "failed": m["failed"], "reason": m["reason"]})
        signals.append({
            "signal": signal.name, "verdict": coverage.verdict,
            "watched_by": [{"metric": n, "role": r} for n, r in coverage.watched_by],
            "rolls_back": list(coverage.rolls_back),
            "engine_metrics": list(names),
            "figures": figures,
            "moved": any(f["failed"] for f in figures),
            # Whether any stage had enough data for the engine to judge the signal at all.
            "judged": any(f["classification"] != "NoData" for f in figures),
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
                    "verdict": result["verdict"]["verdict"], "rule": result["verdict"]["rule"]}
                   for stage, _m, result in compared],
        "signals": signals,
        "what_happened": launch.what_happened,
        "stronger_plan": list(launch.stronger_plan),
    }


_VERDICT_TEXT = {
    "caught": "caught: a rollback guardrail watches it",
    "seen": "seen: the plan watches it, but nothing rolls back on it",
    "missed": "missed: no metric of the plan reads it",
}


def render_launch_report(report: dict[str, Any]) -> str:
    """The report as markdown: stages, then each signal with the plan's verdict and the engine's figures."""
    change = report["change"]
    lines = [f"# Launch report: {report['title']}", "",
             f"`{change['flag']}`: {change['variant']} against {change['control']} (launch `{report['launch']}`).",
             "", "## Stages", "",
             "| stage | window (outcome time) | control attempts | variant attempts | judge |",
             "|---|---|---|---|---|"]
    for s in report["stages"]:
        lines.append(f"| {s['percent']:g} % | {s['start']} → {s['end']} | {s['control_attempts']:,} | "
                     f"{s['treatment_attempts']:,} | {s['verdict']} ({s['rule']}) |")
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
