"""Rollout call drills (``kind: rollout``): the flag moves stage by stage, the learner calls each stage.

The scheduler sets the flag to a stage's percent and lets it collect data for the drill's window; then a
call is *due*: ``continue`` (next stage), ``hold`` (one more window at the same percent, at most
``max_holds`` times a stage) or ``rollback`` (the flag back to 0 %, the rollout ends). A call not taken
within ``decide_within`` ends the rollout where it is (the flag is removed at cleanup). The 100 % stage
collects one window and the drill ends. Every time is on the run's clock (pauses excluded) at its speed.

Where the rollout stands is a pure function of the run's timeline (``position``): the scheduler writes
``rollout_stage``, ``call_due``, ``call_missed`` and ``rollout_ended``; ``obslab drill decide`` writes
``call``. ``next_step`` says what the scheduler does next, so both are testable with a fake clock.

The ground truth of a decision (``right_call``): continue while the change does no harm at that stage;
when it does, roll back if that stage's data can show it (the rollout judge, on the harmed cohort, finds the
regression's guardrail failed), else continue (hold is as good: nobody could have seen it yet).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from toolkit.drills.schema import Drill, RolloutSpec
from toolkit.drills.state import RunDir, RunState, append_jsonl

__all__ = ["CALLS", "Position", "Step", "position", "next_step", "record_call", "harmful_at", "right_call",
           "call_credit", "CallGrade", "rollout_plan", "grade_calls", "decision_points", "DecisionPoint"]

CALLS = ("continue", "hold", "rollback")
# Credit for a hold instead of the right call: it costs a window (and, on a harmful change, users' time on it).
_HOLD_CREDIT = {"continue": 0.5, "rollback": 0.25}


@dataclass(frozen=True)
class Position:
    stage: int  # index into spec.stages
    percent: float
    round: int  # 0, then 1.. after each hold
    phase: str  # collecting | call_due | ended
    since_s: float  # run-clock (active wall) seconds at which the phase started
    ended: str = ""  # completed | rolled_back | no_call | stopped


@dataclass(frozen=True)
class Step:
    action: str  # stage | call_due | end
    stage: int = 0
    round: int = 0
    reason: str = ""  # end: completed | rolled_back | no_call


def _calls(timeline: Iterable[Mapping]) -> dict[tuple[int, int], str]:
    out: dict[tuple[int, int], str] = {}
    for e in timeline:
        if e.get("kind") == "call":
            out.setdefault((int(e["stage"]), int(e["round"])), e["call"])  # the first call of a round counts
    return out


def position(spec: RolloutSpec, timeline: Iterable[Mapping]) -> Position | None:
    """Where the rollout stands from the run's timeline; None before its first stage."""
    pos: Position | None = None
    for e in timeline:
        kind = e.get("kind")
        if kind == "rollout_stage":
            i = int(e["stage"])
            pos = Position(i, spec.stages[i], int(e["round"]), "collecting", float(e["at_active_s"]))
        elif kind == "call_due" and pos is not None:
            pos = Position(pos.stage, pos.percent, pos.round, "call_due", float(e["at_active_s"]))
        elif kind == "rollout_ended" and pos is not None:
            pos = Position(pos.stage, pos.percent, pos.round, "ended", float(e["at_active_s"]), e["reason"])
    return pos


def next_step(spec: RolloutSpec, timeline: list[Mapping], active_s: float, speed: float) -> Step | None:
    """What the scheduler does now (None: nothing yet). Pure: the timeline so far and the run clock's seconds."""
    pos = position(spec, timeline)
    if pos is None:
        return Step("stage", 0, 0)
    if pos.phase == "ended":
        return None
    window, decide = spec.window_s / speed, spec.decide_within_s / speed
    if pos.phase == "collecting":
        if active_s < pos.since_s + window:
            return None
        if pos.percent >= 100:
            return Step("end", pos.stage, pos.round, "completed")
        return Step("call_due", pos.stage, pos.round)
    call = _calls(timeline).get((pos.stage, pos.round))
    if call == "continue":
        return Step("stage", pos.stage + 1, 0)
    if call == "hold":
        return Step("stage", pos.stage, pos.round + 1)
    if call == "rollback":
        return Step("end", pos.stage, pos.round, "rolled_back")
    if active_s >= pos.since_s + decide:
        return Step("end", pos.stage, pos.round, "no_call")
    return None


