"""Checking a learner's own impact story against what the engine measured for a drill run.

Pure: the story's markdown and the run's measured figures go in, findings come out.
``measured_figures`` turns a drill report (``report.json``, written by ``toolkit.drills.report``
from the measurement engine) into named figures; nothing here recomputes a rate, percentile or
budget. ``check_story`` then

- matches every number in the story to a measured figure (tolerance below) or flags it as wrong
  (saying what was measured instead: the check runs only on a finished drill) or unverifiable;
- flags every metric named in the prose without a complete definition (statistic, window,
  segment, denominator, baseline) in the story's metric-definitions block;
- flags a missing primary metric, guardrail, tradeoff, reflection or first-person action;
- scores the story on the rubric (``RUBRIC``, documented in docs/story-rubric.md).

Tolerance: a number matches a figure when it is within ``REL_TOLERANCE`` (2 %) of it, or within half
a unit of the number's last written digit ("78 %" stands for 77.5–78.5 %), or, when the story marks
it as approximate ("about", "~", "≈", "roughly", "nearly", "almost", "around"), within
``APPROX_TOLERANCE`` (10 %). Percentages compare with shares in percent, seconds with milliseconds
converted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import yaml

__all__ = [
    "SECTIONS", "DEFINITION_FIELDS", "RUBRIC", "REL_TOLERANCE", "APPROX_TOLERANCE", "StoryFormatError",
    "Measured", "NumberFinding", "MetricFinding", "Issue", "RubricLine", "StoryCheck",
    "measured_figures", "check_story", "story_template", "METRIC_VOCABULARY",
]

SECTIONS = ("Situation", "Task", "Action", "Result", "Tradeoff", "Reflection")
DEFINITION_FIELDS = ("statistic", "window", "segment", "denominator", "baseline")
ROLES = ("primary", "guardrail", "secondary")
REL_TOLERANCE = 0.02
APPROX_TOLERANCE = 0.10
_APPROX_WORDS = ("about", "around", "roughly", "nearly", "almost", "approximately", "~", "≈", "some")

# (criterion, points, what earns them): the rubric of docs/story-rubric.md, in this order.
RUBRIC: tuple[tuple[str, int, str], ...] = (
    ("sections", 10, "Situation, Task, Action and Result are written (2.5 points each)"),
    ("first_person_action", 10, "the Action says what I did, in the first person"),
    ("primary_metric", 15, "a primary metric is defined completely and quoted in the Result"),
    ("guardrail", 10, "a guardrail metric is defined completely and named in the story"),
    ("numbers", 25, "every number matches what the engine measured (wrong numbers count double, "
                    "unverifiable ones half)"),
    ("definitions", 10, "every metric the story names has a complete definition"),
    ("tradeoff", 10, "the Tradeoff says what was given up for what"),
    ("reflection", 10, "the Reflection says what I would do differently or learned"),
)

# Canonical metric → phrases that name it in prose (lower case, matched on word boundaries).
METRIC_VOCABULARY: dict[str, tuple[str, ...]] = {
    "publish success rate": ("success rate", "publish success", "success sli", "publish-success"),
    "failed publishes": ("failed publishes", "failed publish", "failed attempts", "failures"),
    "error budget": ("error budget", "budget"),
    "burn rate": ("burn rate", "burn-rate"),
    "p50 processing latency": ("p50", "median latency", "median processing"),
    "p95 processing latency": ("p95 processing", "p95 latency"),
    "p99 processing latency": ("p99", "tail latency"),
    "p95 e2e latency": ("p95 e2e", "e2e latency", "end-to-end latency"),
    "chunk retries": ("chunk retries", "retries", "retry rate"),
    "requests per publish": ("requests per publish",),
    "cancelled attempts": ("cancellations", "cancelled attempts", "cancel rate", "cancelled uploads"),
    "lost failure events": ("lost events", "lost failure", "missing events", "dropped events"),
    "queue depth": ("queue depth",),
    "feed latency": ("feed latency", "feed p95"),
    "memory growth": ("memory growth", "resident memory", "memory"),
}


class StoryFormatError(ValueError):
    """The story cannot be read (its definitions block is not valid YAML, ...): names the place."""


@dataclass(frozen=True)
class Measured:
    """One figure the engine measured for the run, as the story may quote it."""

    name: str
    value: float
    unit: str  # "%", "ms", "s", "×", "count", "MB"
    definition: str
    keywords: tuple[str, ...] = ()

    def shown(self) -> str:
        v = f"{self.value:,.0f}" if abs(self.value) >= 100 else f"{self.value:,.3g}"
        return {"%": f"{v} %", "ms": f"{v} ms", "s": f"{v} s", "×": f"{v}×", "MB": f"{v} MB"}.get(self.unit, v)


@dataclass(frozen=True)
class NumberFinding:
    section: str
    line: int  # 1-based line in the story
    text: str  # the number as written, with its unit
    value: float
    status: str  # matched | wrong | unverifiable
    figure: str | None = None  # the measured figure it was matched (or compared) with
    measured: str | None = None  # what the engine measured, for wrong numbers
    note: str = ""


@dataclass(frozen=True)
class MetricFinding:
    metric: str
    section: str
    line: int
    missing: tuple[str, ...]  # definition fields missing; every field when no definition at all
    defined: bool


@dataclass(frozen=True)
class Issue:
    code: str  # missing_primary, missing_guardrail, missing_tradeoff, missing_reflection, no_first_person, ...
    message: str


@dataclass(frozen=True)
class RubricLine:
    criterion: str
    points: float
    max_points: int
    note: str


@dataclass(frozen=True)
class StoryCheck:
    numbers: tuple[NumberFinding, ...]
    metrics: tuple[MetricFinding, ...]
    issues: tuple[Issue, ...]
    rubric: tuple[RubricLine, ...]
    definitions: tuple[Mapping[str, str], ...] = field(default_factory=tuple)

    @property
    def score(self) -> float:
        return round(sum(r.points for r in self.rubric), 1)

    @property
    def max_score(self) -> int:
        return sum(r.max_points for r in self.rubric)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"schema": "obslab.story-check/v1", "score": self.score, "max_score": self.max_score,
                "rubric": [asdict(r) for r in self.rubric], "numbers": [asdict(n) for n in self.numbers],
                "metrics": [asdict(m) for m in self.metrics], "issues": [asdict(i) for i in self.issues],
                "definitions": [dict(d) for d in self.definitions],
                "tolerance": {"relative": REL_TOLERANCE, "approximate": APPROX_TOLERANCE,
                              "rounding": "half a unit of the last written digit"}}


# --------------------------------------------------------------------------- measured figures


def measured_figures(report: Mapping[str, Any]) -> tuple[Measured, ...]:
    """The figures of a drill report (``obslab.drill-result/v1``) a story may quote, with the words that
    name them. Values are the report's, only scaled to the unit a story writes (shares as %)."""
    if report.get("schema") != "obslab.drill-result/v1":
        raise StoryFormatError(f"expected a drill report (obslab.drill-result/v1), got {report.get('schema')!r}")
    out: list[Measured] = []

    def add(name: str, value: Any, unit: str, definition: str, *keywords: str) -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        out.append(Measured(name, float(value), unit, definition, tuple(keywords)))

    speed = float(report.get("speed") or 1.0)
    inc = report.get("sli_fault_window") or {}
    fault = report.get("fault_window") or [0, 0]
    fault_s = fault[1] - fault[0]
    add("publish success during the fault", _pct(inc.get("rate")), "%", "publish-success SLI over the fault "
        "window (outcome times)", "success", "sli", "succeeded", "during")
    add("publish attempts counted during the fault", inc.get("total"), "count", "attempts in the "
        "publish-success SLI's total over the fault window", "attempts", "total", "publish")
    add("successful publishes during the fault", inc.get("good"), "count", "attempts counted good by the "
        "publish-success SLI over the fault window", "succeeded", "successful", "good")
    for q, v in (inc.get("processing_latency_ms") or {}).items():
        add(f"{q} processing latency during the fault", v, "ms", f"{q} (nearest-rank) of processing latency of "
            "publishes in the fault window", q, "latency", "processing")
    whole = report.get("sli_drill") or {}
    add("publish success over the whole drill", _pct(whole.get("rate")), "%", "publish-success SLI over the "
        "whole drill", "success", "sli", "whole", "drill")
    add("publish attempts over the whole drill", whole.get("total"), "count", "attempts in the SLI's total over "
        "the whole drill", "attempts", "whole", "drill")
    for q, v in (whole.get("processing_latency_ms") or {}).items():
        add(f"{q} processing latency over the whole drill", v, "ms", f"{q} of processing latency over the whole "
            "drill", q, "latency", "whole")
    units = {"attempts": "count", "events": "count", "failures": "count", "queued transcodes": "count",
             "% of budget": "%", "ms": "ms", "requests per publish": "×", "MB": "MB"}
    words = {"failed_publishes": ("failed", "failures", "bad"), "budget_spent_percent": ("budget", "spent"),
             "p99_processing_shift_ms": ("p99", "shift", "rose", "rise", "processing"),
             "p95_e2e_shift_ms": ("p95", "e2e", "end-to-end"), "chunk_retries": ("retries", "retry"),
             "requests_per_publish": ("requests", "per publish"), "cancelled_attempts": ("cancelled", "cancel"),
             "lost_failure_events": ("lost", "missing", "dropped"), "queue_depth_peak": ("queue", "depth"),
             "feed_p95_shift_ms": ("feed",), "memory_growth_mb": ("memory", "grew", "growth")}
    for name, f in (report.get("figures") or {}).items():
        add(name.replace("_", " "), f.get("value"), units.get(f.get("unit") or "", "count"), f.get("definition", ""),
            *words.get(name, ()))
    budget = report.get("budget") or {}
    add("error budget spent (whole drill)", _pct(budget.get("spent")), "%", budget.get("text", ""), "budget", "spent")
    add("error budget remaining (whole drill)", _pct(budget.get("remaining")), "%", budget.get("text", ""),
        "budget", "remaining", "left")
    for window, burn in (report.get("burn_rates") or {}).items():
        add(f"burn rate over {window} at the drill's end", burn, "×", "burn rate (lab profile)", "burn", window)
    for a in report.get("alerts") or ():
        add(f"page threshold ({a.get('long')}/{a.get('short')})", a.get("factor"), "×", "the alert's burn-rate "
            "threshold", "threshold", "page", "burn")
    add("fault window length", fault_s, "s", "wall-clock seconds the fault was in force", "fault", "incident",
        "window", "lasted")
    scenario = report.get("scenario") or {}
    # Scenario seconds exclude the pauses: the report's own figure, not the wall length × the speed.
    add("fault window length (scenario time)", scenario.get("fault_s", fault_s * speed), "s",
        "scenario seconds the fault was in force", "fault", "incident", "window", "lasted")
    add("speed", speed, "count", "the run's --speed (scenario seconds per wall second)", "speed", "faster")
    grade = report.get("grade") or {}
    for key, label in (("time_to_detect_s", "time to detect"), ("time_to_diagnose_s", "time to diagnose")):
        add(label, grade.get(key), "s", f"{label} from the fault's start (report)", *label.split()[2:], "after")
        scen = scenario.get(key)
        add(f"{label} (scenario time)", scen, "s", f"{label}, scenario seconds", *label.split()[2:], "after")
        wall = (scenario.get("wall") or {}).get(key)
        add(f"{label} (wall time)", wall, "s", f"{label}, wall seconds", *label.split()[2:], "after", "wall")
    add("score", grade.get("total"), "count", "the drill's grade", "score", "points", "grade")
    breakdown = report.get("cohort_breakdown") or {}
    for row in breakdown.get("rows") or ():
        dim, what = breakdown.get("dimension", ""), breakdown.get("what", "")
        add(f"{what} in {dim}={row['value']} during the fault", _pct(row.get("during")), "%", what, row["value"])
        add(f"{what} in {dim}={row['value']} before the fault", _pct(row.get("before")), "%", what, row["value"],
            "before", "baseline")
        add(f"attempts in {dim}={row['value']} during the fault", row.get("n_during"), "count", "attempts by "
            "outcome time", row["value"], "attempts")
        add(f"attempts in {dim}={row['value']} before the fault", row.get("n_before"), "count", "attempts by "
            "outcome time", row["value"], "before")
    return tuple(out)


