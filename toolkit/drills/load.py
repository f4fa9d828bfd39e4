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

from toolkit.drills.clock import PAUSE_BUDGET_S
from toolkit.drills.schema import Drill
from toolkit.drills.state import RunDir, RunState
from toolkit.lab.load import locust_argv

__all__ = ["load_env", "load_command", "start_load", "stop_load", "stop_load_group", "locustfile", "LOAD_PID_FILE"]

# The Locust process group's id, written when the load starts: whoever stops the drill (the scheduler,
# `obslab drill stop`, the lab's shutdown) can stop it even if the scheduler died first.
LOAD_PID_FILE = "load.pid"


def locustfile() -> Path:
    """The drill's locustfile: the lab's users plus the client behaviours drills emulate."""
    return Path(__file__).resolve().parent / "locustfile.py"


def load_env(drill: Drill, state: RunState, run: RunDir) -> dict[str, str]:
    load = drill.setup.load
    env = {
        "OBSLAB_LOAD_SEED": str(state.seed),
        "OBSLAB_LOAD_SHAPE": load.shape,
        "OBSLAB_LOAD_RETRY_POLICY": load.retry_policy,
        "OBSLAB_LOAD_RETRY_MAX_ATTEMPTS": str(load.max_attempts),
        "OBSLAB_LOAD_RECORD_DIR": str(run.path / "client"),
    }
    if load.mix:
        env["OBSLAB_LOAD_MIX"] = json.dumps(load.mix)
    if load.mix_by_release:
        env["OBSLAB_LOAD_MIX_BY_RELEASE"] = json.dumps(load.mix_by_release)
    if load.cancel_rate is not None:
        env["OBSLAB_LOAD_CANCEL_RATE"] = str(load.cancel_rate)
    if load.think_time is not None:
        env["OBSLAB_LOAD_THINK_TIME"] = load.think_time
    auto_cancel = load.client.get("auto_cancel")
    if auto_cancel:
        nets = auto_cancel.get("network_type") or []
        nets = nets if isinstance(nets, list) else [nets]
        env["OBSLAB_DRILL_AUTO_CANCEL"] = f"{auto_cancel['app_version']}:{'|'.join(nets)}:{auto_cancel['after']}"
    if load.viewer_weight is not None:
        env["OBSLAB_LOAD_VIEWER_WEIGHT"] = str(load.viewer_weight)
    return env


def load_command(drill: Drill, state: RunState) -> list[str]:
    users = drill.setup.load.users
    # Bounded by the drill's wall length plus the pauses it may take; the scheduler stops it at the end.
    return locust_argv(state.url, users, locustfile=locustfile(), spawn_rate=users,
                       run_time_s=state.duration_s + PAUSE_BUDGET_S, stop_timeout_s=2)


def start_load(drill: Drill, state: RunState, run: RunDir) -> subprocess.Popen:
    """Locust in its own process group, so stopping the drill stops every Locust process."""
    (run.path / "client").mkdir(exist_ok=True)
    env = {**os.environ, **load_env(drill, state, run)}
    with open(run.path / "load.log", "ab") as log:
        proc = subprocess.Popen(load_command(drill, state), env=env, stdout=log, stderr=subprocess.STDOUT,
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
