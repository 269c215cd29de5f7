"""The HTTP/1.1 edge through a real gateway process: hostile clients, odd backends and
careless routes, each answered as the RFCs and a production gateway would. One worker,
so that a pooled backend connection is the one the next request gets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.support.gateway import GatewayProcess, access_record, wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service
from tests.support.rawbackend import Conn, RawBackend


def close_delimited(conn: Conn) -> None:
    if conn.read_request() is not None:
        conn.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello, " + b"x" * 100000)


def silent(conn: Conn) -> None:
    conn.read_request()
    conn.sock.recv(1)  # until the gateway gives up


def stale(conn: Conn) -> None:
    """Answers a connection's first request; reads its second and closes unanswered, as a
    server whose keep-alive timeout struck just then."""
    if conn.read_request() is not None:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
        conn.read_request()


def websocket(conn: Conn) -> None:
    request = conn.read_request()
    if request is None or b"upgrade: websocket" not in request.lower():
        return
    conn.send(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )
    if conn.buffer:
        conn.send(conn.buffer)
    while data := conn.sock.recv(65536):
        conn.send(data)  # echo; the client's half-close ends it
    conn.sock.shutdown(socket.SHUT_WR)


def stall(conn: Conn) -> None:
    """Sends a response head and part of its body, then nothing."""
    if conn.read_request() is not None:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        conn.sock.recv(1)


def answers_without_switching(conn: Conn) -> None:
    """Answers every request with a normal 200, upgrade or not, on a kept-alive
    connection; each answer names the request line it answers."""
    while (request := conn.read_request()) is not None:
        line = request.split(b"\r\n", 1)[0]
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(line), line))


HANDLERS = {
    "close": close_delimited,
    "silent": silent,
    "stale": stale,
    "ws": websocket,
    "stall": stall,
    "plain": answers_without_switching,
}


@pytest.fixture(scope="module")
def edge() -> Iterator[tuple[GatewayProcess, dict[str, RawBackend], str]]:
    log_path = os.path.join(tempfile.mkdtemp(prefix="twistgw-access-"), "access.log")
    gateway = GatewayProcess(
        (
            "--workers",
            "1",
            "--request-header-timeout",
            "1",
            "--backend-response-timeout",
            "1",
            "--idle-timeout",
            "2",
            "--access-log",
            log_path,
        )
    ).start()
    backends = {"ok": RawBackend(), **{name: RawBackend(h) for name, h in HANDLERS.items()}}
    documents = [gateway_class(), gateway_manifest()]
    rules = []
    for name, server in backends.items():
        documents += service(name, [server.address])
        rules.append(
            {
                "matches": [{"path": {"type": "PathPrefix", "value": f"/{name}"}}],
                "backendRefs": [backend(name)],
            }
        )
    documents.append(http_route("edge", rules))
    documents.append(
        http_route(
            "only-abs",
            [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/abs"}}],
                    "backendRefs": [backend("ok")],
                }
            ],
            hostnames=["abs.example"],
        )
    )
    gateway.write("edge.yaml", documents)
    wait_until(lambda: gateway.request("/ok")[0] == 200, what="routes to be served")
    yield gateway, backends, log_path
    gateway.stop()
    for server in backends.values():
        server.close()


def exchange(gateway: GatewayProcess, data: bytes, wait: float = 10.0) -> bytes:
    """Send raw bytes; everything the gateway answers until it closes."""
    with socket.create_connection((gateway.address, 8080), timeout=wait) as sock:
        sock.sendall(data)
        received = b""
        while piece := sock.recv(65536):
            received += piece
    return received


def test_framing_headers_are_never_hop_by_hop(edge) -> None:
    """Defect 1: Connection: content-length smuggled a second request to the backend."""
    gateway, backends, _ = edge
    smuggled = b"GET /ok/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    answer = exchange(
        gateway,
        b"POST /ok/a HTTP/1.1\r\nHost: a\r\nConnection: content-length, close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(smuggled), smuggled),
    )
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1 200 OK") == 1
    assert b"GET /ok/smuggled HTTP/1.1" not in backends["ok"].request_lines()
    forwarded = backends["ok"].requests[-1]
    assert b"content-length: %d" % len(smuggled) in forwarded.lower()
    answer = exchange(
        gateway, b"GET /ok/h HTTP/1.1\r\nHost: h.example\r\nConnection: host, close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"host: h.example\r\n" in backends["ok"].requests[-1].lower()


def test_close_delimited_backend_response_is_complete(edge) -> None:
    """Defect 4: a body ended by the backend's close was cut (no last chunk)."""
    gateway, _, _ = edge
    code, headers, body = gateway.request("/close")
    assert code == 200 and body == b"hello, " + b"x" * 100000
    assert headers["transfer-encoding"] == "chunked"
    answer = exchange(gateway, b"GET /close HTTP/1.0\r\n\r\n")
    assert answer.endswith(b"x" * 1000) and b"connection: close" in answer


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /ok HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", b"400"),
        (b"GET /ok HTTP/1.1\r\n\r\n", b"400"),
        (b"GET /ok\r\n\r\n", b"400"),  # HTTP/0.9
        (b"GET /ok HTTP/2.0\r\nHost: a\r\n\r\n", b"505"),
        (b"POST /ok HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", b"400"),
        (b"POST /ok HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", b"501"),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", b"414"),
        (b"GET /ok HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 70000 + b"\r\n\r\n", b"431"),
        (
            b"GET /ok HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(10000)),
            b"431",
        ),
    ],
    ids=[
        "two-hosts",
        "no-host",
        "http09",
        "http20",
        "te-identity",
        "te-gzip",
        "414",
        "431",
        "count",
    ],
)
def test_refusals_are_answered_then_closed(edge, request_bytes: bytes, status: bytes) -> None:
    """Defects 5, 7, 9, 10: each refused with a response (never a bare close)."""
    gateway, backends, _ = edge
    before = len(backends["ok"].requests)
    answer = exchange(gateway, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:200]
    assert b"connection: close" in answer.lower()
    assert len(backends["ok"].requests) == before
    series = f'twistgw_http_refused_total{{code="{status.decode()}",listener="'
    wait_until(lambda: series in gateway.admin("/metrics")[1].decode(), what="the refusal counted")


