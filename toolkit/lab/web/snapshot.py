"""What the live views show: tiles, time series and cohorts over the lab's events, as of a stated time.

Shared by the web dashboard and ``obslab top``. The figures are the SLI engine's own:
``toolkit.measures.sli.compute_report`` (success rate, latency percentiles, cohorts, series) and
``toolkit.measures.budget.compute_budget`` (budgets, burn rates, alert states), over the events with
``ts <= as_of``; every definition behind them (good/total from the spec, window edges (t − W, t],
burn rate, alert firing, first fire, budget spent/remaining) is ``toolkit.measures.definitions``'s. So
``obslab sli --since <window start> --until <as of>`` and ``obslab budget --at <as of>`` reproduce the
tiles exactly, and every tile says its window, its count and its definition.

While a drill runs at ``--speed s`` the lab's alerts run in its scenario time (the drill paces the lab's
Prometheus rules the same way): ``LabData(..., speed=s)`` evaluates the burn-rate windows and the budget
period ``s`` times shorter (``toolkit.measures.definitions.alert_timing``), as ``obslab budget --speed s``
does, and the snapshot says so (``scenario``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

from toolkit.analysis.stats import compare_proportions
from toolkit.measures.budget import compute_budget
from contract.events import format_time, parse_time
from contract.durations import format_duration, parse_duration
from toolkit.events import EventSet, load_events
from toolkit.measures.definitions import alert_timing, burn_rate_series, load_outcomes, success_definition, to_us
from toolkit.measures.sli import SliQuery, compute_report
from toolkit.slo.spec import SloSpec

__all__ = ["Window", "LabData", "window_for", "worst_cohort", "alert_states", "DEFINITIONS", "iso", "parse_ts", "SERIES_STEPS_S"]

# Hover text of each tile: what the number is, over what, and what is left out.
DEFINITIONS = {
    "success": ("publish success rate = {ratio} (SLO {slo} in the spec) over publish attempts "
                "whose outcome falls in the window (start, as of]. An attempt is one request_id from "
                "upload_started; abandoned = no terminal event {abandon_after} after its last event. Outcomes "
                "outside the total and rejected requests are excluded; attempts still in flight are not counted yet."),
    "latency": ("processing latency = upload_completed → publish_succeeded (server side), over attempts "
                "published in the window; percentiles are exact nearest-rank (no histogram interpolation). "
                "The latency SLI is the share of published attempts with processing latency ≤ {threshold}."),
    "budget": ("error budget spent = bad events so far / the whole period's budget, where the whole period's "
               "budget = (1 − objective) × the events the period holds at the traffic rate seen so far; "
               "remaining = 1 − spent. The period is the SLO period ending at the as-of time ({period} in the "
               "{profile} profile, i.e. 30 days compressed {factor:g}×). 100 % remaining = nothing spent, "
               "0 % = all spent, negative = overspent."),
    "burn": ("burn rate = error rate over a window (t − W, t] / (1 − objective): 1× spends the budget exactly "
             "over the period. A multi-window alert fires when both its long and its short window burn faster than its "
             "threshold (SRE Workbook). Windows are the {profile} profile's (compressed {factor:g}×)."),
    "scenario": (" A drill is running at ×{speed:g}: the windows and the period are in its scenario time, {speed:g}× "
                 "shorter in wall time (the {profile} profile compressed {factor:g}×), as the lab's Prometheus rules "
                 "are while it runs; `obslab budget --profile {profile} --speed {speed:g}` shows the same."),
}
SERIES_STEPS_S = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
# Budget alert history is replayed every scrape interval, as `obslab budget` replays it (so the first
# fire time is the same); only a run too long for that many points gets a coarser grid.
_MAX_HISTORY_POINTS = 500_000


def iso(ts: datetime) -> str:
    return format_time(ts)


def parse_ts(text: str) -> datetime:
    """Aware UTC datetime of an RFC 3339 time (``contract.events.parse_time``)."""
    return parse_time(text).replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime  # the as-of time: events with ts <= end; outcomes in (start, end] count
    label: str

    def to_json(self) -> dict:
        return {"start": iso(self.start), "end": iso(self.end), "label": self.label,
                "seconds": (self.end - self.start).total_seconds()}


def window_for(key: str, as_of: datetime, lab_started_at: datetime | None,
               first_event_at: datetime | None = None) -> Window:
    """``lab`` = since the lab started (else since the first event); otherwise a duration such as ``5m``."""
    if key == "lab":
        start = lab_started_at or first_event_at or as_of
        label = "since lab start" if lab_started_at else "since the first event"
        return Window(min(start, as_of), as_of, label)
    seconds = parse_duration(key)
    if seconds <= 0:
        raise ValueError(f"window must be longer than zero, got {key!r}")
    return Window(as_of - timedelta(seconds=seconds), as_of, f"last {format_duration(seconds)}")


def _naive(t: datetime) -> datetime:
    return t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo else t


def _figures(section: dict) -> dict[str, dict]:
    return {f["name"]: f for group in ("primary", "latency", "secondary", "guardrails") for f in section[group]}


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000.0


_EMPTY_FILE: Path | None = None


def _empty_events_file() -> Path:
    """Before the service wrote its first event there is no file: read an empty one instead."""
    global _EMPTY_FILE
    if _EMPTY_FILE is None:
        _EMPTY_FILE = Path(tempfile.mkdtemp(prefix="obslab-web-")) / "events.jsonl"
        _EMPTY_FILE.write_text("")
    return _EMPTY_FILE


class LabData:
    """The lab's events as of one time, and the figures the views show. Not thread-safe: one user at a time."""

    def __init__(self, paths: Iterable[Path], spec: SloSpec, profile: str, as_of: datetime,
                 synthetic: bool | None = None, speed: float = 1.0):
        self.spec = spec
        self.profile = profile
        self.as_of = as_of
        self.synthetic = synthetic
        self.speed = speed  # a running drill's scenario speed: the alert windows run in its time
        self.timing = alert_timing(spec, profile, speed)
        files = [str(p) for p in paths] or [str(_empty_events_file())]
        self.events: EventSet = load_events(files, until=_naive(as_of))

    def close(self) -> None:
        self.events.con.close()

    @property
    def first_event_at(self) -> datetime | None:
        t = self.events.min_ts
        return t.replace(tzinfo=timezone.utc) if t else None

    @property
    def synthetic_label(self) -> str:
        return {None: "synthetic traffic included", False: "synthetic traffic excluded",
                True: "synthetic traffic only"}[self.synthetic]

    def _report(self, window: Window, *, window_s: float | None = None, by: tuple[str, ...] = ()):
        query = SliQuery(since=_naive(window.start), until=_naive(window.end), window_s=window_s, by=by,
                         synthetic=self.synthetic)
        return compute_report(self.events, self.spec, query).to_dict()

    # ------------------------------------------------------------------ tiles
    def snapshot(self, window: Window, prometheus_alerts: list[dict] | None = None,
                 prometheus_status: str = "not configured") -> dict:
        """``prometheus_status``: "not configured", "unreachable" or "answered" (then ``prometheus_alerts``
        is its list of pending and firing alerts)."""
        spec, profile = self.spec, self.profile
        ratio_slo = next(s for s in spec.slos if s.kind == "ratio")
        latency_slo = next(s for s in spec.slos if s.kind == "latency")
        timing = self.timing
        factor = timing.time_compression
        report = self._report(window)
        totals = report["totals"]
        figs, counts = _figures(totals), totals["counts"]
        success = figs["publish_success_rate"]
        lat = {q: figs[f"{latency_slo.latency}_latency_{q}"] for q in ("p50", "p95", "p99")}
        budget = self._budget()
        budgets, windows = [], []
        for b in budget["slos"]:
            st, hist = b["budget"], b["history"]
            budgets.append({"slo": b["slo"], "objective": b["objective"], "period": b["period"],
                            "bad": st["bad"], "total": st["total"], "spent": st["spent"],
                            "remaining": st["remaining"], "summary": b["summary"],
                            "data_covers": b["data_covers"], "counts": b["definition"],
                            # Which period the budget covers and when its data began: old incidents
                            # count until the period moves past them (or `obslab lab --fresh`).
                            "period_start": b["period_start"], "period_end": b["period_end"],
                            "data_began": iso(self.first_event_at) if self.first_event_at else None,
                            "definition": DEFINITIONS["budget"].format(period=b["period"], profile=profile,
                                                                       factor=factor)})
            for a, h, sw in zip(b["alerts"], hist or [{}] * len(b["alerts"]), timing.scenario_windows):
                windows.append({"slo": b["slo"], "severity": a["severity"], "long": a["long"]["window"],
                                "short": a["short"]["window"], "scenario_long": sw.long, "scenario_short": sw.short,
                                "burn_rate_threshold": a["factor"],
                                "long_burn": a["long"]["burn"]["burn_rate"],
                                "short_burn": a["short"]["burn"]["burn_rate"],
                                "long_count": a["long"]["burn"]["total"], "short_count": a["short"]["burn"]["total"],
                                "firing": a["firing"], "first_fired": h.get("first_fired")})
        event_alerts = [{"name": f"{w['slo']} {w['severity']} {w['scenario_long']}/{w['scenario_short']}",
                         "severity": w["severity"],
                         "state": "firing", "slo": w["slo"]} for w in windows if w["firing"]]
        for w in windows:
            w["prometheus"] = alert_states(prometheus_alerts, w["slo"], w["severity"])
        if prometheus_alerts is not None:
            alerts, source = prometheus_alerts, "Prometheus (lab rules)"
        else:
            alerts, source = event_alerts, "the toolkit's burn-rate evaluation over events"
        return {
            "schema": "obslab.lab-snapshot/v1",
            "as_of": iso(window.end),
            "window": window.to_json(),
            "profile": profile,
            "synthetic": self.synthetic_label,
            "success": {"slo": ratio_slo.name, "value": success["value"], "good": success["numerator"],
                        "total": success["denominator"], "failed": counts["failed"],
                        "abandoned": counts["abandoned"], "cancelled": counts["cancelled"],
                        "in_flight": counts["in_flight"], "objective": ratio_slo.objective,
                        "definition": DEFINITIONS["success"].format(
                            ratio=success_definition(spec).ratio_text(), slo=ratio_slo.name,
                            abandon_after=format_duration(spec.abandon_after_s))},
            "latency": {"slo": latency_slo.name, "kind": latency_slo.latency, "count": lat["p50"]["count"],
                        "p50_s": _seconds(lat["p50"]["value"]), "p95_s": _seconds(lat["p95"]["value"]),
                        "p99_s": _seconds(lat["p99"]["value"]), "threshold_s": latency_slo.threshold_s,
                        "good_ratio": figs["latency_sli"]["value"], "objective": latency_slo.objective,
                        "definition": DEFINITIONS["latency"].format(
                            threshold=format_duration(latency_slo.threshold_s))},
            "scenario": self._scenario_json(),
            "budgets": budgets,
            # Both sources side by side: they evaluate the same rules on different inputs (Prometheus on its
            # scrapes, the toolkit on the events), so they may disagree for a scrape interval or two.
            "burn": {"source": source, "windows": windows, "alerts": alerts, "event_alerts": event_alerts,
                     "prometheus_alerts": prometheus_alerts, "prometheus": prometheus_status,
                     "definition": DEFINITIONS["burn"].format(profile=profile, factor=factor)
                     + (DEFINITIONS["scenario"].format(speed=timing.speed, profile=profile, factor=factor)
                        if timing.speed != 1 else "")},
            "sli_scope": totals["scope"],
        }

    def _scenario_json(self) -> dict:
        """What time the burn rates and the budget are in: the spec's, or a running drill's scenario time."""
        t = self.timing
        return {"speed": t.speed, "time_compression": t.time_compression, "text": t.describe(),
                "windows": [t.window_text(i) for i in range(len(t.windows))]}

    def _budget(self) -> dict:
        first = self.events.min_ts
        span_s = (_naive(self.as_of) - first).total_seconds() if first else 0.0
        step = max(self.timing.step_s, span_s / _MAX_HISTORY_POINTS)
        report = compute_budget(self.events, self.spec, self.profile, at=_naive(self.as_of),
                                synthetic=self.synthetic, grid_step_s=step, speed=self.speed)
        d = report.to_dict()
        for out, slo in zip(d["slos"], report.slos):
            out["summary"] = slo.budget.describe()
        return d

    # ------------------------------------------------------------------ charts
    def series(self, window: Window, max_points: int = 120) -> dict:
        spec, profile = self.spec, self.profile
        ratio_slo = next(s for s in spec.slos if s.kind == "ratio")
        latency_slo = next(s for s in spec.slos if s.kind == "latency")
        start = max(window.start, self.first_event_at or window.start)
        span_s = max(1.0, (window.end - start).total_seconds())
        step_s = next((s for s in SERIES_STEPS_S if span_s / s <= max_points), SERIES_STEPS_S[-1])
        # Buckets are aligned to the window end so the newest bucket ends at the as-of time.
        n = max(1, int(-(-span_s // step_s)))
        origin = window.end - timedelta(seconds=n * step_s)
        report = self._report(Window(origin, window.end, window.label), window_s=step_s)
        points = {p["scope"]["start"]: p for p in report["series"]["points"]}
        out = {k: [] for k in ("t", "success_rate", "succeeded", "failed", "abandoned", "p50_s", "p95_s", "p99_s")}
        for i in range(n):
            b_start = origin + timedelta(seconds=i * step_s)
            p = points.get(iso(b_start))
            out["t"].append((b_start + timedelta(seconds=step_s)).timestamp())
            figs = _figures(p) if p else {}
            counts = p["counts"] if p else {}
            out["success_rate"].append(figs["publish_success_rate"]["value"] if p else None)
            for k in ("succeeded", "failed", "abandoned"):
                out[k].append(counts.get(k, 0))
            for q in ("p50", "p95", "p99"):
                out[f"{q}_s"].append(_seconds(figs[f"{latency_slo.latency}_latency_{q}"]["value"]) if p else None)
        page, scenario_page = self.timing.windows[0], self.timing.scenario_windows[0]
        burn = self._burn_series(ratio_slo, [datetime.fromtimestamp(t, timezone.utc) for t in out["t"]],
                                 (page.long_s, page.short_s))
        # At a drill's speed the chart names the windows in scenario time, the wall length beside it.
        names = [f"{page.long} window", f"{page.short} window"] if self.timing.speed == 1 else \
            [f"{scenario} window (scenario; {wall} wall)" for scenario, wall in
             ((scenario_page.long, page.long), (scenario_page.short, page.short))]
        out.update(step_s=step_s, objective=ratio_slo.objective, threshold_s=latency_slo.threshold_s,
                   burn_slo=ratio_slo.name, synthetic=self.synthetic_label, window=window.to_json(),
                   scenario=self._scenario_json(),
                   burn={names[0]: burn[0], names[1]: burn[1], "page threshold": [page.burn_rate] * n})
        return out

    def _burn_series(self, slo, ends: list[datetime], lengths: tuple[float, ...]) -> list[list[float | None]]:
        """Burn rate of an SLO over (t − length, t] at each t: ``toolkit.measures.definitions.burn_rate_series``."""
        outcomes = load_outcomes(self.events, self.spec, slo, as_of=_naive(self.as_of), synthetic=self.synthetic,
                                 until=_naive(self.as_of))
        at = [to_us(e) / 1e6 for e in ends]
        return [burn_rate_series(outcomes, slo.objective, at, length).values() for length in lengths]

    # ------------------------------------------------------------------ cohorts
    def cohorts(self, window: Window, dimension: str) -> dict:
        latency_kind = next(s for s in self.spec.slos if s.kind == "latency").latency
        report = self._report(window, by=(dimension,))
        rows = []
        for seg in report["breakdown"]["segments"]:
            figs, counts = _figures(seg), seg["counts"]
            p95 = figs[f"{latency_kind}_latency_p95"]
            rows.append({"cohort": str(seg["scope"]["segment"].get(dimension)),
                         "total": figs["publish_success_rate"]["denominator"], "succeeded": counts["succeeded"],
                         "failed": counts["failed"], "abandoned": counts["abandoned"],
                         "cancelled": counts["cancelled"], "success_rate": figs["publish_success_rate"]["value"],
                         "p95_s": _seconds(p95["value"]), "latency_count": p95["count"]})
        return {"dimension": dimension, "rows": rows, "window": window.to_json(),
                "window_label": f"outcomes in {window.label}", "synthetic": self.synthetic_label,
                "worst": worst_cohort(rows, dimension)}


def alert_states(prometheus_alerts: list[dict] | None, slo: str, severity: str) -> dict | None:
    """Prometheus's alert for one SLO and severity (the lab rules have one per pair): its name and state,
    "inactive" when Prometheus answered without it; None when Prometheus did not answer."""
    if prometheus_alerts is None:
        return None
    mine = [a for a in prometheus_alerts if a.get("slo") == slo and a.get("severity") == severity]
    order = {"firing": 0, "pending": 1}
    mine.sort(key=lambda a: order.get(a.get("state"), 2))
    return {"name": mine[0]["name"], "state": mine[0]["state"]} if mine else {"name": None, "state": "inactive"}


# A cohort is highlighted as the worst only when it is worse beyond noise: at least one failed or
# abandoned attempt, and a success rate below the other cohorts' pooled rate by a two-proportion test.
WORST_ALPHA = 0.05


def worst_cohort(rows: list[dict], dimension: str, alpha: float = WORST_ALPHA) -> dict:
    """Which cohort (if any) the table highlights, and why, in words the page shows as they are."""
    rated = [r for r in rows if r["success_rate"] is not None and r["total"]]
    if len(rated) < 2:
        return {"cohort": None, "reason": f"one {dimension} or fewer with outcomes: nothing to compare"}
    worst = min(rated, key=lambda r: r["success_rate"])
    bad = worst["total"] - worst["succeeded"]
    if bad == 0:
        return {"cohort": None, "reason": f"no {dimension} is worse: every one succeeded on every attempt"}
    rest_good = sum(r["succeeded"] for r in rated if r is not worst)
    rest_total = sum(r["total"] for r in rated if r is not worst)
    test = compare_proportions(rest_good, rest_total, worst["succeeded"], worst["total"], alpha=alpha)
    name = f"{dimension} {worst['cohort']}"
    if not test.enough_data:
        return {"cohort": None, "p_value": None,
                "reason": f"{name} has {bad:,} failed or abandoned, too few attempts to tell from noise ({test.reason})"}
    if test.difference >= 0 or test.p_value >= alpha:
        return {"cohort": None, "p_value": test.p_value,
                "reason": f"no {dimension} is worse beyond noise: {name} has {bad:,} failed or abandoned "
                          f"(p = {test.p_value:.2g} against the others, not below {alpha:g})"}
    return {"cohort": worst["cohort"], "p_value": test.p_value,
            "reason": f"{name} highlighted: {bad:,} failed or abandoned, worse than the others beyond noise "
                      f"(p = {test.p_value:.2g} < {alpha:g}, {test.method})"}
