"""gunicorn's own refusals (a bad request line, headers too large, a URI too long…) in the API's
JSON error shape.

gunicorn answers a request it cannot parse before any WSGI app runs, with a small HTML page
written by ``gunicorn.util.write_error`` (the only writer of those answers; the worker calls it
through the module, at the time of the error). ``install()`` swaps in a writer that sends
``{"error": {"code", "message", "field"}}`` with the same status, reason and message; the
parsing and its limits stay gunicorn's own.
"""

from __future__ import annotations

import json

__all__ = ["install", "error_code", "write_json_error"]

_CODES = {400: "bad_request", 403: "forbidden", 414: "uri_too_long", 417: "expectation_failed",
          431: "headers_too_large", 500: "internal", 501: "not_implemented"}


def error_code(status: int) -> str:
    return _CODES.get(status, "http_error")


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    from gunicorn import util

    body = (json.dumps({"error": {"code": error_code(status_int), "message": mesg or reason, "field": None}})
            + "\n").encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


def install() -> None:
    from gunicorn import util

    util.write_error = write_json_error
