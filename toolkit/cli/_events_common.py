"""Helpers shared by the commands that read events (sli, budget, events): spec lookup, warnings."""

from __future__ import annotations

from enum import Enum

import typer

from toolkit.cli.base import UserError, err_console
from toolkit.events import EventSet
from toolkit.slo.default_spec import resolve_spec_path
from toolkit.slo.spec import SloSpec, load_spec

__all__ = ["find_spec", "report_read_problems", "parse_where", "parse_by", "synthetic_choice", "SyntheticTraffic",
           "synthetic_option", "SYNTHETIC_HELP", "SINCE_HELP", "UNTIL_HELP", "LAST_HELP", "parse_share", "MAX_SKIPPED_HELP"]

MAX_SKIPPED_HELP = ("Fail when more than this share of lines cannot be read (skipped by the structural check), "
                    "e.g. 1% (default), 0 or 100%.")


def find_spec(path: str | None) -> SloSpec:
    """The spec at ``path``, else ./slo.yaml, else the spec the package ships (toolkit/slo/default-slo.yaml)."""
    spec_path, _ = resolve_spec_path(path)
    return load_spec(spec_path)


def parse_share(text: str, option: str = "--max-skipped") -> float:
    """``1%`` or ``0.01`` → 0.01 (a share between 0 and 1)."""
    t = text.strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise UserError(f"{option} {text!r}: expected a share such as 1% or 0.01") from None
    if not 0.0 <= value <= 1.0:
        raise UserError(f"{option} {text!r}: expected a share between 0% and 100%")
    return value


def report_read_problems(events: EventSet) -> None:
    """Say on stderr what was skipped, torn or removed as a duplicate while reading (never silent)."""
    for p in events.torn:
        err_console.print(f"note: {p}", highlight=False, soft_wrap=True)
    if events.duplicates:
        err_console.print(f"note: {events.duplicates} duplicate event(s) removed (same request_id, event, ts, "
                          "span_id, chunk_index, attempt as an earlier line)", highlight=False, soft_wrap=True)
    if events.skipped:
        err_console.print(
            f"warning: {events.skipped} invalid line(s) skipped (not --strict); figures exclude them: "
            + "; ".join(f"{why}: {n}" for why, (n, _) in events.skipped_by_reason.items()) + ". First ones:",
            highlight=False, soft_wrap=True)
        for p in events.problems:
            err_console.print(f"  {p}", highlight=False, soft_wrap=True)
        if events.skipped > len(events.problems):
            err_console.print(f"  … and {events.skipped - len(events.problems)} more "
                              "(obslab events validate lists them all)", highlight=False)


def parse_where(items: list[str] | None) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in items or []:
        dim, sep, value = item.partition("=")
        if not sep or not dim.strip():
            raise UserError(f"--where {item!r}: expected dim=value, e.g. --where region=eu-west")
        out[dim.strip()] = None if value.strip() in ("", "null") else value.strip()
    return out


def parse_by(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return tuple(d.strip() for d in text.split(",") if d.strip())


class SyntheticTraffic(str, Enum):
    """What every command does with load-generator traffic (events with ``synthetic: true``)."""

    include = "include"  # all traffic
    exclude = "exclude"  # real users only
    only = "only"  # load-generator traffic only


SYNTHETIC_HELP = "Synthetic (load-generator) traffic: include (default), exclude (real users only) or only."
# One meaning of --since/--until on every command that reads attempts (sli, budget, compare, breakdown;
# rollout windows too): outcome time in (since, until], the edges of every SLO window (docs/metrics.md).
SINCE_HELP = ("Only attempts whose outcome time (terminal event, or when it became abandoned) is after this "
              "time (RFC 3339).")
UNTIL_HELP = ("Only attempts whose outcome time is at or before this time (RFC 3339); later events are ignored.")
LAST_HELP = "Only attempts whose outcome time is in the last DURATION of data (e.g. 30m), ending at the last outcome."


def synthetic_option():
    """The one ``--synthetic include|exclude|only`` option (validated by ``parse_synthetic``, one-line errors)."""
    return typer.Option("include", "--synthetic", help=SYNTHETIC_HELP, metavar="include|exclude|only")


def parse_synthetic(text: str) -> SyntheticTraffic:
    try:
        return SyntheticTraffic(str(text).strip().lower())
    except ValueError:
        raise UserError(f"--synthetic {text!r}: expected one of include, exclude, only") from None


def synthetic_choice(mode: str | SyntheticTraffic) -> bool | None:
    """include keeps all traffic (None); exclude keeps real users only (False); only keeps load only (True)."""
    return {SyntheticTraffic.include: None, SyntheticTraffic.exclude: False,
            SyntheticTraffic.only: True}[parse_synthetic(mode.value if isinstance(mode, SyntheticTraffic) else mode)]
