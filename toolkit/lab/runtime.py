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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import requests

from contract.layout import make_data_dir
from toolkit.lab.load import locust_argv
from toolkit.lab.procgroup import GroupProcess, descendants, start_group_process
from toolkit.slo.default_spec import resolve_spec_path

__all__ = [
    "LabConfig",
    "LabError",
    "LabAlreadyRunning",
    "Lab",
    "LAB_FILE",
    "LOCK_FILE",
    "read_lab_file",
    "port_in_use",
    "ARCHIVE_DIR",
    "archive_lab_data",
    "reset_data_dir",
]

LAB_FILE = "lab.json"
LOCK_FILE = "lab.lock"
# Where a fresh start moves the previous data: <data-dir>/archive/<UTC timestamp>/.
ARCHIVE_DIR = "archive"
HOST = "127.0.0.1"


class LabError(RuntimeError):
    """The lab cannot start or stopped on its own; the message is one line for the user."""


class LabAlreadyRunning(LabError):
    """Another lab holds the data directory's lock or one of the ports."""


@dataclass(frozen=True)
class LabConfig:
    data_dir: Path = Path(".obslab")
    # None: ./slo.yaml when present, else the spec the package ships (toolkit/slo/default_spec.py).
    spec_path: Path | None = None
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
    # Archive the previous run's data (events, drills, Prometheus TSDB, load records) before starting,
    # so old incidents no longer count against the budget; nothing is deleted.
    fresh: bool = False

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


def archive_lab_data(data_dir: Path, now: datetime | None = None) -> Path | None:
    """Move everything in ``data_dir`` but its lock and earlier archives to ``<data-dir>/archive/<UTC time>/``;
    return that directory (None when there was nothing to move). The caller holds the lab lock."""
    data_dir = Path(data_dir)
    keep = {LOCK_FILE, ARCHIVE_DIR}
    entries = sorted(p for p in data_dir.iterdir() if p.name not in keep) if data_dir.is_dir() else []
    if not entries:
        return None
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    target = data_dir / ARCHIVE_DIR / stamp
    n = 1
    while target.exists():  # two resets within one second
        n += 1
        target = data_dir / ARCHIVE_DIR / f"{stamp}-{n}"
    target.mkdir(parents=True, mode=0o700)
    for entry in entries:
        entry.rename(target / entry.name)
    return target


def _lock_data_dir(data_dir: Path) -> int:
    """An exclusive lock on ``<data-dir>/lab.lock`` (its fd); LabAlreadyRunning when a lab holds it."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        info = read_lab_file(data_dir) or {}
        where = f" (pid {info['pid']}, dashboard {info.get('dashboard_url')})" if info.get("pid") else ""
        raise LabAlreadyRunning(
            f"a lab is already running on {data_dir}{where}; stop it (Ctrl-C in its terminal) "
            f"or start this one with another --data-dir and other ports") from None
    return fd


def reset_data_dir(data_dir: Path) -> Path | None:
    """``obslab reset``: archive a stopped lab's data (refused while a lab runs on it)."""
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        return None
    fd = _lock_data_dir(data_dir)
    try:
        return archive_lab_data(data_dir)
    finally:
        os.close(fd)


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
    spec: str = ""
    spec_source: str = ""
    archived_to: str | None = None
    extra: dict = field(default_factory=dict)


class Lab:
    """Start, watch and stop every process of the embedded lab."""

    def __init__(self, config: LabConfig, say: Callable[[str], None] = print):
        self.config = config
        self.say = say
        self.data_dir = Path(config.data_dir).resolve()
        spec_path, self.spec_source = resolve_spec_path(config.spec_path)
        self.spec_path = spec_path.resolve()
        self.started_at: datetime | None = None
        # Where --fresh moved the previous data (None: not asked, or nothing to move).
        self.archived_to: Path | None = None
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
            raise LabError(f"{self.spec_path}: SLO spec not found (check --spec; without it the lab uses ./slo.yaml "
                           "or the spec the package ships)")
        make_data_dir(self.data_dir)
        self._acquire_lock()
        try:
            self._check_ports()
            if cfg.fresh:
                self.archived_to = archive_lab_data(self.data_dir)
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
                admin_token_file=str(self.admin_token_file), data_dir=str(self.data_dir),
                spec=str(self.spec_path), spec_source=self.spec_source,
                archived_to=str(self.archived_to) if self.archived_to else None)
            self._write_lab_file()
            return self.urls
        except BaseException:
            self.stop()
            raise

    def _acquire_lock(self) -> None:
        self._lock_fd = _lock_data_dir(self.data_dir)

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
        # The Prometheus alerts link is the dashboard's own (/api/info): its path depends on Prometheus's version.
        if cfg.locust_ui:
            links.append(("Locust", f"http://{HOST}:{cfg.port_locust_ui}"))
        dash = DashboardConfig(
            data_dir=self.data_dir, spec_path=self.spec_path, profile=cfg.profile, api_url=api_url,
            prometheus_url=prometheus_url, link_prometheus_alerts=True, admin_token_file=self.admin_token_file,
            links=tuple(links),
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
