"""The definitions layer: every SLO figure has exactly one implementation, here.

Every surface (``obslab sli``/``budget``/``top``, the web dashboard, ``compare``/``judge``
defaults, ``rollout`` and the drills) asks this module, so the same data and the same
as-of time give the same number everywhere.

* **Good and total** of an SLI come from the SLO spec (``slo.yaml``) through
  ``sli_definition(slo)``: one ``SliDefinition`` that renders as SQL over attempt rows
  (``.sql()``) and as a pure predicate (``.classify()``). Edit ``events.total`` in the spec
  and every surface follows.
* **Outcomes**: an SLI's outcome times (integer microseconds since the epoch, ascending)
  with a good flag and an in-total flag — the only input the windowed math reads.
  ``load_outcomes`` builds it from an ``EventSet``; ``Outcomes.from_records`` from anything.
* **Windows** are half-open on the left: an outcome at time ``x`` counts in the window
  of length ``W`` ending at ``t`` when ``t − W < x <= t``, written ``(t − W, t]``
  (``WINDOW_EDGES``). "As of t" thus includes what happened at t, and consecutive windows
  tile time without overlap — the convention of Prometheus 3 range selectors.
* **Burn rate** = error rate in a window / (1 − objective) (``burn_rate``,
  ``burn_rate_series``); an **alert** fires when its long and its short window both burn
  strictly faster than its factor (``alert_fires``, ``alert_series``, ``alert_state``);
  its **first-fire time** is the first evaluation time at which it fires (``first_fire``).
* **Alert timing** (``alert_timing``): which windows, period and evaluation step a profile runs at
  a scenario speed. A drill at ``--speed s`` compresses the profile ``s`` times more
  (``toolkit.slo.scenario.at_speed``, the same derivation the lab's Prometheus rules are generated
  from), so every surface asks here with the speed as a parameter and none recomputes a window.
* **Error budget** (``budget_figures``, ``period_budget``): two named figures over one SLO
  period. *spent* = bad events so far ÷ the budget of the whole period, where the whole
  period's budget is (1 − objective) × the events the period will hold at the traffic
  rate seen so far; *remaining* = 1 − spent. With a full period of data this is the
  classic ``(bad/total)/(1 − objective)``; with less, it does not extrapolate the error
  ratio of a few minutes over the whole period.

Times at the API are Unix seconds (float) or datetimes (naive = UTC); inside they are
integer microseconds, so window edges compare exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from contract.durations import format_duration
from toolkit.slo.scenario import at_speed
from toolkit.slo.spec import AlertWindow, Slo, SloSpec

if TYPE_CHECKING:  # pragma: no cover
    from toolkit.events import EventSet

__all__ = [
    "WINDOW_EDGES",
    "SliDefinition",
    "sli_definition",
    "good_total_sql",
    "success_definition",
    "DEFAULT_SUCCESS",
    "sli_ratio",
    "Outcomes",
    "load_outcomes",
    "load_all_outcomes",
    "synthetic_sql",
    "to_us",
    "window_counts",
    "BurnRate",
    "burn_rate",
    "BurnSeries",
    "burn_rate_series",
    "alert_fires",
    "AlertSeries",
    "FiringSpan",
    "alert_series",
    "alert_state",
    "first_fire",
    "first_page",
    "evaluation_times",
    "AlertTiming",
    "alert_timing",
    "BudgetFigures",
    "budget_figures",
    "period_budget",
    "format_percent",
]

WINDOW_EDGES = "(t − W, t]"
_US = 1_000_000


# -- good and total, from the spec -------------------------------------------------------

@dataclass(frozen=True)
class SliDefinition:
    """What one SLO counts as good and as total, over per-attempt rows.

    Ratio SLOs: outcomes listed in the spec's ``events.good`` / ``events.total``.
    Latency SLOs: good = succeeded with latency <= threshold; total = succeeded with a latency.
    """

    slo: str
    kind: str  # "ratio" | "latency"
    objective: float
    good_outcomes: tuple[str, ...]
    total_outcomes: tuple[str, ...]
    latency_column: str | None = None  # "processing_ms" | "e2e_ms"
    threshold_ms: float | None = None

    def sql(self) -> tuple[str, str]:
        """SQL conditions over attempt rows (columns outcome, processing_ms, e2e_ms): (good, total)."""
        if self.kind == "ratio":
            good = ", ".join(f"'{o}'" for o in self.good_outcomes)
            total = ", ".join(f"'{o}'" for o in self.total_outcomes)
            return f"outcome IN ({good})", f"outcome IN ({total})"
        col = self.latency_column
        return (f"outcome = 'succeeded' AND {col} <= {self.threshold_ms!r}",
                f"outcome = 'succeeded' AND {col} IS NOT NULL")

    def classify(self, outcome: str | None, processing_ms: float | None = None,
                 e2e_ms: float | None = None) -> tuple[bool, bool]:
        """(good, in total) of one attempt — the same rule as ``sql()``."""
        if self.kind == "ratio":
            return outcome in self.good_outcomes, outcome in self.total_outcomes
        latency = processing_ms if self.latency_column == "processing_ms" else e2e_ms
        counted = outcome == "succeeded" and latency is not None and not _isnan(latency)
        return counted and latency <= self.threshold_ms, counted

    def from_counts(self, counts: Mapping[str, int]) -> tuple[int, int]:
        """(good, total) of a ratio SLO from attempt counts by outcome — the same rule as ``sql()``."""
        if self.kind != "ratio":
            raise ValueError(f"{self.slo}: a latency SLO is not counted by outcome alone")
        return (sum(int(counts.get(o, 0)) for o in self.good_outcomes),
                sum(int(counts.get(o, 0)) for o in self.total_outcomes))

    def text(self) -> str:
        """The definition in words, for every surface's hover text and report."""
        if self.kind == "ratio":
            return (f"good = {' + '.join(self.good_outcomes)}; total = {' + '.join(self.total_outcomes)} "
                    f"(attempts)")
        kind = "e2e" if self.latency_column == "e2e_ms" else "processing"
        return (f"good = succeeded publishes with {kind} latency <= {format_duration(self.threshold_ms / 1000.0)}; "
                f"total = succeeded publishes")

    def ratio_text(self) -> str:
        """``succeeded / (succeeded + failed + abandoned)`` as the spec says it."""
        if self.kind == "ratio":
            return f"{' + '.join(self.good_outcomes)} / ({' + '.join(self.total_outcomes)})"
        return self.text()


