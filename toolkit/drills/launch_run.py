"""Run a launch brief against the running lab, in the foreground, then write its report.

``run_launch`` drives the lab's load (the brief's setup, through the drills' Locust launcher), moves
the change's flag through the brief's stages at their times (``PUT /admin/flags``: audited as a
release tool's rollout, as a real one would be), applies the brief's regression at its time under a
neutral name, kept out of the service's audit events as an incident drill's fault is, and removes
everything at the end, on an error or on Ctrl-C. Every wait is bounded by the launch's duration
divided by ``speed``. The run's record is under ``<data-dir>/launches/<run-id>/``: ``run.json``, the
plan it was run with (``plan.yaml``), ``timeline.jsonl`` (stage changes with their times),
``truth.json`` (the regression, mode 0600) and ``report/`` (``toolkit.drills.launch_report``).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from toolkit.drills.clock import PAUSE_BUDGET_S
from toolkit.drills.lab import ControlClient, Lab, LabError, background_fault_name, fault_body, fault_name, flag_body
from toolkit.drills.launch import LaunchBrief
from toolkit.drills.launch_load import RAISED_THINK_TIME, StageLoad, load_phases, stage_loads
from toolkit.drills.launch_report import StageWindow, launch_report, render_launch_report
from toolkit.drills.load import start_load, stop_load
from toolkit.drills.state import RunDir, RunState, new_run
from toolkit.slo.scenario import MAX_SPEED

__all__ = ["LAUNCHES_SUBDIR", "LaunchRunError", "run_launch", "stage_windows", "write_launch_report"]

LAUNCHES_SUBDIR = "launches"
# After the last stage, in-flight attempts need a moment to reach their terminal event.
SETTLE_S = 3.0


class LaunchRunError(RuntimeError):
    """A launch run that cannot start or go on; one line for the user."""


def run_launch(launch: LaunchBrief, plan_text: str, lab: Lab, *, seed: int, speed: float = 1.0,
               client: ControlClient | None = None, say: Callable[[str], None] = lambda _m: None,
               sleep: Callable[[float], None] = time.sleep, now: Callable[[], float] = time.time,
               plan=None) -> RunDir:
    """Run ``launch`` against ``lab`` until its end (``setup.duration / speed`` wall seconds); the run's dir.

    With the checked ``plan`` (``measurement_plan.Plan``) each stage below 100 % gets the floor of users its
    primary metric and rollback guardrails need (``toolkit.drills.launch_load``, capped at what the lab carries);
    without it the brief's load alone runs."""
    if not 0 < speed <= MAX_SPEED:
        raise LaunchRunError(f"--speed must be more than 0 and at most {MAX_SPEED:g}, got {speed:g}")
    client = client or ControlClient(lab)
    client.check()
    run = new_run(lab.data_dir / LAUNCHES_SUBDIR, launch.id)
    (run.path / "plan.yaml").write_text(plan_text)
    started = now()
    state = RunState(run.path.name, launch.id, seed, speed, lab.url, str(lab.data_dir), started,
                     launch.setup.duration_s / speed, events_dir=str(lab.events_dir))
    run.write_state(state)
    reg = launch.regression
    run.write_truth({"regression": {"kind": reg.kind, "target": reg.target, "selector": reg.selector,
                                    "params": reg.params, "at_s": reg.start_s, "duration_s": reg.duration_s}})
    run.log("launch_started", launch=launch.id, speed=speed)
    flag, variant = launch.change["flag"], launch.change["variant"]
    # (wall offset, what): the stages and the regression on the launch's clock, in order.
    actions = sorted([(at / speed, 0, f"stage:{pct:g}") for pct, at in launch.stages]
                     + [(reg.start_s / speed, 1, "regression_on"),
                        ((reg.start_s + reg.duration_s) / speed, 2, "regression_off")])
    load = None
    try:
        for name, (v, pct) in launch.setup.flags.items():
            client.put_flag(name, flag_body(name, v, pct))
        for i, bg in enumerate(launch.setup.background_faults):
            client.put_fault(background_fault_name(run.path.name, i), fault_body(bg))
        loads = _stage_loads(launch, plan, speed)
        phases = load_phases(_shape(launch, state), loads, PAUSE_BUDGET_S) if any(s.users for s in loads) else None
        # the brief's setup has the shape start_load reads
        load = start_load(launch, state, run, phases, RAISED_THINK_TIME if phases else None)
        run.log("load_started", users=launch.setup.load.users, shape=launch.setup.load.shape,
                phases=phases[0] if phases else None, think_time=RAISED_THINK_TIME if phases else None,
                stage_loads=[{"percent": s.percent, "users": s.users, "needed": s.needed, "needed_by": s.needed_by,
                              "expected_variant": s.expected_variant, "expected_variant_users": s.expected_variant_users,
                              "capped": s.capped} for s in loads])
        say(f"load started: {launch.setup.load.users} users, {launch.setup.load.shape}; the launch runs "
            f"{state.duration_s:.0f} s")
        if phases:
            say(f"raised load: up to {phases[1]} users at {RAISED_THINK_TIME} think time (the brief's shape scaled "
                f"to the same attempts per second)")
        for s in loads:
            if s.users:
                say(f"stage {s.percent:g} %: at least {s.users} users ({s.needed_by} needs {s.needed} variant values;"
                    f" about {s.expected_variant:g} expected from about {s.expected_variant_users:g} variant users"
                    f"{', capped at what the lab carries' if s.capped else ''})")
        for offset, _order, what in actions:
            _wait_until(started + offset, sleep, now)
            if what.startswith("stage:"):
                pct = float(what.split(":", 1)[1])
                client.put_flag(flag, flag_body(flag, variant, pct))
                run.log("stage", percent=pct)
                say(f"{flag}={variant} at {pct:g} %")
            elif what == "regression_on":
                client.put_fault(fault_name(run.path.name), fault_body(reg, duration_s=reg.duration_s / speed))
                run.log("regression_applied")
            else:
                _quietly(client.delete_fault, fault_name(run.path.name))
                run.log("regression_removed")
        _wait_until(started + state.duration_s, sleep, now)
        run.log("launch_finished")
    except KeyboardInterrupt:
        run.log("launch_stopped", by="interrupt")
        raise
    finally:
        if load is not None:
            stop_load(load)
        _quietly(client.delete_fault, fault_name(run.path.name))
        for i, _bg in enumerate(launch.setup.background_faults):
            _quietly(client.delete_fault, background_fault_name(run.path.name, i))
        for name in (flag, *launch.setup.flags):
            _quietly(client.delete_flag, name)
        run.log("cleaned_up")
    return run


