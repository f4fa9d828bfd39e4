"""The lab's live web dashboard: a small Flask app over the lab's data directory.

``create_app(config)`` wires one blueprint per concern (flaskr style):

- ``api``      — ``/api/info``, ``/api/snapshot`` (the tiles), ``/api/series``, ``/api/cohorts``
- ``explorer`` — ``/api/requests/recent``, ``/api/requests/<request_id>`` (events + spans)
- ``control``  — ``/api/control/faults|flags[/<name>]``, forwarded to the service's control API
  with the bearer token the browser sends (the token never lives in the dashboard)
- ``drills``   — ``/api/drills...`` over the drills library, when it is installed
- ``csrf``     — ``/api/csrf``; every state-changing request must be same-origin and carry that
  token (or the admin token), see ``toolkit/lab/web/csrf.py``

The page (``static/index.html`` + ``app.js`` + vendored uPlot) is served from the package:
no CDN, no build step, nothing fetched beyond 127.0.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from flask import Flask, jsonify, send_from_directory

__all__ = ["DashboardConfig", "create_app", "service_dir_of"]

STATIC_DIR = Path(__file__).parent / "static"


def service_dir_of(data_dir: Path) -> Path:
    """Where the service keeps events/ and traces/: ``<data-dir>/data`` as ``obslab serve`` and
    ``obslab lab`` lay it out, or the data directory itself."""
    nested = Path(data_dir) / "data"
    return nested if (nested / "events").is_dir() or (nested / "admin-token").is_file() else Path(data_dir)


@dataclass(frozen=True)
class DashboardConfig:
    """What the dashboard reads and links to. Paths are the lab's data directory layout."""

    data_dir: Path
    spec_path: Path
    profile: str = "lab"
    # Base URL of the publish API, whose /admin/* control API the control panel calls.
    api_url: str | None = None
    # When set, alert state comes from this Prometheus (its rules are the lab rules).
    prometheus_url: str | None = None
    admin_token_file: Path | None = None
    # (name, url) shown in the page header.
    links: tuple[tuple[str, str], ...] = ()
    # Add a header link to prometheus_url's alerts page (its path depends on Prometheus's version, so the
    # dashboard asks Prometheus before it links).
    link_prometheus_alerts: bool = False
    refresh_s: float = 5.0
    # The tiles are computed over events with ts <= now - settle_s, so an event being written
    # right now cannot land in the window after the page showed it (and obslab sli with the same
    # --until reproduces the page exactly). The service writes each event with one os.write as it
    # stamps it, so two seconds is a wide margin.
    settle_s: float = 2.0
    # The default window ("since lab start") starts here; None: at the first event.
    started_at: datetime | None = None
    # The service's own directory (events/, traces/, admin-token); default: found under data_dir.
    service_dir: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def files_dir(self) -> Path:
        return self.service_dir or service_dir_of(self.data_dir)

    @property
    def events_dir(self) -> Path:
        return self.files_dir / "events"

    @property
    def traces_dir(self) -> Path:
        return self.files_dir / "traces"


def create_app(config: DashboardConfig, test_config: dict | None = None) -> Flask:
    app = Flask(__name__, static_folder=None)
    app.config.from_mapping(OBSLAB_DASHBOARD=config)
    app.json.sort_keys = False  # keep the order the JSON was built in: it reads top-down
    if test_config:
        app.config.update(test_config)

    from toolkit.lab.web import api, control, csrf, drills, explorer

    csrf.init_app(app)  # first: its guard runs before any blueprint's handler
    app.register_blueprint(api.bp)
    app.register_blueprint(explorer.bp)
    app.register_blueprint(control.bp)
    app.register_blueprint(drills.bp)

    @app.get("/")
    def index():
        return send_from_directory(STATIC_DIR, "index.html")

    @app.get("/static/<path:filename>")
    def static_files(filename: str):
        return send_from_directory(STATIC_DIR, filename, max_age=0)

    @app.errorhandler(404)
    def not_found(e):
        return jsonify(error={"code": "not_found", "message": str(e.description), "field": None}), 404

    return app
