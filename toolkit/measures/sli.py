"""SLIs from events: primary, latency, secondary and guardrail metrics, each with its definition.

Pipeline: ``load_events`` (toolkit.events) → ``attempt_stats_relation`` (toolkit.events.attempts),
filtered and materialised once as a narrow scope table → one SQL aggregation per grouping (totals,
time windows, breakdown segments) → ``section_from_stats`` (pure: numbers in, frozen dataclasses out). ::

    from toolkit.slo.spec import load_spec
    from toolkit.events import load_events
    from toolkit.measures.sli import SliQuery, compute_report

    spec = load_spec("slo.yaml")
    events = load_events(["data/events/"])
    report = compute_report(events, spec, SliQuery(window_s=300, by=("release",)))
    report.totals.figure("publish_success_rate").value
    report.to_dict()        # the stable JSON shape "obslab.sli/v1" (docs/metrics.md)

Every ``Figure`` carries its statistic, definition, unit, numerator, denominator
and the count behind it, plus the ``Scope`` it covers (time window, segment,
synthetic traffic in or out). Percentiles are exact, nearest-rank: DuckDB
``quantile_disc``, identical to ``numpy.quantile(..., method="inverted_cdf")``.
A figure with nothing behind it has ``value=None`` and says "no data" — never NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from contract.events import format_time
from toolkit.measures.percentiles import PERCENTILE_METHOD
from toolkit.events.attempts import DIMENSIONS, attempt_stats_relation, filter_attempts, outcome_at_sql
from contract.durations import format_duration, format_seconds
from toolkit.events import EventSet, parse_time
from toolkit.measures.definitions import DEFAULT_SUCCESS, SliDefinition, sli_definition, success_definition
from toolkit.slo.spec import SloSpec

__all__ = [
    "SCHEMA",
    "PERCENTILES",
    "Scope",
    "Figure",
    "Stats",
    "Section",
    "SliQuery",
    "SliReport",
    "section_from_stats",
    "compute_report",
    "ratio",
    "iso",
    "check_scope",
]

SCHEMA = "obslab.sli/v1"
PERCENTILES = (0.5, 0.95, 0.99)
NO_DATA = "no data"
NOT_DERIVABLE = "not derivable from events"


def iso(t: datetime | None) -> str | None:
    """RFC 3339 UTC with milliseconds, as events write it (``contract.events.format_time``)."""
    return format_time(t)


@dataclass(frozen=True)
class Scope:
    """What a figure covers: attempts whose outcome time is in (start, end], in a segment."""

    start: str | None
    end: str | None
    window: str  # length of (start, end]: "5m" as configured, "49.3 s" when measured from the data, "all"
    segment: Mapping[str, str | None]  # dimension → value; {} = all traffic
    synthetic: str  # "included" | "excluded" | "only"

    def label(self) -> str:
        seg = ", ".join(f"{k}={v}" for k, v in self.segment.items()) or "all traffic"
        return (f"{self.start or 'first outcome'} → {self.end or 'no data'} ({self.window}), {seg}, "
                f"synthetic {self.synthetic}")


@dataclass(frozen=True)
class Figure:
    """One number and exactly what it is."""

    name: str
    value: float | None
    unit: str  # "ratio" | "ms" | "count" | "per attempt" | "per publish" | "jobs"
    statistic: str  # e.g. "ratio", "p95", "mean", "count"
    definition: str
    count: int  # how many things stand behind the value (attempts, publishes, chunk uploads, ...)
    counted: str  # what ``count`` counts
    numerator: float | None = None
    denominator: float | None = None
    note: str | None = None  # "no data", "not derivable from events", ...
    scope: Scope | None = None

    def display(self) -> str:
        if self.value is None:
            return self.note or NO_DATA
        if self.unit == "ratio":
            return f"{self.value * 100:.3f}%"
        if self.unit == "ms":
            return f"{self.value:,.1f} ms"
        if self.unit == "count":
            return f"{self.value:,.0f}"
        return f"{self.value:,.3f}"


@dataclass(frozen=True)
class Stats:
    """Sums and order statistics of one group of attempts, as the SQL returns them (pure input)."""

    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    abandoned: int = 0
    in_flight: int = 0
    latency_good: int = 0  # publishes with SLO latency <= threshold
    latency_n: int = 0  # publishes with an SLO latency
    processing_n: int = 0
    processing_q: tuple[float | None, ...] = (None, None, None)
    e2e_n: int = 0
    e2e_q: tuple[float | None, ...] = (None, None, None)
    chunks_uploaded: int = 0
    chunk_retries: int = 0
    chunk_failures: int = 0
    transcodes_completed: int = 0
    transcode_failures: int = 0
    transcode_n: int = 0
    transcode_q: tuple[float | None, ...] = (None, None, None)
    queue_wait_n: int = 0
    queue_wait_total_ms: float = 0.0
    queue_wait_q: tuple[float | None, ...] = (None, None, None)
    timeout_requests: int = 0
    api_requests: int = 0
    processing_mean: float | None = None  # arithmetic mean, next to the percentiles: a mean hides tails
    e2e_mean: float | None = None


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None (no data) when the denominator is zero."""
    if not denominator:
        return None
    return numerator / denominator


