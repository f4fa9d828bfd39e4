"""Prometheus recording and alerting rules from the SLO spec (the *generate* step).

Per SLO and profile:

* ``slo:sli_error:ratio_rate<W>`` — the SLI error ratio over every long and short
  alert window of the profile and over the SLO period;
* ``slo:error_budget_spent:ratio`` and ``slo:error_budget_remaining:ratio`` by the engine's definition
  (``BUDGET_DEFINITION``: share of the *whole* period's budget used so far, covered time counted from
  ``slo:data_since:timestamp``), ``slo:current_burn_rate:ratio`` over the shortest alert window, plus
  the objective and budget as series for dashboards;
* one multi-window multi-burn-rate alert per severity (SRE Workbook ch. 5): a
  window pair fires when the error ratio over *both* its long and its short window
  exceeds ``burn_rate × error_budget``; the pairs of a severity are OR-ed;
* one absent-data alert per SLO.

No traffic is no burn: every ratio divides by a denominator filtered with ``> 0``
and falls back to ``vector(0)``, so a quiet window records 0, never NaN. That
fallback would also hide a dead target, which is why the absent-data alert exists.
It reads the source series themselves, which the service creates at zero when it
starts (docs/architecture.md): they are absent only when nothing is scraped — the
target is down, or the metric was renamed — never because the service is idle.

Latency SLOs count good events from the histogram bucket whose bound *is* the
threshold against ``_count``; ``histogram_quantile`` interpolates inside a bucket
and is never used for an SLI. The bucket is matched as prometheus_client writes it
(``le="1.0"``) and as Prometheus 3 normalises it (``le="1"``): ``le=~"1(\\.0)?"``.

Rules are plain frozen dataclasses; ``rules_document`` turns them into the
Prometheus rule-file structure, and ``toolkit.slo.files`` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from toolkit.slo import names
from contract.durations import format_duration
from toolkit.slo.spec import AlertWindow, Slo, SloSpec

__all__ = [
    "RecordingRule",
    "AlertRule",
    "RuleGroup",
    "RuleSet",
    "error_budget",
    "burn_threshold",
    "recorded_windows",
    "good_rate_expr",
    "total_rate_expr",
    "bad_rate_expr",
    "error_ratio_expr",
    "source_selector",
    "generate_rules",
    "rules_document",
    "no_data_for_s",
    "BUDGET_DEFINITION",
    "data_since_expr",
    "budget_spent_expr",
]

# The one wording of the error budget figures, for rule descriptions, dashboard tooltips and docs/slo.md.
BUDGET_DEFINITION = ("spent = share of the whole period's error budget used so far = (error ratio over the period "
                     "/ error budget) × (time covered by data / period); remaining = 1 − spent. 100 % remaining "
                     "is untouched, 0 % spent, negative overspent. Covered time runs from the first counted "
                     "event, at most the period: after a full period this is 1 − error ratio / error budget.")


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AlertRule:
    alert: str
    expr: str
    for_s: float
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RuleGroup:
    name: str
    rules: tuple[RecordingRule | AlertRule, ...]


@dataclass(frozen=True)
class RuleSet:
    """All rules of one spec under one profile."""

    profile: str
    service: str
    groups: tuple[RuleGroup, ...]
    source: str = "slo.yaml"
    time_compression: float = 1
    windows: tuple[AlertWindow, ...] = field(default_factory=tuple)


def _decimal(x: float) -> Decimal:
    # Through str() so that 0.99 is the decimal 0.99 the spec author wrote, not its binary neighbour.
    return Decimal(repr(float(x)))


def _text(d: Decimal) -> str:
    """A decimal as PromQL reads it: no exponent, no trailing zeros (0.144, 6, 0.01)."""
    s = format(d.normalize(), "f")
    return s


def error_budget(slo: Slo) -> Decimal:
    """1 - objective, exactly as written in the spec (0.99 -> 0.01, not 0.010000000000000009)."""
    return Decimal(1) - _decimal(slo.objective)


def burn_threshold(slo: Slo, window: AlertWindow) -> Decimal:
    """The error ratio a window pair must exceed: burn_rate × error budget (14.4 × 0.01 = 0.144)."""
    return _decimal(window.burn_rate) * error_budget(slo)


def recorded_windows(spec: SloSpec, slo: Slo, profile: str) -> tuple[float, ...]:
    """Every long and short alert window of the profile plus the SLO period, shortest first, no duplicates."""
    windows = {w for aw in spec.windows_for(profile) for w in (aw.long_s, aw.short_s)}
    windows.add(spec.period_for(slo, profile))
    return tuple(sorted(windows))


def _rate_sum(selector: str, window_s: float) -> str:
    return f"sum(rate({selector}[{format_duration(window_s)}]))"


def _ratio_outcomes(slo: Slo, which: str) -> tuple[str, ...]:
    prom = slo.prometheus
    if which == "bad":
        return tuple(o for o in prom["total"] if o not in prom["good"])
    return tuple(prom[which])


def _ratio_selector(slo: Slo, outcomes: tuple[str, ...]) -> str:
    return names.series_selector(slo.prometheus["counter"], {slo.prometheus["outcome_label"]: outcomes})


def _bucket_selector(slo: Slo) -> str:
    return f"{slo.prometheus['histogram']}_bucket{{{names.le_matcher(slo.threshold_s)}}}"


def _count_selector(slo: Slo) -> str:
    return f"{slo.prometheus['histogram']}_count"


def source_selector(slo: Slo) -> str:
    """The raw series an SLO is computed from; absent() on it means no data at all."""
    if slo.kind == "ratio":
        return _ratio_selector(slo, _ratio_outcomes(slo, "total"))
    return _count_selector(slo)


def good_rate_expr(slo: Slo, window: str, fn: str = "rate") -> str:
    """Good events per second over a window (``window`` is PromQL text: "5m" or "$__rate_interval");
    ``fn="increase"`` gives the count over the window instead."""
    if slo.kind == "ratio":
        return f"sum({fn}({_ratio_selector(slo, _ratio_outcomes(slo, 'good'))}[{window}]))"
    return f"sum({fn}({_bucket_selector(slo)}[{window}]))"


def total_rate_expr(slo: Slo, window: str, fn: str = "rate") -> str:
    if slo.kind == "ratio":
        return f"sum({fn}({_ratio_selector(slo, _ratio_outcomes(slo, 'total'))}[{window}]))"
    return f"sum({fn}({_count_selector(slo)}[{window}]))"


def bad_rate_expr(slo: Slo, window: str) -> str:
    """Bad events per second; 0 (not empty) when no bad outcome was ever counted."""
    if slo.kind == "ratio":
        # The service creates every outcome at 0, but a spec may name a counter whose children appear only
        # once incremented: then no failure yet means no series, which must read as 0, not as no data.
        return f"(sum(rate({_ratio_selector(slo, _ratio_outcomes(slo, 'bad'))}[{window}])) or vector(0))"
    # Every bucket and _count exist together, so the difference is never empty while data flows.
    return f"({total_rate_expr(slo, window)} - {good_rate_expr(slo, window)})"


def error_ratio_expr(slo: Slo, window: str) -> str:
    """Bad / total over a window; 0 when the window saw no events (no NaN from 0/0)."""
    return (
        "(\n"
        f"  {bad_rate_expr(slo, window)}\n"
        "/\n"
        f"  ({total_rate_expr(slo, window)} > 0)\n"
        ")\n"
        "or vector(0)"
    )


def source_total_expr(slo: Slo) -> str:
    """The SLO's counted events so far (raw counter sum, not a rate): > 0 once any event was counted."""
    return f"sum({source_selector(slo)})"


