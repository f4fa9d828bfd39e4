"""JSON errors: ``{"error": {"code", "message", "field"}}`` for every failure, never an HTML page."""

from __future__ import annotations

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from demo_service.diskspace import STORAGE_FULL_RETRY_AFTER_S, is_no_space

__all__ = ["ApiError", "error_response", "init_app"]


class ApiError(Exception):
    """An error answered to the client as JSON with ``status``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 retry_after: int | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = retry_after
        self.extra = extra or {}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   retry_after: int | None = None, extra: dict | None = None):
    body = {"error": {"code": code, "message": message, "field": field}}
    body.update(extra or {})
    response = jsonify(body)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


# An oversize body is read and discarded up to this size, so the client (still sending) gets the 413
# instead of a reset connection; beyond it the connection is closed.
DRAIN_LIMIT_BYTES = 4 * 1024 * 1024


def _drain_body() -> None:
    length = request.content_length
    if length is None or length > DRAIN_LIMIT_BYTES:
        return
    stream = request.environ.get("wsgi.input")
    remaining = length
    while stream is not None and remaining > 0:
        chunk = stream.read(min(remaining, 65536))
        if not chunk:
            break
        remaining -= len(chunk)


_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 415: "unsupported_media_type"}


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(e: ApiError):
        return error_response(e.status, e.code, e.message, e.field, e.retry_after, e.extra)

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        status = e.code or 500
        if status == 413:
            _drain_body()
        response = error_response(status, _HTTP_CODES.get(status, "http_error"), e.description or e.name)
        if status == 405 and e.get_response().headers.get("Allow"):
            response.headers["Allow"] = e.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):
        if is_no_space(e):  # state.db, its WAL or another file of the data disk could not grow
            app.logger.warning("storage full: %s", e)
            return error_response(503, "storage_full", "the service's disk is full; retry later",
                                  retry_after=STORAGE_FULL_RETRY_AFTER_S)
        app.logger.exception("unhandled error")
        return error_response(500, "internal", "internal error")