def _isnan(x: float) -> bool:
    return isinstance(x, float) and math.isnan(x)


def sli_definition(slo: Slo) -> SliDefinition:
    """The one definition of an SLO's good and total, read from the spec."""
    if slo.kind == "ratio":
        return SliDefinition(slo.name, "ratio", slo.objective, tuple(slo.events_good), tuple(slo.events_total))
    col = "e2e_ms" if slo.latency == "e2e" else "processing_ms"
    return SliDefinition(slo.name, "latency", slo.objective, ("succeeded",), ("succeeded",), col,
                         (slo.threshold_s or 0.0) * 1000.0)


def success_definition(spec: SloSpec) -> SliDefinition:
    """The spec's ratio SLO (publish success): the first SLO of kind ratio."""
    for slo in spec.slos:
        if slo.kind == "ratio":
            return sli_definition(slo)
    raise ValueError(f"{spec.source}: no ratio SLO to define the success rate")


def good_total_sql(slo: Slo) -> tuple[str, str]:
    """SQL conditions for good and for counted-in-total (shorthand for ``sli_definition(slo).sql()``)."""
    return sli_definition(slo).sql()


# The shipped slo.yaml's publish-success definition, for pure callers that were given no spec.
DEFAULT_SUCCESS = SliDefinition("publish-success", "ratio", 0.99, ("succeeded",), ("succeeded", "failed", "abandoned"))


def sli_ratio(good: float, total: float) -> float | None:
    """good / total, or None ("no data") when nothing was counted."""
    return None if not total else good / total


# -- outcomes ---------------------------------------------------------------------------

