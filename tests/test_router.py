"""The compiled router: the path index picks exactly what trying every route in
precedence order would pick."""

from __future__ import annotations

import random

from twistgw.dataplane.http.router import CompiledRoute, RouteIndex
from twistgw.routing import ir

SEGMENTS = ["a", "b", "api", "v1", "x"]


def _random_path(rng: random.Random) -> str:
    path = "/" + "/".join(rng.choice(SEGMENTS) for _ in range(rng.randint(0, 3)))
    return path + ("/" if rng.random() < 0.2 and path != "/" else "")


def _random_route(rng: random.Random, index: int) -> ir.Route:
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
