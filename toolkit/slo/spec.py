"""The SLO spec (slo.yaml): load → validate into frozen dataclasses.

One spec drives the event-derived SLIs and budgets (``obslab sli``/``budget``),
the Prometheus rules (``obslab rules``) and the dashboards. Generation lives in
other modules; this one only reads and validates, with errors that name the file
and the field path (``slo.yaml: slos[1].threshold: ...``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from contract.brief import brief
from contract.durations import DurationError, format_duration, parse_duration
from toolkit.slo.yaml_file import load_yaml_file

__all__ = [
    "SloSpecError",
    "AlertWindow",
    "Profile",
    "Slo",
    "SloSpec",
    "load_spec",
    "parse_spec",
    "RATIO_OUTCOMES",
]

SPEC_VERSION = 1
RATIO_OUTCOMES = ("succeeded", "failed", "abandoned", "cancelled")
SEVERITIES = ("page", "ticket")
LATENCY_KINDS = ("processing", "e2e")
# Relative tolerance when checking burn_rate == budget_consumed * period / long.
_BURN_RATE_TOLERANCE = 1e-9


class SloSpecError(ValueError):
    """The spec is invalid; the message names the file and the field path."""


@dataclass(frozen=True)
class AlertWindow:
    severity: str
    long_s: float
    short_s: float
    budget_consumed: float
    burn_rate: float

    def compressed(self, factor: float) -> "AlertWindow":
        return AlertWindow(self.severity, self.long_s / factor, self.short_s / factor,
                           self.budget_consumed, self.burn_rate)

    @property
    def long(self) -> str:
        return format_duration(self.long_s)

    @property
    def short(self) -> str:
        return format_duration(self.short_s)


@dataclass(frozen=True)
class Profile:
    name: str
    time_compression: float
    scrape_interval_s: float
    # The scenario speed this profile runs at (``toolkit.slo.scenario.at_speed``): 1 = as the spec
    # writes it; a drill at ``--speed s`` runs it at s, with the compression and the scrape interval paced.
    speed: float = 1.0


@dataclass(frozen=True)
class Slo:
    name: str
    description: str
    kind: str  # "ratio" | "latency"
    objective: float
    period_s: float
    # ratio SLOs: attempt outcomes counted as good and in the total (events side)
    events_good: tuple[str, ...] = ()
    events_total: tuple[str, ...] = ()
    # latency SLOs
    latency: str | None = None  # "processing" | "e2e"
    threshold_s: float | None = None
    # Prometheus side: counter + outcome label + good/total outcomes (ratio),
    # or histogram name (latency).
    prometheus: dict[str, Any] = field(default_factory=dict)

    @property
    def error_budget(self) -> float:
        """Share of events allowed to be bad over the period: 1 - objective."""
        return 1.0 - self.objective


@dataclass(frozen=True)
class SloSpec:
    version: int
    service: str
    abandon_after_s: float
    slos: tuple[Slo, ...]
    windows: tuple[AlertWindow, ...]
    profiles: dict[str, Profile]
    source: str = "slo.yaml"

    def profile(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            raise SloSpecError(
                f"{self.source}: profiles: no profile {brief(name)} (have: {', '.join(sorted(self.profiles))})"
            ) from None

    def windows_for(self, profile: str) -> tuple[AlertWindow, ...]:
        """Alert windows with the profile's time compression applied."""
        factor = self.profile(profile).time_compression
        return tuple(w.compressed(factor) for w in self.windows)

    def period_for(self, slo: Slo, profile: str) -> float:
        """The SLO period in seconds under a profile."""
        return slo.period_s / self.profile(profile).time_compression

    def slo(self, name: str) -> Slo:
        for s in self.slos:
            if s.name == name:
                return s
        raise SloSpecError(f"{self.source}: slos: no SLO named {brief(name)}")


def load_spec(path: str | Path) -> SloSpec:
    """Read and validate a spec file."""
    p = Path(path)
    data = load_yaml_file(p, SloSpecError)
    return parse_spec(data, source=str(p))


