"""A worker's data plane: serves the routing table on the listening sockets it is handed."""

from __future__ import annotations

import os
import socket

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from twistgw.dataplane.http.router import Router
from twistgw.dataplane.http.server import HTTPProxyFactory
from twistgw.dataplane.http.upstream import UpstreamPool
from twistgw.dataplane.stream.tlsfront import TLSFrontFactory
from twistgw.dataplane.tls import SNIContexts
from twistgw.metrics import Metrics
from twistgw.routing.ir import Bind, HTTPListener, RoutingTable

log = Logger()

Key = tuple[str, int]
#: Seconds between samples of the open-connections gauge.
GAUGE_INTERVAL = 1.0


class BindServer(Factory):
    """What one listening socket serves: HTTP, HTTP inside TLS for HTTPS binds, or for
    TLS binds whatever listener the ClientHello's SNI names (passthrough, terminated
    stream or HTTPS).
    ``configure`` follows each new table, even a switch of protocol on the socket."""

    noisy = False

    def __init__(self, http: HTTPProxyFactory, bind: Bind, min_tls_version: str) -> None:
        self.http = http
        self.label = http.label
        self.min_tls_version = min_tls_version
        self.contexts: SNIContexts | None = None
        self.entry: Factory = http
        self.streams: set = set()  # open spliced connections, whatever table made them
        self.configure(bind)

    @property
    def open_connections(self) -> int:
        return self.http.open_connections + len(self.streams)

    def drain(self) -> None:
        """HTTP connections close once idle; spliced streams end when their peers end
        them (the drain timeout aborts what is left)."""
        self.http.drain()

    def abort_all(self) -> None:
        self.http.abort_all()
        for stream in list(self.streams):
            stream.transport.abortConnection()

    def configure(self, bind: Bind) -> None:
        if bind.protocol == "TLS":
            https = tuple(li for li in bind.listeners if isinstance(li, HTTPListener))
            self.http.router = Router(Bind(bind.address, bind.port, "HTTPS", https))
            self.http.scheme = "https"
            self.contexts = None
            self.entry = TLSFrontFactory(
                bind,
                SNIContexts(bind, self.min_tls_version),
                self.http,
                self.http.clock,
                self.http.metrics,
                self.http.pool.tls_creators,
                self.streams,
            )
            return
        self.http.router = Router(bind)
        if bind.protocol == "HTTPS":
            self.http.scheme = "https"
            if self.contexts is None:
                self.contexts = SNIContexts(bind, self.min_tls_version)
                self.entry = TLSMemoryBIOFactory(self.contexts, False, self.http)
            else:
                self.contexts.update(bind)
        else:
            self.http.scheme = "http"
            self.contexts = None
            self.entry = self.http

    def buildProtocol(self, addr):
        return self.entry.buildProtocol(addr)


class DataPlane:
    """Listening sockets adopted from the supervisor, each with a factory whose router
    follows the routing table. Applying a table swaps each factory's router in one
    assignment; requests in flight keep the router they started with."""

    def __init__(self, reactor, metrics: Metrics, min_tls_version: str = "1.2") -> None:
        self.reactor = reactor
        self.metrics = metrics
        self.min_tls_version = min_tls_version
        self.pool = UpstreamPool(reactor)
        self.binds: dict[Key, Bind] = {}
        self.servers: dict[Key, BindServer] = {}
        self.ports: dict[Key, IListeningPort] = {}
        self.retired: list[BindServer] = []  # closed sockets, connections still open
        self.draining = False
        # the connections gauge is sampled, not updated per connection (each update of a
        # multiprocess metric is a locked write to a shared file)
        self._sampler = LoopingCall(self.sample_connections)
        self._sampler.clock = reactor
        self._sampler.start(GAUGE_INTERVAL, now=False)

    def _bind(self, key: Key) -> Bind:
        return self.binds.get(key) or Bind(key[0], key[1], "HTTP")

    def apply(self, table: RoutingTable) -> None:
        self.binds = {(bind.address, bind.port): bind for bind in table.binds}
        for key, server in self.servers.items():
            server.configure(self._bind(key))

    def adopt(self, key: Key, descriptor: int, family: socket.AddressFamily) -> None:
        """Accept connections from a listening socket the supervisor bound."""
        try:
            if key in self.ports or self.draining:
                return
            bind = self._bind(key)
            factory = HTTPProxyFactory(
                Router(Bind(key[0], key[1], "HTTP")), self.pool, self.metrics, self.reactor
            )
            server = BindServer(factory, bind, self.min_tls_version)
            self.ports[key] = self.reactor.adoptStreamPort(descriptor, family, server)
            self.servers[key] = server
        finally:
            os.close(descriptor)  # the reactor holds its own duplicate

    def close(self, key: Key) -> None:
        """Stop accepting on a socket; its open connections finish on their own."""
        server = self.servers.pop(key, None)
        if server is not None:
            self.retired.append(server)
        port = self.ports.pop(key, None)
        if port is not None:
            port.stopListening()

    def sample_connections(self) -> None:
        counts: dict[str, int] = {}
        for server in [*self.servers.values(), *self.retired]:
            counts[server.label] = counts.get(server.label, 0) + server.open_connections
        for label, count in counts.items():
            self.metrics.connection_gauge(label).set(count)
        self.retired = [server for server in self.retired if server.open_connections]

    def open_connections(self) -> int:
        self.retired = [server for server in self.retired if server.open_connections]
        return sum(server.open_connections for server in [*self.servers.values(), *self.retired])

    def drain(self, timeout: float) -> defer.Deferred:
        """Stop accepting, close idle keep-alive connections, let requests in flight
        finish; fires when none is left or ``timeout`` seconds have passed."""
        if not self.draining:
            self.draining = True
            for key in list(self.servers):
                self.close(key)
            for server in self.retired:
                server.drain()
        deadline = self.reactor.seconds() + timeout

        def wait(_=None):
            left = self.open_connections()
            if left == 0 or self.reactor.seconds() >= deadline:
                if left:
                    log.warn("drain timeout: closing {count} connections", count=left)
                    for server in self.retired:
                        server.abort_all()
                self.pool.close_idle()
                return None
            return deferLater(self.reactor, 0.05, wait)

        return defer.maybeDeferred(wait)