def _pct(share: float | None) -> float | None:
    return None if share is None else 100.0 * share


# --------------------------------------------------------------------------- reading the story


@dataclass(frozen=True)
class _Story:
    sections: Mapping[str, tuple[int, str]]  # name → (first line, text without comments)
    definitions: tuple[Mapping[str, str], ...]
    definitions_line: int | None


_COMMENT = re.compile(r"<!--.*?-->", re.S)
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_YAML_BLOCK = re.compile(r"```ya?ml\s*\n(.*?)```", re.S)


def _blank_comments(text: str) -> str:
    """Comments (the template's prompts) replaced by spaces, keeping line numbers."""
    return _COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def _read_story(text: str) -> _Story:
    text = _blank_comments(text)
    definitions: list[Mapping[str, str]] = []
    def_line = None
    for m in _YAML_BLOCK.finditer(text):
        line = text[: m.start()].count("\n") + 2
        try:
            data = yaml.safe_load(m.group(1))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"line {line + mark.line}" if mark is not None else f"the block at line {line}"
            raise StoryFormatError(f"metric definitions, {where}: not valid YAML ({getattr(e, 'problem', e)})") \
                from None
        items = data.get("metrics") if isinstance(data, dict) else data
        if items is None:
            continue
        if not isinstance(items, list):
            raise StoryFormatError(f"metric definitions at line {line}: expected `metrics:` with a list of "
                                   "metrics, each with name, role and " + ", ".join(DEFINITION_FIELDS))
        def_line = line
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise StoryFormatError(f"metric definitions at line {line}: item {i + 1} is not a mapping")
            definitions.append({str(k).strip().lower(): "" if v is None else str(v).strip() for k, v in item.items()})
        text = text[: m.start()] + re.sub(r"[^\n]", " ", m.group(0)) + text[m.end():]
    sections: dict[str, tuple[int, list[str]]] = {}
    current = None
    for i, line in enumerate(text.splitlines(), start=1):
        h = _HEADING.match(line)
        if h:
            title = h.group(1).strip().rstrip(":").lower()
            current = next((s for s in SECTIONS if title.startswith(s.lower())), None)
            if current is not None and current not in sections:
                sections[current] = (i, [])
            continue
        if current is not None:
            sections[current][1].append(line)
    return _Story({k: (ln, "\n".join(body)) for k, (ln, body) in sections.items()}, tuple(definitions), def_line)