def record_call(run: RunDir, drill: Drill, call: str, active_s: float, by: str = "learner") -> Position:
    """Record the learner's call for the stage whose call is due; DrillError-worthy problems as ValueError."""
    if call not in CALLS:
        raise ValueError(f"unknown call {call!r}: one of {', '.join(CALLS)}")
    spec = drill.rollout
    timeline, state = run.timeline(), run.read_state()
    pos = position(spec, timeline)
    if pos is None or pos.phase == "ended":
        raise ValueError("no stage is waiting for a call: the rollout "
                         + ("has not started yet" if pos is None else f"has ended ({pos.ended.replace('_', ' ')})"))
    if pos.phase == "collecting":
        if pos.percent >= 100:
            raise ValueError("the rollout is at 100 %: there is no call to make")
        left = max(0.0, pos.since_s + spec.window_s / state.speed - active_s)
        raise ValueError(f"stage {pos.percent:g} % is still collecting data: its call is due in {left:.0f} s (wall)")
    if call == "hold" and pos.round >= spec.max_holds:
        raise ValueError(f"stage {pos.percent:g} % has been held {spec.max_holds} time(s) already: continue or "
                         f"roll back")
    if (pos.stage, pos.round) in _calls(timeline):
        raise ValueError(f"the call for stage {pos.percent:g} % is already recorded")
    now = time.time()
    record = {"call": call, "stage": pos.stage, "round": pos.round, "percent": pos.percent,
              "at_s": now - state.started_at, "by": by}
    append_jsonl(run.answers_file, record)
    run.log("call", call=call, stage=pos.stage, round=pos.round, percent=pos.percent, by=by)
    return pos


# -- ground truth and grading (pure) --------------------------------------------------------------------


def harmful_at(drill: Drill, percent: float) -> bool:
    """Whether the change does harm at a stage of ``percent`` (its regression is in force there)."""
    reg = drill.truth.regression
    return reg is not None and percent >= reg.from_percent


def right_call(harmful: bool, shown: bool) -> tuple[str, tuple[str, ...]]:
    """(the right call, every call that earns full credit) at one decision point."""
    if harmful and shown:
        return "rollback", ("rollback",)
    if harmful:  # the harm is there but the data cannot show it yet: nobody could call it
        return "continue", ("continue", "hold")
    return "continue", ("continue",)


def call_credit(call: str | None, right: str, accepted: tuple[str, ...]) -> float:
    if call is None:
        return 0.0
    if call in accepted:
        return 1.0
    if call == "hold":
        return _HOLD_CREDIT[right]
    return 0.0


@dataclass(frozen=True)
class DecisionPoint:
    """One call that was due: its stage, its round, the data window (run clock wall times) and the call."""

    stage: int
    percent: float
    round: int
    stage_start: float  # wall time the stage's percent was set (its first round)
    due_at: float
    decided_at: float  # the call, or when its time ran out
    call: str | None  # None: no call in time (or the drill was stopped)


def decision_points(spec: RolloutSpec, timeline: list[Mapping]) -> list[DecisionPoint]:
    """Every call that came due, in order, from the run's timeline."""
    calls = _calls(timeline)
    call_t = {(int(e["stage"]), int(e["round"])): float(e["t"]) for e in timeline if e.get("kind") == "call"}
    stage_start: dict[int, float] = {}
    out: list[DecisionPoint] = []
    end_t = next((float(e["t"]) for e in timeline if e.get("kind") in ("rollout_ended", "drill_stopped")), None)
    for e in timeline:
        if e.get("kind") == "rollout_stage" and int(e["round"]) == 0:
            stage_start[int(e["stage"])] = float(e["t"])
        if e.get("kind") == "call_due":
            key = (int(e["stage"]), int(e["round"]))
            decided = call_t.get(key, end_t if end_t is not None else float(e["t"]))
            out.append(DecisionPoint(key[0], spec.stages[key[0]], key[1], stage_start[key[0]], float(e["t"]),
                                     decided, calls.get(key)))
    return out


