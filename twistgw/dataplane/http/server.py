"""The client side: an HTTP/1.1 server protocol that proxies each request to a backend.

Requests on one connection are served in order (pipelined requests wait their turn).
Bodies stream in both directions; a slow peer pauses the other through Twisted's
producer/consumer interfaces, so nothing is buffered whole."""

from __future__ import annotations

from collections import deque
from http import HTTPStatus
from typing import TYPE_CHECKING

import httptools
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgw.dataplane.fastwrite import has_pending, writer_for
from twistgw.dataplane.http.filters import redirect_location, rewrite_path
from twistgw.dataplane.http.router import CompiledBackend, CompiledRoute, Router
from twistgw.dataplane.http.upstream import HOP_BY_HOP, UpstreamConnection, UpstreamPool
from twistgw.dataplane.tls import handshake_listener

if TYPE_CHECKING:
    from twistgw.metrics import Metrics
    from twistgw.routing.ir import Endpoint

log = Logger()

REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, phrase) for code, phrase in REASONS.items()}
#: Request headers noted while parsing; without any of these a request's headers are
#: forwarded as they are.
SPECIAL_REQUEST_HEADERS = HOP_BY_HOP | {b"x-forwarded-for", b"x-forwarded-proto"}
#: Body bytes held for a backend that is not connected yet before reading pauses.
MAX_PENDING_BODY = 256 * 1024


def status_line(code: int) -> bytes:
    line = STATUS_LINES.get(code)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % code


def strip_hop_by_hop(
    headers: list[tuple[bytes, bytes]],
) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
    """Headers without hop-by-hop ones (and those ``Connection`` names) and without
    ``X-Forwarded-*``; returns them and the incoming ``X-Forwarded-For``. Names are
    lower-case already."""
    drop = HOP_BY_HOP
    for name, value in headers:
        if name == b"connection":
            drop = drop | {token.strip().lower() for token in value.split(b",")}
    forwarded_for = None
    kept = []
    for name, value in headers:
        if name in drop:
            continue
        if name == b"x-forwarded-for":
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
            continue
        if name == b"x-forwarded-proto":
            continue
        kept.append((name, value))
    return kept, forwarded_for


