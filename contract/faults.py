"""The fault vocabulary of the control plane: kinds, targets, selectors and parameters.

The contract between the service's /admin/faults API (demo_service.faults validates and matches)
and whoever injects faults (drills, the dashboard, tests). Data only.
"""

from __future__ import annotations

from contract.events import APP_VERSIONS, FLAGS, MEDIA_SIZE_BUCKETS, NETWORK_TYPES, REGIONS

__all__ = ["KINDS", "TARGETS", "API_ROUTES", "KIND_TARGETS", "SELECTOR_VALUES", "PARAMS", "SHED_CLASSES",
           "SHED_PARAMS"]

KINDS = ("latency", "errors", "timeouts", "chunk_failures", "cpu_burn", "memory_growth",
         "cache_off", "drop_events", "cancel_as_failure", "capacity")
TARGETS = ("api", "transcoder", "storage", "db", "cache", "event_sink")
# Route groups of the publish API a fault on target "api" may name (None = all).
API_ROUTES = ("create", "chunk", "complete", "status", "cancel", "feed")
# Which kinds make sense on which target.
KIND_TARGETS: dict[str, tuple[str, ...]] = {
    "latency": ("api", "transcoder", "storage", "db", "cache"),
    "errors": ("api", "transcoder", "storage", "db"),
    "timeouts": ("api", "transcoder"),
    "chunk_failures": ("storage",),
    "cpu_burn": ("api", "transcoder"),
    "memory_growth": ("api", "transcoder"),
    "cache_off": ("cache",),
    "drop_events": ("event_sink",),
    # A build that ends a user's cancelled upload as a failed publish (a definition change, not an outage).
    "cancel_as_failure": ("api",),
    # The database primary's connection slots shrunk to a few per process: a load-dependent fault.
    "capacity": ("db",),
}
SELECTOR_VALUES: dict[str, tuple[str, ...]] = {
    "region": REGIONS,
    "app_version": APP_VERSIONS,
    "network_type": NETWORK_TYPES,
    "media_size_bucket": MEDIA_SIZE_BUCKETS,
    # Extension of the brief's selectors: the rollout cohort, so a drill can break only the canary.
    "release": FLAGS["release"],
}
# Parameters per kind: name -> (default, minimum, maximum).
PARAMS: dict[str, dict[str, tuple[float, float, float]]] = {
    "latency": {"latency_ms": (500, 0, 60_000)},
    "errors": {},
    "timeouts": {"timeout_ms": (5_000, 0, 60_000)},
    "chunk_failures": {},
    "cpu_burn": {"cpu_ms": (50, 0, 10_000)},
    "memory_growth": {"kib_per_request": (256, 0, 64 * 1024), "max_mib": (256, 1, 2048)},
    "cache_off": {},
    "drop_events": {},
    "cancel_as_failure": {},
    # slots: concurrent queries per API process; query_ms: how long a query holds its slot; wait_ms: the
    # longest a query waits for a free slot before it fails as an overloaded dependency does.
    "capacity": {"slots": (4, 1, 256), "query_ms": (20, 0, 5_000), "wait_ms": (250, 0, 30_000)},
}

# The shedding control (/admin/shed/{class}): low-priority request classes an operator may reject early
# (503 + Retry-After, before they reach the database primary) -> the route they name.
SHED_CLASSES = {
    "status": "GET /v1/uploads/{upload_id}",  # status polls: the app polls again later
    "feed": "GET /v1/feed",  # feed reads: the app shows what it has
}
# Parameters of a shed spec: name -> (default, minimum, maximum).
SHED_PARAMS: dict[str, tuple[float, float, float]] = {
    "percent": (100, 1, 100),  # share of the class's requests rejected
    "retry_after_s": (2, 1, 300),  # the Retry-After the rejected requests get
}
