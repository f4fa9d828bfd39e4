"""Stopping the lab during a drill stops everything the drill started (real processes).

A real `obslab lab` (no Prometheus, to stay short), a real drill started with `obslab drill start`
(its detached scheduler and its Locust, each in its own session), then Ctrl-C as a terminal sends it:
SIGINT to the lab's whole process group, with the scheduler unable to answer (stopped). No process
of the drill may be left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from drill_runs import start_drill
from toolkit.bench.lab import free_ports, lab_command

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "slo.yaml"

pytestmark = pytest.mark.slow


def _wait(predicate, timeout_s: float, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the lab exited while waiting for {what}:\n{log.read_text()[-3000:]}")
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError, requests.RequestException):
            pass
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _group_members(pgid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return out


def test_ctrl_c_on_the_lab_during_a_drill_leaves_no_drill_process(tmp_path):
    ports = dict(zip(("api", "transcoder", "web", "prometheus", "locust"), free_ports(5)))
    data = tmp_path / "data"
    log = tmp_path / "lab.log"
    with open(log, "wb") as out:
        lab = subprocess.Popen(lab_command(data, ports, users=1, prometheus=False, spec=SPEC), cwd=tmp_path,
                               stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    leftovers: list[int] = []
    try:
        _wait(lambda: (data / "lab.json").is_file() and
              requests.get(f"http://127.0.0.1:{ports['api']}/healthz", timeout=2).status_code < 500,
              40, "the lab", lab, log)
        env = {k: v for k, v in os.environ.items() if k != "OBSLAB_ADMIN_TOKEN"}
        started = subprocess.run([sys.executable, "-c", "from toolkit.cli import main; main()", "drill", "start",
                                  "retry-storm", "--speed", "2", "--seed", "1", "--data-dir", str(data)],
                                 capture_output=True, text=True, env=env, timeout=60)
        assert started.returncode == 0, started.stderr
        run_dir = next((data / "drills").glob("*-retry-storm"))
        scheduler = json.loads((run_dir / "run.json").read_text())["scheduler_pid"]
        locust = _wait(lambda: next((c.pid for c in psutil.Process(scheduler).children()
                                     if "locust" in " ".join(c.cmdline())), None), 20, "the drill's Locust", lab, log)
        leftovers = [scheduler, locust]
        _wait(lambda: _alive(locust) and _alive(scheduler), 10, "the drill's processes", lab, log)
        assert os.getpgid(locust) != os.getpgid(lab.pid) != os.getpgid(scheduler)  # their own groups
        # The worst case: a scheduler that does not answer SIGTERM (hung in a call to a dying service, or
        # stopped) and is killed by the lab after its grace period; its Locust must not survive it.
        os.kill(scheduler, signal.SIGSTOP)
        os.killpg(lab.pid, signal.SIGINT)  # Ctrl-C in the lab's terminal
        lab.wait(45)
        left = [p for pgid in (scheduler, locust) for p in _group_members(pgid)]
        assert left == [], [p.cmdline() for p in left]
    finally:
        if lab.poll() is None:
            os.killpg(lab.pid, signal.SIGKILL)
        for pgid in leftovers:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _flags(service) -> dict:
    r = service.admin("GET", "/admin/flags")
    assert r.status_code == 200, r.text
    return r.json()


def test_a_stop_during_the_schedulers_start_up_still_removes_the_drills_flag(make_service):
    """The runner sets the drill's flags, then spawns its scheduler; a stop that lands while the scheduler is
    still importing (before its SIGTERM handler exists) used to kill it outright, leaving the flag set."""
    from toolkit.drills import runner

    service = make_service(workers=1)
    before = _flags(service)
    lab, run = start_drill(service, "async-migration", seed=3)  # sets transcode_mode as it starts
    assert _flags(service) != before
    runner.stop(lab.drills_dir)  # at once: the scheduler has not even imported its modules yet
    assert _flags(service) == before, _flags(service)
    kinds = [e["kind"] for e in run.timeline()]
    assert "drill_stopped" in kinds and "load_started" not in kinds, kinds


def test_the_drills_locust_can_be_stopped_with_sigterm(make_service):
    """Locust inherits the scheduler's signal mask: with SIGTERM blocked there, every stop of the drill's load
    waited 10 s for a SIGKILL (and Locust never wrote its final records)."""
    from toolkit.drills import runner
    from toolkit.drills.load import LOAD_PID_FILE

    service = make_service(workers=1)
    lab, run = start_drill(service, "regional-storage-outage", seed=3)
    try:
        deadline = time.monotonic() + 60
        while not (run.path / LOAD_PID_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        locust = psutil.Process(int((run.path / LOAD_PID_FILE).read_text()))
        for proc in [locust] + locust.children(recursive=True):
            blocked = next(line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                           if line.startswith("SigBlk:"))
            assert not int(blocked.split()[1], 16) & (1 << (signal.SIGTERM - 1)), (proc.cmdline(), blocked)
    finally:
        runner.stop(lab.drills_dir)
    assert "load_stopped" in [e["kind"] for e in run.timeline()]


def test_a_stop_after_the_scheduler_was_killed_still_removes_the_drills_flag(make_service):
    """A scheduler killed outright (OOM killer, SIGKILL after the stopper's patience) never runs its cleanup;
    `drill stop` then removes the drill's flags itself, found from the data dir alone (no token passed)."""
    from toolkit.drills import runner

    service = make_service(workers=1)
    before = _flags(service)
    lab, run = start_drill(service, "async-migration", seed=3)
    pid = run.read_state().scheduler_pid
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _flags(service) != before  # the kill left the flag set
    runner.stop(lab.drills_dir)
    assert _flags(service) == before, _flags(service)
    assert "service_restored" in [e["kind"] for e in run.timeline()]


# -- the scheduler's own steps on the service: the fault's end, a flag set mid-drill -------------------------

def test_the_main_fault_is_removed_and_recorded_once_by_whichever_step_comes_first(make_service, tmp_path):
    """The scheduler removes the fault at its end and the cleanup removes it again (idempotent): one step
    (``restore.remove_fault``) does both and records the removal once, and only when the service removed it."""
    from toolkit.drills.lab import ControlClient, Lab, fault_body, fault_name
    from toolkit.drills.restore import remove_fault, restore_service
    from toolkit.drills.schema import find_drill
    from toolkit.drills.state import RunDir

    service = make_service(workers=1)
    lab = Lab(service.data_dir, service.base_url, service.admin_token)
    client = ControlClient(lab)
    drill = find_drill("regional-storage-outage")
    run = RunDir(tmp_path / "drills" / "20260101T000000-regional-storage-outage")
    run.path.mkdir(parents=True)
    client.put_fault(fault_name(run.path.name), fault_body(drill.fault))
    truth = {"fault_applied_at": time.time()}
    run.write_truth(truth)
    assert len(service.admin("GET", "/admin/faults").json()["faults"]) == 1
    # Unreachable service: nothing recorded (the scheduler tries again next tick).
    gone = ControlClient(Lab(service.data_dir, f"http://127.0.0.1:{free_ports(1)[0]}", service.admin_token))
    assert not remove_fault(gone, run, truth) and "fault_removed_at" not in run.read_truth()
    assert remove_fault(client, run, truth)  # the scheduler, at the fault's end
    assert service.admin("GET", "/admin/faults").json()["faults"] == []
    removed_at = run.read_truth()["fault_removed_at"]
    assert truth["fault_removed_at"] == removed_at
    restore_service(client, drill, run)  # the cleanup: the fault already gone, its removal already recorded
    assert run.read_truth()["fault_removed_at"] == removed_at
    kinds = [e["kind"] for e in run.timeline()]
    assert kinds == ["fault_removed", "service_restored"], kinds


def test_a_mid_drill_flag_is_set_once_when_due_and_no_tick_reads_the_timeline(make_service, tmp_path):
    from drill_runs import CountingRun
    from tests.test_drill_cli import _rollout
    from toolkit.drills.lab import ControlClient, Lab
    from toolkit.drills.scheduler import _set_due_flags
    from toolkit.drills.schema import find_drill
    from toolkit.drills.state import RunDir, RunState

    service = make_service(workers=1)
    client = ControlClient(Lab(service.data_dir, service.base_url, service.admin_token))
    drill = find_drill("release-without-canary")
    run = CountingRun(tmp_path / "run")
    run.path.mkdir()
    state = RunState(run_id="run", drill_id=drill.id, seed=1, speed=10.0, url=service.base_url,
                     data_dir=str(service.data_dir), started_at=time.time(), duration_s=drill.setup.duration_s / 10)
    due = drill.setup.flag_at["release"] / state.speed
    done: set[str] = set()
    _set_due_flags(client, drill, run, state, due - 0.1, done)
    assert _rollout(service, "release") == {} and not done
    for active_s in (due, due + 1, due + 2):
        _set_due_flags(client, drill, run, state, active_s, done)
    assert _rollout(service, "release") == {"canary": 100.0} and done == {"release"}
    assert [e["kind"] for e in RunDir(run.path).timeline()] == ["flag_set"]
    assert not run.reads, run.reads
