"""Start and stop the lab's service processes: the publish API and the transcoder, each under gunicorn.

The command lines here are the only ones: ``obslab serve``, the tests' ``service``
fixture, the benchmarks and the Dockerfile/compose (``api_command`` /
``transcoder_command`` return argv + env) all use them. Each process runs in its own
process group and is stopped as a group (SIGTERM, then SIGKILL), so nothing is left
behind even when a test fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Mapping

import requests

from contract.env import (ENV_ADMIN_TOKEN, ENV_DATA_DIR, ENV_INSTRUMENTATION, ENV_PROMETHEUS_MULTIPROC_DIR,
                          ENV_TRACE_SAMPLE_RATIO, ENV_TRANSCODER_URL)
from contract.layout import ADMIN_TOKEN_FILE, make_data_dir, read_admin_token_file, write_admin_token_file
from toolkit.lab.procgroup import die_with_parent

__all__ = [
    "CommandLine",
    "api_command",
    "transcoder_command",
    "free_port",
    "free_ports",
    "check_port_free",
    "ensure_admin_token",
    "ManagedProcess",
    "ServiceProcesses",
    "ServiceStartError",
    "DEFAULT_API_WORKERS",
    "DEFAULT_API_THREADS",
    "DEFAULT_TRANSCODER_THREADS",
    "run_until_stopped",
]

DEFAULT_API_WORKERS = 2
DEFAULT_API_THREADS = 4
DEFAULT_TRANSCODER_THREADS = 16
API_APP = "demo_service.app:create_app()"
TRANSCODER_APP = "demo_service.transcoder:create_transcoder_app()"
MULTIPROC_SUBDIR = "prometheus-multiproc"
# A service process that dies is restarted, unless it died this often within the window: then it
# is crash-looping and restarting it again would only hide that.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0


class ServiceStartError(RuntimeError):
    """A service process exited or did not become healthy in time (the message names its log)."""


@dataclass(frozen=True)
class CommandLine:
    """What to exec: argv plus the environment variables obslab sets (on top of the inherited ones)."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    # Variables that must NOT be inherited (e.g. the transcoder is single-process: no multiproc dir).
    unset_env: tuple[str, ...] = ()

    def full_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        for name in self.unset_env:
            env.pop(name, None)
        env.update(self.env)
        return env


