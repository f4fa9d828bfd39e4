"""Drill lifecycle against a running lab: start, status, hint, answer, stop.

``start`` checks the lab and the token, draws the fault's start time from the seed,
writes the run's files (the ground truth in ``truth.json``, which the learner's
commands never print), applies the setup (flags, background faults) and launches the
detached scheduler. The other commands read and append to the run's files.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from toolkit.drills.clock import PAUSE_BUDGET_S
from toolkit.drills.grader import HINT_COST
from toolkit.drills.lab import (ACTOR_ENV, DEFAULT_ACTOR, TOKEN_ENV, ControlClient, Lab, LabError,
                                background_fault_name, fault_body, find_lab, flag_body, pace_prometheus)
from toolkit.drills.load import stop_load_group
from toolkit.drills.restore import restore_service
from toolkit.drills.schema import ANSWER_VALUES, Drill, DrillSpecError, Questions, find_drill
from toolkit.drills.state import NoDrillRunning, RunDir, RunState, append_jsonl, current_run, new_run
from toolkit.slo.scenario import MAX_SPEED

if TYPE_CHECKING:
    from toolkit.drills.auto import Diagnosis, ExperimentDiagnosis

__all__ = [
    "ACTIVE_PHASES",
    "running_drill",
    "DrillError",
    "Status",
    "start",
    "check_auto_mitigate",
    "status",
    "next_hint",
    "answer",
    "record_diagnosis",
    "answer_verdict",
    "decide",
    "RolloutStatus",
    "rollout_status",
    "record_verdict",
    "stop",
    "pause",
    "resume",
    "start_notes",
    "solution",
    "questions",
    "hint_cost",
    "parse_cohort",
    "scheduler_alive",
    "wait_finished",
    "USER_ERRORS",
]


class DrillError(RuntimeError):
    """A drill command that cannot proceed; one line for the user."""


@dataclass(frozen=True)
class Status:
    drill: Drill
    state: RunState
    phase: str  # running | finished | stopped | failed
    elapsed_s: float  # scenario seconds since the start (pauses excluded)
    hints_shown: int
    answers: int
    paused: bool = False
    duration_s: float = 0.0  # the drill's length in scenario seconds
    questions: Questions | None = None  # in this run's order

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.duration_s - self.elapsed_s)


def questions(drill: Drill, state: RunState) -> Questions:
    """The drill's questions in the order this run shows them (shuffled by the run's seed)."""
    return drill.questions.shuffled(f"{state.run_id}:{state.seed}")


def scheduler_alive(state: RunState) -> bool:
    if state.scheduler_pid is None:
        return False
    try:
        os.kill(state.scheduler_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this very process counts as gone.
    try:
        with open(f"/proc/{state.scheduler_pid}/stat") as f:
            return f.read().split(") ", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def running_drill(drills_dir: Path) -> RunState | None:
    """The drill running in this data directory now (its speed, its profile), or None when none runs.

    While a drill runs, the lab's alert windows are paced to its speed (Prometheus's rules from its
    start until its scheduler cleans up), so the lab's own surfaces (``obslab budget``, the dashboard,
    ``obslab top``) evaluate the burn rates in the same scenario time."""
    try:
        run = current_run(drills_dir)
        state = run.read_state()
        kinds = {e.get("kind") for e in run.timeline()}
    except (NoDrillRunning, OSError, ValueError, TypeError, KeyError):
        return None
    if kinds & {"drill_finished", "drill_stopped", "scheduler_error"} or not scheduler_alive(state):
        return None
    return state


# A drill in one of these phases still holds the lab: no other drill starts and no report is written yet.
ACTIVE_PHASES = ("running", "stopping")


def _phase(run: RunDir, state: RunState) -> str:
    kinds = {e["kind"] for e in run.timeline()}
    if "drill_stopped" in kinds:
        return "stopped"
    if "stop_requested" in kinds and scheduler_alive(state):
        return "stopping"  # its scheduler is removing the fault and flags and stopping the load
    if "scheduler_error" in kinds:
        return "failed"
    if "drill_finished" in kinds:
        return "finished" if (not state.auto or "report_written" in kinds or not scheduler_alive(state)) else "running"
    if scheduler_alive(state):
        return "running"
    return "failed"


def check_auto_mitigate(drill: Drill, auto: bool, auto_mitigate: bool) -> None:
    """--auto-mitigate goes with --auto, on a drill that has a mitigation step; DrillError says which is wrong."""
    if auto_mitigate and not auto:
        raise DrillError("--auto-mitigate goes with --auto: unattended, the solver takes the mitigation step "
                         "(on your own run, `obslab drill mitigate ACTION` is yours)")
    if auto_mitigate and drill.mitigations is None:
        raise DrillError(f"--auto-mitigate: {drill.id} has no mitigation step (drills with one: see docs/drills.md, "
                         "Mitigation)")


def start(drill_id: str, lab: Lab, *, seed: int | None = None, speed: float = 1.0, auto: bool = False,
          actor: str = DEFAULT_ACTOR, auto_mitigate: bool = False) -> RunDir:
    """Start a drill; ``actor`` is who the service's audit events name for its faults and flags. With
    ``auto_mitigate`` (only with ``auto``), the solver also takes the drill's mitigation step while it runs
    (``toolkit.drills.auto_mitigate``)."""
    drill = find_drill(drill_id)
    check_auto_mitigate(drill, auto, auto_mitigate)
    if auto and drill.kind == "rollout":
        raise DrillError(f"{drill.id} is a rollout drill: its calls are yours to make (`obslab drill decide`), "
                         "so it runs without --auto")
    if not 0 < speed <= MAX_SPEED:
        raise DrillError(f"--speed must be more than 0 and at most {MAX_SPEED:g} (the fastest the lab's alert "
                         f"windows can be compressed), got {speed:g}")
    try:
        existing = current_run(lab.drills_dir)
        state = existing.read_state()
        phase = _phase(existing, state)
        if scheduler_alive(state) and phase in ACTIVE_PHASES:
            raise DrillError(f"drill {state.drill_id} is still {phase}" +
                             (" (stop it with `obslab drill stop`)" if phase == "running" else ""))
    except NoDrillRunning:
        pass
    client = ControlClient(lab, actor=actor)
    client.check()  # no lab / wrong token: fail before writing anything
    # The lab's Prometheus evaluates the alerts in the scenario's time (windows / speed), as the engine does.
    not_paced = pace_prometheus(lab.data_dir, lab.url, lab.prometheus_url, lab.slo_spec, lab.profile, speed)
    seed = seed if seed is not None else random.SystemRandom().randrange(1, 2**31)
    rng = random.Random(seed)
    # An experiment drill may have no timed fault: its scenario (flags, faults, load mix) runs from the start.
    fault_start_s = drill.fault.start_at(rng.random()) / speed if drill.fault is not None else None
    run = new_run(lab.drills_dir, drill.id)
    started_at = time.time()
    state = RunState(run_id=run.path.name, drill_id=drill.id, seed=seed, speed=speed, url=lab.url,
                     data_dir=str(lab.data_dir), started_at=started_at,
                     duration_s=drill.setup.duration_s / speed, auto=auto, events_dir=str(lab.events_dir),
                     prometheus_url=lab.prometheus_url, slo_spec=lab.slo_spec, profile=lab.profile,
                     auto_mitigate=auto_mitigate)
    run.write_state(state)
    fault_duration_s = drill.fault.duration_s / speed if drill.fault is not None else None
    if drill.kind == "experiment":
        truth_fields = {"verdict": drill.truth.verdict, "evidence": drill.truth.evidence}
    elif drill.kind == "rollout":
        # The right call at each stage follows from this and from what the stage's data show (the report's judge).
        reg = drill.truth.regression
        truth_fields = {"regression": None if reg is None else {
            "kind": reg.fault.kind, "target": reg.fault.target, "selector": reg.fault.selector,
            "params": reg.fault.params, "from_percent": reg.from_percent, "shows_in": reg.shows_in,
            "cohort": reg.cohort}}
    else:
        truth_fields = {"cause": drill.truth.cause, "cohort": drill.truth.cohort}
    run.write_truth({"drill_id": drill.id, "kind": drill.kind, **truth_fields,
                     "fault_start_s": fault_start_s, "fault_duration_s": fault_duration_s})
    run.log("drill_started", drill=drill.id, seed=seed, speed=speed, auto=auto,
            **({"auto_mitigate": True} if auto_mitigate else {}))
    if not_paced:
        run.log("prometheus_not_paced", reason=not_paced)
    for name, (variant, percent) in drill.setup.flags.items():
        if name in drill.setup.flag_at:
            continue  # set mid-drill by the scheduler
        client.put_flag(name, flag_body(name, variant, percent))
        run.log("flag_set", flag=name, variant=variant, percent=percent)
    for i, bg in enumerate(drill.setup.background_faults):
        client.put_fault(background_fault_name(run.path.name, i), fault_body(bg, duration_s=state.duration_s + 30))
        run.log("background_fault_applied", index=i, fault_kind=bg.kind, target=bg.target)
    env = {**os.environ, TOKEN_ENV: lab.token, ACTOR_ENV: actor}
    # The scheduler starts with SIGTERM blocked (a child inherits this thread's mask) and unblocks it once its
    # handler is in place: a stop during its start-up is then delivered, not fatal before the drill's flags and
    # background faults (set above) could be removed.
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        with open(run.log_file, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "toolkit.drills.scheduler", str(run.path)], env=env,
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, close_fds=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
    run.write_state(RunState(**{**state.__dict__, "scheduler_pid": proc.pid}))
    return run


def start_notes(run: RunDir) -> list[str]:
    """What the learner should know about how the run started (e.g. a Prometheus left at speed 1)."""
    return [e["reason"] for e in run.timeline() if e["kind"] == "prometheus_not_paced"]


def _current(lab_or_dir: Lab | Path) -> tuple[RunDir, RunState, Drill]:
    drills_dir = lab_or_dir.drills_dir if isinstance(lab_or_dir, Lab) else lab_or_dir
    run = current_run(drills_dir)
    state = run.read_state()
    return run, state, find_drill(state.drill_id)


def status(drills_dir: Path) -> Status:
    run, state, drill = _current(drills_dir)
    timeline = run.timeline()
    clock = run.clock()
    duration = drill.setup.duration_s
    return Status(drill, state, _phase(run, state), min(clock.scenario_s(time.time()), duration),
                  sum(1 for e in timeline if e["kind"] == "hint_shown"), len(run.answers()), clock.paused,
                  duration, questions(drill, state))


def hint_cost(drills_dir: Path) -> tuple[int, int, float]:
    """What the next hint would be and cost, without taking it: (number, of, points); number 0 when all
    hints are out (seeing one again is free)."""
    run, state, drill = _current(drills_dir)
    shown = sum(1 for e in run.timeline() if e["kind"] == "hint_shown")
    if shown >= len(drill.hints):
        return 0, len(drill.hints), 0.0
    return shown + 1, len(drill.hints), HINT_COST


def next_hint(drills_dir: Path) -> tuple[int, int, str]:
    """Take the next hint not shown yet (it costs ``HINT_COST`` points in the grade; the last one again,
    free, once all are out): (number, of, text)."""
    run, state, drill = _current(drills_dir)
    shown = sum(1 for e in run.timeline() if e["kind"] == "hint_shown")
    index = min(shown, len(drill.hints) - 1)
    if shown < len(drill.hints):
        run.log("hint_shown", number=index + 1, cost=HINT_COST)
    return index + 1, len(drill.hints), drill.hints[index]


def pause(drills_dir: Path) -> RunDir:
    """Pause the scenario clock: the scheduler stops advancing (the fault stays as it is, the load
    goes on), the time left freezes. At most ``PAUSE_BUDGET_S`` wall seconds of pauses per run."""
    run, state, drill = _current(drills_dir)
    if _phase(run, state) != "running":
        raise DrillError(f"drill {drill.id} is not running: nothing to pause")
    clock = run.clock()
    if clock.paused:
        raise DrillError(f"drill {drill.id} is already paused (`obslab drill resume`)")
    if clock.paused_s(time.time()) >= PAUSE_BUDGET_S:
        raise DrillError(f"drill {drill.id} has used its {PAUSE_BUDGET_S:g} s of pauses")
    run.log("clock_paused", at_scenario_s=round(clock.scenario_s(time.time()), 3))
    return run


def resume(drills_dir: Path) -> RunDir:
    """Resume a paused scenario clock."""
    run, state, drill = _current(drills_dir)
    if not run.clock().paused:
        raise DrillError(f"drill {drill.id} is not paused")
    run.log("clock_resumed")
    return run


def solution(drill_id: str, drills_dir: Path) -> Drill:
    """The drill, for its solution — only once a run of it in this lab has ended (finished or stopped),
    so the answer can never be read before or during the run it would give away."""
    drill = find_drill(drill_id)
    ended = False
    if drills_dir.is_dir():
        for run_json in drills_dir.glob("*/run.json"):
            run = RunDir(run_json.parent)
            try:
                state = run.read_state()
            except (OSError, ValueError, TypeError):
                continue
            if state.drill_id == drill.id and _phase(run, state) in ("finished", "stopped", "failed"):
                ended = True
                break
    if not ended:
        raise DrillError(f"no run of {drill.id} has ended in {drills_dir.parent}: the solution is shown only after "
                         f"you ran the drill (`obslab drill start {drill.id}`, then let it finish or "
                         f"`obslab drill stop`)")
    return drill


def parse_cohort(text: str) -> dict[str, str]:
    """``everyone`` or ``dim=value[,dim=value]`` → mapping; ValueError names the bad part."""
    text = text.strip()
    if text.lower() in ("everyone", "all", ""):
        return {}
    out: dict[str, str] = {}
    for part in text.split(","):
        dim, sep, value = part.strip().partition("=")
        dim, value = dim.strip(), value.strip()
        if not sep or not dim or not value:
            raise DrillError(f"--cohort: expected everyone or dim=value[,dim=value], got {part.strip()!r}")
        if dim not in ANSWER_VALUES:
            raise DrillError(f"--cohort: unknown dimension {dim!r} (one of {', '.join(ANSWER_VALUES)})")
        if value not in ANSWER_VALUES[dim]:
            raise DrillError(f"--cohort: {dim} has no value {value!r} (one of {', '.join(ANSWER_VALUES[dim])})")
        if dim in out:
            raise DrillError(f"--cohort: names {dim} twice")
        out[dim] = value
    return out


def answer(drills_dir: Path, cause: str, cohort: Mapping[str, str], impact: float,
           by: str = "learner") -> tuple[Drill, int]:
    """Record an answer; grading happens in the report, so the learner gets no hint from it."""
    run, state, drill = _current(drills_dir)
    return drill, _record_answer(run, state, drill, cause, cohort, impact, by)


def _record_answer(run: RunDir, state: RunState, drill: Drill, cause: str, cohort: Mapping[str, str],
                   impact: float, by: str) -> int:
    if drill.kind == "rollout":
        raise DrillError(f"{drill.id} is a rollout drill: make each stage's call with `obslab drill decide "
                         "continue|hold|rollback`")
    if drill.kind == "experiment":
        raise DrillError(f"{drill.id} is an experiment drill: answer with --verdict and --evidence "
                         f"(`obslab drill show {drill.id}` lists the choices)")
    shown = questions(drill, state)
    if cause not in shown.cause_choices:
        raise DrillError(f"--cause: {cause!r} is not one of this drill's choices: "
                         f"{', '.join(shown.cause_choices)}")
    bad_dims = sorted(set(cohort) - set(shown.cohort_dimensions))
    if bad_dims:
        raise DrillError(f"--cohort: this drill asks about {', '.join(shown.cohort_dimensions)}, "
                         f"not {bad_dims[0]}")
    now = time.time()
    at_s = now - state.started_at
    append_jsonl(run.answers_file, {"cause": cause, "cohort": dict(cohort), "impact": impact, "at_s": at_s,
                                    "at_scenario_s": round(run.clock().scenario_s(now), 3), "by": by})
    run.log("answer", cause=cause, cohort=dict(cohort), impact=impact, by=by)
    return len(run.answers())


def answer_verdict(drills_dir: Path, verdict: str, evidence: str, by: str = "learner") -> tuple[Drill, int]:
    """Record an experiment drill's answer: a verdict on the comparison and the evidence it rests on."""
    run, state, drill = _current(drills_dir)
    return drill, _record_verdict(run, state, drill, verdict, evidence, by)


