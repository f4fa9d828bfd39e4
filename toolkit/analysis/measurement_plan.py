"""A launch's measurement plan (YAML): validated against the event contract, vague definitions flagged.

Before a launch ships, the learner writes what will be measured: one primary metric, secondary
(mechanism) metrics and guardrails, each defined completely; the events and fields that make them
measurable; SLO and alert thresholds; the rollout stages and the rollback condition. ``check_plan``
answers two questions about every metric, with the line of the plan each finding is about:

- **is it computable from the events?** every event and field it names exists in the contract
  (``contract.events``: ``ALL_EVENTS``, ``event_fields``, ``numeric_fields``); a latency names a
  start and an end event of one attempt, in that order; a ratio has a denominator that contains its
  numerator; the plan's ``events`` list declares everything the metrics use;
- **is it defined, or only named?** the definition fields of a metric are those the story check asks
  of a learner's story (``toolkit.analysis.story_check.DEFINITION_FIELDS``: statistic, window,
  segment, denominator, baseline), plus a direction and, for a guardrail, a threshold with a unit.
  "latency" with no statistic, "success" with no denominator, "improves" with no baseline are
  flagged as vague.

Pure: a parsed document with its lines (``toolkit.slo.yaml_file.Located``) goes in, a ``PlanCheck``
comes out; ``check_plan_file`` reads the file with the project's guarded YAML reader (no aliases,
no FIFOs, bounded size). The format is documented in docs/plans.md; ``schemas/plan.schema.json`` is
its editor schema (a test holds the two together).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from contract.brief import brief
from contract.durations import DurationError, format_duration, parse_duration
from contract.events import (ALL_EVENTS, AUDIT_EVENTS, COHORT_DIMENSIONS, ERROR_CLASSES, FLAGS, LIFECYCLE_EVENTS,
                             OPTIONAL_EVENT_FIELDS, SERVICE_VERSIONS, event_fields, numeric_fields)
from contract.faults import SELECTOR_VALUES
from toolkit.analysis.story_check import DEFINITION_FIELDS, ROLES
from toolkit.slo.spec import RATIO_OUTCOMES
from toolkit.slo.yaml_file import Located, load_yaml_file_located

__all__ = [
    "PLAN_SCHEMA",
    "PLAN_VERSION",
    "STATISTICS",
    "DIRECTIONS",
    "UNITS",
    "PlanFileError",
    "Problem",
    "Selector",
    "Threshold",
    "Baseline",
    "Metric",
    "Stage",
    "Plan",
    "PlanCheck",
    "check_plan",
    "check_plan_file",
    "plan_template",
]

PLAN_SCHEMA = "obslab.plan-check/v1"
PLAN_VERSION = 1
PERCENTILES = ("p50", "p75", "p90", "p95", "p99", "p99.9")
STATISTICS = ("ratio", "count", "mean", "max") + PERCENTILES
DIRECTIONS = ("higher_is_better", "lower_is_better")
UNITS = ("%", "pp", "ms", "s", "count", "bytes", "x")
SEVERITIES = ("page", "ticket")
# Words that say a metric should move without saying compared with what.
_MOVEMENT_WORDS = ("improve", "improves", "improved", "better", "worse", "faster", "slower", "reduce", "reduces",
                   "reduced", "increase", "increases", "decrease", "decreases", "lower", "higher", "regress",
                   "regresses", "drop", "drops")
# A name made only of these words names a kind of metric, not a metric.
_VAGUE_WORDS = {"latency", "success", "errors", "error", "performance", "speed", "reliability", "quality",
                "health", "stability", "experience", "engagement", "time", "duration", "failures", "the", "rate",
                "overall", "user", "users", "good", "bad", "metric"}
_TIME_FIELDS = {"duration_ms", "queue_wait_ms"}
_BYTE_FIELDS = {"bytes", "media_size_bytes"}
# Selector `where` values the contract enumerates (a typo there would silently select nothing).
_ENUMERATED = {"error_class": ERROR_CLASSES, "transcode_mode": FLAGS["transcode_mode"],
               "service_version": tuple(SERVICE_VERSIONS.values())}
_METRIC_KEYS = ("name", "description", "statistic", "numerator", "denominator", "count", "value", "latency",
                "window", "segment", "baseline", "direction", "threshold")
_TOP_KEYS = ("version", "launch", "change", "primary", "secondary", "guardrails", "events", "slo", "alerts",
             "rollout")
# Roles as the story check names them, and the plan key that holds each.
_ROLE_KEYS = {"primary": "primary", "secondary": "secondary", "guardrail": "guardrails"}
assert set(_ROLE_KEYS) == set(ROLES)
# What to ask when a definition field is missing: the story check's definition fields, asked of a plan.
_ASK = {
    "statistic": "say which statistic ({})".format(", ".join(STATISTICS)),
    "window": "over which span of time is it computed?",
    "segment": "which traffic? (`all`, or e.g. {synthetic: false, region: eu-west})",
    "denominator": "out of what?",
    "baseline": "compared with what? (control, {before: DURATION} or {value, unit})",
}
assert tuple(_ASK) == DEFINITION_FIELDS


class PlanFileError(ValueError):
    """The plan file cannot be read at all (missing, not YAML, hostile); names the file and line."""


@dataclass(frozen=True)
class Problem:
    line: int
    where: str     # field path, e.g. guardrails[0].threshold
    code: str      # machine-readable: vague_statistic, unknown_event, no_denominator, ...
    message: str
    kind: str = "error"  # error (wrong or not computable) | vague (named, not defined) | note (not failing)

    def render(self, source: str) -> str:
        label = {"error": "", "vague": "vague: ", "note": "note: "}[self.kind]
        return f"{source}:{self.line}: {self.where}: {label}{self.message}"


@dataclass(frozen=True)
class Selector:
    """What a numerator, denominator or count counts: events (by name) or attempts (by outcome)."""

    events: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    where: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Threshold:
    kind: str   # limit (an absolute bound) | change (allowed move in the bad direction vs the baseline)
    value: float
    unit: str


@dataclass(frozen=True)
class Baseline:
    kind: str            # control (the control arm, same window) | before (the same segment before launch) | value
    before_s: float | None = None
    value: float | None = None
    unit: str | None = None


@dataclass(frozen=True)
class Metric:
    role: str  # primary | secondary | guardrail
    name: str
    statistic: str | None
    line: int
    numerator: Selector | None = None
    denominator: Selector | None = None
    count: Selector | None = None
    value: tuple[str, str] | None = None     # (event, field)
    latency: tuple[str, str] | None = None   # (from event, to event) of one attempt
    window_s: float | None = None
    segment: dict[str, Any] | None = None   # {} = all traffic
    baseline: Baseline | None = None
    direction: str | None = None
    threshold: Threshold | None = None
    description: str = ""
    path: tuple = field(default=(), compare=False, repr=False)  # where in the document it is defined

    def uses(self) -> dict[str, set[str]]:
        """Events this metric reads → the fields it reads from each."""
        out: dict[str, set[str]] = {}
        for sel in (self.numerator, self.denominator, self.count):
            if sel is not None:
                for e in sel.events:
                    out.setdefault(e, set()).update(sel.where)
        if self.value is not None:
            out.setdefault(self.value[0], set()).add(self.value[1])
        if self.latency is not None:
            for e in self.latency:
                out.setdefault(e, set())
        return out


@dataclass(frozen=True)
class Stage:
    percent: float
    duration_s: float | None


@dataclass(frozen=True)
class Plan:
    launch: str | None
    change: dict[str, str]
    metrics: tuple[Metric, ...]
    events: dict[str, tuple[str, ...]]
    stages: tuple[Stage, ...]
    rollback_when: tuple[str, ...]
    consecutive_windows: int | None

    def metric(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)


@dataclass(frozen=True)
class PlanCheck:
    source: str
    plan: Plan
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not any(p.kind in ("error", "vague") for p in self.problems)

    def counts(self) -> dict[str, int]:
        return {k: sum(1 for p in self.problems if p.kind == k) for k in ("error", "vague", "note")}

    def lines(self) -> list[str]:
        return [p.render(self.source) for p in self.problems]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": PLAN_SCHEMA, "source": self.source, "ok": self.ok, "counts": self.counts(),
                "problems": [asdict(p) for p in self.problems],
                "metrics": [{"role": m.role, "name": m.name, "statistic": m.statistic, "line": m.line,
                             "window": None if m.window_s is None else format_duration(m.window_s)}
                            for m in self.plan.metrics]}


# --------------------------------------------------------------------------- the checker


class _Checker:
    """Collects every problem (a learner fixes a plan in one pass, not one error per run)."""

    def __init__(self, doc: Located):
        self.doc = doc
        self.problems: list[Problem] = []

    def add(self, path: tuple, code: str, message: str, kind: str = "error") -> None:
        self.problems.append(Problem(self.doc.line(path), _where(path), code, message, kind))

    def mapping(self, value: Any, path: tuple, allowed: tuple[str, ...]) -> dict | None:
        if not isinstance(value, dict):
            self.add(path, "not_a_mapping", f"expected a mapping, got {brief(value)}")
            return None
        for key in value:
            if str(key) not in allowed:
                hint = _did_you_mean(str(key), allowed)
                self.add(path + (str(key),), "unknown_field",
                         f"unknown field{hint} (allowed: {', '.join(allowed)})")
        # A field left blank (the template's `window:`) is a field not written yet: treat it as missing.
        return {str(k): v for k, v in value.items() if v is not None and v != [] and v != {}}

    def required(self, m: dict, keys: tuple[str, ...], path: tuple) -> bool:
        """Whether every one of ``keys`` is in ``m``; each missing one is a problem at ``path`` + key."""
        missing = [key for key in keys if key not in m]
        for key in missing:
            self.add(path + (key,), "missing", "required field is missing")
        return not missing

    def string(self, value: Any, path: tuple) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.add(path, "not_a_string", f"expected a non-empty string, got {brief(value)}")
            return None
        return value.strip()

    def number(self, value: Any, path: tuple) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.add(path, "not_a_number", f"expected a number, got {brief(value)}")
            return None
        return float(value)

    def duration(self, value: Any, path: tuple) -> float | None:
        try:
            seconds = parse_duration(value)
        except DurationError as e:
            self.add(path, "bad_duration", str(e))
            return None
        if seconds <= 0:
            self.add(path, "bad_duration", f"must be longer than zero, got {brief(value)}")
            return None
        return seconds

    def choice(self, value: Any, path: tuple, choices: tuple[str, ...], what: str) -> str | None:
        if value in choices:
            return value
        hint = _did_you_mean(value, choices) if isinstance(value, str) else ""
        self.add(path, f"unknown_{what.replace(' ', '_')}", f"no {what} {brief(value)}{hint} "
                                                           f"(expected one of: {', '.join(choices)})")
        return None

    def event(self, value: Any, path: tuple) -> str | None:
        """An event name of the contract (the list is long: name the page that has it, not every name)."""
        if value in ALL_EVENTS:
            return value
        hint = _did_you_mean(value, ALL_EVENTS) if isinstance(value, str) else ""
        self.add(path, "unknown_event", f"{brief(value)} is not an event of the event contract{hint}: nothing "
                                        "emits it, so nothing can compute a metric from it (events: docs/events.md)")
        return None


def _where(path: tuple) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = part if part.isidentifier() else brief(part)
            text += f".{name}" if text else name
    text = text or "(document)"
    if len(text) > 200:  # a huge key: its start names it well enough
        text = text[:197] + "..."
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _did_you_mean(value: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(value)[:100], list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_plan_file(path: str | Path, launches: Mapping[str, Mapping[str, str]] | None = None) -> PlanCheck:
    """Read ``path`` with the guarded YAML reader and check it; PlanFileError when it cannot be read."""
    p = Path(path)
    return check_plan(load_yaml_file_located(p, PlanFileError), source=str(p), launches=launches)


def check_plan(doc: Located, source: str = "plan.yaml",
               launches: Mapping[str, Mapping[str, str]] | None = None) -> PlanCheck:
    """Every problem of a plan document, each with its line; the plan as far as it could be read.

    ``launches`` (launch id → its change: flag, variant, control) lets the plan's ``launch`` and
    ``change`` be checked against the brief they are for."""
    c = _Checker(doc)
    for path, _line in doc.duplicate_keys:
        c.add(path, "duplicate_key", f"{_where(path)} is written twice; YAML keeps only the last one")
    empty = Plan(None, {}, (), {}, (), (), None)
    top = c.mapping(doc.data, (), _TOP_KEYS) if doc.data is not None else None
    if top is None:
        if doc.data is None:
            c.add((), "empty", "the plan is empty: start from `obslab plan template BRIEF`")
        return PlanCheck(source, empty, tuple(c.problems))
    if "version" not in top:
        c.add(("version",), "missing", f"required field is missing (this obslab reads version {PLAN_VERSION})")
    elif top["version"] != PLAN_VERSION:
        c.add(("version",), "bad_version", f"expected {PLAN_VERSION}, got {brief(top['version'])}")
    launch = c.string(top["launch"], ("launch",)) if "launch" in top else None
    change = _change(c, top.get("change"))
    if launch is not None and launches is not None:
        _launch_matches(c, launch, change, launches)
    metrics: list[Metric] = []
    for role, key in _ROLE_KEYS.items():
        raw = top.get(key)
        if raw is None:
            what = {"primary": "no primary metric: which one number says whether the launch worked?",
                    "secondary": "no secondary (mechanism) metrics: how will you know why the primary moved?",
                    "guardrail": "no guardrails: what must not get worse while the launch rolls out?"}[role]
            c.add((key,), f"missing_{role}", what)
            continue
        if role == "primary":
            if isinstance(raw, list):
                c.add((key,), "one_primary", "one primary metric, not a list: choose the one that decides; the "
                                             "others are secondary metrics or guardrails")
                continue
            items = [((key,), raw)]
        else:
            if not isinstance(raw, list) or not raw:
                c.add((key,), "not_a_list", f"expected a non-empty list of metrics, got {brief(raw)}")
                continue
            items = [((key, i), item) for i, item in enumerate(raw)]
        for path, item in items:
            m = _metric(c, item, path, role, change)
            if m is not None:
                metrics.append(m)
    seen: dict[str, tuple] = {}
    for m in metrics:
        if m.name in seen:
            c.add(m.path, "duplicate_name", f"metric {m.name!r} is defined twice (also line "
                                            f"{doc.line(seen[m.name])}): give each its own name")
        else:
            seen[m.name] = m.path
    events = _events(c, top.get("events"), metrics)
    _slo(c, top.get("slo"), metrics)
    _alerts(c, top.get("alerts"), metrics)
    stages, rollback_when, consecutive = _rollout(c, top.get("rollout"), metrics)
    plan = Plan(launch, change, tuple(metrics), events, stages, rollback_when, consecutive)
    problems = sorted(c.problems, key=lambda p: (p.line, p.where))
    return PlanCheck(source, plan, tuple(problems))


def _launch_matches(c: _Checker, launch: str, change: dict[str, str],
                    launches: Mapping[str, Mapping[str, str]]) -> None:
    if launch not in launches:
        c.add(("launch",), "unknown_launch", f"no launch brief {brief(launch)}{_did_you_mean(launch, list(launches))} "
                                             f"(the briefs: {', '.join(launches) or 'none'})")
        return
    expected = launches[launch]
    for key in ("flag", "variant", "control"):
        if key in change and change[key] != expected.get(key):
            c.add(("change", key), "not_the_launch", f"the brief {launch} changes {expected['flag']} "
                                                    f"({expected['variant']} against {expected['control']}): "
                                                    f"{key} is {expected.get(key)!r}, not {change[key]!r}")


def _change(c: _Checker, raw: Any) -> dict[str, str]:
    if raw is None:
        c.add(("change",), "missing", "required field is missing: the flag the launch turns on "
                                      "({flag, variant, control})")
        return {}
    m = c.mapping(raw, ("change",), ("flag", "variant", "control"))
    if m is None:
        return {}
    out: dict[str, str] = {}
    c.required(m, ("flag", "variant", "control"), ("change",))
    flag = c.choice(m["flag"], ("change", "flag"), tuple(FLAGS), "flag") if "flag" in m else None
    if flag is None:
        return out
    out["flag"] = flag
    for key in ("variant", "control"):
        if key in m and c.choice(m[key], ("change", key), FLAGS[flag], f"{flag} variant") is not None:
            out[key] = m[key]
    if out.get("variant") is not None and out.get("variant") == out.get("control"):
        c.add(("change", "control"), "same_arm", "the control is the variant: a comparison needs two arms")
    return out


def _selector(c: _Checker, raw: Any, path: tuple, *, denominator: bool) -> Selector | None:
    m = c.mapping(raw, path, ("events", "outcomes", "where"))
    if m is None:
        return None
    if ("events" in m) == ("outcomes" in m):
        c.add(path, "selector", "name either events (count events by name) or outcomes (count attempts by "
                                f"outcome: {', '.join(RATIO_OUTCOMES)}), one of the two")
        return None
    events: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    if "events" in m:
        names = _name_list(c, m["events"], path + ("events",))
        good = []
        for i, name in enumerate(names):
            if c.event(name, path + ("events", i)) is None:
                continue
            if denominator and name == "upload_rejected":
                c.add(path + ("events", i), "rejected_in_denominator",
                      "upload_rejected is a refused request, not an attempt: it never belongs in a denominator "
                      "(docs/events.md)")
            good.append(name)
        events = tuple(good)
    else:
        names = _name_list(c, m["outcomes"], path + ("outcomes",))
        outcomes = tuple(n for i, n in enumerate(names)
                         if c.choice(n, path + ("outcomes", i), RATIO_OUTCOMES, "outcome") is not None)
    where: dict[str, Any] = {}
    if "where" in m:
        w = c.mapping(m["where"], path + ("where",), tuple(sorted({f for e in ALL_EVENTS for f in event_fields(e)})))
        for key, value in (w or {}).items():
            fpath = path + ("where", key)
            if outcomes and key not in COHORT_DIMENSIONS + ("service_version", "synthetic", "app_version"):
                c.add(fpath, "where_on_outcomes", f"an outcome carries no field {key!r}: filter by cohort "
                                                  "(segment) or count events instead")
                continue
            missing = [e for e in events if key not in event_fields(e)]
            if missing:
                c.add(fpath, "field_not_on_event",
                      f"field {key!r} is not on event {missing[0]!r} (its fields: "
                      f"{', '.join(sorted(event_fields(missing[0]) - event_fields('flag_changed')) or '(common only)')})")
                continue
            if key in _ENUMERATED and value not in _ENUMERATED[key]:
                c.add(fpath, "unknown_value", f"{key} is never {brief(value)} (the contract's values: "
                                              f"{', '.join(_ENUMERATED[key])})")
                continue
            where[key] = value
    return Selector(events, outcomes, where)


def _name_list(c: _Checker, raw: Any, path: tuple) -> list:
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list) or not raw:
        c.add(path, "not_a_list", f"expected a non-empty list, got {brief(raw)}")
        return []
    if len(set(map(str, raw))) != len(raw):
        c.add(path, "repeated", "lists a name twice: it would be counted twice")
    return raw


def _attempt_event(c: _Checker, raw: Any, path: tuple) -> str | None:
    name = c.event(raw, path)
    if name is None:
        return None
    if name in AUDIT_EVENTS or name == "upload_rejected":
        c.add(path, "not_an_attempt_event", f"{name} belongs to no publish attempt (no request to follow): a "
                                            "latency runs between two events of one attempt")
        return None
    return name


def _metric(c: _Checker, raw: Any, path: tuple, role: str, change: dict[str, str]) -> Metric | None:
    m = c.mapping(raw, path, _METRIC_KEYS)
    if m is None:
        return None
    line = c.doc.line(path)
    name = c.string(m["name"], path + ("name",)) if "name" in m else None
    if "name" not in m:
        c.add(path + ("name",), "missing", "required field is missing: what do you call this metric?")
    name = name or f"({role} at line {line})"
    description = m.get("description") if isinstance(m.get("description"), str) else ""
    label = f"{name!r}"
    words = set(re.findall(r"[a-z0-9.]+", name.lower()))
    vague_name = bool(words) and words <= _VAGUE_WORDS

    statistic = None
    if "statistic" not in m:
        what = f"{label} names a kind of metric, not a metric" if vague_name else f"{label} has no statistic"
        c.add(path, "vague_statistic", f"{what}: {_ASK['statistic']}", "vague")
    else:
        raw_stat = m["statistic"]
        hint = {"average": "mean", "avg": "mean", "median": "p50", "rate": "ratio", "percentage": "ratio",
                "share": "ratio", "total": "count"}.get(str(raw_stat).lower(), None)
        if raw_stat in STATISTICS:
            statistic = raw_stat
        elif hint:
            c.add(path + ("statistic",), "unknown_statistic", f"{brief(raw_stat)} is not one of the statistics: "
                                                              f"write {hint!r}")
        else:
            c.choice(raw_stat, path + ("statistic",), STATISTICS, "statistic")

    numerator = denominator = count = None
    value = latency = None
    given = {k for k in ("numerator", "denominator", "count", "value", "latency") if k in m}
    if statistic == "ratio":
        for k in given - {"numerator", "denominator"}:
            c.add(path + (k,), "wrong_part", f"a ratio is numerator / denominator; {k} belongs to other statistics")
        if "numerator" not in m:
            c.add(path, "no_numerator", f"{label} is a ratio with no numerator: what is counted?")
        else:
            numerator = _selector(c, m["numerator"], path + ("numerator",), denominator=False)
        if "denominator" not in m:
            c.add(path, "no_denominator", f"{label} is a ratio with no denominator: {_ASK['denominator']}", "vague")
        else:
            denominator = _selector(c, m["denominator"], path + ("denominator",), denominator=True)
        if numerator and denominator:
            _ratio_coherent(c, path, numerator, denominator)
    elif statistic == "count":
        for k in given - {"count"}:
            c.add(path + (k,), "wrong_part", f"a count takes `count: {{events|outcomes}}`; {k} belongs to other "
                                             "statistics")
        if "count" not in m:
            c.add(path, "no_count", f"{label} is a count of nothing: say what is counted (count: {{events: "
                                    "[...]}} or {outcomes: [...]})")
        else:
            count = _selector(c, m["count"], path + ("count",), denominator=False)
    elif statistic is not None:  # mean, max, percentiles: of a value
        for k in given - {"value", "latency"}:
            c.add(path + (k,), "wrong_part", f"a {statistic} is taken of values (value or latency); {k} belongs to "
                                             "a ratio or a count")
        if ("value" in m) == ("latency" in m):
            if "value" in m:
                c.add(path, "value_and_latency", "name either a value field or a latency, not both")
            else:
                what = "which latency" if "latenc" in name.lower() or vague_name else "of which values"
                c.add(path, "vague_value", f"{label}: {statistic} {what}? name a start and an end event of an "
                                           "attempt (latency: {from, to}) or a numeric field (value: {event, field})",
                      "vague")
        elif "value" in m:
            value = _value(c, m["value"], path + ("value",))
        else:
            latency = _latency(c, m["latency"], path + ("latency",))

    window_s = None
    if "window" not in m:
        c.add(path, "no_window", f"{label} has no window: {_ASK['window']}", "vague")
    else:
        window_s = c.duration(m["window"], path + ("window",))

    segment = None
    if "segment" not in m:
        c.add(path, "no_segment", f"{label} has no segment: {_ASK['segment']}", "vague")
    else:
        segment = _segment(c, m["segment"], path + ("segment",))

    baseline = None
    if "baseline" not in m:
        moved = sorted(w for w in re.findall(r"[a-z]+", f"{name} {description}".lower()) if w in _MOVEMENT_WORDS)
        if moved:
            c.add(path, "improves_without_baseline", f"{label} says {moved[0]!r} but has no baseline: "
                                                     f"{moved[0]} compared with what?", "vague")
        else:
            c.add(path, "no_baseline", f"{label} has no baseline: {_ASK['baseline']}", "vague")
    else:
        baseline = _baseline(c, m["baseline"], path + ("baseline",), change)

    direction = None
    if "direction" not in m:
        c.add(path, "no_direction", f"{label} has no direction: is a higher value better or worse? "
                                    f"({' or '.join(DIRECTIONS)})", "vague")
    else:
        direction = c.choice(m["direction"], path + ("direction",), DIRECTIONS, "direction")

    threshold = None
    kind_of_value = _value_kind(statistic, value, latency, numerator)
    if "threshold" in m:
        threshold = _threshold(c, m["threshold"], path + ("threshold",), kind_of_value)
    elif role == "guardrail":
        c.add(path, "no_threshold", f"guardrail {label} has no threshold: how much worse is too much? "
                                    "({change|limit: NUMBER, unit: UNIT})", "vague")
    if baseline is not None and baseline.kind == "value" and baseline.unit is not None and kind_of_value:
        _unit_fits(c, path + ("baseline", "unit"), "limit", baseline.unit, kind_of_value)
    if baseline is not None and baseline.kind == "control" and segment and change.get("flag"):
        pinned = segment.get(f"flags.{change['flag']}")
        if pinned is not None:
            c.add(path + ("segment", f"flags.{change['flag']}"), "segment_excludes_control",
                  f"the segment keeps only {change['flag']}={brief(pinned)}, so the control arm "
                  f"({change.get('control')}) has no traffic in it: baseline `control` compares the arms by itself, "
                  "leave the flag out of the segment")
    if value is not None and value[1] in OPTIONAL_EVENT_FIELDS.get(value[0], ()):
        c.add(path + ("value", "field"), "optional_field",
              f"{value[1]} is on only some {value[0]} events (docs/events.md): the segment and the baseline must be "
              "traffic that has it", "note")
    return Metric(role, name, statistic, line, numerator, denominator, count, value, latency, window_s, segment,
                  baseline, direction, threshold, description, path)


def _ratio_coherent(c: _Checker, path: tuple, num: Selector, den: Selector) -> None:
    if num.outcomes and den.outcomes:
        extra = [o for o in num.outcomes if o not in den.outcomes]
        if extra:
            c.add(path + ("numerator",), "numerator_outside_denominator",
                  f"the numerator counts {extra[0]!r} attempts the denominator does not: the ratio could pass 100 %")
    elif (num.outcomes and den.events) or (num.events and den.outcomes):
        c.add(path + ("denominator",), "mixed_units", "numerator and denominator count different things (events "
                                                      "vs attempts by outcome): count both the same way")


def _value(c: _Checker, raw: Any, path: tuple) -> tuple[str, str] | None:
    m = c.mapping(raw, path, ("event", "field"))
    if m is None:
        return None
    if not c.required(m, ("event", "field"), path):
        return None
    event = c.event(m["event"], path + ("event",))
    if event is None:
        return None
    fields = event_fields(event)
    name = m["field"]
    if not isinstance(name, str):
        c.add(path + ("field",), "not_a_string", f"expected a field name, got {brief(name)}")
        return None
    if name not in fields:
        own = sorted(f for f in fields if f in numeric_fields())
        hint = _did_you_mean(str(name), own)
        c.add(path + ("field",), "field_not_on_event",
              f"{event} carries no field {brief(name)}{hint} (its numeric fields: {', '.join(own) or 'none'})")
        return None
    if name not in numeric_fields():
        c.add(path + ("field",), "not_numeric", f"{name} is not a number: a mean or percentile needs a numeric field")
        return None
    return event, name


def _latency(c: _Checker, raw: Any, path: tuple) -> tuple[str, str] | None:
    m = c.mapping(raw, path, ("from", "to"))
    if m is None:
        return None
    for key in ("from", "to"):
        if key not in m:
            c.add(path + (key,), "missing", f"required field is missing: the {'start' if key == 'from' else 'end'} "
                                            "event of the latency")
    if "from" not in m or "to" not in m:
        return None
    start = _attempt_event(c, m["from"], path + ("from",))
    end = _attempt_event(c, m["to"], path + ("to",))
    if start is None or end is None:
        return None
    if start == end:
        c.add(path + ("to",), "same_event", "a latency from an event to itself is zero")
        return None
    if LIFECYCLE_EVENTS.index(end) < LIFECYCLE_EVENTS.index(start):
        c.add(path + ("to",), "reversed", f"{end} comes before {start} in an attempt: from and to are swapped")
        return None
    return start, end


def _segment(c: _Checker, raw: Any, path: tuple) -> dict[str, Any] | None:
    if raw == "all":
        return {}
    allowed = COHORT_DIMENSIONS + ("service_version", "synthetic") + tuple(f"flags.{f}" for f in FLAGS)
    if not isinstance(raw, dict):
        c.add(path, "bad_segment", f"expected `all` or a mapping of cohort → value ({', '.join(allowed)}), "
                                   f"got {brief(raw)}")
        return None
    m = c.mapping(raw, path, allowed)
    out: dict[str, Any] = {}
    for key, value in (m or {}).items():
        if key not in allowed:
            continue
        values = value if isinstance(value, list) else [value]
        if key == "synthetic":
            if not isinstance(value, bool):
                c.add(path + (key,), "not_a_bool", f"expected true or false, got {brief(value)}")
                continue
        else:
            choices = (FLAGS[key[6:]] if key.startswith("flags.") else tuple(SERVICE_VERSIONS.values())
                       if key == "service_version" else SELECTOR_VALUES.get(key, ()))
            bad = [v for v in values if v not in choices]
            if bad or not values:
                c.add(path + (key,), "unknown_value", f"no traffic in the lab has {key} {brief(bad[0] if bad else value)}"
                                                      f" (its values: {', '.join(choices)})")
                continue
        out[key] = value
    return out


def _baseline(c: _Checker, raw: Any, path: tuple, change: dict[str, str]) -> Baseline | None:
    if raw == "control":
        if not change.get("control"):
            c.add(path, "no_control", "baseline `control` needs change.control (the arm to compare with)")
        return Baseline("control")
    if isinstance(raw, dict) and "before" in raw:
        m = c.mapping(raw, path, ("before",))
        seconds = c.duration(m["before"], path + ("before",)) if m and "before" in m else None
        return Baseline("before", before_s=seconds) if seconds is not None else None
    if isinstance(raw, dict) and "value" in raw:
        m = c.mapping(raw, path, ("value", "unit"))
        if m is None:
            return None
        if "value" not in m:
            c.add(path + ("value",), "missing", "required field is missing: the baseline's number")
            return None
        number = c.number(m["value"], path + ("value",))
        if "unit" not in m:
            c.add(path, "no_unit", "a baseline value needs a unit (e.g. %, ms)")
            return None
        unit = c.choice(m["unit"], path + ("unit",), UNITS, "unit")
        return Baseline("value", value=number, unit=unit) if number is not None and unit else None
    c.add(path, "bad_baseline", f"expected `control`, {{before: DURATION}} or {{value: NUMBER, unit: UNIT}}, "
                                f"got {brief(raw)}")
    return None


def _value_kind(statistic: str | None, value: tuple[str, str] | None, latency: tuple[str, str] | None,
                numerator: Selector | None) -> str | None:
    """What a metric's values are, for the units its threshold may take: share | rate | time | bytes | count."""
    if statistic == "ratio":
        return "share" if numerator is not None and numerator.outcomes else "rate"
    if statistic == "count":
        return "count"
    if latency is not None or (value is not None and value[1] in _TIME_FIELDS):
        return "time"
    if value is not None:
        return "bytes" if value[1] in _BYTE_FIELDS else "count"
    return None


