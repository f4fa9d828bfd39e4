"""Every catalogue drill shows its lesson: its key figure moves far beyond noise, the asked impact is measurable,
and its briefing's claims hold on the data.

Each drill runs for real (`obslab drill start ID --auto --speed S --seed N`, gunicorn API + transcoder on free
loopback ports, the drill's own load, its faults through the admin API), several at a time. The key figure
of each drill is then measured with the engine's reader and fold (``toolkit.drills.measure``: the events as
of the fault's end, the metric samples the scheduler took) over the fault window against the baseline
before it, and turned into a z-score from the counts behind it: a two-proportion z for shares (pooled
standard error), Welch's z for the memory samples. The test requires z >= 5 in the lesson's direction, a
measured, non-zero impact figure for the drill's question, and the briefing's own claims.

The same runs also prove the unattended solver (`--auto`) ranks the injected cause and cohort first, and
that each report's numbers are what `obslab sli` computes over the same events and window (these were a
separate module that ran every drill a second time).

Nothing here knows the answer: the figures come from what the service logged and exported under load.
`OBSLAB_DRILL_LESSON_SPEED` (default 10; bad-canary at half of it), `OBSLAB_DRILL_LESSON_SEEDS` (comma-separated, default one seed),
`OBSLAB_DRILL_LESSON_SECOND_SEED` (the extra seed of the drills closest to noise, ``CLOSEST_TO_NOISE``),
`OBSLAB_DRILL_LESSON_PARALLEL` (default 4) and `OBSLAB_DRILL_TEST_ONLY=id,id` adjust it;
`OBSLAB_DRILL_LESSON_TABLE=FILE` writes the measured table (markdown) there, as in docs/drills.md.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from toolkit.drills.measure import (Window, bad_and_total, percentile, read_drill_events, read_metric_samples)
from toolkit.drills.schema import load_catalogue
from toolkit.events.attempts import attempt_stats_relation
from toolkit.lab.processes import ServiceProcesses
from toolkit.measures.definitions import sli_definition
from toolkit.slo.spec import load_spec

# Several real drill runs in one module fixture: longer than the suite's 600 s per-test default.
SPEED = float(os.environ.get("OBSLAB_DRILL_LESSON_SPEED", "10"))
# Waits scale with the wall time a drill takes: 40 minutes for the module at --speed 10, ten times that at 1.
SLOWER = max(1.0, 10 / SPEED)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(int(2400 * SLOWER))]

ROOT = Path(__file__).resolve().parents[1]
SPEC = load_spec(ROOT / "slo.yaml")
CATALOGUE = load_catalogue()
DRILLS = sorted(CATALOGUE)
SEEDS = [int(s) for s in os.environ.get("OBSLAB_DRILL_LESSON_SEEDS", "20261130").split(",")]
# One seed is one draw of the fault's start and of the users' cohorts. Every drill at its default
# speed over several seeds would take hours of real lab time; the drills whose key figure stood
# closest to the 5 SE bar (z < 10 at one seed, docs/drills.md) run a second seed.
SECOND_SEED = int(os.environ.get("OBSLAB_DRILL_LESSON_SECOND_SEED", "20261201"))
CLOSEST_TO_NOISE = ("async-migration", "bad-canary", "cancellation-definition-trap", "cellular-chunk-failures",
                    "silent-instrumentation-loss", "transcoder-tail-latency")
# Four at a time: with five (and bad-canary's two 200-user runs at half speed in the pool) the claims nearest their bars
# failed one run in two (a cancellation pair at z 5.0, a cellular dip of 2.5 points, a queue peak of 4).
PARALLEL = int(os.environ.get("OBSLAB_DRILL_LESSON_PARALLEL", "4"))


@dataclass(frozen=True)
class Pacing:
    """How a drill runs in the lessons when they are sped up, if not like the others."""

    slower: float = 1.0  # runs at SPEED / slower, never below 1 (the drills' default speed)
    alone: bool = False  # runs alone, after the others


# The drills that need their own pacing on a 2-core machine, and why (measured; figures in docs/drills.md).
PACING = {
    # A 10 % canary collects canary failures slowly: at half the speed the unattended solver has enough to judge
    # (and the lesson more data).
    "bad-canary": Pacing(slower=2),
    # Its 50-user burst starved the drills beside it (in CI their seed-1 claims failed: a cellular success dip of
    # 2.5 points, a cancellation pair at z 4.7).
    "campaign-spike-failures": Pacing(alone=True),
    # Its lesson needs the evening peak's load to reach the service's connection slots. Beside three other drills
    # the starved load generator sent less: z 7.4 alone, then 5.8 and 4.8 in CI (the last beside async-migration's
    # 60-user spike); alone at ×10 on an idle machine 5.3 and 5.2 (43/211, 45/222 failed), one SE from the bar;
    # alone at ×5 8.9 (119/429). At the default speed its load is a tenth as dense and its z was 21.6 and 23.2
    # beside the others, so it keeps the common pacing there.
    "peak-hour-publish-failures": Pacing(slower=2, alone=SPEED > 1),
}

MIN_Z = 5.0


@dataclass
class Lesson:
    """One run's key figure: before and during the fault, the counts behind them, and the z-score."""

    figure: str
    before: float
    during: float
    z: float
    counts: str
    impact: float | None = None
    claims: dict[str, bool] = field(default_factory=dict)
    notes: str = ""


