"""Events in: JSONL (globs, rotated ``events.jsonl.1``…, ``.gz``) and Parquet, read through DuckDB.

Two readers, one per need:

* ``load_events(paths, strict=False, until=None) -> EventSet`` — the fast path the
  SLI engine uses. One DuckDB scan reads only the columns the SLIs need (explicit
  JSON column types, so nothing is sniffed), drops lines it cannot use (not JSON,
  a required field missing or of the wrong type, an unknown event name: the
  *structural check*; a cohort value outside its bounded set reads as null) and
  folds the rest into one row per
  ``request_id`` (see ``toolkit.events.attempts``), each event identity once (duplicates
  counted). Skipped lines are counted by reason in the same scan; when there are
  any, a second pass through the same check names them as ``file:line: reason``
  (first ``MAX_PROBLEMS``, and the first of each reason). More than
  ``max_skipped_share`` skipped (default 1 %) raises ``TooManySkipped``.
  ``strict=True`` raises ``EventsError`` on the first one. ``ts`` with an offset is
  converted to UTC; without a zone the line is skipped. A
  torn final line (a writer that crashed mid-line: no trailing newline, not JSON;
  or the cut end of a truncated ``.gz``) is tolerated and reported, never fatal,
  strict or not.
* ``validate_files(paths) -> ValidationReport`` — every line against the full JSON
  Schema (``contract/schemas/event-v1.schema.json``), for ``obslab events validate``.

``compact(paths, out_dir)`` rewrites usable events as Parquet partitioned by day
(``day=YYYY-MM-DD/``); reading that directory gives the same reports.

Paths may be files, directories (searched for ``*.jsonl``, ``*.jsonl.N``,
``*.jsonl.gz``, ``*.parquet``) or glob patterns.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import tempfile
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import duckdb

from contract import events as contract

from toolkit.events import stored_fold
from contract.regular_file import kind_of
from contract.events import (
    ALL_EVENTS,
    APP_VERSIONS,
    AUDIT_EVENTS,
    ERROR_CLASSES,
    FLAGS,
    MEDIA_SIZE_BUCKETS,
    NETWORK_TYPES,
    REGIONS,
    SCHEMA_VERSION,
    SERVICES,
    event_schema,
)

__all__ = [
    "EventsError",
    "Problem",
    "Source",
    "EventSet",
    "ValidationReport",
    "resolve_paths",
    "load_events",
    "validate_files",
    "compact",
    "connect",
    "parse_time",
    "MAX_PROBLEMS",
    "MAX_LINE_BYTES",
    "DEFAULT_MAX_SKIPPED_SHARE",
    "SKIP_REASONS",
    "TooManySkipped",
]

MAX_PROBLEMS = 20
# Longest event line validate reads (events are well under 4 KiB); a longer one is a problem, not read.
MAX_LINE_BYTES = 1 << 20
# Above this share of lines skipped by the structural check, reading fails (--max-skipped):
# a log from another emitter, or of another schema, must not turn into figures about nothing.
DEFAULT_MAX_SKIPPED_SHARE = 0.01
# What DuckDB's JSON reader skips as blank (JSON's whitespace plus vertical tab and form feed).
_JSON_WHITESPACE = " \t\r\x0b\x0c"
# DuckDB settings for analytics on a small shared machine: bounded memory, spill to disk.
DEFAULT_MEMORY_LIMIT = os.environ.get("OBSLAB_DUCKDB_MEMORY_LIMIT", "350MB")

# The columns the SLI engine reads, with explicit types (read_json does no sniffing).
# event is an ENUM: compact, and an unknown name becomes NULL, so the line is skipped.
SLI_COLUMNS: dict[str, str] = {
    "schema_version": "INTEGER",
    "ts": "TIMESTAMP",
    "event": "event_name",
    "request_id": "VARCHAR",
    "upload_id": "VARCHAR",
    "service": "service_t",
    "service_version": "VARCHAR",
    "user_id": "VARCHAR",
    "app_version": "app_version_t",
    "region": "region_t",
    "network_type": "network_type_t",
    "media_size_bucket": "media_size_bucket_t",
    "flags": "STRUCT(transcode_mode transcode_mode_t, release release_t)",
    "synthetic": "BOOLEAN",
    "duration_ms": "DOUBLE",
    "error_class": "error_class_t",
    "chunk_count": "INTEGER",
    "queue_wait_ms": "DOUBLE",
    # An event's identity (with request_id, event, ts): duplicates are removed by it.
    "span_id": "VARCHAR",
    "chunk_index": "INTEGER",
    "attempt": "INTEGER",
}
# Every field of the schema: the Parquet layout ``compact`` writes.
ALL_COLUMNS: dict[str, str] = {
    **SLI_COLUMNS,
    "trace_id": "VARCHAR",
    "span_id": "VARCHAR",
    "chunk_index": "INTEGER",
    "attempt": "INTEGER",
    "bytes": "BIGINT",
    "media_size_bytes": "BIGINT",
    "transcode_mode": "transcode_mode_t",
    "video_id": "VARCHAR",
    "reason": "VARCHAR",
    "field": "VARCHAR",
    "actor": "VARCHAR",
    "change": "JSON",
}

# Per event, the optional fields the schema requires.
_REQUIRED_BY_EVENT = {
    "upload_started": ("chunk_count",),
    "chunk_uploaded": ("duration_ms",),
    "chunk_failed": ("error_class",),
    "upload_completed": ("duration_ms", "chunk_count"),
    "transcode_completed": ("duration_ms",),
    "transcode_failed": ("duration_ms", "error_class"),
    "publish_succeeded": ("duration_ms",),
    "publish_failed": ("duration_ms", "error_class"),
}


class EventsError(ValueError):
    """Events cannot be read (missing file, bad line under --strict); the message names file and line."""


class TooManySkipped(EventsError):
    """More than the allowed share of lines failed the structural check: the figures would be
    about some other log than the one given. The message counts each reason and names its first line."""

    def __init__(self, events: "EventSet", max_share: float):
        self.events = events
        self.max_share = max_share
        reasons = "; ".join(f"{why}: {n:,} (first: {first.path}:{first.line})" if first and first.line is not None
                            else f"{why}: {n:,}" + (f" (first: {first})" if first else "")
                            for why, (n, first) in events.skipped_by_reason.items())
        super().__init__(
            f"{events.skipped:,} of {events.lines:,} lines ({events.skipped / max(1, events.lines):.1%}) could not "
            f"be read, more than the {max_share:.2%} allowed (obslab sli/budget: --max-skipped); nothing computed. "
            f"Reasons: {reasons}. "
            "obslab events validate lists every line.")


@dataclass(frozen=True)
class Problem:
    """One unusable line: ``path:line: message`` (line is None for Parquet rows)."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line is not None else f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Source:
    path: str
    format: str  # "jsonl" | "parquet"


