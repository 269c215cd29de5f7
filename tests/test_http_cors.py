"""The CORS filter through a real gateway process: a preflight with credentials is
answered by the gateway (the backend never sees it), an actual request from an allowed
origin gets the CORS fields in place of the backend's, and one from another origin
gets none, not even the backend's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.gateway import GatewayProcess, wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service
from tests.support.rawbackend import Conn, RawBackend


def with_own_cors(conn: Conn) -> None:
    """Every request gets a 200 naming its request line, with a CORS field of its own."""
    while (request := conn.read_request()) is not None:
        line = request.split(b"\r\n", 1)[0]
        conn.send(
            b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(line), line)
        )


CORS = {
    "allowOrigins": ["https://app.example.com", "https://*.example.org"],
    "allowMethods": ["*"],
    "allowHeaders": ["*"],
    "exposeHeaders": ["x-total"],
    "allowCredentials": True,
    "maxAge": 600,
}


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[GatewayProcess, RawBackend]]:
    gateway = GatewayProcess(("--workers", "1")).start()
    server = RawBackend(with_own_cors)
    rules = [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
            "filters": [{"type": "CORS", "cors": CORS}],
            "backendRefs": [backend("web")],
        }
    ]
    documents = [gateway_class(), gateway_manifest(), *service("web", [server.address])]
    documents.append(http_route("cors", rules))
    gateway.write("cors.yaml", documents)
    wait_until(lambda: gateway.request("/api/up")[0] == 200, what="routes to be served")
    yield gateway, server
    gateway.stop()
    server.close()


def test_a_preflight_with_credentials_is_answered_by_the_gateway(gateway) -> None:
    proxy, server = gateway
    code, headers, body = proxy.request(
        "/api/preflight",
        method="OPTIONS",
        headers={
            "Origin": "https://a.b.example.org",
            "Access-Control-Request-Method": "DELETE",
            "Access-Control-Request-Headers": "authorization, x-trace",
        },
    )
    assert (code, body) == (204, b"")
    assert headers["access-control-allow-origin"] == "https://a.b.example.org"
    assert headers["access-control-allow-credentials"] == "true"
    assert headers["access-control-allow-methods"] == "DELETE"
    assert headers["access-control-allow-headers"] == "authorization, x-trace"
    assert headers["access-control-expose-headers"] == "x-total"
    assert headers["access-control-max-age"] == "600"
    assert headers["vary"] == "origin"
    assert b"OPTIONS /api/preflight HTTP/1.1" not in server.request_lines()


def test_a_preflight_from_another_origin_gets_no_cors_fields(gateway) -> None:
    proxy, server = gateway
    code, headers, _ = proxy.request(
        "/api/refused",
        method="OPTIONS",
        headers={"Origin": "https://example.org", "Access-Control-Request-Method": "GET"},
    )
    assert code == 204
    assert not [name for name in headers if name.startswith("access-control-")]
    assert b"OPTIONS /api/refused HTTP/1.1" not in server.request_lines()


def test_an_actual_request_gets_the_filters_fields_in_place_of_the_backends(gateway) -> None:
    proxy, _ = gateway
    code, headers, body = proxy.request("/api/data", headers={"Origin": "https://app.example.com"})
    assert (code, body) == (200, b"GET /api/data HTTP/1.1")
    assert headers["access-control-allow-origin"] == "https://app.example.com"
    assert headers["access-control-allow-credentials"] == "true"
    assert headers["access-control-expose-headers"] == "x-total"
    assert "access-control-max-age" not in headers  # (a preflight's field only)


def test_an_actual_request_from_another_origin_gets_no_cors_fields(gateway) -> None:
    proxy, _ = gateway
    code, headers, _ = proxy.request("/api/data", headers={"Origin": "https://evil.example"})
    assert code == 200
    assert not [name for name in headers if name.startswith("access-control-")]


def test_a_request_without_origin_keeps_the_backends_fields(gateway) -> None:
    proxy, _ = gateway
    code, headers, _ = proxy.request("/api/data")
    assert code == 200
    assert headers["access-control-allow-origin"] == "*"


def test_an_options_request_without_origin_reaches_the_backend(gateway) -> None:
    proxy, server = gateway
    code, _, body = proxy.request("/api/options", method="OPTIONS")
    assert (code, body) == (200, b"OPTIONS /api/options HTTP/1.1")
