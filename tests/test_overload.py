"""Overload protection through real gateway processes (one worker each): connection
limits close new connections at once while the open ones are served, backend limits
queue requests for a busy endpoint or answer them 503 with Retry-After, and a worker
past its memory limit stops accepting and closes idle connections."""

from __future__ import annotations

import http.client
import re
import select
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from tests.support.gateway import GatewayProcess, wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service
from tests.support.rawbackend import Conn, RawBackend


def _counter(gateway: GatewayProcess, name: str, **labels: str) -> float:
    """A counter's value summed over the series carrying ``labels``."""
    text = gateway.admin("/metrics")[1].decode()
    total = 0.0
    for found, value in re.findall(rf"^{name}{{([^}}]*)}} (\S+)$", text, re.M):
        if all(f'{key}="{want}"' in found for key, want in labels.items()):
            total += float(value)
    return total


def _serve(gateway: GatewayProcess, server: RawBackend) -> None:
    documents = [gateway_class(), gateway_manifest(), *service("app", [server.address])]
    documents.append(http_route("app", [{"backendRefs": [backend("app")]}]))
    gateway.write("app.yaml", documents)


def _kept_alive(gateway: GatewayProcess) -> http.client.HTTPConnection | None:
    """A connection that got an answer and stays open; None if the gateway closed it."""
    connection = http.client.HTTPConnection(gateway.address, 8080, timeout=10)
    try:
        connection.request("GET", "/", headers={"Host": "example.com"})
        response = connection.getresponse()
        response.read()
    except (OSError, http.client.HTTPException):
        connection.close()
        return None
    return connection


def _closed_at_once(gateway: GatewayProcess) -> bool:
    """Whether a new connection is closed by the gateway before it sends anything."""
    with socket.create_connection((gateway.address, 8080), timeout=10) as sock:
        try:
            return sock.recv(1) == b""
        except ConnectionResetError:
            return True


@pytest.mark.parametrize(
    ("option", "limit"), [("--max-connections", "worker"), ("--max-connections-per-port", "port")]
)
def test_a_connection_past_the_limit_is_closed_and_the_open_ones_are_served(option, limit):
    server = RawBackend()
    gateway = GatewayProcess(("--workers", "1", option, "5")).start()
    try:
        _serve(gateway, server)
        wait_until(lambda: gateway.request("/")[0] == 200, what="the route to be served")
        # connections closed just before may still count: each of the five is retried
        held = [
            wait_until(lambda: _kept_alive(gateway), what="a kept-alive connection")
            for _ in range(5)
        ]
        listener = f"{gateway.address}:8080"
        labels = {"listener": listener, "limit": limit}
        before = _counter(gateway, "twistgw_connections_refused_total", **labels)
        assert _closed_at_once(gateway)
        for connection in held:
            connection.request("GET", "/again", headers={"Host": "example.com"})
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b"GET /again HTTP/1.1")
            connection.close()
        assert _counter(gateway, "twistgw_connections_refused_total", **labels) == before + 1
    finally:
        gateway.stop()
        server.close()


class Held:
    """A backend whose answers wait until the test releases them (one connection may
    carry several requests)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.server = RawBackend(self._answer)

    def _answer(self, conn: Conn) -> None:
        while (request := conn.read_request()) is not None:
            self.release.wait(30)
            line = request.split(b"\r\n", 1)[0]
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(line), line))


def _send(gateway: GatewayProcess, path: str) -> socket.socket:
    sock = socket.create_connection((gateway.address, 8080), timeout=10)
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: example.com\r\n\r\n" % path.encode())
    return sock


def _answer(sock: socket.socket) -> tuple[int, str | None, bytes]:
    """The status, Retry-After and body of the response on ``sock``."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.getheader("retry-after"), response.read()


@pytest.fixture
def held() -> Iterator[Held]:
    backend_ = Held()
    yield backend_
    backend_.release.set()
    backend_.server.close()


def _limited(held: Held, *args: str) -> GatewayProcess:
    gateway = GatewayProcess(("--workers", "1", "--backend-max-connections", "1", *args)).start()
    _serve(gateway, held.server)
    held.release.set()
    wait_until(lambda: gateway.request("/")[0] == 200, what="the route to be served")
    held.release.clear()
    return gateway