# unit → kinds of values (and threshold kinds) it fits
_UNIT_FITS = {
    ("limit", "share"): ("%",), ("change", "share"): ("pp", "%"),
    ("limit", "rate"): ("%", "x"), ("change", "rate"): ("pp", "%", "x"),
    ("limit", "time"): ("ms", "s"), ("change", "time"): ("ms", "s", "%"),
    ("limit", "count"): ("count",), ("change", "count"): ("count", "%"),
    ("limit", "bytes"): ("bytes",), ("change", "bytes"): ("bytes", "%"),
}


def _unit_fits(c: _Checker, path: tuple, kind: str, unit: str, value_kind: str) -> bool:
    fits = _UNIT_FITS[(kind, value_kind)]
    if unit not in fits:
        noun = {"share": "a share of attempts", "rate": "a ratio of event counts", "time": "a latency",
                "count": "a count", "bytes": "a size"}[value_kind]
        c.add(path, "unit_mismatch", f"{noun} is not in {unit}: a {kind} on it takes {' or '.join(fits)}")
        return False
    return True


def _threshold(c: _Checker, raw: Any, path: tuple, value_kind: str | None) -> Threshold | None:
    if not isinstance(raw, dict):
        c.add(path, "bad_threshold", f"expected {{change: NUMBER, unit: UNIT}} or {{limit: NUMBER, unit: UNIT}}, "
                                     f"got {brief(raw)}")
        return None
    m = c.mapping(raw, path, ("change", "limit", "unit"))
    if m is None:
        return None
    kinds = [k for k in ("change", "limit") if k in m]
    if len(kinds) != 1:
        c.add(path, "bad_threshold", "give either change (how far the metric may move the bad way from its "
                                     "baseline) or limit (an absolute bound), one of the two")
        return None
    kind = kinds[0]
    number = c.number(m[kind], path + (kind,))
    if "unit" not in m:
        c.add(path, "no_unit", f"threshold {brief(m[kind])} has no unit: {', '.join(UNITS)} "
                               "(% of a change is relative to the baseline; pp is percentage points)")
        return None
    unit = c.choice(m["unit"], path + ("unit",), UNITS, "unit")
    if number is None or unit is None:
        return None
    if kind == "change" and number <= 0:
        c.add(path + (kind,), "bad_change", f"a change must be larger than zero, got {brief(m[kind])}")
        return None
    if kind == "limit" and unit == "%" and not 0 <= number <= 100:
        c.add(path + (kind,), "bad_limit", f"a share is between 0 and 100 %, got {brief(m[kind])}")
        return None
    if value_kind is not None and not _unit_fits(c, path + ("unit",), kind, unit, value_kind):
        return None
    return Threshold(kind, number, unit)