@dataclass
class EventSet:
    """Events loaded from files, folded per request_id in ``con`` (table ``_requests``).

    Counts: ``events`` usable events (each identity once), ``duplicates`` lines repeating
    one, ``skipped`` lines dropped by the structural check (torn final lines excluded;
    ``skipped_by_reason`` counts them by reason with the first line of each), ``torn`` torn final lines (tolerated),
    ``rejected_events`` and ``audit_events`` (not attempts). ``problems`` names the
    first skipped lines. ``until`` is the cut-off applied while reading (events
    after it ignored); ``max_ts`` the newest usable event at or before it.
    """

    con: duckdb.DuckDBPyConnection
    sources: tuple[Source, ...]
    events: int = 0
    skipped: int = 0
    torn: tuple[Problem, ...] = ()
    problems: tuple[Problem, ...] = ()
    # reason → (lines skipped for it, its first line); the same check that skipped them named them
    skipped_by_reason: dict[str, tuple[int, Problem | None]] = field(default_factory=dict)
    duplicates: int = 0  # lines repeating an event already read (same identity): not counted
    rejected_events: int = 0
    audit_events: int = 0
    min_ts: datetime | None = None
    max_ts: datetime | None = None
    until: datetime | None = None
    requests_table: str = "_requests"
    with_ids: bool = True  # upload_id / user_id folded (False: NULL, see load_events)
    prefolded_files: int = 0  # Parquet files read through their archive's stored fold (toolkit.events.stored_fold)

    @property
    def lines(self) -> int:
        """Lines (or Parquet rows) read, torn final lines aside: usable, duplicate or skipped."""
        return self.events + self.duplicates + self.skipped

    @property
    def as_of(self) -> datetime | None:
        """The analysis time: ``until`` if given, else the newest event."""
        return self.until or self.max_ts

    def summary(self) -> str:
        """One line on what was read, for CLI output."""
        parts = [f"{self.events} events from {len(self.sources)} file(s)"]
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate event(s) removed")
        if self.skipped:
            parts.append(f"{self.skipped} invalid line(s) skipped")
        if self.torn:
            parts.append(f"{len(self.torn)} torn final line(s) ignored")
        if self.rejected_events:
            parts.append(f"{self.rejected_events} upload_rejected (not attempts)")
        if self.prefolded_files:
            parts.append(f"{self.prefolded_files} compacted file(s) read through their stored fold")
        return "; ".join(parts)


@dataclass(frozen=True)
class ValidationReport:
    """Result of checking every line against the full schema."""

    files: int
    lines: int
    valid: int
    invalid: int
    torn: tuple[Problem, ...]
    problems: tuple[Problem, ...]  # first MAX_PROBLEMS (torn lines not included)
    event_counts: dict[str, int]
    stopped_early: bool = False  # stop_at_first hit an invalid line

    @property
    def ok(self) -> bool:
        return self.invalid == 0


def parse_time(text: str | datetime | None, what: str = "time") -> datetime | None:
    """A time given on the command line: RFC 3339 / ISO 8601; naive means UTC. Returns naive UTC
    (``contract.events.parse_time``, the project's one time parser)."""
    try:
        return contract.parse_time(text, what=what)
    except contract.TimeError as e:
        raise EventsError(str(e)) from None


