"""Create an upload, read its status, cancel it."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from demo_service.api import (apply_api_faults, cancel_counts_as_failure, header_request_id, is_synthetic, load_upload,
                              require_primary_slot, shed_if_declared)
from demo_service.controls import get_controls
from demo_service.errors import ApiError
from demo_service.publishing import fail_attempt, record_outcome
from demo_service.store import TERMINAL_STATUSES, get_store
from demo_service.telemetry import NO_ATTEMPT, get_telemetry
from contract.events import APP_VERSIONS, NETWORK_TYPES, REGIONS, media_size_bucket

bp = Blueprint("uploads", __name__, url_prefix="/v1/uploads")

MAX_MEDIA_SIZE_BYTES = 16 * 1024 ** 3
MAX_CHUNK_COUNT = 64
MAX_USER_ID_CHARS = 128
MAX_REASON_CHARS = 200
# Every body of this API is a flat object (a fault's selector is the deepest: 3 levels).
MAX_JSON_DEPTH = 32


def json_object(required: bool = True) -> dict:
    """The request body as a JSON object of Unicode text; 400 when it is not one, or nested deeper
    than MAX_JSON_DEPTH; 422 naming the field when a string holds a lone surrogate (``"\\ud800"``
    is valid JSON but no text: it would break every reader of the event it lands in)."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise ApiError(400, "invalid_json", "request body must be a JSON object", None)
        return {}
    try:
        body = json.loads(raw)
    except RecursionError:
        raise ApiError(400, "invalid_json", f"request body is JSON nested deeper than {MAX_JSON_DEPTH} levels",
                       None) from None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object", None)
    _check_json_text(body)
    return body


def _check_json_text(body: dict) -> None:
    """Depth and Unicode checks over the parsed body, iteratively (no recursion to exhaust)."""
    stack: list[tuple[Any, str | None, int]] = [(body, None, 1)]
    while stack:
        value, field, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ApiError(400, "invalid_json", f"request body is JSON nested deeper than {MAX_JSON_DEPTH} levels",
                           field)
        if isinstance(value, str):
            _check_text(value, field)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, field)
                stack.append((item, field or key, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, field, depth + 1) for item in value)


def _check_text(text: str, field: str | None) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = text[e.start]
        name = field.encode("utf-8", "backslashreplace").decode() if field else "a key of the body"
        raise ApiError(422, "invalid_field", f"{name} must be Unicode text: it holds a lone surrogate "
                                             f"(\\u{ord(bad):04x}) at character {e.start}", field if field else None) from None


def _validate_create(body: dict) -> dict[str, Any]:
    def integer(name: str, lo: int, hi: int) -> int:
        value = body.get(name)
        if value is None:
            raise ApiError(422, "missing_field", f"{name} is required", name)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ApiError(422, "invalid_field", f"{name} must be an integer in [{lo}, {hi}]", name)
        return value

    def choice(name: str, values: tuple[str, ...]) -> str:
        value = body.get(name)
        if value is None:
            raise ApiError(422, "missing_field", f"{name} is required", name)
        if value not in values:
            raise ApiError(422, "invalid_field", f"{name} must be one of {list(values)}", name)
        return value

    # Checked in this order, so the first bad field is the one named.
    fields = {
        "media_size_bytes": integer("media_size_bytes", 1, MAX_MEDIA_SIZE_BYTES),
        "chunk_count": integer("chunk_count", 1, MAX_CHUNK_COUNT),
        "app_version": choice("app_version", APP_VERSIONS),
        "region": choice("region", REGIONS),
        "network_type": choice("network_type", NETWORK_TYPES),
    }
    user_id = body.get("user_id")
    if user_id is None:
        raise ApiError(422, "missing_field", "user_id is required", "user_id")
    if not isinstance(user_id, str) or not 1 <= len(user_id) <= MAX_USER_ID_CHARS:
        raise ApiError(422, "invalid_field", f"user_id must be a string of 1-{MAX_USER_ID_CHARS} characters",
                       "user_id")
    fields["user_id"] = user_id
    return fields


def _reject(error: ApiError, body: dict, request_id: str | None) -> None:
    """Record an invalid create request as upload_rejected (not an attempt), with what is known of it."""
    telemetry = get_telemetry()
    known = dict(NO_ATTEMPT)
    known["request_id"] = request_id
    known["synthetic"] = is_synthetic()
    for name, values in (("app_version", APP_VERSIONS), ("region", REGIONS), ("network_type", NETWORK_TYPES)):
        if body.get(name) in values:
            known[name] = body[name]
    size = body.get("media_size_bytes")
    if isinstance(size, int) and not isinstance(size, bool) and size >= 1:
        known["media_size_bucket"] = media_size_bucket(size)
    user = body.get("user_id")
    if isinstance(user, str) and 1 <= len(user) <= MAX_USER_ID_CHARS:
        known["user_id"] = telemetry.hash_user(user)
    telemetry.emit("upload_rejected", known=known, reason=error.message[:MAX_REASON_CHARS], field=error.field)


