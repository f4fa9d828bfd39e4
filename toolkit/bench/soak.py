"""Soak benchmark: does any process of the lab grow while the load stays flat?

Three parts, kept apart:
- ``ProcessSampler`` (I/O): every few seconds, RSS, open file descriptors and threads of
  every process under the given roots (gunicorn masters, their workers, Locust), by psutil.
- ``analyse`` (pure): per role and resource, an ordinary least-squares slope per hour over
  the samples after a warm-up, its p-value, and a verdict against a threshold.
- ``render_markdown`` (pure): the ``## Soak`` section of docs/performance.md.

Why a slope and a p-value: a 15-minute run cannot see a leak of a few MB per day, and
allocator noise makes single differences (last - first) lie both ways. A leak is reported
only when the fitted growth is both larger than the threshold and statistically clear;
growth above the threshold that the noise cannot separate from zero is "inconclusive".
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import psutil
from scipy import stats

__all__ = [
    "RESOURCES",
    "ProcessSample",
    "Thresholds",
    "Trend",
    "SoakReport",
    "ProcessSampler",
    "analyse",
    "render_markdown",
]

# resource → (unit shown, how to turn the raw sample into that unit)
RESOURCES: dict[str, str] = {"rss_mb": "MB", "open_fds": "fds", "threads": "threads"}


@dataclass(frozen=True)
class ProcessSample:
    t_s: float  # seconds since the soak started
    role: str  # e.g. "publish-api worker", "transcoder master", "load (locust)"
    pid: int
    rss_mb: float
    open_fds: int
    threads: int


@dataclass(frozen=True)
class Thresholds:
    """Growth per hour above which a significant trend is a leak."""

    rss_mb_per_hour: float = 50.0
    open_fds_per_hour: float = 20.0
    threads_per_hour: float = 10.0
    # Two-sided p-value of the slope below which the growth is told apart from noise.
    significance: float = 0.01
    # Fewer samples after warm-up than this: no verdict.
    min_samples: int = 10

    def limit(self, resource: str) -> float:
        return getattr(self, f"{resource}_per_hour")


@dataclass(frozen=True)
class Trend:
    role: str
    resource: str  # one of RESOURCES
    processes: int  # distinct pids seen in this role after warm-up
    samples: int  # sample ticks in the fit
    window_s: float  # time span of the fit
    first: float  # fitted value at the start of the window (role total)
    last: float  # fitted value at the end of the window
    peak: float  # largest observed value
    slope_per_hour: float
    p_value: float
    verdict: str  # "stable" | "settling" | "growing" | "inconclusive"
    # Slope over the second half of the window: a leak keeps its pace, warm-up growth flattens.
    late_slope_per_hour: float = math.nan

    @property
    def unit(self) -> str:
        return RESOURCES[self.resource]


@dataclass(frozen=True)
class SoakReport:
    duration_s: float
    warmup_s: float
    interval_s: float
    thresholds: Thresholds
    trends: tuple[Trend, ...]
    load: Mapping[str, float] = field(default_factory=dict)  # e.g. requests, failures, rps
    restarts: Mapping[str, int] = field(default_factory=dict)  # role → pids replaced during the run

    @property
    def verdict(self) -> str:
        verdicts = {t.verdict for t in self.trends}
        if "growing" in verdicts:
            return "growing"
        if not self.trends or verdicts == {"inconclusive"}:
            return "inconclusive"
        return "stable"

    @property
    def growing(self) -> tuple[Trend, ...]:
        return tuple(t for t in self.trends if t.verdict == "growing")


class ProcessSampler:
    """Samples every process under named root pids, including children born later.

    ``roots`` maps a service name to the pid of its root process (a gunicorn master or
    Locust); the root is sampled as ``"<name> master"`` and its descendants as
    ``"<name> worker"`` unless ``flat`` names it (then every process is ``"<name>"``).
    """

    def __init__(self, roots: Mapping[str, int], flat: Iterable[str] = (),
                 clock: Callable[[], float] = time.monotonic):
        self.roots = dict(roots)
        self.flat = set(flat)
        self._clock = clock
        self._t0 = clock()
        self._procs: dict[int, psutil.Process] = {}
        self.samples: list[ProcessSample] = []

    def _process(self, pid: int) -> psutil.Process:
        # Keep Process objects: psutil then notices a reused pid instead of mixing two processes.
        proc = self._procs.get(pid)
        if proc is None or not proc.is_running():
            proc = self._procs[pid] = psutil.Process(pid)
        return proc

    def sample(self) -> list[ProcessSample]:
        """One tick: every live process of every root. Processes that exit mid-sample are skipped."""
        t = self._clock() - self._t0
        tick = []
        for name, root_pid in self.roots.items():
            try:
                root = self._process(root_pid)
                members = [(root, name if name in self.flat else f"{name} master")]
                members += [(child, name if name in self.flat else f"{name} worker")
                            for child in root.children(recursive=True)]
            except psutil.Error:
                continue  # the root is gone: nothing of it to sample
            for proc, role in members:
                try:
                    with proc.oneshot():
                        tick.append(ProcessSample(t, role, proc.pid, proc.memory_info().rss / 1e6,
                                                  proc.num_fds(), proc.num_threads()))
                except psutil.Error:
                    continue
        self.samples.extend(tick)
        return tick

    def run(self, duration_s: float, interval_s: float, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Sample every ``interval_s`` until ``duration_s`` has passed (or ``should_stop``)."""
        deadline = self._t0 + duration_s
        next_tick = self._clock()
        while self._clock() < deadline and not should_stop():
            self.sample()
            next_tick += interval_s
            time.sleep(max(0.0, min(next_tick, deadline) - self._clock()))


