"""Load capacity: how many publish flows/s the lab sustains on this machine, and who burns the CPU.

One real service (gunicorn API + transcoder) on loopback; ``obslab load`` drives it in closed-loop
steps of increasing users with no think time and no network pacing (every creator publishes
back to back), one step after another against the same service. Per step: publish flows/s and
requests/s over the step's run time, request latency p50/p99 (Locust, all requests), publish flow
latency p50/p99 (client record, exact), the failure share, and the CPU seconds of Locust and of the
service process trees over the step, as cores. The sustainable step is the busiest one whose
requests fail < 1 % with request p99 <= 1 s.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import psutil

from loadtests import settings as load_settings
from loadtests.record import read_attempts
from toolkit.lab.load import LoadOptions, run_load
from toolkit.lab.processes import ServiceProcesses

__all__ = ["CapacityStep", "CapacityReport", "run_capacity", "render_markdown", "sustainable", "SECTION_TITLE",
           "MAX_FAILURE_SHARE", "MAX_P99_MS"]

SECTION_TITLE = "Load capacity"
MAX_FAILURE_SHARE = 0.01
MAX_P99_MS = 1000.0


@dataclass(frozen=True)
class CapacityStep:
    users: int
    duration_s: float
    published: int
    attempts: int
    requests: int
    failures: int
    request_p50_ms: float
    request_p99_ms: float
    flow_p50_ms: float
    flow_p99_ms: float
    locust_cpu_s: float
    service_cpu_s: float
    wall_s: float
    load_average: float  # the machine's 1-minute load average at the end of the step (other work too)

    @property
    def flows_per_s(self) -> float:
        return self.published / self.duration_s

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s

    @property
    def failure_share(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @property
    def locust_cores(self) -> float:
        return self.locust_cpu_s / self.wall_s

    @property
    def service_cores(self) -> float:
        return self.service_cpu_s / self.wall_s


@dataclass(frozen=True)
class CapacityReport:
    steps: tuple[CapacityStep, ...]
    workers: int
    threads: int
    processes: int
    cpu_count: int


def sustainable(steps: Sequence[CapacityStep]) -> CapacityStep | None:
    """The step with the most publish flows/s among those within the failure and p99 limits."""
    ok = [s for s in steps if s.failure_share < MAX_FAILURE_SHARE and s.request_p99_ms <= MAX_P99_MS]
    return max(ok, key=lambda s: s.flows_per_s, default=None)


def _tree_cpu_s(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def run_capacity(*, users_steps: Sequence[int] = (5, 10, 20, 40), step_s: float = 20.0, workers: int = 2,
                 threads: int = 4, processes: int = 1, work_dir: Path | None = None,
                 progress: Callable[[str], None] = lambda _m: None) -> CapacityReport:
    """Run every step against one fresh service and measure it."""
    with tempfile.TemporaryDirectory(prefix="obslab-capacity-") as tmp:
        root = Path(work_dir or tmp)
        with ServiceProcesses(root / "service", workers=workers, threads=threads) as service:
            pids = [p.proc.pid for p in service.processes if p.proc is not None]
            steps = []
            for users in users_steps:
                progress(f"step: {users} users, {step_s:g}s, closed loop (no think time, no pacing)")
                options = LoadOptions(
                    host=service.base_url, users=users, spawn_rate=max(users, 1), duration_s=step_s,
                    shape="steady", retry_policy="backoff", cancel_rate=0.0, seed=1,
                    out_dir=root / f"step-{users}", processes=processes,
                    settings={load_settings.THINK_TIME: "0", load_settings.PACE: "0",
                              load_settings.VIEWER_WEIGHT: "0"})
                cpu_before = _tree_cpu_s(pids)
                result = run_load(options)
                service_cpu = _tree_cpu_s(pids) - cpu_before
                attempts = read_attempts(result.client_record)
                latencies = np.array([a.latency_ms for a in attempts if a.outcome == "published"], dtype=float)
                total = result.total
                steps.append(CapacityStep(
                    users=users, duration_s=result.duration_s,
                    published=int(result.attempts_by_outcome.get("published", 0)), attempts=result.attempts,
                    requests=total.requests, failures=total.failures,
                    request_p50_ms=total.median_ms, request_p99_ms=total.p99_ms,
                    flow_p50_ms=float(np.percentile(latencies, 50)) if latencies.size else 0.0,
                    flow_p99_ms=float(np.percentile(latencies, 99)) if latencies.size else 0.0,
                    locust_cpu_s=result.locust_cpu_s, service_cpu_s=service_cpu, wall_s=result.wall_s,
                    load_average=os.getloadavg()[0]))
                progress(f"  {steps[-1].flows_per_s:.1f} flows/s, {steps[-1].requests_per_s:.0f} req/s, "
                         f"p99 {steps[-1].request_p99_ms:g} ms, failures {steps[-1].failure_share:.2%}")
    return CapacityReport(tuple(steps), workers, threads, processes, psutil.cpu_count() or 0)


def render_markdown(report: CapacityReport, command: str, when: str) -> str:
    best = sustainable(report.steps)
    lines = [
        f"## {SECTION_TITLE}",
        "",
        f"Measured {when} with `{command}` on a {report.cpu_count}-core machine (shared with other work). One "
        f"service (gunicorn API {report.workers} workers x {report.threads} threads + transcoder) on 127.0.0.1; "
        f"`obslab load` ({report.processes} Locust process{'es' if report.processes > 1 else ''}) in closed-loop "
        "steps: creators only, no think time, no network pacing, backoff retries, no cancels, seed 1. All "
        "traffic synthetic. Rates are over each step's run time; request latency is Locust's (all requests, "
        "approximate percentiles), flow latency is the client record's (create to published, exact "
        "percentiles over published flows); CPU is seconds of each process tree over the step divided by the "
        "step's wall time, Locust start and stop included (cores). The load average column says how busy the "
        "machine was with everything else.",
        "",
        "| users | publish flows/s | requests/s | request p50 ms | request p99 ms | flow p50 ms | flow p99 ms "
        "| failed requests | Locust CPU (cores) | service CPU (cores) | machine load avg (1 min) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in report.steps:
        lines.append(
            f"| {s.users} | {s.flows_per_s:.1f} | {s.requests_per_s:.0f} | {s.request_p50_ms:g} | "
            f"{s.request_p99_ms:g} | {s.flow_p50_ms:.0f} | {s.flow_p99_ms:.0f} | "
            f"{s.failures}/{s.requests} ({s.failure_share:.2%}) | {s.locust_cores:.2f} | {s.service_cores:.2f} | "
            f"{s.load_average:.1f} |")
    lines.append("")
    if best:
        share = best.locust_cpu_s / (best.locust_cpu_s + best.service_cpu_s) if best.service_cpu_s else 0.0
        lines.append(
            f"Highest sustainable (failures < {MAX_FAILURE_SHARE:.0%}, request p99 <= {MAX_P99_MS:g} ms): "
            f"**{best.flows_per_s:.1f} publish flows/s, {best.requests_per_s:.0f} requests/s** at {best.users} "
            f"users (request p50 {best.request_p50_ms:g} ms / p99 {best.request_p99_ms:g} ms; flow p50 "
            f"{best.flow_p50_ms:.0f} ms / p99 {best.flow_p99_ms:.0f} ms). CPU split at that step: Locust "
            f"{best.locust_cores:.2f} cores, service {best.service_cores:.2f} cores ({share:.0%} of the lab's CPU "
            "is the load generator).")
    else:
        lines.append(f"No step stayed within failures < {MAX_FAILURE_SHARE:.0%} and request p99 <= {MAX_P99_MS:g} ms.")
    busiest = max((s.load_average for s in report.steps), default=0.0)
    if report.cpu_count and busiest > report.cpu_count:
        lines += ["", f"The machine was oversubscribed by other work during this measurement (1-minute load "
                      f"average up to {busiest:.1f} on {report.cpu_count} cores), so the lab got only part of the "
                      "CPU: read these figures as lower bounds, and re-run the command on a quiet machine for "
                      "the lab's own ceiling."]
    return "\n".join(lines) + "\n"
