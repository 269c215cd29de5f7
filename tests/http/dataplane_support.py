"""The real data plane (HTTPProxyFactory, Exchange, UpstreamPool) on a
MemoryReactorClock, for tests of whole exchanges without sockets: a client connection
(HTTP/1.1 bytes, or an HTTP/2 client), the backend connections it dials, answered by
hand (HTTP/1.1 bytes, or an HTTP/2 server), and filter plugins of the test's."""

from __future__ import annotations

import json

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import RequestReceived
from twisted.internet.testing import MemoryReactorClock, StringTransport

from twistgw.dataplane.http.pyfilters import FilterRegistry
from twistgw.dataplane.http.router import Router
from twistgw.dataplane.http.server import HTTPProxyFactory
from twistgw.dataplane.http.upstream import UpstreamPool
from twistgw.metrics import Metrics
from twistgw.routing import ir


class Transport(StringTransport):
    def setTcpNoDelay(self, enabled: bool) -> None:  # noqa: N802
        pass


def python_filter(name: str = "f", **config) -> ir.PythonFilter:
    """A PythonFilter of plugin "p" with ``config``."""
    return ir.PythonFilter(f"default/{name}", "p", json.dumps(config, sort_keys=True))


class DataPlane:
    """One rule (``route``: ir.Route's fields) to one backend (over HTTP/2 if
    ``http2_backend``), with filter plugin ``plugin`` installed as "p", and a client
    connection (``client``, its transport)."""

    def __init__(self, plugin, http2_backend: bool = False, **route) -> None:
        self.clock = MemoryReactorClock()
        self.pool = UpstreamPool(self.clock)
        backend = ir.Backend(
            "default/web:80", 1, (ir.Endpoint("127.0.0.1", 9),), http2=http2_backend
        )
        route.setdefault("backends", (backend,))
        rule = ir.Route("default/r", 0, ir.Match(), **route)
        host = ir.VirtualHost("*", (rule,))
        listener = ir.HTTPListener("default/gw/http", "default/gw", None, (host,))
        self.metrics = Metrics()
        bind = ir.Bind("127.0.0.1", 8080, "HTTP", (listener,))
        self.factory = HTTPProxyFactory(Router(bind), self.pool, self.metrics, self.clock)
        self.factory.guards.filters = FilterRegistry({"p": plugin}, self.metrics)
        self.protocol = self.factory.buildProtocol(None)
        self.client = Transport()
        self.protocol.makeConnection(self.client)

    def connect_backends(self) -> list[tuple]:
        """Connect the backend connections dialled so far: (protocol, transport) each."""
        made = []
        while self.clock.tcpClients:
            protocol = self.clock.tcpClients.pop(0)[2].buildProtocol(None)
            transport = Transport()
            protocol.makeConnection(transport)
            made.append((protocol, transport))
        return made


class H2Client:
    """An HTTP/2 client on the data plane's client connection; ``events`` it got."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self.events: list = []
        self.push()

    def push(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.plane.protocol.dataReceived(data)
        self.pull()

    def pull(self) -> None:
        out = self.plane.client.value()
        self.plane.client.clear()
        if out:
            self.events += self.h2.receive_data(out)
            self.push()

    def request(self, path=b"/x", method=b"GET", headers=(), end=True) -> int:
        stream = self.h2.get_next_available_stream_id()
        pseudo = [(b":method", method), (b":scheme", b"http"), (b":authority", b"a.test")]
        self.h2.send_headers(stream, [*pseudo, (b":path", path), *headers], end_stream=end)
        self.push()
        return stream

    def send_while_open(self, stream: int, data: bytes) -> bytes:
        """Send as much of ``data`` as the flow-control windows allow; what is left."""
        while data:
            size = min(self.h2.local_flow_control_window(stream), self.h2.max_outbound_frame_size)
            if size <= 0:
                break
            self.h2.send_data(stream, data[:size])
            data = data[size:]
            self.push()
        return data

    def of(self, stream: int, kind=None) -> list:
        return [
            e
            for e in self.events
            if getattr(e, "stream_id", None) == stream and (kind is None or isinstance(e, kind))
        ]


class H2Backend:
    """A hyper-h2 server on one of the data plane's backend connections."""

    def __init__(self, protocol, transport) -> None:
        self.protocol, self.transport = protocol, transport
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.h2.initiate_connection()
        self.events: list = []
        self.pull()
        self.push()

    def pull(self) -> None:
        out = self.transport.value()
        self.transport.clear()
        if out:
            self.events += self.h2.receive_data(out)

    def push(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.protocol.dataReceived(data)
        self.pull()

    def streams(self) -> list[int]:
        return [e.stream_id for e in self.events if isinstance(e, RequestReceived)]
