"""A drill report and the CLI agree on the same data and as-of time: one engine, every surface.

The report's fault-window figures (as of the fault's end) are `obslab sli --since FAULT_START
--until FAULT_END`; its whole-drill figures (as of the drill's end) are `obslab sli --since START
--until END` and `obslab budget --profile lab --at END`: success rate, p50/p95/p99, budget spent
and remaining, burn rate per window, first page time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from toolkit.drills.report import write_report

from test_drill_analysis import CASES, ROOT, SPEC, _events, _fake_run

OBSLAB = (sys.executable, "-c", "from toolkit.cli import main; main()")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _cli(*args: str) -> dict:
    proc = subprocess.run([*OBSLAB, *args, "--slo", str(ROOT / "slo.yaml"), "--format", "json"],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _success(totals: dict) -> dict:
    return next(f for f in totals["primary"] if f["name"] == "publish_success_rate")


@pytest.fixture(scope="module")
def drill(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agreement")
    events_dir, start = _events(tmp, CASES["regional-storage-outage"]["effect"])
    answer = {"cause": "storage_outage", "cohort": {"region": "eu-west"}, "impact": 5.0, "at_s": 260.0, "by": "t"}
    run = _fake_run(tmp, "regional-storage-outage", events_dir, start, [answer])
    md = write_report(run, SPEC)
    return events_dir, json.loads((md.parent / "report.json").read_text()), md.read_text()


def test_fault_window_figures_are_obslab_sli(drill):
    events_dir, report, md = drill
    fs, fe = report["fault_window"]
    sli = _cli("sli", str(events_dir), "--since", _iso(fs), "--until", _iso(fe), "--window", "0")
    success = _success(sli["totals"])
    assert (report["sli_fault_window"]["good"], report["sli_fault_window"]["total"]) == \
        (success["numerator"], success["denominator"])
    latency = {f["statistic"]: f["value"] for f in sli["totals"]["latency"]
               if f["name"].startswith("processing_latency_p")}
    assert set(latency) == {"p50", "p95", "p99"}
    assert report["sli_fault_window"]["processing_latency_ms"] == latency
    counts = sli["totals"]["counts"]
    assert report["figures"]["failed_publishes"]["value"] == counts["failed"] + counts["abandoned"]
    # The STAR debrief quotes the same figures as the rest of the report.
    star = md.split("## Debrief (STAR)", 1)[1]
    assert f"{success['numerator']} of {success['denominator']} publish attempts succeeded" in star
    assert f"Over the fault window: {report['figures']['failed_publishes']['value']:,.0f} failed publishes" in star


def test_whole_drill_budget_burn_and_page_are_obslab_budget(drill):
    events_dir, report, md = drill
    start, end = report["baseline_window"][0], report["as_of"]["drill"]
    sli = _cli("sli", str(events_dir), "--since", _iso(start), "--until", _iso(end), "--window", "0")
    success = _success(sli["totals"])
    assert (report["sli_drill"]["good"], report["sli_drill"]["total"]) == (success["numerator"],
                                                                          success["denominator"])
    budget = _cli("budget", str(events_dir), "--profile", "lab", "--at", _iso(end))
    slo = next(s for s in budget["slos"] if s["slo"] == "publish-success")
    assert report["budget"]["spent"] == pytest.approx(slo["budget"]["spent"], rel=1e-12)
    assert report["budget"]["remaining"] == pytest.approx(slo["budget"]["remaining"], rel=1e-12)
    assert report["budget"]["text"] in md
    burns = {}
    for alert in slo["alerts"]:
        for side in ("long", "short"):
            burns[alert[side]["window"]] = alert[side]["burn"]["burn_rate"]
    assert set(report["burn_rates"]) == set(burns)
    for window, value in burns.items():
        assert report["burn_rates"][window] == pytest.approx(value, rel=1e-12, abs=0.0) if value is not None \
            else report["burn_rates"][window] is None
    pages = [_epoch(h["first_fired"]) for h in slo["history"] if h["severity"] == "page" and h["first_fired"]]
    assert pages, "this outage pages in the engine's replay"
    assert report["first_page_at"] == pytest.approx(min(pages), abs=1e-3)
    assert report["page"]["engine_at"] == pytest.approx(min(pages), abs=1e-3)
