"""A drill spec (one YAML file) → validated frozen dataclasses.

Errors name the file and the field path, e.g.
``catalogue/retry-storm.yaml: fault.when.window[1]: must be after window[0] (2m), got '1m'``,
so an author fixes a drill without reading this module.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any


from contract import faults as service_faults
from contract.brief import brief
from contract.events import APP_VERSIONS, COHORT_DIMENSIONS, FLAGS, NETWORK_TYPES
from toolkit.drills.causes import CAUSES
from toolkit.drills.mitigation import Mitigations, parse_mitigations
from toolkit.drills.verdicts import EVIDENCE, VERDICTS
from contract.durations import DurationError, format_duration, parse_duration
from toolkit.slo.yaml_file import load_yaml_file

__all__ = [
    "DrillSpecError",
    "Drill",
    "Setup",
    "LoadSetup",
    "Fault",
    "BackgroundFault",
    "Truth",
    "Questions",
    "ImpactQuestion",
    "Debrief",
    "Experiment",
    "ExperimentTruth",
    "ExperimentQuestions",
    "RolloutSpec",
    "RolloutRegression",
    "RolloutTruth",
    "RolloutQuestions",
    "KINDS",
    "EXPERIMENT_METRICS",
    "DIFFICULTIES",
    "FAULT_KINDS",
    "FAULT_TARGETS",
    "SELECTOR_VALUES",
    "ANSWER_DIMENSIONS",
    "ANSWER_VALUES",
    "API_ROUTES",
    "IMPACT_METRICS",
    "LOAD_SHAPES",
    "RETRY_POLICIES",
    "load_drill",
    "parse_drill",
    "load_catalogue",
    "catalogue_dir",
    "find_drill",
]

DIFFICULTIES = ("beginner", "intermediate", "advanced")
# incident: "what broke?" (cause, cohort, impact); experiment: "did the change cause the movement, and can
# the comparison be trusted?" (a verdict and the evidence it rests on); rollout: "continue, hold or roll back?" at
# each stage of a flag's rollout (``toolkit.drills.rollout_drill``).
KINDS = ("incident", "experiment", "rollout")
# The judge metrics a rollout drill's regression may show in (toolkit.analysis.judge.DEFAULT_METRICS).
ROLLOUT_GUARDRAILS = ("publish_success_rate", "processing_latency_p95", "processing_latency_p99",
                      "processing_latency_shift", "e2e_latency_p95", "timeout_share", "chunk_retry_share")
# The figure an experiment's movement is about (the briefing names it); ``toolkit.drills.experiment`` measures it.
EXPERIMENT_METRICS = ("success_rate", "e2e_latency_mean", "processing_latency_mean")
# The fault vocabulary is the control plane's contract (contract/faults.py), so a drill can
# name only faults the control API accepts. kind → parameters it takes, name → (minimum, maximum).
FAULT_KINDS: dict[str, dict[str, tuple[float, float]]] = {
    kind: {name: (lo, hi) for name, (_default, lo, hi) in params.items()}
    for kind, params in service_faults.PARAMS.items()
}
FAULT_TARGETS = service_faults.TARGETS
# Which targets a kind makes sense on: a fault the service cannot apply is an authoring error.
_KIND_TARGETS = service_faults.KIND_TARGETS
# Cohort dimensions and flag variants a selector (or an answer) can name.
SELECTOR_VALUES: dict[str, tuple[str, ...]] = dict(service_faults.SELECTOR_VALUES)
# What an answer's cohort may name: the cohort dimensions and every flag.
ANSWER_VALUES: dict[str, tuple[str, ...]] = {**SELECTOR_VALUES, **FLAGS}
ANSWER_DIMENSIONS = COHORT_DIMENSIONS + tuple(FLAGS)
# What a learner estimates; ``toolkit.drills.measure`` defines and measures each one.
IMPACT_METRICS = (
    "failed_publishes",
    "budget_spent_percent",
    "p99_processing_shift_ms",
    "p95_e2e_shift_ms",
    "chunk_retries",
    "requests_per_publish",
    "cancelled_attempts",
    "lost_failure_events",
    "queue_depth_peak",
    "feed_p95_shift_ms",
    "memory_growth_mb",
)
LOAD_SHAPES = ("steady", "phased", "spike")
RETRY_POLICIES = ("backoff", "immediate")
API_ROUTES = service_faults.API_ROUTES
# Share of the drill before the earliest fault start: the baseline the analysis compares against.
BASELINE_SHARE = 0.25
_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class DrillSpecError(ValueError):
    """A drill file is invalid; the message names the file and the field path."""


@dataclass(frozen=True)
class LoadSetup:
    shape: str
    users: int
    retry_policy: str
    max_attempts: int
    # Client behaviours the load generator emulates (e.g. an app version that auto-cancels).
    client: dict[str, Any] = field(default_factory=dict)
    # Cohort mix override (dimension → value → weight), so a small cohort has enough traffic to see.
    mix: dict[str, dict[str, float]] = field(default_factory=dict)
    think_time: str | None = None  # "MIN-MAX" pause between a creator's flows
    viewer_weight: int | None = None  # viewers per 4 creators (feed traffic)
    # Release variant → mix override for that variant's creators (an uneven rollout, OBSLAB_LOAD_MIX_BY_RELEASE).
    mix_by_release: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    cancel_rate: float | None = None  # share of publishes a creator cancels part-way (OBSLAB_LOAD_CANCEL_RATE)


@dataclass(frozen=True)
class Setup:
    duration_s: float
    load: LoadSetup
    # flag name → (variant, percent of users)
    flags: dict[str, tuple[str, float]] = field(default_factory=dict)
    # Faults in force for the whole drill (e.g. a steady error rate an instrumentation bug then hides).
    background_faults: tuple["BackgroundFault", ...] = ()
    # flag name → drill seconds at which it is set (a change shipped mid-drill); a flag not named here is set
    # at the start.
    flag_at: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BackgroundFault:
    kind: str
    target: str
    selector: dict[str, Any]
    params: dict[str, Any]
    route: str | None = None


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str
    selector: dict[str, Any]
    params: dict[str, Any]
    window_s: tuple[float, float]  # the fault starts at a seeded random time inside this window
    duration_s: float
    route: str | None = None  # api target: restrict to one route group (uploads, chunks, complete, feed)

    def start_at(self, rng_value: float) -> float:
        """Start offset (drill seconds) for a uniform draw in [0, 1)."""
        lo, hi = self.window_s
        return lo + (hi - lo) * rng_value


@dataclass(frozen=True)
class Truth:
    cause: str
    cohort: dict[str, str]  # empty: everyone
    metric: str
    direction: str  # "up" | "down"


@dataclass(frozen=True)
class ImpactQuestion:
    metric: str
    prompt: str
    tolerance: float  # relative error that still earns full credit


@dataclass(frozen=True)
class Questions:
    cause_choices: tuple[str, ...]  # as the catalogue lists them: never shown in this order
    cause_partial: dict[str, float]  # a near-miss cause → share of the cause points
    cohort_dimensions: tuple[str, ...]
    impact: ImpactQuestion

    def shuffled(self, seed: int | str) -> "Questions":
        """The choices and dimensions in the order a run shows them: shuffled by the run's seed, so a
        catalogue's order (the true cause is often written first) tells the learner nothing, and one run
        always shows one order."""
        rng = random.Random(f"obslab-drill-choices:{seed}")
        causes, dims = sorted(self.cause_choices), sorted(self.cohort_dimensions)
        rng.shuffle(causes)
        rng.shuffle(dims)
        return Questions(tuple(causes), self.cause_partial, tuple(dims), self.impact)


@dataclass(frozen=True)
class ExperimentTruth:
    verdict: str  # one of the verdict choices
    evidence: str  # one of the evidence choices


@dataclass(frozen=True)
class ExperimentQuestions:
    verdict_choices: tuple[str, ...]  # as the catalogue lists them: never shown in this order
    verdict_partial: dict[str, float]  # a near-miss verdict → share of the verdict points
    evidence_choices: tuple[str, ...]
    prompt: str

    def shuffled(self, seed: int | str) -> "ExperimentQuestions":
        """The choices in the order a run shows them (see ``Questions.shuffled``)."""
        rng = random.Random(f"obslab-drill-choices:{seed}")
        verdicts, evidence = sorted(self.verdict_choices), sorted(self.evidence_choices)
        rng.shuffle(verdicts)
        rng.shuffle(evidence)
        return ExperimentQuestions(tuple(verdicts), self.verdict_partial, tuple(evidence), self.prompt)


@dataclass(frozen=True)
class Experiment:
    """The comparison an experiment drill is about: two arms (cohort selectors) and the metric that moved."""

    control: dict[str, str]
    treatment: dict[str, str]
    metric: str
    # How many equal windows the team's dashboard compares the arms over, one look each (an experiment
    # someone watches, ``toolkit.drills.experiment.peeking_check``); None: the comparison is read once.
    looks: int | None = None


@dataclass(frozen=True)
class RolloutSpec:
    """How a rollout drill moves its flag: the stages, the data each stage collects before its call is due, how long
    the call may take, how many times a stage may be held (each hold: one more window at the same percent)."""

    flag: str
    variant: str
    control: str
    stages: tuple[float, ...]  # percent of users, strictly increasing, the last 100
    window_s: float  # scenario seconds of data before a call is due
    decide_within_s: float  # scenario seconds the call may take once due
    max_holds: int  # holds a stage may take

    def bound_s(self) -> float:
        """The longest the rollout can run (scenario seconds): every stage held as often as it may, every call
        taken at its deadline, the last stage's window."""
        below = [p for p in self.stages if p < 100]
        return len(below) * (1 + self.max_holds) * (self.window_s + self.decide_within_s) + self.window_s


