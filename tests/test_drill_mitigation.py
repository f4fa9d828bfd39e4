"""The mitigation step of incident drills, in-process: the catalogue's schema, the action vocabulary, the scoring,
the CLI's one-line errors and records, the dashboard's routes, and the clients' remote config (a real Locust
locustfile import in a subprocess). The live flow against the real service is tests/test_drill_mitigation_live.py.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from toolkit.cli.base import app
from toolkit.drills import mitigate
from toolkit.drills.mitigation import (MIN_RECOVERY_ATTEMPTS, ActionError, Mitigations, grade_mitigation,
                                       parse_action)
from toolkit.drills.schema import DrillSpecError, catalogue_dir, load_catalogue, parse_drill
from toolkit.drills.state import CURRENT, RunDir, RunState, append_jsonl
from toolkit.lab.web import DashboardConfig, create_app

REPO = Path(__file__).resolve().parents[1]
MITIGABLE = sorted(d.id for d in load_catalogue().values() if d.mitigations is not None)


def _doc(drill_id: str = "bad-canary") -> dict:
    return yaml.safe_load((catalogue_dir() / f"{drill_id}.yaml").read_text())


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- schema and vocabulary ------------------------------------------------------------------------------

def test_at_least_two_catalogue_drills_offer_a_mitigation_and_each_right_one_is_a_choice():
    assert len(MITIGABLE) >= 2, MITIGABLE
    for drill_id in MITIGABLE:
        m = load_catalogue()[drill_id].mitigations
        assert m.right in m.choices and len(set(m.choices)) == len(m.choices) >= 2


@pytest.mark.parametrize("change,where", [
    (lambda m: m.update(choices=["rollback release"]), "mitigations.choices"),
    (lambda m: m.update(right="rollback transcode_mode"), "mitigations.right"),
    (lambda m: m["choices"].append("rollback transcode_mode"), "mitigations.choices[3]: rollback transcode_mode: "
                                                               "the drill's setup sets no flag"),
    (lambda m: m["choices"].append("retry-policy sometimes"), "mitigations.choices[3]: retry-policy: unknown policy"),
    (lambda m: m["choices"].append("retry-policy backoff:0"), "mitigations.choices[3]: retry-policy: the attempt cap"),
    (lambda m: m["choices"].append("reboot everything"), "mitigations.choices[3]: unknown action 'reboot'"),
    (lambda m: m["choices"].append("rollback"), "mitigations.choices[3]: expected VERB ARG"),
    (lambda m: m["choices"].append("rollback   release"), "mitigations.choices[3]: 'rollback release' is listed twice"),
    (lambda m: m.update(recovery={"tolerance": 2}), "mitigations.recovery.tolerance"),
    (lambda m: m.update(when="now"), "mitigations.when: unknown field"),
])
def test_a_bad_mitigations_block_names_the_field(change, where):
    doc = _doc()
    change(doc["mitigations"])
    with pytest.raises(DrillSpecError) as e:
        parse_drill(doc, "bad-canary.yaml")
    assert where in str(e.value), str(e.value)


def test_a_drill_without_mitigations_still_parses_and_offers_none():
    doc = _doc()
    del doc["mitigations"]
    assert parse_drill(doc, "bad-canary.yaml").mitigations is None


@pytest.mark.parametrize("text,verb,arg", [("rollback release", "rollback", "release"),
                                           ("retry-policy backoff:8", "retry-policy", "backoff:8"),
                                           ("retry-policy none", "retry-policy", "none")])
def test_actions_parse(text, verb, arg):
    a = parse_action(text)
    assert (a.verb, a.arg, a.text) == (verb, arg, text)


def test_retry_policy_action_carries_its_cap():
    assert parse_action("retry-policy backoff:8").retry_policy == ("backoff", 8)
    assert parse_action("retry-policy none").retry_policy == ("none", None)
    with pytest.raises(ActionError, match="none means one try"):
        parse_action("retry-policy none:3")


# -- scoring -----------------------------------------------------------------------------------------

SPEC = Mitigations(("rollback release", "retry-policy none", "retry-policy immediate:8"), "rollback release", 0.01)


def _points(g) -> dict:
    return {p.part: p.points for p in g.parts}


def test_the_right_mitigation_with_a_true_recovery_figure_earns_everything():
    g = grade_mitigation(SPEC, "rollback release", "during", 0.998, 0.995, 149, 150, 0.99)
    assert _points(g) == {"action": 50, "recovery_figure": 25, "recovered": 25} and g.total == g.max_total == 100


def test_a_wrong_mitigation_earns_no_action_points_and_names_the_right_one():
    g = grade_mitigation(SPEC, "retry-policy none", "during", 0.95, 0.95, 142, 150, 0.99)
    assert _points(g) == {"action": 0, "recovery_figure": 25, "recovered": 0}
    assert "rollback release" in g.parts[0].note and "still below the objective" in g.parts[2].note

@pytest.mark.parametrize("good, total, recovered", [
    (118, 118, True),
    (116, 118, True),   # 2 failures in 118 at a 1 % budget: p = 0.33, what a service at its objective often shows
    (110, 113, True),   # p = 0.10
    (111, 115, False),  # 4 failures: p = 0.029, more than the budget explains
    (29, 30, True),
    (28, 30, False),    # p = 0.036
])
def test_recovered_means_no_more_failures_than_the_objective_explains(good, total, recovered):
    """A window a little below the objective is graded by an exact one-sided test, not by its point estimate:
    a hundred attempts of a service exactly at 99 % fail two or more a quarter of the time."""
    g = grade_mitigation(SPEC, "rollback release", "during", good / total, good / total, good, total, 0.99)
    assert _points(g)["recovered"] == (25 if recovered else 0), g.parts[2].note
    assert f"{total - good} failed" in g.parts[2].note and "exact binomial" in g.parts[2].note
    assert ("still below the objective" in g.parts[2].note) is not recovered



@pytest.mark.parametrize("when", ["before", "after"])
def test_a_mitigation_outside_the_fault_earns_nothing_for_the_action_or_the_recovery(when):
    g = grade_mitigation(SPEC, "rollback release", when, 1.0, 1.0, 150, 150, 0.99)
    assert _points(g)["action"] == 0 and _points(g)["recovered"] == 0 and when in g.parts[0].note


def test_a_figure_off_the_engine_by_more_than_the_tolerance_earns_nothing():
    g = grade_mitigation(SPEC, "rollback release", "during", 0.999, 0.97, 150, 150, 0.99)
    assert _points(g)["recovery_figure"] == 0 and "outside ±0.01" in g.parts[1].note


def test_too_few_attempts_show_no_recovery_either_way():
    g = grade_mitigation(SPEC, "rollback release", "during", 1.0, 1.0, MIN_RECOVERY_ATTEMPTS - 1,
                         MIN_RECOVERY_ATTEMPTS - 1, 0.99)
    assert _points(g)["recovered"] == 0 and f"fewer than {MIN_RECOVERY_ATTEMPTS}" in g.parts[2].note
    assert _points(grade_mitigation(SPEC, "rollback release", "during", 1.0, 1.0, MIN_RECOVERY_ATTEMPTS, MIN_RECOVERY_ATTEMPTS,
                                    0.99))["recovered"] == 25


def test_no_mitigation_and_no_figure_earn_nothing():
    assert grade_mitigation(SPEC, None, "none", None, None, None, 0, 0.99).total == 0
    g = grade_mitigation(SPEC, "rollback release", "during", None, None, None, 0, 0.99)
    assert _points(g) == {"action": 50, "recovery_figure": 0, "recovered": 0}


def test_the_mitigation_score_is_a_grade_of_part_scores_as_the_diagnosis_score_is():
    from toolkit.drills.grader import Grade, PartScore

    g = grade_mitigation(SPEC, "retry-policy none", "during", 0.95, 0.95, 142, 150, 0.99)
    assert isinstance(g, Grade) and all(isinstance(p, PartScore) for p in g.parts)
    assert [(p.part, p.credit, p.max_points) for p in g.parts] == [
        ("action", 0.0, 50), ("recovery_figure", 1.0, 25), ("recovered", 0.0, 25)]
    assert (g.total, g.max_total, g.percent, g.answers, g.hint_penalty) == (25, 100, 25, 1, 0)
    none = grade_mitigation(SPEC, None, "none", None, None, None, 0, 0.99)
    assert none.answers == 0 and {p.note for p in none.parts} == {"no mitigation taken"}


# -- the CLI, without a lab ----------------------------------------------------------------------------

def _running_run(data_dir: Path, drill_id: str = "bad-canary", seed: int = 5) -> RunDir:
    run_id = f"20260105T100000-{drill_id}"
    run = RunDir(data_dir / "drills" / run_id)
    run.path.mkdir(parents=True)
    (data_dir / "drills" / CURRENT).write_text(json.dumps({"run_dir": run_id}))
    start = time.time() - 30
    # This very process stands in for the scheduler: the run is "running".
    run.write_state(RunState(run_id=run_id, drill_id=drill_id, seed=seed, speed=1.0, url="http://127.0.0.1:1",
                             data_dir=str(data_dir), started_at=start, duration_s=600.0,
                             scheduler_pid=os.getpid(), events_dir=str(data_dir / "events")))
    run.write_truth({"drill_id": drill_id, "kind": "incident", "fault_start_s": 10.0, "fault_duration_s": 300.0})
    append_jsonl(run.timeline_file, {"t": start, "kind": "drill_started"})
    return run


def _invoke(*args):
    return CliRunner().invoke(app, list(args), env={"OBSLAB_ADMIN_TOKEN": "t"})


def _one_line(result, fragment):
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [["mitigate", "rollback", "release"],
                                     ["recovery", "--success-rate", "0.99", "--since", "2026-01-05T10:00:00Z"]])
def test_no_drill_started(tmp_path, command):
    _one_line(_invoke("drill", *command, "--data-dir", str(tmp_path)), "no drill started in")


def test_a_drill_without_a_mitigation_step_says_so(tmp_path):
    _running_run(tmp_path, "memory-growth")
    _one_line(_invoke("drill", "mitigate", "rollback", "release", "--data-dir", str(tmp_path)),
              "memory-growth has no mitigation step")


def test_mitigate_refuses_what_is_not_a_choice_and_lists_the_run_s_choices(tmp_path):
    run = _running_run(tmp_path)
    out = _invoke("drill", "mitigate", "rollback", "transcode_mode", "--data-dir", str(tmp_path))
    _one_line(out, "'rollback transcode_mode' is not one of this drill's choices: "
                   + ", ".join(mitigate.choices(load_catalogue()["bad-canary"], run.read_state())))
    _one_line(_invoke("drill", "mitigate", "scale", "up", "--data-dir", str(tmp_path)), "unknown action 'scale'")
    _one_line(_invoke("drill", "recovery", "--success-rate", "1", "--since", "2026-01-05T10:00:00Z",
                      "--data-dir", str(tmp_path)), "no mitigation taken yet")
    assert not (run.path / mitigate.MITIGATION_FILE).exists()


def test_a_retry_policy_switch_writes_the_clients_remote_config_once_a_run(tmp_path):
    run = _running_run(tmp_path)
    done = _invoke("drill", "mitigate", "retry-policy", "immediate:8", "--data-dir", str(tmp_path))
    assert done.exit_code == 0, done.output
    assert "right" not in done.output.lower() and "wrong" not in done.output.lower()
    assert json.loads((run.path / "remote-config.json").read_text()) == {"retry_policy": "immediate",
                                                                          "max_attempts": 8}
    record = json.loads((run.path / mitigate.MITIGATION_FILE).read_text())
    assert record["action"] == "retry-policy immediate:8" and record["by"] == "learner"
    assert any(e["kind"] == "mitigation" for e in run.timeline())
    _one_line(_invoke("drill", "mitigate", "rollback", "release", "--data-dir", str(tmp_path)),
              "already took its mitigation (retry-policy immediate:8")
    status = _invoke("drill", "status", "--data-dir", str(tmp_path))
    assert "mitigation taken: retry-policy immediate:8" in status.output


def test_recovery_figures_are_checked_then_recorded(tmp_path):
    run = _running_run(tmp_path)
    assert _invoke("drill", "mitigate", "retry-policy", "none", "--data-dir", str(tmp_path)).exit_code == 0
    at = json.loads((run.path / mitigate.MITIGATION_FILE).read_text())["at"]
    base = ["drill", "recovery", "--data-dir", str(tmp_path)]
    _one_line(_invoke(*base, "--success-rate", "99.5", "--since", _iso(at)), "expected a ratio in [0, 1]")
    _one_line(_invoke(*base, "--success-rate", "0.99", "--since", _iso(at - 60)), "at or after the mitigation")
    _one_line(_invoke(*base, "--success-rate", "0.99", "--since", "yesterday"), "is not a time")
    _one_line(_invoke(*base, "--success-rate", "0.99", "--since", _iso(at), "--until", _iso(at - 1)),
              "--until must be after --since")
    _one_line(_invoke(*base, "--success-rate", "0.99", "--since", _iso(at), "--until", _iso(time.time() + 600)),
              "is in the future")
    ok = _invoke(*base, "--success-rate", "0.995", "--since", _iso(at))
    assert ok.exit_code == 0 and "recovery figure 1 recorded" in ok.output
    [claim] = [json.loads(line) for line in (run.path / mitigate.RECOVERY_FILE).read_text().splitlines()]
    assert claim["value"] == 0.995 and claim["since"] == pytest.approx(at, abs=1e-3) and claim["until"] >= at


def test_the_solution_names_the_right_mitigation_only_after_a_run(tmp_path):
    before = _invoke("drill", "solution", "bad-canary", "--data-dir", str(tmp_path))
    assert before.exit_code != 0 and "rollback release" not in before.output
    run = _running_run(tmp_path)
    append_jsonl(run.timeline_file, {"t": time.time(), "kind": "drill_stopped"})
    after = _invoke("drill", "solution", "bad-canary", "--data-dir", str(tmp_path))
    assert after.exit_code == 0 and "mitigation: rollback release" in after.output


# -- the dashboard ----------------------------------------------------------------------------------------

@pytest.fixture()
def dashboard(tmp_path: Path):
    (tmp_path / "events").mkdir()
    (tmp_path / "admin-token").write_text("t\n")
    config = DashboardConfig(data_dir=tmp_path, spec_path=REPO / "slo.yaml", api_url="http://127.0.0.1:1", settle_s=0)
    return create_app(config).test_client()


def test_dashboard_mitigation_routes_need_the_csrf_token(dashboard, tmp_path):
    _running_run(tmp_path)
    for path in ("/api/drills/active/mitigate", "/api/drills/active/recovery"):
        r = dashboard.post(path, json={"action": "retry-policy none"})
        assert r.status_code == 403 and "X-CSRF-Token" in r.get_json()["error"]["message"]
    assert not (tmp_path / "drills" / "20260105T100000-bad-canary" / mitigate.MITIGATION_FILE).exists()


def test_dashboard_lists_the_run_s_choices_then_mitigates_and_records_the_recovery(dashboard, tmp_path):
    run = _running_run(tmp_path)
    listed = dashboard.get("/api/drills/active/mitigation").get_json()
    assert listed["available"] and listed["taken"] is None
    assert listed["choices"] == list(mitigate.choices(load_catalogue()["bad-canary"], run.read_state()))
    assert "right" not in json.dumps(listed)
    csrf = {"X-CSRF-Token": dashboard.get("/api/csrf").get_json()["token"]}
    bad = dashboard.post("/api/drills/active/mitigate", json={"action": "rollback transcode_mode"}, headers=csrf)
    assert bad.status_code == 422 and "not one of this drill's choices" in bad.get_json()["error"]["message"]
    empty = dashboard.post("/api/drills/active/mitigate", json={}, headers=csrf)
    assert empty.status_code == 422 and empty.get_json()["error"]["field"] == "action"
    ok = dashboard.post("/api/drills/active/mitigate", json={"action": "retry-policy none"}, headers=csrf)
    assert ok.status_code == 200, ok.get_json()
    assert json.loads((run.path / mitigate.MITIGATION_FILE).read_text())["by"] == "dashboard"
    taken = dashboard.get("/api/drills/active/mitigation").get_json()["taken"]
    assert taken["action"] == "retry-policy none"
    rate = dashboard.post("/api/drills/active/recovery", json={"success_rate": "x", "since": taken["since"]},
                          headers=csrf)
    assert rate.status_code == 422 and rate.get_json()["error"]["field"] == "success_rate"
    recorded = dashboard.post("/api/drills/active/recovery", json={"success_rate": 0.99, "since": taken["since"]},
                              headers=csrf)
    assert recorded.status_code == 200, recorded.get_json()
    assert (run.path / mitigate.RECOVERY_FILE).read_text().count("\n") == 1


# -- the clients' remote config -------------------------------------------------------------------------

def test_the_drill_locustfile_switches_the_retry_policy_from_the_remote_config(tmp_path):
    config = tmp_path / "remote-config.json"
    script = f"""
