"""The embedded lab: service + transcoder, steady load, Prometheus (when installed) and the web dashboard.

``obslab lab`` is the first thing a learner runs. One ``Lab`` owns every process it starts:

1. the publish API and the transcoder (gunicorn, via ``toolkit.lab.processes.ServiceProcesses``),
2. Prometheus with the lab-profile rules, when a ``prometheus`` binary is on PATH (alerts then come
   from it; otherwise the dashboard evaluates burn rates over the events itself),
3. steady creator + viewer load (Locust headless, or with its web UI), running as long as the lab,
4. the dashboard (a thread of this process), on 127.0.0.1.

Each child runs in its own process group and dies with the lab (PR_SET_PDEATHSIG); stopping the
lab stops load first, then the service, then Prometheus and the dashboard, and leaves the data in
the data directory. An exclusive lock on ``<data-dir>/lab.lock`` plus a port check make a second
lab say so instead of fighting over ports. ``<data-dir>/lab.json`` tells other commands
(``obslab drill``, ``obslab top``) where the running lab is.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import requests

from contract.layout import make_data_dir
from toolkit.lab.load import locust_argv
from toolkit.lab.procgroup import GroupProcess, descendants, start_group_process

__all__ = [
    "LabConfig",
    "LabError",
    "LabAlreadyRunning",
    "Lab",
    "LAB_FILE",
    "LOCK_FILE",
    "read_lab_file",
    "port_in_use",
]

LAB_FILE = "lab.json"
LOCK_FILE = "lab.lock"
HOST = "127.0.0.1"


class LabError(RuntimeError):
    """The lab cannot start or stopped on its own; the message is one line for the user."""


class LabAlreadyRunning(LabError):
    """Another lab holds the data directory's lock or one of the ports."""


@dataclass(frozen=True)
class LabConfig:
    data_dir: Path = Path(".obslab")
    spec_path: Path = Path("slo.yaml")
    profile: str = "lab"
    port_api: int = 8000
    port_transcoder: int = 8001
    port_web: int = 8050
    port_prometheus: int = 9090
    port_locust_ui: int = 8089
    users: int = 6
    locust_ui: bool = False
    # None: use Prometheus when a binary is on PATH; False: never.
    prometheus: bool | None = None
    prometheus_binary: str = "prometheus"
    api_workers: int = 2
    # Every request's trace is kept, so the request explorer always has a waterfall to show
    # (the lab's load is light; the service's default samples 10 %).
    trace_sample_ratio: float = 1.0
    refresh_s: float = 5.0

    def ports(self) -> dict[str, int]:
        ports = {"api": self.port_api, "transcoder": self.port_transcoder, "dashboard": self.port_web}
        if self.use_prometheus:
            ports["prometheus"] = self.port_prometheus
        if self.locust_ui:
            ports["locust web UI"] = self.port_locust_ui
        return ports

    @property
    def use_prometheus(self) -> bool:
        if self.prometheus is False:
            return False
        return shutil.which(self.prometheus_binary) is not None


