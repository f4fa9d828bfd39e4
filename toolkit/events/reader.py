"""Events in, the fast path the SLI engine uses: ``load_events`` reads JSONL (globs, rotated
``events.jsonl.1``…, ``.gz``) and Parquet in one DuckDB scan, skips what fails the structural check
(``toolkit.events.check``), folds the rest per ``request_id`` (``toolkit.events.fold``) and names the
skipped lines through the same check.
"""

from __future__ import annotations

import json
import tempfile
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

import duckdb

from toolkit.events import cohorts, remote, stored_fold
from toolkit.events.check import SKIP_REASONS, reason_expr, scan_sql
from toolkit.events.duck import SLI_COLUMNS, connect, duck_message
from toolkit.events.fold import (
    FOLD_IDS,
    FOLD_KEY,
    FOLD_SQL,
    KIND_ATTEMPT,
    KIND_AUDIT,
    KIND_INVALID,
    KIND_REJECTED,
    NO_IDS,
    merged_sql,
    stored_fold_sql,
)
from toolkit.events.lines import (
    JSON_WHITESPACE,
    iter_lines,
    not_json,
    salvage_truncated_gzip,
    torn_final_line,
)
from toolkit.events.model import (
    DEFAULT_MAX_SKIPPED_SHARE,
    MAX_PROBLEMS,
    EventsError,
    EventSet,
    Problem,
    Source,
    TooManySkipped,
    parse_time,
)
from toolkit.events.sources import prune_days, resolve_paths
from toolkit.events.validate import error_text, schema_validator

__all__ = ["load_events"]


