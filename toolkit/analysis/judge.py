"""Canary judgment: classify each metric, score, and decide promote / hold / rollback.

Data-driven, after Kayenta's judge: every metric has a kind (``proportion``, ``shift`` or
``quantile``), a direction that is bad (``increase``, ``decrease``, ``either``), an allowed
change, a weight and a group (primary, secondary, guardrail). A metric is

* ``NoData`` when either cohort is below its minimum sample size;
* ``High`` / ``Low`` when the confidence interval of the change excludes zero AND the point
  estimate moved by more than the allowed change (absolute for proportions, relative to the
  control for latencies);
* ``Pass`` otherwise.

A High or Low in a direction the metric does not care about is reported but is not a failure.
The score is 100 × (weight of metrics not failing) / (weight of metrics with data). The verdict
is taken by the first rule that applies, and names it:

1. ``srm`` — the cohort sizes do not match the intended split → ``hold`` (results untrustworthy).
2. ``critical:<metric>`` — a critical metric failed → ``rollback``.
3. ``not-enough-data`` — any primary metric is NoData → ``not_enough_data`` (never a verdict on
   partial evidence; guardrails and secondary metrics without data are reported, not blocking).
4. ``score>=pass`` → ``promote``; ``score>=marginal`` → ``hold``; ``score<marginal`` → ``rollback``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from contract.brief import brief
from toolkit.measures.definitions import DEFAULT_SUCCESS, SliDefinition, success_definition
from toolkit.analysis.stats import (DEFAULT_MINIMUMS, SRM_ALPHA, MinimumSamples, ProportionComparison,
                           QuantileComparison, ShiftComparison, SrmResult)
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


FINISHED = "outcome IN ('succeeded', 'failed', 'abandoned')"
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
               value="processing_ms", population=SUCCEEDED, unit="ms"),
)


@dataclass(frozen=True)
class JudgeConfig:
    metrics: tuple[MetricSpec, ...] = DEFAULT_METRICS
    alpha: float = 0.05
    pass_threshold: float = 95.0
    marginal_threshold: float = 75.0
    srm_threshold: float = SRM_ALPHA
    minimums: MinimumSamples = DEFAULT_MINIMUMS
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fmt_change(kind: str, x: float) -> str:
    if kind == "proportion":
        return f"{x * 100:+.2f} pp"
    return f"{x * 100:+.1f} %"


def classify(spec: MetricSpec, comparison: ProportionComparison | ShiftComparison | QuantileComparison,
             ) -> MetricResult:
    """Pass / High / Low / NoData for one metric, with the reason in words."""
    base = dict(name=spec.name, description=spec.description, group=spec.group, kind=spec.kind,
                direction=spec.direction, allowed_change=spec.allowed_change, weight=spec.weight,
                critical=spec.critical, comparison=asdict(comparison))
    if not comparison.enough_data:
        return MetricResult(**base, classification="NoData", failed=False, change=None, change_ci=None,
                            reason=comparison.reason)
    if isinstance(comparison, ProportionComparison):
        change, lo, hi = comparison.difference, comparison.ci_low, comparison.ci_high
    elif isinstance(comparison, ShiftComparison):
        med = comparison.control_median
        if not med:
            return MetricResult(**base, classification="NoData", failed=False, change=None, change_ci=None,
                                reason="control median is zero: a relative shift is undefined")
        change, lo, hi = comparison.relative_shift, comparison.ci_low / med, comparison.ci_high / med
    else:
        if comparison.relative_difference is None:
            return MetricResult(**base, classification="NoData", failed=False, change=None, change_ci=None,
                                reason="control quantile is zero: a relative change is undefined")
        change, lo, hi = comparison.relative_difference, comparison.rel_ci_low, comparison.rel_ci_high
    significant = lo > 0 or hi < 0
    if significant and change > spec.allowed_change:
        cls = "High"
    elif significant and change < -spec.allowed_change:
        cls = "Low"
    else:
        cls = "Pass"
    failed = (cls == "High" and spec.direction in ("increase", "either")) or \
             (cls == "Low" and spec.direction in ("decrease", "either"))
    ci_text = f"95 % CI [{_fmt_change(spec.kind, lo)}, {_fmt_change(spec.kind, hi)}]" if math.isfinite(lo) \
        else "CI unbounded"
    ci_text = ci_text.replace("95 %", f"{(1 - comparison.alpha) * 100:g} %")
    allowed = _fmt_change(spec.kind, spec.allowed_change).lstrip("+")
    if cls == "Pass":
        why = "no significant change" if not significant else f"significant but within ±{allowed}"
    else:
        why = f"{'rose' if cls == 'High' else 'fell'} beyond the allowed {allowed}"
        why += " (bad direction)" if failed else " (good direction, not a failure)"
    return MetricResult(**base, classification=cls, failed=failed, change=change, change_ci=(lo, hi),
                        reason=f"{_fmt_change(spec.kind, change)}, {ci_text}: {why}")


def judge(results: tuple[MetricResult, ...] | list[MetricResult], config: JudgeConfig = DEFAULT_CONFIG,
          srm: SrmResult | None = None) -> Verdict:
    """Score the classified metrics and apply the verdict rules in order."""
    results = tuple(results)
    with_data = [r for r in results if r.classification != "NoData"]
    total_weight = sum(r.weight for r in with_data)
    score = 100.0 * sum(r.weight for r in with_data if not r.failed) / total_weight if total_weight else None
    common = dict(score=score, pass_threshold=config.pass_threshold,
                  marginal_threshold=config.marginal_threshold, metrics=results,
                  srm=asdict(srm) if srm else None)
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
    if score >= config.pass_threshold:
        return Verdict("promote", "score>=pass", f"score {score:.0f} ≥ pass threshold {config.pass_threshold:g} "
                       f"(failed: {failed_names})", **common)
    if score >= config.marginal_threshold:
        return Verdict("hold", "score>=marginal", f"score {score:.0f} is marginal: ≥ {config.marginal_threshold:g} "
                       f"but < {config.pass_threshold:g} (failed: {failed_names})", **common)
    return Verdict("rollback", "score<marginal", f"score {score:.0f} < marginal threshold "
                   f"{config.marginal_threshold:g} (failed: {failed_names})", **common)


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
        cfg = replace(cfg, minimums=replace(DEFAULT_MINIMUMS, **{k: int(v) for k, v in m.items()}))
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