_NUMBER = re.compile(
    r"(?<![\w.\-/:])(?P<approx>[~≈]\s*)?(?P<sign>[-+−])?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?P<unit>\s*(?:%|pp\b|ms\b|milliseconds?\b|seconds?\b|secs?\b|s\b|minutes?\b|mins?\b|min\b|×|x\b|MB\b))?"
    r"(?![\w.\-:/]*\d)(?![A-Za-z])")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9][a-z0-9\-]*", text.lower())


def _numbers(section: str, start_line: int, body: str) -> Iterable[tuple[int, str, float, str, bool, str]]:
    """(line, text, value, unit, approximate, context) for each number a reader would check."""
    for offset, line in enumerate(body.splitlines(), start=1):
        if re.match(r"^\s*(?:\d+\.|[-*])\s", line):
            line = re.sub(r"^\s*\d+\.\s", lambda m: " " * len(m.group(0)), line)  # a list's own numbering
        for m in _NUMBER.finditer(line):
            raw = m.group("num").replace(",", "")
            value = float(raw)
            if m.group("sign") in ("-", "−"):
                value = -value
            unit = (m.group("unit") or "").strip()
            norm = {"pp": "pp", "%": "%", "×": "×", "x": "×", "MB": "MB"}.get(unit)
            if norm is None and unit:
                norm = "ms" if unit.startswith("m") and unit.startswith(("ms", "milli")) else \
                    "min" if unit.startswith("min") else "s"
            before = line[max(0, m.start() - 60): m.start()].lower()
            approx = bool(m.group("approx")) or any(re.search(rf"(?:^|\W){re.escape(w)}\s*$", before)
                                                    for w in _APPROX_WORDS)
            # The words that say what a number is are in its own sentence (or clause), not the next one.
            left = max((b.end() for b in re.finditer(r"[.;!?](?:\s|$)", line[: m.start()])), default=0)
            right = re.search(r"[.;!?](?:\s|$)", line[m.end():])
            context = line[max(left, m.start() - 60): m.end() + (right.start() if right else 60)][: 200]
            yield start_line + offset, m.group(0).strip(), value, norm or "", approx, context


