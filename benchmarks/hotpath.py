"""The Python cost of one proxied HTTP/1.1 request, without sockets or a reactor:
client bytes into the server codec, through the exchange and router, out of the
upstream codec, and a canned backend response back to client bytes.

    .venv/bin/python benchmarks/hotpath.py            # µs per request
    .venv/bin/python benchmarks/hotpath.py --profile  # and where they go (cProfile)

What ``benchmarks/run.py`` measures end to end is this plus the system calls and the
event loop; this one isolates the code a change to the HTTP layers touches.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from twisted.internet.task import Clock

from twistgw.dataplane.http.router import Router
from twistgw.dataplane.http.server import HTTPProxyFactory, HTTPServerProtocol
from twistgw.dataplane.http.upstream import UpstreamConnection, UpstreamPool
from twistgw.metrics import Metrics
from twistgw.routing import ir

REQUEST = (
    b"GET /index.html HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 04 Dec 2026 18:28:30 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\n"
    b"Hello, world!"
)


class Transport:
    """Just enough of a TCP transport: writes are counted, not sent."""

    producer = None
    connected = True
    disconnecting = False

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def getPeer(self):
        return type("Peer", (), {"host": "127.0.0.1"})

    def resumeProducing(self) -> None:
        pass

    def pauseProducing(self) -> None:
        pass

    def loseConnection(self) -> None:
        self.connected = False


class Backend(UpstreamConnection):
    """An upstream connection whose backend answers each request when ``answer`` is
    called."""

    asked = False

    def answer(self) -> None:
        if self.asked:
            self.asked = False
            self.dataReceived(RESPONSE)

    def write(self, data: bytes) -> None:
        if data.endswith(b"\r\n\r\n"):
            self.asked = True


class Pool(UpstreamPool):
    """One pooled backend connection, handed to every exchange."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.backend = Backend(self, (ir.Endpoint("127.0.0.1", 9), None))
        self.backend.transport = Transport()
        self.backend.connected = True

    def acquire(self, endpoint, exchange, tls=None, client_certificate=None) -> None:
        self.backend.reused = True
        exchange.upstream_ready(self.backend)

    def give_back(self, connection) -> None:
        pass


def router() -> Router:
    backend = ir.Backend("default/web:80", 1, (ir.Endpoint("127.0.0.1", 9),))
    routes = tuple(
        ir.Route(f"default/r{i}", 0, ir.Match("PathPrefix", f"/p{i}"), backends=(backend,))
        for i in range(9)
    ) + (ir.Route("default/root", 0, ir.Match("PathPrefix", "/"), backends=(backend,)),)
    listener = ir.HTTPListener(
        "default/gw/http", "default/gw", None, (ir.VirtualHost("*", routes),)
    )
    return Router(ir.Bind("127.0.0.1", 8080, "HTTP", (listener,)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    clock = Clock()
    factory = HTTPProxyFactory(router(), Pool(clock), Metrics(), clock)
    protocol = HTTPServerProtocol(factory)
    protocol.transport = client = Transport()
    protocol.connectionMade()

    backend = factory.pool.backend

    def run(count: int) -> None:
        for _ in range(count):
            protocol.dataReceived(REQUEST)
            backend.answer()

    run(1000)
    before = client.written
    run(1)
    assert client.written - before > 100, "no full response"
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(run, args.requests)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    best = float("inf")
    for _ in range(5):  # the best of five: the least disturbed by the machine
        started = time.perf_counter()
        run(args.requests // 5)
        best = min(best, (time.perf_counter() - started) / (args.requests // 5))
    print(f"{best * 1e6:.2f} µs per request (Python, no I/O; best of 5)")


if __name__ == "__main__":
    main()
