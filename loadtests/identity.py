"""Per-user identity and randomness: seeded, so a run with the same seed makes the same choices."""

from __future__ import annotations

import itertools
import random
import secrets
from collections import defaultdict

__all__ = ["user_rng", "next_user_number", "worker_index", "new_trace_id", "new_span_id", "traceparent"]

_user_numbers: dict[str, itertools.count] = defaultdict(itertools.count)


def next_user_number(kind: str) -> int:
    """0, 1, 2... per user kind in this process, in spawn order."""
    return next(_user_numbers[kind])


def worker_index(environment) -> int:
    """The Locust worker index of this process (0 when not distributed)."""
    runner = getattr(environment, "runner", None)
    return int(getattr(runner, "worker_index", 0) or 0)


def user_rng(seed: int, kind: str, worker: int, user: int) -> random.Random:
    """The random generator of one user: a pure function of the run seed and the user's place.

    String seeds go through SHA-512 in CPython, so neighbouring users get unrelated streams.
    """
    return random.Random(f"obslab/{seed}/{kind}/{worker}/{user}")


def new_trace_id() -> str:
    # Not from the seeded generator: two runs with one seed must not share trace IDs.
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def traceparent(trace_id: str, span_id: str, sample_ratio: float) -> str:
    """W3C traceparent; 'sampled' by the same trace-ID rule as OpenTelemetry's TraceIdRatioBased."""
    sampled = int(trace_id[16:], 16) < sample_ratio * (1 << 64)
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"
