"""What a drill did, measured from the lab's events and the scheduler's metric samples.

Every figure carries its definition (``Figure.definition``): statistic, window,
segment and the count behind it. Attempts come from the SLI engine's attempts
table (``toolkit.events.attempts``) and are attributed to a window by their outcome time,
as ``obslab sli --since/--until`` counts them, so the report and the SLI agree.
Events are read once per question through the engine's reader (``read_drill_events``:
``toolkit.events.load_events`` and the per-attempt fold, as ``obslab sli`` reads them);
the rest is plain Python over small per-attempt rows, so the scoring math stays pure and testable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from toolkit.events.attempts import attempt_stats_table, outcome_at_sql
from toolkit.events import EventSet, load_events
from toolkit.measures.definitions import (Outcomes, SliDefinition, alert_timing, budget_figures, load_outcomes,
                                         sli_definition, to_us)
from toolkit.slo.spec import SloSpec

__all__ = [
    "Attempt",
    "Window",
    "Figure",
    "Impact",
    "MetricSample",
    "DrillEvents",
    "read_drill_events",
    "read_attempts",
    "failed_outcomes_in",
    "read_metric_samples",
    "percentile",
    "bad_and_total",
    "drill_outcomes",
    "measure_impact",
    "IMPACT_DEFINITIONS",
]


@dataclass(frozen=True)
class Window:
    """(start, end] in Unix seconds: the engine's window edges (``toolkit.measures.definitions.WINDOW_EDGES``),
    compared in whole microseconds as ``obslab sli --since/--until`` compares timestamps."""

    start: float  # exclusive
    end: float  # inclusive

    @property
    def length_s(self) -> float:
        return self.end - self.start

    def __contains__(self, t: float) -> bool:
        return to_us(self.start) < to_us(t) <= to_us(self.end)


@dataclass(frozen=True)
class Attempt:
    request_id: str
    started: float  # Unix seconds of upload_started
    cohort: Mapping[str, str]  # region, app_version, network_type, media_size_bucket, release, transcode_mode
    outcome: str | None  # succeeded | failed | cancelled | abandoned | None (in flight)
    ended: float | None  # outcome time: the terminal event, or when an abandoned attempt became abandoned
    last_event: float
    processing_ms: float | None  # upload_completed → publish_succeeded
    e2e_ms: float | None  # upload_started → publish_succeeded
    transcode_ms: float | None
    chunk_retries: int
    chunk_failures: int
    error_class: str | None
    synthetic: bool = True
    queue_wait_ms: float | None = None  # async transcode: time in the queue


@dataclass(frozen=True)
class MetricSample:
    t: float
    values: Mapping[str, float]

    def total(self, name: str, route_prefix: str | None = None, **labels: str) -> float | None:
        """Sum of the series named ``name`` whose labels include ``labels`` (and whose route starts
        with ``route_prefix``); None if there is none."""
        found, total = False, 0.0
        prefix = name + "{"
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        if route_prefix is not None:
            wanted.append(f'route="{route_prefix}')
        for key, value in self.values.items():
            if key.startswith(prefix) and all(w in key for w in wanted):
                found, total = True, total + value
        return total if found else None


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | None
    unit: str
    definition: str
    count: int | None = None  # events or attempts behind it


@dataclass(frozen=True)
class Impact:
    incident: Window
    baseline: Window
    figures: Mapping[str, Figure] = field(default_factory=dict)

    def value(self, name: str) -> float | None:
        fig = self.figures.get(name)
        return None if fig is None else fig.value


IMPACT_DEFINITIONS = {
    "failed_publishes": "publish attempts counted bad by the publish-success SLO (in total, not good: "
                        "failed or abandoned in the shipped slo.yaml) whose outcome fell in the incident window",
    "budget_spent_percent": "spent, of the engine's error budget figures (toolkit.measures.definitions.budget_figures): the "
                            "incident's bad attempts ÷ the whole lab-profile period's budget at the incident's "
                            "traffic rate, as % — publish-success SLO",
    "p99_processing_shift_ms": "p99 (exact, nearest-rank) of processing latency (upload_completed → "
                               "publish_succeeded) of publishes in the incident window minus the same before it",
    "p95_e2e_shift_ms": "p95 (exact, nearest-rank) of e2e latency (upload_started → publish_succeeded) of "
                        "publishes in the incident window minus the same before it",
    "chunk_retries": "chunk_retry events of the attempts whose outcome fell in the incident window "
                     "(as obslab sli --since/--until counts them)",
    "requests_per_publish": "API requests (obslab_http_requests_total, /v1/ routes) ÷ successful publishes "
                            "(obslab_publish_outcomes_total{outcome=succeeded}) during the incident window",
    "cancelled_attempts": "attempts that ended upload_cancelled during the incident window",
    "lost_failure_events": "failed outcomes counted by the service (obslab_publish_outcomes_total{outcome=failed}) "
                           "minus attempts whose publish_failed event is in the log, over the incident window",
    "queue_depth_peak": "maximum of obslab_transcode_queue_depth sampled during the incident window",
    "feed_p95_shift_ms": "p95 of GET /v1/feed duration (from obslab_http_request_duration_seconds buckets) in "
                         "the incident window minus the same before it",
    "memory_growth_mb": "publish-api resident memory (obslab_process_resident_memory_bytes) at its highest "
                        "during the incident minus at its start, MB",
}


@dataclass(frozen=True)
class DrillEvents:
    """A drill's events read once, through the SLI engine's reader and per-attempt fold.

    ``events`` is the ``EventSet`` (``toolkit.events.load_events``: JSONL, rotated and
    gzipped files, Parquet with its stored folds, the structural check, the memory limit),
    read as of ``as_of`` (later events ignored, as ``obslab sli --until`` does);
    ``attempts`` its attempts (``toolkit.events.attempts``) that have an event in ``window``.
    Every figure of a drill question comes from these, so nothing rescans the files.
    """

    events: EventSet
    attempts: tuple[Attempt, ...]
    window: Window
    as_of: float | None
    abandon_after_s: float


def _iso(t: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_drill_events(events: str | Path, window: Window | None = None, abandon_after_s: float = 600.0,
                      as_of: float | None = None) -> DrillEvents:
    """Read the event files once (``load_events``) and fold them into attempts.

    With ``as_of``, events after it are ignored and an attempt is abandoned if it has been
    silent for ``abandon_after_s`` at that time (``obslab sli --until``); without, as of the
    newest event. With ``window``, only attempts with an event inside it (started, ended or
    still open in it).
    """
    es = load_events([events], until=None if as_of is None else _iso(as_of))
    # The SLI engine's wide per-attempt table: the attempts contract plus mechanism columns (queue wait).
    attempt_stats_table(es, abandon_after_s=abandon_after_s, name="drill_attempts")
    cond = ""
    if window is not None:
        cond = (f"WHERE epoch(last_event_at) >= {window.start!r} AND "
                f"epoch(coalesce(started_at, last_event_at)) <= {window.end!r}")
    rows = es.con.execute(f"""
        SELECT request_id, epoch(coalesce(started_at, last_event_at)), region, app_version, network_type,
               media_size_bucket, release, transcode_mode, outcome,
               epoch({outcome_at_sql(abandon_after_s)}),
               epoch(last_event_at), processing_ms, e2e_ms, transcode_ms, chunk_retries, chunk_failures,
               error_class, synthetic, queue_wait_ms
        FROM drill_attempts {cond}
        ORDER BY 2, 1
    """).fetchall()
    out = []
    for r in rows:
        cohort = {"region": r[2], "app_version": r[3], "network_type": r[4], "media_size_bucket": r[5],
                  "release": r[6] or "stable", "transcode_mode": r[7] or "sync"}
        outcome = r[8] if r[8] in ("succeeded", "failed", "cancelled", "abandoned") else None
        out.append(Attempt(r[0], r[1], cohort, outcome, r[9], r[10], r[11], r[12], r[13], int(r[14] or 0),
                           int(r[15] or 0), r[16], bool(r[17]) if r[17] is not None else True, r[18]))
    return DrillEvents(es, tuple(out), window or Window(-math.inf, math.inf), as_of, abandon_after_s)


def read_attempts(events: str | Path, window: Window | None = None, abandon_after_s: float = 600.0,
                  as_of: float | None = None) -> list[Attempt]:
    """One row per publish attempt (``read_drill_events(...).attempts``)."""
    return list(read_drill_events(events, window, abandon_after_s, as_of).attempts)


def failed_outcomes_in(attempts: Iterable[Attempt], w: Window) -> int:
    """Attempts whose publish_failed event falls in ``w``: the failures the event log recorded there."""
    return sum(1 for a in attempts if a.outcome == "failed" and a.ended is not None and a.ended in w)


def read_metric_samples(path: str | Path) -> list[MetricSample]:
    from toolkit.drills.state import read_jsonl

    return [MetricSample(r["t"], r["values"]) for r in read_jsonl(Path(path))]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Exact nearest-rank percentile, the SLI engine's method (DuckDB quantile_disc = numpy 'inverted_cdf').

    A thin adapter until ``toolkit.measures.definitions`` has one (see /work/notes/drills-needs.md).
    """
    xs = [v for v in values if v is not None]
    if not xs:
        return None
    return float(np.quantile(np.asarray(xs, dtype=float), q, method="inverted_cdf"))


