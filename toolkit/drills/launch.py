"""Launch exercises (``kind: launch``): a launch brief the learner writes a measurement plan for.

A launch brief is data, in the drill catalogue's ``launches/`` directory (one YAML file each, like an
incident drill's): the briefing (what ships and why, never what will go wrong), the change (a flag,
its variant and control), the lab setup and rollout the launch runs with, the regression the change
really brings (hidden: a fault scoped like an incident drill's), the *signals* in which that
regression shows, and a debrief that says what a stronger plan would have watched.

The learner sees the briefing and the change only (``obslab plan template ID``); the regression, the
signals and the debrief stay in the catalogue file, as an incident drill's truth does. Errors name the
file and the field, as the incident drills' do (``toolkit.drills.schema``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from contract.brief import brief
from contract.events import ALL_EVENTS, DURATION_STARTS, FLAGS, LIFECYCLE_EVENTS, event_fields, numeric_fields
from toolkit.drills.schema import (DIFFICULTIES, DrillSpecError, Setup, _Checker, _ID, _parse_fault_body,
                                   _parse_setup)
from toolkit.slo.spec import RATIO_OUTCOMES
from toolkit.slo.yaml_file import load_yaml_file

__all__ = ["Signal", "Regression", "LaunchBrief", "SignalCoverage", "parse_launch", "load_launch", "launches_dir",
           "load_launches", "find_launch", "plan_coverage"]

KIND = "launch"


@dataclass(frozen=True)
class Signal:
    """Where the regression shows, in the terms a plan's metric reads: a latency between two events of an
    attempt, a numeric field of one event, the count of some events, or attempts by outcome."""

    name: str
    latency: tuple[str, str] | None = None
    value: tuple[str, str] | None = None
    events: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Regression:
    kind: str
    target: str
    selector: dict[str, Any]
    params: dict[str, Any]
    route: str | None
    start_s: float      # drill seconds after the launch starts
    duration_s: float


@dataclass(frozen=True)
class LaunchBrief:
    id: str
    title: str
    difficulty: str
    briefing: str
    change: dict[str, str]          # flag, variant, control
    setup: Setup
    stages: tuple[tuple[float, float], ...]   # (percent, at drill seconds): the lab's own rollout of the change
    regression: Regression
    signals: tuple[Signal, ...]
    what_happened: str
    stronger_plan: tuple[str, ...]
    source: str = ""


def parse_launch(data: Any, source: str = "launch.yaml") -> LaunchBrief:
    """Validate a parsed launch brief; raise DrillSpecError naming the first bad field."""
    c = _Checker(source)
    top = c.mapping(data, "(document)", allow_empty=False)
    c.fields(top, "", {"id", "kind", "title", "difficulty", "briefing", "change", "setup", "rollout", "regression",
                       "signals", "debrief"})
    launch_id = c.string(top["id"], "id")
    if not _ID.match(launch_id):
        raise c.fail("id", f"expected lowercase words joined by '-', got {brief(launch_id)}")
    if source.endswith((".yaml", ".yml")) and Path(source).stem != launch_id:
        raise c.fail("id", f"{brief(launch_id)} does not match the file name {brief(Path(source).name)}")
    c.choice(top["kind"], "kind", (KIND,))
    title = c.string(top["title"], "title")
    difficulty = c.choice(top["difficulty"], "difficulty", DIFFICULTIES)
    briefing = c.string(top["briefing"], "briefing")
    ch = c.mapping(top["change"], "change", allow_empty=False)
    c.fields(ch, "change", {"flag", "variant", "control"})
    flag = c.choice(ch["flag"], "change.flag", tuple(FLAGS))
    variant = c.choice(ch["variant"], "change.variant", FLAGS[flag])
    control = c.choice(ch["control"], "change.control", FLAGS[flag])
    if variant == control:
        raise c.fail("change.control", "must differ from the variant")
    setup = _parse_setup(c, top["setup"])
    if flag in setup.flags:
        raise c.fail(f"setup.flags.{flag}", "the launch's own flag is set by `rollout`, not by the setup")
    for name in setup.flag_at:  # a launch's setup flags are set when it starts (launch_run): no mid-run change
        raise c.fail(f"setup.flags.{name}.at", "a launch exercise sets its setup flags at the start")
    stages = _parse_stages(c, top["rollout"], setup)
    regression = _parse_regression(c, top["regression"], setup)
    raw_signals = top["signals"]
    if not isinstance(raw_signals, list) or not raw_signals:
        raise c.fail("signals", f"expected a non-empty list of signals, got {brief(raw_signals)}")
    signals = tuple(_parse_signal(c, s, f"signals[{i}]") for i, s in enumerate(raw_signals))
    d = c.mapping(top["debrief"], "debrief", allow_empty=False)
    c.fields(d, "debrief", {"what_happened", "stronger_plan"})
    return LaunchBrief(launch_id, title, difficulty, briefing, {"flag": flag, "variant": variant, "control": control},
                       setup, stages, regression, signals, c.string(d["what_happened"], "debrief.what_happened"),
                       c.string_list(d["stronger_plan"], "debrief.stronger_plan"), source)


def _parse_stages(c: _Checker, raw: Any, setup: Setup) -> tuple[tuple[float, float], ...]:
    if not isinstance(raw, list) or not raw:
        raise c.fail("rollout", f"expected a non-empty list of {{percent, at}}, got {brief(raw)}")
    stages: list[tuple[float, float]] = []
    for i, item in enumerate(raw):
        where = f"rollout[{i}]"
        m = c.mapping(item, where, allow_empty=False)
        c.fields(m, where, {"percent", "at"})
        pct = c.number(m["percent"], f"{where}.percent", 0, 100)
        at = c.duration(m["at"], f"{where}.at", allow_zero=True)
        if stages and (pct <= stages[-1][0] or at <= stages[-1][1]):
            raise c.fail(where, "stages must grow in percent and come later in time")
        if at >= setup.duration_s:
            raise c.fail(f"{where}.at", "is after the launch's end (setup.duration)")
        stages.append((pct, at))
    return tuple(stages)


def _parse_regression(c: _Checker, raw: Any, setup: Setup) -> Regression:
    m = c.mapping(raw, "regression", allow_empty=False)
    c.fields(m, "regression", {"kind", "target", "at", "duration"}, {"selector", "params", "route"})
    kind, target, selector, params, route = _parse_fault_body(c, m, "regression")
    start = c.duration(m["at"], "regression.at", allow_zero=True)
    duration = c.duration(m["duration"], "regression.duration")
    if start + duration > setup.duration_s:
        raise c.fail("regression.duration", "the regression would outlast the launch (setup.duration)")
    return Regression(kind, target, selector, params, route, start, duration)


def _parse_signal(c: _Checker, raw: Any, where: str) -> Signal:
    m = c.mapping(raw, where, allow_empty=False)
    c.fields(m, where, {"name"}, {"latency", "value", "events", "outcomes"})
    name = c.string(m["name"], f"{where}.name")
    given = [k for k in ("latency", "value", "events", "outcomes") if k in m]
    if len(given) != 1:
        raise c.fail(where, "give exactly one of latency, value, events, outcomes")
    kind = given[0]
    if kind == "latency":
        lat = c.mapping(m["latency"], f"{where}.latency", allow_empty=False)
        c.fields(lat, f"{where}.latency", {"from", "to"})
        start = c.choice(lat["from"], f"{where}.latency.from", LIFECYCLE_EVENTS)
        end = c.choice(lat["to"], f"{where}.latency.to", LIFECYCLE_EVENTS)
        if LIFECYCLE_EVENTS.index(end) <= LIFECYCLE_EVENTS.index(start):
            raise c.fail(f"{where}.latency.to", f"must come after {start} in an attempt")
        return Signal(name, latency=(start, end))
    if kind == "value":
        v = c.mapping(m["value"], f"{where}.value", allow_empty=False)
        c.fields(v, f"{where}.value", {"event", "field"})
        event = c.choice(v["event"], f"{where}.value.event", ALL_EVENTS)
        fld = c.choice(v["field"], f"{where}.value.field", tuple(sorted(event_fields(event) & numeric_fields())))
        return Signal(name, value=(event, fld))
    values = m[kind] if isinstance(m[kind], list) else [m[kind]]
    choices = ALL_EVENTS if kind == "events" else RATIO_OUTCOMES
    picked = tuple(c.choice(x, f"{where}.{kind}[{i}]", choices) for i, x in enumerate(values))
    return Signal(name, events=picked) if kind == "events" else Signal(name, outcomes=picked)


def load_launch(path: str | Path) -> LaunchBrief:
    """Read and validate one launch brief file."""
    p = Path(path)
    return parse_launch(load_yaml_file(p, DrillSpecError), source=str(p))


def launches_dir() -> Path:
    """The launch briefs shipped with obslab: the drill catalogue's ``launches/``."""
    return Path(str(resources.files("toolkit.drills.catalogue").joinpath("launches")))