def _events(c: _Checker, raw: Any, metrics: list[Metric]) -> dict[str, tuple[str, ...]]:
    """The plan's declared events and fields; every event and field a metric reads must be declared."""
    declared: dict[str, tuple[str, ...]] = {}
    if raw is None:
        c.add(("events",), "missing_events", "no events: list the events (and their fields) the metrics need, "
                                             "[{event, fields}]")
        return declared
    if not isinstance(raw, list) or not raw:
        c.add(("events",), "not_a_list", f"expected a non-empty list of {{event, fields}}, got {brief(raw)}")
        return declared
    for i, item in enumerate(raw):
        path = ("events", i)
        m = c.mapping(item, path, ("event", "fields"))
        if m is None:
            continue
        if not c.required(m, ("event",), path):
            continue
        name = c.event(m["event"], path + ("event",))
        if name is None:
            continue
        fields: list[str] = []
        raw_fields = m.get("fields", [])
        if not isinstance(raw_fields, list):
            c.add(path + ("fields",), "not_a_list", f"expected a list of field names, got {brief(raw_fields)}")
            raw_fields = []
        for j, f in enumerate(raw_fields):
            if not isinstance(f, str):
                c.add(path + ("fields", j), "not_a_string", f"expected a field name, got {brief(f)}")
            elif f not in event_fields(name):
                own = sorted(event_fields(name) - event_fields("flag_changed")) or ["(the common fields only)"]
                c.add(path + ("fields", j), "field_not_on_event",
                      f"{name} carries no field {brief(f)}{_did_you_mean(str(f), sorted(event_fields(name)))} "
                      f"(its own fields: {', '.join(own)})")
            else:
                fields.append(f)
        if name in declared:
            c.add(path + ("event",), "repeated", f"{name} is listed twice")
        declared[name] = tuple(fields)
    for m in metrics:
        for event, used in sorted(m.uses().items()):
            mpath = m.path
            if event not in declared:
                c.add(mpath, "undeclared_event", f"{m.name!r} reads {event}, which `events` does not list")
                continue
            missing = sorted(f for f in used if f not in declared[event] and f not in event_fields("flag_changed"))
            if missing:
                c.add(mpath, "undeclared_field", f"{m.name!r} reads {event}.{missing[0]}, which `events` does not "
                                                 f"list under {event}")
    return declared