def _decimals(text: str) -> int:
    num = re.search(r"\d[\d,]*(?:\.(\d+))?", text)
    return len(num.group(1)) if num and num.group(1) else 0


def _within(value: float, text: str, approx: bool, measured: float) -> bool:
    tol = max(REL_TOLERANCE * abs(measured), 0.5 * 10 ** -_decimals(text) + 1e-9)
    if approx:
        tol = max(tol, APPROX_TOLERANCE * abs(measured))
    return abs(value - measured) <= tol


def _candidates(unit: str, figures: Sequence[Measured]) -> list[tuple[Measured, float]]:
    """Figures a number in ``unit`` could be, with the factor that converts the figure to that unit."""
    out = []
    for f in figures:
        if unit in ("%", "pp") and f.unit == "%":
            out.append((f, 1.0))
        elif unit == "ms" and f.unit == "ms":
            out.append((f, 1.0))
        elif unit == "s" and f.unit in ("s", "ms"):
            out.append((f, 1.0 if f.unit == "s" else 0.001))
        elif unit == "min" and f.unit in ("s", "ms"):
            out.append((f, 1 / 60 if f.unit == "s" else 1 / 60000))
        elif unit == "×" and f.unit == "×":
            out.append((f, 1.0))
        elif unit == "MB" and f.unit == "MB":
            out.append((f, 1.0))
        elif unit == "" and f.unit in ("count", "×", "MB"):
            out.append((f, 1.0))
    return out


