"""The report of a rollout call drill: each call beside the right call, the judge's evidence and the power.

For every call that came due, the stage's data are the attempts whose outcome time falls between the moment
the stage's percent was set and the call (``toolkit.analysis.compare.compare_attempts``, the rollout judge's
config re-judged with ``toolkit.analysis.rollout``'s always-valid intervals). The judge is run twice when the
change's regression sits in one cohort: variant against control overall (what the default guardrails see) and
within that cohort (what a learner who looked there saw). Whether the data *show* the harm is the cohort
judge's verdict on the regression's guardrail metric; the right call follows (``rollout_drill.right_call``).
Power figures come from ``toolkit.analysis.stats`` on the judge's own counts and rates.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from toolkit.drills.grader import HINT_COST
from toolkit.drills.rollout_drill import (DETECT_DROP, PLANNING_SUCCESS, decision_points, grade_calls, harmful_at,
                                          position, rollout_plan)
from toolkit.drills.schema import find_drill
from toolkit.drills.state import RunDir
from toolkit.slo.spec import SloSpec

__all__ = ["ROLLOUT_DRILL_REPORT_SCHEMA", "stage_evidence", "rollout_report",
           "render_rollout_markdown", "write_rollout_report"]

ROLLOUT_DRILL_REPORT_SCHEMA = "obslab.rollout-drill-report/v1"
_GUARDRAILS = ("publish_success_rate", "processing_latency_p99")


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).replace(tzinfo=None)


def stage_evidence(attempts, plan, percent: float, start: float, end: float,
                   cohort: dict[str, str] | None = None) -> dict[str, Any]:
    """The rollout judge on variant vs control over outcome time (start, end] (wall epochs), within ``cohort``,
    with its always-valid intervals (``toolkit.analysis.rollout.always_valid_verdict``); with the stage's power at
    its counts (a ``PLANNING_SUCCESS`` success rate assumed): to roll back a ``DETECT_DROP`` drop (interval at the
    rollback α wholly beyond the margin), and to show an unchanged rate non-inferior (the promote's test)."""
    from toolkit.analysis.compare import CohortSelector, Window, compare_attempts
    from toolkit.analysis.rollout import (_always_valid_text, always_valid_verdict, mixture_scale, rollback_alpha,
                                          stage_alpha)
    from toolkit.analysis.stats import power_always_valid_harm, power_always_valid_noninferiority

    extra = tuple(sorted((cohort or {}).items()))
    where = "".join(f",{k}={v}" for k, v in extra)
    control = CohortSelector(f"{plan.flag}={plan.control}{where}", ((plan.flag, plan.control),) + extra)
    variant = CohortSelector(f"{plan.flag}={plan.variant}{where}", ((plan.flag, plan.variant),) + extra)
    result = always_valid_verdict(plan, compare_attempts(
        attempts, control, variant, window=Window(_utc(start), _utc(end)), config=plan.judge,
        expected_split=(1 - percent / 100, percent / 100) if percent < 100 else None,
        decision_alpha=rollback_alpha(plan), look=_always_valid_text(plan))).to_dict()
    metrics = {m["name"]: m for m in result["metrics"]}
    n_c, n_v = result["control"]["attempts"], result["treatment"]["attempts"]
    # At the planning baseline, as each call's status states it (``rollout_drill.stage_power``): the lab's own
    # success rate is often 100 % over a stage, where a power computed from it is degenerate.
    success = plan.judge.metric("publish_success_rate")
    margin, tau = success.allowed_change, mixture_scale(success)
    detect = (power_always_valid_harm(PLANNING_SUCCESS, PLANNING_SUCCESS - DETECT_DROP, n_c, n_v, margin,
                                      rollback_alpha(plan), tau) if n_c and n_v else 0.0)
    non_inferior = power_always_valid_noninferiority(PLANNING_SUCCESS, n_c, n_v, margin, stage_alpha(plan), tau)
    return {
        "scope": (f"{plan.flag}={plan.control} vs {plan.flag}={plan.variant}"
                  + (f" within {where[1:]}" if extra else "")),
        "control_attempts": result["control"]["attempts"], "variant_attempts": result["treatment"]["attempts"],
        "verdict": result["verdict"]["verdict"], "rule": result["verdict"]["rule"],
        "explanation": result["verdict"]["explanation"], "srm": result["srm"],
        "guardrails": {name: {"classification": metrics[name]["classification"], "failed": metrics[name]["failed"],
                              "reason": metrics[name]["reason"], "fallback": metrics[name]["fallback"] is not None}
                       for name in _GUARDRAILS if name in metrics},
        "metrics": {name: {"failed": m["failed"], "classification": m["classification"]}
                    for name, m in metrics.items()},
        "power": {"detect_success_drop": round(detect, 3), "detect_drop_pp": DETECT_DROP * 100,
                  "rollback_alpha": rollback_alpha(plan), "baseline_success": PLANNING_SUCCESS,
                  "show_success_non_inferior": round(non_inferior, 3), "non_inferiority_margin_pp": margin * 100,
                  "non_inferiority_alpha": stage_alpha(plan)},
    }


def rollout_report(run: RunDir, attempts, spec: SloSpec | None = None) -> dict[str, Any]:
    """The report as data (``obslab.rollout-drill-report/v1``)."""
    state = run.read_state()
    drill = find_drill(state.drill_id)
    plan = rollout_plan(drill, spec)
    timeline = run.timeline()
    points = decision_points(drill.rollout, timeline)
    reg = drill.truth.regression
    evidence, shown = [], []
    for p in points:
        overall = stage_evidence(attempts, plan, p.percent, p.stage_start, p.decided_at)
        cohort = None
        if reg is not None and reg.cohort:
            cohort = stage_evidence(attempts, plan, p.percent, p.stage_start, p.decided_at, reg.cohort)
        harmed = cohort or overall
        shown.append(harmful_at(drill, p.percent) and bool(harmed["metrics"].get(reg.shows_in, {}).get("failed"))
                     if reg is not None else False)
        evidence.append({"overall": overall, "cohort": cohort})
    pos = position(drill.rollout, timeline)
    ended = pos.ended if pos is not None and pos.phase == "ended" else "stopped"
    hints = sum(1 for e in timeline if e.get("kind") == "hint_shown")
    g = grade_calls(drill, points, shown, ended, hints, HINT_COST)
    calls = []
    for cg, ev in zip(g["calls"], evidence):
        p = cg.point
        calls.append({"stage_percent": p.percent, "round": p.round, "call": p.call, "right_call": cg.right,
                      "accepted": list(cg.accepted), "credit": cg.credit, "harmful": cg.harmful, "shown": cg.shown,
                      "window_s": round(p.decided_at - p.stage_start, 1), "evidence": ev})
    stages_reached = [e["percent"] for e in timeline if e.get("kind") == "rollout_stage" and e["round"] == 0]
    return {"schema": ROLLOUT_DRILL_REPORT_SCHEMA, "drill": drill.id, "title": drill.title, "run": run.path.name,
            "speed": state.speed, "ended": ended, "stages_reached": stages_reached,
            "flag": {"name": plan.flag, "variant": plan.variant, "control": plan.control},
            "regression": None if reg is None else {"kind": reg.fault.kind, "target": reg.fault.target,
                                                     "selector": reg.fault.selector, "from_percent": reg.from_percent,
                                                     "shows_in": reg.shows_in},
            "calls": calls,
            "grade": {"total": g["total"], "max": g["max"], "earned": g["earned"], "points": g["points"],
                      "unreached": g["unreached"], "hints_taken": hints, "hint_penalty": g["hint_penalty"]},
            "debrief": {"what_happened": drill.debrief.what_happened,
                        "evidence_path": list(drill.debrief.evidence_path),
                        "good_looks_like": drill.debrief.good_looks_like}}


_ENDED = {"completed": "reached 100 %", "rolled_back": "rolled back", "no_call": "stopped: a call was not made in "
          "time", "stopped": "stopped before it ended"}


def _evidence_lines(ev: dict[str, Any], label: str) -> list[str]:
    pw = ev["power"]
    ni = pw["show_success_non_inferior"]
    lines = [f"- {label} ({ev['scope']}): {ev['control_attempts']:,} control and {ev['variant_attempts']:,} variant "
             f"attempts; judge **{ev['verdict']}** ({ev['rule']}): {ev['explanation']}",
             f"  - power at these counts (success rate {pw['baseline_success']:.0%} assumed): "
             f"{pw['detect_success_drop']:.2f} to roll back a {pw['detect_drop_pp']:g} pp drop (always-valid interval "
             f"at α = {pw['rollback_alpha']:.3g} wholly beyond the {pw['non_inferiority_margin_pp']:g} pp margin); "
             f"{ni:.2f} to show an unchanged rate non-inferior (margin {pw['non_inferiority_margin_pp']:g} pp, "
             f"always-valid α = {pw['non_inferiority_alpha']:.3g})"]
    srm = ev.get("srm")
    if srm:
        lines.append(f"  - sample ratio: {srm['unit']} {srm['observed'][0]:,} control, {srm['observed'][1]:,} variant "
                     f"against {srm['expected_shares'][1]:.0%} variant: p = {srm['p_value']:.2g}, "
                     f"{'**mismatch**' if srm['mismatch'] else 'no mismatch'} ({srm.get('unit_reason', '')})")
    for name, gr in ev["guardrails"].items():
        tag = "failed" if gr["failed"] else gr["classification"]
        lines.append(f"  - {name}{' (absolute fallback)' if gr['fallback'] else ''}: {gr['reason']} [{tag}]")
    return lines


def render_rollout_markdown(report: dict[str, Any]) -> str:
    f = report["flag"]
    g = report["grade"]
    lines = [f"# Rollout drill report: {report['title']}", "",
             f"Run `{report['run']}`, speed ×{report['speed']:g}. `{f['name']}`: {f['variant']} against "
             f"{f['control']}; stages reached: {', '.join(f'{p:g} %' for p in report['stages_reached']) or 'none'}; "
             f"the rollout {_ENDED.get(report['ended'], report['ended'])}.", "",
             f"**Score: {g['total']:g} / {g['max']:g}** ({g['points']} decision(s)"
             + (f", of which {g['unreached']} never reached after a rollback the data did not call for"
                if g["unreached"] else "")
             + (f"; {g['hints_taken']} hint(s), −{g['hint_penalty']:g}" if g["hints_taken"] else "") + ").", "",
             "## Your calls", "",
             "| stage | round | your call | right call | credit | the data showed the harm |",
             "|---|---:|---|---|---:|---|"]
    for c in report["calls"]:
        shown = ("yes" if c["shown"] else "not yet (too little data)") if c["harmful"] else "no harm at this stage"
        right = c["right_call"] + (f" (or {', '.join(a for a in c['accepted'] if a != c['right_call'])})"
                                   if len(c["accepted"]) > 1 else "")
        lines.append(f"| {c['stage_percent']:g} % | {c['round'] + 1} | {c['call'] or 'no call'} | {right} | "
                     f"{c['credit']:g} | {shown} |")
    lines += ["", "## The judge's evidence at each call", "",
              "Attempts whose outcome time falls between the stage's start and the call; the rollout judge's "
              "always-valid intervals (`obslab rollout`, docs/analysis.md), with the sample-ratio check against the "
              "stage's percent.", ""]
    for c in report["calls"]:
        lines.append(f"### {c['stage_percent']:g} %, round {c['round'] + 1} ({c['window_s']:g} s wall of data)")
        lines.append("")
        lines += _evidence_lines(c["evidence"]["overall"], "variant vs control")
        if c["evidence"]["cohort"] is not None:
            lines += _evidence_lines(c["evidence"]["cohort"], "within the harmed cohort")
        lines.append("")
    d = report["debrief"]
    lines += ["## What happened", "", " ".join(d["what_happened"].split()), "", "Evidence path:", ""]
    lines += [f"- {step}" for step in d["evidence_path"]]
    lines += ["", "Good looks like: " + " ".join(d["good_looks_like"].split()), ""]
    return "\n".join(lines)


def write_rollout_report(run: RunDir, spec: SloSpec) -> Path:
    """Read the lab's events over the run and write ``report/report.{json,md}``; the markdown's path."""
    from toolkit.analysis.compare import load_attempts

    state = run.read_state()
    events_dir = Path(state.events_dir or Path(state.data_dir) / "events")
    attempts, _events = load_attempts([events_dir], abandon_after_s=spec.abandon_after_s)
    report = rollout_report(run, attempts, spec)
    run.report_dir.mkdir(exist_ok=True)
    (run.report_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = run.report_dir / "report.md"
    md.write_text(render_rollout_markdown(report))
    return md