def _slo(c: _Checker, raw: Any, metrics: list[Metric]) -> None:
    if raw is None:
        c.add(("slo",), "missing_slo", "no SLO: which objective does the launch hold itself to? "
                                       "[{metric, objective: {value, unit: '%'}, period}]")
        return
    if not isinstance(raw, list) or not raw:
        c.add(("slo",), "not_a_list", f"expected a non-empty list of SLOs, got {brief(raw)}")
        return
    names = [m.name for m in metrics]
    for i, item in enumerate(raw):
        path = ("slo", i)
        m = c.mapping(item, path, ("metric", "objective", "period", "latency_threshold"))
        if m is None:
            continue
        c.required(m, ("metric", "objective", "period"), path)
        metric = None
        if "metric" in m:
            if m["metric"] in names:
                metric = next(x for x in metrics if x.name == m["metric"])
            else:
                c.add(path + ("metric",), "unknown_metric", f"no metric {brief(m['metric'])} in this plan"
                                                            f"{_did_you_mean(str(m['metric']), names)}")
        if "objective" in m:
            obj = m["objective"]
            if not isinstance(obj, dict) or set(obj) != {"value", "unit"}:
                c.add(path + ("objective",), "bad_objective", f"expected {{value: NUMBER, unit: '%'}}, got {brief(obj)}")
            else:
                v = c.number(obj["value"], path + ("objective", "value"))
                if obj["unit"] != "%":
                    c.add(path + ("objective", "unit"), "unit_mismatch", "an objective is a share of events: unit %")
                elif v is not None and not 0 < v < 100:
                    c.add(path + ("objective", "value"), "bad_objective", f"an objective is between 0 and 100 % "
                                                                          f"(exclusive), got {brief(obj['value'])}")
        if "period" in m:
            c.duration(m["period"], path + ("period",))
        if metric is not None and metric.statistic in PERCENTILES + ("mean", "max"):
            if "latency_threshold" not in m:
                c.add(path, "vague_latency_slo", f"an SLO on {metric.name!r} needs latency_threshold: the share of "
                                                 "what at or under how many ms?", "vague")
            else:
                _threshold_value(c, m["latency_threshold"], path + ("latency_threshold",))
        elif metric is not None and metric.statistic == "count":
            c.add(path + ("metric",), "slo_on_count", f"{metric.name!r} is a count: an SLO is a share of good events")


