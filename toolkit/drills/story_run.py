"""The learner's own story of a drill run: its skeleton, and the check against the run's report.

The measured figures are the drill report's (``report/report.json``, written by ``toolkit.drills.report``
from the measurement engine); a finished run without a report gets one written first. A run still
going is refused: the check says what the engine measured, which would give the answer away.
"""

from __future__ import annotations

import json
from pathlib import Path

from toolkit.analysis.story_check import StoryCheck, check_story, measured_figures, story_template
from toolkit.drills.schema import find_drill
from toolkit.drills.state import NoDrillRunning, RunDir, current_run

__all__ = ["StoryRunError", "find_run", "story_template_for", "check_story_for", "run_report"]


class StoryRunError(ValueError):
    """The run cannot be found, or is not finished."""


def find_run(data_dir: Path, run: str) -> RunDir:
    """A run by id (a directory under ``<data-dir>/drills``), by path, or ``current``."""
    drills = Path(data_dir) / "drills"
    if run in ("", "current"):
        try:
            return current_run(drills)
        except NoDrillRunning as e:
            raise StoryRunError(str(e)) from None
    for candidate in (Path(run), drills / run):
        if (candidate / "run.json").is_file():
            return RunDir(candidate)
    known = sorted(p.name for p in drills.iterdir() if (p / "run.json").is_file()) if drills.is_dir() else []
    raise StoryRunError(f"--run: no drill run {run!r} in {drills}"
                        + (f" (runs: {', '.join(known[-5:])})" if known else " (no runs there)"))


def _finished(run: RunDir) -> bool:
    from toolkit.drills.runner import ACTIVE_PHASES, _phase

    state = run.read_state()
    return _phase(run, state) not in ACTIVE_PHASES


def run_report(run: RunDir) -> dict:
    """The run's report.json; written first when the run has finished without one."""
    path = run.report_dir / "report.json"
    if not _finished(run):
        raise StoryRunError(f"drill run {run.path.name} is still running: the check compares your story with what "
                            "the drill measured, so it runs once the drill has ended")
    if not path.is_file():
        from toolkit.drills.report import write_report

        write_report(run)
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise StoryRunError(f"{path}: not JSON ({e}); rewrite it with `obslab drill report`") from None


def story_template_for(data_dir: Path, run: str) -> str:
    r = find_run(data_dir, run)
    state = r.read_state()
    drill = find_drill(state.drill_id)
    _incident_only(drill, r)
    return story_template(drill.title, r.path.name, drill.questions.impact.prompt)


def _incident_only(drill, run: RunDir) -> None:
    if drill.kind != "incident":
        holds = "each call beside the right call and the judge's evidence" if drill.kind == "rollout" else \
            "the comparison and the checks"
        article = "an" if drill.kind[0] in "aeiou" else "a"
        raise StoryRunError(f"drill run {run.path.name} is {article} {drill.kind} drill ({drill.id}): the story "
                            f"template and check cover incident drills; its report (`obslab drill report`) holds {holds}")


def check_story_for(data_dir: Path, run: str, text: str) -> StoryCheck:
    r = find_run(data_dir, run)
    _incident_only(find_drill(r.read_state().drill_id), r)
    return check_story(text, measured_figures(run_report(r)))
