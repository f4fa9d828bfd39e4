"""Complete an upload: claim it once, then transcode + publish (sync) or queue it (async)."""

from __future__ import annotations

import dataclasses
import time

from flask import Blueprint, current_app, jsonify
from opentelemetry import propagate

from demo_service.api import apply_api_faults, load_upload
from demo_service.claims import owner_id, reap_stale_claims
from demo_service.controls import get_controls
from demo_service.errors import ApiError
from demo_service.publishing import Outcome, fail_attempt, transcode_and_publish
from demo_service.store import get_store
from demo_service.telemetry import get_telemetry

__all__ = ["bp", "outcome_response"]

bp = Blueprint("publish", __name__, url_prefix="/v1/uploads")


def outcome_response(upload, outcome: Outcome):
    """The answer for an attempt's state; the same outcome however often complete is called."""
    ids = {"upload_id": upload.upload_id, "request_id": upload.request_id}
    if outcome.status == "published":
        return jsonify({**ids, "status": "published", "video_id": outcome.video_id})
    if outcome.status == "transcoding":
        response = jsonify({**ids, "status": "transcoding"})
        response.status_code = 202
        return response
    if outcome.status == "failed":
        if outcome.error_class == "chunk_missing":
            raise ApiError(409, "chunk_missing", "the upload was completed with chunks missing; it failed", None,
                           extra={**ids, "status": "failed", "error_class": outcome.error_class})
        raise ApiError(503, outcome.error_class or "internal",
                       f"transcode/publish failed ({outcome.error_class}); start a new upload", None, retry_after=1,
                       extra={**ids, "status": "failed", "error_class": outcome.error_class})
    if outcome.status == "cancelled":
        raise ApiError(409, "already_terminal", "upload was cancelled", None, extra={**ids, "status": "cancelled"})
    raise ApiError(409, "not_uploading", f"upload is {outcome.status}", None, extra={**ids, "status": outcome.status})


def _current_outcome(upload_id: str):
    upload = get_store().get_upload(upload_id)
    return upload, Outcome(upload.status, upload.video_id, upload.error_class)


@bp.post("/<upload_id>/complete")
def complete_upload(upload_id: str):
    telemetry = get_telemetry()
    store = get_store()
    upload = load_upload(upload_id)
    with telemetry.span("upload.complete", upload.request_id, upload_id=upload_id):
        apply_api_faults("complete", upload.cohort, upload.request_id)
        if upload.status == "transcoding":
            # A sync publish whose worker died is failed now, so this retry gets a terminal answer.
            reap_stale_claims(current_app._get_current_object(), upload_id=upload_id)
        if upload.status != "uploading":
            return outcome_response(*_current_outcome(upload_id))
        received, size = store.chunk_summary(upload_id)
        if received < upload.chunk_count:
            fail_attempt(store, telemetry, upload, "chunk_missing", from_statuses=("uploading",))
            return outcome_response(*_current_outcome(upload_id))
        now = time.time()
        sync = upload.flags.get("transcode_mode") != "async"
        claimed = (store.claim_sync(upload_id, owner_id(), now) if sync
                   else store.transition(upload_id, ("uploading",), "transcoding", completed_at=now))
        if not claimed:
            return outcome_response(*_current_outcome(upload_id))  # another request claimed it
        upload = dataclasses.replace(upload, status="transcoding", completed_at=now)
        telemetry.emit("upload_completed", upload, duration_ms=round((now - upload.created_at) * 1000, 3),
                       bytes=size, chunk_count=upload.chunk_count)
        if not sync:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            store.enqueue_transcode(upload_id, now, carrier.get("traceparent"))
            return outcome_response(upload, Outcome("transcoding"))
        try:
            outcome = transcode_and_publish(store, telemetry, get_controls(),
                                            current_app.extensions["obslab.transcoder"], upload)
        except Exception:
            # The attempt must not stay claimed by a request that is gone: end it here.
            fail_attempt(store, telemetry, upload, "internal")
            raise
        finally:
            store.finish_transcode(upload_id)
        return outcome_response(upload, outcome)