def bad_and_total(attempts: Iterable[Attempt], definition: SliDefinition) -> tuple[int, int]:
    """(bad, total) of attempts under an SLO's definition (``toolkit.measures.definitions.sli_definition``)."""
    bad = total = 0
    for a in attempts:
        good, counted = definition.classify(a.outcome, a.processing_ms, a.e2e_ms)
        total += counted
        bad += counted and not good
    return bad, total


def drill_outcomes(drill_events: DrillEvents, spec: SloSpec, slo_name: str = "publish-success") -> Outcomes:
    """An SLO's outcomes over every event read (not only the drill's attempts), as of the read's as-of
    time: what ``obslab budget --at AS_OF``, the dashboard and Prometheus count."""
    as_of = None if drill_events.as_of is None else datetime.fromtimestamp(drill_events.as_of, tz=timezone.utc)
    as_of = None if as_of is None else as_of.replace(tzinfo=None)
    return load_outcomes(drill_events.events, spec, spec.slo(slo_name), as_of=as_of, until=as_of)


def _ended_in(attempts: Iterable[Attempt], w: Window) -> list[Attempt]:
    """Attempts whose outcome time falls in ``w``, (start, end] — how ``obslab sli --since/--until`` counts them."""
    return [a for a in attempts if a.ended is not None and a.ended in w]


