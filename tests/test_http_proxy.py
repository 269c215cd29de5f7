"""HTTP/1.1 through a real gateway process to real echo backends, on loopback."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter

import pytest

from tests.support.gateway import wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service


@pytest.fixture(scope="module")
def proxy(gateway, backends):
    v1 = backends.start("v1")
    v2 = backends.start("v2")
    v1b = backends.start("v1b")
    documents = [
        gateway_class(),
        gateway_manifest(),
        *service("v1", [v1, v1b]),
        *service("v2", [v2]),
        *service("empty", []),
    ]
    documents.append(
        http_route(
            "main",
            [
                {
                    "name": "exact",
                    "matches": [{"path": {"type": "Exact", "value": "/exact"}}],
                    "backendRefs": [backend("v2")],
                },
                {
                    "matches": [
                        {"path": {"type": "PathPrefix", "value": "/v2"}},
                        {"headers": [{"name": "X-Pick", "value": "two"}]},
                    ],
                    "backendRefs": [backend("v2")],
                },
                {
                    "matches": [
                        {
                            "path": {"type": "PathPrefix", "value": "/re"},
                            "headers": [
                                {"type": "RegularExpression", "name": "X-Id", "value": "[0-9]+"}
                            ],
                        }
                    ],
                    "backendRefs": [backend("v2")],
                },
                {
                    "matches": [
                        {
                            "path": {"type": "PathPrefix", "value": "/q"},
                            "queryParams": [{"name": "mode", "value": "two"}],
                        },
                        {"path": {"type": "PathPrefix", "value": "/m"}, "method": "DELETE"},
                    ],
                    "backendRefs": [backend("v2")],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/split"}}],
                    "backendRefs": [backend("v1", weight=1), backend("v2", weight=3)],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/zero"}}],
                    "backendRefs": [backend("v1", weight=0), backend("v2", weight=1)],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/headers"}}],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {
                                "set": [{"name": "X-Set", "value": "set"}],
                                "add": [{"name": "X-Add", "value": "added"}],
                                "remove": ["X-Remove"],
                            },
                        },
                        {
                            "type": "ResponseHeaderModifier",
                            "responseHeaderModifier": {
                                "set": [{"name": "X-Response", "value": "yes"}],
                                "remove": ["X-Backend"],
                            },
                        },
                    ],
                    "backendRefs": [backend("v1")],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
                    "filters": [
                        {
                            "type": "RequestRedirect",
                            "requestRedirect": {
                                "path": {
                                    "type": "ReplacePrefixMatch",
                                    "replacePrefixMatch": "/new",
                                },
                                "statusCode": 301,
                            },
                        }
                    ],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/away"}}],
                    "filters": [
                        {
                            "type": "RequestRedirect",
                            "requestRedirect": {
                                "scheme": "https",
                                "hostname": "secure.example.com",
                            },
                        }
                    ],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/rewrite"}}],
                    "filters": [
                        {
                            "type": "URLRewrite",
                            "urlRewrite": {
                                "hostname": "rewritten.example.com",
                                "path": {
                                    "type": "ReplacePrefixMatch",
                                    "replacePrefixMatch": "/inner",
                                },
                            },
                        }
                    ],
                    "backendRefs": [backend("v1")],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/missing"}}],
                    "backendRefs": [backend("does-not-exist")],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/empty"}}],
                    "backendRefs": [backend("empty")],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [backend("v1")],
                },
            ],
            hostnames=["example.com"],
        )
    )
    gateway.write("proxy.yaml", documents)
    wait_until(lambda: gateway.request("/exact")[0] == 200, what="routes to be served")
    return gateway


def test_paths_headers_query_and_method_pick_the_rule(proxy):
    assert proxy.echo("/exact")["backend"] == "v2"
    assert proxy.echo("/exact/more")["backend"].startswith("v1")  # Exact is exact
    assert proxy.echo("/v2/x")["backend"] == "v2"
    assert proxy.echo("/v2")["backend"] == "v2"
    assert proxy.echo("/v2x")["backend"].startswith("v1")  # prefixes match whole segments
    assert proxy.echo("/other", headers={"X-Pick": "two"})["backend"] == "v2"
    assert proxy.echo("/re", headers={"X-Id": "123"})["backend"] == "v2"
    assert proxy.echo("/re", headers={"X-Id": "12a"})["backend"].startswith("v1")
    assert proxy.echo("/q?mode=two")["backend"] == "v2"
    assert proxy.echo("/q?mode=one")["backend"].startswith("v1")
    assert proxy.echo("/m", method="DELETE")["backend"] == "v2"
    assert proxy.echo("/m", method="GET")["backend"].startswith("v1")


def test_unknown_host_gets_404(proxy):
    code, _, body = proxy.request("/", host="unknown.example.org")
    assert code == 404 and b"no route" in body


def test_weights_split_traffic_and_weight_zero_is_never_chosen(proxy):
    counts = Counter(proxy.echo("/split")["backend"] for _ in range(200))
    v2_share = counts["v2"] / 200
    assert 0.6 < v2_share < 0.9, counts  # 3:1, with room for chance
    assert {proxy.echo("/zero")["backend"] for _ in range(30)} == {"v2"}


def test_round_robin_over_endpoints(proxy):
    seen = {proxy.echo("/")["backend"] for _ in range(6)}
    assert seen == {"v1", "v1b"}


def test_header_filters_and_forwarding_headers(proxy):
    code, headers, body = proxy.request(
        "/headers",
        headers={
            "X-Set": "original",
            "X-Add": "first",
            "X-Remove": "gone",
            "X-Forwarded-For": "10.9.9.9",
        },
    )
    echoed = json.loads(body)
    sent = {k.lower(): v for k, v in echoed["header_list"]}
    assert code == 200
    assert sent["x-set"] == "set"
    assert [v for k, v in echoed["header_list"] if k.lower() == "x-add"] == ["first", "added"]
    assert "x-remove" not in sent
    assert sent["x-forwarded-for"] == "10.9.9.9, 127.0.0.1"
    assert sent["x-forwarded-proto"] == "http"
    assert headers["x-response"] == "yes" and "x-backend" not in headers


def test_redirects(proxy):
    code, headers, _ = proxy.request("/old/page?x=1")
    assert code == 301 and headers["location"] == "http://example.com:8080/new/page?x=1"
    code, headers, _ = proxy.request("/away")
    assert code == 302 and headers["location"] == "https://secure.example.com/away"


def test_rewrite_host_and_prefix(proxy):
    echoed = proxy.echo("/rewrite/deep?k=v")
    assert echoed["path"] == "/inner/deep?k=v"
    sent = {name.lower(): value for name, value in echoed["header_list"]}
    assert sent["host"] == "rewritten.example.com"


def test_invalid_backend_is_500_and_no_endpoints_503(proxy):
    assert proxy.request("/missing")[0] == 500
    assert proxy.request("/empty")[0] == 503


def test_request_body_streams_with_content_length_and_chunked(proxy):
    payload = b"z" * (3 * 1024 * 1024)
    assert proxy.echo("/", method="POST", body=payload)["received_bytes"] == len(payload)
    chunks = iter([b"a" * 70000, b"b" * 5, b"c" * 1000])
    echoed = proxy.echo(
        "/", method="POST", body=chunks, chunked=True, headers={"Transfer-Encoding": "chunked"}
    )
    assert echoed["received_bytes"] == 71005


def test_large_and_chunked_responses(proxy):
    code, headers, body = proxy.request("/bytes?size=5000000")
    assert code == 200 and len(body) == 5000000
    code, headers, body = proxy.request("/stream?chunks=50&size=10000")
    assert code == 200 and len(body) == 500000 and headers["transfer-encoding"] == "chunked"
    code, headers, body = proxy.request("/bytes?size=100", method="HEAD")
    assert code == 200 and body == b"" and headers["content-length"] == "100"


def _raw(proxy, data: bytes, expect_close: bool = True) -> bytes:
    with socket.create_connection((proxy.address, 8080), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            received += piece
            if not expect_close and received.count(b"HTTP/1.1 ") >= 2 and received.endswith(b"}\n"):
                break
    return received


def test_keep_alive_and_pipelining_answer_in_order(proxy):
    request = b"GET /exact HTTP/1.1\r\nHost: example.com\r\n\r\n"
    last = b"GET /v2/last HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
    received = _raw(proxy, request + last)
    answers = received.split(b"HTTP/1.1 200 OK")
    assert len(answers) == 3, received
    assert b'"path": "/exact"' in answers[1] and b'"path": "/v2/last"' in answers[2]


def test_malformed_request_gets_400_and_close(proxy):
    received = _raw(proxy, b"NOT HTTP AT ALL\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 400"), received
    # the gateway still serves
    assert proxy.echo("/exact")["backend"] == "v2"


def test_metrics_count_requests(proxy):
    proxy.echo("/exact")
    series = (
        'twistgw_http_requests_total{backend="default/v2:8080",code="200",'
        'gateway="default/gw",grpc_status="",protocol="HTTP/1.1",route="default/main",'
        'rule="exact"}'
    )

    def counted() -> str:  # workers add their counts to the metrics every 0.25 s
        text = proxy.admin("/metrics")[1].decode()
        return text if series in text else ""

    text = wait_until(counted, what="the request counted")
    assert "twistgw_http_request_duration_seconds_bucket" in text
    assert "twistgw_config_reloads_total" in text


def test_slow_clients_leave_pooled_connections_usable(proxy):
    """A large response read slowly makes the client side pause the backend connection;
    the connection goes back to the pool afterwards and must serve the next request."""

    for _ in range(3):
        with socket.create_connection((proxy.address, 8080), timeout=10) as sock:
            request = b"GET /bytes?size=3000000 HTTP/1.1\r\nHost: example.com\r\n"
            sock.sendall(request + b"Connection: close\r\n\r\n")
            received = 0
            while True:
                piece = sock.recv(16384)
                if not piece:
                    break
                received += len(piece)
                if received < 2_000_000:
                    time.sleep(0.005)
            assert received > 3_000_000
        for method in ("HEAD", "GET"):
            code, _, _ = proxy.request("/bytes?size=100", method=method)
            assert code == 200
