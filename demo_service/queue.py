"""The async transcode queue consumer: threads in each API worker claim jobs from the shared table.

A job row is claimed with a conditional UPDATE, so each job runs once across workers;
a job left ``running`` by a dead worker is taken again after ``STALE_AFTER_S`` (the
terminal transition stays conditional, so that can never publish twice).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from flask import Flask
from opentelemetry import propagate

from demo_service.publishing import transcode_and_publish

__all__ = ["QueueConsumer", "init_app", "STALE_AFTER_S"]

STALE_AFTER_S = 30.0
POLL_INTERVAL_S = 0.05
log = logging.getLogger(__name__)


class QueueConsumer:
    def __init__(self, app: Flask, threads: int):
        self.app = app
        self.threads = threads
        self.stop_event = threading.Event()
        self._started = False
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        if self._started or self.threads <= 0:
            return
        with self._lock:
            if self._started:
                return
            for i in range(self.threads):
                threading.Thread(target=self._run, name=f"transcode-queue-{i}", daemon=True).start()
            self._started = True

    def _run(self) -> None:
        worker = f"{os.getpid()}-{threading.get_ident()}"
        ext = self.app.extensions
        store, telemetry, controls, client = (ext["obslab.store"], ext["obslab.telemetry"], ext["obslab.controls"],
                                              ext["obslab.transcoder"])
        while not self.stop_event.is_set():
            try:
                job = store.claim_transcode(worker, time.time(), stale_after_s=STALE_AFTER_S)
            except Exception:  # the DB may be busy; the loop must survive it
                log.exception("claiming a transcode job failed")
                job = None
            if job is None:
                self.stop_event.wait(POLL_INTERVAL_S)
                continue
            try:
                self._process(job, store, telemetry, controls, client)
            except Exception:
                log.exception("transcode job %s failed", job["upload_id"])
            finally:
                store.finish_transcode(job["upload_id"])

    def _process(self, job, store, telemetry, controls, client) -> None:
        upload = store.get_upload(job["upload_id"])
        if upload is None or upload.status != "transcoding":
            return  # cancelled while queued
        parent = propagate.extract({"traceparent": job["traceparent"]}) if job["traceparent"] else None
        with self.app.app_context():
            with telemetry.tracer.start_as_current_span("transcode.job", context=parent,
                                                        attributes={"request_id": upload.request_id}):
                wait_ms = max((job["claimed_at"] - job["enqueued_at"]) * 1000, 0.0)
                transcode_and_publish(store, telemetry, controls, client, upload, queue_wait_ms=wait_ms)


def init_app(app: Flask) -> None:
    consumer = QueueConsumer(app, app.config["ASYNC_WORKERS"])
    app.extensions["obslab.queue"] = consumer

    # Start after fork (gunicorn loads the app in each worker) and only once a request arrives,
    # so an app created in a test that never serves does not spawn threads.
    @app.before_request
    def _start_consumer() -> None:
        consumer.ensure_started()