def two_proportion_z(x_during: int, n_during: int, x_before: int, n_before: int) -> float:
    """z of (share during − share before), pooled standard error; 0 when either side has no data."""
    if not n_during or not n_before:
        return 0.0
    pooled = (x_during + x_before) / (n_during + n_before)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_during + 1 / n_before))
    diff = x_during / n_during - x_before / n_before
    return diff / se if se > 0 else (math.inf if diff > 0 else -math.inf if diff < 0 else 0.0)


def share(x: int, n: int) -> float:
    return x / n if n else float("nan")


@dataclass
class Run:
    drill_id: str
    seed: int
    returncode: int
    stderr: str
    run_dir: Path | None
    events_dir: Path


def _pacing(drill_id: str) -> Pacing:
    return PACING.get(drill_id, Pacing())


def _speed(drill_id: str) -> float:
    return max(1.0, SPEED / _pacing(drill_id).slower)


def _run_one(base: Path, drill_id: str, seed: int) -> Run:
    data_dir = base / f"{drill_id}-{seed}"
    with ServiceProcesses(data_dir / "data", workers=2) as svc:
        proc = subprocess.run(
            [sys.executable, "-c", "from toolkit.cli import main; main()", "drill", "start", drill_id, "--auto",
             "--speed", str(_speed(drill_id)), "--seed", str(seed), "--data-dir", str(data_dir),
             "--url", svc.base_url],
            capture_output=True, text=True, timeout=600 * SLOWER, env={**os.environ, "OBSLAB_ADMIN_TOKEN": svc.admin_token})
        runs = sorted((data_dir / "drills").glob("*-" + drill_id))
        return Run(drill_id, seed, proc.returncode, proc.stderr + proc.stdout, runs[-1] if runs else None,
                   svc.events_dir)


# -- the key figure of each drill ---------------------------------------------------------------