def _relevance(f: Measured, context: str) -> int:
    words = set(_words(context))
    text = context.lower()
    return sum(1 for k in f.keywords if (k in words if " " not in k and "-" not in k else k in text))


def _check_number(section: str, line: int, text: str, value: float, unit: str, approx: bool, context: str,
                  figures: Sequence[Measured]) -> NumberFinding:
    cands = _candidates(unit, figures)
    if not cands:
        return NumberFinding(section, line, text, value, "unverifiable",
                             note=f"no measured figure is in {unit or 'plain numbers'}" if unit else
                             "no measured figure to compare it with")
    scored = sorted(cands, key=lambda c: -_relevance(c[0], context))
    best = _relevance(scored[0][0], context)
    named = [c for c in scored if _relevance(c[0], context) == best and best > 0]
    for f, factor in named + [c for c in scored if c not in named]:
        # "fell by 279 ms" quotes a -279 ms shift: an unsigned number compares with the magnitude.
        measured = f.value * factor if value < 0 else abs(f.value * factor)
        # A number whose words name no figure matches by value alone: "about" does not widen that.
        if _within(value, text, approx and (f, factor) in named, measured):
            return NumberFinding(section, line, text, value, "matched", f.name, f.shown())
    if named:
        f, factor = named[0]
        return NumberFinding(section, line, text, value, "wrong", f.name, f.shown(),
                             note=f"the engine measured {f.shown()} for {f.name}"
                             + (f" ({f.definition})" if f.definition else ""))
    return NumberFinding(section, line, text, value, "unverifiable",
                         note="matches no measured figure and its words name none; define it or drop it")