import json, os, time
import toolkit.drills.locustfile as lf
from loadtests import creator
print(json.dumps([creator.SETTINGS.retry.kind, creator.SETTINGS.retry.max_attempts]))
print(lf.apply_remote_config({str(config)!r}))
open({str(config)!r}, "w").write(json.dumps({{"retry_policy": "backoff", "max_attempts": 8}}))
print(lf.apply_remote_config({str(config)!r}), lf.apply_remote_config({str(config)!r}))
print(json.dumps([creator.SETTINGS.retry.kind, creator.SETTINGS.retry.max_attempts]))
time.sleep(0.01)
open({str(config)!r}, "w").write(json.dumps({{"retry_policy": "sometimes"}}))
print(lf.apply_remote_config({str(config)!r}), creator.SETTINGS.retry.kind)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OBSLAB_LOAD_RETRY_POLICY": "immediate",
           "OBSLAB_LOAD_RETRY_MAX_ATTEMPTS": "5"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == ['["immediate", 5]', "False", "True False", '["backoff", 8]', "False backoff"], proc.stdout
    assert "remote config" in proc.stderr and "ignored" in proc.stderr  # a bad file is reported, not applied


# -- the report's figures, over seeded synthetic events --------------------------------------------------

def _synthetic_bad_canary_run(data_dir: Path, heals_at_s: float) -> RunDir:
    """A finished bad-canary run over seeded events: the canary fails from 200 s until ``heals_at_s`` (the
    fault is in force 200-600 s); the learner rolled the release back at 350 s."""
    from toolkit.events.synth import Effect, SynthConfig, generate, write_jsonl

    start_dt = datetime(2026, 1, 5, 10, 0, 0, tzinfo=timezone.utc)
    cfg = SynthConfig(attempts=3000, duration_s=700.0, start=start_dt, cancel_rate=0.0, abandon_rate=0.0,
                      transcode_failure_rate=0.0, canary_share=0.3,
                      effects=(Effect(where={"release": "canary"}, start_s=200.0, end_s=heals_at_s, failure_rate=0.9,
                                      error_class="internal"),))
    events = data_dir / "events"
    events.mkdir(parents=True)
    write_jsonl(generate(cfg, seed=5), events / "events.jsonl")
    start = start_dt.timestamp()
    run_id = "20260105T100000-bad-canary"
    run = RunDir(data_dir / "drills" / run_id)
    run.path.mkdir(parents=True)
    (data_dir / "drills" / CURRENT).write_text(json.dumps({"run_dir": run_id}))
    run.write_state(RunState(run_id=run_id, drill_id="bad-canary", seed=3, speed=1.0, url="http://127.0.0.1:1",
                             data_dir=str(data_dir), started_at=start, duration_s=700.0, events_dir=str(events)))
    run.write_truth({"fault_start_s": 200.0, "fault_duration_s": 400.0, "fault_applied_at": start + 200,
                     "fault_removed_at": start + 600})
    append_jsonl(run.timeline_file, {"t": start, "kind": "drill_started"})
    (run.path / mitigate.MITIGATION_FILE).write_text(json.dumps(
        {"action": "rollback release", "at": start + 350, "at_scenario_s": 350.0, "by": "learner"}))
    append_jsonl(run.timeline_file, {"t": start + 350, "kind": "mitigation", "action": "rollback release",
                                     "by": "learner"})
    append_jsonl(run.timeline_file, {"t": start + 700, "kind": "drill_finished"})
    return run