@dataclass(frozen=True)
class RolloutRegression:
    """What the change really does wrong (hidden): a fault on the variant's users, in force from the first stage
    at ``from_percent`` or more; ``shows_in`` is the judge metric it moves, within ``cohort`` (empty: everyone)."""

    fault: BackgroundFault
    from_percent: float
    shows_in: str
    cohort: dict[str, str]


@dataclass(frozen=True)
class RolloutTruth:
    regression: RolloutRegression | None  # None: a good change


@dataclass(frozen=True)
class RolloutQuestions:
    """A rollout drill asks one question at each stage: continue, hold or roll back."""

    prompt: str

    def shuffled(self, seed: int | str) -> "RolloutQuestions":  # noqa: ARG002 - nothing to shuffle
        return self


@dataclass(frozen=True)
class Debrief:
    what_happened: str
    evidence_path: tuple[str, ...]
    good_looks_like: str


@dataclass(frozen=True)
class Drill:
    id: str
    title: str
    difficulty: str
    briefing: str
    setup: Setup
    fault: Fault | None  # None for a rollout drill, and an experiment drill whose scenario is all in its setup
    truth: Truth | ExperimentTruth | RolloutTruth  # by kind
    questions: Questions | ExperimentQuestions | RolloutQuestions
    hints: tuple[str, ...]
    debrief: Debrief
    source: str = ""
    kind: str = "incident"
    experiment: Experiment | None = None
    rollout: RolloutSpec | None = None
    mitigations: Mitigations | None = None  # incident drills that offer a mitigation step (toolkit.drills.mitigation)


