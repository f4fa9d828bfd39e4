"""The dashboard on its own, against a service that runs elsewhere (``obslab dashboard``).

``obslab lab`` starts the service and serves the dashboard from a thread of the same process.
Where the service runs apart — the docker compose lab, or ``obslab serve`` in another terminal —
the dashboard is served alone over the shared data directory (events, traces, drill state), with
the API and Prometheus given by URL. It takes the data directory's lab lock and writes
``<data-dir>/lab.json`` as ``obslab lab`` does, so ``obslab drill …`` and ``obslab top`` run in
the same place find the API and Prometheus without flags.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from toolkit.lab.runtime import LAB_FILE, LOCK_FILE, LabAlreadyRunning, LabError, port_in_use, read_lab_file

__all__ = ["StandaloneConfig", "StandaloneDashboard", "parse_link"]


@dataclass(frozen=True)
class StandaloneConfig:
    data_dir: Path
    spec_path: Path
    api_url: str
    prometheus_url: str | None = None
    profile: str = "lab"
    host: str = "127.0.0.1"
    port: int = 8050
    # (name, url) shown in the page header: the URLs a browser reaches, which in compose are not
    # the ones this process uses (http://api:8000 inside, http://localhost:8000 outside).
    links: tuple[tuple[str, str], ...] = ()
    refresh_s: float = 5.0


def parse_link(text: str) -> tuple[str, str]:
    """``NAME=URL`` (a header link) into (name, url)."""
    name, sep, url = text.partition("=")
    if not sep or not name.strip() or not url.strip().startswith(("http://", "https://")):
        raise ValueError(f"--link {text!r}: expected NAME=http://…")
    return name.strip(), url.strip()


class StandaloneDashboard:
    """Serve the dashboard until stop(); holds the data directory's lab lock meanwhile."""

    def __init__(self, config: StandaloneConfig):
        self.config = config
        self.data_dir = Path(config.data_dir).resolve()
        self._lock_fd: int | None = None
        self._server = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        return self._server.url.rstrip("/") if self._server else ""

    def start(self) -> str:
        from toolkit.lab.web import DashboardConfig, create_app
        from toolkit.lab.web.server import DashboardServer

        cfg = self.config
        spec = Path(cfg.spec_path).resolve()
        if not spec.is_file():
            raise LabError(f"{spec}: SLO spec not found (pass --spec)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            if port_in_use(cfg.port, cfg.host):
                raise LabAlreadyRunning(f"port {cfg.port} on {cfg.host} is in use; choose another with --port")
            # With --prometheus-url the dashboard adds the link to its alerts page itself (the path depends
            # on Prometheus's version).
            links = cfg.links or (("publish API", cfg.api_url.rstrip("/") + "/openapi.json"),)
            dash = DashboardConfig(data_dir=self.data_dir, spec_path=spec, profile=cfg.profile,
                                   api_url=cfg.api_url.rstrip("/"), prometheus_url=cfg.prometheus_url,
                                   links=links, link_prometheus_alerts=not cfg.links, refresh_s=cfg.refresh_s)
            self._server = DashboardServer(create_app(dash), cfg.host, cfg.port).start()
            self._write_lab_file(spec)
            return self.url
        except BaseException:
            self.stop()
            raise

    def _lock(self) -> None:
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            info = read_lab_file(self.data_dir) or {}
            where = f" (pid {info['pid']}, dashboard {info.get('dashboard_url')})" if info.get("pid") else ""
            raise LabAlreadyRunning(f"a lab or dashboard is already running on {self.data_dir}{where}; "
                                    f"use its dashboard, or another --data-dir") from None
        self._lock_fd = fd

    def _write_lab_file(self, spec: Path) -> None:
        cfg = self.config
        info = {"pid": os.getpid(), "url": cfg.api_url.rstrip("/"), "dashboard_url": self.url,
                "prometheus_url": cfg.prometheus_url, "data_dir": str(self.data_dir), "profile": cfg.profile,
                "spec": str(spec)}
        tmp = self.data_dir / (LAB_FILE + ".tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        tmp.replace(self.data_dir / LAB_FILE)

    def request_stop(self) -> None:
        self._stopping.set()

    def wait(self) -> None:
        while not self._stopping.wait(1.0):
            pass

    def stop(self) -> None:
        """Stop a running drill (its scheduler must not outlive the dashboard that started it), then serving."""
        if self._lock_fd is None:
            return
        if self._server is not None:
            from toolkit.lab.web.drills import stop_active_drill

            try:
                stop_active_drill(self.data_dir)
            finally:
                self._server.stop()
                self._server = None
        try:
            (self.data_dir / LAB_FILE).unlink()
        except FileNotFoundError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None
