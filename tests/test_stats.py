"""toolkit.analysis.stats against scipy (and brute force) as the reference."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from toolkit.analysis import stats as S
from toolkit.analysis.judge import DEFAULT_CONFIG as JUDGE_DEFAULT
NO_MINIMUMS = S.MinimumSamples(proportion_per_arm=1, shift_per_arm=1, tail_points=1)


def test_z_test_equals_scipy_chi2_without_correction():
    rng = np.random.default_rng(7)
    for _ in range(50):
        n_c, n_t = rng.integers(100, 5000, size=2)
        s_c, s_t = rng.binomial(n_c, 0.9), rng.binomial(n_t, 0.88)
        res = S.compare_proportions(s_c, n_c, s_t, n_t)
        table = [[s_t, n_t - s_t], [s_c, n_c - s_c]]
        chi2, p, _, _ = sps.chi2_contingency(table, correction=False)
        assert res.p_value == pytest.approx(p, rel=1e-9, abs=1e-300)
        assert res.z ** 2 == pytest.approx(chi2, rel=1e-9)
        assert res.difference == pytest.approx(s_t / n_t - s_c / n_c)


def test_newcombe_interval_matches_published_example():
    # Newcombe (1998), Stat Med 17:873, table II, method 10: 56/70 - 48/80 → 0.0524, 0.3339.
    res = S.compare_proportions(48, 80, 56, 70, minimums=NO_MINIMUMS)
    assert res.difference == pytest.approx(0.2)
    assert res.ci_low == pytest.approx(0.0524, abs=5e-5)
    assert res.ci_high == pytest.approx(0.3339, abs=5e-5)


def test_newcombe_interval_is_built_from_scipy_wilson_intervals():
    res = S.compare_proportions(990, 1000, 975, 1000)
    t = sps.binomtest(975, 1000).proportion_ci(method="wilson")
    c = sps.binomtest(990, 1000).proportion_ci(method="wilson")
    d = 0.975 - 0.990
    assert res.ci_low == pytest.approx(d - math.hypot(0.975 - t.low, c.high - 0.990))
    assert res.ci_high == pytest.approx(d + math.hypot(t.high - 0.975, 0.990 - c.low))


def test_small_counts_get_fishers_exact_test_not_a_fixed_minimum():
    # The canary: 15 of 56 attempts failed against 0 of 1,378 on stable.
    res = S.compare_proportions(1378, 1378, 41, 56, minimums=S.JUDGE_MINIMUMS)
    ref = sps.fisher_exact([[41, 15], [1378, 0]])
    assert res.enough_data and res.test == "fisher" and "Fisher" in res.method
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9) and res.p_value < 1e-15
    assert res.ci_high < -0.15  # the whole interval is a large drop
    small = S.compare_proportions(5, 10, 9, 10, minimums=S.JUDGE_MINIMUMS)
    assert small.p_value == pytest.approx(sps.fisher_exact([[9, 1], [5, 5]]).pvalue)
    # ad hoc callers keep the floor of 100 unless they ask for the judge's minimums
    assert not S.compare_proportions(5, 10, 9, 10).enough_data
    assert JUDGE_DEFAULT.minimums.proportion_per_arm == 1  # the judge's own default: no floor
    empty = S.compare_proportions(5, 10, 0, 0, minimums=S.JUDGE_MINIMUMS)
    assert not empty.enough_data and empty.p_value is None and "not enough data" in empty.reason


def test_wilson_interval_equals_scipy_on_integer_counts():
    for s, n in ((0, 1378), (41, 56), (990, 1000), (3, 7)):
        ref = sps.binomtest(s, n).proportion_ci(method="wilson")
        assert S._wilson(s, n, 0.05) == pytest.approx((ref.low, ref.high), rel=1e-9, abs=1e-12)


def test_design_effect_is_one_for_independent_attempts_and_matches_the_spread_of_clustered_ones():
    rng = np.random.default_rng(11)
    ones = rng.random(5000) < 0.9
    assert S.design_effect(ones.astype(float), np.ones(5000)) == pytest.approx(1.0, abs=0.1)
    # Heavy users with their own success rates: the design effect must predict the variance of
    # the cohort's rate across repeated samples (brute force over 2 000 cohorts).
    def cohort():
        n_u = (rng.pareto(2.5, 300) * 3).astype(int) + 1  # heavy-tailed activity, finite variance
        p_u = rng.beta(4.5, 0.5, 300)
        return rng.binomial(n_u, p_u), n_u
    rates, deffs, totals = [], [], []
    for _ in range(2000):
        s_u, n_u = cohort()
        rates.append(s_u.sum() / n_u.sum())
        deffs.append(S.design_effect(s_u, n_u))
        totals.append(n_u.sum())
    p = np.mean(rates)
    assert np.median(deffs) > 1.5
    predicted = np.mean(np.array(deffs) * p * (1 - p) / np.array(totals))
    # The cluster-robust (CR1) variance runs somewhat low with few dominant users (measured
    # 0.88 of the true variance here, against 0.58 without the design effect): within 20 %.
    assert predicted == pytest.approx(np.var(rates), rel=0.2)


def test_clustered_users_widen_the_interval_and_weaken_the_test():
    s_u = np.array([50, 0, 48, 49, 0, 50, 47, 50, 0, 49] * 5, dtype=float)
    n_u = np.full(50, 50.0)
    plain = S.compare_proportions(7000, 10000, int(s_u.sum()), int(n_u.sum()))
    clustered = S.compare_proportions(7000, 10000, int(s_u.sum()), int(n_u.sum()), treatment_users=(s_u, n_u))
    assert clustered.design_effect_treatment > 10 and clustered.effective_treatment_total < 250
    assert clustered.ci_high - clustered.ci_low > 2 * (plain.ci_high - plain.ci_low)
    assert clustered.p_value > plain.p_value


def test_holm_equals_its_definition():
    rng = np.random.default_rng(12)
    for m in (1, 3, 8):
        p = rng.random(m) ** 3
        adj = S.holm(p)
        order = np.argsort(p)
        for rank_i, i in enumerate(order):
            expected = max(min(1.0, (m - j) * p[order[j]]) for j in range(rank_i + 1))
            assert adj[i] == pytest.approx(expected)
    # Holm (1979)'s textbook case: 0.01, 0.04, 0.03, 0.005 → 0.03, 0.06, 0.06, 0.02
    assert S.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_exceedance_test_equals_scipy_binomtest():
    r = S.exceedance_test(4, 60, 0.01, alpha=0.01)
    ref = sps.binomtest(4, 60, 0.01, alternative="greater").pvalue
    assert r.p_value == pytest.approx(ref) and r.breached
    assert not S.exceedance_test(1, 60, 0.01).breached


def test_noninferiority_power_grows_with_the_sample():
    lo = S.power_noninferiority_two_proportions(0.99, 4000, 200, 0.005)
    hi = S.power_noninferiority_two_proportions(0.99, 40000, 4000, 0.005)
    assert 0 < lo < 0.3 < 0.8 < hi


def test_proportions_reject_impossible_counts():
    with pytest.raises(ValueError, match="treatment"):
        S.compare_proportions(5, 10, 11, 10)


def test_mann_whitney_equals_scipy():
    rng = np.random.default_rng(3)
    c, t = rng.gamma(2.0, 100.0, 400), rng.gamma(2.0, 110.0, 300)
    res = S.compare_shift(c, t)
    ref = sps.mannwhitneyu(t, c, alternative="two-sided", method="asymptotic")
    assert res.u_statistic == ref.statistic
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12)


def test_hodges_lehmann_is_median_of_pairwise_differences():
    rng = np.random.default_rng(4)
    for n, m in ((31, 40), (50, 50), (7, 200)):
        c, t = rng.normal(0, 1, n), rng.normal(0.3, 1, m)
        assert S.hodges_lehmann(c, t) == pytest.approx(float(np.median(np.subtract.outer(t, c))), rel=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_selection_equals_materialised_order_statistics(ties):
    rng = np.random.default_rng(5)
    c, t = rng.lognormal(6, 0.6, 900), rng.lognormal(6.1, 0.6, 700)
    if ties:  # latencies rounded to whole milliseconds: many equal differences
        c, t = np.round(c), np.round(t)
    all_diffs = np.sort(np.subtract.outer(t, c).ravel())
    for k in (1, 2, 1000, 315_000, all_diffs.size // 2, all_diffs.size - 1, all_diffs.size):
        got = S.pairwise_difference_order_statistic(c, t, k, materialise_limit=1000)
        assert got == pytest.approx(all_diffs[k - 1], rel=1e-12, abs=1e-9)
    full = S.compare_shift(c, t)
    fast = S.compare_shift(c, t, materialise_limit=1000)
    assert "bisection" in fast.ci_method and "materialised" in full.ci_method
    assert (fast.shift, fast.ci_low, fast.ci_high) == pytest.approx((full.shift, full.ci_low, full.ci_high))


def test_hl_interval_uses_order_statistics_at_the_normal_critical_rank():
    rng = np.random.default_rng(6)
    c, t = rng.normal(10, 2, 60), rng.normal(11, 2, 45)
    res = S.compare_shift(c, t)
    nm = 60 * 45
    k = math.floor(nm / 2 - sps.norm.ppf(0.975) * math.sqrt(nm * (60 + 45 + 1) / 12))
    diffs = np.sort(np.subtract.outer(t, c).ravel())
    assert res.ci_low == diffs[k - 1] and res.ci_high == diffs[nm - k]
    assert res.ci_low < res.shift < res.ci_high


def test_shift_below_minimum_is_not_enough_data():
    res = S.compare_shift(np.arange(10.0), np.arange(50.0))
    assert not res.enough_data and res.shift is None


def nearest_rank(x, q, **kw):
    return np.quantile(x, q, method="inverted_cdf", **kw)


def test_quantile_point_estimates_are_nearest_rank_as_the_sli_engine_computes_them():
    import duckdb

    rng = np.random.default_rng(8)
    c, t = rng.lognormal(6, 0.5, 2000), rng.lognormal(6.1, 0.5, 1500)
    res = S.compare_quantiles(c, t, 0.95, n_resamples=2000)
    assert res.control_value == nearest_rank(c, 0.95) and res.treatment_value == nearest_rank(t, 0.95)
    assert res.difference == pytest.approx(nearest_rank(t, 0.95) - nearest_rank(c, 0.95))
    # The SLI engine's SQL (quantile_disc) gives the same value: one method everywhere.
    sql = duckdb.execute("SELECT quantile_disc(v, 0.95) FROM (SELECT unnest(?) AS v)", [c.tolist()]).fetchone()[0]
    assert res.control_value == sql and "nearest-rank" in res.method
    shift = S.compare_shift(c[:100], t[:100])
    assert shift.control_median == nearest_rank(c[:100], 0.5) and "nearest-rank" in shift.method


def test_order_statistic_bootstrap_matches_resampling_bootstrap():
    """The Beta order-statistic draw is the resampling bootstrap in distribution: compare
    replicate quantiles of both with a two-sample KS test, and the CI with scipy.stats.bootstrap."""
    rng = np.random.default_rng(9)
    x = np.sort(rng.lognormal(6, 0.7, 400))
    fast = S._bootstrap_quantiles(x, 0.95, 20_000, np.random.default_rng(1))
    resamples = x[rng.integers(0, x.size, size=(20_000, x.size))]
    brute = nearest_rank(resamples, 0.95, axis=1)
    assert sps.ks_2samp(fast, brute).pvalue > 0.001
    assert np.mean(fast) == pytest.approx(np.mean(brute), rel=0.01)

    c, t = rng.lognormal(6, 0.5, 600), rng.lognormal(6.15, 0.5, 500)
    ours = S.compare_quantiles(c, t, 0.95, n_resamples=20_000, seed=3)
    ref = sps.bootstrap((t, c), lambda a, b, axis: nearest_rank(a, 0.95, axis=axis) - nearest_rank(b, 0.95, axis=axis),
                        vectorized=True, paired=False, method="percentile", n_resamples=20_000, batch=500,
                        rng=np.random.default_rng(4)).confidence_interval
    # Monte Carlo error of a 2.5 % quantile of 20k replicates is well under 5 % of the CI width.
    width = ref.high - ref.low
    assert ours.ci_low == pytest.approx(ref.low, abs=0.05 * width)
    assert ours.ci_high == pytest.approx(ref.high, abs=0.05 * width)


def test_quantile_minimum_scales_with_the_tail():
    assert S.DEFAULT_MINIMUMS.quantile_per_arm(0.95) == 200
    assert S.DEFAULT_MINIMUMS.quantile_per_arm(0.99) == 1000
    res = S.compare_quantiles(np.arange(500.0), np.arange(500.0), 0.99)
    assert not res.enough_data and "need 1000" in res.reason


def test_srm_equals_scipy_chisquare():
    res = S.sample_ratio_mismatch([620, 9380], [5, 95])
    ref = sps.chisquare([620, 9380], f_exp=[500, 9500])
    assert res.p_value == pytest.approx(ref.pvalue) and res.chi2 == pytest.approx(ref.statistic)
    assert res.mismatch
    assert not S.sample_ratio_mismatch([505, 9495], [0.05, 0.95]).mismatch



def test_srm_with_an_expected_count_below_five_is_the_exact_binomial_test():
    """A 1 % stage of an 80-user lab expects 0.8 users: 4 there is chance (p ≈ 0.009), which the chi-square
    approximation called a mismatch (p ≈ 0.0003)."""
    res = S.sample_ratio_mismatch([76, 4], [0.99, 0.01])
    assert res.p_value == pytest.approx(sps.binomtest(4, 80, 0.01).pvalue) and not res.mismatch
    assert sps.chisquare([76, 4], f_exp=[79.2, 0.8]).pvalue < S.SRM_ALPHA
    assert "binomial" in res.method
    assert S.sample_ratio_mismatch([70, 10], [0.99, 0.01]).mismatch  # 10 of 80 in a 1 % arm is not chance

def test_srm_rejects_bad_shares():
    with pytest.raises(ValueError):
        S.sample_ratio_mismatch([1, 2], [1, 0])


def test_sample_size_reaches_power_and_one_less_does_not():
    n = S.sample_size_two_proportions(0.99, 0.98, 0.25, power=0.8)
    assert S.power_two_proportions(0.99, 0.98, round(n * 0.75), round(n * 0.25)) >= 0.8
    assert S.power_two_proportions(0.99, 0.98, round((n - 40) * 0.75), round((n - 40) * 0.25)) < 0.8


from hypothesis import given, settings, strategies as st

_values = st.lists(st.integers(min_value=0, max_value=50).map(float) | st.floats(0, 1e4, allow_nan=False),
                   min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(control=_values, treatment=_values, data=st.data())
def test_property_selection_equals_sorted_pairwise_differences(control, treatment, data):
    """Any k, any data (ties included): the bisection selector returns the k-th sorted difference."""
    diffs = np.sort(np.subtract.outer(np.asarray(treatment), np.asarray(control)).ravel())
    k = data.draw(st.integers(1, diffs.size))
    for bracket in (1, 7, 10**6):  # full bisection, partial, enumeration only
        got = S.pairwise_difference_order_statistic(control, treatment, k, materialise_limit=0, bracket=bracket)
        assert got == pytest.approx(diffs[k - 1], rel=1e-9, abs=1e-9)


def test_latency_statistics_widen_for_clustered_users_and_not_for_independent_ones():
    rng = np.random.default_rng(13)
    users_c, users_t = rng.integers(0, 40, 2000), rng.integers(0, 20, 600)
    effect_c, effect_t = rng.normal(0, 0.6, 40), rng.normal(0, 0.6, 20)   # each user's own speed
    c = np.exp(6 + effect_c[users_c] + rng.normal(0, 0.3, 2000))
    t = np.exp(6 + effect_t[users_t] + rng.normal(0, 0.3, 600))
    plain, clustered = S.compare_shift(c, t), S.compare_shift(c, t, control_users=users_c, treatment_users=users_t)
    assert clustered.design_effect_treatment > 5 and clustered.p_value > plain.p_value
    assert clustered.ci_high - clustered.ci_low > 2 * (plain.ci_high - plain.ci_low)
    q_plain = S.compare_quantiles(c, t, 0.95, n_resamples=4000)
    q_clustered = S.compare_quantiles(c, t, 0.95, n_resamples=4000, control_users=users_c, treatment_users=users_t)
    assert q_clustered.ci_high - q_clustered.ci_low > 1.5 * (q_plain.ci_high - q_plain.ci_low)
    # one value per user: nothing changes (the design effect is 1 up to noise, and never below 1)
    solo = S.compare_shift(c, t, control_users=np.arange(2000), treatment_users=np.arange(600))
    assert solo.design_effect_control == pytest.approx(1.0, abs=0.15)
    assert solo.p_value == pytest.approx(plain.p_value, rel=0.2)


def test_confidence_sequence_halfwidth_is_the_normal_mixture_boundary():
    se, alpha, tau = 0.004, 0.05, 0.01
    v, t2 = se * se, tau * tau
    expected = math.sqrt(v * (v + t2) / t2 * (math.log((v + t2) / v) + 2 * math.log(1 / alpha)))
    assert S.confidence_sequence_halfwidth(se, alpha, tau) == pytest.approx(expected)
    # Wider than the fixed-sample interval at the same level (the price of looking any time) ...
    assert S.confidence_sequence_halfwidth(se, alpha, tau) > sps.norm.isf(alpha / 2) * se
    # ... narrowest, in units of se, where τ²/se² = c(α) (the tuning of Waudby-Smith et al.)
    best = S.mixture_scale_for(se, alpha)
    assert best == pytest.approx(se * math.sqrt(-2 * math.log(alpha) + math.log(1 - 2 * math.log(alpha))))
    width = [S.confidence_sequence_halfwidth(se, alpha, best * f) for f in (0.5, 0.8, 1.0, 1.25, 2.0)]
    assert min(width) == width[2]
    assert S.confidence_sequence_halfwidth(0.0, alpha, tau) == 0.0
    assert S.confidence_sequence_halfwidth(math.inf, alpha, tau) == math.inf
    with pytest.raises(ValueError, match="tau"):
        S.confidence_sequence_halfwidth(se, alpha, 0.0)


def test_always_valid_p_value_is_below_alpha_exactly_outside_the_sequence():
    se, tau, alpha = 0.003, 0.005, 0.02
    half = S.confidence_sequence_halfwidth(se, alpha, tau)
    assert S.always_valid_p_value(0.001 + half * 1.001, se, tau, null=0.001) < alpha
    assert S.always_valid_p_value(0.001 + half * 0.999, se, tau, null=0.001) > alpha
    assert S.always_valid_p_value(-half * 1.001, se, tau) < alpha  # two-sided
    assert S.always_valid_p_value(0.0, se, tau) == 1.0


def test_difference_standard_error_has_a_variance_for_all_success_cohorts():
    assert S.difference_standard_error(100, 100, 50, 50) > 0
    assert S.difference_standard_error(900, 1000, 450, 500) == pytest.approx(
        math.sqrt((901 / 1002) * (101 / 1002) / 1000 + (451 / 502) * (51 / 502) / 500))
    assert S.difference_standard_error(0, 0, 5, 5) == math.inf


def test_a_mixture_of_scales_is_narrow_at_small_and_large_standard_errors():
    scales = (0.005, 0.02, 0.08, 0.32)
    alpha = 0.05 / 24
    for se in (0.0005, 0.0015, 0.006, 0.05):
        mixed = S.confidence_sequence_halfwidth(se, alpha, scales)
        # p-value and half-width are one boundary
        assert S.always_valid_p_value(mixed, se, scales) == pytest.approx(alpha, rel=1e-6)
        # never much wider than the best single scale, at the price of log(4) in the boundary ...
        best = min(S.confidence_sequence_halfwidth(se, alpha, t) for t in scales)
        assert best <= mixed <= S.confidence_sequence_halfwidth(se, alpha / 4, min(
            scales, key=lambda t: S.confidence_sequence_halfwidth(se, alpha, t)))
    # ... and far narrower than the smallest scale alone where the standard error is large (a drill's stage)
    assert S.confidence_sequence_halfwidth(0.05, alpha, scales) < 0.2 * S.confidence_sequence_halfwidth(0.05, alpha, 0.005)
