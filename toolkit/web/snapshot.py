"""What the live views show: tiles, time series and cohorts over the lab's events, as of a stated time.

Shared by the web dashboard and ``obslab top``. Every figure carries its window, count and
definition. The window is explicit: events with ``ts <= as_of`` only, so ``obslab sli`` run
with the same ``--since``/``--until`` reproduces the tiles exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

from toolkit.durations import format_duration, parse_duration
from toolkit.slo_spec import SloSpec

__all__ = ["Window", "Attempt", "window_for", "load_attempts", "snapshot", "series", "cohorts",
           "DEFINITIONS", "iso", "parse_ts"]

# Hover text of each tile: what the number is, over what, and what is left out.
DEFINITIONS = {
    "success": ("publish success rate = succeeded / (succeeded + failed + abandoned) over publish attempts "
                "whose outcome falls in the window. An attempt is one request_id from upload_started; "
                "abandoned = no terminal event {abandon_after} after its last event. User cancellations and "
                "rejected requests are excluded; attempts still in flight are not counted yet."),
    "latency": ("processing latency = upload_completed → publish_succeeded (server side), over attempts "
                "published in the window; percentiles are exact (no histogram interpolation). The latency SLI "
                "is the share of published attempts with processing latency ≤ {threshold}."),
    "budget": ("error budget remaining = 1 − (bad / total) / (1 − objective), over the SLO period ending at the "
               "as-of time ({period} in the {profile} profile, i.e. 30 days compressed {factor:g}×). "
               "100 % = nothing spent, 0 % = spent, negative = overspent."),
    "burn": ("burn rate = error rate over a window / (1 − objective): 1× spends the budget exactly over the "
             "period. A multi-window alert fires when both its long and its short window burn faster than its "
             "threshold (SRE Workbook). Windows are the {profile} profile's (compressed {factor:g}×)."),
}


def iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime  # the as-of time: events with ts <= end; outcomes in [start, end) count
    label: str

    def to_json(self) -> dict:
        return {"start": iso(self.start), "end": iso(self.end), "label": self.label,
                "seconds": (self.end - self.start).total_seconds()}


def window_for(key: str, as_of: datetime, lab_started_at: datetime | None,
               attempts: list["Attempt"] | None = None) -> Window:
    """``lab`` = since the lab started (else since the first attempt); otherwise a duration such as ``5m``."""
    if key == "lab":
        start = lab_started_at or min((a.started for a in attempts or ()), default=as_of)
        return Window(min(start, as_of), as_of, "since lab start" if lab_started_at else "since the first event")
    seconds = parse_duration(key)
    return Window(as_of - timedelta(seconds=seconds), as_of, f"last {format_duration(seconds)}")


@dataclass(frozen=True)
class Attempt:
    request_id: str
    started: datetime
    last_event: datetime
    outcome: str  # succeeded | failed | cancelled | abandoned | in_flight
    outcome_at: datetime | None  # terminal event time, or last event + abandon_after
    processing_latency_s: float | None
    cohort: dict


def load_attempts(paths: Iterable[Path], as_of: datetime, abandon_after_s: float) -> list[Attempt]:
    """Attempts from the SLI engine's attempts relation over events with ts <= as_of."""
    from toolkit.attempts import attempts as attempts_relation
    from toolkit.attempts import outcome_at_sql
    from toolkit.events_io import load_events

    paths = [str(p) for p in paths]
    if not paths:
        return []
    events = load_events(paths, until=as_of)
    try:
        rel = attempts_relation(events, abandon_after_s=abandon_after_s, as_of=as_of)
        rows = events.con.execute(
            f"SELECT request_id, coalesce(started_at, last_event_at), last_event_at, outcome, "
            f"{outcome_at_sql(abandon_after_s)}, processing_ms, region, app_version, network_type, "
            f"media_size_bucket, release, transcode_mode FROM {rel.alias}").fetchall()
    finally:
        events.con.close()
    utc = timezone.utc
    out = []
    for rid, started, last, outcome, outcome_at, processing_ms, *cohort in rows:
        out.append(Attempt(
            rid, started.replace(tzinfo=utc), last.replace(tzinfo=utc), outcome,
            outcome_at.replace(tzinfo=utc) if outcome_at is not None else None,
            processing_ms / 1000.0 if processing_ms is not None else None,
            dict(zip(("region", "app_version", "network_type", "media_size_bucket", "release", "transcode_mode"),
                     cohort))))
    return out


# ---------------------------------------------------------------------------------------------


