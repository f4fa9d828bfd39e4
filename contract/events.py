"""The event contract (schema v1), shared by the emitter (demo_service) and the readers (toolkit).

Every bounded set used as a cohort dimension or metric label lives here, so the
service, the load generator, the SLI engine and the rule generator cannot drift.
The machine-readable form is ``schemas/event-v1.schema.json``; a test holds the two
together.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources

__all__ = [
    "SCHEMA_VERSION",
    "LIFECYCLE_EVENTS",
    "TERMINAL_EVENTS",
    "AUDIT_EVENTS",
    "ALL_EVENTS",
    "FAILURE_EVENTS",
    "SERVICES",
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
    "OPTIONAL_EVENT_FIELDS",
    "DURATION_STARTS",
    "event_fields",
    "numeric_fields",
    "TimeError",
    "parse_time",
    "format_time",
    "event_time_text",
    "EVENT_TS_PATTERN",
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
AUDIT_EVENTS = ("fault_changed", "flag_changed", "shed_changed")
ALL_EVENTS = LIFECYCLE_EVENTS + AUDIT_EVENTS

# Services that emit events.
SERVICES = ("publish-api", "transcoder")

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
    text = resources.files("contract.schemas").joinpath("event-v1.schema.json").read_text()
    return json.loads(text)


# Fields an event carries only sometimes, so the schema cannot require them: the queue wait exists
# only in async mode; a cancellation's duration is written by the service but not required of
# other emitters. docs/events.md lists them with the event; a test holds the three together.
OPTIONAL_EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "transcode_started": ("queue_wait_ms",),
    "upload_cancelled": ("duration_ms",),
}

# The phase a ``duration_ms`` measures: event → the event the phase starts at (docs/events.md), so
# ``publish_succeeded.duration_ms`` is the latency upload_completed → publish_succeeded.
DURATION_STARTS: dict[str, str] = {
    "upload_completed": "upload_started",
    "transcode_completed": "transcode_started",
    "transcode_failed": "transcode_started",
    "publish_succeeded": "upload_completed",
    "publish_failed": "upload_completed",
    "upload_cancelled": "upload_started",
}


@lru_cache(maxsize=None)
def event_fields(event: str) -> frozenset[str]:
    """Every field an ``event`` line may carry: the fields of all events, those the schema requires of
    this event, and its ``OPTIONAL_EVENT_FIELDS``. Empty for a name the contract does not know."""
    schema = event_schema()
    if event not in schema["properties"]["event"]["enum"]:
        return frozenset()
    own: set[str] = set(OPTIONAL_EVENT_FIELDS.get(event, ()))
    for rule in schema.get("allOf", ()):
        if rule.get("if", {}).get("properties", {}).get("event", {}).get("const") == event:
            own.update(rule.get("then", {}).get("required", ()))
    return frozenset(schema["required"]) | frozenset(own)


@lru_cache(maxsize=1)
def numeric_fields() -> frozenset[str]:
    """Fields whose values are numbers (a metric can take a percentile or a mean of them)."""
    props = event_schema()["properties"]
    return frozenset(name for name, p in props.items() if p.get("type") in ("number", "integer"))


# -- time: the one parser and formatter of the project ------------------------------
#
# Events carry ``ts`` as RFC 3339 with milliseconds and a zone designator: ``Z`` (what every
# obslab emitter writes) or a numeric offset (``+02:00``), which every reader converts to UTC.
# A time without a zone is refused in events (its instant is unknown); on the command line it
# means UTC. Inside the toolkit, times are naive datetimes in UTC (as DuckDB's TIMESTAMP).

# The schema's ``ts`` pattern (schemas/event-v1.schema.json): a test holds the two together.
EVENT_TS_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}(Z|[+-]\d{2}:\d{2})$"
_HAS_ZONE = re.compile(r"(?:[Zz]|[+-]\d{2}:?\d{2})$")


class TimeError(ValueError):
    """A time that cannot be read; the message quotes it and shows the expected form."""


def parse_time(value: "str | datetime | None", *, what: str = "time", zone_required: bool = False
               ) -> "datetime | None":
    """RFC 3339 / ISO 8601 text (or a datetime) → naive UTC datetime; ``None`` stays ``None``.

    An offset is converted to UTC. Without a zone the time is taken as UTC, unless
    ``zone_required`` (event timestamps), when it is refused.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo is not None else value
    s = str(value).strip()
    if zone_required and not _HAS_ZONE.search(s):
        raise TimeError(f"{what}: {value!r} has no time zone (expected Z or an offset, e.g. "
                        "2026-01-05T10:30:00.000Z or 2026-01-05T12:30:00.000+02:00)")
    if s[-1:] in ("Z", "z"):
        s = s[:-1] + "+00:00"
    try:
        t = datetime.fromisoformat(s)
    except ValueError:
        raise TimeError(f"{what}: {value!r} is not a time (expected RFC 3339, e.g. 2026-01-05T10:30:00Z)") from None
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc).replace(tzinfo=None)
    return t


def format_time(value: "datetime | float | None", *, timespec: str = "milliseconds") -> "str | None":
    """RFC 3339 UTC, ``Z`` suffix: ``2026-01-05T10:30:00.123Z`` (``timespec="seconds"`` drops the fraction).

    ``value`` is a datetime (naive means UTC) or seconds since the epoch.
    """
    if value is None:
        return None
    if not isinstance(value, datetime):
        return event_time_text(float(value)) if timespec == "milliseconds" else \
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(value)))
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if timespec == "seconds":
        return text + "Z"
    return f"{text}.{value.microsecond // 1000:03d}Z"


_second_cache: "tuple[int, str]" = (-1, "")


def event_time_text(epoch: float) -> str:
    """``format_time`` of epoch seconds, with the seconds part cached (the emitter's hot path)."""
    global _second_cache
    second = int(epoch // 1)
    cached_second, prefix = _second_cache
    if cached_second != second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_cache = (second, prefix)
    return f"{prefix}.{int((epoch - second) * 1000):03d}Z"