@dataclass(frozen=True)
class CallGrade:
    point: DecisionPoint
    harmful: bool
    shown: bool
    right: str
    accepted: tuple[str, ...]
    credit: float


def grade_calls(drill: Drill, points: list[DecisionPoint], shown: list[bool], ended: str,
                hints_taken: int = 0, hint_cost: float = 5.0) -> dict[str, Any]:
    """Grade every decision point (``shown[i]``: whether point i's data show the harm). A wrong rollback ends the
    rollout early: every stage below 100 % it never reached counts as a missed call. Score out of 100."""
    graded = []
    for p, s in zip(points, shown):
        harmful = harmful_at(drill, p.percent)
        right, accepted = right_call(harmful, s)
        graded.append(CallGrade(p, harmful, s, right, accepted, call_credit(p.call, right, accepted)))
    unreached = 0
    if ended == "rolled_back" and graded and graded[-1].right != "rollback":
        last = graded[-1].point.stage
        unreached = sum(1 for pct in drill.rollout.stages[last + 1:] if pct < 100)
    n = len(graded) + unreached
    earned = 100.0 * sum(g.credit for g in graded) / n if n else 0.0
    penalty = min(hint_cost * hints_taken, earned)
    return {"calls": graded, "unreached": unreached, "points": n, "earned": round(earned, 2),
            "hint_penalty": round(penalty, 2), "total": round(earned - penalty, 2), "max": 100.0}




# -- the scheduler's side --------------------------------------------------------------------------------


def apply_step(step: Step, drill: Drill, run: RunDir, client, state: RunState, truth: dict[str, Any],
               timeline: list[Mapping], active_s: float) -> list[dict[str, Any]]:
    """Carry out one step against the lab (``client``: a ``toolkit.drills.lab.ControlClient``) and log it; the
    records logged. ``state``, ``truth`` (updated and written when the regression is applied) and ``timeline``
    are the scheduler's, read once a tick."""
    from toolkit.drills.lab import fault_body, fault_name, flag_body

    spec = drill.rollout
    logged = []
    if step.action == "stage":
        percent = spec.stages[step.stage]
        client.put_flag(spec.flag, flag_body(spec.flag, spec.variant, percent))
        reg = drill.truth.regression
        if reg is not None and percent >= reg.from_percent and not truth.get("fault_applied_at"):
            # Expires by itself shortly after the drill's bound, should the scheduler die.
            client.put_fault(fault_name(run.path.name), fault_body(reg.fault, duration_s=state.duration_s + 30))
            truth["fault_applied_at"] = time.time()
            run.write_truth(truth)
            logged.append(run.log("fault_applied"))
        logged.append(run.log("rollout_stage", stage=step.stage, round=step.round, percent=percent,
                              at_active_s=round(active_s, 3), counted=outcome_counts(run, spec.flag)))
    elif step.action == "call_due":
        logged.append(run.log("call_due", stage=step.stage, round=step.round, percent=spec.stages[step.stage],
                              at_active_s=round(active_s, 3),
                              **stage_power(drill, timeline, outcome_counts(run, spec.flag), spec.stages[step.stage])))
    else:
        if step.reason == "rolled_back":
            client.put_flag(spec.flag, flag_body(spec.flag, spec.variant, 0.0))
        if step.reason == "no_call":
            logged.append(run.log("call_missed", stage=step.stage, round=step.round, percent=spec.stages[step.stage]))
        logged.append(run.log("rollout_ended", reason=step.reason, stage=step.stage, at_active_s=round(active_s, 3)))
    return logged


