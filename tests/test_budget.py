"""Budgets and burn rates: pure math against hand-computed values, then from events."""

from pathlib import Path

import pytest

from toolkit.measures.budget import alert_fires, burn_rate, compute_budget
from toolkit.measures.definitions import budget_figures
from toolkit.events import load_events
from toolkit.slo.spec import load_spec
from toolkit.events.synth import Effect, SynthConfig, generate, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden.jsonl"
SPEC = load_spec(ROOT / "slo.yaml")


def test_burn_rate_by_hand():
    # 2 bad of 100 at a 99 % objective: error rate 2 %, budget 1 % → burning twice as fast as allowed.
    b = burn_rate(2, 100, 0.99)
    assert b.error_rate == 0.02 and b.burn_rate == pytest.approx(2.0)
    # 14.4× is the workbook's 1h page: 14.4 % errors at 99 %.
    assert burn_rate(144, 1000, 0.99).burn_rate == pytest.approx(14.4)
    assert burn_rate(0, 50, 0.999).burn_rate == 0.0


def test_zero_traffic_is_no_data_not_nan():
    b = burn_rate(0, 0, 0.99)
    assert b.error_rate is None and b.burn_rate is None
    s = budget_figures("x", 0.99, 43200, 0, 0, 600)
    assert s.remaining is None and s.spent is None and s.allowed_bad is None
    assert not alert_fires(b, burn_rate(5, 5, 0.99), 1.0)


def test_budget_figures_by_hand():
    # A whole period of data, 1000 events at 99 %: 10 bad allowed; 5 happened → half the budget left.
    s = budget_figures("x", 0.99, 43200, 5, 1000, 43200)
    assert s.allowed_bad == pytest.approx(10.0) and s.period == "12h"
    assert s.spent == pytest.approx(0.5) and s.remaining == pytest.approx(0.5)
    # Overspent: 30 bad of 10 allowed → remaining -200 %.
    assert budget_figures("x", 0.99, 43200, 30, 1000, 43200).remaining == pytest.approx(-2.0)
    # Ten minutes of a 12 h period seen, 1000 events: the period will hold 72 000, so 720 bad are
    # allowed; 30 bad spent 30/720 of it — not the 300 % the error ratio of ten minutes suggests.
    s = budget_figures("x", 0.99, 43200, 30, 1000, 600)
    assert s.expected_total == pytest.approx(72000) and s.allowed_bad == pytest.approx(720)
    assert s.spent == pytest.approx(30 / 720) and s.remaining == pytest.approx(1 - 30 / 720)
    assert s.describe() == "spent 4.17 % of the 12h period's budget; 95.83 % remaining"


@pytest.mark.parametrize("long, short, fires", [
    ((15, 100), (20, 100), True),   # both above 14.4×
    ((15, 100), (10, 100), False),  # short window recovered: resets fast
    ((10, 100), (20, 100), False),  # long window not yet
    ((144, 1000), (144, 1000), False),  # exactly 14.4×: the rule is strictly greater
])
def test_alert_condition(long, short, fires):
    assert alert_fires(burn_rate(*long, 0.99), burn_rate(*short, 0.99), 14.4) is fires


def test_bad_inputs_rejected():
    with pytest.raises(ValueError):
        burn_rate(5, 3, 0.99)
    with pytest.raises(ValueError):
        burn_rate(1, 3, 1.0)


def test_budget_from_golden_events():
    r = compute_budget(load_events([GOLDEN]), SPEC, "lab")
    ratio, latency = r.slos
    # publish-success: 3 good of 5 (succeeded + failed + abandoned) in the 12 h lab period.
    # Traffic began at 10:00:00.000 and the analysis time is 10:25:00.300: 1500.3 s of the 43 200 s period.
    assert (ratio.total, ratio.budget.bad) == (5, 2)
    assert ratio.budget.covered_s == pytest.approx(1500.3)
    assert ratio.budget.spent == pytest.approx(0.4 / 0.01 * 1500.3 / 43200)
    # publish-latency: 2 of 3 publishes within 1 s; budget 5 %.
    assert (latency.total, latency.budget.bad) == (3, 1)
    assert latency.budget.remaining == pytest.approx(1 - (1 / 3) / 0.05 * 1500.3 / 43200)
    # At the analysis time (10:25:00.3) nothing finished in the last 72 minutes of lab windows but
    # the 1h12m window holds everything; the 1 m page window has no data.
    page = ratio.alerts[0]
    assert page.long.window == "1m" and page.long.burn.burn_rate is None and page.note == "no data"
    assert not page.firing
    slow_ticket = ratio.alerts[3]
    assert slow_ticket.long.window == "1h12m" and slow_ticket.long.burn.total == 5
    assert r.grid_step == "1s" and r.at == "2026-01-05T10:25:00.300Z"


def test_budget_zero_traffic_segment(tmp_path):
    r = compute_budget(load_events([GOLDEN]), SPEC, "prod", synthetic=True, at="2026-01-05T10:10:00Z")
    # At 10:10 the only synthetic attempt (f) has not started.
    for s in r.slos:
        assert s.budget.remaining is None and all(a.note == "no data" for a in s.alerts)
        assert all(h.first_fired is None for h in s.history)


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    """Lab profile: 3 attempts/s for 20 min, every publish fails from minute 10 to 13."""
    cfg = SynthConfig(attempts=3600, duration_s=1200, cancel_rate=0, abandon_rate=0, transcode_failure_rate=0,
                      publish_failure_rate=0, chunk_failure_rate={"wifi": 0, "5g": 0, "4g": 0, "3g": 0},
                      processing_median_ms={"small": 100.0, "medium": 100.0, "large": 100.0},
                      effects=(Effect(start_s=600, end_s=780, failure_rate=1.0),))
    path = tmp_path_factory.mktemp("outage") / "events.jsonl"
    write_jsonl(generate(cfg, seed=11), path)
    return path


def test_full_outage_pages_within_two_minutes_and_resolves(outage):
    r = compute_budget(load_events([outage]), SPEC, "lab")
    ratio = r.slos[0]
    page_fast = ratio.history[0]
    assert page_fast.long_window == "1m" and page_fast.short_window == "5s"
    assert page_fast.first_fired is not None
    start = "2026-01-05T10:10:00.000Z"
    # Outcomes follow the attempt start by the upload + processing time (seconds), so the page
    # fires after 10:10 and well within two minutes of it.
    assert start < page_fast.first_fired < "2026-01-05T10:12:00.000Z"
    # It resolves after the outage: the last firing span ends.
    assert page_fast.spans[-1].end is not None and page_fast.spans[-1].end < "2026-01-05T10:16:00.000Z"
    # Before the outage nothing failed, so no alert fired.
    for h in ratio.history:
        assert h.first_fired is None or h.first_fired > start


def test_at_evaluates_as_of_that_time(outage):
    at = "2026-01-05T10:12:00Z"
    r = compute_budget(load_events([outage], until=at), SPEC, "lab", at=at)
    page = r.slos[0].alerts[0]
    assert page.firing and page.long.burn.burn_rate > 14.4 and page.short.burn.burn_rate > 14.4
    assert r.at == "2026-01-05T10:12:00.000Z"