def _result(run: RunDir, claim: tuple[float, float, float] | None):
    from toolkit.drills.measure import Window
    from toolkit.drills.report import default_spec

    state = run.read_state()
    start = state.started_at
    if claim is not None:
        value, since_s, until_s = claim
        append_jsonl(run.path / mitigate.RECOVERY_FILE, {"value": value, "since": start + since_s,
                                                          "until": start + until_s, "at": start + until_s})
    return mitigate.mitigation_result(run, default_spec(state), Window(start + 200, start + 600), start + 700,
                                      lambda t: t - start)


def _engine_rate(run: RunDir, since_s: float, until_s: float) -> float:
    from toolkit.events import load_events
    from toolkit.measures.sli import SliQuery, compute_report
    from toolkit.slo.spec import load_spec

    start = run.read_state().started_at
    events = load_events([str(Path(run.read_state().events_dir))])
    totals = compute_report(events, load_spec(REPO / "slo.yaml"),
                            SliQuery(since=_iso(start + since_s), until=_iso(start + until_s), window_s=None)).totals
    return totals.figure("publish_success_rate").value


def test_the_report_measures_before_after_and_the_learners_window_with_the_engine(tmp_path):
    run = _synthetic_bad_canary_run(tmp_path, heals_at_s=352.0)  # the rollback took the traffic off the canary
    claimed = _engine_rate(run, 360, 590)  # what `obslab sli --since … --until …` prints
    r = _result(run, (claimed, 360, 590))
    assert r.when == "during" and r.time_to_mitigate_s == pytest.approx(150.0)
    assert r.before.rate < 0.9 < 0.99 <= r.after.rate  # the canary failed, then stopped failing
    assert r.claim_window.rate == pytest.approx(claimed) and r.recovered.rate == pytest.approx(claimed)
    assert {p.part: p.points for p in r.grade.parts} == {"action": 50, "recovery_figure": 25, "recovered": 25}
    md = mitigate.render_mitigation_markdown(r, lambda t: t - run.read_state().started_at)
    assert "## Mitigation" in md and "Time to mitigate (fault start → mitigation): 150.0 s" in md
    assert f"--since {_iso(run.read_state().started_at + 200)}" in md  # the command that reproduces "before"