# --------------------------------------------------------------------------- metrics named


def _canonical(name: str) -> str | None:
    low = name.lower()
    for canon, phrases in METRIC_VOCABULARY.items():
        if canon in low:
            return canon
    for canon, phrases in METRIC_VOCABULARY.items():
        if any(re.search(rf"(?<![\w-]){re.escape(p)}(?![\w-])", low) for p in phrases):
            return canon
    return None


def _mentions(section: str, start_line: int, body: str) -> Iterable[tuple[str, int]]:
    seen: set[str] = set()
    for offset, line in enumerate(body.splitlines(), start=1):
        low = line.lower()
        for canon, phrases in METRIC_VOCABULARY.items():
            if canon in seen:
                continue
            if any(re.search(rf"(?<![\w-]){re.escape(p)}(?![\w-])", low) for p in (canon,) + phrases):
                # "p99 processing latency" also contains "p99": name the most specific metric once.
                seen.add(canon)
                yield canon, start_line + offset


# --------------------------------------------------------------------------- the check


def _written(body: str | None, min_words: int = 3) -> bool:
    return body is not None and len(_words(body)) >= min_words


def check_story(text: str, figures: Sequence[Measured]) -> StoryCheck:
    """Every finding about ``text`` (the learner's markdown) against the run's measured ``figures``."""
    story = _read_story(text)
    issues: list[Issue] = []
    numbers: list[NumberFinding] = []
    for name in SECTIONS:
        if name not in story.sections:
            issues.append(Issue(f"missing_{name.lower()}", f"no “## {name}” section"))
        elif not _written(story.sections[name][1]):
            issues.append(Issue(f"empty_{name.lower()}", f"the {name} section is empty (only the template's "
                                                         "prompt)"))
    for name, (start, body) in story.sections.items():
        for line, raw, value, unit, approx, context in _numbers(name, start, body):
            numbers.append(_check_number(name, line, raw, value, unit, approx, context, figures))
    defs: dict[str, Mapping[str, str]] = {}
    for d in story.definitions:
        key = _canonical(d.get("name", "")) or d.get("name", "").lower()
        if key:
            defs[key] = d
    for d in story.definitions:
        for line, raw, value, unit, approx, context in _numbers("Metric definitions", story.definitions_line or 0,
                                                                " ".join(d.get(k, "") for k in DEFINITION_FIELDS)):
            numbers.append(_check_number("Metric definitions", story.definitions_line or 0, raw, value, unit,
                                         approx, context, figures))
    metrics: list[MetricFinding] = []
    named_where: dict[str, str] = {}
    for name, (start, body) in story.sections.items():
        for canon, line in _mentions(name, start, body):
            named_where.setdefault(canon, name)
            if any(m.metric == canon for m in metrics):
                continue
            d = defs.get(canon)
            missing = tuple(DEFINITION_FIELDS) if d is None else tuple(k for k in DEFINITION_FIELDS if not d.get(k))
            metrics.append(MetricFinding(canon, name, line, missing, d is not None))
    for d in story.definitions:
        key = _canonical(d.get("name", "")) or d.get("name", "").lower()
        if key and key not in named_where:
            missing = tuple(k for k in DEFINITION_FIELDS if not d.get(k))
            if missing:
                metrics.append(MetricFinding(key, "Metric definitions", story.definitions_line or 0, missing, True))
    complete = {k for k, d in defs.items() if all(d.get(f) for f in DEFINITION_FIELDS)}

    def role_metrics(role: str) -> list[str]:
        return [(_canonical(d.get("name", "")) or d.get("name", "").lower()) for d in story.definitions
                if d.get("role", "").lower() == role and d.get("name")]

    primaries, guards = role_metrics("primary"), role_metrics("guardrail")
    result_body = story.sections.get("Result", (0, ""))[1]
    result_named = {c for c, _ in _mentions("Result", 0, result_body)}
    primary_points, primary_note = 0.0, "no metric has role: primary in the definitions block"
    if not primaries:
        issues.append(Issue("missing_primary", "no primary metric: give one metric `role: primary` in the "
                                               "definitions block and quote it in the Result"))
    else:
        p = primaries[0]
        if p not in complete:
            primary_points, primary_note = 7.5, f"primary metric {p!r} lacks part of its definition"
            issues.append(Issue("incomplete_primary", primary_note))
        elif p not in result_named and p not in result_body.lower():
            primary_points, primary_note = 7.5, f"primary metric {p!r} is defined but the Result does not quote it"
            issues.append(Issue("primary_not_in_result", primary_note))
        else:
            primary_points, primary_note = 15.0, f"primary metric {p!r}, defined and quoted"
    guard_points, guard_note = 0.0, "no metric has role: guardrail"
    if not guards:
        issues.append(Issue("missing_guardrail", "no guardrail: name a metric that must not get worse (role: "
                                                 "guardrail) and say whether it held"))
    else:
        g = guards[0]
        if g not in complete:
            guard_points, guard_note = 5.0, f"guardrail {g!r} lacks part of its definition"
            issues.append(Issue("incomplete_guardrail", guard_note))
        else:
            guard_points, guard_note = 10.0, f"guardrail {g!r}, defined"
    tradeoff = story.sections.get("Tradeoff", (0, None))[1]
    if not _written(tradeoff, 6):
        issues.append(Issue("missing_tradeoff", "no tradeoff: say what the decision gave up for what it gained"))
    reflection = story.sections.get("Reflection", (0, None))[1]
    if not _written(reflection, 6):
        issues.append(Issue("missing_reflection", "no reflection: say what you would do differently next time, or "
                                                  "what you learned"))
    action = story.sections.get("Action", (0, None))[1]
    first_person = action is not None and re.search(r"\b(I|I'm|I've|I'd|my|me)\b", action) is not None
    if _written(action) and not first_person:
        issues.append(Issue("no_first_person", "the Action does not say what *I* did: write it in the first "
                                               "person (“I compared…”), not “we” or the passive"))
    for n in numbers:
        if n.status == "wrong":
            issues.append(Issue("wrong_number", f"line {n.line}: {n.text} — {n.note}"))
    for m in metrics:
        if m.missing:
            what = "has no definition" if not m.defined else "lacks " + ", ".join(m.missing)
            issues.append(Issue("undefined_metric", f"line {m.line}: {m.metric} {what}"))

    written = sum(1 for s in ("Situation", "Task", "Action", "Result") if _written(story.sections.get(s, (0, None))[1]))
    matched = sum(1 for n in numbers if n.status == "matched")
    wrong = sum(1 for n in numbers if n.status == "wrong")
    unverifiable = sum(1 for n in numbers if n.status == "unverifiable")
    weight = matched + 2 * wrong + 0.5 * unverifiable
    number_points = 25.0 * matched / weight if weight else 0.0
    named = [m for m in metrics if m.section != "Metric definitions"]
    defined_points = 10.0 * sum(1 for m in named if not m.missing) / len(named) if named else 0.0
    rubric = (
        RubricLine("sections", 2.5 * written, 10, f"{written} of Situation, Task, Action, Result written"),
        RubricLine("first_person_action", 10.0 if first_person else 0.0, 10,
                   "first person" if first_person else "no first-person action"),
        RubricLine("primary_metric", primary_points, 15, primary_note),
        RubricLine("guardrail", guard_points, 10, guard_note),
        RubricLine("numbers", round(number_points, 1), 25, f"{matched} matched, {wrong} wrong, "
                                                           f"{unverifiable} unverifiable" if numbers else
                   "no numbers: an impact story quotes what was measured"),
        RubricLine("definitions", round(defined_points, 1), 10, f"{sum(1 for m in named if not m.missing)} of "
                                                                f"{len(named)} metrics named are defined"),
        RubricLine("tradeoff", 10.0 if _written(tradeoff, 6) else 0.0, 10,
                   "written" if _written(tradeoff, 6) else "missing"),
        RubricLine("reflection", 10.0 if _written(reflection, 6) else 0.0, 10,
                   "written" if _written(reflection, 6) else "missing"),
    )
    return StoryCheck(tuple(numbers), tuple(metrics), tuple(issues), rubric, story.definitions)


