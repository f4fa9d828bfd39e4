"""``obslab load``: drive creator load at the service with Locust, headless and bounded in time."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from loadtests import settings as load_settings
from loadtests.record import RecordError
from toolkit.cli.base import UserError, app, console, user_errors
from contract.durations import DurationError, parse_duration
from toolkit.lab.load import LoadError, LoadOptions, LoadProgress, preflight, run_load


def _settings(pairs: list[str]) -> dict[str, str]:
    """``--set think_time=0`` or ``--set OBSLAB_LOAD_THINK_TIME=0`` -> {"OBSLAB_LOAD_THINK_TIME": "0"}."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise UserError(f"--set expects NAME=VALUE, got {pair!r}")
        name = name.strip().upper()
        if not name.startswith("OBSLAB_LOAD_"):
            name = "OBSLAB_LOAD_" + name
        if name not in load_settings.ENV_VARS:
            known = ", ".join(v.removeprefix("OBSLAB_LOAD_").lower() for v in load_settings.ENV_VARS)
            raise UserError(f"--set {pair!r}: unknown setting; known: {known}")
        out[name] = value
    return out


@app.command()
def load(
    host: str = typer.Option("http://127.0.0.1:8000", help="Base URL of the publish API."),
    users: int = typer.Option(20, help="Users at the peak of the shape."),
    spawn_rate: float = typer.Option(10.0, "--spawn-rate", help="Users started per second."),
    duration: str = typer.Option("60s", help="Run time, e.g. 60s or 5m (phased: the phases' total)."),
    shape: str = typer.Option("steady", help="Load shape: steady, ramp, spike, diurnal, phased."),
    retry_policy: str = typer.Option("backoff", "--retry-policy", help="Chunk retries: none, immediate, backoff."),
    cancel_rate: float = typer.Option(0.02, "--cancel-rate", help="Share of publish flows cancelled part-way (0..1)."),
    seed: int = typer.Option(1, help="Seed of every user's random choices (same seed, same choices)."),
    out: Path = typer.Option(Path("load-out"), help="Directory for the client record and Locust's CSV stats."),
    processes: int = typer.Option(1, help="Locust processes (one core each) generating the load."),
    set_: List[str] = typer.Option([], "--set", help="Another load setting, NAME=VALUE (e.g. think_time=0); "
                                                       "see docs/load.md."),
) -> None:
    """Run creator and viewer load against the service, with live requests/s and failures; write
    the client record of every publish attempt and Locust's CSV stats to --out."""
    with user_errors(LoadError, RecordError, DurationError, OSError):
        options = LoadOptions(host=host, users=users, spawn_rate=spawn_rate, duration_s=parse_duration(duration),
                              shape=shape, retry_policy=retry_policy, cancel_rate=cancel_rate, seed=seed,
                              out_dir=out, processes=processes, settings=_settings(set_))
        preflight(options)
        progress = Progress(TextColumn("[bold]load[/]"), BarColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[live]}"), console=console, transient=True)
        with progress:
            task = progress.add_task("load", total=options.duration_s, live="starting Locust...")

            def show(p: LoadProgress) -> None:
                progress.update(task, completed=p.elapsed_s, total=p.duration_s, live=(
                    f"{p.users} users · {p.requests_per_s:.1f} req/s · {p.failures_per_s:.1f} failures/s · "
                    f"{p.requests} requests, {p.failures} failed"))

            result = run_load(options, show)

    total = result.total
    failure_share = total.failures / total.requests if total.requests else 0.0
    console.print(f"load run {result.run_id}: {result.duration_s:g}s at {options.host} ({options.shape} shape, "
                  f"peak {options.users} users, retry policy {options.retry_policy}, seed {options.seed}); "
                  f"synthetic traffic", highlight=False)
    table = Table(box=None, pad_edge=False)
    table.add_column("request (Locust name)", overflow="fold")
    for header in ("count", "failed", "req/s (run mean)", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(header, justify="right")
    for r in result.requests:
        table.add_row(r.name, str(r.requests), str(r.failures), f"{r.requests_per_s:.1f}", f"{r.median_ms:g}",
                      f"{r.p95_ms:g}", f"{r.p99_ms:g}")
    console.print(table)
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(result.attempts_by_outcome.items())) or "none"
    console.print(f"publish attempts (client view): {result.attempts} ({outcomes}); "
                  f"request failures {total.failures}/{total.requests} ({failure_share:.2%})", highlight=False)
    console.print(f"wrote {result.client_record} and {result.out_dir}/locust_stats*.csv", highlight=False)
    console.print(f"check nothing was lost: obslab reconcile --client {result.client_record} "
                  f"--events <service data dir>/events --metrics {options.host.rstrip('/')}/metrics",
                  highlight=False, markup=False)