def _threshold_value(c: _Checker, raw: Any, path: tuple) -> None:
    if not isinstance(raw, dict) or set(raw) != {"value", "unit"}:
        c.add(path, "bad_threshold", f"expected {{value: NUMBER, unit: ms|s}}, got {brief(raw)}")
        return
    c.number(raw["value"], path + ("value",))
    c.choice(raw["unit"], path + ("unit",), ("ms", "s"), "latency unit")


def _alerts(c: _Checker, raw: Any, metrics: list[Metric]) -> None:
    if raw is None:
        c.add(("alerts",), "missing_alerts", "no alerts: what pages (or opens a ticket) during the launch, and when?")
        return
    if not isinstance(raw, list) or not raw:
        c.add(("alerts",), "not_a_list", f"expected a non-empty list of alerts, got {brief(raw)}")
        return
    names = [m.name for m in metrics]
    for i, item in enumerate(raw):
        path = ("alerts", i)
        m = c.mapping(item, path, ("name", "severity", "metric", "burn_rate", "threshold", "for"))
        if m is None:
            continue
        c.required(m, ("name", "severity", "metric"), path)
        if "severity" in m:
            c.choice(m["severity"], path + ("severity",), SEVERITIES, "severity")
        metric = None
        if "metric" in m:
            if m["metric"] in names:
                metric = next(x for x in metrics if x.name == m["metric"])
            else:
                c.add(path + ("metric",), "unknown_metric", f"no metric {brief(m['metric'])} in this plan"
                                                            f"{_did_you_mean(str(m['metric']), names)}")
        if ("burn_rate" in m) == ("threshold" in m):
            c.add(path, "alert_condition", "give either burn_rate ({factor, long, short} over an SLO's metric) or "
                                           "threshold ({limit, unit} held for `for`), one of the two")
            continue
        if "burn_rate" in m:
            b = c.mapping(m["burn_rate"], path + ("burn_rate",), ("factor", "long", "short"))
            if b is None:
                continue
            c.required(b, ("factor", "long", "short"), path + ("burn_rate",))
            if "factor" in b:
                f = c.number(b["factor"], path + ("burn_rate", "factor"))
                if f is not None and f <= 0:
                    c.add(path + ("burn_rate", "factor"), "bad_factor", "a burn-rate factor is larger than zero")
            long_s = c.duration(b["long"], path + ("burn_rate", "long")) if "long" in b else None
            short_s = c.duration(b["short"], path + ("burn_rate", "short")) if "short" in b else None
            if long_s is not None and short_s is not None and short_s >= long_s:
                c.add(path + ("burn_rate", "short"), "short_not_shorter", "the short window must be shorter than the "
                                                                          "long one")
            if metric is not None and metric.statistic != "ratio":
                c.add(path + ("metric",), "burn_rate_needs_ratio", f"a burn rate is an error ratio over the budget: "
                                                                    f"{metric.name!r} is not a ratio")
        else:
            if "for" not in m:
                c.add(path, "no_for", "a threshold alert needs `for`: how long must the condition hold before it "
                                      "fires?", "vague")
            else:
                c.duration(m["for"], path + ("for",))
            t = c.mapping(m["threshold"], path + ("threshold",), ("limit", "unit"))
            if t is not None:
                if "limit" not in t or "unit" not in t:
                    c.add(path + ("threshold",), "bad_threshold", "an alert threshold is {limit: NUMBER, unit: UNIT}")
                else:
                    _threshold(c, t, path + ("threshold",),
                               _value_kind(metric.statistic, metric.value, metric.latency, metric.numerator)
                               if metric else None)


