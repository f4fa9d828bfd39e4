"""``obslab top``: a live terminal view of the lab's tiles."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.live import Live

from toolkit.cli.base import UserError, app, console, user_errors
from toolkit.cli._tables import fit_table
from contract.durations import DurationError
from toolkit.slo.spec import SloSpecError


def _fit(table):
    return fit_table(table, console, droppable=("first fired",))


@app.command()
def top(
    data_dir: Path = typer.Option(Path(".obslab"), "--data-dir", help="The lab's data directory."),
    spec: Path = typer.Option(None, "--spec", help="SLO spec (default: the running lab's, else slo.yaml)."),
    window: str = typer.Option("lab", "--window", help="'lab' (since the lab started) or a duration such as 5m."),
    refresh: float = typer.Option(2.0, "--refresh", min=0.5, help="Seconds between refreshes."),
    once: bool = typer.Option(False, "--once", help="Print one frame and exit (for scripts)."),
) -> None:
    """Live tiles in the terminal: success rate, latency percentiles, budgets, burn rates and alerts."""
    from toolkit.lab.top import TopSource, render, take_snapshot  # DuckDB and numpy only when used

    with user_errors(SloSpecError, DurationError, OSError):
        from toolkit.lab.web import service_dir_of

        if not (service_dir_of(data_dir) / "events").is_dir():
            raise UserError(f"{data_dir}: no events/ (nor data/events/) yet (start the lab with `obslab lab`, "
                            f"or pass --data-dir)")
        source = TopSource.from_data_dir(data_dir, spec, window)
        frame = render(take_snapshot(source), console.width, _fit)
        if once:
            console.print(frame)
            return
        with Live(frame, console=console, refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(refresh)
                live.update(render(take_snapshot(source), console.width, _fit))
