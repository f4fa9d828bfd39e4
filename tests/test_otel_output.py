"""OpenTelemetry-native output: spans as OTLP/JSON (the Collector file exporter's format) and lifecycle events
as OpenTelemetry log records with an event name, beside the JSONL contract."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from prometheus_client import CollectorRegistry

from demo_service.app import create_app
from demo_service.config import config_from_env
from demo_service.telemetry.events import read_events
from demo_service.telemetry.logs import EVENT_LOGS_FILE
from demo_service.telemetry.tracing import SPANS_FILE, parse_otlp_json_line
from toolkit.lab.web.explorer import otlp_spans

TRACE = "ab" * 16


def _publish(client, traceparent=None):
    headers = {"traceparent": traceparent} if traceparent else {}
    r = client.post("/v1/uploads", json={"media_size_bytes": 5, "chunk_count": 1, "app_version": "5.2.0",
                                         "region": "ap-south", "network_type": "3g", "user_id": "carol"},
                    headers=headers)
    assert r.status_code == 201
    uid = r.json["upload_id"]
    assert client.put(f"/v1/uploads/{uid}/chunks/0", data=b"abc", headers=headers).status_code == 200
    client.post(f"/v1/uploads/{uid}/complete", headers=headers)


def _app(tmp_path, **config):
    return create_app({"DATA_DIR": str(tmp_path), "METRICS_REGISTRY": CollectorRegistry(), "TRACE_SAMPLE_RATIO": 1.0,
                       "ASYNC_WORKERS": 0, "TRANSCODER_URL": "http://127.0.0.1:9", **config})


def _hex_to_base64(document):
    """What an OTLP/JSON reader does before protobuf's JSON parser: hex IDs back to bytes (base64 in proto3 JSON)."""
    if isinstance(document, dict):
        return {k: (base64.b64encode(bytes.fromhex(v)).decode() if k in ("traceId", "spanId", "parentSpanId")
                    else _hex_to_base64(v)) for k, v in document.items()}
    if isinstance(document, list):
        return [_hex_to_base64(v) for v in document]
    return document


def test_span_file_written_by_the_service_is_otlp_json(tmp_path):
    app = _app(tmp_path)
    _publish(app.test_client(), f"00-{TRACE}-{'cd' * 8}-01")
    provider = app.extensions["obslab.telemetry"].tracer_provider
    provider.force_flush()
    lines = (tmp_path / "traces" / SPANS_FILE).read_text().splitlines()
    provider.shutdown()
    assert lines
    spans = []
    for line in lines:
        document = json.loads(line)
        assert list(document) == ["resourceSpans"]
        for rs in document["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    # OTLP/JSON: lowercase hex IDs, int64 times as strings, enums as integers.
                    assert len(s["traceId"]) == 32 and s["traceId"] == s["traceId"].lower()
                    assert len(s["spanId"]) == 16 and int(s["spanId"], 16)
                    assert isinstance(s["startTimeUnixNano"], str) and int(s["endTimeUnixNano"]) >= int(
                        s["startTimeUnixNano"]) > 1.7e18
                    assert isinstance(s["kind"], int)
                    spans.append(s)
        # protobuf's own parser reads the line as an ExportTraceServiceRequest, with the right trace IDs.
        request = json_format.Parse(json.dumps(_hex_to_base64(document)), ExportTraceServiceRequest())
        ids = {s.trace_id.hex() for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans}
        assert ids == {TRACE}
        assert parse_otlp_json_line(line, ExportTraceServiceRequest()) == request
        service = {kv.key: kv.value.string_value for kv in request.resource_spans[0].resource.attributes}
        assert service["service.name"] == "publish-api"
    names = {s["name"] for s in spans}
    assert {"upload.create", "upload.complete", "transcode"} <= names
    transcode = next(s for s in spans if s["name"] == "transcode")
    request_id = next(a for a in transcode["attributes"] if a["key"] == "request_id")
    assert set(request_id["value"]) == {"stringValue"}  # attribute shape {"key": .., "value": {"stringValue": ..}}
    # The explorer reads the same file back in its own shape.
    explored = [s for line in lines for s in otlp_spans(json.loads(line))]
    assert {s["span_id"] for s in explored} == {s["spanId"] for s in spans}
    assert all(s["trace_id"] == TRACE and s["service"] == "publish-api" for s in explored)
    assert {s["kind"] for s in explored} >= {"SERVER", "INTERNAL"}


def test_event_log_records_carry_the_event_name_and_trace(tmp_path):
    exporter = InMemoryLogRecordExporter()
    app = _app(tmp_path, OTEL_EVENT_LOGS=True, LOG_EXPORTER=exporter, SPAN_EXPORTER=None)
    _publish(app.test_client(), f"00-{TRACE}-{'cd' * 8}-01")
    events = read_events(tmp_path / "events")
    records = exporter.get_finished_logs()
    assert [r.log_record.event_name for r in records] == [e["event"] for e in events]
    assert len(events) >= 5
    for r, e in zip(records, events):
        lr = r.log_record
        assert lr.attributes["event.name"] == e["event"]
        assert lr.attributes["request_id"] == e["request_id"] and lr.attributes["flags.release"] == "stable"
        assert format(lr.trace_id, "032x") == e["trace_id"] == TRACE and format(lr.span_id, "016x") == e["span_id"]
        assert lr.trace_flags.sampled  # the client's traceparent said sampled (-01)
        assert r.resource.attributes["service.name"] == "publish-api"
        assert not any(v is None for v in lr.attributes.values())


def test_event_log_records_of_an_unsampled_trace_say_so(tmp_path):
    exporter = InMemoryLogRecordExporter()
    app = _app(tmp_path, OTEL_EVENT_LOGS=True, LOG_EXPORTER=exporter, SPAN_EXPORTER=None)
    _publish(app.test_client(), f"00-{TRACE}-{'cd' * 8}-00")
    records = exporter.get_finished_logs()
    assert records and all(format(r.log_record.trace_id, "032x") == TRACE for r in records)
    assert not any(r.log_record.trace_flags.sampled for r in records)


def test_event_log_records_are_off_by_default(tmp_path):
    app = _app(tmp_path, SPAN_EXPORTER=None)
    assert app.extensions["obslab.telemetry"].event_logs is None
    assert config_from_env({})  == {} and config_from_env({"OBSLAB_OTEL_EVENT_LOGS": "1"}) == {"OTEL_EVENT_LOGS": True}
    with pytest.raises(ValueError, match="OBSLAB_OTEL_EVENT_LOGS: expected 1 or 0, got 'maybe'"):
        config_from_env({"OBSLAB_OTEL_EVENT_LOGS": "maybe"})


def test_event_log_file_is_otlp_json_without_an_endpoint(tmp_path):
    app = _app(tmp_path, OTEL_EVENT_LOGS=True)
    _publish(app.test_client(), f"00-{TRACE}-{'cd' * 8}-01")
    emitter = app.extensions["obslab.telemetry"].event_logs
    emitter.provider.force_flush()
    lines = (tmp_path / "logs" / EVENT_LOGS_FILE).read_text().splitlines()
    emitter.shutdown()
    app.extensions["obslab.telemetry"].tracer_provider.shutdown()
    records = []
    for line in lines:
        assert list(json.loads(line)) == ["resourceLogs"]
        request = parse_otlp_json_line(line, ExportLogsServiceRequest())
        records += [lr for rl in request.resource_logs for sl in rl.scope_logs for lr in sl.log_records]
    assert [r.event_name for r in records] == [e["event"] for e in read_events(tmp_path / "events")]
    assert all(r.trace_id.hex() == TRACE for r in records)
    assert '"traceId":"' + TRACE + '"' in lines[0]  # hex in the file, as OTLP/JSON requires


def test_multiprocess_mode_drops_exemplars(tmp_path, monkeypatch):
    """Why the latency histogram has no trace exemplars (docs/service.md): prometheus_client's multiprocess
    values do not store them. When a release does, this fails, and exemplars can be added."""
    from prometheus_client.values import MultiProcessValue

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    value = MultiProcessValue(process_identifier=lambda: 1)("histogram", "h_bucket", "h", ("le",), ("1.0",), "")
    value.set_exemplar(object())
    assert value.get_exemplar() is None


def test_collector_config_wires_every_pipeline_to_defined_components():
    config = __import__("yaml").safe_load(
        (Path(__file__).resolve().parents[1] / "dashboards" / "otel-collector" / "config.yaml").read_text())
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"traces", "logs"}
    assert pipelines["traces"]["exporters"] == ["otlp/jaeger", "file/traces"]  # fan-out: Jaeger and a file
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline[kind]) <= set(config[kind]), (kind, pipeline[kind])
    assert set(config["service"]["extensions"]) <= set(config["extensions"])


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "otlp"


