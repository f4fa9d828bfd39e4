"""``obslab reconcile``: do the client record, the event log and the counters of a run agree?"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import List, Optional

import typer

from loadtests.record import RecordError
from toolkit.cli.base import UserError, app, console, user_errors
from contract.durations import DurationError, parse_duration
from toolkit.analysis.reconcile import MISMATCH_KINDS
from toolkit.analysis.reconcile_io import SourceError, counters_from_metrics, counters_from_prometheus, reconcile_run


@app.command()
def reconcile(
    client: Path = typer.Option(..., "--client", help="Client record: a file or a directory of attempts-*.jsonl."),
    events: Path = typer.Option(..., "--events", help="The service's event directory (events.jsonl and rotations)."),
    prometheus: Optional[str] = typer.Option(None, "--prometheus", help="Prometheus server URL to read counters from."),
    metrics: List[str] = typer.Option([], "--metrics", help="A /metrics URL to read counters from (repeatable; summed)."),
    settle: str = typer.Option("0s", help="Re-read lagging counters for up to this long (Prometheus scrapes)."),
    in_flight: str = typer.Option("0s", "--in-flight", help="On a running lab: an attempt with events this recent "
                                  "that the client has not recorded yet is still under way: excluded and counted "
                                  "(e.g. 2m); counters are then read before and after the log."),
    limit: int = typer.Option(50, min=0, help="List at most this many mismatches."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the full result as JSON here."),
) -> None:
    """Match every client-observed attempt to its events and terminal outcome, and the event log to
    the service's counters. Exit 0 when they reconcile, 1 when not (each mismatch listed)."""
    with user_errors(SourceError, RecordError, DurationError, OSError):
        if prometheus and metrics:
            raise UserError("give --prometheus or --metrics, not both")
        settle_s = parse_duration(settle)
        in_flight_s = parse_duration(in_flight)
        source = None
        if prometheus:
            source = lambda: counters_from_prometheus(prometheus)  # noqa: E731
        elif metrics:
            source = lambda: counters_from_metrics(metrics)  # noqa: E731
        result = reconcile_run(client, events, source, settle_s=settle_s, in_flight_s=in_flight_s)
        if json_out:
            json_out.write_text(json.dumps(asdict(result) | {"ok": result.ok}, indent=2) + "\n")

    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(result.attempts_by_outcome.items()))
    console.print(f"client record: {result.attempts} publish attempts (run {', '.join(result.run_ids)}; {outcomes})",
                  highlight=False)
    console.print(f"event log:     {result.events_of_run} events of this run, {result.events_in_log} in the whole log; "
                  f"{result.attempts_with_events} of {result.attempts} attempts have events", highlight=False)
    if in_flight_s:
        console.print(f"in flight:     {result.in_flight} attempts with events in the last {in_flight} not yet in the "
                      "client record: excluded (still under way)", highlight=False)
    console.print(f"counters:      {result.counters_source or 'not checked (give --metrics or --prometheus)'}",
                  highlight=False)
    if result.ok:
        console.print("[bold green]reconciled[/]: zero mismatches", highlight=False)
        raise typer.Exit(0)
    by_kind = result.by_kind()
    console.print("[bold red]NOT reconciled[/]: " + ", ".join(
        f"{by_kind[k]} {k}" for k in MISMATCH_KINDS if by_kind[k]), highlight=False)
    for m in result.mismatches[:limit]:
        console.print(str(m), highlight=False, markup=False, soft_wrap=True)
    if len(result.mismatches) > limit:
        console.print(f"... and {len(result.mismatches) - limit} more (--limit, or --json for all)")
    raise typer.Exit(1)