def to_us(t: float | datetime) -> int:
    """Unix microseconds of a time (Unix seconds, or a datetime; naive = UTC)."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        delta = t - datetime(1970, 1, 1, tzinfo=timezone.utc)
        return (delta.days * 86400 + delta.seconds) * _US + delta.microseconds
    return int(round(float(t) * _US))


@dataclass(frozen=True, eq=False)
class Outcomes:
    """One SLI's attempts with an outcome: when (µs, ascending), good?, counted in total?

    ``traffic_start_us`` is when the traffic behind them began (the earliest attempt start),
    which the budget uses to know how much of the period the data covers.
    """

    times_us: np.ndarray  # int64, ascending
    good: np.ndarray  # bool
    counted: np.ndarray  # bool
    traffic_start_us: int | None = None

    @classmethod
    def from_records(cls, records: Iterable[tuple[float | datetime, bool, bool]],
                     traffic_start: float | datetime | None = None) -> "Outcomes":
        """From (outcome time, good, counted in total) triples, in any order."""
        rows = sorted((to_us(t), bool(g), bool(c)) for t, g, c in records)
        times = np.array([r[0] for r in rows], dtype=np.int64)
        good = np.array([r[1] for r in rows], dtype=bool)
        counted = np.array([r[2] for r in rows], dtype=bool)
        if np.any(good & ~counted):
            raise ValueError("an outcome counted as good must also be counted in the total")
        start = to_us(traffic_start) if traffic_start is not None else (int(times[0]) if len(times) else None)
        return cls(times, good, counted, start)

    @classmethod
    def from_attempts(cls, definition: SliDefinition,
                      attempts: Iterable[tuple[float | datetime | None, str | None, float | None, float | None]],
                      traffic_start: float | datetime | None = None) -> "Outcomes":
        """From (outcome time, outcome, processing_ms, e2e_ms) per attempt; attempts with no outcome time skip."""
        records = []
        for at, outcome, processing_ms, e2e_ms in attempts:
            if at is None:
                continue
            good, counted = definition.classify(outcome, processing_ms, e2e_ms)
            if counted:
                records.append((at, good, counted))
        return cls.from_records(records, traffic_start)

    def __len__(self) -> int:
        return int(self.counted.sum())

    def counts_between(self, start: float | datetime, end: float | datetime) -> tuple[int, int]:
        """(good, total) of outcomes in (start, end]."""
        end_us = to_us(end)
        g, t = _window_counts_us(self, np.array([end_us], dtype=np.int64), end_us - to_us(start))
        return int(g[0]), int(t[0])


def load_outcomes(events: "EventSet", spec: SloSpec, slo: Slo, *, as_of: datetime | None = None,
                  synthetic: bool | None = None, until: datetime | None = None) -> Outcomes:
    """Read one SLI's outcomes from events: attempts by outcome time (``toolkit.events.attempts``).

    ``as_of`` (default ``events.as_of``) decides abandoned vs in flight; ``until`` drops
    outcomes after it; ``synthetic``: None = included, False = excluded, True = only.
    """
    return load_all_outcomes(events, spec, as_of=as_of, synthetic=synthetic, until=until, slos=(slo,))[slo.name]


def load_all_outcomes(events: "EventSet", spec: SloSpec, *, as_of: datetime | None = None,
                      synthetic: bool | None = None, until: datetime | None = None,
                      slos: Sequence[Slo] | None = None) -> dict[str, Outcomes]:
    """``load_outcomes`` for every SLO of the spec (or ``slos``), building the attempts table once."""
    from toolkit.events.attempts import attempt_stats_table

    as_of = as_of or events.as_of
    rel = attempt_stats_table(events, spec.abandon_after_s, as_of=as_of, name="_measures_attempts")
    return {slo.name: _outcomes_of(events, spec, slo, rel.alias, synthetic, until)
            for slo in (slos if slos is not None else spec.slos)}


def _outcomes_of(events: "EventSet", spec: SloSpec, slo: Slo, table: str, synthetic: bool | None,
                 until: datetime | None) -> Outcomes:
    from toolkit.events.attempts import outcome_at_sql

    good_sql, total_sql = sli_definition(slo).sql()
    at = outcome_at_sql(spec.abandon_after_s)
    syn = synthetic_sql(synthetic)
    cut = f"AND {at} <= ?" if until is not None else ""
    params = [until] if until is not None else []
    rows = events.con.execute(
        f"SELECT epoch_us({at}), {good_sql}, {total_sql} FROM {table} "
        f"WHERE {syn} AND {at} IS NOT NULL AND ({total_sql}) {cut} ORDER BY 1", params).fetchall()
    start = events.con.execute(
        f"SELECT epoch_us(min(coalesce(started_at, last_event_at))) FROM {table} WHERE {syn}").fetchone()[0]
    times = np.array([r[0] for r in rows], dtype=np.int64)
    good = np.array([bool(r[1]) for r in rows], dtype=bool)
    counted = np.ones(len(rows), dtype=bool)
    if start is None and len(times):
        start = int(times[0])
    return Outcomes(times, good, counted, None if start is None else int(start))


def synthetic_sql(synthetic: bool | None) -> str:
    """SQL condition for synthetic traffic: None = included, False = excluded, True = only."""
    return {None: "true", False: "NOT synthetic", True: "synthetic"}[synthetic]


def window_counts(outcomes: Outcomes, ends: Sequence[float] | np.ndarray, length_s: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(good, total) in the window (t − length, t] for every end t (Unix seconds)."""
    ends_us = np.rint(np.asarray(ends, dtype=float) * _US).astype(np.int64)
    return _window_counts_us(outcomes, ends_us, int(round(length_s * _US)))