def test_a_request_waits_for_the_busy_endpoint_and_one_past_the_pending_limit_gets_503(held):
    gateway = _limited(held, "--backend-max-pending", "1")
    try:
        first = _send(gateway, "/first")
        wait_until(lambda: b"GET /first HTTP/1.1" in held.server.request_lines(), what="/first")
        # the second and third arrive together: whichever the gateway reads first waits
        # for the one connection, the other is refused at once
        waiting = {_send(gateway, "/second"), _send(gateway, "/third")}
        readable, _, _ = select.select(list(waiting), [], [], 10)
        refused = readable[0]
        code, retry_after, _ = _answer(refused)
        assert (code, retry_after) == (503, "1")
        waiting.discard(refused)
        wait_until(
            lambda: _counter(gateway, "twistgw_backend_waiting_requests") == 1,
            what="the waiting request to show in the gauge",
        )
        held.release.set()
        assert _answer(first)[0] == 200
        (second,) = waiting
        code, _, body = _answer(second)
        assert code == 200
        lines = held.server.request_lines()
        assert lines[-2:] == [b"GET /first HTTP/1.1", body]  # after the first, on its connection
        assert held.server.connections == 1
        wait_until(
            lambda: _counter(gateway, "twistgw_backend_overflow_total", reason="pending") == 1,
            what="the overflow to be counted",
        )
    finally:
        gateway.stop()


def test_a_waiting_request_leaves_the_queue_when_its_client_goes_or_its_time_is_up(held):
    gateway = _limited(held, "--backend-max-pending", "1", "--backend-connect-timeout", "1")
    try:
        first = _send(gateway, "/first")
        wait_until(lambda: b"GET /first HTTP/1.1" in held.server.request_lines(), what="/first")
        gone = _send(gateway, "/gone")
        gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        gone.close()  # a reset: a FIN would be a half-close, still awaiting its answer
        wait_until(
            lambda: _counter(gateway, "twistgw_http_requests_total", code="499") == 1,
            what="the client that went away to be counted",
        )
        # its place in the queue is free: this one waits, and is answered 503 in time
        code, retry_after, _ = _answer(_send(gateway, "/late"))
        assert (code, retry_after) == (503, "1")
        assert _counter(gateway, "twistgw_backend_overflow_total", reason="timeout") == 1
        assert _counter(gateway, "twistgw_backend_overflow_total", reason="pending") == 0
        assert _counter(gateway, "twistgw_backend_waiting_requests") == 0
        held.release.set()
        assert _answer(first)[0] == 200
        assert held.server.request_lines()[-1] == b"GET /first HTTP/1.1"
    finally:
        gateway.stop()


def test_a_worker_past_its_memory_limit_stops_accepting_and_closes_idle_connections():
    """A client sending a large request head without its end makes the worker hold it
    (a worker starts at about 50 MB); past the limit it closes the idle keep-alive
    connection and accepts nothing, and once the client has gone it accepts again."""
    server = RawBackend()
    head_limit = str(256 * 2**20)
    gateway = GatewayProcess(
        ("--workers", "1", "--worker-memory-limit", "128", "--max-header-bytes", head_limit)
        + ("--request-header-timeout", "120")
    ).start()
    try:
        _serve(gateway, server)
        wait_until(lambda: gateway.request("/")[0] == 200, what="the route to be served")
        idle = wait_until(lambda: _kept_alive(gateway), what="a kept-alive connection")
        filling = socket.create_connection((gateway.address, 8080), timeout=30)
        filling.sendall(b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Fill: " + b"a" * 128 * 2**20)
        wait_until(
            lambda: _counter(gateway, "twistgw_worker_memory_shedding") == 1,
            what="the worker to shed",
        )
        assert idle.sock.recv(1) == b""  # closed by the gateway
        # the kernel completes the handshake into the backlog, but nothing accepts it
        waiting = _send(gateway, "/waiting")
        waiting.settimeout(2)
        with pytest.raises(TimeoutError):
            waiting.recv(1)
        filling.close()
        waiting.settimeout(30)
        assert _answer(waiting)[0] == 200  # accepted once the memory is freed
        assert _counter(gateway, "twistgw_worker_memory_shedding") == 0
        assert "past --worker-memory-limit 128 MB" in gateway.log()
    finally:
        gateway.stop()
        server.close()
