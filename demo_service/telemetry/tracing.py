"""OpenTelemetry tracing: resource, parent-based ratio sampling, export, Flask + requests instrumentation.

Spans go to OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, else to
``DATA_DIR/traces/spans.jsonl`` (one compact JSON line per span, batched, one
``os.write`` per batch). Tests inject an exporter (e.g. ``InMemorySpanExporter``),
exported synchronously. The provider is per app, never the global one, so several
apps (tests) can live in one process.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (BatchSpanProcessor, SimpleSpanProcessor, SpanExporter,
                                            SpanExportResult)
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult, TraceIdRatioBased

__all__ = ["JsonlSpanExporter", "make_tracer_provider", "instrument_requests_once", "current_ids", "ZERO_TRACE_ID",
           "ZERO_SPAN_ID", "SPANS_FILE"]

SPANS_FILE = "spans.jsonl"
ZERO_TRACE_ID = "0" * 32
ZERO_SPAN_ID = "0" * 16


class JsonlSpanExporter(SpanExporter):
    """Appends finished spans as compact JSON lines; safe with several processes (O_APPEND)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for s in spans:
            ctx = s.context
            lines.append(json.dumps({
                "trace_id": format(ctx.trace_id, "032x"),
                "span_id": format(ctx.span_id, "016x"),
                "parent_span_id": format(s.parent.span_id, "016x") if s.parent else None,
                "name": s.name,
                "kind": s.kind.name,
                "start_unix_nano": s.start_time,
                "end_unix_nano": s.end_time,
                "status": s.status.status_code.name,
                "service": s.resource.attributes.get("service.name"),
                "attributes": dict(s.attributes or {}),
                "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in s.events],
            }, separators=(",", ":"), default=str))
        try:
            os.write(self._fd, ("\n".join(lines) + "\n").encode())
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass


class SkipPathsSampler(Sampler):
    """Drops server spans of /healthz and /metrics, then defers to the wrapped sampler.

    Cheaper than the Flask instrumentation's ``excluded_urls``, which rebuilds the request
    URL several times per request on every route.
    """

    SKIP = frozenset({"/healthz", "/metrics"})

    def __init__(self, inner: Sampler):
        self.inner = inner

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):
        if attributes and (attributes.get("http.target") in self.SKIP or attributes.get("url.path") in self.SKIP):
            return SamplingResult(Decision.DROP)
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"SkipPaths{{{self.inner.get_description()}}}"


def make_tracer_provider(*, service_name: str, service_version: str, sample_ratio: float,
                         data_dir: str | Path, otlp_endpoint: str | None = None,
                         exporter: SpanExporter | None = None) -> TracerProvider:
    resource = Resource.create({
        "service.name": service_name,
        "service.version": service_version,
        "service.namespace": "obslab",
        "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
    })
    provider = TracerProvider(resource=resource, sampler=SkipPathsSampler(ParentBased(TraceIdRatioBased(sample_ratio))))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # OTLPSpanExporter reads OTEL_EXPORTER_OTLP_ENDPOINT itself and appends /v1/traces.
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(BatchSpanProcessor(JsonlSpanExporter(Path(data_dir) / "traces" / SPANS_FILE)))
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