def _series_delta(samples: Sequence[MetricSample], w: Window, name: str, route_prefix: str | None = None,
                  **labels: str) -> tuple[float | None, Window]:
    """Counter increase between the last sample at or before w.start and the first at or after w.end."""
    before = [s for s in samples if s.t <= w.start]
    after = [s for s in samples if s.t >= w.end] or samples[-1:]
    if not before or not after:
        return None, w
    a, b = before[-1], after[0]
    va, vb = a.total(name, route_prefix, **labels), b.total(name, route_prefix, **labels)
    if vb is None:
        return None, Window(a.t, b.t)
    # A series not exported yet at the earlier sample had counted nothing.
    return max(0.0, vb - (va or 0.0)), Window(a.t, b.t)


def _histogram_quantile(samples: Sequence[MetricSample], w: Window, name: str, q: float,
                        match: str) -> tuple[float | None, int]:
    """Quantile (Prometheus histogram_quantile interpolation) of a histogram's increase over ``w``.

    A baseline that starts with the drill has no sample before it: it then counts from the first sample
    inside it (without this, feed_p95_shift_ms was never measurable at --speed 10)."""
    before = [s for s in samples if s.t <= w.start] or [s for s in samples[:1] if s.t < w.end]
    after = [s for s in samples if s.t >= w.end] or samples[-1:]
    if not before or not after:
        return None, 0
    a, b = before[-1], after[0]
    buckets: dict[float, float] = {}
    for key, vb in b.values.items():
        if not key.startswith(name + "_bucket{") or match not in key:
            continue
        le = key.split('le="', 1)[1].split('"', 1)[0]
        bound = math.inf if le == "+Inf" else float(le)
        buckets[bound] = buckets.get(bound, 0.0) + vb - a.values.get(key, 0.0)
    if not buckets or buckets.get(math.inf, 0) <= 0:
        return None, 0
    bounds = sorted(buckets)
    total = buckets[math.inf]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == math.inf:
                return prev_bound, int(total)
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / max(count - prev_count, 1e-12), int(total)
        prev_bound, prev_count = bound, count
    return prev_bound, int(total)


