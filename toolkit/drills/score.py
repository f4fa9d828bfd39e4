"""A drill's score, as pure data: named parts, each earning a share (its credit) of its points with a note saying
why, and their total less what the hints taken cost.

The grader (``toolkit.drills.grader``: diagnosis, verdict) and the mitigation score (``toolkit.drills.mitigation``)
build theirs here; it sits below both because the drill schema imports the mitigation vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

__all__ = ["HINT_COST", "PartScore", "Grade", "part_scores", "graded"]

# Points each hint costs: enough that hints are a choice, not a free walk-through.
HINT_COST = 5.0


@dataclass(frozen=True)
class PartScore:
    part: str
    credit: float  # 0..1
    points: float
    max_points: float
    note: str


@dataclass(frozen=True)
class Grade:
    parts: tuple[PartScore, ...]
    total: float
    max_total: float
    time_to_detect_s: float | None
    detected_by: str | None  # "alert" | "answer"
    time_to_diagnose_s: float | None
    answers: int
    hints_taken: int = 0
    hint_penalty: float = 0.0  # points taken off the parts' sum for the hints

    @property
    def percent(self) -> float:
        return 100.0 * self.total / self.max_total


def part_scores(points: Mapping[str, float], scored: Mapping[str, tuple[float, str]]) -> tuple[PartScore, ...]:
    """Each part's (credit, note) as a PartScore worth that share of its ``points``."""
    return tuple(PartScore(name, credit, round(credit * points[name], 2), points[name], note)
                 for name, (credit, note) in scored.items())


def graded(parts: tuple[PartScore, ...], max_total: float, answers: int, hints_taken: int = 0,
           time_to_detect_s: float | None = None, detected_by: str | None = None,
           time_to_diagnose_s: float | None = None) -> Grade:
    """The Grade of ``parts``: their points less ``HINT_COST`` per hint taken, never below zero."""
    earned = sum(p.points for p in parts)
    taken = min(HINT_COST * hints_taken, earned)
    return Grade(parts, round(earned - taken, 2), max_total, time_to_detect_s, detected_by, time_to_diagnose_s,
                 answers, hints_taken, round(taken, 2))
