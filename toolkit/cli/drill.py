"""``obslab drill …``: scripted incident drills against a running lab."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from toolkit.cli.base import app, console, user_errors
from toolkit.cli._tables import fit_table
from toolkit.drills import runner
from toolkit.drills.causes import cause_label
from toolkit.drills.grader import HINT_COST
from toolkit.drills.lab import DEFAULT_DATA_DIR, TOKEN_ENV, find_lab
from toolkit.drills.schema import DIFFICULTIES, find_drill, load_catalogue
from toolkit.drills.verdicts import evidence_label, verdict_label
from toolkit.slo.scenario import MAX_SPEED

drill_app = typer.Typer(help="Scripted incident drills: start one against the running lab, investigate, answer, "
                             "get a graded report.", no_args_is_help=True)
app.add_typer(drill_app, name="drill")

DataDir = typer.Option(Path(DEFAULT_DATA_DIR), "--data-dir", help="The lab's data directory (events, drill state).")
Url = typer.Option(None, "--url", help="The lab's publish API (default: from <data-dir>/lab.json, else "
                                       "http://127.0.0.1:8000).")
_ERRORS = runner.USER_ERRORS + (FileNotFoundError, ValueError)


def _drills_dir(data_dir: Path) -> Path:
    return data_dir / "drills"


@drill_app.command("list")
def list_drills() -> None:
    """The drills in the catalogue, easiest first (beginner, intermediate, advanced; then by id)."""
    with user_errors(*_ERRORS):
        drills = load_catalogue(kind=None)
    table = Table(title=f"{len(drills)} drills, easiest first")
    table.add_column("id", no_wrap=True)  # an id is typed back: never folded
    table.add_column("difficulty")
    table.add_column("kind")
    table.add_column("title")
    for d in sorted(drills.values(), key=lambda d: (DIFFICULTIES.index(d.difficulty), d.id)):
        table.add_row(d.id, d.difficulty, d.kind, d.title)
    console.print(fit_table(table, console))


def _shown_questions(d, data_dir: Path):
    """The questions in the current run's order when it is a run of this drill; else in a fresh random
    order (never the catalogue's, where the true cause is often first)."""
    import random

    from toolkit.drills.state import NoDrillRunning

    try:
        st = runner.status(_drills_dir(data_dir))
        if st.drill.id == d.id and st.questions is not None:
            return st.questions
    except (NoDrillRunning, *runner.USER_ERRORS, OSError, ValueError):
        pass
    return d.questions.shuffled(random.SystemRandom().random())


@drill_app.command("show")
def show(drill_id: str = typer.Argument(..., help="Drill id (see `obslab drill list`)."),
         data_dir: Path = DataDir) -> None:
    """A drill's briefing and questions (no spoilers: the choices come in a shuffled order)."""
    with user_errors(*_ERRORS):
        d = find_drill(drill_id)
        q = _shown_questions(d, data_dir)
    console.print(f"[bold]{d.title}[/] ({d.id}, {d.difficulty}, {d.setup.duration_s / 60:g} min)\n")
    console.print(d.briefing.strip() + "\n", highlight=False)
    if d.kind == "rollout":
        _show_rollout(d)
        return
    console.print("[bold]Questions[/]")
    if d.kind == "experiment":
        _show_experiment_questions(d, q)
        return
    console.print("  cause, one of:", highlight=False)
    for c in q.cause_choices:
        console.print(f"    {c:24} {cause_label(c)}", highlight=False)
    console.print(f"  cohort: everyone, or dim=value[,dim=value] over {', '.join(q.cohort_dimensions)}",
                  highlight=False)
    console.print(f"  impact: {d.questions.impact.prompt}", highlight=False)
    _show_mitigations(d, data_dir)
    console.print(f"\n{len(d.hints)} hints available (`obslab drill hint`), {HINT_COST:g} points each.",
                  highlight=False)


def _show_rollout(d) -> None:
    r = d.rollout
    console.print("[bold]The rollout[/]")
    console.print(f"  {r.flag}={r.variant} to {' → '.join(f'{p:g} %' for p in r.stages)} of users; each stage "
                  f"collects {r.window_s / 60:g} min of data, then its call is due within {r.decide_within_s / 60:g} "
                  f"min (a stage may be held {r.max_holds} time(s))", highlight=False)
    console.print(f"  {d.questions.prompt}", highlight=False)
    console.print("  call: obslab drill decide continue|hold|rollback  (status: obslab drill status; each call due "
                  "states the stage's data and its power)", highlight=False)
    console.print(f"\n{len(d.hints)} hints available (`obslab drill hint`), {HINT_COST:g} points each.",
                  highlight=False)


def _show_mitigations(d, data_dir: Path) -> None:
    """A drill's mitigation choices: in the current run's order when it is a run of this drill, else shuffled."""
    import random

    if d.mitigations is None:
        return
    from toolkit.drills import mitigate as mitigation
    from toolkit.drills.state import NoDrillRunning

    shown = d.mitigations.shuffled(random.SystemRandom().random())
    try:
        st = runner.status(_drills_dir(data_dir))
        if st.drill.id == d.id:
            shown = mitigation.choices(d, st.state)
    except (NoDrillRunning, *runner.USER_ERRORS, OSError, ValueError):
        pass
    console.print("  mitigation (`obslab drill mitigate ACTION`), one of:", highlight=False)
    for a in shown:
        console.print(f"    {a}", highlight=False)
    console.print("  once a run, while the fault is on; then the recovery: the publish success rate after it "
                  "(`obslab drill recovery`)", highlight=False)


def _show_experiment_questions(d, q) -> None:
    console.print(f"  {q.prompt}", highlight=False)
    console.print("  verdict, one of:", highlight=False)
    for v in q.verdict_choices:
        console.print(f"    {v:28} {verdict_label(v)}", highlight=False)
    console.print("  evidence (what the verdict rests on), one of:", highlight=False)
    for e in q.evidence_choices:
        console.print(f"    {e:28} {evidence_label(e)}", highlight=False)
    console.print("  answer: obslab drill answer --verdict VERDICT --evidence EVIDENCE", highlight=False)
    console.print(f"\n{len(d.hints)} hints available (`obslab drill hint`), {HINT_COST:g} points each.",
                  highlight=False)


@drill_app.command("start")
def start(
    drill_id: str = typer.Argument(..., help="Drill id (see `obslab drill list`)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the fault's start time and the load (random if unset)."),
    speed: float = typer.Option(1.0, "--speed", help=f"Compress the drill's time by this factor, at most {MAX_SPEED:g} "
                                                     "(10: a 10-minute drill in 1 minute; alert windows shrink alike)."),
    auto: bool = typer.Option(False, "--auto", help="Run unattended: the toolkit answers and writes the report."),
    auto_mitigate: bool = typer.Option(False, "--auto-mitigate",
                                       help="With --auto, on a drill with a mitigation step: the toolkit also "
                                            "mitigates once its diagnosis of the drill so far points to an action, "
                                            "then reports the recovery (it cuts the incident short)."),
    data_dir: Path = DataDir,
    url: Optional[str] = Url,
) -> None:
    """Start a drill against the running lab."""
    with user_errors(*_ERRORS):
        runner.check_auto_mitigate(find_drill(drill_id), auto, auto_mitigate)  # an unknown drill is the first thing to report
        lab = find_lab(data_dir, url)
        run = runner.start(drill_id, lab, seed=seed, speed=speed, auto=auto, auto_mitigate=auto_mitigate)
        state = run.read_state()
        d = find_drill(drill_id)
        wall = f", {state.duration_s:.0f} s wall" if speed != 1 else ""
        console.print(f"drill [bold]{d.id}[/] started (seed {state.seed}, speed ×{speed:g}, "
                      f"{d.setup.duration_s:.0f} s of scenario time{wall}) against {lab.url}", highlight=False)
        if speed != 1:
            console.print(f"the lab's alert windows run in scenario time while it lasts: ×{speed:g} shorter in "
                          "wall time in Prometheus, obslab budget, obslab top and the dashboard", highlight=False)
        for note in runner.start_notes(run):
            console.print(f"note: {note}", highlight=False)
        if not auto:
            console.print("\n" + d.briefing.strip(), highlight=False)
            if d.kind == "rollout":
                console.print(f"\n{d.questions.prompt} At the end of each stage's window: `obslab drill decide "
                              "continue|hold|rollback` (`obslab drill status` says when a call is due); "
                              "`obslab drill hint` if stuck.", highlight=False)
                return
            how = ("--verdict … --evidence …" if d.kind == "experiment" else "--cause … --cohort … --impact …")
            console.print(f"\nInvestigate, then `obslab drill answer {how}`; "
                          "`obslab drill hint` if stuck.", highlight=False)
            return
        st = runner.wait_finished(_drills_dir(data_dir), timeout_s=state.duration_s + 300)
        _print_auto_result(run, st)


def _print_auto_result(run, st: runner.Status) -> None:
    import json

    if st.phase != "finished":
        raise runner.DrillError(f"drill {st.drill.id} ended {st.phase}; see {run.log_file}")
    auto = json.loads((run.path / "auto.json").read_text())
    if auto.get("kind") == "experiment":
        console.print(f"auto answer: verdict {auto['verdict']}, evidence {auto['evidence']} ({auto['why']})",
                      highlight=False)
        report = json.loads((run.report_dir / "report.json").read_text())
        console.print(f"score {report['grade']['total']:g}/{report['grade']['max']:g}; report: "
                      f"{run.report_dir / 'report.md'}", highlight=False)
        return
    top = auto["causes"][0]
    cohort = auto["cohorts"][0]["cohort"] if auto["cohorts"] else {}
    console.print(f"auto answer: cause {top['cause']} ({top['why']}); cohort "
                  f"{', '.join(f'{k}={v}' for k, v in cohort.items()) or 'everyone'}; "
                  f"{auto['impact']['metric']} = {auto['impact']['value']}", highlight=False)
    report = json.loads((run.report_dir / "report.json").read_text())
    console.print(f"score {report['grade']['total']:g}/{report['grade']['max']:g}; report: "
                  f"{run.report_dir / 'report.md'}", highlight=False)


@drill_app.command("status")
def status(data_dir: Path = DataDir) -> None:
    """The current drill: phase, scenario time, hints and answers so far, the cause choices."""
    with user_errors(*_ERRORS):
        st = runner.status(_drills_dir(data_dir))
    phase = "paused" if st.paused and st.phase == "running" else st.phase
    console.print(f"drill {st.drill.id} ({st.drill.title}): {phase}; scenario time "
                  f"{st.elapsed_s:.0f} s of {st.duration_s:.0f} s"
                  f"{f', {st.remaining_s:.0f} s left' if st.phase == 'running' else ''}"
                  f" (speed ×{st.state.speed:g}); hints {st.hints_shown}/{len(st.drill.hints)}; answers {st.answers}",
                  highlight=False)
    if st.drill.kind == "rollout":
        _print_rollout_status(data_dir)
    elif st.drill.kind == "experiment":
        console.print(f"verdict choices: {', '.join(st.questions.verdict_choices)}; evidence choices: "
                      f"{', '.join(st.questions.evidence_choices)}", highlight=False)
    else:
        console.print(f"cause choices: {', '.join(st.questions.cause_choices)}", highlight=False)
    if st.drill.mitigations is not None:
        from toolkit.drills import mitigate as mitigation
        from toolkit.drills.state import current_run

        done = mitigation.taken(current_run(_drills_dir(data_dir)))
        console.print(f"mitigation taken: {done['action']} at t={done['at_scenario_s']:.0f} s" if done else
                      f"mitigation choices: {', '.join(mitigation.choices(st.drill, st.state))}", highlight=False)


def _print_rollout_status(data_dir: Path) -> None:
    from contract.events import format_time
    from toolkit.drills.rollout_drill import DETECT_DROP, PLANNING_SUCCESS

    rs = runner.rollout_status(_drills_dir(data_dir))
    st = runner.status(_drills_dir(data_dir))
    r = st.drill.rollout
    if rs.percent is None:
        console.print(f"rollout of {r.flag}={r.variant}: not started yet", highlight=False)
        return
    since = format_time(rs.stage_started_at)
    head = f"rollout of {r.flag}={r.variant}: stage {rs.percent:g} % since {since}"
    if rs.phase == "collecting":
        console.print(f"{head} (round {rs.round + 1}); collecting data, the call is due in {rs.seconds_left:.0f} s "
                      "(wall)", highlight=False)
    elif rs.phase == "call_due":
        console.print(f"{head}: [bold]call due[/], {rs.seconds_left:.0f} s (wall) left: obslab drill decide "
                      f"continue|hold|rollback ({rs.holds_left} hold(s) left at this stage)", highlight=False)
        due = rs.due or {}
        if due:
            console.print(f"  this stage so far (the service's counters): {due['control_outcomes']:,} "
                          f"{r.control} and {due['variant_outcomes']:,} {r.variant} publishes ended; power to "
                          f"roll back a {DETECT_DROP * 100:g} pp success-rate drop (from {PLANNING_SUCCESS:.0%}), "
                          f"the rollout's always-valid interval at "
                          f"α = {due['power_alpha']:.3g} beyond the margin: {due['power_detect_drop']:.2f}",
                          highlight=False)
    else:
        console.print(f"{head}: the rollout has ended ({rs.ended.replace('_', ' ')})", highlight=False)
    if rs.calls:
        console.print("  calls: " + ", ".join(f"{c['percent']:g} %: {c['call']}" for c in rs.calls), highlight=False)


@drill_app.command("decide")
def decide(call: str = typer.Argument(..., help="continue (next stage), hold (one more window at this stage) or "
                                                "rollback (the flag back to 0 %)."),
           data_dir: Path = DataDir) -> None:
    """Make the call of a rollout drill's stage whose call is due: continue, hold or rollback."""
    with user_errors(*_ERRORS):
        d, percent = runner.decide(_drills_dir(data_dir), call.strip().lower())
    console.print(f"{call.strip().lower()} recorded for the {percent:g} % stage of {d.id}; `obslab drill report` "
                  "grades every call once the drill ends.", highlight=False)


@drill_app.command("hint")
def hint(data_dir: Path = DataDir,
         yes: bool = typer.Option(False, "--yes", "-y", help="Take the hint without being asked (it costs points).")) -> None:
    """The next hint of the current drill; each new hint costs points off the grade (asked first)."""
    with user_errors(*_ERRORS):
        n, total, cost = runner.hint_cost(_drills_dir(data_dir))
        if n and not yes:
            if not typer.confirm(f"Hint {n}/{total} costs {cost:g} points off your score. Take it?", default=False,
                                 err=True):
                console.print("no hint taken", highlight=False)
                raise typer.Exit(1)
        n, total, text = runner.next_hint(_drills_dir(data_dir))
    console.print(f"hint {n}/{total}{f' (−{cost:g} points)' if cost else ''}: {text}", highlight=False)


@drill_app.command("pause")
def pause(data_dir: Path = DataDir) -> None:
    """Pause the scenario clock while you investigate: the fault stays as it is, the time left freezes."""
    with user_errors(*_ERRORS):
        runner.pause(_drills_dir(data_dir))
        st = runner.status(_drills_dir(data_dir))
    console.print(f"drill {st.drill.id} paused at scenario time {st.elapsed_s:.0f} s "
                  f"({st.remaining_s:.0f} s left); `obslab drill resume` to go on", highlight=False)


@drill_app.command("resume")
def resume(data_dir: Path = DataDir) -> None:
    """Resume the scenario clock."""
    with user_errors(*_ERRORS):
        runner.resume(_drills_dir(data_dir))
        st = runner.status(_drills_dir(data_dir))
    console.print(f"drill {st.drill.id} resumed ({st.remaining_s:.0f} s of scenario time left)", highlight=False)


@drill_app.command("solution")
def solution(drill_id: str = typer.Argument(..., help="Drill id."), data_dir: Path = DataDir) -> None:
    """A drill's solution (cause, cohort, what happened), once a run of it has ended in this lab."""
    with user_errors(*_ERRORS):
        d = runner.solution(drill_id, _drills_dir(data_dir))
    if d.kind == "rollout":
        reg = d.truth.regression
        console.print(f"[bold]{d.title}[/] ({d.id}): solution\n", highlight=False)
        if reg is None:
            console.print("the change: good (no regression): continue at every stage", highlight=False)
        else:
            where = ", ".join(f"{k}={v}" for k, v in reg.cohort.items()) or "every cohort"
            params = ", ".join(f"{k} {v:g}" for k, v in reg.fault.params.items())
            console.print(f"the change: {reg.fault.kind} on {reg.fault.target}{f' ({params})' if params else ''} for "
                          f"{d.rollout.variant} users in {where}, from the {reg.from_percent:g} % stage; it shows in "
                          f"{reg.shows_in}. Roll back at the first stage whose data show it; before that, continue.",
                          highlight=False)
        console.print(f"\nwhat happened: {' '.join(d.debrief.what_happened.split())}", highlight=False)
        console.print("evidence path: " + "; ".join(d.debrief.evidence_path), highlight=False)
        console.print(f"good looks like: {' '.join(d.debrief.good_looks_like.split())}", highlight=False)
        return
    if d.kind == "experiment":
        console.print(f"[bold]{d.title}[/] ({d.id}): solution\n", highlight=False)
        console.print(f"verdict: {d.truth.verdict} ({verdict_label(d.truth.verdict)})", highlight=False)
        console.print(f"evidence: {d.truth.evidence} ({evidence_label(d.truth.evidence)})", highlight=False)
        console.print(f"\nwhat happened: {' '.join(d.debrief.what_happened.split())}", highlight=False)
        console.print("evidence path: " + "; ".join(d.debrief.evidence_path), highlight=False)
        console.print(f"good looks like: {' '.join(d.debrief.good_looks_like.split())}", highlight=False)
        return
    cohort = ", ".join(f"{k}={v}" for k, v in d.truth.cohort.items()) or "everyone"
    console.print(f"[bold]{d.title}[/] ({d.id}): solution\n", highlight=False)
    console.print(f"cause: {d.truth.cause} ({cause_label(d.truth.cause)})", highlight=False)
    console.print(f"cohort: {cohort}", highlight=False)
    console.print(f"the signal: {d.truth.metric}, {d.truth.direction}", highlight=False)
    if d.mitigations is not None:
        console.print(f"mitigation: {d.mitigations.right}", highlight=False)
    console.print(f"\nwhat happened: {' '.join(d.debrief.what_happened.split())}", highlight=False)
    console.print("evidence path: " + "; ".join(d.debrief.evidence_path), highlight=False)
    console.print(f"good looks like: {' '.join(d.debrief.good_looks_like.split())}", highlight=False)


@drill_app.command("answer")
def answer(
    cause: Optional[str] = typer.Option(None, "--cause", help="Incident drills: one of the drill's cause choices "
                                                              "(`obslab drill show ID`)."),
    cohort: Optional[str] = typer.Option(None, "--cohort", help="Incident drills: everyone, or dim=value[,dim=value]."),
    impact: Optional[float] = typer.Option(None, "--impact", help="Incident drills: your estimate of the drill's "
                                                                  "impact question."),
    verdict: Optional[str] = typer.Option(None, "--verdict", help="Experiment drills: one of the drill's verdict "
                                                                  "choices."),
    evidence: Optional[str] = typer.Option(None, "--evidence", help="Experiment drills: what the verdict rests on, "
                                                                    "one of the drill's evidence choices."),
    data_dir: Path = DataDir,
) -> None:
    """Answer the current drill (graded in the report; you may answer again): an incident drill with --cause,
    --cohort and --impact, an experiment drill with --verdict and --evidence."""
    with user_errors(*_ERRORS):
        incident = {"--cause": cause, "--cohort": cohort, "--impact": impact}
        if verdict is not None or evidence is not None:
            given = [k for k, v in incident.items() if v is not None]
            if given:
                raise runner.DrillError(f"{given[0]} answers an incident drill; an experiment drill takes only "
                                        "--verdict and --evidence")
            if verdict is None or evidence is None:
                raise runner.DrillError(f"missing {'--verdict' if verdict is None else '--evidence'}: an "
                                        "experiment drill is answered with both --verdict and --evidence")
            d, n = runner.answer_verdict(_drills_dir(data_dir), verdict, evidence)
        else:
            missing = [k for k, v in incident.items() if v is None]
            if missing:
                raise runner.DrillError(f"missing {', '.join(missing)}: an incident drill is answered with --cause, "
                                        "--cohort and --impact (an experiment drill with --verdict and --evidence)")
            parsed = runner.parse_cohort(cohort)
            d, n = runner.answer(_drills_dir(data_dir), cause, parsed, impact)
    console.print(f"answer {n} recorded for {d.id}; `obslab drill report` grades the last one.", highlight=False)


@drill_app.command("stop")
def stop(data_dir: Path = DataDir) -> None:
    """Stop the current drill: remove its fault and flags, stop its load."""
    with user_errors(*_ERRORS):
        run = runner.stop(_drills_dir(data_dir))
    console.print(f"drill stopped; `obslab drill report` writes the report ({run.path})", highlight=False)


@drill_app.command("report")
def report(data_dir: Path = DataDir) -> None:
    """Write the current drill's report (markdown + PNGs) and print its path and score."""
    from toolkit.drills.report import write_report
    import json

    with user_errors(*_ERRORS):
        st = runner.status(_drills_dir(data_dir))
        if st.phase in runner.ACTIVE_PHASES:
            raise runner.DrillError(f"drill {st.drill.id} is still {st.phase}; wait for it"
                                    + (" or `obslab drill stop`" if st.phase == "running" else ""))
        from toolkit.drills.state import current_run

        run = current_run(_drills_dir(data_dir))
        path = write_report(run)
        summary = json.loads((run.report_dir / "report.json").read_text())
    g = summary["grade"]
    console.print(f"score {g['total']:g}/{g['max']:g}; report: {path}", highlight=False)


@drill_app.command("mitigate")
def mitigate(
    action: List[str] = typer.Argument(..., help="One of the drill's mitigation choices, e.g. `rollback release`, "
                                                 "`retry-policy backoff:8` or `shed-load feed` (`obslab drill show "
                                                 "ID` lists them)."),
    data_dir: Path = DataDir,
    url: Optional[str] = typer.Option(None, "--url", help="The lab's publish API (default: the one the drill "
                                                          "runs against)."),
) -> None:
    """Mitigate the current drill's incident: one action a run, applied to the lab at once (graded in the
    report); then show the recovery with `obslab drill recovery`."""
    from toolkit.drills import mitigate as mitigation

    with user_errors(*_ERRORS):
        st = runner.status(_drills_dir(data_dir))  # no drill here: say so before looking for a lab
        # The lab the drill runs against, unless told otherwise.
        done = mitigation.mitigate(find_lab(data_dir, url or st.state.url), " ".join(action))
    console.print(f"mitigation {done.action} applied at t={done.at_scenario_s:.0f} s (scenario time) in {done.drill.id}. "
                  f"Show the recovery: measure the publish success rate since then with `obslab sli "
                  f"{st.state.events_dir or data_dir / 'events'} --since {done.since}` and report it with `obslab drill recovery "
                  f"--success-rate RATE --since {done.since} [--until T]`.", highlight=False)


@drill_app.command("recovery")
def recovery(
    success_rate: float = typer.Option(..., "--success-rate", help="The publish success rate you measured after "
                                                                   "the mitigation, a ratio in [0, 1]."),
    since: str = typer.Option(..., "--since", help="Start of your window (RFC 3339), at or after the mitigation."),
    until: Optional[str] = typer.Option(None, "--until", help="End of your window (RFC 3339); default: now."),
    data_dir: Path = DataDir,
) -> None:
    """Report the recovery the mitigation made, with the metric that showed the incident (graded in the report
    against the SLI engine over the same window; you may report again, the last one counts)."""
    from toolkit.drills import mitigate as mitigation

    with user_errors(*_ERRORS):
        d, n = mitigation.record_recovery(_drills_dir(data_dir), success_rate, since, until)
    console.print(f"recovery figure {n} recorded for {d.id}; `obslab drill report` grades the last one.",
                  highlight=False)


@drill_app.command("note")
def note(
    text: str = typer.Argument(..., help='What you think or did, e.g. "hypothesis: storage is down in eu-west".'),
    data_dir: Path = DataDir,
) -> None:
    """Note a hypothesis (or anything) in the current drill: the debrief shows it on your path."""
    from toolkit.drills.learner_path import record_note

    with user_errors(*_ERRORS):
        run, at = record_note(_drills_dir(data_dir), text)
    console.print(f"noted at t={at:.0f} s (scenario time) in {run.path.name}", highlight=False)


__all__ = ["drill_app", "TOKEN_ENV"]
