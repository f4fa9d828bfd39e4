"""``/healthz``, ``/metrics`` and ``/openapi.json``."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from demo_service.openapi import openapi_spec
from demo_service.store import get_store
from demo_service.telemetry import get_telemetry
from demo_service.telemetry.metrics import CONTENT_TYPE_LATEST, render_metrics

__all__ = ["bp"]

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    get_store().controls_version()  # the shared state is reachable
    # Lost evidence is an outage of the lab: a failing event log (full disk, unwritable
    # directory) makes the health check fail loudly instead of serving on silently.
    problem = get_telemetry().event_sink_problem()
    if problem:
        return jsonify({"status": "degraded", "problems": [problem]}), 503
    return jsonify({"status": "ok"})


@bp.get("/metrics")
def metrics():
    body = render_metrics(get_telemetry().metrics, queue_depth=get_store().queue_depth)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_spec())
