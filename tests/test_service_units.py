"""Fast, in-process tests of the service's pure logic and of the app with injected telemetry."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import Counter

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from demo_service.app import create_app
from demo_service.config import parse_instrumentation
from demo_service.faults import FaultSpecError, matching, parse_fault, selected
from demo_service.flags import FlagSpecError, parse_flag, user_bucket, variant_for
from demo_service.telemetry.events import EventFile, UserHasher, event_files, event_timestamp, read_events
from contract.events import event_schema

VALIDATOR = jsonschema.Draft202012Validator(event_schema())
COHORT = {"region": "eu-west", "app_version": "5.4.0", "network_type": "4g", "media_size_bucket": "large",
          "release": "stable"}


# --- faults ----------------------------------------------------------------------------------------
def test_parse_fault_normalizes_and_validates():
    f = parse_fault("slow-eu", {"kind": "latency", "target": "transcoder", "selector": {"region": "eu-west",
                                                                                       "percentage": 25},
                                "params": {"latency_ms": 800}, "duration_s": 60}, now=1000.0)
    assert f.selector == {"region": ("eu-west",)} and f.percentage == 25 and f.param("latency_ms") == 800
    assert f.expires_at == 1060.0
    assert parse_fault("x", {"kind": "errors", "target": "api"}).param  # defaults fill in


@pytest.mark.parametrize("spec, field", [
    ({"kind": "nope", "target": "api"}, "kind"),
    ({"kind": "latency", "target": "moon"}, "target"),
    ({"kind": "cache_off", "target": "api"}, "target"),
    ({"kind": "errors", "target": "api", "route": "upload"}, "route"),
    ({"kind": "errors", "target": "db", "route": "chunk"}, "route"),
    ({"kind": "errors", "target": "api", "selector": {"region": ["mars"]}}, "selector.region"),
    ({"kind": "errors", "target": "api", "selector": {"colour": ["red"]}}, "selector.colour"),
    ({"kind": "errors", "target": "api", "percentage": 101}, "percentage"),
    ({"kind": "latency", "target": "api", "params": {"latency_ms": -1}}, "params.latency_ms"),
    ({"kind": "latency", "target": "api", "params": {"cpu_ms": 5}}, "params.cpu_ms"),
    ({"kind": "errors", "target": "api", "extra": 1}, "extra"),
])
def test_parse_fault_names_the_bad_field(spec, field):
    with pytest.raises(FaultSpecError) as e:
        parse_fault("f", spec, now=0.0)
    assert e.value.field == field


def test_matching_by_target_route_selector_and_expiry():
    faults = [parse_fault("eu", {"kind": "latency", "target": "transcoder", "selector": {"region": ["eu-west"]}}),
              parse_fault("us", {"kind": "latency", "target": "transcoder", "selector": {"region": ["us-east"]}}),
              parse_fault("chunk", {"kind": "errors", "target": "api", "route": "chunk"}),
              parse_fault("old", {"kind": "errors", "target": "transcoder", "expires_at": 5.0})]
    names = lambda fs: [f.name for f in fs]  # noqa: E731
    assert names(matching(faults, target="transcoder", cohort=COHORT, key="k", now=10.0)) == ["eu"]
    assert names(matching(faults, target="transcoder", cohort=COHORT, key="k", now=1.0)) == ["eu", "old"]
    assert names(matching(faults, target="api", cohort=COHORT, key="k", route="chunk")) == ["chunk"]
    assert names(matching(faults, target="api", cohort=COHORT, key="k", route="feed")) == []
    unknown = dict(COHORT, region=None)
    assert names(matching(faults, target="transcoder", cohort=unknown, key="k", now=10.0)) == []


@given(st.floats(min_value=0, max_value=100))
@settings(max_examples=50, deadline=None)
def test_percentage_selection_is_deterministic_and_close_to_the_share(pct):
    keys = [f"req-{i}" for i in range(4000)]
    picked = [selected("f", k, pct) for k in keys]
    assert picked == [selected("f", k, pct) for k in keys]
    assert abs(sum(picked) / len(keys) * 100 - pct) < 4.0


# --- flags -----------------------------------------------------------------------------------------
def test_rollout_is_sticky_as_the_percentage_grows():
    users = [f"u_{i:016x}" for i in range(3000)]
    cohorts = []
    for pct in (1, 5, 25, 100):
        spec = parse_flag("release", {"rollout": {"canary": pct}})
        cohorts.append({u for u in users if variant_for(spec, u) == "canary"})
    for smaller, larger in zip(cohorts, cohorts[1:]):
        assert smaller <= larger
    assert len(cohorts[-1]) == len(users)
    assert 0.15 < len(cohorts[2]) / len(users) < 0.35
    assert all(0 <= user_bucket("release", u) < 100 for u in users[:50])


@pytest.mark.parametrize("name, spec, field", [
    ("colour", {}, "name"),
    ("release", {"default": "beta"}, "default"),
    ("release", {"rollout": {"beta": 5}}, "rollout.beta"),
    ("release", {"rollout": {"canary": 150}}, "rollout.canary"),
    ("transcode_mode", {"rollout": {"sync": 60, "async": 50}}, "rollout"),
])
def test_parse_flag_names_the_bad_field(name, spec, field):
    with pytest.raises(FlagSpecError) as e:
        parse_flag(name, spec)
    assert e.value.field == field


def test_instrumentation_parts():
    assert parse_instrumentation("off") == frozenset()
    assert parse_instrumentation("all") == {"events", "metrics", "tracing"}
    assert parse_instrumentation("events, tracing") == {"events", "tracing"}
    with pytest.raises(ValueError, match="OBSLAB_INSTRUMENTATION"):
        parse_instrumentation("logs")


# --- the event file --------------------------------------------------------------------------------
def _writer(path: str, worker: int, lines: int, max_bytes: int) -> None:
    f = EventFile(path, max_bytes=max_bytes, backup_count=50)
    for i in range(lines):
        f.write_line((json.dumps({"worker": worker, "i": i, "pad": "x" * (worker * 37 % 300)}) + "\n").encode())


def test_concurrent_writers_with_rotation_lose_and_tear_nothing(tmp_path):
    path = tmp_path / "events" / "events.jsonl"
    procs = [multiprocessing.get_context("fork").Process(target=_writer, args=(str(path), w, 1500, 64 * 1024))
             for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    files = event_files(path.parent)
    assert len(files) > 3  # it did rotate
    seen = Counter()
    for e in read_events(path.parent):  # json.loads of every line: a torn line would raise
        seen[e["worker"]] += 1
    assert seen == {w: 1500 for w in range(4)}
    for w in range(4):  # each writer's lines keep their order across files
        order = [e["i"] for e in read_events(path.parent) if e["worker"] == w]
        assert order == sorted(order)


def test_user_hash_is_keyed_stable_and_never_raw(tmp_path):
    h1, h2 = UserHasher(tmp_path), UserHasher(tmp_path)
    assert h1("alice") == h2("alice") != h1("bob")
    assert h1("alice").startswith("u_") and "alice" not in h1("alice")
    assert UserHasher(tmp_path / "other")("alice") != h1("alice")  # a different key
    assert oct(os.stat(tmp_path / "user-hash.key").st_mode)[-3:] == "600"


def test_event_timestamp_format():
    assert event_timestamp(0.5) == "1970-01-01T00:00:00.500Z"


# --- the app in-process, with injected registry and span exporter -----------------------------------------
@pytest.fixture
def app_parts(tmp_path):
    registry, exporter = CollectorRegistry(), InMemorySpanExporter()
    app = create_app({"DATA_DIR": str(tmp_path), "METRICS_REGISTRY": registry, "SPAN_EXPORTER": exporter,
                      "TRACE_SAMPLE_RATIO": 1.0, "ADMIN_TOKEN": "secret-token", "ASYNC_WORKERS": 0,
                      "TRANSCODER_URL": "http://127.0.0.1:9"})  # nothing listens: transcodes fail fast
    return app, app.test_client(), registry, exporter, tmp_path / "events"


def test_in_process_events_metrics_and_spans_agree(app_parts):
    app, client, registry, exporter, events_dir = app_parts
    traceparent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    r = client.post("/v1/uploads", json={"media_size_bytes": 5, "chunk_count": 1, "app_version": "5.2.0",
                                         "region": "ap-south", "network_type": "3g", "user_id": "carol"},
                    headers={"traceparent": traceparent, "X-Synthetic": "1"})
    assert r.status_code == 201
    uid = r.json["upload_id"]
    assert client.put(f"/v1/uploads/{uid}/chunks/0", data=b"abc", headers={"traceparent": traceparent}).status_code == 200
    r = client.post(f"/v1/uploads/{uid}/complete", headers={"traceparent": traceparent})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.json["error"]["code"] == "dependency_unavailable" and r.json["status"] == "failed"
    events = read_events(events_dir)
    for e in events:
        assert not list(VALIDATOR.iter_errors(e)), e
    assert [e["event"] for e in events] == ["upload_started", "chunk_uploaded", "upload_completed",
                                            "transcode_started", "transcode_failed", "publish_failed"]
    assert {e["trace_id"] for e in events} == {"ab" * 16} and all(e["synthetic"] for e in events)
    for name, n in Counter(e["event"] for e in events).items():
        assert registry.get_sample_value("obslab_events_total", {"event": name}) == n
    assert registry.get_sample_value("obslab_publish_outcomes_total", {
        "outcome": "failed", "region": "ap-south", "app_version": "5.2.0", "network_type": "3g",
        "media_size_bucket": "small", "release": "stable", "transcode_mode": "sync"}) == 1
    assert registry.get_sample_value("obslab_transcode_failures_total", {"error_class": "dependency_unavailable"}) == 1
    spans = exporter.get_finished_spans()
    names = {s.name for s in spans}
    assert {"upload.create", "upload.complete", "transcode", "publish"} - names == {"publish"}  # failed before publish
    assert all(format(s.context.trace_id, "032x") == "ab" * 16 for s in spans)
    event_span_ids = {e["span_id"] for e in events}
    assert event_span_ids <= {format(s.context.span_id, "016x") for s in spans}
    transcode_span = next(s for s in spans if s.name == "transcode")
    assert transcode_span.attributes["request_id"] == events[0]["request_id"]


def test_server_spans_name_the_route_and_carry_the_http_attributes(app_parts):
    """The server span (demo_service/telemetry/http_tracing.py) is named by route and carries the request's
    HTTP attributes, its status (a 5xx is an error) and the handler's annotations; health checks get none; a
    traceparent makes it a child of the caller's span."""
    from opentelemetry.trace import SpanKind, StatusCode

    app, client, registry, exporter, events_dir = app_parts
    uid = client.post("/v1/uploads?src=test", json={"media_size_bytes": 5, "chunk_count": 1, "app_version": "5.2.0",
                                                    "region": "us-west", "network_type": "wifi", "user_id": "erin"},
                      headers={"User-Agent": "obslab-test/1"}).json["upload_id"]
    client.put(f"/v1/uploads/{uid}/chunks/0", data=b"abc",
               headers={"traceparent": "00-" + "ef" * 16 + "-" + "12" * 8 + "-01"})
    client.get("/healthz")
    client.get("/no/such/route")
    client.post(f"/v1/uploads/{uid}/complete")  # the transcoder is unreachable: 503
    servers = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert [s.name for s in servers] == ["POST /v1/uploads", "PUT /v1/uploads/<upload_id>/chunks/<int:n>", "GET",
                                         "POST /v1/uploads/<upload_id>/complete"]
    create, chunk, unmatched, complete = servers
    assert dict(create.attributes) == {
        "http.request.method": "POST", "url.path": "/v1/uploads",
        "url.scheme": "http", "server.address": "localhost", "network.protocol.version": "1.1",
        "client.address": "127.0.0.1", "user_agent.original": "obslab-test/1", "url.query": "src=test",
        "http.route": "/v1/uploads", "http.response.status_code": 201}
    assert chunk.parent.span_id == 0x12121212_12121212 and format(chunk.context.trace_id, "032x") == "ef" * 16
    assert chunk.attributes["chunk_index"] == 0 and chunk.attributes["http.response.status_code"] == 200
    assert "http.route" not in unmatched.attributes and unmatched.attributes["http.response.status_code"] == 404
    assert complete.attributes["http.response.status_code"] == 503 and complete.status.status_code is StatusCode.ERROR
    assert create.status.status_code is StatusCode.UNSET


