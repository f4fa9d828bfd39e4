"""The unattended solver's mitigation step (``obslab drill start --auto --auto-mitigate``), taken while the drill
runs, the way a learner takes it: diagnose from what has happened so far, take the action the diagnosis points
to through ``toolkit.drills.mitigate`` (the same checks, the same record, the same change to the lab), then
measure the recovery with the SLI engine over a window after it (what ``obslab sli --since … --until …`` prints)
and report it through ``mitigate.record_recovery``.

Off unless asked: a mitigation during the fault cuts its effect short, so a plain ``--auto`` run (the lessons'
measurements over the fault window, tests/test_drill_lessons.py) stays an unmitigated incident.

The scheduler calls ``step`` on each tick and ``finish`` once the drill's time is up. Every look is a diagnosis of
the drill so far (``auto.diagnose`` over (start, now]); the solver acts once two looks see an incident still going
on and point to the same choice with no look between them pointing elsewhere (one look can be noise, and a
learner also checks twice). A look in between that sees no incident reaching the present does not reset the
count: at ×10 with a dozen users, the last seconds before a look often hold too few ended attempts to mark the
incident's latest bins, and requiring consecutive looks delayed the action by several looks (measured: from the
third look to the seventh in one of four runs, too late for 30 attempts in the recovery window).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from toolkit.drills.auto import BASELINE_SHARE, choose_mitigation, diagnose, diagnosis_json
from toolkit.drills import mitigate
from toolkit.drills.lab import Lab
from toolkit.drills.measure import Window, read_drill_events, read_metric_samples
from toolkit.drills.mitigate import REASONING_FILE, RECOVERY_FILE, record_recovery
from toolkit.drills.mitigation import RECOVERY_FIGURE
from toolkit.drills.schema import Drill
from toolkit.drills.state import RunDir, read_jsonl
from toolkit.slo.spec import SloSpec

__all__ = ["AutoMitigator", "agreed_choice", "REASONING_FILE", "LOOK_EVERY_S", "SETTLE_S", "RECOVERY_WINDOW_S", "engine_success_rate"]

# Scenario seconds (divided by the run's speed for wall time):
LOOK_EVERY_S = 30.0  # between two looks
SETTLE_S = 30.0  # after the action, before the recovery window: attempts already on the faulty path end
RECOVERY_WINDOW_S = 100.0  # the recovery window's length
# Looks begin once the drill is past the baseline the diagnosis compares with (a fault never starts earlier).
FIRST_LOOK_SHARE = BASELINE_SHARE + 0.05
# The incident is still going on when the diagnosis's incident window reaches this close to now (share of the
# time diagnosed). Signals of ended attempts lag at the right edge (the attempts still in flight are the slow,
# retrying ones): in a CI run with the fault in force, the window ended 4-10 s of wall time short of the look
# (15-30 % of the time diagnosed) at ×10, and a tenth held the solver back for three looks.
ONGOING_SHARE = 0.3


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def engine_success_rate(events_dir: Path, spec: SloSpec, since: float, until: float) -> float | None:
    """The publish success rate over (since, until], as of ``until``: what
    ``obslab sli EVENTS --since SINCE --until UNTIL --window 0`` prints."""
    from toolkit.events import load_events
    from toolkit.measures.sli import SliQuery, compute_report

    events = load_events([str(events_dir)], since=_iso(since), until=_iso(until), with_ids=False)
    report = compute_report(events, spec, SliQuery(since=_iso(since), until=_iso(until), window_s=None))
    return report.totals.figure(RECOVERY_FIGURE).value


def agreed_choice(choices: list[str | None]) -> str | None:
    """The choice to act on after these looks (oldest first; None where a look saw nothing to act on): the last
    look's choice when the latest look before it that chose anything chose the same."""
    if not choices or choices[-1] is None:
        return None
    earlier = [c for c in choices[:-1] if c is not None]
    return choices[-1] if earlier and earlier[-1] == choices[-1] else None


@dataclass
class AutoMitigator:
    run: RunDir
    lab: Lab
    drill: Drill
    spec: SloSpec
    actor: str
    next_look_at: float = 0.0
    looks: list = field(default_factory=list)  # each look's scenario time, what it saw and chose, for the record

    @property
    def _events_dir(self) -> Path:
        state = self.run.read_state()
        return Path(state.events_dir or Path(state.data_dir) / "events")

    def step(self, now: float) -> None:
        """Look (at most every LOOK_EVERY_S of scenario time) until the action is taken; then, once its recovery
        window has passed, report the recovery."""
        done = mitigate.taken(self.run)
        if done is None:
            self._look(now)
        elif done.get("by") == "auto" and not self._reported():
            since = done["at"] + SETTLE_S / self.run.read_state().speed
            until = since + RECOVERY_WINDOW_S / self.run.read_state().speed
            if now >= until:
                self._report(since, until)

    def finish(self, now: float) -> None:
        """The drill's time is up: report the recovery over what the window had, if the action came too late for
        all of it."""
        done = mitigate.taken(self.run)
        if done is None or done.get("by") != "auto" or self._reported():
            return
        since = done["at"] + SETTLE_S / self.run.read_state().speed
        until = min(now, since + RECOVERY_WINDOW_S / self.run.read_state().speed)
        if until > since:
            self._report(since, until)

    def _reported(self) -> bool:
        return any(r.get("by") == "auto" for r in read_jsonl(self.run.path / RECOVERY_FILE))

    def _look(self, now: float) -> None:
        state = self.run.read_state()
        start = state.started_at
        elapsed = self.run.clock().active_s(now)
        if now < self.next_look_at or elapsed < FIRST_LOOK_SHARE * state.duration_s:
            return
        self.next_look_at = now + LOOK_EVERY_S / state.speed
        events = read_drill_events(self._events_dir, Window(start, now), self.spec.abandon_after_s, as_of=now)
        samples = [s for s in read_metric_samples(self.run.metrics_file) if s.t <= now]
        d = diagnose(self.drill, events.attempts, samples, start, now, self.spec)
        ongoing = bool(d.signals_moved) and d.incident.end >= now - ONGOING_SHARE * (now - start)
        diagnosis = diagnosis_json(d)
        choice = choose_mitigation(mitigate.choices(self.drill, state), diagnosis) if ongoing else None
        top = diagnosis["causes"][0]["cause"] if diagnosis["causes"] else None
        self.looks.append({"at_scenario_s": round(self.run.clock().scenario_s(now), 1), "ongoing": ongoing,
                           "signals_moved": list(diagnosis["signals_moved"]), "cause": top,
                           "choice": choice[0] if choice else None})
        if agreed_choice([look["choice"] for look in self.looks]) is None:
            return
        action, why = choice
        done = mitigate.mitigate(self.lab, action, by="auto", actor=self.actor)
        (self.run.path / REASONING_FILE).write_text(json.dumps(
            {"action": done.action, "why": why, "at": done.at, "looks": len(self.looks), "look_log": self.looks,
             "diagnosis": {"incident": diagnosis["incident"], "signals_moved": diagnosis["signals_moved"],
                           "causes": diagnosis["causes"][:1], "cohorts": diagnosis["cohorts"][:1]}}, indent=2))

    def _report(self, since: float, until: float) -> None:
        rate = engine_success_rate(self._events_dir, self.spec, since, until)
        if rate is None:
            self.run.log("auto_recovery_skipped", reason="no attempt with an outcome in the recovery window")
            return
        record_recovery(self.run.path.parent, rate, _iso(since), _iso(until), by="auto")