def measure_impact(attempts: Sequence[Attempt], samples: Sequence[MetricSample], incident: Window,
                   baseline: Window, spec: SloSpec) -> Impact:
    """Every impact figure a drill can ask about, with its definition and count."""
    slo = spec.slo("publish-success")
    definition = sli_definition(slo)
    inc, base = _ended_in(attempts, incident), _ended_in(attempts, baseline)
    figures: dict[str, Figure] = {}

    def add(name: str, value: float | None, unit: str, count: int | None = None) -> None:
        figures[name] = Figure(name, value, unit, IMPACT_DEFINITIONS[name], count)

    bad, total = bad_and_total(inc, definition)
    add("failed_publishes", float(bad), "attempts", total)
    # The engine's named budget figure: the share of the lab period's budget the incident spent.
    budget = budget_figures(slo.name, slo.objective, alert_timing(spec, "lab").period_s(slo), bad, total,
                            incident.length_s)
    add("budget_spent_percent", 100.0 * budget.spent if budget.spent is not None else 0.0, "% of budget", total)
    for name, attr, q in (("p99_processing_shift_ms", "processing_ms", 0.99), ("p95_e2e_shift_ms", "e2e_ms", 0.95)):
        now_vals = [getattr(a, attr) for a in inc if getattr(a, attr) is not None]
        then_vals = [getattr(a, attr) for a in base if getattr(a, attr) is not None]
        p_now, p_then = percentile(now_vals, q), percentile(then_vals, q)
        add(name, None if p_now is None or p_then is None else p_now - p_then, "ms", len(now_vals))
    add("chunk_retries", float(sum(a.chunk_retries for a in inc)), "events", len(inc))
    add("cancelled_attempts", float(sum(1 for a in inc if a.outcome == "cancelled")), "attempts", len(inc))
    if samples:
        requests, _ = _series_delta(samples, incident, "obslab_http_requests_total", route_prefix="/v1/")
        published, _ = _series_delta(samples, incident, "obslab_publish_outcomes_total", outcome="succeeded")
        rpp = requests / published if requests is not None and published else None
        add("requests_per_publish", rpp, "requests per publish", int(published or 0))
        counted_failed, span = _series_delta(samples, incident, "obslab_publish_outcomes_total", outcome="failed")
        if counted_failed is not None:
            logged = failed_outcomes_in(attempts, span)
            add("lost_failure_events", max(0.0, counted_failed - logged), "failures", int(counted_failed))
        else:
            add("lost_failure_events", None, "failures")
        depths = [s.total("obslab_transcode_queue_depth") for s in samples if s.t in incident]
        depths = [d for d in depths if d is not None]
        add("queue_depth_peak", max(depths) if depths else None, "queued transcodes", len(depths))
        feed_now, n_now = _histogram_quantile(samples, incident, "obslab_http_request_duration_seconds", 0.95, "feed")
        feed_then, _ = _histogram_quantile(samples, baseline, "obslab_http_request_duration_seconds", 0.95, "feed")
        add("feed_p95_shift_ms", None if feed_now is None or feed_then is None else 1000 * (feed_now - feed_then),
            "ms", n_now)
        mem = [(s.t, s.total("obslab_process_resident_memory_bytes", service="publish-api")) for s in samples]
        mem = [(t, v) for t, v in mem if v is not None]
        at_start = [v for t, v in mem if t <= incident.start][-1:] or [v for t, v in mem if t in incident][:1]
        during = [v for t, v in mem if t in incident or incident.end <= t < incident.end + 2]
        add("memory_growth_mb", (max(during) - at_start[0]) / 1e6 if at_start and during else None, "MB", len(during))
    else:
        for name in ("requests_per_publish", "lost_failure_events", "queue_depth_peak", "feed_p95_shift_ms",
                     "memory_growth_mb"):
            add(name, None, "")
    return Impact(incident, baseline, figures)
