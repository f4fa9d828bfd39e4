"""Attempts tables with planted effects, built directly (columns as toolkit.events.attempts defines them),
for tests that need an exact, known truth. Realistic event streams come from toolkit.events.synth."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa

from contract.events import APP_VERSIONS, MEDIA_SIZE_BUCKETS, NETWORK_TYPES, REGIONS, SERVICE_VERSIONS

START = datetime(2026, 1, 5, 12, 0, 0)


def attempts_table(n: int = 20_000, *, seed: int = 0, canary_share: float = 0.05, users: int | None = None,
                   success: dict[str, float] | None = None, latency_mu: dict[str, float] | None = None,
                   latency_sigma: float = 0.5, duration_s: float = 1800.0,
                   plant: dict[tuple[str, str], float] | None = None, slow_plant: dict[tuple[str, str], float] | None = None,
                   start: datetime = START, id_prefix: str = "") -> pa.Table:
    """``success``/``latency_mu`` per release variant; ``plant`` multiplies the failure
    probability of attempts in a (column, value) cohort; ``slow_plant`` multiplies latency."""
    rng = np.random.default_rng(seed)
    success = {"stable": 0.99, "canary": 0.99, **(success or {})}
    latency_mu = {"stable": 6.0, "canary": 6.0, **(latency_mu or {})}
    users = users or max(1, n // 4)
    user_idx = rng.integers(0, users, n)
    # Sticky assignment by user, as the service does with a user hash.
    user_is_canary = rng.random(users) < canary_share
    release = np.where(user_is_canary[user_idx], "canary", "stable")
    cols = {
        "region": rng.choice(REGIONS, n, p=[0.4, 0.25, 0.25, 0.1]),
        "app_version": rng.choice(APP_VERSIONS, n, p=[0.2, 0.3, 0.45, 0.05]),
        "network_type": rng.choice(NETWORK_TYPES, n, p=[0.5, 0.2, 0.2, 0.1]),
        "media_size_bucket": rng.choice(MEDIA_SIZE_BUCKETS, n, p=[0.5, 0.35, 0.15]),
    }
    p_success = np.where(release == "canary", success["canary"], success["stable"])
    p_fail = 1 - p_success
    for (col, val), mult in (plant or {}).items():
        p_fail = np.where(cols[col] == val, np.minimum(1.0, p_fail * mult), p_fail)
    u = rng.random(n)
    outcome = np.where(u < p_fail * 0.8, "failed", np.where(u < p_fail, "abandoned", "succeeded"))
    cancelled = rng.random(n) < 0.01
    outcome = np.where(cancelled, "cancelled", outcome)
    mu = np.where(release == "canary", latency_mu["canary"], latency_mu["stable"])
    proc = rng.lognormal(mu, latency_sigma)
    transcode = proc * 0.7  # before slow_plant: a planted slowdown sits outside the transcoder
    for (col, val), mult in (slow_plant or {}).items():
        proc = np.where(cols[col] == val, proc * mult, proc)
    ok = outcome == "succeeded"
    started = np.array([start + timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, duration_s, n))])
    upload_s = rng.lognormal(1.0, 0.4, n)
    chunk_count = rng.integers(1, 9, n)
    chunk_retries = rng.poisson(0.05, n)
    error_class = np.where(outcome == "failed", rng.choice(["timeout", "dependency_unavailable", "internal"], n), None)
    completed = [s + timedelta(seconds=float(x)) for s, x in zip(started, upload_s)]
    ended = [c + timedelta(milliseconds=float(p)) for c, p in zip(completed, proc)]
    return pa.table({
        "request_id": [f"req{id_prefix}{i:08d}" for i in range(n)],
        "upload_id": [f"up{id_prefix}{i:08d}" for i in range(n)],
        "user_id": [f"user{id_prefix}{u:06d}" for u in user_idx],
        "outcome": outcome,
        "started_at": pa.array(started, pa.timestamp("us")),
        "completed_at": pa.array(completed, pa.timestamp("us")),
        "ended_at": pa.array(ended, pa.timestamp("us")),
        "last_event_at": pa.array(ended, pa.timestamp("us")),
        "processing_ms": pa.array(np.where(ok, proc, np.nan), pa.float64(), from_pandas=True),
        "e2e_ms": pa.array(np.where(ok, proc + upload_s * 1000, np.nan), pa.float64(), from_pandas=True),
        "transcode_ms": pa.array(np.where(ok, transcode, np.nan), pa.float64(), from_pandas=True),
        **{k: pa.array(v, pa.string()) for k, v in cols.items()},
        "release": pa.array(release, pa.string()),
        "transcode_mode": pa.array(np.full(n, "sync"), pa.string()),
        "service_version": pa.array(np.where(release == "canary", SERVICE_VERSIONS["canary"], SERVICE_VERSIONS["stable"]), pa.string()),
        "synthetic": pa.array(np.ones(n, bool)),
        "chunk_count": pa.array(chunk_count, pa.int32()),
        "chunks_uploaded": pa.array(chunk_count, pa.int32()),
        "chunk_retries": pa.array(chunk_retries, pa.int32()),
        "chunk_failures": pa.array(np.zeros(n, np.int32), pa.int32()),
        "error_class": pa.array(error_class, pa.string()),
    })


def relation(table: pa.Table, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyRelation:
    con = con or duckdb.connect()
    return con.from_arrow(table)


def rollout_step_table(users: int = 1000, n: int = 20_000, *, seed: int = 0, before: float = 5.0,
                       after: float = 20.0, step_s: float = 600.0, duration_s: float = 1800.0,
                       upload_median_s: float = 20.0, per_attempt: bool = False, lose_variant_users: float = 0.0,
                       start: datetime = START) -> pa.Table:
    """A sticky per-user rollout of ``release=canary`` stepping from ``before`` % to ``after`` % at ``step_s``:
    each user has a fixed bucket (the flag's user hash) and an attempt is in the canary if its user's bucket is
    under the percent when the attempt started, so users only ever move from stable to canary. Users' activity
    is skewed (lognormal), so attempts cluster by user. ``per_attempt``: every attempt draws its release afresh
    instead (users flip both ways). ``lose_variant_users``: that share of the users in the canary after the
    step lose every attempt (a real sample-ratio mismatch). Other columns as ``attempts_table``."""
    rng = np.random.default_rng(seed + 7919)
    base = attempts_table(n, seed=seed, canary_share=0.0, users=users, duration_s=duration_s, start=start)
    bucket = rng.random(users)
    activity = rng.lognormal(0.0, 1.0, users)
    user_idx = rng.choice(users, n, p=activity / activity.sum())
    started_s = np.sort(rng.uniform(0, duration_s, n))
    share = np.where(started_s < step_s, before, after) / 100
    canary = (rng.random(n) if per_attempt else bucket[user_idx]) < share
    started = np.datetime64(start, "us") + (started_s * 1e6).astype("timedelta64[us]")
    completed = started + (rng.lognormal(np.log(upload_median_s), 0.5, n) * 1e6).astype("timedelta64[us]")
    ended = completed + (base.column("ended_at").to_numpy() - base.column("completed_at").to_numpy())
    release = np.where(canary, "canary", "stable")
    new = {"user_id": pa.array([f"user{u:06d}" for u in user_idx], pa.string()),
           "started_at": pa.array(started, pa.timestamp("us")), "completed_at": pa.array(completed, pa.timestamp("us")),
           "ended_at": pa.array(ended, pa.timestamp("us")), "last_event_at": pa.array(ended, pa.timestamp("us")),
           "release": pa.array(release, pa.string()),
           "service_version": pa.array(np.where(canary, SERVICE_VERSIONS["canary"], SERVICE_VERSIONS["stable"]),
                                       pa.string())}
    for name, col in new.items():
        base = base.set_column(base.schema.get_field_index(name), name, col)
    if lose_variant_users:
        lost = (bucket < after / 100) & (rng.random(users) < lose_variant_users)
        base = base.filter(pa.array(~lost[user_idx]))
    return base
