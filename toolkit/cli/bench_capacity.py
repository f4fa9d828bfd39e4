"""``obslab bench capacity``: the highest sustainable publish flows/s of the lab on this machine."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import typer

from toolkit.bench.capacity import render_markdown, run_capacity
from toolkit.bench.perfdoc import TargetError, check_target, write_section
from toolkit.cli.base import UserError, bench_app, console, err_console, user_errors
from contract.durations import DurationError, parse_duration
from toolkit.lab.load import LoadError
from toolkit.lab.processes import ServiceStartError


@bench_app.command("capacity")
def capacity(
    users: str = typer.Option("5,10,20,40", help="Closed-loop steps: users per step, comma-separated."),
    step: str = typer.Option("20s", help="Run time of each step."),
    workers: int = typer.Option(2, min=1, max=16, help="gunicorn workers of the publish API."),
    threads: int = typer.Option(4, min=1, max=64, help="Threads per gunicorn worker."),
    processes: int = typer.Option(1, min=1, max=16, help="Locust processes generating the load."),
    output: Path = typer.Option(Path("docs/performance.md"), help="Markdown file whose section is replaced."),
    write: bool = typer.Option(True, help="Write the '## Load capacity' section to --output."),
) -> None:
    """Step creator load up against a fresh service; report flows/s, requests/s, p50/p99 and the CPU
    split between Locust and the service."""
    with user_errors(LoadError, ServiceStartError, DurationError, OSError, TargetError):
        try:
            steps = [int(u) for u in users.split(",") if u.strip()]
        except ValueError:
            raise UserError(f"--users must be comma-separated integers like 5,10,20, got {users!r}") from None
        if not steps or min(steps) < 1:
            raise UserError(f"--users needs at least one step of >= 1 user, got {users!r}")
        step_s = parse_duration(step)
        if write:
            check_target(output, "--output")
        report = run_capacity(users_steps=steps, step_s=step_s, workers=workers, threads=threads,
                              processes=processes, progress=lambda m: err_console.print(m, style="dim"))
        command = (f"obslab bench capacity --users {','.join(map(str, steps))} --step {step} --workers {workers} "
                   f"--threads {threads} --processes {processes}")
        markdown = render_markdown(report, command, datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
        console.print(markdown, markup=False, highlight=False, soft_wrap=True)
        if write:
            write_section(output, markdown)
            err_console.print(f"wrote section to {output}")