def _role_series(samples: Sequence[ProcessSample], role: str, resource: str) -> tuple[list[float], list[float]]:
    """Per tick, the role's total (sum over its processes): workers add up to the service's footprint."""
    totals: dict[float, float] = {}
    for s in samples:
        if s.role == role:
            totals[s.t_s] = totals.get(s.t_s, 0.0) + getattr(s, resource)
    ts = sorted(totals)
    return ts, [totals[t] for t in ts]


def _trend(role: str, resource: str, samples: Sequence[ProcessSample], th: Thresholds) -> Trend:
    ts, ys = _role_series(samples, role, resource)
    pids = len({s.pid for s in samples if s.role == role})
    peak = max(ys) if ys else math.nan
    if len(ts) < max(3, th.min_samples) or ts[-1] - ts[0] <= 0:
        return Trend(role, resource, pids, len(ts), (ts[-1] - ts[0]) if ts else 0.0,
                     ys[0] if ys else math.nan, ys[-1] if ys else math.nan, peak, math.nan, math.nan, "inconclusive")
    if len(set(ys)) == 1:  # perfectly flat (threads often are): slope 0, no regression needed
        slope_s, intercept, p = 0.0, ys[0], 1.0
    else:
        fit = stats.linregress(ts, ys)
        slope_s, intercept, p = fit.slope, fit.intercept, fit.pvalue
    slope_h = slope_s * 3600.0
    half = len(ts) // 2
    late_ts, late_ys = ts[half:], ys[half:]
    late_h = (stats.linregress(late_ts, late_ys).slope * 3600.0
              if len(late_ts) >= 3 and len(set(late_ys)) > 1 else 0.0)
    limit = th.limit(resource)
    if slope_h > limit and p < th.significance:
        # Caches and allocator arenas fill early and then stop; a leak keeps growing to the end.
        verdict = "growing" if late_h > limit else "settling"
    elif slope_h > limit:
        verdict = "inconclusive"  # the fit exceeds the limit but noise cannot rule out zero
    else:
        verdict = "stable"
    return Trend(role, resource, pids, len(ts), ts[-1] - ts[0], intercept + slope_s * ts[0],
                 intercept + slope_s * ts[-1], peak, slope_h, p, verdict, late_h)


def analyse(samples: Sequence[ProcessSample], *, duration_s: float, warmup_s: float, interval_s: float,
            thresholds: Thresholds = Thresholds(), load: Mapping[str, float] | None = None) -> SoakReport:
    """Trends of every role × resource over the samples taken after ``warmup_s``."""
    steady = [s for s in samples if s.t_s >= warmup_s]
    roles = sorted({s.role for s in samples})
    trends = tuple(_trend(role, resource, steady, thresholds) for role in roles for resource in RESOURCES)
    # A worker replaced mid-run (crash, max_requests) resets its memory and hides growth: report it.
    restarts = {}
    for role in roles:
        pids_per_tick: dict[float, set[int]] = {}
        for s in samples:
            if s.role == role:
                pids_per_tick.setdefault(s.t_s, set()).add(s.pid)
        all_pids = set().union(*pids_per_tick.values()) if pids_per_tick else set()
        typical = max((len(p) for p in pids_per_tick.values()), default=0)
        if len(all_pids) > typical:
            restarts[role] = len(all_pids) - typical
    return SoakReport(duration_s, warmup_s, interval_s, thresholds, trends, dict(load or {}), restarts)


