"""One request and its response, from the request head to the response's end, whatever
the wire protocol on either side: route → filters → backend choice → upstream →
response filters → access-log record.

The exchange talks to the client through its ``down`` codec (``send_response``,
``send_data``, ``send_end``, ``send_local``, ``accept_body``, ``flush``) and to the
backend through a pooled upstream connection's codec; neither builds wire bytes here.
"""

from __future__ import annotations

import random
from functools import partial
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from twistgw.dataplane.fastwrite import has_pending
from twistgw.dataplane.http.compression import Encoder
from twistgw.dataplane.http.cors import with_fields
from twistgw.dataplane.http.deadline import Deadline
from twistgw.dataplane.http.filters import redirect_location, rewrite_path
from twistgw.dataplane.http.forwarding import forwarded
from twistgw.dataplane.http.messages import Headers, Request, Response
from twistgw.dataplane.http.mirror import Mirror
from twistgw.dataplane.http.policies import run_checks
from twistgw.dataplane.http.pyfilters import BodyRewrite, new_attempt
from twistgw.dataplane.http.resilience import BodyProducer, Guard
from twistgw.dataplane.http.router import CompiledBackend, CompiledRoute
from twistgw.dataplane.http.tracing import AttemptSpan, Trace, new_span_id

if TYPE_CHECKING:
    from twistgw.dataplane.http.h1.server import ServerCodec
    from twistgw.dataplane.http.otlp import SpanExport
    from twistgw.dataplane.http.server import HTTPServerProtocol
    from twistgw.dataplane.http.upstream import UpstreamConnection
    from twistgw.routing.ir import Endpoint, RequestRedirect, URLRewrite

log = Logger()

#: Body bytes held for a backend that is not connected yet before reading pauses.
MAX_PENDING_BODY = 256 * 1024
#: Methods a request may be retried with on a fresh connection (RFC 9110 §9.2.2).
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
#: The gRPC status a gateway's own answer carries, by its HTTP status (gRPC's
#: "HTTP to gRPC status code mapping"; and 500, the gateway's answer for an invalid
#: backend, UNAVAILABLE as GRPCRoute requires); any other: UNKNOWN (2).
GRPC_STATUS = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 500: 14, 502: 14, 503: 14, 504: 14}