def _rollout(c: _Checker, raw: Any, metrics: list[Metric]) -> tuple[tuple[Stage, ...], tuple[str, ...], int | None]:
    if raw is None:
        c.add(("rollout",), "missing_rollout", "no rollout: the stages (e.g. 1 → 5 → 25 → 100 %) and the rollback "
                                               "condition")
        return (), (), None
    m = c.mapping(raw, ("rollout",), ("stages", "rollback"))
    if m is None:
        return (), (), None
    stages: list[Stage] = []
    raw_stages = m.get("stages")
    if raw_stages is None:
        c.add(("rollout", "stages"), "no_stages", "no stages: [{percent, duration}], e.g. 1 → 5 → 25 → 100 %")
        raw_stages = []
    elif not isinstance(raw_stages, list):
        c.add(("rollout", "stages"), "not_a_list", f"expected a list of {{percent, duration}}, got "
                                                   f"{brief(raw_stages)}")
        raw_stages = []
    last = 0.0
    for i, item in enumerate(raw_stages):
        path = ("rollout", "stages", i)
        s = c.mapping(item, path, ("percent", "duration"))
        if s is None:
            continue
        if not c.required(s, ("percent",), path):
            continue
        pct = c.number(s["percent"], path + ("percent",))
        if pct is None:
            continue
        if not 0 < pct <= 100:
            c.add(path + ("percent",), "bad_percent", f"a stage exposes more than 0 and at most 100 % of users, got "
                                                      f"{brief(s['percent'])}")
            continue
        if pct <= last:
            c.add(path + ("percent",), "not_increasing", f"stages must grow: {pct:g} % after {last:g} %")
        duration = None
        if "duration" in s:
            duration = c.duration(s["duration"], path + ("duration",))
        elif pct < 100:
            c.add(path, "no_duration", f"the {pct:g} % stage has no duration: how long before the next call?",
                  "vague")
        stages.append(Stage(pct, duration))
        last = max(last, pct)
    if stages and stages[-1].percent != 100:
        c.add(("rollout", "stages", len(raw_stages) - 1), "never_full", "the last stage must reach 100 %")
    when: tuple[str, ...] = ()
    consecutive = None
    if "rollback" not in m:
        c.add(("rollout",), "no_rollback", "no rollback condition: which guardrail breach rolls the launch back?")
        return tuple(stages), when, consecutive
    r = c.mapping(m["rollback"], ("rollout", "rollback"), ("when", "consecutive_windows"))
    if r is None:
        return tuple(stages), when, consecutive
    guards = [x.name for x in metrics if x.role == "guardrail"]
    if "when" not in r:
        c.add(("rollout", "rollback", "when"), "missing", "required field is missing: the guardrails whose breach "
                                                           "rolls back (or `any guardrail`)")
    elif r["when"] == "any guardrail":
        when = tuple(guards)
    else:
        names = _name_list(c, r["when"], ("rollout", "rollback", "when"))
        for i, n in enumerate(names):
            metric = next((x for x in metrics if x.name == n), None)
            if metric is None:
                c.add(("rollout", "rollback", "when", i), "unknown_metric",
                      f"no metric {brief(n)} in this plan{_did_you_mean(str(n), [x.name for x in metrics])}")
            elif metric.threshold is None:
                c.add(("rollout", "rollback", "when", i), "no_threshold",
                      f"{n!r} has no threshold, so it can never be breached: give it one")
            else:
                when += (n,)
        unused = [g for g in guards if g not in when and g not in names and not g.startswith("(")]
        for g in unused:
            c.add(("rollout", "rollback", "when"), "guardrail_not_watched",
                  f"guardrail {g!r} rolls nothing back: add it to rollback.when or say why it is only watched", "note")
    if "consecutive_windows" in r:
        v = r["consecutive_windows"]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 100:
            c.add(("rollout", "rollback", "consecutive_windows"), "bad_count",
                  f"expected a whole number of windows from 1 to 100, got {brief(v)}")
        else:
            consecutive = v
    else:
        c.add(("rollout", "rollback"), "no_consecutive", "how many breached windows in a row roll back? "
                                                         "(consecutive_windows: one window alone is noisy)", "vague")
    return tuple(stages), when, consecutive


