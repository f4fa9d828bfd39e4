"""Compaction: usable events rewritten as Parquet partitioned by UTC day (``day=YYYY-MM-DD/``),
with their stored fold (``toolkit.events.stored_fold``) so reports skip the raw scan."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import duckdb

from toolkit.events import remote, stored_fold
from toolkit.events.check import reason_expr, scan_sql, valid_expr
from toolkit.events.duck import (
    ALL_COLUMNS,
    PARQUET_ORDER,
    SLI_COLUMNS,
    connect,
    duck_message,
    sql_str,
)
from toolkit.events.fold import FOLD_IDS, FOLD_KEY, FOLD_SQL
from toolkit.events.lines import torn_final_line
from toolkit.events.model import EventsError, Problem, Source
from toolkit.events.reader import name_problems
from toolkit.events.sources import resolve_paths

__all__ = ["CompactResult", "compact"]

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
    holds an archive adds to it and never overwrites what is there. Inputs may be http(s) URLs (``toolkit.events.remote``).
    """
    with remote.localized(paths) as (local, names):
        result = _compact_local(local, out_dir, strict=strict, con=con)
    return replace(result, torn=tuple(replace(p, path=names.get(p.path, p.path)) for p in result.torn))


def _compact_local(paths: Iterable[str | Path], out_dir: str | Path, *, strict: bool = False,
            con: duckdb.DuckDBPyConnection | None = None) -> CompactResult:
    """``compact`` of local paths."""
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
    torn = tuple(p for s in sources if s.format == "jsonl" for p in [torn_final_line(s.path)] if p)
    scan = scan_sql(con, sources, ALL_COLUMNS)
    names = ", ".join(c for c in PARQUET_ORDER)
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW _compact_src AS SELECT *, coalesce({valid_expr()}, false) AS _ok "
                    f"FROM ({scan})")
        total, ok = con.execute("SELECT count(*), count(*) FILTER (WHERE _ok) FROM _compact_src").fetchone()
        if strict and total - ok - len(torn) > 0:
            codes = dict(con.execute(f"SELECT {reason_expr()} AS r, count(*) FROM _compact_src GROUP BY r").fetchall())
            named = name_problems(con, sources, {r for r in codes if r}, limit=1)
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
                f"COPY (SELECT {names} FROM _compact_src WHERE _ok AND strftime(ts, '%Y-%m-%d') = {sql_str(day)} "
                f"ORDER BY request_id NULLS LAST, ts) "
                f"TO {sql_str(str(part / f'events-{run_id}.parquet'))} (FORMAT parquet, COMPRESSION zstd)")
    except duckdb.Error as e:
        raise EventsError(f"cannot compact events: {duck_message(e)}") from None
    written = sorted(str(p) for p in out.glob(f"day=*/events-{run_id}.parquet"))
    if written:
        _write_stored_fold(con, out, run_id, written)
    files = tuple(sorted(str(p) for p in out.rglob("*.parquet") if not stored_fold.is_fold_path(p)))
    days = tuple(sorted({Path(f).parent.name.removeprefix("day=") for f in files}))
    return CompactResult(str(out), ok, max(0, total - ok - len(torn)), torn, days, files, tuple(written))


def _write_stored_fold(con: duckdb.DuckDBPyConnection, out: Path, run_id: str, files: Sequence[str]) -> None:
    """Fold exactly the files this run wrote and commit the fold with its manifest."""
    parquet = out / stored_fold.FOLD_DIR / f"fold-{run_id}.parquet"
    fold_sql = FOLD_SQL.format(reason=reason_expr(), scan=scan_sql(con, [Source(f, "parquet") for f in files],
                                                                     SLI_COLUMNS), until_filter="", ids=FOLD_IDS)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _compact_fold AS {fold_sql}")
        events, max_ts = con.execute("SELECT sum(events)::BIGINT, max(last_event_at) FROM _compact_fold").fetchone()
        con.execute(f"COPY (SELECT * FROM _compact_fold ORDER BY kind, request_id) TO {sql_str(str(parquet))} "
                    f"(FORMAT parquet, COMPRESSION zstd)")
    except duckdb.Error as e:
        raise EventsError(f"cannot write the stored fold {parquet}: {duck_message(e)}") from None
    finally:
        con.execute("DROP TABLE IF EXISTS _compact_fold")
    stored_fold.write_manifest(out, run_id, files, FOLD_KEY, int(events or 0), max_ts)
