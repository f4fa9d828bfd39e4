"""``obslab sli PATH…``: SLIs from events, every figure labelled with what it is."""

from __future__ import annotations

import json
from typing import List, Optional

import typer
from rich.table import Table

from toolkit.cli._events_common import (MAX_SKIPPED_HELP, SINCE_HELP, UNTIL_HELP, find_spec, parse_by, parse_share,
                                        parse_where, report_read_problems, synthetic_choice, synthetic_option)
from toolkit.cli.base import UserError, app, console, user_errors
from toolkit.cli._tables import fit_table
from contract.durations import DurationError, parse_duration
from toolkit.events import EventsError, load_events
from toolkit.measures.sli import Section, SliQuery, SliReport, check_scope, compute_report
from toolkit.slo.spec import SloSpecError

FORMATS = ("table", "json", "markdown")


@app.command()
def sli(
    paths: List[str] = typer.Argument(..., help="Event files, directories or globs (JSONL, .gz, rotated, Parquet)."),
    since: Optional[str] = typer.Option(None, help=SINCE_HELP),
    until: Optional[str] = typer.Option(None, help=UNTIL_HELP + " Also the as-of time: an attempt with no "
                                                    "terminal event is abandoned once abandon_after has passed by it."),
    window: str = typer.Option("5m", help="Time-series window ('0' for none)."),
    by: Optional[str] = typer.Option(None, help="Breakdown dimensions, comma separated (region,release,...)."),
    where: Optional[List[str]] = typer.Option(None, help="Segment filter dim=value; repeatable."),
    synthetic: str = synthetic_option(),
    slo: Optional[str] = typer.Option(None, help="SLO spec (default ./slo.yaml)."),
    strict: bool = typer.Option(False, help="Fail on the first invalid event line instead of skipping it."),
    max_skipped: str = typer.Option("1%", help=MAX_SKIPPED_HELP),
    fmt: str = typer.Option("table", "--format", help="table | json | markdown"),
) -> None:
    """SLIs from events: totals, time series per window, breakdowns; primary, latency, secondary, guardrails."""
    with user_errors(EventsError, SloSpecError, DurationError, ValueError, OSError):
        if fmt not in FORMATS:
            raise UserError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
        spec = find_spec(slo)
        check_scope(since, until)  # before reading: an inverted or empty scope is an error, not an empty report
        # '0' (or any zero duration such as 0s) means no series; parse_duration wants a unit.
        window_s = None if window.strip() == "0" else (parse_duration(window) or None)
        events = load_events(paths, strict=strict, since=since, until=until, with_ids=False,
                             max_skipped_share=parse_share(max_skipped))
        report_read_problems(events)
        query = SliQuery(since=since, until=until, window_s=window_s, by=parse_by(by), where=parse_where(where),
                         synthetic=synthetic_choice(synthetic))
        report = compute_report(events, spec, query)
    if fmt == "json":
        print(json.dumps(report.to_dict(), indent=2))
    elif fmt == "markdown":
        print(render_markdown(report))
    else:
        render_table(report)


def _num_den(f) -> str:
    if f.numerator is None or f.denominator is None:
        return ""
    return f"{f.numerator:,.0f} / {f.denominator:,.0f}" if float(f.numerator).is_integer() else \
        f"{f.numerator:,.3f} / {f.denominator:,.3f}"