def _window_counts_us(outcomes: Outcomes, ends_us: np.ndarray, length_us: int) -> tuple[np.ndarray, np.ndarray]:
    times = outcomes.times_us[outcomes.counted]
    good = outcomes.good[outcomes.counted]
    cum_good = np.concatenate([[0], np.cumsum(good, dtype=np.int64)])
    upper = np.searchsorted(times, ends_us, side="right")  # outcomes <= t
    lower = np.searchsorted(times, ends_us - length_us, side="right")  # outcomes <= t - W
    return cum_good[upper] - cum_good[lower], (upper - lower).astype(np.int64)


# -- burn rate and alerts ---------------------------------------------------------------

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


@dataclass(frozen=True, eq=False)
class BurnSeries:
    """Burn rate over (t − window, t] at each evaluation time t; NaN where the window had no data."""

    window_s: float
    ends: np.ndarray  # Unix seconds
    bad: np.ndarray
    total: np.ndarray
    burn: np.ndarray  # NaN = no data

    def at(self, i: int) -> BurnRate:
        total, bad = int(self.total[i]), int(self.bad[i])
        b = float(self.burn[i])
        return BurnRate(bad, total, None if total == 0 else bad / total, None if math.isnan(b) else b)

    def values(self) -> list[float | None]:
        """Burn rates as a list, None for no data (JSON-friendly)."""
        return [None if math.isnan(b) else float(b) for b in self.burn]


def burn_rate_series(outcomes: Outcomes, objective: float, ends: Sequence[float] | np.ndarray,
                     window_s: float) -> BurnSeries:
    """The burn rate of one window length at every end time (Unix seconds), edges (t − W, t]."""
    if not 0 < objective < 1:
        raise ValueError(f"objective must be in (0, 1), got {objective!r}")
    ends = np.asarray(ends, dtype=float)
    good, total = window_counts(outcomes, ends, window_s)
    bad = total - good
    with np.errstate(divide="ignore", invalid="ignore"):
        burn = np.where(total > 0, bad / np.maximum(total, 1) / (1.0 - objective), np.nan)
    return BurnSeries(float(window_s), ends, bad, total, burn)


def alert_fires(long: BurnRate, short: BurnRate, factor: float) -> bool:
    """Both windows burn strictly faster than ``factor`` (as the generated Prometheus rules test it);
    a window with no data never fires."""
    if long.burn_rate is None or short.burn_rate is None:
        return False
    return long.burn_rate > factor and short.burn_rate > factor


@dataclass(frozen=True)
class FiringSpan:
    start: float  # Unix seconds: first evaluation at which it fired
    end: float | None  # first evaluation at which it no longer fired; None = still firing at the last
    duration_s: float


@dataclass(frozen=True, eq=False)
class AlertSeries:
    """One multi-window alert evaluated at each time t: both burn series and where it fired."""

    window: AlertWindow  # profile-adjusted
    long: BurnSeries
    short: BurnSeries
    firing: np.ndarray  # bool

    @property
    def ends(self) -> np.ndarray:
        return self.long.ends

    @property
    def first_fire(self) -> float | None:
        """The first evaluation time at which the alert fired (Unix seconds), or None."""
        hits = np.flatnonzero(self.firing)
        return float(self.ends[hits[0]]) if len(hits) else None

    def spans(self) -> tuple[FiringSpan, ...]:
        """Runs of consecutive firing evaluations; a span ends at the first evaluation that did not fire.

        A span still firing at the last evaluation has ``end=None`` and lasts until that evaluation.
        """
        edges = np.diff(np.concatenate([[0], self.firing.astype(np.int8), [0]]))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        n, ends, out = len(self.firing), self.ends, []
        for k, j in zip(starts.tolist(), stops.tolist()):
            end = float(ends[j]) if j < n else None
            out.append(FiringSpan(float(ends[k]), end, (end if end is not None else float(ends[j - 1])) - float(ends[k])))
        return tuple(out)

    def firing_s(self) -> float:
        """Time spent firing: the summed span durations."""
        return float(sum(s.duration_s for s in self.spans()))


