"""The OpenAPI 3.1 description of the publish API (served at ``/openapi.json``).

Kept by hand next to the code it describes; tests hold them together (every Flask
route is described, and responses are checked against it by schemathesis).
"""

from __future__ import annotations

from functools import lru_cache

from demo_service import __version__
from demo_service.admin import PRIVATE_AUDIT_HEADER
from demo_service.faults import API_ROUTES, KINDS, PARAMS, SELECTOR_VALUES, TARGETS
from contract.events import APP_VERSIONS, ERROR_CLASSES, FLAGS, NETWORK_TYPES, REGIONS
from contract.faults import SHED_CLASSES, SHED_PARAMS

__all__ = ["openapi_spec"]


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str, headers: dict | None = None) -> dict:
    out = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _error(description: str, retry_after: bool = False) -> dict:
    headers = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}} if retry_after else None
    return _json(_ref("Error"), description, headers)


_UPLOAD_ID = {"name": "upload_id", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^up_[0-9a-f]{24}$"}}
_REQUEST_ID_HEADER = {"name": "X-Request-ID", "in": "header", "required": False,
                      "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{8,64}$"},
                      "description": "Correlation ID of the attempt (minted by the service when absent)."}
_AUTH = [{"bearer": []}]
_ADMIN_ERRORS = {"401": _error("Missing or wrong bearer token."),
                 "403": _error("Non-loopback client while remote admin is not allowed."),
                 "503": _error("No admin token configured.")}


def _admin(summary: str, operation_id: str, responses: dict, parameters: list | None = None,
           body: str | None = None) -> dict:
    """One operation of the admin API: bearer auth, an optional JSON body, and the admin errors."""
    op: dict = {"summary": summary, "operationId": operation_id, "security": _AUTH}
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    op["responses"] = {**responses, **_ADMIN_ERRORS}
    return op


def _named_control(kind: str, name: dict, actor: dict, *, put_summary: str, unknown: str,
                   delete_summary: str, delete_id: str, deleted: dict, absent: str) -> dict:
    """PUT and DELETE of one named control that is not a fault (a flag, a shed class): set from a
    ``<kind>Spec`` body returning ``<kind>`` (operationId ``put<kind>``), removed with an X-Actor; no
    private audit."""
    return {
        "put": _admin(put_summary, f"put{kind}",
                      {"200": _json(_ref(kind), "Stored."), "400": _error("Malformed JSON or header."),
                       "404": _error(unknown), "422": _error(f"Invalid {kind.lower()} spec.")},
                      parameters=[name, actor], body=f"{kind}Spec"),
        "delete": _admin(delete_summary, delete_id,
                         {"200": deleted, "400": _error("Bad X-Actor."), "404": _error(absent)},
                         parameters=[name, actor])}