def test_a_window_that_shows_the_fault_s_own_end_earns_no_recovery(tmp_path):
    run = _synthetic_bad_canary_run(tmp_path, heals_at_s=600.0)  # nothing the learner did helped
    r = _result(run, (1.0, 605, 690))  # after the fault's end: all healthy, but not thanks to the mitigation
    parts = {p.part: p for p in r.grade.parts}
    assert r.recovered is None and parts["recovered"].points == 0, parts["recovered"]
    assert r.after.rate < 0.99  # from the mitigation to the fault's end it kept failing


def test_a_learner_window_still_in_the_fault_shows_no_recovery_when_there_was_none(tmp_path):
    run = _synthetic_bad_canary_run(tmp_path, heals_at_s=600.0)
    claimed = _engine_rate(run, 360, 590)
    r = _result(run, (claimed, 360, 590))
    parts = {p.part: p.points for p in r.grade.parts}
    assert parts == {"action": 50, "recovery_figure": 25, "recovered": 0}  # an honest figure, no recovery


def test_the_written_report_has_the_mitigation_section_and_json(tmp_path):
    from toolkit.drills.report import write_report

    run = _synthetic_bad_canary_run(tmp_path, heals_at_s=352.0)
    md = write_report(run).read_text()
    assert "## Mitigation" in md and "mitigation (learner): rollback release" in md
    m = json.loads((run.report_dir / "report.json").read_text())["mitigation"]
    assert m["action"] == "rollback release" and m["claimed"] is None
    assert [p["points"] for p in m["grade"]["parts"]] == [50, 0, 0]


