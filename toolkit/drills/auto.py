"""Answering a drill unattended, with the toolkit's own analysis — never with the ground truth.

The solver sees what a learner sees: the drill's public spec (briefing, choices),
the lab's events and the scheduler's metric samples. It works broad to narrow:

1. **When**: split the drill into bins, take the first fifth as the baseline (a drill's
   fault never starts earlier) and mark the bins where any mechanism signal moves
   materially away from it; the incident window spans the marked bins.
2. **What**: one detector per cause in ``toolkit.drills.causes`` scores the evidence
   in the incident window against the baseline; the choices are ranked by score.
3. **Who**: the attempts the top cause marks as hurt (failed, slow, retried,
   cancelled) are broken down by every cohort dimension and pairs of them; a cohort
   scores by the share of hurt attempts it covers times how far its hurt rate
   (Wilson lower bound) exceeds both the rest of the traffic and its own baseline; a pair
   is discounted against its parents unless both of its dimensions matter (an interaction).
   "Everyone" scores by the overall rise against the baseline.
4. **How much**: the impact figure the question asks for, from ``measure``.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from contract.faults import SHED_CLASSES
from toolkit.drills.measure import (Attempt, MetricSample, Window, failed_outcomes_in, measure_impact,
                                    percentile, read_drill_events, read_metric_samples)
from toolkit.drills.schema import ANSWER_DIMENSIONS, Drill
from toolkit.measures.definitions import DEFAULT_SUCCESS, SliDefinition, sli_ratio, success_definition
from toolkit.slo.spec import SloSpec

__all__ = [
    "Evidence",
    "CauseScore",
    "CohortScore",
    "Diagnosis",
    "BASELINE_SHARE",
    "WARMUP_SHARE",
    "find_incident_window",
    "score_causes",
    "rank_cohorts",
    "diagnose",
    "solve",
    "diagnosis_json",
    "wilson_lower",
    "ExperimentDiagnosis",
    "diagnose_experiment",
    "solve_experiment",
    "choose_mitigation",
]

# The baseline: from a warm-up (load starting) to a quarter of the drill; a drill's fault never
# starts before a quarter (the schema checks it).
WARMUP_SHARE = 0.05
BASELINE_SHARE = 0.25
_BINS = 20
# Fewer observations than this in a window: the signal is not judged there (noise).
_MIN_COUNT = 8
# A pair of dimensions must explain clearly more than the single dimension it refines:
# with a few dozen attempts, chance alone lets a pair edge past its parent by ~10 % (seen in
# CI: app_version=5.4.0 x large over large), while a real interaction wins by ~2x.
_PAIR_PENALTY = 0.75
# ...unless the pair is an interaction: inside each of its two parents (one dimension dropped) it is
# hurt far more than the rest of that parent (two-proportion z, pooled SE). Then the parent's own rate
# is the pair's diluted by the parent's unhurt rest, and the fixed penalty would let a parent that is
# mostly the pair tie with it (cancellation trap: 3g mostly beta, pair 0.38 vs 3g 0.35).
_INTERACTION_Z = 3.0
_Z = 1.96


@dataclass(frozen=True)
class Evidence:
    """What the solver measured, baseline vs incident, for the report and the detectors."""

    baseline: Window
    incident: Window
    values: Mapping[str, tuple[float | None, float | None]]  # signal → (baseline, incident)
    rollout: Window | None = None  # everything after the baseline

    def get(self, name: str) -> tuple[float | None, float | None]:
        return self.values.get(name, (None, None))


@dataclass(frozen=True)
class CauseScore:
    cause: str
    score: float
    why: str


@dataclass(frozen=True)
class CohortScore:
    cohort: Mapping[str, str]
    score: float
    hurt: int
    attempts: int
    rate: float


@dataclass(frozen=True)
class Diagnosis:
    incident: Window
    causes: tuple[CauseScore, ...]
    cohorts: tuple[CohortScore, ...]
    hurt_by: str  # what "hurt" meant for the cohort breakdown
    impact_metric: str
    impact_value: float | None
    evidence: Evidence
    signals_moved: tuple[str, ...] = field(default_factory=tuple)

    @property
    def cause(self) -> str:
        return self.causes[0].cause

    @property
    def cohort(self) -> Mapping[str, str]:
        return self.cohorts[0].cohort if self.cohorts else {}


def wilson_lower(bad: int, n: int, z: float = _Z) -> float:
    if n == 0:
        return 0.0
    p = bad / n
    denom = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / denom)


# -- signals -------------------------------------------------------------------------------------

def _upload_failed(a: Attempt) -> bool:
    return a.error_class == "chunk_missing" or (a.chunk_failures > 0 and a.error_class in (None, "storage"))


def _counted(attempts: Sequence[Attempt], definition: SliDefinition) -> tuple[list[Attempt], list[Attempt]]:
    """(attempts in the SLO's total, those of them bad) — the spec's good/total (``toolkit.measures.definitions``)."""
    total, bad = [], []
    for a in attempts:
        good, counted = definition.classify(a.outcome, a.processing_ms, a.e2e_ms)
        if counted:
            total.append(a)
            if not good:
                bad.append(a)
    return total, bad


def _attempt_signals(attempts: Sequence[Attempt], definition: SliDefinition) -> dict[str, float | None]:
    n = len(attempts)
    if n < _MIN_COUNT:
        return {"attempts": float(n)}
    ended, bad = _counted(attempts, definition)
    proc = [a.processing_ms for a in attempts if a.processing_ms is not None]
    tc = [a.transcode_ms for a in attempts if a.transcode_ms is not None]
    e2e = [a.e2e_ms for a in attempts if a.e2e_ms is not None]
    return {
        "attempts": float(n),
        "failure_rate": sli_ratio(len(bad), len(ended)),
        # Failed because chunks could not be stored (the upload never completed whole)...
        "upload_failure_rate": (sum(a.outcome == "failed" and _upload_failed(a) for a in ended) / len(ended))
        if ended else None,
        # ...or failed after the upload: transcode or publish.
        "processing_failure_rate": (sum(a.outcome == "failed" and not _upload_failed(a) for a in ended) / len(ended))
        if ended else None,
        "cancel_rate": (sum(a.outcome == "cancelled" for a in attempts) / n) if n else None,
        "retries_per_attempt": (sum(a.chunk_retries for a in attempts) / n) if n else None,
        "p50_processing_ms": percentile(proc, 0.5) if len(proc) >= _MIN_COUNT else None,
        "p99_processing_ms": percentile(proc, 0.99) if len(proc) >= _MIN_COUNT else None,
        "p99_transcode_ms": percentile(tc, 0.99) if len(tc) >= _MIN_COUNT else None,
        "p95_e2e_ms": percentile(e2e, 0.95) if len(e2e) >= _MIN_COUNT else None,
    }


def _metric_signals(samples: Sequence[MetricSample], w: Window) -> dict[str, float | None]:
    inside = [s for s in samples if s.t in w]
    before = [s for s in samples if s.t <= w.start][-1:] or inside[:1]
    after = ([s for s in samples if s.t >= w.end][:1]) or inside[-1:]
    out: dict[str, float | None] = {}
    if not before or not after or after[0].t <= before[0].t:
        return out
    a, b = before[0], after[0]
    span = b.t - a.t

    def delta(name: str, route_prefix: str | None = None, **labels: str) -> float | None:
        # A series not exported yet at the earlier sample had counted nothing.
        va, vb = a.total(name, route_prefix, **labels), b.total(name, route_prefix, **labels)
        return None if vb is None else max(0.0, vb - (va or 0.0))

    requests = delta("obslab_http_requests_total", route_prefix="/v1/")
    published = delta("obslab_publish_outcomes_total", outcome="succeeded")
    failed = delta("obslab_publish_outcomes_total", outcome="failed")
    out["request_rate"] = None if requests is None else requests / span
    out["requests_per_publish"] = None if requests is None or not published or published < 5 \
        else requests / published
    out["counted_failed"] = failed
    hits, misses = delta("obslab_feed_cache_requests_total", result="hit"), delta(
        "obslab_feed_cache_requests_total", result="miss")
    out["cache_hit_rate"] = None if hits is None or misses is None or hits + misses < 5 else hits / (hits + misses)
    cpu = delta("obslab_process_cpu_seconds_total", service="publish-api")
    out["cpu_per_s"] = None if cpu is None else cpu / span
    depth = [s.total("obslab_transcode_queue_depth") for s in inside + [b]]
    depth = [d for d in depth if d is not None]
    out["queue_depth_max"] = max(depth) if depth else None
    mem = [s.total("obslab_process_resident_memory_bytes", service="publish-api") for s in [a] + inside + [b]]
    mem = [m for m in mem if m is not None]
    out["memory_mb_growth"] = (max(mem) - mem[0]) / 1e6 if mem else None
    out["db_slot_timeouts"] = delta("obslab_db_slot_timeouts_total")
    # Requests per second of each class an operator can shed (contract.faults.SHED_CLASSES): which load can wait.
    for name, route in SHED_CLASSES.items():
        method, path = route.split(" ", 1)
        # The metric's route label is Flask's rule (/v1/uploads/<upload_id>), the class's the OpenAPI path.
        count = delta("obslab_http_requests_total", method=method, route=re.sub(r"\{(\w+)\}", r"<\1>", path))
        out[f"shed_class_rate_{name}"] = None if count is None else count / span
    lost = delta("obslab_events_lost_total", reason="dropped_fault")
    out["events_dropped"] = lost
    return out


def _feed_p95(samples: Sequence[MetricSample], w: Window) -> float | None:
    from toolkit.drills.measure import _histogram_quantile

    value, n = _histogram_quantile(samples, w, "obslab_http_request_duration_seconds", 0.95, "feed")
    return None if value is None or n < _MIN_COUNT else 1000 * value


def _signals(attempts: Sequence[Attempt], samples: Sequence[MetricSample], w: Window,
             definition: SliDefinition = DEFAULT_SUCCESS) -> dict[str, float | None]:
    inside = [a for a in attempts if a.ended is not None and a.ended in w]
    out = _attempt_signals(inside, definition)
    out["attempt_rate"] = len(inside) / w.length_s if w.length_s > 0 else None
    out.update(_metric_signals(samples, w))
    out["feed_p95_ms"] = _feed_p95(samples, w)
    if out.get("counted_failed") is not None:
        logged = failed_outcomes_in(attempts, w)
        out["failure_events_missing"] = max(0.0, out["counted_failed"] - logged)
        out["failure_events_missing_share"] = (out["failure_events_missing"] / out["counted_failed"]
                                               if out["counted_failed"] else 0.0)
    return out


# Material change of a signal against the baseline: (absolute, relative) rise needed.
_MATERIAL_RISE = {
    "failure_rate": (0.04, 0.0),
    "cancel_rate": (0.04, 0.0),
    "retries_per_attempt": (0.25, 0.0),
    "p99_processing_ms": (250.0, 0.5),
    "p95_e2e_ms": (400.0, 1.0),
    "requests_per_publish": (2.0, 0.5),
    "queue_depth_max": (3.0, 0.0),
    "memory_mb_growth": (30.0, 0.0),
    "feed_p95_ms": (15.0, 1.0),
    "failure_events_missing": (2.0, 0.0),
    "db_slot_timeouts": (5.0, 0.0),
}
_MATERIAL_DROP = {"cache_hit_rate": 0.3}


def _unlikely(rate: float | None, n: float | None, base_rate: float | None, alpha: float = 1e-3) -> bool:
    if rate is None or not n:
        return False
    from scipy.stats import binomtest

    k = round(rate * n)
    return binomtest(k, int(n), max(base_rate or 0.0, 0.01), alternative="greater").pvalue < alpha


def _moved(name: str, base: float | None, now: float | None) -> bool:
    if now is None:
        return False
    if name in _MATERIAL_DROP:
        return base is not None and base - now >= _MATERIAL_DROP[name]
    absolute, relative = _MATERIAL_RISE[name]
    ref = base if base is not None else 0.0
    return now - ref >= absolute and now >= ref * (1 + relative)


def find_incident_window(attempts: Sequence[Attempt], samples: Sequence[MetricSample], start: float,
                         end: float, definition: SliDefinition = DEFAULT_SUCCESS
                         ) -> tuple[Window, Window, tuple[str, ...]]:
    """(baseline, incident, signals that moved).

    The time after the baseline is cut into bins; a two-bin window is marked when a signal
    moved materially from the baseline there and in the next window too (one noisy window
    is not an incident). The incident spans the longest run of marked windows.
    """
    span = end - start
    baseline = Window(start + WARMUP_SHARE * span, start + BASELINE_SHARE * span)
    base = _signals(attempts, samples, baseline, definition)
    width = (end - baseline.end) / _BINS
    windows = [Window(baseline.end + i * width, min(end, baseline.end + (i + 2) * width)) for i in range(_BINS - 1)]
    hits_per_window: list[set[str]] = []
    for w in windows:
        now = _signals(attempts, samples, w, definition)
        hit = {name for name in list(_MATERIAL_RISE) + list(_MATERIAL_DROP)
               if name not in ("memory_mb_growth", "queue_depth_max") and _moved(name, base.get(name), now.get(name))}
        # A rate over few attempts moves by chance: keep it only if unlikely under the baseline rate.
        for name in ("failure_rate", "cancel_rate"):
            if name in hit and not _unlikely(now.get(name), now.get("attempts"), base.get(name)):
                hit.discard(name)
        # Memory and queue depth are levels, not rates: compare the window with the baseline's level.
        if now.get("queue_depth_max") is not None and now["queue_depth_max"] - (base.get("queue_depth_max") or 0) >= 3:
            hit.add("queue_depth_max")
        if (now.get("memory_mb_growth") or 0) >= 8:
            hit.add("memory_mb_growth")
        hits_per_window.append(hit)
    marked, moved = [], set()
    for i, hit in enumerate(hits_per_window):
        neighbours = (hits_per_window[i - 1] if i > 0 else set()) | (
            hits_per_window[i + 1] if i + 1 < len(hits_per_window) else set())
        confirmed = hit & neighbours
        if confirmed:
            marked.append(i)
            moved |= confirmed
    if not marked:
        return baseline, Window(baseline.end, end), ()
    # The longest run of marked windows (a one-window gap does not break it).
    runs: list[list[int]] = [[marked[0]]]
    for i in marked[1:]:
        if i - runs[-1][-1] <= 2:
            runs[-1].append(i)
        else:
            runs.append([i])
    best = max(runs, key=lambda r: (r[-1] - r[0] + 1, len(r)))
    return baseline, Window(windows[best[0]].start, windows[best[-1]].end), tuple(sorted(moved))


# -- detectors -----------------------------------------------------------------------------------

def _rise(ev: Evidence, name: str) -> float:
    base, now = ev.get(name)
    if now is None:
        return 0.0
    return now - (base or 0.0)


def _ratio(ev: Evidence, name: str) -> float:
    base, now = ev.get(name)
    if now is None or not base:
        return 1.0
    return now / base


def _clip(x: float, hi: float = 1.0) -> float:
    return max(0.0, min(hi, x))


def _canary_evidence(attempts: Sequence[Attempt], w: Window, baseline: Window,
                     definition: SliDefinition) -> tuple[float, str]:
    """Are the incident's new failures concentrated in the canary beyond its share of traffic? (binomial test)"""
    from scipy.stats import binomtest

    inside, failed = _counted([a for a in attempts if a.ended is not None and a.ended in w], definition)
    canary = [a for a in inside if a.cohort.get("release") == "canary"]
    if len(canary) < 3 or len(canary) == len(inside):
        return 0.0, "no canary traffic to compare"
    failed_canary = sum(1 for a in failed if a.cohort.get("release") == "canary")
    share = len(canary) / len(inside)
    why = (f"{failed_canary} of {len(failed)} failures in the canary, which carries {share:.1%} of attempts "
           f"(n={len(inside)})")
    if failed_canary < 2:
        return 0.0, why
    p = binomtest(failed_canary, len(failed), share, alternative="greater").pvalue
    why += f", binomial p={p:.2g}"
    return _clip((-math.log10(max(p, 1e-300)) - 1.5) / 1.5, 1.5), why


def _detectors(ev: Evidence, attempts: Sequence[Attempt], definition: SliDefinition) -> dict[str, tuple[float, str]]:
    d: dict[str, tuple[float, str]] = {}
    fail_rise = _rise(ev, "failure_rate")
    storage_rise = _rise(ev, "upload_failure_rate")
    transcode_rise = _rise(ev, "processing_failure_rate")
    retry_rise = _rise(ev, "retries_per_attempt")
    rpp_ratio = _ratio(ev, "requests_per_publish")
    missing_share = ev.get("failure_events_missing_share")[1] or 0.0
    missing = ev.get("failure_events_missing")[1] or 0.0
    # A canary is judged against stable over the whole rollout, not only where global signals moved:
    # a 5 % cohort rarely moves them.
    canary_score, canary_why = _canary_evidence(attempts, ev.rollout or ev.incident, ev.baseline, definition)
    d["canary_regression"] = (canary_score, canary_why)
    d["storage_outage"] = (_clip((storage_rise - 0.01) / 0.05) * 1.2,
                           f"publishes failing because chunks could not be stored up {storage_rise:+.1%}")
    d["transcoder_errors"] = (_clip((transcode_rise - 0.01) / 0.05) * (0.5 if canary_score > 0 else 1.0),
                              f"publishes failing after the upload (transcode/publish) up {transcode_rise:+.1%}")
    # A retry storm is retries multiplying the load: many extra tries per attempt AND clearly more
    # requests per successful publish. Failing chunks retried sparingly are the failures themselves.
    amplified = retry_rise >= 1.0 and (rpp_ratio >= 1.3 or retry_rise >= 2.0)
    d["retry_amplification"] = (max(_clip((rpp_ratio - 1.2) / 0.3), _clip((retry_rise - 1.0) / 1.5)) * 1.3
                                if retry_rise >= 1.0 else 0.0,
                                f"requests per publish ×{rpp_ratio:.2f}, chunk retries per attempt {retry_rise:+.2f}")
    d["chunk_upload_failures"] = (_clip(retry_rise / 0.3) * (1.0 if storage_rise < 0.05 else 0.5)
                                  * (0.5 if amplified else 1.0),
                                  f"chunk retries per attempt {retry_rise:+.2f}")
    p99_ratio = _ratio(ev, "p99_processing_ms")
    tc_ratio = _ratio(ev, "p99_transcode_ms")
    depth_rise = _rise(ev, "queue_depth_max")
    # Latency that a growing queue explains is queueing, not a slower transcoder.
    d["transcoder_slow"] = (_clip((max(tc_ratio, p99_ratio) - 1.5) / 1.0) * (0.5 if depth_rise >= 3 else 1.0),
                            f"p99 transcode ×{tc_ratio:.2f}, p99 processing ×{p99_ratio:.2f}")
    d["queue_backlog"] = (_clip(depth_rise / 5.0) * 1.4, f"transcode queue depth up by {depth_rise:.0f}")
    hit_drop = -_rise(ev, "cache_hit_rate")
    feed_rise = _rise(ev, "feed_p95_ms")
    d["cache_regression"] = (_clip((hit_drop - 0.1) / 0.3) * 1.3, f"feed cache hit rate down {hit_drop:.0%}")
    d["database_slow"] = (_clip(feed_rise / 50.0) * 0.6 * (1.0 if hit_drop < 0.2 else 0.3),
                          f"feed p95 up {feed_rise:.0f} ms")
    dropped = ev.get("events_dropped")[1] or 0.0
    d["instrumentation_loss"] = (max(_clip(missing_share / 0.3) * 1.5 if missing >= 2 else 0.0,
                                     _clip(dropped / 20.0) * 1.5),
                                 f"{missing:.0f} failures counted by the service have no publish_failed event; "
                                 f"obslab_events_lost_total{{reason=dropped_fault}} +{dropped:.0f}")
    cancel_rise = _rise(ev, "cancel_rate")
    d["client_auto_cancel"] = (_clip(cancel_rise / 0.05) * 1.2, f"cancel rate {cancel_rise:+.1%}")
    mem = ev.get("memory_mb_growth")[1] or 0.0
    rate_ratio = _ratio(ev, "attempt_rate")
    d["memory_leak"] = (_clip((mem - 20) / 40.0) * 1.3 if rate_ratio < 1.5 else 0.0,
                        f"publish-api memory +{mem:.0f} MB with traffic ×{rate_ratio:.2f}")
    cpu_ratio = _ratio(ev, "cpu_per_s")
    d["cpu_saturation"] = (_clip((cpu_ratio - 1.5) / 1.0) * 0.5, f"API CPU ×{cpu_ratio:.2f}")
    # Queries that gave up waiting for a database connection: the pool, not the transcoder or the chunks, failed.
    slot_timeouts = _rise(ev, "db_slot_timeouts")
    d["database_saturation"] = (_clip(slot_timeouts / 20.0) * 1.5,
                                f"database queries timed out waiting for a connection: +{slot_timeouts:.0f}")
    peak = ev.get("attempt_rate_peak_ratio")[1] or 1.0
    d["traffic_spike"] = (_clip((peak - 1.4) / 0.6) * 0.7 * (0.3 if fail_rise > 0.04 else 1.0),
                          f"peak attempts per second ×{peak:.2f} the drill's median")
    return d


def score_causes(drill: Drill, ev: Evidence, attempts: Sequence[Attempt],
                 definition: SliDefinition = DEFAULT_SUCCESS) -> tuple[CauseScore, ...]:
    found = _detectors(ev, attempts, definition)
    scores = [CauseScore(c, round(found.get(c, (0.0, "no detector"))[0], 4), found.get(c, (0.0, "no detector"))[1])
              for c in drill.questions.cause_choices]
    return tuple(sorted(scores, key=lambda s: (-s.score, drill.questions.cause_choices.index(s.cause))))


# What the top cause says a hurt attempt is, for the cohort breakdown.
def _hurt_predicate(cause: str, baseline_attempts: Sequence[Attempt]) -> tuple[str, Callable[[Attempt], bool] | None]:
    if cause in ("storage_outage", "transcoder_errors", "canary_regression", "database_saturation"):
        return "ended publish_failed", lambda a: a.outcome == "failed"
    if cause in ("chunk_upload_failures", "retry_amplification"):
        return "needed at least one chunk retry", lambda a: a.chunk_retries > 0
    if cause == "client_auto_cancel":
        return "ended upload_cancelled", lambda a: a.outcome == "cancelled"
    if cause == "queue_backlog":
        base = [a.queue_wait_ms for a in baseline_attempts if a.queue_wait_ms is not None]
        limit = max(2 * (percentile(base, 0.99) or 0.0), 250.0)
        return f"waited in the transcode queue longer than {limit:.0f} ms", \
            lambda a: a.queue_wait_ms is not None and a.queue_wait_ms > limit
    if cause in ("transcoder_slow", "database_slow"):
        base = [a.processing_ms for a in baseline_attempts if a.processing_ms is not None]
        limit = max(percentile(base, 0.99) or 0.0, 2 * (percentile(base, 0.5) or 0.0), 100.0)
        return f"processing latency above {limit:.0f} ms (baseline p99)", \
            lambda a: a.processing_ms is not None and a.processing_ms > limit
    return "", None  # metric-only causes: no per-attempt signal


def _cohort_counts(attempts: Sequence[Attempt], hurt: Callable[[Attempt], bool],
                   dimensions: Sequence[str]) -> dict[tuple, list[int]]:
    """(dim, value) singles and pairs → [attempts, hurt], in one pass."""
    counts: dict[tuple, list[int]] = {}
    for a in attempts:
        bad = 1 if hurt(a) else 0
        items = [(d, a.cohort.get(d)) for d in dimensions if a.cohort.get(d) is not None]
        keys = [(item,) for item in items] + list(itertools.combinations(items, 2))
        for key in keys:
            c = counts.setdefault(key, [0, 0])
            c[0] += 1
            c[1] += bad
    return counts


def _split_z(b_in: int, n_in: int, b_out: int, n_out: int) -> float:
    """z of (hurt rate inside − hurt rate outside), pooled standard error; 0 without both sides."""
    if not n_in or not n_out:
        return 0.0
    pooled = (b_in + b_out) / (n_in + n_out)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_in + 1 / n_out))
    return (b_in / n_in - b_out / n_out) / se if se > 0 else 0.0


