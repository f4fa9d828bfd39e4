"""``/``: where a learner lands when they open the API's address: what this is and where to go next.

JSON for clients that ask for it (``Accept: application/json``), a small HTML page otherwise.
"""

from __future__ import annotations

from html import escape

from flask import Blueprint, Response, current_app, jsonify, request

__all__ = ["bp", "DEFAULT_DASHBOARD_URL"]

bp = Blueprint("root", __name__)

# Where `obslab lab` serves its dashboard with its default ports; the service cannot know other ports,
# so the lab's banner stays the authority and the page says so.
DEFAULT_DASHBOARD_URL = "http://127.0.0.1:8050/"


def _links() -> list[dict[str, str]]:
    return [
        {"rel": "openapi", "href": "/openapi.json", "title": "OpenAPI document: every endpoint of the publish API"},
        {"rel": "metrics", "href": "/metrics", "title": "Prometheus metrics"},
        {"rel": "health", "href": "/healthz", "title": "health check"},
        {"rel": "dashboard", "href": current_app.config.get("DASHBOARD_URL") or DEFAULT_DASHBOARD_URL,
         "title": "the lab's live dashboard (when started by `obslab lab` with its default ports; "
                  "the lab's banner prints the real address)"},
    ]


@bp.get("/")
def index():
    links = _links()
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    if best == "application/json" or (best is None and not request.accept_mimetypes.accept_html):
        return jsonify({"service": "obslab publish API", "links": links})
    items = "\n".join(f'  <li><a href="{escape(l["href"])}">{escape(l["href"])}</a> — {escape(l["title"])}</li>'
                      for l in links)
    page = ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>obslab publish API</title></head>\n"
            "<body>\n<h1>obslab publish API</h1>\n<ul>\n" + items + "\n</ul>\n</body></html>\n")
    return Response(page, mimetype="text/html")