def connect(memory_limit: str = DEFAULT_MEMORY_LIMIT, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the event types defined and memory bounded."""
    con = duckdb.connect(config={"memory_limit": memory_limit, **({"threads": threads} if threads else {})})
    for name, values in _ENUM_TYPES.items():
        con.execute(f"CREATE TYPE {name} AS ENUM ({_sql_list(values)})")
    con.execute("SET enable_progress_bar = false")
    # TIMESTAMPTZ → TIMESTAMP (an event's ts with an offset) converts to this zone: UTC.
    con.execute("SET TimeZone = 'UTC'")
    # Results never depend on row order (every query that needs one says ORDER BY); not keeping it
    # lets CREATE TABLE AS and scans run without order-preserving buffers.
    con.execute("SET preserve_insertion_order = false")
    return con


# Bounded sets as DuckDB ENUMs: one byte per value, cheap to group, and a value outside
# the contract's set reads as NULL (the fast path's check; `validate` names the line).
_ENUM_TYPES = {
    "event_name": ALL_EVENTS,
    "service_t": SERVICES,
    "region_t": REGIONS,
    "app_version_t": APP_VERSIONS,
    "network_type_t": NETWORK_TYPES,
    "media_size_bucket_t": MEDIA_SIZE_BUCKETS,
    "transcode_mode_t": FLAGS["transcode_mode"],
    "release_t": FLAGS["release"],
    "error_class_t": ERROR_CLASSES,
}


# -- paths --------------------------------------------------------------------------

_JSONL_NAME = re.compile(r"\.(jsonl|ndjson|json)(\.\d+)?(\.gz)?$")


def _format_of(path: str) -> str | None:
    if path.endswith(".parquet"):
        return "parquet"
    if _JSONL_NAME.search(path):
        return "jsonl"
    return None


def resolve_paths(paths: Iterable[str | Path]) -> tuple[Source, ...]:
    """Expand files, directories and globs into event sources; raise EventsError if nothing matches."""
    out: list[Source] = []
    seen: set[str] = set()
    for raw in paths:
        p = str(raw)
        if any(ch in p for ch in "*?["):
            matches = sorted(glob.glob(p, recursive=True))
            if not matches:
                raise EventsError(f"{p}: no file matches this pattern")
            candidates = [m for m in matches if os.path.isfile(m)]
        elif os.path.isdir(p):
            candidates = sorted(
                str(f) for f in Path(p).rglob("*")
                if f.is_file() and _format_of(str(f)) is not None and not stored_fold.is_fold_path(f))
            if not candidates:
                raise EventsError(f"{p}: directory holds no event files (*.jsonl, *.jsonl.N, *.jsonl.gz, *.parquet)")
        elif os.path.isfile(p):
            if stored_fold.is_fold_path(p):
                raise EventsError(f"{p}: a stored fold written by obslab events compact, not events; "
                                  "pass the compacted directory instead")
            candidates = [p]
        elif os.path.exists(p):  # a FIFO would block its reader, a device may never end
            raise EventsError(f"{p}: not a regular file ({kind_of(os.stat(p).st_mode)})")
        else:
            raise EventsError(f"{p}: no such file or directory")
        for c in candidates:
            if stored_fold.is_fold_path(c) and c != p:
                continue  # compact's stored folds live beside the events they summarise
            fmt = _format_of(c) or "jsonl"
            if c not in seen:
                seen.add(c)
                out.append(Source(c, fmt))
    # Rotated files hold older events; order does not change results but keeps reports stable.
    return tuple(out)


# -- the fast path ---------------------------------------------------------------------

def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _sql_list(values: Iterable[str]) -> str:
    return ", ".join(_sql_str(v) for v in values)


# The structural check, one condition per reason a line is skipped, in the order they are tried:
# a line is usable when every condition holds, and the first that fails is its reason. The same
# SQL skips lines in the fast path, counts the reasons in the same scan, and (``_name_problems``)
# names the skipped lines: the list can only name lines that were skipped.
# Types and bounded sets come from the typed read (a wrong type reads as NULL), and ts from
# ``_ts_sql`` (an offset converted to UTC; no zone or an impossible time: NULL).
def _checks() -> list[tuple[str, str]]:
    checks = [
        ("not valid JSON, or no event field in it",
         "NOT (schema_version IS NULL AND NOT _ts_given AND NOT _event_given AND NOT _service_given)"),
        (f"schema_version missing or not {SCHEMA_VERSION}", f"schema_version = {SCHEMA_VERSION}"),
        ("ts missing", "_ts_given"),
        ("ts not an RFC 3339 time with a zone (Z or +HH:MM)", "ts IS NOT NULL"),
        ("event missing", "_event_given"),
        ("event not a known event name", "event IS NOT NULL"),
        ("service missing", "_service_given"),
        (f"service not one of {', '.join(SERVICES)}", "service IS NOT NULL"),
        ("service_version missing", "service_version IS NOT NULL"),
        ("synthetic missing or not true/false", "synthetic IS NOT NULL"),
        ("request_id or upload_id missing on an attempt event",
         f"(event IN ({_sql_list(AUDIT_EVENTS)}, 'upload_rejected') "
         "OR (request_id IS NOT NULL AND upload_id IS NOT NULL))"),
    ]
    for ev, fields in _REQUIRED_BY_EVENT.items():
        cond = " AND ".join(f"{f} IS NOT NULL" for f in fields)
        checks.append((f"{ev} without {' or '.join(fields)}", f"(event <> {_sql_str(ev)} OR ({cond}))"))
    return checks


# Reason code → text; code 0 is a usable line.
SKIP_REASONS: dict[int, str] = {n: text for n, (text, _) in enumerate(_checks(), start=1)}


def _reason_expr() -> str:
    """SQL: 0 for a usable row, else the code of the first check it fails (``SKIP_REASONS``)."""
    whens = " ".join(f"WHEN NOT coalesce({cond}, false) THEN {n}" for n, (_, cond) in enumerate(_checks(), start=1))
    return f"(CASE {whens} ELSE 0 END)::UTINYINT"


def _valid_expr() -> str:
    """SQL: the structural check a row must pass to be used (all of ``_checks``)."""
    return " AND ".join(f"coalesce({cond}, false)" for _, cond in _checks())


def _ts_sql(text: str) -> str:
    """SQL: an event's ts text → TIMESTAMP in UTC. An offset is converted (the session time zone
    is UTC); a time without a zone or that is not a time gives NULL, so the line is skipped.
    The same rule as ``contract.events.parse_time(..., zone_required=True)`` and the schema."""
    return (f"CASE WHEN regexp_matches({text}, '(?:[Zz]|[+-][0-9][0-9]:?[0-9][0-9])$') "
            f"THEN TRY_CAST({text} AS TIMESTAMPTZ)::TIMESTAMP END")


# Read as text, then converted: so a missing value and a value that cannot be used get different reasons.
_TEXT_READ = {"ts": "VARCHAR", "event": "VARCHAR", "service": "VARCHAR"}


def _scan_sql(con: duckdb.DuckDBPyConnection, sources: Sequence[Source], columns: dict[str, str]) -> str:
    """SQL of one relation over all sources with exactly ``columns`` (typed), plus the presence flags
    ``_ts_given``, ``_event_given``, ``_service_given`` the structural check reads."""
    selects = []
    jsonl = [s.path for s in sources if s.format == "jsonl"]
    parquet = [s.path for s in sources if s.format == "parquet"]
    flags = ("ts IS NOT NULL AS _ts_given, event IS NOT NULL AS _event_given, "
             "service IS NOT NULL AS _service_given")
    if jsonl:
        read = {k: _TEXT_READ.get(k, v) for k, v in columns.items()}
        cols = "{" + ", ".join(f"{_sql_str(k)}: {_sql_str(v)}" for k, v in read.items()) + "}"
        exprs = [f"{_ts_sql('ts')} AS ts" if k == "ts" else f"TRY_CAST({k} AS {v}) AS {k}" if k in _TEXT_READ
                 else k for k, v in columns.items()]
        selects.append(
            f"SELECT {', '.join(exprs)}, {flags} FROM read_json([{_sql_list(jsonl)}], format='newline_delimited', "
            f"columns={cols}, ignore_errors=true, maximum_object_size=1048576)")
    if parquet:
        have = {r[0]: r[1] for r in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet([{_sql_list(parquet)}], union_by_name=true)").fetchall()}
        exprs = []
        for name, typ in columns.items():
            if name not in have:
                exprs.append(f"CAST(NULL AS {typ}) AS {name}")
            elif name == "ts" and have[name] == "VARCHAR":
                exprs.append(f"{_ts_sql('ts')} AS ts")
            elif name == "event":
                exprs.append("TRY_CAST(event AS event_name) AS event")
            elif name == "change":
                exprs.append("TRY_CAST(change AS JSON) AS change")
            else:
                # A TIMESTAMPTZ ts becomes UTC (the session time zone); a TIMESTAMP is UTC already.
                exprs.append(f"TRY_CAST({name} AS {typ}) AS {name}")
        given = ", ".join(f"{n} IS NOT NULL AS _{n}_given" if n in have else f"false AS _{n}_given"
                          for n in ("ts", "event", "service"))
        selects.append(f"SELECT {', '.join(exprs)}, {given} "
                       f"FROM read_parquet([{_sql_list(parquet)}], union_by_name=true)")
    return " UNION ALL ".join(selects)


# One pass over all events: fold per (kind, reason, request_id). kind separates attempt events (0)
# from rejected (1) and audit (2) events and from unusable rows (3, grouped by the reason they
# failed the structural check), whose counts come out of the same pass. Cohort dimensions ride
# on every event, so any event gives them.
#
# Duplicates: an event's identity is (request_id, event, ts, span_id, chunk_index, attempt); a
# line repeating an identity already seen is a duplicate and not counted (docs/events.md).
# Within a request, each event is one 64-bit code: the hash of (ts, span_id, chunk_index,
# attempt) with its low bits replaced by the event name's code (5 bits) and a timeout flag
# (bit 5), so the counts per event name are taken over the distinct codes. Two different
# events of one request share a code only if their 58-bit hashes collide (odds ~n²/2⁵⁹).
# min/max/any/arg_min ignore duplicates anyway.
KIND_ATTEMPT, KIND_REJECTED, KIND_AUDIT, KIND_INVALID = 0, 1, 2, 3
_TIMEOUT_BIT = 32


def _n(event: str, timeout: bool = False) -> str:
    """SQL: how many distinct events of this name (and, with ``timeout``, error_class timeout) in ``_d``."""
    code = ALL_EVENTS.index(event) + (_TIMEOUT_BIT if timeout else 0)
    mask = 63 if timeout else 31
    return f"len(list_filter(_d, lambda x: (x & {mask}) = {code}))::BIGINT"


_FOLD_SQL = """
WITH checked AS (
    SELECT *, {reason} AS reason FROM ({scan})
    {until_filter}
), ev AS (
    SELECT * REPLACE (CASE WHEN reason = 0 THEN request_id END AS request_id),
           CASE WHEN reason <> 0 THEN 3
                WHEN event = 'upload_rejected' THEN 1
                WHEN event IN ('fault_changed', 'flag_changed') THEN 2
                ELSE 0 END::UTINYINT AS kind
    FROM checked
), grouped AS (
    SELECT
        kind, reason, request_id,
        count(*) AS lines,
        list(((hash(ts, span_id, chunk_index, attempt) >> 6) << 6)
             | CASE WHEN error_class = 'timeout' THEN 32 ELSE 0 END
             | (enum_code(event)::UBIGINT)) FILTER (WHERE kind < 2) AS _ids,
        {ids}
        any_value(region) AS region,
        any_value(app_version) AS app_version,
        any_value(network_type) AS network_type,
        any_value(media_size_bucket) AS media_size_bucket,
        any_value(flags.release) AS release,
        any_value(flags.transcode_mode) AS transcode_mode,
        any_value(service_version) FILTER (WHERE service = 'publish-api') AS service_version,
        bool_or(synthetic) AS synthetic,
        min(ts) AS first_event_at,
        max(ts) AS last_event_at,
        min(ts) FILTER (WHERE event = 'upload_started') AS started_at,
        min(ts) FILTER (WHERE event = 'upload_completed') AS completed_at,
        min(ts) FILTER (WHERE event IN ('publish_succeeded', 'publish_failed', 'upload_cancelled')) AS ended_at,
        arg_min(event, ts) FILTER (WHERE event IN ('publish_succeeded', 'publish_failed', 'upload_cancelled'))
            AS terminal_event,
        arg_min(error_class, ts) FILTER (WHERE event = 'publish_failed') AS error_class,
        min(ts) FILTER (WHERE event = 'publish_failed') AS failed_at,
        max(chunk_count) FILTER (WHERE event = 'upload_started') AS chunk_count,
        min(ts) FILTER (WHERE event = 'transcode_started') AS transcode_started_at,
        max(queue_wait_ms) FILTER (WHERE event = 'transcode_started') AS queue_wait_ms,
        max(duration_ms) FILTER (WHERE event = 'transcode_completed') AS transcode_ms,
        -- the complete request that timed out: one request, though it emits transcode_failed and publish_failed
        bool_or(event IN ('transcode_failed', 'publish_failed') AND error_class = 'timeout') AS complete_timed_out
    FROM ev
    GROUP BY kind, reason, request_id
), distinct_events AS (
    SELECT * EXCLUDE (_ids), list_distinct(coalesce(_ids, [])) AS _d FROM grouped
)
SELECT
    kind, reason, request_id,
    CASE WHEN kind < 2 THEN len(_d) ELSE lines END::BIGINT AS events,
    (lines - CASE WHEN kind < 2 THEN len(_d) ELSE lines END)::BIGINT AS duplicates,
    * EXCLUDE (kind, reason, request_id, lines, _d, complete_timed_out),
    ({terminal})::BIGINT AS terminal_events,
    {chunk_uploaded} AS chunks_uploaded,
    {chunk_retry} AS chunk_retries,
    {chunk_failed} AS chunk_failures,
    {upload_completed} AS completes,
    {transcode_started} AS transcodes_started,
    {transcode_completed} AS transcodes_completed,
    {transcode_failed} AS transcode_failures,
    ({chunk_timeouts} + CASE WHEN complete_timed_out THEN 1 ELSE 0 END)::BIGINT AS timeout_requests
