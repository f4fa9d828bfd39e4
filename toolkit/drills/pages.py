"""Did a page fire during a drill? The engine's replay of the events, confirmed by Prometheus when one ran.

A drill report says a page fired only when the measurement engine's replay of the
burn-rate alerts over the events says so and, when a Prometheus was running for the
lab, Prometheus fired the same alert too (its ``ALERTS`` series). When the two
disagree, or Prometheus cannot be asked, the report says so and counts no page:
it never states a page that the other surfaces did not show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from toolkit.measures.definitions import Outcomes, alert_series, alert_timing, evaluation_times
from toolkit.slo.spec import SloSpec

__all__ = ["EnginePage", "PrometheusPage", "PageVerdict", "engine_first_page", "prometheus_first_fire",
           "page_verdict"]

_TIMEOUT_S = 5.0
_MAX_POINTS = 10_000  # Prometheus refuses a range query of more than 11,000 points per series


@dataclass(frozen=True)
class EnginePage:
    """The engine's first page in the drill (None: its replay fired none)."""

    at: float | None
    alert: str | None  # which alert, e.g. "1m/5s burn rate over 14.4× (lab profile)"


@dataclass(frozen=True)
class PrometheusPage:
    state: str  # "not running" | "fired" | "did not fire" | "unreachable"
    at: float | None = None  # first sample of the alert in state firing
    detail: str = ""  # the URL asked, or why it could not be


@dataclass(frozen=True)
class PageVerdict:
    fired: bool
    at: float | None  # the engine's first-fire time, when the page counts as fired
    alert: str | None
    engine: EnginePage
    prometheus: PrometheusPage

    def sentence(self, fault_start: float, scenario: Callable[[float], float] | None = None) -> str:
        """What the report says about the page, with every source named. ``scenario`` maps a wall time to
        the drill's scenario seconds (its clock): times are said in scenario time, wall time in brackets."""
        e, p = self.engine, self.prometheus

        def after(t: float) -> str:
            return _after(fault_start, t, scenario)

        if self.fired:
            text = f"the page ({self.alert}) fired {after(self.at)} after the fault started"
            if p.state == "fired":
                text += f" (Prometheus fired it {after(p.at)} after)"
            return text
        if e.at is None and p.state in ("not running", "did not fire"):
            return "no burn-rate page fired (the engine's replay of the events" + (
                " and Prometheus agree)" if p.state == "did not fire" else ")")
        if e.at is None:  # Prometheus fired or could not be asked
            if p.state == "fired":
                return (f"no page is counted: Prometheus fired one {after(p.at)} after the fault "
                        "started, but the engine's replay of the events never met the page condition")
            return "no burn-rate page fired (the engine's replay of the events)"
        if p.state == "did not fire":
            return (f"no page is counted: the engine's replay met the page condition ({e.alert}) "
                    f"{after(e.at)} after the fault started, but Prometheus ({p.detail}) did not fire it")
        return (f"no page is counted: the engine's replay met the page condition ({e.alert}) "
                f"{after(e.at)} after the fault started, but the lab's Prometheus could not "
                f"confirm it ({p.detail})")


def _after(fault_start: float, t: float, scenario: Callable[[float], float] | None) -> str:
    """``12.0 s of scenario time (1.2 s wall)`` from the fault's start to ``t``; plain seconds without a clock."""
    wall = t - fault_start
    if scenario is None:
        return f"{wall:.1f} s"
    scen = scenario(t) - scenario(fault_start)
    return f"{scen:.1f} s of scenario time" + (f" ({wall:.1f} s wall)" if abs(scen - wall) >= 0.05 else "")


def engine_first_page(outcomes: Outcomes, spec: SloSpec, start: float, end: float, slo_name: str = "publish-success",
                      profile: str = "lab") -> EnginePage:
    """The first time in (start, end] one of the SLO's page alerts starts firing in the engine's replay
    (``toolkit.measures.definitions.alert_series``), on the rule evaluation grid ``obslab budget --profile PROFILE
    --at END`` replays: every scrape interval of the profile, anchored at ``end``. An alert already
    firing when the drill started is not this drill's page."""
    slo = spec.slo(slo_name)
    timing = alert_timing(spec, profile)  # the spec is paced to the drill's speed: its windows, wall seconds
    step = timing.step_s
    ends = evaluation_times(start - step, end, step)
    hits = []
    for i, w in enumerate(timing.windows):
        if w.severity != "page" or len(ends) < 2:
            continue
        firing = alert_series(outcomes, slo.objective, w, ends).firing
        starts = np.flatnonzero(firing[1:] & ~firing[:-1]) + 1
        if len(starts):
            # Named as the briefing names it: the scenario windows, the wall ones beside them at a speed.
            sw = timing.scenario_windows[i]
            wall = f"; {w.long}/{w.short} wall at ×{timing.speed:g}" if timing.speed != 1 else ""
            hits.append((float(ends[starts[0]]), f"{sw.long}/{sw.short} burn rate over {w.burn_rate:g}× "
                                                  f"({profile} profile{wall})"))
    return EnginePage(*min(hits)) if hits else EnginePage(None, None)


def prometheus_first_fire(url: str | None, alertname: str, start: float, end: float) -> PrometheusPage:
    """First time in [start, end] Prometheus had ``alertname`` firing (its ``ALERTS`` series)."""
    if not url:
        return PrometheusPage("not running")
    import requests

    step = max(1.0, (end - start) / _MAX_POINTS)
    query = f'ALERTS{{alertname="{alertname}", alertstate="firing"}}'
    where = f"{url.rstrip('/')}/api/v1/query_range"
    try:
        resp = requests.get(where, params={"query": query, "start": start, "end": end, "step": step},
                            timeout=_TIMEOUT_S)
        body = resp.json()
    except (requests.RequestException, ValueError) as e:
        return PrometheusPage("unreachable", None, f"{where}: {type(e).__name__}")
    if resp.status_code != 200 or body.get("status") != "success":
        return PrometheusPage("unreachable", None, f"{where}: HTTP {resp.status_code} {body.get('error', '')}".strip())
    times = [float(t) for series in body["data"]["result"] for t, v in series.get("values", []) if float(v) > 0]
    if not times:
        return PrometheusPage("did not fire", None, f"{url}, {query}")
    return PrometheusPage("fired", min(times), f"{url}, {query}")


def page_verdict(engine: EnginePage, prometheus: PrometheusPage) -> PageVerdict:
    """Fired only if the engine says so and Prometheus, when one ran for the lab, does too."""
    fired = engine.at is not None and prometheus.state in ("not running", "fired")
    return PageVerdict(fired, engine.at if fired else None, engine.alert if fired else None, engine, prometheus)
