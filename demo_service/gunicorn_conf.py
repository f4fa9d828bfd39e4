"""gunicorn hooks for the publish API (loaded with ``--config python:demo_service.gunicorn_conf``)."""

from __future__ import annotations

import os


def on_starting(server) -> None:
    """Before the workers fork: gunicorn's own 400/414/431 answers in the API's JSON error shape."""
    from demo_service.gunicorn_errors import install

    install()


def child_exit(server, worker) -> None:
    """A dead worker's live gauges must leave the multiprocess aggregate."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def non_loopback_binds(binds) -> list[str]:
    """The bind addresses (``host:port``, ``[v6]:port``, ``unix:...``) that are not loopback."""
    import ipaddress

    exposed = []
    for bind in binds:
        if bind.startswith(("unix:", "fd://")):
            continue
        host = bind.rsplit(":", 1)[0].strip("[]") if ":" in bind else bind
        if host == "localhost":
            continue
        try:
            if ipaddress.ip_address(host).is_loopback:
                continue
        except ValueError:
            pass  # a host name: cannot tell, so warn
        exposed.append(bind)
    return exposed


def bind_warning(binds, admin_allow_remote: bool) -> str | None:
    """The warning to print when the API listens beyond loopback (None when it does not)."""
    exposed = non_loopback_binds(binds)
    if not exposed:
        return None
    admin = ("and OBSLAB_ADMIN_ALLOW_REMOTE=1 lets remote clients reach the control plane with the token"
             if admin_allow_remote else "the control plane still refuses non-loopback clients")
    return (f"WARNING: obslab publish API listens on {', '.join(exposed)}, beyond loopback: anyone who can "
            f"reach it can drive the demo service, {admin}. Bind 127.0.0.1 unless you need this.")


def when_ready(server) -> None:
    """Say it loudly when the service is reachable from other hosts (it injects faults on request)."""
    allow = os.environ.get("OBSLAB_ADMIN_ALLOW_REMOTE", "").strip().lower() in ("1", "true", "yes")
    warning = bind_warning(server.cfg.bind, allow)
    if warning:
        server.log.warning(warning)
