"""``obslab budget PATH… --slo slo.yaml``: error budgets, burn rates and multi-window alerts from events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from toolkit.measures.budget import BudgetReport, compute_budget
from toolkit.cli._events_common import (MAX_SKIPPED_HELP, find_spec, parse_share, report_read_problems,
                                        synthetic_choice, synthetic_option)
from toolkit.cli.base import UserError, app, console, err_console, user_errors
from toolkit.cli._tables import fit_table
from contract.durations import format_seconds
from toolkit.measures.definitions import format_percent
from toolkit.events import EventsError, load_events
from toolkit.slo.spec import SloSpecError

FORMATS = ("table", "json", "markdown")


@app.command()
def budget(
    paths: List[str] = typer.Argument(..., help="Event files, directories or globs."),
    slo: Optional[str] = typer.Option(None, help="SLO spec (default ./slo.yaml)."),
    profile: str = typer.Option("prod", help="Time profile from the spec: prod or lab."),
    at: Optional[str] = typer.Option(None, help="Evaluate at this time (RFC 3339); later events are ignored."),
    synthetic: str = synthetic_option(),
    strict: bool = typer.Option(False, help="Fail on the first invalid event line."),
    max_skipped: str = typer.Option("1%", help=MAX_SKIPPED_HELP),
    fmt: str = typer.Option("table", "--format", help="table | json | markdown"),
    speed: Optional[float] = typer.Option(
        None, help="Scenario speed the profile runs at (a drill's --speed: every window and the period that many "
                   "times shorter). Default: the speed of a drill running in the data directory the events lie in, "
                   "else 1."),
) -> None:
    """Error budget left, burn rate per alert window, which alerts fire at a time and over the run."""
    with user_errors(EventsError, SloSpecError, ValueError, OSError):
        if fmt not in FORMATS:
            raise UserError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
        if speed is not None and not speed > 0:
            raise UserError(f"--speed {speed:g}: expected a number more than 0 (a drill's --speed, 1 = real pace)")
        spec = find_spec(slo)
        spec.profile(profile)
        if speed is None:
            speed = _running_drill_speed(paths, profile)
        events = load_events(paths, strict=strict, until=at, max_skipped_share=parse_share(max_skipped))
        report_read_problems(events)
        report = compute_budget(events, spec, profile, at=at, synthetic=synthetic_choice(synthetic), speed=speed)
    if fmt == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        render(report, markdown=fmt == "markdown")


def _running_drill_speed(paths: List[str], profile: str) -> float | None:
    """The speed of a drill running in the data directory the events lie in, when it paces this profile:
    the lab's alerts then run in the drill's scenario time, and so do these figures."""
    try:
        from toolkit.drills.learner_path import drills_dir_above
        from toolkit.drills.runner import running_drill
    except ImportError:  # a build without the drills
        return None
    for path in paths:
        drills_dir = drills_dir_above(Path(path))
        state = running_drill(drills_dir) if drills_dir is not None else None
        if state is not None and state.profile == profile and state.speed != 1:
            err_console.print(f"note: a drill is running at ×{state.speed:g} ({drills_dir.parent}): burn rates, "
                              f"alerts and the budget are in its scenario time (--speed 1 for the spec's own "
                              "windows)", highlight=False, soft_wrap=True)
            return state.speed
    return None


def _pct(v: float | None) -> str:
    return "no data" if v is None else format_percent(v)


def _burn(v: float | None) -> str:
    return "no data" if v is None else f"{v:.2f}×"


def render(report: BudgetReport, markdown: bool = False) -> None:
    replay = (f"alerts replayed every {report.grid_step} from {report.grid_start} to {report.grid_end}"
              if report.grid_start else "no outcomes to replay alerts over")
    head = (f"Error budget at {report.at or 'no data'} · {report.timing} · synthetic {report.synthetic} · {replay}")
    out: list[str] = ["## Error budget", "", head, ""] if markdown else []
    if not markdown:
        console.print(head, highlight=False)
    for s in report.slos:
        b = s.budget
        allowed = "no data" if b.allowed_bad is None else f"{b.allowed_bad:,.1f}"
        summary = (f"{s.slo} ({s.kind}, objective {s.objective:g}, period {s.period}; data covers {s.data_covers}): "
                   f"SLI {_pct(s.sli)} over {s.total:,.0f} ({s.definition}); bad {b.bad:,.0f}, where the whole "
                   f"period allows {allowed} at this traffic rate → {b.describe()}")
        rows = []
        for a, h in zip(s.alerts, s.history):
            first = h.first_fired or "never"
            windows = f"{a.long.window}/{a.short.window}"
            if report.speed != 1:  # measured over wall windows; the briefing's alert is the scenario one
                windows = f"{h.scenario_long_window}/{h.scenario_short_window} ({windows} wall)"
            rows.append([a.severity, windows, f"> {a.factor:g}×",
                         f"{_burn(a.long.burn.burn_rate)} ({a.long.burn.bad:,.0f}/{a.long.burn.total:,.0f})",
                         f"{_burn(a.short.burn.burn_rate)} ({a.short.burn.bad:,.0f}/{a.short.burn.total:,.0f})",
                         "FIRING" if a.firing else ("no data" if a.note else "ok"),
                         first, f"{format_seconds(h.firing_s)} in {len(h.spans)} span(s)"])
        cols = ["severity", "long/short", "fires when both burn", "long burn (bad/total)",
                "short burn (bad/total)", f"at {report.at}", "first fired", "firing over run"]
        # The terminal table names the as-of column in words (the time is in the line above it): a
        # timestamp header cannot fold between words.
        table_cols = cols[:5] + ["at as-of time"] + cols[6:]
        if markdown:
            out += [f"### {s.slo}", "", summary, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            out += ["| " + " | ".join(r) + " |" for r in rows]
            out.append("")
        else:
            console.print(summary, highlight=False, soft_wrap=True)
            t = Table(title=f"{s.slo}: multi-window burn-rate alerts", title_justify="left")
            for c in table_cols:
                t.add_column(c)
            for r in rows:
                t.add_row(*r)
            console.print(fit_table(t, console, droppable=("firing over run",)))
    if markdown:
        print("\n".join(out))
