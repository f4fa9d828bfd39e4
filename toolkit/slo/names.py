"""Naming conventions for everything generated from the SLO spec, in one place.

Recorded series follow Prometheus' ``level:metric:operations`` convention
(Sloth-style): ``slo:sli_error:ratio_rate5m{slo="publish-success"}``. The rule
generator, the promtool test generator, the dashboards and the live test all
take names from here, so a rename is one edit.
"""

from __future__ import annotations

from prometheus_client.utils import floatToGoString

from contract.durations import format_duration

__all__ = [
    "SLO_LABEL",
    "SERVICE_LABEL",
    "SEVERITY_LABEL",
    "OBJECTIVE_METRIC",
    "ERROR_BUDGET_METRIC",
    "BUDGET_REMAINING_METRIC",
    "BUDGET_SPENT_METRIC",
    "DATA_SINCE_METRIC",
    "CURRENT_BURN_RATE_METRIC",
    "error_ratio_metric",
    "burn_alert_name",
    "no_data_alert_name",
    "rule_group_name",
    "camel_case",
    "le_label",
    "le_spellings",
    "le_matcher",
    "RULES_FILE",
    "rule_tests_file",
    "series_selector",
]

SLO_LABEL = "slo"
SERVICE_LABEL = "service"
SEVERITY_LABEL = "severity"

OBJECTIVE_METRIC = "slo:objective:ratio"
ERROR_BUDGET_METRIC = "slo:error_budget:ratio"
# The engine's budget (toolkit.measures.definitions.budget_figures, docs/slo.md): spent = share of the WHOLE
# period's budget used so far = (error ratio over the period / error budget) × (covered time / period);
# remaining = 1 − spent. Covered time runs from DATA_SINCE_METRIC, clamped to the period.
BUDGET_SPENT_METRIC = "slo:error_budget_spent:ratio"
BUDGET_REMAINING_METRIC = "slo:error_budget_remaining:ratio"
# Unix time of the first evaluation at which the SLO's source counters had counted an event (kept by the
# rule reading its own previous value): where the period's data starts.
DATA_SINCE_METRIC = "slo:data_since:timestamp"
# Error ratio over the shortest alert window divided by the error budget.
CURRENT_BURN_RATE_METRIC = "slo:current_burn_rate:ratio"

# File names inside a profile's output directory. Prometheus loads ``*.rules.yml``,
# so the test file (``*.test.yml``) never ends up in a rule_files glob.
RULES_FILE = "slo.rules.yml"


def rule_tests_file(suite: str) -> str:
    """``slo.page.test.yml``: promtool test files, one per evaluation grid."""
    return f"slo.{suite}.test.yml"


def error_ratio_metric(window_s: float) -> str:
    """Recorded SLI error ratio over one window, e.g. ``slo:sli_error:ratio_rate1h12m``."""
    return f"slo:sli_error:ratio_rate{format_duration(window_s)}"


def camel_case(name: str) -> str:
    """``publish-success`` -> ``PublishSuccess`` (alert names are CamelCase by convention)."""
    return "".join(part[:1].upper() + part[1:] for part in name.replace("_", "-").split("-") if part)


def burn_alert_name(slo_name: str, severity: str) -> str:
    """One multi-window multi-burn-rate alert per SLO and severity, e.g. ``PublishSuccessErrorBudgetBurnPage``."""
    return f"{camel_case(slo_name)}ErrorBudgetBurn{camel_case(severity)}"


def no_data_alert_name(slo_name: str) -> str:
    """Fires when the SLI's source series are absent (target down, metric renamed, nothing ever counted)."""
    return f"{camel_case(slo_name)}SliNoData"


def rule_group_name(slo_name: str) -> str:
    return f"slo-{slo_name}"


def le_label(threshold_s: float) -> str:
    """The ``le`` label value prometheus_client writes for a bucket bound (1.0 -> "1.0", 0.05 -> "0.05")."""
    return floatToGoString(threshold_s)


def le_spellings(threshold_s: float) -> tuple[str, ...]:
    """Every ``le`` value a bucket bound may carry in Prometheus: prometheus_client writes "1.0", Prometheus 3
    normalises bucket labels on ingestion to "1" (an integral bound loses its ".0"; "0.05" stays as it is)."""
    written = le_label(threshold_s)
    normalised = written.removesuffix(".0")
    return tuple(dict.fromkeys((written, normalised)))


def le_matcher(threshold_s: float) -> str:
    r"""The label matcher for the threshold's bucket that holds on Prometheus 2 and 3: ``le="0.05"`` or
    ``le=~"1(\\.0)?"`` (backslash doubled: a PromQL string literal)."""
    spellings = le_spellings(threshold_s)
    if len(spellings) == 1:
        return f'le="{spellings[0]}"'
    return f'le=~"{spellings[1]}(\\\\.0)?"'


def series_selector(metric: str, labels: dict[str, str]) -> str:
    """``metric{a="x",b="y"}`` with labels in the given order (regex matchers use ``=~`` when the value says so)."""
    if not labels:
        return metric
    parts = []
    for key, value in labels.items():
        if isinstance(value, tuple):
            parts.append(f'{key}="{value[0]}"' if len(value) == 1 else f'{key}=~"{"|".join(value)}"')
        else:
            parts.append(f'{key}="{value}"')
    return f"{metric}{{{','.join(parts)}}}"
