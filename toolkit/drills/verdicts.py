"""What a learner chooses from when answering an experiment-trap drill: a verdict and its evidence.

An incident drill asks "what broke"; an experiment drill asks "did the change cause the movement,
and can the comparison be trusted?". One shared list of verdicts and one of evidence, so drills
offer each other's answers as distractors (as ``causes.py`` does for incidents).
"""

from __future__ import annotations

__all__ = ["VERDICTS", "EVIDENCE", "verdict_label", "evidence_label"]

# id → what a learner reads in the list of choices.
VERDICTS: dict[str, str] = {
    "treatment_worse": "The change made things worse",
    "treatment_better": "The change made things better",
    "no_real_difference": "No real difference: the movement is noise",
    "invalid_sample_ratio": "Comparison invalid: the arms are not the sizes the rollout intended "
                            "(data lost or assignment skewed)",
    "invalid_mix_shift": "Comparison invalid: the arms serve different traffic (the cohort mix differs)",
    "invalid_metric_definition": "Comparison invalid: the metric's definition (its denominator) changed",
    "invalid_before_after": "Comparison invalid: something else changed at the same moment as the change "
                            "(a before/after comparison has no concurrent control)",
}

# What the verdict rests on: the check that shows it.
EVIDENCE: dict[str, str] = {
    "aggregate_rate": "The arms' overall figures, compared directly",
    "sample_ratio": "The arms' sizes against the intended split (sample-ratio check)",
    "cohort_mix": "The comparison within each cohort, and each arm's cohort mix",
    "tail_percentiles": "The tail percentiles (p95/p99) beside the mean",
    "metric_definition": "What the metric counts: its numerator and denominator",
    "repeated_looks": "How many times the comparison was looked at, and a test valid for any number of looks "
                      "(always-valid intervals)",
}


def verdict_label(verdict_id: str) -> str:
    return VERDICTS.get(verdict_id, verdict_id)


def evidence_label(evidence_id: str) -> str:
    return EVIDENCE.get(evidence_id, evidence_id)