def test_a_learners_debrief_sets_their_mitigation_beside_the_one_the_experts_diagnosis_points_to(tmp_path):
    from toolkit.drills.report import write_report

    run = _synthetic_bad_canary_run(tmp_path, heals_at_s=352.0)
    write_report(run)
    report = json.loads((run.report_dir / "report.json").read_text())
    expert = report["expert"]["mitigation"]
    # The solver found the canary failing and points to rolling its flag back; it took nothing in this run.
    assert (expert["action"], expert["taken"]) == ("rollback release", False), expert
    paths = {p["stage"]: p for p in report["paths"]}
    assert "would mitigate with rollback release" in paths["mitigate"]["expert"]
    assert paths["mitigate"]["learner"] == "mitigated: rollback release" and not paths["mitigate"]["diverged"]
    assert any(s["stage"] == "mitigate" and s["source"] == "mitigation" for s in report["learner_path"])
    md = (run.report_dir / "report.md").read_text()
    assert "| mitigate | would mitigate with rollback release" in md


# -- the unattended solver's mitigation (--auto --auto-mitigate) -------------------------------------------

@pytest.mark.parametrize("cause, cohort, choices, want", [
    ("canary_regression", {"release": "canary", "media_size_bucket": "large"},
     ["retry-policy none", "rollback release", "retry-policy immediate:8"], "rollback release"),
    ("chunk_upload_failures", {"network_type": "4g"},
     ["retry-policy none", "retry-policy immediate:5", "retry-policy backoff:8", "retry-policy backoff:3"],
     "retry-policy backoff:8"),
    ("retry_amplification", {}, ["retry-policy immediate:8", "retry-policy backoff:3", "retry-policy backoff:6"],
     "retry-policy backoff:3"),
    ("storage_outage", {"region": "eu-west"}, ["rollback release", "retry-policy none"], None),
    ("chunk_upload_failures", {}, ["retry-policy none", "retry-policy immediate:5"], None),
])
def test_the_solver_takes_the_choice_its_diagnosis_points_to(cause, cohort, choices, want):
    from toolkit.drills.auto import choose_mitigation

    diagnosis = {"causes": [{"cause": cause}], "cohorts": [{"cohort": cohort}]}
    got = choose_mitigation(choices, diagnosis)
    assert (got[0] if got else None) == want
    assert choose_mitigation(list(reversed(choices)), diagnosis) == got  # not the order shown