def load_events(paths: Iterable[str | Path], *, strict: bool = False, until: str | datetime | None = None,
                con: duckdb.DuckDBPyConnection | None = None, with_ids: bool = True,
                max_skipped_share: float | None = DEFAULT_MAX_SKIPPED_SHARE,
                max_cohort_values: int | None = None, since: str | datetime | None = None) -> EventSet:
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

    ``since`` and ``until`` prune a compacted archive's day partitions (``day=YYYY-MM-DD/``):
    days after ``until`` and days ending more than a day before ``since`` are not read
    (``sources.prune_days``; ``EventSet.pruned_files`` counts them). ``since`` filters nothing
    else: the report's scope does.

    Paths may be http(s) URLs (``toolkit.events.remote``: downloaded, then read; named by URL).

    Cohort dimensions are open strings; when one has more distinct values among the attempts
    than ``max_cohort_values`` (``None``: ``OBSLAB_MAX_COHORT_VALUES``, default 1000; ``0``: no
    limit), ``TooManyCohortValues`` (an ``EventsError``) names it and its count
    (``toolkit.events.cohorts``). ``EventSet.cohort_values`` holds each dimension's count.
    """
    with remote.localized(paths) as (local, names):
        return remote.relabel_events(
            _load_local(local, strict=strict, until=until, con=con, with_ids=with_ids,
                        max_skipped_share=max_skipped_share, max_cohort_values=max_cohort_values, since=since),
            names)


def _load_local(paths: Iterable[str | Path], *, strict: bool = False, until: str | datetime | None = None,
                con: duckdb.DuckDBPyConnection | None = None, with_ids: bool = True,
                max_skipped_share: float | None = DEFAULT_MAX_SKIPPED_SHARE,
                max_cohort_values: int | None = None, since: str | datetime | None = None) -> EventSet:
    """``load_events`` of local paths."""
    all_sources = resolve_paths(paths)
    until_t = parse_time(until)
    sources = prune_days(all_sources, since=parse_time(since, "since"), until=until_t)
    if not sources:
        raise EventsError(f"no event file in the time scope: the {len(all_sources)} file(s) given are all in "
                          "day partitions outside it")
    cohort_limit = cohorts.max_cohort_values() if max_cohort_values is None else (max_cohort_values or None)
    if con is None:
        con = connect()
    else:
        con.execute("SET TimeZone = 'UTC'")
    folds, prefolded = stored_fold.usable_folds([s.path for s in sources if s.format == "parquet"], FOLD_KEY,
                                                until_t)
    raw = tuple(s for s in sources if s.path not in prefolded)
    torn = tuple(p for s in raw if s.format == "jsonl" for p in [torn_final_line(s.path)] if p)
    ids = (FOLD_IDS if with_ids else NO_IDS)
    until_filter = "" if until_t is None else f"WHERE ts IS NULL OR ts <= TIMESTAMP '{until_t.isoformat(sep=' ')}'"
    stored_parts = [stored_fold_sql(f.parquet, with_ids) for f in folds]

    def fold(raw_sources: Sequence[Source]) -> None:
        parts = list(stored_parts)
        if raw_sources:
            parts.insert(0, FOLD_SQL.format(reason=reason_expr(), scan=scan_sql(con, raw_sources, SLI_COLUMNS),
                                             until_filter=until_filter, ids=ids))
        # A single stored fold is read in place (a view: each query reads only the columns it uses);
        # anything folded here is materialised once.
        relation = "VIEW" if parts == stored_parts and len(parts) == 1 else "TABLE"
        for (old_kind,) in con.execute("SELECT 'VIEW' FROM duckdb_views() WHERE view_name = '_requests' UNION ALL "
                                       "SELECT 'TABLE' FROM duckdb_tables() WHERE table_name = '_requests'"
                                       ).fetchall():
            con.execute(f"DROP {old_kind} _requests")  # an earlier load on this connection
        con.execute(f"CREATE TEMP {relation} _requests AS {merged_sql(parts)}")

    try:
        fold(raw)
    except duckdb.Error as e:
        if "gzip" not in str(e).lower():
            raise EventsError(f"cannot read events: {duck_message(e)}") from None
        # A truncated archive (a crash while rotating): read what it holds, its last line is torn.
        with tempfile.TemporaryDirectory(prefix="obslab-gz-") as tmp:
            salvaged, gz_torn = salvage_truncated_gzip(raw, Path(tmp))
            torn = torn + gz_torn
            try:
                fold(salvaged)
            except duckdb.Error as e2:
                raise EventsError(f"cannot read events: {duck_message(e2)}") from None
    rows = con.execute(
        "SELECT kind, sum(events)::BIGINT, min(first_event_at), max(last_event_at), sum(duplicates)::BIGINT, "
        f"{cohorts.approx_sql()} FROM _requests GROUP BY kind").fetchall()
    by_kind = {r[0]: r[1:5] for r in rows}
    approx_cohorts = next((dict(zip(cohorts.COHORT_COLUMNS, r[5:])) for r in rows if r[0] == KIND_ATTEMPT), {})
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
        pruned_files=len(all_sources) - len(sources),
    )
    if any(n > 0 for n in by_reason.values()):
        # The fast scan has no line numbers: a second pass, through the same check, names the skipped lines.
        named = name_problems(con, raw, {r for r, n in by_reason.items() if n > 0},
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
    es.cohort_values = cohorts.check_cardinality(con, "_requests", approx_cohorts, cohort_limit,
                                                 where=f"kind = {KIND_ATTEMPT}")
    return es


@dataclass(frozen=True)
class _Named:
    problems: tuple[Problem, ...]  # the first skipped lines, in file order
    first: dict[int, Problem]  # reason code → its first skipped line
    gz_torn: tuple[Problem, ...]  # cut final lines of truncated .gz archives


def name_problems(con: duckdb.DuckDBPyConnection, sources: Sequence[Source], reasons: set[int], limit: int,
                   until: datetime | None = None) -> _Named:
    """Name skipped lines (``path:line: reason (detail)``) by running the fast path's own check,
    ``reason_expr`` over ``scan_sql``, over each file in file order: the first ``limit`` of them
    and the first of each reason in ``reasons``. Rows come out one per non-blank line (DuckDB's
    JSON reader skips blank lines and yields a row of NULLs for a line it cannot parse). Lines
    after ``until`` were ignored, not skipped: they are not named."""
    codes_sql = (f"SELECT {reason_expr()} AS reason FROM ({{scan}})" if until is None else
                 f"SELECT CASE WHEN ts > TIMESTAMP '{until.isoformat(sep=' ')}' THEN 0 ELSE {reason_expr()} END "
                 f"AS reason FROM ({{scan}})")
    validator = schema_validator()
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
                codes = con.execute(codes_sql.format(scan=scan_sql(con, [s], SLI_COLUMNS))).fetchnumpy()["reason"]
            except duckdb.Error:
                if not s.path.endswith(".gz"):
                    raise
                # A truncated archive: its complete lines, numbered as in the archive (the cut line is torn).
                with tempfile.TemporaryDirectory(prefix="obslab-gz-") as tmp:
                    (copy,), _ = salvage_truncated_gzip([s], Path(tmp))
                    codes = con.execute(codes_sql.format(scan=scan_sql(con, [copy], SLI_COLUMNS))
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
            for lineno, raw in enumerate(iter_lines(s.path), start=1):
                text = raw.rstrip("\n")
                if not text.strip(JSON_WHITESPACE):
                    continue  # blank: not a row
                row += 1
                if row in wanted:
                    code = int(codes[row])
                    if not raw.endswith("\n") and code == 1 and not_json(text):
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
    return None if err is None else error_text(err)
