"""HTTP/2 through a real gateway process: curl over h2c (prior knowledge) and over TLS
(ALPN), to HTTP/1.1 backends; HTTP/1.1 and HTTP/2 clients to h2c backends; gRPC calls
(grpcio client and server) with their trailers; gRPC-shaped answers of the gateway."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Iterator

import grpc
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, ResponseReceived, StreamEnded

from tests.support.certs import CA, ca_config_map, tls_secret
from tests.support.gateway import GatewayProcess, wait_until
from tests.support.h2backends import SERVICE, GrpcEcho, H2Echo
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service

H2C = "kubernetes.io/h2c"


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA()


@pytest.fixture(scope="module")
def h2echo() -> Iterator[H2Echo]:
    server = H2Echo()
    yield server
    server.close()


@pytest.fixture(scope="module")
def grpc_echo() -> Iterator[GrpcEcho]:
    server = GrpcEcho()
    yield server
    server.close()


@pytest.fixture(scope="module")
def h2(gateway, backends, ca, h2echo, grpc_echo):
    listeners = [
        {"name": "http", "port": 8080, "protocol": "HTTP"},
        {
            "name": "https",
            "port": 8443,
            "protocol": "HTTPS",
            "hostname": "secure.example.com",
            "tls": {"certificateRefs": [{"name": "cert"}]},
        },
        {
            "name": "other",
            "port": 8443,
            "protocol": "HTTPS",
            "hostname": "other.example.com",
            "tls": {"certificateRefs": [{"name": "cert"}]},
        },
    ]
    gateway.write(
        "h2.yaml",
        [
            gateway_class(),
            gateway_manifest(listeners=listeners),
            tls_secret("cert", ca.issue("secure.example.com", "other.example.com")),
            *service("app", [backends.start("h1-app")]),
            *service("h2app", [h2echo.address], app_protocol=H2C),
            *service("grpc", [grpc_echo.address], app_protocol=H2C),
            http_route("app", [{"backendRefs": [backend("app")]}]),
            http_route(
                "h2app",
                [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/h2/"}}],
                        "backendRefs": [backend("h2app")],
                    },
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": f"/{SERVICE}/"}}],
                        "backendRefs": [backend("grpc")],
                    },
                ],
            ),
        ],
    )
    wait_until(lambda: gateway.request("/h2/x")[0] == 200, what="the h2c backend to be served")
    return gateway


def _curl(*args: str) -> tuple[str, dict[str, str], str]:
    """HTTP version, response headers and body of a curl call."""
    with tempfile.NamedTemporaryFile() as head:
        result = subprocess.run(
            ["curl", "-sS", "--max-time", "20", "-D", head.name, "-w", "%{http_version}", *args],
            capture_output=True,
            check=True,
        )
        lines = open(head.name, "rb").read().decode().splitlines()  # noqa: SIM115
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if value:
            headers[name.strip().lower()] = value.strip()
    output = result.stdout.decode()
    return output[-1:], headers, output[:-1]


def test_h2c_with_prior_knowledge_reaches_an_http1_backend(h2):
    version, headers, body = _curl(
        "--http2-prior-knowledge", f"http://{h2.address}:8080/some/path?q=1", "-H", "Host: a.test"
    )
    echoed = json.loads(body)
    assert version == "2"
    assert (echoed["method"], echoed["path"]) == ("GET", "/some/path?q=1")
    assert echoed["headers"]["host"] == "a.test"
    assert echoed["headers"]["x-forwarded-proto"] == "http"
    assert headers["content-type"] == "application/json"


def test_h2c_request_bodies_stream_to_an_http1_backend(h2):
    payload = os.urandom(300_000)  # beyond the stream window: flow control must turn
    with tempfile.NamedTemporaryFile() as upload:
        upload.write(payload)
        upload.flush()
        version, _, body = _curl(
            "--http2-prior-knowledge",
            "--data-binary",
            f"@{upload.name}",
            f"http://{h2.address}:8080/up",
        )
    assert version == "2"
    assert json.loads(body)["received_bytes"] == len(payload)


def test_h2_over_tls_by_alpn(h2, ca):
    with tempfile.NamedTemporaryFile() as authority:
        authority.write(ca.pem)
        authority.flush()
        version, _, body = _curl(
            "--http2",
            "--cacert",
            authority.name,
            "--resolve",
            f"secure.example.com:8443:{h2.address}",
            "https://secure.example.com:8443/tls",
        )
    echoed = json.loads(body)
    assert version == "2"
    assert echoed["headers"]["x-forwarded-proto"] == "https"
    assert echoed["headers"]["host"] == "secure.example.com:8443"


def test_an_http1_client_reaches_an_h2c_backend_and_the_other_way_round(h2, h2echo):
    code, _, body = h2.request("/h2/one", host="b.test")
    assert code == 200
    fields = dict(json.loads(body)["fields"])
    assert (fields[":method"], fields[":path"], fields[":authority"]) == (
        "GET",
        "/h2/one",
        "b.test",
    )
    assert fields[":scheme"] == "http"
    assert "host" not in fields and "connection" not in fields
    version, headers, body = _curl(
        "--http2-prior-knowledge", "-d", "x" * 1000, f"http://{h2.address}:8080/h2/two"
    )
    assert version == "2" and json.loads(body)["received"] == 1000


def test_streams_share_one_backend_connection(h2, h2echo):
    before = h2echo.connections
    for _ in range(5):
        assert h2.request("/h2/again")[0] == 200
    assert h2echo.connections - before <= 1


def test_grpc_unary_and_bidirectional_streaming_keep_their_trailers(h2):
    with grpc.insecure_channel(f"{h2.address}:8080") as channel:
        unary = channel.unary_unary(f"/{SERVICE}/Unary")
        answer, call = unary.with_call(b"hello", timeout=10)
        assert answer.startswith(b"echo:hello")
        assert ("x-trailer", "unary") in call.trailing_metadata()
        bidi = channel.stream_stream(f"/{SERVICE}/Bidi")
        replies = bidi(iter([b"one", b"two", b"three"]), timeout=10)
        assert list(replies) == [b"echo:one", b"echo:two", b"echo:three"]
        assert ("x-trailer", "bidi") in replies.trailing_metadata()


def test_grpc_errors_pass_through_and_the_gateways_own_answers_are_grpc(h2):
    with grpc.insecure_channel(f"{h2.address}:8080") as channel:
        with pytest.raises(grpc.RpcError) as failed:
            channel.unary_unary(f"/{SERVICE}/Fail")(b"x", timeout=10)
        assert failed.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert failed.value.details() == "not you"
    series = 'grpc_status="7",protocol="HTTP/2",route="default/h2app",rule="1"}'
    wait_until(lambda: series in h2.admin("/metrics")[1].decode(), what="the call counted")
    with grpc.insecure_channel(f"{h2.address}:8080") as channel:
        # a route whose backend has no endpoints: the gateway answers UNAVAILABLE
        h2.write(
            "h2-extra.yaml",
            [
                *service("nowhere", [], app_protocol=H2C),
                http_route(
                    "nowhere",
                    [
                        {
                            "matches": [{"path": {"type": "PathPrefix", "value": "/gone.Svc"}}],
                            "backendRefs": [backend("nowhere")],
                        }
                    ],
                ),
            ],
        )
        wait_until(lambda: h2.request("/gone.Svc/M")[0] == 503, what="the empty backend")
        with pytest.raises(grpc.RpcError) as failed:
            channel.unary_unary("/gone.Svc/M")(b"x", timeout=10)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    h2.remove("h2-extra.yaml")


def _h2_over_tls(address: str, ca: CA, sni: str, authorities: list[str]) -> list[int]:
    """The statuses of one GET per authority, all on one h2 connection made for ``sni``
    (what a browser does when a certificate covers several names: coalescing)."""
    context = ssl.create_default_context(cadata=ca.pem.decode())
    context.set_alpn_protocols(["h2"])
    with context.wrap_socket(
        socket.create_connection((address, 8443), timeout=10), server_hostname=sni
    ) as sock:
        assert sock.selected_alpn_protocol() == "h2"
        client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        client.initiate_connection()
        statuses: dict[int, int] = {}
        ended: set[int] = set()
        for authority in authorities:
            stream_id = client.get_next_available_stream_id()
            fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")]
            client.send_headers(stream_id, [*fields, (b":authority", authority.encode())], True)
            statuses[stream_id] = 0
        sock.sendall(client.data_to_send())
        while len(ended) < len(statuses):
            data = sock.recv(65536)
            assert data, "the connection closed"
            for event in client.receive_data(data):
                if isinstance(event, ResponseReceived):
                    statuses[event.stream_id] = int(dict(event.headers)[b":status"])
                elif isinstance(event, DataReceived):
                    client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, StreamEnded):
                    ended.add(event.stream_id)
            sock.sendall(client.data_to_send())
        return [statuses[stream_id] for stream_id in sorted(statuses)]


def test_a_coalesced_request_for_another_listeners_host_is_misdirected(h2, ca):
    both = ["secure.example.com", "other.example.com"]
    assert _h2_over_tls(h2.address, ca, "secure.example.com", both) == [200, 421]
    assert _h2_over_tls(h2.address, ca, "other.example.com", both) == [421, 200]


def test_h2_over_tls_to_a_backend_with_a_backend_tls_policy(h2):
    backend_ca = CA("h2 backend CA")
    server = H2Echo(backend_ca.issue("h2.backend.test"))
    policy = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "BackendTLSPolicy",
        "metadata": {"name": "h2tls", "namespace": "default"},
        "spec": {
            "targetRefs": [{"group": "", "kind": "Service", "name": "h2tls"}],
            "validation": {
                "hostname": "h2.backend.test",
                "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "h2-ca"}],
            },
        },
    }
    route = {"matches": [{"path": {"type": "PathPrefix", "value": "/h2tls"}}]}
    h2.write(
        "h2-tls.yaml",
        [
            *service("h2tls", [server.address], app_protocol=H2C),
            ca_config_map("h2-ca", backend_ca.pem),
            policy,
            http_route("h2tls", [{**route, "backendRefs": [backend("h2tls")]}]),
        ],
    )
    try:
        code, _, body = wait_until(
            lambda: b'"fields"' in (answer := h2.request("/h2tls/x"))[2] and answer,
            what="the TLS h2 backend",
        )
        fields = dict(json.loads(body)["fields"])
        assert (fields[":scheme"], fields[":path"]) == ("https", "/h2tls/x")
    finally:
        h2.remove("h2-tls.yaml")
        server.close()


def _raw_http1(address: str, data: bytes) -> bytes:
    """What the gateway answers to ``data`` on one HTTP/1.1 connection, until it has
    answered both requests in it or closed."""
    with socket.create_connection((address, 8080), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while received.count(b"HTTP/1.1 ") < 2:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_misbehaving_h2_backends_cannot_split_responses_or_break_the_connection(h2, h2echo):
    # a 204 "with a body" from an HTTP/2 backend: the bytes never reach the client
    pipelined = b"GET /h2/misbehave-204 HTTP/1.1\r\nHost: a\r\n\r\n"
    pipelined += b"GET /h2/next HTTP/1.1\r\nHost: a\r\n\r\n"
    answer = _raw_http1(h2.address, pipelined)
    assert answer.startswith(b"HTTP/1.1 204 ") and b"x-smuggled" not in answer
    assert answer.count(b"HTTP/1.1 200 OK") == 1 and b'"fields"' in answer
    # a malformed :status fails that request only; the backend connection serves on
    assert h2.request("/h2/bad-status")[0] == 502
    assert h2.request("/h2/after")[0] == 200
    # a graceful GOAWAY: the stream it spares is answered, later ones go elsewhere
    assert h2.request("/h2/goaway")[0] == 200
    assert h2.request("/h2/after-goaway")[0] == 200


def test_a_stalled_h2_upload_is_answered_408_and_its_backend_stream_cancelled(h2echo):
    gateway = GatewayProcess(("--workers", "1", "--idle-timeout", "1")).start()
    try:
        gateway.write(
            "stall.yaml",
            [
                gateway_class(),
                gateway_manifest(),
                *service("h2app", [h2echo.address], app_protocol=H2C),
                http_route("h2app", [{"backendRefs": [backend("h2app")]}]),
            ],
        )
        wait_until(lambda: gateway.request("/up")[0] == 200, what="the route")
        resets = h2echo.resets
        with socket.create_connection((gateway.address, 8080), timeout=10) as sock:
            client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
            client.initiate_connection()
            fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/up")]
            fields += [(b":authority", b"a"), (b"content-length", b"10")]
            client.send_headers(1, fields)
            sock.sendall(client.data_to_send())  # ... and the body never comes
            status = None
            while status is None:
                data = sock.recv(65536)
                assert data, "closed without an answer"
                for event in client.receive_data(data):
                    if isinstance(event, ResponseReceived):
                        status = dict(event.headers)[b":status"]
                sock.sendall(client.data_to_send())
        assert status == b"408"
        wait_until(lambda: h2echo.resets > resets, what="the backend stream to be reset")
    finally:
        gateway.stop()


def test_an_idle_h2_connection_over_tls_is_sent_goaway_and_closed(ca, backends):
    gateway = GatewayProcess(("--workers", "1", "--idle-timeout", "1")).start()
    try:
        listener = {
            "name": "https",
            "port": 8443,
            "protocol": "HTTPS",
            "tls": {"certificateRefs": [{"name": "cert"}]},
        }
        gateway.write(
            "idle.yaml",
            [
                gateway_class(),
                gateway_manifest(listeners=[listener]),
                tls_secret("cert", ca.issue("secure.example.com")),
                *service("app", [backends.start("idle-app")]),
                http_route("app", [{"backendRefs": [backend("app")]}]),
            ],
        )
        context = ssl.create_default_context(cadata=ca.pem.decode())
        context.set_alpn_protocols(["h2"])

        def connect():
            raw = socket.create_connection((gateway.address, 8443), timeout=10)
            return context.wrap_socket(raw, server_hostname="secure.example.com")

        wait_until(lambda: connect().close() is None, what="the HTTPS listener")
        with connect() as tls:
            client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
            client.initiate_connection()
            tls.sendall(client.data_to_send())
            received = b""
            while data := tls.recv(65536):  # (the gateway closes it: recv ends)
                received += data
        goaways = [e for e in client.receive_data(received) if isinstance(e, ConnectionTerminated)]
        assert goaways and goaways[0].error_code == 0
    finally:
        gateway.stop()
