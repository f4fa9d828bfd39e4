"""``obslab bench sli``: time the full SLI report (DuckDB vs pandas, JSONL vs Parquet); write docs/performance.md."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from toolkit.bench.perfdoc import check_target, write_section
from toolkit.bench.sli import TARGETS, render_section, run_bench
from toolkit.cli.base import bench_app, console, err_console, user_errors


@bench_app.command("sli")
def bench_sli(
    events: int = typer.Option(5_000_000, help="Number of synthetic events."),
    seed: int = typer.Option(20260105, help="Generator seed."),
    cache_dir: Optional[Path] = typer.Option(None, help="Where generated events are cached "
                                                        "(default $OBSLAB_BENCH_DIR or <tmp>/obslab-bench)."),
    pandas_jsonl: bool = typer.Option(True, help="Also time pandas on JSONL (slow, memory hungry)."),
    write: str = typer.Option("docs/performance.md", help="Markdown file to update ('' to skip)."),
) -> None:
    """Full SLI report on JSONL, Parquet and a compacted archive, DuckDB side by side with pandas: events/s, peak RSS."""
    with user_errors(OSError, RuntimeError, ValueError):
        target = Path(write) if write else None  # '' skips writing
        if target is not None:
            check_target(target, "--write")
        if events < 1000:
            raise ValueError(f"--events {events}: use at least 1000 events")
        result = run_bench(events, seed=seed, cache_dir=cache_dir,
                           pandas_formats=("archive", "parquet", "jsonl") if pandas_jsonl else ("archive", "parquet"),
                           log=lambda m: err_console.print(m, highlight=False))
    t = Table(title=f"SLI report on {result.events:,} events", title_justify="left")
    for c in ("engine", "input", "report time", "events/s", "CPU time", "peak RSS", "process wall", "load avg"):
        t.add_column(c)
    for r in result.runs:
        t.add_row(r.engine, r.format, f"{r.report_s:.2f} s", f"{r.events_per_s / 1e6:.2f} M", f"{r.cpu_s:.2f} s",
                  f"{r.peak_rss_mb:.0f} MB", f"{r.wall_s:.1f} s", f"{r.load_avg:.1f}")
    console.print(t)
    if result.compaction:
        c = result.compaction
        console.print(f"archive: obslab events compact took {c.report_s:.1f} s ({c.cpu_s:.1f} CPU-s, "
                      f"peak RSS {c.peak_rss_mb:.0f} MB)", highlight=False)
    rate = {r.format: r.events_per_s / 1e6 for r in result.runs if r.engine == "duckdb"}
    peak = max(r.peak_rss_mb for r in result.runs if r.engine == "duckdb")
    console.print(f"targets: Parquet ≥ {TARGETS['parquet_events_per_s'] / 1e6:g} M/s → archive {rate['archive']:.2f} "
                  f"M/s, raw file {rate['parquet']:.2f} M/s; JSONL ≥ {TARGETS['jsonl_events_per_s'] / 1e6:g} M/s → "
                  f"{rate['jsonl']:.2f} M/s; peak ≤ 500 MB → {peak:.0f} MB", highlight=False)
    for fmt in ("archive", "parquet", "jsonl"):
        d, p = result.run("duckdb", fmt), result.run("pandas", fmt)
        if d and p:
            console.print(f"vs pandas on the {fmt}: {p.report_s / d.report_s:.1f}× faster", highlight=False)
    console.print("engines agree on the headline figures" if result.agree else
                  "ENGINES DISAGREE: " + "; ".join(result.disagreements), highlight=False)
    if target is not None:
        with user_errors(OSError):
            write_section(target, render_section(result, f"obslab bench sli --events {events}"))
        console.print(f"wrote the '## SLI engine' section of {target}", highlight=False)