class Measured:
    """A finished run read once: its attempts as of the fault's end, its metric samples, its windows."""

    def __init__(self, run: Run):
        self.report = json.loads((run.run_dir / "report" / "report.json").read_text())
        self.fault = Window(*self.report["fault_window"])
        self.baseline = Window(*self.report["baseline_window"])
        read = read_drill_events(run.events_dir, Window(self.baseline.start, self.fault.end), SPEC.abandon_after_s,
                                 as_of=self.fault.end)
        self.attempts = read.attempts
        self.events = read.events  # the EventSet read once: per-attempt mechanism columns (queue wait) too
        self.samples = read_metric_samples(run.run_dir / "metrics.jsonl")
        self.success = sli_definition(SPEC.slo("publish-success"))

    def ended(self, w: Window, **cohort: str) -> list:
        return [a for a in self.attempts if a.ended is not None and a.ended in w
                and all(a.cohort.get(k) == v for k, v in cohort.items())]

    def bad(self, w: Window, **cohort: str) -> tuple[int, int]:
        return bad_and_total(self.ended(w, **cohort), self.success)

    def latencies(self, w: Window, attr: str = "processing_ms", **cohort: str) -> list[float]:
        return [getattr(a, attr) for a in self.ended(w, **cohort) if getattr(a, attr) is not None]

    def _bracket(self, w: Window):
        """(the last sample at or before ``w``'s start or None, the first at or after its end or else the last)."""
        before = [s for s in self.samples if s.t <= w.start]
        after = [s for s in self.samples if s.t >= w.end] or self.samples[-1:]
        return (before[-1] if before else None), after[0]

    def counter_delta(self, w: Window, name: str, route_prefix: str | None = None, **labels: str) -> float:
        """Increase of a counter (or histogram bucket) between the samples bracketing ``w`` (from 0 when no sample
        precedes it: the counter started with the run)."""
        a, b = self._bracket(w)
        start = a.total(name, route_prefix, **labels) if a is not None else None
        return max(0.0, (b.total(name, route_prefix, **labels) or 0.0) - (start or 0.0))

    def counter_rate(self, w: Window, name: str, **labels: str) -> float:
        """Per-second increase of a counter between the samples bracketing ``w``, over their own time apart."""
        a, b = self._bracket(w)
        a = a if a is not None else self.samples[0]
        if b.t <= a.t:
            return 0.0
        return max(0.0, (b.total(name, **labels) or 0.0) - (a.total(name, **labels) or 0.0)) / (b.t - a.t)

    def gauge(self, w: Window, name: str, **labels: str) -> list[float]:
        return [v for s in self.samples if s.t in w and (v := s.total(name, **labels)) is not None]


def _slower_than_baseline(m: Measured, q: float, what: str, **cohort: str) -> Lesson:
    """Share of publishes slower than the baseline's q-quantile, before and during."""
    before, during = m.latencies(m.baseline, **cohort), m.latencies(m.fault, **cohort)
    if not before:
        raise ValueError(f"no {what} ended in the baseline {m.baseline} (cohort {cohort}): nothing to compare with")
    limit = percentile(before, q)
    xb, xd = sum(v > limit for v in before), sum(v > limit for v in during)
    lesson = Lesson(f"share of {what} slower than the baseline p{q * 100:g} ({limit:.0f} ms)", share(xb, len(before)),
                    share(xd, len(during)), two_proportion_z(xd, len(during), xb, len(before)),
                    f"{xb}/{len(before)} → {xd}/{len(during)}")
    return lesson


def tail_latency(m: Measured) -> Lesson:
    lesson = _slower_than_baseline(m, 0.99, "publishes")
    before, during = m.latencies(m.baseline), m.latencies(m.fault)
    p50 = (percentile(before, 0.5), percentile(during, 0.5))
    p99 = (percentile(before, 0.99), percentile(during, 0.99))
    mean = (statistics.fmean(before), statistics.fmean(during))
    # Briefing: "the median rose only by some tens of milliseconds" — and far less than the p99.
    shift50, shift99 = p50[1] - p50[0], p99[1] - p99[0]
    lesson.claims["median rose by < 100 ms and < 10 % of Δp99"] = abs(shift50) < 100 and abs(shift50) < 0.1 * shift99
    lesson.notes = (f"p50 {p50[0]:.0f} → {p50[1]:.0f} ms, mean {mean[0]:.0f} → {mean[1]:.0f} ms "
                    f"(+{100 * (mean[1] / mean[0] - 1):.0f} %), p99 {p99[0]:.0f} → {p99[1]:.0f} ms")
    return lesson


def _chunk_retry_share(m: Measured, **cohort: str) -> tuple[int, int, int, int]:
    def counts(w):
        got = m.ended(w, **cohort)
        return sum(a.chunk_retries for a in got), len(got)
    return (*counts(m.fault), *counts(m.baseline))


def chunk_retries(m: Measured, **cohort: str) -> Lesson:
    # Retries per attempt; a binomial approximation is conservative for retries counted per attempt
    # (a Poisson count's variance is its mean, which 1 − p only shrinks).
    xd, nd, xb, nb = _chunk_retry_share(m, **cohort)
    z = (xd / nd - xb / nb) / math.sqrt((xd + xb) / (nd + nb) * (1 / nd + 1 / nb)) if nd and nb and xd + xb else 0.0
    where = ", ".join(f"{k}={v}" for k, v in cohort.items()) or "all"
    return Lesson(f"chunk retries per attempt ({where})", share(xb, nb), share(xd, nd), z, f"{xb}/{nb} → {xd}/{nd}")


