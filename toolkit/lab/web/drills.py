"""Drills panel: list, start, hint, answer, report and stop, over the drills library (``toolkit.drills``);
the learner's own story (template, check) and the report rendered as HTML; and the dashboard views the
learner opens while a drill is active, recorded for the debrief (``toolkit.drills.learner_path``).

Starting a drill from the page is the same as ``obslab drill start``: the runner checks the lab
and its token, applies the setup and launches its scheduler, which injects the fault on time.
The dashboard reads the token from the lab's token file, as the CLI does; the page never sees it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from flask import Blueprint, current_app, jsonify, request

__all__ = ["bp", "drills_available", "stop_active_drill", "DASHBOARD_ACTOR"]

bp = Blueprint("drills", __name__, url_prefix="/api/drills")
# Who the service's audit events name for changes made from the page.
DASHBOARD_ACTOR = "dashboard"


def drills_available() -> bool:
    return importlib.util.find_spec("toolkit.drills") is not None and \
        importlib.util.find_spec("toolkit.drills.runner") is not None


def _lab():
    from toolkit.drills.lab import find_lab

    config = current_app.config["OBSLAB_DASHBOARD"]
    return find_lab(config.data_dir, url=config.api_url)


def _drills_dir() -> Path:
    return current_app.config["OBSLAB_DASHBOARD"].data_dir / "drills"


def _error(status: int, message: str, field: str | None = None):
    return jsonify(error={"code": "drill", "message": message, "field": field}), status


def _user_errors():
    from toolkit.drills.runner import USER_ERRORS

    return USER_ERRORS


def _drill_json(drill) -> dict:
    return {"name": drill.id, "title": drill.title, "difficulty": drill.difficulty,
            "duration": f"{drill.setup.duration_s / 60:g} min",
            "summary": drill.briefing.strip().split("\n\n")[0]}


def _active_json() -> dict | None:
    from toolkit.drills import runner
    from toolkit.drills.state import NoDrillRunning

    try:
        st = runner.status(_drills_dir())
    except NoDrillRunning:
        return None
    from toolkit.drills.grader import HINT_COST

    drill = st.drill
    shown = st.questions  # this run's shuffled order; the page preselects none of them
    rollout = None
    if drill.kind == "rollout":
        questions = []  # one call a stage, by the buttons of the rollout box
        rollout = _rollout_json()
    elif drill.kind == "experiment":
        questions = [
            {"id": "verdict", "text": f"{shown.prompt} verdict", "choices": list(shown.verdict_choices)},
            {"id": "evidence", "text": "evidence (what the verdict rests on)", "choices": list(shown.evidence_choices)},
        ]
    else:
        questions = [
            {"id": "cause", "text": "cause", "choices": list(shown.cause_choices)},
            {"id": "cohort", "text": "cohort (everyone or dim=value[,dim=value]; dims: "
                                     + ", ".join(shown.cohort_dimensions) + ")"},
            {"id": "impact", "text": drill.questions.impact.prompt},
        ]
    return {"name": drill.id, "title": drill.title, "phase": st.phase, "elapsed_s": round(st.elapsed_s, 1),
            "remaining_s": round(st.remaining_s, 1), "paused": st.paused, "speed": st.state.speed,
            "started_at": _iso(st.state.started_at), "briefing": drill.briefing, "questions": questions,
            "hints_shown": list(drill.hints[: st.hints_shown]), "hints_total": len(drill.hints),
            "hint_cost": HINT_COST, "answers": st.answers, "kind": drill.kind, "rollout": rollout}


def _rollout_json() -> dict:
    """Where a rollout drill stands, for its Continue / Hold / Roll back buttons (nothing of the truth)."""
    from toolkit.drills import runner

    rs = runner.rollout_status(_drills_dir())
    return {"percent": rs.percent, "round": rs.round, "phase": rs.phase,
            "stage_started_at": _iso(rs.stage_started_at) if rs.stage_started_at else None,
            "seconds_left": None if rs.seconds_left is None else round(rs.seconds_left, 1), "ended": rs.ended,
            "calls": list(rs.calls), "holds_left": rs.holds_left, "due": rs.due}


def _iso(epoch: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@bp.get("")
def index():
    if not drills_available():
        return jsonify(available=False, reason="the drills library (toolkit.drills) is not installed in this build",
                       drills=[], active=None)
    from toolkit.drills.schema import load_catalogue

    active = _active_json()
    if active is not None and active["phase"] not in ("running", "stopping"):
        # A finished drill stays answerable and reportable, but does not block starting another.
        active["finished"] = True
    return jsonify(available=True, drills=[_drill_json(d) for d in load_catalogue(kind=None).values()], active=active)


@bp.post("/<name>/start")
def start(name: str):
    from toolkit.drills import runner

    body = request.get_json(silent=True) or {}
    try:
        speed = float(body.get("speed", 1))
    except (TypeError, ValueError):
        return _error(422, f"speed must be a number, got {body.get('speed')!r}", "speed")
    try:
        run = runner.start(name, _lab(), speed=speed, actor=DASHBOARD_ACTOR)
        _reap_when_it_exits(run)
    except _user_errors() as e:
        return _error(409, str(e))
    return jsonify(started=name, run=run.path.name, active=_active_json())


def _reap_when_it_exits(run) -> None:
    """The scheduler is a child of this (the lab's) process: wait for it in a thread, so a drill
    that ends leaves no zombie behind while the lab keeps running."""
    import os
    import threading

    pid = run.read_state().scheduler_pid

    def wait() -> None:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # already reaped (subprocess's own clean-up got there first)
            pass

    if pid:
        threading.Thread(target=wait, name=f"reap-drill-scheduler-{pid}", daemon=True).start()


@bp.post("/active/hint")
def hint():
    """The next hint, which costs points: only with ``{"accept_cost": true}`` (the page asks first)."""
    from toolkit.drills import runner

    try:
        number, of, cost = runner.hint_cost(_drills_dir())
        if number and (request.get_json(silent=True) or {}).get("accept_cost") is not True:
            return _error(409, f"hint {number}/{of} costs {cost:g} points off the score: confirm to take it",
                          "accept_cost")
        number, of, text = runner.next_hint(_drills_dir())
    except _user_errors() as e:
        return _error(409, str(e))
    return jsonify(hint=f"({number}/{of}) {text}", cost=cost)


@bp.post("/active/pause")
def pause():
    from toolkit.drills import runner

    try:
        runner.pause(_drills_dir())
    except _user_errors() as e:
        return _error(409, str(e))
    return jsonify(active=_active_json())


@bp.post("/active/resume")
def resume():
    from toolkit.drills import runner

    try:
        runner.resume(_drills_dir())
    except _user_errors() as e:
        return _error(409, str(e))
    return jsonify(active=_active_json())


@bp.post("/active/answer")
def answer():
    from toolkit.drills import runner

    answers = (request.get_json(silent=True) or {}).get("answers") or {}
    if "verdict" in answers or "evidence" in answers:  # an experiment drill's answer
        try:
            drill, n = runner.answer_verdict(_drills_dir(), str(answers.get("verdict", "")),
                                             str(answers.get("evidence", "")), by="dashboard")
        except _user_errors() as e:
            return _error(422, str(e))
        return jsonify(text=f"answer {n} recorded for {drill.id}; graded in the report (button Report).")
    try:
        impact = float(answers.get("impact", ""))
    except ValueError:
        return _error(422, f"impact must be a number, got {answers.get('impact')!r}", "impact")
    try:
        cohort = runner.parse_cohort(str(answers.get("cohort", "everyone")))
        drill, n = runner.answer(_drills_dir(), str(answers.get("cause", "")), cohort, impact, by="dashboard")
    except _user_errors() as e:
        return _error(422, str(e))
    return jsonify(text=f"answer {n} recorded for {drill.id}; graded in the report (button Report).")


@bp.post("/active/decide")
def decide():
    """A rollout drill's call for the stage whose call is due: ``{"call": "continue"|"hold"|"rollback"}``."""
    from toolkit.drills import runner

    call = (request.get_json(silent=True) or {}).get("call")
    if not isinstance(call, str):
        return _error(422, f"call must be one of continue, hold, rollback, got {call!r}", "call")
    try:
        drill, percent = runner.decide(_drills_dir(), call, by="dashboard")
    except _user_errors() as e:
        return _error(409, str(e), "call")
    return jsonify(text=f"{call} recorded for the {percent:g} % stage of {drill.id}; graded in the report.",
                   active=_active_json())


# The API calls that are views a learner chose (the page polls them; a view is recorded when it changes).
_VIEWS = {"api.snapshot": ("snapshot", ("window",)), "api.series": ("series", ("window",)),
          "api.cohorts": ("cohorts", ("dimension", "window")), "explorer.show": ("request", ())}


@bp.after_app_request
def _record_view(response):
    view = _VIEWS.get(request.endpoint or "")
    if view is None or response.status_code >= 400 or not drills_available():
        return response
    name, keys = view
    what = " ".join([name] + [f"{k}={request.args[k]}" for k in keys if request.args.get(k)]
                    + [f"{k}={v}" for k, v in (request.view_args or {}).items()])
    from toolkit.drills.learner_path import record_view

    try:
        record_view(_drills_dir(), what)
    except OSError:  # the record is for the debrief; a read-only data directory must not break the page
        pass
    return response


def render_report_html(markdown_text: str, image_base: str) -> str:
    """The report's markdown as HTML, sanitised: raw HTML in the markdown is escaped (``html`` off),
    links are checked by markdown-it's URL validator (no ``javascript:``), and report images point
    at the image endpoint."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
    tokens = md.parse(markdown_text)
    for token in tokens:
        for child in token.children or ():
            if child.type == "image":
                src = str(child.attrGet("src") or "")
                if "/" not in src and src.endswith(".png"):
                    child.attrSet("src", image_base + src)
    return md.renderer.render(tokens, md.options, {})


@bp.get("/active/story/template")
def story_template():
    from toolkit.drills.story_run import StoryRunError, story_template_for

    try:
        return jsonify(text=story_template_for(current_app.config["OBSLAB_DASHBOARD"].data_dir, "current"))
    except (StoryRunError, *_user_errors()) as e:
        return _error(409, str(e))


@bp.post("/active/story/check")
def story_check():
    from toolkit.analysis.story_check import StoryFormatError, render_feedback
    from toolkit.drills.story_run import StoryRunError, check_story_for

    text = (request.get_json(silent=True) or {}).get("text")
    if not isinstance(text, str) or not text.strip():
        return _error(422, "text: paste or write your story first", "text")
    try:
        result = check_story_for(current_app.config["OBSLAB_DASHBOARD"].data_dir, "current", text)
    except StoryFormatError as e:
        return _error(422, str(e), "text")
    except (StoryRunError, *_user_errors()) as e:
        return _error(409, str(e))
    return jsonify(result=result.to_dict(), text=render_feedback(result))


@bp.post("/active/report")
def report():
    """Grade and write the current drill's report (as `obslab drill report` does) and return it."""
    import json

    from toolkit.drills import runner
    from toolkit.drills.report import write_report
    from toolkit.drills.state import current_run

    try:
        st = runner.status(_drills_dir())
        if st.phase in runner.ACTIVE_PHASES:
            return _error(409, f"drill {st.drill.id} is still {st.phase}: the report grades a finished drill "
                               + ("(wait for it, or press Stop)" if st.phase == "running" else "(a moment)"))
        run = current_run(_drills_dir())
        path = write_report(run)
    except _user_errors() as e:
        return _error(409, str(e))
    summary = json.loads((run.report_dir / "report.json").read_text())
    grade = summary.get("grade", {})
    images = sorted(p.name for p in run.report_dir.glob("*.png"))
    text = Path(path).read_text()
    return jsonify(text=text, html=render_report_html(text, "api/drills/active/report/"), path=str(path),
                   score=grade, images=[f"api/drills/active/report/{name}" for name in images])


@bp.get("/active/report/<name>")
def report_image(name: str):
    from flask import send_from_directory

    from toolkit.drills.state import current_run

    if not name.endswith(".png") or "/" in name:
        return _error(404, f"no report image {name!r}")
    return send_from_directory(current_run(_drills_dir()).report_dir, name)


@bp.post("/active/stop")
def stop():
    from toolkit.drills import runner

    try:
        run = runner.stop(_drills_dir())
    except _user_errors() as e:
        return _error(409, str(e))
    return jsonify(stopped=run.path.name)


@bp.get("/active/mitigation")
def mitigation_status():
    """The current drill's mitigation step: its choices in this run's order and the one taken, if any (whether
    it was right shows only in the report)."""
    from toolkit.drills import mitigate, runner
    from toolkit.drills.state import current_run

    try:
        st = runner.status(_drills_dir())
        run = current_run(_drills_dir())
    except _user_errors() as e:
        return _error(409, str(e))
    if st.drill.mitigations is None:
        return jsonify(available=False, choices=[], taken=None)
    done = mitigate.taken(run)
    return jsonify(available=True, choices=list(mitigate.choices(st.drill, st.state)), phase=st.phase,
                   taken=None if done is None else {"action": done["action"], "at_scenario_s": done["at_scenario_s"],
                                                    "since": _iso_precise(done["at"])})


def _iso_precise(epoch: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@bp.post("/active/mitigate")
def mitigate_drill():
    """Take one of the current drill's mitigation choices (``{"action": "rollback release"}``), as
    ``obslab drill mitigate`` does: applied to the lab at once, once a run."""
    from toolkit.drills import mitigate

    action = (request.get_json(silent=True) or {}).get("action")
    if not isinstance(action, str) or not action.strip():
        return _error(422, "action must be one of the drill's mitigation choices", "action")
    try:
        done = mitigate.mitigate(_lab(), action, by="dashboard", actor=DASHBOARD_ACTOR)
    except _user_errors() as e:
        return _error(422, str(e), "action")
    return jsonify(text=f"mitigation {done.action} applied at t={done.at_scenario_s:.0f} s (scenario time); show the "
                        f"recovery: the publish success rate since {done.since}.", since=done.since)


@bp.post("/active/recovery")
def recovery():
    """Record the recovery figure (``{"success_rate": 0.997, "since": ISO, "until": ISO or null}``), as
    ``obslab drill recovery`` does."""
    from toolkit.drills import mitigate

    body = request.get_json(silent=True) or {}
    rate = body.get("success_rate")
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        return _error(422, f"success_rate must be a ratio in [0, 1], got {rate!r}", "success_rate")
    since, until = body.get("since"), body.get("until") or None
    if not isinstance(since, str) or not since.strip():
        return _error(422, "since must be the start of your window (RFC 3339), at or after the mitigation", "since")
    if until is not None and not isinstance(until, str):
        return _error(422, "until must be an RFC 3339 time or empty (now)", "until")
    try:
        drill, n = mitigate.record_recovery(_drills_dir(), rate, since, until, by="dashboard")
    except _user_errors() as e:
        return _error(422, str(e))
    return jsonify(text=f"recovery figure {n} recorded for {drill.id}; graded in the report (button Report).")


def stop_active_drill(data_dir: Path) -> None:
    """Called when the lab stops: a drill's scheduler must not outlive the lab it drives."""
    if not drills_available():
        return
    from toolkit.drills import runner
    from toolkit.drills.state import NoDrillRunning

    try:
        st = runner.status(Path(data_dir) / "drills")
    except (NoDrillRunning, *runner.USER_ERRORS):
        return
    if runner.scheduler_alive(st.state):
        try:
            runner.stop(Path(data_dir) / "drills", timeout_s=15)
        except runner.USER_ERRORS as e:  # the lab is stopping anyway: say what is left, do not hang its exit
            print(f"obslab: {e}", file=sys.stderr)
