"""A learner's calls made through the dashboard, in headless Chromium, against a real lab (the service's gunicorn
API + transcoder on free loopback ports, the drill's detached scheduler and Locust load at ×10, the dashboard
served in-process as in tests/test_dashboard_ui.py).

- rollout-good-change: the panel's Continue button clicked at each stage's call (POST
  /api/drills/active/decide through the page's CSRF/Origin guard); the service's flag really moves
  1 → 5 → 25 → 100 %, the report grades the three calls and the page shows it.
- cellular-chunk-failures: the retry-policy mitigation chosen in the page's mitigation control (POST
  /api/drills/active/mitigate), then the recovery figure measured with `obslab sli` and reported through the page
  (POST /api/drills/active/recovery); the remote config the drill's Locust clients read really changed, and the
  report scores the mitigation.

Each runs in about a minute of wall time on the 2-core CI machine.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.test_dashboard_ui import _serve, _shot
from toolkit.cli.base import app
from toolkit.drills import runner
from toolkit.lab.web.drills import stop_active_drill

pytestmark = pytest.mark.slow


def _flag(service, name: str) -> dict:
    r = service.admin("GET", f"/admin/flags/{name}")
    return r.json() if r.ok else {}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _run_dir(data: Path, drill: str) -> Path:
    return next((data / "drills").glob(f"*-{drill}"))


def _start_from_page(page, server, drill: str) -> None:
    page.goto(server.url)
    page.wait_for_selector(f"[data-drill={drill}]", timeout=15000)
    page.select_option("[data-testid=drill-speed]", "10")
    page.click(f"[data-testid=drill-start-{drill}]")
    page.wait_for_selector("[data-testid=drill-active]", timeout=30000)


def test_rollout_calls_made_with_the_pages_buttons_move_the_flag_and_are_graded(fresh_service, page):
    t0 = time.monotonic()
    data = Path(fresh_service.data_dir)
    server = _serve(data, api_url=fresh_service.base_url, admin_token_file=data / "admin-token")
    drill = "rollout-good-change"
    seen: list[float] = []  # the service's canary percent, each time it changed
    clicked: list[str] = []
    try:
        _start_from_page(page, server, drill)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            percent = _flag(fresh_service, "release").get("rollout", {}).get("canary")
            if percent is not None and (not seen or seen[-1] != percent):
                seen.append(percent)
            st = runner.status(data / "drills")
            if st.phase != "running":
                break
            # One read of the panel as it is now: the panel re-renders as it polls, and a locator's read waits
            # (30 s) for an element that a re-render took away, as the last one does when the rollout ends.
            text, enabled = page.evaluate(
                "() => [document.querySelector('[data-testid=drill-rollout-status]')?.textContent ?? '',"
                " !!document.querySelector('[data-testid=drill-decide-continue]:not([disabled])')]")
            if "call due" in text and enabled:
                stage = text.split(" %", 1)[0].removeprefix("stage ")
                if stage not in clicked:
                    page.locator("[data-testid=drill-decide-continue]").click(timeout=5000)
                    clicked.append(stage)
                    # The page's answer, then its refreshed rollout box (the call is in the timeline).
                    page.wait_for_function("() => !document.querySelector('[data-testid=drill-rollout-status]')"
                                           f".textContent.startsWith('stage {stage} % ')"
                                           " || document.querySelector('[data-testid=drill-rollout-status]')"
                                           ".textContent.includes('rollout ended')", timeout=20000)
            time.sleep(0.2)
        assert runner.wait_finished(data / "drills", timeout_s=60).phase == "finished"
        page.click("[data-testid=drill-report]")
        page.wait_for_selector("[data-testid=report-html]", timeout=60000)
        html = page.inner_text("[data-testid=report-html]")
        score = page.inner_text("#drill-output b")
        _shot(page.locator("#drills-panel"), "drill-rollout-report")
        after = _flag(fresh_service, "release")
    finally:
        stop_active_drill(data)
        server.stop()
    wall = time.monotonic() - t0
    assert clicked == ["1", "5", "25"], clicked
    # The flag really moved stage by stage on the service, and is gone once the drill ended.
    assert seen == [1.0, 5.0, 25.0, 100.0], seen
    assert not after.get("rollout", {}).get("canary"), after
    run = _run_dir(data, drill)
    timeline = [json.loads(line) for line in (run / "timeline.jsonl").read_text().splitlines()]
    calls = [e for e in timeline if e["kind"] == "call"]
    assert [(c["call"], c.get("by")) for c in calls] == [("continue", "dashboard")] * 3, calls
    assert next(e for e in timeline if e["kind"] == "rollout_ended")["reason"] == "completed"
    report = json.loads((run / "report" / "report.json").read_text())
    graded = report["calls"]
    assert [(c["stage_percent"], c["call"], c["right_call"], c["harmful"]) for c in graded] == \
        [(p, "continue", "continue", False) for p in (1.0, 5.0, 25.0)], graded
    assert report["grade"]["total"] == pytest.approx(100.0)
    # The page shows the graded report the run wrote.
    assert score.startswith(f"score {report['grade']['total']:g} / {report['grade']['max']:g}"), score
    assert "right call" in html and "power" in html, html[:2000]
    assert not page.errors, page.errors
    print(f"\nrollout from the page: flag {seen}, calls {clicked}, grade {report['grade']['total']}, {wall:.0f} s wall")


def test_mitigation_and_recovery_through_the_page_change_the_lab_and_are_scored(fresh_service, page):
    t0 = time.monotonic()
    data = Path(fresh_service.data_dir)
    server = _serve(data, api_url=fresh_service.base_url, admin_token_file=data / "admin-token")
    drill = "cellular-chunk-failures"
    try:
        _start_from_page(page, server, drill)
        run = _run_dir(data, drill)
        deadline = time.monotonic() + 60
        while not json.loads((run / "truth.json").read_text()).get("fault_applied_at"):
            assert time.monotonic() < deadline, "the fault was never applied"
            time.sleep(0.2)
        truth = json.loads((run / "truth.json").read_text())
        fault_at, fault_end = truth["fault_applied_at"], truth["fault_applied_at"] + truth["fault_duration_s"]  # wall seconds
        assert not (run / "remote-config.json").exists()
        time.sleep(max(0.0, fault_at + 4 - time.time()))  # 40 s of scenario time with the fault on
        action = page.locator("[data-testid=drill-mitigation-action]")
        action.wait_for(timeout=10000)
        options = action.locator("option").all_inner_texts()
        assert sorted(options[1:]) == ["retry-policy backoff:8", "retry-policy immediate:5", "retry-policy none"]
        action.select_option("retry-policy backoff:8")
        page.click("[data-testid=drill-mitigate]")
        # The page turns to the recovery form, its window starting at the mitigation.
        page.wait_for_selector("[data-testid=drill-recovery-rate]", timeout=10000)
        mitigated = json.loads((run / "mitigation.json").read_text())
        assert (mitigated["action"], mitigated["by"]) == ("retry-policy backoff:8", "dashboard")
        # The lab changed: the remote config the drill's Locust clients read before each attempt.
        assert json.loads((run / "remote-config.json").read_text()) == {"retry_policy": "backoff",
                                                                         "max_attempts": 8}
        since, until = mitigated["at"] + 1, min(fault_end - 1, mitigated["at"] + 14)
        time.sleep(max(0.0, until + 1 - time.time()))
        sli = CliRunner().invoke(app, ["sli", str(fresh_service.events_dir), "--since", _iso(since), "--until",
                                       _iso(until), "--window", "0", "--format", "json"], catch_exceptions=False)
        assert sli.exit_code == 0, sli.output
        rate = next(f for f in json.loads(sli.output)["totals"]["primary"]
                    if f["name"] == "publish_success_rate")["value"]
        form = page.locator("[data-testid=drill-mitigation] form")
        page.fill("[data-testid=drill-recovery-rate]", str(rate))
        form.locator("input[name=since]").fill(_iso(since))
        form.locator("input[name=until]").fill(_iso(until))
        page.click("[data-testid=drill-recovery]")
        page.wait_for_function("() => /recovery figure 1 recorded/.test(document.querySelector("
                               "'[data-testid=drill-mitigation-output]').textContent)", timeout=10000)
        page.click("[data-testid=drill-stop]")
        assert runner.wait_finished(data / "drills", timeout_s=60).phase in ("finished", "stopped")
        page.wait_for_function("() => { const b = document.querySelector('[data-testid=drill-report]');"
                               " return b && !b.disabled; }", timeout=30000)
        page.click("[data-testid=drill-report]")
        page.wait_for_selector("[data-testid=report-html]", timeout=60000)
        html = page.inner_text("[data-testid=report-html]")
        _shot(page.locator("#drills-panel"), "drill-mitigation-report")
    finally:
        stop_active_drill(data)
        server.stop()
    wall = time.monotonic() - t0
    m = json.loads((run / "report" / "report.json").read_text())["mitigation"]
    parts = {p["part"]: p for p in m["grade"]["parts"]}
    print(f"\nmitigation from the page: {m['action']} {m['time_to_mitigate_s']:.1f} s of scenario time after the "
          f"fault's start; your window {m['claim_window']['good']}/{m['claim_window']['total']} = "
          f"{m['claim_window']['rate']} (reported {rate}); recovered window {m['recovered_window']}; "
          f"score {m['grade']['total']}/{m['grade']['max']}; {wall:.0f} s wall")
    assert m["action"] == "retry-policy backoff:8" and m["by"] == "dashboard" and m["when"] == "during"
    assert parts["action"]["points"] == 50, parts
    assert m["claim_window"]["rate"] == pytest.approx(rate, abs=1e-9)
    assert parts["recovery_figure"]["points"] == 25, parts
    assert m["recovered_window"]["total"] >= 30, m["recovered_window"]
    # backoff:8 makes a 4g chunk's failure 0.4^8 = 0.07 %: publishes succeed again while the fault is still on.
    assert m["recovered_window"]["rate"] >= m["objective"] and parts["recovered"]["points"] == 25, parts
    assert "Mitigation score" in html and "retry-policy backoff:8" in html
    timeline = [json.loads(line) for line in (run / "timeline.jsonl").read_text().splitlines()]
    assert [e.get("by") for e in timeline if e["kind"] in ("mitigation", "recovery_reported")] == \
        ["dashboard", "dashboard"]
    # The debrief sets the page's mitigation beside the expert path's.
    paths = {p["stage"]: p for p in json.loads((run / "report" / "report.json").read_text())["paths"]}
    assert paths["mitigate"]["learner"].startswith("mitigated: retry-policy backoff:8; reported recovery"), paths
    assert not page.errors, page.errors