def _exact_percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile: an observed value, no interpolation."""
    if not sorted_values:
        return None
    import math

    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Counts:
    succeeded: int
    failed: int
    abandoned: int
    cancelled: int
    latencies: tuple[float, ...]

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.abandoned


def _count(attempts: Iterable[Attempt], start: datetime, end: datetime) -> Counts:
    s = f = ab = c = 0
    lat = []
    for a in attempts:
        if a.outcome_at is None or not (start <= a.outcome_at < end):
            continue
        if a.outcome == "succeeded":
            s += 1
            if a.processing_latency_s is not None:
                lat.append(a.processing_latency_s)
        elif a.outcome == "failed":
            f += 1
        elif a.outcome == "abandoned":
            ab += 1
        elif a.outcome == "cancelled":
            c += 1
    return Counts(s, f, ab, c, tuple(sorted(lat)))


def _ratio(good: int, total: int) -> float | None:
    return good / total if total else None


def _bad_ratios(spec: SloSpec, counts: Counts) -> dict[str, tuple[int, int]]:
    """(bad, total) per SLO over one window."""
    out = {}
    for slo in spec.slos:
        if slo.kind == "ratio":
            out[slo.name] = (counts.failed + counts.abandoned, counts.total)
        else:
            within = sum(1 for x in counts.latencies if x <= slo.threshold_s)
            out[slo.name] = (len(counts.latencies) - within, len(counts.latencies))
    return out


def snapshot(spec: SloSpec, profile: str, attempts: list[Attempt], window: Window, *,
             synthetic: str = "synthetic traffic included", prometheus_alerts: list[dict] | None = None,
             in_flight_cutoff: datetime | None = None) -> dict:
    """The tiles: success rate, latency percentiles, budgets, burn rates and alert state."""
    ratio_slo = next(s for s in spec.slos if s.kind == "ratio")
    latency_slo = next(s for s in spec.slos if s.kind == "latency")
    factor = spec.profile(profile).time_compression
    counts = _count(attempts, window.start, window.end)
    in_flight = sum(1 for a in attempts if a.outcome == "in_flight" and a.started > window.start)
    lat = counts.latencies
    within = sum(1 for x in lat if x <= latency_slo.threshold_s)
    period_s = spec.period_for(ratio_slo, profile)

    budgets = []
    period_counts = _count(attempts, window.end - timedelta(seconds=period_s), window.end)
    for slo in spec.slos:
        bad, total = _bad_ratios(spec, period_counts)[slo.name]
        remaining = None if total == 0 else 1 - (bad / total) / slo.error_budget
        budgets.append({"slo": slo.name, "objective": slo.objective, "period": format_duration(period_s),
                        "bad": bad, "total": total, "remaining": remaining,
                        "definition": DEFINITIONS["budget"].format(period=format_duration(period_s),
                                                                   profile=profile, factor=factor)})

    windows = []
    for w in spec.windows_for(profile):
        long_c = _bad_ratios(spec, _count(attempts, window.end - timedelta(seconds=w.long_s), window.end))
        short_c = _bad_ratios(spec, _count(attempts, window.end - timedelta(seconds=w.short_s), window.end))
        for slo in spec.slos:
            lb, lt = long_c[slo.name]
            sb, st = short_c[slo.name]
            long_burn = None if lt == 0 else (lb / lt) / slo.error_budget
            short_burn = None if st == 0 else (sb / st) / slo.error_budget
            firing = bool(long_burn is not None and short_burn is not None
                          and long_burn > w.burn_rate and short_burn > w.burn_rate)
            windows.append({"slo": slo.name, "severity": w.severity, "long": w.long, "short": w.short,
                            "burn_rate_threshold": w.burn_rate, "long_burn": long_burn, "short_burn": short_burn,
                            "long_count": lt, "short_count": st, "firing": firing})
    if prometheus_alerts is not None:
        alerts, source = prometheus_alerts, "Prometheus (lab rules)"
    else:
        alerts = [{"name": f"{w['slo']} {w['severity']} {w['long']}/{w['short']}", "severity": w["severity"],
                   "state": "firing", "slo": w["slo"]} for w in windows if w["firing"]]
        source = "the toolkit's burn-rate evaluation over events"
    return {
        "schema": "obslab.lab-snapshot/v1",
        "as_of": iso(window.end),
        "window": window.to_json(),
        "profile": profile,
        "synthetic": synthetic,
        "success": {"slo": ratio_slo.name, "value": _ratio(counts.succeeded, counts.total),
                    "good": counts.succeeded, "total": counts.total, "failed": counts.failed,
                    "abandoned": counts.abandoned, "cancelled": counts.cancelled, "in_flight": in_flight,
                    "objective": ratio_slo.objective,
                    "definition": DEFINITIONS["success"].format(abandon_after=format_duration(spec.abandon_after_s))},
        "latency": {"slo": latency_slo.name, "kind": latency_slo.latency, "count": len(lat),
                    "p50_s": _exact_percentile(lat, 0.50), "p95_s": _exact_percentile(lat, 0.95),
                    "p99_s": _exact_percentile(lat, 0.99), "threshold_s": latency_slo.threshold_s,
                    "good_ratio": _ratio(within, len(lat)), "objective": latency_slo.objective,
                    "definition": DEFINITIONS["latency"].format(threshold=format_duration(latency_slo.threshold_s))},
        "budgets": budgets,
        "burn": {"source": source, "windows": windows, "alerts": alerts,
                 "definition": DEFINITIONS["burn"].format(profile=profile, factor=factor)},
    }


def series(spec: SloSpec, profile: str, attempts: list[Attempt], window: Window, *, max_points: int = 120,
           synthetic: str = "synthetic traffic included") -> dict:
    """Per-bucket success rate, latency percentiles, outcome counts and page-window burn rate."""
    span_s = max(1.0, (window.end - window.start).total_seconds())
    first = min((a.outcome_at for a in attempts if a.outcome_at is not None and a.outcome_at > window.start),
                default=window.end)
    span_s = min(span_s, max(1.0, (window.end - first).total_seconds()))
    step_s = max(5, int(-(-span_s // max_points)))
    step_s = next(s for s in (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 10**9) if s >= step_s)
    end_epoch = int(window.end.timestamp())
    n = max(1, int(-(-span_s // step_s)))
    ratio_slo = next(s for s in spec.slos if s.kind == "ratio")
    latency_slo = next(s for s in spec.slos if s.kind == "latency")
    page = spec.windows_for(profile)[0]
    out = {k: [] for k in ("t", "success_rate", "succeeded", "failed", "abandoned", "p50_s", "p95_s", "p99_s")}
    burn_long, burn_short = [], []
    for i in range(n, 0, -1):
        b_end = datetime.fromtimestamp(end_epoch - (i - 1) * step_s, timezone.utc)
        b_start = b_end - timedelta(seconds=step_s)
        c = _count(attempts, b_start, b_end)
        out["t"].append(b_end.timestamp())
        out["success_rate"].append(_ratio(c.succeeded, c.total))
        out["succeeded"].append(c.succeeded)
        out["failed"].append(c.failed)
        out["abandoned"].append(c.abandoned)
        for q, key in ((0.5, "p50_s"), (0.95, "p95_s"), (0.99, "p99_s")):
            out[key].append(_exact_percentile(list(c.latencies), q))
        for length, dest in ((page.long_s, burn_long), (page.short_s, burn_short)):
            bad, total = _bad_ratios(spec, _count(attempts, b_end - timedelta(seconds=length), b_end))[ratio_slo.name]
            dest.append(None if total == 0 else (bad / total) / ratio_slo.error_budget)
    out.update(step_s=step_s, objective=ratio_slo.objective, threshold_s=latency_slo.threshold_s,
               burn_slo=ratio_slo.name, synthetic=synthetic, window=window.to_json(),
               burn={f"{page.long} window": burn_long, f"{page.short} window": burn_short,
                     "page threshold": [page.burn_rate] * n})
    return out


def cohorts(spec: SloSpec, attempts: list[Attempt], window: Window, dimension: str, *,
            synthetic: str = "synthetic traffic included") -> dict:
    rows: dict[str, list[Attempt]] = {}
    for a in attempts:
        if a.outcome_at is None or not (window.start <= a.outcome_at < window.end):
            continue
        rows.setdefault(str(a.cohort.get(dimension)), []).append(a)
    out = []
    for value in sorted(rows):
        c = _count(rows[value], window.start, window.end)
        out.append({"cohort": value, "total": c.total, "succeeded": c.succeeded, "failed": c.failed,
                    "abandoned": c.abandoned, "cancelled": c.cancelled,
                    "success_rate": _ratio(c.succeeded, c.total),
                    "p95_s": _exact_percentile(list(c.latencies), 0.95), "latency_count": len(c.latencies)})
    return {"dimension": dimension, "rows": out, "window": window.to_json(),
            "window_label": f"outcomes in {window.label}", "synthetic": synthetic}