FROM distinct_events
""".replace("{terminal}", " + ".join(_n(e) for e in ('publish_succeeded', 'publish_failed', 'upload_cancelled'))) \
   .replace("{chunk_timeouts}", _n("chunk_failed", timeout=True)) \
   .replace("{chunk_uploaded}", _n("chunk_uploaded")).replace("{chunk_retry}", _n("chunk_retry")) \
   .replace("{chunk_failed}", _n("chunk_failed")).replace("{upload_completed}", _n("upload_completed")) \
   .replace("{transcode_started}", _n("transcode_started")) \
   .replace("{transcode_completed}", _n("transcode_completed")).replace("{transcode_failed}", _n("transcode_failed"))

# Folds of disjoint sets of events (a compacted archive's stored fold, files read raw) combine
# into the fold of their union: every column above is a count, min, max, any_value, bool_or
# or an arg_min whose key is kept (ended_at for terminal_event, failed_at for error_class).
_MERGE_SQL = """
SELECT
    kind, reason, request_id,
    sum(events)::BIGINT AS events, sum(duplicates)::BIGINT AS duplicates,
    any_value(upload_id) AS upload_id, any_value(user_id) AS user_id,
    any_value(region) AS region, any_value(app_version) AS app_version,
    any_value(network_type) AS network_type, any_value(media_size_bucket) AS media_size_bucket,
    any_value(release) AS release, any_value(transcode_mode) AS transcode_mode,
    any_value(service_version) AS service_version,
    bool_or(synthetic) AS synthetic,
    min(first_event_at) AS first_event_at, max(last_event_at) AS last_event_at,
    min(started_at) AS started_at, min(completed_at) AS completed_at, min(ended_at) AS ended_at,
    arg_min(terminal_event, ended_at) AS terminal_event,
    sum(terminal_events)::BIGINT AS terminal_events,
    arg_min(error_class, failed_at) AS error_class, min(failed_at) AS failed_at,
    max(chunk_count) AS chunk_count,
    sum(chunks_uploaded)::BIGINT AS chunks_uploaded, sum(chunk_retries)::BIGINT AS chunk_retries,
    sum(chunk_failures)::BIGINT AS chunk_failures, sum(completes)::BIGINT AS completes,
    sum(transcodes_started)::BIGINT AS transcodes_started, min(transcode_started_at) AS transcode_started_at,
    max(queue_wait_ms) AS queue_wait_ms,
    sum(transcodes_completed)::BIGINT AS transcodes_completed,
    sum(transcode_failures)::BIGINT AS transcode_failures,
    max(transcode_ms) AS transcode_ms, sum(timeout_requests)::BIGINT AS timeout_requests
