"""Put chunk N of an upload: real bytes, bounded size; a client retry carries its attempt number."""

from __future__ import annotations

import sqlite3
import time
import zlib

from flask import Blueprint, jsonify, request

from demo_service.api import apply_api_faults, load_upload
from demo_service.controls import get_controls, sleep_for
from demo_service.errors import ApiError
from demo_service.store import get_store
from demo_service.telemetry import get_telemetry

__all__ = ["bp", "MAX_ATTEMPT"]

bp = Blueprint("chunks", __name__, url_prefix="/v1/uploads")
MAX_ATTEMPT = 100


def _attempt() -> int:
    raw = request.headers.get("X-Chunk-Attempt", "1")
    try:
        attempt = int(raw)
    except ValueError:
        attempt = 0
    if not 1 <= attempt <= MAX_ATTEMPT:
        raise ApiError(400, "invalid_header", f"X-Chunk-Attempt must be an integer in [1, {MAX_ATTEMPT}]",
                       "X-Chunk-Attempt")
    return attempt


@bp.put("/<upload_id>/chunks/<int:n>")
def put_chunk(upload_id: str, n: int):
    started = time.perf_counter()
    telemetry = get_telemetry()
    upload = load_upload(upload_id)
    attempt = _attempt()
    if n >= upload.chunk_count:
        raise ApiError(422, "invalid_field", f"chunk index must be in [0, {upload.chunk_count - 1}]", "n")
    if upload.status != "uploading":
        raise ApiError(409, "not_uploading", f"upload is {upload.status}; chunks are accepted while uploading", None,
                       extra={"status": upload.status})
    data = request.get_data(cache=False)
    if not data:
        raise ApiError(422, "empty_chunk", "chunk body must not be empty", "body")
    # The hot path: no span of its own (the server span covers it), only attributes when it records.
    telemetry.annotate(request_id=upload.request_id, upload_id=upload_id, chunk_index=n, attempt=attempt)
    key = f"{upload.request_id}|{n}|{attempt}"
    apply_api_faults("chunk", upload.cohort, key)
    if attempt > 1:
        telemetry.emit("chunk_retry", upload, chunk_index=n, attempt=attempt)
        telemetry.metrics.chunk_retries.labels(network_type=upload.network_type).inc()
    faults = get_controls().match(target="storage", cohort=upload.cohort, key=key)
    sleep_for(faults)
    failed = any(f.kind in ("chunk_failures", "errors") for f in faults)
    if not failed:
        try:
            get_store().put_chunk(upload_id, n, len(data), zlib.crc32(data), attempt, time.time())
        except sqlite3.Error:
            failed = True
    if failed:
        telemetry.emit("chunk_failed", upload, chunk_index=n, attempt=attempt, error_class="storage")
        telemetry.metrics.chunks.labels(result="failed", network_type=upload.network_type).inc()
        raise ApiError(503, "chunk_failed", "the chunk could not be stored; retry it", None, retry_after=1,
                       extra={"chunk_index": n, "attempt": attempt})
    telemetry.emit("chunk_uploaded", upload, chunk_index=n, attempt=attempt, bytes=len(data),
                   duration_ms=round((time.perf_counter() - started) * 1000, 3))
    telemetry.metrics.chunks.labels(result="uploaded", network_type=upload.network_type).inc()
    return jsonify({"chunk_index": n, "received": True})
