"""`obslab story template|check`: the learner's own story, checked against what the engine measured.

The run is built over seeded synthetic events and its report written by the real report writer
(tests/drill_runs.py); the fixture stories (tests/fixtures/stories/) quote the report's figures
through placeholders, so a correct story is correct whatever the engine measures, and each broken
one has exactly one defect.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from drill_runs import build_run
from toolkit.analysis.story_check import (DEFINITION_FIELDS, RUBRIC, SECTIONS, StoryFormatError, check_story,
                                          measured_figures, story_template)

STORIES = Path(__file__).parent / "fixtures" / "stories"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("story-run"))


@pytest.fixture(scope="module")
def report(run) -> dict:
    return json.loads((run.report_dir / "report.json").read_text())


def _fill(name: str, report: dict) -> str:
    rows = {r["value"]: r for r in report["cohort_breakdown"]["rows"]}
    inc = report["sli_fault_window"]
    failed = report["figures"]["failed_publishes"]["value"]
    values = {
        "fault_s": f"{report['fault_window'][1] - report['fault_window'][0]:.0f}",
        "success_pct": f"{100 * inc['rate']:.1f}", "good": inc["good"], "total": inc["total"],
        "eu_during_pct": f"{100 * rows['eu-west']['during']:.1f}", "eu_before_pct": f"{100 * rows['eu-west']['before']:.1f}",
        "failed": f"{failed:.0f}", "wrong_failed": f"{failed * 1.5 + 7:.0f}",
        "spent": f"{report['figures']['budget_spent_percent']['value']:.2f}",
        "p99": f"{inc['processing_latency_ms']['p99']:.0f}",
    }
    return (STORIES / name).read_text().format(**values)


def test_a_correct_story_passes(report):
    result = check_story(_fill("correct.md", report), measured_figures(report))
    assert [n for n in result.numbers if n.status != "matched"] == [], result.numbers
    assert len(result.numbers) >= 8
    assert not result.issues, result.issues
    assert result.score == result.max_score == 100


def test_a_wrong_number_is_flagged_with_what_was_measured(report):
    result = check_story(_fill("wrong_number.md", report), measured_figures(report))
    wrong = [n for n in result.numbers if n.status == "wrong"]
    assert len(wrong) == 1 and wrong[0].section == "Result" and wrong[0].figure == "failed publishes"
    assert f"{report['figures']['failed_publishes']['value']:.0f}" in wrong[0].note
    assert any(i.code == "wrong_number" for i in result.issues)
    assert result.score < 100


def test_an_undefined_metric_is_flagged_with_the_missing_fields(report):
    result = check_story(_fill("undefined_metric.md", report), measured_figures(report))
    bad = [m for m in result.metrics if m.missing]
    assert [m.metric for m in bad] == ["p99 processing latency"]
    assert set(bad[0].missing) == {"window", "segment", "denominator", "baseline"}
    assert {i.code for i in result.issues} >= {"undefined_metric", "incomplete_guardrail"}


def test_a_missing_guardrail_is_flagged(report):
    result = check_story(_fill("no_guardrail.md", report), measured_figures(report))
    assert [i.code for i in result.issues] == ["missing_guardrail"]
    assert next(r for r in result.rubric if r.criterion == "guardrail").points == 0


def test_a_missing_reflection_is_flagged(report):
    result = check_story(_fill("no_reflection.md", report), measured_figures(report))
    assert {i.code for i in result.issues} == {"missing_reflection"}
    assert next(r for r in result.rubric if r.criterion == "reflection").points == 0


def test_an_action_without_i_and_a_metric_without_definition(report):
    text = _fill("correct.md", report).replace("I started broad", "We started broad").replace(
        "I checked the error class", "The error class was checked").replace(
        "then I broke", "then we broke").replace("answered storage_outage", "storage_outage was answered")
    text = text.replace("## Tradeoff", "The retries also doubled.\n\n## Tradeoff")
    result = check_story(text, measured_figures(report))
    codes = {i.code for i in result.issues}
    assert "no_first_person" in codes
    assert any(m.metric == "chunk retries" and not m.defined for m in result.metrics)


def test_numbers_within_tolerance_match_and_approximate_ones_widen_it(report):
    figs = measured_figures(report)
    p99 = report["sli_fault_window"]["processing_latency_ms"]["p99"]
    base = _fill("correct.md", report)
    off = base.replace(f"stayed at {p99:.0f} ms", f"stayed at {p99 * 1.06:.0f} ms")
    assert any(n.status == "wrong" for n in check_story(off, figs).numbers)
    approx = base.replace(f"stayed at {p99:.0f} ms", f"stayed at about {p99 * 1.06:.0f} ms")
    assert all(n.status == "matched" for n in check_story(approx, figs).numbers)
    seconds = base.replace(f"stayed at {p99:.0f} ms", f"stayed at {p99 / 1000:.2f} s")
    assert all(n.status == "matched" for n in check_story(seconds, figs).numbers)


def test_bad_yaml_in_the_definitions_names_the_line(report):
    text = _fill("correct.md", report).replace("    role: primary", "    role: [primary")
    with pytest.raises(StoryFormatError, match=r"metric definitions, line \d+"):
        check_story(text, measured_figures(report))


def test_the_template_has_prompts_and_no_figures(report):
    md = story_template("Regional storage outage", "run-1", "How much of the budget did it spend?")
    for s in SECTIONS:
        assert f"## {s}" in md
    for f in DEFINITION_FIELDS:
        assert f"    {f}:" in md
    result = check_story(md, measured_figures(report))
    assert not result.numbers  # nothing to give the answer away
    assert {"missing_primary", "missing_guardrail", "missing_tradeoff", "missing_reflection"} <= \
        {i.code for i in result.issues}
    assert result.score == 0


def test_the_rubric_doc_states_the_rubric_the_code_scores():
    doc = (REPO / "docs" / "story-rubric.md").read_text()
    assert sum(p for _, p, _ in RUBRIC) == 100
    for criterion, points, _ in RUBRIC:
        assert f"| `{criterion}` | {points} |" in doc, criterion
    assert "2 %" in doc and "10 %" in doc


def _obslab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("obslab")), *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_cli_template_and_check(run, report, tmp_path):
    data_dir = run.path.parents[1]
    p = _obslab("story", "template", run.path.name, "--data-dir", str(data_dir), "-o", str(tmp_path / "s.md"),
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "## Reflection" in (tmp_path / "s.md").read_text()
    (tmp_path / "wrong.md").write_text(_fill("wrong_number.md", report))
    p = _obslab("story", "check", str(tmp_path / "wrong.md"), "--run", run.path.name, "--data-dir", str(data_dir),
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "WRONG" in p.stdout and "Story score:" in p.stdout
    p = _obslab("story", "check", str(tmp_path / "wrong.md"), "--run", "nope", "--data-dir", str(data_dir),
                cwd=tmp_path)
    assert p.returncode == 2 and "no drill run 'nope'" in p.stderr


def test_story_of_a_compare_json_still_works(tmp_path):
    d = {"schema": "obslab.drill-result/v1", "drill": {"id": "x", "title": "X", "briefing": "b"}, "grade": {}}
    (tmp_path / "r.json").write_text(json.dumps(d))
    p = _obslab("story", str(tmp_path / "r.json"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "# Incident drill: X" in p.stdout
    p = _obslab("story", "-o", str(tmp_path / "o.md"), str(tmp_path / "r.json"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr and (tmp_path / "o.md").is_file()


def test_an_unsigned_number_quotes_a_fall_by_its_size(report):
    shift = report["figures"]["p99_processing_shift_ms"]["value"]
    figs = measured_figures(report)
    word = "fell" if shift < 0 else "rose"
    text = _fill("correct.md", report).replace(
        "## Tradeoff", f"The p99 processing latency {word} by {abs(shift):.0f} ms against the baseline.\n\n## Tradeoff")
    found = [n for n in check_story(text, figs).numbers if n.text == f"{abs(shift):.0f} ms"]
    assert found and found[0].status == "matched" and found[0].figure == "p99 processing shift ms"


def test_a_number_is_read_by_the_words_of_its_own_sentence(report):
    failed = report["figures"]["failed_publishes"]["value"]
    text = _fill("correct.md", report).replace(
        "There were", f"About {failed * 1.05:.0f} users wrote to support. There were")
    found = [n for n in check_story(text, measured_figures(report)).numbers if n.text == f"{failed * 1.05:.0f}"]
    assert found and found[0].status == "unverifiable", found
