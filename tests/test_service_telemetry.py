"""Real processes: every event kind, /metrics equal to event counts, docs and schema equal to what is emitted."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

from demo_service.telemetry.metrics import PUBLISH_OUTCOMES, SLO_LATENCY_BUCKETS
from contract.events import ALL_EVENTS, FLAGS, SERVICE_VERSIONS, TERMINAL_EVENTS, event_schema

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = jsonschema.Draft202012Validator(event_schema())
PROPAGATION_S = 1.0  # the documented bound for a control change to reach every worker


def set_fault(service, name, spec):
    r = service.admin("PUT", f"/admin/faults/{name}", json=spec)
    assert r.status_code == 200, r.text
    time.sleep(PROPAGATION_S)


def clear_fault(service, name):
    assert service.admin("DELETE", f"/admin/faults/{name}").status_code == 200
    time.sleep(PROPAGATION_S)


def drive_every_event(service) -> None:
    """One run that makes the service emit every event of the contract."""
    # Success, then a cancellation.
    assert service.publish(chunk_count=2)["complete_status"] == 200
    cancelled = service.create_upload()
    assert service.http.post(service.url(f"/v1/uploads/{cancelled['upload_id']}/cancel")).status_code == 200
    # A rejected request (not an attempt).
    assert service.http.post(service.url("/v1/uploads"), json={"chunk_count": 1}).status_code == 422
    # A chunk that fails server-side, then succeeds on the client's retry.
    set_fault(service, "flaky-storage", {"kind": "chunk_failures", "target": "storage",
                                         "selector": {"network_type": ["3g"]}})
    upload = service.create_upload(chunk_count=1, network_type="3g")
    failed = service.put_chunk(upload["upload_id"], 0)
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "1"
    clear_fault(service, "flaky-storage")
    assert service.put_chunk(upload["upload_id"], 0, attempt=2).status_code == 200
    assert service.complete(upload["upload_id"]).status_code == 200
    # The transcoder fails for one region: transcode_failed + publish_failed, 503 + Retry-After.
    set_fault(service, "transcoder-down", {"kind": "errors", "target": "transcoder",
                                           "selector": {"region": ["ap-south"]}})
    result = service.publish(chunk_count=1, region="ap-south")
    assert result["complete_status"] == 503 and result["complete"]["error_class"] == "dependency_unavailable"
    clear_fault(service, "transcoder-down")
    # Flag changes, and one attempt in async mode (queue-backed).
    assert service.admin("PUT", "/admin/flags/transcode_mode", json={"default": "async"}).status_code == 200
    time.sleep(PROPAGATION_S)
    queued = service.publish(chunk_count=1)
    assert queued["complete_status"] == 202
    assert service.admin("DELETE", "/admin/flags/transcode_mode").status_code == 200
    assert service.wait_for_events(lambda e: e["upload_id"] == queued["upload_id"] and e["event"] in TERMINAL_EVENTS)
    time.sleep(PROPAGATION_S)
    # Status polls shed (audited as shed_changed; 503 + Retry-After before the upload is looked up), then let through.
    assert service.admin("PUT", "/admin/shed/status", json={"percent": 100}).status_code == 200
    time.sleep(PROPAGATION_S)
    shed = service.http.get(service.url(f"/v1/uploads/{queued['upload_id']}"))
    assert shed.status_code == 503 and "Retry-After" in shed.headers, shed.text
    assert service.admin("DELETE", "/admin/shed/status").status_code == 200
    time.sleep(PROPAGATION_S)


def test_every_event_is_emitted_valid_and_counted_exactly_in_metrics(service):
    drive_every_event(service)
    events = service.events()
    for e in events:
        errors = list(VALIDATOR.iter_errors(e))
        assert not errors, f"{e['event']}: {errors[0].message}"
    counts = Counter(e["event"] for e in events)
    assert set(counts) == set(ALL_EVENTS)
    # Counters equal the event counts of the same run (no drop fault was active).
    for name in ALL_EVENTS:
        assert service.metric("obslab_events_total", event=name) == counts[name], name
    assert service.metric("obslab_events_lost_total") == 0
    outcomes = {"succeeded": "publish_succeeded", "failed": "publish_failed", "cancelled": "upload_cancelled"}
    for outcome, event in outcomes.items():
        assert service.metric("obslab_publish_outcomes_total", outcome=outcome) == counts[event], outcome
        assert service.metric("obslab_slo_publish_outcomes_total", outcome=outcome) == counts[event], outcome
    assert service.metric("obslab_chunks_total", result="uploaded") == counts["chunk_uploaded"]
    assert service.metric("obslab_chunks_total", result="failed") == counts["chunk_failed"]
    assert service.metric("obslab_chunk_retries_total") == counts["chunk_retry"]
    assert service.metric("obslab_transcode_failures_total") == counts["transcode_failed"]
    assert service.metric("obslab_publish_processing_seconds_count") == counts["publish_succeeded"]
    # The latency SLO threshold is a bucket boundary.
    assert any(s.name == "obslab_publish_processing_seconds_bucket" and s.labels["le"] == "1.0"
               for s in service.metric_samples())
    # Every attempt has at most one terminal event.
    terminal = Counter(e["request_id"] for e in events if e["event"] in TERMINAL_EVENTS)
    assert max(terminal.values()) == 1


def test_slo_series_exist_at_zero_before_the_first_attempt(fresh_service):
    """rate() cannot see the increment that creates a series, and absent() pages on a missing one: every
    series the SLO rules read is in the aggregated /metrics (2 gunicorn workers) at 0 before any traffic."""
    samples = fresh_service.metric_samples()
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}
    for outcome in PUBLISH_OUTCOMES:
        assert values.get(("obslab_slo_publish_outcomes_total", (("outcome", outcome),))) == 0.0, outcome
    hist = "obslab_publish_processing_seconds"
    for release in FLAGS["release"]:
        for mode in FLAGS["transcode_mode"]:
            labels = (("release", release), ("transcode_mode", mode))
            assert values.get((f"{hist}_count", labels)) == 0.0, labels
            for le in (*(str(b) for b in SLO_LATENCY_BUCKETS), "+Inf"):
                assert values.get((f"{hist}_bucket", tuple(sorted((*labels, ("le", le)))))) == 0.0, (labels, le)
    # The cohort-labelled counter stays lazy (2,304 possible series): a breakdown, not what the rules read.
    assert not [s for s in samples if s.name == "obslab_publish_outcomes_total"]

    assert fresh_service.publish(chunk_count=1)["complete_status"] == 200
    assert fresh_service.metric("obslab_slo_publish_outcomes_total", outcome="succeeded") == 1
    assert fresh_service.metric("obslab_slo_publish_outcomes_total", outcome="failed") == 0
    assert fresh_service.metric(f"{hist}_count", release="stable", transcode_mode="sync") == 1


def _documented(section: str) -> set[str]:
    text = (ROOT / "docs" / "events.md").read_text()
    body = text.split(f"<!-- {section}:begin -->")[1].split(f"<!-- {section}:end -->")[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", body, flags=re.M))


def test_docs_and_schema_cover_exactly_what_the_service_emits(service):
    drive_every_event(service)
    events = service.events()
    emitted_names = {e["event"] for e in events}
    emitted_fields = {k for e in events for k in e}
    schema = event_schema()
    assert _documented("events") == set(schema["properties"]["event"]["enum"]) == emitted_names
    assert _documented("fields") == set(schema["properties"]) == emitted_fields


def test_async_mode_queues_then_publishes_once(service):
    assert service.admin("PUT", "/admin/flags/transcode_mode", json={"default": "async"}).status_code == 200
    time.sleep(PROPAGATION_S)
    try:
        upload = service.create_upload(chunk_count=1)
        assert upload["flags"]["transcode_mode"] == "async"
        assert service.put_chunk(upload["upload_id"], 0).status_code == 200
        first = service.complete(upload["upload_id"])
        assert first.status_code == 202 and first.json()["status"] == "transcoding"
        done = service.wait_for_events(lambda e: e["upload_id"] == upload["upload_id"]
                                       and e["event"] in TERMINAL_EVENTS)
        assert [e["event"] for e in done] == ["publish_succeeded"]
        assert service.status(upload["upload_id"])["status"] == "published"
        again = service.complete(upload["upload_id"])
        assert again.status_code == 200 and again.json()["video_id"] == done[0]["video_id"]
        events = service.events(lambda e: e["upload_id"] == upload["upload_id"])
        started = next(e for e in events if e["event"] == "transcode_started")
        assert started["transcode_mode"] == "async" and started["queue_wait_ms"] >= 0
        after_complete = [e for e in events if e["event"] not in ("upload_started", "chunk_uploaded")]
        assert len({e["trace_id"] for e in after_complete}) == 1  # the queue carried the trace context
    finally:
        service.admin("DELETE", "/admin/flags/transcode_mode")
        time.sleep(PROPAGATION_S)


def test_canary_users_carry_the_canary_version(service):
    assert service.admin("PUT", "/admin/flags/release", json={"rollout": {"canary": 100}}).status_code == 200
    time.sleep(PROPAGATION_S)
    try:
        result = service.publish(chunk_count=1)
        assert result["flags"]["release"] == "canary"
        events = service.events(lambda e: e["upload_id"] == result["upload_id"])
        assert {e["service_version"] for e in events} == {SERVICE_VERSIONS["canary"]}
        assert {e["flags"]["release"] for e in events} == {"canary"}
    finally:
        service.admin("DELETE", "/admin/flags/release")
        time.sleep(PROPAGATION_S)


def test_drop_events_fault_is_a_real_gap_the_counters_expose(service):
    before_lost = service.metric("obslab_events_lost_total", reason="dropped_fault")
    set_fault(service, "lossy-sink", {"kind": "drop_events", "target": "event_sink",
                                      "selector": {"region": ["us-west"]}})
    try:
        results = [service.publish(chunk_count=1, region="us-west") for _ in range(3)]
    finally:
        clear_fault(service, "lossy-sink")
    assert all(r["complete_status"] == 200 for r in results)
    ids = {r["upload_id"] for r in results}
    assert service.events(lambda e: e["upload_id"] in ids) == []  # really missing from the file
    per_attempt = 6  # upload_started, chunk_uploaded, upload_completed, transcode_started/completed, publish_succeeded
    assert service.metric("obslab_events_lost_total", reason="dropped_fault") - before_lost == 3 * per_attempt
    # The outcome counter still counts what happened: reconciliation against events finds the gap.
    succeeded_events = len(service.events(lambda e: e["event"] == "publish_succeeded"))
    assert service.metric("obslab_publish_outcomes_total", outcome="succeeded") == succeeded_events + 3
