"""``obslab bench lab``: footprint and start-up time of the embedded lab, measured on a real run.

Starts ``obslab lab`` on free ports with a fresh data directory, measures the time from launch to
the first SLI shown on the dashboard page (headless Chromium when Playwright is installed, else
the page's JSON), lets load run, samples the RSS summed over the lab's whole process tree, stops
the lab and checks nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from toolkit.lab.processes import free_ports
import requests

__all__ = ["LabBenchResult", "free_ports", "run_lab_bench", "performance_section", "CHROMIUM_ARGS",
           "FreshCloneResult", "run_fresh_clone_bench", "fresh_clone_section"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RSS_TARGET_MB = 600
FIRST_SLI_TARGET_S = 20


def tree_rss_bytes(pid: int) -> tuple[int, int]:
    """(RSS summed over pid and all its descendants, number of processes)."""
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total, len(procs)


@dataclass(frozen=True)
class LabBenchResult:
    users: int
    prometheus: bool
    first_sli_s: float
    first_sli_how: str
    rss_samples_mb: tuple[float, ...]
    processes: int
    settle_s: float
    leftover_pids: tuple[int, ...]
    # 1-minute load average of the machine at start and end: a shared 2-core machine is noisy.
    load_avg: tuple[float, float] = (0.0, 0.0)
    # Seconds from launch until every process was up (lab.json written) and until the first
    # terminal event was in the event log: where the time to the first SLI went.
    all_started_s: float | None = None
    first_outcome_s: float | None = None

    @property
    def rss_max_mb(self) -> float:
        return max(self.rss_samples_mb)

    @property
    def rss_median_mb(self) -> float:
        xs = sorted(self.rss_samples_mb)
        return xs[len(xs) // 2]


def lab_command(data_dir: Path, ports: dict[str, int], users: int, prometheus: bool, spec: Path) -> list[str]:
    argv = [sys.executable, "-c", "from toolkit.cli import main; main()", "lab", "--data-dir", str(data_dir), "--spec", str(spec),
            "--port", str(ports["api"]), "--port-transcoder", str(ports["transcoder"]),
            "--port-web", str(ports["web"]), "--port-prometheus", str(ports["prometheus"]),
            "--port-locust", str(ports["locust"]), "--users", str(users)]
    if not prometheus:
        argv.append("--no-prometheus")
    return argv


def _first_sli_in_browser(url: str, deadline: float) -> bool:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            while time.monotonic() < deadline:
                try:
                    page.goto(url, timeout=5000)
                    break
                except Exception:  # noqa: BLE001 - the dashboard is not listening yet
                    time.sleep(0.2)
            # The success tile shows a percentage once one attempt has an outcome.
            page.wait_for_function(
                "() => /%/.test(document.querySelector('#tile-success .value').textContent)",
                timeout=max(1, deadline - time.monotonic()) * 1000, polling=200)
            return True
        finally:
            browser.close()


def _first_sli_in_json(url: str, deadline: float, proc: subprocess.Popen | None = None) -> bool:
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        try:
            body = requests.get(url + "api/snapshot", timeout=2).json()
            if body["success"]["value"] is not None:
                return True
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(0.2)
    return False


def run_lab_bench(spec: Path, users: int = 6, settle_s: float = 60.0, samples: int = 10,
                  prometheus: bool = True) -> LabBenchResult:
    ports = dict(zip(("api", "transcoder", "web", "prometheus", "locust"), free_ports(5)))
    with tempfile.TemporaryDirectory(prefix="obslab-bench-lab-") as tmp:
        data_dir = Path(tmp) / "data"
        log = open(Path(tmp) / "lab.log", "wb")
        load_start = os.getloadavg()[0]
        t0 = time.monotonic()
        proc = subprocess.Popen(lab_command(data_dir, ports, users, prometheus, spec), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        url = f"http://127.0.0.1:{ports['web']}/"
        marks: dict[str, float] = {}
        watcher = threading.Thread(target=_watch_start, args=(data_dir, t0, marks), daemon=True)
        watcher.start()
        try:
            deadline = t0 + 120
            try:
                import playwright  # noqa: F401

                how = "headless Chromium: success tile shows a %"
                ok = _first_sli_in_browser(url, deadline)
            except ImportError:
                how = "dashboard JSON (/api/snapshot): success rate not null (Playwright not installed)"
                ok = _first_sli_in_json(url, deadline)
            first_sli_s = time.monotonic() - t0
            if not ok or proc.poll() is not None:
                raise RuntimeError(f"the lab showed no SLI within 120 s; its log: {Path(tmp) / 'lab.log'}")
            rss, nproc = [], 0
            interval = settle_s / samples
            for _ in range(samples):
                time.sleep(interval)
                total, nproc = tree_rss_bytes(proc.pid)
                rss.append(total / 2**20)
            pids = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            log.close()
        leftovers = tuple(p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE)
    return LabBenchResult(users, prometheus, first_sli_s, how, tuple(rss), nproc, settle_s, leftovers,
                          (load_start, os.getloadavg()[0]), marks.get("started"), marks.get("first_outcome"))


def _watch_start(data_dir: Path, t0: float, marks: dict[str, float], timeout_s: float = 120.0) -> None:
    events = data_dir / "data" / "events" / "events.jsonl"
    while time.monotonic() - t0 < timeout_s and len(marks) < 2:
        now = time.monotonic() - t0
        if "started" not in marks and (data_dir / "lab.json").exists():
            marks["started"] = now
        if "first_outcome" not in marks and events.exists():
            try:
                text = events.read_text(errors="replace")
            except OSError:
                text = ""
            if any(e in text for e in ('"publish_succeeded"', '"publish_failed"')):
                marks["first_outcome"] = now
        time.sleep(0.1)


def _secs(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f} s"


def performance_section(results: list[LabBenchResult], command: str) -> str:
    lines = [
        "## Embedded lab",
        "",
        f"Measured with `{command}` on this repository's reference machine (2 cores, shared). Each run starts",
        "`obslab lab` on free ports with a fresh data directory: service (2 API workers) + transcoder under",
        "gunicorn, Locust headless (steady creators + viewers), Prometheus when enabled, and the dashboard.",
        "",
        "| run | users | Prometheus | first SLI on the page | all processes up / first outcome event | RSS of the lab's process tree (max / median) | processes | left behind after stop | machine load (1-min avg, start → end) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(results, 1):
        lines.append(
            f"| {i} | {r.users} | {'yes' if r.prometheus else 'no'} | {r.first_sli_s:.1f} s "
            f"(target ≤ {FIRST_SLI_TARGET_S} s) | {_secs(r.all_started_s)} / {_secs(r.first_outcome_s)} "
            f"| {r.rss_max_mb:.0f} MB / {r.rss_median_mb:.0f} MB "
            f"(target ≤ {RSS_TARGET_MB} MB; {len(r.rss_samples_mb)} samples over {r.settle_s:.0f} s of load) "
            f"| {r.processes} | {len(r.leftover_pids)} | {r.load_avg[0]:.1f} → {r.load_avg[1]:.1f} |")
    how = results[0].first_sli_how if results else ""
    lines += [
        "",
        f"First SLI: wall time from launching `obslab lab` until {how}; the page's figures lag the clock by",
        "2 s (settle) and it polls every second until then. On a quiet machine most of it is process start-up",
        "(Python imports, gunicorn boot); the load average column shows how contended each run was.",
        "RSS: sum of resident set sizes",
        "of the `obslab lab` process and all its descendants (psutil), sampled after the first SLI; shared pages",
        "(e.g. gunicorn workers forked from one master) are counted once per process, so the sum overstates.",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- fresh clone
FRESH_CLONE_TARGET_S = 60
FRESH_CLONE_HEADING = "## First run from a fresh clone"
# Lines `make lab` prints (Makefile) and the lab's banner: where the time went.
_PHASE_MARKS = (("installing uv", "venv created"), ("installing obslab", "uv installed"),
                ("starting the lab", "dependencies installed"), ("obslab lab is running", "lab running"))


@dataclass(frozen=True)
class FreshCloneResult:
    first_sli_s: float
    phases: tuple[tuple[str, float], ...]  # (what was done, seconds from the start of `make lab`)
    installer: str  # "uv" or "pip"
    cold_cache: bool
    load_avg: tuple[float, float]
    commit: str
    log_tail: str


def run_fresh_clone_bench(repo: Path, timeout_s: float = 600.0, cold_cache: bool = True) -> FreshCloneResult:
    """Clone ``repo`` (its committed HEAD) to a temp dir, run ``make lab`` there with a fresh venv, and time
    it to the first SLI on the dashboard (its JSON); then stop the lab. ``cold_cache`` gives pip and uv empty
    caches, so every wheel is downloaded as on a new machine."""
    ports = dict(zip(("api", "transcoder", "web", "prometheus", "locust"), free_ports(5)))
    with tempfile.TemporaryDirectory(prefix="obslab-bench-clone-") as tmp:
        clone = Path(tmp) / "obslab"
        subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True, timeout=120)
        commit = subprocess.run(["git", "-C", str(clone), "rev-parse", "--short", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                      if not p.startswith(str(Path(sys.prefix))))
        if cold_cache:
            env.update(UV_CACHE_DIR=str(Path(tmp) / "uv-cache"), PIP_CACHE_DIR=str(Path(tmp) / "pip-cache"))
        lab_args = (f"--port {ports['api']} --port-transcoder {ports['transcoder']} --port-web {ports['web']} "
                    f"--port-prometheus {ports['prometheus']} --port-locust {ports['locust']}")
        load_start = os.getloadavg()[0]
        t0 = time.monotonic()
        proc = subprocess.Popen(["make", "lab", f"LAB_ARGS={lab_args}"], cwd=clone, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        lines: list[str] = []
        phases: list[tuple[str, float]] = []
        reader = threading.Thread(target=_read_phases, args=(proc, t0, lines, phases), daemon=True)
        reader.start()
        try:
            ok = _first_sli_in_json(f"http://127.0.0.1:{ports['web']}/", t0 + timeout_s, proc)
            first_sli_s = time.monotonic() - t0
            if not ok:
                raise RuntimeError(f"`make lab` in a fresh clone showed no SLI within {timeout_s:.0f} s; its output "
                                   "ends:\n" + "".join(lines[-15:]))
        finally:
            try:
                os.killpg(proc.pid, signal.SIGINT)
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            except ProcessLookupError:
                pass
            reader.join(5)
        installer = "uv" if (clone / ".venv" / "bin" / "uv").exists() else "pip"
    return FreshCloneResult(first_sli_s, tuple(phases), installer, cold_cache, (load_start, os.getloadavg()[0]),
                            commit, "".join(lines[-15:]))


def _read_phases(proc: subprocess.Popen, t0: float, lines: list[str], phases: list[tuple[str, float]]) -> None:
    for raw in proc.stdout:
        line = raw.decode(errors="replace")
        lines.append(line)
        for marker, what in _PHASE_MARKS:
            if marker in line and what not in dict(phases):
                phases.append((what, time.monotonic() - t0))


def fresh_clone_section(r: FreshCloneResult, command: str) -> str:
    steps = " → ".join(f"{what} {t:.1f} s" for what, t in r.phases)
    return "\n".join([
        FRESH_CLONE_HEADING,
        "",
        f"Measured with `{command}` on this repository's reference machine (2 cores, shared with other work):",
        "a `git clone` of the committed HEAD into a temp directory, then `make lab` there with no virtualenv,",
        f"{'empty pip and uv caches (every wheel downloaded)' if r.cold_cache else 'the pip and uv caches as found'};"
        " the clock runs from `make lab` until the dashboard's JSON shows the first success rate.",
        "",
        "| commit | installer | first SLI on the dashboard | where the time went (from the start of `make lab`) | machine load (1-min avg, start → end) |",
        "|---|---|---|---|---|",
        f"| {r.commit} | {r.installer} | {r.first_sli_s:.1f} s (target ≤ {FRESH_CLONE_TARGET_S} s) | {steps} "
        f"| {r.load_avg[0]:.1f} → {r.load_avg[1]:.1f} |",
        "",
        "Measured once: the machine is shared, so the load average beside the figure says how contended it was.",
        "",
    ])
