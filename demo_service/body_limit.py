"""A body sent without Content-Length (``Transfer-Encoding: chunked``) is held to the same limit.

Flask refuses an oversize body by its Content-Length (413 before a handler runs). A chunked body
has none: werkzeug then reads the stream only up to the limit and stops there, so an oversize
chunk was silently cut to the limit, accepted and published. This WSGI middleware reads such a
body itself, at most limit + 1 bytes: one byte over is a 413 with the API's JSON error shape;
otherwise the app sees the whole body with its length, like any other request.
"""

from __future__ import annotations

import io
import json
from typing import Callable, Iterable

__all__ = ["BoundedBody"]

_READ_BYTES = 64 * 1024


def _is_chunked(environ: dict) -> bool:
    return "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() and not environ.get("CONTENT_LENGTH")


def read_at_most(stream, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``stream`` (fewer when it ends first)."""
    parts: list[bytes] = []
    remaining = limit
    while remaining > 0:
        part = stream.read(min(remaining, _READ_BYTES))
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


class BoundedBody:
    def __init__(self, app: Callable, limit: int):
        self.app = app
        self.limit = limit

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if _is_chunked(environ):
            body = read_at_most(environ["wsgi.input"], self.limit + 1)
            if len(body) > self.limit:
                return self._too_large(start_response)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)

    def _too_large(self, start_response: Callable) -> list[bytes]:
        payload = json.dumps({"error": {
            "code": "payload_too_large", "field": None,
            "message": f"request body is larger than {self.limit} bytes (sent with Transfer-Encoding: chunked)"}})
        data = (payload + "\n").encode()
        start_response("413 Request Entity Too Large", [("Content-Type", "application/json"),
                                                        ("Content-Length", str(len(data)))])
        return [data]