# --------------------------------------------------------------------------- the template


def story_template(title: str, run_id: str, impact_prompt: str) -> str:
    """A skeleton for the learner's own story: prompts only, never a measured figure."""
    block = "\n".join(["metrics:"] + [
        f"  - name:            # {hint}\n    role: {role}\n" + "".join(f"    {k}:\n" for k in DEFINITION_FIELDS)
        for role, hint in (("primary", "the metric your Result is about"),
                           ("guardrail", "a metric that must not get worse"))])
    prompts = {
        "Situation": "What was happening, to whom, and how did you find out? (first person)",
        "Task": "What did you have to find out or decide?",
        "Action": "What did *you* do, step by step, and why? Write “I …”.",
        "Result": "What changed, in numbers the drill measured. Name each metric and define it below.",
        "Tradeoff": "What did your decision (or the fix) give up for what it gained?",
        "Reflection": "What would you do differently next time? What did you learn?",
    }
    lines = [f"# My impact story: {title}", "",
             f"<!-- Drill run {run_id}. Write in your own words. The impact question was: {impact_prompt}",
             "     `obslab story check THIS-FILE --run " + run_id + "` checks every number against what the drill",
             "     measured and every metric against its definition (docs/story-rubric.md). -->", ""]
    for name in SECTIONS:
        lines += [f"## {name}", "", f"<!-- {prompts[name]} -->", ""]
    lines += ["## Metric definitions", "",
              "<!-- One entry per metric you quote: statistic (e.g. p99, a ratio), window (which time span),",
              "     segment (which traffic), denominator (out of what), baseline (compared with what). -->", "",
              "```yaml", block.rstrip(), "```", ""]
    return "\n".join(lines)


