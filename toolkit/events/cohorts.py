"""The cardinality guard: cohort dimensions are open strings, but bounded ones.

A log from any service may bring its own regions, app versions or networks (``sa-east``,
``cellular``): the reader takes them as they are. What it refuses is a "dimension" that is
really an identifier (a user id in ``region``, a build hash in ``app_version``): grouping by it
would give one segment per attempt, and every breakdown, comparison and metric label built on
it would explode. So after the fold, each dimension's distinct values among attempts are
counted (approximately, in the scan the reader makes anyway; exactly near the limit),
and more than the limit (``DEFAULT_MAX_COHORT_VALUES``, or ``OBSLAB_MAX_COHORT_VALUES``,
or the reader's ``max_cohort_values``) is an error naming the dimension and its count.
"""

from __future__ import annotations

import os

import duckdb

from contract.env import ENV_MAX_COHORT_VALUES
from toolkit.events.model import EventsError

__all__ = ["COHORT_COLUMNS", "DEFAULT_MAX_COHORT_VALUES", "TooManyCohortValues", "max_cohort_values",
           "approx_sql", "check_cardinality"]

# The fold's columns that are cohort dimensions (the event's four, its two flags, the build).
COHORT_COLUMNS = ("region", "app_version", "network_type", "media_size_bucket", "release", "transcode_mode",
                  "service_version")
# A cohort is a handful to a few hundred values (regions, versions, networks); a thousand is
# already more segments than any breakdown can show.
DEFAULT_MAX_COHORT_VALUES = 1000


class TooManyCohortValues(EventsError):
    """A cohort dimension has more distinct values than allowed; the message names it and its count."""

    def __init__(self, column: str, distinct: int, limit: int, examples: list[str]):
        self.column, self.distinct, self.limit = column, distinct, limit
        shown = ", ".join(repr(v) for v in examples)
        super().__init__(
            f"cohort dimension {column!r} has {distinct:,} distinct values, more than the {limit:,} allowed "
            f"(e.g. {shown}): a cohort is a bounded set (regions, versions, networks), not an identifier. "
            f"Fix the emitter, or raise the limit with {ENV_MAX_COHORT_VALUES}=N (0: no limit).")


def max_cohort_values() -> int | None:
    """The limit from ``OBSLAB_MAX_COHORT_VALUES`` (default ``DEFAULT_MAX_COHORT_VALUES``; 0: none)."""
    text = os.environ.get(ENV_MAX_COHORT_VALUES, "").strip()
    if not text:
        return DEFAULT_MAX_COHORT_VALUES
    try:
        n = int(text)
    except ValueError:
        raise EventsError(f"{ENV_MAX_COHORT_VALUES}={text!r}: not a whole number (0: no limit)") from None
    if n < 0:
        raise EventsError(f"{ENV_MAX_COHORT_VALUES}={text!r}: must be 0 (no limit) or more")
    return n or None


def approx_sql() -> str:
    """SQL select items: the approximate distinct count (HyperLogLog) of each cohort column, to add
    to a query over the fold that runs anyway (one scan; exact for a handful of values in practice)."""
    return ", ".join(f"approx_count_distinct({c})::BIGINT AS _n_{c}" for c in COHORT_COLUMNS)


def check_cardinality(con: duckdb.DuckDBPyConnection, table: str, approx: dict[str, int], limit: int | None,
                      where: str = "TRUE") -> dict[str, int]:
    """Raise ``TooManyCohortValues`` for the first column past ``limit``. ``approx`` (from
    ``approx_sql``) screens; a column near the limit is counted exactly before it is judged, so
    the estimate's error never refuses a log. Returns the counts (exact where counted)."""
    counts = {c: int(approx.get(c) or 0) for c in COHORT_COLUMNS}
    if limit is None:
        return counts
    for column in COHORT_COLUMNS:
        if counts[column] <= 0.9 * limit:
            continue
        counts[column] = int(con.execute(f"SELECT count(DISTINCT {column}) FROM {table} WHERE {where}").fetchone()[0])
        if counts[column] > limit:
            examples = [v for (v,) in con.execute(
                f"SELECT DISTINCT {column}::VARCHAR FROM {table} WHERE {where} AND {column} IS NOT NULL "
                f"ORDER BY 1 LIMIT 3").fetchall()]
            raise TooManyCohortValues(column, counts[column], limit, examples)
    return counts
