"""A drill's scenario clock: wall time since the start, less the pauses, times the speed.

A drill at ``--speed s`` plays its script ``s`` times faster; its times (the fault's start, time to
detect, time to diagnose, time left) are reported in scenario seconds, so a run at any speed reads
like the incident as written. The learner may pause the clock while investigating
(``obslab drill pause``/``resume``): the scheduler stops advancing, the fault stays as it is, the
time left freezes. Pauses are the ``clock_paused``/``clock_resumed`` records of the run's timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

__all__ = ["ScenarioClock", "PAUSE_BUDGET_S", "clock_from"]

# Most wall seconds a run may spend paused in all: the drill's load is bounded by its duration plus
# this (every load run is bounded in time); past it the scheduler resumes the clock by itself.
PAUSE_BUDGET_S = 900.0


@dataclass(frozen=True)
class ScenarioClock:
    started_at: float  # Unix seconds
    speed: float
    pauses: tuple[tuple[float, float | None], ...] = ()  # (paused at, resumed at or None), wall

    @property
    def paused(self) -> bool:
        return bool(self.pauses) and self.pauses[-1][1] is None

    def paused_s(self, t: float) -> float:
        """Wall seconds spent paused up to ``t``."""
        return sum(max(0.0, min(t, end if end is not None else t) - start) for start, end in self.pauses
                   if start < t)

    def active_s(self, t: float) -> float:
        """Wall seconds the clock ran between the start and ``t``."""
        return max(0.0, t - self.started_at - self.paused_s(t))

    def scenario_s(self, t: float) -> float:
        """Scenario seconds at wall time ``t``: the drill's own time, as its script is written."""
        return self.active_s(t) * self.speed

    def wall_at(self, active_s: float, now: float) -> float:
        """The wall time at which the clock will have run ``active_s`` seconds, pauses so far included
        (a pause still open counts up to ``now``)."""
        t = self.started_at + active_s
        for start, end in self.pauses:
            if start < t:
                t += (end if end is not None else max(now, start)) - start
        return t


def clock_from(started_at: float, speed: float, timeline: Iterable[Mapping]) -> ScenarioClock:
    pauses: list[tuple[float, float | None]] = []
    for e in timeline:
        if e.get("kind") == "clock_paused" and not (pauses and pauses[-1][1] is None):
            pauses.append((float(e["t"]), None))
        elif e.get("kind") == "clock_resumed" and pauses and pauses[-1][1] is None:
            pauses[-1] = (pauses[-1][0], float(e["t"]))
    return ScenarioClock(started_at, speed, tuple(pauses))
