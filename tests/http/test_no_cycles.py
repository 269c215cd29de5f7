"""A closed connection's objects are freed by reference counting alone: with the cyclic
garbage collector off, nothing of a finished connection (protocol, codecs, exchange,
backend connection) survives. Twisted's transports are stand-ins that record bytes;
everything above them is the real data plane."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from twistgw.dataplane.http.router import Router
from twistgw.dataplane.http.server import HTTPProxyFactory
from twistgw.dataplane.http.upstream import UpstreamPool
from twistgw.metrics import Metrics
from twistgw.routing import ir

GONE = Failure(ConnectionDone())


class Transport(StringTransport):
    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def lost(self) -> None:
        """What Twisted's transports do when the connection is lost."""
        if self.producer is not None:
            self.producer.stopProducing()
            self.producer = None


def _router() -> Router:
    backend = ir.Backend("default/web:80", 1, (ir.Endpoint("127.0.0.1", 9),))
    route = ir.Route("default/root", 0, ir.Match("PathPrefix", "/app"), backends=(backend,))
    listener = ir.HTTPListener(
        "default/gw/http", "default/gw", None, (ir.VirtualHost("*", (route,)),)
    )
    return Router(ir.Bind("127.0.0.1", 8080, "HTTP", (listener,)))


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _connection(clock: MemoryReactorClock, factory: HTTPProxyFactory, requests: bytes):
    """A client connection that sent ``requests``; the backend connection it opened,
    if any, answers each request it got, then both close."""
    protocol = factory.buildProtocol(None)
    client = Transport()
    protocol.makeConnection(client)
    protocol.dataReceived(requests)
    tracked = [protocol, protocol.codec]
    if clock.tcpClients:
        upstream = clock.tcpClients.pop()[2].buildProtocol(None)
        upstream.makeConnection(Transport())
        tracked += [upstream, upstream.codec]
        while (exchange := upstream.exchange) is not None:
            tracked.append(exchange)
            upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            if upstream.exchange is exchange:
                break
        upstream.transport.lost()
        upstream.connectionLost(GONE)
    client.lost()
    protocol.connectionLost(GONE)
    return client.value(), [weakref.ref(thing) for thing in tracked]


@pytest.mark.parametrize(
    "requests",
    [
        b"GET /app HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /app/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /app/2 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /app HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        b"GET /nothing HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /app HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\npartial",
        b"GET /app HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ],
    ids=["proxied", "pipelined", "chunked-body", "local-404", "client-gone", "refused"],
)
def test_a_closed_connection_leaves_nothing_for_the_collector(no_collector, requests) -> None:
    clock = MemoryReactorClock()
    factory = HTTPProxyFactory(_router(), UpstreamPool(clock), Metrics(), clock)
    answered, tracked = _connection(clock, factory, requests)
    assert answered.startswith(b"HTTP/1.1 ") or requests.endswith(b"partial")
    survivors = [type(thing()).__name__ for thing in tracked if thing() is not None]
    assert survivors == []


def _h2_requests(*paths: bytes, end: bool = True) -> bytes:
    """A client's preface, SETTINGS and a GET per path (one stream each)."""
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    for path in paths:
        fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a")]
        client.send_headers(client.get_next_available_stream_id(), [*fields, (b":path", path)], end)
    return client.data_to_send()


@pytest.mark.parametrize(
    ("requests", "answered"),
    [
        (_h2_requests(b"/app"), True),
        (_h2_requests(b"/app/1", b"/app/2"), True),
        (_h2_requests(b"/nothing"), False),
        (_h2_requests(b"/app", end=False), False),
    ],
    ids=["proxied", "two-streams", "local-404", "client-gone"],
)
def test_a_closed_http2_connection_leaves_nothing_for_the_collector(
    no_collector, requests, answered
) -> None:
    clock = MemoryReactorClock()
    factory = HTTPProxyFactory(_router(), UpstreamPool(clock), Metrics(), clock)
    protocol = factory.buildProtocol(None)
    client = Transport()
    protocol.makeConnection(client)
    protocol.dataReceived(requests)
    codec = protocol.codec
    tracked = [protocol, codec, codec.session, *codec.session.streams.values()]
    tracked += [stream.exchange for stream in codec.session.streams.values() if stream.exchange]
    upstream = None
    while clock.tcpClients:
        upstream = clock.tcpClients.pop()[2].buildProtocol(None)
        upstream.makeConnection(Transport())
        tracked += [upstream, upstream.codec]
        if answered and upstream.exchange is not None:
            upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        upstream.transport.lost()
        upstream.connectionLost(GONE)
    client.lost()
    protocol.connectionLost(GONE)
    refs = [weakref.ref(thing) for thing in tracked]
    del codec, protocol, upstream, tracked
    assert [type(ref()).__name__ for ref in refs if ref() is not None] == []
