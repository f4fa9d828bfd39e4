"""Run the creator load: Locust headless as a subprocess, bounded in time, with live progress.

``run_load(options)`` checks the service answers ``/healthz``, starts
``locust -f <packaged locustfile> --headless --run-time ... --csv ...`` with the settings as
``OBSLAB_LOAD_*`` environment variables (the same way docker compose configures it), reports
progress from the file the locustfile rewrites every second, and when Locust is done merges the
per-process client records into ``<out>/client.jsonl`` next to Locust's CSV statistics.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlparse

import requests

from loadtests import LOCUSTFILE
from loadtests import settings as load_settings
from loadtests.profiles import SHAPES, ShapeError, parse_phases
from loadtests.record import read_attempts
from loadtests.retry import RETRY_POLICIES

__all__ = [
    "LoadError",
    "LoadOptions",
    "LoadProgress",
    "LoadResult",
    "RequestStats",
    "check_host",
    "preflight",
    "locust_argv",
    "locust_command",
    "locust_environment",
    "read_request_stats",
    "run_load",
    "CLIENT_RECORD",
    "CSV_PREFIX",
]

CLIENT_RECORD = "client.jsonl"
CSV_PREFIX = "locust"
PROGRESS_FILE = "progress.json"
LOG_FILE = "locust.log"
OUTPUT_FILE = "locust.out"
# How long Locust lets running publish flows finish after the run time is up.
STOP_TIMEOUT_S = 30
HEALTH_TIMEOUT_S = 3.0
# Locust's own shutdown (CSV flush, summary) after the stop timeout, before we give up on it.
SHUTDOWN_GRACE_S = 60


class LoadError(ValueError):
    """A load run that cannot start or did not finish; one line that says why."""


@dataclass(frozen=True)
class LoadOptions:
    host: str = "http://127.0.0.1:8000"
    users: int = 20
    spawn_rate: float = 10.0
    duration_s: float = 60.0
    shape: str = "steady"
    retry_policy: str = "backoff"
    cancel_rate: float = 0.02
    seed: int = 1
    out_dir: Path = Path("load-out")
    processes: int = 1
    # Any other OBSLAB_LOAD_* setting (think time, pace, phases, mix...), by variable name.
    settings: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadProgress:
    elapsed_s: float
    duration_s: float
    users: int
    requests: int
    failures: int
    requests_per_s: float
    failures_per_s: float


@dataclass(frozen=True)
class RequestStats:
    """One row of Locust's ``_stats.csv``: a request name (or Aggregated), response times in ms."""

    name: str
    requests: int
    failures: int
    median_ms: float
    p95_ms: float
    p99_ms: float
    requests_per_s: float


@dataclass(frozen=True)
class LoadResult:
    out_dir: Path
    client_record: Path
    run_id: str
    duration_s: float
    wall_s: float
    attempts_by_outcome: Mapping[str, int]
    requests: tuple[RequestStats, ...]
    locust_cpu_s: float

    @property
    def attempts(self) -> int:
        return sum(self.attempts_by_outcome.values())

    @property
    def total(self) -> RequestStats:
        return next(r for r in self.requests if r.name == "Aggregated")


def _validate(options: LoadOptions) -> None:
    parsed = urlparse(options.host)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise LoadError(f"--host must be an http(s) URL like http://127.0.0.1:8000, got {options.host!r}")
    if options.users < 1:
        raise LoadError(f"--users must be at least 1, got {options.users}")
    if options.spawn_rate <= 0:
        raise LoadError(f"--spawn-rate must be positive, got {options.spawn_rate}")
    if options.duration_s < 1:
        raise LoadError(f"--duration must be at least 1s, got {options.duration_s:g}s")
    if options.shape not in SHAPES:
        raise LoadError(f"--shape must be one of {', '.join(SHAPES)}, got {options.shape!r}")
    if options.retry_policy not in RETRY_POLICIES:
        raise LoadError(f"--retry-policy must be one of {', '.join(RETRY_POLICIES)}, got {options.retry_policy!r}")
    if not 0 <= options.cancel_rate <= 1:
        raise LoadError(f"--cancel-rate must be between 0 and 1, got {options.cancel_rate:g}")
    if options.processes < 1:
        raise LoadError(f"--processes must be at least 1, got {options.processes}")
    unknown = set(options.settings) - set(load_settings.ENV_VARS)
    if unknown:
        raise LoadError(f"unknown load setting(s) {', '.join(sorted(unknown))}; see docs/load.md")


