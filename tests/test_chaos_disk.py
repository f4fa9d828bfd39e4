"""Chaos: the publish API on a full disk, for real.

Each test mounts a small tmpfs of its own and puts the service's data directory on it (state.db,
the event log, prometheus_client's memory-mapped metric files), then fills the filesystem with a
ballast file and drives the real service (gunicorn subprocess). On a full disk the service must
degrade, not crash: no worker dies (a SIGBUS from a metric file used to kill every new worker),
/healthz answers 503 naming the cause, new uploads get 503 ``storage_full`` with Retry-After,
event writes are all-or-nothing (no torn line, every lost event counted), and once the ballast
is gone everything is healthy again and the log validates and reconciles.

Mounting needs root: without it these tests are skipped, saying so.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from conftest import TEST_ENV, ServiceHandle
from demo_service.telemetry.events import EventFile
from toolkit.lab.load import LoadOptions, run_load
from toolkit.lab.processes import ServiceProcesses

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

DISK_BYTES = 24 * 1024 * 1024


class SmallDisk:
    """A tmpfs of ``size`` bytes mounted at ``path``, filled and freed with a ballast file."""

    def __init__(self, path: Path):
        self.path = path
        self.ballast = path / "ballast"

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self) -> int:
        """Write the ballast until the filesystem refuses another byte; returns its size."""
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for block in (1 << 20, 1 << 12, 1):
                while True:
                    try:
                        os.write(fd, b"\0" * block)
                    except OSError as e:
                        assert e.errno == errno.ENOSPC, e
                        break
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def free(self) -> None:
        self.ballast.unlink()

    @contextlib.contextmanager
    def kept_full(self, every_s: float = 0.002):
        """Refill every few milliseconds while the block runs: space a dying process frees (gunicorn's
        child_exit removes a dead worker's live-gauge files) is taken back long before a replacement
        worker has imported enough to allocate anything."""
        stop = threading.Event()

        def refill() -> None:
            while not stop.wait(every_s):
                self.fill()

        filler = threading.Thread(target=refill, name="ballast-refill", daemon=True)
        filler.start()
        try:
            yield
        finally:
            stop.set()
            filler.join()


@pytest.fixture
def small_disk(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("full-disk chaos tests mount a small tmpfs (mount -t tmpfs), which needs root")
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0755", "tmpfs",
                              str(mountpoint)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN?): {mounted.stderr.strip()}")
    try:
        yield SmallDisk(mountpoint)
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def _api_workers(processes: ServiceProcesses) -> set[int]:
    master = next(p for p in processes.processes if p.name == "publish-api").proc.pid
    return {c.pid for c in psutil.Process(master).children()
            if c.is_running() and c.status() != psutil.STATUS_ZOMBIE}


def _wait_for_workers(processes: ServiceProcesses, count: int, exclude: set[int], timeout_s: float = 60) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = _api_workers(processes)
        if len(pids) == count and not pids & exclude:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"no {count} fresh API workers after {timeout_s}s (have {pids})")


def _call(svc: ServiceHandle, method: str, path: str, **kwargs) -> tuple[int, dict, dict]:
    """(status, JSON body, headers); status 0 when the service did not answer in 5 s.

    A new connection each time, so that every worker gets calls (a kept-alive one stays on one worker).
    """
    try:
        r = requests.request(method, svc.url(path), timeout=5, headers={"Connection": "close",
                                                                       **kwargs.pop("headers", {})}, **kwargs)
    except requests.RequestException as e:
        return 0, {"transport_error": type(e).__name__}, {}
    try:
        body = r.json()
    except ValueError:
        body = {"text": r.text[:200]}
    return r.status_code, body, dict(r.headers)


def _lines(events_dir: Path) -> list[bytes]:
    return b"".join(p.read_bytes() for p in sorted(events_dir.glob("events.jsonl*"))
                    if not p.name.endswith(".lock")).split(b"\n")


def _obslab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "obslab"), *args], capture_output=True, text=True,
                          timeout=300)


def test_a_full_disk_degrades_the_service_and_it_recovers(small_disk, tmp_path):
    data_dir = small_disk.path / "data"
    data_dir.mkdir()
    logs = tmp_path / "logs"  # gunicorn's own log off the full disk, so it can tell of dead workers
    logs.mkdir()
    (data_dir / "logs").symlink_to(logs)
    processes = ServiceProcesses(data_dir, workers=2, extra_env=TEST_ENV)
    with processes:
        svc = ServiceHandle(processes)
        for _ in range(3):
            assert svc.publish()["complete_status"] == 200
        in_flight = svc.create_upload(chunk_count=64)

        ballast = small_disk.fill()
        assert small_disk.free_bytes() == 0
        # A worker recycled while the disk is full (max-requests, a timeout, an OOM kill): the new
        # one must come up and serve, not die on its first metric write.
        old = _api_workers(processes)
        with small_disk.kept_full():
            os.kill(sorted(old)[0], signal.SIGTERM)
            workers = _wait_for_workers(processes, 2, {sorted(old)[0]})
            time.sleep(1)  # the new worker past its imports: it has tried to allocate its metric files
        ballast = small_disk.fill()

        health, creates, chunks, cancels, scrapes = [], [], [], [], []
        started = time.monotonic()
        for i in range(40):
            if time.monotonic() - started > 30:  # unanswered calls take 5 s each: bound the outage
                break
            health.append(_call(svc, "GET", "/healthz"))
            body = {"media_size_bytes": 1000, "chunk_count": 1, "user_id": f"full-{i}", "app_version": "5.4.0",
                    "region": "us-east", "network_type": "wifi"}
            creates.append(_call(svc, "POST", "/v1/uploads", json=body))
            # A retried chunk: its chunk_retry event is written before state.db is touched.
            chunks.append(_call(svc, "PUT", f"/v1/uploads/{in_flight['upload_id']}/chunks/{i % 64}",
                                data=b"y" * 512, headers={"Content-Type": "application/octet-stream",
                                                          "X-Chunk-Attempt": "2"}))
            scrapes.append(_call(svc, "GET", "/metrics")[:2])
        outage_s = time.monotonic() - started
        cancels.append(_call(svc, "POST", f"/v1/uploads/{in_flight['upload_id']}/cancel", json={}))
        survivors = _api_workers(processes)
        log = (logs / "publish-api.log").read_text(errors="replace")

        print(f"\nfull disk: ballast {ballast} B, {len(health)} rounds in {outage_s:.1f}s; healthz "
              f"{sorted(set(h[0] for h in health))}, create {sorted(set(c[0] for c in creates))}, "
              f"chunk {sorted(set(c[0] for c in chunks))}, cancel {cancels[0][0]} {cancels[0][1]}, "
              f"metrics 200 x{sum(code == 200 for code, _ in scrapes)}, SIGBUS in log x{log.count('SIGBUS')}, workers {workers} -> {survivors}")
        print("healthz bodies:", {h["X-Worker-Pid"]: b for _, b, h in health if "X-Worker-Pid" in h})

        assert "SIGBUS" not in log, [line for line in log.splitlines() if "SIGBUS" in line][:5]
        assert survivors == workers, f"API workers died on the full disk: {workers} -> {survivors}"
        assert all(status == 503 for status, _, _ in health), [h[:2] for h in health if h[0] != 503][:3]
        assert all(b["status"] == "degraded" and b["cause"] == "disk_full" for _, b, _ in health), health[0][1]
        assert all(h.get("Retry-After") for _, _, h in health)
        # The recycled worker could not allocate its metric files: it says so, holding the values in memory.
        assert any(p.startswith("metrics:") for _, b, _ in health for p in b["problems"]), health[-1][1]
        assert all(s == 503 and b["error"]["code"] == "storage_full" and int(h["Retry-After"]) > 0
                   for s, b, h in creates), [c[:2] for c in creates if c[0] != 503][:3]
        assert all(s in (200, 503) for s, _, _ in chunks), [c[:2] for c in chunks if c[0] not in (200, 503)][:3]
        # The cancel must write state.db, which cannot grow: SQLITE_FULL is a 503 too, not a 500.
        assert cancels[0][0] == 503 and cancels[0][1]["error"]["code"] == "storage_full", cancels[0]
        # A scrape while another worker creates (and, the disk being full, removes) its file still answers.
        assert all(code == 200 for code, _ in scrapes), [s for s in scrapes if s[0] != 200][:3]

        small_disk.free()
        # Space is back: every worker is healthy again on its own (no traffic needed) and serves.
        deadline = time.monotonic() + 30
        recovered_after = None
        while time.monotonic() < deadline:
            if all(_call(svc, "GET", "/healthz")[0] == 200 for _ in range(10)):
                recovered_after = time.monotonic() - deadline + 30
                break
            time.sleep(0.2)
        assert recovered_after is not None, _call(svc, "GET", "/healthz")
        for _ in range(3):
            assert svc.publish()["complete_status"] == 200
        print(f"recovered: healthz 200 from every worker {recovered_after:.1f}s after the ballast went")

        # Every event of the outage is either in the log or counted lost: 2 per retried chunk
        # (chunk_retry, then chunk_failed or chunk_uploaded), and none half-written.
        lines = _lines(svc.events_dir)
        torn = [line for line in lines if line.strip() and not line.lstrip().startswith(b"{")]
        events = [json.loads(line) for line in lines if line.strip()]  # raises on a torn or glued line
        assert not torn, torn[:2]
        outage = [e for e in events if e.get("upload_id") == in_flight["upload_id"]
                  and e["event"] in ("chunk_retry", "chunk_failed", "chunk_uploaded")]
        lost = svc.metric("obslab_events_lost_total", reason="write_error")
        print(f"events: {len(outage)} of the outage's {2 * len(chunks)} written, {lost:g} counted lost, "
              f"{len(events)} in the log")
        assert lost > 0
        assert len(outage) + lost == 2 * len(chunks), (len(outage), lost, len(chunks))
        assert svc.metric("obslab_events_total") == len(events)

        validate = _obslab("events", "validate", str(svc.events_dir))
        assert validate.returncode == 0, validate.stdout + validate.stderr

        # A client run after the outage reconciles against the whole log (which spans the outage).
        load = run_load(LoadOptions(host=svc.base_url, users=2, spawn_rate=2, duration_s=6,
                                    out_dir=tmp_path / "load", seed=3))
        assert load.attempts >= 2, load.attempts_by_outcome
        reconcile = _obslab("reconcile", "--client", str(load.client_record), "--events", str(svc.events_dir))
        assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr
        print(f"after: {load.attempts} attempts {dict(load.attempts_by_outcome)}; "
              f"validate: {validate.stdout.strip().splitlines()[-1]}; reconcile: {reconcile.stdout.strip().splitlines()[-1]}")


def test_a_short_write_is_blanked_and_the_next_line_starts_clean(small_disk):
    """On a full tmpfs the line that crosses into an unallocatable page is written in part."""
    log = EventFile(small_disk.path / "events" / "events.jsonl", max_bytes=1 << 30, backup_count=2)
    line = (json.dumps({"event": "e", "pad": "x" * 300}) + "\n").encode()
    for _ in range(3):
        log.write_line(line)
    small_disk.fill()
    short = None
    for _ in range(64):  # the log's last page still has room for a few lines, then one is cut short
        try:
            log.write_line(line)
        except OSError as e:
            short = e
            break
    assert short is not None, "the disk never filled up"
    assert short.errno == errno.ENOSPC and "short write" in str(short) and "blanked" in str(short), short
    whole, rest = divmod(log.path.stat().st_size, len(line))
    assert 0 < rest < len(line), "the write was not short"
    blank = b" " * (rest - 1) + b"\n"
    assert log.path.read_bytes() == line * whole + blank, f"the fragment was left: {log.path.read_bytes()[-rest:]!r}"
    size = log.path.stat().st_size
    with pytest.raises(OSError):
        log.write_line(line)  # still full: nothing at all is written, or a fragment blanked again
    grown = log.path.read_bytes()[size:]
    assert grown.strip() == b"" and (not grown or grown.endswith(b"\n")), grown
    small_disk.free()
    log.write_line(line)
    text = log.path.read_bytes()
    assert text.endswith(b"\n" + line) and text.startswith(line * whole + blank)
    assert [ln for ln in text.splitlines() if ln.strip()] == [line.rstrip(b"\n")] * (whole + 1)
    log.close()