@dataclass(frozen=True)
class Section:
    """All figures of one scope: counts, primary, latency, secondary, guardrails."""

    scope: Scope
    counts: Mapping[str, int]
    primary: tuple[Figure, ...]
    latency: tuple[Figure, ...]
    secondary: tuple[Figure, ...]
    guardrails: tuple[Figure, ...]

    def figures(self) -> tuple[Figure, ...]:
        return self.primary + self.latency + self.secondary + self.guardrails

    def figure(self, name: str) -> Figure:
        for f in self.figures():
            if f.name == name:
                return f
        raise KeyError(name)


def _pct_name(q: float) -> str:
    return f"p{q * 100:g}"


def section_from_stats(s: Stats, scope: Scope, *, latency_threshold_ms: float, latency_kind: str = "processing",
                       window_s: float | None = None, success: SliDefinition = DEFAULT_SUCCESS) -> Section:
    """Turn the sums of one group into labelled figures (pure); ``success`` is the spec's ratio SLO."""
    counts = {"succeeded": s.succeeded, "failed": s.failed, "cancelled": s.cancelled, "abandoned": s.abandoned}
    good, total = success.from_counts(counts)
    attempts = s.succeeded + s.failed + s.abandoned + s.cancelled + s.in_flight
    excluded = [o for o in ("cancelled", "in-flight") if o.replace("-", "_") not in success.total_outcomes]

    def fig(name, value, unit, statistic, definition, count, counted, num=None, den=None, note=None):
        if value is None and note is None:
            note = NO_DATA
        return Figure(name, value, unit, statistic, definition, int(count), counted, num, den, note, scope)

    primary = (
        fig("publish_success_rate", ratio(good, total), "ratio", "ratio",
            f"{success.ratio_text()} (SLO {success.slo} in the spec); {' and '.join(excluded)} attempts excluded",
            total, f"attempts with an outcome ({' + '.join(success.total_outcomes)})", good, total),
    )
    latency: list[Figure] = []
    for kind, n, qs, mean, what in (
            ("processing", s.processing_n, s.processing_q, s.processing_mean, "upload_completed → publish_succeeded"),
            ("e2e", s.e2e_n, s.e2e_q, s.e2e_mean, "upload_started → publish_succeeded")):
        for q, v in zip(PERCENTILES, qs):
            latency.append(fig(f"{kind}_latency_{_pct_name(q)}", v, "ms", _pct_name(q),
                               f"{_pct_name(q)} of {kind} latency ({what}) over succeeded publishes; "
                               + PERCENTILE_METHOD, n, "succeeded publishes"))
        latency.append(fig(f"{kind}_latency_mean", mean, "ms", "mean",
                           f"arithmetic mean of {kind} latency ({what}) over succeeded publishes; shown next to "
                           "the percentiles because a mean hides a tail that only a few publishes carry",
                           n, "succeeded publishes"))
    latency.append(fig(
        "latency_sli", ratio(s.latency_good, s.latency_n), "ratio", "ratio",
        f"share of succeeded publishes with {latency_kind} latency <= {latency_threshold_ms:g} ms (SLO threshold)",
        s.latency_n, "succeeded publishes", s.latency_good, s.latency_n))

    chunk_puts = s.chunks_uploaded + s.chunk_failures
    transcodes = s.transcodes_completed + s.transcode_failures
    queue_depth = None
    if window_s and s.queue_wait_n:
        queue_depth = s.queue_wait_total_ms / 1000.0 / window_s
    secondary = [
        fig("chunk_retry_rate", ratio(s.chunk_retries, chunk_puts), "ratio", "ratio",
            "chunk_retry / (chunk_uploaded + chunk_failed): share of chunk uploads that were retries",
            chunk_puts, "chunk uploads", s.chunk_retries, chunk_puts),
        fig("chunk_failure_rate", ratio(s.chunk_failures, chunk_puts), "ratio", "ratio",
            "chunk_failed / (chunk_uploaded + chunk_failed)", chunk_puts, "chunk uploads", s.chunk_failures,
            chunk_puts),
        fig("transcode_failure_rate", ratio(s.transcode_failures, transcodes), "ratio", "ratio",
            "transcode_failed / (transcode_completed + transcode_failed)", transcodes, "finished transcodes",
            s.transcode_failures, transcodes),
    ]
    for q, v in zip(PERCENTILES, s.transcode_q):
        secondary.append(fig(f"transcode_latency_{_pct_name(q)}", v, "ms", _pct_name(q),
                             f"{_pct_name(q)} of transcode_completed.duration_ms; " + PERCENTILE_METHOD,
                             s.transcode_n, "completed transcodes"))
    secondary += [
        fig("api_timeout_rate", ratio(s.timeout_requests, s.api_requests), "ratio", "ratio",
            "API requests that timed out / API requests recorded in events (create + chunk uploads + complete + "
            "cancel); a timed-out request counts once, though a complete emits transcode_failed and publish_failed",
            s.api_requests, "API requests", s.timeout_requests, s.api_requests),
        fig("queue_wait_p95", s.queue_wait_q[1], "ms", "p95",
            "p95 of transcode_started.queue_wait_ms (async mode); " + PERCENTILE_METHOD,
            s.queue_wait_n, "async transcodes"),
        fig("queue_depth_mean", queue_depth, "jobs", "mean",
            "time-averaged async queue depth by Little's law: total queue wait / window length",
            s.queue_wait_n, "async transcodes", s.queue_wait_total_ms / 1000.0 if s.queue_wait_n else None,
            window_s, None if queue_depth is not None else (NO_DATA if window_s else "needs a bounded window")),
        fig("feed_cache_hit_rate", None, "ratio", "ratio", "feed cache hits / feed requests", 0, "feed requests",
            note=NOT_DERIVABLE + " (feed requests emit no events; see obslab_feed_cache_requests_total)"),
        fig("requests_per_publish", ratio(s.api_requests, attempts), "per attempt", "mean",
            "API requests recorded in events / publish attempts", attempts, "publish attempts", s.api_requests,
            attempts),
    ]
    guardrails = (
        fig("processing_latency_p99", s.processing_q[2], "ms", "p99",
            "p99 of processing latency (upload_completed → publish_succeeded); " + PERCENTILE_METHOD,
            s.processing_n, "succeeded publishes"),
        fig("load_amplification", ratio(s.api_requests, s.succeeded), "per publish", "mean",
            "API requests recorded in events / succeeded publishes", s.succeeded, "succeeded publishes",
            s.api_requests, s.succeeded),
        fig("unrelated_5xx_rate", None, "ratio", "ratio", "5xx responses of feed and status routes / their requests",
            0, "requests", note=NOT_DERIVABLE + " (use obslab_http_requests_total)"),
        fig("cpu_seconds_per_publish", None, "per publish", "mean", "process CPU seconds / succeeded publishes",
            0, "succeeded publishes", note=NOT_DERIVABLE + " (use obslab_process_cpu_seconds_total)"),
        fig("memory_per_publish", None, "per publish", "mean", "resident memory / publish rate", 0,
            "succeeded publishes", note=NOT_DERIVABLE + " (use obslab_process_resident_memory_bytes)"),
    )
    counts = {"attempts": attempts, "succeeded": s.succeeded, "failed": s.failed, "cancelled": s.cancelled,
              "abandoned": s.abandoned, "in_flight": s.in_flight}
    return Section(scope, counts, primary, tuple(latency), tuple(secondary), guardrails)


