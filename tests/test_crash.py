"""Crash safety: kill -9 of a gunicorn worker and of the transcoder mid-load, and an event
log that cannot be written (a full disk).

After the kills: no publish duplicated, every publish the client saw acknowledged has its
terminal event, the event log reads cleanly (at most a torn last line, reported), the
client record reconciles with the log, and the service is whole again on its own
(gunicorn masters respawn the killed workers). A full disk is loud: /healthz degrades and
obslab_events_lost_total counts what was lost, and both clear when the disk does.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from toolkit.events import load_events
from toolkit.lab.load import LoadOptions, run_load
from toolkit.analysis.reconcile_io import counters_from_metrics, reconcile_run

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

LOAD_S = 30
TERMINAL = ("publish_succeeded", "publish_failed", "upload_cancelled")


def _workers(service, name: str) -> list[psutil.Process]:
    master = next(p for p in service.processes.processes if p.name == name).proc.pid
    return psutil.Process(master).children()


def _wait_for_workers(service, name: str, count: int, exclude: set[int], timeout_s: float = 60) -> list[int]:
    """The master's worker pids once it runs ``count`` workers, none of them in ``exclude``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = [p.pid for p in _workers(service, name) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if len(pids) == count and not set(pids) & exclude:
            return pids
        time.sleep(0.2)
    raise AssertionError(f"{name}: no {count} fresh workers after {timeout_s}s (have {pids})")


def test_kill_9_of_an_api_worker_and_the_transcoder_mid_load(fresh_service, tmp_path):
    svc = fresh_service
    out = tmp_path / "load"
    result: dict = {}

    def load():
        result["load"] = run_load(LoadOptions(host=svc.base_url, users=8, spawn_rate=8, duration_s=LOAD_S,
                                              out_dir=out, cancel_rate=0.05, seed=7))

    runner = threading.Thread(target=load)
    runner.start()
    killed: list[int] = []
    try:
        time.sleep(LOAD_S * 0.3)
        api_victim = _workers(svc, "publish-api")[0]
        os.kill(api_victim.pid, signal.SIGKILL)
        killed.append(api_victim.pid)
        time.sleep(LOAD_S * 0.25)
        transcoder_victim = _workers(svc, "transcoder")[0]  # the process doing the transcodes
        os.kill(transcoder_victim.pid, signal.SIGKILL)
        killed.append(transcoder_victim.pid)
    finally:
        runner.join(timeout=LOAD_S + 180)
    assert "load" in result, "the load run did not finish"
    load_result = result["load"]
    assert load_result.attempts >= 20, load_result.attempts_by_outcome

    # Recovered on its own: both masters run fresh workers and a publish goes through.
    _wait_for_workers(svc, "publish-api", svc.processes.workers, set(killed))
    _wait_for_workers(svc, "transcoder", 1, set(killed))
    assert svc.publish()["complete_status"] == 200

    # The log reads cleanly: no invalid line; a torn last line would be reported, not lost.
    events = load_events([svc.events_dir], strict=True)
    assert events.skipped == 0 and len(events.torn) <= 1, events.summary()
    events.con.close()

    all_events = svc.events()
    terminals = Counter(e["request_id"] for e in all_events if e["event"] in TERMINAL)
    assert max(terminals.values()) == 1, [r for r, n in terminals.items() if n > 1]
    published = Counter(e["upload_id"] for e in all_events if e["event"] == "publish_succeeded")
    assert max(published.values()) == 1, [u for u, n in published.items() if n > 1]
    videos = [e.get("video_id") for e in all_events if e["event"] == "publish_succeeded"]
    assert len(videos) == len(set(videos))

    # Every publish the client saw acknowledged has its terminal event.
    from loadtests.record import read_attempts

    attempts = read_attempts(load_result.client_record)
    succeeded = {e["request_id"] for e in all_events if e["event"] == "publish_succeeded"}
    acknowledged = [a for a in attempts if a.outcome == "published"]
    assert acknowledged and all(a.request_id in succeeded for a in acknowledged)
    failed = {e["request_id"] for e in all_events if e["event"] == "publish_failed"}
    assert all(a.request_id in failed for a in attempts if a.outcome == "failed")

    # The same run, reconciled by the toolkit: client record, event log and the service's counters
    # (prometheus multiprocess files survive a killed worker).
    reconciliation = reconcile_run(load_result.client_record, svc.events_dir,
                                   counters=lambda: counters_from_metrics([svc.url("/metrics")]), settle_s=5)
    assert reconciliation.ok, "\n".join(str(m) for m in reconciliation.mismatches[:20])


def test_a_full_disk_is_loud_and_clears(fresh_service):
    svc = fresh_service
    events_file = Path(svc.events_dir) / "events.jsonl"
    assert svc.publish()["complete_status"] == 200
    lost_before = svc.metric("obslab_events_lost_total", reason="write_error")
    # /dev/full fails every write with ENOSPC: a full disk for the event log only. The writers
    # notice the new file at their next inode check (once a second) and reopen it.
    real = events_file.with_name("events.jsonl.real")
    os.replace(events_file, real)
    os.symlink("/dev/full", events_file)
    try:
        time.sleep(1.2)
        degraded = []
        for _ in range(20):  # every worker must have tried (and failed) to write
            svc.publish()
            r = svc.http.get(svc.url("/healthz"), timeout=30)
            if r.status_code == 503:
                degraded.append(r.json())
        assert degraded, "/healthz never reported the failing event log"
        assert degraded[0]["status"] == "degraded" and "No space left on device" in degraded[0]["problems"][0]
        assert svc.metric("obslab_events_lost_total", reason="write_error") > lost_before
        log = (Path(svc.data_dir) / "logs" / "publish-api.log").read_text(errors="replace")
        assert "event write failed" in log
    finally:
        events_file.unlink()
        os.replace(real, events_file)
    time.sleep(1.2)
    # The disk is back: the next writes succeed and every worker reports healthy again.
    for _ in range(10):
        assert svc.publish()["complete_status"] == 200
    assert all(svc.http.get(svc.url("/healthz"), timeout=30).status_code == 200 for _ in range(10))
