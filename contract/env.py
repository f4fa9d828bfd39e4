"""Every environment variable obslab reads, as a documented constant (one home for the names).

The service, the load generator and the toolkit import the names from here; each module that
reads a variable still owns its parsing and default. docs/service.md and docs/load.md document
the values.
"""

from __future__ import annotations

__all__ = [
    # service
    "ENV_DATA_DIR", "ENV_ADMIN_TOKEN", "ENV_ADMIN_ALLOW_REMOTE", "ENV_TRANSCODER_URL",
    "ENV_TRANSCODER_TIMEOUT_S", "ENV_TRACE_SAMPLE_RATIO", "ENV_INSTRUMENTATION", "ENV_EVENTS_MAX_BYTES",
    "ENV_HTTP_TRACING", "ENV_ASYNC_WORKERS", "ENV_OTLP_ENDPOINT", "ENV_PROMETHEUS_MULTIPROC_DIR",
    "ENV_OTEL_EVENT_LOGS", "ENV_ACTOR",
    # load generator
    "LOAD_SEED", "LOAD_RUN_ID", "LOAD_RETRY_POLICY", "LOAD_RETRY_MAX_ATTEMPTS", "LOAD_RETRY_BASE",
    "LOAD_RETRY_CAP", "LOAD_CANCEL_RATE", "LOAD_MIX", "LOAD_MIX_BY_RELEASE", "LOAD_PACE", "LOAD_CHUNK_BYTES", "LOAD_THINK_TIME",
    "LOAD_CREATOR_WEIGHT", "LOAD_VIEWER_WEIGHT", "LOAD_RECORD_DIR", "LOAD_SHAPE", "LOAD_PHASES",
    "LOAD_POLL_INTERVAL", "LOAD_POLL_TIMEOUT", "LOAD_REQUEST_TIMEOUT", "LOAD_ON_GIVE_UP",
    "LOAD_PROGRESS_FILE", "LOAD_TRACE_SAMPLE_RATIO", "LOAD_PREFIX",
    # toolkit
    "ENV_DUCKDB_MEMORY_LIMIT", "ENV_MAX_COHORT_VALUES", "ENV_PROMETHEUS_REMOTE_WRITE_URL", "ENV_SLO_SPEC", "ENV_BENCH_DIR", "ENV_DRILL_AUTO_CANCEL",
    "ENV_DRILL_REMOTE_CONFIG",
    "ALL",
]

# -- the demo service (publish API and transcoder) ------------------------------------------
ENV_DATA_DIR = "OBSLAB_DATA_DIR"
"""Directory of state.db, events/, traces/, keys (layout: contract.layout); default ./.obslab/data."""
ENV_ADMIN_TOKEN = "OBSLAB_ADMIN_TOKEN"
"""Bearer token of /admin/*; else DATA_DIR/admin-token if present; unset and absent = control plane off."""
ENV_ADMIN_ALLOW_REMOTE = "OBSLAB_ADMIN_ALLOW_REMOTE"
""""1": accept /admin/* from non-loopback addresses (containers); default loopback only."""
ENV_TRANSCODER_URL = "OBSLAB_TRANSCODER_URL"
"""Base URL of the transcoder service."""
ENV_TRANSCODER_TIMEOUT_S = "OBSLAB_TRANSCODER_TIMEOUT_S"
"""Read timeout of one transcode call, seconds (default 2)."""
ENV_TRACE_SAMPLE_RATIO = "OBSLAB_TRACE_SAMPLE_RATIO"
"""Head sampling ratio of root spans, 0..1 (default 0.1; parent-based below the root)."""
ENV_INSTRUMENTATION = "OBSLAB_INSTRUMENTATION"
""""all" | "off" | a comma list of events,metrics,tracing (benchmarks switch parts off)."""
ENV_EVENTS_MAX_BYTES = "OBSLAB_EVENTS_MAX_BYTES"
"""Rotate events.jsonl past this size, bytes."""
ENV_HTTP_TRACING = "OBSLAB_HTTP_TRACING"
"""Server spans: "lean" (default) | "flask-instrumentor"."""
ENV_ASYNC_WORKERS = "OBSLAB_ASYNC_WORKERS"
"""Async transcode queue consumer threads per API worker (0 = none)."""
ENV_OTEL_EVENT_LOGS = "OBSLAB_OTEL_EVENT_LOGS"
""""1": also emit every lifecycle event as an OpenTelemetry log record (OTLP, else DATA_DIR/logs); default off."""
ENV_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
"""OpenTelemetry's own variable: spans go over OTLP/HTTP when set, else to DATA_DIR/traces."""
ENV_PROMETHEUS_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's own variable: multiprocess metrics directory shared by the gunicorn workers."""