def run_duration_s(options: LoadOptions) -> float:
    """The run time Locust gets: --duration, or the phases' total for the phased shape."""
    if options.shape == "phased":
        try:
            return sum(p.duration_s for p in parse_phases(options.settings.get(load_settings.PHASES, "")))
        except ShapeError as e:
            raise LoadError(f"{load_settings.PHASES}: {e}") from None
    return options.duration_s


def locust_environment(options: LoadOptions, run_id: str, record_dir: Path, progress_file: Path,
                       base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the Locust process: ``base`` (os.environ, so exported ``OBSLAB_LOAD_*``
    settings apply) with the options and ``settings`` on top; the run ID, record directory and
    progress file are always this run's own."""
    env = dict(os.environ if base is None else base)
    env.update({
        load_settings.SEED: str(options.seed),
        load_settings.RUN_ID: run_id,
        load_settings.RETRY_POLICY: options.retry_policy,
        load_settings.CANCEL_RATE: repr(options.cancel_rate),
        load_settings.SHAPE: options.shape,
        load_settings.RECORD_DIR: str(record_dir),
        load_settings.PROGRESS_FILE: str(progress_file),
    })
    env.update(options.settings)
    # Locust imports the locustfile by path; the project must be importable from any working dir.
    project_root = str(Path(LOCUSTFILE).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [project_root, env.get("PYTHONPATH", "")]))
    return env


def locust_argv(host: str, users: int, *, locustfile: str | Path = LOCUSTFILE, spawn_rate: float | None = None,
                run_time_s: float | None = None, stop_timeout_s: float | None = None,
                web_ui: tuple[str, int] | None = None, csv_prefix: Path | None = None, logfile: Path | None = None,
                loglevel: str = "WARNING", processes: int = 1) -> list[str]:
    """The one Locust command line of obslab (``obslab load``, the lab, drills): headless unless ``web_ui``
    (host, port) is given; bounded by ``run_time_s`` unless None (the caller stops it)."""
    argv = [sys.executable, "-m", "locust", "-f", str(locustfile), "--host", host.rstrip("/"),
            "--users", str(users), "--spawn-rate", f"{spawn_rate if spawn_rate is not None else max(1, users):g}"]
    if run_time_s is not None:
        argv += ["--run-time", f"{max(1, round(run_time_s))}s"]
    if stop_timeout_s is not None:
        argv += ["--stop-timeout", f"{stop_timeout_s:g}"]
    if csv_prefix is not None:
        argv += ["--csv", str(csv_prefix)]
    # A failed request is data here (faults are injected on purpose), not a failed run.
    argv += ["--exit-code-on-error", "0", "--loglevel", loglevel]
    if logfile is not None:
        argv += ["--logfile", str(logfile)]
    if processes > 1:
        argv += ["--processes", str(processes)]
    if web_ui is None:
        return argv + ["--headless", "--only-summary"]
    return argv + ["--web-host", web_ui[0], "--web-port", str(web_ui[1]), "--autostart"]


def locust_command(options: LoadOptions, out_dir: Path) -> list[str]:
    """``obslab load``'s Locust: headless, bounded by the options' run time, CSV statistics in ``out_dir``."""
    return locust_argv(options.host, options.users, spawn_rate=options.spawn_rate,
                       run_time_s=run_duration_s(options), stop_timeout_s=STOP_TIMEOUT_S,
                       csv_prefix=out_dir / CSV_PREFIX, logfile=out_dir / LOG_FILE, loglevel="INFO",
                       processes=options.processes)


def check_host(host: str) -> None:
    """Raise LoadError unless ``GET <host>/healthz`` answers 200."""
    url = host.rstrip("/") + "/healthz"
    try:
        response = requests.get(url, timeout=HEALTH_TIMEOUT_S)
    except requests.ConnectionError:
        raise LoadError(f"cannot reach the service at {host}: connection refused or unreachable (GET {url})") from None
    except requests.Timeout:
        raise LoadError(f"the service at {host} did not answer GET {url} within {HEALTH_TIMEOUT_S:g}s") from None
    except requests.RequestException as e:
        raise LoadError(f"cannot reach the service at {host}: {type(e).__name__} (GET {url})") from None
    if response.status_code != 200:
        raise LoadError(f"the service at {host} is not healthy: GET {url} answered HTTP {response.status_code}")


def _read_progress(path: Path, started: float, duration_s: float) -> LoadProgress | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return LoadProgress(
        elapsed_s=min(time.monotonic() - started, duration_s), duration_s=duration_s, users=int(data["users"]),
        requests=int(data["requests"]), failures=int(data["failures"]),
        requests_per_s=float(data["requests_per_s"]), failures_per_s=float(data["failures_per_s"]))


