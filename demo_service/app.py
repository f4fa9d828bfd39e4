"""The publish API's app factory (flaskr style): config, then one ``init_app`` per concern.

gunicorn serves it as ``demo_service.app:create_app()`` (see ``toolkit/lab/processes.py``);
tests call ``create_app({...})`` with a tmp data dir, an injected ``CollectorRegistry``
and an in-memory span exporter.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from flask import Flask

from demo_service import admin, api, claims, controls, errors, health, queue, root, store, telemetry
from demo_service.body_limit import BoundedBody
from demo_service.config import (ADMIN_TOKEN_FILE, config_from_env, default_config, make_data_dir,
                                 parse_instrumentation, read_admin_token_file)
from demo_service.transcode_client import TranscodeClient

__all__ = ["create_app"]


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the publish API. ``config`` overrides the environment, which overrides the defaults."""
    app = Flask("demo_service")
    app.config.from_mapping(default_config())
    app.config.update(config_from_env())
    if config:
        app.config.update(config)
    if isinstance(app.config["INSTRUMENTATION"], str):
        app.config["INSTRUMENTATION"] = parse_instrumentation(app.config["INSTRUMENTATION"])
    data_dir = Path(app.config["DATA_DIR"])
    make_data_dir(data_dir)
    if not app.config["ADMIN_TOKEN"]:
        app.config["ADMIN_TOKEN"] = read_admin_token_file(data_dir / ADMIN_TOKEN_FILE)
    # Chunks are the largest bodies; anything larger is refused with 413 before a handler runs.
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_CHUNK_BYTES"]
    app.json.sort_keys = False

    errors.init_app(app)
    store.init_app(app)
    controls.init_app(app)
    telemetry.init_app(app)  # may wrap wsgi_app in the server-span middleware
    # ... and so is a body sent without a Content-Length (chunked), which werkzeug would truncate. Outermost:
    # such a body is refused before anything else (a server span included) sees the request.
    app.wsgi_app = BoundedBody(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])
    app.extensions["obslab.transcoder"] = TranscodeClient(
        app.config["TRANSCODER_URL"], app.config["TRANSCODER_CONNECT_TIMEOUT_S"],
        app.config["TRANSCODER_READ_TIMEOUT_S"], app.config["TRANSCODER_MAX_ATTEMPTS"])
    api.register(app)
    admin.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(root.bp)
    queue.init_app(app)
    claims.init_app(app)

    @app.after_request
    def _served_by(response):
        # Which worker answered: lets a test (or a learner) see that every worker applies a change.
        response.headers["X-Worker-Pid"] = str(os.getpid())
        return response

    return app
