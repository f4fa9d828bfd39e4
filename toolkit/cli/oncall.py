"""``obslab oncall DATA_DIR_OR_EVENTS``: pages, detection and mitigation times, change failure and rollback rates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from contract.durations import DurationError, format_duration, parse_duration
from toolkit.cli._events_common import (MAX_SKIPPED_HELP, find_spec, parse_share, report_read_problems,
                                        synthetic_choice, synthetic_option)
from toolkit.cli._tables import fit_table
from toolkit.cli.base import UserError, app, console, user_errors
from toolkit.events import EventsError, load_events
from toolkit.measures.definitions import format_percent
from toolkit.slo.spec import SloSpecError

FORMATS = ("table", "json")


def resolve_history(paths: List[str], drills: Optional[Path]) -> tuple[list[str], Path | None]:
    """Event paths and the drills directory of ``paths``: a lab's data directory (``.obslab``: ``data/events``
    and ``drills``), a service's (``events``), or event files, directories and globs."""
    if len(paths) == 1 and Path(paths[0]).is_dir():
        root = Path(paths[0])
        for events in (root / "events", root / "data" / "events"):
            if events.is_dir():
                return [str(events)], drills or root / "drills"
    return list(paths), drills


@app.command()
def oncall(
    paths: List[str] = typer.Argument(..., help="The lab's data directory (.obslab), a service's data directory, "
                                                "or event files, directories and globs."),
    since: Optional[str] = typer.Option(None, help="Only pages, incidents and changes that start after this "
                                                   "time (RFC 3339); alerts are replayed over all history."),
    until: Optional[str] = typer.Option(None, help="The as-of time (RFC 3339): later events are ignored."),
    last: Optional[str] = typer.Option(None, help="Only what starts in the last DURATION (e.g. 30m) before the "
                                                  "as-of time."),
    profile: str = typer.Option("lab", help="Time profile of the spec the alerts are replayed with: lab or prod."),
    change_window: Optional[str] = typer.Option(
        None, help="A change is failed when a page starts or it is rolled back this soon after it "
                   "(default: the longest page alert's long window in the profile)."),
    drills: Optional[Path] = typer.Option(None, help="Drill runs whose faults are known (default: DATA_DIR/drills)."),
    synthetic: str = synthetic_option(),
    slo: Optional[str] = typer.Option(None, help="SLO spec (default ./slo.yaml)."),
    max_skipped: str = typer.Option("1%", help=MAX_SKIPPED_HELP),
    fmt: str = typer.Option("table", "--format", help="table | json (obslab.oncall/v1)"),
) -> None:
    """On-call and delivery figures from the lab's history: pages and tickets per week (lab-scaled), time to
    detect, mitigate and resolve each incident, change failure rate and rollback rate. Each with its definition."""
    from toolkit.analysis.oncall import compute_oncall
    from toolkit.drills.history import drill_faults
    from toolkit.measures.sli import check_scope

    with user_errors(EventsError, SloSpecError, DurationError, ValueError, OSError):
        if fmt not in FORMATS:
            raise UserError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
        if last and since:
            raise UserError("--last cannot be combined with --since")
        since_t, _ = check_scope(since, until)
        last_s = _positive(last, "--last")
        window_s = _positive(change_window, "--change-window")
        spec = find_spec(slo)
        spec.profile(profile)
        event_paths, drills_dir = resolve_history(paths, drills)
        events = load_events(event_paths, until=until, with_ids=False, max_skipped_share=parse_share(max_skipped))
        report_read_problems(events)
        report = compute_oncall(events, spec, profile, faults=drill_faults(drills_dir) if drills_dir else (),
                                since=since_t, last_s=last_s, change_window_s=window_s,
                                synthetic=synthetic_choice(synthetic))
    if fmt == "json":
        print(json.dumps(report, indent=2))
    else:
        render(report)