def test_absolute_form_authority_routes_and_is_forwarded(edge) -> None:
    """Defect 5: the target's authority replaces Host for routing and forwarding."""
    gateway, backends, _ = edge
    answer = exchange(
        gateway,
        b"GET http://abs.example/abs/x HTTP/1.1\r\nHost: www.example\r\nConnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200 ")
    forwarded = backends["ok"].requests[-1].lower()
    assert (
        forwarded.startswith(b"get /abs/x http/1.1\r\n") and b"host: abs.example\r\n" in forwarded
    )
    assert b"www.example" not in forwarded
    answer = exchange(
        gateway,
        b"GET http://www.example/abs/x HTTP/1.1\r\nHost: abs.example\r\nConnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 404 ")


def test_http10_without_host_gets_a_host_upstream(edge) -> None:
    gateway, backends, _ = edge
    answer = exchange(gateway, b"GET /ok/ten HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    forwarded = backends["ok"].requests[-1].lower()
    assert forwarded.startswith(b"get /ok/ten http/1.1\r\nhost: 127.0.0.1:")


def test_no_pipelined_request_runs_after_a_closing_answer(edge) -> None:
    """Defect 6: a 404 that left the body unread, then a pipelined DELETE."""
    gateway, backends, _ = edge
    answer = exchange(
        gateway,
        b"POST /nothing HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"
        b"DELETE /ok/thing HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 404 ") and answer.count(b"HTTP/1.1 ") == 1
    time.sleep(0.2)
    assert b"DELETE /ok/thing HTTP/1.1" not in backends["ok"].request_lines()


def test_slowloris_is_cut_off_while_others_are_served(edge) -> None:
    """Defect 7: a partial head is answered 408 after the header timeout (1 s here)."""
    gateway, _, _ = edge
    slow = socket.create_connection((gateway.address, 8080), timeout=10)
    slow.sendall(b"GET /ok HTTP/1.1\r\nHost: a\r\n")
    started = time.monotonic()
    served = 0
    while time.monotonic() - started < 0.5:
        assert gateway.request("/ok")[0] == 200
        served += 1
    slow.sendall(b"X-Slow: 1\r\n")
    received = b""
    while piece := slow.recv(65536):
        received += piece
    slow.close()
    assert served > 0
    assert received.startswith(b"HTTP/1.1 408 ")


def test_silent_backend_gets_504(edge) -> None:
    """Defect 7: a backend that never answers left the client waiting forever."""
    gateway, _, _ = edge
    code, _, body = gateway.request("/silent")
    assert code == 504, body


def test_expect_100_continue(edge) -> None:
    """Defect 8: the client waiting for 100 Continue hung."""
    gateway, backends, _ = edge
    with socket.create_connection((gateway.address, 8080), timeout=10) as sock:
        sock.sendall(
            b"PUT /ok/up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n"
            b"Connection: close\r\n\r\n"
        )
        interim = sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        answer = b""
        while piece := sock.recv(65536):
            answer += piece
    assert answer.startswith(b"HTTP/1.1 200 ")
    forwarded = backends["ok"].requests[-1]
    assert forwarded.endswith(b"\r\n\r\nhello") and b"expect" not in forwarded.lower()


def test_websocket_upgrade_is_tunnelled(edge) -> None:
    """Defect 9: an Upgrade request got a bare close."""
    gateway, _, _ = edge
    with socket.create_connection((gateway.address, 8080), timeout=10) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"upgrade: websocket" in head.lower()
        for message in (b"\x81\x05hello", b"\x82\x03" + bytes(3), b"x" * 200000):
            sock.sendall(message)
            echoed = b""
            while len(echoed) < len(message):
                echoed += sock.recv(65536)
            assert echoed == message
        sock.shutdown(socket.SHUT_WR)  # half-close: the backend ends its side in turn
        assert sock.recv(65536) == b""


def test_underscore_headers_are_dropped(edge) -> None:
    """Defect 10: X_Forwarded_For reached the backend beside X-Forwarded-For."""
    gateway, backends, _ = edge
    code, _, _ = gateway.request("/ok/u", headers={"X_Forwarded_For": "6.6.6.6"})
    assert code == 200
    forwarded = backends["ok"].requests[-1].lower()
    assert b"x_forwarded_for" not in forwarded and b"6.6.6.6" not in forwarded
    assert b"x-forwarded-for: 127.0.0.1\r\n" in forwarded


def test_stale_pooled_connection_retries_only_idempotent_requests(edge) -> None:
    """Defect 11: a POST on a stale pooled connection was sent again."""
    gateway, backends, _ = edge
    server = backends["stale"]
    assert gateway.request("/stale/1")[0] == 200  # a fresh connection, now pooled
    code, _, _ = gateway.request("/stale/2", method="POST", body=b"once")
    assert code == 502
    assert server.request_lines().count(b"POST /stale/2 HTTP/1.1") == 1
    assert gateway.request("/stale/3")[0] == 200  # fresh again, pooled
    code, _, body = gateway.request("/stale/4")  # the pooled one fails: retried fresh
    assert code == 200 and body == b"first"
    assert server.request_lines().count(b"GET /stale/4 HTTP/1.1") == 2


def test_request_ids_and_access_log(edge) -> None:
    gateway, backends, log_path = edge
    code, _, _ = gateway.request(
        "/ok/logged", headers={"X-Request-Id": "abc-123", "User-Agent": "t/1"}
    )
    assert code == 200
    assert b"x-request-id: abc-123\r\n" in backends["ok"].requests[-1].lower()
    gateway.request("/ok/generated", headers={"X-Request-Id": "bad id with spaces"})
    generated = backends["ok"].requests[-1].lower()
    assert b"bad id" not in generated and b"x-request-id: " in generated

    h2 = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-H", "Host: example.com", "-o", "/dev/null"]
        + [f"http://{gateway.address}:8080/ok/h2"],
        check=True,
        timeout=20,
    )
    assert h2.returncode == 0

    def logged(path: str = "/ok/logged") -> dict | None:
        return access_record(log_path, path)

    assert wait_until(lambda: logged("/ok/h2"), what="the HTTP/2 record")["protocol"] == "HTTP/2"
    record = wait_until(logged, what="the access-log record")
    assert record["grpc_status"] is None
    assert record["request_id"] == "abc-123"
    assert record["method"] == "GET" and record["status"] == 200
    assert record["authority"] == "example.com" and record["protocol"] == "HTTP/1.1"
    assert record["user_agent"] == "t/1" and record["route"] == "default/edge"
    assert record["backend"] == "default/ok:8080" and record["listener"]
    assert record["endpoint"] == "{}:{}".format(*backends["ok"].address)
    assert record["bytes_out"] > 0 and record["duration"] >= record["upstream_time"] >= 0
    assert record["client"] == "127.0.0.1"


