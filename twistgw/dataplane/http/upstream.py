"""Connections to backends: an HTTP/1.1 client protocol and a keep-alive pool per endpoint,
in plaintext or, for Services with a BackendTLSPolicy, over verified TLS."""

from __future__ import annotations

from typing import Protocol as TypingProtocol

import httptools
from twisted.internet.interfaces import IReactorTCP
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgw.dataplane.backend_tls import BackendConnectionCreator, BackendTLSCreators
from twistgw.dataplane.fastwrite import writer_for
from twistgw.routing.ir import BackendTLS, CertificateKey, Endpoint

#: Headers that concern one connection only, never forwarded (RFC 9110 7.6.1).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

log = Logger()


class ResponseSink(TypingProtocol):
    """What an upstream connection reports to: the exchange it serves."""

    def upstream_ready(self, upstream: UpstreamConnection) -> None: ...
    def upstream_failed(self, reason: str) -> None: ...
    def response_head(
        self, status: int, headers: list[tuple[bytes, bytes]], has_length: bool, special: bool
    ) -> None: ...
    def response_body(self, data: bytes) -> None: ...
    def response_done(self) -> None: ...
    def flush(self) -> None: ...
    def upstream_lost(self, started: bool) -> None: ...


#: What a pooled connection is kept under: where it goes and how (TLS creator or None).
PoolKey = tuple[Endpoint, BackendConnectionCreator | None]


class UpstreamConnection(Protocol):
    """One keep-alive connection to a backend endpoint, serving one exchange at a time."""

    def __init__(self, pool: UpstreamPool, key: PoolKey) -> None:
        self.pool = pool
        self.key = key
        self.endpoint = key[0]
        self.sink: ResponseSink | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.has_length = self.special = False
        self.started = False
        self.reusable = False
        self.head_request = False
        self.connected = False
        self.reused = False

    # -- Protocol

    def connectionMade(self) -> None:
        self.connected = True
        self.transport.setTcpNoDelay(True)
        self.write = writer_for(self.transport)
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.upstream_ready(self)

    def dataReceived(self, data: bytes) -> None:
        if self.sink is None:  # an idle connection must not speak
            self.transport.loseConnection()
            return
        try:
            self.parser.feed_data(data)
            if self.sink is not None:
                self.sink.flush()
        except httptools.HttpParserError as exc:
            sink, self.sink = self.sink, None
            self.reusable = False
            self.transport.loseConnection()
            log.warn("bad response from {endpoint}: {error}", endpoint=self.endpoint, error=exc)
            if sink is not None:
                sink.upstream_lost(self.started)

    def connectionLost(self, reason: Failure = None) -> None:
        self.connected = False
        self.reusable = False
        self.pool.forget(self)
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.upstream_lost(self.started)

    # -- exchange side

    def serve(self, sink: ResponseSink, head_request: bool = False) -> None:
        self.sink = sink
        self.started = False
        self.reusable = False
        self.head_request = head_request
        self.headers = []

    def release(self) -> None:
        """The exchange is done with this connection: pool it or close it."""
        self.sink = None
        if self.reusable and self.connected:
            self.pool.give_back(self)
        else:
            self.transport.loseConnection()

    def abort(self) -> None:
        self.sink = None
        self.reusable = False
        self.transport.abortConnection()

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        self.headers = []
        self.has_length = self.special = False

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self.headers.append((name, value))
        if name == b"content-length":
            self.has_length = True
        elif name in HOP_BY_HOP:
            self.special = True

    def on_headers_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            return  # interim responses are not forwarded
        self.started = True
        keep_alive = parser.should_keep_alive()
        self.reusable = keep_alive
        if self.sink is not None:
            self.sink.response_head(status, self.headers, self.has_length, self.special)
        if self.head_request or status in (204, 304):
            # httptools cannot be told that a HEAD response has no body: finish the
            # message here and start a fresh parser for the next one.
            self.parser = httptools.HttpResponseParser(self)
            self._finish()

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:
            self.sink.response_body(body)

    def on_message_complete(self) -> None:
        if self.started:
            self._finish()

    def _finish(self) -> None:
        self.started = False
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.response_done()


class _ConnectFactory(ClientFactory):
    noisy = False  # one per upstream connection: no log lines

    def __init__(self, pool: UpstreamPool, key: PoolKey, sink: ResponseSink) -> None:
        self.pool, self.key, self.sink = pool, key, sink

    def buildProtocol(self, addr) -> UpstreamConnection:
        connection = UpstreamConnection(self.pool, self.key)
        connection.sink = self.sink
        connection.factory = self
        return connection

    def clientConnectionFailed(self, connector, reason: Failure) -> None:
        self.sink.upstream_failed(reason.getErrorMessage())


class UpstreamPool:
    """Idle keep-alive connections per endpoint (and TLS settings), most recently used
    first."""

    def __init__(
        self, reactor: IReactorTCP, connect_timeout: float = 5.0, max_idle: int = 256
    ) -> None:
        self.reactor = reactor
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.tls_creators = BackendTLSCreators()
        self._idle: dict[PoolKey, list[UpstreamConnection]] = {}

    def acquire(
        self,
        endpoint: Endpoint,
        sink: ResponseSink,
        head_request: bool,
        tls: BackendTLS | None = None,
        client_certificate: CertificateKey | None = None,
    ) -> None:
        """Hand ``sink`` a connection: at once if one is idle, else once connected
        (over TLS, verified as ``tls`` says, when it is given)."""
        creator = self.tls_creators.get(tls, client_certificate) if tls is not None else None
        key = (endpoint, creator)
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.connected:
                connection.reused = True
                connection.serve(sink, head_request)
                sink.upstream_ready(connection)
                return
        factory = _ConnectFactory(self, key, _HeadMarker(sink, head_request))
        if creator is None:
            self.reactor.connectTCP(
                endpoint.address, endpoint.port, factory, timeout=self.connect_timeout
            )
        else:
            self.reactor.connectSSL(
                endpoint.address, endpoint.port, factory, creator, timeout=self.connect_timeout
            )

    def give_back(self, connection: UpstreamConnection) -> None:
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) >= self.max_idle:
            connection.transport.loseConnection()
            return
        idle.append(connection)

    def forget(self, connection: UpstreamConnection) -> None:
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    def close_idle(self) -> None:
        for idle in self._idle.values():
            for connection in list(idle):
                connection.transport.loseConnection()
        self._idle.clear()


class _HeadMarker:
    """Passes a new connection to the sink after marking it for a HEAD request."""

    def __init__(self, sink: ResponseSink, head_request: bool) -> None:
        self.sink, self.head_request = sink, head_request

    def upstream_ready(self, connection: UpstreamConnection) -> None:
        connection.serve(self.sink, self.head_request)
        self.sink.upstream_ready(connection)

    def upstream_failed(self, reason: str) -> None:
        self.sink.upstream_failed(reason)

    def upstream_lost(self, started: bool) -> None:
        self.sink.upstream_lost(started)