def check_scope(since: datetime | str | None, until: datetime | str | None) -> tuple[datetime | None, datetime | None]:
    """``(since, until)`` as naive UTC; a scope (since, until] that is inverted or empty is an error naming both."""
    since_t, until_t = parse_time(since, "--since"), parse_time(until, "--until")
    if since_t is not None and until_t is not None and since_t >= until_t:
        what = "empty (zero length)" if since_t == until_t else "inverted (--since is after --until)"
        raise ValueError(f"--since {iso(since_t)} / --until {iso(until_t)}: the scope (since, until] is {what}; "
                         "give a --since before --until")
    return since_t, until_t


@dataclass(frozen=True)
class SliQuery:
    """What to compute: time range, series window, breakdown dims, segment filter, synthetic traffic."""

    since: datetime | str | None = None
    until: datetime | str | None = None
    window_s: float | None = 300.0
    by: tuple[str, ...] = ()
    where: Mapping[str, str | None] = field(default_factory=dict)
    synthetic: bool | None = None  # None: included; False: excluded; True: only synthetic


@dataclass(frozen=True)
class SliReport:
    schema: str
    inputs: Mapping[str, Any]
    slo: Mapping[str, Any]
    scope: Scope
    totals: Section
    series: tuple[Section, ...]
    series_window: str | None
    breakdown_by: tuple[str, ...]
    breakdown: tuple[Section, ...]

    def to_dict(self) -> dict:
        """The stable JSON shape (see docs/metrics.md)."""
        return {
            "schema": self.schema,
            "inputs": dict(self.inputs),
            "slo": dict(self.slo),
            "scope": _scope_dict(self.scope),
            "totals": _section_dict(self.totals),
            "series": {"window": self.series_window, "points": [_section_dict(s) for s in self.series]},
            "breakdown": {"by": list(self.breakdown_by), "segments": [_section_dict(s) for s in self.breakdown]},
        }


