"""TCP listeners: each accepted connection is spliced to a backend of the listener's
TCPRoute, chosen by weight. With no route, or an invalid backend drawn, the connection
is closed at once (an invalid backend refuses its weight's share, as the spec asks)."""

from __future__ import annotations

from twisted.internet.protocol import Factory

from twistgw.dataplane.backend_tls import BackendTLSCreators
from twistgw.dataplane.http.router import WeightedBackends
from twistgw.dataplane.stream.splice import StreamClient
from twistgw.metrics import Metrics
from twistgw.routing.ir import Bind, StreamListener


class TCPClient(StreamClient):
    def __init__(self, factory: TCPFrontFactory) -> None:
        super().__init__(factory.reactor, factory.metrics, factory.open)
        self.factory = factory

    def connectionMade(self) -> None:
        super().connectionMade()
        factory = self.factory
        if factory.backends is None:
            self.transport.abortConnection()
            return
        self.transport.pauseProducing()  # nothing to read until the backend answers
        self.connect(
            factory.backends.pick(),
            (factory.listener.name, factory.listener.route.route),
            factory.creators,
            factory.listener.client_certificate,
        )


class TCPFrontFactory(Factory):
    noisy = False

    def __init__(
        self,
        bind: Bind,
        reactor,
        metrics: Metrics,
        creators: BackendTLSCreators,
        open_connections: set,
    ) -> None:
        listener = next((li for li in bind.listeners if isinstance(li, StreamListener)), None)
        self.listener = listener
        route = listener.route if listener is not None else None
        self.backends = WeightedBackends(route.backends) if route is not None else None
        self.reactor = reactor
        self.metrics = metrics
        self.creators = creators
        self.open = open_connections

    def buildProtocol(self, addr) -> TCPClient:
        return TCPClient(self)
