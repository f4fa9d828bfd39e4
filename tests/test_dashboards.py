"""Generated Grafana dashboards: golden files, datasources, variables, links, valid PromQL."""

from __future__ import annotations

import json
import re
import shutil
import time
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from toolkit.slo import names
from toolkit.cli import app
from toolkit.slo.dashboards import (COHORT_VARIABLES, HOME_DASHBOARD_UID, JAEGER_UID, PROMETHEUS_UID, dashboard_json,
                                generate_dashboards, prometheus_queries, substitute_variables)
from toolkit.slo.rules import RecordingRule, generate_rules
from toolkit.slo.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "dashboards" / "grafana" / "dashboards"
PROVISIONING = ROOT / "dashboards" / "grafana" / "provisioning"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "slo.yaml")


@pytest.fixture(scope="module")
def boards(spec) -> dict[str, dict]:
    return {d.filename: dashboard_json(d.dashboard) for d in generate_dashboards(spec, "lab")}


def _panels(board: dict) -> list[dict]:
    out = []
    for p in board["panels"]:
        out.append(p)
        out.extend(p.get("panels") or [])
    return out


def test_committed_dashboards_match_the_generator(tmp_path):
    result = CliRunner().invoke(app, ["dashboards", "--slo", str(ROOT / "slo.yaml"), "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_text() for p in COMMITTED.iterdir()}
    assert sorted(fresh) == sorted(committed)
    for name, text in fresh.items():
        assert text == committed[name], (f"dashboards/grafana/dashboards/{name} drifted from the generator; "
                                         f"regenerate with `obslab dashboards -o dashboards/grafana/dashboards`")


def test_four_boards_with_unique_panel_ids(boards):
    assert sorted(boards) == ["debugging.json", "guardrails.json", "publish-funnel.json", "slo-overview.json"]
    for board in boards.values():
        ids = [p["id"] for p in _panels(board)]
        assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
        assert "obslab" in board["tags"]


def test_datasources_are_the_provisioned_ones(boards):
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yml").read_text())["datasources"]
    by_uid = {d["uid"]: d for d in provisioned}
    assert by_uid[PROMETHEUS_UID]["type"] == "prometheus" and by_uid[JAEGER_UID]["type"] == "jaeger"
    spec = load_spec(ROOT / "slo.yaml")
    # $__rate_interval derives from the datasource's scrape interval: the lab profile's.
    assert by_uid[PROMETHEUS_UID]["jsonData"]["timeInterval"] == "1s"
    assert spec.profile("lab").scrape_interval_s == 1
    used = set()
    for board in boards.values():
        for p in _panels(board):
            for t in p.get("targets") or []:
                used.add((t["datasource"]["type"], t["datasource"]["uid"]))
    assert used == {("prometheus", PROMETHEUS_UID), ("jaeger", JAEGER_UID)}
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards/obslab"


def test_slo_overview_shows_sli_budget_burn_and_alerts(boards, spec):
    board = boards["slo-overview.json"]
    assert board["uid"] == HOME_DASHBOARD_UID
    exprs = [q.expr for q in prometheus_queries(board)]
    from toolkit.slo.rules import BUDGET_DEFINITION
    budget_tiles = [p for p in board["panels"] if p.get("title") == "Error budget remaining"]
    assert len(budget_tiles) == len(spec.slos) and all(BUDGET_DEFINITION in p["description"] for p in budget_tiles)
    text = "\n".join(exprs)
    for slo in spec.slos:
        sel = f'{{slo="{slo.name}"}}'
        assert f"{names.BUDGET_REMAINING_METRIC}{sel}" in text
        assert f"{names.CURRENT_BURN_RATE_METRIC}{sel}" in text
        assert f"1 - {names.error_ratio_metric(spec.period_for(slo, 'lab'))}{sel}" in text
        for w in spec.windows_for("lab"):
            assert f"{names.error_ratio_metric(w.long_s)}{sel}" in text
        assert f'ALERTS{{alertstate="firing", slo="{slo.name}"}}' in text
    assert "histogram_quantile" not in text  # SLIs come from the bucket on the threshold


def test_every_recorded_series_a_board_reads_is_generated(boards, spec):
    recorded = {r.record for g in generate_rules(spec, "lab").groups for r in g.rules if isinstance(r, RecordingRule)}
    for board in boards.values():
        for q in prometheus_queries(board):
            for name in re.findall(r"\b(slo:[a-z_]+:[a-z_0-9]+)", q.expr):
                assert name in recorded, f"{board['title']} / {q.panel} reads {name}, which no rule records"


def test_guardrails_label_quantiles_as_estimates(boards):
    board = boards["guardrails.json"]
    titles = [p["title"] for p in _panels(board)]
    assert any("p99" in t and "estimate" in t for t in titles)
    assert any("Unrelated flows" in t for t in titles)
    assert any("CPU seconds per successful publish" in t for t in titles)
    assert any("Load amplification" in t for t in titles)
    for board in boards.values():
        for p in _panels(board):
            if any("histogram_quantile" in (t.get("expr") or "") for t in p.get("targets") or []):
                assert "estimate" in p["title"], p["title"]


def test_debugging_board_has_cohort_variables_and_jaeger_links(boards):
    board = boards["debugging.json"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    for name in COHORT_VARIABLES:
        v = variables[name]
        assert v["includeAll"] and v["allValue"] == ".*"
        assert v["query"]["query"] == f"label_values(obslab_publish_outcomes_total, {name})"
    assert {"request_id", "trace_id"} <= set(variables)
    links = [link["url"] for link in board["links"] if link["type"] == "link"]
    assert any("16686/trace/$trace_id" in u for u in links)
    assert any("16686/search" in u and "request_id" in u for u in links)
    jaeger_panels = [p for p in _panels(board) if p.get("datasource", {}).get("uid") == JAEGER_UID]
    assert jaeger_panels and jaeger_panels[0]["targets"][0]["query"] == "$trace_id"
    data_links = [link for p in _panels(board) for link in (p.get("fieldConfig", {}).get("defaults", {})
                                                             .get("links") or [])]
    assert any("16686/search" in link["url"] for link in data_links)
    # every cohort query filters by every cohort variable
    cohort_queries = [q for q in prometheus_queries(board) if "obslab_publish_outcomes_total" in q.expr]
    assert cohort_queries
    for q in cohort_queries:
        for name in COHORT_VARIABLES:
            assert f'{name}=~"${name}"' in q.expr


def test_every_panel_query_is_valid_promql(boards, tmp_path):
    """promtool parses each query (variables substituted as Grafana would) as a recording rule."""
    rules = []
    for board in boards.values():
        for i, q in enumerate(prometheus_queries(board)):
            rules.append({"record": f"panel:query:{len(rules)}",
                          "expr": substitute_variables(q.expr, rate_interval="4s", range_="15m")})
    path = tmp_path / "panels.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    r = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(rules) > 40


def test_substitute_variables():
    expr = 'rate(x{region=~"$region", release=~"${release}"}[$__rate_interval]) + increase(y[$__range])'
    assert substitute_variables(expr, rate_interval="4s", range_="5m", values={"release": "canary"}) == \
        'rate(x{region=~".*", release=~"canary"}[4s]) + increase(y[5m])'


def test_home_dashboard_file_is_the_slo_overview(boards):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == "/var/lib/grafana/dashboards/obslab/slo-overview.json"
    assert json.loads((COMMITTED / "slo-overview.json").read_text())["uid"] == HOME_DASHBOARD_UID


def test_cli_error_is_one_line(tmp_path):
    r = CliRunner().invoke(app, ["dashboards", "--slo", str(tmp_path / "nope.yaml"), "-o", str(tmp_path)])
    assert r.exit_code == 2 and "nope.yaml: cannot read" in r.output and "Traceback" not in r.output


def _jaeger_searches(boards: dict[str, dict]) -> list[tuple[str, str]]:
    """(board, url) of every Jaeger search link: board links, panel links and data links."""
    out = []
    for filename, board in boards.items():
        links = list(board.get("links") or [])
        for p in _panels(board):
            links += (p.get("links") or []) + (p.get("fieldConfig", {}).get("defaults", {}).get("links") or [])
        out += [(filename, link["url"]) for link in links if "16686/search" in link["url"]]
    return out


def _jaeger_match(span: dict, service: str, operation: str | None, tags: dict[str, str]) -> bool:
    """Jaeger's search semantics: service and operation, and every tag on the same span
    (an attribute, or error=true for a span whose status is ERROR)."""
    span_tags = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in span["attributes"].items()}
    if span["status"] == "ERROR":
        span_tags["error"] = "true"
    return (span["service"] == service and operation in (None, span["name"])
            and all(span_tags.get(k) == v for k, v in tags.items()))


@pytest.mark.slow
def test_every_jaeger_search_link_finds_the_services_spans(boards, fresh_service):
    """A link whose tags never meet on one span finds nothing in Jaeger (the region was only on
    upload.create while error was on the server span): each search must match a span the
    service really emits for a successful and a failed publish."""
    from urllib.parse import parse_qs, unquote, urlsplit

    from toolkit.lab.web.explorer import otlp_spans

    from conftest import DEFAULT_COHORT, new_traceparent

    ok = fresh_service.publish(traceparent=new_traceparent()[0])
    assert fresh_service.admin("PUT", "/admin/faults/outage", json={"kind": "errors", "target": "transcoder"}
                               ).status_code == 200
    time.sleep(1.0)  # the documented bound for a control change to reach every worker
    failed = fresh_service.publish(traceparent=new_traceparent()[0])
    assert ok["complete_status"] == 200 and failed["complete_status"] == 503
    spans_file = fresh_service.data_dir / "traces" / "spans.jsonl"
    deadline = time.monotonic() + 30
    while True:
        # The span file is OTLP/JSON (one ExportTraceServiceRequest per line): read it as the explorer does.
        spans = ([span for line in spans_file.read_text().splitlines() for span in otlp_spans(json.loads(line))]
                 if spans_file.exists() else [])
        names = {s["name"] for s in spans if s["attributes"].get("request_id") == failed["request_id"]}
        if {"upload.create", "upload.complete"} <= names or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    values = {"request_id": failed["request_id"], "trace_id": "", "region": DEFAULT_COHORT["region"],
              "__data.fields.region": DEFAULT_COHORT["region"]}
    searches = _jaeger_searches(boards)
    assert len(searches) >= 4, searches
    for board, url in searches:
        query = parse_qs(urlsplit(url).query)
        tags_text = re.sub(r"\$\{([\w.]+)\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)],
                           unquote(query.get("tags", ["{}"])[0]))
        tags = json.loads(tags_text)
        operation = query.get("operation", [None])[0]
        assert any(_jaeger_match(s, query["service"][0], operation, tags) for s in spans), \
            f"{board}: {url} finds no span (operation {operation}, tags {tags}) among {len(spans)} spans"
