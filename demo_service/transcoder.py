"""The transcoder: its own Flask app in its own gunicorn process (``/v1/transcode``, ``/healthz``, ``/metrics``).

Work is simulated: a sleep whose median depends on the media size bucket
(small 40 ms, medium 120 ms, large 350 ms) with lognormal jitter, capped, so the
1 s processing-latency SLO normally holds. Faults on target ``transcoder`` come from
the same shared state as the API's (DATA_DIR/state.db): latency, errors (503),
timeouts (a hang the API's read timeout cuts), CPU burn, memory growth.
"""

from __future__ import annotations

import math
import random
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from flask import Flask, Response, jsonify, request

from demo_service import errors
from demo_service.config import config_from_env, default_config, parse_instrumentation
from demo_service.controls import Controls, apply_resource_faults, sleep_for
from demo_service.errors import ApiError
from demo_service.store import Store
from demo_service.telemetry.metrics import CONTENT_TYPE_LATEST, ProcessSampler, TranscoderMetrics, render_metrics
from demo_service.telemetry.tracing import make_tracer_provider
from contract.events import APP_VERSIONS, FLAGS, MEDIA_SIZE_BUCKETS, NETWORK_TYPES, REGIONS

__all__ = ["create_transcoder_app", "WORK_MEDIAN_S", "WORK_SIGMA", "work_seconds", "SERVICE_NAME"]

SERVICE_NAME = "transcoder"
SERVICE_VERSION = "2.1.0"
WORK_MEDIAN_S = {"small": 0.040, "medium": 0.120, "large": 0.350}
WORK_SIGMA = 0.25  # lognormal shape: p99 ~ 1.8x the median
WORK_CAP_FACTOR = 2.5  # no simulated job takes more than 2.5x its median (large: 875 ms < 1 s)
_UPLOAD_ID_RE = re.compile(r"^up_[0-9a-f]{24}$")


def work_seconds(bucket: str, rng: random.Random) -> float:
    median = WORK_MEDIAN_S[bucket]
    return min(median * math.exp(rng.gauss(0.0, WORK_SIGMA)), median * WORK_CAP_FACTOR)


def create_transcoder_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask("demo_service.transcoder")
    app.config.from_mapping(default_config())
    app.config.update(config_from_env())
    app.config["MULTIPROCESS_DIR"] = None  # one process (threads): a plain registry
    if config:
        app.config.update(config)
    if isinstance(app.config["INSTRUMENTATION"], str):
        app.config["INSTRUMENTATION"] = parse_instrumentation(app.config["INSTRUMENTATION"])
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024
    parts = app.config["INSTRUMENTATION"]
    errors.init_app(app)
    store = Store(Path(app.config["DATA_DIR"]) / "state.db")
    controls = Controls(store, app.config["CONTROL_REFRESH_S"])
    metrics = TranscoderMetrics(app.config["METRICS_REGISTRY"], enabled="metrics" in parts)
    sampler = ProcessSampler(metrics, SERVICE_NAME)
    rng = random.Random()
    rng_lock = threading.Lock()
    if "tracing" in parts:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        provider = make_tracer_provider(service_name=SERVICE_NAME, service_version=SERVICE_VERSION,
                                        sample_ratio=app.config["TRACE_SAMPLE_RATIO"], data_dir=app.config["DATA_DIR"],
                                        otlp_endpoint=app.config["OTLP_ENDPOINT"], exporter=app.config["SPAN_EXPORTER"])
        from opentelemetry.metrics import NoOpMeterProvider

        FlaskInstrumentor().instrument_app(app, tracer_provider=provider, meter_provider=NoOpMeterProvider(),
                                           enable_commenter=False)
        app.extensions["obslab.tracer_provider"] = provider

    @app.post("/v1/transcode")
    def transcode():
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_json", "request body must be a JSON object")
        upload_id = body.get("upload_id")
        if not isinstance(upload_id, str) or not _UPLOAD_ID_RE.match(upload_id):
            raise ApiError(422, "invalid_field", "upload_id must look like up_ + 24 hex digits", "upload_id")
        bucket = body.get("media_size_bucket")
        if bucket not in MEDIA_SIZE_BUCKETS:
            raise ApiError(422, "invalid_field", f"media_size_bucket must be one of {list(MEDIA_SIZE_BUCKETS)}",
                           "media_size_bucket")
        cohort = {"media_size_bucket": bucket,
                  "region": body.get("region") if body.get("region") in REGIONS else None,
                  "app_version": body.get("app_version") if body.get("app_version") in APP_VERSIONS else None,
                  "network_type": body.get("network_type") if body.get("network_type") in NETWORK_TYPES else None,
                  "release": body.get("release") if body.get("release") in FLAGS["release"] else None}
        key = str(body.get("request_id") or upload_id)
        faults = controls.match(target="transcoder", cohort=cohort, key=key)
        if faults:
            apply_resource_faults(faults)
            if any(f.kind == "timeouts" for f in faults):
                sleep_for(faults, kind="timeouts", param="timeout_ms")
                raise ApiError(504, "timeout", "transcode timed out (injected fault)")
            if any(f.kind == "errors" for f in faults):
                raise ApiError(503, "unavailable", "transcoder unavailable (injected fault)", retry_after=1)
        with rng_lock:
            seconds = work_seconds(bucket, rng)
        time.sleep(seconds)
        metrics.work.labels(media_size_bucket=bucket).observe(seconds)
        return jsonify({"upload_id": upload_id, "output_id": "out_" + secrets.token_hex(8),
                        "work_ms": round(seconds * 1000, 3)})

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.get("/metrics")
    def metrics_endpoint():
        return Response(render_metrics(metrics), mimetype=CONTENT_TYPE_LATEST)

    @app.after_request
    def _count(response):
        if request.path == "/v1/transcode":
            metrics.requests.labels(code=str(response.status_code)).inc()
        sampler.maybe_sample()
        return response

    return app