def _positive(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    seconds = parse_duration(text)
    if seconds <= 0:
        raise UserError(f"{option} {text!r}: give a duration longer than zero, such as 30m")
    return seconds


def _secs(v: float | None) -> str:
    return "–" if v is None else f"{v:,.1f} s"


def _scaled(v: float | None) -> str:
    return "–" if v is None else format_duration(round(abs(v))) if abs(v) >= 1 else f"{abs(v):.2f}s"


def render(r: dict) -> None:
    c = r["time_compression"]
    if r["scope"] is None:
        console.print("no events: nothing to report (no page, no change)", highlight=False)
        return
    s = r["scope"]
    console.print(f"[bold]On-call and delivery[/] · profile {r['profile']} (time ÷ {c:g}) · as of {r['as_of']} · "
                  f"scope ({s['start']}, {s['end']}] = {_secs(s['lab_seconds'])} of lab time ≈ "
                  f"{_scaled(s['scaled_seconds'])} lab-scaled · synthetic traffic {r['synthetic']}", highlight=False)
    t = Table(title="Figures (definitions below)", title_justify="left")
    for col in ("figure", "value", "lab-scaled", "behind it"):
        t.add_column(col, overflow="fold")
    definitions = []
    for key in ("pages", "tickets"):
        f = r[key]["per_week"]
        t.add_row(f"{key} per week", "–" if f["value"] is None else f"{f['value']:,.2f}", "(scaled)",
                  f"{f['numerator']} {key} ({r[key]['open']} open) in {f['denominator']:.3g} scaled weeks")
        definitions.append((f"{key} per week", r[key]["definition"] + ". " + f["definition"]))
    for f in r["response"].values():
        sign = "−" if f["value"] is not None and f["value"] < 0 else ""
        name = f["name"].replace("_", " ")
        t.add_row(f"{name} (median)", _secs(f["value"]), sign + _scaled(f["scaled_value"]),
                  f"{f['n']} incident(s); mean {_secs(f['mean'])}")
        definitions.append((name, f["definition"]))
    d = r["delivery"]
    for key in ("changes", "rollbacks"):
        f = d[key]
        t.add_row(key, str(f["value"]), "", "")
        definitions.append((key, f["definition"]))
    for key in ("change_failure_rate", "rollback_rate"):
        f = d[key]
        name = key.replace("_", " ")
        t.add_row(name, format_percent(f["value"], 1), "", f"{f['numerator']} / {f['denominator']}")
        definitions.append((name, f["definition"]))
    console.print(fit_table(t, console))
    for name, text in definitions:
        console.print(f"[bold]{name}[/]: {text}", highlight=False, soft_wrap=True)
    console.print(f"[bold]incident cause[/]: {r['incident_join']['definition']}", highlight=False, soft_wrap=True)
    if r["incidents"]:
        it = Table(title="Incidents (one per page)", title_justify="left")
        for col in ("page start", "page end", "cause", "detect", "mitigate", "resolve", "alerts"):
            it.add_column(col, overflow="fold")
        for i in r["incidents"]:
            p = i["page"]
            it.add_row(p["start"], p["end"] or "open", i["cause"] or "unknown", _secs(i["time_to_detect_s"]),
                       _secs(i["time_to_mitigate_s"]), _secs(i["time_to_resolve_s"]), ", ".join(p["alerts"]))
        console.print(fit_table(it, console, droppable=("alerts",)))
    else:
        console.print("no page started in the scope", highlight=False)
    if d["list"]:
        ct = Table(title=f"Changes (flag exposure raised); change window {format_duration(d['change_window_s'])}",
                   title_justify="left")
        for col in ("at", "flag", "exposure", "by", "rolled back", "first page", "failed"):
            ct.add_column(col, overflow="fold")
        for ch in d["list"]:
            ct.add_row(ch["t"], ch["flag"], f"{ch['exposure_before']:g} % → {ch['exposure_after']:g} %",
                       ch["actor"] or "–", ch["rolled_back_at"] or "no", ch["page_at"] or "none",
                       "yes" if ch["failed"] else ("no" if ch["judged"] else "window open"))
        console.print(fit_table(ct, console))
    else:
        console.print("no flag change raised a flag's exposure in the scope", highlight=False)
