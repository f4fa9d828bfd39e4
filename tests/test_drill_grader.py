"""The grader: partial credit per part, detection and diagnosis times."""

import pytest

from toolkit.drills.grader import Answer, grade, score_cause, score_cohort, score_impact
from toolkit.drills.schema import find_drill


def test_cause_full_partial_and_wrong():
    partial = {"chunk_upload_failures": 0.5}
    assert score_cause("retry_amplification", "retry_amplification", partial)[0] == 1.0
    assert score_cause("chunk_upload_failures", "retry_amplification", partial)[0] == 0.5
    assert score_cause("traffic_spike", "retry_amplification", partial)[0] == 0.0


@pytest.mark.parametrize("answer, truth, credit", [
    ({"region": "eu-west"}, {"region": "eu-west"}, 1.0),
    ({}, {}, 1.0),
    ({"region": "eu-west"}, {}, 0.0),
    ({}, {"region": "eu-west"}, 0.0),
    ({"region": "us-east"}, {"region": "eu-west"}, 0.25),
    ({"release": "canary"}, {"release": "canary", "media_size_bucket": "large"}, 0.5),
    ({"release": "canary", "media_size_bucket": "large"}, {"release": "canary", "media_size_bucket": "large"}, 1.0),
    ({"region": "eu-west", "network_type": "wifi"}, {"region": "eu-west"}, 0.5),
    ({"network_type": "4g"}, {"region": "eu-west"}, 0.0),
])
def test_cohort_credit(answer, truth, credit):
    assert score_cohort(answer, truth)[0] == pytest.approx(credit)


@pytest.mark.parametrize("estimate, measured, tolerance, credit", [
    (100, 100, 0.25, 1.0),
    (120, 100, 0.25, 1.0),
    (75, 100, 0.25, 1.0),
    (150, 100, 0.25, (1 - 0.5) / 0.75),
    (200, 100, 0.25, 0.0),
    (0, 100, 0.25, 0.0),
    (0, 0, 0.25, 1.0),
    (3, 0, 0.25, 0.0),
    (-120, -100, 0.3, 1.0),
])
def test_impact_credit(estimate, measured, tolerance, credit):
    assert score_impact(estimate, measured, tolerance)[0] == pytest.approx(credit)


def test_grade_last_answer_with_times():
    drill = find_drill("regional-storage-outage")
    answers = [
        Answer("chunk_upload_failures", {"region": "eu-west"}, 10.0, at_s=250.0),
        Answer("storage_outage", {"region": "eu-west"}, 4.0, at_s=300.0),
    ]
    g = grade(drill, answers, measured_impact=4.2, fault_start_s=200.0, first_alert_s=215.0)
    assert [p.part for p in g.parts] == ["cause", "cohort", "impact"]
    assert g.total == 100.0 and g.percent == 100.0
    assert (g.time_to_detect_s, g.detected_by) == (15.0, "alert")
    assert g.time_to_diagnose_s == 100.0
    assert g.answers == 2


def test_grade_partial_and_never_diagnosed():
    drill = find_drill("bad-canary")
    answers = [Answer("transcoder_errors", {"release": "canary"}, 30, at_s=400.0)]
    g = grade(drill, answers, measured_impact=20, fault_start_s=150.0, first_alert_s=None)
    points = {p.part: p.points for p in g.parts}
    assert points == {"cause": 25.0, "cohort": 15.0, "impact": pytest.approx(20 * (1 - 0.5) / 0.65, abs=0.01)}
    assert (g.time_to_detect_s, g.detected_by) == (250.0, "answer")
    assert g.time_to_diagnose_s is None


def test_alert_before_fault_is_not_a_detection():
    drill = find_drill("regional-storage-outage")
    g = grade(drill, [], measured_impact=1.0, fault_start_s=200.0, first_alert_s=100.0)
    assert g.total == 0 and g.time_to_detect_s is None and g.detected_by is None


def test_the_red_herring_earns_no_cause_points():
    """campaign-spike-failures: the traffic burst is real and alarming, but naming it as the cause is wrong."""
    drill = find_drill("campaign-spike-failures")
    assert drill.truth.cause != "traffic_spike" and "traffic_spike" in drill.questions.cause_choices
    assert "traffic_spike" not in drill.questions.cause_partial
    herring = grade(drill, [Answer("traffic_spike", {}, 100, at_s=400.0)], measured_impact=100,
                    fault_start_s=150.0, first_alert_s=None)
    right = grade(drill, [Answer(drill.truth.cause, dict(drill.truth.cohort), 100, at_s=400.0)], measured_impact=100,
                  fault_start_s=150.0, first_alert_s=None)
    assert {p.part: p.points for p in herring.parts}["cause"] == 0
    assert right.total == 100