def test_routes_with_unsendable_header_values_are_refused_not_fatal(edge) -> None:
    """Defects 2 and 3: a "10 €" value crash-looped every worker; a CR/LF value was
    written raw to backends and clients."""
    gateway, backends, _ = edge
    pids = [worker["pid"] for worker in json.loads(gateway.admin("/config_dump")[1])["workers"]]
    gateway.write(
        "careless.yaml",
        [
            http_route(
                "careless",
                [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/price"}}],
                        "filters": [
                            {
                                "type": "RequestHeaderModifier",
                                "requestHeaderModifier": {
                                    "set": [{"name": "X-Price", "value": "10 €"}]
                                },
                            }
                        ],
                        "backendRefs": [backend("ok")],
                    },
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/inject"}}],
                        "filters": [
                            {
                                "type": "ResponseHeaderModifier",
                                "responseHeaderModifier": {
                                    "add": [{"name": "X-A", "value": "a\r\nSet-Cookie: x"}]
                                },
                            }
                        ],
                        "backendRefs": [backend("ok")],
                    },
                ],
                hostnames=["careless.example"],
            )
        ],
    )
    accepted = wait_until(
        lambda: gateway.route_condition("careless", "Accepted"), what="the route's status"
    )
    assert accepted["status"] == "False"
    assert "requestHeaderModifier.set[0].value" in accepted["message"]
    assert "responseHeaderModifier.add[0].value: contains a CR or LF" in accepted["message"]
    for path in ("/price", "/inject"):
        code, headers, _ = gateway.request(path, host="careless.example")
        assert code == 404 and "set-cookie" not in headers
    assert gateway.request("/ok")[0] == 200
    workers = json.loads(gateway.admin("/config_dump")[1])["workers"]
    assert [worker["pid"] for worker in workers] == pids and all(w["alive"] for w in workers)
    assert gateway.admin("/readyz")[0] == 200
    gateway.remove("careless.yaml")