def _record_verdict(run: RunDir, state: RunState, drill: Drill, verdict: str, evidence: str, by: str) -> int:
    if drill.kind == "rollout":
        raise DrillError(f"{drill.id} is a rollout drill: make each stage's call with `obslab drill decide "
                         "continue|hold|rollback`")
    if drill.kind != "experiment":
        raise DrillError(f"{drill.id} is an incident drill: answer with --cause, --cohort and --impact")
    shown = questions(drill, state)
    if verdict not in shown.verdict_choices:
        raise DrillError(f"--verdict: {verdict!r} is not one of this drill's choices: "
                         f"{', '.join(shown.verdict_choices)}")
    if evidence not in shown.evidence_choices:
        raise DrillError(f"--evidence: {evidence!r} is not one of this drill's choices: "
                         f"{', '.join(shown.evidence_choices)}")
    now = time.time()
    append_jsonl(run.answers_file, {"verdict": verdict, "evidence": evidence, "at_s": now - state.started_at,
                                    "at_scenario_s": round(run.clock().scenario_s(now), 3), "by": by})
    run.log("answer", verdict=verdict, evidence=evidence, by=by)
    return len(run.answers())


@dataclass(frozen=True)
class RolloutStatus:
    """Where a rollout drill stands, as the learner may see it (nothing of the truth)."""

    percent: float | None  # None: not started yet
    round: int
    phase: str  # waiting | collecting | call_due | ended
    stage_started_at: float | None  # wall time the current percent was set
    seconds_left: float | None  # wall seconds until the call is due (collecting) or its time runs out (call_due)
    ended: str
    calls: tuple[dict, ...]
    holds_left: int
    due: dict | None = None  # a call due: the stage's counted outcomes and the power they give (scheduler's)


