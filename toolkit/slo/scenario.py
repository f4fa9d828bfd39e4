"""A profile run faster: the spec a drill at ``--speed s`` measures and alerts with.

A drill at ``--speed s`` plays its scenario ``s`` times faster than it was written. For the
alerts its briefing promises to fire as written, every window of the profile must shrink by
the same factor: the period and the burn-rate windows (``time_compression × s``) and the
scrape/evaluation interval (``/ s``, so a short window still holds the same number of
samples). The engine (``toolkit.measures``) and the Prometheus rules (``toolkit.slo.rules``)
both take the derived spec, so they keep agreeing at every speed.
"""

from __future__ import annotations

from dataclasses import replace

from toolkit.slo.spec import Profile, SloSpec

__all__ = ["at_speed", "MAX_SPEED", "SpeedError"]

# The fastest a scenario may run: the lab profile's 1 s scrape becomes 100 ms, about as often as
# the lab's Prometheus and the service's /metrics can be asked on a small machine.
MAX_SPEED = 10.0


class SpeedError(ValueError):
    """A speed outside (0, MAX_SPEED]."""


def at_speed(spec: SloSpec, speed: float, profile: str = "lab") -> SloSpec:
    """``spec`` with ``profile`` run at scenario speed ``speed``: compressed ``speed`` times more than the
    spec writes it (same name, so every consumer of the profile — rules, alert names, reports — reads it
    unchanged). The speed is absolute, so pacing a spec already paced gives the same spec, never a
    double compression; ``spec`` itself when its profile already runs at ``speed``."""
    if not speed > 0:  # MAX_SPEED bounds what a drill may start at; a report of any run still reads
        raise SpeedError(f"speed must be more than 0, got {speed:g}")
    current = spec.profile(profile)
    if current.speed == speed:
        return spec
    derived = Profile(current.name, current.time_compression / current.speed * speed,
                      current.scrape_interval_s * current.speed / speed, float(speed))
    return replace(spec, profiles={**spec.profiles, profile: derived})