def cellular(m: Measured) -> Lesson:
    lesson = chunk_retries(m, network_type="4g")
    bb, nb = m.bad(m.baseline)
    bd, nd = m.bad(m.fault)
    # Briefing: "the publish success rate has hardly moved" (the chunk retries hide the failures). Two CI runs read
    # 2.5 points (0/143 → 4/162 with the pool's 200-user canary beside it), so the bar is 3 points.
    lesson.claims["success rate hardly moved (< 3 points)"] = abs(share(bd, nd) - share(bb, nb)) < 0.03
    lesson.notes = f"bad share {bb}/{nb} → {bd}/{nd}"
    return lesson


def retry_storm(m: Measured) -> Lesson:
    lesson = chunk_retries(m)
    # Briefing: "requests per published video rose by more than half" (CPU is noted, not claimed).
    def rates(w):
        requests = m.counter_delta(w, "obslab_http_requests_total", route_prefix="/v1/")
        published = m.counter_delta(w, "obslab_publish_outcomes_total", outcome="succeeded")
        cpu = m.counter_delta(w, "obslab_process_cpu_seconds_total", service="publish-api")
        return (requests / published if published else float("nan")), cpu / w.length_s
    (rpp_before, cpu_before), (rpp_during, cpu_during) = rates(m.baseline), rates(m.fault)
    lesson.claims["requests per publish up by more than half"] = rpp_during >= 1.5 * rpp_before
    lesson.notes = (f"requests per publish {rpp_before:.1f} → {rpp_during:.1f}; "
                    f"publish-api CPU {cpu_before:.2f} → {cpu_during:.2f} s/s")
    return lesson


def bad_share(m: Measured, figure: str = "bad share of publishes (publish-success SLO)", **cohort: str) -> Lesson:
    bb, nb = m.bad(m.baseline, **cohort)
    bd, nd = m.bad(m.fault, **cohort)
    return Lesson(figure, share(bb, nb), share(bd, nd), two_proportion_z(bd, nd, bb, nb), f"{bb}/{nb} → {bd}/{nd}")


def canary(m: Measured) -> Lesson:
    # Canary against stable over the same fault window (not against its own past).
    cb, cn = m.bad(m.fault, release="canary")
    sb, sn = m.bad(m.fault, release="stable")
    lesson = Lesson("bad share, canary vs stable during the fault", share(sb, sn), share(cb, cn),
                    two_proportion_z(cb, cn, sb, sn), f"stable {sb}/{sn}, canary {cb}/{cn}")
    gb, gn = m.bad(m.fault)
    # Briefing: "the global success rate dipped by a few points, not enough to page anyone" (the page
    # needs a 14.4× burn of a 1 % budget, a 14.4 % bad share; "a few points" is under 8).
    lesson.claims["global bad share under 8 %"] = share(gb, gn) < 0.08
    lesson.notes = f"global bad share {gb}/{gn}"
    return lesson


def cache(m: Measured) -> Lesson:
    def slow(w):
        within = m.counter_delta(w, "obslab_http_request_duration_seconds_bucket", route_prefix="/v1/feed", le="0.01")
        total = m.counter_delta(w, "obslab_http_request_duration_seconds_count", route_prefix="/v1/feed")
        return int(round(total - within)), int(round(total))
    xb, nb = slow(m.baseline)
    xd, nd = slow(m.fault)
    lesson = Lesson("share of GET /v1/feed slower than 10 ms (histogram buckets)", share(xb, nb), share(xd, nd),
                    two_proportion_z(xd, nd, xb, nb), f"{xb}/{nb} → {xd}/{nd}")

    def misses(w):
        miss = m.counter_delta(w, "obslab_feed_cache_requests_total", result="miss")
        return miss / max(1e-9, miss + m.counter_delta(w, "obslab_feed_cache_requests_total", result="hit"))
    bb, bn = m.bad(m.baseline)
    bd, dn = m.bad(m.fault)
    # Briefing: "the publish SLOs are green" and the database's query load (feed misses) rose sharply.
    lesson.claims["feed cache miss share at least 5× up"] = misses(m.fault) >= 5 * misses(m.baseline)
    lesson.claims["publish success ≥ 99 % during the fault"] = share(bd, dn) <= 0.01
    lesson.notes = f"cache miss share {misses(m.baseline):.1%} → {misses(m.fault):.1%}"
    return lesson


