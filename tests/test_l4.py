"""TCP and UDP listeners through a real gateway process with 2 workers: echo, weighted
splits, half-close, a refused backend, idle timeouts, UDP session stickiness, expiry,
large datagrams and ICMP errors."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections import Counter

import pytest

from tests.support.gateway import GatewayProcess, free_port, wait_until
from tests.support.manifests import gateway_class, gateway_manifest, service
from tests.support.tlsecho import TLSEcho
from tests.support.udpecho import UDPEcho, exchange

TCP_PORT = 7001
UDP_PORT = 7002
REFUSED_TCP_PORT = 7003
REFUSED_UDP_PORT = 7004


def _route(kind: str, name: str, section: str, refs: list[dict]) -> dict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1alpha2",
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "l4", "sectionName": section}],
            "rules": [{"backendRefs": refs}],
        },
    }


def _configure(gateway: GatewayProcess) -> list:
    """TCP on TCP_PORT to line echoes weighted 1:3, UDP on UDP_PORT to datagram echoes
    weighted 1:3, and a TCP and a UDP listener whose backend port has nobody on it."""
    tcp_one, tcp_three = TLSEcho("one", None), TLSEcho("three", None)
    udp_one, udp_three = UDPEcho("one"), UDPEcho("three")
    nobody = ("127.0.0.1", free_port())
    listeners = [
        {"name": "tcp", "port": TCP_PORT, "protocol": "TCP"},
        {"name": "udp", "port": UDP_PORT, "protocol": "UDP"},
        {"name": "tcp-refused", "port": REFUSED_TCP_PORT, "protocol": "TCP"},
        {"name": "udp-refused", "port": REFUSED_UDP_PORT, "protocol": "UDP"},
    ]
    weighted = [{"name": "one", "port": 9, "weight": 1}, {"name": "three", "port": 9, "weight": 3}]
    gateway.write(
        "l4.yaml",
        [
            gateway_class(),
            gateway_manifest("l4", listeners=listeners),
            *service("one", [tcp_one.address], port=9),
            *service("three", [tcp_three.address], port=9),
            *service("nobody", [nobody], port=9),
            _route("TCPRoute", "tcp", "tcp", weighted),
            _route("TCPRoute", "tcp-refused", "tcp-refused", [{"name": "nobody", "port": 9}]),
        ],
    )
    gateway.write(
        "l4-udp.yaml",
        [
            *service("udp-one", [udp_one.address], port=9),
            *service("udp-three", [udp_three.address], port=9),
            _route(
                "UDPRoute",
                "udp",
                "udp",
                [{**ref, "name": f"udp-{ref['name']}"} for ref in weighted],
            ),
            _route("UDPRoute", "udp-refused", "udp-refused", [{"name": "nobody", "port": 9}]),
        ],
    )
    wait_until(lambda: _tcp_line(gateway, b"ready\n"), what="TCP served")
    wait_until(lambda: _udp_once(gateway, b"ready"), what="UDP served")
    return [tcp_one, tcp_three, udp_one, udp_three]


def _tcp_line(gateway: GatewayProcess, line: bytes, port: int = TCP_PORT) -> bytes:
    with socket.create_connection((gateway.address, port), timeout=10) as sock:
        sock.sendall(line)
        return sock.makefile("rb").readline()


def _udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    return sock


def _udp_once(gateway: GatewayProcess, data: bytes, port: int = UDP_PORT) -> bytes:
    with _udp_socket() as sock:
        return exchange(sock, (gateway.address, port), data)


def _sessions_opened(gateway: GatewayProcess, route: str) -> float:
    """twistgw_stream_connections_total summed over the route's series."""
    text = gateway.admin("/metrics")[1].decode()
    pattern = rf'^twistgw_stream_connections_total{{[^}}]*route="{re.escape(route)}"[^}}]*}} (\S+)'
    return sum(float(value) for value in re.findall(pattern, text, re.M))


@pytest.fixture(scope="module")
def l4():
    gateway = GatewayProcess(
        extra_args=("--workers", "2", "--stream-idle-timeout", "2", "--udp-session-timeout", "2")
    ).start()
    backends = _configure(gateway)
    yield gateway
    gateway.stop()
    for backend in backends:
        backend.close()


def test_tcp_echo(l4):
    assert _tcp_line(l4, b"hello\n") in (b"one:hello\n", b"three:hello\n")


