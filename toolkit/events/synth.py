"""A seeded generator of realistic publish events, valid against the event schema (v1).

Used by the SLI benchmark and by tests across the toolkit: the same seed and
config always give the same events. Creators start uploads over a time span;
each attempt uploads its chunks (some fail and are retried, some give up),
completes, transcodes (sync or async via a queue) and publishes, or fails,
or is cancelled by the user, or is silently abandoned. A few invalid requests
(``upload_rejected``) and control-plane audit events are mixed in.

Quick use::

    from toolkit.events.synth import SynthConfig, Effect, generate, write_jsonl, write_parquet, event_dicts

    table = generate(SynthConfig(attempts=500), seed=7)          # pyarrow.Table, sorted by ts
    write_jsonl(table, "events.jsonl")                          # schema-valid JSON lines
    write_parquet(table, "events.parquet")                      # the layout `events compact` writes
    rows = event_dicts(table)                                   # list of dicts, as the JSON lines hold

    # A bad canary: canary publishes fail 30 % of the time in the second half hour.
    cfg = SynthConfig(attempts=2000, canary_share=0.2,
                      effects=(Effect(where={"release": "canary"}, start_s=1800, failure_rate=0.3),))

``generate(events=N)`` returns exactly N events (the log is cut at a time, so
the last attempts are still in flight, as in a real log).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

import pyarrow as pa

from contract.events import (
    APP_VERSIONS,
    MEDIA_SIZE_BUCKETS,
    NETWORK_TYPES,
    REGIONS,
    SCHEMA_VERSION,
    SERVICE_VERSIONS,
)

__all__ = [
    "Effect",
    "SynthConfig",
    "EVENT_ARROW_SCHEMA",
    "generate",
    "event_dicts",
    "write_jsonl",
    "write_parquet",
    "TRANSCODER_VERSION",
]

TRANSCODER_VERSION = "2.3.0"
CHUNK_BYTES = 256 * 1024
# Client gives up on a chunk after this many failed tries (the attempt is then abandoned).
MAX_CHUNK_TRIES = 3

# Arrow schema of one event: the columns of the Parquet form (see toolkit.events.duck).
EVENT_ARROW_SCHEMA = pa.schema([
    ("schema_version", pa.int32()),
    ("ts", pa.timestamp("ms")),
    ("event", pa.string()),
    ("request_id", pa.string()),
    ("upload_id", pa.string()),
    ("trace_id", pa.string()),
    ("span_id", pa.string()),
    ("service", pa.string()),
    ("service_version", pa.string()),
    ("user_id", pa.string()),
    ("app_version", pa.string()),
    ("region", pa.string()),
    ("network_type", pa.string()),
    ("media_size_bucket", pa.string()),
    ("flags", pa.struct([("transcode_mode", pa.string()), ("release", pa.string())])),
    ("synthetic", pa.bool_()),
    ("duration_ms", pa.float64()),
    ("error_class", pa.string()),
    ("chunk_index", pa.int32()),
    ("attempt", pa.int32()),
    ("bytes", pa.int64()),
    ("media_size_bytes", pa.int64()),
    ("chunk_count", pa.int32()),
    ("transcode_mode", pa.string()),
    ("queue_wait_ms", pa.float64()),
    ("video_id", pa.string()),
    ("reason", pa.string()),
    ("field", pa.string()),
    ("actor", pa.string()),
    ("change", pa.string()),  # JSON text of the audit change object
])


@dataclass(frozen=True)
class Effect:
    """Make one cohort behave differently during a time span (an incident, a bad canary).

    ``where`` matches attempt dimensions (region, app_version, network_type,
    media_size_bucket, release, transcode_mode); times are seconds from the start.
    ``None`` leaves the baseline probability unchanged.
    """

    where: Mapping[str, str] = field(default_factory=dict)
    start_s: float = 0.0
    end_s: float = math.inf
    failure_rate: float | None = None
    chunk_failure_rate: float | None = None
    abandon_rate: float | None = None
    latency_factor: float = 1.0
    error_class: str = "dependency_unavailable"

    def applies(self, dims: Mapping[str, str], t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s and all(dims.get(k) == v for k, v in self.where.items())


@dataclass(frozen=True)
class SynthConfig:
    """Traffic shape and baseline failure behaviour of a synthetic run."""

    attempts: int = 1000
    start: datetime = datetime(2026, 1, 5, 10, 0, 0, tzinfo=timezone.utc)
    duration_s: float = 3600.0
    users: int = 500
    synthetic_share: float = 0.2
    canary_share: float = 0.1
    async_share: float = 0.3
    region_weights: tuple[float, ...] = (0.4, 0.25, 0.25, 0.1)
    app_version_weights: tuple[float, ...] = (0.1, 0.3, 0.5, 0.1)
    network_weights: tuple[float, ...] = (0.5, 0.15, 0.25, 0.1)
    size_weights: tuple[float, ...] = (0.6, 0.3, 0.1)
    cancel_rate: float = 0.02
    abandon_rate: float = 0.002
    transcode_failure_rate: float = 0.002
    publish_failure_rate: float = 0.001
    # Per-try chunk failure probability by network type.
    chunk_failure_rate: Mapping[str, float] = field(
        default_factory=lambda: {"wifi": 0.002, "5g": 0.004, "4g": 0.01, "3g": 0.03})
    # Median server-side processing (upload_completed → publish_succeeded) by size, ms.
    processing_median_ms: Mapping[str, float] = field(
        default_factory=lambda: {"small": 200.0, "medium": 350.0, "large": 600.0})
    # Median time to upload one chunk by network type, ms.
    chunk_median_ms: Mapping[str, float] = field(
        default_factory=lambda: {"wifi": 60.0, "5g": 80.0, "4g": 180.0, "3g": 600.0})
    rejected_share: float = 0.005
    audit_events: int = 2
    effects: tuple[Effect, ...] = ()


_ERROR_CLASSES_TRANSCODE = ("timeout", "dependency_unavailable", "internal")
_ERROR_CLASSES_PUBLISH = ("storage", "internal", "timeout")
_CHUNK_RANGE = {"small": (1, 4), "medium": (4, 16), "large": (16, 64)}
_SIZE_RANGE = {"small": (1 << 20, 20 << 20), "medium": (20 << 20, 200 << 20), "large": (200 << 20, 2 << 30)}
_REJECT_FIELDS = (("chunk_count", "chunk_count must be 1..64"), ("media_size_bytes", "must be positive"),
                  ("region", "unknown region"))


def _mean_events_per_attempt(cfg: SynthConfig) -> float:
    chunks = sum(w * sum(_CHUNK_RANGE[b]) / 2 for w, b in zip(cfg.size_weights, MEDIA_SIZE_BUCKETS)) / sum(
        cfg.size_weights)
    return chunks * 1.03 + 5.0


def generate(config: SynthConfig | None = None, *, seed: int = 0, events: int | None = None) -> pa.Table:
    """Events of a synthetic run as a pyarrow Table (``EVENT_ARROW_SCHEMA``), sorted by ``ts``.

    With ``events=N`` the number of attempts is chosen to give at least N events and
    the log is cut to exactly the N earliest (later attempts stay in flight).
    """
    cfg = config or SynthConfig()
    if events is not None:
        if events < 1:
            raise ValueError(f"events must be at least 1, got {events}")
        attempts = max(1, math.ceil(events / _mean_events_per_attempt(cfg) * 1.1) + 5)
        # Keep the arrival rate of the config: a larger run lasts longer.
        duration = cfg.duration_s * attempts / max(cfg.attempts, 1)
        cfg = _replace(cfg, attempts=attempts, duration_s=duration)
    table = _Generator(cfg, seed).run()
    if events is not None:
        if table.num_rows < events:
            extra = generate(_replace(cfg, attempts=cfg.attempts * 2, duration_s=cfg.duration_s * 2), seed=seed)
            table = extra
        table = table.slice(0, events)
    return table


def _replace(cfg: SynthConfig, **changes) -> SynthConfig:
    from dataclasses import replace
    return replace(cfg, **changes)


class _Generator:
    """Builds event columns attempt by attempt; attempt-level fields are joined in at the end."""

    def __init__(self, cfg: SynthConfig, seed: int):
        self.cfg = cfg
        self.rng = random.Random(seed)
        self.start_ms = int(cfg.start.timestamp() * 1000)
        self.cols: dict[str, list] = {name: [] for name in (
            "ts", "event", "attempt_idx", "span_id", "service", "service_version", "duration_ms", "error_class",
            "chunk_index", "attempt", "bytes", "chunk_count", "transcode_mode", "queue_wait_ms", "video_id",
            "reason", "field", "actor", "change")}
        self.attempt_cols: dict[str, list] = {name: [] for name in (
            "request_id", "upload_id", "trace_id", "user_id", "app_version", "region", "network_type",
            "media_size_bucket", "transcode_mode", "release", "synthetic", "media_size_bytes")}

    # -- one event ------------------------------------------------------------------
    def emit(self, ts_ms: float, event: str, idx: int, *, service: str = "publish-api", version: str,
             **extra) -> None:
        c = self.cols
        c["ts"].append(int(ts_ms))
        c["event"].append(event)
        c["attempt_idx"].append(idx)
        c["span_id"].append("%016x" % self.rng.getrandbits(64))
        c["service"].append(service)
        c["service_version"].append(version)
        for name in ("duration_ms", "error_class", "chunk_index", "attempt", "bytes", "chunk_count",
                     "transcode_mode", "queue_wait_ms", "video_id", "reason", "field", "actor", "change"):
            c[name].append(extra.get(name))

    def pick(self, values: tuple[str, ...], weights: tuple[float, ...]) -> str:
        return self.rng.choices(values, weights)[0]

    def new_attempt(self, dims: dict, synthetic: bool, size_bytes: int | None, *, null_ids: bool = False) -> int:
        a = self.attempt_cols
        idx = len(a["request_id"])
        rid = "req_%016x" % self.rng.getrandbits(64)
        a["request_id"].append(rid)
        a["upload_id"].append(None if null_ids else "up_%024x" % self.rng.getrandbits(96))
        a["trace_id"].append("%032x" % self.rng.getrandbits(128))
        user = self.rng.randrange(self.cfg.users)
        a["user_id"].append("u_%016x" % (hash_user(user) & (2 ** 64 - 1)))
        for k in ("app_version", "region", "network_type", "media_size_bucket", "transcode_mode", "release"):
            a[k].append(dims.get(k))
        a["synthetic"].append(synthetic)
        a["media_size_bytes"].append(size_bytes)
        return idx

    # -- one attempt ----------------------------------------------------------------
    def attempt(self, t0_ms: float) -> None:
        cfg, rng = self.cfg, self.rng
        size = self.pick(MEDIA_SIZE_BUCKETS, cfg.size_weights)
        dims = {
            "region": self.pick(REGIONS, cfg.region_weights),
            "app_version": self.pick(APP_VERSIONS, cfg.app_version_weights),
            "network_type": self.pick(NETWORK_TYPES, cfg.network_weights),
            "media_size_bucket": size,
            "release": "canary" if rng.random() < cfg.canary_share else "stable",
            "transcode_mode": "async" if rng.random() < cfg.async_share else "sync",
        }
        synthetic = rng.random() < cfg.synthetic_share
        t_rel_s = (t0_ms - self.start_ms) / 1000.0
        effects = [e for e in cfg.effects if e.applies(dims, t_rel_s)]

        def effective(name: str, base: float) -> float:
            for e in effects:
                v = getattr(e, name)
                if v is not None:
                    return v
            return base

        latency_factor = math.prod(e.latency_factor for e in effects) if effects else 1.0
        api_version = SERVICE_VERSIONS[dims["release"]]
        size_bytes = rng.randrange(*_SIZE_RANGE[size])
        lo, hi = _CHUNK_RANGE[size]
        chunks = rng.randint(lo, hi)
        idx = self.new_attempt(dims, synthetic, size_bytes)
        self.emit(t0_ms, "upload_started", idx, version=api_version, chunk_count=chunks)

        chunk_fail_p = effective("chunk_failure_rate", cfg.chunk_failure_rate[dims["network_type"]])
        chunk_median = cfg.chunk_median_ms[dims["network_type"]]
        cancel_at = rng.randrange(chunks) if rng.random() < cfg.cancel_rate else None
        abandon_at = rng.randrange(chunks) if rng.random() < effective("abandon_rate", cfg.abandon_rate) else None
        t = t0_ms + rng.uniform(5, 40)
        received = 0
        for n in range(chunks):
            if n == cancel_at:
                self.emit(t + rng.uniform(100, 3000), "upload_cancelled", idx, version=api_version,
                          reason=rng.choice(("user", "app_backgrounded", "replaced")))
                return
            if n == abandon_at:
                return
            for tries in range(1, MAX_CHUNK_TRIES + 1):
                took = chunk_median * rng.lognormvariate(0, 0.4)
                t += took
                if tries > 1:
                    self.emit(t - took + 1, "chunk_retry", idx, version=api_version, chunk_index=n, attempt=tries)
                if rng.random() < chunk_fail_p:
                    self.emit(t, "chunk_failed", idx, version=api_version, chunk_index=n, attempt=tries,
                              error_class=rng.choice(("storage", "timeout")))
                    t += 1000 * 2 ** (tries - 1) * rng.uniform(0.5, 1.0)  # client backoff
                    if tries == MAX_CHUNK_TRIES:
                        return  # the client gives up: no terminal event, abandoned later
                    continue
                nbytes = min(CHUNK_BYTES, size_bytes - received) if n == chunks - 1 else CHUNK_BYTES
                received += nbytes
                self.emit(t, "chunk_uploaded", idx, version=api_version, chunk_index=n, attempt=tries,
                          bytes=max(nbytes, 1), duration_ms=round(took, 3))
                break
        t += rng.uniform(5, 30)
        upload_ms = t - t0_ms
        self.emit(t, "upload_completed", idx, version=api_version, duration_ms=round(upload_ms, 3),
                  bytes=received, chunk_count=chunks)
        t_completed = t
        mode = dims["transcode_mode"]
        queue_wait = None
        if mode == "async":
            queue_wait = rng.expovariate(1 / 150.0) * latency_factor
            t += queue_wait
        t += rng.uniform(2, 10)
        self.emit(t, "transcode_started", idx, version=api_version, transcode_mode=mode,
                  queue_wait_ms=None if queue_wait is None else round(queue_wait, 3))
        processing = cfg.processing_median_ms[size] * rng.lognormvariate(0, 0.45) * latency_factor
        transcode_ms = processing * 0.85
        t_transcoded = t + transcode_ms
        if rng.random() < effective("failure_rate", cfg.transcode_failure_rate):
            cls = effects[0].error_class if effects and any(e.failure_rate is not None for e in effects) \
                else rng.choice(_ERROR_CLASSES_TRANSCODE)
            self.emit(t_transcoded, "transcode_failed", idx, service="transcoder", version=TRANSCODER_VERSION,
                      duration_ms=round(transcode_ms, 3), error_class=cls)
            t_end = t_transcoded + rng.uniform(1, 5)
            self.emit(t_end, "publish_failed", idx, version=api_version,
                      duration_ms=round(t_end - t_completed, 3), error_class=cls)
            return
        self.emit(t_transcoded, "transcode_completed", idx, service="transcoder", version=TRANSCODER_VERSION,
                  duration_ms=round(transcode_ms, 3))
        t_end = max(t_completed + processing, t_transcoded + 1)
        if rng.random() < cfg.publish_failure_rate:
            self.emit(t_end, "publish_failed", idx, version=api_version,
                      duration_ms=round(t_end - t_completed, 3), error_class=rng.choice(_ERROR_CLASSES_PUBLISH))
            return
        self.emit(t_end, "publish_succeeded", idx, version=api_version,
                  duration_ms=round(int(t_end) - int(t_completed), 3), video_id="vid_%024x" % rng.getrandbits(96))

    def rejected(self, t_ms: float) -> None:
        rng = self.rng
        dims = {"region": self.pick(REGIONS, self.cfg.region_weights),
                "app_version": self.pick(APP_VERSIONS, self.cfg.app_version_weights),
                "network_type": self.pick(NETWORK_TYPES, self.cfg.network_weights)}
        idx = self.new_attempt(dims, rng.random() < self.cfg.synthetic_share, None, null_ids=True)
        field_name, reason = rng.choice(_REJECT_FIELDS)
        self.emit(t_ms, "upload_rejected", idx, version=SERVICE_VERSIONS["stable"], reason=reason, field=field_name)

    def audit(self, t_ms: float, n: int) -> None:
        idx = self.new_attempt({}, False, None, null_ids=True)
        a = self.attempt_cols
        a["request_id"][idx] = None
        a["user_id"][idx] = None
        change = {"action": "set", "name": "release", "old": {"canary": 0.0}, "new": {"canary": self.cfg.canary_share}}
        self.emit(t_ms, "flag_changed" if n % 2 == 0 else "fault_changed", idx, version=SERVICE_VERSIONS["stable"],
                  actor="lab-operator", change=json.dumps(change, sort_keys=True))

    # -- whole run -------------------------------------------------------------------
    def run(self) -> pa.Table:
        cfg, rng = self.cfg, self.rng
        span_ms = cfg.duration_s * 1000.0
        starts = sorted(self.start_ms + rng.random() * span_ms for _ in range(cfg.attempts))
        for t0 in starts:
            self.attempt(t0)
        for _ in range(int(round(cfg.attempts * cfg.rejected_share))):
            self.rejected(self.start_ms + rng.random() * span_ms)
        for n in range(cfg.audit_events):
            self.audit(self.start_ms + (n + 0.5) * span_ms / max(cfg.audit_events, 1), n)
        return self.table()

    def table(self) -> pa.Table:
        c, a = self.cols, self.attempt_cols
        idx = pa.array(c["attempt_idx"], pa.int64())

        def per_attempt(name: str, typ: pa.DataType) -> pa.Array:
            return pa.array(a[name], typ).take(idx)

        n = len(c["ts"])
        flags = pa.StructArray.from_arrays(
            [per_attempt("transcode_mode", pa.string()), per_attempt("release", pa.string())],
            names=["transcode_mode", "release"])
        # Audit and rejected events carry no attempt flags: an empty object.
        columns = {
            "schema_version": pa.array([SCHEMA_VERSION] * n, pa.int32()),
            "ts": pa.array(c["ts"], pa.int64()).cast(pa.timestamp("ms")),
            "event": pa.array(c["event"], pa.string()),
            "request_id": per_attempt("request_id", pa.string()),
            "upload_id": per_attempt("upload_id", pa.string()),
            "trace_id": per_attempt("trace_id", pa.string()),
            "span_id": pa.array(c["span_id"], pa.string()),
            "service": pa.array(c["service"], pa.string()),
            "service_version": pa.array(c["service_version"], pa.string()),
            "user_id": per_attempt("user_id", pa.string()),
            "app_version": per_attempt("app_version", pa.string()),
            "region": per_attempt("region", pa.string()),
            "network_type": per_attempt("network_type", pa.string()),
            "media_size_bucket": per_attempt("media_size_bucket", pa.string()),
            "flags": flags,
            "synthetic": per_attempt("synthetic", pa.bool_()),
            "duration_ms": pa.array(c["duration_ms"], pa.float64()),
            "error_class": pa.array(c["error_class"], pa.string()),
            "chunk_index": pa.array(c["chunk_index"], pa.int32()),
            "attempt": pa.array(c["attempt"], pa.int32()),
            "bytes": pa.array(c["bytes"], pa.int64()),
            "media_size_bytes": pa.array(
                [a["media_size_bytes"][i] if e == "upload_started" else None
                 for i, e in zip(c["attempt_idx"], c["event"])], pa.int64()),
            "chunk_count": pa.array(c["chunk_count"], pa.int32()),
            "transcode_mode": pa.array(c["transcode_mode"], pa.string()),
            "queue_wait_ms": pa.array(c["queue_wait_ms"], pa.float64()),
            "video_id": pa.array(c["video_id"], pa.string()),
            "reason": pa.array(c["reason"], pa.string()),
            "field": pa.array(c["field"], pa.string()),
            "actor": pa.array(c["actor"], pa.string()),
            "change": pa.array(c["change"], pa.string()),
        }
        table = pa.table(columns, schema=EVENT_ARROW_SCHEMA)
        order = pa.compute.sort_indices(table, sort_keys=[("ts", "ascending")])
        return table.take(order)


def hash_user(n: int) -> int:
    """A stable pseudonymous 64-bit id for synthetic user n (splitmix64)."""
    z = (n + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


# Fields a JSON line always carries (nullable ones are written as null), in schema order.
_REQUIRED = ("schema_version", "ts", "event", "request_id", "upload_id", "trace_id", "span_id", "service",
             "service_version", "user_id", "app_version", "region", "network_type", "media_size_bucket",
             "flags", "synthetic")
_OPTIONAL = ("duration_ms", "error_class", "chunk_index", "attempt", "bytes", "media_size_bytes", "chunk_count",
             "transcode_mode", "queue_wait_ms", "video_id", "reason", "field", "actor", "change")
_AUDIT = ("fault_changed", "flag_changed")


def _json_line_sql(rel_name: str) -> str:
    """SQL building one JSON line per event: optional fields omitted when absent, as the schema wants."""
    parts = ["'{\"schema_version\":' || schema_version",
             "',\"ts\":\"' || strftime(ts, '%Y-%m-%dT%H:%M:%S.%g') || 'Z\"'"]
    for name in _REQUIRED[2:]:
        if name == "flags":
            parts.append("',\"flags\":' || CASE WHEN event IN ('fault_changed','flag_changed','upload_rejected') "
                         "OR flags.release IS NULL THEN '{}' ELSE "
                         "'{\"transcode_mode\":\"' || flags.transcode_mode || '\",\"release\":\"' || flags.release "
                         "|| '\"}' END")
        elif name == "synthetic":
            parts.append("',\"synthetic\":' || CASE WHEN synthetic THEN 'true' ELSE 'false' END")
        else:
            parts.append(f"',\"{name}\":' || coalesce(to_json({name})::VARCHAR, 'null')")
    for name in _OPTIONAL:
        value = f"{name}::VARCHAR" if name == "change" else f"to_json({name})::VARCHAR"
        parts.append(f"CASE WHEN {name} IS NULL THEN '' ELSE ',\"{name}\":' || {value} END")
    return " || ".join(parts) + " || '}' AS line"


def write_jsonl(table: pa.Table, path: str | Path, *, gzip: bool = False, batch_rows: int = 200_000) -> Path:
    """Write events as JSON lines (``.gz`` compressed when ``gzip``); returns the path."""
    import duckdb
    import gzip as gz

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.register("synth_events", table)
    rel = con.sql(f"SELECT {_json_line_sql('synth_events')} FROM synth_events")
    to_reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_record_batch  # DuckDB >= 1.4 renamed it
    reader = to_reader(batch_rows)
    opener = gz.open if gzip else open
    with opener(path, "wt", encoding="utf-8", newline="\n") as f:
        for batch in reader:
            lines = batch.column(0).to_pylist()
            if lines:
                f.write("\n".join(lines))
                f.write("\n")
    con.close()
    return path


def write_parquet(table: pa.Table, path: str | Path) -> Path:
    """Write events as one Parquet file in the column layout ``events compact`` produces."""
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return path


def event_dicts(table: pa.Table) -> list[dict]:
    """Events as the dicts their JSON lines hold (for small tables in tests)."""
    out = []
    for row in table.to_pylist():
        d = {k: row[k] for k in _REQUIRED}
        d["ts"] = row["ts"].strftime("%Y-%m-%dT%H:%M:%S.") + f"{row['ts'].microsecond // 1000:03d}Z"
        if d["event"] in _AUDIT + ("upload_rejected",) or not row["flags"] or row["flags"]["release"] is None:
            d["flags"] = {}
        for k in _OPTIONAL:
            if row[k] is not None:
                d[k] = json.loads(row[k]) if k == "change" else row[k]
        out.append(d)
    return out
