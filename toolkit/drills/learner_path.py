"""What the learner did during a drill, and how it compares with the expert's path.

The recorder appends one JSON line per step to the active run's ``learner.jsonl``: the obslab
commands run while the drill is active (``record_command``, called by the CLI's entry), the
dashboard views opened (``record_view``, called by the dashboard for the API calls that are views)
and the hypotheses noted (``obslab drill note``). Each step carries its wall time and its
**scenario time** (seconds of drill time since the start: wall seconds less the pauses, × the run's
speed — the run's scenario clock, ``toolkit.drills.clock``).

A run is active from its start until its report is written, for at most ``ACTIVE_AFTER_END_S``
after its scheduled end: the investigation goes on after the fault ends, but a command the
next day belongs to no drill.

The debrief (``compare_paths``) puts the learner's steps side by side with the expert path — the
unattended solver's diagnosis (``toolkit.drills.auto``): when the incident was, what caused it,
who was hurt, how much — and marks where they diverged.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from toolkit.drills.state import NoDrillRunning, RunDir, RunState, append_jsonl, current_run, read_jsonl

__all__ = ["LEARNER_FILE", "ACTIVE_AFTER_END_S", "Step", "PathStage", "scenario_seconds", "active_run",
           "record_command", "record_view", "record_note", "learner_steps", "expert_steps", "compare_paths",
           "drills_dirs_for", "drills_dir_above"]

LEARNER_FILE = "learner.jsonl"
ACTIVE_AFTER_END_S = 6 * 3600.0
_SECRET_OPTION = re.compile(r"token|password|secret", re.I)


@dataclass(frozen=True)
class Step:
    scenario_s: float
    source: str  # cli | dashboard | note | answer | hint | mitigation | expert
    stage: str  # when | who | what | how much | mitigate | answer | other
    text: str


@dataclass(frozen=True)
class PathStage:
    stage: str
    expert: str
    learner: str
    diverged: bool
    note: str = ""


def scenario_seconds(run: RunDir, t: float) -> float:
    """Seconds of drill (scenario) time at wall time ``t``: the run's clock, pauses excluded."""
    return run.clock().scenario_s(t)


def _learner_file(run: RunDir) -> Path:
    return run.path / LEARNER_FILE


def active_run(drills_dir: Path, now: float | None = None) -> RunDir | None:
    """The run whose learner steps are being recorded now, or None."""
    try:
        run = current_run(drills_dir)
        state = run.read_state()
    except (NoDrillRunning, OSError, ValueError, TypeError):
        return None
    now = time.time() if now is None else now
    if (run.report_dir / "report.json").exists() or state.auto:
        return None
    return run if now <= state.started_at + state.duration_s + ACTIVE_AFTER_END_S else None


