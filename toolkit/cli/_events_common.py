"""Helpers shared by the commands that read events (sli, budget, events): spec lookup, warnings."""

from __future__ import annotations

from pathlib import Path

import toolkit
from toolkit.cli.base import UserError, err_console
from toolkit.events_io import EventSet
from toolkit.slo_spec import SloSpec, load_spec

__all__ = ["find_spec", "report_read_problems", "parse_where", "parse_by", "synthetic_choice"]


def find_spec(path: str | None) -> SloSpec:
    """The spec at ``path``, else ./slo.yaml, else the repository's slo.yaml."""
    if path:
        return load_spec(path)
    for candidate in (Path("slo.yaml"), Path(toolkit.__file__).resolve().parents[1] / "slo.yaml"):
        if candidate.is_file():
            return load_spec(candidate)
    raise UserError("no slo.yaml in the current directory; pass --slo PATH")


def report_read_problems(events: EventSet) -> None:
    """Say on stderr what was skipped or torn while reading (never silent)."""
    for p in events.torn:
        err_console.print(f"note: {p}", highlight=False, soft_wrap=True)
    if events.skipped:
        err_console.print(
            f"warning: {events.skipped} invalid line(s) skipped (not --strict); figures exclude them:",
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


def synthetic_choice(include: bool) -> bool | None:
    """--include-synthetic keeps all traffic (None); --exclude-synthetic keeps real users only (False)."""
    return None if include else False
