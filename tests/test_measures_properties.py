"""Property tests: over random event logs, every caller of the definitions layer agrees with a
brute-force count, and the spec's ``events.total`` moves the success rate on every surface alike.

The oracle here is plain Python over the generated attempts (outcome time = the terminal event,
or last event + abandon_after once that is at or before the as-of time), counting each window
(t − W, t] by hand; the callers are ``obslab budget``'s ``compute_budget`` (state at the as-of time
and the replayed history), the dashboard's snapshot and burn chart (``toolkit.lab.web.snapshot``), and
``toolkit.measures.definitions`` itself.
"""

from __future__ import annotations

import json
import math
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_web_app import T0, _attempt
from toolkit.measures.budget import compute_budget
from toolkit.events import load_events
from toolkit.measures.definitions import (Outcomes, alert_series, budget_figures, burn_rate_series, evaluation_times,
                              success_definition)
from toolkit.measures.sli import SliQuery, compute_report
from toolkit.slo.spec import load_spec, parse_spec
from toolkit.lab.web import snapshot as snap

REPO = Path(__file__).resolve().parents[1]
SPEC = load_spec(REPO / "slo.yaml")
ABANDON_S = SPEC.abandon_after_s
OUTCOMES = ("succeeded", "failed", "cancelled", "in_flight_before_complete")

# Times on a coarse grid (starts on whole seconds, processing and the as-of time in 100 ms steps), so
# outcomes often land exactly on a window edge or on the as-of time, where edge conventions differ.
attempt_st = st.tuples(st.integers(0, 240).map(lambda s: s * 1000), st.sampled_from(OUTCOMES),
                       st.integers(1, 30).map(lambda k: k * 100))
log_st = st.lists(attempt_st, max_size=40)


@st.composite
def log_and_as_of(draw):
    """A log and an as-of time; often exactly when one of its attempts ends or becomes abandoned."""
    attempts = draw(log_st)
    ends = [s + 200 + p if o != "in_flight_before_complete" else s + 100 + int(ABANDON_S * 1000)
            for s, o, p in attempts]
    grid = st.integers(10, 9_000).map(lambda k: k * 100)
    as_of = draw(st.one_of(grid, st.sampled_from(ends)) if ends else grid)
    return attempts, max(as_of, 1000)


def _spec_counting_cancellations():
    raw = yaml.safe_load((REPO / "slo.yaml").read_text())
    raw["slos"][0]["events"]["total"] = ["succeeded", "failed", "abandoned", "cancelled"]
    return parse_spec(raw, source="slo-with-cancellations.yaml")


CANCEL_SPEC = _spec_counting_cancellations()


def _write_log(attempts, directory: Path) -> Path:
    events = []
    for i, (start_ms, outcome, processing_ms) in enumerate(attempts):
        events += _attempt(i, start_ms / 1000.0, outcome, processing_s=processing_ms / 1000.0)
    events.sort(key=lambda e: e["ts"])
    path = directory / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def _oracle_outcomes(attempts, as_of_s: float) -> list[tuple[float, str]]:
    """(outcome time in seconds after T0, outcome) as the attempts contract defines them, by hand."""
    out = []
    for start_ms, outcome, processing_ms in attempts:
        if outcome == "in_flight_before_complete":
            became = (start_ms + 100) / 1000.0 + ABANDON_S  # last event: the chunk at +100 ms
            if became <= as_of_s:
                out.append((became, "abandoned"))
            continue
        at = (start_ms + 200 + processing_ms) / 1000.0
        if at <= as_of_s:
            out.append((at, outcome))
    return out


