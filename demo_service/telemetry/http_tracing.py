"""Server spans for Flask requests, built so an unsampled request costs almost nothing.

The official ``opentelemetry-instrumentation-flask`` computes every HTTP attribute of a
request (several URL reconstructions, user agent parsing, old and new semantic
conventions) before the sampler runs, so 90 % unsampled requests pay the full price.
Here the sampler sees only what it needs (method, path, route) and the remaining
attributes (stable HTTP semantic conventions) are added only to spans that record.
Context is extracted from ``traceparent``/``tracestate`` by the global propagator, and
the span is current for the whole request, so manual spans and events nest under it.
Each hook looks ``request`` and ``g`` up once (``_get_current_object``): every attribute read through
Flask's context proxies costs a context lookup, about a microsecond each on this path.
``OBSLAB_HTTP_TRACING=flask-instrumentor`` switches back to the official instrumentation
(the overhead bench measures both).
"""

from __future__ import annotations

from flask import Flask, g, request
from opentelemetry import context, propagate, trace
from opentelemetry.instrumentation.wsgi import wsgi_getter
from opentelemetry.trace import SpanKind, Status, StatusCode

__all__ = ["instrument_flask_lean"]


def _propagated_environ_keys() -> tuple[str, ...]:
    """The WSGI environ keys of the headers the global propagator reads (traceparent, tracestate, baggage...)."""
    global _environ_keys
    textmap = propagate.get_global_textmap()  # replaced by set_global_textmap: keyed by the object
    if _environ_keys is None or _environ_keys[0] is not textmap:
        _environ_keys = (textmap, tuple(sorted("HTTP_" + f.upper().replace("-", "_") for f in textmap.fields)))
    return _environ_keys[1]


_environ_keys: tuple | None = None


def instrument_flask_lean(app: Flask, tracer: trace.Tracer, skip_paths: frozenset[str]) -> None:
    @app.before_request
    def _start_server_span() -> None:
        req = request._get_current_object()
        path = req.path
        if path in skip_paths:
            return
        url_rule = req.url_rule
        rule = url_rule.rule if url_rule is not None else None
        method = req.method
        environ = req.environ
        span = tracer.start_span(
            f"{method} {rule}" if rule else method,
            # Read from the WSGI environ (as opentelemetry-instrumentation-wsgi does): werkzeug's header view
            # costs more per lookup. Most requests carry none of the propagators' headers: extracting from
            # them would give an empty context anyway, so it is skipped.
            context=(propagate.extract(environ, getter=wsgi_getter)
                     if any(key in environ for key in _propagated_environ_keys()) else context.Context()),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path, **({"http.route": rule} if rule else {})},
        )
        if span.is_recording():
            span.set_attributes({
                "url.scheme": req.scheme,
                "server.address": req.host.split(":")[0],
                "network.protocol.version": environ.get("SERVER_PROTOCOL", "").removeprefix("HTTP/"),
                "client.address": req.remote_addr or "",
                "user_agent.original": req.headers.get("User-Agent", ""),
                **({"url.query": environ["QUERY_STRING"]} if environ.get("QUERY_STRING") else {}),
            })
        state = g._get_current_object()
        state.obslab_server_span = span
        state.obslab_span_token = context.attach(trace.set_span_in_context(span))

    @app.after_request
    def _record_status(response):
        span = g.get("obslab_server_span")
        if span is not None and span.is_recording():
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(Status(StatusCode.ERROR))
        return response

    @app.teardown_request
    def _end_server_span(exc: BaseException | None) -> None:
        state = g._get_current_object()
        span = state.pop("obslab_server_span", None)
        if span is None:
            return
        if exc is not None and span.is_recording():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        span.end()
        token = state.pop("obslab_span_token", None)
        if token is not None:
            context.detach(token)
