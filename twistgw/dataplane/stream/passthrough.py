"""TLS passthrough: peek at the ClientHello's SNI, choose a TLSRoute, then splice the
connection's bytes to a backend untouched.

Each side is the other's streaming producer, so a slow reader pauses the fast writer;
a half-close on one side is passed on to the other. A connection without SNI, or
whose SNI no route serves, is closed.
"""

from __future__ import annotations

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from twistgw.dataplane.http.router import CompiledBackend, WeightedBackends
from twistgw.dataplane.stream.clienthello import NotTLS, server_name
from twistgw.hostnames import host_matches, specificity
from twistgw.routing.ir import Bind, TLSListener

log = Logger()


class SNIRoutes:
    """A TLS bind compiled: SNI -> listener -> route -> weighted backends."""

    def __init__(self, bind: Bind) -> None:
        self.listeners = [
            (
                listener,
                [(pattern, WeightedBackends(route.backends)) for pattern, route in listener.routes],
            )
            for listener in sorted(bind.listeners, key=lambda li: specificity(li.hostname))
            if isinstance(listener, TLSListener)
        ]

    def backends_for(self, sni: str) -> WeightedBackends | None:
        for listener, routes in self.listeners:
            if host_matches(sni, listener.hostname):
                for pattern, backends in routes:
                    if host_matches(sni, pattern):
                        return backends
                return None  # the most specific listener decides, as for HTTP
        return None


@implementer(IHalfCloseableProtocol)
class _Side(Protocol):
    """One end of a splice; ``peer`` is the other end once both are connected.

    A half-close is passed on to the peer. Twisted leaves closing a half-closeable
    connection to its protocol, so once both halves are shut this side closes itself.
    """

    peer: _Side | None = None
    read_closed = False
    write_closed = False

    def dataReceived(self, data: bytes) -> None:
        self.peer.transport.write(data)

    def readConnectionLost(self) -> None:
        self.read_closed = True
        if self.peer is not None and self.peer.transport is not None:
            # no more data from this side: it stops being the peer's producer (a
            # registered, paused producer would hold back the peer's half-close)
            _release(self.peer.transport)
            self.peer.transport.loseWriteConnection()
            self._close_when_done()
        else:
            self.transport.loseConnection()  # nothing to pass it on to

    def writeConnectionLost(self) -> None:
        self.write_closed = True
        self._close_when_done()

    def _close_when_done(self) -> None:
        if self.read_closed and self.write_closed:
            _release(self.transport)
            self.transport.loseConnection()

    def connectionLost(self, reason=None) -> None:
        peer, self.peer = self.peer, None
        if peer is not None:
            peer.peer = None
            if peer.transport is not None:
                _release(peer.transport)
                peer.transport.loseConnection()


def _release(transport) -> None:
    """Unregister the transport's producer, if any (the splice's other side)."""
    if transport.producer is not None:
        transport.unregisterProducer()


def splice(one: _Side, other: _Side) -> None:
    one.peer, other.peer = other, one
    one.transport.registerProducer(other.transport, True)
    other.transport.registerProducer(one.transport, True)


class _Upstream(_Side):
    def __init__(self, client: PassthroughClient) -> None:
        self.client = client

    def connectionMade(self) -> None:
        client = self.client
        if client.transport is None or client.gone:
            self.transport.loseConnection()
            return
        self.transport.write(client.buffered)
        client.buffered = b""
        splice(client, self)
        client.transport.resumeProducing()


class _UpstreamFactory(ClientFactory):
    noisy = False

    def __init__(self, client: PassthroughClient) -> None:
        self.client = client

    def buildProtocol(self, addr) -> _Upstream:
        return _Upstream(self.client)

    def clientConnectionFailed(self, connector, reason) -> None:
        log.info("TLS passthrough backend unreachable: {error}", error=reason.getErrorMessage())
        if self.client.transport is not None:
            self.client.transport.loseConnection()


class PassthroughClient(_Side):
    """The client's connection: buffered until its ClientHello names a host."""

    def __init__(self, factory: PassthroughFactory) -> None:
        self.factory = factory
        self.buffered = b""
        self.choosing = True
        self.gone = False

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.factory.open.add(self)

    def dataReceived(self, data: bytes) -> None:
        if not self.choosing:
            if self.peer is not None:
                self.peer.transport.write(data)
            else:
                self.buffered += data  # connecting: the backend gets it all on connect
            return
        self.buffered += data
        try:
            complete, sni = server_name(self.buffered)
        except NotTLS:
            self.transport.abortConnection()
            return
        if not complete:
            return
        self.choosing = False
        backend = self._backend(sni)
        endpoint = backend.endpoint() if backend is not None and not backend.invalid else None
        if endpoint is None:
            self.transport.abortConnection()
            return
        self.transport.pauseProducing()
        self.factory.reactor.connectTCP(
            endpoint.address, endpoint.port, _UpstreamFactory(self), timeout=5
        )

    def _backend(self, sni: str | None) -> CompiledBackend | None:
        if not sni:
            return None
        backends = self.factory.routes.backends_for(sni)
        return backends.pick() if backends is not None else None

    def connectionLost(self, reason=None) -> None:
        self.gone = True
        self.factory.open.discard(self)
        super().connectionLost(reason)


class PassthroughFactory(Factory):
    noisy = False

    def __init__(self, bind: Bind, reactor, open_connections: set) -> None:
        self.reactor = reactor
        self.routes = SNIRoutes(bind)
        self.open = open_connections  # shared with the bind's server, for the drain

    def buildProtocol(self, addr) -> PassthroughClient:
        return PassthroughClient(self)
