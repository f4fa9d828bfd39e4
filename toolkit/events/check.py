"""The structural check and the typed scan: which lines the fast path can use, and why it skips the others.

One SQL relation over every source (``scan_sql``), typed by ``toolkit.events.duck``'s columns; one
condition per reason a line is skipped (``SKIP_REASONS``).
"""

from __future__ import annotations

from typing import Sequence

import duckdb

from contract.events import AUDIT_EVENTS, SCHEMA_VERSION, SERVICES
from toolkit.events.duck import sql_list, sql_str
from toolkit.events.model import Source

# Per event, the optional fields the schema requires.
REQUIRED_BY_EVENT = {
    "upload_started": ("chunk_count",),
    "chunk_uploaded": ("duration_ms",),
    "chunk_failed": ("error_class",),
    "upload_completed": ("duration_ms", "chunk_count"),
    "transcode_completed": ("duration_ms",),
    "transcode_failed": ("duration_ms", "error_class"),
    "publish_succeeded": ("duration_ms",),
    "publish_failed": ("duration_ms", "error_class"),
}


# The structural check, one condition per reason a line is skipped, in the order they are tried:
# a line is usable when every condition holds, and the first that fails is its reason. The same
# SQL skips lines in the fast path, counts the reasons in the same scan, and (``name_problems``)
# names the skipped lines: the list can only name lines that were skipped.
# Types and bounded sets come from the typed read (a wrong type reads as NULL), and ts from
# ``ts_sql`` (an offset converted to UTC; no zone or an impossible time: NULL).
def checks() -> list[tuple[str, str]]:
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
         f"(event IN ({sql_list(AUDIT_EVENTS)}, 'upload_rejected') "
         "OR (request_id IS NOT NULL AND upload_id IS NOT NULL))"),
    ]
    for ev, fields in REQUIRED_BY_EVENT.items():
        cond = " AND ".join(f"{f} IS NOT NULL" for f in fields)
        checks.append((f"{ev} without {' or '.join(fields)}", f"(event <> {sql_str(ev)} OR ({cond}))"))
    return checks


# Reason code → text; code 0 is a usable line.
SKIP_REASONS: dict[int, str] = {n: text for n, (text, _) in enumerate(checks(), start=1)}


def reason_expr() -> str:
    """SQL: 0 for a usable row, else the code of the first check it fails (``SKIP_REASONS``)."""
    whens = " ".join(f"WHEN NOT coalesce({cond}, false) THEN {n}" for n, (_, cond) in enumerate(checks(), start=1))
    return f"(CASE {whens} ELSE 0 END)::UTINYINT"


def valid_expr() -> str:
    """SQL: the structural check a row must pass to be used (all of ``checks``)."""
    return " AND ".join(f"coalesce({cond}, false)" for _, cond in checks())


def ts_sql(text: str) -> str:
    """SQL: an event's ts text → TIMESTAMP in UTC. An offset is converted (the session time zone
    is UTC); a time without a zone or that is not a time gives NULL, so the line is skipped.
    The same rule as ``contract.events.parse_time(..., zone_required=True)`` and the schema."""
    return (f"CASE WHEN regexp_matches({text}, '(?:[Zz]|[+-][0-9][0-9]:?[0-9][0-9])$') "
            f"THEN TRY_CAST({text} AS TIMESTAMPTZ)::TIMESTAMP END")


# Read as text, then converted: so a missing value and a value that cannot be used get different reasons.
_TEXT_READ = {"ts": "VARCHAR", "event": "VARCHAR", "service": "VARCHAR"}


def scan_sql(con: duckdb.DuckDBPyConnection, sources: Sequence[Source], columns: dict[str, str]) -> str:
    """SQL of one relation over all sources with exactly ``columns`` (typed), plus the presence flags
    ``_ts_given``, ``_event_given``, ``_service_given`` the structural check reads."""
    selects = []
    jsonl = [s.path for s in sources if s.format == "jsonl"]
    parquet = [s.path for s in sources if s.format == "parquet"]
    flags = ("ts IS NOT NULL AS _ts_given, event IS NOT NULL AS _event_given, "
             "service IS NOT NULL AS _service_given")
    if jsonl:
        read = {k: _TEXT_READ.get(k, v) for k, v in columns.items()}
        cols = "{" + ", ".join(f"{sql_str(k)}: {sql_str(v)}" for k, v in read.items()) + "}"
        exprs = [f"{ts_sql('ts')} AS ts" if k == "ts" else f"TRY_CAST({k} AS {v}) AS {k}" if k in _TEXT_READ
                 else k for k, v in columns.items()]
        selects.append(
            f"SELECT {', '.join(exprs)}, {flags} FROM read_json([{sql_list(jsonl)}], format='newline_delimited', "
            f"columns={cols}, ignore_errors=true, maximum_object_size=1048576)")
    if parquet:
        have = {r[0]: r[1] for r in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet([{sql_list(parquet)}], union_by_name=true)").fetchall()}
        exprs = []
        for name, typ in columns.items():
            if name not in have:
                exprs.append(f"CAST(NULL AS {typ}) AS {name}")
            elif name == "ts" and have[name] == "VARCHAR":
                exprs.append(f"{ts_sql('ts')} AS ts")
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
                       f"FROM read_parquet([{sql_list(parquet)}], union_by_name=true)")
    return " UNION ALL ".join(selects)