def _interaction(key: tuple, n_c: int, b_c: int, counts: Mapping[tuple, Sequence[int]]) -> bool:
    """A pair hurt far more than the rest of each of its parents (both dimensions matter)."""
    for item in key:
        n_p, b_p = counts.get((item,), (0, 0))
        if _split_z(b_c, n_c, b_p - b_c, n_p - n_c) < _INTERACTION_Z:
            return False
    return True


def rank_cohorts(attempts: Sequence[Attempt], incident: Window, baseline: Window, hurt: Callable[[Attempt], bool],
                 dimensions: Sequence[str], top: int = 10) -> tuple[CohortScore, ...]:
    inside = [a for a in attempts if a.ended is not None and a.ended in incident]
    before = [a for a in attempts if a.ended is not None and a.ended in baseline]
    n_all = len(inside)
    b_all = sum(1 for a in inside if hurt(a))
    if n_all == 0 or b_all == 0:
        return (CohortScore({}, 0.0, b_all, n_all, 0.0),)
    base_rate = sum(1 for a in before if hurt(a)) / len(before) if before else 0.0
    scores = [CohortScore({}, round(wilson_lower(b_all, n_all) - base_rate, 4), b_all, n_all, b_all / n_all)]
    now_counts = _cohort_counts(inside, hurt, dimensions)
    was_counts = _cohort_counts(before, hurt, dimensions)
    for key, (n_c, b_c) in now_counts.items():
        if b_c == 0:
            continue
        n_rest, b_rest = n_all - n_c, b_all - b_c
        r_rest = b_rest / n_rest if n_rest else 0.0
        n_was, b_was = was_counts.get(key, (0, 0))
        r_was = b_was / n_was if n_was >= 5 else r_rest
        coverage = b_c / b_all
        score = coverage * (wilson_lower(b_c, n_c) - max(r_rest, r_was))
        # A narrower cohort must explain clearly more than the broader one it refines.
        if len(key) > 1 and not _interaction(key, n_c, b_c, now_counts):
            score *= _PAIR_PENALTY ** (len(key) - 1)
        scores.append(CohortScore(dict(key), round(score, 4), b_c, n_c, b_c / n_c))
    scores.sort(key=lambda s: (-s.score, len(s.cohort)))
    return tuple(scores[:top])


