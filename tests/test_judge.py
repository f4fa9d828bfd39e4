"""Metric classification, the verdict rules, the config file, and judge-level simulations."""

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats as sps

from fuzz_support import HOSTILE_FILES, assert_hostile_file_is_reader_error
from toolkit.analysis import judge as J
from toolkit.analysis.compare import CohortSample, compare_samples
from toolkit.analysis.stats import (MinimumSamples, compare_proportions, compare_quantiles, compare_shift,
                           sample_ratio_mismatch)

RATE = J.MetricSpec("rate", "success rate", "primary", "proportion", "decrease", 0.005, 50, critical=True,
                    numerator="ok", denominator="all")
LAT = J.MetricSpec("lat", "latency shift", "primary", "shift", "increase", 0.10, 30, value="v", population="p")
P99 = J.MetricSpec("p99", "p99", "guardrail", "quantile", "increase", 0.20, 20, quantile=0.99,
                   value="v", population="p")


def test_significant_drop_beyond_allowance_fails_a_decrease_metric():
    r = J.classify(RATE, compare_proportions(9900, 10000, 9700, 10000))
    assert r.classification == "Low" and r.failed and "bad direction" in r.reason
    assert r.change == pytest.approx(-0.02)


def test_significant_but_small_change_passes():
    r = J.classify(RATE, compare_proportions(99000, 100000, 98700, 100000))
    assert r.change_ci[1] < 0 and r.classification == "Pass" and "within" in r.reason


def test_improvement_is_reported_but_not_a_failure():
    rng = np.random.default_rng(1)
    r = J.classify(LAT, compare_shift(rng.lognormal(6, 0.3, 500), rng.lognormal(5.7, 0.3, 500)))
    assert r.classification == "Low" and not r.failed and "good direction" in r.reason


def test_below_minimum_is_nodata_with_the_reason():
    r = J.classify(P99, compare_quantiles(np.arange(300.0), np.arange(300.0), 0.99))
    assert r.classification == "NoData" and "need 1000" in r.reason


def _result(spec, cls, failed):
    return J.MetricResult(spec.name, spec.description, spec.group, spec.kind, cls, failed, spec.direction,
                          spec.allowed_change, None, None, spec.weight, spec.critical, "test")


def test_rules_apply_in_order_and_name_themselves():
    ok = [_result(RATE, "Pass", False), _result(LAT, "Pass", False), _result(P99, "Pass", False)]
    assert (J.judge(ok).verdict, J.judge(ok).rule) == ("promote", "score>=pass")
    assert J.judge(ok).score == 100
    srm = sample_ratio_mismatch([700, 9300], [0.05, 0.95])
    assert (J.judge(ok, srm=srm).verdict, J.judge(ok, srm=srm).rule) == ("hold", "srm")
    crit = [_result(RATE, "Low", True), _result(LAT, "Pass", False), _result(P99, "Pass", False)]
    v = J.judge(crit)
    assert (v.verdict, v.rule) == ("rollback", "critical:rate") and v.score == 50
    marginal = [_result(RATE, "Pass", False), _result(LAT, "Pass", False), _result(P99, "High", True)]
    v = J.judge(marginal)  # P99 not critical here: score 80
    assert (v.verdict, v.rule, v.score) == ("hold", "score>=marginal", 80)
    low = [_result(RATE, "Pass", False), _result(LAT, "High", True), _result(P99, "High", True)]
    assert (J.judge(low).verdict, J.judge(low).rule) == ("rollback", "score<marginal")


def test_missing_primary_data_is_never_a_verdict():
    for res in ([_result(RATE, "NoData", False), _result(LAT, "NoData", False), _result(P99, "Pass", False)],
                [_result(RATE, "NoData", False), _result(LAT, "Pass", False), _result(P99, "Pass", False)]):
        v = J.judge(res)
        assert (v.verdict, v.rule) == ("not_enough_data", "not-enough-data")
        assert v.score == 100  # NoData metrics are left out of the score's denominator
    # a guardrail without data is reported but does not block
    v = J.judge([_result(RATE, "Pass", False), _result(LAT, "Pass", False), _result(P99, "NoData", False)])
    assert v.verdict == "promote"


