"""``--proxy-protocol`` through a real gateway process: on the ports listed, the PROXY
header's source is the client the backend (X-Forwarded-For) and the access log see,
over HTTP and HTTPS (the header before the ClientHello); a TCP and a TLS passthrough
listener get the header consumed, not forwarded; a connection without the header, or
that does not finish it in time, is closed without an answer; a port not listed
serves as before."""

from __future__ import annotations

import os
import socket
import ssl
import struct
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.support.certs import CA, tls_secret
from tests.support.gateway import GatewayProcess, access_record, wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service
from tests.support.rawbackend import RawBackend
from tests.support.tlsecho import TLSEcho

HTTP, PLAIN, HTTPS, TCP, TLS = 8080, 8081, 8443, 7011, 9443
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(source: str = "192.0.2.7", port: int = 56324) -> bytes:
    family = "TCP6" if ":" in source else "TCP4"
    destination = "::1" if ":" in source else "10.0.0.1"
    return f"PROXY {family} {source} {destination} {port} 443\r\n".encode()


def v2_ipv6(source: str, port: int) -> bytes:
    block = (
        socket.inet_pton(socket.AF_INET6, source)
        + socket.inet_pton(socket.AF_INET6, "fd00::1")
        + struct.pack("!HH", port, 443)
        + b"\x04\x00\x03abc"  # (a NOOP TLV, skipped)
    )
    return V2_SIGNATURE + b"\x21\x21" + struct.pack("!H", len(block)) + block


V2_LOCAL = V2_SIGNATURE + b"\x20\x00\x00\x00"


def _route(kind: str, name: str, section: str, refs: list[dict], **spec) -> dict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1alpha2",
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "gw", "sectionName": section}],
            "rules": [{"backendRefs": refs}],
            **spec,
        },
    }


@pytest.fixture(scope="module")
def proxied() -> Iterator[tuple[GatewayProcess, RawBackend, str, CA]]:
    log_path = os.path.join(tempfile.mkdtemp(prefix="twistgw-access-"), "access.log")
    gateway = GatewayProcess(
        (
            "--workers",
            "1",
            "--proxy-protocol",
            f"{HTTP},{HTTPS},{TCP},{TLS}",
            "--request-header-timeout",
            "2",
            "--access-log",
            log_path,
        )
    ).start()
    ca = CA()
    server = RawBackend()
    line_echo = TLSEcho("line", None)
    tls_echo = TLSEcho("tls", ca.issue("*.example.com"))
    listeners = [
        {"name": "http", "port": HTTP, "protocol": "HTTP"},
        {"name": "plain", "port": PLAIN, "protocol": "HTTP"},
        {
            "name": "https",
            "port": HTTPS,
            "protocol": "HTTPS",
            "tls": {"certificateRefs": [{"name": "cert"}]},
        },
        {"name": "tcp", "port": TCP, "protocol": "TCP"},
        {"name": "tls", "port": TLS, "protocol": "TLS", "tls": {"mode": "Passthrough"}},
    ]
    parents = [{"name": "gw", "sectionName": s} for s in ("http", "plain", "https")]
    gateway.write(
        "proxied.yaml",
        [
            gateway_class(),
            gateway_manifest("gw", listeners=listeners),
            tls_secret("cert", ca.issue("*.example.com")),
            *service("web", [server.address]),
            *service("line", [line_echo.address], port=9),
            *service("tls", [tls_echo.address], port=443),
            http_route("web", [{"backendRefs": [backend("web")]}], parents=parents),
            _route("TCPRoute", "tcp", "tcp", [{"name": "line", "port": 9}]),
            _route(
                "TLSRoute",
                "tls",
                "tls",
                [{"name": "tls", "port": 443}],
                hostnames=["*.example.com"],
            ),
        ],
    )
    wait_until(lambda: gateway.request("/up", port=PLAIN)[0] == 200, what="HTTP served")
    wait_until(lambda: _tcp_line(gateway, v1(), b"ready\n") == b"line:ready\n", what="TCP")
    wait_until(lambda: _passthrough(gateway, ca, v1()) == b"tls:ready\n", what="TLS served")
    wait_until(lambda: _https(gateway, ca, v1(), "/up").startswith(b"HTTP/1.1 200"), what="HTTPS")
    yield gateway, server, log_path, ca
    gateway.stop()
    server.close()
    line_echo.close()
    tls_echo.close()