FROM ({parts})
GROUP BY kind, reason, request_id
"""

_FOLD_IDS = "any_value(upload_id) AS upload_id, any_value(user_id) AS user_id,"
_NO_IDS = "NULL::VARCHAR AS upload_id, NULL::VARCHAR AS user_id,"

# Which fold definition a stored fold was made by: a fold from other SQL or other types is not reused.
FOLD_KEY = hashlib.sha256(json.dumps(
    [_FOLD_SQL, _MERGE_SQL, _FOLD_IDS, SLI_COLUMNS, _reason_expr(), _ts_sql("ts"),
     {k: list(v) for k, v in _ENUM_TYPES.items()}, _REQUIRED_BY_EVENT, SCHEMA_VERSION]).encode()).hexdigest()[:16]


def _stored_fold_sql(parquet: str, with_ids: bool) -> str:
    """A stored fold's rows. Its ENUM columns come back as strings, which every reader of the
    fold compares to string literals alike; casting them back would cost more than the read."""
    ids = "" if with_ids else " REPLACE (NULL::VARCHAR AS upload_id, NULL::VARCHAR AS user_id)"
    return f"SELECT *{ids} FROM read_parquet({_sql_str(parquet)})"


def _merged_sql(parts: Sequence[str]) -> str:
    """One fold from the folds of disjoint event sets (a single part is already one)."""
    if len(parts) == 1:
        return parts[0]
    return _MERGE_SQL.format(parts=" UNION ALL BY NAME ".join(f"({p})" for p in parts))


def load_events(paths: Iterable[str | Path], *, strict: bool = False, until: str | datetime | None = None,
                con: duckdb.DuckDBPyConnection | None = None, with_ids: bool = True,
                max_skipped_share: float | None = DEFAULT_MAX_SKIPPED_SHARE) -> EventSet:
    """Read events from files in one DuckDB pass and fold them per request_id.

    ``with_ids=False`` leaves each attempt's ``upload_id`` and ``user_id`` NULL: no SLI
    reads them, and folding two long strings per attempt is about a quarter of the
    fold's CPU (``toolkit.events.attempts.attempts`` refuses such a set). Everything else,
    the structural check included, is the same.

    Lines failing the structural check are skipped and counted by reason (``strict`` raises
    ``EventsError`` naming the first); when more than ``max_skipped_share`` of the lines
    are skipped, ``TooManySkipped`` (an ``EventsError``) names each reason with its count and
    first line (``None``: no limit). Torn final lines are reported, never fatal. Duplicate
    events (same identity) are counted once and reported in ``duplicates``.
    Events after ``until`` are ignored (analysis "as of" that time).
    """
    sources = resolve_paths(paths)
    until_t = parse_time(until)
    if con is None:
        con = connect()
    else:
        con.execute("SET TimeZone = 'UTC'")
    folds, prefolded = stored_fold.usable_folds([s.path for s in sources if s.format == "parquet"], FOLD_KEY,
                                                until_t)
    raw = tuple(s for s in sources if s.path not in prefolded)
    torn = tuple(p for s in raw if s.format == "jsonl" for p in [_torn_final_line(s.path)] if p)
    ids = (_FOLD_IDS if with_ids else _NO_IDS)
    until_filter = "" if until_t is None else f"WHERE ts IS NULL OR ts <= TIMESTAMP '{until_t.isoformat(sep=' ')}'"
    stored_parts = [_stored_fold_sql(f.parquet, with_ids) for f in folds]

    def fold(raw_sources: Sequence[Source]) -> None:
        parts = list(stored_parts)
        if raw_sources:
            parts.insert(0, _FOLD_SQL.format(reason=_reason_expr(), scan=_scan_sql(con, raw_sources, SLI_COLUMNS),
                                             until_filter=until_filter, ids=ids))
        # A single stored fold is read in place (a view: each query reads only the columns it uses);
        # anything folded here is materialised once.
        relation = "VIEW" if parts == stored_parts and len(parts) == 1 else "TABLE"
        for (old_kind,) in con.execute("SELECT 'VIEW' FROM duckdb_views() WHERE view_name = '_requests' UNION ALL "
                                       "SELECT 'TABLE' FROM duckdb_tables() WHERE table_name = '_requests'"
                                       ).fetchall():
            con.execute(f"DROP {old_kind} _requests")  # an earlier load on this connection
        con.execute(f"CREATE TEMP {relation} _requests AS {_merged_sql(parts)}")

    try:
        fold(raw)
    except duckdb.Error as e:
        if "gzip" not in str(e).lower():
            raise EventsError(f"cannot read events: {_duck_message(e)}") from None
        # A truncated archive (a crash while rotating): read what it holds, its last line is torn.
        with tempfile.TemporaryDirectory(prefix="obslab-gz-") as tmp:
            salvaged, gz_torn = _salvage_truncated_gzip(raw, Path(tmp))
            torn = torn + gz_torn
            try:
                fold(salvaged)
            except duckdb.Error as e2:
                raise EventsError(f"cannot read events: {_duck_message(e2)}") from None
    rows = con.execute(
        "SELECT kind, sum(events)::BIGINT, min(first_event_at), max(last_event_at), sum(duplicates)::BIGINT "
        "FROM _requests GROUP BY kind").fetchall()
    by_kind = {k: (n, lo, hi, d) for k, n, lo, hi, d in rows}
    by_reason = dict(con.execute(
        f"SELECT reason, sum(events)::BIGINT FROM _requests WHERE kind = {KIND_INVALID} GROUP BY reason").fetchall())
    if torn:  # a torn final line failed the first check (not JSON): it is reported as torn, not skipped
        first = next(iter(SKIP_REASONS))
        by_reason[first] = max(0, by_reason.get(first, 0) - len(torn))
    usable = [v for k, v in by_kind.items() if k != KIND_INVALID]
    es = EventSet(
        con=con,
        sources=sources,
        events=sum(v[0] for v in usable),
        torn=torn,
        rejected_events=by_kind.get(KIND_REJECTED, (0,))[0],
        audit_events=by_kind.get(KIND_AUDIT, (0,))[0],
        duplicates=sum(v[3] or 0 for v in usable),
        min_ts=min((v[1] for v in usable if v[1] is not None), default=None),
        max_ts=max((v[2] for v in usable if v[2] is not None), default=None),
        until=until_t,
        with_ids=with_ids,
        prefolded_files=len(prefolded),
    )
    if any(n > 0 for n in by_reason.values()):
        # The fast scan has no line numbers: a second pass, through the same check, names the skipped lines.
        named = _name_problems(con, raw, {r for r, n in by_reason.items() if n > 0},
                               limit=1 if strict else MAX_PROBLEMS, until=until_t)
        if named.gz_torn:
            # The fast scan cannot tell a truncated archive's last line from a bad one; this pass can.
            es.torn = es.torn + named.gz_torn
            first = next(iter(SKIP_REASONS))
            by_reason[first] = max(0, by_reason.get(first, 0) - len(named.gz_torn))
        es.problems = named.problems
        es.skipped_by_reason = {SKIP_REASONS[r]: (n, named.first.get(r)) for r, n in sorted(by_reason.items())
                                if n > 0}
        es.skipped = sum(n for n, _ in es.skipped_by_reason.values())
    if es.skipped:
        if not es.problems:
            es.problems = tuple(p for _, p in es.skipped_by_reason.values() if p)
        if strict:
            first = es.problems[0] if es.problems else next(iter(es.skipped_by_reason))
            raise EventsError(f"{first} (--strict: stopping at the first invalid line)")
        if max_skipped_share is not None and es.skipped > max_skipped_share * es.lines:
            raise TooManySkipped(es, max_skipped_share)
    return es


@dataclass(frozen=True)
class _Named:
    problems: tuple[Problem, ...]  # the first skipped lines, in file order
    first: dict[int, Problem]  # reason code → its first skipped line
    gz_torn: tuple[Problem, ...]  # cut final lines of truncated .gz archives


def _name_problems(con: duckdb.DuckDBPyConnection, sources: Sequence[Source], reasons: set[int], limit: int,
                   until: datetime | None = None) -> _Named:
    """Name skipped lines (``path:line: reason (detail)``) by running the fast path's own check,
    ``_reason_expr`` over ``_scan_sql``, over each file in file order: the first ``limit`` of them
    and the first of each reason in ``reasons``. Rows come out one per non-blank line (DuckDB's
    JSON reader skips blank lines and yields a row of NULLs for a line it cannot parse). Lines
    after ``until`` were ignored, not skipped: they are not named."""
    codes_sql = (f"SELECT {_reason_expr()} AS reason FROM ({{scan}})" if until is None else
                 f"SELECT CASE WHEN ts > TIMESTAMP '{until.isoformat(sep=' ')}' THEN 0 ELSE {_reason_expr()} END "
                 f"AS reason FROM ({{scan}})")
    validator = _schema_validator()
    problems: list[Problem] = []
    first: dict[int, Problem] = {}
    gz_torn: list[Problem] = []
    old_order = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
    con.execute("SET preserve_insertion_order = true")  # rows in file order
    try:
        for s in sources:
            if len(problems) >= limit and reasons <= first.keys():
                break
            try:
                codes = con.execute(codes_sql.format(scan=_scan_sql(con, [s], SLI_COLUMNS))).fetchnumpy()["reason"]
            except duckdb.Error:
                if not s.path.endswith(".gz"):
                    raise
                # A truncated archive: its complete lines, numbered as in the archive (the cut line is torn).
                with tempfile.TemporaryDirectory(prefix="obslab-gz-") as tmp:
                    (copy,), _ = _salvage_truncated_gzip([s], Path(tmp))
                    codes = con.execute(codes_sql.format(scan=_scan_sql(con, [copy], SLI_COLUMNS))
                                        ).fetchnumpy()["reason"]
            bad = [int(i) for i in codes.nonzero()[0]]
            if not bad:
                continue
            if s.format == "parquet":
                for i in bad:
                    code = int(codes[i])
                    p = Problem(s.path, None, f"row {i + 1}: {SKIP_REASONS[code]}")
                    _keep(p, code, problems, first, limit)
                continue
            wanted = set(bad[:limit]) | {next(i for i in bad if codes[i] == r) for r in reasons
                                         if r not in first and (codes == r).any()}
            if s.path.endswith(".gz") and codes[-1] == 1:
                wanted.add(len(codes) - 1)  # perhaps the cut end of a truncated archive: torn, not skipped
            last_wanted = max(wanted)
            row = -1
            for lineno, raw in enumerate(_iter_lines(s.path), start=1):
                text = raw.rstrip("\n")
                if not text.strip(_JSON_WHITESPACE):
                    continue  # blank: not a row
                row += 1
                if row in wanted:
                    code = int(codes[row])
                    if not raw.endswith("\n") and code == 1 and _not_json(text):
                        if s.path.endswith(".gz"):
                            gz_torn.append(Problem(s.path, lineno, "torn final line of a truncated gzip archive: "
                                                                   "ignored"))
                        continue  # a torn final line: reported as torn, not as skipped
                    detail = _line_detail(text, validator)
                    p = Problem(s.path, lineno, SKIP_REASONS[code] + (f" ({detail})" if detail else ""))
                    _keep(p, code, problems, first, limit)
                if row >= last_wanted:
                    break
    except (OSError, zlib.error) as e:
        raise EventsError(f"cannot read: {getattr(e, 'strerror', None) or e}") from None
    finally:
        con.execute(f"SET preserve_insertion_order = {str(old_order).lower()}")
    return _Named(tuple(problems), first, tuple(gz_torn))


def _keep(p: Problem, code: int, problems: list[Problem], first: dict[int, Problem], limit: int) -> None:
    if len(problems) < limit:
        problems.append(p)
    first.setdefault(code, p)


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
        return False
    except (ValueError, RecursionError):
        return True


def _line_detail(text: str, validator) -> str | None:
    """What the full schema says about a skipped line (a detail: the reason is the structural check's)."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:
        return f"not valid JSON: {e}"
    try:
        err = next(iter(validator.iter_errors(obj)), None)
    except ValueError as e:
        return f"cannot validate: {e}"
    return None if err is None else _error_text(err)


def _gzip_chunks(path: str) -> Iterator[bytes]:
    """Decompressed bytes of a (possibly multi-member, possibly truncated) gzip file, as far as they go.

    gzip.open raises EOFError on a cut stream and drops what it had decompressed; zlib keeps it.
    """
    d = zlib.decompressobj(wbits=31)
    with open(path, "rb") as f:
        while raw := f.read(1 << 20):
            while raw:
                out = d.decompress(raw)
                if out:
                    yield out
                if d.eof:
                    raw = d.unused_data
                    d = zlib.decompressobj(wbits=31)
                else:
                    raw = b""
    tail = d.flush()
    if tail:
        yield tail


def _gzip_is_truncated(path: str) -> bool:
    """True when the last gzip member ends before its trailer (a writer stopped mid-stream)."""
    d = zlib.decompressobj(wbits=31)
    open_member = False
    with open(path, "rb") as f:
        while raw := f.read(1 << 20):
            while raw:
                d.decompress(raw)
                open_member = True
                if d.eof:
                    raw = d.unused_data
                    d = zlib.decompressobj(wbits=31)
                    open_member = False
                else:
                    raw = b""
    return open_member


def _salvage_truncated_gzip(sources: Sequence[Source], tmp: Path) -> tuple[tuple[Source, ...], tuple[Problem, ...]]:
    """Copy the complete lines of each truncated .gz into a plain file; its cut last line is torn."""
    out, torn = [], []
    for n, s in enumerate(sources):
        if not s.path.endswith(".gz"):
            out.append(s)
            continue
        try:
            if not _gzip_is_truncated(s.path):
                out.append(s)
                continue
            copy = tmp / f"{n}.jsonl"
            lineno, pending = 0, b""
            with open(copy, "wb") as w:
                for chunk in _gzip_chunks(s.path):
                    data = pending + chunk
                    cut = data.rfind(b"\n") + 1
                    w.write(data[:cut])
                    lineno += data.count(b"\n", 0, cut)
                    pending = data[cut:]
        except (OSError, zlib.error) as e:
            raise EventsError(f"{s.path}: cannot read: {e}") from None
        if pending:
            torn.append(Problem(s.path, lineno + 1, f"torn final line of a truncated gzip archive "
                                                     f"({len(pending)} bytes): ignored"))
        out.append(Source(str(copy), "jsonl"))
    return tuple(out), tuple(torn)


def _duck_message(e: Exception) -> str:
    return str(e).splitlines()[0]


def _torn_final_line(path: str) -> Problem | None:
    """A plain JSONL file whose last line has no newline and is not JSON: a writer crashed mid-line."""
    if path.endswith(".gz"):
        return None  # rotated archives are written whole; the validation pass checks them
    try:
        size = os.path.getsize(path)
        if size == 0:
            return None
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return None
            # Read back to the previous newline.
            back = min(size, 1 << 20)
            f.seek(size - back)
            tail = f.read(back)
    except OSError as e:
        raise EventsError(f"{path}: cannot read: {e.strerror or e}") from None
    last = tail.rsplit(b"\n", 1)[-1]
    if not last.strip(_JSON_WHITESPACE.encode()):
        return None  # a blank tail is not an event, torn or otherwise
    try:
        json.loads(last)
        return None  # complete object, just no newline at the end
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        pass
    line = _count_newlines(path) + 1
    return Problem(path, line, f"torn final line ({len(last)} bytes, no newline, not JSON): ignored")


def _count_newlines(path: str) -> int:
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            n += chunk.count(b"\n")
    return n


# -- line-level checks --------------------------------------------------------------

@dataclass(frozen=True)
class _LongLine:
    """A line longer than MAX_LINE_BYTES: skipped unread, only its size is known."""
    size: int
    ended: bool  # it had a newline (False: it ran to the end of the file)


def _plain_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


def _iter_lines(path: str) -> Iterator[str | _LongLine]:
    """Lines of a plain or gzip file, newline kept; a cut final line comes without one.

    Read in 1 MiB chunks: memory stays bounded by MAX_LINE_BYTES however long a line is (a file
    without a single newline included); a longer line comes as a _LongLine, not as text.
    """
    chunks = _gzip_chunks(path) if path.endswith(".gz") else _plain_chunks(path)
    pending = b""
    skipped = 0  # bytes of an over-long line seen so far; 0 when not inside one
    first = True
    for chunk in chunks:
        if first:
            # A byte-order mark at the start is not part of line 1 (DuckDB skips it too).
            chunk, first = chunk.removeprefix(b"\xef\xbb\xbf"), False
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            piece = chunk[start:end]
            start = end + 1
            if skipped or len(pending) + len(piece) > MAX_LINE_BYTES:
                yield _LongLine(skipped + len(pending) + len(piece), ended=True)
                pending, skipped = b"", 0
            else:
                yield (pending + piece).decode("utf-8", errors="replace") + "\n"
                pending = b""
        rest = chunk[start:]
        if skipped:
            skipped += len(rest)
        elif len(pending) + len(rest) > MAX_LINE_BYTES:
            pending, skipped = b"", len(pending) + len(rest)
        else:
            pending += rest
    if skipped:
        yield _LongLine(skipped, ended=False)
    elif pending:
        yield pending.decode("utf-8", errors="replace")


def _schema_validator():
    import jsonschema_rs

    return jsonschema_rs.validator_for(event_schema())


def _error_text(err) -> str:
    where = "/".join(str(p) for p in err.instance_path)
    return f"{where}: {err.message}" if where else err.message


def _check_lines(path: str, validator) -> Iterator[tuple[int, str | None, str | None, bool]]:
    """Yield (line number, event name or None, problem or None, is_torn) for every non-blank line."""
    try:
        for lineno, raw in enumerate(_iter_lines(path), start=1):
            if isinstance(raw, _LongLine):  # not JSON parsed: a reader's memory is bounded per line
                end = "" if raw.ended else ", no newline before the end of the file"
                yield (lineno, None, f"line longer than {MAX_LINE_BYTES // (1 << 20)} MiB "
                                     f"({raw.size} bytes{end}): not read", False)
                continue
            text = raw.rstrip("\n")
            if not text.strip(_JSON_WHITESPACE):  # str.strip() would also eat \x1c, \x85...: not blank to JSON
                continue
            # A cut last line is a writer that died mid-write, unless it is all there is: a file with
            # content and not one newline is no event log.
            torn = not raw.endswith("\n") and lineno > 1
            try:
                obj = json.loads(text)
            except (ValueError, RecursionError) as e:  # RecursionError: nested deeper than the parser's stack
                if torn:
                    what = "torn final line (no newline, not JSON): ignored"
                elif not raw.endswith("\n"):
                    what = f"no newline in the whole file ({len(raw.encode())} bytes) and not JSON: not an event log"
                else:
                    what = f"not valid JSON: {e}"
                yield lineno, None, what, torn
                continue
            try:
                err = next(iter(validator.iter_errors(obj)), None)
                problem = None if err is None else _error_text(err)
            except ValueError as e:  # the validator refuses values nested past its recursion limit
                problem = f"cannot validate: {e}"
            name = obj.get("event") if isinstance(obj, dict) else None
            yield lineno, name if isinstance(name, str) else None, problem, False
    except (OSError, zlib.error) as e:
        raise EventsError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None


def validate_files(paths: Iterable[str | Path], *, stop_at_first: bool = False) -> ValidationReport:
    """Check every line (JSONL) or row (Parquet) against the full event schema."""
    sources = resolve_paths(paths)
    validator = _schema_validator()
    lines = valid = invalid = 0
    torn: list[Problem] = []
    problems: list[Problem] = []
    counts: dict[str, int] = {}
    stopped = False
    for s in sources:
        if stopped:
            break
        if s.format == "parquet":
            checked = _validate_parquet(s.path, validator, problems, counts)
            lines += checked[0]
            valid += checked[1]
            invalid += checked[0] - checked[1]
            stopped = stop_at_first and invalid > 0
            continue
        for lineno, name, problem, is_torn in _check_lines(s.path, validator):
            if is_torn:
                torn.append(Problem(s.path, lineno, problem or "torn final line"))
                continue
            lines += 1
            if problem is None:
                valid += 1
                counts[name] = counts.get(name, 0) + 1
            else:
                invalid += 1
                if len(problems) < MAX_PROBLEMS:
                    problems.append(Problem(s.path, lineno, problem))
                if stop_at_first:
                    stopped = True
                    break
    return ValidationReport(len(sources), lines, valid, invalid, tuple(torn), tuple(problems), counts, stopped)


def _validate_parquet(path: str, validator, problems: list[Problem], counts: dict[str, int]) -> tuple[int, int]:
    """Rows of a compacted Parquet file, rebuilt as JSON objects and checked like lines."""
    from toolkit.events.synth import event_dicts  # same row → JSON object mapping as the writer
    import pyarrow.parquet as pq

    total = ok = 0
    table = pq.read_table(path)
    for batch in table.to_batches(50_000):
        import pyarrow as pa
        sub = pa.Table.from_batches([batch])
        missing = [c for c in ALL_COLUMNS if c not in sub.column_names]
        for c in missing:
            sub = sub.append_column(c, pa.nulls(sub.num_rows))
        for i, obj in enumerate(event_dicts(sub.select(list(_PARQUET_ORDER)))):
            total += 1
            err = next(iter(validator.iter_errors(obj)), None)
            if err is None:
                ok += 1
                counts[obj["event"]] = counts.get(obj["event"], 0) + 1
            elif len(problems) < MAX_PROBLEMS:
                problems.append(Problem(path, None, f"row {total}: {_error_text(err)}"))
    return total, ok


_PARQUET_ORDER = ("schema_version", "ts", "event", "request_id", "upload_id", "trace_id", "span_id", "service",
                  "service_version", "user_id", "app_version", "region", "network_type", "media_size_bucket",
                  "flags", "synthetic", "duration_ms", "error_class", "chunk_index", "attempt", "bytes",
                  "media_size_bytes", "chunk_count", "transcode_mode", "queue_wait_ms", "video_id", "reason",
                  "field", "actor", "change")


# -- compaction -----------------------------------------------------------------------

@dataclass(frozen=True)
class CompactResult:
    out_dir: str
    events: int
    skipped: int
    torn: tuple[Problem, ...]
    days: tuple[str, ...]
    files: tuple[str, ...]  # every event file in out_dir after this run
    written: tuple[str, ...] = ()  # the files this run added


def compact(paths: Iterable[str | Path], out_dir: str | Path, *, strict: bool = False,
            con: duckdb.DuckDBPyConnection | None = None) -> CompactResult:
    """Write usable events as Parquet partitioned by UTC day (``out_dir/day=YYYY-MM-DD/*.parquet``),
    plus their stored fold (``out_dir/_fold/``, see ``toolkit.events.stored_fold``) so reports skip the raw scan.

    Within a day, rows are ordered by request_id, then time (audit events, which have none, last).
    Each run writes new files named after the run: compacting into a directory that already
    holds an archive adds to it and never overwrites what is there.
    """
    paths = [str(p) for p in paths]
    sources = resolve_paths(paths)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise EventsError(f"{out}: exists and is not a directory")
    inside = next((s.path for s in sources if Path(os.path.realpath(s.path)).is_relative_to(os.path.realpath(out))),
                  None)
    if inside:
        raise EventsError(f"{inside}: input inside the output directory {out} (its events would be written twice)")
    holder = next((str(p) for p in paths if os.path.isdir(p) and
                   Path(os.path.realpath(out)).is_relative_to(os.path.realpath(p))), None)
    if holder:
        raise EventsError(f"{out}: output inside the input directory {holder} (reading {holder} later would count "
                          "its events twice); choose a directory outside it")
    (out / stored_fold.FOLD_DIR).mkdir(parents=True, exist_ok=True)
    con = con or connect()
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    torn = tuple(p for s in sources if s.format == "jsonl" for p in [_torn_final_line(s.path)] if p)
    scan = _scan_sql(con, sources, ALL_COLUMNS)
    names = ", ".join(c for c in _PARQUET_ORDER)
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW _compact_src AS SELECT *, coalesce({_valid_expr()}, false) AS _ok "
                    f"FROM ({scan})")
        total, ok = con.execute("SELECT count(*), count(*) FILTER (WHERE _ok) FROM _compact_src").fetchone()
        if strict and total - ok - len(torn) > 0:
            codes = dict(con.execute(f"SELECT {_reason_expr()} AS r, count(*) FROM _compact_src GROUP BY r").fetchall())
            named = _name_problems(con, sources, {r for r in codes if r}, limit=1)
            first = next(iter(named.problems), Problem(sources[0].path, None, "invalid line"))
            raise EventsError(f"{first} (--strict: nothing written)")
        days = [d for (d,) in con.execute(
            "SELECT DISTINCT strftime(ts, '%Y-%m-%d') FROM _compact_src WHERE _ok ORDER BY 1").fetchall()]
        for day in days:
            # One COPY per day rather than PARTITION_BY: a partitioned, sorted COPY of millions of events
            # does not spill and runs out of the connection's memory limit; a plain sorted COPY does.
            part = out / f"day={day}"
            part.mkdir(exist_ok=True)
            con.execute(
                # Sorted by request_id: an attempt's events sit together, so the fold's hash aggregation
                # touches each group while it is in cache and ids compress better.
                f"COPY (SELECT {names} FROM _compact_src WHERE _ok AND strftime(ts, '%Y-%m-%d') = {_sql_str(day)} "
                f"ORDER BY request_id NULLS LAST, ts) "
                f"TO {_sql_str(str(part / f'events-{run_id}.parquet'))} (FORMAT parquet, COMPRESSION zstd)")
    except duckdb.Error as e:
        raise EventsError(f"cannot compact events: {_duck_message(e)}") from None
    written = sorted(str(p) for p in out.glob(f"day=*/events-{run_id}.parquet"))
    if written:
        _write_stored_fold(con, out, run_id, written)
    files = tuple(sorted(str(p) for p in out.rglob("*.parquet") if not stored_fold.is_fold_path(p)))
    days = tuple(sorted({Path(f).parent.name.removeprefix("day=") for f in files}))
    return CompactResult(str(out), ok, max(0, total - ok - len(torn)), torn, days, files, tuple(written))


def _write_stored_fold(con: duckdb.DuckDBPyConnection, out: Path, run_id: str, files: Sequence[str]) -> None:
    """Fold exactly the files this run wrote and commit the fold with its manifest."""
    parquet = out / stored_fold.FOLD_DIR / f"fold-{run_id}.parquet"
    fold_sql = _FOLD_SQL.format(reason=_reason_expr(), scan=_scan_sql(con, [Source(f, "parquet") for f in files],
                                                                     SLI_COLUMNS), until_filter="", ids=_FOLD_IDS)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _compact_fold AS {fold_sql}")
        events, max_ts = con.execute("SELECT sum(events)::BIGINT, max(last_event_at) FROM _compact_fold").fetchone()
        con.execute(f"COPY (SELECT * FROM _compact_fold ORDER BY kind, request_id) TO {_sql_str(str(parquet))} "
                    f"(FORMAT parquet, COMPRESSION zstd)")
    except duckdb.Error as e:
        raise EventsError(f"cannot write the stored fold {parquet}: {_duck_message(e)}") from None
    finally:
        con.execute("DROP TABLE IF EXISTS _compact_fold")
    stored_fold.write_manifest(out, run_id, files, FOLD_KEY, int(events or 0), max_ts)