def _fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def render_markdown(report: SoakReport, *, command: str, machine: str) -> str:
    """The body of the ``## Soak`` section (without the heading)."""
    th = report.thresholds
    lines = [
        f"Measured with `{command}` on {machine}.",
        "",
        f"Steady load for {report.duration_s / 60:.1f} min; every {report.interval_s:g} s, RSS, open file "
        f"descriptors and threads of every process were sampled (psutil). The first {report.warmup_s:.0f} s are "
        "warm-up and not fitted. Per role (the sum over its processes at each tick), an ordinary least-squares "
        "slope is fitted and extrapolated to one hour. A role is **growing** when the slope exceeds its limit "
        f"(RSS {th.rss_mb_per_hour:g} MB/h, fds {th.open_fds_per_hour:g}/h, threads {th.threads_per_hour:g}/h) "
        f"and its p-value is below {th.significance:g}, and the slope over the second half of the window still "
        "exceeds the limit; **settling** when the whole-window slope exceeds the limit but the second half has "
        "flattened (warm-up: caches, allocator arenas); **inconclusive** when it exceeds the limit but noise "
        "cannot rule out zero (or there are too few samples); otherwise **stable**.",
        "",
    ]
    if report.load:
        load = ", ".join(f"{k} {v:g}" for k, v in report.load.items())
        lines += [f"Load (client side, whole run incl. warm-up, synthetic traffic): {load}.", ""]
    lines += [f"**Verdict: {report.verdict}**"
              + (f" — growing: {', '.join(f'{t.role} {t.resource}' for t in report.growing)}" if report.growing else ""),
              "",
              "| role | resource | processes | samples | fitted start | fitted end | peak | slope per hour "
              "| p-value | 2nd-half slope per hour | verdict |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for t in report.trends:
        digits = 1 if t.resource == "rss_mb" else 0
        lines.append(
            f"| {t.role} | {t.resource} ({t.unit}) | {t.processes} | {t.samples} | {_fmt(t.first, digits)} | "
            f"{_fmt(t.last, digits)} | {_fmt(t.peak, digits)} | {_fmt(t.slope_per_hour, 2)} | "
            f"{'n/a' if math.isnan(t.p_value) else f'{t.p_value:.2g}'} | {_fmt(t.late_slope_per_hour, 2)} | "
            f"{t.verdict} |")
    if report.restarts:
        lines += ["", "Processes replaced during the run (their growth restarts from zero, so a trend can hide): "
                  + ", ".join(f"{role}: {n}" for role, n in sorted(report.restarts.items())) + "."]
    lines += ["", "A soak this short bounds fast leaks only (a few MB per minute); growth slower than the limit "
              "per hour needs `--minutes 60` or more to show."]
    return "\n".join(lines) + "\n"


# -- the run (I/O edge): service + steady Locust load + sampling ------------------------------

def _locust_pid(exclude: set[int]) -> int | None:
    """Locust, started by ``run_load`` as a child of this process (in its own session)."""
    for child in psutil.Process().children():
        try:
            if child.pid not in exclude and any("locust" in part for part in child.cmdline()):
                return child.pid
        except psutil.Error:
            continue
    return None


def run_soak(*, minutes: float, users: int, interval_s: float, warmup_s: float | None, work_dir,
             thresholds: Thresholds = Thresholds(), workers: int = 2,
             log: Callable[[str], None] = lambda message: None) -> SoakReport:
    """Start the service, drive steady load for ``minutes``, sample every process, analyse."""
    import threading
    from pathlib import Path

    from toolkit.lab.load import LoadOptions, run_load
    from toolkit.lab.processes import ServiceProcesses

    duration_s = minutes * 60.0
    warmup = min(60.0, duration_s * 0.2) if warmup_s is None else warmup_s
    work = Path(work_dir)
    outcome: dict = {}
    with ServiceProcesses(work / "service", workers=workers) as svc:
        masters = {p.name: p.proc.pid for p in svc.processes}
        log(f"service up at {svc.base_url} (publish-api master {masters['publish-api']}, "
            f"transcoder master {masters['transcoder']}); steady load: {users} users for {minutes:g} min")

        def load() -> None:
            try:
                outcome["result"] = run_load(LoadOptions(host=svc.base_url, users=users, spawn_rate=max(1, users),
                                                         duration_s=duration_s, shape="steady",
                                                         out_dir=work / "load"))
            except Exception as e:  # reported after sampling stops; the sampler must not hang on it
                outcome["error"] = e

        runner = threading.Thread(target=load, daemon=True)
        runner.start()
        sampler = ProcessSampler(masters, flat={"load (locust)"})
        service_pids = set(masters.values())
        deadline = time.monotonic() + duration_s
        next_tick = time.monotonic()
        while time.monotonic() < deadline and runner.is_alive():
            if "load (locust)" not in sampler.roots:
                pid = _locust_pid(service_pids)
                if pid:
                    sampler.roots["load (locust)"] = pid
            sampler.sample()
            next_tick += interval_s
            time.sleep(max(0.0, min(next_tick, deadline) - time.monotonic()))
        log(f"sampling done ({len(sampler.samples)} samples); waiting for Locust to stop")
        runner.join()
    if "error" in outcome:
        raise outcome["error"]
    result = outcome["result"]
    total = result.total
    load_summary = {"attempts": result.attempts, "requests": total.requests, "failures": total.failures,
                    "requests/s": round(total.requests_per_s, 1)}
    return analyse(sampler.samples, duration_s=duration_s, warmup_s=warmup, interval_s=interval_s,
                   thresholds=thresholds, load=load_summary)