def _connect(gateway: GatewayProcess, port: int) -> socket.socket:
    return socket.create_connection((gateway.address, port), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    """What the gateway sends until it closes (a reset counts as a close)."""
    received = b""
    try:
        while data := sock.recv(65536):
            received += data
    except ConnectionResetError:
        pass
    return received


def _get(gateway: GatewayProcess, header: bytes, path: str, port: int = HTTP) -> bytes:
    with _connect(gateway, port) as sock:
        request = f"GET {path} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
        sock.sendall(header + request.encode())
        return _read_all(sock)


def _tcp_line(gateway: GatewayProcess, header: bytes, line: bytes) -> bytes:
    with _connect(gateway, TCP) as sock:
        sock.sendall(header + line)
        return sock.makefile("rb").readline()


def _passthrough(gateway: GatewayProcess, ca: CA, header: bytes) -> bytes:
    context = ssl.create_default_context(cadata=ca.pem.decode())
    with _connect(gateway, TLS) as raw:
        raw.sendall(header)
        with context.wrap_socket(raw, server_hostname="a.example.com") as tls:
            tls.sendall(b"ready\n")
            return tls.makefile("rb").readline()


def _https(gateway: GatewayProcess, ca: CA, header: bytes, path: str) -> bytes:
    context = ssl.create_default_context(cadata=ca.pem.decode())
    with _connect(gateway, HTTPS) as raw:
        raw.sendall(header)
        with context.wrap_socket(raw, server_hostname="a.example.com") as tls:
            tls.sendall(
                f"GET {path} HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n".encode()
            )
            return _read_all(tls)


def _forwarded_for(server: RawBackend, path: str) -> list[str]:
    """The X-Forwarded-For values of the requests for ``path`` the backend got."""
    found = []
    with server.lock:
        requests = list(server.requests)
    for request in requests:
        lines = request.split(b"\r\n")
        if lines[0].split(b" ")[1] == path.encode():
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"x-forwarded-for":
                    found.append(value.strip().decode())
    return found


def test_a_v1_header_is_the_client_for_the_backend_and_the_access_log(proxied):
    gateway, server, log_path, _ = proxied
    assert _get(gateway, v1("192.0.2.7"), "/v1").startswith(b"HTTP/1.1 200 ")
    assert _forwarded_for(server, "/v1") == ["192.0.2.7"]
    record = wait_until(lambda: access_record(log_path, "/v1"), what="the access-log record")
    assert record["client"] == "192.0.2.7"


def test_a_v2_header_with_an_ipv6_source(proxied):
    gateway, server, _, _ = proxied
    assert _get(gateway, v2_ipv6("2001:db8::42", 3000), "/v2").startswith(b"HTTP/1.1 200 ")
    assert _forwarded_for(server, "/v2") == ["2001:db8::42"]


def test_a_header_sent_a_byte_at_a_time(proxied):
    gateway, server, _, _ = proxied
    with _connect(gateway, HTTP) as sock:
        for byte in v1("198.51.100.3"):
            sock.sendall(bytes([byte]))
            time.sleep(0.002)
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        assert _read_all(sock).startswith(b"HTTP/1.1 200 ")
    assert _forwarded_for(server, "/slow") == ["198.51.100.3"]


def test_a_local_header_keeps_the_connections_own_peer(proxied):
    gateway, server, _, _ = proxied
    with _connect(gateway, HTTP) as sock:
        own = sock.getsockname()[0]
        sock.sendall(V2_LOCAL + b"GET /local HTTP/1.1\r\nHost: example.com\r\n")
        sock.sendall(b"Connection: close\r\n\r\n")
        assert _read_all(sock).startswith(b"HTTP/1.1 200 ")
    assert _forwarded_for(server, "/local") == [own]


def test_a_connection_without_the_header_is_closed_without_an_answer(proxied):
    gateway, server, _, _ = proxied
    assert _get(gateway, b"", "/no-header") == b""
    assert _get(gateway, b"PROXY TCP4 192.0.2.7 10.0.0.1 080 443\r\n", "/bad-header") == b""
    assert _forwarded_for(server, "/no-header") == _forwarded_for(server, "/bad-header") == []
    refused = gateway.admin("/metrics")[1].decode()
    assert 'twistgw_proxy_protocol_refused_total{listener="' in refused
    assert 'reason="malformed"' in refused


def test_a_header_not_finished_in_time_is_closed(proxied):
    gateway, _, _, _ = proxied
    with _connect(gateway, HTTP) as sock:
        sock.sendall(b"PROXY TCP4 192.0.2.")
        started = time.monotonic()
        assert _read_all(sock) == b""
        assert 1.5 < time.monotonic() - started < 8  # (--request-header-timeout 2)


def test_a_port_not_listed_is_unaffected(proxied):
    gateway, server, _, _ = proxied
    code, _, _ = gateway.request("/plain", port=PLAIN)
    assert code == 200
    assert len(_forwarded_for(server, "/plain")) == 1
    assert _forwarded_for(server, "/plain") != ["192.0.2.7"]
    # there a PROXY line is no header: it is a malformed request line
    assert _get(gateway, v1(), "/plain-header", port=PLAIN).startswith(b"HTTP/1.1 400 ")
    assert _forwarded_for(server, "/plain-header") == []


def test_https_reads_the_header_before_the_client_hello(proxied):
    gateway, server, _, ca = proxied
    assert _https(gateway, ca, v1("203.0.113.9"), "/tls").startswith(b"HTTP/1.1 200 ")
    assert _forwarded_for(server, "/tls") == ["203.0.113.9"]


def test_tcp_and_tls_passthrough_backends_get_the_bytes_after_the_header(proxied):
    gateway, _, _, ca = proxied
    assert _tcp_line(gateway, v2_ipv6("2001:db8::42", 1), b"hello\n") == b"line:hello\n"
    assert _passthrough(gateway, ca, V2_LOCAL) == b"tls:ready\n"
    with _connect(gateway, TCP) as sock:  # (no header: the backend is never reached)
        sock.sendall(b"hello\n")
        assert _read_all(sock) == b""
