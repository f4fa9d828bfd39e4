"""Error budgets and multi-window multi-burn-rate alerts, computed from events.

A view of the definitions layer (``toolkit.measures.definitions``), which holds the one implementation
of good/total per SLO, burn rate, alert firing, first-fire time and the budget's *spent* and
*remaining*; this module reads the events, evaluates those at one time and over the run,
and shapes the report ``obslab budget`` prints (schema ``obslab.budget/v2``).

``compute_budget(events, spec, profile, at)`` counts good and total per SLO (attempts by
outcome time, see ``toolkit.events.attempts``) over the SLO period and every alert window ending at
``at`` — windows (t − W, t], ``toolkit.measures.definitions.WINDOW_EDGES`` — and replays the alert
conditions every scrape interval of the profile, anchored at ``at``, to find when each alert
first fired and for how long. Windows, period and step come from
``toolkit.measures.definitions.alert_timing(spec, profile, speed)``: while a drill runs at ``--speed s``
the profile runs in scenario time, every window and the period ``s`` times shorter in wall time, as the
lab's Prometheus rules are for the drill.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from contract.durations import format_duration, format_seconds
from toolkit.events import EventSet, parse_time
from toolkit.measures.definitions import (BudgetFigures, BurnRate, alert_fires, alert_series, alert_timing, burn_rate,
                                         evaluation_times, load_all_outcomes, period_budget, sli_definition, sli_ratio,
                                         to_us)
from toolkit.measures.sli import iso

__all__ = [
    "SCHEMA",
    "BurnRate",
    "BudgetFigures",
    "burn_rate",
    "alert_fires",
    "WindowBurn",
    "AlertState",
    "FiringSpan",
    "AlertHistory",
    "SloBudget",
    "BudgetReport",
    "compute_budget",
]

SCHEMA = "obslab.budget/v2"
# Most grid points a run evaluation will compute (guards against a tiny step over a long log).
MAX_GRID_POINTS = 500_000


@dataclass(frozen=True)
class WindowBurn:
    window: str  # e.g. "1h"
    start: str
    end: str
    burn: BurnRate


@dataclass(frozen=True)
class AlertState:
    severity: str
    long: WindowBurn
    short: WindowBurn
    factor: float
    budget_consumed: float  # share of the period's budget this alert means (spec)
    firing: bool
    note: str | None  # "no data" when a window had no traffic


@dataclass(frozen=True)
class FiringSpan:
    start: str
    end: str | None  # None: still firing at the end of the evaluation
    duration_s: float


@dataclass(frozen=True)
class AlertHistory:
    severity: str
    long_window: str
    short_window: str
    factor: float
    first_fired: str | None
    spans: tuple[FiringSpan, ...]
    firing_s: float  # wall seconds
    scenario_long_window: str = ""  # the same windows in scenario time (differ from long/short only at a speed)
    scenario_short_window: str = ""


@dataclass(frozen=True)
class SloBudget:
    slo: str
    kind: str
    objective: float
    definition: str  # what counts as good and total
    period: str  # profile-adjusted period
    period_start: str
    period_end: str
    data_covers: str  # how much of the period has data
    sli: float | None  # good / total over the period
    good: int
    total: int
    budget: BudgetFigures  # spent and remaining of the period's budget
    alerts: tuple[AlertState, ...]
    history: tuple[AlertHistory, ...]


@dataclass(frozen=True)
class BudgetReport:
    schema: str
    profile: str
    time_compression: float
    at: str | None
    grid_step: str
    grid_start: str | None
    grid_end: str | None
    synthetic: str
    inputs: Mapping[str, Any]
    slos: tuple[SloBudget, ...]
    speed: float = 1.0  # the scenario speed the profile ran at (a drill's --speed; 1 = as the spec writes it)
    timing: str = ""  # what time the figures are in, in words

    def to_dict(self) -> dict:
        d = asdict(self)
        d["inputs"] = dict(self.inputs)
        return _finite(d)


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


# -- from events ------------------------------------------------------------------------

def _iso_us(t_s: float | None) -> str | None:
    if t_s is None:
        return None
    return iso(datetime.fromtimestamp(0, timezone.utc).replace(tzinfo=None) + timedelta(microseconds=round(t_s * 1e6)))


def compute_budget(events: EventSet, spec, profile: str = "prod", at: str | datetime | None = None,
                   synthetic: bool | None = None, grid_step_s: float | None = None,
                   speed: float | None = None) -> BudgetReport:
    """Budget, burn rates and alert states at ``at`` (default: the analysis time) and over the run.
    ``speed``: the scenario speed the profile runs at (a running drill's ``--speed``); None = the spec's."""
    timing = alert_timing(spec, profile, speed)
    windows = timing.windows
    at_t = parse_time(at) or events.as_of
    step = grid_step_s or timing.step_s
    slos = []
    grid_start = grid_end = None
    outcomes = load_all_outcomes(events, spec, as_of=at_t, synthetic=synthetic, until=at_t) if at_t else {}
    # One replay grid for every SLO: from the first outcome any of them counts, anchored at ``at``.
    firsts = [float(o.times_us[0]) / 1e6 for o in outcomes.values() if len(o.times_us)]
    grid = evaluation_times(min(firsts), to_us(at_t) / 1e6, step, MAX_GRID_POINTS) if firsts else None
    if grid is not None:
        grid_start, grid_end = _iso_us(float(grid[0])), _iso_us(float(grid[-1]))
    for slo in spec.slos:
        definition = sli_definition(slo).text()
        period_s = timing.period_s(slo)
        if at_t is None:
            empty = period_budget_empty(slo, period_s)
            slos.append(SloBudget(slo.name, slo.kind, slo.objective, definition, format_duration(period_s),
                                  None, None, "no data", None, 0, 0, empty, (), ()))
            continue
        out = outcomes[slo.name]
        at_s = to_us(at_t) / 1e6
        p_start = at_t - timedelta(seconds=period_s)
        figures = period_budget(out, slo.name, slo.objective, period_s, at_t)
        good = figures.total - figures.bad
        covers = "no data"
        if out.traffic_start_us is not None and figures.covered_s > 0:
            covers = f"{format_seconds(figures.covered_s)} of {format_duration(period_s)}"
        alerts = []
        for w in windows:
            s = alert_series(out, slo.objective, w, [at_s])
            burns = [WindowBurn(format_duration(series.window_s), iso(at_t - timedelta(seconds=series.window_s)),
                                iso(at_t), series.at(0)) for series in (s.long, s.short)]
            no_data = burns[0].burn.burn_rate is None or burns[1].burn.burn_rate is None
            alerts.append(AlertState(w.severity, burns[0], burns[1], w.burn_rate, w.budget_consumed,
                                     bool(s.firing[0]), "no data" if no_data else None))
        if grid is not None:
            hist = []
            for w, sw in zip(windows, timing.scenario_windows):
                series = alert_series(out, slo.objective, w, grid)
                spans = tuple(FiringSpan(_iso_us(sp.start), _iso_us(sp.end), sp.duration_s) for sp in series.spans())
                hist.append(AlertHistory(w.severity, w.long, w.short, w.burn_rate, _iso_us(series.first_fire),
                                         spans, series.firing_s(), sw.long, sw.short))
            history = tuple(hist)
        else:
            history = tuple(AlertHistory(w.severity, w.long, w.short, w.burn_rate, None, (), 0.0, sw.long, sw.short)
                            for w, sw in zip(windows, timing.scenario_windows))
        slos.append(SloBudget(slo.name, slo.kind, slo.objective, definition, format_duration(period_s),
                              iso(p_start), iso(at_t), covers, sli_ratio(good, figures.total), good, figures.total,
                              figures, tuple(alerts), history))
    inputs = {"files": [s.path for s in events.sources], "events": events.events,
              "skipped_invalid_lines": events.skipped, "torn_final_lines": len(events.torn),
              "prefolded_files": events.prefolded_files}
    return BudgetReport(SCHEMA, profile, timing.time_compression, iso(at_t), format_duration(step),
                        grid_start, grid_end, {None: "included", False: "excluded", True: "only"}[synthetic],
                        inputs, tuple(slos), timing.speed, timing.describe())


def period_budget_empty(slo, period_s: float) -> BudgetFigures:
    """The budget figures of a period with no data."""
    from toolkit.measures.definitions import budget_figures

    return budget_figures(slo.name, slo.objective, period_s, 0, 0, 0.0)