def port_in_use(port: int, host: str = HOST) -> bool:
    """True when a server could not listen on host:port. The probe binds with SO_REUSEADDR, as the
    lab's servers do, so connections of a lab just stopped (TIME_WAIT) do not count as a user."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def read_lab_file(data_dir: Path) -> dict | None:
    try:
        return json.loads((Path(data_dir) / LAB_FILE).read_text())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class LabUrls:
    api: str
    transcoder: str
    dashboard: str
    prometheus: str | None = None
    locust_ui: str | None = None
    admin_token_file: str = ""
    data_dir: str = ""
    extra: dict = field(default_factory=dict)


class Lab:
    """Start, watch and stop every process of the embedded lab."""

    def __init__(self, config: LabConfig, say: Callable[[str], None] = print):
        self.config = config
        self.say = say
        self.data_dir = Path(config.data_dir).resolve()
        self.spec_path = Path(config.spec_path).resolve()
        self.started_at: datetime | None = None
        self.urls: LabUrls | None = None
        self._lock_fd: int | None = None
        self._service = None
        self._children: list[GroupProcess] = []
        self._dashboard = None
        self._stopping = threading.Event()
        self._stopped = False

    # ----------------------------------------------------------------- start
    def start(self) -> LabUrls:
        cfg = self.config
        if not self.spec_path.is_file():
            raise LabError(f"{self.spec_path}: SLO spec not found (pass --spec, or run from the obslab checkout)")
        make_data_dir(self.data_dir)
        self._acquire_lock()
        try:
            self._check_ports()
            # Whole seconds: the window start the page states is then exactly the one it used.
            self.started_at = datetime.now(timezone.utc).replace(microsecond=0)
            # Slow starters first and in parallel: Prometheus boots while the service does, and the
            # dashboard answers (with "waiting for the first outcome") before any load runs.
            prometheus_url = self._start_prometheus() if cfg.use_prometheus else None
            dashboard_url = self._start_dashboard(prometheus_url)
            self._start_service()
            locust_url = self._start_load()
            if prometheus_url:
                self._wait_http("prometheus", f"{prometheus_url}/-/ready", self._child("prometheus"))
            if locust_url:
                self._wait_http("locust", locust_url + "/", self._child("locust"))
            self.urls = LabUrls(
                api=self._service.base_url, transcoder=self._service.transcoder_url, dashboard=dashboard_url,
                prometheus=prometheus_url, locust_ui=locust_url,
                admin_token_file=str(self.admin_token_file), data_dir=str(self.data_dir))
            self._write_lab_file()
            return self.urls
        except BaseException:
            self.stop()
            raise

    def _acquire_lock(self) -> None:
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            info = read_lab_file(self.data_dir) or {}
            where = f" (pid {info['pid']}, dashboard {info.get('dashboard_url')})" if info.get("pid") else ""
            raise LabAlreadyRunning(
                f"a lab is already running on {self.data_dir}{where}; stop it (Ctrl-C in its terminal) "
                f"or start this one with another --data-dir and other ports") from None
        self._lock_fd = fd

    def _check_ports(self) -> None:
        for name, port in self.config.ports().items():
            if port_in_use(port):
                other = self._other_lab_on(port)
                hint = f"another lab is running ({other})" if other else "another program uses it"
                flag = {"api": "--port", "dashboard": "--port-web", "transcoder": "--port-transcoder",
                        "prometheus": "--port-prometheus", "locust web UI": "--port-locust"}[name]
                raise LabAlreadyRunning(f"port {port} ({name}) on {HOST} is in use: {hint}; choose another with {flag}")

    def _other_lab_on(self, port: int) -> str | None:
        info = read_lab_file(self.data_dir) or {}
        if info.get("pid") and _pid_alive(int(info["pid"])) and port in (info.get("ports") or {}).values():
            return f"pid {info['pid']}, dashboard {info.get('dashboard_url')}"
        return None

    @property
    def service_dir(self) -> Path:
        """The service's files (state.db, events/, traces/, admin-token, its logs), laid out as `obslab serve` does."""
        return self.data_dir / "data"

    def _start_service(self) -> None:
        from toolkit.lab.processes import ServiceProcesses, ServiceStartError

        cfg = self.config
        self._service = ServiceProcesses(
            self.service_dir, host=HOST, port=cfg.port_api, transcoder_port=cfg.port_transcoder,
            workers=cfg.api_workers, trace_sample_ratio=cfg.trace_sample_ratio)
        try:
            self._service.start()
        except ServiceStartError as e:
            raise LabError(str(e)) from None

    @property
    def admin_token_file(self) -> Path:
        from contract.layout import ADMIN_TOKEN_FILE

        return self.service_dir / ADMIN_TOKEN_FILE

    def _start_prometheus(self) -> str:
        from toolkit.slo.prometheus_config import write_prometheus_config

        cfg = self.config
        prom_dir = self.data_dir / "prometheus"
        config_path = write_prometheus_config(prom_dir, self.spec_path, self.config.profile,
                                              api_target=f"{HOST}:{cfg.port_api}")
        argv = [shutil.which(cfg.prometheus_binary) or cfg.prometheus_binary,
                f"--config.file={config_path}", f"--storage.tsdb.path={prom_dir / 'tsdb'}",
                f"--web.listen-address={HOST}:{cfg.port_prometheus}", "--storage.tsdb.retention.time=2d",
                # A drill at --speed s rewrites the rules for its scenario time and reloads them (/-/reload).
                "--web.enable-lifecycle", "--log.level=warn"]
        self._children.append(start_group_process("prometheus", argv, log_path=self.data_dir / "logs" / "prometheus.log"))
        return f"http://{HOST}:{cfg.port_prometheus}"

    def _child(self, name: str) -> GroupProcess:
        return next(c for c in self._children if c.name == name)

    def _start_load(self) -> str | None:
        cfg = self.config
        argv = locust_argv(host=self._service.base_url, users=cfg.users,
                           web_ui=(HOST, cfg.port_locust_ui) if cfg.locust_ui else None)
        env = {**os.environ,
               # Steady load at --users: no load shape, Locust's own user count holds until the lab stops.
               "OBSLAB_LOAD_SHAPE": "none",
               # The client decides sampling (its traceparent's flag; the service samples parent-based).
               "OBSLAB_LOAD_TRACE_SAMPLE_RATIO": str(cfg.trace_sample_ratio),
               # The client's own record of every attempt, for reconciling with events later.
               "OBSLAB_LOAD_RECORD_DIR": str(self.data_dir / "load")}
        self._children.append(start_group_process("locust", argv, log_path=self.data_dir / "logs" / "locust.log",
                                                  env=env))
        return f"http://{HOST}:{cfg.port_locust_ui}" if cfg.locust_ui else None

    def _start_dashboard(self, prometheus_url: str | None) -> str:
        from toolkit.lab.web import DashboardConfig, create_app
        from toolkit.lab.web.server import DashboardServer

        cfg = self.config
        api_url = f"http://{HOST}:{cfg.port_api}"
        links = [("publish API", api_url + "/openapi.json")]
        if prometheus_url:
            links.append(("Prometheus alerts", prometheus_url + "/alerts"))
        if cfg.locust_ui:
            links.append(("Locust", f"http://{HOST}:{cfg.port_locust_ui}"))
        dash = DashboardConfig(
            data_dir=self.data_dir, spec_path=self.spec_path, profile=cfg.profile, api_url=api_url,
            prometheus_url=prometheus_url, admin_token_file=self.admin_token_file, links=tuple(links),
            refresh_s=cfg.refresh_s, started_at=self.started_at, service_dir=self.service_dir)
        self._dashboard = DashboardServer(create_app(dash), HOST, cfg.port_web).start()
        return self._dashboard.url.rstrip("/")

    def _wait_http(self, name: str, url: str, proc: GroupProcess, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not proc.alive():
                raise LabError(f"{name} exited during start-up (code {proc.popen.returncode}); "
                               f"its log: {proc.log_path}\n{proc.log_tail(5)}")
            try:
                if requests.get(url, timeout=1).status_code < 500:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise LabError(f"{name} did not answer {url} within {timeout_s:g}s; its log: {proc.log_path}")

    def _write_lab_file(self) -> None:
        info = {
            "pid": os.getpid(),
            "started_at": self.started_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "url": self.urls.api,
            "dashboard_url": self.urls.dashboard,
            "prometheus_url": self.urls.prometheus,
            "locust_url": self.urls.locust_ui,
            "token_file": self.urls.admin_token_file,
            "data_dir": str(self.data_dir),
            "ports": self.config.ports(),
            "profile": self.config.profile,
            "spec": str(self.spec_path),
        }
        tmp = self.data_dir / (LAB_FILE + ".tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        tmp.replace(self.data_dir / LAB_FILE)

    # ----------------------------------------------------------------- run
    def pids(self) -> list[int]:
        """Every process of the lab below this one."""
        return descendants(os.getpid())

    def request_stop(self) -> None:
        self._stopping.set()

    def wait(self, poll_s: float = 1.0) -> str | None:
        """Block until request_stop() or a child exits on its own; return what ended it (None: asked to stop)."""
        while not self._stopping.wait(poll_s):
            for child in self._children:
                if not child.alive():
                    return f"{child.name} exited on its own (code {child.popen.returncode}); see {child.log_path}"
            if self._service is not None:
                # A dead API or transcoder master is restarted (and said so); a crash loop ends the lab.
                gave_up = self._service.supervise(self.say)
                if gave_up:
                    return gave_up
        return None

    # ----------------------------------------------------------------- stop
    def stop(self) -> None:
        """Stop load, then the service, then Prometheus and the dashboard. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for child in [c for c in self._children if c.name == "locust"]:
            child.stop(timeout_s=15)
        if self._service is not None:
            from toolkit.lab.web.drills import stop_active_drill

            try:
                stop_active_drill(self.data_dir)
            except Exception as e:  # noqa: BLE001 - stopping the rest matters more than this drill
                self.say(f"could not stop the running drill: {e}")
            self._service.stop()
        for child in [c for c in self._children if c.name != "locust"]:
            child.stop()
        if self._dashboard is not None:
            self._dashboard.stop()
        try:
            (self.data_dir / LAB_FILE).unlink()
        except FileNotFoundError:
            pass
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