@pytest.mark.parametrize("status_rates, feed_rates, want", [
    ((2.0, 11.0), (1.0, 1.2), "shed-load status:95"),  # the polls multiplied at the peak: they took the pool
    ((2.0, 2.4), (0.5, 3.0), "shed-load feed"),
])
def test_a_saturated_database_sheds_the_class_whose_traffic_grew(status_rates, feed_rates, want):
    from toolkit.drills.auto import choose_mitigation

    choices = ["shed-load feed", "rollback release", "shed-load status:95", "retry-policy none"]
    diagnosis = {"causes": [{"cause": "database_saturation"}], "cohorts": [],
                 "evidence": {"shed_class_rate_status": list(status_rates), "shed_class_rate_feed": list(feed_rates)}}
    got = choose_mitigation(choices, diagnosis)
    assert got is not None and got[0] == want, got
    assert choose_mitigation(list(reversed(choices)), diagnosis) == got


def _synthetic_cellular_run(data_dir: Path) -> RunDir:
    """A cellular-chunk-failures run going on now (this process stands in for its scheduler), 300 s in: chunk
    writes fail half the time since 180 s (seeded events, stamped from now back)."""
    from toolkit.events.synth import Effect, SynthConfig, generate, write_jsonl

    start = time.time() - 300
    cfg = SynthConfig(attempts=3000, duration_s=600.0, start=datetime.fromtimestamp(start, timezone.utc),
                      cancel_rate=0.0, abandon_rate=0.0,
                      effects=(Effect(start_s=180.0, end_s=420.0, chunk_failure_rate=0.5),))
    events = data_dir / "events"
    events.mkdir(parents=True)
    write_jsonl(generate(cfg, seed=5), events / "events.jsonl")
    run_id = "20260105T100000-cellular-chunk-failures"
    run = RunDir(data_dir / "drills" / run_id)
    run.path.mkdir(parents=True)
    (data_dir / "drills" / CURRENT).write_text(json.dumps({"run_dir": run_id}))
    run.write_state(RunState(run_id=run_id, drill_id="cellular-chunk-failures", seed=3, speed=1.0,
                             url="http://127.0.0.1:1", data_dir=str(data_dir), started_at=start, duration_s=600.0,
                             events_dir=str(events), auto=True, auto_mitigate=True, scheduler_pid=os.getpid()))
    run.write_truth({"drill_id": "cellular-chunk-failures", "fault_start_s": 180.0, "fault_duration_s": 240.0,
                     "fault_applied_at": start + 180})
    append_jsonl(run.timeline_file, {"t": start, "kind": "drill_started"})
    return run


