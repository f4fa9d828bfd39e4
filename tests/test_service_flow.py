"""The real service (gunicorn, 2 workers + transcoder): publish flow, events, control plane, metrics."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import jsonschema
import pytest

from conftest import new_traceparent
from contract.events import ALL_EVENTS, TERMINAL_EVENTS, event_schema
from toolkit.lab.web.explorer import otlp_spans

pytestmark = pytest.mark.slow

VALIDATOR = jsonschema.Draft202012Validator(event_schema())


def assert_valid(events: list[dict]) -> None:
    for e in events:
        errors = sorted(VALIDATOR.iter_errors(e), key=str)
        assert not errors, f"{e['event']}: {errors[0].message}"


def of_upload(upload_id: str):
    return lambda e: e["upload_id"] == upload_id


def test_publish_flow_emits_the_exact_sequence_with_one_request_id_and_trace_id(service):
    traceparent, trace_id = new_traceparent()
    result = service.publish(chunk_count=3, traceparent=traceparent, region="eu-west", network_type="4g")
    assert result["complete_status"] == 200, result
    assert result["complete"]["status"] == "published"
    events = service.events(of_upload(result["upload_id"]))
    assert [e["event"] for e in events] == [
        "upload_started", "chunk_uploaded", "chunk_uploaded", "chunk_uploaded", "upload_completed",
        "transcode_started", "transcode_completed", "publish_succeeded"]
    assert {e["request_id"] for e in events} == {result["request_id"]}
    assert {e["trace_id"] for e in events} == {trace_id}
    assert [e["chunk_index"] for e in events if e["event"] == "chunk_uploaded"] == [0, 1, 2]
    assert events[-1]["video_id"] == result["complete"]["video_id"]
    assert all(e["region"] == "eu-west" and e["network_type"] == "4g" for e in events)
    assert all(e["user_id"].startswith("u_") for e in events)
    assert_valid(events)
    assert service.status(result["upload_id"])["status"] == "published"


def test_client_request_id_is_the_correlation_id(service):
    upload = service.create_upload(headers={"X-Request-ID": "client-req-0001"})
    assert upload["request_id"] == "client-req-0001"
    events = service.events(of_upload(upload["upload_id"]))
    assert [e["request_id"] for e in events] == ["client-req-0001"]


def test_cancel_yields_upload_cancelled_and_no_publish(service):
    upload = service.create_upload(chunk_count=3)
    assert service.put_chunk(upload["upload_id"], 0).status_code == 200
    r = service.http.post(service.url(f"/v1/uploads/{upload['upload_id']}/cancel"), json={"reason": "changed mind"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    again = service.http.post(service.url(f"/v1/uploads/{upload['upload_id']}/cancel"))
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_terminal"
    late_chunk = service.put_chunk(upload["upload_id"], 1)
    assert late_chunk.status_code == 409
    complete = service.complete(upload["upload_id"])
    assert complete.status_code == 409
    events = service.events(of_upload(upload["upload_id"]))
    assert [e["event"] for e in events] == ["upload_started", "chunk_uploaded", "upload_cancelled"]
    assert events[-1]["reason"] == "changed mind"
    assert_valid(events)


def test_concurrent_duplicate_completes_publish_exactly_once(service):
    upload = service.create_upload(chunk_count=1)
    assert service.put_chunk(upload["upload_id"], 0).status_code == 200
    barrier = threading.Barrier(6)
    responses = []

    def complete():
        barrier.wait()
        responses.append(service.complete(upload["upload_id"]))

    threads = [threading.Thread(target=complete) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Whoever lost the claim answers "in progress" (202) or, once published, the same outcome (200).
    assert {r.status_code for r in responses} <= {200, 202}
    assert sum(r.status_code == 200 for r in responses) >= 1
    assert len({r.json().get("video_id") for r in responses if r.status_code == 200}) == 1
    # And later completes return the same outcome, never a second publish.
    later = service.complete(upload["upload_id"])
    assert later.status_code == 200
    events = service.events(of_upload(upload["upload_id"]))
    names = Counter(e["event"] for e in events)
    assert sum(names[t] for t in TERMINAL_EVENTS) == 1
    assert names["publish_succeeded"] == 1 and names["upload_completed"] == 1 and names["transcode_started"] == 1
    assert later.json()["video_id"] == next(e["video_id"] for e in events if e["event"] == "publish_succeeded")


def test_control_api_refuses_missing_or_wrong_token(service):
    for path in ("/admin/faults", "/admin/flags", "/admin/faults/x"):
        assert service.admin("GET", path, token=None).status_code == 401
        assert service.admin("GET", path, token="wrong").status_code == 401
    r = service.admin("PUT", "/admin/faults/evil", token="wrong", json={"kind": "errors", "target": "api"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert service.admin("GET", "/admin/faults/evil").status_code == 404  # nothing was stored
    assert service.admin("GET", "/admin/faults").status_code == 200


def test_fault_set_through_the_control_api_takes_effect_on_every_worker(service):
    r = service.admin("PUT", "/admin/faults/status-down", json={"kind": "errors", "target": "api", "route": "status"},
                      headers={"X-Actor": "test-suite"})
    assert r.status_code == 200, r.text
    try:
        upload = service.create_upload()
        time.sleep(1.0)  # the documented propagation bound: every worker re-reads within one second
        pids = set()
        codes = []
        for _ in range(40):  # fresh connections spread over both workers
            r = service.http.get(service.url(f"/v1/uploads/{upload['upload_id']}"), headers={"Connection": "close"})
            codes.append(r.status_code)
            pids.add(r.headers.get("X-Worker-Pid"))
        assert set(codes) == {503}, codes
        assert len(pids) == 2, f"requests reached workers {pids}"
    finally:
        assert service.admin("DELETE", "/admin/faults/status-down").status_code == 200
    time.sleep(1.0)
    assert service.http.get(service.url(f"/v1/uploads/{upload['upload_id']}")).status_code == 200
    audit = service.events(lambda e: e["event"] == "fault_changed" and e["change"]["name"] == "status-down")
    assert [(e["change"]["action"], e["actor"]) for e in audit] == [("put", "test-suite"), ("delete", "admin-api")]
    assert all(service.admin_token not in str(e) for e in audit)
    assert_valid(audit)


@pytest.mark.parametrize("method, path, kwargs, status, field", [
    ("POST", "/v1/uploads", {"data": "not json", "headers": {"Content-Type": "application/json"}}, 400, None),
    ("POST", "/v1/uploads", {"json": [1, 2]}, 400, None),
    ("POST", "/v1/uploads", {"json": {"media_size_bytes": 10}}, 422, "chunk_count"),
    ("POST", "/v1/uploads", {"json": {"media_size_bytes": "big", "chunk_count": 1}}, 422, "media_size_bytes"),
    ("POST", "/v1/uploads", {"json": {"media_size_bytes": 10, "chunk_count": 65}}, 422, "chunk_count"),
    ("POST", "/v1/uploads", {"json": {"media_size_bytes": 10, "chunk_count": 1, "app_version": "9.9",
                                      "region": "us-east", "network_type": "wifi", "user_id": "u"}}, 422,
     "app_version"),
    ("POST", "/v1/uploads", {"json": {}, "headers": {"X-Request-ID": "bad id!"}}, 400, "X-Request-ID"),
    ("GET", "/v1/uploads/nope", {}, 400, "upload_id"),
    ("GET", "/v1/uploads/up_000000000000000000000000", {}, 404, "upload_id"),
    ("PUT", "/v1/uploads/up_000000000000000000000000/chunks/0", {"data": b"x"}, 404, "upload_id"),
    ("GET", "/v1/feed?limit=0", {}, 422, "limit"),
    ("GET", "/no/such/route", {}, 404, None),
    ("DELETE", "/v1/feed", {}, 405, None),
])
def test_malformed_requests_get_json_4xx_errors(service, method, path, kwargs, status, field):
    r = service.http.request(method, service.url(path), **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"code", "message", "field"} and error["field"] == field


def test_chunk_errors_oversize_bad_index_bad_attempt(service):
    upload = service.create_upload(chunk_count=2)
    uid = upload["upload_id"]
    assert service.put_chunk(uid, 0, data=b"x" * (upload["max_chunk_bytes"] + 1)).status_code == 413
    assert service.put_chunk(uid, 2).status_code == 422
    assert service.put_chunk(uid, 0, data=b"").status_code == 422
    assert service.put_chunk(uid, 0, headers={"X-Chunk-Attempt": "zero"}).status_code == 400
    r = service.admin("PUT", "/admin/faults/bad", json={"kind": "cache_off", "target": "api"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "target"


def test_transcoder_timeout_fails_the_attempt_with_timeout_class(service):
    r = service.admin("PUT", "/admin/faults/hang", json={"kind": "timeouts", "target": "transcoder",
                                                          "selector": {"app_version": ["5.2.0"]},
                                                          "params": {"timeout_ms": 50}})
    assert r.status_code == 200
    time.sleep(1.0)
    try:
        result = service.publish(chunk_count=1, app_version="5.2.0")
    finally:
        service.admin("DELETE", "/admin/faults/hang")
    assert result["complete_status"] == 503 and result["complete"]["error_class"] == "timeout"
    events = service.events(of_upload(result["upload_id"]))
    assert [e["event"] for e in events][-2:] == ["transcode_failed", "publish_failed"]
    assert {e.get("error_class") for e in events[-2:]} == {"timeout"}
    assert_valid(events)


def test_feed_cache_hits_misses_and_cache_off_fault(service):
    assert service.publish(chunk_count=1)["complete_status"] == 200
    feed = lambda: service.http.get(service.url("/v1/feed?limit=37")).json()  # noqa: E731 (one keep-alive worker)
    first, second = feed(), feed()
    assert (first["cache"], second["cache"]) == ("miss", "hit")
    assert second["videos"] == first["videos"] and len(first["videos"]) >= 1
    assert service.admin("PUT", "/admin/faults/no-cache", json={"kind": "cache_off", "target": "cache"}).status_code == 200
    time.sleep(1.0)
    try:
        assert [feed()["cache"] for _ in range(3)] == ["miss"] * 3
    finally:
        service.admin("DELETE", "/admin/faults/no-cache")
    assert service.metric("obslab_feed_cache_requests_total", result="hit") >= 1


def test_trace_context_crosses_into_the_transcoder(service):
    traceparent, trace_id = new_traceparent(sampled=True)
    assert service.publish(chunk_count=1, traceparent=traceparent)["complete_status"] == 200
    spans_file = service.data_dir / "traces" / "spans.jsonl"
    deadline = time.monotonic() + 30  # spans are exported in batches (every few seconds)
    spans = []
    while time.monotonic() < deadline:
        if spans_file.exists():
            # OTLP/JSON, one batch per line: the explorer's reader flattens it into spans.
            spans = [s for line in spans_file.read_text().splitlines() if trace_id in line
                     for s in otlp_spans(json.loads(line)) if s["trace_id"] == trace_id]
        if {"publish-api", "transcoder"} <= {s["service"] for s in spans} and any(
                s["name"] == "publish" for s in spans):
            break
        time.sleep(0.5)
    by_id = {s["span_id"]: s for s in spans}
    server = next(s for s in spans if s["service"] == "transcoder" and s["kind"] == "SERVER")
    client = by_id[server["parent_span_id"]]  # the API's outgoing HTTP span is the transcoder span's parent
    assert client["service"] == "publish-api" and client["kind"] == "CLIENT"
    assert by_id[client["parent_span_id"]]["name"] == "transcode"
    assert {s["name"] for s in spans} >= {"upload.create", "upload.complete", "transcode", "publish"}
    assert all(s["attributes"].get("request_id") for s in spans if s["name"] in ("transcode", "publish"))
    assert service.metric("obslab_process_cpu_seconds_total", service="publish-api") > 0
    assert service.metric("obslab_process_resident_memory_bytes", service="publish-api") > 0
