"""Seeded simulations: A/A false-positive rates and known-effect power.

Margins: with R runs the Monte Carlo standard error of a rate r is sqrt(r(1-r)/R); we allow
3 standard errors, plus 0.03 for the analytic power approximations (normal approximation to
the z-test, Noether's formula for Mann-Whitney).
"""

import math

import numpy as np
from scipy import stats as sps

from toolkit.analysis import stats as S
ALPHA = 0.05
RUNS = 400


def _mc_margin(rate: float, runs: int = RUNS) -> float:
    return 3 * math.sqrt(rate * (1 - rate) / runs)


def test_aa_proportions_false_positive_rate_within_nominal():
    rng = np.random.default_rng(100)
    n_c, n_t = 4750, 250  # a 5 % canary against 95 % control, 99 % success in both
    s_c, s_t = rng.binomial(n_c, 0.99, RUNS), rng.binomial(n_t, 0.99, RUNS)
    results = [S.compare_proportions(a, n_c, b, n_t) for a, b in zip(s_c, s_t)]
    fp_test = np.mean([r.p_value < ALPHA for r in results])
    fp_ci = np.mean([r.ci_low > 0 or r.ci_high < 0 for r in results])
    assert fp_test <= ALPHA + _mc_margin(ALPHA)
    assert fp_ci <= ALPHA + _mc_margin(ALPHA)


def test_known_effect_proportions_detected_at_expected_power():
    rng = np.random.default_rng(101)
    n_c, n_t, p_c, p_t = 3000, 3000, 0.97, 0.96
    expected = S.power_two_proportions(p_c, p_t, n_c, n_t)
    assert 0.3 < expected < 0.9  # an informative power, not a foregone conclusion
    s_c, s_t = rng.binomial(n_c, p_c, RUNS), rng.binomial(n_t, p_t, RUNS)
    detected = np.mean([S.compare_proportions(a, n_c, b, n_t).p_value < ALPHA for a, b in zip(s_c, s_t)])
    assert abs(detected - expected) <= _mc_margin(expected) + 0.03


def test_aa_mann_whitney_and_hl_interval_false_positive_rate():
    rng = np.random.default_rng(102)
    fp_test = fp_ci = 0
    for _ in range(RUNS):
        c, t = rng.lognormal(6, 0.5, 300), rng.lognormal(6, 0.5, 120)
        r = S.compare_shift(c, t)
        fp_test += r.p_value < ALPHA
        fp_ci += r.ci_low > 0 or r.ci_high < 0
    assert fp_test / RUNS <= ALPHA + _mc_margin(ALPHA)
    assert fp_ci / RUNS <= ALPHA + _mc_margin(ALPHA)


def test_known_shift_detected_at_noether_power_and_hl_covers_the_truth():
    rng = np.random.default_rng(103)
    shift_sd, n_c, n_t = 0.3, 150, 150
    expected = S.power_shift_normal(shift_sd, n_c, n_t)
    assert 0.4 < expected < 0.9
    c = rng.normal(0, 1, (RUNS, n_c))
    t = rng.normal(shift_sd, 1, (RUNS, n_t))
    # scipy vectorised over runs is the reference decision; ours must agree run by run.
    ref_p = sps.mannwhitneyu(t, c, axis=1, alternative="two-sided", method="asymptotic").pvalue
    ours = [S.compare_shift(c[i], t[i]) for i in range(RUNS)]
    assert np.allclose([r.p_value for r in ours], ref_p, rtol=1e-10)
    detected = np.mean(ref_p < ALPHA)
    assert abs(detected - expected) <= _mc_margin(expected) + 0.03
    coverage = np.mean([r.ci_low <= shift_sd <= r.ci_high for r in ours])
    assert coverage >= 1 - ALPHA - _mc_margin(ALPHA)


def test_aa_quantile_bootstrap_false_positive_rate():
    rng = np.random.default_rng(104)
    runs = 250
    fp = 0
    for i in range(runs):
        c, t = rng.lognormal(6, 0.5, 1500), rng.lognormal(6, 0.5, 1000)
        r = S.compare_quantiles(c, t, 0.95, n_resamples=2000, seed=i)
        fp += r.ci_low > 0 or r.ci_high < 0
    # Percentile-bootstrap intervals for tail quantiles run slightly liberal at these sizes;
    # the stated margin is 3 Monte Carlo SEs plus 0.02.
    assert fp / runs <= ALPHA + _mc_margin(ALPHA, runs) + 0.02


def test_known_quantile_difference_is_covered():
    rng = np.random.default_rng(105)
    runs = 250
    z95 = sps.norm.ppf(0.95)
    truth = math.exp(6.2 + 0.5 * z95) - math.exp(6 + 0.5 * z95)
    covered = detected = 0
    for i in range(runs):
        c, t = rng.lognormal(6, 0.5, 1500), rng.lognormal(6.2, 0.5, 1500)
        r = S.compare_quantiles(c, t, 0.95, n_resamples=2000, seed=i)
        covered += r.ci_low <= truth <= r.ci_high
        detected += r.ci_low > 0
    assert covered / runs >= 1 - ALPHA - _mc_margin(ALPHA, runs) - 0.02
    assert detected / runs > 0.8  # a 22 % p95 rise at n=1500 is found almost always


