"""``obslab bench overhead``: instrumented vs uninstrumented throughput on the chunk-upload hot path."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import typer

from toolkit.bench.overhead import render_markdown, run_overhead
from toolkit.bench.perfdoc import TargetError, check_target, write_section
from toolkit.cli.base import bench_app, console, err_console, user_errors
from toolkit.lab.processes import ServiceStartError


@bench_app.command("overhead")
def overhead(
    rounds: int = typer.Option(7, min=1, max=20, help="Interleaved rounds (each runs every variant once)."),
    # Ten 1-s slices per variant per round, for the every-round target: rounds of four slices of two identical
    # uninstrumented services were noisier than the overhead judged. The A/A copy's row in docs/performance.md
    # says how noisy ten are.
    duration: float = typer.Option(10.0, min=1, max=120, help="Seconds of wrk load per variant per round."),
    connections: int = typer.Option(8, min=1, max=256, help="wrk connections."),
    wrk_threads: int = typer.Option(1, min=1, max=16, help="wrk threads."),
    workers: int = typer.Option(2, min=1, max=16, help="gunicorn workers of each service variant."),
    chunk_kib: int = typer.Option(64, min=1, max=256, help="Chunk body size (KiB)."),
    breakdown: bool = typer.Option(True, help="Also run events-only, events+metrics and tracing-only variants."),
    output: Path = typer.Option(Path("docs/performance.md"), help="Markdown file whose section is replaced."),
    write: bool = typer.Option(True, help="Write the section to --output."),
) -> None:
    """Run the same service uninstrumented and instrumented (default and 100 % sampling) side by side."""
    with user_errors(FileNotFoundError, ServiceStartError, RuntimeError, OSError, TargetError):
        if write:
            check_target(output, "--output")
        report = run_overhead(rounds=rounds, duration_s=duration, connections=connections, wrk_threads=wrk_threads,
                              workers=workers, chunk_bytes=chunk_kib * 1024, breakdown=breakdown,
                              progress=lambda m: err_console.print(m, style="dim", soft_wrap=True))
        command = (f"obslab bench overhead --rounds {rounds} --duration {duration:g} --connections {connections} "
                   f"--workers {workers} --chunk-kib {chunk_kib}" + ("" if breakdown else " --no-breakdown"))
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        markdown = render_markdown(report, command, when)
        console.print(markdown, markup=False, highlight=False, soft_wrap=True)
        if write:
            write_section(output, markdown)
            err_console.print(f"wrote section to {output}")
