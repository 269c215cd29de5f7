"""Timeouts and retries in the exchange without sockets: an HTTP/1.1 client connection
on a fake transport, backends that answer when told, and ``task.Clock`` for every
timer (backendRequest, request, backoff)."""

from __future__ import annotations

from twisted.internet.task import Clock

from twistgw.dataplane.http.router import Router
from twistgw.dataplane.http.server import HTTPProxyFactory, HTTPServerProtocol
from twistgw.dataplane.http.upstream import UpstreamConnection, UpstreamPool
from twistgw.metrics import Metrics
from twistgw.routing import ir

REQUEST = b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n"


def response(status: int, body: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)


class Transport:
    """A transport that keeps what is written, whether it was aborted and whether its
    reading is paused."""

    producer = None
    disconnecting = False
    paused = False

    def __init__(self) -> None:
        self.data = b""
        self.connected = True
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.data += data

    def writeSequence(self, pieces) -> None:  # noqa: N802
        self.data += b"".join(pieces)

    def setTcpNoDelay(self, enabled: bool) -> None:  # noqa: N802
        pass

    def getPeer(self):  # noqa: N802
        return type("Peer", (), {"host": "127.0.0.1"})

    def getHost(self):  # noqa: N802
        return type("Host", (), {"port": 8080})

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False

    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def loseConnection(self) -> None:  # noqa: N802
        self.connected = False

    def abortConnection(self) -> None:  # noqa: N802
        self.connected = False
        self.aborted = True

    def registerProducer(self, producer, streaming: bool) -> None:  # noqa: N802
        self.producer = producer

    def unregisterProducer(self) -> None:  # noqa: N802
        self.producer = None


class Pool(UpstreamPool):
    """Hands every exchange a new backend connection at once; ``backends`` in order."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.backends: list[UpstreamConnection] = []

    def acquire(self, endpoint, exchange, tls=None, client_certificate=None, http2=False):
        backend = UpstreamConnection(self, (endpoint, None, False))
        backend.transport = transport = Transport()
        backend.connected = True
        backend.write = transport.write
        self.backends.append(backend)
        exchange.upstream_ready(backend)

    def give_back(self, connection) -> None:
        pass


def _gateway(
    backend_filters: ir.Filters | None = None, **policy
) -> tuple[Clock, Pool, Transport, HTTPServerProtocol]:
    """A client connection to a one-rule gateway: the rule has ``policy`` (ir.Route's
    fields), its one backend (unless ``policy`` names them) ``backend_filters``."""
    clock = Clock()
    pool = Pool(clock)
    backend = ir.Backend(
        "default/web:80", 1, (ir.Endpoint("127.0.0.1", 9),), filters=backend_filters or ir.Filters()
    )
    policy.setdefault("backends", (backend,))
    route = ir.Route("default/r", 0, ir.Match(), **policy)
    listener = ir.HTTPListener(
        "default/gw/http", "default/gw", None, (ir.VirtualHost("*", (route,)),)
    )
    factory = HTTPProxyFactory(
        Router(ir.Bind("127.0.0.1", 8080, "HTTP", (listener,))), pool, Metrics(), clock
    )
    protocol = HTTPServerProtocol(factory)
    protocol.transport = client = Transport()
    protocol.connectionMade()
    return clock, pool, client, protocol


def test_backend_request_timeout_closes_the_backend_and_answers_504() -> None:
    clock, pool, client, protocol = _gateway(timeouts=ir.Timeouts(backend_request=0.5))
    protocol.dataReceived(REQUEST)
    assert len(pool.backends) == 1 and b"GET /x" in pool.backends[0].transport.data
    clock.advance(0.49)
    assert client.data == b""
    clock.advance(0.01)
    assert client.data.startswith(b"HTTP/1.1 504 ")
    assert pool.backends[0].transport.aborted


def test_a_listed_code_is_retried_after_the_backoff_on_a_new_connection() -> None:
    retry = ir.Retry(attempts=2, codes=(503,), backoff=0.1)
    clock, pool, client, protocol = _gateway(retry=retry)
    protocol.dataReceived(REQUEST)
    pool.backends[0].dataReceived(response(503))
    assert client.data == b"" and pool.backends[0].transport.aborted
    clock.advance(0.09)
    assert len(pool.backends) == 1  # the backoff has not passed yet
    clock.advance(0.011)
    assert len(pool.backends) == 2
    pool.backends[1].dataReceived(response(503))
    clock.advance(0.19)
    assert len(pool.backends) == 2
    clock.advance(0.011)  # doubled: 0.2 s
    assert len(pool.backends) == 3
    pool.backends[2].dataReceived(response(200, b"ok"))
    assert client.data.startswith(b"HTTP/1.1 200 ") and client.data.endswith(b"ok")


def test_spent_retries_answer_the_last_response() -> None:
    clock, pool, client, protocol = _gateway(retry=ir.Retry(attempts=1, codes=(503,)))
    protocol.dataReceived(REQUEST)
    pool.backends[0].dataReceived(response(503))
    clock.advance(0.025)
    pool.backends[1].dataReceived(response(503, b"busy"))
    assert client.data.startswith(b"HTTP/1.1 503 ") and client.data.endswith(b"busy")


def test_the_request_timeout_ends_the_backoff() -> None:
    retry = ir.Retry(attempts=5, codes=(503,), backoff=0.3)
    clock, pool, client, protocol = _gateway(retry=retry, timeouts=ir.Timeouts(request=0.5))
    protocol.dataReceived(REQUEST)
    pool.backends[0].dataReceived(response(503))
    clock.advance(0.3)
    pool.backends[1].dataReceived(response(503))  # the next retry would be at 0.9 s
    clock.advance(0.2)
    assert client.data.startswith(b"HTTP/1.1 504 ")
    clock.advance(1)
    assert len(pool.backends) == 2
