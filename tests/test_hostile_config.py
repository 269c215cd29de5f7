"""Careless or hostile route authors against a real gateway process: a regular
expression that backtracks exponentially in Python's ``re`` and one RE2 refuses, and an
HTTPRoute far beyond its CRD's bounds. One worker, so a stuck matcher would stall
every request that follows."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.gateway import GatewayProcess, wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service


@pytest.fixture(scope="module")
def hostile(backends) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(extra_args=("--workers", "1")).start()
    web = backends.start("web")
    gateway.write(
        "routes.yaml",
        [
            gateway_class(),
            gateway_manifest(),
            *service("web", [web]),
            http_route(
                "backtracking",
                [
                    {
                        "matches": [{"path": {"type": "RegularExpression", "value": "/(a+)+$"}}],
                        "backendRefs": [backend("web")],
                    }
                ],
            ),
            http_route(
                "lookahead",
                [
                    {
                        "matches": [
                            {
                                "path": {"value": "/look"},
                                "headers": [
                                    {
                                        "type": "RegularExpression",
                                        "name": "X-User",
                                        "value": "(?!admin).*",
                                    }
                                ],
                            }
                        ],
                        "backendRefs": [backend("web")],
                    }
                ],
            ),
        ],
    )
    wait_until(lambda: gateway.request("/aaa")[0] == 200, what="routes to be served")
    yield gateway
    gateway.stop()


def test_backtracking_regex_is_matched_in_linear_time(hostile):
    code, _, _ = hostile.request("/" + "a" * 50 + "!")  # within the client's timeout
    assert code == 404
    assert hostile.echo("/" + "a" * 50)["backend"] == "web"


def test_regex_re2_refuses_is_reported_with_its_reason(hostile):
    condition = wait_until(
        lambda: hostile.route_condition("lookahead", "Accepted"), what="lookahead status"
    )
    assert condition["status"] == "False" and condition["reason"] == "UnsupportedValue"
    assert "headers[0].value: RE2 cannot compile '(?!admin).*'" in condition["message"]
    assert "invalid perl operator: (?!" in condition["message"]
    assert hostile.request("/look", headers={"X-User": "bob"})[0] == 404


def test_route_beyond_crd_bounds_is_refused_naming_the_bound(hostile):
    rules = [
        {"matches": [{"path": {"value": f"/r{i}"}}], "backendRefs": [backend("web")]}
        for i in range(10000)
    ]
    hostile.write("big.json", json.dumps(http_route("big", rules)))  # JSON parses fast

    def reported() -> list[str]:
        errors = hostile.status_document()["errors"]
        return [e["message"] for e in errors if e["source"].endswith("big.json")]

    (message,) = wait_until(reported, what="the oversized route reported")
    assert message == (
        "HTTPRoute default/big is invalid: spec.rules: must have at most 16 items, has 10000"
    )
    assert hostile.status("HTTPRoute", "big") is None
    assert hostile.echo("/aaa")["backend"] == "web"


def test_oversized_annotations_are_refused(hostile):
    route = http_route("annotated", [{"backendRefs": [backend("web")]}])
    route["metadata"]["annotations"] = {"example.com/blob": "x" * (1024 * 1024)}
    hostile.write("annotated.json", json.dumps(route))

    def reported() -> list[str]:
        errors = hostile.status_document()["errors"]
        return [e["message"] for e in errors if e["source"].endswith("annotated.json")]

    (message,) = wait_until(reported, what="the oversized annotations reported")
    assert "metadata.annotations: must total at most 262144 bytes (256 KiB)" in message
    assert hostile.status("HTTPRoute", "annotated") is None
