"""Spans of finished exchanges exported over OTLP/HTTP (protobuf), with the
OpenTelemetry SDK of the optional ``tracing`` extra (``pip install twistgw[tracing]``).

Each worker builds its own ``SpanExport`` once it runs (the SDK's exporter thread would
not survive a fork). The exchange hands over a sampled request at its end; its spans
(the request's, a SERVER span, and one CLIENT span per attempt at a backend, with the
ids the backend saw in ``traceparent``) are built with the exchange's own timestamps
and queued to the SDK's ``BatchSpanProcessor``, which exports from its own thread, so
the reactor never waits on the receiver (a full queue drops spans).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from twisted.internet.defer import Deferred

if TYPE_CHECKING:
    from twistgw.dataplane.http.exchange import Exchange

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SCOPE = InstrumentationScope("twistgw")
_OK = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)
#: How long a stopping worker waits for its queued spans to be sent: a receiver that is
#: down or silent must not hold the worker's exit (the SDK's own wait is 30 s).
FLUSH_SECONDS = 2.0
#: Bytes of a request's path a span keeps (a client's path may be as long as the
#: request line allows; 2,048 queued spans of it would hold tens of MB).
MAX_PATH_ATTRIBUTE = 1024


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a receiver's base URL (``/v1/traces`` appended
    unless it is there)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


class SpanExport:
    """Turns sampled exchanges into spans for ``endpoint``; ``ratio`` of traces
    (by trace id) are sampled."""

    def __init__(self, endpoint: str, ratio: float, worker: int = 0) -> None:
        #: traces whose id's last 64 bits are below this are sampled (TraceIdRatioBased)
        self.sample_below = round(ratio * (1 << 64))
        self.resource = Resource.create({"service.name": "twistgw", "twistgw.worker": worker})
        self.processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint)))

    def export(self, exchange: Exchange, now: float) -> None:
        """Queue the spans of the finished ``exchange`` (its trace is sampled)."""
        trace = exchange.trace
        request = exchange.request
        trace_id = int(trace.trace_id, 16)
        state = TraceState.from_header([trace.state.decode("ascii")]) if trace.state else None
        context = SpanContext(trace_id, int(trace.span_id, 16), False, _SAMPLED, state)
        parent = None
        if trace.parent_id is not None:
            parent = SpanContext(trace_id, int(trace.parent_id, 16), True, _SAMPLED, state)
        route, listener = exchange.route, exchange.listener
        names = {}
        if listener is not None:
            names["twistgw.gateway"] = listener.gateway
            names["twistgw.listener"] = listener.name
        if route is not None:
            names["twistgw.route"] = route.name
            names["twistgw.rule"] = route.rule
        method = request.method.decode("latin-1")
        path = request.target.partition(b"?")[0][:MAX_PATH_ATTRIBUTE].decode("latin-1")
        code = exchange.code
        attributes = {
            "http.request.method": method,
            "url.path": path,
            "http.response.status_code": code,
            "network.protocol.version": request.protocol.removeprefix("HTTP/"),
            "client.address": exchange.conn.peer_host.decode(),
            "twistgw.request_id": exchange.request_id.decode("latin-1"),
            **names,
        }
        if exchange.backend is not None:
            attributes["twistgw.backend"] = exchange.backend.name
        name = f"{method} {route.name}" if route is not None else method
        on_end = self.processor.on_end
        on_end(
            ReadableSpan(
                name,
                context,
                parent,
                self.resource,
                attributes,
                kind=SpanKind.SERVER,
                status=_ERROR if code >= 500 else _OK,
                start_time=_ns(exchange.started_at),
                end_time=_ns(now),
                instrumentation_scope=_SCOPE,
            )
        )
        for span in trace.spans:
            span_id, start, end, status = span.span_id, span.start, span.end, span.status
            backend, endpoint, error = span.backend, span.endpoint, span.error
            attempt = {
                "http.request.method": method,
                "twistgw.backend": backend,
                **names,
            }
            if endpoint is not None:
                attempt["server.address"] = endpoint.address
                attempt["server.port"] = endpoint.port
            if status:
                attempt["http.response.status_code"] = status
            if error is not None:
                attempt["error.type"] = error
            on_end(
                ReadableSpan(
                    f"{method} {backend}",
                    SpanContext(trace_id, int(span_id, 16), False, _SAMPLED, state),
                    context,
                    self.resource,
                    attempt,
                    kind=SpanKind.CLIENT,
                    status=_ERROR if error is not None or status >= 500 else _OK,
                    start_time=_ns(start),
                    end_time=_ns(end or now),
                    instrumentation_scope=_SCOPE,
                )
            )

    def shutdown(self, reactor) -> Deferred:
        """Send what is queued, for at most ``FLUSH_SECONDS``, from a daemon thread (not
        the reactor's pool, which the reactor waits for as it stops); what is left is
        dropped with the exporter's daemon thread when the worker exits."""
        done: Deferred = Deferred()

        def flush() -> None:
            self.processor.force_flush(timeout_millis=int(FLUSH_SECONDS * 1000))
            reactor.callFromThread(lambda: done.called or done.callback(None))

        threading.Thread(target=flush, name="span-flush", daemon=True).start()
        reactor.callLater(FLUSH_SECONDS + 0.5, lambda: done.called or done.callback(None))
        return done


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)