@bp.post("")
def create_upload():
    telemetry = get_telemetry()
    try:
        request_id = header_request_id()
    except ApiError as e:
        _reject(e, {}, None)
        raise
    body: dict = {}
    try:
        body = json_object()
        fields = _validate_create(body)
    except ApiError as e:
        _reject(e, body, request_id)
        raise
    if request_id is not None:
        try:
            _refuse_reused_request_id(request_id)
        except ApiError as e:
            _reject(e, body, request_id)
            raise
    request_id = request_id or secrets.token_hex(16)
    bucket = media_size_bucket(fields["media_size_bytes"])
    user_hash = telemetry.hash_user(fields["user_id"])
    with telemetry.span("upload.create", request_id, media_size_bucket=bucket, region=fields["region"]):
        flags = get_controls().assign_flags(user_hash)
        cohort = {"region": fields["region"], "app_version": fields["app_version"],
                  "network_type": fields["network_type"], "media_size_bucket": bucket, "release": flags["release"]}
        apply_api_faults("create", cohort, request_id)
        upload_id = "up_" + secrets.token_hex(12)
        try:
            get_store().create_upload(
                upload_id=upload_id, request_id=request_id, user_hash=user_hash, app_version=fields["app_version"],
                region=fields["region"], network_type=fields["network_type"],
                media_size_bytes=fields["media_size_bytes"], media_size_bucket=bucket,
                chunk_count=fields["chunk_count"], synthetic=is_synthetic(), flags=flags, status="uploading",
                created_at=time.time())
        except sqlite3.IntegrityError:  # a concurrent create with the same X-Request-ID won the race
            try:
                _refuse_reused_request_id(request_id)
            except ApiError as e:
                _reject(e, body, request_id)
                raise
            raise
        upload = get_store().get_upload(upload_id)
        telemetry.emit("upload_started", upload, media_size_bytes=fields["media_size_bytes"],
                       chunk_count=fields["chunk_count"])
    response = jsonify({"upload_id": upload_id, "request_id": request_id, "status": "uploading", "flags": flags,
                        "max_chunk_bytes": current_app.config["MAX_CHUNK_BYTES"]})
    response.status_code = 201
    response.headers["X-Request-ID"] = request_id
    response.headers["Location"] = f"/v1/uploads/{upload_id}"
    return response


def _refuse_reused_request_id(request_id: str) -> None:
    """One X-Request-ID, one upload: the toolkit keys an attempt by it, so a second upload under
    the same ID would merge two attempts into one."""
    existing = get_store().upload_id_for_request(request_id)
    if existing is not None:
        raise ApiError(409, "duplicate_request_id",
                       f"X-Request-ID {request_id} already belongs to upload {existing}; "
                       f"a new upload needs a new X-Request-ID", "X-Request-ID")


def status_body(upload) -> dict:
    body: dict[str, Any] = {"upload_id": upload.upload_id, "request_id": upload.request_id, "status": upload.status}
    if upload.video_id:
        body["video_id"] = upload.video_id
    if upload.error_class:
        body["error_class"] = upload.error_class
    return body


@bp.get("/<upload_id>")
def upload_status(upload_id: str):
    shed_if_declared("status")
    upload = load_upload(upload_id)
    apply_api_faults("status", upload.cohort, upload.request_id)
    require_primary_slot("status", upload.cohort, upload.request_id)
    return jsonify(status_body(upload))


@bp.post("/<upload_id>/cancel")
def cancel_upload(upload_id: str):
    telemetry = get_telemetry()
    upload = load_upload(upload_id)
    body = json_object(required=False)
    reason = body.get("reason", "user_cancelled")
    if not isinstance(reason, str) or not 1 <= len(reason) <= MAX_REASON_CHARS:
        raise ApiError(422, "invalid_field", f"reason must be a string of 1-{MAX_REASON_CHARS} characters", "reason")
    with telemetry.span("upload.cancel", upload.request_id, upload_id=upload_id):
        apply_api_faults("cancel", upload.cohort, upload.request_id)
        if cancel_counts_as_failure(upload.cohort, upload.request_id):
            # This build ends a cancelled upload as a failed publish: the user sees the same, the SLI does not.
            outcome = fail_attempt(get_store(), telemetry, upload, "internal", ("uploading", "transcoding"))
            if upload.status not in ("uploading", "transcoding") or outcome.status != "failed":
                raise ApiError(409, "already_terminal", f"upload is already {outcome.status}", None,
                               extra={"status": outcome.status})
            return jsonify({"upload_id": upload_id, "status": "failed"})
        now = time.time()
        if not get_store().transition(upload_id, ("uploading", "transcoding"), "cancelled", finished_at=now):
            current = get_store().get_upload(upload_id)
            raise ApiError(409, "already_terminal", f"upload is already {current.status}", None,
                           extra={"status": current.status})
        telemetry.emit("upload_cancelled", upload, reason=reason, duration_ms=round((now - upload.created_at) * 1000, 3))
        record_outcome(telemetry, upload, "cancelled")
    return jsonify({"upload_id": upload_id, "status": "cancelled"})


__all__ = ["bp", "json_object", "status_body", "TERMINAL_STATUSES"]