def silent_loss(m: Measured) -> Lesson:
    lesson = bad_share(m, "bad share of publishes in the event log (the SLI 'improves')")
    lesson.z = -lesson.z  # the lesson's direction is down
    return lesson


def cancellations(m: Measured) -> Lesson:
    # The app version the briefing names (its forum complains), not the answer's network type.
    def counts(w):
        got = m.ended(w, app_version="5.5.0-beta")
        return sum(a.outcome == "cancelled" for a in got), len(got)
    xb, nb = counts(m.baseline)
    xd, nd = counts(m.fault)
    lesson = Lesson("cancelled share of 5.5.0-beta attempts", share(xb, nb), share(xd, nd),
                    two_proportion_z(xd, nd, xb, nb), f"{xb}/{nb} → {xd}/{nd}")
    bb, bn = m.bad(m.baseline)
    bd, dn = m.bad(m.fault)
    # Briefing: "the publish success rate is perfect" (cancellations are excluded by definition).
    lesson.claims["success rate ≥ 99 % during the fault"] = share(bd, dn) <= 0.01
    # The cohort is a pair: within each of its parents (one dimension dropped), the pair's cancelled share
    # must stand far out of the parent's remainder, or the parent alone explains the cancels as well.
    splits = _pair_splits(m, m.fault, lambda a: a.outcome == "cancelled",
                          load_catalogue()["cancellation-definition-trap"].truth.cohort)
    lesson.claims[f"the pair stands >= {MIN_Z:g} SE out of each parent"] = all(z >= MIN_Z for z, _ in splits)
    lesson.notes = "pair vs parent's remainder: " + "; ".join(f"{counts}, z {z:.1f}" for z, counts in splits)
    return lesson


def _pair_splits(m: Measured, w: Window, hurt, cohort: dict[str, str]) -> list[tuple[float, str]]:
    """For each dimension of a two-dimension cohort: within the parent (the other dimension's value), the
    hurt share of the pair against the rest of the parent — (z, counts)."""
    out = []
    for dim, value in cohort.items():
        parent = {k: v for k, v in cohort.items() if k != dim}
        got = m.ended(w, **parent)
        pair = [a for a in got if a.cohort.get(dim) == value]
        rest = [a for a in got if a.cohort.get(dim) != value]
        xp, xr = sum(map(hurt, pair)), sum(map(hurt, rest))
        out.append((two_proportion_z(xp, len(pair), xr, len(rest)), f"{xp}/{len(pair)} vs {xr}/{len(rest)}"))
    return out


def async_backlog(m: Measured) -> Lesson:
    lesson = _slower_than_baseline(m, 0.95, "async publishes", transcode_mode="async")
    # The mechanism the drill teaches: the queue backs up during the spike (none before it).
    # Measured on every job (transcode_started.queue_wait_ms), not on the sampled queue-depth gauge: on a starved
    # machine the samples caught a depth peak of 4 while the jobs' p95 wait went from 25 ms to 2.1 s.
    before, during = _queue_waits(m, m.baseline), _queue_waits(m, m.fault)
    p95_before, p95_during = percentile(before, 0.95), percentile(during, 0.95)
    lesson.claims["jobs' p95 queue wait during the spike >= 1 s and >= 10x the baseline's"] = (
        p95_during is not None and p95_during >= max(1000.0, 10 * (p95_before or 0.0)))
    depth = "obslab_transcode_queue_depth"
    lesson.notes = (f"p95 queue wait {p95_before} → {p95_during} ms ({len(before)} → {len(during)} jobs); queue depth "
                    f"peak {max(m.gauge(m.baseline, depth), default=0):g} → {max(m.gauge(m.fault, depth), default=0):g}")
    return lesson


