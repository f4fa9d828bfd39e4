"""Rollout call drills (kind: rollout): the spec, the stage stepping on a fake clock, the calls and their errors,
the ground truth and the grade, the CLI and the dashboard's buttons. No lab: the live run is
tests/test_drill_rollout_live.py."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from toolkit.cli.base import app
from toolkit.drills import runner
from drill_runs import CountingRun
from toolkit.drills.rollout_drill import (DecisionPoint, call_credit, decision_points, grade_calls, next_step,
                                          position, record_call, right_call, stage_power, tick)
from toolkit.drills.schema import DrillSpecError, catalogue_dir, find_drill, load_catalogue, parse_drill
from toolkit.drills.state import RunDir, RunState, append_jsonl

REPO = Path(__file__).resolve().parents[1]
ROLLOUTS = sorted(load_catalogue(kind="rollout"))


def _doc(name: str = "rollout-cohort-tail") -> dict:
    return yaml.safe_load((catalogue_dir() / f"{name}.yaml").read_text())


def test_the_catalogue_has_the_three_rollout_drills():
    assert ROLLOUTS == ["rollout-capacity-cliff", "rollout-cohort-tail", "rollout-good-change"]
    good, tail, cliff = (find_drill(i) for i in ("rollout-good-change", "rollout-cohort-tail", "rollout-capacity-cliff"))
    assert good.truth.regression is None
    # Bad only in p99, only for one cohort of the canary.
    assert tail.truth.regression.shows_in == "processing_latency_p99" and tail.truth.regression.cohort == {
        "network_type": "3g"} and tail.truth.regression.fault.selector["release"] == "canary"
    # Harm only from the 25 % stage on.
    assert cliff.truth.regression.from_percent == 25 and cliff.truth.regression.cohort == {}
    for d in (good, tail, cliff):
        assert d.rollout.stages == (1, 5, 25, 100)
        assert d.setup.duration_s == d.rollout.bound_s()  # every wait bounded by the drill's length


@pytest.mark.parametrize("edit,where", [
    (lambda d: d["setup"].__setitem__("duration", "10m"), "setup.duration"),
    (lambda d: d["rollout"].__setitem__("stages", [1, 5, 25]), "rollout.stages"),
    (lambda d: d["rollout"].__setitem__("stages", [5, 1, 100]), "rollout.stages"),
    (lambda d: d["rollout"].__setitem__("max_holds", 9), "rollout.max_holds"),
    (lambda d: d["regression"]["selector"].pop("release"), "regression.selector.release"),
    (lambda d: d["regression"].__setitem__("from_percent", 10), "regression.from_percent"),
    (lambda d: d["regression"].__setitem__("shows_in", "vibes"), "regression.shows_in"),
    (lambda d: d.pop("prompt"), "prompt"),
])
def test_a_bad_rollout_drill_names_the_field(edit, where):
    doc = _doc()
    edit(doc)
    with pytest.raises(DrillSpecError, match=f"rollout-cohort-tail.yaml: {where}"):
        parse_drill(doc, "rollout-cohort-tail.yaml")


# -- stepping on a fake clock -------------------------------------------------------------------------------

class FakeRun:
    """The timeline as the scheduler and the CLI write it, on a clock the test moves."""

    def __init__(self, drill_id: str = "rollout-capacity-cliff", speed: float = 10.0):
        self.drill = find_drill(drill_id)
        self.spec = self.drill.rollout
        self.speed = speed
        self.timeline: list[dict] = []
        self.now = 0.0

    def step(self):
        s = next_step(self.spec, self.timeline, self.now, self.speed)
        if s is None:
            return None
        if s.action == "stage":
            self.timeline.append({"kind": "rollout_stage", "stage": s.stage, "round": s.round,
                                  "percent": self.spec.stages[s.stage], "at_active_s": self.now, "t": self.now})
        elif s.action == "call_due":
            self.timeline.append({"kind": "call_due", "stage": s.stage, "round": s.round, "at_active_s": self.now,
                                  "t": self.now})
        else:
            self.timeline.append({"kind": "rollout_ended", "reason": s.reason, "at_active_s": self.now, "t": self.now})
        return s

    def call(self, call: str):
        pos = position(self.spec, self.timeline)
        self.timeline.append({"kind": "call", "call": call, "stage": pos.stage, "round": pos.round, "t": self.now})


def test_the_stages_step_on_the_clock_and_the_calls():
    r = FakeRun()
    window, decide = r.spec.window_s / r.speed, r.spec.decide_within_s / r.speed
    assert r.step().action == "stage" and position(r.spec, r.timeline).percent == 1
    r.now = window - 0.1
    assert r.step() is None  # still collecting
    r.now = window
    assert r.step().action == "call_due"
    assert r.step() is None  # waiting for the call, within its time
    r.call("hold")
    s = r.step()
    assert (s.action, s.stage, s.round) == ("stage", 0, 1)  # one more window at 1 %
    r.now += window
    r.step()
    r.call("continue")
    assert position(r.spec, r.timeline).phase == "call_due"
    s = r.step()
    assert (s.action, s.stage, s.round) == ("stage", 1, 0) and position(r.spec, r.timeline).percent == 5
    r.now += window
    r.step()
    r.call("continue")
    r.step()
    r.now += window
    r.step()
    r.call("continue")
    r.step()
    assert position(r.spec, r.timeline).percent == 100
    r.now += window - 0.1
    assert r.step() is None
    r.now += 0.1
    assert r.step().reason == "completed"  # 100 % collects one window and ends: no call there
    assert r.step() is None
    assert [p.percent for p in decision_points(r.spec, r.timeline)] == [1, 1, 5, 25]
    del decide


def test_a_rollback_ends_the_rollout_and_a_missed_call_too():
    r = FakeRun()
    r.step()
    r.now = r.spec.window_s / r.speed
    r.step()
    r.call("rollback")
    assert r.step().reason == "rolled_back" and position(r.spec, r.timeline).ended == "rolled_back"
    late = FakeRun()
    late.step()
    late.now = late.spec.window_s / late.speed
    late.step()
    late.now += late.spec.decide_within_s / late.speed - 0.01
    assert late.step() is None
    late.now += 0.01
    assert late.step().reason == "no_call"
    [point] = decision_points(late.spec, late.timeline)
    assert point.call is None


# -- calls: recorded only when due, one line for every mistake ----------------------------------------------

def _state(run_id: str, drill_id: str, **kw) -> RunState:
    return RunState(run_id=run_id, drill_id=drill_id, seed=3, speed=10.0, url="http://127.0.0.1:1",
                    data_dir="/nonexistent", started_at=time.time() - 5, duration_s=300.0, **kw)


def _fake_run(data_dir: Path, drill_id: str = "rollout-capacity-cliff", alive: bool = True) -> RunDir:
    run_id = f"20260105T100000-{drill_id}"
    run = RunDir(data_dir / "drills" / run_id)
    run.path.mkdir(parents=True)
    (data_dir / "drills" / "current.json").write_text(json.dumps({"run_dir": run_id}))
    run.write_state(_state(run_id, drill_id, scheduler_pid=os.getpid() if alive else None))
    run.write_truth({"drill_id": drill_id, "kind": "rollout", "regression": "hidden"})
    append_jsonl(run.timeline_file, {"t": time.time() - 5, "kind": "drill_started"})
    return run


def _log(run: RunDir, kind: str, **fields) -> None:
    append_jsonl(run.timeline_file, {"t": time.time(), "kind": kind, **fields})


def test_a_call_is_taken_only_when_due(tmp_path):
    run = _fake_run(tmp_path)
    drill = find_drill("rollout-capacity-cliff")
    drills = tmp_path / "drills"
    with pytest.raises(runner.DrillError, match="has not started yet"):
        runner.decide(drills, "continue")
    _log(run, "rollout_stage", stage=0, round=0, percent=1, at_active_s=0.0)
    with pytest.raises(runner.DrillError, match=r"stage 1 % is still collecting data: its call is due in \d+ s"):
        runner.decide(drills, "continue")
    with pytest.raises(runner.DrillError, match="unknown call 'promote': one of continue, hold, rollback"):
        runner.decide(drills, "promote")
    _log(run, "call_due", stage=0, round=0, percent=1, at_active_s=12.0)
    assert runner.decide(drills, "hold")[1] == 1
    with pytest.raises(runner.DrillError, match="already recorded"):
        runner.decide(drills, "continue")
    _log(run, "rollout_stage", stage=0, round=1, percent=1, at_active_s=13.0)
    _log(run, "call_due", stage=0, round=1, percent=1, at_active_s=25.0)
    with pytest.raises(runner.DrillError, match="held 1 time"):
        runner.decide(drills, "hold")
    runner.decide(drills, "continue")
    assert [(a["call"], a["percent"], a["round"]) for a in run.answers()] == [("hold", 1, 0), ("continue", 1, 1)]
    _log(run, "rollout_ended", reason="rolled_back", stage=0, at_active_s=30.0)
    counting = CountingRun(run.path)
    with pytest.raises(ValueError, match="has ended"):
        record_call(counting, drill, "continue", 31.0)
    assert counting.reads == {"timeline": 1, "state": 1}


def test_a_scheduler_tick_reads_no_file_and_acts_on_what_it_logged(tmp_path):
    """The scheduler reads the timeline once a tick and passes it down with its state and truth: a tick reads none
    of the run's files again, and a step it takes is in the timeline the next step sees (no step twice)."""
    run = _fake_run(tmp_path)
    drill = find_drill("rollout-capacity-cliff")
    state = run.read_state()
    _log(run, "rollout_stage", stage=0, round=0, percent=1, at_active_s=0.0, counted={})
    window, decide = drill.rollout.window_s / state.speed, drill.rollout.decide_within_s / state.speed
    counting = CountingRun(run.path)
    # The stage's window is over: its call comes due (a step that needs no lab call, so no lab here).
    assert not tick(drill, counting, None, state, {}, run.timeline(), window)
    assert [e["kind"] for e in run.timeline()].count("call_due") == 1
    assert not tick(drill, counting, None, state, {}, run.timeline(), window + decide - 0.01)
    assert tick(drill, counting, None, state, {}, run.timeline(), window + decide)  # no call in time: it ends
    assert [e["kind"] for e in run.timeline()][-3:] == ["call_due", "call_missed", "rollout_ended"]
    assert not counting.reads, counting.reads