def rollout_status(drills_dir: Path, now: float | None = None) -> RolloutStatus:
    from toolkit.drills.rollout_drill import position

    run, state, drill = _current(drills_dir)
    if drill.kind != "rollout":
        raise DrillError(f"{drill.id} is an {drill.kind} drill, not a rollout drill")
    now = time.time() if now is None else now
    timeline = run.timeline()
    spec = drill.rollout
    pos = position(spec, timeline)
    calls = tuple({"percent": e["percent"], "round": e["round"], "call": e["call"]}
                  for e in timeline if e.get("kind") == "call")
    if pos is None:
        return RolloutStatus(None, 0, "waiting", None, None, "", calls, spec.max_holds)
    started = next(e["t"] for e in timeline if e.get("kind") == "rollout_stage" and e["stage"] == pos.stage
                   and e["round"] == 0)
    active = run.clock().active_s(now)
    left, due = None, None
    if pos.phase == "collecting":
        left = max(0.0, pos.since_s + spec.window_s / state.speed - active)
    elif pos.phase == "call_due":
        left = max(0.0, pos.since_s + spec.decide_within_s / state.speed - active)
        event = next(e for e in reversed(timeline) if e.get("kind") == "call_due")
        due = {k: event.get(k) for k in ("control_outcomes", "variant_outcomes", "power_detect_drop", "power_alpha")}
    return RolloutStatus(pos.percent, pos.round, pos.phase, started, left, pos.ended, calls,
                         spec.max_holds - pos.round, due)