class _Checker:
    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, what: str) -> SloSpecError:
        # A path built from the author's keys may hold a newline or a control character: escape it.
        if len(where) > 200:  # a huge key: its start names it well enough
            where = where[:197] + "..."
        where = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in where)
        return SloSpecError(f"{self.source}: {where}: {what}")

    def mapping(self, value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {type(value).__name__}")
        return value

    def required(self, m: dict, key: str, where: str) -> Any:
        if key not in m:
            raise self.fail(f"{where}.{key}" if where else key, "required field is missing")
        return m[key]

    def no_extra(self, m: dict, allowed: set[str], where: str) -> None:
        extra = sorted(set(map(str, m)) - allowed)
        if extra:
            # Quote a key that would not read as a field name (empty, spaces, dots).
            name = extra[0] if extra[0].isidentifier() else brief(extra[0])
            loc = f"{where}.{name}" if where else name
            raise self.fail(loc, f"unknown field (allowed: {', '.join(sorted(allowed))})")

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"expected a non-empty string, got {brief(value)}")
        return value

    def number(self, value: Any, where: str, lo: float, hi: float, *, lo_open=False, hi_open=False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(where, f"expected a number, got {brief(value)}")
        v = float(value)
        if not math.isfinite(v):
            raise self.fail(where, f"expected a finite number, got {brief(value)}")
        bad = (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi)
        if bad:
            lb, hb = ("(" if lo_open else "["), (")" if hi_open else "]")
            raise self.fail(where, f"must be in {lb}{lo:g}, {hi:g}{hb}, got {brief(value)}")
        return v

    def duration(self, value: Any, where: str, *, positive=True) -> float:
        try:
            s = parse_duration(value)
        except DurationError as e:
            raise self.fail(where, str(e)) from None
        if positive and s <= 0:
            raise self.fail(where, f"must be longer than zero, got {brief(value)}")
        return s

    def choice(self, value: Any, where: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.fail(where, f"expected one of {', '.join(choices)}, got {brief(value)}")
        return value

    def str_list(self, value: Any, where: str, choices: tuple[str, ...]) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(where, f"expected a non-empty list, got {brief(value)}")
        out = tuple(self.choice(v, f"{where}[{i}]", choices) for i, v in enumerate(value))
        if len(set(out)) != len(out):
            raise self.fail(where, "lists an outcome twice")
        return out


def parse_spec(data: Any, source: str = "slo.yaml") -> SloSpec:
    """Validate a parsed spec document; raise SloSpecError naming the first bad field."""
    c = _Checker(source)
    top = c.mapping(data, "(document)")
    c.no_extra(top, {"version", "service", "abandon_after", "slos", "alerting", "profiles"}, "")
    version = c.required(top, "version", "")
    if version != SPEC_VERSION:
        raise c.fail("version", f"unsupported spec version {brief(version)} (this obslab reads version {SPEC_VERSION})")
    service = c.string(c.required(top, "service", ""), "service")
    abandon_after_s = c.duration(top.get("abandon_after", "10m"), "abandon_after")

    raw_slos = c.required(top, "slos", "")
    if not isinstance(raw_slos, list) or not raw_slos:
        raise c.fail("slos", "expected a non-empty list of SLOs")
    slos, names = [], set()
    for i, raw in enumerate(raw_slos):
        slo = _parse_slo(c, raw, f"slos[{i}]")
        if slo.name in names:
            raise c.fail(f"slos[{i}].name", f"duplicate SLO name {brief(slo.name)}")
        names.add(slo.name)
        slos.append(slo)

    alerting = c.mapping(c.required(top, "alerting", ""), "alerting")
    c.no_extra(alerting, {"windows"}, "alerting")
    raw_windows = c.required(alerting, "windows", "alerting")
    if not isinstance(raw_windows, list) or not raw_windows:
        raise c.fail("alerting.windows", "expected a non-empty list of windows")
    periods = {s.period_s for s in slos}
    if len(periods) != 1:
        raise c.fail("slos", "all SLOs must share one period: alert burn rates are derived from it")
    period_s = periods.pop()
    windows = tuple(_parse_window(c, w, f"alerting.windows[{i}]", period_s) for i, w in enumerate(raw_windows))

    raw_profiles = c.mapping(c.required(top, "profiles", ""), "profiles")
    profiles = {}
    for name, raw in raw_profiles.items():
        where = f"profiles.{name if str(name).isidentifier() else brief(name)}"
        m = c.mapping(raw, where)
        c.no_extra(m, {"time_compression", "scrape_interval"}, where)
        factor = c.number(c.required(m, "time_compression", where), f"{where}.time_compression", 1, 1e6)
        scrape = c.duration(m.get("scrape_interval", "30s"), f"{where}.scrape_interval")
        for j, w in enumerate(windows):
            # rate() needs at least two samples inside the short window.
            if w.short_s / factor < 2 * scrape:
                raise c.fail(
                    f"{where}.time_compression",
                    f"compresses alerting.windows[{j}].short ({w.short}) to "
                    f"{format_duration(w.short_s / factor)}, shorter than two scrape intervals "
                    f"({format_duration(2 * scrape)})",
                )
        profiles[str(name)] = Profile(str(name), factor, scrape)
    if "prod" not in profiles:
        raise c.fail("profiles.prod", "required profile is missing")
    return SloSpec(SPEC_VERSION, service, abandon_after_s, tuple(slos), windows, profiles, source)


def _parse_slo(c: _Checker, raw: Any, where: str) -> Slo:
    m = c.mapping(raw, where)
    kind = c.choice(c.required(m, "kind", where), f"{where}.kind", ("ratio", "latency"))
    common = {"name", "description", "kind", "objective", "period", "prometheus"}
    allowed = common | ({"events"} if kind == "ratio" else {"latency", "threshold"})
    c.no_extra(m, allowed, where)
    name = c.string(c.required(m, "name", where), f"{where}.name")
    objective = c.number(c.required(m, "objective", where), f"{where}.objective", 0, 1, lo_open=True, hi_open=True)
    period_s = c.duration(c.required(m, "period", where), f"{where}.period")
    description = str(m.get("description", ""))
    prom = c.mapping(c.required(m, "prometheus", where), f"{where}.prometheus")
    if kind == "ratio":
        ev = c.mapping(c.required(m, "events", where), f"{where}.events")
        c.no_extra(ev, {"good", "total"}, f"{where}.events")
        good = c.str_list(c.required(ev, "good", f"{where}.events"), f"{where}.events.good", RATIO_OUTCOMES)
        total = c.str_list(c.required(ev, "total", f"{where}.events"), f"{where}.events.total", RATIO_OUTCOMES)
        if not set(good) <= set(total):
            raise c.fail(f"{where}.events.good", "every good outcome must also be in total")
        c.no_extra(prom, {"counter", "outcome_label", "good", "total"}, f"{where}.prometheus")
        c.string(c.required(prom, "counter", f"{where}.prometheus"), f"{where}.prometheus.counter")
        c.string(c.required(prom, "outcome_label", f"{where}.prometheus"), f"{where}.prometheus.outcome_label")
        pgood = c.str_list(c.required(prom, "good", f"{where}.prometheus"), f"{where}.prometheus.good", RATIO_OUTCOMES)
        ptotal = c.str_list(c.required(prom, "total", f"{where}.prometheus"), f"{where}.prometheus.total", RATIO_OUTCOMES)
        if not set(pgood) <= set(ptotal):
            raise c.fail(f"{where}.prometheus.good", "every good outcome must also be in total")
        prometheus = {**prom, "good": tuple(pgood), "total": tuple(ptotal)}
        return Slo(name, description, kind, objective, period_s, good, total, prometheus=prometheus)
    latency = c.choice(m.get("latency", "processing"), f"{where}.latency", LATENCY_KINDS)
    threshold_s = c.duration(c.required(m, "threshold", where), f"{where}.threshold")
    c.no_extra(prom, {"histogram", "buckets"}, f"{where}.prometheus")
    c.string(c.required(prom, "histogram", f"{where}.prometheus"), f"{where}.prometheus.histogram")
    prometheus = dict(prom)
    if "buckets" in prom:
        prometheus["buckets"] = _parse_buckets(c, prom["buckets"], f"{where}.prometheus.buckets", threshold_s,
                                               m["threshold"])
    return Slo(name, description, kind, objective, period_s, latency=latency, threshold_s=threshold_s,
               prometheus=prometheus)


def _parse_buckets(c: _Checker, raw: Any, where: str, threshold_s: float, threshold_text: Any) -> tuple[float, ...]:
    """Histogram bucket bounds (seconds, increasing); the latency threshold must be one of them.

    A latency SLI counts requests at or under the threshold from the bucket whose
    upper bound *is* the threshold; with no such bucket the SLI could only be
    interpolated, which is what the SLO must not depend on.
    """
    if not isinstance(raw, list) or not raw:
        raise c.fail(where, f"expected a non-empty list of bucket bounds in seconds, got {brief(raw)}")
    bounds = tuple(c.number(v, f"{where}[{i}]", 0, 1e9, lo_open=True) for i, v in enumerate(raw))
    if any(b <= a for a, b in zip(bounds, bounds[1:])):
        raise c.fail(where, "bucket bounds must be strictly increasing")
    if threshold_s not in bounds:
        raise c.fail(
            where.rsplit(".prometheus", 1)[0] + ".threshold",
            f"{brief(threshold_text)} ({threshold_s:g}s) is not a bucket boundary of the histogram "
            f"(buckets: {', '.join(f'{b:g}' for b in bounds)})",
        )
    return bounds


def _parse_window(c: _Checker, raw: Any, where: str, period_s: float) -> AlertWindow:
    m = c.mapping(raw, where)
    c.no_extra(m, {"severity", "long", "short", "budget_consumed", "burn_rate"}, where)
    severity = c.choice(c.required(m, "severity", where), f"{where}.severity", SEVERITIES)
    long_s = c.duration(c.required(m, "long", where), f"{where}.long")
    short_s = c.duration(c.required(m, "short", where), f"{where}.short")
    if short_s >= long_s:
        raise c.fail(f"{where}.short", f"must be shorter than long ({m['long']})")
    consumed = c.number(c.required(m, "budget_consumed", where), f"{where}.budget_consumed", 0, 1, lo_open=True)
    burn = c.number(c.required(m, "burn_rate", where), f"{where}.burn_rate", 0, 1e6, lo_open=True)
    expected = consumed * period_s / long_s
    if abs(burn - expected) > _BURN_RATE_TOLERANCE * max(1.0, expected):
        raise c.fail(
            f"{where}.burn_rate",
            f"{burn:g} does not match budget_consumed × period / long = "
            f"{consumed:g} × {format_duration(period_s)} / {format_duration(long_s)} = {expected:g}",
        )
    return AlertWindow(severity, long_s, short_s, consumed, burn)