def test_decide_errors_are_one_line_on_the_cli(tmp_path):
    cli = CliRunner()
    base = ["drill", "decide", "--data-dir", str(tmp_path)]
    none = cli.invoke(app, base + ["continue"])
    assert none.exit_code != 0 and "no drill started" in none.output
    run = _fake_run(tmp_path)
    _log(run, "rollout_stage", stage=0, round=0, percent=1, at_active_s=0.0)
    early = cli.invoke(app, base + ["rollback"])
    assert early.exit_code != 0 and "still collecting data" in early.output and "Traceback" not in early.output
    assert len(early.output.strip().splitlines()) == 1, early.output
    word = cli.invoke(app, base + ["ship-it"])
    assert word.exit_code != 0 and "unknown call 'ship-it'" in word.output
    _log(run, "call_due", stage=0, round=0, percent=1, at_active_s=12.0)
    ok = cli.invoke(app, base + ["continue"])
    assert ok.exit_code == 0 and "continue recorded for the 1 % stage" in ok.output
    answer = cli.invoke(app, ["drill", "answer", "--data-dir", str(tmp_path), "--cause", "x", "--cohort", "everyone",
                              "--impact", "1"])
    assert answer.exit_code != 0 and "obslab drill decide" in answer.output


def test_decide_refuses_an_incident_drill(tmp_path):
    _fake_run(tmp_path, "retry-storm")
    with pytest.raises(runner.DrillError, match="incident drill: `obslab drill decide` is for rollout drills"):
        runner.decide(tmp_path / "drills", "continue")


