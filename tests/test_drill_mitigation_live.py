"""A drill's mitigation step end to end against the real service: bad-canary at ×10, the learner rolls the release
flag back while the fault is on, measures the recovery with `obslab sli`, reports it, and the report grades it.

Nothing tells the fault to stop: it stays in the service (its selector names release=canary) and stops hurting
because rolling the flag back moves every new upload to the stable build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
from typer.testing import CliRunner

from drill_runs import fault_applied_at, start_drill, wait_for
from tests.test_drill_cli import _rollout
from toolkit.cli.base import app
from toolkit.drills.measure import read_drill_events

pytestmark = pytest.mark.slow


def obslab(*args):
    """The CLI in-process (the lab it drives is the real service): a subprocess a command costs seconds of
    imports on a loaded machine, and the drill runs at ×10."""
    return CliRunner().invoke(app, list(args), env={"OBSLAB_ADMIN_TOKEN": None}, catch_exceptions=False)


def _one_line_error(result, fragment):
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.output


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_rollback_mitigates_bad_canary_and_the_report_grades_the_recovery(service):
    t0 = time.monotonic()
    common = ["--data-dir", str(service.data_dir)]
    _, run = start_drill(service, "bad-canary", seed=11)
    run_dir = run.path
    try:
        shown = obslab("drill", "show", "bad-canary", *common)
        assert "rollback release" in shown.output and "retry-policy none" in shown.output
        assert "right" not in shown.output.lower()  # the choices, never which one is right
        fault_at = fault_applied_at(run)
        time.sleep(max(0.0, fault_at + 6 - time.time()))  # let the canary fail for a while (60 s of scenario time)
        assert _rollout(service, "release") == {"canary": 10.0}
        wrong = obslab("drill", "mitigate", "rollback", "transcode_mode", *common)
        _one_line_error(wrong, "not one of this drill's choices")
        done = obslab("drill", "mitigate", "rollback", "release", *common)
        assert done.exit_code == 0, done.output
        assert "right" not in done.output.lower() and "wrong" not in done.output.lower()
        # The lab itself changed (each API worker re-reads the flags within half a second).
        wait_for(lambda: _rollout(service, "release") == {}, 5, "the release flag rolled back")
        assert any(f["kind"] == "errors" for f in service.admin("GET", "/admin/faults").json()["faults"])  # the fault did not
        again = obslab("drill", "mitigate", "retry-policy", "none", *common)
        _one_line_error(again, "already took its mitigation")
        mitigated_at = json.loads((run_dir / "mitigation.json").read_text())["at"]
        # Uploads begun on the canary before the rollback finish on it: start the window once they have.
        since, until = mitigated_at + 4, mitigated_at + 14
        time.sleep(max(0.0, until + 1 - time.time()))
        sli = obslab("sli", str(service.events_dir), "--since", _iso(since), "--until", _iso(until), "--window", "0",
                     "--format", "json")
        assert sli.exit_code == 0, sli.output
        totals = json.loads(sli.output)["totals"]
        rate = next(f for f in totals["primary"] if f["name"] == "publish_success_rate")["value"]
        early = obslab("drill", "recovery", "--success-rate", str(rate), "--since", _iso(mitigated_at - 5), *common)
        _one_line_error(early, "at or after the mitigation")
        shown_rate = obslab("drill", "recovery", "--success-rate", str(rate), "--since", _iso(since),
                            "--until", _iso(until), *common)
        assert shown_rate.exit_code == 0, shown_rate.output
    finally:
        stopped = obslab("drill", "stop", *common)
    assert stopped.exit_code == 0, stopped.output
    report = obslab("drill", "report", *common)
    assert report.exit_code == 0, report.output
    m = json.loads((run_dir / "report" / "report.json").read_text())["mitigation"]
    md = (run_dir / "report" / "report.md").read_text()
    elapsed = time.monotonic() - t0
    print(f"\nmitigation: {m['action']} {m['time_to_mitigate_s']:.1f} s of scenario time after the fault's start; "
          f"before {m['before']['good']}/{m['before']['total']} = {m['before']['rate']}, after "
          f"{m['after']['good']}/{m['after']['total']} = {m['after']['rate']}, your window "
          f"{m['claim_window']['good']}/{m['claim_window']['total']} = {m['claim_window']['rate']} (reported {rate}); "
          f"score {m['grade']['total']}/{m['grade']['max']}; test {elapsed:.0f} s wall")
    assert m["action"] == "rollback release" and m["when"] == "during"
    assert 55 <= m["time_to_mitigate_s"] <= 110  # 6 s wall at ×10, and the commands' own time
    # The before figure is measured (a 10 % canary's large uploads: a few failures in 60 s, maybe none).
    assert m["before"]["total"] > 0 and m["before"]["good"] <= m["before"]["total"]
    parts = {p["part"]: p for p in m["grade"]["parts"]}
    assert parts["action"]["points"] == 50, parts
    assert parts["recovery_figure"]["points"] == 25, parts  # the figure `obslab sli` printed is the engine's
    assert m["claim_window"]["rate"] == pytest.approx(rate, abs=1e-9)
    # Recovered as the grade reads it: no more failures than the objective's budget explains (an exact test).
    assert m["recovered_window"]["total"] >= 30 and parts["recovered"]["points"] == 25, (m["recovered_window"], parts)
    # The traffic left the canary: uploads begun after the rollback (the workers' flag cache aside) are stable.
    attempts = read_drill_events(service.events_dir).attempts
    assert any(a.cohort.get("release") == "canary" for a in attempts if a.started < mitigated_at)
    later = [a for a in attempts if a.started > mitigated_at + 2]
    assert later and all(a.cohort.get("release") == "stable" for a in later)
    assert "## Mitigation" in md and "mitigation (learner): rollback release" in md and "Time to mitigate" in md


def test_the_unattended_solver_mitigates_from_its_own_diagnosis_and_shows_the_recovery(fresh_service):
    """`drill start --auto --auto-mitigate` through the CLI, cellular-chunk-failures at ×10: the detached scheduler's
    solver diagnoses the drill so far, switches the clients' retry policy, measures the recovery with the engine and
    reports it; the report scores it like a learner's."""
    t0 = time.monotonic()
    data_dir = fresh_service.data_dir
    proc = subprocess.run(
        [sys.executable, "-c", "from toolkit.cli import main; main()", "drill", "start", "cellular-chunk-failures",
         "--auto", "--auto-mitigate", "--speed", "10", "--seed", "7", "--data-dir", str(data_dir),
         "--url", fresh_service.base_url],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OBSLAB_ADMIN_TOKEN": fresh_service.admin_token})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    run_dir = sorted((data_dir / "drills").glob("*-cellular-chunk-failures"))[-1]
    why = json.loads((run_dir / "auto-mitigation.json").read_text())
    action = why["action"]
    assert action.startswith("retry-policy backoff:"), why
    # The lab changed: the remote config the drill's Locust clients read before each attempt.
    assert json.loads((run_dir / "remote-config.json").read_text()) == {
        "retry_policy": "backoff", "max_attempts": int(action.rsplit(":", 1)[1])}
    timeline = [json.loads(line) for line in (run_dir / "timeline.jsonl").read_text().splitlines()]
    assert [e.get("by") for e in timeline if e["kind"] in ("mitigation", "recovery_reported")] == ["auto", "auto"]
    assert not [e for e in timeline if e["kind"] == "auto_mitigation_error"], timeline
    m = json.loads((run_dir / "report" / "report.json").read_text())["mitigation"]
    parts = {p["part"]: p for p in m["grade"]["parts"]}
    print(f"\nauto mitigation: {m['action']} {m['time_to_mitigate_s']:.1f} s of scenario time after the fault's start "
          f"({why['looks']} looks); its window {m['claim_window']['good']}/{m['claim_window']['total']}; recovered "
          f"{m['recovered_window']}; score {m['grade']['total']}/{m['grade']['max']}; "
          f"{time.monotonic() - t0:.0f} s wall")
    assert m["by"] == "auto" and m["when"] == "during" and m["action"] == action
    assert parts["action"]["points"] == 50, parts
    assert parts["recovery_figure"]["points"] == 25, parts  # the solver reported the engine's figure
    assert m["recovered_window"]["total"] >= 30 and parts["recovered"]["points"] == 25, (m["recovered_window"], parts)
    assert f"mitigation (auto): {action}" in (run_dir / "report" / "report.md").read_text()


def _shed(service) -> dict:
    return {s["class"]: s["percent"] for s in service.admin("GET", "/admin/shed").json()["shed"]}


def _failed_publishes(service) -> float:
    text = service.http.get(service.url("/metrics"), timeout=30).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith('obslab_slo_publish_outcomes_total{outcome="failed"}'))