def test_an_upgrade_with_a_body_smuggles_nothing(edge) -> None:
    """Review finding: Upgrade + a body lost the body's framing towards the backend,
    which read the body as a second request, and its answer went to the next client."""
    gateway, backends, _ = edge
    hidden = b"GET /admin HTTP/1.1\r\nHost: internal\r\n\r\n"
    for framing, body in (
        (b"Content-Length: %d" % len(hidden), hidden),
        (b"Transfer-Encoding: chunked", b"%x\r\n%s\r\n0\r\n\r\n" % (len(hidden), hidden)),
    ):
        answer = exchange(
            gateway,
            b"POST /plain/form HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, close\r\n"
            b"Upgrade: x\r\n" + framing + b"\r\n\r\n" + body,
        )
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"POST /plain/form HTTP/1.1")
        code, _, answered = gateway.request("/plain/innocent")
        assert code == 200 and answered == b"GET /plain/innocent HTTP/1.1"
    assert b"GET /admin HTTP/1.1" not in backends["plain"].request_lines()


def test_a_backend_that_stops_mid_body_is_cut_off(edge) -> None:
    """Review finding: a backend that sent a head and part of its body held the client
    forever; now the response timeout (1 s here) applies between reads too."""
    gateway, _, _ = edge
    with socket.create_connection((gateway.address, 8080), timeout=10) as sock:
        sock.sendall(b"GET /stall HTTP/1.1\r\nHost: a\r\n\r\n")
        received = b""
        try:
            while piece := sock.recv(65536):
                received += piece
        except ConnectionResetError:
            pass  # the cut is a reset: no client can take the short body for a whole one
    assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"abc")


def test_a_client_that_half_closes_after_its_request_gets_the_answer(edge) -> None:
    gateway, _, _ = edge
    with socket.create_connection((gateway.address, 8080), timeout=10) as sock:
        sock.sendall(b"GET /ok/half HTTP/1.1\r\nHost: a\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while piece := sock.recv(65536):
            received += piece
    assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"GET /ok/half HTTP/1.1")


def test_a_promised_body_that_never_comes_is_answered_408(edge) -> None:
    gateway, _, _ = edge
    with socket.create_connection((gateway.address, 8080), timeout=10) as sock:
        sock.sendall(b"POST /ok/wait HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n")
        received = b""
        while piece := sock.recv(65536):
            received += piece
    assert received.startswith(b"HTTP/1.1 408 ")
