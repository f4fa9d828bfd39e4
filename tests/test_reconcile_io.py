"""Reading the reconciliation's inputs: the event log (rotations, torn lines) and /metrics text."""

import json

import pytest

from toolkit.analysis.reconcile_io import SourceError, parse_metrics_text, read_event_log


def line(event, rid, upload="up_" + "a" * 24):
    return json.dumps({"event": event, "request_id": rid, "upload_id": upload}) + "\n"


def test_the_log_is_read_across_rotations_and_a_torn_last_line_is_skipped(tmp_path):
    (tmp_path / "events.jsonl.1").write_text(line("upload_started", "run1.0.0.1") + line("chunk_uploaded", "run1.0.0.1"))
    (tmp_path / "events.jsonl").write_text(line("publish_succeeded", "run1.0.0.1") +
                                           json.dumps({"event": "fault_changed", "request_id": None}) + "\n" +
                                           '{"event": "chunk_upl')
    events, totals = read_event_log(tmp_path)
    assert events["run1.0.0.1"].counts == {"upload_started": 1, "chunk_uploaded": 1, "publish_succeeded": 1}
    assert events["run1.0.0.1"].upload_ids == {"up_" + "a" * 24}
    assert totals == {"upload_started": 1, "chunk_uploaded": 1, "publish_succeeded": 1, "fault_changed": 1}


def test_a_bad_line_in_the_middle_is_an_error_naming_file_and_line(tmp_path):
    (tmp_path / "events.jsonl").write_text(line("upload_started", "r1.0.0.1") + "not json\n" +
                                           line("upload_started", "r1.0.0.2"))
    with pytest.raises(SourceError, match=r"events.jsonl:2: not a JSON event line"):
        read_event_log(tmp_path)


def test_an_empty_directory_says_so(tmp_path):
    with pytest.raises(SourceError, match="no event files"):
        read_event_log(tmp_path)


METRICS = """\
# HELP obslab_events_total Events written.
# TYPE obslab_events_total counter
obslab_events_total{event="upload_started"} 3.0
obslab_events_total{event="publish_succeeded"} 2.0
# HELP obslab_publish_outcomes_total Outcomes.
# TYPE obslab_publish_outcomes_total counter
obslab_publish_outcomes_total{outcome="succeeded",region="us-east"} 1.0
obslab_publish_outcomes_total{outcome="succeeded",region="eu-west"} 1.0
# HELP obslab_events_lost_total Lost.
# TYPE obslab_events_lost_total counter
obslab_events_lost_total{reason="dropped_fault"} 0.0
"""


def test_metrics_text_is_summed_over_other_labels():
    counters = parse_metrics_text(METRICS, "http://127.0.0.1:1/metrics")
    assert counters.events_total == {"upload_started": 3.0, "publish_succeeded": 2.0}
    assert counters.publish_outcomes == {"succeeded": 2.0}
    assert counters.events_lost == {"dropped_fault": 0.0}


def test_a_page_without_obslab_counters_is_refused():
    with pytest.raises(SourceError, match="is it the obslab service"):
        parse_metrics_text("# TYPE up gauge\nup 1\n", "http://127.0.0.1:1/metrics")
