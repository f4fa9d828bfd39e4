"""Cross-site request forgery guard of the dashboard: every state-changing request (POST, PUT,
DELETE, PATCH) must come from the dashboard's own page, or carry the lab's admin token.

A web page on any other origin — another port of 127.0.0.1 included — can make the learner's
browser send a form POST to the dashboard, and a drill it starts injects real faults. So:

1. the request must not come from another origin: a browser states where a request comes from
   (``Sec-Fetch-Site``, ``Origin``); anything but same-origin is refused;
2. it must prove it read a page of this dashboard: the ``X-CSRF-Token`` header holds the token
   ``GET /api/csrf`` hands out (another origin cannot read that answer, nor set the header on a
   form post), or ``Authorization: Bearer`` holds the lab's admin token (scripts);
3. the ``Host`` it was sent to must be a loopback name, so a DNS-rebound name cannot make a
   foreign page "same-origin" and read the token.

Refusals are 403 with the JSON error shape, before any handler runs.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, jsonify, request

__all__ = ["bp", "init_app", "HEADER", "SAFE_METHODS", "forgery_problem"]

HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_TOKEN_KEY = "obslab_csrf_token"

bp = Blueprint("csrf", __name__, url_prefix="/api")


def _is_loopback_host(host_header: str) -> bool:
    host = urlsplit(f"//{host_header}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _same_origin(origin: str) -> bool:
    """The Origin header names the very scheme://host:port this request was sent to."""
    return origin.rstrip("/") == f"{request.scheme}://{request.host}"


def _admin_token() -> str | None:
    config = current_app.config["OBSLAB_DASHBOARD"]
    path = config.admin_token_file or (Path(config.files_dir) / "admin-token")
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def _presents_admin_token() -> bool:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    token = _admin_token()
    return bool(token) and scheme.lower() == "bearer" and \
        hmac.compare_digest(presented.strip().encode(), token.encode())


def forgery_problem() -> str | None:
    """Why this state-changing request is refused; None when it may go on."""
    if not _is_loopback_host(request.host):
        return f"the dashboard answers loopback names only, not Host {request.host!r}"
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site != "same-origin":
        return f"cross-origin request refused (Sec-Fetch-Site: {fetch_site})"
    origin = request.headers.get("Origin")
    if origin is not None and not _same_origin(origin):
        return f"cross-origin request refused (Origin: {origin})"
    presented = request.headers.get(HEADER, "")
    if presented and hmac.compare_digest(presented.encode(), current_app.extensions[_TOKEN_KEY].encode()):
        return None
    if _presents_admin_token():
        return None
    if presented:
        return f"{HEADER} is not this dashboard's token (reload the page)"
    return f"missing {HEADER} header (the dashboard page sends it) or admin bearer token"


@bp.get("/csrf")
def csrf_token():
    if not _is_loopback_host(request.host):
        return _refusal(f"the dashboard answers loopback names only, not Host {request.host!r}")
    response = jsonify(header=HEADER, token=current_app.extensions[_TOKEN_KEY])
    response.headers["Cache-Control"] = "no-store"
    return response


def _refusal(message: str):
    return jsonify(error={"code": "forbidden", "message": message, "field": None}), 403


def init_app(app: Flask) -> None:
    # One token per dashboard process: a foreign origin cannot read it (no CORS), and a restart
    # simply makes the open page fetch the new one.
    app.extensions[_TOKEN_KEY] = secrets.token_urlsafe(32)
    app.register_blueprint(bp)

    @app.before_request
    def _refuse_forgeries():
        if request.method in SAFE_METHODS:
            return None
        problem = forgery_problem()
        return _refusal(problem) if problem else None
