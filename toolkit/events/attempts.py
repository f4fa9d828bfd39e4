"""Publish attempts: one row per ``request_id``, assembled from its lifecycle events.

``upload_rejected`` and audit events (``fault_changed``, ``flag_changed``) are not
attempts and are left out. Usage::

    from toolkit.events import load_events
    from toolkit.events.attempts import attempts, filter_attempts

    events = load_events(["data/events/"])                    # EventSet (counts skipped / torn lines)
    rel = attempts(events, abandon_after_s=600)              # DuckDB relation, table ``attempts``
    canary = filter_attempts(rel, where={"release": "canary"}, synthetic=False,
                             since="2026-01-05T10:00:00Z", abandon_after_s=600)
    events.con.sql("SELECT outcome, count(*) FROM attempts GROUP BY ALL").show()

Columns (exactly these, in this order)::

    request_id, upload_id, user_id VARCHAR
    outcome VARCHAR             succeeded | failed | cancelled | abandoned | in_flight
    started_at TIMESTAMP        upload_started ts (NULL if the log starts mid-attempt)
    completed_at TIMESTAMP      upload_completed ts, NULL if none
    ended_at TIMESTAMP          terminal event ts (publish_succeeded | publish_failed | upload_cancelled), NULL if none
    last_event_at TIMESTAMP     newest event of the attempt
    processing_ms DOUBLE        upload_completed → publish_succeeded (NULL unless succeeded)
    e2e_ms DOUBLE               upload_started → publish_succeeded (NULL unless succeeded)
    transcode_ms DOUBLE         duration_ms of the (last) transcode_completed
    region, app_version, network_type, media_size_bucket, release, transcode_mode, service_version VARCHAR
    synthetic BOOLEAN
    chunk_count INTEGER         declared at upload_started
    chunks_uploaded, chunk_retries, chunk_failures INTEGER   (counts of those events)
    error_class VARCHAR         of the publish_failed event, NULL otherwise

Outcome rules: the first terminal event by time decides (the contract allows one;
duplicates are counted in ``duplicate_terminal_events``). With no terminal event,
an attempt is *abandoned* when ``abandon_after_s`` has passed since its last event
at the analysis time ``as_of`` (default: ``events.as_of``, the ``until`` cut-off or
the newest event), else *in flight*.

Times: an attempt's *outcome time* (``outcome_at_sql``) is its terminal event, or
``last_event_at + abandon_after`` for an abandoned one (the moment it became
abandoned); in-flight attempts have none. ``since``/``until`` filters and time
windows use the outcome time, as a counter incremented at the outcome would.
"""

from __future__ import annotations

from datetime import datetime
from typing import Mapping

import duckdb

from toolkit.events.model import EventSet, parse_time

__all__ = [
    "ATTEMPT_COLUMNS",
    "DIMENSIONS",
    "OUTCOMES",
    "attempts",
    "filter_attempts",
    "outcome_at_sql",
    "duplicate_terminal_events",
    "attempt_stats_table",
    "attempt_stats_relation",
]

ATTEMPT_COLUMNS = (
    "request_id", "upload_id", "user_id", "outcome", "started_at", "completed_at", "ended_at", "last_event_at",
    "processing_ms", "e2e_ms", "transcode_ms", "region", "app_version", "network_type", "media_size_bucket",
    "release", "transcode_mode", "service_version", "synthetic", "chunk_count", "chunks_uploaded", "chunk_retries",
    "chunk_failures", "error_class",
)
# Dimensions a breakdown or --where may use.
DIMENSIONS = ("region", "app_version", "network_type", "media_size_bucket", "release", "transcode_mode",
              "service_version")
OUTCOMES = ("succeeded", "failed", "cancelled", "abandoned", "in_flight")

# The wide per-attempt table the SLI engine reads (contract columns + mechanism counts).
STATS_TABLE = "attempt_stats"


def _ts(t: datetime) -> str:
    return f"TIMESTAMP '{t.isoformat(sep=' ')}'"


def _outcome_sql(abandon_after_s: float, as_of: datetime | None) -> str:
    if as_of is None:
        abandoned = "false"
    else:
        abandoned = f"last_event_at + to_microseconds({int(round(abandon_after_s * 1e6))}) <= {_ts(as_of)}"
    return (
        "CASE terminal_event WHEN 'publish_succeeded' THEN 'succeeded' WHEN 'publish_failed' THEN 'failed' "
        f"WHEN 'upload_cancelled' THEN 'cancelled' ELSE CASE WHEN {abandoned} THEN 'abandoned' "
        "ELSE 'in_flight' END END"
    )


