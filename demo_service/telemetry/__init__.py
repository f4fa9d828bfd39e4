"""Telemetry of the publish API: the event log, metrics and traces, wired per app by ``init_app``."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from flask import Flask, current_app, g, request
from opentelemetry import trace
from opentelemetry.metrics import NoOpMeterProvider

from demo_service.diskspace import DISK_FULL, can_append, is_no_space
from demo_service.store import Upload
from demo_service.telemetry import metric_files
from demo_service.telemetry.jsonline import json_line
from demo_service.telemetry.events import EVENTS_FILE, EventFile, UserHasher, event_timestamp
from demo_service.telemetry.metrics import ApiMetrics, ProcessSampler
from demo_service.telemetry.http_tracing import ServerSpanMiddleware, record_response
from demo_service.telemetry.tracing import SkipPathsSampler, current_ids, instrument_requests_once, make_tracer_provider
from contract.events import SCHEMA_VERSION, SERVICE_VERSIONS

__all__ = ["Telemetry", "init_app", "get_telemetry", "attempt_fields", "SERVICE_NAME"]

SERVICE_NAME = "publish-api"
log = logging.getLogger(__name__)


def attempt_fields(upload: Upload) -> dict[str, Any]:
    """The fields every event of one publish attempt carries."""
    return {
        "request_id": upload.request_id,
        "upload_id": upload.upload_id,
        "user_id": upload.user_hash,
        "app_version": upload.app_version,
        "region": upload.region,
        "network_type": upload.network_type,
        "media_size_bucket": upload.media_size_bucket,
        "flags": upload.flags,
        "synthetic": upload.synthetic,
    }


NO_ATTEMPT = {"request_id": None, "upload_id": None, "user_id": None, "app_version": None, "region": None,
              "network_type": None, "media_size_bucket": None, "flags": {}, "synthetic": False}


class Telemetry:
    def __init__(self, app: Flask):
        cfg = app.config
        parts = cfg["INSTRUMENTATION"]
        data_dir = Path(cfg["DATA_DIR"])
        self.events_enabled = "events" in parts
        if cfg["MULTIPROCESS_DIR"] and "metrics" in parts and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            metric_files.install()  # a full disk must not SIGBUS the worker through its metric files
        self.metrics = ApiMetrics(cfg["METRICS_REGISTRY"], cfg["MULTIPROCESS_DIR"], enabled="metrics" in parts)
        self.process_sampler = ProcessSampler(self.metrics, SERVICE_NAME)
        self.events_dir = data_dir / "events"
        self.event_file = (EventFile(self.events_dir / EVENTS_FILE, cfg["EVENTS_MAX_BYTES"], cfg["EVENTS_BACKUP_COUNT"])
                           if self.events_enabled else None)
        self.hash_user = UserHasher(data_dir)
        self.tracer_provider = None
        if "tracing" in parts:
            self.tracer_provider = make_tracer_provider(
                service_name=SERVICE_NAME, service_version=SERVICE_VERSIONS["stable"],
                sample_ratio=cfg["TRACE_SAMPLE_RATIO"], data_dir=data_dir, otlp_endpoint=cfg["OTLP_ENDPOINT"],
                exporter=cfg["SPAN_EXPORTER"])
            self.tracer = self.tracer_provider.get_tracer("demo_service")
        else:
            self.tracer = trace.NoOpTracer()
        # Optional copy of each written event as an OpenTelemetry log record; the JSONL stays the contract.
        self.event_logs = None
        if self.events_enabled and cfg.get("OTEL_EVENT_LOGS"):
            from demo_service.telemetry.logs import make_event_log_emitter

            self.event_logs = make_event_log_emitter(
                service_name=SERVICE_NAME, service_version=SERVICE_VERSIONS["stable"], data_dir=data_dir,
                otlp_endpoint=cfg["OTLP_ENDPOINT"], exporter=cfg.get("LOG_EXPORTER"))
        self.controls = app.extensions["obslab.controls"]
        # Event sink health of this worker: the last failed and the last good write (monotonic s).
        self._write_failed_at: float | None = None
        self._write_ok_at: float | None = None
        self._write_error: str | None = None
        self._write_no_space = False
        self._lost_to_write_errors = 0

    def emit(self, event: str, upload: Upload | None = None, *, known: dict | None = None, **fields: Any) -> bool:
        """Write one event (unless a drop_events fault eats it); True when the line was written."""
        if not self.events_enabled:
            return True
        base = known if known is not None else (attempt_fields(upload) if upload is not None else NO_ATTEMPT)
        trace_id, span_id = current_ids()
        record = {
            "schema_version": SCHEMA_VERSION,
            "ts": event_timestamp(),
            "event": event,
            **base,
            "trace_id": trace_id,
            "span_id": span_id,
            "service": SERVICE_NAME,
            "service_version": SERVICE_VERSIONS.get((base.get("flags") or {}).get("release", "stable"),
                                                    SERVICE_VERSIONS["stable"]),
            **fields,
        }
        # Audit events (no request_id) are never dropped: they record the fault itself. The key and cohort
        # are built only when some fault is in force (the hot path has none).
        if base["request_id"] is not None and self.controls.faults:
            key = f"{base['request_id']}|{event}|{fields.get('chunk_index', '')}|{fields.get('attempt', '')}"
            cohort = {"region": base["region"], "app_version": base["app_version"],
                      "network_type": base["network_type"], "media_size_bucket": base["media_size_bucket"],
                      "release": (base.get("flags") or {}).get("release")}
            if self.controls.match(target="event_sink", cohort=cohort, key=key, kinds=("drop_events",)):
                self.metrics.events_lost.labels(reason="dropped_fault").inc()
                return False
        line = json_line(record)
        try:
            self.event_file.write_line(line)
        except OSError as e:
            log.exception("event write failed")
            self.metrics.events_lost.labels(reason="write_error").inc()
            self._write_failed_at = time.monotonic()
            self._write_error = e.strerror or str(e)
            self._write_no_space = is_no_space(e)
            self._lost_to_write_errors += 1
            return False
        self._write_ok_at = time.monotonic()
        self.metrics.events.labels(event).inc()  # positional: the memo key needs no keyword dict
        if self.event_logs is not None:
            self.event_logs.emit(record)
        return True

    # Room the recovery probe reserves past the end of the log: more than any one event line.
    PROBE_BYTES = 16 * 1024

    def event_sink_problem(self) -> tuple[str, str] | None:
        """(cause, message) when this worker's event log is failing (its last write failed), else None.

        A worker's next write would tell when the disk has room again, but a worker that gets no
        traffic would stay unhealthy; so the log is probed: if the next line's blocks can be
        reserved now (without writing), it is healthy again.
        """
        failed, ok = self._write_failed_at, self._write_ok_at
        if failed is None or (ok is not None and ok > failed):
            return None
        if can_append(self.event_file.fd, self.PROBE_BYTES):
            self._write_failed_at = None
            return None
        cause = DISK_FULL if self._write_no_space else "event_log_unwritable"
        return cause, (f"events: cannot write {self.event_file.path}: {self._write_error} "
                       f"({self._lost_to_write_errors} event(s) lost by this worker, see obslab_events_lost_total)")

    def span(self, name: str, request_id: str | None = None, **attributes: Any):
        """A manual span for a phase, with ``request_id`` as an attribute."""
        attrs = {k: v for k, v in attributes.items() if v is not None}
        if request_id is not None:
            attrs["request_id"] = request_id
        return self.tracer.start_as_current_span(name, attributes=attrs)


    def annotate(self, **attributes: Any) -> None:
        """Attributes on the current span (e.g. the server span), skipped when it is not sampled."""
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes({k: v for k, v in attributes.items() if v is not None})


def init_app(app: Flask) -> None:
    telemetry = Telemetry(app)
    app.extensions["obslab.telemetry"] = telemetry
    lean_spans = False
    if telemetry.tracer_provider is not None:
        if app.config["HTTP_TRACING"] == "flask-instrumentor":
            from opentelemetry.instrumentation.flask import FlaskInstrumentor

            # RED metrics come from prometheus_client; OTel's own HTTP metrics would duplicate them.
            FlaskInstrumentor().instrument_app(app, tracer_provider=telemetry.tracer_provider,
                                               meter_provider=NoOpMeterProvider(), enable_commenter=False)
        else:
            app.wsgi_app = ServerSpanMiddleware(app.wsgi_app, telemetry.tracer, SkipPathsSampler.SKIP)
            lean_spans = True
        instrument_requests_once(telemetry.tracer_provider)
    metrics = telemetry.metrics

    # One hook per stage for all of telemetry (the RED metrics; the server span's route and status at the end):
    # Flask dispatches each hook on its own, and ``request``/``g`` are looked up once per hook.
    @app.before_request
    def _start_request_telemetry() -> None:
        g._get_current_object().obslab_start = time.perf_counter()

    @app.after_request
    def _finish_request_telemetry(response):
        started = g._get_current_object().get("obslab_start")
        record_metrics = started is not None and metrics.enabled
        if not (lean_spans or record_metrics):
            return response
        req = request._get_current_object()
        route = req.url_rule.rule if req.url_rule is not None else None
        method = req.method
        if lean_spans:
            record_response(req.environ, method, route, response.status_code)
        if record_metrics:
            metrics.record_request(route or "<unmatched>", method, response.status_code,
                                   time.perf_counter() - started)
            telemetry.process_sampler.maybe_sample()
        return response


def get_telemetry() -> Telemetry:
    return current_app.extensions["obslab.telemetry"]
