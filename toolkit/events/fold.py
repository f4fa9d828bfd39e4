"""The per-request fold in SQL: one pass from checked events to one row per (kind, reason, request_id),
and the merge of folds of disjoint event sets (stored folds, raw files)."""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

from contract.events import ALL_EVENTS, SCHEMA_VERSION
from toolkit.events.check import REQUIRED_BY_EVENT, reason_expr, ts_sql
from toolkit.events.duck import ENUM_TYPES, SLI_COLUMNS, sql_str

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


FOLD_SQL = """
WITH checked AS (
    SELECT *, {reason} AS reason FROM ({scan})
    {until_filter}
), ev AS (
    SELECT * REPLACE (CASE WHEN reason = 0 THEN request_id END AS request_id),
           CASE WHEN reason <> 0 THEN 3
                WHEN event = 'upload_rejected' THEN 1
                WHEN event IN ('fault_changed', 'flag_changed', 'shed_changed') THEN 2
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
MERGE_SQL = """
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

FOLD_IDS = "any_value(upload_id) AS upload_id, any_value(user_id) AS user_id,"
NO_IDS = "NULL::VARCHAR AS upload_id, NULL::VARCHAR AS user_id,"

# Which fold definition a stored fold was made by: a fold from other SQL or other types is not reused.
FOLD_KEY = hashlib.sha256(json.dumps(
    [FOLD_SQL, MERGE_SQL, FOLD_IDS, SLI_COLUMNS, reason_expr(), ts_sql("ts"),
     {k: list(v) for k, v in ENUM_TYPES.items()}, REQUIRED_BY_EVENT, SCHEMA_VERSION]).encode()).hexdigest()[:16]


def stored_fold_sql(parquet: str, with_ids: bool) -> str:
    """A stored fold's rows. Its ENUM columns come back as strings, which every reader of the
    fold compares to string literals alike; casting them back would cost more than the read."""
    ids = "" if with_ids else " REPLACE (NULL::VARCHAR AS upload_id, NULL::VARCHAR AS user_id)"
    return f"SELECT *{ids} FROM read_parquet({sql_str(parquet)})"


def merged_sql(parts: Sequence[str]) -> str:
    """One fold from the folds of disjoint event sets (a single part is already one)."""
    if len(parts) == 1:
        return parts[0]
    return MERGE_SQL.format(parts=" UNION ALL BY NAME ".join(f"({p})" for p in parts))
