"""The event contract (schema v1), shared by the emitter (demo_service) and the readers (toolkit).

Every bounded set used as a cohort dimension or metric label lives here, so the
service, the load generator, the SLI engine and the rule generator cannot drift.
The machine-readable form is ``schemas/event-v1.schema.json``; a test holds the two
together.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

__all__ = [
    "SCHEMA_VERSION",
    "LIFECYCLE_EVENTS",
    "TERMINAL_EVENTS",
    "AUDIT_EVENTS",
    "ALL_EVENTS",
    "FAILURE_EVENTS",
    "REGIONS",
    "APP_VERSIONS",
    "NETWORK_TYPES",
    "MEDIA_SIZE_BUCKETS",
    "ERROR_CLASSES",
    "FLAGS",
    "COHORT_DIMENSIONS",
    "SERVICE_VERSIONS",
    "media_size_bucket",
    "event_schema",
]

SCHEMA_VERSION = 1

# Lifecycle of one publish attempt, in the order a successful attempt emits them.
LIFECYCLE_EVENTS = (
    "upload_started",
    "chunk_uploaded",
    "chunk_retry",
    "chunk_failed",
    "upload_completed",
    "transcode_started",
    "transcode_completed",
    "transcode_failed",
    "publish_succeeded",
    "publish_failed",
    "upload_cancelled",
    # An invalid request: not an attempt, never counted in a denominator.
    "upload_rejected",
)
TERMINAL_EVENTS = ("publish_succeeded", "publish_failed", "upload_cancelled")
FAILURE_EVENTS = ("chunk_failed", "transcode_failed", "publish_failed")
# Changes made through the control plane; they carry no attempt.
AUDIT_EVENTS = ("fault_changed", "flag_changed")
ALL_EVENTS = LIFECYCLE_EVENTS + AUDIT_EVENTS

# Cohort dimensions: bounded sets, so they are safe as metric labels.
REGIONS = ("us-east", "us-west", "eu-west", "ap-south")
APP_VERSIONS = ("5.2.0", "5.3.0", "5.4.0", "5.5.0-beta")
NETWORK_TYPES = ("wifi", "5g", "4g", "3g")
MEDIA_SIZE_BUCKETS = ("small", "medium", "large")
ERROR_CLASSES = (
    "timeout",
    "dependency_unavailable",
    "storage",
    "internal",
    "chunk_missing",
)
# Flags and their variants; the first variant is the default.
FLAGS = {
    "transcode_mode": ("sync", "async"),
    "release": ("stable", "canary"),
}
# service_version of the API by release variant: a canary is a different build.
SERVICE_VERSIONS = {"stable": "1.4.0", "canary": "1.5.0"}

COHORT_DIMENSIONS = ("region", "app_version", "network_type", "media_size_bucket")

# Declared media size (bytes) → bucket. Upper bounds are exclusive.
_MEDIA_SIZE_LIMITS = ((20 * 1024 * 1024, "small"), (200 * 1024 * 1024, "medium"))


def media_size_bucket(media_size_bytes: int) -> str:
    """Bucket of a declared media size: small < 20 MiB <= medium < 200 MiB <= large."""
    for limit, bucket in _MEDIA_SIZE_LIMITS:
        if media_size_bytes < limit:
            return bucket
    return "large"


@lru_cache(maxsize=1)
def event_schema() -> dict:
    """The JSON Schema (draft 2020-12) of one event line."""
    text = resources.files("toolkit.schemas").joinpath("event-v1.schema.json").read_text()
    return json.loads(text)