def drills_dirs_for(argv: Sequence[str], cwd: Path) -> list[Path]:
    """Where a command's drill state may be: its ``--data-dir``, the ancestors of the paths it names
    (``.obslab/data/events`` → ``.obslab``) and the default ``.obslab``."""
    out: list[Path] = []
    for i, word in enumerate(argv):
        value = None
        if word == "--data-dir" and i + 1 < len(argv):
            value = argv[i + 1]
        elif word.startswith("--data-dir="):
            value = word.split("=", 1)[1]
        if value:
            out.append((cwd / value) / "drills")
    for word in argv:
        if word.startswith("-") or "/" not in word:
            continue
        found = drills_dir_above(cwd / word)
        if found is not None:
            out.append(found)
    out.append(cwd / ".obslab" / "drills")
    seen, unique = set(), []
    for d in out:
        key = str(d.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


def drills_dir_above(path: Path) -> Path | None:
    """The drills directory of the data directory a path lies in (``.obslab/data/events`` →
    ``.obslab/drills``), looking up to five levels up; None when it lies in none."""
    p = Path(path).resolve()
    for parent in [p, *p.parents][:5]:
        if (parent / "drills" / "current.json").is_file():
            return parent / "drills"
    return None


def _redacted(argv: Sequence[str]) -> str:
    words, hide = [], False
    for w in argv:
        if hide:
            words.append("***")
            hide = False
            continue
        if w.startswith("--") and _SECRET_OPTION.search(w):
            if "=" in w:
                words.append(w.split("=", 1)[0] + "=***")
            else:
                words.append(w)
                hide = True
            continue
        words.append(w)
    return "obslab " + " ".join(shlex.quote(w) for w in words)


def record_command(argv: Sequence[str], cwd: Path | None = None, now: float | None = None) -> Path | None:
    """Append the command to the active run's learner path; returns the run directory, or None."""
    if list(argv[:2]) == ["drill", "note"]:
        return None  # the note records itself, as a note
    cwd = Path.cwd() if cwd is None else cwd
    now = time.time() if now is None else now
    for drills_dir in drills_dirs_for(argv, cwd):
        run = active_run(drills_dir, now)
        if run is not None:
            append_jsonl(_learner_file(run), {"t": now, "scenario_s": round(scenario_seconds(run, now), 3),
                                              "source": "cli", "what": _redacted(argv)})
            return run.path
    return None


def record_view(drills_dir: Path, view: str, now: float | None = None) -> bool:
    """Record a dashboard view, once per change of view (the page polls the same view every few seconds)."""
    run = active_run(drills_dir, now)
    if run is None:
        return False
    kind = view.split(" ", 1)[0]
    last = None
    for rec in read_jsonl(_learner_file(run)):  # the page polls several views at once: compare like with like
        if rec.get("source") == "dashboard" and str(rec.get("what", "")).split(" ", 1)[0] == kind:
            last = rec.get("what")
    if last == view:
        return False
    now = time.time() if now is None else now
    append_jsonl(_learner_file(run), {"t": now, "scenario_s": round(scenario_seconds(run, now), 3),
                                      "source": "dashboard", "what": view})
    return True


def record_note(drills_dir: Path, text: str, now: float | None = None) -> tuple[RunDir, float]:
    """Record a hypothesis or note in the current run (started, not necessarily still running)."""
    text = " ".join(text.split())
    if not text:
        raise ValueError("drill note: the note is empty (e.g. obslab drill note \"hypothesis: storage in eu-west\")")
    run = current_run(drills_dir)
    now = time.time() if now is None else now
    scen = scenario_seconds(run, now)
    append_jsonl(_learner_file(run), {"t": now, "scenario_s": round(scen, 3), "source": "note", "what": text})
    return run, scen


# --------------------------------------------------------------------------- reading the paths

_BROAD = re.compile(r"^obslab (sli|budget|top)\b|^(snapshot|series)\b")
_NARROW = re.compile(r"^obslab (breakdown|compare|sli .*--by)\b|^cohorts\b|--by\b")
_WHAT = re.compile(r"^obslab (reconcile|events)\b|^request\b|^obslab drill hint\b")


def _stage_of(source: str, what: str) -> str:
    if source == "note":
        return "what"
    if _NARROW.search(what):
        return "who"
    if _BROAD.search(what):
        return "when"
    if _WHAT.search(what):
        return "what"
    return "other"


def learner_steps(run: RunDir) -> list[Step]:
    """The learner's recorded steps and answers, in scenario-time order."""
    state = run.read_state()
    clock = run.clock()
    steps = [Step(float(r.get("scenario_s", 0.0)), str(r.get("source", "cli")),
                  _stage_of(str(r.get("source", "")), str(r.get("what", ""))), str(r.get("what", "")))
             for r in read_jsonl(_learner_file(run))]
    for a in run.answers():
        if a.get("by", "learner") == "auto":
            continue
        cohort = ", ".join(f"{k}={v}" for k, v in (a.get("cohort") or {}).items()) or "everyone"
        at = a.get("at_scenario_s")  # recorded by the runner; else from the wall time since the start
        at = float(at) if at is not None else clock.scenario_s(state.started_at + float(a.get("at_s", 0.0)))
        steps.append(Step(at, "answer", "answer",
                          f"answered cause {a.get('cause')}, cohort {cohort}, impact {a.get('impact'):g}"))
    for e in run.timeline():
        if e.get("kind") == "hint_shown":
            steps.append(Step(clock.scenario_s(e["t"]), "hint", "what", f"took hint {e.get('number')}"))
        elif e.get("kind") == "mitigation" and e.get("by") != "auto":
            steps.append(Step(clock.scenario_s(e["t"]), "mitigation", "mitigate", f"mitigated: {e.get('action')}"))
        elif e.get("kind") == "recovery_reported" and e.get("by") != "auto":
            steps.append(Step(clock.scenario_s(e["t"]), "mitigation", "mitigate",
                              f"reported recovery: publish success rate {float(e.get('value', 0.0)):.4f}"))
    return sorted(steps, key=lambda s: s.scenario_s)


def expert_steps(diagnosis: Mapping[str, Any], started_at: float, speed: float,
                 scenario: Callable[[float], float] | None = None) -> list[Step]:
    """The unattended solver's path (``auto.diagnosis_json``), broad to narrow, in scenario time:
    ``scenario`` maps a wall time to the run's scenario seconds (its clock, pauses excluded); without it,
    wall seconds since the start × ``speed``."""
    inc = diagnosis.get("incident") or [started_at, started_at]
    to_scenario = scenario or (lambda t: (t - started_at) * speed)
    start, end = to_scenario(inc[0]), to_scenario(inc[1])
    moved = ", ".join(diagnosis.get("signals_moved") or ()) or "no signal"
    top = (diagnosis.get("causes") or [{}])[0]
    cohorts = diagnosis.get("cohorts") or []
    cohort = ", ".join(f"{k}={v}" for k, v in (cohorts[0]["cohort"] if cohorts else {}).items()) or "everyone"
    impact = diagnosis.get("impact") or {}
    value = impact.get("value")
    mitigation = _expert_mitigation_step(diagnosis.get("mitigation"), start, to_scenario)
    return [
        Step(start, "expert", "when", f"marked the incident from t={start:.0f} s to t={end:.0f} s (scenario time) "
                                      f"where {moved} moved against the baseline"),
        Step(start, "expert", "what", f"ranked the causes: {top.get('cause')} first ({top.get('why', '')})"),
        Step(start, "expert", "who", f"broke the hurt attempts ({diagnosis.get('hurt_by', 'hurt')}) down by every "
                                     f"dimension and pair: {cohort} first"),
        Step(end, "expert", "how much", f"measured {impact.get('metric')} over that window: "
                                        + ("n/a" if value is None else f"{value:.3g}")),
    ] + ([mitigation] if mitigation is not None else [])


def _expert_mitigation_step(m: Mapping[str, Any] | None, incident_start: float,
                            to_scenario: Callable[[float], float]) -> Step | None:
    """The expert's mitigation (``mitigate.expert_mitigation``): taken in an ``--auto --auto-mitigate`` run, with
    the recovery it showed; else the action its diagnosis points to."""
    if not m:
        return None
    if not m.get("action"):
        return Step(incident_start, "expert", "mitigate", f"took no mitigation: {m.get('why')}")
    if not m.get("taken"):
        return Step(incident_start, "expert", "mitigate", f"would mitigate with {m['action']} ({m.get('why')})")
    at = to_scenario(float(m["at"]))
    text = f"mitigated with {m['action']} at t={at:.0f} s" + (f" ({m['why']})" if m.get("why") else "")
    rec = m.get("recovery")
    text += (f"; showed recovery: publish success rate {float(rec['value']):.4f} over "
             f"t={to_scenario(float(rec['since'])):.0f}..{to_scenario(float(rec['until'])):.0f} s (obslab sli)"
             if rec else "; reported no recovery figure")
    return Step(at, "expert", "mitigate", text)


def _dims_looked_at(steps: Iterable[Step]) -> set[str]:
    dims: set[str] = set()
    for s in steps:
        if s.source not in ("cli", "dashboard"):
            continue
        dims.update(re.findall(r"--by[ =]([a-z_,]+)", s.text))
        dims.update(re.findall(r"dimension=([a-z_]+)", s.text))
        if s.text.startswith("obslab breakdown") or s.text.startswith("obslab compare"):
            dims.add("*")
    return {d for group in dims for d in group.split(",")}


def compare_paths(learner: Sequence[Step], diagnosis: Mapping[str, Any], state: RunState,
                  impact_tolerance: float, scenario: Callable[[float], float] | None = None) -> list[PathStage]:
    """Stage by stage, what the expert did and what the learner did, and whether they diverged."""
    expert = {s.stage: s for s in expert_steps(diagnosis, state.started_at, state.speed, scenario)}
    answers = [s for s in learner if s.source == "answer"]
    last = answers[-1].text if answers else None
    inc_start = expert["when"].scenario_s
    broad = [s for s in learner if s.stage == "when"]
    looked = f"first broad look at t={broad[0].scenario_s:.0f} s: {broad[0].text}" if broad else \
        "no broad look recorded (sli, budget, top, the dashboard's tiles)"
    stages = [PathStage("when", expert["when"].text, looked, not broad,
                        "" if broad else "start broad: the SLI and burn rate say when before anything says why")]
    if broad and broad[0].scenario_s < inc_start:
        stages[0] = PathStage("when", expert["when"].text, looked + " (before the incident began)", False)
    cohorts = diagnosis.get("cohorts") or []
    want = dict(cohorts[0]["cohort"]) if cohorts else {}
    dims = _dims_looked_at(learner)
    broke_down = "*" in dims or (set(want) <= dims if want else bool(dims))
    answered_cohort = None
    answered_cause = None
    answered_impact = None
    if last:
        m = re.match(r"answered cause (\S+), cohort (.+), impact (\S+)$", last)
        if m:
            answered_cause, answered_cohort, answered_impact = m.group(1), m.group(2), float(m.group(3))
    want_text = ", ".join(f"{k}={v}" for k, v in want.items()) or "everyone"
    who = (f"broke down by {', '.join(sorted(d for d in dims if d != '*')) or 'every dimension (breakdown/compare)'}"
           if dims else "no breakdown recorded") + (f"; answered {answered_cohort}" if answered_cohort else "")
    stages.append(PathStage("who", expert["who"].text, who,
                            not broke_down or (answered_cohort is not None and answered_cohort != want_text),
                            "" if broke_down else f"the expert broke the hurt attempts down by "
                                                  f"{', '.join(want) or 'every dimension'}"))
    notes = [s.text for s in learner if s.source == "note"]
    top_cause = (diagnosis.get("causes") or [{}])[0].get("cause")
    what = ("; ".join(f"noted “{n}”" for n in notes[:3]) + "; " if notes else "") + \
        (f"answered {answered_cause}" if answered_cause else "no cause answered")
    stages.append(PathStage("what", expert["what"].text, what, answered_cause != top_cause))
    value = (diagnosis.get("impact") or {}).get("value")
    if answered_impact is None or value is None:
        diverged, much = True, "no impact answered" if answered_impact is None else f"answered {answered_impact:g}"
    else:
        rel = abs(answered_impact - value) / abs(value) if value else abs(answered_impact)
        diverged, much = rel > impact_tolerance, f"answered {answered_impact:g}"
    stages.append(PathStage("how much", expert["how much"].text, much, diverged))
    if "mitigate" in expert:
        want_action = (diagnosis.get("mitigation") or {}).get("action")
        mine = [s.text for s in learner if s.source == "mitigation"]
        took = next((t.removeprefix("mitigated: ") for t in mine if t.startswith("mitigated: ")), None)
        stages.append(PathStage("mitigate", expert["mitigate"].text,
                                "; ".join(mine) if mine else "no mitigation taken", took != want_action,
                                f"the expert's diagnosis points to {want_action}" if want_action and took != want_action
                                else ""))
    return stages
