"""``obslab breakdown``: what is different about failed, slow or time-sliced attempts."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from toolkit.cli._tables import fit_table
from toolkit.cli._analysis import USER_ERRORS, check_format, emit_json, load, source_text
from toolkit.cli._events_common import LAST_HELP, SINCE_HELP, UNTIL_HELP, parse_synthetic, synthetic_option
from contract.durations import parse_duration
from toolkit.cli.base import app, console, user_errors


def print_breakdown(d: dict, top: int) -> None:
    sel = d["selection"]
    console.print(f"[bold]breakdown[/] selection: {sel['description']} ({d['selection_total']} attempts) vs "
                  f"baseline: {'the rest' if d['baseline'] == 'rest' else 'all attempts'} ({d['baseline_total']}); "
                  f"finished attempts only; synthetic traffic: {d['synthetic']}", highlight=False)
    w = d["window"]
    scope = (f"outcome time in ({w.get('start') or 'first outcome'}, {w.get('end') or 'last outcome'}]; "
             if w.get("start") or w.get("end") else "")
    console.print(f"{scope}attempts started {w.get('first_started')} → {w.get('last_started')}; "
                  f"source: {d['source']}", highlight=False)
    table = Table(title="values ranked by z = (share in selection − share in baseline) / standard error",
                  title_justify="left")
    for col in ("dimension", "value", "selection", "baseline", "difference", "lift", "z", "dimension χ² p"):
        table.add_column(col)
    p_of = {x["dimension"]: x["p_value"] for x in d["dimensions"]}
    for v in d["top_values"][:top]:
        p = p_of.get(v["dimension"])
        table.add_row(v["dimension"], v["value"],
                      f"{v['selection_share'] * 100:.1f} % ({v['selection_count']})",
                      f"{v['baseline_share'] * 100:.1f} % ({v['baseline_count']})",
                      f"{v['difference'] * 100:+.1f} pp", f"{v['lift']:.2f}×" if v["lift"] else "new",
                      f"{v['z']:.1f}",
                      f"{p:.2g}" if p is not None else "—")
    console.print(fit_table(table, console, droppable=("dimension χ² p", "lift")))


@app.command()
def breakdown(
    events: list[Path] = typer.Argument(..., help="Event files, directories or globs (JSONL or Parquet)."),
    select: str = typer.Option("failed", "--select", help="failed, slow, time or where."),
    slow_ms: float = typer.Option(1000.0, help="With --select slow: processing latency above this (ms)."),
    time: Optional[str] = typer.Option(None, "--time", help="With --select time: START/END (RFC 3339): attempts "
                                                         "whose outcome time is after START and at or before END."),
    where: Optional[str] = typer.Option(None, help="With --select where: a SQL predicate over attempt columns."),
    baseline: str = typer.Option("rest", help="rest (population minus selection) or all."),
    dimensions: Optional[str] = typer.Option(None, help="Comma-separated dimensions (default: all)."),
    bins: int = typer.Option(5, help="Quantile bins for numeric fields."),
    since: Optional[str] = typer.Option(None, help=SINCE_HELP),
    until: Optional[str] = typer.Option(None, help=UNTIL_HELP),
    last: Optional[str] = typer.Option(None, help=LAST_HELP),
    synthetic: str = synthetic_option(),
    chart: Optional[Path] = typer.Option(None, help="Write a PNG chart of the top dimensions here."),
    top: int = typer.Option(15, help="Rows in the table / top_values in the JSON."),
    abandon_after: str = typer.Option("10m", help="No terminal event this long after the last event = abandoned."),
    fmt: str = typer.Option("table", "--format", help="table or json (obslab.breakdown/v1)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write JSON here instead of stdout."),
) -> None:
    """Rank every dimension value by how much more common it is in a selection than in the baseline."""
    from toolkit.analysis.breakdown import breakdown_attempts, render_chart, selection_preset
    from toolkit.analysis.compare import parse_selector, parse_window

    with user_errors(*USER_ERRORS):
        check_format(fmt)
        synthetic = parse_synthetic(synthetic).value
        if bins < 2:
            raise ValueError(f"--bins must be at least 2, got {bins}")
        time_range = parse_selector(f"time={time}", "--time") if time else None
        abandon_s = parse_duration(abandon_after)
        selection = selection_preset(select, slow_ms=slow_ms, time_range=time_range, where=where,
                                     abandon_after_s=abandon_s)
        dims = tuple(x.strip() for x in dimensions.split(",") if x.strip()) if dimensions else None
        window = parse_window(since, until, last)
        rel, _ = load(events, abandon_after, until=until)
        result = breakdown_attempts(rel, selection, baseline=baseline, window=window, synthetic=synthetic,
                                    bins=bins, dimensions=dims, top=top, source=source_text(events),
                                    abandon_after_s=abandon_s)
        chart_path = render_chart(result, chart) if chart and result.selection_total else None
        data = result.to_dict()
        data["chart"] = str(chart_path) if chart_path else None
    if fmt == "json":
        emit_json(data, output)
    elif result.selection_total == 0:
        # Zero failures is an answer, not an error: say it, and how many attempts it was measured on.
        console.print(f"nothing to break down: no attempt in this window matches the selection "
                      f"({selection.description}); {result.baseline_total} finished attempts looked at; "
                      f"source: {data['source']}", highlight=False)
    else:
        print_breakdown(data, top)
        if chart_path:
            console.print(f"chart: {chart_path}", highlight=False)
