"""gunicorn hooks for the publish API (loaded with ``--config python:demo_service.gunicorn_conf``)."""

from __future__ import annotations

import os


def child_exit(server, worker) -> None:
    """A dead worker's live gauges must leave the multiprocess aggregate."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
