"""Server spans for Flask requests, built so an unsampled request costs almost nothing.

The official ``opentelemetry-instrumentation-flask`` computes every HTTP attribute of a
request (several URL reconstructions, user agent parsing, old and new semantic
conventions) before the sampler runs, so 90 % unsampled requests pay the full price.
Here the sampler sees only what it needs (method, path, route) and the remaining
attributes (stable HTTP semantic conventions) are added only to spans that record.
Context is extracted from ``traceparent``/``tracestate`` by the global propagator (only
when the request carries one of its headers), and the span is current for the whole
request, so manual spans and events nest under it. Telemetry's request hooks call these
methods with ``request`` and ``g`` looked up once (``_get_current_object``): every attribute
read through Flask's context proxies costs a context lookup, about a microsecond each.
``OBSLAB_HTTP_TRACING=flask-instrumentor`` switches back to the official instrumentation
(the overhead bench measures both).
"""

from __future__ import annotations

from opentelemetry import context, propagate, trace
from opentelemetry.instrumentation.wsgi import wsgi_getter
from opentelemetry.trace import SpanKind, Status, StatusCode

__all__ = ["LeanServerSpans"]


def _propagated_environ_keys() -> tuple[str, ...]:
    """The WSGI environ keys of the headers the global propagator reads (traceparent, tracestate, baggage...)."""
    global _environ_keys
    textmap = propagate.get_global_textmap()  # replaced by set_global_textmap: keyed by the object
    if _environ_keys is None or _environ_keys[0] is not textmap:
        _environ_keys = (textmap, tuple(sorted("HTTP_" + f.upper().replace("-", "_") for f in textmap.fields)))
    return _environ_keys[1]


_environ_keys: tuple | None = None


class LeanServerSpans:
    """The server span of each request: ``start`` before the view, ``record_status`` on its response, ``end`` at
    teardown. Telemetry calls them from its own request hooks (one per stage, shared with the RED metrics): each
    Flask hook costs a dispatch of its own."""

    def __init__(self, tracer: trace.Tracer, skip_paths: frozenset[str]):
        self.tracer = tracer
        self.skip_paths = skip_paths

    def start(self, req, state) -> None:
        path = req.path
        if path in self.skip_paths:
            return
        url_rule = req.url_rule
        rule = url_rule.rule if url_rule is not None else None
        method = req.method
        environ = req.environ
        span = self.tracer.start_span(
            f"{method} {rule}" if rule else method,
            # Read from the WSGI environ (as opentelemetry-instrumentation-wsgi does): werkzeug's header view
            # costs more per lookup. Most requests carry none of the propagators' headers: extracting from
            # them would give an empty context anyway, so it is skipped.
            context=(propagate.extract(environ, getter=wsgi_getter)
                     if not environ.keys().isdisjoint(_propagated_environ_keys()) else context.Context()),
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
        state.obslab_server_span = span
        state.obslab_span_token = context.attach(trace.set_span_in_context(span))

    @staticmethod
    def record_status(state, response) -> None:
        span = state.get("obslab_server_span")
        if span is not None and span.is_recording():
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(Status(StatusCode.ERROR))

    @staticmethod
    def end(state, exc: BaseException | None) -> None:
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
