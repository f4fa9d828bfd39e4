"""The definitions layer by hand: window edges, alert spans, the replay grid, the budget, good/total."""

from __future__ import annotations

import itertools
from pathlib import Path

import duckdb
import pytest

from toolkit.measures.definitions import (WINDOW_EDGES, Outcomes, alert_series, budget_figures, evaluation_times, first_page,
                              sli_definition, window_counts)
from toolkit.slo.spec import AlertWindow, load_spec

SPEC = load_spec(Path(__file__).resolve().parents[1] / "slo.yaml")


def test_window_is_open_on_the_left_and_closed_on_the_right():
    assert WINDOW_EDGES == "(t − W, t]"
    o = Outcomes.from_records([(10, True, True), (11, False, True), (12, False, True), (20, True, True)])
    good, total = window_counts(o, [10, 11, 12, 20, 21, 22], 10)
    # (t-10, t]: at 20 the outcome at 10 is out and the one at 20 in; at 22 only the one at 20 is left.
    assert total.tolist() == [1, 2, 3, 3, 2, 1] and good.tolist() == [1, 1, 1, 1, 1, 1]


def test_alert_spans_first_fire_and_first_page():
    o = Outcomes.from_records([(10, False, True), (11, False, True), (20, True, True), (30, False, True)])
    w = AlertWindow("page", 5, 2, 0.02, 14.4)
    s = alert_series(o, 0.99, w, evaluation_times(0, 31, 1))
    # Fires at 10 (both windows hold only failures), stops at 13 (the short window (11, 13] is empty:
    # no data never fires), fires again at 30 and is still firing at the last evaluation (31).
    assert s.first_fire == 10.0
    assert [(sp.start, sp.end, sp.duration_s) for sp in s.spans()] == [(10.0, 13.0, 3.0), (30.0, None, 1.0)]
    ticket = AlertWindow("ticket", 5, 2, 0.02, 14.4)
    assert first_page(o, 0.99, [ticket, w], evaluation_times(0, 31, 1)) == (10.0, w)
    assert first_page(o, 0.99, [ticket], evaluation_times(0, 31, 1)) is None


def test_replay_grid_is_anchored_at_the_as_of_time():
    grid = evaluation_times(0.5, 10, 2)
    assert grid.tolist() == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert evaluation_times(10, 10, 1).tolist() == [10.0]
    assert evaluation_times(11, 10, 1).tolist() == []
    with pytest.raises(ValueError, match="longer than zero"):
        evaluation_times(0, 10, 0)
    with pytest.raises(ValueError, match="larger step"):
        evaluation_times(0, 1e6, 1, max_points=1000)


def test_budget_spent_is_a_share_of_the_whole_period():
    full = budget_figures("s", 0.99, 43200, 5, 1000, 43200)
    assert full.spent == pytest.approx(0.5) and full.remaining == pytest.approx(0.5)
    # 18 s of a 12 h period at 20 % errors: burn rate 20 × 18/43200 of the period = 0.83 % spent.
    incident = budget_figures("s", 0.99, 43200, 9, 45, 18)
    assert incident.spent == pytest.approx(20 * 18 / 43200)
    assert incident.describe() == "spent 0.83 % of the 12h period's budget; 99.17 % remaining"
    # Coverage beyond the period counts as the period.
    assert budget_figures("s", 0.99, 100, 1, 100, 500).spent == pytest.approx(1.0)
    none = budget_figures("s", 0.99, 43200, 0, 0, 0)
    assert none.spent is None and none.describe().startswith("no data")
    with pytest.raises(ValueError):
        budget_figures("s", 0.99, 43200, 6, 5, 10)


@pytest.mark.parametrize("slo", SPEC.slos, ids=lambda s: s.name)
def test_sql_and_python_forms_of_a_definition_agree(slo):
    d = sli_definition(slo)
    good_sql, total_sql = d.sql()
    rows = list(itertools.product(("succeeded", "failed", "cancelled", "abandoned", "in_flight"),
                                  (None, 10.0, 1000.0, 1000.5, 5000.0), (None, 900.0, 2000.0)))
    con = duckdb.connect()
    con.execute("CREATE TABLE a (outcome VARCHAR, processing_ms DOUBLE, e2e_ms DOUBLE)")
    con.executemany("INSERT INTO a VALUES (?, ?, ?)", rows)
    got = con.execute(f"SELECT outcome, processing_ms, e2e_ms, coalesce({good_sql}, false), "
                      f"coalesce({total_sql}, false) FROM a").fetchall()
    for outcome, processing, e2e, good, counted in got:
        assert d.classify(outcome, processing, e2e) == (good, counted), (outcome, processing, e2e)