def alert_series(outcomes: Outcomes, objective: float, window: AlertWindow,
                 ends: Sequence[float] | np.ndarray) -> AlertSeries:
    """Evaluate one multi-window alert at every end time (Unix seconds)."""
    long = burn_rate_series(outcomes, objective, ends, window.long_s)
    short = burn_rate_series(outcomes, objective, ends, window.short_s)
    with np.errstate(invalid="ignore"):
        firing = (long.total > 0) & (short.total > 0) & (long.burn > window.burn_rate) & \
                 (short.burn > window.burn_rate)
    return AlertSeries(window, long, short, np.asarray(firing, dtype=bool))


def alert_state(outcomes: Outcomes, objective: float, window: AlertWindow, at: float | datetime
                ) -> tuple[BurnRate, BurnRate, bool]:
    """(long burn, short burn, firing) of one alert at one time."""
    t = to_us(at) / _US
    s = alert_series(outcomes, objective, window, [t])
    return s.long.at(0), s.short.at(0), bool(s.firing[0])


def first_fire(outcomes: Outcomes, objective: float, window: AlertWindow,
               ends: Sequence[float] | np.ndarray) -> float | None:
    """The first of ``ends`` at which the alert fires (Unix seconds), or None."""
    return alert_series(outcomes, objective, window, ends).first_fire


def first_page(outcomes: Outcomes, objective: float, windows: Sequence[AlertWindow],
               ends: Sequence[float] | np.ndarray, severity: str = "page") -> tuple[float, AlertWindow] | None:
    """The earliest first-fire time among the alerts of one severity, and which alert; None if none fired.

    ``windows`` are profile-adjusted (``spec.windows_for(profile)``); a tie goes to the first listed.
    """
    best: tuple[float, AlertWindow] | None = None
    for w in windows:
        if w.severity != severity:
            continue
        t = first_fire(outcomes, objective, w, ends)
        if t is not None and (best is None or t < best[0]):
            best = (t, w)
    return best


def evaluation_times(start: float | datetime, end: float | datetime, step_s: float,
                     max_points: int = 500_000) -> np.ndarray:
    """Rule evaluation times every ``step_s``, anchored at ``end`` (the as-of time is always one),
    going back no earlier than ``start``; ascending Unix seconds."""
    if step_s <= 0:
        raise ValueError(f"evaluation step must be longer than zero, got {step_s!r}")
    s_us, e_us, step_us = to_us(start), to_us(end), max(1, int(round(step_s * _US)))
    if e_us < s_us:
        return np.array([], dtype=float)
    n = (e_us - s_us) // step_us + 1
    if n > max_points:
        raise ValueError(f"evaluating every {format_duration(step_s)} over {format_duration((e_us - s_us) / _US)} "
                         f"needs {n} points (more than {max_points}); pass a larger step")
    return (e_us - np.arange(n - 1, -1, -1, dtype=np.int64) * step_us) / _US


# -- alert timing: a profile at a scenario speed ----------------------------------------

@dataclass(frozen=True)
class AlertTiming:
    """The windows a surface evaluates a profile's alerts over, at a scenario speed.

    ``windows`` are what is measured (wall seconds); ``scenario_windows`` are the same alerts in
    scenario time (the profile as the spec writes it): at speed 10 the lab profile's 1m/5s page is
    measured over 6s/500ms of wall time. At speed 1 the two are the same.
    """

    profile: str
    speed: float
    time_compression: float  # the profile's compression at this speed (the spec's × speed)
    step_s: float  # rule evaluation / scrape interval, wall seconds
    windows: tuple[AlertWindow, ...]
    scenario_windows: tuple[AlertWindow, ...]
    spec: SloSpec  # the spec with the profile paced to ``speed``: what the Prometheus rules are generated from

    def period_s(self, slo: Slo) -> float:
        """The SLO period under the profile at this speed, wall seconds."""
        return self.spec.period_for(slo, self.profile)

    def scenario_period_s(self, slo: Slo) -> float:
        """The SLO period under the profile as the spec writes it: the period in scenario time."""
        return at_speed(self.spec, 1.0, self.profile).period_for(slo, self.profile)

    def window_text(self, i: int) -> str:
        """``1m/5s`` at speed 1; ``1m/5s of scenario time (6s/500ms wall at ×10)`` faster."""
        w, sw = self.windows[i], self.scenario_windows[i]
        if self.speed == 1:
            return f"{w.long}/{w.short}"
        return f"{sw.long}/{sw.short} of scenario time ({w.long}/{w.short} wall at ×{self.speed:g})"

    def describe(self) -> str:
        """What time the figures are in, for every surface's header."""
        if self.speed == 1:
            return f"{self.profile} profile (time ÷ {self.time_compression:g})"
        return (f"{self.profile} profile in scenario time at ×{self.speed:g} (time ÷ {self.time_compression:g}: "
                f"a drill runs {self.speed:g}× faster, so every window and the period are {self.speed:g}× shorter "
                f"in wall time)")