def decide(drills_dir: Path, call: str, by: str = "learner") -> tuple[Drill, float]:
    """Record the call (continue, hold, rollback) for the stage of the current rollout drill whose call is due;
    the scheduler acts on it. The percent of the stage called."""
    from toolkit.drills.rollout_drill import CALLS, record_call

    run, state, drill = _current(drills_dir)
    if call not in CALLS:
        raise DrillError(f"unknown call {call!r}: one of {', '.join(CALLS)}")
    if drill.kind != "rollout":
        raise DrillError(f"{drill.id} is an {drill.kind} drill: `obslab drill decide` is for rollout drills "
                         "(answer this one with `obslab drill answer`)")
    if _phase(run, state) != "running":
        raise DrillError(f"drill {drill.id} is not running: no call to make")
    try:
        pos = record_call(run, drill, call, run.clock().active_s(time.time()), by)
    except ValueError as e:
        raise DrillError(str(e)) from None
    return drill, pos.percent


def record_verdict(run: RunDir, diagnosis: ExperimentDiagnosis) -> int:
    """Record the solver's verdict on an experiment drill (``auto.solve_experiment``) as its answer, by ``auto``;
    keep the evidence in ``auto.json``."""
    state = run.read_state()
    drill = find_drill(state.drill_id)
    (run.path / "auto.json").write_text(json.dumps(diagnosis.to_json(), indent=2))
    return _record_verdict(run, state, drill, diagnosis.verdict, diagnosis.evidence, by="auto")


