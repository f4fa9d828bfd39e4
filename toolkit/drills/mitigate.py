"""The mitigation step of an incident drill, against the running lab: take the action, record it, record the
recovery figure the learner shows, and measure both for the report.

An action changes the real lab and nothing else: ``rollback FLAG`` deletes the flag in the service's store
(every new request gets the default variant), ``retry-policy …`` writes the clients' remote config that the
drill's load generator reads before each new attempt, ``shed-load CLASS[:PERCENT]`` sets the service's
shedding control for that request class (``PUT /admin/shed/{CLASS}``, audited as ``shed_changed``). Nothing tells the fault to stop: a right mitigation
ends its effect because traffic no longer goes through it. The run keeps ``mitigation.json`` (the one
mitigation a run takes) and ``recovery.jsonl`` (the learner's recovery figures; the last is graded).
The pure rules (vocabulary, scoring) are in ``toolkit.drills.mitigation``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from contract.events import TimeError, parse_time
from toolkit.drills.lab import DEFAULT_ACTOR, ControlClient, Lab
from toolkit.drills.load import REMOTE_CONFIG_FILE
from toolkit.drills.measure import Window, read_drill_events
from toolkit.drills.mitigation import RECOVERY_ALPHA, RECOVERY_FIGURE, ActionError, grade_mitigation, parse_action
from toolkit.drills.runner import DrillError, _current, _phase
from toolkit.drills.schema import Drill
from toolkit.drills.score import Grade
from toolkit.drills.state import RunDir, RunState, append_jsonl, read_jsonl
from toolkit.slo.spec import SloSpec

__all__ = ["choices", "mitigate", "record_recovery", "taken", "Mitigated", "MitigationResult",
           "mitigation_result", "render_mitigation_markdown", "mitigation_json", "MITIGATION_FILE", "RECOVERY_FILE",
           "expert_mitigation", "REASONING_FILE"]

MITIGATION_FILE = "mitigation.json"
RECOVERY_FILE = "recovery.jsonl"
REASONING_FILE = "auto-mitigation.json"  # why the unattended solver took its action (toolkit.drills.auto_mitigate)


def choices(drill: Drill, state: RunState) -> tuple[str, ...]:
    """The drill's mitigation choices in the order this run shows them (shuffled by the run's seed)."""
    if drill.mitigations is None:
        return ()
    return drill.mitigations.shuffled(f"{state.run_id}:{state.seed}")


def taken(run: RunDir) -> dict | None:
    """The mitigation this run took (action, wall and scenario time, by whom), or None."""
    path = run.path / MITIGATION_FILE
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass(frozen=True)
class Mitigated:
    drill: Drill
    action: str
    at: float  # Unix seconds
    at_scenario_s: float

    @property
    def since(self) -> str:
        """The mitigation's time as `obslab sli --since` takes it."""
        return _iso(self.at)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _drill_with_mitigations(drill: Drill) -> None:
    if drill.mitigations is None:
        raise DrillError(f"{drill.id} has no mitigation step (drills with one: see docs/drills.md, Mitigation)")