def test_the_specifications_own_examples_read_back():
    """opentelemetry-proto's OTLP/JSON examples (uppercase hex IDs, an eventName) parse with the same reader, and
    the explorer reads the trace example: the reader is the format's, not only the writer's mirror."""
    trace_line = (FIXTURES / "trace.jsonl").read_text()
    request = parse_otlp_json_line(trace_line, ExportTraceServiceRequest())
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert (span.trace_id.hex(), span.parent_span_id.hex()) == ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b173")
    explored = list(otlp_spans(json.loads(trace_line)))
    assert explored == [{"name": "I'm a server span", "trace_id": "5b8efff798038103d269b633813fc60c",
                         "span_id": "eee19b7ec3c1b174", "parent_span_id": "eee19b7ec3c1b173", "service": "my.service",
                         "kind": "SERVER", "status": "UNSET", "start_ns": 1544712660000000000,
                         "end_ns": 1544712661000000000, "attributes": {"my.span.attr": "some value"}}]
    logs = parse_otlp_json_line((FIXTURES / "events.jsonl").read_text(), ExportLogsServiceRequest())
    record = logs.resource_logs[0].scope_logs[0].log_records[0]
    assert record.event_name == "browser.page_view"


@pytest.mark.slow
def test_gunicorn_workers_write_event_log_records_beside_the_jsonl(make_service):
    """Real processes: two forked gunicorn workers, OBSLAB_OTEL_EVENT_LOGS=1, no endpoint: every event line has its
    log record in DATA_DIR/logs (flushed at stop), with the same name and trace ID."""
    service = make_service(extra_env={"OBSLAB_OTEL_EVENT_LOGS": "1"})
    for _ in range(3):
        assert service.publish(chunk_count=2)["complete_status"] == 200
    service.processes.stop()  # SIGTERM: the workers' batch processors flush on exit
    events = service.events()
    assert sum(e["event"] == "publish_succeeded" for e in events) == 3
    records = []
    for line in (service.data_dir / "logs" / EVENT_LOGS_FILE).read_text().splitlines():
        request = parse_otlp_json_line(line, ExportLogsServiceRequest())
        records += [lr for rl in request.resource_logs for sl in rl.scope_logs for lr in sl.log_records]
    # An event written outside any span has zero IDs in the JSONL and none on its record.
    assert sorted((r.event_name, r.trace_id.hex() or "0" * 32) for r in records) == sorted(
        (e["event"], e["trace_id"]) for e in events)