def test_auto_mitigate_acts_through_the_learners_mitigate_and_reports_the_engines_recovery(tmp_path, monkeypatch):
    from toolkit.drills import auto_mitigate
    from toolkit.drills.lab import Lab
    from toolkit.drills.report import default_spec, write_report
    from toolkit.drills.schema import find_drill

    run = _synthetic_cellular_run(tmp_path)
    m = auto_mitigate.AutoMitigator(run, Lab(tmp_path, "http://127.0.0.1:1", "t"),
                                    find_drill("cellular-chunk-failures"), default_spec(run.read_state()), "test")
    m.step(time.time())
    assert [look["choice"] for look in m.looks] == ["retry-policy backoff:8"]
    assert m.looks[0]["ongoing"] and m.looks[0]["cause"] == "chunk_upload_failures"
    assert mitigate.taken(run) is None  # one look is not enough to act on
    m.step(time.time())
    assert len(m.looks) == 1  # the next look waits LOOK_EVERY_S of scenario time
    m.next_look_at = 0.0
    m.step(time.time())
    done = mitigate.taken(run)
    assert (done["action"], done["by"]) == ("retry-policy backoff:8", "auto")
    # The lab changed as a learner's mitigation changes it: the clients' remote config.
    assert json.loads((run.path / "remote-config.json").read_text()) == {"retry_policy": "backoff",
                                                                         "max_attempts": 8}
    assert "chunk tries fail" in json.loads((run.path / mitigate.REASONING_FILE).read_text())["why"]
    with pytest.raises(runner_error()):  # once a run, for the solver as for a learner
        mitigate.mitigate(m.lab, "retry-policy none", by="auto")
    monkeypatch.setattr(auto_mitigate, "SETTLE_S", 0.5)
    monkeypatch.setattr(auto_mitigate, "RECOVERY_WINDOW_S", 3.0)
    m.step(time.time())
    assert not (run.path / mitigate.RECOVERY_FILE).exists()  # its window has not passed yet
    time.sleep(max(0.0, done["at"] + 3.6 - time.time()))
    m.step(time.time())
    [claim] = [json.loads(line) for line in (run.path / mitigate.RECOVERY_FILE).read_text().splitlines()]
    assert claim["by"] == "auto" and claim["since"] == pytest.approx(done["at"] + 0.5)
    # The figure is the one `obslab sli --since … --until …` prints over the same window.
    assert claim["value"] == pytest.approx(_engine_rate(run, claim["since"] - run.read_state().started_at,
                                                        claim["until"] - run.read_state().started_at))
    # The debrief of the unattended run shows the expert path with the mitigation it took and its recovery.
    append_jsonl(run.timeline_file, {"t": time.time(), "kind": "drill_finished"})
    md = write_report(run).read_text()
    report = json.loads((run.report_dir / "report.json").read_text())
    assert report["expert"]["mitigation"]["taken"] and report["expert"]["mitigation"]["action"] == done["action"]
    assert re.search(r"mitigate: mitigated with retry-policy backoff:8 at t=30\d s \(chunk tries fail", md), md
    assert f"showed recovery: publish success rate {claim['value']:.4f}" in md
    assert report["mitigation"]["by"] == "auto" and report["mitigation"]["action"] == "retry-policy backoff:8"


