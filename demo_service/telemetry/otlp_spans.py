"""Finished SDK spans as an OTLP/JSON ``ExportTraceServiceRequest``, built directly as JSON.

The reference path, opentelemetry-proto's ``encode_spans`` (SDK spans to protobuf messages) and then
protobuf's ``json_format`` (messages to dicts), costs about 100 µs per span in the export thread: as much
CPU as a whole sampled request. This module writes the same document straight from the SDK span
objects, mirroring both steps field for field: the grouping by resource and instrumentation scope, the
proto3 JSON mapping (lowerCamelCase names in field-number order, fields at their default value left
out, 64-bit integers as strings, non-finite doubles as strings, bytes as base64) and OTLP/JSON's one
exception, trace and span IDs as lowercase hex. tests/test_otlp_spans.py holds the output to the
reference path's, byte for byte.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

__all__ = ["encode_spans_json", "encode_value"]

log = logging.getLogger(__name__)

# opentelemetry.proto.trace.v1.Span.SpanKind (SPAN_KIND_UNSPECIFIED = 0 is never written by the SDK).
_KIND = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3, SpanKind.PRODUCER: 4, SpanKind.CONSUMER: 5}
# SpanFlags: the parent's is-remote bit is known (always), and set when the parent is remote.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _double(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def encode_value(value: Any) -> dict:
    """An ``AnyValue``: the oneof member set (also at its default value), in the reference encoder's order of checks."""
    # The exact types almost every attribute has first: each gives what the ordered checks below give it.
    kind = type(value)
    if kind is str:
        return {"stringValue": value}
    if kind is int and _INT64_MIN <= value <= _INT64_MAX:
        return {"intValue": str(value)}
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"Value out of range: {value}")
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": _double(value)}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, Sequence):
        values = [encode_value(v) for v in value]
        return {"arrayValue": {"values": values} if values else {}}
    if isinstance(value, Mapping):
        pairs = [_key_value(str(k), v) for k, v in value.items()]
        return {"kvlistValue": {"values": pairs} if pairs else {}}
    raise Exception(f"Invalid type {type(value)} of value {value}")  # the reference encoder's own error


def _key_value(key: str, value: Any) -> dict:
    return {"key": key, "value": encode_value(value)} if key else {"value": encode_value(value)}


def _attributes(attributes: Mapping[str, Any] | None) -> list[dict]:
    """Attributes that cannot be encoded are logged and left out, as the reference encoder does."""
    out = []
    if attributes:
        for key, value in attributes.items():
            try:
                encoded = encode_value(value)
            except Exception as error:  # noqa: BLE001 - the reference encoder's behaviour
                log.exception("Failed to encode key %s: %s", key, error)
                continue
            out.append({"key": key, "value": encoded} if key else {"value": encoded})  # as _key_value
    return out


def _flags(parent) -> int:
    return _HAS_IS_REMOTE | _IS_REMOTE if parent is not None and parent.is_remote else _HAS_IS_REMOTE


def _scope(scope) -> dict:
    if scope is None:
        return {}
    out: dict[str, Any] = {}
    if scope.name:
        out["name"] = scope.name
    if scope.version:
        out["version"] = scope.version
    attributes = _attributes(scope.attributes)
    if attributes:
        out["attributes"] = attributes
    return out


def _resource(resource) -> dict:
    attributes = _attributes(resource.attributes)
    return {"attributes": attributes} if attributes else {}