def _wide_select(abandon_after_s: float, as_of: datetime | None, table: str) -> str:
    succ = "terminal_event = 'publish_succeeded'"
    return f"""
        SELECT request_id, upload_id, user_id,
               {_outcome_sql(abandon_after_s, as_of)} AS outcome,
               started_at, completed_at, ended_at, last_event_at,
               CASE WHEN {succ} THEN (epoch_us(ended_at) - epoch_us(completed_at)) / 1000.0 END::DOUBLE
                   AS processing_ms,
               CASE WHEN {succ} THEN (epoch_us(ended_at) - epoch_us(started_at)) / 1000.0 END::DOUBLE AS e2e_ms,
               transcode_ms::DOUBLE AS transcode_ms,
               region::VARCHAR AS region, app_version::VARCHAR AS app_version,
               network_type::VARCHAR AS network_type, media_size_bucket::VARCHAR AS media_size_bucket,
               release::VARCHAR AS release, transcode_mode::VARCHAR AS transcode_mode, service_version,
               synthetic,
               chunk_count::INTEGER AS chunk_count, chunks_uploaded::INTEGER AS chunks_uploaded,
               chunk_retries::INTEGER AS chunk_retries, chunk_failures::INTEGER AS chunk_failures,
               error_class::VARCHAR AS error_class,
               -- mechanism columns (not part of the attempts contract)
               completes, transcodes_started, transcodes_completed, transcode_failures, transcode_started_at,
               queue_wait_ms, timeout_requests, terminal_events, events AS event_count
        FROM {table}
        WHERE kind = 0 AND request_id IS NOT NULL
    """


def attempt_stats_table(events: EventSet, abandon_after_s: float, as_of: str | datetime | None = None,
                        name: str = STATS_TABLE) -> duckdb.DuckDBPyRelation:
    """The wide per-attempt table (contract columns + mechanism counts) used by ``toolkit.measures.sli``."""
    as_of_t = parse_time(as_of) or events.as_of
    events.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {_wide_select(abandon_after_s, as_of_t, events.requests_table)}")
    return events.con.table(name)


def attempt_stats_relation(events: EventSet, abandon_after_s: float,
                           as_of: str | datetime | None = None) -> duckdb.DuckDBPyRelation:
    """The same rows as ``attempt_stats_table``, unmaterialised: for a caller that filters and
    materialises only what it needs (the SLI report) instead of writing the wide table first."""
    as_of_t = parse_time(as_of) or events.as_of
    return events.con.sql(_wide_select(abandon_after_s, as_of_t, events.requests_table))


def attempts(events: EventSet, abandon_after_s: float = 600.0, as_of: str | datetime | None = None,
             name: str = "attempts") -> duckdb.DuckDBPyRelation:
    """One row per request_id with exactly ``ATTEMPT_COLUMNS``, materialized as table ``name`` in ``events.con``.

    ``as_of`` (default ``events.as_of``) decides abandoned vs in flight. To analyse
    the log as it was at an earlier time, load it with ``load_events(..., until=T)``
    so later events are ignored too.
    """
    if not events.with_ids:
        raise ValueError("attempts() needs upload_id and user_id: load the events with with_ids=True")
    attempt_stats_table(events, abandon_after_s, as_of, name=f"_{name}_wide")
    cols = ", ".join(ATTEMPT_COLUMNS)
    events.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT {cols} FROM _{name}_wide")
    return events.con.table(name)


def outcome_at_sql(abandon_after_s: float) -> str:
    """SQL expression (over attempt columns) of the outcome time; NULL for in-flight attempts."""
    return (f"coalesce(ended_at, CASE WHEN outcome = 'abandoned' THEN "
            f"last_event_at + to_microseconds({int(round(abandon_after_s * 1e6))}) END)")


def _where_sql(where: Mapping[str, str | None] | None) -> list[str]:
    out = []
    for dim, value in (where or {}).items():
        if dim not in DIMENSIONS:
            raise ValueError(f"--where {dim}=...: unknown dimension {dim!r} (one of {', '.join(DIMENSIONS)})")
        out.append(f"{dim} IS NULL" if value is None else f"{dim} = '{str(value).replace(chr(39), chr(39) * 2)}'")
    return out


def filter_attempts(rel: duckdb.DuckDBPyRelation, *, abandon_after_s: float = 600.0,
                    since: str | datetime | None = None, until: str | datetime | None = None,
                    where: Mapping[str, str | None] | None = None,
                    synthetic: bool | None = None) -> duckdb.DuckDBPyRelation:
    """Attempts whose outcome time is in (since, until], matching ``where`` (dim → value) and ``synthetic``.

    The window edges are the definitions layer's (``toolkit.measures.definitions.WINDOW_EDGES``): "until T"
    includes what ended at T, so an attempt that became abandoned exactly at the as-of time counts.
    ``synthetic=None`` keeps all traffic, ``False`` only real users, ``True`` only load.
    With ``since`` or ``until``, in-flight attempts (no outcome time) are kept only if
    they started at or before ``until``.
    """
    conds = _where_sql(where)
    if synthetic is not None:
        conds.append("synthetic" if synthetic else "NOT synthetic")
    at = outcome_at_sql(abandon_after_s)
    since_t, until_t = parse_time(since), parse_time(until)
    if since_t is not None:
        conds.append(f"({at} > {_ts(since_t)} OR outcome = 'in_flight')")
    if until_t is not None:
        conds.append(f"(({at}) <= {_ts(until_t)} OR (outcome = 'in_flight' AND coalesce(started_at, last_event_at) "
                     f"<= {_ts(until_t)}))")
    return rel.filter(" AND ".join(conds)) if conds else rel


def duplicate_terminal_events(events: EventSet) -> int:
    """Attempts with more than one terminal event (a contract violation worth reporting)."""
    return events.con.execute(
        f"SELECT count(*) FROM {events.requests_table} WHERE kind = 0 AND terminal_events > 1").fetchone()[0]
