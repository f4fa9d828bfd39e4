"""The DuckDB side of the reader: the connection (event ENUM types, bounded memory), the typed
columns read and written, SQL quoting."""

from __future__ import annotations

import os
from typing import Iterable

import duckdb

from contract.events import ALL_EVENTS, ERROR_CLASSES, SERVICES

# DuckDB settings for analytics on a small shared machine: bounded memory, spill to disk.
DEFAULT_MEMORY_LIMIT = os.environ.get("OBSLAB_DUCKDB_MEMORY_LIMIT", "350MB")

# The columns the SLI engine reads, with explicit types (read_json does no sniffing).
# event is an ENUM: compact, and an unknown name becomes NULL, so the line is skipped.
# Cohort dimensions and flag variants are open strings: another service's log brings its own
# regions or networks (the lab's sets in contract.events are the lab's values, not a limit); the
# cardinality guard (toolkit.events.cohorts) stops a dimension that is really an identifier.
SLI_COLUMNS: dict[str, str] = {
    "schema_version": "INTEGER",
    "ts": "TIMESTAMP",
    "event": "event_name",
    "request_id": "VARCHAR",
    "upload_id": "VARCHAR",
    "service": "service_t",
    "service_version": "VARCHAR",
    "user_id": "VARCHAR",
    "app_version": "VARCHAR",
    "region": "VARCHAR",
    "network_type": "VARCHAR",
    "media_size_bucket": "VARCHAR",
    "flags": "STRUCT(transcode_mode VARCHAR, release VARCHAR)",
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
    "transcode_mode": "VARCHAR",
    "video_id": "VARCHAR",
    "reason": "VARCHAR",
    "field": "VARCHAR",
    "actor": "VARCHAR",
    "change": "JSON",
}


def connect(memory_limit: str = DEFAULT_MEMORY_LIMIT, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the event types defined and memory bounded."""
    con = duckdb.connect(config={"memory_limit": memory_limit, **({"threads": threads} if threads else {})})
    for name, values in ENUM_TYPES.items():
        con.execute(f"CREATE TYPE {name} AS ENUM ({sql_list(values)})")
    con.execute("SET enable_progress_bar = false")
    # TIMESTAMPTZ → TIMESTAMP (an event's ts with an offset) converts to this zone: UTC.
    con.execute("SET TimeZone = 'UTC'")
    # Results never depend on row order (every query that needs one says ORDER BY); not keeping it
    # lets CREATE TABLE AS and scans run without order-preserving buffers.
    con.execute("SET preserve_insertion_order = false")
    return con


# Sets the toolkit's SQL depends on, as DuckDB ENUMs: one byte per value, cheap to group, and a
# value outside the set reads as NULL (the structural check skips the line; `validate` names it).
# Event names and services define what a line means; error classes are what the SLIs count
# (timeouts). Cohort dimensions are not here: they are open strings (see SLI_COLUMNS).
ENUM_TYPES = {
    "event_name": ALL_EVENTS,
    "service_t": SERVICES,
    "error_class_t": ERROR_CLASSES,
}


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def sql_list(values: Iterable[str]) -> str:
    return ", ".join(sql_str(v) for v in values)


def duck_message(e: Exception) -> str:
    return str(e).splitlines()[0]


PARQUET_ORDER = ("schema_version", "ts", "event", "request_id", "upload_id", "trace_id", "span_id", "service",
                  "service_version", "user_id", "app_version", "region", "network_type", "media_size_bucket",
                  "flags", "synthetic", "duration_ms", "error_class", "chunk_index", "attempt", "bytes",
                  "media_size_bytes", "chunk_count", "transcode_mode", "queue_wait_ms", "video_id", "reason",
                  "field", "actor", "change")
