"""Request explorer: one publish attempt's events (by request_id) and its trace's spans.

Events come from the lab's JSONL event files, spans from the service's local span files
(``DATA_DIR/traces/*.jsonl``, OTLP/JSON, written when no OTLP endpoint is set). Both are scanned
line by line with a substring pre-filter, so a lookup stays cheap without an index.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from flask import Blueprint, current_app, jsonify

from contract.events import TERMINAL_EVENTS, format_time, parse_time

__all__ = ["bp", "request_events", "request_spans", "recent_request_ids", "normalize_span", "otlp_spans", "event_files", "span_files",
           "spans_status", "export_delay_s"]

bp = Blueprint("explorer", __name__, url_prefix="/api/requests")

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# Reading only the end of the newest event file keeps "recent" cheap on a long-running lab.
_RECENT_TAIL_BYTES = 512 * 1024


def _files(directory: Path) -> list[Path]:
    """JSONL files in a directory, oldest first (rotated files sort by mtime)."""
    if not directory.is_dir():
        return []
    files = [p for p in directory.iterdir() if p.is_file() and ".jsonl" in p.name]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))


def event_files(service_dir: Path) -> list[Path]:
    """Event files of the service directory (the one holding events/ and traces/)."""
    return _files(Path(service_dir) / "events")


def span_files(service_dir: Path) -> list[Path]:
    return _files(Path(service_dir) / "traces")


def _matching_lines(files: list[Path], needle: str) -> Iterator[dict]:
    for path in files:
        try:
            with open(path, "r", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if needle in line:
                        try:
                            yield json.loads(line)
                        except json.JSONDecodeError:
                            continue  # a line being written right now
        except FileNotFoundError:
            continue  # rotated away while we listed


def request_events(data_dir: Path, request_id: str) -> list[dict]:
    """Every event of one attempt, in time order."""
    events = [e for e in _matching_lines(event_files(data_dir), request_id) if e.get("request_id") == request_id]
    return sorted(events, key=lambda e: e.get("ts", ""))


def _hex_id(value) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return format(value, "x")
    s = str(value).lower()
    return s[2:] if s.startswith("0x") else s


def _ns(value) -> int:
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        return int(parse_time(value).replace(tzinfo=timezone.utc).timestamp() * 1e9)
    raise ValueError(f"not a timestamp: {value!r}")


def normalize_span(raw: dict) -> dict:
    """One span in the explorer's shape, from the service's span line (demo_service/telemetry/tracing.py) or
    OpenTelemetry's ``Span.to_json()`` shape."""
    context = raw.get("context") or {}
    resource = raw.get("resource") or {}
    resource_attrs = resource.get("attributes", resource) if isinstance(resource, dict) else {}
    status = raw.get("status")
    if isinstance(status, dict):
        status = status.get("status_code") or status.get("code")
    status = str(status or "UNSET").replace("StatusCode.", "")
    start = next((raw[k] for k in ("start_unix_nano", "start_ns", "start_time_unix_nano", "start_time") if k in raw), None)
    end = next((raw[k] for k in ("end_unix_nano", "end_ns", "end_time_unix_nano", "end_time") if k in raw), None)
    return {
        "name": raw.get("name", ""),
        "trace_id": _hex_id(raw.get("trace_id", context.get("trace_id"))),
        "span_id": _hex_id(raw.get("span_id", context.get("span_id"))),
        "parent_span_id": _hex_id(raw.get("parent_span_id", raw.get("parent_id"))),
        "service": raw.get("service") or raw.get("service_name") or resource_attrs.get("service.name", ""),
        "kind": str(raw.get("kind", "")).replace("SpanKind.", ""),
        "status": status,
        "start_ns": _ns(start),
        "end_ns": _ns(end),
        "attributes": raw.get("attributes") or {},
    }


# OTLP enum values (opentelemetry-proto trace.proto): Span.SpanKind and Status.StatusCode.
_OTLP_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_OTLP_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