def test_tcp_weights_split_connections(l4):
    counts = Counter(_tcp_line(l4, b"x\n").split(b":")[0] for _ in range(80))
    assert 0.55 < counts[b"three"] / 80 < 0.95, counts  # 3:1, with room for chance


def test_tcp_half_close_reaches_the_backend(l4):
    with socket.create_connection((l4.address, TCP_PORT), timeout=10) as sock:
        sock.sendall(b"last words\n")
        sock.shutdown(socket.SHUT_WR)  # the backend reads to end of file, then closes
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert received in (b"one:last words\n", b"three:last words\n")


def test_an_unreachable_backend_closes_the_client(l4):
    with socket.create_connection((l4.address, REFUSED_TCP_PORT), timeout=10) as sock:
        sock.sendall(b"anyone?\n")
        with contextlib.suppress(ConnectionResetError):  # an abort is a clean end too
            assert sock.recv(4096) == b""


def test_an_idle_tcp_connection_is_closed(l4):
    with socket.create_connection((l4.address, TCP_PORT), timeout=15) as sock:
        sock.sendall(b"hi\n")
        assert sock.recv(4096).endswith(b":hi\n")
        started = time.monotonic()
        assert sock.recv(4096) == b""  # closed by the gateway, not by us or the backend
        assert time.monotonic() - started >= 1.5


def test_udp_echo_and_large_datagrams(l4):
    assert _udp_once(l4, b"hello") in (b"one:hello", b"three:hello")
    big = bytes(range(256)) * 234  # 59,904 bytes
    assert _udp_once(l4, big).split(b":", 1)[1] == big


def test_udp_weights_split_clients_and_sessions_stick(l4):
    counts = Counter()
    for _ in range(80):
        with _udp_socket() as sock:
            answers = {exchange(sock, (l4.address, UDP_PORT), b"%d" % n)[:3] for n in range(4)}
            assert len(answers) == 1, answers  # every datagram of a client: one backend
            counts[answers.pop()] += 1
    assert 0.55 < counts[b"thr"] / 80 < 0.95, counts


def test_udp_session_expires_when_idle(l4):
    with _udp_socket() as sock:
        before = _sessions_opened(l4, "default/udp")
        exchange(sock, (l4.address, UDP_PORT), b"one")
        exchange(sock, (l4.address, UDP_PORT), b"two")
        wait_until(lambda: _sessions_opened(l4, "default/udp") >= before + 1, what="metrics")
        assert _sessions_opened(l4, "default/udp") == before + 1  # one session so far
        time.sleep(4.5)  # > the 2 s session timeout plus a sweep
        exchange(sock, (l4.address, UDP_PORT), b"three")
        wait_until(lambda: _sessions_opened(l4, "default/udp") >= before + 2, what="new session")


def test_an_icmp_error_ends_the_session_not_the_worker(l4):
    pids = l4.admin("/config_dump")[1]
    with _udp_socket() as sock:
        for _ in range(3):
            sock.sendto(b"anyone?", (l4.address, REFUSED_UDP_PORT))
        with pytest.raises(TimeoutError):
            sock.recvfrom(65535)
    assert _udp_once(l4, b"still here").endswith(b":still here")
    assert l4.admin("/config_dump")[1].count(b'"pid"') == pids.count(b'"pid"')
    assert b"Traceback" not in l4.log().encode()


def test_udp_sessions_are_bounded_least_recently_active_first():
    gateway = GatewayProcess(extra_args=("--workers", "1", "--udp-max-sessions", "2")).start()
    backends = _configure(gateway)
    clients = [_udp_socket() for _ in range(3)]
    try:
        before = _sessions_opened(gateway, "default/udp")
        for sock in clients:  # A, B, C: C's session evicts A's, the least recently active
            exchange(sock, (gateway.address, UDP_PORT), b"hi")
        wait_until(lambda: _sessions_opened(gateway, "default/udp") == before + 3, what="3")
        exchange(clients[1], (gateway.address, UDP_PORT), b"B again")  # B's is still open
        assert _sessions_opened(gateway, "default/udp") == before + 3
        exchange(clients[0], (gateway.address, UDP_PORT), b"A again")  # a new session
        wait_until(lambda: _sessions_opened(gateway, "default/udp") >= before + 4, what="4")
        assert _sessions_opened(gateway, "default/udp") == before + 4
    finally:
        for sock in clients:
            sock.close()
        gateway.stop()
        for backend in backends:
            backend.close()
