"""The Python cost of one proxied HTTP/1.1 request, without sockets or a reactor:
client bytes into the server codec, through the exchange and router, out of the
upstream codec, and a canned backend response back to client bytes.

    .venv/bin/python benchmarks/hotpath.py            # µs per request
    .venv/bin/python benchmarks/hotpath.py --profile  # and where they go (cProfile)
    .venv/bin/python benchmarks/hotpath.py --h2 32    # the client on HTTP/2 (h2c)

``--h2 N``: the client speaks HTTP/2 with prior knowledge on one connection, N
requests (HEADERS frames, HPACK-encoded as h2load would) in each read, then their N
backend answers (HTTP/1.1, one pooled connection each), as under ``h2load -m N``.

What ``benchmarks/run.py`` measures end to end is this plus the system calls and the
event loop; this one isolates the code a change to the HTTP layers touches.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from hpack import Encoder
from hyperframe.frame import HeadersFrame, SettingsFrame, WindowUpdateFrame
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

    def registerProducer(self, producer, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None


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
    """Pooled backend connections, one per exchange in flight (reused once answered)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.free: list[Backend] = []
        self.busy: list[Backend] = []
        self.backend = self._backend()

    def _backend(self) -> Backend:
        backend = Backend(self, (ir.Endpoint("127.0.0.1", 9), None, False))
        backend.transport = Transport()
        backend.connected = True
        return backend

    def acquire(self, endpoint, exchange, tls=None, client_certificate=None, http2=False):
        backend = self.free.pop() if self.free else self._backend()
        backend.reused = True
        self.busy.append(backend)
        exchange.upstream_ready(backend)

    def answer(self) -> None:
        """Every backend asked answers."""
        busy, self.busy = self.busy, []
        for backend in busy:
            backend.answer()
        self.free += busy

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


class H2Client:
    """The client's bytes of an h2c connection: the preface with SETTINGS and windows
    open wide (so the gateway never waits for WINDOW_UPDATE), then batches of GET
    requests on new streams, HPACK-encoded as h2load would (indexed after the first)."""

    FIELDS = [
        (b":method", b"GET"),
        (b":path", b"/index.html"),
        (b":scheme", b"http"),
        (b":authority", b"example.com:8080"),
        (b"accept", b"*/*"),
        (b"accept-encoding", b"gzip, deflate"),
        (b"user-agent", b"h2load nghttp2/1.52.0"),
    ]

    def __init__(self) -> None:
        self.encoder = Encoder()
        self.stream_id = 1
        settings = SettingsFrame(0)
        settings.settings = {SettingsFrame.INITIAL_WINDOW_SIZE: 2**31 - 1}
        window = WindowUpdateFrame(0)
        window.window_increment = 2**31 - 1 - 65535
        self.preface = (
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings.serialize() + window.serialize()
        )

    def batch(self, streams: int) -> bytes:
        frames = []
        for _ in range(streams):
            frame = HeadersFrame(self.stream_id, flags=("END_STREAM", "END_HEADERS"))
            frame.data = self.encoder.encode(self.FIELDS)
            frames.append(frame.serialize())
            self.stream_id += 2
        return b"".join(frames)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--h2", type=int, default=0, metavar="N", help="HTTP/2 (h2c), N streams at a time"
    )
    args = parser.parse_args()
    clock = Clock()
    pool = Pool(clock)
    factory = HTTPProxyFactory(router(), pool, Metrics(), clock)
    protocol = HTTPServerProtocol(factory)
    protocol.transport = client = Transport()
    protocol.connectionMade()

    if args.h2:
        h2 = H2Client()
        protocol.dataReceived(h2.preface)
        streams = args.h2
        # made beforehand: the client's encoding is not the gateway's cost
        batches = [h2.batch(streams) for _ in range((args.requests + 1200) // streams + 10)]
        batches.reverse()

        def run(count: int) -> None:
            for _ in range(count // streams):
                protocol.dataReceived(batches.pop())
                pool.answer()

    else:
        streams = 1

        def run(count: int) -> None:
            for _ in range(count):
                protocol.dataReceived(REQUEST)
                pool.answer()

    run(1000)
    before = client.written
    run(streams)
    assert client.written - before > 20 * streams, "no full response"
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(run, args.requests)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    best = float("inf")
    per_round = args.requests // 5 // streams * streams
    for _ in range(5):  # the best of five: the least disturbed by the machine
        started = time.perf_counter()
        run(per_round)
        best = min(best, (time.perf_counter() - started) / per_round)
    what = f"HTTP/2, {streams} streams at a time" if args.h2 else "HTTP/1.1"
    print(f"{best * 1e6:.2f} µs per request ({what}; Python, no I/O; best of 5)")


if __name__ == "__main__":
    main()