# --------------------------------------------------------------------------- the template


def _metric_skeleton(indent: str, *, threshold: bool) -> str:
    lines = [
        "name:          # what you call it",
        "statistic:     # " + " | ".join(STATISTICS),
        "# a ratio takes numerator and denominator ({events: [...]} or {outcomes: [...]}); a count takes",
        "# count; a mean, max or percentile takes value {event, field} or latency {from, to}",
        "window:        # over which span of time, e.g. 5m",
        "segment:       # which traffic: all, or {synthetic: false, region: ...}",
        "baseline:      # compared with what: control | {before: 1h} | {value: N, unit: U}",
        "direction:     # " + " | ".join(DIRECTIONS),
    ]
    if threshold:
        lines.append("threshold:     # how much worse is too much: {change: N, unit: U} or {limit: N, unit: U}")
    first, rest = indent, " " * len(indent)
    return "".join((first if i == 0 else rest) + line + "\n" for i, line in enumerate(lines))


def plan_template(launch: str, flag: str, variant: str, control: str, briefing: str = "") -> str:
    """A plan skeleton for a launch: every field to fill, prompts in comments, no answer filled in.

    Only what the brief itself states is written (which launch, which flag and arms); which metrics,
    events, thresholds and stages to choose is the learner's plan."""
    brief_lines = "".join(f"#   {line}\n" if line.strip() else "#\n" for line in briefing.strip().splitlines())
    return (
        f"# Measurement plan for the launch {launch}: write it before anything ships.\n"
        "# `obslab plan check THIS-FILE` checks every metric against the event contract and flags\n"
        "# vague definitions (docs/plans.md; editor schema: schemas/plan.schema.json).\n"
        + (f"#\n# The brief:\n{brief_lines}" if brief_lines else "")
        + f"version: {PLAN_VERSION}\n"
        f"launch: {launch}\n"
        f"change: {{flag: {flag}, variant: {variant}, control: {control}}}\n"
        "\n# The one number that says whether the launch worked.\n"
        "primary:\n" + _metric_skeleton("  ", threshold=False)
        + "\n# Mechanism metrics: how you will know *why* the primary moved.\n"
        "secondary:\n" + _metric_skeleton("  - ", threshold=False)
        + "\n# What must not get worse while the launch rolls out.\n"
        "guardrails:\n" + _metric_skeleton("  - ", threshold=True)
        + "\n# Every event (and field) the metrics read: [{event, fields: [...]}] (docs/events.md).\n"
        "events: []\n"
        "\n# [{metric, objective: {value, unit: '%'}, period}]; an SLO on a latency adds latency_threshold.\n"
        "slo: []\n"
        "\n# [{name, severity: page|ticket, metric, burn_rate: {factor, long, short}}]\n"
        "# or [{name, severity, metric, threshold: {limit, unit}, for}]\n"
        "alerts: []\n"
        "\nrollout:\n"
        "  stages: []      # [{percent, duration}], growing to 100\n"
        "  rollback:\n"
        "    when: []      # guardrail names, or `any guardrail`\n"
        "    consecutive_windows:\n"
    )