def mitigate(lab: Lab, action_text: str, by: str = "learner", actor: str = DEFAULT_ACTOR) -> Mitigated:
    """Take one of the current drill's mitigation choices, once per run, while it runs. Whether it is the
    right one shows only in the report."""
    run, state, drill = _current(lab.drills_dir)
    _drill_with_mitigations(drill)
    shown = choices(drill, state)
    try:
        action = parse_action(" ".join(str(action_text).split()))
    except ActionError as e:
        raise DrillError(f"mitigate: {e}; this drill's choices: {', '.join(shown)}") from None
    if action.text not in shown:
        raise DrillError(f"mitigate: {action.text!r} is not one of this drill's choices: {', '.join(shown)}")
    if _phase(run, state) != "running":
        raise DrillError(f"drill {drill.id} is not running: there is nothing left to mitigate")
    before = taken(run)
    if before is not None:
        raise DrillError(f"this run already took its mitigation ({before['action']} at t={before['at_scenario_s']:.0f} s "
                         "of scenario time); a drill takes one, as a decision")
    if run.clock().paused:
        raise DrillError(f"drill {drill.id} is paused: resume it (`obslab drill resume`) to act on the lab")
    if action.verb == "rollback":
        ControlClient(lab, actor=actor).delete_flag(action.arg)
    elif action.verb == "shed-load":
        request_class, percent = action.shed
        ControlClient(lab, actor=actor).put_shed(request_class, {"percent": percent})
    else:
        policy, attempts = action.retry_policy
        tmp = run.path / (REMOTE_CONFIG_FILE + ".tmp")
        tmp.write_text(json.dumps({"retry_policy": policy, "max_attempts": attempts}))
        tmp.replace(run.path / REMOTE_CONFIG_FILE)  # atomic: the clients never read half a file
    now = time.time()
    at_scenario_s = round(run.clock().scenario_s(now), 3)
    record = {"action": action.text, "at": now, "at_scenario_s": at_scenario_s, "by": by}
    tmp = run.path / (MITIGATION_FILE + ".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(run.path / MITIGATION_FILE)
    run.log("mitigation", action=action.text, by=by)
    return Mitigated(drill, action.text, now, at_scenario_s)


def record_recovery(drills_dir: Path, value: float, since: str, until: str | None = None,
                    by: str = "learner") -> tuple[Drill, int]:
    """Record the publish success rate the learner measured over (since, until] after the mitigation (until
    unset: up to now, as `obslab sli --since` without --until); graded in the report."""
    run, state, drill = _current(drills_dir)
    _drill_with_mitigations(drill)
    done = taken(run)
    if done is None:
        raise DrillError("no mitigation taken yet: `obslab drill mitigate ACTION` first, then show the recovery")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise DrillError(f"--success-rate: expected a ratio in [0, 1] (e.g. 0.995 for 99.5 %), got {value!r}")
    now = time.time()
    try:
        since_t = _epoch(parse_time(since, what="--since"))
        until_t = _epoch(parse_time(until, what="--until")) if until is not None else now
    except TimeError as e:
        raise DrillError(str(e)) from None
    if since_t < done["at"] - 1e-3:
        raise DrillError(f"--since {since}: the window must start at or after the mitigation "
                         f"({_iso(done['at'])}), or it measures the incident, not the recovery")
    if until_t <= since_t:
        raise DrillError(f"--until must be after --since (got {since} .. {until})")
    if until_t > now + 1.0:
        raise DrillError(f"--until {until} is in the future: measure a window that has passed")
    append_jsonl(run.path / RECOVERY_FILE, {"value": float(value), "since": since_t, "until": until_t, "at": now,
                                            "by": by})
    run.log("recovery_reported", value=float(value), by=by)
    return drill, sum(1 for _ in read_jsonl(run.path / RECOVERY_FILE))


def _epoch(t: datetime) -> float:
    return t.replace(tzinfo=timezone.utc).timestamp()


def expert_mitigation(run: RunDir, drill: Drill, diagnosis: dict) -> dict | None:
    """The expert path's mitigation step: in an ``--auto --auto-mitigate`` run, the action the solver took and the
    recovery it reported (``toolkit.drills.auto_mitigate``); in any other run, the choice the solver's diagnosis
    points to (``auto.choose_mitigation``), not taken. None for a drill without a mitigation step."""
    if drill.mitigations is None:
        return None
    from toolkit.drills.auto import choose_mitigation

    done = taken(run)
    if done is not None and done.get("by") == "auto":
        reasoning = run.path / REASONING_FILE
        why = json.loads(reasoning.read_text()).get("why") if reasoning.is_file() else None
        claims = [c for c in read_jsonl(run.path / RECOVERY_FILE) if c.get("by") == "auto"]
        return {"action": done["action"], "why": why, "taken": True, "at": done["at"],
                "recovery": claims[-1] if claims else None}
    choice = choose_mitigation(choices(drill, run.read_state()), diagnosis)
    return {"action": choice[0] if choice else None,
            "why": choice[1] if choice else "no choice follows from the diagnosis", "taken": False, "at": None,
            "recovery": None}


# -- the report's Mitigation section ----------------------------------------------------------------------

@dataclass(frozen=True)
class RateFigure:
    window: Window
    good: int
    total: int
    rate: float | None
    definition: str


@dataclass(frozen=True)
class MitigationResult:
    action: str | None
    by: str | None
    at: float | None
    at_scenario_s: float | None
    when: str  # before | during | after the fault (or "none")
    time_to_mitigate_s: float | None  # scenario seconds from the fault's start
    before: RateFigure | None  # fault start → mitigation
    after: RateFigure | None  # mitigation → fault end
    claimed: float | None
    claim_window: RateFigure | None
    recovered: RateFigure | None  # the learner's window cut at the fault's end
    objective: float
    grade: Grade  # toolkit.drills.score: the mitigation's parts and total
    right: str


def _rate(events, spec: SloSpec, window: Window) -> RateFigure:
    from toolkit.measures.sli import SliQuery, compute_report

    totals = compute_report(events, spec, SliQuery(since=_iso(window.start), until=_iso(window.end),
                                                   window_s=None)).totals
    f = totals.figure(RECOVERY_FIGURE)
    return RateFigure(window, int(f.numerator or 0), int(f.denominator or 0), f.value, f.definition)


def mitigation_result(run: RunDir, spec: SloSpec, fault: Window, end: float, scenario_s) -> MitigationResult:
    """The mitigation's figures over the run's events as of the drill's end ``end``: the success rate from the
    fault's start to the mitigation and from the mitigation to the fault's end, and over the learner's
    recovery window, each as ``obslab sli --since … --until …`` computes it; and its grade."""
    state = run.read_state()
    from toolkit.drills.schema import find_drill

    drill = find_drill(state.drill_id)
    assert drill.mitigations is not None
    objective = spec.slo("publish-success").objective
    done = taken(run)
    claims = list(read_jsonl(run.path / RECOVERY_FILE))
    claim = claims[-1] if claims else None
    if done is None:
        return MitigationResult(None, None, None, None, "none", None, None, None, None, None, None, objective,
                                grade_mitigation(drill.mitigations, None, "none", None, None, None, 0, objective),
                                drill.mitigations.right)
    at = float(done["at"])
    when = "before" if at < fault.start else ("after" if at >= fault.end else "during")
    events_dir = Path(state.events_dir or Path(state.data_dir) / "events")
    events = read_drill_events(events_dir, Window(state.started_at, end), spec.abandon_after_s, as_of=end).events
    before = _rate(events, spec, Window(fault.start, at)) if when == "during" else None
    after = _rate(events, spec, Window(at, fault.end)) if when == "during" else None
    claim_window = _rate(events, spec, Window(claim["since"], min(claim["until"], end))) if claim else None
    # Recovery the mitigation made: the learner's window while the fault was still on.
    recovered = (_rate(events, spec, Window(claim["since"], min(claim["until"], fault.end)))
                 if claim and when == "during" and claim["since"] < fault.end else None)
    g = grade_mitigation(drill.mitigations, done["action"], when, claim["value"] if claim else None,
                         claim_window.rate if claim_window else None, recovered.good if recovered else None,
                         recovered.total if recovered else 0, objective)
    ttm = max(0.0, scenario_s(at) - scenario_s(fault.start)) if when == "during" else None
    return MitigationResult(done["action"], done.get("by"), at, float(done["at_scenario_s"]), when, ttm, before,
                            after, claim["value"] if claim else None, claim_window, recovered, objective, g,
                            drill.mitigations.right)


def _figure_text(f: RateFigure | None, scenario_s) -> str:
    if f is None:
        return "n/a"
    rate = "no attempt with an outcome" if f.rate is None else f"{f.rate:.4f}"
    return (f"{f.good}/{f.total} = {rate} over t={scenario_s(f.window.start):.1f}..{scenario_s(f.window.end):.1f} s "
            f"(`obslab sli --since {_iso(f.window.start)} --until {_iso(f.window.end)}`)")


def render_mitigation_markdown(r: MitigationResult, scenario_s) -> str:
    lines = ["", "## Mitigation", ""]
    if r.action is None:
        lines += ["No mitigation was taken (`obslab drill mitigate ACTION`).", ""]
    else:
        lines += [f"- Action: **{r.action}** at t={r.at_scenario_s:.1f} s of scenario time ({_iso(r.at)}), "
                  f"by {r.by}; {r.when} the fault.",
                  "- Time to mitigate (fault start → mitigation): "
                  + ("n/a" if r.time_to_mitigate_s is None else f"{r.time_to_mitigate_s:.1f} s of scenario time")
                  + ".",
                  f"- Publish success rate before (fault start → mitigation): {_figure_text(r.before, scenario_s)}.",
                  f"- Publish success rate after (mitigation → fault end): {_figure_text(r.after, scenario_s)}.",
                  f"- Your recovery figure: "
                  + ("none reported" if r.claimed is None else
                     f"{r.claimed:.4f}; the engine over your window: {_figure_text(r.claim_window, scenario_s)}")
                  + ".",
                  f"- Your window while the fault was still on (graded as the recovery): "
                  f"{_figure_text(r.recovered, scenario_s)}.",
                  f"- Definition: {r.after.definition if r.after else (r.claim_window.definition if r.claim_window else RECOVERY_FIGURE)}; "
                  f"recovered means not significantly below the objective {r.objective:g} (one-sided exact binomial "
                  f"test, α {RECOVERY_ALPHA:g}).",
                  ""]
    lines += [f"Mitigation score (apart from the diagnosis score): **{r.grade.total:g} / {r.grade.max_total:g}**.", "",
              "| part | points | of | note |", "|---|---:|---:|---|"]
    for p in r.grade.parts:
        lines.append(f"| {p.part} | {p.points:g} | {p.max_points:g} | {p.note} |")
    lines.append("")
    return "\n".join(lines)


def _figure_json(f: RateFigure | None, scenario_s) -> dict | None:
    if f is None:
        return None
    return {"since": f.window.start, "until": f.window.end, "since_scenario_s": scenario_s(f.window.start),
            "until_scenario_s": scenario_s(f.window.end), "good": f.good, "total": f.total, "rate": f.rate,
            "definition": f.definition}


def mitigation_json(r: MitigationResult, scenario_s) -> dict:
    return {"action": r.action, "by": r.by, "at": r.at, "at_scenario_s": r.at_scenario_s, "when": r.when,
            "right": r.right, "time_to_mitigate_s": r.time_to_mitigate_s, "times_in": "scenario seconds",
            "figure": RECOVERY_FIGURE, "objective": r.objective,
            "before": _figure_json(r.before, scenario_s), "after": _figure_json(r.after, scenario_s),
            "claimed": r.claimed, "claim_window": _figure_json(r.claim_window, scenario_s),
            "recovered_window": _figure_json(r.recovered, scenario_s),
            "grade": {"total": r.grade.total, "max": r.grade.max_total,
                      "parts": [{"part": p.part, "points": p.points, "max_points": p.max_points, "note": p.note}
                                for p in r.grade.parts]}}
