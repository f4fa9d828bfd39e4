"""Durations: two formats, each for one kind of duration.

* ``parse_duration`` / ``format_duration`` — *configured* durations, written as the spec, the CLI
  options and Prometheus write them ("90s", "5m", "1h30m", "30d"): SLO periods and windows, rule
  intervals, ``--window 5m``, a rollout stage's "10m". Use ``format_duration`` only to echo or generate
  such a setting (its output parses back to the same value).
* ``format_seconds`` — *measured* spans, the one way every output prints them ("49.3 s"): how long a
  fault lasted, time to detect, time spent firing, how much of a period has data, a scope whose end
  comes from the data. A measured span is rarely round, and "49s320ms" reads worse than "49.3 s".

Latencies are figures in milliseconds ("812.0 ms"), not durations in this sense.
"""

from __future__ import annotations

import math
import re

__all__ = ["DurationError", "parse_duration", "format_duration", "format_seconds"]

# Longer than any SLO period or window makes sense; keeps arithmetic and formatting finite.
MAX_DURATION_S = 100 * 365 * 86400
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


class DurationError(ValueError):
    """A duration string that is not of the form 5m, 1h30m, 30d, 250ms."""


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration such as ``"5m"`` or ``"1h30m"``; bare numbers are seconds."""
    if isinstance(text, bool):
        raise DurationError(f"expected a duration like 5m or 1h, got {text!r}")
    if isinstance(text, (int, float)):
        if not math.isfinite(text):
            raise DurationError(f"duration must be finite, got {text!r}")
        if text < 0:
            raise DurationError(f"duration must not be negative, got {text!r}")
        if text > MAX_DURATION_S:
            raise DurationError(f"duration must be at most 100 years, got {text!r}")
        return float(text)
    if not isinstance(text, str) or not text.strip():
        raise DurationError(f"expected a duration like 5m or 1h, got {text!r}")
    s = text.strip()
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise DurationError(f"expected a duration like 5m, 1h30m or 30d, got {text!r}")
    if not total <= MAX_DURATION_S:  # also catches inf: a number with hundreds of digits
        raise DurationError(f"duration must be at most 100 years, got {text[:40]!r}")
    return total


def format_duration(seconds: float) -> str:
    """Prometheus-style duration: the largest exact units, e.g. 5400 -> "1h30m", 0.5 -> "500ms"."""
    if seconds < 0:
        raise DurationError(f"duration must not be negative, got {seconds!r}")
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            n, ms = divmod(ms, size)
            out.append(f"{n}{unit}")
    return "".join(out)


def format_seconds(seconds: float) -> str:
    """A measured duration, the one way outputs print it: ``49.3 s`` (one decimal, thousands separated).

    ``format_duration`` writes configured durations as the spec and Prometheus do ("5m", "12h");
    a measured span is rarely round, and "49s320ms" reads worse than "49.3 s".
    """
    if seconds < 0:
        raise DurationError(f"duration must not be negative, got {seconds!r}")
    return f"{seconds:,.1f} s"