def load_launches(directory: str | Path | None = None) -> dict[str, LaunchBrief]:
    """Every launch brief in a directory (default: the shipped ones), by id, in file-name order."""
    d = Path(directory) if directory is not None else launches_dir()
    out: dict[str, LaunchBrief] = {}
    for path in sorted(d.glob("*.yaml")):
        launch = load_launch(path)
        out[launch.id] = launch
    return out


def find_launch(ref: str) -> LaunchBrief:
    """A launch brief by id (the shipped catalogue) or by path to its file."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return load_launch(p)
    launches = load_launches()
    if ref not in launches:
        raise DrillSpecError(f"unknown launch brief {brief(ref)} (known: {', '.join(launches) or 'none'})")
    return launches[ref]


# --------------------------------------------------------------------------- the plan against the launch


@dataclass(frozen=True)
class SignalCoverage:
    """How a plan watches one signal of the launch's regression."""

    signal: str
    watched_by: tuple[tuple[str, str], ...]   # (metric name, role) of every plan metric that reads it
    rolls_back: tuple[str, ...]                # those of them whose breach rolls the launch back

    @property
    def verdict(self) -> str:
        """caught (a rollback guardrail watches it) | seen (only watched) | missed (no metric reads it)."""
        return "caught" if self.rolls_back else "seen" if self.watched_by else "missed"


