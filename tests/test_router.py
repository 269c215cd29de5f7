"""The compiled router: the path index picks exactly what trying every route in
precedence order would pick."""

from __future__ import annotations

import random

import pytest

from twistgw.dataplane.http.router import (
    CompiledHeaderModifier,
    CompiledRoute,
    RouteIndex,
    Router,
)
from twistgw.hostnames import WildcardIndex, host_matches, specificity
from twistgw.routing import ir
from twistgw.translate.grpcroutes import grpc_match

SEGMENTS = ["a", "b", "api", "v1", "x"]


def _random_path(rng: random.Random) -> str:
    path = "/" + "/".join(rng.choice(SEGMENTS) for _ in range(rng.randint(0, 3)))
    return path + ("/" if rng.random() < 0.2 and path != "/" else "")


def _random_grpc_route(rng: random.Random, index: int) -> ir.Route:
    method = rng.choice(
        [
            None,
            {"service": rng.choice(SEGMENTS)},
            {"method": rng.choice(SEGMENTS)},
            {"service": rng.choice(SEGMENTS), "method": rng.choice(SEGMENTS)},
            {"type": "RegularExpression", "service": "a|b"},
        ]
    )
    return ir.Route(f"default/g{index}", 0, grpc_match({"method": method}), grpc=True)


def _random_route(rng: random.Random, index: int) -> ir.Route:
    if rng.random() < 0.3:
        return _random_grpc_route(rng, index)
    kind = rng.choice(["Exact", "PathPrefix", "PathPrefix", "RegularExpression"])
    path = _random_path(rng)
    if kind == "RegularExpression":
        path = path.rstrip("/") + "/.*"
    headers = (("Exact", "x-pick", rng.choice(["1", "2"])),) if rng.random() < 0.3 else ()
    method = rng.choice([None, None, "GET", "POST"])
    return ir.Route(f"default/r{index}", 0, ir.Match(kind, path, headers, (), method))


def test_index_agrees_with_trying_every_route():
    rng = random.Random(20261122)
    for _ in range(200):
        routes = [CompiledRoute(_random_route(rng, i)) for i in range(rng.randint(9, 40))]
        index = RouteIndex(routes)
        assert index.indexed
        for _ in range(50):
            path = _random_path(rng) + rng.choice(["", "/deeper", "x"])
            method = rng.choice([b"GET", b"POST"])
            headers = {"x-pick": rng.choice(["1", "2"])}
            headers_of = headers.copy
            expected = next(
                (r for r in routes if r.matches(method, path, "", headers, headers_of)), None
            )
            assert index.first_match(method, path, "", headers_of) is expected, path


def test_prefixes_match_whole_segments_only():
    routes = [
        CompiledRoute(ir.Route("default/r", 0, ir.Match("PathPrefix", f"/p{i}/")))
        for i in range(20)
    ]
    index = RouteIndex(routes)
    assert index.first_match(b"GET", "/p3", "", dict) is routes[3]
    assert index.first_match(b"GET", "/p3/x", "", dict) is routes[3]
    assert index.first_match(b"GET", "/p3x", "", dict) is None


def _grpc_route(method: dict | None = None, headers: list | None = None) -> CompiledRoute:
    match = grpc_match({"method": method, "headers": headers or []})
    return CompiledRoute(ir.Route("default/g", 0, match, grpc=True))


@pytest.mark.parametrize(
    ("method", "matching", "not_matching"),
    [
        (None, ["/pkg.Svc/Get", "/x"], []),
        (
            {"service": "pkg.Svc", "method": "Get"},
            ["/pkg.Svc/Get"],
            ["/pkg.Svc/GetAll", "/pkgxSvc/Get"],
        ),
        (
            {"service": "pkg.Svc"},
            ["/pkg.Svc/Get", "/pkg.Svc/"],
            ["/pkg.Svc", "/pkg.SvcX/Get", "/pkgxSvc/Get"],
        ),
        ({"method": "Get"}, ["/pkg.Svc/Get", "/a/Get"], ["/Get", "/a/b/Get", "/a/Gets"]),
        (
            {"type": "RegularExpression", "service": "a|b"},
            ["/a/Get", "/b/Put"],
            ["/a", "/c/Get", "/a/b/c", "/ab/Get"],
        ),
        (
            {"type": "RegularExpression", "service": "pkg\\..*", "method": "Get|Put"},
            ["/pkg.Svc/Get", "/pkg.Other/Put"],
            ["/pkg.Svc/Got", "/pkgx/Get", "/pkg.Svc/Get/x"],
        ),
    ],
)
def test_grpc_method_matches(method, matching, not_matching):
    route = _grpc_route(method)
    for path in matching:
        assert route.matches(b"POST", path, "", {}, dict), path
    for path in not_matching:
        assert not route.matches(b"POST", path, "", {}, dict), path