def _oracle_burn(outcomes, t: float, window_s: float, good=("succeeded",),
                 total=("succeeded", "failed", "abandoned"), objective=0.99) -> float | None:
    # Integer milliseconds: the window edge compares exactly, as the engine's microseconds do.
    t_ms, w_ms = round(t * 1000), round(window_s * 1000)
    inside = [o for x, o in outcomes if t_ms - w_ms < round(x * 1000) <= t_ms and o in total]
    if not inside:
        return None
    bad = sum(1 for o in inside if o not in good)
    return bad / len(inside) / (1 - objective)


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def _abs(offset_s: float) -> float:
    return T0.timestamp() + offset_s


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=log_and_as_of())
def test_burn_rates_alerts_and_first_fire_agree_between_callers(case):
    attempts, as_of_ms = case
    as_of_s = as_of_ms / 1000.0
    as_of = T0 + timedelta(milliseconds=as_of_ms)
    naive = as_of.replace(tzinfo=None)
    windows = SPEC.windows_for("lab")
    slo = SPEC.slos[0]
    with tempfile.TemporaryDirectory() as d:
        path = _write_log(attempts, Path(d))
        oracle = _oracle_outcomes(attempts, as_of_s)
        # toolkit.measures.definitions directly, from the oracle's outcomes.
        direct = Outcomes.from_attempts(success_definition(SPEC), [(_abs(x), o, None, None) for x, o in oracle])
        report = compute_budget(load_events([path], until=naive), SPEC, "lab", at=naive)
        lab = snap.LabData([path], SPEC, "lab", as_of)
        try:
            snapshot = lab.snapshot(snap.window_for("lab", as_of, T0))
            chart = lab.series(snap.window_for("lab", as_of, T0))
        finally:
            lab.close()
    ratio = report.slos[0]
    by_window = {(w["severity"], w["long"], w["short"]): w for w in snapshot["burn"]["windows"]
                 if w["slo"] == slo.name}
    firsts = [x for x, o in oracle]
    grid = evaluation_times(_abs(min(firsts)), _abs(as_of_s), 1.0) if firsts else None
    for w, state, hist in zip(windows, ratio.alerts, ratio.history):
        want_long = _oracle_burn(oracle, as_of_s, w.long_s)
        want_short = _oracle_burn(oracle, as_of_s, w.short_s)
        want_firing = want_long is not None and want_short is not None and want_long > w.burn_rate \
            and want_short > w.burn_rate
        # The alert state at the as-of time: budget, dashboard and measures say what the oracle says.
        shown = by_window[(w.severity, w.long, w.short)]
        assert _close(state.long.burn.burn_rate, want_long) and _close(shown["long_burn"], want_long)
        assert _close(state.short.burn.burn_rate, want_short) and _close(shown["short_burn"], want_short)
        assert state.firing is want_firing and shown["firing"] is want_firing
        series = alert_series(direct, slo.objective, w, [_abs(as_of_s)])
        assert bool(series.firing[0]) is want_firing
        # First fire over the replay grid (every scrape interval, anchored at the as-of time).
        want_first = None
        if grid is not None:
            for t in grid:
                lb = _oracle_burn(oracle, t - T0.timestamp(), w.long_s)
                sb = _oracle_burn(oracle, t - T0.timestamp(), w.short_s)
                if lb is not None and sb is not None and lb > w.burn_rate and sb > w.burn_rate:
                    want_first = t
                    break
        got = alert_series(direct, slo.objective, w, grid).first_fire if grid is not None else None
        assert got == want_first
        want_iso = None if want_first is None else snap.iso(datetime.fromtimestamp(want_first, timezone.utc))
        assert hist.first_fired == want_iso and shown["first_fired"] == want_iso
    # The dashboard's burn chart: the page windows at every bucket end.
    page = windows[0]
    for t, long_b, short_b in zip(chart["t"], chart["burn"][f"{page.long} window"],
                                  chart["burn"][f"{page.short} window"]):
        assert _close(long_b, _oracle_burn(oracle, t - T0.timestamp(), page.long_s))
        assert _close(short_b, _oracle_burn(oracle, t - T0.timestamp(), page.short_s))
        direct_b = burn_rate_series(direct, slo.objective, [t], page.long_s).values()[0]
        assert _close(direct_b, long_b)
    # The budget: spent over the covered part of the 12 h period, since the first attempt started.
    total = [o for _, o in oracle if o in slo.events_total]
    if attempts and total:
        covered = as_of_s - min(a[0] for a in attempts) / 1000.0
        bad = sum(1 for o in total if o not in slo.events_good)
        want = budget_figures(slo.name, slo.objective, SPEC.period_for(slo, "lab"), bad, len(total), covered)
        assert ratio.budget.spent == pytest.approx(want.spent, rel=1e-9)
        budget_tile = next(b for b in snapshot["budgets"] if b["slo"] == slo.name)
        assert budget_tile["spent"] == ratio.budget.spent and budget_tile["remaining"] == ratio.budget.remaining


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=log_and_as_of())
def test_counting_cancellations_in_the_spec_moves_every_surface_alike(case):
    attempts, as_of_ms = case
    as_of_s = as_of_ms / 1000.0
    as_of = T0 + timedelta(milliseconds=as_of_ms)
    naive = as_of.replace(tzinfo=None)
    oracle = _oracle_outcomes(attempts, as_of_s)
    with tempfile.TemporaryDirectory() as d:
        path = _write_log(attempts, Path(d))
        for spec, total_outcomes in ((SPEC, ("succeeded", "failed", "abandoned")),
                                     (CANCEL_SPEC, ("succeeded", "failed", "abandoned", "cancelled"))):
            good = sum(1 for _, o in oracle if o == "succeeded")
            total = sum(1 for _, o in oracle if o in total_outcomes)
            want = None if total == 0 else good / total
            events = load_events([path], until=naive)
            # Outcomes at exactly the as-of time count as of it: (since, until] on every surface.
            sli = compute_report(events, spec, SliQuery(until=naive, window_s=None)).totals.figure(
                "publish_success_rate")
            budget = compute_budget(load_events([path], until=naive), spec, "lab", at=naive).slos[0]
            lab = snap.LabData([path], spec, "lab", as_of)
            try:
                tile = lab.snapshot(snap.window_for("lab", as_of, T0))["success"]
            finally:
                lab.close()
            assert (sli.numerator, sli.denominator) == (good, total)
            assert (budget.good, budget.total) == (good, total)
            assert (tile["good"], tile["total"]) == (good, total)
            assert sli.value == budget.sli == tile["value"] == want
