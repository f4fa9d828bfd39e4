"""Breakdown: a planted cohort must rank first; counts and shares must add up; the chart is a PNG."""

import numpy as np
import pytest
from scipy import stats as sps

from toolkit.analysis.breakdown import (Selection, breakdown_arrays, breakdown_attempts, render_chart,
                               selection_preset)
from toolkit.analysis.compare import Window, parse_selector

from attempt_tables import START, attempts_table, relation


def test_planted_failure_cohort_ranks_first():
    rel = relation(attempts_table(20_000, seed=11, plant={("region", "ap-south"): 8.0}))
    res = breakdown_attempts(rel, selection_preset("failed"))
    assert res.dimensions[0].dimension == "region"
    top = res.top_values[0]
    assert (top.dimension, top.value) == ("region", "ap-south")
    assert top.selection_share > 2 * top.baseline_share
    assert res.dimensions[0].p_value < 1e-6
    # the failure-defined columns are left out
    assert "error_class" not in {d.dimension for d in res.dimensions}


def test_planted_slow_cohort_ranks_first_and_numeric_fields_are_binned():
    rel = relation(attempts_table(20_000, seed=12, slow_plant={("network_type", "3g"): 3.0}))
    res = breakdown_attempts(rel, selection_preset("slow", slow_ms=1000))
    assert (res.top_values[0].dimension, res.top_values[0].value) == ("network_type", "3g")
    e2e = next(d for d in res.dimensions if d.dimension == "e2e_ms")
    assert e2e.numeric and any(v.value.startswith("[") for v in e2e.values)
    assert "processing_ms" not in {d.dimension for d in res.dimensions}


def test_time_slice_selection():
    rel = relation(attempts_table(5000, seed=13, duration_s=600))
    sel = selection_preset("time", time_range=parse_selector("time=2026-01-05T12:05:00Z/2026-01-05T12:06:00Z"))
    res = breakdown_attempts(rel, sel, baseline="all")
    assert 0 < res.selection_total < res.baseline_total
    assert res.dimensions[0].p_value is None  # no test against a baseline that contains the selection


def test_counts_and_shares_add_up_and_chi2_is_scipys():
    rng = np.random.default_rng(3)
    region = rng.choice(["a", "b", "c"], 1000)
    selected = rng.random(1000) < np.where(region == "c", 0.5, 0.1)
    res = breakdown_arrays({"region": region.astype(object)}, selected, selection=Selection("s", "", "s"))
    d = res.dimensions[0]
    assert sum(v.selection_count for v in d.values) == selected.sum() == res.selection_total
    assert sum(v.baseline_count for v in d.values) == (~selected).sum() == res.baseline_total
    assert sum(v.selection_share for v in d.values) == pytest.approx(1.0)
    assert d.values[0].value == "c"
    table = [[v.selection_count for v in d.values], [v.baseline_count for v in d.values]]
    assert d.p_value == pytest.approx(sps.chi2_contingency(table, correction=False).pvalue)


