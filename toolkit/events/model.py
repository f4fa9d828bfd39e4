"""What reading events yields: sources, problems (unusable lines), the loaded ``EventSet``, the
validation report, and the errors a reader raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from contract import events as contract

MAX_PROBLEMS = 20
# Longest event line validate reads (events are well under 4 KiB); a longer one is a problem, not read.
MAX_LINE_BYTES = 1 << 20
# Above this share of lines skipped by the structural check, reading fails (--max-skipped):
# a log from another emitter, or of another schema, must not turn into figures about nothing.
DEFAULT_MAX_SKIPPED_SHARE = 0.01


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
    pruned_files: int = 0  # files of day partitions outside the time scope, not read (sources.prune_days)
    # cohort dimension → distinct values among the attempts (approximate; exact near the limit: toolkit.events.cohorts)
    cohort_values: dict[str, int] = field(default_factory=dict)

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
        if self.pruned_files:
            parts.append(f"{self.pruned_files} file(s) of days outside the scope not read")
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
