"""The detached process that runs a drill's timeline against the lab.

``python -m toolkit.drills.scheduler RUN_DIR`` — started by ``obslab drill start`` in
its own session, so it outlives the command. It drives the load for the drill's
duration, samples ``/metrics`` into ``metrics.jsonl``, applies the fault at the
seeded start time and removes it after its duration, then cleans up (faults, flags,
load) and, for ``--auto`` runs, answers the drill and writes the report. SIGTERM
(``obslab drill stop``) cleans up the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from toolkit.drills.clock import PAUSE_BUDGET_S, clock_from
from toolkit.drills.lab import (ACTOR_ENV, DEFAULT_ACTOR, TOKEN_ENV, ControlClient, Lab, LabError,
                                background_fault_name, fault_body, fault_name, flag_body, pace_prometheus)
from toolkit.drills.load import start_load, stop_load
from toolkit.drills.restore import remove_fault, restore_service
from toolkit.drills.schema import Drill, find_drill
from toolkit.drills.state import RunDir, RunState, append_jsonl

__all__ = ["main", "run_schedule", "sample_metrics", "fault_name", "background_fault_name", "cleanup"]


class _Stop(BaseException):
    """SIGTERM: a BaseException, so no ``except Exception`` on the way (a missed metrics sample) swallows it
    and keeps the drill running past its stop."""


# Until Locust is started and named, a SIGTERM is only recorded (raising then could leave Locust running
# unnamed); it is acted on right after. Deferring in the handler rather than blocking the signal keeps the
# mask clear: a blocked SIGTERM is inherited by Locust, which then ignored every stop until SIGKILL.
_deferring = True
_stop_requested = False


def _on_sigterm(signum, frame):  # noqa: ARG001
    global _stop_requested
    _stop_requested = True
    if not _deferring:
        raise _Stop()


def _stop_if_requested() -> None:
    global _deferring
    _deferring = False
    if _stop_requested:
        raise _Stop()


def sample_metrics(client: ControlClient, run: RunDir) -> None:
    """Append one sample of the service's obslab_* series to metrics.jsonl."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = client.metrics_text()
    except (LabError, Exception):  # a missed sample is a gap in a plot, not a failed drill
        return
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("obslab_"):
            continue
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            values[f"{s.name}{{{labels}}}"] = s.value
    append_jsonl(run.metrics_file, {"t": time.time(), "values": values})


def cleanup(client: ControlClient, drill: Drill, run: RunDir, load: subprocess.Popen | None) -> None:
    # The service first (fault, background faults, flags): they are what users feel, and they must be gone
    # even if what follows (Locust's graceful stop, Prometheus re-paced) runs out of the stopper's patience.
    try:
        restore_service(client, drill, run)
    except LabError as e:
        print(f"cleanup: {e}", file=sys.stderr)  # the stopper tries again (runner.stop)
    if load is not None:
        stop_load(load)
        run.log("load_stopped")
    state = run.read_state()
    if state.speed != 1:
        # Back to the lab's own pace; what Prometheus recorded during the drill stays queryable.
        not_paced = pace_prometheus(state.data_dir, state.url, state.prometheus_url, state.slo_spec, state.profile, 1.0)
        if not_paced:
            print(f"cleanup: {not_paced}", file=sys.stderr)


def _set_due_flags(client: ControlClient, drill: Drill, run: RunDir, state: RunState, active_s: float,
                   done: set[str]) -> None:
    """Set each flag the drill changes mid-way (``setup.flags.<name>.at``, drill time) once its time has come.
    ``done``: the ones set so far, kept by the caller (this process is the only one that sets them), so a tick
    reads nothing."""
    for name, at_s in drill.setup.flag_at.items():
        if name not in done and active_s >= at_s / state.speed:
            variant, percent = drill.setup.flags[name]
            client.put_flag(name, flag_body(name, variant, percent))
            run.log("flag_set", flag=name, variant=variant, percent=percent)
            done.add(name)


def _auto_mitigator(run: RunDir, state: RunState, drill: Drill, lab: Lab):
    """The solver's mitigation step of an ``--auto --auto-mitigate`` run (``toolkit.drills.auto_mitigate``)."""
    if not (state.auto and state.auto_mitigate and drill.mitigations is not None):
        return None
    from toolkit.drills.auto_mitigate import AutoMitigator
    from toolkit.drills.report import default_spec

    return AutoMitigator(run, lab, drill, default_spec(state), os.environ.get(ACTOR_ENV, DEFAULT_ACTOR))