def _any_value(value: dict):
    """A Python value from an OTLP/JSON AnyValue ({"stringValue": "x"}, {"intValue": "3"}, ...)."""
    if not isinstance(value, dict) or not value:
        return None
    kind, v = next(iter(value.items()))
    if kind == "intValue":
        return int(v)
    if kind == "arrayValue":
        return [_any_value(x) for x in (v or {}).get("values", [])]
    if kind == "kvlistValue":
        return _attributes((v or {}).get("values", []))
    return v


def _attributes(key_values: list) -> dict:
    return {kv["key"]: _any_value(kv.get("value")) for kv in key_values or [] if isinstance(kv, dict) and "key" in kv}


def _enum(value, names: dict[int, str]) -> str:
    """OTLP/JSON writes enums as integers; a producer may also write the name (SPAN_KIND_SERVER, STATUS_CODE_OK)."""
    if isinstance(value, int):
        return names.get(value, str(value))
    return str(value or "UNSPECIFIED").split("_KIND_")[-1].split("_CODE_")[-1]


def otlp_spans(document: dict) -> Iterator[dict]:
    """The spans of one OTLP/JSON ExportTraceServiceRequest line, in the explorer's shape."""
    for resource_spans in document.get("resourceSpans") or []:
        resource = _attributes((resource_spans.get("resource") or {}).get("attributes"))
        for scope_spans in resource_spans.get("scopeSpans") or []:
            for s in scope_spans.get("spans") or []:
                status = s.get("status") or {}
                yield {
                    "name": s.get("name", ""),
                    "trace_id": _hex_id(s.get("traceId")),
                    "span_id": _hex_id(s.get("spanId")),
                    "parent_span_id": _hex_id(s.get("parentSpanId") or None),
                    "service": resource.get("service.name", ""),
                    "kind": _enum(s.get("kind", 0), _OTLP_KINDS),
                    "status": _enum(status.get("code", 0), _OTLP_STATUS),
                    "start_ns": int(s["startTimeUnixNano"]),
                    "end_ns": int(s["endTimeUnixNano"]),
                    "attributes": _attributes(s.get("attributes")),
                }


def _spans_of_line(raw: dict) -> Iterator[dict]:
    if "resourceSpans" in raw:
        yield from otlp_spans(raw)
    else:  # a span file written before spans were OTLP/JSON, or OpenTelemetry's Span.to_json() shape
        yield normalize_span(raw)


def request_spans(data_dir: Path, trace_ids: list[str]) -> list[dict]:
    """Spans of the given traces from the local span files (OTLP/JSON, one request per line, several traces
    per line), ordered by start time."""
    spans: dict[tuple[str, str], dict] = {}
    for trace_id in trace_ids:
        for raw in _matching_lines(span_files(data_dir), trace_id):
            try:
                for span in _spans_of_line(raw):
                    if span["trace_id"] == trace_id:
                        spans[(span["trace_id"], span["span_id"])] = span
            except (ValueError, TypeError, AttributeError, KeyError):
                continue
    return sorted(spans.values(), key=lambda s: (s["start_ns"], -s["end_ns"]))


