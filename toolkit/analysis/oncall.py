"""On-call and delivery figures from the lab's history: pages, tickets, detection and mitigation
times, change failure and rollback rates. Every figure carries its definition.

What it reads, and where each definition comes from:

* **Alerts.** Every burn-rate alert of the spec (``spec.windows_for(profile)``) replayed over the
  events by the definitions layer (``toolkit.measures.definitions.alert_series``, firing spans from
  ``AlertSeries.spans``) on the rule-evaluation grid ``obslab budget`` uses: every scrape interval of
  the profile, anchored at the as-of time. Nothing here recomputes a burn rate or a firing condition.
* **A page** is a maximal interval during which at least one ``page``-severity alert of any SLO
  fires: the spans of the page alerts, merged where they overlap or touch (one incident pages
  once, however many of its alerts fire, as an Alertmanager group would notify). It starts at
  the first evaluation that fired and ends at the first evaluation at which none fires (the burn
  back under the threshold); still firing at the as-of time = open. A **ticket** likewise, from the
  ``ticket`` alerts. A page counts in the scope when it *starts* in (scope start, as of].
* **Pages per week, lab-scaled.** The lab profile compresses time ``c`` times (slo.yaml: 30 days
  become 12 hours, c = 60), so one lab second stands for ``c`` seconds of production time:
  pages per week = pages ÷ (observed lab time × c ÷ 7 days). The observed lab time is the scope:
  (since, or the first event) to the as-of time. Less than one scaled week observed is an
  extrapolation, and the figure says so.
* **Known faults** (the ground truth an incident is joined to): faults of finished drill runs
  (their ``truth.json``: applied and removed times; passed in by the caller, see
  ``toolkit.drills.history``) and faults set through the control API (``fault_changed`` audit
  events: from a put to its delete, its replacement or its ``expires_at``).
* **Changes** are ``flag_changed`` audit events. A flag's *exposure* is the share of users not on
  its baseline variant (the first variant of ``contract.events.FLAGS``: ``stable``, ``sync``). A
  change that raises the exposure is a **change** (a deploy or a rollout step); one that lowers it
  is a **rollback**; one that leaves it equal is not counted.
* **Incident** = a page. Its cause is the known fault active when it started (started at or before
  the page, and ended no earlier than ``grace`` before it: the spec's ``abandon_after`` plus the
  longest page alert's long window, since a fault's bad outcomes can be counted that late); else the
  latest change (any flag) in the change window before it; else unknown.
  **Time to detect** = first page − the cause's start. **Time to mitigate** = the cause's end (the
  fault removed, or the change rolled back) − first page; negative when the fault ended before
  the page fired. **Time to resolve** = the page's end − its start (the burn back under threshold).
* **Change failure rate** = failed changes ÷ judged changes. A change is *failed* when a page
  starts, or its flag is rolled back, within the change window after it, cut short by the next
  change of the same flag (so one rollback fails the stage it undid, not every earlier stage).
  *Judged* = changes whose window closed by the as-of time, plus younger ones already failed.
  The **change window** defaults to the longest page alert's long window (6h ÷ c in the lab): the
  time in which a page-worthy burn started by the change must page. **Rollback rate** = changes
  rolled back (their flag's exposure lowered before its next change, at any delay) ÷ changes.

Times are Unix seconds inside, RFC 3339 in the report; durations are lab seconds, each with its
lab-scaled equivalent (× c).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

from contract.durations import format_duration
from contract.events import FLAGS, format_time
from toolkit.events import EventSet
from toolkit.events.audit import AuditEvent, read_audit_events
from toolkit.measures.definitions import alert_series, evaluation_times, load_all_outcomes, to_us
from toolkit.slo.spec import SloSpec

__all__ = ["SCHEMA", "WEEK_S", "KnownFault", "Interval", "FlagChange", "Change", "Incident", "merge_spans",
           "flag_exposure", "classify_flag_changes", "audit_faults", "judge_changes", "join_incidents",
           "compute_oncall"]

SCHEMA = "obslab.oncall/v1"
WEEK_S = 7 * 86400.0
# Most evaluation points of one replay (as the dashboard's budget history): a longer history gets a coarser grid.
MAX_GRID_POINTS = 500_000


@dataclass(frozen=True)
class KnownFault:
    """A fault whose start (and end, once removed) is known: the ground truth of an incident."""

    start: float
    end: float | None  # None: still active at the as-of time
    label: str
    source: str  # "drill" (a finished drill run's truth.json) | "control API" (fault_changed audit events)
    cause: str | None = None


@dataclass(frozen=True)
class Interval:
    """A page or a ticket: alerts of one severity firing without a gap."""

    start: float
    end: float | None  # first evaluation with none firing; None = still firing at the as-of time
    alerts: tuple[str, ...]  # which alerts fired in it


@dataclass(frozen=True)
class FlagChange:
    t: float
    flag: str | None
    actor: str | None
    exposure_before: float | None  # % of users off the baseline variant
    exposure_after: float | None
    kind: str  # change | rollback | unchanged | unreadable


@dataclass(frozen=True)
class Change:
    t: float
    flag: str
    actor: str | None
    exposure_before: float
    exposure_after: float
    window_end: float  # min(t + change window, next change of the flag)
    rolled_back_at: float | None  # the flag's first rollback before its next change
    rolled_back_by: str | None
    page_at: float | None  # the first page starting in (t, window_end]
    judged: bool  # the window closed by the as-of time, or it failed already
    failed: bool


@dataclass(frozen=True)
class Incident:
    page: Interval
    cause_kind: str  # fault | change | unknown
    cause: str | None
    cause_start: float | None
    cause_end: float | None  # fault removed / change rolled back; None: not (yet)
    time_to_detect_s: float | None
    time_to_mitigate_s: float | None
    time_to_resolve_s: float | None


# -- pure logic --------------------------------------------------------------------------

def merge_spans(spans: Iterable[tuple[float, float | None, str]]) -> list[Interval]:
    """Merge (start, end or None = open, alert name) spans that overlap or touch into intervals."""
    out: list[Interval] = []
    for start, end, name in sorted(spans, key=lambda s: s[0]):
        if out and (out[-1].end is None or start <= out[-1].end):
            last = out[-1]
            new_end = None if last.end is None or end is None else max(last.end, end)
            names = last.alerts if name in last.alerts else last.alerts + (name,)
            out[-1] = Interval(last.start, new_end, names)
        else:
            out.append(Interval(start, end, (name,)))
    return out


def flag_exposure(flag: str | None, spec: Any) -> float | None:
    """% of users a flag spec puts off its baseline variant (``FLAGS[flag][0]``); None if unreadable.

    ``spec`` is what the service stores (``{"default", "rollout": {variant: %}}``); None is the default."""
    if flag not in FLAGS:
        return None
    baseline = FLAGS[flag][0]
    if spec is None:
        return 0.0
    if not isinstance(spec, Mapping):
        return None
    rollout = spec.get("rollout") or {}
    default = spec.get("default", baseline)
    if not isinstance(rollout, Mapping) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   for v in rollout.values()):
        return None
    sliced = float(sum(rollout.values()))
    on_baseline = float(rollout.get(baseline, 0.0)) + (max(0.0, 100.0 - sliced) if default == baseline else 0.0)
    return round(100.0 - on_baseline, 9)


def classify_flag_changes(audit: Iterable[AuditEvent]) -> list[FlagChange]:
    out = []
    for a in audit:
        if a.event != "flag_changed":
            continue
        before, after = flag_exposure(a.name, a.old), flag_exposure(a.name, a.new)
        if before is None or after is None or a.action not in ("put", "delete"):
            kind = "unreadable"
        else:
            kind = "change" if after > before else "rollback" if after < before else "unchanged"
        out.append(FlagChange(a.t, a.name, a.actor, before, after, kind))
    return out


def audit_faults(audit: Iterable[AuditEvent], as_of: float) -> list[KnownFault]:
    """Faults set through the control API: from a put to its delete, its replacement or its expiry."""
    open_: dict[str, tuple[float, float | None, str]] = {}  # name → (start, expires_at, label)
    out: list[KnownFault] = []

    def close(name: str, t: float) -> None:
        start, expires, label = open_.pop(name)
        out.append(KnownFault(start, min(t, expires) if expires is not None else t, label, "control API"))

    for a in audit:
        if a.event != "fault_changed" or a.name is None:
            continue
        if a.name in open_:
            close(a.name, a.t)
        if a.action == "put" and isinstance(a.new, Mapping):
            expires = a.new.get("expires_at")
            expires = float(expires) if isinstance(expires, (int, float)) and not isinstance(expires, bool) else None
            kind = a.new.get("kind")
            label = f"fault {a.name}" + (f" ({kind})" if isinstance(kind, str) else "") + \
                    (f" set by {a.actor}" if a.actor else "")
            open_[a.name] = (a.t, expires, label)
    for name in list(open_):
        start, expires, label = open_.pop(name)
        out.append(KnownFault(start, expires if expires is not None and expires <= as_of else None, label,
                              "control API"))
    return sorted(out, key=lambda f: f.start)


def judge_changes(flag_changes: Sequence[FlagChange], pages: Sequence[Interval], window_s: float,
                  as_of: float) -> list[Change]:
    """Each exposure-raising flag change with its rollback, its first page and whether it failed."""
    changes = [c for c in flag_changes if c.kind == "change"]
    rollbacks = [c for c in flag_changes if c.kind == "rollback"]
    out = []
    for c in changes:
        nxt = min((d.t for d in changes if d.flag == c.flag and d.t > c.t), default=math.inf)
        window_end = min(c.t + window_s, nxt)
        rb = next((r for r in rollbacks if r.flag == c.flag and c.t < r.t < nxt), None)
        page = next((p.start for p in pages if c.t < p.start <= window_end), None)
        failed = page is not None or (rb is not None and rb.t <= window_end)
        judged = failed or window_end <= as_of
        out.append(Change(c.t, c.flag, c.actor, c.exposure_before, c.exposure_after,
                          window_end if math.isfinite(window_end) else c.t + window_s,
                          rb.t if rb else None, rb.actor if rb else None, page, judged, failed))
    return out


def join_incidents(pages: Sequence[Interval], faults: Sequence[KnownFault], changes: Sequence[Change],
                   grace_s: float, change_window_s: float) -> list[Incident]:
    """Each page joined to its cause (a known fault, else a recent change), with its response times."""
    out = []
    for p in pages:
        fault = max((f for f in faults if f.start <= p.start and (f.end is None or p.start <= f.end + grace_s)),
                    key=lambda f: f.start, default=None)
        if fault is not None:
            kind, label, start, end = "fault", f"{fault.label} [{fault.source}]", fault.start, fault.end
        else:
            change = max((c for c in changes if p.start - change_window_s <= c.t <= p.start),
                         key=lambda c: c.t, default=None)
            if change is not None:
                kind = "change"
                label = (f"flag {change.flag} {change.exposure_before:g} % → {change.exposure_after:g} %"
                         + (f" by {change.actor}" if change.actor else ""))
                start, end = change.t, change.rolled_back_at
            else:
                kind, label, start, end = "unknown", None, None, None
        out.append(Incident(p, kind, label, start, end,
                            None if start is None else p.start - start,
                            None if end is None else end - p.start,
                            None if p.end is None else p.end - p.start))
    return out


# -- figures -----------------------------------------------------------------------------

def _figure(name: str, value: float | None, unit: str, definition: str, *, numerator: float | None = None,
            denominator: float | None = None, n: int | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "value": value, "unit": unit, "numerator": numerator, "denominator": denominator,
            "n": n, "definition": definition, **extra}


def _duration_figure(name: str, values: list[float], compression: float, definition: str) -> dict[str, Any]:
    median = statistics.median(values) if values else None
    mean = statistics.fmean(values) if values else None
    return _figure(name, median, "lab seconds", definition + f" Median over the {len(values)} incident(s) "
                   f"that have it (mean alongside); lab-scaled = × {compression:g}.", n=len(values), mean=mean,
                   scaled_value=None if median is None else median * compression,
                   scaled_mean=None if mean is None else mean * compression)


_EPOCH = datetime(1970, 1, 1)


def _t(t: float | None) -> str | None:
    """Unix seconds → RFC 3339 through whole microseconds (a float's 0.29999… stays .300)."""
    return None if t is None else format_time(_EPOCH + timedelta(microseconds=round(t * 1e6)))


def _naive(t: datetime) -> datetime:
    return t.replace(tzinfo=None) - (t.utcoffset() or timedelta(0)) if t.tzinfo else t


def compute_oncall(events: EventSet, spec: SloSpec, profile: str = "lab", *,
                   faults: Sequence[KnownFault] = (), since: datetime | None = None, last_s: float | None = None,
                   change_window_s: float | None = None, synthetic: bool | None = None) -> dict[str, Any]:
    """The on-call and delivery report (``obslab.oncall/v1``) of ``events`` as of ``events.as_of``.

    ``since`` (or ``last_s`` before the as-of time) narrows the scope: pages, incidents and changes
    that *start* in (scope start, as of]; alerts are still replayed over all of the history read, so
    the burn windows at the scope's start hold what came before it. ``faults``: known faults from
    outside the event log (finished drill runs)."""
    prof = spec.profile(profile)
    c = prof.time_compression
    windows = spec.windows_for(profile)
    pages_w = [w for w in windows if w.severity == "page"]
    change_window_s = change_window_s if change_window_s is not None else \
        max((w.long_s for w in pages_w), default=max(w.long_s for w in windows))
    if change_window_s <= 0:
        raise ValueError(f"the change window must be longer than zero, got {change_window_s!r}")
    grace_s = spec.abandon_after_s + max((w.long_s for w in pages_w), default=0.0)
    as_of_dt = events.as_of
    first_dt = events.min_ts
    inputs = {"files": [s.path for s in events.sources], "events": events.events, "audit_events": events.audit_events,
              "skipped_invalid_lines": events.skipped}
    base = {"schema": SCHEMA, "profile": profile, "time_compression": c, "as_of": _t(to_us(as_of_dt) / 1e6)
            if as_of_dt else None, "synthetic": {None: "included", False: "excluded", True: "only"}[synthetic],
            "inputs": inputs}
    if as_of_dt is None or first_dt is None:
        return {**base, **_empty(c, change_window_s)}
    as_of = to_us(as_of_dt) / 1e6
    first = to_us(first_dt) / 1e6
    # The observed time is what the events cover: a scope reaching back before the first event starts at it.
    if last_s is not None:
        if last_s <= 0:
            raise ValueError(f"--last must be longer than zero, got {last_s!r}")
        scope_start = max(first, as_of - last_s)
    elif since is not None:
        scope_start = max(first, to_us(_naive(since)) / 1e6)
    else:
        scope_start = first
    if since is not None and to_us(_naive(since)) / 1e6 >= as_of:
        scope_start = to_us(_naive(since)) / 1e6
        raise ValueError(f"the scope ({_t(scope_start)}, {_t(as_of)}] is empty: its start is not before the "
                         "as-of time")

    # Alerts: the engine's replay, every scrape interval anchored at the as-of time.
    outcomes = load_all_outcomes(events, spec, as_of=as_of_dt, synthetic=synthetic, until=as_of_dt)
    firsts = [float(o.times_us[0]) / 1e6 for o in outcomes.values() if len(o.times_us)]
    alert_rows, page_spans, ticket_spans = [], [], []
    step = prof.scrape_interval_s
    grid_start = grid_end = None
    if firsts:
        step = max(step, (as_of - min(firsts)) / MAX_GRID_POINTS)
        grid = evaluation_times(min(firsts), as_of, step, MAX_GRID_POINTS + 1)
        grid_start, grid_end = float(grid[0]), float(grid[-1])
        for slo in spec.slos:
            for w in windows:
                name = f"{slo.name} {w.severity} {w.long}/{w.short} > {w.burn_rate:g}×"
                spans = alert_series(outcomes[slo.name], slo.objective, w, grid).spans()
                in_scope = [s for s in spans if scope_start < s.start <= as_of]
                alert_rows.append({"alert": name, "slo": slo.name, "severity": w.severity, "long": w.long,
                                   "short": w.short, "burn_rate": w.burn_rate, "spans": len(in_scope),
                                   "firing_s": sum(s.duration_s for s in in_scope),
                                   "firing_at_as_of": bool(spans and spans[-1].end is None)})
                target = page_spans if w.severity == "page" else ticket_spans
                target.extend((s.start, s.end, name) for s in spans)
    pages_all, tickets_all = merge_spans(page_spans), merge_spans(ticket_spans)
    pages = [p for p in pages_all if scope_start < p.start <= as_of]
    tickets = [t for t in tickets_all if scope_start < t.start <= as_of]

    observed_s = as_of - scope_start
    scaled_s = observed_s * c
    weeks = scaled_s / WEEK_S

    def per_week(n: int, what: str) -> dict[str, Any]:
        note = "" if weeks >= 1 else " Nothing observed yet." if weeks == 0 else (
            f" Less than one scaled week observed ({format_duration(round(scaled_s))}): an extrapolation.")
        return _figure(f"{what}_per_week", n / weeks if weeks > 0 else None, f"{what} per week (lab-scaled)",
                       f"{what} starting in the scope ÷ (observed lab time {format_duration(round(observed_s))} "
                       f"× {c:g} ÷ 7d = {weeks:.3g} scaled weeks).{note}", numerator=n, denominator=weeks)

    # Ground truth and changes.
    audit = read_audit_events(events)
    known = sorted([*faults, *audit_faults(audit, as_of)], key=lambda f: f.start)
    flag_changes = classify_flag_changes(audit)
    changes_all = judge_changes(flag_changes, pages_all, change_window_s, as_of)
    changes = [ch for ch in changes_all if scope_start < ch.t <= as_of]
    rollbacks = [f for f in flag_changes if f.kind == "rollback" and scope_start < f.t <= as_of]
    incidents = join_incidents(pages, known, changes_all, grace_s, change_window_s)

    ttd = [i.time_to_detect_s for i in incidents if i.time_to_detect_s is not None]
    ttm = [i.time_to_mitigate_s for i in incidents if i.time_to_mitigate_s is not None]
    ttr = [i.time_to_resolve_s for i in incidents if i.time_to_resolve_s is not None]
    judged = [ch for ch in changes if ch.judged]
    failed = [ch for ch in judged if ch.failed]
    rolled = [ch for ch in changes if ch.rolled_back_at is not None]
    cw = format_duration(change_window_s)
    return {
        **base,
        "scope": {"start": _t(scope_start), "end": _t(as_of), "lab_seconds": observed_s, "scaled_seconds": scaled_s,
                  "scaled_weeks": weeks,
                  "definition": "pages, tickets, incidents and changes that start in (start, end]; alerts are "
                                "replayed over all the history read, so the burn windows at the start hold what "
                                "came before it"},
        "evaluation": {"step_s": step, "grid_start": _t(grid_start), "grid_end": _t(grid_end),
                       "definition": f"every burn-rate alert of the spec ({profile} profile, windows ÷ {c:g}) "
                                     "replayed over the events by toolkit.measures.definitions.alert_series, every "
                                     "step anchored at the as-of time (as obslab budget replays them)"},
        "pages": {"count": len(pages), "per_week": per_week(len(pages), "pages"),
                  "open": sum(1 for p in pages if p.end is None),
                  "definition": "a page = a maximal interval during which at least one page-severity alert of any "
                                "SLO fires (its alerts' firing spans merged where they overlap or touch); it ends "
                                "at the first evaluation at which none fires",
                  "intervals": [_interval(p) for p in pages]},
        "tickets": {"count": len(tickets), "per_week": per_week(len(tickets), "tickets"),
                    "open": sum(1 for t in tickets if t.end is None),
                    "definition": "a ticket = a maximal interval during which at least one ticket-severity alert "
                                  "fires, merged as pages are",
                    "intervals": [_interval(t) for t in tickets]},
        "alerts": alert_rows,
        "response": {
            "time_to_detect": _duration_figure(
                "time_to_detect", ttd, c, "Time to detect = first page − the start of its cause (the known fault "
                "applied, or the flag change)."),
            "time_to_mitigate": _duration_figure(
                "time_to_mitigate", ttm, c, "Time to mitigate = the end of the cause (fault removed, change rolled "
                "back) − first page; negative when the fault ended before the page fired."),
            "time_to_resolve": _duration_figure(
                "time_to_resolve", ttr, c, "Time to resolve = page end (the first evaluation with no page alert "
                "firing: the burn back under threshold) − page start; open pages have none."),
        },
        "incidents": [_incident(i, c) for i in incidents],
        "incident_join": {"grace_s": grace_s, "definition": (
            f"a page's cause is the known fault that started at or before it and ended at most "
            f"{format_duration(grace_s)} before it (abandon_after {format_duration(spec.abandon_after_s)} + the "
            f"longest page long window: bad outcomes of a fault are counted that late), the latest one if "
            f"several; else the latest flag change in the {cw} before it; else unknown")},
        "known_faults": [{"start": _t(f.start), "end": _t(f.end), "label": f.label, "source": f.source,
                          "cause": f.cause} for f in known if scope_start < f.start <= as_of],
        "delivery": {
            "change_window_s": change_window_s,
            "changes": _figure("changes", len(changes), "changes",
                               "flag_changed audit events in the scope that raise the flag's exposure (the % of "
                               "users off its baseline variant: " + ", ".join(f"{k} {v[0]}" for k, v in FLAGS.items())
                               + "): a deploy or a rollout step", n=len(changes)),
            "rollbacks": _figure("rollbacks", len(rollbacks), "flag changes",
                                 "flag_changed audit events in the scope that lower the flag's exposure",
                                 n=len(rollbacks)),
            "change_failure_rate": _figure(
                "change_failure_rate", len(failed) / len(judged) if judged else None, "share",
                f"failed changes ÷ judged changes; failed = a page starts, or the flag is rolled back, within {cw} "
                f"after the change (the longest page alert's long window unless --change-window), cut short by the "
                f"flag's next change; judged = the window closed by the as-of time, or failed already "
                f"({len(changes) - len(judged)} change(s) still in their window)",
                numerator=len(failed), denominator=len(judged)),
            "rollback_rate": _figure(
                "rollback_rate", len(rolled) / len(changes) if changes else None, "share",
                "changes rolled back (their flag's exposure lowered before its next change, at any delay) ÷ changes",
                numerator=len(rolled), denominator=len(changes)),
            "unreadable_flag_changes": sum(1 for f in flag_changes if f.kind == "unreadable"
                                           and scope_start < f.t <= as_of),
            "list": [_change(ch) for ch in changes],
        },
    }


def _empty(c: float, change_window_s: float) -> dict[str, Any]:
    none = {"count": 0, "per_week": _figure("per_week", None, "per week (lab-scaled)", "no events: nothing observed",
                                            numerator=0, denominator=0.0), "open": 0, "intervals": []}
    return {"scope": None, "evaluation": None, "pages": none, "tickets": none, "alerts": [],
            "response": {k: _duration_figure(k, [], c, "no events.") for k in
                         ("time_to_detect", "time_to_mitigate", "time_to_resolve")},
            "incidents": [], "known_faults": [],
            "delivery": {"change_window_s": change_window_s,
                         "changes": _figure("changes", 0, "changes", "no events", n=0),
                         "rollbacks": _figure("rollbacks", 0, "flag changes", "no events", n=0),
                         "change_failure_rate": _figure("change_failure_rate", None, "share", "no events",
                                                        numerator=0, denominator=0),
                         "rollback_rate": _figure("rollback_rate", None, "share", "no events", numerator=0,
                                                  denominator=0),
                         "unreadable_flag_changes": 0, "list": []}}


def _interval(p: Interval) -> dict[str, Any]:
    return {"start": _t(p.start), "end": _t(p.end), "duration_s": None if p.end is None else p.end - p.start,
            "alerts": list(p.alerts)}


def _incident(i: Incident, c: float) -> dict[str, Any]:
    scaled = (lambda v: None if v is None else v * c)
    return {"page": _interval(i.page), "cause_kind": i.cause_kind, "cause": i.cause,
            "cause_start": _t(i.cause_start), "cause_end": _t(i.cause_end),
            "time_to_detect_s": i.time_to_detect_s, "time_to_mitigate_s": i.time_to_mitigate_s,
            "time_to_resolve_s": i.time_to_resolve_s, "scaled_time_to_detect_s": scaled(i.time_to_detect_s),
            "scaled_time_to_mitigate_s": scaled(i.time_to_mitigate_s),
            "scaled_time_to_resolve_s": scaled(i.time_to_resolve_s)}


def _change(ch: Change) -> dict[str, Any]:
    d = asdict(ch)
    for k in ("t", "window_end", "rolled_back_at", "page_at"):
        d[k] = _t(d[k])
    return d