def test_config_file_overrides_defaults(tmp_path):
    p = tmp_path / "judge.yaml"
    p.write_text("""
judge:
  alpha: 0.01
  pass_threshold: 90
  marginal_threshold: 60
  minimums: {proportion_per_arm: 500}
  metrics:
    - {name: success, kind: proportion, direction: decrease, allowed_change: 0.01, weight: 1,
       numerator: "outcome = 'succeeded'", denominator: "outcome <> 'cancelled'", critical: true}
""")
    cfg = J.load_judge_config(p)
    assert cfg.alpha == 0.01 and cfg.pass_threshold == 90 and cfg.minimums.proportion_per_arm == 500
    assert [m.name for m in cfg.metrics] == ["success"] and cfg.metrics[0].group == "primary"


@pytest.mark.parametrize("text, message", [
    ("judge: {metrics: [{name: x, kind: ratio, direction: up, allowed_change: 1, weight: 1}]}", "metrics[0].kind"),
    ("judge: {metrics: [{name: x, kind: quantile, direction: increase, allowed_change: 0.1, weight: 1, value: v, population: p}]}",
     "metrics[0].quantile"),
    ("judge: {pass_threshold: 50, marginal_threshold: 80}", "thresholds"),
    ("judge: {colour: red}", "unknown field"),
    ("judge: {metrics: [{name: x, kind: proportion, direction: decrease, allowed_change: 0.01, weight: 1, "
     "numerator: a, denominator: b, absolute_limit: 5}]}", "metrics[0].absolute_limit"),
    ("judge: [", "not valid YAML"),
])
def test_config_errors_name_the_field(tmp_path, text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(J.JudgeConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as e:
        J.load_judge_config(p)
    assert str(p) in str(e.value)


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(J.JudgeConfigError, match="no such judge config"):
        J.load_judge_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("content, where, what", HOSTILE_FILES)
def test_hostile_config_file_is_a_judge_config_error(tmp_path, content, where, what):
    assert_hostile_file_is_reader_error(J.load_judge_config, J.JudgeConfigError, tmp_path / "judge.yaml",
                                        content, where, what)


# --------------------------------------------------------------------------- simulations

SIM_CONFIG = J.JudgeConfig(bootstrap_resamples=2000)


def _cohort(rng, label, n, p_success, mu):
    ok = rng.random(n) < p_success
    lat = rng.lognormal(mu, 0.5, int(ok.sum()))
    retries = rng.random(n) < 0.05
    timeouts = (~ok) & (rng.random(n) < 0.3)
    return CohortSample(label, label, n, n // 3, n, None, None,
                        proportions={"publish_success_rate": (int(ok.sum()), n),
                                     "chunk_retry_share": (int(retries.sum()), n),
                                     "timeout_share": (int(timeouts.sum()), n)},
                        values={"processing_latency_p95": lat, "processing_latency_shift": lat,
                                "e2e_latency_p95": lat + 2000, "transcode_latency_shift": lat * 0.7,
                                "processing_latency_p99": lat})


def test_aa_judge_rarely_rolls_back():
    """200 seeded A/A runs through the full judge (8 metrics): a rollback needs a significant
    change beyond its allowance, so the false-rollback rate must stay within the nominal 5 %
    plus 3 Monte Carlo standard errors — in practice far below it."""
    rng = np.random.default_rng(200)
    runs = 200
    verdicts = [compare_samples(_cohort(rng, "control", 4000, 0.99, 6.0), _cohort(rng, "canary", 1200, 0.99, 6.0),
                                SIM_CONFIG).verdict.verdict for _ in range(runs)]
    rollback_rate = verdicts.count("rollback") / runs
    assert rollback_rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)
    # 1 200 canary attempts cannot show a 0.5 pp non-inferiority margin most of the time (power
    # 0.33 for the rate alone): the honest answer is mostly not_enough_data, never a promote by
    # absence of evidence.
    assert verdicts.count("promote") / runs < 0.5
    assert verdicts.count("hold") / runs <= 0.05


def test_aa_judge_promotes_when_the_sample_can_show_non_inferiority():
    """20 000 vs 6 000 attempts: the success rate's non-inferiority power at 0.5 pp is 0.93
    (normal approximation), the p95/p99 margins are wide at this size; promote ≥ 0.8."""
    from toolkit.analysis.stats import power_noninferiority_two_proportions

    assert power_noninferiority_two_proportions(0.99, 20_000, 6_000, 0.005) > 0.9
    cfg = J.JudgeConfig(metrics=tuple(J.DEFAULT_CONFIG.metric(n) for n in
                                      ("publish_success_rate", "processing_latency_p95", "processing_latency_p99")),
                        bootstrap_resamples=2000)
    rng = np.random.default_rng(202)
    runs = 100
    verdicts = [compare_samples(_cohort(rng, "control", 20_000, 0.99, 6.0), _cohort(rng, "canary", 6000, 0.99, 6.0),
                                cfg).verdict.verdict for _ in range(runs)]
    assert verdicts.count("promote") / runs >= 0.8
    assert verdicts.count("rollback") / runs <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)


