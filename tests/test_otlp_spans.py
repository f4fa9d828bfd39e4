"""The direct OTLP/JSON span encoder writes, byte for byte, what opentelemetry-proto's encoder and protobuf's JSON
mapping write (the reference path it replaces in the span exporter, at a fraction of the cost)."""

from __future__ import annotations

import json
import logging

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from demo_service.telemetry.jsonline import json_line
from demo_service.telemetry.otlp_spans import encode_spans_json
from demo_service.telemetry.tracing import SPANS_FILE, OtlpJsonSpanExporter, otlp_json_line


def _reference(spans) -> bytes:
    return otlp_json_line(encode_spans(spans))


def _direct(spans) -> bytes:
    return json_line(encode_spans_json(spans))  # as the exporter writes it


def _provider(resource: Resource, limits: SpanLimits | None = None):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource, span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _varied_spans():
    """Spans exercising every part of the mapping: kinds, parents (local, remote), trace state, every attribute
    type (non-finite doubles, an int beyond int64, empty arrays, non-ASCII), events, links, statuses, drops,
    scopes with and without version, schema URL and attributes, two resources."""
    provider, exporter = _provider(Resource.create({"service.name": "publish-api", "service.instance.id": "h-1",
                                                    "count": 3, "ratio": 0.5, "tags": ("a", "b")}))
    tracer = provider.get_tracer("demo_service", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.21.0",
                                 attributes={"scope.attr": "x"})
    bare = provider.get_tracer("bare")
    remote = SpanContext(trace_id=int("ab" * 16, 16), span_id=0xCD, is_remote=True,
                         trace_flags=TraceFlags(1), trace_state=TraceState([("vendor", "v1"), ("other", "o2")]))
    parent_ctx = trace.set_span_in_context(NonRecordingSpan(remote))
    attributes = {"s": "text", "empty": "", "unicode": "Zürich ✓", "b": True, "f": False, "i": 42, "zero": 0,
                  "neg": -7, "big": 2**70, "d": 1.5, "d0": 0.0, "dexp": 1e-7, "nan": float("nan"),
                  "inf": float("inf"), "ninf": float("-inf"), "ss": ("a", "b"), "bs": (True, False),
                  "is": (1, 2), "ds": (0.25, 2.0), "none_seq": ()}
    with tracer.start_as_current_span("GET /v1/feed", context=parent_ctx, kind=SpanKind.SERVER,
                                      attributes=attributes) as server:
        server.add_event("cache.miss", {"key": "k", "n": 3})
        server.add_event("no-attributes")
        with tracer.start_as_current_span("child", kind=SpanKind.CLIENT, links=[
                Link(remote, {"link.attr": 1}), Link(server.get_span_context())]) as child:
            child.set_status(Status(StatusCode.ERROR, "boom"))
        with bare.start_as_current_span("", kind=SpanKind.PRODUCER) as unnamed:
            unnamed.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span("consumer", kind=SpanKind.CONSUMER) as consumer:
            consumer.set_status(Status(StatusCode.ERROR))
        with tracer.start_as_current_span("internal"):
            pass
    limited, limited_exporter = _provider(Resource({"service.name": "transcoder"},
                                                   schema_url="https://opentelemetry.io/schemas/1.20.0"),
                                          SpanLimits(max_span_attributes=2, max_events=2, max_links=1,
                                                     max_event_attributes=1, max_link_attributes=1))
    with limited.get_tracer("t").start_as_current_span("limited", attributes={"a": 1, "b": 2, "c": 3},
                                                       links=[Link(remote, {"x": 1, "y": 2}), Link(remote)]) as s:
        s.add_event("e0")
        s.add_event("e1")
        s.add_event("e2")
        s.add_event("e3", {"p": 1, "q": 2})  # kept, with a dropped attribute
    return list(exporter.get_finished_spans()) + list(limited_exporter.get_finished_spans())


def test_direct_encoding_is_byte_for_byte_the_reference_encoding(caplog):
    spans = _varied_spans()
    assert len(spans) == 6
    with caplog.at_level(logging.ERROR):
        reference = _reference(spans)
        direct = _direct(spans)
    assert direct == reference
    document = json.loads(direct)
    assert len(document["resourceSpans"]) == 2  # grouped by resource, then by scope
    assert len(document["resourceSpans"][0]["scopeSpans"]) == 2
    # The int beyond int64 is left out by both (and logged), the rest is there.
    server = next(s for rs in document["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]
                  if s.get("name") == "GET /v1/feed")
    keys = [a["key"] for a in server["attributes"]]
    assert "big" not in keys and {"s", "nan", "none_seq"} <= set(keys)
    assert "Failed to encode key big" in caplog.text


def test_one_span_at_a_time_matches_too():
    for span in _varied_spans():
        assert _direct([span]) == _reference([span])


def test_the_exporter_writes_the_reference_line(tmp_path):
    spans = _varied_spans()
    exporter = OtlpJsonSpanExporter(tmp_path / SPANS_FILE)
    exporter.export(spans)
    exporter.export(spans[:2])  # the second batch uses the cached resource encodings
    exporter.shutdown()
    lines = (tmp_path / SPANS_FILE).read_bytes().splitlines(keepends=True)
    assert lines == [_reference(spans), _reference(spans[:2])]
