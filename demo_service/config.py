"""Configuration of the publish API and the transcoder: every environment variable is a constant here.

``create_app(config)`` reads defaults, then the environment (``from_env``), then the
mapping passed in (tests inject a registry, a span exporter, a data dir...).
Each config key is documented in ``CONFIG_KEYS``; docs/service.md lists them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from contract.env import (ENV_ADMIN_ALLOW_REMOTE, ENV_ADMIN_TOKEN, ENV_ASYNC_WORKERS, ENV_DATA_DIR,
                          ENV_EVENTS_MAX_BYTES, ENV_HTTP_TRACING, ENV_INSTRUMENTATION, ENV_OTLP_ENDPOINT,
                          ENV_PROMETHEUS_MULTIPROC_DIR, ENV_TRACE_SAMPLE_RATIO, ENV_TRANSCODER_TIMEOUT_S,
                          ENV_OTEL_EVENT_LOGS, ENV_TRANSCODER_URL)
from contract.layout import ADMIN_TOKEN_FILE, make_data_dir, read_admin_token_file, write_admin_token_file

# The environment variables' names and meanings live in contract.env (documented in docs/service.md);
# they are re-exported here for the service's own modules.
__all__ = [
    "ENV_DATA_DIR",
    "ENV_ADMIN_TOKEN",
    "ENV_ADMIN_ALLOW_REMOTE",
    "ENV_TRANSCODER_URL",
    "ENV_TRACE_SAMPLE_RATIO",
    "ENV_TRANSCODER_TIMEOUT_S",
    "ENV_INSTRUMENTATION",
    "ENV_OTLP_ENDPOINT",
    "ENV_OTEL_EVENT_LOGS",
    "ENV_PROMETHEUS_MULTIPROC_DIR",
    "ENV_EVENTS_MAX_BYTES",
    "ENV_ASYNC_WORKERS",
    "ENV_HTTP_TRACING",
    "HTTP_TRACING_MODES",
    "DEFAULT_TRACE_SAMPLE_RATIO",
    "INSTRUMENTATION_PARTS",
    "CONFIG_KEYS",
    "ADMIN_TOKEN_FILE",
    "make_data_dir",
    "read_admin_token_file",
    "write_admin_token_file",
    "default_config",
    "config_from_env",
    "parse_instrumentation",
]

DEFAULT_TRACE_SAMPLE_RATIO = 0.1
INSTRUMENTATION_PARTS = ("events", "metrics", "tracing")
HTTP_TRACING_MODES = ("lean", "flask-instrumentor")


CONFIG_KEYS: dict[str, str] = {
    "DATA_DIR": "Directory of state.db, events/, traces/ and the user-hash key.",
    "ADMIN_TOKEN": "Bearer token of the control plane; None disables /admin (503).",
    "ADMIN_ALLOW_REMOTE": "Accept control-plane calls from non-loopback addresses.",
    "TRANSCODER_URL": "Base URL of the transcoder service.",
    "TRANSCODER_CONNECT_TIMEOUT_S": "Connect timeout of one transcode call.",
    "TRANSCODER_READ_TIMEOUT_S": "Read timeout of one transcode call (a slower answer is a timeout).",
    "TRANSCODER_MAX_ATTEMPTS": "Attempts per transcode (retries on 5xx / connection errors, not on timeouts).",
    "TRACE_SAMPLE_RATIO": "Parent-based head sampling ratio of root spans.",
    "INSTRUMENTATION": "Frozenset of enabled parts: events, metrics, tracing.",
    "OTLP_ENDPOINT": "OTLP/HTTP endpoint; when None spans go to DATA_DIR/traces/spans.jsonl.",
    "HTTP_TRACING": "Server spans: lean (attributes only on sampled spans) or flask-instrumentor (official).",
    "SPAN_EXPORTER": "A SpanExporter to use instead (tests: InMemorySpanExporter, exported synchronously).",
    "OTEL_EVENT_LOGS": "Also emit each written event as an OpenTelemetry log record (OTLP, else DATA_DIR/logs/).",
    "LOG_EXPORTER": "A LogRecordExporter for those records instead (tests: InMemoryLogRecordExporter).",
    "METRICS_REGISTRY": "A prometheus_client CollectorRegistry to register metrics on (tests).",
    "MULTIPROCESS_DIR": "prometheus_client multiprocess directory (gunicorn); None = single process.",
    "EVENTS_MAX_BYTES": "Rotate events.jsonl when it grows past this many bytes.",
    "EVENTS_BACKUP_COUNT": "Rotated event files kept (events.jsonl.1 .. .N).",
    "ASYNC_WORKERS": "Threads per worker consuming the async transcode queue.",
    "CONTROL_REFRESH_S": "How often a worker re-checks the faults/flags version in the store.",
    "FEED_CACHE_TTL_S": "Lifetime of a cached feed page (long enough that misses are rare at a steady viewer rate).",
    "FEED_QUERY_MS": "Time a feed cache miss waits on the ranking query at the database primary (the lab's "
                     "embedded SQLite answers in microseconds; this is the cost the cache exists to save).",
    "MAX_CHUNK_BYTES": "Largest accepted chunk body.",
}


def parse_instrumentation(text: str) -> frozenset[str]:
    """``all`` / ``on`` / ``off`` / ``none`` or a comma list of parts; raises ValueError naming the bad part."""
    value = text.strip().lower()
    if value in ("", "all", "on"):
        return frozenset(INSTRUMENTATION_PARTS)
    if value in ("off", "none"):
        return frozenset()
    parts = {p.strip() for p in value.split(",") if p.strip()}
    unknown = parts - set(INSTRUMENTATION_PARTS)
    if unknown:
        raise ValueError(f"{ENV_INSTRUMENTATION}: unknown part(s) {sorted(unknown)}; "
                         f"use all, off or a comma list of {', '.join(INSTRUMENTATION_PARTS)}")
    return frozenset(parts)


def default_config() -> dict[str, Any]:
    return {
        "DATA_DIR": str(Path(".obslab") / "data"),
        "ADMIN_TOKEN": None,
        "ADMIN_ALLOW_REMOTE": False,
        "TRANSCODER_URL": "http://127.0.0.1:8001",
        "TRANSCODER_CONNECT_TIMEOUT_S": 0.5,
        "TRANSCODER_READ_TIMEOUT_S": 2.0,
        "TRANSCODER_MAX_ATTEMPTS": 3,
        "TRACE_SAMPLE_RATIO": DEFAULT_TRACE_SAMPLE_RATIO,
        "INSTRUMENTATION": frozenset(INSTRUMENTATION_PARTS),
        "OTLP_ENDPOINT": None,
        "HTTP_TRACING": "lean",
        "SPAN_EXPORTER": None,
        "OTEL_EVENT_LOGS": False,
        "LOG_EXPORTER": None,
        "METRICS_REGISTRY": None,
        "MULTIPROCESS_DIR": None,
        "EVENTS_MAX_BYTES": 256 * 1024 * 1024,
        "EVENTS_BACKUP_COUNT": 20,
        "ASYNC_WORKERS": 1,
        "CONTROL_REFRESH_S": 0.5,
        "FEED_CACHE_TTL_S": 30.0,
        "FEED_QUERY_MS": 25.0,
        "MAX_CHUNK_BYTES": 256 * 1024,
    }


def config_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The config keys set by environment variables (only those present)."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    if env.get(ENV_DATA_DIR):
        out["DATA_DIR"] = env[ENV_DATA_DIR]
    if env.get(ENV_ADMIN_TOKEN):
        out["ADMIN_TOKEN"] = env[ENV_ADMIN_TOKEN]
    if env.get(ENV_ADMIN_ALLOW_REMOTE):
        out["ADMIN_ALLOW_REMOTE"] = env[ENV_ADMIN_ALLOW_REMOTE].strip().lower() in ("1", "true", "yes")
    if env.get(ENV_TRANSCODER_URL):
        out["TRANSCODER_URL"] = env[ENV_TRANSCODER_URL].rstrip("/")
    if env.get(ENV_TRANSCODER_TIMEOUT_S):
        try:
            out["TRANSCODER_READ_TIMEOUT_S"] = float(env[ENV_TRANSCODER_TIMEOUT_S])
        except ValueError:
            raise ValueError(f"{ENV_TRANSCODER_TIMEOUT_S}: expected seconds, got {env[ENV_TRANSCODER_TIMEOUT_S]!r}") from None
    if env.get(ENV_TRACE_SAMPLE_RATIO):
        try:
            ratio = float(env[ENV_TRACE_SAMPLE_RATIO])
        except ValueError:
            raise ValueError(f"{ENV_TRACE_SAMPLE_RATIO}: expected a number in [0, 1], "
                             f"got {env[ENV_TRACE_SAMPLE_RATIO]!r}") from None
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"{ENV_TRACE_SAMPLE_RATIO}: expected a number in [0, 1], got {ratio}")
        out["TRACE_SAMPLE_RATIO"] = ratio
    if ENV_INSTRUMENTATION in env:
        out["INSTRUMENTATION"] = parse_instrumentation(env[ENV_INSTRUMENTATION])
    if env.get(ENV_OTLP_ENDPOINT):
        out["OTLP_ENDPOINT"] = env[ENV_OTLP_ENDPOINT]
    if env.get(ENV_PROMETHEUS_MULTIPROC_DIR):
        out["MULTIPROCESS_DIR"] = env[ENV_PROMETHEUS_MULTIPROC_DIR]
    if env.get(ENV_EVENTS_MAX_BYTES):
        out["EVENTS_MAX_BYTES"] = int(env[ENV_EVENTS_MAX_BYTES])
    if env.get(ENV_HTTP_TRACING):
        mode = env[ENV_HTTP_TRACING].strip().lower()
        if mode not in HTTP_TRACING_MODES:
            raise ValueError(f"{ENV_HTTP_TRACING}: expected one of {', '.join(HTTP_TRACING_MODES)}, got {mode!r}")
        out["HTTP_TRACING"] = mode
    if env.get(ENV_ASYNC_WORKERS):
        out["ASYNC_WORKERS"] = int(env[ENV_ASYNC_WORKERS])
    if env.get(ENV_OTEL_EVENT_LOGS):
        flag = env[ENV_OTEL_EVENT_LOGS].strip().lower()
        if flag not in ("1", "true", "yes", "0", "false", "no"):
            raise ValueError(f"{ENV_OTEL_EVENT_LOGS}: expected 1 or 0, got {env[ENV_OTEL_EVENT_LOGS]!r}")
        out["OTEL_EVENT_LOGS"] = flag in ("1", "true", "yes")
    return out