class _Checker:
    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, what: str) -> DrillSpecError:
        # A path built from the author's keys may hold a newline or a control character: escape it.
        if len(where) > 200:  # a huge key: its start names it well enough
            where = where[:197] + "..."
        where = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in where)
        return DrillSpecError(f"{self.source}: {where}: {what}")

    def mapping(self, value: Any, where: str, *, allow_empty: bool = True) -> dict:
        if value is None and allow_empty:
            return {}
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {type(value).__name__}")
        return value

    def fields(self, m: dict, where: str, required: set[str], optional: set[str] = frozenset()) -> None:
        allowed = set(required) | set(optional)
        extra = sorted(set(map(str, m)) - allowed)
        if extra:
            raise self.fail(_join(where, extra[0]), f"unknown field (allowed: {', '.join(sorted(allowed))})")
        for key in sorted(required):
            if key not in m:
                raise self.fail(_join(where, key), "required field is missing")

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"expected a non-empty string, got {brief(value)}")
        return value.strip()

    def number(self, value: Any, where: str, lo: float, hi: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(where, f"expected a number, got {brief(value)}")
        if not lo <= value <= hi:
            raise self.fail(where, f"must be in [{lo:g}, {hi:g}], got {brief(value)}")
        return float(value)

    def integer(self, value: Any, where: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"expected an integer, got {brief(value)}")
        if not lo <= value <= hi:
            raise self.fail(where, f"must be in [{lo}, {hi}], got {brief(value)}")
        return value

    def duration(self, value: Any, where: str, *, allow_zero: bool = False) -> float:
        try:
            seconds = parse_duration(value)
        except DurationError as e:
            raise self.fail(where, str(e)) from None
        if seconds <= 0 and not allow_zero:
            raise self.fail(where, f"must be longer than zero, got {brief(value)}")
        return seconds

    def choice(self, value: Any, where: str, choices: tuple[str, ...] | list[str]) -> str:
        if value not in choices:
            raise self.fail(where, f"expected one of {', '.join(choices)}, got {brief(value)}")
        return value

    def string_list(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(where, f"expected a non-empty list, got {brief(value)}")
        return tuple(self.string(v, f"{where}[{i}]") for i, v in enumerate(value))


def _join(where: str, key: str) -> str:
    # Quote a key that would not read as a field name (empty, spaces, newlines).
    key = key if str(key).isidentifier() else brief(key)
    return f"{where}.{key}" if where else key


def parse_drill(data: Any, source: str = "drill.yaml") -> Drill:
    """Validate a parsed drill document; raise DrillSpecError naming the first bad field."""
    c = _Checker(source)
    top = c.mapping(data, "(document)", allow_empty=False)
    kind = c.choice(top.get("kind", "incident"), "kind", KINDS)
    if kind == "experiment":
        return _parse_experiment_drill(c, top, source)
    if kind == "rollout":
        return _parse_rollout_drill(c, top, source)
    c.fields(top, "", {"id", "title", "difficulty", "briefing", "setup", "fault", "truth", "questions",
                       "hints", "debrief"}, {"kind", "mitigations"})
    drill_id, title, difficulty, briefing = _parse_head(c, top, source)
    setup = _parse_setup(c, top["setup"])
    fault = _parse_fault(c, top["fault"], setup)
    questions = _parse_questions(c, top["questions"])
    truth = _parse_truth(c, top["truth"], questions)
    hints = c.string_list(top["hints"], "hints")
    debrief = _parse_debrief(c, top["debrief"])
    mitigations = (parse_mitigations(top["mitigations"], c.fail, tuple(setup.flags))
                   if "mitigations" in top else None)
    return Drill(drill_id, title, difficulty, briefing, setup, fault, truth, questions, hints, debrief, source,
                 mitigations=mitigations)


def _parse_head(c: _Checker, top: dict, source: str) -> tuple[str, str, str, str]:
    drill_id = c.string(top["id"], "id")
    if not _ID.match(drill_id):
        raise c.fail("id", f"expected lowercase words joined by '-', got {brief(drill_id)}")
    stem = Path(source).stem
    if source.endswith((".yaml", ".yml")) and stem != drill_id:
        raise c.fail("id", f"{brief(drill_id)} does not match the file name {brief(Path(source).name)}")
    return (drill_id, c.string(top["title"], "title"), c.choice(top["difficulty"], "difficulty", DIFFICULTIES),
            c.string(top["briefing"], "briefing"))


def _parse_experiment_drill(c: _Checker, top: dict, source: str) -> Drill:
    """An experiment trap: the setup (flags, faults, load mix) is the scenario; the learner judges a comparison."""
    c.fields(top, "", {"id", "kind", "title", "difficulty", "briefing", "setup", "experiment", "truth", "questions",
                       "hints", "debrief"}, {"fault"})
    drill_id, title, difficulty, briefing = _parse_head(c, top, source)
    setup = _parse_setup(c, top["setup"])
    fault = _parse_fault(c, top["fault"], setup) if "fault" in top else None
    m = c.mapping(top["experiment"], "experiment", allow_empty=False)
    c.fields(m, "experiment", {"control", "treatment", "metric"}, {"looks"})
    arms = {}
    for arm in ("control", "treatment"):
        sel = c.mapping(m[arm], f"experiment.{arm}", allow_empty=False)
        arms[arm] = {}
        for key, value in sel.items():
            where = _join(f"experiment.{arm}", str(key))
            c.choice(key, where, ANSWER_DIMENSIONS)
            arms[arm][key] = c.choice(value, where, ANSWER_VALUES[key])
    if arms["control"] == arms["treatment"]:
        raise c.fail("experiment.treatment", "must select other attempts than experiment.control")
    looks = c.integer(m["looks"], "experiment.looks", 2, 500) if "looks" in m else None
    experiment = Experiment(arms["control"], arms["treatment"],
                            c.choice(m["metric"], "experiment.metric", EXPERIMENT_METRICS), looks)
    q = c.mapping(top["questions"], "questions", allow_empty=False)
    c.fields(q, "questions", {"verdict", "evidence", "prompt"})
    verdict = c.mapping(q["verdict"], "questions.verdict", allow_empty=False)
    c.fields(verdict, "questions.verdict", {"choices"}, {"partial"})
    verdicts = _choice_list(c, verdict["choices"], "questions.verdict.choices", tuple(VERDICTS))
    partial: dict[str, float] = {}
    for key, value in c.mapping(verdict.get("partial"), "questions.verdict.partial").items():
        where = _join("questions.verdict.partial", str(key))
        c.choice(key, where, verdicts)
        partial[key] = c.number(value, where, 0, 1)
    evidence = c.mapping(q["evidence"], "questions.evidence", allow_empty=False)
    c.fields(evidence, "questions.evidence", {"choices"})
    evidences = _choice_list(c, evidence["choices"], "questions.evidence.choices", tuple(EVIDENCE))
    questions = ExperimentQuestions(verdicts, partial, evidences, c.string(q["prompt"], "questions.prompt"))
    t = c.mapping(top["truth"], "truth", allow_empty=False)
    c.fields(t, "truth", {"verdict", "evidence"})
    truth = ExperimentTruth(c.choice(t["verdict"], "truth.verdict", verdicts),
                            c.choice(t["evidence"], "truth.evidence", evidences))
    if truth.verdict in partial:
        raise c.fail("questions.verdict.partial", f"gives partial credit to the true verdict {brief(truth.verdict)}")
    hints = c.string_list(top["hints"], "hints")
    debrief = _parse_debrief(c, top["debrief"])
    return Drill(drill_id, title, difficulty, briefing, setup, fault, truth, questions, hints, debrief, source,
                 "experiment", experiment)


def _parse_rollout_drill(c: _Checker, top: dict, source: str) -> Drill:
    """A rollout call drill: the flag moves stage by stage; the learner calls continue, hold or roll back at each."""
    c.fields(top, "", {"id", "kind", "title", "difficulty", "briefing", "setup", "rollout", "hints", "debrief",
                       "prompt"}, {"regression"})
    drill_id, title, difficulty, briefing = _parse_head(c, top, source)
    m = c.mapping(top["rollout"], "rollout", allow_empty=False)
    c.fields(m, "rollout", {"stages", "window", "decide_within"}, {"flag", "variant", "max_holds"})
    flag = c.choice(m.get("flag", "release"), "rollout.flag", tuple(FLAGS))
    variant = c.choice(m.get("variant", FLAGS[flag][1]), "rollout.variant", FLAGS[flag][1:])
    raw = m["stages"]
    if not isinstance(raw, list) or len(raw) < 2:
        raise c.fail("rollout.stages", f"expected a list of at least 2 percentages ending at 100, got {brief(raw)}")
    stages = tuple(c.number(v, f"rollout.stages[{i}]", 0.01, 100) for i, v in enumerate(raw))
    if list(stages) != sorted(set(stages)):
        raise c.fail("rollout.stages", f"percentages must strictly increase, got {brief(raw)}")
    if stages[-1] != 100:
        raise c.fail("rollout.stages", f"the last stage must be 100, got {brief(raw[-1])}")
    spec = RolloutSpec(flag, variant, FLAGS[flag][0], stages, c.duration(m["window"], "rollout.window"),
                       c.duration(m["decide_within"], "rollout.decide_within"),
                       c.integer(m.get("max_holds", 1), "rollout.max_holds", 0, 3))
    raw_setup = c.mapping(top["setup"], "setup", allow_empty=False)
    if "duration" in raw_setup:
        raise c.fail("setup.duration", "a rollout drill's length follows from its rollout (stages, window, "
                                       "decide_within, max_holds): leave it out")
    if "flags" in raw_setup and flag in (raw_setup["flags"] or {}):
        raise c.fail(f"setup.flags.{flag}", "the rollout moves this flag: the setup must not set it")
    setup = _parse_setup(c, {**raw_setup, "duration": f"{spec.bound_s():g}s"})
    regression = None
    if "regression" in top:
        r = c.mapping(top["regression"], "regression", allow_empty=False)
        c.fields(r, "regression", {"kind", "target", "shows_in"}, {"selector", "params", "route", "from_percent"})
        body = {k: v for k, v in r.items() if k in ("kind", "target", "selector", "params", "route")}
        fault = BackgroundFault(*_parse_fault_body(c, body, "regression"))
        if fault.selector.get(flag) != variant:
            raise c.fail(f"regression.selector.{flag}", f"the regression is the change's: it must select "
                                                        f"{flag}: {variant}")
        from_percent = c.number(r.get("from_percent", stages[0]), "regression.from_percent", 0.01, 100)
        if from_percent not in stages:
            raise c.fail("regression.from_percent", f"must be one of the stages {brief(list(raw))}, "
                                                    f"got {brief(r['from_percent'])}")
        cohort = {k: v for k, v in fault.selector.items() if k not in (flag, "percentage")}
        regression = RolloutRegression(fault, from_percent, c.choice(r["shows_in"], "regression.shows_in",
                                                                     ROLLOUT_GUARDRAILS), cohort)
    hints = c.string_list(top["hints"], "hints")
    debrief = _parse_debrief(c, top["debrief"])
    return Drill(drill_id, title, difficulty, briefing, setup, None, RolloutTruth(regression),
                 RolloutQuestions(c.string(top["prompt"], "prompt")), hints, debrief, source, "rollout", rollout=spec)


def _choice_list(c: _Checker, raw: Any, where: str, known: tuple[str, ...]) -> tuple[str, ...]:
    if not isinstance(raw, list) or len(raw) < 3:
        raise c.fail(where, f"expected a list of at least 3 choices, got {brief(raw)}")
    out = tuple(c.choice(v, f"{where}[{i}]", known) for i, v in enumerate(raw))
    if len(set(out)) != len(out):
        raise c.fail(where, "lists a choice twice")
    return out


def _parse_setup(c: _Checker, raw: Any) -> Setup:
    m = c.mapping(raw, "setup", allow_empty=False)
    c.fields(m, "setup", {"duration", "load"}, {"flags", "background_faults"})
    duration_s = c.duration(m["duration"], "setup.duration")
    load = c.mapping(m["load"], "setup.load", allow_empty=False)
    c.fields(load, "setup.load", {"shape", "users"}, {"retry", "client", "mix", "think_time", "viewer_weight",
                                                      "mix_by_release", "cancel_rate"})
    shape = c.choice(load["shape"], "setup.load.shape", LOAD_SHAPES)
    users = c.integer(load["users"], "setup.load.users", 1, 500)
    retry = c.mapping(load.get("retry"), "setup.load.retry")
    c.fields(retry, "setup.load.retry", set(), {"policy", "max_attempts"})
    policy = c.choice(retry.get("policy", "backoff"), "setup.load.retry.policy", RETRY_POLICIES)
    max_attempts = c.integer(retry.get("max_attempts", 4), "setup.load.retry.max_attempts", 1, 20)
    client = c.mapping(load.get("client"), "setup.load.client")
    c.fields(client, "setup.load.client", set(), {"auto_cancel"})
    if "auto_cancel" in client:
        where = "setup.load.client.auto_cancel"
        ac = c.mapping(client["auto_cancel"], where, allow_empty=False)
        c.fields(ac, where, {"app_version", "after"}, {"network_type"})
        c.choice(ac["app_version"], f"{where}.app_version", APP_VERSIONS)
        c.duration(ac["after"], f"{where}.after")
        if "network_type" in ac:
            nets = ac["network_type"] if isinstance(ac["network_type"], list) else [ac["network_type"]]
            for i, n in enumerate(nets):
                c.choice(n, f"{where}.network_type[{i}]", NETWORK_TYPES)
    mix = _parse_mix(c, load.get("mix"), "setup.load.mix")
    mix_by_release = {}
    for variant, table in c.mapping(load.get("mix_by_release"), "setup.load.mix_by_release").items():
        where = _join("setup.load.mix_by_release", str(variant))
        c.choice(variant, where, FLAGS["release"])
        mix_by_release[variant] = _parse_mix(c, table, where)
    think_time = None
    if "think_time" in load:
        think_time = str(load["think_time"])
        low, sep, high = think_time.partition("-")
        lo_s = c.duration(low, "setup.load.think_time", allow_zero=True)
        if sep and c.duration(high, "setup.load.think_time", allow_zero=True) < lo_s:
            raise c.fail("setup.load.think_time", f"the maximum is below the minimum in {brief(think_time)}")
    cancel_rate = None
    if "cancel_rate" in load:
        cancel_rate = c.number(load["cancel_rate"], "setup.load.cancel_rate", 0, 1)
    viewer_weight = None
    if "viewer_weight" in load:
        viewer_weight = c.integer(load["viewer_weight"], "setup.load.viewer_weight", 0, 100)
    flags: dict[str, tuple[str, float]] = {}
    flag_at: dict[str, float] = {}
    raw_flags = c.mapping(m.get("flags"), "setup.flags")
    for name, spec in raw_flags.items():
        where = _join("setup.flags", str(name))
        c.choice(name, where, tuple(FLAGS))
        f = c.mapping(spec, where, allow_empty=False)
        c.fields(f, where, {"variant"}, {"percent", "at"})
        variant = c.choice(f["variant"], f"{where}.variant", FLAGS[name])
        percent = c.number(f.get("percent", 100), f"{where}.percent", 0, 100)
        flags[name] = (variant, percent)
        if "at" in f:
            at = c.duration(f["at"], f"{where}.at")
            if at >= duration_s:
                raise c.fail(f"{where}.at", f"must be before the drill ends (setup.duration "
                                            f"{format_duration(duration_s)}), got {brief(f['at'])}")
            flag_at[name] = at
    raw_bg = m.get("background_faults") or []
    if not isinstance(raw_bg, list):
        raise c.fail("setup.background_faults", f"expected a list of faults, got {brief(raw_bg)}")
    background = tuple(_parse_background_fault(c, f, f"setup.background_faults[{i}]") for i, f in enumerate(raw_bg))
    return Setup(duration_s, LoadSetup(shape, users, policy, max_attempts, dict(client), mix, think_time,
                                           viewer_weight, mix_by_release, cancel_rate), flags,
                 background, flag_at)


def _parse_mix(c: _Checker, raw: Any, base: str) -> dict[str, dict[str, float]]:
    mix: dict[str, dict[str, float]] = {}
    for dim, table in c.mapping(raw, base).items():
        where = f"{base}.{dim}"
        c.choice(dim, where, COHORT_DIMENSIONS)
        weights = c.mapping(table, where, allow_empty=False)
        mix[dim] = {}
        for value, weight in weights.items():
            c.choice(value, f"{where}.{value}", SELECTOR_VALUES[dim])
            mix[dim][value] = c.number(weight, f"{where}.{value}", 0, 1e6)
        if sum(mix[dim].values()) <= 0:
            raise c.fail(where, "weights must add up to more than zero")
    return mix


def _parse_fault(c: _Checker, raw: Any, setup: Setup) -> Fault:
    m = c.mapping(raw, "fault", allow_empty=False)
    c.fields(m, "fault", {"kind", "target", "when"}, {"selector", "params", "route"})
    kind, target, selector, params, route = _parse_fault_body(c, m, "fault")
    when = c.mapping(m["when"], "fault.when", allow_empty=False)
    c.fields(when, "fault.when", {"window", "duration"})
    window = when["window"]
    if not isinstance(window, list) or len(window) != 2:
        raise c.fail("fault.when.window", f"expected [earliest, latest] start, got {brief(window)}")
    lo = c.duration(window[0], "fault.when.window[0]", allow_zero=True)
    hi = c.duration(window[1], "fault.when.window[1]", allow_zero=True)
    if hi < lo:
        raise c.fail("fault.when.window[1]", f"must not be before window[0] ({window[0]}), got {brief(window[1])}")
    if lo < BASELINE_SHARE * setup.duration_s:
        raise c.fail("fault.when.window[0]",
                     f"the fault must not start before a quarter of the drill "
                     f"({format_duration(BASELINE_SHARE * setup.duration_s)}), so there is a baseline to compare "
                     f"against; got {brief(window[0])}")
    duration_s = c.duration(when["duration"], "fault.when.duration")
    if hi + duration_s > setup.duration_s:
        raise c.fail("fault.when.duration",
                     f"a fault starting as late as {format_duration(hi)} and lasting {format_duration(duration_s)} "
                     f"ends after the drill (setup.duration {format_duration(setup.duration_s)})")
    return Fault(kind, target, selector, params, (lo, hi), duration_s, route)


def _parse_background_fault(c: _Checker, raw: Any, where: str) -> BackgroundFault:
    m = c.mapping(raw, where, allow_empty=False)
    c.fields(m, where, {"kind", "target"}, {"selector", "params", "route"})
    return BackgroundFault(*_parse_fault_body(c, m, where))


def _parse_fault_body(c: _Checker, m: dict, base: str) -> tuple:
    kind = c.choice(m["kind"], f"{base}.kind", tuple(FAULT_KINDS))
    target = c.choice(m["target"], f"{base}.target", FAULT_TARGETS)
    if target not in _KIND_TARGETS[kind]:
        raise c.fail(f"{base}.target", f"a {kind} fault cannot target {target} (it can target: "
                                       f"{', '.join(_KIND_TARGETS[kind])})")
    route = None
    if "route" in m:
        if target != "api":
            raise c.fail(f"{base}.route", "only an api fault takes a route")
        route = c.choice(m["route"], f"{base}.route", API_ROUTES)
    selector: dict[str, Any] = {}
    for key, value in c.mapping(m.get("selector"), f"{base}.selector").items():
        where = f"{base}.selector.{key}"
        if key == "percentage":
            selector[key] = c.number(value, where, 0, 100)
            continue
        c.choice(key, where, tuple(SELECTOR_VALUES) + ("percentage",))
        selector[key] = c.choice(value, where, SELECTOR_VALUES[key])
    params: dict[str, Any] = {}
    allowed = FAULT_KINDS[kind]
    for key, value in c.mapping(m.get("params"), f"{base}.params").items():
        where = f"{base}.params.{key}"
        if key not in allowed:
            names = ", ".join(sorted(allowed)) or "none"
            raise c.fail(where, f"a {kind} fault takes no parameter {brief(key)} (it takes: {names})")
        params[key] = c.number(value, where, *allowed[key])
    return kind, target, selector, params, route


def _parse_questions(c: _Checker, raw: Any) -> Questions:
    m = c.mapping(raw, "questions", allow_empty=False)
    c.fields(m, "questions", {"cause", "cohort", "impact"})
    cause = c.mapping(m["cause"], "questions.cause", allow_empty=False)
    c.fields(cause, "questions.cause", {"choices"}, {"partial"})
    raw_choices = cause["choices"]
    if not isinstance(raw_choices, list) or len(raw_choices) < 3:
        raise c.fail("questions.cause.choices", f"expected a list of at least 3 causes, got {brief(raw_choices)}")
    choices = tuple(c.choice(v, f"questions.cause.choices[{i}]", tuple(CAUSES)) for i, v in enumerate(raw_choices))
    if len(set(choices)) != len(choices):
        raise c.fail("questions.cause.choices", "lists a cause twice")
    partial: dict[str, float] = {}
    for key, value in c.mapping(cause.get("partial"), "questions.cause.partial").items():
        where = _join("questions.cause.partial", str(key))
        c.choice(key, where, choices)
        partial[key] = c.number(value, where, 0, 1)
    cohort = c.mapping(m["cohort"], "questions.cohort", allow_empty=False)
    c.fields(cohort, "questions.cohort", {"dimensions"})
    dims = cohort["dimensions"]
    if not isinstance(dims, list) or not dims:
        raise c.fail("questions.cohort.dimensions", f"expected a non-empty list, got {brief(dims)}")
    dimensions = tuple(c.choice(d, f"questions.cohort.dimensions[{i}]", ANSWER_DIMENSIONS)
                       for i, d in enumerate(dims))
    impact = c.mapping(m["impact"], "questions.impact", allow_empty=False)
    c.fields(impact, "questions.impact", {"metric", "prompt"}, {"tolerance"})
    metric = c.choice(impact["metric"], "questions.impact.metric", IMPACT_METRICS)
    prompt = c.string(impact["prompt"], "questions.impact.prompt")
    tolerance = c.number(impact.get("tolerance", 0.25), "questions.impact.tolerance", 0.01, 1)
    return Questions(choices, partial, dimensions, ImpactQuestion(metric, prompt, tolerance))


def _parse_truth(c: _Checker, raw: Any, questions: Questions) -> Truth:
    m = c.mapping(raw, "truth", allow_empty=False)
    c.fields(m, "truth", {"cause", "cohort", "metric", "direction"})
    cause = c.choice(m["cause"], "truth.cause", questions.cause_choices)
    if cause in questions.cause_partial:
        raise c.fail("questions.cause.partial", f"gives partial credit to the true cause {brief(cause)}")
    cohort: dict[str, str] = {}
    for key, value in c.mapping(m["cohort"], "truth.cohort").items():
        where = _join("truth.cohort", str(key))
        c.choice(key, where, questions.cohort_dimensions)
        cohort[key] = c.choice(value, where, ANSWER_VALUES[key])
    metric = c.string(m["metric"], "truth.metric")
    direction = c.choice(m["direction"], "truth.direction", ("up", "down"))
    return Truth(cause, cohort, metric, direction)


def _parse_debrief(c: _Checker, raw: Any) -> Debrief:
    m = c.mapping(raw, "debrief", allow_empty=False)
    c.fields(m, "debrief", {"what_happened", "evidence_path", "good_looks_like"})
    return Debrief(c.string(m["what_happened"], "debrief.what_happened"),
                   c.string_list(m["evidence_path"], "debrief.evidence_path"),
                   c.string(m["good_looks_like"], "debrief.good_looks_like"))


def load_drill(path: str | Path) -> Drill:
    """Read and validate one drill file."""
    p = Path(path)
    data = load_yaml_file(p, DrillSpecError)
    return parse_drill(data, source=str(p))


@functools.lru_cache(maxsize=512)
def _load_unchanged(path: str, mtime_ns: int, size: int) -> Drill:  # noqa: ARG001 - the cache key
    """A drill file parsed once while it is unchanged: every drill command looks its drill up in the whole
    catalogue (``find_drill``), and ``drill status`` is polled by the dashboard."""
    return load_drill(path)


def catalogue_dir() -> Path:
    """The directory of the drills shipped with obslab."""
    return Path(str(resources.files("toolkit.drills").joinpath("catalogue")))


def load_catalogue(directory: str | Path | None = None, kind: str | None = "incident") -> dict[str, Drill]:
    """Every drill of ``kind`` (None: every kind) in a directory (default: the shipped catalogue), by id, in
    file-name order. Incident drills by default: callers that read a drill's cause and cohort get only drills
    that have them; ``drill list`` and ``find_drill`` ask for every kind."""
    d = Path(directory) if directory is not None else catalogue_dir()
    drills: dict[str, Drill] = {}
    for path in sorted(d.glob("*.yaml")):
        st = path.stat()
        drill = _load_unchanged(str(path), st.st_mtime_ns, st.st_size)
        if kind is None or drill.kind == kind:
            drills[drill.id] = drill
    return drills


def find_drill(drill_id: str, directory: str | Path | None = None) -> Drill:
    """One drill of the catalogue (any kind) by id; a DrillSpecError lists the known ids otherwise."""
    drills = load_catalogue(directory, kind=None)
    if drill_id not in drills and directory is None and (catalogue_dir() / "launches" / f"{drill_id}.yaml").is_file():
        raise DrillSpecError(f"{drill_id} is a launch exercise, not an incident drill: write its measurement plan "
                             f"with `obslab plan template {drill_id}` (docs/plans.md)")
    if drill_id not in drills:
        raise DrillSpecError(f"unknown drill {brief(drill_id)} (known: {', '.join(drills) or 'none'})")
    return drills[drill_id]