# -- the load generator (Locust users; docs/load.md) -----------------------------------------
LOAD_PREFIX = "OBSLAB_LOAD_"
"""Every load setting starts with this prefix (`obslab load --set name=value` adds it)."""
LOAD_SEED = "OBSLAB_LOAD_SEED"
"""Integer seed: every user's random choices derive from it (default 1)."""
LOAD_RUN_ID = "OBSLAB_LOAD_RUN_ID"
"""Prefix of every request_id this run mints (1-16 letters/digits); random per process when unset."""
LOAD_RETRY_POLICY = "OBSLAB_LOAD_RETRY_POLICY"
"""Chunk retry policy: none | immediate | backoff (default backoff)."""
LOAD_RETRY_MAX_ATTEMPTS = "OBSLAB_LOAD_RETRY_MAX_ATTEMPTS"
"""Tries per chunk, the first included (default 4)."""
LOAD_RETRY_BASE = "OBSLAB_LOAD_RETRY_BASE"
"""Backoff base delay (default 50ms)."""
LOAD_RETRY_CAP = "OBSLAB_LOAD_RETRY_CAP"
"""Backoff delay cap (default 1s)."""
LOAD_CANCEL_RATE = "OBSLAB_LOAD_CANCEL_RATE"
"""Share of publish flows the creator cancels part-way, 0..1 (default 0.02)."""
LOAD_MIX = "OBSLAB_LOAD_MIX"
"""Cohort mix override, JSON: {"network_type": {"3g": 1}} (other dimensions keep their defaults)."""
LOAD_MIX_BY_RELEASE = "OBSLAB_LOAD_MIX_BY_RELEASE"
"""Cohort mix per release variant, JSON: {"canary": {"network_type": {"3g": 1}}}: a creator the service put in
that variant draws its next publishes from the mix with these dimensions replaced (an uneven rollout)."""
LOAD_PACE = "OBSLAB_LOAD_PACE"
"""Multiplier on the network-dependent pause between chunks; 0 = no pause (default 1)."""
LOAD_CHUNK_BYTES = "OBSLAB_LOAD_CHUNK_BYTES"
"""Bytes sent per chunk, at most the server's max_chunk_bytes (default 16384)."""
LOAD_THINK_TIME = "OBSLAB_LOAD_THINK_TIME"
"""Pause between a creator's publish flows, MIN-MAX (e.g. 500ms-2s) or one duration; 0 = none."""
LOAD_CREATOR_WEIGHT = "OBSLAB_LOAD_CREATOR_WEIGHT"
"""Relative number of creator users (default 4)."""
LOAD_VIEWER_WEIGHT = "OBSLAB_LOAD_VIEWER_WEIGHT"
"""Relative number of viewer users (default 1; 0 = no viewers)."""
LOAD_RECORD_DIR = "OBSLAB_LOAD_RECORD_DIR"
"""Directory of the client record (one attempts-*.jsonl file per process); unset = no record."""
LOAD_SHAPE = "OBSLAB_LOAD_SHAPE"
"""Load shape: none | steady | ramp | spike | diurnal | phased (default none: Locust's --users)."""
LOAD_PHASES = "OBSLAB_LOAD_PHASES"
"""Phases of the phased shape: DURATION:USERS[@SPAWN_RATE],... e.g. 30s:10,2m:40@20,30s:10."""
LOAD_POLL_INTERVAL = "OBSLAB_LOAD_POLL_INTERVAL"
"""Async transcode mode: pause between status polls (default 200ms)."""
LOAD_POLL_TIMEOUT = "OBSLAB_LOAD_POLL_TIMEOUT"
"""Async transcode mode: how long the creator waits for a terminal status (default 30s)."""
LOAD_REQUEST_TIMEOUT = "OBSLAB_LOAD_REQUEST_TIMEOUT"
"""Client timeout of one HTTP request (default 10s)."""
LOAD_ON_GIVE_UP = "OBSLAB_LOAD_ON_GIVE_UP"
"""When a chunk exhausts its retries: complete (the server fails the publish) or abandon (default complete)."""
LOAD_PROGRESS_FILE = "OBSLAB_LOAD_PROGRESS_FILE"
"""A JSON file the master (or the single process) rewrites every second with live totals; unset = none."""
LOAD_TRACE_SAMPLE_RATIO = "OBSLAB_LOAD_TRACE_SAMPLE_RATIO"
"""Share of flows whose traceparent says 'sampled' (default: the service's ratio, else 0.1)."""

# -- the toolkit --------------------------------------------------------------------------------
ENV_DUCKDB_MEMORY_LIMIT = "OBSLAB_DUCKDB_MEMORY_LIMIT"
"""DuckDB memory limit of the event readers (default 350MB); larger inputs spill to disk."""
ENV_MAX_COHORT_VALUES = "OBSLAB_MAX_COHORT_VALUES"
"""Most distinct values one cohort dimension may have in an event log (default 1000; 0 = no limit)."""
ENV_PROMETHEUS_REMOTE_WRITE_URL = "OBSLAB_PROMETHEUS_REMOTE_WRITE_URL"
"""The lab's Prometheus also sends every sample to this remote-write endpoint (a long-term store); unset: none."""
ENV_SLO_SPEC = "OBSLAB_SLO_SPEC"
"""SLO spec a drill report uses when none is passed (default: ./slo.yaml, else the packaged one)."""
ENV_BENCH_DIR = "OBSLAB_BENCH_DIR"
"""Where `obslab bench sli` keeps its generated data (default: the system temp dir/obslab-bench)."""
ENV_ACTOR = "OBSLAB_ACTOR"
"""Who a drill's control-plane calls are audited as (the dashboard sets `dashboard`; default `release-bot`, naming no drill)."""
ENV_DRILL_AUTO_CANCEL = "OBSLAB_DRILL_AUTO_CANCEL"
"""Drill load only: APP_VERSION:NET1|NET2:AFTER cancels matching flows (the cancellation-trap drill)."""
ENV_DRILL_REMOTE_CONFIG = "OBSLAB_DRILL_REMOTE_CONFIG"
"""Drill load only: path of the clients' remote config (JSON) a drill's mitigation writes, e.g. a retry policy."""

ALL: tuple[str, ...] = tuple(v for k, v in sorted(globals().items())
                             if (k.startswith("ENV_") or k.startswith("LOAD_")) and k != "LOAD_PREFIX"
                             and isinstance(v, str))
"""Every variable name above, for docs and checks."""
