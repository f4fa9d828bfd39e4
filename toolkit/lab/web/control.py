"""Faults and flags panel: forwards to the service's control API (``/admin/faults``, ``/admin/flags``).

The browser sends the admin token it was given; the dashboard only passes it on, so a page
without the token can read the SLIs but never change the service. Forwarding (instead of the
browser calling the API port directly) keeps the page same-origin.
"""

from __future__ import annotations

import requests
from flask import Blueprint, Response, current_app, jsonify, request

__all__ = ["bp"]

bp = Blueprint("control", __name__, url_prefix="/api/control")
DASHBOARD_ACTOR = "dashboard"  # who the service's audit events name for changes made from the page

_KINDS = ("faults", "flags")
_TIMEOUT_S = 5.0


def _error(status: int, code: str, message: str):
    return jsonify(error={"code": code, "message": message, "field": None}), status


@bp.route("/<kind>", methods=["GET"], defaults={"name": None})
@bp.route("/<kind>/<name>", methods=["GET", "PUT", "DELETE"])
def forward(kind: str, name: str | None):
    config = current_app.config["OBSLAB_DASHBOARD"]
    if kind not in _KINDS:
        return _error(404, "not_found", f"no control resource {kind!r} (have: faults, flags)")
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or not auth[7:].strip():
        return _error(401, "unauthorized", "enter the admin token (the lab printed where it is)")
    if not config.api_url:
        return _error(503, "unavailable", "this dashboard was started without a service URL")
    url = f"{config.api_url.rstrip('/')}/admin/{kind}" + (f"/{name}" if name else "")
    try:
        upstream = requests.request(
            request.method, url, headers={"Authorization": auth, "Content-Type": "application/json",
                                          "X-Actor": DASHBOARD_ACTOR},
            data=request.get_data() if request.method == "PUT" else None, timeout=_TIMEOUT_S)
    except requests.RequestException as e:
        return _error(502, "unreachable", f"control API at {url} did not answer: {e.__class__.__name__}")
    return Response(upstream.content, status=upstream.status_code,
                    content_type=upstream.headers.get("Content-Type", "application/json"))