def _gunicorn(bind: str, workers: int, threads: int, app: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    return (sys.executable, "-m", "gunicorn",
            "--bind", bind,
            "--workers", str(workers),
            "--worker-class", "gthread",
            "--threads", str(threads),
            "--no-control-socket",
            "--graceful-timeout", "5",
            "--timeout", "60",
            *extra,
            app)


def api_command(*, host: str, port: int, data_dir: str | Path, transcoder_url: str, admin_token: str | None,
                workers: int = DEFAULT_API_WORKERS, threads: int = DEFAULT_API_THREADS,
                extra_env: Mapping[str, str] | None = None, reuse_port: bool = False) -> CommandLine:
    """The publish API: gunicorn, several workers sharing SQLite state, prometheus multiprocess mode.

    ``reuse_port``: each worker listens on its own SO_REUSEPORT socket and the kernel spreads connections over
    them by address hash (the overhead benchmark's choice). Off by default: with one shared socket a worker's
    death loses no queued connection, which the crash tests rely on (docs/service.md, the accept race).
    """
    data_dir = Path(data_dir)
    env = {
        ENV_DATA_DIR: str(data_dir),
        ENV_TRANSCODER_URL: transcoder_url,
        ENV_PROMETHEUS_MULTIPROC_DIR: str(data_dir / MULTIPROC_SUBDIR),
    }
    if admin_token:
        env[ENV_ADMIN_TOKEN] = admin_token
    env.update(extra_env or {})
    argv = _gunicorn(f"{host}:{port}", workers, threads, API_APP,
                     (*(("--reuse-port",) if reuse_port else ()), "--config", "python:demo_service.gunicorn_conf"))
    return CommandLine(argv=argv, env=env)


def transcoder_command(*, host: str, port: int, data_dir: str | Path, threads: int = DEFAULT_TRANSCODER_THREADS,
                       extra_env: Mapping[str, str] | None = None) -> CommandLine:
    """The transcoder: one gunicorn worker with threads (its work is a sleep), reading faults from DATA_DIR."""
    env = {ENV_DATA_DIR: str(Path(data_dir))}
    env.update(extra_env or {})
    return CommandLine(argv=_gunicorn(f"{host}:{port}", 1, threads, TRANSCODER_APP), env=env,
                       unset_env=(ENV_PROMETHEUS_MULTIPROC_DIR,))


def check_port_free(host: str, port: int) -> None:
    """Raise ServiceStartError naming host:port when something already listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ServiceStartError(f"cannot listen on {host}:{port}: {e.strerror} ({_holder_of(port)})") from None


def _holder_of(port: int) -> str:
    """Who listens on or uses ``port``, as far as this user may see: for the error message."""
    try:
        import psutil

        for c in psutil.net_connections("tcp"):
            if c.laddr and c.laddr.port == port and c.pid:
                return f"held by pid {c.pid}: {' '.join(psutil.Process(c.pid).cmdline()[:3])} ({c.status})"
    except Exception:  # noqa: BLE001 - only a hint; no permission, or the process just went away
        pass
    return "is another obslab running?"


# Ports for services we start are drawn below Linux's ephemeral range (32768-60999 by
# default): a port the kernel hands out with bind(0) can be taken by any outgoing
# connection (Locust's, say) before our server binds it, which broke parallel starts.
_SERVICE_PORTS = range(20000, 32000)


# Ports this process has handed out: two services started at once in one process (threads of
# a test, a bench) must not both get a port that is still free because neither has bound it yet.
_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """n distinct ports on host, outside the ephemeral range, that were free a moment ago
    and that this process has not handed out before."""
    with _handed_out_lock:
        ports = _pick_free_ports(n, host)
        _handed_out.update(ports)
    return ports


def _pick_free_ports(n: int, host: str) -> list[int]:
    rng = secrets.SystemRandom()
    ports: list[int] = []
    for _ in range(50 * n):
        if len(ports) == n:
            return ports
        port = rng.choice(_SERVICE_PORTS)
        if port in ports or port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        ports.append(port)
    if len(ports) < n:
        raise ServiceStartError(f"found only {len(ports)} of {n} free ports on {host} in {_SERVICE_PORTS.start}-{_SERVICE_PORTS.stop - 1}")
    return ports


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def ensure_admin_token(data_dir: str | Path) -> tuple[str, Path]:
    """The admin token kept in DATA_DIR/admin-token (mode 0600), created when missing."""
    path = make_data_dir(data_dir) / ADMIN_TOKEN_FILE
    token = read_admin_token_file(path)  # tightens a loose mode to 0600
    if token:
        return token, path
    token = secrets.token_urlsafe(24)
    write_admin_token_file(path, token)
    return token, path


def _wait_for_port_closed(host: str, port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) != 0:
                return
        time.sleep(0.05)


@dataclass
class ManagedProcess:
    """One service process in its own process group, with its output in a log file."""

    name: str
    command: CommandLine
    log_path: Path
    health_url: str
    proc: subprocess.Popen | None = None
    _log: IO | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        # Own session, so a stop reaches the whole group; and SIGTERM from the kernel if whoever started
        # it dies without stopping it (SIGKILL, a crash), so gunicorn is never orphaned.
        self.proc = subprocess.Popen(list(self.command.argv), env=self.command.full_env(), stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=die_with_parent)

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceStartError(f"{self.name} exited with code {self.proc.returncode} during start; "
                                        f"see {self.log_path}\nlast log lines:\n{self.log_tail()}")
            try:
                if requests.get(self.health_url, timeout=1.0).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise ServiceStartError(f"{self.name} not healthy at {self.health_url} after {timeout_s:.0f}s; "
                                f"see {self.log_path}\nlast log lines:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the process group (gunicorn stops its workers gracefully), SIGKILL what is left."""
        if self.proc is None:
            return
        try:
            pgid = os.getpgid(self.proc.pid)
        except ProcessLookupError:
            pgid = None
        if pgid is not None:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
            # Workers may outlive a killed master; the group catches them all.
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None


class ServiceProcesses:
    """Publish API + transcoder on loopback ports, started together, stopped together.

    ``with ServiceProcesses(data_dir) as svc:`` gives ``svc.base_url``, ``svc.transcoder_url``,
    ``svc.admin_token``, ``svc.data_dir``, ``svc.events_dir``. Ports are free ones unless given.
    """

    def __init__(self, data_dir: str | Path, *, host: str = "127.0.0.1", port: int | None = None,
                 transcoder_port: int | None = None, workers: int = DEFAULT_API_WORKERS,
                 threads: int = DEFAULT_API_THREADS, admin_token: str | None = None,
                 instrumentation: str | None = None, trace_sample_ratio: float | None = None,
                 extra_env: Mapping[str, str] | None = None, start_timeout_s: float = 60.0,
                 only: str | None = None, transcoder_url: str | None = None, reuse_port: bool = False):
        if only not in (None, "api", "transcoder"):
            raise ValueError(f"only must be 'api' or 'transcoder', got {only!r}")
        self.only = only  # one component (a container runs one); None = both
        self._external_transcoder_url = transcoder_url
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        auto = free_ports(2, host)
        self._ports_given = port is not None or transcoder_port is not None
        self.port = port or auto[0]
        self.transcoder_port = transcoder_port or auto[1]
        self.workers = workers
        self.threads = threads
        self.reuse_port = reuse_port
        self.admin_token = admin_token or os.environ.get(ENV_ADMIN_TOKEN) or ensure_admin_token(self.data_dir)[0]
        self.start_timeout_s = start_timeout_s
        env = dict(extra_env or {})
        if instrumentation is not None:
            env[ENV_INSTRUMENTATION] = instrumentation
        if trace_sample_ratio is not None:
            env[ENV_TRACE_SAMPLE_RATIO] = str(trace_sample_ratio)
        self.extra_env = env
        self.processes: list[ManagedProcess] = []
        self._restarts: dict[str, deque[float]] = {}

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def transcoder_url(self) -> str:
        return self._external_transcoder_url or f"http://{self.host}:{self.transcoder_port}"

    @property
    def events_dir(self) -> Path:
        return self.data_dir / "events"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    def commands(self) -> tuple[CommandLine, CommandLine]:
        """(transcoder, api) command lines, in start order."""
        transcoder = transcoder_command(host=self.host, port=self.transcoder_port, data_dir=self.data_dir,
                                        extra_env=self.extra_env)
        api = api_command(host=self.host, port=self.port, data_dir=self.data_dir, transcoder_url=self.transcoder_url,
                          admin_token=self.admin_token, workers=self.workers, threads=self.threads,
                          extra_env=self.extra_env, reuse_port=self.reuse_port)
        return transcoder, api

    def start(self) -> "ServiceProcesses":
        make_data_dir(self.data_dir)
        multiproc = self.data_dir / MULTIPROC_SUBDIR
        shutil.rmtree(multiproc, ignore_errors=True)  # stale values of a previous run would be summed in
        multiproc.mkdir(parents=True)
        for attempt in range(3):
            transcoder, api = self.commands()
            wanted = [("transcoder", transcoder, f"{self.transcoder_url}/healthz", self.transcoder_port),
                      ("publish-api", api, f"{self.base_url}/healthz", self.port)]
            if self.only == "api":
                wanted = wanted[1:]
            elif self.only == "transcoder":
                wanted = wanted[:1]
            try:
                for _, _, _, port in wanted:
                    check_port_free(self.host, port)
                break
            except ServiceStartError:
                if self._ports_given or attempt == 2:
                    raise
                # Ports we picked were free a moment ago; another process took one since. Pick again.
                self.port, self.transcoder_port = free_ports(2, self.host)
        try:
            for name, cmd, url, _ in wanted:
                proc = ManagedProcess(name, cmd, self.logs_dir / f"{name}.log", url)
                self.processes.append(proc)
                proc.start()
                proc.wait_healthy(self.start_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        for proc in self.processes:
            _wait_for_port_closed(self.host, self.port if proc.name == "publish-api" else self.transcoder_port,
                                  time.monotonic() + 2.0)
        self.processes.clear()

    def supervise(self, say: Callable[[str], None]) -> str | None:
        """Restart every service process that has died (a gunicorn master SIGKILLed, say): without
        its transcoder the API fails every publish, and nothing else would bring it back. Returns
        None when all run (again), or why it gave up: a restart failed, or a crash loop."""
        for proc in self.processes:
            if proc.proc is None or proc.proc.poll() is None:
                continue
            code = proc.proc.returncode
            recent = self._restarts.setdefault(proc.name, deque())
            now = time.monotonic()
            while recent and now - recent[0] > RESTART_WINDOW_S:
                recent.popleft()
            if len(recent) >= MAX_RESTARTS:
                return (f"{proc.name} exited with code {code}, its {MAX_RESTARTS + 1}th exit within "
                        f"{RESTART_WINDOW_S:.0f}s: not restarting a crash loop (see {proc.log_path})")
            recent.append(now)
            say(f"{proc.name} exited with code {code}; restarting it (see {proc.log_path})")
            try:
                self._restart(proc)
            except ServiceStartError as e:
                return f"{proc.name} exited with code {code} and did not restart: {str(e).splitlines()[0]}"
            say(f"{proc.name} restarted (pid {proc.proc.pid})")
        return None

    def _restart(self, proc: ManagedProcess) -> None:
        # The dead master's workers may still hold the port: stopping its process group ends them.
        proc.stop()
        port = self.port if proc.name == "publish-api" else self.transcoder_port
        _wait_for_port_closed(self.host, port, time.monotonic() + 5.0)
        with open(proc.log_path, "ab") as log:
            log.write(f"--- obslab: {proc.name} died; restarting it ---\n".encode())
        proc.start()
        proc.wait_healthy(self.start_timeout_s)

    def running(self) -> bool:
        return bool(self.processes) and all(p.proc is not None and p.proc.poll() is None for p in self.processes)

    def __enter__(self) -> "ServiceProcesses":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run_until_stopped(processes: ServiceProcesses, poll_s: float = 0.5,
                      say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)) -> str:
    """Block until SIGINT/SIGTERM/SIGHUP, restarting a service process that dies (and saying so
    with ``say``) until one cannot be restarted; returns why it stopped. The caller stops the processes."""
    reason: list[str] = []

    def _signalled(signum, _frame):
        reason.append(signal.Signals(signum).name)

    # SIGHUP: the terminal was closed; the services run in their own sessions and would not get it.
    previous = {s: signal.signal(s, _signalled) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while not reason:
            gave_up = processes.supervise(say)
            if gave_up:
                return gave_up
            time.sleep(poll_s)
        return reason[0]
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