def test_holm_is_stated_and_changes_a_borderline_decision():
    """Two independent metrics each at p ≈ 0.03: alone each is significant at 0.05; together, Holm
    needs the smaller below 0.025, so neither is."""
    a = J.classify(RATE, compare_proportions(9900, 10000, 9870, 10000))
    assert 0.025 < a.p_value < 0.05 and a.significant
    adjusted = J.apply_holm([a, J.classify(replace(RATE, name="rate2"), compare_proportions(9900, 10000, 9870, 10000))],
                            None, 0.05)
    assert all(not r.significant and r.p_adjusted == pytest.approx(2 * a.p_value) for r in adjusted)
    assert "Holm-adjusted" in adjusted[0].reason


def test_absolute_fallback_when_the_guardrail_has_too_few_values():
    rng = np.random.default_rng(7)
    spec = replace(P99, absolute_limit=2500.0, critical=True)
    fast = rng.lognormal(6, 0.3, 80)  # about 400 ms: too few for a p99 comparison (needs 1 000)
    slow = np.concatenate([fast[:70], np.full(10, 4000.0)])  # 12 % above 2.5 s
    ok = J.classify(spec, compare_quantiles(rng.lognormal(6, 0.3, 5000), fast, 0.99), treatment=fast)
    assert ok.classification == "NoData" and not ok.failed and ok.fallback["bad"] == 0
    assert "absolute fallback" in ok.reason and "need 1000" in ok.reason
    bad = J.classify(spec, compare_quantiles(rng.lognormal(6, 0.3, 5000), slow, 0.99), treatment=slow)
    assert bad.failed and bad.classification == "High" and bad.fallback["bad"] == 10
    assert bad.p_value == pytest.approx(sps.binomtest(10, 80, 0.01, alternative="greater").pvalue)
    v = J.judge([J.classify(RATE, compare_proportions(9900, 10000, 79, 80, minimums=J.DEFAULT_CONFIG.minimums)), bad])
    assert (v.verdict, v.rule) == ("rollback", "critical:p99") and "absolute fallback" in v.explanation


def test_promote_needs_the_harm_bound_inside_the_margin():
    thin = J.classify(RATE, compare_proportions(9900, 10000, 198, 200))   # same rate, 200 attempts (≥ 100)
    assert thin.classification == "Pass" and thin.non_inferior is False and thin.power < 0.5
    v = J.judge([thin])
    assert (v.verdict, v.rule) == ("not_enough_data", "not-non-inferior") and "power" in v.explanation
    wide = J.classify(RATE, compare_proportions(99000, 100000, 49500, 50000))
    assert wide.non_inferior and J.judge([wide]).verdict == "promote"


def test_known_regression_rolls_back_at_the_expected_power():
    """Canary success 98.6 % vs 99 %: the critical success-rate rule fires when the Newcombe CI
    excludes 0 and the drop exceeds 0.5 pp. Expected power (normal approximation):
    Φ((|Δ| − max(allowed, z·SE0)) / SE1); simulated within 3 MC SEs + 0.05."""
    rng = np.random.default_rng(201)
    runs = 200
    n_c, n_t, p_c, p_t = 12_000, 6000, 0.99, 0.986
    se0 = math.sqrt(((p_c * n_c + p_t * n_t) / (n_c + n_t)) * (1 - (p_c * n_c + p_t * n_t) / (n_c + n_t)) * (1 / n_c + 1 / n_t))
    se1 = math.sqrt(p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t)
    expected = float(sps.norm.cdf((abs(p_t - p_c) - max(0.005, 1.96 * se0)) / se1))
    assert 0.2 < expected < 0.9
    cfg = J.JudgeConfig(metrics=(J.DEFAULT_CONFIG.metric("publish_success_rate"),))
    hits = 0
    for _ in range(runs):
        v = compare_samples(_cohort(rng, "c", n_c, p_c, 6.0), _cohort(rng, "t", n_t, p_t, 6.0), cfg).verdict
        hits += v.rule == "critical:publish_success_rate"
    assert abs(hits / runs - expected) <= 3 * math.sqrt(expected * (1 - expected) / runs) + 0.05
