"""Where events come from: files, directories and globs resolved into ``Source``s, and the
day partitions of a compacted archive pruned to a time scope."""

from __future__ import annotations

import glob
import os
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Iterable, Sequence

from contract.regular_file import kind_of
from toolkit.events import stored_fold
from toolkit.events.model import EventsError, Source

_JSONL_NAME = re.compile(r"\.(jsonl|ndjson|json)(\.\d+)?(\.gz)?$")


def format_of(path: str) -> str | None:
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
                if f.is_file() and format_of(str(f)) is not None and not stored_fold.is_fold_path(f))
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
            fmt = format_of(c) or "jsonl"
            if c not in seen:
                seen.add(c)
                out.append(Source(c, fmt))
    # Rotated files hold older events; order does not change results but keeps reports stable.
    return tuple(out)


# -- Hive partitions -------------------------------------------------------------------------
#
# ``compact`` writes ``day=YYYY-MM-DD/`` directories (UTC day of each event's ts), the Hive layout
# DuckDB, Spark, Athena or BigQuery read as a ``day`` column. A scope in time needs only the days
# it touches: the files of other days are not opened at all.

_DAY_DIR = re.compile(r"^day=(\d{4}-\d{2}-\d{2})$")
# How far before ``since`` events are still read: an attempt counted in the scope (by its outcome
# time) may have started earlier; its first events are needed for its latency.
DEFAULT_SINCE_LOOKBACK = timedelta(days=1)


def partition_day(path: str) -> date | None:
    """The day of a file in a ``day=YYYY-MM-DD/`` partition, else None."""
    m = _DAY_DIR.match(Path(path).parent.name)
    if not m:
        return None
    try:
        return date.fromisoformat(m.group(1))
    except ValueError:
        return None


def prune_days(sources: Sequence[Source], *, since: datetime | None = None, until: datetime | None = None,
               lookback: timedelta = DEFAULT_SINCE_LOOKBACK) -> tuple[Source, ...]:
    """Sources without the day partitions that hold no event of interest: days after ``until`` (its
    events would be ignored) and days ending before ``since - lookback``. Files outside a
    ``day=`` partition are always kept."""
    first = (since - lookback).date() if since is not None else None
    last = until.date() if until is not None else None
    kept = []
    for s in sources:
        day = partition_day(s.path)
        if day is not None and ((first is not None and day < first) or (last is not None and day > last)):
            continue
        kept.append(s)
    return tuple(kept)
