"""Grafana dashboards from the SLO spec, built with grafana-foundation-sdk (the *generate* step).

Four boards, each a function returning the SDK's dashboard model:

* **SLO overview** (Grafana's home): per SLO the SLI over the period with its
  numerator and denominator, error budget remaining, current burn rate, the burn
  rate over every alert window against its threshold, and alert state;
* **Publish funnel & RED**: lifecycle events as a funnel, request rate / errors /
  duration per route, publish success ratio per cohort;
* **Guardrails**: p99 processing latency (a ``histogram_quantile`` *estimate*,
  labelled as such), 5xx ratio of the unrelated flows (feed, status), CPU seconds
  per successful publish, resident memory, load amplification (requests per
  successful publish);
* **Debugging**: template variables for region, app_version, network_type and the
  flags (release, transcode_mode), the mechanism metrics narrowed by them, and links
  from a request / trace to Jaeger.

Every PromQL here reads recorded series named in ``toolkit.slo.names`` or the
metrics of docs/architecture.md; sparse counters (failures that may never have
happened) fall back to ``vector(0)`` so a panel shows 0 rather than "No data".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from toolkit.slo import names
from contract.durations import format_duration
from toolkit.slo.rules import BUDGET_DEFINITION, error_budget, good_rate_expr, total_rate_expr
from toolkit.slo.spec import Slo, SloSpec

__all__ = [
    "PROMETHEUS_UID",
    "JAEGER_UID",
    "JAEGER_UI_URL",
    "GeneratedDashboard",
    "generate_dashboards",
    "dashboard_json",
    "HOME_DASHBOARD_UID",
    "COHORT_VARIABLES",
    "PanelQuery",
    "prometheus_queries",
    "substitute_variables",
]

# Fixed datasource UIDs: the provisioning files (dashboards/grafana/provisioning) create them.
PROMETHEUS_UID = "prometheus"
JAEGER_UID = "jaeger"
# Where a browser reaches Jaeger's UI in the compose lab (published port on the host).
JAEGER_UI_URL = "http://localhost:16686"
HOME_DASHBOARD_UID = "obslab-slo-overview"
API_SERVICE = "publish-api"
# Routes of the flows a publish change must not hurt (guardrails): the feed and the status poll.
UNRELATED_ROUTES = ("/v1/feed", "/v1/uploads/<upload_id>")
# Dashboard variable -> metric label; the flags are cohorts too (rollout, transcode mode).
COHORT_VARIABLES = ("region", "app_version", "network_type", "release", "transcode_mode")

_PROM = model.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)
_JAEGER = model.DataSourceRef(type_val="jaeger", uid=JAEGER_UID)
_RI = "$__rate_interval"


@dataclass(frozen=True)
class GeneratedDashboard:
    uid: str
    filename: str
    dashboard: model.Dashboard


# ---------------------------------------------------------------------------
# small builders


def _q(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> prom.Dataquery:
    q = prom.Dataquery().expr(expr).ref_id(ref).datasource(_PROM).legend_format(legend or "__auto")
    return q.instant() if instant else q.range()


def _targets(panel, queries: list[tuple[str, str]], instant: bool = False):
    for i, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_q(expr, legend, chr(ord("A") + i), instant))
    return panel


def _thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
        [model.Threshold(value=v, color=c) for v, c in steps])


def _stat(title: str, description: str, queries: list[tuple[str, str]], unit: str, *, width: int = 6,
          height: int = 5, decimals: int | None = None, thresholds: dash.ThresholdsConfig | None = None):
    p = (stat.Panel().title(title).description(description).datasource(_PROM).unit(unit).span(width).height(height)
         .graph_mode(common.BigValueGraphMode.AREA).color_mode(common.BigValueColorMode.VALUE)
         .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if decimals is not None:
        p = p.decimals(decimals)
    if thresholds is not None:
        p = p.thresholds(thresholds)
    return _targets(p, queries)


def _series(title: str, description: str, queries: list[tuple[str, str]], unit: str, *, width: int = 12,
            height: int = 8, thresholds: dash.ThresholdsConfig | None = None, links: list | None = None,
            min_value: float | None = None):
    p = (timeseries.Panel().title(title).description(description).datasource(_PROM).unit(unit).span(width)
         .height(height).fill_opacity(10).line_width(1)
         .legend(common_b.VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.TABLE)
                 .placement(common.LegendPlacement.BOTTOM).calcs(["lastNotNull", "max"])))
    if thresholds is not None:
        p = p.thresholds(thresholds).thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.LINE))
    if links:
        p = p.data_links(links)
    if min_value is not None:
        p = p.min(min_value)
    return _targets(p, queries)


def _ratio_by(by: str, numerator: str, denominator: str) -> str:
    """sum by(by) of numerator / denominator rates; a group with no numerator series shows 0, not a gap
    (a labelled counter child exists only once incremented: a cohort that only failed has no success series)."""
    num = f"sum by ({by}) (rate({numerator}[{_RI}]))"
    den = f"sum by ({by}) (rate({denominator}[{_RI}]))"
    return f"({num} or 0 * {den}) / {den}"


def _link(title: str, url: str, *, keep_time: bool = False, include_vars: bool = False) -> dash.DashboardLink:
    return (dash.DashboardLink(title).type(model.DashboardLinkType.LINK).url(url).target_blank(True)
            .keep_time(keep_time).include_vars(include_vars).icon("external link"))


def _board_links() -> list[dash.DashboardLink]:
    return [dash.DashboardLink("obslab dashboards").type(model.DashboardLinkType.DASHBOARDS).tags(["obslab"])
            .as_dropdown(False).keep_time(True).include_vars(False)]


def _board(uid: str, title: str, description: str, tags: list[str]) -> dash.Dashboard:
    return (dash.Dashboard(title).uid(uid).description(description).tags(["obslab", *tags]).readonly()
            .time("now-15m", "now").refresh("10s").timezone("utc")
            .tooltip(model.DashboardCursorSync.CROSSHAIR).links(_board_links()))


def _pct(x) -> str:
    return f"{float(x) * 100:g}%"


# ---------------------------------------------------------------------------
# SLO overview


def _slo_row(spec: SloSpec, slo: Slo, profile: str, b: dash.Dashboard) -> dash.Dashboard:
    sel = f'{{{names.SLO_LABEL}="{slo.name}"}}'
    period = spec.period_for(slo, profile)
    period_txt = format_duration(period)
    budget = error_budget(slo)
    windows = spec.windows_for(profile)
    what = ("publish attempts that ended published, of succeeded + failed"
            if slo.kind == "ratio" else
            f"published videos with processing latency <= {slo.threshold_s:g}s (bucket le=\"{names.le_label(slo.threshold_s)}\"), of all published")
    b = b.with_row(dash.Row(f"{slo.name}: objective {_pct(slo.objective)} over {period_txt} ({profile} profile)"))
    b = b.with_panel(_stat(
        f"SLI over the {period_txt} period", f"{slo.description} Share of {what}, from Prometheus counters over the "
        f"SLO period ({period_txt}, {profile} profile). Objective {_pct(slo.objective)}.",
        [(f"1 - {names.error_ratio_metric(period)}{sel}", "SLI")], "percentunit", decimals=3,
        thresholds=_thresholds((None, "red"), (slo.objective, "green"))))
    b = b.with_panel(_stat(
        "Error budget remaining", f"Of the {period_txt} period's error budget ({budget} of its events), as "
        f"`obslab budget` and the lab dashboard count it: {BUDGET_DEFINITION}",
        [(f"{names.BUDGET_REMAINING_METRIC}{sel}", "remaining")], "percentunit",
        decimals=1, thresholds=_thresholds((None, "red"), (0, "orange"), (0.5, "green"))))
    shortest = min(w.short_s for w in windows)
    b = b.with_panel(_stat(
        "Current burn rate", f"Error ratio over the last {format_duration(shortest)} / error budget {budget}. "
        f"1x spends exactly the budget over {period_txt}.", [(f"{names.CURRENT_BURN_RATE_METRIC}{sel}", "burn")],
        "x", decimals=2, thresholds=_thresholds(
            (None, "green"), *[(w.burn_rate, "orange" if w.severity == "ticket" else "red") for w in windows])))
    b = b.with_panel(_stat(
        "Good / total events over the period", f"Numerator and denominator of the SLI over {period_txt} "
        "(counts estimated by increase(), so fractional).",
        [(good_rate_expr(slo, period_txt, fn="increase"), "good"),
         (total_rate_expr(slo, period_txt, fn="increase"), "total")], "short", decimals=0))
    burn_queries, seen = [], set()
    for w in windows:
        for win in (w.long_s, w.short_s):
            if win not in seen:
                seen.add(win)
                burn_queries.append((f"{names.error_ratio_metric(win)}{sel} / {budget}", f"{format_duration(win)}"))
    b = b.with_panel(_series(
        "Burn rate per alert window", "Error ratio over each alert window / error budget. A page fires when both "
        "windows of a pair exceed its factor: " + "; ".join(
            f"{w.severity} {w.long}/{w.short} > {w.burn_rate:g}x" for w in windows) + ".",
        burn_queries, "x", thresholds=_thresholds((None, "green"), *[
            (w.burn_rate, "orange" if w.severity == "ticket" else "red") for w in windows]), min_value=0))
    b = b.with_panel(_series(
        "SLI per window", "1 - error ratio over the page windows, against the objective.",
        [(f"1 - {names.error_ratio_metric(win)}{sel}", f"SLI {format_duration(win)}")
         for win in sorted({w.long_s for w in windows if w.severity == 'page'} | {shortest})],
        "percentunit", thresholds=_thresholds((None, "red"), (slo.objective, "green"))))
    alert_sel = f'{{{names.SLO_LABEL}="{slo.name}"}}'
    b = b.with_panel(_stat(
        "Alerts firing", "Burn-rate and no-data alerts of this SLO in state firing (ALERTS series).",
        [(f'count(ALERTS{{alertstate="firing", {names.SLO_LABEL}="{slo.name}"}}) or vector(0)', "firing")],
        "short", width=6, height=8, decimals=0, thresholds=_thresholds((None, "green"), (1, "red"))))
    b = b.with_panel(
        _targets(statetimeline.Panel().title("Alert state").description(
            "Pending and firing alerts of this SLO over time (Prometheus ALERTS series; nothing pending or firing = "
            "an empty 'none' row).").datasource(_PROM).span(18).height(8),
            [(f'max by (alertname, alertstate) (ALERTS{alert_sel}) '
              f'or label_replace(vector(0), "alertname", "none", "", "")', "{{alertname}} {{alertstate}}")]))
    return b


def slo_overview(spec: SloSpec, profile: str) -> dash.Dashboard:
    b = _board(HOME_DASHBOARD_UID, f"SLO overview: {spec.service}",
               f"SLIs, error budgets and burn rates from {Path(spec.source).name} ({profile} profile). Generated by "
               f"`obslab dashboards`; do not edit in Grafana.", ["slo"])
    for slo in spec.slos:
        b = _slo_row(spec, slo, profile, b)
    return b


# ---------------------------------------------------------------------------
# publish funnel and RED by cohort

_FUNNEL_EVENTS = ("upload_started", "upload_completed", "transcode_started", "transcode_completed",
                  "publish_succeeded", "publish_failed", "upload_cancelled")


def _jaeger_search_url(tags: dict[str, str] | None = None, operation: str | None = None) -> str:
    """A Jaeger search over the dashboard's range. Jaeger matches all the tags on ONE span (its attributes,
    error=true for an error status), so tags that live on different spans must not be combined."""
    url = f"{JAEGER_UI_URL}/search?service={API_SERVICE}&start=${{__from}}000&end=${{__to}}000&limit=20"
    if operation:
        url += "&operation=" + quote(operation, safe="")
    if tags:
        body = "{" + ",".join(f'"{k}":"{v}"' for k, v in tags.items()) + "}"
        url += "&tags=" + quote(body, safe="${}_.:")
    return url


def funnel_and_red(spec: SloSpec, profile: str) -> dash.Dashboard:
    # Cohort breakdowns read the cohort-labelled counter; the SLO's own counter has only `outcome`.
    out = "obslab_publish_outcomes_total"
    b = _board("obslab-publish-funnel", "Publish funnel and RED by cohort",
               "Where attempts drop out of the publish lifecycle, and rate / errors / duration per route and "
               "cohort.", ["funnel", "red"])
    b = b.with_row(dash.Row("Funnel"))
    b = b.with_panel(_targets(
        table.Panel().title("Lifecycle events over the range").description(
            "Events written per lifecycle step over the dashboard range (obslab_events_total; increase(), so "
            "fractional). upload_started -> publish_succeeded is the funnel.").datasource(_PROM).span(8).height(9),
        [(f'sum by (event) (increase(obslab_events_total{{event=~"{"|".join(_FUNNEL_EVENTS)}"}}[$__range]))',
          "{{event}}")], instant=True))
    b = b.with_panel(_series(
        "Lifecycle events per second", "Rate of each lifecycle event (obslab_events_total).",
        [(f'sum by (event) (rate(obslab_events_total{{event=~"{"|".join(_FUNNEL_EVENTS)}"}}[{_RI}]))',
          "{{event}}")], "ops", width=16, height=9))
    b = b.with_row(dash.Row("RED per route"))
    b = b.with_panel(_series(
        "Requests per second by route", "obslab_http_requests_total by route (rate).",
        [(f"sum by (route) (rate(obslab_http_requests_total[{_RI}]))", "{{route}}")], "reqps", width=8))
    b = b.with_panel(_series(
        "Error ratio (5xx) by route", "5xx responses / all responses per route. 0 when none failed.",
        [(_ratio_by("route", 'obslab_http_requests_total{code=~"5.."}', "obslab_http_requests_total"), "{{route}}")],
        "percentunit", width=8, links=[_link("Jaeger: failed requests in this range",
                                             _jaeger_search_url({"error": "true"}))]))
    b = b.with_panel(_series(
        "Duration p95 by route (estimate)", "histogram_quantile over obslab_http_request_duration_seconds: "
        "interpolated inside a bucket, an estimate, not an exact percentile.",
        [(f"histogram_quantile(0.95, sum by (route, le) (rate(obslab_http_request_duration_seconds_bucket[{_RI}])))",
          "{{route}}")], "s", width=8))
    b = b.with_row(dash.Row("Publish success ratio by cohort"))
    for dim in ("region", "app_version", "network_type", "release", "transcode_mode"):
        b = b.with_panel(_series(
            f"Success ratio by {dim}", f"succeeded / (succeeded + failed) per {dim} ({out}).",
            [(_ratio_by(dim, f'{out}{{outcome="succeeded"}}', f'{out}{{outcome=~"succeeded|failed"}}'),
              f"{{{{{dim}}}}}")],
            "percentunit", width=8, height=7))
    b = b.with_panel(_series(
        "Outcomes per second", f"Terminal outcomes of publish attempts ({out}).",
        [(f"sum by (outcome) (rate({out}[{_RI}]))", "{{outcome}}")], "ops", width=8, height=7))
    return b


# ---------------------------------------------------------------------------
# guardrails


def guardrails(spec: SloSpec, profile: str) -> dash.Dashboard:
    latency = next((s for s in spec.slos if s.kind == "latency"), None)
    hist = latency.prometheus["histogram"] if latency else "obslab_publish_processing_seconds"
    # The outcome-only counter: every outcome exists from the service's start, so rate() misses no publish.
    succeeded = 'sum(rate(obslab_slo_publish_outcomes_total{outcome="succeeded"}[$__rate_interval]))'
    unrelated = "|".join(UNRELATED_ROUTES)
    b = _board("obslab-guardrails", "Guardrails", "What a change to publishing must not make worse: tail latency, "
               "unrelated flows, cost per publish, load amplification.", ["guardrails"])
    b = b.with_panel(_series(
        "p99 processing latency (estimate from histogram buckets)",
        f"histogram_quantile(0.99) over {hist}: linear interpolation inside the bucket that holds the 99th "
        "percentile, so an ESTIMATE whose error is up to the bucket width (see docs/slo.md for the error measured "
        "against the exact percentile from events). The SLO itself counts the bucket on the threshold instead.",
        [(f"histogram_quantile(0.99, sum by (le) (rate({hist}_bucket[{_RI}])))", "p99 (estimate)"),
         (f"histogram_quantile(0.99, sum by (le, release) (rate({hist}_bucket[{_RI}])))", "p99 (estimate) {{release}}")],
        "s", thresholds=_thresholds((None, "green"), (latency.threshold_s if latency else 1.0, "red"))))
    b = b.with_panel(_series(
        "Unrelated flows: 5xx ratio (feed, status)", f"5xx / all responses on {', '.join(UNRELATED_ROUTES)}. "
        "A publish change should leave these flat.",
        [(_ratio_by("route", f'obslab_http_requests_total{{route=~"{unrelated}", code=~"5.."}}',
                    f'obslab_http_requests_total{{route=~"{unrelated}"}}'), "{{route}}")],
        "percentunit", links=[_link("Jaeger: failed requests in this range", _jaeger_search_url({"error": "true"}))]))
    b = b.with_panel(_series(
        "CPU seconds per successful publish", "CPU seconds of the API and transcoder processes per published "
        "video (rate / rate). +Inf while nothing publishes.",
        [(f"sum by (service) (rate(obslab_process_cpu_seconds_total[{_RI}])) / scalar({succeeded})",
          "{{service}}"),
         (f"sum(rate(obslab_process_cpu_seconds_total[{_RI}])) / {succeeded}", "all processes")], "s"))
    b = b.with_panel(_series(
        "Resident memory and memory per publish/s", "Resident memory of the service processes (sum of live "
        "workers), and that memory divided by the publish rate (bytes per publish/s: the memory a unit of "
        "throughput costs).",
        [("sum by (service) (obslab_process_resident_memory_bytes)", "RSS {{service}}"),
         (f"sum(obslab_process_resident_memory_bytes) / {succeeded}", "bytes per publish/s")], "bytes"))
    b = b.with_panel(_series(
        "Load amplification: requests per successful publish", "All HTTP requests to the API (uploads, chunks, "
        "retries, completes, polls, feed) / published videos. Retries and polling raise it.",
        [(f"sum(rate(obslab_http_requests_total[{_RI}])) / {succeeded}", "requests per publish"),
         (f'sum(rate(obslab_http_requests_total{{route=~"/v1/uploads.*"}}[{_RI}])) / {succeeded}',
          "publish-flow requests per publish")], "short", width=24))
    return b


# ---------------------------------------------------------------------------
# debugging


class _JaegerQuery(cogbuilder.Builder[cogvariants.Dataquery]):
    """A Jaeger datasource query (the SDK has no Jaeger builder): look a trace up by ID."""

    class _Model(cogvariants.Dataquery):
        def __init__(self, ref_id: str, query: str):
            self.ref_id, self.query = ref_id, query

        def to_json(self) -> dict[str, object]:
            return {"refId": self.ref_id, "datasource": _JAEGER.to_json(), "queryType": "", "query": self.query}

    def __init__(self, ref_id: str, query: str):
        self._model = self._Model(ref_id, query)

    def build(self) -> cogvariants.Dataquery:
        return self._model


def _cohort_matchers() -> str:
    return ", ".join(f'{v}=~"${v}"' for v in COHORT_VARIABLES)


def _variable(name: str, metric: str) -> dash.QueryVariable:
    return (dash.QueryVariable(name).label(name).datasource(_PROM)
            .query({"query": f"label_values({metric}, {name})", "refId": f"var-{name}"})
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).include_all(True).all_value(".*").multi(True)
            .sort(model.VariableSort.ALPHABETICAL_ASC)
            .current(model.VariableOption(selected=True, text="All", value="$__all")))


def debugging(spec: SloSpec, profile: str) -> dash.Dashboard:
    outcomes = "obslab_publish_outcomes_total"
    b = _board("obslab-debugging", "Debugging: broad to narrow",
               "Narrow a symptom down by cohort (region, app version, network, release, transcode mode), read the "
               "mechanism metrics, then open a request's trace in Jaeger.", ["debugging"])
    for v in COHORT_VARIABLES:
        b = b.with_variable(_variable(v, outcomes))
    b = b.with_variable(dash.TextBoxVariable("request_id").label("request_id (from events)").default_value(""))
    b = b.with_variable(dash.TextBoxVariable("trace_id").label("trace_id (from events)").default_value(""))
    b = b.links([*_board_links(),
                 _link("Jaeger: this request's traces",
                       f"{JAEGER_UI_URL}/search?service={API_SERVICE}&limit=20&tags="
                       + quote('{"request_id":"$request_id"}', safe="$_")),
                 _link("Jaeger: trace by ID", f"{JAEGER_UI_URL}/trace/$trace_id")])
    m = _cohort_matchers()
    b = b.with_row(dash.Row("Narrow by cohort"))
    b = b.with_panel(_series(
        "Failure ratio of the selected cohort", f"failed / (succeeded + failed) for {m}.",
        [(f'(sum(rate({outcomes}{{outcome="failed", {m}}}[{_RI}])) or vector(0)) '
          f'/ sum(rate({outcomes}{{outcome=~"succeeded|failed", {m}}}[{_RI}]))', "failure ratio")],
        # A failed publish answers 5xx from upload.complete, which carries no cohort: all regions.
        "percentunit", links=[_link("Jaeger: failed publish attempts in this range (all cohorts)",
                                    _jaeger_search_url({"error": "true"}, operation="upload.complete"))]))
    b = b.with_panel(_targets(
        table.Panel().title("Failures by cohort (over the range)").description(
            f"Failed attempts per cohort over the dashboard range, largest first ({outcomes}). "
            "A row's link opens the uploads created in its region (only upload.create spans carry the region).")
        .datasource(_PROM).span(12).height(8)
        .data_links([_link("Jaeger: uploads created in ${__data.fields.region} in this range",
                           _jaeger_search_url({"region": "${__data.fields.region}"}, operation="upload.create"))]),
        [(f'sort_desc(sum by (region, app_version, network_type, release, transcode_mode) '
          f'(increase({outcomes}{{outcome=~"failed|succeeded", {m}}}[$__range])))', "")], instant=True))
    b = b.with_row(dash.Row("Mechanism"))
    b = b.with_panel(_series(
        "Chunk retry and failure rate by network", "Chunk retries and failed chunks per uploaded chunk.",
        [(_ratio_by("network_type", 'obslab_chunk_retries_total{network_type=~"$network_type"}',
                    'obslab_chunks_total{network_type=~"$network_type"}'), "retries {{network_type}}"),
         (_ratio_by("network_type", 'obslab_chunks_total{result="failed", network_type=~"$network_type"}',
                    'obslab_chunks_total{network_type=~"$network_type"}'), "failed {{network_type}}")],
        "percentunit", width=8))
    b = b.with_panel(_series(
        "Transcode failures by class", "obslab_transcode_failures_total (0 when none).",
        [(f"sum by (error_class) (rate(obslab_transcode_failures_total[{_RI}])) or vector(0)", "{{error_class}}")],
        "ops", width=8))
    b = b.with_panel(_series(
        "Transcode duration p95 by media size (estimate)", "histogram_quantile(0.95) over "
        "obslab_transcode_duration_seconds: an estimate inside a bucket.",
        [(f"histogram_quantile(0.95, sum by (le, media_size_bucket) "
          f"(rate(obslab_transcode_duration_seconds_bucket[{_RI}])))", "{{media_size_bucket}}")], "s", width=8))
    b = b.with_panel(_series(
        "Async queue depth", "Transcode jobs waiting (async mode; 0 in sync mode).",
        [("max(obslab_transcode_queue_depth)", "queue depth")], "short", width=8))
    b = b.with_panel(_series(
        "Feed cache hit ratio", "hit / (hit + miss) of the feed cache.",
        [(f'(sum(rate(obslab_feed_cache_requests_total{{result="hit"}}[{_RI}])) or vector(0)) '
          f'/ sum(rate(obslab_feed_cache_requests_total[{_RI}]))', "hit ratio")], "percentunit", width=8))
    b = b.with_panel(_series(
        "Events lost (instrumentation health)", "Events the sink did not write, by reason. Non-zero means the "
        "event-derived SLI undercounts.",
        [(f"sum by (reason) (rate(obslab_events_lost_total[{_RI}])) or vector(0)", "{{reason}}")], "ops", width=8))
    b = b.with_row(dash.Row("Request to trace"))
    trace_panel = (dash.Panel().type("traces").title("Trace of $trace_id (Jaeger)").description(
        "Paste a trace_id from the events (every event carries its span's trace and span IDs). Traces are "
        "head-sampled; events are not, so a request without a trace was sampled out.")
        .datasource(_JAEGER).span(24).height(12).with_target(_JaegerQuery("A", "$trace_id")))
    b = b.with_panel(trace_panel)
    return b


# ---------------------------------------------------------------------------

_BOARDS: tuple[tuple[str, str, Callable[[SloSpec, str], dash.Dashboard]], ...] = (
    (HOME_DASHBOARD_UID, "slo-overview.json", slo_overview),
    ("obslab-publish-funnel", "publish-funnel.json", funnel_and_red),
    ("obslab-guardrails", "guardrails.json", guardrails),
    ("obslab-debugging", "debugging.json", debugging),
)


def _number_panels(d: model.Dashboard) -> model.Dashboard:
    """Stable panel IDs 1..n in layout order (Grafana needs them unique per dashboard for links and viewPanel)."""
    n = 0
    for panel in d.panels or []:
        n += 1
        panel.id_val = n
        for inner in getattr(panel, "panels", None) or []:
            n += 1
            inner.id_val = n
    for variable in (d.templating.list_val if d.templating and d.templating.list_val else []):
        variable.id_val = variable.name
    return d


def generate_dashboards(spec: SloSpec, profile: str = "lab") -> tuple[GeneratedDashboard, ...]:
    """All dashboards for a spec; windows and periods follow the profile the Prometheus rules use."""
    spec.profile(profile)  # fail early on an unknown profile
    return tuple(GeneratedDashboard(uid, filename, _number_panels(build(spec, profile).build()))
                 for uid, filename, build in _BOARDS)


def dashboard_json(d: model.Dashboard) -> dict:
    """The dashboard as Grafana's JSON model (a plain dict)."""
    import json

    return json.loads(json.dumps(d, cls=JSONEncoder))


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str
    instant: bool


def prometheus_queries(dashboard: dict) -> list[PanelQuery]:
    """Every Prometheus query of a dashboard's JSON, with its panel title (rows' nested panels included)."""
    out = []

    def visit(panels):
        for p in panels or []:
            visit(p.get("panels"))
            for t in p.get("targets") or []:
                ds = t.get("datasource") or p.get("datasource") or {}
                if ds.get("type") == "prometheus" and t.get("expr"):
                    out.append(PanelQuery(dashboard.get("title", ""), p.get("title", ""), t.get("refId", ""),
                                          t["expr"], bool(t.get("instant"))))

    visit(dashboard.get("panels"))
    return out


def substitute_variables(expr: str, *, rate_interval: str, range_: str, values: dict[str, str] | None = None) -> str:
    """The PromQL Grafana would send: ``$__rate_interval``/``$__range`` and template variables replaced.

    Template variables default to ``.*`` (the boards' "All" value), so a regex matcher keeps every series.
    """
    import re

    expr = expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)
    values = values or {}
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), ".*"), expr)