# The planning baseline of the power each call states (as ``toolkit.analysis.rollout.plan_summary`` assumes):
# a success rate of 99 %, and a drop of ``DETECT_DROP`` to detect.
PLANNING_SUCCESS = 0.99
DETECT_DROP = 0.02


def rollout_plan(drill: Drill, spec=None):
    """The ``toolkit.analysis.rollout`` plan the drill's stages amount to: its stages, alpha and guardrails."""
    from toolkit.analysis.judge import with_spec
    from toolkit.analysis.rollout import DEFAULT_PLAN, Stage

    r = drill.rollout
    plan = replace(DEFAULT_PLAN, flag=r.flag, variant=r.variant, control=r.control,
                   stages=tuple(Stage(p, r.window_s, r.window_s) for p in r.stages), max_extensions=r.max_holds)
    return replace(plan, judge=with_spec(plan.judge, spec)) if spec is not None else plan


def outcome_counts(run: RunDir, flag: str) -> dict[str, float]:
    """Terminal publish outcomes the service has counted so far by the flag's variant, from the scheduler's last
    sample of ``/metrics`` (``obslab_publish_outcomes_total``): how much data a stage has, cheaply."""
    import json
    import re

    try:
        with open(run.metrics_file, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 1_000_000))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
        values = json.loads(lines[-1])["values"] if lines else {}
    except (OSError, ValueError, KeyError, IndexError):
        return {}
    label = re.compile(rf'[{{,]{re.escape(flag)}="([^"]+)"')
    out: dict[str, float] = {}
    for key, value in values.items():
        if key.startswith("obslab_publish_outcomes_total{") and (m := label.search(key)):
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(value)
    return out


def stage_power(drill: Drill, timeline: list[Mapping], counted_now: Mapping[str, float], percent: float
                ) -> dict[str, Any]:
    """The data a stage has when its call comes due (outcomes counted since its percent was set) and the power
    they give the rollout judge to roll back a ``DETECT_DROP`` fall of a ``PLANNING_SUCCESS`` success rate: its
    always-valid interval at ``power_alpha`` (``toolkit.analysis.rollout.rollback_alpha`` of the plan the
    drill's stages amount to) wholly beyond the success rate's margin."""
    from toolkit.analysis.rollout import mixture_scale, rollback_alpha
    from toolkit.analysis.stats import power_always_valid_harm

    spec = drill.rollout
    start = next((e.get("counted") or {} for e in reversed(timeline) if e.get("kind") == "rollout_stage"
                  and spec.stages[int(e["stage"])] == percent and int(e["round"]) == 0), {})
    n_c = int(counted_now.get(spec.control, 0) - start.get(spec.control, 0))
    n_v = int(counted_now.get(spec.variant, 0) - start.get(spec.variant, 0))
    plan = rollout_plan(drill)
    success = plan.judge.metric("publish_success_rate")
    alpha = rollback_alpha(plan)
    power = (power_always_valid_harm(PLANNING_SUCCESS, PLANNING_SUCCESS - DETECT_DROP, n_c, n_v,
                                     success.allowed_change, alpha, mixture_scale(success))
             if n_c > 0 and n_v > 0 else 0.0)
    return {"control_outcomes": n_c, "variant_outcomes": n_v, "power_detect_drop": round(power, 3),
            "power_alpha": alpha}


def tick(drill: Drill, run: RunDir, client, state: RunState, truth: dict[str, Any], timeline: list[Mapping],
         active_s: float) -> bool:
    """Take every step due now; True once the rollout has ended. ``timeline`` is the run's as the scheduler read it
    this tick (the learner's calls in it); what the steps log is added to a copy, so nothing is read again."""
    timeline = list(timeline)
    for _ in range(4):  # a call may make two steps due at once (a call, then the next stage)
        step = next_step(drill.rollout, timeline, active_s, state.speed)
        if step is None:
            break
        timeline += apply_step(step, drill, run, client, state, truth, timeline, active_s)
    pos = position(drill.rollout, timeline)
    return pos is not None and pos.phase == "ended"