def test_status_says_when_a_call_is_due_and_nothing_of_the_truth(tmp_path):
    run = _fake_run(tmp_path, "rollout-cohort-tail")
    _log(run, "rollout_stage", stage=0, round=0, percent=1, at_active_s=0.0, counted={"stable": 10, "canary": 0})
    _log(run, "call_due", stage=0, round=0, percent=1, at_active_s=12.0, control_outcomes=900, variant_outcomes=9,
         power_detect_drop=0.03, power_alpha=0.004)
    out = CliRunner().invoke(app, ["drill", "status", "--data-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "stage 1 % since" in text and "call due" in text and "900 stable and 9 canary publishes" in text
    assert "0.03" in text
    for secret in ("3g", "network_type", "latency", "p99 on", "rollback is", "db"):
        assert secret not in text.lower().replace("rollback (", ""), secret


# -- ground truth and grade ---------------------------------------------------------------------------------

def test_the_right_call_follows_the_harm_and_what_the_data_show():
    assert right_call(False, False) == ("continue", ("continue",))
    assert right_call(True, True) == ("rollback", ("rollback",))
    assert right_call(True, False) == ("continue", ("continue", "hold"))  # nobody could see it yet
    assert call_credit("hold", "continue", ("continue",)) == 0.5
    assert call_credit("hold", "rollback", ("rollback",)) == 0.25
    assert call_credit("rollback", "continue", ("continue",)) == 0.0
    assert call_credit(None, "continue", ("continue",)) == 0.0


def _points(calls: list[tuple[float, str | None]]) -> list[DecisionPoint]:
    stages = [1, 5, 25]
    return [DecisionPoint(stages.index(p), p, 0, 0.0, 1.0, 2.0, c) for p, c in calls]


def test_grade_the_capacity_cliff():
    drill = find_drill("rollout-capacity-cliff")
    perfect = grade_calls(drill, _points([(1, "continue"), (5, "continue"), (25, "rollback")]), [False, False, True],
                          "rolled_back")
    assert perfect["total"] == 100 and [c.right for c in perfect["calls"]] == ["continue", "continue", "rollback"]
    late = grade_calls(drill, _points([(1, "continue"), (5, "continue"), (25, "continue")]), [False, False, True],
                       "completed")
    assert round(late["total"], 1) == 66.7
    # Rolling back at 5 % throws away a change that was fine there: the stages not reached count as missed.
    early = grade_calls(drill, _points([(1, "continue"), (5, "rollback")]), [False, False], "rolled_back")
    assert early["unreached"] == 1 and early["points"] == 3 and round(early["total"], 1) == 33.3
    hinted = grade_calls(drill, _points([(1, "continue"), (5, "continue"), (25, "rollback")]), [False, False, True],
                         "rolled_back", hints_taken=2, hint_cost=5.0)
    assert hinted["total"] == 90


def test_grade_a_harm_the_data_could_not_show_yet():
    drill = find_drill("rollout-cohort-tail")  # harmful from 1 %
    g = grade_calls(drill, _points([(1, "hold"), (5, "continue"), (25, "rollback")]), [False, False, True],
                    "rolled_back")
    assert g["total"] == 100 and g["calls"][0].harmful and not g["calls"][0].shown


def test_stage_power_is_computed_from_the_stage_counts():
    drill = find_drill("rollout-good-change")
    timeline = [{"kind": "rollout_stage", "stage": 2, "round": 0, "counted": {"stable": 1000, "canary": 100}}]
    small = stage_power(drill, timeline, {"stable": 1500, "canary": 110}, 25)
    big = stage_power(drill, timeline, {"stable": 9000, "canary": 3000}, 25)
    assert (small["control_outcomes"], small["variant_outcomes"]) == (500, 10)
    assert 0 <= small["power_detect_drop"] < big["power_detect_drop"] <= 1
    assert 0 < small["power_alpha"] < 0.05  # the rollout judge's rollback alpha (always-valid)
    assert stage_power(drill, timeline, {}, 25)["power_detect_drop"] == 0.0


# -- the dashboard ------------------------------------------------------------------------------------------

def test_the_dashboard_shows_the_rollout_and_takes_its_calls(tmp_path):
    from toolkit.lab.web import DashboardConfig, create_app

    run = _fake_run(tmp_path, "rollout-good-change")
    client = create_app(DashboardConfig(data_dir=tmp_path, spec_path=REPO / "slo.yaml", api_url="http://127.0.0.1:1",
                                        settle_s=0)).test_client()
    csrf = {"X-CSRF-Token": client.get("/api/csrf").get_json()["token"]}
    _log(run, "rollout_stage", stage=0, round=0, percent=1, at_active_s=0.0)
    active = client.get("/api/drills").get_json()["active"]
    assert active["kind"] == "rollout" and active["rollout"]["phase"] == "collecting" and active["questions"] == []
    early = client.post("/api/drills/active/decide", json={"call": "continue"}, headers=csrf)
    assert early.status_code == 409 and "still collecting" in early.get_json()["error"]["message"]
    assert client.post("/api/drills/active/decide", json={"call": 3}, headers=csrf).status_code == 422
    _log(run, "call_due", stage=0, round=0, percent=1, at_active_s=12.0)
    ok = client.post("/api/drills/active/decide", json={"call": "continue"}, headers=csrf)
    assert ok.status_code == 200, ok.get_json()
    assert [(a["call"], a["by"]) for a in run.answers()] == [("continue", "dashboard")]
    assert ok.get_json()["active"]["rollout"]["calls"] == [{"percent": 1, "round": 0, "call": "continue"}]
    forged = client.post("/api/drills/active/decide", json={"call": "rollback"})  # no CSRF token
    assert forged.status_code == 403


def test_rollout_drills_run_only_with_the_learner(tmp_path):
    from toolkit.drills.lab import Lab

    lab = Lab(tmp_path, "http://127.0.0.1:1", "token")
    with pytest.raises(runner.DrillError, match="its calls are yours to make"):
        runner.start("rollout-good-change", lab, auto=True)


def test_truth_file_is_private(tmp_path):
    run = _fake_run(tmp_path)
    assert stat.S_IMODE(run.truth_file.stat().st_mode) == 0o600


def test_the_solution_of_a_rollout_drill_waits_for_its_end(tmp_path):
    cli = CliRunner()
    refused = cli.invoke(app, ["drill", "solution", "rollout-cohort-tail", "--data-dir", str(tmp_path)])
    assert refused.exit_code != 0 and "no run of rollout-cohort-tail has ended" in refused.output
    run = _fake_run(tmp_path, "rollout-cohort-tail", alive=False)
    run.log("drill_finished")
    shown = cli.invoke(app, ["drill", "solution", "rollout-cohort-tail", "--data-dir", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "network_type=3g" in text and "processing_latency_p99" in text and "from the 1 % stage" in text


def test_story_commands_say_they_cover_incident_drills(tmp_path):
    from toolkit.drills.story_run import StoryRunError, story_template_for

    _fake_run(tmp_path, "rollout-good-change")
    with pytest.raises(StoryRunError, match="is a rollout drill"):
        story_template_for(tmp_path, "current")


def test_the_report_renders_each_call_beside_the_right_one():
    from toolkit.drills.rollout_report import render_rollout_markdown

    ev = {"scope": "release=stable vs release=canary", "control_attempts": 900, "variant_attempts": 10,
          "verdict": "not_enough_data", "rule": "not-enough-data", "explanation": "too few",
          "guardrails": {"publish_success_rate": {"classification": "Pass", "failed": False, "reason": "+0.00 pp",
                                                  "fallback": False}},
          "metrics": {}, "power": {"detect_success_drop": 0.11, "detect_drop_pp": 2.0, "rollback_alpha": 0.0042,
                                   "baseline_success": 0.99, "show_success_non_inferior": 0.02,
                                   "non_inferiority_margin_pp": 0.5, "non_inferiority_alpha": 0.025}}
    report = {"title": "T", "run": "r", "speed": 10.0, "ended": "rolled_back", "stages_reached": [1.0, 5.0],
              "flag": {"name": "release", "variant": "canary", "control": "stable"},
              "calls": [{"stage_percent": 1.0, "round": 0, "call": "continue", "right_call": "continue",
                         "accepted": ["continue"], "credit": 1.0, "harmful": False, "shown": False, "window_s": 12.0,
                         "evidence": {"overall": ev, "cohort": None}},
                        {"stage_percent": 5.0, "round": 0, "call": "rollback", "right_call": "continue",
                         "accepted": ["continue"], "credit": 0.0, "harmful": False, "shown": False, "window_s": 12.0,
                         "evidence": {"overall": ev, "cohort": ev}}],
              "grade": {"total": 33.33, "max": 100.0, "points": 3, "unreached": 1, "hints_taken": 0,
                        "hint_penalty": 0.0},
              "debrief": {"what_happened": "x", "evidence_path": ["y"], "good_looks_like": "z"}}
    md = render_rollout_markdown(report)
    assert "| 5 % | 1 | rollback | continue | 0 | no harm at this stage |" in md
    assert "of which 1 never reached after a rollback the data did not call for" in md
    assert "0.11 to roll back a 2 pp drop (always-valid interval at α = 0.0042 wholly beyond the 0.5 pp margin)" in md
    assert md.count("within the harmed cohort") == 1 and "the rollout rolled back" in md


def test_a_stage_s_evidence_checks_the_sample_ratio_on_users_after_the_step():
    """A lab-sized stage (80 users, 20 attempts a second) just after 5 % → 25 %: attempts in flight at the step
    carry the old assignment, so the users who moved sit in both arms. The check counts them once, in the
    variant, and a correct split is no mismatch; the report shows the check."""
    from datetime import timezone

    from attempt_tables import START, relation, rollout_step_table
    from toolkit.drills.rollout_drill import rollout_plan
    from toolkit.drills.rollout_report import _evidence_lines, stage_evidence

    plan = rollout_plan(find_drill("rollout-good-change"))
    t0 = START.replace(tzinfo=timezone.utc).timestamp()
    table = rollout_step_table(80, 14_400, seed=0, before=5.0, after=25.0, step_s=600.0, duration_s=720.0,
                               upload_median_s=3.0)
    ev = stage_evidence(relation(table), plan, 25.0, t0 + 600, t0 + 720)
    srm = ev["srm"]
    assert tuple(srm["expected_shares"]) == (0.75, 0.25)
    assert srm["unit"] == "users" and srm["users_moved"] == srm["users_in_both"] > 0 and sum(srm["observed"]) <= 80
    assert not srm["mismatch"] and ev["rule"] != "srm"
    assert any(line.startswith("  - sample ratio: users") and "no mismatch" in line
               for line in _evidence_lines(ev, "variant vs control"))
    # The same data judged as a 50 % stage (the service assigned 25 %): a real mismatch, on users too.
    wrong = stage_evidence(relation(table), plan, 50.0, t0 + 600, t0 + 720)
    assert wrong["srm"]["unit"] == "users" and wrong["srm"]["mismatch"]
    assert (wrong["verdict"], wrong["rule"]) == ("hold", "srm")