def test_grpc_routes_match_any_http_method_and_headers_exactly_or_by_re2():
    route = _grpc_route(
        {"service": "pkg.Svc"},
        [
            {"name": "Version", "value": "two"},
            {"type": "RegularExpression", "name": "color", "value": "re+d"},
        ],
    )
    assert route.grpc
    headers = {"version": "two", "color": "reed"}
    assert route.matches(b"GET", "/pkg.Svc/Get", "", headers, dict)
    assert not route.matches(b"POST", "/pkg.Svc/Get", "", {"version": "two", "color": "red!"}, dict)
    assert not route.matches(b"POST", "/pkg.Svc/Get", "", {"color": "red"}, dict)


def test_grpc_service_prefixes_are_string_prefixes_in_the_index_too():
    routes = [
        CompiledRoute(
            ir.Route("default/g", i, grpc_match({"method": {"service": f"s{i}"}}), grpc=True)
        )
        for i in range(20)
    ]
    index = RouteIndex(routes)
    assert index.indexed
    assert index.first_match(b"POST", "/s3/Get", "", dict) is routes[3]
    assert index.first_match(b"POST", "/s3", "", dict) is None
    assert index.first_match(b"POST", "/s3x/Get", "", dict) is None


def test_backends_carry_http2():
    route = CompiledRoute(
        ir.Route(
            "default/g",
            0,
            grpc_match({}),
            backends=(ir.Backend("default/a:80", 1, http2=True), ir.Backend("default/b:80", 1)),
            grpc=True,
        )
    )
    assert [b.http2 for b in route.backends.backends] == [True, False]


def test_header_modifiers_lower_case_names_for_http2():
    """HTTP/2 refuses upper-case field names (a gRPC backend answered INTERNAL)."""
    modifier = CompiledHeaderModifier(
        ir.HeaderModifier(set=(("X-Set", "a"),), add=(("X-Add", "b"),), remove=("X-Gone",))
    )
    headers = [(b"x-set", b"old"), (b"x-add", b"first"), (b"x-gone", b"1"), (b"keep", b"2")]
    assert modifier.apply(headers) == [
        (b"x-add", b"first"),
        (b"keep", b"2"),
        (b"x-set", b"a"),
        (b"x-add", b"b"),
    ]


LABELS = ["a", "b", "example", "com"]


def _random_hostname(rng: random.Random) -> str:
    name = ".".join(rng.choice(LABELS) for _ in range(rng.randint(1, 4)))
    return rng.choice([name, "*." + name, name])


def test_listener_and_virtual_host_indexes_agree_with_scanning_them():
    """Host lookups by index find what trying every listener (most specific first)
    and every virtual host finds."""
    rng = random.Random(7)
    for _ in range(300):
        names = [rng.choice([None, "*"]) if rng.random() < 0.1 else _random_hostname(rng)]
        names += [_random_hostname(rng) for _ in range(rng.randint(0, 8))]
        vhosts = {_random_hostname(rng) for _ in range(rng.randint(0, 6))} | {"*"}
        listeners = tuple(
            ir.HTTPListener(
                f"default/gw/l{index}",
                "default/gw",
                name,
                tuple(ir.VirtualHost(h) for h in sorted(vhosts, key=specificity)),
            )
            for index, name in enumerate(names)
        )
        router = Router(ir.Bind("0.0.0.0", 80, "HTTP", listeners))
        for _ in range(20):
            host = ".".join(rng.choice(LABELS) for _ in range(rng.randint(1, 5)))
            scanned = next((li for li in router.listeners if host_matches(host, li.hostname)), None)
            assert router.listener_for(host) is scanned
            if scanned is not None:
                by_scan = [
                    scanned.exact.get(h) or scanned.wildcards.get(h) or scanned.any
                    for h in sorted(vhosts, key=specificity)
                    if host_matches(host, h)
                ]
                assert scanned.candidates(host) == by_scan


def test_a_long_host_costs_the_configured_wildcards_not_its_labels() -> None:
    """A client's 60 KB Host of 30,000 labels: the lookup slices the host once per
    configured wildcard length (the old walk over its labels was quadratic)."""
    index = WildcardIndex()
    index.add("*.example.com", "example")
    index.add("*.b.example.com", "b")
    host = "a." * 30_000 + "b.example.com"
    assert list(index.matching(host)) == ["b", "example"]
    assert list(index.matching("example.com")) == [] and index.get("*.example.com") == "example"
