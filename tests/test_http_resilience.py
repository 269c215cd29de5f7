"""A rule's timeouts and retries through a real gateway process and hand-written
backends: a 504 after backendRequest with the backend connection closed, retries after
connection resets and on listed codes (with their backoff), no retry for a body too
large to replay, and the request timeout bounding every attempt."""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.gateway import GatewayProcess, access_record, wait_until
from tests.support.h2backends import H2Echo
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service
from tests.support.rawbackend import Conn, RawBackend

#: What the scripted backend saw, per request id: arrival times, bodies, and whether
#: the gateway closed a connection it had left waiting.
SEEN: dict[str, list[tuple[float, bytes]]] = {}
REQUEST_IDS: dict[str, list[bytes]] = {}  # each attempt's x-request-id
CLOSED: set[str] = set()
LOCK = threading.Lock()


def scripted(conn: Conn) -> None:
    """Fails the first ``fail`` requests of each ``id`` as ``mode`` says (``reset``:
    a TCP reset; ``slow``: no answer until the gateway closes; else that status), then
    answers 200 with the body it got."""
    while (request := conn.read_request()) is not None:
        head, _, body = request.partition(b"\r\n\r\n")
        target = head.split(b" ", 2)[1].decode()
        query = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
        key = query["id"]
        request_id = re.search(rb"\r\nx-request-id: *([^\r]*)", head, re.IGNORECASE)
        with LOCK:
            REQUEST_IDS.setdefault(key, []).append(request_id.group(1) if request_id else b"")
            seen = SEEN.setdefault(key, [])
            seen.append((time.monotonic(), body))
            count = len(seen)
        if count <= int(query.get("fail", "0")):
            mode = query.get("mode", "503")
            if mode == "reset":
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if mode == "slow":
                conn.sock.settimeout(10)
                try:
                    if conn.sock.recv(1) == b"":
                        CLOSED.add(key)
                except ConnectionResetError:
                    CLOSED.add(key)
                return
            conn.send(b"HTTP/1.1 %s Failed\r\nContent-Length: 0\r\n\r\n" % mode.encode())
            continue
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def reset_on_head(conn: Conn) -> None:
    """Resets each connection as soon as a request head arrives (its body unread)."""
    if conn.read_until(b"\r\n\r\n") is not None:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def rule(prefix: str, service: str = "scripted", **policy) -> dict:
    return {
        "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
        "backendRefs": [backend(service)],
        **policy,
    }


@pytest.fixture(scope="module")
def resilient() -> Iterator[tuple[GatewayProcess, str, RawBackend, H2Echo]]:
    log_path = os.path.join(tempfile.mkdtemp(prefix="twistgw-access-"), "access.log")
    gateway = GatewayProcess(("--workers", "1", "--access-log", log_path)).start()
    server = RawBackend(scripted)
    head_reset = RawBackend(reset_on_head)
    h2echo = H2Echo()
    rules = [
        rule("/timeout", timeouts={"backendRequest": "300ms"}),
        rule("/reset", retry={"attempts": 2, "backoff": "10ms"}),
        rule("/code", retry={"codes": [503], "attempts": 3, "backoff": "100ms"}),
        rule(
            "/bounded",
            retry={"codes": [503], "attempts": 10, "backoff": "100ms"},
            timeouts={"request": "500ms"},
        ),
        rule("/plain"),
        rule("/head-reset", "head-reset", retry={"attempts": 2, "backoff": "500ms"}),
        rule("/h2", "h2echo", retry={"attempts": 1}),
    ]
    documents = [gateway_class(), gateway_manifest(), *service("scripted", [server.address])]
    documents += service("head-reset", [head_reset.address])
    documents += service("h2echo", [h2echo.address], app_protocol="kubernetes.io/h2c")
    documents.append(http_route("resilient", rules))
    gateway.write("resilient.yaml", documents)
    wait_until(lambda: gateway.request("/plain?id=up")[0] == 200, what="routes to be served")
    yield gateway, log_path, head_reset, h2echo
    gateway.stop()
    server.close()
    head_reset.close()
    h2echo.close()


def new_id() -> str:
    return uuid.uuid4().hex


def test_backend_request_timeout_answers_504_and_closes_the_backend(resilient) -> None:
    gateway, log_path, *_ = resilient
    key = new_id()
    path = f"/timeout?id={key}&fail=1&mode=slow"
    started = time.monotonic()
    code, _, _ = gateway.request(path)
    assert code == 504
    # not before the rule's 300 ms; and within the client's 10 s, so not the backend's
    # own 60 s response timeout (no upper bound in seconds: a busy machine may be slow)
    assert time.monotonic() - started >= 0.25
    wait_until(lambda: key in CLOSED, what="the backend connection to be closed")
    assert len(SEEN[key]) == 1  # no retry policy: one attempt
    record = wait_until(lambda: access_record(log_path, path), what="the access-log record")
    assert record["status"] == 504 and record["attempts"] == 1
    assert record["route"] == "default/resilient" and record["rule"] == "0"  # (unnamed)
    fast = f"/timeout?id={new_id()}"
    assert gateway.request(fast)[0] == 200