def render_feedback(result: StoryCheck) -> str:
    """The check's findings as text a learner reads top-down."""
    lines = [f"Story score: {result.score:g} / {result.max_score} (rubric: docs/story-rubric.md)", ""]
    for r in result.rubric:
        lines.append(f"  {r.criterion:20} {r.points:5.1f} / {r.max_points:<3} {r.note}")
    lines += ["", f"Numbers ({len(result.numbers)}; tolerance: {REL_TOLERANCE:.0%} relative, or half a unit of the "
                  f"last written digit; {APPROX_TOLERANCE:.0%} when marked approximate):"]
    for n in result.numbers:
        mark = {"matched": "ok   ", "wrong": "WRONG", "unverifiable": "?    "}[n.status]
        what = (f"= {n.figure} ({n.measured})" if n.status == "matched" else
                n.note if n.status == "wrong" else n.note)
        lines.append(f"  {mark} line {n.line:>3} [{n.section}] {n.text}: {what}")
    if not result.numbers:
        lines.append("  none: quote what the drill measured")
    lines += ["", "Metrics named:"]
    for m in result.metrics:
        state = "defined" if not m.missing else ("no definition" if not m.defined else "missing " + ", ".join(m.missing))
        lines.append(f"  {'ok ' if not m.missing else 'FIX'} line {m.line:>3} {m.metric}: {state}")
    if not result.metrics:
        lines.append("  none")
    problems = [i for i in result.issues if i.code not in ("wrong_number", "undefined_metric")]
    if problems:
        lines += ["", "To fix:"] + [f"  - {i.message}" for i in problems]
    return "\n".join(lines) + "\n"
