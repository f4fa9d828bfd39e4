"""``obslab bench sli``: time the full SLI report (DuckDB vs pandas, JSONL vs Parquet); write docs/performance.md."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from toolkit.bench.sli import TARGETS, run_bench, write_section
from toolkit.cli.base import bench_app, console, err_console, user_errors


@bench_app.command("sli")
def bench_sli(
    events: int = typer.Option(5_000_000, help="Number of synthetic events."),
    seed: int = typer.Option(20260105, help="Generator seed."),
    cache_dir: Optional[Path] = typer.Option(None, help="Where generated events are cached "
                                                        "(default $OBSLAB_BENCH_DIR or <tmp>/obslab-bench)."),
    pandas_jsonl: bool = typer.Option(True, help="Also time pandas on JSONL (slow, memory hungry)."),
    write: Optional[Path] = typer.Option(Path("docs/performance.md"), help="Markdown file to update ('' to skip)."),
) -> None:
    """Full SLI report on JSONL and Parquet, DuckDB side by side with pandas: events/s and peak RSS."""
    with user_errors(OSError, RuntimeError, ValueError):
        if events < 1000:
            raise ValueError(f"--events {events}: use at least 1000 events")
        result = run_bench(events, seed=seed, cache_dir=cache_dir,
                           pandas_formats=("parquet", "jsonl") if pandas_jsonl else ("parquet",),
                           log=lambda m: err_console.print(m, highlight=False))
    t = Table(title=f"SLI report on {result.events:,} events", title_justify="left")
    for c in ("engine", "input", "report time", "events/s", "CPU time", "peak RSS", "process wall", "load avg"):
        t.add_column(c)
    for r in result.runs:
        t.add_row(r.engine, r.format, f"{r.report_s:.2f} s", f"{r.events_per_s / 1e6:.2f} M", f"{r.cpu_s:.2f} s",
                  f"{r.peak_rss_mb:.0f} MB", f"{r.wall_s:.1f} s", f"{r.load_avg:.1f}")
    console.print(t)
    dp, dj = result.run("duckdb", "parquet"), result.run("duckdb", "jsonl")
    pp, pj = result.run("pandas", "parquet"), result.run("pandas", "jsonl")
    console.print(f"targets: Parquet ≥ {TARGETS['parquet_events_per_s'] / 1e6:g} M/s → {dp.events_per_s / 1e6:.2f} M/s; "
                  f"JSONL ≥ {TARGETS['jsonl_events_per_s'] / 1e6:g} M/s → {dj.events_per_s / 1e6:.2f} M/s; "
                  f"peak ≤ 500 MB → {max(dp.peak_rss_mb, dj.peak_rss_mb):.0f} MB", highlight=False)
    for d, p, name in ((dp, pp, "Parquet"), (dj, pj, "JSONL")):
        if p:
            console.print(f"vs pandas on {name}: {p.report_s / d.report_s:.1f}× faster", highlight=False)
    console.print("engines agree on the headline figures" if result.agree else
                  "ENGINES DISAGREE: " + "; ".join(result.disagreements), highlight=False)
    if write and str(write):
        write_section(result, write, f"obslab bench sli --events {events}")
        console.print(f"wrote the '## SLI engine' section of {write}", highlight=False)
