"""Splicing a client connection to a backend: bytes flow both ways untouched.

Each side is the other's streaming producer, so a slow reader pauses the fast writer;
a half-close on one side is passed on to the other (where that side's transport can
half-close: a TLS-terminated client cannot, so it is closed instead). Bytes are
counted per connection and reported to the metrics when it ends; the time bytes last
moved is kept for the idle timeout (the data plane's sweep closes stalled pairs).
"""

from __future__ import annotations

from time import monotonic

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from twistgw.dataplane.backend_tls import BackendTLSCreators
from twistgw.dataplane.fastwrite import writer_for
from twistgw.dataplane.http.router import CompiledBackend
from twistgw.metrics import Metrics
from twistgw.routing.ir import CertificateKey

log = Logger()
#: Client bytes held while the backend connection is being made before reading pauses.
MAX_BUFFERED = 256 * 1024


@implementer(IHalfCloseableProtocol)
class Side(Protocol):
    """One end of a splice; ``peer`` is the other end once both are connected.

    Twisted leaves closing a half-closeable connection to its protocol, so once both
    halves are shut this side closes itself.
    """

    peer: Side | None = None
    read_closed = False
    write_closed = False
    half_closeable = True  # whether this side's transport can shut only its writing half
    received = 0
    active = 0.0  # monotonic time of the last bytes received

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.active = monotonic()
        self.write_peer(data)

    def readConnectionLost(self) -> None:
        self.read_closed = True
        peer = self.peer
        if peer is not None and peer.transport is not None:
            # no more data from this side: it stops being the peer's producer (a
            # registered, paused producer would hold back the peer's half-close)
            _release(peer.transport)
            if peer.half_closeable:
                peer.transport.loseWriteConnection()
            else:
                peer.transport.loseConnection()
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
    if getattr(transport, "producer", None) is not None:
        transport.unregisterProducer()


def splice(one: Side, other: Side) -> None:
    one.peer, other.peer = other, one
    one.write_peer, other.write_peer = writer_for(other.transport), writer_for(one.transport)
    one.transport.registerProducer(other.transport, True)
    other.transport.registerProducer(one.transport, True)


class StreamClient(Side):
    """The client's end: what it sends before the backend is connected is buffered.

    ``open`` is the set of open client connections its server counts for the drain;
    ``labels`` (listener, route, backend) name it in the metrics.
    """

    def __init__(self, reactor, metrics: Metrics, open_connections: set) -> None:
        self.reactor = reactor
        self.metrics = metrics
        self.open = open_connections
        self.buffered = b""
        self.gone = False
        self.labels: tuple[str, str, str] | None = None
        self.upstream: Upstream | None = None

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.active = monotonic()
        self.open.add(self)

    def idle_since(self) -> float:
        """When bytes last moved either way."""
        upstream = self.upstream
        return max(self.active, upstream.active) if upstream is not None else self.active

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.active = monotonic()
        if self.peer is not None:
            self.write_peer(data)
            return
        self.buffered += data  # connecting: the backend gets it all on connect
        if len(self.buffered) > MAX_BUFFERED:
            self.transport.pauseProducing()

    def connect(
        self,
        backend: CompiledBackend | None,
        labels: tuple[str, str],
        creators: BackendTLSCreators,
        client_certificate: CertificateKey | None = None,
    ) -> bool:
        """Connect to one of the backend's endpoints (over TLS when its policy says
        so); False, and the client closed, when there is none to connect to."""
        endpoint = backend.endpoint() if backend is not None and not backend.invalid else None
        if endpoint is None:
            self.transport.abortConnection()
            return False
        self.labels = (*labels, backend.name)
        self.metrics.stream_opened(*self.labels)
        factory = UpstreamFactory(self)
        tls = backend.spec.tls
        if tls is None:
            self.reactor.connectTCP(endpoint.address, endpoint.port, factory, timeout=5)
        else:
            creator = creators.get(tls, client_certificate)
            self.reactor.connectSSL(endpoint.address, endpoint.port, factory, creator, timeout=5)
        return True

    def upstream_connected(self, upstream: Upstream) -> None:
        self.upstream = upstream
        splice(self, upstream)
        if self.buffered:  # (through the writer: the splice's writes follow it in order)
            self.write_peer(self.buffered)
            self.buffered = b""
        self.transport.resumeProducing()

    def connectionLost(self, reason=None) -> None:
        self.gone = True
        self.open.discard(self)
        if self.labels is not None:
            sent = self.upstream.received if self.upstream is not None else 0
            self.metrics.stream_closed(*self.labels, self.received, sent)
        super().connectionLost(reason)


class Upstream(Side):
    def __init__(self, client: StreamClient) -> None:
        self.client = client

    def connectionMade(self) -> None:
        if self.client.transport is None or self.client.gone:
            self.transport.loseConnection()
            return
        self.client.upstream_connected(self)


class UpstreamFactory(ClientFactory):
    noisy = False

    def __init__(self, client: StreamClient) -> None:
        self.client = client

    def buildProtocol(self, addr) -> Upstream:
        return Upstream(self.client)

    def clientConnectionFailed(self, connector, reason) -> None:
        log.info("stream backend unreachable: {error}", error=reason.getErrorMessage())
        if self.client.transport is not None:
            self.client.transport.loseConnection()