def _span(span: ReadableSpan) -> dict:
    context = span.get_span_context()
    out: dict[str, Any] = {"traceId": format(context.trace_id, "032x"), "spanId": format(context.span_id, "016x")}
    if context.trace_state is not None:
        trace_state = ",".join(f"{key}={value}" for key, value in context.trace_state.items())
        if trace_state:
            out["traceState"] = trace_state
    parent = span.parent
    if parent:
        out["parentSpanId"] = format(parent.span_id, "016x")
    if span.name:
        out["name"] = span.name
    out["kind"] = _KIND[span.kind]
    if span.start_time:
        out["startTimeUnixNano"] = str(span.start_time)
    if span.end_time:
        out["endTimeUnixNano"] = str(span.end_time)
    attributes = _attributes(span.attributes)
    if attributes:
        out["attributes"] = attributes
    if span.dropped_attributes:
        out["droppedAttributesCount"] = span.dropped_attributes
    if span.events:
        events = []
        for event in span.events:
            encoded: dict[str, Any] = {}
            if event.timestamp:
                encoded["timeUnixNano"] = str(event.timestamp)
            if event.name:
                encoded["name"] = event.name
            event_attributes = _attributes(event.attributes)
            if event_attributes:
                encoded["attributes"] = event_attributes
            if event.dropped_attributes:
                encoded["droppedAttributesCount"] = event.dropped_attributes
            events.append(encoded)
        out["events"] = events
    if span.dropped_events:
        out["droppedEventsCount"] = span.dropped_events
    if span.links:
        links = []
        for link in span.links:
            encoded = {"traceId": format(link.context.trace_id, "032x"),
                       "spanId": format(link.context.span_id, "016x")}
            link_attributes = _attributes(link.attributes)
            if link_attributes:
                encoded["attributes"] = link_attributes
            if link.dropped_attributes:
                encoded["droppedAttributesCount"] = link.dropped_attributes
            encoded["flags"] = _flags(link.context)
            links.append(encoded)
        out["links"] = links
    if span.dropped_links:
        out["droppedLinksCount"] = span.dropped_links
    status = span.status
    if status is not None:
        encoded_status: dict[str, Any] = {}
        if status.description:
            encoded_status["message"] = status.description
        if status.status_code.value:
            encoded_status["code"] = status.status_code.value
        out["status"] = encoded_status
    out["flags"] = _flags(parent)
    return out


def encode_spans_json(spans: Sequence[ReadableSpan], resources: dict | None = None) -> dict:
    """The ``ExportTraceServiceRequest`` of ``spans`` as its OTLP/JSON document (a dict for ``json.dumps``).

    ``resources`` is an optional cache of encoded resources (a process has one resource, encoded once).

    Spans are grouped by resource as the reference encoder groups them, by equality; but a ``Resource`` hashes
    by serialising its attributes to JSON, so the grouping goes by the resource object's identity and compares
    each distinct object of the batch with the groups once (every span of a process shares one object)."""
    groups: dict[int, tuple[Any, dict[Any, list[dict]]]] = {}  # by the id of the group's first resource object
    group_of: dict[int, int] = {}  # id of a resource object -> its group
    for span in spans:
        resource = span.resource
        group = group_of.get(id(resource))
        if group is None:
            group = next((key for key, (first, _) in groups.items() if first == resource), id(resource))
            group_of[id(resource)] = group
            if group not in groups:
                groups[group] = (resource, {})
        groups[group][1].setdefault(span.instrumentation_scope or None, []).append(_span(span))
    resource_spans = []
    for resource, scopes in groups.values():
        scope_spans = []
        for scope, encoded in scopes.items():
            entry: dict[str, Any] = {"scope": _scope(scope), "spans": encoded}
            if scope is not None and scope.schema_url:
                entry["schemaUrl"] = scope.schema_url
            scope_spans.append(entry)
        if resources is None:
            encoded_resource = _resource(resource)
        else:
            # Keyed by id, holding the resource: while it is cached, no other object can have its id.
            cached = resources.get(id(resource))
            if cached is None:
                cached = resources[id(resource)] = (resource, _resource(resource))
            encoded_resource = cached[1]
        entry = {"resource": encoded_resource, "scopeSpans": scope_spans}
        if resource.schema_url:
            entry["schemaUrl"] = resource.schema_url
        resource_spans.append(entry)
    return {"resourceSpans": resource_spans}
