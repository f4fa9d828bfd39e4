"""Transcode then publish one claimed upload — shared by the sync path and the async queue consumer.

The caller has already moved the upload to ``transcoding`` (its claim). Terminal
transitions are conditional, so a cancellation that wins the race leaves no second
terminal event behind.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from dataclasses import dataclass

from demo_service.capacity import primary_query
from demo_service.controls import Controls, sleep_for
from demo_service.store import Store, Upload
from demo_service.telemetry import Telemetry
from demo_service.transcode_client import TranscodeClient

__all__ = ["Outcome", "transcode_and_publish", "fail_attempt", "record_outcome"]


@dataclass(frozen=True)
class Outcome:
    status: str  # published | failed | cancelled (someone else ended it)
    video_id: str | None = None
    error_class: str | None = None


def record_outcome(telemetry: Telemetry, upload: Upload, outcome: str) -> None:
    telemetry.metrics.publish_outcomes.labels(
        outcome=outcome, region=upload.region, app_version=upload.app_version, network_type=upload.network_type,
        media_size_bucket=upload.media_size_bucket, release=upload.flags.get("release", "stable"),
        transcode_mode=upload.flags.get("transcode_mode", "sync")).inc()
    telemetry.metrics.slo_outcomes.labels(outcome=outcome).inc()


def fail_attempt(store: Store, telemetry: Telemetry, upload: Upload, error_class: str,
                 from_statuses: tuple[str, ...] = ("transcoding",)) -> Outcome:
    now = time.time()
    if not store.transition(upload.upload_id, from_statuses, "failed", error_class=error_class, finished_at=now):
        current = store.get_upload(upload.upload_id)
        return Outcome(current.status, current.video_id, current.error_class)
    processing_ms = (now - (upload.completed_at or now)) * 1000
    telemetry.emit("publish_failed", upload, duration_ms=round(max(processing_ms, 0.0), 3), error_class=error_class)
    record_outcome(telemetry, upload, "failed")
    return Outcome("failed", error_class=error_class)


def transcode_and_publish(store: Store, telemetry: Telemetry, controls: Controls, client: TranscodeClient,
                          upload: Upload, queue_wait_ms: float | None = None) -> Outcome:
    mode = upload.flags.get("transcode_mode", "sync")
    _, size = store.chunk_summary(upload.upload_id)
    with telemetry.span("transcode", upload.request_id, upload_id=upload.upload_id,
                        media_size_bucket=upload.media_size_bucket, transcode_mode=mode):
        extra = {"queue_wait_ms": round(queue_wait_ms, 3)} if queue_wait_ms is not None else {}
        telemetry.emit("transcode_started", upload, transcode_mode=mode, **extra)
        result = client.transcode(upload, size)
        telemetry.metrics.transcode_duration.labels(media_size_bucket=upload.media_size_bucket).observe(
            result.duration_s)
        if not result.ok:
            telemetry.emit("transcode_failed", upload, duration_ms=round(result.duration_s * 1000, 3),
                           error_class=result.error_class)
            telemetry.metrics.transcode_failures.labels(error_class=result.error_class).inc()
        else:
            telemetry.emit("transcode_completed", upload, duration_ms=round(result.duration_s * 1000, 3))
    if not result.ok:
        return fail_attempt(store, telemetry, upload, result.error_class)
    with telemetry.span("publish", upload.request_id, upload_id=upload.upload_id):
        faults = controls.match(target="db", cohort=upload.cohort, key=upload.request_id)
        sleep_for(faults)
        if any(f.kind == "errors" for f in faults):
            return fail_attempt(store, telemetry, upload, "storage")
        if not primary_query(faults):  # no connection slot came free in time (a capacity fault)
            telemetry.metrics.db_slot_timeouts.labels(operation="publish").inc()
            return fail_attempt(store, telemetry, upload, "storage")
        video_id = "vid_" + secrets.token_hex(12)
        now = time.time()
        try:
            published = store.publish(upload, video_id, size, now)
        except sqlite3.Error:
            return fail_attempt(store, telemetry, upload, "storage")
        if not published:
            current = store.get_upload(upload.upload_id)
            return Outcome(current.status, current.video_id, current.error_class)
        processing_s = max(now - (upload.completed_at or now), 0.0)
        telemetry.emit("publish_succeeded", upload, duration_ms=round(processing_s * 1000, 3), video_id=video_id)
        record_outcome(telemetry, upload, "succeeded")
        telemetry.metrics.publish_processing.labels(release=upload.flags.get("release", "stable"),
                                                    transcode_mode=mode).observe(processing_s)
    return Outcome("published", video_id=video_id)