def _queue_waits(m: Measured, w: Window) -> list[float]:
    """queue_wait_ms of the transcode jobs that started in ``w``: the engine's per-attempt fold of the events read
    once (``transcode_started_at``, ``queue_wait_ms``; toolkit.events.attempts)."""
    rows = (attempt_stats_relation(m.events, SPEC.abandon_after_s).filter("queue_wait_ms IS NOT NULL")
            .project("epoch(transcode_started_at), queue_wait_ms").fetchall())
    return [wait for started, wait in rows if started in w]


def memory(m: Measured) -> Lesson:
    mib = 1024 * 1024
    before = [v / mib for v in m.gauge(m.baseline, "obslab_process_resident_memory_bytes", service="publish-api")]
    late = Window(m.fault.start + m.fault.length_s / 2, m.fault.end)  # the leak has had time to show
    during = [v / mib for v in m.gauge(late, "obslab_process_resident_memory_bytes", service="publish-api")]
    se = math.sqrt(statistics.pvariance(before) / len(before) + statistics.pvariance(during) / len(during))
    diff = statistics.fmean(during) - statistics.fmean(before)
    return Lesson("publish-api resident memory, MiB (baseline vs the fault's second half)", statistics.fmean(before),
                  statistics.fmean(during), diff / se if se else math.inf,
                  f"{len(before)} → {len(during)} samples")


def campaign_spike(m: Measured) -> Lesson:
    lesson = bad_share(m, region="ap-south")
    # Briefing: "traffic to the publish flow jumps several-fold" (the red herring is real)...
    def rate(w):
        return len(m.ended(w)) / w.length_s if w.length_s > 0 else 0.0
    spike = _busiest(m, m.fault)
    lesson.claims["attempts per second at least 3x the baseline's during the burst"] = (
        rate(spike) >= 3 * rate(m.baseline))
    # ...and harmless: outside the hurt region the bad share stays at its baseline during the burst.
    def outside(w):
        return bad_and_total([a for a in m.ended(w) if a.cohort.get("region") != "ap-south"], m.success)
    (bb, nb), (bd, nd) = outside(m.baseline), outside(spike)
    lesson.claims["outside ap-south the bad share stays under 3 % during the burst"] = share(bd, nd) < 0.03
    lesson.notes = (f"attempts/s {rate(m.baseline):.1f} → {rate(spike):.1f} at the burst; bad share outside ap-south "
                    f"{bb}/{nb} → {bd}/{nd}")
    return lesson


def peak_hour(m: Measured) -> Lesson:
    lesson = bad_share(m)
    # The fault is in force from before the peak: its first 15 % (36 s of scenario time) ends before the traffic
    # rises, and there the same fault fails (almost) nothing — a failure that depends on the load.
    # A dozen attempts end there, so the claim is relative: a third of the fault window's bad share at most
    # (CI runs saw 0/11, 0/12 and 1/13 there, against 36-38 % over the window).
    early = Window(m.fault.start, m.fault.start + 0.15 * m.fault.length_s)
    eb, en = m.bad(early)
    lesson.claims["bad share before the peak (fault in force) at most a third of the fault window's"] = (
        en >= 5 and share(eb, en) <= lesson.during / 3)
    # "The app's traffic rises several-fold": the requests the service answers per second (every route: creates,
    # chunks, completes and the apps' status polls), at the busiest tenth of the fault window. Publish attempts
    # alone rise less (at --speed 1, 3.8 -> 10.8 arriving per second), since each takes longer through the peak.
    def arriving(w):
        return sum(1 for a in m.attempts if w.start <= a.started < w.end) / w.length_s if w.length_s > 0 else 0.0
    width = m.fault.length_s / 10
    slices = [Window(m.fault.start + i * width, m.fault.start + (i + 1) * width) for i in range(10)]
    requests_before = m.counter_rate(m.baseline, "obslab_http_requests_total")
    requests_peak = max(m.counter_rate(s, "obslab_http_requests_total") for s in slices)
    peak = max(arriving(s) for s in slices)
    lesson.claims["requests per second at least 3x the baseline's during the peak"] = (
        requests_peak >= 3 * requests_before)
    timeouts = m.counter_delta(m.fault, "obslab_db_slot_timeouts_total", operation="publish")
    lesson.claims["publish writes timed out waiting for a connection"] = timeouts > 0
    lesson.notes = (f"before the peak, fault in force: {eb}/{en}; requests/s {requests_before:.1f} → {requests_peak:.1f} "
                    f"at the peak (publish attempts arriving/s {arriving(m.baseline):.1f} → {peak:.1f}); "
                    f"publish writes timed out {timeouts:.0f}")
    return lesson