def test_shedding_status_polls_recovers_publishes_at_the_peak(service):
    """peak-hour-publish-failures at ×10: the database's connection slots (the fault) hold at the base load and
    fail publishes at the peak; shedding 95 % of the status polls while the peak and the fault last gives the
    publish writes their connections back. Nothing tells the fault to stop: it is still in force."""
    t0 = time.monotonic()
    common = ["--data-dir", str(service.data_dir)]
    started = obslab("drill", "start", "peak-hour-publish-failures", "--speed", "10", "--seed", "5", *common,
                     "--url", service.base_url)
    assert started.exit_code == 0, started.output
    run_dir = next((service.data_dir / "drills").glob("*-peak-hour-publish-failures"))
    try:
        truth = lambda: json.loads((run_dir / "truth.json").read_text()).get("fault_applied_at")  # noqa: E731
        fault_at = wait_for(truth, 60, "the fault")
        fault_end = fault_at + json.loads((run_dir / "truth.json").read_text())["fault_duration_s"]
        failed_at_fault = _failed_publishes(service)
        # The peak (40-60 % of the drill) begins about 5 s of wall time after the fault: let it fail for a while.
        # How soon the queue backs up enough to fail a publish depends on the machine (a CI run saw none in the
        # first 4 s of the peak): mitigate once one has failed, as a learner would, leaving the rest of the peak
        # for the recovery.
        time.sleep(max(0.0, fault_at + 9 - time.time()))
        wait_for(lambda: _failed_publishes(service) > failed_at_fault, max(1.0, fault_at + 14 - time.time()),
                 "a publish failing at the peak")
        assert _shed(service) == {}
        done = obslab("drill", "mitigate", "shed-load", "status:95", *common)
        assert done.exit_code == 0, done.output
        assert "right" not in done.output.lower() and "wrong" not in done.output.lower()
        wait_for(lambda: _shed(service) == {"status": 95.0}, 5, "the status polls shed")
        assert any(f["kind"] == "capacity" for f in service.admin("GET", "/admin/faults").json()["faults"])
        mitigated_at = json.loads((run_dir / "mitigation.json").read_text())["at"]
        # Publishes already waiting for a connection end first; then the window runs to the fault's end.
        since, until = mitigated_at + 2, fault_end - 0.5
        time.sleep(max(0.0, until + 1 - time.time()))
        sli = obslab("sli", str(service.events_dir), "--since", _iso(since), "--until", _iso(until), "--window", "0",
                     "--format", "json")
        assert sli.exit_code == 0, sli.output
        totals = json.loads(sli.output)["totals"]
        rate = next(f for f in totals["primary"] if f["name"] == "publish_success_rate")["value"]
        shown_rate = obslab("drill", "recovery", "--success-rate", str(rate), "--since", _iso(since),
                            "--until", _iso(until), *common)
        assert shown_rate.exit_code == 0, shown_rate.output
        metrics = service.http.get(service.url("/metrics"), timeout=30).text
    finally:
        stopped = obslab("drill", "stop", *common)
    assert stopped.exit_code == 0, stopped.output
    # The drill's cleanup lets the polls through again (each API worker re-reads its controls within 0.5 s).
    wait_for(lambda: _shed(service) == {}, 5, "the status polls let through again")
    report = obslab("drill", "report", *common)
    assert report.exit_code == 0, report.output
    m = json.loads((run_dir / "report" / "report.json").read_text())["mitigation"]
    elapsed = time.monotonic() - t0
    print(f"\nmitigation: {m['action']} {m['time_to_mitigate_s']:.1f} s of scenario time after the fault's start; "
          f"before {m['before']['good']}/{m['before']['total']} = {m['before']['rate']}, after "
          f"{m['after']['good']}/{m['after']['total']} = {m['after']['rate']}, your window "
          f"{m['claim_window']['good']}/{m['claim_window']['total']} = {m['claim_window']['rate']} (reported {rate}); "
          f"score {m['grade']['total']}/{m['grade']['max']}; test {elapsed:.0f} s wall")
    assert m["action"] == "shed-load status:95" and m["when"] == "during"
    parts = {p["part"]: p for p in m["grade"]["parts"]}
    assert parts["action"]["points"] == 50, parts
    assert parts["recovery_figure"]["points"] == 25, parts
    assert m["claim_window"]["rate"] == pytest.approx(rate, abs=1e-9)
    # The peak failed publishes before the shedding, and the same figure recovered after it, fault still on.
    assert m["before"]["rate"] is not None and m["before"]["rate"] < 0.99, m["before"]
    assert m["recovered_window"]["total"] >= 30 and m["recovered_window"]["rate"] > m["before"]["rate"], m
    assert parts["recovered"]["points"] == 25, parts
    # The shed polls are visible as what they are: 503 load_shed on the status route, counted by class.
    shed_line = next(line for line in metrics.splitlines() if line.startswith("obslab_requests_shed_total{"))
    assert 'request_class="status"' in shed_line and float(shed_line.split()[-1]) > 0
