"""RequestMirror and backend-scoped filters through a real gateway process: copies with
their bodies to several mirrors, over TLS and over h2c (bodies past the first HTTP/2
window), a mirror that never answers, never reads or streams its answer forever leaves
the main request alone (the copy dropped or ended, and counted), an unresolvable mirror
is refused in status and the rule still served; a backendRef's URLRewrite and
RequestRedirect."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.certs import CA, ca_config_map
from tests.support.gateway import GatewayProcess, wait_until
from tests.support.h2backends import H2Echo
from tests.support.manifests import (
    backend,
    backend_tls_policy,
    gateway_class,
    gateway_manifest,
    http_route,
    service,
)
from tests.support.rawbackend import Conn, RawBackend
from tests.support.tlsecho import TLSEcho

HOLD = threading.Event()  # set at teardown: the silent backends let go


def silent(conn: Conn) -> None:
    """Reads each request whole and never answers."""
    while conn.read_request() is not None:
        pass


def not_reading(conn: Conn) -> None:
    """Reads nothing at all until the end of the test module."""
    HOLD.wait(60)


STREAM_ENDED = threading.Event()


def streaming(conn: Conn) -> None:
    """Answers each request with a chunked body that never ends (until the gateway
    closes the connection)."""
    if conn.read_request() is None:
        return
    conn.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    try:
        while not HOLD.is_set():
            conn.send(b"5\r\ntick\n\r\n")
            time.sleep(0.05)
    except OSError:
        STREAM_ENDED.set()


def mirror_filter(name: str, **share) -> dict:
    return {"type": "RequestMirror", "requestMirror": {"backendRef": backend(name), **share}}


def rule(prefix: str, backend_ref: dict, filters: list[dict] | None = None) -> dict:
    found = {"matches": [{"path": {"type": "PathPrefix", "value": prefix}}]}
    return {**found, "filters": filters or [], "backendRefs": [backend_ref]}


@pytest.fixture(scope="module")
def mirrored() -> Iterator[tuple[GatewayProcess, dict[str, RawBackend]]]:
    gateway = GatewayProcess(("--workers", "1")).start()
    backends = {
        "main": RawBackend(),
        "copy-a": RawBackend(),
        "copy-b": RawBackend(),
        "silent": RawBackend(silent),
        "not-reading": RawBackend(not_reading),
        "streaming": RawBackend(streaming),
    }
    ca = CA("mirror CA")
    tls_mirror = TLSEcho("tls-mirror", ca.issue("mirror.example.com"), http=True)
    h2_mirror = H2Echo()
    rewrite = {
        "type": "URLRewrite",
        "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}},
    }
    redirect = {
        "type": "RequestRedirect",
        "requestRedirect": {"hostname": "elsewhere.example", "statusCode": 301},
    }
    rules = [
        rule("/both", backend("main"), [mirror_filter("copy-a"), mirror_filter("copy-b")]),
        rule("/silent", backend("main"), [mirror_filter("silent")]),
        rule("/not-reading", backend("main"), [mirror_filter("not-reading")]),
        rule("/missing", backend("main"), [mirror_filter("no-such-service")]),
        rule("/none", backend("main"), [mirror_filter("copy-a", percent=0)]),
        rule("/old", backend("main", filters=[rewrite])),
        rule("/moved", backend("main", filters=[redirect])),
    ]
    documents = [gateway_class(), gateway_manifest()]
    for name, server in backends.items():
        documents += service(name, [server.address])
    documents += service("tls-mirror", [tls_mirror.address], port=443)
    documents += [
        ca_config_map("mirror-ca", ca.pem),
        backend_tls_policy(
            "tls-mirror",
            "tls-mirror",
            hostname="mirror.example.com",
            caCertificateRefs=[{"group": "", "kind": "ConfigMap", "name": "mirror-ca"}],
        ),
    ]
    documents += service("h2-mirror", [h2_mirror.address], app_protocol="kubernetes.io/h2c")
    documents.append(http_route("mirrored", rules))
    for name, mirror in [("tls", "tls-mirror"), ("h2c", "h2-mirror"), ("stream", "streaming")]:
        ref = backend(mirror, port=443) if name == "tls" else backend(mirror)
        filters = [{"type": "RequestMirror", "requestMirror": {"backendRef": ref}}]
        documents.append(
            http_route(f"{name}-mirrored", [rule(f"/{name}", backend("main"), filters)])
        )
    gateway.write("mirrored.yaml", documents)
    wait_until(lambda: gateway.request("/both/up")[0] == 200, what="routes to be served")
    yield gateway, backends
    HOLD.set()
    gateway.stop()
    for server in backends.values():
        server.close()
    tls_mirror.close()
    h2_mirror.close()


def received(server: RawBackend, marker: bytes) -> list[bytes]:
    with server.lock:
        return [request for request in server.requests if marker in request.split(b"\r\n")[0]]


def dechunked(body: bytes) -> bytes:
    """A whole chunked body's data (the test fails on anything else)."""
    data = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert body == b"\r\n"
            return data
        data += body[:size]
        assert body[size : size + 2] == b"\r\n"
        body = body[size + 2 :]


