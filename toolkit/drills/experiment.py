"""What an experiment drill's comparison shows, naive and done right: pure functions over a run's attempts.

An experiment drill compares two arms (``Experiment.control`` / ``treatment``, cohort selectors such as
``release=stable`` / ``release=canary``) on one metric. The naive reading compares the arms' overall
figures; the checks that decide whether that reading can be trusted are

- **sample ratio**: are the arms the sizes they should be? The log's attempts per arm against the
  service's own outcome counters per arm (``obslab_publish_outcomes_total``, another source for the same
  attempts), a chi-square goodness-of-fit test (``toolkit.analysis.stats.sample_ratio_mismatch``);
- **cohort mix**: does each arm serve the same traffic? A chi-square test of arm × cohort value per
  dimension, and the comparison within each cohort value (stratified: the per-value differences weighted
  by the value's share of both arms);
- **tail**: the mean and the p99 side by side (the p99 difference with a bootstrap interval,
  ``toolkit.analysis.stats.compare_quantiles``);
- **repeated looks**: an experiment someone watches is compared window after window. A peeker tests every
  window's success rate and mean latencies at p < 0.05 and stops at the first "significant" one; the
  rollout's rule (``toolkit.analysis.rollout``: always-valid intervals, valid however often they are read,
  ``toolkit.analysis.stats.always_valid_p_value``) tests the data so far at each look, its α shared by the
  metrics;
- **before / after**: arms that do not run at the same time (one ends where the other starts) have no
  concurrent control: anything else that changed at that moment moves the comparison too.

Success counts come from the SLO's good/total (``toolkit.measures.definitions``), percentiles from the
engine's nearest-rank method. Every effect is oriented so that ``harm`` > 0 means the treatment is worse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from toolkit.analysis.stats import SrmResult, compare_quantiles, sample_ratio_mismatch
from toolkit.drills.measure import Attempt, MetricSample, Window
from toolkit.drills.schema import ANSWER_DIMENSIONS, Experiment
from toolkit.measures.definitions import SliDefinition, sli_ratio

__all__ = [
    "Effect",
    "MixShift",
    "CounterCheck",
    "TailCheck",
    "METRIC_TEXT",
    "arm_of",
    "split_arms",
    "effect",
    "stratified_effect",
    "mix_shift",
    "counter_check",
    "tail_check",
    "analysis_window",
    "outcome_shares",
    "PEEK_METRICS",
    "Look",
    "PeekingCheck",
    "peeking_check",
    "TimeOverlap",
    "time_overlap",
]

METRIC_TEXT = {
    "success_rate": "publish success rate (the publish-success SLO's good / total, by arm)",
    "e2e_latency_mean": "mean end-to-end publish latency, ms (upload_started → publish_succeeded, published attempts)",
    "processing_latency_mean": "mean processing latency, ms (upload_completed → publish_succeeded, published "
                               "attempts)",
}
# What a team's experiment dashboard shows for each arm, look after look.
PEEK_METRICS = ("success_rate", "processing_latency_mean", "e2e_latency_mean")
# The level a peeker tests each look at, uncorrected.
NAIVE_ALPHA = 0.05
# Counter outcomes that are terminal attempts (what the log's terminal events are).
_COUNTED_OUTCOMES = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Effect:
    """treatment − control on ``metric``; ``harm`` > 0 when the treatment is worse; ``z`` = difference / se."""

    metric: str
    control: float | None
    treatment: float | None
    difference: float | None
    se: float | None
    n_control: int
    n_treatment: int
    scope: str = "all attempts"

    @property
    def z(self) -> float | None:
        if self.difference is None or not self.se:
            return None
        return self.difference / self.se

    @property
    def harm_z(self) -> float | None:
        """z oriented so that positive means the treatment is worse."""
        z = self.z
        return None if z is None else (-z if self.metric == "success_rate" else z)

    def to_json(self) -> dict:
        return {"metric": self.metric, "scope": self.scope, "control": self.control, "treatment": self.treatment,
                "difference": self.difference, "se": self.se, "z": self.z, "harm_z": self.harm_z,
                "n_control": self.n_control, "n_treatment": self.n_treatment}


@dataclass(frozen=True)
class MixShift:
    dimension: str
    chi2: float
    p_value: float
    control_shares: Mapping[str, float]
    treatment_shares: Mapping[str, float]

    def to_json(self) -> dict:
        return {"dimension": self.dimension, "chi2": self.chi2, "p_value": self.p_value,
                "control_shares": dict(self.control_shares), "treatment_shares": dict(self.treatment_shares)}


@dataclass(frozen=True)
class CounterCheck:
    """The log's terminal attempts per arm against the service's outcome counters per arm."""

    logged: tuple[int, int]  # control, treatment
    counted: tuple[int, int]
    counted_failed: tuple[int, int]
    srm: SrmResult | None  # logged split against the counted split
    counted_effect: Effect | None  # success rate from the counters (failed / counted), not from the log

    def to_json(self) -> dict:
        return {"logged": list(self.logged), "counted": list(self.counted), "counted_failed": list(self.counted_failed),
                "srm": None if self.srm is None else {"chi2": self.srm.chi2, "p_value": self.srm.p_value,
                                                      "mismatch": self.srm.mismatch, "threshold": self.srm.threshold,
                                                      "expected_shares": list(self.srm.expected_shares)},
                "counted_effect": None if self.counted_effect is None else self.counted_effect.to_json()}


@dataclass(frozen=True)
class TailCheck:
    mean: Effect
    quantile: float
    control_p: float | None
    treatment_p: float | None
    p_difference: float | None
    p_ci: tuple[float | None, float | None]

    @property
    def tail_worse(self) -> bool:
        """The treatment's tail is worse: the whole interval of the percentile's difference is above zero."""
        return self.p_ci[0] is not None and self.p_ci[0] > 0

    def to_json(self) -> dict:
        return {"mean": self.mean.to_json(), "quantile": self.quantile, "control": self.control_p,
                "treatment": self.treatment_p, "difference": self.p_difference, "ci": list(self.p_ci),
                "tail_worse": self.tail_worse}


def arm_of(a: Attempt, experiment: Experiment) -> str | None:
    for arm, selector in (("control", experiment.control), ("treatment", experiment.treatment)):
        if all(a.cohort.get(k) == v for k, v in selector.items()):
            return arm
    return None


def analysis_window(samples: Sequence[MetricSample], start: float, end: float) -> Window:
    """Where the log and the counters can be set side by side: from the first metric sample to the last (the
    counters' deltas), else the whole drill."""
    inside = [s.t for s in samples if start <= s.t <= end + 5]
    if len(inside) >= 2:
        return Window(inside[0], inside[-1])
    return Window(start, end)


def split_arms(attempts: Sequence[Attempt], experiment: Experiment, window: Window
               ) -> tuple[list[Attempt], list[Attempt]]:
    """The terminal attempts of each arm whose outcome time is in ``window`` (the engine's (start, end])."""
    control, treatment = [], []
    for a in attempts:
        if a.ended is None or a.outcome not in _COUNTED_OUTCOMES or a.ended not in window:
            continue
        arm = arm_of(a, experiment)
        if arm == "control":
            control.append(a)
        elif arm == "treatment":
            treatment.append(a)
    return control, treatment


def _values(attempts: Sequence[Attempt], metric: str) -> np.ndarray:
    field = "e2e_ms" if metric == "e2e_latency_mean" else "processing_ms"
    return np.asarray([getattr(a, field) for a in attempts if getattr(a, field) is not None], dtype=float)


def _good_total(attempts: Sequence[Attempt], definition: SliDefinition) -> tuple[int, int]:
    good = total = 0
    for a in attempts:
        ok, counted = definition.classify(a.outcome, a.processing_ms, a.e2e_ms)
        if counted:
            total += 1
            good += 1 if ok else 0
    return good, total


def _proportion_effect(good_c: int, n_c: int, good_t: int, n_t: int, scope: str) -> Effect:
    rc, rt = sli_ratio(good_c, n_c), sli_ratio(good_t, n_t)
    if rc is None or rt is None:
        return Effect("success_rate", rc, rt, None, None, n_c, n_t, scope)
    pooled = (good_c + good_t) / (n_c + n_t)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    return Effect("success_rate", rc, rt, rt - rc, se or None, n_c, n_t, scope)


def effect(control: Sequence[Attempt], treatment: Sequence[Attempt], metric: str, definition: SliDefinition,
           scope: str = "all attempts") -> Effect:
    """The arms' overall difference: two proportions (pooled standard error) or two means (Welch)."""
    if metric == "success_rate":
        return _proportion_effect(*_good_total(control, definition), *_good_total(treatment, definition), scope)
    c, t = _values(control, metric), _values(treatment, metric)
    if c.size < 2 or t.size < 2:
        return Effect(metric, float(c.mean()) if c.size else None, float(t.mean()) if t.size else None, None, None,
                      int(c.size), int(t.size), scope)
    se = math.sqrt(c.var(ddof=1) / c.size + t.var(ddof=1) / t.size)
    return Effect(metric, float(c.mean()), float(t.mean()), float(t.mean() - c.mean()), se or None, int(c.size),
                  int(t.size), scope)


def stratified_effect(control: Sequence[Attempt], treatment: Sequence[Attempt], dimension: str, metric: str,
                      definition: SliDefinition) -> Effect:
    """The difference within each value of ``dimension``, weighted by the value's share of both arms together:
    what the comparison says once both arms are given the same cohort mix."""
    values = sorted({a.cohort.get(dimension) for a in [*control, *treatment]} - {None})
    parts = []
    for v in values:
        e = effect([a for a in control if a.cohort.get(dimension) == v],
                   [a for a in treatment if a.cohort.get(dimension) == v], metric, definition)
        if e.difference is not None and e.se is not None:
            parts.append((e.n_control + e.n_treatment, e))
    total = sum(n for n, _ in parts)
    if not total:
        return Effect(metric, None, None, None, None, 0, 0, f"within each {dimension}")
    diff = sum(n / total * e.difference for n, e in parts)
    se = math.sqrt(sum((n / total * e.se) ** 2 for n, e in parts))
    ctrl = sum(n / total * e.control for n, e in parts)
    return Effect(metric, ctrl, ctrl + diff, diff, se or None, sum(e.n_control for _, e in parts),
                  sum(e.n_treatment for _, e in parts), f"within each {dimension} (weighted by its share)")


def mix_shift(control: Sequence[Attempt], treatment: Sequence[Attempt], dimension: str) -> MixShift | None:
    """Chi-square test of independence of arm × value of ``dimension``; None if it cannot be tested."""
    from scipy.stats import chi2_contingency

    values = sorted({a.cohort.get(dimension) for a in [*control, *treatment]} - {None})
    if len(values) < 2 or not control or not treatment:
        return None
    table = np.asarray([[sum(1 for a in arm if a.cohort.get(dimension) == v) for v in values]
                        for arm in (control, treatment)], dtype=float)
    keep = table.sum(axis=0) > 0
    if keep.sum() < 2:
        return None
    chi2, p, _, _ = chi2_contingency(table[:, keep])
    return MixShift(dimension, float(chi2), float(p),
                    {v: float(table[0, i] / table[0].sum()) for i, v in enumerate(values)},
                    {v: float(table[1, i] / table[1].sum()) for i, v in enumerate(values)})


def mix_shifts(control: Sequence[Attempt], treatment: Sequence[Attempt],
               dimensions: Sequence[str] = ANSWER_DIMENSIONS) -> list[MixShift]:
    """Every dimension's mix test (not the arms' own selector dimensions), most shifted first."""
    out = [m for d in dimensions if (m := mix_shift(control, treatment, d)) is not None]
    return sorted(out, key=lambda m: -m.chi2)


def _counter(sample: MetricSample, selector: Mapping[str, str], outcome: str | None = None) -> float:
    labels = dict(selector)
    outcomes = (outcome,) if outcome else _COUNTED_OUTCOMES
    return sum(sample.total("obslab_publish_outcomes_total", outcome=o, **labels) or 0.0 for o in outcomes)


def counter_check(control: Sequence[Attempt], treatment: Sequence[Attempt], samples: Sequence[MetricSample],
                  experiment: Experiment, window: Window, definition: SliDefinition) -> CounterCheck | None:
    """Set the log's terminal attempts per arm beside the service's outcome counters over the same window."""
    first = [s for s in samples if s.t <= window.start + 1e-6][-1:] or samples[:1]
    last = [s for s in samples if s.t >= window.end - 1e-6][:1] or samples[-1:]
    if not first or not last or last[0].t <= first[0].t:
        return None
    a, b = first[0], last[0]
    counted = tuple(max(0, round(_counter(b, sel) - _counter(a, sel)))
                    for sel in (experiment.control, experiment.treatment))
    failed = tuple(max(0, round(_counter(b, sel, "failed") - _counter(a, sel, "failed")))
                   for sel in (experiment.control, experiment.treatment))
    logged = (len(control), len(treatment))
    srm = sample_ratio_mismatch(list(logged), list(counted)) if min(counted) > 0 else None
    eff = None
    if min(counted) > 0:
        # The SLO's good / total from the counters' outcomes (``SliDefinition.from_counts``), not from the log.
        by_arm = [definition.from_counts({o: round(_counter(b, sel, o) - _counter(a, sel, o)) for o in _COUNTED_OUTCOMES})
                  for sel in (experiment.control, experiment.treatment)]
        eff = _proportion_effect(by_arm[0][0], by_arm[0][1], by_arm[1][0], by_arm[1][1],
                                 "the service's outcome counters (obslab_publish_outcomes_total)")
    return CounterCheck(logged, counted, failed, srm, eff)


def tail_check(control: Sequence[Attempt], treatment: Sequence[Attempt], metric: str, definition: SliDefinition,
               quantile: float = 0.99, seed: int = 0) -> TailCheck | None:
    """The mean (Welch) and the ``quantile`` (bootstrap interval) of a latency metric, side by side."""
    if metric == "success_rate":
        return None
    mean = effect(control, treatment, metric, definition)
    q = compare_quantiles(_values(control, metric), _values(treatment, metric), quantile, n_resamples=2000, seed=seed)
    return TailCheck(mean, quantile, q.control_value, q.treatment_value, q.difference, (q.ci_low, q.ci_high))


def outcome_shares(control: Sequence[Attempt], treatment: Sequence[Attempt]) -> dict[str, Effect]:
    """Each arm's share of terminal attempts that ended failed, cancelled, and either (not published): a change
    that moves attempts from one category to the other moves the success rate without changing what users got.
    Effects are named by the share (``metric`` is the share's name; z = difference / pooled standard error)."""
    out = {}
    for name, ended in (("failed_share", ("failed",)), ("cancelled_share", ("cancelled",)),
                        ("not_published_share", ("failed", "cancelled"))):
        e = _proportion_effect(sum(a.outcome in ended for a in control), len(control),
                               sum(a.outcome in ended for a in treatment), len(treatment), "all terminal attempts")
        out[name] = Effect(name, e.control, e.treatment, e.difference, e.se, e.n_control, e.n_treatment, e.scope)
    return out


@dataclass(frozen=True)
class Look:
    """One window of a watched comparison: each metric's p-value in the window (what a peeker tests), and its
    always-valid p-value over the data from the first window to this one (what the rollout's rule tests)."""

    index: int  # 1-based
    start: float
    end: float
    n_control: int
    n_treatment: int
    p_values: Mapping[str, float | None]
    p_always_valid: Mapping[str, float | None]

    def to_json(self) -> dict:
        return {"index": self.index, "start": self.start, "end": self.end, "n_control": self.n_control,
                "n_treatment": self.n_treatment, "p_values": dict(self.p_values),
                "p_always_valid": dict(self.p_always_valid)}


@dataclass(frozen=True)
class PeekingCheck:
    """The same looks read two ways: a peeker's (every window's tests at ``naive_alpha``, stop at the first hit)
    and the rollout's always-valid rule (the data so far at each look, an always-valid p-value per metric below
    ``always_valid_alpha``: the judge's α shared by the metrics), which holds however many looks are taken."""

    looks: tuple[Look, ...]
    naive_alpha: float
    always_valid_alpha: float
    rule: str

    @property
    def tests(self) -> int:
        return sum(1 for look in self.looks for p in look.p_values.values() if p is not None)

    @property
    def naive_hits(self) -> list[tuple[int, str, float]]:
        """(look, metric, p) of every test a peeker would call significant, in look order."""
        return [(look.index, m, p) for look in self.looks for m, p in look.p_values.items()
                if p is not None and p < self.naive_alpha]

    @property
    def corrected_hits(self) -> list[tuple[int, str, float]]:
        return [(look.index, m, p) for look in self.looks for m, p in look.p_always_valid.items()
                if p is not None and p < self.always_valid_alpha]

    @property
    def smallest_p(self) -> tuple[int, str, float] | None:
        found = [(look.index, m, p) for look in self.looks for m, p in look.p_always_valid.items() if p is not None]
        return min(found, key=lambda x: x[2]) if found else None

    def to_json(self) -> dict:
        first = self.naive_hits[:1]
        return {"looks": len(self.looks), "tests": self.tests, "metrics": list(PEEK_METRICS),
                "naive_alpha": self.naive_alpha, "naive_hits": len(self.naive_hits),
                "expected_by_chance": self.naive_alpha * self.tests,
                "first_naive_hit": ({"look": first[0][0], "metric": first[0][1], "p_value": first[0][2]}
                                    if first else None),
                "always_valid_alpha": self.always_valid_alpha, "rule": self.rule,
                "corrected_hits": len(self.corrected_hits),
                "smallest_p_always_valid": (None if self.smallest_p is None else
                                            {"look": self.smallest_p[0], "metric": self.smallest_p[1],
                                             "p_value": self.smallest_p[2]}),
                "per_look": [look.to_json() for look in self.looks]}


def _look_p_values(control: Sequence[Attempt], treatment: Sequence[Attempt], definition: SliDefinition
                   ) -> dict[str, float | None]:
    from scipy.stats import ttest_ind

    from toolkit.analysis.stats import JUDGE_MINIMUMS, compare_proportions

    out: dict[str, float | None] = {}
    (gc, nc), (gt, nt) = _good_total(control, definition), _good_total(treatment, definition)
    # The judge's rate test: Fisher's exact test where counts are small, else the pooled z-test.
    out["success_rate"] = (compare_proportions(gc, nc, gt, nt, minimums=JUDGE_MINIMUMS).p_value
                           if nc and nt else None)
    for metric in PEEK_METRICS[1:]:
        c, t = _values(control, metric), _values(treatment, metric)
        out[metric] = (float(ttest_ind(c, t, equal_var=False).pvalue)
                       if c.size >= 3 and t.size >= 3 and (c.var() > 0 or t.var() > 0) else None)
    return out


def _always_valid_p_values(control: Sequence[Attempt], treatment: Sequence[Attempt], definition: SliDefinition,
                           scales: Mapping[str, tuple[float, ...]]) -> dict[str, float | None]:
    """Each metric's always-valid p-value of "no difference" over these attempts (the data so far): the success
    rate's difference with its standard error (``toolkit.analysis.stats.difference_standard_error``), a mean
    latency's difference relative to the control mean with Welch's standard error."""
    import math

    from toolkit.analysis.stats import always_valid_p_value, difference_standard_error

    out: dict[str, float | None] = {}
    (gc, nc), (gt, nt) = _good_total(control, definition), _good_total(treatment, definition)
    out["success_rate"] = (always_valid_p_value(gt / nt - gc / nc, difference_standard_error(gc, nc, gt, nt),
                                                scales["success_rate"]) if nc and nt else None)
    for metric in PEEK_METRICS[1:]:
        c, t = _values(control, metric), _values(treatment, metric)
        if c.size < 3 or t.size < 3 or not c.mean() or (c.var() == 0 and t.var() == 0):
            out[metric] = None
            continue
        se = math.sqrt(c.var(ddof=1) / c.size + t.var(ddof=1) / t.size) / abs(c.mean())
        out[metric] = always_valid_p_value((t.mean() - c.mean()) / abs(c.mean()), se, scales[metric])
    return out


def peeking_check(control: Sequence[Attempt], treatment: Sequence[Attempt], window: Window, looks: int,
                  experiment: Experiment, treatment_percent: float, definition: SliDefinition) -> PeekingCheck:
    """Cut ``window`` into ``looks`` equal windows and test the arms in each (attempts by outcome time, the
    engine's (start, end]): what a peeker sees; and, at the end of each window, what the rollout's always-valid
    rule says of the data so far. The rule is ``toolkit.analysis.rollout``'s: the judge's α over the metrics
    (a one-stage plan), each metric's mixture scale its margin (the success rate's; a latency's 10 %)."""
    from toolkit.analysis.judge import DEFAULT_CONFIG
    from toolkit.analysis.rollout import MIXTURE_SCALE_WHEN_NO_MARGIN, mixture_scale, mixture_scales

    width = window.length_s / looks
    scales = {"success_rate": mixture_scale(DEFAULT_CONFIG.metric("publish_success_rate")),
              **{m: mixture_scales(MIXTURE_SCALE_WHEN_NO_MARGIN["shift"]) for m in PEEK_METRICS[1:]}}
    alpha = DEFAULT_CONFIG.alpha / len(PEEK_METRICS)
    out = []
    for i in range(looks):
        w = Window(window.start + i * width, window.start + (i + 1) * width)
        so_far = Window(window.start, w.end)
        c = [a for a in control if a.ended in w]
        t = [a for a in treatment if a.ended in w]
        p = _look_p_values(c, t, definition)
        av = _always_valid_p_values([a for a in control if a.ended in so_far],
                                    [a for a in treatment if a.ended in so_far], definition, scales)
        out.append(Look(i + 1, w.start, w.end, len(c), len(t), p, av))
    rule = (f"always-valid p-values of the data so far at each look, α {DEFAULT_CONFIG.alpha:g} shared by "
            f"{len(PEEK_METRICS)} metrics ({alpha:.3g} each), valid however many looks")
    return PeekingCheck(tuple(out), NAIVE_ALPHA, alpha, rule)


@dataclass(frozen=True)
class TimeOverlap:
    """When each arm's attempts ended: arms that do not overlap in time are a before / after comparison."""

    control: tuple[float, float]
    treatment: tuple[float, float]
    overlap_share: float  # the shared time span over the shorter arm's span

    def to_json(self) -> dict:
        return {"control": list(self.control), "treatment": list(self.treatment),
                "overlap_share": self.overlap_share}


def time_overlap(control: Sequence[Attempt], treatment: Sequence[Attempt]) -> TimeOverlap | None:
    """Each arm's span of outcome times (its 1st to 99th percentile, so a straggler does not stretch it) and the
    share of the shorter span the two have in common."""
    if len(control) < 10 or len(treatment) < 10:
        return None
    spans = []
    for arm in (control, treatment):
        ends = np.sort(np.asarray([a.ended for a in arm], dtype=float))
        spans.append((float(np.quantile(ends, 0.01)), float(np.quantile(ends, 0.99))))
    (c0, c1), (t0, t1) = spans
    shared = max(0.0, min(c1, t1) - max(c0, t0))
    shorter = max(1e-9, min(c1 - c0, t1 - t0))
    return TimeOverlap(spans[0], spans[1], min(1.0, shared / shorter))
