"""``obslab bench soak``: steady load for minutes; do RSS, open fds or threads of any process grow?"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path
from typing import Optional

import psutil
import typer
from rich.table import Table

from toolkit.bench.perfdoc import check_target, write_section
from toolkit.bench.soak import Thresholds, render_markdown, run_soak
from toolkit.cli.base import bench_app, console, err_console, user_errors
from toolkit.lab.load import LoadError
from toolkit.lab.processes import ServiceStartError


@bench_app.command("soak")
def bench_soak(
    minutes: float = typer.Option(15.0, help="Length of the steady load (and of the sampling)."),
    users: int = typer.Option(10, min=1, max=200, help="Locust users (steady shape)."),
    interval: float = typer.Option(5.0, help="Seconds between two samples of every process."),
    warmup: Optional[float] = typer.Option(None, help="Seconds not fitted at the start "
                                                      "(default: 20% of the run, at most 60 s)."),
    rss_limit: float = typer.Option(Thresholds.rss_mb_per_hour, help="RSS growth per hour (MB) that is a leak."),
    work_dir: Optional[Path] = typer.Option(None, help="Where the service's data and the load output go "
                                                       "(default: a temporary directory, removed afterwards)."),
    write: str = typer.Option("docs/performance.md", help="Markdown file to update ('' to skip)."),
) -> None:
    """Soak the lab: RSS, open file descriptors and threads of every process sampled under steady load,
    growth fitted per hour with a verdict; exit 1 when something grows."""
    with user_errors(OSError, ValueError, LoadError, ServiceStartError):
        target = Path(write) if write else None  # '' skips writing
        if target is not None:
            check_target(target, "--write")
        if not 0.5 <= minutes <= 24 * 60:
            raise ValueError(f"--minutes {minutes:g}: use between 0.5 and 1440")
        if not 0.5 <= interval <= minutes * 60 / 10:
            raise ValueError(f"--interval {interval:g}: use between 0.5 s and a tenth of the run")
        if warmup is not None and not 0 <= warmup < minutes * 60:
            raise ValueError(f"--warmup {warmup:g}: must be shorter than the run")
        thresholds = Thresholds(rss_mb_per_hour=rss_limit)
        log = lambda message: err_console.print(message, highlight=False, soft_wrap=True)  # noqa: E731
        if work_dir is None:
            with tempfile.TemporaryDirectory(prefix="obslab-soak-") as tmp:
                report = run_soak(minutes=minutes, users=users, interval_s=interval, warmup_s=warmup,
                                  work_dir=tmp, thresholds=thresholds, log=log)
        else:
            report = run_soak(minutes=minutes, users=users, interval_s=interval, warmup_s=warmup,
                              work_dir=work_dir, thresholds=thresholds, log=log)

    table = Table(title=f"Soak: {minutes:g} min steady load, {users} users; fitted after {report.warmup_s:.0f} s "
                        f"warm-up (slope = OLS growth per hour)", title_justify="left")
    for column in ("role", "unit", "procs", "n", "start", "end", "peak", "slope/h", "p", "verdict"):
        table.add_column(column, no_wrap=column in ("verdict", "slope/h"))
    for t in report.trends:
        digits = 1 if t.resource == "rss_mb" else 0
        table.add_row(t.role, t.unit, str(t.processes), str(t.samples), f"{t.first:.{digits}f}",
                      f"{t.last:.{digits}f}", f"{t.peak:.{digits}f}", f"{t.slope_per_hour:+.2f}",
                      f"{t.p_value:.2g}", t.verdict)
    console.print(table)
    console.print(f"load: {', '.join(f'{k} {v:g}' for k, v in report.load.items())} (client side, whole run)",
                  highlight=False)
    console.print(f"verdict: {report.verdict}", highlight=False)
    if target is not None:
        machine = (f"{os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.1f} GiB RAM, "
                   f"Python {platform.python_version()}, shared with other work")
        command = f"obslab bench soak --minutes {minutes:g} --users {users} --interval {interval:g}"
        with user_errors(OSError):
            write_section(target, "## Soak\n\n" + render_markdown(report, command=command, machine=machine))
        console.print(f"wrote the '## Soak' section of {target}", highlight=False)
    if report.verdict == "growing":
        raise typer.Exit(1)
