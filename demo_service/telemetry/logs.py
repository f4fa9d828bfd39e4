"""Lifecycle events as OpenTelemetry log records (optional, off by default: ``OBSLAB_OTEL_EVENT_LOGS=1``).

The JSONL event log stays the contract (docs/events.md); this is a copy of each written event for
OpenTelemetry pipelines: one log record per event, its ``EventName`` (and the older ``event.name``
attribute) the event's name, its trace context the event's ``trace_id``/``span_id``, its attributes the
event's other fields (``flags`` flattened to ``flags.<name>``). Records go to OTLP/HTTP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (``/v1/logs``), else to ``DATA_DIR/logs/events.otlp.jsonl`` as
OTLP/JSON (one ``ExportLogsServiceRequest`` per line, as the Collector's file exporter writes it).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult,
                                            SimpleLogRecordProcessor)
from opentelemetry import trace
from opentelemetry.trace import TraceFlags

from demo_service.telemetry.tracing import OtlpJsonFile, service_resource

__all__ = ["EVENT_LOGS_FILE", "OtlpJsonLogExporter", "EventLogEmitter", "make_event_log_emitter", "log_attributes"]

EVENT_LOGS_FILE = "events.otlp.jsonl"
_ZERO_ID = {"0" * 32, "0" * 16}
# Fields that become the record's own parts, not attributes.
_RECORD_FIELDS = frozenset({"event", "ts", "trace_id", "span_id"})


class OtlpJsonLogExporter(LogRecordExporter):
    """Each batch of log records as one OTLP/JSON ``ExportLogsServiceRequest`` line."""

    def __init__(self, path: str | Path):
        self.file = OtlpJsonFile(path)
        self.path = self.file.path

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if not batch:
            return LogRecordExportResult.SUCCESS
        return LogRecordExportResult.SUCCESS if self.file.write(encode_logs(batch)) else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        self.file.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def log_attributes(record: dict[str, Any]) -> dict[str, Any]:
    """An event's fields as log attributes: None left out, nested mappings flattened (flags.release)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in _RECORD_FIELDS or value is None:
            continue
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items() if v is not None and not isinstance(v, dict)})
        else:
            out[key] = value
    out["event.name"] = record["event"]
    return out


def _unix_nanos(ts: str) -> int | None:
    try:
        return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1_000_000) * 1000
    except (AttributeError, ValueError):
        return None


class EventLogEmitter:
    """Emits one written event as a log record; never raises into the request that wrote the event."""

    def __init__(self, provider: LoggerProvider):
        self.provider = provider
        self.logger = provider.get_logger("demo_service.events")

    def emit(self, record: dict[str, Any]) -> None:
        trace_id, span_id = record.get("trace_id") or "", record.get("span_id") or ""
        in_trace = trace_id not in _ZERO_ID and span_id not in _ZERO_ID
        # The event's IDs are there also when its trace is not sampled: the flags say which, as the span's do.
        current = trace.get_current_span().get_span_context()
        flags = current.trace_flags if in_trace and format(current.trace_id, "032x") == trace_id else TraceFlags(0)
        try:
            self.logger.emit(LogRecord(
                timestamp=_unix_nanos(record.get("ts", "")),
                trace_id=int(trace_id, 16) if in_trace else None,
                span_id=int(span_id, 16) if in_trace else None,
                trace_flags=flags if in_trace else None,
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                event_name=record["event"],
                attributes=log_attributes(record),
            ))
        except Exception:  # noqa: BLE001 - a copy for pipelines must never fail the request
            pass

    def shutdown(self) -> None:
        self.provider.shutdown()


def make_event_log_emitter(*, service_name: str, service_version: str, data_dir: str | Path,
                           otlp_endpoint: str | None = None,
                           exporter: LogRecordExporter | None = None) -> EventLogEmitter:
    """An emitter exporting to ``exporter`` (synchronously: tests), else OTLP/HTTP, else the OTLP/JSON file."""
    provider = LoggerProvider(resource=service_resource(service_name, service_version))
    if exporter is not None:
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    elif otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        # Reads OTEL_EXPORTER_OTLP_ENDPOINT itself and appends /v1/logs.
        provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    else:
        provider.add_log_record_processor(
            BatchLogRecordProcessor(OtlpJsonLogExporter(Path(data_dir) / "logs" / EVENT_LOGS_FILE)))
    return EventLogEmitter(provider)