def recent_request_ids(data_dir: Path, limit: int = 6) -> list[str]:
    """Request IDs of the latest finished attempts (failed ones first: they are the interesting ones)."""
    files = event_files(data_dir)
    finished: dict[str, str] = {}
    for path in reversed(files):
        try:
            with open(path, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - _RECENT_TAIL_BYTES))
                tail = f.read().decode("utf-8", errors="replace").splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in reversed(tail):
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue
            if e.get("event") in TERMINAL_EVENTS and e.get("request_id") and e["request_id"] not in finished:
                finished[e["request_id"]] = e["event"]
        if len(finished) >= limit * 4:
            break
    failed = [r for r, ev in finished.items() if ev == "publish_failed"]
    others = [r for r, ev in finished.items() if ev != "publish_failed"]
    picked = failed[: limit // 2] + others
    return picked[:limit]


@bp.get("/recent")
def recent():
    config = current_app.config["OBSLAB_DASHBOARD"]
    return jsonify(request_ids=recent_request_ids(config.files_dir))


@bp.get("/<request_id>")
def show(request_id: str):
    config = current_app.config["OBSLAB_DASHBOARD"]
    if not REQUEST_ID_PATTERN.match(request_id):
        return jsonify(error={"code": "invalid", "field": "request_id",
                              "message": f"request_id {request_id!r} is not 8-64 characters of A-Z a-z 0-9 . _ -"}), 422
    events = request_events(config.files_dir, request_id)
    if not events:
        return jsonify(error={"code": "not_found", "field": "request_id",
                              "message": f"no event with request_id {request_id} in {config.events_dir}"}), 404
    trace_ids = list(dict.fromkeys(_hex_id(e.get("trace_id")) for e in events if e.get("trace_id")))
    spans = request_spans(config.files_dir, trace_ids)
    terminal = [e["event"] for e in events if e.get("event") in TERMINAL_EVENTS]
    outcome = {"publish_succeeded": "succeeded", "publish_failed": "failed", "upload_cancelled": "cancelled"}.get(
        terminal[-1] if terminal else "", None)
    clock = current_app.config.get("OBSLAB_CLOCK")  # tests pin the clock
    status = spans_status(events, spans, span_files(config.files_dir), clock() if clock else datetime.now(timezone.utc))
    return jsonify(request_id=request_id, events=events, trace_ids=trace_ids, spans=spans, outcome=outcome,
                   spans_source=f"local span files in {config.traces_dir}", spans_status=status)


def export_delay_s() -> float:
    """How long a finished span may wait in the service's BatchSpanProcessor before it is written:
    OTEL_BSP_SCHEDULE_DELAY (ms, the OpenTelemetry SDK's setting), 5 s by default."""
    try:
        return max(0.0, float(os.environ.get("OTEL_BSP_SCHEDULE_DELAY", "5000")) / 1000.0)
    except ValueError:
        return 5.0


# Beyond the schedule delay, the export itself and the file write take a moment.
_EXPORT_MARGIN_S = 2.0


def _sampled_flag(event: dict) -> bool | None:
    """The sampled bit of the event's trace flags when the event carries them (W3C: bit 0), else None."""
    flags = event.get("trace_flags")
    if flags is None:
        return None
    try:
        return bool(int(flags, 16) & 1) if isinstance(flags, str) else bool(int(flags) & 1)
    except ValueError:
        return None


def spans_status(events: list[dict], spans: list[dict], files: list[Path], now: datetime) -> dict:
    """Why the explorer shows the spans it shows: exported, not exported yet (the attempt is younger than the
    batch export delay: ask again in ``retry_after_s``), not sampled, or not in the local span files."""
    delay = export_delay_s()
    if spans:
        return {"state": "exported", "message": f"{len(spans)} spans from the local span files"}
    if not any(e.get("trace_id") for e in events):
        return {"state": "no_trace", "message": "no span: the events carry no trace_id"}
    if any(_sampled_flag(e) is False for e in events):
        return {"state": "not_sampled", "message": "no span: the trace was not sampled (its trace flags say so)"}
    last = max(parse_time(e["ts"]).replace(tzinfo=timezone.utc) for e in events if e.get("ts"))
    age_s = (now - last).total_seconds()
    wait_s = delay + _EXPORT_MARGIN_S - age_s
    if wait_s > 0:
        return {"state": "pending", "retry_after_s": round(wait_s, 1), "age_s": round(age_s, 1),
                "message": f"spans not exported yet (batch export every ~{delay:g} s; this attempt's last event "
                           f"is {age_s:.0f} s old): asking again in {wait_s:.0f} s"}
    if not files:
        return {"state": "no_local_spans", "message": "no local span file: the service exports its spans to an "
                                                       "OTLP endpoint, or has not exported any yet"}
    written = max((datetime.fromtimestamp(p.stat().st_mtime, timezone.utc) for p in files if p.exists()), default=last)
    if (written - last).total_seconds() > delay:
        return {"state": "not_sampled", "message": "no span of this trace: later spans were exported "
                                                   f"(span file written at {format_time(written)}) but none of "
                                                   "this trace, so it was not sampled"}
    return {"state": "pending", "retry_after_s": delay, "age_s": round(age_s, 1),
            "message": f"spans not exported yet: nothing was written to the span file since this attempt "
                       f"(batch export every ~{delay:g} s): asking again in {delay:g} s"}