class Exchange:
    """One request and its response, from the request head to the response's end."""

    __slots__ = (
        "server",
        "method",
        "url",
        "version",
        "headers",
        "started_at",
        "request_done",
        "chunked_request",
        "pending",
        "pending_size",
        "upstream",
        "route",
        "backend",
        "listener",
        "code",
        "response_chunked",
        "response_open",
        "head",
        "retried",
        "local",
        "close_after",
        "has_body",
        "started",
        "outgoing",
        "host",
        "special",
        "producing",
    )

    def __init__(
        self,
        server: HTTPServerProtocol,
        method: bytes,
        url: bytes,
        version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        host: bytes = b"",
        has_body: bool = False,
        chunked: bool = False,
        special: bool = False,
    ) -> None:
        self.server = server
        self.method = method
        self.url = url
        self.version = version
        self.headers = headers
        self.started_at = 0.0
        self.request_done = False
        self.chunked_request = chunked
        self.host = host
        self.special = special
        self.producing = False
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.upstream: UpstreamConnection | None = None
        self.route: CompiledRoute | None = None
        self.backend: CompiledBackend | None = None
        self.listener = None
        self.code = 0
        self.response_chunked = False
        self.response_open = False
        self.head = b""
        self.retried = False
        self.local = False
        self.close_after = not keep_alive
        self.has_body = has_body
        self.started = False
        self.outgoing: list[bytes] = []

    # -- request side

    def start(self, router: Router) -> None:
        self.started = True
        server = self.server
        if server.factory.draining:
            self.close_after = True  # tell the client: this connection ends after this
        self.started_at = server.clock.seconds()
        url = self.url
        if url[:1] == b"/":  # origin-form, nearly every request
            path_bytes, _, query_bytes = url.partition(b"?")
        else:
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                self.respond_local(400, b"invalid request target\n")
                return
            path_bytes, query_bytes = parsed.path or b"/", parsed.query or b""
        path = path_bytes.decode("latin-1")
        query = query_bytes.decode("latin-1")
        host = self.host
        host_name = _host_only(host.decode("latin-1").lower()) if host else ""
        self.listener, route = router.route(host_name, self.method, path, query, self._header_dict)
        if self.listener is not None and server.tls:
            chosen = server.handshake_listener()
            if chosen is not None and chosen != self.listener.name:
                self.respond_local(421, b"this host is served by another listener: check SNI\n")
                return
        if route is None:
            self.respond_local(404, b"no route matches this request\n")
            return
        self.route = route
        if route.redirect is not None:
            location = redirect_location(
                route, server.scheme, host.decode("latin-1"), server.local_port(), path, query
            )
            self.respond_local(route.redirect.status_code, b"", [(b"location", location)])
            return
        backend = route.pick_backend()
        if backend is None or backend.invalid:
            self.backend = backend
            self.respond_local(500, b"the route has no valid backend\n")
            return
        self.backend = backend
        endpoint = backend.endpoint()
        if endpoint is None:
            self.respond_local(503, b"no healthy endpoints for the backend\n")
            return
        self.head = self._upstream_head(path, query)
        self._connect(endpoint)

    def _connect(self, endpoint: Endpoint) -> None:
        tls = self.backend.spec.tls
        if tls is None:
            self.server.pool.acquire(endpoint, self, self.method == b"HEAD")
        else:
            self.server.pool.acquire(
                endpoint,
                self,
                self.method == b"HEAD",
                tls,
                self.listener.spec.client_certificate,
            )

    def _header_dict(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for name, value in self.headers:
            key = name.decode("latin-1")
            if key in found:
                found[key] += "," + value.decode("latin-1")
            else:
                found[key] = value.decode("latin-1")
        return found

    def _upstream_head(self, path: str, query: str) -> bytes:
        route, backend, server = self.route, self.backend, self.server
        headers = self.headers
        forwarded_for = None
        if self.special:
            headers, forwarded_for = strip_hop_by_hop(headers)
        target = self.url
        rewrite = route.rewrite
        if rewrite is not None:
            if rewrite.hostname:
                headers = [h for h in headers if h[0] != b"host"]
                headers.append((b"host", rewrite.hostname.encode("latin-1")))
            if rewrite.path is not None:
                new_path = rewrite_path(route, rewrite.path, path)
                target = (new_path + ("?" + query if query else "")).encode("latin-1")
        if route.request_headers is not None:
            headers = route.request_headers.apply(headers)
        if backend.request_headers is not None:
            headers = backend.request_headers.apply(headers)
        client = server.peer_host
        lines = [self.method, b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            lines += (name, b": ", value, b"\r\n")
        lines += (
            b"x-forwarded-for: ",
            forwarded_for + b", " + client if forwarded_for else client,
            b"\r\nx-forwarded-proto: ",
            server.scheme_bytes,
            b"\r\n\r\n" if not self.chunked_request else b"\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        return b"".join(lines)

    def request_body(self, data: bytes) -> None:
        if self.local:
            return  # a local answer ignores the body
        if self.chunked_request:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        upstream = self.upstream
        if upstream is not None:
            upstream.write(data)
            return
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size > MAX_PENDING_BODY:
            self.server.pause_reading()

    def request_complete(self) -> None:
        self.request_done = True
        if self.local:
            return
        if self.chunked_request:
            if self.upstream is not None:
                self.upstream.write(b"0\r\n\r\n")
            else:
                self.pending.append(b"0\r\n\r\n")

    # -- upstream side (ResponseSink)

    def upstream_ready(self, upstream: UpstreamConnection) -> None:
        if self.local:  # answered meanwhile (client gone): hand the connection back
            upstream.release()
            return
        self.upstream = upstream
        pending, self.pending, self.pending_size = self.pending, [], 0
        pending.insert(0, self.head)
        upstream.write(b"".join(pending))
        if not self.request_done:
            upstream.transport.registerProducer(self.server.transport, True)
        self.server.resume_reading()

    def upstream_failed(self, reason: str) -> None:
        log.info(
            "connecting to backend {backend} failed: {reason}",
            backend=self.backend.name if self.backend else "?",
            reason=reason,
        )
        self.respond_local(503, b"the backend is unavailable\n")

    def upstream_lost(self, started: bool) -> None:
        upstream = self.upstream
        self._detach_upstream()
        if self.response_open or started:
            # the response was cut short: the client cannot be told otherwise
            self.server.transport.loseConnection()
            self.server.exchange_aborted(self)
            return
        if (
            upstream is not None
            and upstream.reused
            and not self.retried
            and self.request_done
            and not self.chunked_request
            and not self.has_body
        ):
            self.retried = True  # a pooled connection the backend had closed: try again
            endpoint = self.backend.endpoint()
            if endpoint is not None:
                self._connect(endpoint)
                return
        if self.backend.spec.tls is not None:
            self.respond_local(502, b"the backend closed the connection or failed TLS checks\n")
        else:
            self.respond_local(502, b"the backend closed the connection\n")

    def response_head(
        self, status: int, headers: list[tuple[bytes, bytes]], has_length: bool, special: bool
    ) -> None:
        self.code = status
        self.response_open = True
        if special:
            headers = strip_hop_by_hop(headers)[0]
        if self.route.response_headers is not None:
            headers = self.route.response_headers.apply(headers)
        if self.backend.response_headers is not None:
            headers = self.backend.response_headers.apply(headers)
        if self.server.factory.draining:
            self.close_after = True
        lines = [status_line(status)]
        for name, value in headers:
            lines += (name, b": ", value, b"\r\n")
        bodiless = self.method == b"HEAD" or status in (204, 304)
        if not has_length and not bodiless:
            if self.version == "1.1":
                self.response_chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
            else:
                self.close_after = True
        if self.close_after:
            lines.append(b"connection: close\r\n")
        elif self.version == "1.0":
            lines.append(b"connection: keep-alive\r\n")
        lines.append(b"\r\n")
        self.outgoing += lines

    def response_body(self, data: bytes) -> None:
        if self.response_chunked:
            self.outgoing += (b"%x\r\n" % len(data), data, b"\r\n")
        else:
            self.outgoing.append(data)

    def flush(self) -> None:
        """Send what the last read from the backend produced, in one write."""
        if self.outgoing:
            data = b"".join(self.outgoing)
            self.outgoing = []
            server = self.server
            server.write(data)
            if not self.producing and self.upstream is not None and has_pending(server.transport):
                # the client is slower than the backend: let it pause the backend
                server.transport.registerProducer(self.upstream.transport, True)
                self.producing = True

    def response_done(self) -> None:
        if self.response_chunked:
            self.outgoing.append(b"0\r\n\r\n")
        self.flush()
        self.response_open = False
        upstream = self.upstream
        self._detach_upstream()
        if not self.request_done:
            # answered before the request body ended: stop reading it, close afterwards
            self.local = True
            self.close_after = True
        if upstream is not None:
            if not self.request_done:
                upstream.reusable = False
            upstream.release()
        self._record()
        self.server.exchange_finished(self)

    def _detach_upstream(self) -> None:
        """End the producer/consumer pairing of this exchange. Either side may have been
        paused by the other's backpressure when the exchange ended: resume it, or the
        next exchange on that connection would never be read."""
        upstream, self.upstream = self.upstream, None
        server = self.server
        transport = server.transport
        if transport is not None and transport.producer is not None:
            transport.unregisterProducer()
        if upstream is not None and upstream.connected:
            upstream_transport = upstream.transport
            if upstream_transport.producer is not None:
                upstream_transport.unregisterProducer()
                if transport is not None and not server.paused and not server.closing:
                    transport.resumeProducing()
            upstream_transport.resumeProducing()

    # -- local answers

    def respond_local(
        self, code: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.local = True
        self.code = code
        self.pending = []
        self._detach_upstream()
        headers = [status_line(code)]
        if extra:
            for name, value in extra:
                headers += (name, b": ", value, b"\r\n")
        if not self.request_done:
            self.close_after = True  # the rest of the body is not worth reading
        headers.append(b"content-type: text/plain\r\ncontent-length: %d\r\n" % len(body))
        if self.close_after:
            headers.append(b"connection: close\r\n")
        headers.append(b"\r\n")
        if self.method != b"HEAD":
            headers.append(body)
        if self.server.transport is not None:
            self.server.write(b"".join(headers))
        self._record()
        self.server.exchange_finished(self)

    def _record(self) -> None:
        server = self.server
        listener = self.listener
        server.metrics.request(
            listener.gateway if listener is not None else "",
            self.route.name if self.route is not None else "",
            self.backend.name if self.backend is not None else "",
            self.code,
            server.clock.seconds() - self.started_at,
        )

    def client_gone(self) -> None:
        """The client disconnected: drop the backend connection mid-exchange."""
        upstream, self.upstream = self.upstream, None
        self.local = True
        if upstream is not None:
            upstream.abort()


def _host_only(host: str) -> str:
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    colon = host.rfind(":")
    return host[:colon] if colon != -1 else host


class HTTPServerProtocol(Protocol):
    """One client connection."""

    def __init__(self, factory: HTTPProxyFactory) -> None:
        self.factory = factory
        self.clock = factory.clock
        self.pool = factory.pool
        self.metrics = factory.metrics
        self.scheme = factory.scheme
        self.scheme_bytes = factory.scheme.encode()
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Exchange] = deque()
        self.current: Exchange | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.host = b""
        self.has_body = self.chunked = self.special = False
        self.peer_host = b""
        self.paused = False
        self.closing = False

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.write = writer_for(self.transport)
        self.tls = self.scheme == "https"
        self._handshake_listener: str | None = None
        self.peer_host = self.transport.getPeer().host.encode()
        self.factory.connection_opened(self)

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._bad_request(b"protocol upgrades are not supported yet\n", 501)
        except httptools.HttpParserCallbackError as exc:
            # not the client's fault: one of our callbacks raised
            cause = exc.__cause__ or exc.__context__ or exc
            log.failure(
                "internal error serving a request", Failure(cause, type(cause), cause.__traceback__)
            )
            self._bad_request(b"internal error\n", 500)
        except httptools.HttpParserError:
            self._bad_request(b"malformed HTTP request\n", 400)

    def connectionLost(self, reason: Failure = None) -> None:
        self.closing = True
        self.factory.connection_closed(self)
        for exchange in self.queue:
            exchange.client_gone()
        self.queue.clear()

    def local_port(self) -> int:
        """The port the client connected to (a getsockname call: only when needed)."""
        return self.transport.getHost().port

    def handshake_listener(self) -> str | None:
        """The listener this connection's TLS handshake chose (by SNI)."""
        if self._handshake_listener is None:
            self._handshake_listener = handshake_listener(self.transport)
        return self._handshake_listener

    def _bad_request(self, body: bytes, code: int) -> None:
        self.closing = True
        if not self.queue:
            self.transport.writeSequence(
                [
                    status_line(code),
                    b"content-type: text/plain\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                    % len(body),
                    body,
                ]
            )
        self.transport.loseConnection()

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.host = b""
        self.has_body = self.chunked = self.special = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self.headers.append((name, value))
        if name == b"host":
            self.host = value
        elif name == b"content-length":
            self.has_body = self.has_body or value.strip() != b"0"
        elif name in SPECIAL_REQUEST_HEADERS:
            self.special = True
            if name == b"transfer-encoding":
                self.has_body = True
                self.chunked = b"chunked" in value.lower()

    def on_headers_complete(self) -> None:
        parser = self.parser
        exchange = Exchange(
            self,
            parser.get_method(),
            self.url,
            parser.get_http_version(),
            self.headers,
            parser.should_keep_alive(),
            self.host,
            self.has_body,
            self.chunked,
            self.special,
        )
        self.current = exchange
        self.queue.append(exchange)
        if len(self.queue) > 1:
            self.pause_reading()  # pipelined: wait for the requests before it
        elif exchange.has_body:
            exchange.start(self.factory.router)  # stream the body as it comes

    def on_body(self, body: bytes) -> None:
        self.current.request_body(body)

    def on_message_complete(self) -> None:
        exchange = self.current
        exchange.request_complete()
        if not exchange.started and self.queue and self.queue[0] is exchange:
            exchange.start(self.factory.router)

    # -- exchanges

    def exchange_finished(self, exchange: Exchange) -> None:
        if not self.queue or self.queue[0] is not exchange:
            return
        self.queue.popleft()
        if exchange.close_after or self.closing or (self.factory.draining and not self.queue):
            self.closing = True
            if self.transport is not None:
                self.transport.loseConnection()
            return
        if self.queue:
            following = self.queue[0]
            if following.has_body or following.request_done:
                following.start(self.factory.router)
        self.resume_reading()

    def exchange_aborted(self, exchange: Exchange) -> None:
        self.closing = True
        self.queue.clear()

    def pause_reading(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pauseProducing()

    def resume_reading(self) -> None:
        if self.paused and not self.closing and len(self.queue) <= 1:
            self.paused = False
            self.transport.resumeProducing()


class HTTPProxyFactory(Factory):
    """Serves one bound address and port; ``router`` is swapped on each table update."""

    noisy = False

    def __init__(
        self, router: Router, pool: UpstreamPool, metrics: Metrics, clock, scheme: str = "http"
    ) -> None:
        self.router = router
        self.pool = pool
        self.metrics = metrics
        self.clock = clock
        self.scheme = scheme
        self.open_connections = 0
        self.protocols: set[HTTPServerProtocol] = set()
        self.draining = False
        self.label = f"{router.bind.address}:{router.bind.port}"

    def buildProtocol(self, addr) -> HTTPServerProtocol:
        return HTTPServerProtocol(self)

    def connection_opened(self, protocol: HTTPServerProtocol) -> None:
        self.open_connections += 1
        self.protocols.add(protocol)

    def connection_closed(self, protocol: HTTPServerProtocol) -> None:
        self.open_connections -= 1
        self.protocols.discard(protocol)

    def drain(self) -> None:
        """Close idle connections now and busy ones once their exchange ends."""
        self.draining = True
        for protocol in list(self.protocols):
            if not protocol.queue:
                protocol.transport.loseConnection()

    def abort_all(self) -> None:
        for protocol in list(self.protocols):
            protocol.transport.abortConnection()