def data_since_expr(slo: Slo) -> str:
    """When the SLO's data starts: the first evaluation at which its counters had counted an event.

    The rule reads its own previous value, so the time is kept across counter resets and idle spells;
    before the first event it records nothing (no data: the budget figures are absent, as the engine's
    are None without events)."""
    return (f'min({names.DATA_SINCE_METRIC}{{{names.SLO_LABEL}="{slo.name}"}})\n'
            "or\n"
            f"(vector(time()) and on() ({source_total_expr(slo)} > 0))")


def budget_spent_expr(slo: Slo, period_s: float) -> str:
    """The engine's spent (``toolkit.measures.definitions.budget_figures``): average burn rate over the
    covered part of the period × covered / period, covered = time since the data starts, at most the period."""
    sel = f'{{{names.SLO_LABEL}="{slo.name}"}}'
    return (f"({names.error_ratio_metric(period_s)}{sel} / {_text(error_budget(slo))})\n"
            f"* clamp_max((time() - {names.DATA_SINCE_METRIC}{sel}) / {_text(_decimal(period_s))}, 1)")


def no_data_for_s(spec: SloSpec, profile: str) -> float:
    """How long the source series must be absent before the no-data alert fires.

    Twice the shortest page short window (10m in prod, 10s in the lab): long enough to
    ride over a restart, short enough that a dead target pages about as fast as an outage.
    """
    return 2 * min(w.short_s for w in spec.windows_for(profile))


def _labels(spec: SloSpec, slo: Slo, **extra: str) -> tuple[tuple[str, str], ...]:
    return ((names.SLO_LABEL, slo.name), (names.SERVICE_LABEL, spec.service), *extra.items())