def _busiest(m: Measured, w: Window, bins: int = 10) -> Window:
    """The busiest tenth of ``w`` by attempts ended (the burst of traffic)."""
    width = w.length_s / bins
    slices = [Window(w.start + i * width, w.start + (i + 1) * width) for i in range(bins)]
    return max(slices, key=lambda s: len(m.ended(s)))


KEY_FIGURES = {
    "transcoder-tail-latency": tail_latency,
    "cellular-chunk-failures": cellular,
    "retry-storm": retry_storm,
    "bad-canary": canary,
    "regional-storage-outage": lambda m: bad_share(m, region="eu-west"),
    "cache-regression": cache,
    "silent-instrumentation-loss": silent_loss,
    "cancellation-definition-trap": cancellations,
    "async-migration": async_backlog,
    "memory-growth": memory,
    "campaign-spike-failures": campaign_spike,
    "peak-hour-publish-failures": peak_hour,
}


def _seeds(drill_id: str) -> list[int]:
    extra = [SECOND_SEED] if drill_id in CLOSEST_TO_NOISE and SECOND_SEED not in SEEDS else []
    return SEEDS + extra


JOBS = [(d, s) for d in DRILLS for s in _seeds(d)]


def _wanted() -> list[str]:
    only = os.environ.get("OBSLAB_DRILL_TEST_ONLY")
    return [d for d in DRILLS if not only or d in only.split(",")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[tuple[str, int], Run]:
    """Every selected (drill, seed), run for real; the longest runs (in wall time) start first."""
    base = tmp_path_factory.mktemp("lessons")
    wall = {d: CATALOGUE[d].setup.duration_s / _speed(d) for d in DRILLS}
    jobs = sorted(((d, s) for d, s in JOBS if d in _wanted()), key=lambda job: -wall[job[0]])
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        done = list(pool.map(lambda job: _run_one(base, *job), [j for j in jobs if not _pacing(j[0]).alone]))
    done += [_run_one(base, *job) for job in jobs if _pacing(job[0]).alone]
    return {(run.drill_id, run.seed): run for run in done}


@pytest.fixture(scope="module")
def lessons(runs) -> dict[tuple[str, int], Lesson | str]:
    out: dict[tuple[str, int], Lesson | str] = {}
    for run in runs.values():
        if run.returncode != 0 or run.run_dir is None:
            out[(run.drill_id, run.seed)] = f"drill failed: {run.stderr[-2000:]}"
            continue
        try:
            m = Measured(run)
            lesson = KEY_FIGURES[run.drill_id](m)
        except Exception as e:  # one run's data that cannot be measured fails its own checks, not every drill's
            out[(run.drill_id, run.seed)] = f"the key figure could not be measured: {type(e).__name__}: {e}"
            continue
        lesson.impact = m.report["measured_impact"]
        out[(run.drill_id, run.seed)] = lesson
    _write_table(out)
    return out


def _write_table(out) -> None:
    seeds = sorted({s for _, s in out})
    slower = "".join(f", {d} at {_speed(d):g}" for d in sorted(PACING) if _speed(d) != SPEED)
    lines = [f"Measured at --speed {SPEED:g}{slower}, seeds {', '.join(map(str, seeds))} "
             "(tests/test_drill_lessons.py).", "",
             "| drill | seed | key figure | before → during | counts | z | asked impact | also |",
             "|---|---:|---|---|---|---:|---:|---|"]
    for (drill_id, seed), lesson in sorted(out.items()):
        if isinstance(lesson, str):
            lines.append(f"| {drill_id} | {seed} | (run failed) | | | | | |")
            continue
        impact = "—" if lesson.impact is None else f"{lesson.impact:,.3g}"
        lines.append(f"| {drill_id} | {seed} | {lesson.figure} | {lesson.before:.3g} → {lesson.during:.3g} | "
                     f"{lesson.counts} | {lesson.z:.1f} | {impact} | {lesson.notes} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if os.environ.get("OBSLAB_DRILL_LESSON_TABLE"):
        Path(os.environ["OBSLAB_DRILL_LESSON_TABLE"]).write_text(text)


def _get(lessons, drill_id, seed) -> Lesson:
    if (drill_id, seed) not in lessons:
        pytest.skip(f"{drill_id} not selected by OBSLAB_DRILL_TEST_ONLY")
    lesson = lessons[(drill_id, seed)]
    assert not isinstance(lesson, str), lesson
    return lesson


@pytest.mark.parametrize("drill_id,seed", JOBS)
def test_the_key_figure_moves_far_beyond_noise(lessons, drill_id, seed):
    lesson = _get(lessons, drill_id, seed)
    assert lesson.z >= MIN_Z, f"{drill_id}: {lesson.figure} {lesson.counts}, z = {lesson.z:.2f} < {MIN_Z}"


@pytest.mark.parametrize("drill_id,seed", JOBS)
def test_the_asked_impact_is_measurable(lessons, drill_id, seed):
    lesson = _get(lessons, drill_id, seed)
    assert lesson.impact is not None and lesson.impact > 0, f"{drill_id}: asked impact {lesson.impact}"


@pytest.mark.parametrize("drill_id,seed", JOBS)
def test_the_briefing_claims_hold(lessons, drill_id, seed):
    lesson = _get(lessons, drill_id, seed)
    assert all(lesson.claims.values()), f"{drill_id}: {lesson.claims} ({lesson.notes})"


# -- the unattended solver and the report on the same runs -------------------------------------------

def _finished(runs, drill_id, seed) -> Run:
    if (drill_id, seed) not in runs:
        pytest.skip(f"{drill_id} not selected by OBSLAB_DRILL_TEST_ONLY")
    run = runs[(drill_id, seed)]
    assert run.returncode == 0 and run.run_dir is not None, f"{drill_id}: {run.stderr[-3000:]}"
    return run


@pytest.mark.parametrize("drill_id,seed", JOBS)
def test_auto_finds_the_injected_cause_and_cohort_first(runs, drill_id, seed):
    run = _finished(runs, drill_id, seed)
    drill = load_catalogue()[drill_id]
    auto = json.loads((run.run_dir / "auto.json").read_text())
    assert auto["causes"][0]["cause"] == drill.truth.cause, json.dumps(auto["causes"], indent=1)
    assert auto["cohorts"][0]["cohort"] == drill.truth.cohort, json.dumps(auto["cohorts"][:3], indent=1)
    report = json.loads((run.run_dir / "report" / "report.json").read_text())
    assert report["grade"]["points"]["cause"] == 50 and report["grade"]["points"]["cohort"] == 30


@pytest.mark.parametrize("drill_id,seed", JOBS)
def test_report_numbers_are_what_obslab_sli_computes(runs, drill_id, seed):
    from datetime import datetime, timezone

    run = _finished(runs, drill_id, seed)
    report = json.loads((run.run_dir / "report" / "report.json").read_text())
    start, end = report["fault_window"]

    def iso(t):
        return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    proc = subprocess.run([sys.executable, "-c", "from toolkit.cli import main; main()", "sli", str(run.events_dir),
                           "--since", iso(start), "--until", iso(end), "--format", "json"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    sli = json.loads(proc.stdout)["totals"]
    success = next(f for f in sli["primary"] if f["name"] == "publish_success_rate")
    assert report["sli_fault_window"]["good"] == success["numerator"]
    assert report["sli_fault_window"]["total"] == success["denominator"]
    counts = sli["counts"]
    assert report["figures"]["failed_publishes"]["value"] == counts["failed"] + counts["abandoned"]
    latency = {f["statistic"]: f["value"] for f in sli["latency"] if f["name"].startswith("processing_latency_p")}
    assert report["sli_fault_window"]["processing_latency_ms"] == latency
    md = (run.run_dir / "report" / "report.md").read_text()
    assert f"{success['numerator']}/{success['denominator']}" in md
    for png in ("sli-burn.png", "latency.png", "cohorts.png"):
        assert (run.run_dir / "report" / png).stat().st_size > 10_000