_LABEL = re.compile(r'(\w+)="([^"]*)"')


def _outcome_counts(sample: MetricSample) -> list[tuple[dict[str, str], float]]:
    out = []
    for key, value in sample.values.items():
        if key.startswith("obslab_publish_outcomes_total{"):
            out.append((dict(_LABEL.findall(key)), value))
    return out


def rank_missing_event_cohorts(attempts: Sequence[Attempt], samples: Sequence[MetricSample], incident: Window,
                               dimensions: Sequence[str], top: int = 10) -> tuple[CohortScore, ...]:
    """Where are outcomes the service counted (Prometheus) missing from the event log?

    Each cohort value scores by its share of the missing outcomes times the share of its own
    outcomes that are missing; "everyone" by the overall share missing.
    """
    before = [s for s in samples if s.t <= incident.start][-1:]
    after = [s for s in samples if s.t >= incident.end][:1] or samples[-1:]
    if not before or not after:
        return (CohortScore({}, 0.0, 0, 0, 0.0),)
    a, b = before[0], after[0]
    counted: dict[tuple[str, str] | None, float] = {}
    start_counts = {tuple(sorted(lbl.items())): v for lbl, v in _outcome_counts(a)}
    for labels, value in _outcome_counts(b):
        delta = value - start_counts.get(tuple(sorted(labels.items())), 0.0)
        counted[None] = counted.get(None, 0.0) + delta
        for dim in dimensions:
            if dim in labels:
                counted[(dim, labels[dim])] = counted.get((dim, labels[dim]), 0.0) + delta
    span = Window(a.t, b.t)
    logged: dict[tuple[str, str] | None, int] = {}
    for att in attempts:
        if att.ended is None or att.ended not in span or att.outcome not in ("succeeded", "failed", "cancelled"):
            continue
        logged[None] = logged.get(None, 0) + 1
        for dim in dimensions:
            value = att.cohort.get(dim)
            if value is not None:
                logged[(dim, value)] = logged.get((dim, value), 0) + 1
    total_counted = counted.get(None, 0.0)
    total_missing = max(0.0, total_counted - logged.get(None, 0))
    if total_counted <= 0 or total_missing <= 0:
        return (CohortScore({}, 0.0, 0, int(total_counted), 0.0),)
    scores = [CohortScore({}, round(total_missing / total_counted, 4), int(total_missing), int(total_counted),
                          total_missing / total_counted)]
    for key, n in counted.items():
        if key is None or n <= 0:
            continue
        missing = max(0.0, n - logged.get(key, 0))
        if missing <= 0:
            continue
        score = (missing / total_missing) * (missing / n)
        scores.append(CohortScore({key[0]: key[1]}, round(score, 4), int(missing), int(n), missing / n))
    scores.sort(key=lambda c: (-c.score, len(c.cohort)))
    return tuple(scores[:top])


