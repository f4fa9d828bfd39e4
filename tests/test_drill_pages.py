"""A drill report says a page fired only when the engine and (when one ran) Prometheus both fired it.

The Prometheus side runs Debian's real Prometheus with one rule file: the page alert of the
lab rules' name with an expression that always holds, so its ALERTS series is firing within
a couple of evaluation intervals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import requests
import yaml

from toolkit.drills.pages import EnginePage, PrometheusPage, page_verdict, prometheus_first_fire
from toolkit.drills.report import build_report_data, write_report
from toolkit.lab.processes import free_port
from toolkit.slo.names import burn_alert_name

from test_drill_analysis import CASES, FAULT, SPEC, _events, _fake_run

PROMETHEUS = "/usr/bin/prometheus"
PAGE_ALERT = burn_alert_name("publish-success", "page")


@pytest.mark.parametrize("engine_at, prom, fired", [
    (10.0, PrometheusPage("not running"), True),
    (10.0, PrometheusPage("fired", 11.0), True),
    (10.0, PrometheusPage("did not fire"), False),
    (10.0, PrometheusPage("unreachable", None, "connection refused"), False),
    (None, PrometheusPage("fired", 11.0), False),
    (None, PrometheusPage("not running"), False),
])
def test_a_page_counts_only_when_every_running_surface_fired_it(engine_at, prom, fired):
    v = page_verdict(EnginePage(engine_at, "1m/5s burn rate over 14.4× (lab profile)" if engine_at else None), prom)
    assert v.fired is fired
    assert (v.at is not None) is fired
    text = v.sentence(fault_start=0.0)
    assert ("no page is counted" in text or "no burn-rate page fired" in text) is not fired
    if prom.state == "did not fire" and engine_at is not None:
        assert "Prometheus" in text and "did not fire" in text


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """A real Prometheus whose only rule is the page alert, always firing."""
    work = tmp_path_factory.mktemp("prometheus")
    (work / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "always", "interval": "1s", "rules": [
        {"alert": PAGE_ALERT, "expr": "vector(1)", "for": "0s", "labels": {"severity": "page"}}]}]}))
    (work / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(work / "rules.yml")], "scrape_configs": []}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(work / "prometheus.log", "wb") as log:
        proc = subprocess.Popen([PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    started = time.time()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, (work / "prometheus.log").read_text()[-2000:]
            try:
                r = requests.get(f"{url}/api/v1/query", params={"query": f'ALERTS{{alertname="{PAGE_ALERT}"}}'},
                                 timeout=2)
                if r.status_code == 200 and r.json()["data"]["result"]:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError("Prometheus never fired the always-firing rule")
        yield url, started
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def test_prometheus_first_fire_reads_the_alerts_series(prometheus):
    url, started = prometheus
    now = time.time()
    fired = prometheus_first_fire(url, PAGE_ALERT, started - 5, now + 1)
    assert fired.state == "fired" and started - 1 <= fired.at <= now + 1
    assert prometheus_first_fire(url, "SomeOtherAlert", started - 5, now + 1).state == "did not fire"
    # Before Prometheus ran there is nothing: the alert did not fire then.
    assert prometheus_first_fire(url, PAGE_ALERT, started - 3600, started - 600).state == "did not fire"
    assert prometheus_first_fire(None, PAGE_ALERT, started, now).state == "not running"
    closed = f"http://127.0.0.1:{free_port()}"
    assert prometheus_first_fire(closed, PAGE_ALERT, started, now).state == "unreachable"


def test_report_does_not_claim_a_page_prometheus_did_not_fire(tmp_path, prometheus):
    """The engine's replay pages on this outage; the lab's Prometheus (no alert in the drill's
    time range) did not: the report counts no page and does not time detection by one."""
    url, _ = prometheus
    events_dir, start = _events(tmp_path, CASES["regional-storage-outage"]["effect"])
    answer = {"cause": "storage_outage", "cohort": {"region": "eu-west"}, "impact": 5.0, "at_s": 260.0, "by": "t"}
    run = _fake_run(tmp_path, "regional-storage-outage", events_dir, start, [answer])
    state = run.read_state()
    from dataclasses import replace

    run.write_state(replace(state, prometheus_url=url))
    data = build_report_data(run, SPEC)
    assert data.page.engine.at is not None and start + FAULT[0] <= data.page.engine.at  # the engine paged
    assert data.page.prometheus.state == "did not fire"
    assert not data.page.fired and data.first_page_at is None
    assert data.grade.detected_by == "answer"
    md = write_report(run, SPEC).read_text()
    assert "no page is counted" in md and "did not fire" in md
    assert "by the first alert" not in md and "first page:" not in md
    # The model STAR (first person) states the measured page once, in its Situation, and no line claims one.
    situation = next(line for line in md.splitlines() if line.startswith("- **Situation.**"))
    assert "Measured: no page is counted" in situation
    report = json.loads((run.report_dir / "report.json").read_text())
    assert report["first_page_at"] is None
    assert report["page"]["engine_at"] == data.page.engine.at and report["page"]["prometheus"] == "did not fire"


def test_a_drill_knows_its_labs_prometheus_and_spec_from_lab_json(tmp_path):
    from toolkit.drills.lab import find_lab

    (tmp_path / "lab.json").write_text(json.dumps({"url": "http://127.0.0.1:8123", "prometheus_url":
                                                   "http://127.0.0.1:9123", "spec": "/somewhere/slo.yaml"}))
    lab = find_lab(tmp_path, token="t")
    assert (lab.prometheus_url, lab.slo_spec) == ("http://127.0.0.1:9123", "/somewhere/slo.yaml")
    # A service named by --url is not that lab: its Prometheus and spec are unknown.
    other = find_lab(tmp_path, url="http://127.0.0.1:8999", token="t")
    assert (other.prometheus_url, other.slo_spec) == (None, None)