def test_drop_events_fault_drops_lines_and_counts_them(app_parts):
    app, client, registry, _, events_dir = app_parts
    auth = {"Authorization": "Bearer secret-token"}
    r = client.put("/admin/faults/lose", json={"kind": "drop_events", "target": "event_sink"}, headers=auth)
    assert r.status_code == 200
    body = {"media_size_bytes": 5, "chunk_count": 2, "app_version": "5.2.0", "region": "us-west",
            "network_type": "wifi", "user_id": "dave"}
    uid = client.post("/v1/uploads", json=body).json["upload_id"]
    assert client.put(f"/v1/uploads/{uid}/chunks/0", data=b"a").status_code == 200
    events = read_events(events_dir)
    assert [e["event"] for e in events] == ["fault_changed"]  # audit events are never dropped
    assert registry.get_sample_value("obslab_events_lost_total", {"reason": "dropped_fault"}) == 2
    assert registry.get_sample_value("obslab_events_total", {"event": "upload_started"}) is None
    assert client.delete("/admin/faults/lose", headers=auth).status_code == 200
    assert client.put(f"/v1/uploads/{uid}/chunks/1", data=b"b").status_code == 200
    assert [e["event"] for e in read_events(events_dir)][-1] == "chunk_uploaded"


def test_admin_refuses_non_loopback_and_bad_tokens(app_parts):
    app, client, *_ = app_parts
    assert client.get("/admin/faults").status_code == 401
    assert client.get("/admin/faults", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/admin/faults", headers={"Authorization": "Basic secret-token"}).status_code == 401
    assert client.get("/admin/faults", headers={"Authorization": "Bearer secret-token"}).status_code == 200
    remote = client.get("/admin/faults", headers={"Authorization": "Bearer secret-token"},
                        environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert remote.status_code == 403


def test_openapi_describes_every_route(app_parts):
    app, client, *_ = app_parts
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    described = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<int:n>", "{n}").replace("<upload_id>", "{upload_id}").replace("<name>", "{name}")
        served |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert described == served



def test_openapi_describes_the_private_audit_header_the_fault_routes_act_on(app_parts):
    _, client, *_ = app_parts
    auth = {"Authorization": "Bearer secret-token"}
    refused = client.put("/admin/faults/quiet", json={"kind": "errors", "target": "transcoder"},
                         headers={**auth, "X-Obslab-Audit": "loud"})
    assert refused.status_code == 400 and "X-Obslab-Audit" in refused.json["error"]["message"]
    spec = client.get("/openapi.json").json
    for path, method in (("/admin/faults", "delete"), ("/admin/faults/{name}", "put"),
                         ("/admin/faults/{name}", "delete")):
        op = spec["paths"][path][method]
        header = next(p for p in op["parameters"] if p["name"] == "X-Obslab-Audit")
        assert header["in"] == "header" and header["schema"] == {"enum": ["private"]}, (path, method)
        assert "X-Obslab-Audit" in op["responses"]["400"]["description"] or method == "put", (path, method)

def test_cancel_as_failure_fault_ends_a_cancel_as_a_failed_publish(app_parts):
    app, client, registry, _, events_dir = app_parts
    auth = {"Authorization": "Bearer secret-token"}
    r = client.put("/admin/faults/definition", json={"kind": "cancel_as_failure", "target": "api", "route": "cancel",
                                                     "selector": {"region": ["us-west"]}}, headers=auth)
    assert r.status_code == 200, r.json
    body = {"media_size_bytes": 5, "chunk_count": 2, "app_version": "5.2.0", "region": "us-west",
            "network_type": "wifi", "user_id": "erin"}
    uid = client.post("/v1/uploads", json=body).json["upload_id"]
    r = client.post(f"/v1/uploads/{uid}/cancel", json={"reason": "user_cancelled"})
    assert r.status_code == 200 and r.json["status"] == "failed"
    assert client.get(f"/v1/uploads/{uid}").json["status"] == "failed"
    assert client.post(f"/v1/uploads/{uid}/cancel", json={}).status_code == 409  # already terminal
    events = [e for e in read_events(events_dir) if e.get("upload_id") == uid]
    assert [e["event"] for e in events] == ["upload_started", "publish_failed"]
    assert events[-1]["error_class"] == "internal"
    assert registry.get_sample_value("obslab_publish_outcomes_total", {
        "outcome": "failed", "region": "us-west", "app_version": "5.2.0", "network_type": "wifi",
        "media_size_bucket": "small", "release": "stable", "transcode_mode": "sync"}) == 1
    # Another cohort's cancel is a cancel.
    other = client.post("/v1/uploads", json={**body, "region": "eu-west"}).json["upload_id"]
    assert client.post(f"/v1/uploads/{other}/cancel", json={}).json["status"] == "cancelled"
