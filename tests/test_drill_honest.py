"""No giveaways: a drill's choices come in a per-run shuffled order, hints cost points, the solution waits
for the run to end, and nothing a drill injects names itself in the learner's data (events, metrics, traces).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from drill_runs import fault_applied_at, start_drill, wait_for
from toolkit.cli.base import app
from toolkit.drills import runner
from toolkit.drills.grader import HINT_COST, Answer, grade
from toolkit.drills.lab import fault_name
from toolkit.drills.runner import DrillError
from toolkit.drills.schema import load_catalogue
from toolkit.drills.state import RunDir, RunState

SEEDS = range(40)


def _state(run_id: str, seed: int, drill_id: str = "retry-storm", **kw) -> RunState:
    return RunState(run_id=run_id, drill_id=drill_id, seed=seed, speed=1.0, url="http://127.0.0.1:1",
                    data_dir="/nonexistent", started_at=time.time(), duration_s=600.0, **kw)


@pytest.mark.parametrize("drill_id", sorted(load_catalogue()))
def test_no_true_cause_in_a_fixed_position_over_seeds(drill_id):
    drill = load_catalogue()[drill_id]
    positions = Counter()
    for seed in SEEDS:
        state = _state(f"20260101T000000-{drill_id}", seed, drill_id)
        shown = runner.questions(drill, state)
        assert shown == runner.questions(drill, state)  # one run shows one order
        assert sorted(shown.cause_choices) == sorted(drill.questions.cause_choices)
        assert sorted(shown.cohort_dimensions) == sorted(drill.questions.cohort_dimensions)
        positions[shown.cause_choices.index(drill.truth.cause)] += 1
    n = len(drill.questions.cause_choices)
    assert len(positions) == n, positions  # every position occurs
    assert max(positions.values()) <= len(SEEDS) / 2, positions  # none dominates


def test_drill_show_lists_the_choices_in_no_fixed_order(tmp_path):
    cli = CliRunner()
    firsts = set()
    for _ in range(12):
        out = cli.invoke(app, ["drill", "show", "bad-canary", "--data-dir", str(tmp_path)])
        assert out.exit_code == 0, out.output
        lines = out.output.split("cause, one of:", 1)[1].splitlines()
        firsts.add(lines[1].split()[0])
        assert f"{HINT_COST:g} points each" in out.output
    assert len(firsts) > 1


def test_hints_cost_points_in_the_grade():
    drill = load_catalogue()["retry-storm"]
    right = [Answer(drill.truth.cause, drill.truth.cohort, 1.0, 300.0)]
    free = grade(drill, right, 1.0, 100.0, None)
    two = grade(drill, right, 1.0, 100.0, None, hints_taken=2)
    assert free.total == 100 and two.total == 100 - 2 * HINT_COST
    assert two.hint_penalty == 2 * HINT_COST and two.hints_taken == 2
    nothing = grade(drill, [Answer("traffic_spike", {"region": "eu-west"}, 99.0, 300.0)], 1.0, 100.0, None,
                    hints_taken=3)
    assert nothing.total == 0  # never below zero


def _fake_running_run(tmp_path: Path, drill_id: str = "retry-storm", alive: bool = True) -> Path:
    drills = tmp_path / "drills"
    run = RunDir(drills / f"20260101T000000-{drill_id}")
    run.path.mkdir(parents=True)
    (drills / "current.json").write_text(json.dumps({"run_dir": run.path.name}))
    run.write_state(_state(run.path.name, 4, drill_id, scheduler_pid=os.getpid() if alive else None))
    run.write_truth({"cause": "hidden"})
    return drills


def test_hint_asks_first_and_states_the_cost(tmp_path):
    drills = _fake_running_run(tmp_path)
    cli = CliRunner()
    declined = cli.invoke(app, ["drill", "hint", "--data-dir", str(tmp_path)], input="n\n")
    assert declined.exit_code != 0 and f"costs {HINT_COST:g} points" in declined.output
    assert runner.status(drills).hints_shown == 0
    taken = cli.invoke(app, ["drill", "hint", "--yes", "--data-dir", str(tmp_path)])
    assert taken.exit_code == 0 and taken.output.startswith(f"hint 1/") and f"−{HINT_COST:g} points" in taken.output
    assert runner.status(drills).hints_shown == 1


def test_status_shows_the_runs_order_and_scenario_time(tmp_path):
    drills = _fake_running_run(tmp_path)
    out = CliRunner().invoke(app, ["drill", "status", "--data-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    st = runner.status(drills)
    assert f"cause choices: {', '.join(st.questions.cause_choices)}" in " ".join(out.output.split())
    assert "scenario time" in out.output


def test_solution_only_after_a_run_of_that_drill_ended(tmp_path):
    cli = CliRunner()
    refused = cli.invoke(app, ["drill", "solution", "retry-storm", "--data-dir", str(tmp_path)])
    assert refused.exit_code != 0 and "no run of retry-storm has ended" in refused.output
    drills = _fake_running_run(tmp_path)
    with pytest.raises(DrillError, match="has ended"):
        runner.solution("retry-storm", drills)  # still running
    run = RunDir(next(drills.glob("*-retry-storm")))
    run.log("drill_finished")
    run.write_state(_state(run.path.name, 4, scheduler_pid=None))
    shown = cli.invoke(app, ["drill", "solution", "retry-storm", "--data-dir", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    truth = load_catalogue()["retry-storm"].truth
    assert f"cause: {truth.cause}" in shown.output
    other = cli.invoke(app, ["drill", "solution", "bad-canary", "--data-dir", str(tmp_path)])
    assert other.exit_code != 0  # a run of another drill does not unlock this one


def test_docs_list_no_solution():
    text = (Path(__file__).resolve().parents[1] / "docs" / "drills.md").read_text()
    for drill in load_catalogue().values():
        cohort = ", ".join(f"{k}={v}" for k, v in drill.truth.cohort.items())
        assert f"--cause {drill.truth.cause} --cohort {cohort or 'everyone'}" not in text
        # A table row naming a drill must not give its fault away (the old catalogue table did).
        for line in text.splitlines():
            if f"| {drill.id} |" in line:
                rest = " ".join(cell for cell in line.split("|") if cell.strip() != drill.id)
                assert drill.truth.cause not in rest and not any(str(v) in rest for v in drill.truth.cohort.values()), line


# -- the mitigation step: its choices are shuffled, its answer is graded only in the report ---------------

MITIGABLE = sorted(d.id for d in load_catalogue().values() if d.mitigations is not None)


@pytest.mark.parametrize("drill_id", MITIGABLE)
def test_no_right_mitigation_in_a_fixed_position_over_seeds(drill_id):
    from toolkit.drills import mitigate

    drill = load_catalogue()[drill_id]
    positions = Counter()
    for seed in SEEDS:
        state = _state(f"20260101T000000-{drill_id}", seed, drill_id)
        shown = mitigate.choices(drill, state)
        assert shown == mitigate.choices(drill, state) and sorted(shown) == sorted(drill.mitigations.choices)
        positions[shown.index(drill.mitigations.right)] += 1
    assert len(positions) == len(drill.mitigations.choices), positions
    assert max(positions.values()) <= len(SEEDS) / 2, positions


@pytest.mark.parametrize("drill_id", MITIGABLE)
def test_drill_show_lists_the_mitigations_in_no_fixed_order_and_marks_none(tmp_path, drill_id):
    cli = CliRunner()
    firsts = set()
    for _ in range(12):
        out = cli.invoke(app, ["drill", "show", drill_id, "--data-dir", str(tmp_path)])
        assert out.exit_code == 0, out.output
        block = out.output.split("drill mitigate ACTION`), one of:", 1)[1].split("once a run", 1)[0].splitlines()[1:]
        assert sorted(line.strip() for line in block if line.strip()) == sorted(
            load_catalogue()[drill_id].mitigations.choices)
        firsts.add(block[0].strip())
    assert len(firsts) > 1


@pytest.mark.parametrize("drill_id", MITIGABLE)
def test_mitigate_answers_a_right_and_a_wrong_action_alike(tmp_path, drill_id):
    """The command's output and the run's public record read the same whichever choice is taken: only the report
    grades it. (Choices that need no lab: the retry-policy ones; a rollback's output is the same line.)"""
    import re

    drill = load_catalogue()[drill_id]
    outputs = {}
    for action in drill.mitigations.choices:
        if not action.startswith("retry-policy"):
            continue
        data = tmp_path / action.replace(" ", "_").replace(":", "_")
        _fake_running_run(data, drill_id)
        out = CliRunner().invoke(app, ["drill", "mitigate", *action.split(), "--data-dir", str(data)],
                                 env={"OBSLAB_ADMIN_TOKEN": "t"})
        assert out.exit_code == 0, out.output
        # Whitespace dropped: the console wraps lines where the paths' lengths put them.
        text = "".join(out.output.split()).replace("".join(action.split()), "ACTION").replace(str(data), "DATA")
        outputs[action] = re.sub(r"t=\d+s", "t=Ns", re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z", "TIME", text))
        status = CliRunner().invoke(app, ["drill", "status", "--data-dir", str(data)])
        assert "right" not in status.output.lower() and "wrong" not in status.output.lower()
    assert len(set(outputs.values())) == 1, outputs
    assert not any(word in text.lower() for text in outputs.values() for word in ("right", "wrong", "correct"))


def test_docs_name_no_right_mitigation():
    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "drills.md").read_text() + (root / "README.md").read_text()
    for drill_id in MITIGABLE:
        right = load_catalogue()[drill_id].mitigations.right
        assert f"mitigate {right}" not in text and f"`{right}`" not in text, right


# -- a real drill against the real service ---------------------------------------------------------

@pytest.mark.slow
def test_a_drill_run_leaves_no_drill_identifying_string_in_events_metrics_or_traces(make_service):
    """A real drill (scheduler, Locust, the fault through the admin API) at ×10 until its fault has been
    in force a few seconds, then stopped; every file the service wrote and its /metrics are searched.
    Every request is traced, the admin calls included."""
    service = make_service(trace_sample_ratio=1.0)
    drill = load_catalogue()["regional-storage-outage"]
    lab, run = start_drill(service, drill.id, seed=2)
    try:
        fault_applied_at(run)
        time.sleep(3)
        metrics = service.http.get(service.url("/metrics"), timeout=30).text
    finally:
        runner.stop(lab.drills_dir)
    assert any(e["kind"] == "fault_removed" for e in run.timeline())
    # The service's span export is batched: wait for the admin calls' spans to be written.
    traces = service.data_dir / "traces"
    wait_for(lambda: traces.is_dir() and "/admin/faults/" in "".join(p.read_text() for p in traces.rglob("*")
                                                                  if p.is_file()), 20, "the admin spans")
    root = str(Path(__file__).resolve().parents[1])  # stack traces name the source tree, not the drill
    learner_visible = {str(p): p.read_text(errors="replace").replace(root, "<repo>")
                       for p in service.data_dir.rglob("*")
                       if p.is_file() and lab.drills_dir not in p.parents and p.name != "admin-token"
                       and p.suffix in (".jsonl", ".log", ".json", ".txt", "")}
    learner_visible["/metrics"] = metrics
    assert any("events" in name for name in learner_visible)
    events_text = "".join(t for n, t in learner_visible.items() if "/events/" in n)
    assert "chunk_failed" in events_text  # the outage is visible as what a real on-call would see
    # The fault's neutral name may appear (the admin call's span has it in its URL path); nothing else may.
    assert any(fault_name(run.path.name) in text for text in learner_visible.values())
    forbidden = [drill.id, "drill", run.path.name, "fault_changed", '"selector"',
                 '"kind":"errors"', '"kind": "errors"', "obslab-drill", '"region":["eu-west"]',
                 '"region": ["eu-west"]']
    leaks = {(name, word) for name, text in learner_visible.items() for word in forbidden if word in text}
    assert not leaks, sorted(leaks)


# -- rollout call drills: nothing the learner reads before the end says where the harm is or when ----------

@pytest.mark.parametrize("drill_id", sorted(load_catalogue(kind="rollout")))
def test_a_rollout_drill_gives_nothing_away(tmp_path, drill_id):
    drill = load_catalogue(kind="rollout")[drill_id]
    cli = CliRunner()
    shown = cli.invoke(app, ["drill", "show", drill_id, "--data-dir", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    drills = _fake_running_run(tmp_path, drill_id)
    run = RunDir(next(drills.glob(f"*-{drill_id}")))
    run.log("rollout_stage", stage=0, round=0, percent=1.0, at_active_s=0.0, counted={})
    run.log("call_due", stage=0, round=0, percent=1.0, at_active_s=1.0, control_outcomes=100, variant_outcomes=1,
            power_detect_drop=0.01, power_alpha=0.004)
    status = cli.invoke(app, ["drill", "status", "--data-dir", str(tmp_path)])
    assert status.exit_code == 0 and "call due" in status.output, status.output
    read = " ".join([drill.briefing, drill.title, drill.questions.prompt, *drill.hints, shown.output, status.output])
    read = " ".join(read.split()).lower()
    reg = drill.truth.regression
    forbidden = ["roll back at", "rollback at", "continue at", "the right call", drill.debrief.what_happened[:40].lower()]
    if reg is not None:
        forbidden += [str(v).lower() for v in reg.cohort.values()]
        forbidden += [f"{v:g} ms" for v in reg.fault.params.values()] + [f"{reg.from_percent:g} % on", "from 25 %"]
    leaks = [word for word in forbidden if word in read]
    assert not leaks, leaks