def test_srm_false_alarm_rate_at_its_threshold():
    rng = np.random.default_rng(106)
    n = 20_000
    treated = rng.binomial(n, 0.05, 2000)
    alarms = np.mean([S.sample_ratio_mismatch([k, n - k], [0.05, 0.95]).mismatch for k in treated])
    assert alarms <= S.SRM_ALPHA + 3 * math.sqrt(S.SRM_ALPHA / 2000)
    shifted = rng.binomial(n, 0.058, 200)  # a 5.8 % realised share when 5 % was asked
    assert np.mean([S.sample_ratio_mismatch([k, n - k], [0.05, 0.95]).mismatch for k in shifted]) > 0.9


def _two_proportion_streams(rng, runs: int, looks: int, step: int, share: float, p_control: float,
                            p_treatment: float):
    """Cumulative (difference, its standard error) at each of ``looks`` looks, every ``step`` attempts, of
    ``runs`` streams that put each attempt in the treatment with probability ``share``."""
    n = step * looks
    arm = rng.random((runs, n)) < share
    ok = np.where(arm, rng.random((runs, n)) < p_treatment, rng.random((runs, n)) < p_control)
    at = np.arange(step, n + 1, step) - 1
    n_t = np.cumsum(arm, axis=1)[:, at]
    n_c = (at + 1) - n_t
    s_t = np.cumsum(ok & arm, axis=1)[:, at]
    s_c = np.cumsum(ok & ~arm, axis=1)[:, at]
    diff = s_t / np.maximum(n_t, 1) - s_c / np.maximum(n_c, 1)
    se = np.vectorize(S.difference_standard_error)(s_c, n_c, s_t, n_t)
    return diff, se


def test_confidence_sequence_covers_the_truth_at_every_look_where_bonferroni_over_planned_looks_does_not():
    """2 000 A/A streams (90 % success, a 20 % arm) looked at 100 times, every 40 attempts. The always-valid
    interval misses the truth at *any* look in at most α of streams (measured: 29 of 2 000). The old rule —
    α shared by a plan of 10 looks (Bonferroni), each a fixed-α z-test — holds at the plan's 10 looks (61 of
    2 000), is at α when looked at twice as often (20 looks: 102 of 2 000, 5.1 %) and is exceeded at 10× the
    planned looks (measured: 153 of 2 000, 7.7 %)."""
    runs = 2000
    diff, se = _two_proportion_streams(np.random.default_rng(1), runs, 100, 40, 0.2, 0.9, 0.9)
    half = np.vectorize(lambda s: S.confidence_sequence_halfwidth(s, ALPHA, 0.02))(se)
    always_valid_misses = int((np.abs(diff) > half).any(axis=1).sum())
    assert sps.binomtest(always_valid_misses, runs, ALPHA, alternative="greater").pvalue >= 0.05, always_valid_misses
    bonferroni_misses = int((np.abs(diff) / se > sps.norm.isf(ALPHA / 10 / 2)).any(axis=1).sum())
    assert sps.binomtest(bonferroni_misses, runs, ALPHA, alternative="greater").pvalue < 0.01, bonferroni_misses


def test_confidence_sequence_covers_a_real_difference_at_every_look():
    """A treatment 5 points worse (85 % against 90 %): the interval around the estimate still covers the true
    −5 pp at every one of 100 looks in at least 1 − α of streams (measured: 10 misses of 1 000)."""
    runs = 1000
    diff, se = _two_proportion_streams(np.random.default_rng(2), runs, 100, 40, 0.2, 0.9, 0.85)
    half = np.vectorize(lambda s: S.confidence_sequence_halfwidth(s, ALPHA, 0.02))(se)
    misses = int((np.abs(diff + 0.05) > half).any(axis=1).sum())
    assert sps.binomtest(misses, runs, ALPHA, alternative="greater").pvalue >= 0.05, misses


def test_a_mixture_of_scales_covers_the_truth_at_every_look():
    """The rollout's four-scale mixture (0.5, 2, 8, 32 pp), 600 A/A streams looked at 25 times: misses the truth
    at any look in at most α of streams (measured: 2 of 600)."""
    runs = 600
    diff, se = _two_proportion_streams(np.random.default_rng(3), runs, 25, 160, 0.2, 0.9, 0.9)
    half = np.vectorize(lambda s: S.confidence_sequence_halfwidth(s, ALPHA, (0.005, 0.02, 0.08, 0.32)))(se)
    misses = int((np.abs(diff) > half).any(axis=1).sum())
    assert sps.binomtest(misses, runs, ALPHA, alternative="greater").pvalue >= 0.05, misses
