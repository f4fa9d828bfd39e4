"""A sync publish whose worker died mid-request still ends: ``publish_failed`` (``internal``).

The sync path claims an upload (``uploading`` → ``transcoding``) and records, in the same
transaction, which worker holds the claim (``transcode_jobs`` row in state ``sync``, claimed_by
``<pid>-<thread>``). A worker killed mid-request (SIGKILL, the OOM killer, gunicorn's timeout)
leaves that claim behind and the upload in ``transcoding``, where complete would answer 202
forever. The reaper fails such an attempt once its holder is dead — or, whatever the holder,
once the claim is older than ``SYNC_LEASE_S`` (a pid reused by chance) — with the conditional
transition every terminal uses, so a publish that did land is never failed afterwards.

It runs in a thread of every API worker (every ``SCAN_INTERVAL_S``) and on the spot when complete
finds the upload still transcoding, so the client's retry gets the terminal answer.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from flask import Flask
from opentelemetry import propagate

from demo_service.publishing import fail_attempt

__all__ = ["owner_id", "owner_alive", "reap_stale_claims", "init_app", "SYNC_LEASE_S", "LOST_WORKER_ERROR_CLASS"]

# Far beyond any sync request: gunicorn kills a worker stuck for --timeout (60 s) anyway.
SYNC_LEASE_S = 600.0
SCAN_INTERVAL_S = 1.0
LOST_WORKER_ERROR_CLASS = "internal"
log = logging.getLogger(__name__)


def owner_id() -> str:
    return f"{os.getpid()}-{threading.get_ident()}"


def owner_alive(owner: str | None) -> bool:
    try:
        pid = int((owner or "").split("-", 1)[0])
    except ValueError:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a dead worker its master has not reaped yet is a zombie: dead all the same
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def reap_stale_claims(app: Flask, now: float | None = None, upload_id: str | None = None) -> int:
    """Fail every attempt whose sync claim is stale (or just ``upload_id``'s); returns how many."""
    ext = app.extensions
    store, telemetry = ext["obslab.store"], ext["obslab.telemetry"]
    now = time.time() if now is None else now
    failed = 0
    for claim in store.sync_claims(upload_id):
        if owner_alive(claim["claimed_by"]) and now - claim["claimed_at"] < SYNC_LEASE_S:
            continue
        upload = store.get_upload(claim["upload_id"])
        if upload is not None and upload.status == "transcoding":
            parent = propagate.extract({"traceparent": upload.traceparent}) if upload.traceparent else None
            with app.app_context(), telemetry.tracer.start_as_current_span(
                    "publish.reap_stale_claim", context=parent, attributes={"request_id": upload.request_id}):
                outcome = fail_attempt(store, telemetry, upload, LOST_WORKER_ERROR_CLASS)
            if outcome.status == "failed":
                failed += 1
                log.warning("upload %s: the worker publishing it (%s) is gone; the attempt failed (%s)",
                            upload.upload_id, claim["claimed_by"], LOST_WORKER_ERROR_CLASS)
        store.finish_transcode(claim["upload_id"])
    return failed


class _Reaper:
    def __init__(self, app: Flask):
        self.app = app
        self._started = False
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        if self._started:
            return
        with self._lock:
            if not self._started:
                threading.Thread(target=self._run, name="sync-claim-reaper", daemon=True).start()
                self._started = True

    def _run(self) -> None:
        while True:
            try:
                reap_stale_claims(self.app)
            except Exception:  # the DB may be busy; the loop must survive it
                log.exception("reaping stale sync claims failed")
            time.sleep(SCAN_INTERVAL_S)


def init_app(app: Flask) -> None:
    reaper = _Reaper(app)
    app.extensions["obslab.claims"] = reaper

    # After fork, once a request arrives (as the queue consumer): a test app that never serves spawns nothing.
    @app.before_request
    def _start_reaper() -> None:
        reaper.ensure_started()
