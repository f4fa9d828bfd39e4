"""Load shape profiles: how many users run at each second of a run, as pure functions of time.

``Profile.tick(t)`` is what a Locust ``LoadTestShape.tick`` returns; ``loadtests.shapes`` adapts
the profiles to Locust (kept apart because importing Locust monkey-patches the process). A shape
scales with Locust's common options (``--users``, ``--spawn-rate``, ``--run-time``): ``--users`` is
the peak, ``--run-time`` the length of the whole shape.

steady   ``users`` for the whole run.
ramp     rises linearly from 1 to ``users`` over the first 75 % of the run, then holds.
spike    a base of ``users/5`` with one burst to ``users`` between 40 % and 60 % of the run.
diurnal  one compressed day: a cosine from a night trough (20 % of ``users``) to a midday peak
         and back, so the run starts and ends quiet.
phased   explicit phases ``DURATION:USERS[@SPAWN_RATE]``, comma-separated, e.g.
         ``30s:10,2m:40@20,30s:10`` (from ``OBSLAB_LOAD_PHASES``); drills use it to put load
         before, during and after a fault.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from contract.brief import brief
from contract.durations import DurationError, parse_duration

__all__ = ["SHAPES", "DEFAULT_SHAPE_DURATION_S", "ShapeError", "Phase", "Profile", "parse_phases", "build_profile"]

SHAPES = ("steady", "ramp", "spike", "diurnal", "phased")
# Used when a shape runs without --run-time (e.g. started from the web UI).
DEFAULT_SHAPE_DURATION_S = 600.0
RAMP_SHARE = 0.75
SPIKE_WINDOW = (0.4, 0.6)
SPIKE_BASE_SHARE = 0.2
DIURNAL_TROUGH_SHARE = 0.2


class ShapeError(ValueError):
    """A shape or phase list that cannot be run."""


@dataclass(frozen=True)
class Phase:
    duration_s: float
    users: int
    spawn_rate: float


@dataclass(frozen=True)
class Profile:
    """A load shape as data: the user count at time ``t`` comes from ``phases`` or a named curve."""

    name: str
    users: int
    spawn_rate: float
    duration_s: float
    phases: tuple[Phase, ...] = ()

    def __post_init__(self) -> None:
        if self.name not in SHAPES:
            raise ShapeError(f"unknown load shape {brief(self.name)}; expected one of {', '.join(SHAPES)}")
        if self.users < 1:
            raise ShapeError(f"a load shape needs at least 1 user, got {self.users}")
        if self.spawn_rate <= 0:
            raise ShapeError(f"spawn rate must be positive, got {self.spawn_rate}")
        if self.duration_s <= 0:
            raise ShapeError(f"a load shape needs a positive duration, got {self.duration_s}s")
        if self.name == "phased" and not self.phases:
            raise ShapeError("the phased shape needs phases, e.g. OBSLAB_LOAD_PHASES=30s:10,2m:40,30s:10")

    def users_at(self, t: float) -> int | None:
        """Target user count ``t`` seconds into the run; None once the shape is over."""
        if t < 0:
            t = 0.0
        if self.name == "phased":
            phase = self._phase_at(t)
            return None if phase is None else phase.users
        if t >= self.duration_s:
            return None
        share = t / self.duration_s
        if self.name == "steady":
            return self.users
        if self.name == "ramp":
            return max(1, math.ceil(self.users * min(1.0, share / RAMP_SHARE)))
        if self.name == "spike":
            low, high = SPIKE_WINDOW
            return self.users if low <= share < high else max(1, round(self.users * SPIKE_BASE_SHARE))
        # diurnal: 0 at the start (night), 1 at mid-run (midday), 0 at the end.
        trough = max(1, round(self.users * DIURNAL_TROUGH_SHARE))
        level = (1 - math.cos(2 * math.pi * share)) / 2
        return max(1, round(trough + (self.users - trough) * level))

    def tick(self, t: float) -> tuple[int, float] | None:
        """What Locust's ``LoadTestShape.tick`` returns at ``t``: (users, spawn rate) or None to stop."""
        users = self.users_at(t)
        if users is None:
            return None
        if self.name == "phased":
            return users, self._phase_at(t).spawn_rate  # type: ignore[union-attr]
        if self.name == "spike":
            # A spike arrives at once: Locust's start() blocks until the target is reached.
            return users, max(self.spawn_rate, float(self.users))
        return users, self.spawn_rate

    def _phase_at(self, t: float) -> Phase | None:
        start = 0.0
        for phase in self.phases:
            if t < start + phase.duration_s:
                return phase
            start += phase.duration_s
        return None

    @property
    def total_s(self) -> float:
        return sum(p.duration_s for p in self.phases) if self.name == "phased" else self.duration_s


def parse_phases(text: str, default_spawn_rate: float = 10.0) -> tuple[Phase, ...]:
    """Phases from ``"30s:10,2m:40@20,30s:10"`` (duration:users[@spawn_rate], comma-separated)."""
    phases = []
    for number, part in enumerate((p.strip() for p in text.split(",")), start=1):
        if not part:
            continue
        try:
            duration_text, rest = part.split(":", 1)
            users_text, _, rate_text = rest.partition("@")
            duration = parse_duration(duration_text)
            users = int(users_text)
            rate = float(rate_text) if rate_text else default_spawn_rate
        except (ValueError, DurationError) as e:
            raise ShapeError(
                f"phase {number} {brief(part)} is not DURATION:USERS[@SPAWN_RATE] (e.g. 2m:40@20): {e}"
            ) from None
        if duration <= 0 or users < 0 or rate <= 0:
            raise ShapeError(f"phase {number} {brief(part)}: duration and spawn rate must be positive, users >= 0")
        phases.append(Phase(duration, users, rate))
    if not phases:
        raise ShapeError(f"no phases in {brief(text)}; expected e.g. 30s:10,2m:40@20,30s:10")
    return tuple(phases)


def build_profile(name: str, users: int | None, spawn_rate: float | None, duration_s: float | None,
                  phases: str = "") -> Profile:
    """The profile a shape runs, from Locust's common options (None = not given)."""
    users = users or 1
    spawn_rate = spawn_rate or 1.0
    parsed = parse_phases(phases, spawn_rate) if name == "phased" else ()
    if name == "phased":
        users = max(1, max(p.users for p in parsed))
        duration_s = sum(p.duration_s for p in parsed)
    return Profile(name, users, spawn_rate, duration_s or DEFAULT_SHAPE_DURATION_S, parsed)