def _watches(metric: Any, signal: Signal) -> bool:
    """Whether a plan metric reads what the signal is about (the same latency, value or counted events)."""
    if signal.latency is not None:
        if metric.latency == signal.latency:
            return True
        start, end = signal.latency
        return metric.value == (end, "duration_ms") and DURATION_STARTS.get(end) == start
    if signal.value is not None:
        return metric.value == signal.value
    counted = [s for s in (metric.numerator, metric.count) if s is not None]
    if signal.events:
        return any(set(signal.events) & set(s.events) for s in counted)
    return any(set(signal.outcomes) & set(s.outcomes) for s in counted)


def plan_coverage(plan: Any, launch: LaunchBrief) -> tuple[SignalCoverage, ...]:
    """For every signal of the launch's regression, the plan's metrics that watch it and which of them roll
    back: the plan's side of "what the plan caught and what it missed". Shown only after the launch ran
    (the signals are the exercise's answer). ``plan`` is a ``toolkit.analysis.measurement_plan.Plan``."""
    out = []
    for signal in launch.signals:
        watching = [m for m in plan.metrics if _watches(m, signal)]
        rolls_back = tuple(m.name for m in watching
                           if m.role == "guardrail" and m.threshold is not None and m.name in plan.rollback_when)
        out.append(SignalCoverage(signal.name, tuple((m.name, m.role) for m in watching), rolls_back))
    return tuple(out)
