"""The drill's load: Locust headless against the lab, bounded by the drill's (compressed) duration.

The load generator (``loadtests/``) is configured by ``OBSLAB_LOAD_*`` environment variables
(see docs/load.md); a drill sets the shape, the retry policy, the seed and a client record
directory inside the run directory, so the client side of the drill can be reconciled with
the events afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from loadtests.profiles import SPIKE_BASE_SHARE, SPIKE_WINDOW
from toolkit.drills.clock import PAUSE_BUDGET_S
from toolkit.drills.schema import Drill
from toolkit.drills.state import RunDir, RunState
from toolkit.lab.load import locust_argv

__all__ = ["load_env", "load_command", "shape_phases", "start_load", "stop_load", "stop_load_group", "locustfile",
           "LOAD_PID_FILE", "REMOTE_CONFIG_FILE"]

# The Locust process group's id, written when the load starts: whoever stops the drill (the scheduler,
# `obslab drill stop`, the lab's shutdown) can stop it even if the scheduler died first.
LOAD_PID_FILE = "load.pid"
# The clients' remote config in the run directory (a retry policy switched mid-drill, toolkit.drills.mitigate).
REMOTE_CONFIG_FILE = "remote-config.json"


def locustfile() -> Path:
    """The drill's locustfile: the lab's users plus the client behaviours drills emulate."""
    return Path(__file__).resolve().parent / "locustfile.py"


def shape_phases(shape: str, users: int, duration_s: float) -> str | None:
    """A curved shape as explicit phases over the drill's wall duration (``OBSLAB_LOAD_PHASES``), or None for
    a flat one. Locust stretches a named curve over its ``--run-time``, which for a drill is the duration plus
    the pause budget: a spike at 40-60 % of that fell after the drill had ended. The last phase holds the base
    load through the pause budget, so the load stays bounded by the same time as before."""
    if shape != "spike":
        return None
    low, high = SPIKE_WINDOW
    base = max(1, round(users * SPIKE_BASE_SHARE))
    # A spike arrives at once: every phase spawns (and stops) users at the peak's count per second.
    phases = [(low * duration_s, base), ((high - low) * duration_s, users),
              ((1 - high) * duration_s + PAUSE_BUDGET_S, base)]
    return ",".join(f"{length:.3f}s:{n}@{users}" for length, n in phases)


def load_env(drill: Drill, state: RunState, run: RunDir, phases: str | None = None,
             think_time: str | None = None) -> dict[str, str]:
    """``phases``, ``think_time``: instead of the drill's shape and think time (a launch's raised load,
    toolkit.drills.launch_load)."""
    load = drill.setup.load
    phases = phases or shape_phases(load.shape, load.users, state.duration_s)
    env = {
        "OBSLAB_LOAD_SEED": str(state.seed),
        "OBSLAB_LOAD_SHAPE": "phased" if phases else load.shape,
        "OBSLAB_LOAD_RETRY_POLICY": load.retry_policy,
        "OBSLAB_LOAD_RETRY_MAX_ATTEMPTS": str(load.max_attempts),
        "OBSLAB_LOAD_RECORD_DIR": str(run.path / "client"),
        "OBSLAB_DRILL_REMOTE_CONFIG": str(run.path / REMOTE_CONFIG_FILE),
    }
    if phases:
        env["OBSLAB_LOAD_PHASES"] = phases
    if load.mix:
        env["OBSLAB_LOAD_MIX"] = json.dumps(load.mix)
    if load.mix_by_release:
        env["OBSLAB_LOAD_MIX_BY_RELEASE"] = json.dumps(load.mix_by_release)
    if load.cancel_rate is not None:
        env["OBSLAB_LOAD_CANCEL_RATE"] = str(load.cancel_rate)
    if think_time or load.think_time is not None:
        env["OBSLAB_LOAD_THINK_TIME"] = think_time or load.think_time
    auto_cancel = load.client.get("auto_cancel")
    if auto_cancel:
        nets = auto_cancel.get("network_type") or []
        nets = nets if isinstance(nets, list) else [nets]
        env["OBSLAB_DRILL_AUTO_CANCEL"] = f"{auto_cancel['app_version']}:{'|'.join(nets)}:{auto_cancel['after']}"
    if load.viewer_weight is not None:
        env["OBSLAB_LOAD_VIEWER_WEIGHT"] = str(load.viewer_weight)
    return env


def load_command(drill: Drill, state: RunState, users: int | None = None) -> list[str]:
    users = users or drill.setup.load.users
    # Bounded by the drill's wall length plus the pauses it may take; the scheduler stops it at the end.
    return locust_argv(state.url, users, locustfile=locustfile(), spawn_rate=users,
                       run_time_s=state.duration_s + PAUSE_BUDGET_S, stop_timeout_s=2)


def start_load(drill: Drill, state: RunState, run: RunDir, phases: tuple[str, int] | None = None,
               think_time: str | None = None) -> subprocess.Popen:
    """Locust in its own process group, so stopping the drill stops every Locust process. ``phases``:
    (``OBSLAB_LOAD_PHASES``, peak users) to run instead of the drill's shape, bounded by the same time."""
    (run.path / "client").mkdir(exist_ok=True)
    env = {**os.environ, **load_env(drill, state, run, phases[0] if phases else None, think_time)}
    with open(run.path / "load.log", "ab") as log:
        proc = subprocess.Popen(load_command(drill, state, phases[1] if phases else None), env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    (run.path / LOAD_PID_FILE).write_text(str(proc.pid))
    return proc


def stop_load(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def stop_load_group(run: RunDir, timeout_s: float = 10.0) -> bool:
    """Stop the run's Locust process group if any of it is still alive (TERM, then KILL); True if it was."""
    import time

    try:
        pgid = int((run.path / LOAD_PID_FILE).read_text())
    except (OSError, ValueError):
        return False

    def signal_group(sig: int) -> bool:
        try:
            os.killpg(pgid, sig)
            return True
        except ProcessLookupError:
            return False

    if not signal_group(0):
        return False
    signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not signal_group(0):
            return True
        time.sleep(0.1)
    signal_group(signal.SIGKILL)
    return True
