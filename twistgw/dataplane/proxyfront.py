"""Listening ports behind a load balancer that sends the PROXY protocol
(``--proxy-protocol``): each connection's header is read first, then the connection is
handed to what the port serves (HTTP, HTTPS, a TLS port's SNI front, TCP), with the
bytes that followed the header and with its peer address replaced by the header's
source, so access logs, X-Forwarded-For and policies see the real client.

One layer in front of the port's entry factory, which knows nothing of it: the
connection's protocol is swapped once the header is read (as ``stream/tlsfront.py``
swaps in TLS) and its transport's ``getPeer`` answers the header's source from then on
(a TLS layer above asks the transport beneath). A connection that does not start with
a valid header, or has not sent all of it within the deadline, is closed without an
answer; it held a descriptor and at most a header's bytes (``proxyprotocol.py``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Factory, Protocol

from twistgw.dataplane.proxyprotocol import HeaderError, HeaderReader, Parsed
from twistgw.metrics import Metrics


def peer_address(source: tuple[str, int]) -> IPv4Address | IPv6Address:
    """The Twisted address of a header's source."""
    host, port = source
    if ipaddress.ip_address(host).version == 4:
        return IPv4Address("TCP", host, port)
    return IPv6Address("TCP", host, port)


class ProxyHeaderFront(Protocol):
    """A new connection until its PROXY header is read."""

    timer = None

    def __init__(self, factory: ProxyHeaderFactory) -> None:
        self.factory = factory
        self.reader = HeaderReader()

    def connectionMade(self) -> None:
        self.factory.waiting.add(self)
        self.timer = self.factory.clock.callLater(self.factory.timeout, self._expired)

    def dataReceived(self, data: bytes) -> None:
        try:
            parsed = self.reader.feed(data)
        except HeaderError as error:
            self._refuse(error.reason)
            return
        if parsed is not None:
            self._hand_over(parsed)

    def connectionLost(self, reason=None) -> None:
        if self in self.factory.waiting:  # (the client left before its header ended)
            self._done()
            self.factory.refused("incomplete")

    def _expired(self) -> None:
        self.timer = None
        self._refuse("timeout")

    def _refuse(self, reason: str) -> None:
        self._done()
        self.factory.refused(reason)
        self.transport.abortConnection()

    def _done(self) -> None:
        self.factory.waiting.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _hand_over(self, parsed: Parsed) -> None:
        """The connection is the entry protocol's from now on."""
        self._done()
        transport = self.transport
        source = parsed.header.source
        if source is not None:
            peer = peer_address(source)
            transport.getPeer = lambda: peer
        protocol = self.factory.entry().buildProtocol(transport.getPeer())
        if protocol is None:
            transport.abortConnection()
            return
        transport.protocol = protocol
        protocol.makeConnection(transport)
        if parsed.rest:
            protocol.dataReceived(parsed.rest)


class ProxyHeaderFactory(Factory):
    """Reads the PROXY header of a port's connections, then hands each to ``entry()``
    (the port's entry factory at that moment). ``waiting`` is the set of connections
    still in their header, which the port counts among its open connections."""

    noisy = False

    def __init__(
        self,
        entry: Callable[[], Factory],
        clock,
        timeout: float,
        metrics: Metrics,
        label: str,
        waiting: set,
    ) -> None:
        self.entry = entry
        self.clock = clock
        self.timeout = timeout
        self.metrics = metrics
        self.label = label
        self.waiting = waiting

    def buildProtocol(self, addr) -> ProxyHeaderFront:
        return ProxyHeaderFront(self)

    def refused(self, reason: str) -> None:
        self.metrics.proxy_protocol_refused.labels(self.label, reason).inc()