def read_request_stats(path: Path) -> tuple[RequestStats, ...]:
    """Rows of Locust's ``<prefix>_stats.csv``."""
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            rows.append(RequestStats(
                name=row["Name"],
                requests=int(row["Request Count"]), failures=int(row["Failure Count"]),
                median_ms=float(row["50%"] if row["50%"] != "N/A" else 0),
                p95_ms=float(row["95%"] if row["95%"] != "N/A" else 0),
                p99_ms=float(row["99%"] if row["99%"] != "N/A" else 0),
                requests_per_s=float(row["Requests/s"]),
            ))
    return tuple(rows)


def _merge_records(parts: Path, target: Path) -> Counter:
    attempts = read_attempts(parts) if parts.exists() else []
    with target.open("w") as f:
        for attempt in attempts:
            f.write(attempt.to_line())
    for part in parts.glob("*.jsonl") if parts.exists() else []:
        part.unlink()
    if parts.exists():
        parts.rmdir()
    return Counter(a.outcome for a in attempts)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stop(process: subprocess.Popen) -> None:
    """Stop Locust and its worker processes (its own process group), politely then firmly."""
    for sig, wait_s in ((signal.SIGINT, 15), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def preflight(options: LoadOptions) -> None:
    """Everything that can be wrong before Locust starts: options, settings, the host. LoadError."""
    _validate(options)
    env = locust_environment(options, "check", Path(options.out_dir), Path(options.out_dir))
    try:
        load_settings.from_env(env)  # the locustfile would refuse them too, but later and less clearly
    except load_settings.SettingsError as e:
        raise LoadError(str(e)) from None
    run_duration_s(options)
    check_host(options.host)


def run_load(options: LoadOptions, on_progress: Callable[[LoadProgress], None] | None = None,
             poll_s: float = 0.5) -> LoadResult:
    """Run one bounded load test and return what it did; raises LoadError on bad options or host."""
    preflight(options)
    out_dir = Path(options.out_dir)
    run_id = options.settings.get(load_settings.RUN_ID) or secrets.token_hex(4)
    parts = out_dir / "client-parts"
    progress_file = out_dir / PROGRESS_FILE
    env = locust_environment(options, run_id, parts, progress_file)
    duration_s = run_duration_s(options)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LoadError(f"cannot create --out directory {out_dir}: {e.strerror}") from None
    for stale in [progress_file, out_dir / CLIENT_RECORD, *parts.glob("*.jsonl")]:
        stale.unlink(missing_ok=True)

    cpu_before = _children_cpu_s()
    started = time.monotonic()
    # Output to files, not pipes: a pipe nobody reads during the run would block Locust when full.
    with (out_dir / OUTPUT_FILE).open("wb") as output:
        process = subprocess.Popen(locust_command(options, out_dir), env=env, stdin=subprocess.DEVNULL,
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = started + duration_s + STOP_TIMEOUT_S + SHUTDOWN_GRACE_S
    try:
        while process.poll() is None:
            if time.monotonic() > deadline:
                raise LoadError(f"Locust did not stop within {deadline - started:.0f}s; stopped it "
                                f"(see {out_dir / LOG_FILE})")
            if on_progress:
                progress = _read_progress(progress_file, started, duration_s)
                if progress:
                    on_progress(progress)
            time.sleep(poll_s)
    finally:
        if process.poll() is None:
            _stop(process)
    wall_s = time.monotonic() - started
    if process.returncode != 0:
        output_text = (out_dir / OUTPUT_FILE).read_text(errors="replace")
        last = next((line for line in reversed(output_text.strip().splitlines()) if line.strip()), "no output")
        raise LoadError(f"Locust exited with code {process.returncode}: {last.strip()} "
                        f"(output: {out_dir / OUTPUT_FILE}, log: {out_dir / LOG_FILE})")
    outcomes = _merge_records(parts, out_dir / CLIENT_RECORD)
    stats_file = out_dir / f"{CSV_PREFIX}_stats.csv"
    if not stats_file.exists():
        raise LoadError(f"Locust wrote no statistics ({stats_file} missing; log: {out_dir / LOG_FILE})")
    return LoadResult(
        out_dir=out_dir,
        client_record=out_dir / CLIENT_RECORD,
        run_id=run_id,
        duration_s=duration_s,
        wall_s=wall_s,
        attempts_by_outcome=dict(outcomes),
        requests=read_request_stats(stats_file),
        locust_cpu_s=_children_cpu_s() - cpu_before,
    )
