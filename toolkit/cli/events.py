"""``obslab events validate|compact``: check event files line by line; rewrite them as Parquet."""

from __future__ import annotations

from typing import List

import typer

from toolkit.cli.base import app, console, err_console, fail, user_errors
from toolkit.events import EventsError, compact, validate_files

events_app = typer.Typer(help="Event files: validate against the schema, compact to Parquet.", no_args_is_help=True)
app.add_typer(events_app, name="events")


@events_app.command()
def validate(
    paths: List[str] = typer.Argument(..., help="Event files, directories or globs."),
    strict: bool = typer.Option(False, help="Stop at the first invalid line."),
) -> None:
    """Check every line against the event schema; report `file:line: what is wrong`; exit 1 if any is invalid."""
    with user_errors(EventsError, OSError):
        report = validate_files(paths, stop_at_first=strict)
    for p in report.problems:
        console.print(str(p), highlight=False, soft_wrap=True, markup=False)
    for p in report.torn:
        console.print(f"{p} (tolerated)", highlight=False, soft_wrap=True, markup=False)
    if report.invalid > len(report.problems):
        console.print(f"… and {report.invalid - len(report.problems)} more invalid line(s)", highlight=False)
    counts = ", ".join(f"{k} {v:,}" for k, v in sorted(report.event_counts.items()))
    console.print(f"{report.files} file(s), {report.lines:,} line(s) checked: {report.valid:,} valid, "
                  f"{report.invalid:,} invalid, {len(report.torn)} torn final line(s) tolerated"
                  + (" (stopped at the first invalid line: --strict)" if report.stopped_early else ""),
                  highlight=False)
    if counts:
        console.print(f"events: {counts}", highlight=False, soft_wrap=True)
    if not report.ok:
        raise fail(f"{report.invalid:,} invalid line(s): the files do not match the event schema v1", 1)
    console.print("OK: every line matches the event schema v1", highlight=False)


@events_app.command("compact")
def compact_cmd(
    paths: List[str] = typer.Argument(..., help="Event files, directories or globs."),
    out: str = typer.Option(..., "-o", "--out", help="Output directory (Parquet, partitioned by day)."),
    strict: bool = typer.Option(False, help="Refuse to write anything if a line is invalid."),
) -> None:
    """Rewrite events as Parquet partitioned by day (out/day=YYYY-MM-DD/); the same reports come from either."""
    with user_errors(EventsError, OSError):
        result = compact(paths, out, strict=strict)
    for p in result.torn:
        err_console.print(f"note: {p}", highlight=False, soft_wrap=True)
    if result.skipped:
        err_console.print(f"warning: {result.skipped:,} invalid line(s) skipped (not --strict); "
                          "obslab events validate names them", highlight=False)
    console.print(f"wrote {result.events:,} events to {result.out_dir} ({len(result.files)} file(s), "
                  f"days: {', '.join(result.days) or 'none'})", highlight=False)
