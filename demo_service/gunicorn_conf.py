"""gunicorn hooks for the publish API (loaded with ``--config python:demo_service.gunicorn_conf``)."""

from __future__ import annotations

import os

from contract.env import ENV_ADMIN_ALLOW_REMOTE
from contract.exposure import bind_warning


def on_starting(server) -> None:
    """Before the workers fork: gunicorn's own 400/414/431 answers in the API's JSON error shape."""
    from demo_service.gunicorn_errors import install

    install()


def child_exit(server, worker) -> None:
    """A dead worker's live gauges must leave the multiprocess aggregate."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def when_ready(server) -> None:
    """Say it loudly when the service is reachable from other hosts (it injects faults on request)."""
    allow = os.environ.get(ENV_ADMIN_ALLOW_REMOTE, "").strip().lower() in ("1", "true", "yes")
    warning = bind_warning(server.cfg.bind, allow)
    if warning:
        server.log.warning(warning)