def _slo_rules(spec: SloSpec, slo: Slo, profile: str) -> RuleGroup:
    labels = _labels(spec, slo)
    sel = f'{{{names.SLO_LABEL}="{slo.name}"}}'
    budget = error_budget(slo)
    period_s = spec.period_for(slo, profile)
    windows = spec.windows_for(profile)
    rules: list[RecordingRule | AlertRule] = []

    for w in recorded_windows(spec, slo, profile):
        rules.append(RecordingRule(names.error_ratio_metric(w), error_ratio_expr(slo, format_duration(w)), labels))
    rules.append(RecordingRule(names.OBJECTIVE_METRIC, f"vector({_text(_decimal(slo.objective))})", labels))
    rules.append(RecordingRule(names.ERROR_BUDGET_METRIC, f"vector({_text(budget)})", labels))
    rules.append(RecordingRule(names.DATA_SINCE_METRIC, data_since_expr(slo), labels))
    rules.append(RecordingRule(names.BUDGET_SPENT_METRIC, budget_spent_expr(slo, period_s), labels))
    rules.append(RecordingRule(names.BUDGET_REMAINING_METRIC, f"1 - {names.BUDGET_SPENT_METRIC}{sel}", labels))
    shortest = min(w.short_s for w in windows)
    rules.append(RecordingRule(
        names.CURRENT_BURN_RATE_METRIC, f"{names.error_ratio_metric(shortest)}{sel} / {_text(budget)}", labels))

    for severity in dict.fromkeys(w.severity for w in windows):
        pairs = [w for w in windows if w.severity == severity]
        clauses = []
        for w in pairs:
            threshold = _text(burn_threshold(slo, w))
            clauses.append(
                "(\n"
                f"    {names.error_ratio_metric(w.long_s)}{sel} > {threshold}\n"
                "  and\n"
                f"    {names.error_ratio_metric(w.short_s)}{sel} > {threshold}\n"
                ")"
            )
        described = "; ".join(
            f"{_text(_decimal(w.burn_rate))}x over {w.long} and {w.short} "
            f"(error ratio > {_text(burn_threshold(slo, w))}, {_text(_decimal(w.budget_consumed) * 100)}% of the "
            f"{format_duration(period_s)} budget in {w.long})"
            for w in pairs
        )
        rules.append(AlertRule(
            names.burn_alert_name(slo.name, severity),
            "\nor\n".join(clauses),
            0,
            _labels(spec, slo, **{names.SEVERITY_LABEL: severity}),
            (
                ("summary", f"{slo.name}: error budget burning fast enough to {severity} ({profile} profile)"),
                ("description", f"SLO {slo.name} (objective {_text(_decimal(slo.objective))}) burns its error "
                                f"budget at: {described}."),
            ),
        ))

    rules.append(AlertRule(
        names.no_data_alert_name(slo.name),
        f"absent({source_selector(slo)})",
        no_data_for_s(spec, profile),
        _labels(spec, slo, **{names.SEVERITY_LABEL: "page"}),
        (
            ("summary", f"{slo.name}: no SLI data ({profile} profile)"),
            ("description", f"No {source_selector(slo)} series: the target is down or not scraped, or the metric "
                            f"was renamed (the service creates them at 0 when it starts, so an idle service "
                            f"still has them). The burn-rate alerts read a missing SLI as no traffic and cannot "
                            f"fire."),
        ),
    ))
    return RuleGroup(names.rule_group_name(slo.name), tuple(rules))


def generate_rules(spec: SloSpec, profile: str) -> RuleSet:
    """All recording and alert rules for a spec under a profile (``prod`` or ``lab``)."""
    prof = spec.profile(profile)
    return RuleSet(
        profile=profile,
        service=spec.service,
        groups=tuple(_slo_rules(spec, slo, profile) for slo in spec.slos),
        source=spec.source,
        time_compression=prof.time_compression,
        windows=spec.windows_for(profile),
    )


def rules_document(ruleset: RuleSet) -> dict:
    """The rule file as Prometheus reads it (``groups: [{name, rules: [...]}]``)."""
    groups = []
    for g in ruleset.groups:
        rules = []
        for r in g.rules:
            if isinstance(r, RecordingRule):
                rules.append({"record": r.record, "expr": r.expr, "labels": dict(r.labels)})
            else:
                rule = {"alert": r.alert, "expr": r.expr}
                if r.for_s:
                    rule["for"] = format_duration(r.for_s)
                rule["labels"] = dict(r.labels)
                rule["annotations"] = dict(r.annotations)
                rules.append(rule)
        groups.append({"name": g.name, "rules": rules})
    return {"groups": groups}