@lru_cache(maxsize=1)
def openapi_spec() -> dict:
    schemas = {
        "Error": {"type": "object", "required": ["error"], "properties": {
            "error": {"type": "object", "required": ["code", "message", "field"], "properties": {
                "code": {"type": "string"}, "message": {"type": "string"},
                "field": {"type": ["string", "null"]}}},
            "status": {"type": "string"}, "upload_id": {"type": "string"}, "request_id": {"type": "string"},
            "error_class": {"enum": list(ERROR_CLASSES)}, "chunk_index": {"type": "integer"},
            "attempt": {"type": "integer"}}},
        "CreateUpload": {"type": "object",
                         "required": ["media_size_bytes", "chunk_count", "app_version", "region", "network_type",
                                      "user_id"],
                         "properties": {
                             "media_size_bytes": {"type": "integer", "minimum": 1, "maximum": 16 * 1024 ** 3},
                             "chunk_count": {"type": "integer", "minimum": 1, "maximum": 64},
                             "app_version": {"enum": list(APP_VERSIONS)},
                             "region": {"enum": list(REGIONS)},
                             "network_type": {"enum": list(NETWORK_TYPES)},
                             "user_id": {"type": "string", "minLength": 1, "maxLength": 128,
                                         "description": "Raw user id; the service keeps only a keyed hash."}}},
        "Flags": {"type": "object", "properties": {k: {"enum": list(v)} for k, v in FLAGS.items()},
                  "additionalProperties": False},
        "Upload": {"type": "object", "required": ["upload_id", "request_id", "status", "flags", "max_chunk_bytes"],
                   "properties": {"upload_id": {"type": "string"}, "request_id": {"type": "string"},
                                  "status": {"const": "uploading"}, "flags": _ref("Flags"),
                                  "max_chunk_bytes": {"type": "integer"}}},
        "UploadStatus": {"type": "object", "required": ["upload_id", "request_id", "status"], "properties": {
            "upload_id": {"type": "string"}, "request_id": {"type": "string"},
            "status": {"enum": ["uploading", "transcoding", "published", "failed", "cancelled"]},
            "video_id": {"type": "string"}, "error_class": {"enum": list(ERROR_CLASSES)}}},
        "Chunk": {"type": "object", "required": ["chunk_index", "received"],
                  "properties": {"chunk_index": {"type": "integer"}, "received": {"const": True}}},
        "Published": {"type": "object", "required": ["upload_id", "request_id", "status"], "properties": {
            "upload_id": {"type": "string"}, "request_id": {"type": "string"},
            "status": {"enum": ["published", "transcoding"]}, "video_id": {"type": "string"}}},
        "Cancel": {"type": "object", "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 200}}},
        "Cancelled": {"type": "object", "required": ["upload_id", "status"],
                      "properties": {"upload_id": {"type": "string"}, "status": {"const": "cancelled"}}},
        "Feed": {"type": "object", "required": ["videos", "cache"], "properties": {
            "videos": {"type": "array", "items": {"type": "object", "properties": {
                "video_id": {"type": "string"}, "region": {"type": "string"},
                "media_size_bucket": {"type": "string"}, "bytes": {"type": "integer"},
                "published_at": {"type": "number"}}}},
            "cache": {"enum": ["hit", "miss"]}}},
        "FaultSpec": {"type": "object", "required": ["kind", "target"], "additionalProperties": False, "properties": {
            "kind": {"enum": list(KINDS)}, "target": {"enum": list(TARGETS)},
            "route": {"enum": [*API_ROUTES, None]},
            "selector": {"type": "object", "properties": {
                **{k: {"type": "array", "items": {"enum": list(v)}, "minItems": 1} for k, v in SELECTOR_VALUES.items()},
                "percentage": {"type": "number", "minimum": 0, "maximum": 100}}, "additionalProperties": False},
            "percentage": {"type": "number", "minimum": 0, "maximum": 100},
            "params": {"type": "object", "additionalProperties": False,
                       "properties": {name: {"type": "number", "minimum": lo, "maximum": hi}
                                      for kind_params in PARAMS.values() for name, (_, lo, hi) in kind_params.items()},
                       "description": "Per kind: latency_ms (latency), timeout_ms (timeouts), cpu_ms (cpu_burn), "
                                      "kib_per_request and max_mib (memory_growth); other combinations are 422."},
            "duration_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 604800},
            "expires_at": {"type": ["number", "null"]}}},
        "Fault": {"type": "object", "required": ["name", "kind", "target"], "properties": {
            "name": {"type": "string"}, "kind": {"enum": list(KINDS)}, "target": {"enum": list(TARGETS)},
            "route": {"type": ["string", "null"]}, "selector": {"type": "object"},
            "percentage": {"type": "number"}, "params": {"type": "object"},
            "expires_at": {"type": ["number", "null"]}}},
        "FaultList": {"type": "object", "required": ["faults"],
                      "properties": {"faults": {"type": "array", "items": _ref("Fault")}}},
        "Deleted": {"type": "object", "required": ["deleted"],
                    "properties": {"deleted": {"type": "array", "items": {"type": "string"}}}},
        "FlagSpec": {"type": "object", "additionalProperties": False, "properties": {
            "default": {"enum": sorted({v for vs in FLAGS.values() for v in vs}),
                        "description": "A variant of this flag (another flag's variant is 422)."},
            "rollout": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0, "maximum": 100},
                        "description": "variant -> percentage of users (sticky by user hash); sum <= 100."}}},
        "Flag": {"type": "object", "required": ["name", "default", "rollout", "variants"], "properties": {
            "name": {"enum": list(FLAGS)}, "default": {"type": "string"}, "rollout": {"type": "object"},
            "variants": {"type": "array", "items": {"type": "string"}}}},
        "ShedSpec": {"type": "object", "additionalProperties": False, "properties": {
            name: {"type": "integer" if name == "retry_after_s" else "number", "minimum": lo, "maximum": hi,
                   "default": default}
            for name, (default, lo, hi) in SHED_PARAMS.items()},
            "description": "percent: share of the class's requests rejected; retry_after_s: their Retry-After."},
        "Shed": {"type": "object", "required": ["class", "route", "percent", "retry_after_s"], "properties": {
            "class": {"enum": list(SHED_CLASSES)}, "route": {"type": "string"}, "percent": {"type": "number"},
            "retry_after_s": {"type": "integer"}}},
        "ShedList": {"type": "object", "required": ["shed", "classes"], "properties": {
            "shed": {"type": "array", "items": _ref("Shed")},
            "classes": {"type": "object", "description": "class -> the route it names"}}},
        "FlagList": {"type": "object", "required": ["flags"],
                     "properties": {"flags": {"type": "array", "items": _ref("Flag")}}},
    }
    fault_name = {"name": "name", "in": "path", "required": True,
                  "schema": {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$"}}
    flag_name = {"name": "name", "in": "path", "required": True, "schema": {"enum": list(FLAGS)}}
    shed_class = {"name": "name", "in": "path", "required": True, "schema": {"enum": list(SHED_CLASSES)},
                  "description": "The low-priority request class."}
    actor = {"name": "X-Actor", "in": "header", "required": False,
             "schema": {"type": "string", "pattern": "^[A-Za-z0-9 ._@:/-]{1,100}$"},
             "description": "Who makes the change (recorded in the audit event)."}
    private_audit = {"name": PRIVATE_AUDIT_HEADER, "in": "header", "required": False, "schema": {"enum": ["private"]},
                     "description": "`private`: no fault_changed audit event (a drill's injected fault, which a real "
                                    "system would not log; the drill keeps its own record)."}
    paths = {
        "/v1/uploads": {"post": {
            "summary": "Create an upload (starts a publish attempt).", "operationId": "createUpload",
            "parameters": [_REQUEST_ID_HEADER,
                           {"name": "X-Synthetic", "in": "header", "required": False, "schema": {"type": "string"},
                            "description": "1 marks load-generator traffic."}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("CreateUpload")}}},
            "responses": {"201": _json(_ref("Upload"), "Created."),
                          "400": _error("Malformed JSON or header."),
                          "409": _error("X-Request-ID already used by another upload."),
                          "413": _error("Body too large."),
                          "422": _error("A field out of its domain."),
                          "503": _error("Injected unavailability.", True), "504": _error("Injected timeout.", True)}}},
        "/v1/uploads/{upload_id}": {"get": {
            "summary": "Status of an upload.", "operationId": "getUpload", "parameters": [_UPLOAD_ID,
                                                                                        _REQUEST_ID_HEADER],
            "responses": {"200": _json(_ref("UploadStatus"), "The upload."), "400": _error("Malformed id."),
                          "404": _error("Unknown upload."),
                          "503": _error("Shed (load_shed), the database at capacity, or injected unavailability.",
                                        True),
                          "504": _error("Injected timeout.", True)}}},
        "/v1/uploads/{upload_id}/chunks/{n}": {"put": {
            "summary": "Put chunk n (raw bytes).", "operationId": "putChunk",
            "parameters": [_UPLOAD_ID, {"name": "n", "in": "path", "required": True,
                                        "schema": {"type": "integer", "minimum": 0, "maximum": 63}},
                           _REQUEST_ID_HEADER,
                           {"name": "X-Chunk-Attempt", "in": "header", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                            "description": "1 = first try; a retry sends the next number."}],
            "requestBody": {"required": True, "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary", "maxLength": 262144}}}},
            "responses": {"200": _json(_ref("Chunk"), "Stored."), "400": _error("Malformed id or header."),
                          "404": _error("Unknown upload."), "409": _error("The upload is not accepting chunks."),
                          "413": _error("Chunk larger than max_chunk_bytes."),
                          "422": _error("Chunk index out of range or empty body."),
                          "503": _error("Chunk failed server-side; retry it.", True),
                          "504": _error("Injected timeout.", True)}}},
        "/v1/uploads/{upload_id}/complete": {"post": {
            "summary": "Complete the upload: transcode and publish (sync) or queue (async).",
            "operationId": "completeUpload", "parameters": [_UPLOAD_ID, _REQUEST_ID_HEADER],
            "responses": {"200": _json(_ref("Published"), "Published (or already published: same outcome)."),
                          "202": _json(_ref("Published"), "Queued or in progress; poll the status."),
                          "400": _error("Malformed id."), "404": _error("Unknown upload."),
                          "409": _error("Cancelled, or completed with chunks missing (the attempt failed)."),
                          "503": _error("Transcode/publish failed (terminal) or injected unavailability.", True),
                          "504": _error("Injected timeout.", True)}}},
        "/v1/uploads/{upload_id}/cancel": {"post": {
            "summary": "Cancel an upload.", "operationId": "cancelUpload",
            "parameters": [_UPLOAD_ID, _REQUEST_ID_HEADER],
            "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("Cancel")}}},
            "responses": {"200": _json(_ref("Cancelled"), "Cancelled."), "400": _error("Malformed id or JSON."),
                          "404": _error("Unknown upload."), "409": _error("Already terminal."),
                          "422": _error("Bad reason."), "503": _error("Injected unavailability.", True),
                          "504": _error("Injected timeout.", True)}}},
        "/v1/feed": {"get": {
            "summary": "Recent videos (cached per worker).", "operationId": "getFeed",
            "parameters": [{"name": "limit", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}}],
            "responses": {"200": _json(_ref("Feed"), "Recent videos."), "422": _error("Bad limit."),
                          "503": _error("Shed (load_shed), the database at capacity, or injected unavailability.",
                                        True), "504": _error("Injected timeout.", True)}}},
        "/healthz": {"get": {"summary": "Liveness (and the shared state is reachable).", "operationId": "healthz",
                             "responses": {"200": _json({"type": "object", "properties": {"status": {"const": "ok"}}},
                                                        "Healthy."),
                                           "503": _json({"type": "object", "required": ["status", "problems"],
                                                         "properties": {"status": {"const": "degraded"},
                                                                        "problems": {"type": "array",
                                                                                     "items": {"type": "string"}}}},
                                                        "Degraded: e.g. events cannot be written (lost).")}}},
        "/": {"get": {"summary": "Where to go: links to this document, /metrics, /healthz and the lab's dashboard.",
                      "operationId": "root",
                      "responses": {"200": {"description": "A small HTML page, or JSON links when the client asks "
                                                           "for application/json.",
                                            "content": {"text/html": {"schema": {"type": "string"}},
                                                        "application/json": {"schema": {"type": "object"}}}}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics.", "operationId": "metrics", "responses": {
            "200": {"description": "Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document.", "operationId": "openapi",
                                  "responses": {"200": _json({"type": "object"}, "OpenAPI document.")}}},
        "/admin/faults": {
            "get": _admin("Faults in force.", "listFaults", {"200": _json(_ref("FaultList"), "Faults.")}),
            "delete": _admin("Remove every fault.", "clearFaults",
                             {"200": _json(_ref("Deleted"), "Removed."), "400": _error("Bad X-Actor or X-Obslab-Audit.")},
                             parameters=[actor, private_audit])},
        "/admin/faults/{name}": {
            "get": _admin("One fault.", "getFault",
                          {"200": _json(_ref("Fault"), "The fault."), "404": _error("No such fault.")},
                          parameters=[fault_name]),
            "put": _admin("Set a fault.", "putFault",
                          {"200": _json(_ref("Fault"), "Stored."), "400": _error("Malformed JSON or header."),
                           "422": _error("Invalid fault spec.")},
                          parameters=[fault_name, actor, private_audit], body="FaultSpec"),
            "delete": _admin("Remove a fault.", "deleteFault",
                             {"200": _json(_ref("Deleted"), "Removed."), "400": _error("Bad X-Actor or X-Obslab-Audit."),
                              "404": _error("No such fault.")},
                             parameters=[fault_name, actor, private_audit])},
        "/admin/flags": {"get": _admin("Flags and their rollout.", "listFlags",
                                       {"200": _json(_ref("FlagList"), "Flags.")})},
        "/admin/flags/{name}": {
            "get": _admin("One flag.", "getFlag",
                          {"200": _json(_ref("Flag"), "The flag."), "404": _error("No such flag.")},
                          parameters=[flag_name]),
            **_named_control("Flag", flag_name, actor, put_summary="Set a flag's default and rollout.",
                             unknown="No such flag.", delete_summary="Reset a flag to its default.",
                             delete_id="resetFlag", deleted=_json(_ref("Flag"), "Reset."),
                             absent="Already at default.")},
        "/admin/shed": {"get": _admin("Request classes being shed, and the classes there are.", "listShed",
                                      {"200": _json(_ref("ShedList"), "Shedding.")})},
        "/admin/shed/{name}": _named_control(
            "Shed", shed_class, actor,
            put_summary="Shed a low-priority request class: 503 load_shed + Retry-After before the database.",
            unknown="No such request class.", delete_summary="Let a request class through again.",
            delete_id="deleteShed", deleted=_json(_ref("Deleted"), "Removed."),
            absent="The class is not being shed."),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "obslab publish API", "version": __version__,
                 "description": "Video-publish demo service of obslab. Errors are {\"error\": {code, message, field}}."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