def _auto_mitigation_step(run: RunDir, step) -> None:
    # A look that fails (a half-written event line, a lab slow to answer) is logged; the drill goes on.
    try:
        step(time.time())
    except Exception as e:  # noqa: BLE001 - the log is the only place a detached process can report to
        run.log("auto_mitigation_error", error=str(e))


def run_schedule(run: RunDir) -> None:
    state: RunState = run.read_state()
    drill = find_drill(state.drill_id)
    truth = run.read_truth()
    lab = Lab(Path(state.data_dir), state.url, os.environ[TOKEN_ENV])
    client = ControlClient(lab, actor=os.environ.get(ACTOR_ENV, DEFAULT_ACTOR))
    interval_s = max(0.5, min(2.0, 10.0 / state.speed))
    load = None
    signal.signal(signal.SIGTERM, _on_sigterm)
    # The runner starts this process with SIGTERM blocked, so a stop sent while it was still importing is
    # pending, not fatal: it arrives now, to the handler, and the drill is cleaned up (its flags are set already).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    try:
        if not _stop_requested:
            load = start_load(drill, state, run)
            run.log("load_started", users=drill.setup.load.users, shape=drill.setup.load.shape)
        _stop_if_requested()
        # Times are on the run's clock (wall seconds it ran, pauses excluded): a paused drill does not advance.
        # An experiment drill without a timed fault: nothing to apply (its scenario is in its setup).
        fault_start = truth["fault_start_s"] if truth.get("fault_start_s") is not None else float("inf")
        fault_end = fault_start + (truth.get("fault_duration_s") or 0.0)
        flags_set: set[str] = set()
        mitigator = _auto_mitigator(run, state, drill, lab)
        while True:
            now = time.time()
            timeline = run.timeline()  # once a tick: the pauses, the learner's calls
            clock = clock_from(state.started_at, state.speed, timeline)
            if clock.paused and clock.paused_s(now) >= PAUSE_BUDGET_S:
                run.log("clock_resumed", by="scheduler", reason=f"the run's {PAUSE_BUDGET_S:g} s of pauses are used")
                continue
            active = clock.active_s(now)
            if active >= state.duration_s:
                break
            if not clock.paused:
                if not truth.get("fault_applied_at") and active >= fault_start:
                    client.put_fault(fault_name(state.run_id), fault_body(drill.fault))
                    truth["fault_applied_at"] = time.time()
                    run.write_truth(truth)
                    run.log("fault_applied")
                if truth.get("fault_applied_at") and not truth.get("fault_removed_at") and active >= fault_end:
                    remove_fault(client, run, truth)  # not removed (said on stderr): tried again next tick
                _set_due_flags(client, drill, run, state, active, flags_set)
                if drill.kind == "rollout":
                    from toolkit.drills.rollout_drill import tick

                    if tick(drill, run, client, state, truth, timeline, active):
                        break
                if mitigator is not None:
                    _auto_mitigation_step(run, mitigator.step)
            sample_metrics(client, run)
            if load is not None and load.poll() is not None:
                run.log("load_exited", returncode=load.returncode)
                load = None
            left = interval_s if clock.paused else state.duration_s - clock.active_s(time.time())
            time.sleep(max(0.0, min(interval_s, left)))
        sample_metrics(client, run)
        if mitigator is not None:
            _auto_mitigation_step(run, mitigator.finish)
        cleanup(client, drill, run, load)
        load = None
        run.log("drill_finished")
        if state.auto:
            from toolkit.drills.auto import solve
            from toolkit.drills.report import default_spec, write_report
            from toolkit.drills.runner import record_diagnosis

            spec = default_spec(state)
            if drill.kind == "rollout":
                pass  # a rollout drill's calls are the learner's: nothing to answer unattended
            elif drill.kind == "experiment":
                from toolkit.drills.auto import solve_experiment
                from toolkit.drills.runner import record_verdict

                record_verdict(run, solve_experiment(run, spec))
            else:
                record_diagnosis(run, solve(run, spec))
            write_report(run, spec)
            run.log("report_written", path=str(run.report_dir))
    except _Stop:
        cleanup(client, drill, run, load)
        run.log("drill_stopped")
    except Exception as e:  # noqa: BLE001 - the log is the only place a detached process can report to
        traceback.print_exc()
        run.log("scheduler_error", error=str(e))
        try:
            cleanup(client, drill, run, load)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m toolkit.drills.scheduler RUN_DIR", file=sys.stderr)
        raise SystemExit(2)
    run_schedule(RunDir(Path(args[0])))


if __name__ == "__main__":
    main()
