"""OpenTelemetry tracing: resource, parent-based ratio sampling, export, Flask + requests instrumentation.

Spans go to OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, else to
``DATA_DIR/traces/spans.jsonl`` as OTLP/JSON: one ``ExportTraceServiceRequest`` per line and
per batch (one ``os.write``), written straight from the SDK spans (``otlp_spans``: the same document
opentelemetry-proto's encoder and protobuf's JSON mapping make, at a fraction of their cost), so the
file replays into any OTLP backend through the Collector's otlpjsonfile receiver. Tests inject an exporter (e.g. ``InMemorySpanExporter``),
exported synchronously. The provider is per app, never the global one, so several
apps (tests) can live in one process.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from pathlib import Path
from typing import Sequence

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (BatchSpanProcessor, SimpleSpanProcessor, SpanExporter,
                                            SpanExportResult)
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult, TraceIdRatioBased

from demo_service.telemetry.jsonline import json_line
from demo_service.telemetry.otlp_spans import encode_spans_json

__all__ = ["OtlpJsonSpanExporter", "OtlpJsonFile", "otlp_json_line", "parse_otlp_json_line", "service_resource",
           "make_tracer_provider", "instrument_requests_once", "ROOT_CONTEXT", "SkipPathsSampler", "current_ids",
           "ZERO_TRACE_ID", "ZERO_SPAN_ID", "SPANS_FILE"]

SPANS_FILE = "spans.jsonl"
ZERO_TRACE_ID = "0" * 32
ZERO_SPAN_ID = "0" * 16


# OTLP/JSON differs from protobuf's canonical JSON mapping in one point: trace and span IDs are hex strings,
# not base64 (OTLP specification, "JSON Protobuf Encoding"). Enums are integers, int64 values strings.
_OTLP_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId"})


def _ids(document: dict, convert) -> dict:
    """``document`` (an Export{Trace,Logs}ServiceRequest as a dict) with its span and log record IDs, and those of
    span links, rewritten in place by ``convert``. Only these places hold IDs: walking just them is what keeps the
    encoding cheap (a generic recursive walk cost as much as protobuf's own JSON mapping)."""
    def fix(item: dict) -> None:
        for key in ("traceId", "spanId", "parentSpanId"):
            value = item.get(key)
            if value:
                item[key] = convert(value)

    for resource_spans in document.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                fix(span)
                for link in span.get("links", ()):
                    fix(link)
    for resource_logs in document.get("resourceLogs", ()):
        for scope_logs in resource_logs.get("scopeLogs", ()):
            for record in scope_logs.get("logRecords", ()):
                fix(record)
    return document


def otlp_json_line(message: Message) -> bytes:
    """One OTLP/JSON line of an Export*ServiceRequest: protobuf's JSON mapping, IDs in hex, enums as integers."""
    document = json_format.MessageToDict(message, use_integers_for_enums=True)
    document = _ids(document, lambda b64: base64.b64decode(b64).hex())
    return json_line(document)


def parse_otlp_json_line(line: str | bytes, message: Message) -> Message:
    """Parse one OTLP/JSON line into ``message`` (e.g. an empty ExportTraceServiceRequest) and return it."""
    document = _ids(json.loads(line), lambda hex_id: base64.b64encode(bytes.fromhex(hex_id)).decode())
    return json_format.ParseDict(document, message)


class OtlpJsonFile:
    """Appends OTLP/JSON lines; one ``os.write`` per line, safe with several processes (O_APPEND)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def write(self, message: Message) -> bool:
        return self.write_line(otlp_json_line(message))

    def write_line(self, line: bytes) -> bool:
        """Append one encoded line (ending in a newline); False when the write failed."""
        try:
            os.write(self._fd, line)
        except OSError:
            return False
        return True

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass


class OtlpJsonSpanExporter(SpanExporter):
    """Writes each batch of finished spans as one OTLP/JSON ``ExportTraceServiceRequest`` line: the format the
    OpenTelemetry Collector's file exporter writes and its otlpjsonfile receiver reads."""

    def __init__(self, path: str | Path):
        self.file = OtlpJsonFile(path)
        self.path = self.file.path
        self._resources: dict = {}  # encoded once per resource (a process has one)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        if len(self._resources) > 16:
            self._resources.clear()
        document = encode_spans_json(spans, self._resources)
        return SpanExportResult.SUCCESS if self.file.write_line(json_line(document)) else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.file.close()


# The context a server span of a request without propagated trace headers starts in (http_tracing): a root.
ROOT_CONTEXT = Context()


class SkipPathsSampler(Sampler):
    """Drops server spans of /healthz and /metrics, then defers to the wrapped sampler.

    Cheaper than the Flask instrumentation's ``excluded_urls``, which rebuilds the request
    URL several times per request on every route. ``root_ratio`` is the ratio sampler the wrapped
    ``ParentBased`` sampler uses for root spans: a span started in ``ROOT_CONTEXT`` that it would drop is
    dropped here at once, with the result it would give (no attributes, no parent trace state), without the
    parent lookups of the sampler chain (most requests take this path).
    """

    SKIP = frozenset({"/healthz", "/metrics"})
    _ROOT_DROP = SamplingResult(Decision.DROP)

    def __init__(self, inner: Sampler, root_ratio: TraceIdRatioBased | None = None):
        self.inner = inner
        self._root_bound = root_ratio.bound if root_ratio is not None else None

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):
        if (parent_context is ROOT_CONTEXT and self._root_bound is not None
                and trace_id & TraceIdRatioBased.TRACE_ID_LIMIT >= self._root_bound):
            return self._ROOT_DROP
        if attributes and (attributes.get("http.target") in self.SKIP or attributes.get("url.path") in self.SKIP):
            return SamplingResult(Decision.DROP)
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"SkipPaths{{{self.inner.get_description()}}}"


def service_resource(service_name: str, service_version: str) -> Resource:
    """The resource of this process's telemetry (spans and, when enabled, event log records)."""
    return Resource.create({
        "service.name": service_name,
        "service.version": service_version,
        "service.namespace": "obslab",
        "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
    })


def make_tracer_provider(*, service_name: str, service_version: str, sample_ratio: float,
                         data_dir: str | Path, otlp_endpoint: str | None = None,
                         exporter: SpanExporter | None = None) -> TracerProvider:
    resource = service_resource(service_name, service_version)
    root_ratio = TraceIdRatioBased(sample_ratio)
    provider = TracerProvider(resource=resource, sampler=SkipPathsSampler(ParentBased(root_ratio), root_ratio))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # OTLPSpanExporter reads OTEL_EXPORTER_OTLP_ENDPOINT itself and appends /v1/traces.
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(BatchSpanProcessor(OtlpJsonSpanExporter(Path(data_dir) / "traces" / SPANS_FILE)))
    return provider


_requests_instrumented = False


def instrument_requests_once(provider: TracerProvider) -> None:
    """Outgoing-HTTP spans + traceparent injection for ``requests`` (process-wide, first provider wins)."""
    global _requests_instrumented
    if _requests_instrumented:
        return
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    RequestsInstrumentor().instrument(tracer_provider=provider)
    _requests_instrumented = True


def current_ids() -> tuple[str, str]:
    """(trace_id, span_id) of the current span — also when it is not sampled; zeros when there is none."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return ZERO_TRACE_ID, ZERO_SPAN_ID
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