def test_chart_is_written(tmp_path):
    rel = relation(attempts_table(3000, seed=14, plant={("app_version", "5.5.0-beta"): 10.0}))
    res = breakdown_attempts(rel, selection_preset("failed"))
    out = render_chart(res, tmp_path / "breakdown.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_bad_selection_and_dimension_are_clear_errors():
    with pytest.raises(ValueError, match="--select"):
        selection_preset("weird")
    with pytest.raises(ValueError, match="--time"):
        selection_preset("time")
    rel = relation(attempts_table(500, seed=1))
    with pytest.raises(ValueError, match="unknown colour"):
        breakdown_attempts(rel, selection_preset("failed"), dimensions=("colour",))


def _obslab(*args):
    import subprocess
    import sys
    from pathlib import Path

    return subprocess.run([str(Path(sys.executable).parent / "obslab"), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_cli_breakdown_on_synthetic_events_ranks_the_planted_cohort_first(tmp_path):
    import json

    from toolkit.events.synth import Effect, SynthConfig, generate, write_jsonl

    cfg = SynthConfig(attempts=5000, duration_s=1800, users=1500,
                      effects=(Effect(where={"app_version": "5.5.0-beta"}, failure_rate=0.25),))
    events = write_jsonl(generate(cfg, seed=5), tmp_path / "events.jsonl")
    out, chart = tmp_path / "breakdown.json", tmp_path / "chart.png"
    r = _obslab("breakdown", events, "--select", "failed", "--chart", chart, "--format", "json", "-o", out)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["schema"] == "obslab.breakdown/v1"
    assert (d["top_values"][0]["dimension"], d["top_values"][0]["value"]) == ("app_version", "5.5.0-beta")
    assert chart.read_bytes()[:4] == b"\x89PNG"
    story = _obslab("story", out)
    assert story.returncode == 0 and "**app_version = 5.5.0-beta**" in story.stdout
    table = _obslab("breakdown", events, "--select", "where", "--where", "network_type = '3g'", "--top", "5")
    assert table.returncode == 0 and "values ranked" in table.stdout
    bad = _obslab("breakdown", events, "--select", "where", "--where", "no_such_column > 1")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_small_cohort_that_grows_outranks_noise_in_a_big_one():
    """Ranking by the standardized difference: +2 pp on a 5 % cohort (lift 1.4) beats +2.5 pp on a 50 % one."""
    n_sel, n_base = 900, 39_000
    small = np.r_[np.ones(63, bool), np.zeros(n_sel - 63, bool), np.ones(1911, bool), np.zeros(n_base - 1911, bool)]
    big = np.r_[np.ones(473, bool), np.zeros(n_sel - 473, bool), np.ones(19_500, bool), np.zeros(n_base - 19_500, bool)]
    selected = np.r_[np.ones(n_sel, bool), np.zeros(n_base, bool)]
    res = breakdown_arrays({"release": np.where(small, "canary", "stable").astype(object),
                            "app_version": np.where(big, "5.4.0", "5.3.0").astype(object)},
                           selected, selection=Selection("s", "", "s"))
    assert res.top_values[0].value == "canary"
    big_row = next(v for v in res.top_values if v.value == "5.4.0")
    assert big_row.difference > res.top_values[0].difference  # bigger in pp, yet ranked lower


def test_a_mostly_zero_count_column_keeps_the_difference_visible():
    # chunk_retries: 25 % of the selection retried (1..6 retries), 4 % of the baseline did.
    rng = np.random.default_rng(3)
    n_sel, n_base = 400, 4000
    sel = np.where(rng.random(n_sel) < 0.25, rng.integers(1, 7, n_sel), 0).astype(float)
    base = np.where(rng.random(n_base) < 0.04, rng.integers(1, 7, n_base), 0).astype(float)
    sel[:6], base[:6] = np.arange(1, 7), np.arange(1, 7)  # every value present in both
    values = np.concatenate([sel, base])
    selected = np.arange(values.size) < n_sel
    res = breakdown_arrays({"chunk_retries": values}, selected,
                           selection=Selection("x", "TRUE", "planted"), bins=5)
    dim = res.dimensions[0]
    rows = {v.value: v for v in dim.values}
    assert len(rows) >= 3 and "0" in rows
    nonzero_sel = sum(v.selection_share for k, v in rows.items() if k != "0")
    nonzero_base = sum(v.baseline_share for k, v in rows.items() if k != "0")
    assert nonzero_sel == pytest.approx((sel > 0).mean()) and nonzero_base == pytest.approx((base > 0).mean())
    assert nonzero_sel > 0.2 and nonzero_base < 0.06
    assert dim.p_value < 1e-6


def test_cli_breakdown_of_an_empty_selection_says_so_and_succeeds(tmp_path):
    """Zero failures is an answer (the README runs breakdown before a drill's fault may have begun)."""
    import json

    from toolkit.events.synth import SynthConfig, generate, write_jsonl

    events = write_jsonl(generate(SynthConfig(attempts=300, duration_s=600, users=100), seed=8), tmp_path / "e.jsonl")
    # A latency threshold nothing exceeds: an empty selection on a populated log.
    r = _obslab("breakdown", events, "--select", "slow", "--slow-ms", "1e12")
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stdout.split())  # rich wraps at the terminal's width
    assert "nothing to break down" in said and "; 300 finished attempts looked at" in said, said
    out = tmp_path / "b.json"
    j = _obslab("breakdown", events, "--select", "slow", "--slow-ms", "1e12", "--format", "json", "-o", out)
    assert j.returncode == 0, j.stderr
    d = json.loads(out.read_text())
    assert d["selection_total"] == 0 and d["baseline_total"] == 300
    story = _obslab("story", out)
    assert "Traceback" not in story.stderr, story.stderr