def _peak_rate_ratio(attempts: Sequence[Attempt], w: Window, bins: int = 10) -> float | None:
    """Busiest tenth of ``w`` against its median tenth, by attempts started: a spike is a transient peak
    (a load that merely ramps up or stays high is not)."""
    width = w.length_s / bins
    counts = [0] * bins
    for a in attempts:
        if a.started in w:
            counts[min(bins - 1, int((a.started - w.start) / width))] += 1
    ordered = sorted(counts)
    median = ordered[bins // 2]
    return None if median < 3 else max(counts) / median


def diagnose(drill: Drill, attempts: Sequence[Attempt], samples: Sequence[MetricSample], start: float, end: float,
             spec: SloSpec) -> Diagnosis:
    """Answer the drill's questions from its attempts (read once, ``measure.read_drill_events``) and samples."""
    definition = success_definition(spec)
    baseline, incident, moved = find_incident_window(attempts, samples, start, end, definition)
    base_sig = _signals(attempts, samples, baseline, definition)
    inc_sig = _signals(attempts, samples, incident, definition)
    values = {k: (base_sig.get(k), inc_sig.get(k)) for k in set(base_sig) | set(inc_sig)}
    values["attempt_rate_peak_ratio"] = (None, _peak_rate_ratio(attempts, Window(baseline.end, end)))
    ev = Evidence(baseline, incident, values, rollout=Window(baseline.end, end))
    causes = score_causes(drill, ev, attempts, definition)
    if causes[0].cause == "canary_regression":
        # A canary is judged over the rollout: its cohort is too small to mark a window in global signals.
        incident = ev.rollout
    before = [a for a in attempts if a.ended is not None and a.ended in baseline]
    hurt_by, hurt = _hurt_predicate(causes[0].cause, before)
    if causes[0].cause == "instrumentation_loss":
        cohorts = rank_missing_event_cohorts(attempts, samples, incident, drill.questions.cohort_dimensions)
        hurt_by = "outcomes the service counted (obslab_publish_outcomes_total) that have no terminal event in the log"
    elif hurt is None:
        n = sum(1 for a in attempts if a.ended is not None and a.ended in incident)
        cohorts: tuple[CohortScore, ...] = (CohortScore({}, 1.0, 0, n, 0.0),)
        hurt_by = "no per-attempt signal: the evidence is in service-wide metrics"
    else:
        cohorts = rank_cohorts(attempts, incident, baseline, hurt, drill.questions.cohort_dimensions)
    impact = measure_impact(attempts, samples, incident, baseline, spec)
    metric = drill.questions.impact.metric
    return Diagnosis(incident, causes, cohorts, hurt_by, metric, impact.value(metric), ev, moved)


def solve(run, spec: SloSpec) -> Diagnosis:
    """Diagnose a finished run's drill from its events (read once) and metric samples.

    Analysis only: recording the answer is the runner's job (``runner.record_diagnosis``).
    """
    from toolkit.drills.schema import find_drill

    state = run.read_state()
    drill = find_drill(state.drill_id)
    events_dir = Path(state.events_dir or Path(state.data_dir) / "events")
    end = state.started_at + state.duration_s
    drill_events = read_drill_events(events_dir, Window(state.started_at, end), spec.abandon_after_s, as_of=end)
    samples = read_metric_samples(run.metrics_file)
    return diagnose(drill, drill_events.attempts, samples, state.started_at, end, spec)


def diagnosis_json(d: Diagnosis) -> dict:
    return {
        "incident": [d.incident.start, d.incident.end],
        "signals_moved": list(d.signals_moved),
        "causes": [{"cause": c.cause, "score": c.score, "why": c.why} for c in d.causes],
        "hurt_by": d.hurt_by,
        "cohorts": [{"cohort": dict(c.cohort), "score": c.score, "hurt": c.hurt, "attempts": c.attempts}
                    for c in d.cohorts],
        "impact": {"metric": d.impact_metric, "value": d.impact_value},
        "evidence": {k: list(v) for k, v in d.evidence.values.items()},
    }


def choose_mitigation(choices: Sequence[str], diagnosis: Mapping) -> tuple[str, str] | None:
    """The mitigation a diagnosis (``diagnosis_json``) points to among a drill's choices, and why; None when none
    follows from it. From the diagnosed cause and hurt cohort alone, never from the drill's answer:

    - a canary regression: roll back the flag the hurt cohort names (``release=canary`` → ``rollback release``),
      or the only flag offered: traffic leaves the variant, and the failures with it;
    - chunk upload failures: each try of a chunk fails on its own, so more tries spaced by backoff make a
      chunk's failure rare (the backoff choice with the highest cap; immediate retries change the timing only);
    - retry amplification: fewer, spaced tries (the backoff choice with the lowest cap, else no retries);
    - database saturation: shed the request class whose traffic grew the most during the incident.
    """
    from toolkit.drills.mitigation import parse_action

    cause = (diagnosis.get("causes") or [{}])[0].get("cause")
    cohorts = diagnosis.get("cohorts") or []
    cohort = dict(cohorts[0]["cohort"]) if cohorts else {}
    actions = [parse_action(c) for c in choices]
    if cause == "canary_regression":
        rollbacks = [a for a in actions if a.verb == "rollback"]
        named = [a for a in rollbacks if a.arg in cohort] or (rollbacks if len(rollbacks) == 1 else [])
        if named:
            a = named[0]
            where = f"{a.arg}={cohort[a.arg]}" if a.arg in cohort else f"the {a.arg} flag's variant"
            return a.text, f"the failures are in {where}: rolling the flag back moves new traffic off it"
    backoff = sorted((a for a in actions if a.verb == "retry-policy" and a.retry_policy[0] == "backoff"),
                     key=lambda a: a.retry_policy[1] or 0)
    if cause == "chunk_upload_failures" and backoff:
        return backoff[-1].text, ("chunk tries fail one by one and retries succeed: more tries, spaced by jittered "
                                  "backoff, make a chunk's failure rare for little extra load")
    if cause == "database_saturation":
        # The pool is shared: shed the class whose traffic grew the most during the incident (the load that
        # took the connections), with the deepest cut offered.
        evidence = diagnosis.get("evidence") or {}

        def growth(a) -> float:  # requests per second added: the connections that load took
            before, during = (evidence.get(f"shed_class_rate_{a.shed[0]}") or [None, None])[:2]
            return (during or 0.0) - (before or 0.0)

        sheds = [a for a in actions if a.verb == "shed-load"]
        if sheds:
            a = max(sheds, key=lambda a: (growth(a), a.shed[1]))
            return a.text, (f"the database's connections are exhausted and {a.shed[0]} requests grew by "
                            f"{growth(a):.1f}/s: shedding them gives the publishes their connections back")
    if cause == "retry_amplification":
        fewer = backoff[:1] or [a for a in actions if a.text == "retry-policy none"]
        if fewer:
            return fewer[0].text, "the clients' retries multiply the load: fewer tries, spaced by backoff"
    return None


# -- experiment drills: did the change cause the movement, and can the comparison be trusted? -------------

# How far beyond noise a difference must be before the solver calls it (in standard errors), and how close
# to nothing a stratified difference must be to call the arms "flat" within cohorts.
_EXPERIMENT_Z = 3.0
_FLAT_Z = 2.0
# A cohort mix this unlikely under "both arms serve the same traffic" is a shift (chi-square test).
_MIX_ALPHA = 1e-3
# Arms whose outcome times share less than this part of the shorter arm's span ran one after the other.
_CONCURRENT_SHARE = 0.2


@dataclass(frozen=True)
class ExperimentDiagnosis:
    """The solver's verdict on an experiment drill's comparison, with every check it ran."""

    verdict: str
    evidence: str
    why: str
    checks: Mapping[str, object]

    def to_json(self) -> dict:
        return {"kind": "experiment", "verdict": self.verdict, "evidence": self.evidence, "why": self.why,
                "checks": dict(self.checks)}


def _expected_split(drill: Drill) -> tuple[float, float] | None:
    """The split the rollout intended (control, treatment), from the drill's flag rollout (the service logs it as
    a flag_changed event, so a learner sees it too) when the arms are a flag's variants."""
    exp = drill.experiment
    for flag, (variant, percent) in drill.setup.flags.items():
        if exp.treatment == {flag: variant} and set(exp.control) == {flag} and 0 < percent < 100:
            return (100.0 - percent) / 100.0, percent / 100.0
    return None


def _compare_command(events, drill: Drill, window: Window, spec: SloSpec) -> dict | None:
    """What `obslab compare --control … --treatment … --expected-split …` says over the same window: the judge's
    naive verdict and its sample-ratio check on users."""
    from datetime import datetime, timezone

    from toolkit.analysis.compare import Window as CompareWindow, compare_attempts, parse_selector
    from toolkit.analysis.judge import DEFAULT_CONFIG, with_spec
    from toolkit.events.attempts import attempts as attempts_table

    exp = drill.experiment
    sel = {arm: parse_selector(",".join(f"{k}={v}" for k, v in s.items()), arm)
           for arm, s in (("control", exp.control), ("treatment", exp.treatment))}
    utc = (lambda t: datetime.fromtimestamp(t, tz=timezone.utc))
    rel = attempts_table(events, abandon_after_s=spec.abandon_after_s, name="experiment_attempts")
    result = compare_attempts(rel, sel["control"], sel["treatment"],
                              window=CompareWindow(utc(window.start), utc(window.end)),
                              config=with_spec(DEFAULT_CONFIG, spec), expected_split=_expected_split(drill),
                              abandon_after_s=spec.abandon_after_s).to_dict()
    return {"verdict": result["verdict"], "srm": result["srm"],
            "users": [result["control"]["users"], result["treatment"]["users"]]}


def diagnose_experiment(drill: Drill, attempts: Sequence[Attempt], samples: Sequence[MetricSample], start: float,
                        end: float, spec: SloSpec, events=None) -> ExperimentDiagnosis:
    """Broad to narrow, as an analyst should: first whether the arms can be compared at all (their sizes against
    the intended split and against the service's own counters), then whether they serve the same traffic (the
    cohort mix, and the comparison within each cohort), then the tail beside the mean, and only then the
    overall difference."""
    from toolkit.drills import experiment as ex

    exp = drill.experiment
    definition = success_definition(spec)
    window = ex.analysis_window(samples, start, end)
    control, treatment = ex.split_arms(attempts, exp, window)
    naive = ex.effect(control, treatment, exp.metric, definition)
    checks: dict[str, object] = {"window": [window.start, window.end], "metric": exp.metric,
                                 "naive": naive.to_json()}
    compare = _compare_command(events, drill, window, spec) if events is not None else None
    checks["compare"] = compare
    counters = ex.counter_check(control, treatment, samples, exp, window, definition)
    checks["counters"] = None if counters is None else counters.to_json()
    user_srm = bool(compare and compare.get("srm") and compare["srm"].get("mismatch"))
    if (counters is not None and counters.srm is not None and counters.srm.mismatch) or user_srm:
        why = (f"the log holds {counters.logged[0]} control and {counters.logged[1]} treatment attempts where the "
               f"service counted {counters.counted[0]} and {counters.counted[1]} (chi-square p = "
               f"{counters.srm.p_value:.2g})" if counters is not None and counters.srm is not None
               and counters.srm.mismatch else f"the arms' users are not the intended split ({compare['srm']})")
        return ExperimentDiagnosis("invalid_sample_ratio", "sample_ratio", why, checks)
    arm_dims = set(exp.control) | set(exp.treatment)
    shifts = [m for m in ex.mix_shifts(control, treatment, [d for d in ANSWER_DIMENSIONS if d not in arm_dims])
              if m.p_value < _MIX_ALPHA]
    checks["mix_shifts"] = [m.to_json() for m in shifts]
    # Arms that ran one after the other (a change shipped to everyone at one moment): no concurrent control.
    overlap = ex.time_overlap(control, treatment)
    checks["time_overlap"] = None if overlap is None else overlap.to_json()
    before_after = overlap is not None and overlap.overlap_share < _CONCURRENT_SHARE
    for shift in shifts:
        within = ex.stratified_effect(control, treatment, shift.dimension, exp.metric, definition)
        checks.setdefault("stratified", {})[shift.dimension] = within.to_json()
        nz, wz = naive.harm_z, within.harm_z
        if nz is None or wz is None or abs(nz) < _EXPERIMENT_Z:
            continue
        if (nz * wz < 0 or abs(wz) < _FLAT_Z) and before_after:
            why = (f"the arms ran one after the other (they share {overlap.overlap_share:.0%} of their time span), "
                   f"and the {shift.dimension} mix changed at that moment (chi-square p = {shift.p_value:.2g}); "
                   f"before against after the treatment looks {'worse' if nz > 0 else 'better'} (z = {nz:+.1f} "
                   f"towards harm), within each {shift.dimension} it is "
                   f"{'flat' if abs(wz) < _FLAT_Z else ('worse' if wz > 0 else 'better')} (z = {wz:+.1f})")
            return ExperimentDiagnosis("invalid_before_after", "cohort_mix", why, checks)
        if nz * wz < 0 or abs(wz) < _FLAT_Z:
            why = (f"{shift.dimension} mix differs between the arms (chi-square p = {shift.p_value:.2g}); overall "
                   f"the treatment looks {'worse' if nz > 0 else 'better'} (z = {nz:+.1f} towards harm), within each "
                   f"{shift.dimension} it is {'flat' if abs(wz) < _FLAT_Z else ('worse' if wz > 0 else 'better')} "
                   f"(z = {wz:+.1f})")
            return ExperimentDiagnosis("invalid_mix_shift", "cohort_mix", why, checks)
    if exp.metric == "success_rate":
        # Did attempts move between outcome categories (one the rate counts, one it leaves out) rather than
        # users getting fewer publishes? Then the rate's definition moved, not the product.
        shares = ex.outcome_shares(control, treatment)
        checks["outcome_shares"] = {k: e.to_json() for k, e in shares.items()}
        moved, cancelled, lost = (shares["failed_share"].z, shares["cancelled_share"].z,
                                  shares["not_published_share"].z)
        if (naive.harm_z is not None and abs(naive.harm_z) >= _EXPERIMENT_Z and moved is not None
                and cancelled is not None and lost is not None and abs(moved) >= _EXPERIMENT_Z
                and abs(cancelled) >= _EXPERIMENT_Z and moved * cancelled < 0 and abs(lost) < _FLAT_Z):
            why = (f"the treatment's failed share moved {shares['failed_share'].difference:+.1%} (z = {moved:+.1f}) "
                   f"and its cancelled share {shares['cancelled_share'].difference:+.1%} (z = {cancelled:+.1f}), "
                   f"while the share of attempts that did not publish stayed put (z = {lost:+.1f})")
            return ExperimentDiagnosis("invalid_metric_definition", "metric_definition", why, checks)
    tail = ex.tail_check(control, treatment, exp.metric, definition)
    checks["tail"] = None if tail is None else tail.to_json()
    if tail is not None and (tail.mean.harm_z or 0.0) <= -_EXPERIMENT_Z and tail.tail_worse:
        why = (f"the mean improved ({tail.mean.difference:+.0f} ms, z = {tail.mean.z:+.1f}) but p{tail.quantile * 100:g} "
               f"worsened by {tail.p_difference:+.0f} ms (95 % bootstrap interval {tail.p_ci[0]:+.0f} to "
               f"{tail.p_ci[1]:+.0f} ms)")
        return ExperimentDiagnosis("treatment_worse", "tail_percentiles", why, checks)
    nz = naive.harm_z
    peek = None
    if exp.looks:
        split = _expected_split(drill)
        peek = ex.peeking_check(control, treatment, window, exp.looks, exp, 100 * (split[1] if split else 0.5),
                                definition)
        checks["looks"] = peek.to_json()
    if peek is not None and peek.naive_hits and (nz is None or abs(nz) < _EXPERIMENT_Z):
        look, metric, p = peek.naive_hits[0]
        why = (f"a peeker testing {len(peek.looks)} windows ({peek.tests} tests at p < {peek.naive_alpha:g}) finds "
               f"{len(peek.naive_hits)} 'significant' (about {peek.naive_alpha * peek.tests:.0f} expected by chance), "
               f"the first at look {look} ({metric}, p = {p:.2g}); with the rollout's always-valid rule "
               f"(the data so far at each look, {peek.always_valid_alpha:.2g} a metric) {len(peek.corrected_hits)} "
               f"look(s) cross; "
               f"over the whole run z = {nz if nz is not None else float('nan'):+.1f}")
        if not peek.corrected_hits:
            return ExperimentDiagnosis("no_real_difference", "repeated_looks", why, checks)
    if nz is not None and nz >= _EXPERIMENT_Z:
        return ExperimentDiagnosis("treatment_worse", "aggregate_rate", f"worse overall (z = {nz:+.1f})", checks)
    if nz is not None and nz <= -_EXPERIMENT_Z:
        return ExperimentDiagnosis("treatment_better", "aggregate_rate", f"better overall (z = {nz:+.1f})", checks)
    return ExperimentDiagnosis("no_real_difference", "aggregate_rate",
                               f"no difference beyond noise (z = {nz if nz is not None else float('nan'):+.1f})", checks)


def solve_experiment(run, spec: SloSpec) -> ExperimentDiagnosis:
    """Judge a finished experiment drill's comparison from its events (read once) and metric samples."""
    from toolkit.drills.schema import find_drill

    state = run.read_state()
    drill = find_drill(state.drill_id)
    events_dir = Path(state.events_dir or Path(state.data_dir) / "events")
    end = state.started_at + state.duration_s
    drill_events = read_drill_events(events_dir, Window(state.started_at, end), spec.abandon_after_s, as_of=end)
    samples = read_metric_samples(run.metrics_file)
    return diagnose_experiment(drill, drill_events.attempts, samples, state.started_at, end, spec,
                               drill_events.events)
