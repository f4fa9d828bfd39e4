"""Serve the dashboard from a background thread of the lab process (werkzeug's threaded server).

The dashboard is a local page for one learner; a thread in the lab process costs no extra
interpreter (RSS) and stops with the lab.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

__all__ = ["DashboardServer"]


class DashboardServer:
    def __init__(self, app: Flask, host: str, port: int):
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="obslab-dashboard", daemon=True)
        # The request log of a page polling every few seconds would drown the lab's own output.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self._server.port}/"

    def start(self) -> "DashboardServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
