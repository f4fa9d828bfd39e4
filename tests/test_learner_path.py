"""The learner's path in the debrief: what the CLI and the dashboard record while a drill is active,
`obslab drill note`, and the report setting it beside the expert (solver) path."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drill_runs import SPEC, build_run
from toolkit.drills.learner_path import LEARNER_FILE, active_run, record_command, record_view
from toolkit.drills.state import CURRENT, RunDir, RunState, append_jsonl, read_jsonl


def _active(data_dir: Path, speed: float = 10.0, started_s_ago: float = 30.0) -> RunDir:
    """A drill started moments ago (no report yet): the recorder's target."""
    run = RunDir(data_dir / "drills" / "run-now")
    run.path.mkdir(parents=True)
    (data_dir / "drills" / CURRENT).write_text(json.dumps({"run_dir": "run-now"}))
    run.write_state(RunState(run_id="run-now", drill_id="regional-storage-outage", seed=1, speed=speed,
                             url="http://127.0.0.1:1", data_dir=str(data_dir), started_at=time.time() - started_s_ago,
                             duration_s=60.0))
    append_jsonl(run.timeline_file, {"t": time.time() - started_s_ago, "kind": "drill_started"})
    return run


def _obslab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("obslab")), *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_commands_run_during_a_drill_are_recorded_with_scenario_time(tmp_path: Path):
    lab = tmp_path / ".obslab"
    (lab / "data" / "events").mkdir(parents=True)
    run = _active(lab, speed=10.0, started_s_ago=30.0)
    # Found through the events path the command names (.obslab/data/events → .obslab), from elsewhere too.
    p = _obslab("sli", str(lab / "data" / "events"), "--format", "json", cwd=tmp_path.parent)
    p = _obslab("drill", "note", "hypothesis: storage is down in eu-west", "--data-dir", str(lab), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "scenario time" in p.stdout
    steps = list(read_jsonl(run.path / LEARNER_FILE))
    assert [s["source"] for s in steps] == ["cli", "note"], steps
    assert steps[0]["what"].startswith("obslab sli ") and steps[1]["what"] == "hypothesis: storage is down in eu-west"
    # Scenario time: wall seconds since the start × the speed (30 s at ×10 ≈ 300 s).
    assert 290 <= steps[0]["scenario_s"] <= 600
    # No drill in this directory: nothing recorded, the command runs as ever.
    assert record_command(["sli", str(tmp_path / "elsewhere")], cwd=tmp_path / "nowhere") is None


def test_secrets_are_not_recorded_and_a_reported_run_records_nothing(tmp_path: Path):
    run = _active(tmp_path)
    record_command(["rollout", "run", "--token", "s3cret", "--data-dir", str(tmp_path)], cwd=tmp_path)
    record_command(["rollout", "run", "--admin-token=s3cret", "--data-dir", str(tmp_path)], cwd=tmp_path)
    text = (run.path / LEARNER_FILE).read_text()
    assert "s3cret" not in text and text.count("***") == 2
    run.report_dir.mkdir()
    (run.report_dir / "report.json").write_text("{}")
    assert active_run(tmp_path / "drills") is None
    assert record_command(["sli", "--data-dir", str(tmp_path)], cwd=tmp_path) is None


def test_a_note_without_a_drill_is_one_clear_line(tmp_path: Path):
    p = _obslab("drill", "note", "hypothesis: x", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert p.returncode == 2 and "no drill started" in p.stderr, p.stderr


def test_dashboard_views_are_recorded_once_per_change(tmp_path: Path):
    from toolkit.lab.web import DashboardConfig, create_app

    (tmp_path / "events").mkdir()
    run = _active(tmp_path)
    client = create_app(DashboardConfig(data_dir=tmp_path, spec_path=SPEC, settle_s=0)).test_client()
    for _ in range(3):  # the page polls
        assert client.get("/api/cohorts?dimension=region").status_code == 200
        assert client.get("/api/snapshot").status_code == 200
    assert client.get("/api/cohorts?dimension=network_type").status_code == 200
    assert client.get("/api/cohorts?dimension=nope").status_code == 422  # not a view anyone saw
    views = [s["what"] for s in read_jsonl(run.path / LEARNER_FILE)]
    assert views == ["cohorts dimension=region", "snapshot", "cohorts dimension=network_type"], views
    assert record_view(tmp_path / "drills", "snapshot") is False


@pytest.fixture(scope="module")
def diverging_run(tmp_path_factory) -> RunDir:
    learner = [{"scenario_s": 320, "source": "cli", "what": "obslab sli .obslab/data/events"},
               {"scenario_s": 340, "source": "dashboard", "what": "cohorts dimension=network_type"},
               {"scenario_s": 350, "source": "note", "what": "hypothesis: 4g uploads are failing"}]
    answers = [{"cause": "chunk_upload_failures", "cohort": {"network_type": "4g"}, "impact": 3.0, "at_s": 400}]
    return build_run(tmp_path_factory.mktemp("diverging"), learner=learner, answers=answers)


def test_the_report_sets_the_learner_path_beside_the_experts(diverging_run: RunDir):
    md = (diverging_run.report_dir / "report.md").read_text()
    report = json.loads((diverging_run.report_dir / "report.json").read_text())
    assert "## Your path and the expert's" in md
    assert "hypothesis: 4g uploads are failing" in md and "cohorts dimension=network_type" in md
    paths = {p["stage"]: p for p in report["paths"]}
    # The solver (the expert) found region=eu-west and storage_outage; the learner went to network_type.
    assert "region=eu-west" in paths["who"]["expert"] and paths["who"]["diverged"]
    assert "storage_outage" in paths["what"]["expert"] and paths["what"]["diverged"]
    assert not paths["when"]["diverged"]
    assert "| who |" in md and "**diverged**" in md
    assert [s["source"] for s in report["learner_path"]] == ["cli", "dashboard", "note", "answer"]


def test_the_model_star_is_first_person_with_tradeoff_reflection_and_the_reports_figures(diverging_run: RunDir):
    from toolkit.analysis.story_check import check_story, measured_figures

    md = (diverging_run.report_dir / "report.md").read_text()
    report = json.loads((diverging_run.report_dir / "report.json").read_text())
    star = md[md.index("## Debrief (STAR)"):]
    for part in ("Situation", "Task", "Action", "Result", "Tradeoff", "Reflection"):
        assert f"**{part}.**" in star
    assert "I was on call" in star and "- **Action.** I " in star
    assert "left the expert's at “who”" in star
    # Every number of the model answer's Situation and Result is one the report measured.
    body = "\n".join(f"## {line.split('**')[1].rstrip('.')}\n{line.split('**', 2)[2]}" for line in star.splitlines()
                     if line.startswith("- **"))
    result = check_story(body, measured_figures(report))
    checked = [n for n in result.numbers if n.section in ("Situation", "Result")]
    assert checked and all(n.status == "matched" for n in checked), [n for n in checked if n.status != "matched"]


def test_an_unattended_run_shows_the_expert_path_alone(tmp_path: Path):
    run = build_run(tmp_path, auto=True)
    md = (run.report_dir / "report.md").read_text()
    report = json.loads((run.report_dir / "report.json").read_text())
    assert "An unattended run (`--auto`): the expert path alone." in md and "| who |" not in md
    assert report["paths"] == [] and report["learner_path"] == []
    assert report["expert"] == json.loads((run.path / "auto.json").read_text())
    star = md[md.index("## Debrief (STAR)"):]
    assert "- **Action.** I marked the incident" in star and "This run was unattended" in star