def record_diagnosis(run: RunDir, diagnosis: Diagnosis) -> int:
    """Record the solver's diagnosis of ``run`` (``auto.solve``) as its answer, by ``auto``; keep the
    evidence in ``auto.json``. The analysis only diagnoses; answers are recorded here."""
    from toolkit.drills.auto import diagnosis_json

    state = run.read_state()
    drill = find_drill(state.drill_id)
    (run.path / "auto.json").write_text(json.dumps(diagnosis_json(diagnosis), indent=2))
    impact = diagnosis.impact_value if diagnosis.impact_value is not None else 0.0
    return _record_answer(run, state, drill, diagnosis.cause, diagnosis.cohort, impact, by="auto")


def stop(drills_dir: Path, timeout_s: float = 30.0, lab: Lab | None = None) -> RunDir:
    """Stop the scheduler (it removes the fault, flags and load) and wait for it; then make sure nothing
    the drill started is left: its scheduler's and its Locust's process groups (each its own session)."""
    run, state, drill = _current(drills_dir)
    if scheduler_alive(state):
        run.log("stop_requested")
        try:
            os.killpg(state.scheduler_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.time() + timeout_s
        while scheduler_alive(state) and time.time() < deadline:
            time.sleep(0.1)
        if scheduler_alive(state):
            try:
                os.killpg(state.scheduler_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    elif not {"drill_finished", "drill_stopped"} & {e["kind"] for e in run.timeline()}:
        run.log("drill_stopped")
    # A scheduler killed (or dead) before it stopped its load leaves Locust in its own group.
    stop_load_group(run)
    if "service_restored" not in {e["kind"] for e in run.timeline()}:
        # The scheduler was killed, or the busy service refused its removals: the drill's flags and faults
        # must not outlive it, so the stopper removes them itself (each removal is idempotent).
        try:
            restore_service(ControlClient(lab or find_lab(state.data_dir, state.url)), drill, run)
        except LabError as e:
            raise DrillError(f"drill stopped, but {e}") from None
    return run


def wait_finished(drills_dir: Path, timeout_s: float, poll_s: float = 0.5) -> Status:
    """Block until the current drill's scheduler has exited (finished, stopped or failed)."""
    deadline = time.time() + timeout_s
    while True:
        st = status(drills_dir)
        if not scheduler_alive(st.state):
            return status(drills_dir)
        if time.time() > deadline:
            raise DrillError(f"drill {st.drill.id} did not finish within {timeout_s:.0f}s")
        time.sleep(poll_s)


# Errors a drill command turns into one line.
USER_ERRORS = (DrillError, DrillSpecError, LabError, NoDrillRunning)