@pytest.mark.parametrize("choices, act", [
    (["a"], None),                       # one look is not enough
    (["a", "a"], "a"),
    (["a", None, "a"], "a"),             # a look that saw nothing to act on does not reset the count
    ([None, None, "a", None, None, "a"], "a"),
    (["a", "b"], None),                  # a look pointing elsewhere does
    (["a", "b", "a"], None),
    (["a", "b", "b"], "b"),
    (["a", "a", None], None),            # the acting look itself must see an incident going on
])
def test_the_solver_acts_on_two_looks_that_agree_with_none_between_them_pointing_elsewhere(choices, act):
    from toolkit.drills.auto_mitigate import agreed_choice

    assert agreed_choice(choices) == act


def runner_error():
    from toolkit.drills.runner import DrillError

    return DrillError


@pytest.mark.parametrize("args, fragment", [
    (["cellular-chunk-failures", "--auto-mitigate"], "--auto-mitigate goes with --auto"),
    (["memory-growth", "--auto", "--auto-mitigate"], "memory-growth has no mitigation step"),
])
def test_auto_mitigate_needs_auto_and_a_drill_with_a_mitigation_step(tmp_path, args, fragment):
    _one_line(_invoke("drill", "start", *args, "--data-dir", str(tmp_path)), fragment)


def test_the_request_rate_of_each_shed_class_is_read_from_the_services_own_route_labels():
    """The scheduler's samples carry Flask's rule as the route (/v1/uploads/<upload_id>); the shed classes name the
    OpenAPI path. A mismatch read as 'no traffic' and shed the wrong class in a real run."""
    from toolkit.drills.auto import _metric_signals
    from toolkit.drills.measure import MetricSample, Window

    def sample(t, status, feed):
        return MetricSample(t, {
            'obslab_http_requests_total{code="200",method="GET",route="/v1/uploads/<upload_id>"}': status,
            'obslab_http_requests_total{code="503",method="GET",route="/v1/uploads/<upload_id>"}': status / 10,
            'obslab_http_requests_total{code="200",method="GET",route="/v1/feed"}': feed,
            'obslab_http_requests_total{code="200",method="POST",route="/v1/uploads/<upload_id>/complete"}': 99.0})

    signals = _metric_signals([sample(100.0, 0.0, 0.0), sample(110.0, 100.0, 20.0)], Window(100.0, 110.0))
    assert signals["shed_class_rate_status"] == pytest.approx(11.0)
    assert signals["shed_class_rate_feed"] == pytest.approx(2.0)
