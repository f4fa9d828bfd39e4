"""The cardinality guard: cohort dimensions are open strings, but bounded ones.

A log from any service may bring its own regions, app versions or networks (``sa-east``,
``cellular``): the reader takes them as they are. What it refuses is a "dimension" that is
really an identifier (a user id in ``region``, a build hash in ``app_version``): grouping by it
would give one segment per attempt, and every breakdown, comparison and metric label built on
it would explode. So after the fold, each dimension's distinct values among attempts are
counted, and more than the limit (``DEFAULT_MAX_COHORT_VALUES``, or ``OBSLAB_MAX_COHORT_VALUES``,
or the reader's ``max_cohort_values``) is an error naming the dimension and its count.
"""

from __future__ import annotations

import os

import duckdb

from contract.env import ENV_MAX_COHORT_VALUES
from toolkit.events.model import EventsError

__all__ = ["COHORT_COLUMNS", "DEFAULT_MAX_COHORT_VALUES", "TooManyCohortValues", "max_cohort_values",
           "cohort_cardinality", "check_cardinality"]

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


def cohort_cardinality(con: duckdb.DuckDBPyConnection, table: str, where: str = "TRUE") -> dict[str, int]:
    """Distinct non-null values of each cohort column of ``table`` (rows matching ``where``), in one scan."""
    have = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
    cols = [c for c in COHORT_COLUMNS if c in have]
    if not cols:
        return {}
    row = con.execute(f"SELECT {', '.join(f'count(DISTINCT {c})' for c in cols)} FROM {table} WHERE {where}"
                      ).fetchone()
    return dict(zip(cols, (int(n) for n in row)))


def check_cardinality(con: duckdb.DuckDBPyConnection, table: str, limit: int | None, where: str = "TRUE"
                      ) -> dict[str, int]:
    """``cohort_cardinality``, raising ``TooManyCohortValues`` for the first column past ``limit``."""
    counts = cohort_cardinality(con, table, where)
    for column, n in counts.items():
        if limit is not None and n > limit:
            examples = [v for (v,) in con.execute(
                f"SELECT DISTINCT {column}::VARCHAR FROM {table} WHERE {where} AND {column} IS NOT NULL LIMIT 3"
            ).fetchall()]
            raise TooManyCohortValues(column, n, limit, examples)
    return counts