def render_table(report: SliReport) -> None:
    inp = report.inputs
    folded = (f"; {inp['prefolded_files']} read through their stored fold (obslab events compact)"
              if inp.get("prefolded_files") else "")
    console.print(f"[bold]SLIs[/] from {inp['events']:,} events in {len(inp['files'])} file(s) "
                  f"({', '.join(inp['formats'])}{folded}); as of {inp['as_of']}", highlight=False)
    console.print(f"scope: {report.scope.label()}; abandoned after {report.slo['abandon_after']} of silence",
                  highlight=False)
    console.print(f"duplicates removed: {inp['duplicates_removed']:,} (same event identity, docs/events.md); "
                  f"invalid lines skipped: {inp['skipped_invalid_lines']:,}", highlight=False)
    t = Table(title="Totals", title_justify="left")
    for col in ("group", "metric", "value", "statistic", "num / den", "count behind it"):
        t.add_column(col, overflow="fold")
    s = report.totals
    c = s.counts
    t.add_row("counts", "attempts", f"{c['attempts']:,}", "count",
              f"succ {c['succeeded']:,} · fail {c['failed']:,} · aband {c['abandoned']:,} · "
              f"canc {c['cancelled']:,} · in flight {c['in_flight']:,}", "")
    for group, figs in (("primary", s.primary), ("latency", s.latency), ("secondary", s.secondary),
                        ("guardrail", s.guardrails)):
        for f in figs:
            t.add_row(group, f.name, f.display(), f.statistic, _num_den(f), f"{f.count:,} {f.counted}")
    console.print(fit_table(t, console))
    console.print(f"percentiles: {report.slo['percentile_method']}", highlight=False)
    if report.series:
        st = Table(title=f"Time series ({report.series_window} windows by outcome time)", title_justify="left")
        for col in ("window start", "attempts", "success rate", "succ / (succ+fail+aband)", "latency SLI",
                    "mean processing", "p95 processing", "p99 processing"):
            st.add_column(col)
        for p in report.series:
            st.add_row(*_row(p))
        console.print(fit_table(st, console))
    if report.breakdown:
        bt = Table(title=f"Breakdown by {', '.join(report.breakdown_by)}", title_justify="left")
        for col in ("segment", "attempts", "success rate", "succ / (succ+fail+aband)", "latency SLI",
                    "mean processing", "p95 processing", "p99 processing"):
            bt.add_column(col)
        for p in report.breakdown:
            row = _row(p)
            seg = ", ".join(f"{k}={v}" for k, v in p.scope.segment.items() if k in report.breakdown_by)
            bt.add_row(seg, *row[1:])
        console.print(fit_table(bt, console))


def _row(p: Section) -> list[str]:
    sr = p.figure("publish_success_rate")
    return [p.scope.start or "", f"{p.counts['attempts']:,}", sr.display(), _num_den(sr),
            p.figure("latency_sli").display(), p.figure("processing_latency_mean").display(),
            p.figure("processing_latency_p95").display(),
            p.figure("processing_latency_p99").display()]


def render_markdown(report: SliReport) -> str:
    inp = report.inputs
    lines = ["## SLIs", "",
             f"{inp['events']:,} events in {len(inp['files'])} file(s); as of {inp['as_of']}. "
             f"Scope: {report.scope.label()}. Abandoned after {report.slo['abandon_after']}. "
             f"Duplicates removed: {inp['duplicates_removed']:,}; invalid lines skipped: "
             f"{inp['skipped_invalid_lines']:,}.", "",
             "| group | metric | value | statistic | num / den | count behind it |",
             "|---|---|---|---|---|---|"]
    s = report.totals
    for group, figs in (("primary", s.primary), ("latency", s.latency), ("secondary", s.secondary),
                        ("guardrail", s.guardrails)):
        for f in figs:
            lines.append(f"| {group} | {f.name} | {f.display()} | {f.statistic} | {_num_den(f)} | "
                         f"{f.count:,} {f.counted} |")
    lines += ["", f"Percentiles: {report.slo['percentile_method']}."]
    for title, rows, first in ((f"Time series ({report.series_window} windows)", report.series, "window start"),
                               (f"Breakdown by {', '.join(report.breakdown_by)}", report.breakdown, "segment")):
        if not rows:
            continue
        lines += ["", f"### {title}", "",
                  f"| {first} | attempts | success rate | succ / (succ+fail+aband) | latency SLI | mean processing "
                  f"| p95 processing | p99 processing |", "|---|---|---|---|---|---|---|---|"]
        for p in rows:
            row = _row(p)
            if first == "segment":
                row[0] = ", ".join(f"{k}={v}" for k, v in p.scope.segment.items() if k in report.breakdown_by)
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
