"""A client connection's I/O: the socket's bytes go to the HTTP/1.1 codec, whose
requests become exchanges; after a ``101`` the connection is a tunnel to the backend.
A connection that starts with HTTP/2's preface (h2c with prior knowledge), or whose
TLS handshake chose ``h2`` by ALPN, goes to the HTTP/2 codec instead.

Bodies stream in both directions; a slow peer pauses the other through Twisted's
producer/consumer interfaces, so nothing is buffered whole."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IHalfCloseableProtocol, IPullProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from twistgw.dataplane.fastwrite import has_pending, writer_for
from twistgw.dataplane.http.exchange import Exchange
from twistgw.dataplane.http.h1.server import ServerCodec
from twistgw.dataplane.http.h2.server import PREFACE, H2ServerCodec, ServerStream
from twistgw.dataplane.http.messages import Request
from twistgw.dataplane.http.policies import Guards
from twistgw.dataplane.http.router import Router
from twistgw.dataplane.http.upstream import UpstreamConnection, UpstreamPool
from twistgw.dataplane.tls import handshake_listener
from twistgw.ipc.settings import DEFAULT_SETTINGS, DataPlaneSettings

if TYPE_CHECKING:
    from twistgw.dataplane.http.otlp import SpanExport
    from twistgw.metrics import Metrics

AccessLog = Callable[[Exchange, float], None]
#: How often a TLS connection whose client is not reading is looked at for drained
#: answers (a pipelined request waits for that; its header timeout still applies).
DRAIN_LOOK_INTERVAL = 0.02


@implementer(IHalfCloseableProtocol)
class HTTPServerProtocol(Protocol):
    """One client connection."""

    def __init__(self, factory: HTTPProxyFactory) -> None:
        self.factory = factory
        self.clock = factory.clock
        self.pool = factory.pool
        self.metrics = factory.metrics
        self.settings = factory.settings
        self.access_log = factory.access_log
        self.scheme = factory.scheme
        self.scheme_bytes = factory.scheme.encode()
        self.tls = self.scheme == "https"
        self.peer_host = b""
        self.paused = False
        self.closing = False
        self.read_closed = self.write_closed = False
        self.tunnel: UpstreamConnection | None = None
        self._handshake_listener: str | None = None
        self._sniffed = b""

    def connectionMade(self) -> None:
        transport = self.transport
        transport.setTcpNoDelay(True)
        self.write = writer_for(transport)
        self.peer_host = transport.getPeer().host.encode()
        self.codec: ServerCodec | H2ServerCodec = ServerCodec(self, self.clock, self.settings)
        self.dataReceived = self._first_data  # (until the protocol is known)
        self.factory.connection_opened(self)
        if self.factory.draining:
            self.codec.drain()

    def _first_data(self, data: bytes) -> None:
        """Choose HTTP/1.1 or HTTP/2 by ALPN, or by the prior-knowledge preface."""
        if self.tls:
            h2 = self.transport.negotiatedProtocol == b"h2"
        else:
            data = self._sniffed + data
            if len(data) < len(PREFACE) and PREFACE.startswith(data):
                self._sniffed = data  # (too short to tell yet)
                return
            self._sniffed = b""
            h2 = data.startswith(PREFACE)
        del self.dataReceived
        if h2 and not self.closing:
            self.codec.connection_lost()
            codec = self.codec = H2ServerCodec(self, self.clock, self.settings)
            self.transport.registerProducer(codec, True)
            if self.factory.draining:
                codec.drain()
        self.codec.receive(data)

    def new_exchange(self, codec: ServerCodec, request: Request) -> Exchange:
        return Exchange(codec, request, self)

    def new_stream_exchange(self, stream: ServerStream, request: Request) -> Exchange:
        """An HTTP/2 stream's exchange: the stream is its codec and its connection."""
        return Exchange(stream, request, stream)

    def refused(self, status: int) -> None:
        """The codec refused a request (a limit, a timeout, a protocol error)."""
        self.metrics.http_refused.labels(self.factory.label, str(status)).inc()

    def refused_h2(self, reason: str) -> None:
        """The HTTP/2 codec refused a stream or ended the connection for ``reason``."""
        self.metrics.http2_refused.labels(self.factory.label, reason).inc()

    def dataReceived(self, data: bytes) -> None:
        self.codec.receive(data)

    def readConnectionLost(self) -> None:
        tunnel = self.tunnel
        self.read_closed = True
        if tunnel is None:
            self.codec.receive_eof()  # answer what was asked, then close
        elif not tunnel.connected or self.write_closed or tunnel.tls:
            self.close()  # (TLS has no half-close)
        else:
            tunnel.transport.loseWriteConnection()  # pass the half-close on

    def writeConnectionLost(self) -> None:
        self.write_closed = True
        if self.tunnel is None or self.read_closed:
            self.close()

    def connectionLost(self, reason: Failure = None) -> None:
        self.closing = True
        self.factory.connection_closed(self)
        self.tunnel = None
        self.codec.connection_lost()

    # -- for the codec (ConnectionIO) and the exchange

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            if self.tls:  # a TLS layer closes only once no producer is registered
                self.transport.unregisterProducer()
            self.transport.loseConnection()

    def abort(self) -> None:
        self.closing = True
        self.transport.abortConnection()

    def backed_up(self) -> bool:
        """Whether bytes written earlier still wait to be sent."""
        return has_pending(self.transport)

    def when_drained(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once everything written has been sent."""
        transport = self.transport
        if transport is None or transport.producer is not None:
            callback()  # (a producer is paired already: it paces the writes)
            return
        if self.tls:
            # Twisted's TLS layer turns a pull producer into a loop that asks it for
            # more on every reactor turn (a busy wait): look now and then instead
            self._look_drained(callback)
            return
        transport.registerProducer(_DrainWaiter(transport, callback), False)

    def _look_drained(self, callback: Callable[[], None]) -> None:
        if self.closing or self.transport is None:
            return  # (closed meanwhile: nothing waits any more)
        if has_pending(self.transport):
            self.clock.callLater(DRAIN_LOOK_INTERVAL, self._look_drained, callback)
        else:
            callback()

    def pause(self) -> None:
        self.pause_reading()

    def resume(self) -> None:
        self.resume_reading()

    def pause_reading(self) -> None:
        if not self.paused and not self.closing:
            self.paused = True
            self.transport.pauseProducing()

    def resume_reading(self) -> None:
        if self.paused and not self.closing:
            self.paused = False
            self.transport.resumeProducing()

    def local_port(self) -> int:
        """The port the client connected to (a getsockname call: only when needed)."""
        return self.transport.getHost().port

    def handshake_listener(self) -> str | None:
        """The listener this connection's TLS handshake chose (by SNI)."""
        if self._handshake_listener is None:
            self._handshake_listener = handshake_listener(self.transport)
        return self._handshake_listener


@implementer(IPullProducer)
class _DrainWaiter:
    """Registered as a pull producer: Twisted asks it for more each time the
    transport's buffer has been sent, which is when the waiting ends."""

    def __init__(self, transport, callback: Callable[[], None]) -> None:
        self.transport = transport
        self.callback: Callable[[], None] | None = callback

    def resumeProducing(self) -> None:
        if self.callback is None or has_pending(self.transport):
            return
        callback, self.callback = self.callback, None
        self.transport.unregisterProducer()
        callback()

    def stopProducing(self) -> None:
        self.callback = self.transport = None


class HTTPProxyFactory(Factory):
    """Serves one bound address and port; ``router`` is swapped on each table update."""

    noisy = False

    def __init__(
        self,
        router: Router,
        pool: UpstreamPool,
        metrics: Metrics,
        clock,
        scheme: str = "http",
        settings: DataPlaneSettings = DEFAULT_SETTINGS,
        access_log: AccessLog | None = None,
        spans: SpanExport | None = None,
        guards: Guards | None = None,
    ) -> None:
        self.router = router
        #: what the policies of every route share (the worker's; else this factory's)
        self.guards = guards if guards is not None else Guards(clock, metrics)
        self.pool = pool
        self.metrics = metrics
        self.clock = clock
        self.scheme = scheme
        self.settings = settings
        self.access_log = access_log
        self.spans = spans  # the worker's span exporter, if spans are exported
        #: whether backends get the gateway's trace context (else the client's, as sent)
        self.tracing = settings.trace_propagation or spans is not None
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
            protocol.codec.drain()

    def close_idle(self) -> int:
        """Close the keep-alive connections waiting for their next request (not those
        waiting for their first: just accepted, it is likely on its way); how many."""
        return sum(protocol.codec.close_if_idle(False) for protocol in list(self.protocols))

    def abort_all(self) -> None:
        for protocol in list(self.protocols):
            protocol.transport.abortConnection()
