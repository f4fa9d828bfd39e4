"""Server spans for Flask requests, built so an unsampled request costs almost nothing.

The official ``opentelemetry-instrumentation-flask`` computes every HTTP attribute of a
request (several URL reconstructions, user agent parsing, old and new semantic
conventions) before the sampler runs, so 90 % unsampled requests pay the full price.
Here the sampler sees only what it needs (method and path) and the remaining attributes
(stable HTTP semantic conventions) are added only to spans that record.

The span is started and ended by a WSGI middleware around Flask's ``wsgi_app``, not by
request hooks: every Flask hook costs a dispatch of its own (``ensure_sync`` inspects the
function on each call), and a teardown hook was the only way to end a span after an
exception. The route is known only once Flask has matched the URL, so ``record_response``
(called from telemetry's after-request hook) names a recording span ``"{method} {route}"``
and adds the HTTP attributes, ``http.route`` and the status code in one update (each update
of a span's attributes takes its lock and cleans every value). The span travels in the WSGI
environ, so that hook needs no context lookup.

Context is extracted from ``traceparent``/``tracestate`` by the global propagator (only when
the request carries one of its headers), and the span is current for the whole request,
so manual spans and events nest under it.
``OBSLAB_HTTP_TRACING=flask-instrumentor`` switches back to the official instrumentation
(the overhead bench measures both).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from opentelemetry import context, propagate, trace
from opentelemetry.instrumentation.wsgi import wsgi_getter
from opentelemetry.trace import SpanKind, Status, StatusCode

from demo_service.telemetry.tracing import ROOT_CONTEXT

__all__ = ["ServerSpanMiddleware", "SERVER_SPAN_KEY", "record_response"]

SERVER_SPAN_KEY = "obslab.server_span"  # the request's server span, in its WSGI environ


def _propagated_environ_keys() -> frozenset[str]:
    """The WSGI environ keys of the headers the global propagator reads (traceparent, tracestate, baggage...)."""
    global _environ_keys
    textmap = propagate.get_global_textmap()  # replaced by set_global_textmap: keyed by the object
    if _environ_keys is None or _environ_keys[0] is not textmap:
        _environ_keys = (textmap, frozenset("HTTP_" + f.upper().replace("-", "_") for f in textmap.fields))
    return _environ_keys[1]


_environ_keys: tuple | None = None


def request_path(environ: dict[str, Any]) -> str:
    """The request path as ``flask.Request.path`` gives it: PATH_INFO with one leading slash, its bytes as UTF-8."""
    path = environ.get("PATH_INFO") or ""
    if not path.isascii():  # WSGI passes the raw bytes as latin-1 code points
        path = path.encode("latin-1").decode("utf-8", "replace")
    return "/" + path.lstrip("/")


def _http_attributes(environ: dict[str, Any]) -> dict[str, str]:
    """The attributes only a recording span gets (stable HTTP semantic conventions), read from the environ."""
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    attributes = {
        "url.scheme": environ.get("wsgi.url_scheme", "http"),
        "server.address": host.split(":")[0],
        "network.protocol.version": environ.get("SERVER_PROTOCOL", "").removeprefix("HTTP/"),
        "client.address": environ.get("REMOTE_ADDR") or "",
        "user_agent.original": environ.get("HTTP_USER_AGENT", ""),
    }
    if environ.get("QUERY_STRING"):
        attributes["url.query"] = environ["QUERY_STRING"]
    return attributes


class ServerSpanMiddleware:
    """Wraps a WSGI app: one server span per request (none for ``skip_paths``), current while the app runs."""

    def __init__(self, app: Callable, tracer: trace.Tracer, skip_paths: frozenset[str]):
        self.app = app
        self.tracer = tracer
        self.skip_paths = skip_paths

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = request_path(environ)
        if path in self.skip_paths:
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        # Named "{method} {route}" at the end of the request (record_response).
        attributes = {"http.request.method": method, "url.path": path}
        # Most requests carry none of the propagators' headers: extracting from them would give an empty context
        # anyway, so it is skipped. The environ is read as opentelemetry-instrumentation-wsgi does.
        parent = (propagate.extract(environ, getter=wsgi_getter)
                  if not environ.keys().isdisjoint(_propagated_environ_keys()) else ROOT_CONTEXT)
        span = self.tracer.start_span(method, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        environ[SERVER_SPAN_KEY] = span
        token = context.attach(trace.set_span_in_context(span, parent))  # with the caller's baggage, if any
        try:
            return self.app(environ, start_response)
        except BaseException as exc:  # Flask's error handlers answer the rest; this is what escaped them
            if span.is_recording():
                span.set_attributes(_http_attributes(environ))
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            span.end()
            context.detach(token)


def record_response(environ: dict[str, Any], method: str, route: str | None, status_code: int) -> None:
    """Complete the request's recording server span in one update: its name by route (as the HTTP semantic
    conventions ask), the attributes only recorded spans carry, the route and the status (a 5xx is an error)."""
    span = environ.get(SERVER_SPAN_KEY)
    if span is None or not span.is_recording():
        return
    attributes = _http_attributes(environ)
    if route:
        span.update_name(f"{method} {route}")
        attributes["http.route"] = route
    attributes["http.response.status_code"] = status_code
    span.set_attributes(attributes)
    if status_code >= 500:
        span.set_status(Status(StatusCode.ERROR))
