"""Canary judgment: classify each metric, score, and decide promote / hold / rollback.

Data-driven, after Kayenta's judge: every metric has a kind (``proportion``, ``shift`` or
``quantile``), a direction that is bad (``increase``, ``decrease``, ``either``), an allowed
change (the non-inferiority margin), a weight and a group (primary, secondary, guardrail).
Every metric with data has a p-value; the family of all of them is corrected with Holm's
step-down method at the decision alpha (``apply_holm``), so "significant" below means "after
Holm". A metric is

* ``NoData`` when either cohort is below its minimum sample size — unless it has an absolute
  limit (``absolute_limit``): then the treatment alone is tested against it (exact binomial
  test of the share beyond the limit), a breach is ``High``/``Low`` and fails, and the result
  says it is an absolute fallback;
* ``High`` / ``Low`` when the change is significant AND the point estimate moved by more than
  the allowed change (absolute for proportions, relative to the control for latencies);
* ``Pass`` otherwise. ``non_inferior`` says whether the harm end of its interval is inside the
  allowed change: only that is evidence of no harm.

A High or Low in a direction the metric does not care about is reported but is not a failure.
The score is 100 × (weight of metrics not failing) / (weight of metrics with data). The verdict
is taken by the first rule that applies, and names it:

1. ``srm`` — the cohort sizes do not match the intended split → ``hold`` (results untrustworthy).
2. ``critical:<metric>`` — a critical metric failed → ``rollback``.
3. ``not-enough-data`` — any primary metric is NoData → ``not_enough_data`` (never a verdict on
   partial evidence; guardrails and secondary metrics without data are reported, not blocking).
4. ``score<marginal`` → ``rollback``; ``score<pass`` → ``hold``.
5. ``not-non-inferior`` — a primary or critical metric's harm bound is beyond its allowed
   change: nothing is shown to be worse, but nor is it shown to be safe → ``not_enough_data``
   (with the power the data had to show it).
6. ``non-inferior`` → ``promote``.

Promotion is an intersection-union test (every required metric must be shown non-inferior), so
it needs no multiplicity correction; rollbacks are a union of harm tests, hence Holm.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from contract.brief import brief
from toolkit.measures.definitions import DEFAULT_SUCCESS, SliDefinition, success_definition
import numpy as np

from toolkit.analysis.stats import (JUDGE_MINIMUMS, SRM_ALPHA, MinimumSamples, ProportionComparison,
                           QuantileComparison, ShiftComparison, SrmResult, exceedance_test, holm,
                           power_noninferiority_two_proportions)
from toolkit.slo.yaml_file import load_yaml_file

__all__ = [
    "JudgeConfigError",
    "MetricSpec",
    "JudgeConfig",
    "MetricResult",
    "Verdict",
    "DEFAULT_METRICS",
    "DEFAULT_CONFIG",
    "classify",
    "apply_holm",
    "judge",
    "load_judge_config",
    "parse_judge_config",
    "success_metric",
    "with_spec",
    "CLASSES",
    "VERDICTS",
]

KINDS = ("proportion", "shift", "quantile")
DIRECTIONS = ("increase", "decrease", "either")
GROUPS = ("primary", "secondary", "guardrail")
CLASSES = ("Pass", "High", "Low", "NoData")
VERDICTS = ("promote", "hold", "rollback", "not_enough_data")


class JudgeConfigError(ValueError):
    """The judge config is invalid; the message names the file and the field."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric: how to select it from the attempts table and how to judge it.

    Selection (SQL over the attempts table, see docs/analysis.md): a ``proportion`` counts
    ``numerator`` among ``denominator``; ``shift``/``quantile`` take ``value`` over ``population``.
    ``allowed_change``: absolute (0.005 = 0.5 percentage points) for proportions, relative
    (0.10 = 10 % of the control) for latencies.
    """

    name: str
    description: str
    group: str
    kind: str
    direction: str
    allowed_change: float
    weight: float
    critical: bool = False
    quantile: float | None = None
    numerator: str | None = None
    denominator: str | None = None
    value: str | None = None
    population: str | None = None
    unit: str = ""
    # Checked when a comparison has too little data: a latency limit in the value's unit (at most
    # 1 − q of values above it; q = 0.5 for a shift), or for a proportion the floor (decrease) or
    # ceiling (increase) of the treatment's rate.
    absolute_limit: float | None = None


FINISHED = "outcome IN ('succeeded', 'failed', 'abandoned')"
# The p99 guardrail's absolute fallback when a canary is too thin for a p99 comparison: no more
# than 1 % of its publishes above 2.5 s, the latency histogram's bucket after the SLO's 1 s
# threshold (slo.yaml). A default, not a law: set absolute_limit per metric in the judge config.
P99_ABSOLUTE_LIMIT_MS = 2500.0
SUCCEEDED = "outcome = 'succeeded'"


def success_metric(definition: SliDefinition) -> MetricSpec:
    """The primary metric: the publish success rate exactly as the SLO spec defines good and total
    (``toolkit.measures.definitions``), so ``compare``/``rollout`` judge the rate ``obslab sli`` reports."""
    good, total = definition.sql()
    return MetricSpec("publish_success_rate", f"publish success rate: {definition.ratio_text()}",
                      "primary", "proportion", "decrease", 0.005, 40, critical=True,
                      numerator=good, denominator=total)


DEFAULT_METRICS: tuple[MetricSpec, ...] = (
    success_metric(DEFAULT_SUCCESS),
    MetricSpec("processing_latency_p95", "server-side p95 processing latency (upload_completed → publish_succeeded)",
               "primary", "quantile", "increase", 0.10, 20, quantile=0.95,
               value="processing_ms", population=SUCCEEDED, unit="ms"),
    MetricSpec("processing_latency_shift", "typical shift of server-side processing latency (Hodges–Lehmann)",
               "primary", "shift", "increase", 0.10, 10,
               value="processing_ms", population=SUCCEEDED, unit="ms"),
    MetricSpec("e2e_latency_p95", "end-to-end p95 latency (upload_started → publish_succeeded)",
               "secondary", "quantile", "increase", 0.10, 5, quantile=0.95,
               value="e2e_ms", population=SUCCEEDED, unit="ms"),
    MetricSpec("transcode_latency_shift", "typical shift of transcoder latency (Hodges–Lehmann)",
               "secondary", "shift", "increase", 0.15, 5,
               value="transcode_ms", population="transcode_ms IS NOT NULL", unit="ms"),
    MetricSpec("chunk_retry_share", "share of finished attempts with at least one chunk retry",
               "secondary", "proportion", "increase", 0.01, 5,
               numerator="chunk_retries > 0", denominator=FINISHED),
    MetricSpec("timeout_share", "share of finished attempts that failed with error_class timeout",
               "secondary", "proportion", "increase", 0.005, 5,
               numerator="error_class = 'timeout'", denominator=FINISHED),
    MetricSpec("processing_latency_p99", "server-side p99 processing latency (upload_completed → publish_succeeded)",
               "guardrail", "quantile", "increase", 0.20, 10, critical=True, quantile=0.99,
               value="processing_ms", population=SUCCEEDED, unit="ms", absolute_limit=P99_ABSOLUTE_LIMIT_MS),
)


@dataclass(frozen=True)
class JudgeConfig:
    metrics: tuple[MetricSpec, ...] = DEFAULT_METRICS
    alpha: float = 0.05
    pass_threshold: float = 95.0
    marginal_threshold: float = 75.0
    srm_threshold: float = SRM_ALPHA
    minimums: MinimumSamples = JUDGE_MINIMUMS
    bootstrap_resamples: int = 10_000
    seed: int = 0

    def metric(self, name: str) -> MetricSpec:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)


DEFAULT_CONFIG = JudgeConfig()


def with_spec(config: JudgeConfig, spec) -> JudgeConfig:
    """The config with the built-in success metric defined by ``spec`` (its ratio SLO's good and total).

    A success metric the user wrote into a judge config (different selection) is left as written.
    """
    builtin = success_metric(DEFAULT_SUCCESS)
    ours = success_metric(success_definition(spec))
    metrics = tuple(replace(ours, allowed_change=m.allowed_change, weight=m.weight, critical=m.critical,
                            direction=m.direction, group=m.group)
                    if m.name == builtin.name and (m.numerator, m.denominator) == (builtin.numerator, builtin.denominator)
                    else m for m in config.metrics)
    return replace(config, metrics=metrics)


@dataclass(frozen=True)
class MetricResult:
    name: str
    description: str
    group: str
    kind: str
    classification: str     # Pass | High | Low | NoData
    failed: bool            # moved beyond its allowance in the direction that is bad
    direction: str
    allowed_change: float
    change: float | None    # absolute for proportions, relative for latencies
    change_ci: tuple[float, float] | None
    weight: float
    critical: bool
    reason: str
    comparison: dict[str, Any] = field(default_factory=dict)
    p_value: float | None = None      # the metric's own test (or its absolute fallback's)
    p_adjusted: float | None = None   # Holm-adjusted over the metrics judged together
    significant: bool = False         # p_adjusted < decision_alpha
    decision_alpha: float | None = None
    harm_bound: float | None = None   # the interval's end in the bad direction
    non_inferior: bool | None = None  # harm bound inside the allowed change (None: no data)
    power: float | None = None        # proportions: power to show non-inferiority if nothing changed
    fallback: dict[str, Any] | None = None  # the absolute-limit check used instead of a comparison


@dataclass(frozen=True)
class Verdict:
    verdict: str            # promote | hold | rollback | not_enough_data
    rule: str               # the rule that decided it
    explanation: str
    score: float | None
    pass_threshold: float
    marginal_threshold: float
    metrics: tuple[MetricResult, ...]
    srm: dict[str, Any] | None = None
    multiplicity: str = ""  # how the metrics' p-values were corrected, in words
    decision_alpha: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fmt_change(kind: str, x: float) -> str:
    if kind == "proportion":
        return f"{x * 100:+.2f} pp"
    return f"{x * 100:+.1f} %"


def _harm_bound(direction: str, lo: float, hi: float, allowed: float) -> tuple[float, bool]:
    if direction == "increase":
        return hi, hi <= allowed
    if direction == "decrease":
        return lo, lo >= -allowed
    worst = hi if abs(hi) >= abs(lo) else lo
    return worst, -allowed <= lo and hi <= allowed


def _classification(spec: MetricSpec, change: float, significant: bool) -> tuple[str, bool]:
    if significant and change > spec.allowed_change:
        cls = "High"
    elif significant and change < -spec.allowed_change:
        cls = "Low"
    else:
        cls = "Pass"
    failed = (cls == "High" and spec.direction in ("increase", "either")) or \
             (cls == "Low" and spec.direction in ("decrease", "either"))
    return cls, failed


def _reason(spec: MetricSpec, r: MetricResult, alpha: float) -> str:
    if r.fallback is not None:
        f = r.fallback
        verdict = "breached" if r.failed else "not breached"
        return (f"{r.fallback['why']}; absolute fallback: {f['bad']} of {f['n']} {f['what']} "
                f"(allowed share {f['allowed_share']:.3g}), exact binomial p = {r.p_value:.2g}"
                f"{'' if r.p_adjusted is None else f', Holm-adjusted {r.p_adjusted:.2g}'} at α = {alpha:.3g}: {verdict}")
    lo, hi = r.change_ci
    ci_text = (f"{(1 - r.comparison.get('alpha', 0.05)) * 100:g} % CI [{_fmt_change(spec.kind, lo)}, "
               f"{_fmt_change(spec.kind, hi)}]" if math.isfinite(lo) and math.isfinite(hi) else "CI unbounded")
    allowed = _fmt_change(spec.kind, spec.allowed_change).lstrip("+")
    p_text = "" if r.p_value is None else f"p = {r.p_value:.2g}" + (
        "" if r.p_adjusted is None or r.p_adjusted == r.p_value else f" (Holm-adjusted {r.p_adjusted:.2g})")
    if r.classification == "Pass":
        why = ("no significant change" if not r.significant else f"significant but within ±{allowed}")
    else:
        why = f"{'rose' if r.classification == 'High' else 'fell'} beyond the allowed {allowed}"
        why += " (bad direction)" if r.failed else " (good direction, not a failure)"
    if r.non_inferior is not None:
        why += (f"; harm bound {_fmt_change(spec.kind, r.harm_bound)} "
                + ("inside" if r.non_inferior else "beyond") + f" the margin {allowed}")
    return f"{_fmt_change(spec.kind, r.change)}, {ci_text}, {p_text} at α = {alpha:.3g}: {why}"


def _fallback(spec: MetricSpec, treatment, why: str, alpha: float):
    """The absolute-limit check of a metric without enough data for a comparison, or None."""
    if spec.absolute_limit is None or treatment is None:
        return None
    limit = spec.absolute_limit
    if spec.kind == "proportion":
        successes, total = treatment
        if spec.direction == "increase":
            bad, allowed, what = successes, limit, f"treatment attempts counted (ceiling {limit:.4g})"
        else:
            bad, allowed, what = total - successes, 1 - limit, f"treatment attempts not counted (floor {limit:.4g})"
        n = total
    else:
        values = np.asarray(treatment, dtype=float)
        values = values[~np.isnan(values)]
        q = spec.quantile if spec.kind == "quantile" else 0.5
        n, bad, allowed = values.size, int((values > limit).sum()), 1 - q
        what = f"treatment values above {limit:g} {spec.unit}".rstrip()
    if n == 0 or not 0 < allowed < 1:
        return None
    test = exceedance_test(int(bad), int(n), allowed, alpha)
    return {"why": why, "limit": limit, "n": test.n, "bad": test.bad, "what": what,
            "allowed_share": allowed, "p_value": test.p_value, "method": test.method}


def classify(spec: MetricSpec, comparison: ProportionComparison | ShiftComparison | QuantileComparison,
             decision_alpha: float | None = None, treatment=None) -> MetricResult:
    """Pass / High / Low / NoData for one metric alone, with the reason in words.

    ``decision_alpha`` (default: the comparison's alpha) is the level at which a change counts as
    significant; ``apply_holm`` re-decides it over a family of metrics. ``treatment``: the
    treatment's (successes, total) or values, for the absolute fallback when data are too thin."""
    alpha = comparison.alpha if decision_alpha is None else decision_alpha
    base = dict(name=spec.name, description=spec.description, group=spec.group, kind=spec.kind,
                direction=spec.direction, allowed_change=spec.allowed_change, weight=spec.weight,
                critical=spec.critical, comparison=asdict(comparison), decision_alpha=alpha)

    def nodata(reason: str) -> MetricResult:
        fb = _fallback(spec, treatment, reason, alpha)
        if fb is None:
            return MetricResult(**base, classification="NoData", failed=False, change=None, change_ci=None,
                                reason=reason)
        r = MetricResult(**base, classification="NoData", failed=False, change=None, change_ci=None, reason="",
                         p_value=fb["p_value"], fallback=fb)
        return _decide(spec, r, alpha, fb["p_value"])

    if not comparison.enough_data:
        return nodata(comparison.reason)
    if isinstance(comparison, ProportionComparison):
        change, lo, hi = comparison.difference, comparison.ci_low, comparison.ci_high
        p = comparison.p_value
        n_c = comparison.effective_control_total or comparison.control_total
        n_t = comparison.effective_treatment_total or comparison.treatment_total
        pooled = ((comparison.control_successes + comparison.treatment_successes)
                  / (comparison.control_total + comparison.treatment_total))
        power = power_noninferiority_two_proportions(pooled, n_c, n_t, spec.allowed_change, comparison.alpha)
    elif isinstance(comparison, ShiftComparison):
        med = comparison.control_median
        if not med:
            return nodata("control median is zero: a relative shift is undefined")
        change, lo, hi = comparison.relative_shift, comparison.ci_low / med, comparison.ci_high / med
        p, power = comparison.p_value, None
    else:
        if comparison.relative_difference is None:
            return nodata("control quantile is zero: a relative change is undefined")
        change, lo, hi = comparison.relative_difference, comparison.rel_ci_low, comparison.rel_ci_high
        p, power = comparison.p_value, None
        if p is None:  # a comparison built without a p-value: fall back on its interval
            p = 0.0 if (lo > 0 or hi < 0) else 1.0
    harm, ok = _harm_bound(spec.direction, lo, hi, spec.allowed_change)
    r = MetricResult(**base, classification="Pass", failed=False, change=change, change_ci=(lo, hi), reason="",
                     p_value=p, harm_bound=harm, non_inferior=ok, power=power)
    return _decide(spec, r, alpha, p)


def _decide(spec: MetricSpec, r: MetricResult, alpha: float, p_for_decision: float | None,
            p_adjusted: float | None = None) -> MetricResult:
    significant = p_for_decision is not None and p_for_decision < alpha
    if r.fallback is not None:
        cls = "NoData"
        failed = significant
        if failed:
            cls = "High" if spec.direction == "increase" or spec.kind != "proportion" else "Low"
    else:
        cls, failed = _classification(spec, r.change, significant)
    r = replace(r, classification=cls, failed=failed, significant=significant, p_adjusted=p_adjusted,
                decision_alpha=alpha)
    return replace(r, reason=_reason(spec, r, alpha))


def apply_holm(results, specs: Mapping[str, MetricSpec] | None, alpha: float) -> tuple[MetricResult, ...]:
    """Re-decide every metric with a p-value on its Holm-adjusted p-value at ``alpha``: the
    family-wise chance of any false "significant" across the metrics stays within alpha."""
    results = tuple(results)
    tested = [i for i, r in enumerate(results) if r.p_value is not None]
    adjusted = holm([results[i].p_value for i in tested])
    out = list(results)
    for i, p_adj in zip(tested, adjusted):
        r = results[i]
        spec = (specs or {}).get(r.name) or MetricSpec(r.name, r.description, r.group, r.kind, r.direction,
                                                       r.allowed_change, r.weight, r.critical)
        out[i] = _decide(spec, r, alpha, float(p_adj), float(p_adj))
    return tuple(out)


def _required(r: MetricResult) -> bool:
    """Metrics whose harm bound must lie inside their margin before a promote."""
    return r.group == "primary" or r.critical


def judge(results: tuple[MetricResult, ...] | list[MetricResult], config: JudgeConfig = DEFAULT_CONFIG,
          srm: SrmResult | None = None, multiplicity: str = "") -> Verdict:
    """Score the classified metrics and apply the verdict rules in order."""
    results = tuple(results)
    with_data = [r for r in results if r.classification != "NoData"]
    total_weight = sum(r.weight for r in with_data)
    score = 100.0 * sum(r.weight for r in with_data if not r.failed) / total_weight if total_weight else None
    common = dict(score=score, pass_threshold=config.pass_threshold,
                  marginal_threshold=config.marginal_threshold, metrics=results,
                  srm=asdict(srm) if srm else None, multiplicity=multiplicity,
                  decision_alpha=next((r.decision_alpha for r in results if r.decision_alpha is not None), None))
    if srm is not None and srm.mismatch:
        shares = ", ".join(f"{o}" for o in srm.observed)
        return Verdict("hold", "srm", f"sample ratio mismatch: cohort sizes {shares} vs expected shares "
                       f"{', '.join(f'{s:.3g}' for s in srm.expected_shares)} (chi-square p={srm.p_value:.2g} "
                       f"< {srm.threshold:g}); assignment or logging is broken, results are not trustworthy",
                       **common)
    critical_failures = [r for r in results if r.critical and r.failed]
    if critical_failures:
        r = critical_failures[0]
        return Verdict("rollback", f"critical:{r.name}",
                       f"critical metric {r.name} failed: {r.reason}", **common)
    primaries = [r for r in results if r.group == "primary"]
    missing = [r for r in primaries if r.classification == "NoData"]
    if not primaries or missing:
        reasons = "; ".join(f"{r.name}: {r.reason}" for r in missing) or "no primary metric configured"
        return Verdict("not_enough_data", "not-enough-data",
                       f"{len(missing)} of {len(primaries)} primary metrics lack data ({reasons})", **common)
    failed_names = ", ".join(r.name for r in with_data if r.failed) or "none"
    if score < config.marginal_threshold:
        return Verdict("rollback", "score<marginal", f"score {score:.0f} < marginal threshold "
                       f"{config.marginal_threshold:g} (failed: {failed_names})", **common)
    if score < config.pass_threshold:
        return Verdict("hold", "score>=marginal", f"score {score:.0f} is marginal: ≥ {config.marginal_threshold:g} "
                       f"but < {config.pass_threshold:g} (failed: {failed_names})", **common)
    unshown = [r for r in results if _required(r) and r.non_inferior is False]
    if unshown:
        parts = []
        for r in unshown:
            part = (f"{r.name}: harm bound {_fmt_change(r.kind, r.harm_bound)} beyond the margin "
                    f"{_fmt_change(r.kind, r.allowed_change).lstrip('+')}")
            if r.power is not None:
                part += f" (power to show it at this sample: {r.power:.2f})"
            parts.append(part)
        return Verdict("not_enough_data", "not-non-inferior",
                       f"score {score:.0f}, nothing shown to be worse, but not shown to be safe either: "
                       + "; ".join(parts), **common)
    notes = []
    fallbacks = [r.name for r in results if r.fallback is not None]
    if fallbacks:
        notes.append(f"too little data to compare {', '.join(fallbacks)}: checked against absolute limits instead")
    blind = [r.name for r in results if r.critical and r.classification == "NoData" and r.fallback is None]
    if blind:
        notes.append(f"no data and no absolute limit for {', '.join(blind)}: not judged")
    return Verdict("promote", "score>=pass", f"score {score:.0f} ≥ pass threshold {config.pass_threshold:g} and "
                   f"every primary and critical metric non-inferior (harm bound inside its margin)"
                   + (f"; {'; '.join(notes)}" if notes else ""), **common)


# --------------------------------------------------------------------------- config file

_METRIC_FIELDS = {f for f in MetricSpec.__dataclass_fields__}


def _check_metric(raw: Any, where: str) -> MetricSpec:
    if not isinstance(raw, Mapping):
        raise JudgeConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - _METRIC_FIELDS
    if unknown:
        raise JudgeConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    for req in ("name", "kind", "direction", "allowed_change", "weight"):
        if req not in raw:
            raise JudgeConfigError(f"{where}: missing field {req}")
    data = {"description": raw.get("name"), "group": "primary", **raw}
    if data["kind"] not in KINDS:
        raise JudgeConfigError(f"{where}.kind: must be one of {', '.join(KINDS)}, got {brief(data['kind'])}")
    if data["direction"] not in DIRECTIONS:
        raise JudgeConfigError(f"{where}.direction: must be one of {', '.join(DIRECTIONS)}, got {brief(data['direction'])}")
    if data["group"] not in GROUPS:
        raise JudgeConfigError(f"{where}.group: must be one of {', '.join(GROUPS)}, got {brief(data['group'])}")
    for num in ("allowed_change", "weight"):
        if isinstance(data[num], bool) or not isinstance(data[num], (int, float)) or data[num] < 0:
            raise JudgeConfigError(f"{where}.{num}: must be a non-negative number, got {brief(data[num])}")
    if data["kind"] == "proportion" and not (data.get("numerator") and data.get("denominator")):
        raise JudgeConfigError(f"{where}: a proportion needs numerator and denominator (SQL predicates)")
    if data["kind"] in ("shift", "quantile") and not (data.get("value") and data.get("population")):
        raise JudgeConfigError(f"{where}: a {data['kind']} metric needs value (a column) and population (SQL predicate)")
    lim = data.get("absolute_limit")
    if lim is not None:
        if isinstance(lim, bool) or not isinstance(lim, (int, float)) or not math.isfinite(lim) or lim < 0:
            raise JudgeConfigError(f"{where}.absolute_limit: must be a non-negative number, got {brief(lim)}")
        if data["kind"] == "proportion" and not 0 < lim < 1:
            raise JudgeConfigError(f"{where}.absolute_limit: a proportion's limit is a rate between 0 and 1, "
                                   f"got {brief(lim)}")
    if data["kind"] == "quantile":
        q = data.get("quantile")
        if not isinstance(q, (int, float)) or not 0 < q < 1:
            raise JudgeConfigError(f"{where}.quantile: must be between 0 and 1, got {brief(q)}")
    return MetricSpec(**data)


def parse_judge_config(raw: Any, source: str = "<config>") -> JudgeConfig:
    """A JudgeConfig from a mapping; fields left out keep the defaults (metrics included)."""
    if raw is None:
        return DEFAULT_CONFIG
    if not isinstance(raw, Mapping):
        raise JudgeConfigError(f"{source}: expected a mapping at the top level")
    raw = dict(raw.get("judge", raw))
    known = {"metrics", "alpha", "pass_threshold", "marginal_threshold", "srm_threshold", "minimums",
             "bootstrap_resamples", "seed"}
    unknown = set(raw) - known
    if unknown:
        raise JudgeConfigError(f"{source}: unknown field(s) {', '.join(sorted(unknown))}")
    cfg = DEFAULT_CONFIG
    if "metrics" in raw:
        if not isinstance(raw["metrics"], list) or not raw["metrics"]:
            raise JudgeConfigError(f"{source}: metrics: expected a non-empty list")
        metrics = tuple(_check_metric(m, f"{source}: metrics[{i}]") for i, m in enumerate(raw["metrics"]))
        names = [m.name for m in metrics]
        if len(set(names)) != len(names):
            raise JudgeConfigError(f"{source}: metrics: duplicate names")
        cfg = replace(cfg, metrics=metrics)
    for key in ("alpha", "pass_threshold", "marginal_threshold", "srm_threshold"):
        if key in raw:
            if isinstance(raw[key], bool) or not isinstance(raw[key], (int, float)):
                raise JudgeConfigError(f"{source}: {key}: expected a number, got {brief(raw[key])}")
            cfg = replace(cfg, **{key: float(raw[key])})
    for key in ("bootstrap_resamples", "seed"):
        if key in raw:
            if isinstance(raw[key], bool) or not isinstance(raw[key], int) or raw[key] < 0:
                raise JudgeConfigError(f"{source}: {key}: expected a non-negative integer, got {brief(raw[key])}")
            cfg = replace(cfg, **{key: raw[key]})
    if "minimums" in raw:
        m = raw["minimums"]
        if not isinstance(m, Mapping) or set(m) - set(MinimumSamples.__dataclass_fields__):
            raise JudgeConfigError(f"{source}: minimums: expected keys among "
                                   f"{', '.join(MinimumSamples.__dataclass_fields__)}")
        cfg = replace(cfg, minimums=replace(JUDGE_MINIMUMS, **{k: int(v) for k, v in m.items()}))
    if not 0 < cfg.alpha < 1:
        raise JudgeConfigError(f"{source}: alpha: must be between 0 and 1, got {cfg.alpha}")
    if not 0 <= cfg.marginal_threshold <= cfg.pass_threshold <= 100:
        raise JudgeConfigError(f"{source}: thresholds: need 0 ≤ marginal_threshold ≤ pass_threshold ≤ 100")
    return cfg


def load_judge_config(path: str | Path | None) -> JudgeConfig:
    """Read a YAML judge config (see docs/analysis.md); ``None`` gives the defaults."""
    if path is None:
        return DEFAULT_CONFIG
    p = Path(path)
    if not p.exists():  # the common slip, in the reader's own words; load_yaml_file names the rest
        raise JudgeConfigError(f"{p}: no such judge config file")
    return parse_judge_config(load_yaml_file(p, JudgeConfigError), str(p))