def alert_timing(spec: SloSpec, profile: str, speed: float | None = None) -> AlertTiming:
    """A profile's alert windows, period and evaluation step at scenario ``speed`` (None: the speed the
    spec's profile already runs at, 1 for a spec as loaded)."""
    paced = spec if speed is None else at_speed(spec, speed, profile)
    prof = paced.profile(profile)
    written = at_speed(paced, 1.0, profile)
    return AlertTiming(profile, prof.speed, prof.time_compression, prof.scrape_interval_s,
                       paced.windows_for(profile), written.windows_for(profile), paced)


# -- error budget -----------------------------------------------------------------------

@dataclass(frozen=True)
class BudgetFigures:
    """An SLO period's error budget: how much is spent and how much remains, with what it rests on."""

    slo: str
    objective: float
    period_s: float
    period: str  # e.g. "12h"
    bad: int
    total: int
    covered_s: float  # how much of the period the data covers (since traffic began, at most the period)
    expected_total: float | None  # events the whole period holds at the traffic rate seen so far
    allowed_bad: float | None  # (1 - objective) × expected_total: the whole period's budget, in events
    error_rate: float | None  # bad / total over the covered part
    spent: float | None  # bad / allowed_bad: share of the whole period's budget used so far
    remaining: float | None  # 1 - spent (negative when overspent)

    def describe(self) -> str:
        """``spent 0.86 % of the 12h period's budget; 99.14 % remaining``."""
        if self.spent is None:
            return f"no data in the {self.period} period: nothing spent of its budget"
        return (f"spent {format_percent(self.spent)} of the {self.period} period's budget; "
                f"{format_percent(self.remaining)} remaining")


def format_percent(x: float | None, digits: int = 2) -> str:
    """A share as a percentage, the one way every surface prints it: ``0.86 %``."""
    return "–" if x is None else f"{100.0 * x:.{digits}f} %"


def budget_figures(slo: str, objective: float, period_s: float, bad: int, total: int, covered_s: float
                   ) -> BudgetFigures:
    """Spent and remaining of one SLO period's budget (pure).

    The whole period's budget is (1 − objective) × the events the period holds; with only
    ``covered_s`` of it seen, the period's events are estimated at the rate seen so far:
    ``total × period / covered``. So spent = (bad / total) / (1 − objective) × covered / period,
    i.e. the average burn rate so far × the share of the period elapsed.
    """
    if not 0 < objective < 1:
        raise ValueError(f"objective must be in (0, 1), got {objective!r}")
    if bad < 0 or total < 0 or bad > total:
        raise ValueError(f"need 0 <= bad <= total, got bad={bad!r}, total={total!r}")
    if period_s <= 0:
        raise ValueError(f"period must be longer than zero, got {period_s!r}")
    covered = min(max(float(covered_s), 0.0), float(period_s))
    label = format_duration(period_s)
    if total == 0 or covered == 0:
        return BudgetFigures(slo, objective, period_s, label, int(bad), int(total), covered, None, None, None,
                             None, None)
    expected = total * period_s / covered
    allowed = (1.0 - objective) * expected
    spent = bad / allowed
    return BudgetFigures(slo, objective, period_s, label, int(bad), int(total), covered, expected, allowed,
                         bad / total, spent, 1.0 - spent)


def period_budget(outcomes: Outcomes, slo: str, objective: float, period_s: float, at: float | datetime
                  ) -> BudgetFigures:
    """The budget of the SLO period (at − period, at]: outcomes in it, and how much of it traffic covers."""
    at_us = to_us(at)
    start_us = at_us - int(round(period_s * _US))
    good, total = outcomes.counts_between(start_us / _US, at_us / _US)
    covered_s = 0.0
    if outcomes.traffic_start_us is not None:
        covered_s = (at_us - max(start_us, outcomes.traffic_start_us)) / _US
    return budget_figures(slo, objective, period_s, total - good, total, covered_s)