def _scope_dict(scope: Scope) -> dict:
    return {"start": scope.start, "end": scope.end, "window": scope.window, "segment": dict(scope.segment),
            "synthetic": scope.synthetic}


def _finite(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _figure_dict(f: Figure, scope: dict | None = None) -> dict:
    # Built by hand: dataclasses.asdict deep-copies and is slow over thousands of windows.
    return {"name": f.name, "value": _finite(f.value), "unit": f.unit, "statistic": f.statistic,
            "definition": f.definition, "count": f.count, "counted": f.counted,
            "numerator": _finite(f.numerator), "denominator": _finite(f.denominator), "note": f.note,
            "scope": scope if scope is not None else (_scope_dict(f.scope) if f.scope else None)}


def _section_dict(s: Section) -> dict:
    scope = _scope_dict(s.scope)
    return {
        "scope": scope,
        "counts": dict(s.counts),
        "primary": [_figure_dict(f, _scope_dict(f.scope) if f.scope != s.scope else scope) for f in s.primary],
        "latency": [_figure_dict(f, _scope_dict(f.scope) if f.scope != s.scope else scope) for f in s.latency],
        "secondary": [_figure_dict(f, _scope_dict(f.scope) if f.scope != s.scope else scope) for f in s.secondary],
        "guardrails": [_figure_dict(f, _scope_dict(f.scope) if f.scope != s.scope else scope)
                       for f in s.guardrails],
    }


# -- SQL ------------------------------------------------------------------------------

def _stats_select(latency_good_sql: str, latency_total_sql: str) -> str:
    qs = "[" + ", ".join(f"{q}" for q in PERCENTILES) + "]"
    return f"""
        count(*) FILTER (WHERE outcome = 'succeeded') AS succeeded,
        count(*) FILTER (WHERE outcome = 'failed') AS failed,
        count(*) FILTER (WHERE outcome = 'cancelled') AS cancelled,
        count(*) FILTER (WHERE outcome = 'abandoned') AS abandoned,
        count(*) FILTER (WHERE outcome = 'in_flight') AS in_flight,
        count(*) FILTER (WHERE {latency_good_sql}) AS latency_good,
        count(*) FILTER (WHERE {latency_total_sql}) AS latency_n,
        count(processing_ms) AS processing_n,
        quantile_disc(processing_ms, {qs}) AS processing_q,
        count(e2e_ms) AS e2e_n,
        quantile_disc(e2e_ms, {qs}) AS e2e_q,
        coalesce(sum(chunks_uploaded), 0) AS chunks_uploaded,
        coalesce(sum(chunk_retries), 0) AS chunk_retries,
        coalesce(sum(chunk_failures), 0) AS chunk_failures,
        coalesce(sum(transcodes_completed), 0) AS transcodes_completed,
        coalesce(sum(transcode_failures), 0) AS transcode_failures,
        count(transcode_ms) AS transcode_n,
        quantile_disc(transcode_ms, {qs}) AS transcode_q,
        count(queue_wait_ms) AS queue_wait_n,
        -- exact decimal sum: a parallel float sum depends on thread order
        coalesce(sum(queue_wait_ms::DECIMAL(18, 3)), 0)::DOUBLE AS queue_wait_total_ms,
        quantile_disc(queue_wait_ms, {qs}) AS queue_wait_q,
        coalesce(sum(timeout_requests), 0) AS timeout_requests,
        coalesce(sum(1 + chunks_uploaded + chunk_failures + completes
                     + CASE WHEN outcome = 'cancelled' THEN 1 ELSE 0 END), 0) AS api_requests,
        avg(processing_ms::DOUBLE) AS processing_mean,
        avg(e2e_ms::DOUBLE) AS e2e_mean
    """


# The per-attempt columns _stats_select reads (breakdown dimensions are added per query).
_SCOPE_COLUMNS = ("outcome", "processing_ms", "e2e_ms", "chunks_uploaded", "chunk_retries", "chunk_failures",
                  "completes", "transcodes_completed", "transcode_failures", "transcode_ms", "queue_wait_ms",
                  "timeout_requests")

_STAT_FIELDS = ("succeeded", "failed", "cancelled", "abandoned", "in_flight", "latency_good", "latency_n",
                "processing_n", "processing_q", "e2e_n", "e2e_q", "chunks_uploaded", "chunk_retries",
                "chunk_failures", "transcodes_completed", "transcode_failures", "transcode_n", "transcode_q",
                "queue_wait_n", "queue_wait_total_ms", "queue_wait_q", "timeout_requests", "api_requests",
                "processing_mean", "e2e_mean")


def _stats_from_row(row: Sequence[Any]) -> Stats:
    values = {}
    for name, v in zip(_STAT_FIELDS, row):
        if name.endswith("_q"):
            values[name] = tuple(None if x is None else float(x) for x in (v or (None, None, None)))
        elif name == "queue_wait_total_ms":
            values[name] = float(v or 0.0)
        elif name.endswith("_mean"):
            values[name] = None if v is None else float(v)
        else:
            values[name] = int(v or 0)
    return Stats(**values)


def _synthetic_label(synthetic: bool | None) -> str:
    return {None: "included", False: "excluded", True: "only"}[synthetic]


def compute_report(events: EventSet, spec: SloSpec, query: SliQuery = SliQuery()) -> SliReport:
    """The full SLI report of a set of events under a spec."""
    for dim in query.by:
        if dim not in DIMENSIONS:
            raise ValueError(f"--by {dim}: unknown dimension (one of {', '.join(DIMENSIONS)})")
    latency_slo = next((s for s in spec.slos if s.kind == "latency"), None)
    latency_def = sli_definition(latency_slo) if latency_slo else None
    threshold_ms = latency_def.threshold_ms if latency_def else 1000.0
    latency_kind = latency_slo.latency if latency_slo else "processing"
    latency_col = latency_def.latency_column if latency_def else "processing_ms"
    success = success_definition(spec)
    abandon = spec.abandon_after_s
    con = events.con
    rel = attempt_stats_relation(events, abandon)
    since_t, until_t = parse_time(query.since, "--since"), parse_time(query.until, "--until")
    rel = filter_attempts(rel, abandon_after_s=abandon, since=since_t, until=until_t, where=query.where,
                          synthetic=query.synthetic)
    # Materialised once, narrow (only what the figures read, outcome time computed once):
    # totals, series and breakdown all scan this small table instead of re-filtering the wide one.
    scope_cols = ", ".join(dict.fromkeys(_SCOPE_COLUMNS + tuple(query.by)))
    con.execute(f"CREATE OR REPLACE TEMP TABLE _sli_scope AS SELECT {scope_cols}, "
                f"{outcome_at_sql(abandon)} AS outcome_at FROM ({rel.sql_query()})")
    at = "outcome_at"
    # The latency SLI's good and total, as the spec defines them (toolkit.measures.definitions).
    latency_good_sql, latency_total_sql = latency_def.sql() if latency_def else (
        f"outcome = 'succeeded' AND {latency_col} <= {threshold_ms!r}", f"outcome = 'succeeded' AND {latency_col} IS NOT NULL")
    stats_sql = _stats_select(latency_good_sql, latency_total_sql)
    syn = _synthetic_label(query.synthetic)
    segment = dict(query.where)

    # Totals, series and breakdown in one scan of the scope table: one grouping set each.
    dims = list(query.by)
    w_us = int(round(query.window_s * 1e6)) if query.window_s else None
    # Windows start at --since, else on round clock times (time_bucket's default origin). A window
    # holds the outcomes in (start, end] (toolkit.measures.definitions.WINDOW_EDGES): bucket the instant before.
    origin = f", TIMESTAMP '{since_t.isoformat(sep=' ')}'" if since_t else ""
    bucket = f"time_bucket(to_microseconds({w_us}), {at} - INTERVAL 1 MICROSECOND{origin})"
    keys = (["bucket"] if w_us else []) + dims
    if keys:
        sets = ["()"] + (["(bucket)"] if w_us else []) + ([f"({', '.join(dims)})"] if dims else [])
        rows = con.execute(
            f"SELECT grouping({', '.join(keys)}) AS grouping_id, min({at}), max({at}), {', '.join(keys)}, "
            f"{stats_sql} FROM {f'(SELECT *, {bucket} AS bucket FROM _sli_scope)' if w_us else '_sli_scope'} "
            f"GROUP BY GROUPING SETS ({', '.join(sets)})").fetchall()
    else:
        rows = con.execute(f"SELECT 0, min({at}), max({at}), {stats_sql} FROM _sli_scope").fetchall()
    # grouping(): one bit per key, the first key highest, set where the key is rolled up.
    n_keys = len(keys)
    all_rolled = (1 << n_keys) - 1
    total_row = next(r for r in rows if r[0] == all_rolled)
    series_id = all_rolled & ~(1 << (n_keys - 1)) if w_us else None
    segments_id = (1 << (n_keys - 1)) if w_us else 0
    dims_at = 3 + (1 if w_us else 0)
    stats_at = 3 + n_keys

    # Totals: the range is (since, until] or, unbounded, the span of outcome times.
    bounds = total_row[1:3]
    start = since_t or bounds[0]
    end = until_t or (events.as_of if events.as_of and (bounds[1] is None or events.as_of >= bounds[1])
                      else bounds[1])
    total_window_s = (end - start).total_seconds() if start and end and end > start else None
    # Given --since and --until the span is configured ("18m", as typed); otherwise an end comes from the
    # data and the span is measured: printed the one way measured spans are ("49.3 s", not "49s320ms").
    span = (format_duration if since_t and until_t else format_seconds)(total_window_s) if total_window_s else "all"
    scope = Scope(iso(start), iso(end), span, segment, syn)
    totals = section_from_stats(_stats_from_row(total_row[stats_at:]), scope, latency_threshold_ms=threshold_ms,
                                latency_kind=latency_kind, window_s=total_window_s, success=success)

    series: list[Section] = []
    if w_us and start is not None:
        # In-flight attempts have no outcome time, so no window (their bucket is NULL).
        for r in sorted((r for r in rows if r[0] == series_id and r[3] is not None), key=lambda r: r[3]):
            b = r[3]
            b_end = b + timedelta(microseconds=w_us)
            series.append(section_from_stats(
                _stats_from_row(r[stats_at:]), Scope(iso(b), iso(b_end), format_duration(query.window_s), segment,
                                                     syn),
                latency_threshold_ms=threshold_ms, latency_kind=latency_kind, window_s=query.window_s,
                success=success))

    breakdown: list[Section] = []
    if dims:
        seg_rows = [r for r in rows if r[0] == segments_id]
        # ORDER BY dims NULLS LAST, as SQL would sort them.
        seg_rows.sort(key=lambda r: tuple((v is None, v if v is not None else "")
                                          for v in r[dims_at:dims_at + len(dims)]))
        for r in seg_rows:
            seg = {**segment, **{d: r[dims_at + i] for i, d in enumerate(dims)}}
            breakdown.append(section_from_stats(
                _stats_from_row(r[stats_at:]), Scope(scope.start, scope.end, scope.window, seg, syn),
                latency_threshold_ms=threshold_ms, latency_kind=latency_kind, window_s=total_window_s, success=success))

    inputs = {
        "files": [s.path for s in events.sources],
        "formats": sorted({s.format for s in events.sources}),
        "events": events.events,
        "skipped_invalid_lines": events.skipped,
        "skipped_by_reason": {why: n for why, (n, _) in events.skipped_by_reason.items()},
        "duplicates_removed": events.duplicates,
        "torn_final_lines": len(events.torn),
        "prefolded_files": events.prefolded_files,
        "rejected_events": events.rejected_events,
        "audit_events": events.audit_events,
        "first_event_at": iso(events.min_ts),
        "last_event_at": iso(events.max_ts),
        "as_of": iso(events.as_of),
    }
    slo = {
        "source": spec.source,
        "abandon_after": format_duration(abandon),
        "latency_kind": latency_kind,
        "latency_threshold_ms": threshold_ms,
        "objectives": {s.name: s.objective for s in spec.slos},
        "percentile_method": PERCENTILE_METHOD,
    }
    return SliReport(SCHEMA, inputs, slo, scope, totals, tuple(series),
                     format_duration(query.window_s) if query.window_s else None, tuple(query.by), tuple(breakdown))