def test_backend_request_timeout_over_http2(resilient) -> None:
    gateway, *_ = resilient
    key = new_id()
    done = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-H", "Host: example.com"]
        + ["-o", "/dev/null", "-w", "%{http_code}"]
        + [f"http://{gateway.address}:8080/timeout?id={key}&fail=1&mode=slow"],
        capture_output=True,
        check=True,
        timeout=20,
    )
    assert done.stdout == b"504"
    wait_until(lambda: key in CLOSED, what="the backend connection to be closed")


def test_a_connection_reset_is_retried(resilient) -> None:
    gateway, log_path, *_ = resilient
    key = new_id()
    path = f"/reset?id={key}&fail=2&mode=reset"
    code, _, _ = gateway.request(path)
    assert code == 200
    assert len(SEEN[key]) == 3
    record = wait_until(lambda: access_record(log_path, path), what="the access-log record")
    assert record["attempts"] == 3

    def counted() -> bool:
        _, text = gateway.admin("/metrics")
        return b'twistgw_http_retries_total{reason="reset",route="default/resilient"}' in text

    wait_until(counted, what="the retries counted")


def test_resets_beyond_the_attempts_answer_503(resilient) -> None:
    gateway, *_ = resilient
    key = new_id()
    code, _, _ = gateway.request(f"/reset?id={key}&fail=5&mode=reset")
    assert code == 503
    assert len(SEEN[key]) == 3  # the first try and two retries


def test_a_listed_code_is_retried_after_the_backoff(resilient) -> None:
    gateway, *_ = resilient
    key = new_id()
    code, _, body = gateway.request(f"/code?id={key}&fail=2", method="POST", body=b"payload")
    assert code == 200 and body == b"payload"
    (request_id,) = set(REQUEST_IDS[key])  # every attempt carries the request's id
    assert request_id
    seen = SEEN[key]
    assert [b for _, b in seen] == [b"payload"] * 3  # the body replayed each time
    first, second = seen[1][0] - seen[0][0], seen[2][0] - seen[1][0]
    assert first >= 0.1 and second >= 0.2  # the backoff, doubled for the second retry


def test_a_code_not_listed_or_attempts_spent_is_answered(resilient) -> None:
    gateway, *_ = resilient
    key = new_id()
    assert gateway.request(f"/code?id={key}&fail=1&mode=500")[0] == 500
    assert len(SEEN[key]) == 1
    key = new_id()
    assert gateway.request(f"/code?id={key}&fail=9")[0] == 503
    assert len(SEEN[key]) == 4


def test_a_body_too_large_to_replay_is_not_retried(resilient) -> None:
    gateway, *_ = resilient
    key = new_id()
    body = b"x" * (64 * 1024 + 1)
    code, _, _ = gateway.request(f"/code?id={key}&fail=1", method="POST", body=body)
    assert code == 503
    assert len(SEEN[key]) == 1 and SEEN[key][0][1] == body


def test_the_request_timeout_bounds_every_attempt(resilient) -> None:
    gateway, *_ = resilient
    key = new_id()
    started = time.monotonic()
    code, _, _ = gateway.request(f"/bounded?id={key}&fail=100")
    elapsed = time.monotonic() - started
    assert code == 504
    assert elapsed >= 0.45
    # attempts at 0, 0.1 and 0.3 s at the earliest: the next (0.7 s) never starts, though
    # 10 retries were allowed (a slow machine may fit fewer)
    assert 1 <= len(SEEN[key]) <= 4


def test_a_body_outgrowing_the_bound_during_the_backoff_is_not_retried(resilient) -> None:
    """The first attempt fails while the body still streams; by the retry, the body has
    passed the replay bound: the answer is 503, with no second attempt."""
    gateway, _, head_reset, _ = resilient
    size = 100_000
    with socket.create_connection((gateway.address, 8080), timeout=10) as sock:
        sock.sendall(
            b"POST /head-reset HTTP/1.1\r\nHost: example.com\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (size, b"a" * 1000)
        )
        time.sleep(0.2)  # the backend has reset; the retry waits 500 ms
        sock.sendall(b"b" * (size - 1000))
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 503 "), answer
    assert head_reset.connections == 1


def test_an_http2_backend_stream_failure_is_retried(resilient) -> None:
    """The exchange retries over HTTP/2 backends as over HTTP/1.1: a malformed
    ``:status`` fails the stream (502 without retries), is retried once, then 503."""
    gateway, _, _, h2echo = resilient
    before = h2echo.streams
    assert gateway.request("/h2/bad-status")[0] == 503
    assert h2echo.streams - before == 2
    assert gateway.request("/h2/ok")[0] == 200
