"""Scoring a drill answer against its ground truth: pure functions, no I/O.

Points: cause 50, cohort 30, impact 20. Each part earns partial credit:

- cause: full for the true cause, the drill's ``questions.cause.partial`` share for a
  near miss (e.g. the trigger instead of the amplifier), nothing otherwise;
- cohort: matched (dimension, value) pairs over the union of dimensions named by the
  truth and the answer, a quarter pair for the right dimension with the wrong value;
  "everyone" (an empty cohort) matches only "everyone";
- impact: full within the drill's relative tolerance of the measured value, then
  falling linearly to nothing at 100 % relative error.

Hints cost points: ``HINT_COST`` each, taken off the total (never below zero); the CLI and
the dashboard state the cost before a hint is shown.

Time to detect is from the fault's start to the first alert or the first answer,
whichever came first; time to diagnose is to the first answer that got both the
cause and the cohort fully right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from toolkit.drills.schema import Drill
from toolkit.drills.score import HINT_COST, Grade, PartScore, graded, part_scores

__all__ = ["Answer", "PartScore", "Grade", "POINTS", "HINT_COST", "score_cause", "score_cohort", "score_impact", "grade",
           "VerdictAnswer", "VERDICT_POINTS", "score_verdict", "grade_verdict"]

POINTS = {"cause": 50.0, "cohort": 30.0, "impact": 20.0}
# Credit for naming the right dimension with the wrong value, as a share of one pair.
_SAME_DIMENSION_CREDIT = 0.25


@dataclass(frozen=True)
class Answer:
    cause: str
    cohort: Mapping[str, str]  # empty: everyone
    impact: float
    at_s: float  # seconds since the drill started


def score_cause(answer: str, truth: str, partial: Mapping[str, float]) -> tuple[float, str]:
    if answer == truth:
        return 1.0, "the true cause"
    if answer in partial:
        return partial[answer], f"a near miss (true cause: {truth})"
    return 0.0, f"wrong (true cause: {truth})"


def score_cohort(answer: Mapping[str, str], truth: Mapping[str, str]) -> tuple[float, str]:
    if not truth:
        if not answer:
            return 1.0, "everyone: right"
        return 0.0, "every cohort was affected, not only " + _cohort_text(answer)
    dims = set(answer) | set(truth)
    matched = 0.0
    for dim in truth:
        if answer.get(dim) == truth[dim]:
            matched += 1.0
        elif dim in answer:
            matched += _SAME_DIMENSION_CREDIT
    credit = matched / len(dims)
    if credit == 1.0:
        return 1.0, f"{_cohort_text(truth)}: right"
    return credit, f"{_cohort_text(answer)} vs true cohort {_cohort_text(truth)}"


def score_impact(estimate: float, measured: float, tolerance: float) -> tuple[float, str]:
    if measured == 0:
        credit = 1.0 if estimate == 0 else 0.0
        return credit, f"measured 0, estimated {estimate:g}"
    error = abs(estimate - measured) / abs(measured)
    if error <= tolerance:
        credit = 1.0
    else:
        credit = max(0.0, (1.0 - error) / (1.0 - tolerance)) if tolerance < 1 else 0.0
    return credit, f"estimated {estimate:g}, measured {measured:.4g} (relative error {error:.0%}, full credit within {tolerance:.0%})"


def _cohort_text(cohort: Mapping[str, str]) -> str:
    if not cohort:
        return "everyone"
    return ", ".join(f"{k}={v}" for k, v in sorted(cohort.items()))


def grade(drill: Drill, answers: Sequence[Answer], measured_impact: float, fault_start_s: float,
          first_alert_s: float | None, hints_taken: int = 0) -> Grade:
    """Grade the last answer, less ``HINT_COST`` per hint taken; times come from every answer and the
    first alert (all in the same clock: scenario seconds since the drill started)."""
    if not answers:
        ttd, by = _detection(None, first_alert_s, fault_start_s)
        return graded(part_scores(POINTS, {p: (0.0, "not answered") for p in POINTS}), sum(POINTS.values()), 0,
                      hints_taken, ttd, by)
    last = answers[-1]
    q, truth = drill.questions, drill.truth
    scored = {
        "cause": score_cause(last.cause, truth.cause, q.cause_partial),
        "cohort": score_cohort(last.cohort, truth.cohort),
        "impact": score_impact(last.impact, measured_impact, q.impact.tolerance),
    }
    first_answer_s = min(a.at_s for a in answers)
    ttd, by = _detection(first_answer_s, first_alert_s, fault_start_s)
    diagnosed = [a.at_s for a in answers
                 if a.cause == truth.cause and score_cohort(a.cohort, truth.cohort)[0] == 1.0]
    ttdiag = max(0.0, min(diagnosed) - fault_start_s) if diagnosed else None
    return graded(part_scores(POINTS, scored), sum(POINTS.values()), len(answers), hints_taken, ttd, by, ttdiag)


def _detection(first_answer_s: float | None, first_alert_s: float | None,
               fault_start_s: float) -> tuple[float | None, str | None]:
    # An alert before the fault is noise, not a detection of this fault.
    alert = first_alert_s if first_alert_s is not None and first_alert_s >= fault_start_s else None
    candidates = [(t, by) for t, by in ((alert, "alert"), (first_answer_s, "answer")) if t is not None]
    if not candidates:
        return None, None
    t, by = min(candidates)
    return max(0.0, t - fault_start_s), by


# -- experiment drills: a verdict on a comparison and the evidence it rests on ------------------------

# The verdict is the decision (ship, roll back, or distrust the data); the evidence is why.
VERDICT_POINTS = {"verdict": 70.0, "evidence": 30.0}


@dataclass(frozen=True)
class VerdictAnswer:
    verdict: str
    evidence: str
    at_s: float  # scenario seconds since the drill started


def score_verdict(answer: str, truth: str, partial: Mapping[str, float]) -> tuple[float, str]:
    if answer == truth:
        return 1.0, "the right verdict"
    if answer in partial:
        return partial[answer], f"half right (the verdict: {truth})"
    return 0.0, f"wrong (the verdict: {truth})"


def grade_verdict(drill: Drill, answers: Sequence[VerdictAnswer], hints_taken: int = 0) -> Grade:
    """Grade the last answer of an experiment drill, less ``HINT_COST`` per hint taken. Time to diagnose is to
    the first answer with the right verdict and evidence (scenario seconds since the start: the comparison
    exists from the start); there is nothing to detect."""
    total = sum(VERDICT_POINTS.values())
    if not answers:
        return graded(part_scores(VERDICT_POINTS, {p: (0.0, "not answered") for p in VERDICT_POINTS}), total, 0,
                      hints_taken)
    last = answers[-1]
    q, truth = drill.questions, drill.truth
    scored = {
        "verdict": score_verdict(last.verdict, truth.verdict, q.verdict_partial),
        "evidence": (1.0, "the evidence that shows it") if last.evidence == truth.evidence
        else (0.0, f"wrong (the evidence: {truth.evidence})"),
    }
    right = [a.at_s for a in answers if a.verdict == truth.verdict and a.evidence == truth.evidence]
    return graded(part_scores(VERDICT_POINTS, scored), total, len(answers), hints_taken,
                  time_to_diagnose_s=min(right) if right else None)