def _stage_loads(launch: LaunchBrief, plan, speed: float) -> tuple[StageLoad, ...]:
    if plan is None:
        return ()
    from toolkit.analysis.judge import DEFAULT_CONFIG

    return stage_loads(launch.stages, launch.setup.duration_s, plan, speed, DEFAULT_CONFIG.alpha)


def _shape(launch: LaunchBrief, state):
    from loadtests.profiles import Profile

    load = launch.setup.load
    # A setup "phased" with no phases of its own runs flat (the drills' loader gives it none).
    return Profile("steady" if load.shape == "phased" else load.shape, load.users, float(load.users), state.duration_s)


def _wait_until(t: float, sleep: Callable[[float], None], now: Callable[[], float]) -> None:
    while (left := t - now()) > 0:
        sleep(min(left, 1.0))


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except LabError:
        pass  # already gone (the service expires a fault by its duration) or the lab is down: nothing to undo


def stage_windows(run: RunDir) -> list[StageWindow]:
    """Each stage's window from the run's timeline: from its flag change to the next one (or the end)."""
    state = run.read_state()
    timeline = run.timeline()
    changes = [(e["t"], float(e["percent"])) for e in timeline if e.get("kind") == "stage"]
    started = next((e for e in timeline if e.get("kind") == "load_started"), {})
    floors = {float(s["percent"]): s for s in started.get("stage_loads") or ()}
    end = next((e["t"] for e in timeline if e.get("kind") in ("launch_finished", "launch_stopped")),
               state.started_at + state.duration_s)
    out = []
    for i, (t, pct) in enumerate(changes):
        stop = changes[i + 1][0] if i + 1 < len(changes) else end
        out.append(StageWindow(pct, _utc(t), _utc(stop), floors.get(pct)))
    return out


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).replace(tzinfo=None)


def write_launch_report(run: RunDir, launch: LaunchBrief, plan, *, settle_s: float = SETTLE_S,
                        sleep: Callable[[float], None] = time.sleep) -> str:
    """Read the lab's events over the run, write ``report/report.{json,md}``; the markdown."""
    from toolkit.analysis.compare import load_attempts

    sleep(settle_s)
    state = run.read_state()
    events_dir = Path(state.events_dir)
    attempts, _events = load_attempts([events_dir])
    report = launch_report(attempts, launch, plan, stage_windows(run), source=str(events_dir))
    run.report_dir.mkdir(exist_ok=True)
    (run.report_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    md = render_launch_report(report)
    (run.report_dir / "report.md").write_text(md)
    run.log("report_written", path=str(run.report_dir))
    return md
