"""Events in: read, check, fold, validate and compact event logs (schema v1, ``contract.events``).

The public API, by job:

* ``load_events(paths, strict=False, until=None) -> EventSet`` (``reader``): the fast path the SLI
  engine uses. One DuckDB scan reads only the columns the SLIs need (explicit JSON column types,
  so nothing is sniffed), drops lines it cannot use (not JSON, a required field missing or of
  the wrong type, an unknown event name: the *structural check*, ``check``) and folds the rest
  into one row per ``request_id`` (``fold``; see ``toolkit.events.attempts``), each event identity
  once (duplicates counted). Skipped lines are counted by reason in the same scan; when there
  are any, a second pass through the same check names them as ``file:line: reason`` (first
  ``MAX_PROBLEMS``, and the first of each reason). More than ``max_skipped_share`` skipped
  (default 1 %) raises ``TooManySkipped``. ``strict=True`` raises ``EventsError`` on the first
  one. ``ts`` with an offset is converted to UTC; without a zone the line is skipped. A torn
  final line (a writer that crashed mid-line: no trailing newline, not JSON; or the cut end of
  a truncated ``.gz``) is tolerated and reported, never fatal, strict or not (``lines``).
* ``validate_files(paths) -> ValidationReport`` (``validate``): every line against the full JSON
  Schema (``contract/schemas/event-v1.schema.json``), for ``obslab events validate``.
* ``compact(paths, out_dir) -> CompactResult`` (``compact``): usable events rewritten as Parquet
  partitioned by day (``day=YYYY-MM-DD/``) with their stored fold (``stored_fold``); reading that
  directory gives the same reports.

Cohort dimensions (region, app_version, network_type, media_size_bucket, the flags) are open
strings, so any log that follows the event contract's structure can be read; a dimension with
more than ``DEFAULT_MAX_COHORT_VALUES`` distinct values raises ``TooManyCohortValues`` (``cohorts``).

Paths may be files, directories (searched for ``*.jsonl``, ``*.jsonl.N``, ``*.jsonl.gz``,
``*.parquet``) or glob patterns (``sources.resolve_paths``). ``connect`` opens the DuckDB
connection every reader uses (``duck``); ``parse_time`` reads a command-line time.
"""

from toolkit.events.check import SKIP_REASONS
from toolkit.events.cohorts import DEFAULT_MAX_COHORT_VALUES, TooManyCohortValues
from toolkit.events.compact import CompactResult, compact
from toolkit.events.duck import connect
from toolkit.events.model import (
    DEFAULT_MAX_SKIPPED_SHARE,
    MAX_LINE_BYTES,
    MAX_PROBLEMS,
    EventsError,
    EventSet,
    Problem,
    Source,
    TooManySkipped,
    ValidationReport,
    parse_time,
)
from toolkit.events.reader import load_events
from toolkit.events.sources import resolve_paths
from toolkit.events.validate import validate_files

__all__ = [
    "EventsError",
    "TooManySkipped",
    "TooManyCohortValues",
    "Problem",
    "Source",
    "EventSet",
    "ValidationReport",
    "CompactResult",
    "resolve_paths",
    "load_events",
    "validate_files",
    "compact",
    "connect",
    "parse_time",
    "MAX_PROBLEMS",
    "MAX_LINE_BYTES",
    "DEFAULT_MAX_SKIPPED_SHARE",
    "DEFAULT_MAX_COHORT_VALUES",
    "SKIP_REASONS",
]