def mirrors_counted(gateway: GatewayProcess, outcome: str, route: str = "mirrored") -> float:
    """How many copies of ``route``'s requests ended with ``outcome``."""
    _, text = gateway.admin("/metrics")
    series = f'twistgw_http_mirrors_total{{outcome="{outcome}",route="default/{route}"}}'
    found = re.search(re.escape(series).encode() + rb" ([0-9.e+]+)", text)
    return float(found.group(1)) if found else 0.0


def outcomes(gateway: GatewayProcess, route: str) -> set[str]:
    _, text = gateway.admin("/metrics")
    pattern = rf'twistgw_http_mirrors_total{{outcome="(\w+)",route="default/{route}"}}'
    return set(re.findall(pattern, text.decode()))


def test_each_mirror_gets_the_request_with_its_body(mirrored) -> None:
    gateway, backends = mirrored
    code, _, body = gateway.request("/both/post", method="POST", body=b"payload" * 1000)
    assert code == 200 and body.startswith(b"POST /both/post ")
    for name in ("copy-a", "copy-b"):
        copies = wait_until(lambda n=name: received(backends[n], b"/both/post"), what=name)
        assert len(copies) == 1 and copies[0].endswith(b"payload" * 1000)
        assert b"\r\nhost: example.com\r\n" in copies[0].lower()
    wait_until(lambda: mirrors_counted(gateway, "completed"), what="the copies counted")


def test_a_chunked_body_is_mirrored_whole(mirrored) -> None:
    gateway, backends = mirrored
    chunks = iter([b"one", b"two", b"three"])
    code, _, _ = gateway.request("/both/chunked", method="POST", body=chunks, chunked=True)
    assert code == 200
    copy = wait_until(lambda: received(backends["copy-a"], b"/both/chunked"), what="the copy")
    assert dechunked(copy[0].partition(b"\r\n\r\n")[2]) == b"onetwothree"


def test_a_mirror_that_never_answers_leaves_the_request_alone(mirrored) -> None:
    gateway, backends = mirrored
    for index in range(3):  # (each copy holds its own connection to the silent mirror)
        code, _, _ = gateway.request(f"/silent/{index}", method="POST", body=b"x")
        assert code == 200
    wait_until(lambda: len(received(backends["silent"], b"/silent/")) == 3, what="the copies")


def test_a_mirror_that_never_reads_is_dropped_not_buffered(mirrored) -> None:
    gateway, backends = mirrored
    body = b"z" * (8 * 1024 * 1024)
    code, _, answer = gateway.request("/not-reading/big", method="POST", body=body)
    assert code == 200 and answer.startswith(b"POST /not-reading/big ")
    assert received(backends["main"], b"/not-reading/big")[0].endswith(body)
    wait_until(lambda: mirrors_counted(gateway, "backlog"), what="the dropped copy counted")


def test_an_unresolvable_mirror_is_refused_and_the_rule_served(mirrored) -> None:
    gateway, _ = mirrored
    condition = gateway.route_condition("mirrored", "ResolvedRefs")
    assert condition["status"] == "False" and condition["reason"] == "BackendNotFound"
    assert "no-such-service" in condition["message"]
    assert gateway.request("/missing/x")[0] == 200


def test_a_zero_share_mirrors_nothing(mirrored) -> None:
    gateway, backends = mirrored
    assert gateway.request("/none/x")[0] == 200
    assert gateway.request("/both/after-none")[0] == 200  # (copies go out in order)
    wait_until(lambda: received(backends["copy-a"], b"/both/after-none"), what="a later copy")
    assert not received(backends["copy-a"], b"/none/x")


def test_a_backend_url_rewrite(mirrored) -> None:
    gateway, _ = mirrored
    code, _, body = gateway.request("/old/page?q=1")
    assert code == 200 and body.startswith(b"GET /new/page?q=1 ")


def test_a_backend_request_redirect(mirrored) -> None:
    gateway, backends = mirrored
    code, headers, _ = gateway.request("/moved/page")
    assert code == 301
    assert headers["location"] == "http://elsewhere.example:8080/moved/page"
    assert not received(backends["main"], b"/moved/page")


def test_copies_over_tls_reuse_their_connection(mirrored) -> None:
    gateway, _ = mirrored
    for index in range(4):
        assert gateway.request(f"/tls/{index}", method="POST", body=b"b" * 100_000)[0] == 200
        # (one at a time: each copy's connection goes back to the pool for the next)
        wait_until(lambda i=index: mirrors_counted(gateway, "completed", "tls-mirrored") > i)
    assert outcomes(gateway, "tls-mirrored") == {"completed"}


def test_copies_over_h2c_wait_for_the_window(mirrored) -> None:
    gateway, _ = mirrored
    for size in (1_000, 100_000, 300_000):  # (the first window is 65,535 bytes)
        assert gateway.request(f"/h2c/{size}", method="POST", body=b"h" * size)[0] == 200
    wait_until(lambda: mirrors_counted(gateway, "completed", "h2c-mirrored") == 3)
    assert outcomes(gateway, "h2c-mirrored") == {"completed"}


def test_a_never_ending_answer_ends_the_copy(mirrored) -> None:
    gateway, _ = mirrored
    assert gateway.request("/stream/x")[0] == 200
    wait_until(lambda: mirrors_counted(gateway, "completed", "stream-mirrored") == 1)
    wait_until(STREAM_ENDED.is_set, what="the mirror's connection closed")