class Exchange:
    """One request on a client connection (``conn``) and its codec (``down``)."""

    __slots__ = (
        "down",
        "conn",
        "request",
        "started_at",
        "upstream_at",
        "request_done",
        "pending",
        "pending_size",
        "upstream",
        "route",
        "backend",
        "listener",
        "endpoint",
        "code",
        "responded",
        "finished",
        "retried",
        "producing",
        "method",
        "headers",
        "target",
        "request_id",
        "received",
        "sent",
        "tunnel_idle",
        "grpc_status",
        "guard",
        "mirrors",
        "added",
        "encoder",
        "filter_request",
        "attempt_headers",
        "body_wait",
        "body_limit",
        "rewrite",
        "held",
        "filter_wait",
        "where",
        "trace",
        "session_pin",
        "session_held",
        "session_where",
        "__weakref__",  # (tests check that a finished exchange is freed)
    )

    def __init__(self, down: ServerCodec, request: Request, conn: HTTPServerProtocol) -> None:
        self.down = down
        self.conn = conn
        self.request = request
        self.method = request.method
        self.started_at = 0.0
        self.upstream_at = 0.0
        self.request_done = not request.has_body
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.upstream: UpstreamConnection | None = None
        self.route: CompiledRoute | None = None
        self.backend: CompiledBackend | None = None
        self.listener = None
        self.endpoint: Endpoint | None = None
        self.code = 0
        self.responded = False  # the response head went to the client
        self.finished = False
        self.retried = False
        self.producing = False
        self.headers = None
        self.target = b""
        self.request_id = b""
        self.received = 0
        self.sent = 0
        self.tunnel_idle: Deadline | None = None
        self.grpc_status: bytes | None = None
        self.guard: Guard | None = None  # the rule's timeouts and retries, if any
        self.mirrors: list[Mirror] | None = None  # copies still taking the body
        # fields every response gets: CORS (when the filter allowed the origin) and
        # the rate limit's (None: none)
        self.added: Headers | None = None
        self.encoder: Encoder | None = None  # the response body's, when compressed
        self.filter_request = None  # what filter plugins see of the request, if any run
        self.attempt_headers: Headers | None = None  # as a backendRef's filters left them
        # a filter waits for the whole request body (at most body_limit bytes)
        self.body_wait: Deferred | None = None
        self.body_limit = 0
        self.rewrite: BodyRewrite | None = None  # filters' rewriters of the response body
        # what the backend sent while a filter's on_response is being waited for:
        # body bytes, and (None, trailers) for its end
        self.held: list | None = None
        self.filter_wait: Deferred | None = None  # a filter's, cancelled if the exchange ends
        self.where: tuple[str, str, str] | None = None  # path, query, authority: for resume
        self.trace: Trace | None = None  # made with the first attempt's request head
        # session persistence: (endpoint id, backend, endpoint) the client's value
        # names, until the first attempt uses it; the id it named (no new value is
        # needed for that endpoint); where the request goes, while the attempt is
        # on the pinned endpoint (to choose anew if it refuses the connection)
        self.session_pin: tuple | None = None
        self.session_held: bytes | None = None
        self.session_where: tuple[str, str, str] | None = None

    # -- request side

    def start(self) -> None:
        conn = self.conn
        request = self.request
        self.started_at = conn.clock.seconds()
        path_bytes, _, query_bytes = request.target.partition(b"?")
        path = path_bytes.decode("latin-1")
        query = query_bytes.decode("latin-1")
        authority, host_name = _hosts.get(request.authority) or _host_names(request.authority)
        router = conn.factory.router
        self.listener, route = router.route(host_name, self.method, path, query, self._header_dict)
        if self.listener is not None and conn.tls:
            chosen = conn.handshake_listener()
            if chosen is not None and chosen != self.listener.name:
                self.respond_local(421, b"this host is served by another listener: check SNI\n")
                return
        if route is None:
            self.respond_local(404, b"no route matches this request\n")
            return
        self.route = route
        guards = route.guards
        if guards is not None and not guards.screen(self):
            return
        if route.cors is not None:
            preflight, self.added = route.cors.evaluate(self.method, request.headers)
            if preflight:  # answered here, with the CORS fields if the origin is allowed
                fields, self.added = self.added, None
                self.respond_local(204, b"", fields)
                return
        if guards is not None:
            self.where = (path, query, authority)  # (for resume: a check may go on later,
            if not guards.admit(self):  # or have gone on already, its Deferred fired)
                return
        self.admitted(path, query, authority)

    def resume(self) -> None:
        """Go on with a request its policies let through later (a password checked in
        a thread), where ``start`` left it."""
        self.admitted(*self.where)

    def admitted(self, path: str, query: str, authority: str) -> None:
        """Go on with a request its route's policies let through: redirect, or send
        it to a backend."""
        route = self.route
        conn = self.conn
        if route.redirect is not None:
            self._redirect(route.redirect, path, query, authority)
            return
        if route.policy is not None:
            guard = self.guard = Guard(route.policy, conn.clock, self._request_expired)
            guard.where = (path, query, authority)
            for data in self.pending:  # (the body that came while policies checked)
                guard.keep(data)
        if route.session is not None:
            pin = route.session.pinned(self.request.headers, conn.clock.seconds())
            guards = route.guards
            if pin is not None and guards is not None and guards.health is not None:
                endpoint = pin[2]
                if conn.factory.guards.health.is_down((endpoint.address, endpoint.port)):
                    pin = None  # (out of rotation: routed anew, into a new session)
            self.session_pin = pin
            if pin is not None:
                self.session_held = pin[0]
                self.session_where = (path, query, authority)
        self._attempt((path, query, authority), first=True)

    def _attempt(self, where: tuple[str, str, str], first: bool = False) -> None:
        """Choose the backend and send it the request, after its backendRef's
        filters, if any (``where``: the path, query and authority routed)."""
        self.attempt_headers = None  # (another backend's filters' fields are not this one's)
        if not self._pick(*where):
            return
        checks = self.backend.checks
        if checks is not None:
            new_attempt(self)
            if not run_checks(self, checks, partial(self._send, where, first)):
                return
        self._send(where, first)

    def _send(self, where: tuple[str, str, str], first: bool) -> None:
        self._prepare(*where, first=first)
        self._connect()

    def _redirect(self, redirect: RequestRedirect, path: str, query: str, authority: str) -> None:
        """Answer with a RequestRedirect filter's redirect (the rule's or the backend's)."""
        conn = self.conn
        location = redirect_location(
            self.route, redirect, conn.scheme, authority, conn.local_port(), path, query
        )
        self.respond_local(redirect.status_code, b"", [(b"location", location)])

    def _pick(self, path: str, query: str, authority: str) -> bool:
        """Choose the backend and its endpoint (the session's, on the first attempt
        of a request that has one), or answer; whether one was chosen."""
        pin, self.session_pin = self.session_pin, None
        if pin is not None:
            _, backend, endpoint = pin
            self.backend = backend
        else:
            self.session_where = None  # (the attempt is not on the session's endpoint)
            backend = self.backend = self.route.pick_backend()
            endpoint = None
        if backend is None or backend.invalid:
            self.respond_local(500, b"the route has no valid backend\n")
            return False
        if backend.redirect is not None:
            self._redirect(backend.redirect, path, query, authority)
            return False
        if endpoint is None:
            guards = self.route.guards
            if guards is not None and guards.health is not None:
                endpoint = self.conn.factory.guards.health.choose(backend)
            else:
                endpoint = backend.endpoint()
        self.endpoint = endpoint
        if endpoint is None:
            self.respond_local(503, b"no healthy endpoints for the backend\n")
            return False
        return True

    def _prepare(self, path: str, query: str, authority: str, first: bool = False) -> None:
        """The request line and fields the backend gets: the rule's filters, then the
        backendRef's (its URLRewrite replaces the rule's). On the ``first`` attempt,
        the rule's mirrors get a copy with the rule's filters applied (not the
        backendRef's: its ExtensionRef filters' fields are this attempt's own)."""
        route, backend, conn, request = self.route, self.backend, self.conn, self.request
        client = request.headers if self.attempt_headers is None else self.attempt_headers
        headers, self.request_id, traceparent, tracestate = forwarded(
            client, conn.peer_host, conn.scheme_bytes, self.request_id or None
        )
        trace_fields = self._trace_fields(traceparent, tracestate)
        target, host = self._rewritten(route.rewrite, path, query, request.target)
        host = host or request.authority
        if not host:  # HTTP/1.0 without Host: name the backend as an HTTP/1.1 Host
            host = b"%s:%d" % (self.endpoint.address.encode(), self.endpoint.port)
        headers += trace_fields
        headers = self._rule_fields(headers, host)
        if first and route.mirrors and request.upgrade is None:
            mirrored = headers
            if client is not request.headers:
                mirrored = forwarded(
                    request.headers, conn.peer_host, conn.scheme_bytes, self.request_id
                )[0]
                mirrored += trace_fields
                mirrored = self._rule_fields(mirrored, host)
            self._start_mirrors(target, mirrored)
        if backend.rewrite is not None:
            target, host = self._rewritten(backend.rewrite, path, query, target)
            if host:
                headers = [(b"host", host) if n == b"host" else (n, v) for n, v in headers]
        if backend.request_headers is not None:
            headers = backend.request_headers.apply(headers)
        self.headers = headers
        self.target = target

    def _trace_fields(self, traceparent: bytes | None, tracestate: bytes | None) -> Headers:
        """The trace fields of this attempt (a span of its own, with
        --trace-propagation; else as the client sent them)."""
        conn = self.conn
        if not conn.factory.tracing:
            fields = [(b"traceparent", traceparent)] if traceparent else []
            if tracestate is not None:
                fields.append((b"tracestate", tracestate))
            return fields
        trace = self.trace
        if trace is None:
            spans = conn.factory.spans
            trace = self.trace = Trace(
                traceparent, tracestate, spans.sample_below if spans is not None else None
            )
        span_id = trace.new_attempt()
        if trace.spans is not None:
            start = conn.clock.seconds()
            trace.spans.append(AttemptSpan(span_id, start, self.backend.name, self.endpoint))
        return list(trace.fields(span_id))

    def _rule_fields(self, headers: list[tuple[bytes, bytes]], host: bytes) -> Headers:
        """``headers`` (forwarded, with trace fields) with ``host`` and the rule's
        RequestHeaderModifier."""
        headers.insert(0, (b"host", host))
        modifier = self.route.request_headers
        return headers if modifier is None else modifier.apply(headers)

    def _rewritten(
        self, rewrite: URLRewrite | None, path: str, query: str, target: bytes
    ) -> tuple[bytes, bytes | None]:
        """(target, Host or None) after a URLRewrite filter, if any."""
        if rewrite is None:
            return target, None
        if rewrite.path is not None:
            new_path = rewrite_path(self.route, rewrite.path, path)
            target = (new_path + ("?" + query if query else "")).encode("latin-1")
        return target, rewrite.hostname.encode("latin-1") if rewrite.hostname else None

    def _start_mirrors(self, target: bytes, headers: Headers) -> None:
        """Send a copy of the request to each mirror chosen for it (by its share)."""
        conn, route = self.conn, self.route
        certificate = self.listener.spec.client_certificate
        trace = self.trace
        started = []
        for backend, share in route.mirrors:
            if share < 1.0 and random.random() >= share:
                continue
            fields = list(headers)
            if trace is not None:
                traceparent = trace.traceparent(new_span_id())  # a span id of its own
                fields = [(n, traceparent if n == b"traceparent" else v) for n, v in fields]
            head = (self.method, target, fields, self.request.length)
            mirror = Mirror(conn.pool, conn.metrics, route.name, backend, head)
            mirror.start(certificate)
            for data in self.pending:  # (the body that came while policies checked)
                mirror.data(data)
            if self.request_done:
                mirror.end()
            elif not mirror.finished:
                started.append(mirror)
        self.mirrors = started or None

    def _connect(self) -> None:
        if self.guard is not None:
            self.guard.attempt(self._backend_expired)
        backend = self.backend
        tls = backend.spec.tls
        self.conn.pool.acquire(
            self.endpoint,
            self,
            tls,
            self.listener.spec.client_certificate if tls is not None else None,
            backend.http2,
        )

    def _header_dict(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for name, value in self.request.headers:
            key = name.decode("latin-1")
            if key in found:
                found[key] += "," + value.decode("latin-1")
            else:
                found[key] = value.decode("latin-1")
        return found

    def request_data(self, data: bytes) -> None:
        if self.finished:
            return  # a local answer ignores the body
        self.received += len(data)
        if self.mirrors is not None:
            for mirror in self.mirrors:
                mirror.data(data)
        if self.guard is not None:
            self.guard.keep(data)
        upstream = self.upstream
        if upstream is not None:
            upstream.codec.send_data(data)
            return
        self.pending.append(data)
        self.pending_size += len(data)
        if self.body_wait is not None:  # (read whole for a filter: no pause below its limit)
            if self.pending_size > self.body_limit:
                self.respond_local(413, b"the request body is too large for this route\n")
        elif self.pending_size > MAX_PENDING_BODY:
            self.conn.pause_reading()

    def read_body(self, limit: int) -> Deferred:
        """Read the rest of the request's body (at most ``limit`` bytes in all, else
        413) for a filter: a Deferred firing with True once it has come, or False if
        the exchange ends first."""
        wait = self.body_wait = Deferred()
        self.body_limit = limit
        if self.pending_size > limit:
            self.respond_local(413, b"the request body is too large for this route\n")
            return wait
        self.down.accept_body()  # (a client waiting for 100 Continue gets it)
        self.down.flush()
        self.conn.resume_reading()
        return wait

    def _body_read(self, came: bool) -> None:
        wait, self.body_wait = self.body_wait, None
        wait.callback(came)

    def request_end(self) -> None:
        if self.request_done or self.finished:  # (a request without body is done at once)
            self.request_done = True
            return
        self.request_done = True
        if self.body_wait is not None:
            self._body_read(True)  # (the filter, then the rest of the checks, go on)
            return
        mirrors, self.mirrors = self.mirrors, None
        if mirrors is not None:
            for mirror in mirrors:
                mirror.end()
        upstream = self.upstream
        if upstream is not None:
            conn = self.conn
            if _unpair(upstream.transport) and not conn.paused and conn.transport is not None:
                conn.transport.resumeProducing()  # it may have been paused by the backend
            upstream.codec.send_end()

    # -- upstream side

    def upstream_ready(self, upstream: UpstreamConnection) -> None:
        if self.finished:  # answered meanwhile (client gone): hand the connection back
            upstream.release()
            return
        self.upstream = upstream
        upstream.exchange = self
        self.upstream_at = self.conn.clock.seconds()
        request = self.request
        codec = upstream.codec
        codec.send_request(
            self, self.method, self.target, self.headers, request.length, request.upgrade
        )
        pending, self.pending, self.pending_size = self.pending, [], 0
        for data in pending:
            codec.send_data(data)
        if self.request_done:
            codec.send_end()
        else:
            conn = self.conn
            producer = conn.transport if self.guard is None else BodyProducer(conn)
            upstream.transport.registerProducer(producer, True)
            self.down.accept_body()
            self.down.flush()
        self.conn.resume_reading()

    def upstream_failed(self, reason: str) -> None:
        if self.finished:
            return  # (the client went away while connecting)
        log.info(
            "connecting to backend {backend} failed: {reason}",
            backend=self.backend.name if self.backend else "?",
            reason=reason,
        )
        self._attempt_failed("connect")
        if self._unpin():
            return
        if not self._retry("connect"):
            self.respond_local(503, b"the backend is unavailable\n")

    def _unpin(self) -> bool:
        """The session's endpoint refused the connection: choose as if the request had
        no session (once, at once: nothing was sent), and the response starts a new
        one; whether so."""
        where, self.session_where = self.session_where, None
        if where is None:
            return False
        self._attempt(where)
        return True

    def upstream_overflow(self, reason: str) -> None:
        """The endpoint's connections are all busy and too many requests wait for them
        ("pending"), or none came free in time ("timeout")."""
        if self.finished:
            return
        self.conn.metrics.backend_overflow.labels(self.backend.name, reason).inc()
        self.respond_local(503, b"the backend is overloaded\n", [(b"retry-after", b"1")])

    def upstream_error(self, status: int, reason: str, started: bool) -> None:
        """The backend connection failed mid-exchange (``started``: after the response
        head), broke the protocol, or did not answer in time."""
        upstream = self.upstream
        self._attempt_failed("timeout" if status == 504 else "reset")
        self._detach_upstream()
        if self.finished:
            return
        if self.held is not None:  # (a filter has its head, the client nothing yet)
            log.info("backend {backend}: {reason}", backend=self.backend.name, reason=reason)
            self.respond_local(502, b"the backend failed while its response was checked\n")
            return
        if self.responded or started:
            # the response was cut short: the client cannot be told otherwise
            log.info("backend {backend}: {reason}", backend=self.backend.name, reason=reason)
            self._finish()
            self.conn.abort()
            return
        if self.guard is not None and self.guard.policy.retries:
            if self._retry("reset" if status == 502 else "timeout"):
                return
            if status == 502:  # (as Envoy: a reset before the response head, retried)
                status, reason = 503, f"{reason} (after {self.guard.attempts} attempts)"
        if (
            status == 502
            and upstream is not None
            and upstream.reused
            and not self.retried
            and self.method in IDEMPOTENT
            and not self.request.has_body
            and self.request.upgrade is None
        ):
            self.retried = True  # a pooled connection the backend had closed: try again
            if self.trace is not None and self.trace.spans:
                span = self.trace.spans[-1]  # (the same attempt goes on)
                span.end, span.error = 0.0, None
            self._connect()
            return
        if status == 502:
            log.info("backend {backend}: {reason}", backend=self.backend.name, reason=reason)
        if status == 502 and self.backend.spec.tls is not None:
            reason += " (or failed TLS checks)"
        self.respond_local(status, reason.encode() + b"\n")

    def response_head(self, response: Response, upgrade: bytes | None) -> None:
        if self.route.guards is not None:
            self._endpoint_outcome(response.status < 500)
        trace = self.trace
        if trace is not None and trace.spans:
            trace.spans[-1].status = response.status
        guard = self.guard
        if guard is not None and guard.retry_on(response.status) and self._retry("status"):
            return
        python = self.backend.response_filters
        if python is not None:
            outcome = python.on_response(self, response)
            if outcome is False:  # (answered 500)
                return
            if outcome is not True:  # a filter's Deferred: the response waits for it
                self._hold(outcome, response, upgrade)
                return
        self._respond(response, upgrade)

    def _hold(self, outcome: Deferred, response: Response, upgrade: bytes | None) -> None:
        """Keep what the backend sends until a filter's on_response has answered (the
        backend paused meanwhile; this attempt is the last: no retry), then go on with
        the response."""
        self.held = []
        if self.upstream is not None:
            self.upstream.transport.pauseProducing()
        outcome.addBoth(self._unhold, response, upgrade)

    def _unhold(self, go_on, response: Response, upgrade: bytes | None) -> None:
        held, self.held = self.held, None
        if self.finished:
            return
        if go_on is not True:  # (False: answered 500; a Failure: not the filter's doing)
            if go_on is not False:
                log.failure("a response filter's step failed", go_on)
                self.respond_local(500, b"a filter of this route failed\n")
            return
        upstream = self.upstream
        if upstream is not None and upstream.connected:
            upstream.transport.resumeProducing()  # (before a slow client may pause it)
        self._respond(response, upgrade)
        for data in held:
            if self.finished:
                return  # (a rewriter failed: cut short)
            if upgrade is not None:
                self.backend_tunnel_data(data)
            elif isinstance(data, bytes):
                self.response_data(data)
            else:
                self.response_end(data[1])
        if not self.finished and upgrade is None:
            self.flush()

    def _respond(self, response: Response, upgrade: bytes | None) -> None:
        """Send the response head, with the route's and policies' fields."""
        self.code = response.status
        self.responded = True
        route, backend = self.route, self.backend
        if route.response_headers is not None:
            response.headers = route.response_headers.apply(response.headers)
        if backend.response_headers is not None:
            response.headers = backend.response_headers.apply(response.headers)
        if self.added is not None:
            response.headers = with_fields(response.headers, self.added)
        session = route.session
        if session is not None:
            conn = self.conn
            response.headers = session.respond(
                response.headers,
                backend,
                self.endpoint,
                self.session_held,
                conn.clock.seconds(),
                conn.tls,
            )
        guards = route.guards
        if guards is not None and guards.compression is not None and self.method != b"HEAD":
            encoding = guards.compression.choose(self.request.headers)
            if encoding is not None:
                self.encoder = guards.compression.encoder_for(response, encoding)
        if backend.http2:  # (a gRPC answer with no message has its status here)
            self._grpc_status(response.headers)
        self.down.send_response(response, upgrade)
        if upgrade is not None:
            self._tunnel()

    def _grpc_status(self, fields: Headers) -> None:
        for name, value in fields:
            if name == b"grpc-status" and value.isdigit() and len(value) <= 2:
                self.grpc_status = value  # (a metrics label: the backend's text is bounded)

    def response_data(self, data: bytes) -> None:
        if self.held is not None:
            self.held.append(data)
            return
        if self.rewrite is not None:
            data = self.rewrite.data(self.conn.factory.guards.filters, data)
            if data is None:  # (a filter's rewriter failed: logged and counted)
                self._cut_short()
                return
        self._send_body(data)

    def _send_body(self, data: bytes) -> None:
        """Send response body bytes, compressed if the response is."""
        if self.encoder is not None:
            data = self.encoder.compress(data)
        self.sent += len(data)
        self.down.send_data(data)

    def flush(self) -> None:
        """Send what the last read from the backend produced, in one write."""
        if self.held is not None or self.finished:
            return
        down = self.down
        if self.encoder is not None:
            data = self.encoder.flush()
            self.sent += len(data)
            down.send_data(data)
        if down.out:
            down.flush()
            conn = self.conn
            if not self.producing and self.upstream is not None and has_pending(conn.transport):
                # the client is slower than the backend: let it pause the backend
                conn.transport.registerProducer(self.upstream.transport, True)
                self.producing = True

    def response_end(self, trailers: Headers | None = None) -> None:
        """The response is complete, with ``trailers`` (HTTP/2 backends)."""
        upstream = self.upstream
        self._detach_upstream()
        if upstream is not None:
            upstream.release()
        if self.held is not None:
            self.held.append((None, trailers))
            if self.guard is not None:
                self.guard.attempt_ended()
            return
        if trailers:
            self._grpc_status(trailers)
        if self.rewrite is not None:
            data = self.rewrite.end(self.conn.factory.guards.filters)
            if data is None:
                self._cut_short()
                return
            if data:
                self._send_body(data)
        if self.encoder is not None:
            data, self.encoder = self.encoder.finish(), None
            self.sent += len(data)
            self.down.send_data(data)
        self._finish()
        self.down.send_end(trailers)

    def _detach_upstream(self) -> None:
        """End the producer/consumer pairing of this exchange. Either side may have been
        paused by the other's backpressure when the exchange ended: resume it, or the
        next exchange on that connection would never be read."""
        upstream, self.upstream = self.upstream, None
        conn = self.conn
        trace = self.trace
        if trace is not None and trace.spans and not trace.spans[-1].end:
            trace.spans[-1].end = conn.clock.seconds()  # the attempt's end
        transport = conn.transport
        if transport is not None and transport.producer is not None:
            transport.unregisterProducer()
        if upstream is not None:
            upstream.exchange = None
            if upstream.connected:
                if _unpair(upstream.transport) and transport is not None and not conn.paused:
                    transport.resumeProducing()
                upstream.transport.resumeProducing()

    # -- timeouts and retries (routes with a policy only)

    def _retry(self, reason: str) -> bool:
        """Drop this attempt and try again after the backoff, if the rule's retry
        policy allows (``reason``: connect, reset, timeout, status); whether so."""
        guard = self.guard
        if guard is None or not guard.may_retry() or self.request.upgrade is not None:
            return False
        if self.held is not None:
            return False  # (a response filter has the response: it is the answer)
        upstream = self.upstream
        self._detach_upstream()
        if upstream is not None:
            upstream.abort()
        self.conn.metrics.retried(self.route.name, reason)
        guard.backoff(self._next_attempt)
        return True

    def _next_attempt(self) -> None:
        """After the backoff: a backend chosen anew, the kept body replayed."""
        if self.finished:
            return
        guard = self.guard
        if guard.replay is None:  # the body outgrew the bound during the backoff
            self.respond_local(503, b"the backend failed and the body is too large to retry\n")
            self.down.flush()
            return
        self.pending = list(guard.replay)
        self.pending_size = guard.replay_size
        self._attempt(guard.where)
        if self.finished:
            self.down.flush()  # (answered here: nothing else writes now)

    def _request_expired(self) -> None:
        """The rule's request timeout passed before the response ended."""
        self._timed_out("request")

    def _backend_expired(self) -> None:
        """This attempt's backendRequest timeout passed before its response ended."""
        if self.finished:
            return
        if not self.responded and self.upstream is not None:
            self._attempt_failed("timeout")
            if self._retry("timeout"):
                return
        self._timed_out("backend_request")

    def _timed_out(self, which: str) -> None:
        if self.finished:
            return
        self._attempt_failed("timeout")
        self.conn.metrics.timed_out(self.route.name, which)
        if self.responded:  # the response was cut short: the client cannot be told
            self._cut_short()
            return
        if self.upstream is None:
            self.conn.pool.cancel(self)  # (it may be waiting for a connection)
        self.respond_local(504, b"the backend did not answer in time\n")
        self.down.flush()

    def _cut_short(self) -> None:
        """End a response that has begun, unfinished: the client sees it broken off."""
        upstream = self.upstream
        self._detach_upstream()
        if upstream is not None:
            upstream.abort()
        self._finish()
        self.conn.abort()

    def _attempt_failed(self, error: str) -> None:
        """Note why the current attempt failed on its span (if recorded), and for the
        endpoint's passive health check."""
        trace = self.trace
        if trace is not None and trace.spans and not trace.spans[-1].end:
            trace.spans[-1].error = error
        if self.route is not None and self.route.guards is not None:
            self._endpoint_outcome(False)

    def _endpoint_outcome(self, ok: bool) -> None:
        """Tell the endpoint's passive health check how an attempt went."""
        health = self.route.guards.health
        if health is not None and health.passive is not None and self.endpoint is not None:
            self.conn.factory.guards.health.outcome(self.backend, self.endpoint, health.passive, ok)

    # -- tunnels (after a 101)

    def _tunnel(self) -> None:
        conn, upstream = self.conn, self.upstream
        if self.guard is not None:
            self.guard.cancel()  # a tunnel has its idle timeout, not the rule's
        self.down.flush()
        from_client = self.down.start_tunnel()
        from_backend = upstream.codec.start_tunnel()
        _unpair(upstream.transport)
        if conn.transport.producer is not None:
            conn.transport.unregisterProducer()
        upstream.transport.registerProducer(conn.transport, True)
        conn.transport.registerProducer(upstream.transport, True)
        self.producing = True
        conn.tunnel = upstream
        self.tunnel_idle = Deadline(conn.clock, self._tunnel_idle)
        self.tunnel_idle.set(conn.settings.stream_idle_timeout)
        if from_client:
            self.tunnel_data(from_client)
        if from_backend:
            self.backend_tunnel_data(from_backend)

    def tunnel_data(self, data: bytes) -> None:
        """Bytes from the client, for the backend."""
        self.received += len(data)
        self.tunnel_idle.set(self.conn.settings.stream_idle_timeout)
        self.upstream.write(data)

    def backend_tunnel_data(self, data: bytes) -> None:
        """Bytes from the backend, for the client."""
        if self.held is not None:  # (they came with its 101, held for a filter)
            self.held.append(data)
            return
        self.sent += len(data)
        self.tunnel_idle.set(self.conn.settings.stream_idle_timeout)
        self.conn.write(data)

    def tunnel_closed(self) -> None:
        """Either side of the tunnel closed: the exchange ends with it."""
        if self.tunnel_idle is not None:
            self.tunnel_idle.cancel()
        if not self.finished:
            self._finish()

    def _tunnel_idle(self) -> None:
        self.conn.close()
        if self.upstream is not None:
            self.upstream.transport.loseConnection()

    # -- local answers and the end

    def respond_local(
        self, code: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        if self.finished:
            return  # (answered already: a late check, a timer, must not answer twice)
        self.pending = []
        upstream = self.upstream
        self._detach_upstream()
        if upstream is not None:
            upstream.abort()  # (its answer is no longer wanted, e.g. a 408 for the body)
        if self.method == b"HEAD":
            body = b""
        if self.added:
            extra = [*(extra or ()), *self.added]
        if self._is_grpc():
            # a gRPC client reads the status from trailers: answer "trailers only"
            self.grpc_status = b"%d" % GRPC_STATUS.get(code, 2)
            extra = [
                *(field for field in extra or () if field[0].lower() != b"content-type"),
                (b"content-type", b"application/grpc"),
                (b"grpc-status", self.grpc_status),
                (b"grpc-message", grpc_message(body)),
            ]
            code, body = 200, b""
        self.code = code
        self.sent = len(body)
        self._finish()
        self.down.send_local(code, body, extra)

    def _is_grpc(self) -> bool:
        """Whether the request is a gRPC call (its route is a GRPCRoute's, or its
        content-type says so)."""
        if self.route is not None and self.route.grpc:
            return True
        for name, value in self.request.headers:
            if name == b"content-type":
                return value.startswith(b"application/grpc")
        return False

    def _finish(self) -> None:
        """Count the exchange and write its access-log record, once."""
        if self.finished:
            return
        self.finished = True
        if self.guard is not None:
            self.guard.cancel()
        if self.body_wait is not None:
            self._body_read(False)
        if self.filter_wait is not None:
            self._cancel_filter_wait()
        self._cancel_mirrors()
        conn = self.conn
        listener, route = self.listener, self.route
        now = conn.clock.seconds()
        conn.metrics.request(
            listener.gateway if listener is not None else "",
            route.name if route is not None else "",
            route.rule if route is not None else "",
            self.backend.name if self.backend is not None else "",
            self.code,
            now - self.started_at,
            self.request.protocol,
            self.grpc_status,
        )
        spans = conn.factory.spans
        if self.trace is None and (
            spans is not None or (conn.access_log is not None and conn.factory.tracing)
        ):
            self._local_trace(spans)
        if spans is not None and self.trace.spans is not None:
            spans.export(self, now)
        if conn.access_log is not None:
            conn.access_log(self, now)

    def _local_trace(self, spans: SpanExport | None) -> None:
        """The trace of a request answered before any attempt (for its span and log)."""
        traceparent = tracestate = None
        for name, value in self.request.headers:
            if name == b"traceparent":
                traceparent = value if traceparent is None else b""
            elif name == b"tracestate" and tracestate is None:
                tracestate = value
        self.trace = Trace(
            traceparent, tracestate, spans.sample_below if spans is not None else None
        )

    def _cancel_filter_wait(self) -> None:
        """A filter's Deferred is no longer wanted: cancel it (its call to a service,
        its job in a thread: if it has a canceller)."""
        wait, self.filter_wait = self.filter_wait, None
        try:
            wait.cancel()
        except Exception:
            log.failure("cancelling a filter's Deferred failed")

    def _cancel_mirrors(self) -> None:
        """The request's body will not be whole: its copies cannot be either."""
        mirrors, self.mirrors = self.mirrors, None
        if mirrors is not None:
            for mirror in mirrors:
                mirror.cancel()

    def client_gone(self) -> None:
        """The client disconnected (or broke the protocol): drop the backend side."""
        self._cancel_mirrors()
        upstream, self.upstream = self.upstream, None
        tunnel = self.tunnel_idle is not None
        if tunnel:
            self.tunnel_idle.cancel()
        if not self.finished:
            self.code = self.code or 499  # nginx's code for a client that went away
            self._finish()
        if upstream is None:
            self.conn.pool.cancel(self)  # it may be waiting for a connection
        else:
            upstream.exchange = None
            if tunnel:
                upstream.transport.loseConnection()  # a tunnel's end is no error
            else:
                upstream.abort()


#: The longest grpc-message a local answer carries (a filter's Answer body may be long).
MAX_GRPC_MESSAGE = 1024


def grpc_message(body: bytes) -> bytes:
    """A local answer's body as a grpc-message: one line, at most MAX_GRPC_MESSAGE
    bytes, percent-encoded as gRPC's spec says (all but printable ASCII other than %)."""
    text = body.strip().replace(b"\n", b" ")[:MAX_GRPC_MESSAGE]
    if all(0x20 <= byte <= 0x7E and byte != 0x25 for byte in text):
        return text
    return b"".join(
        bytes((byte,)) if 0x20 <= byte <= 0x7E and byte != 0x25 else b"%%%02X" % byte
        for byte in text
    )


def _unpair(transport) -> bool:
    """Unregister the transport's producer, if any; whether there was one."""
    if transport is not None and transport.producer is not None:
        transport.unregisterProducer()
        return True
    return False


#: Authorities seen, as text and as the host name routing uses; bounded, emptied when full.
_hosts: dict[bytes, tuple[str, str]] = {}
MAX_CACHED_HOSTS = 1024


def _host_names(authority: bytes) -> tuple[str, str]:
    """``authority`` as text, and its host name in lower case without the port."""
    text = authority.decode("latin-1")
    names = (text, _host_only(text.lower()))
    if len(authority) <= 255:  # a DNS name's limit: the cache's size stays small
        if len(_hosts) >= MAX_CACHED_HOSTS:
            _hosts.clear()
        _hosts[authority] = names
    return names


def _host_only(host: str) -> str:
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    colon = host.rfind(":")
    return host[:colon] if colon != -1 else host
