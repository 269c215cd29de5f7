"""TLS ports: read the ClientHello's SNI, then serve the listener it names.

A TLS port's listeners are TLS listeners in Passthrough mode (the chosen TLSRoute's
backend gets the bytes untouched), TLS listeners in Terminate mode (the gateway ends
TLS and splices the plaintext to the backend) and HTTPS listeners (TLS ended, then
HTTP). The most specific listener hostname covering the SNI wins; without SNI only a
listener without hostname can serve. A connection nobody serves is closed.
"""

from __future__ import annotations

from twisted.internet.protocol import Factory, Protocol

from twistgw.dataplane.backend_tls import BackendTLSCreators
from twistgw.dataplane.http.router import WeightedBackends
from twistgw.dataplane.http.server import HTTPProxyFactory
from twistgw.dataplane.stream.clienthello import NotTLS, server_name
from twistgw.dataplane.stream.splice import StreamClient
from twistgw.dataplane.tls import SNIContexts
from twistgw.dataplane.tlswrite import BatchedTLSFactory
from twistgw.hostnames import host_matches, specificity
from twistgw.metrics import Metrics
from twistgw.routing.ir import Bind, HTTPListener, TLSListener


class CompiledTLSListener:
    """A TLS listener's routes: SNI hostname pattern -> (route name, weighted backends)."""

    def __init__(self, spec: TLSListener) -> None:
        self.spec = spec
        self.routes = [
            (pattern, route.route, WeightedBackends(route.backends))
            for pattern, route in spec.routes
        ]

    def route_for(self, sni: str | None) -> tuple[str, WeightedBackends] | None:
        """The route for a server name (None without one: TLSRoutes match by SNI)."""
        if sni is None:
            return None
        for pattern, name, backends in self.routes:
            if host_matches(sni, pattern):
                return name, backends
        return None


class TLSFront:
    """A TLS bind compiled: its listeners, most specific hostname first, and a TLS
    layer factory for each terminating one."""

    def __init__(self, bind: Bind, contexts: SNIContexts) -> None:
        self.terminators = {
            name: BatchedTLSFactory(context, False, None)
            for name, context in contexts.by_name.items()
        }
        self.listeners = [
            (li.hostname, CompiledTLSListener(li) if isinstance(li, TLSListener) else li)
            for li in sorted(bind.listeners, key=lambda li: specificity(li.hostname))
        ]

    def listener_for(self, sni: str | None) -> CompiledTLSListener | HTTPListener | None:
        for hostname, listener in self.listeners:
            if hostname is None or (sni is not None and host_matches(sni, hostname)):
                return listener
        return None


def start_tls(transport, hello: bytes, factory: BatchedTLSFactory, application: Protocol) -> None:
    """End TLS on ``transport`` for ``application``, feeding it the ClientHello bytes
    already read: the TLS layer takes the connection's place as its protocol."""
    tls = factory.protocol(factory, application)  # (a turn's writes gathered: tlswrite.py)
    transport.protocol = tls
    tls.makeConnection(transport)
    tls.dataReceived(hello)


class TLSFrontConnection(StreamClient):
    """A new connection on a TLS port: its bytes are held until the ClientHello is
    complete, then it is passed through, terminated or handed to HTTP."""

    def __init__(self, factory: TLSFrontFactory) -> None:
        super().__init__(factory.reactor, factory.metrics, factory.open)
        self.factory = factory
        self.choosing = True

    def dataReceived(self, data: bytes) -> None:
        if not self.choosing:
            super().dataReceived(data)
            return
        self.received += len(data)
        self.buffered += data
        try:
            complete, sni = server_name(self.buffered)
        except NotTLS:
            self.transport.abortConnection()
            return
        if complete:
            self.choosing = False
            self._dispatch(sni)

    def _dispatch(self, sni: str | None) -> None:
        front = self.factory.front
        listener = front.listener_for(sni)
        if isinstance(listener, HTTPListener):
            self._hand_over(
                listener.name, self.factory.http.buildProtocol(self.transport.getPeer())
            )
            return
        chosen = listener.route_for(sni) if listener is not None else None
        if chosen is None:
            self.transport.abortConnection()
            return
        route, backends = chosen
        labels = (listener.spec.name, route)
        creators, client_certificate = self.factory.creators, listener.spec.client_certificate
        if listener.spec.tls is None:  # passthrough: this connection is the client side
            self.transport.pauseProducing()
            self.connect(backends.pick(), labels, creators, client_certificate)
            return
        plain = StreamClient(self.reactor, self.metrics, self.open)
        plain.half_closeable = False  # TLS has no half-close
        self._hand_over(listener.spec.name, plain)
        if plain.transport is not None and not plain.gone:
            plain.connect(backends.pick(), labels, creators, client_certificate)

    def _hand_over(self, listener: str, application: Protocol) -> None:
        hello, self.buffered = self.buffered, b""
        self.open.discard(self)  # counted from now on by the application protocol
        start_tls(self.transport, hello, self.factory.front.terminators[listener], application)


class TLSFrontFactory(Factory):
    noisy = False

    def __init__(
        self,
        bind: Bind,
        contexts: SNIContexts,
        http: HTTPProxyFactory,
        reactor,
        metrics: Metrics,
        creators: BackendTLSCreators,
        open_connections: set,
    ) -> None:
        self.front = TLSFront(bind, contexts)
        self.http = http
        self.reactor = reactor
        self.metrics = metrics
        self.creators = creators
        self.open = open_connections  # shared with the bind's server, for the drain

    def buildProtocol(self, addr) -> TLSFrontConnection:
        return TLSFrontConnection(self)
