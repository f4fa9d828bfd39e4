"""Error budgets and multi-window multi-burn-rate alerts, computed from events.

Pure math first — numbers in, frozen dataclasses out, unit-tested by hand:

* ``burn_rate(bad, total, objective)``: error rate / error budget (1 - objective);
  ``None`` ("no data") when there was no traffic.
* ``budget_status(bad, total, objective)``: the share of the error budget left,
  where the budget is ``(1 - objective) × total`` bad events.
* ``alert_fires(long, short, factor)``: the SRE-workbook condition — both windows
  burn strictly faster than ``factor`` (the same ``>`` the Prometheus rules use).

Then the event side: ``compute_budget(events, spec, profile, at)`` counts good and
total per SLO (attempts by outcome time, see ``toolkit.attempts``) over the SLO
period and every alert window ending at ``at``, and ``evaluate_run`` replays the
alert conditions on a grid (every scrape interval of the profile) to find when
each alert first fired and for how long. Windows come from ``spec.windows_for(profile)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

import numpy as np

from toolkit.attempts import attempt_stats_table, outcome_at_sql
from toolkit.durations import format_duration
from toolkit.events_io import EventSet, parse_time
from toolkit.sli import iso
from toolkit.slo_spec import AlertWindow, Slo, SloSpec

__all__ = [
    "SCHEMA",
    "BurnRate",
    "BudgetStatus",
    "burn_rate",
    "budget_status",
    "alert_fires",
    "WindowBurn",
    "AlertState",
    "FiringSpan",
    "AlertHistory",
    "SloBudget",
    "BudgetReport",
    "compute_budget",
]

SCHEMA = "obslab.budget/v1"
# Most grid points a run evaluation will compute (guards against a tiny step over a long log).
MAX_GRID_POINTS = 500_000


@dataclass(frozen=True)
class BurnRate:
    """How fast the error budget burns in one window: 1.0 spends exactly the budget over the period."""

    bad: float
    total: float
    error_rate: float | None  # bad / total; None = no data
    burn_rate: float | None  # error_rate / (1 - objective); None = no data


def burn_rate(bad: float, total: float, objective: float) -> BurnRate:
    if not 0 < objective < 1:
        raise ValueError(f"objective must be in (0, 1), got {objective!r}")
    if bad < 0 or total < 0 or bad > total:
        raise ValueError(f"need 0 <= bad <= total, got bad={bad!r}, total={total!r}")
    if total == 0:
        return BurnRate(bad, total, None, None)
    err = bad / total
    return BurnRate(bad, total, err, err / (1.0 - objective))


@dataclass(frozen=True)
class BudgetStatus:
    """Error budget over a period: how many bad events were allowed, how many happened."""

    objective: float
    budget: float  # 1 - objective: the share of events allowed to be bad
    bad: float
    total: float
    allowed_bad: float  # budget × total
    consumed: float | None  # bad / allowed_bad (may exceed 1); None = no data
    remaining: float | None  # 1 - consumed (negative when overspent); None = no data
    sli: float | None  # good / total


def budget_status(bad: float, total: float, objective: float) -> BudgetStatus:
    br = burn_rate(bad, total, objective)
    budget = 1.0 - objective
    if br.error_rate is None:
        return BudgetStatus(objective, budget, bad, total, 0.0, None, None, None)
    consumed = br.error_rate / budget
    return BudgetStatus(objective, budget, bad, total, budget * total, consumed, 1.0 - consumed, 1.0 - br.error_rate)


def alert_fires(long: BurnRate, short: BurnRate, factor: float) -> bool:
    """Both windows burn faster than ``factor``; a window with no data never fires."""
    if long.burn_rate is None or short.burn_rate is None:
        return False
    return long.burn_rate > factor and short.burn_rate > factor


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
    firing_s: float


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
    status: BudgetStatus
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

def _good_total_sql(slo: Slo, threshold_ms: float | None) -> tuple[str, str]:
    """SQL conditions (over attempt rows) for good and for counted-in-total."""
    if slo.kind == "ratio":
        good = ", ".join(f"'{o}'" for o in slo.events_good)
        total = ", ".join(f"'{o}'" for o in slo.events_total)
        return f"outcome IN ({good})", f"outcome IN ({total})"
    col = "e2e_ms" if slo.latency == "e2e" else "processing_ms"
    return (f"outcome = 'succeeded' AND {col} <= {threshold_ms!r}",
            f"outcome = 'succeeded' AND {col} IS NOT NULL")


def _definition(slo: Slo) -> str:
    if slo.kind == "ratio":
        return f"good = {' + '.join(slo.events_good)}; total = {' + '.join(slo.events_total)} (attempts)"
    return (f"good = succeeded publishes with {slo.latency} latency <= {format_duration(slo.threshold_s)}; "
            f"total = succeeded publishes")


def compute_budget(events: EventSet, spec: SloSpec, profile: str = "prod", at: str | datetime | None = None,
                   synthetic: bool | None = None, grid_step_s: float | None = None) -> BudgetReport:
    """Budget, burn rates and alert states at ``at`` (default: the analysis time) and over the run."""
    prof = spec.profile(profile)
    windows = spec.windows_for(profile)
    at_t = parse_time(at) or events.as_of
    step = grid_step_s or prof.scrape_interval_s
    abandon = spec.abandon_after_s
    rel = attempt_stats_table(events, abandon, as_of=at_t)
    con = events.con
    out_at = outcome_at_sql(abandon)
    syn_cond = {None: "true", False: "NOT synthetic", True: "synthetic"}[synthetic]
    slos = []
    grid_start = grid_end = None
    first_outcome = con.execute(f"SELECT min({out_at}) FROM {rel.alias} WHERE {syn_cond}").fetchone()[0] \
        if at_t else None
    for slo in spec.slos:
        good_sql, total_sql = _good_total_sql(slo, (slo.threshold_s or 0) * 1000.0)
        period_s = spec.period_for(slo, profile)
        if at_t is None:
            empty = budget_status(0, 0, slo.objective)
            slos.append(SloBudget(slo.name, slo.kind, slo.objective, _definition(slo), format_duration(period_s),
                                  None, None, "no data", empty, (), ()))
            continue

        def count(start: datetime, end: datetime) -> tuple[int, int]:
            g, t = con.execute(
                f"SELECT count(*) FILTER (WHERE {good_sql}), count(*) FILTER (WHERE {total_sql}) FROM {rel.alias} "
                f"WHERE {syn_cond} AND {out_at} > ? AND {out_at} <= ?", [start, end]).fetchone()
            return int(g), int(t)

        p_start = at_t - timedelta(seconds=period_s)
        good, total = count(p_start, at_t)
        status = budget_status(total - good, total, slo.objective)
        covers = "no data"
        if first_outcome is not None and first_outcome <= at_t:
            covered = (at_t - max(first_outcome, p_start)).total_seconds()
            covers = f"{format_duration(max(covered, 0))} of {format_duration(period_s)}"
        alerts = []
        for w in windows:
            burns = []
            for length in (w.long_s, w.short_s):
                w_start = at_t - timedelta(seconds=length)
                g, t = count(w_start, at_t)
                burns.append(WindowBurn(format_duration(length), iso(w_start), iso(at_t),
                                        burn_rate(t - g, t, slo.objective)))
            firing = alert_fires(burns[0].burn, burns[1].burn, w.burn_rate)
            no_data = burns[0].burn.burn_rate is None or burns[1].burn.burn_rate is None
            alerts.append(AlertState(w.severity, burns[0], burns[1], w.burn_rate, w.budget_consumed, firing,
                                     "no data" if no_data else None))
        history, gs, ge = _history(con, rel.alias, syn_cond, out_at, good_sql, total_sql, slo, windows,
                                   first_outcome, at_t, step)
        grid_start, grid_end = gs or grid_start, ge or grid_end
        slos.append(SloBudget(slo.name, slo.kind, slo.objective, _definition(slo), format_duration(period_s),
                              iso(p_start), iso(at_t), covers, status, tuple(alerts), history))
    inputs = {"files": [s.path for s in events.sources], "events": events.events,
              "skipped_invalid_lines": events.skipped, "torn_final_lines": len(events.torn),
              "prefolded_files": events.prefolded_files}
    return BudgetReport(SCHEMA, profile, prof.time_compression, iso(at_t), format_duration(step),
                        iso(grid_start), iso(grid_end), {None: "included", False: "excluded", True: "only"}[synthetic],
                        inputs, tuple(slos))


def _history(con, table: str, syn_cond: str, out_at: str, good_sql: str, total_sql: str, slo: Slo,
             windows: Sequence[AlertWindow], first: datetime | None, at_t: datetime, step: float):
    """Replay each alert on a grid t_k = start + k·step; window (t_k - W, t_k]."""
    if first is None or first > at_t:
        return tuple(AlertHistory(w.severity, w.long, w.short, w.burn_rate, None, (), 0.0) for w in windows), None, None
    n = int(math.ceil((at_t - first).total_seconds() / step)) + 1
    if n > MAX_GRID_POINTS:
        raise ValueError(f"evaluating every {format_duration(step)} from {iso(first)} to {iso(at_t)} needs {n} "
                         f"points (more than {MAX_GRID_POINTS}); pass a larger grid step")
    grid_end = first + timedelta(seconds=(n - 1) * step)
    # Outcome at time x is counted from the first grid point t_k >= x on.
    rows = con.execute(
        f"SELECT CAST(ceil((epoch_us({out_at}) - epoch_us(?::TIMESTAMP)) / {step * 1e6!r}) AS BIGINT) AS k, "
        f"count(*) FILTER (WHERE {good_sql}), count(*) FILTER (WHERE {total_sql}) "
        f"FROM {table} WHERE {syn_cond} AND {out_at} IS NOT NULL AND {out_at} <= ? GROUP BY k",
        [first, at_t]).fetchall()
    good = np.zeros(n, dtype=np.int64)
    total = np.zeros(n, dtype=np.int64)
    for k, g, t in rows:
        k = min(max(int(k), 0), n - 1)
        good[k] += g
        total[k] += t
    cg, ct = np.cumsum(good), np.cumsum(total)

    def window_sums(length_s: float) -> tuple[np.ndarray, np.ndarray]:
        lag = max(1, int(round(length_s / step)))
        shifted_g = np.concatenate([np.zeros(lag, np.int64), cg[:-lag]]) if lag < n else np.zeros(n, np.int64)
        shifted_t = np.concatenate([np.zeros(lag, np.int64), ct[:-lag]]) if lag < n else np.zeros(n, np.int64)
        return cg - shifted_g, ct - shifted_t

    budget = 1.0 - slo.objective
    out = []
    for w in windows:
        lg, lt = window_sums(w.long_s)
        sg, st = window_sums(w.short_s)
        with np.errstate(divide="ignore", invalid="ignore"):
            long_burn = np.where(lt > 0, (lt - lg) / np.maximum(lt, 1) / budget, 0.0)
            short_burn = np.where(st > 0, (st - sg) / np.maximum(st, 1) / budget, 0.0)
        firing = (lt > 0) & (st > 0) & (long_burn > w.burn_rate) & (short_burn > w.burn_rate)
        spans = []
        k = 0
        while k < n:
            if firing[k]:
                j = k
                while j + 1 < n and firing[j + 1]:
                    j += 1
                start = first + timedelta(seconds=k * step)
                still = j == n - 1
                end = None if still else first + timedelta(seconds=(j + 1) * step)
                spans.append(FiringSpan(iso(start), iso(end), (j + 1 - k) * step))
                k = j + 1
            else:
                k += 1
        out.append(AlertHistory(w.severity, w.long, w.short, w.burn_rate, spans[0].start if spans else None,
                                tuple(spans), float(firing.sum() * step)))
    return tuple(out), first, grid_end
