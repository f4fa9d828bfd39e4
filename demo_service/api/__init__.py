"""The ``/v1`` API of the publish service: one blueprint per route group."""

from __future__ import annotations

import random
import re
import threading

from flask import Flask, request

from demo_service.errors import ApiError
from demo_service.store import Upload, get_store

__all__ = ["register", "REQUEST_ID_RE", "UPLOAD_ID_RE", "header_request_id", "load_upload", "is_synthetic",
           "shed_if_declared", "primary_slot", "require_primary_slot"]

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
UPLOAD_ID_RE = re.compile(r"^up_[0-9a-f]{24}$")


def header_request_id() -> str | None:
    """The client's ``X-Request-ID`` when present; 400 when malformed."""
    value = request.headers.get("X-Request-ID")
    if value is None:
        return None
    if not REQUEST_ID_RE.match(value):
        raise ApiError(400, "invalid_header", "X-Request-ID must match [A-Za-z0-9._-]{8,64}", "X-Request-ID")
    return value


def is_synthetic() -> bool:
    return request.headers.get("X-Synthetic", "").strip().lower() in ("1", "true", "yes")


def load_upload(upload_id: str) -> Upload:
    if not UPLOAD_ID_RE.match(upload_id):
        raise ApiError(400, "invalid_id", "upload_id must look like up_ followed by 24 hex digits", "upload_id")
    upload = get_store().get_upload(upload_id)
    if upload is None:
        raise ApiError(404, "not_found", f"no upload {upload_id}", "upload_id")
    header_request_id()  # validate; the attempt's own request_id stays the correlation ID
    return upload


def register(app: Flask) -> None:
    from demo_service.api import chunks, feed, publish, uploads

    for module in (uploads, chunks, publish, feed):
        app.register_blueprint(module.bp)


def cancel_counts_as_failure(cohort: dict, key: str) -> bool:
    """A ``cancel_as_failure`` fault (target api) matches this cancel: end it as a failed publish."""
    from demo_service.controls import get_controls

    return bool(get_controls().match(target="api", cohort=cohort, key=f"cancel|{key}", route="cancel",
                                     kinds=("cancel_as_failure",)))


def apply_api_faults(route: str, cohort: dict, key: str) -> None:
    """Faults on target ``api`` for this route: delay, burn, grow, then fail (503) or time out (504)."""
    from demo_service.controls import apply_resource_faults, get_controls, sleep_for

    faults = get_controls().match(target="api", cohort=cohort, key=f"{route}|{key}", route=route)
    if not faults:
        return
    apply_resource_faults(faults)
    if any(f.kind == "timeouts" for f in faults):
        sleep_for(faults, kind="timeouts", param="timeout_ms")
        raise ApiError(504, "timeout", "the request timed out (injected fault)", retry_after=1)
    if any(f.kind == "errors" for f in faults):
        raise ApiError(503, "unavailable", "the service is unavailable (injected fault)", retry_after=1)


_shed_rng = random.Random()
_shed_rng_lock = threading.Lock()


def shed_if_declared(request_class: str) -> None:
    """Reject this request with 503 ``load_shed`` + Retry-After when its class is being shed (``/admin/shed``):
    first thing in the route, before it reads anything at the database primary."""
    from demo_service.controls import get_controls
    from demo_service.shedding import SHED_ERROR_CODE, sheds
    from demo_service.telemetry import get_telemetry

    spec = get_controls().shed_specs.get(request_class)
    if spec is None:
        return
    with _shed_rng_lock:
        rejected = sheds(spec, _shed_rng)
    if rejected:
        get_telemetry().metrics.requests_shed.labels(request_class=request_class).inc()
        raise ApiError(503, SHED_ERROR_CODE, f"{request_class} requests are being shed to protect uploads; "
                                             f"retry after {spec.retry_after_s} s", None,
                       retry_after=spec.retry_after_s)


def primary_slot(operation: str, cohort: dict, key: str) -> bool:
    """One query of ``operation`` at the database primary under any ``capacity`` fault in force: False when it
    gave up waiting for a connection slot (counted in ``obslab_db_slot_timeouts_total``)."""
    from demo_service.capacity import primary_query
    from demo_service.controls import get_controls
    from demo_service.telemetry import get_telemetry

    faults = get_controls().match(target="db", cohort=cohort, key=f"{operation}|{key}", kinds=("capacity",))
    if not faults or primary_query(faults):
        return True
    get_telemetry().metrics.db_slot_timeouts.labels(operation=operation).inc()
    return False


def require_primary_slot(operation: str, cohort: dict, key: str) -> None:
    """``primary_slot`` for a read: 503 (the primary is at capacity) when no slot came free in time."""
    if not primary_slot(operation, cohort, key):
        raise ApiError(503, "dependency_unavailable", "the database is at capacity; retry later", None,
                       retry_after=1)
