"""``/healthz``, ``/metrics`` and ``/openapi.json``; and no new uploads while the data disk is full."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from demo_service.diskspace import DISK_FULL, DISK_FULL_BELOW_BYTES, STORAGE_FULL_RETRY_AFTER_S, free_bytes
from demo_service.errors import ApiError
from demo_service.openapi import openapi_spec
from demo_service.store import get_store
from demo_service.telemetry import get_telemetry, metric_files
from demo_service.telemetry.metrics import CONTENT_TYPE_LATEST, render_metrics

__all__ = ["bp", "health_problems"]

bp = Blueprint("health", __name__)


def health_problems() -> tuple[list[tuple[str, str]], int | None]:
    """([(cause, message)...], free bytes of the data disk): what makes this worker degraded."""
    problems = []
    # Lost evidence is an outage of the lab: a failing event log (full disk, unwritable
    # directory) makes the health check fail loudly instead of serving on silently.
    sink = get_telemetry().event_sink_problem()
    if sink:
        problems.append(sink)
    data_dir = current_app.config["DATA_DIR"]
    free = free_bytes(data_dir)
    if free is not None and free < DISK_FULL_BELOW_BYTES:
        problems.append((DISK_FULL, f"disk: {free} bytes free for {data_dir} (full below {DISK_FULL_BELOW_BYTES})"))
    if metric_files.installed():
        metric_files.flush_pending()
        held = metric_files.pending_problem()
        if held:
            problems.append(held)
    return problems, free


@bp.get("/healthz")
def healthz():
    get_store().controls_version()  # the shared state is reachable
    problems, free = health_problems()
    if problems:
        causes = list(dict.fromkeys(cause for cause, _ in problems))
        response = jsonify({"status": "degraded", "cause": causes[0], "causes": causes,
                            "problems": [message for _, message in problems], "free_bytes": free})
        response.status_code = 503
        response.headers["Retry-After"] = str(STORAGE_FULL_RETRY_AFTER_S)
        return response
    return jsonify({"status": "ok"})


@bp.before_app_request
def _no_new_uploads_on_a_full_disk():
    # A new attempt would be stored but its events lost: refuse it up front, the client retries later.
    if request.endpoint == "uploads.create_upload":
        free = free_bytes(current_app.config["DATA_DIR"])
        if free is not None and free < DISK_FULL_BELOW_BYTES:
            raise ApiError(503, "storage_full", f"the service's disk is full ({free} bytes free); retry later",
                           None, retry_after=STORAGE_FULL_RETRY_AFTER_S)


@bp.get("/metrics")
def metrics():
    body = render_metrics(get_telemetry().metrics, queue_depth=get_store().queue_depth)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_spec())
