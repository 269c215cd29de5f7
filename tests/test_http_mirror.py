"""RequestMirror and backend-scoped filters through a real gateway process: copies with
their bodies to several mirrors, a mirror that never answers or never reads leaves the
main request alone (the copy dropped and counted), an unresolvable mirror is refused in
status and the rule still served; a backendRef's URLRewrite and RequestRedirect."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.support.gateway import GatewayProcess, wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service
from tests.support.rawbackend import Conn, RawBackend

HOLD = threading.Event()  # set at teardown: the silent backends let go


def silent(conn: Conn) -> None:
    """Reads each request whole and never answers."""
    while conn.read_request() is not None:
        pass


def not_reading(conn: Conn) -> None:
    """Reads nothing at all until the end of the test module."""
    HOLD.wait(60)


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
    }
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
    documents.append(http_route("mirrored", rules))
    gateway.write("mirrored.yaml", documents)
    wait_until(lambda: gateway.request("/both/up")[0] == 200, what="routes to be served")
    yield gateway, backends
    HOLD.set()
    gateway.stop()
    for server in backends.values():
        server.close()


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


def mirrors_counted(gateway: GatewayProcess, outcome: str) -> bool:
    _, text = gateway.admin("/metrics")
    line = f'twistgw_http_mirrors_total{{outcome="{outcome}",route="default/mirrored"}}'
    return line.encode() in text


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
